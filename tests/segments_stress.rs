//! 32 processes × 100 rounds of `open_or_create` + drop on one name, where
//! whoever created the segment unlinks it on drop: every round must end
//! with a valid, published segment (never a half-initialised one, never an
//! error), and nothing may leak (names, descriptors, mappings, rows).
#![cfg(target_os = "linux")]

mod harness;
use harness::*;

use std::time::Duration;

use shmprim::segment;
use shmprim::*;

const PROCS: usize = 32;
const ROUNDS: usize = 100;

/// Lines of `/proc/self/fd` and `/proc/self/maps` that name `name`.
fn leftovers(name: &str) -> Vec<String> {
    let path = format!("/dev/shm/{}", name.trim_start_matches('/'));
    let mut out: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.starts_with(&path))
        .collect();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    out.extend(
        maps.lines()
            .filter(|l| l.contains(&path))
            .map(str::to_owned),
    );
    out
}

child!(fn churn(ctx) {
    let name = ctx.arg("name");
    let flag = AtomicValue::<u32>::open(&ctx.arg("flag"))?;
    ctx.send("ready");
    gate_wait(&flag, Duration::from_secs(60))?;
    let mut created = 0;
    for round in 0..ROUNDS {
        let v = Value::<u64>::open_or_create(&name, 0)
            .map_err(|e| format!("round {round}: open_or_create: {e:?}"))?;
        let info = v.segment().info();
        assert_eq!(info.kind, Some(segment::Kind::Value));
        assert_eq!(info.version, segment::FORMAT_VERSION);
        v.update(|x| *x += 1).map_err(|e| format!("round {round}: update: {e:?}"))?;
        created += usize::from(v.segment().is_creator());
        drop(v);
    }
    let left = leftovers(&name);
    assert!(left.is_empty(), "leaked: {left:?}");
    ctx.send(&format!("created={created}"));
});

#[test]
fn thirty_two_processes_churn_open_or_create_on_one_name() {
    let _dog = watchdog(
        "thirty_two_processes_churn_open_or_create_on_one_name",
        Duration::from_secs(120),
    );
    let name = unique("churn");
    let _rm = RemoveOnDrop(name.clone());
    let flag_name = unique("churnflag");
    let flag = AtomicValue::<u32>::create(&flag_name, 0).unwrap();
    let kids: Vec<Child> = (0..PROCS)
        .map(|_| {
            spawn("churn")
                .arg("name", &name)
                .arg("flag", &flag_name)
                .start()
        })
        .collect();
    for k in &kids {
        k.expect("ready");
    }
    gate_open(&flag);
    let mut created = 0;
    for k in &kids {
        let msg = k
            .recv(Duration::from_secs(100))
            .unwrap_or_else(|| panic!("no report\n{}", k.output()));
        let n: usize = msg
            .strip_prefix("created=")
            .unwrap_or_else(|| panic!("unexpected {msg:?}\n{}", k.output()))
            .parse()
            .unwrap();
        created += n;
    }
    join_all(kids);
    assert!(created >= 1);
    // Every creator removed its name; nobody else did harm.
    assert!(
        matches!(segment::inspect(&name), Err(Error::NotFound)),
        "the name outlived every handle"
    );
    eprintln!("{PROCS} processes x {ROUNDS} rounds: {created} creations");
}
