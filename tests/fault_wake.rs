//! A process SIGKILLed between changing a futex word and waking its
//! sleepers (semaphore release, event set, condition notify, barrier trip,
//! lock release), a barrier party killed between its arrival and its sleep,
//! and a lock holder killed with the lock word taken but its process-local
//! bookkeeping not done.
//!
//! The victim child installs a fault hook (`shmprim::fault::set_hook`) that
//! stops it at one named point: it raises a shared flag and sleeps until
//! the parent kills it. The sleepers, in other processes, never get the
//! wake-up the victim owed them; they must still return, within a bound
//! (they sleep in slices of at most 200 ms and re-check the word: the bound
//! asserted here, [`WAKE_BOUND`], is generous slack over that on a loaded
//! CI box), with a consistent state.
#![cfg(all(target_os = "linux", feature = "fault-injection"))]

mod harness;
use harness::*;
use shmprim::*;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long survivors may take to notice a wake-up that never came (one
/// 200 ms slice in principle).
const WAKE_BOUND: Duration = Duration::from_secs(5);
/// How long a waiter is given to fall asleep before the victim acts.
const SETTLE: Duration = Duration::from_millis(300);

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(30), "never: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---------------------------------------------------------------- the hook

/// The point this child stops at, and the flag that tells the parent.
static STOP: OnceLock<(String, AtomicValue<u32>)> = OnceLock::new();

/// The fault hook: at the armed point, raise the flag and sleep until
/// killed; every other point passes.
fn stop_here(point: &'static str) {
    if let Some((want, at)) = STOP.get() {
        if point == want {
            at.store(1);
            let _ = at.wake_all();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// In a victim child: stop at the point named by the `point` argument.
fn arm(ctx: &Ctx) -> Result<()> {
    let at = AtomicValue::<u32>::open(&ctx.arg("at"))?;
    assert!(STOP.set((ctx.arg("point"), at)).is_ok(), "armed twice");
    shmprim::fault::set_hook(Some(stop_here));
    Ok(())
}

/// Starts `victim` (a role that calls [`arm`]) stopping at `point`, waits
/// until it is there, and kills it. The child's extra arguments: `args`.
fn kill_at(role: &str, point: &str, args: &[(&str, &str)]) {
    stop_at(role, point, args).kill();
}

/// [`kill_at`] without the kill: the victim, stopped at `point`.
fn stop_at(role: &str, point: &str, args: &[(&str, &str)]) -> Child {
    let at_name = unique("fwat");
    let at = AtomicValue::<u32>::create(&at_name, 0).unwrap();
    let mut s = spawn(role).arg("point", point).arg("at", &at_name);
    for (k, v) in args {
        s = s.arg(k, v);
    }
    let victim = s.start();
    if let Err(e) = gate_wait(&at, Duration::from_secs(30)) {
        panic!("victim never reached {point}: {e:?}\n{}", victim.output());
    }
    victim
}

// ---------------------------------------------------------------- semaphore

child!(fn sem_acquirer(ctx) {
    let s = Semaphore::open(&ctx.arg("sem"))?;
    let got = AtomicValue::<u32>::open(&ctx.arg("got"))?;
    ctx.send("waiting");
    s.acquire()?;
    got.fetch_add(1);
});

child!(fn sem_releaser(ctx) {
    let s = Semaphore::open(&ctx.arg("sem"))?;
    arm(ctx)?;
    s.release()?;
    return Err("released past the fault point".into());
});

/// A releaser killed after counting its permit, before waking: one of the
/// two sleepers takes the permit within the bound; no permit is lost or
/// duplicated (the second sleeper gets exactly the next release).
#[test]
fn semaphore_releaser_killed_before_its_wake() {
    let _w = watchdog("semaphore_releaser_killed", Duration::from_secs(60));
    let (sn, gn) = (unique("fwsem"), unique("fwsemg"));
    let s = Semaphore::create(&sn, 0).unwrap();
    let got = AtomicValue::<u32>::create(&gn, 0).unwrap();
    let kids: Vec<Child> = (0..2)
        .map(|_| {
            spawn("sem_acquirer")
                .arg("sem", &sn)
                .arg("got", &gn)
                .start()
        })
        .collect();
    for k in &kids {
        k.expect("waiting");
    }
    std::thread::sleep(SETTLE);
    kill_at("sem_releaser", "semaphore.release.counted", &[("sem", &sn)]);
    let killed = Instant::now();
    eventually("a sleeper took the orphaned permit", || got.load() == 1);
    assert!(killed.elapsed() < WAKE_BOUND, "{:?}", killed.elapsed());
    std::thread::sleep(SETTLE);
    assert_eq!(got.load(), 1, "a permit was duplicated");
    assert_eq!(s.value(), 0);
    s.release().unwrap();
    eventually("the other sleeper took the next permit", || got.load() == 2);
    join_all(kids);
    assert_eq!(s.value(), 0);
}

// ---------------------------------------------------------------- event

child!(fn event_waiter(ctx) {
    let e = Event::open(&ctx.arg("event"))?;
    ctx.send("waiting");
    let set = e.wait();
    ctx.send(&format!("woken {set}"));
});

child!(fn event_setter(ctx) {
    let e = Event::open(&ctx.arg("event"))?;
    arm(ctx)?;
    e.set();
    return Err("set past the fault point".into());
});

/// A setter killed after setting the flag, before waking: every sleeper
/// returns `true` within the bound; the flag stays set.
#[test]
fn event_setter_killed_before_its_wake() {
    let _w = watchdog("event_setter_killed", Duration::from_secs(60));
    let en = unique("fwev");
    let e = Event::create(&en).unwrap();
    let kids: Vec<Child> = (0..2)
        .map(|_| spawn("event_waiter").arg("event", &en).start())
        .collect();
    for k in &kids {
        k.expect("waiting");
    }
    std::thread::sleep(SETTLE);
    kill_at("event_setter", "event.set.flagged", &[("event", &en)]);
    let killed = Instant::now();
    for k in &kids {
        assert_eq!(k.recv(WAKE_BOUND).as_deref(), Some("woken true"));
    }
    assert!(killed.elapsed() < WAKE_BOUND, "{:?}", killed.elapsed());
    join_all(kids);
    assert!(e.is_set());
    e.clear();
    assert!(!e.wait_timeout(Duration::from_millis(10)));
}

// ---------------------------------------------------------------- condition

child!(fn cond_waiter(ctx) {
    let c = Condition::open(&ctx.arg("cond"))?;
    let mut g = c.lock().map_err(LockError::into_error)?;
    ctx.send("waiting");
    match c.wait(&mut g) {
        Ok(()) => ctx.send("notified"),
        Err(Error::OwnerDied) => {
            c.make_consistent(&mut g)?;
            ctx.send("OwnerDied, repaired");
        }
        Err(e) => ctx.send(&format!("{e:?}")),
    }
});

child!(fn cond_notifier(ctx) {
    let c = Condition::open(&ctx.arg("cond"))?;
    arm(ctx)?;
    let g = c.lock().map_err(LockError::into_error)?;
    c.notify(&g, 1)?;
    return Err("notified past the fault point".into());
});

/// A notifier killed after marking a waiter signalled, before waking it
/// (holding the lock, as every notifier does): the signalled waiter wakes
/// within the bound and takes the lock back as `OwnerDied` (it repairs);
/// the other waiter is not woken by that notify; afterwards the condition
/// works normally.
#[test]
fn condition_notifier_killed_before_its_wake() {
    let _w = watchdog("condition_notifier_killed", Duration::from_secs(60));
    let cn = unique("fwcond");
    let c = Condition::create(&cn).unwrap();
    let first = spawn("cond_waiter").arg("cond", &cn).start();
    first.expect("waiting");
    eventually("first waiting", || c.n_waiting() == 1);
    let second = spawn("cond_waiter").arg("cond", &cn).start();
    second.expect("waiting");
    eventually("second waiting", || c.n_waiting() == 2);
    kill_at(
        "cond_notifier",
        "condvar.notify.signalled",
        &[("cond", &cn)],
    );
    assert_eq!(
        first.recv(WAKE_BOUND).as_deref(),
        Some("OwnerDied, repaired")
    );
    // The oldest waiter was the one signalled; the other still waits.
    assert_eq!(second.recv(SETTLE), None, "a notify(1) woke two waiters");
    assert_eq!(c.n_waiting(), 1);
    let g = c.lock().expect("repaired by the waiter");
    assert_eq!(c.notify(&g, 1).unwrap(), 1);
    drop(g);
    assert_eq!(second.recv(WAKE_BOUND).as_deref(), Some("notified"));
    first.join();
    second.join();
    assert_eq!(c.n_waiting(), 0);
}

// ---------------------------------------------------------------- barrier

child!(fn bar_waiter(ctx) {
    let b = Barrier::open(&ctx.arg("barrier"))?;
    ctx.send("arriving");
    let r = match ctx.arg("timeout").as_str() {
        "none" => b.wait(),
        ms => b.wait_timeout(Duration::from_millis(ms.parse()?)),
    };
    ctx.send(&format!("{r:?}"));
});

child!(fn bar_victim(ctx) {
    let b = Barrier::open(&ctx.arg("barrier"))?;
    arm(ctx)?;
    let r = b.wait();
    return Err(format!("waited past the fault point: {r:?}").into());
});

/// Two waiters (no timeout) of a 3-party barrier, asleep.
fn two_sleepers(name: &str, b: &Barrier) -> [Child; 2] {
    let kids = [0, 1].map(|_| {
        let k = spawn("bar_waiter")
            .arg("barrier", name)
            .arg("timeout", "none")
            .start();
        k.expect("arriving");
        k
    });
    eventually("2 waiting", || b.n_waiting() == 2);
    std::thread::sleep(SETTLE);
    kids
}

/// Checks that `b` trips normally: one thread per party, distinct indices.
fn trips_normally(b: &Barrier) {
    let n = b.parties();
    let ts: Vec<_> = (0..n)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || b.wait_timeout(Duration::from_secs(20)))
        })
        .collect();
    let mut idx: Vec<u32> = ts.into_iter().map(|t| t.join().unwrap().unwrap()).collect();
    idx.sort_unstable();
    assert_eq!(idx, (0..n).collect::<Vec<_>>());
}

/// A tripper killed after moving the generation on, before waking: the
/// sleepers notice the moved word at their next slice and return their
/// (tripped) indices; the barrier is not broken and trips again.
#[test]
fn barrier_tripper_killed_after_the_trip_before_its_wake() {
    let _w = watchdog("barrier_trip_moved", Duration::from_secs(60));
    let bn = unique("fwbm");
    let b = Barrier::create(&bn, 3, None).unwrap();
    let kids = two_sleepers(&bn, &b);
    kill_at("bar_victim", "barrier.trip.moved", &[("barrier", &bn)]);
    let mut got: Vec<String> = kids
        .iter()
        .map(|k| k.recv(WAKE_BOUND).unwrap_or_default())
        .collect();
    got.sort();
    assert_eq!(got, ["Ok(0)", "Ok(1)"]);
    join_all(kids);
    assert!(!b.is_broken());
    assert_eq!(b.n_waiting(), 0);
    trips_normally(&b);
}

/// A tripper killed with the generation full and its record written (where
/// it would run the action): sleepers without a timeout find the recorded
/// tripper dead at their next slice and break the generation
/// (`BrokenBarrier`); `reset` makes the barrier usable again.
#[test]
fn barrier_tripper_killed_before_the_trip() {
    let _w = watchdog("barrier_trip_recorded", Duration::from_secs(60));
    let bn = unique("fwbr");
    let b = Barrier::create(&bn, 3, None).unwrap();
    let kids = two_sleepers(&bn, &b);
    kill_at("bar_victim", "barrier.trip.recorded", &[("barrier", &bn)]);
    for k in &kids {
        assert_eq!(k.recv(WAKE_BOUND).as_deref(), Some("Err(BrokenBarrier)"));
    }
    join_all(kids);
    assert!(b.is_broken());
    b.reset();
    assert!(!b.is_broken());
    trips_normally(&b);
}

/// A party killed after its arrival, before it sleeps: it stays counted,
/// so the generation cannot trip. A survivor with a timeout breaks it at
/// that timeout, which also releases a survivor without one
/// (`BrokenBarrier` for both, not before the timeout); `reset` repairs.
#[test]
fn barrier_party_killed_between_arrival_and_sleep() {
    let _w = watchdog("barrier_wait_arrived", Duration::from_secs(60));
    let bn = unique("fwba");
    // Four parties: the victim, two survivors, and one that never comes.
    let b = Barrier::create(&bn, 4, None).unwrap();
    kill_at("bar_victim", "barrier.wait.arrived", &[("barrier", &bn)]);
    assert_eq!(b.n_waiting(), 1, "the dead party is counted");
    let untimed = spawn("bar_waiter")
        .arg("barrier", &bn)
        .arg("timeout", "none")
        .start();
    untimed.expect("arriving");
    eventually("2 waiting", || b.n_waiting() == 2);
    let t = Instant::now();
    let timed = b.wait_timeout(Duration::from_millis(400));
    assert!(matches!(timed, Err(Error::BrokenBarrier)), "{timed:?}");
    assert!(t.elapsed() >= Duration::from_millis(400));
    assert_eq!(
        untimed.recv(WAKE_BOUND).as_deref(),
        Some("Err(BrokenBarrier)")
    );
    untimed.join();
    assert!(b.is_broken());
    b.reset();
    trips_normally(&b);
}

child!(fn bar_resetter(ctx) {
    let b = Barrier::open(&ctx.arg("barrier"))?;
    arm(ctx)?;
    b.reset();
    return Err("reset past the fault point".into());
});

child!(fn bar_retrier(ctx) {
    let b = Barrier::open(&ctx.arg("barrier"))?;
    ctx.send("arriving");
    let first = b.wait();
    // Retries at once, as a caller looping on `BrokenBarrier` would.
    let second = b.wait_timeout(Duration::from_secs(20));
    ctx.send(&format!("{first:?} {second:?}"));
});

/// A resetter killed between breaking the generation and moving it on
/// (`barrier.reset.broken`): its waiter gets `BrokenBarrier`, and its
/// retry (an arrival while the reset is under way, here for ever) is not
/// refused: it finishes the reset and waits in the next generation, which
/// trips with the parent. (Before the fix, an arrival in that window got
/// `BrokenBarrier` too, and after a resetter's death the barrier stayed
/// broken until another `reset`.)
#[test]
fn barrier_resetter_killed_between_its_break_and_its_move() {
    let _w = watchdog("barrier_reset_broken", Duration::from_secs(60));
    let bn = unique("fwbx");
    let b = Barrier::create(&bn, 2, None).unwrap();
    let waiter = spawn("bar_retrier").arg("barrier", &bn).start();
    waiter.expect("arriving");
    eventually("1 waiting", || b.n_waiting() == 1);
    std::thread::sleep(SETTLE);
    kill_at("bar_resetter", "barrier.reset.broken", &[("barrier", &bn)]);
    // The retry finishes the reset: the barrier is no longer broken.
    eventually("the reset finished by the retrying arrival", || {
        !b.is_broken() && b.n_waiting() == 1
    });
    let mine = b.wait_timeout(Duration::from_secs(20));
    assert!(matches!(mine, Ok(0 | 1)), "{mine:?}");
    let got = waiter.recv(WAKE_BOUND).unwrap_or_default();
    assert!(
        got.starts_with("Err(BrokenBarrier) Ok("),
        "the waiter got {got:?}"
    );
    waiter.join();
    assert!(!b.is_broken());
    trips_normally(&b);
}

/// A resetter killed between announcing its reset and breaking the
/// generation (`barrier.reset.announced`) leaves its mark on a live
/// generation. A later `abort` must leave the barrier broken for the next
/// arrival, as any abort does. (Before the fix, the arrival read the mark
/// as a reset under way, finished it, and tripped the next generation:
/// `Ok(0)` from an aborted barrier.)
#[test]
fn barrier_abort_after_a_resetter_killed_before_its_break_stays_broken() {
    let _w = watchdog("barrier_reset_announced_abort", Duration::from_secs(60));
    let bn = unique("fwbra");
    let b = Barrier::create(&bn, 1, None).unwrap();
    kill_at(
        "bar_resetter",
        "barrier.reset.announced",
        &[("barrier", &bn)],
    );
    assert!(!b.is_broken(), "the resetter died before its break");
    b.abort();
    let r = b.wait_timeout(Duration::from_secs(2));
    assert!(matches!(r, Err(Error::BrokenBarrier)), "{r:?}");
    assert!(b.is_broken());
    b.reset();
    trips_normally(&b);
}

/// As above, with the generation broken by a waiter's timeout instead of
/// an abort: the next two arrivals (a full party) are refused, not let
/// through a reset nobody finished.
#[test]
fn barrier_timeout_after_a_resetter_killed_before_its_break_stays_broken() {
    let _w = watchdog("barrier_reset_announced_timeout", Duration::from_secs(60));
    let bn = unique("fwbrt");
    let b = Barrier::create(&bn, 2, None).unwrap();
    kill_at(
        "bar_resetter",
        "barrier.reset.announced",
        &[("barrier", &bn)],
    );
    let timed = b.wait_timeout(Duration::from_millis(100));
    assert!(matches!(timed, Err(Error::BrokenBarrier)), "{timed:?}");
    let later: Vec<_> = (0..2)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || b.wait_timeout(Duration::from_secs(2)))
        })
        .collect();
    for t in later {
        let r = t.join().unwrap();
        assert!(matches!(r, Err(Error::BrokenBarrier)), "{r:?}");
    }
    assert!(b.is_broken());
    b.reset();
    trips_normally(&b);
}

