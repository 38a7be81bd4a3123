//! The `shmprim` binary, run as a user would: output, errors on stderr and
//! exit codes (0 ok, 1 error, 2 usage, 3 inspected header refused). Every
//! segment is under a unique name and removed; `clean` is only ever given
//! names here (the whole-directory sweep is tested in `stale.rs`, inside a
//! private `/dev/shm`).
#![cfg(target_os = "linux")]

mod harness;
use harness::*;

use std::process::{Command, Output};
use std::time::Duration;

use shmprim::*;

fn shmprim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmprim"))
        .args(args)
        .output()
        .expect("run shmprim")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `args`, checks the exit code, returns (stdout, stderr).
fn run(args: &[&str], code: i32) -> (String, String) {
    let out = shmprim(args);
    let (o, e) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}\nstdout:\n{o}\nstderr:\n{e}"
    );
    (o, e)
}

fn shm_exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm/{}", name.trim_start_matches('/'))).exists()
}

#[test]
fn usage_errors_exit_2_with_the_usage_on_stderr() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["inspect"],
        &["inspect", "/a", "/b"],
        &["list", "extra"],
        &["clean", "--force"],
    ] {
        let (o, e) = run(args, 2);
        assert!(o.is_empty(), "{args:?}: {o}");
        assert!(
            e.starts_with("shmprim: ") && e.contains("usage:"),
            "{args:?}: {e}"
        );
    }
    let (o, _) = run(&["--help"], 0);
    assert!(o.contains("exit codes"));
}

#[test]
fn inspecting_a_missing_or_invalid_name_exits_1() {
    let (_, e) = run(&["inspect", &unique("missing")], 1);
    assert!(e.contains("no segment of that name exists"), "{e}");
    let (_, e) = run(&["inspect", "no-slash"], 1);
    assert!(e.contains("invalid segment name"), "{e}");
    let (_, e) = run(&["clean", &unique("missing")], 1);
    assert!(e.contains("no segment of that name exists"), "{e}");
}

#[test]
fn inspect_shows_queue_depth_and_owners() {
    let name = unique("cliq");
    let _rm = RemoveOnDrop(name.clone());
    let q = Queue::create(&name, 4, 16).unwrap();
    q.send(&1u64).unwrap();
    q.send(&2u64).unwrap();
    let (o, _) = run(&["inspect", &name], 0);
    let me = std::process::id();
    assert!(o.contains("kind:       Queue"), "{o}");
    assert!(o.contains("state:      2 of 4 slots used"), "{o}");
    assert!(
        o.contains(&format!("creator:    pid {me} ")) && o.contains("(alive)"),
        "{o}"
    );
    assert!(o.contains(&format!("attached:   pid {me} ")), "{o}");
    assert!(o.contains("status:     in use"), "{o}");
    // `list` has a row for it.
    let (o, _) = run(&["list"], 0);
    assert!(o.starts_with("NAME"), "{o}");
    let row = o
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no row for {name}:\n{o}"));
    assert!(row.contains("Queue") && row.contains("in use"), "{row}");
    // Inspecting attached for a moment only.
    assert_eq!(q.segment().info().kind, Some(segment::Kind::Queue));
    let r = segment::inspect(&name).unwrap();
    assert_eq!(r.attachers.len(), 1, "{r:?}");
}

#[test]
fn inspect_shows_lock_semaphore_and_event_state() {
    let (l, s, e) = (unique("clil"), unique("clis"), unique("clie"));
    let _rm = (
        RemoveOnDrop(l.clone()),
        RemoveOnDrop(s.clone()),
        RemoveOnDrop(e.clone()),
    );
    let lock = Lock::create(&l).unwrap();
    let sem = Semaphore::create(&s, 3).unwrap();
    let ev = Event::create(&e).unwrap();
    assert!(run(&["inspect", &l], 0).0.contains("state:      unlocked"));
    let guard = lock.lock().unwrap();
    assert!(run(&["inspect", &l], 0).0.contains("state:      locked"));
    drop(guard);
    assert!(run(&["inspect", &s], 0).0.contains("state:      value 3"));
    sem.acquire().unwrap();
    assert!(run(&["inspect", &s], 0).0.contains("state:      value 2"));
    assert!(run(&["inspect", &e], 0).0.contains("state:      clear"));
    ev.set();
    assert!(run(&["inspect", &e], 0).0.contains("state:      set"));
}

#[test]
fn inspect_of_a_corrupt_header_exits_3() {
    let name = unique("clibad");
    let _rm = RemoveOnDrop(name.clone());
    let mut bytes = vec![0x5Au8; 2048];
    bytes[..8].copy_from_slice(b"SHMPRIM\0");
    std::fs::write(format!("/dev/shm/{}", &name[1..]), &bytes).unwrap();
    let (o, e) = run(&["inspect", &name], 3);
    assert!(o.contains(&format!("name:       {name}")), "{o}");
    assert!(e.contains("header refused"), "{e}");
    // Never cleaned.
    let (o, _) = run(&["clean", &name], 0);
    assert!(o.is_empty(), "{o}");
    assert!(shm_exists(&name));
}

child!(fn doomed_creator(ctx) {
    let _v = Value::<u64>::create_with(&ctx.arg("name"), 1, &Options::new().persist(true))?;
    ctx.send("ready");
    std::thread::sleep(Duration::from_secs(60));
});

#[test]
fn clean_removes_a_dead_creators_segment_and_keeps_live_ones() {
    let dead = unique("clidead");
    let live = unique("clilive");
    let _rm = (RemoveOnDrop(dead.clone()), RemoveOnDrop(live.clone()));
    let mut kid = spawn("doomed_creator").arg("name", &dead).start();
    kid.expect("ready");
    let pid = kid.pid();
    kid.kill();
    kid.wait();
    let _v = Value::<u64>::create(&live, 2).unwrap();
    let (o, _) = run(&["inspect", &dead], 0);
    assert!(
        o.contains(&format!("creator:    pid {pid} ")) && o.contains("(dead)"),
        "{o}"
    );
    assert!(o.contains("status:     stale"), "{o}");
    let (o, _) = run(&["clean", "--dry-run", &dead, &live], 0);
    assert_eq!(o, format!("would remove {dead}\n"));
    assert!(shm_exists(&dead));
    let (o, _) = run(&["clean", &dead, &live], 0);
    assert_eq!(o, format!("removed {dead}\n"));
    assert!(!shm_exists(&dead) && shm_exists(&live));
}
