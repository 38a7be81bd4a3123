//! Benchmarks of the futex primitives (Semaphore, BoundedSemaphore, Event,
//! Condition, Barrier) beside their in-process `std` / `parking_lot`
//! counterparts, and across processes.
//!
//! * Uncontended: one thread, one operation pair at a time (acquire +
//!   release, set + clear, lock + notify + unlock, a one-party barrier).
//!   Python's threading primitives are a mutex and a condition variable, so
//!   the baselines are the same shapes on `std` and `parking_lot`.
//! * Event set -> wake latency between two processes: a ping-pong on two
//!   events; half a round trip. Baselines: the same ping-pong between two
//!   threads on `std` `Mutex<bool>` + `Condvar`, and a 1-byte ping-pong on
//!   two kernel pipes between two processes.
//! * Barrier trip time for two processes (each trip waits for both).
//!   Baseline: `std::sync::Barrier` with two threads.
//!
//! `cargo bench --bench sync` (a few seconds), `-- --quick` for a smoke
//! run. Medians of several runs; the process benchmarks fork the bench
//! process itself, so they run first, while it is single-threaded.

mod common;

use common::{fork_child, median, wait_child};
use std::hint::black_box;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use shmprim::{Barrier, BoundedSemaphore, Condition, Event, Semaphore};

struct Plan {
    runs: usize,
    ops: u64,
    round_trips: u64,
}

const FULL: Plan = Plan {
    runs: 5,
    ops: 1_000_000,
    round_trips: 20_000,
};

const QUICK: Plan = Plan {
    runs: 3,
    ops: 100_000,
    round_trips: 2_000,
};

const CHILD_DEADLINE: Duration = Duration::from_secs(120);

/// Median over `runs` of the nanoseconds per call of `f`, `ops` calls a run.
fn time_ns(runs: usize, ops: u64, mut f: impl FnMut()) -> f64 {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..ops {
                    f();
                }
                t.elapsed().as_nanos() as f64 / ops as f64
            })
            .collect(),
    )
}

