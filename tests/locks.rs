//! `Lock` / `RLock` semantics: non-blocking and timed acquisition, holders
//! in other threads and other processes, relock by the holder, recursion,
//! release by a non-owner, and mutual exclusion across processes.
#![cfg(target_os = "linux")] // /dev/shm, procfs and mount namespaces

mod harness;
use harness::*;
use shmprim::*;

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The timeout used for "waits at least T" checks.
const T: Duration = Duration::from_millis(100);
/// The generous upper bound added to `T` (never a speed requirement).
const SLACK: Duration = Duration::from_secs(2);
/// How long a child waits for the parent's release signal.
const SIGNAL_WAIT: Duration = Duration::from_secs(30);

/// A short description of a lock result that a child can send as a message.
/// Dropping an `OwnerDied` here would make the lock not recoverable; the
/// tests only describe results that are not expected to be one.
fn describe<G>(r: LockResult<G>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(LockError::OwnerDied(_)) => "OwnerDied".to_owned(),
        Err(LockError::Failed(e)) => format!("{e:?}"),
    }
}

/// Asserts that `lock_timeout(T)` times out, not before `T`.
fn assert_times_out<G>(what: &str, f: impl FnOnce(Duration) -> LockResult<G>) {
    let start = Instant::now();
    let r = f(T);
    let took = start.elapsed();
    assert!(
        matches!(&r, Err(e) if e.is_timeout()),
        "{what}: lock_timeout(T) on a held lock gave {:?}",
        r.err()
    );
    assert!(
        took >= T,
        "{what}: lock_timeout({T:?}) gave up early, after {took:?}"
    );
    assert!(
        took < T + SLACK,
        "{what}: lock_timeout({T:?}) took {took:?}"
    );
}

/// Asserts that `lock_timeout(ZERO)` times out at once (well, without waiting
/// anything like the slack).
fn assert_zero_timeout<G>(what: &str, f: impl FnOnce(Duration) -> LockResult<G>) {
    let start = Instant::now();
    let r = f(Duration::ZERO);
    let took = start.elapsed();
    assert!(
        matches!(&r, Err(e) if e.is_timeout()),
        "{what}: lock_timeout(ZERO) on a held lock gave {:?}",
        r.err()
    );
    assert!(took < SLACK, "{what}: lock_timeout(ZERO) took {took:?}");
}

// ---------------------------------------------------------------------------
// Child roles
// ---------------------------------------------------------------------------

// Opens the named Lock (or RLock with kind=rlock), locks it, says "locked",
// waits for the parent's flag, then releases and says "released".
child!(fn hold_until_signalled(ctx) {
    let flag = AtomicValue::<u32>::open(&ctx.arg("flag"))?;
    let name = ctx.arg("lock");
    if ctx.arg("kind") == "rlock" {
        let lock = RLock::open(&name)?;
        let g = lock.lock().map_err(LockError::into_error)?;
        ctx.send("locked");
        gate_wait(&flag, SIGNAL_WAIT)?;
        drop(g);
    } else {
        let lock = Lock::open(&name)?;
        let g = lock.lock().map_err(LockError::into_error)?;
        ctx.send("locked");
        gate_wait(&flag, SIGNAL_WAIT)?;
        drop(g);
    }
    ctx.send("released");
});

// Calls release() on an RLock it does not hold, then try_lock, and reports both.
child!(fn release_not_owned(ctx) {
    let lock = RLock::open(&ctx.arg("lock"))?;
    match lock.release() {
        Ok(()) => ctx.send("release: ok"),
        Err(e) => ctx.send(&format!("release: {e:?}")),
    }
    ctx.send(&format!("try_lock: {}", describe(lock.try_lock())));
});

