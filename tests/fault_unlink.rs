//! Names unlinked while four peers talk: two producers and two consumers
//! share a `Queue`, a `Pipe` and a `Value` counter; half-way through, the
//! creator unlinks all three names. The peers go on through their mappings
//! (every message arrives exactly once, the pipe keeps its order, the
//! counter counts every send), a new `open` of any of the names fails
//! cleanly with `NotFound`, and nothing is left in `/dev/shm`.
#![cfg(target_os = "linux")]

mod harness;
use harness::*;
use shmprim::*;

use std::time::{Duration, Instant};

/// Messages per producer.
const N: u64 = 3000;
/// The longest any blocking call of a peer waits before failing the test.
const LONG: Duration = Duration::from_secs(30);

fn msg(id: u64, seq: u64) -> u64 {
    id << 32 | seq
}

// Sends N messages on the queue, counting each in the value; producer 1
// then sends 0..N on the pipe (end B).
child!(fn producer(ctx) {
    let id: u64 = ctx.parse("id");
    let q = Queue::open(&ctx.arg("q"))?;
    let count = Value::<u64>::open(&ctx.arg("count"))?;
    let pipe = Pipe::open(&ctx.arg("pipe"))?;
    let gate = AtomicValue::<u32>::open(&ctx.arg("gate"))?;
    let half = AtomicValue::<u32>::open(&ctx.arg("half"))?;
    ctx.send("ready");
    gate_wait(&gate, LONG)?;
    for seq in 0..N {
        if seq == N / 2 {
            // Half-way: wait until the parent has unlinked every name, so
            // the second half surely runs on unlinked names.
            gate_wait(&half, LONG)?;
        }
        q.send_timeout(&msg(id, seq), LONG)?;
        count.update(|c| *c += 1)?;
    }
    if id == 1 {
        let mut b = pipe.connect(End::B)?;
        for seq in 0..N {
            b.send_bytes_timeout(&seq.to_le_bytes(), LONG)?;
        }
    }
    ctx.send("done");
});

// Receives until the sentinel, checking each producer's order; consumer 2
// then reads the pipe (end A). Reports the count and a checksum.
child!(fn consumer(ctx) {
    let id: u64 = ctx.parse("id");
    let q = Queue::open(&ctx.arg("q"))?;
    let pipe = Pipe::open(&ctx.arg("pipe"))?;
    let gate = AtomicValue::<u32>::open(&ctx.arg("gate"))?;
    let mut a = if id == 2 { Some(pipe.connect(End::A)?) } else { None };
    ctx.send("ready");
    gate_wait(&gate, LONG)?;
    let (mut n, mut sum) = (0u64, 0u64);
    let mut last = [None::<u64>; 2];
    loop {
        let m: u64 = q.recv_timeout(LONG)?;
        if m == u64::MAX {
            break;
        }
        let (p, seq) = ((m >> 32) as usize, m & 0xffff_ffff);
        if !(p == 0 || p == 1) || last[p].is_some_and(|l| seq <= l) {
            return Err(format!("out of order or foreign: {m:#x} after {:?}", last[p]).into());
        }
        last[p] = Some(seq);
        n += 1;
        sum = sum.wrapping_add(m);
    }
    if let Some(a) = a.as_mut() {
        for seq in 0..N {
            let m = a.recv_bytes_timeout(LONG)?;
            if m != seq.to_le_bytes() {
                return Err(format!("pipe message {seq}: {m:?}").into());
            }
        }
    }
    ctx.send(&format!("got {n} {sum}"));
});

#[test]
fn names_unlinked_while_four_peers_talk() {
    let _w = watchdog(
        "names_unlinked_while_four_peers_talk",
        Duration::from_secs(90),
    );
    let (qn, pn, cn, gn) = (unique("fuq"), unique("fup"), unique("fuc"), unique("fug"));
    let q = Queue::create(&qn, 8, 8).unwrap();
    let pipe = Pipe::create(&pn, 4096).unwrap();
    let count = Value::<u64>::create(&cn, 0).unwrap();
    let gate = AtomicValue::<u32>::create(&gn, 0).unwrap();
    let hn = unique("fuh");
    let half = AtomicValue::<u32>::create(&hn, 0).unwrap();
    let start = |role: &str, id: u64| {
        let c = spawn(role)
            .arg("id", id)
            .arg("q", &qn)
            .arg("pipe", &pn)
            .arg("count", &cn)
            .arg("gate", &gn)
            .arg("half", &hn)
            .start();
        c.expect("ready");
        c
    };
    let producers = [start("producer", 0), start("producer", 1)];
    let consumers = [start("consumer", 2), start("consumer", 3)];
    gate_open(&gate);

    // Half-way: unlink every name the peers use.
    let t = Instant::now();
    while count.get().unwrap() < N {
        assert!(t.elapsed() < LONG, "the peers never got half-way");
        std::thread::sleep(Duration::from_millis(1));
    }
    q.segment().unlink().unwrap();
    pipe.segment().unlink().unwrap();
    count.segment().unlink().unwrap();
    let mid = count.get().unwrap();
    assert_eq!(
        mid, N,
        "the producers stop half-way until the names are gone"
    );
    gate_open(&half);
    assert!(matches!(Queue::open(&qn), Err(Error::NotFound)));
    assert!(matches!(Pipe::open(&pn), Err(Error::NotFound)));
    assert!(matches!(Value::<u64>::open(&cn), Err(Error::NotFound)));

    // The talk goes on through the mappings.
    let t = Instant::now();
    while count.get().unwrap() < 2 * N {
        assert!(t.elapsed() < LONG, "the producers stalled after the unlink");
        std::thread::sleep(Duration::from_millis(1));
    }
    for _ in &consumers {
        q.send_timeout(&u64::MAX, LONG).unwrap();
    }
    for p in &producers {
        p.expect("done");
    }
    assert_eq!(count.get().unwrap(), 2 * N, "a send counted twice");
    let (mut n, mut sum) = (0u64, 0u64);
    for c in &consumers {
        let line = c.recv(LONG).expect("consumer silent");
        let mut it = line
            .strip_prefix("got ")
            .unwrap_or_else(|| panic!("consumer said {line:?}\n{}", c.output()))
            .split(' ')
            .map(|x| x.parse::<u64>().unwrap());
        n += it.next().unwrap();
        sum = sum.wrapping_add(it.next().unwrap());
    }
    join_all(producers);
    join_all(consumers);
    let want = (0..2)
        .flat_map(|p| (0..N).map(move |s| msg(p, s)))
        .fold(0u64, u64::wrapping_add);
    assert_eq!((n, sum), (2 * N, want), "lost or duplicated messages");
    assert!(q.is_empty());
    // The creator's handles no longer own a name: dropping them removes
    // nothing (and nothing is left behind).
    drop((q, pipe, count));
    for name in [&qn, &pn, &cn] {
        assert!(matches!(Segment::unlink_name(name), Err(Error::NotFound)));
    }
}
