//! Finding the next whole message: single records, reassembly of
//! fragments, abort records, and skipping the rest of a message a previous
//! user of the end was inside (the shared in-message flag).

use super::*;

/// A hostile peer may announce any total length: never preallocate more.
const MAX_PREALLOC: usize = 64 << 20;

/// A fragmented message being reassembled.
#[derive(Debug)]
pub(super) struct Partial {
    pub(super) buf: Vec<u8>,
    pub(super) total: usize,
    pub(super) done: bool,
}

/// What a receive can accept, checked before anything is consumed.
#[derive(Clone, Copy)]
pub(super) enum Limit {
    Any,
    /// `recv_bytes_into`: the room in the caller's buffer.
    Buffer(usize),
    /// `recv_bytes_max`.
    Max(usize),
    /// Typed `recv`: exactly this many bytes.
    Exact(usize),
    /// `recv_in_place`: one record only.
    InPlace(usize),
}

impl Limit {
    fn check(self, len: usize, fragmented: bool) -> Result<()> {
        match self {
            Limit::Any => Ok(()),
            Limit::Buffer(room) if len > room => Err(Error::BufferTooShort { needed: len }),
            Limit::Max(max) if len > max => Err(Error::MessageTooLarge { size: len, max }),
            Limit::Exact(n) if len != n => Err(Error::LengthMismatch {
                found: len as u64,
                expected: n as u64,
            }),
            Limit::InPlace(max) if fragmented => Err(Error::MessageTooLarge { size: len, max }),
            _ => Ok(()),
        }
    }
}

/// What the next message is.
pub(super) enum Next {
    /// A single record, in the ring.
    Record(Record),
    /// A reassembled message, in `Connection::partial`.
    Whole,
}

impl Connection {
    /// Finds the next whole message, reassembling fragments into
    /// `self.partial`; `limit` is checked before anything is consumed.
    pub(super) fn next(&mut self, limit: Limit, deadline: Option<Deadline>) -> Result<Next> {
        self.ready()?;
        if let Some(p) = &self.partial {
            limit.check(p.total, true)?;
            if p.done {
                return Ok(Next::Whole);
            }
        }
        let anonymous = self.anonymous;
        let policy = self.policy;
        let rx = self
            .rx
            .as_mut()
            .ok_or(Error::InvalidArgument("this end cannot receive"))?;
        let ring = rx.ring;
        let c = rx.c.as_mut().ok_or(Error::Closed)?;
        let w = Watch {
            ring,
            ec: ring.data_ready(),
            peer: Role::Writer,
            seg: &self.seg,
            anonymous,
            policy,
            last_check: &self.last_check,
            spin_now: &self.spin_now,
        };
        // Each round consumes a record or returns: bounded by the data.
        loop {
            let mut rec = None;
            let waited = w.wait(deadline, || {
                rec = c.try_peek()?;
                Ok(rec.is_some())
            });
            if let Err(e) = waited {
                if matches!(e, Error::Disconnected) {
                    // The writer went away mid-message: it was never sent.
                    if self.partial.take().is_some() || self.skipping {
                        c.set_in_message(false);
                        c.publish_in_message();
                    }
                    self.skipping = false;
                }
                return Err(e);
            }
            let r = rec.ok_or(Error::Corrupt("record vanished"))?;
            let flags = r.flags();
            if flags & ABORT != 0 {
                // The flag travels with the release (one store): a reader
                // dying in between leaves both as they were.
                c.set_in_message(false);
                crate::fault::fault_point!("pipe.read.message_unflagged");
                c.release(r)?;
                self.partial = None;
                self.skipping = false;
                continue;
            }
            if flags & FIRST == 0
                && (self.skipping || (self.partial.is_none() && flags & MORE != 0))
            {
                // A continuation with no message in progress: the rest of
                // a message whose start a previous claimant of this end
                // received (the shared in-message flag said so at the
                // take-over), or fragments a writer sent without a first
                // one. Dropped up to the end of that message, or up to an
                // ABORT or a FIRST, rather than refused (which would
                // leave the ring stuck on it).
                self.skipping = flags & MORE != 0;
                c.set_in_message(self.skipping);
                if !self.skipping {
                    crate::fault::fault_point!("pipe.read.message_unflagged");
                }
                c.release(r)?;
                continue;
            }
            self.skipping = false;
            match (&mut self.partial, flags & FIRST != 0) {
                (None, false) => {
                    limit.check(r.len(), false)?;
                    return Ok(Next::Record(r));
                }
                (None, true) => {
                    if r.len() < 8 {
                        return Err(Error::Corrupt("first fragment too short"));
                    }
                    let mut t = [0u8; 8];
                    c.read(&r, 0, &mut t)?;
                    let total = usize::try_from(u64::from_le_bytes(t))
                        .map_err(|_| Error::Corrupt("fragmented message length"))?;
                    if total < r.len() - 8 {
                        return Err(Error::Corrupt("fragmented message length"));
                    }
                    limit.check(total, true)?;
                    let mut buf = Vec::with_capacity(total.min(MAX_PREALLOC));
                    let n = r.len() - 8;
                    buf.resize(n, 0);
                    c.read(&r, 8, &mut buf)?;
                    // Published with the release: a receiver taking the end
                    // over must know that the head is inside a message.
                    c.set_in_message(flags & MORE != 0);
                    crate::fault::fault_point!("pipe.read.message_flagged");
                    c.release(r)?;
                    self.partial = Some(Partial {
                        buf,
                        total,
                        done: false,
                    });
                    if flags & MORE == 0 {
                        return self.finish_partial();
                    }
                }
                (Some(_), true) => {
                    return Err(Error::Corrupt("first fragment inside a message"));
                }
                (Some(p), false) => {
                    let old = p.buf.len();
                    if r.len() > p.total - old {
                        return Err(Error::Corrupt("fragments exceed the message length"));
                    }
                    p.buf.resize(old + r.len(), 0);
                    c.read(&r, 0, &mut p.buf[old..])?;
                    if flags & MORE == 0 {
                        c.set_in_message(false);
                        crate::fault::fault_point!("pipe.read.message_unflagged");
                    }
                    c.release(r)?;
                    if flags & MORE == 0 {
                        return self.finish_partial();
                    }
                }
            }
        }
    }

    pub(super) fn finish_partial(&mut self) -> Result<Next> {
        let p = self.partial.as_mut().ok_or(Error::Corrupt("no message"))?;
        if p.buf.len() != p.total {
            self.partial = None;
            return Err(Error::Corrupt("fragments fall short of the message length"));
        }
        p.done = true;
        Ok(Next::Whole)
    }
}