// n lock cycles on a Value guarded by a shared named Lock, each a
// non-atomic read-modify-write.
child!(fn rmw_value(ctx) {
    let v = Value::<u64>::open(&ctx.arg("value"))?;
    if v.shared_lock().is_none() {
        return Err("the opened value did not follow its lock link".into());
    }
    ctx.send("ready");
    for i in 0..ctx.parse::<u32>("n") {
        let mut g = v.lock().map_err(LockError::into_error)?;
        let x = *g;
        if i % 16 == 0 {
            // Give another process every chance to slip in between the read
            // and the write if the lock does not exclude it.
            std::thread::yield_now();
        }
        *g = x + 1;
    }
    ctx.send("done");
});

// ---------------------------------------------------------------------------
// 1. try_lock / lock_timeout while held
// ---------------------------------------------------------------------------

#[test]
fn try_lock_and_timeouts_when_held_by_another_thread() {
    let _w = watchdog(
        "try_lock_and_timeouts_when_held_by_another_thread",
        Duration::from_secs(20),
    );
    let name = unique("lkthr");
    let lock = Lock::create(&name).unwrap();
    let rname = unique("rlkthr");
    let rlock = RLock::create(&rname).unwrap();

    // Free: try_lock succeeds, and so does lock_timeout(ZERO).
    drop(lock.try_lock().expect("try_lock on a free lock"));
    drop(
        lock.lock_timeout(Duration::ZERO)
            .expect("lock_timeout(ZERO) on a free lock"),
    );
    drop(rlock.try_lock().expect("try_lock on a free rlock"));
    assert!(!lock.is_locked().unwrap());

    std::thread::scope(|s| {
        let (held_tx, held_rx) = mpsc::channel::<()>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (l, rl) = (&lock, &rlock);
        let holder = s.spawn(move || {
            let g = l.lock().unwrap();
            let rg = rl.lock().unwrap();
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            drop((g, rg));
        });
        held_rx.recv().unwrap();

        let r = lock.try_lock();
        assert!(
            matches!(&r, Err(e) if e.is_would_block()),
            "try_lock on a held lock: {:?}",
            r.err()
        );
        assert!(lock.is_locked().unwrap());
        assert_times_out("Lock held by a thread", |t| lock.lock_timeout(t));
        assert_zero_timeout("Lock held by a thread", |t| lock.lock_timeout(t));

        // An RLock is recursive only for its holder: another thread waits.
        let r = rlock.try_lock();
        assert!(
            matches!(&r, Err(e) if e.is_would_block()),
            "try_lock on a held rlock: {:?}",
            r.err()
        );
        assert_times_out("RLock held by a thread", |t| rlock.lock_timeout(t));
        assert_zero_timeout("RLock held by a thread", |t| rlock.lock_timeout(t));
        assert!(matches!(rlock.acquire_timeout(Duration::ZERO), Ok(None)));

        go_tx.send(()).unwrap();
        holder.join().unwrap();
    });

    drop(lock.try_lock().expect("try_lock after the holder released"));
    drop(
        rlock
            .try_lock()
            .expect("rlock try_lock after the holder released"),
    );
    assert!(!lock.is_locked().unwrap());
}

