//! [`SpscRing`]: a single-producer single-consumer byte ring of
//! variable-length records, in place in shared memory.
//!
//! ## Layout
//!
//! ```text
//! offset   0  meta line      magic, capacity                 (written once, at init)
//! offset  64  producer line  tail (a hint, see below)        (written by the producer)
//! offset 128  consumer line  head                            (written by the consumer)
//! offset 192  ends line      event counts, closed flags, claimants, in-message
//! offset 256  data           `capacity` bytes of records
//! ```
//!
//! `head` and `tail` are 64-bit byte positions that only grow (no wrap-around
//! within any realistic lifetime: 2^64 bytes at 10 GB/s is 58 years); the
//! offset in the data area is `pos & (capacity - 1)`. Each side keeps its
//! cached copy of the other side's position in its own handle
//! ([`Producer`], [`Consumer`]), not in shared memory: a producer trusts its
//! cached `head` until the ring looks full, and only then re-reads `head`
//! with Acquire; the consumer learns what was published from the record
//! headers themselves (below). Kept in the handle, the caches never leave
//! this CPU's cache and a peer cannot corrupt them.
//!
//! ## Records
//!
//! Each record starts 8-aligned with an 8-byte header word, followed by
//! `len` payload bytes padded to 8. A record never wraps: when one does not
//! fit before the end of the data area, the producer first writes a [`PAD`]
//! header there (its extent is "to the end of the data area") and continues
//! at offset 0. So a record of up to `capacity - 8` payload bytes always
//! fits once the ring drains.
//!
//! | bits   | header word field                                             |
//! |--------|---------------------------------------------------------------|
//! | 0..32  | `len`, payload bytes                                          |
//! | 32..40 | flags (below)                                                 |
//! | 40..64 | lap tag: `(lap mod 2^23) * 2 + 1`, `lap = pos / capacity`; never 0 |
//!
//! A header word is the record's publication: it counts only if its tag is
//! the one of its own position's lap. Before a slot is published it holds
//! either 0 (the producer zeroes the word just past each record it
//! publishes, when that word is free) or, when the ring was exactly full,
//! the header of the record one lap earlier (whose tag is the previous
//! lap's, always different). Nothing else can be there, so stale payload
//! bytes are never taken for a header. Format version 2 (magic
//! `shmspsc2`): version 1 had no tag and published through `tail` alone.
//!
//! | flag            | meaning                                                      |
//! |-----------------|--------------------------------------------------------------|
//! | [`PAD`]         | no payload; skip to the next lap (never at offset 0)         |
//! | [`FIRST`]       | first fragment of a long message: payload = total `u64` + bytes |
//! | [`MORE`]        | more fragments of this message follow                        |
//! | [`ABORT`]       | the fragmented message in progress is abandoned              |
//!
//! The ring itself only carries records; the fragment flags are for the
//! layer above ([`Connection`](crate::Connection)), which defines them.
//!
//! ## Publish and consume (SYNC POINTs)
//!
//! The producer writes the payload and zeroes the word just past the
//! record (if free), then stores the tagged header word with Release; the
//! consumer polls the header word at its `head` with Acquire, so a message
//! moves the record's own cache line and nothing else (Aeron and FastFlow
//! poll the slot the same way). The producer then stores `tail` with
//! Release as well: it is a hint for [`Producer`] takeover, the debug view
//! and the attach checks, never read on the consumer's fast path (an
//! unread store keeps its line in the producer's cache and costs no
//! traffic). The consumer stores `head` with Release after it has finished
//! reading a record; the producer loads `head` with Acquire (only when its
//! cached copy says the ring is full) before overwriting the space below
//! it. After each publish the publisher calls `Wake::notify` on the other
//! side's event count, which costs a compiler barrier (or a fence) and a
//! load unless the other side announced that it sleeps; the sleeper's
//! re-check reads the header word (or `head`), the location published.
//!
//! A producer that dies between a header and the `tail` hint leaves the
//! hint one record behind (the consumer may already be past it): attach
//! accepts `head` and `tail` up to `capacity` apart either way, and a new
//! producer walks forward from the hint over correctly tagged records
//! (bounded by `head + capacity`) to the real frontier.
//!
//! ## Trust
//!
//! Everything read from shared memory is checked before use: the magic and
//! capacity at attach (the handle keeps its own copy of the capacity), that
//! positions are multiples of 8, below 2^62 and at most `capacity` apart,
//! that a refreshed `head` only moves forward and stays below `tail`, and
//! that every record header carries known flags and describes a record
//! inside the data area. A header with a foreign tag reads as "not
//! published yet". A violation is
//! [`Error::Corrupt`]: never an out-of-bounds access, a panic, or a loop
//! without a bound.

use super::sync::{fence, futex_wait, futex_wake, AtomicU32, AtomicU64, Ordering::*};
use crate::sys::clock::Deadline;
use crate::sys::membarrier;
use crate::{Error, Result};

/// Header flag: padding to the end of the data area (wrap marker).
pub const PAD: u32 = 1;
/// Header flag: first fragment of a long message; the payload starts with
/// the message's total length as a little-endian `u64`.
pub const FIRST: u32 = 2;
/// Header flag: more fragments of the same message follow.
pub const MORE: u32 = 4;
/// Header flag: the fragmented message in progress is abandoned.
pub const ABORT: u32 = 8;
const KNOWN_FLAGS: u32 = PAD | FIRST | MORE | ABORT;

/// The in-place format version (see the module docs: 2 tags headers).
pub const FORMAT_VERSION: u8 = 2;
/// "shmspsc2": the last byte is [`FORMAT_VERSION`] in ASCII.
const MAGIC: u64 = u64::from_le_bytes(*b"shmspsc2");
/// Bits of the header word holding the flags, then the lap tag.
const FLAGS_SHIFT: u32 = 32;
const TAG_SHIFT: u32 = 40;
const FLAGS_MASK: u64 = 0xFF;
/// Smallest data area, in bytes.
pub const MIN_CAPACITY: usize = 256;
/// Largest data area, in bytes (a record length is 32 bits).
pub const MAX_CAPACITY: usize = 1 << 31;
/// Bytes of a record header.
pub const RECORD_HEADER: usize = 8;
/// Positions found at attach above this are garbage (2^62 bytes: 14 years
/// at 10 GB/s); below it, no position arithmetic can overflow.
const MAX_POSITION: u64 = 1 << 62;

#[repr(C, align(64))]
struct Meta {
    magic: AtomicU64,
    capacity: AtomicU64,
}

#[repr(C, align(64))]
struct ProducerLine {
    /// Bytes ever published. Written by the producer only (Release).
    tail: AtomicU64,
}

#[repr(C, align(64))]
struct ConsumerLine {
    /// Bytes ever consumed. Written by the consumer only (Release).
    head: AtomicU64,
}

/// Rarely written: sleepers, close and claim. Read on every publish (the
/// event counts' sleeper words) and every send (the reader's closed flag),
/// so it stays shared in both caches.
#[repr(C, align(64))]
struct Ends {
    /// The consumer sleeps here for data; the producer notifies.
    data_ready: Wake,
    /// The producer sleeps here for space; the consumer notifies.
    space_ready: Wake,
    /// Non-zero once the producer's end closed.
    writer_closed: AtomicU32,
    /// Non-zero once the consumer's end closed.
    reader_closed: AtomicU32,
    /// Claimant of the producer's end: low 32 bits the pid (0 =
    /// unclaimed), high 32 bits a count of claims (so a reader can tell
    /// that the record changed and changed back); and the start time.
    writer_pid: AtomicU64,
    writer_start: AtomicU64,
    /// Claimant of the consumer's end.
    reader_pid: AtomicU64,
    reader_start: AtomicU64,
    /// Non-zero while the consumer is inside a fragmented message (the
    /// layer above's state, kept here so that a consumer taking the end
    /// over knows to skip the rest of that message).
    reader_in_message: AtomicU32,
}

/// The claim word after `cur` for `pid`: the pid in the low half, the
/// claim count (wrapping) in the high half.
fn next_claim(cur: u64, pid: u32) -> u64 {
    (((cur >> 32) as u32).wrapping_add(1) as u64) << 32 | pid as u64
}

