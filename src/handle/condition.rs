//! `Condition`: a [`RawCondvar`] with its own robust lock, or with a
//! [`Lock`](crate::Lock) / [`RLock`](crate::RLock) it shares.
//!
//! Object layout: the condition's own [`RawMutex`] at 0 (used unless a
//! lock is shared; the header's link then names the shared lock's
//! segment), the [`RawCondvar`] at [`RawMutex::SIZE`].

use std::sync::Arc;
use std::time::Duration;

use super::lock::{LockGuard, SharedLock};
use super::object::{self, Source};
use crate::raw::{LockResult, MutexKind, RawCondvar, RawMutex, RecoverableGuard};
use crate::segment::{Kind, Options, Place, Segment};
use crate::sys::clock::Deadline;
use crate::{Error, Result};

const SIZE: usize = RawMutex::SIZE + RawCondvar::SIZE;

/// A condition variable shared between processes: Python's
/// `multiprocessing.Condition(lock=None)`. Without a lock of the caller's,
/// it makes its own, recursive as Python's (`RLock()`): the holder may
/// take it again, and a wait releases every level and takes them back.
///
/// Every operation takes the guard of the condition's lock, so using it
/// without holding the lock cannot compile; a guard of another lock is
/// [`Error::NotOwner`] (Python raises `RuntimeError` in both cases; the
/// crate's rule for "wrong owner" is `NotOwner` everywhere, as for
/// [`Lock::release`](crate::Lock::release)).
///
/// * Take the lock through [`lock`](Condition::lock) (or through the very
///   handle the condition was created with): a guard of the same lock
///   mapped again through another handle of this process counts as another
///   lock ([`Error::NotOwner`]).
/// * [`wait`](Condition::wait) releases the lock — every level of it, for
///   a shared [`RLock`](crate::RLock) taken several times — sleeps until
///   notified, and takes it back with the same depth.
/// * [`notify(n)`](Condition::notify) wakes exactly `min(n, waiting)`
///   waiters, oldest first; with nobody waiting it changes nothing (no
///   credit is left for later waiters).
/// * A waiter killed while waiting never absorbs a notify: a notifier that
///   finds a marked waiter not asleep checks its pid and start time and
///   skips it if dead. At most [`CONDVAR_SLOTS`](crate::raw::CONDVAR_SLOTS)
///   waiters at a time.
/// * Wake-ups may be spurious in principle (as in Python): wait in a loop
///   on your predicate, or use [`wait_while`](Condition::wait_while).
///
/// Timeouts: `Duration::ZERO` releases and retakes the lock once; a timed
/// wait returns `false` at about its timeout, never before. `Duration`s
/// cannot be negative, so Python's "negative timeout" case does not arise.
///
/// If taking the lock back finds that a holder died meanwhile, the wait
/// returns [`Error::OwnerDied`] with the lock held: repair the shared data,
/// then call [`make_consistent`](Condition::make_consistent). If taking it
/// back fails otherwise ([`Error::Corrupt`], [`Error::NotRecoverable`],
/// ...), the lock is not held and the guard is defused: dropping it does
/// nothing, and waiting or notifying with it is [`Error::NotOwner`].
///
/// A wait while this thread holds a guard of a [`Value`](crate::Value) or
/// [`Array`](crate::Array) that shares the condition's
/// [`RLock`](crate::RLock) is [`Error::Deadlock`] (nothing is released):
/// the wait would release the level that guard holds, and another thread
/// or process could then write the data under its `&mut T`.
///
/// ```
/// let c = shmprim::Condition::anonymous().unwrap();
/// let mut g = c.lock().unwrap();
/// assert_eq!(c.notify_all(&g).unwrap(), 0); // nobody waits: no credit
/// assert!(!c.wait_timeout(&mut g, std::time::Duration::from_millis(1)).unwrap());
/// ```
#[derive(Clone, Debug)]
pub struct Condition {
    seg: Arc<Segment>,
    shared: Option<SharedLock>,
    /// The kind of the lock it uses (see `make`).
    kind: MutexKind,
}

