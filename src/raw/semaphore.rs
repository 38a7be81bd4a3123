//! [`RawSemaphore`]: a counting semaphore (optionally bounded) in place.
//!
//! ## Layout (16 bytes, align 4)
//!
//! | offset | field      | meaning                                                  |
//! |-------:|------------|----------------------------------------------------------|
//! |      0 | `magic`    | `SEM_MAGIC`, low bit set for a bounded semaphore          |
//! |      4 | `count`    | permits available; the futex word                        |
//! |      8 | `max`      | the most `count` may reach (`u32::MAX` when unbounded)    |
//! |     12 | `sleepers` | acquirers announced as (about to be) asleep on `count`    |
//!
//! ## Protocol
//!
//! Acquire: CAS `count` from `c > 0` to `c - 1` (Acquire). If it is 0:
//! spin briefly, then `sleepers += 1`, SeqCst fence, re-read `count`, and
//! `FUTEX_WAIT(count, 0)`; `sleepers -= 1` afterwards; try again.
//! Release: CAS `count` from `c < max` to `c + 1` (Release): the bound check
//! and the increment are one atomic step, so racing releases of a bounded
//! semaphore never push it over; then SeqCst fence, and `FUTEX_WAKE(count,
//! 1)` only if `sleepers != 0`. The two fences are the Dekker pair (SYNC
//! POINT): either the releaser sees the announcement and wakes, or the
//! acquirer's re-read sees the permit and does not sleep.
//!
//! A woken acquirer that then gives up (its deadline passed) passes the
//! wake on if a permit is left and someone else sleeps, so a wake is never
//! swallowed by a waiter that leaves. A waiter killed between its wake-up
//! and its retry could still swallow one: sleepers therefore wait in slices
//! of at most 200 ms and re-check, so such a permit is picked up within
//! one slice. A waiter killed while asleep only leaves `sleepers` too high
//! (a needless wake system call per release, never a wrong result).
//!
//! ## Fairness
//!
//! Not FIFO. The kernel wakes futex sleepers in roughly arrival order, but
//! a running acquirer may take a released permit before the woken sleeper
//! runs ("barging"), which keeps the uncontended path free of system calls.
//! What is guaranteed: every release with sleepers wakes one, and a woken
//! sleeper that loses the race sleeps again at the back of the kernel's
//! queue; no sleeper waits longer than needed while permits stay available
//! (each re-checks at least every 200 ms). Under sustained contention a
//! particular acquirer can lose many races in a row: there is no bound on
//! that, as with `std` and `parking_lot` locks in their default mode.

use std::time::Duration;

use super::backoff::Backoff;
use super::park::{park, slice};
use super::sync::{fence, futex_wake, AtomicU32, Ordering::*};
use crate::sys::clock::Deadline;
use crate::{Error, Result};

const SEM_MAGIC: u32 = 0x5345_4d00; // "SEM\0"
const BOUNDED: u32 = 1;

/// The largest value a semaphore can hold.
pub const SEMAPHORE_VALUE_MAX: u32 = i32::MAX as u32;

/// A counting semaphore in shared memory: Python's `Semaphore` and
/// `BoundedSemaphore` (chosen at [`init`](RawSemaphore::init)).
///
/// Timeouts: `Duration::ZERO` makes one attempt; a timed acquire returns
/// [`Error::Timeout`] at about its deadline, never before. (Rust
/// `Duration`s cannot be negative, so Python's "negative timeout" case does
/// not arise.)
#[repr(C)]
#[derive(Debug)]
pub struct RawSemaphore {
    magic: AtomicU32,
    count: AtomicU32,
    max: AtomicU32,
    sleepers: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(RawSemaphore, [u32; 4]);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(std::mem::offset_of!(RawSemaphore, count), 4);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(std::mem::align_of::<RawSemaphore>(), 4);

impl RawSemaphore {
    /// Bytes the object spans.
    pub const SIZE: usize = 16;
    /// Alignment the object needs.
    pub const ALIGN: usize = 4;

