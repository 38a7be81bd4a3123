//! The process-shared robust pthread mutex.
//!
//! `PTHREAD_MUTEX_ROBUST` makes the kernel mark a lock whose owner died
//! (`FUTEX_OWNER_DIED` in the lock word), so the next locker gets
//! `EOWNERDEAD` *and the lock* instead of waiting for ever. Ownership is per
//! thread, and glibc owns the per-thread robust list: the crate never calls
//! `set_robust_list` itself (PITFALLS.md, "Robust locks").
//!
//! The mutex bytes live in shared memory, so a buggy peer can scribble on
//! them. Two glibc-specific reads (the lock word and the kind word, at
//! offsets glibc has kept since 2.3 on 64-bit targets) let the layer above
//! notice the worst cases (an invalid kind, an owner that does not exist)
//! and report `Corrupt` instead of hanging; on other C libraries those
//! checks are skipped.

use std::time::Duration;

use crate::sys::clock::Deadline;
use crate::{Error, Result};

pub(crate) use libc::pthread_mutex_t as Mutex;

/// How a lock was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Normally.
    Clean,
    /// The previous owner died holding it; the caller holds it now, and the
    /// protected data may be half-updated.
    OwnerDied,
}

/// Whether this platform has robust process-shared mutexes.
pub(crate) const ROBUST_SUPPORTED: bool = cfg!(any(target_os = "linux", target_os = "freebsd"));

/// Initialises a robust, process-shared, error-checking mutex in place:
/// relock gives `EDEADLK` rather than a silent deadlock, and unlock by a
/// thread that does not own it `EPERM`. Recursion is counted by the caller,
/// in process-local memory (`raw::held`).
///
/// # Safety
/// `m` points to writable memory large and aligned enough for a
/// `pthread_mutex_t` that no other thread or process uses during the call.
pub(crate) unsafe fn init(m: *mut Mutex) -> Result<()> {
    if !ROBUST_SUPPORTED {
        return Err(Error::Unsupported("robust process-shared mutex"));
    }
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        let kind = libc::PTHREAD_MUTEX_ERRORCHECK;
        // SAFETY: `attr` is initialised by pthread_mutexattr_init before any
        // other use and destroyed once, below; `m` satisfies the caller's
        // contract. Each call's result is checked.
        unsafe {
            check(
                "pthread_mutexattr_init",
                libc::pthread_mutexattr_init(attr.as_mut_ptr()),
            )?;
            let a = attr.as_mut_ptr();
            let rc = (|| {
                check(
                    "pthread_mutexattr_settype",
                    libc::pthread_mutexattr_settype(a, kind),
                )?;
                check(
                    "pthread_mutexattr_setpshared",
                    libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED),
                )?;
                check(
                    "pthread_mutexattr_setrobust",
                    libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST),
                )?;
                check("pthread_mutex_init", libc::pthread_mutex_init(m, a))
            })();
            libc::pthread_mutexattr_destroy(a);
            rc
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    {
        let _ = m;
        unreachable!("guarded by ROBUST_SUPPORTED")
    }
}

#[cfg_attr(not(any(target_os = "linux", target_os = "freebsd")), allow(dead_code))]
fn check(call: &'static str, rc: libc::c_int) -> Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::from_errno(call, rc))
    }
}

/// Maps a lock call's return code.
#[cold]
pub(crate) fn acquired(call: &'static str, rc: libc::c_int) -> Result<Acquired> {
    match rc {
        0 => Ok(Acquired::Clean),
        libc::EOWNERDEAD => Ok(Acquired::OwnerDied),
        libc::ENOTRECOVERABLE => Err(Error::NotRecoverable),
        libc::EDEADLK => Err(Error::Deadlock),
        libc::EBUSY => Err(Error::WouldBlock),
        libc::ETIMEDOUT => Err(Error::Timeout),
        libc::EINVAL => Err(Error::Corrupt("mutex refused by the C library (EINVAL)")),
        rc => Err(Error::from_errno(call, rc)),
    }
}

