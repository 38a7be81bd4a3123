//! The task-ownership table: one entry per worker slot, in a shared
//! segment, saying what that worker is doing. The worker writes its own
//! entry; the parent reads it when the worker dies, and knows exactly what
//! was lost.
//!
//! Each entry is 64 bytes (a cache line, so workers do not share one):
//!
//! | offset | field   | written by the worker                               |
//! |--------|---------|------------------------------------------------------|
//! | 0      | `state` | `tag << 56 | seq` ([`State`]), Release              |
//! | 8      | `item`  | index in the chunk of the item now running           |
//! | 12     | `pid`   | the worker's pid                                     |
//! | 16     | `done`  | tasks finished                                       |
//!
//! The protocol that makes "which task was lost" exact: a worker writes
//! `RUNNING(seq)` after it has the task and *before* it runs any of it,
//! and `IDLE` only after the task's results are committed to the result
//! queue. So when a worker is found dead, after the parent has drained
//! the result queue:
//!
//! * `RUNNING(seq)` with no result for `seq`: the worker died running
//!   item `item` of that task: that item failed; the items of the chunk
//!   after it never ran;
//! * anything else: no task was started and lost; tasks sent to it and
//!   not finished never started, and go to another worker.
//!
//! A task taken from the queue but not yet marked `RUNNING` has not run
//! (the function is called only after the mark), so it is simply sent
//! again: nothing can be lost between the take and the mark. Entries are
//! read with plain atomic loads; any value is accepted (a garbage `seq`
//! names no task the parent knows, and is ignored).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::process::{put_segment, take_segment, Decoder, Encoder, Message};
use crate::{Error, Result, Segment};

/// What a worker's entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Never written.
    Empty,
    /// Started; running the initializer.
    Init,
    /// Waiting for a task.
    Idle,
    /// Running task `seq`.
    Running(u64),
    /// Exiting after its last task (`maxtasksperchild`).
    Retired,
    /// Something that is none of these (garbage).
    Unknown,
}

const TAG_SHIFT: u32 = 56;
const SEQ_MASK: u64 = (1 << TAG_SHIFT) - 1;

impl State {
    fn word(self) -> u64 {
        match self {
            State::Empty => 0,
            State::Init => 1 << TAG_SHIFT,
            State::Idle => 2 << TAG_SHIFT,
            State::Running(seq) => (3 << TAG_SHIFT) | (seq & SEQ_MASK),
            State::Retired => 4 << TAG_SHIFT,
            State::Unknown => 0xff << TAG_SHIFT,
        }
    }

    fn from_word(w: u64) -> State {
        match w >> TAG_SHIFT {
            0 => State::Empty,
            1 => State::Init,
            2 => State::Idle,
            3 => State::Running(w & SEQ_MASK),
            4 => State::Retired,
            _ => State::Unknown,
        }
    }
}

#[repr(C, align(64))]
struct Entry {
    state: AtomicU64,
    item: AtomicU32,
    pid: AtomicU32,
    done: AtomicU64,
}

const ENTRY: usize = std::mem::size_of::<Entry>();
static_assertions::const_assert_eq!(ENTRY, 64);

/// The table, mapped. It travels to workers as a [`Message`] (its
/// segment is anonymous: by descriptor).
#[derive(Clone)]
pub(crate) struct Table {
    seg: Arc<Segment>,
    slots: usize,
}

impl Message for Table {
    fn encode(&self, out: &mut Encoder) -> Result<()> {
        put_segment(out, &self.seg)
    }
    fn decode(input: &mut Decoder<'_>) -> Result<Self> {
        take_segment(input, |name| Table::checked(Segment::open(name)?))
    }
}

impl Table {
    /// Bytes a table of `slots` entries needs.
    pub(crate) fn bytes_for(slots: usize) -> usize {
        slots.max(1) * ENTRY
    }

