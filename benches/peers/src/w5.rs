//! W5: MPMC, two producers and two consumers, 64-byte messages, in
//! messages/s. shmprim's `Queue` and crossbeam's `ArrayQueue` run through
//! `benches/queue.rs`'s drivers; a Unix datagram-style socket pair and a
//! pipe (whose writes of at most `PIPE_BUF` bytes are atomic) are the
//! kernel's MPMC channels.

use std::sync::atomic::{AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

use shmprim::Queue;

use crate::common::{
    fork_child, median, mono_ns, shared_zeroed, wait_child, StartLine, WarmClock, WARM_STAMP,
};
use crate::pipe_bench::{close, pipe2, read_exact, write_all};
use crate::python::Python;
use crate::queue_bench::{crossbeam_run, shm_run, start_line};
use crate::{rounds, Contender, Plan, Results};

const SIZE: usize = 64;
const CAPACITY: usize = 1024;

/// A `SOCK_SEQPACKET` socket pair: message boundaries kept, each message
/// read by exactly one of the readers of the receiving end.
fn seqpacket() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()) };
    assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
    (fds[1], fds[0])
}

/// 2P2C over a kernel channel (`rd`, `wr`): after the warm-up (first
/// byte 2, not counted), each producer sends its messages (0) and one
/// end-of-stream message (1), and a consumer stops at the first end it
/// reads.
fn kernel(per: u64, (rd, wr): (i32, i32)) -> f64 {
    #[repr(C)]
    struct Shared {
        line: StartLine<4>,
        received: AtomicU64,
        warm: WarmClock,
    }
    let p = shared_zeroed(std::mem::size_of::<Shared>());
    // SAFETY: a fresh zeroed shared mapping of the right size (never
    // unmapped); all-zero atomics are valid.
    let sh = unsafe { &*p.cast::<Shared>() };
    let mut pids = Vec::new();
    for w in 0..2 {
        pids.push(fork_child(move || {
            sh.line.run(w, || {
                let mut m = [7u8; SIZE];
                m[0] = 2;
                sh.warm.warm_up(|| write_all(wr, &m));
                m[0] = 0;
                for _ in 0..per {
                    write_all(wr, &m);
                }
                m[0] = 1;
                write_all(wr, &m);
            })
        }));
    }
    for w in 2..4 {
        pids.push(fork_child(move || {
            sh.line.run(w, || {
                let mut m = [0u8; SIZE];
                let mut n = 0;
                loop {
                    read_exact(rd, &mut m);
                    match m[0] {
                        1 => break,
                        2 => {}
                        _ => n += 1,
                    }
                }
                sh.received.fetch_add(n, SeqCst);
            })
        }));
    }
    sh.line.start(4, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(120);
    for pid in pids {
        wait_child(pid, deadline);
    }
    close(rd);
    close(wr);
    assert_eq!(sh.received.load(SeqCst), 2 * per, "messages lost");
    // The clock starts when the warm-up ends.
    2.0 * per as f64 * 1e9 / sh.line.elapsed_since(sh.warm.started()) as f64
}

/// Threads over a bounded crossbeam channel of `[u8; 64]`: `p` producers
/// sending `per` messages each after the warm-up (`WarmClock`), `c`
/// consumers.
fn channel(p: usize, c: usize, per: u64) -> f64 {
    let (tx, rx) = crossbeam_channel::bounded::<[u8; SIZE]>(CAPACITY);
    let got = AtomicU64::new(0);
    let warm = WarmClock::new();
    std::thread::scope(|s| {
        for _ in 0..p {
            let (tx, warm) = (tx.clone(), &warm);
            s.spawn(move || {
                let mut m = [0u8; SIZE];
                m[..8].copy_from_slice(&WARM_STAMP.to_le_bytes());
                warm.warm_up(|| tx.send(m).unwrap());
                for i in 0..per {
                    let mut m = [0u8; SIZE];
                    m[..8].copy_from_slice(&i.to_le_bytes());
                    tx.send(m).unwrap();
                }
            });
        }
        drop(tx);
        for _ in 0..c {
            let (rx, got) = (rx.clone(), &got);
            s.spawn(move || {
                let mut n = 0;
                while let Ok(m) = rx.recv() {
                    if std::hint::black_box(m)[..8] != WARM_STAMP.to_le_bytes() {
                        n += 1;
                    }
                }
                got.fetch_add(n, SeqCst);
            });
        }
    });
    let t1 = mono_ns();
    assert_eq!(got.load(SeqCst), p as u64 * per, "messages lost");
    (p as u64 * per) as f64 * 1e9 / (t1 - warm.started()) as f64
}

pub fn run(plan: &Plan, py: &Python, res: &mut Results) {
    println!("\nW5: MPMC 2P2C, 64-byte messages (msg/s)");
    let per = plan.mpmc_per;
    let line = start_line();
    let mut cs: Vec<Contender<'_>> = vec![
        (
            "shmprim".into(),
            Box::new(|| {
                // A fresh queue per run: each run ends by closing it.
                let q = Queue::anonymous(CAPACITY, SIZE).unwrap();
                shm_run(line, &q, 2, 2, SIZE, per)
            }),
        ),
        (
            "crossbeam-arrayqueue".into(),
            Box::new(|| crossbeam_run::<SIZE>(2, 2, per)),
        ),
        ("crossbeam-channel".into(), Box::new(|| channel(2, 2, per))),
        (
            "unix-socket".into(),
            Box::new(|| kernel(per / 10, seqpacket())),
        ),
        ("pipe".into(), Box::new(|| kernel(per / 10, pipe2()))),
    ];
    if py.ok() {
        let n = per / 20;
        cs.push(("python-mp".into(), Box::new(move || py.w5(n))));
    }
    for (name, v) in rounds(plan.rounds, cs) {
        let m = median(v);
        println!("  {name:<24} {:>10.2} M msg/s", m / 1e6);
        res.push("W5", &name, m);
    }
    shapes(plan, line, res);
    res.absent("iceoryx2 and ipc-channel in W5 (publish/subscribe delivers every message to every subscriber; an ipc-channel receiver has one owner: neither is an MPMC queue)");
    res.absent("hw-reference in W5 (no minimal MPMC reference: crossbeam's ArrayQueue between threads is the bar)");
}

