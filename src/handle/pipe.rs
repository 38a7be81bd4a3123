//! `Pipe` and `Connection`: Python's `multiprocessing.Pipe()` over one or two
//! [`SpscRing`]s in a shared segment.
//!
//! See [`Pipe`] for the mapping to Python and the protocol.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use crate::raw::spsc::Wake;
use crate::raw::spsc::{self, Consumer, Producer, Record, Ring, Role, ABORT, FIRST, MORE};
use crate::raw::SpscRing;
use crate::segment::header::Spec;
use crate::segment::{Fingerprint, Kind, Options, Place, Segment};
use crate::sys::clock::{monotonic_ns, Deadline};
use crate::sys::{fork, membarrier, proc};
use crate::{Error, Plain, Result};

/// The longest a blocked call sleeps before checking the peer's liveness.
const SLICE: Duration = Duration::from_millis(100);
/// The slice when this process could not issue `membarrier` (see `Wake`).
const SHORT_SLICE: Duration = Duration::from_millis(1);
/// How long a spinning waiter spins without yielding its CPU.
const PURE_SPIN: Duration = Duration::from_micros(5);
/// A hostile peer may announce any total length: never preallocate more.
const MAX_PREALLOC: usize = 64 << 20;

/// How a blocked call waits: spin for a budget, then sleep on the futex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitPolicy {
    spin: Duration,
}

impl WaitPolicy {
    /// Sleep on the futex after a few hundred pause instructions: the
    /// cheapest for the CPU, the slowest answer (a futex wake, ~25 µs on a
    /// small VM).
    pub const fn park() -> Self {
        WaitPolicy {
            spin: Duration::ZERO,
        }
    }

    /// Spin (re-checking the ring) for `spin`, then sleep on the futex.
    pub const fn spin_then_park(spin: Duration) -> Self {
        WaitPolicy { spin }
    }

    /// The spinning budget.
    pub const fn spin(&self) -> Duration {
        self.spin
    }
}

impl Default for WaitPolicy {
    /// Spin 50 µs, then sleep.
    fn default() -> Self {
        WaitPolicy::spin_then_park(Duration::from_micros(50))
    }
}

/// Which end of a [`Pipe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The first end: sends on ring 0 and receives on ring 1 (duplex), or
    /// the read end (simplex).
    A,
    /// The second end: sends on ring 1 and receives on ring 0 (duplex), or
    /// the write end (simplex).
    B,
}

fn spec(rings: u64, capacity: usize) -> Result<Spec> {
    let region = SpscRing::region_size(capacity)? as u64;
    Ok(Spec {
        kind: Kind::Pipe,
        fingerprint: Fingerprint::NONE,
        len: rings,
        capacity: capacity as u64,
        object_size: rings * region,
        object_align: 64,
    })
}

