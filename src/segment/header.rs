//! The segment header: what a segment holds, written by its creator and
//! checked by every opener before it touches the object.
//!
//! | offset | field            | meaning                                          |
//! |-------:|------------------|--------------------------------------------------|
//! |      0 | `magic`          | `b"SHMPRIM\0"`                                    |
//! |      8 | `version`        | [`FORMAT_VERSION`]                                |
//! |     12 | `state`          | 0 while initialising, `READY` (0x52445952) after  |
//! |     16 | `kind`           | [`Kind`] of the object                            |
//! |     20 | `header_size`    | [`HEADER_SIZE`]                                   |
//! |     24 | `total_size`     | bytes in the segment; must equal `fstat` size     |
//! |     32 | `object_offset`  | where the object starts                           |
//! |     40 | `object_size`    | bytes the object spans                            |
//! |     48 | `type_size`      | `size_of` the stored element type                 |
//! |     56 | `type_align`     | `align_of` the stored element type                |
//! |     64 | `type_tag`       | stable tag of the stored element type             |
//! |     72 | `param_len`      | length (arrays), else 0                           |
//! |     80 | `param_capacity` | capacity (rings, later), else 0                   |
//! |     88 | `creator_pid`    | pid of the creator                                |
//! |     92 | `flags`          | bit 0: a lock link follows                        |
//! |     96 | `creator_start`  | creator's start time (`/proc/PID/stat` field 22)  |
//! |    104 | `checksum`       | FNV-1a of every field above but `state`, + link,  |
//! |        |                  | + `creator_pidns`                                 |
//! |    112 | `link`           | NUL-padded name of a linked lock segment          |
//! |    368 | `overflow`       | attachers that found the table full (mutable)     |
//! |    372 | `foreign`        | 1 once a process of another pid namespace than    |
//! |        |                  | the creator's attached (mutable, never cleared)   |
//! |    376 | `doomed`         | a cleaner about to unlink it: a 16-byte row like  |
//! |        |                  | the attach table's, pid and start time (mutable)  |
//! |    392 | `creator_pidns`  | creator's pid namespace (`/proc/self/ns/pid` inode, 0 if unknown) |
//! |    400 | reserved         | zero                                              |
//! |    512 | `attach`         | [`ATTACH_SLOTS`] entries of 16 bytes (mutable)    |
//!
//! The attach table records every process that holds a handle on the
//! segment (see `AttachEntry`): a cleaner tells a segment in use from a
//! stale one by it. `overflow`, `doomed` and the table change after `READY`
//! and are outside the checksum; nothing in them is trusted (a pid is only
//! ever a pid to ask the kernel about).
//!
//! Pids mean something only in the pid namespace that issued them: a
//! reader in another namespace than `creator_pidns` cannot judge the
//! creator or the attachers, and takes the segment for in use; and an
//! opener in another namespace than the creator's sets `foreign` before it
//! records its (foreign) pid, so that no cleaner ever judges the segment
//! by pids again.
//!
//! Every field is an atomic: a header is read while other processes may be
//! writing it (the creator before `READY`, or a buggy peer at any time), and
//! an atomic load of garbage is still a defined value to reject. The creator
//! stores every field, then `state = READY` with Release; an opener loads
//! `state` with Acquire and only then reads the rest (SYNC POINT: `publish`
//! / `wait_ready`).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

use static_assertions::const_assert_eq;

use super::attach::{is_free, AttachEntry, BUSY};
use crate::sys::proc;
use crate::{Error, Result};

