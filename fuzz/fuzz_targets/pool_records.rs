//! Pool task and result records: arbitrary bytes parsed as both (the
//! header, the spill ticket, the function token's length, every item),
//! never a panic, an overlong allocation or a read past the end; an
//! accepted task header re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shmprim::pool::__fuzz_records(data);
});
