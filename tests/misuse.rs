//! Misuse of the safe API must never become undefined behaviour. Each
//! scenario that would crash if it did runs in a child process, so a crash
//! fails its own test (with the signal) rather than the whole binary.
#![cfg(target_os = "linux")] // /dev/shm, procfs and mount namespaces

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
    if ctx.arg("no_proc") == "mask" {
        // Hide /proc (a private mount namespace with an empty tmpfs over
        // it): the library must then keep mappings conservatively.
        // SAFETY: plain system calls on this process's own namespace; the
        // strings are NUL-terminated literals.
        let masked = unsafe {
            libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(c"none".as_ptr(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) == 0
                && libc::mount(c"tmpfs".as_ptr(), c"/proc".as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null()) == 0
        };
        if !masked {
            ctx.send("cannot mask /proc");
            return Ok(());
        }
        assert!(!std::path::Path::new("/proc/self").exists());
        ctx.send("masked");
    }
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
        // Locking a lock mapped earlier makes glibc write into the head of
        // this thread's robust list, the held mutex: a fault if its mapping
        // was unmapped. (A fresh mapping first could land at the freed
        // address and hide it.) Then fresh mappings, which may land there.
        for _ in 0..4 {
            drop(other.lock().map_err(LockError::into_error)?);
            drop(r.lock().map_err(LockError::into_error)?);
            let fresh = Lock::anonymous()?;
            drop(fresh.lock().map_err(LockError::into_error)?);
        }
        ctx.send(how);
    }
});

#[test]
fn dropping_the_handle_of_a_held_lock_is_not_a_use_after_unmap() {
    for no_proc in ["keep", "mask"] {
        let child = spawn("drop_handle_of_held_lock")
            .arg("no_proc", no_proc)
            .timeout(Duration::from_secs(20))
            .start();
        if no_proc == "mask" {
            match child.recv(Duration::from_secs(20)).as_deref() {
                Some("masked") => {}
                Some("cannot mask /proc") => {
                    eprintln!("skipped: cannot mask /proc here (needs root and mount namespaces)");
                    child.join();
                    continue;
                }
                other => panic!("unexpected {other:?}\n{}", child.output()),
            }
        }
        for how in ["acquire", "forget", "rlock-acquire", "value-forget"] {
            child.expect(how);
        }
        child.join();
    }
}

/// How many mappings of the segment `name` this process has (a named
/// segment's mappings carry its `/dev/shm` path).
fn mappings_of(name: &str) -> usize {
    let path = format!("/dev/shm{name}");
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.split_whitespace().nth(5) == Some(path.as_str()))
        .count()
}

// Opens and drops a lock 100 times while holding it through another handle,
// then releases it; reports the process's mapping count before and after
// (in a child: nothing else runs there to change it).
child!(fn reopen_while_held(ctx) {
    let name = ctx.arg("name");
    let lock = Lock::open(&name)?;
    let held = lock.lock().map_err(LockError::into_error)?;
    let before = mappings_of(&name);
    for _ in 0..100 {
        let again = Lock::open(&name)?;
        assert!(again.try_lock().is_err());
        drop(again);
    }
    let during = mappings_of(&name);
    drop(held);
    // Any segment drop sweeps what is no longer needed.
    drop(Lock::anonymous()?);
    ctx.send(&format!("{before} {during} {}", mappings_of(&name)));
});

/// A mapping kept because its lock was held (through another handle) is
/// unmapped once the lock is free: opening and dropping handles while a
/// long-lived holder exists must not pile up mappings.
#[test]
fn mappings_kept_for_a_held_lock_are_freed_once_it_is_free() {
    let name = unique("keepfree");
    let _lock = Lock::create(&name).unwrap();
    let child = spawn("reopen_while_held").arg("name", &name).start();
    let report = child.recv(Duration::from_secs(20)).expect("no report");
    child.join();
    let n: Vec<usize> = report.split(' ').map(|x| x.parse().unwrap()).collect();
    let (before, during, after) = (n[0], n[1], n[2]);
    // While the lock was held, every dropped handle's mapping was kept (the
    // C library's robust list may point into it)...
    assert_eq!(
        during,
        before + 100,
        "mappings not kept while held ({report})"
    );
    // ...and once it was free, a sweep unmapped them all.
    assert!(
        after <= before,
        "mappings grew from {before} to {after} ({report})"
    );
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

/// Guards dropped after this thread's held record is gone (thread-local
/// teardown): an inner level of a recursive lock cannot be told from the
/// outer one then, so it must not unlock while the outer `&mut T` lives.
/// The thread's exit hands the lock on as owner-died instead.
#[test]
fn guards_dropped_during_thread_exit_do_not_free_an_outer_guard() -> Res {
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicU8, Ordering};

    type Held = (ValueGuard<'static, u64>, LockGuard<'static>, &'static RLock);
    struct Slot(Option<Held>);
    // 1: still locked after the inner guard dropped; 2: it was free.
    static SEEN: AtomicU8 = AtomicU8::new(0);
    impl Drop for Slot {
        fn drop(&mut self) {
            if let Some((outer, inner, lock)) = self.0.take() {
                drop(inner);
                let held = lock.is_locked().unwrap_or(false);
                SEEN.store(if held { 1 } else { 2 }, Ordering::SeqCst);
                drop(outer);
            }
        }
    }
    thread_local! {
        static SLOT: RefCell<Slot> = const { RefCell::new(Slot(None)) };
    }

    let rlock: &'static RLock = Box::leak(Box::new(RLock::anonymous()?));
    let value: &'static Value<u64> = Box::leak(Box::new(Value::anonymous_with_lock(0, rlock)?));
    std::thread::spawn(move || {
        // Touched first, so destroyed after the library's thread-locals.
        SLOT.with(|_| {});
        let outer = value.lock().map_err(LockError::into_error).unwrap();
        let inner = rlock.lock().map_err(LockError::into_error).unwrap();
        SLOT.with(|s| s.borrow_mut().0 = Some((outer, inner, rlock)));
    })
    .join()
    .unwrap();
    assert_eq!(
        SEEN.load(Ordering::SeqCst),
        1,
        "the inner guard freed the lock under the outer one"
    );
    // The exited thread still held it: handed on as owner-died.
    match value.lock() {
        Err(LockError::OwnerDied(d)) => drop(d.make_consistent()?),
        Ok(_) => {}
        Err(LockError::Failed(e)) => return Err(e.into()),
    }
    Ok(())
}
