//! Sending: one record, a message in fragments, zero-copy reservations.

use std::time::Duration;

use super::*;

impl Connection {
    /// Splits `self` into the producer and a watch on its ring.
    pub(super) fn producer(&mut self) -> Result<(&mut Producer<'static>, Watch<'_>)> {
        let tx = self
            .tx
            .as_mut()
            .ok_or(Error::InvalidArgument("this end cannot send"))?;
        let ring = tx.ring;
        if ring.is_closed(Role::Reader) {
            return Err(Error::Disconnected);
        }
        let p = tx.p.as_mut().ok_or(Error::Closed)?;
        let w = Watch {
            ring,
            ec: ring.space_ready(),
            peer: Role::Reader,
            seg: &self.seg,
            anonymous: self.anonymous,
            policy: self.policy,
            last_check: &self.last_check,
            spin_now: &self.spin_now,
        };
        Ok((p, w))
    }

    /// Sends one record made of `parts` (each but the last a multiple of 8
    /// bytes long).
    pub(super) fn send_record(
        &mut self,
        parts: &[&[u8]],
        flags: u32,
        deadline: Option<Deadline>,
    ) -> Result<()> {
        let len = parts.iter().map(|p| p.len()).sum();
        let (p, w) = self.producer()?;
        let mut grant = None;
        w.wait(deadline, || {
            grant = p.try_reserve(len, flags)?;
            Ok(grant.is_some())
        })?;
        let g = grant.ok_or(Error::Corrupt("reservation vanished"))?;
        let mut at = 0;
        for part in parts {
            p.write(&g, at, part)?;
            at += part.len();
        }
        p.commit(g)
    }

    pub(super) fn flush_abort(&mut self, deadline: Option<Deadline>) -> Result<()> {
        if self.abort_pending {
            self.send_record(&[], ABORT, deadline)?;
            self.abort_pending = false;
        }
        Ok(())
    }

    /// The send fast path: `buf` as one record that fits now, nothing
    /// pending, the end ours and open; `false` (nothing sent) otherwise,
    /// including on any error, which the general path then reports. Kept
    /// apart from it so that a send that takes it pays for no more: out of
    /// line, returning a flag in a register, while the `Result` is made in
    /// the caller (the public send is inlined there), so that `Ok` is never
    /// written to memory and read back.
    #[inline(never)]
    fn send_fast(&mut self, buf: &[u8]) -> bool {
        // `ready_fast_tx`, written on the fields (the end is matched
        // first, so that its fields are loaded once).
        let Some(Tx { ring, p: Some(p) }) = &mut self.tx else {
            return false;
        };
        let ring = *ring;
        // A closed handle's `claimed_gen` is 0, never the generation.
        !self.abort_pending
            && self.claimed_gen == fork::generation()
            && ring.claimant_pid(Role::Writer) == self.claimed_pid
            && !ring.is_closed(Role::Reader)
            // Two copies, each with its fence fixed: no flag kept live.
            && if self.light {
                p.push_plain_as(buf, true)
            } else {
                p.push_plain_as(buf, false)
            }
    }

    #[inline(always)]
    pub(super) fn send_inner(&mut self, buf: &[u8], deadline: Option<Deadline>) -> Result<()> {
        if self.send_fast(buf) {
            return Ok(());
        }
        self.send_slow(buf, deadline)
    }

    /// Everything `send_fast` leaves.
    #[inline(never)]
    fn send_slow(&mut self, buf: &[u8], deadline: Option<Deadline>) -> Result<()> {
        self.ready()?;
        self.flush_abort(deadline)?;
        let cap = match &self.tx {
            Some(t) => t.ring.capacity(),
            None => return Err(Error::InvalidArgument("this end cannot send")),
        };
        if spsc::record_size(buf.len() as u64) <= cap as u64 / 2 {
            return self.send_record(&[buf], 0, deadline);
        }
        // Fragments of a quarter ring; the first carries the total length.
        let frag = cap / 4 - spsc::RECORD_HEADER;
        let total = (buf.len() as u64).to_le_bytes();
        let first = frag - 8;
        let r = (|| {
            self.send_record(&[&total, &buf[..first]], FIRST | MORE, deadline)?;
            let mut rest = &buf[first..];
            while !rest.is_empty() {
                let n = rest.len().min(frag);
                let flags = if n < rest.len() { MORE } else { 0 };
                self.send_record(&[&rest[..n]], flags, deadline)?;
                rest = &rest[n..];
            }
            Ok(())
        })();
        if r.is_err() {
            self.abort_pending = true;
        }
        r
    }

