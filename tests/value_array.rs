//! Cross-process tests of `Value`, `Array` and `AtomicValue`: children are
//! real processes (the harness re-executes this binary), parents create
//! every named segment, children only open.
#![cfg(target_os = "linux")] // /dev/shm, procfs and mount namespaces

mod harness;

use std::error::Error as StdError;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use harness::*;
use shmprim::segment::Kind;
use shmprim::*;

type Res<T = ()> = std::result::Result<T, Box<dyn StdError>>;

/// How long a child may live before the harness kills it.
const CHILD_LIMIT: Duration = Duration::from_secs(30);
/// How long a child waits on a gate before giving up.
const GATE_LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A start gate: an `AtomicValue<u32>` the parent creates at 0; children
/// announce "ready" and sleep on it until the parent opens it, so that all
/// of them start their loops together (more contention than staggered
/// process start-up gives).
fn wait_gate(ctx: &Ctx, gate: &str) -> Res {
    let g = AtomicValue::<u32>::open(gate)?;
    ctx.send("ready");
    let seen = gate_wait(&g, GATE_LIMIT)?;
    if seen != 1 {
        return Err(format!("gate opened with {seen}, expected 1").into());
    }
    Ok(())
}

/// Whether a lock attempt failed with `WouldBlock` (and took nothing).
fn would_block<G>(r: LockResult<G>) -> bool {
    matches!(r, Err(e) if e.is_would_block())
}

/// Whether a lock attempt failed with `Deadlock`.
fn is_deadlock<G>(r: LockResult<G>) -> bool {
    matches!(r, Err(LockError::Failed(Error::Deadlock)))
}

/// Receives one message from `child` and returns it, or panics with the
/// child's output.
fn recv(child: &Child) -> String {
    child
        .recv(CHILD_LIMIT)
        .unwrap_or_else(|| panic!("no message from child\n{}", child.output()))
}

// ---------------------------------------------------------------------------
// 1. A Value of each type, updated by a child
// ---------------------------------------------------------------------------

shmprim::plain_struct! {
    /// A point with a counter: a `#[repr(C)]` struct in shared memory.
    #[derive(Debug, PartialEq)]
    pub struct Point {
        /// Abscissa.
        pub x: f64,
        /// Ordinate.
        pub y: f64,
        /// How many times it moved.
        pub count: u64,
    }
}

/// A type the "set by child" test runs for: the value the parent creates
/// and the one the child stores.
trait Case: Plain + PartialEq + Debug {
    const TYPE: &'static str;
    const OLD: Self;
    const NEW: Self;
}

macro_rules! cases {
    ($($t:ty => $tag:literal, $old:expr, $new:expr;)*) => {
        $(impl Case for $t {
            const TYPE: &'static str = $tag;
            const OLD: Self = $old;
            const NEW: Self = $new;
        })*

        /// The child side for the type named `ty`.
        fn child_case(ty: &str, name: &str) -> Res {
            match ty {
                $($tag => set_from_child::<$t>(name),)*
                other => Err(format!("unknown type {other:?}").into()),
            }
        }
    };
}

cases! {
    i32 => "i32", -7, i32::MIN + 3;
    f64 => "f64", 1.5, -6.02e23;
    i16 => "i16", 12, -12345;
    i64 => "i64", 1, i64::MIN + 5;
    u8 => "u8", 1, 255;
    Point => "point",
        Point { x: 1.0, y: -2.0, count: 1 },
        Point { x: 3.25, y: -1e-300, count: u64::MAX - 1 };
}

/// Opens the value, checks it holds what the parent created, stores NEW.
fn set_from_child<T: Case>(name: &str) -> Res {
    let v = Value::<T>::open(name)?;
    let old = v.get()?;
    if old != T::OLD {
        return Err(format!("child read {old:?}, parent created {:?}", T::OLD).into());
    }
    v.set(T::NEW)?;
    Ok(())
}

