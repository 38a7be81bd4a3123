//! The lock word of [`RawMutex`](super::RawMutex): a futex mutex whose word
//! names its owner well enough to tell a dead owner from a live one.
//!
//! ## The word (64 bits)
//!
//! | bits   | meaning                                                       |
//! |--------|---------------------------------------------------------------|
//! | 0..30  | owner's thread id; 0: free; all ones: not recoverable         |
//! | 30     | `FOREIGN`: the id is local to a pid namespace other than the mutex's |
//! | 31     | `WAITERS`: someone may sleep on the futex                     |
//! | 32..64 | owner's stamp: its start time in clock ticks (low 32 bits), 0 if unknown |
//!
//! The futex is the low half (the kernel compares and keys those 4 bytes).
//! The owner's thread id and stamp are written by the one CAS that takes
//! the lock, so there is no instant at which the lock is held but its owner
//! unrecorded: a holder that dies at any point leaves a word naming it.
//!
//! ## Fast paths
//!
//! Lock: one CAS `0 → me` (Acquire). Unlock: one CAS `me → 0` (Release);
//! only when `WAITERS` was set does the unlocker swap and `FUTEX_WAKE`.
//! Nothing else touches shared memory, and owner death costs nothing here.
//!
//! ## Owner death
//!
//! Detected only by waiters, on the slow path: a waiter spins briefly,
//! sets `WAITERS` and sleeps on the futex in slices of at most
//! [`LIVENESS_PERIOD`]; at the end of each slice (and once for a `try_lock`
//! that finds the lock busy) it asks whether the owner named by the word
//! is dead. A slice ends at a fixed time: wake-ups and signals that
//! interrupt the sleep do not start a new one, or a signal every few
//! milliseconds would postpone the question for ever. The owner is dead if: its thread is gone, dead, or runs with another start time (its
//! id recycled). A dead owner's word is taken over with a CAS from exactly
//! the word that was judged, so two waiters cannot both take it, and a
//! word that changed meanwhile is judged again. The taker keeps `WAITERS`
//! (others may sleep) and gets `OwnerDied`.
//!
//! Thread ids mean something only in one pid namespace: a locker whose
//! namespace is not the one the mutex records writes its word with
//! `FOREIGN`, and a foreign word is never judged (see `raw::owner`,
//! "Namespaces", for which cases recover).
//!
//! A thread that exits holding the lock (its process lives on) is caught
//! the same way: its id disappears. This replaces the kernel's robust list,
//! which glibc owns per thread (registering another list would silently
//! break every pthread robust mutex of the thread; PITFALLS.md, "Robust
//! locks"). An owner that `execve`s keeps its thread id and start time
//! (and when a thread other than the main one calls `execve`, the kernel
//! gives it the main thread's id *and start time*), so id and stamp alone
//! would keep its lock held for as long as the new program runs. POSIX
//! robust mutexes count `execve` as the owner's death, and so does the
//! judge: a holder whose process no longer maps the file behind the
//! mutex's mapping (a new image maps nothing of the old) is dead (see
//! `raw::owner::is_dead`). What that cannot see: a new image that maps the
//! same segment again before anyone judges (a program re-executing itself
//! and reopening the lock), and a holder whose `/proc/PID/maps` the judge
//! may not read (another user's process): their locks stay held.
//! Detection takes up to one [`LIVENESS_PERIOD`] after death instead of an
//! immediate wake-up.
//!
//! ## Trust
//!
//! The word is read from shared memory and judged, never trusted: a
//! thread id above any the kernel hands out is [`Error::Corrupt`];
//! a word naming the calling thread is [`Error::Deadlock`] (whether it was
//! forged or this thread locks again: whether it holds the lock is decided
//! by its own records, see `raw::held`), unless its stamp differs from this
//! thread's (both known): an earlier thread with this id died holding it,
//! and the word is judged like any other; a word naming a thread that does
//! not exist is a dead owner. Unlocking a word that does not name the
//! caller changes nothing ([`Error::NotOwner`]). Every wait is bounded by
//! the slice, so a deadline always elapses; a free word that is not zero
//! (which no unlock writes) is retried after a spin, then a sleep, and
//! never past the deadline.

