//! [`RawEvent`]: Python's `Event` in place.
//!
//! ## Layout (16 bytes, align 4)
//!
//! | offset | field      | meaning                                                |
//! |-------:|------------|--------------------------------------------------------|
//! |      0 | `magic`    | `EVENT_MAGIC`                                          |
//! |      4 | `word`     | bit 0: set; bits 1..32: how many times it was set (wrapping); the futex word |
//! |      8 | `sleepers` | waiters announced as (about to be) asleep on `word`    |
//! |     12 | reserved   | zero                                                   |
//!
//! ## Protocol
//!
//! `set`: if the set bit is clear, CAS `word` to `(sets + 1) << 1 | 1`
//! (Release); SeqCst fence; if `sleepers != 0`, `FUTEX_WAKE(word, all)`.
//! `clear`: clear bit 0. `wait`: read `word` (Acquire); if set, done.
//! Otherwise `sleepers += 1`, SeqCst fence (SYNC POINT: the Dekker pair
//! with `set`), re-read: if the word changed at all, a `set` happened since
//! the first read (only `set` moves the counter; `clear` restores the bit
//! only) and the wait returns `true` even if a `clear` followed, as in
//! Python where every waiter present at a `set` is released. Otherwise
//! `FUTEX_WAIT(word, first value)`, in slices of at most 200 ms: a `set`
//! killed between its CAS and its wake must not leave a sleeper asleep for
//! ever (it re-reads the word after each slice).
//!
//! A waiter killed while asleep leaves `sleepers` too high: each later
//! `set` then makes one needless wake call, never a wrong result.

use std::time::Duration;

use super::park::{park, slice};
use super::sync::{fence, futex_wake, AtomicU32, Ordering::*};
use crate::sys::clock::Deadline;
use crate::{Error, Result};

const EVENT_MAGIC: u32 = 0x4556_4e54; // "EVNT"
const SET: u32 = 1;

/// An event flag in shared memory: Python's `Event`.
///
/// Timeouts: `Duration::ZERO` looks once; a timed wait returns at about
/// its deadline, never before, with the flag as it is then (`false` unless
/// it was set meanwhile). `Duration`s cannot be negative, so Python's
/// "negative timeout" case does not arise.
#[repr(C)]
#[derive(Debug)]
pub struct RawEvent {
    magic: AtomicU32,
    word: AtomicU32,
    sleepers: AtomicU32,
    _reserved: AtomicU32,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(RawEvent, [u32; 4]);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(std::mem::offset_of!(RawEvent, word), 4);

impl Default for RawEvent {
    fn default() -> Self {
        Self::new()
    }
}

impl RawEvent {
    /// Bytes the object spans.
    pub const SIZE: usize = 16;
    /// Alignment the object needs.
    pub const ALIGN: usize = 4;

    /// A clear event on the heap (tests, models).
    pub fn new() -> RawEvent {
        RawEvent {
            magic: AtomicU32::new(EVENT_MAGIC),
            word: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
        }
    }

    /// Initialises a clear event in place.
    ///
    /// # Safety
    /// `this` points to [`RawEvent::SIZE`] writable bytes aligned to
    /// [`RawEvent::ALIGN`], which nobody else touches until this returns,
    /// and which stay mapped while in use.
    pub unsafe fn init(this: *mut RawEvent) {
        debug_assert!(
            this as usize % Self::ALIGN == 0,
            "RawEvent::init: misaligned"
        );
        // SAFETY: the caller grants exclusive access to SIZE aligned bytes.
        unsafe { this.write(RawEvent::new()) }
    }

    /// Validates the object (every flag/counter value is meaningful, so
    /// only the magic can be wrong).
    pub fn check(&self) -> Result<()> {
        if self.magic.load(Acquire) != EVENT_MAGIC {
            return Err(Error::Corrupt("event not initialised"));
        }
        Ok(())
    }

    /// Whether the flag is set.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.word.load(Acquire) & SET != 0
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let mut w = self.word.load(Relaxed);
        while w & SET == 0 {
            // SYNC POINT: Release pairs with the Acquire loads in `wait`.
            match self
                .word
                .compare_exchange_weak(w, (w.wrapping_add(2)) | SET, Release, Relaxed)
            {
                Ok(_) => {
                    // A setter killed here leaves the flag set and its
                    // sleepers unwoken: they see it at the end of their slice.
                    crate::fault::fault_point!("event.set.flagged");
                    fence(SeqCst); // SYNC POINT: pairs with the fence in `wait_until`.
                    if self.sleepers.load(Relaxed) != 0 {
                        futex_wake(&self.word, i32::MAX as u32);
                    }
                    return;
                }
                Err(now) => w = now,
            }
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.word.fetch_and(!SET, Relaxed);
    }

    /// Waits until the flag is set; returns `true`.
    pub fn wait(&self) -> bool {
        self.wait_until(None)
    }

    /// Waits at most `timeout`; returns the flag (`true`: set, or set and
    /// cleared again while this waited).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(Deadline::after(timeout)))
    }