    /// Checks a requested initial value: `value` must be in
    /// `0..=SEMAPHORE_VALUE_MAX` (a negative value is refused, as Python's
    /// `ValueError`, with [`Error::InvalidArgument`]).
    pub fn check_value(value: i64) -> Result<u32> {
        u32::try_from(value)
            .ok()
            .filter(|v| *v <= SEMAPHORE_VALUE_MAX)
            .ok_or(Error::InvalidArgument(
                "semaphore value must be in 0..=i32::MAX",
            ))
    }

    /// A semaphore on the heap (tests, models). `bounded`: releases beyond
    /// `value` are refused. A `value` above [`SEMAPHORE_VALUE_MAX`] is
    /// [`Error::InvalidArgument`] (as for [`RawSemaphore::init`] and
    /// [`RawBarrier::new`](super::RawBarrier::new)).
    pub fn new(value: u32, bounded: bool) -> Result<RawSemaphore> {
        if value > SEMAPHORE_VALUE_MAX {
            return Err(Error::InvalidArgument("semaphore value above i32::MAX"));
        }
        Ok(RawSemaphore {
            magic: AtomicU32::new(SEM_MAGIC | if bounded { BOUNDED } else { 0 }),
            count: AtomicU32::new(value),
            max: AtomicU32::new(if bounded { value } else { SEMAPHORE_VALUE_MAX }),
            sleepers: AtomicU32::new(0),
        })
    }

    /// Initialises a semaphore in place.
    ///
    /// # Safety
    /// `this` points to [`RawSemaphore::SIZE`] writable bytes aligned to
    /// [`RawSemaphore::ALIGN`], which nobody else touches until this returns
    /// (publish them afterwards with a Release store), and which stay mapped
    /// while in use.
    pub unsafe fn init(this: *mut RawSemaphore, value: u32, bounded: bool) -> Result<()> {
        let s = RawSemaphore::new(value, bounded)?;
        debug_assert!(
            this as usize % Self::ALIGN == 0,
            "RawSemaphore::init: misaligned"
        );
        // SAFETY: the caller grants exclusive access to SIZE aligned bytes.
        unsafe { this.write(s) };
        Ok(())
    }

    /// Validates the control words; returns whether it is bounded.
    pub fn check(&self) -> Result<bool> {
        let magic = self.magic.load(Acquire);
        if magic & !BOUNDED != SEM_MAGIC {
            return Err(Error::Corrupt("semaphore not initialised"));
        }
        let bounded = magic & BOUNDED != 0;
        let max = self.max.load(Relaxed);
        if max > SEMAPHORE_VALUE_MAX || (!bounded && max != SEMAPHORE_VALUE_MAX) {
            return Err(Error::Corrupt("semaphore maximum"));
        }
        if self.count.load(Relaxed) > max {
            return Err(Error::Corrupt("semaphore count above its maximum"));
        }
        Ok(bounded)
    }

    /// The number of permits now (a snapshot); never negative.
    pub fn value(&self) -> u32 {
        self.count.load(Relaxed)
    }

    /// For a bounded semaphore, its initial value; otherwise
    /// [`SEMAPHORE_VALUE_MAX`].
    pub fn max(&self) -> u32 {
        self.max.load(Relaxed)
    }

    /// Takes a permit if one is available: [`Error::WouldBlock`] otherwise.
    #[inline]
    pub fn try_acquire(&self) -> Result<()> {
        if self.try_take()? {
            Ok(())
        } else {
            Err(Error::WouldBlock)
        }
    }

    #[inline]
    fn try_take(&self) -> Result<bool> {
        let max = self.max.load(Relaxed);
        let mut c = self.count.load(Relaxed);
        loop {
            if c == 0 {
                return Ok(false);
            }
            if c > max {
                return Err(Error::Corrupt("semaphore count above its maximum"));
            }
            // SYNC POINT: Acquire pairs with the Release of `release`.
            match self.count.compare_exchange_weak(c, c - 1, Acquire, Relaxed) {
                Ok(_) => return Ok(true),
                Err(now) => c = now,
            }
        }
    }

    /// Waits for a permit.
    pub fn acquire(&self) -> Result<()> {
        self.acquire_until(None)
    }

