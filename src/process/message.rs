//! The argument and result codec: [`Message`], shared by every start
//! method and by [`Pool`](crate) tasks.
//!
//! A message is bytes plus, for anonymous handles, descriptors. Plain
//! values travel as their bytes; `serde` types (feature `serde`) through
//! the crate's postcard codec, wrapped in [`Serde`]; handles by name, or by
//! their `memfd` for anonymous ones (see [`Segment::anonymous_fd`]). The
//! bytes come from shared memory another process wrote: decoding checks
//! every length and never panics.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys::child::dup;
use crate::{
    Array, AtomicInt, AtomicValue, Barrier, BoundedSemaphore, Condition, Connection, Error, Event,
    JoinableQueue, Lock, Pipe, Plain, Queue, RLock, RawArray, RawValue, Result, Segment, Semaphore,
    SharedList, SharedMap, Value,
};

/// A value that can cross into another process: a start argument, a
/// result, a pool task. Implemented for every [`Plain`] type, `()`,
/// `bool`, `String`, `Vec`, `Option`, tuples up to six, every handle
/// (named or anonymous; [`SharedMap`] and [`SharedList`] named only),
/// [`FnRef`](super::FnRef), and (feature `serde`) `Serde<T>`.
///
/// Descriptors (anonymous handles) travel only from a parent to the child
/// it starts: a result that holds one is [`Error::Unsupported`].
pub trait Message: Sized {
    /// Appends `self` to `out`.
    fn encode(&self, out: &mut Encoder) -> Result<()>;
    /// Reads one value from `input`.
    fn decode(input: &mut Decoder<'_>) -> Result<Self>;
}

/// Where a [`Message`] is written: bytes, and the descriptors it passes.
#[derive(Debug, Default)]
pub struct Encoder {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Encoder {
    /// An empty message.
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Appends raw bytes.
    pub fn put(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// Appends a `u64` (little-endian).
    pub fn put_u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }

    /// Appends a length, then the bytes.
    pub fn put_bytes(&mut self, bytes: &[u8]) {
        self.put_u64(bytes.len() as u64);
        self.put(bytes);
    }

    /// Passes a copy of `fd` (close-on-exec; the launcher clears that flag
    /// in the child only) and appends its index.
    pub fn put_fd(&mut self, fd: BorrowedFd<'_>) -> Result<()> {
        self.put_u64(self.fds.len() as u64);
        self.fds.push(dup(fd)?);
        Ok(())
    }

    /// The bytes and the descriptors, in index order.
    pub fn finish(self) -> (Vec<u8>, Vec<OwnedFd>) {
        (self.bytes, self.fds)
    }

    /// An encoder that appends to `bytes`: a buffer reused from message
    /// to message (take it back from [`finish`](Self::finish)).
    pub fn with_buffer(bytes: Vec<u8>) -> Encoder {
        Encoder {
            bytes,
            fds: Vec::new(),
        }
    }

    /// The bytes so far: several messages may be encoded back to back
    /// into one encoder (a pool encodes a whole map's arguments so, with
    /// no allocation per item).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether any descriptor was passed.
    pub fn has_fds(&self) -> bool {
        !self.fds.is_empty()
    }

    /// Forgets everything after the first `len` bytes, and every
    /// descriptor (closing the copies): undoes a message that failed to
    /// encode, or that must not pass descriptors.
    pub fn truncate(&mut self, len: usize) {
        self.bytes.truncate(len);
        self.fds.clear();
    }
}

/// Where a [`Message`] is read from: untrusted bytes and the descriptors
/// the process received (each can be taken once).
#[derive(Debug)]
pub struct Decoder<'a> {
    bytes: &'a [u8],
    fds: &'a mut [Option<OwnedFd>],
    /// Sequence items left that may consume no bytes (`()`, empty
    /// tuples): every item either shrinks `bytes` or spends one of these,
    /// so one message decodes in at most `bytes + FREE_ITEMS` item steps
    /// however the counts nest.
    free_items: usize,
}

/// Zero-byte sequence items one message may hold (`Decoder::free_items`).
const FREE_ITEMS: usize = 4096;

/// The most bytes a sequence reserves up front; past it, it grows as items
/// actually decode (a garbage count allocates nothing big).
const MAX_RESERVE: usize = 1 << 20;

fn short() -> Error {
    Error::Corrupt("message: truncated or malformed")
}

impl<'a> Decoder<'a> {
    /// Reads `bytes`; descriptor indices refer to `fds`.
    pub fn new(bytes: &'a [u8], fds: &'a mut [Option<OwnedFd>]) -> Decoder<'a> {
        Decoder {
            bytes,
            fds,
            free_items: FREE_ITEMS,
        }
    }

