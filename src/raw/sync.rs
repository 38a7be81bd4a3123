//! The atomics and futex calls that the lock-free in-place objects use.
//!
//! Normally these are `std`'s atomics and the real shared futex of
//! [`sys::futex`](crate::sys::futex). Under `--cfg loom` they are loom's
//! atomics and a futex emulated on loom's `Mutex` and `Condvar`, so that a
//! loom model explores every interleaving of a protocol, and a lost wake-up
//! shows as a deadlock that loom reports.
//!
//! The futex-and-ring protocols (event counts, semaphores, events,
//! condition sequences, barriers, rings) and the robust mutex's lock word
//! (`raw::lockword`) go through this facade.
//!
//! Loom's atomics are larger than `std`'s, so size assertions on in-place
//! structs are made under `#[cfg(not(loom))]`, and models build their
//! objects on the heap with each type's `new`.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use crate::sys::clock::Deadline;
use crate::Result;

/// Sleeps while `*word == expected`, until woken or until `until` passes
/// (`None`: no limit).
///
/// `Ok(())` means woken, word changed, signal, or spurious wake-up: re-check.
/// [`Error::Timeout`](crate::Error::Timeout) means `until` has passed;
/// callers return it without reading the clock again (under loom the clock
/// does not move).
#[inline]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, until: Option<Deadline>) -> Result<()> {
    imp::wait(word, expected, until)
}

/// Wakes up to `n` sleepers on `word`. Errors are ignored by design: a wake
/// can only fail on an invalid address, which a live `&AtomicU32` is not;
/// off Linux, waits already failed with `Unsupported`, so nobody sleeps.
#[inline]
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) {
    imp::wake(word, n)
}

/// Index of the low-order 32-bit half of a `u64` in memory: the half that
/// [`futex_wait_low`] sleeps on.
#[cfg(not(loom))]
const LOW_HALF: usize = if cfg!(target_endian = "little") { 0 } else { 1 };

/// [`futex_wait`] on the low-order half of a 64-bit word: sleeps while
/// `word as u32 == expected`. The kernel compares (and keys the futex by)
/// those 4 bytes only; the high half may change without waking anyone.
#[inline]
pub(crate) fn futex_wait_low(
    word: &AtomicU64,
    expected: u32,
    until: Option<Deadline>,
) -> Result<()> {
    #[cfg(not(loom))]
    {
        imp::wait(low_half(word), expected, until)
    }
    #[cfg(loom)]
    {
        imp::wait_on(
            word as *const AtomicU64 as usize,
            || word.load(Ordering::SeqCst) as u32,
            expected,
            until,
        )
    }
}

/// [`futex_wake`] on the low-order half of a 64-bit word.
#[inline]
pub(crate) fn futex_wake_low(word: &AtomicU64, n: u32) {
    #[cfg(not(loom))]
    imp::wake(low_half(word), n);
    #[cfg(loom)]
    imp::wake_addr(word as *const AtomicU64 as usize, n);
}

/// The low-order half of `word` as a futex word. Only its address is used
/// (by the futex system call, outside Rust's memory model): nothing reads
/// or writes through the returned reference from Rust, so no mixed-size
/// atomic access happens in the program.
#[cfg(not(loom))]
#[inline]
fn low_half(word: &AtomicU64) -> &AtomicU32 {
    // SAFETY: the 4 bytes at `LOW_HALF * 4` lie inside the 8-byte, 8-aligned
    // atomic, so they are in bounds and 4-aligned, and live as long as
    // `word`; `AtomicU32` has the layout of `u32` and allows shared
    // mutation, so a shared reference to those bytes is valid. See above
    // for why no Rust access goes through it.
    unsafe { &*word.as_ptr().cast::<AtomicU32>().add(LOW_HALF) }
}

#[cfg(not(loom))]
mod imp {
    use super::*;
    use crate::sys::futex;

    #[inline]
    pub(super) fn wait(word: &AtomicU32, expected: u32, until: Option<Deadline>) -> Result<()> {
        if until.is_some_and(Deadline::has_passed) {
            return Err(crate::Error::Timeout);
        }
        futex::wait_until(word, expected, until)
    }

    #[inline]
    pub(super) fn wake(word: &AtomicU32, n: u32) {
        let _ = futex::wake(word, n);
    }
}

/// A futex emulated for loom: a list of parked waiters keyed by address,
/// under one loom `Mutex`, with a `Condvar` to block on. The value check
/// and the parking happen under the mutex, as the kernel checks and queues
/// under its hash-bucket lock, so a wake between a waiter's check and its
/// sleep is never lost — unless the protocol loses it, which is what the
/// models look for.
///
/// A timed wait whose deadline has not passed sleeps like an untimed one
/// (loom has no clock); one whose deadline has passed times out at once.
/// Models therefore use untimed waits, or `Deadline::PASSED` to test the
/// timeout paths.
#[cfg(loom)]
mod imp {
    use super::*;
    use loom::sync::{Condvar, Mutex};

    struct Parked {
        addr: usize,
        id: u64,
        woken: bool,
    }

    struct Park {
        state: Mutex<(u64, Vec<Parked>)>,
        cv: Condvar,
    }

    loom::lazy_static! {
        static ref PARK: Park = Park { state: Mutex::new((0, Vec::new())), cv: Condvar::new() };
    }

    pub(super) fn wait(word: &AtomicU32, expected: u32, until: Option<Deadline>) -> Result<()> {
        let addr = word as *const AtomicU32 as usize;
        wait_on(addr, || word.load(Ordering::SeqCst), expected, until)
    }

    pub(super) fn wait_on(
        addr: usize,
        load: impl Fn() -> u32,
        expected: u32,
        until: Option<Deadline>,
    ) -> Result<()> {
        if until == Some(Deadline::PASSED) {
            return Err(crate::Error::Timeout);
        }
        let mut g = PARK.state.lock().unwrap();
        if load() != expected {
            return Ok(());
        }
        let id = g.0;
        g.0 += 1;
        g.1.push(Parked {
            addr,
            id,
            woken: false,
        });
        loop {
            g = PARK.cv.wait(g).unwrap();
            if let Some(i) = g.1.iter().position(|p| p.id == id && p.woken) {
                g.1.remove(i);
                return Ok(());
            }
        }
    }

    pub(super) fn wake(word: &AtomicU32, n: u32) {
        wake_addr(word as *const AtomicU32 as usize, n)
    }

    pub(super) fn wake_addr(addr: usize, n: u32) {
        let mut g = PARK.state.lock().unwrap();
        let mut woken = 0;
        for p in g.1.iter_mut().filter(|p| p.addr == addr && !p.woken) {
            if woken == n {
                break;
            }
            p.woken = true;
            woken += 1;
        }
        if woken > 0 {
            PARK.cv.notify_all();
        }
    }
}
