//! The consumers' side of the protocol: claim (CAS on `head`), skip
//! cancelled and poisoned slots, read, release (the stamp `p + one_lap`),
//! and the copying receive's fast path.

use super::*;

/// The copying receive's check: a message of `n` bytes fits a buffer of
/// `room` bytes.
#[inline]
pub(super) fn fits(n: usize, room: usize) -> Result<()> {
    if n > room {
        Err(Error::BufferTooShort { needed: n })
    } else {
        Ok(())
    }
}

impl MpmcRef {
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
    pub(super) fn try_claim_as(
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
    pub(super) fn release_pos(&self, pos: u64) {
        self.release_at(pos, self.next(pos));
    }

    /// `release_pos`, `next` being `self.next(pos)`.
    // Always: left to the heuristics it stayed out of line (a call per
    // receive: 18 instructions per message, callgrind).
    #[inline(always)]
    pub(super) fn release_at(&self, pos: u64, next: u64) {
        // SYNC POINT (Release): our reads of the payload before the stamp
        // that lets a producer overwrite it; pairs with `try_reserve`.
        self.slot(pos)
            .stamp
            .store(pos.wrapping_add(self.one_lap), Release);
        let r = self.ring();
        self.wake(&r.not_full.0, &r.not_empty.0, next, next.wrapping_add(1));
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
    // Always: the public one-message calls take it into their own frame.
    #[inline(always)]
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
    pub(crate) fn recv_copy_slow(&self, buf: &mut [u8], until: Option<Deadline>) -> Result<usize> {
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
    pub(super) fn drain_and_release(
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
}
