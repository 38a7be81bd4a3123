//! `Event` across processes: every waiter woken by a `set`, `clear`, a set
//! before waiting, a waiter killed while blocked, and the timeout rules.
#![cfg(target_os = "linux")]

mod harness;
use harness::*;
use shmprim::*;

use std::time::{Duration, Instant};

child!(fn event_waiter(ctx) {
    let e = Event::open(&ctx.arg("event"))?;
    ctx.send("waiting");
    let r = e.wait();
    ctx.send(&format!("woke {r}"));
});

child!(fn event_timed_waiter(ctx) {
    let e = Event::open(&ctx.arg("event"))?;
    let t = Instant::now();
    let r = e.wait_timeout(Duration::from_millis(150));
    assert!(r || t.elapsed() >= Duration::from_millis(150), "early");
    ctx.send(&format!("timed {r}"));
});

child!(fn event_setter(ctx) {
    let e = Event::open(&ctx.arg("event"))?;
    e.set();
    ctx.send("set");
});

#[test]
fn set_and_clear_across_processes_wake_every_waiter() {
    let _w = watchdog("event set/clear", Duration::from_secs(60));
    let n = unique("event");
    let e = Event::create(&n).unwrap();
    let waiters: Vec<_> = (0..4)
        .map(|_| spawn("event_waiter").arg("event", &n).start())
        .collect();
    for w in &waiters {
        w.expect("waiting");
    }
    std::thread::sleep(Duration::from_millis(100));
    let setter = spawn("event_setter").arg("event", &n).start();
    setter.expect("set");
    // Cleared at once: waiters present at the set are released anyway.
    e.clear();
    for w in &waiters {
        w.expect("woke true");
    }
    join_all(waiters);
    setter.join();
    assert!(!e.is_set());
    // Cleared: a timed waiter in another process times out, not early.
    let t = spawn("event_timed_waiter").arg("event", &n).start();
    t.expect("timed false");
    t.join();
    // Set before anyone waits: seen by later waiters.
    e.set();
    let late = spawn("event_waiter").arg("event", &n).start();
    late.expect("waiting");
    late.expect("woke true");
    late.join();
    let t = spawn("event_timed_waiter").arg("event", &n).start();
    t.expect("timed true");
    t.join();
}

#[test]
fn a_waiter_killed_while_blocked_does_not_stop_set() {
    let _w = watchdog("event killed waiter", Duration::from_secs(60));
    let n = unique("evkill");
    let e = Event::create(&n).unwrap();
    let mut victim = spawn("event_waiter").arg("event", &n).start();
    victim.expect("waiting");
    std::thread::sleep(Duration::from_millis(100));
    victim.kill();
    let survivor = spawn("event_waiter").arg("event", &n).start();
    survivor.expect("waiting");
    std::thread::sleep(Duration::from_millis(100));
    e.set();
    survivor.expect("woke true");
    survivor.join();
}

#[test]
fn timeout_rules() {
    let e = Event::anonymous().unwrap();
    let t = Instant::now();
    assert!(!e.wait_timeout(Duration::ZERO));
    assert!(t.elapsed() < Duration::from_secs(1));
    let t = Instant::now();
    assert!(!e.wait_timeout(Duration::from_millis(100)));
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "early: {:?}",
        t.elapsed()
    );
    e.set();
    assert!(e.wait_timeout(Duration::ZERO));
    let other = unique("evkind");
    let _s = Semaphore::create(&other, 1).unwrap();
    assert!(matches!(
        Event::open(&other),
        Err(Error::KindMismatch { .. })
    ));
}
