//! `Array<T>`: a fixed-length run of `T` in shared memory behind a robust lock.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::Duration;

use super::guarded::Guarded;
use super::lock::{would_block, SharedLock};
use crate::raw::{sealed, LockResult, RawMutex, RawMutexGuard, RecoverableGuard};
use crate::segment::{Kind, Options, Place, Segment};
use crate::sys::clock::Deadline;
use crate::{Error, Plain, Result};

/// `len` elements of `T` in shared memory, guarded by one robust lock:
/// Python's `multiprocessing.Array`.
///
/// | Python                         | shmprim                                 |
/// |--------------------------------|-----------------------------------------|
/// | `Array('d', 10)` (zero-filled) | `Array::<f64>::create(name, 10)` / `anonymous(10)` |
/// | `Array('i', [1, 2, 3])`        | [`Array::from_slice`] / [`Array::create_from_slice`] |
/// | `len(a)`                       | [`a.len()`](Array::len)                  |
/// | `a[i]`, `a[i] = x`             | [`a.get(i)`](Array::get), [`a.set(i, x)`](Array::set) |
/// | `a[:]`                         | [`a.to_vec()`](Array::to_vec)            |
/// | `with a.get_lock(): a[2:5]`    | `&a.lock()?[2..5]`                       |
///
/// ```
/// use shmprim::Array;
/// let a = Array::<i32>::from_slice(&[1, 2, 3]).unwrap();
/// a.set(0, 10).unwrap();
/// assert_eq!(a.to_vec().unwrap(), [10, 2, 3]);
/// let sum: i32 = a.lock().unwrap().iter().sum();
/// assert_eq!(sum, 15);
/// assert!(a.get(3).is_err());
/// ```
pub struct Array<T: Plain> {
    inner: Guarded<T>,
}

impl<T: Plain> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Plain> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Array")
            .field("len", &self.len())
            .field("segment", self.inner.segment())
            .finish()
    }
}

/// Leaves the fresh, zeroed memory as it is: zero is a valid `T: Plain`.
fn zeroed<T>(_: *mut T) {}

fn copy_of<T: Plain>(src: &[T]) -> impl Fn(*mut T) + '_ {
    move |p| {
        // SAFETY: `p` points to `src.len()` element slots of a fresh
        // segment (created with that length), which cannot overlap `src`.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p, src.len()) }
    }
}

impl<T: Plain> Array<T> {
    fn make(
        place: Place<'_>,
        len: usize,
        opts: &Options,
        shared: Option<SharedLock>,
        fill: impl Fn(*mut T),
    ) -> Result<Self> {
        let inner = Guarded::create(place, Kind::Array, len, opts, shared, fill)?;
        Ok(Array { inner })
    }

    /// Creates `len` zeroed elements under `name`.
    pub fn create(name: &str, len: usize) -> Result<Self> {
        Self::create_with(name, len, &Options::default())
    }

    /// [`Array::create`] with options.
    pub fn create_with(name: &str, len: usize, opts: &Options) -> Result<Self> {
        Self::make(Place::Named(name), len, opts, None, zeroed)
    }

    /// Creates a copy of `src` under `name`.
    pub fn create_from_slice(name: &str, src: &[T]) -> Result<Self> {
        let opts = Options::default();
        Self::make(Place::Named(name), src.len(), &opts, None, copy_of(src))
    }

    /// Creates `len` zeroed elements under `name`, guarded by `lock` instead
    /// of a lock of their own (see [`Value::create_with_lock`](crate::Value::create_with_lock)).
    pub fn create_with_lock(
        name: &str,
        len: usize,
        lock: impl Into<SharedLock>,
        opts: &Options,
    ) -> Result<Self> {
        let shared = Some(lock.into());
        Self::make(Place::Named(name), len, opts, shared, zeroed)
    }

