//! The crate's one error type.
//!
//! Expected conditions (`Timeout`, `WouldBlock`, `OwnerDied`, ...) are their own
//! variants so callers can `match` on them; nothing here is a string to parse.

use std::fmt;
use std::io;

/// Why a segment name was refused. Names are checked before any system call,
/// so a bad name never reaches `shm_open` (whose errors are less helpful).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The name is the empty string.
    Empty,
    /// The name does not start with `/`.
    NoLeadingSlash,
    /// The name holds a `/` after the leading one.
    InnerSlash,
    /// The name holds a NUL byte.
    Nul,
    /// The name is longer than the platform allows (see
    /// [`MAX_NAME_LEN`](crate::segment::MAX_NAME_LEN)).
    TooLong,
    /// The name is `/` alone.
    NothingAfterSlash,
    /// The name is `/.` or `/..`: on Linux these name `/dev/shm` itself or
    /// its parent, never an object.
    DotName,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::Empty => "name is empty",
            NameError::NoLeadingSlash => "name must start with '/'",
            NameError::InnerSlash => "name may not contain '/' after the leading one",
            NameError::Nul => "name may not contain a NUL byte",
            NameError::TooLong => "name is longer than the platform limit",
            NameError::NothingAfterSlash => "name needs at least one character after '/'",
            NameError::DotName => "name may not be '/.' or '/..'",
        })
    }
}

