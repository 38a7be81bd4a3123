//! A signal storm against every blocking call: SIGUSR1 every 200 µs, with
//! a handler installed without `SA_RESTART` (so every futex wait, `poll`
//! or `nanosleep` inside sees `EINTR`). Each call must either complete
//! correctly (untimed: the awaited event comes during the storm) or time
//! out at its deadline (timed: never before it, never much after); never
//! return early with a spurious error, never hang. (`sync_signals.rs`
//! covers the timed waits of Semaphore, Event, Condition and Barrier, and
//! `pipe.rs` a timed `recv`; this file covers the rest and every untimed
//! call.)
#![cfg(target_os = "linux")]

mod harness;
use harness::*;
use shmprim::*;

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The timeout of the timed calls, and when the untimed ones are served.
const T: Duration = Duration::from_millis(250);
/// Slack above `T` (a loaded CI box; never a speed requirement).
const SLACK: Duration = Duration::from_secs(5);

extern "C" fn on_signal(_: libc::c_int) {}

fn install_handler() {
    // SAFETY: a zeroed sigaction with a handler that does nothing (async-
    // signal-safe) and no SA_RESTART is valid; SIGUSR1 is used by nothing
    // else in this test binary.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
}

/// Runs `wait` on a thread under a storm of SIGUSR1 aimed at that thread;
/// after `T`, runs `serve` (if any) on this thread while the storm goes on.
/// Returns what `wait` gave, how long it took, and how many signals were
/// sent while it ran; with `serve`, checks that `wait` ended after it.
fn storm<R: Send + 'static>(
    wait: impl FnOnce() -> R + Send + 'static,
    serve: Option<Box<dyn FnOnce() + '_>>,
) -> (R, Duration, u32) {
    let served = serve.is_some();
    install_handler();
    let _w = watchdog("signal storm", Duration::from_secs(30));
    let (tid_tx, tid_rx) = mpsc::channel();
    let (res_tx, res_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let waiter = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        tid_tx
            .send(unsafe { libc::pthread_self() } as usize)
            .unwrap();
        let t = Instant::now();
        let r = wait();
        res_tx.send((t.elapsed(), Instant::now())).unwrap();
        // Stay alive until the storm stops: signalling an exited thread's
        // id is undefined.
        let _ = done_rx.recv();
        r
    });
    let target = tid_rx.recv().unwrap() as libc::pthread_t;
    let start = Instant::now();
    let mut serve = serve;
    let mut sent = 0;
    let mut served_at = None;
    let (took, ended) = loop {
        if let Ok(r) = res_rx.try_recv() {
            break r;
        }
        // SAFETY: the waiter thread is alive until `done_tx` is used below.
        unsafe { libc::pthread_kill(target, libc::SIGUSR1) };
        sent += 1;
        if start.elapsed() >= T {
            if let Some(f) = serve.take() {
                served_at = Some(Instant::now());
                f();
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    done_tx.send(()).unwrap();
    if served {
        let at = served_at.expect("the wait ended before it was served");
        assert!(ended >= at, "the wait ended before it was served");
    }
    (waiter.join().unwrap(), took, sent)
}

/// A timed call under a storm: `Timeout` (checked by `is_timeout`) at `T`,
/// not before.
fn timed<R: Send + std::fmt::Debug + 'static>(
    what: &str,
    wait: impl FnOnce() -> R + Send + 'static,
    is_timeout: impl FnOnce(&R) -> bool,
) {
    let (r, took, sent) = storm(wait, None);
    assert!(is_timeout(&r), "{what}: {r:?} under a storm");
    assert!(took >= T, "{what}: returned early: {took:?}");
    assert!(took < T + SLACK, "{what}: returned late: {took:?}");
    assert!(sent > 10, "{what}: only {sent} signals");
}

/// An untimed call under a storm, served after `T`: it returns `ok` (not
/// before it was served).
fn untimed<'a, R: Send + std::fmt::Debug + 'static>(
    what: &str,
    wait: impl FnOnce() -> R + Send + 'static,
    serve: impl FnOnce() + 'a,
    ok: impl FnOnce(&R) -> bool,
) {
    let (r, took, sent) = storm(wait, Some(Box::new(serve)));
    assert!(ok(&r), "{what}: {r:?} under a storm");
    assert!(took < T + SLACK, "{what}: served late: {took:?}");
    assert!(sent > 10, "{what}: only {sent} signals");
}

fn is_timeout<T>(r: &Result<T>) -> bool {
    matches!(r, Err(Error::Timeout))
}

/// A lock result, described (the guard, which may not cross threads, is
/// dropped here).
fn d<G>(r: LockResult<G>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("{e:?}"),
    }
}

