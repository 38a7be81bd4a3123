//! [`ProcessError`]: how starting or joining a child can fail.

use std::fmt;

use crate::Error;

/// Why a child gave no result. Every variant that means the child is gone
/// carries its exit code as Python reports it: the code it exited with,
/// or minus the signal that ended it.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProcessError {
    /// The child could not be started (fork or exec failed, the bootstrap
    /// could not be written, a handle in the argument cannot travel).
    Start(Error),
    /// `fork` was refused: the process runs more than one thread (see
    /// [`Builder::fork`](super::Builder::fork)).
    Threaded {
        /// Threads counted in this process.
        threads: usize,
    },
    /// The child never checked in within the start timeout: its `main`
    /// lacks [`enter`](super::enter), it crashed before it, or it hung.
    /// It was killed (if still running) and reaped.
    NeverCheckedIn {
        /// Its exit code, if it ended by itself before the deadline.
        exitcode: Option<i32>,
    },
    /// The child refused its start message: the argument could not be
    /// decoded, a handle could not be opened, the function token was for
    /// another executable.
    BadArgument {
        /// What the child reported.
        reason: String,
        /// Its exit code.
        exitcode: i32,
    },
    /// The target panicked.
    Panicked {
        /// The panic message (`"Box<dyn Any>"` for a payload that is not
        /// a string).
        message: String,
        /// The child's exit code ([`EXIT_PANIC`](super::EXIT_PANIC)).
        exitcode: i32,
    },
    /// The child ended without a result: it exited early, or a signal
    /// (`terminate`, `kill`, a crash) ended it.
    Died {
        /// Exit code, or minus the signal number.
        exitcode: i32,
    },
    /// The result could not be decoded, or the child could not encode it.
    Result(String),
    /// `join_timeout` ran out; the child still runs. Join again later.
    Timeout,
    /// The outcome was already returned by an earlier join.
    AlreadyJoined,
    /// An operating-system or shared-memory error while waiting.
    Os(Error),
}

impl ProcessError {
    /// The child's exit code where this error carries one.
    pub fn exitcode(&self) -> Option<i32> {
        match self {
            ProcessError::NeverCheckedIn { exitcode } => *exitcode,
            ProcessError::BadArgument { exitcode, .. }
            | ProcessError::Panicked { exitcode, .. }
            | ProcessError::Died { exitcode } => Some(*exitcode),
            _ => None,
        }
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessError::Start(e) => write!(f, "could not start the process: {e}"),
            ProcessError::Threaded { threads } => write!(
                f,
                "fork refused: this process runs {threads} threads (use spawn or forkserver)"
            ),
            ProcessError::NeverCheckedIn { exitcode: Some(c) } => write!(
                f,
                "the child exited with code {c} before checking in (does main call shmprim::process::enter()?)"
            ),
            ProcessError::NeverCheckedIn { exitcode: None } => f.write_str(
                "the child did not check in before the start timeout (does main call shmprim::process::enter()?)",
            ),
            ProcessError::BadArgument { reason, exitcode } => {
                write!(f, "the child refused its argument ({reason}); exit code {exitcode}")
            }
            ProcessError::Panicked { message, exitcode } => {
                write!(f, "the child panicked: {message} (exit code {exitcode})")
            }
            ProcessError::Died { exitcode } if *exitcode < 0 => {
                write!(f, "the child was killed by signal {}", -exitcode)
            }
            ProcessError::Died { exitcode } => {
                write!(f, "the child exited with code {exitcode} without a result")
            }
            ProcessError::Result(why) => write!(f, "the result did not arrive intact: {why}"),
            ProcessError::Timeout => f.write_str("timed out; the child still runs"),
            ProcessError::AlreadyJoined => f.write_str("the outcome was returned already"),
            ProcessError::Os(e) => write!(f, "waiting for the child failed: {e}"),
        }
    }
}

impl std::error::Error for ProcessError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProcessError::Start(e) | ProcessError::Os(e) => Some(e),
            _ => None,
        }
    }
}
