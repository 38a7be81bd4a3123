//! Monotonic deadlines.
//!
//! Timeouts are turned into an absolute point on `CLOCK_MONOTONIC` once, at
//! the start of a call. Every wait then sleeps until that point, so `EINTR`
//! and spurious wake-ups neither stretch nor shorten the total (PITFALLS.md,
//! "Futexes across processes"), and a wall-clock jump changes nothing.

use std::time::Duration;

/// An absolute point on `CLOCK_MONOTONIC`, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline {
    ns: u64,
}

/// Nanoseconds on `CLOCK_MONOTONIC` now.
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC exists on
    // every supported Unix, so the call cannot fail with these arguments.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

impl Deadline {
    /// `timeout` from now. A timeout too large to represent saturates to a
    /// deadline centuries away, which is "wait for ever" in practice.
    pub(crate) fn after(timeout: Duration) -> Deadline {
        let add = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        Deadline {
            ns: monotonic_ns().saturating_add(add),
        }
    }

    /// A deadline that has always passed: "try once, do not wait". Reads
    /// no clock, so `try_*` calls cost nothing extra.
    pub(crate) const PASSED: Deadline = Deadline { ns: 0 };

    /// This deadline moved `by` later (saturating).
    pub(crate) fn later_by(self, by: Duration) -> Deadline {
        let add = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        Deadline {
            ns: self.ns.saturating_add(add),
        }
    }

    /// The time left, zero once passed.
    pub(crate) fn remaining(self) -> Duration {
        Duration::from_nanos(self.ns.saturating_sub(monotonic_ns()))
    }

    /// Whether the deadline is behind us.
    pub(crate) fn has_passed(self) -> bool {
        monotonic_ns() >= self.ns
    }

    /// The deadline as an absolute `CLOCK_MONOTONIC` timespec.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn as_timespec(self) -> libc::timespec {
        libc::timespec {
            tv_sec: (self.ns / 1_000_000_000).min(i64::MAX as u64) as _,
            tv_nsec: (self.ns % 1_000_000_000) as _,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_orders_and_saturates() {
        let near = Deadline::after(Duration::from_millis(5));
        let far = Deadline::after(Duration::MAX);
        assert!(near < far);
        assert!(!far.has_passed());
        assert!(far.remaining() > Duration::from_secs(100 * 365 * 86_400));
        assert_eq!(far.min(Deadline::PASSED).remaining(), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(6));
        assert!(near.has_passed());
        assert_eq!(near.remaining(), Duration::ZERO);
        let ts = far.as_timespec();
        assert!(ts.tv_sec > 0 && (0..1_000_000_000).contains(&ts.tv_nsec));
    }
}
