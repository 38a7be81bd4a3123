//! [`RawCondvar`]: a condition variable in place, for a [`RawMutex`].
//!
//! Not a pthread condition variable: a process-shared one can hang a later
//! broadcast if a waiter is killed inside it (PITFALLS.md, "Robust locks",
//! glibc bug 21422). Instead every waiter takes a slot in a small table
//! that lives beside the mutex, and sleeps on its own slot's futex word.
//!
//! ## Layout (16 + 64 × 24 bytes, align 8)
//!
//! | offset | field         | meaning                                          |
//! |-------:|---------------|--------------------------------------------------|
//! |      0 | `magic`       | `CONDVAR_MAGIC`                                  |
//! |      4 | `nslots`      | [`CONDVAR_SLOTS`]                                |
//! |      8 | `next_ticket` | ticket of the next waiter (wrapping): FIFO order |
//! |     12 | `occupied`    | slots not `FREE` (a hint: 0 lets notify skip the scan) |
//! |     16 | `slots`       | per waiter: `state` (futex word), `ticket`, `pid`, `pidns` (the waiter's pid namespace, inode number; 0: unknown, as written by builds before it), `start` (the waiter's process start time) |
//!
//! Slot `state`: `FREE` 0, `WAITING` 1, `SIGNALLED` 2.
//!
//! ## Protocol
//!
//! Everything but the sleeping happens under the mutex, which every caller
//! holds (the handle's API takes the guard, so it cannot be otherwise):
//!
//! * wait: claim a `FREE` slot (ticket, pid, start time; `state = WAITING`,
//!   Release), release the mutex (every level of a recursive one), sleep
//!   with `FUTEX_WAIT(state, WAITING)` until `state != WAITING` or the
//!   deadline, take the mutex back (restoring its levels), read `state`
//!   (`SIGNALLED`: notified, even if the deadline passed meanwhile) and free
//!   the slot.
//! * notify(n): up to `n` times, pick the `WAITING` slot with the oldest
//!   ticket, store `SIGNALLED` (Release; SYNC POINT with the waiter's
//!   Acquire load) and `FUTEX_WAKE(state, 1)`. If that woke nobody, the
//!   waiter is either about to look at `state` (it will see `SIGNALLED`) or
//!   dead: its pid and start time tell which (only to a notifier in the
//!   waiter's pid namespace: elsewhere the pid names another process, or
//!   none, and the waiter counts as alive). A dead waiter's slot is freed
//!   and does not count, so a dead waiter never absorbs a notify, and a
//!   notify with nobody waiting changes nothing (no credit is left).
//!
//! Exactly `min(n, live waiters)` waiters return "notified" from one
//! `notify(n)`. Slots of waiters that died are also reclaimed when a waiter
//! finds the table full. At most [`CONDVAR_SLOTS`] waiters at a time: one
//! more gets [`Error::InvalidArgument`].

use std::time::Duration;

use super::mutex::{RawMutex, RawMutexGuard};
use super::park::{park, slice};
use super::sync::{AtomicU32, AtomicU64, Ordering::*};
use crate::sys::clock::Deadline;
use crate::{Error, Result};

const CONDVAR_MAGIC: u32 = 0x434f_4e44; // "COND"
const FREE: u32 = 0;
const WAITING: u32 = 1;
const SIGNALLED: u32 = 2;

/// How many waiters a [`RawCondvar`] can hold at a time.
pub const CONDVAR_SLOTS: usize = 64;

#[repr(C)]
#[derive(Debug)]
struct Slot {
    state: AtomicU32,
    ticket: AtomicU32,
    pid: AtomicU32,
    /// Where `pid` means something (see `alive`).
    pidns: AtomicU32,
    start: AtomicU64,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            state: AtomicU32::new(FREE),
            ticket: AtomicU32::new(0),
            pid: AtomicU32::new(0),
            pidns: AtomicU32::new(0),
            start: AtomicU64::new(0),
        }
    }
}

/// A condition variable in shared memory, used with a [`RawMutex`]:
/// Python's `Condition`.
///
/// Every call on one `RawCondvar` must be made holding the same mutex (the
/// guard passed in); the slot table is protected by it. The
/// [`Condition`](crate::Condition) handle checks this; at this level,
/// breaking the rule gives wrong wake counts, never undefined behaviour.
///
/// Timeouts: `Duration::ZERO` releases and retakes the lock once and
/// returns whether a notify came in between; a timed wait returns at about
/// its deadline, never before.
#[repr(C)]
#[derive(Debug)]
pub struct RawCondvar {
    magic: AtomicU32,
    nslots: AtomicU32,
    next_ticket: AtomicU32,
    occupied: AtomicU32,
    slots: [Slot; CONDVAR_SLOTS],
}

