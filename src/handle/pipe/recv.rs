//! The receive calls, on top of `fragments.rs`.

use std::time::Duration;

use super::*;

impl Connection {
    pub(super) fn consumer(&mut self) -> Result<&mut Consumer<'static>> {
        self.rx
            .as_mut()
            .and_then(|r| r.c.as_mut())
            .ok_or(Error::Closed)
    }

    pub(super) fn take_whole(&mut self) -> Vec<u8> {
        self.partial.take().map(|p| p.buf).unwrap_or_default()
    }

    pub(super) fn recv_vec(&mut self, limit: Limit, deadline: Option<Deadline>) -> Result<Vec<u8>> {
        match self.next(limit, deadline)? {
            Next::Whole => Ok(self.take_whole()),
            Next::Record(r) => {
                let c = self.consumer()?;
                let mut v = vec![0u8; r.len()];
                c.read(&r, 0, &mut v)?;
                c.release(r)?;
                Ok(v)
            }
        }
    }

    /// Receives the next message, waiting for one (Python: `recv_bytes()`).
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>> {
        self.recv_vec(Limit::Any, None)
    }

    /// The next message if one is there, else [`Error::Empty`] (also while
    /// a fragmented message is only partly there: what arrived is kept).
    pub fn try_recv_bytes(&mut self) -> Result<Vec<u8>> {
        let d = Some(Deadline::PASSED);
        self.recv_vec(Limit::Any, d)
            .map_err(|e| timeout_to(e, Error::Empty, d))
    }

    /// [`recv_bytes`](Self::recv_bytes), or [`Error::Timeout`] after
    /// `timeout` (never earlier).
    pub fn recv_bytes_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_vec(Limit::Any, Some(Deadline::after(timeout)))
    }

    /// [`recv_bytes`](Self::recv_bytes) refusing messages longer than
    /// `maxlength` with [`Error::MessageTooLarge`]; the message stays
    /// (Python: `recv_bytes(maxlength)`, where it would be lost).
    pub fn recv_bytes_max(&mut self, maxlength: usize) -> Result<Vec<u8>> {
        self.recv_vec(Limit::Max(maxlength), None)
    }

    /// [`recv_bytes_max`](Self::recv_bytes_max) if a message is there,
    /// else [`Error::Empty`] (try once: the crate's rule for `try_`).
    pub fn try_recv_bytes_max(&mut self, maxlength: usize) -> Result<Vec<u8>> {
        let d = Some(Deadline::PASSED);
        self.recv_vec(Limit::Max(maxlength), d)
            .map_err(|e| timeout_to(e, Error::Empty, d))
    }

    /// [`recv_bytes_max`](Self::recv_bytes_max), or [`Error::Timeout`]
    /// after `timeout` (the deadline passed; never earlier).
    pub fn recv_bytes_max_timeout(
        &mut self,
        maxlength: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>> {
        self.recv_vec(Limit::Max(maxlength), Some(Deadline::after(timeout)))
    }

    /// The receive fast path: a single record is there and fits `out`;
    /// `None` (nothing consumed) otherwise, including on any error, which
    /// the general path then reports. Kept apart from it so that a receive
    /// that takes it pays for no more: out of line, returning the length
    /// in registers, while the `Result` is made in the caller (the public
    /// receive is inlined there), as for `send_fast`.
    #[inline(never)]
    fn recv_fast(&mut self, out: &mut [u8]) -> Option<usize> {
        // `ready_fast_rx`, written on the fields (the end is matched
        // first, so that its fields are loaded once).
        let Some(Rx { ring, c: Some(c) }) = &mut self.rx else {
            return None;
        };
        // A closed handle's `claimed_gen` is 0, never the generation.
        if self.partial.is_some()
            || self.skipping
            || self.claimed_gen != fork::generation()
            || ring.claimant_pid(Role::Reader) != self.claimed_pid
        {
            return None;
        }
        // Two copies, each with its fence fixed: no flag kept live.
        if self.light {
            c.pop_plain_as(out, true)
        } else {
            c.pop_plain_as(out, false)
        }
    }

    #[inline(always)]
    pub(super) fn recv_into(
        &mut self,
        buf: &mut [u8],
        offset: usize,
        deadline: Option<Deadline>,
    ) -> Result<usize> {
        if let Some(out) = buf.get_mut(offset..) {
            if let Some(len) = self.recv_fast(out) {
                return Ok(len);
            }
        }
        self.recv_slow(buf, offset, deadline)
    }

    /// Everything `recv_fast` leaves.
    #[inline(never)]
    fn recv_slow(
        &mut self,
        buf: &mut [u8],
        offset: usize,
        deadline: Option<Deadline>,
    ) -> Result<usize> {
        if offset > buf.len() {
            return Err(Error::InvalidArgument(
                "offset beyond the end of the buffer",
            ));
        }
        let out = &mut buf[offset..];
        match self.next(Limit::Buffer(out.len()), deadline)? {
            Next::Whole => {
                let v = self.take_whole();
                out[..v.len()].copy_from_slice(&v);
                Ok(v.len())
            }
            Next::Record(r) => {
                let c = self.consumer()?;
                let len = r.len();
                c.read(&r, 0, &mut out[..len])?;
                c.release(r)?;
                Ok(len)
            }
        }
    }

    /// Receives the next message into `buf`, returning its length (Python:
    /// `recv_bytes_into`). If `buf` is too short: [`Error::BufferTooShort`]
    /// with the message's exact length, and the message stays, to be
    /// received again with a larger buffer.
    #[inline]
    pub fn recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.recv_into(buf, 0, None)
    }

    /// [`recv_bytes_into`](Self::recv_bytes_into) writing at `buf[offset..]`
    /// (an offset past the end is [`Error::InvalidArgument`]).
    pub fn recv_bytes_into_at(&mut self, buf: &mut [u8], offset: usize) -> Result<usize> {
        self.recv_into(buf, offset, None)
    }

    /// [`recv_bytes_into`](Self::recv_bytes_into), or [`Error::Empty`].
    pub fn try_recv_bytes_into(&mut self, buf: &mut [u8]) -> Result<usize> {
        let d = Some(Deadline::PASSED);
        self.recv_into(buf, 0, d)
            .map_err(|e| timeout_to(e, Error::Empty, d))
    }

    /// [`recv_bytes_into`](Self::recv_bytes_into), or [`Error::Timeout`].
    pub fn recv_bytes_into_timeout(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        self.recv_into(buf, 0, Some(Deadline::after(timeout)))
    }

    /// Whether a message can be received without waiting, waiting up to
    /// `timeout` (`None`: for ever) for one. Never consumes anything. Like
    /// Python's, it also says `true` once the peer is gone (the next receive
    /// returns [`Error::Disconnected`] without waiting).
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<bool> {
        self.ready()?;
        if self.partial.as_ref().is_some_and(|p| p.done) {
            return Ok(true);
        }
        let deadline = match timeout {
            Some(Duration::ZERO) => Some(Deadline::PASSED),
            Some(t) => Some(Deadline::after(t)),
            None => None,
        };
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
        match w.wait(deadline, || Ok(c.try_peek()?.is_some())) {
            Ok(()) | Err(Error::Disconnected) => Ok(true),
            Err(Error::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(super) fn recv_typed<T: Plain>(&mut self, deadline: Option<Deadline>) -> Result<T> {
        let size = std::mem::size_of::<T>();
        let mut out = std::mem::MaybeUninit::<T>::uninit();
        match self.next(Limit::Exact(size), deadline)? {
            Next::Whole => {
                let v = self.take_whole();
                // SAFETY: `v` holds exactly `size` bytes (Limit::Exact).
                unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), out.as_mut_ptr().cast(), size) };
            }
            Next::Record(r) => {
                let c = self.consumer()?;
                let src = c.payload_ptr(&r)?;
                // SAFETY: the record is published and ours until released,
                // `size` bytes long (Limit::Exact); the copy is untyped.
                unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr().cast(), size) };
                c.release(r)?;
            }
        }
        // SAFETY: all `size` bytes were written, and `T: Plain` is valid for
        // any bit pattern.
        Ok(unsafe { out.assume_init() })
    }

    /// Receives a message holding one `T`; a message of another length is
    /// [`Error::LengthMismatch`] and stays in place.
    pub fn recv<T: Plain>(&mut self) -> Result<T> {
        self.recv_typed(None)
    }

    /// [`recv`](Self::recv), or [`Error::Empty`].
    pub fn try_recv<T: Plain>(&mut self) -> Result<T> {
        let d = Some(Deadline::PASSED);
        self.recv_typed(d)
            .map_err(|e| timeout_to(e, Error::Empty, d))
    }

    /// [`recv`](Self::recv), or [`Error::Timeout`].
    pub fn recv_timeout<T: Plain>(&mut self, timeout: Duration) -> Result<T> {
        self.recv_typed(Some(Deadline::after(timeout)))
    }

    /// Receives a message and decodes it with postcard (Python: `recv()`).
    #[cfg(feature = "serde")]
    pub fn recv_obj<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        crate::codec::decode(&self.recv_bytes()?)
    }

    pub(super) fn in_place(&mut self, deadline: Option<Deadline>) -> Result<Borrowed<'_>> {
        // Fast path: a single record is there. Anything else (including
        // any error) takes the general path below.
        let mut fast = None;
        if self.partial.is_none() && !self.skipping && self.ready_fast() {
            if let Some(Rx { c: Some(c), .. }) = &mut self.rx {
                fast = c.try_peek().ok().flatten().filter(|r| r.flags() == 0);
            }
        }
        let next = match fast {
            Some(r) => Next::Record(r),
            None => self.next(Limit::InPlace(self.max_record()), deadline)?,
        };
        let max = self.max_record();
        match next {
            Next::Whole => Err(Error::MessageTooLarge {
                size: self.partial.as_ref().map_or(0, |p| p.total),
                max,
            }),
            Next::Record(r) => {
                let c = self.consumer()?;
                let ptr = c.payload_ptr(&r)?;
                let len = r.len();
                Ok(Borrowed {
                    c,
                    rec: Some(r),
                    ptr,
                    len,
                })
            }
        }
    }

    /// Borrows the next message in place; dropping the [`Borrowed`]
    /// releases it. A message that was sent in fragments cannot be borrowed:
    /// [`Error::MessageTooLarge`], and it stays for `recv_bytes`.
    pub fn recv_in_place(&mut self) -> Result<Borrowed<'_>> {
        self.in_place(None)
    }

    /// [`recv_in_place`](Self::recv_in_place), or [`Error::Empty`].
    pub fn try_recv_in_place(&mut self) -> Result<Borrowed<'_>> {
        let d = Some(Deadline::PASSED);
        self.in_place(d).map_err(|e| timeout_to(e, Error::Empty, d))
    }

    /// [`recv_in_place`](Self::recv_in_place), or [`Error::Timeout`].
    pub fn recv_in_place_timeout(&mut self, timeout: Duration) -> Result<Borrowed<'_>> {
        self.in_place(Some(Deadline::after(timeout)))
    }
}

