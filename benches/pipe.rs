//! Pipe benchmarks: shmprim's `Connection` between two processes beside a
//! Unix socket pair, `pipe(2)`, a minimal cache-line ping-pong through a
//! shared mapping (the hardware reference), and a plain spin ring of the
//! same shape as `SpscRing` (no validation, no sleeping, no closing).
//!
//! * ping-pong round trip of 8 bytes;
//! * streaming 64-byte messages;
//! * streaming 64 KiB messages, copying and zero-copy (the reference here
//!   is a spin-flagged slot ring in a shared mapping that `memcpy`s in and
//!   out).
//!
//! Run with `cargo bench --bench pipe`, or `-- --quick` for a smoke run.
//! Each figure is the median of a few runs. The bench `fork`s itself (it
//! has a single thread); everything lives in anonymous shared mappings.

mod common;

use common::{fork_child, median, wait_child, Chunks, Total, Warm};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

use shmprim::{Connection, Pipe, WaitPolicy};

struct Plan {
    runs: usize,
    rtt: u64,
    rtt_kernel: u64,
    small: u64,
    large: u64,
}

const FULL: Plan = Plan {
    runs: 5,
    rtt: 200_000,
    rtt_kernel: 20_000,
    small: 2_000_000,
    large: 20_000,
};

const QUICK: Plan = Plan {
    runs: 3,
    rtt: 20_000,
    rtt_kernel: 2_000,
    small: 200_000,
    large: 2_000,
};

const SMALL: usize = 64;
const LARGE: usize = 64 * 1024;
pub(crate) const RING: usize = 1 << 20;
const CHILD_DEADLINE: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Processes and mappings

/// `len` zeroed bytes in an anonymous shared mapping, 4096-aligned, never
/// unmapped (the bench is short-lived).
fn shared(len: usize) -> *mut u8 {
    common::shared_zeroed(len)
}

/// Spins until `f()`; panics after a long time (a hung peer). Every 1 024
/// fruitless spins (tens of microseconds, far beyond any answer from a
/// peer on another CPU) it yields: this VM's kernel sometimes keeps two
/// spinning processes on one CPU while other work runs on the other, and
/// a pure spinner then waits for the end of its time slice (4 ms here)
/// on every trip; seen in CI with a build beside it, W1's spinning
/// reference read 4 ms a round trip.
#[inline]
pub(crate) fn spin_until(mut f: impl FnMut() -> bool) {
    let mut n = 0u32;
    let mut start = None;
    while !f() {
        std::hint::spin_loop();
        n = n.wrapping_add(1);
        if n % 1024 == 0 {
            std::thread::yield_now();
        }
        if n % 65536 == 0 {
            let s = *start.get_or_insert_with(Instant::now);
            assert!(s.elapsed() < CHILD_DEADLINE, "spin wait hung");
        }
    }
}

/// Runs `child` in a forked process and `parent` here; returns the
/// parent's elapsed time.
pub(crate) fn pair(child: impl FnOnce(), parent: impl FnOnce()) -> Duration {
    let pid = fork_child(child);
    let t = Instant::now();
    parent();
    let e = t.elapsed();
    wait_child(pid, Instant::now() + CHILD_DEADLINE);
    e
}

/// Runs every contender once per round, `runs` rounds (interleaved, so
/// that the machine's mood hits all alike); returns each one's figures.
fn rounds(runs: usize, fs: &mut [&mut dyn FnMut() -> f64]) -> Vec<Vec<f64>> {
    let mut out = vec![Vec::new(); fs.len()];
    for _ in 0..runs {
        for (k, f) in fs.iter_mut().enumerate() {
            out[k].push(f());
        }
    }
    out
}

/// Median of the per-round ratios `a[i] / b[i]`.
fn ratio(a: &[f64], b: &[f64]) -> f64 {
    median(a.iter().zip(b).map(|(x, y)| x / y).collect())
}

// ---------------------------------------------------------------------------
// Kernel baselines

pub(crate) fn socketpair() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
    assert_eq!(r, 0);
    (fds[0], fds[1])
}

pub(crate) fn pipe2() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

