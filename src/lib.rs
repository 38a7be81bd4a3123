//! # shmprim
//!
//! Python's `multiprocessing` primitives rebuilt for Rust processes that
//! share memory: robust locks that survive a dead holder, typed values and
//! arrays in named or anonymous shared-memory segments, with no system call
//! on the uncontended path.
//!
//! | Python `multiprocessing`   | shmprim                          |
//! |----------------------------|----------------------------------|
//! | `Lock()`                   | [`Lock`]                         |
//! | `RLock()`                  | [`RLock`]                        |
//! | `Value('q', 0)`            | [`Value<i64>`](Value)            |
//! | `Array('d', 8)`            | [`Array<f64>`](Array)            |
//! | `Value('q', 0, lock=False)`| [`AtomicValue<i64>`](AtomicValue) (lock-free) |
//! | `RawValue('d')`, `Value('d', lock=False)` | [`RawValue<f64>`](RawValue) (any `Plain` type, no lock) |
//! | `RawArray('d', 8)`         | [`RawArray<f64>`](RawArray) (no lock; `unsafe` slice view for synchronised phases) |
//! | `Semaphore(3)`             | [`Semaphore`]                    |
//! | `BoundedSemaphore(3)`      | [`BoundedSemaphore`]             |
//! | `Event()`                  | [`Event`]                        |
//! | `Condition(lock)`          | [`Condition`]                    |
//! | `Barrier(n, action, timeout)` | [`Barrier`]                   |
//! | `Pipe()`, `Pipe(False)`   | [`Pipe::anonymous_default`], [`Pipe::anonymous_simplex_default`], [`Pipe::anonymous`], [`Pipe::create`] |
//! | `Connection`               | [`Connection`] (over [`SpscRing`]) |
//! | `Queue(maxsize)`           | [`Queue`] (MPMC, fixed-size slots) |
//! | `JoinableQueue(maxsize)`   | [`JoinableQueue`]                |
//! | `Manager().dict()`         | [`SharedMap`] (growable, lock-free reads) |
//! | `Manager().list()`         | [`SharedList`]                   |
//!
//! ## Layers
//!
//! * [`sys`] and [`segment`]: the platform — futexes, `shm_open`,
//!   `posix_fallocate`, thread liveness from `/proc`, and segment headers.
//! * [`raw`]: in-place `#[repr(C)]` objects ([`RawMutex`], a futex mutex
//!   of the crate's own that detects a dead owner on its slow path) that
//!   embedders may place in their own mappings.
//! * Handles ([`Lock`], [`RLock`], [`Value`], [`Array`], [`AtomicValue`],
//!   [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Condition`],
//!   [`Barrier`]):
//!   each owns a segment; each can be created under a name, opened by name,
//!   opened-or-created, or made anonymous and inherited across `fork`.
//!
//! ## Timeouts, and the rules where Python disagrees with itself
//!
//! Every blocking call `op` has `try_op` and `op_timeout(d)`, and the two
//! report "could not do it now" by one rule, on every primitive:
//!
//! * **`try_op` is "try once, busy"**: one attempt, no sleep, and a busy
//!   primitive is reported by what is busy, never as [`Error::Timeout`]:
//!   [`Error::WouldBlock`] for locks and semaphores, [`Error::Empty`] for
//!   a receive with nothing to take, [`Error::Full`] for a send with no
//!   room.
//! * **`op_timeout(d)` (and `op_deadline`) is "deadline passed"**:
//!   [`Error::Timeout`], never `WouldBlock`/`Empty`/`Full`, including for
//!   `d == Duration::ZERO`, which makes exactly one attempt (a `Condition`
//!   wait releases and retakes its lock once; a `Barrier` arrival that
//!   does not complete the barrier breaks it). Where Python answers a
//!   timed wait with `False` (`Event.wait`, `Condition.wait`,
//!   `Lock.acquire(timeout=...)`), the Python-shaped method
//!   (`wait_timeout`, `acquire_timeout`) returns `false`/`None` instead.
//! * A terminal condition wins over both: `Disconnected`, `Closed`,
//!   `BrokenBarrier`, `NotRecoverable`, and `OwnerDied` (which comes with
//!   the lock) are reported as themselves, by `try_op` as by `op_timeout`.
//!   A [`Barrier`] timeout breaks the barrier (Python's rule), so a
//!   timed-out barrier wait is `BrokenBarrier`, for the waiter that timed
//!   out as for the others.
//!
//! The conveniences that take a lock inside (`Value::get`/`set`/`update`,
//! `Array::get`/`set`/`to_vec`/`copy_from_slice`) wait for it without
//! limit; their "try" and "timeout" forms are the lock's: `try_lock()` or
//! `lock_timeout(d)`, then read or write through the guard.
//!
//! The deadline is taken once, on the monotonic clock, when the call
//! starts: a timeout elapses at about `d`, never before, however many
//! signals interrupt the sleep.
//!
//! * Negative timeouts: Python's `threading` refuses some
//!   (`ValueError`) while `multiprocessing` treats them as zero. Here a
//!   timeout is a [`Duration`](std::time::Duration), which cannot be
//!   negative; compute `d.saturating_sub(elapsed)` for "what is left".
//! * Wrong owner: releasing a `Lock`/`RLock` this thread does not hold,
//!   or waiting on / notifying a [`Condition`] with another lock's guard, is
//!   [`Error::NotOwner`] (Python raises `RuntimeError` or `AssertionError`
//!   depending on the module). Semaphores have no owner: any process may
//!   release (a [`BoundedSemaphore`] refuses only going above its bound).
//!
//! ## A dead lock holder
//!
//! ```
//! use shmprim::{LockError, Value};
//! let v = Value::<u64>::anonymous(0).unwrap();
//! match v.lock() {
//!     Ok(mut g) => *g += 1,
//!     Err(LockError::OwnerDied(died)) => {
//!         // The holder died mid-update: repair, then say so.
//!         let mut g = died.make_consistent().unwrap();
//!         *g = 0;
//!     }
//!     Err(LockError::Failed(e)) => panic!("{e}"),
//! };
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![cfg(unix)]

