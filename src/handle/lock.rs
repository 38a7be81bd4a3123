//! `Lock` and `RLock`: a [`RawMutex`] alone in a segment.

use std::sync::Arc;
use std::time::Duration;

use crate::raw::{Acquire, LockResult, MutexKind, RawMutex, RawMutexGuard};
use crate::segment::header::Spec;
use crate::segment::{Fingerprint, Kind, Options, Place, Segment};
use crate::sys::clock::Deadline;
use crate::{Error, Result};

/// A "try once" that found the lock busy: [`Error::WouldBlock`], not a
/// timeout.
pub(crate) fn would_block<G>(e: crate::raw::LockError<G>) -> crate::raw::LockError<G> {
    if e.is_timeout() {
        Error::WouldBlock.into()
    } else {
        e
    }
}

/// The guard of a [`Lock`] or [`RLock`]: the lock is held until it drops.
pub type LockGuard<'a> = RawMutexGuard<'a>;

fn spec(kind: Kind) -> Spec {
    Spec {
        kind,
        fingerprint: Fingerprint::NONE,
        len: 0,
        capacity: 0,
        object_size: RawMutex::SIZE as u64,
        object_align: RawMutex::ALIGN as u64,
    }
}

/// Creates or opens a segment holding one mutex of `kind`.
pub(crate) fn mutex_segment(
    place: Option<Place<'_>>,
    open: Option<&str>,
    kind: Kind,
    mk: MutexKind,
    opts: &Options,
) -> Result<Arc<Segment>> {
    let init = |p: *mut u8| {
        // SAFETY: `p` is the object start of a fresh, unpublished segment:
        // RawMutex::SIZE bytes at RawMutex::ALIGN, exclusively ours.
        unsafe { RawMutex::init(p.cast(), mk) }
    };
    let mut seg = match (place, open) {
        (Some(place), None) => Segment::create_object(place, &spec(kind), opts, None, init)?,
        (None, Some(name)) => Segment::open_object(name, &spec(kind), opts)?,
        (Some(Place::Named(name)), Some(_)) => {
            Segment::open_or_create_object(name, &spec(kind), opts, None, init)?
        }
        _ => return Err(Error::InvalidArgument("mutex_segment: nothing to do")),
    };
    check_mutex_segment(&seg, mk)?;
    seg.keep_mapped_while(|seg| mutex_of(seg).must_stay_mapped());
    Ok(Arc::new(seg))
}

/// An opened lock segment holds exactly one mutex of the expected kind.
pub(crate) fn check_mutex_segment(seg: &Segment, mk: MutexKind) -> Result<()> {
    if seg.data_len() != RawMutex::SIZE {
        return Err(Error::Corrupt("lock object has the wrong size"));
    }
    if mutex_of(seg).check_layout()? != mk {
        return Err(Error::Corrupt("mutex of the wrong kind"));
    }
    Ok(())
}

/// The mutex at the start of a lock segment's object.
pub(crate) fn mutex_of(seg: &Segment) -> &RawMutex {
    // SAFETY: callers pass segments of lock kinds, whose object was written
    // as one RawMutex at create, or checked at open to span exactly
    // RawMutex::SIZE bytes (`check_mutex_segment`; the header checks put it
    // inside the mapping, 64-aligned); RawMutex is atomics and an
    // UnsafeCell, valid for any bits; the borrow keeps the mapping alive.
    unsafe { &*seg.data_ptr().cast::<RawMutex>() }
}

