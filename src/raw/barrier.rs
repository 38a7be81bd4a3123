//! [`RawBarrier`]: Python's `Barrier` in place.
//!
//! ## Layout (32 bytes, align 8)
//!
//! | offset | field        | meaning                                               |
//! |-------:|--------------|-------------------------------------------------------|
//! |      0 | `magic`      | `BARRIER_MAGIC`                                       |
//! |      4 | `parties`    | 1..=[`BARRIER_PARTIES_MAX`]                           |
//! |      8 | `word`       | the futex word: see below                             |
//! |     12 | `sleepers`   | waiters announced as (about to be) asleep on `word`   |
//! |     16 | `reset_gens` | bit `g % 64` set: generation `g` ended by a `reset`   |
//! |     24 | `timeout_ns` | default timeout of `wait` (`u64::MAX`: none)          |
//!
//! `word`: bit 0 `BROKEN`; bits 1..16 `count` (arrivals in this generation);
//! bits 16..32 `gen` (the generation, wrapping; only compared for
//! equality).
//!
//! ## Protocol
//!
//! Every change of `word` is one CAS, so arrival, trip, break and reset are
//! totally ordered.
//!
//! * Arrive: `(gen, c, !BROKEN)` with `c < parties` becomes `(gen, c + 1)`;
//!   the arrival's index is `c`. A `BROKEN` word refuses arrivals
//!   ([`Error::BrokenBarrier`]); `c == parties` means the last arriver is
//!   running the action: later arrivals belong to the next generation and
//!   wait for `gen` to move.
//! * Trip: the arrival that made `c + 1 == parties` runs the action (if
//!   any), clears bit `gen + 1` of `reset_gens`, then CASes `(gen, parties,
//!   !BROKEN)` to `(gen + 1, 0, !BROKEN)` (Release) and, after a SeqCst
//!   fence, wakes everybody if `sleepers != 0` (waiters increment it, fence,
//!   and re-read `word` before sleeping: the Dekker pair, SYNC POINT).
//!   If the CAS fails, the generation was broken meanwhile: it returns
//!   [`Error::BrokenBarrier`].
//! * Break (timeout, abort, a panicking action): set `BROKEN` in the
//!   current generation, wake everybody. Waiters of that generation see
//!   `BROKEN` and return [`Error::BrokenBarrier`], as do later arrivals.
//! * Reset: break the current generation `g` (if not broken), set bit `g`
//!   and clear bit `g + 1` of `reset_gens`, then CAS `(g, _, BROKEN)` to
//!   `(g + 1, 0, !BROKEN)`, wake everybody. A waiter of `g` that wakes to
//!   find `gen` moved on reads bit `g`: set means reset (broken), clear
//!   means tripped. Bit `g` is written only while `g`'s fate is sealed
//!   (broken, so no trip can happen), and cleared by whoever moves `word`
//!   into `g` before anyone can arrive in it, so it is never stale (for 64
//!   generations: a waiter asleep while 64 resets go by could misread).
//!
//! A waiter killed while waiting stays counted: the generation can no
//! longer trip. The others find out through their timeout (the default one
//! given at creation, or `wait_timeout`), which breaks the barrier and wakes
//! everybody; `reset` makes it usable again.

use std::time::Duration;

use super::park::park;
use super::sync::{fence, futex_wake, AtomicU32, AtomicU64, Ordering::*};
use crate::sys::clock::Deadline;
use crate::{Error, Result};

const BARRIER_MAGIC: u32 = 0x4252_5252; // "BRRR"
const BROKEN: u32 = 1;
const COUNT_SHIFT: u32 = 1;
const COUNT_MASK: u32 = 0x7fff;
const GEN_SHIFT: u32 = 16;
const NO_TIMEOUT: u64 = u64::MAX;

/// The most parties a barrier can have.
pub const BARRIER_PARTIES_MAX: u32 = COUNT_MASK;

#[inline]
fn gen(w: u32) -> u32 {
    w >> GEN_SHIFT
}

#[inline]
fn count(w: u32) -> u32 {
    (w >> COUNT_SHIFT) & COUNT_MASK
}

#[inline]
fn pack(gen: u32, count: u32, broken: bool) -> u32 {
    (gen << GEN_SHIFT) | (count << COUNT_SHIFT) | u32::from(broken)
}

#[inline]
fn bit(gen: u32) -> u64 {
    1u64 << (gen % 64)
}

