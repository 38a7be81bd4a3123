//! [`RawBarrier`]: Python's `Barrier` in place.
//!
//! ## Layout (296 bytes, align 8)
//!
//! | offset | field          | meaning                                             |
//! |-------:|----------------|-----------------------------------------------------|
//! |      0 | `magic`        | `BARRIER_MAGIC`                                     |
//! |      4 | `parties`      | 1..=[`BARRIER_PARTIES_MAX`]                         |
//! |      8 | `word`         | the futex word: see below                           |
//! |     12 | `sleepers`     | waiters announced as (about to be) asleep on `word` |
//! |     16 | `timeout_ns`   | default timeout of `wait` (`u64::MAX`: none)        |
//! |     24 | `trip_pid`     | pid of the party tripping the current generation    |
//! |     28 | `trip_gen`     | `gen \| VALID` of that record (0: none; 1: writing) |
//! |     32 | `trip_start`   | that party's process start time                     |
//! |     40 | `reset_tags`   | 64 × u32: slot `g % 64` holds `g \| VALID` once generation `g` was reset (`g \| PENDING` while its reset is under way) |
//!
//! `word`: bit 0 `BROKEN`; bits 1..16 `count` (arrivals in this generation);
//! bits 16..32 `gen` (the generation, wrapping; only compared for
//! equality). `VALID` is bit 16 of a tag (a 16-bit generation below it).
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
//!   wait for `gen` to move (whatever their timeout: the trip is coming).
//! * Trip: the arrival that made `c + 1 == parties` records itself (pid,
//!   start time, `gen | VALID`: only while `word` is still `(gen, parties,
//!   !BROKEN)`, checked before and after; claimed by a CAS of `trip_gen`
//!   from the value read before the check to `RECORDING`, published by a
//!   CAS from `RECORDING`, retracted if the check after fails: so a stale
//!   tripper, whose generation was reset, never replaces a live record),
//!   runs the action (if any, and only while `word` is still full),
//!   clears the reset tag of generation `gen + 33` if `word` is still
//!   `(gen, parties, !BROKEN)` (see below), then CASes
//!   `(gen, parties, !BROKEN)` to `(gen + 1, 0, !BROKEN)` (Release) and,
//!   after a SeqCst fence, wakes everybody if `sleepers != 0` (waiters
//!   increment it, fence, and re-read `word` before sleeping: the Dekker
//!   pair, SYNC POINT). If the CAS fails, the generation was broken
//!   meanwhile: it returns [`Error::BrokenBarrier`]. It then erases its
//!   record (a CAS from its own `gen | VALID`).
//! * Break (abort, a panicking action, a dead tripper, a timeout while
//!   `count < parties`): set `BROKEN` in the current generation, wake
//!   everybody. Waiters of that generation see `BROKEN` and return
//!   [`Error::BrokenBarrier`], as do later arrivals. A timeout does not
//!   break a generation every party reached (`count == parties`): that one
//!   is tripping, and its waiters wait for the trip, a timed waiter until
//!   [`ACTION_GRACE`] past its deadline at most (then it breaks it: an
//!   action that long, or bytes naming a live process as the tripper).
//! * Reset: mark the tag of the current generation `g` as `g | PENDING`
//!   (a CAS, never over a true `g | VALID`), break `g` (if not broken;
//!   every other break erases a `g | PENDING` mark before its own CAS, so
//!   a resetter killed between its mark and its break leaves nothing that
//!   makes a later abort or timeout look like a reset);
//!   then, while
//!   `word` is still `(g, _, BROKEN)` (its fate sealed: no trip can
//!   happen), write `reset_tags[g % 64] = g | VALID`, clear the tag of
//!   generation `g + 33`, and CAS `(g, _, BROKEN)` to `(g + 1, 0,
//!   !BROKEN)`, wake everybody. Racing resetters of `g` all write the same
//!   true tag; one CAS wins. An arrival that finds `g` broken with its tag
//!   `g | PENDING` (or `g | VALID`) does the same steps instead of failing,
//!   then arrives in `g + 1`: a party that retries right after a reset
//!   broke its wait is not refused by the reset's own break, and a
//!   resetter killed between its break and its move leaves nothing broken
//!   for longer than the next arrival.
//! * Outcome: a waiter of `g` that wakes to find `gen` moved on reads the
//!   tag of `g` (its Acquire load of `word` ordered the tag write before):
//!   `g | VALID` means reset (broken), anything else tripped. A trip
//!   writes no tag and clears none of a generation that could be current,
//!   so a stale trip can never erase the mark of a later reset. Every move
//!   from `g` to `g + 1` clears the slot of `g + 33` before the move (the
//!   tag that slot holds belongs to `g − 31` or older), so the tag of a
//!   generation reused after the 16-bit counter wraps is gone long before
//!   the generation starts again. Limits (windows of 31 generations): a
//!   waiter of `g` that sleeps while 31 further generations end may misread
//!   its outcome, and a tripper or resetter stalled between its look at
//!   `word` and its tag write while 31 generations pass may write a stale
//!   clear or tag.
//!
//! ## Dead parties
//!
//! A waiter killed while waiting stays counted: the generation can no
//! longer trip. The others find out through their timeout (the default one
//! given at creation, or `wait_timeout`), which breaks the barrier and wakes
//! everybody; `reset` makes it usable again.
//!
//! Waiters sleep in slices of at most 200 ms. A tripper killed between its
//! CAS and its wake is noticed at the next slice (the word moved). A
//! tripper killed while `count == parties` (in its action, or before its
//! trip CAS) is noticed through its record: a waiter that finds the
//! generation full after a slice, and the recorded tripper of that
//! generation dead (pid + start time; a zombie counts as dead; a record of
//! pid 0 or, where start times can be read, of start time 0 is garbage and
//! names nobody alive), breaks the generation. One window is covered only for waiters with a timeout: a
//! tripper killed between its arrival CAS and writing its record (a few
//! instructions). A waiter whose deadline has passed breaks a full
//! generation that has had no record for a second; waiters without a
//! timeout stay asleep until a `reset` or `abort`. A resetter killed
//! between its break and its move leaves the generation broken with its
//! reset announced: the next arrival finishes the reset. One killed
//! between its announcement and its break leaves a live generation with a
//! stale mark, which the next break that is no reset's erases (so an
//! abort or a timeout stays a break).
//!
//! Pid namespaces: the tripper record holds a pid and start time and no
//! namespace (the layout has no room for one), so a waiter judges the
//! tripper of a full generation by a pid of its own namespace. A tripper
//! in another pid namespace whose action outlasts a 200 ms slice may be
//! judged dead and its generation broken (every party gets
//! `BrokenBarrier`; nothing else is lost). Parties in several pid
//! namespaces should keep actions short, or run them after the barrier.