/// `pthread_mutex_trylock`.
///
/// # Safety
/// `m` points to a mutex initialised by [`init`] that stays mapped.
pub(crate) unsafe fn try_lock(m: *mut Mutex) -> Result<Acquired> {
    // SAFETY: per the caller's contract.
    match unsafe { try_lock_rc(m) } {
        0 => Ok(Acquired::Clean),
        rc => acquired("pthread_mutex_trylock", rc),
    }
}

/// `pthread_mutex_trylock`, returning the C library's code: the fast path
/// compares it with 0 and builds an [`Error`] only when it must.
///
/// # Safety
/// As for [`try_lock`].
#[inline]
pub(crate) unsafe fn try_lock_rc(m: *mut Mutex) -> libc::c_int {
    // SAFETY: per the caller's contract.
    unsafe { libc::pthread_mutex_trylock(m) }
}

/// Locks, waiting no later than `deadline` (on `CLOCK_MONOTONIC`).
///
/// # Safety
/// As for [`try_lock`].
pub(crate) unsafe fn lock_until(m: *mut Mutex, deadline: Deadline) -> Result<Acquired> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            // glibc 2.30 and later; takes its deadline on the clock we name.
            fn pthread_mutex_clocklock(
                m: *mut Mutex,
                clock: libc::clockid_t,
                abstime: *const libc::timespec,
            ) -> libc::c_int;
        }
        let ts = deadline.as_timespec();
        // SAFETY: per the caller's contract; `ts` lives across the call.
        acquired("pthread_mutex_clocklock", unsafe {
            pthread_mutex_clocklock(m, libc::CLOCK_MONOTONIC, &ts)
        })
    }
    #[cfg(all(target_os = "linux", not(target_env = "gnu")))]
    {
        // Only CLOCK_REALTIME is available here: convert the time left. A
        // wall-clock jump during the wait shifts it; the caller loops on its
        // own monotonic deadline, so it never returns early.
        let left = deadline.remaining();
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid timespec to fill.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
        let total = Duration::new(now.tv_sec as u64, now.tv_nsec as u32).saturating_add(left);
        let ts = libc::timespec {
            tv_sec: total.as_secs().min(i64::MAX as u64 / 2) as _,
            tv_nsec: total.subsec_nanos() as _,
        };
        // SAFETY: per the caller's contract; `ts` lives across the call.
        acquired("pthread_mutex_timedlock", unsafe {
            libc::pthread_mutex_timedlock(m, &ts)
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        // No robust mutex here (or no monotonic timed lock): `init` refused
        // already, so no initialised mutex reaches this call.
        let _ = (m, deadline);
        Err(Error::Unsupported("timed lock of a robust mutex"))
    }
}

/// `pthread_mutex_unlock`. Robust mutexes check the owner: a thread that
/// does not hold the lock gets [`Error::NotOwner`] and changes nothing.
///
/// # Safety
/// As for [`try_lock`].
#[inline]
pub(crate) unsafe fn unlock(m: *mut Mutex) -> Result<()> {
    // SAFETY: per the caller's contract.
    match unsafe { libc::pthread_mutex_unlock(m) } {
        0 => Ok(()),
        rc => Err(unlock_error(rc)),
    }
}

#[cold]
fn unlock_error(rc: libc::c_int) -> Error {
    match rc {
        libc::EPERM => Error::NotOwner,
        libc::EINVAL => Error::Corrupt("mutex refused by the C library (EINVAL)"),
        rc => Error::from_errno("pthread_mutex_unlock", rc),
    }
}

/// `pthread_mutex_consistent`: the caller, holding a lock it received with
/// [`Acquired::OwnerDied`], declares the protected data repaired.
///
/// # Safety
/// As for [`try_lock`].
pub(crate) unsafe fn make_consistent(m: *mut Mutex) -> Result<()> {
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    {
        // SAFETY: per the caller's contract.
        match unsafe { libc::pthread_mutex_consistent(m) } {
            0 => Ok(()),
            libc::EINVAL => Err(Error::NotOwner),
            rc => Err(Error::from_errno("pthread_mutex_consistent", rc)),
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    {
        let _ = m;
        Err(Error::Unsupported("robust process-shared mutex"))
    }
}

/// glibc's internal words, read only for diagnosis.
#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
mod glibc {
    use std::sync::atomic::AtomicU32;

    // struct __pthread_mutex_s { int __lock; unsigned __count; int __owner;
    // unsigned __nusers; int __kind; ... } on every 64-bit glibc target.
    const LOCK_OFFSET: usize = 0;
    const KIND_OFFSET: usize = 16;
    static_assertions::const_assert!(std::mem::size_of::<libc::pthread_mutex_t>() >= 20);

    /// # Safety
    /// `m` points to a live `pthread_mutex_t`.
    pub(super) unsafe fn word(m: *mut super::Mutex, offset: usize) -> u32 {
        // SAFETY: offset + 4 is within the mutex (asserted above) and
        // 4-aligned (the mutex is at least 8-aligned). The word is read
        // atomically because other processes change it concurrently.
        unsafe {
            (*(m.cast::<u8>().add(offset).cast::<AtomicU32>()))
                .load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    pub(super) const LOCK: usize = LOCK_OFFSET;
    pub(super) const KIND: usize = KIND_OFFSET;
}

/// The C library's kind word in `m`, or `None` where the layout is not known.
///
/// # Safety
/// `m` points to a live `pthread_mutex_t`.
pub(crate) unsafe fn kind_word(m: *mut Mutex) -> Option<u32> {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
    {
        // SAFETY: per the caller's contract.
        Some(unsafe { glibc::word(m, glibc::KIND) })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
    {
        let _ = m;
        None
    }
}

/// The kind word that [`init`] leaves in a mutex of this kind, learnt once
/// from a private mutex initialised the same way. A shared mutex whose kind
/// word differs was written by someone else: refusing it keeps the C
/// library out of code paths (priority inheritance, priority protection)
/// that would trust other garbage in the mutex. `None` where the layout is
/// not known.
pub(crate) fn expected_kind_word() -> Option<u32> {
    use std::sync::OnceLock;
    static PROBE: OnceLock<Option<u32>> = OnceLock::new();
    *PROBE.get_or_init(|| {
        let mut probe = std::mem::MaybeUninit::<Mutex>::zeroed();
        // SAFETY: `probe` is private, writable and aligned storage for a
        // mutex that nobody else sees; it is never locked, and destroyed
        // right after the read.
        unsafe {
            init(probe.as_mut_ptr()).ok()?;
            let word = kind_word(probe.as_mut_ptr());
            libc::pthread_mutex_destroy(probe.as_mut_ptr());
            word
        }
    })
}

/// The owner recorded in the lock word: `(tid, owner_died_bit)`, or `None`
/// when free or not known on this platform.
///
/// # Safety
/// `m` points to a live `pthread_mutex_t`.
pub(crate) unsafe fn owner(m: *mut Mutex) -> Option<(u32, bool)> {
    #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
    {
        // SAFETY: per the caller's contract.
        let w = unsafe { glibc::word(m, glibc::LOCK) };
        let tid = w & 0x3fff_ffff; // FUTEX_TID_MASK
        let died = w & 0x4000_0000 != 0; // FUTEX_OWNER_DIED
        (tid != 0).then_some((tid, died))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
    {
        let _ = m;
        None
    }
}

/// Whether [`owner`] can read the C library's lock word.
pub(crate) const LAYOUT_KNOWN: bool = cfg!(all(
    target_os = "linux",
    target_env = "gnu",
    target_pointer_width = "64"
));

/// Runs `f` in the child after every `fork` of this process.
pub(crate) fn at_fork_child(f: extern "C" fn()) {
    // SAFETY: `f` is a plain function that lives for the whole program;
    // pthread_atfork only records it.
    let rc = unsafe { libc::pthread_atfork(None, None, Some(f)) };
    debug_assert_eq!(rc, 0, "pthread_atfork failed");
}

/// How often a blocked locker wakes to check that the lock's owner exists.
pub(crate) const LIVENESS_PERIOD: Duration = Duration::from_millis(200);
