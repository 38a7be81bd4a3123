//! `Event`: a [`RawEvent`] alone in a segment.

use std::sync::Arc;
use std::time::Duration;

use super::object::{self, Source};
use crate::raw::RawEvent;
use crate::segment::{Kind, Options, Place, Segment};
use crate::Result;

/// An event flag shared between processes: Python's
/// `multiprocessing.Event`.
///
/// [`set`](Event::set) wakes every waiter; a `set` before anyone waits is
/// seen by later waiters; a waiter present at a `set` returns `true` even
/// if a [`clear`](Event::clear) follows at once. (Here Python's modules
/// differ: `threading.Event.wait` returns `True` in that case, while
/// `multiprocessing.Event.wait` re-reads the flag after waking and returns
/// `False`; this crate follows `threading`, so a waiter never misses a
/// `set` it was woken for.) Timeouts: `Duration::ZERO`
/// looks once; otherwise the wait returns at about the timeout, never
/// before, with the flag as it is then. A waiter killed while waiting costs
/// later `set`s one needless wake system call, nothing else.
///
/// ```
/// let e = shmprim::Event::anonymous().unwrap();
/// assert!(!e.is_set());
/// e.set();
/// assert!(e.wait());
/// ```
#[derive(Clone, Debug)]
pub struct Event {
    seg: Arc<Segment>,
}

impl Event {
    fn make(from: Source<'_>, opts: &Options) -> Result<Self> {
        let init = |p: *mut u8| {
            // SAFETY: `p` is the 64-aligned object start of a fresh,
            // unpublished segment of RawEvent::SIZE bytes.
            unsafe { RawEvent::init(p.cast()) };
            Ok(())
        };
        let seg = object::segment(from, Kind::Event, RawEvent::SIZE, opts, None, init)?;
        // SAFETY: made by `object::segment` with RawEvent::SIZE bytes;
        // RawEvent is atomics only, align 4.
        unsafe { object::object::<RawEvent>(&seg) }.check()?;
        Ok(Event { seg: Arc::new(seg) })
    }

    /// Creates a clear one under `name`.
    pub fn create(name: &str) -> Result<Self> {
        Self::make(Source::Create(Place::Named(name)), &Options::default())
    }

    /// [`Event::create`] with options.
    pub fn create_with(name: &str, opts: &Options) -> Result<Self> {
        Self::make(Source::Create(Place::Named(name)), opts)
    }

    /// Opens the one created under `name`.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`Event::open`] with options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        Self::make(Source::Open(name), opts)
    }

    /// Opens `name`, creating it (clear) if it does not exist.
    pub fn open_or_create(name: &str) -> Result<Self> {
        Self::make(Source::OpenOrCreate(name), &Options::default())
    }

    /// An unnamed one, shared with children forked afterwards.
    pub fn anonymous() -> Result<Self> {
        Self::make(Source::Create(Place::Anonymous), &Options::default())
    }

    /// Whether the flag is set (Python's `is_set()`).
    pub fn is_set(&self) -> bool {
        self.raw().is_set()
    }

    /// Sets the flag and wakes every waiter (Python's `set()`).
    pub fn set(&self) {
        self.raw().set()
    }

    /// Clears the flag (Python's `clear()`).
    pub fn clear(&self) {
        self.raw().clear()
    }

    /// Waits until the flag is set; returns `true` (Python's `wait()`).
    pub fn wait(&self) -> bool {
        self.raw().wait()
    }

    /// Waits at most `timeout`; returns the flag (Python's
    /// `wait(timeout)`): `false` only if not set when the timeout elapsed.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.raw().wait_timeout(timeout)
    }

    /// The in-place event.
    pub fn raw(&self) -> &RawEvent {
        // SAFETY: checked to be a RawEvent segment in `make`.
        unsafe { object::object::<RawEvent>(&self.seg) }
    }

    /// The segment it lives in.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}
