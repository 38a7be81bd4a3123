//! Spilled messages: bytes too large for a queue slot or a pipe ring,
//! parked in a named segment of their own, while a fixed-size [`Ticket`]
//! naming it travels in the message instead.
//!
//! A [`Queue`](crate::Queue) slot has a fixed size chosen at creation; a
//! message of any size (a 64 MiB result of a pool task) goes through a
//! spill: the sender copies the bytes into a fresh segment
//! ([`Spill::create`]) and sends the ticket ([`Ticket::to_bytes`], 56
//! bytes); the receiver reads them back ([`Ticket::read`]) or reads and
//! removes the segment in one call ([`Ticket::take`]).
//!
//! Who removes the name is explicit, as for every segment: the [`Spill`]
//! removes it when dropped (the sender keeps the data until it knows the
//! receiver is done), unless [`Spill::hand_off`] passed that duty to the
//! receiver (which then calls [`Ticket::take`] or [`Ticket::discard`]).
//! A sender that dies between the two leaves the name behind: give spills
//! names a supervisor can compute and remove ([`Ticket::discard`] works
//! from the name alone), as the process pool does.
//!
//! A ticket read from shared memory is not trusted: its name is validated
//! like any segment name, and its length is checked against the segment
//! that the name opens.
//!
//! ```
//! use shmprim::spill::{Spill, Ticket};
//! let name = format!("/shmprim-doc-spill-{}", std::process::id());
//! let big = vec![7u8; 1 << 20];
//! let ticket = Spill::create(&name, &big).unwrap().hand_off();
//! let wire = ticket.to_bytes(); // what travels in the queue
//! let back = Ticket::from_bytes(&wire).unwrap().take().unwrap();
//! assert_eq!(back, big);
//! ```

use crate::{Error, Plain, Result, Segment};

/// Longest spill name, in bytes (the leading `/` included).
pub const MAX_SPILL_NAME: usize = 48;

crate::plain_struct! {
    /// Names a spilled message: the segment's name (NUL-padded) and the
    /// message's length. [`Ticket::SIZE`] bytes on the wire.
    #[derive(Debug, PartialEq, Eq)]
    pub struct Ticket {
        name: [u8; MAX_SPILL_NAME],
        len: u64,
    }
}

/// The sending side of a spilled message: a named segment holding a copy
/// of the bytes. Dropping it removes the name (unless handed off).
#[derive(Debug)]
pub struct Spill {
    seg: Segment,
    ticket: Ticket,
}

impl Spill {
    /// Copies `bytes` into a new segment `name` (at most
    /// [`MAX_SPILL_NAME`] bytes; [`Error::AlreadyExists`] if it is taken).
    pub fn create(name: &str, bytes: &[u8]) -> Result<Spill> {
        if name.len() > MAX_SPILL_NAME {
            return Err(Error::InvalidArgument("spill name longer than 48 bytes"));
        }
        let seg = Segment::create(name, bytes.len().max(1))?;
        // SAFETY: `data_ptr` starts `data_len >= bytes.len()` bytes of the
        // mapping `seg` keeps alive; a raw copy forms no reference to
        // memory another process may touch; the source is a separate
        // private buffer.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), seg.data_ptr(), bytes.len()) };
        let mut n = [0u8; MAX_SPILL_NAME];
        n[..name.len()].copy_from_slice(name.as_bytes());
        Ok(Spill {
            seg,
            ticket: Ticket {
                name: n,
                len: bytes.len() as u64,
            },
        })
    }

    /// The ticket to send. The segment stays until this `Spill` drops.
    pub fn ticket(&self) -> Ticket {
        self.ticket
    }

    /// Gives up ownership of the name: the receiver must
    /// [`take`](Ticket::take) or [`discard`](Ticket::discard) it.
    pub fn hand_off(self) -> Ticket {
        self.seg.persist();
        self.ticket
    }

    /// The segment holding the bytes.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl Ticket {
    /// Bytes of [`Ticket::to_bytes`].
    pub const SIZE: usize = std::mem::size_of::<Ticket>();

    /// The segment's name; [`Error::Corrupt`] if the bytes are not one.
    pub fn name(&self) -> Result<&str> {
        let end = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(MAX_SPILL_NAME);
        std::str::from_utf8(&self.name[..end]).map_err(|_| Error::Corrupt("spill name"))
    }