#[test]
fn try_lock_and_timeouts_when_held_by_a_child_process() {
    let _w = watchdog(
        "try_lock_and_timeouts_when_held_by_a_child_process",
        Duration::from_secs(30),
    );
    for kind in ["lock", "rlock"] {
        let name = unique("lkproc");
        let flag_name = unique("flag");
        let flag = AtomicValue::<u32>::create(&flag_name, 0).unwrap();
        // Keep whichever handle we made alive; test through closures.
        let (lock, rlock) = if kind == "lock" {
            (Some(Lock::create(&name).unwrap()), None)
        } else {
            (None, Some(RLock::create(&name).unwrap()))
        };
        let try_lock = || {
            describe(match (&lock, &rlock) {
                (Some(l), _) => l.try_lock(),
                (_, Some(r)) => r.try_lock(),
                _ => unreachable!(),
            })
        };
        let timed = |t: Duration| -> LockResult<()> {
            match (&lock, &rlock) {
                (Some(l), _) => l.lock_timeout(t).map(drop).map_err(|e| e.map(drop)),
                (_, Some(r)) => r.lock_timeout(t).map(drop).map_err(|e| e.map(drop)),
                _ => unreachable!(),
            }
        };
        let is_locked = || match (&lock, &rlock) {
            (Some(l), _) => l.is_locked().unwrap(),
            (_, Some(r)) => r.is_locked().unwrap(),
            _ => unreachable!(),
        };

        let child = spawn("hold_until_signalled")
            .arg("lock", &name)
            .arg("flag", &flag_name)
            .arg("kind", kind)
            .timeout(Duration::from_secs(20))
            .start();
        child.expect("locked");

        assert_eq!(
            try_lock(),
            "WouldBlock",
            "{kind}: try_lock while a child holds it"
        );
        assert!(is_locked(), "{kind}: is_locked while a child holds it");
        assert_times_out(kind, timed);
        assert_zero_timeout(kind, timed);

        gate_open(&flag);
        child.expect("released");
        child.join();

        assert_eq!(
            try_lock(),
            "ok",
            "{kind}: try_lock after the child released"
        );
        assert!(!is_locked(), "{kind}: is_locked after the child released");
    }
}

// ---------------------------------------------------------------------------
// 2. A child's lock seen from the parent
// ---------------------------------------------------------------------------

#[test]
fn lock_held_by_child_is_held_for_parent() {
    let _w = watchdog(
        "lock_held_by_child_is_held_for_parent",
        Duration::from_secs(20),
    );
    let name = unique("lkchild");
    let flag_name = unique("flag");
    let lock = Lock::create(&name).unwrap();
    let flag = AtomicValue::<u32>::create(&flag_name, 0).unwrap();
    assert!(!lock.is_locked().unwrap());

    let child = spawn("hold_until_signalled")
        .arg("lock", &name)
        .arg("flag", &flag_name)
        .arg("kind", "lock")
        .timeout(Duration::from_secs(15))
        .start();
    child.expect("locked");

    let r = lock.try_lock();
    assert!(
        matches!(&r, Err(e) if e.is_would_block()),
        "try_lock while the child holds it: {:?}",
        r.err()
    );
    drop(r);
    assert!(lock.is_locked().unwrap());
    let r = lock.acquire_timeout(Duration::ZERO);
    assert!(
        matches!(r, Ok(None)),
        "acquire_timeout(ZERO) while the child holds it: {r:?}"
    );

    gate_open(&flag);
    child.expect("released");
    child.join();

    assert!(!lock.is_locked().unwrap());
    let g = lock
        .try_lock()
        .expect("try_lock after the child released and exited");
    assert!(lock.is_locked().unwrap());
    drop(g);
    assert!(!lock.is_locked().unwrap());
}

// ---------------------------------------------------------------------------
// 3. Relock by the holder
// ---------------------------------------------------------------------------

