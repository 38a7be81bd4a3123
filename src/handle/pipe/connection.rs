//! One end of a pipe: its state, accessors and `close`.

use std::cell::Cell;

use super::*;

pub(super) struct Tx {
    pub(super) ring: Ring<'static>,
    pub(super) p: Option<Producer<'static>>,
}

pub(super) struct Rx {
    pub(super) ring: Ring<'static>,
    pub(super) c: Option<Consumer<'static>>,
}

/// One end of a [`Pipe`]: Python's `multiprocessing.connection.Connection`.
///
/// Blocking `op`, non-blocking `try_op`, and timed `op_timeout` (a
/// monotonic deadline taken once; never early), by the crate's rule (see
/// the crate docs, "Timeouts"): `try_op` tries once and reports a busy
/// pipe as [`Error::Empty`] (receives) or [`Error::Full`] (sends);
/// `op_timeout` reports a passed deadline as [`Error::Timeout`], for
/// `Duration::ZERO` too.
/// [`Error::Closed`] after this end's [`close`](Connection::close);
/// [`Error::Disconnected`] once the peer closed or died and everything it
/// sent has been received.
pub struct Connection {
    pub(super) end: End,
    pub(super) tx: Option<Tx>,
    pub(super) rx: Option<Rx>,
    pub(super) seg: Arc<Segment>,
    pub(super) anonymous: bool,
    /// The fork generation this process claimed the end in; 0 (no
    /// generation: they count from 1) until it claims, and once closed.
    pub(super) claimed_gen: u64,
    /// The pid this process claimed the end with: compared with the shared
    /// claimant on every send and receive (another process took it over?).
    pub(super) claimed_pid: u32,
    /// Whether this process was registered for `membarrier` when it
    /// claimed (in the fork generation `claimed_gen`, so still is while
    /// that is current): the fast paths publish with a compiler barrier.
    pub(super) light: bool,
    /// `fork::forks()` when the end was made: whether a copy of this handle
    /// may live in another process.
    pub(super) created_forks: u64,
    /// When the peer's liveness was last checked (monotonic ns), across
    /// calls: short timeouts, `try_` and `poll(0)` see a dead peer too.
    pub(super) last_check: Cell<u64>,
    /// The spin budget now (ns): at most the policy's, halved by each wait
    /// that spun it out and slept, doubled by each that the spin answered
    /// (see `wait.rs`).
    pub(super) spin_now: Cell<u64>,
    pub(super) closed: bool,
    pub(super) policy: WaitPolicy,
    pub(super) partial: Option<Partial>,
    /// A fragmented send failed half-way, or the end was taken over from
    /// another process (which may have left a message half-sent): send an
    /// ABORT record before the next message.
    pub(super) abort_pending: bool,
    /// The receiver took the end over inside a fragmented message, or met
    /// fragments with no first one: it drops records up to the end of that
    /// message.
    pub(super) skipping: bool,
}

static_assertions::assert_impl_all!(Connection: Send);
static_assertions::assert_impl_all!(Pipe: Send, Sync);

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("readable", &self.readable())
            .field("writable", &self.writable())
            .field("closed", &self.closed)
            .field("segment", &self.seg)
            .finish()
    }
}

impl Connection {
    /// The (ring, role) pairs this end plays.
    pub(super) fn roles(&self) -> Vec<(Ring<'static>, Role)> {
        let mut v = Vec::with_capacity(2);
        if let Some(t) = &self.tx {
            v.push((t.ring, Role::Writer));
        }
        if let Some(r) = &self.rx {
            v.push((r.ring, Role::Reader));
        }
        v
    }

    /// (Re)reads positions from shared memory into fresh sides.
    pub(super) fn attach_sides(&mut self) -> Result<()> {
        if let Some(t) = &mut self.tx {
            // SAFETY: this end is claimed by this process: the only producer.
            t.p = Some(unsafe { t.ring.producer()? });
        }
        if let Some(r) = &mut self.rx {
            // SAFETY: this end is claimed by this process: the only consumer.
            r.c = Some(unsafe { r.ring.consumer()? });
        }
        Ok(())
    }
    /// Whether this end can receive (Python: `readable`).
    pub fn readable(&self) -> bool {
        self.rx.is_some()
    }

    /// Whether this end can send (Python: `writable`).
    pub fn writable(&self) -> bool {
        self.tx.is_some()
    }

    /// Which end of its pipe this is, and the segment the pipe lives in
    /// (what a launcher needs to pass the end to a child).
    pub fn end(&self) -> (End, &Segment) {
        (self.end, &self.seg)
    }

    /// Whether [`close`](Self::close) was called on this handle.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The waiting policy of blocked calls.
    pub fn wait_policy(&self) -> WaitPolicy {
        self.policy
    }

    /// Sets the waiting policy of blocked calls.
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.policy = policy;
    }

    /// The largest message that travels as one record, and the largest
    /// zero-copy [`reserve`](Self::reserve) (capacity − 8).
    pub fn max_record(&self) -> usize {
        self.tx
            .as_ref()
            .map(|t| t.ring.max_payload())
            .or_else(|| self.rx.as_ref().map(|r| r.ring.max_payload()))
            .unwrap_or(0)
    }

    /// Closes this end (Python: `close()`): the peer receives what was
    /// sent, then [`Error::Disconnected`]; this handle returns
    /// [`Error::Closed`] from then on. Idempotent. Dropping the handle
    /// closes it too.
    ///
    /// The end closes for everyone only if this process claimed it, or if
    /// it is unclaimed and this process has not forked since the end was
    /// made. Otherwise (another process claimed it, or a forked copy may
    /// use it) only this handle closes: Python's idiom of closing, after a
    /// `fork`, the ends the other process uses leaves them working.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        // The peer drops a partial message on disconnection anyway.
        self.abort_pending = false;
        if self.closes_for_all() {
            for (ring, role) in self.roles() {
                ring.close(role);
            }
        }
        self.closed = true;
        // Claimed in no generation: the fast paths' one test of the
        // generation also stands for "open" (every other path tests
        // `closed` first).
        self.claimed_gen = 0;
    }
}

impl Drop for Connection {
    /// Closes the end as [`close`](Connection::close) does: for everyone
    /// only if this process claimed it, or it is unclaimed and was never
    /// copied by a `fork` (an end dropped unused disconnects its peer).
    fn drop(&mut self) {
        self.close();
    }
}
