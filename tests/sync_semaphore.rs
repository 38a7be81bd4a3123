//! `Semaphore` / `BoundedSemaphore` across processes: counting under
//! contention, racing over-releases, a waiter killed while blocked, and
//! the timeout rules.
#![cfg(target_os = "linux")]

mod harness;
use harness::*;
use shmprim::*;

use std::time::{Duration, Instant};

const GATE: Duration = Duration::from_secs(30);

child!(fn sem_contender(ctx) {
    let sem = Semaphore::open(&ctx.arg("sem"))?;
    let inside = AtomicValue::<u32>::open(&ctx.arg("inside"))?;
    let peak = AtomicValue::<u32>::open(&ctx.arg("peak"))?;
    let gate = AtomicValue::<u32>::open(&ctx.arg("gate"))?;
    let rounds: u32 = ctx.parse("rounds");
    gate_wait(&gate, GATE)?;
    for _ in 0..rounds {
        sem.acquire()?;
        let now = inside.fetch_add(1) + 1;
        let mut p = peak.load();
        while now > p {
            match peak.compare_exchange(p, now) {
                Ok(_) => break,
                Err(x) => p = x,
            }
        }
        for _ in 0..200 {
            std::hint::spin_loop();
        }
        inside.fetch_sub(1);
        sem.release()?;
    }
});

#[test]
fn semaphore_counts_with_10_contending_processes() {
    let _w = watchdog(
        "semaphore_counts_with_10_contending_processes",
        Duration::from_secs(60),
    );
    let (s, i, p, g) = (unique("sem"), unique("in"), unique("peak"), unique("gate"));
    let sem = Semaphore::create(&s, 3).unwrap();
    let inside = AtomicValue::<u32>::create(&i, 0).unwrap();
    let peak = AtomicValue::<u32>::create(&p, 0).unwrap();
    let gate = AtomicValue::<u32>::create(&g, 0).unwrap();
    let kids: Vec<_> = (0..10)
        .map(|_| {
            spawn("sem_contender")
                .arg("sem", &s)
                .arg("inside", &i)
                .arg("peak", &p)
                .arg("gate", &g)
                .arg("rounds", 300)
                .start()
        })
        .collect();
    gate_open(&gate);
    join_all(kids);
    assert!(
        peak.load() <= 3,
        "more than 3 holders at once: {}",
        peak.load()
    );
    assert!(peak.load() >= 1);
    assert_eq!(inside.load(), 0);
    assert_eq!(sem.value(), 3);
}

child!(fn bsem_releaser(ctx) {
    let sem = BoundedSemaphore::open(&ctx.arg("sem"))?;
    let gate = AtomicValue::<u32>::open(&ctx.arg("gate"))?;
    gate_wait(&gate, GATE)?;
    match sem.release() {
        Ok(()) => ctx.send("ok"),
        Err(Error::InvalidArgument(_)) => ctx.send("refused"),
        Err(e) => return Err(e.into()),
    }
});

#[test]
fn bounded_semaphore_over_release_by_8_racing_processes() {
    let _w = watchdog("bounded_semaphore_over_release", Duration::from_secs(60));
    let (s, g) = (unique("bsem"), unique("gate"));
    let sem = BoundedSemaphore::create(&s, 4).unwrap();
    let gate = AtomicValue::<u32>::create(&g, 0).unwrap();
    sem.acquire().unwrap();
    sem.acquire().unwrap();
    assert_eq!(sem.value(), 2);
    let kids: Vec<_> = (0..8)
        .map(|_| {
            spawn("bsem_releaser")
                .arg("sem", &s)
                .arg("gate", &g)
                .start()
        })
        .collect();
    gate_open(&gate);
    let mut ok = 0;
    let mut refused = 0;
    for k in &kids {
        match k.recv(Duration::from_secs(30)).as_deref() {
            Some("ok") => ok += 1,
            Some("refused") => refused += 1,
            other => panic!("unexpected {other:?}\n{}", k.output()),
        }
    }
    join_all(kids);
    assert_eq!((ok, refused), (2, 6));
    assert_eq!(sem.value(), 4);
}

child!(fn sem_blocked_acquirer(ctx) {
    let sem = Semaphore::open(&ctx.arg("sem"))?;
    ctx.send("waiting");
    sem.acquire()?;
    ctx.send("acquired");
});

#[test]
fn a_waiter_killed_while_blocked_does_not_stop_release() {
    let _w = watchdog("sem killed waiter", Duration::from_secs(60));
    let s = unique("semkill");
    let sem = Semaphore::create(&s, 0).unwrap();
    let mut victim = spawn("sem_blocked_acquirer").arg("sem", &s).start();
    victim.expect("waiting");
    std::thread::sleep(Duration::from_millis(150));
    victim.kill();
    let survivor = spawn("sem_blocked_acquirer").arg("sem", &s).start();
    survivor.expect("waiting");
    std::thread::sleep(Duration::from_millis(100));
    sem.release().unwrap();
    survivor.expect("acquired");
    survivor.join();
    assert_eq!(sem.value(), 0);
}

#[test]
fn timeout_rules() {
    let sem = Semaphore::anonymous(0).unwrap();
    assert!(matches!(sem.try_acquire(), Err(Error::WouldBlock)));
    let t = Instant::now();
    assert!(matches!(
        sem.acquire_timeout(Duration::ZERO),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() < Duration::from_secs(1));
    let t = Instant::now();
    assert!(matches!(
        sem.acquire_timeout(Duration::from_millis(100)),
        Err(Error::Timeout)
    ));
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "early: {:?}",
        t.elapsed()
    );
    sem.release().unwrap();
    sem.acquire_timeout(Duration::ZERO).unwrap();
}

#[test]
fn negative_values_and_wrong_kinds_are_refused() {
    assert!(matches!(
        Semaphore::anonymous(-1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        BoundedSemaphore::anonymous(-5),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Semaphore::anonymous(1 << 40),
        Err(Error::InvalidArgument(_))
    ));
    let s = unique("kind");
    let _b = BoundedSemaphore::create(&s, 1).unwrap();
    assert!(matches!(
        Semaphore::open(&s),
        Err(Error::KindMismatch { .. })
    ));
    let again = BoundedSemaphore::open_or_create(&s, 7).unwrap();
    assert_eq!(again.value(), 1);
    // An unbounded semaphore may grow past its initial value.
    let u = Semaphore::anonymous(0).unwrap();
    u.release().unwrap();
    u.release().unwrap();
    assert_eq!(u.value(), 2);
}