macro_rules! mutex_handle {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $mk:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            seg: Arc<Segment>,
        }

        impl $name {
            /// Creates it under `name` (exclusive; mode 0600).
            pub fn create(name: &str) -> Result<Self> {
                Self::create_with(name, &Options::default())
            }

            /// [`Self::create`] with options.
            pub fn create_with(name: &str, opts: &Options) -> Result<Self> {
                Ok(Self { seg: mutex_segment(Some(Place::Named(name)), None, $kind, $mk, opts)? })
            }

            /// Opens the one created under `name`.
            pub fn open(name: &str) -> Result<Self> {
                Self::open_with(name, &Options::default())
            }

            /// [`Self::open`] with options.
            pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
                Ok(Self { seg: mutex_segment(None, Some(name), $kind, $mk, opts)? })
            }

            /// Opens `name`, creating it if it does not exist; exactly one
            /// of many racing processes creates.
            pub fn open_or_create(name: &str) -> Result<Self> {
                let opts = Options::default();
                Ok(Self { seg: mutex_segment(Some(Place::Named(name)), Some(name), $kind, $mk, &opts)? })
            }

            /// An unnamed one, shared with children forked afterwards.
            pub fn anonymous() -> Result<Self> {
                let opts = Options::default();
                Ok(Self { seg: mutex_segment(Some(Place::Anonymous), None, $kind, $mk, &opts)? })
            }

            /// Waits for the lock. If its previous owner died, the guard
            /// comes inside [`LockError::OwnerDied`](crate::LockError::OwnerDied).
            pub fn lock(&self) -> LockResult<LockGuard<'_>> {
                self.raw().lock_as(None, Some($mk))
            }

            /// Takes the lock if free: [`Error::WouldBlock`] otherwise.
            pub fn try_lock(&self) -> LockResult<LockGuard<'_>> {
                self.raw()
                    .lock_as(Some(Deadline::PASSED), Some($mk))
                    .map_err(would_block)
            }

            /// Waits at most `timeout`: [`Error::Timeout`] after it, never
            /// before. `Duration::ZERO` tries once.
            pub fn lock_timeout(&self, timeout: Duration) -> LockResult<LockGuard<'_>> {
                self.raw().lock_as(Some(Deadline::after(timeout)), Some($mk))
            }

            /// Python's `acquire()`, without a guard: release with
            /// [`Self::release`] from the same thread.
            pub fn acquire(&self) -> Result<Acquire> {
                self.raw().acquire_as(None, Some($mk))
            }

            /// Python's `acquire(timeout=t)`: `Ok(None)` if it timed out (Python's
            /// `False`), never before `timeout` has elapsed.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<Option<Acquire>> {
                match self.raw().acquire_as(Some(Deadline::after(timeout)), Some($mk)) {
                    Ok(a) => Ok(Some(a)),
                    Err(Error::Timeout) => Ok(None),
                    Err(e) => Err(e),
                }
            }

            /// Python's `release()`. A thread that does not hold the lock
            /// gets [`Error::NotOwner`] (Python raises `RuntimeError`).
            pub fn release(&self) -> Result<()> {
                self.raw().release()
            }

            /// After [`Acquire::OwnerDied`]: the data is repaired. Nothing
            /// to mend is [`Error::InvalidArgument`] (POSIX's `EINVAL`); an
            /// inconsistent lock this thread did not acquire is
            /// [`Error::NotOwner`] (see [`RawMutex::make_consistent`]).
            pub fn make_consistent(&self) -> Result<()> {
                self.raw().make_consistent()
            }

            /// Whether some thread (here or in another process) holds it
            /// now; a snapshot for diagnosis.
            pub fn is_locked(&self) -> Result<bool> {
                self.raw().is_locked()
            }

            /// The in-place mutex.
            pub fn raw(&self) -> &RawMutex {
                mutex_of(&self.seg)
            }

            /// The segment it lives in.
            pub fn segment(&self) -> &Segment {
                &self.seg
            }

            pub(crate) fn segment_arc(&self) -> &Arc<Segment> {
                &self.seg
            }

            /// Opens one in an already opened segment (fuzz targets only).
            #[cfg(fuzzing)]
            pub fn __attach(mut seg: Segment) -> Result<Self> {
                check_mutex_segment(&seg, $mk)?;
                seg.keep_mapped_while(|seg| mutex_of(seg).must_stay_mapped());
                Ok(Self { seg: Arc::new(seg) })
            }
        }
    };
}

mutex_handle!(
    /// A robust lock shared between processes: Python's
    /// `multiprocessing.Lock`, but owned by the thread that took it (so a
    /// dead holder is noticed, and relocking from the holder is
    /// [`Error::Deadlock`] rather than a hang).
    ///
    /// ```
    /// let lock = shmprim::Lock::anonymous().unwrap();
    /// {
    ///     let _held = lock.lock().unwrap();
    ///     assert!(lock.try_lock().is_err());
    /// }
    /// assert!(lock.try_lock().is_ok());
    /// ```
    Lock,
    Kind::Lock,
    MutexKind::Normal
);

mutex_handle!(
    /// A robust recursive lock shared between processes: Python's
    /// `multiprocessing.RLock`. The holding thread may lock again and must
    /// release as many times; another thread's `release` is
    /// [`Error::NotOwner`].
    ///
    /// ```
    /// let rlock = shmprim::RLock::anonymous().unwrap();
    /// let a = rlock.lock().unwrap();
    /// let b = rlock.lock().unwrap(); // same thread: fine
    /// drop((b, a));
    /// ```
    RLock,
    Kind::RLock,
    MutexKind::Recursive
);

/// A [`Lock`] or [`RLock`] that a [`Value`](crate::Value) or
/// [`Array`](crate::Array) uses instead of its own mutex, so that several
/// objects change together under one lock (Python's `Value(..., lock=l)`).
#[derive(Clone, Debug)]
pub enum SharedLock {
    /// A non-recursive lock.
    Lock(Lock),
    /// A recursive lock.
    RLock(RLock),
}

impl SharedLock {
    pub(crate) fn segment(&self) -> &Arc<Segment> {
        match self {
            SharedLock::Lock(l) => l.segment_arc(),
            SharedLock::RLock(l) => l.segment_arc(),
        }
    }

    /// Opens the lock segment `name`, whichever of the two kinds it holds.
    pub(crate) fn open(name: &str, opts: &Options) -> Result<SharedLock> {
        match Lock::open_with(name, opts) {
            Ok(l) => Ok(SharedLock::Lock(l)),
            Err(Error::KindMismatch { found, .. }) if found == Kind::RLock.code() => {
                Ok(SharedLock::RLock(RLock::open_with(name, opts)?))
            }
            Err(e) => Err(e),
        }
    }
}

impl From<&Lock> for SharedLock {
    fn from(l: &Lock) -> Self {
        SharedLock::Lock(l.clone())
    }
}

impl From<&RLock> for SharedLock {
    fn from(l: &RLock) -> Self {
        SharedLock::RLock(l.clone())
    }
}
