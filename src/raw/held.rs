//! Which locks the calling thread holds, kept in process-local memory.
//!
//! The lock word in shared memory says which thread owns a lock, but any
//! process can write it. If this thread trusted it, a forged word naming
//! this thread would let it "unlock" (or re-enter) a lock it never took,
//! under another holder. So the thread's own record decides whether it
//! holds a lock (and how deeply, for a recursive one); the lock word is
//! only released for what this record (or a live guard) says was taken.
//!
//! Levels taken by guards, by `Value`/`Array` guards and by `acquire()` are
//! counted apart, so that `release()` can never free a level a guard still
//! owns, and a condition wait can refuse to release a level under which a
//! `Value`/`Array` guard hands out `&mut T`.
//! Entries are keyed by the mutex's address in this process; a mapping
//! that holds a lock of this process is not unmapped (see
//! `Segment::keep_mapped_while` and `RawMutex::must_stay_mapped`), so an
//! address is not reused under an entry.
//!
//! A condition wait that cannot take its lock back leaves the levels it
//! released held by nothing: the guards and `acquire()`s that took them
//! still exist and will be dropped or released. Those levels stay in the
//! record as orphans, not held (not counted by [`total`]), each consumed,
//! without unlocking, by the next drop or release of its kind, so that no
//! later, real level is given up in its place (which would unlock the lock
//! under a live guard).
//!
//! A child made by `fork` holds none of its parent's locks: the record is
//! cleared in the child, and the fork generation moves on so that guards
//! copied into the child do nothing when dropped there.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::Once;

/// How a level was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    /// By a guard (recursive locks only: other guards are their own proof).
    Guard,
    /// By `acquire()`, to be given back by `release()`.
    Raw,
    /// By a `Value`/`Array` guard (recursive locks only), which hands out
    /// `&mut T` to the data the lock guards: a condition wait must not
    /// release such a level (see `RawMutex::unlock_for_wait`).
    Data,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    addr: usize,
    guards: u32,
    raw: u32,
    data: u32,
    /// Guard levels released by a condition wait that could not take the
    /// lock back: not held, each consumed by a guard's drop.
    orphan_guards: u32,
    /// The same for `acquire()` levels, consumed by `release()`.
    orphan_raw: u32,
}

/// What [`pop`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Popped {
    /// A held level; this many levels are left held in all (0: the lock is
    /// to be unlocked).
    Held(u64),
    /// An orphaned level: not held, nothing to unlock.
    Orphan,
}

impl Entry {
    fn count(&mut self, via: Via) -> &mut u32 {
        match via {
            Via::Guard => &mut self.guards,
            Via::Raw => &mut self.raw,
            Via::Data => &mut self.data,
        }
    }

    fn total(&self) -> u64 {
        u64::from(self.guards) + u64::from(self.raw) + u64::from(self.data)
    }

    /// Whether the entry records nothing any more (held or orphaned).
    fn is_empty(&self) -> bool {
        self.total() == 0 && self.orphan_guards == 0 && self.orphan_raw == 0
    }

    fn orphans(&mut self, via: Via) -> Option<&mut u32> {
        match via {
            Via::Guard => Some(&mut self.orphan_guards),
            Via::Raw => Some(&mut self.orphan_raw),
            Via::Data => None,
        }
    }
}

thread_local! {
    static HELD: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
    /// How many entries `HELD` has: a `Cell` with no destructor, the
    /// cheapest thread-local to read, so that the common "this thread holds
    /// nothing recorded" costs one load.
    static ENTRIES: Cell<usize> = const { Cell::new(0) };
}

/// Bumped in every child right after `fork`.
static FORK_GENERATION: AtomicU32 = AtomicU32::new(0);

/// Lock levels (guards and `acquire()`s) held by all threads of this
/// process, counted only where the lock word cannot say who holds a lock
/// (`RawMutex::COUNTS_LEVELS`): a mapping with a mutex in it then stays
/// while this is not zero.
static LEVELS: AtomicUsize = AtomicUsize::new(0);

/// Counts one more level held in this process.
pub(super) fn levels_add() {
    LEVELS.fetch_add(1, Relaxed);
}

/// Counts one level fewer.
pub(super) fn levels_sub() {
    LEVELS.fetch_sub(1, Relaxed);
}

/// Whether any thread of this process holds a counted level.
pub(super) fn levels_outstanding() -> bool {
    LEVELS.load(Relaxed) != 0
}

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Relaxed);
    LEVELS.store(0, Relaxed);
    // The child's only thread is a copy of the one that forked: it holds
    // none of the locks recorded here.
    let _ = HELD.try_with(|h| h.try_borrow_mut().map(|mut h| h.clear()));
    let _ = ENTRIES.try_with(|n| n.set(0));
    super::owner::forget();
}

/// The current fork generation; registers the fork handler on first use,
/// so any process that locks has it.
#[inline]
pub(super) fn generation() -> u32 {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| crate::sys::pthread::at_fork_child(after_fork_in_child));
    FORK_GENERATION.load(Relaxed)
}

/// The fork generation, without registering anything (for guards, which
/// were made after `generation` registered the handler).
#[inline]
pub(super) fn generation_now() -> u32 {
    FORK_GENERATION.load(Relaxed)
}

