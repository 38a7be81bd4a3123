//! A `JoinableQueue` (its MPMC ring and its unfinished-task count, with
//! the task event count) whose object bytes are patched while it is in
//! use, through the public API only (so it follows any ring layout):
//! byte 0 picks the mode (bit 0: patch, or check against a model), then
//! capacity and slot size; the rest is operations: sends, receives,
//! `task_done`, `try_join` and `join_timeout` of a microsecond, `close`,
//! the accessors, and (patch mode) byte patches anywhere in the object.
//! Every call must end in a value or a typed error; in model mode, the
//! count of unfinished tasks, `task_done`'s refusals and `join`'s answers
//! must match the model.
#![no_main]

mod common;

use std::time::Duration;

use common::*;
use libfuzzer_sys::fuzz_target;
use shmprim::{Error, JoinableQueue};

fn queue_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Full
            | Error::Empty
            | Error::Closed
            | Error::Timeout
            | Error::WouldBlock
            | Error::Corrupt(_)
            | Error::InvalidArgument(_)
            | Error::MessageTooLarge { .. }
            | Error::BufferTooShort { .. }
    )
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let patching = input.u8() & 1 != 0;
    let capacity = usize::from(input.u8() % 8) + 1;
    let slot = usize::from(input.u8() % 64) + 8;
    let q = JoinableQueue::anonymous(capacity, slot).expect("JoinableQueue");
    let seg = q.as_queue().segment();
    let (obj, obj_len) = (seg.data_ptr(), seg.info().object_size as usize);
    let mut unfinished = 0u64;
    let mut closed = false;
    let mut buf = [0u8; 80];
    for _ in 0..64 {
        if input.is_empty() {
            break;
        }
        match input.u8() % 8 {
            0 => {
                let len = usize::from(input.u8()) % (slot + 2);
                let r = q.try_send_bytes(&buf[..len.min(buf.len())]);
                allowed(&r, &[queue_error]);
                if !patching {
                    if r.is_ok() {
                        unfinished += 1;
                    } else {
                        let e = r.unwrap_err();
                        assert!(
                            closed || len > slot || matches!(e, Error::Full),
                            "send refused: {e:?}"
                        );
                    }
                }
            }
            1 => {
                let r = q.try_recv_bytes_into(&mut buf);
                allowed(&r, &[queue_error]);
            }
            2 => {
                let r = q.try_recv_bytes();
                allowed(&r, &[queue_error]);
            }
            3 => {
                let r = q.task_done();
                allowed(&r, &[queue_error]);
                if !patching {
                    assert_eq!(r.is_ok(), unfinished > 0, "task_done with {unfinished}");
                    unfinished = unfinished.saturating_sub(1);
                }
            }
            op @ (4 | 5) => {
                // `try_join` (one look), or `join_timeout` of 1 us.
                let r = if op == 4 {
                    q.try_join()
                } else {
                    q.join_timeout(Duration::from_micros(1))
                };
                allowed(&r, &[queue_error]);
                if !patching {
                    assert_eq!(r.is_ok(), unfinished == 0, "join with {unfinished}");
                }
            }
            6 => {
                let _ = (q.unfinished(), q.as_queue().len(), q.as_queue().is_full());
                if input.u8() == 0 {
                    q.as_queue().close();
                    closed = true;
                }
            }
            _ if patching => {
                // SAFETY: the object is `obj_len` bytes of this anonymous
                // segment's mapping; this thread is the only user, and
                // every field there is an atomic or ring payload, so any
                // bytes are a value.
                unsafe { patch(obj, obj_len, &mut input) };
            }
            _ => {}
        }
        if !patching {
            assert_eq!(q.unfinished(), unfinished);
        }
    }
});
