//! The validated view of a ring: capacity, close flags, the event counts,
//! and the data area's words and copies.

use super::super::sync::{AtomicU64, Ordering::*};
use super::layout::SpscRing;
use super::wake::Wake;
use super::*;

/// A validated view of a ring: its control block, its data area, and the
/// capacity read once at attach (later changes by a peer are ignored).
#[derive(Clone, Copy)]
pub struct Ring<'a> {
    pub(super) ctl: &'a SpscRing,
    pub(super) data: *mut u8,
    pub(super) cap: u64,
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
    pub(super) fn id(&self) -> usize {
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
    pub(super) fn word(&self, off: u64) -> &'a AtomicU64 {
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
    pub(super) fn copy_in(&self, off: u64, src: &[u8]) {
        debug_assert!(off + src.len() as u64 <= self.cap);
        #[cfg(not(loom))]
        // SAFETY: `[off, off + len)` lies inside the data area and inside a
        // record the producer reserved: nobody else reads or writes it now.
        unsafe {
            copy_bytes(src.as_ptr(), self.data.add(off as usize), src.len())
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
    pub(super) fn copy_out(&self, off: u64, dst: &mut [u8]) {
        debug_assert!(off + dst.len() as u64 <= self.cap);
        #[cfg(not(loom))]
        // SAFETY: `[off, off + len)` lies inside the data area and inside a
        // published, unreleased record: the producer does not write it now.
        unsafe {
            copy_bytes(self.data.add(off as usize), dst.as_mut_ptr(), dst.len())
        };
        #[cfg(loom)]
        for (i, chunk) in dst.chunks_mut(8).enumerate() {
            debug_assert!(off % 8 == 0);
            let w = self.word(off + 8 * i as u64).load(Relaxed).to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
    }
}

/// `copy_nonoverlapping`, with the small copies of streaming (up to 64
/// bytes) inlined as two overlapping word copies: no call to `memcpy`, and
/// no registers spilled around one in the loops that call this.
///
/// # Safety
///
/// As `copy_nonoverlapping(src, dst, len)`.
#[cfg(not(loom))]
#[inline(always)]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    use std::ptr::{read_unaligned as rd, write_unaligned as wr};
    /// Copies `len` bytes, `size_of::<T>() <= len <= 2 * size_of::<T>()`,
    /// as the first and the last `T` (overlapping when `len` is less).
    #[inline(always)]
    unsafe fn two<T: Copy>(src: *const u8, dst: *mut u8, len: usize) {
        let k = len - std::mem::size_of::<T>();
        // SAFETY: both `T`s lie inside `[0, len)` of either range (the
        // caller's bounds); unaligned reads and writes of plain bytes.
        unsafe {
            wr(dst.cast::<T>(), rd(src.cast::<T>()));
            wr(dst.add(k).cast::<T>(), rd(src.add(k).cast::<T>()));
        }
    }
    // SAFETY: in each arm `len` is in the range `two` requires of its
    // `T`; the ranges are the caller's (valid, `len` bytes, disjoint).
    unsafe {
        match len {
            32..=64 => two::<[u64; 4]>(src, dst, len),
            16..=31 => two::<[u64; 2]>(src, dst, len),
            8..=15 => two::<u64>(src, dst, len),
            4..=7 => two::<u32>(src, dst, len),
            0..=3 => {
                for i in 0..len {
                    *dst.add(i) = *src.add(i);
                }
            }
            _ => std::ptr::copy_nonoverlapping(src, dst, len),
        }
    }
}
