//! Dead-owner detection of the crate's lock under adverse conditions: a
//! storm of signals at the waiter, and holders or waiters in other time or
//! pid namespaces (which must never make a live holder look dead).
#![cfg(target_os = "linux")] // procfs, namespaces

mod harness;
use harness::*;
use shmprim::*;

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a waiter waits for a holder that lives.
const BRIEF: Duration = Duration::from_millis(400);

fn describe<G>(r: LockResult<G>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(LockError::OwnerDied(_)) => "OwnerDied".to_owned(),
        Err(LockError::Failed(e)) => format!("{e:?}"),
    }
}

extern "C" fn ignore(_: libc::c_int) {}

/// A signal every 20 ms at a waiter whose lock's owner died: each one
/// interrupts its futex sleep, and it must still judge the owner within a
/// liveness slice or so, not only at its deadline (slices used to restart
/// at every interruption).
#[test]
fn a_signal_storm_does_not_stop_dead_owner_detection() {
    // SAFETY: installs a handler that does nothing, without SA_RESTART so
    // that the futex wait is interrupted; `sa` is fully initialised.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = ignore as extern "C" fn(libc::c_int) as usize;
        assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
    }
    let lock = Lock::anonymous().unwrap();
    let l2 = lock.clone();
    std::thread::spawn(move || std::mem::forget(l2.lock().unwrap()))
        .join()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let l3 = lock.clone();
    let deadline = Duration::from_secs(3);
    let waiter = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        tx.send(unsafe { libc::pthread_self() } as usize).unwrap();
        let t = Instant::now();
        let r = describe(l3.lock_timeout(deadline));
        (r, t.elapsed())
    });
    let target = rx.recv().unwrap() as libc::pthread_t;
    while !waiter.is_finished() {
        // SAFETY: the waiter thread is joined only after this loop, so
        // `target` names a live (or finished, unjoined) thread.
        unsafe { libc::pthread_kill(target, libc::SIGUSR2) };
        std::thread::sleep(Duration::from_millis(20));
    }
    let (r, took) = waiter.join().unwrap();
    assert_eq!(r, "OwnerDied");
    // Detection takes a slice (100 ms); the deadline's last look comes at 3 s.
    assert!(took < deadline * 5 / 6, "detected only after {took:?}");
}

/// Whether this machine lets us run `unshare` with these flags.
fn can_unshare(flags: &[&str]) -> bool {
    let ok = std::process::Command::new("unshare")
        .args(flags)
        .arg("true")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "skipped: `unshare {}` is not permitted here",
            flags.join(" ")
        );
    }
    ok
}

child!(
    /// Opens the lock and waits briefly for it; reports what it got.
    fn waits_briefly(ctx) {
        let l = Lock::open(&ctx.arg("name"))?;
        ctx.send(&describe(l.lock_timeout(BRIEF)));
    }
);

child!(
    /// Opens the lock, takes it and holds it until killed.
    fn holds_until_killed(ctx) {
        let l = Lock::open(&ctx.arg("name"))?;
        let g = l.lock();
        ctx.send(&describe(g.as_ref().map(drop).map_err(|_| LockError::Failed(Error::WouldBlock))));
        std::thread::sleep(Duration::from_secs(60));
        drop(g);
    }
);

const TIMENS: &[&str] = &["unshare", "-Ur", "-T", "--boottime", "1000"];
const PIDNS: &[&str] = &["unshare", "-Urpf", "--mount-proc"];

/// A waiter in a time namespace 1000 s ahead sees its holder's start time
/// 1000 s later in `/proc`: it must still find it alive (and not take the
/// lock over from it).
#[test]
fn a_waiter_in_another_time_namespace_finds_the_holder_alive() {
    if !can_unshare(&TIMENS[1..]) {
        return;
    }
    let name = unique("timens-waiter");
    let lock = Lock::create(&name).unwrap();
    let g = lock.lock().unwrap();
    let child = spawn("waits_briefly")
        .arg("name", &name)
        .under(TIMENS)
        .start();
    child.expect("Timeout");
    child.join();
    drop(g);
}

/// A holder in a time namespace 1000 s ahead is alive to a waiter here;
/// once killed, it is dead to it.
#[test]
fn a_holder_in_another_time_namespace_is_alive_until_killed() {
    if !can_unshare(&TIMENS[1..]) {
        return;
    }
    let name = unique("timens-holder");
    let lock = Lock::create(&name).unwrap();
    let mut child = spawn("holds_until_killed")
        .arg("name", &name)
        .under(TIMENS)
        .start();
    child.expect("ok");
    assert_eq!(describe(lock.lock_timeout(BRIEF)), "Timeout");
    child.kill();
    match lock.lock_timeout(Duration::from_secs(10)) {
        Err(LockError::OwnerDied(d)) => drop(d.make_consistent().unwrap()),
        other => panic!("{:?}", other.map(drop)),
    };
}