child!(fn child_value_set(ctx) {
    child_case(&ctx.arg("type"), &ctx.arg("name"))?;
    ctx.send("set");
});

fn value_set_by_child<T: Case>() {
    assert_ne!(T::OLD, T::NEW, "the test needs two different values");
    let name = unique(T::TYPE);
    let v = Value::<T>::create(&name, T::OLD).unwrap();
    assert_eq!(v.get().unwrap(), T::OLD);
    let child = spawn("child_value_set")
        .arg("type", T::TYPE)
        .arg("name", &name)
        .timeout(CHILD_LIMIT)
        .start();
    child.expect("set");
    child.join();
    assert_eq!(
        v.get().unwrap(),
        T::NEW,
        "parent sees the child's store ({})",
        T::TYPE
    );
    assert_eq!(*v.lock().unwrap(), T::NEW);
}

#[test]
fn value_i32_set_by_child() {
    value_set_by_child::<i32>();
}

#[test]
fn value_f64_set_by_child() {
    value_set_by_child::<f64>();
}

#[test]
fn value_i16_set_by_child() {
    value_set_by_child::<i16>();
}

#[test]
fn value_i64_set_by_child() {
    value_set_by_child::<i64>();
}

#[test]
fn value_u8_set_by_child() {
    value_set_by_child::<u8>();
}

#[test]
fn value_struct_set_by_child() {
    value_set_by_child::<Point>();
}

// ---------------------------------------------------------------------------
// 2. N processes x K locked increments
// ---------------------------------------------------------------------------

child!(fn child_increment(ctx) {
    let v = Value::<i64>::open(&ctx.arg("name"))?;
    let n: u32 = ctx.parse("n");
    let mode = ctx.arg("mode");
    wait_gate(ctx, &ctx.arg("gate"))?;
    for i in 0..n {
        match mode.as_str() {
            "update" => v.update(|x| *x += 1)?,
            "guard" => {
                let mut g = v.lock().map_err(Error::from)?;
                // A read-modify-write split in two, sometimes with a yield
                // in between: any hole in the lock loses increments.
                let seen = *g;
                if i % 64 == 0 {
                    std::thread::yield_now();
                }
                *g = seen + 1;
            }
            other => return Err(format!("unknown mode {other:?}").into()),
        }
    }
    ctx.send("done");
});

fn locked_increments(mode: &str) {
    const PROCS: usize = 4;
    const EACH: u32 = 1000;
    let name = unique(mode);
    let gate_name = unique("gate");
    let v = Value::<i64>::create(&name, 0).unwrap();
    let gate = AtomicValue::<u32>::create(&gate_name, 0).unwrap();
    let kids: Vec<_> = (0..PROCS)
        .map(|_| {
            spawn("child_increment")
                .arg("name", &name)
                .arg("gate", &gate_name)
                .arg("n", EACH)
                .arg("mode", mode)
                .timeout(CHILD_LIMIT)
                .start()
        })
        .collect();
    for k in &kids {
        k.expect("ready");
    }
    gate_open(&gate);
    for k in &kids {
        k.expect("done");
    }
    join_all(kids);
    assert_eq!(v.get().unwrap(), PROCS as i64 * EACH as i64);
}

#[test]
fn value_processes_increment_with_update() {
    locked_increments("update");
}

#[test]
fn value_processes_increment_with_guard() {
    locked_increments("guard");
}

// ---------------------------------------------------------------------------
// 3. Array
// ---------------------------------------------------------------------------

