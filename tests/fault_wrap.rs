//! Counters started near their wrap or limit points: a semaphore count at
//! its maximum under racing releases, and a barrier's 16-bit generation
//! (with its reset tags) crossing the wrap, across processes. (Condition
//! tickets and the event's set counter wrap in the unit tests of
//! `src/raw/condvar.rs` and `src/raw/event.rs`; MPMC ring positions near
//! 2^64 in `queue.rs::positions_near_the_wrap_odd_capacity`.)
#![cfg(target_os = "linux")]

mod harness;
use harness::*;
use shmprim::raw::SEMAPHORE_VALUE_MAX;
use shmprim::*;

use std::time::{Duration, Instant};

// ---------------------------------------------------------------- semaphore

child!(fn sem_churn(ctx) {
    let s = Semaphore::open(&ctx.arg("sem"))?;
    let gate = AtomicValue::<u32>::open(&ctx.arg("gate"))?;
    ctx.send("ready");
    gate_wait(&gate, Duration::from_secs(30))?;
    for _ in 0..2000 {
        s.acquire_timeout(Duration::from_secs(30))?;
        s.release()?;
    }
});

/// A semaphore started 3 below its maximum: processes acquiring and
/// releasing around it keep the count exact; then racing releases (threads
/// of two processes) push it to the maximum exactly, never over: the
/// refused ones get `InvalidArgument` and change nothing.
#[test]
fn semaphore_count_at_its_maximum() {
    let _w = watchdog("semaphore_count_at_its_maximum", Duration::from_secs(60));
    let (n, gn) = (unique("fwrs"), unique("fwrsg"));
    let start = SEMAPHORE_VALUE_MAX - 3;
    let s = Semaphore::create(&n, start.into()).unwrap();
    let gate = AtomicValue::<u32>::create(&gn, 0).unwrap();
    let kids: Vec<Child> = (0..2)
        .map(|_| {
            let c = spawn("sem_churn").arg("sem", &n).arg("gate", &gn).start();
            c.expect("ready");
            c
        })
        .collect();
    gate_open(&gate);
    for _ in 0..2000 {
        s.acquire_timeout(Duration::from_secs(30)).unwrap();
        s.release().unwrap();
    }
    join_all(kids);
    assert_eq!(s.value(), start);
    // Racing releases at the maximum: exactly 3 succeed.
    let ok: usize = std::thread::scope(|sc| {
        let ts: Vec<_> = (0..4)
            .map(|_| {
                sc.spawn(|| {
                    let mut ok = 0;
                    for _ in 0..50 {
                        match s.release() {
                            Ok(()) => ok += 1,
                            Err(Error::InvalidArgument(_)) => {}
                            Err(e) => panic!("release at the maximum: {e:?}"),
                        }
                    }
                    ok
                })
            })
            .collect();
        ts.into_iter().map(|t| t.join().unwrap()).sum()
    });
    assert_eq!(ok, 3);
    assert_eq!(s.value(), SEMAPHORE_VALUE_MAX);
    s.acquire().unwrap();
    assert_eq!(s.value(), SEMAPHORE_VALUE_MAX - 1);

    // A bounded semaphore at the largest bound.
    let b = BoundedSemaphore::anonymous(SEMAPHORE_VALUE_MAX.into()).unwrap();
    assert!(matches!(b.release(), Err(Error::InvalidArgument(_))));
    b.acquire().unwrap();
    b.release().unwrap();
    assert_eq!(b.value(), SEMAPHORE_VALUE_MAX);
    // One above the largest value is refused at creation.
    assert!(matches!(
        Semaphore::anonymous(i64::from(SEMAPHORE_VALUE_MAX) + 1),
        Err(Error::InvalidArgument(_))
    ));
}

/// `AtomicValue` arithmetic wraps as `std`'s atomics do, across
/// processes' views of the same word, and a waiter sees the wrapped value.
#[test]
fn atomic_value_wraps_like_std_atomics() {
    let x = AtomicValue::<u32>::anonymous(u32::MAX).unwrap();
    assert_eq!(x.fetch_add(2), u32::MAX);
    assert_eq!(x.load(), 1);
    assert_eq!(x.fetch_sub(2), 1);
    assert_eq!(x.load(), u32::MAX);
    let y = AtomicValue::<u64>::anonymous(u64::MAX).unwrap();
    assert_eq!(y.fetch_add(1), u64::MAX);
    assert_eq!(y.load(), 0);
    let x2 = x.clone();
    let t = std::thread::spawn(move || x2.wait_while(u32::MAX, Some(Duration::from_secs(20))));
    std::thread::sleep(Duration::from_millis(50));
    x.fetch_add(1);
    x.wake_all().unwrap();
    assert_eq!(t.join().unwrap().unwrap(), 0);
}

// ---------------------------------------------------------------- barrier

/// Generations crossed by the lockstep phase.
const ROUNDS: u32 = 40;

child!(fn bar_lockstep(ctx) {
    let b = Barrier::open(&ctx.arg("barrier"))?;
    ctx.send("ready");
    for round in 0..ROUNDS {
        b.wait_timeout(Duration::from_secs(20))
            .map_err(|e| format!("round {round}: {e:?}"))?;
    }
    // The reset round: this generation is reset under us.
    ctx.send("before reset");
    let r = b.wait_timeout(Duration::from_secs(20));
    ctx.send(&format!("{r:?}"));
    // And the next one trips normally (arriving at once, perhaps while the
    // reset is still under way).
    b.wait_timeout(Duration::from_secs(20))?;
});

/// A barrier whose 16-bit generation is walked up to 20 short of the wrap
/// (by resets, each of which writes a reset tag): three processes then
/// cross the wrap in lockstep without a spurious `BrokenBarrier` (no
/// tripped generation may read a stale reset tag of its earlier use), a
/// reset past the wrap still reports `BrokenBarrier` to its waiters, and
/// the generation after it trips.
#[test]
fn barrier_generation_across_its_wrap() {
    let _w = watchdog(
        "barrier_generation_across_its_wrap",
        Duration::from_secs(90),
    );
    let n = unique("fwrb");
    let b = Barrier::create(&n, 3, None).unwrap();
    for _ in 0..(65_536 - 20) {
        b.reset();
    }
    assert!(!b.is_broken());
    let kids: Vec<Child> = (0..2)
        .map(|_| {
            let c = spawn("bar_lockstep").arg("barrier", &n).start();
            c.expect("ready");
            c
        })
        .collect();
    for round in 0..ROUNDS {
        if let Err(e) = b.wait_timeout(Duration::from_secs(20)) {
            panic!("round {round}: {e:?}");
        }
    }
    for k in &kids {
        k.expect("before reset");
    }
    let t = Instant::now();
    while b.n_waiting() < 2 {
        assert!(t.elapsed() < Duration::from_secs(20), "never 2 waiting");
        std::thread::sleep(Duration::from_millis(2));
    }
    b.reset();
    for k in &kids {
        assert_eq!(
            k.recv(Duration::from_secs(20)).as_deref(),
            Some("Err(BrokenBarrier)")
        );
    }
    b.wait_timeout(Duration::from_secs(20)).unwrap();
    join_all(kids);
    assert!(!b.is_broken());
}
