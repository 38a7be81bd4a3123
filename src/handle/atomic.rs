//! `AtomicValue<T>`: a lock-free integer in shared memory.

use std::marker::PhantomData;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{
    AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicU16, AtomicU32, AtomicU64, AtomicU8,
};
use std::sync::Arc;
use std::time::Duration;

use crate::raw::{park, sealed};
use crate::segment::header::Spec;
use crate::segment::{Fingerprint, Kind, Options, Place, Segment};
use crate::sys::clock::Deadline;
use crate::sys::futex;
use crate::{Error, Plain, Result};

/// An integer type with a lock-free atomic of the same size. Sealed.
pub trait AtomicInt: Plain + sealed::Sealed + Eq + std::fmt::Debug {
    #[doc(hidden)]
    type Atomic: Send + Sync;
    #[doc(hidden)]
    fn load(a: &Self::Atomic) -> Self;
    #[doc(hidden)]
    fn store(a: &Self::Atomic, v: Self);
    #[doc(hidden)]
    fn swap(a: &Self::Atomic, v: Self) -> Self;
    #[doc(hidden)]
    fn fetch_add(a: &Self::Atomic, v: Self) -> Self;
    #[doc(hidden)]
    fn fetch_sub(a: &Self::Atomic, v: Self) -> Self;
    #[doc(hidden)]
    fn compare_exchange(
        a: &Self::Atomic,
        current: Self,
        new: Self,
    ) -> std::result::Result<Self, Self>;
}

macro_rules! atomic_int {
    ($($t:ty => $a:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl AtomicInt for $t {
            type Atomic = $a;
            fn load(a: &$a) -> $t { a.load(SeqCst) }
            fn store(a: &$a, v: $t) { a.store(v, SeqCst) }
            fn swap(a: &$a, v: $t) -> $t { a.swap(v, SeqCst) }
            fn fetch_add(a: &$a, v: $t) -> $t { a.fetch_add(v, SeqCst) }
            fn fetch_sub(a: &$a, v: $t) -> $t { a.fetch_sub(v, SeqCst) }
            fn compare_exchange(a: &$a, c: $t, n: $t) -> std::result::Result<$t, $t> {
                a.compare_exchange(c, n, SeqCst, SeqCst)
            }
        }
        static_assertions::assert_eq_size!($t, $a);
        static_assertions::assert_eq_align!($t, $a);
    )*};
}

atomic_int!(u8 => AtomicU8, i8 => AtomicI8, u16 => AtomicU16, i16 => AtomicI16,
            u32 => AtomicU32, i32 => AtomicI32, u64 => AtomicU64, i64 => AtomicI64);

fn spec<T: AtomicInt>() -> Spec {
    Spec {
        kind: Kind::AtomicValue,
        fingerprint: Fingerprint {
            size: std::mem::size_of::<T>() as u64,
            align: std::mem::align_of::<T>() as u64,
            tag: T::TYPE_TAG,
        },
        len: 1,
        capacity: 0,
        object_size: std::mem::size_of::<T>() as u64,
        object_align: 64,
    }
}

/// A lock-free integer in shared memory: no lock, no system call, and
/// nothing for a dying process to leave half-done. Every operation is
/// `SeqCst`. For `u32` and `i32`, [`wait_while`](AtomicValue::wait_while)
/// sleeps on the word as a futex.
///
/// ```
/// let hits = shmprim::AtomicValue::<u64>::anonymous(0).unwrap();
/// hits.fetch_add(5);
/// assert_eq!(hits.load(), 5);
/// ```
pub struct AtomicValue<T: AtomicInt> {
    seg: Arc<Segment>,
    _t: PhantomData<T>,
}

impl<T: AtomicInt> Clone for AtomicValue<T> {
    fn clone(&self) -> Self {
        AtomicValue {
            seg: self.seg.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: AtomicInt> std::fmt::Debug for AtomicValue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicValue")
            .field("value", &self.load())
            .field("segment", &self.seg)
            .finish()
    }
}

impl<T: AtomicInt> AtomicValue<T> {
    fn make(place: Place<'_>, init: T, opts: &Options) -> Result<Self> {
        let fill = |p: *mut u8| {
            // SAFETY: `p` is the aligned object start of a fresh, unpublished
            // segment with room for one T.
            unsafe { p.cast::<T>().write(init) };
            Ok(())
        };
        let seg = Segment::create_object(place, &spec::<T>(), opts, None, fill)?;
        Ok(AtomicValue {
            seg: Arc::new(seg),
            _t: PhantomData,
        })
    }

    /// Creates it under `name`, holding `init`.
    pub fn create(name: &str, init: T) -> Result<Self> {
        Self::make(Place::Named(name), init, &Options::default())
    }

