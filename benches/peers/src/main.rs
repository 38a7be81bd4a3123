//! shmprim's comparative benchmark suite: the same workloads (W1–W5) run
//! by shmprim and by what its users would otherwise pick, each as separate
//! OS processes on this machine in one run (threads only for the
//! in-process baselines), contenders interleaved round by round, medians
//! reported.
//!
//! Run from the repository root with `cargo bench --bench peers` (or
//! `-- --quick`, `-- --publish`, `-- --only=W6`: chosen workloads); the root bench `benches/peers.rs` builds
//! this crate and runs it. Writes `target/bench-results/peers.json`,
//! `peers.md` and the plots; `--publish` also copies them into
//! `BENCHMARKS.md` and `benches/results/`.
//!
//! Hardware references, kernel baselines and the shmprim Queue / lock
//! drivers are the repository's own benches, pulled in by `#[path]` so that
//! both measure the same code.

// The repository's bench files are written for the root crate's MSRV
// (1.77: no `is_multiple_of`), and each brings its own copy of `common`.
#![allow(clippy::manual_is_multiple_of, clippy::duplicate_mod)]

#[path = "../../common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "../../locks.rs"]
mod locks_bench;
#[allow(dead_code)]
#[path = "../../pipe.rs"]
mod pipe_bench;
#[allow(dead_code)]
#[path = "../../queue.rs"]
mod queue_bench;

mod iox;
mod plot;
mod python;
mod report;
mod stream;
mod w1;
mod w4;
mod w5;
mod w6;
mod w7;
mod w8;

use std::time::Instant;

/// Iteration counts for one invocation. "Slow" systems (the kernel, Python,
/// ipc-channel, futex-parking waits, iceoryx2's streaming, whose publisher
/// sleeps while the subscriber's buffer is full) get fewer messages so that
/// every measurement takes a comparable time.
pub struct Plan {
    pub quick: bool,
    pub rounds: usize,
    /// W1 round trips per run (fast systems / slow systems).
    pub rtt: u64,
    pub rtt_slow: u64,
    /// W2 messages per run.
    pub small: u64,
    pub small_slow: u64,
    /// W3 bytes per run.
    pub large_bytes: u64,
    /// W4 operations: uncontended per run; per worker when contended.
    pub lock_ops: u64,
    pub lock_per_worker: u64,
    /// W5 messages per producer.
    pub mpmc_per: u64,
    /// W2 and W3 sweeps (the headline sizes are 64 B and 64 KiB).
    pub small_sizes: &'static [usize],
    pub large_sizes: &'static [usize],
    /// W8 dict operations per run (fast systems / Python's).
    pub dict_ops: u64,
    pub dict_ops_slow: u64,
}

const FULL: Plan = Plan {
    quick: false,
    rounds: 5,
    // 5 rounds of 40 000: W1's tail is taken over 200 000 trips.
    rtt: 40_000,
    rtt_slow: 3_000,
    small: 1_000_000,
    small_slow: 50_000,
    large_bytes: 128 << 20,
    lock_ops: 1_000_000,
    lock_per_worker: 200_000,
    mpmc_per: 200_000,
    small_sizes: &[16, 64, 256, 1024],
    large_sizes: &[4 << 10, 16 << 10, 64 << 10, 256 << 10],
    dict_ops: 2_000_000,
    dict_ops_slow: 5_000,
};

const QUICK: Plan = Plan {
    quick: true,
    rounds: 2,
    rtt: 2_000,
    rtt_slow: 300,
    small: 50_000,
    small_slow: 5_000,
    large_bytes: 8 << 20,
    lock_ops: 100_000,
    lock_per_worker: 20_000,
    mpmc_per: 100_000,
    small_sizes: &[16, 64],
    large_sizes: &[4 << 10, 64 << 10],
    dict_ops: 100_000,
    dict_ops_slow: 500,
};

/// Headline message sizes of W2 and W3.
pub const SMALL: usize = 64;
pub const LARGE: usize = 64 << 10;

/// One figure of `peers.json`.
#[derive(Clone, Debug)]
pub struct Rec {
    pub workload: &'static str,
    pub system: String,
    pub value: f64,
    pub unit: &'static str,
    pub better: &'static str,
}

/// One point of a throughput-against-size plot.
#[derive(Clone, Debug)]
pub struct Point {
    pub series: String,
    pub size: usize,
    pub value: f64,
}

/// Everything one run produced.
#[derive(Default)]
pub struct Results {
    pub recs: Vec<Rec>,
    /// W1: every round trip of every round, per system (for the plot).
    pub latencies: Vec<(String, Vec<u64>)>,
    /// W2 (messages/s) and W3 (GB/s) against message size.
    pub w2_sweep: Vec<Point>,
    pub w3_sweep: Vec<Point>,
    /// Systems left out of a workload, and why (printed once).
    pub absent: Vec<String>,
}

impl Results {
    pub fn push(&mut self, workload: &'static str, system: &str, value: f64) {
        let (unit, better) = match workload {
            "W1" | "W1-p99" | "W1-p999" | "W1-max" => ("ns", "lower"),
            "W2" | "W2-batch" | "W5" | "W5-1p1c" | "W5-4p4c" | "W5-8p8c" => ("msg/s", "higher"),
            "W3-copy" | "W3-loan" => ("GB/s", "higher"),
            "W8-dict-get" | "W8-dict-insert" | "W8-dict-get-2proc" => ("ops/s", "higher"),
            "W6-start-fork" | "W6-start-spawn" | "W6-start-forkserver" | "W6-pool-apply" => {
                ("ns", "lower")
            }
            "W6-pool-map1" | "W6-pool-map" => ("tasks/s", "higher"),
            "W7-frames" => ("frames/s", "higher"),
            _ => ("ns/op", "lower"),
        };
        self.recs.push(Rec {
            workload,
            system: system.to_string(),
            value,
            unit,
            better,
        });
    }

