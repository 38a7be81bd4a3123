//! W2 (64-byte streaming, messages/s) and W3 (64 KiB streaming, GB/s,
//! copying and zero-copy), each over a small sweep of message sizes for
//! the plots. One producer process streams to one consumer process; every
//! system's figure is ns per message, converted at the end.

use shmprim::WaitPolicy;

use crate::common::median;
use crate::pipe_bench::{
    close, conns, hw_stream, kernel_stream, pair, pipe2, shm_stream, socketpair, spin_ring_stream,
    RING,
};

/// Messages per `send_many` / `recv_many` call in W2-batch.
const BATCH: usize = 32;

/// W2 through the batch API: the child sends `BATCH` messages per
/// `send_many`, the parent takes up to `BATCH` per `recv_many` (one
/// allocation per message: the agreed `Vec<Vec<u8>>` shape).
fn shm_batch(n: u64, size: usize) -> f64 {
    let (mut a, mut b) = conns(RING.max(4 * size), WaitPolicy::default());
    let e = pair(
        move || {
            b.claim().unwrap();
            let src = vec![7u8; size];
            let batch = vec![&src[..]; BATCH];
            let mut sent = 0u64;
            while sent < n {
                let k = (n - sent).min(BATCH as u64) as usize;
                sent += b.send_many(&batch[..k]).unwrap() as u64;
            }
            let _ = b.recv_bytes();
            std::mem::forget(b);
        },
        || {
            a.claim().unwrap();
            let mut out = Vec::with_capacity(BATCH);
            let mut got = 0u64;
            while got < n {
                out.clear();
                got += a.recv_many(&mut out, BATCH).unwrap() as u64;
                std::hint::black_box(&out);
            }
            a.send_bytes(b"done").unwrap();
        },
    );
    e.as_nanos() as f64 / n as f64
}
use crate::python::Python;
use crate::{iox, rounds, Contender, Plan, Point, Results, LARGE, SMALL};

fn fd(n: u64, size: usize, (rd, wr): (i32, i32)) -> f64 {
    let r = kernel_stream(n, size, rd, wr);
    close(rd);
    close(wr);
    r
}

fn ipc(n: u64, size: usize) -> f64 {
    let (tx, rx) = ipc_channel::ipc::bytes_channel().unwrap();
    let e = pair(
        || {
            let src = vec![7u8; size];
            for _ in 0..n {
                tx.send(&src).unwrap();
            }
        },
        || {
            for _ in 0..n {
                std::hint::black_box(rx.recv().unwrap());
            }
        },
    );
    e.as_nanos() as f64 / n as f64
}

/// Threads over an `ArrayQueue` of 64 KiB worth of `[u8; S]`, spinning.
fn arrayqueue<const S: usize>(n: u64) -> f64 {
    let q = crossbeam_queue::ArrayQueue::<[u8; S]>::new((RING / S).max(16));
    let t = std::time::Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            let m = [7u8; S];
            for _ in 0..n {
                while q.push(m).is_err() {
                    std::hint::spin_loop();
                }
            }
        });
        let mut buf = [0u8; S];
        for _ in 0..n {
            loop {
                if let Some(m) = q.pop() {
                    buf = m;
                    break;
                }
                std::hint::spin_loop();
            }
        }
        std::hint::black_box(&buf);
    });
    t.elapsed().as_nanos() as f64 / n as f64
}

/// Threads over a bounded crossbeam channel of `Vec<u8>` (one copy in, one
/// copy out, as a byte-message API would do).
fn channel(n: u64, size: usize) -> f64 {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>((RING / size).max(16));
    let t = std::time::Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            let src = vec![7u8; size];
            for _ in 0..n {
                tx.send(src.clone()).unwrap();
            }
        });
        let mut buf = vec![0u8; size];
        for _ in 0..n {
            buf.copy_from_slice(&rx.recv().unwrap());
        }
        std::hint::black_box(&buf);
    });
    t.elapsed().as_nanos() as f64 / n as f64
}

fn arrayqueue_sized(n: u64, size: usize) -> Option<f64> {
    Some(match size {
        16 => arrayqueue::<16>(n),
        64 => arrayqueue::<64>(n),
        256 => arrayqueue::<256>(n),
        1024 => arrayqueue::<1024>(n),
        _ => return None,
    })
}

