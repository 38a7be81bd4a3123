//! One generation of a container: a bytes segment holding a header, a slot
//! table, a heap of records and an undo log. Everything here is
//! bounds-checked against the layout validated when the generation was
//! mapped: what other processes write may be garbage.
//!
//! ## Layout (offsets from the segment's data start, all `u64`)
//!
//! | offset | field      | written                                          |
//! |-------:|------------|--------------------------------------------------|
//! |      0 | magic      | once, last, at creation (Release)                |
//! |      8 | shape      | at creation (1 map, 2 list)                      |
//! |     16 | number     | at creation: this generation's number            |
//! |     24 | size       | at creation: bytes of the data region            |
//! |     32 | nslots     | at creation: slot count, a power of two          |
//! |     40 | heap_end   | at creation: end of the heap = start of the log  |
//! |     48 | log_cap    | at creation: bytes of undo log                   |
//! |    128 | seq        | [`SeqCount`]: odd while a writer changes this generation in place |
//! |    192 | log_len    | bytes of undo log in use; 0 = nothing to undo (the in-place commit point) |
//! |    256 | len        | entries (map) or elements (list)       — the state block, |
//! |    264 | used       | occupied slots incl. tombstones (map)  — logged as a whole |
//! |    272 | bump       | next free heap offset                  — once per write   |
//! |    280 | live       | heap bytes in live records             — section          |
//! |    320 | slots      | map: `nslots` × (hash, record offset); list: `nslots` × record offset |
//! |  heap  | records    | `klen`, `vlen`, key bytes, value bytes, padded to 8 |
//! |  log   | undo log   | entries (`off`, `len`, old bytes padded to 8)      |
//!
//! A map slot's record offset is 0 when empty and 1 for a tombstone.

use std::sync::atomic::{AtomicU64, Ordering::*};

use super::Shape;
use crate::raw::SeqCount;
use crate::{Error, Options, Result, Segment};

const MAGIC: u64 = u64::from_le_bytes(*b"SHMCGEN1");
const G_MAGIC: u64 = 0;
const G_SHAPE: u64 = 8;
const G_NUMBER: u64 = 16;
const G_SIZE: u64 = 24;
const G_NSLOTS: u64 = 32;
const G_HEAP_END: u64 = 40;
const G_LOG_CAP: u64 = 48;
const G_SEQ: u64 = 128;
const G_LOG_LEN: u64 = 192;
/// The state block: `len`, `used`, `bump`, `live`.
pub(crate) const G_STATE: u64 = 256;
pub(crate) const STATE_LEN: u64 = 32;
pub(crate) const G_LEN: u64 = G_STATE;
pub(crate) const G_USED: u64 = G_STATE + 8;
pub(crate) const G_BUMP: u64 = G_STATE + 16;
pub(crate) const G_LIVE: u64 = G_STATE + 24;
const G_SLOTS: u64 = 320;

/// Map slot markers (record offsets are never below the heap start).
pub(crate) const EMPTY: u64 = 0;
pub(crate) const TOMBSTONE: u64 = 1;

/// The largest slot table a generation may declare (keeps every product
/// below in range).
const MAX_SLOTS: u64 = 1 << 40;
/// Record header: `klen`, `vlen`.
pub(crate) const REC_HDR: u64 = 16;

/// Bytes a record of this key and value occupies.
pub(crate) fn rec_size(klen: u64, vlen: u64) -> u64 {
    REC_HDR + (klen + vlen).div_ceil(8) * 8
}

/// Bytes an undo entry for `len` bytes occupies.
pub(crate) fn log_entry_size(len: u64) -> u64 {
    16 + len.div_ceil(8) * 8
}

/// A record found in the heap, its header bounds-checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rec {
    pub off: u64,
    pub klen: u64,
    pub vlen: u64,
}

impl Rec {
    pub fn size(&self) -> u64 {
        rec_size(self.klen, self.vlen)
    }
    pub fn key_off(&self) -> u64 {
        self.off + REC_HDR
    }
    pub fn val_off(&self) -> u64 {
        self.off + REC_HDR + self.klen
    }
}

/// A mapped generation with its validated, immutable layout.
pub(crate) struct Gen {
    seg: Segment,
    p: *mut u8,
    pub number: u64,
    pub shape: Shape,
    pub nslots: u64,
    pub heap_off: u64,
    pub heap_end: u64,
    pub log_off: u64,
    pub log_cap: u64,
}

// SAFETY: `p` points into `seg`'s mapping, which lives as long as the Gen;
// every access through it is an atomic or a raw copy, safe from any thread.
unsafe impl Send for Gen {}
// SAFETY: as above.
unsafe impl Sync for Gen {}

/// How big a new generation is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizes {
    pub nslots: u64,
    pub heap: u64,
    pub log_cap: u64,
}

