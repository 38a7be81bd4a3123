//! Queue benchmarks: shmprim's `Queue` between processes (1P1C, 2P1C,
//! 1P2C, 2P2C; 8 B, 64 B and 1 KiB messages) beside crossbeam's
//! `ArrayQueue` between threads and a lock-guarded ring in shared memory
//! (the `Mutex<VecDeque>` a C program would write: shmprim's robust `Lock`
//! around a ring of slots in a segment, yielding while full or empty), and,
//! when `python3` is on the path, Python's `multiprocessing.Queue`.
//!
//! Run with `cargo bench --bench queue` (about a minute on two vCPUs), or
//! `cargo bench --bench queue -- --quick` for a smoke run. Plain std
//! timing; every figure is the median of several runs, and the runs of
//! the three queues are interleaved so that drift in the machine's speed
//! hits them alike; the ratio columns are the medians of each run's own
//! ratios.
//!
//! Process runs `fork` the bench process itself; they happen while it has a
//! single thread (checked): thread runs join their threads before the next
//! fork. Everything lives in anonymous shared mappings: nothing is left in
//! `/dev/shm`.

mod common;

use common::{fork_child, median, mono_ns, wait_child, WARM_STAMP};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use shmprim::{Error, Lock, Queue, Segment};

/// Iteration counts for one invocation.
#[derive(Clone, Copy)]
struct Plan {
    runs: usize,
    /// Messages each producer sends per run.
    per_producer: u64,
    /// Messages Python's queue carries (it is ~100x slower).
    python_msgs: u64,
}

const FULL: Plan = Plan {
    runs: 5,
    per_producer: 1_000_000,
    python_msgs: 100_000,
};

const QUICK: Plan = Plan {
    runs: 3,
    per_producer: 20_000,
    python_msgs: 10_000,
};

/// Slots in every queue.
const CAPACITY: usize = 1024;
const CHILD_DEADLINE: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Processes and the start line.

/// Shared by the workers of one run: they start together; each records
/// when it ended; the last producer to finish closes the queue.
#[repr(C)]
pub(crate) struct StartLine {
    line: common::StartLine<16>,
    producers_left: AtomicU32,
    closed: AtomicU32,
    received: AtomicU64,
    checksum: AtomicU64,
    warm: common::WarmClock,
}

impl StartLine {
    fn reset(&self, producers: u32) {
        self.line.reset();
        self.warm.reset();
        self.producers_left.store(producers, Ordering::SeqCst);
        self.closed.store(0, Ordering::SeqCst);
        self.received.store(0, Ordering::SeqCst);
        self.checksum.store(0, Ordering::SeqCst);
    }

    fn run(&self, worker: usize, body: impl FnOnce()) {
        self.line.run(worker, body)
    }

    fn start(&self, n: u32) -> u64 {
        self.line.start(n, CHILD_DEADLINE)
    }

    fn elapsed_since(&self, t0: u64) -> u64 {
        self.line.elapsed_since(t0)
    }

    /// Producer side: true for the last producer to finish.
    fn producer_done(&self) -> bool {
        self.producers_left.fetch_sub(1, Ordering::SeqCst) == 1
    }
}

/// A `StartLine` in an anonymous shared mapping.
pub(crate) fn start_line() -> &'static StartLine {
    let p = common::shared_zeroed(std::mem::size_of::<StartLine>());
    // SAFETY: a fresh, page-aligned shared mapping of the right size, never
    // unmapped (the bench keeps it for its whole life); all-zero atomics
    // are valid.
    unsafe { &*p.cast::<StartLine>() }
}

/// Runs `p` producer and `c` consumer processes; messages per second.
fn processes(
    line: &StartLine,
    p: usize,
    c: usize,
    per: u64,
    producer: impl Fn(&StartLine) + Copy,
    consumer: impl Fn(&StartLine) + Copy,
) -> f64 {
    line.reset(p as u32);
    let mut pids = Vec::new();
    for w in 0..p {
        pids.push(fork_child(move || line.run(w, || producer(line))));
    }
    for w in 0..c {
        pids.push(fork_child(move || line.run(p + w, || consumer(line))));
    }
    line.start((p + c) as u32);
    let deadline = Instant::now() + CHILD_DEADLINE;
    for pid in pids {
        wait_child(pid, deadline);
    }
    let total = p as u64 * per;
    assert_eq!(line.received.load(Ordering::SeqCst), total, "messages lost");
    check_sum(line, p, per);
    // The clock starts when the warm-up ends (`WarmClock`).
    total as f64 * 1e9 / line.elapsed_since(line.warm.started()) as f64
}

