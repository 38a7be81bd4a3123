//! Misuse of the safe API must never become undefined behaviour. Each
//! scenario that would crash if it did runs in a child process, so a crash
//! fails its own test (with the signal) rather than the whole binary.

mod harness;

use std::time::Duration;

use harness::*;
use shmprim::*;

type Res = std::result::Result<(), Box<dyn std::error::Error>>;

// Drops a handle whose lock is still held by this thread (through
// `acquire()` or a forgotten guard), then locks other mutexes. The C
// library's robust list of this thread still points at the held mutex, so
// its mapping must not be unmapped.
child!(fn drop_handle_of_held_lock(ctx) {
    let other = Lock::anonymous()?;
    let r = RLock::anonymous()?;
    for how in ["acquire", "forget", "rlock-acquire", "value-forget"] {
        match how {
            "acquire" => {
                let l = Lock::anonymous()?;
                let _ = l.acquire()?;
                drop(l);
            }
            "forget" => {
                let l = Lock::anonymous()?;
                std::mem::forget(l.lock().map_err(LockError::into_error)?);
                drop(l);
            }
            "rlock-acquire" => {
                let l = RLock::anonymous()?;
                let _ = l.acquire()?;
                let _ = l.acquire()?;
                drop(l);
            }
            _ => {
                let v = Value::<u64>::anonymous(0)?;
                std::mem::forget(v.lock().map_err(LockError::into_error)?);
                drop(v);
            }
        }
        // Fresh mappings may land where the dropped one was; locking and
        // unlocking them makes glibc walk this thread's robust list.
        for _ in 0..4 {
            let fresh = Lock::anonymous()?;
            drop(fresh.lock().map_err(LockError::into_error)?);
            drop(other.lock().map_err(LockError::into_error)?);
            drop(r.lock().map_err(LockError::into_error)?);
        }
        ctx.send(how);
    }
});

#[test]
fn dropping_the_handle_of_a_held_lock_is_not_a_use_after_unmap() {
    let child = spawn("drop_handle_of_held_lock")
        .timeout(Duration::from_secs(20))
        .start();
    for how in ["acquire", "forget", "rlock-acquire", "value-forget"] {
        child.expect(how);
    }
    child.join();
}

/// `release()` gives back only levels taken with `acquire()`: it cannot
/// free a lock under a live guard (which would allow a second `&mut`).
#[test]
fn release_cannot_free_a_lock_under_a_guard() -> Res {
    let rl = RLock::anonymous()?;
    let v = Value::<u64>::anonymous_with_lock(0, &rl)?;
    let g = v.lock().map_err(LockError::into_error)?;
    assert!(matches!(rl.release(), Err(Error::NotOwner)));
    assert!(matches!(v.raw_lock().release(), Err(Error::NotOwner)));
    std::thread::scope(|s| {
        s.spawn(|| assert!(v.try_lock().unwrap_err().is_would_block()));
    });
    drop(g);
    // With a level taken by acquire(), release gives back exactly that one.
    let _ = rl.acquire()?;
    let g = rl.lock().map_err(LockError::into_error)?;
    rl.release()?;
    assert!(matches!(rl.release(), Err(Error::NotOwner)));
    std::thread::scope(|s| {
        s.spawn(|| assert!(rl.try_lock().unwrap_err().is_would_block()));
    });
    drop(g);
    std::thread::scope(|s| {
        s.spawn(|| drop(rl.try_lock().expect("free after the last level")));
    });
    Ok(())
}

/// A `Value`/`Array` whose lock this thread holds through `acquire()` is
/// refused: its guard would not be the only access.
#[test]
fn a_value_whose_lock_was_acquired_cannot_be_locked_again() -> Res {
    for recursive in [false, true] {
        let shared: SharedLock = if recursive {
            SharedLock::RLock(RLock::anonymous()?)
        } else {
            SharedLock::Lock(Lock::anonymous()?)
        };
        let v = Value::<u64>::anonymous_with_lock(0, shared.clone())?;
        let _ = v.raw_lock().acquire()?;
        assert!(matches!(v.lock(), Err(LockError::Failed(Error::Deadlock))));
        assert!(matches!(v.get(), Err(Error::Deadlock)));
        v.raw_lock().release()?;
        assert_eq!(v.get()?, 0);
    }
    Ok(())
}

shmprim::plain_struct! {
    #[repr(align(8192))]
    struct Huge { a: [u64; 1024] }
}

/// Mappings are page-aligned only: a type aligned above 4096 bytes could
/// not be placed aligned, so it is refused.
#[test]
fn alignment_above_a_page_is_refused() {
    let r = Value::anonymous(Huge { a: [0; 1024] });
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    let r = Array::<Huge>::anonymous(2);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
}
