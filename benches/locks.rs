//! Lock benchmarks: shmprim's robust locks beside `std::sync::Mutex` and a
//! plain robust process-shared pthread mutex, uncontended and with two
//! processes (or threads) contending.
//!
//! Run with `cargo bench --bench locks` (a few seconds on two vCPUs), or
//! `cargo bench --bench locks -- --quick` for a smoke run. Plain std timing,
//! no external harness; every figure is the median of several runs, and
//! the runs of the competitors are interleaved so that drift in the
//! machine's speed hits them alike.
//!
//! The process benchmarks `fork` the bench process itself, so they run
//! first, while the process still has a single thread (checked); the
//! thread benchmark comes last. Everything lives in anonymous shared
//! mappings: nothing is left in `/dev/shm`.

mod common;

use common::{fork_child, median, wait_child};
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shmprim::{AtomicValue, Lock, Value};

/// Iteration counts for one invocation.
struct Plan {
    /// Runs per uncontended figure.
    runs: usize,
    /// Operations per uncontended run.
    ops: u64,
    /// Runs per contended figure.
    contended_runs: usize,
    /// Increments per process (or thread) per contended run.
    per_worker: u64,
}

const FULL: Plan = Plan {
    runs: 5,
    ops: 1_000_000,
    contended_runs: 7,
    per_worker: 200_000,
};

const QUICK: Plan = Plan {
    runs: 3,
    ops: 100_000,
    contended_runs: 3,
    per_worker: 20_000,
};

/// A child that is not done by then has hung: it is killed and the bench
/// fails instead of waiting for ever.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Shared anonymous mappings and the plain robust pthread mutex.

/// A `T` in an anonymous `MAP_SHARED` mapping: shared with children forked
/// afterwards, gone when the last process unmaps it.
pub(crate) struct SharedMap<T> {
    ptr: *mut T,
    len: usize,
}

impl<T> SharedMap<T> {
    /// Maps zeroed memory for one `T`; `init` may then initialise it in place.
    pub(crate) fn new(init: impl FnOnce(*mut T)) -> Self {
        let len = std::mem::size_of::<T>().max(1);
        let p = common::shared_zeroed(len);
        assert!(
            p as usize % std::mem::align_of::<T>() == 0,
            "mapping misaligned"
        );
        let ptr = p.cast::<T>();
        init(ptr);
        SharedMap { ptr, len }
    }

    pub(crate) fn get(&self) -> *mut T {
        self.ptr
    }
}

impl<T> Drop for SharedMap<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned and asked for,
        // and nothing borrowed from the mapping outlives `self`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A u64 guarded by a plain robust, process-shared pthread mutex (default
/// type), as a C program would put it in shared memory.
#[repr(C)]
pub(crate) struct PthreadCounter {
    mutex: libc::pthread_mutex_t,
    value: u64,
}

pub(crate) fn pthread_counter() -> SharedMap<PthreadCounter> {
    SharedMap::new(|p: *mut PthreadCounter| {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is initialised by pthread_mutexattr_init before
        // any other use and destroyed once; `p` points to a fresh zeroed
        // mapping large and aligned enough for the struct, which no other
        // thread or process can see yet. Every return code is checked.
        unsafe {
            assert_eq!(libc::pthread_mutexattr_init(attr.as_mut_ptr()), 0);
            let a = attr.as_mut_ptr();
            assert_eq!(
                libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED),
                0
            );
            assert_eq!(
                libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST),
                0
            );
            assert_eq!(
                libc::pthread_mutex_init(std::ptr::addr_of_mut!((*p).mutex), a),
                0
            );
            libc::pthread_mutexattr_destroy(a);
            std::ptr::addr_of_mut!((*p).value).write(0);
        }
    })
}

/// One locked increment of a [`PthreadCounter`].
#[inline(always)]
pub(crate) fn pthread_increment(c: *mut PthreadCounter) {
    // SAFETY: `c` points to a counter initialised by `pthread_counter`, in
    // a mapping that outlives the call; the value is only touched while
    // the mutex is held. Nobody dies holding it here, so lock returns 0.
    unsafe {
        let m = std::ptr::addr_of_mut!((*c).mutex);
        let rc = libc::pthread_mutex_lock(m);
        debug_assert_eq!(rc, 0);
        let v = std::ptr::addr_of_mut!((*c).value);
        v.write(black_box(v.read()) + 1);
        libc::pthread_mutex_unlock(m);
    }
}