/// `b"SHMPRIM\0"`, little-endian.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMPRIM\0");
/// The header format this build writes and reads. 2: the attach table,
/// and `RawMutex` layout version 2 (the crate's own lock word instead of a
/// pthread mutex).
pub const FORMAT_VERSION: u32 = 2;
/// The value of `state` once the creator has published the segment. Not 1,
/// so that garbage is unlikely to pass for it.
pub(crate) const READY: u32 = 0x5244_5952; // "RYDR"
/// Bytes reserved for the header at the start of every segment.
pub const HEADER_SIZE: usize = std::mem::size_of::<Header>();
/// Entries in a header's attach table: processes (handles) recorded as
/// using the segment. Beyond that, attachers are only counted (`overflow`)
/// and the segment is never judged stale while the count is non-zero.
pub const ATTACH_SLOTS: usize = 32;
/// The largest alignment an object may need: the smallest page size of the
/// supported platforms, which is all `mmap` promises.
pub(crate) const MAX_ALIGN: u64 = 4096;
/// Bytes for a linked lock's name, NUL-padded.
pub(crate) const LINK_LEN: usize = 256;
const FLAG_LINK: u32 = 1;

/// What a segment holds. Stored as a `u32` in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// Plain bytes ([`Segment::create`](crate::Segment::create)).
    Bytes,
    /// A [`Lock`](crate::Lock).
    Lock,
    /// An [`RLock`](crate::RLock).
    RLock,
    /// A [`Value`](crate::Value).
    Value,
    /// An [`Array`](crate::Array).
    Array,
    /// An [`AtomicValue`](crate::AtomicValue).
    AtomicValue,
    /// A `Pipe` (one or two SPSC byte rings).
    Pipe,
    /// A `Queue` (an MPMC slot ring).
    Queue,
    /// A `JoinableQueue` (an MPMC slot ring with a task count).
    JoinableQueue,
    /// A `Semaphore`.
    Semaphore,
    /// A `BoundedSemaphore`.
    BoundedSemaphore,
    /// An `Event`.
    Event,
    /// A `Condition` (its own lock, or a link to a `Lock` / `RLock`).
    Condition,
    /// A `Barrier`.
    Barrier,
    /// A [`RawArray`](crate::RawArray) or [`RawValue`](crate::RawValue):
    /// elements with no lock.
    RawArray,
}

impl Kind {
    /// The number stored in the header.
    pub const fn code(self) -> u32 {
        match self {
            Kind::Bytes => 1,
            Kind::Lock => 2,
            Kind::RLock => 3,
            Kind::Value => 4,
            Kind::Array => 5,
            Kind::AtomicValue => 6,
            Kind::Pipe => 7,
            Kind::Queue => 8,
            Kind::JoinableQueue => 9,
            Kind::Semaphore => 10,
            Kind::BoundedSemaphore => 11,
            Kind::Event => 12,
            Kind::Condition => 13,
            Kind::Barrier => 14,
            Kind::RawArray => 15,
        }
    }

    /// The kind stored as `code`, if this build knows it.
    pub const fn from_code(code: u32) -> Option<Kind> {
        Some(match code {
            1 => Kind::Bytes,
            2 => Kind::Lock,
            3 => Kind::RLock,
            4 => Kind::Value,
            5 => Kind::Array,
            6 => Kind::AtomicValue,
            7 => Kind::Pipe,
            8 => Kind::Queue,
            9 => Kind::JoinableQueue,
            10 => Kind::Semaphore,
            11 => Kind::BoundedSemaphore,
            12 => Kind::Event,
            13 => Kind::Condition,
            14 => Kind::Barrier,
            15 => Kind::RawArray,
            _ => return None,
        })
    }
}

/// Size, alignment and stable tag of a stored type: two processes agree on
/// an object only if they agree on all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// `size_of::<T>()`.
    pub size: u64,
    /// `align_of::<T>()`.
    pub align: u64,
    /// [`Plain::TYPE_TAG`](crate::Plain::TYPE_TAG), or 0 where no type is stored.
    pub tag: u64,
}

impl Fingerprint {
    /// No stored element type (locks, raw bytes).
    pub const NONE: Fingerprint = Fingerprint {
        size: 0,
        align: 1,
        tag: 0,
    };

    fn triple(self) -> (u64, u64, u64) {
        (self.size, self.align, self.tag)
    }
}

/// What a creator writes and what an opener expects.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) kind: Kind,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) len: u64,
    pub(crate) capacity: u64,
    pub(crate) object_size: u64,
    pub(crate) object_align: u64,
}

