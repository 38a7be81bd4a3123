//! The seeds' first program, in Rust: several named processes, each given
//! a `Queue` and a `Value`; one is a daemon, one is killed; every exit
//! code is printed.
//!
//! ```text
//! cargo run --release --example processes
//! ```

use std::time::Duration;

use shmprim::process::{self, Builder, ProcessError};
use shmprim::{Queue, Value};

/// Sends `n` greetings and adds `n` to the shared counter.
fn greet((q, total, n): (Queue, Value<u64>, u64)) -> u64 {
    let me = process::current_process();
    for i in 0..n {
        q.send(&(u64::from(me.pid) * 1000 + i)).unwrap();
    }
    total.update(|t| *t += n).unwrap();
    n
}

/// Never returns: the one that gets killed, and the daemon.
fn linger((q, _total, _n): (Queue, Value<u64>, u64)) -> u64 {
    q.send(&0u64).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn main() {
    process::enter(); // first: spawned children run their target here

    let q = Queue::anonymous(64, 8).unwrap();
    let total = Value::<u64>::anonymous(0).unwrap();
    let mut workers = Vec::new();
    for (i, name) in ["alpha", "beta", "gamma"].into_iter().enumerate() {
        let arg = (q.clone(), total.clone(), i as u64 + 1);
        workers.push(Builder::new().name(name).start(greet, arg).unwrap());
    }
    let arg = (q.clone(), total.clone(), 0);
    let mut doomed = Builder::new().name("doomed").start(linger, arg).unwrap();
    let arg = (q.clone(), total.clone(), 0);
    let daemon = Builder::new()
        .name("ghost")
        .daemon(true)
        .start(linger, arg)
        .unwrap();

    for w in &mut workers {
        let r = w.join().unwrap();
        let code = w.exitcode();
        println!(
            "{:<6} pid {:>7} returned {r}, exit code {code:?}",
            w.name(),
            w.pid()
        );
    }
    // Wait for the lingering ones to say hello, then kill one.
    let mut got = 0;
    while got < 1 + 2 + 3 + 2 {
        q.recv::<u64>().unwrap();
        got += 1;
    }
    doomed.kill().unwrap();
    match doomed.join() {
        Err(ProcessError::Died { exitcode }) => {
            println!(
                "doomed pid {:>7} killed, exit code {exitcode}",
                doomed.pid()
            )
        }
        other => panic!("{other:?}"),
    }
    println!("total {} (expected 6)", total.get().unwrap());
    assert_eq!(total.get().unwrap(), 6);
    println!(
        "ghost  pid {:>7} is a daemon: killed when main ends (alive now: {})",
        daemon.pid(),
        process::active_children()
            .iter()
            .any(|c| c.pid == daemon.pid())
    );
}