/// A waiter in another pid namespace cannot look the holder's thread id
/// up (there it names another thread, or none): it must never judge the
/// holder dead, only wait and time out.
#[test]
fn a_waiter_in_another_pid_namespace_never_takes_the_lock_over() {
    if !can_unshare(&PIDNS[1..]) {
        return;
    }
    let name = unique("pidns-waiter");
    let lock = Lock::create(&name).unwrap();
    let g = lock.lock().unwrap();
    let child = spawn("waits_briefly")
        .arg("name", &name)
        .under(PIDNS)
        .start();
    child.expect("Timeout");
    child.join();
    drop(g);
    drop(lock.try_lock().unwrap());
}

/// Iterations each side runs in [`two_pid_namespaces_hammer_one_lock_value_and_queue`].
const HAMMER: u64 = 20_000;

/// Takes a lock by `lock` (`wait`) or by `try_lock` in a loop; any
/// failure but busy (an owner-died above all: nobody dies here) panics.
fn take<G>(
    side: u8,
    what: &str,
    wait: bool,
    lock: impl Fn() -> LockResult<G>,
    try_lock: impl Fn() -> LockResult<G>,
) -> G {
    loop {
        match if wait { lock() } else { try_lock() } {
            Ok(g) => return g,
            Err(LockError::Failed(Error::WouldBlock)) => std::thread::yield_now(),
            Err(e) => panic!("side {side}: {what}: {}", describe::<()>(Err(e.map(drop)))),
        }
    }
}

/// One side of the hammer: `HAMMER` times, one increment under the
/// `Lock` (a load and a store of a lock-free counter, torn if two hold it),
/// one under the `Value`'s lock (every other round by `try_lock`, whose
/// busy path judges the holder), one message sent and one received. Any
/// owner-died is false here: nobody dies. Returns the received messages'
/// count and sum.
fn hammer(
    lock: &Lock,
    counter: &AtomicValue<u64>,
    value: &Value<u64>,
    queue: &Queue,
    side: u8,
) -> (u64, u64) {
    let (mut got, mut sum) = (0, 0);
    let mut buf = [0u8; 16];
    for i in 0..HAMMER {
        let g = take(side, "lock", i % 2 == 0, || lock.lock(), || lock.try_lock());
        let c = counter.load();
        if i % 64 == 0 {
            std::thread::yield_now();
        }
        counter.store(c + 1);
        drop(g);
        let mut g = take(
            side,
            "value",
            i % 2 == 1,
            || value.lock(),
            || value.try_lock(),
        );
        *g += 1;
        drop(g);
        let mut msg = [side; 9];
        msg[1..].copy_from_slice(&i.to_le_bytes());
        queue.send_bytes(&msg).unwrap();
        let n = queue.recv_bytes_into(&mut buf).unwrap();
        assert_eq!(n, 9);
        got += 1;
        sum += u64::from_le_bytes(buf[1..9].try_into().unwrap());
    }
    (got, sum)
}

child!(
    /// The other namespace's side of the hammer; reports its count and sum.
    fn hammers(ctx) {
        let name = ctx.arg("name");
        let lock = Lock::open(&format!("{name}l"))?;
        let counter = AtomicValue::<u64>::open(&format!("{name}c"))?;
        let value = Value::<u64>::open(&format!("{name}v"))?;
        let queue = Queue::open(&format!("{name}q"))?;
        ctx.send("ready");
        let (got, sum) = hammer(&lock, &counter, &value, &queue, 2);
        ctx.send(&format!("{got} {sum}"));
    }
);

/// Containers sharing `/dev/shm` with pid namespaces of their own: a
/// process here and one in a fresh pid namespace (with its own `/proc`)
/// hammer one `Lock`, one `Value` and one `Queue`. Thread ids of either
/// side name other threads, or none, on the other: a waiter that judged
/// the other side's holder from them would take a live holder's lock
/// (torn counts, a false owner-died). Counts must be exact.
#[test]
fn two_pid_namespaces_hammer_one_lock_value_and_queue() {
    if !can_unshare(&PIDNS[1..]) {
        return;
    }
    let name = unique("pidns-hammer");
    let lock = Lock::create(&format!("{name}l")).unwrap();
    let counter = AtomicValue::<u64>::create(&format!("{name}c"), 0).unwrap();
    let value = Value::<u64>::create(&format!("{name}v"), 0).unwrap();
    let queue = Queue::create(&format!("{name}q"), 64, 16).unwrap();
    let child = spawn("hammers")
        .arg("name", &name)
        .under(PIDNS)
        .timeout(Duration::from_secs(120))
        .start();
    child.expect("ready");
    let (got, sum) = hammer(&lock, &counter, &value, &queue, 1);
    let theirs = child
        .recv(Duration::from_secs(120))
        .expect("the child's count");
    child.join();
    let (g2, s2) = theirs.split_once(' ').expect("count and sum");
    let (g2, s2): (u64, u64) = (g2.parse().unwrap(), s2.parse().unwrap());
    assert_eq!(counter.load(), 2 * HAMMER, "the Lock let two hold it");
    assert_eq!(
        value.get().unwrap(),
        2 * HAMMER,
        "the Value's lock let two hold it"
    );
    assert_eq!(got + g2, 2 * HAMMER, "messages lost or duplicated");
    assert_eq!(sum + s2, HAMMER * (HAMMER - 1), "messages changed");
    assert!(queue.is_empty());
}