/// A pipe in a named (or anonymous) segment: one ring (simplex) or two
/// (duplex). Python: `multiprocessing.Pipe(duplex)`. A `Pipe` handle only
/// holds the segment; [`connect`](Pipe::connect) claims an end.
///
/// | Python                                  | shmprim                                   |
/// |-----------------------------------------|-------------------------------------------|
/// | `a, b = Pipe()`                         | `let (a, b) = Pipe::anonymous(cap)?`      |
/// | `r, w = Pipe(duplex=False)`             | `let (r, w) = Pipe::anonymous_simplex(cap)?` |
/// | `c.send_bytes(buf, offset, size)`       | [`Connection::send_bytes_range`]          |
/// | `c.recv_bytes(maxlength)`               | [`Connection::recv_bytes_max`]            |
/// | `c.recv_bytes_into(buf, offset)`        | [`Connection::recv_bytes_into_at`]        |
/// | `c.send(obj)` / `c.recv()`              | `send_obj` / `recv_obj` (feature `serde`) |
/// | `c.poll(timeout)`                       | [`Connection::poll`]                      |
/// | `c.close()`                             | [`Connection::close`]                     |
/// | `c.readable` / `c.writable`             | [`Connection::readable`] / [`Connection::writable`] |
///
/// ## Messages
///
/// A message of up to half the ring travels as one record. A longer one is
/// cut into fragments of a quarter ring: the first carries the total length,
/// so a receiver knows the exact size before it consumes anything
/// ([`Error::BufferTooShort`] carries it, and `recv_bytes` allocates once).
/// The receiver reassembles fragments in the `Connection`; if a receive
/// times out half-way, what arrived stays there and the next receive goes
/// on from it, so nothing is lost. A sender whose fragmented send fails
/// half-way (timeout, `try_`) sends an abort record before its next
/// message, and the receiver drops the partial message: from both sides'
/// point of view, that message was not sent.
///
/// ## Ends, claims, `fork`
///
/// A named pipe's ends are claimed with [`Pipe::connect`]: each end once
/// (a second claim is [`Error::AlreadyClaimed`], even after its claimant
/// died or closed: an end is never reused, because a half-sent fragmented
/// message or a closed flag would confuse the next user). The claim
/// records the claimant's pid and start time, so the peer notices its death.
///
/// An anonymous pipe's two ends are both made in the creating process;
/// after `fork`, each process keeps using the end it wants. An end claims
/// itself lazily, on its first use in a process (or with
/// [`Connection::claim`]); a child that wants its death noticed before its
/// first operation should call `claim()` right after the fork. Dropping an
/// end closes it only in the process that last claimed it, so a parent may
/// drop the child's end after the fork without disturbing the child, as
/// long as the parent never used that end itself (or the child claimed it
/// first). An end dropped or closed unused in a process that has not forked
/// since the end was made closes for everyone (its peer sees
/// `Disconnected`). Once another process claims an end, this process's
/// copy returns [`Error::AlreadyClaimed`] (until it calls
/// [`Connection::claim`] to take the end back).
///
/// An unclaimed anonymous peer is taken to live in the creating process:
/// once the creator has exited, a waiter whose peer end was never claimed
/// sees `Disconnected`, even if a process forked from the creator still
/// holds that end unused. A process that receives an end through `fork`
/// and may outlive the creator before its first operation should call
/// `claim()` right after the fork.
///
/// ## Waiting
///
/// A blocked call first spins for the [`WaitPolicy`]'s budget (default
/// 50 µs: on a small machine a futex wake costs about 25 µs, so a peer that
/// answers quickly is caught without a system call; after the first 5 µs
/// the spinner also yields its CPU between checks, in case the peer waits
/// for it), then sleeps on the
/// ring's event count in slices of at most 100 ms, checking between slices
/// whether the peer closed or died. A publisher issues `FUTEX_WAKE` only
/// when the other side announced that it sleeps.
///
/// ## Example
///
/// ```
/// use shmprim::Pipe;
/// let (mut a, mut b) = Pipe::anonymous(4096).unwrap();
/// a.send_bytes(b"ping").unwrap();
/// assert_eq!(b.recv_bytes().unwrap(), b"ping");
/// b.send_bytes(b"").unwrap(); // empty messages are messages
/// assert_eq!(a.recv_bytes().unwrap(), b"");
/// ```
#[derive(Debug, Clone)]
pub struct Pipe {
    seg: Arc<Segment>,
    rings: [Option<Ring<'static>>; 2],
    duplex: bool,
}

impl Pipe {
    /// A sensible ring capacity per direction: 256 KiB.
    pub const DEFAULT_CAPACITY: usize = 256 * 1024;

    fn make(place: Place<'_>, capacity: usize, duplex: bool, opts: &Options) -> Result<Pipe> {
        let n = if duplex { 2 } else { 1 };
        let spec = spec(n, capacity)?;
        let region = SpscRing::region_size(capacity)?;
        let init = |p: *mut u8| {
            for i in 0..n as usize {
                // SAFETY: the object is `n * region` bytes, 64-aligned, fresh
                // and unpublished; each ring gets its own 64-aligned region
                // (region is a multiple of 64).
                unsafe { SpscRing::init(p.add(i * region), capacity)? };
            }
            Ok(())
        };
        let seg = Segment::create_object(place, &spec, opts, None, init)?;
        Self::checked(seg)
    }

    /// Creates a duplex pipe under `name` with `capacity` bytes per
    /// direction (a power of two, 256 B to 2 GiB).
    pub fn create(name: &str, capacity: usize) -> Result<Pipe> {
        Self::make(Place::Named(name), capacity, true, &Options::default())
    }