pub(crate) fn write_all(fd: i32, mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: `b` is valid for reads of its length.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        assert!(n > 0, "write: {}", std::io::Error::last_os_error());
        b = &b[n as usize..];
    }
}

pub(crate) fn read_exact(fd: i32, mut b: &mut [u8]) {
    while !b.is_empty() {
        // SAFETY: `b` is valid for writes of its length.
        let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) };
        assert!(n > 0, "read: {}", std::io::Error::last_os_error());
        b = &mut b[n as usize..];
    }
}

pub(crate) fn close(fd: i32) {
    // SAFETY: closing a descriptor we own.
    unsafe { libc::close(fd) };
}

/// Round trips of 8 bytes over (parent→child, child→parent) descriptors.
fn kernel_rtt(n: u64, p2c: (i32, i32), c2p: (i32, i32)) -> f64 {
    let e = pair(
        || {
            let mut b = [0u8; 8];
            for _ in 0..n {
                read_exact(p2c.0, &mut b);
                write_all(c2p.1, &b);
            }
        },
        || {
            let mut b = [0u8; 8];
            for i in 0..n {
                write_all(p2c.1, &i.to_le_bytes());
                read_exact(c2p.0, &mut b);
            }
        },
    );
    e.as_nanos() as f64 / n as f64
}

/// `n` messages of `size` bytes child→parent, after a warm-up (`Warm`):
/// ns per message (the median chunk's, see `Chunks`).
pub(crate) fn kernel_stream(n: u64, size: usize, rd: i32, wr: i32) -> f64 {
    let total = Total::new();
    let mut fig = 0.0;
    pair(
        || {
            let b = vec![7u8; size];
            let mut w = Warm::new(total, n);
            while w.more() {
                write_all(wr, &b);
            }
        },
        || {
            let mut b = vec![0u8; size.max(64 * 1024)];
            let mut c = Chunks::after_warm_up(n, total);
            let mut done = 0usize;
            while !c.done() {
                // A read returns what has arrived; the writer sends exactly
                // the messages `c` waits for, so none waits for more.
                let want = b.len();
                // SAFETY: `b` is valid for writes of `want` bytes.
                let got = unsafe { libc::read(rd, b.as_mut_ptr().cast(), want) };
                assert!(got > 0);
                let whole = done / size;
                done += got as usize;
                c.add((done / size - whole) as u64);
            }
            black_box(&b);
            fig = c.figure();
        },
    );
    fig
}

// ---------------------------------------------------------------------------
// Hardware reference: cache-line ping-pong, and a memcpy slot ring

#[repr(C, align(128))]
struct Line(AtomicU64);

fn hw_rtt(n: u64) -> f64 {
    let m = shared(4096);
    // SAFETY: two 128-aligned lines of a fresh zeroed mapping; atomics are
    // valid for all-zero bits.
    let (ping, pong) = unsafe { (&*m.cast::<Line>(), &*m.add(128).cast::<Line>()) };
    let e = pair(
        || {
            for i in 1..=n {
                spin_until(|| ping.0.load(Acquire) == i);
                pong.0.store(i, Release);
            }
        },
        || {
            for i in 1..=n {
                ping.0.store(i, Release);
                spin_until(|| pong.0.load(Acquire) == i);
            }
        },
    );
    e.as_nanos() as f64 / n as f64
}

