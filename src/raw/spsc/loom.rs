//! Loom models of the ring protocol (`RUSTFLAGS="--cfg loom"`).

use super::*;
use ::loom::sync::Arc;

fn msg(i: usize) -> Vec<u8> {
    // 100, 120 and 40 bytes in a 256-byte ring: the third needs padding
    // at the end and space the consumer frees.
    let len = [100, 120, 40][i];
    let mut m: Vec<u8> = (0..len).map(|j| (j as u8) ^ (0x5A + i as u8)).collect();
    if i == 0 {
        // Bytes 40..48 of the first payload (ring offset 48) read as
        // the header due at position 304, just past the third record:
        // only the zero the producer writes ahead of that record's
        // header keeps the consumer from taking them for a fourth.
        m[40..48].copy_from_slice(&header_word(304, 256, 8, 0).to_le_bytes());
    }
    m
}

/// One try at pushing a record: whether it went.
type Push = fn(&mut Producer<'_>, &[u8]) -> bool;
/// One try at taking a record into the buffer: its length.
type Pop = fn(&mut Consumer<'_>, &mut [u8]) -> Option<usize>;

/// The general paths.
fn push_general(p: &mut Producer<'_>, m: &[u8]) -> bool {
    p.try_push(m, 0).unwrap()
}

fn pop_general(c: &mut Consumer<'_>, buf: &mut [u8]) -> Option<usize> {
    c.try_pop(buf).unwrap().map(|(n, _)| n)
}

/// The one-record fast paths (`push_plain_as`, its inlined part and its
/// out-of-line refresh of `head`; `pop_plain_as`, padding and anything
/// else through its general part); what the push refuses (a record that
/// needs padding) goes through `try_push`, as the layer above's general
/// path does.
fn push_plain(p: &mut Producer<'_>, m: &[u8]) -> bool {
    p.push_plain_as(m, false) || p.try_push(m, 0).unwrap()
}

fn pop_plain(c: &mut Consumer<'_>, buf: &mut [u8]) -> Option<usize> {
    c.pop_plain_as(buf, false)
}

fn push_blocking_with(push: Push, p: &mut Producer<'_>, m: &[u8]) {
    loop {
        if push(p, m) {
            return;
        }
        let ec = p.ring().space_ready();
        let k = ec.prepare();
        if push(p, m) {
            ec.cancel(k);
            return;
        }
        ec.wait(k, None).unwrap();
    }
}

fn pop_blocking_with(pop: Pop, c: &mut Consumer<'_>, buf: &mut [u8]) -> usize {
    loop {
        if let Some(n) = pop(c, buf) {
            return n;
        }
        let ec = c.ring().data_ready();
        let k = ec.prepare();
        if let Some(n) = pop(c, buf) {
            ec.cancel(k);
            return n;
        }
        ec.wait(k, None).unwrap();
    }
}

fn push_blocking(p: &mut Producer<'_>, m: &[u8]) {
    push_blocking_with(push_general, p, m);
}

fn pop_blocking(c: &mut Consumer<'_>, buf: &mut [u8]) -> usize {
    pop_blocking_with(pop_general, c, buf)
}

/// Publish and consume: every record arrives whole, in order, with the
/// bytes the producer wrote (payload words are loom atomics written
/// Relaxed, so a missing Release/Acquire on `tail` or `head` shows as
/// stale bytes); padding is skipped; neither side sleeps through the
/// other's progress (a lost wake-up is a loom deadlock).
#[test]
fn loom_spsc_publish_consume() {
    publish_consume(push_general, pop_general);
}

/// `loom_spsc_publish_consume` through the one-record fast paths: the
/// inlined push zeroes the word past the record before it copies the
/// payload (both Relaxed, before the header's Release store), and the
/// inlined pop checks tag and flags with one comparison; the first
/// payload's bytes that read as a later header are never taken for one.
#[test]
fn loom_spsc_plain_fast_paths() {
    publish_consume(push_plain, pop_plain);
}

fn publish_consume(push: Push, pop: Pop) {
    let mut b = ::loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        let heap = Arc::new(SpscRing::new(256).unwrap());
        let h2 = heap.clone();
        let t = ::loom::thread::spawn(move || {
            // SAFETY: the only producer.
            let mut p = unsafe { h2.ring().producer().unwrap() };
            for i in 0..3 {
                push_blocking_with(push, &mut p, &msg(i));
            }
        });
        // SAFETY: the only consumer.
        let mut c = unsafe { heap.ring().consumer().unwrap() };
        let mut buf = [0u8; 256];
        for i in 0..3 {
            let n = pop_blocking_with(pop, &mut c, &mut buf);
            assert_eq!(&buf[..n], &msg(i)[..], "record {i}");
        }
        // Before the join: the slot past the last record must read
        // "not published" however the producer's stores interleave.
        assert_eq!(pop(&mut c, &mut buf), None, "a phantom record");
        t.join().unwrap();
    });
}

