//! Unit tests of the ring (heap-backed; run under Miri too).

use super::super::sync::Ordering::*;
use super::*;

#[test]
fn spsc_records_keep_boundaries_and_wrap_with_padding() {
    let h = SpscRing::new(256).unwrap();
    // SAFETY: one producer and one consumer, this thread.
    let (mut p, mut c) = unsafe { (h.ring().producer().unwrap(), h.ring().consumer().unwrap()) };
    let mut buf = [0u8; 256];
    for round in 0..200u32 {
        let len = (round as usize * 13) % 90;
        let msg: Vec<u8> = (0..len).map(|i| (i as u32 ^ round) as u8).collect();
        assert!(p.try_push(&msg, 0).unwrap());
        let (n, f) = c.try_pop(&mut buf).unwrap().unwrap();
        assert_eq!((n, f), (len, 0));
        assert_eq!(&buf[..n], &msg[..]);
    }
    assert_eq!(c.try_pop(&mut buf).unwrap(), None);
}

#[test]
fn spsc_full_ring_refuses_and_too_large_is_refused_at_once() {
    let h = SpscRing::new(256).unwrap();
    // SAFETY: one producer and one consumer, this thread.
    let (mut p, mut c) = unsafe { (h.ring().producer().unwrap(), h.ring().consumer().unwrap()) };
    assert!(matches!(
        p.try_reserve(249, 0),
        Err(Error::MessageTooLarge {
            size: 249,
            max: 248
        })
    ));
    let mut n = 0;
    while p.try_push(&[7; 24], 0).unwrap() {
        n += 1;
    }
    assert_eq!(n, 256 / 32);
    let mut small = [0u8; 4];
    assert!(matches!(
        c.try_pop(&mut small),
        Err(Error::BufferTooShort { needed: 24 })
    ));
    let mut buf = [0u8; 24];
    assert_eq!(c.try_pop(&mut buf).unwrap(), Some((24, 0)));
    assert!(p.try_push(&[1; 24], 0).unwrap());
    // A maximal record needs an empty ring.
    while c.try_pop(&mut buf).unwrap().is_some() {}
    // Not at offset 0: padding goes first, and the consumer must skip it.
    assert_eq!(p.try_reserve(248, 0).unwrap(), None);
    assert_eq!(c.try_peek().unwrap(), None);
    let g = p.try_reserve(248, 0).unwrap().unwrap();
    p.commit(g).unwrap();
    let r = c.try_peek().unwrap().unwrap();
    assert_eq!(r.len(), 248);
    c.release(r).unwrap();
}

#[test]
fn spsc_uncommitted_reservation_sends_nothing() {
    let h = SpscRing::new(256).unwrap();
    // SAFETY: one producer and one consumer, this thread.
    let (mut p, mut c) = unsafe { (h.ring().producer().unwrap(), h.ring().consumer().unwrap()) };
    let g = p.try_reserve(16, 0).unwrap().unwrap();
    p.write(&g, 0, &[1; 16]).unwrap();
    assert_eq!(c.try_peek().unwrap(), None);
    let g2 = p.try_reserve(16, 0).unwrap().unwrap();
    assert_eq!(g, g2);
    p.commit(g2).unwrap();
    assert!(matches!(
        p.write(&g, 0, &[2; 8]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(p.commit(g), Err(Error::InvalidArgument(_))));
    assert_eq!(c.try_peek().unwrap().unwrap().len(), 16);
}

/// Two threads stream records of every length through a small ring
/// (also under Miri, with fewer records).
#[test]
fn spsc_two_threads_stream_in_order() {
    let n: u32 = if cfg!(miri) { 300 } else { 100_000 };
    let h = SpscRing::new(512).unwrap();
    let ring = h.ring();
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: the only producer.
            let mut p = unsafe { ring.producer().unwrap() };
            for i in 0..n {
                let m: Vec<u8> = (0..i % 200).map(|j| (i ^ j) as u8).collect();
                while !p.try_push(&m, 0).unwrap() {
                    std::thread::yield_now();
                }
            }
        });
        // SAFETY: the only consumer.
        let mut c = unsafe { ring.consumer().unwrap() };
        let mut buf = [0u8; 256];
        for i in 0..n {
            let (len, _) = loop {
                match c.try_pop(&mut buf).unwrap() {
                    Some(x) => break x,
                    None => std::thread::yield_now(),
                }
            };
            assert_eq!(len as u32, i % 200);
            assert!(buf[..len]
                .iter()
                .enumerate()
                .all(|(j, &b)| b == (i ^ j as u32) as u8));
        }
    });
}