/// `n` blocks of `size` bytes through `ring / size` slots (at least 2)
/// with spin flags: the child `memcpy`s in, the parent `memcpy`s out.
pub(crate) fn hw_stream(n: u64, size: usize, ring: usize) -> f64 {
    let slots = (ring / size).max(2);
    let head = (slots * 128).next_multiple_of(4096);
    let m = shared(head + slots * size);
    // SAFETY: `slots` flags, each on its own 128-byte line, in the first
    // pages of a fresh zeroed mapping.
    let flags = unsafe { std::slice::from_raw_parts(m.cast::<Line>(), slots) };
    // SAFETY: the slot area follows the flags' pages.
    let data = unsafe { m.add(head) };
    let total = Total::new();
    let mut fig = 0.0;
    pair(
        || {
            let src = vec![7u8; size];
            let mut w = Warm::new(total, n);
            let mut i = 0u64;
            while w.more() {
                let s = i as usize % slots;
                let lap = i / slots as u64;
                spin_until(|| flags[s].0.load(Acquire) == 2 * lap);
                // SAFETY: slot `s` is the writer's until it sets the flag.
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), data.add(s * size), size) };
                flags[s].0.store(2 * lap + 1, Release);
                i += 1;
            }
        },
        || {
            let mut dst = vec![0u8; size];
            let mut c = Chunks::after_warm_up(n, total);
            let mut i = 0u64;
            while !c.done() {
                let s = i as usize % slots;
                let lap = i / slots as u64;
                spin_until(|| flags[s].0.load(Acquire) == 2 * lap + 1);
                // SAFETY: slot `s` is the reader's until it sets the flag.
                unsafe {
                    std::ptr::copy_nonoverlapping(data.add(s * size), dst.as_mut_ptr(), size)
                };
                flags[s].0.store(2 * lap + 2, Release);
                i += 1;
                c.add(1);
            }
            black_box(&dst);
            fig = c.figure();
        },
    );
    fig
}

// ---------------------------------------------------------------------------
// A plain spin ring of the same shape: 64-bit positions on two lines, cached
// indices, 8-byte length headers, padding at the wrap; no checks, no sleep.

#[repr(C, align(64))]
struct Pos(AtomicU64);

struct SpinRing {
    tail: *const Pos,
    head: *const Pos,
    data: *mut u8,
    cap: u64,
}

impl SpinRing {
    fn new(cap: usize) -> SpinRing {
        let m = shared(128 + cap);
        // SAFETY: the mapping is 128 + cap bytes, page-aligned.
        unsafe {
            SpinRing {
                tail: m.cast(),
                head: m.add(64).cast(),
                data: m.add(128),
                cap: cap as u64,
            }
        }
    }
    fn tail(&self) -> &AtomicU64 {
        // SAFETY: a live, aligned atomic in the mapping.
        unsafe { &(*self.tail).0 }
    }
    fn head(&self) -> &AtomicU64 {
        // SAFETY: a live, aligned atomic in the mapping.
        unsafe { &(*self.head).0 }
    }
    fn send_all(&self, w: &mut Warm, msg: &[u8]) {
        let (mut tail, mut head) = (0u64, 0u64);
        let need = 8 + ((msg.len() as u64 + 7) & !7);
        while w.more() {
            let mut off = tail & (self.cap - 1);
            if off + need > self.cap {
                let pad = self.cap - off;
                while self.cap - (tail - head) < pad {
                    head = self.head().load(Acquire);
                }
                // SAFETY: inside the data area, owned by the producer.
                unsafe { self.data.add(off as usize).cast::<u64>().write(u64::MAX) };
                tail += pad;
                off = 0;
            }
            if self.cap - (tail - head) < need {
                spin_until(|| {
                    head = self.head().load(Acquire);
                    self.cap - (tail - head) >= need
                });
            }
            // SAFETY: the record lies in free space owned by the producer.
            unsafe {
                self.data
                    .add(off as usize)
                    .cast::<u64>()
                    .write(msg.len() as u64);
                std::ptr::copy_nonoverlapping(
                    msg.as_ptr(),
                    self.data.add(off as usize + 8),
                    msg.len(),
                );
            }
            tail += need;
            self.tail().store(tail, Release);
        }
    }
    fn recv_all(&self, buf: &mut [u8], c: &mut Chunks) {
        let (mut head, mut tail) = (0u64, 0u64);
        while !c.done() {
            if head == tail {
                spin_until(|| {
                    tail = self.tail().load(Acquire);
                    tail != head
                });
            }
            let off = head & (self.cap - 1);
            // SAFETY: below the published tail: written and ours to read.
            let len = unsafe { self.data.add(off as usize).cast::<u64>().read() };
            if len == u64::MAX {
                head += self.cap - off;
                self.head().store(head, Release);
                continue;
            }
            // SAFETY: as above.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.data.add(off as usize + 8),
                    buf.as_mut_ptr(),
                    len as usize,
                )
            };
            head += 8 + ((len + 7) & !7);
            self.head().store(head, Release);
            c.add(1);
        }
    }
}