    /// Waits at most `timeout` for a permit: [`Error::Timeout`] after it,
    /// never before; `Duration::ZERO` tries once.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
        self.acquire_until(Some(Deadline::after(timeout)))
    }

    pub(crate) fn acquire_until(&self, deadline: Option<Deadline>) -> Result<()> {
        if self.try_take()? {
            return Ok(());
        }
        self.acquire_slow(deadline)
    }

    #[cold]
    fn acquire_slow(&self, deadline: Option<Deadline>) -> Result<()> {
        if deadline.is_some_and(Deadline::has_passed) {
            return Err(Error::Timeout);
        }
        let mut backoff = Backoff::new();
        while !backoff.is_completed() {
            backoff.spin();
            if self.try_take()? {
                return Ok(());
            }
        }
        loop {
            self.sleepers.fetch_add(1, Relaxed);
            fence(SeqCst); // SYNC POINT: pairs with the fence in `release`.
            let r = if self.count.load(Relaxed) == 0 {
                park(&self.count, 0, slice(deadline))
            } else {
                Ok(())
            };
            self.sleepers.fetch_sub(1, Relaxed);
            if self.try_take()? {
                return Ok(());
            }
            if r.is_err() && deadline.is_some_and(Deadline::has_passed) {
                // We may have been woken for a permit another took since,
                // or be leaving with one we were woken for: pass it on.
                fence(SeqCst);
                if self.count.load(Relaxed) != 0 && self.sleepers.load(Relaxed) != 0 {
                    futex_wake(&self.count, 1);
                }
                return Err(Error::Timeout);
            }
        }
    }