pub(crate) fn pthread_value(c: &SharedMap<PthreadCounter>) -> u64 {
    // SAFETY: read between runs, when no other thread or process is
    // running (children have exited, threads have been joined).
    unsafe { std::ptr::addr_of!((*c.get()).value).read() }
}

// ---------------------------------------------------------------------------
// Timing helpers.

/// CLOCK_MONOTONIC in nanoseconds: comparable between processes.
/// Times `ops` calls of `f`; nanoseconds per call.
pub(crate) fn time_loop(ops: u64, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..ops {
        f();
    }
    t.elapsed().as_nanos() as f64 / ops as f64
}

// ---------------------------------------------------------------------------
// Contended runs: two workers started together.

/// The start line shared by the workers of one contended run.
pub(crate) type StartLine = common::StartLine<2>;

/// One contended run with two forked processes, each running `body` once;
/// returns ns per operation over `2 * per_worker` operations.
pub(crate) fn two_processes(
    line: &SharedMap<StartLine>,
    per_worker: u64,
    body: impl Fn() + Copy,
) -> f64 {
    // SAFETY: the start line lives in a shared mapping alive for the whole
    // run; it is made only of atomics, so shared references are fine.
    let line = unsafe { &*line.get() };
    line.reset();
    let pids: Vec<_> = (0..2)
        .map(|w| fork_child(move || line.run(w, body)))
        .collect();
    let t0 = line.start(2, CHILD_DEADLINE);
    let deadline = Instant::now() + CHILD_DEADLINE;
    for pid in pids {
        wait_child(pid, deadline);
    }
    line.elapsed_since(t0) as f64 / (2 * per_worker) as f64
}

/// One contended run with two threads of this process.
pub(crate) fn two_threads(line: &StartLine, per_worker: u64, body: impl Fn() + Sync) -> f64 {
    line.reset();
    // The scope joins both threads before it returns the start time.
    let t0 = std::thread::scope(|s| {
        for w in 0..2 {
            let body = &body;
            s.spawn(move || line.run(w, body));
        }
        line.start(2, CHILD_DEADLINE)
    });
    line.elapsed_since(t0) as f64 / (2 * per_worker) as f64
}

// ---------------------------------------------------------------------------
// Reporting.

struct Row {
    name: &'static str,
    samples: Vec<f64>,
}

impl Row {
    fn new(name: &'static str) -> Self {
        Row {
            name,
            samples: Vec::new(),
        }
    }

    fn median(&self) -> f64 {
        median(self.samples.clone())
    }

    fn spread(&self) -> (f64, f64) {
        let min = self.samples.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.samples.iter().copied().fold(0.0, f64::max);
        (min, max)
    }
}

fn print_table(
    title: &str,
    rows: &[Row],
    std_row: usize,
    pthread_row: usize,
    std_label: &str,
    pthread_label: &str,
) {
    let (std_ns, pthread_ns) = (rows[std_row].median(), rows[pthread_row].median());
    println!();
    println!("{title}");
    println!(
        "{:<44} {:>9} {:>17} {:>10} {:>12}",
        "", "ns/op", "min..max", std_label, pthread_label
    );
    for r in rows {
        let m = r.median();
        let (lo, hi) = r.spread();
        println!(
            "{:<44} {:>9.1} {:>17} {:>9.2}x {:>11.2}x",
            r.name,
            m,
            format!("{lo:.1}..{hi:.1}"),
            m / std_ns,
            m / pthread_ns
        );
    }
}

// ---------------------------------------------------------------------------