/// A reusable barrier for a fixed number of parties, in shared memory:
/// Python's `Barrier`.
///
/// Timeouts: `Duration::ZERO` breaks the barrier at once unless this
/// arrival trips it; a timeout elapses at about its deadline, never before,
/// and breaks the barrier for every waiter ([`Error::BrokenBarrier`], as in
/// Python, for the one that timed out too).
#[repr(C)]
#[derive(Debug)]
pub struct RawBarrier {
    magic: AtomicU32,
    parties: AtomicU32,
    word: AtomicU32,
    sleepers: AtomicU32,
    reset_gens: AtomicU64,
    timeout_ns: AtomicU64,
}

#[cfg(not(loom))]
static_assertions::assert_eq_size!(RawBarrier, [u64; 4]);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(std::mem::offset_of!(RawBarrier, word), 8);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(std::mem::offset_of!(RawBarrier, timeout_ns), 24);

/// Breaks the barrier if the action panics (so nobody waits for a trip
/// that will not come).
struct BreakOnUnwind<'a>(&'a RawBarrier, u32);

impl Drop for BreakOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.break_gen(self.1);
        }
    }
}

impl RawBarrier {
    /// Bytes the object spans.
    pub const SIZE: usize = 32;
    /// Alignment the object needs.
    pub const ALIGN: usize = 8;

    /// A barrier on the heap (tests, models). `parties` must be in
    /// `1..=BARRIER_PARTIES_MAX`.
    pub fn new(parties: u32, timeout: Option<Duration>) -> Result<RawBarrier> {
        if parties == 0 || parties > BARRIER_PARTIES_MAX {
            return Err(Error::InvalidArgument(
                "barrier parties must be in 1..=32767",
            ));
        }
        let ns = timeout.map_or(NO_TIMEOUT, |t| {
            u64::try_from(t.as_nanos())
                .unwrap_or(NO_TIMEOUT - 1)
                .min(NO_TIMEOUT - 1)
        });
        Ok(RawBarrier {
            magic: AtomicU32::new(BARRIER_MAGIC),
            parties: AtomicU32::new(parties),
            word: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            reset_gens: AtomicU64::new(0),
            timeout_ns: AtomicU64::new(ns),
        })
    }

    /// Initialises a barrier in place (see [`RawBarrier::new`]).
    ///
    /// # Safety
    /// `this` points to [`RawBarrier::SIZE`] writable bytes aligned to
    /// [`RawBarrier::ALIGN`], which nobody else touches until this returns,
    /// and which stay mapped while in use.
    pub unsafe fn init(
        this: *mut RawBarrier,
        parties: u32,
        timeout: Option<Duration>,
    ) -> Result<()> {
        debug_assert!(
            this as usize % Self::ALIGN == 0,
            "RawBarrier::init: misaligned"
        );
        let b = RawBarrier::new(parties, timeout)?;
        // SAFETY: the caller grants exclusive access to SIZE aligned bytes.
        unsafe { this.write(b) };
        Ok(())
    }

    /// Validates the control words; returns `parties`.
    pub fn check(&self) -> Result<u32> {
        if self.magic.load(Acquire) != BARRIER_MAGIC {
            return Err(Error::Corrupt("barrier not initialised"));
        }
        let parties = self.parties.load(Relaxed);
        if parties == 0 || parties > BARRIER_PARTIES_MAX {
            return Err(Error::Corrupt("barrier parties"));
        }
        if count(self.word.load(Relaxed)) > parties {
            return Err(Error::Corrupt("barrier count above parties"));
        }
        Ok(parties)
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.parties.load(Relaxed)
    }

