//! A pipe whose ring positions start just below 2^64: messages of every
//! size (single records, fragments, padding at the wrap) stream across the
//! wrap whole and in order, in both directions, between two processes.
#![cfg(target_os = "linux")]

mod harness;
use harness::*;
use shmprim::{End, Pipe};
use std::time::Duration;

const COUNT: usize = 3000;
const LONG: Duration = Duration::from_secs(20);

/// Message `i`: 0 to 3071 bytes (a 4 KiB ring fragments those over 2 KiB).
fn message(i: usize) -> Vec<u8> {
    (0..(i * 523) % 3072)
        .map(|j| (i * 13 + j * 5) as u8)
        .collect()
}

// The far end: receives each message, checks it, and echoes it back.
child!(fn wrap_echo(ctx) {
    let pipe = Pipe::open(&ctx.arg("pipe"))?;
    let mut b = pipe.connect(End::B)?;
    for i in 0..COUNT {
        let m = b.recv_bytes_timeout(LONG)?;
        if m != message(i) {
            return Err(format!("message {i} arrived wrong ({} bytes)", m.len()).into());
        }
        b.send_bytes_timeout(&m, LONG)?;
    }
});

#[test]
fn a_pipe_streams_across_the_2_64_wrap() {
    let _w = watchdog(
        "a_pipe_streams_across_the_2_64_wrap",
        Duration::from_secs(120),
    );
    let name = unique("pwrap");
    let _rm = RemoveOnDrop(name.clone());
    let pipe = Pipe::create(&name, 4096).unwrap();
    // 64 KiB below the wrap: about a fortieth of the traffic comes before it.
    // SAFETY: fresh pipe, no end connected yet.
    unsafe { pipe.__start_positions_at(u64::MAX - (64 << 10) + 1) };
    let mut a = pipe.connect(End::A).unwrap();
    let child = spawn("wrap_echo").arg("pipe", &name).start();
    // Two messages in flight, so that both rings hold several at once.
    a.send_bytes_timeout(&message(0), LONG).unwrap();
    for i in 0..COUNT {
        if i + 1 < COUNT {
            a.send_bytes_timeout(&message(i + 1), LONG).unwrap();
        }
        let m = a.recv_bytes_timeout(LONG).unwrap();
        assert!(
            m == message(i),
            "echo {i} arrived wrong ({} bytes)",
            m.len()
        );
    }
    child.join();
}