    /// Adds a permit and wakes one sleeper, if any. A bounded semaphore at
    /// its initial value refuses with [`Error::InvalidArgument`] (Python's
    /// `ValueError`) and changes nothing; so does any semaphore at
    /// [`SEMAPHORE_VALUE_MAX`].
    pub fn release(&self) -> Result<()> {
        let max = self.max.load(Relaxed);
        let mut c = self.count.load(Relaxed);
        loop {
            if c >= max {
                if c > max {
                    return Err(Error::Corrupt("semaphore count above its maximum"));
                }
                return Err(Error::InvalidArgument(
                    "semaphore released too many times (above its bound)",
                ));
            }
            // SYNC POINT: Release pairs with the Acquire of `try_take`.
            match self.count.compare_exchange_weak(c, c + 1, Release, Relaxed) {
                Ok(_) => break,
                Err(now) => c = now,
            }
        }
        // A releaser killed here leaves the permit counted and its sleepers
        // unwoken: they find it at the end of their slice.
        crate::fault::fault_point!("semaphore.release.counted");
        fence(SeqCst); // SYNC POINT: pairs with the fence in `acquire_slow`.
        if self.sleepers.load(Relaxed) != 0 {
            futex_wake(&self.count, 1);
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom), target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Review finding L4: the heap constructor validates like `init`.
    #[test]
    fn a_value_above_the_maximum_is_refused() {
        assert!(matches!(
            RawSemaphore::new(SEMAPHORE_VALUE_MAX + 1, false),
            Err(Error::InvalidArgument(_))
        ));
        let s = RawSemaphore::new(SEMAPHORE_VALUE_MAX, true).unwrap();
        assert_eq!(s.value(), SEMAPHORE_VALUE_MAX);
    }

    #[test]
    fn counts_and_bounds() {
        let s = RawSemaphore::new(2, true).unwrap();
        assert!(s.check().unwrap());
        s.try_acquire().unwrap();
        s.try_acquire().unwrap();
        assert!(matches!(s.try_acquire(), Err(Error::WouldBlock)));
        assert!(matches!(
            s.acquire_timeout(Duration::ZERO),
            Err(Error::Timeout)
        ));
        s.release().unwrap();
        s.release().unwrap();
        assert!(matches!(s.release(), Err(Error::InvalidArgument(_))));
        assert_eq!(s.value(), 2);
        assert!(RawSemaphore::check_value(-1).is_err());
        assert_eq!(RawSemaphore::check_value(3).unwrap(), 3);
    }

    #[test]
    fn a_timed_acquire_is_not_early() {
        let s = RawSemaphore::new(0, false).unwrap();
        let t = std::time::Instant::now();
        assert!(matches!(
            s.acquire_timeout(Duration::from_millis(50)),
            Err(Error::Timeout)
        ));
        assert!(t.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn garbage_is_corrupt() {
        let s = RawSemaphore::new(1, true).unwrap();
        s.count.store(5, Relaxed);
        assert!(matches!(s.check(), Err(Error::Corrupt(_))));
        assert!(matches!(s.try_acquire(), Err(Error::Corrupt(_))));
        assert!(matches!(s.release(), Err(Error::Corrupt(_))));
        s.magic.store(7, Relaxed);
        assert!(matches!(s.check(), Err(Error::Corrupt(_))));
    }

    #[test]
    fn release_wakes_a_sleeper() {
        let s = Arc::new(RawSemaphore::new(0, false).unwrap());
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.acquire().unwrap());
        std::thread::sleep(Duration::from_millis(20));
        s.release().unwrap();
        t.join().unwrap();
        assert_eq!(s.value(), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// Two acquirers, two releases: nobody sleeps through a permit. A lost
    /// wake-up (a release that skips the wake, or an acquirer that
    /// announces itself after its last look at the count) leaves an
    /// acquirer parked for ever: a loom deadlock.
    #[test]
    fn semaphore_loom_no_lost_wakeup() {
        let mut model = loom::model::Builder::new();
        // Three threads: bounded preemptions keep it under a minute.
        model.preemption_bound = Some(3);
        model.check(|| {
            let s = Arc::new(RawSemaphore::new(0, false).unwrap());
            let a: Vec<_> = (0..2)
                .map(|_| {
                    let s = s.clone();
                    loom::thread::spawn(move || s.acquire().unwrap())
                })
                .collect();
            s.release().unwrap();
            s.release().unwrap();
            for t in a {
                t.join().unwrap();
            }
            assert_eq!(s.value(), 0);
        });
    }

    /// Racing releases of a bounded semaphore one below its bound: exactly
    /// one succeeds.
    #[test]
    fn bounded_semaphore_loom_release_race() {
        loom::model(|| {
            let s = Arc::new(RawSemaphore::new(1, true).unwrap());
            s.try_acquire().unwrap();
            let s2 = s.clone();
            let t = loom::thread::spawn(move || s2.release().is_ok());
            let mine = s.release().is_ok();
            let theirs = t.join().unwrap();
            assert!(mine ^ theirs);
            assert_eq!(s.value(), 1);
        });
    }

    /// A bounded semaphore at 0 of 1 with a sleeping acquirer: the release
    /// wakes it (or it never slept), and the bound then refuses exactly
    /// one of the two releases that follow.
    #[test]
    fn loom_bounded_semaphore_sleeper_then_bound() {
        loom::model(|| {
            let s = Arc::new(RawSemaphore::new(1, true).unwrap());
            s.try_acquire().unwrap();
            let s2 = s.clone();
            let t = loom::thread::spawn(move || {
                s2.acquire().unwrap();
                s2.release().is_ok()
            });
            s.release().unwrap();
            let mine = s.release().is_ok();
            let theirs = t.join().unwrap();
            assert!(mine ^ theirs, "mine {mine}, theirs {theirs}");
            assert_eq!(s.value(), 1);
        });
    }

    /// An acquirer whose deadline has passed races a release: it takes the
    /// permit or times out, and no permit is lost or made up.
    #[test]
    fn loom_semaphore_timeout_races_release() {
        loom::model(|| {
            let s = Arc::new(RawSemaphore::new(0, false).unwrap());
            let s2 = s.clone();
            let t = loom::thread::spawn(move || match s2.acquire_until(Some(Deadline::PASSED)) {
                Ok(()) => 1,
                Err(Error::Timeout) => 0,
                Err(e) => panic!("{e:?}"),
            });
            s.release().unwrap();
            let took = t.join().unwrap();
            assert_eq!(s.value() + took, 1);
        });
    }
}
