//! [`RawMutex`]: a robust, process-shared mutex that lives in place.
//!
//! ## Layout (64 bytes, one cache line; layout version 2)
//!
//! | offset | field       | meaning                                              |
//! |-------:|-------------|------------------------------------------------------|
//! |      0 | `state`     | `STATE_MAGIC` in bits 8..32, flags in bits 0..8      |
//! |      4 | `kind`      | [`MutexKind`] code                                   |
//! |      8 | `word`      | the lock word: owner thread id, `WAITERS`, owner stamp (`raw::lockword`) |
//! |     16 | `pidns`     | pid namespace of the initialising process (inode of `/proc/self/ns/pid`; 0: unknown) |
//! |     24 | `foreign`   | a foreign holder's record: its pid namespace (low 32 bits) and a hash of its word (0: none) |
//! |     32 | reserved    | zero                                                 |
//!
//! `pidns` and `foreign` were reserved (zero) before: a mutex initialised
//! then reads as "namespace unknown" and is judged as before, by anyone.
//!
//! ## Foreign owners
//!
//! A holder whose pid namespace is not the mutex's (`pidns`) writes its
//! lock word with `FOREIGN` (`raw::lockword`) and then, holding the lock,
//! `foreign = (its namespace << 32) | hash(word)`: the one place that says
//! in which namespace that word's thread id means something. A judge of a
//! foreign word reads the record (after an Acquire fence: the record a
//! previous holder cleared before its Release unlock is never seen stale)
//! and judges only if the record matches the word and names the judge's
//! own namespace. The holder clears its record (a CAS from its own) before
//! every unlock. A judge that found a foreign owner dead first claims the
//! record (a CAS to 0): only the claimant may take the word over, and it
//! gives the record back if its CAS on the word fails. A holder killed
//! between taking the word and writing its record is never judged (its
//! lock waits for timeouts), the window being a few instructions.
//!
//! Version 1 (a `pthread_mutex_t` at offset 16, magic "MTX") is refused
//! with [`Error::Corrupt`]; segments carry a format version and refuse it
//! earlier with [`Error::VersionMismatch`].
//!
//! ## The lock
//!
//! A futex mutex of the crate's own (`raw::lockword`): taking a free lock is
//! one CAS of the owner's thread id and start-time stamp into the word,
//! releasing it one CAS back to zero; owner death is detected by waiters
//! only, on the slow path, from the id and stamp the word names. This
//! replaced the robust pthread mutex, whose uncontended cost alone (the
//! robust-list bookkeeping in the C library) was near twice
//! `std::sync::Mutex`'s. It needs futexes: elsewhere [`RawMutex::init`]
//! returns [`Error::Unsupported`] (FreeBSD's robust pthread mutex had no
//! monotonic timed lock either, so blocking waits never worked there).
//!
//! ## State flags
//!
//! | flag            | set by                                   | cleared by                    |
//! |-----------------|------------------------------------------|-------------------------------|
//! | `INCONSISTENT`  | the locker that got a dead owner's lock   | `make_consistent`, the final release |
//! | `UNRECOVERABLE` | the holder releasing an inconsistent lock | never                        |
//!
//! Both are written only by the thread holding the lock. Releasing an
//! inconsistent lock also leaves the lock word "not recoverable", which no
//! CAS from zero can take: every caller sees [`Error::NotRecoverable`].
//!
//! ## Who holds it
//!
//! Recursion is counted here, in process-local memory (`held`), never in
//! the shared bytes. Whether this thread holds a lock is decided by that
//! record, or by a guard's existence, never by the shared lock word: a word
//! forged to name this thread is [`Error::Deadlock`] to a locker, and
//! `release()` refuses it ([`Error::NotOwner`]).

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::time::Duration;

use super::held::{self, Popped, Via};
use super::lock_error::{sealed, LockError, LockResult, OwnerDied, RecoverableGuard};
use super::lockword::{self, Got, Judge, LockWord};
use super::owner;
use crate::fault::fault_point;
use crate::sys::clock::Deadline;
use crate::sys::proc;
use crate::{Error, Result};

const STATE_MAGIC: u32 = 0x4d54_3200; // "MT2" in the top three bytes
/// The magic of layout version 1 (a pthread mutex inside).
const STATE_MAGIC_V1: u32 = 0x4d54_5800; // "MTX"
const MAGIC_MASK: u32 = 0xffff_ff00;
const INCONSISTENT: u32 = 1 << 0;
const UNRECOVERABLE: u32 = 1 << 1;

/// Which rules a [`RawMutex`] follows when its holder locks it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutexKind {
    /// Locking again from the holding thread is [`Error::Deadlock`].
    Normal,
    /// The holding thread may lock again; it must release as many times.
    Recursive,
}

impl MutexKind {
    const fn code(self) -> u32 {
        match self {
            MutexKind::Normal => 1,
            MutexKind::Recursive => 2,
        }
    }

    const fn from_code(c: u32) -> Option<MutexKind> {
        match c {
            1 => Some(MutexKind::Normal),
            2 => Some(MutexKind::Recursive),
            _ => None,
        }
    }
}

/// How [`RawMutex::acquire`] obtained the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "an acquired lock whose owner died must be repaired or it becomes not recoverable"]
pub enum Acquire {
    /// Normally.
    Clean,
    /// The previous owner died holding it: repair the data, then call
    /// [`RawMutex::make_consistent`] before releasing, or the lock becomes
    /// not recoverable.
    OwnerDied,
}

/// A robust, process-shared mutex that lives in shared memory.
///
/// If the holder dies (process killed, thread exited), the next locker
/// receives the lock together with the news ([`LockError::OwnerDied`]). A
/// waiter learns of the death within about 100 ms: it sleeps in slices and
/// checks, between them, that the thread the lock word names still runs
/// (same thread id, same start time). A word forged to name a live thread
/// cannot be told from a real holder: `lock()` waits for it as for any
/// holder, which is what [`RawMutex::lock_timeout`] is for. A word naming
/// no possible thread is [`Error::Corrupt`]. Processes in several pid
/// namespaces (containers sharing `/dev/shm`) keep mutual exclusion: the
/// mutex records the namespace it was initialised in, a holder from
/// another one is marked in the lock word, and a waiter never judges a
/// holder it cannot see (it waits, or times out, but never takes over).
/// A dead holder is reported where both it and the waiter live in the
/// recorded namespace; a dead holder from another namespace is never
/// reported (the table in `raw::owner`'s docs, "Namespaces"). A holder
/// in another time namespace is judged correctly. A `try_lock` that finds
/// the lock busy checks the holder (a read of `/proc`, at most once per
/// 100 ms per holder and thread), so that it too reports a dead holder.
///
/// Ownership is per thread: guards are neither `Send` nor `Sync`.
///
/// Trust: the mutex defends against any bytes found at rest (a corrupted
/// or forged mutex gives [`Error::Corrupt`], [`Error::Deadlock`] or an
/// owner-died hand-over, never undefined behaviour). A peer that writes
/// into the mutex while this thread holds it can break mutual exclusion,
/// not memory safety of this process.
#[repr(C, align(64))]
pub struct RawMutex {
    state: AtomicU32,
    kind: AtomicU32,
    word: LockWord,
    /// Where thread ids in `word` can be looked up (see `owner::is_dead`).
    pidns: AtomicU64,
    /// A foreign holder's record (see "Foreign owners").
    foreign: AtomicU64,
    _reserved: [AtomicU32; 8],
}