/// Half the round-trip time of an Event ping-pong with a forked child.
fn event_ping_pong(n: u64) -> f64 {
    let (a, b) = (Event::anonymous().unwrap(), Event::anonymous().unwrap());
    let (ca, cb) = (a.clone(), b.clone());
    let pid = fork_child(move || {
        for _ in 0..n {
            ca.wait();
            ca.clear();
            cb.set();
        }
    });
    let t = Instant::now();
    for _ in 0..n {
        a.set();
        b.wait();
        b.clear();
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64 / 2.0;
    wait_child(pid, Instant::now() + CHILD_DEADLINE);
    ns
}

/// Half the round trip of a 1-byte ping-pong over two pipes with a child.
fn pipe_ping_pong(n: u64) -> f64 {
    let mut p = [0; 2];
    let mut q = [0; 2];
    // SAFETY: valid 2-int arrays to fill.
    unsafe {
        assert_eq!(libc::pipe(p.as_mut_ptr()), 0);
        assert_eq!(libc::pipe(q.as_mut_ptr()), 0);
    }
    let io = |fd: i32, write: bool| {
        let mut byte = 0u8;
        // SAFETY: a 1-byte buffer on the stack, an open pipe end.
        let r = unsafe {
            if write {
                libc::write(fd, (&byte as *const u8).cast(), 1)
            } else {
                libc::read(fd, (&mut byte as *mut u8).cast(), 1)
            }
        };
        assert_eq!(r, 1);
    };
    let pid = fork_child(move || {
        for _ in 0..n {
            io(p[0], false);
            io(q[1], true);
        }
    });
    let t = Instant::now();
    for _ in 0..n {
        io(p[1], true);
        io(q[0], false);
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64 / 2.0;
    wait_child(pid, Instant::now() + CHILD_DEADLINE);
    for fd in p.into_iter().chain(q) {
        // SAFETY: fds we opened and no longer use.
        unsafe { libc::close(fd) };
    }
    ns
}

/// Nanoseconds per trip of a two-process Barrier.
fn barrier_two_processes(n: u64) -> f64 {
    let b = Barrier::anonymous(2, None).unwrap();
    let cb = b.clone();
    let pid = fork_child(move || {
        for _ in 0..n {
            cb.wait().unwrap();
        }
    });
    let t = Instant::now();
    for _ in 0..n {
        b.wait().unwrap();
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    wait_child(pid, Instant::now() + CHILD_DEADLINE);
    ns
}

/// The std ping-pong between two threads on Mutex<bool> + Condvar events.
fn std_event_ping_pong(n: u64) -> f64 {
    type Ev = (Mutex<bool>, Condvar);
    fn set(e: &Ev) {
        *e.0.lock().unwrap() = true;
        e.1.notify_all();
    }
    fn wait_clear(e: &Ev) {
        let mut g = e.0.lock().unwrap();
        while !*g {
            g = e.1.wait(g).unwrap();
        }
        *g = false;
    }
    let a: Arc<Ev> = Arc::default();
    let b: Arc<Ev> = Arc::default();
    let (ca, cb) = (a.clone(), b.clone());
    let t2 = std::thread::spawn(move || {
        for _ in 0..n {
            wait_clear(&ca);
            set(&cb);
        }
    });
    let t = Instant::now();
    for _ in 0..n {
        set(&a);
        wait_clear(&b);
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64 / 2.0;
    t2.join().unwrap();
    ns
}

fn std_barrier_two_threads(n: u64) -> f64 {
    let b = Arc::new(std::sync::Barrier::new(2));
    let cb = b.clone();
    let t2 = std::thread::spawn(move || {
        for _ in 0..n {
            cb.wait();
        }
    });
    let t = Instant::now();
    for _ in 0..n {
        b.wait();
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    t2.join().unwrap();
    ns
}

/// A semaphore as a mutex + condition variable (Python's threading shape).
struct StdSem(Mutex<u32>, Condvar);

impl StdSem {
    fn acquire(&self) {
        let mut g = self.0.lock().unwrap();
        while *g == 0 {
            g = self.1.wait(g).unwrap();
        }
        *g -= 1;
    }
    fn release(&self) {
        *self.0.lock().unwrap() += 1;
        self.1.notify_one();
    }
}

struct PlSem(parking_lot::Mutex<u32>, parking_lot::Condvar);

impl PlSem {
    fn acquire(&self) {
        let mut g = self.0.lock();
        while *g == 0 {
            self.1.wait(&mut g);
        }
        *g -= 1;
    }
    fn release(&self) {
        *self.0.lock() += 1;
        self.1.notify_one();
    }
}

fn row(name: &str, ns: f64, base: f64, base_name: &str) {
    println!("{name:<52} {ns:>9.1} ns  {:>6.2}x {base_name}", ns / base);
}

fn main() {
    let quick = std::env::args().skip(1).any(|a| a == "--quick");
    let plan = if quick { QUICK } else { FULL };
    let started = Instant::now();
    println!(
        "shmprim sync benchmarks{}: {} CPUs; medians of {} runs",
        if quick { " (--quick)" } else { "" },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        plan.runs
    );

    // 1. Across processes (forked while single-threaded).
    let n = plan.round_trips;
    let ev = median((0..plan.runs).map(|_| event_ping_pong(n)).collect());
    let pipe = median((0..plan.runs).map(|_| pipe_ping_pong(n)).collect());
    let bar = median((0..plan.runs).map(|_| barrier_two_processes(n)).collect());
    // Threads from here on.
    let std_ev = median((0..plan.runs).map(|_| std_event_ping_pong(n)).collect());
    let std_bar = median((0..plan.runs).map(|_| std_barrier_two_threads(n)).collect());

    println!();
    println!("Across processes ({n} round trips / trips per run)");
    row(
        "Event set -> wake (2 processes, half round trip)",
        ev,
        std_ev,
        "std Mutex+Condvar event, 2 threads",
    );
    row("", ev, pipe, "kernel pipe ping-pong, 2 processes");
    row("std Mutex+Condvar event (2 threads)", std_ev, std_ev, "");
    row("pipe ping-pong (2 processes)", pipe, std_ev, "std event");
    row(
        "Barrier trip (2 processes)",
        bar,
        std_bar,
        "std::sync::Barrier, 2 threads",
    );
    row("std::sync::Barrier trip (2 threads)", std_bar, std_bar, "");

    // 2. Uncontended, one thread.
    let ops = plan.ops;
    let runs = plan.runs;
    let sem = Semaphore::anonymous(1).unwrap();
    let bsem = BoundedSemaphore::anonymous(1).unwrap();
    let std_sem = StdSem(Mutex::new(1), Condvar::new());
    let pl_sem = PlSem(parking_lot::Mutex::new(1), parking_lot::Condvar::new());
    let t_sem = time_ns(runs, ops, || {
        sem.acquire().unwrap();
        sem.release().unwrap();
    });
    let t_bsem = time_ns(runs, ops, || {
        bsem.acquire().unwrap();
        bsem.release().unwrap();
    });
    let t_std_sem = time_ns(runs, ops, || {
        std_sem.acquire();
        std_sem.release();
    });
    let t_pl_sem = time_ns(runs, ops, || {
        pl_sem.acquire();
        pl_sem.release();
    });

    let event = Event::anonymous().unwrap();
    let std_event: (Mutex<bool>, Condvar) = Default::default();
    let t_event = time_ns(runs, ops, || {
        event.set();
        black_box(event.is_set());
        event.clear();
    });
    let t_std_event = time_ns(runs, ops, || {
        *std_event.0.lock().unwrap() = true;
        std_event.1.notify_all();
        black_box(*std_event.0.lock().unwrap());
        *std_event.0.lock().unwrap() = false;
    });

    let cond = Condition::anonymous().unwrap();
    let std_cond: (Mutex<()>, Condvar) = Default::default();
    let pl_cond: (parking_lot::Mutex<()>, parking_lot::Condvar) = Default::default();
    let t_cond = time_ns(runs, ops, || {
        let g = cond.lock().unwrap();
        black_box(cond.notify_one(&g).unwrap());
    });
    let t_std_cond = time_ns(runs, ops, || {
        let _g = std_cond.0.lock().unwrap();
        std_cond.1.notify_one();
    });
    let t_pl_cond = time_ns(runs, ops, || {
        let _g = pl_cond.0.lock();
        pl_cond.1.notify_one();
    });

    let bar1 = Barrier::anonymous(1, None).unwrap();
    let std_bar1 = std::sync::Barrier::new(1);
    let t_bar1 = time_ns(runs, ops, || {
        black_box(bar1.wait().unwrap());
    });
    let t_std_bar1 = time_ns(runs, ops, || {
        black_box(std_bar1.wait());
    });

    println!();
    println!("Uncontended, one thread ({ops} ops per run)");
    row(
        "Semaphore acquire+release",
        t_sem,
        t_std_sem,
        "std Mutex+Condvar semaphore",
    );
    row("", t_sem, t_pl_sem, "parking_lot Mutex+Condvar semaphore");
    row(
        "BoundedSemaphore acquire+release",
        t_bsem,
        t_std_sem,
        "std Mutex+Condvar semaphore",
    );
    row("std Mutex+Condvar semaphore", t_std_sem, t_std_sem, "");
    row(
        "parking_lot Mutex+Condvar semaphore",
        t_pl_sem,
        t_std_sem,
        "std",
    );
    row(
        "Event set+is_set+clear",
        t_event,
        t_std_event,
        "std Mutex<bool>+Condvar event",
    );
    row(
        "std Mutex<bool>+Condvar event",
        t_std_event,
        t_std_event,
        "",
    );
    row(
        "Condition lock+notify_one(nobody)+unlock",
        t_cond,
        t_std_cond,
        "std Mutex+Condvar",
    );
    row("", t_cond, t_pl_cond, "parking_lot Mutex+Condvar");
    row(
        "std Mutex lock+notify_one+unlock",
        t_std_cond,
        t_std_cond,
        "",
    );
    row(
        "parking_lot Mutex lock+notify_one+unlock",
        t_pl_cond,
        t_std_cond,
        "std",
    );
    row(
        "Barrier(1) wait",
        t_bar1,
        t_std_bar1,
        "std::sync::Barrier(1)",
    );
    row("std::sync::Barrier(1) wait", t_std_bar1, t_std_bar1, "");
    println!();
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
}
