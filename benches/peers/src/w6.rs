//! W6: processes and process pools.
//!
//! `W6-start-*`: ns per start + join of a child that returns at once, by
//! start method: shmprim's `process::Builder` (a `fn(u64) -> u64` that
//! returns its argument), `std::process::Command` running `/bin/true` (the
//! same figure under every id: what any start method is weighed against),
//! and Python's `Process` with the same start method; under
//! `W6-start-spawn` also `procspawn::spawn(i, f).join()` (procspawn
//! re-executes the binary too: its entry, `procspawn::init`, sits beside
//! shmprim's at the top of `main`), and under every id `fork-floor`: a bare
//! `fork`, `_exit(0)` in the child, `waitpid` (what no fork-based start
//! can beat in this process).
//!
//! `W6-pool-*`: a 2-worker pool whose tasks return their 8-byte argument:
//! the median `apply` round trip on an idle pool (ns), and `map` with
//! chunksize 1 and with the default chunksize (tasks/s). Beside shmprim's
//! `Pool`: rayon on 2 threads (the floor no process pool can beat; its
//! "chunksize 1" is `with_min_len(1)` and `with_max_len(1)`, one job per
//! item, its `apply` a `spawn` answered over
//! a channel), Python's `Pool` and `ProcessPoolExecutor`, and procspawn's
//! `Pool` (2 workers; `spawn(i, f).join()` for apply, one `spawn` per item
//! for map1, at most [`PROCSPAWN_WINDOW`] in flight since every job holds
//! descriptors of its own; procspawn has no chunked map, so it has no
//! `W6-pool-map` figure).
//!
//! This process is single-threaded when W6 starts (every earlier
//! workload joins its threads, and `rounds` settles before each
//! contender), so `fork` is measured here directly; the start workloads
//! run before the pools, whose parent side has a thread of its own.

use std::hint::black_box;
use std::process::Command;
use std::sync::mpsc;
use std::time::Instant;

use rayon::prelude::*;
use shmprim::pool::Pool;
use shmprim::process::{Builder, Method};

use crate::common::{median, warm_up};
use crate::python::Python;
use crate::{rounds, Contender, Plan, Results};

/// The task: returns its argument.
fn ident(x: u64) -> u64 {
    x
}

/// ns per start + join of `n` shmprim children.
fn shm_start(m: Method, n: u64) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        let mut p = Builder::new().method(m).start(ident, i).expect("start");
        assert_eq!(p.join().expect("join"), i);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// ns per start + join of `n` procspawn children.
fn procspawn_start(n: u64) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        let got = procspawn::spawn(i, ident).join().expect("procspawn join");
        assert_eq!(got, i);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// ns per bare `fork` + `_exit(0)` + `waitpid`: the floor of any fork-based
