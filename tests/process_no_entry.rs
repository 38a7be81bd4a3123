//! A test binary that lacks `process_test_entry!`: a spawned child never
//! checks in, and the parent says so in bounded time instead of hanging.

use std::time::{Duration, Instant};

use shmprim::process::{Builder, ProcessError};

fn double(x: u64) -> u64 {
    x * 2
}

#[test]
fn a_child_without_the_entry_call_is_reported() {
    let t = Instant::now();
    let mut p = Builder::new()
        .start_timeout(Duration::from_secs(20))
        .start(double, 1)
        .unwrap();
    match p.join() {
        // libtest took the child's argument as a filter, ran no test, and
        // exited 0 without checking in.
        Err(ProcessError::NeverCheckedIn { exitcode: Some(0) }) => {}
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(20));
}
