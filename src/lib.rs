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
//! | `Queue(maxsize)`           | [`Queue`] (MPMC, fixed-size slots) |
//! | `JoinableQueue(maxsize)`   | [`JoinableQueue`]                |
//!
//! ## Layers
//!
//! * [`sys`] and [`segment`]: the platform — futexes, `shm_open`,
//!   `posix_fallocate`, the robust pthread mutex, and segment headers.
//! * [`raw`]: in-place `#[repr(C)]` objects ([`RawMutex`]) that embedders
//!   may place in their own mappings.
//! * Handles ([`Lock`], [`RLock`], [`Value`], [`Array`], [`AtomicValue`]):
//!   each owns a segment; each can be created under a name, opened by name,
//!   opened-or-created, or made anonymous and inherited across `fork`.
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
mod codec;
mod error;
mod handle;
mod plain;
pub mod raw;
pub mod segment;
pub mod sys;

pub use error::{Error, NameError, Result};
pub use handle::{
    Array, ArrayGuard, AtomicInt, AtomicValue, Borrowed, JoinableQueue, Lock, LockGuard, Queue,
    RLock, Reservation, SharedLock, Value, ValueGuard,
};
pub use plain::{type_tag, Plain};
pub use raw::{
    Acquire, LockError, LockResult, MpmcRing, MutexKind, OwnerDied, RawMutex, RawMutexGuard,
};
pub use segment::{Options, Segment};

/// Entry points for the fuzz targets: open arbitrary bytes as each kind of
/// object. Built only under `--cfg fuzzing` (which `cargo fuzz` sets).
#[cfg(fuzzing)]
pub mod __fuzz {
    use crate::segment::header::Spec;
    use crate::segment::{Fingerprint, Kind};
    use crate::*;
    use std::time::Duration;

    fn attach(bytes: &[u8], kind: Kind, fp: Fingerprint) -> Result<Segment> {
        let fd = Segment::__fuzz_fd(bytes)?;
        let spec = Spec {
            kind,
            fingerprint: fp,
            len: 0,
            capacity: 0,
            object_size: 0,
            object_align: 64,
        };
        Segment::attach_fd(&fd, &spec, &Options::new().open_timeout(Duration::ZERO))
    }

    fn fp<T: Plain>() -> Fingerprint {
        Fingerprint {
            size: std::mem::size_of::<T>() as u64,
            align: std::mem::align_of::<T>() as u64,
            tag: T::TYPE_TAG,
        }
    }

    /// Opens `bytes` as every kind in turn, exercising each object's checks.
    /// Returns how many kinds accepted them.
    pub fn open_all(bytes: &[u8]) -> usize {
        let opts = Options::new().open_timeout(Duration::ZERO);
        let mut ok = 0;
        if let Ok(seg) = attach(bytes, Kind::Value, fp::<u64>()) {
            if let Ok(v) = Value::<u64>::__attach(seg, &opts) {
                let _ = v.try_lock().map(|g| *g);
                ok += 1;
            }
        }
        if let Ok(seg) = attach(bytes, Kind::Array, fp::<u32>()) {
            if let Ok(a) = Array::<u32>::__attach(seg, &opts) {
                let _ = a
                    .try_lock()
                    .map(|g| g.iter().fold(0u32, |x, y| x.wrapping_add(*y)));
                ok += 1;
            }
        }
        if let Ok(seg) = attach(bytes, Kind::AtomicValue, fp::<u64>()) {
            if let Ok(a) = AtomicValue::<u64>::__attach(seg) {
                a.fetch_add(1);
                ok += 1;
            }
        }
        if let Ok(seg) = attach(bytes, Kind::Lock, Fingerprint::NONE) {
            if let Ok(l) = Lock::__attach(seg) {
                let _ = l.try_lock().map(|_| ());
                ok += 1;
            }
        }
        if let Ok(seg) = attach(bytes, Kind::RLock, Fingerprint::NONE) {
            if let Ok(l) = RLock::__attach(seg) {
                let _ = l.try_lock().map(|_| ());
                ok += 1;
            }
        }
        if attach(bytes, Kind::Bytes, Fingerprint::NONE).is_ok() {
            ok += 1;
        }
        ok
    }

    /// Opens `bytes` as a `Queue` and as a `JoinableQueue` segment and runs
    /// a few non-blocking operations on whatever opens.
    pub fn open_queue(bytes: &[u8]) -> usize {
        let mut ok = 0;
        if let Ok(seg) = attach(bytes, Kind::Queue, Fingerprint::NONE) {
            if let Ok(q) = Queue::__attach(seg) {
                let _ = q.try_send_bytes(b"fuzz");
                let _ = q.try_recv_bytes();
                let _ = q.len();
                ok += 1;
            }
        }
        if let Ok(seg) = attach(bytes, Kind::JoinableQueue, Fingerprint::NONE) {
            if let Ok(q) = JoinableQueue::__attach(seg) {
                let _ = q.try_send_bytes(b"fuzz");
                let _ = q.try_recv_bytes();
                let _ = q.task_done();
                let _ = q.join_timeout(Duration::ZERO);
                ok += 1;
            }
        }
        ok
    }

    /// Bytes as `MpmcRing` memory (garbage, or a valid ring with garbage
    /// control words), then a bounded run of operations.
    pub fn mpmc_garbage(bytes: &[u8]) {
        crate::raw::mpmc::__fuzz_garbage(bytes)
    }
}
