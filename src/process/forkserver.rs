//! The forkserver: a single-threaded helper that forks children on
//! request, so a multi-threaded program gets `fork`'s start-up cost safely.
//!
//! Started on first use by re-executing this binary (it enters through
//! [`enter`](super::enter) before `main` does anything, so it runs one
//! thread); it dies with the thread that started it (`PR_SET_PDEATHSIG`,
//! see PITFALLS.md) and, should it die, the next request starts a new one.
//!
//! A request travels on the server's pipe: the requester's pid, the
//! requester's descriptor numbers (the child's start pipe, its status
//! slot, the passed handles), and the start message. The server opens the
//! slot and the child's descriptors through `/proc/<requester>/fd/<n>`
//! before it forks and publishes the pid (until then the requester keeps
//! them open: afterwards it may close them and their numbers be reused). The server writes each child's pid into its slot, then, when it
//! reaps the child, its exit status: the requester is not the child's
//! parent and cannot `waitpid` it. An empty request asks the server to
//! reap now.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::child::{finish, run_message, start_end, take_fds, START_READ};
use super::message::{decode, encode};
use super::EXIT_REFUSED;
use crate::sys::child::{self as os, Exit};
use crate::{AtomicValue, Connection, Error, Pipe, Result, Segment};

const FORKED: u64 = 1 << 62;
const EXITED: u64 = 1 << 63;

/// A child's status as the server writes it: `FORKED | pid`, then
/// `EXITED | FORKED | status << 32 | pid` (`status` as `waitpid` gives it,
/// 16 bits).
#[derive(Clone, Debug)]
pub(crate) struct Slot(AtomicValue<u64>);

impl Slot {
    fn new() -> Result<Slot> {
        Ok(Slot(AtomicValue::anonymous(0)?))
    }

    fn pid(&self) -> Option<u32> {
        let w = self.0.load();
        (w & FORKED != 0).then_some(w as u32)
    }

    /// The child's exit, once the server reaped it.
    pub(crate) fn exit(&self) -> Option<Exit> {
        let w = self.0.load();
        if w & EXITED == 0 {
            return None;
        }
        let status = ((w >> 32) & 0xffff) as i32;
        Some(match status & 0x7f {
            0 => Exit::Code((status >> 8) & 0xff),
            sig => Exit::Signal(sig),
        })
    }

    /// Waits up to `d` for the exit status (the child has ended: the
    /// server is asked to reap now, and does within microseconds).
    pub(crate) fn wait_exit(&self, d: Duration) {
        nudge();
        self.wait_for(EXITED, Instant::now() + d);
    }