    /// The next `n` raw bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.bytes.len() {
            return Err(short());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// The next `u64`.
    pub fn take_u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| short())?))
    }

    /// A length (bounded by what is left), then that many bytes.
    pub fn take_bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.take_u64()?;
        let n = usize::try_from(n).map_err(|_| short())?;
        self.take(n)
    }

    /// A length that counts items of at least one byte each: refused if
    /// more than the bytes left could hold (no huge allocation on garbage).
    pub fn take_count(&mut self) -> Result<usize> {
        let n = self.take_u64()?;
        match usize::try_from(n) {
            Ok(n) if n <= self.bytes.len() => Ok(n),
            _ => Err(short()),
        }
    }

    /// Decodes a sequence of `n` items with `item`, refusing a count that
    /// neither the bytes left nor the zero-byte budget could hold, and an
    /// item that consumed nothing once the budget is spent: one message
    /// decodes in at most (its bytes + 4096) item steps however counts
    /// nest.
    pub fn take_seq<T>(
        &mut self,
        n: u64,
        mut item: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<Vec<T>> {
        let too_long = || Error::Corrupt("message: sequence too long");
        let n = usize::try_from(n).map_err(|_| too_long())?;
        if n > self.bytes.len().saturating_add(self.free_items) {
            return Err(too_long());
        }
        let reserve = n
            .min(self.bytes.len())
            .min(MAX_RESERVE / std::mem::size_of::<T>().max(1));
        let mut v = Vec::with_capacity(reserve);
        for _ in 0..n {
            let before = self.bytes.len();
            v.push(item(self)?);
            if self.bytes.len() == before {
                self.free_items = self.free_items.checked_sub(1).ok_or_else(too_long)?;
            }
        }
        Ok(v)
    }

    /// The descriptor whose index comes next; each can be taken once.
    pub fn take_fd(&mut self) -> Result<OwnedFd> {
        let i = self.take_u64()?;
        usize::try_from(i)
            .ok()
            .and_then(|i| self.fds.get_mut(i))
            .and_then(Option::take)
            .ok_or(Error::Corrupt("message: bad or reused descriptor index"))
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// `Ok` if everything was read: a message is exactly one value.
    pub fn finish(&self) -> Result<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(Error::Corrupt("message: bytes left over"))
        }
    }
}

/// Encodes one value into fresh bytes and descriptors.
pub fn encode<T: Message>(value: &T) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut e = Encoder::new();
    value.encode(&mut e)?;
    Ok(e.finish())
}

/// Decodes exactly one value from `bytes` (descriptor indices refer to
/// `fds`).
pub fn decode<T: Message>(bytes: &[u8], fds: &mut [Option<OwnedFd>]) -> Result<T> {
    let mut d = Decoder::new(bytes, fds);
    let v = T::decode(&mut d)?;
    d.finish()?;
    Ok(v)
}

impl<T: Plain> Message for T {
    fn encode(&self, out: &mut Encoder) -> Result<()> {
        // SAFETY: `T: Plain` has no padding and no pointers, so its bytes
        // are initialised and meaningful in another process.
        let b = unsafe {
            std::slice::from_raw_parts((self as *const T).cast::<u8>(), std::mem::size_of::<T>())
        };
        out.put(b);
        Ok(())
    }
    fn decode(input: &mut Decoder<'_>) -> Result<Self> {
        let b = input.take(std::mem::size_of::<T>())?;
        // SAFETY: `b` holds size_of::<T>() bytes; `T: Plain` is valid for
        // any bits; the read is unaligned-safe.
        Ok(unsafe { b.as_ptr().cast::<T>().read_unaligned() })
    }
}

impl Message for () {
    fn encode(&self, _: &mut Encoder) -> Result<()> {
        Ok(())
    }
    fn decode(_: &mut Decoder<'_>) -> Result<Self> {
        Ok(())
    }
}

impl Message for bool {
    fn encode(&self, out: &mut Encoder) -> Result<()> {
        out.put(&[u8::from(*self)]);
        Ok(())
    }
    fn decode(input: &mut Decoder<'_>) -> Result<Self> {
        match input.take(1)? {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(Error::Corrupt("message: bad bool")),
        }
    }
}

