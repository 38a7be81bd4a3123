//! Peer death and takeover: who holds each end (claims), the consumer's
//! in-message flag for a consumer that takes over mid-message, and the
//! checks and the forward walk that make a fresh producer or consumer
//! from positions a dead predecessor left.

use super::super::sync::{AtomicU64, Ordering::*};
use super::layout::next_claim;
use super::*;

impl<'a> Ring<'a> {
    /// The producer's side.
    ///
    /// # Safety
    ///
    /// At most one `Producer` of this ring is used at a time, in all
    /// processes together.
    pub unsafe fn producer(self) -> Result<Producer<'a>> {
        // Acquire: the walk below must see every header published up to
        // the hint (a takeover may come after the previous producer died).
        let hint = self.ctl.prod.tail.load(Acquire);
        let mut tail = hint;
        let head = self.ctl.cons.head.load(Acquire) & !IN_MESSAGE;
        // `tail` is a hint stored after each header: a producer that died
        // between the two left it one record behind, and the consumer may
        // have gone past it already.
        if (head | tail) % 8 != 0 || ahead(head, tail).unsigned_abs() > self.cap {
            return Err(Error::Corrupt("ring positions"));
        }
        // Walk over records published past the hint (bounded: each step
        // advances, and the walk stops at a full ring). The frontier's word
        // is 0 or the previous lap's header: it stops there.
        let mask = self.cap - 1;
        for _ in 0..=self.cap / 8 {
            if ahead(head, tail) >= self.cap as i64 {
                break;
            }
            let off = tail & mask;
            let word = self.word(off).load(Acquire);
            if word >> TAG_SHIFT != lap_tag(tail, self.cap) {
                break;
            }
            let size = record_extent(word, off, self.cap)?;
            if ahead(head, tail) + size as i64 > self.cap as i64 {
                return Err(Error::Corrupt("record beyond the consumer's head"));
            }
            tail = tail.wrapping_add(size);
        }
        if ahead(head, tail) < 0 {
            return Err(Error::Corrupt("ring positions"));
        }
        if tail != hint {
            self.ctl.prod.tail.store(tail, Release);
        }
        Ok(Producer {
            ring: self,
            tail,
            head,
            batching: false,
            deferred: None,
            lap: Lap::empty(tail, self.cap),
        })
    }

    /// The consumer's side.
    ///
    /// # Safety
    ///
    /// At most one `Consumer` of this ring is used at a time, in all
    /// processes together.
    pub unsafe fn consumer(self) -> Result<Consumer<'a>> {
        // Acquire: a consumer taking an end over must see the producer's
        // zero-ahead at `head`, which the previous consumer's release of
        // the record before it happened after.
        let word = self.ctl.cons.head.load(Acquire);
        let (head, in_message) = (word & !IN_MESSAGE, word & IN_MESSAGE != 0);
        let tail = self.ctl.prod.tail.load(Acquire);
        // The `tail` hint may lag one record behind `head` (see `producer`).
        if (head | tail) % 8 != 0 || ahead(head, tail).unsigned_abs() > self.cap {
            return Err(Error::Corrupt("ring positions"));
        }
        Ok(Consumer {
            ring: self,
            head,
            tail: if ahead(head, tail) > 0 { tail } else { head },
            in_message,
            batching: false,
            lap: Lap::empty(head, self.cap),
        })
    }

    fn claim_words(&self, role: Role) -> (&AtomicU64, &AtomicU64) {
        let e = &self.ctl.ends;
        match role {
            Role::Writer => (&e.writer_pid, &e.writer_start),
            Role::Reader => (&e.reader_pid, &e.reader_start),
        }
    }

    /// Records (`pid`, `start`) as `role`'s claimant. With `exclusive`, only
    /// an unclaimed end is taken ([`Error::AlreadyClaimed`] otherwise);
    /// without, the record is overwritten (an end handed down by `fork`).
    ///
    /// The start time is cleared before the pid changes and written after
    /// it, so a reader never pairs the new pid with the old start time
    /// (see [`claimant`](Self::claimant)).
    pub fn claim(&self, role: Role, pid: u32, start: u64, exclusive: bool) -> Result<()> {
        let (p, s) = self.claim_words(role);
        if exclusive {
            let cur = p.load(Acquire);
            if cur as u32 != 0
                || p.compare_exchange(cur, next_claim(cur, pid), AcqRel, Acquire)
                    .is_err()
            {
                return Err(Error::AlreadyClaimed);
            }
        } else {
            s.store(0, Release);
            let cur = p.load(Acquire);
            p.store(next_claim(cur, pid), Release);
        }
        s.store(start, Release);
        Ok(())
    }

    /// Clears `role`'s claim (undoing a half-done claim of several ends).
    pub fn unclaim(&self, role: Role) {
        let (p, s) = self.claim_words(role);
        s.store(0, Relaxed);
        let cur = p.load(Acquire);
        p.store(next_claim(cur, 0), Release);
    }

    /// `role`'s claimant: `(pid, start)`, pid 0 if unclaimed. The start
    /// reads 0 (unknown: check the pid only) while a claim is being made.
    ///
    /// The pair is consistent: claim word, start, claim word again are
    /// loaded (the word counts claims, so a record that changed and changed
    /// back is seen to differ), and the loads are retried while the two differ (a re-claim seen
    /// half-way, which [`claim`](Self::claim) orders as start 0, pid,
    /// start). After a few changing rounds the start is reported as 0.
    pub fn claimant(&self, role: Role) -> (u32, u64) {
        let (p, s) = self.claim_words(role);
        let mut word = p.load(Acquire);
        for _ in 0..4 {
            let start = s.load(Acquire);
            let again = p.load(Acquire);
            // The claim count in the high half makes "changed and changed
            // back" (pid A, then B, then A again) compare unequal.
            if again == word {
                return (word as u32, start);
            }
            word = again;
        }
        (word as u32, 0)
    }

    /// `role`'s claimant pid alone (0 if unclaimed): one load.
    #[inline]
    pub fn claimant_pid(&self, role: Role) -> u32 {
        // The low half of the claim word (the high half counts claims).
        self.claim_words(role).0.load(Acquire) as u32
    }

    /// Test hook: moves both positions of a fresh ring to `pos` (rounded
    /// down to a multiple of 8), so tests can stream across the 2^64 wrap.
    ///
    /// # Safety
    ///
    /// The ring is fresh (nothing was ever published in it), and no
    /// `Producer` or `Consumer` of it is alive or made during the call, in
    /// any process: theirs would be positions of another ring.
    #[doc(hidden)]
    pub unsafe fn __start_positions_at(&self, pos: u64) {
        let pos = pos & !7;
        self.word(pos & (self.cap - 1)).store(0, SeqCst);
        self.ctl.cons.head.store(pos, SeqCst);
        self.ctl.prod.tail.store(pos, SeqCst);
    }

    /// Whether the consumer recorded, with its last release, that its
    /// head is inside a fragmented message (see
    /// [`Consumer::set_in_message`]): a consumer taking the end over must
    /// then drop the rest of that message.
    pub fn in_message(&self) -> bool {
        self.ctl.cons.head.load(Acquire) & IN_MESSAGE != 0
    }
}
