//! How the pool's two sides wait for each other: spin a little on the
//! queue, then sleep in it.
//!
//! A pool's tasks and results cross between processes on different CPUs.
//! When the side that waits has gone to sleep in the queue's futex, each
//! crossing costs the sender a wake-up system call and the sleeper a
//! cross-CPU wake-up. A worker that has just sent a result usually gets
//! its next task within a few microseconds (the parent's turn-around),
//! and a parent that has just handed out a task gets its result about as
//! soon; so each side first polls the queue for up to [`SPIN`] (as the
//! crate's [`WaitPolicy`](crate::WaitPolicy) does for pipes), then sleeps
//! in the queue's own wait (which spins briefly, yields, then sleeps on
//! the futex). A waiter that polls is not asleep, so the sender skips the
//! wake-up call too. Measured on the 2-vCPU VM with the pool's processes
//! given the CPUs (`chrt -r 1`): an idle `apply` round trip went from 3.5
//! to 4 us down to 1.9 us. How long to poll is learnt ([`Spin`]): polling
//! on a loaded machine costs more than it saves.

use std::time::{Duration, Instant};

use crate::{Error, Queue};

/// The longest a waiting side polls before it sleeps. Long enough to
/// cover the other side's turn-around between two tasks (a few us),
/// short enough that an idle pool stops burning CPU at once.
pub(crate) const SPIN: Duration = Duration::from_micros(50);

/// Polls between two clock reads.
const POLLS_PER_CHECK: u32 = 16;

/// How long one side polls, adapted to what polling has been worth.
///
/// Polling pays only while the other side runs; on a machine with more
/// runnable processes than CPUs, a side that polls holds a CPU the other
/// side may be waiting for, and loses the scheduler's favour that a
/// sleeper gets on its wake-up: an idle `apply` round trip took 115 us
/// with a fixed 50 us poll on the loaded 2-vCPU VM, against 5 to 14 us
/// sleeping at once (and 1.9 us against 3.5 to 4 us when the pool's
/// processes had the CPUs to themselves). So the budget grows (doubling,
/// up to [`SPIN`]) after each wait (a record found at once is none) that
/// polling ended or that ended
/// within [`SHORT`] anyway, and halves after any other: it settles at
/// [`SPIN`] where the other side answers within microseconds, and at
/// zero where it does not (a budget that grew while waits were short and
/// then made them long, by holding the CPU, shrinks away again).
///
/// A budget of zero learns nothing by itself: every wait then sleeps, and
/// a sleeper's wait includes its own wake-up (8 to 25 us on the 2-vCPU
/// VM), longer than [`SHORT`] however quickly the other side answered; a
/// pool that met a loaded spell would sleep at once for good after the
/// load went away. So a zero budget probes: every [`PROBE_FIRST`]-th wait polls for the whole [`SPIN`];
/// a probe that polling ends restores the budget, and each probe that
/// does not doubles the interval (up to [`PROBE_LAST`] waits), so a
/// loaded machine pays at most one 50 us poll per thousand waits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spin {
    budget: Duration,
    /// Waits between probes while the budget is zero.
    probe_every: u32,
    /// Waits left before the next probe.
    probe_in: u32,
}

impl Default for Spin {
    fn default() -> Self {
        Spin {
            budget: SPIN,
            probe_every: PROBE_FIRST,
            probe_in: PROBE_FIRST,
        }
    }
}

/// A wait that polling missed but that ended within this would have been
/// caught by a somewhat longer poll.
const SHORT: Duration = Duration::from_micros(10);

/// Waits between a zero budget's probes, at first and at most.
const PROBE_FIRST: u32 = 16;
const PROBE_LAST: u32 = 1024;

impl Spin {
    /// How long the next wait polls: the budget, or a probe's [`SPIN`]
    /// (then `true`).
    fn next(&mut self) -> (Duration, bool) {
        if !self.budget.is_zero() {
            return (self.budget, false);
        }
        self.probe_in = self.probe_in.saturating_sub(1);
        if self.probe_in == 0 {
            self.probe_in = self.probe_every;
            return (SPIN, true);
        }
        (Duration::ZERO, false)
    }

