//! The calling thread's identity as a lock owner, and the liveness of the
//! owner a lock word names (see `raw::lockword`).
//!
//! The identity is the thread id with a stamp, the low 32 bits of the
//! thread's start time in clock ticks: a thread id recycled after its
//! owner died comes with another start time. It is learnt once per thread
//! (one read of `/proc/thread-self/stat`) and cached in a thread-local with
//! no destructor, readable even while the thread's locals are torn down.
//! A child made by `fork` forgets it (its thread has another id).

use std::cell::Cell;

use super::lockword::{owner_word, stamp_of, tid_of};
use crate::sys::proc::{self, ThreadState};

thread_local! {
    static ME: Cell<u64> = const { Cell::new(0) };
}

/// The calling thread's owner word.
#[inline]
pub(super) fn me() -> u64 {
    match ME.with(Cell::get) {
        0 => me_slow(),
        w => w,
    }
}

#[cold]
#[inline(never)]
fn me_slow() -> u64 {
    // Registers the fork handler that makes a child forget the identity
    // (before any thread caches one).
    super::held::generation();
    let stamp = proc::this_thread_start_time().map_or(0, stamp);
    let w = owner_word(proc::tid(), stamp);
    ME.with(|c| c.set(w));
    w
}

/// The owner word cached by [`me`], 0 if this thread has not locked since
/// it started (or since `fork`).
#[inline]
pub(super) fn cached() -> u64 {
    ME.with(Cell::get)
}

/// Forgets the identity (in the child, right after `fork`).
pub(super) fn forget() {
    ME.with(|c| c.set(0));
}

/// A start time as a stamp: never 0, which means "unknown".
fn stamp(start: u64) -> u32 {
    (start as u32).max(1)
}

/// Whether the owner named by `word` is dead: its thread is gone or dead,
/// or runs with another start time (its id was recycled). Where the start
/// time is unknown (either side), a thread that exists counts as alive.
pub(super) fn is_dead(word: u64) -> bool {
    match proc::thread_state(tid_of(word)) {
        ThreadState::Gone | ThreadState::Dead => true,
        ThreadState::Running(Some(start)) => stamp_of(word) != 0 && stamp(start) != stamp_of(word),
        ThreadState::Running(None) => false,
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn this_thread_is_alive_and_other_incarnations_are_not() {
        let me = me();
        assert_eq!(tid_of(me), proc::tid());
        assert_ne!(stamp_of(me), 0, "no start time from /proc");
        assert!(!is_dead(me));
        // The same id with another start time: a recycled id.
        assert!(is_dead(owner_word(
            tid_of(me),
            stamp_of(me).wrapping_add(1).max(1)
        )));
        // Unknown stamp: the thread exists.
        assert!(!is_dead(owner_word(tid_of(me), 0)));
    }

    #[test]
    fn an_exited_thread_is_dead() {
        let w = std::thread::spawn(me).join().unwrap();
        let t = std::time::Instant::now();
        while !is_dead(w) {
            assert!(t.elapsed() < std::time::Duration::from_secs(5));
            std::thread::yield_now();
        }
    }
}
