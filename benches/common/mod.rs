//! Pieces every benchmark shares: forking a child process to run one side
//! of a workload, reaping it with a deadline, and the median of samples.
//! (Each bench is its own crate; `mod common;` pulls this file in.)

#![allow(dead_code)] // not every bench uses every piece

use std::time::{Duration, Instant};

/// Whether this process has exactly one thread (so `fork` is safe here).
pub fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .map(|n| n.trim() == "1")
        })
        .unwrap_or(true)
}

/// Forks a child that runs `body` and exits with 0, or 101 if it panicked.
pub fn fork_child(body: impl FnOnce()) -> libc::pid_t {
    assert!(
        single_threaded(),
        "fork from a multi-threaded bench process"
    );
    // SAFETY: the process is single-threaded (checked above), so the child
    // is a full copy in a consistent state and may run ordinary Rust code.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            Ok(()) => 0,
            Err(_) => 101,
        };
        // SAFETY: `_exit` ends the child at once without running the
        // parent's destructors or atexit handlers (which would, e.g., let
        // the child unmap or unlink what the parent still uses).
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Waits for `pid` (killing it once `deadline` passes); panics unless it
/// exited 0.
pub fn wait_child(pid: libc::pid_t, deadline: Instant) {
    loop {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid int to fill.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "bench child {pid} failed (wait status {status:#x})"
            );
            return;
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "waitpid: {e}");
            continue;
        }
        if Instant::now() > deadline {
            // SAFETY: `pid` is our child and has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: as above; reaps the killed child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            panic!("bench child {pid} hung and was killed");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The median of `v` (the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