/// `n` messages of `size` bytes through a plain spin ring of `ring` bytes
/// (a power of two), child to parent: ns per message (median chunk's).
pub(crate) fn spin_ring_stream(n: u64, size: usize, ring: usize) -> f64 {
    let r = SpinRing::new(ring);
    let total = Total::new();
    let mut fig = 0.0;
    pair(
        || r.send_all(&mut Warm::new(total, n), &vec![7u8; size]),
        || {
            let mut b = vec![0u8; size];
            let mut c = Chunks::after_warm_up(n, total);
            r.recv_all(&mut b, &mut c);
            black_box(&b);
            fig = c.figure();
        },
    );
    fig
}

// ---------------------------------------------------------------------------
// shmprim

pub(crate) fn conns(cap: usize, policy: WaitPolicy) -> (Connection, Connection) {
    let (mut a, mut b) = Pipe::anonymous(cap).unwrap();
    a.set_wait_policy(policy);
    b.set_wait_policy(policy);
    (a, b)
}

/// The child's side of an 8-byte round trip: echoes `n` messages back.
pub(crate) fn shm_echo(mut b: Connection, n: u64) {
    b.claim().unwrap();
    let mut buf = [0u8; 8];
    for _ in 0..n {
        b.recv_bytes_into(&mut buf).unwrap();
        b.send_bytes(&buf).unwrap();
    }
    std::mem::forget(b);
}

fn shm_rtt(n: u64, policy: WaitPolicy) -> f64 {
    let (mut a, b) = conns(4096, policy);
    let e = pair(
        move || shm_echo(b, n),
        || {
            a.claim().unwrap();
            let mut buf = [0u8; 8];
            for i in 0..n {
                a.send_bytes(&i.to_le_bytes()).unwrap();
                a.recv_bytes_into(&mut buf).unwrap();
            }
        },
    );
    e.as_nanos() as f64 / n as f64
}

/// Messages per `send_many` / `recv_many` call in W2-batch.
const BATCH: usize = 32;

/// W2 through the batch API: the child sends `BATCH` messages per
/// `send_many`, the parent takes up to `BATCH` per `recv_many_in_place`
/// and copies each out (as the spin-ring reference does). Also the
/// `--stream N --batch` probe.
pub(crate) fn shm_batch(n: u64, size: usize) -> f64 {
    let (mut a, mut b) = conns(ring_for(size), WaitPolicy::default());
    let total = Total::new();
    let mut fig = 0.0;
    pair(
        move || {
            b.claim().unwrap();
            let src = vec![7u8; size];
            let batch = vec![&src[..]; BATCH];
            let mut w = Warm::new(total, n);
            loop {
                let k = w.next(BATCH as u64) as usize;
                if k == 0 {
                    break;
                }
                w.sent(b.send_many(&batch[..k]).unwrap() as u64);
            }
            let _ = b.recv_bytes();
            std::mem::forget(b);
        },
        || {
            a.claim().unwrap();
            let mut buf = vec![0u8; size];
            let mut c = Chunks::after_warm_up(n, total);
            while !c.done() {
                let k = a
                    .recv_many_in_place(BATCH, |m| buf[..m.len()].copy_from_slice(m))
                    .unwrap() as u64;
                std::hint::black_box(&buf);
                c.add(k);
            }
            fig = c.figure();
            a.send_bytes(b"done").unwrap();
        },
    );
    fig
}

/// The ring of a streaming run of `size`-byte messages: 1 MiB, or four
/// messages if larger (shmprim's and the references' alike).
pub(crate) fn ring_for(size: usize) -> usize {
    RING.max(4 * size)
}

