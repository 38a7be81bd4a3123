//! Child processes: the system calls a process launcher needs, as thin
//! public wrappers (the crate's own [`process`](crate::process) layer is
//! written against these, as an outside pool library would be).
//!
//! Everything here that may run between `fork` and `exec` in a child of a
//! multi-threaded parent says so: it is async-signal-safe (one system
//! call, no allocation, no lock). Linux is first-class; elsewhere `pidfd`
//! and the parent-death signal are [`Error::Unsupported`].

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::sys::clock::Deadline;
use crate::{Error, Result};

/// How a child ended, as `waitpid` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It called `exit(code)` (or returned from `main`).
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

impl Exit {
    /// Python's `Process.exitcode`: the exit code, or minus the signal
    /// number.
    pub fn exitcode(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => -s,
        }
    }

    fn from_status(status: libc::c_int) -> Option<Exit> {
        if libc::WIFEXITED(status) {
            Some(Exit::Code(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(Exit::Signal(libc::WTERMSIG(status)))
        } else {
            None
        }
    }
}

/// `fork()`: `Ok(0)` in the child, the child's pid in the parent.
///
/// # Safety
/// In a process with more than one thread, the child may only run
/// async-signal-safe code until it calls `exec` or `_exit` (a lock another
/// thread held stays locked for ever in the child). In a single-threaded
/// process there is no such restriction.
pub unsafe fn fork() -> Result<u32> {
    // SAFETY: the caller upholds the contract above.
    match unsafe { libc::fork() } {
        -1 => Err(Error::last_os("fork")),
        pid => Ok(pid as u32),
    }
}

/// Ends the calling process at once (`_exit`): no destructors, no
/// `atexit` handlers, no flush of Rust's buffered stdout. Async-signal-safe.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}

/// Reaps `pid` if it has ended (`waitpid` with `WNOHANG` unless `block`).
/// `Ok(None)`: still running. A child reaped by someone else (a `SIGCHLD`
/// set to `SIG_IGN`, a `waitpid(-1)` elsewhere) is `Err(NotFound)`.
pub fn wait(pid: u32, block: bool) -> Result<Option<Exit>> {
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer; waitpid touches nothing
        // else of ours.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, flags) };
        if r == 0 {
            return Ok(None);
        }
        if r < 0 {
            let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            match e {
                libc::EINTR => continue,
                libc::ECHILD => return Err(Error::NotFound),
                _ => return Err(Error::from_errno("waitpid", e)),
            }
        }
        if let Some(exit) = Exit::from_status(status) {
            return Ok(Some(exit));
        }
    }
}

/// Sends `signal` to `pid`. A process that is gone (or a zombie not yet
/// reaped: then the signal is simply lost) is `Ok`.
pub fn kill(pid: u32, signal: i32) -> Result<()> {
    // SAFETY: kill has no memory preconditions.
    if unsafe { libc::kill(pid as libc::pid_t, signal) } == 0 {
        return Ok(());
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ESRCH) => Ok(()),
        e => Err(Error::from_errno("kill", e.unwrap_or(0))),
    }
}

/// The parent's pid (`getppid`). Async-signal-safe.
pub fn parent_pid() -> u32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// Asks the kernel to send `signal` to the calling process when its parent
/// *thread* exits (`PR_SET_PDEATHSIG`; PITFALLS.md, "Child processes").
/// A parent that died before the call is missed: compare
/// [`parent_pid`] with the expected pid afterwards. Async-signal-safe.
pub fn set_parent_death_signal(signal: i32) -> Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: prctl with PR_SET_PDEATHSIG reads one integer argument.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) } != 0 {
            return Err(Error::last_os("prctl"));
        }
        Ok(())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = signal;
        Err(Error::Unsupported("parent-death signal"))
    }
}

/// Clears `FD_CLOEXEC` on `fd`, so that it survives the next `exec`: the
/// way to pass a descriptor on purpose, in the child after `fork` and
/// before `exec` (everything the crate opens is close-on-exec from birth).
/// Async-signal-safe.
pub fn clear_cloexec(fd: RawFd) -> Result<()> {
    // SAFETY: fcntl on any integer is memory-safe; a bad one is EBADF.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
        return Err(Error::last_os("fcntl"));
    }
    Ok(())
}

