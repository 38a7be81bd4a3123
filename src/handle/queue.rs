//! `Queue` and `JoinableQueue`: many producers, many consumers, over an
//! [`MpmcRing`] in a shared-memory segment.

use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::time::Duration;

use crate::raw::mpmc::{Abandoned, MpmcRef, MpmcRing, SlotRef, FLAG_JOINABLE};
use crate::segment::header::Spec;
use crate::segment::{Fingerprint, Kind, Options, Place, Segment};
use crate::sys::clock::Deadline;
use crate::{Error, Plain, Result};

fn spec(kind: Kind, capacity: usize, slot_size: usize) -> Result<Spec> {
    Ok(Spec {
        kind,
        fingerprint: Fingerprint::NONE,
        len: slot_size as u64,
        capacity: capacity as u64,
        object_size: MpmcRing::bytes_for(capacity, slot_size)? as u64,
        object_align: 64,
    })
}

fn flags(kind: Kind) -> u32 {
    if kind == Kind::JoinableQueue {
        FLAG_JOINABLE
    } else {
        0
    }
}

/// A bounded multi-producer, multi-consumer message queue in shared memory:
/// Python's `multiprocessing.Queue`, with no pickling, no feeder thread and
/// no system call while nobody has to sleep.
///
/// A queue holds `capacity` messages of up to `slot_size` bytes each, both
/// fixed at creation. Any number of processes (and threads: the handle is
/// `Send + Sync + Clone`) may send and receive. Messages from one producer
/// arrive in the order it sent them; every message is received exactly
/// once.
///
/// | Python                       | shmprim                                   |
/// |------------------------------|-------------------------------------------|
/// | `q = Queue(maxsize)`         | [`Queue::create`] / [`Queue::anonymous`]  |
/// | `q.put(obj)`                 | [`send_bytes`](Queue::send_bytes), [`send`](Queue::send), `send_obj` |
/// | `q.put(obj, timeout=t)`      | [`send_bytes_timeout`](Queue::send_bytes_timeout) |
/// | `q.put_nowait(obj)`          | [`try_send_bytes`](Queue::try_send_bytes) ([`Error::Full`]) |
/// | `q.get()`                    | [`recv_bytes`](Queue::recv_bytes), [`recv_bytes_into`](Queue::recv_bytes_into), [`recv`](Queue::recv), `recv_obj` |
/// | `q.get(timeout=t)`           | [`recv_bytes_timeout`](Queue::recv_bytes_timeout) |
/// | `q.get_nowait()`             | [`try_recv_bytes`](Queue::try_recv_bytes) ([`Error::Empty`]) |
/// | `q.qsize()`                  | [`len`](Queue::len) (approximate)          |
/// | `q.empty()` / `q.full()`     | [`is_empty`](Queue::is_empty) / [`is_full`](Queue::is_full) |
/// | `q.close()`                  | [`close`](Queue::close)                    |
///
/// ## Waiting
///
/// Every blocking call `op` has `try_op`, one attempt that reports why it
/// would wait ([`Error::Full`] for sends and reservations, [`Error::Empty`]
/// for receives, as Python's `queue.Full`/`queue.Empty`;
/// [`Error::WouldBlock`] for [`JoinableQueue::try_join`]), and
/// `op_timeout(d)`, which reports [`Error::Timeout`] once its deadline
/// passed (`Duration::ZERO`: one attempt, then `Timeout`). The batch calls
/// [`send_many`](Queue::send_many) and [`recv_many`](Queue::recv_many)
/// follow the same rule for their first message and never wait for the
/// others.
///
/// ## Closing
///
/// [`close`](Queue::close) is global: it marks the queue closed for every
/// process. Later sends fail with [`Error::Closed`] (a send racing the
/// close either fails so or is received); receivers first drain every
/// message, including those committed after the close by reservations
/// made before it, then get [`Error::Closed`] (not
/// `Disconnected`: a queue has no single peer whose loss could be
/// reported, and closing is an explicit act). Every sleeper wakes.
///
/// ## Dead processes
///
/// A process killed while blocked in a send or a receive holds nothing:
/// the others keep working. A process killed while holding a slot is
/// detected (its pid is gone, or now names a process with another start
/// time) by whoever waits behind the slot for a while (50 ms), or by
/// [`recover`](Queue::recover), and the slot is taken back:
///
/// * a producer killed between [`reserve`](Queue::reserve) (or the start
///   of a send) and the commit: its slot is poisoned and skipped; nothing
///   of it is ever delivered (no torn message), and it counts in
///   [`abandoned`](Queue::abandoned)`().sends`. Receivers get
///   [`Error::Closed`] after a close once it is skipped. On a
///   [`JoinableQueue`] a task it had already counted is counted done, so
///   `join` returns.
/// * a consumer killed while holding a [`Borrowed`] message (or in the
///   middle of a receive): the message is **dropped**, not redelivered
///   (the consumer may have acted on part of it, and redelivery would
///   break the per-producer order), and counts in `abandoned().recvs`. On
///   a [`JoinableQueue`] it counts as done, so `join` returns.
///
/// Slots are only ever taken from a process known dead, never from a slow
/// live one. The detection needs a free entry in the queue's table of 64
/// (process, thread) pairs and one slot held per thread and side at a
/// time: a thread beyond the table, or one holding a second reservation
/// at once, is untracked, and recovery waits while it holds its slot (and
/// for good if it dies then). See [`MpmcRing`] for the protocol.
///
/// The verdict "dead" rests on pids, so:
///
/// * do not hold a [`Reservation`] or a [`Borrowed`] across a `fork`: the
///   child's copy still names the parent, and once the parent exits the
///   slot may be taken back under the child;
/// * holders in another pid namespace are never judged dead (their slots
///   are not recovered from here);
/// * a process that calls `execve` while another of its threads holds a
///   slot keeps its pid and start time: it still looks alive, and that
///   slot is never recovered.
///
/// ```
/// use shmprim::Queue;
/// let q = Queue::anonymous(16, 64).unwrap();
/// q.send_bytes(b"hello").unwrap();
/// assert_eq!(q.recv_bytes().unwrap(), b"hello");
/// ```
#[derive(Clone)]
pub struct Queue {
    seg: Arc<Segment>,
    ring: MpmcRef,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("capacity", &self.capacity())
            .field("slot_size", &self.slot_size())
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .field("segment", &self.seg)
            .finish()
    }
}