#[cfg(feature = "serde")]
pub mod codec;
#[cfg(not(loom))]
pub mod containers;
// The one lock-free piece of the containers, modelled under loom.
#[cfg(loom)]
#[path = "containers/swap.rs"]
#[allow(dead_code)]
mod containers_swap;
mod error;
#[doc(hidden)]
pub mod fault;
mod handle;
mod plain;
// The processes floor needs pipes, which the loom build leaves out.
#[cfg(not(loom))]
pub mod pool;
#[cfg(not(loom))]
pub mod process;
pub mod raw;
pub mod segment;
pub mod spill;
pub mod sys;

#[cfg(not(loom))]
pub use containers::{MapTx, SharedList, SharedMap};
pub use error::{Error, NameError, Result};
pub use handle::{
    Array, ArrayGuard, AtomicInt, AtomicValue, Barrier, BoundedSemaphore, Condition, Event, Lock,
    LockGuard, RLock, Semaphore, SharedLock, Value, ValueGuard,
};
#[cfg(not(loom))]
pub use handle::{Connection, End, Pipe, WaitPolicy};
pub use handle::{JoinableQueue, Queue};
pub use handle::{RawArray, RawValue};
pub use plain::{type_tag, Plain};
pub use raw::BarrierActionError;
pub use raw::MpmcRing;
pub use raw::{
    Acquire, LockError, LockResult, MutexKind, OwnerDied, RawBarrier, RawCondvar, RawEvent,
    RawMutex, RawMutexGuard, RawSemaphore, SpscRing,
};

/// The zero-copy guards of a [`Connection`]: a [`Reservation`](pipe::Reservation)
/// being filled in the ring, a [`Borrowed`](pipe::Borrowed) message being read
/// in place.
#[cfg(not(loom))]
pub mod pipe {
    pub use crate::handle::pipe::{Borrowed, Reservation};
}

/// The zero-copy guards of a [`Queue`]: a reserved slot being filled
/// ([`Reservation`](queue::Reservation)), a received slot being read in place
/// ([`Borrowed`](queue::Borrowed)).
pub mod queue {
    pub use crate::handle::queue::{Borrowed, Reservation};
    pub use crate::raw::mpmc::Abandoned;
}
pub use segment::{Options, Segment};

// The fuzz targets' entry points (`fuzz/`), one file per structure under
// `src/fuzzing/`. Built only under `--cfg fuzzing` (which `cargo fuzz` sets).
#[cfg(fuzzing)]
#[doc(hidden)]
#[path = "fuzzing/mod.rs"]
pub mod __fuzz;
