//! The joinable ring's task count: raised by each committed send, lowered
//! by `task_done` (and by the recovery of a dead consumer's slot); `join`
//! waits for zero.

use super::*;

impl MpmcRef {
    /// Counts one more task for the send about to commit as `seat`: in
    /// the seat's entry (one store to a line only its owner writes: no
    /// RMW on a shared line per send), or, for an untracked sender, in
    /// the shared `untracked_sent`.
    ///
    /// Why not one shared counter: a producer killed between raising it
    /// and its commit left the count one high for ever (`join` never
    /// returned), and nobody could tell afterwards whether the dead one had
    /// raised it. In its own entry the count and the commit are each one
    /// store: the recovery that poisons the reservation reads `sent`
    /// against `sent_idle` and settles the task exactly when it was
    /// counted ([`counted_by_dead`](Self::counted_by_dead)).
    ///
    /// SYNC POINT (Release): before the commit's stamp store, so that a
    /// consumer that claimed the message (Acquire) sees the task counted
    /// when it calls `task_done`.
    #[inline]
    pub(super) fn count_task(&self, seat: Seat) {
        match seat.index() {
            Some(i) => {
                let e = self.peer(i);
                e.sent.store(e.sent.load(Relaxed).wrapping_add(1), Release);
            }
            None => {
                self.ring().tasks.0.untracked_sent.fetch_add(1, SeqCst);
            }
        }
    }

    /// Ends the count of a send, after its commit's stamp store: `sent`
    /// and `sent_idle` agree again.
    #[inline]
    pub(super) fn end_count(&self, seat: Seat) {
        if let Some(i) = seat.index() {
            let e = self.peer(i);
            e.sent_idle.store(e.sent.load(Relaxed), Release);
        }
    }

    /// Whether the reservation at `pos`, held by dead peers only, had
    /// counted its task: an entry naming it shows `sent != sent_idle`.
    /// Read *before* the poisoning CAS (see [`poison`](Self::poison)):
    /// after it, another recoverer whose own CAS failed may already have
    /// set the entry idle (loom found that: the task then stayed counted
    /// for ever). Dead entries no longer change, and only the winner of
    /// the reservation can have counted, so the answer is stable; only
    /// the recoverer whose CAS wins acts on it, so the task is settled
    /// once.
    pub(super) fn counted_by_dead(&self, pos: u64) -> bool {
        (0..PEERS).map(|i| self.peer(i)).any(|e| {
            e.producing.load(Acquire) == pos && e.sent.load(Acquire) != e.sent_idle.load(Acquire)
        })
    }

    /// Every task counted so far: the entries' counts (those in use)
    /// and the untracked ones.
    fn sent_total(&self) -> u64 {
        let r = self.ring();
        let used = r.stats.0.peers_used.load(Acquire).min(PEERS as u64) as usize;
        (0..used).fold(r.tasks.0.untracked_sent.load(SeqCst), |n, i| {
            n.wrapping_add(self.peer(i).sent.load(SeqCst))
        })
    }

    /// `sent - done`, or 0 where garbage put `done` ahead.
    fn outstanding(sent: u64, done: u64) -> u64 {
        let d = sent.wrapping_sub(done);
        if d >= 1 << 63 {
            0
        } else {
            d
        }
    }

    /// Unfinished tasks (joinable rings): committed sends not yet matched
    /// by a [`task_done`](Self::task_done).
    pub fn unfinished(&self) -> u64 {
        // `done` first: the counts only grow, so this never reports fewer
        // tasks than were unfinished when `done` was read (no early `join`).
        let done = self.ring().tasks.0.done.load(SeqCst);
        Self::outstanding(self.sent_total(), done)
    }

    /// Marks one task done; an error if none is unfinished.
    pub fn task_done(&self) -> Result<()> {
        let d = &self.ring().tasks.0.done;
        let mut cur = d.load(SeqCst);
        let left = loop {
            // Read after `done`: a count this low was true when read.
            let left = Self::outstanding(self.sent_total(), cur);
            if left == 0 {
                return Err(Error::InvalidArgument(
                    "task_done called more times than items were sent",
                ));
            }
            match d.compare_exchange_weak(cur, cur.wrapping_add(1), SeqCst, SeqCst) {
                Ok(_) => break left,
                Err(now) => cur = now,
            }
        };
        if left == 1 {
            self.ring().tasks.0.all_done.notify_all();
        }
        Ok(())
    }

    /// Waits until no task is unfinished, or until `until`.
    pub(crate) fn join_until(&self, until: Option<Deadline>) -> Result<()> {
        let ec = &self.ring().tasks.0.all_done;
        self.wait_on(
            ec,
            |e| matches!(e, Error::WouldBlock),
            until,
            None,
            || {
                if self.unfinished() == 0 {
                    Ok(())
                } else {
                    Err(Error::WouldBlock)
                }
            },
        )
    }
}