#[cfg(not(loom))]
const _: () = {
    use static_assertions::const_assert_eq;
    const_assert_eq!(std::mem::size_of::<RawMutex>(), 64);
    const_assert_eq!(std::mem::align_of::<RawMutex>(), 64);
    const_assert_eq!(std::mem::offset_of!(RawMutex, state), 0);
    const_assert_eq!(std::mem::offset_of!(RawMutex, kind), 4);
    const_assert_eq!(std::mem::offset_of!(RawMutex, word), 8);
    const_assert_eq!(std::mem::offset_of!(RawMutex, pidns), 16);
    const_assert_eq!(std::mem::offset_of!(RawMutex, foreign), 24);
    const_assert_eq!(std::mem::offset_of!(RawMutex, _reserved), 32);
};

impl RawMutex {
    /// Bytes the object spans.
    pub const SIZE: usize = 64;
    /// Alignment the object needs.
    pub const ALIGN: usize = 64;

    /// Initialises a mutex in place.
    ///
    /// # Safety
    /// `this` points to [`RawMutex::SIZE`] writable bytes aligned to
    /// [`RawMutex::ALIGN`], in memory that stays mapped while any process
    /// uses it (normally a `MAP_SHARED` mapping; never `MAP_PRIVATE` across
    /// `fork`). No other thread or process may touch those bytes until this
    /// returns; publish the object afterwards with a Release store.
    pub unsafe fn init(this: *mut RawMutex, kind: MutexKind) -> Result<()> {
        debug_assert!(
            this as usize % Self::ALIGN == 0,
            "RawMutex::init: misaligned"
        );
        if !cfg!(any(target_os = "linux", target_os = "android")) {
            return Err(Error::Unsupported(
                "robust process-shared mutex (needs futexes)",
            ));
        }
        // SAFETY: the caller grants exclusive access to valid, aligned
        // memory; every field is an atomic, valid for any bits, so a shared
        // reference to the object is sound before its fields are written.
        let this = unsafe { &*this };
        this.word.reset();
        this.kind.store(kind.code(), Relaxed);
        this.pidns.store(proc::pid_namespace(), Relaxed);
        this.foreign.store(0, Relaxed);
        this._reserved.iter().for_each(|r| r.store(0, Relaxed));
        this.state.store(STATE_MAGIC, Release);
        Ok(())
    }

    /// The calling thread's owner word for this mutex: `FOREIGN` where the
    /// thread's pid namespace is not the one the mutex records.
    #[inline]
    fn me(&self) -> u64 {
        owner::me_in(self.pidns.load(Relaxed))
    }

    /// After this thread took the word as `me`: a foreign holder records
    /// its namespace (see "Foreign owners"). Nothing for a home holder.
    #[inline]
    fn note_owner(&self, me: u64) {
        if me & lockword::FOREIGN != 0 {
            self.foreign
                .store(foreign_record(owner::my_namespace(), me), Relaxed);
        }
    }

    /// Before this thread releases the word it holds as `me`: a foreign
    /// holder clears its record (only its own: a CAS), ordered before the
    /// unlock's Release.
    #[inline]
    fn forget_owner(&self, me: u64) {
        if me & lockword::FOREIGN != 0 {
            let mine = foreign_record(owner::my_namespace(), me);
            let _ = self.foreign.compare_exchange(mine, 0, Relaxed, Relaxed);
        }
    }

    /// The record a foreign owner of `word` in this process's namespace
    /// would have written, if the mutex holds exactly that one now.
    fn foreign_record_here(&self, word: u64) -> Option<u64> {
        let here = proc::pid_namespace();
        if here == 0 {
            return None;
        }
        // SYNC POINT: with the Release of the unlock that preceded the
        // word's current holder (its CAS continues that release sequence):
        // a record cleared before that unlock is not read here.
        std::sync::atomic::fence(Acquire);
        let want = foreign_record(here, word);
        (self.foreign.load(Relaxed) == want).then_some(want)
    }

    /// This mutex's identity in the calling process's record of held locks.
    #[inline]
    fn addr(&self) -> usize {
        self as *const RawMutex as usize
    }

    /// Checks that the object looks initialised and intact and is usable;
    /// returns its kind. Every lock call does this first.
    #[inline]
    pub fn check(&self) -> Result<MutexKind> {
        let kind = self.check_layout()?;
        if self.state.load(Relaxed) & UNRECOVERABLE != 0 {
            return Err(Error::NotRecoverable);
        }
        Ok(kind)
    }

    /// Checks that the object looks initialised and intact, whether or not
    /// it is still recoverable: what opening a segment needs (a lock that
    /// is not recoverable can still be opened, inspected, and reports
    /// [`Error::NotRecoverable`] at each lock call).
    #[inline]
    pub fn check_layout(&self) -> Result<MutexKind> {
        let state = self.state.load(Acquire);
        if state & MAGIC_MASK != STATE_MAGIC {
            return Err(Self::bad_magic(state));
        }
        // Not `ok_or(..)`: that builds (and drops) an Error on every lock.
        let Some(kind) = MutexKind::from_code(self.kind.load(Relaxed)) else {
            return Err(Error::Corrupt("mutex kind"));
        };
        Ok(kind)
    }

    #[cold]
    fn bad_magic(state: u32) -> Error {
        if state & MAGIC_MASK == STATE_MAGIC_V1 {
            Error::Corrupt("mutex of layout version 1 (a pthread mutex): not supported")
        } else {
            Error::Corrupt("mutex not initialised")
        }
    }

    /// Whether the lock can never be taken again (its owner died and the
    /// next holder released it unrepaired).
    pub fn is_not_recoverable(&self) -> bool {
        self.state.load(Relaxed) & UNRECOVERABLE != 0
            || self.word.load() & lockword::TID_MASK == lockword::NOT_RECOVERABLE
    }

    /// Whether the calling thread holds this lock through a recursive lock
    /// or [`RawMutex::acquire`] (guards of a non-recursive lock are not
    /// recorded: the guard itself is the proof). Public for bindings that
    /// keep data beside a lock the caller may already hold (the Python
    /// package's `Value`, read under `with v.get_lock():`).
    pub fn held_by_this_thread(&self) -> bool {
        held::total(self.addr()) > 0
    }

    /// Whether a thread of this process may hold the lock: the held record
    /// of this process is keyed by the mutex's address, so the mapping must
    /// then stay (a new mapping at the same address would inherit the
    /// entry). Read from the lock word (a false "yes", a lock held through
    /// another mapping, only delays the unmapping until it is free).
    pub(crate) fn may_be_held_in_this_process(&self) -> bool {
        if self.held_by_this_thread() {
            return true;
        }
        match lockword::tid_of(self.word.load()) {
            0 => false,
            tid => proc::may_be_own_thread(tid),
        }
    }