#[test]
fn spsc_ring_of_another_format_is_a_version_mismatch() {
    let h = SpscRing::new(256).unwrap();
    let magic = &h.ring().ctl.meta.magic;
    magic.store(u64::from_le_bytes(*b"shmspsc1"), Relaxed);
    // SAFETY: the heap ring's own pointer and size.
    let r = unsafe { SpscRing::attach(h.ptr, h.layout.size()) };
    assert!(
        matches!(
            r,
            Err(Error::VersionMismatch {
                found: 1,
                expected: 3
            })
        ),
        "{:?}",
        r.err()
    );
    magic.store(u64::from_le_bytes(*b"shmspscX"), Relaxed);
    // SAFETY: as above.
    let r = unsafe { SpscRing::attach(h.ptr, h.layout.size()) };
    assert!(matches!(r, Err(Error::Corrupt(_))), "{:?}", r.err());
    magic.store(MAGIC, Relaxed);
}

#[test]
fn spsc_garbage_positions_and_headers_are_corrupt() {
    let h = SpscRing::new(256).unwrap();
    let ring = h.ring();
    let tag0 = lap_tag(0, 256) << TAG_SHIFT;
    // SAFETY: one producer and one consumer, this thread.
    let mut c = unsafe { ring.consumer().unwrap() };
    // A garbage `tail` hint is not read on the consumer's path; a
    // header with a foreign tag reads as "not published".
    ring.ctl.prod.tail.store(1000, Relaxed);
    assert_eq!(c.try_peek().unwrap(), None);
    ring.word(0).store(u64::MAX >> 24, Relaxed);
    assert_eq!(c.try_peek().unwrap(), None);
    // Tagged garbage: unknown flags, a record crossing the end of the
    // data area, padding at offset 0.
    ring.word(0).store(tag0 | (0x80 << FLAGS_SHIFT), Relaxed);
    assert!(matches!(c.try_peek(), Err(Error::Corrupt(_))));
    ring.word(0).store(tag0 | 249, Relaxed);
    assert!(matches!(c.try_peek(), Err(Error::Corrupt(_))));
    ring.word(0)
        .store(tag0 | ((PAD as u64) << FLAGS_SHIFT), Relaxed);
    assert!(matches!(c.try_peek(), Err(Error::Corrupt(_))));
    ring.word(0)
        .store(tag0 | ((PAD as u64) << FLAGS_SHIFT) | 8, Relaxed);
    assert!(matches!(c.try_peek(), Err(Error::Corrupt(_))));
    // Positions are multiples of 8 (found by the spsc_garbage fuzz target).
    ring.ctl.prod.tail.store(9, Relaxed);
    // SAFETY: one producer and one consumer, this thread.
    unsafe {
        assert!(matches!(ring.consumer(), Err(Error::Corrupt(_))));
        assert!(matches!(ring.producer(), Err(Error::Corrupt(_))));
    }
    // Farther apart than the capacity.
    ring.ctl.prod.tail.store(1000, Relaxed);
    // SAFETY: one producer and one consumer, this thread.
    unsafe {
        assert!(matches!(ring.consumer(), Err(Error::Corrupt(_))));
        assert!(matches!(ring.producer(), Err(Error::Corrupt(_))));
    }
    // Far apart across the 2^64 wrap (positions near it were found by
    // the spsc_garbage fuzz target, when they overflowed).
    ring.ctl.cons.head.store(8, Relaxed);
    ring.ctl.prod.tail.store(u64::MAX - 1007, Relaxed);
    // SAFETY: one producer and one consumer, this thread.
    unsafe {
        assert!(matches!(ring.producer(), Err(Error::Corrupt(_))));
        assert!(matches!(ring.consumer(), Err(Error::Corrupt(_))));
    }
    // `head`'s bits 1 and 2 are never set (bit 0 is the in-message flag).
    ring.ctl.cons.head.store(2, Relaxed);
    ring.ctl.prod.tail.store(0, Relaxed);
    // SAFETY: one producer and one consumer, this thread.
    unsafe {
        assert!(matches!(ring.producer(), Err(Error::Corrupt(_))));
        assert!(matches!(ring.consumer(), Err(Error::Corrupt(_))));
    }
    // A producer taking over walks tagged records past a stale hint,
    // and refuses one that would overrun the consumer's head.
    ring.ctl.cons.head.store(0, Relaxed);
    ring.ctl.prod.tail.store(0, Relaxed);
    ring.word(0).store(tag0 | 8, Relaxed);
    ring.word(16).store(0, Relaxed);
    // SAFETY: one producer and one consumer, this thread.
    let p = unsafe { ring.producer().unwrap() };
    assert_eq!(p.tail, 16);
    assert_eq!(ring.ctl.prod.tail.load(Relaxed), 16);
    ring.ctl.prod.tail.store(0, Relaxed);
    ring.word(16).store(tag0 | 240, Relaxed);
    // SAFETY: one producer and one consumer, this thread.
    unsafe { assert!(matches!(ring.producer(), Err(Error::Corrupt(_)))) };
}

