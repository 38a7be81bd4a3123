//! Arbitrary bytes as the shared memory of a `SharedMap` and a `SharedList`.

/// A `SharedMap` and a `SharedList` whose shared bytes are `bytes`,
/// opened and used (see `containers::__fuzz_open`).
pub fn open_containers(bytes: &[u8]) -> usize {
    crate::containers::__fuzz_open(bytes)
}
