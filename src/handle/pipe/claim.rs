//! Claims and take-over: which process drives an end, taking an end over
//! after `fork` or from another process (sending an abort, skipping the
//! rest of a message the previous user was inside), and whether a close
//! closes the end for everyone.

use super::*;

impl Connection {
    /// Records this process as the end's user (needed once per process:
    /// done by the first operation, or here). Makes this process's death
    /// visible to the peer. An end inherited through `fork` is taken over
    /// from the parent (which from then on gets [`Error::AlreadyClaimed`]
    /// from this end); calling `claim` explicitly also takes an end back
    /// from a process that took it over.
    ///
    /// Taking a sending end over sends an abort record first (the previous
    /// user may have left a fragmented message half-sent); taking a
    /// receiving end over inside a fragmented message drops the rest of
    /// that message.
    pub fn claim(&mut self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        if self.claimed_gen == fork::generation() && self.owns_claim() {
            return Ok(());
        }
        self.claim_slow()
    }

    #[cold]
    pub(super) fn claim_slow(&mut self) -> Result<()> {
        // A forked child is not registered for membarrier: register again
        // before publishing with a compiler barrier only.
        let light = membarrier::register();
        let me = proc::pid();
        let start = proc::start_time(me).unwrap_or(0);
        let mut taken_over = false;
        for (ring, role) in self.roles() {
            taken_over |= ring.claimant_pid(role) != 0;
            ring.claim(role, me, start, false)?;
        }
        self.attach_sides()?;
        if taken_over && self.tx.is_some() {
            // An extra ABORT is harmless: the receiver drops nothing whole.
            self.abort_pending = true;
        }
        if let Some(rx) = &self.rx {
            // What this handle holds of a message is stale (another
            // process may have received since); the shared flag says
            // whether the ring's head is inside a fragmented message.
            self.partial = None;
            self.skipping = rx.c.as_ref().is_some_and(|c| c.in_message());
        }
        self.claimed_gen = fork::generation();
        self.claimed_pid = me;
        self.light = light;
        Ok(())
    }

    /// Whether the shared claimants still name this process's claim (a
    /// load from the ends line, which every send and receive reads anyway).
    #[inline]
    pub(super) fn owns_claim(&self) -> bool {
        self.tx.as_ref().map_or(true, |t| {
            t.ring.claimant_pid(Role::Writer) == self.claimed_pid
        }) && self.rx.as_ref().map_or(true, |r| {
            r.ring.claimant_pid(Role::Reader) == self.claimed_pid
        })
    }

    /// `ready_fast` for a receive alone: the receiving end's claim only (a
    /// claim takes every end of the handle at once, so a take-over shows
    /// on each; `send_fast` and `recv_fast` make the same test on the
    /// fields).
    #[inline]
    pub(super) fn ready_fast_rx(&self) -> bool {
        self.ready_fast_end(self.rx.as_ref().map(|r| &r.ring), Role::Reader)
    }

    /// Open, claimed in this fork generation, and `ring`'s `role` end (if
    /// this handle has it) still claimed by this process.
    #[inline(always)]
    fn ready_fast_end(&self, ring: Option<&Ring<'static>>, role: Role) -> bool {
        !self.closed
            && self.claimed_gen == fork::generation()
            && ring.map_or(true, |r| r.claimant_pid(role) == self.claimed_pid)
    }

    /// Whether this handle may be used now: claimed in this process (else
    /// claims now), and not taken over by another process since
    /// ([`Error::AlreadyClaimed`]: two processes must never drive one end).
    #[inline]
    pub(super) fn ready(&mut self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        if self.claimed_gen != fork::generation() {
            self.claim_slow()?;
        } else if !self.owns_claim() {
            return Err(Error::AlreadyClaimed);
        }
        Ok(())
    }

    /// The fast paths' test: claimed in this process, still ours, open.
    #[inline]
    pub(super) fn ready_fast(&self) -> bool {
        !self.closed && self.claimed_gen == fork::generation() && self.owns_claim()
    }

    /// Whether closing this handle closes the end for every process: the
    /// end is claimed by this process, or unclaimed while no `fork` since
    /// its creation can have copied it into another process. An end
    /// another process claimed, or an unclaimed one that a `fork` may have
    /// copied, is closed only in this handle.
    pub(super) fn closes_for_all(&self) -> bool {
        let me = proc::pid();
        self.roles()
            .iter()
            .all(|(ring, role)| match ring.claimant_pid(*role) {
                0 => fork::forks() == self.created_forks,
                pid => pid == me,
            })
    }
}
