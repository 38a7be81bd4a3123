//! [`PoolError`] (the pool as a whole) and [`TaskError`] (one task).

use std::fmt;
use std::time::Duration;

/// Why one task (one item of a map) gave no result. The pool goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The function panicked; the panic message.
    Panicked(String),
    /// The worker running this item died: killed by a signal, or exited.
    /// `exitcode` is Python's: the exit status, or minus the signal.
    WorkerDied {
        /// The dead worker's pid.
        pid: u32,
        /// Its exit code, or minus the signal that ended it.
        exitcode: i32,
    },
    /// The task ran longer than the pool's task timeout: its worker was
    /// killed and replaced.
    TimedOut(Duration),
    /// The argument could not be encoded (in this process; the task never
    /// started), e.g. an anonymous handle, which cannot travel in a task.
    EncodeArgument(String),
    /// The worker could not decode the argument.
    DecodeArgument(String),
    /// The worker could not encode the result.
    EncodeResult(String),
    /// The result arrived but could not be decoded here.
    DecodeResult(String),
    /// The worker refused the function (a token for another executable or
    /// a corrupted record), or a record failed its checks.
    Refused(String),
    /// The pool was terminated (or dropped) before the task finished.
    Terminated,
    /// The pool broke before the task could run (see
    /// [`PoolError::Broken`]).
    Broken(String),
    /// `get_timeout` ran out; the task still runs. Ask again later.
    NotReady,
}

impl TaskError {
    /// Whether this is [`TaskError::NotReady`] (only a wait ran out).
    pub fn is_not_ready(&self) -> bool {
        matches!(self, TaskError::NotReady)
    }
}

/// A signal's usual name, for messages.
fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => "signal",
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked(m) => write!(f, "task panicked: {m}"),
            TaskError::WorkerDied { pid, exitcode } if *exitcode < 0 => write!(
                f,
                "worker {pid} was killed by signal {} ({}) while running the task",
                -exitcode,
                signal_name(-exitcode)
            ),
            TaskError::WorkerDied { pid, exitcode } => write!(
                f,
                "worker {pid} exited with code {exitcode} while running the task"
            ),
            TaskError::TimedOut(d) => {
                write!(f, "task ran past its {d:?} timeout; its worker was killed")
            }
            TaskError::EncodeArgument(m) => write!(f, "argument could not be encoded: {m}"),
            TaskError::DecodeArgument(m) => write!(f, "worker could not decode the argument: {m}"),
            TaskError::EncodeResult(m) => write!(f, "worker could not encode the result: {m}"),
            TaskError::DecodeResult(m) => write!(f, "result could not be decoded: {m}"),
            TaskError::Refused(m) => write!(f, "task refused: {m}"),
            TaskError::Terminated => f.write_str("pool terminated before the task finished"),
            TaskError::Broken(m) => write!(f, "pool broken: {m}"),
            TaskError::NotReady => f.write_str("result not ready yet"),
        }
    }
}

impl std::error::Error for TaskError {}

/// Why a pool call failed as a whole.
#[derive(Debug)]
#[non_exhaustive]
pub enum PoolError {
    /// `join` before `close` (Python's `ValueError: Pool is still
    /// running`).
    NotClosed,
    /// A task submitted after `close`.
    Closed,
    /// The pool was terminated.
    Terminated,
    /// The pool cannot go on: the initializer failed, or a worker could
    /// not be started. Tasks that had not run failed with
    /// [`TaskError::Broken`].
    Broken(String),
    /// Item `index` of a map failed (the first failed item in input
    /// order; the others ran to completion).
    Item {
        /// The item's position in the input.
        index: usize,
        /// Why it failed.
        error: TaskError,
    },
    /// A shared-memory object of the pool could not be made or used.
    Shm(crate::Error),
    /// A worker could not be started.
    Start(crate::process::ProcessError),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::NotClosed => f.write_str("join() needs close() or terminate() first"),
            PoolError::Closed => f.write_str("the pool is closed to new tasks"),
            PoolError::Terminated => f.write_str("the pool was terminated"),
            PoolError::Broken(m) => write!(f, "the pool is broken: {m}"),
            PoolError::Item { index, error } => write!(f, "item {index} failed: {error}"),
            PoolError::Shm(e) => write!(f, "pool shared memory: {e}"),
            PoolError::Start(e) => write!(f, "pool worker could not start: {e}"),
        }
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::Item { error, .. } => Some(error),
            PoolError::Shm(e) => Some(e),
            PoolError::Start(e) => Some(e),
            _ => None,
        }
    }
}

impl From<crate::Error> for PoolError {
    fn from(e: crate::Error) -> Self {
        PoolError::Shm(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_fate() {
        let k = TaskError::WorkerDied {
            pid: 7,
            exitcode: -9,
        };
        assert!(k.to_string().contains("signal 9 (SIGKILL)"), "{k}");
        let e = TaskError::WorkerDied {
            pid: 7,
            exitcode: 3,
        };
        assert!(e.to_string().contains("code 3"), "{e}");
        let m = PoolError::Item { index: 4, error: k };
        assert!(m.to_string().contains("item 4"), "{m}");
    }
}