impl Sizes {
    fn total(&self, shape: Shape) -> Option<u64> {
        G_SLOTS
            .checked_add(self.nslots.checked_mul(shape.slot_size())?)?
            .checked_add(self.heap)?
            .checked_add(self.log_cap)
    }
}

impl Gen {
    /// Creates generation `number` under `name`, empty; a taken name is
    /// [`Error::AlreadyExists`] (never removed: it may be another
    /// container's live generation).
    pub fn create(name: &str, opts: &Options, shape: Shape, number: u64, s: Sizes) -> Result<Gen> {
        let total = s
            .total(shape)
            .filter(|&t| t <= isize::MAX as u64 / 2)
            .ok_or(Error::OutOfSpace)?;
        let seg = Segment::create_with(name, total as usize, opts)?;
        // Generations are unlinked by the container's own rules, never by
        // the drop of the handle that happened to create them.
        seg.persist();
        let p = seg.data_ptr();
        if p as usize % 64 != 0 || (seg.data_len() as u64) < total {
            return Err(Error::Corrupt(
                "container generation: misaligned or short segment",
            ));
        }
        let g = Gen {
            seg,
            p,
            number,
            shape,
            nslots: s.nslots,
            heap_off: G_SLOTS + s.nslots * shape.slot_size(),
            heap_end: G_SLOTS + s.nslots * shape.slot_size() + s.heap,
            log_off: G_SLOTS + s.nslots * shape.slot_size() + s.heap,
            log_cap: s.log_cap,
        };
        g.w(G_SHAPE).store(shape as u64, Relaxed);
        g.w(G_NUMBER).store(number, Relaxed);
        g.w(G_SIZE).store(total, Relaxed);
        g.w(G_NSLOTS).store(s.nslots, Relaxed);
        g.w(G_HEAP_END).store(g.heap_end, Relaxed);
        g.w(G_LOG_CAP).store(s.log_cap, Relaxed);
        g.w(G_BUMP).store(g.heap_off, Relaxed);
        g.w(G_MAGIC).store(MAGIC, Release);
        Ok(g)
    }

    /// Maps an existing generation, checking every layout field.
    pub fn open(seg: Segment, shape: Shape, number: u64) -> Result<Gen> {
        let p = seg.data_ptr();
        let size = seg.data_len() as u64;
        if p as usize % 64 != 0 || size < G_SLOTS {
            return Err(Error::Corrupt(
                "container generation: misaligned or short segment",
            ));
        }
        let mut g = Gen {
            seg,
            p,
            number,
            shape,
            nslots: 0,
            heap_off: 0,
            heap_end: 0,
            log_off: 0,
            log_cap: 0,
        };
        let bad = |what| Err(Error::Corrupt(what));
        if g.w(G_MAGIC).load(Acquire) != MAGIC {
            return bad("container generation: bad magic");
        }
        if g.w(G_SHAPE).load(Relaxed) != shape as u64 {
            return Err(Error::KindMismatch {
                found: g.w(G_SHAPE).load(Relaxed) as u32,
                expected: shape as u32,
            });
        }
        if g.w(G_NUMBER).load(Relaxed) != number || g.w(G_SIZE).load(Relaxed) != size {
            return bad("container generation: number or size");
        }
        let nslots = g.w(G_NSLOTS).load(Relaxed);
        if !nslots.is_power_of_two() || nslots > MAX_SLOTS {
            return bad("container generation: slot count");
        }
        let heap_off = G_SLOTS + nslots * shape.slot_size();
        let heap_end = g.w(G_HEAP_END).load(Relaxed);
        let log_cap = g.w(G_LOG_CAP).load(Relaxed);
        if heap_end < heap_off
            || heap_end % 8 != 0
            || heap_end.checked_add(log_cap) != Some(size)
            || log_cap % 8 != 0
        {
            return bad("container generation: heap or log bounds");
        }
        g.nslots = nslots;
        g.heap_off = heap_off;
        g.heap_end = heap_end;
        g.log_off = heap_end;
        g.log_cap = log_cap;
        Ok(g)
    }

    /// The `u64` word at `off`.
    #[inline]
    pub fn w(&self, off: u64) -> &AtomicU64 {
        assert!(
            off % 8 == 0 && off + 8 <= self.seg.data_len() as u64,
            "container generation: word offset out of bounds"
        );
        // SAFETY: in bounds (checked above), 8-aligned (the data start is
        // 64-aligned, checked at map time), and an AtomicU64 is valid for
        // any bits; the mapping lives as long as `self`.
        unsafe { &*self.p.add(off as usize).cast::<AtomicU64>() }
    }

    pub fn seq(&self) -> &SeqCount {
        // SAFETY: SeqCount is a `#[repr(C)]` AtomicU64; `G_SEQ` is an
        // in-bounds, 8-aligned offset of the header (see `w`).
        unsafe { &*(self.w(G_SEQ) as *const AtomicU64).cast::<SeqCount>() }
    }