    /// Whether the mapping holding this mutex must stay (see
    /// [`RawMutex::may_be_held_in_this_process`]).
    pub(crate) fn must_stay_mapped(&self) -> bool {
        if Self::COUNTS_LEVELS {
            held::levels_outstanding() || self.held_by_this_thread()
        } else {
            self.may_be_held_in_this_process()
        }
    }

    /// Whether every lock level is counted process-wide: where the lock
    /// word cannot say who holds a lock. The crate's own lock word always
    /// can, so the counting is compiled out.
    pub(crate) const COUNTS_LEVELS: bool = false;

    /// Waits for the lock without limit (but see the type's note on
    /// corrupted lock words).
    #[inline]
    pub fn lock(&self) -> LockResult<RawMutexGuard<'_>> {
        self.lock_until(None)
    }

    /// Takes the lock if it is free now; [`Error::WouldBlock`] otherwise.
    #[inline]
    pub fn try_lock(&self) -> LockResult<RawMutexGuard<'_>> {
        match self.lock_until(Some(Deadline::PASSED)) {
            Err(LockError::Failed(Error::Timeout)) => Err(LockError::Failed(Error::WouldBlock)),
            other => other,
        }
    }

    /// Waits at most `timeout` ([`Error::Timeout`] after it, never before).
    #[inline]
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<RawMutexGuard<'_>> {
        self.lock_until(Some(Deadline::after(timeout)))
    }

    #[inline]
    pub(crate) fn lock_until(&self, deadline: Option<Deadline>) -> LockResult<RawMutexGuard<'_>> {
        self.lock_as(deadline, None)
    }

    /// Locks, insisting (with `expect`) on the kind the caller's handle was
    /// made for: a kind word flipped in shared memory must not turn a lock
    /// whose guards hand out `&mut T` into a recursive one.
    ///
    /// The common case (a free non-recursive lock, nothing to repair) is
    /// kept small enough to inline; everything else is in `lock_slow`.
    #[inline]
    pub(crate) fn lock_as<'a>(
        &'a self,
        deadline: Option<Deadline>,
        expect: Option<MutexKind>,
    ) -> LockResult<RawMutexGuard<'a>> {
        self.lock_via(deadline, expect, Via::Guard)
    }

    /// [`RawMutex::lock_as`] for a `Value`/`Array` guard, which hands out
    /// `&mut T`: a level of a recursive lock is recorded as [`Via::Data`],
    /// which a condition wait refuses to release.
    #[inline]
    pub(crate) fn lock_data<'a>(
        &'a self,
        deadline: Option<Deadline>,
        expect: Option<MutexKind>,
    ) -> LockResult<RawMutexGuard<'a>> {
        self.lock_via(deadline, expect, Via::Data)
    }

    #[inline]
    fn lock_via<'a>(
        &'a self,
        deadline: Option<Deadline>,
        expect: Option<MutexKind>,
        via: Via,
    ) -> LockResult<RawMutexGuard<'a>> {
        if self.check()? == MutexKind::Normal && expect != Some(MutexKind::Recursive) {
            // `me` first: it registers the fork handler the generation needs.
            let me = self.me();
            let first = self.word.try_fast(me);
            if first.is_ok() {
                self.note_owner(me);
                fault_point!("mutex.lock.acquired");
                if self.state.load(Relaxed) & INCONSISTENT == 0 {
                    return Ok(RawMutexGuard::new(self, held::generation_now(), None));
                }
            }
            // Busy, or a flag to clear: go on from what this attempt
            // found, never try again blind.
            return self.lock_normal_after(first, me, deadline);
        }
        self.lock_slow(deadline, expect, via)
    }

    #[cold]
    #[inline(never)]
    fn lock_normal_after<'a>(
        &'a self,
        first: std::result::Result<(), u64>,
        me: u64,
        deadline: Option<Deadline>,
    ) -> LockResult<RawMutexGuard<'a>> {
        let got = match first {
            Ok(()) => Got::Clean,
            Err(cur) => self.lock_word_after(me, cur, deadline)?,
        };
        let got = self.after_acquired(got, None)?;
        let guard = RawMutexGuard::new(self, held::generation_now(), None);
        match got {
            Got::Clean => Ok(guard),
            Got::OwnerDied => Err(LockError::OwnerDied(OwnerDied::new(guard))),
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_slow<'a>(
        &'a self,
        deadline: Option<Deadline>,
        expect: Option<MutexKind>,
        via: Via,
    ) -> LockResult<RawMutexGuard<'a>> {
        let kind = self.check_expecting(expect)?;
        let recursive = kind == MutexKind::Recursive;
        let generation = held::generation();
        let tracked = recursive.then_some(via);
        let got = self.acquire_until(deadline, kind, tracked)?;
        let guard = RawMutexGuard::new(self, generation, tracked);
        match got {
            Got::Clean => Ok(guard),
            Got::OwnerDied => Err(LockError::OwnerDied(OwnerDied::new(guard))),
        }
    }

    /// [`RawMutex::check`], and the kind must be `expect` (if given).
    fn check_expecting(&self, expect: Option<MutexKind>) -> Result<MutexKind> {
        let kind = self.check()?;
        if expect.is_some_and(|k| k != kind) {
            return Err(Error::Corrupt("mutex kind changed"));
        }
        Ok(kind)
    }

    /// Python's `acquire()`: takes the lock with no guard. Release it with
    /// [`RawMutex::release`] from the same thread.
    pub fn acquire(&self) -> Result<Acquire> {
        self.acquire_as(None, None)
    }

    /// [`RawMutex::acquire`] waiting at most `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<Acquire> {
        self.acquire_as(Some(Deadline::after(timeout)), None)
    }

    /// [`RawMutex::acquire`] insisting on a kind.
    pub(crate) fn acquire_as(
        &self,
        deadline: Option<Deadline>,
        expect: Option<MutexKind>,
    ) -> Result<Acquire> {
        let kind = self.check_expecting(expect)?;
        held::generation();
        let got = self.acquire_until(deadline, kind, Some(Via::Raw))?;
        if Self::COUNTS_LEVELS {
            held::levels_add();
        }
        Ok(match got {
            Got::Clean => Acquire::Clean,
            Got::OwnerDied => Acquire::OwnerDied,
        })
    }

    /// Takes the lock (or, for a recursive lock this thread holds, one more
    /// level of it). With `via`, records the level in this thread's held set.
    #[inline]
    fn acquire_until(
        &self,
        deadline: Option<Deadline>,
        kind: MutexKind,
        via: Option<Via>,
    ) -> Result<Got> {
        if let Some(via) = via {
            if self.held_by_this_thread() {
                // Held here already: a recursive lock gains a level without
                // touching the word. `kind` is the one the caller checked,
                // not a fresh read.
                if kind != MutexKind::Recursive || !held::push(self.addr(), via) {
                    return Err(Error::Deadlock);
                }
                return Ok(Got::Clean);
            }
        }
        let me = self.me();
        let got = match self.word.try_fast(me) {
            Ok(()) => {
                self.note_owner(me);
                fault_point!("mutex.lock.acquired");
                Got::Clean
            }
            Err(cur) => self.lock_word_after(me, cur, deadline)?,
        };
        self.after_acquired(got, via)
    }

    /// The first attempt found the word `cur`: wait (see
    /// `LockWord::lock_slow`).
    #[cold]
    fn lock_word_after(&self, me: u64, cur: u64, deadline: Option<Deadline>) -> Result<Got> {
        let got = self.word.lock_slow(me, cur, deadline, self)?;
        self.note_owner(me);
        fault_point!("mutex.lock.acquired");
        Ok(got)
    }

    /// Bookkeeping once this thread holds the lock: the inconsistency flag,
    /// and the level in the held record (with `via`).
    fn after_acquired(&self, got: Got, via: Option<Via>) -> Result<Got> {
        match got {
            Got::OwnerDied => {
                // We hold the lock: the flag is ours to set.
                self.state.fetch_or(INCONSISTENT, Relaxed);
            }
            Got::Clean => {
                if self.state.load(Relaxed) & INCONSISTENT != 0 {
                    // Left by a corrupted mutex: a clean hand-over says the
                    // data is consistent.
                    self.state.fetch_and(!INCONSISTENT, Relaxed);
                }
            }
        }
        if let Some(via) = via {
            if !held::push(self.addr(), via) {
                // This thread's record is gone (its thread-locals are being
                // torn down): it cannot hold the lock by the rules here. A
                // clean lock is given back; a dead owner's lock stays held,
                // so that this thread's exit hands it on, still marked.
                if got == Got::Clean {
                    let _ = self.unlock_outermost();
                }
                return Err(Error::InvalidArgument("locking while the thread exits"));
            }
        }
        Ok(got)
    }

    /// Python's `release()`: releases one level of a lock taken with
    /// [`RawMutex::acquire`]. A thread that does not hold it that way gets
    /// [`Error::NotOwner`] and changes nothing. Releasing the last level of
    /// a lock acquired as [`Acquire::OwnerDied`] without
    /// [`RawMutex::make_consistent`] makes it not recoverable.
    pub fn release(&self) -> Result<()> {
        self.check_layout()?;
        let popped = held::pop(self.addr(), Via::Raw).ok_or(Error::NotOwner)?;
        if Self::COUNTS_LEVELS {
            held::levels_sub();
        }
        match popped {
            Popped::Held(0) => self.unlock_outermost(),
            // An inner level; or one a failed condition wait released and
            // could not take back (already reported by that wait).
            Popped::Held(_) | Popped::Orphan => Ok(()),
        }
    }

    /// Releases the lock this thread holds at its outermost level. The
    /// callers are `release`, after the held record showed the last level
    /// taken by `acquire` in this thread; a guard's drop, after checking
    /// that the guard was made in this process (fork generation), still
    /// holds its lock (not defused after a failed re-lock) and, for a level
    /// of a recursive lock, that the record shows it was the last; and
    /// `after_acquired`, right after taking it. The word itself must name
    /// this thread too, or nothing changes ([`Error::NotOwner`]).
    #[inline]
    fn unlock_outermost(&self) -> Result<()> {
        let me = owner::cached_in(self.pidns.load(Relaxed));
        self.forget_owner(me);
        if self.state.load(Relaxed) & INCONSISTENT == 0 {
            return self.word.unlock(me);
        }
        self.unlock_inconsistent(me)
    }

    /// Releasing a dead owner's lock unrepaired: nobody can take it any
    /// more. The word says so first (from then on nobody else holds it, so
    /// the flags, written by holders only, race with nobody), then the
    /// flags, so that `check` reports it before any word is read.
    #[cold]
    fn unlock_inconsistent(&self, me: u64) -> Result<()> {
        self.word.unlock_not_recoverable(me)?;
        self.state.fetch_or(UNRECOVERABLE, Relaxed);
        self.state.fetch_and(!INCONSISTENT, Relaxed);
        Ok(())
    }

    /// Declares the data repaired after [`Acquire::OwnerDied`].
    ///
    /// Every path that marks a lock consistent (this one, `Lock`/`RLock`'s,
    /// [`OwnerDied::make_consistent`], a guard's, `Condition`'s) answers
    /// alike, as POSIX's `pthread_mutex_consistent` does: a lock that has
    /// nothing to mend (no owner died since it was last made consistent) is
    /// [`Error::InvalidArgument`] (`EINVAL`), whoever asks; an inconsistent
    /// lock that the caller does not hold from that acquisition is
    /// [`Error::NotOwner`]. (A thread that holds a non-recursive lock only
    /// through its guard repairs through [`OwnerDied`] instead.)
    pub fn make_consistent(&self) -> Result<()> {
        self.check_layout()?;
        self.needs_mending()?;
        if !self.held_by_this_thread() {
            return Err(Error::NotOwner);
        }
        self.mark_consistent()
    }

    /// [`Error::InvalidArgument`] unless the lock is inconsistent (see
    /// [`RawMutex::make_consistent`]).
    fn needs_mending(&self) -> Result<()> {
        if self.state.load(Relaxed) & INCONSISTENT == 0 {
            return Err(Error::InvalidArgument(
                "make_consistent: the lock is consistent, nothing to mend",
            ));
        }
        Ok(())
    }

    fn mark_consistent(&self) -> Result<()> {
        // The caller holds the lock: the flag is ours to clear.
        self.needs_mending()?;
        self.state.fetch_and(!INCONSISTENT, Relaxed);
        Ok(())
    }

    /// Whether some thread (here or in another process) holds the lock
    /// right now; a snapshot, for diagnosis.
    pub fn is_locked(&self) -> Result<bool> {
        self.check()?;
        Ok(lockword::tid_of(self.word.load()) != 0)
    }
}

