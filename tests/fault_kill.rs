//! Processes SIGKILLed while holding a lock the other suites do not cover
//! (an `Array`'s, a `Condition`'s) and while blocked in a wait: the
//! survivors keep working, other waiters still wake, counts stay intact.
//! (Lock, RLock and Value holders: `owner_died.rs`; killed waiters of
//! Semaphore, Event, Condition, Barrier and Queue: `sync_*.rs`,
//! `queue.rs`.)
#![cfg(target_os = "linux")]

mod harness;
use harness::*;
use shmprim::*;

use std::time::{Duration, Instant};

/// How long a survivor may take to be served once its turn comes.
const BOUND: Duration = Duration::from_secs(10);
/// How long blocked children are given to fall asleep.
const SETTLE: Duration = Duration::from_millis(300);
/// What a dying holder leaves in the data it was updating.
const MARKER: u64 = 0xdead_beef;

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(30), "never: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Describes a lock result; an `OwnerDied` is repaired.
fn describe<G: shmprim::raw::RecoverableGuard>(r: LockResult<G>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(LockError::OwnerDied(d)) => match d.make_consistent() {
            Ok(_) => "OwnerDied".to_owned(),
            Err(e) => format!("OwnerDied, repair failed: {e:?}"),
        },
        Err(LockError::Failed(e)) => format!("{e:?}"),
    }
}

// ---------------------------------------------------------------- holders

child!(fn array_holder(ctx) {
    let a = Array::<u64>::open(&ctx.arg("array"))?;
    let mut g = a.lock().map_err(LockError::into_error)?;
    g[0] = MARKER; // half-updated: [1] not yet
    ctx.send("locked");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
});

/// An `Array`'s holder killed mid-update: the next locker gets `OwnerDied`
/// with the half-updated data, repairs it and marks the lock consistent;
/// from then on the lock is plain again, in every process.
#[test]
fn array_holder_killed_gives_owner_died_with_the_half_update() {
    let _w = watchdog("array_holder_killed", Duration::from_secs(60));
    let n = unique("fkarr");
    let a = Array::<u64>::create(&n, 2).unwrap();
    let mut holder = spawn("array_holder").arg("array", &n).start();
    holder.expect("locked");
    holder.kill();
    match a.lock_timeout(BOUND) {
        Err(LockError::OwnerDied(mut d)) => {
            assert_eq!((d[0], d[1]), (MARKER, 0), "what the holder left");
            d[0] = 0;
            drop(d.make_consistent().unwrap());
        }
        other => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
    }
    assert_eq!(a.to_vec().unwrap(), [0, 0]);
    assert_eq!(describe(a.try_lock()), "ok");
}

child!(fn cond_lock_holder(ctx) {
    let c = Condition::open(&ctx.arg("cond"))?;
    let _g = c.lock().map_err(LockError::into_error)?;
    ctx.send("locked");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
});

/// A `Condition`'s lock holder killed: the next locker gets `OwnerDied`,
/// marks it consistent (`Condition::make_consistent`), and waits and
/// notifies work as before. (Killed while inside `wait`, the lock released:
/// `sync_condition.rs::a_waiter_killed_while_waiting_absorbs_no_notify`.)
#[test]
fn condition_lock_holder_killed_then_wait_and_notify_work() {
    let _w = watchdog("cond_holder_killed", Duration::from_secs(60));
    let n = unique("fkcond");
    let c = Condition::create(&n).unwrap();
    let mut holder = spawn("cond_lock_holder").arg("cond", &n).start();
    holder.expect("locked");
    holder.kill();
    assert_eq!(describe(c.lock_timeout(BOUND)), "OwnerDied");
    let c2 = c.clone();
    let t = std::thread::spawn(move || {
        let mut g = c2.lock().unwrap();
        c2.wait_timeout(&mut g, Duration::from_secs(20))
    });
    eventually("waiting", || c.n_waiting() == 1);
    let g = c.lock().unwrap();
    assert_eq!(c.notify(&g, 1).unwrap(), 1);
    drop(g);
    assert!(matches!(t.join().unwrap(), Ok(true)));
}

// ---------------------------------------------------------------- waiters