impl Spec {
    /// Where the object starts: after the header, at its alignment (at
    /// least a cache line, so the object never shares one with the header).
    pub(crate) fn object_offset(&self) -> Result<u64> {
        let align = self.object_align.max(64);
        if !align.is_power_of_two() {
            return Err(Error::InvalidArgument("alignment is not a power of two"));
        }
        // Mappings are only page-aligned: an offset that is a multiple of a
        // larger alignment would not give an aligned address.
        if align > MAX_ALIGN {
            return Err(Error::InvalidArgument(
                "alignment above 4096 bytes is not supported",
            ));
        }
        Ok((HEADER_SIZE as u64).next_multiple_of(align))
    }

    /// Total segment size: header, object, rounded to a cache line.
    pub(crate) fn total_size(&self) -> Result<u64> {
        self.object_offset()?
            .checked_add(self.object_size)
            .and_then(|n| n.checked_next_multiple_of(64))
            .filter(|&n| n <= isize::MAX as u64)
            .ok_or(Error::InvalidArgument("object too large"))
    }
}

/// What the header of an opened segment says, copied out of shared memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderInfo {
    /// The object kind, or `None` if this build does not know its code.
    pub kind: Option<Kind>,
    /// The raw kind code.
    pub kind_code: u32,
    /// The format version.
    pub version: u32,
    /// Bytes in the segment.
    pub total_size: u64,
    /// Where the object starts.
    pub object_offset: u64,
    /// Bytes the object spans.
    pub object_size: u64,
    /// The stored type's fingerprint.
    pub fingerprint: Fingerprint,
    /// Length parameter (arrays).
    pub len: u64,
    /// Capacity parameter (rings).
    pub capacity: u64,
    /// The creator's pid.
    pub creator_pid: u32,
    /// The creator's start time (clock ticks since boot; 0 if unknown).
    pub creator_start: u64,
    /// The creator's pid namespace (the inode of its `/proc/self/ns/pid`;
    /// 0 where unknown). Its pids mean nothing in another namespace.
    pub creator_pidns: u64,
    /// The name of a linked lock segment, if any.
    pub link: Option<String>,
}

/// The header as it lies in shared memory.
#[repr(C, align(64))]
pub(crate) struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    state: AtomicU32,
    kind: AtomicU32,
    header_size: AtomicU32,
    total_size: AtomicU64,
    object_offset: AtomicU64,
    object_size: AtomicU64,
    type_size: AtomicU64,
    type_align: AtomicU64,
    type_tag: AtomicU64,
    param_len: AtomicU64,
    param_capacity: AtomicU64,
    creator_pid: AtomicU32,
    flags: AtomicU32,
    creator_start: AtomicU64,
    checksum: AtomicU64,
    link: [AtomicU64; LINK_LEN / 8],
    overflow: AtomicU32,
    foreign: AtomicU32,
    doomed: AttachEntry,
    creator_pidns: AtomicU64,
    _reserved: [AtomicU64; (TABLE_OFFSET - PIDNS_END) / 8],
    attach: [AttachEntry; ATTACH_SLOTS],
}

/// Where the attach table starts: the v1 header size, so that every field
/// of v1 keeps its offset. Rows are 16 bytes: a `u64` word (`pid` in the
/// low 32 bits, a busy bit, a generation above) and a `u64` start time.
pub const ATTACH_TABLE_OFFSET: usize = 512;
use ATTACH_TABLE_OFFSET as TABLE_OFFSET;
/// Where the `doomed` row lies: a cleaner's pid (low 32 bits of the first
/// `u64`, as in an attach row) and start time (the second `u64`); see
/// [`remove_if_stale`](crate::segment::remove_if_stale).
pub const DOOMED_OFFSET: usize = 112 + LINK_LEN + 8;
/// Where the `overflow` count lies.
pub const OVERFLOW_OFFSET: usize = 112 + LINK_LEN;
/// Where the creator's pid-namespace id lies.
pub const PIDNS_OFFSET: usize = DOOMED_OFFSET + 16;
/// End of `creator_pidns`: reserved bytes follow up to the table.
const PIDNS_END: usize = PIDNS_OFFSET + 8;

