//! The segment plumbing shared by the futex-primitive handles
//! ([`Semaphore`](crate::Semaphore), [`Event`](crate::Event),
//! [`Condition`](crate::Condition), [`Barrier`](crate::Barrier)): one
//! in-place object at the start of the segment's object area.

use crate::segment::header::Spec;
use crate::segment::{Fingerprint, Kind, Options, Place, Segment};
use crate::{Error, Result};

/// Where a handle's segment comes from.
pub(crate) enum Source<'a> {
    /// A new one (named or anonymous).
    Create(Place<'a>),
    /// An existing named one.
    Open(&'a str),
    /// A named one, created if missing.
    OpenOrCreate(&'a str),
}

fn spec(kind: Kind, size: usize) -> Spec {
    Spec {
        kind,
        fingerprint: Fingerprint::NONE,
        len: 0,
        capacity: 0,
        object_size: size as u64,
        object_align: 64,
    }
}

/// Creates or opens a segment of `kind` whose object spans `size` bytes
/// (64-aligned); `init` fills a fresh one. An opened object of another
/// size is [`Error::Corrupt`].
pub(crate) fn segment(
    from: Source<'_>,
    kind: Kind,
    size: usize,
    opts: &Options,
    link: Option<&str>,
    init: impl Fn(*mut u8) -> Result<()>,
) -> Result<Segment> {
    let spec = spec(kind, size);
    let seg = match from {
        Source::Create(place) => Segment::create_object(place, &spec, opts, link, init)?,
        Source::Open(name) => Segment::open_object(name, &spec, opts)?,
        Source::OpenOrCreate(name) => {
            Segment::open_or_create_object(name, &spec, opts, link, init)?
        }
    };
    if seg.data_len() != size {
        return Err(Error::Corrupt("object has the wrong size for its kind"));
    }
    Ok(seg)
}

/// The object at the start of `seg`'s object area, as a `T`.
///
/// # Safety
/// `seg` was made by [`segment`] with `size >= size_of::<T>()` and
/// `align_of::<T>() <= 64` (the object area is 64-aligned), and `T` is
/// valid for any bits (atomics only).
pub(crate) unsafe fn object<T>(seg: &Segment) -> &T {
    debug_assert!(seg.data_len() >= std::mem::size_of::<T>());
    debug_assert!(std::mem::align_of::<T>() <= 64);
    // SAFETY: per the caller's contract: in bounds, aligned, any bits
    // valid; the borrow of `seg` keeps the mapping alive.
    unsafe { &*seg.data_ptr().cast::<T>() }
}
