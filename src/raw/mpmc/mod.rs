//! `MpmcRing`: a bounded multi-producer multi-consumer ring of fixed-size
//! slots in shared memory, with per-slot stamps (Vyukov's bounded queue in
//! crossbeam's lap/index encoding), for [`Queue`](crate::Queue) and
//! [`JoinableQueue`](crate::JoinableQueue).
//!
//! ## Layout (all offsets from the ring's start, 64-byte aligned)
//!
//! | offset | line            | written by                              |
//! |-------:|-----------------|-----------------------------------------|
//! | 0      | geometry, `closed` hint                   | creator; `close`       |
//! | 64     | `not_empty` event count (consumers sleep) | sleeping consumers     |
//! | 128    | `not_full` event count (producers sleep)  | sleeping producers     |
//! | 192    | untracked senders' task count, `all_done` event count, `done` count | untracked senders (joinable), `task_done`, `join` |
//! | 256    | `tail`: the producers' position, closed mark | producers (CAS); `close` |
//! | 384    | `head`: the consumers' position           | consumers (CAS)        |
//! | 512    | abandoned counts, untracked holders       | recoverers; untracked holders |
//! | 576    | 64 peer entries, a line each              | each entry's owner     |
//! | 4672   | `capacity` slots of `stride` bytes        | whoever holds the slot |
//!
//! `tail` and `head` are each followed by an empty line, so that each sits
//! in a 128-byte pair of its own (the unit Intel's prefetcher moves).
//!
//! A slot is `{stamp: u64, len: u32, _: u32, payload: [u8; slot_size]}`;
//! the stride is `16 + slot_size` rounded up to 8. Slots are not padded to
//! a cache line each: that would make an 8-byte message cost 64 bytes, and
//! crossbeam's `ArrayQueue`, the yardstick, does not pad them either.
//!
//! ## Positions and stamps
//!
//! A position is `lap * one_lap + index`, with `one_lap` twice the smallest
//! power of two above `capacity` and `index < capacity`, so that bit
//! `mark = one_lap / 2` of a position is always clear (it is `tail`'s
//! closed mark, below); the next position after
//! index `capacity - 1` is index 0 of the next lap. Positions are `u64` and
//! wrap: `one_lap` divides 2^64, so a wrap always falls on a lap boundary and
//! every capacity from 1 up works (no power-of-two requirement).
//!
//! Each slot's `stamp` says who may touch it (`p` is a position whose index
//! is this slot):
//!
//! | stamp              | meaning                                             |
//! |--------------------|-----------------------------------------------------|
//! | `p`                | free for the producer at `p` (or claimed by it, not committed yet) |
//! | `p + 1`            | committed: full for the consumer at `p` (or borrowed by it) |
//! | `p + 2`            | poisoned: its producer died before committing; consumers skip it |
//! | `p + one_lap`      | released by the consumer at `p`: free for the producer at `p + one_lap` |
//!
//! Because `one_lap > capacity`, `p + 1` never equals a free stamp, which
//! is what lets capacity 1 work; and since `one_lap >= 4`, `p + 2` has an
//! index that no legal stamp of this slot has.
//!
//! * Producer: read `tail` = `p`; if the slot's stamp is `p`, CAS `tail`
//!   from `p` to `next(p)`: the slot is ours. Fill it, store `len`, then
//!   store the stamp `p + 1` (Release). A reservation dropped uncommitted
//!   stores `len = CANCELLED` and the stamp `p + 1`: consumers skip it.
//! * Closing: `close` sets `mark` in `tail` (`fetch_or`): no reservation
//!   CAS can succeed after it (the CAS expects an unmarked `tail`), so the
//!   marked `tail` is final and every reservation made before it still
//!   counts. A producer that finds the mark gets `Closed`.
//! * A consumer that finds nothing committed at `head` = `p` (and `head`
//!   unchanged) reports `Closed` only if `tail` is marked *and* equals
//!   `p`: every reservation ever made was consumed or skipped. Otherwise it
//!   is `Empty` (wait): committed messages, and reservations still open,
//!   are drained after a close. A producer that dies holding a reservation
//!   therefore keeps consumers from ever seeing `Closed` (they wait, in
//!   slices), as it already stops them at its slot (below). After a close,
//!   every commit, cancel and release wakes all sleeping consumers, so
//!   each of them sees the last reservation settle.
//! * Consumer: read `head` = `p`; if the stamp is `p + 1`, CAS `head` from
//!   `p` to `next(p)`: the message is ours. Read it, then store the stamp
//!   `p + one_lap` (Release).
//!
//! SYNC POINTS: the producer's Release store of `p + 1` pairs with the
//! consumer's Acquire load of the stamp (payload and `len` visible); the
//! consumer's Release store of `p + one_lap` pairs with the next producer's
//! Acquire load (the consumer's reads of the payload happen before the
//! producer overwrites it). `tail`/`head` CASes are AcqRel and their loads
//! Acquire, so a stamp read after a position is never older than that
//! position implies — which is what lets a stamp outside the three legal
//! values (with the position unchanged) be reported as `Corrupt`.
//!
//! ## Sleepers without a fence per message
//!
//! Publishers look for sleepers after each commit and release (`wake`).
//! That look needs a fence against the sleeper's announcement, and a full
//! fence right after a store to a contended line was most of a message's
//! cost. A process registered for `membarrier` (every process that
//! attaches a ring) publishes with a compiler barrier only; a waiter,
//! about to sleep, pays instead with a heavy barrier (`sys::membarrier`),
//! as the SPSC ring does.
//!
//! ## Dead peers
//!
//! A producer that dies between reserve and commit leaves its slot's stamp
//! at `p`: consumers stop at it. A consumer that dies holding a borrowed
//! slot leaves its stamp at `p + 1`: producers stop a lap later. Each
//! holder records the position it reserves or claims in its entry of the
//! peer table *before* the claiming CAS (see the `peers` module: plain
//! stores to a line of its own, no fence). A waiter that finds the ring
//! stopped at the same held slot for `GRACE` (50 ms) (or anyone calling
//! [`MpmcRef::recover`]) looks for entries of dead owners (pid gone, or
//! reused with another start time; an entry from another pid namespace is
//! never judged dead) and, when every entry naming that
//! position is dead and no untracked holder counts:
//!
//! * a reservation is *poisoned*: a CAS of its stamp from `p` to `p + 2`
//!   (which fails if the owner's commit landed after all); consumers skip
//!   it like a cancelled slot. Nothing of it is delivered: its payload may
//!   be half written. Counted in [`Abandoned::sends`]. On a joinable ring
//!   a send counts its task with one store to its own peer entry (`sent`)
//!   right before the commit, and `sent_idle` catches up after it: a
//!   poisoned reservation whose entry shows `sent != sent_idle` had
//!   counted, and the recoverer marks that task done (`counted_by_dead`), so
//!   `join` returns. The task count is the entries' `sent` (plus the
//!   untracked senders' shared count) less `done`.
//! * a borrowed slot is *freed*: a CAS of its stamp from `p + 1` to
//!   `p + one_lap`. Its message is **dropped**, never redelivered: the dead
//!   consumer may have acted on part of it, and `head` has moved on.
//!   Counted in [`Abandoned::recvs`]; on a joinable ring it counts as done.
//!
//! A close with a dead reservation open still ends in `Closed`: the
//! waiting consumers recover the slot, skip it, and reach the final
//! `tail`. The recovery never takes a slot from a live process; its limits
//! (untracked holders, forked copies of a held slot) are in `peers`.
//!
//! ## Trust
//!
//! [`MpmcRing::attach`] checks the geometry once and the view keeps its own
//! copy of it, so later garbage cannot move any bound. Positions and stamps
//! are checked on every use: an index outside the ring, a stamp that is
//! none of the legal values, or a length above the slot size is
//! [`Error::Corrupt`]; no loop runs without a bound on garbage.