/// Every error the crate returns.
///
/// Variants that describe shared memory contents (`Corrupt`, `*Mismatch`)
/// mean another process, another build of the crate or plain garbage put
/// those bytes there: the segment is refused, nothing is touched, and the
/// caller may report it or remove the segment.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The segment name was refused before any system call.
    InvalidName {
        /// The name as given (lossy if it was not UTF-8).
        name: String,
        /// What is wrong with it.
        reason: NameError,
    },
    /// `create` found a segment of that name already there. Use `open` or
    /// `open_or_create` to share it.
    AlreadyExists,
    /// No segment of that name exists (never created, or unlinked).
    NotFound,
    /// The operating system refused access to the segment (mode or owner).
    PermissionDenied,
    /// `open` found a segment owned by another user: that user can rewrite
    /// or truncate it at any time. Refused unless
    /// [`Options::allow_foreign_owner`](crate::Options::allow_foreign_owner).
    ForeignOwner {
        /// The segment's owner (uid).
        owner: u32,
        /// This process's effective uid.
        expected: u32,
    },
    /// `open` found a segment whose permission bits grant more than the
    /// mode asked for (by default 0600). Refused unless
    /// [`Options::allow_loose_mode`](crate::Options::allow_loose_mode).
    LooseMode {
        /// The segment's permission bits.
        mode: u32,
        /// The mode asked for ([`Options::mode`](crate::Options::mode)).
        requested: u32,
    },
    /// `/dev/shm` (or the memory behind it) is full. Reported at creation by
    /// `posix_fallocate`, so it never turns into `SIGBUS` later.
    OutOfSpace,
    /// The segment exists but its creator has not published it as ready
    /// within the open timeout: the creator is still initialising, or died
    /// while doing so.
    NotReady,
    /// The segment header's format version is not the one this build reads.
    VersionMismatch {
        /// The version found in the header.
        found: u32,
        /// The version this build writes and reads.
        expected: u32,
    },
    /// The segment holds another kind of object (a `Lock` opened as a `Value`).
    KindMismatch {
        /// The kind found in the header.
        found: u32,
        /// The kind asked for.
        expected: u32,
    },
    /// The stored type's layout fingerprint (size, alignment, type tag)
    /// differs from the requested type's.
    LayoutMismatch {
        /// `(size, align, tag)` found in the header.
        found: (u64, u64, u64),
        /// `(size, align, tag)` of the requested type.
        expected: (u64, u64, u64),
    },
    /// An `Array` was opened with a length other than the stored one.
    LengthMismatch {
        /// The stored length.
        found: u64,
        /// The length asked for.
        expected: u64,
    },
    /// The bytes in shared memory are not a valid object of this crate.
    Corrupt(&'static str),
    /// A deadline passed before the operation could complete.
    Timeout,
    /// A non-blocking operation would have had to wait.
    WouldBlock,
    /// The previous owner of a lock died while holding it. Returned by the
    /// convenience methods (`Value::get`, ...) that have no guard to hand
    /// back; the lock became [`Error::NotRecoverable`]. Use the `lock()`
    /// methods to receive the guard and repair the data instead.
    OwnerDied,
    /// A lock whose owner died was released without being marked
    /// consistent; it can never be locked again, in any process.
    NotRecoverable,
    /// The calling thread does not hold the lock it tried to release.
    NotOwner,
    /// The calling thread already holds this non-recursive lock.
    Deadlock,
    /// An index was outside the array.
    OutOfRange {
        /// The index asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// An argument was refused (a size that does not fit, a zero length, ...).
    InvalidArgument(&'static str),
    /// This platform lacks what the operation needs (a futex, a robust
    /// mutex). Never a silent no-op.
    Unsupported(&'static str),
    /// A non-blocking receive found no message.
    Empty,
    /// A non-blocking send found no room.
    Full,
    /// The object was closed by this handle (or, for a queue, by anyone):
    /// no more sends are accepted.
    Closed,
    /// The other end is gone: it closed, or its process died. Everything it
    /// sent before that has already been received.
    Disconnected,
    /// A message does not fit what the object can ever carry in one piece
    /// (a queue slot, a ring's largest reservation).
    MessageTooLarge {
        /// The size asked for, in bytes.
        size: usize,
        /// The largest size the object accepts, in bytes.
        max: usize,
    },
    /// The caller's buffer cannot hold the next message. The message is
    /// still there: receive it again with a buffer of `needed` bytes.
    BufferTooShort {
        /// The length of the message, in bytes.
        needed: usize,
    },
    /// A barrier was broken (by a timeout, an abort or a reset) while this
    /// process waited on it, or before it arrived.
    BrokenBarrier,
    /// An end of a pipe (or another single-owner role) is already claimed
    /// by a live process.
    AlreadyClaimed,
    /// A message could not be encoded or decoded by the `serde` codec.
    #[cfg(feature = "serde")]
    Codec(postcard::Error),
    /// An unexpected operating-system error, with the call that failed.
    Os {
        /// The call that failed.
        call: &'static str,
        /// The error it gave.
        source: io::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An OS error from the last failed call (`errno`).
    pub(crate) fn last_os(call: &'static str) -> Error {
        Error::from_errno(call, io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    /// Maps an errno value to the variant a caller can act on.
    pub(crate) fn from_errno(call: &'static str, errno: i32) -> Error {
        match errno {
            libc::EEXIST => Error::AlreadyExists,
            libc::ENOENT => Error::NotFound,
            libc::EACCES | libc::EPERM => Error::PermissionDenied,
            libc::ENOSPC => Error::OutOfSpace,
            libc::ETIMEDOUT => Error::Timeout,
            _ => Error::Os {
                call,
                source: io::Error::from_raw_os_error(errno),
            },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName { name, reason } => {
                write!(f, "invalid segment name {name:?}: {reason}")
            }
            Error::AlreadyExists => f.write_str("a segment of that name already exists"),
            Error::NotFound => f.write_str("no segment of that name exists"),
            Error::PermissionDenied => f.write_str("permission denied"),
            Error::ForeignOwner { owner, expected } => write!(
                f,
                "segment is owned by uid {owner}, not by this process's uid {expected} (see Options::allow_foreign_owner)"
            ),
            Error::LooseMode { mode, requested } => write!(
                f,
                "segment mode {mode:#o} grants more than the requested {requested:#o} (see Options::allow_loose_mode)"
            ),
            Error::OutOfSpace => f.write_str("no space left for the shared-memory segment"),
            Error::NotReady => f.write_str(
                "segment not initialised within the open timeout (creator busy or dead)",
            ),
            Error::VersionMismatch { found, expected } => {
                write!(f, "segment format version {found}, this build reads {expected}")
            }
            Error::KindMismatch { found, expected } => {
                write!(f, "segment holds object kind {found}, expected kind {expected}")
            }
            Error::LayoutMismatch { found, expected } => write!(
                f,
                "stored type layout (size, align, tag) {found:?} differs from requested {expected:?}"
            ),
            Error::LengthMismatch { found, expected } => {
                write!(f, "stored length {found}, requested {expected}")
            }
            Error::Corrupt(what) => write!(f, "corrupt shared memory: {what}"),
            Error::Timeout => f.write_str("timed out"),
            Error::WouldBlock => f.write_str("operation would block"),
            Error::OwnerDied => f.write_str(
                "previous lock owner died; the lock is now not recoverable (use lock() to repair)",
            ),
            Error::NotRecoverable => {
                f.write_str("lock is not recoverable: its owner died and nobody repaired it")
            }
            Error::NotOwner => f.write_str("the calling thread does not hold this lock"),
            Error::Deadlock => f.write_str("the calling thread already holds this lock"),
            Error::OutOfRange { index, len } => {
                write!(f, "index {index} out of range for length {len}")
            }
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::Unsupported(what) => write!(f, "unsupported on this platform: {what}"),
            Error::Empty => f.write_str("no message available"),
            Error::Full => f.write_str("no room for the message"),
            Error::Closed => f.write_str("closed"),
            Error::Disconnected => f.write_str("the other end is closed or its process died"),
            Error::MessageTooLarge { size, max } => {
                write!(f, "message of {size} bytes exceeds the limit of {max} bytes")
            }
            Error::BufferTooShort { needed } => {
                write!(f, "buffer too short: the message needs {needed} bytes")
            }
            Error::BrokenBarrier => f.write_str("the barrier is broken"),
            Error::AlreadyClaimed => f.write_str("already claimed by a live process"),
            #[cfg(feature = "serde")]
            Error::Codec(e) => write!(f, "message codec: {e}"),
            Error::Os { call, source } => write!(f, "{call} failed: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Os { source, .. } => Some(source),
            #[cfg(feature = "serde")]
            Error::Codec(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::AlreadyExists => io::ErrorKind::AlreadyExists,
            Error::NotFound => io::ErrorKind::NotFound,
            Error::PermissionDenied | Error::ForeignOwner { .. } | Error::LooseMode { .. } => {
                io::ErrorKind::PermissionDenied
            }
            Error::Timeout => io::ErrorKind::TimedOut,
            Error::WouldBlock | Error::Empty | Error::Full => io::ErrorKind::WouldBlock,
            Error::Disconnected => io::ErrorKind::BrokenPipe,
            Error::Closed => io::ErrorKind::NotConnected,
            Error::InvalidName { .. } | Error::InvalidArgument(_) => io::ErrorKind::InvalidInput,
            Error::Unsupported(_) => io::ErrorKind::Unsupported,
            Error::Corrupt(_) => io::ErrorKind::InvalidData,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
