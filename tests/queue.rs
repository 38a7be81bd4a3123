//! `Queue` / `JoinableQueue` across processes: FIFO, exactly-once delivery
//! with N producers x M consumers, a million messages with a checksum,
//! full/empty timeouts, close while blocked, joinable work with sentinels,
//! SIGKILLed peers, odd capacities, positions near the 2^64 wrap, zero
//! copy and typed messages.
#![cfg(target_os = "linux")]

mod harness;
use harness::*;
use shmprim::*;

use std::time::{Duration, Instant};

/// The timeout used for "waits at least T" checks.
const T: Duration = Duration::from_millis(100);
/// Generous upper bound on top of `T` (never a speed requirement).
const SLACK: Duration = Duration::from_secs(2);
/// Longest any blocking call in a child waits before failing the test.
const LONG: Duration = Duration::from_secs(30);
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// A well-mixed hash of a message, summed (wrapping) per consumer: equal
/// sums and counts over all consumers mean every message arrived exactly
/// once (duplicates within a consumer are caught by the order check).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn msg(producer: u64, seq: u64) -> u64 {
    producer << 40 | seq
}

// ---------------------------------------------------------------------------
// Child roles
// ---------------------------------------------------------------------------

// Sends (id, 0..count) as u64 messages, then says "done".
child!(fn producer(ctx) {
    let q = Queue::open(&ctx.arg("q"))?;
    let id: u64 = ctx.parse("id");
    let count: u64 = ctx.parse("count");
    for seq in 0..count {
        q.send_timeout(&msg(id, seq), LONG)?;
    }
    ctx.send("done");
});

// Receives u64 messages until the queue is closed and drained. Checks each
// producer's sequence increases; reports "count hashsum".
child!(fn consumer(ctx) {
    let q = Queue::open(&ctx.arg("q"))?;
    let mut last = std::collections::HashMap::<u64, u64>::new();
    let (mut count, mut sum) = (0u64, 0u64);
    loop {
        let v: u64 = match q.recv_timeout(LONG) {
            Ok(v) => v,
            Err(Error::Closed) => break,
            Err(e) => return Err(e.into()),
        };
        let (p, s) = (v >> 40, v & ((1 << 40) - 1));
        if let Some(&l) = last.get(&p) {
            assert!(s > l, "producer {p}: {s} after {l}");
        }
        last.insert(p, s);
        count += 1;
        sum = sum.wrapping_add(mix(v));
    }
    ctx.send(&format!("{count} {sum}"));
});

// Sends 0..count as u64 in order (FIFO test).
child!(fn fifo_producer(ctx) {
    let q = Queue::open(&ctx.arg("q"))?;
    let count: u64 = ctx.parse("count");
    for i in 0..count {
        q.send_timeout(&i, LONG)?;
    }
});

// Blocks in recv (or send, with role=send) until the queue is closed;
// reports the error it got.
child!(fn blocked_until_closed(ctx) {
    let q = Queue::open(&ctx.arg("q"))?;
    ctx.send("blocking");
    let r = if ctx.arg("role") == "send" {
        q.send_bytes(b"x").map(|_| ())
    } else {
        q.recv_bytes().map(|_| ())
    };
    ctx.send(&format!("{r:?}"));
});

// Blocks receiving one message, reports it.
child!(fn recv_one(ctx) {
    let q = Queue::open(&ctx.arg("q"))?;
    ctx.send("blocking");
    let v: u64 = q.recv_timeout(LONG)?;
    ctx.send(&format!("got {v}"));
});

// Blocks sending one message, reports "sent".
child!(fn send_one(ctx) {
    let q = Queue::open(&ctx.arg("q"))?;
    let v: u64 = ctx.parse("v");
    ctx.send("blocking");
    q.send_timeout(&v, LONG)?;
    ctx.send("sent");
});