/// The initialiser a new queue segment runs on its object.
fn ring_init(kind: Kind, capacity: usize, slot_size: usize) -> impl Fn(*mut u8) -> Result<()> {
    move |p: *mut u8| {
        // SAFETY: `Segment::create_object` / `open_or_create_object` pass the
        // 64-aligned object start of a fresh, unpublished segment with
        // `spec(kind, capacity, slot_size)`'s object size, `bytes_for` bytes.
        unsafe { MpmcRing::init(p, capacity, slot_size, flags(kind)) }
    }
}

impl Queue {
    fn make(
        kind: Kind,
        place: Place<'_>,
        capacity: usize,
        slot_size: usize,
        opts: &Options,
    ) -> Result<Self> {
        let spec = spec(kind, capacity, slot_size)?;
        let init = ring_init(kind, capacity, slot_size);
        let seg = Segment::create_object(place, &spec, opts, None, init)?;
        Self::checked(kind, seg)
    }

    fn open_kind(kind: Kind, name: &str, opts: &Options) -> Result<Self> {
        // Capacity and slot size come from the header; the object size is
        // checked against them in `checked`.
        let spec = spec(kind, 1, 0)?;
        Self::checked(kind, Segment::open_object(name, &spec, opts)?)
    }

    fn open_or_create_kind(
        kind: Kind,
        name: &str,
        capacity: usize,
        slot_size: usize,
        opts: &Options,
    ) -> Result<Self> {
        let spec = spec(kind, capacity, slot_size)?;
        let init = ring_init(kind, capacity, slot_size);
        let seg = Segment::open_or_create_object(name, &spec, opts, None, init)?;
        Self::checked(kind, seg)
    }

    /// Validates the ring in `seg` against its header and this kind.
    fn checked(kind: Kind, seg: Segment) -> Result<Self> {
        let info = seg.info();
        let (cap, slot) = (info.capacity, info.len);
        let want = usize::try_from(cap)
            .ok()
            .zip(usize::try_from(slot).ok())
            .and_then(|(c, s)| MpmcRing::bytes_for(c, s).ok())
            .ok_or(Error::Corrupt("queue parameters out of range"))?;
        if info.object_size != want as u64 || seg.data_len() < want {
            return Err(Error::Corrupt(
                "queue object size does not match its parameters",
            ));
        }
        // SAFETY: the object is `data_len` bytes at a 64-aligned offset of a
        // mapping that `seg` keeps alive as long as the handle (which owns
        // both); its bytes are only reached through atomics and the slot
        // protocol.
        let ring = unsafe { MpmcRing::attach(seg.data_ptr(), seg.data_len())? };
        if ring.capacity() as u64 != cap || ring.slot_size() as u64 != slot {
            return Err(Error::Corrupt("queue ring differs from its header"));
        }
        if ring.is_joinable() != (kind == Kind::JoinableQueue) {
            return Err(Error::Corrupt("queue ring flags differ from its kind"));
        }
        Ok(Queue {
            seg: Arc::new(seg),
            ring,
        })
    }

