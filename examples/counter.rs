//! N processes count into one shared `Value<u64>` and fill one shared
//! `Array<u64>` in parallel; then a worker is killed while holding the lock
//! and the parent recovers it.
//!
//! ```text
//! cargo run --release --example counter [PROCESSES] [INCREMENTS]
//! ```
//!
//! The parent creates the segments under fresh names and starts the workers
//! by running this same program again with `worker` arguments; each worker
//! opens the segments by name. The parent's handles remove the names when it
//! exits.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shmprim::{Array, LockError, Value};

const SLOTS_PER_WORKER: usize = 1024;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("worker") => worker(&args[2], &args[3], args[4].parse()?, args[5].parse()?),
        Some("hold") => hold(&args[2]),
        _ => {
            let procs = args.get(1).map_or(Ok(4), |s| s.parse())?;
            let incs = args.get(2).map_or(Ok(100_000), |s| s.parse())?;
            parent(procs, incs)
        }
    }
}

fn parent(procs: usize, incs: u64) -> Result<(), Box<dyn std::error::Error>> {
    let counter_name = shmprim::segment::unique_name("counter");
    let array_name = shmprim::segment::unique_name("squares");
    let counter = Value::<u64>::create(&counter_name, 0)?;
    let squares = Array::<u64>::create(&array_name, procs * SLOTS_PER_WORKER)?;
    println!(
        "parent {}: {} processes x {} locked increments into {counter_name}, \
         each filling {SLOTS_PER_WORKER} slots of {array_name}",
        std::process::id(),
        procs,
        incs
    );

    let exe = std::env::current_exe()?;
    let start = Instant::now();
    let mut children = Vec::new();
    for i in 0..procs {
        children.push(
            Command::new(&exe)
                .args([
                    "worker",
                    &counter_name,
                    &array_name,
                    &i.to_string(),
                    &incs.to_string(),
                ])
                .spawn()?,
        );
    }
    for mut c in children {
        let status = c.wait()?;
        if !status.success() {
            return Err(format!("worker {} failed: {status}", c.id()).into());
        }
    }
    let elapsed = start.elapsed();

    let total = counter.get()?;
    let expected = procs as u64 * incs;
    let filled = squares.to_vec()?;
    let all_right = filled
        .iter()
        .enumerate()
        .all(|(i, &v)| v == (i as u64) * (i as u64));
    println!(
        "counter = {total} (expected {expected}); array {} in {:.1} ms: {:.0} ns per locked increment",
        if all_right { "filled correctly" } else { "WRONG" },
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_nanos() as f64 / expected.max(1) as f64
    );
    if total != expected || !all_right {
        return Err("lost updates".into());
    }

    // A worker takes the lock, is killed with SIGKILL, and the parent finds
    // out at its next lock, repairs the value and carries on.
    let mut holder = Command::new(&exe)
        .args(["hold", &counter_name])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )?;
    print!("{line}");
    holder.kill()?;
    holder.wait()?;
    let t = Instant::now();
    match counter.lock_timeout(Duration::from_secs(5)) {
        Err(LockError::OwnerDied(died)) => {
            println!(
                "parent: holder {} died mid-update (value left at {}), noticed after {:.2} ms; repairing",
                holder.id(),
                **died,
                t.elapsed().as_secs_f64() * 1e3
            );
            let mut guard = died.make_consistent()?;
            *guard = total;
        }
        Ok(_) => return Err("expected to learn of the holder's death".into()),
        Err(LockError::Failed(e)) => return Err(e.into()),
    }
    counter.update(|v| *v += 1)?;
    println!("parent: lock recovered, counter = {}", counter.get()?);
    Ok(())
}

fn worker(
    counter: &str,
    array: &str,
    index: usize,
    incs: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let counter = Value::<u64>::open(counter)?;
    let squares = Array::<u64>::open(array)?;
    for _ in 0..incs {
        counter.update(|v| *v += 1)?;
    }
    {
        // `into_error`: a dead holder's lock is reported, not repaired, here.
        let mut slots = squares.lock().map_err(|e| e.into_error())?;
        let range = index * SLOTS_PER_WORKER..(index + 1) * SLOTS_PER_WORKER;
        for (i, slot) in slots[range.clone()].iter_mut().enumerate() {
            let n = (range.start + i) as u64;
            *slot = n * n;
        }
    }
    println!(
        "  worker {index} (pid {}): {incs} increments and {SLOTS_PER_WORKER} slots in {:.1} ms",
        std::process::id(),
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

fn hold(counter: &str) -> Result<(), Box<dyn std::error::Error>> {
    let counter = Value::<u64>::open(counter)?;
    let mut guard = counter.lock().map_err(|e| e.into_error())?;
    *guard = u64::MAX; // half-way through an update
    println!(
        "  holder (pid {}): holds the lock, value scribbled; waiting to be killed",
        std::process::id()
    );
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
