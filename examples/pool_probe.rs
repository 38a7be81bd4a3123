//! The pool's per-task cost probe: one `map` with chunksize 1 of `N`
//! 8-byte tasks that return their argument, on 2 workers started by
//! `fork` (BENCHMARKS.md, "W6 pools, profiled", has the recipe).
//!
//! ```text
//! cargo build --release --example pool_probe
//! valgrind --tool=callgrind --trace-children=yes --dump-instr=no \
//!     --collect-atstart=yes --callgrind-out-file=cg.%p \
//!     target/release/examples/pool_probe 2000
//! ```
//!
//! Run at two task counts and divide the difference of each process's
//! total by the difference of the counts: the start-up and teardown
//! cancel out. `pool_probe N apply` runs `N` `apply` round trips instead.

use shmprim::pool::Pool;
use shmprim::process::{self, Method};

fn echo(x: u64) -> u64 {
    x
}

fn main() {
    process::enter(); // workers start here (with spawn; harmless with fork)
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let pool = Pool::builder()
        .workers(2)
        .method(Method::Fork)
        .build()
        .expect("pool");
    let t = std::time::Instant::now();
    if args.get(2).is_some_and(|a| a == "apply") {
        for i in 0..n {
            assert_eq!(pool.apply(echo, i).expect("apply"), i);
        }
    } else {
        let out = pool.map_chunked(echo, 0..n, 1).expect("map");
        assert!(out.iter().copied().eq(0..n));
    }
    let el = t.elapsed();
    // Workers stop on a record and exit normally (a killed one writes no
    // profile).
    pool.close();
    pool.join().expect("join");
    println!(
        "{n} tasks in {el:?}: {:.0} ns per task, parent pid {}",
        el.as_nanos() as f64 / n as f64,
        std::process::id()
    );
}