    /// Creates a queue under `name` holding up to `capacity` messages of up
    /// to `slot_size` bytes each. Any capacity from 1 to 2^32 - 1 works.
    pub fn create(name: &str, capacity: usize, slot_size: usize) -> Result<Self> {
        Self::create_with(name, capacity, slot_size, &Options::default())
    }

    /// [`Queue::create`] with options.
    pub fn create_with(
        name: &str,
        capacity: usize,
        slot_size: usize,
        opts: &Options,
    ) -> Result<Self> {
        Self::make(Kind::Queue, Place::Named(name), capacity, slot_size, opts)
    }

    /// Opens the queue `name`; its capacity and slot size are the
    /// creator's.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`Queue::open`] with options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        Self::open_kind(Kind::Queue, name, opts)
    }

    /// Opens `name`, or creates it with `capacity` and `slot_size`. An
    /// existing queue keeps its own parameters: check
    /// [`capacity`](Self::capacity) and [`slot_size`](Self::slot_size)
    /// if they matter.
    pub fn open_or_create(name: &str, capacity: usize, slot_size: usize) -> Result<Self> {
        Self::open_or_create_kind(Kind::Queue, name, capacity, slot_size, &Options::default())
    }

    /// An unnamed queue, shared with children forked afterwards.
    pub fn anonymous(capacity: usize, slot_size: usize) -> Result<Self> {
        Self::make(
            Kind::Queue,
            Place::Anonymous,
            capacity,
            slot_size,
            &Options::default(),
        )
    }

    /// Opens a queue in an already opened segment (fuzz targets).
    #[cfg(fuzzing)]
    pub fn __attach(seg: Segment) -> Result<Self> {
        Self::checked(Kind::Queue, seg)
    }

    /// Test hook: moves the positions of a fresh, unused queue close to
    /// the 2^64 wrap.
    ///
    /// # Safety
    ///
    /// No [`Reservation`] or [`Borrowed`] of this queue is alive (in any
    /// process), and nobody else uses the queue during the call; messages
    /// still queued are lost. Otherwise two live reservations could be
    /// handed the same slot.
    #[doc(hidden)]
    pub unsafe fn __start_positions_at(&self, pos: u64) {
        // SAFETY: the caller's contract is the ring's.
        unsafe { self.ring.__start_positions_at(pos) }
    }

    /// The segment it lives in.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// How many messages it holds at most.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// The largest message, in bytes.
    pub fn slot_size(&self) -> usize {
        self.ring.slot_size()
    }

    /// Messages in the queue (Python's `qsize`): approximate while others
    /// send and receive; counts slots reserved by senders (not yet
    /// committed), not those already borrowed by receivers.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether the queue looks empty (approximate, as [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue looks full (approximate, as [`len`](Self::len)).
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity()
    }

    /// Closes the queue for every process: later sends fail with
    /// [`Error::Closed`]; receivers drain what was committed, and what
    /// reservations made before the close still commit, then get
    /// [`Error::Closed`]. Wakes every sleeper.
    pub fn close(&self) {
        self.ring.close()
    }

    /// Slots taken back from dead producers and consumers since the queue
    /// was made (see "Dead processes" on [`Queue`]).
    pub fn abandoned(&self) -> Abandoned {
        self.ring.abandoned()
    }

    /// Looks for slots held by dead processes now and takes them back;
    /// returns how many. Blocking calls do this on their own when they
    /// wait behind a held slot; a program that only uses `try_` calls may
    /// call this now and then. It reads `/proc`: not for a hot loop.
    pub fn recover(&self) -> usize {
        self.ring.recover()
    }

    /// Whether anyone closed the queue.
    pub fn is_closed(&self) -> bool {
        self.ring.is_closed()
    }

    fn too_large(&self, len: usize) -> Result<()> {
        if len > self.slot_size() {
            Err(Error::MessageTooLarge {
                size: len,
                max: self.slot_size(),
            })
        } else {
            Ok(())
        }
    }

    fn reserve_until(&self, len: usize, until: Option<Deadline>) -> Result<Reservation<'_>> {
        self.too_large(len)?;
        let slot = self.ring.reserve_until(until)?;
        Ok(Reservation {
            q: self,
            slot: ManuallyDrop::new(slot),
            len,
            done: false,
        })
    }

    /// Reserves a slot for a message of `len` bytes, waiting for room:
    /// fill it through the returned [`Reservation`] and
    /// [`commit`](Reservation::commit) it. Dropped uncommitted, nothing is
    /// sent. [`Error::MessageTooLarge`] at once above the slot size.
    pub fn reserve(&self, len: usize) -> Result<Reservation<'_>> {
        self.reserve_until(len, None)
    }

    /// [`reserve`](Self::reserve) without waiting: [`Error::Full`].
    pub fn try_reserve(&self, len: usize) -> Result<Reservation<'_>> {
        self.reserve_until(len, Some(Deadline::PASSED))
            .map_err(full_for_timeout)
    }

    /// [`reserve`](Self::reserve), waiting at most `timeout`
    /// ([`Error::Timeout`]).
    pub fn reserve_timeout(&self, len: usize, timeout: Duration) -> Result<Reservation<'_>> {
        self.reserve_until(len, Some(Deadline::after(timeout)))
    }

    fn send_until(&self, bytes: &[u8], until: Option<Deadline>) -> Result<()> {
        self.too_large(bytes.len())?;
        self.ring.send_copy_until(bytes, until)
    }

    /// Sends `bytes` (Python's `put`), waiting while the queue is full.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
        // The common case in this one frame (the ring's fast path is
        // inlined here), everything else out of line: the second frame
        // and its spills cost about 25 instructions a send (callgrind).
        if bytes.len() <= self.ring.slot_size() && self.ring.send_fast(bytes) {
            return Ok(());
        }
        self.send_bytes_slow(bytes)
    }

    /// What [`send_bytes`](Self::send_bytes)'s fast path leaves: too
    /// large, full, closed, contended, garbage.
    #[cold]
    #[inline(never)]
    fn send_bytes_slow(&self, bytes: &[u8]) -> Result<()> {
        self.too_large(bytes.len())?;
        self.ring.send_copy_slow(bytes, None)
    }

    /// Sends without waiting (`put_nowait`): [`Error::Full`] if there is no
    /// room.
    pub fn try_send_bytes(&self, bytes: &[u8]) -> Result<()> {
        self.send_until(bytes, Some(Deadline::PASSED))
            .map_err(full_for_timeout)
    }

    /// Sends, waiting at most `timeout` for room ([`Error::Timeout`]).
    pub fn send_bytes_timeout(&self, bytes: &[u8], timeout: Duration) -> Result<()> {
        self.too_large(bytes.len())?;
        // The common case before the deadline, which costs a clock read.
        if self.ring.send_fast(bytes) {
            return Ok(());
        }
        self.send_until(bytes, Some(Deadline::after(timeout)))
    }

    /// Sends messages from `msgs` in order until one cannot be sent
    /// without waiting (or they run out), waiting (until `until`) only
    /// for the first. How many were sent; an error only if the first
    /// could not be.
    fn send_many_until<I, B>(&self, msgs: I, until: Option<Deadline>) -> Result<usize>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let mut msgs = msgs.into_iter();
        let Some(first) = msgs.next() else {
            return Ok(0);
        };
        self.send_until(first.as_ref(), until)?;
        let mut sent = 1;
        for m in msgs {
            let m = m.as_ref();
            // Too large, full or closed: stop here; the caller's next call
            // starts with this message and reports why it cannot go.
            if m.len() > self.slot_size() || self.ring.try_send_copy(m).is_err() {
                break;
            }
            sent += 1;
        }
        Ok(sent)
    }

    /// Sends the messages of `msgs` in order, waiting for room for the
    /// first only: the rest go while there is room, and the first that
    /// finds none (or is too large, or finds the queue closed) ends the
    /// batch unsent, together with those after it (an iterator is taken
    /// no further than that message). Returns how many were sent (0 for
    /// no messages); an error only if the first could not be sent.
    ///
    /// ```
    /// use shmprim::Queue;
    /// let q = Queue::anonymous(4, 8).unwrap();
    /// assert_eq!(q.send_many([&b"a"[..], b"b", b"c"]).unwrap(), 3);
    /// let mut got = Vec::new();
    /// assert_eq!(q.recv_many(&mut got, 8).unwrap(), 3);
    /// assert_eq!(got, [b"a", b"b", b"c"]);
    /// ```
    pub fn send_many<I, B>(&self, msgs: I) -> Result<usize>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        self.send_many_until(msgs, None)
    }

    /// [`send_many`](Self::send_many) without waiting: [`Error::Full`] if
    /// not even the first message fits.
    pub fn try_send_many<I, B>(&self, msgs: I) -> Result<usize>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        self.send_many_until(msgs, Some(Deadline::PASSED))
            .map_err(full_for_timeout)
    }

    /// [`send_many`](Self::send_many), waiting at most `timeout` for room
    /// for the first message ([`Error::Timeout`]).
    pub fn send_many_timeout<I, B>(&self, msgs: I, timeout: Duration) -> Result<usize>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        self.send_many_until(msgs, Some(Deadline::after(timeout)))
    }

    /// Appends up to `max` messages to `out`, waiting (until `until`) only
    /// for the first.
    fn recv_many_until(
        &self,
        out: &mut Vec<Vec<u8>>,
        max: usize,
        until: Option<Deadline>,
    ) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        out.push(self.recv_in_place_until(until, |_| Ok(()))?.to_vec());
        let mut got = 1;
        while got < max {
            // Empty (or closed, or garbage: the next call reports it).
            let Ok(b) = self.ring.try_claim(|_| Ok(())) else {
                break;
            };
            let b = Borrowed {
                q: self,
                slot: ManuallyDrop::new(b),
            };
            out.push(b.to_vec());
            got += 1;
        }
        Ok(got)
    }

    /// Receives up to `max` messages, appending each to `out`, waiting
    /// for the first only: the rest are those already committed. Returns
    /// how many were received (0 if `max` is 0).
    pub fn recv_many(&self, out: &mut Vec<Vec<u8>>, max: usize) -> Result<usize> {
        self.recv_many_until(out, max, None)
    }

    /// [`recv_many`](Self::recv_many) without waiting: [`Error::Empty`] if
    /// no message is there.
    pub fn try_recv_many(&self, out: &mut Vec<Vec<u8>>, max: usize) -> Result<usize> {
        self.recv_many_until(out, max, Some(Deadline::PASSED))
            .map_err(empty_for_timeout)
    }

    /// [`recv_many`](Self::recv_many), waiting at most `timeout` for the
    /// first message ([`Error::Timeout`]).
    pub fn recv_many_timeout(
        &self,
        out: &mut Vec<Vec<u8>>,
        max: usize,
        timeout: Duration,
    ) -> Result<usize> {
        self.recv_many_until(out, max, Some(Deadline::after(timeout)))
    }

    fn send_plain_until<T: Plain>(&self, v: &T, until: Option<Deadline>) -> Result<()> {
        let n = std::mem::size_of::<T>();
        let r = self.reserve_until(n, until)?;
        // SAFETY: the slot is ours and holds at least `n` bytes (checked
        // by `reserve_until`); a raw byte copy of a `Plain` value (padding
        // included) is allowed; the regions do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping((v as *const T).cast::<u8>(), r.ptr(), n);
        }
        r.commit();
        Ok(())
    }

    /// Sends a plain value as `size_of::<T>()` bytes, waiting for room.
    pub fn send<T: Plain>(&self, v: &T) -> Result<()> {
        self.send_plain_until(v, None)
    }

    /// [`send`](Self::send) without waiting ([`Error::Full`]).
    pub fn try_send<T: Plain>(&self, v: &T) -> Result<()> {
        self.send_plain_until(v, Some(Deadline::PASSED))
            .map_err(full_for_timeout)
    }

    /// [`send`](Self::send), waiting at most `timeout`.
    pub fn send_timeout<T: Plain>(&self, v: &T, timeout: Duration) -> Result<()> {
        self.send_plain_until(v, Some(Deadline::after(timeout)))
    }

    fn recv_in_place_until(
        &self,
        until: Option<Deadline>,
        check: impl FnMut(usize) -> Result<()>,
    ) -> Result<Borrowed<'_>> {
        let slot = self.ring.claim_until(until, check)?;
        Ok(Borrowed {
            q: self,
            slot: ManuallyDrop::new(slot),
        })
    }

    /// Borrows the next message in place, waiting for one: read it through
    /// the returned [`Borrowed`]; dropping it frees the slot. A consumer
    /// that dies holding it loses the message (on a [`JoinableQueue`] it
    /// then counts as done: call `task_done` only after dropping it).
    pub fn recv_in_place(&self) -> Result<Borrowed<'_>> {
        self.recv_in_place_until(None, |_| Ok(()))
    }

    /// [`recv_in_place`](Self::recv_in_place) without waiting
    /// ([`Error::Empty`]).
    pub fn try_recv_in_place(&self) -> Result<Borrowed<'_>> {
        self.recv_in_place_until(Some(Deadline::PASSED), |_| Ok(()))
            .map_err(empty_for_timeout)
    }

    /// [`recv_in_place`](Self::recv_in_place), waiting at most `timeout`.
    pub fn recv_in_place_timeout(&self, timeout: Duration) -> Result<Borrowed<'_>> {
        self.recv_in_place_until(Some(Deadline::after(timeout)), |_| Ok(()))
    }

    /// Receives the next message (Python's `get`), waiting for one.
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        Ok(self.recv_in_place()?.to_vec())
    }

    /// [`recv_bytes`](Self::recv_bytes) without waiting ([`Error::Empty`]).
    pub fn try_recv_bytes(&self) -> Result<Vec<u8>> {
        Ok(self.try_recv_in_place()?.to_vec())
    }

    /// [`recv_bytes`](Self::recv_bytes), waiting at most `timeout`.
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        Ok(self.recv_in_place_timeout(timeout)?.to_vec())
    }

    fn recv_into_until(&self, buf: &mut [u8], until: Option<Deadline>) -> Result<usize> {
        self.ring.recv_copy_until(buf, until)
    }

    /// Receives the next message into `buf`, waiting for one; returns its
    /// length. [`Error::BufferTooShort`] leaves the message in the queue.
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        // As in `send_bytes`: the common case in this one frame.
        if let Some(n) = self.ring.recv_fast(buf) {
            return Ok(n);
        }
        self.recv_bytes_into_slow(buf)
    }

    /// What [`recv_bytes_into`](Self::recv_bytes_into)'s fast path
    /// leaves: empty, closed, too short a buffer, skipped slots, garbage.
    #[cold]
    #[inline(never)]
    fn recv_bytes_into_slow(&self, buf: &mut [u8]) -> Result<usize> {
        self.ring.recv_copy_slow(buf, None)
    }

    /// [`recv_bytes_into`](Self::recv_bytes_into) without waiting.
    pub fn try_recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.recv_into_until(buf, Some(Deadline::PASSED))
            .map_err(empty_for_timeout)
    }

    /// The fast path of [`try_recv_bytes_into`](Self::try_recv_bytes_into)
    /// alone: a committed message at the head that fits `buf`, or `None`
    /// at once (for an empty queue, and for anything the full receive
    /// must sort out: closed, cancelled slots, garbage). For polling: an
    /// empty `try_recv_bytes_into` walks the general path and builds an
    /// error, a few hundred instructions a poll (callgrind, the pool).
    /// Poll with this, and fall back to a waiting receive after a while.
    ///
    /// ```
    /// # fn main() -> shmprim::Result<()> {
    /// let q = shmprim::Queue::anonymous(4, 64)?;
    /// let mut buf = [0u8; 64];
    /// assert_eq!(q.poll_recv_into(&mut buf), None);
    /// q.send_bytes(b"hi")?;
    /// assert_eq!(q.poll_recv_into(&mut buf), Some(2));
    /// assert_eq!(&buf[..2], b"hi");
    /// # Ok(())
    /// # }
    /// ```
    pub fn poll_recv_into(&self, buf: &mut [u8]) -> Option<usize> {
        self.ring.recv_fast(buf)
    }

    /// [`recv_bytes_into`](Self::recv_bytes_into), waiting at most
    /// `timeout`.
    pub fn recv_bytes_into_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        // The common case before the deadline, which costs a clock read.
        if let Some(n) = self.ring.recv_fast(buf) {
            return Ok(n);
        }
        self.recv_into_until(buf, Some(Deadline::after(timeout)))
    }

    fn recv_plain_until<T: Plain>(&self, until: Option<Deadline>) -> Result<T> {
        let want = std::mem::size_of::<T>();
        let b = self.recv_in_place_until(until, |n| {
            if n != want {
                Err(Error::LengthMismatch {
                    found: n as u64,
                    expected: want as u64,
                })
            } else {
                Ok(())
            }
        })?;
        // SAFETY: the slot is ours and holds exactly `size_of::<T>()`
        // bytes; `T: Plain` is valid for any bits; the payload may be
        // unaligned for `T`, hence `read_unaligned`.
        Ok(unsafe { b.ptr().cast::<T>().read_unaligned() })
    }

    /// Receives a plain value, waiting for one. A message whose length is
    /// not `size_of::<T>()` is [`Error::LengthMismatch`] and stays queued.
    pub fn recv<T: Plain>(&self) -> Result<T> {
        self.recv_plain_until(None)
    }

    /// [`recv`](Self::recv) without waiting ([`Error::Empty`]).
    pub fn try_recv<T: Plain>(&self) -> Result<T> {
        self.recv_plain_until(Some(Deadline::PASSED))
            .map_err(empty_for_timeout)
    }

    /// [`recv`](Self::recv), waiting at most `timeout`.
    pub fn recv_timeout<T: Plain>(&self, timeout: Duration) -> Result<T> {
        self.recv_plain_until(Some(Deadline::after(timeout)))
    }

    /// Sends a `serde` value (postcard-encoded), waiting for room. Its
    /// encoding must fit a slot ([`Error::MessageTooLarge`]).
    #[cfg(feature = "serde")]
    pub fn send_obj<T: serde::Serialize + ?Sized>(&self, v: &T) -> Result<()> {
        self.send_bytes(&crate::codec::encode(v)?)
    }

    /// [`send_obj`](Self::send_obj), waiting at most `timeout`.
    #[cfg(feature = "serde")]
    pub fn send_obj_timeout<T: serde::Serialize + ?Sized>(
        &self,
        v: &T,
        timeout: Duration,
    ) -> Result<()> {
        self.send_bytes_timeout(&crate::codec::encode(v)?, timeout)
    }

    /// Receives a `serde` value, waiting for one. A message that does not
    /// decode is consumed and reported as [`Error::Codec`].
    #[cfg(feature = "serde")]
    pub fn recv_obj<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        crate::codec::decode(&self.recv_in_place()?)
    }

    /// [`send_obj`](Self::send_obj) without waiting ([`Error::Full`]).
    #[cfg(feature = "serde")]
    pub fn try_send_obj<T: serde::Serialize + ?Sized>(&self, v: &T) -> Result<()> {
        self.try_send_bytes(&crate::codec::encode(v)?)
    }

    /// [`recv_obj`](Self::recv_obj) without waiting ([`Error::Empty`]).
    #[cfg(feature = "serde")]
    pub fn try_recv_obj<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        crate::codec::decode(&self.try_recv_in_place()?)
    }

    /// [`recv_obj`](Self::recv_obj), waiting at most `timeout`.
    #[cfg(feature = "serde")]
    pub fn recv_obj_timeout<T: serde::de::DeserializeOwned>(&self, timeout: Duration) -> Result<T> {
        crate::codec::decode(&self.recv_in_place_timeout(timeout)?)
    }
}

