//! The encoded arguments of one submission (a map, an `apply`, a slice
//! of an `imap`), back to back in one buffer, and the job they belong
//! to: the function, and where the outcomes go.
//!
//! One buffer per submission rather than one `Vec` per item: the
//! per-item allocation, its copy into the task record and its free were
//! a fifth of the parent's instructions per task (callgrind, `map` with
//! chunksize 1).

use std::sync::Arc;

use super::core::Sink;
use super::TaskError;
use crate::process::{Encoder, Message};

/// Arguments, encoded: item `k`'s bytes end at `ends[k]` and start where
/// item `k - 1`'s end. An item that could not be encoded has no bytes
/// and is listed in `failed`.
pub(crate) struct Args {
    enc: Encoder,
    ends: Vec<usize>,
    failed: Vec<(usize, TaskError)>,
}

impl Args {
    /// Room for about `n` items.
    pub(crate) fn with_capacity(n: usize) -> Args {
        Args {
            enc: Encoder::new(),
            ends: Vec::with_capacity(n),
            failed: Vec::new(),
        }
    }

    /// Encodes `a` as the next item. Anonymous handles cannot travel in
    /// a task: such an item fails.
    pub(crate) fn push<A: Message>(&mut self, a: &A) {
        let start = self.enc.bytes().len();
        let why = match a.encode(&mut self.enc) {
            Ok(()) if !self.enc.has_fds() => None,
            Ok(()) => Some(TaskError::EncodeArgument(
                "an anonymous handle cannot travel in a task: give it to the initializer, \
                 or use a named one"
                    .into(),
            )),
            Err(e) => Some(TaskError::EncodeArgument(e.to_string())),
        };
        if let Some(why) = why {
            self.enc.truncate(start);
            self.failed.push((self.ends.len(), why));
        }
        self.ends.push(self.enc.bytes().len());
    }

    /// How many items (failed ones included).
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Item `k`'s bytes.
    #[inline]
    pub(crate) fn get(&self, k: usize) -> &[u8] {
        let start = if k == 0 { 0 } else { self.ends[k - 1] };
        &self.enc.bytes()[start..self.ends[k]]
    }

    /// The items that could not be encoded, in order, and why.
    pub(crate) fn failed(&self) -> &[(usize, TaskError)] {
        &self.failed
    }
}

/// One submission: the function's token, its arguments, and the sink
/// its outcomes go to (item `k` as index `first + k`). Shared by its
/// tasks: one reference count per task, not three.
pub(crate) struct Job {
    pub token: Arc<[u8]>,
    pub args: Args,
    pub sink: Arc<dyn Sink>,
    pub first: usize,
}

impl Job {
    /// Delivers the failures of items that could not be encoded.
    pub(crate) fn deliver_failed(&self) {
        for (k, why) in self.args.failed() {
            self.sink.deliver(self.first + k, Err(why.clone()));
        }
    }
}

/// Which items of its job a task carries: a run of positions (every
/// task of a map without encoding failures), or a list.
pub(crate) enum Picks {
    Run(usize, usize),
    List(Vec<usize>),
}

impl Picks {
    /// `positions` (ascending) as a run when they are one.
    pub(crate) fn of(positions: &[usize]) -> Picks {
        match (positions.first(), positions.last()) {
            (Some(&lo), Some(&hi)) if hi - lo + 1 == positions.len() => Picks::Run(lo, hi + 1),
            _ => Picks::List(positions.to_vec()),
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        match self {
            Picks::Run(lo, hi) => hi - lo,
            Picks::List(v) => v.len(),
        }
    }

    /// The `k`-th position.
    #[inline]
    pub(crate) fn get(&self, k: usize) -> usize {
        match self {
            Picks::Run(lo, _) => lo + k,
            Picks::List(v) => v[k],
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).map(|k| self.get(k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::decode;

    #[test]
    fn items_back_to_back_and_failures_without_bytes() {
        let mut a = Args::with_capacity(3);
        a.push(&7u64);
        a.push(&String::from("abc"));
        // An anonymous segment passes a descriptor: refused, no bytes.
        let seg = crate::Segment::anonymous(64).unwrap();
        a.push(&seg);
        a.push(&9u32);
        assert_eq!(a.len(), 4);
        assert_eq!(decode::<u64>(a.get(0), &mut []).unwrap(), 7);
        assert_eq!(decode::<String>(a.get(1), &mut []).unwrap(), "abc");
        assert!(a.get(2).is_empty());
        assert_eq!(decode::<u32>(a.get(3), &mut []).unwrap(), 9);
        assert_eq!(a.failed().len(), 1);
        assert_eq!(a.failed()[0].0, 2);
    }

    #[test]
    fn picks_are_runs_when_they_can_be() {
        assert!(matches!(Picks::of(&[3, 4, 5]), Picks::Run(3, 6)));
        let p = Picks::of(&[1, 3]);
        assert!(matches!(p, Picks::List(_)));
        assert_eq!(p.iter().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(Picks::Run(2, 4).iter().collect::<Vec<_>>(), vec![2, 3]);
    }
}