use super::backoff::Backoff;
use super::eventcount::EventCount;
use super::sync::{fence, AtomicU32, AtomicU64, Ordering::*};
use crate::fault::fault_point;
use crate::sys::clock::Deadline;
use crate::sys::membarrier;
use crate::{Error, Result};
use std::ptr::NonNull;
use std::time::Duration;

#[cfg(fuzzing)]
mod fuzz;
mod layout;
#[cfg(all(test, loom))]
mod loom_tests;
mod peers;
mod recovery;
mod recv;
mod send;
mod tasks;
#[cfg(all(test, not(loom)))]
mod tests;
mod wait;

#[cfg(fuzzing)]
pub use fuzz::__fuzz_garbage;
pub use layout::{HeapMpmc, MpmcRing};
use layout::{Line, SlotHeader};
pub use peers::Abandoned;
use peers::{Peer, Seat, IDLE, PEERS};

/// The ring's magic, which is also its layout version: "MPM2" added the
/// peer table and the abandoned counts (version 1 was "MPMC"); "MPM3"
/// moved the task count into the peer entries (`Peer::sent`).
const MAGIC: u32 = u32::from_le_bytes(*b"MPM3");
/// `flags` bit: the ring counts unfinished tasks (a `JoinableQueue`).
pub const FLAG_JOINABLE: u32 = 1;
/// `len` marker of a slot whose reservation was dropped uncommitted.
const CANCELLED: u32 = 1 << 31;
/// Largest slot payload, in bytes.
pub const MAX_SLOT_SIZE: usize = 1 << 30;
/// Largest capacity, in slots (2^32 - 1).
pub const MAX_CAPACITY: usize = u32::MAX as usize;
/// The longest a blocked waiter sleeps before it looks at the ring again
/// (closed flag, garbage) on its own.
const SLICE: Duration = Duration::from_millis(200);

