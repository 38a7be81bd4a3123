//! W1: 8-byte ping-pong round trip. The parent times every round trip on
//! CLOCK_MONOTONIC (one clock read per trip, the same for every system);
//! a warm-up of a tenth of the trips, and of at least
//! [`WARM_NS`](crate::common::WARM_NS), is left out. The figure of a round
//! is the median of its trips; the suite reports the median over rounds,
//! the tail (p99, p99.9, maximum) over every timed trip of every round
//! pooled (200 000 per system in a full run: enough for a p99.9 of 200
//! trips), and plots every trip.

use std::sync::atomic::{AtomicU64, Ordering::*};

use shmprim::WaitPolicy;

use crate::common::{median, mono_ns, warm_up, Total};
use crate::pipe_bench::{close, conns, pair, pipe2, read_exact, socketpair, spin_until, write_all};
use crate::python::Python;
use crate::{iox, rounds, Contender, Plan, Results};

/// Warm-up trips before the `n` timed ones, at the least.
pub fn warm(n: u64) -> u64 {
    (n / 10).max(10)
}

/// Runs `one(i)` for the warm-up and then `n` timed trips; the trip times.
pub fn trips(n: u64, total: &Total, mut one: impl FnMut(u64)) -> Vec<u64> {
    let i = warm_up(warm(n), &mut one);
    total.set(i + n);
    let mut out = Vec::with_capacity(n as usize);
    let mut t = mono_ns();
    for i in i..i + n {
        one(i);
        let u = mono_ns();
        out.push(u - t);
        t = u;
    }
    out
}

/// The tail of a set of trip times.
pub struct Tail {
    pub median: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Median, p99, p99.9 and maximum of trip times (nearest rank).
pub fn summary(v: &[u64]) -> Tail {
    let mut s = v.to_vec();
    s.sort_unstable();
    let at = |per_mille: usize| s[((s.len() * per_mille) / 1000).min(s.len() - 1)] as f64;
    Tail {
        median: median(s.iter().map(|&x| x as f64).collect()),
        p99: at(990),
        p999: at(999),
        max: s.last().copied().unwrap_or(0) as f64,
    }
}

/// The hardware reference: a counter bounced between two cache lines of a
/// shared mapping.
fn hw(n: u64) -> Vec<u64> {
    #[repr(C, align(128))]
    struct Line(AtomicU64);
    let m = crate::common::shared_zeroed(4096);
    // SAFETY: two 128-aligned lines of a fresh zeroed mapping (never
    // unmapped); atomics are valid for all-zero bits.
    let (ping, pong) = unsafe { (&*m.cast::<Line>(), &*m.add(128).cast::<Line>()) };
    let total = Total::new();
    let mut out = Vec::new();
    pair(
        || {
            let mut i = 0;
            while !total.reached(i) {
                i += 1;
                spin_until(|| ping.0.load(Acquire) == i);
                pong.0.store(i, Release);
            }
        },
        || {
            out = trips(n, &total, |i| {
                ping.0.store(i + 1, Release);
                spin_until(|| pong.0.load(Acquire) == i + 1);
            })
        },
    );
    out
}

fn shm(n: u64, policy: WaitPolicy) -> Vec<u64> {
    let (mut a, mut b) = conns(4096, policy);
    let total = Total::new();
    let mut out = Vec::new();
    pair(
        || {
            b.claim().unwrap();
            let mut buf = [0u8; 8];
            let mut i = 0;
            while !total.reached(i) {
                b.recv_bytes_into(&mut buf).unwrap();
                b.send_bytes(&buf).unwrap();
                i += 1;
            }
            std::mem::forget(b);
        },
        || {
            a.claim().unwrap();
            let mut buf = [0u8; 8];
            out = trips(n, &total, |i| {
                a.send_bytes(&i.to_le_bytes()).unwrap();
                a.recv_bytes_into(&mut buf).unwrap();
            });
        },
    );
    out
}

/// Over two descriptor pairs (parent→child, child→parent).
fn fd(n: u64, p2c: (i32, i32), c2p: (i32, i32)) -> Vec<u64> {
    let total = Total::new();
    let mut out = Vec::new();
    pair(
        || {
            let mut b = [0u8; 8];
            let mut i = 0;
            while !total.reached(i) {
                read_exact(p2c.0, &mut b);
                write_all(c2p.1, &b);
                i += 1;
            }
        },
        || {
            let mut b = [0u8; 8];
            out = trips(n, &total, |i| {
                write_all(p2c.1, &i.to_le_bytes());
                read_exact(c2p.0, &mut b);
            });
        },
    );
    for f in [p2c.0, p2c.1, c2p.0, c2p.1] {
        close(f);
    }
    out
}

fn ipc(n: u64) -> Vec<u64> {
    let (tx, rx) = ipc_channel::ipc::bytes_channel().unwrap();
    let (tx2, rx2) = ipc_channel::ipc::bytes_channel().unwrap();
    let total = Total::new();
    let mut out = Vec::new();
    pair(
        || {
            let mut i = 0;
            while !total.reached(i) {
                let m = rx.recv().unwrap();
                tx2.send(&m).unwrap();
                i += 1;
            }
        },
        || {
            out = trips(n, &total, |i| {
                tx.send(&i.to_le_bytes()).unwrap();
                std::hint::black_box(rx2.recv().unwrap());
            })
        },
    );
    out
}

/// Two threads over two `ArrayQueue`s of capacity 1, spinning.
fn arrayqueue(n: u64) -> Vec<u64> {
    let (q1, q2) = (
        crossbeam_queue::ArrayQueue::<u64>::new(1),
        crossbeam_queue::ArrayQueue::<u64>::new(1),
    );
    let total = Total::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0;
            while !total.reached(i) {
                i += 1;
                let mut v = None;
                spin_until(|| {
                    v = q1.pop();
                    v.is_some()
                });
                while q2.push(v.unwrap()).is_err() {}
            }
        });
        trips(n, &total, |i| {
            while q1.push(i).is_err() {}
            spin_until(|| q2.pop().is_some());
        })
    })
}

