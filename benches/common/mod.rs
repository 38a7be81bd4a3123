//! Pieces every benchmark shares: forking a child process to run one side
//! of a workload, reaping it with a deadline, and the median of samples.
//! (Each bench is its own crate; `mod common;` pulls this file in.)

#![allow(dead_code)] // not every bench uses every piece

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Whether this process has exactly one thread (so `fork` is safe here).
pub fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .map(|n| n.trim() == "1")
        })
        .unwrap_or(true)
}

/// Waits (up to a second) until threads that were joined have left the
/// kernel too: `join` returns when a thread has finished, a moment before
/// `/proc` stops counting it.
fn settle_to_one_thread() -> bool {
    let until = Instant::now() + Duration::from_secs(1);
    while !single_threaded() {
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Forks a child that runs `body` and exits with 0, or 101 if it panicked.
pub fn fork_child(body: impl FnOnce()) -> libc::pid_t {
    assert!(
        settle_to_one_thread(),
        "fork from a multi-threaded bench process"
    );
    // SAFETY: the process is single-threaded (checked above), so the child
    // is a full copy in a consistent state and may run ordinary Rust code.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
            Ok(()) => 0,
            Err(_) => 101,
        };
        // SAFETY: `_exit` ends the child at once without running the
        // parent's destructors or atexit handlers (which would, e.g., let
        // the child unmap or unlink what the parent still uses).
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Waits for `pid` (killing it once `deadline` passes); panics unless it
/// exited 0.
pub fn wait_child(pid: libc::pid_t, deadline: Instant) {
    loop {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid int to fill.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "bench child {pid} failed (wait status {status:#x})"
            );
            return;
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "waitpid: {e}");
            continue;
        }
        if Instant::now() > deadline {
            // SAFETY: `pid` is our child and has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: as above; reaps the killed child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            panic!("bench child {pid} hung and was killed");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The median of `v` (the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Nanoseconds on `CLOCK_MONOTONIC`, readable alike in every process (so a
/// start taken in one process and an end taken in another compare).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A start line for up to `N` workers (threads or processes sharing it in
/// a mapping): they start together and each records when it ended. All
/// zero is the reset state, so a zeroed shared mapping holds a valid one.
#[repr(C)]
pub struct StartLine<const N: usize> {
    ready: AtomicU32,
    go: AtomicU32,
    end_ns: [AtomicU64; N],
}

impl<const N: usize> StartLine<N> {
    /// Back to the all-zero state, between runs.
    pub fn reset(&self) {
        self.ready.store(0, Ordering::SeqCst);
        self.go.store(0, Ordering::SeqCst);
        for e in &self.end_ns {
            e.store(0, Ordering::SeqCst);
        }
    }

    /// Worker side: announce, wait for the start, run, record the end.
    pub fn run(&self, worker: usize, body: impl FnOnce()) {
        self.ready.fetch_add(1, Ordering::SeqCst);
        while self.go.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        body();
        self.end_ns[worker].store(mono_ns(), Ordering::SeqCst);
    }

    /// Coordinator side: wait (at most `patience`) until `n` workers are
    /// ready, start them, and return the start time.
    pub fn start(&self, n: u32, patience: Duration) -> u64 {
        let deadline = Instant::now() + patience;
        while self.ready.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < deadline, "workers never became ready");
            std::thread::yield_now();
        }
        let t0 = mono_ns();
        self.go.store(1, Ordering::Release);
        t0
    }

    /// Nanoseconds from `t0` to the last worker's end.
    pub fn elapsed_since(&self, t0: u64) -> u64 {
        let end = self
            .end_ns
            .iter()
            .map(|e| e.load(Ordering::SeqCst))
            .max()
            .unwrap_or(0);
        assert!(end >= t0, "a worker did not record its end");
        end - t0
    }
}

/// `len` zeroed bytes (at least 1) in an anonymous shared mapping,
/// page-aligned and inherited by forked children. The caller unmaps it, or
/// keeps it for the bench's life.
pub fn shared_zeroed(len: usize) -> *mut u8 {
    // SAFETY: an anonymous shared mapping with no address hint and no file;
    // the result is checked against MAP_FAILED before use.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len.max(1),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert!(
        p != libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    p.cast()
}