use std::time::Duration;

use super::backoff::Backoff;
use super::sync::{futex_wait_low, futex_wake_low, AtomicU64, Ordering::*};
use crate::sys::clock::Deadline;
use crate::{Error, Result};

/// Someone may sleep on the futex: an unlock must wake one.
pub(crate) const WAITERS: u64 = 1 << 31;
/// The thread-id field.
pub(crate) const TID_MASK: u64 = (1 << 30) - 1;
/// The owner's thread id is local to a pid namespace other than the one
/// the mutex records (see `raw::owner`): no judge can look it up, so the
/// owner is never judged dead. (Builds before this bit read it as
/// [`Error::Corrupt`], never as a dead owner.)
pub(crate) const FOREIGN: u64 = 1 << 30;
/// The word of a lock whose owner died and whose next holder released it
/// unrepaired: nobody can take it again.
pub(crate) const NOT_RECOVERABLE: u64 = TID_MASK;
/// Linux hands out thread ids below `PID_MAX_LIMIT` (2^22).
const TID_LIMIT: u64 = 1 << 22;

/// How often a sleeping locker wakes to check that the owner lives.
pub(crate) const LIVENESS_PERIOD: Duration = Duration::from_millis(100);

/// The word that names a thread as owner.
#[inline]
pub(crate) const fn owner_word(tid: u32, stamp: u32) -> u64 {
    ((stamp as u64) << 32) | (tid as u64 & TID_MASK)
}

/// The thread id a word names (0: none).
#[inline]
pub(crate) const fn tid_of(word: u64) -> u32 {
    (word & TID_MASK) as u32
}

/// The stamp a word records.
#[inline]
pub(crate) const fn stamp_of(word: u64) -> u32 {
    (word >> 32) as u32
}

/// How a lock was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Got {
    /// Free, or handed over by an unlock.
    Clean,
    /// Taken over from a dead owner.
    OwnerDied,
}

/// What the slow path needs from outside the word.
pub(crate) trait Judge {
    /// Whether the owner named by `word` (a thread id and stamp, both read
    /// from shared memory) is dead.
    fn is_dead(&self, word: u64) -> bool;
    /// Re-validates the object around the word (between sleeps: a peer may
    /// have overwritten it).
    fn check(&self) -> Result<()>;
    /// Before taking `word` over from its dead owner: whether this judge
    /// may (the mutex may let only one claimant try; see `raw::mutex`,
    /// "Foreign owners").
    fn claim(&self, _word: u64) -> bool {
        true
    }
    /// The takeover CAS of a claimed `word` failed: gives the claim back.
    fn unclaim(&self, _word: u64) {}
}

/// The lock word.
#[repr(transparent)]
pub(crate) struct LockWord {
    word: AtomicU64,
}