#[test]
fn array_get_set_slices_and_errors() {
    let name = unique("arr");
    let a = Array::<i32>::create_from_slice(&name, &[10, 20, 30, 40, 50, 60]).unwrap();
    assert_eq!(a.len(), 6);
    assert!(!a.is_empty());
    assert_eq!(a.get(0).unwrap(), 10);
    assert_eq!(a.get(5).unwrap(), 60);
    a.set(5, -60).unwrap();
    assert_eq!(a.get(5).unwrap(), -60);

    {
        let mut g = a.lock().unwrap();
        assert_eq!(&g[2..5], &[30, 40, 50]);
        g[1..3].copy_from_slice(&[-2, -3]);
        assert_eq!(g.len(), 6);
    }
    assert_eq!(a.to_vec().unwrap(), [10, -2, -3, 40, 50, -60]);

    match a.get(6) {
        Err(Error::OutOfRange { index: 6, len: 6 }) => {}
        other => panic!("get past the end: {other:?}"),
    }
    match a.get(usize::MAX) {
        Err(Error::OutOfRange {
            index: usize::MAX,
            len: 6,
        }) => {}
        other => panic!("get at usize::MAX: {other:?}"),
    }
    match a.set(11, 1) {
        Err(Error::OutOfRange { index: 11, len: 6 }) => {}
        other => panic!("set past the end: {other:?}"),
    }
    // A failed set changes nothing, and leaves the lock free.
    assert_eq!(a.to_vec().unwrap(), [10, -2, -3, 40, 50, -60]);
    assert!(a.try_lock().is_ok());

    match a.copy_from_slice(&[1, 2, 3]) {
        Err(Error::LengthMismatch {
            found: 6,
            expected: 3,
        }) => {}
        other => panic!("copy_from_slice with a short slice: {other:?}"),
    }
    match a.copy_from_slice(&[0; 7]) {
        Err(Error::LengthMismatch {
            found: 6,
            expected: 7,
        }) => {}
        other => panic!("copy_from_slice with a long slice: {other:?}"),
    }
    assert_eq!(a.to_vec().unwrap(), [10, -2, -3, 40, 50, -60]);
    a.copy_from_slice(&[6, 5, 4, 3, 2, 1]).unwrap();
    assert_eq!(a.to_vec().unwrap(), [6, 5, 4, 3, 2, 1]);

    // Anonymous copy of a slice.
    let b = Array::<f64>::from_slice(&[0.5, -1.5, 2.25]).unwrap();
    assert_eq!(b.len(), 3);
    assert_eq!(b.to_vec().unwrap(), [0.5, -1.5, 2.25]);
    assert!(b.segment().name().is_none());
    match b.set(3, 0.0) {
        Err(Error::OutOfRange { index: 3, len: 3 }) => {}
        other => panic!("anonymous set past the end: {other:?}"),
    }
}

child!(fn child_array_slices(ctx) {
    let a = Array::<i32>::open(&ctx.arg("name"))?;
    if a.len() != 10 {
        return Err(format!("child sees length {}", a.len()).into());
    }
    {
        let mut g = a.lock().map_err(Error::from)?;
        if g[2..5] != [2, 3, 4] {
            return Err(format!("child sees g[2..5] = {:?}", &g[2..5]).into());
        }
        g[1..3].copy_from_slice(&[-1, -2]);
    }
    a.set(9, 99)?;
    match a.set(10, 0) {
        Err(Error::OutOfRange { index: 10, len: 10 }) => {}
        other => return Err(format!("child set past the end: {other:?}").into()),
    }
    ctx.send("done");
});

#[test]
fn array_slices_written_by_child() {
    let name = unique("slices");
    let src: Vec<i32> = (0..10).collect();
    let a = Array::<i32>::create_from_slice(&name, &src).unwrap();
    let child = spawn("child_array_slices")
        .arg("name", &name)
        .timeout(CHILD_LIMIT)
        .start();
    child.expect("done");
    child.join();
    assert_eq!(a.to_vec().unwrap(), [0, -1, -2, 3, 4, 5, 6, 7, 8, 99]);
}

child!(fn child_array_zeros(ctx) {
    let len: usize = ctx.parse("len");
    let a = Array::<u64>::open_len(&ctx.arg("name"), len)?;
    let g = a.lock().map_err(Error::from)?;
    match g.iter().position(|&x| x != 0) {
        Some(i) => return Err(format!("element {i} is {} in the child", g[i]).into()),
        None => ctx.send(&format!("zeros {}", g.len())),
    }
});

