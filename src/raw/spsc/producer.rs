//! The producer's side: reserve, write, publish.

use super::super::sync::Ordering::*;
use super::*;

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
    pub(super) ring: usize,
    pub(super) pos: u64,
    pub(super) off: u64,
    pub(super) len: u32,
    pub(super) flags: u32,
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
/// The producer's side of a ring. Its cached `head` lives here.
#[derive(Debug)]
pub struct Producer<'a> {
    pub(super) ring: Ring<'a>,
    pub(super) tail: u64,
    pub(super) head: u64,
    /// Inside [`begin_batch`](Producer::begin_batch).
    pub(super) batching: bool,
    /// The batch's first header (position, word), stored last.
    pub(super) deferred: Option<(u64, u64)>,
    /// `tail`'s lap, for the one-record fast path (which fault injection
    /// routes through the general path).
    #[cfg_attr(feature = "fault-injection", allow(dead_code))]
    pub(super) lap: Lap,
}

impl<'a> Producer<'a> {
    /// The ring.
    pub fn ring(&self) -> Ring<'a> {
        self.ring
    }

    #[inline]
    fn free(&self) -> u64 {
        self.ring.cap - self.tail.wrapping_sub(self.head)
    }

    /// SYNC POINT (consumer's Release store of `head` in `release`): after
    /// this Acquire load the space below `head` is no longer read.
    #[inline]
    fn refresh_head(&mut self) -> Result<()> {
        // The consumer's in-message bit rides in `head`'s low bit.
        let h = self.ring.ctl.cons.head.load(Acquire) & !IN_MESSAGE;
        // `h` in [head, tail], distances taken across the 2^64 wrap.
        if h.wrapping_sub(self.head) > self.tail.wrapping_sub(self.head) || h % 8 != 0 {
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
    #[inline(always)]
    fn publish(&mut self, size: u64, word: u64) {
        let mask = self.ring.cap - 1;
        let end = self.tail.wrapping_add(size);
        if end
            .wrapping_add(RECORD_HEADER as u64)
            .wrapping_sub(self.head)
            <= self.ring.cap
        {
            self.ring.word(end & mask).store(0, Relaxed);
        }
        if !self.batching {
            self.ring.word(self.tail & mask).store(word, Release);
        } else if self.deferred.is_none() {
            // The batch's first header: stored by `end_batch`, after every
            // other record of the batch (see there).
            self.deferred = Some((self.tail, word));
        } else {
            // Ordered before the consumer's reads by the first header's
            // Release store, which the consumer must acquire first.
            self.ring.word(self.tail & mask).store(word, Relaxed);
        }
        self.tail = end;
        if self.batching {
            return;
        }
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
                if !self.batching {
                    self.ring.data_ready().notify(1);
                }
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
            || g.pos.wrapping_add(need).wrapping_sub(self.head) > self.ring.cap
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
        if !self.batching {
            self.ring.data_ready().notify(1);
        }
    }

    /// Starts a batch: records committed until
    /// [`end_batch`](Self::end_batch) are published there by one store.
    pub fn begin_batch(&mut self) {
        self.batching = true;
    }

    /// Ends a batch: publishes every record committed since
    /// [`begin_batch`](Self::begin_batch) with one Release store, of the
    /// batch's first header, then the `tail` hint, and wakes the consumer.
    ///
    /// SYNC POINT (pairs with the consumer's Acquire load of that header):
    /// the other records' payloads and headers (stored Relaxed) and the zero
    /// past the last one happen before it, and the consumer reaches them
    /// only through it. A producer dying inside a batch leaves the first
    /// slot unpublished (0 or the previous lap's header): nothing of the
    /// batch is delivered, and a successor's walk stops there; its own
    /// publishes zero the word past each record, so the dead batch's
    /// headers further on are never reached.
    pub fn end_batch(&mut self) {
        self.batching = false;
        if let Some((pos, word)) = self.deferred.take() {
            self.ring
                .word(pos & (self.ring.cap - 1))
                .store(word, Release);
            self.ring.ctl.prod.tail.store(self.tail, Release);
            self.ring.data_ready().notify(1);
        }
    }

    /// The send fast path: `src` as one flagless record if it fits now
    /// without padding and takes at most half the ring; `false` otherwise
    /// (no room, the wrap, a corrupt `head`), and nothing was written: the
    /// caller then takes [`try_push`](Self::try_push)'s general path, which
    /// reports errors. It does what `try_push` does for such a record, with
    /// no grant made and checked in between.
    ///
    /// The common case (room below the cached `head`, outside a batch) is
    /// inlined into the caller; everything else (refreshing `head`, a
    /// batch) is out of line, so that the inlined part needs few registers.
    #[inline(always)]
    pub fn try_push_plain(&mut self, src: &[u8]) -> bool {
        self.push_plain_as(src, crate::sys::membarrier::registered())
    }

    /// [`try_push_plain`](Self::try_push_plain) for a caller that knows
    /// whether this process publishes with a compiler barrier only (`light`,
    /// as [`Wake::notify_as`] takes it): the layer above keeps that from
    /// its claim, and saves the check on every send.
    #[inline(always)]
    pub(crate) fn push_plain_as(&mut self, src: &[u8], light: bool) -> bool {
        #[cfg(feature = "fault-injection")]
        {
            let _ = light;
            // The fault points sit on the general path; a record over half
            // the ring is still refused here (the caller fragments it), as
            // on the plain path: whole records that large can deadlock two
            // ends sending to each other.
            record_size(src.len() as u64) <= self.ring.cap / 2
                && matches!(self.try_push(src, 0), Ok(true))
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            let (len, cap, tail) = (src.len() as u64, self.ring.cap, self.tail);
            let need = record_size(len);
            let end = tail.wrapping_add(need);
            // At most half the ring, inside `tail`'s lap (so not across the
            // end of the data area), and below the cached `head`
            // (`end - head <= cap` is `free() >= need`: `tail - head <= cap`
            // holds).
            if need > self.lap.half
                || !self.lap.holds(end, cap)
                || end.wrapping_sub(self.head) > cap
                || self.batching
            {
                return self.push_plain_rest(src);
            }
            let off = tail & (cap - 1);
            // As `publish` does outside a batch: the word past the record
            // zeroed if free and the payload written (in either order:
            // both before the header), then the header (Release), then the
            // hint. `len <= cap / 2 < 2^32` (attach bounds `cap`): fits the
            // header.
            if end
                .wrapping_add(RECORD_HEADER as u64)
                .wrapping_sub(self.head)
                <= cap
            {
                self.ring.word(end & (cap - 1)).store(0, Relaxed);
            }
            self.tail = end;
            self.ring.copy_in(off + RECORD_HEADER as u64, src);
            let word = self.lap.hi | len;
            debug_assert_eq!(word, header_word(tail, cap, len as u32, 0));
            // SYNC POINT: as in `publish`.
            self.ring.word(off).store(word, Release);
            self.ring.ctl.prod.tail.store(end, Release);
            self.ring.data_ready().notify_as(1, light);
            true
        }
    }

    /// `try_push_plain` past its inlined common case: refreshes the cached
    /// `head` if the record does not fit below it, pushes inside a batch
    /// through [`publish`](Self::publish), and refills the lap cache.
    #[cfg(not(feature = "fault-injection"))]
    #[cold]
    #[inline(never)]
    fn push_plain_rest(&mut self, src: &[u8]) -> bool {
        let pushed = self.push_plain_general(src);
        self.lap = Lap::of(self.tail, self.ring.cap);
        pushed
    }

    /// `try_push_plain` without the lap cache.
    #[cfg(not(feature = "fault-injection"))]
    fn push_plain_general(&mut self, src: &[u8]) -> bool {
        let (len, cap) = (src.len() as u64, self.ring.cap);
        let need = record_size(len);
        let off = self.tail & (cap - 1);
        if need > cap / 2 || off + need > cap {
            return false;
        }
        if self.free() < need && (self.refresh_head().is_err() || self.free() < need) {
            return false;
        }
        self.ring.copy_in(off + RECORD_HEADER as u64, src);
        let word = header_word(self.tail, cap, len as u32, 0);
        self.publish(need, word);
        if !self.batching {
            self.ring.data_ready().notify(1);
        }
        true
    }

    /// The batch fast path: pushes `next`, then the messages of `it`, as
    /// flagless records while each fits now without padding and takes at
    /// most half the ring; leaves the first that does not in `next` (no
    /// room, the wrap, or too long: the caller's general path takes it;
    /// `None` once `it` ran out). The count pushed. Between
    /// [`begin_batch`](Self::begin_batch) and
    /// [`end_batch`](Self::end_batch), which publishes them (called
    /// outside a batch, it makes one of its own).
    ///
    /// What `try_push_plain` does per message is done here per run of
    /// records: the room (to the end of the data area and below the cached
    /// `head`, refreshed at most once) and the lap tag come from one
    /// position; per message are left the length check, the copy and the
    /// header. The word past a record is zeroed only after the last one:
    /// the others' are overwritten by the next header, and none of them is
    /// reachable before `end_batch` stores the batch's first header.
    pub fn push_plain_many<B: AsRef<[u8]>>(
        &mut self,
        next: &mut Option<B>,
        it: &mut impl Iterator<Item = B>,
    ) -> usize {
        if !self.batching {
            self.begin_batch();
            let n = self.push_plain_many(next, it);
            self.end_batch();
            return n;
        }
        let mut cur = next.take();
        let n = self.push_run(&mut cur, it);
        *next = cur;
        n
    }

    /// `push_plain_many` on a local `cur` (kept in registers).
    #[inline(always)]
    fn push_run<B: AsRef<[u8]>>(
        &mut self,
        cur: &mut Option<B>,
        it: &mut impl Iterator<Item = B>,
    ) -> usize {
        #[cfg(feature = "fault-injection")]
        {
            // The fault points sit on the general path, per message.
            let mut n = 0;
            while cur
                .as_ref()
                .is_some_and(|m| self.try_push_plain(m.as_ref()))
            {
                *cur = it.next();
                n += 1;
            }
            n
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            let (cap, mask) = (self.ring.cap, self.ring.cap - 1);
            // A record over half the ring is refused (the caller fragments
            // it): whole records that large can deadlock two ends sending to
            // each other. A run is held to half the ring as well, which
            // bounds each of its records with no test per record.
            let half = cap / 2;
            let mut n = 0;
            let mut refreshed = false;
            loop {
                let (start, off) = (self.tail, self.tail & mask);
                // Bytes to the end of the data area, and of those free.
                let lap_room = cap - off;
                let mut room = lap_room.min(self.free()).min(half);
                let hi = lap_tag(start, cap) << TAG_SHIFT;
                let mut at = off;
                if self.deferred.is_none() {
                    // The batch's first header: stored by `end_batch`,
                    // after every other record of the batch.
                    match cur {
                        Some(m) if record_size(m.as_ref().len() as u64) <= room => {
                            let m = m.as_ref();
                            self.ring.copy_in(at + RECORD_HEADER as u64, m);
                            // `len <= cap / 2 < 2^32` (attach bounds `cap`).
                            self.deferred = Some((start, hi | m.len() as u64));
                            let need = record_size(m.len() as u64);
                            at += need;
                            room -= need;
                            n += 1;
                            *cur = it.next();
                        }
                        // It does not fit (the loop below stops at it
                        // too, at once), or no message: see below.
                        _ => {}
                    }
                }
                while let Some(m) = cur {
                    let m = m.as_ref();
                    let need = record_size(m.len() as u64);
                    if need > room {
                        break;
                    }
                    self.ring.copy_in(at + RECORD_HEADER as u64, m);
                    // Ordered before the consumer's reads by the first
                    // header's Release store, which it acquires first.
                    self.ring.word(at).store(hi | m.len() as u64, Relaxed);
                    at += need;
                    room -= need;
                    n += 1;
                    *cur = it.next();
                }
                if at != off {
                    self.tail = start.wrapping_add(at - off);
                    // The word past the last record, if free (see `publish`).
                    if self.free() >= RECORD_HEADER as u64 {
                        self.ring.word(self.tail & mask).store(0, Relaxed);
                    }
                }
                // Stopped by the cached `head` only: refresh it, once.
                let more = cur.as_ref().is_some_and(|m| {
                    let need = record_size(m.as_ref().len() as u64);
                    need <= half && need <= lap_room - (at - off) && need > self.free()
                });
                if !more || refreshed || self.refresh_head().is_err() {
                    return n;
                }
                refreshed = true;
            }
        }
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