/// An event count with an asymmetric fence: "sleep until changed" for one
/// side of a ring. 8 bytes; all-zero is the initial state; any bits are
/// safe (at worst they cost a needless wake-up call).
///
/// Waiter: `sleepers += 1`, full fence, then [`membarrier::heavy_barrier`]
/// (every running thread of a registered process executes a full barrier),
/// read `seq` (the key), re-check the condition, `FUTEX_WAIT(seq, key)`,
/// `sleepers -= 1`. Notifier (after publishing): a full fence, or only a
/// compiler barrier if this process is registered for `membarrier` (then
/// the waiter's heavy barrier stands in for it); if `sleepers != 0`,
/// `seq += 1` and `FUTEX_WAKE`. SYNC POINT: the Dekker pair "announce, then
/// re-check" against "publish, then look for sleepers": either the notifier
/// sees the announcement, or the waiter's re-check sees the publication.
/// Without `membarrier` (other kernels, loom, Miri) both sides use full
/// fences, exactly as [`EventCount`](super::EventCount) does.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Wake {
    /// Bumped by notifiers that saw a sleeper; the futex word.
    seq: AtomicU32,
    /// Waiters between `prepare` and the end of their wait.
    sleepers: AtomicU32,
}

/// What [`Wake::prepare`] read: the futex value to sleep on, and whether
/// the heavy barrier was issued (if not, a light notifier may be missed, so
/// the waiter must sleep in short slices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a prepared waiter must wait or cancel, or `sleepers` stays raised"]
pub(crate) struct WakeKey {
    seq: u32,
    covered: bool,
}

impl WakeKey {
    /// Whether every notifier, light or not, is sure to see this waiter.
    pub(crate) fn covered(&self) -> bool {
        self.covered
    }
}

impl Wake {
    fn new() -> Wake {
        Wake {
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Announces a waiter. Re-check the condition after this, then
    /// [`wait`](Self::wait) or [`cancel`](Self::cancel).
    #[inline]
    pub(crate) fn prepare(&self) -> WakeKey {
        self.sleepers.fetch_add(1, Relaxed);
        fence(SeqCst); // SYNC POINT: pairs with the fence (or the light
                       // notifier's compiler barrier + our heavy barrier).
        let covered = !cfg!(loom) && membarrier::heavy_barrier();
        WakeKey {
            seq: self.seq.load(Acquire),
            covered,
        }
    }

    /// Withdraws an announcement.
    #[inline]
    pub(crate) fn cancel(&self, _key: WakeKey) {
        self.sleepers.fetch_sub(1, Relaxed);
    }

    /// Sleeps until notified after `key` was taken, or until `until`
    /// ([`Error::Timeout`]). May return early. Ends the announcement.
    pub(crate) fn wait(&self, key: WakeKey, until: Option<Deadline>) -> Result<()> {
        let r = futex_wait(&self.seq, key.seq, until);
        self.sleepers.fetch_sub(1, Relaxed);
        r
    }

    /// Wakes up to `n` sleepers, if any announced themselves; call it after
    /// publishing. A registered process pays a compiler barrier and a load.
    #[inline]
    pub(crate) fn notify(&self, n: u32) {
        if !cfg!(loom) && membarrier::registered() {
            std::sync::atomic::compiler_fence(SeqCst);
        } else {
            fence(SeqCst);
        }
        if self.sleepers.load(Relaxed) != 0 {
            self.notify_slow(n);
        }
    }

    /// Wakes every sleeper (full fence: for the rare close).
    pub(crate) fn notify_all(&self) {
        fence(SeqCst);
        if self.sleepers.load(Relaxed) != 0 {
            self.notify_slow(u32::MAX);
        }
    }

    #[cold]
    fn notify_slow(&self, n: u32) {
        self.seq.fetch_add(1, Release);
        futex_wake(&self.seq, n.min(i32::MAX as u32));
    }
}

/// The control block of a single-producer single-consumer byte ring; the
/// data area (`capacity` bytes) follows it directly in memory.
///
/// It is `#[repr(C)]`, 256 bytes, 64-aligned, holds no pointers, and is
/// valid at any address in any process that maps it: embedders may place
/// one in their own mapping with [`SpscRing::init`] and reach it with
/// [`SpscRing::attach`]. [`SpscRing::new`] builds one on the heap (tests,
/// loom, Miri). See the [module documentation](self) for the protocol.
#[repr(C, align(64))]
pub struct SpscRing {
    meta: Meta,
    prod: ProducerLine,
    cons: ConsumerLine,
    ends: Ends,
}

#[cfg(not(loom))]
mod layout {
    use super::*;
    use static_assertions::const_assert_eq;
    use std::mem::{align_of, offset_of, size_of};
    const_assert_eq!(size_of::<SpscRing>(), 256);
    const_assert_eq!(align_of::<SpscRing>(), 64);
    const_assert_eq!(offset_of!(SpscRing, prod), 64);
    const_assert_eq!(offset_of!(SpscRing, cons), 128);
    const_assert_eq!(offset_of!(SpscRing, ends), 192);
    const_assert_eq!(offset_of!(Ends, space_ready), 8);
    const_assert_eq!(offset_of!(Ends, writer_closed), 16);
    const_assert_eq!(offset_of!(Ends, writer_pid), 24);
    const_assert_eq!(offset_of!(Ends, reader_start), 48);
    const_assert_eq!(offset_of!(Ends, reader_in_message), 56);
    // Format version 2: tagged record headers (module docs).
    const_assert_eq!(FORMAT_VERSION, 2);
    const_assert_eq!(MAGIC, u64::from_le_bytes(*b"shmspsc2"));
    const_assert_eq!(FLAGS_SHIFT, 32);
    const_assert_eq!(TAG_SHIFT, 40);
    const_assert_eq!(KNOWN_FLAGS as u64 & !FLAGS_MASK, 0);
}

/// Which end of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The producer (writer).
    Writer,
    /// The consumer (reader).
    Reader,
}

/// Size in bytes of one word of the data area as laid out in memory: a
/// byte per byte normally; under loom each 8-byte word is a loom atomic.
#[cfg(not(loom))]
const fn data_bytes(capacity: usize) -> usize {
    capacity
}
#[cfg(loom)]
fn data_bytes(capacity: usize) -> usize {
    capacity / 8 * std::mem::size_of::<AtomicU64>()
}

fn check_capacity(capacity: u64) -> Result<()> {
    if capacity.is_power_of_two()
        && capacity >= MIN_CAPACITY as u64
        && capacity <= MAX_CAPACITY as u64
    {
        Ok(())
    } else {
        Err(Error::Corrupt(
            "ring capacity is not a power of two in range",
        ))
    }
}

impl SpscRing {
    /// Bytes the control block takes before the data area.
    pub const CONTROL_SIZE: usize = std::mem::size_of::<SpscRing>();

    /// Bytes a ring of `capacity` data bytes spans (control block + data),
    /// or `InvalidArgument` unless `capacity` is a power of two between
    /// [`MIN_CAPACITY`] and [`MAX_CAPACITY`].
    pub fn region_size(capacity: usize) -> Result<usize> {
        check_capacity(capacity as u64).map_err(|_| {
            Error::InvalidArgument("ring capacity must be a power of two, 256 B to 2 GiB")
        })?;
        Ok(Self::CONTROL_SIZE + data_bytes(capacity))
    }

    /// The largest record payload a ring of `capacity` bytes can carry.
    pub const fn max_payload(capacity: usize) -> usize {
        capacity - RECORD_HEADER
    }