// ---------------------------------------------------------------- lock

/// What a lock call gave, as a message; an `OwnerDied` is repaired first.
/// `touch` runs on the guard (held) before it is dropped.
fn took<G: shmprim::raw::RecoverableGuard>(r: LockResult<G>, touch: impl FnOnce(&mut G)) -> String {
    let (what, mut g) = match r {
        Ok(g) => ("ok", g),
        Err(LockError::OwnerDied(d)) => match d.make_consistent() {
            Ok(g) => ("OwnerDied", g),
            Err(e) => return format!("OwnerDied, repair failed: {e:?}"),
        },
        Err(LockError::Failed(e)) => return format!("{e:?}"),
    };
    touch(&mut g);
    what.to_owned()
}

/// Locks the object of kind `kind` (`lock`, `rlock` or `value`, a
/// `Value<u64>` whose lock adds one) under `name`, waiting without limit.
fn lock_kind(kind: &str, name: &str) -> Result<String> {
    Ok(match kind {
        "lock" => took(Lock::open(name)?.lock(), |_| {}),
        "rlock" => took(RLock::open(name)?.lock(), |_| {}),
        "value" => took(Value::<u64>::open(name)?.lock(), |g| **g += 1),
        k => panic!("unknown kind {k}"),
    })
}

child!(fn lock_waiter(ctx) {
    let (kind, name) = (ctx.arg("kind"), ctx.arg("name"));
    ctx.send("blocking");
    let r = lock_kind(&kind, &name)?;
    ctx.send(&r);
});

