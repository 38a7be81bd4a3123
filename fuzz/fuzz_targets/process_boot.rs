//! The start message a spawned or forkserver child decodes, and the
//! reports a parent decodes: arbitrary bytes are refused with an error,
//! never a panic, a hang or a call through an unchecked address.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shmprim::process::__fuzz_boot(data);
});