#[cfg(not(loom))]
static_assertions::const_assert_eq!(std::mem::size_of::<RawCondvar>(), 16 + 24 * CONDVAR_SLOTS);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(std::mem::align_of::<RawCondvar>(), 8);
#[cfg(not(loom))]
static_assertions::const_assert_eq!(std::mem::offset_of!(RawCondvar, slots), 16);

impl Default for RawCondvar {
    fn default() -> Self {
        Self::new()
    }
}

impl RawCondvar {
    /// Bytes the object spans.
    pub const SIZE: usize = 16 + 24 * CONDVAR_SLOTS;
    /// Alignment the object needs.
    pub const ALIGN: usize = 8;

    /// A condition variable on the heap (tests, models).
    pub fn new() -> RawCondvar {
        RawCondvar {
            magic: AtomicU32::new(CONDVAR_MAGIC),
            nslots: AtomicU32::new(CONDVAR_SLOTS as u32),
            next_ticket: AtomicU32::new(0),
            occupied: AtomicU32::new(0),
            slots: std::array::from_fn(|_| Slot::new()),
        }
    }

    /// Initialises one in place.
    ///
    /// # Safety
    /// `this` points to [`RawCondvar::SIZE`] writable bytes aligned to
    /// [`RawCondvar::ALIGN`], which nobody else touches until this returns,
    /// and which stay mapped while in use.
    pub unsafe fn init(this: *mut RawCondvar) {
        debug_assert!(
            this as usize % Self::ALIGN == 0,
            "RawCondvar::init: misaligned"
        );
        // SAFETY: the caller grants exclusive access to SIZE aligned bytes.
        unsafe { this.write(RawCondvar::new()) }
    }

    /// Validates the object's header and slot states.
    pub fn check(&self) -> Result<()> {
        self.check_header()?;
        if self.slots.iter().any(|s| s.state.load(Relaxed) > SIGNALLED) {
            return Err(Error::Corrupt("condition slot state"));
        }
        Ok(())
    }

    #[inline]
    fn check_header(&self) -> Result<()> {
        if self.magic.load(Acquire) != CONDVAR_MAGIC {
            return Err(Error::Corrupt("condition not initialised"));
        }
        if self.nslots.load(Relaxed) != CONDVAR_SLOTS as u32 {
            return Err(Error::Corrupt("condition slot count"));
        }
        Ok(())
    }

    /// How many waiters are asleep (or about to be) and not yet notified:
    /// a snapshot, for diagnosis and tests.
    pub fn n_waiting(&self) -> u32 {
        self.slots
            .iter()
            .filter(|s| s.state.load(Acquire) == WAITING)
            .count() as u32
    }

    /// Releases the lock `guard` holds (all levels of it, for a recursive
    /// lock), sleeps until notified, and takes it back.
    ///
    /// [`Error::Deadlock`], with nothing released, while this thread holds
    /// a level of the lock through a `Value`/`Array` guard (waiting would
    /// let another thread write the data under that guard's `&mut T`).
    /// If taking the lock back fails with anything but
    /// [`Error::OwnerDied`], the lock is not held and `guard` is defused:
    /// dropping it does nothing, and using it again is [`Error::NotOwner`].
    pub fn wait(&self, guard: &mut RawMutexGuard<'_>) -> Result<()> {
        self.wait_until(guard, None).map(|_| ())
    }

    /// [`RawCondvar::wait`] for at most `timeout`: `Ok(false)` if it timed
    /// out (not before `timeout`), `Ok(true)` if notified.
    pub fn wait_timeout(&self, guard: &mut RawMutexGuard<'_>, timeout: Duration) -> Result<bool> {
        self.wait_until(guard, Some(Deadline::after(timeout)))
    }

