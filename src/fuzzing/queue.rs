//! Arbitrary bytes as `MpmcRing` memory, and as a `Queue` or
//! `JoinableQueue` segment.

use super::attach;
use crate::segment::{Fingerprint, Kind};
use crate::{JoinableQueue, Queue};
use std::time::Duration;

/// Opens `bytes` as a `Queue` and as a `JoinableQueue` segment and runs
/// a few non-blocking operations on whatever opens.
pub fn open_queue(bytes: &[u8]) -> usize {
    let mut ok = 0;
    if let Ok(seg) = attach(bytes, Kind::Queue, Fingerprint::NONE) {
        if let Ok(q) = Queue::__attach(seg) {
            let _ = q.try_send_bytes(b"fuzz");
            let _ = q.try_recv_bytes();
            let _ = q.len();
            ok += 1;
        }
    }
    if let Ok(seg) = attach(bytes, Kind::JoinableQueue, Fingerprint::NONE) {
        if let Ok(q) = JoinableQueue::__attach(seg) {
            let _ = q.try_send_bytes(b"fuzz");
            let _ = q.try_recv_bytes();
            let _ = q.task_done();
            let _ = q.join_timeout(Duration::ZERO);
            ok += 1;
        }
    }
    ok
}

/// Bytes as `MpmcRing` memory (garbage, or a valid ring with garbage
/// control words), then a bounded run of operations.
pub fn mpmc_garbage(bytes: &[u8]) {
    crate::raw::mpmc::__fuzz_garbage(bytes)
}
