//! The seeds' `Manager()` program in Rust: several processes fill one
//! shared map and one shared list, with no server process in between.
//!
//! ```text
//! cargo run --release --example manager [PROCESSES] [ITEMS]
//! ```
//!
//! Python's version:
//!
//! ```python
//! def f(d, l, i):
//!     d[i] = i * i; d["total"] += i; l.append(i)
//! with Manager() as m:
//!     d, l = m.dict({"total": 0}), m.list()
//!     ps = [Process(target=f, args=(d, l, i)) for i in range(4)]
//! ```
//!
//! The parent creates the map and the list under fresh names and runs this
//! same program again with `worker` arguments; each worker opens them by
//! name, inserts its squares, adds to a shared total with an atomic
//! `update` (Python's `d["total"] += i` loses updates without a lock), and
//! appends to the list. Both grow many times while the workers use them.
//! The parent checks every entry, the total and the list, and prints a
//! summary. Its handles remove every name when it exits.

use std::process::Command;
use std::time::Instant;

use shmprim::{SharedList, SharedMap};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") {
        return worker(&args[2], &args[3], args[4].parse()?, args[5].parse()?);
    }
    let procs: u64 = args.get(1).map_or(Ok(4), |s| s.parse())?;
    let items: u64 = args.get(2).map_or(Ok(20_000), |s| s.parse())?;
    parent(procs, items)
}

fn parent(procs: u64, items: u64) -> Result<(), Box<dyn std::error::Error>> {
    let (dn, ln) = (
        shmprim::segment::unique_name("mgrdict"),
        shmprim::segment::unique_name("mgrlist"),
    );
    let d = SharedMap::create(&dn)?;
    let l = SharedList::create(&ln)?;
    d.insert_as(b"total", &0u64)?;
    println!("parent: {procs} processes x {items} items into {dn} and {ln}");
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    let mut kids = Vec::new();
    for w in 0..procs {
        kids.push(
            Command::new(&exe)
                .args(["worker", &dn, &ln, &w.to_string(), &items.to_string()])
                .spawn()?,
        );
    }
    for mut k in kids {
        let status = k.wait()?;
        if !status.success() {
            return Err(format!("a worker failed: {status}").into());
        }
    }
    let took = start.elapsed();

    // Every square, the exact total, every list element once.
    let n = procs * items;
    for i in 0..n {
        let sq = d.get_as::<u64, u64>(&i)?;
        if sq != Some(i * i) {
            return Err(format!("d[{i}] = {sq:?}, want {}", i * i).into());
        }
    }
    let total = d.get_as::<[u8; 5], u64>(b"total")?.unwrap_or(0);
    let want_total: u64 = (0..n).sum();
    let mut seen: Vec<u64> = l
        .iter()?
        .map(|b| u64::from_le_bytes(b.try_into().expect("8-byte element")))
        .collect();
    seen.sort_unstable();
    let ok_list = seen.iter().copied().eq(0..n);
    println!(
        "dict: {} entries, total {total} (want {want_total}); list: {} elements, each once: {ok_list}",
        d.len()?,
        seen.len()
    );
    println!(
        "{} writes in {:.0} ms: {:.2} M/s",
        3 * n,
        took.as_secs_f64() * 1e3,
        3.0 * n as f64 / took.as_secs_f64() / 1e6
    );
    if d.len()? as u64 != n + 1 || total != want_total || !ok_list {
        return Err("shared state wrong".into());
    }
    println!("ok");
    Ok(())
}

fn worker(dn: &str, ln: &str, w: u64, items: u64) -> Result<(), Box<dyn std::error::Error>> {
    let d = SharedMap::open(dn)?;
    let l = SharedList::open(ln)?;
    for j in 0..items {
        let i = w * items + j;
        d.insert_as(&i, &(i * i))?;
        d.update_as::<[u8; 5], u64>(b"total", |t| Some(t.unwrap_or(0) + i))?;
        l.push_as(&i)?;
    }
    Ok(())
}
