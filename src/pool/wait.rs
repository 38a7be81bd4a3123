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
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spin {
    budget: Duration,
}

impl Default for Spin {
    fn default() -> Self {
        Spin { budget: SPIN }
    }
}

/// A wait that polling missed but that ended within this would have been
/// caught by a somewhat longer poll.
const SHORT: Duration = Duration::from_micros(10);

impl Spin {
    fn learn(&mut self, waited: Duration, polled: bool) {
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
    let budget = spin.budget.min(timeout);
    'poll: loop {
        // The fast path alone: an empty poll costs a few loads, not the
        // general receive's walk (the full receive below, after the
        // budget, sorts out whatever the fast path leaves).
        for _ in 0..POLLS_PER_CHECK {
            if let Some(n) = q.poll_recv_into(buf) {
                spin.learn(start.elapsed(), true);
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
        spin.learn(start.elapsed(), false);
    }
    got
}
