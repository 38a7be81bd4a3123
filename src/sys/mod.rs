//! Platform layer: every system call the crate makes, and nothing else.
//!
//! Nothing outside `sys` names `libc` for a call (the error mapping in
//! `error.rs` reads errno constants only). Each wrapper is thin, documents
//! the one call it makes, and carries the `// SAFETY:` argument for it.
//! Linux is first-class; other Unixes compile, and what they lack returns
//! [`Error::Unsupported`](crate::Error::Unsupported).

pub mod child;
pub(crate) mod clock;
pub(crate) mod fork;
pub mod futex;
pub(crate) mod membarrier;
pub(crate) mod proc;
pub(crate) mod pthread;
pub(crate) mod shm;
