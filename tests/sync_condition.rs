//! `Condition` across processes: exact wake counts, no credit, `wait_for`
//! with a timeout, a shared `RLock`'s depth restored, wrong guards, and a
//! waiter killed while waiting.
#![cfg(target_os = "linux")]

mod harness;
use harness::*;
use shmprim::*;

use std::time::{Duration, Instant};

/// Polls `f` until true (a hang fails the test instead of spinning for ever).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(30), "never: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

child!(fn cond_waiter(ctx) {
    let c = Condition::open(&ctx.arg("cond"))?;
    let woken = AtomicValue::<u32>::open(&ctx.arg("woken"))?;
    let mut g = c.lock().map_err(LockError::into_error)?;
    ctx.send("waiting");
    c.wait(&mut g)?;
    woken.fetch_add(1);
    drop(g);
    ctx.send("woken");
});

#[test]
fn notify_2_then_4_wakes_exactly_2_then_4_of_6() {
    let _w = watchdog("condition notify counts", Duration::from_secs(60));
    let (n, w) = (unique("cond"), unique("woken"));
    let c = Condition::create(&n).unwrap();
    let woken = AtomicValue::<u32>::create(&w, 0).unwrap();
    let kids: Vec<_> = (0..6)
        .map(|_| {
            spawn("cond_waiter")
                .arg("cond", &n)
                .arg("woken", &w)
                .start()
        })
        .collect();
    for k in &kids {
        k.expect("waiting");
    }
    eventually("6 waiting", || c.n_waiting() == 6);
    {
        let g = c.lock().unwrap();
        assert_eq!(c.notify(&g, 2).unwrap(), 2);
    }
    eventually("2 woken", || woken.load() == 2);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(woken.load(), 2, "more than 2 woke");
    assert_eq!(c.n_waiting(), 4);
    {
        let g = c.lock().unwrap();
        assert_eq!(c.notify(&g, 4).unwrap(), 4);
    }
    join_all(kids);
    assert_eq!(woken.load(), 6);
    // Nobody waits: a notify leaves no credit behind.
    let mut g = c.lock().unwrap();
    assert_eq!(c.notify_all(&g).unwrap(), 0);
    let t = Instant::now();
    assert!(!c.wait_timeout(&mut g, Duration::from_millis(100)).unwrap());
    assert!(t.elapsed() >= Duration::from_millis(100));
}

child!(fn cond_flag_setter(ctx) {
    let c = Condition::open(&ctx.arg("cond"))?;
    let flag = AtomicValue::<u32>::open(&ctx.arg("flag"))?;
    std::thread::sleep(Duration::from_millis(100));
    let g = c.lock().map_err(LockError::into_error)?;
    flag.store(1);
    c.notify_all(&g)?;
    drop(g);
    ctx.send("notified");
});

#[test]
fn wait_for_with_a_timeout() {
    let _w = watchdog("condition wait_for", Duration::from_secs(60));
    let (n, f) = (unique("condwf"), unique("flag"));
    let c = Condition::create(&n).unwrap();
    let flag = AtomicValue::<u32>::create(&f, 0).unwrap();
    let mut g = c.lock().unwrap();
    // Times out, not early, returning the predicate's last value.
    let t = Instant::now();
    assert!(!c
        .wait_for(&mut g, || flag.load() == 1, Duration::from_millis(100))
        .unwrap());
    assert!(t.elapsed() >= Duration::from_millis(100));
    // Zero: evaluates once.
    assert!(!c
        .wait_for(&mut g, || flag.load() == 1, Duration::ZERO)
        .unwrap());
    let kid = spawn("cond_flag_setter")
        .arg("cond", &n)
        .arg("flag", &f)
        .start();
    assert!(c
        .wait_for(&mut g, || flag.load() == 1, Duration::from_secs(20))
        .unwrap());
    drop(g);
    kid.expect("notified");
    kid.join();
}

#[test]
fn a_recursive_lock_is_released_fully_and_its_depth_restored() {
    let _w = watchdog("condition rlock depth", Duration::from_secs(60));
    let (l, n, f) = (unique("rlock"), unique("condr"), unique("flag"));
    let rlock = RLock::create(&l).unwrap();
    let c = Condition::create_with_lock(&n, &rlock).unwrap();
    let flag = AtomicValue::<u32>::create(&f, 0).unwrap();
    let g1 = c.lock().unwrap();
    let mut g2 = c.lock().unwrap(); // depth 2 through guards
    let _ = rlock.acquire().unwrap(); // and 3 through acquire()
                                      // The child opens the condition by name and finds the linked RLock; it
                                      // can only set the flag if our wait released all three levels.
    let kid = spawn("cond_flag_setter")
        .arg("cond", &n)
        .arg("flag", &f)
        .start();
    c.wait_while(&mut g2, || flag.load() == 0).unwrap();
    kid.expect("notified");
    kid.join();
    // Depth restored: the acquire() level, then two guards.
    rlock.release().unwrap();
    drop(g2);
    assert!(rlock.is_locked().unwrap(), "released too early");
    drop(g1);
    assert!(!rlock.is_locked().unwrap());
    assert!(matches!(rlock.release(), Err(Error::NotOwner)));
}