// Opens the object of kind `kind` under `name`, says "blocking", blocks in
// its wait, and reports what the wait gave (then undoes its effect where
// the parent counts on it).
child!(fn blocked(ctx) {
    let name = ctx.arg("name");
    ctx.send("blocking");
    let r = match ctx.arg("kind").as_str() {
        "lock" => describe(Lock::open(&name)?.lock()),
        "rlock" => describe(RLock::open(&name)?.lock()),
        "value" => match Value::<u64>::open(&name)?.lock() {
            Ok(mut g) => {
                *g += 1;
                "ok".to_owned()
            }
            Err(e) => format!("{e:?}"),
        },
        "bsem" => {
            let s = BoundedSemaphore::open(&name)?;
            let r = s.acquire();
            if r.is_ok() {
                s.release()?;
            }
            format!("{r:?}")
        }
        "wait_for" => {
            let c = Condition::open(&name)?;
            let flag = AtomicValue::<u32>::open(&ctx.arg("flag"))?;
            let mut g = c.lock().map_err(LockError::into_error)?;
            let r = c.wait_for(&mut g, || flag.load() == 1, Duration::from_secs(30));
            format!("{r:?}")
        }
        "join" => format!("{:?}", JoinableQueue::open(&name)?.join()),
        k => return Err(format!("unknown kind {k}").into()),
    };
    ctx.send(&r);
});

/// What the parent set up for one kind: the objects (kept alive, unlinked
/// on drop) and how to serve one waiter.
struct Setup<'a> {
    name: String,
    extra: Vec<(&'static str, String)>,
    serve_one: Box<dyn FnOnce() + 'a>,
    check_after: Box<dyn FnOnce() + 'a>,
    expect: &'static str,
}

/// Two children block in the wait of `kind`; the first is killed; the
/// parent serves exactly one waiter; the survivor must be served (within
/// [`BOUND`]) and the object's state must show nothing lost or doubled.
fn killed_waiter_leaves_the_other_served(kind: &str, setup: Setup<'_>) {
    let start = |tag: &str| {
        let mut s = spawn("blocked")
            .arg("kind", kind)
            .arg("name", &setup.name)
            .arg("tag", tag);
        for (k, v) in &setup.extra {
            s = s.arg(k, v);
        }
        let c = s.start();
        c.expect("blocking");
        c
    };
    let mut victim = start("victim");
    let survivor = start("survivor");
    std::thread::sleep(SETTLE);
    assert_eq!(
        victim.recv(Duration::ZERO),
        None,
        "{kind}: victim not blocked"
    );
    assert_eq!(
        survivor.recv(Duration::ZERO),
        None,
        "{kind}: survivor not blocked"
    );
    victim.kill();
    (setup.serve_one)();
    assert_eq!(
        survivor.recv(BOUND).as_deref(),
        Some(setup.expect),
        "{kind}: what the survivor got\n{}",
        survivor.output()
    );
    survivor.join();
    (setup.check_after)();
}

/// A held lock (of each kind) and two processes blocked on it; the one
/// killed while blocked neither takes nor poisons the lock: the survivor
/// gets it plainly (not `OwnerDied`) once the holder lets go.
#[test]
fn killed_lock_waiters() {
    let _w = watchdog("killed_lock_waiters", Duration::from_secs(60));
    // Lock
    let n = unique("fkwl");
    let l = Lock::create(&n).unwrap();
    let g = l.lock().unwrap();
    let l2 = l.clone();
    killed_waiter_leaves_the_other_served(
        "lock",
        Setup {
            name: n,
            extra: vec![],
            serve_one: Box::new(move || drop(g)),
            check_after: Box::new(move || assert_eq!(describe(l2.try_lock()), "ok")),
            expect: "ok",
        },
    );
    // RLock, held recursively by the parent.
    let n = unique("fkwr");
    let r = RLock::create(&n).unwrap();
    let (g1, g2) = (r.lock().unwrap(), r.lock().unwrap());
    let r2 = r.clone();
    killed_waiter_leaves_the_other_served(
        "rlock",
        Setup {
            name: n,
            extra: vec![],
            serve_one: Box::new(move || {
                drop(g2);
                drop(g1);
            }),
            check_after: Box::new(move || assert_eq!(describe(r2.try_lock()), "ok")),
            expect: "ok",
        },
    );
    // Value: the survivor's increment lands exactly once.
    let n = unique("fkwv");
    let v = Value::<u64>::create(&n, 5).unwrap();
    let g = v.lock().unwrap();
    let v2 = v.clone();
    killed_waiter_leaves_the_other_served(
        "value",
        Setup {
            name: n,
            extra: vec![],
            serve_one: Box::new(move || drop(g)),
            check_after: Box::new(move || assert_eq!(v2.get().unwrap(), 6)),
            expect: "ok",
        },
    );
}

