//! Bounded spinning before a wait sleeps.
//!
//! A lock held for a few dozen nanoseconds is usually free again before a
//! `FUTEX_WAIT` round trip (about 25 µs across CPUs on a small VM) could
//! even start; a waiter that sleeps at once pays that for nothing. So a
//! waiter spins a little, doubling each step, and sleeps on the futex once
//! the budget (about 2^7 pause instructions) is spent. The bound matters on
//! a machine with few CPUs, where the holder may need the very CPU we spin
//! on.

/// Steps of doubling spins before [`Backoff::is_completed`].
const SPIN_LIMIT: u32 = 6;

/// One spin-then-sleep policy for every wait loop of the crate.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    step: u32,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff { step: 0 }
    }

    /// Spins `2^step` times and moves on to the next step.
    #[inline]
    pub(crate) fn spin(&mut self) {
        for _ in 0..1u32 << self.step.min(SPIN_LIMIT) {
            std::hint::spin_loop();
        }
        self.step += 1;
    }

    /// Whether the spinning budget is spent and the caller should sleep.
    #[inline]
    pub(crate) fn is_completed(&self) -> bool {
        // Under loom a spin is only more interleavings to explore: models
        // go straight to the futex path, which is the part worth checking.
        cfg!(loom) || self.step > SPIN_LIMIT
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn spins_a_bounded_number_of_steps() {
        let mut b = Backoff::new();
        let mut steps = 0;
        while !b.is_completed() {
            b.spin();
            steps += 1;
        }
        assert_eq!(steps, SPIN_LIMIT + 1);
    }
}
