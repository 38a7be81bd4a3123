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
//! | 192    | `unfinished`, `all_done` event count      | senders (joinable), `task_done`, `join` |
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
//!   be half written. Counted in [`Abandoned::sends`]; on a joinable ring
//!   it never counted as a task (the count rises in `commit`, after the
//!   `mpmc.send.before_commit` point, right before the stamp store: a
//!   process killed in those few instructions leaves the count one high).
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

mod peers;
pub use peers::Abandoned;
use peers::{Peer, Seat, IDLE, PEERS};

/// The ring's magic, which is also its layout version: "MPM2" added the
/// peer table and the abandoned counts (version 1 was "MPMC").
const MAGIC: u32 = u32::from_le_bytes(*b"MPM2");
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

/// One cache line holding `T` at its start.
#[repr(C, align(64))]
#[derive(Debug)]
struct Line<T>(T);

/// The read-mostly first line.
#[repr(C)]
#[derive(Debug)]
struct Geometry {
    magic: AtomicU32,
    flags: AtomicU32,
    slot_size: AtomicU32,
    stride: AtomicU32,
    capacity: AtomicU64,
    one_lap: AtomicU64,
    /// A hint, set by `close` after it marked `tail` (which decides): lets
    /// an empty consumer skip reading the producers' `tail` line while the
    /// ring is open.
    closed: AtomicU32,
    _reserved: AtomicU32,
}

/// The joinable ring's task count and its sleepers.
#[repr(C)]
#[derive(Debug)]
struct Tasks {
    unfinished: AtomicU64,
    /// `join` sleeps here; `task_done` reaching zero notifies.
    all_done: EventCount,
}

/// The in-place header of a bounded MPMC ring; the slots follow it. See
/// the [module documentation](self) for the layout and the protocol.
///
/// Place one with [`MpmcRing::init`] in memory of
/// [`MpmcRing::bytes_for`] bytes, open it with [`MpmcRing::attach`], or
/// build one on the heap with [`MpmcRing::new`].
#[repr(C)]
#[derive(Debug)]
pub struct MpmcRing {
    geo: Line<Geometry>,
    /// Consumers sleep here; commits and `close` notify. A line of its
    /// own: a consumer about to sleep writes it, and that must not evict
    /// the read-mostly geometry line from every producer's cache.
    not_empty: Line<EventCount>,
    /// Producers sleep here; releases and `close` notify.
    not_full: Line<EventCount>,
    tasks: Line<Tasks>,
    tail: Line<AtomicU64>,
    /// Intel's spatial prefetcher moves cache lines in aligned pairs: the
    /// producers' and the consumers' positions each get a pair of their
    /// own (crossbeam's `CachePadded` is 128 bytes on x86-64 for the same
    /// reason).
    _pair_tail: Line<[u8; 64]>,
    head: Line<AtomicU64>,
    _pair_head: Line<[u8; 64]>,
    /// Recovery counts (rarely written: only by whoever recovers a slot)
    /// and the untracked-holder count.
    stats: Line<Stats>,
    /// One line per (process, thread) that used the ring: what it is
    /// reserving or consuming right now (see `peers`).
    peers: [Line<Peer>; PEERS],
}

/// The ring's recovery counts.
#[repr(C)]
#[derive(Debug)]
struct Stats {
    /// Reservations of dead producers, poisoned and skipped.
    abandoned_sends: AtomicU64,
    /// Borrowed slots of dead consumers, freed (their messages dropped).
    abandoned_recvs: AtomicU64,
    /// Slots held right now by holders with no peer entry (table full, or
    /// a second slot held at once): while non-zero nothing is recovered,
    /// since such a holder cannot be told from a dead one.
    untracked: AtomicU64,
    _reserved: AtomicU64,
}

/// The header of one slot; the payload follows it.
#[repr(C)]
#[derive(Debug)]
struct SlotHeader {
    stamp: AtomicU64,
    len: AtomicU32,
    _reserved: AtomicU32,
}

#[cfg(not(loom))]
mod layout {
    use super::*;
    static_assertions::assert_eq_size!(MpmcRing, [u8; 576 + 64 * PEERS]);
    static_assertions::const_assert_eq!(PEERS, 64);
    static_assertions::const_assert_eq!(std::mem::offset_of!(MpmcRing, stats), 512);
    static_assertions::const_assert_eq!(std::mem::offset_of!(MpmcRing, peers), 576);
    static_assertions::assert_eq_size!(Peer, [u8; 40]);
    static_assertions::const_assert_eq!(std::mem::align_of::<MpmcRing>(), 64);
    static_assertions::assert_eq_size!(Geometry, [u8; 40]);
    static_assertions::assert_eq_size!(SlotHeader, [u8; 16]);
    static_assertions::const_assert_eq!(std::mem::offset_of!(MpmcRing, not_empty), 64);
    static_assertions::const_assert_eq!(std::mem::offset_of!(MpmcRing, not_full), 128);
    static_assertions::const_assert_eq!(std::mem::offset_of!(MpmcRing, tasks), 192);
    static_assertions::const_assert_eq!(std::mem::offset_of!(MpmcRing, tail), 256);
    static_assertions::const_assert_eq!(std::mem::offset_of!(MpmcRing, head), 384);
    static_assertions::const_assert_eq!(std::mem::offset_of!(Geometry, closed), 32);
}

/// Bytes of a slot holding `slot_size` payload bytes.
fn stride_for(slot_size: usize) -> usize {
    (std::mem::size_of::<SlotHeader>() + slot_size).next_multiple_of(8)
}

/// Twice the smallest power of two above `capacity`: index bits, then one
/// free bit (the closed mark in `tail`), then the lap.
fn one_lap_for(capacity: u64) -> u64 {
    (capacity + 1).next_power_of_two() * 2
}

impl MpmcRing {
    /// Bytes needed for a ring of `capacity` slots of `slot_size` payload
    /// bytes (header included). Refuses a zero capacity, a capacity above
    /// [`MAX_CAPACITY`], a slot size above [`MAX_SLOT_SIZE`], or a total
    /// that overflows.
    pub fn bytes_for(capacity: usize, slot_size: usize) -> Result<usize> {
        if capacity == 0 {
            return Err(Error::InvalidArgument("queue capacity must be at least 1"));
        }
        if capacity > MAX_CAPACITY {
            return Err(Error::InvalidArgument("queue capacity above 2^32 - 1"));
        }
        if slot_size > MAX_SLOT_SIZE {
            return Err(Error::InvalidArgument("queue slot size above 1 GiB"));
        }
        capacity
            .checked_mul(stride_for(slot_size))
            .and_then(|n| n.checked_add(std::mem::size_of::<MpmcRing>()))
            .filter(|&n| n <= isize::MAX as usize)
            .ok_or(Error::InvalidArgument("queue too large"))
    }

    /// Writes a fresh, empty ring at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` is 64-byte aligned and valid for writes of
    /// [`bytes_for(capacity, slot_size)`](Self::bytes_for) bytes that
    /// nobody else accesses until this returns.
    pub unsafe fn init(ptr: *mut u8, capacity: usize, slot_size: usize, flags: u32) -> Result<()> {
        Self::bytes_for(capacity, slot_size)?;
        debug_assert!(ptr as usize % 64 == 0, "MpmcRing::init: ptr not 64-aligned");
        let stride = stride_for(slot_size);
        let cap = capacity as u64;
        let header = MpmcRing {
            geo: Line(Geometry {
                magic: AtomicU32::new(MAGIC),
                flags: AtomicU32::new(flags & FLAG_JOINABLE),
                slot_size: AtomicU32::new(slot_size as u32),
                stride: AtomicU32::new(stride as u32),
                capacity: AtomicU64::new(cap),
                one_lap: AtomicU64::new(one_lap_for(cap)),
                closed: AtomicU32::new(0),
                _reserved: AtomicU32::new(0),
            }),
            not_empty: Line(EventCount::new()),
            not_full: Line(EventCount::new()),
            tasks: Line(Tasks {
                unfinished: AtomicU64::new(0),
                all_done: EventCount::new(),
            }),
            tail: Line(AtomicU64::new(0)),
            _pair_tail: Line([0; 64]),
            head: Line(AtomicU64::new(0)),
            _pair_head: Line([0; 64]),
            stats: Line(Stats {
                abandoned_sends: AtomicU64::new(0),
                abandoned_recvs: AtomicU64::new(0),
                untracked: AtomicU64::new(0),
                _reserved: AtomicU64::new(0),
            }),
            peers: std::array::from_fn(|_| Line(Peer::new())),
        };
        // SAFETY: the caller gives us `bytes_for` writable, 64-aligned bytes
        // to ourselves; the header is the first `size_of::<MpmcRing>()`.
        unsafe { ptr.cast::<MpmcRing>().write(header) };
        for i in 0..capacity {
            let slot = SlotHeader {
                stamp: AtomicU64::new(i as u64),
                len: AtomicU32::new(0),
                _reserved: AtomicU32::new(0),
            };
            // SAFETY: slot `i` starts at header + i * stride, inside the
            // `bytes_for` bytes; stride is a multiple of 8 and the header a
            // multiple of 64, so the slot header is aligned.
            unsafe {
                ptr.add(std::mem::size_of::<MpmcRing>() + i * stride)
                    .cast::<SlotHeader>()
                    .write(slot)
            };
        }
        Ok(())
    }

    /// Checks the ring at `ptr` (within `len` bytes) and returns a view on
    /// it. Every geometry word is validated against `len`: garbage is
    /// [`Error::Corrupt`].
    ///
    /// # Safety
    ///
    /// `ptr` is 64-byte aligned, valid for reads and writes of `len` bytes
    /// for as long as the returned view (and copies of it) are used, and
    /// those bytes are only ever accessed atomically or through this
    /// module's protocol (a shared mapping written by peers counts).
    pub unsafe fn attach(ptr: *mut u8, len: usize) -> Result<MpmcRef> {
        if len < std::mem::size_of::<MpmcRing>() || ptr as usize % 64 != 0 {
            return Err(Error::Corrupt("queue ring smaller than its header"));
        }
        // SAFETY: aligned, in bounds (checked above), and only atomics are
        // read through it (the caller's contract).
        let ring = unsafe { &*ptr.cast::<MpmcRing>() };
        let g = &ring.geo.0;
        if g.magic.load(Relaxed) != MAGIC {
            return Err(Error::Corrupt("queue ring: bad magic"));
        }
        let flags = g.flags.load(Relaxed);
        if flags & !FLAG_JOINABLE != 0 {
            return Err(Error::Corrupt("queue ring: unknown flags"));
        }
        let cap = g.capacity.load(Relaxed);
        let slot_size = g.slot_size.load(Relaxed) as usize;
        let stride = g.stride.load(Relaxed) as usize;
        let one_lap = g.one_lap.load(Relaxed);
        if cap == 0 || cap > MAX_CAPACITY as u64 || slot_size > MAX_SLOT_SIZE {
            return Err(Error::Corrupt(
                "queue ring: capacity or slot size out of range",
            ));
        }
        if stride != stride_for(slot_size) || one_lap != one_lap_for(cap) {
            return Err(Error::Corrupt("queue ring: inconsistent geometry"));
        }
        match Self::bytes_for(cap as usize, slot_size) {
            Ok(n) if n <= len => {}
            _ => return Err(Error::Corrupt("queue ring larger than its memory")),
        }
        let view = MpmcRef {
            // SAFETY: checked non-null by alignment and length above.
            base: unsafe { NonNull::new_unchecked(ptr) },
            cap,
            one_lap,
            stride,
            slot_size,
            joinable: flags & FLAG_JOINABLE != 0,
            #[cfg(loom)]
            track: false,
        };
        view.check_position(view.ring().tail.0.load(Relaxed) & !view.mark())?;
        view.check_position(view.ring().head.0.load(Relaxed))?;
        // The fork hook (peer identities move with the fork generation)
        // and the light publishing fence (see `wake`); both once per
        // process. Miri and loom model neither.
        #[cfg(not(any(loom, miri)))]
        membarrier::register();
        Ok(view)
    }