/// `sched_yield` rounds a waiter makes after spinning, before it sleeps.
const YIELDS: u32 = 16;
/// How long a waiter sees the ring stopped at one held slot before it
/// looks for a dead holder (`/proc` reads: not on every wait).
const GRACE: Duration = Duration::from_millis(50);
/// The sleep slice of a waiter whose heavy barrier failed (it may miss a
/// light notifier, see `sys::membarrier`).
const UNCOVERED_SLICE: Duration = Duration::from_millis(2);

/// A checked view on an [`MpmcRing`]: its address and its own copy of the
/// geometry. Cheap to copy. Made by [`MpmcRing::attach`] (whose contract
/// keeps the memory alive) or [`MpmcRing::new`].
#[derive(Debug, Clone, Copy)]
pub struct MpmcRef {
    base: NonNull<u8>,
    cap: u64,
    one_lap: u64,
    stride: usize,
    slot_size: usize,
    joinable: bool,
    /// Loom only: whether holders record themselves and waiters recover.
    /// The models of the ring's own protocol leave it off (every atomic
    /// access is a loom scheduling point, and those models would not
    /// finish); the models of the recovery races turn it on.
    #[cfg(loom)]
    track: bool,
}

// SAFETY: a view is an address plus constants; every access through it is
// atomic or protocol-exclusive, from any thread (the memory is shared
// between processes anyway).
unsafe impl Send for MpmcRef {}
// SAFETY: as above.
unsafe impl Sync for MpmcRef {}