    /// A table for `slots` workers, in an anonymous segment.
    pub(crate) fn anonymous(slots: usize) -> Result<Table> {
        Table::checked(Segment::anonymous(Table::bytes_for(slots))?)
    }

    fn checked(seg: Segment) -> Result<Table> {
        if seg.data_ptr() as usize % ENTRY != 0 {
            return Err(Error::Corrupt("pool table is not 64-aligned"));
        }
        let slots = seg.data_len() / ENTRY;
        Ok(Table {
            seg: Arc::new(seg),
            slots,
        })
    }

    fn entry(&self, slot: usize) -> Option<&Entry> {
        if slot >= self.slots {
            return None;
        }
        // SAFETY: `slot < slots` so the entry lies within `data_len`; the
        // data start is 64-aligned (checked), as are entries; `Entry` is
        // atomics only, valid for any bits, and shared access through
        // atomics is what they are for; the mapping lives as long as
        // `self`.
        Some(unsafe { &*self.seg.data_ptr().add(slot * ENTRY).cast::<Entry>() })
    }

    /// Sets `slot`'s state (the worker's side).
    pub(crate) fn set(&self, slot: usize, s: State) {
        if let Some(e) = self.entry(slot) {
            // SYNC POINT: pairs with the Acquire load in `state`.
            e.state.store(s.word(), Ordering::Release);
        }
    }

    /// Marks `slot` running item `item` of its task.
    pub(crate) fn set_item(&self, slot: usize, item: u32) {
        if let Some(e) = self.entry(slot) {
            e.item.store(item, Ordering::Release);
        }
    }

    /// Records the worker's pid and resets its entry (the worker, at start).
    pub(crate) fn start(&self, slot: usize, pid: u32) {
        if let Some(e) = self.entry(slot) {
            e.pid.store(pid, Ordering::Relaxed);
            e.item.store(0, Ordering::Relaxed);
            e.done.store(0, Ordering::Relaxed);
            e.state.store(State::Init.word(), Ordering::Release);
        }
    }

    /// Counts a finished task.
    pub(crate) fn count_done(&self, slot: usize) {
        if let Some(e) = self.entry(slot) {
            e.done.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Clears `slot` (the parent, before starting its next worker).
    pub(crate) fn clear(&self, slot: usize) {
        if let Some(e) = self.entry(slot) {
            e.state.store(0, Ordering::Release);
            e.item.store(0, Ordering::Relaxed);
            e.pid.store(0, Ordering::Relaxed);
        }
    }

    /// What `slot` says: its state and the running item.
    pub(crate) fn state(&self, slot: usize) -> (State, u32) {
        match self.entry(slot) {
            // SYNC POINT: pairs with the Release store in `set`.
            Some(e) => (
                State::from_word(e.state.load(Ordering::Acquire)),
                e.item.load(Ordering::Acquire),
            ),
            None => (State::Unknown, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in [
            State::Empty,
            State::Init,
            State::Idle,
            State::Running(0),
            State::Running(SEQ_MASK),
            State::Retired,
            State::Unknown,
        ] {
            assert_eq!(State::from_word(s.word()), s);
        }
        assert_eq!(State::from_word(u64::MAX), State::Unknown);
    }

    #[test]
    fn entries_are_separate() {
        let t = Table::anonymous(3).unwrap();
        let (b, fds) = crate::process::encode(&t).unwrap();
        let mut fds: Vec<_> = fds.into_iter().map(Some).collect();
        let u: Table = crate::process::decode(&b, &mut fds).unwrap();
        t.start(1, 42);
        t.set(1, State::Running(7));
        t.set_item(1, 3);
        assert_eq!(u.state(1), (State::Running(7), 3));
        assert_eq!(u.state(0), (State::Empty, 0));
        assert_eq!(u.state(9), (State::Unknown, 0));
        u.clear(1);
        assert_eq!(t.state(1).0, State::Empty);
    }
}
