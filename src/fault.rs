//! Named fault-injection points for the fault suite (`tests/fault_*.rs`).
//!
//! A fault test wants to `SIGKILL` a process at an exact instant inside the
//! crate: between a ring reservation and its commit, between changing a
//! futex word and waking its sleepers. Signals sent from outside cannot aim
//! that well, so the crate marks such instants with
//! `fault_point!("ring.mpmc.after_reserve")`, and a test installs a hook
//! (in the child process that is to die) that stops there: typically it
//! tells the parent "I am at point X" through a pipe and sleeps until
//! killed.
//!
//! Without the hidden `fault-injection` feature a point compiles to
//! nothing. With it, a point costs one relaxed load and a branch; benches
//! are built without it. The feature is for this crate's tests and for
//! embedders' fault tests, never for production.

#[cfg(feature = "fault-injection")]
use std::sync::atomic::{AtomicPtr, Ordering};

/// What a hook receives: the name of the point reached.
pub type Hook = fn(&'static str);

#[cfg(feature = "fault-injection")]
static HOOK: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());

/// Installs `hook` for every fault point in this process (replacing any
/// earlier one), or removes it with `None`.
#[cfg(feature = "fault-injection")]
pub fn set_hook(hook: Option<Hook>) {
    let raw = hook.map_or(std::ptr::null_mut(), |h| h as *mut ());
    HOOK.store(raw, Ordering::Release);
}

/// Called by `fault_point!`; not for direct use.
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
#[inline]
pub fn hit(point: &'static str) {
    let raw = HOOK.load(Ordering::Acquire);
    if !raw.is_null() {
        // SAFETY: the only non-null values ever stored in HOOK come from
        // `set_hook`, which stores a `fn(&'static str)` cast to a pointer;
        // casting back gives the same function pointer.
        let hook: Hook = unsafe { std::mem::transmute::<*mut (), Hook>(raw) };
        hook(point);
    }
}

/// Marks a named instant that a fault test may stop at (see the module
/// docs). Expands to nothing without the `fault-injection` feature.
#[allow(unused_macros)] // until the first point is placed
macro_rules! fault_point {
    ($name:literal) => {{
        #[cfg(feature = "fault-injection")]
        $crate::fault::hit($name);
    }};
}
#[allow(unused_imports)]
pub(crate) use fault_point;

#[cfg(all(test, feature = "fault-injection"))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    static SEEN: AtomicUsize = AtomicUsize::new(0);

    fn count(point: &'static str) {
        if point == "fault.test.point" {
            SEEN.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_hook_sees_its_point_and_can_be_removed() {
        super::set_hook(Some(count));
        fault_point!("fault.test.point");
        super::set_hook(None);
        fault_point!("fault.test.point");
        assert_eq!(SEEN.load(Ordering::Relaxed), 1);
    }
}