#[test]
fn relocking_a_lock_from_its_holder_is_deadlock() {
    let _w = watchdog(
        "relocking_a_lock_from_its_holder_is_deadlock",
        Duration::from_secs(20),
    );
    let name = unique("lkdead");
    let lock = Lock::create(&name).unwrap();

    let g = lock.lock().unwrap();
    let is_deadlock =
        |r: &LockResult<LockGuard<'_>>| matches!(r, Err(LockError::Failed(Error::Deadlock)));
    let r = lock.lock();
    assert!(
        is_deadlock(&r),
        "lock() from the holder: {:?}",
        r.as_ref().err()
    );
    drop(r);
    let r = lock.lock_timeout(T);
    assert!(
        is_deadlock(&r),
        "lock_timeout() from the holder: {:?}",
        r.as_ref().err()
    );
    drop(r);
    let r = lock.lock_timeout(Duration::ZERO);
    assert!(
        is_deadlock(&r),
        "lock_timeout(ZERO) from the holder: {:?}",
        r.as_ref().err()
    );
    drop(r);
    let r = lock.try_lock();
    assert!(
        is_deadlock(&r),
        "try_lock() from the holder: {:?}",
        r.as_ref().err()
    );
    drop(r);
    let r = lock.acquire();
    assert!(
        matches!(r, Err(Error::Deadlock)),
        "acquire() from the holder: {r:?}"
    );

    // The failed attempts changed nothing: still held, for another thread too.
    assert!(lock.is_locked().unwrap());
    std::thread::scope(|s| {
        let r = s.spawn(|| describe(lock.try_lock())).join().unwrap();
        assert_eq!(
            r, "WouldBlock",
            "another thread while the holder's relock failed"
        );
    });
    drop(g);
    assert!(!lock.is_locked().unwrap());
    std::thread::scope(|s| {
        let r = s.spawn(|| describe(lock.try_lock())).join().unwrap();
        assert_eq!(r, "ok", "another thread after the holder released");
    });

    // acquire()/release() path: the same.
    assert!(matches!(lock.acquire(), Ok(Acquire::Clean)));
    assert!(matches!(lock.acquire(), Err(Error::Deadlock)));
    lock.release().unwrap();
    assert!(matches!(lock.release(), Err(Error::NotOwner)));
    assert!(!lock.is_locked().unwrap());
}

// ---------------------------------------------------------------------------
// 4. RLock recursion and release by a non-owner
// ---------------------------------------------------------------------------

/// What another thread sees when it tries `rlock`.
fn other_thread_try(rlock: &RLock) -> String {
    std::thread::scope(|s| s.spawn(|| describe(rlock.try_lock())).join().unwrap())
}

#[test]
fn rlock_recursion_with_guards() {
    let _w = watchdog("rlock_recursion_with_guards", Duration::from_secs(20));
    let name = unique("rlrec");
    let rlock = RLock::create(&name).unwrap();

    let a = rlock.lock().expect("first lock");
    let b = rlock
        .try_lock()
        .expect("second lock (try_lock) by the holder");
    let c = rlock
        .lock_timeout(T)
        .expect("third lock (lock_timeout) by the holder");
    assert_eq!(other_thread_try(&rlock), "WouldBlock");
    drop(c);
    assert_eq!(other_thread_try(&rlock), "WouldBlock", "held twice");
    drop(a); // order of drops does not matter: it is a count
    assert_eq!(other_thread_try(&rlock), "WouldBlock", "held once");
    assert!(rlock.is_locked().unwrap());
    drop(b);
    assert!(!rlock.is_locked().unwrap());
    assert_eq!(
        other_thread_try(&rlock),
        "ok",
        "after all three guards dropped"
    );
}

#[test]
fn rlock_recursion_with_acquire_release() {
    let _w = watchdog(
        "rlock_recursion_with_acquire_release",
        Duration::from_secs(20),
    );
    let name = unique("rlacq");
    let rlock = RLock::create(&name).unwrap();

    for i in 0..3 {
        let a = rlock
            .acquire()
            .unwrap_or_else(|e| panic!("acquire #{}: {e:?}", i + 1));
        assert_eq!(a, Acquire::Clean);
    }
    for left in (0..3).rev() {
        assert_eq!(
            other_thread_try(&rlock),
            "WouldBlock",
            "{} levels held",
            left + 1
        );
        rlock
            .release()
            .unwrap_or_else(|e| panic!("release with {} levels held: {e:?}", left + 1));
    }
    let r = rlock.release();
    assert!(matches!(r, Err(Error::NotOwner)), "a 4th release: {r:?}");
    assert!(!rlock.is_locked().unwrap());
    assert_eq!(other_thread_try(&rlock), "ok");

    // Usable as before.
    assert_eq!(rlock.acquire().unwrap(), Acquire::Clean);
    rlock.release().unwrap();
    assert!(matches!(rlock.release(), Err(Error::NotOwner)));
}

