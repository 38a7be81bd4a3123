//! Processes: run a Rust function in a child process, Python's
//! `multiprocessing.Process` in Rust's idiom.
//!
//! ```no_run
//! use shmprim::process::{self, Builder, Method};
//! use shmprim::Queue;
//!
//! fn work((q, n): (Queue, u64)) -> u64 {
//!     q.send(&n).unwrap();
//!     n * 2
//! }
//!
//! fn main() {
//!     process::enter(); // first: a spawned child runs its target here
//!     let q = Queue::anonymous(16, 8).unwrap();
//!     let mut p = Builder::new().name("worker").start(work, (q.clone(), 21)).unwrap();
//!     assert_eq!(p.join().unwrap(), 42);
//!     assert_eq!(q.recv::<u64>().unwrap(), 21);
//!     assert_eq!(p.exitcode(), Some(0));
//! }
//! ```
//!
//! | Python `multiprocessing`            | shmprim                                   |
//! |-------------------------------------|-------------------------------------------|
//! | `Process(target=f, args=(a,), name=n, daemon=d)` + `start()` | [`Builder::new()`](Builder)`.name(n).daemon(d).start(f, a)` |
//! | `set_start_method('spawn')`         | [`set_start_method(Method::Spawn)`](set_start_method) |
//! | `Process` with a closure under `fork` | [`Builder::fork`]                       |
//! | `p.join()`, `p.join(t)`             | [`Process::join`], [`Process::join_timeout`] → the return value |
//! | `p.exitcode`, `p.is_alive()`, `p.pid`, `p.name` | [`exitcode`](Process::exitcode), [`is_alive`](Process::is_alive), [`pid`](Process::pid), [`name`](Process::name) |
//! | `p.terminate()`, `p.kill()`         | [`terminate`](Process::terminate), [`kill`](Process::kill) |
//! | `current_process()`, `parent_process()`, `active_children()` | [`current_process`], [`parent_process`], [`active_children`] |
//! | `os.process_cpu_count()`            | [`cpu_count`] (affinity and cgroup quota) |
//!
//! ## Start methods
//!
//! * **spawn** (the default): re-executes this binary (`/proc/self/exe`).
//!   The child enters through [`enter`], which must be the first call of
//!   `main` (code before it runs again in every child); test binaries
//!   declare [`process_test_entry!`](crate::process_test_entry) once
//!   instead. The target is a plain `fn(A) -> R`, named across the exec by
//!   an [`FnRef`] that the child checks belongs to the same executable.
//!   The argument and the result travel through the crate's own shared
//!   memory (an anonymous [`Pipe`](crate::Pipe)): no socket, and the child
//!   inherits exactly the descriptors it is given (the pipe's `memfd`, and
//!   those of anonymous handles in the argument; `O_CLOEXEC` stays on
//!   everything else).
//! * **fork**: [`Builder::fork`] runs a closure in a forked child. Forking
//!   a multi-threaded process and running arbitrary code there is unsound
//!   (a lock another thread held stays locked for ever in the child), so
//!   it is refused with [`ProcessError::Threaded`] unless the caller opts
//!   in through the `unsafe` [`Builder::fork_unchecked`].
//! * **forkserver**: a single-threaded helper, started on first use by
//!   re-executing this binary, forks children on request, so a threaded
//!   program gets `fork`'s start-up cost safely. It dies with the thread
//!   that started it (and is started again when needed).
//!
//! ## Arguments and results
//!
//! [`Message`] is the codec, shared with [`Pool`](crate) tasks: every
//! [`Plain`](crate::Plain) type, `()`, `bool`, `String`, `Vec`, `Option`,
//! tuples, every handle, [`FnRef`], and (feature `serde`) any serde type
//! wrapped in `Serde`. Handles travel by name, or for anonymous ones by
//! their `memfd` ([`Segment::anonymous_fd`](crate::Segment::anonymous_fd),
//! [`Segment::open_descriptor`](crate::Segment::open_descriptor)). A
//! result cannot carry an anonymous handle back. Pass a child a pipe end
//! this process does not use itself: an end is claimed once.
//!
//! ## Nothing hangs, nothing is left behind
//!
//! * A child must check in within the start timeout ([`Builder::start_timeout`],
//!   10 s by default): one that never does (no entry call, a crash before
//!   it, a hang) is killed and reaped, and the join returns
//!   [`ProcessError::NeverCheckedIn`]; an argument the child cannot decode
//!   is [`ProcessError::BadArgument`]. A forked child has nothing to load
//!   or decode before its closure: it counts as checked in from the fork.
//! * A panic in the target reaches the parent as
//!   [`ProcessError::Panicked`] with its message; the child exits with
//!   [`EXIT_PANIC`].
//! * Every child gets `PR_SET_PDEATHSIG = SIGKILL` and checks its
//!   parent's pid right after (the parent may have died before the call):
//!   it dies with its parent, `SIGKILL` included, unless it is a
//!   non-daemon started with [`Builder::outlive_parent`]. The signal
//!   follows the parent *thread* that started the child. At a normal exit
//!   (and before a child the crate started ends) daemons are killed and
//!   the other children are waited for, as Python does.
//! * Every child the crate starts is reaped (see [`Process`] for what
//!   dropping one unjoined does); `join_timeout` sleeps on a `pidfd` where
//!   the kernel has one (Linux 5.3), in short sleeps elsewhere.
//!   A `SIGCHLD` set to `SIG_IGN`, or a `waitpid(-1)` elsewhere in the
//!   program, steals exit codes: such a child reports exit code -1.
//! * Signals (`kill`, `terminate`, a daemon's drop) name a forkserver
//!   child (which the server, not this process, reaps) through a `pidfd`
//!   opened before its start message is sent. Residual window, where no
//!   pidfd could be opened (not Linux, a kernel before 5.3, or a child
//!   that already ended before reading its start message): between the
//!   server reaping the child and writing its status, a signal goes by
//!   pid and could reach a process that reused it.
//! * [`FnRef`] tokens name functions by offset within one loaded object:
//!   [`FnRef::new`] panics for a function in another object than this
//!   crate (a shared library). A child checks that it runs the same
//!   executable file, not the same shared-library files.
//!
//! ## For pool libraries
//!
//! Everything here is written against the crate's public API, and what a
//! pool needs is public: [`Builder::start_ref`] with an [`FnRef`] (a
//! per-task function token can travel inside a [`Message`] too: it checks
//! on arrival that it comes from the same executable and is for the
//! same argument and result types), the [`Message`] codec with
//! [`Encoder`]/[`Decoder`], and [`Process`]'s pid, liveness, exit code,
//! signals and bounded joins.