impl Condition {
    fn make(from: Source<'_>, shared: Option<SharedLock>, opts: &Options) -> Result<Self> {
        let link = match (&shared, &from) {
            (Some(l), Source::Create(Place::Named(_)) | Source::OpenOrCreate(_)) => {
                Some(l.segment().name().ok_or(Error::InvalidArgument(
                    "a named condition cannot share an anonymous lock: other processes could not find it",
                ))?)
            }
            _ => None,
        };
        let init = |p: *mut u8| {
            // SAFETY: `p` is the 64-aligned object start of a fresh,
            // unpublished segment of SIZE bytes: a RawMutex, then a
            // RawCondvar at offset RawMutex::SIZE (64, aligned for it).
            unsafe {
                RawMutex::init(p.cast(), MutexKind::Recursive)?;
                RawCondvar::init(p.add(RawMutex::SIZE).cast());
            }
            Ok(())
        };
        let is_open = !matches!(from, Source::Create(_));
        let mut seg = object::segment(from, Kind::Condition, SIZE, opts, link, init)?;
        let shared = match (shared, is_open && !seg.is_creator()) {
            (s, false) => s,
            // Opened: the lock is whatever the creator linked.
            (_, true) => match &seg.info().link {
                Some(name) => Some(SharedLock::open(name, opts)?),
                None => None,
            },
        };
        // Its own lock is recursive (`RLock`, as Python's `Condition()`
        // makes); a condition created by an earlier build has a plain one,
        // kept as found. Read once: a kind flipped in shared memory later
        // is refused at each lock call (`lock_as` insists on this one).
        let own = own_mutex_of(&seg).check_layout()?;
        let kind = match &shared {
            Some(SharedLock::RLock(_)) => MutexKind::Recursive,
            Some(SharedLock::Lock(_)) => MutexKind::Normal,
            None => own,
        };
        condvar_of(&seg).check()?;
        seg.keep_mapped_while(|seg| own_mutex_of(seg).must_stay_mapped());
        Ok(Condition {
            seg: Arc::new(seg),
            shared,
            kind,
        })
    }

    /// Creates one under `name` with its own robust lock, recursive (an
    /// [`RLock`](crate::RLock)'s rules) as Python's `Condition()` makes it.
    pub fn create(name: &str) -> Result<Self> {
        Self::make(
            Source::Create(Place::Named(name)),
            None,
            &Options::default(),
        )
    }

    /// [`Condition::create`] with options.
    pub fn create_with(name: &str, opts: &Options) -> Result<Self> {
        Self::make(Source::Create(Place::Named(name)), None, opts)
    }

    /// Creates one under `name` that uses `lock` (a named
    /// [`Lock`](crate::Lock) or [`RLock`](crate::RLock)); processes that
    /// open it use the same lock (Python's `Condition(lock)`).
    pub fn create_with_lock(name: &str, lock: impl Into<SharedLock>) -> Result<Self> {
        let shared = Some(lock.into());
        Self::make(
            Source::Create(Place::Named(name)),
            shared,
            &Options::default(),
        )
    }

