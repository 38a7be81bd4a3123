//! W4: a `u64` incremented under a lock, by two processes contending
//! (threads for `std::sync::Mutex`) and by one, in ns per increment. The
//! drivers and the plain robust pthread mutex are `benches/locks.rs`'s.

use std::hint::black_box;
use std::sync::Mutex;

use raw_sync::locks::{LockImpl, LockInit};
use shmprim::Lock;

use crate::common::median;
use crate::locks_bench::{
    pthread_counter, pthread_increment, pthread_value, time_loop, two_processes, two_threads,
    PthreadCounter, SharedMap, StartLine,
};
use crate::python::Python;
use crate::{rounds, Contender, Plan, Results};

/// A u64 after a `shared_memory` mapping's `raw_sync` mutex.
struct RawSyncCounter {
    // Dropped last: unmaps (and, as owner, unlinks) the segment.
    lock: Box<dyn LockImpl>,
    value: *mut u64,
    _shm: shared_memory::Shmem,
}

impl RawSyncCounter {
    fn new() -> Self {
        let shm = shared_memory::ShmemConf::new()
            .size(4096)
            .create()
            .expect("shared_memory segment");
        let base = shm.as_ptr();
        // SAFETY: the segment is 4096 fresh bytes; the mutex takes the
        // first `size_of` bytes (at most a few dozen) and the counter the
        // 8-aligned word at offset 256, inside the segment.
        let (lock, value) = unsafe {
            let value = base.add(256);
            let (lock, _) = raw_sync::locks::Mutex::new(base, value).expect("raw_sync mutex");
            value.cast::<u64>().write(0);
            (lock, value.cast::<u64>())
        };
        RawSyncCounter {
            lock,
            value,
            _shm: shm,
        }
    }

    #[inline(always)]
    fn increment(&self) {
        let _g = self.lock.lock().expect("raw_sync lock");
        // SAFETY: the counter is only touched while the mutex is held.
        unsafe { self.value.write(black_box(self.value.read()) + 1) };
    }

    fn value(&self) -> u64 {
        // SAFETY: read between runs, when no other process runs.
        unsafe { self.value.read() }
    }
}

/// shmprim's robust `Lock` around a plain u64 in a shared mapping.
struct ShmCounter {
    lock: Lock,
    value: SharedMap<u64>,
}

impl ShmCounter {
    fn new() -> Self {
        ShmCounter {
            lock: Lock::anonymous().expect("Lock::anonymous"),
            // SAFETY: `p` is the fresh, aligned mapping for one u64.
            value: SharedMap::new(|p: *mut u64| unsafe { p.write(0) }),
        }
    }

    #[inline(always)]
    fn increment(&self) {
        let _g = self.lock.lock().expect("Lock::lock");
        let p = self.value.get();
        // SAFETY: the u64 is only touched while the lock is held.
        unsafe { p.write(black_box(p.read()) + 1) };
    }

    fn value(&self) -> u64 {
        // SAFETY: read between runs, when no other process runs.
        unsafe { self.value.get().read() }
    }
}

pub fn run(plan: &Plan, py: &Python, res: &mut Results) {
    println!("\nW4: u64 += 1 under a lock (ns/op): two processes, one process");
    let per = plan.lock_per_worker;
    let line = SharedMap::new(|_: *mut StartLine| {});
    let shm = ShmCounter::new();
    let pth = pthread_counter();
    let rs = RawSyncCounter::new();
    let std_mutex = Mutex::new(0u64);
    let std_line = SharedMap::new(|_: *mut StartLine| {});
    let pth_ptr = pth.get() as usize;
    let mut two: Vec<Contender<'_>> = vec![
        (
            "shmprim".into(),
            Box::new(|| {
                let c = &shm;
                two_processes(&line, per, move || (0..per).for_each(|_| c.increment()))
            }),
        ),
        (
            "pthread-robust".into(),
            Box::new(|| {
                two_processes(&line, per, move || {
                    (0..per).for_each(|_| pthread_increment(pth_ptr as *mut PthreadCounter))
                })
            }),
        ),
        (
            "shared_memory+raw_sync".into(),
            Box::new(|| {
                let c = &rs;
                two_processes(&line, per, move || (0..per).for_each(|_| c.increment()))
            }),
        ),
        (
            "std-mutex".into(),
            Box::new(|| {
                // SAFETY: the start line's mapping lives for this function.
                let l = unsafe { &*std_line.get() };
                two_threads(l, per, || {
                    for _ in 0..per {
                        *black_box(&std_mutex).lock().unwrap() += 1;
                    }
                })
            }),
        ),
    ];
    if py.ok() {
        let n = per / 20;
        two.push(("python-mp".into(), Box::new(move || py.w4(n, 2))));
    }
    for (name, v) in rounds(plan.rounds, std::mem::take(&mut two)) {
        let m = median(v);
        println!("  2 proc  {name:<24} {m:>10.1}");
        res.push("W4-2proc", &name, m);
    }
    let want = 2 * per * plan.rounds as u64;
    assert_eq!(shm.value(), want, "shmprim Lock lost increments");
    assert_eq!(pthread_value(&pth), want, "pthread mutex lost increments");
    assert_eq!(rs.value(), want, "raw_sync mutex lost increments");
    assert_eq!(
        *std_mutex.lock().unwrap(),
        want,
        "std Mutex lost increments"
    );

    let ops = plan.lock_ops;
    let mut one: Vec<Contender<'_>> = vec![
        (
            "shmprim".into(),
            Box::new(|| time_loop(ops, || shm.increment())),
        ),
        (
            "pthread-robust".into(),
            Box::new(|| time_loop(ops, || pthread_increment(black_box(pth.get())))),
        ),
        (
            "shared_memory+raw_sync".into(),
            Box::new(|| time_loop(ops, || rs.increment())),
        ),
        (
            "std-mutex".into(),
            Box::new(|| {
                time_loop(ops, || {
                    *black_box(&std_mutex).lock().unwrap() += 1;
                })
            }),
        ),
    ];
    if py.ok() {
        let n = ops / 50;
        one.push(("python-mp".into(), Box::new(move || py.w4(n, 1))));
    }
    for (name, v) in rounds(plan.rounds, one) {
        let m = median(v);
        println!("  1 proc  {name:<24} {m:>10.1}");
        res.push("W4-1proc", &name, m);
    }
}
