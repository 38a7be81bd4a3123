//! [`FnRef`]: a plain function named across `exec`.
//!
//! A spawned child is the same executable started again, so a function
//! sits at the same offset from any other symbol of that binary even with
//! address randomisation. A token records two offsets from one anchor
//! function — the function itself, and the monomorphised trampoline that
//! decodes its argument and encodes its result — with the identity of the
//! executable file (device, inode, size, modification time) and a checksum.
//! A process that decodes a token checks that it runs the same file and
//! that the checksum holds before it ever calls through the offsets.
//! Offsets hold only within one loaded object: `FnRef::new` checks with
//! `dladdr` that the function, its trampoline and the anchor share one
//! (and panics otherwise). Where that object is a shared library, the
//! identity check covers the executable, not the library file: the child
//! loads the library the executable names again, and a library replaced
//! on disk in between is not detected.
//!
//! Trust: the token travels in an anonymous segment that only the parent
//! and the child hold. The checksum catches garbage, not an adversary: a
//! process that can write that memory runs as the same user and could
//! `ptrace` either side anyway.

use std::marker::PhantomData;
use std::sync::OnceLock;

use super::message::{Decoder, Encoder, Message};
use crate::{Error, Result};

/// What a trampoline hands back after decoding its argument: the call to
/// make, which returns the encoded result.
pub(crate) type Prepared = Box<dyn FnOnce() -> Result<Vec<u8>>>;

/// What a trampoline did: prepared the call (no buffer given), or made
/// it, the result appended to the buffer (`Err`: the result could not be
/// encoded; the buffer may hold part of it).
pub(crate) enum Call {
    Prepared(Prepared),
    Done(Result<()>),
}

/// Decodes the argument for the function at `func` (an `Err` is the
/// argument's): with no buffer, returns the call; with one, makes it at
/// once and appends the encoded result (a pool worker: no allocation per
/// task, where the boxed call and its result's `Vec` were two).
pub(crate) type Trampoline =
    fn(func: usize, input: &mut Decoder<'_>, out: Option<&mut Vec<u8>>) -> Result<Call>;

/// The anchor every offset is taken from: any function of this binary.
#[inline(never)]
fn anchor() -> usize {
    anchor as fn() -> usize as usize
}

/// The base address of the loaded object (executable or shared library)
/// that holds code address `addr`; `None` where the dynamic loader knows
/// no object for it (a static binary, where everything is one object).
fn object_base(addr: usize) -> Option<usize> {
    // SAFETY: an all-zero `Dl_info` is valid (null pointers); dladdr only
    // looks `addr` up in the loader's tables and fills `info`.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `info` is a valid place to write.
    let found = unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) } != 0;
    (found && !info.dli_fbase.is_null()).then_some(info.dli_fbase as usize)
}

/// Panics unless every address in `addrs` lies in the same loaded object
/// as the anchor: an offset from the anchor names a function only within
/// one object, since each shared library loads at its own random address.
fn assert_same_object(addrs: &[usize]) {
    let Some(base) = object_base(anchor()) else {
        return; // no dynamic loader information: one static image
    };
    for &a in addrs {
        assert!(
            object_base(a) == Some(base),
            "FnRef::new: the function (or its argument/result code) lives in \
             another loaded object than shmprim (a shared library): an \
             offset cannot name it in another process"
        );
    }
}

/// The executable's identity: (device, inode, size, mtime in ns). Read
/// once: a binary replaced on disk later is another file, while
/// `/proc/self/exe` keeps naming the one this process runs.
pub(crate) fn exe_identity() -> [u64; 4] {
    static ID: OnceLock<[u64; 4]> = OnceLock::new();
    *ID.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata("/proc/self/exe")
            .or_else(|_| std::env::current_exe().and_then(std::fs::metadata))
        {
            Ok(m) => [
                m.dev(),
                m.ino(),
                m.size(),
                (m.mtime() as u64)
                    .wrapping_mul(1_000_000_000)
                    .wrapping_add(m.mtime_nsec() as u64),
            ],
            Err(_) => [0; 4],
        }
    })
}

