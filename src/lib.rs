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
//! | `Semaphore(3)`             | [`Semaphore`]                    |
//! | `BoundedSemaphore(3)`      | [`BoundedSemaphore`]             |
//! | `Event()`                  | [`Event`]                        |
//! | `Condition(lock)`          | [`Condition`]                    |
//! | `Barrier(n, action, timeout)` | [`Barrier`]                   |
//! | `Pipe()`, `Pipe(False)`   | [`Pipe::anonymous`], [`Pipe::anonymous_simplex`], [`Pipe::create`] |
//! | `Connection`               | [`Connection`] (over [`SpscRing`]) |
//! | `Queue(maxsize)`           | [`Queue`] (MPMC, fixed-size slots) |
//! | `JoinableQueue(maxsize)`   | [`JoinableQueue`]                |
//!
//! ## Layers
//!
//! * [`sys`] and [`segment`]: the platform — futexes, `shm_open`,
//!   `posix_fallocate`, the robust pthread mutex, and segment headers.
//! * [`raw`]: in-place `#[repr(C)]` objects ([`RawMutex`]) that embedders
//!   may place in their own mappings.
//! * Handles ([`Lock`], [`RLock`], [`Value`], [`Array`], [`AtomicValue`],
//!   [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Condition`],
//!   [`Barrier`]):
//!   each owns a segment; each can be created under a name, opened by name,
//!   opened-or-created, or made anonymous and inherited across `fork`.
//!
//! ## Timeouts, and the rules where Python disagrees with itself
//!
//! Every blocking call `op` has `try_op` (one attempt:
//! [`Error::WouldBlock`] for locks and semaphores) and `op_timeout(d)`.
//! The deadline is taken once, on the monotonic clock, when the call
//! starts: a timeout elapses at about `d`, never before, however many
//! signals interrupt the sleep. `Duration::ZERO` makes exactly one attempt
//! (a `Condition` wait releases and retakes its lock once; a `Barrier`
//! arrival that does not complete the barrier breaks it).
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
mod codec;
mod error;
#[doc(hidden)]
pub mod fault;
mod handle;
mod plain;
pub mod raw;
pub mod segment;
pub mod sys;

pub use error::{Error, NameError, Result};
pub use handle::{
    Array, ArrayGuard, AtomicInt, AtomicValue, Barrier, BoundedSemaphore, Condition, Event, Lock,
    LockGuard, RLock, Semaphore, SharedLock, Value, ValueGuard,
};
#[cfg(not(loom))]
pub use handle::{Connection, End, Pipe, WaitPolicy};
pub use handle::{JoinableQueue, Queue};
pub use plain::{type_tag, Plain};
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

    /// Arbitrary bytes as each in-place sync object (semaphore, event,
    /// barrier, condition variable), driven by non-blocking and zero-timeout
    /// calls: every answer must be a value or an error, never a panic, a
    /// hang or undefined behaviour. Returns how many objects passed `check`.
    pub fn sync_objects(bytes: &[u8]) -> usize {
        use crate::raw::{RawBarrier, RawCondvar, RawEvent, RawMutex, RawSemaphore};
        /// 8-aligned storage for the largest object.
        #[repr(C, align(64))]
        struct Buf([u8; RawCondvar::SIZE]);
        let mut buf = Box::new(Buf([0; RawCondvar::SIZE]));
        let n = bytes.len().min(RawCondvar::SIZE);
        buf.0[..n].copy_from_slice(&bytes[..n]);
        let p = buf.0.as_ptr();
        let mut ok = 0;
        // SAFETY: `buf` is 64-aligned and RawCondvar::SIZE bytes, at least
        // the size of each object; each object is made of atomics only, so
        // any bits are a valid value; only shared references are formed,
        // one at a time, and `buf` outlives them.
        let sem = unsafe { &*p.cast::<RawSemaphore>() };
        if sem.check().is_ok() {
            ok += 1;
        }
        let _ = sem.try_acquire();
        let _ = sem.acquire_timeout(Duration::ZERO);
        let _ = sem.release();
        let _ = sem.value();
        // SAFETY: as above.
        let ev = unsafe { &*p.cast::<RawEvent>() };
        if ev.check().is_ok() {
            ok += 1;
        }
        let _ = ev.wait_timeout(Duration::ZERO);
        ev.set();
        ev.clear();
        // SAFETY: as above.
        let bar = unsafe { &*p.cast::<RawBarrier>() };
        if bar.check().is_ok() {
            ok += 1;
        }
        let _ = bar.n_waiting();
        let _ = bar.default_timeout();
        // A full generation naming a live tripper is waited for, a timed
        // wait ACTION_GRACE past its deadline at most.
        let _ = bar.wait_timeout(Duration::ZERO);
        bar.abort();
        bar.reset();
        let _ = bar.wait_timeout(Duration::ZERO);
        // SAFETY: as above.
        let cv = unsafe { &*p.cast::<RawCondvar>() };
        if cv.check().is_ok() {
            ok += 1;
        }
        let _ = cv.n_waiting();
        let mut m = Box::new(std::mem::MaybeUninit::<RawMutex>::uninit());
        // SAFETY: a fresh, 64-aligned, exclusively owned allocation.
        if unsafe { RawMutex::init(m.as_mut_ptr(), MutexKind::Normal) }.is_ok() {
            // SAFETY: initialised just above.
            let m = unsafe { m.assume_init_ref() };
            if let Ok(mut g) = m.lock() {
                let _ = cv.notify(&g, 3);
                let _ = cv.wait_timeout(&mut g, Duration::ZERO);
                let _ = cv.notify_all(&g);
            }
        }
        ok
    }

    /// Opens `bytes` as a pipe segment, claims both ends and runs each
    /// operation once without waiting. Returns how many calls succeeded.
    pub fn open_pipe(bytes: &[u8]) -> usize {
        let mut ok = 0;
        let Ok(seg) = attach(bytes, Kind::Pipe, Fingerprint::NONE) else {
            return 0;
        };
        let Ok(pipe) = Pipe::__attach(seg) else {
            return 0;
        };
        let mut buf = [0u8; 512];
        for end in [End::A, End::B] {
            let Ok(mut c) = pipe.connect(end) else {
                continue;
            };
            for _ in 0..16 {
                ok += c.try_recv_bytes().is_ok() as usize;
                ok += c.try_recv_bytes_into(&mut buf).is_ok() as usize;
                ok += c.poll(Some(Duration::ZERO)).is_ok() as usize;
                ok += c.try_recv_in_place().map(|b| b.len()).is_ok() as usize;
                ok += c.try_send_bytes(&buf[..100]).is_ok() as usize;
            }
            c.close();
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
