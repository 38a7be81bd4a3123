//! A pipe end killed at each named instant of a write or a read (the
//! `spsc.*` fault points): the survivor gets every message completed before
//! the death, whole and in order, never a torn or partial one, and then
//! `Disconnected`; nothing hangs (a watchdog fails the test instead).
//!
//! The child (the end that dies) installs a fault hook that raises a flag
//! in a shared `AtomicValue` when its point is reached, then sleeps; the
//! parent waits for the flag and `SIGKILL`s it.
#![cfg(all(target_os = "linux", feature = "fault-injection"))]

mod harness;
use harness::*;
use shmprim::{AtomicValue, End, Error, Pipe};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Messages the dying end completes before it arms its hook.
const BEFORE: usize = 5;
/// How long the parent waits for the child to reach its point.
const REACH: Duration = Duration::from_secs(20);

/// Message `i`: a recognisable pattern of a length that varies with `i`
/// (64 bytes or more, so that a copying send has two halves to stop
/// between).
fn message(i: usize) -> Vec<u8> {
    (0..64 + 24 * i).map(|j| (i * 31 + j * 7) as u8).collect()
}

/// The point to stop at and the flag to raise there (set once, in the
/// child, before the hook is installed).
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

fn arm(point: &str, flag: &str) -> Result<(), Box<dyn std::error::Error>> {
    let point: &'static str = Box::leak(point.to_owned().into_boxed_str());
    let flag = AtomicValue::<u32>::open(flag)?;
    STOP.set((point, flag)).map_err(|_| "armed twice")?;
    shmprim::fault::set_hook(Some(stop_here));
    Ok(())
}

// The writer: sends BEFORE messages, arms its hook, then sends one more
// (stopping inside that send at the point).
child!(fn midwrite_writer(ctx) {
    let pipe = Pipe::open(&ctx.arg("pipe"))?;
    let mut w = pipe.connect(End::B)?;
    for i in 0..BEFORE {
        w.send_bytes(&message(i))?;
    }
    arm(&ctx.arg("point"), &ctx.arg("flag"))?;
    if ctx.arg("zero_copy") == "1" {
        let m = message(BEFORE);
        let mut r = w.reserve(m.len())?;
        r.copy_from_slice(&m);
        r.commit()?;
    } else {
        w.send_bytes(&message(BEFORE))?;
    }
    return Err("the fault point was never reached".into());
});

// The reader: receives BEFORE messages, arms its hook, then receives one
// more (stopping before it releases that one).
child!(fn midread_reader(ctx) {
    let pipe = Pipe::open(&ctx.arg("pipe"))?;
    let mut r = pipe.connect(End::A)?;
    for i in 0..BEFORE {
        if r.recv_bytes()? != message(i) {
            return Err(format!("message {i} arrived wrong").into());
        }
    }
    arm(&ctx.arg("point"), &ctx.arg("flag"))?;
    let _ = r.recv_bytes()?;
    return Err("the fault point was never reached".into());
});

/// Starts `role` on a fresh pipe, waits until it stops at `point`, kills
/// it, and returns the survivor's end.
fn kill_at(role: &str, point: &str, zero_copy: bool) -> (shmprim::Connection, Pipe) {
    let pipe_name = unique("midw");
    let flag_name = unique("midwf");
    let _rm = (
        RemoveOnDrop(pipe_name.clone()),
        RemoveOnDrop(flag_name.clone()),
    );
    let pipe = Pipe::create_simplex(&pipe_name, 4096).unwrap();
    let flag = AtomicValue::<u32>::create(&flag_name, 0).unwrap();
    let survivor = pipe
        .connect(if role == "midwrite_writer" {
            End::A
        } else {
            End::B
        })
        .unwrap();
    let mut child = spawn(role)
        .arg("pipe", &pipe_name)
        .arg("flag", &flag_name)
        .arg("point", point)
        .arg("zero_copy", zero_copy as u8)
        .timeout(Duration::from_secs(40))
        .start();
    if role == "midread_reader" {
        // The reader needs the messages before it can arm its hook.
        let mut s = survivor;
        for i in 0..=BEFORE {
            s.send_bytes(&message(i)).unwrap();
        }
        wait_flag(&flag, point, &child);
        child.kill();
        return (s, pipe);
    }
    wait_flag(&flag, point, &child);
    child.kill();
    (survivor, pipe)
}