    /// Creates a one-way pipe under `name`: end A reads, end B writes.
    pub fn create_simplex(name: &str, capacity: usize) -> Result<Pipe> {
        Self::make(Place::Named(name), capacity, false, &Options::default())
    }

    /// [`Pipe::create`] / [`Pipe::create_simplex`] with options.
    pub fn create_with(name: &str, capacity: usize, duplex: bool, opts: &Options) -> Result<Pipe> {
        Self::make(Place::Named(name), capacity, duplex, opts)
    }

    /// Opens the pipe under `name`.
    pub fn open(name: &str) -> Result<Pipe> {
        Self::open_with(name, &Options::default())
    }

    /// [`Pipe::open`] with options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Pipe> {
        let probe = Spec {
            kind: Kind::Pipe,
            fingerprint: Fingerprint::NONE,
            len: 0,
            capacity: 0,
            object_size: 0,
            object_align: 64,
        };
        Self::checked(Segment::open_object(name, &probe, opts)?)
    }

    /// Opens a pipe in an already opened segment (fuzz targets).
    #[cfg(fuzzing)]
    pub fn __attach(seg: Segment) -> Result<Pipe> {
        Self::checked(seg)
    }

    fn checked(seg: Segment) -> Result<Pipe> {
        let info = seg.info();
        let n = info.len;
        if n != 1 && n != 2 {
            return Err(Error::Corrupt("pipe ring count"));
        }
        let cap = usize::try_from(info.capacity).map_err(|_| Error::Corrupt("pipe capacity"))?;
        let region = SpscRing::region_size(cap).map_err(|_| Error::Corrupt("pipe capacity"))?;
        if info.object_size != n * region as u64 || seg.data_len() < n as usize * region {
            return Err(Error::Corrupt("pipe object size"));
        }
        let mut rings = [None, None];
        for (i, r) in rings.iter_mut().enumerate().take(n as usize) {
            // SAFETY: the object spans `n * region` bytes of the mapping
            // (checked above), 64-aligned; the mapping lives as long as the
            // `Arc<Segment>` that every holder of these views keeps.
            let ring = unsafe { SpscRing::attach(seg.data_ptr().add(i * region), region)? };
            if ring.capacity() != cap {
                return Err(Error::Corrupt("ring capacity differs from the header's"));
            }
            *r = Some(ring);
        }
        fork::register();
        membarrier::register();
        Ok(Pipe {
            seg: Arc::new(seg),
            rings,
            duplex: n == 2,
        })
    }

    /// A duplex pipe in an anonymous segment, shared with children forked
    /// afterwards: Python's `Pipe()`. Returns its two ends.
    pub fn anonymous(capacity: usize) -> Result<(Connection, Connection)> {
        let p = Self::make(Place::Anonymous, capacity, true, &Options::default())?;
        Ok((p.end(End::A, true), p.end(End::B, true)))
    }

    /// A one-way anonymous pipe: Python's `Pipe(duplex=False)`. Returns
    /// `(reader, writer)`.
    pub fn anonymous_simplex(capacity: usize) -> Result<(Connection, Connection)> {
        let p = Self::make(Place::Anonymous, capacity, false, &Options::default())?;
        Ok((p.end(End::A, true), p.end(End::B, true)))
    }

    /// (ring to send on, ring to receive from) of `end`.
    fn rings_of(&self, end: End) -> (Option<Ring<'static>>, Option<Ring<'static>>) {
        match (self.duplex, end) {
            (true, End::A) => (self.rings[0], self.rings[1]),
            (true, End::B) => (self.rings[1], self.rings[0]),
            (false, End::A) => (None, self.rings[0]),
            (false, End::B) => (self.rings[0], None),
        }
    }

    fn end(&self, end: End, anonymous: bool) -> Connection {
        let (tx, rx) = self.rings_of(end);
        Connection {
            end,
            tx: tx.map(|r| Tx { ring: r, p: None }),
            rx: rx.map(|r| Rx { ring: r, c: None }),
            seg: self.seg.clone(),
            anonymous,
            claimed_gen: None,
            claimed_pid: 0,
            created_forks: fork::forks(),
            last_check: Cell::new(0),
            closed: false,
            policy: WaitPolicy::default(),
            partial: None,
            abort_pending: false,
            skipping: false,
        }
    }