// JoinableQueue worker: adds each job to `sum`, task_done each, stops at
// the sentinel u64::MAX (also task_done).
child!(fn worker(ctx) {
    let q = JoinableQueue::open(&ctx.arg("q"))?;
    let sum = AtomicValue::<u64>::open(&ctx.arg("sum"))?;
    loop {
        let job: u64 = q.recv_timeout(LONG)?;
        if job == u64::MAX {
            q.task_done()?;
            break;
        }
        // Some work, so join really has to wait.
        std::hint::black_box((0..200).fold(job, |a, b| a ^ b));
        sum.fetch_add(job);
        q.task_done()?;
    }
});

// Zero copy across processes: reserves, fills, commits; and a dropped
// reservation sends nothing.
child!(fn zero_copy_sender(ctx) {
    let q = Queue::open(&ctx.arg("q"))?;
    let mut r = q.reserve(5)?;
    r.copy_from_slice(b"dropd");
    drop(r);
    let mut r = q.reserve(11)?;
    r.copy_from_slice(b"hello world");
    r.commit();
    q.send(&[1u32, 2, 3, 4])?;
});

// Borrows one message in place and holds it until killed.
child!(fn borrow_and_hold(ctx) {
    let q = Queue::open(&ctx.arg("q"))?;
    let b = q.recv_in_place_timeout(LONG)?;
    ctx.send(&format!("holding {}", b.len()));
    std::thread::sleep(LONG);
    drop(b);
});

// Reserves a slot of a JoinableQueue, reports it, holds it for `ms`, then
// commits it (after the parent closed the queue meanwhile).
child!(fn reserve_hold_commit(ctx) {
    let q = JoinableQueue::open(&ctx.arg("q"))?;
    let ms: u64 = ctx.parse("ms");
    let mut r = q.reserve(1)?;
    r.copy_from_slice(b"a");
    ctx.send("reserved");
    std::thread::sleep(Duration::from_millis(ms));
    r.commit();
    ctx.send("committed");
});

// Receives until Closed, marking each task done; reports the count.
child!(fn drain_joinable(ctx) {
    let q = JoinableQueue::open(&ctx.arg("q"))?;
    ctx.send("draining");
    let mut n = 0;
    loop {
        match q.recv_bytes_timeout(LONG) {
            Ok(_) => {
                n += 1;
                q.task_done()?;
            }
            Err(Error::Closed) => break,
            Err(e) => return Err(e.into()),
        }
    }
    ctx.send(&format!("drained {n}"));
});

#[cfg(feature = "serde")]
child!(fn obj_sender(ctx) {
    let q = Queue::open(&ctx.arg("q"))?;
    q.send_obj(&(String::from("from a child"), vec![1u16, 2, 3]))?;
});

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

fn spawn_consumers(name: &str, n: usize) -> Vec<Child> {
    (0..n)
        .map(|_| {
            spawn("consumer")
                .arg("q", name)
                .timeout(CHILD_TIMEOUT)
                .start()
        })
        .collect()
}

/// N producers x M consumers through one queue: every message exactly
/// once, each producer's messages in order within each consumer.
fn producers_consumers(n: u64, m: usize, capacity: usize, per: u64, start_at: Option<u64>) {
    let _w = watchdog("producers_consumers", Duration::from_secs(90));
    let name = unique("qpc");
    let q = Queue::create(&name, capacity, 8).unwrap();
    if let Some(p) = start_at {
        // SAFETY: a fresh queue that nobody else uses yet.
        unsafe { q.__start_positions_at(p) };
    }
    let consumers = spawn_consumers(&name, m);
    let producers: Vec<Child> = (0..n)
        .map(|id| {
            spawn("producer")
                .arg("q", &name)
                .arg("id", id)
                .arg("count", per)
                .timeout(CHILD_TIMEOUT)
                .start()
        })
        .collect();
    for p in producers {
        p.expect("done");
        p.join();
    }
    q.close();
    let (mut count, mut sum) = (0u64, 0u64);
    for c in consumers {
        let line = c.recv(CHILD_TIMEOUT).expect("consumer report");
        let mut it = line.split(' ').map(|x| x.parse::<u64>().unwrap());
        count += it.next().unwrap();
        sum = sum.wrapping_add(it.next().unwrap());
        c.join();
    }
    let want: u64 = (0..n)
        .flat_map(|p| (0..per).map(move |s| msg(p, s)))
        .fold(0u64, |a, v| a.wrapping_add(mix(v)));
    assert_eq!(count, n * per, "message count");
    assert_eq!(sum, want, "checksum: a message was lost or duplicated");
    assert!(q.is_empty());
}

