//! The outputs: `peers.json`, the markdown table (printed and written as
//! `peers.md`), the plots, and with `--publish` the copies in
//! `BENCHMARKS.md` (between markers) and `benches/results/`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{plot, Results};

/// The repository root (this crate lives in `benches/peers`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub const BEGIN: &str =
    "<!-- peers:begin (written by `cargo bench --bench peers -- --publish`) -->";
pub const END: &str = "<!-- peers:end -->";

/// How many times better shmprim is than `v` (above 1: shmprim leads).
fn lead(better: &str, shm: f64, v: f64) -> f64 {
    if better == "lower" {
        v / shm
    } else {
        shm / v
    }
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "msg/s" => format!("{:.2} M", v / 1e6),
        "GB/s" => format!("{v:.2}"),
        _ if v >= 1000.0 => format!("{v:.0}"),
        _ => format!("{v:.1}"),
    }
}

/// The results table: each system's value, its ratio to shmprim's
/// (value / shmprim's) and shmprim's lead (how many times better shmprim is).
pub fn table(res: &Results) -> String {
    let mut s = String::new();
    s.push_str(
        "| workload | system | value | unit | better | ratio to shmprim | shmprim's lead |\n",
    );
    s.push_str("|---|---|---:|---|---|---:|---:|\n");
    let mut workloads: Vec<&str> = Vec::new();
    for r in &res.recs {
        if !workloads.contains(&r.workload) {
            workloads.push(r.workload);
        }
    }
    for w in workloads {
        let rows: Vec<_> = res.recs.iter().filter(|r| r.workload == w).collect();
        let shm = rows.iter().find(|r| r.system == "shmprim").map(|r| r.value);
        for r in rows {
            let (ratio, lead) = match shm {
                Some(v) if v > 0.0 && r.value > 0.0 => (
                    format!("{:.2}", r.value / v),
                    format!("{:.2}x", lead(r.better, v, r.value)),
                ),
                _ => ("-".into(), "-".into()),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.workload,
                r.system,
                fmt_value(r.value, r.unit),
                r.unit,
                r.better,
                ratio,
                lead
            );
        }
    }
    s
}

