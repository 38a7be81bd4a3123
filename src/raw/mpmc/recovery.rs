//! Taking slots back from dead peers: a dead producer's reservation is
//! poisoned, a dead consumer's borrowed slot freed (see the parent
//! module's "Dead peers" and the `peers` module for who counts as dead).

use super::*;

/// What a recovery attempt found at one position.
pub(super) enum Settled {
    /// The slot was taken back from a dead holder.
    Recovered,
    /// Nothing is held there any more (or never was): forget the entry.
    Resolved,
    /// Held, but maybe by someone alive: look again later.
    Wait,
}

impl MpmcRef {
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
    pub(super) fn is_past(later: u64, pos: u64) -> bool {
        let d = later.wrapping_sub(pos);
        d != 0 && d < 1 << 63
    }

    /// Where the ring is stopped at a slot someone holds: for a consumer
    /// (`producer == false`), the slot at `head` reserved but not
    /// committed; for a producer, the slot at `tail` still borrowed from
    /// the last lap. Both are normal for a moment; a stop that lasts is
    /// what [`recover`](Self::recover) looks into.
    pub(super) fn stalled(&self, producer: bool) -> Option<u64> {
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
    pub(super) fn live_claimant(&self, pos: u64, side: fn(&Peer) -> &AtomicU64) -> bool {
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
    pub(super) fn poison(&self, pos: u64) -> Settled {
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
        // Before the CAS (see `counted_by_dead`).
        let counted = self.joinable && self.counted_by_dead(pos);
        // A CAS: fails if the owner's commit (or cancel) landed after all.
        if s.stamp
            .compare_exchange(pos, pos.wrapping_add(2), AcqRel, Acquire)
            .is_err()
        {
            return Settled::Resolved;
        }
        r.stats.0.abandoned_sends.fetch_add(1, AcqRel);
        if counted {
            // The task will never be received: it counts as done
            // (saturating: the counts may be garbage).
            let _ = self.task_done();
        }
        // The consumers stopped here may all be asleep.
        r.not_empty.0.notify_all();
        Settled::Recovered
    }

    /// Frees the slot at `pos` if it is borrowed and every entry naming it
    /// is dead; the message is dropped.
    pub(super) fn free_borrowed(&self, pos: u64) -> Settled {
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
}