/// The other shapes, beside `W5` (2P2C): `(id, producers, consumers)`.
/// 8P8C puts sixteen processes (threads, for the crossbeam peers) on
/// however few cores there are: a queue whose waiters spin too long, or
/// sleep and wake too eagerly, collapses there.
const SHAPES: [(&str, usize, usize); 3] = [("W5-1p1c", 1, 1), ("W5-4p4c", 4, 4), ("W5-8p8c", 8, 8)];

/// The shapes of [`SHAPES`] for shmprim (processes) and the crossbeam
/// peers (threads); every shape moves as many messages as `W5` does.
/// Prints shmprim's rate in each shape against its own 1P1C rate (the
/// target: at least 0.5x).
fn shapes(plan: &Plan, line: &'static crate::queue_bench::StartLine, res: &mut Results) {
    let total = 2 * plan.mpmc_per;
    let mut own = Vec::new();
    for (id, p, c) in SHAPES {
        println!("\n{id}: MPMC {p}P{c}C, 64-byte messages (msg/s)");
        let per = total / p as u64;
        let cs: Vec<Contender<'_>> = vec![
            (
                "shmprim".into(),
                Box::new(move || {
                    let q = Queue::anonymous(CAPACITY, SIZE).unwrap();
                    shm_run(line, &q, p, c, SIZE, per)
                }),
            ),
            (
                "crossbeam-arrayqueue".into(),
                Box::new(move || crossbeam_run::<SIZE>(p, c, per)),
            ),
            (
                "crossbeam-channel".into(),
                Box::new(move || channel(p, c, per)),
            ),
        ];
        for (name, v) in rounds(plan.rounds, cs) {
            let m = median(v);
            println!("  {name:<24} {:>10.2} M msg/s", m / 1e6);
            if name == "shmprim" {
                own.push((id, m));
            }
            res.push(id, &name, m);
        }
    }
    if let Some(&(_, one)) = own.first() {
        for (id, m) in &own[1..] {
            println!(
                "  shmprim {id} / its own W5-1p1c: {:.2}x (target: at least 0.5x)",
                m / one
            );
        }
    }
}