fn check_sum(line: &StartLine, p: usize, per: u64) {
    let want = p as u64 * (per * (per - 1) / 2);
    assert_eq!(line.checksum.load(Ordering::SeqCst), want, "checksum");
}

/// Fills `buf` with message `i` (its first 8 bytes, or fewer, carry `i`).
fn stamp(buf: &mut [u8], i: u64) {
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&i.to_le_bytes()[..n]);
}

fn read_stamp(buf: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = buf.len().min(8);
    b[..n].copy_from_slice(&buf[..n]);
    u64::from_le_bytes(b)
}

// ---------------------------------------------------------------------------
// shmprim's Queue between processes.

pub(crate) fn shm_run(
    line: &StartLine,
    q: &Queue,
    p: usize,
    c: usize,
    size: usize,
    per: u64,
) -> f64 {
    let producer = |line: &StartLine| {
        let mut buf = vec![0u8; size];
        stamp(&mut buf, WARM_STAMP);
        line.warm.warm_up(|| q.send_bytes(&buf).unwrap());
        for i in 0..per {
            stamp(&mut buf, i);
            q.send_bytes(&buf).unwrap();
        }
        if line.producer_done() {
            q.close();
        }
    };
    let consumer = |line: &StartLine| {
        let mut buf = vec![0u8; size];
        let (mut n, mut sum) = (0u64, 0u64);
        loop {
            match q.recv_bytes_into(&mut buf) {
                Ok(len) => {
                    let s = read_stamp(&buf[..len]);
                    if s != WARM_STAMP {
                        n += 1;
                        sum = sum.wrapping_add(s);
                    }
                }
                Err(Error::Closed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        line.received.fetch_add(n, Ordering::SeqCst);
        line.checksum.fetch_add(sum, Ordering::SeqCst);
    };
    processes(line, p, c, per, producer, consumer)
}

// ---------------------------------------------------------------------------
// A lock-guarded ring in shared memory (the `Mutex<VecDeque>` baseline).

/// `head`, `tail`, `closed` (u64 each), then `CAPACITY` slots of
/// `8 + size` bytes (length, payload), all under one robust `Lock`.
struct LockedRing {
    lock: Lock,
    seg: Segment,
    size: usize,
}

impl LockedRing {
    fn new(size: usize) -> LockedRing {
        LockedRing {
            lock: Lock::anonymous().unwrap(),
            seg: Segment::anonymous(24 + CAPACITY * (8 + size)).unwrap(),
            size,
        }
    }

    fn word(&self, i: usize) -> *mut u64 {
        // SAFETY: the three header words lie inside the segment.
        unsafe { self.seg.data_ptr().cast::<u64>().add(i) }
    }

    fn slot(&self, i: u64) -> *mut u8 {
        let i = (i % CAPACITY as u64) as usize;
        // SAFETY: slot `i < CAPACITY` lies inside the segment.
        unsafe { self.seg.data_ptr().add(24 + i * (8 + self.size)) }
    }

    fn send(&self, bytes: &[u8]) {
        loop {
            {
                let _g = self.lock.lock().unwrap();
                // SAFETY: the lock gives this process exclusive access to
                // the ring's words and slots; everything is in bounds.
                unsafe {
                    let (head, tail) = (*self.word(0), *self.word(1));
                    if tail - head < CAPACITY as u64 {
                        let s = self.slot(tail);
                        s.cast::<u64>().write_unaligned(bytes.len() as u64);
                        std::ptr::copy_nonoverlapping(bytes.as_ptr(), s.add(8), bytes.len());
                        *self.word(1) = tail + 1;
                        return;
                    }
                }
            }
            std::thread::yield_now();
        }
    }

    /// The next message's length, or `None` once closed and drained.
    fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        loop {
            {
                let _g = self.lock.lock().unwrap();
                // SAFETY: as in `send`.
                unsafe {
                    let (head, tail) = (*self.word(0), *self.word(1));
                    if head < tail {
                        let s = self.slot(head);
                        let n = s.cast::<u64>().read_unaligned() as usize;
                        std::ptr::copy_nonoverlapping(s.add(8), buf.as_mut_ptr(), n);
                        *self.word(0) = head + 1;
                        return Some(n);
                    }
                    if *self.word(2) != 0 {
                        return None;
                    }
                }
            }
            std::thread::yield_now();
        }
    }

    fn close(&self) {
        let _g = self.lock.lock().unwrap();
        // SAFETY: as in `send`.
        unsafe { *self.word(2) = 1 };
    }

    fn reset(&self) {
        let _g = self.lock.lock().unwrap();
        // SAFETY: as in `send`.
        unsafe {
            for i in 0..3 {
                *self.word(i) = 0;
            }
        }
    }
}

fn locked_run(line: &StartLine, r: &LockedRing, p: usize, c: usize, per: u64) -> f64 {
    r.reset();
    let size = r.size;
    let producer = |line: &StartLine| {
        let mut buf = vec![0u8; size];
        stamp(&mut buf, WARM_STAMP);
        line.warm.warm_up(|| r.send(&buf));
        for i in 0..per {
            stamp(&mut buf, i);
            r.send(&buf);
        }
        if line.producer_done() {
            r.close();
        }
    };
    let consumer = |line: &StartLine| {
        let mut buf = vec![0u8; size];
        let (mut n, mut sum) = (0u64, 0u64);
        while let Some(len) = r.recv(&mut buf) {
            let s = read_stamp(&buf[..len]);
            if s != WARM_STAMP {
                n += 1;
                sum = sum.wrapping_add(s);
            }
        }
        line.received.fetch_add(n, Ordering::SeqCst);
        line.checksum.fetch_add(sum, Ordering::SeqCst);
    };
    processes(line, p, c, per, producer, consumer)
}

// ---------------------------------------------------------------------------
// crossbeam's ArrayQueue between threads.

fn wait_a_little(spins: &mut u32) {
    if *spins < 6 {
        for _ in 0..1 << *spins {
            std::hint::spin_loop();
        }
        *spins += 1;
    } else {
        std::thread::yield_now();
    }
}

pub(crate) fn crossbeam_run<const S: usize>(p: usize, c: usize, per: u64) -> f64 {
    let q = ArrayQueue::<[u8; S]>::new(CAPACITY);
    let left = AtomicU32::new(p as u32);
    let done = AtomicBool::new(false);
    let received = AtomicU64::new(0);
    let checksum = AtomicU64::new(0);
    let ready = AtomicU32::new(0);
    let go = AtomicBool::new(false);
    let warm = common::WarmClock::new();
    let (t0, t1) = std::thread::scope(|s| {
        let mut hs = Vec::new();
        for _ in 0..p {
            hs.push(s.spawn(|| {
                ready.fetch_add(1, Ordering::SeqCst);
                while !go.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                let mut buf = [0u8; S];
                stamp(&mut buf, WARM_STAMP);
                warm.warm_up(|| {
                    let mut spins = 0;
                    while q.push(buf).is_err() {
                        wait_a_little(&mut spins);
                    }
                });
                for i in 0..per {
                    stamp(&mut buf, i);
                    let mut spins = 0;
                    let mut m = buf;
                    while let Err(back) = q.push(m) {
                        m = back;
                        wait_a_little(&mut spins);
                    }
                }
                if left.fetch_sub(1, Ordering::SeqCst) == 1 {
                    done.store(true, Ordering::SeqCst);
                }
                mono_ns()
            }));
        }
        for _ in 0..c {
            hs.push(s.spawn(|| {
                ready.fetch_add(1, Ordering::SeqCst);
                while !go.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                let (mut n, mut sum) = (0u64, 0u64);
                let mut spins = 0;
                loop {
                    match q.pop() {
                        Some(m) => {
                            let s = read_stamp(&black_box(m));
                            if s != WARM_STAMP {
                                n += 1;
                                sum = sum.wrapping_add(s);
                            }
                            spins = 0;
                        }
                        None if done.load(Ordering::SeqCst) && q.is_empty() => break,
                        None => wait_a_little(&mut spins),
                    }
                }
                received.fetch_add(n, Ordering::SeqCst);
                checksum.fetch_add(sum, Ordering::SeqCst);
                mono_ns()
            }));
        }
        while ready.load(Ordering::SeqCst) < (p + c) as u32 {
            std::thread::yield_now();
        }
        go.store(true, Ordering::Release);
        let t1 = hs.into_iter().map(|h| h.join().unwrap()).max().unwrap();
        // The clock starts when the warm-up ends (`WarmClock`).
        (warm.started(), t1)
    });
    let total = p as u64 * per;
    assert_eq!(received.load(Ordering::SeqCst), total);
    assert_eq!(
        checksum.load(Ordering::SeqCst),
        p as u64 * (per * (per - 1) / 2)
    );
    total as f64 * 1e9 / (t1 - t0) as f64
}

fn crossbeam_sized(size: usize, p: usize, c: usize, per: u64) -> f64 {
    match size {
        8 => crossbeam_run::<8>(p, c, per),
        64 => crossbeam_run::<64>(p, c, per),
        1024 => crossbeam_run::<1024>(p, c, per),
        _ => unreachable!("sizes are 8, 64, 1024"),
    }
}

// ---------------------------------------------------------------------------
// Python's multiprocessing.Queue (1P1C, 64 B), if python3 is there.

const PY: &str = r#"
import multiprocessing as mp, sys, time
N = int(sys.argv[1])
def producer(q):
    m = b"x" * 64
    for _ in range(N):
        q.put(m)
    q.put(None)
if __name__ == "__main__":
    q = mp.Queue(1024)
    p = mp.Process(target=producer, args=(q,))
    t = time.monotonic()
    p.start()
    n = 0
    while q.get() is not None:
        n += 1
    dt = time.monotonic() - t
    p.join()
    assert n == N
    print(N / dt)
"#;

fn python_rate(msgs: u64) -> Option<f64> {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(PY)
        .arg(msgs.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

// ---------------------------------------------------------------------------

/// `--pairs N`: one thread sends and receives `N` 64-byte messages,
/// one pair at a time, through a `Queue` and through an `ArrayQueue`: the
/// cost of the uncontended paths alone, for instruction counts
/// (`valgrind --tool=callgrind ... --pairs N`, then divide by `N`).
///
/// The same loop runs again in a forked child on the parent's queue (as
/// the workers of the process runs do): the child did not attach the
/// queue itself, which is what `membarrier` registration used to follow.
fn pairs(n: u64) {
    let q = Queue::anonymous(CAPACITY, 64).unwrap();
    let run = |q: &Queue| {
        let mut buf = [0u8; 64];
        let t = Instant::now();
        for i in 0..n {
            stamp(&mut buf, i);
            q.send_bytes(&buf).unwrap();
            black_box(q.recv_bytes_into(&mut buf).unwrap());
        }
        t.elapsed().as_nanos() as f64 / n as f64
    };
    let shm = run(&q);
    let line = start_line();
    line.reset(0);
    let pid = fork_child(|| {
        let ns = run(&q);
        line.checksum.store(ns.to_bits(), Ordering::SeqCst);
    });
    wait_child(pid, Instant::now() + CHILD_DEADLINE);
    let child = f64::from_bits(line.checksum.load(Ordering::SeqCst));
    let aq = ArrayQueue::<[u8; 64]>::new(CAPACITY);
    let mut buf = [0u8; 64];
    let t = Instant::now();
    for i in 0..n {
        stamp(&mut buf, i);
        aq.push(buf).unwrap();
        buf = black_box(aq.pop().unwrap());
    }
    let cb = t.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "pairs: shm Queue {shm:.1} ns (in a forked child {child:.1} ns), ArrayQueue {cb:.1} ns per send+recv (one thread)"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = args.windows(2).find(|w| w[0] == "--pairs") {
        return pairs(n[1].parse().expect("--pairs N"));
    }
    let quick = args.iter().any(|a| a == "--quick");
    let plan = if quick { &QUICK } else { &FULL };
    // `--per N`: messages per producer (instead of the plan's).
    let per_arg = args.windows(2).find(|w| w[0] == "--per");
    let custom;
    let plan = match per_arg {
        Some(w) => {
            custom = Plan {
                per_producer: w[1].parse().expect("--per N"),
                ..*plan
            };
            &custom
        }
        None => plan,
    };
    // `--only 2P2C:64` (repeatable) runs only those shapes and sizes: for
    // profiling one case (`valgrind --tool=callgrind`) or a quick look.
    let only: Vec<&str> = args
        .windows(2)
        .filter(|w| w[0] == "--only")
        .map(|w| w[1].as_str())
        .collect();
    // `--shm-only`: shmprim's queue alone (for a profile of it).
    let shm_only = args.iter().any(|a| a == "--shm-only");
    let wanted = |p: usize, c: usize, size: usize| {
        only.is_empty() || only.contains(&format!("{p}P{c}C:{size}").as_str())
    };
    let line = start_line();
    println!(
        "queue bench ({} mode): messages/s, median of {} runs, capacity {CAPACITY}, {} msgs per producer",
        if quick { "quick" } else { "full" },
        plan.runs,
        plan.per_producer
    );
    println!(
        "{:<6} {:>6} | {:>12} {:>12} {:>12} | {:>9} {:>9}",
        "shape", "size", "shm Queue", "ArrayQueue", "locked ring", "/ArrayQ", "/locked"
    );
    println!(
        "{:<6} {:>6} | {:>12} {:>12} {:>12} |",
        "", "", "(procs)", "(threads)", "(procs)"
    );
    let mut one_one_64 = None;
    for &size in &[8usize, 64, 1024] {
        let locked = LockedRing::new(size);
        for &(p, c) in &[(1usize, 1usize), (2, 1), (1, 2), (2, 2), (4, 4), (8, 8)] {
            if !wanted(p, c, size) || (p > 2 && only.is_empty()) {
                continue;
            }
            let (mut a, mut b, mut l) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..plan.runs {
                // A fresh queue per run: each run ends by closing it.
                let q = Queue::anonymous(CAPACITY, size).unwrap();
                a.push(shm_run(line, &q, p, c, size, plan.per_producer));
                if shm_only {
                    continue;
                }
                b.push(crossbeam_sized(size, p, c, plan.per_producer));
                l.push(locked_run(line, &locked, p, c, plan.per_producer));
            }
            // The ratios are medians of each run's own ratio: runs are
            // interleaved, so one run's three figures share the machine's
            // mood, and a ratio of medians would mix runs (on a shared
            // 2-vCPU machine one queue's median can come from a quiet
            // moment, the other's from a busy one).
            let ratio = |x: &[f64], y: &[f64]| {
                median(x.iter().zip(y).map(|(x, y)| x / y).collect::<Vec<_>>())
            };
            if shm_only {
                println!("{p}P{c}C {size:>5}B | {:>10.2}M", median(a) / 1e6);
                continue;
            }
            let (ra, rl) = (ratio(&a, &b), ratio(&a, &l));
            let (a, b, l) = (median(a), median(b), median(l));
            if (p, c, size) == (1, 1, 64) {
                one_one_64 = Some(a);
            }
            println!(
                "{:<6} {:>5}B | {:>10.2}M {:>10.2}M {:>10.2}M | {:>8.2}x {:>8.2}x",
                format!("{p}P{c}C"),
                size,
                a / 1e6,
                b / 1e6,
                l / 1e6,
                ra,
                rl
            );
        }
    }
    if !only.is_empty() {
        return;
    }
    match python_rate(plan.python_msgs) {
        Some(py) => {
            let ours = one_one_64.unwrap_or(f64::NAN);
            println!(
                "python multiprocessing.Queue 1P1C 64B: {:.3}M msgs/s; shm Queue is {:.1}x",
                py / 1e6,
                ours / py
            );
        }
        None => println!("python multiprocessing.Queue: skipped (python3 not found or failed)"),
    }
}
