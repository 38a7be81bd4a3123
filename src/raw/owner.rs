//! The calling thread's identity as a lock owner, and the liveness of the
//! owner a lock word names (see `raw::lockword`).
//!
//! The identity is the thread id with a stamp, the low 32 bits of the
//! thread's start time in clock ticks: a thread id recycled after its
//! owner died comes with another start time. It is learnt once per thread
//! (one read of `/proc/thread-self/stat`) and cached in a thread-local with
//! no destructor, readable even while the thread's locals are torn down.
//! A child made by `fork` forgets it (its thread has another id).
//!
//! ## Namespaces
//!
//! Start times in `/proc` count from boot as the *reader's* time namespace
//! sees it (its boot-time offset added): a holder in another time
//! namespace would seem to run with another start time, a recycled id.
//! Both sides therefore remove their own offset (`/proc/self/timens_offsets`,
//! read once per process) before recording or comparing, and a reading may
//! still differ by one tick (offsets need not be whole ticks, and the kernel
//! rounds the sum): stamps one tick apart count as the same. (A process that
//! itself called `unshare(CLONE_NEWTIME)` sees its children's offsets there,
//! not its own: it should not share locks with its old namespace.)
//!
//! Thread ids are local to a pid namespace. A mutex records the pid
//! namespace it was initialised in (its *home*), and every owner word says
//! whether its id belongs there: a locker in another namespace writes its
//! word with `FOREIGN` ([`me_in`]) and, right after taking the lock, a
//! record of its own namespace beside the word (see `raw::mutex`, "Foreign
//! owners"). A judge looks an id up only in the namespace the id belongs
//! to (the home for a plain word, the record's for a foreign one), only
//! from inside that namespace, and only through a `/proc` mounted for it
//! ([`is_dead`]): a waiter never judges a holder it cannot see. So, with
//! processes in several pid namespaces sharing one mutex (containers
//! sharing `/dev/shm`):
//!
//! | holder in          | waiter in          | mutual exclusion | holder's death reported |
//! |--------------------|--------------------|------------------|-------------------------|
//! | home               | home               | yes | yes, within a liveness period |
//! | namespace N ≠ home | N                  | yes | yes, within a liveness period (unless it died between taking the lock and writing its record: a few instructions) |
//! | any                | another one        | yes | not to this waiter (it waits or times out; a waiter in the holder's namespace recovers it) |
//!
//! A mutex of an older layout records no namespace (0): every word is
//! judged by everyone, as before. A process whose own namespace cannot be
//! learnt (no `/proc`) counts as foreign to any mutex that records one,
//! and judges nobody's record. Two foreign threads of two different
//! namespaces with the same id and the same start time (to the tick)
//! cannot be told apart: one locking while the other holds is
//! [`Error::Deadlock`](crate::Error::Deadlock) instead of a wait (never a
//! second holder).

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering::*};
use std::time::Instant;

use super::lockword::{owner_word, stamp_of, tid_of, FOREIGN, LIVENESS_PERIOD, WAITERS};
use crate::sys::maps;
use crate::sys::proc::{self, ThreadState};

thread_local! {
    static ME: Cell<u64> = const { Cell::new(0) };
    /// This process's pid namespace, learnt with `ME` (0: unknown), and
    /// forgotten with it at `fork` (a child may live in another one).
    static NS: Cell<u64> = const { Cell::new(0) };
    /// The last owner word this thread judged alive (with the pid
    /// namespace of its mutex), and when: a busy `try_lock` in a loop
    /// reads `/proc` at most once per [`LIVENESS_PERIOD`] per owner, not
    /// at every call.
    static LAST_ALIVE: Cell<Option<(u64, u64, Instant)>> = const { Cell::new(None) };
}

/// The calling thread's owner word.
#[inline]
pub(super) fn me() -> u64 {
    match ME.with(Cell::get) {
        0 => me_slow(),
        w => w,
    }
}

#[cold]
#[inline(never)]
fn me_slow() -> u64 {
    // Registers the fork handler that makes a child forget the identity
    // (before any thread caches one).
    super::held::generation();
    let stamp = proc::this_thread_start_time().map_or(0, |t| stamp(normalised(t)));
    let w = owner_word(proc::tid(), stamp);
    NS.with(|c| c.set(proc::pid_namespace()));
    ME.with(|c| c.set(w));
    w
}