    /// The wait. Errors: [`Error::NotOwner`] (the guard is a copy left by
    /// `fork`, or defused), [`Error::OwnerDied`] (before: the lock must be
    /// repaired first, nothing was released; after: the lock was taken back
    /// from a dead holder, repair and mark it consistent through the
    /// guard), [`Error::Deadlock`] (a `Value`/`Array` guard of this thread
    /// holds a level of the lock; nothing was released),
    /// [`Error::InvalidArgument`] (the table is full), [`Error::Corrupt`].
    /// After a failed re-lock (any error but `OwnerDied` once the lock was
    /// released) the guard is defused: the lock is not held.
    pub(crate) fn wait_until(
        &self,
        guard: &mut RawMutexGuard<'_>,
        deadline: Option<Deadline>,
    ) -> Result<bool> {
        self.check()?;
        let mutex: &RawMutex = guard.mutex();
        let claim = self.enqueue()?;
        let levels = match mutex.unlock_for_wait(guard) {
            Ok(l) => l,
            Err(e) => {
                let _ = self.dequeue(claim);
                return Err(e);
            }
        };
        self.sleep(claim, deadline);
        let relocked = mutex.relock_after_wait(guard, levels);
        // Lock held again, or not after a failed re-lock: `dequeue` frees
        // the slot by CAS, safe either way against a notifier's CAS.
        let notified = self.dequeue(claim);
        relocked?;
        notified
    }

    /// Claims a slot for the calling waiter (lock held).
    pub(crate) fn enqueue(&self) -> Result<Claim> {
        for round in 0..2 {
            for (i, s) in self.slots.iter().enumerate() {
                if s.state.load(Acquire) == FREE {
                    let (pid, start) = me();
                    let ticket = self.next_ticket.fetch_add(1, Relaxed);
                    s.ticket.store(ticket, Relaxed);
                    s.pid.store(pid, Relaxed);
                    s.pidns.store(my_pid_namespace(), Relaxed);
                    s.start.store(start, Relaxed);
                    // Counted first: a process dying in between leaves
                    // `occupied` too high (a needless scan), never too low.
                    self.occupied.fetch_add(1, Relaxed);
                    s.state.store(WAITING, Release);
                    return Ok(Claim { i, ticket, pid });
                }
            }
            if round == 0 {
                // Full: reclaim the slots of dead waiters.
                for s in &self.slots {
                    if s.state.load(Acquire) != FREE && !alive(s) {
                        s.state.store(FREE, Release);
                        self.occupied.fetch_sub(1, Relaxed);
                    }
                }
            }
        }
        Err(Error::InvalidArgument(
            "too many waiters on one condition (at most 64)",
        ))
    }

    /// Whether slot `c.i` is still the one `c` claimed: not freed by
    /// someone who thought its waiter dead and claimed again since.
    fn is_ours(&self, c: Claim) -> bool {
        let s = &self.slots[c.i];
        s.ticket.load(Relaxed) == c.ticket && s.pid.load(Relaxed) == c.pid
    }

    /// Sleeps (lock released) until the claimed slot is no longer
    /// `WAITING` (or no longer ours) or the deadline passes.
    pub(crate) fn sleep(&self, c: Claim, deadline: Option<Deadline>) {
        let state = &self.slots[c.i].state;
        // SYNC POINT: Acquire pairs with the Release store in `signal`.
        // Slices: a notifier that died between marking this slot and
        // waking it must not leave this waiter asleep for ever.
        while state.load(Acquire) == WAITING && self.is_ours(c) {
            if park(state, WAITING, slice(deadline)).is_err()
                && deadline.is_some_and(Deadline::has_passed)
            {
                return;
            }
        }
    }

    /// Frees the claimed slot; whether it was notified. Normally with the
    /// lock held again; after a failed re-lock without it, so the slot
    /// moves to `FREE` by a CAS from the state seen (a notifier's
    /// `WAITING → SIGNALLED` is a CAS too: neither overwrites the other).
    /// A slot that is no longer ours (freed by someone who thought us dead,
    /// a pid seen through another pid namespace, and perhaps claimed by
    /// another waiter since) is left alone: a spurious wake-up.
    pub(crate) fn dequeue(&self, c: Claim) -> Result<bool> {
        if !self.is_ours(c) {
            return Ok(true);
        }
        let s = &self.slots[c.i];
        let mut state = s.state.load(Acquire);
        // Legitimately the state changes once under us (signalled); more
        // changes are a peer writing garbage.
        for _ in 0..4 {
            match state {
                SIGNALLED | WAITING => {
                    match s.state.compare_exchange(state, FREE, AcqRel, Acquire) {
                        Ok(_) => {
                            self.occupied.fetch_sub(1, Relaxed);
                            return Ok(state == SIGNALLED);
                        }
                        Err(now) => state = now,
                    }
                }
                // Freed by someone who thought us dead, not claimed again:
                // report a spurious wake-up.
                FREE => return Ok(true),
                _ => break,
            }
        }
        Err(Error::Corrupt("condition slot state"))
    }