impl Message for String {
    fn encode(&self, out: &mut Encoder) -> Result<()> {
        out.put_bytes(self.as_bytes());
        Ok(())
    }
    fn decode(input: &mut Decoder<'_>) -> Result<Self> {
        let b = input.take_bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| Error::Corrupt("message: string not UTF-8"))
    }
}

impl<T: Message> Message for Vec<T> {
    fn encode(&self, out: &mut Encoder) -> Result<()> {
        out.put_u64(self.len() as u64);
        self.iter().try_for_each(|x| x.encode(out))
    }
    fn decode(input: &mut Decoder<'_>) -> Result<Self> {
        let n = input.take_u64()?;
        input.take_seq(n, T::decode)
    }
}

impl<T: Message> Message for Option<T> {
    fn encode(&self, out: &mut Encoder) -> Result<()> {
        match self {
            None => {
                out.put(&[0]);
                Ok(())
            }
            Some(x) => {
                out.put(&[1]);
                x.encode(out)
            }
        }
    }
    fn decode(input: &mut Decoder<'_>) -> Result<Self> {
        match bool::decode(input)? {
            false => Ok(None),
            true => Ok(Some(T::decode(input)?)),
        }
    }
}

macro_rules! tuple_message {
    ($($t:ident $i:tt),+) => {
        impl<$($t: Message),+> Message for ($($t,)+) {
            fn encode(&self, out: &mut Encoder) -> Result<()> {
                $(self.$i.encode(out)?;)+
                Ok(())
            }
            fn decode(input: &mut Decoder<'_>) -> Result<Self> {
                Ok(($($t::decode(input)?,)+))
            }
        }
    };
}

tuple_message!(A 0);
tuple_message!(A 0, B 1);
tuple_message!(A 0, B 1, C 2);
tuple_message!(A 0, B 1, C 2, D 3);
tuple_message!(A 0, B 1, C 2, D 3, E 4);
tuple_message!(A 0, B 1, C 2, D 3, E 4, F 5);

/// Any `serde` type as a [`Message`], through the crate's postcard codec
/// (the one behind `send_obj`/`recv_obj`).
#[cfg(feature = "serde")]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Serde<T>(pub T);

#[cfg(feature = "serde")]
impl<T: serde::Serialize + serde::de::DeserializeOwned> Message for Serde<T> {
    fn encode(&self, out: &mut Encoder) -> Result<()> {
        out.put_bytes(&postcard::to_stdvec(&self.0).map_err(Error::Codec)?);
        Ok(())
    }
    fn decode(input: &mut Decoder<'_>) -> Result<Self> {
        let b = input.take_bytes()?;
        match postcard::take_from_bytes(b).map_err(Error::Codec)? {
            (v, []) => Ok(Serde(v)),
            _ => Err(Error::Corrupt(
                "message: bytes left over after a serde value",
            )),
        }
    }
}

/// How a handle's segment travels: by name, or by descriptor.
const BY_NAME: u8 = 0;
const BY_FD: u8 = 1;

/// Writes how to reach `seg`: its name, or its anonymous descriptor.
pub fn put_segment(out: &mut Encoder, seg: &Segment) -> Result<()> {
    match (seg.name(), seg.anonymous_fd()) {
        (Some(name), _) => {
            out.put(&[BY_NAME]);
            out.put_bytes(name.as_bytes());
            Ok(())
        }
        (None, Some(fd)) => {
            out.put(&[BY_FD]);
            out.put_fd(fd.as_fd())
        }
        (None, None) => Err(Error::Unsupported(
            "a segment with neither name nor descriptor",
        )),
    }
}

/// Reads what [`put_segment`] wrote and opens it with `open` (a handle's
/// `open(name)`).
pub fn take_segment<T>(input: &mut Decoder<'_>, open: impl FnOnce(&str) -> Result<T>) -> Result<T> {
    match input.take(1)? {
        [BY_NAME] => {
            let name = std::str::from_utf8(input.take_bytes()?)
                .map_err(|_| Error::Corrupt("message: segment name not UTF-8"))?;
            open(name)
        }
        [BY_FD] => Segment::open_descriptor(input.take_fd()?, open),
        _ => Err(Error::Corrupt("message: bad segment reference")),
    }
}

macro_rules! handle_message {
    ($($t:ty),* $(,)?) => {$(
        impl Message for $t {
            fn encode(&self, out: &mut Encoder) -> Result<()> {
                put_segment(out, self.segment())
            }
            fn decode(input: &mut Decoder<'_>) -> Result<Self> {
                take_segment(input, <$t>::open)
            }
        }
    )*};
}

