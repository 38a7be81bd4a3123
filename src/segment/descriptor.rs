//! Anonymous segments by descriptor: how an unnamed segment reaches a
//! process that did not `fork` from its creator (a re-executed child).
//!
//! An anonymous segment keeps its `memfd` open (close-on-exec) for as long
//! as it lives, so that [`Segment::anonymous_fd`] can hand it out; a
//! launcher passes a copy to its child on purpose (clearing close-on-exec
//! on that copy only, after `fork`, before `exec`), and the child turns it
//! back into any handle with [`Segment::open_descriptor`].

use std::cell::RefCell;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use super::header::Spec;
use super::{Options, Segment};
use crate::Result;

thread_local! {
    /// The descriptor that the next `open` of the placeholder name on this
    /// thread attaches instead of calling `shm_open`.
    static PENDING: RefCell<Option<(String, OwnedFd)>> = const { RefCell::new(None) };
}

impl Segment {
    /// The descriptor of an anonymous segment (a `memfd` on Linux), for
    /// passing the segment to a process that does not inherit the mapping
    /// through `fork`. `None` for a named segment: pass its name.
    pub fn anonymous_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// Opens the anonymous segment behind `fd` (received from
    /// [`Segment::anonymous_fd`] in another process) through any handle's
    /// `open`: `open` is called with a placeholder name that, on this
    /// thread and for this one call, stands for `fd`.
    ///
    /// ```
    /// use shmprim::{Segment, Value};
    /// let v = Value::<u32>::anonymous(7).unwrap();
    /// let fd = shmprim::sys::child::dup(v.segment().anonymous_fd().unwrap()).unwrap();
    /// let same = Segment::open_descriptor(fd, |name| Value::<u32>::open(name)).unwrap();
    /// same.set(8).unwrap();
    /// assert_eq!(v.get().unwrap(), 8);
    /// ```
    ///
    /// The header is validated as for any open (kind, type, sizes). The
    /// segment stays anonymous: it has no name, records nobody in its
    /// attach table, and keeps `fd`. Only `open` (and `open_with`) take
    /// the placeholder: `create` or `open_or_create` with it would make a
    /// real named segment.
    pub fn open_descriptor<R>(fd: OwnedFd, open: impl FnOnce(&str) -> Result<R>) -> Result<R> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("/shmprim-fd.{}.{n}", std::process::id());
        PENDING.with(|p| *p.borrow_mut() = Some((name.clone(), fd)));
        let r = open(&name);
        PENDING.with(|p| p.borrow_mut().take());
        r
    }
}

/// The segment for `name` if it is the pending placeholder (the
/// descriptor is consumed), `None` otherwise.
pub(super) fn take_pending(name: &str, spec: &Spec, opts: &Options) -> Result<Option<Segment>> {
    let fd = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        match p.as_ref() {
            Some((n, _)) if n == name => p.take().map(|(_, fd)| fd),
            _ => None,
        }
    });
    let Some(fd) = fd else { return Ok(None) };
    let mut seg = Segment::attach_fd(&fd, spec, opts)?;
    seg.fd = Some(fd);
    Ok(Some(seg))
}