/// The tagged-header protocol: a full ring leaves the previous lap's
/// header in the next slot (no zero written ahead), and the consumer
/// must not take it for a new record; a producer that died after the
/// header but before the `tail` hint is taken over without loss.
#[test]
fn spsc_full_ring_stale_header_is_not_a_record() {
    let h = SpscRing::new(256).unwrap();
    // SAFETY: one producer and one consumer, this thread.
    let (mut p, mut c) = unsafe { (h.ring().producer().unwrap(), h.ring().consumer().unwrap()) };
    let mut buf = [0u8; 256];
    for lap in 0..5u8 {
        // Exactly full: 8 records of 32 bytes.
        for i in 0..8u8 {
            assert!(p.try_push(&[lap ^ i; 24], 0).unwrap());
        }
        assert!(!p.try_push(&[0; 1], 0).unwrap());
        for i in 0..8u8 {
            assert_eq!(c.try_pop(&mut buf).unwrap(), Some((24, 0)));
            assert_eq!(buf[..24], [lap ^ i; 24]);
        }
        // The slot at head holds the header of this lap's first record.
        assert_ne!(h.ring().word(0).load(Relaxed), 0);
        assert_eq!(c.try_pop(&mut buf).unwrap(), None);
        assert!(!c.has_data().unwrap());
    }
    // Stale bytes (a previous lap's payload) that look like the header
    // due at the next slot are never read as one: the producer zeroes
    // that word before it publishes the record in front of it.
    let pos = 5 * 256;
    let next = pos + 48;
    h.ring()
        .word(48)
        .store(header_word(next, 256, 8, 0), Relaxed);
    assert!(p.try_push(&[3; 40], 0).unwrap());
    assert_eq!(c.try_pop(&mut buf).unwrap(), Some((40, 0)));
    assert_eq!(c.try_pop(&mut buf).unwrap(), None);
    // Takeover after a lost `tail` hint.
    assert!(p.try_push(&[9; 8], 0).unwrap());
    h.ring().ctl.prod.tail.store(next, Relaxed);
    // SAFETY: the previous producer is no longer used (shadowed).
    let mut p = unsafe { h.ring().producer().unwrap() };
    assert!(p.try_push(&[10; 8], 0).unwrap());
    assert_eq!(c.try_pop(&mut buf).unwrap(), Some((8, 0)));
    assert_eq!(buf[..8], [9; 8]);
    assert_eq!(c.try_pop(&mut buf).unwrap(), Some((8, 0)));
    assert_eq!(buf[..8], [10; 8]);
}

/// Positions started just below 2^64 (not on a lap boundary, so padding
/// falls at the wrap): records keep their boundaries across the wrap, and
/// a producer and a consumer taking the ends over on either side of it
/// (attach checks, the producer's walk) see the same ring; the in-message
/// bit travels with `head` and reaches the successor.
#[test]
fn spsc_streams_across_the_2_64_wrap() {
    let h = SpscRing::new(512).unwrap();
    let ring = h.ring();
    // SAFETY: fresh ring, no producer or consumer yet.
    unsafe { ring.__start_positions_at(u64::MAX - 1000) };
    let mut buf = [0u8; 512];
    let mut wrapped = false;
    for round in 0..300u32 {
        // SAFETY: one producer and one consumer at a time, this thread
        // (the previous ones are dropped: a take-over every round).
        let (mut p, mut c) = unsafe { (ring.producer().unwrap(), ring.consumer().unwrap()) };
        let len = (round as usize * 29) % 120;
        let msg: Vec<u8> = (0..len).map(|i| ((i as u32 * 3) ^ round) as u8).collect();
        assert!(p.try_push(&msg, 0).unwrap());
        if round % 3 == 0 {
            // A second record, left for the next round's consumer.
            assert!(p.try_push(&msg[..len / 2], MORE).unwrap());
        }
        let (n, f) = c.try_pop(&mut buf).unwrap().unwrap();
        assert_eq!((n, f), (len, 0), "round {round}");
        assert_eq!(&buf[..n], &msg[..]);
        if round % 3 == 0 {
            c.set_in_message(true);
            let (n, f) = c.try_pop(&mut buf).unwrap().unwrap();
            assert_eq!((n, f), (len / 2, MORE));
            assert!(ring.in_message());
            c.set_in_message(false);
        }
        wrapped |= ring.ctl.cons.head.load(Relaxed) < 1 << 20;
    }
    assert!(wrapped, "the positions never crossed 2^64");
    // SAFETY: as above.
    let c = unsafe { ring.consumer().unwrap() };
    assert!(
        c.in_message(),
        "the successor did not see the in-message bit"
    );
}

