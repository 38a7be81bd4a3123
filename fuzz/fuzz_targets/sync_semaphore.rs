//! `RawSemaphore` (behind `Semaphore` and `BoundedSemaphore`) over
//! untrusted bytes, in an exact-size region:
//!
//! | byte 0 % 3 | the object                                              |
//! |-----------:|---------------------------------------------------------|
//! | 0          | input bytes as the whole object (garbage)               |
//! | 1          | a valid semaphore (value, bounded from the input), then byte patches |
//! | 2          | a valid semaphore, checked against a model counter      |
//!
//! The rest drives operations with zero or microsecond timeouts (and, in
//! modes 0 and 1, more patches between them). Every call must end in a
//! value or its documented typed error; in mode 2 every answer and
//! `value()` must match the model.
#![no_main]

mod common;

use std::time::Duration;

use common::*;
use libfuzzer_sys::fuzz_target;
use shmprim::raw::{RawSemaphore, SEMAPHORE_VALUE_MAX};

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let mode = input.u8() % 3;
    let region = Region::new(RawSemaphore::SIZE, RawSemaphore::ALIGN);
    if mode == 0 {
        region.fill(input.take(RawSemaphore::SIZE));
    } else {
        let sel = input.u8();
        let value = if sel & 2 != 0 {
            input.u32()
        } else {
            u32::from(input.u8() % 4)
        };
        // SAFETY: a fresh region of SIZE bytes aligned to ALIGN, ours alone.
        if unsafe { RawSemaphore::init(region.ptr().cast(), value, sel & 1 != 0) }.is_err() {
            assert!(value > SEMAPHORE_VALUE_MAX, "valid value {value} refused");
            return;
        }
        if mode == 1 {
            region.patch(&mut input);
        }
    }
    // SAFETY: SIZE bytes aligned to ALIGN that outlive `sem`; a
    // RawSemaphore is made of atomics only, so any bytes are a value.
    let sem = unsafe { &*region.ptr().cast::<RawSemaphore>() };
    let mut model = (mode == 2).then(|| sem.value());
    let max = sem.max();
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        match input.u8() % 6 {
            0 => {
                let r = sem.try_acquire();
                allowed(&r, &[would_block, corrupt]);
                if let Some(m) = model.as_mut() {
                    assert_eq!(r.is_ok(), *m > 0, "try_acquire with {m} permits");
                    *m -= u32::from(r.is_ok());
                }
            }
            op @ (1 | 2) => {
                let t = Duration::from_micros(u64::from(op - 1));
                let r = sem.acquire_timeout(t);
                allowed(&r, &[timeout, corrupt]);
                if let Some(m) = model.as_mut() {
                    assert_eq!(r.is_ok(), *m > 0, "acquire_timeout with {m} permits");
                    *m -= u32::from(r.is_ok());
                }
            }
            3 => {
                let r = sem.release();
                allowed(&r, &[invalid, corrupt]);
                if let Some(m) = model.as_mut() {
                    assert_eq!(r.is_ok(), *m < max, "release with {m} of {max}");
                    *m += u32::from(r.is_ok());
                }
            }
            4 => {
                let r = sem.check();
                allowed(&r, &[corrupt]);
                if model.is_some() {
                    assert!(r.is_ok(), "a valid semaphore failed its check: {r:?}");
                }
            }
            _ if model.is_none() => region.patch(&mut input),
            _ => {}
        }
        if let Some(m) = model {
            assert_eq!(sem.value(), m);
        }
    }
});