fn wait_flag(flag: &AtomicValue<u32>, point: &str, child: &Child) {
    let until = Instant::now() + REACH;
    while flag.load() == 0 {
        assert!(
            Instant::now() < until,
            "the child never reached {point}:\n{}",
            child.output()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The reader's side of a writer killed at `point`: the completed messages
/// (and the interrupted one only if it was already published), then
/// `Disconnected`.
fn check_writer_death(point: &str, zero_copy: bool, published: bool) {
    let (mut r, _pipe) = kill_at("midwrite_writer", point, zero_copy);
    let expected = BEFORE + published as usize;
    for i in 0..expected {
        let got = r.recv_bytes_timeout(Duration::from_secs(10));
        assert_eq!(
            got.as_deref().ok(),
            Some(&message(i)[..]),
            "{point}: message {i}"
        );
    }
    let end = r.recv_bytes_timeout(Duration::from_secs(10));
    assert!(
        matches!(end, Err(Error::Disconnected)),
        "{point}: after the completed messages: {:?}",
        end.map(|m| m.len())
    );
}

#[test]
fn writer_killed_after_reserving() {
    let _w = watchdog("writer_killed_after_reserving", Duration::from_secs(60));
    check_writer_death("spsc.write.reserved", false, false);
    check_writer_death("spsc.write.reserved", true, false);
}

#[test]
fn writer_killed_with_half_the_payload_copied() {
    let _w = watchdog(
        "writer_killed_with_half_the_payload_copied",
        Duration::from_secs(60),
    );
    check_writer_death("spsc.write.payload_partial", false, false);
}

#[test]
fn writer_killed_before_publishing() {
    let _w = watchdog("writer_killed_before_publishing", Duration::from_secs(60));
    check_writer_death("spsc.write.before_publish", false, false);
    check_writer_death("spsc.write.before_publish", true, false);
}

#[test]
fn writer_killed_between_publishing_and_waking() {
    let _w = watchdog(
        "writer_killed_between_publishing_and_waking",
        Duration::from_secs(60),
    );
    check_writer_death("spsc.write.published_before_wake", false, true);
    check_writer_death("spsc.write.published_before_wake", true, true);
}

/// A reader killed with a message read but not released: the writer's
/// sends go on while the ring has room, then `Disconnected` (never a hang),
/// and the space the dead reader held is never handed out again.
#[test]
fn reader_killed_before_releasing() {
    let _w = watchdog("reader_killed_before_releasing", Duration::from_secs(60));
    let (mut w, _pipe) = kill_at("midread_reader", "spsc.read.before_release", false);
    let mut sent = 0;
    let end = loop {
        match w.send_bytes_timeout(&[0xEE; 64], Duration::from_secs(10)) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        // 64-byte messages take 72 bytes; the dead reader still holds the
        // 192-byte record it was reading (message BEFORE), which must never
        // be handed out again.
        assert!(
            sent <= (4096 - (64 + 24 * BEFORE as u64 + 8)) / 72,
            "more sent than the ring holds beside the held record"
        );
    };
    assert!(matches!(end, Error::Disconnected), "{end:?}");
}

/// Forks of the takeover test run one at a time.
static ONE_FORK_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Message `i` of the takeover test: lengths cycle so that records land at
/// many offsets, some deaths falling on a wrap's PAD record.
fn varied(i: usize) -> Vec<u8> {
    (0..64 + 24 * (i % 9))
        .map(|j| (i * 31 + j * 7) as u8)
        .collect()
}

/// A writer killed at `point` inside a send, on an anonymous pipe whose
/// writer end the parent then takes over (`claim`): the parent's reader
/// gets the completed message, the interrupted one only if it was
/// published, and then the new writer's messages, whole and in order —
/// the takeover walks over records published past the `tail` hint.
fn takeover_after(point: &'static str, zero_copy: bool, published: bool, pre: usize) {
    let (mut r, mut w) = Pipe::anonymous_simplex(512).unwrap();
    let flag = AtomicValue::<u32>::anonymous(0).unwrap();
    for i in 0..pre {
        w.send_bytes(&varied(i)).unwrap();
        assert_eq!(r.recv_bytes().unwrap(), varied(i));
    }
    let child = fork_child(|| {
        if w.send_bytes(&varied(999)).is_err() || STOP.set((point, flag.clone())).is_err() {
            return 2;
        }
        shmprim::fault::set_hook(Some(stop_here));
        let m = varied(1000);
        if zero_copy {
            match w.reserve(m.len()) {
                Ok(mut g) => {
                    g.copy_from_slice(&m);
                    let _ = g.commit();
                }
                Err(_) => return 3,
            }
        } else {
            let _ = w.send_bytes(&m);
        }
        4 // the point was never reached
    });
    let until = Instant::now() + REACH;
    while flag.load() == 0 {
        if Instant::now() > until {
            // SAFETY: our child, not yet reaped.
            unsafe { libc::kill(child, libc::SIGKILL) };
            panic!(
                "{point}: the child never reached its point (exit {})",
                reap(child)
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: our child, not yet reaped.
    unsafe { libc::kill(child, libc::SIGKILL) };
    let mut status = 0;
    // SAFETY: our child; `status` is a valid out-pointer.
    unsafe { libc::waitpid(child, &mut status, 0) };
    let what = format!("{point} zero_copy={zero_copy} pre={pre}");
    w.claim().unwrap();
    let first = r.recv_bytes_timeout(Duration::from_secs(5));
    assert_eq!(first.as_deref().ok(), Some(&varied(999)[..]), "{what}");
    if published {
        // Published unless the point was reached by a wrap's PAD record
        // (then the message itself was never started).
        if let Ok(m) = r.recv_bytes_timeout(Duration::from_millis(300)) {
            assert_eq!(m, varied(1000), "{what}");
        }
    }
    for k in 0..64 {
        w.send_bytes_timeout(&varied(2000 + k), Duration::from_secs(5))
            .unwrap();
        let got = r.recv_bytes_timeout(Duration::from_secs(5));
        assert_eq!(
            got.as_deref().ok(),
            Some(&varied(2000 + k)[..]),
            "{what} k={k}"
        );
    }
    assert!(matches!(r.try_recv_bytes(), Err(Error::Empty)), "{what}");
}

#[test]
fn writer_taken_over_after_dying_at_each_point() {
    let _w = watchdog(
        "writer_taken_over_after_dying_at_each_point",
        Duration::from_secs(120),
    );
    let _one = ONE_FORK_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let points = [
        ("spsc.write.reserved", false),
        ("spsc.write.payload_partial", false),
        ("spsc.write.before_publish", false),
        ("spsc.write.before_hint", true),
        ("spsc.write.published_before_wake", true),
    ];
    for pre in 0..9 {
        for (point, published) in points {
            takeover_after(point, false, published, pre);
            if point != "spsc.write.payload_partial" {
                takeover_after(point, true, published, pre);
            }
        }
    }
}