/// Pushes `msgs` as one batch through the batch fast path, and past what
/// stops it through the general push (padding), as the pipe layer does;
/// the count pushed.
fn push_batch(p: &mut Producer<'_>, msgs: &[Vec<u8>]) -> usize {
    let mut it = msgs.iter();
    let mut next = it.next();
    let mut n = 0;
    p.begin_batch();
    loop {
        n += p.push_plain_many(&mut next, &mut it);
        match next {
            Some(m) if p.try_push(m, 0).unwrap() => {
                next = it.next();
                n += 1;
            }
            _ => break,
        }
    }
    p.end_batch();
    n
}

/// The producer and the consumer of `h`'s fresh ring, its positions moved
/// to just below the 2^64 wrap.
fn below_the_wrap(h: &HeapRing) -> (Producer<'_>, Consumer<'_>) {
    let ring = h.ring();
    // SAFETY: fresh ring, no producer or consumer yet.
    unsafe { ring.__start_positions_at(u64::MAX - 3000) };
    // SAFETY: one producer and one consumer, used by one thread.
    unsafe { (ring.producer().unwrap(), ring.consumer().unwrap()) }
}

/// The batch fast paths (`push_plain_many`, `pop_plain_many`) keep record
/// boundaries and contents across padding, laps, a full ring and the 2^64
/// wrap, in batches of every size, and publish nothing before
/// `end_batch`.
#[test]
fn spsc_batch_fast_paths_stream_in_order_across_the_wrap() {
    let h = SpscRing::new(256).unwrap();
    let (mut p, mut c) = below_the_wrap(&h);
    let msg = |i: usize| -> Vec<u8> { (0..(i * 7) % 70).map(|j| (i * 5 + j) as u8).collect() };
    let (mut sent, mut got) = (0usize, 0usize);
    for round in 0..400 {
        let k = 1 + round % 9;
        let batch: Vec<Vec<u8>> = (sent..sent + k).map(msg).collect();
        p.begin_batch();
        let mut it = batch.iter();
        let mut next = it.next();
        let fast = p.push_plain_many(&mut next, &mut it);
        // Nothing is visible before the batch ends.
        c.begin_batch();
        assert_eq!(c.pop_plain_many(usize::MAX, |_| panic!("unpublished")), 0);
        c.end_batch();
        p.end_batch();
        sent += fast;
        sent += push_batch(&mut p, &batch[fast..]);
        c.begin_batch();
        let mut n = 0;
        for tries in 0.. {
            assert!(tries < 1000, "messages lost: {got} of {sent}");
            n += c.pop_plain_many(1 + round % 5, |m| {
                assert_eq!(m, &msg(got)[..], "message {got}");
                got += 1;
            });
            // Padding: the general path skips it.
            let mut buf = [0u8; 256];
            match c.try_pop_plain(&mut buf).unwrap() {
                Some(len) => {
                    assert_eq!(&buf[..len], &msg(got)[..], "message {got}");
                    got += 1;
                    n += 1;
                }
                None if got == sent => break,
                None => {}
            }
        }
        c.end_batch();
        assert!(n > 0);
    }
    assert_eq!(got, sent);
    assert!(sent > 400);
    assert!(
        h.ring().ctl.cons.head.load(Relaxed) < 1 << 20,
        "never wrapped"
    );
}

