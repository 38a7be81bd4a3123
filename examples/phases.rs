//! N worker processes run a computation in phases, in step: in phase `p`
//! each worker reads every result of phase `p - 1` and writes its own, so a
//! worker that ran ahead would read a half-finished phase. A shared
//! `Barrier` keeps them in step (its action, run once per trip by the last
//! arriver, counts the phases), and an `Event` is the starting gun.
//!
//! ```text
//! cargo run --release --example phases [PROCESSES] [PHASES]
//! ```
//!
//! The parent creates the objects under fresh names, starts the workers by
//! running this program again with `worker` arguments, fires the gun once
//! they are all waiting, and finally recomputes every phase itself to check
//! the table.

use std::process::Command;
use std::time::{Duration, Instant};

use shmprim::{Array, AtomicValue, Barrier, Event};

/// The value worker `i` writes in phase `p`, from the sum of phase `p - 1`.
fn mix(p: u64, i: u64, prev: u64) -> u64 {
    let mut x = prev ^ (p << 32) ^ i;
    x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 29)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") {
        return worker(
            &args[2],
            args[3].parse()?,
            args[4].parse()?,
            args[5].parse()?,
        );
    }
    let procs: u64 = args.get(1).map_or(Ok(4), |s| s.parse())?;
    let phases: u64 = args.get(2).map_or(Ok(200), |s| s.parse())?;
    parent(procs, phases)
}

/// The objects, named after one prefix.
struct Names(String);

impl Names {
    fn of(&self, what: &str) -> String {
        format!("{}{what}", self.0)
    }
}

fn parent(procs: u64, phases: u64) -> Result<(), Box<dyn std::error::Error>> {
    let names = Names(shmprim::segment::unique_name("phases"));
    // A generous default timeout: if a worker dies, the others' waits break
    // the barrier instead of hanging for ever.
    let barrier = Barrier::create(&names.of("b"), procs as u32, Some(Duration::from_secs(10)))?;
    let start = Event::create(&names.of("go"))?;
    let table = Array::<u64>::create(&names.of("t"), (procs * phases) as usize)?;
    let done = AtomicValue::<u64>::create(&names.of("n"), 0)?;
    println!(
        "parent {}: {procs} workers x {phases} phases",
        std::process::id()
    );

    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for i in 0..procs {
        children.push(
            Command::new(&exe)
                .args([
                    "worker",
                    &names.0,
                    &i.to_string(),
                    &procs.to_string(),
                    &phases.to_string(),
                ])
                .spawn()?,
        );
    }
    // Fire the starting gun once every worker has opened everything (a
    // worker that comes later still sees it: the Event stays set).
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    start.set();
    for mut c in children {
        let status = c.wait()?;
        if !status.success() {
            return Err(format!("worker {} failed: {status}", c.id()).into());
        }
    }
    let elapsed = t.elapsed();

    // Recompute the whole table here and compare.
    let got = table.to_vec()?;
    let mut prev = 0u64;
    for p in 0..phases {
        let row: Vec<u64> = (0..procs).map(|i| mix(p, i, prev)).collect();
        if got[(p * procs) as usize..((p + 1) * procs) as usize] != row[..] {
            return Err(format!("phase {p} is wrong: a worker ran out of step").into());
        }
        prev = row.iter().fold(0, |a, b| a.wrapping_add(*b));
    }
    println!(
        "all {phases} phases in step, the action ran {} times; {:.1} us per phase",
        done.load(),
        elapsed.as_secs_f64() * 1e6 / phases as f64
    );
    if done.load() != phases || barrier.is_broken() {
        return Err("the barrier's action did not run once per phase".into());
    }
    Ok(())
}

fn worker(prefix: &str, i: u64, procs: u64, phases: u64) -> Result<(), Box<dyn std::error::Error>> {
    let names = Names(prefix.to_owned());
    let barrier = Barrier::open(&names.of("b"))?;
    let start = Event::open(&names.of("go"))?;
    let table = Array::<u64>::open(&names.of("t"))?;
    let done = AtomicValue::<u64>::open(&names.of("n"))?;
    start.wait();
    for p in 0..phases {
        let prev = if p == 0 {
            0
        } else {
            let t = table.lock().map_err(|e| e.into_error())?;
            let row = &t[((p - 1) * procs) as usize..(p * procs) as usize];
            row.iter().fold(0u64, |a, b| a.wrapping_add(*b))
        };
        let v = mix(p, i, prev);
        table.lock().map_err(|e| e.into_error())?[(p * procs + i) as usize] = v;
        // Nobody starts phase p + 1 before everybody has written phase p.
        barrier.wait_with_action(|| {
            done.fetch_add(1);
        })?;
    }
    Ok(())
}