// ---------------------------------------------------------------- locks

#[test]
fn storm_lock_rlock_value_array() {
    let l = Lock::anonymous().unwrap();
    let g = l.lock().unwrap();
    let l2 = l.clone();
    timed(
        "Lock::lock_timeout",
        move || d(l2.lock_timeout(T)),
        |r| r == "Failed(Timeout)",
    );
    let l2 = l.clone();
    untimed(
        "Lock::lock",
        move || d(l2.lock()),
        || drop(g),
        |r| r == "ok",
    );

    let r = RLock::anonymous().unwrap();
    let g = r.lock().unwrap();
    let r2 = r.clone();
    timed(
        "RLock::lock_timeout",
        move || d(r2.lock_timeout(T)),
        |r| r == "Failed(Timeout)",
    );
    let r2 = r.clone();
    untimed(
        "RLock::lock",
        move || d(r2.lock()),
        || drop(g),
        |r| r == "ok",
    );

    let v = Value::<u64>::anonymous(0).unwrap();
    let g = v.lock().unwrap();
    let v2 = v.clone();
    timed(
        "Value::lock_timeout",
        move || d(v2.lock_timeout(T)),
        |r| r == "Failed(Timeout)",
    );
    let v2 = v.clone();
    untimed(
        "Value::get",
        move || v2.get(),
        || drop(g),
        |r| matches!(r, Ok(0)),
    );

    let a = Array::<u64>::anonymous(2).unwrap();
    let g = a.lock().unwrap();
    let a2 = a.clone();
    timed(
        "Array::lock_timeout",
        move || d(a2.lock_timeout(T)),
        |r| r == "Failed(Timeout)",
    );
    let a2 = a.clone();
    untimed(
        "Array::to_vec",
        move || a2.to_vec(),
        || drop(g),
        Result::is_ok,
    );
}

// ---------------------------------------------------------------- sync

#[test]
fn storm_semaphores_and_atomic_wait() {
    let s = Semaphore::anonymous(0).unwrap();
    let (s2, s3) = (s.clone(), s.clone());
    untimed(
        "Semaphore::acquire",
        move || s2.acquire(),
        move || s3.release().unwrap(),
        Result::is_ok,
    );
    assert_eq!(s.value(), 0);

    let b = BoundedSemaphore::anonymous(1).unwrap();
    b.acquire().unwrap();
    let b2 = b.clone();
    timed(
        "BoundedSemaphore::acquire_timeout",
        move || b2.acquire_timeout(T),
        is_timeout,
    );
    let (b2, b3) = (b.clone(), b.clone());
    untimed(
        "BoundedSemaphore::acquire",
        move || b2.acquire(),
        move || b3.release().unwrap(),
        Result::is_ok,
    );
    assert_eq!(b.value(), 0);

    let x = AtomicValue::<u32>::anonymous(0).unwrap();
    let x2 = x.clone();
    timed(
        "AtomicValue::wait_while",
        move || x2.wait_while(0, Some(T)),
        is_timeout,
    );
    let x2 = x.clone();
    untimed(
        "AtomicValue::wait_while (untimed)",
        move || x2.wait_while(0, None),
        || {
            x.store(7);
            x.wake_all().unwrap();
        },
        |r| matches!(r, Ok(7)),
    );
}

#[test]
fn storm_event_condition_barrier() {
    let e = Event::anonymous().unwrap();
    let (e2, e3) = (e.clone(), e.clone());
    untimed("Event::wait", move || e2.wait(), move || e3.set(), |r| *r);

    let c = Condition::anonymous().unwrap();
    let c2 = c.clone();
    untimed(
        "Condition::wait",
        move || {
            let mut g = c2.lock().unwrap();
            c2.wait(&mut g)
        },
        || {
            let g = c.lock().unwrap();
            assert_eq!(c.notify(&g, 1).unwrap(), 1);
        },
        Result::is_ok,
    );
    let flag = AtomicValue::<u32>::anonymous(0).unwrap();
    let (c2, f2) = (c.clone(), flag.clone());
    timed(
        "Condition::wait_for",
        move || {
            let mut g = c2.lock().unwrap();
            c2.wait_for(&mut g, || f2.load() == 1, T)
        },
        |r| matches!(r, Ok(false)),
    );
    let (c2, f2) = (c.clone(), flag.clone());
    untimed(
        "Condition::wait_for (served)",
        move || {
            let mut g = c2.lock().unwrap();
            c2.wait_for(&mut g, || f2.load() == 1, Duration::from_secs(20))
        },
        || {
            let g = c.lock().unwrap();
            flag.store(1);
            c.notify_all(&g).unwrap();
        },
        |r| matches!(r, Ok(true)),
    );

    let b = Barrier::anonymous(2, None).unwrap();
    let (b2, b3) = (b.clone(), b.clone());
    untimed(
        "Barrier::wait",
        move || b2.wait(),
        move || assert!(b3.wait().is_ok()),
        Result::is_ok,
    );
}