/// Two threads over two bounded crossbeam channels (blocking receives).
fn channel(n: u64) -> Vec<u64> {
    let (t1, r1) = crossbeam_channel::bounded::<u64>(1);
    let (t2, r2) = crossbeam_channel::bounded::<u64>(1);
    let total = Total::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0;
            while !total.reached(i) {
                t2.send(r1.recv().unwrap()).unwrap();
                i += 1;
            }
        });
        trips(n, &total, |i| {
            t1.send(i).unwrap();
            std::hint::black_box(r2.recv().unwrap());
        })
    })
}

pub fn run(plan: &Plan, py: &Python, res: &mut Results) {
    println!("W1: 8-byte ping-pong round trip (ns: median; p99, p99.9, max over every trip)");
    let (fast, slow) = (plan.rtt, plan.rtt_slow);
    let all = std::cell::RefCell::new(Vec::<(String, Vec<u64>)>::new());
    let keep = |name: &str, v: Vec<u64>| -> f64 {
        let m = summary(&v).median;
        let mut all = all.borrow_mut();
        match all.iter_mut().find(|e| e.0 == name) {
            Some(e) => e.1.extend_from_slice(&v),
            None => all.push((name.to_string(), v)),
        }
        // The round's sample is its median; the p99 is taken over the
        // trips of all rounds pooled (one round holds too few for a p99).
        m
    };
    let mut cs: Vec<Contender<'_>> = vec![
        (
            "hw-reference".into(),
            Box::new(|| keep("hw-reference", hw(fast))),
        ),
        (
            "shmprim".into(),
            Box::new(|| keep("shmprim", shm(fast, WaitPolicy::default()))),
        ),
        (
            "shmprim-park".into(),
            Box::new(|| keep("shmprim-park", shm(slow, WaitPolicy::park()))),
        ),
        (
            "unix-socket".into(),
            Box::new(|| keep("unix-socket", fd(slow, socketpair(), socketpair()))),
        ),
        (
            "pipe".into(),
            Box::new(|| keep("pipe", fd(slow, pipe2(), pipe2()))),
        ),
        (
            "ipc-channel".into(),
            Box::new(|| keep("ipc-channel", ipc(slow))),
        ),
        (
            "iceoryx2".into(),
            Box::new(|| keep("iceoryx2", iox::ping_pong(fast))),
        ),
        (
            "crossbeam-arrayqueue".into(),
            Box::new(|| keep("crossbeam-arrayqueue", arrayqueue(fast))),
        ),
        (
            "crossbeam-channel".into(),
            Box::new(|| keep("crossbeam-channel", channel(slow))),
        ),
    ];
    if py.ok() {
        let n = if plan.quick { 200 } else { 2000 };
        cs.push((
            "python-mp".into(),
            Box::new(move || keep("python-mp", py.w1(n))),
        ));
    }
    let out = rounds(plan.rounds, cs);
    let all = all.into_inner();
    for (name, samples) in out {
        let pooled = &all.iter().find(|e| e.0 == name).unwrap().1;
        let t = summary(pooled);
        let m = median(samples);
        println!(
            "  {name:<24} {m:>10.0} {:>10.0} {:>10.0} {:>10.0}",
            t.p99, t.p999, t.max
        );
        res.push("W1", &name, m);
        res.push("W1-p99", &name, t.p99);
        res.push("W1-p999", &name, t.p999);
        res.push("W1-max", &name, t.max);
    }
    if !py.ok() {
        res.absent(&py.note());
    }
    res.latencies = all;
}