child!(
    /// Forks a single-threaded grandchild that takes the lock on its main
    /// thread (the one whose id and start time an `execve` keeps) and
    /// replaces its image with `sleep 30` while holding it; reports the
    /// grandchild's pid, then reaps it.
    fn forks_a_holder_that_execs(ctx) {
        let l = Lock::open(&ctx.arg("name"))?;
        let (prog, arg) = (c"sleep", c"30");
        let argv = [prog.as_ptr(), arg.as_ptr(), std::ptr::null()];
        // SAFETY: this process runs two threads, this one and libtest's
        // main thread, which only waits for it: the child may allocate.
        // The child leaves by `execvp` or `_exit`, never returning here.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: prctl, execvp and _exit take valid arguments (argv
            // is NULL-terminated and its strings outlive the call).
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                match l.lock() {
                    Ok(g) => std::mem::forget(g),
                    Err(_) => libc::_exit(3),
                }
                libc::execvp(prog.as_ptr(), argv.as_ptr());
                libc::_exit(4);
            }
        }
        assert!(pid > 0, "fork");
        let t = Instant::now();
        while !l.is_locked()? {
            assert!(t.elapsed() < Duration::from_secs(10), "never locked");
            std::thread::sleep(Duration::from_millis(1));
        }
        ctx.send(&pid.to_string());
        let mut status = 0;
        // SAFETY: reaps our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
);

/// The command name of process `pid`, if it exists.
fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()
}

/// A holder that replaces its image (`execve`) while holding a lock is
/// dead as POSIX robust mutexes count it, although its thread id and start
/// time live on in the new program: the next locker gets `OwnerDied`
/// within a liveness period or so, not when `sleep 30` ends.
#[test]
fn a_holder_that_execs_is_reported_dead() {
    let name = unique("exec-holder");
    let lock = Lock::create(&name).unwrap();
    let child = spawn("forks_a_holder_that_execs")
        .arg("name", &name)
        .start();
    let pid: i32 = child
        .recv(Duration::from_secs(20))
        .expect("the holder's pid")
        .parse()
        .unwrap();
    let t = Instant::now();
    while comm(pid).as_deref() != Some("sleep\n") {
        assert!(t.elapsed() < Duration::from_secs(10), "never exec'd");
        std::thread::sleep(Duration::from_millis(1));
    }
    let t = Instant::now();
    let r = lock.lock_timeout(Duration::from_secs(10));
    let took = t.elapsed();
    let still_running = comm(pid).as_deref() == Some("sleep\n");
    let got = match r {
        Err(LockError::OwnerDied(d)) => {
            drop(d.make_consistent().unwrap());
            "OwnerDied".to_owned()
        }
        other => describe(other),
    };
    // SAFETY: our grandchild (`sleep`), reaped by the child role.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    child.join();
    assert_eq!(got, "OwnerDied");
    assert!(still_running, "the new image ended before the judgment");
    assert!(
        took < Duration::from_secs(5),
        "detected only after {took:?}"
    );
    drop(lock.try_lock().unwrap());
}

child!(
    /// In its own pid namespace: a thread takes the lock and exits holding
    /// it; once the parent (which cannot judge it) has timed out, this
    /// process, in the holder's namespace, recovers it.
    fn recovers_its_own_namespace_holder(ctx) {
        let l = Lock::open(&ctx.arg("name"))?;
        let gate = AtomicValue::<u32>::open(&ctx.arg("gate"))?;
        let l2 = l.clone();
        std::thread::spawn(move || std::mem::forget(l2.lock().unwrap()))
            .join()
            .unwrap();
        ctx.send("held");
        gate_wait(&gate, Duration::from_secs(30))?;
        let got = match l.lock_timeout(Duration::from_secs(10)) {
            Err(LockError::OwnerDied(d)) => {
                drop(d.make_consistent()?);
                "OwnerDied".to_owned()
            }
            other => describe(other),
        };
        ctx.send(&got);
    }
);

/// A holder outside the lock's namespace that dies is recovered by a
/// waiter of its own namespace (which reads the holder's record of where
/// its thread id means something), never by one of the lock's home
/// namespace (for which that id means another thread).
#[test]
fn a_dead_holder_is_recovered_from_its_own_pid_namespace_only() {
    if !can_unshare(&PIDNS[1..]) {
        return;
    }
    let name = unique("pidns-recover");
    let gate_name = unique("pidns-gate");
    let lock = Lock::create(&name).unwrap();
    let gate = AtomicValue::<u32>::create(&gate_name, 0).unwrap();
    let child = spawn("recovers_its_own_namespace_holder")
        .arg("name", &name)
        .arg("gate", &gate_name)
        .under(PIDNS)
        .start();
    child.expect("held");
    assert_eq!(describe(lock.lock_timeout(BRIEF)), "Timeout");
    gate_open(&gate);
    child.expect("OwnerDied");
    child.join();
    drop(lock.try_lock().unwrap());
}