    pub fn log_len(&self) -> &AtomicU64 {
        self.w(G_LOG_LEN)
    }

    pub fn get(&self, off: u64) -> u64 {
        self.w(off).load(Relaxed)
    }

    pub fn set(&self, off: u64, v: u64) {
        self.w(off).store(v, Relaxed)
    }

    pub fn len(&self) -> u64 {
        self.get(G_LEN)
    }

    /// The element count of a list, checked against the table.
    pub fn list_len(&self) -> Result<u64> {
        let n = self.len();
        if n > self.nslots {
            return Err(Error::Corrupt("container: length beyond the table"));
        }
        Ok(n)
    }

    /// Offset of slot `i` (map: its hash word; the record offset follows).
    pub fn slot(&self, i: u64) -> u64 {
        debug_assert!(i <= self.nslots);
        G_SLOTS + i * self.shape.slot_size()
    }

    /// The record at heap offset `off`, its header checked.
    pub fn rec(&self, off: u64) -> Result<Rec> {
        let bump = self.get(G_BUMP).min(self.heap_end);
        if off % 8 != 0 || off < self.heap_off || off.saturating_add(REC_HDR) > bump {
            return Err(Error::Corrupt("container: record offset"));
        }
        let klen = self.get(off);
        let vlen = self.get(off + 8);
        let room = bump - off - REC_HDR;
        if klen > room || vlen > room - klen {
            return Err(Error::Corrupt("container: record length"));
        }
        Ok(Rec { off, klen, vlen })
    }

    /// Copies `dst.len()` bytes from `off` (already bounds-checked by the
    /// caller against a checked record).
    pub fn copy_out(&self, off: u64, dst: &mut [u8]) {
        assert!(off + dst.len() as u64 <= self.seg.data_len() as u64);
        // SAFETY: in bounds (asserted); a raw copy, no reference to the
        // shared bytes is formed; torn data is caught by the caller's
        // sequence validation or excluded by the writers' lock.
        unsafe {
            std::ptr::copy_nonoverlapping(self.p.add(off as usize), dst.as_mut_ptr(), dst.len())
        }
    }

    /// Copies `src` to `off` (the caller holds the writers' lock).
    pub fn copy_in(&self, off: u64, src: &[u8]) {
        assert!(off + src.len() as u64 <= self.seg.data_len() as u64);
        // SAFETY: in bounds (asserted); only the lock holder writes.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.p.add(off as usize), src.len()) }
    }

    /// Copies `len` bytes inside this generation (regions may overlap).
    pub fn copy_within(&self, from: u64, to: u64, len: u64) {
        let size = self.seg.data_len() as u64;
        assert!(from + len <= size && to + len <= size);
        if len <= 64 && (from | to | len) % 8 == 0 && (to + len <= from || from + len <= to) {
            // Small aligned copies (undo entries): a few word moves beat
            // a call to memmove.
            for i in (0..len).step_by(8) {
                self.set(to + i, self.get(from + i));
            }
            return;
        }
        // SAFETY: both ranges in bounds (asserted); `copy` allows overlap.
        unsafe {
            std::ptr::copy(
                self.p.add(from as usize),
                self.p.add(to as usize),
                len as usize,
            )
        }
    }

