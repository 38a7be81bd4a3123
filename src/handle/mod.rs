//! Handles: what most users touch. Each owns an `Arc<Segment>` and knows
//! where its in-place object sits in it.

mod array;
mod atomic;
mod guarded;
mod lock;
#[cfg(not(loom))]
mod pipe;
mod value;

pub use array::{Array, ArrayGuard};
pub use atomic::{AtomicInt, AtomicValue};
pub use lock::{Lock, LockGuard, RLock, SharedLock};
#[cfg(not(loom))]
pub use pipe::{Borrowed, Connection, End, Pipe, Reservation, WaitPolicy};
pub use value::{Value, ValueGuard};
