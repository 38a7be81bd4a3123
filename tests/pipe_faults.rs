//! Regression tests for review findings on `SpscRing` and `Pipe` that need
//! no `fork`: foreign or stale grants and records are refused, an unused
//! end dropped disconnects its peer, a re-claim seen half-way is not a
//! dead peer, and a failed wait withdraws its sleeper announcement.
//! (The findings that need `fork` are in `pipe_fork_faults.rs`.)
#![cfg(target_os = "linux")]

use shmprim::raw::spsc::SpscRing;
use shmprim::Error;

// ---------------------------------------------------------------------------
// Raw ring: grants and records are tied to their ring and position
// ---------------------------------------------------------------------------

/// A grant of another (larger) ring used with this ring's producer: refused,
/// never a write past this ring's data area.
#[test]
fn spsc_grant_of_another_ring_is_refused() {
    let small = SpscRing::new(256).unwrap();
    let big = SpscRing::new(4096).unwrap();
    // SAFETY: one producer per ring, this thread.
    let (mut ps, mut pb) = unsafe {
        (
            small.ring().producer().unwrap(),
            big.ring().producer().unwrap(),
        )
    };
    let g = pb.try_reserve(4000, 0).unwrap().unwrap();
    let r = ps.write(&g, 0, &[0xAA; 4000]);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    assert!(matches!(ps.payload_ptr(&g), Err(Error::InvalidArgument(_))));
    assert!(matches!(ps.commit(g), Err(Error::InvalidArgument(_))));
    // A grant of a same-sized ring at the same position: refused too.
    let other = SpscRing::new(256).unwrap();
    // SAFETY: the only producer of `other`.
    let mut po = unsafe { other.ring().producer().unwrap() };
    let g = po.try_reserve(8, 0).unwrap().unwrap();
    assert!(matches!(ps.commit(g), Err(Error::InvalidArgument(_))));
    // The small ring still works.
    assert!(ps.try_push(b"fine", 0).unwrap());
}

/// A grant whose record was committed no longer writes: the bytes are
/// published and the consumer may be reading them.
#[test]
fn spsc_stale_grant_cannot_rewrite_a_published_record() {
    let h = SpscRing::new(256).unwrap();
    // SAFETY: one producer and one consumer, this thread.
    let (mut p, mut c) = unsafe { (h.ring().producer().unwrap(), h.ring().consumer().unwrap()) };
    let g = p.try_reserve(8, 0).unwrap().unwrap();
    // Two grants for the same reservation (reserve twice, commit one).
    let g2 = p.try_reserve(8, 0).unwrap().unwrap();
    p.write(&g, 0, b"original").unwrap();
    p.commit(g).unwrap();
    let w = p.write(&g2, 0, b"CHANGED!");
    assert!(matches!(w, Err(Error::InvalidArgument(_))), "{w:?}");
    assert!(matches!(p.commit(g2), Err(Error::InvalidArgument(_))));
    let mut buf = [0u8; 8];
    assert_eq!(c.try_pop(&mut buf).unwrap(), Some((8, 0)));
    assert_eq!(&buf, b"original");
}

/// A record of another ring, or a stale one, is refused by `read`,
/// `payload_ptr` and `release`: never a read out of bounds, and never a
/// head moved past what was published.
#[test]
fn spsc_record_of_another_ring_or_stale_is_refused() {
    let small = SpscRing::new(256).unwrap();
    let big = SpscRing::new(4096).unwrap();
    // SAFETY: one producer and one consumer per ring, this thread.
    let (mut ps, mut cs, mut pb, mut cb) = unsafe {
        (
            small.ring().producer().unwrap(),
            small.ring().consumer().unwrap(),
            big.ring().producer().unwrap(),
            big.ring().consumer().unwrap(),
        )
    };
    assert!(pb.try_push(&[1; 4000], 0).unwrap());
    assert!(ps.try_push(&[2; 16], 0).unwrap());
    let foreign = cb.try_peek().unwrap().unwrap();
    let mut buf = vec![0u8; 4000];
    assert!(matches!(
        cs.read(&foreign, 0, &mut buf),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        cs.payload_ptr(&foreign),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        cs.release(foreign),
        Err(Error::InvalidArgument(_))
    ));
    // Peeked twice, released once: the second is stale.
    let r1 = cs.try_peek().unwrap().unwrap();
    let r2 = cs.try_peek().unwrap().unwrap();
    cs.release(r1).unwrap();
    assert!(matches!(
        cs.read(&r2, 0, &mut buf[..16]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(cs.release(r2), Err(Error::InvalidArgument(_))));
    // Both rings still consistent.
    assert_eq!(cs.try_pop(&mut buf).unwrap(), None);
    assert!(ps.try_push(&[3; 200], 0).unwrap());
    assert_eq!(cs.try_pop(&mut buf).unwrap(), Some((200, 0)));
    assert_eq!(cb.try_pop(&mut buf).unwrap(), Some((4000, 0)));
}