#[test]
fn release_by_a_non_owner_thread_is_refused() {
    let _w = watchdog(
        "release_by_a_non_owner_thread_is_refused",
        Duration::from_secs(20),
    );
    let rname = unique("rlnotown");
    let rlock = RLock::create(&rname).unwrap();
    let name = unique("lknotown");
    let lock = Lock::create(&name).unwrap();

    std::thread::scope(|s| {
        let (held_tx, held_rx) = mpsc::channel::<()>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (l, rl) = (&lock, &rlock);
        let a = s.spawn(move || {
            assert_eq!(rl.acquire().unwrap(), Acquire::Clean);
            assert_eq!(l.acquire().unwrap(), Acquire::Clean);
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            // Thread A still owns both: its releases work.
            rl.release().expect("owner's rlock release");
            l.release().expect("owner's lock release");
        });
        held_rx.recv().unwrap();

        // Thread B (this one) does not hold them.
        let r = rlock.release();
        assert!(
            matches!(r, Err(Error::NotOwner)),
            "rlock release by a non-owner: {r:?}"
        );
        let r = lock.release();
        assert!(
            matches!(r, Err(Error::NotOwner)),
            "lock release by a non-owner: {r:?}"
        );
        // ... and nothing was released.
        assert_eq!(describe(rlock.try_lock()), "WouldBlock");
        assert_eq!(describe(lock.try_lock()), "WouldBlock");
        assert!(rlock.is_locked().unwrap());
        assert!(lock.is_locked().unwrap());
        let r = rlock.make_consistent();
        assert!(
            r.is_err(),
            "make_consistent by a non-owner of a clean lock: {r:?}"
        );

        go_tx.send(()).unwrap();
        a.join().unwrap();
    });
    assert_eq!(describe(rlock.try_lock()), "ok");
    assert_eq!(describe(lock.try_lock()), "ok");
}

#[test]
fn release_by_a_non_owner_process_is_refused() {
    let _w = watchdog(
        "release_by_a_non_owner_process_is_refused",
        Duration::from_secs(20),
    );
    let name = unique("rlnotownp");
    let rlock = RLock::create(&name).unwrap();
    assert_eq!(rlock.acquire().unwrap(), Acquire::Clean);

    let child = spawn("release_not_owned")
        .arg("lock", &name)
        .timeout(Duration::from_secs(15))
        .start();
    child.expect("release: NotOwner");
    child.expect("try_lock: WouldBlock");
    child.join();

    // Still ours, once.
    assert!(rlock.is_locked().unwrap());
    assert_eq!(other_thread_try(&rlock), "WouldBlock");
    rlock
        .release()
        .expect("the owner's release after the child's refused one");
    assert!(!rlock.is_locked().unwrap());
    assert!(matches!(rlock.release(), Err(Error::NotOwner)));
}

// ---------------------------------------------------------------------------
// 5. Mutual exclusion across processes
// ---------------------------------------------------------------------------