handle_message!(
    Lock,
    RLock,
    Semaphore,
    BoundedSemaphore,
    Event,
    Barrier,
    Queue,
    JoinableQueue,
    Pipe,
);

/// An anonymous object that shares an anonymous lock: its lock has no
/// name to follow, and the link is not recorded.
fn refuse_anonymous_shared(seg: &Segment, shared: bool) -> Result<()> {
    if shared && seg.name().is_none() {
        return Err(Error::Unsupported(
            "an anonymous object sharing a lock reaches only forked children",
        ));
    }
    Ok(())
}

impl Message for Condition {
    fn encode(&self, out: &mut Encoder) -> Result<()> {
        refuse_anonymous_shared(self.segment(), self.shared_lock().is_some())?;
        put_segment(out, self.segment())
    }
    fn decode(input: &mut Decoder<'_>) -> Result<Self> {
        take_segment(input, Condition::open)
    }
}

impl<T: Plain> Message for Value<T> {
    fn encode(&self, out: &mut Encoder) -> Result<()> {
        refuse_anonymous_shared(self.segment(), self.shared_lock().is_some())?;
        put_segment(out, self.segment())
    }
    fn decode(input: &mut Decoder<'_>) -> Result<Self> {
        take_segment(input, Value::open)
    }
}

impl<T: Plain> Message for Array<T> {
    fn encode(&self, out: &mut Encoder) -> Result<()> {
        refuse_anonymous_shared(self.segment(), self.shared_lock().is_some())?;
        put_segment(out, self.segment())
    }
    fn decode(input: &mut Decoder<'_>) -> Result<Self> {
        take_segment(input, Array::open)
    }
}

impl<T: AtomicInt> Message for AtomicValue<T> {
    fn encode(&self, out: &mut Encoder) -> Result<()> {
        put_segment(out, self.segment())
    }
    fn decode(input: &mut Decoder<'_>) -> Result<Self> {
        take_segment(input, AtomicValue::open)
    }
}

impl<T: Plain> Message for RawArray<T> {
    fn encode(&self, out: &mut Encoder) -> Result<()> {
        put_segment(out, self.segment())
    }
    fn decode(input: &mut Decoder<'_>) -> Result<Self> {
        take_segment(input, RawArray::open)
    }
}

impl<T: Plain> Message for RawValue<T> {
    fn encode(&self, out: &mut Encoder) -> Result<()> {
        put_segment(out, self.segment())
    }
    fn decode(input: &mut Decoder<'_>) -> Result<Self> {
        take_segment(input, RawValue::open)
    }
}

/// Growable containers travel by name only: an anonymous one's
/// generations are named segments reached through a root this process
/// holds no name for.
macro_rules! container_message {
    ($($t:ty),* $(,)?) => {$(
        impl Message for $t {
            fn encode(&self, out: &mut Encoder) -> Result<()> {
                let name = self.name().ok_or(Error::Unsupported(
                    "an anonymous SharedMap/SharedList reaches only forked children: \
                     create a named one to pass it",
                ))?;
                out.put_bytes(name.as_bytes());
                Ok(())
            }
            fn decode(input: &mut Decoder<'_>) -> Result<Self> {
                let name = std::str::from_utf8(input.take_bytes()?)
                    .map_err(|_| Error::Corrupt("message: container name not UTF-8"))?;
                <$t>::open(name)
            }
        }
    )*};
}

container_message!(SharedMap, SharedList);

impl Message for Segment {
    fn encode(&self, out: &mut Encoder) -> Result<()> {
        put_segment(out, self)
    }
    fn decode(input: &mut Decoder<'_>) -> Result<Self> {
        take_segment(input, Segment::open)
    }
}

/// A pipe end: the receiving process connects (claims) the same end. Give
/// a child an end this process has not used: an end is claimed once.
impl Message for Connection {
    fn encode(&self, out: &mut Encoder) -> Result<()> {
        let (end, seg) = self.end();
        out.put(&[matches!(end, crate::End::B) as u8]);
        put_segment(out, seg)
    }
    fn decode(input: &mut Decoder<'_>) -> Result<Self> {
        let end = match input.take(1)? {
            [0] => crate::End::A,
            [1] => crate::End::B,
            _ => return Err(Error::Corrupt("message: bad pipe end")),
        };
        take_segment(input, Pipe::open)?.connect(end)
    }
}
