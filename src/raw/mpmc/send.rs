//! The producers' side of the protocol: reserve (CAS on `tail`), fill,
//! commit (the stamp `p + 1`) or cancel, and the copying send's fast path.

use super::*;

impl MpmcRef {
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
    pub(super) fn try_reserve_as(&self, seat: Seat) -> Result<SlotRef<'_>> {
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
            self.count_task(slot.seat);
        }
        fault_point!("mpmc.send.counted");
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
    pub(super) fn publish(&self, pos: u64, len: u32, seat: Seat) {
        self.publish_at(pos, self.next(pos), len, seat);
    }

    /// `publish`, `next` being `self.next(pos)` (the fast path has it).
    #[inline]
    pub(super) fn publish_at(&self, pos: u64, next: u64, len: u32, seat: Seat) {
        let s = self.slot(pos);
        s.len.store(len, Relaxed);
        // SYNC POINT (Release): payload and `len` before the stamp; pairs
        // with the Acquire load in `try_claim`.
        s.stamp.store(pos.wrapping_add(1), Release);
        if self.joinable {
            self.end_count(seat);
        }
        fault_point!("mpmc.send.committed_before_wake");
        // After the stamp (Release): a recoverer that sees the entry idle
        // sees the commit, and its poisoning CAS fails.
        self.unseat(seat, |p| &p.producing);
        let r = self.ring();
        self.wake(&r.not_empty.0, &r.not_full.0, next, next);
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
    // Always: the public one-message calls take it into their own frame.
    #[inline(always)]
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
    pub(crate) fn send_copy_slow(&self, bytes: &[u8], until: Option<Deadline>) -> Result<()> {
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
    // Always: left to the heuristics it stayed out of line once the fast
    // path moved into `Queue::send_bytes` (a call per send, callgrind).
    #[inline(always)]
    pub(super) fn fill_and_commit(&self, pos: u64, next: u64, bytes: &[u8], seat: Seat) {
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
            self.count_task(seat);
        }
        fault_point!("mpmc.send.counted");
        self.publish_at(pos, next, n as u32, seat);
    }
}
