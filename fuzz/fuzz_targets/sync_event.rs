//! `RawEvent` (behind `Event`) over untrusted bytes, in an exact-size
//! region: byte 0 % 3 picks garbage (0), a valid event then byte patches
//! (1), or a valid event checked against a model flag (2). The rest
//! drives `set`, `clear`, `is_set`, `check` and waits with zero or
//! microsecond timeouts (and, in modes 0 and 1, more patches). Nothing may
//! panic or hang; in mode 2 `is_set` and each wait's answer must match.
#![no_main]

mod common;

use std::time::Duration;

use common::*;
use libfuzzer_sys::fuzz_target;
use shmprim::raw::RawEvent;

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.u8() % 3;
    let region = Region::new(RawEvent::SIZE, RawEvent::ALIGN);
    if mode == 0 {
        region.fill(input.take(RawEvent::SIZE));
    } else {
        // SAFETY: a fresh region of SIZE bytes aligned to ALIGN, ours alone.
        unsafe { RawEvent::init(region.ptr().cast()) };
        if mode == 1 {
            region.patch(&mut input);
        }
    }
    // SAFETY: SIZE bytes aligned to ALIGN that outlive `ev`; a RawEvent is
    // made of atomics only, so any bytes are a value.
    let ev = unsafe { &*region.ptr().cast::<RawEvent>() };
    let mut model = (mode == 2).then_some(false);
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        match input.u8() % 6 {
            0 => {
                ev.set();
                model = model.map(|_| true);
            }
            1 => {
                ev.clear();
                model = model.map(|_| false);
            }
            op @ (2 | 3) => {
                let got = ev.wait_timeout(Duration::from_micros(u64::from(op - 2)));
                if let Some(m) = model {
                    assert_eq!(got, m, "wait on an event set={m}");
                }
            }
            4 => {
                let r = ev.check();
                allowed(&r, &[corrupt]);
                if model.is_some() {
                    assert!(r.is_ok(), "a valid event failed its check: {r:?}");
                }
            }
            _ if model.is_none() => region.patch(&mut input),
            _ => {}
        }
        if let Some(m) = model {
            assert_eq!(ev.is_set(), m);
        }
    }
});