/// Duplicates `fd` (close-on-exec), taking ownership of the copy.
pub fn dup(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a borrowed, open descriptor.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        return Err(Error::last_os("fcntl"));
    }
    // SAFETY: `r` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// Restores the default disposition of `signal` and unblocks it in the
/// calling thread: a child must not inherit a blocked or ignored
/// `SIGTERM` (PITFALLS.md). Async-signal-safe.
pub fn reset_signal(signal: i32) {
    // SAFETY: plain calls on local, initialised sigset storage; SIG_DFL
    // is a valid disposition for any catchable signal.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// How many threads the calling process runs (`/proc/self/task`); `None`
/// where that cannot be read (no procfs).
pub fn thread_count() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/task").ok()?.count())
}

/// How many CPUs the calling thread may run on (its affinity mask);
/// `None` where the platform does not say.
pub fn affinity_cpus() -> Option<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: cpu_set_t is plain bits; zeroed is a valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is valid for writes of its own size.
        let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
        if r != 0 {
            return None;
        }
        // SAFETY: `set` was filled by the kernel.
        let n = unsafe { libc::CPU_COUNT(&set) };
        usize::try_from(n).ok().filter(|&n| n > 0)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        None
    }
}

/// A process descriptor (`pidfd_open`, Linux 5.3): names one process
/// without racing pid reuse, and becomes readable when it exits, so a
/// waiter sleeps in `poll` with a timeout instead of polling `waitpid`.
#[derive(Debug)]
pub struct Pidfd(OwnedFd);

impl Pidfd {
    /// Opens a descriptor on `pid` (close-on-exec).
    /// [`Error::Unsupported`] on kernels and platforms without it.
    pub fn open(pid: u32) -> Result<Pidfd> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            // SAFETY: pidfd_open takes a pid and flags; no memory is touched.
            let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
            if r < 0 {
                let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                return Err(match e {
                    libc::ENOSYS | libc::EINVAL => Error::Unsupported("pidfd_open"),
                    libc::ESRCH => Error::NotFound,
                    _ => Error::from_errno("pidfd_open", e),
                });
            }
            // SAFETY: `r` is a fresh descriptor (pidfds are O_CLOEXEC) that
            // nothing else owns.
            Ok(Pidfd(unsafe { OwnedFd::from_raw_fd(r as RawFd) }))
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = pid;
            Err(Error::Unsupported("pidfd_open"))
        }
    }

    /// Sends `signal` to exactly this process (`pidfd_send_signal`, Linux
    /// 5.1): never to another that reused its pid. `Ok` if it is gone.
    pub fn send_signal(&self, signal: i32) -> Result<()> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            // SAFETY: a valid pidfd, a signal number, a null siginfo (the
            // kernel fills it as for kill), no flags.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    self.0.as_raw_fd(),
                    signal,
                    std::ptr::null::<libc::siginfo_t>(),
                    0u32,
                )
            };
            if r == 0 {
                return Ok(());
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::ESRCH) => Ok(()),
                e => Err(Error::from_errno("pidfd_send_signal", e.unwrap_or(0))),
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = signal;
            Err(Error::Unsupported("pidfd_send_signal"))
        }
    }

    /// Waits until the process has exited (`true`) or `timeout` passed
    /// (`false`; `None` waits for ever). It stays unreaped: call [`wait`].
    pub fn wait_exited(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.map(Deadline::after);
        loop {
            let ms = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.remaining();
                    // Round up: a timeout never ends early.
                    i32::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX)
                }
            };
            let mut p = libc::pollfd {
                fd: self.0.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let r = unsafe { libc::poll(&mut p, 1, ms) };
            if r > 0 {
                return Ok(true);
            }
            if r == 0 {
                if deadline.is_some_and(|d| d.has_passed()) {
                    return Ok(false);
                }
                continue;
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                e => return Err(Error::from_errno("poll", e.unwrap_or(0))),
            }
        }
    }
}

/// `SIGTERM`: what [`kill`] sends for Python's `terminate()`.
pub const SIGTERM: i32 = libc::SIGTERM;
/// `SIGKILL`: what [`kill`] sends for Python's `kill()`.
pub const SIGKILL: i32 = libc::SIGKILL;