    fn learn(&mut self, waited: Duration, polled: bool, probe: bool) {
        if probe {
            if polled {
                self.budget = SPIN;
                self.probe_every = PROBE_FIRST;
            } else {
                self.probe_every = (self.probe_every * 2).min(PROBE_LAST);
            }
            self.probe_in = self.probe_every;
            return;
        }
        self.budget = if polled || waited <= SHORT {
            (self.budget * 2 + Duration::from_micros(1)).min(SPIN)
        } else {
            self.budget / 2
        };
    }
}

/// Receives the next record of `q` into `buf`: polls for at most the
/// budget of `spin`, then waits in the queue until `timeout` (counted
/// from the call) has passed ([`Error::Timeout`]).
pub(crate) fn recv_into(
    q: &Queue,
    buf: &mut [u8],
    spin: &mut Spin,
    timeout: Duration,
) -> Result<usize, Error> {
    // A record already there says nothing about waiting: learn nothing.
    if let Some(n) = q.poll_recv_into(buf) {
        return Ok(n);
    }
    let start = Instant::now();
    let (budget, probe) = spin.next();
    let budget = budget.min(timeout);
    'poll: loop {
        // The fast path alone: an empty poll costs a few loads, not the
        // general receive's walk (the full receive below, after the
        // budget, sorts out whatever the fast path leaves).
        for _ in 0..POLLS_PER_CHECK {
            if let Some(n) = q.poll_recv_into(buf) {
                spin.learn(start.elapsed(), true, probe);
                return Ok(n);
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= budget {
            break 'poll;
        }
    }
    let left = timeout.saturating_sub(start.elapsed());
    let got = q.recv_bytes_into_timeout(buf, left);
    if got.is_ok() {
        spin.learn(start.elapsed(), false, probe);
    }
    got
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_micros(200);

    /// Drives `s` through `n` sleeping waits of `LONG` that polling never
    /// ends; counts the probes among them.
    fn sleep_waits(s: &mut Spin, n: u32) -> u32 {
        let mut probes = 0;
        for _ in 0..n {
            let (_, probe) = s.next();
            probes += probe as u32;
            s.learn(LONG, false, probe);
        }
        probes
    }

    #[test]
    fn a_zero_budget_probes_and_a_caught_probe_restores_polling() {
        let mut s = Spin::default();
        sleep_waits(&mut s, 64);
        assert!(s.budget.is_zero(), "long waits halve the budget away");
        // The next probe: a full poll, which the answer ends this time.
        let mut waits = 0;
        loop {
            waits += 1;
            let (d, probe) = s.next();
            if probe {
                assert_eq!(d, SPIN);
                s.learn(Duration::from_micros(2), true, true);
                break;
            }
            assert!(d.is_zero());
            s.learn(LONG, false, false);
        }
        assert!(waits <= PROBE_LAST);
        assert_eq!(
            s.budget, SPIN,
            "a probe that polling ended restores the budget"
        );
        assert_eq!(s.next(), (SPIN, false));
    }

    #[test]
    fn failed_probes_back_off_to_one_in_probe_last() {
        let mut s = Spin {
            budget: Duration::ZERO,
            ..Spin::default()
        };
        // Geometric back-off: 16 + 32 + ... + 1024 waits hold 7 probes.
        assert_eq!(
            sleep_waits(&mut s, 16 + 32 + 64 + 128 + 256 + 512 + 1024),
            7
        );
        assert_eq!(s.probe_every, PROBE_LAST);
        assert_eq!(sleep_waits(&mut s, 10 * PROBE_LAST), 10);
        assert!(s.budget.is_zero());
    }

    #[test]
    fn short_waits_grow_the_budget_without_probes() {
        let mut s = Spin::default();
        sleep_waits(&mut s, 64);
        // A probe is due; until then short sleeping waits (a quick answer
        // and a quick wake-up) still grow the budget as before.
        s.learn(Duration::from_micros(5), false, false);
        assert_eq!(s.budget, Duration::from_micros(1));
        assert_eq!(s.next(), (Duration::from_micros(1), false));
    }
}
