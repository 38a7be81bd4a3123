//! [`Process`]: the parent's handle on one child.

use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use super::boot::Report;
use super::error::ProcessError;
use super::forkserver::Slot;
use super::info::{self, ProcessInfo};
use super::message::{decode, Message};
use super::Method;
use crate::sys::child::{self as os, Exit, Pidfd};
use crate::{Connection, Error};

/// Longest sleep between looks at the child's state while waiting for
/// its report (a report itself wakes the waiter at once).
const SLICE: Duration = Duration::from_millis(20);

/// Who reaps the child: this process (`waitpid`), or the forkserver that
/// forked it (it writes the status into a slot).
pub(crate) enum Reaper {
    Direct,
    Server(Slot),
}

/// What a child needs from its parent until it checks in: its end of the
/// start pipe, the passed descriptors (a forkserver child opens them
/// through `/proc/<parent>/fd`), and the argument itself, whose named
/// handles must not be removed (by their creator's drop) before the child
/// opened them.
// Held only for what dropping it does.
#[allow(dead_code)]
pub(crate) struct Keep {
    pub start_end: Connection,
    pub fds: Vec<OwnedFd>,
    pub arg: Option<Box<dyn std::any::Any + Send>>,
}

/// What the child reported, before its exit code is known.
enum Outcome {
    Pending,
    Got(Report),
    Delivered,
}

/// A child process started by a [`Builder`](super::Builder): Python's
/// `multiprocessing.Process` once started, and a `std::thread::JoinHandle`
/// that joins to the target's return value.
///
/// | Python                      | shmprim                                 |
/// |-----------------------------|-----------------------------------------|
/// | `p.join()`                  | [`p.join()`](Process::join) → `Result<R, ProcessError>` |
/// | `p.join(timeout)`           | [`p.join_timeout(d)`](Process::join_timeout) |
/// | `p.is_alive()`              | [`p.is_alive()`](Process::is_alive)      |
/// | `p.exitcode`                | [`p.exitcode()`](Process::exitcode)      |
/// | `p.pid`, `p.name`, `p.daemon` | [`pid()`](Process::pid), [`name()`](Process::name), [`daemon()`](Process::daemon) |
/// | `p.terminate()`, `p.kill()` | [`terminate()`](Process::terminate), [`kill()`](Process::kill) |
///
/// ## Dropping a `Process` that was not joined
///
/// Nothing is left behind, and drop never blocks for long:
/// * a child that has ended is reaped at once;
/// * a running **daemon** is killed (`SIGKILL`) and reaped, as Python
///   terminates daemons when their parent exits;
/// * a running **non-daemon** keeps running. It is remembered, and reaped
///   by the next [`active_children`](super::active_children) call, the next
///   start, or the next drop of any `Process` after it ended (Python's
///   `active_children()` rule: it "joins" finished children). Between its
///   end and that call it is a zombie; a program that drops running
///   children and starts no more should call `active_children()` now and
///   then.
pub struct Process<R> {
    pub(crate) pid: u32,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    pub(crate) method: Method,
    pub(crate) conn: Connection,
    /// What the child needs until it checks in (dropped then).
    pub(crate) keep: Option<Keep>,
    /// `terminate` or `kill` was called: an end without a check-in is
    /// then the caller's doing, not a start failure.
    signalled: bool,
    pub(crate) start_deadline: Instant,
    pub(crate) reaper: Reaper,
    pub(crate) checked_in: bool,
    pub(crate) exit: Option<Exit>,
    outcome: Outcome,
    pidfd: Option<Pidfd>,
    _r: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid)
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("method", &self.method)
            .field("exit", &self.exit)
            .finish()
    }
}

impl<R: Message> Process<R> {
    /// Waits for the child and returns what its target returned.
    pub fn join(&mut self) -> Result<R, ProcessError> {
        self.join_until(None)
    }

