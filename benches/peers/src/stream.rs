//! W2 (64-byte streaming, messages/s) and W3 (64 KiB streaming, GB/s,
//! copying and zero-copy), each over a small sweep of message sizes for
//! the plots. One producer process streams to one consumer process; every
//! system's figure is ns per message, converted at the end.

use shmprim::WaitPolicy;

use crate::common::{median, Chunks, Total, Warm};
use crate::pipe_bench::{
    close, hw_stream, kernel_stream, pair, pipe2, ring_for, shm_batch, shm_stream, socketpair,
    spin_ring_stream, RING,
};
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
    let total = Total::new();
    let mut fig = 0.0;
    pair(
        || {
            let src = vec![7u8; size];
            let mut w = Warm::new(total, n);
            while w.more() {
                tx.send(&src).unwrap();
            }
        },
        || {
            let mut c = Chunks::after_warm_up(n, total);
            while !c.done() {
                std::hint::black_box(rx.recv().unwrap());
                c.add(1);
            }
            fig = c.figure();
        },
    );
    fig
}

/// Threads over an `ArrayQueue` of 64 KiB worth of `[u8; S]`, spinning.
fn arrayqueue<const S: usize>(n: u64) -> f64 {
    let q = crossbeam_queue::ArrayQueue::<[u8; S]>::new((RING / S).max(16));
    let total = Total::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            let m = [7u8; S];
            let mut w = Warm::new(total, n);
            while w.more() {
                while q.push(m).is_err() {
                    std::hint::spin_loop();
                }
            }
        });
        let mut buf = [0u8; S];
        let mut c = Chunks::after_warm_up(n, total);
        while !c.done() {
            loop {
                if let Some(m) = q.pop() {
                    buf = m;
                    break;
                }
                std::hint::spin_loop();
            }
            c.add(1);
        }
        std::hint::black_box(&buf);
        c.figure()
    })
}

/// Threads over a bounded crossbeam channel of `Vec<u8>` (one copy in, one
/// copy out, as a byte-message API would do).
fn channel(n: u64, size: usize) -> f64 {
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>((RING / size).max(16));
    let total = Total::new();
    std::thread::scope(|s| {
        s.spawn(move || {
            let src = vec![7u8; size];
            let mut w = Warm::new(total, n);
            while w.more() {
                tx.send(src.clone()).unwrap();
            }
        });
        let mut buf = vec![0u8; size];
        let mut c = Chunks::after_warm_up(n, total);
        while !c.done() {
            buf.copy_from_slice(&rx.recv().unwrap());
            c.add(1);
        }
        std::hint::black_box(&buf);
        c.figure()
    })
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
            Box::new(move || spin_ring_stream(fast, size, ring_for(size))),
        ),
        (
            "shmprim".into(),
            Box::new(move || shm_stream(fast, size, ring_for(size), WaitPolicy::default(), false)),
        ),
        (
            "shmprim-batch".into(),
            Box::new(move || shm_batch(fast, size)),
        ),
        (
            "shmprim-park".into(),
            Box::new(move || shm_stream(slow, size, ring_for(size), WaitPolicy::park(), false)),
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
        // The hardware reference is the faster of two plain rings of
        // shmprim's ring size, each a copy in and a copy out per message.
        (
            "hw-slot-ring".into(),
            Box::new(move || hw_stream(n, size, ring_for(size))),
        ),
        (
            "hw-byte-ring".into(),
            Box::new(move || spin_ring_stream(n, size, ring_for(size))),
        ),
        (
            "shmprim".into(),
            Box::new(move || shm_stream(n, size, ring_for(size), WaitPolicy::default(), false)),
        ),
        (
            "shmprim-park".into(),
            Box::new(move || shm_stream(slow, size, ring_for(size), WaitPolicy::park(), false)),
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
            Box::new(move || shm_stream(n, size, ring_for(size), WaitPolicy::default(), true)),
        ),
        (
            "shmprim-park/loan".into(),
            Box::new(move || shm_stream(slow, size, ring_for(size), WaitPolicy::park(), true)),
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
        let mut point = large_point(plan, py, size);
        // The reference is the faster of the two plain rings.
        let best = point
            .iter()
            .filter(|(name, _)| name.starts_with("hw-"))
            .map(|(name, ns)| (name.clone(), median(ns.clone())))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        for (name, ns) in &point {
            if name.starts_with("hw-") {
                let gbs = size as f64 / median(ns.clone());
                println!("  {size:>6} B  {name:<24} {gbs:>10.2} GB/s");
            }
        }
        point.retain(|(name, _)| !name.starts_with("hw-"));
        point.insert(0, ("hw-reference".into(), vec![best.1]));
        for (name, ns) in point {
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
    ring_sizes(plan);
    res.absent("crossbeam-arrayqueue in W3 (an in-process queue of 64 KiB arrays measures stack moves; crossbeam-channel of Vec<u8> stands for the threads)");
    res.absent("ipc-channel, unix-socket, pipe, crossbeam-channel and python-mp in W3-loan (no zero-copy API)");
}

/// W3 copy at the two ring sizes issue 15 names (512 KiB and 4 MiB, 64 KiB
/// messages): shmprim beside both plain rings of the same size, printed
/// (the table's W3 figures use the 1 MiB ring).
fn ring_sizes(plan: &Plan) {
    println!(
        "\nW3 copy at other ring sizes, GB/s (64 KiB messages; reference: the faster plain ring)"
    );
    let size = LARGE;
    let n = (plan.large_bytes / size as u64).max(16);
    for ring in [512 << 10, 4 << 20] {
        let cs: Vec<Contender<'_>> = vec![
            (
                "hw-slot-ring".into(),
                Box::new(move || hw_stream(n, size, ring)),
            ),
            (
                "hw-byte-ring".into(),
                Box::new(move || spin_ring_stream(n, size, ring)),
            ),
            (
                "shmprim".into(),
                Box::new(move || shm_stream(n, size, ring, WaitPolicy::default(), false)),
            ),
        ];
        let r: Vec<f64> = rounds(plan.rounds, cs)
            .into_iter()
            .map(|(_, ns)| size as f64 / median(ns))
            .collect();
        let best = r[0].max(r[1]);
        println!(
            "  {:>4} KiB ring  slot ring {:>6.2}  byte ring {:>6.2}  shmprim {:>6.2}  {:.2}x the reference (target >= 0.9x)",
            ring >> 10,
            r[0],
            r[1],
            r[2],
            r[2] / best
        );
    }
}
