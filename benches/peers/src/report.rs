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

pub const BEGIN: &str = "<!-- peers:begin (written by `cargo bench --bench peers -- --publish`) -->";
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
    s.push_str("| workload | system | value | unit | better | ratio to shmprim | shmprim's lead |\n");
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
    std::fs::write(dir.join("peers.json"), json(res)).expect("write peers.json");
    let md = format!("Machine: {machine}\n\nCommand: `{command}`\n\n{table}");
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