    /// Wakes up to `n` waiters, oldest first, skipping (and freeing) dead
    /// ones; returns how many were woken. `guard` proves the lock is held.
    #[inline]
    pub fn notify(&self, _guard: &RawMutexGuard<'_>, n: u32) -> Result<u32> {
        self.check_header()?;
        if self.occupied.load(Relaxed) == 0 {
            return Ok(0);
        }
        Ok(self.signal(n))
    }

    /// Wakes every waiter; returns how many.
    pub fn notify_all(&self, guard: &RawMutexGuard<'_>) -> Result<u32> {
        self.notify(guard, u32::MAX)
    }

    /// The notify (lock held).
    pub(crate) fn signal(&self, n: u32) -> u32 {
        let mut woken = 0;
        // Slots changed under us (a waiter whose re-lock failed frees its
        // slot without the lock): bounded, against a peer writing garbage.
        let mut raced = 0;
        while woken < n {
            let next = self.next_ticket.load(Relaxed);
            // The oldest waiter: the largest age `next - ticket` (wrapping).
            let Some(s) = self
                .slots
                .iter()
                .filter(|s| s.state.load(Acquire) == WAITING)
                .max_by_key(|s| next.wrapping_sub(s.ticket.load(Relaxed)))
            else {
                break;
            };
            // SYNC POINT: Release pairs with the Acquire load in `sleep`.
            // A CAS: the waiter may free its slot without the lock.
            if s.state
                .compare_exchange(WAITING, SIGNALLED, Release, Relaxed)
                .is_err()
            {
                raced += 1;
                if raced > self.slots.len() {
                    break;
                }
                continue;
            }
            // A notifier killed here (holding the lock) leaves the waiter
            // signalled but asleep: it sees `SIGNALLED` at the end of its
            // slice and takes the lock back as `OwnerDied`.
            crate::fault::fault_point!("condvar.notify.signalled");
            if !wake_one(&s.state) && !alive(s) {
                // Nobody asleep there, and its owner is dead: not a waiter.
                if s.state
                    .compare_exchange(SIGNALLED, FREE, Release, Relaxed)
                    .is_ok()
                {
                    self.occupied.fetch_sub(1, Relaxed);
                }
                continue;
            }
            woken += 1;
        }
        woken
    }
}

/// A waiter's claim on a slot: which, and the ticket and pid it wrote
/// there (to tell whether the slot is still its own).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim {
    i: usize,
    ticket: u32,
    pid: u32,
}

/// Wakes one sleeper on `word`; whether one was asleep.
#[cfg(not(loom))]
fn wake_one(word: &AtomicU32) -> bool {
    // An error (bad address) cannot happen on a live reference; count it as
    // "woke somebody" so that nothing is reclaimed on its account.
    crate::sys::futex::wake(word, 1).map_or(true, |n| n > 0)
}

#[cfg(loom)]
fn wake_one(word: &AtomicU32) -> bool {
    super::sync::futex_wake(word, 1);
    true
}

/// Whether the process that claimed slot `s` is alive. A waiter of
/// another pid namespace than ours (both known) cannot be looked up: its
/// pid names another process here, or none. It counts as alive.
#[cfg(not(loom))]
fn alive(s: &Slot) -> bool {
    let ns = s.pidns.load(Relaxed);
    if ns != 0 && ns != my_pid_namespace() {
        return true;
    }
    crate::sys::proc::is_alive(s.pid.load(Relaxed), s.start.load(Relaxed))
}

/// This process's pid namespace as a slot records it (the inode number,
/// which procfs keeps within 32 bits; 0: unknown).
#[cfg(not(loom))]
fn my_pid_namespace() -> u32 {
    crate::sys::proc::pid_namespace() as u32
}

#[cfg(loom)]
fn my_pid_namespace() -> u32 {
    0
}

#[cfg(loom)]
fn alive(_: &Slot) -> bool {
    true
}

