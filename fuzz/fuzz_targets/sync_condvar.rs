//! `RawCondvar` (behind `Condition`: a 64-slot waiter table) over
//! untrusted bytes, in an exact-size region, with a valid `RawMutex`:
//! byte 0 % 3 picks garbage (0), a valid condition then byte patches (1),
//! or a valid condition checked against the one-thread model (2: nobody
//! waits, so `notify` wakes nobody and a timed wait times out). The rest
//! drives `notify(n)`, `notify_all`, `n_waiting`, `check` and waits with
//! zero or microsecond timeouts, which claim, sleep on and free a slot of
//! the table (and, in modes 0 and 1, more patches).
#![no_main]

mod common;

use std::time::Duration;

use common::*;
use libfuzzer_sys::fuzz_target;
use shmprim::raw::{MutexKind, RawCondvar, RawMutex};

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.u8() % 3;
    let region = Region::new(RawCondvar::SIZE, RawCondvar::ALIGN);
    if mode == 0 {
        region.fill(input.take(RawCondvar::SIZE));
    } else {
        // SAFETY: a fresh region of SIZE bytes aligned to ALIGN, ours alone.
        unsafe { RawCondvar::init(region.ptr().cast()) };
        if mode == 1 {
            region.patch(&mut input);
        }
    }
    let m = Region::new(RawMutex::SIZE, RawMutex::ALIGN);
    // SAFETY: a fresh region of SIZE bytes aligned to ALIGN, ours alone.
    unsafe { RawMutex::init(m.ptr().cast(), MutexKind::Normal) }.expect("mutex init");
    // SAFETY: initialised just above; the region outlives the reference.
    let mutex = unsafe { &*m.ptr().cast::<RawMutex>() };
    // SAFETY: SIZE bytes aligned to ALIGN that outlive `cv`; a RawCondvar
    // is made of atomics only, so any bytes are a value.
    let cv = unsafe { &*region.ptr().cast::<RawCondvar>() };
    let valid = mode == 2;
    let Ok(mut g) = mutex.lock() else {
        panic!("a fresh mutex refused its first lock");
    };
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        match input.u8() % 6 {
            0 => {
                let n = u32::from(input.u8() % 4);
                let r = cv.notify(&g, n);
                allowed(&r, &[corrupt]);
                if valid {
                    assert_eq!(r.ok(), Some(0), "notify with nobody waiting");
                }
            }
            1 => {
                let r = cv.notify_all(&g);
                allowed(&r, &[corrupt]);
                if valid {
                    assert_eq!(r.ok(), Some(0), "notify_all with nobody waiting");
                }
            }
            op @ (2 | 3) => {
                let t = Duration::from_micros(u64::from(op - 2));
                let r = cv.wait_timeout(&mut g, t);
                allowed(&r, &[corrupt, invalid]);
                if valid {
                    assert_eq!(r.ok(), Some(false), "a lone timed wait");
                }
            }
            4 => {
                let r = cv.check();
                allowed(&r, &[corrupt]);
                let n = cv.n_waiting();
                if valid {
                    assert!(r.is_ok(), "a valid condition failed its check: {r:?}");
                    assert_eq!(n, 0, "waiters left behind");
                }
            }
            _ if !valid => region.patch(&mut input),
            _ => {}
        }
    }
    drop(g);
});