/// `n` messages of `size` bytes streamed from a child to this process
/// (copying, or zero copy) through a ring of `ring` bytes, in ns per
/// message (the median chunk's). Also the peers suite's shmprim streaming
/// driver.
pub(crate) fn shm_stream(
    n: u64,
    size: usize,
    ring: usize,
    policy: WaitPolicy,
    zero_copy: bool,
) -> f64 {
    let (mut a, mut b) = conns(ring, policy);
    let total = Total::new();
    let mut fig = 0.0;
    pair(
        move || {
            b.claim().unwrap();
            let src = vec![7u8; size];
            let mut w = Warm::new(total, n);
            while w.more() {
                if zero_copy {
                    let mut r = b.reserve(size).unwrap();
                    r.copy_from_slice(&src);
                    r.commit().unwrap();
                } else {
                    b.send_bytes(&src).unwrap();
                }
            }
            // Wait for the parent to finish before our end closes.
            let _ = b.recv_bytes();
            std::mem::forget(b);
        },
        || {
            a.claim().unwrap();
            let mut buf = vec![0u8; size];
            let mut c = Chunks::after_warm_up(n, total);
            while !c.done() {
                if zero_copy {
                    let m = a.recv_in_place().unwrap();
                    black_box(&m[..]);
                    black_box(m[m.len() - 1]);
                } else {
                    a.recv_bytes_into(&mut buf).unwrap();
                }
                c.add(1);
            }
            fig = c.figure();
            a.send_bytes(b"done").unwrap();
            black_box(&buf);
        },
    );
    fig
}

// ---------------------------------------------------------------------------

