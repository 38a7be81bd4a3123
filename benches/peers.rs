//! Launcher of the comparative suite against real peers (`benches/peers/`,
//! a crate of its own so that its heavy dependencies — iceoryx2,
//! ipc-channel, shared_memory, crossbeam-channel, plotters — never enter
//! this crate's dependency graph and the default `cargo test` stays fast).
//!
//! `cargo bench --bench peers [-- --quick] [-- --publish]` builds that
//! crate in release mode (its own target directory, `target/peers`, so the
//! two cargo invocations never wait on each other's lock) and runs it with
//! the arguments passed through. See BENCHMARKS.md.

use std::path::Path;
use std::process::{exit, Command};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suite = root.join("benches/peers");
    let target = root.join("target/peers");
    // `cargo bench` passes `--bench`; everything else goes to the suite.
    // Without it we were started by `cargo test --all-targets` (or
    // `--benches`), which must not build and run a four-minute suite.
    let all: Vec<String> = std::env::args().skip(1).collect();
    if !all.iter().any(|a| a == "--bench") {
        println!("peers: not started by `cargo bench`; run `cargo bench --bench peers` (skipped)");
        return;
    }
    let args: Vec<String> = all.into_iter().filter(|a| a != "--bench").collect();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(suite.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
    if !built.success() {
        eprintln!("building the peers suite ({}) failed", suite.display());
        exit(built.code().unwrap_or(1));
    }
    let ran = Command::new(target.join("release/shmprim-peers"))
        .args(&args)
        .current_dir(root)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the peers suite: {e}"));
    exit(ran.code().unwrap_or(1));
}