/// The calling thread's owner word for a mutex whose home pid namespace is
/// `home` (0: unknown, every word is judged there): with `FOREIGN` unless
/// this process lives in `home`.
#[inline]
pub(super) fn me_in(home: u64) -> u64 {
    let w = me();
    w | foreign_bit(home)
}

/// [`cached`] for a mutex whose home pid namespace is `home` (0 if this
/// thread has no identity yet).
#[inline]
pub(super) fn cached_in(home: u64) -> u64 {
    match cached() {
        0 => 0,
        w => w | foreign_bit(home),
    }
}

/// This process's pid namespace as learnt by [`me`] (0: unknown); valid
/// once `me` has run in this thread.
#[inline]
pub(super) fn my_namespace() -> u64 {
    NS.with(Cell::get)
}

/// `FOREIGN` if this process does not live in `home` (a known namespace);
/// valid once [`me`] has run in this thread.
#[inline]
fn foreign_bit(home: u64) -> u64 {
    if home == 0 || NS.with(Cell::get) == home {
        0
    } else {
        FOREIGN
    }
}

/// The owner word cached by [`me`], 0 if this thread has not locked since
/// it started (or since `fork`).
#[inline]
pub(super) fn cached() -> u64 {
    ME.with(Cell::get)
}

/// Forgets the identity (in the child, right after `fork`).
pub(super) fn forget() {
    ME.with(|c| c.set(0));
    NS.with(|c| c.set(0));
}

/// A start time as a stamp: never 0, which means "unknown".
fn stamp(start: u64) -> u32 {
    (start as u32).max(1)
}

/// Whether two stamps name the same start time: equal, or one tick apart
/// (time-namespace offsets that are not whole ticks; see the module).
fn same_start(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d <= 1 || d == u32::MAX || (a == 1 && b == u32::MAX) || (b == 1 && a == u32::MAX)
}

/// A start time read from `/proc` (offset by this process's time
/// namespace) as ticks since the machine's boot.
fn normalised(start: u64) -> u64 {
    start.wrapping_sub(boottime_offset_ticks() as u64)
}

/// This process's boot-time offset in clock ticks, read once per process
/// (keyed by pid: a child of `fork` may live in another time namespace).
fn boottime_offset_ticks() -> i64 {
    static PID: AtomicU32 = AtomicU32::new(0);
    static TICKS: AtomicI64 = AtomicI64::new(0);
    let pid = proc::pid();
    if PID.load(Acquire) == pid {
        return TICKS.load(Relaxed);
    }
    let ticks = proc::boottime_offset_ticks();
    TICKS.store(ticks, Relaxed);
    PID.store(pid, Release);
    ticks
}

/// Whether the owner named by `word` is dead: its thread is gone or dead,
/// or runs with another start time (its id was recycled). Where the start
/// time is unknown (either side), a thread that exists counts as alive.
///
/// `pid_namespace` is the namespace the word's id belongs to (0: unknown,
/// judged anywhere), as the caller learnt it: the mutex's home for a word
/// without `FOREIGN`, the owner's own record for a foreign one. Only a
/// judge in that namespace, whose `/proc` is that namespace's, looks the
/// id up: any other owner is never judged dead (a waiter waits, may time
/// out, but never takes over; see the module, "Namespaces").
///
/// `addr` is the mutex's address here (`None`: skip this part): a holder
/// whose thread lives on but whose process no longer maps the file behind
/// the mutex's mapping (see `sys::maps`; a mutex in private memory has
/// none) has called `execve`
/// (or unmapped the lock it held), and is dead as POSIX robust mutexes
/// count it. Where its maps cannot be read (another user's process,
/// `hidepid`), that part of the judgment is skipped.
///
/// A word judged alive is not judged again by this thread for
/// [`LIVENESS_PERIOD`] (the waiters' slices are that long anyway).
pub(super) fn is_dead(word: u64, pid_namespace: u64, addr: Option<usize>) -> bool {
    let word = word & !WAITERS;
    let now = Instant::now();
    let recent = LAST_ALIVE
        .try_with(Cell::get)
        .ok()
        .flatten()
        .is_some_and(|(w, ns, at)| {
            (w, ns) == (word, pid_namespace) && now.saturating_duration_since(at) < LIVENESS_PERIOD
        });
    if recent {
        return false;
    }
    let here = pid_namespace == 0 || pid_namespace == proc::pid_namespace();
    let dead = here && proc::procfs_is_ours() && judge(word, addr);
    if !dead {
        let _ = LAST_ALIVE.try_with(|c| c.set(Some((word, pid_namespace, now))));
    }
    dead
}