    /// Opens the array created under `name`, whatever its length.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`Array::open`] with options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        Ok(Array {
            inner: Guarded::open(name, Kind::Array, None, opts)?,
        })
    }

    /// Opens the array under `name`, which must hold `len` elements
    /// ([`Error::LengthMismatch`] otherwise).
    pub fn open_len(name: &str, len: usize) -> Result<Self> {
        Ok(Array {
            inner: Guarded::open(name, Kind::Array, Some(len), &Options::default())?,
        })
    }

    /// Opens `name`, or creates it with `len` zeroed elements; an existing
    /// array of another length is [`Error::LengthMismatch`].
    pub fn open_or_create(name: &str, len: usize) -> Result<Self> {
        let inner = Guarded::open_or_create(name, Kind::Array, len, &Options::default(), zeroed)?;
        Ok(Array { inner })
    }

    /// `len` zeroed elements with no name, shared with children forked
    /// afterwards.
    pub fn anonymous(len: usize) -> Result<Self> {
        Self::make(Place::Anonymous, len, &Options::default(), None, zeroed)
    }

    /// An unnamed copy of `src`.
    pub fn from_slice(src: &[T]) -> Result<Self> {
        let opts = Options::default();
        Self::make(Place::Anonymous, src.len(), &opts, None, copy_of(src))
    }

    /// `len` unnamed zeroed elements guarded by `lock`.
    pub fn anonymous_with_lock(len: usize, lock: impl Into<SharedLock>) -> Result<Self> {
        let shared = Some(lock.into());
        Self::make(Place::Anonymous, len, &Options::default(), shared, zeroed)
    }

    /// Opens an array in an already opened segment (fuzz targets, embedders).
    #[cfg(fuzzing)]
    pub fn __attach(seg: Segment, opts: &Options) -> Result<Self> {
        Ok(Array {
            inner: Guarded::attach(seg, None, opts)?,
        })
    }

    /// The number of elements, fixed at creation.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for the lock; the guard derefs to `[T]`.
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        self.lock_until(None)
    }

    /// Takes the lock if free ([`Error::WouldBlock`] otherwise).
    pub fn try_lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        self.lock_until(Some(Deadline::PASSED)).map_err(would_block)
    }

    /// Waits at most `timeout` for the lock.
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<ArrayGuard<'_, T>> {
        self.lock_until(Some(Deadline::after(timeout)))
    }

    fn lock_until(&self, deadline: Option<Deadline>) -> LockResult<ArrayGuard<'_, T>> {
        let (data, len) = (self.inner.data(), self.len());
        let wrap = move |raw| ArrayGuard {
            raw,
            // SAFETY: `data` is inside the mapping, hence non-null.
            data: unsafe { NonNull::new_unchecked(data) },
            len,
            _t: PhantomData,
        };
        self.inner
            .lock_until(deadline)
            .map(wrap)
            .map_err(|e| e.map(wrap))
    }

    /// Element `i`, read under the lock; [`Error::OutOfRange`] past the end.
    /// Owner death and waiting as for [`Value::get`](crate::Value::get):
    /// use [`Array::lock_timeout`] or [`Array::try_lock`] for a bounded wait.
    pub fn get(&self, i: usize) -> Result<T> {
        let len = self.len();
        self.lock()?
            .get(i)
            .copied()
            .ok_or(Error::OutOfRange { index: i, len })
    }

    /// Replaces element `i` under the lock; [`Error::OutOfRange`] past the end.
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        let len = self.len();
        let mut g = self.lock()?;
        *g.get_mut(i).ok_or(Error::OutOfRange { index: i, len })? = v;
        Ok(())
    }

    /// A copy of every element, taken under the lock.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.lock()?.to_vec())
    }

    /// Overwrites every element from `src` under the lock; `src` must have
    /// exactly [`Array::len`] elements ([`Error::LengthMismatch`]).
    pub fn copy_from_slice(&self, src: &[T]) -> Result<()> {
        if src.len() != self.len() {
            return Err(Error::LengthMismatch {
                found: self.len() as u64,
                expected: src.len() as u64,
            });
        }
        self.lock()?.copy_from_slice(src);
        Ok(())
    }

    /// The lock that guards the elements (its own, or the shared one).
    pub fn raw_lock(&self) -> &RawMutex {
        self.inner.mutex()
    }

    /// The shared lock, if the array was made with one.
    pub fn shared_lock(&self) -> Option<&SharedLock> {
        self.inner.shared_lock()
    }

    /// The segment it lives in.
    pub fn segment(&self) -> &Segment {
        self.inner.segment()
    }
}

/// Exclusive access to an [`Array`]'s elements while the lock is held.
#[must_use = "the lock is released as soon as the guard drops"]
pub struct ArrayGuard<'a, T: Plain> {
    raw: RawMutexGuard<'a>,
    data: NonNull<T>,
    len: usize,
    _t: PhantomData<&'a mut [T]>,
}

impl<T: Plain> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the lock is held, giving exclusive access by protocol;
        // `len` elements at `data` lie inside the mapping (checked at open or
        // create), aligned for T; T: Plain is valid for any bytes.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.len) }
    }
}

impl<T: Plain> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for `deref`; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr(), self.len) }
    }
}

impl<T: Plain> sealed::Sealed for ArrayGuard<'_, T> {}

impl<T: Plain> RecoverableGuard for ArrayGuard<'_, T> {
    fn mark_consistent(&mut self) -> Result<()> {
        self.raw.mark_consistent()
    }
}

impl<T: Plain + std::fmt::Debug> std::fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ArrayGuard").field(&&**self).finish()
    }
}