/// A slot this process holds: reserved (producer) or claimed (consumer).
///
/// Opaque and neither `Copy` nor `Clone`: only [`MpmcRef::try_reserve`]
/// and [`MpmcRef::try_claim`] (and their waiting forms) make one, and
/// [`commit`](MpmcRef::commit), [`cancel`](MpmcRef::cancel) and
/// [`release`](MpmcRef::release) consume it, so safe code can neither
/// forge a slot nor hand one back twice. It borrows the view it came from
/// and remembers the ring's address: handing it to another ring is
/// [`Error::InvalidArgument`].
///
/// ```compile_fail
/// // Forging one does not compile (the fields are private) ...
/// let s = shmprim::raw::mpmc::SlotRef { pos: 3, len: 0 };
/// ```
///
/// ```compile_fail
/// // ... nor does handing one back twice (it is not `Clone`).
/// let r = shmprim::MpmcRing::new(2, 8, 0).unwrap();
/// let s = r.try_reserve().unwrap();
/// let t = s.clone();
/// r.commit(s, 0).unwrap();
/// r.cancel(t).unwrap();
/// ```
#[derive(Debug, PartialEq, Eq)]
pub struct SlotRef<'a> {
    pos: u64,
    len: usize,
    /// The peer entry naming this slot, or none (untracked).
    seat: Seat,
    /// The address of the ring it belongs to.
    ring: usize,
    _view: std::marker::PhantomData<&'a MpmcRef>,
}

impl SlotRef<'_> {
    /// The length of the message in a claimed slot (0 for a reserved one).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slot's position in the ring.
    pub fn pos(&self) -> u64 {
        self.pos
    }
}

impl MpmcRef {
    fn ring(&self) -> &MpmcRing {
        // SAFETY: `attach` checked alignment and size; the contract of
        // `attach` keeps the memory alive and atomic-only.
        unsafe { &*self.base.as_ptr().cast::<MpmcRing>() }
    }