    /// Initialises a ring of `capacity` data bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` is 64-aligned, valid for writes of
    /// [`region_size(capacity)`](Self::region_size) bytes, and nobody else
    /// uses that memory until this returns.
    pub unsafe fn init(ptr: *mut u8, capacity: usize) -> Result<()> {
        let size = Self::region_size(capacity)?;
        debug_assert_eq!(ptr as usize % 64, 0, "SpscRing::init: ptr not 64-aligned");
        if ptr as usize % 64 != 0 {
            return Err(Error::InvalidArgument("ring memory is not 64-aligned"));
        }
        let _ = size;
        let ring = SpscRing {
            meta: Meta {
                magic: AtomicU64::new(MAGIC),
                capacity: AtomicU64::new(capacity as u64),
            },
            prod: ProducerLine {
                tail: AtomicU64::new(0),
            },
            cons: ConsumerLine {
                head: AtomicU64::new(0),
            },
            ends: Ends {
                data_ready: Wake::new(),
                space_ready: Wake::new(),
                writer_closed: AtomicU32::new(0),
                reader_closed: AtomicU32::new(0),
                writer_pid: AtomicU64::new(0),
                writer_start: AtomicU64::new(0),
                reader_pid: AtomicU64::new(0),
                reader_start: AtomicU64::new(0),
                reader_in_message: AtomicU32::new(0),
            },
        };
        // SAFETY: the caller gives us `size` writable, aligned, unshared
        // bytes at `ptr`; the control block is the first CONTROL_SIZE.
        unsafe { ptr.cast::<SpscRing>().write(ring) };
        // The first header slot reads "not published" (a zero word).
        #[cfg(not(loom))]
        // SAFETY: the data area follows the control block, 64-aligned and
        // at least MIN_CAPACITY bytes, inside the caller's `size` bytes.
        unsafe {
            ptr.add(Self::CONTROL_SIZE).cast::<u64>().write(0)
        };
        #[cfg(loom)]
        for i in 0..capacity / 8 {
            // SAFETY: the data area follows, `capacity / 8` loom atomics.
            unsafe {
                ptr.add(Self::CONTROL_SIZE)
                    .cast::<AtomicU64>()
                    .add(i)
                    .write(AtomicU64::new(0))
            };
        }
        Ok(())
    }

    /// Reaches the ring at `ptr` in a region of `len` bytes, validating its
    /// magic and capacity (garbage gives [`Error::Corrupt`]).
    ///
    /// # Safety
    ///
    /// `ptr` is 64-aligned and valid for reads and writes of `len` bytes for
    /// `'a`, and every process that writes there goes through this type's
    /// atomics (or is considered hostile: its garbage is detected, not UB,
    /// as long as it stays inside the region).
    pub unsafe fn attach<'a>(ptr: *mut u8, len: usize) -> Result<Ring<'a>> {
        if ptr as usize % 64 != 0 {
            return Err(Error::InvalidArgument("ring memory is not 64-aligned"));
        }
        if len < Self::CONTROL_SIZE {
            return Err(Error::Corrupt("ring region smaller than its control block"));
        }
        // SAFETY: aligned, in bounds (len >= CONTROL_SIZE), valid for 'a; the
        // struct is atomics only, so any bit pattern is a valid value.
        let ctl = unsafe { &*ptr.cast::<SpscRing>() };
        let magic = ctl.meta.magic.load(Acquire);
        if magic != MAGIC {
            // Another format of this ring ("shmspsc" and a version digit)
            // is a version mismatch, not corruption: mixed builds say so.
            let bytes = magic.to_le_bytes();
            if bytes[..7] == MAGIC.to_le_bytes()[..7] && bytes[7].is_ascii_digit() {
                return Err(Error::VersionMismatch {
                    found: u32::from(bytes[7] - b'0'),
                    expected: u32::from(MAGIC.to_le_bytes()[7] - b'0'),
                });
            }
            return Err(Error::Corrupt("ring magic"));
        }
        let cap = ctl.meta.capacity.load(Relaxed);
        check_capacity(cap)?;
        if data_bytes(cap as usize) > len - Self::CONTROL_SIZE {
            return Err(Error::Corrupt("ring capacity exceeds its region"));
        }
        Ok(Ring {
            ctl,
            // SAFETY: CONTROL_SIZE <= len: still inside the region.
            data: unsafe { ptr.add(Self::CONTROL_SIZE) },
            cap,
        })
    }

    /// A ring of `capacity` data bytes on the heap (the crate's `new()`
    /// convention for in-place types: heap-backed, for tests, loom and Miri;
    /// the control block cannot be returned by value without its data area).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(capacity: usize) -> Result<HeapRing> {
        let size = Self::region_size(capacity)?;
        let layout = std::alloc::Layout::from_size_align(size, 64)
            .map_err(|_| Error::InvalidArgument("ring too large"))?;
        // SAFETY: the layout has a non-zero size (>= 256 + 256).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: fresh, aligned, `size` bytes, ours alone.
        unsafe { Self::init(ptr, capacity)? };
        Ok(HeapRing {
            ptr,
            layout,
            capacity,
        })
    }
}

/// A ring on the heap, from [`SpscRing::new`].
pub struct HeapRing {
    ptr: *mut u8,
    layout: std::alloc::Layout,
    capacity: usize,
}

// SAFETY: the memory is owned by this value and reached through atomics
// and the ring's protocol only; the raw pointer is what keeps it `!Send`.
unsafe impl Send for HeapRing {}
// SAFETY: as for Send: every shared access goes through atomics, and
// `Producer`/`Consumer` (unsafe to make) carry the SPSC contract.
unsafe impl Sync for HeapRing {}

impl HeapRing {
    /// The ring.
    pub fn ring(&self) -> Ring<'_> {
        // SAFETY: initialised by `new`, aligned, `layout.size()` bytes
        // valid while `self` lives.
        unsafe { SpscRing::attach(self.ptr, self.layout.size()) }
            .expect("a heap ring is valid by construction")
    }

    /// Its data capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Drop for HeapRing {
    fn drop(&mut self) {
        #[cfg(loom)]
        // SAFETY: the loom atomics written by `init` are dropped once here.
        unsafe {
            std::ptr::drop_in_place(self.ptr.cast::<SpscRing>());
            let words = self.ptr.add(SpscRing::CONTROL_SIZE).cast::<AtomicU64>();
            for i in 0..self.capacity / 8 {
                std::ptr::drop_in_place(words.add(i));
            }
        }
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

impl std::fmt::Debug for HeapRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeapRing")
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// A validated view of a ring: its control block, its data area, and the
/// capacity read once at attach (later changes by a peer are ignored).
#[derive(Clone, Copy)]
pub struct Ring<'a> {
    ctl: &'a SpscRing,
    data: *mut u8,
    cap: u64,
}

// SAFETY: the view is a shared reference plus the address of the data
// area, which is reached only under the SPSC protocol (`Producer` and
// `Consumer` are unsafe to make).
unsafe impl Send for Ring<'_> {}
// SAFETY: as for Send.
unsafe impl Sync for Ring<'_> {}

impl std::fmt::Debug for Ring<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.cap)
            .field("head", &self.ctl.cons.head.load(Relaxed))
            .field("tail", &self.ctl.prod.tail.load(Relaxed))
            .finish()
    }
}

impl<'a> Ring<'a> {
    /// This view's identity, stamped on grants and records: the control
    /// block's address.
    #[inline]
    fn id(&self) -> usize {
        self.ctl as *const SpscRing as usize
    }

    /// Data bytes.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// The largest record payload this ring carries.
    pub fn max_payload(&self) -> usize {
        self.cap as usize - RECORD_HEADER
    }

