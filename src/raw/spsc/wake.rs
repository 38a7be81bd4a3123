//! The event count each side of a ring sleeps on.

use super::super::sync::{fence, futex_wait, futex_wake, AtomicU32, Ordering::*};
use crate::sys::clock::Deadline;
use crate::sys::membarrier;
use crate::Result;

/// An event count with an asymmetric fence: "sleep until changed" for one
/// side of a ring. 8 bytes; all-zero is the initial state; any bits are
/// safe (at worst they cost a needless wake-up call).
///
/// Waiter: `sleepers += 1`, full fence, then [`membarrier::heavy_barrier`]
/// (every running thread of a registered process executes a full barrier),
/// read `seq` (the key), re-check the condition, `FUTEX_WAIT(seq, key)`,
/// `sleepers -= 1`. Notifier (after publishing): a full fence, or only a
/// compiler barrier if this process is registered for `membarrier` (then
/// the waiter's heavy barrier stands in for it); if `sleepers != 0`,
/// `seq += 1` and `FUTEX_WAKE`. SYNC POINT: the Dekker pair "announce, then
/// re-check" against "publish, then look for sleepers": either the notifier
/// sees the announcement, or the waiter's re-check sees the publication.
/// Without `membarrier` (other kernels, loom, Miri) both sides use full
/// fences, exactly as [`EventCount`](super::EventCount) does.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Wake {
    /// Bumped by notifiers that saw a sleeper; the futex word.
    seq: AtomicU32,
    /// Waiters between `prepare` and the end of their wait.
    sleepers: AtomicU32,
}

/// What [`Wake::prepare`] read: the futex value to sleep on, and whether
/// the heavy barrier was issued (if not, a light notifier may be missed, so
/// the waiter must sleep in short slices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a prepared waiter must wait or cancel, or `sleepers` stays raised"]
pub(crate) struct WakeKey {
    seq: u32,
    covered: bool,
}

impl WakeKey {
    /// Whether every notifier, light or not, is sure to see this waiter.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn covered(&self) -> bool {
        self.covered
    }
}

impl Wake {
    pub(super) fn new() -> Wake {
        Wake {
            seq: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
        }
    }

    /// Announces a waiter. Re-check the condition after this, then
    /// [`wait`](Self::wait) or [`cancel`](Self::cancel).
    #[inline]
    pub(crate) fn prepare(&self) -> WakeKey {
        self.sleepers.fetch_add(1, Relaxed);
        fence(SeqCst); // SYNC POINT: pairs with the fence (or the light
                       // notifier's compiler barrier + our heavy barrier).
        let covered = !cfg!(loom) && membarrier::heavy_barrier();
        WakeKey {
            seq: self.seq.load(Acquire),
            covered,
        }
    }

    /// Withdraws an announcement.
    #[inline]
    pub(crate) fn cancel(&self, _key: WakeKey) {
        self.sleepers.fetch_sub(1, Relaxed);
    }

    /// Sleeps until notified after `key` was taken, or until `until`
    /// ([`Error::Timeout`]). May return early. Ends the announcement.
    pub(crate) fn wait(&self, key: WakeKey, until: Option<Deadline>) -> Result<()> {
        let r = futex_wait(&self.seq, key.seq, until);
        self.sleepers.fetch_sub(1, Relaxed);
        r
    }

    /// Wakes up to `n` sleepers, if any announced themselves; call it after
    /// publishing. A registered process pays a compiler barrier and a load.
    #[inline(always)]
    pub(crate) fn notify(&self, n: u32) {
        self.notify_as(n, membarrier::registered());
    }

    /// [`notify`](Self::notify) for a caller that knows whether this
    /// process is registered for `membarrier` in the current fork
    /// generation (`light`: what [`membarrier::registered`] says now; a
    /// caller that is unsure passes `false`, which is always safe).
    #[inline(always)]
    pub(crate) fn notify_as(&self, n: u32, light: bool) {
        if !cfg!(loom) && light {
            std::sync::atomic::compiler_fence(SeqCst);
        } else {
            fence(SeqCst);
        }
        if self.sleepers.load(Relaxed) != 0 {
            self.notify_slow(n);
        }
    }

    /// Wakes every sleeper (full fence: for the rare close).
    pub(crate) fn notify_all(&self) {
        fence(SeqCst);
        if self.sleepers.load(Relaxed) != 0 {
            self.notify_slow(u32::MAX);
        }
    }

    #[cold]
    fn notify_slow(&self, n: u32) {
        self.seq.fetch_add(1, Release);
        futex_wake(&self.seq, n.min(i32::MAX as u32));
    }
}