    fn slot_ref(&self, pos: u64, len: usize, seat: Seat) -> SlotRef<'_> {
        SlotRef {
            pos,
            len,
            seat,
            ring: self.base.as_ptr() as usize,
            _view: std::marker::PhantomData,
        }
    }

    /// The position of a slot handed back to us, checked: it must come
    /// from this ring (a slot reference from another ring is refused
    /// before its index is used) and its index must be inside the ring.
    fn held(&self, slot: &SlotRef<'_>) -> Result<u64> {
        if slot.ring != self.base.as_ptr() as usize {
            return Err(Error::InvalidArgument(
                "queue slot reference from another ring",
            ));
        }
        self.check_position(slot.pos)
    }

    /// The slot header at `pos`. Every caller passes a position whose
    /// index was checked `< cap` (`check_position`, `held`, or `next` of
    /// one).
    fn slot(&self, pos: u64) -> &SlotHeader {
        let i = (pos & (self.one_lap - 1)) as usize;
        debug_assert!((i as u64) < self.cap);
        // SAFETY: `i < cap` (positions are checked before use), and
        // `attach` checked that `cap` slots of `stride` bytes fit.
        unsafe {
            &*self
                .base
                .as_ptr()
                .add(std::mem::size_of::<MpmcRing>() + i * self.stride)
                .cast::<SlotHeader>()
        }
    }

    /// The payload of the slot at `pos`.
    fn payload(&self, pos: u64) -> *mut u8 {
        let i = (pos & (self.one_lap - 1)) as usize;
        // SAFETY: as in `slot`; the payload follows the slot header within
        // the slot's stride.
        unsafe {
            self.base
                .as_ptr()
                .add(std::mem::size_of::<MpmcRing>() + i * self.stride)
                .add(std::mem::size_of::<SlotHeader>())
        }
    }

    fn check_position(&self, pos: u64) -> Result<u64> {
        if pos & (self.one_lap - 1) >= self.cap {
            Err(Error::Corrupt("queue position outside the ring"))
        } else {
            Ok(pos)
        }
    }

    /// `tail`'s closed mark: the bit between the index and the lap.
    #[inline]
    fn mark(&self) -> u64 {
        self.one_lap >> 1
    }

    fn peer(&self, i: usize) -> &Peer {
        &self.ring().peers[i % PEERS].0
    }

    fn next(&self, pos: u64) -> u64 {
        if (pos & (self.one_lap - 1)) + 1 < self.cap {
            pos.wrapping_add(1)
        } else {
            (pos & !(self.one_lap - 1)).wrapping_add(self.one_lap)
        }
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Largest message, in bytes.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// Whether the ring counts unfinished tasks.
    pub fn is_joinable(&self) -> bool {
        self.joinable
    }

    /// Messages in the ring (committed, claimed-but-unreleased and
    /// reserved slots alike), approximate under concurrency, at most the
    /// capacity.
    pub fn len(&self) -> usize {
        let r = self.ring();
        let mut tries = 0;
        loop {
            // `head` first: it never passes `tail`, so the `tail` read
            // after it is at least the `head` we hold, and the distance is
            // never negative (at worst stale, then capped).
            let head = r.head.0.load(SeqCst);
            let tail = r.tail.0.load(SeqCst) & !self.mark();
            tries += 1;
            if r.head.0.load(SeqCst) == head || tries == 16 {
                let lin = |p: u64| {
                    let lap = p / self.one_lap;
                    let idx = (p & (self.one_lap - 1)).min(self.cap);
                    lap.wrapping_mul(self.cap).wrapping_add(idx)
                };
                // Positions wrap at 2^64, linear counts at one_lap laps of
                // cap: the difference modulo that is what we want.
                let laps = u64::MAX / self.one_lap + 1; // 2^64 / one_lap
                let modulus = (laps as u128) * self.cap as u128;
                let d = (lin(tail) as u128 + modulus - (lin(head) as u128 % modulus)) % modulus;
                // Over half the modulus: `head` ahead of `tail`, which only
                // garbage can make: call it empty, never full.
                if d > modulus / 2 {
                    return 0;
                }
                return (d as u64).min(self.cap) as usize;
            }
        }
    }

    /// Whether the ring looks empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.ring().tail.0.load(Acquire) & self.mark() != 0
    }

    /// Closes the ring: later reservations fail with `Closed`; receivers
    /// drain every message committed, including those of reservations
    /// made before the close and committed after it, then get `Closed`;
    /// every sleeper is woken.
    pub fn close(&self) {
        let r = self.ring();
        // The mark makes `tail` final: every reservation CAS expects an
        // unmarked value (see the module documentation).
        r.tail.0.fetch_or(self.mark(), SeqCst);
        r.geo.0.closed.store(1, SeqCst);
        r.not_empty.0.notify_all();
        r.not_full.0.notify_all();
        r.tasks.0.all_done.notify_all();
    }

    /// The payload of a reserved or claimed slot.
    ///
    /// # Safety
    ///
    /// `slot` was returned by [`try_reserve`](Self::try_reserve) or
    /// [`try_claim`](Self::try_claim) on this ring and is still held; only
    /// the holder touches the `slot_size` bytes returned.
    pub unsafe fn payload_ptr(&self, slot: &SlotRef<'_>) -> *mut u8 {
        debug_assert!(self.held(slot).is_ok());
        self.payload(slot.pos)
    }

    /// Moves the consumers' and producers' positions of an empty, fresh
    /// ring to `pos` (the slot stamps with them), so tests can run the
    /// ring across the 2^64 wrap.
    ///
    /// # Safety
    ///
    /// Nobody uses the ring meanwhile (no other thread or process touches
    /// it during the call), and no slot is reserved or claimed: every
    /// [`SlotRef`] (a `Reservation` or `Borrowed` of a queue) made before
    /// would otherwise alias a slot handed out afresh afterwards. Messages
    /// still queued are lost.
    #[doc(hidden)]
    pub unsafe fn __start_positions_at(&self, pos: u64) {
        let pos = pos & !(self.one_lap - 1);
        let r = self.ring();
        r.head.0.store(pos, SeqCst);
        r.tail.0.store(pos, SeqCst);
        for i in 0..self.cap {
            self.slot(i).stamp.store(pos.wrapping_add(i), SeqCst);
        }
    }
}
