//! Lock results that carry the guard when the previous owner died.
//!
//! Like `std::sync::PoisonError`, an owner's death does not withhold the
//! lock: the caller gets the guard inside [`LockError::OwnerDied`], may
//! repair the data, and then either calls [`OwnerDied::make_consistent`]
//! (the lock works normally again) or drops the guard (the lock becomes
//! [`Error::NotRecoverable`] in every process). Calling "consistent" is
//! possible only on an `OwnerDied`, so "consistent" on a lock that was
//! never inconsistent cannot happen (PITFALLS.md, "Robust locks").

use std::fmt;
use std::ops::{Deref, DerefMut};

use crate::{Error, Result};

/// A guard over a [`RawMutexGuard`](super::RawMutexGuard), so that
/// [`OwnerDied`] can mark its lock consistent. Implemented by every guard of the crate; sealed.
pub trait RecoverableGuard: sealed::Sealed {
    /// Marks the underlying lock consistent (the guard was handed over by
    /// [`OwnerDied`]); [`Error::InvalidArgument`](crate::Error::InvalidArgument)
    /// on a lock with nothing to mend (see
    /// [`RawMutex::make_consistent`](super::RawMutex::make_consistent)).
    #[doc(hidden)]
    fn mark_consistent(&mut self) -> Result<()>;
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// The result of a lock call: the guard, or why there is none (or why the
/// guard comes with a warning).
pub type LockResult<G> = std::result::Result<G, LockError<G>>;

/// Why a lock call did not return a plain guard.
pub enum LockError<G> {
    /// The previous owner died holding the lock. The caller holds it now;
    /// the protected data may be half-updated.
    OwnerDied(OwnerDied<G>),
    /// No lock was taken: [`Error::Timeout`], [`Error::WouldBlock`],
    /// [`Error::NotRecoverable`], [`Error::Deadlock`], [`Error::Corrupt`], ...
    Failed(Error),
}

impl<G> LockError<G> {
    /// Converts the guard inside an `OwnerDied`, keeping its state.
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(d) => LockError::OwnerDied(OwnerDied { guard: f(d.guard) }),
            LockError::Failed(e) => LockError::Failed(e),
        }
    }

    /// The error, for a caller that will not repair: an owner's death becomes
    /// [`Error::OwnerDied`] and the guard is dropped, leaving the lock
    /// [`Error::NotRecoverable`].
    pub fn into_error(self) -> Error {
        match self {
            LockError::OwnerDied(_) => Error::OwnerDied,
            LockError::Failed(e) => e,
        }
    }

    /// Whether this is `Failed(Error::Timeout)`.
    pub fn is_timeout(&self) -> bool {
        matches!(self, LockError::Failed(Error::Timeout))
    }

    /// Whether this is `Failed(Error::WouldBlock)`.
    pub fn is_would_block(&self) -> bool {
        matches!(self, LockError::Failed(Error::WouldBlock))
    }

    /// Whether the previous owner died.
    pub fn is_owner_died(&self) -> bool {
        matches!(self, LockError::OwnerDied(_))
    }
}

impl<G> From<Error> for LockError<G> {
    fn from(e: Error) -> Self {
        LockError::Failed(e)
    }
}

impl<G> From<LockError<G>> for Error {
    fn from(e: LockError<G>) -> Self {
        e.into_error()
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str(
                "the previous owner died holding the lock; the guard is handed over for repair",
            ),
            LockError::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

/// A guard whose lock's previous owner died.
///
/// Repair the data through `Deref`/`DerefMut`, then call
/// [`make_consistent`](OwnerDied::make_consistent). Dropping it (or the
/// guard from [`into_inner`](OwnerDied::into_inner)) without doing so leaves
/// the lock not recoverable, in every process, for ever.
pub struct OwnerDied<G> {
    guard: G,
}

impl<G: RecoverableGuard> OwnerDied<G> {
    pub(crate) fn new(guard: G) -> Self {
        OwnerDied { guard }
    }

    /// Declares the protected data repaired: the lock works normally again
    /// and the returned guard is an ordinary one. (Errors as
    /// [`RawMutex::make_consistent`](super::RawMutex::make_consistent).)
    pub fn make_consistent(mut self) -> Result<G> {
        self.guard.mark_consistent()?;
        Ok(self.guard)
    }

    /// The guard, still inconsistent: when it drops, the lock becomes not
    /// recoverable.
    pub fn into_inner(self) -> G {
        self.guard
    }
}

impl<G> Deref for OwnerDied<G> {
    type Target = G;
    fn deref(&self) -> &G {
        &self.guard
    }
}

impl<G> DerefMut for OwnerDied<G> {
    fn deref_mut(&mut self) -> &mut G {
        &mut self.guard
    }
}
