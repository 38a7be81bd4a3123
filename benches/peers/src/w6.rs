//! W6: processes and process pools.
//!
//! `W6-start-*`: ns per start + join of a child that returns at once, by
//! start method: shmprim's `process::Builder` (a `fn(u64) -> u64` that
//! returns its argument), `std::process::Command` running `/bin/true` (the
//! same figure under every id: what any start method is weighed against),
//! and Python's `Process` with the same start method.
//!
//! `W6-pool-*`: a 2-worker pool whose tasks return their 8-byte argument:
//! the median `apply` round trip on an idle pool (ns), and `map` with
//! chunksize 1 and with the default chunksize (tasks/s). Beside shmprim's
//! `Pool`: rayon on 2 threads (the floor no process pool can beat; its
//! "chunksize 1" is `with_min_len(1)` and `with_max_len(1)`, one job per
//! item, its `apply` a `spawn` answered over
//! a channel), Python's `Pool` and `ProcessPoolExecutor`. procspawn is not
//! measured (left out for time).
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

use crate::common::median;
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
    res.absent("procspawn (not measured: left out of W6 for time)");
    // `/bin/true` once, shared by the three ids.
    let mut cs: Vec<Contender<'_>> = vec![("command-true".into(), Box::new(|| command_true(fast)))];
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
                for i in 0..4 {
                    p.apply(ident, i).expect("warm-up");
                }
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
