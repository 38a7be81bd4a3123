//! W8: a shared dict, 8-byte keys (1000 of them), in operations per second:
//! gets and inserts (overwrites) of 16-byte values by one process, gets by
//! two processes (threads for the in-process maps). Printed besides: 1 KiB
//! values, and a 90 % read mix.
//!
//! Contenders: shmprim's `SharedMap`; `Mutex<HashMap>` and `dashmap` in one
//! process (what a threaded program would use: the bound for "as fast as
//! in-process"); Python's `Manager().dict()` and `UltraDict` (skipped when
//! not installed) through `python/peers_dict.py`.

use std::collections::HashMap;
use std::hint::black_box;
use std::process::Command;
use std::sync::Mutex;

use dashmap::DashMap;

use crate::common::median;
use crate::locks_bench::{two_processes, two_threads, SharedMap as Mapping, StartLine};
use crate::python::Python;
use crate::{rounds, Contender, Plan, Results};

const KEYS: u64 = 1000;
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/peers_dict.py");

/// What one timed loop does.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Get,
    Set,
    /// 9 gets in 10.
    Mix,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Get => "get",
            Mode::Set => "set",
            Mode::Mix => "mix",
        }
    }
    fn reads(self, i: u64) -> bool {
        self == Mode::Get || (self == Mode::Mix && i % 10 != 0)
    }
}

/// ops/s of `n` operations timed by `f`'s ns per op.
fn per_sec(ns_per_op: f64) -> f64 {
    1e9 / ns_per_op
}

fn time_ops(n: u64, mut f: impl FnMut(u64)) -> f64 {
    let t = std::time::Instant::now();
    for i in 0..n {
        f(i);
    }
    per_sec(t.elapsed().as_nanos() as f64 / n as f64)
}

/// One contender's value type, generic over 16 B and 1 KiB values.
fn shm_loop<const V: usize>(m: &shmprim::SharedMap, mode: Mode, n: u64) -> f64 {
    let v = [7u8; V];
    time_ops(n, |i| {
        let k = i % KEYS;
        if mode.reads(i) {
            black_box(m.get_as::<u64, [u8; V]>(&k).unwrap());
        } else {
            m.insert_as(&k, &v).unwrap();
        }
    })
}

fn mutex_loop<const V: usize>(m: &Mutex<HashMap<u64, [u8; V]>>, mode: Mode, n: u64) -> f64 {
    let v = [7u8; V];
    time_ops(n, |i| {
        let k = i % KEYS;
        if mode.reads(i) {
            black_box(m.lock().unwrap().get(&k).copied());
        } else {
            m.lock().unwrap().insert(k, v);
        }
    })
}

fn dash_loop<const V: usize>(m: &DashMap<u64, [u8; V]>, mode: Mode, n: u64) -> f64 {
    let v = [7u8; V];
    time_ops(n, |i| {
        let k = i % KEYS;
        if mode.reads(i) {
            black_box(m.get(&k).map(|r| *r));
        } else {
            m.insert(k, v);
        }
    })
}

