//! `Pool`: real worker processes; every failure the policy table names.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shmprim::pool::{Pool, PoolError, TaskError};
use shmprim::process::{Builder, Decoder, Encoder, Message, Method};
use shmprim::Queue;

shmprim::process_test_entry!();

fn double(x: u64) -> u64 {
    x * 2
}

fn add((a, b): (u64, u64)) -> u64 {
    a + b
}

fn pid(_: u64) -> u32 {
    std::process::id()
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Item 7 kills its own worker (`SIGKILL`) in the middle of the task.
fn dies_on_7(x: u64) -> u64 {
    if x == 7 {
        // SAFETY: raising a signal in this process; no memory involved.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    x * 2
}

fn panics_on_3(x: u64) -> u64 {
    assert!(x != 3, "item three is cursed");
    x
}

fn big(mib: u64) -> Vec<u8> {
    vec![0xa5; (mib as usize) << 20]
}

fn sum_bytes(v: Vec<u8>) -> u64 {
    v.iter().map(|&b| u64::from(b)).sum()
}

fn alive(pid: u32) -> bool {
    // Zombies still have a /proc entry; their state says so.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_gone(pids: &[u32], within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if pids.iter().all(|&p| !alive(p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn pool2() -> Pool {
    Pool::builder().workers(2).build().unwrap()
}

#[test]
fn map_apply_starmap_imap() {
    let pool = pool2();
    assert_eq!(pool.apply(double, 21).unwrap(), 42);
    let v = pool.map(double, 0..1000u64).unwrap();
    assert_eq!(v, (0..1000u64).map(|x| x * 2).collect::<Vec<_>>());
    let v = pool.map_chunked(double, 0..50u64, 1).unwrap();
    assert_eq!(v[49], 98);
    let v = pool.starmap(add, (0..20u64).map(|i| (i, 100))).unwrap();
    assert_eq!(v[5], 105);
    // Lazy over an infinite input.
    let got: Vec<u64> = pool
        .imap(double, 0u64..)
        .take(100)
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, (0..100u64).map(|x| x * 2).collect::<Vec<_>>());
    let mut un: Vec<u64> = pool
        .imap_unordered_chunked(double, 0..300u64, 7)
        .map(Result::unwrap)
        .collect();
    un.sort_unstable();
    assert_eq!(un, (0..300u64).map(|x| x * 2).collect::<Vec<_>>());
    assert!(pool.map(double, Vec::<u64>::new()).unwrap().is_empty());
    pool.close();
    pool.join().unwrap();
}

#[test]
fn async_results_and_callbacks() {
    let pool = pool2();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let mut rs = Vec::new();
    for i in 0..10u64 {
        let s = seen.clone();
        let e = errors.clone();
        let f: fn(u64) -> u64 = if i == 4 { panics_on_3 } else { double };
        let arg = if i == 4 { 3 } else { i };
        rs.push(
            pool.apply_async_with(
                f,
                arg,
                move |v| s.lock().unwrap().push(v),
                move |_| {
                    e.fetch_add(1, Ordering::SeqCst);
                },
            )
            .unwrap(),
        );
    }
    let r = pool.apply_async(sleep_ms, 50).unwrap();
    assert!(!r.ready() || r.successful() == Some(true));
    assert_eq!(r.get().unwrap(), 50);
    assert!(r.ready());
    assert_eq!(r.successful(), Some(true));
    assert_eq!(r.get().unwrap(), 50, "a result can be asked again");
    for r in &rs {
        r.wait();
    }
    assert_eq!(rs[4].successful(), Some(false));
    assert_eq!(errors.load(Ordering::SeqCst), 1);
    let mut s = seen.lock().unwrap().clone();
    s.sort_unstable();
    assert_eq!(s, vec![0, 2, 4, 6, 10, 12, 14, 16, 18]);
    let slow = pool.apply_async(sleep_ms, 2000).unwrap();
    assert_eq!(
        slow.get_timeout(Duration::from_millis(10)),
        Err(TaskError::NotReady)
    );
    let done = Arc::new(Mutex::new(None));
    let d = done.clone();
    let m = pool
        .map_async_with(
            double,
            0..10u64,
            Some(3),
            move |v| *d.lock().unwrap() = Some(v),
            |_| {},
        )
        .unwrap();
    m.wait();
    assert_eq!(done.lock().unwrap().as_ref().unwrap()[9], 18);
}

#[test]
fn a_panic_fails_only_its_task() {
    let pool = pool2();
    let m = pool.map_async(panics_on_3, 0..10u64, Some(4)).unwrap();
    let rs = m.results();
    for (i, r) in rs.iter().enumerate() {
        if i == 3 {
            match r {
                Err(TaskError::Panicked(m)) => assert!(m.contains("cursed"), "{m}"),
                other => panic!("{other:?}"),
            }
        } else {
            assert_eq!(r.as_ref().unwrap(), &(i as u64));
        }
    }
    match m.get() {
        Err(PoolError::Item { index: 3, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(double, 1).unwrap(), 2);
}

#[test]
fn a_worker_killed_mid_task_fails_that_item_only() {
    for chunk in [1, 4] {
        let pool = pool2();
        let before = pool.pids();
        let m = pool.map_async(dies_on_7, 0..20u64, Some(chunk)).unwrap();
        let rs = m.results();
        for (i, r) in rs.iter().enumerate() {
            if i == 7 {
                match r {
                    Err(e @ TaskError::WorkerDied { exitcode: -9, .. }) => {
                        assert!(e.to_string().contains("SIGKILL"), "{e}");
                    }
                    other => panic!("chunk {chunk}: {other:?}"),
                }
            } else {
                assert_eq!(r.as_ref().unwrap(), &(2 * i as u64), "chunk {chunk}");
            }
        }
        match pool.map_chunked(dies_on_7, 5..10u64, chunk) {
            Err(e @ PoolError::Item { index: 2, .. }) => {
                assert!(e.to_string().contains("item 2"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        // The pool replaced the dead and goes on.
        assert_eq!(pool.map(double, 0..10u64).unwrap()[9], 18);
        let after = pool.pids();
        assert_eq!(after.len(), 2);
        assert_ne!(before, after);
    }
}

#[test]
fn an_idle_worker_killed_blocks_no_one() {
    let pool = pool2();
    let victim = pool.pids()[0];
    // SAFETY: a signal to a child of this process that the test owns.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    assert!(wait_gone(&[victim], Duration::from_secs(5)));
    let t = Instant::now();
    assert_eq!(pool.map_chunked(double, 0..200u64, 1).unwrap()[199], 398);
    assert!(t.elapsed() < Duration::from_secs(20));
    assert!(!pool.pids().contains(&victim));
}

#[test]
fn task_timeout_kills_and_replaces() {
    let pool = Pool::builder()
        .workers(2)
        .task_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let slow = pool.apply_async(sleep_ms, 30_000).unwrap();
    let t = Instant::now();
    assert_eq!(
        slow.get(),
        Err(TaskError::TimedOut(Duration::from_millis(300)))
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(pool.apply(sleep_ms, 10).unwrap(), 10);
    assert_eq!(pool.map(double, 0..10u64).unwrap()[3], 6);
}

/// Encodes fine, never decodes.
#[derive(Debug)]
struct Undecodable;
impl Message for Undecodable {
    fn encode(&self, out: &mut Encoder) -> shmprim::Result<()> {
        out.put(&[1]);
        Ok(())
    }
    fn decode(_: &mut Decoder<'_>) -> shmprim::Result<Self> {
        Err(shmprim::Error::Corrupt("Undecodable"))
    }
}

/// Never encodes.
#[derive(Debug)]
struct Unencodable;
impl Message for Unencodable {
    fn encode(&self, _: &mut Encoder) -> shmprim::Result<()> {
        Err(shmprim::Error::InvalidArgument("Unencodable"))
    }
    fn decode(_: &mut Decoder<'_>) -> shmprim::Result<Self> {
        Ok(Unencodable)
    }
}

fn take_undecodable(_: Undecodable) -> u64 {
    1
}
fn take_unencodable(_: Unencodable) -> u64 {
    1
}
fn make_unencodable(_: u64) -> Unencodable {
    Unencodable
}
fn make_undecodable(_: u64) -> Undecodable {
    Undecodable
}
fn take_queue(q: Queue) -> u64 {
    q.capacity() as u64
}

#[test]
fn codec_failures_are_typed_errors() {
    let pool = pool2();
    let r = pool.apply_async(take_undecodable, Undecodable).unwrap();
    assert!(
        matches!(r.get(), Err(TaskError::DecodeArgument(_))),
        "{:?}",
        r.get()
    );
    let r = pool.apply_async(take_unencodable, Unencodable).unwrap();
    assert!(matches!(r.get(), Err(TaskError::EncodeArgument(_))));
    let r = pool.apply_async(make_unencodable, 1).unwrap();
    assert!(matches!(r.get(), Err(TaskError::EncodeResult(_))));
    let r = pool.apply_async(make_undecodable, 1).unwrap();
    assert!(matches!(r.get(), Err(TaskError::DecodeResult(_))));
    let anon = Queue::anonymous(4, 8).unwrap();
    let r = pool.apply_async(take_queue, anon).unwrap();
    match r.get() {
        Err(TaskError::EncodeArgument(m)) => assert!(m.contains("anonymous"), "{m}"),
        other => panic!("{other:?}"),
    }
    match pool.map(take_unencodable, vec![Unencodable]) {
        Err(PoolError::Item {
            index: 0,
            error: TaskError::EncodeArgument(_),
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(double, 4).unwrap(), 8);
}

#[test]
fn arguments_and_results_of_any_size() {
    let pool = pool2();
    let v = pool.apply(big, 64).unwrap();
    assert_eq!(v.len(), 64 << 20);
    assert!(v.iter().all(|&b| b == 0xa5));
    let s = pool.apply(sum_bytes, vec![1u8; 3 << 20]).unwrap();
    assert_eq!(s, 3 << 20);
    let sums = pool
        .map(sum_bytes, (0..6).map(|i| vec![2u8; 100_000 + i]))
        .unwrap();
    assert_eq!(sums[5], 2 * 100_005);
}

#[test]
fn terminate_is_prompt_and_fails_pending() {
    let pool = pool2();
    let pids = pool.pids();
    let rs: Vec<_> = (0..6)
        .map(|_| pool.apply_async(sleep_ms, 30_000).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    pool.terminate();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(wait_gone(&pids, Duration::from_secs(1)));
    for r in &rs {
        assert_eq!(r.get(), Err(TaskError::Terminated));
    }
    assert!(matches!(
        pool.apply_async(double, 1),
        Err(PoolError::Terminated)
    ));
    assert!(pool.pids().is_empty());
}

#[test]
fn drop_terminates() {
    let pool = pool2();
    let pids = pool.pids();
    let r = pool.apply_async(sleep_ms, 30_000).unwrap();
    drop(pool);
    assert!(wait_gone(&pids, Duration::from_secs(1)));
    assert_eq!(r.get(), Err(TaskError::Terminated));
}

#[test]
fn close_and_join() {
    let pool = pool2();
    let r = pool.apply_async(sleep_ms, 100).unwrap();
    assert!(matches!(pool.join(), Err(PoolError::NotClosed)));
    pool.close();
    assert!(matches!(
        pool.apply_async(double, 1),
        Err(PoolError::Closed)
    ));
    let pids = pool.pids();
    pool.join().unwrap();
    assert_eq!(r.get().unwrap(), 100);
    assert!(wait_gone(&pids, Duration::from_secs(1)));
}

#[test]
fn maxtasksperchild_replaces_workers() {
    for m in [Method::Spawn, Method::Forkserver] {
        let pool = Pool::builder()
            .workers(2)
            .maxtasksperchild(2)
            .method(m)
            .build()
            .unwrap();
        let pids = pool.map_chunked(pid, 0..12u64, 1).unwrap();
        let mut distinct = pids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() >= 6, "{m:?}: {distinct:?}");
    }
}

static INIT: Mutex<u64> = Mutex::new(0);

fn set_init(v: u64) {
    *INIT.lock().unwrap() = v;
}

fn read_init(x: u64) -> u64 {
    *INIT.lock().unwrap() + x
}

fn bad_init(_: u64) {
    panic!("no database");
}

#[test]
fn initializer_runs_in_every_worker() {
    let pool = Pool::builder()
        .workers(2)
        .initializer(set_init, 1000)
        .maxtasksperchild(3)
        .build()
        .unwrap();
    let v = pool.map_chunked(read_init, 0..10u64, 1).unwrap();
    assert_eq!(v, (1000..1010u64).collect::<Vec<_>>());
}

#[test]
fn a_failing_initializer_breaks_the_pool() {
    let pool = Pool::builder()
        .workers(2)
        .initializer(bad_init, 0)
        .build()
        .unwrap();
    let t = Instant::now();
    let err = match pool.apply_async(double, 1) {
        Ok(r) => PoolError::Item {
            index: 0,
            error: r.get().unwrap_err(),
        },
        Err(e) => e,
    };
    assert!(err.to_string().contains("no database"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(20));
    assert!(matches!(
        pool.apply_async(double, 1),
        Err(PoolError::Broken(_))
    ));
}

/// Runs in a spawned (so single-threaded) child: a fork-method pool.
fn fork_pool(n: u64) -> u64 {
    let pool = Pool::builder()
        .workers(2)
        .method(Method::Fork)
        .maxtasksperchild(3)
        .build()
        .unwrap();
    let v = pool.map_chunked(dies_on_7, 0..n, 1);
    let ok = match v {
        Err(PoolError::Item {
            index: 7,
            error: TaskError::WorkerDied { exitcode: -9, .. },
        }) => 1,
        _ => 0,
    };
    ok + pool.map(double, 0..n).unwrap().iter().sum::<u64>()
}

#[test]
fn fork_method_in_a_single_threaded_process() {
    let mut p = Builder::new().start(fork_pool, 20).unwrap();
    let got = p.join_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(got, 1 + (0..20u64).map(|x| x * 2).sum::<u64>());
}

/// Runs in a child: starts a pool, reports its workers, waits to be killed.
fn pool_then_wait(q: Queue) -> u64 {
    let pool = Pool::builder().workers(2).build().unwrap();
    for p in pool.pids() {
        q.send(&p).unwrap();
    }
    let _r = pool.apply_async(sleep_ms, 60_000).unwrap();
    std::thread::sleep(Duration::from_secs(60));
    0
}

#[test]
fn no_worker_outlives_a_killed_parent() {
    let q = Queue::anonymous(4, 8).unwrap();
    let mut p = Builder::new().start(pool_then_wait, q.clone()).unwrap();
    let a: u32 = q.recv_timeout(Duration::from_secs(30)).unwrap();
    let b: u32 = q.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(alive(a) && alive(b));
    p.kill().unwrap();
    let _ = p.join_timeout(Duration::from_secs(10));
    assert!(
        wait_gone(&[a, b], Duration::from_secs(5)),
        "workers outlived their parent"
    );
}

#[test]
fn many_threads_wait_on_one_pool() {
    // One thread drives at a time; the others sleep until it hands over
    // (woken only when someone sleeps). Every result still arrives, each
    // to its own caller.
    let pool = pool2();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let pool = &pool;
            s.spawn(move || {
                for i in 0..100 {
                    let x = t * 1000 + i;
                    assert_eq!(pool.apply(double, x).unwrap(), 2 * x);
                }
                let v = pool.map_chunked(double, 0..50u64, 1).unwrap();
                assert_eq!(v, (0..50u64).map(|x| 2 * x).collect::<Vec<_>>());
            });
        }
    });
}
