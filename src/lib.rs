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
pub mod pool;
pub mod process;
pub mod raw;
pub mod segment;
pub mod spill;
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

    // ---- helper "deep": per-structure fuzz entry points ----

    /// An `EventCount` (8 bytes, exact-size allocation) starting from the
    /// first 8 input bytes, driven by the rest: `prepare` (up to four keys
    /// outstanding), `cancel`, waits with a passed or a one-microsecond
    /// deadline, `notify(n)`, `notify_all`, and overwrites of either word.
    /// A wait may only end in `Ok` or `Timeout` (a passed deadline: always
    /// `Timeout`); every announcement is withdrawn, so the sleeper word
    /// ends where it started (or where the last overwrite put it).
    pub fn eventcount(bytes: &[u8]) {
        use crate::raw::EventCount;
        use crate::sys::clock::Deadline;
        use std::alloc::{alloc_zeroed, dealloc, Layout};
        use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

        let layout = Layout::new::<EventCount>();
        // SAFETY: EventCount is 8 bytes, a nonzero size.
        let p = unsafe { alloc_zeroed(layout) };
        assert!(!p.is_null(), "out of memory");
        let (init, mut ops) = bytes.split_at(bytes.len().min(layout.size()));
        // SAFETY: `init` is at most the allocation's size; separate buffers.
        unsafe { std::ptr::copy_nonoverlapping(init.as_ptr(), p, init.len()) };
        // SAFETY: 8 bytes, aligned for EventCount (two AtomicU32 words:
        // `seq` then `sleepers`, `#[repr(C)]`), live until `dealloc` below,
        // after the last use of these references; any bits are a value.
        let (ec, seq, sleepers) = unsafe {
            (
                &*p.cast::<EventCount>(),
                &*p.cast::<AtomicU32>(),
                &*p.add(4).cast::<AtomicU32>(),
            )
        };
        let mut base = sleepers.load(Relaxed);
        let mut keys = Vec::new();
        let mut next = || match ops.split_first() {
            Some((&b, rest)) => {
                ops = rest;
                Some(b)
            }
            None => None,
        };
        for _ in 0..64 {
            let Some(op) = next() else { break };
            match op % 7 {
                0 if keys.len() < 4 => {
                    let before = sleepers.load(Relaxed);
                    keys.push(ec.prepare());
                    // Also pins the layout this helper assumes.
                    assert_eq!(sleepers.load(Relaxed), before.wrapping_add(1));
                }
                1 => {
                    if let Some(k) = keys.pop() {
                        ec.cancel(k);
                    }
                }
                2 => {
                    if let Some(k) = keys.pop() {
                        let r = ec.wait(k, Some(Deadline::PASSED));
                        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
                    }
                }
                3 => {
                    if let Some(k) = keys.pop() {
                        let until = Deadline::after(Duration::from_micros(1));
                        let r = ec.wait(k, Some(until));
                        assert!(matches!(r, Ok(()) | Err(Error::Timeout)), "{r:?}");
                    }
                }
                4 => ec.notify(u32::from(next().unwrap_or(0))),
                5 => ec.notify_all(),
                _ => {
                    let v = u32::from_le_bytes([0; 4].map(|_| next().unwrap_or(0)));
                    if op & 8 == 0 {
                        seq.store(v, Relaxed);
                    } else {
                        sleepers.store(v, Relaxed);
                        base = v.wrapping_sub(keys.len() as u32);
                    }
                }
            }
            let _ = ec.has_sleepers();
        }
        for k in keys.drain(..) {
            ec.cancel(k);
        }
        assert_eq!(
            sleepers.load(Relaxed),
            base,
            "an announcement was not withdrawn"
        );
        // SAFETY: allocated above with this layout; no reference is used
        // after this point.
        unsafe { dealloc(p, layout) };
    }

    // ---- end of helper "deep" ----

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