/// The least time a run of two processes that wake each other warms up
/// before it is timed. This VM's kernel often keeps a freshly forked pair
/// on one CPU, the other idle, until its balancer separates them 2 to
/// 40 ms later; a figure timed in that window measured the placement, not
/// the system: W1 read 6 to 19 us instead of 0.25 us (BENCHMARKS.md, "W1's
/// two regimes"). Every system of a workload warms up alike.
pub const WARM_NS: u64 = 100_000_000;

/// Runs `one(i)` for `i = 0, 1, ...` until at least `min` calls and
/// [`WARM_NS`] have passed; returns how many calls it made. The warm-up
/// of every round-trip figure (W1's trips, the pools' `apply`).
pub fn warm_up(min: u64, mut one: impl FnMut(u64)) -> u64 {
    let start = mono_ns();
    let mut i = 0;
    while i < min || mono_ns() - start < WARM_NS {
        one(i);
        i += 1;
    }
    i
}

/// How many messages (or round trips) a run makes in all: unknown while
/// the warm-up lasts (it ends by time, on the sending or timing side), so
/// the other side, which may be a forked child, reads it from a shared
/// mapping. Create it before the fork. The sending side sets it before it
/// sends the first timed message, so whoever has received that message
/// sees it.
#[derive(Clone, Copy)]
pub struct Total(&'static AtomicU64);

impl Total {
    pub fn new() -> Total {
        let m = shared_zeroed(4096);
        // SAFETY: a fresh zeroed shared mapping, page-aligned, never
        // unmapped (4 KiB per run); an atomic is valid for all-zero bits.
        let t = unsafe { &*m.cast::<AtomicU64>() };
        t.store(u64::MAX, Ordering::Relaxed);
        Total(t)
    }

    /// The count, once the warm-up has ended.
    #[inline]
    pub fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::Acquire) {
            u64::MAX => None,
            n => Some(n),
        }
    }

    /// Whether `done` messages are all there are.
    #[inline]
    pub fn reached(&self, done: u64) -> bool {
        done >= self.0.load(Ordering::Acquire)
    }

    pub fn set(&self, all: u64) {
        self.0.store(all, Ordering::Release);
    }
}

/// The stamp of a warm-up message in a many-to-many run (see
/// [`WarmClock`]): consumers leave such messages out of their counts and
/// checksums.
pub const WARM_STAMP: u64 = u64::MAX;

/// The warm-up of a many-to-many run: every producer sends untimed
/// messages until the first of them has been sending for [`WARM_NS`];
/// that one records the instant, which starts the run's clock, and each
/// producer then sends its timed messages. At most a ring's worth of
/// warm-up messages is still queued when the clock starts. All zero is the
/// reset state, so it may live in a zeroed shared mapping.
#[repr(C)]
pub struct WarmClock {
    t0: AtomicU64,
}

impl WarmClock {
    pub const fn new() -> WarmClock {
        WarmClock {
            t0: AtomicU64::new(0),
        }
    }

    pub fn reset(&self) {
        self.t0.store(0, Ordering::SeqCst);
    }

    /// Producer side: `send_untimed()` until the clock has started.
    pub fn warm_up(&self, mut send_untimed: impl FnMut()) {
        let start = mono_ns();
        let mut k = 0u64;
        while self.t0.load(Ordering::Acquire) == 0 {
            send_untimed();
            k += 1;
            if k % 64 == 0 {
                let now = mono_ns();
                if now - start >= WARM_NS {
                    let _ = self
                        .t0
                        .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
                }
            }
        }
    }

    /// When the timed part began (0 until then).
    pub fn started(&self) -> u64 {
        self.t0.load(Ordering::Acquire)
    }
}

/// The sending side of a stream of `n` timed messages after a warm-up of
/// at least [`WARM_NS`]: `while w.more() { send one }`, or, sending in
/// batches, `next(max)` and `sent(k)`. The clock is read once per 64
/// messages while warming up, and never after.
pub struct Warm {
    total: Total,
    n: u64,
    sent: u64,
    check: u64,
    end: u64,
    start: u64,
}

impl Warm {
    const CHECK: u64 = 64;

    pub fn new(total: Total, n: u64) -> Warm {
        Warm {
            total,
            n,
            sent: 0,
            check: 0,
            end: u64::MAX,
            start: mono_ns(),
        }
    }

