//! Regression tests for review findings on `Pipe` across `fork`: closing
//! the other process's copy, handing a writer over after an aborted
//! fragmented send, a reader taken over inside a fragmented message, a dead
//! writer seen by short timeouts and `try_`, and an end driven from two
//! processes.
//!
//! The tests fork, so they run one at a time (a lock), and each child runs
//! only pipe code and leaves with `_exit`. Each test has a watchdog, and a
//! child that does not end in time is killed and fails the test.
#![cfg(target_os = "linux")]

mod harness;
use harness::*;
use shmprim::{End, Error, Pipe};
use std::sync::Mutex;
use std::time::Duration;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Python's idiom: after the fork each process closes the end the other
/// uses. Neither close disturbs the other process's end.
#[test]
fn pipe_closing_the_other_process_copy_after_fork_keeps_the_pipe() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog(
        "pipe_closing_the_other_process_copy",
        Duration::from_secs(60),
    );
    let (mut a, mut b) = Pipe::anonymous(4096).unwrap();
    let pid = fork_child(|| {
        a.close(); // the parent's end, never used here
        match b.recv_bytes_timeout(Duration::from_secs(10)) {
            Ok(m) if m == b"ping" => {}
            Ok(_) => return 2,
            Err(Error::Disconnected) => return 3,
            Err(_) => return 4,
        }
        match b.send_bytes(b"pong") {
            Ok(()) => 0,
            Err(_) => 5,
        }
    });
    b.close(); // the child's end, never used here
    let sent = a.send_bytes(b"ping");
    let got = a.recv_bytes_timeout(Duration::from_secs(10));
    let code = reap(pid);
    assert!(sent.is_ok(), "{sent:?}");
    assert_eq!(code, 0, "child exit code (3 = Disconnected)");
    assert_eq!(got.unwrap(), b"pong");
}

/// A writer whose fragmented send timed out half-way in the parent, then
/// taken over by a child: the child's first message arrives whole (the
/// take-over sends an abort record first), not glued onto the parent's
/// abandoned fragments.
#[test]
fn pipe_writer_taken_over_after_an_aborted_fragmented_send() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog(
        "pipe_writer_taken_over_after_an_aborted",
        Duration::from_secs(60),
    );
    let (mut r, mut w) = Pipe::anonymous_simplex(4096).unwrap();
    // Parent: a fragmented send that times out half-way (ring full).
    let e = w.send_bytes_timeout(&[7u8; 6000], Duration::from_millis(1));
    assert!(matches!(e, Err(Error::Timeout)), "{e:?}");
    let pid = fork_child(|| {
        r.close(); // the parent's end: closes this copy only
                   // The parent no longer uses the writer: the child takes it over.
        match w.send_bytes_timeout(b"hello from child", Duration::from_secs(10)) {
            Ok(()) => 0,
            Err(_) => 1,
        }
    });
    let got = r.recv_bytes_timeout(Duration::from_secs(10));
    let code = reap(pid);
    assert_eq!(code, 0);
    assert_eq!(got.unwrap(), b"hello from child");
}

/// A reader taken over by a child inside a fragmented message: the child
/// drops the rest of that message (it cannot complete it) and receives the
/// next one, instead of refusing the continuation and wedging the ring, or
/// taking the last fragment for a message.
#[test]
fn pipe_reader_taken_over_mid_message_skips_to_the_next() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog(
        "pipe_reader_taken_over_mid_message",
        Duration::from_secs(60),
    );
    let (mut r, mut w) = Pipe::anonymous_simplex(4096).unwrap();
    let big: Vec<u8> = (0..6000u32).map(|i| i as u8).collect();
    // A sender thread streams `big` (6 fragments; the ring holds 4) ...
    let t = std::thread::spawn(move || {
        w.send_bytes_timeout(&big, Duration::from_secs(20)).unwrap();
        w
    });
    std::thread::sleep(Duration::from_millis(200));
    // ... the parent receives what is there (kept as a partial message) ...
    assert!(matches!(r.try_recv_bytes(), Err(Error::Empty)));
    // ... and the sender finishes, then sends the next message.
    let mut w = t.join().unwrap();
    w.send_bytes(b"next").unwrap();
    // The child takes the reader over with the head inside `big`.
    let pid = fork_child(
        move || match r.recv_bytes_timeout(Duration::from_secs(10)) {
            Ok(m) if m == b"next" => 0,
            Ok(m) => 10 + m.len().min(100) as i32,
            Err(Error::Corrupt(_)) => 2,
            Err(_) => 3,
        },
    );
    let code = reap(pid);
    assert_eq!(
        code, 0,
        "child exit code (2 = Corrupt, 10+ = a fragment as a message)"
    );
}

