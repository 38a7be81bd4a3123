//! A blocked receiver that a send wakes takes the message without
//! announcing itself again. Announcing costs a heavy barrier
//! (`membarrier`: inter-processor interrupts, 5-15 us on a VM), and paying
//! it between the wake-up and the answer kept W1's round trips in a slow
//! regime (BENCHMARKS.md, "W1's two regimes"). The fault points count the
//! waiter's steps: every announcement is followed by one sleep, and after
//! a wake-up by a notifier the next step is the answer, so the receiver
//! announces once, plus once more for each sleep slice that ran out.
#![cfg(all(target_os = "linux", feature = "fault-injection"))]

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use shmprim::{Pipe, WaitPolicy};

static ANNOUNCED: AtomicU32 = AtomicU32::new(0);
static SLEPT: AtomicU32 = AtomicU32::new(0);
static WOKEN: AtomicU32 = AtomicU32::new(0);
static TIMED_OUT: AtomicU32 = AtomicU32::new(0);

fn count(point: &'static str) {
    let c = match point {
        "pipe.wait.announce" => &ANNOUNCED,
        "pipe.wait.sleep" => &SLEPT,
        "pipe.wait.woken" => &WOKEN,
        "pipe.wait.timed_out" => &TIMED_OUT,
        _ => return,
    };
    c.fetch_add(1, SeqCst);
}

#[test]
fn a_woken_receiver_answers_without_announcing_again() {
    let (mut tx, mut rx) = Pipe::anonymous(4096).unwrap();
    tx.set_wait_policy(WaitPolicy::park());
    rx.set_wait_policy(WaitPolicy::park());
    shmprim::fault::set_hook(Some(count));
    // Only the receiver waits: the sender's ring has room throughout.
    let receiver = std::thread::spawn(move || {
        rx.claim().unwrap();
        let mut buf = [0u8; 8];
        let n = rx.recv_bytes_into(&mut buf).unwrap();
        (n, buf)
    });
    tx.claim().unwrap();
    let start = Instant::now();
    while SLEPT.load(SeqCst) == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "never slept");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Into its futex wait (a send before it would only make the wait
    // return at once, which also counts as woken).
    std::thread::sleep(Duration::from_millis(10));
    tx.send_bytes(b"wake up!").unwrap();
    let (n, buf) = receiver.join().unwrap();
    shmprim::fault::set_hook(None);
    assert_eq!((n, &buf), (8, b"wake up!"));
    let (announced, slept, woken, timed_out) = (
        ANNOUNCED.load(SeqCst),
        SLEPT.load(SeqCst),
        WOKEN.load(SeqCst),
        TIMED_OUT.load(SeqCst),
    );
    assert!(woken >= 1, "the send did not wake the receiver");
    assert_eq!(slept, woken + timed_out, "every sleep ends one way");
    assert_eq!(
        announced,
        1 + timed_out,
        "announced again after the wake-up (slept {slept}, woken {woken}, timed out {timed_out})"
    );
}