/// What the lock word's slow path asks of the mutex around it.
impl Judge for RawMutex {
    fn is_dead(&self, word: u64) -> bool {
        let addr = Some(self.addr());
        if word & lockword::FOREIGN == 0 {
            return owner::is_dead(word, self.pidns.load(Relaxed), addr);
        }
        // A foreign owner: judged only by its record, from its namespace.
        self.foreign_record_here(word).is_some()
            && owner::is_dead(word, proc::pid_namespace(), addr)
    }

    fn claim(&self, word: u64) -> bool {
        if word & lockword::FOREIGN == 0 {
            return true;
        }
        self.foreign_record_here(word).is_some_and(|r| {
            self.foreign
                .compare_exchange(r, 0, Relaxed, Relaxed)
                .is_ok()
        })
    }

    fn unclaim(&self, word: u64) {
        if word & lockword::FOREIGN != 0 {
            let r = foreign_record(proc::pid_namespace(), word);
            let _ = self.foreign.compare_exchange(0, r, Relaxed, Relaxed);
        }
    }

    fn check(&self) -> Result<()> {
        RawMutex::check(self).map(drop)
    }
}

/// A foreign holder's record: its pid namespace (low 32 bits: procfs
/// inode numbers fit) and a hash of its word (`WAITERS` left out).
fn foreign_record(namespace: u64, word: u64) -> u64 {
    let w = word & !lockword::WAITERS;
    let hash = (w as u32) ^ ((w >> 32) as u32).rotate_left(13);
    ((namespace as u32 as u64) << 32) | u64::from(hash)
}

