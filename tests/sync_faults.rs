//! Faults in the sync primitives found in review, each checked here as a
//! regression test: a condition wait that would release a `Value` guard's
//! level, a failed re-lock leaving an armed guard, a reset generation
//! reported as tripped, a zombie waiter absorbing a notify, and a barrier
//! tripper killed in its action.
#![cfg(target_os = "linux")]

mod harness;
use harness::*;
use shmprim::*;

use std::time::{Duration, Instant};

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(30), "never: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------- condition

/// A condition wait on a shared `RLock` while a `ValueGuard` of the same
/// lock is alive would release the guard's level: another thread could
/// then lock the value and write it under the guard's `&mut T`. The wait
/// is refused with `Deadlock`, nothing released (the value stays locked),
/// and every level is still there afterwards.
#[test]
fn condition_wait_refuses_while_a_value_guard_holds_the_lock() {
    use std::sync::mpsc::channel;
    let _w = watchdog("value guard wait", Duration::from_secs(30));
    let rl = RLock::anonymous().unwrap();
    let v = Value::<u64>::anonymous_with_lock(0, &rl).unwrap();
    let a = Array::<u32>::anonymous_with_lock(4, &rl).unwrap();
    let c = Condition::anonymous_with_lock(&rl).unwrap();
    let (v2, a2, c2) = (v.clone(), a.clone(), c.clone());
    let (tx, rx) = channel();
    let (go_tx, go_rx) = channel::<()>();
    let t = std::thread::spawn(move || {
        let mut vg = v2.lock().unwrap();
        *vg = 1;
        let mut g = c2.lock().unwrap(); // a second level of the RLock
        let r = c2.wait_timeout(&mut g, Duration::from_millis(500));
        tx.send(format!("{r:?}")).unwrap();
        go_rx.recv().unwrap();
        let seen = *vg;
        drop(g);
        drop(vg);
        // The same through an Array guard.
        let ag = a2.lock().unwrap();
        let mut g = c2.lock().unwrap();
        let r2 = c2.wait_timeout(&mut g, Duration::from_millis(10));
        drop(g);
        drop(ag);
        // With no data guard, the wait works.
        let mut g = c2.lock().unwrap();
        let r3 = c2.wait_timeout(&mut g, Duration::from_millis(10));
        (seen, format!("{r2:?}"), format!("{r3:?}"))
    });
    let r = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(r, "Err(Deadlock)");
    // The value is still locked by the other thread.
    assert!(v.try_lock().unwrap_err().is_would_block());
    assert!(c.try_lock().unwrap_err().is_would_block());
    go_tx.send(()).unwrap();
    let (seen, r2, r3) = t.join().unwrap();
    assert_eq!(seen, 1, "the value changed under a live guard");
    assert_eq!(r2, "Err(Deadlock)");
    assert_eq!(r3, "Ok(false)");
    // Every level was given back.
    drop(v.try_lock().unwrap());
}

/// After a condition wait whose re-lock fails (here: `Corrupt`, a lock word
/// naming no possible thread), the caller's guard no longer holds the lock
/// and must be inert: a peer that then forges the word to name the waiting
/// thread exactly (its id and start-time stamp) must not make the guard's
/// drop release the lock in that thread's name.
#[cfg(target_os = "linux")]
#[test]
fn a_guard_whose_relock_failed_is_inert() {
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};
    use std::sync::mpsc::channel;
    let _w = watchdog("failed relock", Duration::from_secs(30));
    let c = Condition::anonymous().unwrap();
    // The lock word: RawMutex at object offset 0, its lock word at 8 (the
    // futex, with the owner's thread id, is the low half).
    let lw = c.segment().data_ptr() as usize + 8;
    let (tx, rx) = channel();
    let (go_tx, go_rx) = channel::<()>();
    let c2 = c.clone();
    let t = std::thread::spawn(move || {
        let mut g = c2.lock().unwrap();
        // SAFETY: the lock word, 8-aligned, inside the mapping `c2` keeps.
        let owned = unsafe { &*(lw as *const AtomicU64) }.load(SeqCst);
        let r = c2.wait(&mut g);
        let again = c2.wait_timeout(&mut g, Duration::ZERO);
        let notify = c2.notify(&g, 1);
        tx.send((owned, format!("{r:?} {again:?} {notify:?}")))
            .unwrap();
        go_rx.recv().unwrap();
        drop(g); // the caller drops its guard after the error, as `?` would
    });
    eventually("waiting", || c.n_waiting() == 1);
    let g = c.lock().unwrap();
    c.notify(&g, 1).unwrap();
    std::mem::forget(g);
    // SAFETY: the low half of the lock word, 4-aligned, inside the mapping.
    let low = unsafe { &*(lw as *const AtomicU32) };
    low.store(0x3fff_fff0, SeqCst); // no possible thread id
    let (owned, r) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(
        r,
        "Err(Corrupt(\"mutex lock word names no possible thread\")) Err(NotOwner) Err(NotOwner)"
    );
    // The "peer" forges the word to name the waiter exactly.
    // SAFETY: as above.
    let word = unsafe { &*(lw as *const AtomicU64) };
    word.store(owned, SeqCst);
    go_tx.send(()).unwrap();
    t.join().unwrap();
    assert_eq!(
        word.load(SeqCst),
        owned,
        "an inert guard released a lock word forged to name its thread"
    );
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