    /// Claims `end` for this process and returns it as a [`Connection`].
    /// [`Error::AlreadyClaimed`] if it was claimed before (by anyone, ever).
    pub fn connect(&self, end: End) -> Result<Connection> {
        let mut c = self.end(end, false);
        let me = proc::pid();
        let start = proc::start_time(me).unwrap_or(0);
        let roles = c.roles();
        for (i, (ring, role)) in roles.iter().enumerate() {
            if let Err(e) = ring.claim(*role, me, start, true) {
                for (r, role) in &roles[..i] {
                    r.unclaim(*role);
                }
                return Err(e);
            }
        }
        c.attach_sides()?;
        // A child connecting on a pipe opened before its fork registers here.
        membarrier::register();
        c.claimed_gen = Some(fork::generation());
        c.claimed_pid = me;
        Ok(c)
    }

    /// Whether it has two directions.
    pub fn is_duplex(&self) -> bool {
        self.duplex
    }

    /// Bytes per direction.
    pub fn capacity(&self) -> usize {
        self.rings[0].map_or(0, |r| r.capacity())
    }

    /// The segment it lives in.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

struct Tx {
    ring: Ring<'static>,
    p: Option<Producer<'static>>,
}

struct Rx {
    ring: Ring<'static>,
    c: Option<Consumer<'static>>,
}

/// A fragmented message being reassembled.
#[derive(Debug)]
struct Partial {
    buf: Vec<u8>,
    total: usize,
    done: bool,
}

/// What a receive can accept, checked before anything is consumed.
#[derive(Clone, Copy)]
enum Limit {
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
enum Next {
    /// A single record, in the ring.
    Record(Record),
    /// A reassembled message, in `Connection::partial`.
    Whole,
}

/// One end of a [`Pipe`]: Python's `multiprocessing.connection.Connection`.
///
/// Blocking `op`, non-blocking `try_op` ([`Error::Empty`] / [`Error::Full`]),
/// and timed `op_timeout` (a monotonic deadline taken once; never early).
/// [`Error::Closed`] after this end's [`close`](Connection::close);
/// [`Error::Disconnected`] once the peer closed or died and everything it
/// sent has been received.
pub struct Connection {
    end: End,
    tx: Option<Tx>,
    rx: Option<Rx>,
    seg: Arc<Segment>,
    anonymous: bool,
    /// The fork generation this process claimed the end in.
    claimed_gen: Option<u64>,
    /// The pid this process claimed the end with: compared with the shared
    /// claimant on every send and receive (another process took it over?).
    claimed_pid: u32,
    /// `fork::forks()` when the end was made: whether a copy of this handle
    /// may live in another process.
    created_forks: u64,
    /// When the peer's liveness was last checked (monotonic ns), across
    /// calls: short timeouts, `try_` and `poll(0)` see a dead peer too.
    last_check: Cell<u64>,
    closed: bool,
    policy: WaitPolicy,
    partial: Option<Partial>,
    /// A fragmented send failed half-way, or the end was taken over from
    /// another process (which may have left a message half-sent): send an
    /// ABORT record before the next message.
    abort_pending: bool,
    /// The receiver took the end over inside a fragmented message, or met
    /// fragments with no first one: it drops records up to the end of that
    /// message.
    skipping: bool,
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

/// What a wait watches: one ring, one side's event count, the peer's role.
struct Watch<'a> {
    ring: Ring<'static>,
    ec: &'static Wake,
    peer: Role,
    seg: &'a Segment,
    anonymous: bool,
    policy: WaitPolicy,
    /// The connection's last liveness check (monotonic ns).
    last_check: &'a Cell<u64>,
}

impl Watch<'_> {
    /// Whether the peer is gone: its closed flag always, its process only
    /// when the last such check is more than a slice old (a `/proc` read).
    fn peer_gone_checked(&self) -> bool {
        let now = monotonic_ns();
        if now.saturating_sub(self.last_check.get()) >= SLICE.as_nanos() as u64 {
            let gone = self.peer_gone();
            // A peer found gone is looked at again on the next call (it
            // does not come back), so every later call says so at once.
            self.last_check.set(if gone { 0 } else { now });
            gone
        } else {
            self.ring.is_closed(self.peer)
        }
    }

