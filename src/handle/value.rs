//! `Value<T>`: one `T` in shared memory behind a robust lock.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::Duration;

use super::guarded::Guarded;
use super::lock::{would_block, SharedLock};
use crate::raw::{sealed, LockResult, RawMutex, RawMutexGuard, RecoverableGuard};
use crate::segment::{Kind, Options, Place, Segment};
use crate::sys::clock::Deadline;
use crate::{Plain, Result};

/// A `T` in shared memory, guarded by a robust process-shared lock: Python's
/// `multiprocessing.Value`.
///
/// | Python                       | shmprim                                |
/// |------------------------------|----------------------------------------|
/// | `Value('i', 0)`              | `Value::<i32>::create(name, 0)` / `anonymous(0)` |
/// | `v.value`                    | [`v.get()`](Value::get)                 |
/// | `v.value = x`                | [`v.set(x)`](Value::set)                |
/// | `with v.get_lock(): v.value += 1` | [`v.update(\|x\| *x += 1)`](Value::update) or `*v.lock()? += 1` |
/// | `Value('i', 0, lock=l)`      | [`Value::create_with_lock`]            |
///
/// Cloning a `Value` is cheap and shares the mapping. The default lock is
/// non-recursive (Python's default is an `RLock`): locking it twice from one
/// thread is [`Error::Deadlock`](crate::Error::Deadlock).
///
/// ```
/// use shmprim::Value;
/// let v = Value::<u64>::anonymous(41).unwrap();
/// v.update(|x| *x += 1).unwrap();
/// assert_eq!(v.get().unwrap(), 42);
/// ```
pub struct Value<T: Plain> {
    inner: Guarded<T>,
}

impl<T: Plain> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Plain> std::fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Value")
            .field("segment", self.inner.segment())
            .finish()
    }
}

fn fill_with<T: Plain>(init: T) -> impl Fn(*mut T) {
    move |p| {
        // SAFETY: `p` points to the element slot of a fresh segment, aligned
        // and sized for T (see Guarded::create).
        unsafe { p.write(init) }
    }
}

impl<T: Plain> Value<T> {
    fn make(place: Place<'_>, init: T, opts: &Options, shared: Option<SharedLock>) -> Result<Self> {
        let inner = Guarded::create(place, Kind::Value, 1, opts, shared, fill_with(init))?;
        Ok(Value { inner })
    }

    /// Creates it under `name`, holding `init`.
    pub fn create(name: &str, init: T) -> Result<Self> {
        Self::create_with(name, init, &Options::default())
    }

    /// [`Value::create`] with options.
    pub fn create_with(name: &str, init: T, opts: &Options) -> Result<Self> {
        Self::make(Place::Named(name), init, opts, None)
    }

    /// Creates it under `name`, guarded by `lock` (a named [`Lock`](crate::Lock)
    /// or [`RLock`](crate::RLock)) instead of a lock of its own. Openers
    /// find and open the same lock. With an `RLock`, a thread that already
    /// holds it cannot lock the value ([`Error::Deadlock`](crate::Error::Deadlock)):
    /// two guards would hand out two `&mut T`.
    pub fn create_with_lock(
        name: &str,
        init: T,
        lock: impl Into<SharedLock>,
        opts: &Options,
    ) -> Result<Self> {
        let shared = Some(lock.into());
        Self::make(Place::Named(name), init, opts, shared)
    }

