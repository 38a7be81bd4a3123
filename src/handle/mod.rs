//! Handles: what most users touch. Each owns an `Arc<Segment>` and knows
//! where its in-place object sits in it.

mod array;
mod atomic;
mod barrier;
mod condition;
mod event;
mod guarded;
mod lock;
mod object;
#[cfg(not(loom))]
pub(crate) mod pipe;
pub(crate) mod queue;
mod raw_array;
mod semaphore;
mod value;

pub use array::{Array, ArrayGuard};
pub use atomic::{AtomicInt, AtomicValue};
pub use barrier::Barrier;
pub use condition::Condition;
pub use event::Event;
pub use lock::{Lock, LockGuard, RLock, SharedLock};
#[cfg(not(loom))]
pub use pipe::{Connection, End, Pipe, WaitPolicy};
pub use queue::{JoinableQueue, Queue};
pub use raw_array::{RawArray, RawValue};
pub use semaphore::{BoundedSemaphore, Semaphore};
pub use value::{Value, ValueGuard};