/// A bounded semaphore whose one permit the parent holds: the killed
/// waiter takes no permit; the survivor gets the released one and gives
/// it back; the bound still holds.
#[test]
fn killed_bounded_semaphore_waiter() {
    let _w = watchdog("killed_bsem_waiter", Duration::from_secs(60));
    let n = unique("fkwb");
    let s = BoundedSemaphore::create(&n, 1).unwrap();
    s.acquire().unwrap();
    let (s1, s2) = (s.clone(), s.clone());
    killed_waiter_leaves_the_other_served(
        "bsem",
        Setup {
            name: n,
            extra: vec![],
            serve_one: Box::new(move || s1.release().unwrap()),
            check_after: Box::new(move || {
                assert_eq!(s2.value(), 1);
                assert!(matches!(s2.release(), Err(Error::InvalidArgument(_))));
            }),
            expect: "Ok(())",
        },
    );
}

/// Two processes in `Condition::wait_for`; the killed one absorbs no
/// notify: a `notify_all` after the predicate became true counts and wakes
/// exactly the survivor, whose predicate holds.
#[test]
fn killed_condition_wait_for_waiter() {
    let _w = watchdog("killed_wait_for", Duration::from_secs(60));
    let (n, fname) = (unique("fkwc"), unique("fkwcf"));
    let c = Condition::create(&n).unwrap();
    let flag = AtomicValue::<u32>::create(&fname, 0).unwrap();
    let c2 = c.clone();
    killed_waiter_leaves_the_other_served(
        "wait_for",
        Setup {
            name: n,
            extra: vec![("flag", fname)],
            serve_one: Box::new(move || {
                // The killed victim's slot stays counted until a notify
                // skips it, so count the survivor too before notifying.
                eventually("both counted", || c2.n_waiting() == 2);
                let g = c2.lock().unwrap();
                flag.store(1);
                assert_eq!(c2.notify_all(&g).unwrap(), 1, "a dead waiter was counted");
            }),
            check_after: Box::new(move || assert_eq!(c.n_waiting(), 0)),
            expect: "Ok(true)",
        },
    );
}

/// Two processes in `JoinableQueue::join` with one task unfinished: the
/// killed one changes nothing; the survivor returns once the task is done.
#[test]
fn killed_joinable_queue_joiner() {
    let _w = watchdog("killed_joiner", Duration::from_secs(60));
    let n = unique("fkwj");
    let q = JoinableQueue::create(&n, 4, 8).unwrap();
    q.send(&1u64).unwrap();
    let (q1, q2) = (q.clone(), q.clone());
    killed_waiter_leaves_the_other_served(
        "join",
        Setup {
            name: n,
            extra: vec![],
            serve_one: Box::new(move || {
                assert_eq!(q1.recv::<u64>().unwrap(), 1);
                q1.task_done().unwrap();
            }),
            check_after: Box::new(move || {
                assert_eq!(q2.unfinished(), 0);
                q2.join_timeout(Duration::ZERO).unwrap();
            }),
            expect: "Ok(())",
        },
    );
}

child!(fn take_task_and_hang(ctx) {
    let q = JoinableQueue::open(&ctx.arg("q"))?;
    let v: u64 = q.recv_timeout(Duration::from_secs(20))?;
    ctx.send(&format!("took {v}"));
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
});