    /// How many messages to send before asking again (at most `max`; 0:
    /// the stream is done).
    #[inline]
    pub fn next(&mut self, max: u64) -> u64 {
        if self.end == u64::MAX {
            return self.warming(max);
        }
        (self.end - self.sent).min(max)
    }

    fn warming(&mut self, max: u64) -> u64 {
        if self.sent >= self.check {
            if mono_ns() - self.start >= WARM_NS {
                self.end = self.sent + self.n;
                self.total.set(self.end);
                return self.n.min(max);
            }
            self.check = self.sent + Self::CHECK;
        }
        (self.check - self.sent).min(max)
    }

    /// `k` more messages sent.
    #[inline]
    pub fn sent(&mut self, k: u64) {
        self.sent += k;
    }

    /// Whether to send one more message (and count it as sent).
    #[inline]
    pub fn more(&mut self) -> bool {
        if self.next(1) == 0 {
            return false;
        }
        self.sent += 1;
        true
    }
}

/// The receiving side's clock over a stream, read once per chunk of
/// messages: the figure is the median chunk's time per message, the first
/// chunk (start-up: the fork, page faults on the first lap of a fresh
/// ring, the peer's first slice) left out. A stall that hits a few chunks
/// (the peer preempted by another task on a loaded machine) moves the
/// median little, where it would move the whole run's mean as much as it
/// lasted; every streaming contender is timed so, alike. After a warm-up
/// ([`Chunks::after_warm_up`]) the clock starts with the first timed
/// message.
pub struct Chunks {
    per: u64,
    n: u64,
    got: u64,
    next: u64,
    start: u64,
    last: (u64, u64),
    ns: Vec<f64>,
    /// The warm-up's count, while the clock has not started.
    warm: Option<Total>,
    /// Messages in the stream, warm-up included (`u64::MAX`: not known
    /// yet).
    end: u64,
    /// Messages received when the clock started.
    base: u64,
}

impl Chunks {
    /// Chunks in a stream of `n` messages (the last may be short).
    pub const COUNT: u64 = 16;

    /// Starts the clock for a stream of `n` messages.
    pub fn new(n: u64) -> Chunks {
        let per = (n / Self::COUNT).max(1);
        let start = mono_ns();
        Chunks {
            per,
            n,
            got: 0,
            next: per,
            start,
            last: (start, 0),
            ns: Vec::with_capacity(Self::COUNT as usize + 1),
            warm: None,
            end: n,
            base: 0,
        }
    }

    /// For a stream sent through a [`Warm`] on `total`: the clock starts
    /// once the warm-up's messages are in; receive until [`done`](Self::done).
    pub fn after_warm_up(n: u64, total: Total) -> Chunks {
        Chunks {
            next: 0,
            warm: Some(total),
            end: u64::MAX,
            ..Chunks::new(n)
        }
    }

    /// `k` more messages received.
    #[inline]
    pub fn add(&mut self, k: u64) {
        self.got += k;
        if self.got >= self.next {
            self.mark();
        }
    }

    /// Whether every message of the stream is in.
    #[inline]
    pub fn done(&self) -> bool {
        self.got >= self.end
    }

    #[cold]
    fn mark(&mut self) {
        let t = mono_ns();
        if let Some(total) = self.warm {
            // Warming up: look for the count on every message until it is
            // set (it is, by the first timed message), then start the
            // clock with the first message past the warm-up's.
            let Some(end) = total.get() else {
                self.next = self.got + 1;
                return;
            };
            self.end = end;
            let first = end - self.n;
            if self.got < first {
                self.next = first;
                return;
            }
            self.warm = None;
            self.base = self.got;
            self.start = t;
            self.last = (t, self.got);
            self.next = self.got + self.per;
            return;
        }
        let (t0, g0) = self.last;
        self.ns.push((t - t0) as f64 / (self.got - g0) as f64);
        self.last = (t, self.got);
        self.next = self.got + self.per;
    }

    /// The median chunk's ns per message (the whole stream's mean when it
    /// had fewer than three chunks).
    pub fn figure(mut self) -> f64 {
        if self.ns.len() < 3 {
            let timed = self.last.1 - self.base;
            return (self.last.0 - self.start) as f64 / timed.max(1) as f64;
        }
        self.ns.remove(0);
        median(self.ns)
    }
}