    /// Whether the peer closed its end or its process is gone.
    fn peer_gone(&self) -> bool {
        if self.ring.is_closed(self.peer) {
            return true;
        }
        let (pid, start) = self.ring.claimant(self.peer);
        if pid == 0 {
            // Not claimed yet: an anonymous pipe's peer is (still) the
            // creating process; a named pipe's peer may connect later.
            return self.anonymous && !self.seg.creator_alive();
        }
        !proc::is_alive(pid, start)
    }

    /// Waits until `ready()` says yes: `Ok(())`, or `Disconnected` (the peer
    /// is gone and `ready()` still says no), or `Timeout` at `deadline`.
    fn wait(
        &self,
        deadline: Option<Deadline>,
        mut ready: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        if ready()? {
            return Ok(());
        }
        if deadline == Some(Deadline::PASSED) {
            return Err(if self.peer_gone_checked() && !ready()? {
                Error::Disconnected
            } else {
                Error::Timeout
            });
        }
        // Spin.
        if self.policy.spin > Duration::ZERO {
            // Pure spinning catches a peer running on another CPU; past
            // PURE_SPIN the spinner also yields, so that a peer waiting for
            // this very CPU (a busy or small machine) runs at once instead
            // of after our whole budget.
            let start = monotonic_ns();
            let end = start.saturating_add(self.policy.spin.as_nanos() as u64);
            let pure = start.saturating_add(PURE_SPIN.as_nanos() as u64);
            let mut i = 0u32;
            loop {
                // One pause per check: a pause can cost over 100 cycles, and
                // the answer should be seen as soon as it lands.
                std::hint::spin_loop();
                if ready()? {
                    return Ok(());
                }
                i = i.wrapping_add(1);
                if i % 64 != 0 {
                    continue;
                }
                let now = monotonic_ns();
                if self.ring.is_closed(self.peer) || now >= end {
                    break;
                }
                if deadline.is_some_and(Deadline::has_passed) {
                    // A deadline inside the spin budget: one last look.
                    return if ready()? {
                        Ok(())
                    } else {
                        Err(Error::Timeout)
                    };
                }
                if now >= pure {
                    std::thread::yield_now();
                }
            }
        } else {
            let mut b = crate::raw::backoff::Backoff::new();
            while !b.is_completed() {
                b.spin();
                if ready()? {
                    return Ok(());
                }
            }
        }
        // Sleep in slices. The closed flag is checked before every sleep;
        // the peer's process (a /proc read, ~10 µs) once per slice of
        // waiting, however often the sleep is interrupted: a death is seen
        // within about two slices.
        loop {
            let key = self.ec.prepare();
            match ready() {
                Ok(false) => {}
                Ok(true) => {
                    self.ec.cancel(key);
                    return Ok(());
                }
                Err(e) => {
                    // Withdraw the announcement, or every publish would
                    // pay a FUTEX_WAKE from now on.
                    self.ec.cancel(key);
                    return Err(e);
                }
            }
            if self.peer_gone_checked() {
                self.ec.cancel(key);
                // Whatever it published before closing is visible now.
                return if ready()? {
                    Ok(())
                } else {
                    Err(Error::Disconnected)
                };
            }
            // A waiter whose heavy barrier failed may miss a light notifier:
            // it sleeps in short slices instead (bounded, never a hang).
            let slice = Deadline::after(if key.covered() { SLICE } else { SHORT_SLICE });
            let until = match deadline {
                Some(d) if d < slice => d,
                _ => slice,
            };
            match self.ec.wait(key, Some(until)) {
                Ok(()) => {}
                Err(Error::Timeout) if Some(until) == deadline => {
                    return if ready()? {
                        Ok(())
                    } else {
                        Err(Error::Timeout)
                    };
                }
                Err(Error::Timeout) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn timeout_to(e: Error, try_err: Error, deadline: Option<Deadline>) -> Error {
    match e {
        Error::Timeout if deadline == Some(Deadline::PASSED) => try_err,
        e => e,
    }
}

impl Connection {
    /// The (ring, role) pairs this end plays.
    fn roles(&self) -> Vec<(Ring<'static>, Role)> {
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
    fn attach_sides(&mut self) -> Result<()> {
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

    /// Records this process as the end's user (needed once per process:
    /// done by the first operation, or here). Makes this process's death
    /// visible to the peer. An end inherited through `fork` is taken over
    /// from the parent (which from then on gets [`Error::AlreadyClaimed`]
    /// from this end); calling `claim` explicitly also takes an end back
    /// from a process that took it over.
    ///
    /// Taking a sending end over sends an abort record first (the previous
    /// user may have left a fragmented message half-sent); taking a
    /// receiving end over inside a fragmented message drops the rest of
    /// that message.
    pub fn claim(&mut self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        if self.claimed_gen == Some(fork::generation()) && self.owns_claim() {
            return Ok(());
        }
        self.claim_slow()
    }

    #[cold]
    fn claim_slow(&mut self) -> Result<()> {
        // A forked child is not registered for membarrier: register again
        // before publishing with a compiler barrier only.
        membarrier::register();
        let me = proc::pid();
        let start = proc::start_time(me).unwrap_or(0);
        let mut taken_over = false;
        for (ring, role) in self.roles() {
            taken_over |= ring.claimant_pid(role) != 0;
            ring.claim(role, me, start, false)?;
        }
        self.attach_sides()?;
        if taken_over && self.tx.is_some() {
            // An extra ABORT is harmless: the receiver drops nothing whole.
            self.abort_pending = true;
        }
        if let Some(rx) = &self.rx {
            // What this handle holds of a message is stale (another
            // process may have received since); the shared flag says
            // whether the ring's head is inside a fragmented message.
            self.partial = None;
            self.skipping = rx.ring.in_message();
        }
        self.claimed_gen = Some(fork::generation());
        self.claimed_pid = me;
        Ok(())
    }

    /// Whether the shared claimants still name this process's claim (a
    /// load from the ends line, which every send and receive reads anyway).
    #[inline]
    fn owns_claim(&self) -> bool {
        self.tx.as_ref().map_or(true, |t| {
            t.ring.claimant_pid(Role::Writer) == self.claimed_pid
        }) && self.rx.as_ref().map_or(true, |r| {
            r.ring.claimant_pid(Role::Reader) == self.claimed_pid
        })
    }

    /// Whether this handle may be used now: claimed in this process (else
    /// claims now), and not taken over by another process since
    /// ([`Error::AlreadyClaimed`]: two processes must never drive one end).
    #[inline]
    fn ready(&mut self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        if self.claimed_gen != Some(fork::generation()) {
            self.claim_slow()?;
        } else if !self.owns_claim() {
            return Err(Error::AlreadyClaimed);
        }
        Ok(())
    }

    /// The fast paths' test: claimed in this process, still ours, open.
    #[inline]
    fn ready_fast(&self) -> bool {
        !self.closed && self.claimed_gen == Some(fork::generation()) && self.owns_claim()
    }

    /// Whether closing this handle closes the end for every process: the
    /// end is claimed by this process, or unclaimed while no `fork` since
    /// its creation can have copied it into another process. An end
    /// another process claimed, or an unclaimed one that a `fork` may have
    /// copied, is closed only in this handle.
    fn closes_for_all(&self) -> bool {
        let me = proc::pid();
        self.roles()
            .iter()
            .all(|(ring, role)| match ring.claimant_pid(*role) {
                0 => fork::forks() == self.created_forks,
                pid => pid == me,
            })
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
    }

    // -----------------------------------------------------------------
    // Sending
    // -----------------------------------------------------------------

    /// Splits `self` into the producer and a watch on its ring.
    fn producer(&mut self) -> Result<(&mut Producer<'static>, Watch<'_>)> {
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
        };
        Ok((p, w))
    }

    /// Sends one record made of `parts` (each but the last a multiple of 8
    /// bytes long).
    fn send_record(
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

    fn flush_abort(&mut self, deadline: Option<Deadline>) -> Result<()> {
        if self.abort_pending {
            self.send_record(&[], ABORT, deadline)?;
            self.abort_pending = false;
        }
        Ok(())
    }

    fn send_inner(&mut self, buf: &[u8], deadline: Option<Deadline>) -> Result<()> {
        // Fast path: one record that fits now, nothing pending. Anything
        // else (including any error) takes the general path below.
        if !self.abort_pending && self.ready_fast() {
            if let Some(Tx { ring, p: Some(p) }) = &mut self.tx {
                if spsc::record_size(buf.len() as u64) <= ring.capacity() as u64 / 2
                    && !ring.is_closed(Role::Reader)
                    && matches!(p.try_push(buf, 0), Ok(true))
                {
                    return Ok(());
                }
            }
        }
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

    fn reserve_inner(&mut self, len: usize, deadline: Option<Deadline>) -> Result<Reservation<'_>> {
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

    // -----------------------------------------------------------------
    // Receiving
    // -----------------------------------------------------------------

    /// Finds the next whole message, reassembling fragments into
    /// `self.partial`; `limit` is checked before anything is consumed.
    fn next(&mut self, limit: Limit, deadline: Option<Deadline>) -> Result<Next> {
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
                        ring.set_in_message(false);
                    }
                    self.skipping = false;
                }
                return Err(e);
            }
            let r = rec.ok_or(Error::Corrupt("record vanished"))?;
            let flags = r.flags();
            if flags & ABORT != 0 {
                if self.partial.is_some() || self.skipping {
                    ring.set_in_message(false);
                }
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
                if flags & MORE == 0 {
                    ring.set_in_message(false);
                    self.skipping = false;
                } else {
                    self.skipping = true;
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
                    // Before the release: a receiver taking the end over
                    // must know that the head is inside a message.
                    ring.set_in_message(flags & MORE != 0);
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
                        ring.set_in_message(false);
                    }
                    c.release(r)?;
                    if flags & MORE == 0 {
                        return self.finish_partial();
                    }
                }
            }
        }
    }

    fn finish_partial(&mut self) -> Result<Next> {
        let p = self.partial.as_mut().ok_or(Error::Corrupt("no message"))?;
        if p.buf.len() != p.total {
            self.partial = None;
            return Err(Error::Corrupt("fragments fall short of the message length"));
        }
        p.done = true;
        Ok(Next::Whole)
    }

    fn consumer(&mut self) -> Result<&mut Consumer<'static>> {
        self.rx
            .as_mut()
            .and_then(|r| r.c.as_mut())
            .ok_or(Error::Closed)
    }

    fn take_whole(&mut self) -> Vec<u8> {
        self.partial.take().map(|p| p.buf).unwrap_or_default()
    }

    fn recv_vec(&mut self, limit: Limit, deadline: Option<Deadline>) -> Result<Vec<u8>> {
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

    fn recv_into(
        &mut self,
        buf: &mut [u8],
        offset: usize,
        deadline: Option<Deadline>,
    ) -> Result<usize> {
        // Fast path: a single record is there and fits. Anything else
        // (including any error) takes the general path below.
        if self.partial.is_none() && !self.skipping && offset <= buf.len() && self.ready_fast() {
            if let Some(Rx { c: Some(c), .. }) = &mut self.rx {
                if let Ok(Some(len)) = c.try_pop_plain(&mut buf[offset..]) {
                    return Ok(len);
                }
            }
        }
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
        };
        match w.wait(deadline, || Ok(c.try_peek()?.is_some())) {
            Ok(()) | Err(Error::Disconnected) => Ok(true),
            Err(Error::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn recv_typed<T: Plain>(&mut self, deadline: Option<Deadline>) -> Result<T> {
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

    fn in_place(&mut self, deadline: Option<Deadline>) -> Result<Borrowed<'_>> {
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

impl Drop for Connection {
    /// Closes the end as [`close`](Connection::close) does: for everyone
    /// only if this process claimed it, or it is unclaimed and was never
    /// copied by a `fork` (an end dropped unused disconnects its peer).
    fn drop(&mut self) {
        self.close();
    }
}

/// Space reserved in the ring by [`Connection::reserve`]: fill it, then
/// [`commit`](Reservation::commit). Dropped uncommitted, nothing is sent.
pub struct Reservation<'a> {
    p: &'a mut Producer<'static>,
    grant: spsc::Grant,
    ptr: *mut u8,
    len: usize,
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
    c: &'a mut Consumer<'static>,
    /// Always `Some` until `drop` releases it.
    rec: Option<Record>,
    ptr: *const u8,
    len: usize,
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
