//! The child's side: [`enter`], and the protocol every start method runs
//! once the child exists (check in, run, report, exit).

use std::io::Write;
use std::os::fd::{OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use super::boot::{decode_head, Report, DIE_WITH_PARENT};
use super::info;
use super::message::Decoder;
use super::target::Call;
use super::{EXIT_PANIC, EXIT_REFUSED};
use crate::sys::child as os;
use crate::{Connection, End, Pipe, Segment};

/// The environment variable that makes a re-executed binary a child:
/// `s:<fd>,<fd>...` (spawn: the start pipe's descriptor, then the passed
/// ones) or `f:<fd>` (the forkserver).
pub(crate) const ENV: &str = "SHMPRIM_PROCESS";

/// How long a re-executed child waits for its start message.
pub(crate) const START_READ: Duration = Duration::from_secs(60);

/// The entry call: put it first in `main`. In a process started by the
/// `spawn` or `forkserver` method it runs the child's work and exits,
/// never returning; anywhere else it returns at once.
///
/// Code before it runs again in every spawned child (procspawn's
/// warning, PITFALLS.md): keep it first. Test binaries use
/// [`test_entry!`](crate::process_test_entry) instead.
pub fn enter() {
    let Some(spec) = std::env::var_os(ENV) else {
        return;
    };
    // Grandchildren must not take this process's descriptors for theirs.
    std::env::remove_var(ENV);
    let spec = spec.to_string_lossy().into_owned();
    let code = match spec.split_once(':') {
        Some(("s", fds)) => run_spawned(fds),
        Some(("f", fds)) => super::forkserver::serve(fds),
        _ => EXIT_REFUSED,
    };
    finish(code)
}

/// Flushes stdout and ends the process without running destructors (the
/// parent owns everything this child inherited).
pub(crate) fn finish(code: i32) -> ! {
    // As Python's children do: kill daemons, join the rest.
    info::join_children();
    let _ = std::io::stdout().flush();
    os::exit_now(code)
}

/// The descriptors listed in `list` (`3,7,9`), owned by this process.
pub(crate) fn take_fds(list: &str) -> Option<Vec<Option<OwnedFd>>> {
    let mut v = Vec::new();
    for s in list.split(',').filter(|s| !s.is_empty()) {
        let fd: RawFd = s.parse().ok()?;
        // SAFETY: the parent passed these descriptors to this process on
        // purpose (named in ENV, which `enter` removed so it is read once),
        // and nothing else in this process knows their numbers;
        // `take_inherited` checks each is open.
        v.push(Some(unsafe { os::take_inherited(fd) }.ok()?));
    }
    Some(v)
}

/// The start pipe's end B, from its descriptor.
pub(crate) fn start_end(fd: OwnedFd) -> crate::Result<Connection> {
    Segment::open_descriptor(fd, Pipe::open)?.connect(End::B)
}

fn run_spawned(list: &str) -> i32 {
    let Some(mut fds) = take_fds(list) else {
        return EXIT_REFUSED;
    };
    let Some(Some(boot)) = fds.first_mut().map(Option::take) else {
        return EXIT_REFUSED;
    };
    let Ok(mut conn) = start_end(boot) else {
        return EXIT_REFUSED;
    };
    let Ok(msg) = conn.recv_bytes_timeout(START_READ) else {
        return EXIT_REFUSED;
    };
    run_message(&mut conn, &msg, &mut fds[1..], None)
}

/// Decodes a start message and runs it: what spawned children and
/// forkserver children (whose actual parent, `real_parent`, is the
/// server) do.
pub(crate) fn run_message(
    conn: &mut Connection,
    msg: &[u8],
    fds: &mut [Option<OwnedFd>],
    real_parent: Option<u32>,
) -> i32 {
    let mut input = Decoder::new(msg, fds);
    let prepared = decode_head(&mut input).and_then(|head| {
        if head.flags & DIE_WITH_PARENT != 0 {
            become_daemon(real_parent.unwrap_or(head.parent))?;
        }
        info::set_identity(&head.name, Some((head.parent, head.parent_name.clone())));
        let (trampoline, func) = head.token.entry();
        match trampoline(func, &mut input, None)? {
            Call::Prepared(p) => Ok(p),
            Call::Done(_) => Err(crate::Error::Corrupt("trampoline made the call")),
        }
    });
    match prepared {
        Ok(p) => run(conn, true, p),
        Err(e) => {
            let _ = conn.send_bytes(&Report::Refused(e.to_string()).encode());
            EXIT_REFUSED
        }
    }
}

/// Dies with the parent (`SIGKILL`), and at once if it is gone already.
pub(crate) fn become_daemon(parent: u32) -> crate::Result<()> {
    match os::set_parent_death_signal(os::SIGKILL) {
        Ok(()) | Err(crate::Error::Unsupported(_)) => {}
        Err(e) => return Err(e),
    }
    if os::parent_pid() != parent {
        finish(EXIT_REFUSED);
    }
    Ok(())
}

/// Checks in (unless `check_in` is false: a forked child, which its
/// parent counts as checked in from the fork on), runs the target,
/// reports, and returns the exit code.
pub(crate) fn run(
    conn: &mut Connection,
    check_in: bool,
    prepared: impl FnOnce() -> crate::Result<Vec<u8>>,
) -> i32 {
    if check_in && conn.send_bytes(&Report::CheckedIn.encode()).is_err() {
        return EXIT_REFUSED;
    }
    let (report, code) = match catch_unwind(AssertUnwindSafe(prepared)) {
        Ok(Ok(bytes)) => (Report::Result(bytes), 0),
        Ok(Err(e)) => (Report::Refused(format!("result: {e}")), EXIT_REFUSED),
        Err(payload) => (Report::Panic(panic_message(&*payload)), EXIT_PANIC),
    };
    let sent = conn.send_bytes(&report.encode());
    conn.close();
    if sent.is_err() && code == 0 {
        return EXIT_REFUSED;
    }
    code
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}