    pub(crate) fn wait_until(&self, deadline: Option<Deadline>) -> bool {
        let first = self.word.load(Acquire);
        if first & SET != 0 {
            return true;
        }
        loop {
            if deadline.is_some_and(Deadline::has_passed) {
                return self.is_set();
            }
            self.sleepers.fetch_add(1, Relaxed);
            fence(SeqCst); // SYNC POINT: pairs with the fence in `set`.
            let now = self.word.load(Acquire);
            let r = if now == first {
                park(&self.word, first, slice(deadline))
            } else {
                Ok(())
            };
            self.sleepers.fetch_sub(1, Relaxed);
            if self.word.load(Acquire) != first {
                // Only `set` moves the counter: it was set since `first`.
                return true;
            }
            // A slice ended: a timeout only once the caller's deadline has.
            if r.is_err() && deadline.is_some_and(Deadline::has_passed) {
                return self.is_set();
            }
        }
    }
}

#[cfg(all(test, not(loom), target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn set_before_wait_is_seen() {
        let e = RawEvent::new();
        assert!(!e.wait_timeout(Duration::ZERO));
        e.set();
        assert!(e.wait());
        e.clear();
        let t = std::time::Instant::now();
        assert!(!e.wait_timeout(Duration::from_millis(30)));
        assert!(t.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn set_then_clear_releases_waiters() {
        let e = Arc::new(RawEvent::new());
        let ts: Vec<_> = (0..3)
            .map(|_| {
                let e = e.clone();
                std::thread::spawn(move || e.wait())
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30));
        e.set();
        e.clear();
        for t in ts {
            assert!(t.join().unwrap());
        }
    }

    /// A setter killed between its CAS and its FUTEX_WAKE (simulated: the
    /// CAS's store without the wake) must not leave a sleeper asleep: it
    /// sleeps in slices and re-reads the word. (Review finding F5.)
    #[test]
    fn a_setter_dead_before_its_wake_leaves_no_sleeper_behind() {
        let e = Arc::new(RawEvent::new());
        let e2 = e.clone();
        let t = std::thread::spawn(move || {
            let s = std::time::Instant::now();
            (e2.wait_timeout(Duration::from_secs(5)), s.elapsed())
        });
        let start = std::time::Instant::now();
        while e.sleepers.load(Relaxed) != 1 {
            assert!(start.elapsed() < Duration::from_secs(10), "never asleep");
            std::thread::sleep(Duration::from_millis(5));
        }
        e.word.store(3, Release); // the setter's CAS; it dies before the wake
        let (r, took) = t.join().unwrap();
        assert!(r);
        // A slice is 200 ms; the waiter's own timeout is 5 s.
        assert!(
            took < Duration::from_secs(4),
            "event set, waiter slept on for {took:?}"
        );
    }

    /// The set counter near its wrap (the fault suite's counter-wrap case):
    /// a `set` that wraps the counter to 0 still changes the word, so a
    /// sleeper that read the word before it is released.
    #[test]
    fn a_set_that_wraps_the_counter_releases_sleepers() {
        let e = Arc::new(RawEvent::new());
        e.word.store(u32::MAX - 1, Relaxed); // counter at its maximum, clear
        let e2 = e.clone();
        let t = std::thread::spawn(move || e2.wait_timeout(Duration::from_secs(20)));
        let start = std::time::Instant::now();
        while e.sleepers.load(Relaxed) != 1 {
            assert!(start.elapsed() < Duration::from_secs(10), "never asleep");
            std::thread::sleep(Duration::from_millis(2));
        }
        e.set();
        assert!(t.join().unwrap());
        assert_eq!(e.word.load(Relaxed), SET, "the counter wrapped to 0");
        e.clear();
        assert!(!e.wait_timeout(Duration::ZERO));
        e.set();
        assert!(e.wait_timeout(Duration::ZERO));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// A waiter against `set`, `clear`, `set`: it returns `true`. A
    /// waiter that looked before the first `set` must be released by it
    /// even though a `clear` follows (it sleeps on the old word); one that
    /// looked after the `clear` is released by the second `set`. A lost
    /// wake-up leaves one parked for ever (loom deadlock).
    #[test]
    fn event_loom_set_wakes_all() {
        loom::model(|| {
            let e = Arc::new(RawEvent::new());
            let e2 = e.clone();
            let t = loom::thread::spawn(move || e2.wait());
            e.set();
            e.clear();
            e.set();
            assert!(t.join().unwrap());
        });
    }
}

#[cfg(all(test, loom))]
mod loom_tests_two {
    use super::*;
    use loom::sync::Arc;

    /// Two waiters, one `set`: `set` wakes every waiter, not just one.
    #[test]
    fn event_loom_set_wakes_two() {
        let mut model = loom::model::Builder::new();
        // Three threads: bounded preemptions keep it under a minute.
        model.preemption_bound = Some(3);
        model.check(|| {
            let e = Arc::new(RawEvent::new());
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let e = e.clone();
                    loom::thread::spawn(move || e.wait())
                })
                .collect();
            e.set();
            for t in ts {
                assert!(t.join().unwrap());
            }
        });
    }
}
