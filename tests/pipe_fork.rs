//! An anonymous `Pipe` shared across `fork`: each process uses its own end,
//! the parent drops the child's end without closing it, and the child's
//! death (SIGKILL, after its lazy claim) is seen as `Disconnected`.
//!
//! One test in this binary, so the process forks while no other test thread
//! runs; the child only uses the pipe and leaves with `_exit`.
#![cfg(target_os = "linux")]

use shmprim::{Error, Pipe};
use std::time::{Duration, Instant};

fn child_body(mut b: shmprim::Connection) -> Result<(), Error> {
    let m = b.recv_bytes()?;
    b.send_bytes(&m)?;
    // Stay until killed.
    let _ = b.recv_bytes();
    Ok(())
}

#[test]
fn anonymous_pipe_across_fork_and_child_death() {
    let (mut a, b) = Pipe::anonymous(4096).unwrap();
    // SAFETY: this binary holds one test; the child runs only pipe code and
    // ends with `_exit`, never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        drop(a); // never used here: leaves the parent's end open
        let code = match child_body(b) {
            Ok(()) => 0,
            Err(_) => 1,
        };
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(code) };
    }
    drop(b); // the child's end: never claimed here, so not closed
    a.send_bytes(b"hello across fork").unwrap();
    assert_eq!(
        a.recv_bytes_timeout(Duration::from_secs(20)).unwrap(),
        b"hello across fork"
    );
    // The child blocks in recv; kill it and reap it.
    // SAFETY: `pid` is our child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
    let t = Instant::now();
    let r = a.recv_bytes_timeout(Duration::from_secs(20));
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // Sends go into the ring while it has room (a dead reader is checked
    // only when a send must wait), then turn into Disconnected.
    let mut r = Ok(());
    for _ in 0..1000 {
        r = a.send_bytes(&[0; 100]);
        if r.is_err() {
            break;
        }
    }
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
}
