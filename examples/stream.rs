//! A producer process streams messages to a consumer process through a
//! named simplex `Pipe`; the consumer checks every message and prints the
//! throughput.
//!
//! ```text
//! cargo run --release --example stream [MESSAGES] [SIZE] [zero-copy]
//! ```
//!
//! The parent creates the pipe under a fresh name, claims the read end,
//! and starts the producer by running this same program again with
//! `produce` arguments; the producer claims the write end. Messages carry
//! their sequence number, so the consumer notices anything lost,
//! duplicated or reordered. A message larger than half the ring is streamed
//! in fragments and arrives whole.

use std::process::Command;
use std::time::Instant;

use shmprim::{End, Error, Pipe};

const RING: usize = 1 << 20;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("produce") {
        return produce(&args[2], args[3].parse()?, args[4].parse()?, args.len() > 5);
    }
    let n: u64 = args.get(1).map_or(Ok(1_000_000), |s| s.parse())?;
    let size: usize = args.get(2).map_or(Ok(64), |s| s.parse())?;
    let zero_copy = args.get(3).is_some_and(|s| s == "zero-copy");
    if size < 8 {
        return Err("SIZE must be at least 8 (the sequence number)".into());
    }

    let name = shmprim::segment::unique_name("stream");
    let pipe = Pipe::create_simplex(&name, RING)?;
    let mut rx = pipe.connect(End::A)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["produce", &name, &n.to_string(), &size.to_string()]);
    if zero_copy {
        cmd.arg("zero-copy");
    }
    let mut child = cmd.spawn()?;

    let mut buf = vec![0u8; size];
    let mut start = None;
    for want in 0..n {
        let len = if zero_copy {
            let m = rx.recv_in_place()?;
            buf[..8].copy_from_slice(&m[..8]);
            m.len()
        } else {
            rx.recv_bytes_into(&mut buf)?
        };
        start.get_or_insert_with(Instant::now);
        let seq = u64::from_le_bytes(buf[..8].try_into()?);
        if len != size || seq != want {
            return Err(format!("message {want}: got #{seq} of {len} bytes").into());
        }
    }
    let secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    match rx.recv_bytes() {
        Err(Error::Disconnected) => {}
        other => return Err(format!("after the last message: {other:?}").into()),
    }
    if !child.wait()?.success() {
        return Err("the producer failed".into());
    }
    let bytes = n as f64 * size as f64;
    println!(
        "{n} messages of {size} B{}: {:.2} s, {:.2} M msg/s, {:.2} GB/s",
        if zero_copy { " (zero copy)" } else { "" },
        secs,
        n as f64 / secs / 1e6,
        bytes / secs / 1e9
    );
    Ok(())
}

fn produce(
    name: &str,
    n: u64,
    size: usize,
    zero_copy: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let pipe = Pipe::open(name)?;
    let mut tx = pipe.connect(End::B)?;
    let mut msg = vec![0xA5u8; size];
    for seq in 0..n {
        if zero_copy {
            let mut r = tx.reserve(size)?;
            r[..8].copy_from_slice(&seq.to_le_bytes());
            r.commit()?;
        } else {
            msg[..8].copy_from_slice(&seq.to_le_bytes());
            tx.send_bytes(&msg)?;
        }
    }
    tx.close();
    Ok(())
}