child!(fn lock_taker(ctx) {
    let (kind, name) = (ctx.arg("kind"), ctx.arg("name"));
    arm(ctx)?;
    let r = lock_kind(&kind, &name)?;
    return Err(format!("locked past the fault point: {r}").into());
});

child!(fn lock_releaser(ctx) {
    let (kind, name) = (ctx.arg("kind"), ctx.arg("name"));
    let go = AtomicValue::<u32>::open(&ctx.arg("go"))?;
    let hold = || {
        ctx.send("locked");
        gate_wait(&go, Duration::from_secs(30)).map(drop)
    };
    arm(ctx)?;
    // The guard is dropped (the lock released) once the parent says go.
    match kind.as_str() {
        "lock" => {
            let l = Lock::open(&name)?;
            let _g = l.lock().map_err(LockError::into_error)?;
            hold()?;
        }
        "rlock" => {
            let l = RLock::open(&name)?;
            let _outer = l.lock().map_err(LockError::into_error)?;
            // An inner level: its release must not touch the word.
            drop(l.lock().map_err(LockError::into_error)?);
            hold()?;
        }
        "value" => {
            let v = Value::<u64>::open(&name)?;
            let _g = v.lock().map_err(LockError::into_error)?;
            hold()?;
        }
        k => return Err(format!("unknown kind {k}").into()),
    }
    return Err("released past the fault point".into());
});

