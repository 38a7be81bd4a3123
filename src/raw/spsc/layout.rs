//! The control block of a ring: its cache lines, `init` and `attach`, and
//! the heap-backed ring of tests, loom and Miri.

use super::super::sync::{AtomicU32, AtomicU64, Ordering::*};
use super::wake::Wake;
use super::*;

#[repr(C, align(64))]
pub(super) struct Meta {
    pub(super) magic: AtomicU64,
    pub(super) capacity: AtomicU64,
}

#[repr(C, align(64))]
pub(super) struct ProducerLine {
    /// Bytes ever published. Written by the producer only (Release).
    pub(super) tail: AtomicU64,
}

#[repr(C, align(64))]
pub(super) struct ConsumerLine {
    /// Bytes ever consumed. Written by the consumer only (Release).
    pub(super) head: AtomicU64,
}

/// Rarely written: sleepers, close and claim. Read on every publish (the
/// event counts' sleeper words) and every send (the reader's closed flag),
/// so it stays shared in both caches.
#[repr(C, align(64))]
pub(super) struct Ends {
    /// The consumer sleeps here for data; the producer notifies.
    pub(super) data_ready: Wake,
    /// The producer sleeps here for space; the consumer notifies.
    pub(super) space_ready: Wake,
    /// Non-zero once the producer's end closed.
    pub(super) writer_closed: AtomicU32,
    /// Non-zero once the consumer's end closed.
    pub(super) reader_closed: AtomicU32,
    /// Claimant of the producer's end: low 32 bits the pid (0 =
    /// unclaimed), high 32 bits a count of claims (so a reader can tell
    /// that the record changed and changed back); and the start time.
    pub(super) writer_pid: AtomicU64,
    pub(super) writer_start: AtomicU64,
    /// Claimant of the consumer's end.
    pub(super) reader_pid: AtomicU64,
    pub(super) reader_start: AtomicU64,
    /// Zero. Format 2 kept the consumer's in-message flag here, written
    /// apart from `head`: a consumer dying between the two stores left its
    /// successor a record off. Format 3 keeps it in `head`'s low bit.
    pub(super) reserved: AtomicU32,
}

/// The claim word after `cur` for `pid`: the pid in the low half, the
/// claim count (wrapping) in the high half.
pub(super) fn next_claim(cur: u64, pid: u32) -> u64 {
    (((cur >> 32) as u32).wrapping_add(1) as u64) << 32 | pid as u64
}

/// The control block of a single-producer single-consumer byte ring; the
/// data area (`capacity` bytes) follows it directly in memory.
///
/// It is `#[repr(C)]`, 256 bytes, 64-aligned, holds no pointers, and is
/// valid at any address in any process that maps it: embedders may place
/// one in their own mapping with [`SpscRing::init`] and reach it with
/// [`SpscRing::attach`]. [`SpscRing::new`] builds one on the heap (tests,
/// loom, Miri). See the [module documentation](crate::raw::spsc) for the protocol.
#[repr(C, align(64))]
pub struct SpscRing {
    pub(super) meta: Meta,
    pub(super) prod: ProducerLine,
    pub(super) cons: ConsumerLine,
    pub(super) ends: Ends,
}

#[cfg(not(loom))]
mod asserts {
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
    const_assert_eq!(offset_of!(Ends, reserved), 56);
    // Format version 2: tagged record headers (module docs).
    const_assert_eq!(FORMAT_VERSION, 3);
    const_assert_eq!(MAGIC, u64::from_le_bytes(*b"shmspsc3"));
    const_assert_eq!(IN_MESSAGE, 1);
    const_assert_eq!(FLAGS_SHIFT, 32);
    const_assert_eq!(TAG_SHIFT, 40);
    const_assert_eq!(KNOWN_FLAGS as u64 & !FLAGS_MASK, 0);
}
/// byte per byte normally; under loom each 8-byte word is a loom atomic.
#[cfg(not(loom))]
const fn data_bytes(capacity: usize) -> usize {
    capacity
}
#[cfg(loom)]
fn data_bytes(capacity: usize) -> usize {
    capacity / 8 * std::mem::size_of::<AtomicU64>()
}

pub(super) fn check_capacity(capacity: u64) -> Result<()> {
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
                reserved: AtomicU32::new(0),
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
    pub(super) ptr: *mut u8,
    pub(super) layout: std::alloc::Layout,
    pub(super) capacity: usize,
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