/// This process's pid and start time, cached (and re-read after `fork`,
/// when the pid no longer matches).
#[cfg(not(loom))]
pub(super) fn me() -> (u32, u64) {
    use std::sync::atomic::{AtomicU32 as StdU32, AtomicU64 as StdU64};
    static PID: StdU32 = StdU32::new(0);
    static START: StdU64 = StdU64::new(0);
    let pid = crate::sys::proc::pid();
    if PID.load(Acquire) == pid {
        return (pid, START.load(Relaxed));
    }
    // Racing threads compute the same values; START is written before PID
    // is published (Release), so a reader that sees its pid sees its start.
    let start = crate::sys::proc::start_time(pid).unwrap_or(0);
    START.store(start, Relaxed);
    PID.store(pid, Release);
    (pid, start)
}

#[cfg(loom)]
fn me() -> (u32, u64) {
    (1, 1)
}

#[cfg(all(test, not(loom), target_os = "linux"))]
mod tests {
    use super::*;

    /// A waiter's slot freed by a notifier that thought it dead, then
    /// claimed by another waiter: the first waiter's dequeue must leave the
    /// second's slot alone (it reports a spurious wake-up). (Review finding
    /// L3.)
    #[test]
    fn a_dequeue_never_frees_a_slot_claimed_again() {
        let cv = RawCondvar::new();
        let first = cv.enqueue().unwrap();
        // A notifier frees it, believing its waiter dead.
        cv.slots[first.i].state.store(FREE, Release);
        cv.occupied.fetch_sub(1, Relaxed);
        let second = cv.enqueue().unwrap();
        assert_eq!(second.i, first.i, "the freed slot is reused");
        assert!(cv.dequeue(first).unwrap(), "spurious wake-up");
        assert_eq!(cv.n_waiting(), 1, "the second waiter's slot was freed");
        assert_eq!(cv.signal(1), 1);
        assert!(cv.dequeue(second).unwrap());
        assert_eq!(cv.n_waiting(), 0);
        assert_eq!(cv.occupied.load(Relaxed), 0);
    }

    /// A waiter recorded with a pid that names no live process here is
    /// dead, unless it was recorded in another pid namespace: there the
    /// pid means another process, and the waiter counts as alive (a
    /// notifier never skips a live waiter it cannot see).
    #[test]
    fn a_waiter_of_another_pid_namespace_is_never_judged_dead() {
        let cv = RawCondvar::new();
        let c = cv.enqueue().unwrap();
        let s = &cv.slots[c.i];
        assert!(alive(s), "this very process");
        s.pid.store(u32::MAX >> 2, Relaxed); // no such process
        assert!(!alive(s));
        s.pidns.store(my_pid_namespace().wrapping_add(1), Relaxed);
        assert!(alive(s), "judged across pid namespaces");
        s.pidns.store(0, Relaxed); // an earlier build's slot: judged
        assert!(!alive(s));
    }

