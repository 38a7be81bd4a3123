//! [`SpscRing`]: a single-producer single-consumer byte ring of
//! variable-length records, in place in shared memory.
//!
//! ## Layout
//!
//! ```text
//! offset   0  meta line      magic, capacity                 (written once, at init)
//! offset  64  producer line  tail (a hint, see below)        (written by the producer)
//! offset 128  consumer line  head, in-message bit            (written by the consumer)
//! offset 192  ends line      event counts, closed flags, claimants
//! offset 256  data           `capacity` bytes of records
//! ```
//!
//! `head` and `tail` are 64-bit byte positions that grow modulo 2^64; the
//! offset in the data area is `pos & (capacity - 1)`. Two positions of one
//! ring are never more than `capacity` (at most 2^31) apart, so every
//! comparison is made on their wrapping difference read as a signed
//! distance, and a ring streams across the 2^64 wrap like anywhere else
//! (`tests.rs` and `tests/pipe_wrap.rs` start rings just below it). The
//! lap tag below is `pos / capacity` modulo 2^23: consecutive laps differ
//! at the wrap as well. Each side keeps its
//! cached copy of the other side's position in its own handle
//! ([`Producer`], [`Consumer`]), not in shared memory: a producer trusts its
//! cached `head` until the ring looks full, and only then re-reads `head`
//! with Acquire; the consumer learns what was published from the record
//! headers themselves (below). Kept in the handle, the caches never leave
//! this CPU's cache and a peer cannot corrupt them.
//!
//! ## Records
//!
//! Each record starts 8-aligned with an 8-byte header word, followed by
//! `len` payload bytes padded to 8. A record never wraps: when one does not
//! fit before the end of the data area, the producer first writes a [`PAD`]
//! header there (its extent is "to the end of the data area") and continues
//! at offset 0. So a record of up to `capacity - 8` payload bytes always
//! fits once the ring drains.
//!
//! | bits   | header word field                                             |
//! |--------|---------------------------------------------------------------|
//! | 0..32  | `len`, payload bytes                                          |
//! | 32..40 | flags (below)                                                 |
//! | 40..64 | lap tag: `(lap mod 2^23) * 2 + 1`, `lap = pos / capacity`; never 0 |
//!
//! A header word is the record's publication: it counts only if its tag is
//! the one of its own position's lap. Before a slot is published it holds
//! either 0 (the producer zeroes the word just past each record it
//! publishes, when that word is free; in a batch, whose records are
//! published together by its first header, the word past the last one:
//! the others are overwritten by the next header) or, when the ring was
//! exactly full,
//! the header of the record one lap earlier (whose tag is the previous
//! lap's, always different). Nothing else can be there, so stale payload
//! bytes are never taken for a header. Format version 3 (magic
//! `shmspsc3`): version 1 had no tag and published through `tail` alone;
//! version 2 kept the in-message flag (below) in a word of its own.
//!
//! | flag            | meaning                                                      |
//! |-----------------|--------------------------------------------------------------|
//! | [`PAD`]         | no payload; skip to the next lap (never at offset 0)         |
//! | [`FIRST`]       | first fragment of a long message: payload = total `u64` + bytes |
//! | [`MORE`]        | more fragments of this message follow                        |
//! | [`ABORT`]       | the fragmented message in progress is abandoned              |
//!
//! The ring itself only carries records; the fragment flags are for the
//! layer above ([`Connection`](crate::Connection)), which defines them.
//!
//! ## Publish and consume (SYNC POINTs)
//!
//! The producer writes the payload and zeroes the word just past the
//! record (if free), then stores the tagged header word with Release; the
//! consumer polls the header word at its `head` with Acquire, so a message
//! moves the record's own cache line and nothing else (Aeron and FastFlow
//! poll the slot the same way). The producer then stores `tail` with
//! Release as well: it is a hint for [`Producer`] takeover, the debug view
//! and the attach checks, never read on the consumer's fast path (an
//! unread store keeps its line in the producer's cache and costs no
//! traffic). The consumer stores `head` with Release after it has finished
//! reading a record; the producer loads `head` with Acquire (only when its
//! cached copy says the ring is full) before overwriting the space below
//! it. After each publish the publisher calls `Wake::notify` on the other
//! side's event count, which costs a compiler barrier (or a fence) and a
//! load unless the other side announced that it sleeps; the sleeper's
//! re-check reads the header word (or `head`), the location published.
//!
//! The `head` word's low bit (`IN_MESSAGE`) says whether the consumer's
//! head is inside a fragmented message: the layer above sets it with
//! [`Consumer::set_in_message`], and it is published by the same store that
//! releases the record, so a consumer taking the end over after a death
//! reads a flag that describes exactly the head it finds (a flag written
//! apart from `head` could describe the record after it: the successor
//! would deliver a message's last fragment as a message of its own).
//!
//! A producer that dies between a header and the `tail` hint leaves the
//! hint one record behind (the consumer may already be past it): attach
//! accepts `head` and `tail` up to `capacity` apart either way, and a new
//! producer walks forward from the hint over correctly tagged records
//! (bounded by `head + capacity`) to the real frontier.
//!
//! ## Trust
//!
//! Everything read from shared memory is checked before use: the magic and
//! capacity at attach (the handle keeps its own copy of the capacity), that
//! positions are multiples of 8 and at most `capacity` apart, that a
//! refreshed `head` only moves forward and stays below `tail`, and
//! that every record header carries known flags and describes a record
//! inside the data area. A header with a foreign tag reads as "not
//! published yet". A violation is
//! [`Error::Corrupt`]: never an out-of-bounds access, a panic, or a loop
//! without a bound.
//!
//! ## Where things are
//!
//! | file          | what                                                        |
//! |---------------|-------------------------------------------------------------|
//! | `layout.rs`   | the control block, `init`/`attach`, the heap ring            |
//! | `wake.rs`     | the event count both sides sleep on                          |
//! | `ring.rs`     | the validated view of a ring and its data-area accessors     |
//! | `producer.rs` | reserve, write, publish                                      |
//! | `consumer.rs` | peek, read, release                                          |
//! | `recovery.rs` | claims, taking an end over, the attach-time position checks  |
//! | `tests.rs`    | unit tests; `loom.rs`: the loom models                       |

