//! `Pipe` and `Connection`: Python's `multiprocessing.Pipe()` over one or two
//! [`SpscRing`]s in a shared segment.
//!
//! See [`Pipe`] for the mapping to Python and the protocol.//!
//! | file            | what                                                       |
//! |-----------------|------------------------------------------------------------|
//! | `mod.rs`        | `Pipe`: creating, opening, the ends                        |
//! | `connection.rs` | `Connection`'s state, accessors and `close`                |
//! | `claim.rs`      | claims, take-over after `fork` or a dead user (recovery)   |
//! | `wait.rs`       | `WaitPolicy` and the spin-then-sleep wait with liveness    |
//! | `send.rs`       | sending: one record, fragments, reservations               |
//! | `fragments.rs`  | finding the next whole message: reassembly, abort, skipping |
//! | `recv.rs`       | the receive calls on top of it                             |
//! | `guards.rs`     | the zero-copy `Reservation` and `Borrowed`                 |
//!
//! The tests are integration tests (`tests/pipe*.rs`, the fault suites).

use std::cell::Cell;
use std::sync::Arc;

use crate::raw::spsc::Wake;
use crate::raw::spsc::{self, Consumer, Producer, Record, Ring, Role, ABORT, FIRST, MORE};
use crate::raw::SpscRing;
use crate::segment::header::Spec;
use crate::segment::{Fingerprint, Kind, Options, Place, Segment};
use crate::sys::clock::{monotonic_ns, Deadline};
use crate::sys::{fork, membarrier, proc};
use crate::{Error, Plain, Result};
mod claim;
mod connection;
mod fragments;
mod guards;
mod recv;
mod send;
mod wait;

pub use connection::Connection;
use connection::{Rx, Tx};
use fragments::{Limit, Next, Partial};
pub use guards::{Borrowed, Reservation};
pub use wait::WaitPolicy;
use wait::{timeout_to, Watch};

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
/// | `a, b = Pipe()`                         | `let (a, b) = Pipe::anonymous_default()?` (or [`Pipe::anonymous`] with a capacity) |
/// | `r, w = Pipe(duplex=False)`             | `let (r, w) = Pipe::anonymous_simplex_default()?` |
/// | `c.send_bytes(buf, offset, size)`       | [`Connection::send_bytes_range`]          |
/// | `c.recv_bytes(maxlength)`               | [`Connection::recv_bytes_max`] (`try_`, `_timeout` forms too) |
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
/// answers quickly is caught without a system call; the spinner never
/// yields its CPU, because a yield can hand it to another task for a whole
/// scheduler slice: that was W1's millisecond tail; the budget adapts
/// down to 2 µs while spins run out, as they do when the peer waits for
/// this very CPU, and back up when a spin is answered), then sleeps on the
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
    /// The ring capacity per direction of [`Pipe::anonymous_default`] and
    /// [`Pipe::anonymous_simplex_default`]: 256 KiB. Python's `Pipe()`
    /// takes no size (its buffer is the kernel's, 64 KiB for a Linux
    /// pipe); 256 KiB holds the messages of up to 128 KiB that travel as
    /// one record, and four of the 64 KiB messages of a typical stream, so
    /// a sender rarely waits for a receiver that keeps up. Each pipe
    /// reserves this much memory in `/dev/shm` per direction.
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

    /// [`Pipe::anonymous`] with [`Pipe::DEFAULT_CAPACITY`]: Python's
    /// `Pipe()`, which takes no size.
    pub fn anonymous_default() -> Result<(Connection, Connection)> {
        Self::anonymous(Self::DEFAULT_CAPACITY)
    }

    /// [`Pipe::anonymous_simplex`] with [`Pipe::DEFAULT_CAPACITY`]:
    /// Python's `Pipe(duplex=False)`. Returns `(reader, writer)`.
    pub fn anonymous_simplex_default() -> Result<(Connection, Connection)> {
        Self::anonymous_simplex(Self::DEFAULT_CAPACITY)
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
            claimed_gen: 0,
            claimed_pid: 0,
            created_forks: fork::forks(),
            last_check: Cell::new(0),
            spin_now: Cell::new(u64::MAX),
            closed: false,
            policy: WaitPolicy::default(),
            partial: None,
            abort_pending: false,
            skipping: false,
            light: false,
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
        c.light = membarrier::register();
        c.claimed_gen = fork::generation();
        c.claimed_pid = me;
        Ok(c)
    }

    /// Test hook: moves the positions of a fresh pipe's rings to just
    /// below `pos`, so tests can stream across the 2^64 wrap.
    ///
    /// # Safety
    ///
    /// Nothing was ever sent on the pipe, and no end of it is connected
    /// (in any process) before this returns.
    #[doc(hidden)]
    pub unsafe fn __start_positions_at(&self, pos: u64) {
        for r in self.rings.iter().flatten() {
            // SAFETY: the caller's contract is the ring's.
            unsafe { r.__start_positions_at(pos) };
        }
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