/// One sweep point of every system: `(workload-or-series, system, ns/msg)`.
fn small_point(plan: &Plan, py: &Python, size: usize) -> Vec<(String, Vec<f64>)> {
    let (fast, slow) = (plan.small, plan.small_slow);
    let mut cs: Vec<Contender<'_>> = vec![
        (
            "hw-reference".into(),
            Box::new(move || spin_ring_stream(fast, size)),
        ),
        (
            "shmprim".into(),
            Box::new(move || shm_stream(fast, size, WaitPolicy::default(), false)),
        ),
        (
            "shmprim-batch".into(),
            Box::new(move || shm_batch(fast, size)),
        ),
        (
            "shmprim-park".into(),
            Box::new(move || shm_stream(slow, size, WaitPolicy::park(), false)),
        ),
        (
            "unix-socket".into(),
            Box::new(move || fd(slow, size, socketpair())),
        ),
        ("pipe".into(), Box::new(move || fd(slow, size, pipe2()))),
        ("ipc-channel".into(), Box::new(move || ipc(slow, size))),
        (
            "iceoryx2".into(),
            Box::new(move || iox::stream(slow, size, false)),
        ),
        (
            "crossbeam-arrayqueue".into(),
            Box::new(move || arrayqueue_sized(fast, size).unwrap()),
        ),
        (
            "crossbeam-channel".into(),
            Box::new(move || channel(slow, size)),
        ),
    ];
    if py.ok() {
        let n = slow / 4;
        cs.push(("python-mp".into(), Box::new(move || py.stream(n, size))));
    }
    rounds(plan.rounds, cs)
}

fn large_point(plan: &Plan, py: &Python, size: usize) -> Vec<(String, Vec<f64>)> {
    let n = (plan.large_bytes / size as u64).max(16);
    let slow = (n / 4).max(16);
    let mut cs: Vec<Contender<'_>> = vec![
        ("hw-reference".into(), Box::new(move || hw_stream(n, size))),
        (
            "shmprim".into(),
            Box::new(move || shm_stream(n, size, WaitPolicy::default(), false)),
        ),
        (
            "shmprim-park".into(),
            Box::new(move || shm_stream(slow, size, WaitPolicy::park(), false)),
        ),
        (
            "unix-socket".into(),
            Box::new(move || fd(slow, size, socketpair())),
        ),
        ("pipe".into(), Box::new(move || fd(slow, size, pipe2()))),
        ("ipc-channel".into(), Box::new(move || ipc(slow, size))),
        (
            "iceoryx2".into(),
            Box::new(move || iox::stream(slow, size, false)),
        ),
        (
            "crossbeam-channel".into(),
            Box::new(move || channel(n, size)),
        ),
        (
            "shmprim/loan".into(),
            Box::new(move || shm_stream(n, size, WaitPolicy::default(), true)),
        ),
        (
            "shmprim-park/loan".into(),
            Box::new(move || shm_stream(slow, size, WaitPolicy::park(), true)),
        ),
        (
            "iceoryx2/loan".into(),
            Box::new(move || iox::stream(slow, size, true)),
        ),
    ];
    if py.ok() {
        let m = slow / 4;
        cs.push((
            "python-mp".into(),
            Box::new(move || py.stream(m.max(16), size)),
        ));
    }
    rounds(plan.rounds, cs)
}

pub fn run(plan: &Plan, py: &Python, res: &mut Results) {
    println!(
        "\nW2: streaming, messages/s (sweep {:?} bytes; W2 is 64 B)",
        plan.small_sizes
    );
    for &size in plan.small_sizes {
        for (name, ns) in small_point(plan, py, size) {
            let rate = 1e9 / median(ns);
            println!("  {size:>6} B  {name:<24} {:>10.2} M msg/s", rate / 1e6);
            if size == SMALL {
                // The batch API is its own workload, beside the reference.
                match name.as_str() {
                    "shmprim-batch" => res.push("W2-batch", "shmprim", rate),
                    "hw-reference" => {
                        res.push("W2", &name, rate);
                        res.push("W2-batch", &name, rate);
                    }
                    _ => res.push("W2", &name, rate),
                }
            }
            res.w2_sweep.push(Point {
                series: name,
                size,
                value: rate,
            });
        }
    }
    println!(
        "\nW3: streaming, GB/s (sweep {:?} bytes; W3 is 64 KiB; name/loan = zero copy)",
        plan.large_sizes
    );
    for &size in plan.large_sizes {
        for (name, ns) in large_point(plan, py, size) {
            let gbs = size as f64 / median(ns);
            println!("  {size:>6} B  {name:<24} {gbs:>10.2} GB/s");
            if size == LARGE {
                // The hardware reference (a memcpy slot ring) stands in both
                // tables: a copy in and a copy out bound either API.
                match name.strip_suffix("/loan") {
                    Some(sys) => res.push("W3-loan", sys, gbs),
                    None if name == "hw-reference" => {
                        res.push("W3-copy", &name, gbs);
                        res.push("W3-loan", &name, gbs);
                    }
                    None => res.push("W3-copy", &name, gbs),
                }
            }
            res.w3_sweep.push(Point {
                series: name,
                size,
                value: gbs,
            });
        }
    }
    res.absent("crossbeam-arrayqueue in W3 (an in-process queue of 64 KiB arrays measures stack moves; crossbeam-channel of Vec<u8> stands for the threads)");
    res.absent("ipc-channel, unix-socket, pipe, crossbeam-channel and python-mp in W3-loan (no zero-copy API)");
}
