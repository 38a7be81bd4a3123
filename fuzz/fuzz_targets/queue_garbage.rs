//! Garbage as an `MpmcRing`: whole rings of arbitrary bytes, valid rings
//! with arbitrary control words (positions, stamps, lengths), and arbitrary
//! queue segments. Every operation must end in a value or an error
//! (`Corrupt` for garbage), never a crash, out-of-bounds access or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    shmprim::__fuzz::mpmc_garbage(data);
    let _ = shmprim::__fuzz::open_queue(data);
});
