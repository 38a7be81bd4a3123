//! Sleeping on a futex word for the sync primitives: one helper so that
//! every wait loop treats the outcomes alike.
//!
//! [`park`] returns `Ok(())` (woken, the word changed, a signal, a
//! spurious wake-up: re-check) or [`Error::Timeout`] once `until` has
//! passed — nothing else, so callers may treat any error as "the deadline
//! passed". Where the platform has no futex (the futex layer reports
//! [`Error::Unsupported`]), it naps for at most [`NAP`] instead: waits
//! still work, with wake-up latency up to a millisecond, and never spin.

use std::time::Duration;

use super::sync::{futex_wait, AtomicU32};
use crate::sys::clock::Deadline;
use crate::{Error, Result};

/// The longest a sleeper sleeps before re-checking its condition, where a
/// protocol needs re-checks (a dead waker).
pub(crate) const SLICE: Duration = Duration::from_millis(200);

/// The nap of a wait where the platform has no futex.
pub(crate) const NAP: Duration = Duration::from_millis(1);

/// Sleeps while `*word == expected`, until woken or `until` passes.
#[inline]
pub(crate) fn park(word: &AtomicU32, expected: u32, until: Option<Deadline>) -> Result<()> {
    match futex_wait(word, expected, until) {
        Ok(()) => Ok(()),
        Err(Error::Timeout) => Err(Error::Timeout),
        Err(_) => nap(until),
    }
}

#[cold]
fn nap(until: Option<Deadline>) -> Result<()> {
    if until.is_some_and(Deadline::has_passed) {
        return Err(Error::Timeout);
    }
    std::thread::sleep(until.map_or(NAP, |d| d.remaining().min(NAP)));
    Ok(())
}

/// The earlier of `deadline` and one [`SLICE`] from now.
pub(crate) fn slice(deadline: Option<Deadline>) -> Option<Deadline> {
    if cfg!(loom) {
        // Models must not rely on slices: sleep as if untimed.
        return deadline;
    }
    let s = Deadline::after(SLICE);
    Some(deadline.map_or(s, |d| d.min(s)))
}
