//! The C library's thread hooks that the crate needs.
//!
//! (Up to layout version 1, `RawMutex` wrapped the process-shared robust
//! pthread mutex, whose calls lived here; it is now a futex mutex of the
//! crate's own, `raw::lockword`, that never touches the C library's
//! per-thread robust list.)

/// Runs `f` in the child after every `fork` of this process.
pub(crate) fn at_fork_child(f: extern "C" fn()) {
    // SAFETY: `f` is a plain function that lives for the whole program;
    // pthread_atfork only records it.
    let rc = unsafe { libc::pthread_atfork(None, None, Some(f)) };
    debug_assert_eq!(rc, 0, "pthread_atfork failed");
}
