//! Robustness when a lock holder dies: a child takes a lock, is killed with
//! `SIGKILL`, and the survivors learn it (`OwnerDied`), repair and go on, or
//! leave the lock not recoverable — consistently, in every process.
#![cfg(target_os = "linux")] // /dev/shm, procfs and mount namespaces

mod harness;
use harness::*;
use shmprim::*;

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the parent waits for a dead holder's lock before calling it a
/// failure: the kernel hands it over at the holder's exit, so this is slack.
const HANDOVER: Duration = Duration::from_secs(1);
/// The "half-updated" marker a dying holder leaves in a value.
const MARKER: u64 = 999;

/// A short description of a lock result (a child sends it as a message).
/// Dropping an `OwnerDied` here leaves the lock not recoverable.
fn describe<G>(r: LockResult<G>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(LockError::OwnerDied(_)) => "OwnerDied".to_owned(),
        Err(LockError::Failed(e)) => format!("{e:?}"),
    }
}

fn describe_plain<T>(r: Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("{e:?}"),
    }
}

/// Which object a child should open.
#[derive(Clone, Copy, Debug, PartialEq)]
enum What {
    Lock,
    RLock,
    Value,
}

impl What {
    const ALL: [What; 3] = [What::Lock, What::RLock, What::Value];

    fn arg(self) -> &'static str {
        match self {
            What::Lock => "lock",
            What::RLock => "rlock",
            What::Value => "value",
        }
    }

    fn parse(s: &str) -> What {
        match s {
            "lock" => What::Lock,
            "rlock" => What::RLock,
            "value" => What::Value,
            _ => panic!("unknown kind {s:?}"),
        }
    }
}

/// One object of each kind under test, created (and unlinked on drop) by
/// the parent.
enum Obj {
    Lock(Lock),
    RLock(RLock),
    Value(Value<u64>),
}

impl Obj {
    fn create(what: What, name: &str) -> Obj {
        match what {
            What::Lock => Obj::Lock(Lock::create(name).unwrap()),
            What::RLock => Obj::RLock(RLock::create(name).unwrap()),
            What::Value => Obj::Value(Value::create(name, 0).unwrap()),
        }
    }

    fn open(what: What, name: &str) -> Result<Obj> {
        Ok(match what {
            What::Lock => Obj::Lock(Lock::open(name)?),
            What::RLock => Obj::RLock(RLock::open(name)?),
            What::Value => Obj::Value(Value::open(name)?),
        })
    }

    /// The three lock calls, described: `lock()`, `try_lock()`, `lock_timeout(100 ms)`.
    fn describe_all(&self) -> [String; 3] {
        let t = Duration::from_millis(100);
        match self {
            Obj::Lock(l) => [
                describe(l.lock()),
                describe(l.try_lock()),
                describe(l.lock_timeout(t)),
            ],
            Obj::RLock(l) => [
                describe(l.lock()),
                describe(l.try_lock()),
                describe(l.lock_timeout(t)),
            ],
            Obj::Value(v) => [
                describe(v.lock()),
                describe(v.try_lock()),
                describe(v.lock_timeout(t)),
            ],
        }
    }

    /// Takes the lock the plain way (the child side of the kill tests): a
    /// value also gets the half-updated marker. Then never returns.
    fn hold_forever(&self, ctx: &Ctx) -> ! {
        match self {
            Obj::Lock(l) => {
                let _g = l.lock().expect("child: lock");
                hang(ctx)
            }
            Obj::RLock(l) => {
                let _a = l.lock().expect("child: lock");
                // Held twice at death: the survivor must still need only one release.
                let _b = l.lock().expect("child: lock again");
                hang(ctx)
            }
            Obj::Value(v) => {
                let mut g = v.lock().expect("child: lock");
                *g = MARKER;
                hang(ctx)
            }
        }
    }
}