    /// [`join`](Self::join) for at most `timeout`: [`ProcessError::Timeout`]
    /// if the child is still running then (join again later).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R, ProcessError> {
        self.join_until(Some(Instant::now() + timeout))
    }

    fn join_until(&mut self, until: Option<Instant>) -> Result<R, ProcessError> {
        let report = self.wait_report(until)?;
        self.wait_exit(until)?;
        let exitcode = self.exit.map_or(0, Exit::exitcode);
        self.outcome = Outcome::Delivered;
        match report {
            Some(Report::Result(bytes)) => {
                decode::<R>(&bytes, &mut []).map_err(|e| ProcessError::Result(e.to_string()))
            }
            Some(Report::Panic(message)) => Err(ProcessError::Panicked { message, exitcode }),
            Some(Report::Refused(reason)) if self.checked_in => Err(ProcessError::Result(reason)),
            Some(Report::Refused(reason)) => Err(ProcessError::BadArgument { reason, exitcode }),
            Some(Report::CheckedIn) | None if !self.checked_in && !self.signalled => {
                Err(ProcessError::NeverCheckedIn {
                    exitcode: self
                        .exit
                        .filter(|_| !self.killed_at_start())
                        .map(Exit::exitcode),
                })
            }
            Some(Report::CheckedIn) | None => Err(ProcessError::Died { exitcode }),
        }
    }
}

