//! How the pool's two sides wait for each other: spin a little on the
//! queue, then sleep in it.
//!
//! A pool's tasks and results cross between processes on different CPUs.
//! When the side that waits is asleep in the queue's futex, each crossing
//! costs the sender a wake-up system call and the sleeper a cross-CPU
//! wake-up (about 25 us each on a small VM, measured: an idle `apply` round
//! trip took 13 to 15 us with both sides going to sleep). A worker that
//! has just sent a result usually gets its next task within a few
//! microseconds (the parent's turn-around), and a parent that has just
//! handed out a task usually gets its result as soon; so each side first
//! polls the queue for [`SPIN`] (as the crate's
//! [`WaitPolicy`](crate::WaitPolicy) does for pipes), then sleeps in the
//! queue's own wait (which spins briefly, yields, then sleeps on the
//! futex). A waiter that polls is not asleep, so the sender also skips
//! the wake-up call.

use std::time::{Duration, Instant};

use crate::{Error, Queue};

/// How long a waiting side polls before it sleeps. Long enough to cover
/// the other side's turn-around between two tasks (a few us), short
/// enough that an idle pool stops burning CPU at once.
pub(crate) const SPIN: Duration = Duration::from_micros(50);

/// Polls between two clock reads.
const POLLS_PER_CHECK: u32 = 16;

/// Receives the next record of `q` into `buf`: polls for at most `spin`,
/// then waits in the queue until `timeout` (counted from the call) has
/// passed ([`Error::Timeout`]).
pub(crate) fn recv_into(
    q: &Queue,
    buf: &mut [u8],
    spin: Duration,
    timeout: Duration,
) -> Result<usize, Error> {
    let start = Instant::now();
    let spin = spin.min(timeout);
    'poll: loop {
        for _ in 0..POLLS_PER_CHECK {
            match q.try_recv_bytes_into(buf) {
                Err(Error::Empty) => std::hint::spin_loop(),
                other => return other,
            }
        }
        if start.elapsed() >= spin {
            break 'poll;
        }
    }
    let left = timeout.saturating_sub(start.elapsed());
    q.recv_bytes_into_timeout(buf, left)
}
