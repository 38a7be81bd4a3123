//! `Process`: every start method, real children.

use std::time::Duration;

use shmprim::process::{Builder, Method, ProcessError};
use shmprim::{AtomicValue, Queue, Value};

shmprim::process_test_entry!();

fn double(x: u64) -> u64 {
    x * 2
}

fn boom(msg: String) -> u32 {
    panic!("{msg}")
}

fn use_handles((q, v, a): (Queue, Value<u64>, AtomicValue<u32>)) -> u64 {
    q.send(&7u64).unwrap();
    v.update(|x| *x += 5).unwrap();
    a.fetch_add(1);
    v.get().unwrap()
}

const METHODS: [Method; 2] = [Method::Spawn, Method::Forkserver];

#[test]
fn returns_values_every_method() {
    for m in METHODS {
        let mut p = Builder::new().method(m).start(double, 21).unwrap();
        assert_eq!(p.join().unwrap(), 42, "{m:?}");
        assert_eq!(p.exitcode(), Some(0));
    }
}

#[test]
fn panics_reach_the_parent() {
    for m in METHODS {
        let mut p = Builder::new()
            .method(m)
            .start(boom, "bad thing".to_owned())
            .unwrap();
        match p.join() {
            Err(ProcessError::Panicked { message, exitcode }) => {
                assert_eq!(message, "bad thing");
                assert_eq!(exitcode, 101);
            }
            other => panic!("{m:?}: {other:?}"),
        }
    }
}

#[test]
fn anonymous_handles_reach_children() {
    for m in METHODS {
        let q = Queue::anonymous(8, 8).unwrap();
        let v = Value::<u64>::anonymous(1).unwrap();
        let a = AtomicValue::<u32>::anonymous(0).unwrap();
        let mut p = Builder::new()
            .method(m)
            .start(use_handles, (q.clone(), v.clone(), a.clone()))
            .unwrap();
        assert_eq!(p.join_timeout(Duration::from_secs(20)).unwrap(), 6, "{m:?}");
        assert_eq!(q.recv::<u64>().unwrap(), 7);
        assert_eq!(a.load(), 1);
    }
}

#[test]
fn fork_is_refused_when_threaded() {
    match Builder::new().fork(|| 1u32) {
        Err(ProcessError::Threaded { threads }) => assert!(threads > 1),
        Ok(mut p) => panic!("fork allowed: {:?}", p.join()),
        Err(e) => panic!("{e}"),
    }
}