/// A corrupt header inside a batch stops the consumer's fast path at it
/// (nothing past it is handed out) and the general path reports it as
/// `Corrupt`; a length past the end of the data area is never read.
#[test]
fn spsc_batch_fast_path_stops_at_a_corrupt_header() {
    let h = SpscRing::new(256).unwrap();
    let ring = h.ring();
    let tag0 = lap_tag(0, 256) << TAG_SHIFT;
    // SAFETY: one producer and one consumer, this thread.
    let (mut p, mut c) = unsafe { (ring.producer().unwrap(), ring.consumer().unwrap()) };
    let msgs = vec![vec![1u8; 8], vec![2u8; 8], vec![3u8; 8]];
    assert_eq!(push_batch(&mut p, &msgs), 3);
    for bad in [
        tag0 | 249,
        tag0 | u32::MAX as u64,
        tag0 | (0x80 << FLAGS_SHIFT),
    ] {
        ring.word(16).store(bad, Relaxed);
        c.begin_batch();
        let mut seen = Vec::new();
        assert_eq!(c.pop_plain_many(8, |m| seen.push(m.to_vec())), 1);
        c.end_batch();
        assert_eq!(seen, [vec![1u8; 8]]);
        assert!(matches!(c.try_peek(), Err(Error::Corrupt(_))));
        // Back to the first record for the next kind of garbage.
        c.head = 0;
    }
}

/// Outside a batch the fast paths make one of their own: what was pushed
/// is published, what was taken is released (the producer gets its space
/// back).
#[test]
fn spsc_batch_fast_paths_outside_a_batch_publish_and_release() {
    let h = SpscRing::new(256).unwrap();
    // SAFETY: one producer and one consumer, this thread.
    let (mut p, mut c) = unsafe { (h.ring().producer().unwrap(), h.ring().consumer().unwrap()) };
    for round in 0..50u8 {
        // Two 32-byte records: a lap holds four rounds, no padding.
        let msgs = vec![vec![round; 24], vec![round ^ 1; 17]];
        let mut it = msgs.iter();
        let mut next = it.next();
        assert_eq!(p.push_plain_many(&mut next, &mut it), 2, "round {round}");
        let mut got = Vec::new();
        assert_eq!(c.pop_plain_many(8, |m| got.push(m.to_vec())), 2);
        assert_eq!(got, msgs);
        assert_eq!(h.ring().ctl.cons.head.load(Relaxed), c.head);
    }
}

/// The one-record fast paths (`push_plain_as`, `pop_plain_as`) stream in
/// order across the 2^64 wrap, their general parts taking the padding and
/// the refresh of `head`, and every record arrives whole.
#[test]
fn spsc_plain_fast_paths_stream_across_the_wrap() {
    let h = SpscRing::new(256).unwrap();
    let (mut p, mut c) = below_the_wrap(&h);
    let msg = |i: usize| -> Vec<u8> { (0..(i * 7) % 70).map(|j| (i * 3 + j) as u8).collect() };
    let (mut sent, mut got) = (0usize, 0usize);
    let mut buf = [0u8; 256];
    for round in 0..600 {
        // Up to three in flight: the ring fills, and `head` is refreshed.
        for _ in 0..1 + round % 3 {
            let m = msg(sent);
            if p.push_plain_as(&m, round % 2 == 0) || p.try_push(&m, 0).unwrap() {
                sent += 1;
            }
        }
        while let Some(len) = c.pop_plain_as(&mut buf, round % 2 == 1) {
            assert_eq!(&buf[..len], &msg(got)[..], "message {got}");
            got += 1;
        }
        assert_eq!(h.ring().ctl.cons.head.load(Relaxed), c.head);
        assert_eq!(h.ring().ctl.prod.tail.load(Relaxed), p.tail);
    }
    assert_eq!(got, sent);
    assert!(sent > 500, "only {sent} sent");
}

