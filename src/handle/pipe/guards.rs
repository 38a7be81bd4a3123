//! The zero-copy guards: a reservation being filled, a message borrowed
//! in place.

use super::*;

/// Space reserved in the ring by [`Connection::reserve`]: fill it, then
/// [`commit`](Reservation::commit). Dropped uncommitted, nothing is sent.
pub struct Reservation<'a> {
    pub(super) p: &'a mut Producer<'static>,
    pub(super) grant: spsc::Grant,
    pub(super) ptr: *mut u8,
    pub(super) len: usize,
}

impl Reservation<'_> {
    /// Sends the message.
    pub fn commit(self) -> Result<()> {
        self.p.commit(self.grant)
    }
}

impl std::ops::Deref for Reservation<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is reserved for this producer alone until
        // commit (the SPSC protocol: outside [head, tail)); the mapping is
        // kept by the borrowed Connection.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::ops::DerefMut for Reservation<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` makes it unique here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// A message borrowed in place by [`Connection::recv_in_place`]; dropping
/// it releases the space to the sender.
pub struct Borrowed<'a> {
    pub(super) c: &'a mut Consumer<'static>,
    /// Always `Some` until `drop` releases it.
    pub(super) rec: Option<Record>,
    pub(super) ptr: *const u8,
    pub(super) len: usize,
}

impl std::ops::Deref for Borrowed<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the record is published (Acquire on its header) and not
        // released: the producer does not write it until `drop`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        if let Some(r) = self.rec.take() {
            let _ = self.c.release(r);
        }
    }
}

impl std::fmt::Debug for Borrowed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Borrowed").field("len", &self.len).finish()
    }
}

impl std::fmt::Debug for Reservation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("len", &self.len)
            .finish()
    }
}