/// A waiter SIGKILLed but not yet reaped (a zombie) is dead: it must not
/// absorb a `notify(1)` while a live waiter sleeps on.
#[test]
fn a_zombie_waiter_absorbs_no_notify() {
    let _w = watchdog("zombie waiter", Duration::from_secs(60));
    let (n, w) = (unique("zc"), unique("zw"));
    let c = Condition::create(&n).unwrap();
    let woken = AtomicValue::<u32>::create(&w, 0).unwrap();
    let mut victim = spawn("cond_waiter")
        .arg("cond", &n)
        .arg("woken", &w)
        .start();
    victim.expect("waiting");
    eventually("victim waiting", || c.n_waiting() == 1);
    let survivor = spawn("cond_waiter")
        .arg("cond", &n)
        .arg("woken", &w)
        .start();
    survivor.expect("waiting");
    eventually("2 waiting", || c.n_waiting() == 2);
    // Kill without reaping (a busy parent, or PID 1 in a container that
    // never reaps).
    // SAFETY: signals our own child.
    unsafe { libc::kill(victim.pid() as i32, libc::SIGKILL) };
    let zombie = format!("/proc/{}/stat", victim.pid());
    // A zombie whose every thread has gone (state Z, num_threads 1): its
    // main thread shows Z while other threads may still be exiting, and
    // until they have, the process counts as alive.
    eventually("victim a zombie", || {
        std::fs::read_to_string(&zombie).is_ok_and(|s| {
            let rest: Vec<&str> = s
                .rsplit_once(") ")
                .map_or(vec![], |(_, r)| r.split(' ').collect());
            rest.first() == Some(&"Z") && rest.get(17) == Some(&"1")
        })
    });
    let n1 = {
        let g = c.lock().unwrap();
        c.notify(&g, 1).unwrap()
    };
    eventually("survivor woken", || woken.load() == 1);
    victim.kill(); // reap now
    survivor.expect("woken");
    survivor.join();
    assert_eq!(n1, 1);
    assert_eq!(c.n_waiting(), 0);
}

// ---------------------------------------------------------------- barrier

child!(fn bar_tripper(ctx) {
    let b = Barrier::open(&ctx.arg("barrier"))?;
    let gate = AtomicValue::<u32>::open(&ctx.arg("gate"))?;
    let r = b.wait_with_action(|| {
        ctx.send("in action");
        while gate.load() == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    ctx.send(&format!("tripper {r:?}"));
});

child!(fn bar_waiter(ctx) {
    let b = Barrier::open(&ctx.arg("barrier"))?;
    ctx.send("arriving");
    let r = b.wait();
    ctx.send(&format!("waiter {r:?}"));
});

/// A tripper whose generation `g` was reset under its action finishes it
/// after `g + 1` was reset too: a waiter of `g + 1` must still get
/// `BrokenBarrier` (the stale trip must not erase the reset mark of the
/// later generation and make a reset generation look tripped).
#[test]
fn a_reset_generation_is_never_reported_as_tripped() {
    let _w = watchdog("reset tags", Duration::from_secs(60));
    let (n, gname) = (unique("rbar"), unique("rgate"));
    let b = Barrier::create(&n, 2, None).unwrap();
    let gate = AtomicValue::<u32>::create(&gname, 0).unwrap();
    // Party A (a thread here) arrives in g0.
    let b2 = b.clone();
    let a = std::thread::spawn(move || b2.wait());
    eventually("A waiting", || b.n_waiting() == 1);
    // Party B trips g0 and blocks in its action.
    let tripper = spawn("bar_tripper")
        .arg("barrier", &n)
        .arg("gate", &gname)
        .start();
    tripper.expect("in action");
    b.reset(); // g0 broken + reset -> g1
    assert!(matches!(a.join().unwrap(), Err(Error::BrokenBarrier)));
    // C arrives in g1 and sleeps; stop it there.
    let waiter = spawn("bar_waiter").arg("barrier", &n).start();
    waiter.expect("arriving");
    eventually("C waiting", || b.n_waiting() == 1);
    std::thread::sleep(Duration::from_millis(50));
    // SAFETY: signals our own child.
    unsafe { libc::kill(waiter.pid() as i32, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_millis(50));
    b.reset(); // g1 broken + reset -> g2: C must get BrokenBarrier
    gate.store(1); // B's action ends; its trip of g0 fails
    let m = tripper.recv(Duration::from_secs(10)).unwrap();
    assert_eq!(m, "tripper Err(BrokenBarrier)");
    // SAFETY: signals our own child.
    unsafe { libc::kill(waiter.pid() as i32, libc::SIGCONT) };
    let m = waiter.recv(Duration::from_secs(10)).unwrap();
    assert_eq!(
        m, "waiter Err(BrokenBarrier)",
        "a reset generation reported as tripped"
    );
    tripper.join();
    waiter.join();
}

/// A tripper SIGKILLed inside its action leaves its generation full for
/// ever: a waiter without a timeout notices the death (the tripper's
/// record: pid and start time) and breaks the barrier.
#[test]
fn a_tripper_killed_in_its_action_breaks_the_barrier() {
    let _w = watchdog("dead tripper", Duration::from_secs(60));
    let (n, gname) = (unique("kbar"), unique("kgate"));
    let b = Barrier::create(&n, 2, None).unwrap();
    let _gate = AtomicValue::<u32>::create(&gname, 0).unwrap();
    let b2 = b.clone();
    let a = std::thread::spawn(move || b2.wait());
    eventually("A waiting", || b.n_waiting() == 1);
    let mut tripper = spawn("bar_tripper")
        .arg("barrier", &n)
        .arg("gate", &gname)
        .start();
    tripper.expect("in action");
    // SAFETY: signals our own child; not reaped yet (a zombie is dead too).
    unsafe { libc::kill(tripper.pid() as i32, libc::SIGKILL) };
    assert!(matches!(a.join().unwrap(), Err(Error::BrokenBarrier)));
    tripper.kill();
    assert!(b.is_broken());
    b.reset();
    assert!(!b.is_broken());
}