fn with<R>(f: impl FnOnce(&mut Vec<Entry>) -> R) -> Option<R> {
    HELD.try_with(|h| {
        h.try_borrow_mut().ok().map(|mut h| {
            let r = f(&mut h);
            let _ = ENTRIES.try_with(|n| n.set(h.len()));
            r
        })
    })
    .ok()
    .flatten()
}

/// All levels this thread holds of the lock at `addr` (0: none).
#[inline]
pub(super) fn total(addr: usize) -> u64 {
    if ENTRIES.try_with(Cell::get).unwrap_or(1) == 0 {
        return 0;
    }
    with(|h| h.iter().find(|e| e.addr == addr).map_or(0, Entry::total)).unwrap_or(0)
}

/// Records one more level of the lock at `addr`, taken `via`. `false` if
/// the count would overflow (nothing recorded).
pub(super) fn push(addr: usize, via: Via) -> bool {
    with(|h| match h.iter_mut().find(|e| e.addr == addr) {
        Some(e) => {
            let c = e.count(via);
            match c.checked_add(1) {
                Some(n) => {
                    *c = n;
                    true
                }
                None => false,
            }
        }
        None => {
            let mut e = Entry {
                addr,
                guards: 0,
                raw: 0,
                data: 0,
                orphan_guards: 0,
                orphan_raw: 0,
            };
            *e.count(via) = 1;
            h.push(e);
            true
        }
    })
    .unwrap_or(false)
}

/// Removes one level taken `via`, an orphaned one first; `None` if this
/// thread has no level of that kind, held or orphaned.
#[inline]
pub(super) fn pop(addr: usize, via: Via) -> Option<Popped> {
    if ENTRIES.try_with(Cell::get).unwrap_or(1) == 0 {
        return None;
    }
    pop_recorded(addr, via)
}

fn pop_recorded(addr: usize, via: Via) -> Option<Popped> {
    with(|h| {
        let i = h.iter().position(|e| e.addr == addr)?;
        let popped = match h[i].orphans(via) {
            Some(o) if *o > 0 => {
                *o -= 1;
                Popped::Orphan
            }
            _ => {
                let c = h[i].count(via);
                *c = c.checked_sub(1)?;
                Popped::Held(h[i].total())
            }
        };
        if h[i].is_empty() {
            h.swap_remove(i);
        }
        Some(popped)
    })
    .flatten()
}

/// Levels of the lock at `addr` that this thread holds through
/// `Value`/`Array` guards ([`Via::Data`]).
pub(super) fn data_levels(addr: usize) -> u32 {
    if ENTRIES.try_with(Cell::get).unwrap_or(1) == 0 {
        return 0;
    }
    with(|h| h.iter().find(|e| e.addr == addr).map_or(0, |e| e.data)).unwrap_or(0)
}

/// Removes the levels this thread holds of the lock at `addr` from its
/// record (for a condition wait; orphans stay); returns its `(guards,
/// raw)` levels, or `None` if none or if a level is held through a
/// `Value`/`Array` guard ([`Via::Data`]: such a level must never be
/// released by a wait; nothing is removed).
pub(super) fn take(addr: usize) -> Option<(u32, u32)> {
    with(|h| {
        let i = h.iter().position(|e| e.addr == addr)?;
        let e = &mut h[i];
        if e.data != 0 || e.total() == 0 {
            return None;
        }
        let levels = (e.guards, e.raw);
        (e.guards, e.raw) = (0, 0);
        if e.is_empty() {
            h.swap_remove(i);
        }
        Some(levels)
    })
    .flatten()
}

/// Adds levels to the record of the lock at `addr`: held ones (`orphan`
/// false: levels removed by [`take`], the lock taken back) or orphans
/// (levels removed by [`take`] whose lock could not be taken back).
/// `false` if the record is gone or a count would overflow.
fn add(addr: usize, guards: u32, raw: u32, orphan: bool) -> bool {
    with(|h| {
        let i = match h.iter().position(|e| e.addr == addr) {
            Some(i) => i,
            None => {
                h.push(Entry {
                    addr,
                    guards: 0,
                    raw: 0,
                    data: 0,
                    orphan_guards: 0,
                    orphan_raw: 0,
                });
                h.len() - 1
            }
        };
        let e = &mut h[i];
        let (g, r) = if orphan {
            (&mut e.orphan_guards, &mut e.orphan_raw)
        } else {
            (&mut e.guards, &mut e.raw)
        };
        match (g.checked_add(guards), r.checked_add(raw)) {
            (Some(ng), Some(nr)) => {
                (*g, *r) = (ng, nr);
                true
            }
            _ => {
                if h[i].is_empty() {
                    h.swap_remove(i);
                }
                false
            }
        }
    })
    .unwrap_or(false)
}

/// Puts back levels removed by [`take`], the lock taken back. `false` if
/// the record is gone.
pub(super) fn restore(addr: usize, guards: u32, raw: u32) -> bool {
    add(addr, guards, raw, false)
}

/// Records levels removed by [`take`] whose lock could not be taken back
/// as orphans (see the module documentation). `false` if the record is
/// gone.
pub(super) fn orphan(addr: usize, guards: u32, raw: u32) -> bool {
    add(addr, guards, raw, true)
}