    /// The producer's side.
    ///
    /// # Safety
    ///
    /// At most one `Producer` of this ring is used at a time, in all
    /// processes together.
    pub unsafe fn producer(self) -> Result<Producer<'a>> {
        // Acquire: the walk below must see every header published up to
        // the hint (a takeover may come after the previous producer died).
        let hint = self.ctl.prod.tail.load(Acquire);
        let mut tail = hint;
        let head = self.ctl.cons.head.load(Acquire);
        // `tail` is a hint stored after each header: a producer that died
        // between the two left it one record behind, and the consumer may
        // have gone past it already.
        if (head | tail) % 8 != 0
            || tail > MAX_POSITION
            || head > MAX_POSITION
            || tail.abs_diff(head) > self.cap
        {
            return Err(Error::Corrupt("ring positions"));
        }
        // Walk over records published past the hint (bounded: each step
        // advances, and the walk stops at a full ring). The frontier's word
        // is 0 or the previous lap's header: it stops there.
        let mask = self.cap - 1;
        for _ in 0..=self.cap / 8 {
            if tail >= head + self.cap {
                break;
            }
            let off = tail & mask;
            let word = self.word(off).load(Acquire);
            if word >> TAG_SHIFT != lap_tag(tail, self.cap) {
                break;
            }
            let size = record_extent(word, off, self.cap)?;
            if tail + size > head + self.cap {
                return Err(Error::Corrupt("record beyond the consumer's head"));
            }
            tail += size;
        }
        if head > tail {
            return Err(Error::Corrupt("ring positions"));
        }
        if tail != hint {
            self.ctl.prod.tail.store(tail, Release);
        }
        Ok(Producer {
            ring: self,
            tail,
            head,
        })
    }

    /// The consumer's side.
    ///
    /// # Safety
    ///
    /// At most one `Consumer` of this ring is used at a time, in all
    /// processes together.
    pub unsafe fn consumer(self) -> Result<Consumer<'a>> {
        // Acquire: a consumer taking an end over must see the producer's
        // zero-ahead at `head`, which the previous consumer's release of
        // the record before it happened after.
        let head = self.ctl.cons.head.load(Acquire);
        let tail = self.ctl.prod.tail.load(Acquire);
        // The `tail` hint may lag one record behind `head` (see `producer`).
        if (head | tail) % 8 != 0
            || tail > MAX_POSITION
            || head > MAX_POSITION
            || tail.abs_diff(head) > self.cap
        {
            return Err(Error::Corrupt("ring positions"));
        }
        Ok(Consumer {
            ring: self,
            head,
            tail: tail.max(head),
        })
    }

    /// Marks `role`'s end closed and wakes every sleeper on both sides.
    pub fn close(&self, role: Role) {
        let e = &self.ctl.ends;
        match role {
            Role::Writer => e.writer_closed.store(1, Release),
            Role::Reader => e.reader_closed.store(1, Release),
        }
        e.data_ready.notify_all();
        e.space_ready.notify_all();
    }

    /// Whether `role`'s end was closed.
    #[inline]
    pub fn is_closed(&self, role: Role) -> bool {
        let e = &self.ctl.ends;
        match role {
            Role::Writer => e.writer_closed.load(Acquire) != 0,
            Role::Reader => e.reader_closed.load(Acquire) != 0,
        }
    }

    fn claim_words(&self, role: Role) -> (&AtomicU64, &AtomicU64) {
        let e = &self.ctl.ends;
        match role {
            Role::Writer => (&e.writer_pid, &e.writer_start),
            Role::Reader => (&e.reader_pid, &e.reader_start),
        }
    }

    /// Records (`pid`, `start`) as `role`'s claimant. With `exclusive`, only
    /// an unclaimed end is taken ([`Error::AlreadyClaimed`] otherwise);
    /// without, the record is overwritten (an end handed down by `fork`).
    ///
    /// The start time is cleared before the pid changes and written after
    /// it, so a reader never pairs the new pid with the old start time
    /// (see [`claimant`](Self::claimant)).
    pub fn claim(&self, role: Role, pid: u32, start: u64, exclusive: bool) -> Result<()> {
        let (p, s) = self.claim_words(role);
        if exclusive {
            let cur = p.load(Acquire);
            if cur as u32 != 0
                || p.compare_exchange(cur, next_claim(cur, pid), AcqRel, Acquire)
                    .is_err()
            {
                return Err(Error::AlreadyClaimed);
            }
        } else {
            s.store(0, Release);
            let cur = p.load(Acquire);
            p.store(next_claim(cur, pid), Release);
        }
        s.store(start, Release);
        Ok(())
    }

    /// Clears `role`'s claim (undoing a half-done claim of several ends).
    pub fn unclaim(&self, role: Role) {
        let (p, s) = self.claim_words(role);
        s.store(0, Relaxed);
        let cur = p.load(Acquire);
        p.store(next_claim(cur, 0), Release);
    }

    /// `role`'s claimant: `(pid, start)`, pid 0 if unclaimed. The start
    /// reads 0 (unknown: check the pid only) while a claim is being made.
    ///
    /// The pair is consistent: claim word, start, claim word again are
    /// loaded (the word counts claims, so a record that changed and changed
    /// back is seen to differ), and the loads are retried while the two differ (a re-claim seen
    /// half-way, which [`claim`](Self::claim) orders as start 0, pid,
    /// start). After a few changing rounds the start is reported as 0.
    pub fn claimant(&self, role: Role) -> (u32, u64) {
        let (p, s) = self.claim_words(role);
        let mut word = p.load(Acquire);
        for _ in 0..4 {
            let start = s.load(Acquire);
            let again = p.load(Acquire);
            // The claim count in the high half makes "changed and changed
            // back" (pid A, then B, then A again) compare unequal.
            if again == word {
                return (word as u32, start);
            }
            word = again;
        }
        (word as u32, 0)
    }

    /// `role`'s claimant pid alone (0 if unclaimed): one load.
    #[inline]
    pub fn claimant_pid(&self, role: Role) -> u32 {
        // The low half of the claim word (the high half counts claims).
        self.claim_words(role).0.load(Acquire) as u32
    }

    /// Whether the consumer recorded that it is inside a fragmented
    /// message (see [`set_in_message`](Self::set_in_message)).
    pub fn in_message(&self) -> bool {
        self.ctl.ends.reader_in_message.load(Acquire) != 0
    }

    /// Records, for a consumer that may take this end over, whether the
    /// consumer is inside a fragmented message. Written by the consumer only.
    pub fn set_in_message(&self, yes: bool) {
        self.ctl.ends.reader_in_message.store(yes as u32, Release);
    }

    #[inline]
    pub(crate) fn data_ready(&self) -> &'a Wake {
        &self.ctl.ends.data_ready
    }

    #[inline]
    pub(crate) fn space_ready(&self) -> &'a Wake {
        &self.ctl.ends.space_ready
    }

    /// The header word at data offset `off` (8-aligned, `off + 8 <= cap`).
    #[inline]
    fn word(&self, off: u64) -> &'a AtomicU64 {
        debug_assert!(off % 8 == 0 && off + 8 <= self.cap);
        #[cfg(not(loom))]
        // SAFETY: `off` is 8-aligned and `off + 8 <= cap` (callers), the data
        // area is 64-aligned and `cap` bytes long (attach); an AtomicU64 is
        // valid for any bits.
        unsafe {
            &*self.data.add(off as usize).cast::<AtomicU64>()
        }
        #[cfg(loom)]
        // SAFETY: under loom the data area is `cap / 8` loom atomics.
        unsafe {
            &*self.data.cast::<AtomicU64>().add(off as usize / 8)
        }
    }

    /// Copies `src` into the data area at `off` (inside a reserved record).
    #[inline]
    fn copy_in(&self, off: u64, src: &[u8]) {
        debug_assert!(off + src.len() as u64 <= self.cap);
        #[cfg(not(loom))]
        // SAFETY: `[off, off + len)` lies inside the data area and inside a
        // record the producer reserved: nobody else reads or writes it now.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.data.add(off as usize), src.len())
        };
        #[cfg(loom)]
        for (i, chunk) in src.chunks(8).enumerate() {
            debug_assert!(off % 8 == 0);
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.word(off + 8 * i as u64)
                .store(u64::from_le_bytes(w), Relaxed);
        }
    }

    /// Copies from the data area at `off` into `dst` (inside a published
    /// record).
    #[inline]
    fn copy_out(&self, off: u64, dst: &mut [u8]) {
        debug_assert!(off + dst.len() as u64 <= self.cap);
        #[cfg(not(loom))]
        // SAFETY: `[off, off + len)` lies inside the data area and inside a
        // published, unreleased record: the producer does not write it now.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data.add(off as usize), dst.as_mut_ptr(), dst.len())
        };
        #[cfg(loom)]
        for (i, chunk) in dst.chunks_mut(8).enumerate() {
            debug_assert!(off % 8 == 0);
            let w = self.word(off + 8 * i as u64).load(Relaxed).to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
    }
}

/// Bytes a record with `len` payload bytes spans, header included.
#[inline]
pub const fn record_size(len: u64) -> u64 {
    RECORD_HEADER as u64 + ((len + 7) & !7)
}

/// The lap tag of a header at `pos` in a ring of `cap` bytes (a power of
/// two): odd, so never 0, and different for consecutive laps.
#[inline]
fn lap_tag(pos: u64, cap: u64) -> u64 {
    (((pos >> cap.trailing_zeros()) & 0x7F_FFFF) << 1) | 1
}

/// The header word of a record (or padding) at `pos`.
#[inline]
fn header_word(pos: u64, cap: u64, len: u32, flags: u32) -> u64 {
    (lap_tag(pos, cap) << TAG_SHIFT) | ((flags as u64) << FLAGS_SHIFT) | len as u64
}