// Another build of the crate in another process reads these bytes: pin
// the layout.
// (Not under loom, whose atomics are larger: see `raw::sync`.)
#[cfg(not(loom))]
mod layout {
    use super::*;
    const_assert_eq!(std::mem::size_of::<Header>(), 1024);
    const_assert_eq!(std::mem::offset_of!(Header, attach), TABLE_OFFSET);
    const_assert_eq!(std::mem::size_of::<AttachEntry>(), 16);
    const_assert_eq!(std::mem::offset_of!(Header, doomed), DOOMED_OFFSET);
    const_assert_eq!(std::mem::offset_of!(Header, creator_pidns), PIDNS_OFFSET);
}
const_assert_eq!(std::mem::align_of::<Header>(), 64);
const_assert_eq!(std::mem::offset_of!(Header, overflow), OVERFLOW_OFFSET);
const_assert_eq!(std::mem::offset_of!(Header, doomed) % 8, 0);
const_assert_eq!(std::mem::offset_of!(Header, state), 12);
const_assert_eq!(std::mem::offset_of!(Header, kind), 16);
const_assert_eq!(std::mem::offset_of!(Header, creator_pid), 88);
const_assert_eq!(std::mem::offset_of!(Header, checksum), 104);
const_assert_eq!(std::mem::offset_of!(Header, link), 112);

/// A private, 64-aligned copy of a header's bytes: read with `pread` by a
/// lister or cleaner (a peer truncating the file cannot fault a copy), or
/// built by a creator before it writes it with `pwrite`.
#[repr(C, align(64))]
pub(crate) struct HeaderCopy(pub(crate) [u8; HEADER_SIZE]);

impl HeaderCopy {
    pub(crate) fn zeroed() -> Box<HeaderCopy> {
        Box::new(HeaderCopy([0; HEADER_SIZE]))
    }

    /// The copy as a header, to read or to write (through its atomics).
    pub(crate) fn header(&mut self) -> &Header {
        // SAFETY: the buffer is HEADER_SIZE bytes and 64-aligned, as
        // `Header` needs; `Header` is made only of atomics, valid for any
        // bits; the reference is derived from `&mut self`, so nothing else
        // reads or writes the bytes while it lives.
        unsafe { &*self.0.as_mut_ptr().cast::<Header>() }
    }
}

/// What a reader made of one row of the attach table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attacher {
    /// The process id.
    pub pid: u32,
    /// Its start time in clock ticks since boot, or 0 while it is being
    /// written or where unknown.
    pub start: u64,
    /// Whether that process still runs (same pid and start time).
    pub alive: bool,
}

/// The attach-table row a handle claimed: released on drop by its own
/// process only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Row `index`, holding `word`.
    Row { index: usize, word: u64 },
    /// The table was full: counted in `overflow`.
    Overflow,
    /// The table was full and the count saturated: recorded nowhere, and
    /// released as nothing (the count stays non-zero for ever, so the
    /// segment is never judged stale).
    Uncounted,
}

impl AttachEntry {
    /// The row as seen by a reader; `None` for a free row.
    fn read(&self) -> Option<Attacher> {
        match self.snapshot() {
            Some((w, _)) if is_free(w) => None,
            Some((w, start)) if w & BUSY == 0 => {
                let pid = w as u32;
                Some(Attacher {
                    pid,
                    start,
                    alive: proc::is_alive(pid, start),
                })
            }
            // Being claimed, or changing under us: only the pid is known.
            Some((w, _)) => Some(Attacher::pid_only(w as u32)),
            None => Some(Attacher::pid_only(self.word() as u32)),
        }
    }
}

impl Attacher {
    fn pid_only(pid: u32) -> Attacher {
        Attacher {
            pid,
            start: 0,
            alive: proc::is_alive(pid, 0),
        }
    }
}

/// 64-bit FNV-1a, usable in `const` context.
pub(crate) const fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