// ---------------------------------------------------------------- queues

#[test]
fn storm_queue_and_joinable_queue() {
    let q = Queue::anonymous(1, 8).unwrap();
    let q2 = q.clone();
    timed(
        "Queue::recv_timeout",
        move || q2.recv_timeout::<u64>(T),
        is_timeout,
    );
    let q2 = q.clone();
    untimed(
        "Queue::recv",
        move || q2.recv::<u64>(),
        || q.send(&5u64).unwrap(),
        |r| matches!(r, Ok(5)),
    );
    q.send(&1u64).unwrap(); // full
    let q2 = q.clone();
    timed(
        "Queue::send_timeout",
        move || q2.send_timeout(&2u64, T),
        is_timeout,
    );
    let q2 = q.clone();
    untimed(
        "Queue::send",
        move || q2.send(&2u64),
        || assert_eq!(q.recv::<u64>().unwrap(), 1),
        Result::is_ok,
    );
    // After the storm: timed, so a lost message fails instead of hanging.
    assert_eq!(q.recv_timeout::<u64>(Duration::from_secs(10)).unwrap(), 2);

    let j = JoinableQueue::anonymous(2, 8).unwrap();
    j.send(&1u64).unwrap();
    let j2 = j.clone();
    timed(
        "JoinableQueue::join_timeout",
        move || j2.join_timeout(T),
        is_timeout,
    );
    let j2 = j.clone();
    untimed(
        "JoinableQueue::join",
        move || j2.join(),
        || {
            let _: u64 = j.recv().unwrap();
            j.task_done().unwrap();
        },
        Result::is_ok,
    );
}

// ---------------------------------------------------------------- pipes

#[test]
fn storm_pipe_send_and_recv() {
    // End `b` travels to each waiter thread and back (an end is claimed per
    // process, so any thread of ours may use it).
    let (mut a, b) = Pipe::anonymous(4096).unwrap();
    let ((r, b), took, _) = storm(
        move || {
            let mut b = b;
            (b.recv_bytes_timeout(T), b)
        },
        None,
    );
    assert!(
        matches!(r, Err(Error::Timeout)),
        "recv_bytes_timeout: {r:?}"
    );
    assert!(
        took >= T && took < T + SLACK,
        "recv_bytes_timeout: {took:?}"
    );

    let a_ref = &mut a;
    let ((r, b), _, _) = storm(
        move || {
            let mut b = b;
            (b.recv_bytes(), b)
        },
        Some(Box::new(move || a_ref.send_bytes(b"hello").unwrap())),
    );
    assert_eq!(r.unwrap(), b"hello", "recv_bytes");

    // Fill `b -> a`; then blocked sends.
    let mut b = b;
    let mut queued = 0;
    while b.try_send_bytes(&[1; 100]).is_ok() {
        queued += 1;
    }
    let ((r, b), took, _) = storm(
        move || {
            let mut b = b;
            (b.send_bytes_timeout(&[2; 100], T), b)
        },
        None,
    );
    assert!(
        matches!(r, Err(Error::Timeout)),
        "send_bytes_timeout: {r:?}"
    );
    assert!(
        took >= T && took < T + SLACK,
        "send_bytes_timeout: {took:?}"
    );

    let a_ref = &mut a;
    let ((r, _b), _, _) = storm(
        move || {
            let mut b = b;
            (b.send_bytes(&[3; 100]), b)
        },
        Some(Box::new(move || {
            assert_eq!(a_ref.recv_bytes().unwrap(), [1; 100])
        })),
    );
    assert!(r.is_ok(), "send_bytes: {r:?}");
    // Nothing lost or duplicated: the rest of the queue, then the last.
    let ten = Duration::from_secs(10);
    for _ in 1..queued {
        assert_eq!(a.recv_bytes_timeout(ten).unwrap(), [1; 100]);
    }
    assert_eq!(a.recv_bytes_timeout(ten).unwrap(), [3; 100]);
    let rest = a.try_recv_bytes();
    assert!(matches!(rest, Err(Error::Empty)), "{rest:?}");
}