impl<R> Process<R> {
    pub(crate) fn new(
        pid: u32,
        name: String,
        daemon: bool,
        method: Method,
        conn: Connection,
        start_deadline: Instant,
        reaper: Reaper,
    ) -> Self {
        info::register(pid, &name, daemon, matches!(reaper, Reaper::Direct));
        let mut conn = conn;
        conn.set_wait_policy(crate::WaitPolicy::park());
        Process {
            pid,
            name,
            daemon,
            method,
            conn,
            keep: None,
            signalled: false,
            start_deadline,
            reaper,
            checked_in: false,
            exit: None,
            outcome: Outcome::Pending,
            pidfd: None,
            _r: PhantomData,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The name given to the [`Builder`](super::Builder) (or
    /// `Process-<n>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it dies with this process.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// How it was started.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Its pid and name.
    pub fn info(&self) -> ProcessInfo {
        ProcessInfo {
            pid: self.pid,
            name: self.name.clone(),
        }
    }

    /// Whether it is still running (reaps it if it ended).
    pub fn is_alive(&mut self) -> bool {
        let _ = self.poll_exit();
        self.exit.is_none()
    }

    /// Python's `exitcode`: `None` while it runs, then its exit code, or
    /// minus the signal that ended it.
    pub fn exitcode(&mut self) -> Option<i32> {
        let _ = self.poll_exit();
        self.exit.map(Exit::exitcode)
    }

    /// Sends `SIGTERM` (Python's `terminate()`). Nothing if it ended.
    pub fn terminate(&mut self) -> Result<(), ProcessError> {
        self.signal(os::SIGTERM)
    }

    /// Sends `SIGKILL` (Python's `kill()`). Nothing if it ended.
    pub fn kill(&mut self) -> Result<(), ProcessError> {
        self.signal(os::SIGKILL)
    }

    fn signal(&mut self, sig: i32) -> Result<(), ProcessError> {
        // Reaped already: the pid may name someone else now.
        if self.poll_exit().map_err(ProcessError::Os)?.is_some() {
            return Ok(());
        }
        self.signalled = true;
        self.send(sig).map_err(ProcessError::Os)
    }

    /// Signals the child: through its pidfd where one is open (a
    /// forkserver child's is opened before it can exit, so a pid the
    /// server reaped and the kernel reused is never hit), else by pid.
    fn send(&self, sig: i32) -> crate::Result<()> {
        match &self.pidfd {
            Some(fd) => fd.send_signal(sig),
            None => os::kill(self.pid, sig),
        }
    }

    /// Keeps `fd` as the child's process descriptor (see [`Self::send`]).
    pub(crate) fn set_pidfd(&mut self, fd: Option<Pidfd>) {
        self.pidfd = fd;
    }

    /// Kills the child (if it runs) and reaps it.
    pub(crate) fn reap_killed(&mut self) {
        if self.poll_exit().ok().flatten().is_none() {
            let _ = self.send(os::SIGKILL);
            let _ = self.wait_exit(None);
        }
    }

    fn killed_at_start(&self) -> bool {
        matches!(self.exit, Some(Exit::Signal(9))) && Instant::now() >= self.start_deadline
    }

    /// Looks (without blocking) whether the child ended, reaping it.
    pub(crate) fn poll_exit(&mut self) -> crate::Result<Option<Exit>> {
        if self.exit.is_none() {
            self.exit = match &self.reaper {
                Reaper::Direct => match os::wait(self.pid, false) {
                    Err(Error::NotFound) => Some(Exit::Code(-1)),
                    other => other?,
                },
                Reaper::Server(slot) => slot.exit(),
            };
            if self.exit.is_some() {
                info::unregister(self.pid);
            }
        }
        Ok(self.exit)
    }

    /// Reads reports until the final one (or the child's end), honouring
    /// the start deadline while the child has not checked in.
    fn wait_report(&mut self, until: Option<Instant>) -> Result<Option<Report>, ProcessError> {
        loop {
            match &self.outcome {
                Outcome::Delivered => return Err(ProcessError::AlreadyJoined),
                Outcome::Got(_) => break,
                Outcome::Pending => {}
            }
            let now = Instant::now();
            let mut slice = SLICE;
            if let Some(u) = until {
                slice = slice.min(u.saturating_duration_since(now));
            }
            if !self.checked_in {
                slice = slice.min(self.start_deadline.saturating_duration_since(now));
            }
            match self.conn.recv_bytes_timeout(slice) {
                Ok(frame) => {
                    self.on_report(&frame)?;
                    continue;
                }
                Err(Error::Timeout) => {}
                Err(Error::Disconnected | Error::Closed) => {
                    // Gone without a final report: its exit tells why.
                    self.wait_exit(until)?;
                    return Ok(None);
                }
                Err(e) => return Err(ProcessError::Os(e)),
            }
            if self.poll_exit().map_err(ProcessError::Os)?.is_some() {
                // Ended: take what it managed to say.
                while let Ok(frame) = self.conn.try_recv_bytes() {
                    self.on_report(&frame)?;
                }
                break;
            }
            if !self.checked_in && Instant::now() >= self.start_deadline {
                let _ = os::kill(self.pid, os::SIGKILL);
                self.wait_exit(None)?;
                return Ok(None);
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return Err(ProcessError::Timeout);
            }
        }
        match std::mem::replace(&mut self.outcome, Outcome::Pending) {
            Outcome::Got(r) => Ok(Some(r)),
            _ => Ok(None),
        }
    }

    fn on_report(&mut self, frame: &[u8]) -> Result<(), ProcessError> {
        match Report::decode(frame).map_err(|e| ProcessError::Result(e.to_string()))? {
            Report::CheckedIn => {
                self.checked_in = true;
                self.keep = None;
            }
            r => self.outcome = Outcome::Got(r),
        }
        Ok(())
    }

    /// Waits for the child to end and reaps it: `pidfd` + `poll` where the
    /// kernel has it, short sleeps otherwise.
    fn wait_exit(&mut self, until: Option<Instant>) -> Result<(), ProcessError> {
        let mut pause = Duration::from_micros(200);
        loop {
            if self.poll_exit().map_err(ProcessError::Os)?.is_some() {
                return Ok(());
            }
            let left = until.map(|u| u.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Err(ProcessError::Timeout);
            }
            if until.is_none() && matches!(self.reaper, Reaper::Direct) {
                self.exit = os::wait(self.pid, true).map_err(ProcessError::Os)?;
                if self.exit.is_some() {
                    info::unregister(self.pid);
                }
                continue;
            }
            if self.pidfd.is_none() {
                self.pidfd = Pidfd::open(self.pid).ok();
            }
            match &self.pidfd {
                Some(fd) => {
                    let slice = left.unwrap_or(SLICE).min(SLICE);
                    fd.wait_exited(Some(slice)).map_err(ProcessError::Os)?;
                    if let Reaper::Server(slot) = &self.reaper {
                        // Exited: the server writes the status soon after.
                        slot.wait_exit(slice);
                    }
                }
                None => {
                    std::thread::sleep(pause.min(left.unwrap_or(pause)));
                    pause = (pause * 2).min(SLICE);
                }
            }
        }
    }
}

impl<R> Drop for Process<R> {
    fn drop(&mut self) {
        if self.poll_exit().ok().flatten().is_some() {
            return;
        }
        if self.daemon {
            self.reap_killed();
        } else if matches!(self.reaper, Reaper::Direct) {
            info::orphan(self.pid);
        }
    }
}