#[test]
fn shared_lock_excludes_across_processes() {
    let _w = watchdog(
        "shared_lock_excludes_across_processes",
        Duration::from_secs(60),
    );
    const PROCS: u64 = 3;
    const N: u64 = 1000;
    let lock_name = unique("mxlock");
    let value_name = unique("mxvalue");
    let lock = Lock::create(&lock_name).unwrap();
    let v = Value::<u64>::create_with_lock(&value_name, 0, &lock, &Options::new()).unwrap();

    // The value really is guarded by the named lock, in this process.
    {
        let held = lock.lock().unwrap();
        // From the holding thread, a non-recursive lock refuses the relock...
        let r = v.try_lock();
        assert!(
            matches!(&r, Err(LockError::Failed(Error::Deadlock))),
            "value try_lock by the shared lock's holder: {:?}",
            r.err()
        );
        drop(r);
        // ... and another thread finds it taken.
        let other = std::thread::scope(|s| s.spawn(|| describe(v.try_lock())).join().unwrap());
        assert_eq!(
            other, "WouldBlock",
            "value try_lock from another thread under its shared lock"
        );
        drop(held);
        let g = v.lock().unwrap();
        assert!(
            lock.is_locked().unwrap(),
            "the value's guard holds the shared lock"
        );
        drop(g);
    }

    let kids: Vec<_> = (0..PROCS)
        .map(|_| {
            spawn("rmw_value")
                .arg("value", &value_name)
                .arg("n", N)
                .timeout(Duration::from_secs(45))
                .start()
        })
        .collect();
    for k in &kids {
        k.expect("ready");
    }
    for k in &kids {
        k.expect("done");
    }
    join_all(kids);
    assert_eq!(v.get().unwrap(), PROCS * N);
    assert!(!lock.is_locked().unwrap());
}

/// Whether `r` is the one answer to "nothing to mend".
fn nothing_to_mend<T: std::fmt::Debug>(r: Result<T>) -> bool {
    matches!(r, Err(Error::InvalidArgument(_)))
}

/// `make_consistent` on a lock with nothing to mend answers
/// `InvalidArgument` (POSIX's `EINVAL`) on every path: `Lock`, `RLock`,
/// `RawMutex`, a guard of each handle, `Condition`, and a second repair of
/// a lock already repaired; held or not, by its holder or another thread.
#[test]
fn make_consistent_with_nothing_to_mend_is_invalid_argument_everywhere() {
    use shmprim::raw::RecoverableGuard;
    let lock = Lock::anonymous().unwrap();
    let rlock = RLock::anonymous().unwrap();
    assert!(nothing_to_mend(lock.make_consistent()), "Lock, free");
    assert!(nothing_to_mend(rlock.make_consistent()), "RLock, free");
    let mut g = lock.lock().unwrap();
    assert!(
        nothing_to_mend(lock.make_consistent()),
        "Lock, held by guard"
    );
    assert!(nothing_to_mend(g.mark_consistent()), "Lock guard");
    drop(g);
    assert_eq!(rlock.acquire().unwrap(), Acquire::Clean);
    assert!(nothing_to_mend(rlock.make_consistent()), "RLock, acquired");
    assert!(nothing_to_mend(rlock.raw().make_consistent()), "RawMutex");
    std::thread::scope(|s| {
        let r = s.spawn(|| rlock.make_consistent()).join().unwrap();
        assert!(nothing_to_mend(r), "RLock, by another thread");
    });
    rlock.release().unwrap();

    let v = Value::<u64>::anonymous(1).unwrap();
    assert!(
        nothing_to_mend(v.lock().unwrap().mark_consistent()),
        "Value guard"
    );
    let a = Array::<u8>::anonymous(4).unwrap();
    assert!(
        nothing_to_mend(a.lock().unwrap().mark_consistent()),
        "Array guard"
    );
    let c = Condition::anonymous().unwrap();
    let mut g = c.lock().unwrap();
    assert!(nothing_to_mend(c.make_consistent(&mut g)), "Condition");
    drop(g);

    // A real repair succeeds once; the second has nothing to mend.
    let l2 = lock.clone();
    std::thread::spawn(move || std::mem::forget(l2.lock().unwrap()))
        .join()
        .unwrap();
    let g = match lock.lock_timeout(Duration::from_secs(10)) {
        Err(LockError::OwnerDied(d)) => d.make_consistent().unwrap(),
        other => panic!("{:?}", other.map(drop)),
    };
    let mut g = g;
    assert!(nothing_to_mend(g.mark_consistent()), "a second repair");
    drop(g);
    assert!(lock.try_lock().is_ok());
}
