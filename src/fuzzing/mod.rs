//! Entry points for the fuzz targets in `fuzz/` (`shmprim::__fuzz::*`):
//! each opens or builds one structure from arbitrary bytes and drives it
//! through the crate's own API. Built only under `--cfg fuzzing` (which
//! `cargo fuzz` sets); never part of the public API.
//!
//! One file per structure. To add an entry point: a new file here with a
//! `pub fn` taking `&[u8]`, a `mod` line and a `pub use` line below, and a
//! target in `fuzz/fuzz_targets/` that calls `shmprim::__fuzz::<fn>`.

use crate::segment::header::Spec;
use crate::segment::{Fingerprint, Kind};
use crate::{Options, Plain, Result, Segment};
use std::time::Duration;

mod containers;
mod eventcount;
mod pipe;
mod queue;
mod segment;

pub use containers::open_containers;
pub use eventcount::eventcount;
pub use pipe::open_pipe;
pub use queue::{mpmc_garbage, open_queue};
pub use segment::open_all;

/// Opens `bytes` (copied into an anonymous memfd) as a segment of `kind`
/// holding `fp`, without waiting for a `READY` state.
pub(crate) fn attach(bytes: &[u8], kind: Kind, fp: Fingerprint) -> Result<Segment> {
    let fd = Segment::__fuzz_fd(bytes)?;
    let spec = Spec {
        kind,
        fingerprint: fp,
        len: 0,
        capacity: 0,
        object_size: 0,
        object_align: 64,
    };
    Segment::attach_fd(&fd, &spec, &Options::new().open_timeout(Duration::ZERO))
}

/// The layout fingerprint a handle of `T` expects.
pub(crate) fn fp<T: Plain>() -> Fingerprint {
    Fingerprint {
        size: std::mem::size_of::<T>() as u64,
        align: std::mem::align_of::<T>() as u64,
        tag: T::TYPE_TAG,
    }
}
