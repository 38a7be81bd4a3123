//! W7-frames: the seeds' frame job (`examples/frames.rs`), frames/s.
//!
//! Synthetic 1920x1080 RGB frames and a per-frame filter (grayscale, 3x3
//! box blur, 256-bin histogram), from `examples/support/frames.rs`, which
//! the example includes too: the same frames and the same work. Systems:
//!
//! - `shmprim`: a 2-worker `Pool`, the frames in one lock-free `RawArray`
//!   given to the workers once (the initializer), only indices in the
//!   tasks (zero copy), `map` with chunksize 1;
//! - `shmprim-copy`: the same pool with each frame copied into its task
//!   (what Python's pickling does); the frames are cloned before the
//!   clock starts;
//! - `sequential`: the filter over every frame in this thread;
//! - `rayon`: a 2-thread pool, `par_iter` over the frames;
//! - `python-mp`: Python's `Pool(2).map` with chunksize 1 and the numpy
//!   twin of the filter (`python/peers_frames.py`), on the very frames
//!   (written to a temporary file), its checksums checked against ours;
//!   skipped with a note when numpy is missing.
//!
//! Pool starts are not timed (as in W6). Every contender's checksum is
//! checked against the sequential one.

#[path = "../../../examples/support/frames.rs"]
mod work;

use std::time::Instant;

use rayon::prelude::*;
use shmprim::pool::Pool;

use crate::common::median;
use crate::python::Python;
use crate::{rounds, Contender, Plan, Results};

/// Frames per measurement.
fn frames(quick: bool) -> usize {
    if quick {
        8
    } else {
        24
    }
}

fn fps(n: usize, t: Instant) -> f64 {
    n as f64 / t.elapsed().as_secs_f64()
}

fn pool_with_frames(frames: &[Vec<u8>]) -> Pool {
    let shared = work::share_frames(frames).expect("shared frames");
    let p = Pool::builder()
        .workers(2)
        .initializer(work::keep_frames, shared)
        .build()
        .expect("pool");
    // Both workers started and holding the array.
    p.map_chunked(work::filter_shared, [0, 0], 1)
        .expect("warm-up");
    p
}

pub fn run(plan: &Plan, py: &Python, res: &mut Results) {
    let n = frames(plan.quick);
    println!("\nW7: {n} frames of 1920x1080 RGB per run (frames/s, higher is better)");
    let frames: Vec<Vec<u8>> = (0..n).map(work::make_frame).collect();
    let want: Vec<u64> = frames.iter().map(|f| work::filter(f)).collect();
    let check = work::combine(&want);
    let file = std::env::temp_dir().join(format!("shmprim-w7-{}.rgb", std::process::id()));
    let numpy = py.frames_missing();
    match &numpy {
        None => std::fs::write(&file, frames.concat()).expect("frames file"),
        Some(why) => res.absent(&format!("python-mp in W7 ({why})")),
    }
    let (fr, wa) = (&frames, &want);
    let mut cs: Vec<Contender<'_>> = vec![
        (
            "sequential".into(),
            Box::new(move || {
                let t = Instant::now();
                let v: Vec<u64> = fr.iter().map(|f| work::filter(f)).collect();
                let r = fps(n, t);
                assert_eq!(&v, wa, "sequential");
                r
            }),
        ),
        (
            "shmprim".into(),
            Box::new(move || {
                let p = pool_with_frames(fr);
                let t = Instant::now();
                let v = p
                    .map_chunked(work::filter_shared, 0..n as u64, 1)
                    .expect("zero-copy map");
                let r = fps(n, t);
                assert_eq!(&v, wa, "zero-copy pool");
                r
            }),
        ),
        (
            "shmprim-copy".into(),
            Box::new(move || {
                let p = Pool::new(2).expect("pool");
                p.apply(work::filter_copied, work::Frame(fr[0].clone()))
                    .expect("warm-up");
                let items: Vec<work::Frame> = fr.iter().map(|f| work::Frame(f.clone())).collect();
                let t = Instant::now();
                let v = p
                    .map_chunked(work::filter_copied, items, 1)
                    .expect("copying map");
                let r = fps(n, t);
                assert_eq!(&v, wa, "copying pool");
                r
            }),
        ),
        (
            "rayon".into(),
            Box::new(move || {
                let p = rayon::ThreadPoolBuilder::new()
                    .num_threads(2)
                    .build()
                    .expect("rayon pool");
                let t = Instant::now();
                let v: Vec<u64> = p.install(|| fr.par_iter().map(|f| work::filter(f)).collect());
                let r = fps(n, t);
                assert_eq!(&v, wa, "rayon");
                r
            }),
        ),
    ];
    if numpy.is_none() {
        let f = &file;
        cs.push((
            "python-mp".into(),
            Box::new(move || {
                let (r, sum) = py.frames(f, n);
                assert_eq!(sum, check, "python-mp's checksums differ");
                r
            }),
        ));
    }
    let figs: Vec<(String, f64)> = rounds(plan.rounds, cs)
        .into_iter()
        .map(|(name, v)| (name, median(v)))
        .collect();
    let _ = std::fs::remove_file(&file);
    let get = |s: &str| figs.iter().find(|(k, _)| k == s).map(|f| f.1);
    for (name, v) in &figs {
        println!("  {:<20} {name:<16} {v:>14.1}", "W7-frames");
        res.push("W7-frames", name, *v);
    }
    if let (Some(seq), Some(zero), Some(copy)) =
        (get("sequential"), get("shmprim"), get("shmprim-copy"))
    {
        println!(
            "  speed-up over sequential: zero copy {:.2}x, copying {:.2}x; copying costs {:.1} ms per frame more than zero copy",
            zero / seq,
            copy / seq,
            (1.0 / copy - 1.0 / zero) * 1e3
        );
    }
}
