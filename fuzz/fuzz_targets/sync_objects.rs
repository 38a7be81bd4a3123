//! Arbitrary bytes as each in-place sync object (RawSemaphore, RawEvent,
//! RawBarrier, RawCondvar), driven by non-blocking and zero-timeout calls:
//! never a crash, a hang or undefined behaviour.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shmprim::__fuzz::sync_objects(data);
});