    /// The default timeout of [`RawBarrier::wait`], set at creation.
    pub fn default_timeout(&self) -> Option<Duration> {
        match self.timeout_ns.load(Relaxed) {
            NO_TIMEOUT => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// How many are waiting in the current generation (0 when broken).
    pub fn n_waiting(&self) -> u32 {
        let w = self.word.load(Acquire);
        if w & BROKEN != 0 {
            0
        } else {
            count(w).min(self.parties().saturating_sub(1))
        }
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        self.word.load(Acquire) & BROKEN != 0
    }

    /// Waits for all parties, within the default timeout if one was set;
    /// returns this arrival's index, distinct in `0..parties` (Python's
    /// arrival order).
    pub fn wait(&self) -> Result<u32> {
        self.wait_until(self.default_timeout().map(Deadline::after), None::<fn()>)
    }

    /// [`RawBarrier::wait`] with its own timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_until(Some(Deadline::after(timeout)), None::<fn()>)
    }

    /// [`RawBarrier::wait`]; if this arrival is the last, runs `action`
    /// once, before anyone is released. A panicking action breaks the
    /// barrier (and the panic goes on in this process).
    pub fn wait_with_action(&self, action: impl FnOnce()) -> Result<u32> {
        self.wait_until(self.default_timeout().map(Deadline::after), Some(action))
    }

    pub(crate) fn wait_until(
        &self,
        deadline: Option<Deadline>,
        action: Option<impl FnOnce()>,
    ) -> Result<u32> {
        let parties = self.check()?;
        // Arrive.
        let mut w = self.word.load(Acquire);
        let (g, index) = loop {
            if w & BROKEN != 0 {
                return Err(Error::BrokenBarrier);
            }
            let c = count(w);
            if c > parties {
                return Err(Error::Corrupt("barrier count above parties"));
            }
            if c == parties {
                // The last arriver is running the action: ours is the next
                // generation.
                match self.sleep(w, deadline) {
                    Err(_) => {
                        // Our timeout breaks whichever generation is current.
                        self.break_gen(gen(self.word.load(Acquire)));
                        return Err(Error::BrokenBarrier);
                    }
                    Ok(()) => {
                        w = self.word.load(Acquire);
                        continue;
                    }
                }
            }
            let next = pack(gen(w), c + 1, false);
            match self.word.compare_exchange(w, next, AcqRel, Acquire) {
                Ok(_) => break (gen(w), c),
                Err(now) => w = now,
            }
        };
        if index + 1 == parties {
            return self.trip(g, index, parties, action);
        }
        // Wait for the trip.
        loop {
            let now = self.word.load(Acquire);
            if gen(now) != g {
                return self.outcome(g, index);
            }
            if now & BROKEN != 0 {
                return Err(Error::BrokenBarrier);
            }
            if count(now) > parties {
                return Err(Error::Corrupt("barrier count above parties"));
            }
            if self.sleep(now, deadline).is_err() {
                // Timed out: break our generation, unless it tripped.
                if !self.break_gen(g) && gen(self.word.load(Acquire)) != g {
                    return self.outcome(g, index);
                }
                return Err(Error::BrokenBarrier);
            }
        }
    }

    #[cold]
    fn trip(&self, g: u32, index: u32, parties: u32, action: Option<impl FnOnce()>) -> Result<u32> {
        if let Some(action) = action {
            let guard = BreakOnUnwind(self, g);
            action();
            drop(guard);
        }
        let ng = gen(pack(g.wrapping_add(1), 0, false));
        // Nobody can arrive in `ng` yet: its reset bit is ours to clear.
        self.reset_gens.fetch_and(!bit(ng), SeqCst);
        let full = pack(g, parties, false);
        // SYNC POINT: Release publishes the action's effects (and the
        // reset bit) to the waiters' Acquire loads of `word`.
        let r = self
            .word
            .compare_exchange(full, pack(ng, 0, false), AcqRel, Acquire);
        fence(SeqCst); // SYNC POINT: pairs with the fence in `sleep`.
        if self.sleepers.load(Relaxed) != 0 {
            futex_wake(&self.word, i32::MAX as u32);
        }
        match r {
            Ok(_) => Ok(index),
            Err(_) => Err(Error::BrokenBarrier),
        }
    }

    /// Sleeps while `word == seen` (announced in `sleepers`).
    fn sleep(&self, seen: u32, deadline: Option<Deadline>) -> Result<()> {
        self.sleepers.fetch_add(1, Relaxed);
        fence(SeqCst); // SYNC POINT: pairs with the fence in `trip`.
        let r = if self.word.load(Relaxed) == seen {
            park(&self.word, seen, deadline)
        } else {
            Ok(())
        };
        self.sleepers.fetch_sub(1, Relaxed);
        r
    }

    /// The outcome of generation `g`, which has ended.
    fn outcome(&self, g: u32, index: u32) -> Result<u32> {
        if self.reset_gens.load(SeqCst) & bit(g) != 0 {
            Err(Error::BrokenBarrier)
        } else {
            Ok(index)
        }
    }

    /// Sets `BROKEN` in generation `g` if it is still current and not
    /// broken; wakes everybody. Returns whether this call broke it.
    fn break_gen(&self, g: u32) -> bool {
        let mut w = self.word.load(Acquire);
        loop {
            if gen(w) != g || w & BROKEN != 0 {
                return false;
            }
            match self.word.compare_exchange(w, w | BROKEN, AcqRel, Acquire) {
                Ok(_) => {
                    futex_wake(&self.word, i32::MAX as u32);
                    return true;
                }
                Err(now) => w = now,
            }
        }
    }

    /// Breaks the barrier: every waiter and every later arrival gets
    /// [`Error::BrokenBarrier`] until [`RawBarrier::reset`].
    pub fn abort(&self) {
        let g = gen(self.word.load(Acquire));
        self.break_gen(g);
    }

    /// Makes the barrier usable again, as new: waiters of the current
    /// generation get [`Error::BrokenBarrier`].
    pub fn reset(&self) {
        let g = gen(self.word.load(Acquire));
        self.break_gen(g);
        // `g` is broken (by us or another) unless it moved on already.
        let w = self.word.load(Acquire);
        if gen(w) != g {
            return; // someone else reset (or it was never ours to reset)
        }
        let ng = g.wrapping_add(1) & 0xffff;
        self.reset_gens.fetch_or(bit(g), SeqCst);
        self.reset_gens.fetch_and(!bit(ng), SeqCst);
        // A broken generation changes only by a reset: one CAS suffices;
        // losing it means another reset moved it on.
        let _ = self
            .word
            .compare_exchange(w, pack(ng, 0, false), AcqRel, Acquire);
        futex_wake(&self.word, i32::MAX as u32);
    }
}

#[cfg(all(test, not(loom), target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn parties_zero_is_refused() {
        assert!(matches!(
            RawBarrier::new(0, None),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn one_party_trips_alone() {
        let b = RawBarrier::new(1, None).unwrap();
        let mut ran = 0;
        for _ in 0..3 {
            assert_eq!(b.wait_with_action(|| ran += 1).unwrap(), 0);
        }
        assert_eq!(ran, 3);
    }

    #[test]
    fn threads_in_step_and_timeout_breaks() {
        let b = Arc::new(RawBarrier::new(3, None).unwrap());
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..100).map(|_| b.wait().unwrap()).collect::<Vec<_>>())
            })
            .collect();
        for _ in 0..100 {
            b.wait().unwrap();
        }
        for t in ts {
            t.join().unwrap();
        }
        let t = std::time::Instant::now();
        assert!(matches!(
            b.wait_timeout(Duration::from_millis(30)),
            Err(Error::BrokenBarrier)
        ));
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert!(b.is_broken());
        assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
        b.reset();
        assert!(!b.is_broken());
        assert_eq!(b.n_waiting(), 0);
    }

    #[test]
    fn a_panicking_action_breaks_it() {
        let b = RawBarrier::new(1, None).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            b.wait_with_action(|| panic!("action failed"))
        }));
        assert!(r.is_err());
        assert!(b.is_broken());
        b.reset();
        assert_eq!(b.wait().unwrap(), 0);
    }

    #[test]
    fn garbage_is_corrupt() {
        let b = RawBarrier::new(2, None).unwrap();
        b.word.store(pack(0, 9, false), Relaxed);
        assert!(matches!(b.check(), Err(Error::Corrupt(_))));
        assert!(matches!(b.wait(), Err(Error::Corrupt(_))));
        b.parties.store(0, Relaxed);
        assert!(matches!(b.check(), Err(Error::Corrupt(_))));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;

    /// Two parties, two generations, an action counting trips: indices are
    /// distinct, the action runs once per trip and before the other party
    /// is released, and nobody sleeps through a trip (loom deadlock).
    #[test]
    fn barrier_loom_generations() {
        let mut model = loom::model::Builder::new();
        // Two threads, two trips: bounding preemptions keeps the model
        // under a minute; the lost-wake-up mutations are still caught.
        model.preemption_bound = Some(3);
        model.check(|| {
            let b = Arc::new(RawBarrier::new(2, None).unwrap());
            let trips = Arc::new(AtomicUsize::new(0));
            let (b2, t2) = (b.clone(), trips.clone());
            let t = loom::thread::spawn(move || {
                let mut idx = Vec::new();
                for round in 0..2 {
                    idx.push(
                        b2.wait_with_action(|| {
                            t2.fetch_add(1, SeqCst);
                        })
                        .unwrap(),
                    );
                    assert!(t2.load(SeqCst) > round);
                }
                idx
            });
            let mut mine = Vec::new();
            for round in 0..2 {
                mine.push(
                    b.wait_with_action(|| {
                        trips.fetch_add(1, SeqCst);
                    })
                    .unwrap(),
                );
                assert!(trips.load(SeqCst) > round);
            }
            let theirs = t.join().unwrap();
            for r in 0..2 {
                assert_ne!(mine[r], theirs[r]);
            }
            assert_eq!(trips.load(SeqCst), 2);
        });
    }

    /// A reset, then an abort, racing a waiter: whichever generation the
    /// waiter arrived in was broken, so it gets `BrokenBarrier` and is never
    /// left parked (a reset that forgot to wake would be a loom deadlock).
    #[test]
    fn barrier_loom_reset_wakes_waiter() {
        loom::model(|| {
            let b = Arc::new(RawBarrier::new(2, None).unwrap());
            let b2 = b.clone();
            let t = loom::thread::spawn(move || b2.wait());
            b.reset();
            b.abort();
            assert!(matches!(t.join().unwrap(), Err(Error::BrokenBarrier)));
        });
    }
}
