//! `RawBarrier` (behind `Barrier`: the packed generation/count/broken
//! word, the 64 reset tags, the tripper record) over untrusted bytes, in
//! an exact-size region: byte 0 % 3 picks garbage (0), a valid barrier
//! then byte patches (1), or a valid barrier checked against the
//! one-thread model (2: one party trips at once; with more, a lone timed
//! wait breaks the generation; `abort` breaks it, `reset` mends it). The
//! rest drives waits with zero or microsecond timeouts, `abort`, `reset`
//! and the accessors (and, in modes 0 and 1, more patches).
//!
//! A generation whose bytes say every party arrived is waited for past a
//! timed wait's deadline (about a second when no tripper is recorded, up
//! to `ACTION_GRACE` when the record names a live process), so each input
//! makes at most four waits; `fuzz/run-all` gives each input 30 s.
#![no_main]

mod common;

use std::time::Duration;

use common::*;
use libfuzzer_sys::fuzz_target;
use shmprim::raw::RawBarrier;
use shmprim::Error;

fn broken(e: &Error) -> bool {
    matches!(e, Error::BrokenBarrier)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.u8() % 3;
    let region = Region::new(RawBarrier::SIZE, RawBarrier::ALIGN);
    let mut parties = 0;
    if mode == 0 {
        region.fill(input.take(RawBarrier::SIZE));
    } else {
        parties = u32::from(input.u8() % 4) + 1;
        let timeout = (input.u8() & 1 != 0).then_some(Duration::ZERO);
        // SAFETY: a fresh region of SIZE bytes aligned to ALIGN, ours alone.
        unsafe { RawBarrier::init(region.ptr().cast(), parties, timeout) }.expect("barrier init");
        if mode == 1 {
            region.patch(&mut input);
        }
    }
    // SAFETY: SIZE bytes aligned to ALIGN that outlive `bar`; a RawBarrier
    // is made of atomics only, so any bytes are a value.
    let bar = unsafe { &*region.ptr().cast::<RawBarrier>() };
    // Mode 2: whether the current generation is broken.
    let mut model = (mode == 2).then_some(false);
    let mut waits = 0;
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        match input.u8() % 6 {
            op @ (0 | 1) if waits < 4 => {
                waits += 1;
                let r = bar.wait_timeout(Duration::from_micros(u64::from(op)));
                allowed(&r, &[broken, corrupt]);
                if let Some(b) = model.as_mut() {
                    if !*b && parties == 1 {
                        assert_eq!(r.ok(), Some(0), "a one-party barrier");
                    } else {
                        assert!(matches!(r, Err(Error::BrokenBarrier)), "{r:?}");
                        *b = true;
                    }
                }
            }
            2 => {
                bar.abort();
                model = model.map(|_| true);
            }
            3 => {
                bar.reset();
                model = model.map(|_| false);
            }
            4 => {
                let r = bar.check();
                allowed(&r, &[corrupt]);
                let _ = (bar.n_waiting(), bar.parties(), bar.default_timeout());
                if model.is_some() {
                    assert_eq!(r.ok(), Some(parties), "a valid barrier failed its check");
                }
            }
            5 if model.is_none() => region.patch(&mut input),
            _ => {}
        }
        if let Some(b) = model {
            assert_eq!(bar.is_broken(), b);
        }
    }
});
