//! The common body of [`Value`](crate::Value) and [`Array`](crate::Array):
//! a segment whose object is a [`RawMutex`] followed by `len` elements of
//! `T`, guarded by that mutex or by a [`SharedLock`] in another segment.
//!
//! Object layout: `RawMutex` at 0, elements at [`data_offset`], object
//! aligned to `max(64, align_of::<T>())`. The header's `param_len` holds
//! `len`, and an opener checks `object_size == data_offset + len * size`
//! before forming any pointer.

use std::marker::PhantomData;
use std::sync::Arc;

use super::lock::SharedLock;
use crate::raw::{LockError, LockResult, MutexKind, RawMutex, RawMutexGuard};
use crate::segment::header::Spec;
use crate::segment::{Fingerprint, Kind, Options, Place, Segment};
use crate::sys::clock::Deadline;
use crate::{Error, Plain, Result};

/// Where the elements start.
pub(crate) const fn data_offset<T>() -> usize {
    let a = std::mem::align_of::<T>();
    RawMutex::SIZE.div_ceil(a) * a
}

fn spec<T: Plain>(kind: Kind, len: usize) -> Result<Spec> {
    let bytes = len
        .checked_mul(std::mem::size_of::<T>())
        .and_then(|b| b.checked_add(data_offset::<T>()))
        .ok_or(Error::InvalidArgument("array too large"))?;
    Ok(Spec {
        kind,
        fingerprint: Fingerprint {
            size: std::mem::size_of::<T>() as u64,
            align: std::mem::align_of::<T>() as u64,
            tag: T::TYPE_TAG,
        },
        len: len as u64,
        capacity: 0,
        object_size: bytes as u64,
        object_align: std::mem::align_of::<T>().max(RawMutex::ALIGN) as u64,
    })
}

/// An opened array's stored length `found`, which must be `expect` if
/// given ([`Error::LengthMismatch`]) and fit a `usize`.
pub(crate) fn stored_len(found: u64, expect: Option<usize>) -> Result<usize> {
    if let Some(want) = expect {
        if found != want as u64 {
            return Err(Error::LengthMismatch {
                found,
                expected: want as u64,
            });
        }
    }
    usize::try_from(found).map_err(|_| Error::Corrupt("length out of range"))
}