/// Proof that this thread holds a [`RawMutex`]; releases it when dropped.
///
/// Kept to a pointer and a `u32`: callers move the guard out of the
/// `LockResult` it comes back in, and a larger guard gets copied with wide
/// loads over the narrower stores that built it, loads the CPU cannot
/// forward from those stores (a stall of about 10 ns on every lock,
/// measured).
#[must_use = "the lock is released as soon as the guard drops"]
pub struct RawMutexGuard<'a> {
    mutex: &'a RawMutex,
    /// Bits 0..29: the fork generation it was made in (a copy that `fork`
    /// left in a child must not release or mark its parent's lock). Bit 29:
    /// defused, the lock is no longer held (a condition wait failed to take
    /// it back). Bit 30: a `Value`/`Array` level ([`Via::Data`]). Bit 31: a
    /// level of a recursive lock, counted in the held record.
    stamp: u32,
    _not_send: PhantomData<*const ()>,
}

const STAMP_TRACKED: u32 = 1 << 31;
const STAMP_DATA: u32 = 1 << 30;
const STAMP_DEFUNCT: u32 = 1 << 29;
const STAMP_GENERATION: u32 = STAMP_DEFUNCT - 1;

impl<'a> RawMutexGuard<'a> {
    /// A guard for a lock this thread has just taken (and, for a level of a
    /// recursive lock, `tracked`: how it is recorded in the held set).
    #[inline]
    fn new(mutex: &'a RawMutex, generation: u32, tracked: Option<Via>) -> Self {
        if RawMutex::COUNTS_LEVELS {
            held::levels_add();
        }
        debug_assert!(tracked != Some(Via::Raw), "a guard is not a raw level");
        let how = match tracked {
            None => 0,
            Some(Via::Data) => STAMP_TRACKED | STAMP_DATA,
            Some(_) => STAMP_TRACKED,
        };
        RawMutexGuard {
            mutex,
            stamp: (generation & STAMP_GENERATION) | how,
            _not_send: PhantomData,
        }
    }

    /// Makes the guard inert: its lock is no longer held by this thread (a
    /// condition wait could not take it back). Dropping it, or marking it
    /// consistent, then does nothing: a lock word that may since have been
    /// forged to name this thread (or taken by this thread again, under
    /// another guard) is never released in its name.
    fn defuse(&mut self) {
        if self.made_here() && RawMutex::COUNTS_LEVELS {
            held::levels_sub();
        }
        self.stamp |= STAMP_DEFUNCT;
    }

    /// How the guard's level is recorded in the held set.
    #[inline]
    fn via(&self) -> Via {
        if self.stamp & STAMP_DATA != 0 {
            Via::Data
        } else {
            Via::Guard
        }
    }

    /// The mutex this guard holds.
    pub fn mutex(&self) -> &'a RawMutex {
        self.mutex
    }

    /// Whether this guard still holds its lock for this thread: made in
    /// this process (not a copy left by `fork`) and not defused by a
    /// condition wait that could not take the lock back.
    pub(crate) fn is_live(&self) -> bool {
        self.made_here()
    }

    /// Whether the guard was made in this process (not copied by `fork`)
    /// and still holds its lock (not defused).
    #[inline]
    fn made_here(&self) -> bool {
        self.stamp & (STAMP_GENERATION | STAMP_DEFUNCT) == held::generation_now() & STAMP_GENERATION
    }
}

impl std::fmt::Debug for RawMutexGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawMutexGuard")
            .field("mutex", self.mutex)
            .finish()
    }
}

impl sealed::Sealed for RawMutexGuard<'_> {}

impl RecoverableGuard for RawMutexGuard<'_> {
    fn mark_consistent(&mut self) -> Result<()> {
        // Nothing to mend is the same answer on every path.
        self.mutex.needs_mending()?;
        if !self.made_here() {
            // A copy in a forked child (the parent decides), or a guard
            // whose lock a condition wait could not take back.
            return Err(Error::NotOwner);
        }
        self.mutex.mark_consistent()
    }
}

impl Drop for RawMutexGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if !self.made_here() {
            // A copy in a forked child: the lock is the parent's. Or a
            // defused guard: the lock is not held.
            return;
        }
        if RawMutex::COUNTS_LEVELS {
            held::levels_sub();
        }
        if self.stamp & STAMP_TRACKED != 0 {
            match held::pop(self.mutex.addr(), self.via()) {
                Some(Popped::Held(0)) => {}
                // An inner level: still held. Or an orphan: a level a
                // failed condition wait released and could not take back
                // (not held; consuming it keeps a later level from being
                // given up here). Or no record left (the
                // thread's locals are torn down): which level this is cannot
                // be known, so it stays held and the thread's exit hands it
                // on as owner-died, rather than free it under an outer guard.
                Some(Popped::Held(_) | Popped::Orphan) | None => return,
            }
        }
        // An error here (`NotOwner`: the word no longer names this thread)
        // means a peer overwrote the bytes under us: the lock is not ours
        // to release any more, there is nothing left to undo, and a
        // destructor must not panic (not even in debug builds: tests forge
        // words under live guards on purpose), so it is dropped.
        let _ = self.mutex.unlock_outermost();
    }
}

/// The levels of a lock that a condition wait released, to be restored
/// when it takes the lock back (see [`RawMutex::unlock_for_wait`]).
#[derive(Debug)]
pub(crate) struct WaitLevels {
    guards: u32,
    raw: u32,
}

impl RawMutex {
    /// For a condition wait: releases the lock that `guard` holds, every
    /// level of it this thread holds (a recursive lock taken several times,
    /// by guards or by `acquire`), and returns what to restore with
    /// [`RawMutex::relock_after_wait`]. A guard of another lock, or a copy
    /// that `fork` left in this process, is [`Error::NotOwner`]; a lock
    /// still to be repaired after an owner's death is [`Error::OwnerDied`]
    /// (repair it first: waiting would make it not recoverable); a lock of
    /// which this thread holds a level through a `Value`/`Array` guard is
    /// [`Error::Deadlock`] (releasing it would let another thread write the
    /// data under that guard's `&mut T`). Nothing is released on error.
    pub(crate) fn unlock_for_wait(&self, guard: &RawMutexGuard<'_>) -> Result<WaitLevels> {
        if !std::ptr::eq(guard.mutex, self) || !guard.made_here() {
            return Err(Error::NotOwner);
        }
        if guard.stamp & STAMP_DATA != 0 || held::data_levels(self.addr()) != 0 {
            return Err(Error::Deadlock);
        }
        if self.state.load(Relaxed) & INCONSISTENT != 0 {
            return Err(Error::OwnerDied);
        }
        let levels = if guard.stamp & STAMP_TRACKED != 0 {
            // `take` also refuses a Data level (checked above already).
            let (guards, raw) = held::take(self.addr()).ok_or(Error::NotOwner)?;
            WaitLevels { guards, raw }
        } else {
            WaitLevels { guards: 0, raw: 0 }
        };
        // This thread holds it: the guard was made in this process by this
        // thread (guards are not Send) and is alive, so its level is still
        // held. (The word must name this thread too.)
        let me = owner::cached_in(self.pidns.load(Relaxed));
        self.forget_owner(me);
        match self.word.unlock(me) {
            Ok(()) => Ok(levels),
            Err(e) => {
                self.restore_levels(&levels);
                Err(e)
            }
        }
    }

