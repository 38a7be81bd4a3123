//! The pipe's round-trip tail against the hardware's, in the same test:
//! 100 000 8-byte round trips between two processes through a `Pipe`
//! whose ends both spin (never sleep within a trip), and as many through a
//! raw cache-line ping-pong (two atomics in a shared mapping: the
//! reference instrument, which no software can beat). Each is counted for
//! trips slower than 1 ms. A trip that slow, with both sides spinning, is
//! the machine taking a CPU away (or, before issue 15's fix, the pipe's
//! spin yielding it): the reference suffers the first equally, so the test
//! fails only when the pipe has clearly more of them than the reference
//! (a ratio, never an absolute time: CI runs on 2 busy cores). The two are
//! measured in alternating chunks so that they share the machine's mood.
#![cfg(target_os = "linux")]

mod harness;
use harness::*;
use shmprim::{Pipe, WaitPolicy};
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

const TRIPS: u64 = 100_000;
const CHUNKS: u64 = 10;
const SLOW: Duration = Duration::from_millis(1);
/// Spin budget of both ends: no trip of a live peer reaches it.
const SPIN: Duration = Duration::from_millis(20);

/// A shared, zeroed mapping of `len` bytes (inherited across `fork`).
fn shared(len: usize) -> *mut u8 {
    // SAFETY: an anonymous shared mapping; checked below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p.cast()
}

/// Counts, over `n` trips of `trip`, those slower than [`SLOW`].
fn slow_trips(n: u64, mut trip: impl FnMut(u64)) -> u64 {
    let mut slow = 0;
    let mut t = Instant::now();
    for i in 0..n {
        trip(i);
        let u = Instant::now();
        slow += (u - t > SLOW) as u64;
        t = u;
    }
    slow
}

/// The reference: a counter bounced between two cache lines.
fn reference(n: u64) -> u64 {
    let m = shared(4096);
    // SAFETY: two 128-byte-apart, aligned words of a fresh zeroed mapping
    // (never unmapped: the child may still run when we return).
    let (ping, pong) = unsafe { (&*m.cast::<AtomicU64>(), &*m.add(128).cast::<AtomicU64>()) };
    let pid = fork_child(|| {
        for i in 1..=n {
            while ping.load(Acquire) != i {
                std::hint::spin_loop();
            }
            pong.store(i, Release);
        }
        0
    });
    let slow = slow_trips(n, |i| {
        ping.store(i + 1, Release);
        while pong.load(Acquire) != i + 1 {
            std::hint::spin_loop();
        }
    });
    assert_eq!(reap(pid), 0);
    slow
}

/// The pipe, both ends spinning.
fn pipe(n: u64) -> u64 {
    let (mut a, mut b) = Pipe::anonymous(4096).unwrap();
    a.set_wait_policy(WaitPolicy::spin_then_park(SPIN));
    b.set_wait_policy(WaitPolicy::spin_then_park(SPIN));
    let pid = fork_child(|| {
        let mut buf = [0u8; 8];
        for _ in 0..n {
            if b.recv_bytes_into(&mut buf).is_err() || b.send_bytes(&buf).is_err() {
                return 1;
            }
        }
        0
    });
    let mut buf = [0u8; 8];
    let slow = slow_trips(n, |i| {
        a.send_bytes(&i.to_le_bytes()).unwrap();
        assert_eq!(a.recv_bytes_into(&mut buf).unwrap(), 8);
    });
    assert_eq!(reap(pid), 0);
    slow
}

#[test]
fn pipe_round_trips_over_1ms_no_more_than_the_reference() {
    let _w = watchdog(
        "pipe_round_trips_over_1ms_no_more_than_the_reference",
        Duration::from_secs(300),
    );
    let (mut r, mut p) = (0, 0);
    let (mut rt, mut pt) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..CHUNKS {
        let t = Instant::now();
        r += reference(TRIPS / CHUNKS);
        rt += t.elapsed();
        let t = Instant::now();
        p += pipe(TRIPS / CHUNKS);
        pt += t.elapsed();
    }
    println!("round trips over 1 ms in {TRIPS}: pipe {p} in {pt:?}, reference {r} in {rt:?}");
    // A busy machine takes CPUs away per unit of time, not per trip: the
    // reference's count is scaled to the pipe's running time. Noise
    // allowance: twice that and a few more; the yield this guards against
    // gave hundreds (issue 15: 1068 in 200 000 on a loaded run).
    let allowed = 2.0 * r as f64 * pt.as_secs_f64() / rt.as_secs_f64() + 5.0;
    assert!(
        p as f64 <= allowed,
        "the pipe had {p} round trips over 1 ms in {pt:?}, the reference {r} in {rt:?} \
         (allowed {allowed:.0})"
    );
}