/// The object of kind `kind` under `name` (kept alive, unlinked on drop),
/// and a check that it is free and plain again with `n` updates done.
fn lock_object(kind: &str, name: &str) -> Box<dyn Fn(u64)> {
    match kind {
        "lock" => {
            let l = Lock::create(name).unwrap();
            Box::new(move |_| assert_eq!(took(l.try_lock(), |_| {}), "ok"))
        }
        "rlock" => {
            let l = RLock::create(name).unwrap();
            Box::new(move |_| assert_eq!(took(l.try_lock(), |_| {}), "ok"))
        }
        "value" => {
            let v = Value::<u64>::create(name, 0).unwrap();
            Box::new(move |n| {
                assert_eq!(took(v.try_lock(), |g| assert_eq!(**g, n)), "ok");
                assert_eq!(v.get().unwrap(), n);
            })
        }
        k => panic!("unknown kind {k}"),
    }
}

/// Two waiters of `kind` on `name`, asleep in `lock()`.
fn two_lock_sleepers(kind: &str, name: &str) -> [Child; 2] {
    let kids = [0, 1].map(|_| {
        let k = spawn("lock_waiter")
            .arg("kind", kind)
            .arg("name", name)
            .start();
        k.expect("blocking");
        k
    });
    std::thread::sleep(SETTLE);
    for k in &kids {
        assert_eq!(k.recv(Duration::ZERO), None, "{kind}: a waiter not blocked");
    }
    kids
}

