//! An event count: "sleep until something changed", with no system call for
//! the notifier unless someone sleeps.
//!
//! Every blocking wait of the lock-free objects (a ring's reader waiting for
//! data, a semaphore's acquirer waiting for a permit, ...) is the same
//! dance: check a condition; if false, announce yourself, check again, and
//! sleep on a futex; the party that makes the condition true wakes the
//! sleepers, but only if there are any. `EventCount` is that dance once.
//!
//! ## Protocol
//!
//! Waiter: `sleepers += 1`, SeqCst fence, read `seq` (the key), re-check
//! the condition, and `FUTEX_WAIT(seq, key)`; afterwards `sleepers -= 1`.
//! Notifier: make the condition true, SeqCst fence, read `sleepers`; if
//! non-zero, `seq += 1` and `FUTEX_WAKE(seq)`.
//!
//! The two fences order "announce, then check" against "change, then look
//! for sleepers" (SYNC POINT: the Dekker pair). Either the notifier sees the
//! announcement and bumps `seq` (so the waiter's futex wait fails at once or
//! is woken), or the waiter's re-check sees the change and never sleeps.
//!
//! A sleeper killed while asleep leaves `sleepers` one too high for good:
//! notifiers then make one needless `FUTEX_WAKE` each time, which costs
//! time but never correctness. A wait may end for no reason (signal,
//! another waiter's wake): callers always loop on their own condition.

use super::sync::{fence, futex_wait, futex_wake, AtomicU32, Ordering::*};
use crate::sys::clock::Deadline;
use crate::Result;

