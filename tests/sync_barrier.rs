//! `Barrier` across processes: many generations in lockstep with the
//! action run once per trip, abort, reset while waiting, a timeout breaking
//! it, and a party killed while waiting.
#![cfg(target_os = "linux")]

mod harness;
use harness::*;
use shmprim::*;

use std::time::{Duration, Instant};

child!(fn lockstep(ctx) {
    let b = Barrier::open(&ctx.arg("barrier"))?;
    let arrivals = AtomicValue::<u32>::open(&ctx.arg("arrivals"))?;
    let trips = AtomicValue::<u32>::open(&ctx.arg("trips"))?;
    let index_sum = AtomicValue::<u64>::open(&ctx.arg("sum"))?;
    let parties = b.parties();
    let rounds: u32 = ctx.parse("rounds");
    for round in 0..rounds {
        arrivals.fetch_add(1);
        let i = b.wait_with_action(|| {
            // Run before anyone is released: everyone has arrived.
            assert_eq!(arrivals.load(), parties * (round + 1));
            trips.fetch_add(1);
        })?;
        assert!(i < parties);
        index_sum.fetch_add(u64::from(i));
        // Released only after the action of this trip, never a later one
        // (nobody can arrive for the next trip without us).
        assert_eq!(trips.load(), round + 1, "action not run exactly once before release");
        assert!(arrivals.load() >= parties * (round + 1));
    }
});

#[test]
fn five_processes_1000_generations_in_lockstep() {
    let _w = watchdog("barrier lockstep", Duration::from_secs(90));
    let (n, a, t, s) = (unique("bar"), unique("arr"), unique("trips"), unique("sum"));
    let b = Barrier::create(&n, 5, Some(Duration::from_secs(30))).unwrap();
    let _arr = AtomicValue::<u32>::create(&a, 0).unwrap();
    let trips = AtomicValue::<u32>::create(&t, 0).unwrap();
    let sum = AtomicValue::<u64>::create(&s, 0).unwrap();
    let kids: Vec<_> = (0..5)
        .map(|_| {
            spawn("lockstep")
                .arg("barrier", &n)
                .arg("arrivals", &a)
                .arg("trips", &t)
                .arg("sum", &s)
                .arg("rounds", 1000)
                .start()
        })
        .collect();
    join_all(kids);
    assert_eq!(trips.load(), 1000);
    // Indices are distinct in each generation: 0+1+2+3+4 per trip.
    assert_eq!(sum.load(), 1000 * 10);
    assert!(!b.is_broken());
    assert_eq!(b.n_waiting(), 0);
}

child!(fn bar_waiter(ctx) {
    let b = Barrier::open(&ctx.arg("barrier"))?;
    ctx.send("arriving");
    let t = Instant::now();
    let r = match ctx.arg("timeout").as_str() {
        "default" => b.wait(),
        ms => b.wait_timeout(Duration::from_millis(ms.parse()?)),
    };
    match r {
        Ok(i) => ctx.send(&format!("ok {i}")),
        Err(Error::BrokenBarrier) => ctx.send(&format!("broken {}", t.elapsed().as_millis())),
        Err(e) => return Err(e.into()),
    }
});

fn waiter(name: &str, timeout: &str) -> Child {
    let c = spawn("bar_waiter")
        .arg("barrier", name)
        .arg("timeout", timeout)
        .start();
    c.expect("arriving");
    c
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(30), "never: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn expect_broken(c: &Child) {
    let m = c.recv(Duration::from_secs(30)).unwrap_or_default();
    assert!(
        m.starts_with("broken"),
        "expected broken, got {m:?}\n{}",
        c.output()
    );
}

#[test]
fn abort_breaks_it_and_reset_makes_it_usable() {
    let _w = watchdog("barrier abort", Duration::from_secs(60));
    let n = unique("barab");
    let b = Barrier::create(&n, 2, None).unwrap();
    let w = waiter(&n, "30000");
    eventually("1 waiting", || b.n_waiting() == 1);
    b.abort();
    expect_broken(&w);
    w.join();
    assert!(b.is_broken());
    assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
    b.reset();
    assert!(!b.is_broken());
    let w = waiter(&n, "30000");
    let mine = b.wait_timeout(Duration::from_secs(30)).unwrap();
    let theirs = w.recv(Duration::from_secs(30)).unwrap();
    assert_eq!(theirs, format!("ok {}", 1 - mine));
    w.join();
}

#[test]
fn reset_while_waiting_breaks_the_waiters() {
    let _w = watchdog("barrier reset", Duration::from_secs(60));
    let n = unique("barrs");
    let b = Barrier::create(&n, 3, None).unwrap();
    let w1 = waiter(&n, "30000");
    let w2 = waiter(&n, "30000");
    eventually("2 waiting", || b.n_waiting() == 2);
    b.reset();
    expect_broken(&w1);
    expect_broken(&w2);
    join_all([w1, w2]);
    assert!(!b.is_broken());
    assert_eq!(b.n_waiting(), 0);
    // Usable again: three parties trip it.
    let w1 = waiter(&n, "30000");
    let w2 = waiter(&n, "30000");
    b.wait_timeout(Duration::from_secs(30)).unwrap();
    for w in [w1, w2] {
        assert!(w.recv(Duration::from_secs(30)).unwrap().starts_with("ok"));
        w.join();
    }
}

