//! Which locks the calling thread holds, kept in process-local memory.
//!
//! The lock word in shared memory says which thread owns a lock, but any
//! process can write it. If this thread trusted it, a forged word naming
//! this thread would make the C library "unlock" a mutex it never locked,
//! following the robust-list pointers stored in the shared mutex: a write
//! through garbage addresses. So the thread's own record decides whether it
//! holds a lock (and how deeply, for a recursive one); the C library is only
//! asked to unlock what this record says it locked.
//!
//! Entries are keyed by the mutex's address in this process. A child made
//! by `fork` holds none of its parent's locks, so the record is cleared in
//! the child.

use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    /// (address, depth) of every lock held through a tracked path.
    static HELD: RefCell<Vec<(usize, u32)>> = const { RefCell::new(Vec::new()) };
}

extern "C" fn forget_all_after_fork() {
    // The child's only thread is a copy of the one that forked: it holds
    // none of the locks recorded here.
    let _ = HELD.try_with(|h| h.try_borrow_mut().map(|mut h| h.clear()));
}

fn ensure_fork_handler() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| crate::sys::pthread::at_fork_child(forget_all_after_fork));
}

/// How deeply this thread holds the lock at `addr` (0: not at all).
pub(super) fn depth(addr: usize) -> u32 {
    HELD.with(|h| h.borrow().iter().find(|e| e.0 == addr).map_or(0, |e| e.1))
}

/// Records one more level of the lock at `addr`; returns the new depth.
pub(super) fn push(addr: usize) -> u32 {
    ensure_fork_handler();
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        match h.iter_mut().find(|e| e.0 == addr) {
            Some(e) => {
                e.1 += 1;
                e.1
            }
            None => {
                h.push((addr, 1));
                1
            }
        }
    })
}

/// Adds a level to a lock this thread already holds; `false` (and no
/// change) if it holds none.
pub(super) fn deepen(addr: usize) -> bool {
    HELD.with(|h| match h.borrow_mut().iter_mut().find(|e| e.0 == addr) {
        Some(e) => {
            e.1 += 1;
            true
        }
        None => false,
    })
}

/// Removes one level; returns the depth left, or `None` if this thread
/// does not hold the lock.
pub(super) fn pop(addr: usize) -> Option<u32> {
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        let i = h.iter().position(|e| e.0 == addr)?;
        h[i].1 -= 1;
        let left = h[i].1;
        if left == 0 {
            h.swap_remove(i);
        }
        Some(left)
    })
}
