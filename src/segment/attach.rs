//! One row of a header's attach table: how a process claims it, releases
//! it, and how a reader gets a consistent copy while others write.
//!
//! `word` packs `generation << 33 | busy << 32 | pid`; pid 0 is a free
//! row. A release keeps the generation (it stores `generation << 33`), so
//! that no later claim of the row rebuilds a word that an earlier claim
//! still holds: a stale release (by a process wrongly taken for dead and
//! since taken over) then frees nothing but its own claim.
//!
//! `start` is that process's start time (0: unknown). A claimant CASes
//! `word` from what it saw (a free word, or the word of a process found
//! dead) to its pid with `busy` set and the generation bumped, stores
//! `start`, then clears `busy`. A reader loads `word`, `start`, `word` again: if the two
//! words are equal and not busy, the pair is consistent (a seqlock; the
//! generation makes a reuse by the same pid visible). A busy row, or one
//! that keeps changing, is judged by its pid alone. Nothing here trusts
//! the bytes: any value is a pid to ask the kernel about, never an index.
//!
//! SYNC POINT (SeqCst everywhere): a claim is also half of the Dekker pair
//! with a cleaner's `doomed` mark (`Header::attach`, `Header::doom`).

use crate::raw::sync::{AtomicU64, Ordering::*};

/// Bit 32 of `word`: the claimant has not yet stored its start time.
pub(crate) const BUSY: u64 = 1 << 32;
const GEN_SHIFT: u32 = 33;
/// Reads of a changing row before a reader gives up on a consistent copy
/// (fewer under loom, to keep the model small; one retry already covers
/// every interleaving of a single writer).
/// Whether `word` names no process (pid 0; any generation).
pub(crate) fn is_free(word: u64) -> bool {
    word as u32 == 0
}

const SNAPSHOT_TRIES: usize = if cfg!(loom) { 2 } else { 8 };

/// A row of the attach table, in shared memory.
#[repr(C)]
pub(crate) struct AttachEntry {
    word: AtomicU64,
    start: AtomicU64,
}

impl AttachEntry {
    /// A free row (tests and loom models build rows on the heap).
    #[cfg(test)]
    fn new() -> AttachEntry {
        AttachEntry {
            word: AtomicU64::new(0),
            start: AtomicU64::new(0),
        }
    }

    /// The word as it is now (see [`is_free`]).
    pub(crate) fn word(&self) -> u64 {
        self.word.load(SeqCst)
    }

    /// A consistent `(word, start)` pair, or `None` if a writer kept
    /// changing the row.
    pub(crate) fn snapshot(&self) -> Option<(u64, u64)> {
        for _ in 0..SNAPSHOT_TRIES {
            let w1 = self.word.load(SeqCst);
            let start = self.start.load(SeqCst);
            if w1 == self.word.load(SeqCst) {
                return Some((w1, start));
            }
        }
        None
    }

    /// Claims the row if its word is still `old`; returns the word that now
    /// names the claim (to [`AttachEntry::release`] it).
    pub(crate) fn try_claim(&self, old: u64, pid: u32, start: u64) -> Option<u64> {
        let generation = ((old >> GEN_SHIFT) + 1) & (u64::MAX >> GEN_SHIFT);
        let busy = generation << GEN_SHIFT | BUSY | u64::from(pid);
        self.word
            .compare_exchange(old, busy, SeqCst, Relaxed)
            .ok()?;
        self.start.store(start, SeqCst);
        let word = busy & !BUSY;
        self.word.store(word, SeqCst);
        Some(word)
    }

    /// Frees the row if it still holds `word` (another process may have
    /// taken it over, having found this one dead), keeping its generation.
    pub(crate) fn release(&self, word: u64) {
        let free = word >> GEN_SHIFT << GEN_SHIFT;
        let _ = self.word.compare_exchange(word, free, SeqCst, Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A process wrongly taken for dead loses its row to another, which
    /// releases it; the first process claims it again with a second handle,
    /// then drops the first: that stale release must not free the second
    /// claim (it did when a release reset the generation).
    #[test]
    fn a_stale_release_never_frees_a_later_claim_by_the_same_process() {
        let row = AttachEntry::new();
        let first = row.try_claim(0, 7, 70).unwrap();
        let taker = row.try_claim(first, 8, 80).unwrap();
        row.release(taker);
        assert!(is_free(row.word()));
        let second = row.try_claim(row.word(), 7, 70).unwrap();
        row.release(first);
        assert_eq!(row.word(), second, "a stale release freed a live claim");
        row.release(second);
        assert!(is_free(row.word()));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(f);
    }

    /// A consistent snapshot is one process's (pid, start), never a mix of
    /// two claimants', and a busy word is never reported as consistent.
    fn check(snapshot: Option<(u64, u64)>, allowed: &[(u32, u64)]) {
        if let Some((w, start)) = snapshot {
            if !is_free(w) && w & BUSY == 0 {
                assert!(
                    allowed.contains(&(w as u32, start)),
                    "torn row: pid {} with start {start}",
                    w as u32
                );
            }
        }
    }

    /// Two processes race for one free row; one wins, releases it, and the
    /// other may then take it, while a reader snapshots.
    #[test]
    fn loom_attach_row_claims_are_exclusive_and_reads_consistent() {
        model(|| {
            let row = Arc::new(AttachEntry::new());
            let claimers: Vec<_> = [(1u32, 11u64), (2, 22)]
                .into_iter()
                .map(|(pid, start)| {
                    let row = row.clone();
                    thread::spawn(move || {
                        let old = row.word();
                        if !is_free(old) {
                            return false;
                        }
                        match row.try_claim(old, pid, start) {
                            Some(w) => {
                                assert_eq!(w as u32, pid);
                                row.release(w);
                                true
                            }
                            None => false,
                        }
                    })
                })
                .collect();
            let reader = {
                let row = row.clone();
                thread::spawn(move || check(row.snapshot(), &[(1, 11), (2, 22)]))
            };
            let won: Vec<bool> = claimers.into_iter().map(|t| t.join().unwrap()).collect();
            reader.join().unwrap();
            assert!(won.iter().any(|&w| w), "nobody claimed a free row");
            assert!(is_free(row.word()), "a released row stays claimed");
        });
    }

    /// A dead process's row is taken over while its late release (the
    /// dead process's handle cannot run, but a stale word can be replayed)
    /// and a reader race: the release does not free the new claim, and no
    /// snapshot mixes the two processes.
    #[test]
    fn loom_attach_row_takeover_is_not_undone_by_a_stale_release() {
        model(|| {
            let row = Arc::new(AttachEntry::new());
            let dead = row.try_claim(0, 3, 33).unwrap();
            let taker = {
                let row = row.clone();
                thread::spawn(move || row.try_claim(dead, 1, 11))
            };
            let stale = {
                let row = row.clone();
                thread::spawn(move || row.release(dead))
            };
            let reader = {
                let row = row.clone();
                thread::spawn(move || check(row.snapshot(), &[(3, 33), (1, 11)]))
            };
            let took = taker.join().unwrap();
            stale.join().unwrap();
            reader.join().unwrap();
            if let Some(w) = took {
                assert_eq!(row.word(), w, "a stale release freed a live claim");
            }
        });
    }
}