impl Header {
    /// Every immutable field, in layout order, for the checksum.
    fn fields(&self) -> [u64; 16] {
        [
            self.magic.load(Relaxed),
            self.version.load(Relaxed) as u64,
            self.kind.load(Relaxed) as u64,
            self.header_size.load(Relaxed) as u64,
            self.total_size.load(Relaxed),
            self.object_offset.load(Relaxed),
            self.object_size.load(Relaxed),
            self.type_size.load(Relaxed),
            self.type_align.load(Relaxed),
            self.type_tag.load(Relaxed),
            self.param_len.load(Relaxed),
            self.param_capacity.load(Relaxed),
            self.creator_pid.load(Relaxed) as u64,
            self.flags.load(Relaxed) as u64,
            self.creator_start.load(Relaxed),
            self.creator_pidns.load(Relaxed),
        ]
    }

    fn link_bytes(&self) -> [u8; LINK_LEN] {
        let mut out = [0u8; LINK_LEN];
        for (chunk, word) in out.chunks_exact_mut(8).zip(&self.link) {
            chunk.copy_from_slice(&word.load(Relaxed).to_le_bytes());
        }
        out
    }

    /// The checksum of one read of the fields and the link.
    fn checksum_of(fields: &[u64; 16], link: &[u8; LINK_LEN]) -> u64 {
        let mut h = FNV_OFFSET;
        for f in fields {
            h = fnv1a(&f.to_le_bytes(), h);
        }
        fnv1a(link, h)
    }

    /// Writes every field but `state`. The caller is the creator, alone
    /// with a fresh zeroed segment.
    pub(crate) fn write(
        &self,
        spec: &Spec,
        total: u64,
        creator: (u32, u64, u64),
        link: Option<&str>,
    ) -> Result<()> {
        self.magic.store(MAGIC, Relaxed);
        self.version.store(FORMAT_VERSION, Relaxed);
        self.kind.store(spec.kind.code(), Relaxed);
        self.header_size.store(HEADER_SIZE as u32, Relaxed);
        self.total_size.store(total, Relaxed);
        self.object_offset.store(spec.object_offset()?, Relaxed);
        self.object_size.store(spec.object_size, Relaxed);
        self.type_size.store(spec.fingerprint.size, Relaxed);
        self.type_align.store(spec.fingerprint.align, Relaxed);
        self.type_tag.store(spec.fingerprint.tag, Relaxed);
        self.param_len.store(spec.len, Relaxed);
        self.param_capacity.store(spec.capacity, Relaxed);
        self.creator_pid.store(creator.0, Relaxed);
        self.creator_start.store(creator.1, Relaxed);
        self.creator_pidns.store(creator.2, Relaxed);
        let mut buf = [0u8; LINK_LEN];
        if let Some(link) = link {
            if link.len() >= LINK_LEN {
                return Err(Error::InvalidArgument("linked lock name too long"));
            }
            buf[..link.len()].copy_from_slice(link.as_bytes());
            self.flags.store(FLAG_LINK, Relaxed);
        }
        for (word, chunk) in self.link.iter().zip(buf.chunks_exact(8)) {
            word.store(
                u64::from_le_bytes(chunk.try_into().expect("8 bytes")),
                Relaxed,
            );
        }
        self.checksum.store(
            Self::checksum_of(&self.fields(), &self.link_bytes()),
            Relaxed,
        );
        Ok(())
    }

    /// SYNC POINT (Release): every field written before this store is
    /// visible to an opener whose Acquire load in [`Header::state`] sees
    /// `READY`.
    pub(crate) fn publish(&self) {
        self.state.store(READY, Release);
    }

    /// SYNC POINT (Acquire), pairs with [`Header::publish`].
    pub(crate) fn state(&self) -> u32 {
        self.state.load(Acquire)
    }