#[test]
fn array_created_by_length_is_zeroed() {
    // Several pages, so a partly initialised mapping would show.
    const LEN: usize = 4096;
    let name = unique("zeros");
    let a = Array::<u64>::create(&name, LEN).unwrap();
    assert_eq!(a.len(), LEN);
    assert!(a.to_vec().unwrap().iter().all(|&x| x == 0));
    let child = spawn("child_array_zeros")
        .arg("name", &name)
        .arg("len", LEN)
        .timeout(CHILD_LIMIT)
        .start();
    assert_eq!(recv(&child), format!("zeros {LEN}"));
    child.join();

    let anon = Array::<f64>::anonymous(100).unwrap();
    assert!(anon.to_vec().unwrap().iter().all(|&x| x == 0.0));
    let name2 = unique("zeros2");
    let made = Array::<i16>::open_or_create(&name2, 33).unwrap();
    assert!(made.segment().is_creator());
    assert_eq!(made.to_vec().unwrap(), vec![0i16; 33]);
}

child!(fn child_prefix_sum(ctx) {
    let a = Array::<u64>::open(&ctx.arg("name"))?;
    let mut g = a.lock().map_err(Error::from)?;
    let mut acc = 0u64;
    for x in g.iter_mut() {
        acc += *x;
        *x = acc;
    }
    drop(g);
    ctx.send("done");
});

#[test]
fn array_prefix_sum_in_child() {
    const N: u64 = 1000;
    let name = unique("prefix");
    let a = Array::<u64>::create(&name, N as usize).unwrap();
    let ones_to_n: Vec<u64> = (1..=N).collect();
    a.copy_from_slice(&ones_to_n).unwrap();
    let child = spawn("child_prefix_sum")
        .arg("name", &name)
        .timeout(CHILD_LIMIT)
        .start();
    child.expect("done");
    child.join();
    let got = a.to_vec().unwrap();
    for (i, &x) in got.iter().enumerate() {
        let k = i as u64 + 1;
        assert_eq!(x, k * (k + 1) / 2, "prefix sum at {i}");
    }
}

// ---------------------------------------------------------------------------
// 4. Anonymous segments, shared across threads (no fork: see the report)
// ---------------------------------------------------------------------------