    /// Opens the one created under `name` (and the lock it shares, if any).
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`Condition::open`] with options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        Self::make(Source::Open(name), None, opts)
    }

    /// Opens `name`, creating it (with its own recursive lock) if it does
    /// not exist.
    pub fn open_or_create(name: &str) -> Result<Self> {
        Self::make(Source::OpenOrCreate(name), None, &Options::default())
    }

    /// An unnamed one with its own recursive lock, shared with children
    /// forked afterwards.
    pub fn anonymous() -> Result<Self> {
        Self::make(Source::Create(Place::Anonymous), None, &Options::default())
    }

    /// An unnamed one using `lock`.
    pub fn anonymous_with_lock(lock: impl Into<SharedLock>) -> Result<Self> {
        let shared = Some(lock.into());
        Self::make(
            Source::Create(Place::Anonymous),
            shared,
            &Options::default(),
        )
    }

    /// The lock's mutex (its own, or the shared one's).
    fn mutex(&self) -> &RawMutex {
        match &self.shared {
            Some(SharedLock::Lock(l)) => l.raw(),
            Some(SharedLock::RLock(l)) => l.raw(),
            None => own_mutex_of(&self.seg),
        }
    }

    fn kind(&self) -> MutexKind {
        self.kind
    }

    /// The shared lock, if it uses one.
    pub fn shared_lock(&self) -> Option<&SharedLock> {
        self.shared.as_ref()
    }

    /// Takes the condition's lock (Python's `acquire()`); the guard is what
    /// `wait` and `notify` need.
    pub fn lock(&self) -> LockResult<LockGuard<'_>> {
        self.mutex().lock_as(None, Some(self.kind()))
    }

    /// Takes the lock if free: [`Error::WouldBlock`] otherwise.
    pub fn try_lock(&self) -> LockResult<LockGuard<'_>> {
        self.mutex()
            .lock_as(Some(Deadline::PASSED), Some(self.kind()))
            .map_err(super::lock::would_block)
    }

    /// Takes the lock within `timeout`: [`Error::Timeout`] after it.
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<LockGuard<'_>> {
        self.mutex()
            .lock_as(Some(Deadline::after(timeout)), Some(self.kind()))
    }

    fn mine(&self, guard: &LockGuard<'_>) -> Result<()> {
        if std::ptr::eq(guard.mutex(), self.mutex()) && guard.is_live() {
            Ok(())
        } else {
            Err(Error::NotOwner)
        }
    }

    /// Releases the lock, sleeps until notified, takes the lock back
    /// (Python's `wait()`).
    ///
    /// Errors: [`Error::NotOwner`] (a guard of another lock, or one
    /// defused by an earlier failed wait); [`Error::Deadlock`] while this
    /// thread holds a [`Value`](crate::Value)/[`Array`](crate::Array)
    /// guard of the same lock (nothing released); [`Error::OwnerDied`]
    /// (see the type's docs); after any other error the lock is not held
    /// and `guard` is defused (dropping it does nothing).
    pub fn wait(&self, guard: &mut LockGuard<'_>) -> Result<()> {
        self.wait_until(guard, None).map(|_| ())
    }

    /// [`Condition::wait`] for at most `timeout`: `Ok(false)` if it timed
    /// out (Python's `wait(timeout)` returning `False`).
    pub fn wait_timeout(&self, guard: &mut LockGuard<'_>, timeout: Duration) -> Result<bool> {
        self.wait_until(guard, Some(Deadline::after(timeout)))
    }

    fn wait_until(&self, guard: &mut LockGuard<'_>, deadline: Option<Deadline>) -> Result<bool> {
        self.mine(guard)?;
        self.condvar().wait_until(guard, deadline)
    }

    /// Waits while `condition()` is true (it is evaluated with the lock
    /// held, first before any wait).
    pub fn wait_while(
        &self,
        guard: &mut LockGuard<'_>,
        mut condition: impl FnMut() -> bool,
    ) -> Result<()> {
        while condition() {
            self.wait(guard)?;
        }
        Ok(())
    }

    /// Python's `wait_for(predicate, timeout)`: waits until `predicate()`
    /// is true or `timeout` has elapsed (not before); returns the
    /// predicate's last value.
    pub fn wait_for(
        &self,
        guard: &mut LockGuard<'_>,
        mut predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool> {
        let deadline = Deadline::after(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            if deadline.has_passed() {
                return Ok(false);
            }
            self.wait_until(guard, Some(deadline))?;
        }
    }

    /// Wakes one waiter, if any; returns how many woke (0 or 1).
    pub fn notify_one(&self, guard: &LockGuard<'_>) -> Result<u32> {
        self.notify(guard, 1)
    }

    /// Wakes `min(n, waiting)` waiters, oldest first (Python's
    /// `notify(n)`); returns how many.
    pub fn notify(&self, guard: &LockGuard<'_>, n: u32) -> Result<u32> {
        self.mine(guard)?;
        self.condvar().notify(guard, n)
    }

    /// Wakes every waiter (Python's `notify_all()`); returns how many.
    pub fn notify_all(&self, guard: &LockGuard<'_>) -> Result<u32> {
        self.notify(guard, u32::MAX)
    }

    /// How many wait and were not yet notified (a snapshot).
    pub fn n_waiting(&self) -> u32 {
        self.condvar().n_waiting()
    }

    /// After a wait returned [`Error::OwnerDied`]: the shared data is
    /// repaired, the lock works normally again. A lock with nothing to
    /// mend is [`Error::InvalidArgument`] (as every `make_consistent`).
    pub fn make_consistent(&self, guard: &mut LockGuard<'_>) -> Result<()> {
        self.mine(guard)?;
        guard.mark_consistent()
    }

    /// The in-place condition variable.
    pub fn condvar(&self) -> &RawCondvar {
        condvar_of(&self.seg)
    }

    /// The segment it lives in.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

fn own_mutex_of(seg: &Segment) -> &RawMutex {
    // SAFETY: a Condition segment (object::segment checked its SIZE bytes)
    // starts with a RawMutex, 64-aligned; any bits are valid for it.
    unsafe { object::object::<RawMutex>(seg) }
}

fn condvar_of(seg: &Segment) -> &RawCondvar {
    // SAFETY: the RawCondvar lies at RawMutex::SIZE (64, so aligned) within
    // the SIZE bytes checked by object::segment; atomics only.
    unsafe { &*seg.data_ptr().add(RawMutex::SIZE).cast::<RawCondvar>() }
}