    /// Records process (`pid`, `start`) in the attach table: a free row,
    /// else the row of a process found dead, else the overflow count.
    /// SYNC POINT (SeqCst): the claim is ordered before the caller's load of
    /// [`Header::doomed_by`], against a cleaner's [`Header::doom`] before
    /// its scan (Dekker): one of the two sees the other.
    pub(crate) fn attach(&self, pid: u32, start: u64) -> Claim {
        let claim = |index: usize, old: u64| -> Option<Claim> {
            let word = self.attach[index].try_claim(old, pid, start)?;
            Some(Claim::Row { index, word })
        };
        for i in 0..ATTACH_SLOTS {
            let w = self.attach[i].word();
            if is_free(w) {
                if let Some(c) = claim(i, w) {
                    return c;
                }
            }
        }
        for i in 0..ATTACH_SLOTS {
            let e = &self.attach[i];
            if let Some((w, s)) = e.snapshot() {
                let dead = !is_free(w)
                    && if w & BUSY == 0 {
                        !proc::is_alive(w as u32, s)
                    } else {
                        !proc::is_alive(w as u32, 0)
                    };
                if dead {
                    if let Some(c) = claim(i, w) {
                        return c;
                    }
                }
            }
        }
        match self
            .overflow
            .fetch_update(SeqCst, Relaxed, |n| n.checked_add(1))
        {
            Ok(_) => Claim::Overflow,
            // Saturated: counting this claim is impossible, and releasing
            // it later must not take someone else's count.
            Err(_) => Claim::Uncounted,
        }
    }

    /// Releases `claim`, unless the row was since reclaimed by another
    /// process (which took this one for dead).
    pub(crate) fn detach(&self, claim: Claim) {
        match claim {
            Claim::Row { index, word } => {
                if let Some(e) = self.attach.get(index) {
                    e.release(word);
                }
            }
            Claim::Overflow => {
                let _ = self
                    .overflow
                    .fetch_update(SeqCst, Relaxed, |n| n.checked_sub(1));
            }
            Claim::Uncounted => {}
        }
    }

    /// Records that a process of another pid namespace than the creator's
    /// uses the segment. SYNC POINT (SeqCst): made before that process's
    /// claim, so a cleaner that misses the claim's meaning sees this.
    pub(crate) fn mark_foreign(&self) {
        self.foreign.store(1, SeqCst);
    }

    /// Whether a process of another pid namespace ever attached.
    pub(crate) fn has_foreign(&self) -> bool {
        self.foreign.load(SeqCst) != 0
    }

    /// Every occupied row of the attach table, and the overflow count.
    pub(crate) fn attachers(&self) -> (Vec<Attacher>, u32) {
        let rows = self.attach.iter().filter_map(AttachEntry::read).collect();
        (rows, self.overflow.load(SeqCst))
    }

    /// The cleaner's mark: `None` if no cleaner ever marked the segment
    /// (or its mark was withdrawn), else whether the cleaner that marked it
    /// still runs (same pid and start time: a recycled pid is another
    /// process). A mark being written is judged by its pid alone.
    pub(crate) fn doomed_by(&self) -> Option<Attacher> {
        self.doomed.read()
    }

    /// Marks the segment as about to be unlinked by (`me`, `start`), unless
    /// a live process (this one included: another thread may be cleaning)
    /// marked it first; returns the word to [`Header::undoom`] with.
    /// SYNC POINT (SeqCst): see [`Header::attach`].
    pub(crate) fn doom(&self, me: u32, start: u64) -> Option<u64> {
        let (cur, cur_start) = self.doomed.snapshot()?;
        if !is_free(cur) {
            let alive = if cur & BUSY == 0 {
                proc::is_alive(cur as u32, cur_start)
            } else {
                proc::is_alive(cur as u32, 0)
            };
            if alive {
                return None;
            }
        }
        self.doomed.try_claim(cur, me, start)
    }

    /// Withdraws a mark set by [`Header::doom`] (a no-op if another
    /// cleaner, having found this one dead, took it over).
    pub(crate) fn undoom(&self, word: u64) {
        self.doomed.release(word);
    }