#[test]
fn anonymous_value_and_array_across_threads() {
    const THREADS: usize = 4;
    const EACH: u64 = 1000;
    let v = Value::<u64>::anonymous(0).unwrap();
    let a = Array::<u32>::anonymous(5).unwrap();
    let hits = AtomicValue::<u64>::anonymous(0).unwrap();
    assert!(v.segment().name().is_none());
    let _w = watchdog(
        "anonymous_value_and_array_across_threads",
        Duration::from_secs(30),
    );
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (v, a, hits) = (v.clone(), a.clone(), hits.clone());
            std::thread::spawn(move || {
                for i in 0..EACH {
                    if t % 2 == 0 {
                        v.update(|x| *x += 1).unwrap();
                    } else {
                        let mut g = v.lock().unwrap();
                        let seen = *g;
                        if i % 64 == 0 {
                            std::thread::yield_now();
                        }
                        *g = seen + 1;
                    }
                    let mut g = a.lock().unwrap();
                    for x in g.iter_mut() {
                        *x += 1;
                    }
                    drop(g);
                    hits.fetch_add(1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total = THREADS as u64 * EACH;
    assert_eq!(v.get().unwrap(), total);
    assert_eq!(a.to_vec().unwrap(), vec![total as u32; 5]);
    assert_eq!(hits.load(), total);
}

// ---------------------------------------------------------------------------
// 5. Sharing one lock
// ---------------------------------------------------------------------------

/// Checks that `shared` is the lock named `lock_name`, of kind `kind`.
fn check_link(what: &str, shared: Option<&SharedLock>, kind: &str, lock_name: &str) -> Res {
    let name = match (kind, shared) {
        ("lock", Some(SharedLock::Lock(l))) => l.segment().name(),
        ("rlock", Some(SharedLock::RLock(l))) => l.segment().name(),
        (_, other) => {
            return Err(format!("{what}: expected a shared {kind}, found {other:?}").into())
        }
    };
    if name != Some(lock_name) {
        return Err(format!("{what}: linked to {name:?}, expected {lock_name:?}").into());
    }
    Ok(())
}

child!(fn child_shared_lock_holder(ctx) {
    let lock_name = ctx.arg("lock");
    let v = Value::<i64>::open(&ctx.arg("value"))?;
    let a = Array::<u32>::open(&ctx.arg("array"))?;
    check_link("value", v.shared_lock(), "lock", &lock_name)?;
    check_link("array", a.shared_lock(), "lock", &lock_name)?;
    v.update(|x| *x += 1)?;
    a.set(0, 7)?;
    let gate = AtomicValue::<u32>::open(&ctx.arg("gate"))?;
    let lock = Lock::open(&lock_name)?;
    let held = lock.lock().map_err(Error::from)?;
    // The value and the array are guarded by the lock this thread holds.
    if v.try_lock().is_ok() || a.try_lock().is_ok() {
        return Err("value or array lockable while their shared lock is held".into());
    }
    ctx.send("held");
    let seen = gate_wait(&gate, GATE_LIMIT)?;
    if seen != 1 {
        return Err(format!("gate opened with {seen}").into());
    }
    drop(held);
    ctx.send("released");
});

#[test]
fn value_and_array_share_a_named_lock_across_processes() {
    let (lname, vname, aname, gname) =
        (unique("lock"), unique("val"), unique("arr"), unique("gate"));
    let lock = Lock::create(&lname).unwrap();
    let v = Value::create_with_lock(&vname, 5i64, &lock, &Options::new()).unwrap();
    let a = Array::<u32>::create_with_lock(&aname, 4, &lock, &Options::new()).unwrap();
    let gate = AtomicValue::<u32>::create(&gname, 0).unwrap();
    check_link("parent value", v.shared_lock(), "lock", &lname).unwrap();
    check_link("parent array", a.shared_lock(), "lock", &lname).unwrap();

    let child = spawn("child_shared_lock_holder")
        .arg("lock", &lname)
        .arg("value", &vname)
        .arg("array", &aname)
        .arg("gate", &gname)
        .timeout(CHILD_LIMIT)
        .start();
    let _w = watchdog(
        "value_and_array_share_a_named_lock_across_processes",
        Duration::from_secs(40),
    );
    child.expect("held");
    // The child holds the Lock itself, not the value's or the array's.
    assert!(
        would_block(v.try_lock()),
        "value lockable while the child holds the shared lock"
    );
    assert!(
        would_block(a.try_lock()),
        "array lockable while the child holds the shared lock"
    );
    assert!(
        would_block(lock.try_lock()),
        "lock free while the child holds it"
    );
    let t0 = Instant::now();
    let r = v.lock_timeout(Duration::from_millis(50));
    let waited = t0.elapsed();
    assert!(
        matches!(&r, Err(e) if e.is_timeout()),
        "lock_timeout: {r:?}"
    );
    drop(r);
    assert!(
        waited >= Duration::from_millis(50),
        "timed out early: {waited:?}"
    );
    assert!(waited < Duration::from_millis(50) + Duration::from_secs(2));

    gate_open(&gate);
    child.expect("released");
    child.join();
    assert!(v.try_lock().is_ok());
    assert_eq!(v.get().unwrap(), 6);
    assert_eq!(a.to_vec().unwrap(), [7, 0, 0, 0]);
}

#[test]
fn named_object_cannot_share_an_anonymous_lock() {
    let anon = Lock::anonymous().unwrap();
    let vname = unique("anonlockv");
    let aname = unique("anonlocka");
    match Value::create_with_lock(&vname, 1u32, &anon, &Options::new()) {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("named value with an anonymous lock: {other:?}"),
    }
    match Array::<u32>::create_with_lock(&aname, 3, &anon, &Options::new()) {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("named array with an anonymous lock: {other:?}"),
    }
    // Nothing was left under either name.
    assert!(matches!(Value::<u32>::open(&vname), Err(Error::NotFound)));
    assert!(matches!(Array::<u32>::open(&aname), Err(Error::NotFound)));

    // An anonymous value may share an anonymous lock.
    let v = Value::anonymous_with_lock(1u32, &anon).unwrap();
    let held = anon.lock().unwrap();
    let other = v.clone();
    let blocked = std::thread::spawn(move || would_block(other.try_lock()))
        .join()
        .unwrap();
    assert!(
        blocked,
        "anonymous value lockable while its shared lock is held"
    );
    drop(held);
    v.update(|x| *x += 1).unwrap();
    assert_eq!(v.get().unwrap(), 2);
}

child!(fn child_open_linked(ctx) {
    let v = Value::<u64>::open(&ctx.arg("value"))?;
    check_link("child value", v.shared_lock(), &ctx.arg("kind"), &ctx.arg("lock"))?;
    v.update(|x| *x += 10)?;
    ctx.send("done");
});

#[test]
fn value_sharing_an_rlock_refuses_a_nested_lock() {
    let (lname, vname, aname) = (unique("rlock"), unique("rval"), unique("rarr"));
    let rl = RLock::create(&lname).unwrap();
    let v = Value::create_with_lock(&vname, 1u64, &rl, &Options::new()).unwrap();
    let a = Array::<u64>::create_with_lock(&aname, 3, &rl, &Options::new()).unwrap();
    let _w = watchdog(
        "value_sharing_an_rlock_refuses_a_nested_lock",
        Duration::from_secs(30),
    );

    {
        let held = rl.lock().unwrap();
        assert!(is_deadlock(v.lock()), "value.lock() under its own RLock");
        assert!(
            is_deadlock(v.try_lock()),
            "value.try_lock() under its own RLock"
        );
        assert!(is_deadlock(a.lock()), "array.lock() under its own RLock");
        assert!(matches!(v.get(), Err(Error::Deadlock)));
        assert!(matches!(a.set(0, 1), Err(Error::Deadlock)));
        // The refused attempts did not release our hold...
        let (rl2, v2) = (rl.clone(), v.clone());
        let (lock_free, value_free) =
            std::thread::spawn(move || (!would_block(rl2.try_lock()), !would_block(v2.try_lock())))
                .join()
                .unwrap();
        assert!(
            !lock_free && !value_free,
            "RLock released by a refused nested lock"
        );
        drop(held);
    }
    // ...nor left an extra level held: another thread can take it now.
    let rl2 = rl.clone();
    let free = std::thread::spawn(move || rl2.try_lock().is_ok())
        .join()
        .unwrap();
    assert!(free, "RLock still held after the guard dropped");

    *v.lock().unwrap() += 1;
    assert_eq!(v.get().unwrap(), 2);
    assert_eq!(a.to_vec().unwrap(), [0, 0, 0]);

    // Another process finds the RLock through the link.
    let child = spawn("child_open_linked")
        .arg("value", &vname)
        .arg("kind", "rlock")
        .arg("lock", &lname)
        .timeout(CHILD_LIMIT)
        .start();
    child.expect("done");
    child.join();
    assert_eq!(v.get().unwrap(), 12);
}

// ---------------------------------------------------------------------------
// 6. AtomicValue
// ---------------------------------------------------------------------------

child!(fn child_atomic_add(ctx) {
    let c = AtomicValue::<u64>::open(&ctx.arg("name"))?;
    let n: u64 = ctx.parse("n");
    wait_gate(ctx, &ctx.arg("gate"))?;
    let mut last = None;
    for _ in 0..n {
        let old = c.fetch_add(1);
        if last.is_some_and(|l| old <= l) {
            return Err(format!("fetch_add went backwards: {old} after {last:?}").into());
        }
        last = Some(old);
    }
    ctx.send("done");
});

#[test]
fn atomic_value_processes_fetch_add() {
    const PROCS: u64 = 4;
    const EACH: u64 = 1000;
    let (name, gate_name) = (unique("atomic"), unique("gate"));
    let c = AtomicValue::<u64>::create(&name, 0).unwrap();
    let gate = AtomicValue::<u32>::create(&gate_name, 0).unwrap();
    let kids: Vec<_> = (0..PROCS)
        .map(|_| {
            spawn("child_atomic_add")
                .arg("name", &name)
                .arg("gate", &gate_name)
                .arg("n", EACH)
                .timeout(CHILD_LIMIT)
                .start()
        })
        .collect();
    for k in &kids {
        k.expect("ready");
    }
    gate_open(&gate);
    for k in &kids {
        k.expect("done");
    }
    join_all(kids);
    assert_eq!(c.load(), PROCS * EACH);
}

child!(fn child_atomic_waiter(ctx) {
    let w = AtomicValue::<u32>::open(&ctx.arg("name"))?;
    let t0 = Instant::now();
    ctx.send("waiting");
    let got = w.wait_while(0, Some(GATE_LIMIT))?;
    ctx.send(&format!("saw {got} after {}", t0.elapsed().as_millis()));
});

#[test]
fn atomic_wait_while_woken_by_parent() {
    const SLEEP_MS: u128 = 50;
    let name = unique("waitw");
    let w = AtomicValue::<u32>::create(&name, 0).unwrap();
    let child = spawn("child_atomic_waiter")
        .arg("name", &name)
        .timeout(CHILD_LIMIT)
        .start();
    child.expect("waiting");
    std::thread::sleep(Duration::from_millis(SLEEP_MS as u64));
    w.store(7);
    w.wake_all().unwrap();
    let msg = recv(&child);
    child.join();
    let rest = msg
        .strip_prefix("saw 7 after ")
        .unwrap_or_else(|| panic!("child said {msg:?}"));
    let ms: u128 = rest.parse().unwrap();
    // The child sent "waiting" before the parent started its sleep.
    assert!(ms >= SLEEP_MS, "child woke after {ms} ms, before the store");
}

#[test]
fn atomic_wait_while_times_out_not_early() {
    const T: Duration = Duration::from_millis(150);
    let name = unique("waitto");
    let named = AtomicValue::<i32>::create(&name, -3).unwrap();
    let anon = AtomicValue::<u32>::anonymous(3).unwrap();
    let _w = watchdog(
        "atomic_wait_while_times_out_not_early",
        Duration::from_secs(20),
    );

    let t0 = Instant::now();
    let r = named.wait_while(-3, Some(T));
    let took = t0.elapsed();
    assert!(matches!(r, Err(Error::Timeout)), "named i32: {r:?}");
    assert!(took >= T, "named i32 timed out after {took:?} < {T:?}");
    assert!(took < T + Duration::from_secs(2), "named i32 took {took:?}");

    let t0 = Instant::now();
    let r = anon.wait_while(3, Some(T));
    let took = t0.elapsed();
    assert!(matches!(r, Err(Error::Timeout)), "anonymous u32: {r:?}");
    assert!(took >= T, "anonymous u32 timed out after {took:?} < {T:?}");
    assert!(
        took < T + Duration::from_secs(2),
        "anonymous u32 took {took:?}"
    );

    // A value that already differs returns at once, timeout or not.
    assert_eq!(named.wait_while(0, Some(T)).unwrap(), -3);
    assert_eq!(anon.wait_while(4, None).unwrap(), 3);
}

// ---------------------------------------------------------------------------
// 7. Opening as the wrong type, kind or length
// ---------------------------------------------------------------------------

fn tag<T: Plain>() -> u64 {
    T::TYPE_TAG
}

/// Every mismatch check on a `Value<i32>` holding 42 under `vname` and an
/// `Array<u16>` of length 8 under `aname`; used by the parent and a child.
fn check_mismatches(vname: &str, aname: &str) -> Res {
    let i32_fp = (4, 4, tag::<i32>());
    match Value::<u32>::open(vname) {
        Err(Error::LayoutMismatch { found, expected })
            if found == i32_fp && expected == (4, 4, tag::<u32>()) => {}
        other => return Err(format!("Value<i32> opened as Value<u32>: {other:?}").into()),
    }
    match Value::<i64>::open(vname) {
        Err(Error::LayoutMismatch { found, expected })
            if found == i32_fp && expected == (8, 8, tag::<i64>()) => {}
        other => return Err(format!("Value<i32> opened as Value<i64>: {other:?}").into()),
    }
    match Value::<u16>::open(aname) {
        Err(Error::KindMismatch { found, expected })
            if found == Kind::Array.code() && expected == Kind::Value.code() => {}
        other => return Err(format!("Array opened as a Value: {other:?}").into()),
    }
    match Array::<i32>::open(vname) {
        Err(Error::KindMismatch { found, expected })
            if found == Kind::Value.code() && expected == Kind::Array.code() => {}
        other => return Err(format!("Value opened as an Array: {other:?}").into()),
    }
    match AtomicValue::<i32>::open(vname) {
        Err(Error::KindMismatch { found, expected })
            if found == Kind::Value.code() && expected == Kind::AtomicValue.code() => {}
        other => return Err(format!("Value opened as an AtomicValue: {other:?}").into()),
    }
    match Array::<u16>::open_len(aname, 9) {
        Err(Error::LengthMismatch {
            found: 8,
            expected: 9,
        }) => {}
        other => return Err(format!("open_len(9) on a length-8 array: {other:?}").into()),
    }
    match Array::<u16>::open_or_create(aname, 16) {
        Err(Error::LengthMismatch {
            found: 8,
            expected: 16,
        }) => {}
        other => return Err(format!("open_or_create(16) on a length-8 array: {other:?}").into()),
    }
    // The right type, kind and length still open, and see the data.
    if Value::<i32>::open(vname)?.get()? != 42 {
        return Err("Value<i32> no longer reads 42".into());
    }
    let same = Array::<u16>::open_or_create(aname, 8)?;
    if same.segment().is_creator() {
        return Err("open_or_create created an array that exists".into());
    }
    if same.to_vec()? != [1, 2, 3, 4, 5, 6, 7, 8] || Array::<u16>::open_len(aname, 8)?.get(7)? != 8
    {
        return Err("array data changed".into());
    }
    Ok(())
}

child!(fn child_mismatches(ctx) {
    check_mismatches(&ctx.arg("value"), &ctx.arg("array"))?;
    ctx.send("checked");
});

#[test]
fn opening_with_wrong_type_kind_or_length() {
    let (vname, aname) = (unique("mmval"), unique("mmarr"));
    let v = Value::<i32>::create(&vname, 42).unwrap();
    let a = Array::<u16>::create_from_slice(&aname, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    check_mismatches(&vname, &aname).unwrap();
    let child = spawn("child_mismatches")
        .arg("value", &vname)
        .arg("array", &aname)
        .timeout(CHILD_LIMIT)
        .start();
    child.expect("checked");
    child.join();
    // The failed opens changed nothing for the creator.
    assert_eq!(v.get().unwrap(), 42);
    assert_eq!(a.len(), 8);
    assert_eq!(a.get(0).unwrap(), 1);
}