fn checksum(words: &[u64]) -> u64 {
    // FNV-1a over the words' bytes, seeded apart from the segment tags.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ 0x7072_6f63;
    for w in words {
        for b in w.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn trampoline<A: Message + 'static, R: Message + 'static>(
    func: usize,
    input: &mut Decoder<'_>,
    out: Option<&mut Vec<u8>>,
) -> Result<Call> {
    // SAFETY: `func` was checked (FnRef::decode / Raw::check) to be the
    // address of a `fn(A) -> R` of this very binary: the token's offsets
    // were taken from one in the same executable file, and this trampoline
    // was chosen by the same token (it is monomorphised for A and R).
    let f: fn(A) -> R = unsafe { std::mem::transmute::<usize, fn(A) -> R>(func) };
    let a = A::decode(input)?;
    input.finish()?;
    Ok(match out {
        None => Call::Prepared(Box::new(move || {
            let mut out = Vec::new();
            encode_result(&f(a), &mut out).map(|()| out)
        })),
        Some(out) => Call::Done(encode_result(&f(a), out)),
    })
}

/// Appends a result's bytes to `out`: no descriptors (they cannot
/// travel back).
pub(crate) fn encode_result<R: Message>(r: &R, out: &mut Vec<u8>) -> Result<()> {
    let mut e = Encoder::with_buffer(std::mem::take(out));
    let done = r.encode(&mut e);
    let (bytes, fds) = e.finish();
    *out = bytes;
    done?;
    if !fds.is_empty() {
        return Err(Error::Unsupported(
            "a result cannot carry an anonymous handle back to the parent",
        ));
    }
    Ok(())
}

/// A token for a function `fn(A) -> R` of this program, valid in any
/// process running the same executable: what a spawned child (or a pool
/// worker, per task) is told to run.
///
/// ```
/// use shmprim::process::FnRef;
/// fn double(x: u64) -> u64 { x * 2 }
/// let f = FnRef::new(double);
/// assert_eq!(f.call(21), 42);
/// ```
pub struct FnRef<A, R> {
    raw: Raw,
    _t: PhantomData<fn(A) -> R>,
}

impl<A, R> Clone for FnRef<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A, R> Copy for FnRef<A, R> {}

impl<A, R> std::fmt::Debug for FnRef<A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnRef")
            .field("func", &self.raw.func)
            .field("call", &self.raw.call)
            .finish()
    }
}

impl<A: Message + 'static, R: Message + 'static> FnRef<A, R> {
    /// The token for `f`.
    ///
    /// # Panics
    ///
    /// If `f` (or the code monomorphised for `A` and `R`) is in another
    /// loaded object than this crate, e.g. `f` in a shared library while
    /// shmprim is linked into the executable, or the other way round:
    /// objects load at independent random addresses, so no offset names
    /// `f` in another process.
    pub fn new(f: fn(A) -> R) -> Self {
        let base = anchor();
        let (func, call) = (f as usize, trampoline::<A, R> as Trampoline as usize);
        assert_same_object(&[func, call]);
        FnRef {
            raw: Raw {
                func: func.wrapping_sub(base) as u64,
                call: call.wrapping_sub(base) as u64,
            },
            _t: PhantomData,
        }
    }

    /// Calls the function in this process.
    pub fn call(&self, a: A) -> R {
        // SAFETY: a token of type FnRef<A, R> is made only by `new` from a
        // `fn(A) -> R` of this binary, or by `decode`, which checks that
        // the token's trampoline is this binary's trampoline for (A, R)
        // and that the executable and checksum match.
        let f: fn(A) -> R =
            unsafe { std::mem::transmute::<usize, fn(A) -> R>(self.raw.func_addr()) };
        f(a)
    }

    pub(crate) fn raw(&self) -> Raw {
        self.raw
    }
}

/// A token with its types erased: two offsets from the anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Raw {
    func: u64,
    call: u64,
}

impl Raw {
    fn func_addr(self) -> usize {
        anchor().wrapping_add(self.func as usize)
    }

    /// The trampoline and function address, to run it.
    pub(crate) fn entry(self) -> (Trampoline, usize) {
        let call = anchor().wrapping_add(self.call as usize);
        // SAFETY: the token was checked (`Raw::decode`) to come from this
        // executable with an intact checksum: `call` is the address of a
        // `trampoline::<A, R>` of this binary, a `Trampoline`.
        let t = unsafe { std::mem::transmute::<usize, Trampoline>(call) };
        (t, self.func_addr())
    }

    pub(crate) fn encode(self, out: &mut Encoder) {
        let id = exe_identity();
        let words = [id[0], id[1], id[2], id[3], self.func, self.call];
        for w in words {
            out.put_u64(w);
        }
        out.put_u64(checksum(&words));
    }

    /// Reads a token and checks it belongs to this executable.
    pub(crate) fn decode(input: &mut Decoder<'_>) -> Result<Raw> {
        let mut words = [0u64; 6];
        for w in &mut words {
            *w = input.take_u64()?;
        }
        if input.take_u64()? != checksum(&words) {
            return Err(Error::Corrupt("function token: bad checksum"));
        }
        let id = exe_identity();
        if words[..4] != id || id == [0; 4] {
            return Err(Error::InvalidArgument(
                "function token from another executable",
            ));
        }
        Ok(Raw {
            func: words[4],
            call: words[5],
        })
    }
}

impl<A: Message + 'static, R: Message + 'static> Message for FnRef<A, R> {
    fn encode(&self, out: &mut Encoder) -> Result<()> {
        self.raw.encode(out);
        Ok(())
    }
    fn decode(input: &mut Decoder<'_>) -> Result<Self> {
        let raw = Raw::decode(input)?;
        let want = (trampoline::<A, R> as Trampoline as usize).wrapping_sub(anchor()) as u64;
        if raw.call != want {
            return Err(Error::InvalidArgument(
                "function token for other argument or result types",
            ));
        }
        Ok(FnRef {
            raw,
            _t: PhantomData,
        })
    }
}