/// `--pairs N [--batch]`: in one process, `N` 64-byte messages sent and
/// received through a `Connection`, one message at a time (or 32 per
/// `send_many` / `recv_many`): the cost of the paths alone, for instruction
/// counts (`valgrind --tool=callgrind ... --pairs N` at two `N`, the
/// difference divided by the difference of `N`).
fn pairs(n: u64, batch: bool) {
    let (mut a, mut b) = conns(RING, WaitPolicy::default());
    a.claim().unwrap();
    b.claim().unwrap();
    let src = [7u8; SMALL];
    let mut buf = [0u8; SMALL];
    let t = Instant::now();
    if batch {
        // Received in place, each copied out (as the spin ring does).
        let msgs = [&src[..]; 32];
        for _ in 0..n / 32 {
            assert_eq!(a.send_many(black_box(&msgs[..])).unwrap(), 32);
            let k = b
                .recv_many_in_place(32, |m| buf[..m.len()].copy_from_slice(m))
                .unwrap();
            assert_eq!(black_box(k), 32);
        }
    } else {
        for _ in 0..n {
            a.send_bytes(black_box(&src)).unwrap();
            black_box(b.recv_bytes_into(&mut buf).unwrap());
        }
    }
    let e = t.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "{n} pairs{}: {e:.1} ns per message",
        if batch { " (batches of 32)" } else { "" }
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(k) = args.iter().position(|a| a == "--pairs") {
        let n = args
            .get(k + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        return pairs(n, args.iter().any(|a| a == "--batch"));
    }
    if let Some(k) = args.iter().position(|a| a == "--stream") {
        // `--stream N [--batch]`: W2 alone, `N` 64-byte messages from a
        // forked producer, one at a time (or 32 per call): for tracing the
        // waits (`strace -f -c -e trace=futex,membarrier`).
        let n = args
            .get(k + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let batch = args.iter().any(|a| a == "--batch");
        let ns = if batch {
            shm_batch(n, SMALL)
        } else {
            shm_stream(n, SMALL, RING, WaitPolicy::default(), false)
        };
        println!(
            "{n} messages{}: {ns:.1} ns per message (median chunk), {:.2} M msg/s",
            if batch { " (batches of 32)" } else { "" },
            1e3 / ns
        );
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let p = if quick { QUICK } else { FULL };
    println!(
        "pipe benchmarks{}: two processes, {} interleaved rounds; medians, and medians of per-round ratios",
        if quick { " (--quick)" } else { "" },
        p.runs
    );

    println!("\n8-byte ping-pong round trip (ns):");
    let r = rounds(
        p.runs,
        &mut [
            &mut || hw_rtt(p.rtt),
            &mut || shm_rtt(p.rtt, WaitPolicy::default()),
            &mut || shm_rtt(p.rtt_kernel, WaitPolicy::park()),
            &mut || kernel_rtt(p.rtt_kernel, socketpair(), socketpair()),
            &mut || {
                let (a, b) = (pipe2(), pipe2());
                let r = kernel_rtt(p.rtt_kernel, a, b);
                for fd in [a.0, a.1, b.0, b.1] {
                    close(fd);
                }
                r
            },
        ],
    );
    let m = |k: usize| median(r[k].clone());
    println!("  hardware reference (cache-line ping-pong) {:10.0}", m(0));
    println!(
        "  shmprim Connection (default policy)        {:10.0}   {:.2}x reference (target <= 1.5x)",
        m(1),
        ratio(&r[1], &r[0])
    );
    println!(
        "  shmprim Connection (WaitPolicy::park)      {:10.0}   {:.2}x reference",
        m(2),
        ratio(&r[2], &r[0])
    );
    println!(
        "  Unix socket pair                           {:10.0}   shmprim (default) {:.0}x faster (target >= 100x)",
        m(3),
        ratio(&r[3], &r[1])
    );
    println!(
        "  pipe(2)                                    {:10.0}   shmprim (default) {:.0}x faster",
        m(4),
        ratio(&r[4], &r[1])
    );

    println!("\nstreaming {SMALL}-byte messages (ns per message):");
    let r = rounds(
        p.runs,
        &mut [
            &mut || spin_ring_stream(p.small, SMALL, RING),
            &mut || shm_stream(p.small, SMALL, RING, WaitPolicy::default(), false),
            &mut || {
                let (a, b) = socketpair();
                let r = kernel_stream(p.small / 10, SMALL, a, b);
                close(a);
                close(b);
                r
            },
            &mut || {
                let (a, b) = pipe2();
                let r = kernel_stream(p.small / 10, SMALL, a, b);
                close(a);
                close(b);
                r
            },
        ],
    );
    let m = |k: usize| median(r[k].clone());
    println!("  plain spin ring                            {:10.1}", m(0));
    println!(
        "  shmprim Connection                         {:10.1}   {:.2}x the spin ring's rate (target >= 0.8x)",
        m(1),
        ratio(&r[0], &r[1])
    );
    println!(
        "  Unix socket pair                           {:10.1}   shmprim {:.1}x faster",
        m(2),
        ratio(&r[2], &r[1])
    );
    println!(
        "  pipe(2)                                    {:10.1}   shmprim {:.1}x faster",
        m(3),
        ratio(&r[3], &r[1])
    );

    println!("\nstreaming 64 KiB messages (GB/s):");
    let r = rounds(
        p.runs,
        &mut [
            &mut || hw_stream(p.large, LARGE, ring_for(LARGE)),
            &mut || {
                shm_stream(
                    p.large,
                    LARGE,
                    ring_for(LARGE),
                    WaitPolicy::default(),
                    false,
                )
            },
            &mut || shm_stream(p.large, LARGE, ring_for(LARGE), WaitPolicy::default(), true),
            &mut || {
                let (a, b) = socketpair();
                let r = kernel_stream(p.large, LARGE, a, b);
                close(a);
                close(b);
                r
            },
            &mut || {
                let (a, b) = pipe2();
                let r = kernel_stream(p.large, LARGE, a, b);
                close(a);
                close(b);
                r
            },
        ],
    );
    let g = |k: usize| LARGE as f64 / median(r[k].clone());
    println!("  hardware reference (memcpy slot ring)      {:10.2}", g(0));
    println!(
        "  shmprim send_bytes/recv_bytes_into         {:10.2}   {:.2}x reference (target >= 0.9x)",
        g(1),
        ratio(&r[0], &r[1])
    );
    println!(
        "  shmprim reserve/recv_in_place (zero copy)  {:10.2}   {:.2}x reference",
        g(2),
        ratio(&r[0], &r[2])
    );
    println!(
        "  Unix socket pair                           {:10.2}   shmprim copy {:.1}x faster",
        g(3),
        ratio(&r[3], &r[1])
    );
    println!(
        "  pipe(2)                                    {:10.2}   shmprim copy {:.1}x faster",
        g(4),
        ratio(&r[4], &r[1])
    );
}
