//! Waiting: spin, yield, then sleep on an event count in slices, with the
//! asymmetric fence that lets publishers skip a full fence (`wake`), and
//! the watch for a ring stopped at a held slot that starts a recovery.

use super::*;

/// The publisher's half of the asymmetric fence: a compiler barrier in a
/// process registered for `membarrier`, a full fence otherwise (and always
/// under loom, which models no `membarrier`).
#[inline]
pub(super) fn light_fence() {
    if !cfg!(loom) && (membarrier::registered() || register_after_fork()) {
        std::sync::atomic::compiler_fence(SeqCst);
    } else {
        fence(SeqCst);
    }
}

/// A process forked after the ring was attached inherits the ring but
/// not the parent's `membarrier` registration (it is per process, and
/// `registered` follows the fork generation): without this, every
/// publish of a forked worker paid a full fence, which was over a
/// quarter of a send's time between processes (`perf`, 2P2C). Registers
/// once per fork generation; `false` (full fences) where that fails.
/// Sound mid-stream for the reason `attach`'s registration is: a waiter
/// whose heavy barrier ran before our registration returned is seen by
/// our later loads (the system call orders them), and one after it
/// covers our light publishes.
#[cold]
#[inline(never)]
fn register_after_fork() -> bool {
    #[cfg(not(any(loom, miri)))]
    {
        use std::sync::atomic::{AtomicU64 as StdU64, Ordering};
        // The generation tried last: one attempt per generation, so an
        // unsupported kernel costs one system call, not one per publish.
        static TRIED: StdU64 = StdU64::new(u64::MAX);
        let gen = crate::sys::fork::generation();
        if TRIED.swap(gen, Ordering::Relaxed) == gen {
            return false;
        }
        membarrier::register()
    }
    #[cfg(any(loom, miri))]
    false
}

/// The waiter's half: after `EventCount::prepare` (whose fence orders the
/// announcement), a full barrier on every CPU running a registered
/// process's thread. `false` if it could not be issued: a light publisher
/// may then be missed, and the waiter sleeps in short slices.
pub(super) fn heavy_prepare() -> bool {
    cfg!(loom) || membarrier::heavy_barrier()
}

impl MpmcRef {
    /// After a commit (release): wakes one sleeper on `mine` (consumers
    /// for a commit, producers for a release), and passes a wake-up on to
    /// `other` if the slot after ours, `next`, is ready for it (its stamp is
    /// `ready`).
    ///
    /// Why pass it on: commits (and releases) complete out of order. The
    /// notification for a message at `head + 1` wakes a consumer that
    /// cannot take it while the slot at `head` is reserved but not
    /// committed, and goes back to sleep. When that slot is committed, its
    /// single wake-up reaches one consumer, which takes it — and would
    /// leave the next, already committed, message to sleepers nobody
    /// wakes. So whoever releases a claimed slot looks at the slot after it
    /// and, if that one is committed and a consumer sleeps, wakes one more;
    /// producers do the same for each other at commit. (loom found the
    /// lost wake-up this prevents: `loom_mpmc_2p2c`.) The check happens at
    /// release/commit rather than right after the claim/reservation, to
    /// share one fence with the notify: a slot held for a long time
    /// (zero copy) can delay the passed-on wake-up, at most by one sleep
    /// slice, since every sleeper re-checks on its own at least every
    /// 200 ms.
    ///
    /// SYNC POINT: the SeqCst fence orders our claim (the CAS, earlier) and
    /// our stamp store before the loads of `sleepers` and of the next
    /// stamp, against the fences of `EventCount::prepare` (a sleeper
    /// announced after it sees our claim and our stamp) and
    /// `EventCount::notify` (a committer whose store we miss sees the
    /// sleepers, and its wake-up reaches someone who sees our claim).
    ///
    /// In a process registered for `membarrier` (see `sys::membarrier`)
    /// the fence is only a compiler barrier: every waiter, after its
    /// `prepare` fence, issues the heavy barrier ([`heavy_prepare`]), which
    /// runs a full barrier on every CPU running a registered thread, so the
    /// Dekker pair still holds: either that barrier came after our stamp
    /// store (the waiter's re-check sees it) or before our loads (we see
    /// the waiter). This fence was the largest cost of a message: a store
    /// to a line the other side holds, then a fence, stalls for a
    /// cross-core round trip.
    #[inline]
    pub(super) fn wake(&self, mine: &EventCount, other: &EventCount, next: u64, ready: u64) {
        light_fence();
        if mine.has_sleepers() {
            mine.notify(1);
        }
        if other.has_sleepers() {
            if self.slot(next).stamp.load(Acquire) == ready {
                other.notify(1);
            } else if std::ptr::eq(other, &self.ring().not_empty.0)
                && self.ring().geo.0.closed.load(Acquire) != 0
            {
                // After a close, a consumer that released (or skipped) a
                // slot with nothing committed behind it may have settled
                // the last slot the others wait for before `Closed`: wake
                // them all (`close`'s own wake-up came while a reservation
                // was still open). A commit or cancel after the close wakes
                // one consumer, which takes or skips that slot and so comes
                // here. The fence above orders our stamp store before the
                // load of the closed hint, against `EventCount::prepare`;
                // a hint we miss is set before `close` notifies everyone.
                other.notify_all();
            }
        }
    }

