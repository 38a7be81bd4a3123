//! `Semaphore` and `BoundedSemaphore`: a [`RawSemaphore`] alone in a segment.

use std::sync::Arc;
use std::time::Duration;

use super::object::{self, Source};
use crate::raw::RawSemaphore;
use crate::segment::{Kind, Options, Place, Segment};
use crate::Result;

macro_rules! semaphore_handle {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $bounded:expr, $python:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            seg: Arc<Segment>,
        }

        impl $name {
            fn make(from: Source<'_>, value: i64, opts: &Options) -> Result<Self> {
                let value = RawSemaphore::check_value(value)?;
                let init = |p: *mut u8| {
                    // SAFETY: `p` is the 64-aligned object start of a fresh,
                    // unpublished segment of RawSemaphore::SIZE bytes.
                    unsafe { RawSemaphore::init(p.cast(), value, $bounded) }
                };
                let seg = object::segment(from, $kind, RawSemaphore::SIZE, opts, None, init)?;
                // SAFETY: made by `object::segment` with RawSemaphore::SIZE
                // bytes; RawSemaphore is atomics only, align 4.
                let raw = unsafe { object::object::<RawSemaphore>(&seg) };
                if raw.check()? != $bounded {
                    return Err(crate::Error::Corrupt("semaphore of the wrong kind"));
                }
                Ok(Self { seg: Arc::new(seg) })
            }

            #[doc = concat!("Creates it under `name` holding `value` permits (Python's `", $python, "(value)`); a negative `value` is [`Error::InvalidArgument`](crate::Error::InvalidArgument).")]
            pub fn create(name: &str, value: i64) -> Result<Self> {
                Self::make(Source::Create(Place::Named(name)), value, &Options::default())
            }

            /// [`Self::create`] with options.
            pub fn create_with(name: &str, value: i64, opts: &Options) -> Result<Self> {
                Self::make(Source::Create(Place::Named(name)), value, opts)
            }

            /// Opens the one created under `name`.
            pub fn open(name: &str) -> Result<Self> {
                Self::open_with(name, &Options::default())
            }

            /// [`Self::open`] with options.
            pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
                Self::make(Source::Open(name), 0, opts)
            }

            /// Opens `name`, creating it with `value` permits if it does not
            /// exist; exactly one of many racing processes creates.
            pub fn open_or_create(name: &str, value: i64) -> Result<Self> {
                Self::make(Source::OpenOrCreate(name), value, &Options::default())
            }

            /// An unnamed one, shared with children forked afterwards.
            pub fn anonymous(value: i64) -> Result<Self> {
                Self::make(Source::Create(Place::Anonymous), value, &Options::default())
            }

            /// Waits for a permit and takes it (Python's `acquire()`).
            pub fn acquire(&self) -> Result<()> {
                self.raw().acquire()
            }

            /// Takes a permit if one is free now; [`Error::WouldBlock`](crate::Error::WouldBlock)
            /// otherwise (Python's `acquire(False)` returning `False`).
            pub fn try_acquire(&self) -> Result<()> {
                self.raw().try_acquire()
            }

            /// Waits at most `timeout` for a permit: [`Error::Timeout`](crate::Error::Timeout)
            /// at about `timeout`, never before (Python's `acquire(timeout=t)`
            /// returning `False`). `Duration::ZERO` tries once.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
                self.raw().acquire_timeout(timeout)
            }

            /// Gives a permit back, waking one waiter if any (Python's
            /// `release()`). Any process may release, holder or not.
            pub fn release(&self) -> Result<()> {
                self.raw().release()
            }

            /// The number of free permits now (Python's `get_value()`);
            /// never negative.
            pub fn value(&self) -> u32 {
                self.raw().value()
            }

            /// The in-place semaphore.
            pub fn raw(&self) -> &RawSemaphore {
                // SAFETY: checked to be a RawSemaphore segment in `make`.
                unsafe { object::object::<RawSemaphore>(&self.seg) }
            }

            /// The segment it lives in.
            pub fn segment(&self) -> &Segment {
                &self.seg
            }
        }
    };
}

semaphore_handle!(
    /// A counting semaphore shared between processes: Python's
    /// `multiprocessing.Semaphore`.
    ///
    /// Permits are not owned: any process may release. Waiting is not FIFO
    /// (see [`RawSemaphore`]'s "Fairness": the kernel wakes sleepers in
    /// about arrival order, and a running acquirer may take a permit first).
    /// A process killed while waiting changes nothing for the others; a
    /// process killed while holding a permit does not give it back (as in
    /// Python: a semaphore has no owner).
    ///
    /// ```
    /// let s = shmprim::Semaphore::anonymous(2).unwrap();
    /// s.acquire().unwrap();
    /// s.acquire().unwrap();
    /// assert!(s.try_acquire().is_err());
    /// s.release().unwrap();
    /// assert_eq!(s.value(), 1);
    /// ```
    Semaphore,
    Kind::Semaphore,
    false,
    "Semaphore"
);

semaphore_handle!(
    /// A semaphore that refuses to be released above its initial value:
    /// Python's `multiprocessing.BoundedSemaphore`. Such a release is
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) (Python's
    /// `ValueError`) and changes nothing; the check is one atomic step with
    /// the increment, so racing releases never push it over.
    ///
    /// ```
    /// let s = shmprim::BoundedSemaphore::anonymous(1).unwrap();
    /// assert!(s.release().is_err());
    /// s.acquire().unwrap();
    /// s.release().unwrap();
    /// ```
    BoundedSemaphore,
    Kind::BoundedSemaphore,
    true,
    "BoundedSemaphore"
);
