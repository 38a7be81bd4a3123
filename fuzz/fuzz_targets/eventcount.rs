//! The event count (two words: a futex sequence and a sleeper count)
//! that each ring keeps for each side, over untrusted bytes in an
//! exact-size region: `prepare`, `cancel`, waits with a passed or a
//! one-microsecond deadline, `notify(n)`, `notify_all`, and byte patches
//! between them. No call may fail except a wait's `Timeout`, and every
//! announcement `prepare` makes is withdrawn by its `cancel` or `wait`
//! (the sleeper word ends where it started). See
//! `shmprim::__fuzz::eventcount`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shmprim::__fuzz::eventcount(data);
});