    /// Sleeps (20 µs, doubling to 2 ms) until `bit` is set or `until`.
    fn wait_for(&self, bit: u64, until: Instant) -> bool {
        let mut pause = Duration::from_micros(20);
        loop {
            if self.0.load() & bit != 0 {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }

    fn set(&self, w: u64) {
        self.0.store(w);
    }
}

/// The running server, as this process knows it.
struct Server {
    pid: u32,
    conn: Connection,
    /// Its end of the request pipe, until it has surely connected.
    _theirs: Connection,
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

fn start_server() -> Result<Server> {
    let (conn, theirs) = Pipe::anonymous(64 * 1024)?;
    let fd = os::dup(
        theirs
            .end()
            .1
            .anonymous_fd()
            .ok_or(Error::Unsupported("memfd"))?,
    )?;
    let env = format!("f:{}/{}", std::process::id(), fd.as_raw_fd());
    // Not a daemon by PR_SET_PDEATHSIG, which would follow the thread
    // that starts it: the server watches its parent's pid instead.
    let pid = super::spawn::exec_self(&env, &[fd.as_raw_fd()], false)?;
    Ok(Server {
        pid,
        conn,
        _theirs: theirs,
    })
}

fn server_alive(s: &Server) -> bool {
    !matches!(os::wait(s.pid, false), Ok(Some(_)) | Err(_))
}

/// Sends `req` to the server, starting it (again) if needed; returns the
/// server's pid.
fn send(req: &[u8], timeout: Duration) -> Result<u32> {
    let mut g = SERVER.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..2 {
        if g.as_ref().map_or(true, |s| !server_alive(s)) {
            if let Some(old) = g.take() {
                let _ = os::kill(old.pid, os::SIGKILL);
                let _ = os::wait(old.pid, true);
            }
            *g = Some(start_server()?);
        }
        let s = g.as_mut().expect("just started");
        match s.conn.send_bytes_timeout(req, timeout) {
            Ok(()) => return Ok(s.pid),
            Err(Error::Disconnected | Error::Closed) => {
                let _ = os::kill(s.pid, os::SIGKILL);
                let _ = os::wait(s.pid, true);
                *g = None;
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::Disconnected)
}

/// Asks the server to reap now (an empty request).
fn nudge() {
    if let Ok(mut g) = SERVER.try_lock() {
        if let Some(s) = g.as_mut() {
            let _ = s.conn.try_send_bytes(&[]);
        }
    }
}

/// Asks the server for a child: `start` is the child's end of its start
/// pipe, `fds` the passed descriptors, `msg` the start message. Returns
/// the child's pid and its slot.
pub(crate) fn request(
    start: &Connection,
    fds: &[OwnedFd],
    deadline: Instant,
) -> Result<(u32, Slot)> {
    let slot = Slot::new()?;
    let mut nums = vec![
        slot.0
            .segment()
            .anonymous_fd()
            .ok_or(Error::Unsupported("memfd"))?
            .as_raw_fd() as u64,
        start
            .end()
            .1
            .anonymous_fd()
            .ok_or(Error::Unsupported("memfd"))?
            .as_raw_fd() as u64,
    ];
    nums.extend(fds.iter().map(|f| f.as_fd().as_raw_fd() as u64));
    let (req, _) = encode(&(u64::from(std::process::id()), nums))?;
    for _ in 0..2 {
        let server = send(&req, deadline.saturating_duration_since(Instant::now()))?;
        // A server that dies with the request unread is started again.
        loop {
            let slice = Instant::now() + Duration::from_millis(50);
            if slot.wait_for(FORKED, slice.min(deadline)) {
                return Ok((slot.pid().unwrap_or(0), slot));
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout);
            }
            if os::has_exited(server) {
                break;
            }
        }
    }
    Err(Error::Disconnected)
}

/// Opens descriptor `n` of process `pid` (`/proc/<pid>/fd/<n>`).
fn open_remote(pid: u64, n: u64) -> Result<OwnedFd> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/{pid}/fd/{n}"))
        .map(OwnedFd::from)
        .map_err(|e| Error::Os {
            call: "open /proc/<pid>/fd",
            source: e,
        })
}

/// The server's loop (in the re-executed helper): returns its exit code
/// when the requester is gone.
pub(crate) fn serve(spec: &str) -> i32 {
    let Some((parent, list)) = spec.split_once('/') else {
        return EXIT_REFUSED;
    };
    let Ok(parent) = parent.parse::<u32>() else {
        return EXIT_REFUSED;
    };
    let Some(mut fds) = take_fds(list) else {
        return EXIT_REFUSED;
    };
    let Some(Some(fd)) = fds.first_mut().map(Option::take) else {
        return EXIT_REFUSED;
    };
    let Ok(mut conn) = start_end(fd) else {
        return EXIT_REFUSED;
    };
    let me = std::process::id();
    let mut slots: Vec<(u32, Slot)> = Vec::new();
    loop {
        reap(&mut slots);
        if os::parent_pid() != parent {
            // The program that started it is gone: so is its server (and
            // with it the daemon children, whose parent it is).
            return 0;
        }
        let req = match conn.recv_bytes_timeout(Duration::from_millis(100)) {
            Ok(r) => r,
            Err(Error::Timeout) => continue,
            Err(_) => return 0,
        };
        if req.is_empty() {
            continue;
        }
        let Ok((requester, nums)) = decode::<(u64, Vec<u64>)>(&req, &mut []) else {
            continue;
        };
        let [slot_fd, start_fd, ..] = nums[..] else {
            continue;
        };
        let Ok(slot) = open_remote(requester, slot_fd)
            .and_then(|fd| Segment::open_descriptor(fd, AtomicValue::<u64>::open))
            .map(Slot)
        else {
            continue;
        };
        // Open the child's descriptors here, before FORKED is published:
        // until then `request` blocks and keeps them open, while after it
        // the requester may close them and reuse their numbers. `None`
        // (one could not be opened): the child refuses.
        let opened = open_remote(requester, start_fd).ok().and_then(|f| {
            let passed: Option<Vec<_>> = nums[2..]
                .iter()
                .map(|&n| open_remote(requester, n).ok().map(Some))
                .collect();
            Some((f, passed?))
        });
        // SAFETY: this helper runs one thread (it entered before `main`
        // could start any and never starts one), so the child may run
        // anything.
        match unsafe { os::fork() } {
            Ok(0) => {
                // The server's own descriptors are not the child's.
                drop((conn, slots, slot));
                let code = opened
                    .and_then(|(f, passed)| {
                        let mut start = start_end(f).ok()?;
                        let msg = start.recv_bytes_timeout(START_READ).ok()?;
                        Some((start, msg, passed))
                    })
                    .map_or(EXIT_REFUSED, |(mut start, msg, mut passed)| {
                        run_message(&mut start, &msg, &mut passed, Some(me))
                    });
                finish(code)
            }
            Ok(pid) => {
                slot.set(FORKED | u64::from(pid));
                slots.push((pid, slot));
            }
            Err(_) => {}
        }
    }
}

/// Reaps every ended child and publishes its status.
fn reap(slots: &mut Vec<(u32, Slot)>) {
    slots.retain(|(pid, slot)| {
        let status = match os::wait(*pid, false) {
            Ok(None) => return true,
            Ok(Some(Exit::Code(c))) => (c as u64 & 0xff) << 8,
            Ok(Some(Exit::Signal(s))) => s as u64 & 0x7f,
            Err(_) => 0xff << 8,
        };
        slot.set(EXITED | FORKED | (status << 32) | u64::from(*pid));
        false
    });
}
