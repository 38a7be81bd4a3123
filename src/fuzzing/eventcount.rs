//! An `EventCount` (the sleeper announcement each ring keeps per side)
//! from arbitrary bytes, driven by arbitrary operations.

use crate::Error;
use std::time::Duration;

/// An `EventCount` (8 bytes, exact-size allocation) starting from the
/// first 8 input bytes, driven by the rest: `prepare` (up to four keys
/// outstanding), `cancel`, waits with a passed or a one-microsecond
/// deadline, `notify(n)`, `notify_all`, and overwrites of either word.
/// A wait may only end in `Ok` or `Timeout` (a passed deadline: always
/// `Timeout`); every announcement is withdrawn, so the sleeper word
/// ends where it started (or where the last overwrite put it).
pub fn eventcount(bytes: &[u8]) {
    use crate::raw::EventCount;
    use crate::sys::clock::Deadline;
    use std::alloc::{alloc_zeroed, dealloc, Layout};
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

    let layout = Layout::new::<EventCount>();
    // SAFETY: EventCount is 8 bytes, a nonzero size.
    let p = unsafe { alloc_zeroed(layout) };
    assert!(!p.is_null(), "out of memory");
    let (init, mut ops) = bytes.split_at(bytes.len().min(layout.size()));
    // SAFETY: `init` is at most the allocation's size; separate buffers.
    unsafe { std::ptr::copy_nonoverlapping(init.as_ptr(), p, init.len()) };
    // SAFETY: 8 bytes, aligned for EventCount (two AtomicU32 words:
    // `seq` then `sleepers`, `#[repr(C)]`), live until `dealloc` below,
    // after the last use of these references; any bits are a value.
    let (ec, seq, sleepers) = unsafe {
        (
            &*p.cast::<EventCount>(),
            &*p.cast::<AtomicU32>(),
            &*p.add(4).cast::<AtomicU32>(),
        )
    };
    let mut base = sleepers.load(Relaxed);
    let mut keys = Vec::new();
    let mut next = || match ops.split_first() {
        Some((&b, rest)) => {
            ops = rest;
            Some(b)
        }
        None => None,
    };
    for _ in 0..64 {
        let Some(op) = next() else { break };
        match op % 7 {
            0 if keys.len() < 4 => {
                let before = sleepers.load(Relaxed);
                keys.push(ec.prepare());
                // Also pins the layout this helper assumes.
                assert_eq!(sleepers.load(Relaxed), before.wrapping_add(1));
            }
            1 => {
                if let Some(k) = keys.pop() {
                    ec.cancel(k);
                }
            }
            2 => {
                if let Some(k) = keys.pop() {
                    let r = ec.wait(k, Some(Deadline::PASSED));
                    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
                }
            }
            3 => {
                if let Some(k) = keys.pop() {
                    let until = Deadline::after(Duration::from_micros(1));
                    let r = ec.wait(k, Some(until));
                    assert!(matches!(r, Ok(()) | Err(Error::Timeout)), "{r:?}");
                }
            }
            4 => ec.notify(u32::from(next().unwrap_or(0))),
            5 => ec.notify_all(),
            _ => {
                let v = u32::from_le_bytes([0; 4].map(|_| next().unwrap_or(0)));
                if op & 8 == 0 {
                    seq.store(v, Relaxed);
                } else {
                    sleepers.store(v, Relaxed);
                    base = v.wrapping_sub(keys.len() as u32);
                }
            }
        }
        let _ = ec.has_sleepers();
    }
    for k in keys.drain(..) {
        ec.cancel(k);
    }
    assert_eq!(
        sleepers.load(Relaxed),
        base,
        "an announcement was not withdrawn"
    );
    // SAFETY: allocated above with this layout; no reference is used
    // after this point.
    unsafe { dealloc(p, layout) };
}
