//! Signal storms against the timed waits of the sync primitives: `EINTR`
//! must neither shorten a wait (it ends at its deadline, never before) nor
//! turn it into a wrong result.
#![cfg(target_os = "linux")]

use shmprim::*;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_millis(300);

extern "C" fn on_signal(_: libc::c_int) {}

/// Runs `wait` on a thread while another thread sends it SIGUSR2 every
/// half millisecond; returns how long the wait took.
fn storm<R: Send + 'static>(wait: impl FnOnce() -> R + Send + 'static) -> (R, Duration) {
    // SAFETY: a zeroed sigaction with a handler that does nothing (and no
    // SA_RESTART, so waits see EINTR) is valid; SIGUSR2 is used by nothing
    // else in this test binary.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
    }
    let (tx, rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let waiter = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        tx.send(unsafe { libc::pthread_self() } as usize).unwrap();
        let t = Instant::now();
        let r = wait();
        let took = t.elapsed();
        // Stay alive until the storm has stopped: signalling an exited
        // thread's id is undefined.
        let _ = done_rx.recv();
        (r, took)
    });
    let target = rx.recv().unwrap();
    let start = Instant::now();
    while start.elapsed() < T - Duration::from_millis(50) {
        // SAFETY: the waiter thread is alive until `done_tx` is used below.
        unsafe { libc::pthread_kill(target as libc::pthread_t, libc::SIGUSR2) };
        std::thread::sleep(Duration::from_micros(500));
    }
    done_tx.send(()).unwrap();
    waiter.join().unwrap()
}

fn not_early(what: &str, took: Duration) {
    assert!(
        took >= T,
        "{what}: ended early under a signal storm: {took:?}"
    );
    assert!(
        took < T + Duration::from_secs(5),
        "{what}: stretched: {took:?}"
    );
}

#[test]
fn signal_storms_do_not_shorten_timed_waits() {
    let s = Semaphore::anonymous(0).unwrap();
    let s2 = s.clone();
    let (r, took) = storm(move || s2.acquire_timeout(T));
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    not_early("Semaphore::acquire_timeout", took);

    let e = Event::anonymous().unwrap();
    let e2 = e.clone();
    let (r, took) = storm(move || e2.wait_timeout(T));
    assert!(!r);
    not_early("Event::wait_timeout", took);

    let c = Condition::anonymous().unwrap();
    let c2 = c.clone();
    let (r, took) = storm(move || {
        let mut g = c2.lock().unwrap();
        c2.wait_timeout(&mut g, T)
    });
    assert!(matches!(r, Ok(false)), "{r:?}");
    not_early("Condition::wait_timeout", took);

    let b = Barrier::anonymous(2, None).unwrap();
    let b2 = b.clone();
    let (r, took) = storm(move || b2.wait_timeout(T));
    assert!(matches!(r, Err(Error::BrokenBarrier)), "{r:?}");
    not_early("Barrier::wait_timeout", took);
}