/// A holder of `kind` killed right after its CAS took the lock word, before
/// any process-local bookkeeping (`mutex.lock.acquired`), while two waiters
/// in other processes sleep in `lock()`: the word names the dead thread, so
/// one waiter takes it over as `OwnerDied` at its next liveness check (each
/// 100 ms), repairs and releases; the other then gets it plainly; the lock
/// is plain again for everybody.
fn holder_killed_with_the_word_taken(kind: &str) {
    let name = unique("fwlt");
    let after = lock_object(kind, &name);
    let mut victim = stop_at(
        "lock_taker",
        "mutex.lock.acquired",
        &[("kind", kind), ("name", &name)],
    );
    let kids = two_lock_sleepers(kind, &name);
    victim.kill();
    let killed = Instant::now();
    let mut got: Vec<String> = kids
        .iter()
        .map(|k| k.recv(WAKE_BOUND).unwrap_or_default())
        .collect();
    assert!(
        killed.elapsed() < WAKE_BOUND,
        "{kind}: {:?}",
        killed.elapsed()
    );
    got.sort();
    assert_eq!(got, ["OwnerDied", "ok"], "{kind}: what the waiters got");
    join_all(kids);
    after(2);
}

#[test]
fn lock_holder_killed_with_the_word_taken() {
    let _w = watchdog("lock_acquired", Duration::from_secs(60));
    holder_killed_with_the_word_taken("lock");
}