    /// Sends `buf` as one message, waiting for room (Python: `send_bytes`).
    /// A message longer than half the ring is streamed in fragments.
    ///
    /// [`Error::Disconnected`] once the receiving end is closed, or when a
    /// send must wait and finds the receiver's process dead. While the ring
    /// has room, a send to a reader that died without closing succeeds
    /// (checking its liveness on every send would cost a `/proc` read).
    #[inline]
    pub fn send_bytes(&mut self, buf: &[u8]) -> Result<()> {
        self.send_inner(buf, None)
    }

    /// Sends `buf` if there is room now, else [`Error::Full`]. A message
    /// longer than half the ring needs the ring to drain while it is sent:
    /// when it does not fit at once, part of it may have gone, and the
    /// receiver drops that part (nothing of it is delivered).
    pub fn try_send_bytes(&mut self, buf: &[u8]) -> Result<()> {
        self.send_inner(buf, Some(Deadline::PASSED))
            .map_err(|e| timeout_to(e, Error::Full, Some(Deadline::PASSED)))
    }

    /// [`send_bytes`](Self::send_bytes) giving up with [`Error::Timeout`]
    /// after `timeout` (then nothing of the message is delivered).
    pub fn send_bytes_timeout(&mut self, buf: &[u8], timeout: Duration) -> Result<()> {
        self.send_inner(buf, Some(Deadline::after(timeout)))
    }

    /// Sends `buf[offset..offset + size]` (`size` `None`: to the end), as
    /// Python's `send_bytes(buf, offset, size)`. A range outside `buf` is
    /// [`Error::InvalidArgument`] and nothing is sent.
    pub fn send_bytes_range(
        &mut self,
        buf: &[u8],
        offset: usize,
        size: Option<usize>,
    ) -> Result<()> {
        if offset > buf.len() {
            return Err(Error::InvalidArgument(
                "offset beyond the end of the buffer",
            ));
        }
        let size = size.unwrap_or(buf.len() - offset);
        if size > buf.len() - offset {
            return Err(Error::InvalidArgument(
                "offset + size beyond the end of the buffer",
            ));
        }
        self.send_bytes(&buf[offset..offset + size])
    }

    pub(super) fn reserve_inner(
        &mut self,
        len: usize,
        deadline: Option<Deadline>,
    ) -> Result<Reservation<'_>> {
        // Fast path: room now, nothing pending. Anything else (including
        // any error) takes the general path below.
        let mut fast = None;
        if !self.abort_pending && self.ready_fast() {
            if let Some(Tx { ring, p: Some(p) }) = &mut self.tx {
                if !ring.is_closed(Role::Reader) {
                    fast = p.try_reserve(len, 0).ok().flatten();
                }
            }
        }
        if let Some(grant) = fast {
            let p = self.tx.as_mut().and_then(|t| t.p.as_mut());
            let p = p.ok_or(Error::Corrupt("reservation vanished"))?;
            let ptr = p.payload_ptr(&grant)?;
            return Ok(Reservation { p, grant, ptr, len });
        }
        self.ready()?;
        let max = self.max_record();
        if len > max {
            return Err(Error::MessageTooLarge { size: len, max });
        }
        self.flush_abort(deadline)?;
        let (p, w) = self.producer()?;
        let mut grant = None;
        w.wait(deadline, || {
            grant = p.try_reserve(len, 0)?;
            Ok(grant.is_some())
        })?;
        let grant = grant.ok_or(Error::Corrupt("reservation vanished"))?;
        let ptr = p.payload_ptr(&grant)?;
        Ok(Reservation { p, grant, ptr, len })
    }

    /// Reserves `len` bytes in the ring to fill in place; the message is
    /// sent by [`Reservation::commit`], and not at all if the reservation
    /// is dropped. [`Error::MessageTooLarge`] at once if `len` exceeds
    /// [`max_record`](Self::max_record).
    pub fn reserve(&mut self, len: usize) -> Result<Reservation<'_>> {
        self.reserve_inner(len, None)
    }

    /// [`reserve`](Self::reserve), or [`Error::Full`] if no room now.
    pub fn try_reserve(&mut self, len: usize) -> Result<Reservation<'_>> {
        self.reserve_inner(len, Some(Deadline::PASSED))
            .map_err(|e| timeout_to(e, Error::Full, Some(Deadline::PASSED)))
    }

    /// [`reserve`](Self::reserve), or [`Error::Timeout`] after `timeout`.
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<Reservation<'_>> {
        self.reserve_inner(len, Some(Deadline::after(timeout)))
    }

    /// Sends the bytes of `value` as one message (at most
    /// [`max_record`](Self::max_record) bytes, else `MessageTooLarge`).
    pub fn send<T: Plain>(&mut self, value: &T) -> Result<()> {
        let size = std::mem::size_of::<T>();
        let r = self.reserve(size)?;
        // SAFETY: the reservation is `size` writable bytes this process
        // alone may write; copying a `T` bytewise (padding included) is an
        // untyped copy, and `T: Plain` is valid for any bits when read back.
        unsafe { std::ptr::copy_nonoverlapping((value as *const T).cast::<u8>(), r.ptr, size) };
        r.commit()
    }

    /// Encodes `value` with postcard and sends it (Python: `send(obj)`).
    #[cfg(feature = "serde")]
    pub fn send_obj<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let bytes = crate::codec::encode(value)?;
        self.send_bytes(&bytes)
    }
}

