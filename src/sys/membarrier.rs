//! An asymmetric memory barrier between processes: `membarrier(2)`.
//!
//! A ring's publisher must not sleep-check its reader with a full fence on
//! every message: after a store to a line the other CPU holds, a fence
//! stalls until that store completes (a cross-core round trip, ~100 ns),
//! which is most of the cost of a small message. With `membarrier`, the
//! rare side (a waiter about to sleep) pays instead:
//! `MEMBARRIER_CMD_GLOBAL_EXPEDITED` makes every CPU running a thread of a
//! *registered* process execute a full barrier before it returns, so a
//! registered publisher needs only a compiler barrier between its publish
//! and its look at the sleeper count (the Dekker pair then holds: either
//! the barrier landed after the publisher's store, and the waiter's
//! re-check sees the data, or before its load, and the publisher sees the
//! waiter).
//!
//! Registration belongs to the address space and is not inherited by a
//! forked child, so it is recorded with the [`fork`](super::fork)
//! generation; a process that is not registered (or a kernel without the
//! call) publishes with a full fence, as before. Setting the environment
//! variable `SHMPRIM_NO_MEMBARRIER` (read when a process registers) keeps a
//! process on full fences: for machines where inter-processor interrupts
//! are costly, and for comparisons. Such a process's waiters issue no
//! barrier either (no interrupts at all); they may then miss a light
//! notifier in another, registered process, and sleep in short slices.
//!
//! Where the kernel lacks the call (or under Miri, or off Linux) no process
//! can register, every publisher uses full fences, and a waiter needs no
//! barrier: [`heavy_barrier`] reports it covered without a system call.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[cfg(target_os = "linux")]
const CMD_QUERY: libc::c_int = 0;
#[cfg(target_os = "linux")]
const CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
#[cfg(target_os = "linux")]
const CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

/// The fork generation this process registered in (0: not registered).
static REGISTERED_GEN: AtomicU64 = AtomicU64::new(0);

#[cfg(target_os = "linux")]
fn membarrier(cmd: libc::c_int) -> libc::c_long {
    // SAFETY: membarrier takes (cmd, flags, cpu_id) integers and touches no
    // memory of ours; unknown commands fail with EINVAL.
    unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            cmd,
            0 as libc::c_uint,
            0 as libc::c_int,
        )
    }
}

/// Whether `SHMPRIM_NO_MEMBARRIER` is set (read once per process).
#[cfg(all(target_os = "linux", not(loom), not(miri)))]
fn disabled() -> bool {
    use std::sync::atomic::AtomicU8;
    // 0 unknown, 1 disabled, 2 enabled.
    static DISABLED: AtomicU8 = AtomicU8::new(0);
    match DISABLED.load(Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let yes = std::env::var_os("SHMPRIM_NO_MEMBARRIER").is_some();
            DISABLED.store(if yes { 1 } else { 2 }, Relaxed);
            yes
        }
    }
}

/// Whether the kernel offers the expedited global barrier.
#[cfg(target_os = "linux")]
fn supported() -> bool {
    use std::sync::atomic::AtomicU8;
    // 0 unknown, 1 yes, 2 no.
    static SUPPORTED: AtomicU8 = AtomicU8::new(0);
    match SUPPORTED.load(Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let mask = membarrier(CMD_QUERY);
            let need = (CMD_GLOBAL_EXPEDITED | CMD_REGISTER_GLOBAL_EXPEDITED) as libc::c_long;
            let yes = mask >= 0 && mask & need == need;
            SUPPORTED.store(if yes { 1 } else { 2 }, Relaxed);
            yes
        }
    }
}

/// Registers this process as a light publisher (once per fork generation).
/// Returns whether it is registered.
pub(crate) fn register() -> bool {
    // The generation must move in a forked child, or the child would take
    // its parent's registration for its own.
    super::fork::register();
    let gen = super::fork::generation();
    if REGISTERED_GEN.load(Relaxed) == gen {
        return true;
    }
    #[cfg(all(target_os = "linux", not(loom), not(miri)))]
    if !disabled() && supported() && membarrier(CMD_REGISTER_GLOBAL_EXPEDITED) == 0 {
        REGISTERED_GEN.store(gen, Relaxed);
        return true;
    }
    false
}

/// Whether this process may publish with a compiler barrier only.
#[inline]
pub(crate) fn registered() -> bool {
    REGISTERED_GEN.load(Relaxed) == super::fork::generation()
}

/// The heavy side: every registered process's running threads execute a
/// full barrier before this returns. Returns whether the caller is covered
/// against every publisher: `true` also where no process can be registered
/// (no kernel support: all publish with full fences); `false` if the
/// barrier failed or this process may not issue it (`SHMPRIM_NO_MEMBARRIER`):
/// then a light publisher may be missed, and the caller sleeps in short
/// slices.
pub(crate) fn heavy_barrier() -> bool {
    #[cfg(all(target_os = "linux", not(loom), not(miri)))]
    {
        if !supported() {
            return true;
        }
        if disabled() {
            return false;
        }
        membarrier(CMD_GLOBAL_EXPEDITED) == 0
    }
    #[cfg(not(all(target_os = "linux", not(loom), not(miri))))]
    true
}