    /// Takes the lock back after [`RawMutex::unlock_for_wait`] and restores
    /// the levels it released. [`Error::OwnerDied`]: taken back, but a
    /// holder died meanwhile (repair, then mark it consistent through the
    /// guard). Any other error: the lock is not held, and `guard` is
    /// defused before this returns, so that its drop does nothing. (Left
    /// armed, its drop would release the lock word whenever it names this
    /// thread: a peer can forge the word to name it, or this thread may
    /// hold the lock again under another guard.)
    /// The other levels the wait released (outer guards, `acquire()`s of a
    /// recursive lock) are recorded as orphans: each is consumed by the
    /// next guard drop or `release()` of its kind without unlocking, so
    /// none of them gives up a level this thread takes later.
    pub(crate) fn relock_after_wait(
        &self,
        guard: &mut RawMutexGuard<'_>,
        levels: WaitLevels,
    ) -> Result<()> {
        let (guards, raw) = (levels.guards, levels.raw);
        let r = self.relock(levels);
        if matches!(&r, Err(e) if !matches!(e, Error::OwnerDied)) {
            // `guard`'s own level, if recorded, is one of `guards`: it is
            // defused rather than orphaned.
            let tracked = guard.stamp & STAMP_TRACKED != 0;
            let guards = guards.saturating_sub(u32::from(tracked));
            if guards > 0 || raw > 0 {
                // If the record is gone (thread exiting), nothing will
                // consume them; nothing can take the lock here any more.
                let _ = held::orphan(self.addr(), guards, raw);
            }
            guard.defuse();
        }
        r
    }

    fn relock(&self, levels: WaitLevels) -> Result<()> {
        self.check_layout()?;
        let me = self.me();
        let got = match self.word.try_fast(me) {
            Ok(()) => {
                self.note_owner(me);
                Got::Clean
            }
            Err(cur) => self.lock_word_after(me, cur, None)?,
        };
        let got = self.after_acquired(got, None)?;
        self.restore_levels(&levels);
        match got {
            Got::Clean => Ok(()),
            Got::OwnerDied => Err(Error::OwnerDied),
        }
    }

    fn restore_levels(&self, levels: &WaitLevels) {
        if levels.guards + levels.raw > 0 {
            // If the record is gone (thread exiting), the levels are lost:
            // the lock stays held until the thread's exit hands it on.
            let _ = held::restore(self.addr(), levels.guards, levels.raw);
        }
    }
}

