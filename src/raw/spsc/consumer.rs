//! The consumer's side: peek, read, release.

use super::super::sync::Ordering::*;
use super::*;

/// A published record found by [`Consumer::try_peek`], not yet released.
///
/// Neither `Copy` nor `Clone`: [`Consumer::release`] consumes it. The
/// consumer checks every record it is handed (made for this ring, the
/// current record, inside what was published), so a foreign or stale
/// record is [`Error::InvalidArgument`], never an access out of bounds.
#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    /// The ring it was found in (its control block's address).
    pub(super) ring: usize,
    pub(super) pos: u64,
    pub(super) off: u64,
    pub(super) len: u32,
    pub(super) flags: u32,
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
/// The consumer's side of a ring. Its cached `tail` lives here.
#[derive(Debug)]
pub struct Consumer<'a> {
    pub(super) ring: Ring<'a>,
    pub(super) head: u64,
    pub(super) tail: u64,
    /// Whether the head is inside a fragmented message: published with
    /// every release, in `head`'s low bit (`IN_MESSAGE`).
    pub(super) in_message: bool,
    /// `head`'s lap, for the one-record fast path.
    pub(super) lap: Lap,
    /// Inside [`begin_batch`](Consumer::begin_batch): releases move the
    /// local head only; `end_batch` stores it once.
    pub(super) batching: bool,
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
        self.head = self.head.wrapping_add(n);
        if self.batching {
            return;
        }
        self.ring
            .ctl
            .cons
            .head
            .store(self.head | self.in_message as u64, Release);
        self.ring.space_ready().notify(1);
    }

    /// Starts a batch: records released until [`end_batch`](Self::end_batch)
    /// are handed back to the producer by one store of `head` there.
    pub fn begin_batch(&mut self) {
        self.batching = true;
    }

    /// Ends a batch: one Release store of `head` releases every record of
    /// the batch, and the producer is woken if it sleeps.
    pub fn end_batch(&mut self) {
        if std::mem::replace(&mut self.batching, false) {
            self.ring
                .ctl
                .cons
                .head
                .store(self.head | self.in_message as u64, Release);
            self.ring.space_ready().notify(1);
        }
    }

    /// Records whether this consumer's head, once the next record is
    /// released, is inside a fragmented message (the layer above's state,
    /// for a consumer that may take this end over: it must drop the rest
    /// of that message). It is published with that release, in the same
    /// store as `head`: a consumer that dies before the release leaves the
    /// flag that describes the head it leaves, never one a record off.
    pub fn set_in_message(&mut self, yes: bool) {
        self.in_message = yes;
    }

    /// Whether the head is inside a fragmented message, as last recorded.
    pub fn in_message(&self) -> bool {
        self.in_message
    }

    /// Publishes the in-message flag at once, releasing nothing (for a
    /// consumer whose producer left in the middle of a message).
    pub fn publish_in_message(&mut self) {
        self.ring
            .ctl
            .cons
            .head
            .store(self.head | self.in_message as u64, Release);
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
            let end = self.head.wrapping_add(size);
            if ahead(self.tail, end) > 0 {
                self.tail = end;
            }
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
            || need > self.tail.wrapping_sub(self.head)
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
    /// long) consumes nothing and says `Ok(None)`. The general form of the
    /// layer above's receive fast path (`pop_plain_as`), which handles
    /// everything else itself.
    #[inline]
    pub fn try_pop_plain(&mut self, dst: &mut [u8]) -> Result<Option<usize>> {
        let Some((off, len, need)) = self.peek_plain()? else {
            return Ok(None);
        };
        if len > dst.len() {
            return Ok(None);
        }
        self.ring
            .copy_out(off + RECORD_HEADER as u64, &mut dst[..len]);
        crate::fault::fault_point!("spsc.read.before_release");
        self.advance(need);
        Ok(Some(len))
    }

    /// The receive fast path: [`try_pop_plain`](Self::try_pop_plain) with
    /// any error read as `None` (the caller's general path reports it),
    /// for a caller that knows whether this process publishes with a
    /// compiler barrier only (`light`, as [`Wake::notify_as`] takes it).
    ///
    /// The common case (a flagless record in this lap, fitting `dst`) is
    /// inlined into the caller, checked as `pop_plain_many` checks each
    /// record: one comparison of the header's high half (tag and flags),
    /// and the record's end inside the data area. Everything else (nothing
    /// there, padding, a flagged or corrupt header, a short `dst`) goes to
    /// `try_pop_plain`, out of line.
    ///
    /// Outside a batch (the layer above's batches end on every exit, panics
    /// included): it releases the record at once, with its own store.
    #[inline(always)]
    pub(crate) fn pop_plain_as(&mut self, dst: &mut [u8], light: bool) -> Option<usize> {
        debug_assert!(!self.batching, "pop_plain_as inside a batch");
        let (head, cap) = (self.head, self.ring.cap);
        let off = head & (cap - 1);
        // SYNC POINT: as in `published_header`.
        let word = self.ring.word(off).load(Acquire);
        let len = word as u32 as usize;
        let need = record_size(len as u64);
        let end = head.wrapping_add(need);
        // Published in `head`'s lap with no flags (the high half is the
        // lap's), and inside that lap (so inside the data area).
        if (word ^ self.lap.hi) >> FLAGS_SHIFT != 0 || !self.lap.holds(end, cap) || len > dst.len()
        {
            return self.pop_plain_rest(dst);
        }
        self.ring
            .copy_out(off + RECORD_HEADER as u64, &mut dst[..len]);
        crate::fault::fault_point!("spsc.read.before_release");
        // As `saw_published`, then `advance` outside a batch. `tail`, the
        // bound `check` holds records to, need not move past `end`: every
        // `Record` is made by `try_peek`, which moves it over the record
        // first. Kept at least `head`, as everywhere.
        self.tail = end;
        self.head = end;
        self.ring
            .ctl
            .cons
            .head
            .store(end | self.in_message as u64, Release);
        self.ring.space_ready().notify_as(1, light);
        Some(len)
    }

    /// `pop_plain_as` past its inlined common case; refills the lap cache.
    #[cold]
    #[inline(never)]
    fn pop_plain_rest(&mut self, dst: &mut [u8]) -> Option<usize> {
        let popped = self.try_pop_plain(dst).ok().flatten();
        self.lap = Lap::of(self.head, self.ring.cap);
        popped
    }

    /// The next record if it carries no flags, read in place: `f` is
    /// handed its payload (which nobody writes until it returns), then the
    /// record is consumed: `Ok(true)`. `Ok(false)`, consuming nothing, if
    /// there is none now or it carries flags. If `f` panics the record
    /// stays. The in-place batch receive of the layer above.
    #[cfg(not(loom))]
    #[inline]
    pub fn try_pop_plain_with(&mut self, f: impl FnOnce(&[u8])) -> Result<bool> {
        let Some((off, len, need)) = self.peek_plain()? else {
            return Ok(false);
        };
        // SAFETY: `off + 8 + len <= cap` (peek_plain): inside the data
        // area, in a published record this consumer has not released, which
        // the protocol's producer does not write until then.
        let payload = unsafe {
            std::slice::from_raw_parts(
                self.ring.data.add((off + RECORD_HEADER as u64) as usize),
                len,
            )
        };
        f(payload);
        crate::fault::fault_point!("spsc.read.before_release");
        self.advance(need);
        Ok(true)
    }

    /// The batch fast path: hands `f` up to `max` flagless records in
    /// place, one after another, while the next one is published in the
    /// current lap; stops at the first that is not there, carries flags
    /// (padding included), or fails a check (the caller's general path
    /// reports it). The count handed. Between
    /// [`begin_batch`](Self::begin_batch) and
    /// [`end_batch`](Self::end_batch), which releases them; if `f` panics,
    /// the record it was handed stays, those before are released there.
    /// Called outside a batch, it releases them itself, before returning.
    ///
    /// Per message only what protects this reader is checked: the header
    /// word, read from shared memory, must carry this lap's tag and no
    /// flags (one comparison of its high half), and the record must end
    /// inside the data area. The lap tag and the room to the end of the
    /// data area come from one position, per lap.
    #[inline]
    pub fn pop_plain_many(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        if !self.batching {
            /// Ends the batch however `pop_plain_many` is left.
            struct Batch<'c, 'a>(&'c mut Consumer<'a>);
            impl Drop for Batch<'_, '_> {
                fn drop(&mut self) {
                    self.0.end_batch();
                }
            }
            self.begin_batch();
            let b = Batch(self);
            return b.0.pop_plain_many(max, f);
        }
        let (cap, mask) = (self.ring.cap, self.ring.cap - 1);
        let mut n = 0;
        'laps: while n < max {
            let off = self.head & mask;
            // The high half of a published flagless header at `head`.
            let expect = lap_tag(self.head, cap) << (TAG_SHIFT - FLAGS_SHIFT);
            let mut room = cap - off;
            let mut at = off;
            while n < max {
                // SYNC POINT: as in `published_header`.
                let word = self.ring.word(at).load(Acquire);
                let need = record_size(word as u32 as u64);
                if word >> FLAGS_SHIFT != expect || need > room {
                    break 'laps;
                }
                self.hand_out(at, word as u32 as usize, &mut f);
                // At once: if the next `f` panics, `end_batch` releases up
                // to here.
                self.head = self.head.wrapping_add(need);
                at += need;
                room -= need;
                n += 1;
                if room == 0 {
                    continue 'laps; // the next lap: a new tag
                }
            }
        }
        if ahead(self.tail, self.head) > 0 {
            self.tail = self.head;
        }
        n
    }

    /// Hands `f` the `len` payload bytes of the published, unreleased
    /// record at data offset `at` (`at + 8 + len <= cap`, checked).
    #[inline(always)]
    fn hand_out(&self, at: u64, len: usize, f: &mut impl FnMut(&[u8])) {
        let base = at + RECORD_HEADER as u64;
        #[cfg(not(loom))]
        {
            // SAFETY: `base + len <= cap` (the caller's check): inside the
            // data area, in a published record this consumer has not
            // released, which the producer does not write until then.
            f(unsafe { std::slice::from_raw_parts(self.ring.data.add(base as usize), len) });
        }
        #[cfg(loom)]
        {
            let mut v = vec![0u8; len];
            self.ring.copy_out(base, &mut v);
            f(&v);
        }
    }

    /// The flagless record at the head, padding before it skipped:
    /// (data offset, payload length, bytes it spans), checked as
    /// [`try_peek`](Self::try_peek) checks it; `None` if there is none now
    /// or it carries flags. The receive fast paths' peek, with no
    /// [`Record`] made and checked in between.
    #[inline(always)]
    fn peek_plain(&mut self) -> Result<Option<(u64, usize, u64)>> {
        let Some(word) = self.published_header() else {
            return Ok(None);
        };
        if (word >> FLAGS_SHIFT) & FLAGS_MASK != 0 {
            return self.peek_plain_after(word);
        }
        self.plain_at(word).map(Some)
    }

    /// `peek_plain` past a flagged header `word` at the head: skips it if
    /// it is padding (at most one padding record precedes a record).
    #[cold]
    fn peek_plain_after(&mut self, word: u64) -> Result<Option<(u64, usize, u64)>> {
        if (word >> FLAGS_SHIFT) as u32 & PAD == 0 {
            return Ok(None);
        }
        let size = record_extent(word, self.head & (self.ring.cap - 1), self.ring.cap)?;
        self.saw_published(size);
        self.advance(size);
        let Some(word) = self.published_header() else {
            return Ok(None);
        };
        match ((word >> FLAGS_SHIFT) & FLAGS_MASK) as u32 {
            0 => self.plain_at(word).map(Some),
            f if f & PAD != 0 => Err(Error::Corrupt("padding after padding")),
            _ => Ok(None),
        }
    }

    /// The published flagless header `word` at the head, checked: (data
    /// offset, payload length, bytes it spans).
    #[inline(always)]
    fn plain_at(&mut self, word: u64) -> Result<(u64, usize, u64)> {
        let cap = self.ring.cap;
        let off = self.head & (cap - 1);
        let need = record_size(word as u32 as u64);
        if off + need > cap {
            return Err(Error::Corrupt("record crosses the end of the data area"));
        }
        self.saw_published(need);
        Ok((off, word as u32 as usize, need))
    }

    /// Notes that a record of `size` bytes at the head is published: the
    /// bound `check` holds records to.
    #[inline(always)]
    fn saw_published(&mut self, size: u64) {
        let end = self.head.wrapping_add(size);
        if ahead(self.tail, end) > 0 {
            self.tail = end;
        }
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