/// An exactly full ring: the producer cannot zero the slot after the
/// last record (it is the first record's header, not consumed yet), so
/// the consumer meets the previous lap's header there and must tell it
/// apart by its tag; the producer refreshes `head` (Acquire) before it
/// reuses the space. Two records of 120 bytes fill 256, then a third
/// reuses the first one's space.
#[test]
fn loom_spsc_full_ring_lap_tag() {
    full_ring(push_general, pop_general);
}

/// `loom_spsc_full_ring_lap_tag` through the one-record fast paths: the
/// ring exactly full (no zero past the second record: the slot holds the
/// first's header, told apart by its tag), and the third push refreshing
/// `head` (Acquire) in the out-of-line part before it reuses the space.
#[test]
fn loom_spsc_plain_full_ring() {
    full_ring(push_plain, pop_plain);
}

fn full_ring(push: Push, pop: Pop) {
    let mut b = ::loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        let heap = Arc::new(SpscRing::new(256).unwrap());
        let h2 = heap.clone();
        let m = |i: u8| vec![i.wrapping_mul(37) ^ 0xA5; 120];
        let t = ::loom::thread::spawn(move || {
            // SAFETY: the only producer.
            let mut p = unsafe { h2.ring().producer().unwrap() };
            for i in 0..3 {
                push_blocking_with(push, &mut p, &m(i));
            }
        });
        // SAFETY: the only consumer.
        let mut c = unsafe { heap.ring().consumer().unwrap() };
        let mut buf = [0u8; 256];
        for i in 0..3 {
            let n = pop_blocking_with(pop, &mut c, &mut buf);
            assert_eq!(&buf[..n], &m(i)[..], "record {i}");
        }
        assert_eq!(pop(&mut c, &mut buf), None, "a phantom record");
        t.join().unwrap();
    });
}

/// A claim rewritten while a peer reads it is never read as the new
/// pid with the old start time (which would look like a dead peer):
/// the reader sees the old pair, the new pair, or a pid with start 0
/// ("check the pid only").
#[test]
fn loom_spsc_claim_is_never_torn() {
    let mut b = ::loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let heap = Arc::new(SpscRing::new(256).unwrap());
        heap.ring().claim(Role::Writer, 10, 100, false).unwrap();
        let h2 = heap.clone();
        let t = ::loom::thread::spawn(move || {
            h2.ring().claim(Role::Writer, 20, 200, false).unwrap();
        });
        let (pid, start) = heap.ring().claimant(Role::Writer);
        assert!(
            matches!((pid, start), (10, 100) | (20, 200) | (_, 0)),
            "torn claim read: ({pid}, {start})"
        );
        t.join().unwrap();
    });
}

/// A reader blocked for data wakes when the writer closes, and still
/// receives what was published before the close (the pipe's "drain,
/// then Disconnected").
#[test]
fn loom_spsc_close_wakes_reader_after_drain() {
    let mut b = ::loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let heap = Arc::new(SpscRing::new(256).unwrap());
        let h2 = heap.clone();
        let t = ::loom::thread::spawn(move || {
            // SAFETY: the only producer.
            let mut p = unsafe { h2.ring().producer().unwrap() };
            assert!(p.try_push(&msg(2), 0).unwrap());
            h2.ring().close(Role::Writer);
        });
        // SAFETY: the only consumer.
        let mut c = unsafe { heap.ring().consumer().unwrap() };
        let ring = heap.ring();
        let mut buf = [0u8; 256];
        let mut got = 0;
        loop {
            if let Some((n, _)) = c.try_pop(&mut buf).unwrap() {
                assert_eq!(&buf[..n], &msg(2)[..]);
                got += 1;
                continue;
            }
            let k = ring.data_ready().prepare();
            if c.has_data().unwrap() {
                ring.data_ready().cancel(k);
                continue;
            }
            if ring.is_closed(Role::Writer) {
                ring.data_ready().cancel(k);
                // Published before the close: visible now.
                if c.has_data().unwrap() {
                    continue;
                }
                break;
            }
            ring.data_ready().wait(k, None).unwrap();
        }
        assert_eq!(got, 1, "a record published before the close was lost");
        t.join().unwrap();
    });
}