/// A writer that died without closing is seen by short timeouts, `try_`
/// and `poll(0)`, not only by a receive that sleeps a whole slice.
#[test]
fn pipe_dead_writer_seen_by_short_timeouts_and_try() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog(
        "pipe_dead_writer_seen_by_short_timeouts",
        Duration::from_secs(60),
    );
    let name = unique("deadw");
    let _rm = RemoveOnDrop(name.clone());
    let pipe = Pipe::create_simplex(&name, 4096).unwrap();
    let mut r = pipe.connect(End::A).unwrap();
    let p2 = pipe.clone();
    let pid = fork_child(move || {
        let Ok(mut w) = p2.connect(End::B) else {
            return 1;
        };
        if w.send_bytes(b"last words").is_err() {
            return 2;
        }
        std::mem::forget(w); // dies without closing, as SIGKILL would
        0
    });
    assert_eq!(reap(pid), 0);
    assert_eq!(
        r.recv_bytes_timeout(Duration::from_secs(10)).unwrap(),
        b"last words"
    );
    let mut seen = Vec::new();
    for _ in 0..100 {
        let o = [
            format!("{:?}", r.try_recv_bytes().err()),
            format!("{:?}", r.poll(Some(Duration::ZERO))),
            format!(
                "{:?}",
                r.recv_bytes_timeout(Duration::from_millis(20)).err()
            ),
        ];
        let done = o
            .iter()
            .all(|o| o.contains("Disconnected") || o.contains("Ok(true)"));
        seen.extend(o);
        if done {
            return;
        }
    }
    panic!("short polls never saw the dead writer: {:?}", &seen[..6]);
}

/// An end the parent used, then a forked child took over: the parent's
/// later operations on it are `AlreadyClaimed` (two processes never drive
/// one end at once), and dropping it does not close it for the child.
#[test]
fn pipe_end_taken_over_by_a_child_is_refused_in_the_parent() {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog("pipe_end_taken_over_by_a_child", Duration::from_secs(60));
    let (mut r, mut w) = Pipe::anonymous_simplex(4096).unwrap();
    w.send_bytes(b"one").unwrap();
    w.send_bytes(b"two").unwrap();
    assert_eq!(r.recv_bytes().unwrap(), b"one");
    let (mut done_r, mut done_w) = Pipe::anonymous_simplex(4096).unwrap();
    let pid = fork_child(|| {
        if r.claim().is_err() {
            return 1;
        }
        if done_w.send_bytes(b"claimed").is_err() {
            return 2;
        }
        match r.recv_bytes_timeout(Duration::from_secs(10)) {
            Ok(m) if m == b"two" => {}
            _ => return 3,
        }
        match r.recv_bytes_timeout(Duration::from_secs(10)) {
            Ok(m) if m == b"three" => 0,
            _ => 4,
        }
    });
    drop(done_w);
    assert_eq!(
        done_r.recv_bytes_timeout(Duration::from_secs(10)).unwrap(),
        b"claimed"
    );
    // The parent's copy of the reader is no longer its own.
    assert!(matches!(r.try_recv_bytes(), Err(Error::AlreadyClaimed)));
    assert!(matches!(r.try_recv_in_place(), Err(Error::AlreadyClaimed)));
    assert!(matches!(
        r.poll(Some(Duration::ZERO)),
        Err(Error::AlreadyClaimed)
    ));
    drop(r); // closes this handle only
    w.send_bytes(b"three").unwrap();
    assert_eq!(reap(pid), 0);
}
