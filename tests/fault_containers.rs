//! A `SharedMap` / `SharedList` writer SIGKILLed at each named instant of
//! an insert, a remove, an update, a transaction, a push, a list remove and
//! a growth (the `container.*` fault points): the next process finds the
//! container exactly as before that operation or after it, with no caller
//! action (the lock's owner-died hand-over runs the repair), never locked,
//! with no generation name left behind; a reader gets its answer after no
//! more than the dead-owner check.
//!
//! The child (forked) installs a fault hook that raises a flag in a shared
//! `AtomicValue` at its point and sleeps; the parent waits for the flag and
//! kills it.
#![cfg(all(target_os = "linux", feature = "fault-injection"))]

mod harness;
use harness::*;
use shmprim::{AtomicValue, SharedList, SharedMap};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const REACH: Duration = Duration::from_secs(20);
/// The longest a reader may take behind a dead writer: the dead-owner
/// check runs every 100 ms; generous for a loaded machine.
const READ_BOUND: Duration = Duration::from_secs(5);

static STOP: OnceLock<(&'static str, AtomicValue<u32>)> = OnceLock::new();

fn stop_here(point: &'static str) {
    if let Some((want, flag)) = STOP.get() {
        if point == *want {
            flag.store(1);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

fn shm_entries(name: &str) -> Vec<String> {
    let p = name.trim_start_matches('/');
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n == p || n.starts_with(&format!("{p}.")))
        .collect();
    v.sort();
    v
}

/// Forks a child that runs `op` with the hook armed at `point`, waits
/// until it stops there, kills and reaps it.
fn kill_at(point: &'static str, op: impl FnOnce()) {
    let flag = AtomicValue::<u32>::anonymous(0).unwrap();
    let pid = fork_child(|| {
        if STOP.set((point, flag.clone())).is_err() {
            return 2;
        }
        shmprim::fault::set_hook(Some(stop_here));
        op();
        4 // the point was never reached
    });
    let until = Instant::now() + REACH;
    while flag.load() == 0 {
        if Instant::now() > until {
            // SAFETY: our child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{point}: child never reached it (exit {})", reap_any(pid));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: our child, not yet reaped.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    reap_any(pid);
}

fn reap_any(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    status
}

type Items = BTreeMap<Vec<u8>, Vec<u8>>;

fn items(m: &SharedMap) -> Items {
    m.items().unwrap().into_iter().collect()
}

/// A map with a known content: 50 small entries, one of 2000 bytes.
fn seeded(name: &str) -> SharedMap {
    let m = SharedMap::create(name).unwrap();
    for i in 0u32..50 {
        m.insert(&i.to_le_bytes(), format!("value {i}").as_bytes())
            .unwrap();
    }
    m.insert(b"wide", &[5; 2000]).unwrap();
    m
}

/// Kills a writer of a seeded map at `point` inside `op`; checks that the
/// map is then `before` or `after` (as `want_after` says), that a reader
/// got through in time, that the next write works, and that only the root
/// and one generation are left in `/dev/shm`.
fn map_case(point: &'static str, want_after: bool, op: fn(&SharedMap), tag: &str) {
    let name = unique(tag);
    {
        let m = seeded(&name);
        let before = items(&m);
        let after = {
            let scratch = SharedMap::anonymous().unwrap();
            for (k, v) in &before {
                scratch.insert(k, v).unwrap();
            }
            op(&scratch);
            items(&scratch)
        };
        assert_ne!(before, after, "{point}: the operation changes nothing");
        kill_at(point, || op(&m));
        let t = Instant::now();
        let got = m.get(&7u32.to_le_bytes()).unwrap();
        assert!(
            t.elapsed() < READ_BOUND,
            "{point}: reader took {:?}",
            t.elapsed()
        );
        assert!(got.is_some());
        let now = items(&m);
        let want = if want_after { &after } else { &before };
        assert!(
            now == *want,
            "{point}: not the {} state",
            if want_after { "after" } else { "before" }
        );
        assert_eq!(m.len().unwrap(), now.len());
        // Still usable, by any handle.
        let other = SharedMap::open(&name).unwrap();
        other.insert(b"next", b"works").unwrap();
        assert_eq!(m.get(b"next").unwrap().unwrap(), b"works");
        assert_eq!(
            shm_entries(&name).len(),
            2,
            "{point}: {:?}",
            shm_entries(&name)
        );
    }
    assert!(
        shm_entries(&name).is_empty(),
        "{point}: {:?}",
        shm_entries(&name)
    );
}

fn insert_new(m: &SharedMap) {
    m.insert(b"new key", b"new value").unwrap();
}
fn overwrite_same_size(m: &SharedMap) {
    m.insert(&3u32.to_le_bytes(), b"VALUE 3").unwrap();
}
fn overwrite_other_size(m: &SharedMap) {
    m.insert(&3u32.to_le_bytes(), b"a longer value for 3")
        .unwrap();
}
fn remove(m: &SharedMap) {
    m.remove(&4u32.to_le_bytes()).unwrap();
}
fn update(m: &SharedMap) {
    m.update(&5u32.to_le_bytes(), |v| Some([v.unwrap(), b"+1"].concat()))
        .unwrap();
}
fn transaction(m: &SharedMap) {
    m.transaction(|tx| {
        tx.insert(b"tx a", b"1")?;
        tx.remove(&6u32.to_le_bytes())?;
        tx.insert(b"tx b", b"2")
    })
    .unwrap();
}
/// A value that does not fit the heap: the write moves to a new generation.
fn grow(m: &SharedMap) {
    m.insert(b"huge", &[9; 200_000]).unwrap();
}

#[test]
fn map_writer_killed_mid_insert_remove_update_or_transaction() {
    let _w = watchdog("map_writer_killed", Duration::from_secs(120));
    map_case("container.map.insert", false, insert_new, "fcins");
    map_case("container.map.insert", false, overwrite_same_size, "fcsame");
    map_case(
        "container.map.insert",
        false,
        overwrite_other_size,
        "fcother",
    );
    map_case("container.map.remove", false, remove, "fcrem");
    map_case("container.map.update", false, update, "fcupd");
    map_case("container.map.insert", false, transaction, "fctx");
    map_case("container.commit.before", false, insert_new, "fccommit");
}

#[test]
fn map_writer_killed_mid_growth() {
    let _w = watchdog("map_writer_killed_mid_growth", Duration::from_secs(120));
    map_case("container.grow.before_create", false, grow, "fcg1");
    map_case("container.grow.after_copy", false, grow, "fcg2");
    map_case("container.grow.before_publish", false, grow, "fcg3");
    map_case("container.grow.after_publish", true, grow, "fcg4");
    map_case(
        "container.grow.after_copy",
        false,
        transaction_that_grows,
        "fcg5",
    );
}

/// Writes in place, then outgrows the generation inside one transaction.
fn transaction_that_grows(m: &SharedMap) {
    m.transaction(|tx| {
        tx.insert(&1u32.to_le_bytes(), b"changed in place")?;
        tx.insert(b"huge", &[9; 200_000])
    })
    .unwrap();
}

#[test]
fn list_writer_killed_mid_push_or_remove() {
    let _w = watchdog("list_writer_killed", Duration::from_secs(60));
    for (point, op) in [
        ("container.list.push", 0),
        ("container.list.remove", 1),
        ("container.list.pop", 2),
    ] {
        let name = unique("fclist");
        {
            let l = SharedList::create(&name).unwrap();
            l.extend((0u32..100).map(|i| i.to_le_bytes())).unwrap();
            let before = l.snapshot().unwrap();
            kill_at(point, || match op {
                0 => l.push(b"x").unwrap(),
                1 => drop(l.remove(10).unwrap()),
                _ => drop(l.pop().unwrap()),
            });
            let t = Instant::now();
            assert_eq!(l.len().unwrap(), 100, "{point}");
            assert!(
                t.elapsed() < READ_BOUND,
                "{point}: reader took {:?}",
                t.elapsed()
            );
            assert_eq!(l.snapshot().unwrap(), before, "{point}");
            l.push(b"after").unwrap();
            assert_eq!(l.get(100).unwrap().unwrap(), b"after");
            assert_eq!(
                shm_entries(&name).len(),
                2,
                "{point}: {:?}",
                shm_entries(&name)
            );
        }
        assert!(shm_entries(&name).is_empty());
    }
}

/// A repair that fails (here: the published generation's name is away
/// while it runs) leaves the lock usable and the repair owed: the next
/// locker repairs and writes, instead of finding the lock not recoverable.
#[test]
fn a_failed_repair_is_retried_by_the_next_locker() {
    let _w = watchdog("failed_repair", Duration::from_secs(60));
    let name = unique("fcrepair");
    {
        let m = seeded(&name);
        kill_at("container.grow.after_publish", || grow(&m));
        let current = shm_entries(&name)
            .into_iter()
            .filter(|n| n.contains('.'))
            .max_by_key(|n| u64::from_str_radix(n.rsplit('.').next().unwrap(), 16).unwrap())
            .unwrap();
        let aside = format!("/dev/shm/{current}-aside");
        std::fs::rename(format!("/dev/shm/{current}"), &aside).unwrap();
        let r = m.insert(b"first", b"try");
        std::fs::rename(&aside, format!("/dev/shm/{current}")).unwrap();
        assert!(matches!(r, Err(shmprim::Error::NotFound)), "{r:?}");
        m.insert(b"second", b"try").unwrap();
        assert_eq!(m.get(b"huge").unwrap().unwrap().len(), 200_000);
        assert_eq!(m.get(b"second").unwrap().unwrap(), b"try");
        assert_eq!(shm_entries(&name).len(), 2, "{:?}", shm_entries(&name));
    }
    assert!(shm_entries(&name).is_empty(), "{:?}", shm_entries(&name));
}