use std::time::Duration;

use super::park::{park, slice};
use super::sync::{fence, futex_wake, AtomicU32, AtomicU64, Ordering::*};
use crate::sys::clock::Deadline;
use crate::{Error, Result};

const BARRIER_MAGIC: u32 = 0x4252_5252; // "BRRR"
const BROKEN: u32 = 1;
const COUNT_SHIFT: u32 = 1;
const COUNT_MASK: u32 = 0x7fff;
const GEN_SHIFT: u32 = 16;
const GEN_MASK: u32 = 0xffff;
const NO_TIMEOUT: u64 = u64::MAX;
/// Marks a reset tag or a tripper record as written (above a 16-bit gen).
const VALID: u32 = 1 << 16;
/// `trip_gen` while a tripper writes its record (no `VALID`: no record).
const RECORDING: u32 = 1;
/// Marks a reset tag `g | PENDING` while generation `g`'s reset is under
/// way (no `VALID`: not an outcome yet; a trip that wins the race leaves it
/// behind, harmlessly, until the slot is cleared ahead).
const PENDING: u32 = 1 << 17;
/// Reset tags kept (a power of two dividing 65536, so that the slot of a
/// generation survives the counter's wrap).
const RESET_TAGS: usize = 64;
/// How long a waiter whose deadline has passed waits for the tripper of a
/// full generation to record itself before presuming it dead.
const UNRECORDED_GRACE: Duration = Duration::from_secs(1);
/// How long past its own deadline a timed wait waits for a full generation
/// to trip (its tripper running the action) before it breaks it anyway:
/// the bound on a timed wait whatever the shared bytes say (a record that
/// names a live process, by accident or forgery, could otherwise hold it
/// for as long as that process lives).
pub(crate) const ACTION_GRACE: Duration = Duration::from_secs(5);
/// How far ahead of the generation being left the tag slot cleared lies.
const CLEAR_AHEAD: u32 = RESET_TAGS as u32 / 2 + 1;

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
    ((gen & GEN_MASK) << GEN_SHIFT) | (count << COUNT_SHIFT) | u32::from(broken)
}

/// The tag slot of generation `g` (any `u32`, taken modulo 65536).
#[inline]
fn tag_slot(g: u32) -> usize {
    (g & GEN_MASK) as usize % RESET_TAGS
}

/// A reusable barrier for a fixed number of parties, in shared memory:
/// Python's `Barrier`.
///
/// Timeouts: `Duration::ZERO` breaks the barrier at once unless this
/// arrival trips it (an arrival while the previous generation is still
/// tripping first waits for that trip); a timeout elapses at about its deadline, never before,
/// and breaks the barrier for every waiter ([`Error::BrokenBarrier`], as in
/// Python, for the one that timed out too) — unless every party has
/// arrived by then: the last one is running the action, and the waiters
/// wait for its trip. A party killed while tripping (in its action) is
/// noticed by the waiters within about 200 ms: they break the barrier.
#[repr(C)]
#[derive(Debug)]
pub struct RawBarrier {
    magic: AtomicU32,
    parties: AtomicU32,
    word: AtomicU32,
    sleepers: AtomicU32,
    timeout_ns: AtomicU64,
    trip_pid: AtomicU32,
    trip_gen: AtomicU32,
    trip_start: AtomicU64,
    reset_tags: [AtomicU32; RESET_TAGS],
}

#[cfg(not(loom))]
static_assertions::const_assert_eq!(std::mem::size_of::<RawBarrier>(), RawBarrier::SIZE);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(std::mem::align_of::<RawBarrier>(), RawBarrier::ALIGN);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(std::mem::offset_of!(RawBarrier, word), 8);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(std::mem::offset_of!(RawBarrier, timeout_ns), 16);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(std::mem::offset_of!(RawBarrier, trip_pid), 24);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(std::mem::offset_of!(RawBarrier, trip_start), 32);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(std::mem::offset_of!(RawBarrier, reset_tags), 40);
// The tag slots must divide the 16-bit generation space evenly.
static_assertions::const_assert_eq!(65536 % RESET_TAGS, 0);

/// No action for [`RawBarrier::wait_until`].
const NO_ACTION: Option<fn() -> bool> = None;

/// How a wait with a fallible action failed
/// ([`RawBarrier::wait_with_fallible_action`]).
#[derive(Debug)]
pub enum BarrierActionError<E> {
    /// This process ran the action and it failed: the barrier is broken
    /// for every party.
    Action(E),
    /// The wait failed as any wait can ([`Error::BrokenBarrier`],
    /// [`Error::Corrupt`], ...); the action did not fail (or did not run).
    Barrier(Error),
}

