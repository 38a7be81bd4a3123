//! Starting children: `spawn` (re-execute this binary), `fork`, and the
//! forkserver's request, all ending in a [`Process`].

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Instant;

use super::boot::{encode_head, Head, DIE_WITH_PARENT};
use super::child::{self, become_daemon, ENV};
use super::error::ProcessError;
use super::handle::{Keep, Process, Reaper};
use super::info;
use super::message::{Encoder, Message};
use super::target::{encode_result, FnRef};
use super::{Builder, Method, EXIT_REFUSED};
use crate::sys::child as os;
use crate::{Error, Pipe};

/// Ring bytes per direction of a child's start pipe: start messages and
/// results larger than half of it are streamed in fragments.
const START_PIPE: usize = 16 * 1024;

/// Ring bytes per direction of a forked child's pipe, which carries only
/// its reports: a smaller segment to create, zero and map per start.
const FORK_PIPE: usize = 4 * 1024;

/// The argument a re-executed child gets: a `main` that calls
/// [`enter`](super::enter) first never sees it; a test binary without the
/// entry macro takes it as a filter that matches no test and exits, which
/// the parent reports as [`ProcessError::NeverCheckedIn`].
const CHILD_ARG: &str = "__shmprim_process_child__";

/// Re-executes this binary with `ENV=env`, passing `fds` (their
/// close-on-exec flag cleared in the child only). With `deathsig` the
/// child gets the parent-death signal, and exits at once if the parent is
/// already gone.
pub(crate) fn exec_self(env: &str, fds: &[RawFd], deathsig: bool) -> crate::Result<u32> {
    let exe = if cfg!(any(target_os = "linux", target_os = "android")) {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().map_err(|e| Error::Os {
            call: "current_exe",
            source: e,
        })?
    };
    let mut cmd = Command::new(exe);
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    cmd.arg(CHILD_ARG).env(ENV, env);
    let fds = fds.to_vec();
    let parent = std::process::id();
    let fd_limit = os::fd_limit();
    // SAFETY: the closure runs in the child between fork and exec and
    // does only async-signal-safe things: close_range, fcntl,
    // signal/sigprocmask, prctl, getppid, _exit; `fds` was allocated before the fork and is
    // only read.
    unsafe {
        cmd.pre_exec(move || {
            os::cloexec_from(3, fd_limit);
            for &fd in &fds {
                os::clear_cloexec(fd)?;
            }
            os::reset_signal(os::SIGTERM);
            if deathsig {
                let _ = os::set_parent_death_signal(os::SIGKILL);
                if os::parent_pid() != parent {
                    os::exit_now(EXIT_REFUSED);
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| Error::Os {
        call: "spawn",
        source: e,
    })?;
    // `std::process::Child` does not wait on drop: the Process reaps.
    Ok(child.id())
}

fn start_error(e: Error) -> ProcessError {
    ProcessError::Start(e)
}

/// The start message for `f(arg)`, and the descriptors it passes.
fn start_message<A: Message + 'static, R: Message + 'static>(
    b: &Builder,
    name: &str,
    f: FnRef<A, R>,
    arg: &A,
) -> Result<(Vec<u8>, Vec<OwnedFd>), ProcessError> {
    let mut enc = Encoder::new();
    let head = Head {
        flags: if b.dies_with_parent() {
            DIE_WITH_PARENT
        } else {
            0
        },
        parent: std::process::id(),
        name: name.to_owned(),
        parent_name: info::current_name(),
        token: f.raw(),
    };
    encode_head(&mut enc, &head);
    arg.encode(&mut enc).map_err(start_error)?;
    Ok(enc.finish())
}

/// Starts `f(arg)` by re-executing this binary.
pub(crate) fn spawn<A: Message + Send + 'static, R: Message + 'static>(
    b: Builder,
    f: FnRef<A, R>,
    arg: A,
) -> Result<Process<R>, ProcessError> {
    info::sweep();
    let name = b.name_or_next();
    let (msg, fds) = start_message(&b, &name, f, &arg)?;
    let (conn, theirs) = Pipe::anonymous(START_PIPE).map_err(start_error)?;
    let boot = theirs
        .end()
        .1
        .anonymous_fd()
        .ok_or(Error::Unsupported("anonymous segment without a descriptor"))
        .and_then(os::dup)
        .map_err(start_error)?;
    let mut all = vec![boot];
    all.extend(fds);
    let raw: Vec<RawFd> = all.iter().map(|f| f.as_raw_fd()).collect();
    let list: Vec<String> = raw.iter().map(|n| n.to_string()).collect();
    let pid = exec_self(&format!("s:{}", list.join(",")), &raw, b.dies_with_parent())
        .map_err(start_error)?;
    let deadline = Instant::now() + b.start_timeout;
    let mut p = Process::new(
        pid,
        name,
        b.daemon,
        Method::Spawn,
        conn,
        deadline,
        Reaper::Direct,
    );
    p.keep = Some(Keep {
        start_end: theirs,
        fds: all,
        arg: Some(Box::new(arg)),
    });
    if let Err(e) = p.conn.send_bytes_timeout(&msg, b.start_timeout) {
        // It never read its start message: gone, or not a child at all.
        let exit = p.poll_exit().ok().flatten();
        p.reap_killed();
        return Err(match e {
            Error::Timeout | Error::Disconnected | Error::Closed => ProcessError::NeverCheckedIn {
                exitcode: exit.map(os::Exit::exitcode),
            },
            e => ProcessError::Start(e),
        });
    }
    Ok(p)
}

/// Asks the forkserver for a child running `f(arg)`.
pub(crate) fn forkserver<A: Message + Send + 'static, R: Message + 'static>(
    b: Builder,
    f: FnRef<A, R>,
    arg: A,
) -> Result<Process<R>, ProcessError> {
    let name = b.name_or_next();
    let (msg, fds) = start_message(&b, &name, f, &arg)?;
    let (conn, theirs) = Pipe::anonymous(START_PIPE).map_err(start_error)?;
    let deadline = Instant::now() + b.start_timeout;
    let (pid, slot) = match super::forkserver::request(&theirs, &fds, deadline) {
        Ok(x) => x,
        Err(Error::Timeout) => return Err(ProcessError::NeverCheckedIn { exitcode: None }),
        Err(e) => return Err(start_error(e)),
    };
    // Before the start message goes out: the child waits for it, so this
    // pidfd names the child, never a later owner of its pid (the server
    // reaps it, not us). A child that already ended (refused its
    // descriptors) may have been reaped: no pidfd then, if the server
    // published that.
    let pidfd = os::Pidfd::open(pid).ok().filter(|_| slot.exit().is_none());
    let mut p = Process::new(
        pid,
        name,
        b.daemon,
        Method::Forkserver,
        conn,
        deadline,
        Reaper::Server(slot),
    );
    p.set_pidfd(pidfd);
    p.keep = Some(Keep {
        start_end: theirs,
        fds,
        arg: Some(Box::new(arg)),
    });
    if let Err(e) = p.conn.send_bytes_timeout(&msg, b.start_timeout) {
        p.reap_killed();
        return Err(ProcessError::Start(e));
    }
    Ok(p)
}

/// Forks a child running `f`.
///
/// # Safety
/// As [`Builder::fork_unchecked`].
pub(crate) unsafe fn fork<R: Message, F: FnOnce() -> R>(
    b: Builder,
    f: F,
) -> Result<Process<R>, ProcessError> {
    info::sweep();
    let name = b.name_or_next();
    let (conn, mut theirs) = Pipe::anonymous(FORK_PIPE).map_err(start_error)?;
    let parent = (std::process::id(), info::current_name());
    // What sits in this process's stdout buffer would be printed twice.
    let _ = std::io::stdout().flush();
    // SAFETY: the caller's contract (single-threaded, or only
    // async-signal-safe work in a threaded parent's child).
    match unsafe { os::fork() } {
        Err(e) => Err(start_error(e)),
        Ok(0) => {
            info::set_identity(&name, Some(parent.clone()));
            os::reset_signal(os::SIGTERM);
            if b.dies_with_parent() && become_daemon(parent.0).is_err() {
                child::finish(EXIT_REFUSED);
            }
            let code = child::run(&mut theirs, false, move || {
                let mut out = Vec::new();
                encode_result(&f(), &mut out).map(|()| out)
            });
            child::finish(code)
        }
        Ok(pid) => {
            let deadline = Instant::now() + b.start_timeout;
            let mut p = Process::new(
                pid,
                name,
                b.daemon,
                Method::Fork,
                conn,
                deadline,
                Reaper::Direct,
            );
            // Nothing can keep a forked child from its target (no exec, no
            // start message, no descriptor to open): it is checked in from
            // the fork on, and sends no check-in report (one wake-up of
            // this process fewer per start).
            p.checked_in = true;
            p.keep = Some(Keep {
                start_end: theirs,
                fds: Vec::new(),
                arg: None,
            });
            Ok(p)
        }
    }
}