/// What a corrupt or hostile ring can put where the receive fast path
/// looks (the header at `head`) is refused without a read out of bounds:
/// a record crossing the end of the data area, unknown flags, a length
/// that overflows the record size, or the previous lap's tag read as "not
/// published"; the fast path consumes nothing (the general path reports
/// `Corrupt`). A `dst` too short leaves the record too. On the send side,
/// a `head` moved backwards or past `tail` makes the fast push refuse
/// (nothing written) where it must refresh `head`.
#[test]
fn spsc_plain_fast_paths_refuse_a_corrupt_ring() {
    let h = SpscRing::new(256).unwrap();
    let ring = h.ring();
    let tag0 = lap_tag(0, 256) << TAG_SHIFT;
    // SAFETY: one producer and one consumer, this thread.
    let (mut p, mut c) = unsafe { (ring.producer().unwrap(), ring.consumer().unwrap()) };
    assert!(p.push_plain_as(&[1u8; 8], false));
    assert!(p.push_plain_as(&[2u8; 8], false));
    let good = ring.word(0).load(Relaxed);
    let mut buf = [0u8; 256];
    for bad in [
        tag0 | 249,
        tag0 | u32::MAX as u64,
        tag0 | (0x80 << FLAGS_SHIFT),
        tag0 | ((PAD as u64) << FLAGS_SHIFT) | 8,
        lap_tag(256, 256) << TAG_SHIFT | 8,
    ] {
        ring.word(0).store(bad, Relaxed);
        assert_eq!(c.pop_plain_as(&mut buf, false), None, "{bad:#x}");
        assert_eq!((c.head, ring.ctl.cons.head.load(Relaxed)), (0, 0));
    }
    ring.word(0).store(good, Relaxed);
    assert_eq!(c.pop_plain_as(&mut buf[..7], false), None, "short dst");
    assert_eq!(c.pop_plain_as(&mut buf, false), Some(8));
    assert_eq!(&buf[..8], &[1u8; 8]);
    assert_eq!(ring.ctl.cons.head.load(Relaxed), 16);
    assert_eq!(c.pop_plain_as(&mut buf, false), Some(8));
    assert_eq!(&buf[..8], &[2u8; 8]);
    // Fill the ring so that the next push must refresh `head`, then
    // corrupt it: backwards, past `tail`, misaligned.
    while p.push_plain_as(&[3u8; 8], false) {}
    let (tail, head) = (p.tail, p.head);
    for bad in [head.wrapping_sub(8), tail + 8, head + 4] {
        ring.ctl.cons.head.store(bad, Relaxed);
        assert!(!p.push_plain_as(&[4u8; 8], false), "head {bad}");
        assert_eq!((p.tail, p.head), (tail, head));
        assert!(matches!(p.try_push(&[4u8; 8], 0), Err(Error::Corrupt(_))));
    }
}

/// The fast paths' lap caches go stale when the general paths move a
/// position into the next lap; a stale cache refuses every record (the
/// general part then refills it), so the previous lap's header left in an
/// exactly full ring, whose tag the stale cache carries, is not taken for
/// a record, and a push writes the new lap's tag.
#[test]
fn spsc_plain_fast_paths_stale_lap_cache_is_refused() {
    let h = SpscRing::new(256).unwrap();
    let ring = h.ring();
    // SAFETY: one producer and one consumer, this thread.
    let (mut p, mut c) = unsafe { (ring.producer().unwrap(), ring.consumer().unwrap()) };
    let mut buf = [0u8; 256];
    // Two records of 128 bytes fill the ring exactly; both caches lap 0.
    assert!(p.push_plain_as(&[1u8; 120], false));
    assert!(p.push_plain_as(&[2u8; 120], false));
    assert_eq!(c.pop_plain_as(&mut buf, false), Some(120));
    assert_eq!(c.lap.end, 256);
    #[cfg(not(feature = "fault-injection"))] // which pushes through `try_push`
    assert_eq!(p.lap.end, 256);
    // The general path moves the consumer into lap 1; its cache stays at
    // lap 0. Offset 0 still holds lap 0's first header (the ring was full:
    // nothing zeroed it), whose tag is the stale cache's: not taken.
    assert_eq!(c.try_pop(&mut buf).unwrap(), Some((120, 0)));
    assert_eq!(c.head, 256);
    assert_eq!(c.lap.end, 256);
    assert_eq!(ring.word(0).load(Relaxed), header_word(0, 256, 120, 0));
    assert_eq!(c.pop_plain_as(&mut buf, false), None, "lap 0's header");
    assert_eq!(c.head, 256);
    // The same for the producer: moved into lap 1 by the general path, its
    // stale cache is refused and the records get lap 1's tag (which the
    // consumer's general path checks).
    assert!(p.try_push(&[3u8; 120], 0).unwrap());
    assert_eq!(p.tail, 384);
    #[cfg(not(feature = "fault-injection"))]
    assert_eq!(p.lap.end, 256);
    assert_eq!(c.try_pop(&mut buf).unwrap(), Some((120, 0)));
    assert_eq!(&buf[..120], &[3u8; 120]);
    assert!(p.push_plain_as(&[4u8; 8], false));
    assert_eq!(ring.word(128).load(Relaxed), header_word(384, 256, 8, 0));
    assert_eq!(c.try_pop(&mut buf).unwrap(), Some((8, 0)));
    assert_eq!(&buf[..8], &[4u8; 8]);
}