mod anyfn;
mod boot;
mod child;
mod error;
mod forkserver;
mod handle;
mod info;
mod message;
mod spawn;
mod target;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

pub use anyfn::{AnyFn, CallError};
pub use child::enter;
pub use error::ProcessError;
pub use handle::Process;
pub use info::{active_children, cpu_count, current_process, parent_process, ProcessInfo};
#[cfg(feature = "serde")]
pub use message::Serde;
pub use message::{decode, encode, put_segment, take_segment, Decoder, Encoder, Message};
pub use target::FnRef;

#[cfg(fuzzing)]
pub use boot::__fuzz_boot;

/// The exit code of a child whose target panicked (Rust's own).
pub const EXIT_PANIC: i32 = 101;
/// The exit code of a child that refused its start message.
pub const EXIT_REFUSED: i32 = 102;

/// How a child is started (Python's start methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Re-execute this binary; the child enters through [`enter`].
    Spawn,
    /// `fork` this process (single-threaded callers only).
    Fork,
    /// Ask the forkserver to fork a child.
    Forkserver,
}

static DEFAULT_METHOD: AtomicU8 = AtomicU8::new(0);

/// Sets the start method of every [`Builder`] that does not choose one
/// (Python's `set_start_method`). The default is [`Method::Spawn`].
pub fn set_start_method(m: Method) {
    DEFAULT_METHOD.store(m as u8, Ordering::Relaxed);
}

/// The start method a [`Builder`] uses unless told otherwise.
pub fn start_method() -> Method {
    match DEFAULT_METHOD.load(Ordering::Relaxed) {
        1 => Method::Fork,
        2 => Method::Forkserver,
        _ => Method::Spawn,
    }
}

/// Configures and starts a child: the `Process(...)` constructor and
/// `start()` of Python, in the shape of `std::thread::Builder`.
#[derive(Debug, Clone)]
pub struct Builder {
    name: Option<String>,
    daemon: bool,
    outlive_parent: bool,
    method: Option<Method>,
    start_timeout: Duration,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// A non-daemon child named `Process-<n>`, started by the program's
    /// [`start_method`], with a 10 s start timeout.
    pub fn new() -> Builder {
        Builder {
            name: None,
            daemon: false,
            outlive_parent: false,
            method: None,
            start_timeout: Duration::from_secs(10),
        }
    }

    /// The child's name ([`current_process`] in the child).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Python's `daemon`: the child is killed when this process exits
    /// (normally or not) and when its [`Process`] is dropped unjoined. A
    /// non-daemon child is waited for when this process exits normally
    /// (as Python joins them at exit).
    pub fn daemon(mut self, daemon: bool) -> Builder {
        self.daemon = daemon;
        self
    }

