//! Arbitrary bytes as a `Pipe` segment.

use super::attach;
use crate::segment::{Fingerprint, Kind};
use crate::{End, Pipe};
use std::time::Duration;

/// Opens `bytes` as a pipe segment, claims both ends and runs each
/// operation once without waiting. Returns how many calls succeeded.
pub fn open_pipe(bytes: &[u8]) -> usize {
    let mut ok = 0;
    let Ok(seg) = attach(bytes, Kind::Pipe, Fingerprint::NONE) else {
        return 0;
    };
    let Ok(pipe) = Pipe::__attach(seg) else {
        return 0;
    };
    let mut buf = [0u8; 512];
    for end in [End::A, End::B] {
        let Ok(mut c) = pipe.connect(end) else {
            continue;
        };
        for _ in 0..16 {
            ok += c.try_recv_bytes().is_ok() as usize;
            ok += c.try_recv_bytes_into(&mut buf).is_ok() as usize;
            ok += c.poll(Some(Duration::ZERO)).is_ok() as usize;
            ok += c.try_recv_in_place().map(|b| b.len()).is_ok() as usize;
            ok += c.try_send_bytes(&buf[..100]).is_ok() as usize;
        }
        c.close();
    }
    ok
}
