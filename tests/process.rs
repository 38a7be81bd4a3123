//! `Process`: real children under every start method.
//!
//! The test binary is multi-threaded (the harness runs tests on threads),
//! so `fork` is exercised from inside a spawned child, which enters before
//! `main` and runs one thread: the `in_child` helper runs a body there.

use std::time::{Duration, Instant};

use shmprim::process::{
    self, current_process, parent_process, Builder, Decoder, Encoder, Message, Method, ProcessError,
};
use shmprim::{
    Array, AtomicValue, Barrier, BoundedSemaphore, Condition, Event, JoinableQueue, Lock, Pipe,
    Queue, RLock, Segment, Semaphore, Value,
};

mod harness;

shmprim::process_test_entry!();

const ALL: [Method; 3] = [Method::Spawn, Method::Fork, Method::Forkserver];

/// Runs `body(method)` for every start method: spawn and forkserver from
/// this (threaded) process, fork from a spawned, single-threaded child.
fn each_method(body: fn(u8) -> u32) {
    for m in [Method::Spawn, Method::Forkserver] {
        assert_eq!(body(m as u8), 0, "{m:?}");
    }
    let mut p = Builder::new().start(body, Method::Fork as u8).unwrap();
    assert_eq!(p.join().unwrap(), 0, "Fork");
}

fn method(m: u8) -> Method {
    ALL.into_iter().find(|x| *x as u8 == m).unwrap()
}

fn double(x: u64) -> u64 {
    x * 2
}

fn boom(msg: String) -> u32 {
    panic!("{msg}")
}

fn exit_with(code: i32) {
    std::process::exit(code)
}

