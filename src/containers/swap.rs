//! [`Swap`]: the process-local slot holding a handle's current generation,
//! replaced when the handle follows growth while other threads of the
//! process may still be reading the old one.
//!
//! A reader *pins*: it counts itself in `active` (an RMW), then loads
//! `cur`; the pin keeps what it loaded alive until dropped. A replacement
//! swaps `cur` and puts the old value on the `retired` list; the list is
//! freed only when `active` is read as zero **after** the swap, and read
//! by an RMW (`fetch_add(0)`), which sees the last value in `active`'s
//! modification order: a reader counted before it is seen (nothing is
//! freed), and a reader counted after it reads from it, so the swap
//! happens-before that reader's load of `cur` (it loads the new value).
//! No SeqCst is needed (a plain load would need SeqCst on both sides, the
//! Dekker pattern). The last pin to leave while something is retired
//! frees it.
//!
//! The `retired` lock is taken to replace and tried (never waited for) to
//! free; nothing is freed or evaluated by a thread that cannot take it.
//! A `loom` model (`loom_swap_*`, below) checks that no pinned value is
//! freed under its reader.

#[cfg(not(loom))]
use std::sync::{
    atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::*},
    Mutex,
};

#[cfg(loom)]
use loom::sync::{
    atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::*},
    Mutex,
};

/// One value, replaceable while threads read it (see the module docs).
pub(crate) struct Swap<T> {
    /// The current value (a leaked `Box<T>`).
    cur: AtomicPtr<T>,
    /// Threads between `pin` and the pin's drop.
    active: AtomicUsize,
    /// Values replaced but maybe still read. Boxed: pins hold references
    /// to them where they lie.
    #[allow(clippy::vec_box)]
    retired: Mutex<Vec<Box<T>>>,
    has_retired: AtomicBool,
}

// SAFETY: `cur` is an owned Box<T>, shared with readers as `&T` (needs
// T: Sync) and dropped by any thread (needs T: Send).
unsafe impl<T: Send + Sync> Send for Swap<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Swap<T> {}

/// A thread's hold on the current value.
pub(crate) struct Pinned<'a, T> {
    swap: &'a Swap<T>,
    value: &'a T,
}

impl<'a, T> Pinned<'a, T> {
    pub fn get(&self) -> &'a T {
        self.value
    }
}

impl<T> Drop for Pinned<'_, T> {
    fn drop(&mut self) {
        // SYNC POINT (reader leaves): AcqRel, so the reads made under the
        // pin happen-before a reclaimer's RMW that reads a later value.
        if self.swap.active.fetch_sub(1, AcqRel) == 1 && self.swap.has_retired.load(Relaxed) {
            self.swap.reclaim();
        }
    }
}

impl<T> Swap<T> {
    pub fn new(value: T) -> Self {
        Swap {
            cur: AtomicPtr::new(Box::into_raw(Box::new(value))),
            active: AtomicUsize::new(0),
            retired: Mutex::new(Vec::new()),
            has_retired: AtomicBool::new(false),
        }
    }

    /// Pins the current value.
    pub fn pin(&self) -> Pinned<'_, T> {
        // SYNC POINT (reader enters): pairs with the RMW reads of `active`
        // in `replace_unless` and `reclaim` (see the module docs).
        self.active.fetch_add(1, AcqRel);
        let p = self.cur.load(Acquire);
        // SAFETY: `cur` always holds a live Box<T>; one swapped out is
        // freed only when `active` is seen at zero after the swap, and this
        // thread counted itself in `active` before loading it.
        let value = unsafe { &*p };
        Pinned { swap: self, value }
    }

    /// The current value, with exclusive access to the slot.
    pub fn get_mut(&mut self) -> &mut T {
        // SAFETY: `&mut self`: no pin is alive; `cur` is a live Box<T>.
        unsafe { &mut *self.cur.load(Acquire) }
    }

    /// Makes `value` current unless `keep(current, &value)` says the
    /// current one stays.
    pub fn replace_unless(&self, value: T, keep: impl FnOnce(&T, &T) -> bool) {
        let mut list = match self.retired.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        // SAFETY: the list lock serialises replacements, so `cur` cannot
        // be swapped out and freed while this reference lives.
        let cur = unsafe { &*self.cur.load(Acquire) };
        if keep(cur, &value) {
            return;
        }
        let old = self.cur.swap(Box::into_raw(Box::new(value)), AcqRel);
        // SAFETY: `old` came from Box::into_raw and was just swapped out:
        // no new pin can load it.
        list.push(unsafe { Box::from_raw(old) });
        self.has_retired.store(true, Relaxed);
        if self.active.fetch_add(0, AcqRel) == 0 {
            list.clear();
            self.has_retired.store(false, Relaxed);
        }
    }

    fn reclaim(&self) {
        let Ok(mut list) = self.retired.try_lock() else {
            return;
        };
        if self.active.fetch_add(0, AcqRel) == 0 {
            list.clear();
            self.has_retired.store(false, Relaxed);
        }
    }
}

impl<T> Drop for Swap<T> {
    fn drop(&mut self) {
        let p = self.cur.load(Acquire);
        // SAFETY: `&mut self`: no pin is alive; `p` came from Box::into_raw.
        drop(unsafe { Box::from_raw(p) });
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    /// A value whose drop writes to it: loom reports a drop that races a
    /// pinned reader's read (a use after free in the real code).
    struct Probe(UnsafeCell<u64>);

    impl Drop for Probe {
        fn drop(&mut self) {
            self.0.with_mut(|p| {
                // SAFETY: loom's cell hands out the pointer for this access.
                unsafe { *p = u64::MAX }
            });
        }
    }

    fn read(p: &Probe) -> u64 {
        // SAFETY: loom's cell hands out the pointer for this access.
        p.0.with(|p| unsafe { *p })
    }

    /// A reader pinned across a replacement keeps reading what it pinned;
    /// replaced values are freed by whoever sees the reader gone.
    #[test]
    fn loom_swap_never_frees_under_a_reader() {
        loom::model(|| {
            let s = Arc::new(Swap::new(Probe(UnsafeCell::new(1))));
            let r = s.clone();
            let t = loom::thread::spawn(move || {
                let pin = r.pin();
                let v = read(pin.get());
                assert!(v == 1 || v == 2, "read {v}");
                drop(pin);
                let pin = r.pin();
                assert_ne!(read(pin.get()), u64::MAX);
            });
            s.replace_unless(Probe(UnsafeCell::new(2)), |_, _| false);
            t.join().unwrap();
            assert_eq!(read(s.pin().get()), 2);
        });
    }

    /// Two replacements racing a reader: nothing freed under it.
    #[test]
    fn loom_swap_two_replacements() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(2);
        model.check(|| {
            let s = Arc::new(Swap::new(Probe(UnsafeCell::new(1))));
            let (r, w) = (s.clone(), s.clone());
            let reader = loom::thread::spawn(move || {
                let pin = r.pin();
                assert_ne!(read(pin.get()), u64::MAX);
            });
            let writer = loom::thread::spawn(move || {
                w.replace_unless(Probe(UnsafeCell::new(2)), |_, _| false);
            });
            s.replace_unless(Probe(UnsafeCell::new(3)), |_, _| false);
            reader.join().unwrap();
            writer.join().unwrap();
        });
    }
}