impl std::fmt::Debug for RawMutex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawMutex")
            .field("kind", &MutexKind::from_code(self.kind.load(Relaxed)))
            .field("state", &format_args!("{:#x}", self.state.load(Relaxed)))
            .field("word", &format_args!("{:#x}", self.word.load()))
            .field("pidns", &self.pidns.load(Relaxed))
            .field(
                "foreign",
                &format_args!("{:#x}", self.foreign.load(Relaxed)),
            )
            .finish()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::mem::MaybeUninit;

    /// A mutex on the heap: the in-place type works in any memory.
    fn boxed(kind: MutexKind) -> Box<MaybeUninit<RawMutex>> {
        let mut b = Box::new(MaybeUninit::<RawMutex>::uninit());
        // SAFETY: a fresh, aligned, exclusively owned allocation.
        unsafe { RawMutex::init(b.as_mut_ptr(), kind) }.unwrap();
        b
    }

    fn get(b: &MaybeUninit<RawMutex>) -> &RawMutex {
        // SAFETY: initialised by `boxed`.
        unsafe { b.assume_init_ref() }
    }

    /// The 32-bit word at byte `offset` of the mutex object.
    fn word(m: &RawMutex, offset: usize) -> &AtomicU32 {
        // SAFETY: in bounds and 4-aligned within the 64-byte object.
        unsafe {
            &*(m as *const RawMutex)
                .cast::<u8>()
                .add(offset)
                .cast::<AtomicU32>()
        }
    }

    /// Makes `cv.wait_until(guard)` fail to re-lock (a peer corrupts the
    /// mutex's kind during the wait), then repairs the bytes.
    fn fail_a_relock(m: &RawMutex, guard: &mut RawMutexGuard<'_>) {
        use crate::raw::RawCondvar;
        let cv = RawCondvar::new();
        let good_kind = m.kind.load(Relaxed);
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                m.kind.store(0xdead, Relaxed);
            });
            let r = cv.wait_until(guard, Some(Deadline::after(Duration::from_millis(200))));
            assert!(matches!(r, Err(Error::Corrupt(_))), "{r:?}");
        });
        m.kind.store(good_kind, Relaxed); // the peer repairs the bytes
    }

    /// Whether another thread can take `m` now.
    fn free_for_others(m: &RawMutex) -> bool {
        std::thread::scope(|s| s.spawn(|| m.try_lock().map(drop).is_ok()).join().unwrap())
    }

    /// After a condition wait whose re-lock failed, an outer guard of the
    /// same recursive lock (its level released by the wait) must not give
    /// up a level this thread takes later: dropping it while a new guard C
    /// lives leaves the lock held under C; C's drop frees it. (Review 2,
    /// finding 3.)
    #[test]
    fn an_outer_guard_after_a_failed_relock_leaves_a_later_guard_held() {
        let b = boxed(MutexKind::Recursive);
        let m = get(&b);
        let a = m.lock().unwrap();
        let mut inner = m.lock().unwrap();
        fail_a_relock(m, &mut inner);
        assert!(!m.held_by_this_thread());
        drop(inner); // defused: nothing
        let c = m.lock().unwrap(); // a fresh, real hold
        drop(a); // the outer guard's orphaned level: nothing
        assert!(m.held_by_this_thread());
        assert!(
            !free_for_others(m),
            "another thread took the lock while guard C was alive"
        );
        drop(c);
        assert!(!m.held_by_this_thread());
        assert!(free_for_others(m), "guard C's drop did not unlock");
    }

    /// The same for a level taken by `acquire()`: after the failed re-lock
    /// its `release()` succeeds without unlocking, and a later real level
    /// is not given up in its place. (Review 2, finding 3.)
    #[test]
    fn a_release_after_a_failed_relock_leaves_a_later_guard_held() {
        let b = boxed(MutexKind::Recursive);
        let m = get(&b);
        assert_eq!(m.acquire().unwrap(), Acquire::Clean);
        let mut inner = m.lock().unwrap();
        fail_a_relock(m, &mut inner);
        drop(inner);
        let c = m.lock().unwrap();
        m.release().unwrap(); // the orphaned acquire() level: nothing
        assert!(matches!(m.release(), Err(Error::NotOwner)));
        assert!(
            !free_for_others(m),
            "another thread took the lock while guard C was alive"
        );
        drop(c);
        assert!(free_for_others(m), "guard C's drop did not unlock");
    }

    #[test]
    fn zeroed_memory_is_corrupt_not_a_mutex() {
        let b = Box::new(MaybeUninit::<RawMutex>::zeroed());
        // SAFETY: RawMutex is atomics and an UnsafeCell: zero bits are valid.
        let m = unsafe { b.assume_init_ref() };
        assert!(matches!(m.check(), Err(Error::Corrupt(_))));
        assert!(matches!(
            m.lock(),
            Err(LockError::Failed(Error::Corrupt(_)))
        ));
        assert!(matches!(m.release(), Err(Error::Corrupt(_))));
    }

    #[test]
    fn lock_relock_and_release_rules() {
        let b = boxed(MutexKind::Normal);
        let m = get(&b);
        let g = m.lock().unwrap();
        assert!(matches!(m.lock(), Err(LockError::Failed(Error::Deadlock))));
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(m.try_lock().unwrap_err().is_would_block());
                assert!(matches!(m.release(), Err(Error::NotOwner)));
            });
        });
        drop(g);
        assert!(m.try_lock().is_ok());
        // Nothing to mend: the one answer, held or not.
        assert!(matches!(
            m.make_consistent(),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn recursive_counts_levels() {
        let b = boxed(MutexKind::Recursive);
        let m = get(&b);
        assert_eq!(m.acquire().unwrap(), Acquire::Clean);
        assert_eq!(m.acquire().unwrap(), Acquire::Clean);
        m.release().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| assert!(m.try_lock().unwrap_err().is_would_block()));
        });
        m.release().unwrap();
        assert!(matches!(m.release(), Err(Error::NotOwner)));
    }

    #[test]
    fn lock_words_naming_no_possible_thread_are_corrupt() {
        let b = boxed(MutexKind::Normal);
        let m = get(&b);
        // A thread id above PID_MAX_LIMIT.
        for low in [0x3fff_fff0u32, 0x0040_0000, 0x4040_0000] {
            word(m, 8).store(low, Relaxed);
            let t = std::time::Instant::now();
            let r = m.lock();
            assert!(
                matches!(r, Err(LockError::Failed(Error::Corrupt(_)))),
                "{low:#x}: {:?}",
                r.map(drop)
            );
            assert!(t.elapsed() < Duration::from_secs(5));
            assert!(m.try_lock().is_err());
        }
        // The not-recoverable word, forged: refused as such.
        word(m, 8).store(0x3fff_ffff, Relaxed);
        assert!(matches!(
            m.lock_timeout(Duration::from_secs(10)),
            Err(LockError::Failed(Error::NotRecoverable))
        ));
        assert!(m.is_not_recoverable());
    }

    /// A word whose owner lives outside the mutex's pid namespace
    /// (`FOREIGN`, bit 30) names a thread that only its own namespace can
    /// look up: without a record of that namespace, or with one naming
    /// another, it is never judged dead, however dead the same id is here;
    /// with a record naming this one it is. (Bit 30 was refused as corrupt
    /// before it meant this.)
    #[test]
    fn a_foreign_owner_is_judged_only_by_its_record() {
        let b = boxed(MutexKind::Normal);
        let m = get(&b);
        let exited = std::thread::spawn(owner::me).join().unwrap();
        word(m, 8).store(exited as u32 | 0x4000_0000, Relaxed);
        word(m, 12).store((exited >> 32) as u32, Relaxed);
        assert!(matches!(
            m.lock_timeout(lockword::LIVENESS_PERIOD * 3),
            Err(LockError::Failed(Error::Timeout))
        ));
        assert!(matches!(
            m.try_lock(),
            Err(LockError::Failed(Error::WouldBlock))
        ));
        // A record naming another namespace: still not judged here.
        let here = proc::pid_namespace();
        let foreign = exited | lockword::FOREIGN;
        m.foreign
            .store(foreign_record(here.wrapping_add(1), foreign), Relaxed);
        assert!(matches!(
            m.lock_timeout(lockword::LIVENESS_PERIOD * 3),
            Err(LockError::Failed(Error::Timeout))
        ));
        // A record naming this namespace (the owner lived here, foreign
        // to the mutex's home): judged, taken over, the record claimed.
        word(m, 8).store(foreign as u32, Relaxed);
        m.foreign.store(foreign_record(here, foreign), Relaxed);
        match m.lock_timeout(Duration::from_secs(10)) {
            Err(LockError::OwnerDied(d)) => drop(d.make_consistent().unwrap()),
            other => panic!("{:?}", other.map(drop)),
        }
        assert_eq!(m.foreign.load(Relaxed), 0, "the record was claimed");
        // The same word without the bit is the exited thread's: taken over.
        word(m, 8).store(exited as u32, Relaxed);
        word(m, 12).store((exited >> 32) as u32, Relaxed);
        assert!(matches!(
            m.lock_timeout(Duration::from_secs(10)),
            Err(LockError::OwnerDied(_))
        ));
    }

    /// A holder outside the mutex's home namespace records its namespace
    /// while it holds the lock, and clears the record before releasing.
    #[test]
    fn a_foreign_holder_keeps_its_record_while_it_holds() {
        let b = boxed(MutexKind::Normal);
        let m = get(&b);
        m.pidns
            .store(proc::pid_namespace().wrapping_add(1), Relaxed);
        let g = m.lock().unwrap();
        let w = m.word.load();
        assert_ne!(w & lockword::FOREIGN, 0);
        assert_eq!(
            m.foreign.load(Relaxed),
            foreign_record(proc::pid_namespace(), w)
        );
        drop(g);
        assert_eq!((m.word.load(), m.foreign.load(Relaxed)), (0, 0));
        // Home again: no record.
        m.pidns.store(proc::pid_namespace(), Relaxed);
        let g = m.lock().unwrap();
        assert_eq!(m.foreign.load(Relaxed), 0);
        drop(g);
    }

    /// A version-1 mutex (a pthread mutex inside) is refused by name.
    #[test]
    fn a_layout_version_1_mutex_is_refused() {
        let b = boxed(MutexKind::Normal);
        let m = get(&b);
        m.state.store(STATE_MAGIC_V1, Relaxed);
        assert!(matches!(m.check(), Err(Error::Corrupt(msg)) if msg.contains("version 1")));
    }

    /// A lock word forged to name this thread (with its own stamp, or
    /// another, or garbage in the waiter bit): refused, never trusted, never
    /// a hang; and nothing can be released through it.
    #[test]
    fn a_lock_word_forged_to_name_this_thread_is_refused_not_trusted() {
        let me = owner::me();
        for forged in [
            me,
            me | lockword::WAITERS,
            lockword::owner_word(lockword::tid_of(me), 0),
        ] {
            for kind in [MutexKind::Normal, MutexKind::Recursive] {
                let b = boxed(kind);
                let m = get(&b);
                word(m, 8).store(forged as u32, Relaxed);
                word(m, 12).store((forged >> 32) as u32, Relaxed);
                let r = m.try_lock();
                assert!(
                    matches!(r, Err(LockError::Failed(Error::Deadlock))),
                    "{kind:?}: {r:?}"
                );
                let r = m.lock_timeout(Duration::from_millis(10));
                assert!(
                    matches!(r, Err(LockError::Failed(Error::Deadlock))),
                    "{kind:?}: {r:?}"
                );
                assert!(matches!(m.acquire(), Err(Error::Deadlock)), "{kind:?}");
                assert!(matches!(m.release(), Err(Error::NotOwner)), "{kind:?}");
                assert!(
                    matches!(m.make_consistent(), Err(Error::InvalidArgument(_))),
                    "{kind:?}"
                );
                assert!(!m.held_by_this_thread());
                assert_eq!(m.word.load(), forged, "the forged word was changed");
            }
        }
    }

    /// A word naming a thread that does not exist (a holder killed before
    /// anyone looked), or one that runs with another start time (a
    /// recycled id, this thread's own included: an earlier thread with this
    /// id died holding it): the holder is dead, the lock handed over, to
    /// `try_lock` at once and to a waiting lock within a slice.
    #[test]
    fn a_word_naming_a_vanished_or_recycled_owner_is_handed_over() {
        let exited = std::thread::spawn(owner::me).join().unwrap();
        let me = owner::me();
        let recycled = lockword::owner_word(
            lockword::tid_of(me),
            lockword::stamp_of(me).wrapping_add(2).max(1),
        );
        for dead in [exited, recycled] {
            for try_only in [true, false] {
                let b = boxed(MutexKind::Normal);
                let m = get(&b);
                word(m, 8).store(dead as u32 | lockword::WAITERS as u32, Relaxed);
                word(m, 12).store((dead >> 32) as u32, Relaxed);
                let t = std::time::Instant::now();
                let r = if try_only {
                    m.try_lock()
                } else {
                    m.lock_timeout(Duration::from_secs(5))
                };
                let died = match r {
                    Err(LockError::OwnerDied(d)) => d,
                    // The exited thread's id may linger an instant.
                    Err(LockError::Failed(Error::WouldBlock)) if dead == exited => continue,
                    other => panic!("{:?}", other.map(drop)),
                };
                assert!(t.elapsed() < Duration::from_secs(5));
                drop(died.make_consistent().unwrap());
                drop(m.try_lock().unwrap());
            }
        }
    }

    /// This thread's own word (same id, same stamp) is this thread locking
    /// again, or a forged word: a deadlock, never a hand-over.
    #[test]
    fn a_word_naming_this_very_thread_is_a_deadlock() {
        let b = boxed(MutexKind::Normal);
        let m = get(&b);
        let me = owner::me();
        word(m, 8).store(me as u32, Relaxed);
        word(m, 12).store((me >> 32) as u32, Relaxed);
        assert!(matches!(
            m.try_lock(),
            Err(LockError::Failed(Error::Deadlock))
        ));
        assert_eq!(m.word.load(), me);
    }

    /// A try_lock of a lock whose holder thread has exited reports it at
    /// once, as the kernel's robust list did.
    #[test]
    fn try_lock_reports_an_exited_holder() {
        let b = boxed(MutexKind::Normal);
        let m = get(&b);
        std::thread::scope(|s| {
            s.spawn(|| std::mem::forget(m.lock().unwrap()));
        });
        let t = std::time::Instant::now();
        let died = loop {
            match m.try_lock() {
                Err(LockError::OwnerDied(d)) => break d,
                Err(LockError::Failed(Error::WouldBlock)) => {
                    // The exited thread's id may linger an instant.
                    assert!(t.elapsed() < Duration::from_secs(5));
                    std::thread::yield_now();
                }
                other => panic!("{:?}", other.map(drop)),
            }
        };
        drop(died); // unrepaired: not recoverable
        assert!(m.is_not_recoverable());
        assert!(matches!(
            m.try_lock(),
            Err(LockError::Failed(Error::NotRecoverable))
        ));
    }

    /// A forked child holds none of its parent's locks, even recursive ones
    /// the forking thread held: the held record is cleared in the child.
    #[test]
    fn a_forked_child_does_not_inherit_held_locks() {
        let lock = crate::RLock::anonymous().unwrap();
        let _g = lock.lock().unwrap();
        // SAFETY: the child runs only a trylock and `_exit`. The trylock
        // allocates (it reads `/proc` for the child's identity and to judge
        // the busy lock's holder): fine after fork in a threaded process
        // with the C libraries we support, whose malloc is made consistent
        // in the child of `fork` (glibc's and musl's atfork handling), and
        // the test takes no other lock the child could find held. The
        // parent waits for it.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = match lock.try_lock() {
                Err(LockError::Failed(Error::WouldBlock)) => 0,
                Ok(_) => 1,
                Err(_) => 2,
            };
            // SAFETY: ends the child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is writable.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "child died: {status:#x}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "1: the child took its parent's lock"
        );
    }

    /// A guard copied into a forked child (the child returns through the
    /// guard's scope) must not release or mark its parent's lock: here an
    /// owner-died guard, whose drop would make the lock not recoverable.
    #[test]
    fn a_guard_copy_dropped_in_a_forked_child_changes_nothing() {
        let lock = crate::Lock::anonymous().unwrap();
        // A thread that exits holding the lock: the kernel marks it dead.
        std::thread::scope(|s| {
            s.spawn(|| std::mem::forget(lock.lock().unwrap()));
        });
        let died = match lock.lock() {
            Err(LockError::OwnerDied(d)) => d,
            other => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
        };
        let guard = died.into_inner();
        // SAFETY: the child only drops the guard copy (no allocation) and
        // calls `_exit`; the parent waits for it.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // Neither repairing nor dropping a copy may touch the lock.
            let code = match OwnerDied::new(guard).make_consistent() {
                Err(Error::NotOwner) => 0,
                _ => 3,
            };
            // SAFETY: ends the child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is writable.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert!(
            !lock.raw().is_not_recoverable(),
            "the child's copy marked the lock"
        );
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(
                    lock.try_lock().unwrap_err().is_would_block(),
                    "the child's copy unlocked it"
                )
            });
        });
        // The parent can still repair and go on.
        let g = OwnerDied::new(guard).make_consistent().unwrap();
        drop(g);
        drop(lock.try_lock().unwrap());
    }
}
