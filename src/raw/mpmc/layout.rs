//! The ring's bytes: the header lines, the slot headers, their offsets
//! pinned at compile time, and how a ring is placed (`init`), checked
//! (`attach`) or built on the heap (`new`). See the parent module for the
//! table of lines.

use super::*;

/// One cache line holding `T` at its start.
#[repr(C, align(64))]
#[derive(Debug)]
pub(super) struct Line<T>(pub(super) T);

/// The read-mostly first line.
#[repr(C)]
#[derive(Debug)]
pub(super) struct Geometry {
    pub(super) magic: AtomicU32,
    pub(super) flags: AtomicU32,
    pub(super) slot_size: AtomicU32,
    pub(super) stride: AtomicU32,
    pub(super) capacity: AtomicU64,
    pub(super) one_lap: AtomicU64,
    /// A hint, set by `close` after it marked `tail` (which decides): lets
    /// an empty consumer skip reading the producers' `tail` line while the
    /// ring is open.
    pub(super) closed: AtomicU32,
    pub(super) _reserved: AtomicU32,
}

/// The joinable ring's task count and its sleepers.
#[repr(C)]
#[derive(Debug)]
pub(super) struct Tasks {
    /// Tasks counted by senders with no peer entry (untracked, see
    /// `peers`); tracked senders count in their own entry (`Peer::sent`),
    /// so that the recovery can tell whether a dead one counted its send.
    pub(super) untracked_sent: AtomicU64,
    /// `join` sleeps here; `task_done` reaching zero notifies.
    pub(super) all_done: EventCount,
    /// Tasks marked done (`task_done`, and recoveries). The unfinished
    /// count is every entry's `sent` plus `untracked_sent`, less this.
    pub(super) done: AtomicU64,
}

/// The in-place header of a bounded MPMC ring; the slots follow it. See
/// the [module documentation](super) for the layout and the protocol.
///
/// Place one with [`MpmcRing::init`] in memory of
/// [`MpmcRing::bytes_for`] bytes, open it with [`MpmcRing::attach`], or
/// build one on the heap with [`MpmcRing::new`].
#[repr(C)]
#[derive(Debug)]
pub struct MpmcRing {
    pub(super) geo: Line<Geometry>,
    /// Consumers sleep here; commits and `close` notify. A line of its
    /// own: a consumer about to sleep writes it, and that must not evict
    /// the read-mostly geometry line from every producer's cache.
    pub(super) not_empty: Line<EventCount>,
    /// Producers sleep here; releases and `close` notify.
    pub(super) not_full: Line<EventCount>,
    pub(super) tasks: Line<Tasks>,
    pub(super) tail: Line<AtomicU64>,
    /// Intel's spatial prefetcher moves cache lines in aligned pairs: the
    /// producers' and the consumers' positions each get a pair of their
    /// own (crossbeam's `CachePadded` is 128 bytes on x86-64 for the same
    /// reason).
    pub(super) _pair_tail: Line<[u8; 64]>,
    pub(super) head: Line<AtomicU64>,
    pub(super) _pair_head: Line<[u8; 64]>,
    /// Recovery counts (rarely written: only by whoever recovers a slot)
    /// and the untracked-holder count.
    pub(super) stats: Line<Stats>,
    /// One line per (process, thread) that used the ring: what it is
    /// reserving or consuming right now (see `peers`).
    pub(super) peers: [Line<Peer>; PEERS],
}

/// The ring's recovery counts.
#[repr(C)]
#[derive(Debug)]
pub(super) struct Stats {
    /// Reservations of dead producers, poisoned and skipped.
    pub(super) abandoned_sends: AtomicU64,
    /// Borrowed slots of dead consumers, freed (their messages dropped).
    pub(super) abandoned_recvs: AtomicU64,
    /// Slots held right now by holders with no peer entry (table full, or
    /// a second slot held at once): while non-zero nothing is recovered,
    /// since such a holder cannot be told from a dead one.
    pub(super) untracked: AtomicU64,
    /// A hint: entries at or above this index were never claimed (each
    /// claim raises it first), so that summing the task counts reads
    /// only the entries in use. Clamped to the table.
    pub(super) peers_used: AtomicU64,
}

/// The header of one slot; the payload follows it.
#[repr(C)]
#[derive(Debug)]
pub(super) struct SlotHeader {
    pub(super) stamp: AtomicU64,
    pub(super) len: AtomicU32,
    pub(super) _reserved: AtomicU32,
}

#[cfg(not(loom))]
mod assertions {
    use super::*;
    static_assertions::assert_eq_size!(MpmcRing, [u8; 576 + 64 * PEERS]);
    static_assertions::const_assert_eq!(PEERS, 64);
    static_assertions::const_assert_eq!(std::mem::offset_of!(MpmcRing, stats), 512);
    static_assertions::const_assert_eq!(std::mem::offset_of!(MpmcRing, peers), 576);
    static_assertions::assert_eq_size!(Peer, [u8; 56]);
    static_assertions::const_assert_eq!(std::mem::align_of::<MpmcRing>(), 64);
    static_assertions::assert_eq_size!(Geometry, [u8; 40]);
    static_assertions::assert_eq_size!(SlotHeader, [u8; 16]);
    static_assertions::const_assert_eq!(std::mem::offset_of!(MpmcRing, not_empty), 64);
    static_assertions::const_assert_eq!(std::mem::offset_of!(MpmcRing, not_full), 128);
    static_assertions::const_assert_eq!(std::mem::offset_of!(MpmcRing, tasks), 192);
    static_assertions::const_assert_eq!(std::mem::offset_of!(MpmcRing, tail), 256);
    static_assertions::const_assert_eq!(std::mem::offset_of!(MpmcRing, head), 384);
    static_assertions::const_assert_eq!(std::mem::offset_of!(Geometry, closed), 32);
    static_assertions::assert_eq_size!(Tasks, [u8; 24]);
}

/// Bytes of a slot holding `slot_size` payload bytes.
pub(super) fn stride_for(slot_size: usize) -> usize {
    (std::mem::size_of::<SlotHeader>() + slot_size).next_multiple_of(8)
}

/// Twice the smallest power of two above `capacity`: index bits, then one
/// free bit (the closed mark in `tail`), then the lap.
pub(super) fn one_lap_for(capacity: u64) -> u64 {
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
                untracked_sent: AtomicU64::new(0),
                all_done: EventCount::new(),
                done: AtomicU64::new(0),
            }),
            tail: Line(AtomicU64::new(0)),
            _pair_tail: Line([0; 64]),
            head: Line(AtomicU64::new(0)),
            _pair_head: Line([0; 64]),
            stats: Line(Stats {
                abandoned_sends: AtomicU64::new(0),
                abandoned_recvs: AtomicU64::new(0),
                untracked: AtomicU64::new(0),
                peers_used: AtomicU64::new(0),
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

/// A ring on the heap, made by [`MpmcRing::new`]; derefs to its view.
#[derive(Debug)]
pub struct HeapMpmc {
    pub(super) view: MpmcRef,
    pub(super) layout: std::alloc::Layout,
    pub(super) base: NonNull<u8>,
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