/// A one-try wait that found nothing reports the non-blocking error.
fn full_for_timeout(e: Error) -> Error {
    match e {
        Error::Timeout => Error::Full,
        e => e,
    }
}

fn empty_for_timeout(e: Error) -> Error {
    match e {
        Error::Timeout => Error::Empty,
        e => e,
    }
}

/// A reserved slot: write the message through `DerefMut<Target = [u8]>`
/// (as long as asked for in `reserve`), then [`commit`](Self::commit).
/// Dropped uncommitted, it is given back: nothing is sent, and consumers
/// skip the slot.
#[must_use = "a reservation sends nothing unless committed"]
pub struct Reservation<'a> {
    q: &'a Queue,
    /// Taken out (once) by `commit` or `drop`.
    slot: ManuallyDrop<SlotRef<'a>>,
    len: usize,
    done: bool,
}

impl Reservation<'_> {
    fn ptr(&self) -> *mut u8 {
        // SAFETY: the slot is reserved by us until commit or drop.
        unsafe { self.q.ring.payload_ptr(&self.slot) }
    }

    /// Sends the message: the consumers may take it from now on.
    pub fn commit(mut self) {
        self.done = true;
        // SAFETY: taken once: `done` keeps `drop` from taking it again,
        // and nothing reads `slot` after this.
        let slot = unsafe { ManuallyDrop::take(&mut self.slot) };
        // It came from this queue's ring, so it is accepted.
        let r = self.q.ring.commit(slot, self.len);
        debug_assert!(r.is_ok());
    }

    /// Shortens the message to `len` bytes (no-op if longer than now).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl std::ops::Deref for Reservation<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the reserved slot's payload is ours alone (the protocol
        // lets nobody else touch it until commit), `len <= slot_size`, and
        // the mapping outlives the borrow of the queue.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len) }
    }
}

