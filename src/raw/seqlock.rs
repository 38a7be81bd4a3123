//! [`SeqCount`]: a sequence word that lets readers copy data a single
//! writer (serialised by a lock) changes in place, without taking the lock.
//!
//! ## The word (8 bytes, in place)
//!
//! | value | meaning                                                         |
//! |-------|-----------------------------------------------------------------|
//! | even  | no write in progress; the data is a committed state             |
//! | odd   | a writer is changing the data (or died doing so: see below)     |
//!
//! Only the holder of the lock that serialises writers changes the word:
//! [`write_begin`](SeqCount::write_begin) makes it odd, [`write_end`](SeqCount::write_end)
//! makes it even again (one higher than before the write). A reader takes
//! [`read_begin`](SeqCount::read_begin) (an even value), copies what it
//! needs, and keeps the copy only if [`read_validate`](SeqCount::read_validate)
//! finds the same value: no write overlapped the copy.
//!
//! A writer that dies mid-write leaves the word odd: readers then stop
//! retrying and take the lock, whose dead-owner check hands it to them
//! (the owner-died repair ends with [`force_even`](SeqCount::force_even)).
//! So a reader never waits on a dead writer longer than that check.
//!
//! What a reader copies may be torn: it must bounds-check everything it
//! reads before using it, and only act on it after validation.

use super::sync::{fence, AtomicU64, Ordering::*};

/// A sequence word for optimistic readers (see the module docs).
#[repr(C)]
#[derive(Debug)]
pub struct SeqCount {
    seq: AtomicU64,
}

#[cfg(not(loom))]
static_assertions::const_assert_eq!(std::mem::size_of::<SeqCount>(), 8);

impl Default for SeqCount {
    fn default() -> Self {
        Self::new()
    }
}

impl SeqCount {
    /// A word at zero (even: nothing being written).
    pub fn new() -> Self {
        SeqCount {
            seq: AtomicU64::new(0),
        }
    }

    /// Starts a read: the even value to validate against later, or `None`
    /// while a write is in progress (retry, or take the writers' lock).
    #[inline]
    pub fn read_begin(&self) -> Option<u64> {
        // SYNC POINT (reader, start): pairs with the Release in `write_end`:
        // the data written before the word became this even value is seen.
        let s = self.seq.load(Acquire);
        (s & 1 == 0).then_some(s)
    }

    /// Whether no write overlapped the reads since `read_begin` gave `s`.
    #[inline]
    pub fn read_validate(&self, s: u64) -> bool {
        // SYNC POINT (reader, end): the fence orders the data loads before
        // the re-load of the word; pairs with the fence in `write_begin`
        // (a data store seen by a read implies the odd value is seen here).
        fence(Acquire);
        self.seq.load(Relaxed) == s
    }

    /// Starts a write (the caller holds the writers' lock). Idempotent: a
    /// word already odd (a write begun earlier in the same critical
    /// section) stays as it is.
    #[inline]
    pub fn write_begin(&self) {
        let s = self.seq.load(Relaxed);
        if s & 1 == 0 {
            self.seq.store(s.wrapping_add(1), Relaxed);
        }
        // SYNC POINT (writer, start): the odd value is ordered before every
        // data store that follows; pairs with the fence in `read_validate`.
        fence(Release);
    }

    /// Ends a write: the word becomes even, publishing the data written.
    #[inline]
    pub fn write_end(&self) {
        let s = self.seq.load(Relaxed);
        // SYNC POINT (writer, end): pairs with the Acquire in `read_begin`.
        self.seq.store((s | 1).wrapping_add(1), Release);
    }

    /// Makes the word even whatever it holds (the repair after a writer
    /// died mid-write, once the data is back to a committed state), and
    /// moves it on so that a reader that began before cannot validate.
    pub fn force_even(&self) {
        self.write_end();
    }

    /// Whether a write is in progress (or was left by a dead writer).
    pub fn is_writing(&self) -> bool {
        self.seq.load(Relaxed) & 1 == 1
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// A writer changes two data words together; a reader that validates
    /// always sees them equal (never half a write).
    #[test]
    fn loom_seqcount_reader_sees_whole_writes() {
        loom::model(|| {
            let s = Arc::new((SeqCount::new(), AtomicU64::new(0), AtomicU64::new(0)));
            let w = s.clone();
            let t = loom::thread::spawn(move || {
                for v in 1..=2 {
                    w.0.write_begin();
                    w.1.store(v, Relaxed);
                    w.2.store(v, Relaxed);
                    w.0.write_end();
                }
            });
            for _ in 0..2 {
                if let Some(b) = s.0.read_begin() {
                    let a = s.1.load(Relaxed);
                    let c = s.2.load(Relaxed);
                    if s.0.read_validate(b) {
                        assert_eq!(a, c, "torn read validated");
                        assert_eq!(b / 2, a, "value and sequence disagree");
                    }
                }
            }
            t.join().unwrap();
            assert_eq!(s.0.read_begin(), Some(4));
        });
    }
}