    /// The message's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ticket as it travels.
    pub fn to_bytes(&self) -> [u8; Ticket::SIZE] {
        let mut out = [0u8; Ticket::SIZE];
        out[..MAX_SPILL_NAME].copy_from_slice(&self.name);
        out[MAX_SPILL_NAME..].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    /// A ticket from the first [`Ticket::SIZE`] bytes of `b`
    /// ([`Error::Corrupt`] if there are fewer, or no valid name).
    pub fn from_bytes(b: &[u8]) -> Result<Ticket> {
        let b = b
            .get(..Ticket::SIZE)
            .ok_or(Error::Corrupt("spill ticket truncated"))?;
        let mut name = [0u8; MAX_SPILL_NAME];
        name.copy_from_slice(&b[..MAX_SPILL_NAME]);
        let mut len = [0u8; 8];
        len.copy_from_slice(&b[MAX_SPILL_NAME..]);
        let t = Ticket {
            name,
            len: u64::from_le_bytes(len),
        };
        t.name()?;
        Ok(t)
    }

    /// Opens the segment, checking that it holds at least `len` bytes: the
    /// way to read a large message in place, without a copy.
    pub fn open(&self) -> Result<Segment> {
        let seg = Segment::open(self.name()?)?;
        if (seg.data_len() as u64) < self.len {
            return Err(Error::Corrupt("spill segment shorter than its ticket"));
        }
        Ok(seg)
    }

    /// Copies the message out; the segment stays.
    pub fn read(&self) -> Result<Vec<u8>> {
        let seg = self.open()?;
        let len = usize::try_from(self.len).map_err(|_| Error::Corrupt("spill length"))?;
        let mut out = Vec::with_capacity(len);
        // SAFETY: `open` checked `len <= data_len`; the destination has
        // `len` bytes of capacity, set as initialised just after; a raw
        // copy forms no reference to the shared bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(seg.data_ptr(), out.as_mut_ptr(), len);
            out.set_len(len);
        }
        Ok(out)
    }

    /// Copies the message out and removes the segment's name.
    pub fn take(&self) -> Result<Vec<u8>> {
        let out = self.read();
        let gone = self.discard();
        let out = out?;
        gone?;
        Ok(out)
    }

    /// Removes the segment's name without reading it.
    pub fn discard(&self) -> Result<()> {
        Segment::unlink_name(self.name()?)
    }
}

// The ticket is plain data; keep its size stable on the wire.
const _: () = assert!(Ticket::SIZE == 56);
const _: fn() = || {
    fn plain<T: Plain>() {}
    plain::<Ticket>();
};

#[cfg(test)]
mod tests {
    use super::*;

    fn name(tag: &str) -> String {
        format!("/shmprim-t-spill-{}-{tag}", std::process::id())
    }

    #[test]
    fn round_trip_and_owner_unlinks() {
        let n = name("a");
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let s = Spill::create(&n, &data).unwrap();
        let t = Ticket::from_bytes(&s.ticket().to_bytes()).unwrap();
        assert_eq!(t.read().unwrap(), data);
        drop(s);
        assert!(matches!(t.read(), Err(Error::NotFound)));
    }

    #[test]
    fn hand_off_then_take() {
        let n = name("b");
        let t = Spill::create(&n, b"").unwrap().hand_off();
        assert!(t.is_empty());
        assert_eq!(t.take().unwrap(), b"");
        assert!(matches!(t.discard(), Err(Error::NotFound)));
    }

    #[test]
    fn garbage_tickets_are_refused() {
        assert!(Ticket::from_bytes(&[0u8; 10]).is_err());
        let mut b = [0xffu8; Ticket::SIZE];
        assert!(Ticket::from_bytes(&b).is_err());
        b[..4].copy_from_slice(b"/a/b");
        b[4] = 0;
        let t = Ticket::from_bytes(&b).unwrap();
        assert!(t.read().is_err());
        // A length beyond the segment is refused, not read past.
        let n = name("c");
        let s = Spill::create(&n, b"abc").unwrap();
        let mut w = s.ticket().to_bytes();
        w[MAX_SPILL_NAME..].copy_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(
            Ticket::from_bytes(&w).unwrap().read(),
            Err(Error::Corrupt(_))
        ));
        assert!(Spill::create(&"/x".repeat(30), b"").is_err());
    }
}