    pub fn absent(&mut self, what: &str) {
        println!("  (absent: {what})");
        self.absent.push(what.to_string());
    }
}

/// A contender of one workload: its system name and one measurement.
pub type Contender<'a> = (String, Box<dyn FnMut() -> f64 + 'a>);

/// Runs every contender once per round, `rounds` rounds, interleaved so
/// that the machine's drift hits all alike; returns each one's samples.
pub fn rounds(n: usize, mut cs: Vec<Contender<'_>>) -> Vec<(String, Vec<f64>)> {
    let mut out: Vec<(String, Vec<f64>)> = cs.iter().map(|c| (c.0.clone(), Vec::new())).collect();
    for _ in 0..n {
        for (k, c) in cs.iter_mut().enumerate() {
            settle();
            out[k].1.push((c.1)());
        }
    }
    out
}

/// Waits (a little) until the threads of a thread baseline have left the
/// process: a joined thread can linger in `/proc` for a moment, and the
/// next contender may fork.
fn settle() {
    let t = Instant::now();
    while !common::single_threaded() && t.elapsed() < std::time::Duration::from_secs(2) {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// This process's resident memory and mappings, from `/proc/self`.
fn footprint() -> String {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l[6..].trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let maps = std::fs::read_to_string("/proc/self/maps").map_or(0, |s| s.lines().count());
    format!("{rss} resident, {maps} mappings")
}

/// Cores, CPU model and kernel, as printed at the top and published.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!(
        "{cores} cores, {cpu}, Linux {kernel}, {}",
        std::env::consts::ARCH
    )
}

fn main() {
    // First: a child started by W6's spawn and forkserver methods (and
    // shmprim's `Pool` workers) runs its task here and exits.
    shmprim::process::enter();
    // Then procspawn's (W6): its children carry `__PROCSPAWN_CONTENT_PROCESS_ID`,
    // shmprim's `SHMPRIM_PROCESS`; each entry returns at once without its
    // own variable, and each removes its variable before running a child.
    procspawn::init();
    // `cargo bench` passes `--bench`; unknown flags are ignored likewise.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let publish = args.iter().any(|a| a == "--publish");
    // `--only=W6` (or `--only=W1,W6`): just those workload groups (W2 and
    // W3 run together), for iterating on one; never for published figures.
    let only: Vec<&str> = args
        .iter()
        .filter_map(|a| a.strip_prefix("--only="))
        .flat_map(|l| l.split(','))
        .collect();
    let on = |w: &str| only.is_empty() || only.contains(&w);
    if publish && !only.is_empty() {
        eprintln!("--publish publishes the whole suite: drop --only");
        std::process::exit(2);
    }
    let plan = if quick { &QUICK } else { &FULL };
    let started = Instant::now();
    let machine = machine();
    println!(
        "shmprim peers suite{}",
        if quick { " (--quick)" } else { "" }
    );
    println!("machine: {machine}");
    println!(
        "{} interleaved rounds per workload; figures are medians over rounds\n",
        plan.rounds
    );
    let mut res = Results::default();
    let py = python::Python::find();
    iox::init();
    // Removes iceoryx2's leftovers however the run ends (children leave
    // through `_exit` and never drop it).
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            iox::cleanup();
        }
    }
    let cleanup = Cleanup;

    // Process workloads fork this process: they run while it has a single
    // thread; thread baselines join their threads before the next fork.
    let lap = |what: &str, t: Instant| println!("  ({what}: {:.1} s)", t.elapsed().as_secs_f64());
    // W6 first, while this process is fresh: a fork copies what the
    // process holds, and the earlier workloads' leftovers made the bare
    // fork floor 2.5 to 6 times slower (BENCHMARKS.md, "W6 first"); the
    // peers W6 compares with start a fresh program (`/bin/true`,
    // procspawn, Python) and never pay it.
    if on("W6") {
        // What this process holds when its fork figures are taken.
        println!("  (before W6: {})", footprint());
        let t = Instant::now();
        w6::run(plan, &py, &mut res);
        lap("W6", t);
    }
    if on("W1") {
        let t = Instant::now();
        w1::run(plan, &py, &mut res);
        lap("W1", t);
    }
    if on("W2") || on("W3") {
        let t = Instant::now();
        stream::run(plan, &py, &mut res);
        lap("W2, W3", t);
    }
    if on("W4") {
        let t = Instant::now();
        w4::run(plan, &py, &mut res);
        lap("W4", t);
    }
    if on("W5") {
        let t = Instant::now();
        w5::run(plan, &py, &mut res);
        lap("W5", t);
    }
    if on("W8") {
        let t = Instant::now();
        w8::run(plan, &py, &mut res);
        lap("W8", t);
    }
    if on("W7") {
        let t = Instant::now();
        w7::run(plan, &py, &mut res);
        lap("W7", t);
    }
    drop(cleanup);
    // The tables in workload order, whatever order they ran in (the sort
    // is stable: systems keep their order within a workload).
    res.recs.sort_by_key(|r| {
        r.workload[1..]
            .split('-')
            .next()
            .and_then(|n| n.parse::<u32>().ok())
    });

    let elapsed = started.elapsed();
    let command = format!(
        "cargo bench --bench peers{}",
        if quick { " -- --quick" } else { "" }
    );
    report::write(&res, &machine, &command, elapsed, publish);
}
