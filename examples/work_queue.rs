//! A work queue feeding several worker processes: the parent puts jobs on a
//! `JoinableQueue`, workers (this program re-run with `worker`) take them,
//! send results back on a plain `Queue`, and mark each job done; the
//! parent `join`s, then stops the workers with one sentinel each, and
//! prints the throughput.
//!
//! ```text
//! cargo run --release --example work_queue [WORKERS] [JOBS]
//! ```
//!
//! Python's equivalent is the `JoinableQueue` + sentinel pattern from the
//! `multiprocessing` documentation.

use std::process::Command;
use std::time::Instant;

use shmprim::{Error, JoinableQueue, Queue};

/// A job: a number to hash `rounds` times. The sentinel has `rounds ==
/// u64::MAX`.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Job {
    id: u64,
    rounds: u64,
}

// SAFETY: two u64 fields, `repr(C)`, no padding, every bit pattern valid.
unsafe impl shmprim::Plain for Job {
    const TYPE_TAG: u64 = shmprim::type_tag("work_queue::Job");
}

const SENTINEL: Job = Job {
    id: 0,
    rounds: u64::MAX,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("worker") => worker(&args[2], &args[3]),
        _ => {
            let workers = args.get(1).map_or(Ok(4), |s| s.parse())?;
            let jobs = args.get(2).map_or(Ok(200_000), |s| s.parse())?;
            parent(workers, jobs)
        }
    }
}

fn parent(workers: usize, jobs: u64) -> Result<(), Box<dyn std::error::Error>> {
    let jobs_name = shmprim::segment::unique_name("jobs");
    let results_name = shmprim::segment::unique_name("results");
    let todo = JoinableQueue::create(&jobs_name, 1024, std::mem::size_of::<Job>())?;
    let results = Queue::create(&results_name, 1024, 16)?;
    println!(
        "parent {}: {workers} workers, {jobs} jobs",
        std::process::id()
    );

    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for _ in 0..workers {
        children.push(
            Command::new(&exe)
                .args(["worker", &jobs_name, &results_name])
                .spawn()?,
        );
    }

    // Results are collected on a thread while the main thread feeds jobs:
    // both queues are bounded, so one thread doing both could dead-lock
    // with workers blocked on a full result queue.
    let start = Instant::now();
    let collector = {
        let results = results.clone();
        std::thread::spawn(move || -> shmprim::Result<u64> {
            let mut sum = 0u64;
            for _ in 0..jobs {
                let [_, h]: [u64; 2] = results.recv()?;
                sum = sum.wrapping_add(h);
            }
            Ok(sum)
        })
    };
    for id in 0..jobs {
        todo.send(&Job { id, rounds: 16 })?;
    }
    todo.join()?;
    let elapsed = start.elapsed();
    let sum = collector.join().expect("collector panicked")?;
    for _ in 0..workers {
        todo.send(&SENTINEL)?;
    }
    todo.join()?;
    for mut c in children {
        let status = c.wait()?;
        if !status.success() {
            return Err(format!("worker failed: {status}").into());
        }
    }
    let want = (0..jobs).fold(0u64, |a, id| a.wrapping_add(work(id, 16)));
    assert_eq!(sum, want, "a result is missing or wrong");
    println!(
        "{jobs} jobs through {workers} worker processes in {:.3} s: {:.0} jobs/s \
         (results checked)",
        elapsed.as_secs_f64(),
        jobs as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

fn worker(jobs_name: &str, results_name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let todo = JoinableQueue::open(jobs_name)?;
    let results = Queue::open(results_name)?;
    let mut done = 0u64;
    loop {
        let job: Job = match todo.recv() {
            Ok(j) => j,
            Err(Error::Closed) => break,
            Err(e) => return Err(e.into()),
        };
        if job.rounds == SENTINEL.rounds {
            todo.task_done()?;
            break;
        }
        results.send(&[job.id, work(job.id, job.rounds)])?;
        todo.task_done()?;
        done += 1;
    }
    eprintln!("worker {}: {done} jobs", std::process::id());
    Ok(())
}

/// The "work": a few rounds of a 64-bit mixer.
fn work(mut x: u64, rounds: u64) -> u64 {
    for _ in 0..rounds {
        x = (x ^ (x >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    x
}
