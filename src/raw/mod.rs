//! In-place objects: `#[repr(C)]` structs of atomics and plain data, valid at
//! any address in any process that maps them, holding no pointers.
//!
//! This layer is public so that embedders (process pools, custom segment
//! layouts) can place these objects in their own shared mappings. Each type
//! documents its size, alignment and initialisation contract; those are
//! pinned with `static_assertions` because another build of the crate in
//! another process reads the same bytes.

pub(crate) mod backoff;
mod barrier;
mod condvar;
mod event;
#[allow(dead_code)] // used by the queue
mod eventcount;
mod held;
mod lock_error;
mod lockword;
pub mod mpmc;
mod mutex;
mod owner;
pub(crate) mod park;
mod semaphore;
mod seqlock;
pub mod spsc;
pub(crate) mod sync;

pub use barrier::{RawBarrier, BARRIER_PARTIES_MAX};
pub use condvar::{RawCondvar, CONDVAR_SLOTS};
pub use event::RawEvent;
#[allow(unused_imports)]
pub(crate) use eventcount::{EventCount, Key};
pub(crate) use lock_error::sealed;
pub use lock_error::{LockError, LockResult, OwnerDied, RecoverableGuard};
pub use mpmc::{HeapMpmc, MpmcRef, MpmcRing};
pub use mutex::{Acquire, MutexKind, RawMutex, RawMutexGuard};
pub use semaphore::{RawSemaphore, SEMAPHORE_VALUE_MAX};
pub use seqlock::SeqCount;
pub use spsc::SpscRing;