impl std::ops::DerefMut for Reservation<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len) }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.done {
            // SAFETY: taken once (`commit` did not run), in `drop`.
            let slot = unsafe { ManuallyDrop::take(&mut self.slot) };
            let r = self.q.ring.cancel(slot);
            debug_assert!(r.is_ok());
        }
    }
}

impl std::fmt::Debug for Reservation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("len", &self.len)
            .finish()
    }
}

/// A message borrowed in place (`Deref<Target = [u8]>`); dropping it frees
/// the slot for producers.
pub struct Borrowed<'a> {
    q: &'a Queue,
    /// Taken out (once) by `drop`.
    slot: ManuallyDrop<SlotRef<'a>>,
}

impl Borrowed<'_> {
    fn ptr(&self) -> *mut u8 {
        // SAFETY: the slot is claimed by us until drop.
        unsafe { self.q.ring.payload_ptr(&self.slot) }
    }
}

impl std::ops::Deref for Borrowed<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the claimed slot's payload is ours alone until we release
        // it; `len` was checked `<= slot_size` when claimed.
        unsafe { std::slice::from_raw_parts(self.ptr(), self.slot.len()) }
    }
}

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        // SAFETY: taken once, in `drop`.
        let slot = unsafe { ManuallyDrop::take(&mut self.slot) };
        // It came from this queue's ring, so it is accepted.
        let r = self.q.ring.release(slot);
        debug_assert!(r.is_ok());
    }
}

