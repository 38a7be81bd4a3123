//! A `SharedMap` and a `SharedList` whose generation and root bytes are
//! the input: opened anew and used through every operation, each call must
//! end in a value or a typed error (never a panic, a hang or a fault), and
//! nothing may be left in `/dev/shm`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shmprim::__fuzz::open_containers(data);
});
