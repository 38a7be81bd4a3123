//! `Barrier`: a [`RawBarrier`] alone in a segment.

use std::sync::Arc;
use std::time::Duration;

use super::object::{self, Source};
use crate::raw::{BarrierActionError, RawBarrier};
use crate::segment::{Kind, Options, Place, Segment};
use crate::Result;

/// A reusable barrier for a fixed number of processes (or threads):
/// Python's `multiprocessing.Barrier(parties, action, timeout)`.
///
/// [`wait`](Barrier::wait) returns a distinct index in `0..parties` (the
/// arrival order). The action, passed to
/// [`wait_with_action`](Barrier::wait_with_action) (a closure cannot cross
/// processes, so each caller passes its own), is run by the last arriver,
/// exactly once per trip, before anyone is released; with a per-call
/// timeout, [`wait_with_action_timeout`](Barrier::wait_with_action_timeout).
/// A timeout, an [`abort`](Barrier::abort), a panicking action, or an
/// action that returns `Err` (through
/// [`wait_with_fallible_action`](Barrier::wait_with_fallible_action))
/// breaks the barrier:
/// every waiter and later arrival gets
/// [`Error::BrokenBarrier`](crate::Error::BrokenBarrier) until
/// [`reset`](Barrier::reset).
///
/// Timeouts: the default timeout given at creation applies to `wait` and
/// `wait_with_action`; `wait_timeout` and the `timeout` of the action
/// forms override it. A timeout elapses at
/// about its value, never before; `Duration::ZERO` breaks the barrier at
/// once unless this arrival completes it. A timeout does not break a
/// generation that every party reached: the last arriver is running the
/// action, and the others wait for its trip (as in Python, where the action
/// runs under the barrier's lock); an arrival while that happens waits for
/// the trip, then counts in the next generation. A timed wait waits so for
/// 5 seconds past its timeout at most, then breaks the generation (so an
/// action longer than that breaks the barrier for timed waiters; waits
/// without a timeout wait for the action as long as its process lives).
///
/// Dead parties: a process killed while waiting stays counted, so the
/// generation cannot trip: the others' timeouts break it (use a default
/// timeout when peers may die). A process killed while tripping (in its
/// action) is noticed by the waiters within about 200 ms, timeout or not:
/// they break the barrier. (A kill in the few instructions between the
/// last arrival and recording who trips is noticed only by waiters with a
/// timeout, a second after it expired; waiters without one then wait until
/// a `reset` or `abort`.)
///
/// ```
/// let b = shmprim::Barrier::anonymous(1, None).unwrap();
/// assert_eq!(b.wait().unwrap(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct Barrier {
    seg: Arc<Segment>,
}

impl Barrier {
    fn make(
        from: Source<'_>,
        parties: u32,
        timeout: Option<Duration>,
        opts: &Options,
    ) -> Result<Self> {
        // Refuse bad arguments before creating anything.
        if !matches!(from, Source::Open(_)) {
            RawBarrier::new(parties, timeout)?;
        }
        let init = |p: *mut u8| {
            // SAFETY: `p` is the 64-aligned object start of a fresh,
            // unpublished segment of RawBarrier::SIZE bytes.
            unsafe { RawBarrier::init(p.cast(), parties, timeout) }
        };
        let seg = object::segment(from, Kind::Barrier, RawBarrier::SIZE, opts, None, init)?;
        // SAFETY: made by `object::segment` with RawBarrier::SIZE bytes;
        // RawBarrier is atomics only, align 8.
        unsafe { object::object::<RawBarrier>(&seg) }.check()?;
        Ok(Barrier { seg: Arc::new(seg) })
    }