#[test]
fn rlock_holder_killed_with_the_word_taken() {
    let _w = watchdog("rlock_acquired", Duration::from_secs(60));
    holder_killed_with_the_word_taken("rlock");
}

#[test]
fn value_holder_killed_with_the_word_taken() {
    let _w = watchdog("value_acquired", Duration::from_secs(60));
    holder_killed_with_the_word_taken("value");
}

/// A holder of `kind` killed after its unlock cleared the word, before the
/// `FUTEX_WAKE` it owed the two waiters asleep in `lock()` in other
/// processes (`mutex.unlock.released_before_wake`): at their next slice
/// (100 ms) they find the word free and take it in turn, plainly (the word
/// was released, so nobody is told `OwnerDied`); the first keeps `WAITERS`
/// for the second, whose wake its own unlock makes.
fn releaser_killed_before_its_wake(kind: &str) {
    let name = unique("fwlr");
    let after = lock_object(kind, &name);
    let (at_name, go_name) = (unique("fwlrat"), unique("fwlrgo"));
    let at = AtomicValue::<u32>::create(&at_name, 0).unwrap();
    let go = AtomicValue::<u32>::create(&go_name, 0).unwrap();
    let mut victim = spawn("lock_releaser")
        .arg("point", "mutex.unlock.released_before_wake")
        .arg("at", &at_name)
        .arg("go", &go_name)
        .arg("kind", kind)
        .arg("name", &name)
        .start();
    victim.expect("locked");
    let kids = two_lock_sleepers(kind, &name);
    gate_open(&go);
    if let Err(e) = gate_wait(&at, Duration::from_secs(30)) {
        panic!(
            "{kind}: the releaser never reached its wake: {e:?}\n{}",
            victim.output()
        );
    }
    victim.kill();
    let killed = Instant::now();
    for k in &kids {
        assert_eq!(
            k.recv(WAKE_BOUND).as_deref(),
            Some("ok"),
            "{kind}: a waiter got"
        );
    }
    assert!(
        killed.elapsed() < WAKE_BOUND,
        "{kind}: {:?}",
        killed.elapsed()
    );
    join_all(kids);
    after(2);
}

#[test]
fn lock_releaser_killed_before_its_wake() {
    let _w = watchdog("lock_released", Duration::from_secs(60));
    releaser_killed_before_its_wake("lock");
}

#[test]
fn rlock_releaser_killed_before_its_wake() {
    let _w = watchdog("rlock_released", Duration::from_secs(60));
    releaser_killed_before_its_wake("rlock");
}

#[test]
fn value_releaser_killed_before_its_wake() {
    let _w = watchdog("value_released", Duration::from_secs(60));
    releaser_killed_before_its_wake("value");
}