use crate::{Error, Result};

mod consumer;
mod layout;
mod producer;
mod recovery;
mod ring;
mod wake;

#[cfg(all(test, loom))]
mod loom;
#[cfg(all(test, not(loom)))]
mod tests;

pub use consumer::{Consumer, Record};
pub use layout::{HeapRing, SpscRing};
pub use producer::{Grant, Producer};
pub use ring::Ring;
#[cfg_attr(loom, allow(unused_imports))] // the pipe is not built under loom
pub(crate) use wake::Wake;

/// Header flag: padding to the end of the data area (wrap marker).
pub const PAD: u32 = 1;
/// Header flag: first fragment of a long message; the payload starts with
/// the message's total length as a little-endian `u64`.
pub const FIRST: u32 = 2;
/// Header flag: more fragments of the same message follow.
pub const MORE: u32 = 4;
/// Header flag: the fragmented message in progress is abandoned.
pub const ABORT: u32 = 8;
const KNOWN_FLAGS: u32 = PAD | FIRST | MORE | ABORT;

/// The in-place format version (see the module docs: 2 tags headers).
pub const FORMAT_VERSION: u8 = 3;
/// "shmspsc3": the last byte is [`FORMAT_VERSION`] in ASCII.
const MAGIC: u64 = u64::from_le_bytes(*b"shmspsc3");
/// Bits of the header word holding the flags, then the lap tag.
const FLAGS_SHIFT: u32 = 32;
const TAG_SHIFT: u32 = 40;
const FLAGS_MASK: u64 = 0xFF;
/// Smallest data area, in bytes.
pub const MIN_CAPACITY: usize = 256;
/// Largest data area, in bytes (a record length is 32 bits).
pub const MAX_CAPACITY: usize = 1 << 31;
/// Bytes of a record header.
pub const RECORD_HEADER: usize = 8;
/// The low bit of the `head` word: the consumer's head is inside a
/// fragmented message (see [`Consumer::set_in_message`]). Positions are
/// multiples of 8, so the bit never collides with one.
const IN_MESSAGE: u64 = 1;