#[test]
fn one_producer_four_consumers_capacity_1() {
    producers_consumers(1, 4, 1, 5_000, None);
}

#[test]
fn four_producers_one_consumer_capacity_3() {
    producers_consumers(4, 1, 3, 5_000, None);
}

#[test]
fn two_producers_two_consumers_capacity_7() {
    producers_consumers(2, 2, 7, 10_000, None);
}

#[test]
fn four_producers_four_consumers() {
    producers_consumers(4, 4, 64, 10_000, None);
}

#[test]
fn positions_near_the_wrap_odd_capacity() {
    // One_lap for capacity 5 is 8: start a few laps before 2^64.
    producers_consumers(2, 2, 5, 5_000, Some(u64::MAX - 8 * 50));
}

#[test]
fn a_million_messages_with_checksum() {
    producers_consumers(1, 1, 1024, 1_000_000, None);
}

#[test]
fn fifo_from_one_producer() {
    let name = unique("qfifo");
    let q = Queue::create(&name, 16, 8).unwrap();
    let child = spawn("fifo_producer")
        .arg("q", &name)
        .arg("count", 20_000)
        .start();
    for i in 0..20_000u64 {
        assert_eq!(q.recv_timeout::<u64>(LONG).unwrap(), i);
    }
    child.join();
}

#[test]
fn full_and_empty_with_timeouts() {
    let q = Queue::anonymous(2, 8).unwrap();
    assert!(q.is_empty() && !q.is_full());
    assert!(matches!(q.try_recv_bytes(), Err(Error::Empty)));
    let start = Instant::now();
    assert!(matches!(q.recv_bytes_timeout(T), Err(Error::Timeout)));
    let took = start.elapsed();
    assert!(took >= T && took < T + SLACK, "recv timeout took {took:?}");
    assert!(matches!(
        q.recv_bytes_timeout(Duration::ZERO),
        Err(Error::Timeout)
    ));
    q.send_bytes(b"a").unwrap();
    q.try_send_bytes(b"b").unwrap();
    assert!(q.is_full());
    assert_eq!(q.len(), 2);
    assert!(matches!(q.try_send_bytes(b"c"), Err(Error::Full)));
    let start = Instant::now();
    assert!(matches!(q.send_bytes_timeout(b"c", T), Err(Error::Timeout)));
    let took = start.elapsed();
    assert!(took >= T && took < T + SLACK, "send timeout took {took:?}");
    assert!(matches!(q.try_reserve(1), Err(Error::Full)));
    assert_eq!(q.recv_bytes().unwrap(), b"a");
    assert_eq!(q.try_recv_bytes().unwrap(), b"b");
}

#[test]
fn message_too_large_at_once() {
    let q = Queue::anonymous(2, 8).unwrap();
    assert!(matches!(
        q.send_bytes(&[0; 9]),
        Err(Error::MessageTooLarge { size: 9, max: 8 })
    ));
    assert!(matches!(
        q.reserve(100),
        Err(Error::MessageTooLarge { size: 100, max: 8 })
    ));
    assert!(matches!(
        q.send(&[0u64; 2]),
        Err(Error::MessageTooLarge { .. })
    ));
    q.send_bytes(&[7; 8]).unwrap();
    q.send_bytes(&[]).unwrap();
    // Full queue: the size error still comes first, at once.
    assert!(matches!(
        q.send_bytes(&[0; 9]),
        Err(Error::MessageTooLarge { .. })
    ));
    assert_eq!(q.recv_bytes().unwrap(), [7; 8]);
    assert_eq!(q.recv_bytes().unwrap(), b"");
}

