//! How a blocked call waits: spin for the policy's budget, then sleep on
//! the ring's event count in slices, checking the peer's liveness.
//!
//! The spin never yields its CPU. It used to, after its first 5 µs (so
//! that a peer waiting for this very CPU would run at once), and that
//! yield was the cause of W1's millisecond tail: traced through the
//! `pipe.wait.*` fault points (timestamps of every path each side took, in
//! both processes; `benches/peers` issue 15), 1068 of the 1135 round trips
//! over 1 ms in 200 000 were one `sched_yield` lasting over 0.5 ms (the
//! scheduler hands the CPU to any other runnable task for the rest of its
//! slice), 64 had a futex sleep, none a slice timeout; without the yield,
//! on the same loaded machine, trips over 1 ms fell from 1135 to 107
//! (p99.9 4.5 ms to 0.23 ms), every one a futex sleep while the machine was
//! busy, woken by the peer (no missed wake-up). A peer that needs this CPU
//! now waits at most the spin budget, after which the waiter sleeps on the
//! futex and the scheduler runs the peer: a bounded cost, instead of a
//! slice of every other task.
use std::time::Duration;

use super::*;

/// The longest a blocked call sleeps before checking the peer's liveness.
pub(super) const SLICE: Duration = Duration::from_millis(100);
/// The slice when this process could not issue `membarrier` (see `Wake`).
pub(super) const SHORT_SLICE: Duration = Duration::from_millis(1);

/// The least the spin budget adapts down to (ns). The budget a wait spins
/// is at most the policy's: halved after a wait that spun it all and slept,
/// doubled after one the spin answered. Spinning pays only while the peer
/// runs on another CPU; when both share one (a loaded machine, where the
/// scheduler keeps two processes that wake each other together), every
/// spin is spent while the peer waits for this very CPU. With the full
/// 50 µs each half of a round trip cost 50 µs there (measured: W1 pinned
/// to one CPU, 116 µs a round trip against 17 µs with `park`); adapted,
/// about what `park` costs (BENCHMARKS.md, issue 15).
/// A peer on another CPU answers inside the small budget again, and the
/// budget grows back within a few waits.
pub(super) const MIN_SPIN: u64 = 2_000;

/// How a blocked call waits: spin for a budget, then sleep on the futex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitPolicy {
    pub(super) spin: Duration,
}

impl WaitPolicy {
    /// Sleep on the futex after a few hundred pause instructions: the
    /// cheapest for the CPU, the slowest answer (a futex wake, ~25 µs on a
    /// small VM).
    pub const fn park() -> Self {
        WaitPolicy {
            spin: Duration::ZERO,
        }
    }

    /// Spin (re-checking the ring) for up to `spin`, then sleep on the
    /// futex. The budget a connection spins adapts below `spin` (halved
    /// after a wait that spun it out, doubled after one the spin answered,
    /// never under 2 µs): a peer that shares this CPU cannot answer while
    /// this side spins.
    pub const fn spin_then_park(spin: Duration) -> Self {
        WaitPolicy { spin }
    }

    /// The spinning budget.
    pub const fn spin(&self) -> Duration {
        self.spin
    }
}

impl Default for WaitPolicy {
    /// Spin 50 µs, then sleep.
    fn default() -> Self {
        WaitPolicy::spin_then_park(Duration::from_micros(50))
    }
}

/// What a wait watches: one ring, one side's event count, the peer's role.
pub(super) struct Watch<'a> {
    pub(super) ring: Ring<'static>,
    pub(super) ec: &'static Wake,
    pub(super) peer: Role,
    pub(super) seg: &'a Segment,
    pub(super) anonymous: bool,
    pub(super) policy: WaitPolicy,
    /// The connection's last liveness check (monotonic ns).
    pub(super) last_check: &'a Cell<u64>,
    /// The connection's spin budget now (ns; see [`MIN_SPIN`]).
    pub(super) spin_now: &'a Cell<u64>,
}

