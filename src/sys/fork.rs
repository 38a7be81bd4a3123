//! A process-wide fork generation: bumped in the child of every `fork`.
//!
//! A handle that claims something in shared memory for "this process"
//! (a pipe end's claimant pid) records the generation it claimed in. After
//! a `fork` the child sees another generation and knows the claim it
//! inherited names its parent: it claims again before using the handle, and
//! does not release what it never claimed. Comparing two integers costs
//! nothing on the hot path, where `getpid()` would be a system call.
//!
//! A second counter, [`forks`], moves in the parent *and* in the child of
//! every `fork`: a handle that records it at creation knows later whether
//! a copy of itself may live in another process (an anonymous pipe end
//! that was never used is closed on drop only if none can). `fork`s done
//! inside `posix_spawn` (as `std::process::Command` mostly does) run no
//! handlers and count for neither.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

// From 1: a handle records 0 for "claimed in no generation".
static GENERATION: AtomicU64 = AtomicU64::new(1);
static FORKS: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();

extern "C" fn bump_in_child() {
    // Async-signal-safe: atomic adds, no allocation, no lock.
    GENERATION.fetch_add(1, Ordering::Relaxed);
    FORKS.fetch_add(1, Ordering::Relaxed);
}

extern "C" fn bump_in_parent() {
    // Async-signal-safe: one atomic add.
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// Installs the `fork` hook (once per process). Call it before any handle
/// records a generation; later calls cost one atomic load.
pub(crate) fn register() {
    REGISTER.call_once(|| {
        // SAFETY: `bump_in_parent` and `bump_in_child` are `extern "C"
        // fn()`s valid for the whole program and async-signal-safe, as fork
        // handlers must be; the prepare handler is absent (None).
        let rc = unsafe { libc::pthread_atfork(None, Some(bump_in_parent), Some(bump_in_child)) };
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

/// How many `fork`s this process and its ancestors made since the hook was
/// installed, counting both sides: it moves in the parent and in the child.
#[inline]
pub(crate) fn forks() -> u64 {
    FORKS.load(Ordering::Relaxed)
}