impl<E: std::fmt::Display> std::fmt::Display for BarrierActionError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BarrierActionError::Action(e) => write!(f, "barrier action failed: {e}"),
            BarrierActionError::Barrier(e) => std::fmt::Display::fmt(e, f),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for BarrierActionError<E> {}

/// Breaks the barrier if the action panics (so nobody waits for a trip
/// that will not come).
struct BreakOnUnwind<'a>(&'a RawBarrier, u32);

impl Drop for BreakOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.break_gen(self.1, true);
        }
    }
}

impl RawBarrier {
    /// Bytes the object spans.
    pub const SIZE: usize = 40 + 4 * 64;
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
            timeout_ns: AtomicU64::new(ns),
            trip_pid: AtomicU32::new(0),
            trip_gen: AtomicU32::new(0),
            trip_start: AtomicU64::new(0),
            reset_tags: std::array::from_fn(|_| AtomicU32::new(0)),
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
        self.wait_until(self.default_timeout().map(Deadline::after), NO_ACTION)
    }

    /// [`RawBarrier::wait`] with its own timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_until(Some(Deadline::after(timeout)), NO_ACTION)
    }

    /// [`RawBarrier::wait`]; if this arrival is the last, runs `action`
    /// once, before anyone is released. A panicking action breaks the
    /// barrier (and the panic goes on in this process).
    pub fn wait_with_action(&self, action: impl FnOnce()) -> Result<u32> {
        self.wait_with_action_timeout(self.default_timeout(), action)
    }

    /// [`RawBarrier::wait_with_action`] within `timeout` (`None`: the
    /// default timeout given at creation, as Python's `wait(None)`).
    pub fn wait_with_action_timeout(
        &self,
        timeout: Option<Duration>,
        action: impl FnOnce(),
    ) -> Result<u32> {
        let action = || {
            action();
            true
        };
        self.wait_until(timeout.map(Deadline::after), Some(action))
    }

    /// [`RawBarrier::wait_with_action_timeout`] with an action that may
    /// fail: an `Err` from it breaks the barrier (every other party gets
    /// [`Error::BrokenBarrier`], as when Python's action raises) and comes
    /// back as [`BarrierActionError::Action`]; anything else the wait
    /// meets is [`BarrierActionError::Barrier`].
    pub fn wait_with_fallible_action<E>(
        &self,
        timeout: Option<Duration>,
        action: impl FnOnce() -> std::result::Result<(), E>,
    ) -> std::result::Result<u32, BarrierActionError<E>> {
        let mut failed = None;
        let r = self.wait_until(
            timeout.map(Deadline::after),
            Some(|| match action() {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }),
        );
        match (failed, r) {
            (Some(e), _) => Err(BarrierActionError::Action(e)),
            (None, Ok(i)) => Ok(i),
            (None, Err(e)) => Err(BarrierActionError::Barrier(e)),
        }
    }

    /// Waits until `deadline`; the last arrival runs `action` (if any),
    /// which returns whether it succeeded: a failure breaks the generation.
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Deadline>,
        action: Option<impl FnOnce() -> bool>,
    ) -> Result<u32> {
        let parties = self.check()?;
        // Arrive.
        let mut w = self.word.load(Acquire);
        // Since when a full generation has had no tripper record.
        let mut unrecorded = None;
        let (g, index) = loop {
            if w & BROKEN != 0 {
                if self.reset_pending(gen(w)) {
                    // Broken by a reset under way (or whose resetter died
                    // half-way): finish it, arrive in the next generation.
                    self.finish_reset(gen(w));
                    w = self.word.load(Acquire);
                    continue;
                }
                return Err(Error::BrokenBarrier);
            }
            let c = count(w);
            if c > parties {
                return Err(Error::Corrupt("barrier count above parties"));
            }
            if c == parties {
                // The last arriver is running the action: ours is the next
                // generation. Wait for the trip past our deadline (the
                // action is bounded by the user's code; a timeout now would
                // break a generation every party reached), in slices, to
                // notice a dead tripper; [`ACTION_GRACE`] past it at most.
                let _ = self.sleep(w, None);
                self.watch_tripper(w, deadline, &mut unrecorded);
                w = self.word.load(Acquire);
                continue;
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
        // A party killed here is counted and never leaves: as one killed
        // asleep, the generation cannot trip; the survivors' timeout breaks it.
        crate::fault::fault_point!("barrier.wait.arrived");
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
            if count(now) == parties {
                // Everyone arrived: the trip is coming, past our deadline
                // (by ACTION_GRACE at most), unless the tripper died.
                let _ = self.sleep(now, None);
                self.watch_tripper(now, deadline, &mut unrecorded);
                continue;
            }
            if self.sleep(now, deadline).is_err() {
                // Timed out: break our generation, unless it tripped or
                // every party reached it meanwhile (then loop: wait for
                // the trip).
                if self.break_gen(g, false) {
                    return Err(Error::BrokenBarrier);
                }
            }
        }
    }

    #[cold]
    fn trip(
        &self,
        g: u32,
        index: u32,
        parties: u32,
        action: Option<impl FnOnce() -> bool>,
    ) -> Result<u32> {
        let full = pack(g, parties, false);
        let recorded = parties > 1 && self.record_tripper(g, parties);
        // A tripper killed here (generation full, record written) is found
        // dead by the waiters' next slice: they break the generation.
        crate::fault::fault_point!("barrier.trip.recorded");
        if let Some(action) = action {
            // Not once our generation was reset (broken, or moved on): it
            // will not trip.
            if self.word.load(Acquire) == full {
                let guard = BreakOnUnwind(self, g);
                let ok = action();
                drop(guard);
                if !ok {
                    // Failed: break our generation (not whatever is
                    // current, should a reset have moved it on); the
                    // trip's CAS below then fails: `BrokenBarrier`.
                    self.break_gen(g, true);
                }
            }
        }
        let ng = g.wrapping_add(1) & GEN_MASK;
        if self.word.load(Acquire) == full {
            // Before the move (Release below), and only while it can still
            // succeed (not after our generation was reset under a long
            // action): the tag of `g + 33`, a long-gone generation's.
            self.clear_tag_ahead(g);
        }
        // SYNC POINT: Release publishes the action's effects (and the
        // cleared tag) to the waiters' Acquire loads of `word`.
        let r = self
            .word
            .compare_exchange(full, pack(ng, 0, false), AcqRel, Acquire);
        // A tripper killed here (generation moved, nobody woken) is noticed
        // at the waiters' next slice: the word moved, they return tripped.
        crate::fault::fault_point!("barrier.trip.moved");
        fence(SeqCst); // SYNC POINT: pairs with the fence in `sleep`.
        if self.sleepers.load(Relaxed) != 0 {
            futex_wake(&self.word, i32::MAX as u32);
        }
        if recorded {
            // Erase our record, unless a later tripper's replaced it.
            let _ = self
                .trip_gen
                .compare_exchange(g | VALID, 0, Relaxed, Relaxed);
        }
        match r {
            Ok(_) => Ok(index),
            Err(_) => Err(Error::BrokenBarrier),
        }
    }

    /// Clears the reset tag of generation `g + CLEAR_AHEAD`, on the way
    /// from `g` to `g + 1`.
    #[inline]
    fn clear_tag_ahead(&self, g: u32) {
        self.reset_tags[tag_slot(g.wrapping_add(CLEAR_AHEAD))].store(0, Relaxed);
    }

    /// Records this process as the tripper of generation `g` (a seqlock:
    /// `trip_gen` is [`RECORDING`] while the fields change), only while
    /// `word` is `(g, parties, !BROKEN)`: checked before claiming the record
    /// (a CAS from the value read before that check, so that a record
    /// written since is never replaced) and after publishing it (retracted
    /// if the generation ended meanwhile). Whether it did. (Another
    /// writer's claim, or one left by a writer that died, makes this skip:
    /// the generation goes unrecorded, which only timed waiters notice, as
    /// they do a tripper killed before its record; `reset` clears a stuck
    /// claim.)
    fn record_tripper(&self, g: u32, parties: u32) -> bool {
        let full = pack(g, parties, false);
        let old = self.trip_gen.load(Acquire);
        if old == RECORDING || self.word.load(Acquire) != full {
            return false;
        }
        if self
            .trip_gen
            .compare_exchange(old, RECORDING, Relaxed, Relaxed)
            .is_err()
        {
            return false;
        }
        fence(Release);
        let (pid, start) = me();
        self.trip_pid.store(pid, Relaxed);
        self.trip_start.store(start, Relaxed);
        if self
            .trip_gen
            .compare_exchange(RECORDING, g | VALID, Release, Relaxed)
            .is_err()
        {
            return false; // a reset cleared our claim
        }
        fence(SeqCst);
        if self.word.load(Acquire) != full {
            // Our generation ended (reset) while we wrote: take it back,
            // unless replaced already.
            let _ = self
                .trip_gen
                .compare_exchange(g | VALID, 0, Relaxed, Relaxed);
            return false;
        }
        true
    }

    /// After a slice in which `word` stayed `seen` (a full generation,
    /// tripping): breaks that generation (waking everybody) if its
    /// recorded tripper is dead (see [`tripper_alive`]); or, once the
    /// caller's own deadline has passed, if no tripper record has appeared
    /// for [`UNRECORDED_GRACE`] (the tripper died, or is stopped, between
    /// its arrival and its record: a few instructions), or whatever the
    /// record says once [`ACTION_GRACE`] has passed since that deadline.
    /// `unrecorded` is the caller's memory of when it first saw no record.
    fn watch_tripper(
        &self,
        seen: u32,
        deadline: Option<Deadline>,
        unrecorded: &mut Option<Deadline>,
    ) {
        if cfg!(loom) || seen & BROKEN != 0 || self.word.load(Acquire) != seen {
            *unrecorded = None;
            return;
        }
        let g = gen(seen);
        if deadline.is_some_and(|d| d.later_by(ACTION_GRACE).has_passed()) {
            self.break_gen(g, true);
            return;
        }
        let tag = self.trip_gen.load(Acquire);
        if tag != g | VALID {
            if deadline.is_some_and(Deadline::has_passed)
                && unrecorded
                    .get_or_insert_with(|| Deadline::after(UNRECORDED_GRACE))
                    .has_passed()
            {
                self.break_gen(g, true);
            }
            return;
        }
        *unrecorded = None;
        let pid = self.trip_pid.load(Relaxed);
        let start = self.trip_start.load(Relaxed);
        fence(Acquire);
        if self.trip_gen.load(Relaxed) != tag || tripper_alive(pid, start) {
            return;
        }
        if self.break_gen(g, true) {
            let _ = self.trip_gen.compare_exchange(tag, 0, Relaxed, Relaxed);
        }
    }

    /// Sleeps while `word == seen` (announced in `sleepers`), for one
    /// slice at most: `Ok` when woken, the word changed, or the slice
    /// ended; [`Error::Timeout`] only once `deadline` has passed.
    fn sleep(&self, seen: u32, deadline: Option<Deadline>) -> Result<()> {
        self.sleepers.fetch_add(1, Relaxed);
        fence(SeqCst); // SYNC POINT: pairs with the fence in `trip`.
        let r = if self.word.load(Relaxed) == seen {
            park(&self.word, seen, slice(deadline))
        } else {
            Ok(())
        };
        self.sleepers.fetch_sub(1, Relaxed);
        match r {
            Err(_) if deadline.is_some_and(Deadline::has_passed) => Err(Error::Timeout),
            _ => Ok(()),
        }
    }

    /// The outcome of generation `g`, which has ended.
    fn outcome(&self, g: u32, index: u32) -> Result<u32> {
        if self.reset_tags[tag_slot(g)].load(Acquire) == g | VALID {
            Err(Error::BrokenBarrier)
        } else {
            Ok(index)
        }
    }

    /// Sets `BROKEN` in generation `g` if it is still current and not
    /// broken (and, unless `full_too`, not full: every party arrived, the
    /// trip is coming); wakes everybody. Returns whether this call broke it.
    ///
    /// A break that is no reset's (abort, a timeout, a dead tripper, a
    /// panicking action) first erases an announcement of a reset of `g`
    /// (`g | PENDING`): one left by a resetter killed between announcing
    /// and breaking would otherwise turn this break into a reset for the
    /// next arrival. The erasure comes before the break's Release, so an
    /// arrival that sees this break sees it; a live resetter that announces
    /// after it still resets (its move follows), which orders its reset
    /// after this break.
    fn break_gen(&self, g: u32, full_too: bool) -> bool {
        self.set_broken(g, full_too, true)
    }

    /// [`RawBarrier::break_gen`]; `erase`: erase an announced reset of `g`
    /// before the break (every break but a reset's own).
    fn set_broken(&self, g: u32, full_too: bool, erase: bool) -> bool {
        let parties = self.parties.load(Relaxed);
        let mut w = self.word.load(Acquire);
        loop {
            if gen(w) != g || w & BROKEN != 0 || (!full_too && count(w) >= parties) {
                return false;
            }
            if erase {
                let _ = self.reset_tags[tag_slot(g)].compare_exchange(
                    (g & GEN_MASK) | PENDING,
                    0,
                    Relaxed,
                    Relaxed,
                );
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
        self.break_gen(g, true);
    }

    /// Makes the barrier usable again, as new: waiters of the current
    /// generation get [`Error::BrokenBarrier`].
    pub fn reset(&self) {
        let _ = self.reset_moved();
    }

    /// [`RawBarrier::reset`]; returns the generation this call moved on
    /// from, if its CAS did (for the models).
    fn reset_moved(&self) -> Option<u32> {
        let g = gen(self.word.load(Acquire));
        self.announce_reset(g);
        // A resetter killed here leaves its announcement on a live
        // generation: any later break of `g` erases it (see `break_gen`).
        crate::fault::fault_point!("barrier.reset.announced");
        self.set_broken(g, true, false);
        // A resetter killed here leaves `g` broken with its reset announced:
        // the next arrival finishes the reset.
        crate::fault::fault_point!("barrier.reset.broken");
        self.finish_reset(g)
    }

    /// Marks generation `g`'s reset as under way (`g | PENDING`), before
    /// breaking it (the Release of the break publishes the mark): an
    /// arrival that then finds `g` broken finishes the reset and waits in
    /// the next generation instead of failing. Never overwrites the true
    /// tag of a reset already done (a CAS from the value seen).
    fn announce_reset(&self, g: u32) {
        let slot = &self.reset_tags[tag_slot(g)];
        let cur = slot.load(Relaxed);
        if cur != g | VALID {
            let _ = slot.compare_exchange(cur, g | PENDING, Relaxed, Relaxed);
        }
    }

    /// Whether a reset of generation `g` (seen broken) is under way.
    fn reset_pending(&self, g: u32) -> bool {
        let t = self.reset_tags[tag_slot(g)].load(Relaxed);
        t == g | PENDING || t == g | VALID
    }

    /// Moves a broken generation `g` on to `g + 1` as reset (tag, clear
    /// ahead, CAS, wake): by its resetter, or by an arrival that found the
    /// reset under way. Returns `g` if this call's CAS moved it.
    fn finish_reset(&self, g: u32) -> Option<u32> {
        // `g` is broken (by us or another) unless it moved on already.
        let w = self.word.load(Acquire);
        if gen(w) != g || w & BROKEN == 0 {
            return None; // someone else reset (or it was never ours to reset)
        }
        // Sealed: `(g, _, BROKEN)` changes only by a reset. The tag is
        // true whoever wins the CAS below; the Release of the CAS (ours or
        // a racing resetter's, which wrote the same) publishes it.
        self.reset_tags[tag_slot(g)].store(g | VALID, Relaxed);
        self.clear_tag_ahead(g);
        // One CAS suffices; losing it means another reset moved it on.
        let moved = self
            .word
            .compare_exchange(w, pack(g.wrapping_add(1), 0, false), AcqRel, Acquire)
            .is_ok();
        futex_wake(&self.word, i32::MAX as u32);
        if moved {
            // A record claim left by a writer killed while writing: clear it
            // (a live writer's publish CAS then fails; it skips its record).
            let _ = self
                .trip_gen
                .compare_exchange(RECORDING, 0, Relaxed, Relaxed);
        }
        moved.then_some(g)
    }
}

/// This process's pid and start time.
#[cfg(not(loom))]
fn me() -> (u32, u64) {
    super::condvar::me()
}

#[cfg(loom)]
fn me() -> (u32, u64) {
    (1, 1)
}

#[cfg(not(loom))]
fn alive(pid: u32, start: u64) -> bool {
    crate::sys::proc::is_alive(pid, start)
}

#[cfg(loom)]
fn alive(_: u32, _: u64) -> bool {
    true
}

/// Whether the tripper recorded as (`pid`, `start`) may still be alive.
/// A real tripper records its start time whenever start times can be read
/// (then ours is known too): a record of pid 0, or of start time 0 while
/// ours is known, is garbage and names nobody.
fn tripper_alive(pid: u32, start: u64) -> bool {
    pid != 0 && (start != 0 || me().1 == 0) && alive(pid, start)
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

    /// Waits (bounded) until `n` parties wait on `b`.
    fn until_waiting(b: &RawBarrier, n: u32) {
        let t = std::time::Instant::now();
        while b.n_waiting() != n {
            assert!(t.elapsed() < Duration::from_secs(10), "never waiting");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A tripper killed between its trip CAS and its FUTEX_WAKE (simulated:
    /// the CAS's store without the wake) must not leave the other party
    /// asleep: waiters sleep in slices and re-read the word. (Review
    /// finding F5.)
    #[test]
    fn a_tripper_dead_before_its_wake_leaves_no_waiter_behind() {
        let b = Arc::new(RawBarrier::new(2, None).unwrap());
        let b2 = b.clone();
        let t = std::thread::spawn(move || {
            let s = std::time::Instant::now();
            (b2.wait_timeout(Duration::from_secs(5)), s.elapsed())
        });
        until_waiting(&b, 1);
        std::thread::sleep(Duration::from_millis(20));
        // The second arrival and its trip CAS, without the wake.
        b.word.store(pack(1, 0, false), Release);
        let (r, took) = t.join().unwrap();
        assert_eq!(r.unwrap(), 0);
        assert!(
            took < Duration::from_secs(4),
            "tripped, waiter slept on for {took:?}"
        );
    }

    /// A timeout that expires while the last arriver runs the action does
    /// not break the generation every party reached; an arrival with a
    /// zero timeout during the action waits for the trip, then counts (and
    /// times out) in the next generation. (Review finding L1.)
    #[test]
    fn a_timeout_during_the_action_does_not_break_a_full_generation() {
        let b = Arc::new(RawBarrier::new(2, None).unwrap());
        let b2 = b.clone();
        let timeout = Duration::from_secs(1);
        let early_deadline = std::time::Instant::now() + timeout;
        let early = std::thread::spawn(move || b2.wait_timeout(timeout));
        until_waiting(&b, 1);
        let mut late = None;
        let mine = b.wait_with_action(|| {
            let b3 = b.clone();
            late = Some(std::thread::spawn(move || b3.wait_timeout(Duration::ZERO)));
            let t = std::time::Instant::now();
            while b.sleepers.load(Relaxed) < 2 {
                assert!(t.elapsed() < Duration::from_secs(10), "late never slept");
                std::thread::sleep(Duration::from_millis(2));
            }
            // Past the early waiter's deadline, and then some.
            let until = early_deadline + Duration::from_millis(300);
            std::thread::sleep(until.saturating_duration_since(std::time::Instant::now()));
        });
        let early = early.join().unwrap();
        let late = late.unwrap().join().unwrap();
        let mut idx = vec![early.unwrap(), mine.unwrap()];
        idx.sort_unstable();
        assert_eq!(idx, vec![0, 1]);
        assert!(matches!(late, Err(Error::BrokenBarrier)), "{late:?}");
    }

    /// A tripper that dies inside its action (simulated: a full generation
    /// whose record names a process that does not exist) is noticed by a
    /// waiter without a timeout, which breaks the generation. (Review
    /// finding L2.)
    #[test]
    fn a_tripper_dead_in_its_action_breaks_the_barrier() {
        let b = Arc::new(RawBarrier::new(2, None).unwrap());
        let b2 = b.clone();
        let t = std::thread::spawn(move || b2.wait());
        until_waiting(&b, 1);
        // The last arrival and its record, then its death.
        b.trip_pid.store(0x3fff_fff0, Relaxed); // above any pid_max
        b.trip_start.store(1, Relaxed);
        b.trip_gen.store(VALID, Release);
        b.word.store(pack(0, 2, false), Release);
        assert!(matches!(t.join().unwrap(), Err(Error::BrokenBarrier)));
        assert!(b.is_broken());
        b.reset();
        assert!(!b.is_broken());
    }

    /// A tripper killed between its arrival and its record (simulated: a
    /// full generation, no record) is presumed dead by a waiter whose
    /// timeout has expired, a grace period later: it breaks the generation
    /// rather than wait for ever. Not before its timeout.
    #[test]
    fn a_full_generation_without_a_tripper_record_breaks_after_the_timeout() {
        let b = Arc::new(RawBarrier::new(2, None).unwrap());
        let b2 = b.clone();
        let t = std::thread::spawn(move || {
            let s = std::time::Instant::now();
            (b2.wait_timeout(Duration::from_millis(100)), s.elapsed())
        });
        until_waiting(&b, 1);
        b.word.store(pack(0, 2, false), Release);
        let (r, took) = t.join().unwrap();
        assert!(matches!(r, Err(Error::BrokenBarrier)), "{r:?}");
        assert!(took >= UNRECORDED_GRACE, "broken after {took:?}");
    }

    /// The reset tags: a reset generation is reported as reset even when
    /// a stale tripper (its generation reset under its action) finishes
    /// later; a tag left behind by a reset 65536 generations ago does not
    /// make a tripped generation look reset. (Review finding F3.)
    #[test]
    fn reset_tags_are_exact_across_wraps() {
        let b = RawBarrier::new(1, None).unwrap();
        b.reset(); // gen 0 reset
        assert_eq!(b.reset_tags[0].load(Relaxed), VALID);
        assert!(matches!(b.outcome(0, 0), Err(Error::BrokenBarrier)));
        // Trip through a full wrap of the 16-bit counter: gen 0 again.
        for _ in 0..0xffff {
            assert_eq!(b.wait().unwrap(), 0);
        }
        assert_eq!(gen(b.word.load(Relaxed)), 0);
        assert_eq!(b.wait().unwrap(), 0);
        assert_eq!(b.outcome(0, 0).unwrap(), 0, "a stale tag survived the wrap");
    }

    /// Garbage naming a live process (pid 1) with start time 0 as the
    /// tripper of a full generation names nobody: a timed wait breaks the
    /// generation at its first slice instead of waiting as long as pid 1
    /// lives. (Review 2, finding 2.)
    #[test]
    fn a_tripper_record_with_start_time_zero_names_nobody() {
        let b = Arc::new(RawBarrier::new(2, None).unwrap());
        b.trip_pid.store(1, Relaxed);
        b.trip_start.store(0, Relaxed);
        b.trip_gen.store(5 | VALID, Release);
        b.word.store(pack(5, 2, false), Release);
        let (tx, rx) = std::sync::mpsc::channel();
        let b2 = b.clone();
        std::thread::spawn(move || {
            let _ = tx.send(b2.wait_timeout(Duration::from_millis(50)));
        });
        let r = rx.recv_timeout(Duration::from_secs(3));
        assert!(
            matches!(r, Ok(Err(Error::BrokenBarrier))),
            "wait_timeout(50ms): {r:?} (still blocked after 3 s?)"
        );
        assert!(b.is_broken());
    }

    /// A full generation whose record names a live process with its true
    /// start time (this one; by forgery, or an action that never ends)
    /// holds a timed wait ACTION_GRACE past its deadline at most: then it
    /// breaks the generation. (Review 2, finding 2.)
    #[test]
    fn a_timed_wait_for_a_live_tripper_is_bounded() {
        let b = Arc::new(RawBarrier::new(2, None).unwrap());
        let (pid, start) = me();
        b.trip_pid.store(pid, Relaxed);
        b.trip_start.store(start, Relaxed);
        b.trip_gen.store(5 | VALID, Release);
        b.word.store(pack(5, 2, false), Release);
        let (tx, rx) = std::sync::mpsc::channel();
        let b2 = b.clone();
        let t0 = std::time::Instant::now();
        std::thread::spawn(move || {
            let _ = tx.send(b2.wait_timeout(Duration::from_millis(50)));
        });
        let r = rx.recv_timeout(ACTION_GRACE + Duration::from_secs(20));
        let took = t0.elapsed();
        assert!(matches!(r, Ok(Err(Error::BrokenBarrier))), "{r:?}");
        assert!(took >= ACTION_GRACE, "broken after {took:?}");
        assert!(b.is_broken());
    }

    /// A stale tripper (its generation reset before it recorded) must not
    /// replace the record of the live tripper of a later generation: a
    /// waiter whose deadline passed would then break that healthy
    /// generation a second later, although its tripper lives and would
    /// trip. (Review 2, finding 4.)
    #[test]
    fn a_stale_tripper_record_does_not_replace_a_live_one() {
        let b = Arc::new(RawBarrier::new(2, None).unwrap());
        let b2 = b.clone();
        let t = std::thread::spawn(move || b2.wait_timeout(Duration::from_millis(100)));
        until_waiting(&b, 1);
        // The live last arrival of gen 0 and its record.
        b.word
            .compare_exchange(pack(0, 1, false), pack(0, 2, false), AcqRel, Acquire)
            .unwrap();
        assert!(b.record_tripper(0, 2));
        // A stale tripper of a reset generation 7 records late: refused.
        assert!(!b.record_tripper(7, 2));
        assert_eq!(b.trip_gen.load(Relaxed), VALID);
        // The live tripper's action takes 2 s, then it trips.
        std::thread::sleep(Duration::from_secs(2));
        let tripped = b
            .word
            .compare_exchange(pack(0, 2, false), pack(1, 0, false), AcqRel, Acquire)
            .is_ok();
        futex_wake(&b.word, i32::MAX as u32);
        let r = t.join().unwrap();
        assert!(tripped && r.is_ok(), "tripped {tripped}, waiter {r:?}");
    }

    /// A stale tripper does not run its action once its generation was
    /// reset, and gets `BrokenBarrier`. A record claim left by a writer
    /// that died is cleared by `reset`. (Review 2, finding 4.)
    #[test]
    fn a_stale_tripper_skips_its_action_and_reset_clears_a_stuck_claim() {
        let b = RawBarrier::new(2, None).unwrap();
        b.word.store(pack(3, 2, false), Release);
        b.reset(); // generation 3 reset under its tripper
        let mut ran = false;
        let r = b.trip(
            3,
            1,
            2,
            Some(|| {
                ran = true;
                true
            }),
        );
        assert!(matches!(r, Err(Error::BrokenBarrier)), "{r:?}");
        assert!(!ran, "the action of a reset generation ran");
        assert_eq!(b.trip_gen.load(Relaxed), 0, "a stale record was written");
        b.trip_gen.store(RECORDING, Relaxed); // a writer died mid-record
        b.word.store(pack(9, 2, false), Release);
        assert!(!b.record_tripper(9, 2));
        b.reset();
        b.word.store(pack(11, 2, false), Release);
        assert!(b.record_tripper(11, 2));
        assert_eq!(b.trip_gen.load(Relaxed), 11 | VALID);
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

    /// Trips racing resets: every generation a reset moved on from must
    /// read as reset, every other (tripped) one as tripped, whatever the
    /// interleaving (including arrivals that finish a reset under way).
    /// The old scheme failed here: a tripper whose generation was reset
    /// before its trip CAS cleared the reset mark of the next generation
    /// after a second reset had set it.
    #[test]
    fn barrier_loom_reset_tags_exact() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let b = Arc::new(RawBarrier::new(1, None).unwrap());
            let b2 = b.clone();
            let t = loom::thread::spawn(move || {
                [b2.wait(), b2.wait()].iter().filter(|r| r.is_ok()).count()
            });
            let resets: Vec<u32> = (0..2).filter_map(|_| b.reset_moved()).collect();
            let trips = t.join().unwrap();
            let last = gen(b.word.load(SeqCst));
            let mut tripped = 0;
            for g in 0..last {
                let reset = b.outcome(g, 0).is_err();
                // Moved on by our reset's CAS: reads as reset. (The other
                // thread's arrival may finish a reset too, with its own CAS:
                // such a generation is counted by the totals below.)
                if resets.contains(&g) {
                    assert!(reset, "generation {g} reset, reads as tripped");
                }
                tripped += usize::from(!reset);
            }
            // Every generation was moved on by exactly one CAS, a trip or a
            // reset: the trips counted by the waiter read as tripped, all
            // others as reset.
            assert_eq!(tripped, trips);
        });
    }

    /// A party that retries once after `BrokenBarrier`, racing a reset and
    /// then an arrival: the retry is never refused by the reset's own
    /// break (an arrival while the reset is under way finishes it), so
    /// both meet in the generation after the reset. (Before, a retry in
    /// the reset's window got `BrokenBarrier` again and the other party
    /// waited for ever: a loom deadlock.)
    #[test]
    fn barrier_loom_retry_during_a_reset_is_not_refused() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let b = Arc::new(RawBarrier::new(2, None).unwrap());
            let b2 = b.clone();
            let t = loom::thread::spawn(move || match b2.wait() {
                Err(Error::BrokenBarrier) => b2.wait(),
                other => other,
            });
            b.reset();
            let mine = b.wait();
            let theirs = t.join().unwrap();
            assert!(mine.is_ok() && theirs.is_ok(), "{mine:?} {theirs:?}");
        });
    }

    /// A reset, then an abort, racing a waiter: whichever generation the
    /// waiter arrived in was broken, so it gets `BrokenBarrier` and is never
    /// left parked (a reset that forgot to wake would be a loom deadlock).
    /// Preemptions bounded (as in `barrier_loom_reset_tags_exact`): an
    /// arrival that finishes a reset under way doubles the reset's steps,
    /// and the unbounded model takes minutes.
    #[test]
    fn barrier_loom_reset_wakes_waiter() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let b = Arc::new(RawBarrier::new(2, None).unwrap());
            let b2 = b.clone();
            let t = loom::thread::spawn(move || b2.wait());
            b.reset();
            b.abort();
            assert!(matches!(t.join().unwrap(), Err(Error::BrokenBarrier)));
        });
    }

    /// A barrier whose generation 0 is full (its tripper about to record
    /// itself) over a stale record of generation 5 by process (7, 7).
    fn full_with_stale_record() -> RawBarrier {
        let b = RawBarrier::new(2, None).unwrap();
        b.word.store(pack(0, 2, false), SeqCst);
        b.trip_pid.store(7, SeqCst);
        b.trip_start.store(7, SeqCst);
        b.trip_gen.store(5 | VALID, SeqCst);
        b
    }

    /// The tripper record is a seqlock: a reader that reads it as
    /// `watch_tripper` does (tag, fields, Acquire fence, tag again;
    /// `watch_tripper` itself is off under loom, where nobody dies) and
    /// validates the new generation's tag sees the new fields, never the
    /// stale ones.
    #[test]
    fn loom_barrier_tripper_record_not_torn() {
        loom::model(|| {
            let b = Arc::new(full_with_stale_record());
            let b2 = b.clone();
            let reader = loom::thread::spawn(move || {
                let tag = b2.trip_gen.load(Acquire);
                if tag != VALID {
                    return false;
                }
                let pid = b2.trip_pid.load(Relaxed);
                let start = b2.trip_start.load(Relaxed);
                fence(Acquire);
                if b2.trip_gen.load(Relaxed) != tag {
                    return false;
                }
                assert_eq!((pid, start), me(), "torn tripper record");
                true
            });
            assert!(b.record_tripper(0, 2));
            reader.join().unwrap();
        });
    }

    /// A tripper records itself while the generation is reset: the claim
    /// is never left stuck, and a record stays only if the tripper
    /// believes it recorded (otherwise it was retracted or never made).
    #[test]
    fn loom_barrier_tripper_record_vs_reset() {
        loom::model(|| {
            let b = Arc::new(full_with_stale_record());
            let b2 = b.clone();
            let t = loom::thread::spawn(move || b2.record_tripper(0, 2));
            b.reset();
            let recorded = t.join().unwrap();
            let tag = b.trip_gen.load(SeqCst);
            assert_ne!(tag, RECORDING, "claim left stuck");
            assert_eq!(
                tag == VALID,
                recorded,
                "record {tag:#x}, recorded {recorded}"
            );
        });
    }
}
