//! A process-wide fork generation: bumped in the child of every `fork`.
//!
//! A handle that claims something in shared memory for "this process"
//! (a pipe end's claimant pid) records the generation it claimed in. After
//! a `fork` the child sees another generation and knows the claim it
//! inherited names its parent: it claims again before using the handle, and
//! does not release what it never claimed. Comparing two integers costs
//! nothing on the hot path, where `getpid()` would be a system call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(1);
static REGISTER: Once = Once::new();

extern "C" fn bump_in_child() {
    // Async-signal-safe: one atomic add, no allocation, no lock.
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Installs the `fork` hook (once per process). Call it before any handle
/// records a generation; later calls cost one atomic load.
pub(crate) fn register() {
    REGISTER.call_once(|| {
        // SAFETY: `bump_in_child` is an `extern "C" fn()` valid for the whole
        // program and async-signal-safe, as a child handler must be; the
        // other two handlers are absent (None).
        let rc = unsafe { libc::pthread_atfork(None, None, Some(bump_in_child)) };
        // ENOMEM only: without the hook a forked child would act on its
        // parent's claim, which is what happens without the crate's help.
        debug_assert_eq!(rc, 0, "pthread_atfork failed");
    });
}

/// The current fork generation of this process.
#[inline]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}
