//! A pipe reader killed between deciding that a fragmented message ended
//! (or began) and releasing the fragment that says so: the process that
//! takes the reading end over next must pick up exactly where the dead
//! reader's released records leave it, never one fragment off (the last
//! fragment of a message delivered as a message of its own, or a whole
//! message dropped as the tail of another).
//!
//! The child (the reader that dies) is forked from a test; the tests of
//! this binary take turns (a lock), so the fork copies no other test's
//! thread in the middle of pipe code, and the child runs only pipe code; it stops at the pipe's `pipe.read.message_*` fault
//! point, raises a flag, and sleeps until killed. The parent then takes the
//! reading end back with `claim`.
#![cfg(all(target_os = "linux", feature = "fault-injection"))]

mod harness;
use harness::*;
use shmprim::{AtomicValue, Error, Pipe};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The point to stop at and the flag to raise there (set in the child).
static STOP: OnceLock<(&'static str, AtomicValue<u32>)> = OnceLock::new();

fn stop_here(point: &'static str) {
    if let Some((want, flag)) = STOP.get() {
        if point == *want {
            flag.store(1);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// A message longer than half of a 4096-byte ring: three fragments, which
/// the ring holds together (so no sender has to run during the test).
fn big() -> Vec<u8> {
    (0..3000u32).map(|i| (i * 7 + 3) as u8).collect()
}

/// Sends `big()` then `b"next"`, forks a reader that takes the end over
/// and dies at `point` while receiving `big()`, then takes the end back
/// and returns what the next receive gives.
fn next_after_reader_killed_at(point: &'static str) -> Result<Vec<u8>, Error> {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (mut r, mut w) = Pipe::anonymous_simplex(4096).unwrap();
    w.send_bytes(&big()).unwrap();
    w.send_bytes(b"next").unwrap();
    let flag = AtomicValue::<u32>::anonymous(0).unwrap();
    let child_flag = flag.clone();
    let pid = fork_child(|| {
        if STOP.set((point, child_flag)).is_err() {
            return 2;
        }
        shmprim::fault::set_hook(Some(stop_here));
        // Takes the end over (its first use in this process), receives the
        // fragments of `big()`, and stops at `point` inside that receive.
        let _ = r.recv_bytes_timeout(Duration::from_secs(10));
        3
    });
    let until = Instant::now() + Duration::from_secs(20);
    while flag.load() == 0 {
        if Instant::now() > until {
            // SAFETY: our child, not yet reaped; reaped just below.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let code = reap_killed(pid);
            panic!("the child never reached {point} (exit {code})");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: our child, stopped at the point; reaped just below.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    reap_killed(pid);
    // The child took the end over: take it back.
    r.claim().unwrap();
    r.recv_bytes_timeout(Duration::from_secs(10))
}

/// Reaps a child killed by a signal (or one that exited): its raw status.
fn reap_killed(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    status
}

/// The reader dies after deciding that the last fragment of `big()` ends
/// the message, before releasing it. The next reader must drop that
/// fragment (the message it belongs to was half consumed by the dead
/// reader) and receive `next`, not the fragment as a message.
#[test]
fn reader_killed_before_releasing_the_last_fragment() {
    let _w = watchdog(
        "reader_killed_before_releasing_the_last_fragment",
        Duration::from_secs(60),
    );
    let got = next_after_reader_killed_at("pipe.read.message_unflagged");
    match got {
        Ok(m) => assert!(
            m == b"next",
            "the next reader is one fragment off: a {}-byte message",
            m.len()
        ),
        Err(e) => panic!("the next reader got {e:?}"),
    }
}

/// The reader dies after deciding that the first fragment of `big()`
/// starts a message, before releasing it: nothing of `big()` was consumed,
/// so the next reader receives it whole, then `next`.
#[test]
fn reader_killed_before_releasing_the_first_fragment() {
    let _w = watchdog(
        "reader_killed_before_releasing_the_first_fragment",
        Duration::from_secs(60),
    );
    let got = next_after_reader_killed_at("pipe.read.message_flagged");
    assert!(
        got.as_ref().is_ok_and(|m| *m == big()),
        "the next reader got {:?} instead of the whole message",
        got.map(|m| m.len())
    );
}