/// A Python contender: ops/s, or `None` when the package is absent.
fn python(system: &str, mode: Mode, n: u64, procs: u32, vsize: usize) -> Option<f64> {
    let out = Command::new("python3")
        .arg(SCRIPT)
        .args([system, mode.name()])
        .args([n.to_string(), procs.to_string(), vsize.to_string()])
        .output()
        .ok()?;
    if out.status.code() == Some(3) {
        return None;
    }
    assert!(
        out.status.success(),
        "peers_dict.py {system}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn ultradict_present() -> bool {
    Command::new("python3")
        .args(["-c", "import UltraDict"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The 16-byte and 1 KiB contenders of one mode, 1 process.
struct Maps<const V: usize> {
    shm: shmprim::SharedMap,
    mutex: Mutex<HashMap<u64, [u8; V]>>,
    dash: DashMap<u64, [u8; V]>,
}

impl<const V: usize> Maps<V> {
    fn new() -> Self {
        let shm = shmprim::SharedMap::anonymous().expect("SharedMap::anonymous");
        let mutex = Mutex::new(HashMap::new());
        let dash = DashMap::new();
        for k in 0..KEYS {
            shm.insert_as(&k, &[1u8; V]).unwrap();
            mutex.lock().unwrap().insert(k, [1u8; V]);
            dash.insert(k, [1u8; V]);
        }
        Maps { shm, mutex, dash }
    }

    fn one(&self, r: usize, mode: Mode, n: u64, py: Option<(u64, bool)>) -> Vec<(String, f64)> {
        let mut cs: Vec<Contender<'_>> = vec![
            (
                "shmprim".into(),
                Box::new(move || shm_loop::<V>(&self.shm, mode, n)),
            ),
            (
                "mutex-hashmap".into(),
                Box::new(move || mutex_loop::<V>(&self.mutex, mode, n)),
            ),
            (
                "dashmap".into(),
                Box::new(move || dash_loop::<V>(&self.dash, mode, n)),
            ),
        ];
        if let Some((slow, ultra)) = py {
            cs.push((
                "python-manager".into(),
                Box::new(move || python("manager", mode, slow, 1, V).unwrap_or(f64::NAN)),
            ));
            if ultra {
                cs.push((
                    "python-ultradict".into(),
                    Box::new(move || {
                        python("ultradict", mode, slow * 10, 1, V).unwrap_or(f64::NAN)
                    }),
                ));
            }
        }
        rounds(r, cs)
            .into_iter()
            .map(|(name, v)| (name, median(v)))
            .collect()
    }
}

pub fn run(plan: &Plan, py: &Python, res: &mut Results) {
    let r = plan.rounds;
    let (n, slow) = (plan.dict_ops, plan.dict_ops_slow);
    let ultra = py.ok() && ultradict_present();
    if !ultra {
        res.absent("python-ultradict (UltraDict is not installed)");
    }
    let pyarg = py.ok().then_some((slow, ultra));
    println!("\nW8: shared dict, 8-byte keys (ops/s, higher is better)");
    let small = Maps::<16>::new();
    for (mode, id) in [(Mode::Get, "W8-dict-get"), (Mode::Set, "W8-dict-insert")] {
        let figs = small.one(r, mode, n, pyarg);
        report(id, &figs, res);
    }
    let figs = small.one(r, Mode::Mix, n, pyarg);
    print_only("90 % get, 16 B", &figs);
    let big = Maps::<1024>::new();
    for mode in [Mode::Get, Mode::Set] {
        let figs = big.one(r, mode, n / 4, None);
        print_only(&format!("{}, 1 KiB values", mode.name()), &figs);
    }

    // Two readers: processes for shmprim (and Python), threads in-process.
    let per = n;
    let line = Mapping::new(|_: *mut StartLine| {});
    let tline = Mapping::new(|_: *mut StartLine| {});
    let shm = &small.shm;
    let mut two: Vec<Contender<'_>> = vec![
        (
            "shmprim".into(),
            Box::new(|| {
                per_sec(two_processes(&line, per, move || {
                    for i in 0..per {
                        black_box(shm.get_as::<u64, [u8; 16]>(&(i % KEYS)).unwrap());
                    }
                }))
            }),
        ),
        (
            "mutex-hashmap".into(),
            Box::new(|| {
                // SAFETY: the start line's mapping lives for this function.
                let l = unsafe { &*tline.get() };
                per_sec(two_threads(l, per, || {
                    for i in 0..per {
                        black_box(small.mutex.lock().unwrap().get(&(i % KEYS)).copied());
                    }
                }))
            }),
        ),
        (
            "dashmap".into(),
            Box::new(|| {
                // SAFETY: as above.
                let l = unsafe { &*tline.get() };
                per_sec(two_threads(l, per, || {
                    for i in 0..per {
                        black_box(small.dash.get(&(i % KEYS)).map(|r| *r));
                    }
                }))
            }),
        ),
    ];
    if py.ok() {
        two.push((
            "python-manager".into(),
            Box::new(move || python("manager", Mode::Get, slow, 2, 16).unwrap_or(f64::NAN)),
        ));
    }
    let figs: Vec<(String, f64)> = rounds(plan.rounds, two)
        .into_iter()
        .map(|(name, v)| (name, median(v)))
        .collect();
    report("W8-dict-get-2proc", &figs, res);

    let fig = |id: &str, sys: &str| {
        res.recs
            .iter()
            .find(|r| r.workload == id && r.system == sys)
            .map(|r| r.value)
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".into(),
    };
    println!("  targets:");
    for id in ["W8-dict-get", "W8-dict-insert"] {
        println!(
            "    {id}: shmprim / python-manager = {} (target >= 100); mutex-hashmap / shmprim = {} (target <= 2)",
            ratio(fig(id, "shmprim"), fig(id, "python-manager")),
            ratio(fig(id, "mutex-hashmap"), fig(id, "shmprim")),
        );
    }
    println!(
        "    2 readers / 1 reader (shmprim) = {} (target >= 1.6)",
        ratio(
            fig("W8-dict-get-2proc", "shmprim"),
            fig("W8-dict-get", "shmprim")
        )
    );
}

fn report(id: &'static str, figs: &[(String, f64)], res: &mut Results) {
    for (name, v) in figs {
        println!("  {id:<18} {name:<18} {v:>14.0}");
        if v.is_finite() {
            res.push(id, name, *v);
        }
    }
}

fn print_only(what: &str, figs: &[(String, f64)]) {
    for (name, v) in figs {
        println!("  ({what}) {name:<18} {v:>14.0}");
    }
}