impl Connection {
    /// Hands up to `max` single-record messages that are there now to `f`
    /// in place, releasing them to the sender by one store (also when `f`
    /// panics: those it returned from are released). The count.
    fn pop_batch(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        /// Ends the batch however the loop is left.
        struct Batch<'c>(&'c mut Consumer<'static>);
        impl Drop for Batch<'_> {
            fn drop(&mut self) {
                self.0.end_batch();
            }
        }
        if self.partial.is_some() || self.skipping || !self.ready_fast_rx() {
            return 0;
        }
        let Some(Rx { c: Some(c), .. }) = &mut self.rx else {
            return 0;
        };
        c.begin_batch();
        let b = Batch(c);
        let mut n = 0;
        // The fast loop, and past what stops it (padding, a flagged or
        // corrupt record) the general one-record path, which skips padding
        // and leaves anything else to the caller.
        loop {
            n += b.0.pop_plain_many(max - n, &mut f);
            if n >= max || !matches!(b.0.try_pop_plain_with(&mut f), Ok(true)) {
                break;
            }
            n += 1;
        }
        drop(b);
        n
    }

    fn recv_many_inner(
        &mut self,
        out: &mut Vec<Vec<u8>>,
        max: usize,
        deadline: Option<Deadline>,
    ) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let n = self.pop_batch(max, |m| out.push(m.to_vec()));
        if n > 0 {
            return Ok(n);
        }
        out.push(self.recv_vec(Limit::Any, deadline)?);
        Ok(1 + self.pop_batch(max - 1, |m| out.push(m.to_vec())))
    }

    /// Receives several messages in one call: waits (as
    /// [`recv_bytes`](Self::recv_bytes)) for the first, then appends to
    /// `out` up to `max` in all of those already there, released to the
    /// sender by one store. Returns how many were appended (0 only for
    /// `max == 0`). Each message is a `Vec` of its own (one allocation
    /// each): [`recv_many_in_place`](Self::recv_many_in_place) allocates
    /// nothing.
    pub fn recv_many(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> Result<usize> {
        self.recv_many_inner(out, max, None)
    }

    /// [`recv_many`](Self::recv_many) without waiting: [`Error::Empty`] if
    /// no message is there.
    pub fn try_recv_many(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> Result<usize> {
        let d = Some(Deadline::PASSED);
        self.recv_many_inner(out, max, d)
            .map_err(|e| timeout_to(e, Error::Empty, d))
    }

    /// [`recv_many`](Self::recv_many), or [`Error::Timeout`] if no message
    /// comes within `timeout`.
    pub fn recv_many_timeout(
        &mut self,
        out: &mut Vec<Vec<u8>>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize> {
        self.recv_many_inner(out, max, Some(Deadline::after(timeout)))
    }

    fn recv_many_in_place_inner(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8]),
        deadline: Option<Deadline>,
    ) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let n = self.pop_batch(max, &mut f);
        if n > 0 {
            return Ok(n);
        }
        // The first message through the general path: in place, or whole
        // (a message sent in fragments cannot be borrowed).
        match self.in_place(deadline).map(|m| f(&m)) {
            Ok(()) => {}
            Err(Error::MessageTooLarge { .. }) => f(&self.recv_vec(Limit::Any, deadline)?),
            Err(e) => return Err(e),
        }
        Ok(1 + self.pop_batch(max - 1, f))
    }

    /// [`recv_many`](Self::recv_many) without copying or allocating: waits
    /// for the first message, then hands `f` up to `max` in all of those
    /// already there, each read in place in the ring (a message sent in
    /// fragments is handed whole, after one copy), and releases them to
    /// the sender by one store. Returns how many `f` was handed. If `f`
    /// panics, the message it was handed stays, those before are released.
    pub fn recv_many_in_place(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
        self.recv_many_in_place_inner(max, f, None)
    }

    /// [`recv_many_in_place`](Self::recv_many_in_place) without waiting:
    /// [`Error::Empty`] if no message is there.
    pub fn try_recv_many_in_place(&mut self, max: usize, f: impl FnMut(&[u8])) -> Result<usize> {
        let d = Some(Deadline::PASSED);
        self.recv_many_in_place_inner(max, f, d)
            .map_err(|e| timeout_to(e, Error::Empty, d))
    }

    /// [`recv_many_in_place`](Self::recv_many_in_place), or
    /// [`Error::Timeout`] if no message comes within `timeout`.
    pub fn recv_many_in_place_timeout(
        &mut self,
        max: usize,
        f: impl FnMut(&[u8]),
        timeout: Duration,
    ) -> Result<usize> {
        self.recv_many_in_place_inner(max, f, Some(Deadline::after(timeout)))
    }
}
