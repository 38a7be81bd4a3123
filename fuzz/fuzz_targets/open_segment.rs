//! Arbitrary bytes as a whole segment (header and object), opened as every
//! kind of object, then read as a cleaner would (`inspect`, the attach
//! table, the cleaner's mark): every answer must be an error or a working
//! handle, never a crash, a hang or undefined behaviour.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shmprim::__fuzz::open_all(data);
    let _ = shmprim::segment::__fuzz_inspect(data);
});
