//! `RawMutex` (behind `Lock`, `RLock` and the lock of `Value`/`Array`)
//! over untrusted bytes, in an exact-size region, through its public API
//! only: byte 0 % 3 picks garbage (0), a valid mutex of either kind then
//! byte patches (1), or a valid mutex (2: no call may report corruption,
//! a dead owner or an unrecoverable lock, and a lock this thread does not
//! hold is always granted; a recursive one always is). The rest drives
//! `try_lock`, `lock_timeout` with zero or microsecond timeouts (guards
//! held and dropped in any order), `acquire_timeout`/`release`,
//! `make_consistent` and the accessors. Patches (modes 0 and 1) happen
//! only while this thread holds nothing: bytes rewritten under a live
//! holder are outside the mutex's trust model (see `RawMutex`).
#![no_main]

mod common;

use std::time::Duration;

use common::*;
use libfuzzer_sys::fuzz_target;
use shmprim::raw::{LockError, MutexKind, RawMutex};
use shmprim::Error;

/// Errors a lock attempt may give on bytes at rest of any kind.
fn lock_failure(e: &Error) -> bool {
    matches!(
        e,
        Error::WouldBlock
            | Error::Timeout
            | Error::Deadlock
            | Error::Corrupt(_)
            | Error::NotRecoverable
            | Error::Unsupported(_)
    )
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.u8() % 3;
    let region = Region::new(RawMutex::SIZE, RawMutex::ALIGN);
    let mut kind = None;
    if mode == 0 {
        region.fill(input.take(RawMutex::SIZE));
    } else {
        let k = if input.u8() & 1 == 0 {
            MutexKind::Normal
        } else {
            MutexKind::Recursive
        };
        // SAFETY: a fresh region of SIZE bytes aligned to ALIGN, ours alone.
        unsafe { RawMutex::init(region.ptr().cast(), k) }.expect("mutex init");
        if mode == 1 {
            region.patch(&mut input);
        } else {
            kind = Some(k);
        }
    }
    // SAFETY: SIZE bytes aligned to ALIGN that outlive `m` (the guards
    // borrow `m` and are dropped before the region); the mutex defends
    // against any bytes at rest, and nobody writes them while held.
    let m = unsafe { &*region.ptr().cast::<RawMutex>() };
    let mut guards = Vec::new();
    let mut levels = 0u32; // taken with `acquire*`, not yet released
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        let held = !guards.is_empty() || levels > 0;
        // A valid mutex grants a lock this thread does not hold, and a
        // recursive one grants it again.
        let must_grant = kind == Some(MutexKind::Recursive) || (kind.is_some() && !held);
        match input.u8() % 8 {
            op @ (0..=2) => {
                let r = match op {
                    0 => m.try_lock(),
                    t => m.lock_timeout(Duration::from_micros(u64::from(t - 1))),
                };
                match r {
                    Ok(g) => guards.push(g),
                    Err(LockError::OwnerDied(od)) => {
                        assert!(kind.is_none(), "a valid mutex reported a dead owner");
                        guards.push(od.into_inner());
                    }
                    Err(LockError::Failed(e)) => {
                        assert!(lock_failure(&e), "unexpected error: {e:?}");
                        assert!(!must_grant, "a valid mutex refused: {e:?}");
                    }
                }
            }
            3 => {
                guards.pop();
            }
            4 => {
                let r = m.acquire_timeout(Duration::ZERO);
                allowed(&r, &[lock_failure]);
                if must_grant {
                    assert!(r.is_ok(), "a valid mutex refused: {r:?}");
                }
                levels += u32::from(r.is_ok());
            }
            5 => {
                let r = m.release();
                allowed(&r, &[|e| matches!(e, Error::NotOwner), lock_failure]);
                if r.is_ok() {
                    assert!(levels > 0 || kind.is_none(), "released a lock not acquired");
                    levels = levels.saturating_sub(1);
                }
            }
            6 => {
                let r = m.check();
                allowed(&r, &[corrupt, |e| matches!(e, Error::NotRecoverable)]);
                let _ = (m.is_not_recoverable(), m.is_locked(), m.check_layout());
                if let Some(k) = kind {
                    assert_eq!(r.ok(), Some(k), "a valid mutex failed its check");
                }
                let r = m.make_consistent();
                allowed(
                    &r,
                    &[
                        |e| matches!(e, Error::NotOwner | Error::InvalidArgument(_)),
                        lock_failure,
                    ],
                );
                if kind.is_some() {
                    // No owner died: nothing to mend, the one answer on
                    // every path, held or not.
                    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
                }
            }
            _ if kind.is_none() && !held => region.patch(&mut input),
            _ => {}
        }
    }
    while guards.pop().is_some() {}
    for _ in 0..levels {
        let r = m.release();
        allowed(&r, &[|e| matches!(e, Error::NotOwner), lock_failure]);
    }
});