/// start in this process (its page tables are copied either way).
fn fork_floor(n: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: this process is single-threaded here (see the module
        // doc); the child calls only `_exit`, which is async-signal-safe.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            // SAFETY: ends the child at once; no preconditions.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer; `pid` is our child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(r == pid && libc::WIFEXITED(status));
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// Jobs a procspawn map keeps in flight: each holds two `ipc-channel`
/// channels (socket pairs) until joined, and procspawn panics when
/// descriptors run out.
const PROCSPAWN_WINDOW: usize = 64;

/// tasks/s of `n` one-item jobs on a fresh 2-worker procspawn pool (its
/// start not timed), joined in order.
fn procspawn_map1(n: u64) -> f64 {
    let p = procspawn::Pool::new(2).expect("procspawn pool");
    for i in 0..4 {
        p.spawn(i, ident).join().expect("warm-up");
    }
    let t = Instant::now();
    let mut inflight = std::collections::VecDeque::with_capacity(PROCSPAWN_WINDOW);
    let mut done = 0u64;
    for i in 0..n {
        if inflight.len() == PROCSPAWN_WINDOW {
            let (j, h): (u64, procspawn::JoinHandle<u64>) = inflight.pop_front().unwrap();
            assert_eq!(h.join().expect("procspawn map"), j);
            done += 1;
        }
        inflight.push_back((i, p.spawn(i, ident)));
    }
    for (j, h) in inflight {
        assert_eq!(h.join().expect("procspawn map"), j);
        done += 1;
    }
    let dt = t.elapsed().as_secs_f64();
    assert_eq!(done, n);
    n as f64 / dt
}

fn command_true(n: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        assert!(Command::new("/bin/true")
            .status()
            .expect("/bin/true")
            .success());
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// Iteration counts: (fast starts, spawn starts, Python starts, Python
/// spawn starts, applies, map tasks with chunksize 1, map tasks default,
/// Python map tasks).
fn counts(quick: bool) -> [u64; 8] {
    if quick {
        [40, 20, 8, 3, 300, 2_000, 20_000, 1_000]
    } else {
        [200, 100, 30, 8, 3_000, 20_000, 200_000, 5_000]
    }
}

const IDS: [(&str, Method, u32); 3] = [
    ("W6-start-fork", Method::Fork, 0),
    ("W6-start-spawn", Method::Spawn, 1),
    ("W6-start-forkserver", Method::Forkserver, 2),
];

pub fn run(plan: &Plan, py: &Python, res: &mut Results) {
    let [fast, spawns, py_starts, py_spawns, applies, map1, map, py_map] = counts(plan.quick);
    println!("\nW6: process start + join (ns, lower is better); 2-worker pools");
    res.absent("procspawn W6-start-fork, W6-start-forkserver: it has one start method (re-execute the binary), measured under W6-start-spawn");
    res.absent("procspawn W6-pool-map: procspawn's Pool has no map and no chunking (one job, two channels, per item: that is W6-pool-map1)");
    // `/bin/true` and the bare fork once, shared by the three ids.
    let mut cs: Vec<Contender<'_>> = vec![
        ("command-true".into(), Box::new(|| command_true(fast))),
        ("fork-floor".into(), Box::new(|| fork_floor(fast))),
        (
            format!("procspawn/{:?}", Method::Spawn),
            Box::new(|| procspawn_start(spawns)),
        ),
    ];
    for &(_, m, _) in &IDS {
        let n = if m == Method::Spawn { spawns } else { fast };
        cs.push((format!("shmprim/{m:?}"), Box::new(move || shm_start(m, n))));
    }
    if py.ok() {
        for &(_, m, code) in &IDS {
            let n = if m == Method::Spawn {
                py_spawns
            } else {
                py_starts
            };
            cs.push((
                format!("python-mp/{m:?}"),
                Box::new(move || py.start(code, n)),
            ));
        }
    }
    let figs: Vec<(String, f64)> = rounds(plan.rounds, cs)
        .into_iter()
        .map(|(name, v)| (name, median(v)))
        .collect();
    for &(id, m, _) in &IDS {
        for (name, v) in &figs {
            let system = match name.split_once('/') {
                Some((sys, meth)) if meth == format!("{m:?}") => sys,
                None => name.as_str(),
                _ => continue,
            };
            println!("  {id:<20} {system:<16} {v:>14.0}");
            res.push(id, system, *v);
        }
    }

    // Pools: apply round trip (median ns), map tasks/s.
    let mut cs: Vec<Contender<'_>> = vec![
        (
            "shmprim/apply".into(),
            Box::new(|| {
                let p = Pool::new(2).expect("pool");
                // At least 4 round trips and `WARM_NS`: a pool's workers are
                // fresh processes (BENCHMARKS.md, "W1's two regimes").
                warm_up(4, |i| {
                    p.apply(ident, i).expect("warm-up");
                });
                let v = (0..applies)
                    .map(|i| {
                        let t = Instant::now();
                        assert_eq!(p.apply(ident, i).expect("apply"), i);
                        t.elapsed().as_nanos() as f64
                    })
                    .collect();
                median(v)
            }),
        ),
        ("shmprim/map1".into(), Box::new(|| shm_map(map1, Some(1)))),
        (
            "procspawn/apply".into(),
            Box::new(|| {
                let p = procspawn::Pool::new(2).expect("procspawn pool");
                // At least 4 round trips and `WARM_NS`: a pool's workers are
                // fresh processes (BENCHMARKS.md, "W1's two regimes").
                warm_up(4, |i| {
                    p.spawn(i, ident).join().expect("warm-up");
                });
                let v = (0..applies)
                    .map(|i| {
                        let t = Instant::now();
                        assert_eq!(p.spawn(i, ident).join().expect("apply"), i);
                        t.elapsed().as_nanos() as f64
                    })
                    .collect();
                median(v)
            }),
        ),
        (
            "procspawn/map1".into(),
            Box::new(|| procspawn_map1(map1 / 4)),
        ),
        ("shmprim/map".into(), Box::new(|| shm_map(map, None))),
        (
            "rayon/apply".into(),
            Box::new(|| {
                let p = rayon_pool();
                let (tx, rx) = mpsc::channel();
                let v = (0..applies)
                    .map(|i| {
                        let t = Instant::now();
                        let tx = tx.clone();
                        p.spawn(move || tx.send(black_box(ident(i))).unwrap());
                        assert_eq!(rx.recv().unwrap(), i);
                        t.elapsed().as_nanos() as f64
                    })
                    .collect();
                median(v)
            }),
        ),
        (
            "rayon/map1".into(),
            Box::new(|| {
                rayon_map(map1, |v| {
                    v.par_iter()
                        .with_min_len(1)
                        .with_max_len(1)
                        .map(|&x| black_box(ident(x)))
                        .collect()
                })
            }),
        ),
        (
            "rayon/map".into(),
            Box::new(|| {
                rayon_map(map, |v| {
                    v.par_iter().map(|&x| black_box(ident(x))).collect()
                })
            }),
        ),
    ];
    if py.ok() {
        for (sys, kind) in [("python-mp", 0), ("python-executor", 1)] {
            cs.push((
                format!("{sys}/apply"),
                Box::new(move || py.pool(kind, 0, applies / 3)),
            ));
            cs.push((
                format!("{sys}/map1"),
                Box::new(move || py.pool(kind, 1, py_map)),
            ));
            cs.push((
                format!("{sys}/map"),
                Box::new(move || py.pool(kind, 2, py_map * 10)),
            ));
        }
    }
    let figs: Vec<(String, f64)> = rounds(plan.rounds, cs)
        .into_iter()
        .map(|(name, v)| (name, median(v)))
        .collect();
    for (id, task) in [
        ("W6-pool-apply", "apply"),
        ("W6-pool-map1", "map1"),
        ("W6-pool-map", "map"),
    ] {
        for (name, v) in &figs {
            if let Some((system, t)) = name.split_once('/') {
                if t == task {
                    println!("  {id:<20} {system:<16} {v:>14.0}");
                    res.push(id, system, *v);
                }
            }
        }
    }
}

/// tasks/s of one `map` of `n` tasks on a fresh 2-worker pool (its start
/// not timed).
fn shm_map(n: u64, chunk: Option<usize>) -> f64 {
    let p = Pool::new(2).expect("pool");
    p.map(ident, 0..4).expect("warm-up");
    let t = Instant::now();
    let r = match chunk {
        Some(c) => p.map_chunked(ident, 0..n, c),
        None => p.map(ident, 0..n),
    }
    .expect("map");
    let dt = t.elapsed().as_secs_f64();
    assert_eq!(r.len() as u64, n);
    n as f64 / dt
}

fn rayon_pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("rayon pool")
}

/// tasks/s of `f` over `0..n` on a fresh 2-thread rayon pool.
fn rayon_map(n: u64, f: impl Fn(&[u64]) -> Vec<u64> + Send + Sync) -> f64 {
    let p = rayon_pool();
    let items: Vec<u64> = (0..n).collect();
    let t = Instant::now();
    let r = p.install(|| f(&items));
    let dt = t.elapsed().as_secs_f64();
    assert_eq!(r.len() as u64, n);
    n as f64 / dt
}