fn sleep_forever(_: ()) {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn whoami(_: ()) -> (String, u32, u32) {
    let me = current_process();
    let parent = parent_process().unwrap();
    assert_eq!(me.pid, std::process::id());
    (me.name, parent.pid, 0)
}

#[test]
fn return_values_panics_and_names() {
    fn body(m: u8) -> u32 {
        let m = method(m);
        let mut p = Builder::new().method(m).start(double, 21).unwrap();
        assert!(p.pid() > 0);
        assert_eq!(p.join().unwrap(), 42);
        assert_eq!(p.exitcode(), Some(0));
        assert!(!p.is_alive());
        assert!(matches!(p.join(), Err(ProcessError::AlreadyJoined)));

        let mut p = Builder::new()
            .method(m)
            .start(boom, "bad thing".into())
            .unwrap();
        match p.join() {
            Err(ProcessError::Panicked { message, exitcode }) => {
                assert_eq!(message, "bad thing");
                assert_eq!(exitcode, process::EXIT_PANIC);
            }
            other => panic!("{m:?}: {other:?}"),
        }
        assert_eq!(p.exitcode(), Some(process::EXIT_PANIC));

        let mut p = Builder::new()
            .method(m)
            .name("worker-7")
            .start(whoami, ())
            .unwrap();
        let (name, parent, _) = p.join().unwrap();
        assert_eq!(name, "worker-7");
        assert_eq!(parent, std::process::id());
        assert_eq!(p.name(), "worker-7");

        if m == Method::Fork {
            let captured = String::from("abcdef");
            let mut p = Builder::new().fork(move || captured.len() as u8).unwrap();
            assert_eq!(p.join().unwrap(), 6);
        }
        0
    }
    each_method(body);
}

#[test]
fn exit_codes_signals_terminate_kill_and_timeouts() {
    fn body(m: u8) -> u32 {
        let m = method(m);
        let mut p = Builder::new().method(m).start(exit_with, 7).unwrap();
        assert!(matches!(p.join(), Err(ProcessError::Died { exitcode: 7 })));
        assert_eq!(p.exitcode(), Some(7));

        let mut p = Builder::new().method(m).start(sleep_forever, ()).unwrap();
        let t = Instant::now();
        assert!(matches!(
            p.join_timeout(Duration::from_millis(100)),
            Err(ProcessError::Timeout)
        ));
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert!(p.is_alive());
        assert_eq!(p.exitcode(), None);
        p.terminate().unwrap();
        assert!(matches!(
            p.join(),
            Err(ProcessError::Died { exitcode: -15 })
        ));
        assert_eq!(p.exitcode(), Some(-15));

        let mut p = Builder::new().method(m).start(sleep_forever, ()).unwrap();
        p.kill().unwrap();
        assert!(matches!(
            p.join_timeout(Duration::from_secs(20)),
            Err(ProcessError::Died { exitcode: -9 })
        ));
        p.kill().unwrap(); // gone: nothing to do
        0
    }
    each_method(body);
}

/// An argument whose decoding fails, aborts, or hangs in the child.
struct Awkward(u8);

impl Message for Awkward {
    fn encode(&self, out: &mut Encoder) -> shmprim::Result<()> {
        out.put(&[self.0]);
        Ok(())
    }
    fn decode(input: &mut Decoder<'_>) -> shmprim::Result<Self> {
        match input.take(1)?[0] {
            0 => Err(shmprim::Error::Corrupt("refused on purpose")),
            1 => std::process::abort(),
            2 => loop {
                std::thread::sleep(Duration::from_secs(1));
            },
            n => Ok(Awkward(n)),
        }
    }
}

fn take_awkward(a: Awkward) -> u8 {
    a.0
}

#[test]
fn bad_argument_and_children_that_never_check_in() {
    for m in [Method::Spawn, Method::Forkserver] {
        let mut p = Builder::new()
            .method(m)
            .start(take_awkward, Awkward(9))
            .unwrap();
        assert_eq!(p.join().unwrap(), 9);

        let mut p = Builder::new()
            .method(m)
            .start(take_awkward, Awkward(0))
            .unwrap();
        match p.join() {
            Err(ProcessError::BadArgument { reason, exitcode }) => {
                assert!(reason.contains("refused on purpose"), "{reason}");
                assert_eq!(exitcode, process::EXIT_REFUSED);
            }
            other => panic!("{m:?}: {other:?}"),
        }

        let mut p = Builder::new()
            .method(m)
            .start(take_awkward, Awkward(1))
            .unwrap();
        match p.join() {
            Err(ProcessError::NeverCheckedIn { exitcode }) => assert_eq!(exitcode, Some(-6)),
            other => panic!("{m:?}: {other:?}"),
        }

        let t = Instant::now();
        let mut p = Builder::new()
            .method(m)
            .start_timeout(Duration::from_millis(300))
            .start(take_awkward, Awkward(2))
            .unwrap();
        match p.join() {
            Err(ProcessError::NeverCheckedIn { exitcode: None }) => {}
            other => panic!("{m:?}: {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert_eq!(p.exitcode(), Some(-9));
    }
}

#[test]
fn fork_is_refused_from_a_threaded_parent() {
    match Builder::new().fork(|| 1u32) {
        Err(ProcessError::Threaded { threads }) => assert!(threads > 1),
        Ok(mut p) => panic!("fork allowed: {:?}", p.join()),
        Err(e) => panic!("{e}"),
    }
    match Builder::new().method(Method::Fork).start(double, 1) {
        Err(ProcessError::Threaded { .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// Every kind of handle, as a child receives them.
type Kit = (
    (Lock, RLock, Value<u64>, Array<u32>, AtomicValue<u32>),
    (Semaphore, BoundedSemaphore, Event, Condition, Barrier),
    (Queue, JoinableQueue, Pipe, shmprim::Connection, Segment),
);

/// What the parent keeps to check a child's work.
type View = (
    Value<u64>,
    Array<u32>,
    AtomicValue<u32>,
    (Semaphore, BoundedSemaphore, Event),
    (Queue, JoinableQueue, Pipe, Segment),
    shmprim::Connection,
);

fn kit(named: bool, tag: &str) -> (Kit, View, Vec<harness::RemoveOnDrop>) {
    let mut names = Vec::new();
    let mut n = |k: &str| {
        let s = harness::unique(&format!("{tag}{k}"));
        names.push(harness::RemoveOnDrop(s.clone()));
        s
    };
    let (mine, theirs) = Pipe::anonymous(4096).unwrap();
    let (lock, rlock, value, array, atomic, sem, bsem, event, cond, barrier, queue, jq, seg);
    if named {
        lock = Lock::create(&n("l")).unwrap();
        rlock = RLock::create(&n("r")).unwrap();
        value = Value::create(&n("v"), 1).unwrap();
        array = Array::create(&n("a"), 4).unwrap();
        atomic = AtomicValue::create(&n("t"), 0).unwrap();
        sem = Semaphore::create(&n("s"), 0).unwrap();
        bsem = BoundedSemaphore::create(&n("b"), 1).unwrap();
        event = Event::create(&n("e")).unwrap();
        cond = Condition::create(&n("c")).unwrap();
        barrier = Barrier::create(&n("w"), 1, None).unwrap();
        queue = Queue::create(&n("q"), 4, 8).unwrap();
        jq = JoinableQueue::create(&n("j"), 4, 8).unwrap();
        seg = Segment::create(&n("g"), 64).unwrap();
    } else {
        lock = Lock::anonymous().unwrap();
        rlock = RLock::anonymous().unwrap();
        value = Value::anonymous(1).unwrap();
        array = Array::anonymous(4).unwrap();
        atomic = AtomicValue::anonymous(0).unwrap();
        sem = Semaphore::anonymous(0).unwrap();
        bsem = BoundedSemaphore::anonymous(1).unwrap();
        event = Event::anonymous().unwrap();
        cond = Condition::anonymous().unwrap();
        barrier = Barrier::anonymous(1, None).unwrap();
        queue = Queue::anonymous(4, 8).unwrap();
        jq = JoinableQueue::anonymous(4, 8).unwrap();
        seg = Segment::anonymous(64).unwrap();
    }
    // A Pipe object is named (anonymous pipes come as their two ends,
    // which the Connection covers).
    let pipe = Pipe::create(&n("p"), 4096).unwrap();
    let seg2 = match seg.name() {
        Some(name) => Segment::open(name).unwrap(),
        None => {
            let fd = shmprim::sys::child::dup(seg.anonymous_fd().unwrap()).unwrap();
            Segment::open_descriptor(fd, Segment::open).unwrap()
        }
    };
    let kit = (
        (lock, rlock, value.clone(), array.clone(), atomic.clone()),
        (sem.clone(), bsem.clone(), event.clone(), cond, barrier),
        (queue.clone(), jq.clone(), pipe.clone(), theirs, seg2),
    );
    let view = (
        value,
        array,
        atomic,
        (sem, bsem, event),
        (queue, jq, pipe, seg),
        mine,
    );
    (kit, view, names)
}

fn use_kit(k: Kit) -> u64 {
    let ((lock, rlock, value, array, atomic), (sem, bsem, event, cond, barrier), rest) = k;
    let (queue, jq, pipe, mut conn, seg) = rest;
    drop(lock.lock().unwrap());
    drop(rlock.lock().unwrap());
    value.update(|v| *v += 1).unwrap();
    array.lock().unwrap()[3] = 9;
    atomic.fetch_add(1);
    sem.release().unwrap();
    bsem.acquire().unwrap();
    event.set();
    let g = cond.lock().unwrap();
    cond.notify_all(&g).unwrap();
    drop(g);
    barrier.wait().unwrap();
    queue.send(&11u64).unwrap();
    jq.send(&12u64).unwrap();
    let mut b = pipe.connect(shmprim::End::B).unwrap();
    b.send_bytes(b"pipe").unwrap();
    conn.send_bytes(b"conn").unwrap();
    // SAFETY: the parent reads this byte only after joining.
    unsafe { seg.data_ptr().write(0x5a) };
    value.get().unwrap()
}

fn check_kit(v: &mut View) {
    let (value, array, atomic, (sem, bsem, event), (queue, jq, pipe, seg), mine) = v;
    assert_eq!(value.get().unwrap(), 2);
    assert_eq!(array.lock().unwrap()[3], 9);
    assert_eq!(atomic.load(), 1);
    sem.acquire().unwrap();
    bsem.release().unwrap(); // over its bound unless the child took it
    assert!(event.is_set());
    assert_eq!(queue.recv::<u64>().unwrap(), 11);
    assert_eq!(jq.recv::<u64>().unwrap(), 12);
    let mut a = pipe.connect(shmprim::End::A).unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"pipe");
    assert_eq!(mine.recv_bytes().unwrap(), b"conn");
    // SAFETY: the child wrote it before exiting; no one writes it now.
    assert_eq!(unsafe { seg.data_ptr().read() }, 0x5a);
}

#[test]
fn handles_of_every_kind_named_and_anonymous() {
    fn body(m: u8) -> u32 {
        let m = method(m);
        for named in [true, false] {
            let (k, mut view, _names) = kit(named, &format!("k{}{}", m as u8, named as u8));
            let r = if m == Method::Fork {
                Builder::new().fork(move || use_kit(k)).unwrap().join()
            } else {
                Builder::new().method(m).start(use_kit, k).unwrap().join()
            };
            assert_eq!(r.unwrap(), 2, "{m:?} named={named}");
            check_kit(&mut view);
        }
        0
    }
    each_method(body);
}

/// Starts a child by `m` (daemon, or a non-daemon that may outlive its
/// parent), publishes its pid, and sleeps until killed.
fn middle((m, daemon, out): (u8, bool, AtomicValue<u32>)) {
    let p = Builder::new()
        .method(method(m))
        .daemon(daemon)
        .outlive_parent(true)
        .start(sleep_forever, ())
        .unwrap();
    out.store(p.pid());
    std::mem::forget(p);
    sleep_forever(())
}

/// Whether `pid` still runs (a zombie, or a pid that is gone, does not).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

#[test]
fn daemons_die_with_a_killed_parent_others_only_if_asked() {
    for m in ALL {
        for daemon in [true, false] {
            let out = AtomicValue::<u32>::anonymous(0).unwrap();
            let mut mid = Builder::new()
                .start(middle, (m as u8, daemon, out.clone()))
                .unwrap();
            assert!(until(Duration::from_secs(20), || out.load() != 0), "{m:?}");
            let child = out.load();
            assert!(running(child));
            mid.kill().unwrap();
            assert!(matches!(
                mid.join(),
                Err(ProcessError::Died { exitcode: -9 })
            ));
            if daemon {
                assert!(
                    until(Duration::from_secs(10), || !running(child)),
                    "{m:?}: daemon {child} outlived its killed parent"
                );
            } else {
                // Asked to outlive its parent: it does, until killed here.
                std::thread::sleep(Duration::from_millis(300));
                assert!(running(child), "{m:?}: non-daemon {child} died");
                shmprim::sys::child::kill(child, shmprim::sys::child::SIGKILL).unwrap();
            }
        }
    }
}

fn unit(_: ()) {}

/// Open descriptors of this process.
fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Whether this process has any child left, reaped or not.
fn has_children() -> bool {
    // SAFETY: plain out-pointer; WNOWAIT leaves any child as it is.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        ) == 0
    }
}

/// `n` start/join cycles by `m`, then: no new descriptor, no child left,
/// no segment in /dev/shm created by this process.
fn cycles((m, n): (u8, u32)) -> u32 {
    let m = method(m);
    // Warm up: the forkserver and its pipe stay for the program's life.
    Builder::new()
        .method(m)
        .start(unit, ())
        .unwrap()
        .join()
        .unwrap();
    let fds = fd_count();
    for i in 0..n {
        let mut p = if m == Method::Fork {
            Builder::new().fork(move || i).unwrap()
        } else {
            Builder::new().method(m).start(|i: u32| i, i).unwrap()
        };
        assert_eq!(p.join().unwrap(), i);
    }
    assert_eq!(fd_count(), fds, "{m:?}: descriptors leaked");
    if m != Method::Forkserver {
        assert!(!has_children(), "{m:?}: a child was left");
    }
    let me = std::process::id();
    let mine = shmprim::segment::list()
        .unwrap()
        .into_iter()
        .filter(|r| r.header.as_ref().is_ok_and(|h| h.creator_pid == me))
        .count();
    assert_eq!(mine, 0, "{m:?}: segments left in /dev/shm");
    0
}

/// 1000 fork cycles (cheap); spawn and forkserver cycles are fewer (each
/// spawn re-executes this test binary: ~100x a fork).
#[test]
fn start_join_cycles_leak_nothing() {
    for (m, n) in [
        (Method::Fork, 1000),
        (Method::Spawn, 50),
        (Method::Forkserver, 300),
    ] {
        let mut p = Builder::new().start(cycles, (m as u8, n)).unwrap();
        assert_eq!(p.join_timeout(Duration::from_secs(60)).unwrap(), 0, "{m:?}");
    }
}

/// The targets of the descriptors this process holds above stderr.
fn open_fds(_: ()) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let n: i32 = e.file_name().to_string_lossy().parse().unwrap();
        if let Ok(t) = std::fs::read_link(e.path()) {
            if n > 2 {
                v.push(t.to_string_lossy().into_owned());
            }
        }
    }
    v
}

fn fds_with_value(v: Value<u64>) -> Vec<String> {
    assert_eq!(v.get().unwrap(), 3);
    open_fds(())
}

#[test]
fn spawned_children_inherit_only_what_they_are_given() {
    for m in [Method::Spawn, Method::Forkserver] {
        let v = Value::<u64>::anonymous(3).unwrap();
        let fds = Builder::new()
            .method(m)
            .start(fds_with_value, v)
            .unwrap()
            .join()
            .unwrap();
        // The start pipe, the value, and the directory being listed.
        let memfds = fds.iter().filter(|t| t.starts_with("/memfd:")).count();
        assert_eq!(memfds, 2, "{m:?}: {fds:?}");
        assert!(fds.len() <= 3, "{m:?}: {fds:?}");
    }
}

#[test]
fn identity_children_and_cpus() {
    assert_eq!(current_process().name, "MainProcess");
    assert_eq!(current_process().pid, std::process::id());
    assert!(parent_process().is_none());
    assert!(process::cpu_count() >= 1);
    let mut p = Builder::new()
        .name("sleeper")
        .start(sleep_forever, ())
        .unwrap();
    let pid = p.pid();
    assert!(process::active_children()
        .iter()
        .any(|c| c.pid == pid && c.name == "sleeper"));
    p.terminate().unwrap();
    let _ = p.join();
    assert!(!process::active_children().iter().any(|c| c.pid == pid));
}

#[test]
fn dropping_unjoined_processes_leaves_nothing_running_or_unreaped() {
    // A daemon is killed and reaped on drop.
    let p = Builder::new()
        .daemon(true)
        .start(sleep_forever, ())
        .unwrap();
    let pid = p.pid();
    drop(p);
    assert!(!running(pid) && !std::path::Path::new(&format!("/proc/{pid}")).exists());
    // A non-daemon keeps running; once it ends, the next sweep reaps it.
    let p = Builder::new().start(sleep_forever, ()).unwrap();
    let pid = p.pid();
    drop(p);
    assert!(running(pid));
    shmprim::sys::child::kill(pid, shmprim::sys::child::SIGKILL).unwrap();
    assert!(until(Duration::from_secs(10), || {
        process::active_children();
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }));
}

fn echo_len(v: Vec<u8>) -> (u64, Vec<u8>) {
    (v.len() as u64, v)
}

#[test]
fn large_arguments_and_results_stream_through() {
    for m in [Method::Spawn, Method::Forkserver] {
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let (n, back) = Builder::new()
            .method(m)
            .start(echo_len, big.clone())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(n, big.len() as u64);
        assert_eq!(back, big);
    }
}

#[cfg(feature = "serde")]
#[test]
fn serde_arguments_and_results() {
    use shmprim::process::Serde;
    fn f(Serde(v): Serde<Vec<String>>) -> Serde<String> {
        Serde(v.join("+"))
    }
    let arg = Serde(vec!["a".to_owned(), "b".to_owned()]);
    let Serde(r) = Builder::new().start(f, arg).unwrap().join().unwrap();
    assert_eq!(r, "a+b");
}

type RawKit = (
    shmprim::RawArray<u64>,
    shmprim::RawValue<u32>,
    shmprim::SharedMap,
    shmprim::SharedList,
);

fn use_raw_kit((a, v, m, l): RawKit) -> u32 {
    let seen = a.load(0).unwrap() as u32 + v.load();
    a.store(1, 11).unwrap();
    v.store(22);
    m.insert(b"k", b"33").unwrap();
    l.push(b"44").unwrap();
    seen
}

#[test]
fn raw_handles_and_named_containers_travel() {
    let map = shmprim::SharedMap::create(&harness::unique("pm")).unwrap();
    let list = shmprim::SharedList::create(&harness::unique("pl")).unwrap();
    let a = shmprim::RawArray::<u64>::anonymous(2).unwrap();
    a.store(0, 5).unwrap();
    let v = shmprim::RawValue::<u32>::anonymous(1).unwrap();
    let kit = (
        a.clone(),
        v.clone(),
        shmprim::SharedMap::open(map.name().unwrap()).unwrap(),
        shmprim::SharedList::open(list.name().unwrap()).unwrap(),
    );
    let r = Builder::new()
        .method(Method::Spawn)
        .start(use_raw_kit, kit)
        .unwrap()
        .join();
    assert_eq!(r.unwrap(), 6);
    assert_eq!(a.load(1).unwrap(), 11);
    assert_eq!(v.load(), 22);
    assert_eq!(map.get(b"k").unwrap().as_deref(), Some(&b"33"[..]));
    assert_eq!(list.get(0).unwrap().as_deref(), Some(&b"44"[..]));
    // An anonymous container has no name to follow: refused at start.
    let anon = shmprim::SharedMap::anonymous().unwrap();
    let mut e = Encoder::new();
    assert!(matches!(
        anon.encode(&mut e),
        Err(shmprim::Error::Unsupported(_))
    ));
}