/// Says "locked" and sleeps until killed.
fn hang(ctx: &Ctx) -> ! {
    ctx.send("locked");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Starts a child that takes `what`'s lock under `name` and waits to be
/// killed; returns once it holds the lock.
fn start_holder(what: What, name: &str) -> Child {
    let child = spawn("hold_and_hang")
        .arg("what", what.arg())
        .arg("name", name)
        .timeout(Duration::from_secs(20))
        .start();
    child.expect("locked");
    child
}

/// Expects an `OwnerDied` from `r` (taken within [`HANDOVER`]).
fn expect_owner_died<G>(
    what: impl std::fmt::Debug,
    r: LockResult<G>,
    took: Duration,
) -> OwnerDied<G> {
    match r {
        Err(LockError::OwnerDied(d)) => d,
        Err(LockError::Failed(Error::Timeout)) => {
            panic!("{what:?}: no OwnerDied within {HANDOVER:?} of the holder's death (waited {took:?})")
        }
        Err(LockError::Failed(e)) => panic!("{what:?}: expected OwnerDied, got Failed({e:?})"),
        Ok(_) => panic!("{what:?}: expected OwnerDied, got a clean lock"),
    }
}

// ---------------------------------------------------------------------------
// Child roles
// ---------------------------------------------------------------------------

// Opens `what` under `name`, takes its lock (a value: writes MARKER under
// it), says "locked" and sleeps until killed.
child!(fn hold_and_hang(ctx) {
    let obj = Obj::open(What::parse(&ctx.arg("what")), &ctx.arg("name"))?;
    obj.hold_forever(ctx);
});

// RLock::acquire() (twice, recursively), says "locked", sleeps until killed.
child!(fn acquire_and_hang(ctx) {
    let l = RLock::open(&ctx.arg("name"))?;
    if l.acquire()? != Acquire::Clean || l.acquire()? != Acquire::Clean {
        return Err("child: acquire was not clean".into());
    }
    hang(ctx);
});

// Reports what lock(), try_lock(), lock_timeout() (and get() or acquire())
// give on `what`. With a `flag`, opens first, says "opened" and reports once
// the parent raises the flag; without, opens and reports at once (an open
// refused is reported as "open: <error>").
child!(fn report_lock_results(ctx) {
    let what = What::parse(&ctx.arg("what"));
    let flag = ctx.arg("flag");
    let obj = if flag.is_empty() {
        match Obj::open(what, &ctx.arg("name")) {
            Ok(obj) => {
                ctx.send("open: ok");
                obj
            }
            Err(e) => {
                ctx.send(&format!("open: {e:?}"));
                return Ok(());
            }
        }
    } else {
        let flag = AtomicValue::<u32>::open(&flag)?;
        let obj = Obj::open(what, &ctx.arg("name"))?;
        ctx.send("opened");
        gate_wait(&flag, Duration::from_secs(30))?;
        obj
    };
    let [a, b, c] = obj.describe_all();
    ctx.send(&format!("lock: {a}"));
    ctx.send(&format!("try_lock: {b}"));
    ctx.send(&format!("lock_timeout: {c}"));
    match &obj {
        Obj::Value(v) => ctx.send(&format!("get: {}", describe_plain(v.get()))),
        Obj::Lock(l) => ctx.send(&format!("acquire: {}", describe_plain(l.acquire()))),
        Obj::RLock(l) => ctx.send(&format!("acquire: {}", describe_plain(l.acquire()))),
    }
});

// n increments of a Value<u64>, each under the lock.
child!(fn increment(ctx) {
    let v = Value::<u64>::open(&ctx.arg("name"))?;
    for _ in 0..ctx.parse::<u32>("n") {
        let mut g = v.lock().map_err(LockError::into_error)?;
        let x = *g;
        *g = x + 1;
    }
    ctx.send("done");
});

// Takes and releases `what`'s lock once, both ways.
child!(fn lock_once(ctx) {
    let obj = Obj::open(What::parse(&ctx.arg("what")), &ctx.arg("name"))?;
    let [a, b, c] = obj.describe_all();
    ctx.send(&format!("{a} {b} {c}"));
    if let Obj::RLock(l) = &obj {
        let acq = l.acquire()?;
        l.release()?;
        ctx.send(&format!("acquire: {acq:?}"));
    }
});

/// Checks that a fresh child process sees `what` under `name` as usable.
fn child_can_lock(what: What, name: &str) {
    let child = spawn("lock_once")
        .arg("what", what.arg())
        .arg("name", name)
        .timeout(Duration::from_secs(15))
        .start();
    child.expect("ok ok ok");
    if what == What::RLock {
        child.expect("acquire: Clean");
    }
    child.join();
}

/// A child that opened `what` under `name` while it was still healthy and
/// reports on it once told to ([`Watcher::expect_not_recoverable`]).
struct Watcher {
    child: Child,
    flag: AtomicValue<u32>,
    what: What,
}

impl Watcher {
    fn start(what: What, name: &str) -> Watcher {
        let flag_name = unique("flag");
        let flag = AtomicValue::<u32>::create(&flag_name, 0).unwrap();
        let child = spawn("report_lock_results")
            .arg("what", what.arg())
            .arg("name", name)
            .arg("flag", &flag_name)
            .timeout(Duration::from_secs(20))
            .start();
        child.expect("opened");
        Watcher { child, flag, what }
    }

    /// Every call in the watcher gives NotRecoverable.
    fn expect_not_recoverable(self) {
        gate_open(&self.flag);
        expect_reports_not_recoverable(&self.child, self.what);
        self.child.join();
    }
}

fn expect_reports_not_recoverable(child: &Child, what: What) {
    child.expect("lock: NotRecoverable");
    child.expect("try_lock: NotRecoverable");
    child.expect("lock_timeout: NotRecoverable");
    match what {
        What::Value => child.expect("get: NotRecoverable"),
        _ => child.expect("acquire: NotRecoverable"),
    }
}

/// Checks that a child process that opens `what` under `name` now sees it
/// as not recoverable: the open succeeds (so the object can be inspected)
/// and every lock call says NotRecoverable.
fn fresh_child_sees_not_recoverable(what: What, name: &str) {
    let child = spawn("report_lock_results")
        .arg("what", what.arg())
        .arg("name", name)
        .arg("flag", "")
        .timeout(Duration::from_secs(15))
        .start();
    match child.recv(Duration::from_secs(15)).as_deref() {
        Some("open: ok") => expect_reports_not_recoverable(&child, what),
        other => panic!(
            "{what:?}: fresh child's open gave {other:?}\n{}",
            child.output()
        ),
    }
    child.join();
}

// ---------------------------------------------------------------------------
// 1. Kill the holder, receive OwnerDied, repair, go on
// ---------------------------------------------------------------------------

#[test]
fn killed_holder_gives_owner_died_and_repair_restores_the_lock() {
    let _w = watchdog(
        "killed_holder_gives_owner_died_and_repair_restores_the_lock",
        Duration::from_secs(60),
    );
    for what in What::ALL {
        let name = unique(&format!("od{}", what.arg()));
        let obj = Obj::create(what, &name);
        let mut child = start_holder(what, &name);
        child.kill();

        let start = Instant::now();
        match &obj {
            Obj::Lock(l) => {
                let r = l.lock_timeout(HANDOVER);
                let d = expect_owner_died(what, r, start.elapsed());
                let g = d.make_consistent().expect("make_consistent");
                assert!(l.is_locked().unwrap());
                drop(g);
                assert!(!l.is_locked().unwrap());
                drop(l.try_lock().expect("try_lock after repair"));
                drop(l.lock_timeout(HANDOVER).expect("lock_timeout after repair"));
            }
            Obj::RLock(l) => {
                let r = l.lock_timeout(HANDOVER);
                let d = expect_owner_died(what, r, start.elapsed());
                let g = d.make_consistent().expect("make_consistent");
                // The dead holder had it twice; we hold it once.
                drop(g);
                assert!(
                    !l.is_locked().unwrap(),
                    "RLock still held after the survivor's only release"
                );
                drop(l.try_lock().expect("try_lock after repair"));
                assert_eq!(l.acquire().unwrap(), Acquire::Clean);
                l.release().unwrap();
            }
            Obj::Value(v) => {
                let r = v.lock_timeout(HANDOVER);
                let mut d = expect_owner_died(what, r, start.elapsed());
                assert_eq!(
                    **d, MARKER,
                    "the dead holder's half-update is visible to the survivor"
                );
                **d = 0;
                let g = d.make_consistent().expect("make_consistent");
                assert_eq!(*g, 0);
                drop(g);
                assert_eq!(v.get().unwrap(), 0, "get after repair");

                // Fully usable across processes again.
                let kids: Vec<_> = (0..3)
                    .map(|_| {
                        spawn("increment")
                            .arg("name", &name)
                            .arg("n", 1000)
                            .timeout(Duration::from_secs(40))
                            .start()
                    })
                    .collect();
                for k in &kids {
                    k.expect("done");
                }
                join_all(kids);
                assert_eq!(v.get().unwrap(), 3000);
            }
        }
        child_can_lock(what, &name);
    }
}

// ---------------------------------------------------------------------------
// 2. Not marked consistent: not recoverable, everywhere, from every call
// ---------------------------------------------------------------------------

/// Kills a holder of `what`, takes the OwnerDied guard and drops it
/// (directly, or through `into_inner`), then checks every call here and in
/// a fresh child gives NotRecoverable.
fn unrepaired_becomes_not_recoverable(what: What, via_into_inner: bool) {
    let name = unique(&format!("nr{}", what.arg()));
    let obj = Obj::create(what, &name);
    let watcher = Watcher::start(what, &name);
    let mut child = start_holder(what, &name);
    child.kill();

    let start = Instant::now();
    // Take the OwnerDied guard and drop it without repair.
    macro_rules! give_up {
        ($r:expr) => {{
            let d = expect_owner_died((what, via_into_inner), $r, start.elapsed());
            if via_into_inner {
                drop(d.into_inner());
            } else {
                drop(d);
            }
        }};
    }
    match &obj {
        Obj::Lock(l) => give_up!(l.lock_timeout(HANDOVER)),
        Obj::RLock(l) => give_up!(l.lock_timeout(HANDOVER)),
        Obj::Value(v) => give_up!(v.lock_timeout(HANDOVER)),
    }

    // This process was the last owner: glibc would say "deadlock" to it;
    // the library must say NotRecoverable (PITFALLS.md, glibc corner cases).
    let want = "NotRecoverable".to_owned();
    assert_eq!(
        obj.describe_all(),
        [want.clone(), want.clone(), want],
        "{what:?}: parent (last owner)"
    );
    // Again, to be sure the first round changed nothing.
    assert_eq!(
        obj.describe_all()[0],
        "NotRecoverable",
        "{what:?}: parent, second lock()"
    );
    match &obj {
        Obj::Value(v) => {
            let r = v.get();
            assert!(
                matches!(r, Err(Error::NotRecoverable)),
                "{what:?}: get() gave {r:?}"
            );
            let r = v.set(1);
            assert!(
                matches!(r, Err(Error::NotRecoverable)),
                "{what:?}: set() gave {r:?}"
            );
        }
        Obj::Lock(l) => {
            let r = l.acquire();
            assert!(
                matches!(r, Err(Error::NotRecoverable)),
                "{what:?}: acquire() gave {r:?}"
            );
            let r = l.acquire_timeout(Duration::from_millis(10));
            assert!(
                matches!(r, Err(Error::NotRecoverable)),
                "{what:?}: acquire_timeout() gave {r:?}"
            );
        }
        Obj::RLock(l) => {
            let r = l.acquire();
            assert!(
                matches!(r, Err(Error::NotRecoverable)),
                "{what:?}: acquire() gave {r:?}"
            );
        }
    }
    watcher.expect_not_recoverable();
    fresh_child_sees_not_recoverable(what, &name);
}

#[test]
fn unrepaired_lock_is_not_recoverable_everywhere() {
    let _w = watchdog(
        "unrepaired_lock_is_not_recoverable_everywhere",
        Duration::from_secs(60),
    );
    for what in What::ALL {
        unrepaired_becomes_not_recoverable(what, false);
    }
    // The same through into_inner(), for one kind.
    unrepaired_becomes_not_recoverable(What::Value, true);
}

// ---------------------------------------------------------------------------
// 3. The convenience path: Value::get reports OwnerDied once
// ---------------------------------------------------------------------------

#[test]
fn value_get_after_holder_death_is_owner_died_then_not_recoverable() {
    let _w = watchdog(
        "value_get_after_holder_death_is_owner_died_then_not_recoverable",
        Duration::from_secs(30),
    );
    let name = unique("odget");
    let v = Value::<u64>::create(&name, 7).unwrap();
    let watcher = Watcher::start(What::Value, &name);
    let mut child = start_holder(What::Value, &name);
    child.kill();

    let r = v.get();
    assert!(
        matches!(r, Err(Error::OwnerDied)),
        "get() after the holder died: {r:?}"
    );
    let r = v.get();
    assert!(
        matches!(r, Err(Error::NotRecoverable)),
        "get() after the OwnerDied report: {r:?}"
    );
    let want = "NotRecoverable".to_owned();
    assert_eq!(
        Obj::Value(v.clone()).describe_all(),
        [want.clone(), want.clone(), want]
    );
    let r = v.update(|x| *x += 1);
    assert!(matches!(r, Err(Error::NotRecoverable)), "update(): {r:?}");
    watcher.expect_not_recoverable();
    fresh_child_sees_not_recoverable(What::Value, &name);
}

// ---------------------------------------------------------------------------
// 4. Python-style acquire()/release()
// ---------------------------------------------------------------------------

#[test]
fn acquire_after_holder_death_then_make_consistent() {
    let _w = watchdog(
        "acquire_after_holder_death_then_make_consistent",
        Duration::from_secs(30),
    );
    let name = unique("odacq");
    let l = RLock::create(&name).unwrap();
    let mut child = spawn("acquire_and_hang")
        .arg("name", &name)
        .timeout(Duration::from_secs(20))
        .start();
    child.expect("locked");
    assert!(l.is_locked().unwrap());
    child.kill();

    let start = Instant::now();
    let r = l.acquire_timeout(HANDOVER);
    assert!(
        matches!(r, Ok(Some(Acquire::OwnerDied))),
        "acquire after the holder died: {r:?} (after {:?})",
        start.elapsed()
    );

    // Another thread may neither repair nor release it.
    std::thread::scope(|s| {
        let (mc, rel) = s
            .spawn(|| (l.make_consistent(), l.release()))
            .join()
            .unwrap();
        assert!(
            matches!(mc, Err(Error::NotOwner)),
            "make_consistent by another thread: {mc:?}"
        );
        assert!(
            matches!(rel, Err(Error::NotOwner)),
            "release by another thread: {rel:?}"
        );
    });

    l.make_consistent()
        .expect("make_consistent by the new owner");
    // Recursion still works for the new owner after repair.
    assert_eq!(l.acquire().unwrap(), Acquire::Clean);
    l.release().unwrap();
    assert!(l.is_locked().unwrap(), "one level is still held");
    l.release().expect("release after make_consistent");
    assert!(!l.is_locked().unwrap());
    assert!(matches!(l.release(), Err(Error::NotOwner)));

    // Usable again, here and in another process.
    assert_eq!(l.acquire().unwrap(), Acquire::Clean);
    l.release().unwrap();
    drop(l.try_lock().expect("try_lock after repair"));
    child_can_lock(What::RLock, &name);
}

#[test]
fn acquire_after_holder_death_released_without_repair() {
    let _w = watchdog(
        "acquire_after_holder_death_released_without_repair",
        Duration::from_secs(30),
    );
    let name = unique("odacqnr");
    let l = RLock::create(&name).unwrap();
    let watcher = Watcher::start(What::RLock, &name);
    let mut child = spawn("acquire_and_hang")
        .arg("name", &name)
        .timeout(Duration::from_secs(20))
        .start();
    child.expect("locked");
    child.kill();

    let r = l.acquire();
    assert!(
        matches!(r, Ok(Acquire::OwnerDied)),
        "acquire after the holder died: {r:?}"
    );
    l.release().expect("release without make_consistent");

    let r = l.acquire();
    assert!(
        matches!(r, Err(Error::NotRecoverable)),
        "acquire after an unrepaired release: {r:?}"
    );
    let r = l.acquire_timeout(Duration::from_millis(10));
    assert!(
        matches!(r, Err(Error::NotRecoverable)),
        "acquire_timeout: {r:?}"
    );
    let want = "NotRecoverable".to_owned();
    assert_eq!(
        Obj::RLock(l.clone()).describe_all(),
        [want.clone(), want.clone(), want]
    );
    let r = l.make_consistent();
    assert!(
        r.is_err(),
        "make_consistent on a not-recoverable lock: {r:?}"
    );
    watcher.expect_not_recoverable();
    fresh_child_sees_not_recoverable(What::RLock, &name);
}

// ---------------------------------------------------------------------------
// 5. A waiter blocked in lock() wakes when the holder dies
// ---------------------------------------------------------------------------

#[test]
fn blocked_waiter_wakes_with_owner_died() {
    let _w = watchdog(
        "blocked_waiter_wakes_with_owner_died",
        Duration::from_secs(30),
    );
    for what in [What::Lock, What::Value] {
        let name = unique(&format!("odwait{}", what.arg()));
        let obj = Obj::create(what, &name);
        let mut child = start_holder(what, &name);

        std::thread::scope(|s| {
            let (started_tx, started_rx) = mpsc::channel::<()>();
            let objr = &obj;
            let waiter = s.spawn(move || {
                started_tx.send(()).unwrap();
                // Untimed: only the holder's death can end this wait.
                let (kind, seen) = match objr {
                    Obj::Lock(l) => {
                        let r = l.lock();
                        let at = Instant::now();
                        let kind = describe_repaired(r, |_| None);
                        (kind, at)
                    }
                    Obj::Value(v) => {
                        let r = v.lock();
                        let at = Instant::now();
                        let kind = describe_repaired(r, |g| {
                            let seen = **g;
                            **g = 0;
                            Some(seen)
                        });
                        (kind, at)
                    }
                    Obj::RLock(_) => unreachable!(),
                };
                (kind, seen)
            });
            started_rx.recv().unwrap();
            // Let the waiter get into its wait (a few liveness periods would
            // be needed to hand over to a dead owner anyway).
            std::thread::sleep(Duration::from_millis(300));
            assert!(
                !waiter.is_finished(),
                "{what:?}: the waiter did not block while the child held the lock"
            );

            let killed_at = Instant::now();
            child.kill();
            let (kind, woke_at) = waiter.join().unwrap();
            let expected = match what {
                What::Value => format!("OwnerDied(seen {MARKER})"),
                _ => "OwnerDied".to_owned(),
            };
            assert_eq!(kind, expected, "{what:?}: what the blocked waiter got");
            assert!(
                woke_at >= killed_at,
                "{what:?}: the waiter returned before the holder was killed"
            );
            let lag = woke_at - killed_at;
            assert!(
                lag < HANDOVER,
                "{what:?}: the waiter woke {lag:?} after the holder was killed"
            );
        });

        // Repaired by the waiter: usable.
        let [a, b, c] = obj.describe_all();
        assert_eq!(
            [a.as_str(), b.as_str(), c.as_str()],
            ["ok", "ok", "ok"],
            "{what:?} after repair"
        );
        if let Obj::Value(v) = &obj {
            assert_eq!(v.get().unwrap(), 0);
        }
    }
}

/// Describes a lock result taken by a waiter, repairing an `OwnerDied`
/// (with `repair` seeing the guard first; it may return what it read).
fn describe_repaired<G: shmprim::raw::RecoverableGuard>(
    r: LockResult<G>,
    repair: impl FnOnce(&mut G) -> Option<u64>,
) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(LockError::OwnerDied(mut d)) => {
            let seen = repair(&mut *d);
            match d.make_consistent() {
                Ok(_) => match seen {
                    Some(x) => format!("OwnerDied(seen {x})"),
                    None => "OwnerDied".to_owned(),
                },
                Err(e) => format!("OwnerDied, make_consistent failed: {e:?}"),
            }
        }
        Err(LockError::Failed(e)) => format!("{e:?}"),
    }
}
