//! The seeds' frame-processing demo, for real: synthetic 1920x1080 RGB
//! frames, a per-frame filter (grayscale, 3x3 box blur, 256-bin
//! histogram), run four ways with identical checksums:
//!
//! 1. sequentially;
//! 2. `Pool::map` with each frame copied into its task (what Python's
//!    pickling does);
//! 3. `Pool::map` with every frame in one shared `Array<u8>` given to the
//!    workers once (the initializer) and only indices in the tasks (zero
//!    copy);
//! 4. rayon over the same frames (threads: the floor).
//!
//! `cargo run --release --example frames [FRAMES] [WORKERS]` (default 8
//! frames, `cpu_count()` workers).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use shmprim::pool::Pool;
use shmprim::process::{self, Decoder, Encoder, Message};
use shmprim::Array;

const W: usize = 1920;
const H: usize = 1080;
const FRAME: usize = W * H * 3;

/// A frame's bytes as one task argument (one length-prefixed copy, not
/// an element-by-element `Vec<u8>` encoding).
struct Frame(Vec<u8>);

impl Message for Frame {
    fn encode(&self, out: &mut Encoder) -> shmprim::Result<()> {
        out.put_bytes(&self.0);
        Ok(())
    }
    fn decode(input: &mut Decoder<'_>) -> shmprim::Result<Self> {
        Ok(Frame(input.take_bytes()?.to_vec()))
    }
}

fn make_frame(i: usize) -> Vec<u8> {
    let mut f = vec![0u8; FRAME];
    let mut x = 0x9e37_79b9u32 ^ (i as u32).wrapping_mul(0x85eb_ca6b);
    for (k, px) in f.chunks_exact_mut(3).enumerate() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let (r, c) = (k / W, k % W);
        px[0] = (r + i) as u8 ^ (x as u8 & 7);
        px[1] = (c / 4) as u8;
        px[2] = ((r * c) >> 6) as u8 ^ (x >> 8) as u8;
    }
    f
}

/// Grayscale, 3x3 box blur, histogram; the checksum of all three.
fn filter(rgb: &[u8]) -> u64 {
    let mut gray = vec![0u16; W * H];
    for (g, px) in gray.iter_mut().zip(rgb.chunks_exact(3)) {
        *g = (77 * px[0] as u16 + 150 * px[1] as u16 + 29 * px[2] as u16) >> 8;
    }
    let mut hist = [0u64; 256];
    let mut sum = 0u64;
    for r in 1..H - 1 {
        for c in 1..W - 1 {
            let mut s = 0u16;
            for dr in [r - 1, r, r + 1] {
                let row = &gray[dr * W + c - 1..dr * W + c + 2];
                s += row[0] + row[1] + row[2];
            }
            let b = (s / 9) as usize;
            hist[b] += 1;
            sum = sum.wrapping_add(b as u64);
        }
    }
    hist.iter().enumerate().fold(sum, |h, (i, &n)| {
        h.wrapping_mul(31).wrapping_add(n ^ i as u64)
    })
}

fn filter_copied(f: Frame) -> u64 {
    filter(&f.0)
}

static FRAMES: OnceLock<Array<u8>> = OnceLock::new();

fn keep_frames(a: Array<u8>) {
    let _ = FRAMES.set(a);
}

/// Zero copy: the worker reads frame `i` in place in the shared array.
fn filter_shared(i: u64) -> u64 {
    let a = FRAMES.get().expect("initializer ran");
    let g = a.lock().expect("frames lock");
    let i = i as usize;
    filter(&g[i * FRAME..(i + 1) * FRAME])
}

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
    println!("{n} frames of {W}x{H} RGB, {workers} workers");
    let frames: Vec<Vec<u8>> = (0..n).map(make_frame).collect();

    let t = Instant::now();
    let seq: Vec<u64> = frames.iter().map(|f| filter(f)).collect();
    let t_seq = t.elapsed();

    let pool = Pool::new(workers).expect("pool");
    let t = Instant::now();
    let copied = pool
        .map_chunked(filter_copied, frames.iter().map(|f| Frame(f.clone())), 1)
        .expect("copying map");
    let t_copy = t.elapsed();
    drop(pool);

    let shared = Array::<u8>::anonymous(n * FRAME).expect("shared frames");
    {
        let mut g = shared.lock().expect("lock");
        for (i, f) in frames.iter().enumerate() {
            g[i * FRAME..(i + 1) * FRAME].copy_from_slice(f);
        }
    }
    let pool = Pool::builder()
        .workers(workers)
        .initializer(keep_frames, shared.clone())
        .build()
        .expect("pool");
    // Warm up: the workers map the array once, in the initializer.
    pool.apply(filter_shared, 0).expect("warm-up");
    let t = Instant::now();
    let zero = pool
        .map_chunked(filter_shared, 0..n as u64, 1)
        .expect("zero-copy map");
    let t_zero = t.elapsed();
    drop(pool);

    let t = Instant::now();
    let par: Vec<u64> = frames.par_iter().map(|f| filter(f)).collect();
    let t_rayon = t.elapsed();

    assert_eq!(seq, copied, "copying pool differs");
    assert_eq!(seq, zero, "zero-copy pool differs");
    assert_eq!(seq, par, "rayon differs");
    let check = seq.iter().fold(0u64, |h, &x| h.wrapping_mul(1_000_003) ^ x);
    println!("checksum {check:016x} (identical in all four)");
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