    /// Copies `len` bytes from `src` at `from` to this generation at `to`.
    pub fn copy_from(&self, src: &Gen, from: u64, to: u64, len: u64) {
        assert!(from + len <= src.seg.data_len() as u64);
        assert!(to + len <= self.seg.data_len() as u64);
        // SAFETY: both ranges in bounds (asserted), in two mappings.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.p.add(from as usize),
                self.p.add(to as usize),
                len as usize,
            )
        }
    }

    /// Whether the bytes of a key at the 8-aligned `off` (bounds-checked
    /// by the caller's record check) equal `key`: compared a word at a time
    /// through atomic loads, so no reference to shared bytes is formed.
    pub fn eq_at(&self, off: u64, key: &[u8]) -> bool {
        debug_assert!(off % 8 == 0);
        let mut chunks = key.chunks_exact(8);
        let mut at = off;
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            if self.get(at) != u64::from_ne_bytes(b) {
                return false;
            }
            at += 8;
        }
        let rest = chunks.remainder();
        // The record is padded to 8 bytes: the word holding the tail is
        // inside it (its other bytes are value or padding).
        rest.is_empty() || self.get(at).to_ne_bytes()[..rest.len()] == *rest
    }

    /// A `Plain` value read from `off` (bounds-checked by the caller).
    pub fn read_plain<T: crate::Plain>(&self, off: u64) -> T {
        assert!(off + std::mem::size_of::<T>() as u64 <= self.seg.data_len() as u64);
        // SAFETY: in bounds (asserted); a raw unaligned copy (torn data is
        // caught by the caller's validation); any bits are a `Plain` value.
        unsafe { std::ptr::read_unaligned(self.p.add(off as usize).cast::<T>()) }
    }

    /// Bytes the heap holds in all.
    pub fn heap_cap(&self) -> u64 {
        self.heap_end - self.heap_off
    }

    /// Bytes of heap left.
    pub fn heap_free(&self) -> u64 {
        self.heap_end.saturating_sub(self.get(G_BUMP))
    }

    /// Appends a record (heap space checked by the caller) and accounts
    /// for it; returns its offset. Nothing to log: the space was free and
    /// the logged state block restores `bump` and `live`.
    pub fn alloc(&self, key: &[u8], val: &[u8]) -> Result<u64> {
        let (klen, vlen) = (key.len() as u64, val.len() as u64);
        let off = self.get(G_BUMP);
        let size = rec_size(klen, vlen);
        // `bump` is a shared word: a record starts on a word (`w` asserts
        // it), inside the heap.
        if off % 8 != 0 || off < self.heap_off || off.saturating_add(size) > self.heap_end {
            return Err(Error::Corrupt("container: heap pointer"));
        }
        self.set(off, klen);
        self.set(off + 8, vlen);
        self.copy_in(off + REC_HDR, key);
        self.copy_in(off + REC_HDR + klen, val);
        self.set(G_BUMP, off + size);
        self.set(G_LIVE, self.get(G_LIVE).wrapping_add(size));
        Ok(off)
    }

    /// Undoes an interrupted in-place write from the undo log, newest entry
    /// first, then empties the log. Idempotent: a repair that dies half-way
    /// is done again from the start by the next one.
    pub fn roll_back(&self) -> Result<()> {
        let used = self.log_len().load(Acquire);
        if used == 0 {
            return Ok(());
        }
        if used > self.log_cap || used % 8 != 0 {
            return Err(Error::Corrupt("container: undo log length"));
        }
        let mut entries = Vec::new();
        let mut at = 0;
        while at < used {
            if used - at < 16 {
                // An entry's header would run past the log in use.
                return Err(Error::Corrupt("container: undo log entry"));
            }
            let e = self.log_off + at;
            let off = self.get(e);
            let len = self.get(e + 8);
            let end = at.checked_add(log_entry_size(len.min(self.log_cap)));
            if len > self.log_cap
                || end.map_or(true, |e| e > used)
                || off < G_STATE
                || off.saturating_add(len) > self.log_off
            {
                return Err(Error::Corrupt("container: undo log entry"));
            }
            entries.push((off, e + 16, len));
            at = end.unwrap_or(used);
        }
        for &(off, from, len) in entries.iter().rev() {
            self.copy_within(from, off, len);
        }
        self.log_len().store(0, Release);
        Ok(())
    }

    /// Records the current `len` bytes at `off` in the undo log (room
    /// checked by the caller).
    pub fn log(&self, off: u64, len: u64) -> Result<()> {
        let used = self.log_len().load(Relaxed);
        let size = log_entry_size(len);
        if used % 8 != 0
            || used.saturating_add(size) > self.log_cap
            || off.saturating_add(len) > self.log_off
        {
            return Err(Error::Corrupt("container: undo log overflow"));
        }
        let e = self.log_off + used;
        self.set(e, off);
        self.set(e + 8, len);
        self.copy_within(off, e + 16, len);
        // The entry is complete before it counts; the data it protects is
        // written only after this store.
        self.log_len().store(used + size, Release);
        Ok(())
    }

    pub fn log_free(&self) -> u64 {
        self.log_cap.saturating_sub(self.log_len().load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> Gen {
        let name = crate::segment::unique_name("gentest");
        let s = Sizes {
            nslots: 16,
            heap: 4096,
            log_cap: 4096,
        };
        let g = Gen::create(&name, &Options::new(), Shape::Map, 1, s).unwrap();
        Segment::unlink_name(&name).unwrap();
        g
    }

    /// Undo logs whose entries run past the part in use, or whose length
    /// is not whole words: `Corrupt`, never a panic.
    #[test]
    fn roll_back_refuses_a_log_that_runs_past_its_end() {
        let g = scratch();
        g.log_len().store(12, Relaxed);
        assert!(matches!(g.roll_back(), Err(Error::Corrupt(_))));
        // One valid entry ending 8 bytes before the end of the log: the
        // next header would lie half outside the segment.
        let len = g.log_cap - 8 - 16;
        g.set(g.log_off, G_STATE);
        g.set(g.log_off + 8, len);
        g.log_len().store(g.log_cap, Relaxed);
        assert!(matches!(g.roll_back(), Err(Error::Corrupt(_))));
    }
}