impl LockWord {
    /// A free word (for models and tests; in place, [`LockWord::reset`]).
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        LockWord {
            word: AtomicU64::new(0),
        }
    }

    /// Makes the word free (initialisation in place).
    pub(crate) fn reset(&self) {
        self.word.store(0, Relaxed);
    }

    /// A snapshot of the word.
    #[inline]
    pub(crate) fn load(&self) -> u64 {
        self.word.load(Relaxed)
    }

    /// One attempt to take a free lock as `me`; `Err(word)` with the word
    /// found otherwise.
    #[inline]
    pub(crate) fn try_fast(&self, me: u64) -> std::result::Result<(), u64> {
        self.word
            .compare_exchange(0, me, Acquire, Relaxed)
            .map(drop)
    }

    /// Takes the lock as `me` (an [`owner_word`], not zero), after a first
    /// attempt found `cur`: spins, then sleeps in slices checking the
    /// owner's liveness, until `deadline` (`None`: no limit;
    /// [`Deadline::PASSED`]: one look, with one liveness check).
    #[cold]
    pub(crate) fn lock_slow(
        &self,
        me: u64,
        mut cur: u64,
        deadline: Option<Deadline>,
        judge: &dyn Judge,
    ) -> Result<Got> {
        let mut backoff = Backoff::new();
        // Set once this locker has slept: other sleepers may remain, so it
        // takes the lock with `WAITERS` and its unlock wakes one of them.
        let mut waiters = 0;
        // The end of the current liveness slice: fixed when the first sleep
        // of the slice starts, not renewed by a wake-up or a signal (a
        // signal every few milliseconds must not postpone the judgment).
        let mut slice_end: Option<Deadline> = None;
        loop {
            if tid_of(cur) == 0 {
                match self
                    .word
                    .compare_exchange(cur, me | waiters, Acquire, Relaxed)
                {
                    Ok(_) => return Ok(Got::Clean),
                    Err(now) => {
                        cur = now;
                        if tid_of(cur) == 0 {
                            // Free but not zero (unlocks write zero): a peer
                            // scribbles on the word. Bounded like any wait.
                            self.pause_on_garbage(cur, deadline, &mut backoff)?;
                        }
                        continue;
                    }
                }
            }
            Self::classify(cur, me)?;
            if deadline.is_some_and(Deadline::has_passed) {
                // A try, or a wait that has run out: one last look at the
                // owner, so that a dead one is reported even then.
                return match self.take_if_dead(me | waiters, cur, judge)? {
                    Some(got) => Ok(got),
                    None => {
                        cur = self.word.load(Relaxed);
                        if tid_of(cur) == 0 {
                            continue;
                        }
                        if waiters != 0 {
                            // This locker slept, so the wake-up it got may
                            // have been meant for another sleeper (and the
                            // lock then re-taken by a fast-path locker):
                            // pass one on rather than strand that sleeper.
                            futex_wake_low(&self.word, 1);
                        }
                        Err(Error::Timeout)
                    }
                };
            }
            if !backoff.is_completed() {
                backoff.spin();
                cur = self.word.load(Relaxed);
                continue;
            }
            if cur & WAITERS == 0 {
                if let Err(now) = self
                    .word
                    .compare_exchange(cur, cur | WAITERS, Relaxed, Relaxed)
                {
                    cur = now;
                    continue;
                }
                cur |= WAITERS;
            }
            waiters = WAITERS;
            let slice = *slice_end.get_or_insert_with(|| Deadline::after(LIVENESS_PERIOD));
            let until = deadline.map_or(slice, |d| d.min(slice));
            match futex_wait_low(&self.word, cur as u32, Some(until)) {
                // Woken, interrupted, or out of time: look again below.
                Ok(()) | Err(Error::Timeout) => {}
                Err(e) => return Err(e),
            }
            if slice.has_passed() {
                slice_end = None;
                judge.check()?;
                if let Some(got) = self.take_if_dead(me | waiters, cur, judge)? {
                    return Ok(got);
                }
            }
            cur = self.word.load(Relaxed);
        }
    }

    /// The word was found free but not zero, which no unlock writes: spins
    /// briefly, then sleeps a slice (or to the deadline) before the next
    /// try, so that a peer flipping the word's bits can make a locker wait
    /// but neither spin for ever nor outlive its deadline.
    #[cold]
    fn pause_on_garbage(
        &self,
        cur: u64,
        deadline: Option<Deadline>,
        backoff: &mut Backoff,
    ) -> Result<()> {
        if deadline.is_some_and(Deadline::has_passed) {
            return Err(Error::Timeout);
        }
        if !backoff.is_completed() {
            backoff.spin();
            return Ok(());
        }
        let slice = Deadline::after(LIVENESS_PERIOD);
        let until = deadline.map_or(slice, |d| d.min(slice));
        match futex_wait_low(&self.word, cur as u32, Some(until)) {
            Ok(()) | Err(Error::Timeout) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Refuses a held word that is garbage, names the caller, or says the
    /// lock is not recoverable.
    fn classify(cur: u64, me: u64) -> Result<()> {
        let tid = cur & TID_MASK;
        if tid == NOT_RECOVERABLE {
            return Err(Error::NotRecoverable);
        }
        if tid >= TID_LIMIT {
            return Err(Error::Corrupt("mutex lock word names no possible thread"));
        }
        // The same id in the same kind of namespace (an id of the mutex's
        // namespace never names a foreign thread).
        if cur & (TID_MASK | FOREIGN) == me & (TID_MASK | FOREIGN) {
            let (was, is) = (stamp_of(cur), stamp_of(me));
            if was != 0 && is != 0 && was != is {
                // This thread's id with another start time: an earlier
                // thread that had the id died holding the lock. A dead
                // owner's word, left to the judge (which sees the same).
                return Ok(());
            }
            // This thread, by the word: locking again, or a forged word.
            return Err(Error::Deadlock);
        }
        Ok(())
    }

    /// If the owner named by `cur` is dead, takes the lock over from
    /// exactly that word.
    fn take_if_dead(&self, me: u64, cur: u64, judge: &dyn Judge) -> Result<Option<Got>> {
        if tid_of(cur) == 0 || !judge.is_dead(cur) || !judge.claim(cur) {
            return Ok(None);
        }
        match self
            .word
            .compare_exchange(cur, me | (cur & WAITERS), Acquire, Relaxed)
        {
            Ok(_) => Ok(Some(Got::OwnerDied)),
            // Changed since it was judged (unlocked, taken over by another
            // waiter, or a new owner): the caller looks again.
            Err(_) => {
                judge.unclaim(cur);
                Ok(None)
            }
        }
    }

    /// Releases the lock held as `me`: [`Error::NotOwner`] (and nothing
    /// changed) if the word does not name `me`.
    #[inline]
    pub(crate) fn unlock(&self, me: u64) -> Result<()> {
        match self.word.compare_exchange(me, 0, Release, Relaxed) {
            Ok(_) => Ok(()),
            Err(cur) => self.unlock_slow(me, cur, 0),
        }
    }

    /// Releases the lock held as `me` for good: the word becomes
    /// [`NOT_RECOVERABLE`] and every sleeper wakes to find it so.
    pub(crate) fn unlock_not_recoverable(&self, me: u64) -> Result<()> {
        match self
            .word
            .compare_exchange(me, NOT_RECOVERABLE, Release, Relaxed)
        {
            Ok(_) => Ok(()),
            Err(cur) => self.unlock_slow(me, cur, NOT_RECOVERABLE),
        }
    }

    #[cold]
    fn unlock_slow(&self, me: u64, mut cur: u64, to: u64) -> Result<()> {
        loop {
            if me == 0 || cur & !WAITERS != me {
                return Err(Error::NotOwner);
            }
            match self.word.compare_exchange(cur, to, Release, Relaxed) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur & WAITERS != 0 {
            crate::fault::fault_point!("mutex.unlock.released_before_wake");
            let n = if to == NOT_RECOVERABLE { u32::MAX } else { 1 };
            futex_wake_low(&self.word, n);
        }
        Ok(())
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use loom::sync::Arc;

    /// Thread ids of the model; `DEAD` is an owner that died holding.
    const A: u64 = owner_word(11, 1);
    const B: u64 = owner_word(12, 1);
    const C: u64 = owner_word(13, 1);
    const DEAD: u64 = owner_word(99, 7);

    struct Model;

    impl Judge for Model {
        fn is_dead(&self, word: u64) -> bool {
            tid_of(word) == tid_of(DEAD)
        }
        fn check(&self) -> Result<()> {
            Ok(())
        }
    }

    fn lock(w: &LockWord, me: u64, deadline: Option<Deadline>) -> Result<Got> {
        match w.try_fast(me) {
            Ok(()) => Ok(Got::Clean),
            Err(cur) => w.lock_slow(me, cur, deadline, &Model),
        }
    }

    /// Two lockers (three take too long to explore): mutual exclusion (a plain counter updated under the
    /// lock in two steps never loses an increment) and no lost wake-up (a
    /// sleeper whose wake is lost deadlocks the model).
    #[test]
    fn loom_lockword_excludes_and_wakes() {
        loom::model(|| {
            let w = Arc::new(LockWord::new());
            let n = Arc::new(AtomicU32::new(0));
            let hs: Vec<_> = [A, B]
                .into_iter()
                .map(|me| {
                    let (w, n) = (w.clone(), n.clone());
                    loom::thread::spawn(move || {
                        assert_eq!(lock(&w, me, None).unwrap(), Got::Clean);
                        let v = n.load(SeqCst);
                        n.store(v + 1, SeqCst);
                        w.unlock(me).unwrap();
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(n.load(SeqCst), 2);
            assert_eq!(w.load(), 0);
        });
    }

    /// Three lockers, so that two may sleep at once: one that takes the lock
    /// after sleeping must keep `WAITERS` for the other, or the other's
    /// wake-up is lost. Bounded preemptions keep the exploration short.
    #[test]
    fn loom_lockword_three_lockers_lose_no_wake_up() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(2);
        b.check(|| {
            let w = Arc::new(LockWord::new());
            let hs: Vec<_> = [A, B, C]
                .into_iter()
                .map(|me| {
                    let w = w.clone();
                    loom::thread::spawn(move || {
                        assert_eq!(lock(&w, me, None).unwrap(), Got::Clean);
                        w.unlock(me).unwrap();
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(w.load(), 0);
        });
    }

    /// An owner died holding the lock while A sleeps on it (untimed: only
    /// an unlock can wake A). B's `try_lock` judges the owner dead, takes
    /// the lock over (keeping `WAITERS`) and unlocks: A must wake and get it.
    #[test]
    fn loom_lockword_takeover_of_a_dead_owner_wakes_sleepers() {
        loom::model(|| {
            let w = Arc::new(LockWord::new());
            w.try_fast(DEAD).unwrap();
            let wa = w.clone();
            let a = loom::thread::spawn(move || {
                let got = lock(&wa, A, None).unwrap();
                wa.unlock(A).unwrap();
                got
            });
            let got_b = loop {
                match lock(&w, B, Some(Deadline::PASSED)) {
                    Ok(got) => break got,
                    Err(Error::Timeout) => loom::thread::yield_now(),
                    Err(e) => panic!("{e:?}"),
                }
            };
            w.unlock(B).unwrap();
            let got_a = a.join().unwrap();
            // Exactly one of them took the dead owner's lock over.
            assert!(
                (got_a == Got::OwnerDied) != (got_b == Got::OwnerDied),
                "{got_a:?} {got_b:?}"
            );
            assert_eq!(w.load(), 0);
        });
    }

    /// Releasing for good wakes every sleeper, and each sees not
    /// recoverable. (Three threads: bounded preemptions, as above.)
    #[test]
    fn loom_lockword_not_recoverable_wakes_all() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(2);
        b.check(|| {
            let w = Arc::new(LockWord::new());
            w.try_fast(A).unwrap();
            let hs: Vec<_> = [B, C]
                .into_iter()
                .map(|me| {
                    let w = w.clone();
                    loom::thread::spawn(move || lock(&w, me, None))
                })
                .collect();
            w.unlock_not_recoverable(A).unwrap();
            for h in hs {
                assert!(matches!(h.join().unwrap(), Err(Error::NotRecoverable)));
            }
        });
    }

    /// A timed waiter that is woken, finds the lock re-taken by a fast-path
    /// locker and gives up at its deadline must pass on the wake-up it may
    /// have consumed: otherwise the other (untimed) sleeper is stranded, a
    /// deadlock here since model slices never end. (Found in review.)
    #[test]
    fn loom_lockword_timed_waiter_giving_up_passes_the_wake_on() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(2);
        b.check(|| {
            let w = Arc::new(LockWord::new());
            w.try_fast(A).unwrap();
            let (w1, w2) = (w.clone(), w.clone());
            let untimed = loom::thread::spawn(move || {
                lock(&w1, B, None).unwrap();
                w1.unlock(B).unwrap();
            });
            let timed = loom::thread::spawn(move || {
                let d = Deadline::after(std::time::Duration::from_millis(1));
                if lock(&w2, C, Some(d)).is_ok() {
                    w2.unlock(C).unwrap();
                }
            });
            let _ = w.load();
            let _ = w.load();
            // Past the timed waiter's deadline, then a release and a
            // fast-path re-lock that can race with the woken sleeper.
            std::thread::sleep(std::time::Duration::from_millis(2));
            w.unlock(A).unwrap();
            if lock(&w, A, None).is_ok() {
                w.unlock(A).unwrap();
            }
            timed.join().unwrap();
            untimed.join().unwrap();
            assert_eq!(w.load(), 0);
        });
    }
}