    /// [`AtomicValue::create`] with options.
    pub fn create_with(name: &str, init: T, opts: &Options) -> Result<Self> {
        Self::make(Place::Named(name), init, opts)
    }

    /// Opens the one under `name`; the stored type must be `T`.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`AtomicValue::open`] with options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        Self::checked(Segment::open_object(name, &spec::<T>(), opts)?)
    }

    /// Opens `name`, or creates it holding `init`.
    pub fn open_or_create(name: &str, init: T) -> Result<Self> {
        let fill = |p: *mut u8| {
            // SAFETY: as in `make`.
            unsafe { p.cast::<T>().write(init) };
            Ok(())
        };
        let seg =
            Segment::open_or_create_object(name, &spec::<T>(), &Options::default(), None, fill)?;
        Self::checked(seg)
    }

    /// An unnamed one, shared with children forked afterwards.
    pub fn anonymous(init: T) -> Result<Self> {
        Self::make(Place::Anonymous, init, &Options::default())
    }

    /// Opens one in an already opened segment (fuzz targets, embedders).
    #[cfg(fuzzing)]
    pub fn __attach(seg: Segment) -> Result<Self> {
        Self::checked(seg)
    }

    fn checked(seg: Segment) -> Result<Self> {
        if seg.info().object_size != std::mem::size_of::<T>() as u64 {
            return Err(Error::Corrupt(
                "object size does not match the integer type",
            ));
        }
        Ok(AtomicValue {
            seg: Arc::new(seg),
            _t: PhantomData,
        })
    }

    fn atomic(&self) -> &T::Atomic {
        // SAFETY: the object is one T-sized, 64-aligned slot inside the
        // mapping (checked); the atomic type has T's size and alignment
        // (asserted) and is valid for any bits; the borrow keeps the mapping.
        unsafe { &*self.seg.data_ptr().cast::<T::Atomic>() }
    }

    /// The current value.
    pub fn load(&self) -> T {
        T::load(self.atomic())
    }

    /// Replaces the value.
    pub fn store(&self, v: T) {
        T::store(self.atomic(), v)
    }

    /// Replaces the value, returning the old one.
    pub fn swap(&self, v: T) -> T {
        T::swap(self.atomic(), v)
    }

    /// Adds `v` (wrapping), returning the old value.
    pub fn fetch_add(&self, v: T) -> T {
        T::fetch_add(self.atomic(), v)
    }

    /// Subtracts `v` (wrapping), returning the old value.
    pub fn fetch_sub(&self, v: T) -> T {
        T::fetch_sub(self.atomic(), v)
    }

    /// Stores `new` if the value is `current`: `Ok(previous)` on success,
    /// `Err(actual)` otherwise.
    pub fn compare_exchange(&self, current: T, new: T) -> std::result::Result<T, T> {
        T::compare_exchange(self.atomic(), current, new)
    }

    /// The segment it lives in.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

macro_rules! futex_ops {
    ($($t:ty),*) => {$(
        impl AtomicValue<$t> {
            /// Sleeps while the value equals `current`, without spinning:
            /// returns the new value once it differs, or
            /// [`Error::Timeout`] when `timeout` (if any) has elapsed.
            /// Writers must call [`wake_all`](Self::wake_all) or
            /// [`wake`](Self::wake) after changing the value; a writer
            /// that dies between the two delays waiters by at most one
            /// 200 ms sleep slice, after which they see the new value.
            pub fn wait_while(&self, current: $t, timeout: Option<Duration>) -> Result<$t> {
                let deadline = timeout.map(Deadline::after);
                let word = self.word();
                loop {
                    let now = self.load();
                    if now != current {
                        return Ok(now);
                    }
                    // Sleep in slices: a writer killed between its store
                    // and its wake leaves nobody to wake us, and the
                    // re-check at the top sees its store.
                    match futex::wait_until(word, current as u32, park::slice(deadline)) {
                        Ok(()) => {}
                        Err(Error::Timeout) if !deadline.is_some_and(Deadline::has_passed) => {}
                        Err(e) => return Err(e),
                    }
                }
            }

            /// Wakes up to `n` waiters; returns how many woke.
            pub fn wake(&self, n: u32) -> Result<usize> {
                futex::wake(self.word(), n)
            }

            /// Wakes every waiter; returns how many woke.
            pub fn wake_all(&self) -> Result<usize> {
                futex::wake_all(self.word())
            }

            fn word(&self) -> &AtomicU32 {
                // SAFETY: a 32-bit atomic at the same aligned address: same
                // size and alignment, any bits valid, mapping kept alive.
                unsafe { &*self.seg.data_ptr().cast::<AtomicU32>() }
            }
        }
    )*};
}

futex_ops!(u32, i32);