/// An event count in shared memory: 8 bytes, all-zero is a valid initial
/// state, any bit pattern is safe (at worst it costs extra wake calls).
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct EventCount {
    /// Bumped by notifiers that saw a sleeper; the futex word.
    seq: AtomicU32,
    /// Waiters between `prepare` and the end of their wait.
    sleepers: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(EventCount, [u32; 2]);

/// The `seq` value read by [`EventCount::prepare`]: a wait sleeps only
/// while `seq` still holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a prepared waiter must wait or cancel, or `sleepers` stays raised"]
pub(crate) struct Key(u32);

impl EventCount {
    /// A fresh event count (all zero).
    pub(crate) fn new() -> EventCount {
        EventCount {
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Announces a waiter. Re-check the condition after this, then call
    /// [`wait`](Self::wait) if it is still false, or
    /// [`cancel`](Self::cancel) if it became true.
    #[inline]
    pub(crate) fn prepare(&self) -> Key {
        self.sleepers.fetch_add(1, Relaxed);
        fence(SeqCst); // SYNC POINT: pairs with the fence in `notify`.
        Key(self.seq.load(Acquire))
    }

    /// Withdraws an announcement made by [`prepare`](Self::prepare).
    #[inline]
    pub(crate) fn cancel(&self, _key: Key) {
        self.sleepers.fetch_sub(1, Relaxed);
    }

    /// Sleeps until notified after `key` was taken, or until `until` passes
    /// ([`Error::Timeout`](crate::Error::Timeout)). May return early: the
    /// caller re-checks its condition. Ends the announcement either way.
    pub(crate) fn wait(&self, key: Key, until: Option<Deadline>) -> Result<()> {
        let r = futex_wait(&self.seq, key.0, until);
        self.sleepers.fetch_sub(1, Relaxed);
        r
    }

    /// Wakes up to `n` sleepers, if any announced themselves. Call it after
    /// making the condition true. Without sleepers it is a fence and a load.
    #[inline]
    pub(crate) fn notify(&self, n: u32) {
        fence(SeqCst); // SYNC POINT: pairs with the fence in `prepare`.
        if self.sleepers.load(Relaxed) != 0 {
            self.notify_slow(n);
        }
    }

    /// Wakes every sleeper.
    #[inline]
    pub(crate) fn notify_all(&self) {
        self.notify(u32::MAX);
    }

    #[cold]
    fn notify_slow(&self, n: u32) {
        self.seq.fetch_add(1, Release);
        futex_wake(&self.seq, n.min(i32::MAX as u32));
    }

    /// Whether some waiter has announced itself (possibly a dead one).
    pub(crate) fn has_sleepers(&self) -> bool {
        self.sleepers.load(Relaxed) != 0
    }
}

#[cfg(all(test, not(loom), target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_notify_without_sleepers_leaves_seq_alone() {
        let ec = EventCount::new();
        ec.notify_all();
        let k = ec.prepare();
        assert_eq!(k, Key(0));
        ec.cancel(k);
        assert!(!ec.has_sleepers());
    }

    #[test]
    fn a_timed_wait_times_out_and_withdraws() {
        let ec = EventCount::new();
        let k = ec.prepare();
        let r = ec.wait(k, Some(Deadline::after(Duration::from_millis(10))));
        assert!(matches!(r, Err(crate::Error::Timeout)), "{r:?}");
        assert!(!ec.has_sleepers());
    }

    #[test]
    fn a_notify_wakes_a_sleeper() {
        let ec = Arc::new(EventCount::new());
        let flag = Arc::new(AtomicBool::new(false));
        let (ec2, flag2) = (ec.clone(), flag.clone());
        let t = std::thread::spawn(move || {
            while !flag2.load(std::sync::atomic::Ordering::Acquire) {
                let k = ec2.prepare();
                if flag2.load(std::sync::atomic::Ordering::Acquire) {
                    ec2.cancel(k);
                    break;
                }
                ec2.wait(k, None).unwrap();
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        flag.store(true, std::sync::atomic::Ordering::Release);
        ec.notify_all();
        t.join().unwrap();
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;

    /// One waiter, one notifier: the waiter never sleeps through the change.
    /// A lost wake-up would leave the waiter parked for ever, which loom
    /// reports as a deadlock.
    #[test]
    fn no_lost_wakeup() {
        loom::model(|| {
            let ec = Arc::new(EventCount::new());
            let flag = Arc::new(AtomicBool::new(false));
            let (ec2, flag2) = (ec.clone(), flag.clone());
            let t = loom::thread::spawn(move || loop {
                if flag2.load(Acquire) {
                    break;
                }
                let k = ec2.prepare();
                if flag2.load(Acquire) {
                    ec2.cancel(k);
                    break;
                }
                ec2.wait(k, None).unwrap();
            });
            flag.store(true, Release);
            ec.notify(1);
            t.join().unwrap();
        });
    }

    /// Two waiters, one `notify_all`: both wake. A notify that woke only
    /// one (or skipped the bump of `seq`) leaves the other parked for ever
    /// (loom deadlock).
    #[test]
    fn loom_eventcount_notify_all_wakes_two() {
        let mut model = loom::model::Builder::new();
        // Three threads: a preemption bound keeps it to seconds.
        model.preemption_bound = Some(2);
        model.check(|| {
            let ec = Arc::new(EventCount::new());
            let flag = Arc::new(AtomicBool::new(false));
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let (ec, flag) = (ec.clone(), flag.clone());
                    loom::thread::spawn(move || {
                        while !flag.load(Acquire) {
                            let k = ec.prepare();
                            if flag.load(Acquire) {
                                ec.cancel(k);
                                break;
                            }
                            ec.wait(k, None).unwrap();
                        }
                    })
                })
                .collect();
            flag.store(true, Release);
            ec.notify_all();
            for t in ts {
                t.join().unwrap();
            }
            assert!(!ec.has_sleepers());
        });
    }

    /// A waiter whose deadline has passed races a notify: it times out or
    /// returns, and withdraws its announcement either way.
    #[test]
    fn loom_eventcount_timed_out_waiter_withdraws() {
        loom::model(|| {
            let ec = Arc::new(EventCount::new());
            let ec2 = ec.clone();
            let t = loom::thread::spawn(move || {
                let k = ec2.prepare();
                let r = ec2.wait(k, Some(Deadline::PASSED));
                assert!(matches!(r, Err(crate::Error::Timeout)));
            });
            ec.notify(1);
            t.join().unwrap();
            assert!(!ec.has_sleepers());
        });
    }
}