/// A batch: two records published by one store (the first header, stored
/// last; the second header and both payloads Relaxed before it) and
/// released by one store of `head`. The consumer never sees the second
/// record before the first, nor stale bytes in either; the producer never
/// reuses space before the batch release.
#[test]
fn loom_spsc_batch_publish_and_release() {
    let mut b = ::loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let heap = Arc::new(SpscRing::new(256).unwrap());
        let h2 = heap.clone();
        let t = ::loom::thread::spawn(move || {
            // SAFETY: the only producer.
            let mut p = unsafe { h2.ring().producer().unwrap() };
            p.begin_batch();
            assert!(p.try_push(&msg(0), 0).unwrap());
            assert!(p.try_push(&msg(1)[..16], 0).unwrap());
            p.end_batch();
            // The third needs padding and the batch's space back.
            push_blocking(&mut p, &msg(2));
        });
        // SAFETY: the only consumer.
        let mut c = unsafe { heap.ring().consumer().unwrap() };
        let mut buf = [0u8; 256];
        let n = pop_blocking(&mut c, &mut buf);
        assert_eq!(&buf[..n], &msg(0)[..]);
        c.begin_batch();
        let n = pop_blocking(&mut c, &mut buf);
        assert_eq!(&buf[..n], &msg(1)[..16]);
        c.end_batch();
        let n = pop_blocking(&mut c, &mut buf);
        assert_eq!(&buf[..n], &msg(2)[..]);
        t.join().unwrap();
    });
}

/// Takes `want` records through the batch fast path, sleeping on the
/// event count between batches.
fn pop_many_blocking(c: &mut Consumer<'_>, want: usize, mut f: impl FnMut(&[u8])) {
    let mut n = 0;
    while n < want {
        c.begin_batch();
        n += c.pop_plain_many(want - n, &mut f);
        c.end_batch();
        if n == want {
            return;
        }
        let ec = c.ring().data_ready();
        let k = ec.prepare();
        if c.has_data().unwrap() {
            ec.cancel(k);
            continue;
        }
        ec.wait(k, None).unwrap();
    }
}

/// The batch fast paths: two records written by `push_plain_many` (the
/// second header and both payloads Relaxed, the zero only past the last
/// record) and published by `end_batch`'s one Release store, taken by
/// `pop_plain_many` and released by one store of `head`; a third record
/// (200 bytes) then needs padding and that space back. The consumer never
/// sees a record early, stale bytes, or the word past the batch as a
/// record; the producer never reuses space before the release.
#[test]
fn loom_spsc_batch_fast_paths() {
    let mut b = ::loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let heap = Arc::new(SpscRing::new(256).unwrap());
        let h2 = heap.clone();
        let t = ::loom::thread::spawn(move || {
            // SAFETY: the only producer.
            let mut p = unsafe { h2.ring().producer().unwrap() };
            let msgs = [msg(0)[..40].to_vec(), msg(1)[..16].to_vec()];
            let mut it = msgs.iter();
            let mut next = it.next();
            p.begin_batch();
            assert_eq!(p.push_plain_many(&mut next, &mut it), 2);
            assert!(next.is_none());
            p.end_batch();
            push_blocking(&mut p, &third());
        });
        // SAFETY: the only consumer.
        let mut c = unsafe { heap.ring().consumer().unwrap() };
        let mut i = 0;
        pop_many_blocking(&mut c, 2, |m| {
            let want = [msg(0)[..40].to_vec(), msg(1)[..16].to_vec()];
            assert_eq!(m, &want[i][..]);
            i += 1;
        });
        let mut buf = [0u8; 256];
        let n = pop_blocking(&mut c, &mut buf);
        assert_eq!(&buf[..n], &third()[..]);
        t.join().unwrap();
    });
}

/// The third record of `loom_spsc_batch_fast_paths`.
fn third() -> Vec<u8> {
    (0..200).map(|j| j as u8 ^ 0xA5).collect()
}
