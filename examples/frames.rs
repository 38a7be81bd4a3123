//! The seeds' frame-processing demo, for real: synthetic 1920x1080 RGB
//! frames, a per-frame filter (grayscale, 3x3 box blur, 256-bin
//! histogram), run four ways with identical checksums:
//!
//! 1. sequentially;
//! 2. `Pool::map` with each frame copied into its task (what Python's
//!    pickling does);
//! 3. `Pool::map` with every frame in one shared [`RawArray<u8>`] given to
//!    the workers once (the initializer) and only indices in the tasks:
//!    zero copy, and no lock (the workers only read, and the frames were
//!    written before the workers started: a phase ordered by the pool);
//! 4. rayon over the same frames (threads: the floor).
//!
//! The frames and the filter live in `examples/support/frames.rs`, which
//! the peers suite's `W7-frames` includes too.
//!
//! `cargo run --release --example frames [FRAMES] [WORKERS]` (default 8
//! frames, `cpu_count()` workers).
//!
//! [`RawArray<u8>`]: shmprim::RawArray

#[path = "support/frames.rs"]
mod work;

use std::time::{Duration, Instant};

use rayon::prelude::*;
use shmprim::pool::Pool;
use shmprim::process;
use work::{filter, Frame};

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    process::enter(); // workers start here
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let workers: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(process::cpu_count);
    println!(
        "{n} frames of {}x{} RGB, {workers} workers",
        work::W,
        work::H
    );
    let frames: Vec<Vec<u8>> = (0..n).map(work::make_frame).collect();

    let t = Instant::now();
    let seq: Vec<u64> = frames.iter().map(|f| filter(f)).collect();
    let t_seq = t.elapsed();

    let pool = Pool::new(workers).expect("pool");
    let t = Instant::now();
    let copied = pool
        .map_chunked(
            work::filter_copied,
            frames.iter().map(|f| Frame(f.clone())),
            1,
        )
        .expect("copying map");
    let t_copy = t.elapsed();
    drop(pool);

    let shared = work::share_frames(&frames).expect("shared frames");
    let pool = Pool::builder()
        .workers(workers)
        .initializer(work::keep_frames, shared)
        .build()
        .expect("pool");
    // Warm up: the workers map the array once, in the initializer.
    pool.apply(work::filter_shared, 0).expect("warm-up");
    let t = Instant::now();
    let zero = pool
        .map_chunked(work::filter_shared, 0..n as u64, 1)
        .expect("zero-copy map");
    let t_zero = t.elapsed();
    drop(pool);

    let t = Instant::now();
    let par: Vec<u64> = frames.par_iter().map(|f| filter(f)).collect();
    let t_rayon = t.elapsed();

    assert_eq!(seq, copied, "copying pool differs");
    assert_eq!(seq, zero, "zero-copy pool differs");
    assert_eq!(seq, par, "rayon differs");
    println!(
        "checksum {:016x} (identical in all four)",
        work::combine(&seq)
    );
    let fps = |d: Duration| n as f64 / secs(d);
    for (name, d) in [
        ("sequential", t_seq),
        ("pool, frames copied", t_copy),
        ("pool, zero copy", t_zero),
        ("rayon (threads)", t_rayon),
    ] {
        println!(
            "{name:<22} {:8.3} s {:8.2} frames/s  speed-up {:5.2}x",
            secs(d),
            fps(d),
            secs(t_seq) / secs(d)
        );
    }
    println!(
        "copying costs {:.2} ms per frame more than zero copy",
        (secs(t_copy) - secs(t_zero)) * 1e3 / n as f64
    );
}