#[test]
fn a_guard_of_another_lock_is_not_owner() {
    let c = Condition::anonymous().unwrap();
    let other = Lock::anonymous().unwrap();
    let mut g = other.lock().unwrap();
    assert!(matches!(
        c.wait_timeout(&mut g, Duration::ZERO),
        Err(Error::NotOwner)
    ));
    assert!(matches!(c.notify_all(&g), Err(Error::NotOwner)));
    // An anonymous lock cannot be linked from a named condition.
    assert!(matches!(
        Condition::create_with_lock(&unique("x"), &other),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_waiter_killed_while_waiting_absorbs_no_notify() {
    let _w = watchdog("condition killed waiter", Duration::from_secs(60));
    let (n, w) = (unique("condk"), unique("woken"));
    let c = Condition::create(&n).unwrap();
    let woken = AtomicValue::<u32>::create(&w, 0).unwrap();
    // The victim waits first: it is the oldest, the one notify(1) picks.
    let mut victim = spawn("cond_waiter")
        .arg("cond", &n)
        .arg("woken", &w)
        .start();
    victim.expect("waiting");
    eventually("victim waiting", || c.n_waiting() == 1);
    let survivors: Vec<_> = (0..2)
        .map(|_| {
            spawn("cond_waiter")
                .arg("cond", &n)
                .arg("woken", &w)
                .start()
        })
        .collect();
    for s in &survivors {
        s.expect("waiting");
    }
    eventually("3 waiting", || c.n_waiting() == 3);
    victim.kill();
    {
        let g = c.lock().unwrap();
        assert_eq!(c.notify(&g, 1).unwrap(), 1);
    }
    eventually("one survivor woken", || woken.load() == 1);
    {
        let g = c.lock().unwrap();
        assert_eq!(c.notify_all(&g).unwrap(), 1);
    }
    join_all(survivors);
    assert_eq!(woken.load(), 2);
    assert_eq!(c.n_waiting(), 0);
}

child!(fn cond_waiter_repairs(ctx) {
    let c = Condition::open(&ctx.arg("cond"))?;
    let mut g = c.lock().map_err(LockError::into_error)?;
    ctx.send("waiting");
    match c.wait(&mut g) {
        Err(Error::OwnerDied) => {
            // The lock is ours again, from a dead holder: repair, then say so.
            c.make_consistent(&mut g)?;
            ctx.send("repaired");
        }
        other => ctx.send(&format!("unexpected {other:?}")),
    }
});

child!(fn cond_notify_and_hold(ctx) {
    let c = Condition::open(&ctx.arg("cond"))?;
    let g = c.lock().map_err(LockError::into_error)?;
    c.notify_all(&g)?;
    ctx.send("holding");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
});

#[test]
fn a_notifier_dying_with_the_lock_hands_it_to_the_waiter_as_owner_died() {
    let _w = watchdog("condition owner died", Duration::from_secs(60));
    let n = unique("condod");
    let c = Condition::create(&n).unwrap();
    let waiter = spawn("cond_waiter_repairs").arg("cond", &n).start();
    waiter.expect("waiting");
    eventually("waiting", || c.n_waiting() == 1);
    let mut notifier = spawn("cond_notify_and_hold").arg("cond", &n).start();
    notifier.expect("holding");
    notifier.kill();
    waiter.expect("repaired");
    waiter.join();
    // Repaired: the lock works normally.
    let g = c.lock().unwrap();
    assert_eq!(c.notify_all(&g).unwrap(), 0);
}

/// Python's `Condition()` makes its own lock an `RLock`: the holder takes
/// it again, and a wait releases every level (another thread takes the
/// lock meanwhile) and takes them all back.
#[test]
fn a_condition_made_without_a_lock_has_a_recursive_one() {
    let c = Condition::anonymous().unwrap();
    let flag = AtomicValue::<u32>::anonymous(0).unwrap();
    let mut outer = c.lock().unwrap();
    let inner = c
        .lock()
        .expect("the holder takes its condition's lock again");
    let (c2, f2) = (c.clone(), flag.clone());
    let notifier = std::thread::spawn(move || {
        let g = c2.lock().unwrap();
        f2.store(1);
        c2.notify_all(&g).unwrap();
    });
    let woke = c
        .wait_for(&mut outer, || flag.load() == 1, Duration::from_secs(20))
        .unwrap();
    assert!(woke, "the notifier never got the lock: a level stayed held");
    notifier.join().unwrap();
    drop(inner);
    // Still held (the outer level): another thread cannot take it.
    std::thread::scope(|s| {
        let busy = s
            .spawn(|| c.try_lock().is_err_and(|e| e.is_would_block()))
            .join()
            .unwrap();
        assert!(busy);
    });
    drop(outer);
    drop(c.try_lock().unwrap());
    let name = unique("condrl");
    let named = Condition::create(&name).unwrap();
    let opened = Condition::open(&name).unwrap();
    let g = opened.lock().unwrap();
    drop(opened.lock().expect("recursive when opened too"));
    drop(g);
    drop(named);
}