pub(crate) struct Guarded<T: Plain> {
    seg: Arc<Segment>,
    shared: Option<SharedLock>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Plain> Clone for Guarded<T> {
    fn clone(&self) -> Self {
        Guarded {
            seg: self.seg.clone(),
            shared: self.shared.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Plain> Guarded<T> {
    /// Creates the segment; `fill` writes the initial elements (the memory
    /// starts zeroed).
    pub(crate) fn create(
        place: Place<'_>,
        kind: Kind,
        len: usize,
        opts: &Options,
        shared: Option<SharedLock>,
        fill: impl Fn(*mut T),
    ) -> Result<Self> {
        let link = match (&shared, place) {
            (Some(l), Place::Named(_)) => Some(l.segment().name().ok_or(Error::InvalidArgument(
                "a named object cannot share an anonymous lock: other processes could not find it",
            ))?),
            _ => None,
        };
        let init = |p: *mut u8| Self::init(p, &fill);
        let seg = Segment::create_object(place, &spec::<T>(kind, len)?, opts, link, init)?;
        Ok(Self::new(seg, shared, len))
    }

    /// Opens `name`; with `expect_len`, a different stored length is
    /// [`Error::LengthMismatch`].
    pub(crate) fn open(
        name: &str,
        kind: Kind,
        expect_len: Option<usize>,
        opts: &Options,
    ) -> Result<Self> {
        let seg = Segment::open_object(name, &spec::<T>(kind, 0)?, opts)?;
        Self::attach(seg, expect_len, opts)
    }

    /// Creates `name` with `len` elements, or opens it if it exists (then
    /// its length must be `len`).
    pub(crate) fn open_or_create(
        name: &str,
        kind: Kind,
        len: usize,
        opts: &Options,
        fill: impl Fn(*mut T),
    ) -> Result<Self> {
        let init = |p: *mut u8| Self::init(p, &fill);
        let seg = Segment::open_or_create_object(name, &spec::<T>(kind, len)?, opts, None, init)?;
        if seg.is_creator() {
            Ok(Self::new(seg, None, len))
        } else {
            Self::attach(seg, Some(len), opts)
        }
    }

    fn init(p: *mut u8, fill: &impl Fn(*mut T)) -> Result<()> {
        // SAFETY: `p` is the object start of a fresh, unpublished segment,
        // aligned for RawMutex (and T), spanning the mutex and the elements.
        unsafe {
            RawMutex::init(p.cast(), MutexKind::Normal)?;
            fill(p.add(data_offset::<T>()).cast());
        }
        Ok(())
    }

    fn new(mut seg: Segment, shared: Option<SharedLock>, len: usize) -> Self {
        // The object starts with its own mutex (used or not): keep the
        // mapping while a thread of this process may hold it.
        seg.keep_mapped_while(|seg| own_mutex_of(seg).must_stay_mapped());
        Guarded {
            seg: Arc::new(seg),
            shared,
            len,
            _t: PhantomData,
        }
    }

    /// Checks an opened segment's parameters, then follows its lock link.
    pub(crate) fn attach(seg: Segment, expect_len: Option<usize>, opts: &Options) -> Result<Self> {
        let info = seg.info().clone();
        let len = stored_len(info.len, expect_len)?;
        let want_size = spec::<T>(Kind::Array, len)
            .map_err(|_| Error::Corrupt("length out of range"))?
            .object_size;
        if info.object_size != want_size {
            return Err(Error::Corrupt("object size does not match length"));
        }
        let shared = match &info.link {
            Some(name) => Some(SharedLock::open(name, opts)?),
            None => None,
        };
        if own_mutex_of(&seg).check_layout()? != MutexKind::Normal {
            return Err(Error::Corrupt("mutex of the wrong kind"));
        }
        Ok(Self::new(seg, shared, len))
    }

    fn own_mutex(&self) -> &RawMutex {
        own_mutex_of(&self.seg)
    }

    /// The kind the guarding mutex must have.
    fn expected_kind(&self) -> MutexKind {
        match &self.shared {
            Some(SharedLock::RLock(_)) => MutexKind::Recursive,
            _ => MutexKind::Normal,
        }
    }

    /// The mutex that guards the elements.
    pub(crate) fn mutex(&self) -> &RawMutex {
        match &self.shared {
            Some(SharedLock::Lock(l)) => l.raw(),
            Some(SharedLock::RLock(l)) => l.raw(),
            None => self.own_mutex(),
        }
    }

    pub(crate) fn shared_lock(&self) -> Option<&SharedLock> {
        self.shared.as_ref()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    /// The first element.
    pub(crate) fn data(&self) -> *mut T {
        // SAFETY: data_offset + len * size_of::<T>() == object_size, which
        // lies inside the mapping (checked at open or create).
        unsafe { self.seg.data_ptr().add(data_offset::<T>()).cast() }
    }

    /// Locks for exclusive access to the elements. A lock this thread
    /// already holds (a shared `RLock`, or anything taken with `acquire`) is
    /// refused with [`Error::Deadlock`]: a second guard would alias the
    /// first one's `&mut`. So is a mutex whose kind changed in shared
    /// memory ([`Error::Corrupt`]).
    #[inline]
    pub(crate) fn lock_until(&self, deadline: Option<Deadline>) -> LockResult<RawMutexGuard<'_>> {
        let mutex = self.mutex();
        if mutex.held_by_this_thread() {
            return Err(LockError::Failed(Error::Deadlock));
        }
        mutex.lock_data(deadline, Some(self.expected_kind()))
    }
}

/// The mutex at the start of a `Value`/`Array` object.
fn own_mutex_of(seg: &Segment) -> &RawMutex {
    // SAFETY: the object starts with a RawMutex: written at create, or
    // checked at open to span at least data_offset >= RawMutex::SIZE bytes
    // inside the mapping (`attach`: object_size == data_offset + len * size),
    // 64-aligned by the header checks; any bits are valid for it; the borrow
    // keeps the mapping alive.
    unsafe { &*seg.data_ptr().cast::<RawMutex>() }
}
