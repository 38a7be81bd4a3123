//! No heap allocation per message: the send and receive paths of `Pipe`
//! (`send_bytes` / `recv_bytes_into`, `reserve` + `commit` /
//! `recv_in_place`) and of `Queue` (the same four) allocate nothing once
//! warmed up. A counting global allocator counts the allocations the test's
//! own thread makes (other tests run on other threads meanwhile) while many
//! messages go through, wrapping the rings several times.
#![cfg(target_os = "linux")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use shmprim::{Pipe, Queue};

struct Counting;

thread_local! {
    /// Whether this thread's allocations are being counted.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// How many this thread made while counting (per thread: the tests of
    /// this file run in parallel, on threads of their own).
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the thread-locals may be gone while a thread exits.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counting touches only const-initialised thread-locals (which never
// allocate).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while `f` runs.
fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.with(Cell::get);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get) - before
}

/// Messages per counted stretch: rings of 16 KiB wrap many times.
const MESSAGES: usize = 20_000;
/// Sent before each batch is received, so that several are in flight.
const BATCH: usize = 8;
const RING: usize = 16 << 10;

/// Lengths varying from 1 to 200 bytes, so records straddle the wrap.
fn len(i: usize) -> usize {
    1 + (i * 37) % 200
}

fn fill(buf: &mut [u8], i: usize) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = (i + k) as u8;
    }
}

fn check(got: &[u8], i: usize) {
    assert_eq!(got.len(), len(i), "message {i}: wrong length");
    for (k, b) in got.iter().enumerate() {
        assert_eq!(*b, (i + k) as u8, "message {i}: wrong byte {k}");
    }
}

#[test]
fn pipe_send_bytes_and_recv_bytes_into_do_not_allocate() {
    let (mut a, mut b) = Pipe::anonymous(RING).unwrap();
    let mut out = [0u8; 256];
    let mut inp = [0u8; 256];
    let mut run = |a: &mut shmprim::Connection, b: &mut shmprim::Connection, n: usize| {
        for start in (0..n).step_by(BATCH) {
            for i in start..start + BATCH {
                fill(&mut out[..len(i)], i);
                a.send_bytes(&out[..len(i)]).unwrap();
            }
            for i in start..start + BATCH {
                let got = b.recv_bytes_into(&mut inp).unwrap();
                check(&inp[..got], i);
            }
        }
    };
    // Warm-up: first use may allocate (claiming the ends, lazy state).
    run(&mut a, &mut b, 64);
    run(&mut b, &mut a, 64);
    assert_eq!(allocations(|| run(&mut a, &mut b, MESSAGES)), 0, "a -> b");
    assert_eq!(allocations(|| run(&mut b, &mut a, MESSAGES)), 0, "b -> a");
}

#[test]
fn pipe_zero_copy_does_not_allocate() {
    let (mut a, mut b) = Pipe::anonymous(RING).unwrap();
    let mut run = |n: usize| {
        for start in (0..n).step_by(BATCH) {
            for i in start..start + BATCH {
                let mut r = a.reserve(len(i)).unwrap();
                fill(&mut r, i);
                r.commit().unwrap();
            }
            for i in start..start + BATCH {
                let m = b.recv_in_place().unwrap();
                check(&m, i);
            }
        }
    };
    run(64);
    assert_eq!(allocations(|| run(MESSAGES)), 0);
}

#[test]
fn queue_send_bytes_and_recv_bytes_into_do_not_allocate() {
    let q = Queue::anonymous(64, 256).unwrap();
    let mut out = [0u8; 256];
    let mut inp = [0u8; 256];
    let mut run = |n: usize| {
        for start in (0..n).step_by(BATCH) {
            for i in start..start + BATCH {
                fill(&mut out[..len(i)], i);
                q.send_bytes(&out[..len(i)]).unwrap();
            }
            for i in start..start + BATCH {
                let got = q.recv_bytes_into(&mut inp).unwrap();
                check(&inp[..got], i);
            }
        }
    };
    run(64);
    assert_eq!(allocations(|| run(MESSAGES)), 0);
}

#[test]
fn queue_zero_copy_does_not_allocate() {
    let q = Queue::anonymous(64, 256).unwrap();
    let run = |n: usize| {
        for start in (0..n).step_by(BATCH) {
            for i in start..start + BATCH {
                let mut r = q.reserve(len(i)).unwrap();
                r.truncate(len(i));
                fill(&mut r, i);
                r.commit();
            }
            for i in start..start + BATCH {
                let m = q.recv_in_place().unwrap();
                check(&m, i);
            }
        }
    };
    run(64);
    assert_eq!(allocations(|| run(MESSAGES)), 0);
}

/// The counter itself works: a `Vec` counted on this thread is seen (so a
/// zero above is not a counter that never counts).
#[test]
fn the_counter_sees_allocations() {
    let n = allocations(|| {
        std::hint::black_box(vec![1u8; 100]);
    });
    assert!(n >= 1, "counted {n} allocations for a Vec");
}