    /// After a failed re-lock a waiter frees its slot without the lock,
    /// racing notifiers: neither may overwrite the other (a notifier's
    /// late `SIGNALLED` on a freed slot would leave it taken for ever, a
    /// slot lost per race). Hammered: every slot ends `FREE`. (Review 2,
    /// finding 5.)
    #[test]
    fn a_dequeue_without_the_lock_never_strands_a_slot() {
        let cv = RawCondvar::new();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Relaxed) {
                    cv.signal(1);
                }
            });
            let t = std::time::Instant::now();
            let mut stranded = false;
            while t.elapsed() < Duration::from_millis(300) {
                let Ok(c) = cv.enqueue() else {
                    stranded = true; // every slot stranded
                    break;
                };
                let _ = cv.dequeue(c);
            }
            stop.store(true, Relaxed);
            assert!(!stranded, "every slot was stranded");
        });
        assert!(cv.slots.iter().all(|s| s.state.load(Relaxed) == FREE));
        assert_eq!(cv.occupied.load(Relaxed), 0);
    }

    /// Tickets near their wrap (the fault suite's counter-wrap case):
    /// waiters whose tickets straddle `u32::MAX -> 0` are still notified
    /// oldest first, one per `notify(1)`.
    #[test]
    fn tickets_wrapping_keep_fifo_order() {
        let cv = RawCondvar::new();
        cv.next_ticket.store(u32::MAX - 2, Relaxed);
        let claims: Vec<Claim> = (0..6).map(|_| cv.enqueue().unwrap()).collect();
        let tickets: Vec<u32> = claims.iter().map(|c| c.ticket).collect();
        assert_eq!(tickets, [u32::MAX - 2, u32::MAX - 1, u32::MAX, 0, 1, 2]);
        for (k, c) in claims.iter().enumerate() {
            assert_eq!(cv.signal(1), 1);
            for (j, other) in claims.iter().enumerate() {
                let want = match j.cmp(&k) {
                    std::cmp::Ordering::Less => FREE, // notified and gone
                    std::cmp::Ordering::Equal => SIGNALLED,
                    std::cmp::Ordering::Greater => WAITING,
                };
                assert_eq!(
                    cv.slots[other.i].state.load(Relaxed),
                    want,
                    "after {} notifies, waiter {j}",
                    k + 1
                );
            }
            assert!(cv.dequeue(*c).unwrap(), "waiter {k} notified");
        }
        assert_eq!(cv.signal(1), 0);
        assert_eq!(cv.occupied.load(Relaxed), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::{Arc, Mutex};

    /// One waiter, one notifier, the table protected by a loom mutex as a
    /// `RawMutex` protects it: the waiter is either notified (and returns
    /// `true`) or never enqueued before the notify (and then the flag it
    /// checks under the lock is already true). A signal that loses the
    /// wake-up leaves the waiter parked for ever (loom deadlock); a notify
    /// that leaves credit would show as a later waiter returning `true`.
    #[test]
    fn condvar_loom_notify_not_lost() {
        loom::model(|| {
            let cv = Arc::new(RawCondvar::new());
            let m = Arc::new(Mutex::new(false));
            let (cv2, m2) = (cv.clone(), m.clone());
            let t = loom::thread::spawn(move || {
                let g = m2.lock().unwrap();
                if *g {
                    return;
                }
                let c = cv2.enqueue().unwrap();
                drop(g);
                cv2.sleep(c, None);
                let _g = m2.lock().unwrap();
                assert!(cv2.dequeue(c).unwrap());
            });
            {
                let mut g = m.lock().unwrap();
                *g = true;
                cv.signal(1);
            }
            t.join().unwrap();
            // No credit left behind.
            let _g = m.lock().unwrap();
            assert_eq!(cv.signal(1), 0);
            assert_eq!(cv.n_waiting(), 0);
        });
    }

    /// Two waiters, one `notify_all` (a signal of `u32::MAX`) under the
    /// lock: both return. A signal that stopped after one slot, or one
    /// that marked a slot without waking its sleeper, leaves a waiter
    /// parked for ever (loom deadlock).
    #[test]
    fn loom_condvar_notify_all_wakes_two() {
        let mut model = loom::model::Builder::new();
        // Three threads: a preemption bound keeps it to seconds.
        model.preemption_bound = Some(2);
        model.check(|| {
            let cv = Arc::new(RawCondvar::new());
            let m = Arc::new(Mutex::new(false));
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let (cv, m) = (cv.clone(), m.clone());
                    loom::thread::spawn(move || {
                        let mut g = m.lock().unwrap();
                        while !*g {
                            let c = cv.enqueue().unwrap();
                            drop(g);
                            cv.sleep(c, None);
                            g = m.lock().unwrap();
                            cv.dequeue(c).unwrap();
                        }
                    })
                })
                .collect();
            {
                let mut g = m.lock().unwrap();
                *g = true;
                cv.signal(u32::MAX);
            }
            for t in ts {
                t.join().unwrap();
            }
            let _g = m.lock().unwrap();
            assert_eq!(cv.n_waiting(), 0);
            assert_eq!(cv.occupied.load(SeqCst), 0);
        });
    }

    /// A waiter whose deadline has passed (it does not sleep) against a
    /// notify: it reports being notified exactly when the notify counted
    /// it, and its slot is freed either way.
    #[test]
    fn loom_condvar_timed_out_waiter_is_counted_once() {
        loom::model(|| {
            let cv = Arc::new(RawCondvar::new());
            let m = Arc::new(Mutex::new(()));
            let (cv2, m2) = (cv.clone(), m.clone());
            let t = loom::thread::spawn(move || {
                let g = m2.lock().unwrap();
                let c = cv2.enqueue().unwrap();
                drop(g);
                cv2.sleep(c, Some(Deadline::PASSED));
                let _g = m2.lock().unwrap();
                cv2.dequeue(c).unwrap()
            });
            let woken = {
                let _g = m.lock().unwrap();
                cv.signal(1)
            };
            let notified = t.join().unwrap();
            assert_eq!(notified, woken == 1);
            let _g = m.lock().unwrap();
            assert_eq!(cv.occupied.load(SeqCst), 0);
        });
    }
}