    /// Lets a non-daemon child outlive this process if it is killed
    /// (`SIGKILL` leaves no time to join). By default every child gets
    /// `PR_SET_PDEATHSIG = SIGKILL`, so a killed parent leaves no orphans.
    /// That signal follows the parent *thread* that started the child: a
    /// child started from a thread that ends before it is killed then;
    /// start long-lived children from a long-lived thread, or ask for
    /// this. Ignored for daemons.
    pub fn outlive_parent(mut self, outlive: bool) -> Builder {
        self.outlive_parent = outlive;
        self
    }

    fn dies_with_parent(&self) -> bool {
        self.daemon || !self.outlive_parent
    }

    /// The start method for this child.
    pub fn method(mut self, method: Method) -> Builder {
        self.method = Some(method);
        self
    }

    /// How long the child has to check in (be running its target) before
    /// it is killed and the join reports [`ProcessError::NeverCheckedIn`].
    /// Spawn and forkserver only: a forked child is checked in at the fork.
    pub fn start_timeout(mut self, timeout: Duration) -> Builder {
        self.start_timeout = timeout;
        self
    }

    fn name_or_next(&self) -> String {
        static N: AtomicU64 = AtomicU64::new(1);
        self.name
            .clone()
            .unwrap_or_else(|| format!("Process-{}", N.fetch_add(1, Ordering::Relaxed)))
    }

    /// Starts `f(arg)` in a child by the chosen method.
    pub fn start<A, R>(self, f: fn(A) -> R, arg: A) -> Result<Process<R>, ProcessError>
    where
        A: Message + Send + 'static,
        R: Message + 'static,
    {
        self.start_ref(FnRef::new(f), arg)
    }

    /// [`start`](Self::start) with a function token.
    pub fn start_ref<A, R>(self, f: FnRef<A, R>, arg: A) -> Result<Process<R>, ProcessError>
    where
        A: Message + Send + 'static,
        R: Message + 'static,
    {
        match self.method.unwrap_or_else(start_method) {
            Method::Spawn => spawn::spawn(self, f, arg),
            Method::Forkserver => spawn::forkserver(self, f, arg),
            Method::Fork => self.fork(move || f.call(arg)),
        }
    }

    /// Runs the closure `f` in a forked child. Refused with
    /// [`ProcessError::Threaded`] when this process runs more than one
    /// thread (a test harness does; use spawn or the forkserver there).
    pub fn fork<R, F>(self, f: F) -> Result<Process<R>, ProcessError>
    where
        R: Message,
        F: FnOnce() -> R,
    {
        match crate::sys::child::thread_count() {
            Some(1) => {}
            Some(threads) => return Err(ProcessError::Threaded { threads }),
            None => {
                return Err(ProcessError::Start(crate::Error::Unsupported(
                    "cannot count this process's threads",
                )))
            }
        }
        // SAFETY: one thread: the child is an exact copy of a process in
        // which no other thread can hold a lock.
        unsafe { spawn::fork(self, f) }
    }

    /// [`fork`](Self::fork) without the thread check.
    ///
    /// # Safety
    /// The child is a copy of this process with only the calling thread:
    /// any lock another thread held at the fork (the allocator's, stdout's,
    /// any `Mutex`, the dynamic loader's) stays locked for ever in it. The
    /// crate's own child path is *not* async-signal-safe: it allocates
    /// (encoding the result, recording its identity), takes locks and
    /// flushes stdout, whatever `R` is. So the caller must guarantee that
    /// at the moment of the fork no other thread holds any lock or is
    /// inside the allocator or stdio (e.g. the others are parked on a
    /// condition the caller controls, or blocked in a system call entered
    /// with no lock held), which is what POSIX requires before a forked
    /// child of a multithreaded process calls anything that is not
    /// async-signal-safe. `f` is under the same rule.
    pub unsafe fn fork_unchecked<R, F>(self, f: F) -> Result<Process<R>, ProcessError>
    where
        R: Message,
        F: FnOnce() -> R,
    {
        // SAFETY: the caller's contract.
        unsafe { spawn::fork(self, f) }
    }
}

/// Declares the child entry of a test binary (unit or integration tests),
/// where `main` belongs to the test harness: a function that runs before
/// `main` and calls [`enter`], so a spawned child (or the forkserver)
/// starts before the harness runs any test or thread. Use it once per
/// test binary, at the top level of the crate or test file.
///
/// ```ignore
/// shmprim::process_test_entry!();
/// ```
#[macro_export]
macro_rules! process_test_entry {
    () => {
        const _: () = {
            #[used]
            #[cfg_attr(
                any(target_os = "linux", target_os = "android", target_os = "freebsd"),
                link_section = ".init_array"
            )]
            #[cfg_attr(
                any(target_os = "macos", target_os = "ios"),
                link_section = "__DATA,__mod_init_func"
            )]
            static ENTRY: extern "C" fn() = {
                extern "C" fn entry() {
                    $crate::process::enter();
                }
                entry
            };
        };
    };
}

#[cfg(test)]
mod tests;