/// The `/proc` judgment behind [`is_dead`], uncached.
fn judge(word: u64, addr: Option<usize>) -> bool {
    let recycled = match proc::thread_state(tid_of(word)) {
        ThreadState::Gone | ThreadState::Dead => return true,
        ThreadState::Running(Some(start)) => {
            stamp_of(word) != 0 && !same_start(stamp(normalised(start)), stamp_of(word))
        }
        ThreadState::Running(None) => false,
    };
    recycled
        || addr
            .and_then(maps::file_at)
            .is_some_and(|f| maps::maps_file(tid_of(word), f) == Some(false))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The pid namespace the judge runs in (what a mutex made here records).
    fn here() -> u64 {
        proc::pid_namespace()
    }

    #[test]
    fn this_thread_is_alive_and_other_incarnations_are_not() {
        let me = me();
        assert_eq!(tid_of(me), proc::tid());
        assert_ne!(stamp_of(me), 0, "no start time from /proc");
        assert!(!is_dead(me, here(), None));
        // The same id with another start time (two ticks or more apart): a
        // recycled id.
        assert!(is_dead(
            owner_word(tid_of(me), stamp_of(me).wrapping_add(2).max(1)),
            here(),
            None
        ));
        // One tick apart: the same start time, read across time namespaces.
        assert!(!is_dead(
            owner_word(tid_of(me), stamp_of(me).wrapping_add(1).max(1)),
            here(),
            None
        ));
        // Unknown stamp: the thread exists.
        assert!(!is_dead(owner_word(tid_of(me), 0), here(), None));
    }

    #[test]
    fn stamps_one_tick_apart_are_the_same_start() {
        assert!(same_start(7, 7) && same_start(7, 8) && same_start(8, 7));
        assert!(!same_start(7, 9) && !same_start(9, 7));
        assert!(same_start(u32::MAX, 1) && same_start(1, u32::MAX));
        assert!(same_start(u32::MAX, u32::MAX - 1));
    }

    #[test]
    fn an_exited_thread_is_dead() {
        let w = std::thread::spawn(me).join().unwrap();
        let t = std::time::Instant::now();
        while !is_dead(w, here(), None) {
            assert!(t.elapsed() < std::time::Duration::from_secs(5));
            std::thread::yield_now();
        }
    }

    /// A judge in another pid namespace than the mutex's never finds the
    /// owner dead, even one that is.
    #[test]
    fn a_judge_in_another_pid_namespace_finds_nobody_dead() {
        let w = std::thread::spawn(me).join().unwrap();
        let t = std::time::Instant::now();
        while !judge(w, None) {
            assert!(t.elapsed() < std::time::Duration::from_secs(5));
            std::thread::yield_now();
        }
        assert!(!is_dead(w, here().wrapping_add(1), None));
        assert!(is_dead(w, here(), None));
        // Unknown namespace (a mutex of an older layout): judged here.
        assert!(is_dead(w, 0, None));
    }

    /// A thread writes `FOREIGN` into its word exactly for mutexes whose
    /// home namespace is known and not its own.
    #[test]
    fn a_locker_outside_the_home_namespace_marks_its_word_foreign() {
        let me = me();
        assert_eq!(me_in(here()), me);
        assert_eq!(me_in(0), me);
        assert_eq!(me_in(here().wrapping_add(1)), me | FOREIGN);
        assert_eq!(cached_in(here().wrapping_add(1)), me | FOREIGN);
        assert_eq!(cached_in(here()), me);
    }

    /// A word judged alive is trusted for a liveness period: a thread that
    /// exits right after is found dead only once that has passed.
    #[test]
    fn a_word_judged_alive_is_not_judged_again_within_a_period() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            tx.send(me()).unwrap();
            go_rx.recv().unwrap();
        });
        let w = rx.recv().unwrap();
        let t0 = Instant::now();
        assert!(!is_dead(w, here(), None));
        go_tx.send(()).unwrap();
        h.join().unwrap();
        while !judge(w, None) {
            assert!(t0.elapsed() < std::time::Duration::from_secs(5));
            std::thread::yield_now();
        }
        if t0.elapsed() < LIVENESS_PERIOD / 2 {
            // Dead by `/proc`, alive by the cache (not read again).
            assert!(!is_dead(w, here(), None), "judged again within the period");
        }
        while !is_dead(w, here(), None) {
            assert!(t0.elapsed() < std::time::Duration::from_secs(5));
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(t0.elapsed() >= LIVENESS_PERIOD);
    }
}