#[test]
fn a_timeout_breaks_it_for_everybody() {
    let _w = watchdog("barrier timeout", Duration::from_secs(60));
    let n = unique("barto");
    let b = Barrier::create(&n, 3, Some(Duration::from_millis(200))).unwrap();
    let opened = Barrier::open(&n).unwrap();
    assert_eq!(opened.parties(), 3);
    assert_eq!(opened.default_timeout(), Some(Duration::from_millis(200)));
    let patient = waiter(&n, "30000");
    eventually("1 waiting", || b.n_waiting() == 1);
    let hasty = waiter(&n, "default");
    let m = hasty.recv(Duration::from_secs(30)).unwrap();
    let ms: u64 = m.strip_prefix("broken ").expect(&m).parse().unwrap();
    assert!(ms >= 200, "timed out early: {ms} ms");
    expect_broken(&patient);
    join_all([patient, hasty]);
    assert!(b.is_broken());
    assert_eq!(b.n_waiting(), 0);
    assert!(matches!(
        Barrier::create(&unique("zero"), 0, None),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_party_killed_while_waiting_ends_in_the_survivors_timeout() {
    let _w = watchdog("barrier killed party", Duration::from_secs(60));
    let n = unique("barkill");
    // Four parties: the dead victim still counts, so the two survivors
    // cannot complete the generation; their default timeout breaks it.
    let b = Barrier::create(&n, 4, Some(Duration::from_millis(300))).unwrap();
    let mut victim = waiter(&n, "30000");
    eventually("victim waiting", || b.n_waiting() == 1);
    victim.kill();
    let s1 = waiter(&n, "default");
    let s2 = waiter(&n, "default");
    expect_broken(&s1);
    expect_broken(&s2);
    join_all([s1, s2]);
    b.reset();
    let rest: Vec<_> = (0..3).map(|_| waiter(&n, "30000")).collect();
    b.wait_timeout(Duration::from_secs(30)).unwrap();
    for s in rest {
        assert!(s.recv(Duration::from_secs(30)).unwrap().starts_with("ok"));
        s.join();
    }
}

/// An action with a per-call timeout runs once per trip; an action that
/// returns `Err` breaks the barrier for every party and hands the error to
/// its caller; a per-call timeout with an action still breaks the barrier
/// when a party is missing.
#[test]
fn actions_with_timeouts_and_actions_that_fail() {
    let b = Barrier::anonymous(2, None).unwrap();
    let ran = AtomicValue::<u32>::anonymous(0).unwrap();
    let run = |b: Barrier, ran: AtomicValue<u32>| {
        std::thread::spawn(move || {
            b.wait_with_action_timeout(Some(Duration::from_secs(20)), || {
                ran.fetch_add(1);
            })
        })
    };
    let ts = [run(b.clone(), ran.clone()), run(b.clone(), ran.clone())];
    let mut idx: Vec<u32> = ts.into_iter().map(|t| t.join().unwrap().unwrap()).collect();
    idx.sort_unstable();
    assert_eq!((idx, ran.load()), (vec![0, 1], 1));

    // A missing party: the per-call timeout breaks it, and the action
    // never runs.
    let t = Instant::now();
    let r = b.wait_with_action_timeout(Some(Duration::from_millis(50)), || {
        ran.fetch_add(1);
    });
    assert!(matches!(r, Err(Error::BrokenBarrier)), "{r:?}");
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert_eq!(ran.load(), 1);
    b.reset();

    // A failing action: the other party gets BrokenBarrier, the runner its
    // own error; the barrier stays broken until reset.
    let b2 = b.clone();
    let other = std::thread::spawn(move || {
        b2.wait_with_fallible_action(Some(Duration::from_secs(20)), || Err("first"))
    });
    let mine = b.wait_with_fallible_action(Some(Duration::from_secs(20)), || Err("second"));
    let theirs = other.join().unwrap();
    let (failed, broken) = match (&mine, &theirs) {
        (Err(BarrierActionError::Action(e)), Err(BarrierActionError::Barrier(b)))
        | (Err(BarrierActionError::Barrier(b)), Err(BarrierActionError::Action(e))) => (*e, b),
        _ => panic!("mine {mine:?}, theirs {theirs:?}"),
    };
    assert!(failed == "first" || failed == "second");
    assert!(matches!(broken, Error::BrokenBarrier));
    assert!(b.is_broken());
    b.reset();
    let ok = b.clone();
    let t = std::thread::spawn(move || ok.wait_with_fallible_action(None, || Ok::<(), ()>(())));
    let mine = b.wait_with_fallible_action(None, || Ok::<(), ()>(()));
    assert!(mine.is_ok() && t.join().unwrap().is_ok());
}