    /// Runs `attempt` until it gives something other than `retry`,
    /// spinning briefly, then sleeping on `ec` in slices of at most 200 ms
    /// until `until` (`None`: no limit). `Timeout` once `until` passed.
    ///
    /// `stall` says what a wait may be stuck behind: `Some(producer)`
    /// watches [`stalled`](Self::stalled) for that side and runs
    /// [`recover`](Self::recover) once the same slot has held the ring for
    /// `GRACE` (50 ms); `None` (`join`) recovers at each slice end.
    pub(super) fn wait_on<R>(
        &self,
        ec: &EventCount,
        retry: fn(&Error) -> bool,
        until: Option<Deadline>,
        stall: Option<bool>,
        mut attempt: impl FnMut() -> Result<R>,
    ) -> Result<R> {
        let mut backoff = Backoff::new();
        let mut yields = 0;
        let mut attempts = 0u32;
        // The held slot we saw the ring stopped at, and since when.
        let mut stopped: Option<(u64, Deadline)> = None;
        loop {
            match attempt() {
                Err(e) if retry(&e) => {}
                other => return other,
            }
            if until == Some(Deadline::PASSED) {
                return Err(Error::Timeout);
            }
            // A deadline that passed already (`_timeout(Duration::ZERO)`,
            // or one spent spinning and yielding): no more attempts. Read
            // the clock only where the waiting costs more than the read.
            if !cfg!(loom)
                && (attempts == 0 || backoff.is_completed())
                && until.is_some_and(Deadline::has_passed)
            {
                return Err(Error::Timeout);
            }
            attempts += 1;
            if !backoff.is_completed() {
                backoff.spin();
                continue;
            }
            // Then yield a few times: with more processes than CPUs (the
            // common case for a work queue), the peer we wait for often
            // needs this very CPU, and a yield hands it over for far less
            // than a futex sleep and the wake-up system call it costs the
            // peer. Under loom this is only more interleavings.
            if !cfg!(loom) && yields < YIELDS {
                yields += 1;
                std::thread::yield_now();
                continue;
            }
            let mut slice = slice_end(until);
            #[cfg(loom)]
            let stall = self.track.then_some(stall);
            #[cfg(not(loom))]
            let stall = Some(stall);
            match stall {
                // (loom only) a model without dead peers: no recovery.
                None => {}
                Some(stall) => match stall {
                    Some(producer) => match self.stalled(producer) {
                        Some(pos) => {
                            let due = match stopped {
                                Some((at, since)) if at == pos => since.has_passed(),
                                _ => {
                                    stopped = Some((pos, Deadline::after(GRACE)));
                                    false
                                }
                            };
                            // Loom has no clock (a timed wait sleeps until
                            // woken): there, look at once.
                            if due || cfg!(loom) {
                                stopped = None;
                                if self.recover() > 0 {
                                    continue;
                                }
                            }
                            slice = slice.min(Deadline::after(GRACE));
                        }
                        None => stopped = None,
                    },
                    None => {
                        if self.recover() > 0 {
                            continue;
                        }
                    }
                },
            }
            let key = ec.prepare();
            // The waiter's half of the asymmetric fence (see `wake`).
            let covered = heavy_prepare();
            match attempt() {
                Err(e) if retry(&e) => {}
                other => {
                    ec.cancel(key);
                    return other;
                }
            }
            if !covered {
                slice = slice.min(Deadline::after(UNCOVERED_SLICE));
            }
            match ec.wait(key, Some(slice)) {
                Ok(()) => {}
                // The end of a slice: look again (closed? room? data?).
                Err(Error::Timeout) if !until.is_some_and(|u| slice >= u) => {}
                // The caller's deadline, or no futex on this platform
                // (`Unsupported`): never a busy loop.
                Err(e) => return Err(e),
            }
        }
    }

    /// [`try_reserve`](Self::try_reserve), waiting for room until `until`.
    #[inline]
    pub(crate) fn reserve_until(&self, until: Option<Deadline>) -> Result<SlotRef<'_>> {
        // The first attempt inline; the waiting loop out of line.
        match self.try_reserve() {
            Err(Error::Full) => {}
            other => return other,
        }
        self.reserve_wait(until)
    }

    #[inline(never)]
    pub(super) fn reserve_wait(&self, until: Option<Deadline>) -> Result<SlotRef<'_>> {
        let ec = &self.ring().not_full.0;
        self.wait_on(
            ec,
            |e| matches!(e, Error::Full),
            until,
            Some(true),
            || self.try_reserve(),
        )
    }

    /// [`try_claim`](Self::try_claim), waiting for a message until `until`.
    #[inline]
    pub(crate) fn claim_until(
        &self,
        until: Option<Deadline>,
        mut check: impl FnMut(usize) -> Result<()>,
    ) -> Result<SlotRef<'_>> {
        match self.try_claim(&mut check) {
            Err(Error::Empty) => {}
            other => return other,
        }
        self.claim_wait(until, check)
    }

    #[inline(never)]
    pub(super) fn claim_wait(
        &self,
        until: Option<Deadline>,
        mut check: impl FnMut(usize) -> Result<()>,
    ) -> Result<SlotRef<'_>> {
        let ec = &self.ring().not_empty.0;
        self.wait_on(
            ec,
            |e| matches!(e, Error::Empty),
            until,
            Some(false),
            || self.try_claim(&mut check),
        )
    }
}

/// The end of the next sleep slice: at most [`SLICE`] from now, never past
/// `until`.
pub(super) fn slice_end(until: Option<Deadline>) -> Deadline {
    let s = Deadline::after(SLICE);
    match until {
        Some(u) => u.min(s),
        None => s,
    }
}