    /// A ring on the heap (tests, loom and Miri models, single-process
    /// use): `capacity` slots of `slot_size` bytes. It returns the owner of
    /// the allocation, which derefs to the view, since the ring's size is
    /// only known at run time.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(capacity: usize, slot_size: usize, flags: u32) -> Result<HeapMpmc> {
        let bytes = Self::bytes_for(capacity, slot_size)?;
        let layout = std::alloc::Layout::from_size_align(bytes, 64)
            .map_err(|_| Error::InvalidArgument("queue too large"))?;
        // SAFETY: `layout` has a non-zero size (at least the header).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout)
        };
        // SAFETY: fresh, 64-aligned allocation of `bytes_for` bytes.
        unsafe { Self::init(ptr, capacity, slot_size, flags)? };
        // SAFETY: just initialised, owned by the HeapMpmc until it drops.
        let view = unsafe { Self::attach(ptr, bytes)? };
        Ok(HeapMpmc { view, layout, base })
    }
}

/// What a recovery attempt found at one position.
enum Settled {
    /// The slot was taken back from a dead holder.
    Recovered,
    /// Nothing is held there any more (or never was): forget the entry.
    Resolved,
    /// Held, but maybe by someone alive: look again later.
    Wait,
}

/// The publisher's half of the asymmetric fence: a compiler barrier in a
/// process registered for `membarrier`, a full fence otherwise (and always
/// under loom, which models no `membarrier`).
#[inline]
fn light_fence() {
    if !cfg!(loom) && membarrier::registered() {
        std::sync::atomic::compiler_fence(SeqCst);
    } else {
        fence(SeqCst);
    }
}

/// The waiter's half: after `EventCount::prepare` (whose fence orders the
/// announcement), a full barrier on every CPU running a registered
/// process's thread. `false` if it could not be issued: a light publisher
/// may then be missed, and the waiter sleeps in short slices.
fn heavy_prepare() -> bool {
    cfg!(loom) || membarrier::heavy_barrier()
}

/// The copying receive's check: a message of `n` bytes fits a buffer of
/// `room` bytes.
#[inline]
fn fits(n: usize, room: usize) -> Result<()> {
    if n > room {
        Err(Error::BufferTooShort { needed: n })
    } else {
        Ok(())
    }
}

/// A ring on the heap, made by [`MpmcRing::new`]; derefs to its view.
#[derive(Debug)]
pub struct HeapMpmc {
    view: MpmcRef,
    layout: std::alloc::Layout,
    base: NonNull<u8>,
}

#[cfg(loom)]
impl HeapMpmc {
    /// Loom only: turns on the peer records and recovery (see
    /// `MpmcRef::track`).
    pub(crate) fn tracked(mut self) -> HeapMpmc {
        self.view.track = true;
        self
    }
}

// SAFETY: the allocation is only reached through the view, whose
// operations are atomics and the slot protocol; it is freed once, on drop.
unsafe impl Send for HeapMpmc {}
// SAFETY: as above: every shared access is atomic or protocol-exclusive.
unsafe impl Sync for HeapMpmc {}

impl std::ops::Deref for HeapMpmc {
    type Target = MpmcRef;
    fn deref(&self) -> &MpmcRef {
        &self.view
    }
}