impl Connection {
    /// Pushes `next`, then the messages of `it`, while each fits now as
    /// one record, all published by one store; leaves the first that does
    /// not in `next` (`None` once `it` ran out). The count pushed.
    fn push_batch<B: AsRef<[u8]>>(
        &mut self,
        next: &mut Option<B>,
        it: &mut impl Iterator<Item = B>,
    ) -> usize {
        if next.is_none() || self.abort_pending || !self.ready_fast() {
            return 0;
        }
        let Some(Tx { ring, p: Some(p) }) = &mut self.tx else {
            return 0;
        };
        if ring.is_closed(Role::Reader) {
            return 0;
        }
        let half = ring.capacity() as u64 / 2;
        let mut n = 0;
        p.begin_batch();
        loop {
            n += p.push_plain_many(next, it);
            // What stopped it: the wrap (the general push pads), no room,
            // or a message too long for one record.
            let Some(m) = next.as_ref().map(|m| m.as_ref()) else {
                break;
            };
            if spsc::record_size(m.len() as u64) > half || !matches!(p.try_push(m, 0), Ok(true)) {
                break;
            }
            *next = it.next();
            n += 1;
        }
        p.end_batch();
        n
    }

    fn send_many_inner<I: IntoIterator<Item = B>, B: AsRef<[u8]>>(
        &mut self,
        msgs: I,
        deadline: Option<Deadline>,
    ) -> Result<usize> {
        let mut it = msgs.into_iter();
        let mut next = it.next();
        let n = self.push_batch(&mut next, &mut it);
        if n > 0 {
            return Ok(n);
        }
        let Some(first) = next else {
            return Ok(0);
        };
        self.send_inner(first.as_ref(), deadline)?;
        let mut next = it.next();
        Ok(1 + self.push_batch(&mut next, &mut it))
    }

    /// Sends several messages in one call: waits (as
    /// [`send_bytes`](Self::send_bytes)) until the first can go, then sends
    /// as many of the following as fit without waiting, published to the
    /// receiver by one store. Returns how many were sent; the iterator's
    /// next item after them was taken but not sent (pass a slice and resend
    /// `&msgs[n..]`). A message longer than half the ring goes alone.
    pub fn send_many<I: IntoIterator<Item = B>, B: AsRef<[u8]>>(
        &mut self,
        msgs: I,
    ) -> Result<usize> {
        self.send_many_inner(msgs, None)
    }

    /// [`send_many`](Self::send_many) without waiting: [`Error::Full`] if
    /// not even the first message fits now.
    pub fn try_send_many<I: IntoIterator<Item = B>, B: AsRef<[u8]>>(
        &mut self,
        msgs: I,
    ) -> Result<usize> {
        let d = Some(Deadline::PASSED);
        self.send_many_inner(msgs, d)
            .map_err(|e| timeout_to(e, Error::Full, d))
    }

    /// [`send_many`](Self::send_many), or [`Error::Timeout`] if the first
    /// message cannot go within `timeout`.
    pub fn send_many_timeout<I: IntoIterator<Item = B>, B: AsRef<[u8]>>(
        &mut self,
        msgs: I,
        timeout: Duration,
    ) -> Result<usize> {
        self.send_many_inner(msgs, Some(Deadline::after(timeout)))
    }
}