/// Bytes the record whose (correctly tagged) header `word` sits at data
/// offset `off` spans: padding to the end of the data area, or header and
/// payload. `Corrupt` for unknown flags, malformed padding, or a record
/// crossing the end of the data area.
#[inline]
fn record_extent(word: u64, off: u64, cap: u64) -> Result<u64> {
    let (len, flags) = (word as u32, ((word >> FLAGS_SHIFT) & FLAGS_MASK) as u32);
    if flags & !KNOWN_FLAGS != 0 {
        return Err(Error::Corrupt("unknown record flags"));
    }
    if flags & PAD != 0 {
        if flags != PAD || len != 0 || off == 0 {
            return Err(Error::Corrupt("bad padding record"));
        }
        return Ok(cap - off);
    }
    let need = record_size(len as u64);
    if off + need > cap {
        return Err(Error::Corrupt("record crosses the end of the data area"));
    }
    Ok(need)
}

/// Space reserved by [`Producer::try_reserve`], not yet published.
///
/// Neither `Copy` nor `Clone`: [`Producer::commit`] consumes it. The
/// producer checks every grant it is handed (that it was made for this
/// ring, is the current reservation and lies inside the data area), so a
/// grant of another ring or a stale one is [`Error::InvalidArgument`],
/// never a write out of bounds or over a published record.
#[derive(Debug, PartialEq, Eq)]
pub struct Grant {
    /// The ring it was made for (its control block's address).
    ring: usize,
    pos: u64,
    off: u64,
    len: u32,
    flags: u32,
}

impl Grant {
    /// Payload bytes reserved.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The header flags the record will carry.
    pub fn flags(&self) -> u32 {
        self.flags
    }
}

/// A published record found by [`Consumer::try_peek`], not yet released.
///
/// Neither `Copy` nor `Clone`: [`Consumer::release`] consumes it. The
/// consumer checks every record it is handed (made for this ring, the
/// current record, inside what was published), so a foreign or stale
/// record is [`Error::InvalidArgument`], never an access out of bounds.
#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    /// The ring it was found in (its control block's address).
    ring: usize,
    pos: u64,
    off: u64,
    len: u32,
    flags: u32,
}

impl Record {
    /// Payload bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Header flags (never [`PAD`]: the consumer skips padding).
    pub fn flags(&self) -> u32 {
        self.flags
    }
}

/// The producer's side of a ring. Its cached `head` lives here.
#[derive(Debug)]
pub struct Producer<'a> {
    ring: Ring<'a>,
    tail: u64,
    head: u64,
}