impl Drop for HeapMpmc {
    fn drop(&mut self) {
        let p = self.base.as_ptr();
        // SAFETY: we own the allocation; the header and slot headers were
        // written by `init` and are dropped once (loom's atomics need it),
        // then the memory is freed with the layout it was allocated with.
        unsafe {
            std::ptr::drop_in_place(p.cast::<MpmcRing>());
            for i in 0..self.view.cap as usize {
                std::ptr::drop_in_place(
                    p.add(std::mem::size_of::<MpmcRing>() + i * self.view.stride)
                        .cast::<SlotHeader>(),
                );
            }
            std::alloc::dealloc(p, self.layout);
        }
    }
}

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

    /// The entry recording this thread's holds for the field `side` picks
    /// (`producing` or `consuming`), claimed on first use; or, if the table
    /// is full or this thread already holds a slot of that side (a second
    /// reservation at once), [`Seat::NONE`] after counting an untracked
    /// holder (see `peers`).
    #[inline]
    fn seat(&self, side: fn(&Peer) -> &AtomicU64) -> Seat {
        #[cfg(loom)]
        if !self.track {
            return Seat::SKIP;
        }
        let base = self.base.as_ptr() as usize;
        let (me, cached) = peers::lookup(base, &self.ring().peers);
        let idx = cached.or_else(|| self.claim_seat(me));
        match idx {
            Some(i) if side(self.peer(i)).load(Relaxed) == IDLE => Seat(i as u32),
            _ => {
                // SYNC POINT (Release): counted before the claiming CAS,
                // like a tracked holder's entry.
                self.ring().stats.0.untracked.fetch_add(1, AcqRel);
                Seat::NONE
            }
        }
    }

    /// The fast paths' claim: records `pos` in this thread's entry (`side`)
    /// and only then moves `word` (`tail` or `head`) from `pos` to `next`
    /// with one CAS. The seat on success; on failure the record is
    /// withdrawn and nothing was claimed.
    #[inline(always)]
    fn claim_on_record(
        &self,
        word: &AtomicU64,
        pos: u64,
        next: u64,
        side: fn(&Peer) -> &AtomicU64,
    ) -> Option<Seat> {
        let seat = self.seat(side);
        // SYNC POINT: on record before the claim (see `peers`).
        if let Some(i) = seat.index() {
            side(self.peer(i)).store(pos, Release);
        }
        if word.compare_exchange(pos, next, AcqRel, Relaxed).is_err() {
            self.unseat(seat, side);
            return None;
        }
        Some(seat)
    }

    /// Ends a hold recorded by [`seat`](Self::seat), after the stamp store
    /// that ended it (Release: see `peers`).
    #[inline]
    fn unseat(&self, seat: Seat, side: fn(&Peer) -> &AtomicU64) {
        match seat.index() {
            Some(i) => side(self.peer(i)).store(IDLE, Release),
            None if seat == Seat::NONE => {
                self.ring().stats.0.untracked.fetch_sub(1, Release);
            }
            None => {}
        }
    }

    /// Finds or takes an entry for `me`: ours already (a cache miss: same
    /// owner word, start time and pid namespace), a free one, or an idle
    /// one that [`peers::reusable`] gives up. `None` if the table is full.
    #[cold]
    fn claim_seat(&self, me: u64) -> Option<usize> {
        let base = self.base.as_ptr() as usize;
        let (start, pidns) = peers::my_identity();
        let ours = (0..PEERS).find(|&i| {
            let p = self.peer(i);
            p.owner.load(Acquire) == me
                && p.start.load(Relaxed) == start
                && p.pidns.load(Relaxed) == pidns
        });
        let found = match ours {
            Some(i) => i,
            None => {
                let i = (0..PEERS).find(|&i| {
                    let p = self.peer(i);
                    let o = p.owner.load(Acquire);
                    let idle =
                        p.producing.load(Acquire) == IDLE && p.consuming.load(Acquire) == IDLE;
                    let (s, ns) = (p.start.load(Relaxed), p.pidns.load(Relaxed));
                    (o == 0 || (idle && peers::reusable(o, s, ns)))
                        && p.owner.compare_exchange(o, me, AcqRel, Relaxed).is_ok()
                })?;
                let p = self.peer(i);
                p.start.store(start, Relaxed);
                p.pidns.store(pidns, Relaxed);
                // Garbage must not name positions (a dead owner's entry was
                // idle: only its owner or a recoverer ending a hold writes
                // them, and neither names a new one).
                p.producing.store(IDLE, Release);
                p.consuming.store(IDLE, Release);
                i
            }
        };
        peers::remember(base, found);
        Some(found)
    }

    /// Slots recovered from dead peers since the ring was made.
    pub fn abandoned(&self) -> Abandoned {
        let s = &self.ring().stats.0;
        Abandoned {
            sends: s.abandoned_sends.load(Acquire),
            recvs: s.abandoned_recvs.load(Acquire),
        }
    }

    /// Whether `later` is a position past `pos` (within half the
    /// position space: anything else is older, or garbage).
    fn is_past(later: u64, pos: u64) -> bool {
        let d = later.wrapping_sub(pos);
        d != 0 && d < 1 << 63
    }

    /// Where the ring is stopped at a slot someone holds: for a consumer
    /// (`producer == false`), the slot at `head` reserved but not
    /// committed; for a producer, the slot at `tail` still borrowed from
    /// the last lap. Both are normal for a moment; a stop that lasts is
    /// what [`recover`](Self::recover) looks into.
    fn stalled(&self, producer: bool) -> Option<u64> {
        let r = self.ring();
        if producer {
            let pos = self
                .check_position(r.tail.0.load(Acquire) & !self.mark())
                .ok()?;
            let prev = pos.wrapping_sub(self.one_lap);
            let held = self.slot(pos).stamp.load(Acquire) == prev.wrapping_add(1)
                && Self::is_past(r.head.0.load(Acquire), prev);
            held.then_some(pos)
        } else {
            let pos = self.check_position(r.head.0.load(Acquire)).ok()?;
            let held = self.slot(pos).stamp.load(Acquire) == pos
                && Self::is_past(r.tail.0.load(Acquire) & !self.mark(), pos);
            held.then_some(pos)
        }
    }

    /// Recovers the slots held by dead peers: a reservation never
    /// committed is poisoned (consumers skip it; counted in
    /// [`abandoned`](Self::abandoned)`.sends`), a borrowed slot never
    /// released is freed (its message is dropped, never redelivered:
    /// `recvs`; on a joinable ring it counts as done). Returns how many
    /// slots it recovered. Blocking calls run this on their own when the
    /// ring stays stopped at a held slot for a while; call it where only
    /// non-blocking calls are used.
    ///
    /// Reads `/proc` for each entry that holds a slot: not for a hot loop.
    /// Nothing is recovered while an untracked holder counts (see the
    /// `peers` module): a slot is only ever taken from a process known
    /// dead (pid gone, or reused by a process with another start time).
    pub fn recover(&self) -> usize {
        let mut done = 0;
        for i in 0..PEERS {
            let e = self.peer(i);
            let owner = e.owner.load(Acquire);
            if owner == 0 {
                continue;
            }
            let prod = e.producing.load(Acquire);
            let cons = e.consuming.load(Acquire);
            if prod == IDLE && cons == IDLE {
                continue;
            }
            if peers::alive(owner, e.start.load(Relaxed), e.pidns.load(Relaxed)) {
                continue;
            }
            if prod != IDLE {
                match self.poison(prod) {
                    Settled::Recovered => {
                        done += 1;
                        let _ = e.producing.compare_exchange(prod, IDLE, AcqRel, Relaxed);
                    }
                    Settled::Resolved => {
                        let _ = e.producing.compare_exchange(prod, IDLE, AcqRel, Relaxed);
                    }
                    Settled::Wait => {}
                }
            }
            if cons != IDLE {
                match self.free_borrowed(cons) {
                    Settled::Recovered => {
                        done += 1;
                        let _ = e.consuming.compare_exchange(cons, IDLE, AcqRel, Relaxed);
                    }
                    Settled::Resolved => {
                        let _ = e.consuming.compare_exchange(cons, IDLE, AcqRel, Relaxed);
                    }
                    Settled::Wait => {}
                }
            }
        }
        done
    }

    /// Whether a live entry names `pos` on the side `side` picks.
    fn live_claimant(&self, pos: u64, side: fn(&Peer) -> &AtomicU64) -> bool {
        (0..PEERS).any(|i| {
            let e = self.peer(i);
            side(e).load(Acquire) == pos && {
                let o = e.owner.load(Acquire);
                o != 0 && peers::alive(o, e.start.load(Relaxed), e.pidns.load(Relaxed))
            }
        })
    }

    /// Poisons the slot at `pos` if it is reserved and every entry naming
    /// it is dead.
    fn poison(&self, pos: u64) -> Settled {
        let Ok(pos) = self.check_position(pos) else {
            return Settled::Resolved; // garbage: nothing to do, forget it
        };
        let r = self.ring();
        let s = self.slot(pos);
        if s.stamp.load(Acquire) != pos {
            return Settled::Resolved; // committed, cancelled, or gone by
        }
        // SYNC POINT (Acquire): pairs with the winner's claiming CAS, after
        // which its entry names `pos` (see `peers`).
        if !Self::is_past(r.tail.0.load(Acquire) & !self.mark(), pos) {
            return Settled::Resolved; // never claimed: the owner died first
        }
        if r.stats.0.untracked.load(Acquire) != 0 || self.live_claimant(pos, |p| &p.producing) {
            return Settled::Wait;
        }
        // A CAS: fails if the owner's commit (or cancel) landed after all.
        if s.stamp
            .compare_exchange(pos, pos.wrapping_add(2), AcqRel, Acquire)
            .is_err()
        {
            return Settled::Resolved;
        }
        r.stats.0.abandoned_sends.fetch_add(1, AcqRel);
        // The consumers stopped here may all be asleep.
        r.not_empty.0.notify_all();
        Settled::Recovered
    }

    /// Frees the slot at `pos` if it is borrowed and every entry naming it
    /// is dead; the message is dropped.
    fn free_borrowed(&self, pos: u64) -> Settled {
        let Ok(pos) = self.check_position(pos) else {
            return Settled::Resolved;
        };
        let r = self.ring();
        let s = self.slot(pos);
        if s.stamp.load(Acquire) != pos.wrapping_add(1) {
            return Settled::Resolved; // released, or never claimed and gone by
        }
        // SYNC POINT (Acquire): as in `poison`, with `head`.
        if !Self::is_past(r.head.0.load(Acquire), pos) {
            return Settled::Resolved; // committed, not claimed: not held
        }
        if r.stats.0.untracked.load(Acquire) != 0 || self.live_claimant(pos, |p| &p.consuming) {
            return Settled::Wait;
        }
        if s.stamp
            .compare_exchange(
                pos.wrapping_add(1),
                pos.wrapping_add(self.one_lap),
                AcqRel,
                Acquire,
            )
            .is_err()
        {
            return Settled::Resolved;
        }
        r.stats.0.abandoned_recvs.fetch_add(1, AcqRel);
        if self.joinable {
            // The dead consumer cannot call `task_done`: the message it
            // took counts as done (saturating: the count may be garbage).
            let _ = self.task_done();
        }
        r.not_full.0.notify_all();
        Settled::Recovered
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

    /// Reserves the next free slot: `Full` if there is none, `Closed` once
    /// closed. Commit it with [`commit`](Self::commit) or give it back
    /// with [`cancel`](Self::cancel), or the consumers stop at it.
    #[inline]
    pub fn try_reserve(&self) -> Result<SlotRef<'_>> {
        let seat = self.seat(|p| &p.producing);
        let res = self.try_reserve_as(seat);
        if res.is_err() {
            self.unseat(seat, |p| &p.producing);
        }
        res
    }

    #[inline]
    fn try_reserve_as(&self, seat: Seat) -> Result<SlotRef<'_>> {
        let r = self.ring();
        let mut tail = r.tail.0.load(Acquire);
        loop {
            let pos = self.check_position(tail & !self.mark())?;
            if tail != pos {
                return Err(Error::Closed);
            }
            // SYNC POINT (Acquire): pairs with the Release store of the
            // consumer that freed the slot (`release`).
            let stamp = self.slot(pos).stamp.load(Acquire);
            if stamp == pos {
                // SYNC POINT: our claim is on record before we make it
                // (see `peers`); a plain store to our own line.
                if let Some(i) = seat.index() {
                    self.peer(i).producing.store(pos, Release);
                }
                // Fails once `close` marked `tail`: a reservation either
                // happens before the close (and is drained) or not at all.
                match r
                    .tail
                    .0
                    .compare_exchange_weak(pos, self.next(pos), AcqRel, Acquire)
                {
                    Ok(_) => {
                        fault_point!("mpmc.send.reserved");
                        return Ok(self.slot_ref(pos, 0, seat));
                    }
                    Err(now) => {
                        tail = now;
                        continue;
                    }
                }
            }
            let prev = pos.wrapping_sub(self.one_lap);
            if stamp == prev || stamp == prev.wrapping_add(1) || stamp == prev.wrapping_add(2) {
                // The slot still holds the previous lap's message (or its
                // producer has not committed yet, or it was poisoned and
                // not yet skipped): full, unless `tail` moved meanwhile.
                let now = r.tail.0.load(Acquire);
                if now == pos {
                    return Err(Error::Full);
                }
                tail = now;
                continue;
            }
            // Any other stamp is legal only if `tail` moved past `pos`.
            let now = r.tail.0.load(Acquire);
            if now == pos {
                return Err(Error::Corrupt("queue slot stamp out of sequence"));
            }
            tail = now;
        }
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

    /// Publishes a reserved slot holding `len` bytes (`len <=
    /// slot_size`, clamped); counts one more unfinished task on a
    /// joinable ring. [`Error::InvalidArgument`] for a slot of another
    /// ring (nothing is touched then).
    #[inline]
    pub fn commit(&self, slot: SlotRef<'_>, len: usize) -> Result<()> {
        let pos = self.held(&slot)?;
        debug_assert!(len <= self.slot_size);
        fault_point!("mpmc.send.before_commit");
        if self.joinable {
            self.ring().tasks.0.unfinished.fetch_add(1, SeqCst);
        }
        self.publish(pos, len.min(self.slot_size) as u32, slot.seat);
        Ok(())
    }

    /// Gives a reserved slot back uncommitted: consumers skip it.
    /// [`Error::InvalidArgument`] for a slot of another ring.
    pub fn cancel(&self, slot: SlotRef<'_>) -> Result<()> {
        let pos = self.held(&slot)?;
        self.publish(pos, CANCELLED, slot.seat);
        Ok(())
    }

    #[inline]
    fn publish(&self, pos: u64, len: u32, seat: Seat) {
        self.publish_at(pos, self.next(pos), len, seat);
    }

    /// `publish`, `next` being `self.next(pos)` (the fast path has it).
    #[inline]
    fn publish_at(&self, pos: u64, next: u64, len: u32, seat: Seat) {
        let s = self.slot(pos);
        s.len.store(len, Relaxed);
        // SYNC POINT (Release): payload and `len` before the stamp; pairs
        // with the Acquire load in `try_claim`.
        s.stamp.store(pos.wrapping_add(1), Release);
        fault_point!("mpmc.send.committed_before_wake");
        // After the stamp (Release): a recoverer that sees the entry idle
        // sees the commit, and its poisoning CAS fails.
        self.unseat(seat, |p| &p.producing);
        let r = self.ring();
        self.wake(&r.not_empty.0, &r.not_full.0, next, next);
    }

    /// Claims the oldest committed message. `check(len)` may refuse it
    /// (too long for the caller's buffer) before it is claimed: the message
    /// then stays. `Empty` if none is committed (a slot reserved but not
    /// yet committed counts as empty), `Closed` once closed and every
    /// reservation made before the close was consumed or skipped.
    /// Cancelled slots are skipped.
    #[inline]
    pub fn try_claim(&self, check: impl FnMut(usize) -> Result<()>) -> Result<SlotRef<'_>> {
        let seat = self.seat(|p| &p.consuming);
        let res = self.try_claim_as(seat, check);
        if res.is_err() {
            self.unseat(seat, |p| &p.consuming);
        }
        res
    }

    #[inline]
    fn try_claim_as(
        &self,
        seat: Seat,
        mut check: impl FnMut(usize) -> Result<()>,
    ) -> Result<SlotRef<'_>> {
        let r = self.ring();
        let mut pos = self.check_position(r.head.0.load(Acquire))?;
        // Each cancelled slot is skipped once (and freed, so a garbage ring
        // cannot make us go round for ever: alone, we skip at most `cap`
        // slots); the budget bounds one call while producers keep dropping
        // reservations as fast as we skip them. It starts afresh whenever
        // another consumer moved `head` (progress, not garbage), and when
        // it runs out we report `Empty` (a waiting caller looks again), not
        // `Corrupt`: dropping reservations is legal.
        let budget = self.cap.saturating_mul(2).saturating_add(64);
        let mut skips = budget;
        loop {
            // SYNC POINT (Acquire): pairs with the Release store in
            // `publish`: the payload and `len` are visible.
            let s = self.slot(pos);
            let stamp = s.stamp.load(Acquire);
            if stamp == pos.wrapping_add(2) {
                // Poisoned (a dead producer's reservation, counted by who
                // poisoned it): skip it, as a cancelled slot.
                match r
                    .head
                    .0
                    .compare_exchange_weak(pos, self.next(pos), AcqRel, Acquire)
                {
                    Ok(_) => {
                        self.release_pos(pos);
                        skips -= 1;
                        if skips == 0 {
                            return Err(Error::Empty);
                        }
                        pos = self.next(pos);
                    }
                    Err(now) => {
                        pos = self.check_position(now)?;
                        skips = budget;
                    }
                }
                continue;
            }
            if stamp == pos.wrapping_add(1) {
                let raw = s.len.load(Relaxed);
                let len = if raw == CANCELLED {
                    None
                } else if raw as usize > self.slot_size {
                    // Claimed and released below, reported as Corrupt.
                    None
                } else {
                    Some(raw as usize)
                };
                if let Some(len) = len {
                    if let Err(e) = check(len) {
                        // Refused: leave it, unless it was no longer ours
                        // to look at.
                        if r.head.0.load(Acquire) == pos {
                            // We may have taken the wake-up meant for this
                            // message: pass it on.
                            r.not_empty.0.notify(1);
                            return Err(e);
                        }
                        pos = self.check_position(r.head.0.load(Acquire))?;
                        skips = budget;
                        continue;
                    }
                }
                // SYNC POINT: on record before the claim (see `peers`).
                if let Some(i) = seat.index() {
                    self.peer(i).consuming.store(pos, Release);
                }
                match r
                    .head
                    .0
                    .compare_exchange_weak(pos, self.next(pos), AcqRel, Acquire)
                {
                    Ok(_) => match len {
                        Some(len) => {
                            fault_point!("mpmc.recv.borrowed");
                            return Ok(self.slot_ref(pos, len, seat));
                        }
                        None => {
                            self.release_pos(pos);
                            if raw != CANCELLED {
                                // A committed message, discarded: it counted
                                // as a task (saturating: the count itself
                                // may be garbage), or `join` would hang.
                                if self.joinable {
                                    let _ = self.task_done();
                                }
                                return Err(Error::Corrupt("queue message longer than its slot"));
                            }
                            skips -= 1;
                            if skips == 0 {
                                return Err(Error::Empty);
                            }
                            pos = self.next(pos);
                            continue;
                        }
                    },
                    Err(now) => {
                        pos = self.check_position(now)?;
                        skips = budget;
                        continue;
                    }
                }
            }
            let prev = pos.wrapping_sub(self.one_lap);
            if stamp == pos || stamp == prev.wrapping_add(1) {
                // Nothing committed here yet (free, reserved, or the
                // previous lap's message is still borrowed).
                let now = r.head.0.load(Acquire);
                if now == pos {
                    // Closed only if `tail` is marked (final) and nothing
                    // was reserved at or after `pos`: a marked `tail` never
                    // changes again, so no message can follow. Otherwise a
                    // reservation is open (or a message committed since
                    // our stamp load): `Empty`, look again.
                    // The hint spares the producers' line while open; a
                    // close it misses wakes us later (`close` notifies
                    // after setting it).
                    if r.geo.0.closed.load(Acquire) != 0 {
                        let tail = r.tail.0.load(Acquire);
                        if tail & self.mark() != 0 && tail & !self.mark() == pos {
                            return Err(Error::Closed);
                        }
                    }
                    return Err(Error::Empty);
                }
                pos = self.check_position(now)?;
                skips = budget;
                continue;
            }
            let now = r.head.0.load(Acquire);
            if now == pos {
                return Err(Error::Corrupt("queue slot stamp out of sequence"));
            }
            pos = self.check_position(now)?;
            skips = budget;
        }
    }

    /// After a commit (release): wakes one sleeper on `mine` (consumers
    /// for a commit, producers for a release), and passes a wake-up on to
    /// `other` if the slot after ours, `next`, is ready for it (its stamp is
    /// `ready`).
    ///
    /// Why pass it on: commits (and releases) complete out of order. The
    /// notification for a message at `head + 1` wakes a consumer that
    /// cannot take it while the slot at `head` is reserved but not
    /// committed, and goes back to sleep. When that slot is committed, its
    /// single wake-up reaches one consumer, which takes it — and would
    /// leave the next, already committed, message to sleepers nobody
    /// wakes. So whoever releases a claimed slot looks at the slot after it
    /// and, if that one is committed and a consumer sleeps, wakes one more;
    /// producers do the same for each other at commit. (loom found the
    /// lost wake-up this prevents: `loom_mpmc_2p2c`.) The check happens at
    /// release/commit rather than right after the claim/reservation, to
    /// share one fence with the notify: a slot held for a long time
    /// (zero copy) can delay the passed-on wake-up, at most by one sleep
    /// slice, since every sleeper re-checks on its own at least every
    /// 200 ms.
    ///
    /// SYNC POINT: the SeqCst fence orders our claim (the CAS, earlier) and
    /// our stamp store before the loads of `sleepers` and of the next
    /// stamp, against the fences of `EventCount::prepare` (a sleeper
    /// announced after it sees our claim and our stamp) and
    /// `EventCount::notify` (a committer whose store we miss sees the
    /// sleepers, and its wake-up reaches someone who sees our claim).
    ///
    /// In a process registered for `membarrier` (see `sys::membarrier`)
    /// the fence is only a compiler barrier: every waiter, after its
    /// `prepare` fence, issues the heavy barrier ([`heavy_prepare`]), which
    /// runs a full barrier on every CPU running a registered thread, so the
    /// Dekker pair still holds: either that barrier came after our stamp
    /// store (the waiter's re-check sees it) or before our loads (we see
    /// the waiter). This fence was the largest cost of a message: a store
    /// to a line the other side holds, then a fence, stalls for a
    /// cross-core round trip.
    #[inline]
    fn wake(&self, mine: &EventCount, other: &EventCount, next: u64, ready: u64) {
        light_fence();
        if mine.has_sleepers() {
            mine.notify(1);
        }
        if other.has_sleepers() {
            if self.slot(next).stamp.load(Acquire) == ready {
                other.notify(1);
            } else if std::ptr::eq(other, &self.ring().not_empty.0)
                && self.ring().geo.0.closed.load(Acquire) != 0
            {
                // After a close, a consumer that released (or skipped) a
                // slot with nothing committed behind it may have settled
                // the last slot the others wait for before `Closed`: wake
                // them all (`close`'s own wake-up came while a reservation
                // was still open). A commit or cancel after the close wakes
                // one consumer, which takes or skips that slot and so comes
                // here. The fence above orders our stamp store before the
                // load of the closed hint, against `EventCount::prepare`;
                // a hint we miss is set before `close` notifies everyone.
                other.notify_all();
            }
        }
    }

    /// Frees a claimed slot for the producers. [`Error::InvalidArgument`]
    /// for a slot of another ring (nothing is touched then).
    #[inline]
    pub fn release(&self, slot: SlotRef<'_>) -> Result<()> {
        let pos = self.held(&slot)?;
        self.release_pos(pos);
        // After the stamp (Release): see `publish`.
        self.unseat(slot.seat, |p| &p.consuming);
        Ok(())
    }

    #[inline]
    fn release_pos(&self, pos: u64) {
        self.release_at(pos, self.next(pos));
    }

    /// `release_pos`, `next` being `self.next(pos)`.
    #[inline]
    fn release_at(&self, pos: u64, next: u64) {
        // SYNC POINT (Release): our reads of the payload before the stamp
        // that lets a producer overwrite it; pairs with `try_reserve`.
        self.slot(pos)
            .stamp
            .store(pos.wrapping_add(self.one_lap), Release);
        let r = self.ring();
        self.wake(&r.not_full.0, &r.not_empty.0, next, next.wrapping_add(1));
    }

    /// Reserves a slot, copies `bytes` into it and commits it, without a
    /// [`SlotRef`] between the steps: the copying send of the handles.
    /// The position never leaves this function, so it needs none of the
    /// re-checks a handed-back slot gets (`held`). At most `slot_size`
    /// bytes are copied (the caller refuses longer messages first).
    #[inline]
    pub(crate) fn try_send_copy(&self, bytes: &[u8]) -> Result<()> {
        let seat = self.seat(|p| &p.producing);
        match self.try_reserve_as(seat) {
            Ok(slot) => {
                self.fill_and_commit(slot.pos, self.next(slot.pos), bytes, seat);
                Ok(())
            }
            Err(e) => {
                self.unseat(seat, |p| &p.producing);
                Err(e)
            }
        }
    }

    /// [`try_send_copy`](Self::try_send_copy), waiting for room until
    /// `until`.
    #[inline]
    pub(crate) fn send_copy_until(&self, bytes: &[u8], until: Option<Deadline>) -> Result<()> {
        if self.send_fast(bytes) {
            return Ok(());
        }
        self.send_copy_slow(bytes, until)
    }

    /// The common case of a send, and nothing else: `tail` unmarked at a
    /// free slot, the reservation won at the first try. `false` (with
    /// nothing held or recorded) for anything else, which the general
    /// path then sorts out and reports. It returns a `bool`, not a
    /// `Result`: an `Error` is a few words, and moving it through every
    /// return was a good part of a message's cost.
    #[inline]
    pub(crate) fn send_fast(&self, bytes: &[u8]) -> bool {
        let r = self.ring();
        let pos = r.tail.0.load(Acquire);
        // One test for both: the mark lies among the index bits, above
        // every index below `cap`.
        if pos & (self.one_lap - 1) >= self.cap {
            return false; // closed, or garbage: the general path says which
        }
        // SYNC POINT (Acquire): as in `try_reserve_as`.
        if self.slot(pos).stamp.load(Acquire) != pos {
            return false;
        }
        let next = self.next(pos);
        let Some(seat) = self.claim_on_record(&r.tail.0, pos, next, |p| &p.producing) else {
            return false;
        };
        fault_point!("mpmc.send.reserved");
        self.fill_and_commit(pos, next, bytes, seat);
        true
    }

    #[inline(never)]
    fn send_copy_slow(&self, bytes: &[u8], until: Option<Deadline>) -> Result<()> {
        match self.try_send_copy(bytes) {
            Err(Error::Full) => {}
            other => return other,
        }
        let slot = self.reserve_wait(until)?;
        self.fill_and_commit(slot.pos, self.next(slot.pos), bytes, slot.seat);
        Ok(())
    }

    /// Copies `bytes` into the slot at `pos`, which we reserved (as
    /// `seat`), and commits it.
    #[inline]
    fn fill_and_commit(&self, pos: u64, next: u64, bytes: &[u8], seat: Seat) {
        let n = bytes.len().min(self.slot_size);
        let dst = self.payload(pos);
        #[cfg(not(feature = "fault-injection"))]
        // SAFETY: the slot at `pos` is reserved by us (its index was
        // checked by `try_reserve_as`): nobody else touches its payload
        // until the commit below; `n <= slot_size`, the payload's size;
        // `bytes` is our caller's memory, not the ring's.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n)
        };
        #[cfg(feature = "fault-injection")]
        {
            // Two halves, so that a fault test can stop a producer with
            // half a message written.
            let half = n / 2;
            // SAFETY: as above, for bytes `..half` then `half..n`.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, half) };
            fault_point!("mpmc.send.payload_partial");
            // SAFETY: as above.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr().add(half), dst.add(half), n - half)
            };
        }
        fault_point!("mpmc.send.before_commit");
        if self.joinable {
            self.ring().tasks.0.unfinished.fetch_add(1, SeqCst);
        }
        self.publish_at(pos, next, n as u32, seat);
    }

    /// Claims the oldest message, copies it into `buf` and releases its
    /// slot: the copying receive of the handles, without a [`SlotRef`]
    /// between the steps. A message longer than `buf` stays queued
    /// ([`Error::BufferTooShort`]).
    #[inline]
    pub(crate) fn try_recv_copy(&self, buf: &mut [u8]) -> Result<usize> {
        let seat = self.seat(|p| &p.consuming);
        let room = buf.len();
        match self.try_claim_as(seat, |n| fits(n, room)) {
            Ok(slot) => {
                Ok(self.drain_and_release(slot.pos, self.next(slot.pos), slot.len, buf, seat))
            }
            Err(e) => {
                self.unseat(seat, |p| &p.consuming);
                Err(e)
            }
        }
    }

    /// [`try_recv_copy`](Self::try_recv_copy), waiting for a message until
    /// `until`.
    #[inline]
    pub(crate) fn recv_copy_until(&self, buf: &mut [u8], until: Option<Deadline>) -> Result<usize> {
        match self.recv_fast(buf) {
            Some(n) => Ok(n),
            None => self.recv_copy_slow(buf, until),
        }
    }

    /// The common case of a receive, and nothing else (see `send_fast`):
    /// a committed message at `head` that fits `buf`, claimed at the first
    /// try. `None` (with nothing held or recorded) for anything else.
    #[inline]
    pub(crate) fn recv_fast(&self, buf: &mut [u8]) -> Option<usize> {
        let r = self.ring();
        let pos = r.head.0.load(Acquire);
        if pos & (self.one_lap - 1) >= self.cap {
            return None; // garbage: the general path reports it
        }
        let s = self.slot(pos);
        // SYNC POINT (Acquire): pairs with the Release store in `publish`.
        if s.stamp.load(Acquire) != pos.wrapping_add(1) {
            return None;
        }
        // `CANCELLED` is above any slot size: skipped by the general path.
        let len = s.len.load(Relaxed) as usize;
        if len > self.slot_size || len > buf.len() {
            return None;
        }
        let next = self.next(pos);
        let seat = self.claim_on_record(&r.head.0, pos, next, |p| &p.consuming)?;
        fault_point!("mpmc.recv.borrowed");
        Some(self.drain_and_release(pos, next, len, buf, seat))
    }

    #[inline(never)]
    fn recv_copy_slow(&self, buf: &mut [u8], until: Option<Deadline>) -> Result<usize> {
        match self.try_recv_copy(buf) {
            Err(Error::Empty) => {}
            other => return other,
        }
        let room = buf.len();
        let slot = self.claim_wait(until, |n| fits(n, room))?;
        Ok(self.drain_and_release(slot.pos, self.next(slot.pos), slot.len, buf, slot.seat))
    }

    /// Copies the message of `len` bytes in the slot at `pos`, which we
    /// claimed (as `seat`), into `buf` and releases the slot.
    #[inline]
    fn drain_and_release(
        &self,
        pos: u64,
        next: u64,
        len: usize,
        buf: &mut [u8],
        seat: Seat,
    ) -> usize {
        // `len <= slot_size` was checked by the claim, `len <= buf.len()`
        // by `fits`; the `min`s keep the copy in bounds regardless.
        let n = len.min(buf.len()).min(self.slot_size);
        // SAFETY: the slot at `pos` is claimed by us (index checked by
        // `try_claim_as`): its payload stays as committed until we release
        // it below; `n` is within both the payload and `buf`.
        unsafe { std::ptr::copy_nonoverlapping(self.payload(pos), buf.as_mut_ptr(), n) };
        self.release_at(pos, next);
        // After the stamp (Release): see `publish`.
        self.unseat(seat, |p| &p.consuming);
        n
    }

    /// Runs `attempt` until it gives something other than `retry`,
    /// spinning briefly, then sleeping on `ec` in slices of at most 200 ms
    /// until `until` (`None`: no limit). `Timeout` once `until` passed.
    ///
    /// `stall` says what a wait may be stuck behind: `Some(producer)`
    /// watches [`stalled`](Self::stalled) for that side and runs
    /// [`recover`](Self::recover) once the same slot has held the ring for
    /// `GRACE` (50 ms); `None` (`join`) recovers at each slice end.
    fn wait_on<R>(
        &self,
        ec: &EventCount,
        retry: fn(&Error) -> bool,
        until: Option<Deadline>,
        stall: Option<bool>,
        mut attempt: impl FnMut() -> Result<R>,
    ) -> Result<R> {
        let mut backoff = Backoff::new();
        let mut yields = 0;
        // The held slot we saw the ring stopped at, and since when.
        let mut stopped: Option<(u64, Deadline)> = None;
        loop {
            match attempt() {
                Err(e) if retry(&e) => {}
                other => return other,
            }
            if until == Some(Deadline::PASSED) {
                return Err(Error::Timeout);
            }
            if !backoff.is_completed() {
                backoff.spin();
                continue;
            }
            // Then yield a few times: with more processes than CPUs (the
            // common case for a work queue), the peer we wait for often
            // needs this very CPU, and a yield hands it over for far less
            // than a futex sleep and the wake-up system call it costs the
            // peer. Under loom this is only more interleavings.
            if !cfg!(loom) && yields < YIELDS {
                yields += 1;
                std::thread::yield_now();
                continue;
            }
            let mut slice = slice_end(until);
            #[cfg(loom)]
            let stall = self.track.then_some(stall);
            #[cfg(not(loom))]
            let stall = Some(stall);
            match stall {
                // (loom only) a model without dead peers: no recovery.
                None => {}
                Some(stall) => match stall {
                    Some(producer) => match self.stalled(producer) {
                        Some(pos) => {
                            let due = match stopped {
                                Some((at, since)) if at == pos => since.has_passed(),
                                _ => {
                                    stopped = Some((pos, Deadline::after(GRACE)));
                                    false
                                }
                            };
                            // Loom has no clock (a timed wait sleeps until
                            // woken): there, look at once.
                            if due || cfg!(loom) {
                                stopped = None;
                                if self.recover() > 0 {
                                    continue;
                                }
                            }
                            slice = slice.min(Deadline::after(GRACE));
                        }
                        None => stopped = None,
                    },
                    None => {
                        if self.recover() > 0 {
                            continue;
                        }
                    }
                },
            }
            let key = ec.prepare();
            // The waiter's half of the asymmetric fence (see `wake`).
            let covered = heavy_prepare();
            match attempt() {
                Err(e) if retry(&e) => {}
                other => {
                    ec.cancel(key);
                    return other;
                }
            }
            if !covered {
                slice = slice.min(Deadline::after(UNCOVERED_SLICE));
            }
            match ec.wait(key, Some(slice)) {
                Ok(()) => {}
                // The end of a slice: look again (closed? room? data?).
                Err(Error::Timeout) if !until.is_some_and(|u| slice >= u) => {}
                // The caller's deadline, or no futex on this platform
                // (`Unsupported`): never a busy loop.
                Err(e) => return Err(e),
            }
        }
    }

    /// [`try_reserve`](Self::try_reserve), waiting for room until `until`.
    #[inline]
    pub(crate) fn reserve_until(&self, until: Option<Deadline>) -> Result<SlotRef<'_>> {
        // The first attempt inline; the waiting loop out of line.
        match self.try_reserve() {
            Err(Error::Full) => {}
            other => return other,
        }
        self.reserve_wait(until)
    }

    #[inline(never)]
    fn reserve_wait(&self, until: Option<Deadline>) -> Result<SlotRef<'_>> {
        let ec = &self.ring().not_full.0;
        self.wait_on(
            ec,
            |e| matches!(e, Error::Full),
            until,
            Some(true),
            || self.try_reserve(),
        )
    }

    /// [`try_claim`](Self::try_claim), waiting for a message until `until`.
    #[inline]
    pub(crate) fn claim_until(
        &self,
        until: Option<Deadline>,
        mut check: impl FnMut(usize) -> Result<()>,
    ) -> Result<SlotRef<'_>> {
        match self.try_claim(&mut check) {
            Err(Error::Empty) => {}
            other => return other,
        }
        self.claim_wait(until, check)
    }

    #[inline(never)]
    fn claim_wait(
        &self,
        until: Option<Deadline>,
        mut check: impl FnMut(usize) -> Result<()>,
    ) -> Result<SlotRef<'_>> {
        let ec = &self.ring().not_empty.0;
        self.wait_on(
            ec,
            |e| matches!(e, Error::Empty),
            until,
            Some(false),
            || self.try_claim(&mut check),
        )
    }

    /// Unfinished tasks (joinable rings): committed sends not yet matched
    /// by a [`task_done`](Self::task_done).
    pub fn unfinished(&self) -> u64 {
        self.ring().tasks.0.unfinished.load(SeqCst)
    }

    /// Marks one task done; an error if none is unfinished.
    pub fn task_done(&self) -> Result<()> {
        let u = &self.ring().tasks.0.unfinished;
        let mut cur = u.load(SeqCst);
        loop {
            if cur == 0 {
                return Err(Error::InvalidArgument(
                    "task_done called more times than items were sent",
                ));
            }
            match u.compare_exchange_weak(cur, cur - 1, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur == 1 {
            self.ring().tasks.0.all_done.notify_all();
        }
        Ok(())
    }

    /// Waits until no task is unfinished, or until `until`.
    pub(crate) fn join_until(&self, until: Option<Deadline>) -> Result<()> {
        let ec = &self.ring().tasks.0.all_done;
        self.wait_on(
            ec,
            |e| matches!(e, Error::WouldBlock),
            until,
            None,
            || {
                if self.unfinished() == 0 {
                    Ok(())
                } else {
                    Err(Error::WouldBlock)
                }
            },
        )
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

/// Fuzz entry: `data` as ring memory, then a bounded run of operations.
/// The first byte picks the mode: garbage in every byte (attach must refuse
/// it or cope), or a valid ring whose control words (positions, stamps,
/// lengths, flags) are then overwritten with garbage.
#[cfg(fuzzing)]
pub fn __fuzz_garbage(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let len = rest.len().clamp(std::mem::size_of::<MpmcRing>(), 1 << 16);
    let layout = std::alloc::Layout::from_size_align(len, 64).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { std::alloc::alloc_zeroed(layout) };
    if p.is_null() {
        return;
    }
    let view = if mode & 1 == 0 {
        // SAFETY: `p` holds `len >= rest.len().min(len)` bytes.
        unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr(), p, rest.len().min(len)) };
        // SAFETY: our allocation, alive until the end of this function.
        unsafe { MpmcRing::attach(p, len) }
    } else {
        let cap = (mode as usize >> 1) % 9 + 1;
        let slot = rest.first().map_or(8, |&b| b as usize % 40);
        match MpmcRing::bytes_for(cap, slot) {
            Ok(n) if n <= len => {
                // SAFETY: `n` bytes of our fresh allocation.
                unsafe { MpmcRing::init(p, cap, slot, mode as u32 >> 7).unwrap() };
                // Overwrite control words: each 9-byte record is an offset
                // (into the ring, 8-aligned) and a value.
                for rec in rest.chunks_exact(9).take(32) {
                    let off = (u16::from_le_bytes([rec[0], 0]) as usize * 8) % n;
                    let off = off & !7;
                    let v = u64::from_le_bytes(rec[1..9].try_into().unwrap());
                    // SAFETY: an aligned u64 inside our allocation, only
                    // read atomically elsewhere; no other thread runs.
                    unsafe { (*p.add(off).cast::<AtomicU64>()).store(v, Relaxed) };
                }
                // SAFETY: as above.
                unsafe { MpmcRing::attach(p, len) }
            }
            _ => Err(Error::InvalidArgument("")),
        }
    };
    if let Ok(r) = view {
        for i in 0..64u32 {
            let _ = r.len();
            if i % 3 == 0 {
                if let Ok(s) = r.try_reserve() {
                    let n = r.slot_size().min(4);
                    // SAFETY: the reserved slot holds `slot_size >= n` bytes.
                    unsafe { std::ptr::write_bytes(r.payload_ptr(&s), 0xab, n) };
                    if i % 2 == 0 {
                        let _ = r.commit(s, n);
                    } else {
                        let _ = r.cancel(s);
                    }
                }
            } else if let Ok(s) = r.try_claim(|_| Ok(())) {
                // SAFETY: claimed: `len <= slot_size` was checked.
                let b = unsafe { std::slice::from_raw_parts(r.payload_ptr(&s), s.len()) };
                std::hint::black_box(b.iter().fold(0u8, |a, x| a ^ x));
                let _ = r.release(s);
            }
            let _ = r.task_done();
            if i % 8 == 0 {
                // Garbage peer entries, stamps and positions: recovery must
                // end, and take nothing it cannot prove dead.
                let _ = r.recover();
                let _ = r.stalled(i % 16 == 0);
                let _ = r.abandoned();
            }
            let _ = r.join_until(Some(Deadline::PASSED));
            let _ = r.reserve_until(Some(Deadline::PASSED)).map(|s| r.cancel(s));
        }
    }
    // SAFETY: allocated above with `layout`; nothing refers to it now (the
    // view is dropped and its atomics need no drop outside loom).
    unsafe { std::alloc::dealloc(p, layout) };
}

/// The end of the next sleep slice: at most [`SLICE`] from now, never past
/// `until`.
fn slice_end(until: Option<Deadline>) -> Deadline {
    let s = Deadline::after(SLICE);
    match until {
        Some(u) => u.min(s),
        None => s,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn send(r: &MpmcRef, bytes: &[u8]) -> Result<()> {
        let s = r.try_reserve()?;
        // SAFETY: the slot is ours; `bytes` fits (tests keep it small).
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), r.payload_ptr(&s), bytes.len()) };
        r.commit(s, bytes.len()).unwrap();
        Ok(())
    }

    fn recv(r: &MpmcRef) -> Result<Vec<u8>> {
        let s = r.try_claim(|_| Ok(()))?;
        let mut v = vec![0; s.len()];
        // SAFETY: the slot is claimed by us; `len <= slot_size`.
        unsafe { std::ptr::copy_nonoverlapping(r.payload_ptr(&s), v.as_mut_ptr(), s.len()) };
        r.release(s).unwrap();
        Ok(v)
    }

    #[test]
    fn mpmc_fifo_full_empty_each_capacity() {
        for cap in [1usize, 2, 3, 5, 7, 8, 9] {
            let r = MpmcRing::new(cap, 8, 0).unwrap();
            for round in 0..3u8 {
                for i in 0..cap {
                    send(&r, &[round, i as u8]).unwrap();
                }
                assert!(matches!(send(&r, b"x"), Err(Error::Full)));
                assert_eq!(r.len(), cap);
                for i in 0..cap {
                    assert_eq!(recv(&r).unwrap(), vec![round, i as u8]);
                }
                assert!(matches!(recv(&r), Err(Error::Empty)));
                assert_eq!(r.len(), 0);
            }
        }
    }

    #[test]
    fn mpmc_wraps_positions_at_2_pow_64() {
        for cap in [1usize, 3, 4, 6] {
            let r = MpmcRing::new(cap, 8, 0).unwrap();
            // SAFETY: a fresh ring, used by this thread only.
            unsafe { r.__start_positions_at(u64::MAX - 3 * r.one_lap + 1) };
            let mut model = std::collections::VecDeque::new();
            for n in 0..(8 * cap as u64 + 5) {
                send(&r, &n.to_le_bytes()).unwrap();
                model.push_back(n);
                assert_eq!(r.len(), model.len());
                if model.len() == cap || n % 3 == 0 {
                    let got = recv(&r).unwrap();
                    assert_eq!(got, model.pop_front().unwrap().to_le_bytes());
                }
            }
            assert!(r.ring().tail.0.load(SeqCst) < 1 << 20, "did not wrap");
        }
    }

    #[test]
    fn mpmc_cancelled_slots_are_skipped() {
        let r = MpmcRing::new(3, 8, 0).unwrap();
        let a = r.try_reserve().unwrap();
        send(&r, b"b").unwrap();
        assert!(matches!(recv(&r), Err(Error::Empty)));
        r.cancel(a).unwrap();
        assert_eq!(recv(&r).unwrap(), b"b");
        assert!(matches!(recv(&r), Err(Error::Empty)));
    }

    #[test]
    fn mpmc_refused_claim_leaves_the_message() {
        let r = MpmcRing::new(2, 8, 0).unwrap();
        send(&r, b"hello").unwrap();
        let e = r.try_claim(|n| Err(Error::BufferTooShort { needed: n }));
        assert!(matches!(e, Err(Error::BufferTooShort { needed: 5 })));
        assert_eq!(recv(&r).unwrap(), b"hello");
    }

    #[test]
    fn mpmc_close_drains_then_closed() {
        let r = MpmcRing::new(2, 8, 0).unwrap();
        send(&r, b"a").unwrap();
        r.close();
        assert!(matches!(send(&r, b"b"), Err(Error::Closed)));
        assert_eq!(recv(&r).unwrap(), b"a");
        assert!(matches!(recv(&r), Err(Error::Closed)));
    }

    /// Review finding 1a: a message committed before `close` behind a
    /// reservation still open is drained (not hidden behind `Closed`), and
    /// so is the reservation's, committed after the close; only then is
    /// the ring `Closed`, and a joinable ring's count reaches zero.
    #[test]
    fn mpmc_close_drains_a_message_behind_an_open_reservation() {
        let r = MpmcRing::new(4, 8, FLAG_JOINABLE).unwrap();
        let a = r.try_reserve().unwrap();
        send(&r, b"b").unwrap();
        r.close();
        assert!(r.is_closed());
        assert!(matches!(r.try_reserve(), Err(Error::Closed)));
        // Not Closed while the reservation is open: wait for it.
        assert!(matches!(recv(&r), Err(Error::Empty)));
        // SAFETY: the slot is ours.
        unsafe { r.payload_ptr(&a).write(b'a') };
        r.commit(a, 1).unwrap();
        assert_eq!(recv(&r).unwrap(), b"a");
        r.task_done().unwrap();
        assert_eq!(recv(&r).unwrap(), b"b");
        r.task_done().unwrap();
        assert!(matches!(recv(&r), Err(Error::Closed)));
        r.join_until(Some(Deadline::PASSED)).unwrap();
        // A reservation cancelled after the close: skipped, then Closed.
        let r = MpmcRing::new(2, 8, 0).unwrap();
        let a = r.try_reserve().unwrap();
        r.close();
        assert!(matches!(recv(&r), Err(Error::Empty)));
        r.cancel(a).unwrap();
        assert!(matches!(recv(&r), Err(Error::Closed)));
        assert_eq!(r.len(), 0);
    }

    /// Review finding 4: producers dropping reservations as fast as a
    /// lone consumer skips them (legal use) never make it report
    /// `Corrupt` ("positions do not settle"); it may say `Empty`.
    #[test]
    fn mpmc_dropped_reservations_racing_a_consumer_are_not_corrupt() {
        use std::sync::atomic::{AtomicBool, Ordering as O};
        let r = std::sync::Arc::new(MpmcRing::new(1, 8, 0).unwrap());
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let ps: Vec<_> = (0..4)
            .map(|_| {
                let (r, stop) = (r.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(O::Relaxed) {
                        if let Ok(s) = r.try_reserve() {
                            r.cancel(s).unwrap();
                        }
                    }
                })
            })
            .collect();
        let calls = if cfg!(miri) { 20 } else { 200_000 };
        let mut corrupt = 0;
        for _ in 0..calls {
            match r.try_claim(|_| Ok(())) {
                Err(Error::Corrupt(_)) => corrupt += 1,
                Ok(s) => r.release(s).unwrap(),
                Err(_) => {}
            }
        }
        stop.store(true, O::Relaxed);
        for p in ps {
            p.join().unwrap();
        }
        assert_eq!(corrupt, 0, "spurious Corrupt in {calls} calls");
    }

    /// Review finding 4, deterministic: while a consumer looks at a
    /// message (its `check`), another consumer takes it and producers drop
    /// three reservations and send one more, round after round. Each round
    /// is progress by others: the skip budget starts afresh, no `Corrupt`.
    #[test]
    fn mpmc_skips_across_other_consumers_progress_are_not_corrupt() {
        let r = MpmcRing::new(4, 8, 0).unwrap();
        let fill = |r: &MpmcRef| {
            for _ in 0..3 {
                let s = r.try_reserve().unwrap();
                r.cancel(s).unwrap();
            }
            send(r, b"m").unwrap();
        };
        fill(&r);
        let mut rounds = 0;
        let res = r.try_claim(|_| {
            rounds += 1;
            if rounds > 1000 {
                return Ok(());
            }
            let other = r.try_claim(|_| Ok(())).unwrap();
            r.release(other).unwrap();
            fill(&r);
            Err(Error::BufferTooShort { needed: 1 })
        });
        assert!(
            res.is_ok(),
            "{res:?} after {rounds} rounds of progress by others"
        );
    }

    /// Review finding 5: a `head` ahead of `tail` (a stale pair, or
    /// garbage) is reported empty, never full.
    #[test]
    fn mpmc_len_never_reports_full_for_head_past_tail() {
        let r = MpmcRing::new(3, 8, 0).unwrap();
        send(&r, b"a").unwrap();
        send(&r, b"b").unwrap();
        recv(&r).unwrap();
        recv(&r).unwrap();
        assert_eq!(r.len(), 0);
        r.ring().tail.0.store(1, SeqCst);
        assert_eq!(r.len(), 0);
        r.ring().tail.0.store(2, SeqCst);
        assert_eq!(r.len(), 0);
    }

    /// Review finding 6: a garbage length (longer than the slot) is
    /// discarded as `Corrupt` and lowers a joinable ring's count, so
    /// `join` returns.
    #[test]
    fn mpmc_garbage_length_lowers_unfinished() {
        let r = MpmcRing::new(2, 8, FLAG_JOINABLE).unwrap();
        send(&r, b"a").unwrap();
        send(&r, b"b").unwrap();
        r.slot(0).len.store(9, SeqCst);
        assert!(matches!(recv(&r), Err(Error::Corrupt(_))));
        assert_eq!(r.unfinished(), 1);
        assert_eq!(recv(&r).unwrap(), b"b");
        r.task_done().unwrap();
        r.join_until(Some(Deadline::PASSED)).unwrap();
        // Saturating: a count already at zero stays there.
        send(&r, b"c").unwrap();
        r.task_done().unwrap();
        r.slot(0).len.store(9, SeqCst);
        assert!(matches!(recv(&r), Err(Error::Corrupt(_))));
        assert_eq!(r.unfinished(), 0);
    }

    /// Review finding 2: a slot reference handed to another ring (whose
    /// index may lie past that ring's slots, or name a slot someone holds
    /// there) is refused before it is used, in release builds too.
    #[test]
    fn mpmc_slot_of_another_ring_is_refused() {
        let a = MpmcRing::new(8, 8, 0).unwrap();
        let b = MpmcRing::new(3, 8, FLAG_JOINABLE).unwrap();
        let held: Vec<_> = (0..8).map(|_| a.try_reserve().unwrap()).collect();
        let b0 = b.try_reserve().unwrap();
        let mut it = held.into_iter();
        // Index 0 names `b0`'s slot in `b`: committing it there would let
        // consumers in while `b0` is still being written.
        let s0 = it.next().unwrap();
        assert!(matches!(b.commit(s0, 1), Err(Error::InvalidArgument(_))));
        assert_eq!(b.unfinished(), 0);
        assert!(matches!(recv(&b), Err(Error::Empty)));
        // Index 7 is past `b`'s three slots.
        let s7 = it.nth(6).unwrap();
        assert_eq!(s7.pos() & (a.one_lap - 1), 7);
        assert!(matches!(b.release(s7), Err(Error::InvalidArgument(_))));
        for s in (0..2).map(|_| a.try_claim(|_| Ok(()))) {
            assert!(matches!(s, Err(Error::Empty)));
        }
        b.cancel(b0).unwrap();
        assert!(matches!(recv(&b), Err(Error::Empty)));
        send(&b, b"ok").unwrap();
        assert_eq!(recv(&b).unwrap(), b"ok");
    }

    /// Runs `f` on a thread that then "dies": it is declared dead to the
    /// liveness check, and whatever slot `f` leaked stays held.
    fn dies_holding<F: FnOnce() + Send>(f: F) {
        std::thread::scope(|sc| {
            sc.spawn(|| {
                f();
                peers::pretend_dead();
            });
        });
    }

    #[test]
    fn mpmc_dead_producer_reservation_is_poisoned_and_skipped() {
        let r = MpmcRing::new(3, 8, FLAG_JOINABLE).unwrap();
        dies_holding(|| {
            let s = r.try_reserve().unwrap();
            // SAFETY: reserved by us; half a message, never committed.
            unsafe { r.payload_ptr(&s).write_bytes(0xee, 4) };
            // Leaked: `SlotRef` has no `Drop`, the slot stays held.
            let _ = s;
        });
        send(&r, b"behind").unwrap();
        assert!(matches!(recv(&r), Err(Error::Empty)), "stopped at the slot");
        assert_eq!(r.stalled(false), Some(0));
        assert_eq!(r.recover(), 1);
        assert_eq!(r.recover(), 0, "recovered once");
        assert_eq!(r.abandoned(), Abandoned { sends: 1, recvs: 0 });
        assert_eq!(recv(&r).unwrap(), b"behind");
        // The poisoned slot never counted as a task.
        assert_eq!(r.unfinished(), 1);
        r.task_done().unwrap();
        // The slot is free again, lap after lap.
        for i in 0..10u8 {
            send(&r, &[i]).unwrap();
            assert_eq!(recv(&r).unwrap(), [i]);
            r.task_done().unwrap();
        }
        r.join_until(Some(Deadline::PASSED)).unwrap();
    }

    #[test]
    fn mpmc_dead_consumer_borrow_is_freed_and_dropped() {
        let r = MpmcRing::new(2, 8, FLAG_JOINABLE).unwrap();
        send(&r, b"a").unwrap();
        send(&r, b"b").unwrap();
        dies_holding(|| {
            let _held = r.try_claim(|_| Ok(())).unwrap();
        });
        assert_eq!(recv(&r).unwrap(), b"b");
        r.task_done().unwrap();
        assert!(
            matches!(send(&r, b"c"), Err(Error::Full)),
            "stopped a lap later"
        );
        assert!(r.stalled(true).is_some());
        assert_eq!(r.recover(), 1);
        assert_eq!(r.abandoned(), Abandoned { sends: 0, recvs: 1 });
        // Dropped, not redelivered; it counts as done.
        send(&r, b"c").unwrap();
        send(&r, b"d").unwrap();
        assert_eq!(recv(&r).unwrap(), b"c");
        assert_eq!(recv(&r).unwrap(), b"d");
        assert_eq!(r.unfinished(), 2);
        r.task_done().unwrap();
        r.task_done().unwrap();
        r.join_until(Some(Deadline::PASSED)).unwrap();
    }

    #[test]
    fn mpmc_live_holders_are_never_recovered() {
        let r = MpmcRing::new(2, 8, 0).unwrap();
        let s = r.try_reserve().unwrap();
        send(&r, b"x").unwrap();
        assert_eq!(r.recover(), 0);
        r.commit(s, 0).unwrap();
        let c = r.try_claim(|_| Ok(())).unwrap();
        assert_eq!(r.recover(), 0);
        r.release(c).unwrap();
        assert_eq!(recv(&r).unwrap(), b"x");
        assert_eq!(r.abandoned(), Abandoned::default());
    }

    /// A thread holding two reservations at once is untracked for the
    /// second: while it holds it, nothing is recovered (it cannot be told
    /// from a dead holder), and once it lets go recovery works again.
    #[test]
    fn mpmc_untracked_holder_blocks_recovery_until_it_lets_go() {
        let r = MpmcRing::new(4, 8, 0).unwrap();
        dies_holding(|| {
            let _held = r.try_reserve().unwrap();
        });
        let a = r.try_reserve().unwrap();
        let b = r.try_reserve().unwrap();
        assert_eq!(b.seat, Seat::NONE);
        assert_eq!(r.recover(), 0, "an untracked holder is alive");
        r.commit(b, 0).unwrap();
        assert_eq!(r.recover(), 1);
        r.commit(a, 0).unwrap();
        assert_eq!(r.abandoned().sends, 1);
    }

    /// A waiting consumer recovers a dead reservation on its own (after
    /// the grace period), and `Closed` comes once it is skipped.
    #[test]
    fn mpmc_dead_reservation_does_not_withhold_closed() {
        let r = MpmcRing::new(2, 8, 0).unwrap();
        dies_holding(|| {
            let _held = r.try_reserve().unwrap();
        });
        send(&r, b"z").unwrap();
        r.close();
        let got = r.claim_until(Some(Deadline::after(Duration::from_secs(10))), |_| Ok(()));
        let s = got.unwrap();
        assert_eq!(s.len(), 1);
        r.release(s).unwrap();
        let end = r.claim_until(Some(Deadline::after(Duration::from_secs(10))), |_| Ok(()));
        assert!(matches!(end, Err(Error::Closed)), "{end:?}");
        assert_eq!(r.abandoned().sends, 1);
    }

    /// Hostile peer entries (positions, owners, the untracked count) give
    /// no panic, no UB and no recovery of a live slot.
    #[test]
    fn mpmc_garbage_peer_table_is_harmless() {
        let r = MpmcRing::new(3, 8, 0).unwrap();
        let s = r.try_reserve().unwrap();
        for (i, v) in [u64::MAX - 1, 0, 1, 5, 1 << 40].into_iter().enumerate() {
            let p = &r.ring().peers[i + 1].0;
            p.owner.store(0xffff_ffff_0000_0001 + i as u64, SeqCst);
            p.producing.store(v, SeqCst);
            p.consuming.store(v, SeqCst);
        }
        let _ = r.recover();
        r.commit(s, 0).unwrap();
        assert_eq!(recv(&r).unwrap(), b"");
        r.ring().stats.0.untracked.store(u64::MAX, SeqCst);
        send(&r, b"ok").unwrap();
        assert_eq!(recv(&r).unwrap(), b"ok");
    }

    #[test]
    fn mpmc_task_done_counts() {
        let r = MpmcRing::new(2, 8, FLAG_JOINABLE).unwrap();
        r.join_until(None).unwrap();
        send(&r, b"a").unwrap();
        assert_eq!(r.unfinished(), 1);
        assert!(matches!(
            r.join_until(Some(Deadline::PASSED)),
            Err(Error::Timeout)
        ));
        recv(&r).unwrap();
        r.task_done().unwrap();
        assert!(matches!(r.task_done(), Err(Error::InvalidArgument(_))));
        r.join_until(None).unwrap();
    }

    #[test]
    fn mpmc_garbage_is_corrupt() {
        let r = MpmcRing::new(3, 8, 0).unwrap();
        send(&r, b"a").unwrap();
        // A stamp from nowhere, with the positions unchanged.
        r.slot(0).stamp.store(12345, SeqCst);
        assert!(matches!(recv(&r), Err(Error::Corrupt(_))));
        r.slot(0).stamp.store(1, SeqCst);
        r.slot(0).len.store(9, SeqCst);
        assert!(matches!(recv(&r), Err(Error::Corrupt(_))));
        // An index outside the ring.
        r.ring().head.0.store(3, SeqCst);
        assert!(matches!(recv(&r), Err(Error::Corrupt(_))));
        r.ring().tail.0.store(7, SeqCst);
        assert!(matches!(send(&r, b"x"), Err(Error::Corrupt(_))));
        // Geometry checked on attach.
        r.ring().geo.0.stride.store(7, SeqCst);
        // SAFETY: the heap ring is alive for the call.
        let e = unsafe { MpmcRing::attach(r.base.as_ptr(), r.layout.size()) };
        assert!(matches!(e, Err(Error::Corrupt(_))));
    }

    #[test]
    fn mpmc_threads_exactly_once() {
        let r = std::sync::Arc::new(MpmcRing::new(5, 8, 0).unwrap());
        let per = if cfg!(miri) { 50 } else { 20_000u64 };
        let producers: Vec<_> = (0..2u64)
            .map(|id| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..per {
                        let s = r.reserve_until(None).unwrap();
                        let v = (id << 32 | i).to_le_bytes();
                        // SAFETY: slot ours; 8 bytes fit.
                        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), r.payload_ptr(&s), 8) };
                        r.commit(s, 8).unwrap();
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut last = [None::<u64>; 2];
                    loop {
                        let s = match r.claim_until(None, |_| Ok(())) {
                            Ok(s) => s,
                            Err(Error::Closed) => break,
                            Err(e) => panic!("{e}"),
                        };
                        let mut v = [0u8; 8];
                        // SAFETY: claimed by us.
                        unsafe {
                            std::ptr::copy_nonoverlapping(r.payload_ptr(&s), v.as_mut_ptr(), 8)
                        };
                        r.release(s).unwrap();
                        let v = u64::from_le_bytes(v);
                        let (id, i) = ((v >> 32) as usize, v & 0xffff_ffff);
                        assert!(last[id].map_or(true, |l| l < i));
                        last[id] = Some(i);
                        got.push(v);
                    }
                    got
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        r.close();
        let mut all: Vec<u64> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        all.sort();
        assert_eq!(all.len() as u64, 2 * per);
        all.dedup();
        assert_eq!(all.len() as u64, 2 * per);
    }

    /// A process that reuses a dead process's pid (and thread id) must not
    /// take the dead entry as its own: it would clear the position the
    /// entry names, and the dead reservation would be recovered never.
    #[test]
    fn mpmc_pid_reuse_keeps_the_dead_entry() {
        let r = MpmcRing::new(2, 8, 0).unwrap();
        let other = MpmcRing::new(2, 8, 0).unwrap();
        dies_holding(|| {
            let _held = r.try_reserve().unwrap();
        });
        let named = |r: &MpmcRef| (0..PEERS).find(|&i| r.peer(i).producing.load(SeqCst) == 0);
        let dead = named(&r).unwrap();
        std::thread::scope(|sc| {
            sc.spawn(|| {
                // Our owner word, learnt from an entry of another ring.
                send(&other, b"w").unwrap();
                let j = (0..PEERS).find(|&j| other.peer(j).owner.load(SeqCst) != 0);
                let me = other.peer(j.unwrap()).owner.load(SeqCst);
                // The dead entry as a process before us with our pid and
                // thread id left it: same owner word, another start time.
                r.peer(dead).owner.store(me, SeqCst);
                r.peer(dead).start.store(12345, SeqCst);
                send(&r, b"x").unwrap();
            });
        });
        assert_eq!(named(&r), Some(dead), "the dead reservation is still named");
        if cfg!(all(
            not(miri),
            any(target_os = "linux", target_os = "android")
        )) {
            // Start times come from /proc: without it (and under Miri)
            // everyone looks alive.
            assert_eq!(r.recover(), 1);
            assert_eq!(recv(&r).unwrap(), b"x");
        }
    }

    /// Entries of threads that exited are taken by new threads: otherwise
    /// `PEERS` short-lived threads would leave every later holder
    /// untracked, and recovery off.
    #[test]
    #[cfg_attr(
        any(miri, not(any(target_os = "linux", target_os = "android"))),
        ignore = "needs /proc/self/task"
    )]
    fn mpmc_exited_threads_entries_are_reused() {
        let r = MpmcRing::new(2, 8, 0).unwrap();
        for _ in 0..PEERS + 1 {
            std::thread::scope(|sc| {
                sc.spawn(|| {
                    let s = r.try_reserve().unwrap();
                    assert_ne!(s.seat, Seat::NONE, "untracked: the table is full");
                    r.commit(s, 0).unwrap();
                    recv(&r).unwrap();
                });
            });
        }
    }

    /// An entry written from another pid namespace is never judged dead:
    /// its pid means nothing here.
    #[test]
    fn mpmc_entry_of_another_pid_namespace_is_never_recovered() {
        let r = MpmcRing::new(2, 8, 0).unwrap();
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let _held = r.try_reserve().unwrap();
            });
        });
        let i = (0..PEERS)
            .find(|&i| r.peer(i).producing.load(SeqCst) == 0)
            .unwrap();
        // A pid no process has, in another namespace.
        r.peer(i).owner.store((i32::MAX as u64) << 32 | 1, SeqCst);
        r.peer(i).pidns.store(peers::my_identity().1 ^ 1, SeqCst);
        assert_eq!(r.recover(), 0);
        assert_eq!(r.slot(0).stamp.load(SeqCst), 0, "still reserved");
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    fn put(r: &MpmcRef, v: u8) {
        let s = r.reserve_until(None).unwrap();
        // SAFETY: the slot is ours.
        unsafe { r.payload_ptr(&s).write(v) };
        r.commit(s, 1).unwrap();
    }

    fn take(r: &MpmcRef) -> u8 {
        let s = r.claim_until(None, |_| Ok(())).unwrap();
        assert_eq!(s.len(), 1, "a claimed slot must show its committed length");
        // SAFETY: claimed by us.
        let v = unsafe { r.payload_ptr(&s).read() };
        r.release(s).unwrap();
        v
    }

    /// A model builder with a preemption bound (2 unless
    /// `LOOM_MAX_PREEMPTIONS` says otherwise), so four threads finish in
    /// seconds.
    fn builder() -> loom::model::Builder {
        let mut b = loom::model::Builder::new();
        if b.preemption_bound.is_none() {
            b.preemption_bound = Some(2);
        }
        b
    }

    /// Two producers and two consumers, one message each, through a ring of
    /// capacity 2: every message arrives exactly once with its length, and
    /// nobody sleeps through a wake-up (a lost wake-up shows as a loom
    /// deadlock).
    #[test]
    fn loom_mpmc_2p2c() {
        builder().check(|| {
            let r = Arc::new(MpmcRing::new(2, 1, 0).unwrap());
            let ps: Vec<_> = (1..=2u8)
                .map(|v| {
                    let r = r.clone();
                    loom::thread::spawn(move || put(&r, v))
                })
                .collect();
            let r2 = r.clone();
            let c = loom::thread::spawn(move || take(&r2));
            let a = take(&r);
            let b = c.join().unwrap();
            for p in ps {
                p.join().unwrap();
            }
            assert_eq!(a + b, 3);
            assert_ne!(a, b);
        });
    }

    /// `loom_mpmc_2p2c` through the copying send and receive (their
    /// one-shot fast paths, falling back to the general ones under
    /// contention).
    #[test]
    fn loom_mpmc_copy_2p2c() {
        builder().check(|| {
            let r = Arc::new(MpmcRing::new(2, 1, 0).unwrap());
            let ps: Vec<_> = (1..=2u8)
                .map(|v| {
                    let r = r.clone();
                    loom::thread::spawn(move || r.send_copy_until(&[v], None).unwrap())
                })
                .collect();
            let get = |r: &MpmcRef| {
                let mut b = [0u8; 1];
                assert_eq!(r.recv_copy_until(&mut b, None).unwrap(), 1);
                b[0]
            };
            let r2 = r.clone();
            let c = loom::thread::spawn(move || get(&r2));
            let a = get(&r);
            let b = c.join().unwrap();
            for p in ps {
                p.join().unwrap();
            }
            assert_eq!(a + b, 3);
            assert_ne!(a, b);
        });
    }

    /// One producer sends two messages through a ring of capacity 1 to a
    /// consumer: the producer waits for room (the `not_full` side), the
    /// consumer for data, and the order holds.
    #[test]
    fn loom_mpmc_capacity_1_both_sides_wait() {
        builder().check(|| {
            let r = Arc::new(MpmcRing::new(1, 1, 0).unwrap());
            let r1 = r.clone();
            let p = loom::thread::spawn(move || {
                put(&r1, 1);
                put(&r1, 2);
            });
            assert_eq!(take(&r), 1);
            assert_eq!(take(&r), 2);
            p.join().unwrap();
        });
    }

    /// Drains until `Closed`, counting the messages.
    fn drain(r: &MpmcRef) -> u32 {
        let mut got = 0;
        loop {
            match r.claim_until(None, |_| Ok(())) {
                Ok(s) => {
                    r.release(s).unwrap();
                    got += 1;
                }
                Err(Error::Closed) => return got,
                Err(e) => panic!("{e:?}"),
            }
        }
    }

    /// Review finding 1b: the consumer finds the slot empty, the producer
    /// commits and closes, the consumer then sees the close: the message
    /// must still be drained before `Closed`.
    #[test]
    fn loom_mpmc_commit_then_close_is_drained() {
        builder().check(|| {
            let r = Arc::new(MpmcRing::new(2, 1, 0).unwrap());
            let r1 = r.clone();
            let p = loom::thread::spawn(move || {
                put(&r1, 5);
                r1.close();
            });
            let got = drain(&r);
            p.join().unwrap();
            assert_eq!(got, 1, "a message committed before close was not drained");
        });
    }

    /// Review finding 1c: a send racing a close either fails with
    /// `Closed` or is received; never `Ok` and lost.
    #[test]
    fn loom_mpmc_send_racing_close_is_not_lost() {
        builder().check(|| {
            let r = Arc::new(MpmcRing::new(2, 1, 0).unwrap());
            let r1 = r.clone();
            let p = loom::thread::spawn(move || match r1.try_reserve() {
                Ok(s) => {
                    r1.commit(s, 1).unwrap();
                    1
                }
                Err(Error::Closed) => 0,
                Err(e) => panic!("{e:?}"),
            });
            let r2 = r.clone();
            let c = loom::thread::spawn(move || r2.close());
            let got = drain(&r);
            let sent = p.join().unwrap();
            c.join().unwrap();
            assert_eq!(
                got, sent,
                "send returned Ok but the message was never received"
            );
        });
    }

    /// Review finding 1a, with sleepers: a reservation open across the
    /// close keeps two consumers waiting; when it is committed (or
    /// cancelled), the message arrives once and both consumers wake to
    /// `Closed` (a consumer left asleep shows as a loom deadlock).
    #[test]
    fn loom_mpmc_close_waits_for_open_reservation() {
        for commit in [true, false] {
            builder().check(move || {
                let r = Arc::new(MpmcRing::new(2, 1, 0).unwrap());
                let r1 = r.clone();
                let c = loom::thread::spawn(move || drain(&r1));
                let r2 = r.clone();
                let p = loom::thread::spawn(move || {
                    let s = r2.try_reserve().unwrap();
                    r2.close();
                    if commit {
                        r2.commit(s, 1).unwrap();
                    } else {
                        r2.cancel(s).unwrap();
                    }
                });
                let got = drain(&r) + c.join().unwrap();
                p.join().unwrap();
                assert_eq!(got, commit as u32);
            });
        }
    }

    /// The race the peer table exists for: a producer that died after
    /// recording position 0 and lost the CAS for it (a dead loser, forged
    /// here as an entry), a live producer that wins position 0 and commits
    /// slowly, and a recoverer running meanwhile. The live producer's slot
    /// must never be poisoned. Catches: dropping the live-claimant check in
    /// `poison`, recording the position after the claiming CAS instead of
    /// before it, and clearing the entry before the commit's stamp store.
    #[test]
    fn loom_mpmc_dead_loser_never_poisons_a_live_winner() {
        builder().check(|| {
            let r = Arc::new(MpmcRing::new(2, 1, 0).unwrap().tracked());
            let ghost = (std::process::id() as u64) << 32 | 0xffff_fff0;
            peers::declare_dead(ghost);
            let e = &r.ring().peers[PEERS - 1].0;
            e.owner.store(ghost, SeqCst);
            e.producing.store(0, SeqCst);
            let r1 = r.clone();
            let p = loom::thread::spawn(move || put(&r1, 7));
            // Lets the producer run first too: otherwise the recoverer
            // always scans before it, and the race is never explored.
            loom::thread::yield_now();
            assert_eq!(r.recover(), 0);
            assert_eq!(take(&r), 7);
            p.join().unwrap();
            assert_eq!(r.abandoned().sends, 0, "a live reservation was poisoned");
        });
    }

    /// `loom_mpmc_capacity_1_both_sides_wait` through the copying send
    /// and receive: both sides wait, and the order holds.
    #[test]
    fn loom_mpmc_copy_capacity_1_both_sides_wait() {
        builder().check(|| {
            let r = Arc::new(MpmcRing::new(1, 1, 0).unwrap());
            let r1 = r.clone();
            let p = loom::thread::spawn(move || {
                r1.send_copy_until(&[1], None).unwrap();
                r1.send_copy_until(&[2], None).unwrap();
            });
            let mut b = [0u8; 1];
            r.recv_copy_until(&mut b, None).unwrap();
            assert_eq!(b[0], 1);
            r.recv_copy_until(&mut b, None).unwrap();
            assert_eq!(b[0], 2);
            p.join().unwrap();
        });
    }

    /// `loom_mpmc_dead_loser_never_poisons_a_live_winner` with the
    /// winner on the copying send's fast path, which records its position
    /// before its claiming CAS too.
    #[test]
    fn loom_mpmc_copy_send_winner_is_never_poisoned() {
        builder().check(|| {
            let r = Arc::new(MpmcRing::new(2, 1, 0).unwrap().tracked());
            let ghost = (std::process::id() as u64) << 32 | 0xffff_fff0;
            peers::declare_dead(ghost);
            let e = &r.ring().peers[PEERS - 1].0;
            e.owner.store(ghost, SeqCst);
            e.producing.store(0, SeqCst);
            let r1 = r.clone();
            let p = loom::thread::spawn(move || r1.send_copy_until(&[7], None).unwrap());
            // Let the sender run first sometimes: otherwise the recoverer
            // always scans before the claim and the race goes unexplored.
            loom::thread::yield_now();
            assert_eq!(r.recover(), 0);
            let mut b = [0u8; 1];
            assert_eq!(r.recv_copy_until(&mut b, None).unwrap(), 1);
            assert_eq!(b[0], 7);
            p.join().unwrap();
            assert_eq!(r.abandoned().sends, 0, "a live reservation was poisoned");
        });
    }

    /// The same race on the consuming side: a consumer that died after
    /// recording position 0 and lost the CAS on `head` (forged as an
    /// entry), a live consumer that wins it and holds the slot borrowed,
    /// and a recoverer running meanwhile: the live consumer's slot must
    /// never be freed under it. Catches: recording the position after the
    /// claiming CAS instead of before it.
    #[test]
    fn loom_mpmc_dead_losing_consumer_never_frees_a_live_winner() {
        builder().check(|| {
            let r = Arc::new(MpmcRing::new(2, 1, 0).unwrap().tracked());
            put(&r, 7);
            let ghost = (std::process::id() as u64) << 32 | 0xffff_fff0;
            peers::declare_dead(ghost);
            let e = &r.ring().peers[PEERS - 1].0;
            e.owner.store(ghost, SeqCst);
            e.consuming.store(0, SeqCst);
            let r1 = r.clone();
            let rec = loom::thread::spawn(move || r1.recover());
            assert_eq!(take(&r), 7);
            assert_eq!(rec.join().unwrap(), 0);
            assert_eq!(r.abandoned().recvs, 0, "a live borrow was freed");
        });
    }

    /// A consumer dies holding a borrowed slot of a capacity-1 ring; a
    /// producer then finds the ring stopped and recovers it while the
    /// remaining consumer recovers too: the slot is freed exactly once
    /// (the recovery is a CAS on the stamp), the new message arrives, and
    /// nobody sleeps for ever. Catches: a plain store instead of the CAS
    /// in `free_borrowed` (counted twice), and a waiter that does not
    /// recover before it sleeps (loom deadlock).
    #[test]
    fn loom_mpmc_dead_consumer_slot_is_freed_once() {
        builder().check(|| {
            let r = Arc::new(MpmcRing::new(1, 1, 0).unwrap().tracked());
            put(&r, 1);
            let r0 = r.clone();
            loom::thread::spawn(move || {
                let _held = r0.try_claim(|_| Ok(())).unwrap();
                peers::pretend_dead();
            })
            .join()
            .unwrap();
            let r1 = r.clone();
            let p = loom::thread::spawn(move || put(&r1, 2));
            r.recover();
            assert_eq!(take(&r), 2);
            p.join().unwrap();
            assert_eq!(r.abandoned().recvs, 1);
        });
    }

    /// A cancelled reservation is skipped: the consumer gets the message
    /// behind it, and a joinable ring counts only the committed one.
    #[test]
    fn loom_mpmc_cancel_and_task_done() {
        builder().check(|| {
            let r = Arc::new(MpmcRing::new(2, 1, FLAG_JOINABLE).unwrap());
            let r1 = r.clone();
            let p = loom::thread::spawn(move || {
                let s = r1.reserve_until(None).unwrap();
                r1.cancel(s).unwrap();
                put(&r1, 7);
            });
            let r2 = r.clone();
            let c = loom::thread::spawn(move || {
                let v = take(&r2);
                r2.task_done().unwrap();
                v
            });
            r.join_until(None).ok();
            p.join().unwrap();
            assert_eq!(c.join().unwrap(), 7);
            r.join_until(None).unwrap();
            assert_eq!(r.unfinished(), 0);
        });
    }
}