/// The targets: `(workload, peer, relation, bound, text)`. The
/// measured figure is shmprim's value over the peer's; "<=" targets are on
/// lower-is-better figures, ">=" ones on higher-is-better figures, except
/// the "x faster" ones, which are the peer's value over shmprim's.
const TARGETS: [(&str, &str, &str, f64, &str); 34] = [
    (
        "W1",
        "hw-reference",
        "<=",
        1.5,
        "W1: at most 1.5x the hardware reference",
    ),
    (
        "W1",
        "iceoryx2",
        "<=",
        1.0 / 3.0,
        "W1: at most 1/3 of iceoryx2",
    ),
    (
        "W1",
        "unix-socket",
        "faster",
        100.0,
        "W1: at least 100x faster than the Unix socket",
    ),
    (
        "W1",
        "python-mp",
        "faster",
        100.0,
        "W1: at least 100x faster than Python",
    ),
    (
        "W1-p99",
        "hw-reference",
        "<=",
        2.0,
        "W1 p99: at most 2x the hardware reference's p99",
    ),
    (
        "W1-p99",
        "iceoryx2",
        "<=",
        1.0,
        "W1 p99: at most iceoryx2's p99",
    ),
    (
        "W1-p999",
        "hw-reference",
        "<=",
        3.0,
        "W1 p99.9: at most 3x the hardware reference's p99.9",
    ),
    (
        "W1-p999",
        "iceoryx2",
        "<=",
        1.0,
        "W1 p99.9: at most iceoryx2's p99.9",
    ),
    (
        "W2",
        "hw-reference",
        ">=",
        0.6,
        "W2 (one message at a time): at least 0.6x the spin-ring reference",
    ),
    (
        "W2-batch",
        "hw-reference",
        ">=",
        0.8,
        "W2 (batch API): at least 0.8x the spin-ring reference",
    ),
    (
        "W2",
        "unix-socket",
        ">=",
        15.0,
        "W2: at least 15x the Unix socket",
    ),
    (
        "W3-copy",
        "hw-reference",
        ">=",
        0.9,
        "W3 (copy): at least 0.9x the reference",
    ),
    (
        "W3-loan",
        "iceoryx2",
        ">=",
        1.0,
        "W3 (zero copy): at least 1.0x iceoryx2",
    ),
    (
        "W4-1proc",
        "std-mutex",
        "<=",
        1.5,
        "W4 uncontended: at most 1.5x std::sync::Mutex",
    ),
    (
        "W4-2proc",
        "pthread-robust",
        "<=",
        1.0,
        "W4 two processes: at most 1.0x the robust pthread mutex",
    ),
    (
        "W5",
        "crossbeam-arrayqueue",
        ">=",
        1.0,
        "W5: at least 1.0x ArrayQueue between threads",
    ),
    (
        "W5-1p1c",
        "crossbeam-arrayqueue",
        ">=",
        1.0,
        "W5 1P1C: at least 1.0x ArrayQueue",
    ),
    (
        "W5-1p1c",
        "crossbeam-channel",
        ">=",
        1.0,
        "W5 1P1C: at least 1.0x crossbeam-channel",
    ),
    (
        "W5-4p4c",
        "crossbeam-arrayqueue",
        ">=",
        1.0,
        "W5 4P4C: at least 1.0x ArrayQueue",
    ),
    (
        "W5-4p4c",
        "crossbeam-channel",
        ">=",
        1.0,
        "W5 4P4C: at least 1.0x crossbeam-channel",
    ),
    (
        "W5-8p8c",
        "crossbeam-arrayqueue",
        ">=",
        1.0,
        "W5 8P8C: at least 1.0x ArrayQueue",
    ),
    (
        "W5-8p8c",
        "crossbeam-channel",
        ">=",
        1.0,
        "W5 8P8C: at least 1.0x crossbeam-channel",
    ),
    (
        "W6-start-fork",
        "command-true",
        "<=",
        1.2,
        "W6 fork start: at most 1.2x Command running /bin/true",
    ),
    (
        "W6-start-spawn",
        "procspawn",
        "<=",
        1.0,
        "W6 spawn start: at most 1.0x procspawn",
    ),
    (
        "W6-start-fork",
        "python-mp",
        "faster",
        4.0,
        "W6 fork start: at least 4x faster than Python's fork",
    ),
    (
        "W6-start-spawn",
        "python-mp",
        "faster",
        4.0,
        "W6 spawn start: at least 4x faster than Python's spawn",
    ),
    (
        "W6-start-forkserver",
        "python-mp",
        "faster",
        4.0,
        "W6 forkserver start: at least 4x faster than Python's forkserver",
    ),
    (
        "W6-pool-apply",
        "python-mp",
        "faster",
        20.0,
        "W6 pool apply: at least 20x faster than Python's Pool",
    ),
    (
        "W6-pool-map1",
        "python-mp",
        ">=",
        15.0,
        "W6 pool map, chunksize 1: at least 15x Python's Pool",
    ),
    (
        "W6-pool-map1",
        "procspawn",
        ">=",
        30.0,
        "W6 pool map, chunksize 1: at least 30x procspawn's pool",
    ),
    (
        "W6-pool-map1",
        "rayon",
        ">=",
        0.05,
        "W6 pool map, chunksize 1: within 20x of rayon's per-task cost",
    ),
    (
        "W6-pool-map",
        "rayon",
        ">=",
        0.5,
        "W6 pool map, default chunksize: within 2x of rayon",
    ),
    (
        "W7-frames",
        "sequential",
        ">=",
        1.7,
        "W7 frames, zero-copy pool: at least 1.7x sequential",
    ),
    (
        "W7-frames",
        "rayon",
        ">=",
        0.9,
        "W7 frames, zero-copy pool: at least 0.9x rayon's speed-up",
    ),
];