impl<'a> Producer<'a> {
    /// The ring.
    pub fn ring(&self) -> Ring<'a> {
        self.ring
    }

    #[inline]
    fn free(&self) -> u64 {
        self.ring.cap - (self.tail - self.head)
    }

    /// SYNC POINT (consumer's Release store of `head` in `release`): after
    /// this Acquire load the space below `head` is no longer read.
    #[inline]
    fn refresh_head(&mut self) -> Result<()> {
        let h = self.ring.ctl.cons.head.load(Acquire);
        if h < self.head || h > self.tail || h % 8 != 0 {
            return Err(Error::Corrupt("ring head moved backwards or past tail"));
        }
        self.head = h;
        Ok(())
    }

    /// Publishes the record (or padding) of `size` bytes at the current
    /// tail whose header is `word`; the caller then wakes the consumer.
    ///
    /// SYNC POINT (pairs with the consumer's Acquire load of the header in
    /// `try_peek`): the payload, and the zero written just past the record,
    /// happen before the header. The zero makes the next slot read "not
    /// published" whatever the previous lap left there; when that word is
    /// not free (the ring is exactly full) it holds the previous lap's
    /// header at the cached `head`, whose tag differs.
    #[inline]
    fn publish(&mut self, size: u64, word: u64) {
        let mask = self.ring.cap - 1;
        let end = self.tail + size;
        if end + RECORD_HEADER as u64 - self.head <= self.ring.cap {
            self.ring.word(end & mask).store(0, Relaxed);
        }
        self.ring.word(self.tail & mask).store(word, Release);
        self.tail = end;
        crate::fault::fault_point!("spsc.write.before_hint");
        // A hint (takeover, attach checks): not on the consumer's path.
        self.ring.ctl.prod.tail.store(end, Release);
    }

    /// Reserves a record of `len` payload bytes with header `flags`, or
    /// `Ok(None)` if the ring has no room now. Writes (and publishes) a
    /// padding record first if the record would cross the end of the data
    /// area. [`Error::MessageTooLarge`] if it could never fit.
    pub fn try_reserve(&mut self, len: usize, flags: u32) -> Result<Option<Grant>> {
        if len > self.ring.max_payload() {
            return Err(Error::MessageTooLarge {
                size: len,
                max: self.ring.max_payload(),
            });
        }
        if flags & (PAD | !KNOWN_FLAGS) != 0 {
            return Err(Error::InvalidArgument("bad record flags"));
        }
        let need = record_size(len as u64);
        let mask = self.ring.cap - 1;
        // At most: one padding record, then the record itself.
        for _ in 0..2 {
            let off = self.tail & mask;
            if off + need > self.ring.cap {
                let pad = self.ring.cap - off;
                if self.free() < pad {
                    self.refresh_head()?;
                    if self.free() < pad {
                        return Ok(None);
                    }
                }
                let word = header_word(self.tail, self.ring.cap, 0, PAD);
                self.publish(pad, word);
                self.ring.data_ready().notify(1);
                continue;
            }
            if self.free() < need {
                self.refresh_head()?;
                if self.free() < need {
                    return Ok(None);
                }
            }
            crate::fault::fault_point!("spsc.write.reserved");
            return Ok(Some(Grant {
                ring: self.ring.id(),
                pos: self.tail,
                off,
                len: len as u32,
                flags,
            }));
        }
        Ok(None) // unreachable: after padding, off == 0 and need <= cap
    }

    /// Checks that `g` is this producer's current reservation: made for
    /// this ring, at the current tail, inside the data area, and inside the
    /// space known free. Anything else is `InvalidArgument`.
    #[inline]
    fn check(&self, g: &Grant) -> Result<()> {
        let need = record_size(g.len as u64);
        if g.ring != self.ring.id()
            || g.pos != self.tail
            || g.off != g.pos & (self.ring.cap - 1)
            || g.off + need > self.ring.cap
            || g.pos + need - self.head > self.ring.cap
        {
            return Err(Error::InvalidArgument(
                "not this producer's current reservation",
            ));
        }
        Ok(())
    }

    /// Copies `src` into `g`'s payload at byte `at` (`at` a multiple of 8,
    /// `at + src.len() <= g.len()`, else `InvalidArgument`; also
    /// `InvalidArgument` if `g` is not this producer's current reservation).
    pub fn write(&mut self, g: &Grant, at: usize, src: &[u8]) -> Result<()> {
        self.check(g)?;
        if at % 8 != 0
            || at
                .checked_add(src.len())
                .map_or(true, |e| e > g.len as usize)
        {
            return Err(Error::InvalidArgument("write outside the reserved record"));
        }
        self.write_checked(g, at, src);
        Ok(())
    }

    /// `write` once `g` and the range are known good.
    #[inline]
    fn write_checked(&mut self, g: &Grant, at: usize, src: &[u8]) {
        let base = g.off + RECORD_HEADER as u64 + at as u64;
        #[cfg(feature = "fault-injection")]
        {
            // Two halves, so that a fault test can stop in between.
            let half = (src.len() / 2) & !7;
            self.ring.copy_in(base, &src[..half]);
            crate::fault::fault_point!("spsc.write.payload_partial");
            self.ring.copy_in(base + half as u64, &src[half..]);
        }
        #[cfg(not(feature = "fault-injection"))]
        self.ring.copy_in(base, src);
    }

    /// The address of `g`'s payload: `g.len()` bytes this producer alone
    /// may write until it commits. `InvalidArgument` if `g` is not this
    /// producer's current reservation.
    #[cfg(not(loom))]
    pub fn payload_ptr(&self, g: &Grant) -> Result<*mut u8> {
        self.check(g)?;
        // SAFETY: off + 8 + len <= cap (checked): inside the data area.
        Ok(unsafe { self.ring.data.add((g.off + RECORD_HEADER as u64) as usize) })
    }

    /// Publishes `g` and wakes the consumer if it sleeps.
    /// `InvalidArgument` if `g` is not this producer's current reservation
    /// (another ring's, or stale).
    pub fn commit(&mut self, g: Grant) -> Result<()> {
        self.check(&g)?;
        self.commit_checked(g);
        Ok(())
    }

    /// `commit` once `g` is known good.
    #[inline]
    fn commit_checked(&mut self, g: Grant) {
        crate::fault::fault_point!("spsc.write.before_publish");
        let word = header_word(g.pos, self.ring.cap, g.len, g.flags);
        self.publish(record_size(g.len as u64), word);
        crate::fault::fault_point!("spsc.write.published_before_wake");
        self.ring.data_ready().notify(1);
    }

    /// Reserves, writes `src` and commits: `Ok(false)` if no room now.
    pub fn try_push(&mut self, src: &[u8], flags: u32) -> Result<bool> {
        match self.try_reserve(src.len(), flags)? {
            Some(g) => {
                // Made just now for `src.len()` bytes at the current tail:
                // the grant checks of `write` and `commit` cannot fail.
                self.write_checked(&g, 0, src);
                self.commit_checked(g);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// The consumer's side of a ring. Its cached `tail` lives here.
#[derive(Debug)]
pub struct Consumer<'a> {
    ring: Ring<'a>,
    head: u64,
    tail: u64,
}

impl<'a> Consumer<'a> {
    /// The ring.
    pub fn ring(&self) -> Ring<'a> {
        self.ring
    }

    /// The header word at `head` if it is published (its tag is the one
    /// of `head`'s lap), else `None`.
    ///
    /// SYNC POINT (producer's Release store of the header in `publish`):
    /// after this Acquire load the record's payload, and the zero just past
    /// it, are visible.
    #[inline]
    fn published_header(&self) -> Option<u64> {
        let word = self
            .ring
            .word(self.head & (self.ring.cap - 1))
            .load(Acquire);
        (word >> TAG_SHIFT == lap_tag(self.head, self.ring.cap)).then_some(word)
    }

    /// Releases `n` bytes (SYNC POINT: pairs with the producer's Acquire
    /// load in `refresh_head`) and wakes the producer if it sleeps.
    #[inline]
    fn advance(&mut self, n: u64) {
        self.head += n;
        self.ring.ctl.cons.head.store(self.head, Release);
        self.ring.space_ready().notify(1);
    }

    /// Whether a record (or padding) is published and unconsumed.
    pub fn has_data(&mut self) -> Result<bool> {
        Ok(self.published_header().is_some())
    }

    /// The next published record, or `Ok(None)` if there is none now.
    /// Padding is skipped (and released) here. Does not consume.
    pub fn try_peek(&mut self) -> Result<Option<Record>> {
        // At most one padding record precedes a record.
        for _ in 0..2 {
            let Some(word) = self.published_header() else {
                return Ok(None);
            };
            let off = self.head & (self.ring.cap - 1);
            let size = record_extent(word, off, self.ring.cap)?;
            // What this header publishes: the bound `check` holds records to.
            self.tail = self.tail.max(self.head + size);
            let (len, flags) = (word as u32, ((word >> FLAGS_SHIFT) & FLAGS_MASK) as u32);
            if flags & PAD != 0 {
                self.advance(size);
                continue;
            }
            return Ok(Some(Record {
                ring: self.ring.id(),
                pos: self.head,
                off,
                len,
                flags,
            }));
        }
        Err(Error::Corrupt("padding after padding"))
    }

    /// Checks that `r` is this consumer's current record: found in this
    /// ring, at the current head, inside the data area and inside what was
    /// published. Anything else is `InvalidArgument`.
    #[inline]
    fn check(&self, r: &Record) -> Result<()> {
        let need = record_size(r.len as u64);
        if r.ring != self.ring.id()
            || r.pos != self.head
            || r.off != r.pos & (self.ring.cap - 1)
            || r.off + need > self.ring.cap
            || r.pos + need > self.tail
        {
            return Err(Error::InvalidArgument("not this consumer's current record"));
        }
        Ok(())
    }

    /// Copies `dst.len()` payload bytes of `r` from byte `at` into `dst`
    /// (`InvalidArgument` if outside the record, or if `r` is not this
    /// consumer's current record; `at` need not be aligned except under
    /// loom).
    pub fn read(&self, r: &Record, at: usize, dst: &mut [u8]) -> Result<()> {
        self.check(r)?;
        if at
            .checked_add(dst.len())
            .map_or(true, |e| e > r.len as usize)
        {
            return Err(Error::InvalidArgument("read outside the record"));
        }
        self.ring
            .copy_out(r.off + RECORD_HEADER as u64 + at as u64, dst);
        Ok(())
    }

    /// Copies the next record into `dst` and consumes it if it carries no
    /// flags and fits: `Ok(Some(len))`; otherwise (empty, flagged, too
    /// long) consumes nothing and says `Ok(None)`. The receive fast path of
    /// the layer above, which handles everything else itself.
    #[inline]
    pub fn try_pop_plain(&mut self, dst: &mut [u8]) -> Result<Option<usize>> {
        let Some(r) = self.try_peek()? else {
            return Ok(None);
        };
        let len = r.len();
        if r.flags != 0 || len > dst.len() {
            return Ok(None);
        }
        // Found just now at the head and inside the data area (try_peek):
        // the record checks of `read` and `release` cannot fail.
        self.ring
            .copy_out(r.off + RECORD_HEADER as u64, &mut dst[..len]);
        self.release_checked(r);
        Ok(Some(len))
    }

    /// The address of `r`'s payload: `r.len()` bytes nobody writes until
    /// this consumer releases `r`. `InvalidArgument` if `r` is not this
    /// consumer's current record.
    #[cfg(not(loom))]
    pub fn payload_ptr(&self, r: &Record) -> Result<*const u8> {
        self.check(r)?;
        // SAFETY: off + 8 + len <= cap (checked): inside the data area.
        Ok(unsafe { self.ring.data.add((r.off + RECORD_HEADER as u64) as usize) })
    }

    /// Consumes `r` and wakes the producer if it sleeps.
    /// `InvalidArgument` if `r` is not this consumer's current record
    /// (another ring's, or stale).
    pub fn release(&mut self, r: Record) -> Result<()> {
        self.check(&r)?;
        self.release_checked(r);
        Ok(())
    }

    /// `release` once `r` is known good.
    #[inline]
    fn release_checked(&mut self, r: Record) {
        crate::fault::fault_point!("spsc.read.before_release");
        self.advance(record_size(r.len as u64));
    }

    /// Copies the next record into `dst`: `Ok(Some(len))`, `Ok(None)` if
    /// empty, [`Error::BufferTooShort`] (record kept) if `dst` is short.
    pub fn try_pop(&mut self, dst: &mut [u8]) -> Result<Option<(usize, u32)>> {
        let Some(r) = self.try_peek()? else {
            return Ok(None);
        };
        if r.len() > dst.len() {
            return Err(Error::BufferTooShort { needed: r.len() });
        }
        let (len, flags) = (r.len(), r.flags);
        self.read(&r, 0, &mut dst[..len])?;
        self.release(r)?;
        Ok(Some((len, flags)))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn spsc_records_keep_boundaries_and_wrap_with_padding() {
        let h = SpscRing::new(256).unwrap();
        // SAFETY: one producer and one consumer, this thread.
        let (mut p, mut c) =
            unsafe { (h.ring().producer().unwrap(), h.ring().consumer().unwrap()) };
        let mut buf = [0u8; 256];
        for round in 0..200u32 {
            let len = (round as usize * 13) % 90;
            let msg: Vec<u8> = (0..len).map(|i| (i as u32 ^ round) as u8).collect();
            assert!(p.try_push(&msg, 0).unwrap());
            let (n, f) = c.try_pop(&mut buf).unwrap().unwrap();
            assert_eq!((n, f), (len, 0));
            assert_eq!(&buf[..n], &msg[..]);
        }
        assert_eq!(c.try_pop(&mut buf).unwrap(), None);
    }

    #[test]
    fn spsc_full_ring_refuses_and_too_large_is_refused_at_once() {
        let h = SpscRing::new(256).unwrap();
        // SAFETY: one producer and one consumer, this thread.
        let (mut p, mut c) =
            unsafe { (h.ring().producer().unwrap(), h.ring().consumer().unwrap()) };
        assert!(matches!(
            p.try_reserve(249, 0),
            Err(Error::MessageTooLarge {
                size: 249,
                max: 248
            })
        ));
        let mut n = 0;
        while p.try_push(&[7; 24], 0).unwrap() {
            n += 1;
        }
        assert_eq!(n, 256 / 32);
        let mut small = [0u8; 4];
        assert!(matches!(
            c.try_pop(&mut small),
            Err(Error::BufferTooShort { needed: 24 })
        ));
        let mut buf = [0u8; 24];
        assert_eq!(c.try_pop(&mut buf).unwrap(), Some((24, 0)));
        assert!(p.try_push(&[1; 24], 0).unwrap());
        // A maximal record needs an empty ring.
        while c.try_pop(&mut buf).unwrap().is_some() {}
        // Not at offset 0: padding goes first, and the consumer must skip it.
        assert_eq!(p.try_reserve(248, 0).unwrap(), None);
        assert_eq!(c.try_peek().unwrap(), None);
        let g = p.try_reserve(248, 0).unwrap().unwrap();
        p.commit(g).unwrap();
        let r = c.try_peek().unwrap().unwrap();
        assert_eq!(r.len(), 248);
        c.release(r).unwrap();
    }

    #[test]
    fn spsc_uncommitted_reservation_sends_nothing() {
        let h = SpscRing::new(256).unwrap();
        // SAFETY: one producer and one consumer, this thread.
        let (mut p, mut c) =
            unsafe { (h.ring().producer().unwrap(), h.ring().consumer().unwrap()) };
        let g = p.try_reserve(16, 0).unwrap().unwrap();
        p.write(&g, 0, &[1; 16]).unwrap();
        assert_eq!(c.try_peek().unwrap(), None);
        let g2 = p.try_reserve(16, 0).unwrap().unwrap();
        assert_eq!(g, g2);
        p.commit(g2).unwrap();
        assert!(matches!(
            p.write(&g, 0, &[2; 8]),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(p.commit(g), Err(Error::InvalidArgument(_))));
        assert_eq!(c.try_peek().unwrap().unwrap().len(), 16);
    }

    /// Two threads stream records of every length through a small ring
    /// (also under Miri, with fewer records).
    #[test]
    fn spsc_two_threads_stream_in_order() {
        let n: u32 = if cfg!(miri) { 300 } else { 100_000 };
        let h = SpscRing::new(512).unwrap();
        let ring = h.ring();
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: the only producer.
                let mut p = unsafe { ring.producer().unwrap() };
                for i in 0..n {
                    let m: Vec<u8> = (0..i % 200).map(|j| (i ^ j) as u8).collect();
                    while !p.try_push(&m, 0).unwrap() {
                        std::thread::yield_now();
                    }
                }
            });
            // SAFETY: the only consumer.
            let mut c = unsafe { ring.consumer().unwrap() };
            let mut buf = [0u8; 256];
            for i in 0..n {
                let (len, _) = loop {
                    match c.try_pop(&mut buf).unwrap() {
                        Some(x) => break x,
                        None => std::thread::yield_now(),
                    }
                };
                assert_eq!(len as u32, i % 200);
                assert!(buf[..len]
                    .iter()
                    .enumerate()
                    .all(|(j, &b)| b == (i ^ j as u32) as u8));
            }
        });
    }

    #[test]
    fn spsc_ring_of_another_format_is_a_version_mismatch() {
        let h = SpscRing::new(256).unwrap();
        let magic = &h.ring().ctl.meta.magic;
        magic.store(u64::from_le_bytes(*b"shmspsc1"), Relaxed);
        // SAFETY: the heap ring's own pointer and size.
        let r = unsafe { SpscRing::attach(h.ptr, h.layout.size()) };
        assert!(
            matches!(
                r,
                Err(Error::VersionMismatch {
                    found: 1,
                    expected: 2
                })
            ),
            "{:?}",
            r.err()
        );
        magic.store(u64::from_le_bytes(*b"shmspscX"), Relaxed);
        // SAFETY: as above.
        let r = unsafe { SpscRing::attach(h.ptr, h.layout.size()) };
        assert!(matches!(r, Err(Error::Corrupt(_))), "{:?}", r.err());
        magic.store(MAGIC, Relaxed);
    }

    #[test]
    fn spsc_garbage_positions_and_headers_are_corrupt() {
        let h = SpscRing::new(256).unwrap();
        let ring = h.ring();
        let tag0 = lap_tag(0, 256) << TAG_SHIFT;
        // SAFETY: one producer and one consumer, this thread.
        let mut c = unsafe { ring.consumer().unwrap() };
        // A garbage `tail` hint is not read on the consumer's path; a
        // header with a foreign tag reads as "not published".
        ring.ctl.prod.tail.store(1000, Relaxed);
        assert_eq!(c.try_peek().unwrap(), None);
        ring.word(0).store(u64::MAX >> 24, Relaxed);
        assert_eq!(c.try_peek().unwrap(), None);
        // Tagged garbage: unknown flags, a record crossing the end of the
        // data area, padding at offset 0.
        ring.word(0).store(tag0 | (0x80 << FLAGS_SHIFT), Relaxed);
        assert!(matches!(c.try_peek(), Err(Error::Corrupt(_))));
        ring.word(0).store(tag0 | 249, Relaxed);
        assert!(matches!(c.try_peek(), Err(Error::Corrupt(_))));
        ring.word(0)
            .store(tag0 | ((PAD as u64) << FLAGS_SHIFT), Relaxed);
        assert!(matches!(c.try_peek(), Err(Error::Corrupt(_))));
        ring.word(0)
            .store(tag0 | ((PAD as u64) << FLAGS_SHIFT) | 8, Relaxed);
        assert!(matches!(c.try_peek(), Err(Error::Corrupt(_))));
        // Positions are multiples of 8 (found by the spsc_garbage fuzz target).
        ring.ctl.prod.tail.store(9, Relaxed);
        // SAFETY: one producer and one consumer, this thread.
        unsafe {
            assert!(matches!(ring.consumer(), Err(Error::Corrupt(_))));
            assert!(matches!(ring.producer(), Err(Error::Corrupt(_))));
        }
        // Farther apart than the capacity.
        ring.ctl.prod.tail.store(1000, Relaxed);
        // SAFETY: one producer and one consumer, this thread.
        unsafe {
            assert!(matches!(ring.consumer(), Err(Error::Corrupt(_))));
            assert!(matches!(ring.producer(), Err(Error::Corrupt(_))));
        }
        // Near 2^64 (found by the spsc_garbage fuzz target).
        ring.ctl.cons.head.store(u64::MAX - 7, Relaxed);
        ring.ctl.prod.tail.store(u64::MAX - 7, Relaxed);
        // SAFETY: one producer and one consumer, this thread.
        unsafe {
            assert!(matches!(ring.producer(), Err(Error::Corrupt(_))));
            assert!(matches!(ring.consumer(), Err(Error::Corrupt(_))));
        }
        // A producer taking over walks tagged records past a stale hint,
        // and refuses one that would overrun the consumer's head.
        ring.ctl.cons.head.store(0, Relaxed);
        ring.ctl.prod.tail.store(0, Relaxed);
        ring.word(0).store(tag0 | 8, Relaxed);
        ring.word(16).store(0, Relaxed);
        // SAFETY: one producer and one consumer, this thread.
        let p = unsafe { ring.producer().unwrap() };
        assert_eq!(p.tail, 16);
        assert_eq!(ring.ctl.prod.tail.load(Relaxed), 16);
        ring.ctl.prod.tail.store(0, Relaxed);
        ring.word(16).store(tag0 | 240, Relaxed);
        // SAFETY: one producer and one consumer, this thread.
        unsafe { assert!(matches!(ring.producer(), Err(Error::Corrupt(_)))) };
    }

    /// The tagged-header protocol: a full ring leaves the previous lap's
    /// header in the next slot (no zero written ahead), and the consumer
    /// must not take it for a new record; a producer that died after the
    /// header but before the `tail` hint is taken over without loss.
    #[test]
    fn spsc_full_ring_stale_header_is_not_a_record() {
        let h = SpscRing::new(256).unwrap();
        // SAFETY: one producer and one consumer, this thread.
        let (mut p, mut c) =
            unsafe { (h.ring().producer().unwrap(), h.ring().consumer().unwrap()) };
        let mut buf = [0u8; 256];
        for lap in 0..5u8 {
            // Exactly full: 8 records of 32 bytes.
            for i in 0..8u8 {
                assert!(p.try_push(&[lap ^ i; 24], 0).unwrap());
            }
            assert!(!p.try_push(&[0; 1], 0).unwrap());
            for i in 0..8u8 {
                assert_eq!(c.try_pop(&mut buf).unwrap(), Some((24, 0)));
                assert_eq!(buf[..24], [lap ^ i; 24]);
            }
            // The slot at head holds the header of this lap's first record.
            assert_ne!(h.ring().word(0).load(Relaxed), 0);
            assert_eq!(c.try_pop(&mut buf).unwrap(), None);
            assert!(!c.has_data().unwrap());
        }
        // Stale bytes (a previous lap's payload) that look like the header
        // due at the next slot are never read as one: the producer zeroes
        // that word before it publishes the record in front of it.
        let pos = 5 * 256;
        let next = pos + 48;
        h.ring()
            .word(48)
            .store(header_word(next, 256, 8, 0), Relaxed);
        assert!(p.try_push(&[3; 40], 0).unwrap());
        assert_eq!(c.try_pop(&mut buf).unwrap(), Some((40, 0)));
        assert_eq!(c.try_pop(&mut buf).unwrap(), None);
        // Takeover after a lost `tail` hint.
        assert!(p.try_push(&[9; 8], 0).unwrap());
        h.ring().ctl.prod.tail.store(next, Relaxed);
        // SAFETY: the previous producer is no longer used (shadowed).
        let mut p = unsafe { h.ring().producer().unwrap() };
        assert!(p.try_push(&[10; 8], 0).unwrap());
        assert_eq!(c.try_pop(&mut buf).unwrap(), Some((8, 0)));
        assert_eq!(buf[..8], [9; 8]);
        assert_eq!(c.try_pop(&mut buf).unwrap(), Some((8, 0)));
        assert_eq!(buf[..8], [10; 8]);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    fn msg(i: usize) -> Vec<u8> {
        // 100, 120 and 40 bytes in a 256-byte ring: the third needs padding
        // at the end and space the consumer frees.
        let len = [100, 120, 40][i];
        let mut m: Vec<u8> = (0..len).map(|j| (j as u8) ^ (0x5A + i as u8)).collect();
        if i == 0 {
            // Bytes 40..48 of the first payload (ring offset 48) read as
            // the header due at position 304, just past the third record:
            // only the zero the producer writes ahead of that record's
            // header keeps the consumer from taking them for a fourth.
            m[40..48].copy_from_slice(&header_word(304, 256, 8, 0).to_le_bytes());
        }
        m
    }

    fn push_blocking(p: &mut Producer<'_>, m: &[u8]) {
        loop {
            if p.try_push(m, 0).unwrap() {
                return;
            }
            let ec = p.ring().space_ready();
            let k = ec.prepare();
            if p.try_push(m, 0).unwrap() {
                ec.cancel(k);
                return;
            }
            ec.wait(k, None).unwrap();
        }
    }

    fn pop_blocking(c: &mut Consumer<'_>, buf: &mut [u8]) -> usize {
        loop {
            if let Some((n, _)) = c.try_pop(buf).unwrap() {
                return n;
            }
            let ec = c.ring().data_ready();
            let k = ec.prepare();
            if let Some((n, _)) = c.try_pop(buf).unwrap() {
                ec.cancel(k);
                return n;
            }
            ec.wait(k, None).unwrap();
        }
    }

    /// Publish and consume: every record arrives whole, in order, with the
    /// bytes the producer wrote (payload words are loom atomics written
    /// Relaxed, so a missing Release/Acquire on `tail` or `head` shows as
    /// stale bytes); padding is skipped; neither side sleeps through the
    /// other's progress (a lost wake-up is a loom deadlock).
    #[test]
    fn loom_spsc_publish_consume() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let heap = Arc::new(SpscRing::new(256).unwrap());
            let h2 = heap.clone();
            let t = loom::thread::spawn(move || {
                // SAFETY: the only producer.
                let mut p = unsafe { h2.ring().producer().unwrap() };
                for i in 0..3 {
                    push_blocking(&mut p, &msg(i));
                }
            });
            // SAFETY: the only consumer.
            let mut c = unsafe { heap.ring().consumer().unwrap() };
            let mut buf = [0u8; 256];
            for i in 0..3 {
                let n = pop_blocking(&mut c, &mut buf);
                assert_eq!(&buf[..n], &msg(i)[..], "record {i}");
            }
            // Before the join: the slot past the last record must read
            // "not published" however the producer's stores interleave.
            assert_eq!(c.try_pop(&mut buf).unwrap(), None, "a phantom record");
            t.join().unwrap();
        });
    }

    /// An exactly full ring: the producer cannot zero the slot after the
    /// last record (it is the first record's header, not consumed yet), so
    /// the consumer meets the previous lap's header there and must tell it
    /// apart by its tag; the producer refreshes `head` (Acquire) before it
    /// reuses the space. Two records of 120 bytes fill 256, then a third
    /// reuses the first one's space.
    #[test]
    fn loom_spsc_full_ring_lap_tag() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let heap = Arc::new(SpscRing::new(256).unwrap());
            let h2 = heap.clone();
            let m = |i: u8| vec![i.wrapping_mul(37) ^ 0xA5; 120];
            let t = loom::thread::spawn(move || {
                // SAFETY: the only producer.
                let mut p = unsafe { h2.ring().producer().unwrap() };
                for i in 0..3 {
                    push_blocking(&mut p, &m(i));
                }
            });
            // SAFETY: the only consumer.
            let mut c = unsafe { heap.ring().consumer().unwrap() };
            let mut buf = [0u8; 256];
            for i in 0..3 {
                let n = pop_blocking(&mut c, &mut buf);
                assert_eq!(&buf[..n], &m(i)[..], "record {i}");
            }
            assert_eq!(c.try_pop(&mut buf).unwrap(), None, "a phantom record");
            t.join().unwrap();
        });
    }

    /// A claim rewritten while a peer reads it is never read as the new
    /// pid with the old start time (which would look like a dead peer):
    /// the reader sees the old pair, the new pair, or a pid with start 0
    /// ("check the pid only").
    #[test]
    fn loom_spsc_claim_is_never_torn() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let heap = Arc::new(SpscRing::new(256).unwrap());
            heap.ring().claim(Role::Writer, 10, 100, false).unwrap();
            let h2 = heap.clone();
            let t = loom::thread::spawn(move || {
                h2.ring().claim(Role::Writer, 20, 200, false).unwrap();
            });
            let (pid, start) = heap.ring().claimant(Role::Writer);
            assert!(
                matches!((pid, start), (10, 100) | (20, 200) | (_, 0)),
                "torn claim read: ({pid}, {start})"
            );
            t.join().unwrap();
        });
    }

    /// A reader blocked for data wakes when the writer closes, and still
    /// receives what was published before the close (the pipe's "drain,
    /// then Disconnected").
    #[test]
    fn loom_spsc_close_wakes_reader_after_drain() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let heap = Arc::new(SpscRing::new(256).unwrap());
            let h2 = heap.clone();
            let t = loom::thread::spawn(move || {
                // SAFETY: the only producer.
                let mut p = unsafe { h2.ring().producer().unwrap() };
                assert!(p.try_push(&msg(2), 0).unwrap());
                h2.ring().close(Role::Writer);
            });
            // SAFETY: the only consumer.
            let mut c = unsafe { heap.ring().consumer().unwrap() };
            let ring = heap.ring();
            let mut buf = [0u8; 256];
            let mut got = 0;
            loop {
                if let Some((n, _)) = c.try_pop(&mut buf).unwrap() {
                    assert_eq!(&buf[..n], &msg(2)[..]);
                    got += 1;
                    continue;
                }
                let k = ring.data_ready().prepare();
                if c.has_data().unwrap() {
                    ring.data_ready().cancel(k);
                    continue;
                }
                if ring.is_closed(Role::Writer) {
                    ring.data_ready().cancel(k);
                    // Published before the close: visible now.
                    if c.has_data().unwrap() {
                        continue;
                    }
                    break;
                }
                ring.data_ready().wait(k, None).unwrap();
            }
            assert_eq!(got, 1, "a record published before the close was lost");
            t.join().unwrap();
        });
    }
}