    /// Opens the one created under `name`; the stored type must be `T`.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`Value::open`] with options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        Ok(Value {
            inner: Guarded::open(name, Kind::Value, Some(1), opts)?,
        })
    }

    /// Opens `name`, or creates it holding `init`; exactly one of many
    /// racing processes creates ([`Value::segment`]`().is_creator()`).
    pub fn open_or_create(name: &str, init: T) -> Result<Self> {
        let opts = Options::default();
        let inner = Guarded::open_or_create(name, Kind::Value, 1, &opts, fill_with(init))?;
        Ok(Value { inner })
    }

    /// An unnamed one, shared with children forked afterwards.
    pub fn anonymous(init: T) -> Result<Self> {
        Self::make(Place::Anonymous, init, &Options::default(), None)
    }

    /// An unnamed one guarded by `lock`.
    pub fn anonymous_with_lock(init: T, lock: impl Into<SharedLock>) -> Result<Self> {
        let shared = Some(lock.into());
        Self::make(Place::Anonymous, init, &Options::default(), shared)
    }

    /// Opens a value in an already opened segment (used by the fuzz
    /// targets; embedders may pass segments around this way).
    #[cfg(fuzzing)]
    pub fn __attach(seg: Segment, opts: &Options) -> Result<Self> {
        Ok(Value {
            inner: Guarded::attach(seg, Some(1), opts)?,
        })
    }

    /// Waits for the lock and returns a guard that derefs to `T`.
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        self.lock_until(None)
    }

    /// Takes the lock if free ([`Error::WouldBlock`](crate::Error::WouldBlock) otherwise).
    pub fn try_lock(&self) -> LockResult<ValueGuard<'_, T>> {
        self.lock_until(Some(Deadline::PASSED)).map_err(would_block)
    }

    /// Waits at most `timeout` for the lock.
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<ValueGuard<'_, T>> {
        self.lock_until(Some(Deadline::after(timeout)))
    }

    fn lock_until(&self, deadline: Option<Deadline>) -> LockResult<ValueGuard<'_, T>> {
        let data = self.inner.data();
        let wrap = move |raw| ValueGuard {
            raw,
            // SAFETY: `data` is inside the mapping, hence non-null.
            data: unsafe { NonNull::new_unchecked(data) },
            _t: PhantomData,
        };
        self.inner
            .lock_until(deadline)
            .map(wrap)
            .map_err(|e| e.map(wrap))
    }

    /// A copy of the value, read under the lock. If the lock's previous
    /// owner died, this gives [`Error::OwnerDied`](crate::Error::OwnerDied) and the lock becomes
    /// not recoverable: use [`Value::lock`] to repair instead.
    ///
    /// Like [`Value::lock`], this waits for the lock as long as it takes;
    /// for a bounded wait use the guard forms, `*v.lock_timeout(t)?` or
    /// `*v.try_lock()?`.
    pub fn get(&self) -> Result<T> {
        Ok(*self.lock()?)
    }

    /// Replaces the value under the lock (owner death as for [`Value::get`]).
    pub fn set(&self, v: T) -> Result<()> {
        *self.lock()? = v;
        Ok(())
    }

    /// Runs `f` on the value under the lock and returns its result (owner
    /// death as for [`Value::get`]).
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R> {
        Ok(f(&mut *self.lock()?))
    }

    /// The lock that guards the value (its own, or the shared one).
    pub fn raw_lock(&self) -> &RawMutex {
        self.inner.mutex()
    }

    /// The shared lock given at creation (or found through the link at
    /// open), if any: Python's `get_lock()` for a value made with `lock=`.
    pub fn shared_lock(&self) -> Option<&SharedLock> {
        self.inner.shared_lock()
    }

    /// The segment it lives in.
    pub fn segment(&self) -> &Segment {
        self.inner.segment()
    }
}

/// Exclusive access to a [`Value`]'s `T` while the lock is held.
#[must_use = "the lock is released as soon as the guard drops"]
pub struct ValueGuard<'a, T: Plain> {
    raw: RawMutexGuard<'a>,
    data: NonNull<T>,
    _t: PhantomData<&'a mut T>,
}

impl<T: Plain> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held (`raw`), which by the crate's protocol
        // gives this thread exclusive access to the value; the pointer is
        // aligned and inside the mapping, which outlives 'a; T: Plain is
        // valid for whatever bytes are there.
        unsafe { self.data.as_ref() }
    }
}

impl<T: Plain> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`, and `&mut self` makes this the only
        // reference handed out by this guard.
        unsafe { self.data.as_mut() }
    }
}

impl<T: Plain> sealed::Sealed for ValueGuard<'_, T> {}

impl<T: Plain> RecoverableGuard for ValueGuard<'_, T> {
    fn mark_consistent(&mut self) -> Result<()> {
        self.raw.mark_consistent()
    }
}

impl<T: Plain + std::fmt::Debug> std::fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ValueGuard").field(&**self).finish()
    }
}