    /// Creates one under `name` for `parties` (at least 1, else
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument)), with a
    /// default timeout for `wait` (`None`: wait for ever).
    pub fn create(name: &str, parties: u32, timeout: Option<Duration>) -> Result<Self> {
        Self::make(
            Source::Create(Place::Named(name)),
            parties,
            timeout,
            &Options::default(),
        )
    }

    /// [`Barrier::create`] with options.
    pub fn create_with(
        name: &str,
        parties: u32,
        timeout: Option<Duration>,
        opts: &Options,
    ) -> Result<Self> {
        Self::make(Source::Create(Place::Named(name)), parties, timeout, opts)
    }

    /// Opens the one created under `name` (its parties and default timeout
    /// are the creator's).
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`Barrier::open`] with options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        Self::make(Source::Open(name), 0, None, opts)
    }

    /// Opens `name`, creating it if it does not exist (an existing one
    /// keeps its own parties and timeout).
    pub fn open_or_create(name: &str, parties: u32, timeout: Option<Duration>) -> Result<Self> {
        Self::make(
            Source::OpenOrCreate(name),
            parties,
            timeout,
            &Options::default(),
        )
    }

    /// An unnamed one, shared with children forked afterwards.
    pub fn anonymous(parties: u32, timeout: Option<Duration>) -> Result<Self> {
        Self::make(
            Source::Create(Place::Anonymous),
            parties,
            timeout,
            &Options::default(),
        )
    }

    /// The number of parties (Python's `parties`).
    pub fn parties(&self) -> u32 {
        self.raw().parties()
    }

    /// How many wait in the current generation (Python's `n_waiting`).
    pub fn n_waiting(&self) -> u32 {
        self.raw().n_waiting()
    }

    /// Whether it is broken (Python's `broken`).
    pub fn is_broken(&self) -> bool {
        self.raw().is_broken()
    }

    /// The default timeout given at creation.
    pub fn default_timeout(&self) -> Option<Duration> {
        self.raw().default_timeout()
    }

    /// Waits for every party (within the default timeout); returns this
    /// arrival's index (Python's `wait()`).
    pub fn wait(&self) -> Result<u32> {
        self.raw().wait()
    }

    /// Waits at most `timeout` (Python's `wait(timeout)`): a timeout breaks
    /// the barrier ([`Error::BrokenBarrier`](crate::Error::BrokenBarrier)).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.raw().wait_timeout(timeout)
    }

    /// [`Barrier::wait`], running `action` if this arrival is the last
    /// (once per trip, before anyone is released).
    pub fn wait_with_action(&self, action: impl FnOnce()) -> Result<u32> {
        self.raw().wait_with_action(action)
    }

    /// [`Barrier::wait_with_action`] within `timeout` (Python's
    /// `wait(timeout)` on a barrier made with an action; `None`: the
    /// default timeout given at creation).
    pub fn wait_with_action_timeout(
        &self,
        timeout: Option<Duration>,
        action: impl FnOnce(),
    ) -> Result<u32> {
        self.raw().wait_with_action_timeout(timeout, action)
    }

    /// [`Barrier::wait_with_action_timeout`] with an action that reports
    /// failure by returning `Err` (not only by panicking): the barrier is
    /// then broken for every other party
    /// ([`Error::BrokenBarrier`](crate::Error::BrokenBarrier)), as when
    /// Python's action raises, and this call returns
    /// [`BarrierActionError::Action`] with the error.
    ///
    /// ```
    /// use shmprim::{Barrier, BarrierActionError};
    /// let b = Barrier::anonymous(1, None).unwrap();
    /// let r = b.wait_with_fallible_action(None, || Err("disk full"));
    /// assert!(matches!(r, Err(BarrierActionError::Action("disk full"))));
    /// assert!(b.is_broken());
    /// ```
    pub fn wait_with_fallible_action<E>(
        &self,
        timeout: Option<Duration>,
        action: impl FnOnce() -> std::result::Result<(), E>,
    ) -> std::result::Result<u32, BarrierActionError<E>> {
        self.raw().wait_with_fallible_action(timeout, action)
    }

    /// Breaks it (Python's `abort()`).
    pub fn abort(&self) {
        self.raw().abort()
    }

    /// Makes it usable again; current waiters get
    /// [`Error::BrokenBarrier`](crate::Error::BrokenBarrier) (Python's
    /// `reset()`).
    pub fn reset(&self) {
        self.raw().reset()
    }

    /// The in-place barrier.
    pub fn raw(&self) -> &RawBarrier {
        // SAFETY: checked to be a RawBarrier segment in `make`.
        unsafe { object::object::<RawBarrier>(&self.seg) }
    }

    /// The segment it lives in.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}