/// The targets, each with the ratio measured in this run.
pub fn targets(res: &Results) -> String {
    let get = |w: &str, sys: &str| {
        res.recs
            .iter()
            .find(|r| r.workload == w && r.system == sys)
            .map(|r| r.value)
    };
    let mut s = String::from("| target | measured | met |\n|---|---:|---|\n");
    let rows: Vec<(String, Option<f64>, bool)> = TARGETS
        .iter()
        .map(|&(w, peer, rel, bound, text)| {
            let (shm, other) = (get(w, "shmprim"), get(w, peer));
            let (ratio, met) = match (shm, other) {
                (Some(a), Some(b)) => match rel {
                    "faster" => (b / a, b / a >= bound),
                    "<=" => (a / b, a / b <= bound),
                    _ => (a / b, a / b >= bound),
                },
                _ => (f64::NAN, false),
            };
            (text.to_string(), shm.and(other).map(|_| ratio), met)
        })
        .collect();
    for (text, ratio, met) in rows {
        let m = ratio.map_or("-".into(), |r| format!("{r:.2}x"));
        let ok = match (ratio, met) {
            (None, _) => "not measured",
            (_, true) => "yes",
            _ => "**no**",
        };
        let _ = writeln!(s, "| {text} | {m} | {ok} |");
    }
    s
}

fn json(res: &Results) -> String {
    let v: Vec<_> = res
        .recs
        .iter()
        .map(|r| {
            serde_json::json!({
                "workload": r.workload,
                "system": r.system,
                "value": r.value,
                "unit": r.unit,
                "better": r.better,
            })
        })
        .collect();
    serde_json::to_string_pretty(&v).expect("json")
}

/// The published section: machine, command, table, plots.
fn section(res: &Results, table: &str, machine: &str, command: &str, took: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{BEGIN}");
    let _ = writeln!(s);
    let _ = writeln!(s, "- Machine: {machine}");
    let _ = writeln!(s, "- Command: `{command}` ({:.0} s)", took.as_secs_f64());
    let _ = writeln!(s);
    s.push_str(table);
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Targets, as measured in this run (ratios as in the targets table):"
    );
    let _ = writeln!(s);
    s.push_str(&targets(res));
    if !res.absent.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(s, "Absent by design:");
        let _ = writeln!(s);
        for a in &res.absent {
            let _ = writeln!(s, "- {a}");
        }
    }
    let _ = writeln!(s);
    for (f, title) in plot::FILES {
        let _ = writeln!(s, "![{title}](benches/results/{f})");
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "{END}");
    s
}

pub fn write(res: &Results, machine: &str, command: &str, took: Duration, publish: bool) {
    let dir = root().join("target/bench-results");
    std::fs::create_dir_all(&dir).expect("create target/bench-results");
    let table = table(res);
    println!("\nmachine: {machine}");
    println!("command: {command} ({:.0} s)\n", took.as_secs_f64());
    println!("{table}");
    let targets = targets(res);
    println!("targets (this run):\n\n{targets}");
    std::fs::write(dir.join("peers.json"), json(res)).expect("write peers.json");
    let md = format!(
        "Machine: {machine}\n\nCommand: `{command}`\n\n{table}\nTargets (this run):\n\n{targets}"
    );
    std::fs::write(dir.join("peers.md"), md).expect("write peers.md");
    plot::draw(res, &dir);
    println!(
        "wrote {} (peers.json, peers.md, {})",
        dir.display(),
        plot::FILES.map(|f| f.0).join(", ")
    );
    if publish {
        let out = root().join("benches/results");
        std::fs::create_dir_all(&out).expect("create benches/results");
        for (f, _) in plot::FILES {
            std::fs::copy(dir.join(f), out.join(f)).expect("copy plot");
        }
        let path = root().join("BENCHMARKS.md");
        let doc = std::fs::read_to_string(&path).expect("read BENCHMARKS.md");
        let (Some(a), Some(b)) = (doc.find(BEGIN), doc.find(END)) else {
            panic!("BENCHMARKS.md lacks the markers {BEGIN} ... {END}");
        };
        let new = format!(
            "{}{}{}",
            &doc[..a],
            section(res, &table, machine, command, took).trim_end(),
            &doc[b + END.len()..]
        );
        std::fs::write(&path, new).expect("write BENCHMARKS.md");
        println!("published: BENCHMARKS.md and benches/results/*.svg");
    }
}