impl std::fmt::Debug for Borrowed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Borrowed")
            .field("len", &self.slot.len())
            .finish()
    }
}

/// A [`Queue`] that counts unfinished tasks across processes: Python's
/// `multiprocessing.JoinableQueue`.
///
/// Every committed send raises the count (on send, not on receive);
/// [`task_done`](Self::task_done) lowers it; [`join`](Self::join) waits
/// until it is zero. All of [`Queue`]'s methods are available through
/// `Deref`.
///
/// A message received in place is counted done when a consumer that died
/// holding its [`Borrowed`] is recovered: call `task_done` only *after*
/// dropping the `Borrowed`, or a consumer killed in between counts it
/// done twice.
///
/// ```
/// use shmprim::JoinableQueue;
/// let q = JoinableQueue::anonymous(4, 16).unwrap();
/// q.send_bytes(b"job").unwrap();
/// let job = q.recv_bytes().unwrap();
/// assert_eq!(job, b"job");
/// q.task_done().unwrap();
/// q.join().unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct JoinableQueue {
    q: Queue,
}

impl std::ops::Deref for JoinableQueue {
    type Target = Queue;
    fn deref(&self) -> &Queue {
        &self.q
    }
}

impl JoinableQueue {
    /// Creates one under `name` ([`Queue::create`]).
    pub fn create(name: &str, capacity: usize, slot_size: usize) -> Result<Self> {
        Self::create_with(name, capacity, slot_size, &Options::default())
    }

