//! Handles: what most users touch. Each owns an `Arc<Segment>` and knows
//! where its in-place object sits in it.

mod array;
mod atomic;
mod guarded;
mod lock;
mod queue;
mod value;

pub use array::{Array, ArrayGuard};
pub use atomic::{AtomicInt, AtomicValue};
pub use lock::{Lock, LockGuard, RLock, SharedLock};
pub use queue::{Borrowed, JoinableQueue, Queue, Reservation};
pub use value::{Value, ValueGuard};