impl Watch<'_> {
    /// Whether the peer is gone: its closed flag always, its process only
    /// when the last such check is more than a slice old (a `/proc` read).
    pub(super) fn peer_gone_checked(&self) -> bool {
        let now = monotonic_ns();
        if now.saturating_sub(self.last_check.get()) >= SLICE.as_nanos() as u64 {
            let gone = self.peer_gone();
            // A peer found gone is looked at again on the next call (it
            // does not come back), so every later call says so at once.
            self.last_check.set(if gone { 0 } else { now });
            gone
        } else {
            self.ring.is_closed(self.peer)
        }
    }

    /// Whether the peer closed its end or its process is gone.
    pub(super) fn peer_gone(&self) -> bool {
        if self.ring.is_closed(self.peer) {
            return true;
        }
        let (pid, start) = self.ring.claimant(self.peer);
        if pid == 0 {
            // Not claimed yet: an anonymous pipe's peer is (still) the
            // creating process; a named pipe's peer may connect later.
            return self.anonymous && !self.seg.creator_alive();
        }
        !proc::is_alive(pid, start)
    }

    /// Waits until `ready()` says yes: `Ok(())`, or `Disconnected` (the peer
    /// is gone and `ready()` still says no), or `Timeout` at `deadline`.
    pub(super) fn wait(
        &self,
        deadline: Option<Deadline>,
        mut ready: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        if ready()? {
            return Ok(());
        }
        crate::fault::fault_point!("pipe.wait.enter");
        if deadline == Some(Deadline::PASSED) {
            return Err(if self.peer_gone_checked() && !ready()? {
                Error::Disconnected
            } else {
                Error::Timeout
            });
        }
        // Spin.
        if self.policy.spin > Duration::ZERO {
            // Spinning catches a peer running on another CPU. It never
            // yields (see the module docs): a peer waiting for this CPU
            // runs once the budget is spent and this waiter sleeps.
            let full = self.policy.spin.as_nanos().min(u64::MAX as u128) as u64;
            let budget = self.spin_now.get().min(full);
            let start = monotonic_ns();
            let end = start.saturating_add(budget);
            let mut i = 0u32;
            loop {
                // One pause per check: a pause can cost over 100 cycles, and
                // the answer should be seen as soon as it lands.
                std::hint::spin_loop();
                if ready()? {
                    if budget < full {
                        self.spin_now.set(budget.saturating_mul(2).min(full));
                    }
                    return Ok(());
                }
                i = i.wrapping_add(1);
                if i % 64 != 0 {
                    continue;
                }
                let now = monotonic_ns();
                if self.ring.is_closed(self.peer) {
                    break;
                }
                if now >= end {
                    self.spin_now.set((budget / 2).max(MIN_SPIN.min(full)));
                    break;
                }
                if deadline.is_some_and(Deadline::has_passed) {
                    // A deadline inside the spin budget: one last look.
                    return if ready()? {
                        Ok(())
                    } else {
                        Err(Error::Timeout)
                    };
                }
            }
        } else {
            let mut b = crate::raw::backoff::Backoff::new();
            while !b.is_completed() {
                b.spin();
                if ready()? {
                    return Ok(());
                }
            }
        }
        // Sleep in slices. The closed flag is checked before every sleep;
        // the peer's process (a /proc read, ~10 µs) once per slice of
        // waiting, however often the sleep is interrupted: a death is seen
        // within about two slices.
        loop {
            crate::fault::fault_point!("pipe.wait.announce");
            let key = self.ec.prepare();
            match ready() {
                Ok(false) => {}
                Ok(true) => {
                    self.ec.cancel(key);
                    return Ok(());
                }
                Err(e) => {
                    // Withdraw the announcement, or every publish would
                    // pay a FUTEX_WAKE from now on.
                    self.ec.cancel(key);
                    return Err(e);
                }
            }
            if self.peer_gone_checked() {
                self.ec.cancel(key);
                // Whatever it published before closing is visible now.
                return if ready()? {
                    Ok(())
                } else {
                    Err(Error::Disconnected)
                };
            }
            // A waiter whose heavy barrier failed may miss a light notifier:
            // it sleeps in short slices instead (bounded, never a hang).
            let slice = Deadline::after(if key.covered() { SLICE } else { SHORT_SLICE });
            let until = match deadline {
                Some(d) if d < slice => d,
                _ => slice,
            };
            crate::fault::fault_point!("pipe.wait.sleep");
            let slept = self.ec.wait(key, Some(until));
            #[cfg(feature = "fault-injection")]
            match slept {
                Ok(()) => crate::fault::fault_point!("pipe.wait.woken"),
                Err(_) => crate::fault::fault_point!("pipe.wait.timed_out"),
            }
            match slept {
                // Woken (or the word moved before the sleep): look before
                // announcing again. A notifier wakes only after publishing,
                // so the answer is usually there, and announcing first
                // would put a heavy barrier (inter-processor interrupts;
                // 5-15 us on a VM) between the wake-up and the answer.
                // That delay outlasted the peer's spin budget, so the peer
                // slept too, and every later half trip paid a wake-up: the
                // slow regime of W1 (BENCHMARKS.md, "W1's two regimes").
                Ok(()) => {
                    if ready()? {
                        return Ok(());
                    }
                }
                Err(Error::Timeout) if Some(until) == deadline => {
                    return if ready()? {
                        Ok(())
                    } else {
                        Err(Error::Timeout)
                    };
                }
                Err(Error::Timeout) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

pub(super) fn timeout_to(e: Error, try_err: Error, deadline: Option<Deadline>) -> Error {
    match e {
        Error::Timeout if deadline == Some(Deadline::PASSED) => try_err,
        e => e,
    }
}