    /// [`JoinableQueue::create`] with options.
    pub fn create_with(
        name: &str,
        capacity: usize,
        slot_size: usize,
        opts: &Options,
    ) -> Result<Self> {
        let q = Queue::make(
            Kind::JoinableQueue,
            Place::Named(name),
            capacity,
            slot_size,
            opts,
        )?;
        Ok(JoinableQueue { q })
    }

    /// Opens the one under `name`.
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::default())
    }

    /// [`JoinableQueue::open`] with options.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        let q = Queue::open_kind(Kind::JoinableQueue, name, opts)?;
        Ok(JoinableQueue { q })
    }

    /// Opens `name`, or creates it.
    pub fn open_or_create(name: &str, capacity: usize, slot_size: usize) -> Result<Self> {
        let q = Queue::open_or_create_kind(
            Kind::JoinableQueue,
            name,
            capacity,
            slot_size,
            &Options::default(),
        )?;
        Ok(JoinableQueue { q })
    }

    /// An unnamed one, shared with children forked afterwards.
    pub fn anonymous(capacity: usize, slot_size: usize) -> Result<Self> {
        let q = Queue::make(
            Kind::JoinableQueue,
            Place::Anonymous,
            capacity,
            slot_size,
            &Options::default(),
        )?;
        Ok(JoinableQueue { q })
    }

    /// Opens one in an already opened segment (fuzz targets).
    #[cfg(fuzzing)]
    pub fn __attach(seg: Segment) -> Result<Self> {
        Ok(JoinableQueue {
            q: Queue::checked(Kind::JoinableQueue, seg)?,
        })
    }

    /// Marks one received task finished. More calls than committed sends
    /// is [`Error::InvalidArgument`], and leaves the count at zero.
    pub fn task_done(&self) -> Result<()> {
        self.q.ring.task_done()
    }

    /// Tasks sent and not yet marked done (approximate while others work).
    pub fn unfinished(&self) -> u64 {
        self.q.ring.unfinished()
    }

    /// Waits until every task sent has been marked done; returns at once
    /// if none is unfinished. Wakes (with `Ok`) when the queue is closed
    /// only once the count reaches zero.
    pub fn join(&self) -> Result<()> {
        self.q.ring.join_until(None)
    }

    /// [`join`](Self::join) without waiting: [`Error::WouldBlock`] while
    /// a task is unfinished (it has no `Full`/`Empty` meaning; see
    /// "Waiting" on [`Queue`]).
    pub fn try_join(&self) -> Result<()> {
        self.q
            .ring
            .join_until(Some(Deadline::PASSED))
            .map_err(|e| match e {
                Error::Timeout => Error::WouldBlock,
                e => e,
            })
    }

    /// [`join`](Self::join), waiting at most `timeout` ([`Error::Timeout`]).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.q.ring.join_until(Some(Deadline::after(timeout)))
    }

    /// The plain [`Queue`] view of it.
    pub fn as_queue(&self) -> &Queue {
        &self.q
    }
}
