//! Futex wait and wake on words that other processes share.
//!
//! Only shared futexes are used (no `FUTEX_PRIVATE_FLAG`): a private futex
//! is keyed by address space and would never wake another process. The
//! kernel keys a shared futex by (inode, page, offset), so two processes that
//! map a segment at different addresses still meet on the same word.
//!
//! Waits take an absolute `CLOCK_MONOTONIC` deadline (`FUTEX_WAIT_BITSET`),
//! so re-issuing a wait after `EINTR` never extends the total. A wait may
//! return early for no reason at all: callers loop on their own predicate.
//!
//! On platforms without futexes every call returns
//! [`Error::Unsupported`].

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use crate::sys::clock::Deadline;
use crate::{Error, Result};

/// Sleeps while `*word == expected`, until woken or until `timeout` has
/// elapsed (`None`: no limit).
///
/// Returns `Ok(())` when woken, when the word no longer held `expected`, or
/// after a signal or a spurious wake-up: re-check the condition you wait for.
/// Returns [`Error::Timeout`] once the deadline has passed.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Result<()> {
    wait_until(word, expected, timeout.map(Deadline::after))
}

/// Wakes up to `n` processes or threads sleeping on `word`; returns how many
/// were woken. A wake with nobody asleep is lost, so change the word before
/// waking.
pub fn wake(word: &AtomicU32, n: u32) -> Result<usize> {
    imp::wake(word, n)
}

/// Wakes every sleeper on `word`.
pub fn wake_all(word: &AtomicU32) -> Result<usize> {
    imp::wake(word, i32::MAX as u32)
}

/// [`wait`] with an absolute deadline.
pub(crate) fn wait_until(
    word: &AtomicU32,
    expected: u32,
    deadline: Option<Deadline>,
) -> Result<()> {
    imp::wait(word, expected, deadline)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use super::*;

    pub(super) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Deadline>) -> Result<()> {
        let ts = deadline.map(Deadline::as_timespec);
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `word` is a live, aligned 32-bit atomic for the duration of
        // the call; `ts_ptr` is null or points at a timespec on our stack. The
        // operation is shared (no private flag) with an absolute
        // CLOCK_MONOTONIC timeout, as FUTEX_WAIT_BITSET defines; the unused
        // uaddr2 argument is null and the bitset matches any waker.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT_BITSET,
                expected,
                ts_ptr,
                std::ptr::null::<u32>(),
                libc::FUTEX_BITSET_MATCH_ANY,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        match std::io::Error::last_os_error().raw_os_error().unwrap_or(0) {
            // The word changed before we slept, or a signal arrived: the
            // caller re-checks its predicate and the deadline.
            libc::EAGAIN | libc::EINTR => Ok(()),
            libc::ETIMEDOUT => Err(Error::Timeout),
            errno => Err(Error::from_errno("futex(FUTEX_WAIT_BITSET)", errno)),
        }
    }

    pub(super) fn wake(word: &AtomicU32, n: u32) -> Result<usize> {
        let n = n.min(i32::MAX as u32) as libc::c_int;
        // SAFETY: `word` is a live, aligned 32-bit atomic; FUTEX_WAKE reads
        // no other argument. Shared (non-private) to reach other processes.
        let rc = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
        if rc < 0 {
            return Err(Error::last_os("futex(FUTEX_WAKE)"));
        }
        Ok(rc as usize)
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use super::*;

    pub(super) fn wait(_: &AtomicU32, _: u32, _: Option<Deadline>) -> Result<()> {
        Err(Error::Unsupported("futex wait"))
    }

    pub(super) fn wake(_: &AtomicU32, _: u32) -> Result<usize> {
        Err(Error::Unsupported("futex wake"))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn wait_on_changed_word_returns_at_once() {
        let w = AtomicU32::new(1);
        wait(&w, 0, Some(Duration::from_secs(5))).unwrap();
    }

    #[test]
    fn wait_times_out_no_earlier_than_asked() {
        let w = AtomicU32::new(0);
        let t = Instant::now();
        assert!(matches!(
            wait(&w, 0, Some(Duration::from_millis(30))),
            Err(Error::Timeout)
        ));
        assert!(t.elapsed() >= Duration::from_millis(30));
    }

    /// Signals interrupt the wait (`EINTR`, the handler is installed without
    /// `SA_RESTART`); the absolute deadline keeps the total at the timeout.
    #[test]
    fn signal_storm_neither_shortens_nor_stretches_a_wait() {
        extern "C" fn on_signal(_: libc::c_int) {}
        // SAFETY: a zeroed sigaction with a handler that does nothing is
        // valid; SIGUSR2 is not used elsewhere in this test binary.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
        }
        let w = Arc::new(AtomicU32::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let w2 = w.clone();
        let waiter = std::thread::spawn(move || {
            // SAFETY: pthread_self has no preconditions.
            tx.send(unsafe { libc::pthread_self() } as usize).unwrap();
            let t = Instant::now();
            let deadline = Deadline::after(Duration::from_millis(300));
            let mut rounds = 0u32;
            let r = loop {
                rounds += 1;
                match wait_until(&w2, 0, Some(deadline)) {
                    Ok(()) if rounds < 1_000_000 => continue,
                    other => break other,
                }
            };
            (r, t.elapsed(), rounds)
        });
        let target = rx.recv().unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(250) {
            // SAFETY: the waiter thread is alive until it returns, which it
            // cannot do before its 300 ms wait (and the join below).
            unsafe { libc::pthread_kill(target as libc::pthread_t, libc::SIGUSR2) };
            std::thread::sleep(Duration::from_micros(500));
        }
        let (r, elapsed, rounds) = waiter.join().unwrap();
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        assert!(rounds > 1, "no signal interrupted the wait");
        assert!(
            elapsed >= Duration::from_millis(300),
            "ended early: {elapsed:?}"
        );
        assert!(
            elapsed < Duration::from_millis(1300),
            "stretched: {elapsed:?}"
        );
    }

    #[test]
    fn wake_reaches_a_sleeper() {
        let w = Arc::new(AtomicU32::new(0));
        let w2 = w.clone();
        let h = std::thread::spawn(move || {
            while w2.load(Ordering::Acquire) == 0 {
                wait(&w2, 0, Some(Duration::from_secs(10))).unwrap();
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        w.store(1, Ordering::Release);
        wake_all(&w).unwrap();
        h.join().unwrap();
    }
}
