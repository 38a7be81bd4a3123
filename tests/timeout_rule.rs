//! The crate's one rule for "could not do it now" (crate docs, "Timeouts"),
//! on every lock and synchronisation primitive: `try_op` is "try once,
//! busy" (`WouldBlock`), `op_timeout(d)` is "deadline passed" (`Timeout`,
//! also for `Duration::ZERO`); terminal conditions win over both.
#![cfg(target_os = "linux")]

use shmprim::*;
use std::time::Duration;

const ZERO: Duration = Duration::ZERO;
const SHORT: Duration = Duration::from_millis(20);

fn failed<G>(r: LockResult<G>) -> Option<Error> {
    match r {
        Err(LockError::Failed(e)) => Some(e),
        _ => None,
    }
}

/// Runs `busy` on another thread while this one holds the lock.
fn from_another_thread<T: Send>(busy: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(busy).join().unwrap())
}

#[test]
fn try_is_would_block_and_timeout_is_timeout_on_every_lock() {
    let lock = Lock::anonymous().unwrap();
    let rlock = RLock::anonymous().unwrap();
    let value = Value::<u64>::anonymous(0).unwrap();
    let array = Array::<u8>::anonymous(2).unwrap();
    let cond = Condition::anonymous().unwrap();
    let _held = (
        lock.lock().unwrap(),
        rlock.lock().unwrap(),
        value.lock().unwrap(),
        array.lock().unwrap(),
        cond.lock().unwrap(),
    );
    let got = from_another_thread(|| {
        [
            (failed(lock.try_lock()), failed(lock.lock_timeout(ZERO))),
            (failed(lock.try_lock()), failed(lock.lock_timeout(SHORT))),
            (failed(rlock.try_lock()), failed(rlock.lock_timeout(ZERO))),
            (failed(value.try_lock()), failed(value.lock_timeout(ZERO))),
            (failed(array.try_lock()), failed(array.lock_timeout(ZERO))),
            (failed(cond.try_lock()), failed(cond.lock_timeout(SHORT))),
        ]
    });
    for (i, (tried, timed)) in got.into_iter().enumerate() {
        assert!(matches!(tried, Some(Error::WouldBlock)), "{i}: {tried:?}");
        assert!(matches!(timed, Some(Error::Timeout)), "{i}: {timed:?}");
    }
    // Python-shaped forms answer "deadline passed" as Python does.
    assert_eq!(
        from_another_thread(|| lock.acquire_timeout(ZERO).unwrap()),
        None
    );
}

#[test]
fn try_is_would_block_and_timeout_is_timeout_on_semaphores_and_waits() {
    let s = Semaphore::anonymous(0).unwrap();
    assert!(matches!(s.try_acquire(), Err(Error::WouldBlock)));
    assert!(matches!(s.acquire_timeout(ZERO), Err(Error::Timeout)));
    assert!(matches!(s.acquire_timeout(SHORT), Err(Error::Timeout)));
    let b = BoundedSemaphore::anonymous(0).unwrap();
    assert!(matches!(b.try_acquire(), Err(Error::WouldBlock)));
    assert!(matches!(b.acquire_timeout(ZERO), Err(Error::Timeout)));
    let e = Event::anonymous().unwrap();
    assert!(!e.wait_timeout(ZERO), "Python's Event.wait(0) is False");
    let c = Condition::anonymous().unwrap();
    let mut g = c.lock().unwrap();
    assert!(!c.wait_timeout(&mut g, ZERO).unwrap());
    let a = AtomicValue::<u32>::anonymous(7).unwrap();
    assert!(matches!(a.wait_while(7, Some(ZERO)), Err(Error::Timeout)));
    // A barrier's timeout breaks it (terminal): BrokenBarrier, as Python.
    let bar = Barrier::anonymous(2, None).unwrap();
    assert!(matches!(bar.wait_timeout(ZERO), Err(Error::BrokenBarrier)));
}