/// `--count WHAT N`: runs only N uncontended lock + increment + unlock
/// rounds of WHAT (`lock`, `std`, `pthread`, `parking_lot`), untimed, for
/// `valgrind --tool=callgrind`: the difference between the instruction
/// counts of two N is the cost of that many rounds, free of start-up.
fn count_only(what: &str, n: u64) {
    match what {
        "lock" => {
            let lock = Lock::anonymous().expect("Lock::anonymous");
            let mut x = 0u64;
            for _ in 0..n {
                let _g = black_box(lock.lock().expect("Lock::lock"));
                x = black_box(x) + 1;
            }
            black_box(x);
        }
        "std" => {
            let m = Mutex::new(0u64);
            for _ in 0..n {
                *black_box(&m).lock().expect("Mutex::lock") += 1;
            }
        }
        "parking_lot" => {
            let m = parking_lot::Mutex::new(0u64);
            for _ in 0..n {
                *black_box(&m).lock() += 1;
            }
        }
        "pthread" => {
            let c = pthread_counter();
            for _ in 0..n {
                pthread_increment(black_box(c.get()));
            }
        }
        other => panic!("--count: unknown {other:?}"),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a name filter or other flags meant
    // for libtest harnesses are ignored too.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--count") {
        let what = args.get(i + 1).map_or("lock", String::as_str);
        let n = args
            .get(i + 2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(100_000);
        count_only(what, n);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let plan = if quick { QUICK } else { FULL };
    let started = Instant::now();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "shmprim lock benchmarks{}: {cpus} CPUs; uncontended {} runs x {} ops, contended {} runs x 2 workers x {} increments; medians",
        if quick { " (--quick)" } else { "" },
        plan.runs,
        plan.ops,
        plan.contended_runs,
        plan.per_worker
    );

    // 1. Two processes contending, while this process is single-threaded
    //    (the children are forked).
    let n = plan.per_worker;
    let line = SharedMap::new(|_: *mut StartLine| {}); // zeroed atomics
    let value = Value::<u64>::anonymous(0).expect("Value::anonymous");
    let atomic = AtomicValue::<u64>::anonymous(0).expect("AtomicValue::anonymous");
    let counter = pthread_counter();
    let counter_ptr = counter.get() as usize;
    let shared_lock = Lock::anonymous().expect("Lock::anonymous");
    let plain = SharedMap::new(|p: *mut u64| {
        // SAFETY: `p` is the fresh mapping, aligned and large enough.
        unsafe { p.write(0) }
    });
    let plain_ptr = plain.get() as usize;
    let mut contended = [
        Row::new("shmprim Value<u64> update, 2 processes"),
        Row::new("robust pthread mutex + u64, 2 processes"),
        Row::new("shmprim AtomicValue<u64> fetch_add, 2 procs"),
        Row::new("shmprim Lock + plain u64, 2 processes"),
        Row::new("std Mutex<u64>, 2 threads"),
    ];
    for _ in 0..plan.contended_runs {
        let v = &value;
        contended[0].samples.push(two_processes(&line, n, move || {
            for _ in 0..n {
                v.update(|x| *x += 1).expect("Value::update");
            }
        }));
        contended[1].samples.push(two_processes(&line, n, move || {
            for _ in 0..n {
                pthread_increment(counter_ptr as *mut PthreadCounter);
            }
        }));
        let a = &atomic;
        contended[2].samples.push(two_processes(&line, n, move || {
            for _ in 0..n {
                black_box(a.fetch_add(1));
            }
        }));
        let l = &shared_lock;
        contended[3].samples.push(two_processes(&line, n, move || {
            for _ in 0..n {
                let _g = l.lock().expect("Lock::lock");
                let p = plain_ptr as *mut u64;
                // SAFETY: the u64 lives in a shared mapping that outlives
                // the children; it is only touched while the lock is held.
                unsafe { p.write(black_box(p.read()) + 1) };
            }
        }));
    }
    let expect = 2 * n * plan.contended_runs as u64;
    assert_eq!(
        value.get().expect("Value::get"),
        expect,
        "Value lost increments"
    );
    assert_eq!(
        pthread_value(&counter),
        expect,
        "pthread counter lost increments"
    );
    assert_eq!(atomic.load(), expect, "AtomicValue lost increments");
    // SAFETY: the children have exited; nothing else touches the value.
    let guarded = unsafe { plain.get().read() };
    assert_eq!(guarded, expect, "Lock-guarded u64 lost increments");

    // 2. Uncontended: one thread, interleaved rounds.
    let lock = Lock::anonymous().expect("Lock::anonymous");
    let raw = Lock::anonymous().expect("Lock::anonymous");
    let solo = Value::<u64>::anonymous(0).expect("Value::anonymous");
    let std_mutex = Mutex::new(0u64);
    let solo_counter = pthread_counter();
    let mut uncontended = [
        Row::new("shmprim Lock lock() + guard drop"),
        Row::new("shmprim Value<u64> update(+1)"),
        Row::new("shmprim RawMutex lock() + guard drop"),
        Row::new("shmprim RawMutex acquire() + release()"),
        Row::new("std::sync::Mutex<u64> lock + add"),
        Row::new("robust pthread mutex lock + add + unlock"),
        Row::new("shmprim AtomicValue<u64> fetch_add (no lock)"),
        Row::new("parking_lot::Mutex<u64> lock + add"),
        Row::new("shmprim Lock lock() + add + guard drop"),
    ];
    let pl_mutex = parking_lot::Mutex::new(0u64);
    let mut guarded_solo = 0u64;
    let ops = plan.ops;
    for _ in 0..plan.runs {
        uncontended[0].samples.push(time_loop(ops, || {
            drop(black_box(lock.lock().expect("Lock::lock")));
        }));
        uncontended[1].samples.push(time_loop(ops, || {
            solo.update(|x| *x += 1).expect("Value::update");
        }));
        let m = raw.raw();
        uncontended[2].samples.push(time_loop(ops, || {
            drop(black_box(m.lock().expect("RawMutex::lock")));
        }));
        uncontended[3].samples.push(time_loop(ops, || {
            let _ = black_box(m.acquire().expect("RawMutex::acquire"));
            m.release().expect("RawMutex::release");
        }));
        uncontended[4].samples.push(time_loop(ops, || {
            *black_box(&std_mutex).lock().expect("Mutex::lock") += 1;
        }));
        let c = solo_counter.get();
        uncontended[5]
            .samples
            .push(time_loop(ops, || pthread_increment(black_box(c))));
        uncontended[6].samples.push(time_loop(ops, || {
            black_box(atomic.fetch_add(1));
        }));
        uncontended[7].samples.push(time_loop(ops, || {
            *black_box(&pl_mutex).lock() += 1;
        }));
        uncontended[8].samples.push(time_loop(ops, || {
            let _g = black_box(lock.lock().expect("Lock::lock"));
            guarded_solo = black_box(guarded_solo) + 1;
        }));
    }
    assert_eq!(guarded_solo, ops * plan.runs as u64);
    assert_eq!(*pl_mutex.lock(), ops * plan.runs as u64);
    let runs = plan.runs as u64;
    assert_eq!(
        solo.get().expect("Value::get"),
        ops * runs,
        "Value lost increments"
    );
    assert_eq!(*std_mutex.lock().expect("Mutex::lock"), ops * runs);
    assert_eq!(pthread_value(&solo_counter), ops * runs);

    // 3. Two threads contending on a std Mutex (threads last: no fork after).
    // SAFETY: the start line is made only of atomics, in a mapping that
    // lives until the end of main.
    let line_ref = unsafe { &*line.get() };
    let std_shared = Mutex::new(0u64);
    for _ in 0..plan.contended_runs {
        contended[4].samples.push(two_threads(line_ref, n, || {
            for _ in 0..n {
                *std_shared.lock().expect("Mutex::lock") += 1;
            }
        }));
    }
    assert_eq!(
        *std_shared.lock().expect("Mutex::lock"),
        expect,
        "std Mutex lost increments"
    );

    print_table(
        "Uncontended lock + unlock, one thread (ns/op; ratio to std Mutex and to the plain robust pthread mutex)",
        &uncontended,
        4,
        5,
        "/std",
        "/pthread-rb",
    );
    print_table(
        "Contended: 2 workers x increments of one shared u64 (wall time / total increments)",
        &contended,
        4,
        1,
        "/std-thr",
        "/pthread-rb",
    );
    println!();
    println!(
        "/std: ratio to std::sync::Mutex (in-process; for the contended table, 2 threads). \
         /pthread-rb: ratio to a plain PTHREAD_PROCESS_SHARED + PTHREAD_MUTEX_ROBUST mutex \
         in an anonymous MAP_SHARED mapping (2 forked processes when contended)."
    );
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}