/// Takes ownership of an inherited descriptor `fd` after checking that it
/// is open, and makes it close-on-exec again (so it is not passed on to
/// this process's own children by accident).
///
/// # Safety
/// Nothing else in this process owns `fd` or will close it: it was passed
/// to this process on purpose and its number was told to this caller only.
pub unsafe fn take_inherited(fd: RawFd) -> Result<OwnedFd> {
    // SAFETY: fcntl on any integer is memory-safe; EBADF if not open.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(Error::InvalidArgument("inherited descriptor is not open"));
    }
    // SAFETY: open (checked above) and, per the caller, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether child `pid` has ended, without reaping it (`waitid` with
/// `WNOWAIT`). A pid that is not this process's child counts as ended.
pub fn has_exited(pid: u32) -> bool {
    // SAFETY: siginfo_t is plain data; zeroed is valid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `info` is a valid out-pointer for the call.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r == 0 {
            // SAFETY: filled by waitid (or left zeroed: pid 0, running).
            return unsafe { info.si_pid() } != 0;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return true;
        }
    }
}

/// The soft descriptor limit (`RLIMIT_NOFILE`), capped at 2^20: the
/// bound for [`cloexec_from`]'s fallback. Read it *before* a fork.
pub fn fd_limit() -> u32 {
    // SAFETY: an all-zero rlimit is valid; getrlimit only writes it.
    let mut r: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `r` is a valid place to write.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 1 << 16;
    }
    u32::try_from(r.rlim_cur.min(1 << 20)).unwrap_or(1 << 20)
}

/// Marks every descriptor from `first` up close-on-exec: in a child
/// between `fork` and `exec`, so that descriptors the program inherited
/// without the flag (a build tool's jobserver pipe, say) do not leak
/// further. `close_range` with `CLOSE_RANGE_CLOEXEC` (Linux 5.11) where
/// the kernel has it; otherwise `fcntl` on each number below `limit`
/// (from [`fd_limit`], read before the fork). Async-signal-safe.
pub fn cloexec_from(first: u32, limit: u32) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        // SAFETY: close_range takes two descriptor numbers and flags; with
        // CLOSE_RANGE_CLOEXEC it only sets a flag on open descriptors.
        let r =
            unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
        if r == 0 {
            return;
        }
    }
    cloexec_each(first, limit);
}

/// [`cloexec_from`]'s fallback: `fcntl` on every number in
/// `first..limit`. Async-signal-safe.
fn cloexec_each(first: u32, limit: u32) {
    for fd in first..limit {
        let Ok(fd) = libc::c_int::try_from(fd) else {
            return;
        };
        // SAFETY: fcntl on a number that may not be open: EBADF, no effect.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
            // SAFETY: as above; only the close-on-exec flag changes.
            unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
        }
    }
}

/// Registers `f` to run when the process exits through `exit` (returning
/// from `main`, `std::process::exit`), as C's `atexit`: where a launcher
/// joins the children it still has, as Python does at interpreter exit.
pub fn at_exit(f: extern "C" fn()) -> Result<()> {
    // SAFETY: `f` is a plain function valid for the program's lifetime.
    if unsafe { libc::atexit(f) } != 0 {
        return Err(Error::Os {
            call: "atexit",
            source: std::io::Error::other("atexit refused"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fallback for kernels without `CLOSE_RANGE_CLOEXEC` sets the flag
    /// on an inheritable descriptor (plain `dup` clears it).
    #[test]
    fn cloexec_fallback_marks_inheritable_fds() {
        // SAFETY: dup of descriptor 2 (stderr): a new descriptor this test
        // owns and closes.
        let fd = unsafe { libc::dup(2) };
        assert!(fd >= 0);
        // SAFETY: `fd` is open and ours.
        let before = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert_eq!(before & libc::FD_CLOEXEC, 0);
        cloexec_each(fd as u32, fd as u32 + 1);
        // SAFETY: as above.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        // SAFETY: closing our own descriptor once.
        unsafe { libc::close(fd) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        assert!(fd_limit() > 3);
    }
}