#[test]
fn bad_parameters_are_refused() {
    assert!(matches!(
        Queue::anonymous(0, 8),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Queue::anonymous(1 << 40, 8),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn short_buffers_and_wrong_types_leave_the_message() {
    let q = Queue::anonymous(4, 16).unwrap();
    q.send_bytes(b"0123456789").unwrap();
    let mut small = [0u8; 4];
    assert!(matches!(
        q.try_recv_bytes_into(&mut small),
        Err(Error::BufferTooShort { needed: 10 })
    ));
    assert!(matches!(
        q.try_recv::<u64>(),
        Err(Error::LengthMismatch {
            found: 10,
            expected: 8
        })
    ));
    let mut buf = [0u8; 16];
    assert_eq!(q.recv_bytes_into(&mut buf).unwrap(), 10);
    assert_eq!(&buf[..10], b"0123456789");
}

#[test]
fn close_wakes_blocked_producers_and_consumers() {
    let _w = watchdog("close_wakes", Duration::from_secs(60));
    let empty = unique("qcle");
    let full = unique("qclf");
    let qe = Queue::create(&empty, 4, 8).unwrap();
    let qf = Queue::create(&full, 2, 8).unwrap();
    qf.send_bytes(b"1").unwrap();
    qf.send_bytes(b"2").unwrap();
    let mut kids = Vec::new();
    for _ in 0..2 {
        kids.push(
            spawn("blocked_until_closed")
                .arg("q", &empty)
                .arg("role", "recv")
                .start(),
        );
        kids.push(
            spawn("blocked_until_closed")
                .arg("q", &full)
                .arg("role", "send")
                .start(),
        );
    }
    for k in &kids {
        k.expect("blocking");
    }
    std::thread::sleep(Duration::from_millis(300));
    qe.close();
    qf.close();
    for k in kids {
        k.expect("Err(Closed)");
        k.join();
    }
    // What was sent before the close is still delivered, then Closed.
    assert_eq!(qf.recv_bytes().unwrap(), b"1");
    assert_eq!(qf.recv_bytes().unwrap(), b"2");
    assert!(matches!(qf.recv_bytes(), Err(Error::Closed)));
    assert!(matches!(qf.try_send_bytes(b"3"), Err(Error::Closed)));
}

/// Review finding 1a across processes: a producer process holds a
/// reservation across `close` while a message committed behind it waits.
/// Consumers must drain both (not get `Closed` early) and only then get
/// `Closed`, and `join` must return (it hung before the fix).
#[test]
fn close_drains_messages_behind_an_open_reservation_and_join_returns() {
    let _w = watchdog("close_behind_reservation", Duration::from_secs(60));
    let name = unique("qcbr");
    let q = JoinableQueue::create(&name, 4, 8).unwrap();
    let p = spawn("reserve_hold_commit")
        .arg("q", &name)
        .arg("ms", 300)
        .timeout(CHILD_TIMEOUT)
        .start();
    p.expect("reserved");
    q.send_bytes(b"b").unwrap();
    q.close();
    let consumers: Vec<Child> = (0..2)
        .map(|_| {
            spawn("drain_joinable")
                .arg("q", &name)
                .timeout(CHILD_TIMEOUT)
                .start()
        })
        .collect();
    for c in &consumers {
        c.expect("draining");
    }
    p.expect("committed");
    p.join();
    let mut total = 0;
    for c in consumers {
        let line = c.recv(LONG).expect("consumer silent");
        total += line
            .strip_prefix("drained ")
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("consumer said {line:?}"));
        c.join();
    }
    assert_eq!(total, 2, "a message committed before close was not drained");
    q.join_timeout(LONG).unwrap();
    assert!(matches!(q.try_recv_bytes(), Err(Error::Closed)));
}

#[test]
fn joinable_queue_with_four_workers_and_sentinels() {
    let _w = watchdog("joinable", Duration::from_secs(60));
    let name = unique("qjoin");
    let sum_name = unique("qjsum");
    let q = JoinableQueue::create(&name, 8, 8).unwrap();
    let sum = AtomicValue::<u64>::create(&sum_name, 0).unwrap();
    // join with nothing unfinished returns at once.
    q.join_timeout(Duration::ZERO).unwrap();
    q.join().unwrap();
    let workers: Vec<Child> = (0..4)
        .map(|_| {
            spawn("worker")
                .arg("q", &name)
                .arg("sum", &sum_name)
                .start()
        })
        .collect();
    let jobs = 2_000u64;
    for j in 1..=jobs {
        q.send(&j).unwrap();
    }
    assert!(q.unfinished() > 0 || sum.load() == jobs * (jobs + 1) / 2);
    q.join_timeout(LONG).unwrap();
    // Every job was done before join returned.
    assert_eq!(sum.load(), jobs * (jobs + 1) / 2);
    assert_eq!(q.unfinished(), 0);
    for _ in 0..4 {
        q.send(&u64::MAX).unwrap();
    }
    q.join_timeout(LONG).unwrap();
    join_all(workers);
    assert!(matches!(q.task_done(), Err(Error::InvalidArgument(_))));
    // A timed join waits at least T while a task is unfinished.
    q.send(&1u64).unwrap();
    let start = Instant::now();
    assert!(matches!(q.join_timeout(T), Err(Error::Timeout)));
    assert!(start.elapsed() >= T);
    let _: u64 = q.recv().unwrap();
    q.task_done().unwrap();
    q.join().unwrap();
}

#[test]
fn unfinished_rises_on_send_not_on_receive() {
    let q = JoinableQueue::anonymous(4, 8).unwrap();
    q.send(&1u64).unwrap();
    assert_eq!(q.unfinished(), 1);
    let r = q.reserve(8).unwrap();
    drop(r); // cancelled: not a task
    assert_eq!(q.unfinished(), 1);
    let _: u64 = q.recv().unwrap();
    assert_eq!(q.unfinished(), 1);
    q.task_done().unwrap();
    assert_eq!(q.unfinished(), 0);
}

#[test]
fn kinds_are_checked_on_open() {
    let name = unique("qkind");
    let _q = JoinableQueue::create(&name, 3, 24).unwrap();
    assert!(matches!(
        Queue::open(&name),
        Err(Error::KindMismatch { .. })
    ));
    let j = JoinableQueue::open(&name).unwrap();
    assert_eq!((j.capacity(), j.slot_size()), (3, 24));
    let k = JoinableQueue::open_or_create(&name, 99, 99).unwrap();
    assert_eq!(k.capacity(), 3);
}

#[test]
fn killed_consumer_while_others_blocked() {
    let _w = watchdog("killed_consumer", Duration::from_secs(60));
    let name = unique("qkc");
    let q = Queue::create(&name, 4, 8).unwrap();
    let mut victim = spawn("recv_one").arg("q", &name).start();
    let other = spawn("recv_one").arg("q", &name).start();
    victim.expect("blocking");
    other.expect("blocking");
    std::thread::sleep(Duration::from_millis(200));
    victim.kill();
    q.send(&42u64).unwrap();
    other.expect("got 42");
    other.join();
    // The queue still works for everyone.
    q.send(&7u64).unwrap();
    assert_eq!(q.recv_timeout::<u64>(LONG).unwrap(), 7);
}

#[test]
fn killed_producer_while_others_blocked() {
    let _w = watchdog("killed_producer", Duration::from_secs(60));
    let name = unique("qkp");
    let q = Queue::create(&name, 1, 8).unwrap();
    q.send(&1u64).unwrap();
    let mut victim = spawn("send_one").arg("q", &name).arg("v", 2).start();
    victim.expect("blocking");
    std::thread::sleep(Duration::from_millis(200));
    victim.kill();
    let other = spawn("send_one").arg("q", &name).arg("v", 3).start();
    other.expect("blocking");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(q.recv_timeout::<u64>(LONG).unwrap(), 1);
    other.expect("sent");
    assert_eq!(q.recv_timeout::<u64>(LONG).unwrap(), 3);
    other.join();
    assert!(matches!(q.try_recv::<u64>(), Err(Error::Empty)));
}

#[test]
fn zero_copy_and_typed_across_processes() {
    let name = unique("qzc");
    let q = Queue::create(&name, 4, 32).unwrap();
    let child = spawn("zero_copy_sender").arg("q", &name).start();
    {
        let b = q.recv_in_place_timeout(LONG).unwrap();
        assert_eq!(&*b, b"hello world");
    }
    child.join();
    // The child's last send is all that is left.
    assert_eq!(q.len(), 1);
    assert_eq!(q.recv_timeout::<[u32; 4]>(LONG).unwrap(), [1, 2, 3, 4]);
    assert!(matches!(q.try_recv_in_place(), Err(Error::Empty)));
}

#[test]
fn reservation_truncate_and_order() {
    let q = Queue::anonymous(3, 16).unwrap();
    let mut a = q.reserve(16).unwrap();
    q.send_bytes(b"second").unwrap();
    a[..5].copy_from_slice(b"first");
    a.truncate(5);
    // Not committed yet: the consumer waits for it (FIFO).
    assert!(matches!(q.try_recv_bytes(), Err(Error::Empty)));
    a.commit();
    assert_eq!(q.recv_bytes().unwrap(), b"first");
    assert_eq!(q.recv_bytes().unwrap(), b"second");
}

#[cfg(feature = "serde")]
#[test]
fn serde_objects_across_processes() {
    let name = unique("qobj");
    let q = Queue::create(&name, 2, 64).unwrap();
    let child = spawn("obj_sender").arg("q", &name).start();
    let (s, v): (String, Vec<u16>) = q.recv_obj_timeout(LONG).unwrap();
    assert_eq!((s.as_str(), v), ("from a child", vec![1, 2, 3]));
    child.join();
    assert!(matches!(
        q.send_obj(&vec![0u8; 100]),
        Err(Error::MessageTooLarge { .. })
    ));
}

#[test]
fn anonymous_queue_across_threads() {
    let q = Queue::anonymous(3, 8).unwrap();
    let q2 = q.clone();
    let t = std::thread::spawn(move || {
        for i in 0..1000u64 {
            q2.send(&i).unwrap();
        }
    });
    for i in 0..1000u64 {
        assert_eq!(q.recv_timeout::<u64>(LONG).unwrap(), i);
    }
    t.join().unwrap();
}

#[test]
fn killed_consumer_holding_a_borrowed_message() {
    // The borrowed message is lost with its holder (documented); the other
    // slots keep working for everyone. (A later issue frees the slot.)
    let _w = watchdog("killed_borrower", Duration::from_secs(60));
    let name = unique("qkb");
    let q = Queue::create(&name, 4, 8).unwrap();
    q.send(&1u64).unwrap();
    let mut holder = spawn("borrow_and_hold").arg("q", &name).start();
    holder.expect("holding 8");
    holder.kill();
    // Three slots are left before the lost one comes round again (slot 0,
    // which a later issue will free): they keep working.
    for i in 0..3u64 {
        q.send_timeout(&(10 + i), LONG).unwrap();
    }
    for i in 0..3u64 {
        assert_eq!(q.recv_timeout::<u64>(LONG).unwrap(), 10 + i);
    }
    assert!(matches!(q.try_recv::<u64>(), Err(Error::Empty)));
}

/// Every blocking call of `Queue`/`JoinableQueue` has its one-attempt
/// form (`Full` for sends, `Empty` for receives, `WouldBlock` for `join`)
/// and its timeout form (`Timeout` once the deadline passed;
/// `Duration::ZERO` is one attempt).
#[test]
fn every_blocking_call_has_try_and_timeout_forms() {
    let q = JoinableQueue::anonymous(1, 8).unwrap();
    let z = Duration::ZERO;
    let mut buf = [0u8; 8];
    let mut out = Vec::new();
    let empty = |r: Result<()>| matches!(r, Err(Error::Empty));
    let timeout = |r: Result<()>| matches!(r, Err(Error::Timeout));
    // Empty: receives.
    assert!(empty(q.try_recv_bytes().map(drop)));
    assert!(empty(q.try_recv_bytes_into(&mut buf).map(drop)));
    assert!(empty(q.try_recv_in_place().map(drop)));
    assert!(empty(q.try_recv::<u64>().map(drop)));
    assert!(empty(q.try_recv_many(&mut out, 4).map(drop)));
    assert!(timeout(q.recv_bytes_timeout(z).map(drop)));
    assert!(timeout(q.recv_bytes_into_timeout(&mut buf, z).map(drop)));
    assert!(timeout(q.recv_in_place_timeout(z).map(drop)));
    assert!(timeout(q.recv_timeout::<u64>(z).map(drop)));
    assert!(timeout(q.recv_many_timeout(&mut out, 4, z).map(drop)));
    // Full: sends.
    q.send(&7u64).unwrap();
    let full = |r: Result<()>| matches!(r, Err(Error::Full));
    assert!(full(q.try_send_bytes(b"x")));
    assert!(full(q.try_send(&1u64)));
    assert!(full(q.try_reserve(1).map(drop)));
    assert!(full(q.try_send_many([b"x"]).map(drop)));
    assert!(timeout(q.send_bytes_timeout(b"x", z)));
    assert!(timeout(q.send_timeout(&1u64, z)));
    assert!(timeout(q.reserve_timeout(1, z).map(drop)));
    assert!(timeout(q.send_many_timeout([b"x"], z).map(drop)));
    // WouldBlock: join with a task unfinished.
    assert!(matches!(q.try_join(), Err(Error::WouldBlock)));
    assert!(timeout(q.join_timeout(z)));
    assert_eq!(q.try_recv::<u64>().unwrap(), 7);
    q.task_done().unwrap();
    q.try_join().unwrap();
    q.join_timeout(z).unwrap();
    assert!(out.is_empty());
}

/// The batch calls: `send_many` sends while there is room and says how
/// many went; `recv_many` takes what is there, up to `max`; both wait
/// for the first message only.
#[test]
fn send_many_and_recv_many() {
    let q = Queue::anonymous(3, 4).unwrap();
    let none: [&[u8]; 0] = [];
    assert_eq!(q.send_many(none).unwrap(), 0);
    // Room for three: the fourth and fifth stay with the caller.
    let msgs = [&b"a"[..], b"bb", b"ccc", b"d", b"e"];
    assert_eq!(q.send_many(msgs).unwrap(), 3);
    assert!(matches!(q.try_send_many(&msgs[3..]), Err(Error::Full)));
    let mut out = Vec::new();
    assert_eq!(q.recv_many(&mut out, 0).unwrap(), 0);
    assert_eq!(q.recv_many(&mut out, 2).unwrap(), 2);
    assert_eq!(q.recv_many(&mut out, 8).unwrap(), 1);
    assert_eq!(out, [&b"a"[..], b"bb", b"ccc"]);
    // A message too large ends the batch; alone, it is refused.
    let msgs = [&b"x"[..], b"too long", b"y"];
    assert_eq!(q.send_many(msgs).unwrap(), 1);
    assert!(matches!(
        q.send_many(&msgs[1..]),
        Err(Error::MessageTooLarge { .. })
    ));
    // Waits for the first: a sender in another thread delivers it.
    let q2 = q.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(T);
        q2.send_many(vec![b"late".to_vec(), b"r".to_vec()]).unwrap()
    });
    out.clear();
    let mut got = q.recv_many_timeout(&mut out, 8, LONG).unwrap();
    let sent = t.join().unwrap();
    while got < 1 + sent {
        got += q.recv_many(&mut out, 8).unwrap();
    }
    assert_eq!(out, [&b"x"[..], b"late", b"r"]);
    q.close();
    assert!(matches!(q.try_send_many([b"z"]), Err(Error::Closed)));
    assert!(matches!(q.recv_many(&mut out, 8), Err(Error::Closed)));
}

#[cfg(feature = "serde")]
#[test]
fn serde_try_forms() {
    let q = Queue::anonymous(1, 32).unwrap();
    assert!(matches!(q.try_recv_obj::<String>(), Err(Error::Empty)));
    q.try_send_obj("one").unwrap();
    assert!(matches!(q.try_send_obj("two"), Err(Error::Full)));
    assert_eq!(q.try_recv_obj::<String>().unwrap(), "one");
}