/// How far position `to` is ahead of `from` (negative: behind).
/// Positions count bytes modulo 2^64, and two positions of one ring are
/// never more than `capacity` (at most 2^31) apart, so the wrapping
/// difference read as signed is their true distance, across the wrap too.
#[inline]
const fn ahead(from: u64, to: u64) -> i64 {
    to.wrapping_sub(from) as i64
}

/// Which end of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The producer (writer).
    Writer,
    /// The consumer (reader).
    Reader,
}

/// Size in bytes of one word of the data area as laid out in memory: a
/// Bytes a record with `len` payload bytes spans, header included.
#[inline]
pub const fn record_size(len: u64) -> u64 {
    RECORD_HEADER as u64 + ((len + 7) & !7)
}

/// The lap tag of a header at `pos` in a ring of `cap` bytes (a power of
/// two): odd, so never 0, and different for consecutive laps.
#[inline]
fn lap_tag(pos: u64, cap: u64) -> u64 {
    (((pos >> cap.trailing_zeros()) & 0x7F_FFFF) << 1) | 1
}

/// The one-record fast paths' process-local cache of the lap their
/// position (the producer's `tail`, the consumer's `head`) was in when it
/// was filled: where that lap ends, and the header bits above the length
/// of a flagless record in it. Never trusted blindly: a record is taken to
/// lie in this lap only if [`holds`](Self::holds) says so, which needs no
/// more than that the position has not moved back since the fill (it
/// never does). A stale cache (the position moved on to a later lap
/// through the general paths) fails that check, and the fast path's out
/// of line part refills it: once per lap.
///
/// It also keeps half the capacity, the most a record of the send fast
/// path may span (a longer message is fragmented), so that the test costs
/// one comparison.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lap {
    end: u64,
    hi: u64,
    // Fault injection sends through the general path.
    #[cfg_attr(feature = "fault-injection", allow(dead_code))]
    half: u64,
}

impl Lap {
    /// A cache that holds no record past `pos`, in a ring of `cap` bytes:
    /// the first use refills it.
    fn empty(pos: u64, cap: u64) -> Lap {
        Lap {
            end: pos,
            hi: 0,
            half: cap / 2,
        }
    }

    /// The lap of `pos` in a ring of `cap` bytes.
    fn of(pos: u64, cap: u64) -> Lap {
        Lap {
            end: pos.wrapping_add(cap - (pos & (cap - 1))),
            hi: lap_tag(pos, cap) << TAG_SHIFT,
            half: cap / 2,
        }
    }

    /// Whether a record ending at position `end` and starting at or after
    /// the position this cache was filled at lies inside this lap (it
    /// starts at or after the lap's start, and `end` is at most the lap's
    /// end, `cap` bytes later): then its header's tag is this lap's.
    #[inline(always)]
    fn holds(&self, end: u64, cap: u64) -> bool {
        self.end.wrapping_sub(end) < cap
    }
}

/// The header word of a record (or padding) at `pos`.
#[inline]
fn header_word(pos: u64, cap: u64, len: u32, flags: u32) -> u64 {
    (lap_tag(pos, cap) << TAG_SHIFT) | ((flags as u64) << FLAGS_SHIFT) | len as u64
}

/// Bytes the record whose (correctly tagged) header `word` sits at data
/// offset `off` spans: padding to the end of the data area, or header and
/// payload. `Corrupt` for unknown flags, malformed padding, or a record
/// crossing the end of the data area.
#[inline]
fn record_extent(word: u64, off: u64, cap: u64) -> Result<u64> {
    let (len, flags) = (word as u32, ((word >> FLAGS_SHIFT) & FLAGS_MASK) as u32);
    if flags & !KNOWN_FLAGS != 0 {
        return Err(Error::Corrupt("unknown record flags"));
    }
    if flags & PAD != 0 {
        if flags != PAD || len != 0 || off == 0 {
            return Err(Error::Corrupt("bad padding record"));
        }
        return Ok(cap - off);
    }
    let need = record_size(len as u64);
    if off + need > cap {
        return Err(Error::Corrupt("record crosses the end of the data area"));
    }
    Ok(need)
}