/// A worker killed after taking a task, before `task_done`: the task stays
/// unfinished (`join` would wait for ever: a timed join times out, at its
/// deadline), the other tasks are unaffected, and a `task_done` on the dead
/// worker's behalf completes the join.
#[test]
fn killed_worker_leaves_its_task_unfinished() {
    let _w = watchdog("killed_worker", Duration::from_secs(60));
    let n = unique("fkwk");
    let q = JoinableQueue::create(&n, 4, 8).unwrap();
    q.send(&1u64).unwrap();
    q.send(&2u64).unwrap();
    let mut worker = spawn("take_task_and_hang").arg("q", &n).start();
    worker.expect("took 1");
    worker.kill();
    assert_eq!(q.recv::<u64>().unwrap(), 2);
    q.task_done().unwrap();
    assert_eq!(q.unfinished(), 1);
    let t = Instant::now();
    assert!(matches!(q.join_timeout(SETTLE), Err(Error::Timeout)));
    assert!(t.elapsed() >= SETTLE);
    q.task_done().unwrap(); // on the dead worker's behalf
    q.join_timeout(BOUND).unwrap();
}

child!(fn atomic_store_without_wake(ctx) {
    let x = AtomicValue::<u32>::open(&ctx.arg("x"))?;
    x.store(1); // killed before its wake_all
    ctx.send("stored");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
});

/// A writer killed between its store and its `wake_all`: an untimed
/// `wait_while` should still return (the sync primitives' sleepers re-check
/// every 200 ms for exactly this).
#[test]
fn atomic_writer_killed_before_its_wake() {
    let n = unique("fkatw");
    // The name goes even if the waiter (holding a clone) never returns.
    let _rm = RemoveOnDrop(n.clone());
    let x = AtomicValue::<u32>::create(&n, 0).unwrap();
    let x2 = x.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(x2.wait_while(0, None)));
    std::thread::sleep(SETTLE);
    let mut writer = spawn("atomic_store_without_wake").arg("x", &n).start();
    writer.expect("stored");
    writer.kill();
    let r = rx.recv_timeout(BOUND);
    assert!(matches!(r, Ok(Ok(1))), "the waiter slept on: {r:?}");
}

// ---------------------------------------------------------------- pipes

child!(fn pipe_blocked(ctx) {
    let pipe = Pipe::open(&ctx.arg("pipe"))?;
    let mut c = pipe.connect(End::B)?;
    if ctx.arg("op") == "send" {
        let mut i = 0u64;
        while c.try_send_bytes(&i.to_le_bytes()).is_ok() {
            i += 1;
        }
        ctx.send(&format!("blocking {i}"));
        c.send_bytes(&i.to_le_bytes())?;
    } else {
        ctx.send("blocking 0");
        let _ = c.recv_bytes();
    }
    return Err("unblocked".into());
});

/// A reader killed while blocked in `recv`: the writer's sends end in
/// `Disconnected` (once the ring is full at the latest), never a hang.
/// A writer killed while blocked in `send` on a full ring: the reader gets
/// every complete message it had sent, in order, then `Disconnected`.
#[test]
fn killed_blocked_pipe_peers() {
    let _w = watchdog("killed_pipe_peers", Duration::from_secs(60));
    // Reader blocked in recv, killed.
    let n = unique("fkpr");
    let pipe = Pipe::create(&n, 4096).unwrap();
    let mut a = pipe.connect(End::A).unwrap();
    let mut reader = spawn("pipe_blocked")
        .arg("pipe", &n)
        .arg("op", "recv")
        .start();
    reader.expect("blocking 0");
    std::thread::sleep(SETTLE);
    reader.kill();
    let t = Instant::now();
    let r = loop {
        match a.send_bytes_timeout(&[7; 64], BOUND) {
            Ok(()) => continue,
            other => break other,
        }
    };
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert!(t.elapsed() < BOUND, "{:?}", t.elapsed());
    // Writer blocked in send on a full ring, killed.
    let n = unique("fkpw");
    let pipe = Pipe::create(&n, 4096).unwrap();
    let mut a = pipe.connect(End::A).unwrap();
    let mut writer = spawn("pipe_blocked")
        .arg("pipe", &n)
        .arg("op", "send")
        .start();
    let Some(m) = writer.recv(BOUND) else {
        panic!("writer silent\n{}", writer.output());
    };
    let sent: u64 = m.strip_prefix("blocking ").unwrap().parse().unwrap();
    assert!(sent > 0);
    std::thread::sleep(SETTLE);
    writer.kill();
    for i in 0..sent {
        assert_eq!(a.recv_bytes_timeout(BOUND).unwrap(), i.to_le_bytes());
    }
    let r = a.recv_bytes_timeout(BOUND);
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
}