    /// Checks every field against the segment's real size and `expect`.
    /// Called after `state` read `READY`; checks what [`Header::info`]
    /// returned (one read of each field), so a peer changing the header
    /// concurrently cannot make the checks disagree with what is returned.
    pub(crate) fn validate(&self, real_size: u64, expect: &Spec) -> Result<HeaderInfo> {
        let info = self.info()?;
        if info.total_size != real_size {
            return Err(Error::Corrupt(
                "segment size differs from its header (truncated?)",
            ));
        }
        if info.kind_code != expect.kind.code() {
            return Err(Error::KindMismatch {
                found: info.kind_code,
                expected: expect.kind.code(),
            });
        }
        if info.fingerprint != expect.fingerprint {
            return Err(Error::LayoutMismatch {
                found: info.fingerprint.triple(),
                expected: expect.fingerprint.triple(),
            });
        }
        // The object sits exactly where this build would put it: aligned
        // for the type (which `object_offset` refuses above a page).
        if info.object_offset != expect.object_offset()? {
            return Err(Error::Corrupt("object offset misplaced"));
        }
        Ok(info)
    }

    /// Reads and checks what can be checked without knowing the kind:
    /// magic, version, checksum, and that the object lies inside the
    /// segment. Reads every field once: the checksum is computed over the
    /// very values that are checked and returned.
    pub(crate) fn info(&self) -> Result<HeaderInfo> {
        let f = self.fields();
        let link_bytes = self.link_bytes();
        if f[0] != MAGIC {
            return Err(Error::Corrupt("not a shmprim segment (bad magic)"));
        }
        let version = f[1] as u32;
        if version != FORMAT_VERSION {
            return Err(Error::VersionMismatch {
                found: version,
                expected: FORMAT_VERSION,
            });
        }
        if self.checksum.load(Relaxed) != Self::checksum_of(&f, &link_bytes) {
            return Err(Error::Corrupt("header checksum mismatch"));
        }
        let (total_size, object_offset, object_size) = (f[4], f[5], f[6]);
        if f[3] != HEADER_SIZE as u64 {
            return Err(Error::Corrupt("unexpected header size"));
        }
        let object_end = object_offset.checked_add(object_size);
        if object_offset < HEADER_SIZE as u64 || object_end.map_or(true, |e| e > total_size) {
            return Err(Error::Corrupt("object lies outside the segment"));
        }
        let flags = f[13] as u32;
        let link = if flags & FLAG_LINK != 0 {
            let bytes = link_bytes;
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(LINK_LEN);
            let name = std::str::from_utf8(&bytes[..end])
                .map_err(|_| Error::Corrupt("linked lock name is not UTF-8"))?;
            crate::segment::name::validate(name)
                .map_err(|_| Error::Corrupt("linked lock name is invalid"))?;
            Some(name.to_owned())
        } else {
            None
        };
        Ok(HeaderInfo {
            kind: Kind::from_code(f[2] as u32),
            kind_code: f[2] as u32,
            version,
            total_size,
            object_offset,
            object_size,
            fingerprint: Fingerprint {
                size: f[7],
                align: f[8],
                tag: f[9],
            },
            len: f[10],
            capacity: f[11],
            creator_pid: f[12] as u32,
            creator_start: f[14],
            creator_pidns: f[15],
            link,
        })
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// With every row held by a live process and the overflow count
    /// saturated, an attacher is recorded nowhere, and its release takes
    /// nobody else's count (review finding 7: it used to decrement it).
    #[test]
    fn a_saturated_overflow_count_is_never_decremented_by_an_uncounted_claim() {
        let mut copy = HeaderCopy::zeroed();
        let header = copy.header();
        let me = proc::pid();
        let start = proc::start_time(me).unwrap_or(0);
        for _ in 0..ATTACH_SLOTS {
            assert!(matches!(header.attach(me, start), Claim::Row { .. }));
        }
        assert_eq!(header.attach(me, start), Claim::Overflow);
        header.overflow.store(u32::MAX, SeqCst);
        let claim = header.attach(me, start);
        header.detach(claim);
        assert_eq!(header.overflow.load(SeqCst), u32::MAX);
        assert_eq!(claim, Claim::Uncounted);
    }
}
