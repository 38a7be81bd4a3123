//! Regression tests for review findings on `SpscRing` and `Pipe` that need
//! no `fork`: foreign or stale grants and records are refused, an unused
//! end dropped disconnects its peer, a re-claim seen half-way is not a
//! dead peer, and a failed wait withdraws its sleeper announcement.
//! (The findings that need `fork` are in `pipe_fork_faults.rs`.)
#![cfg(target_os = "linux")]

mod harness;
use harness::*;
use shmprim::raw::spsc::{Role, SpscRing};
use shmprim::{End, Error, Pipe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

// ---------------------------------------------------------------------------
// Pipe: ends dropped unused, torn claims, sleepers after an error
// ---------------------------------------------------------------------------

/// An anonymous end dropped without ever being used (and never copied by a
/// `fork`) disconnects its peer, as std's channels and Python's pipes do.
#[test]
fn pipe_unused_end_dropped_disconnects_peer() {
    let _w = watchdog(
        "pipe_unused_end_dropped_disconnects_peer",
        Duration::from_secs(30),
    );
    let (mut a, b) = Pipe::anonymous(4096).unwrap();
    drop(b);
    let r = a.recv_bytes_timeout(Duration::from_secs(10));
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    let r = a.send_bytes(b"x");
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
}

/// Same, with a thread that takes the end and ends before using it.
#[test]
fn pipe_unused_end_dropped_by_a_thread_disconnects_peer() {
    let _w = watchdog(
        "pipe_unused_end_dropped_by_a_thread_disconnects_peer",
        Duration::from_secs(30),
    );
    let (mut a, b) = Pipe::anonymous(4096).unwrap();
    std::thread::spawn(move || {
        let _b = b;
    })
    .join()
    .unwrap();
    let r = a.recv_bytes_timeout(Duration::from_secs(10));
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
}

fn start_time(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 1..];
    rest.split_ascii_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap()
}

/// A re-claim seen half-way (new pid, old start time) is not a dead peer:
/// a thread alternates the writer's claim between two live processes (ours
/// and our parent) while the reader waits; it must time out, never see
/// `Disconnected`.
#[test]
fn pipe_reclaim_seen_half_way_is_not_a_dead_peer() {
    let _w = watchdog(
        "pipe_reclaim_seen_half_way_is_not_a_dead_peer",
        Duration::from_secs(30),
    );
    let name = unique("torn");
    let _rm = RemoveOnDrop(name.clone());
    let pipe = Pipe::create_simplex(&name, 4096).unwrap();
    let mut r = pipe.connect(End::A).unwrap();
    let _wr = pipe.connect(End::B).unwrap();
    // SAFETY: the pipe's object is its one ring's region; the claim words
    // are atomics.
    let ring = unsafe {
        SpscRing::attach(
            pipe.segment().data_ptr(),
            SpscRing::region_size(4096).unwrap(),
        )
        .unwrap()
    };
    let me = std::process::id();
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() } as u32;
    let (s_me, s_parent) = (start_time(me), start_time(parent));
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let t = std::thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            ring.claim(Role::Writer, me, s_me, false).unwrap();
            ring.claim(Role::Writer, parent, s_parent, false).unwrap();
        }
    });
    let res = r.recv_bytes_timeout(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert!(
        matches!(res, Err(Error::Timeout)),
        "both claimants alive, yet {res:?}"
    );
    // Leave the claim as the test found it (ours), so drops close cleanly.
    ring.claim(Role::Writer, me, s_me, false).unwrap();
}

/// A wait that fails after announcing itself (garbage written into the
/// ring while it sleeps) withdraws the announcement: `sleepers` is back to
/// 0, so publishers do not pay a FUTEX_WAKE for ever after.
#[test]
fn pipe_failed_wait_withdraws_its_sleeper() {
    let _w = watchdog(
        "pipe_failed_wait_withdraws_its_sleeper",
        Duration::from_secs(30),
    );
    let name = unique("sleepers");
    let _rm = RemoveOnDrop(name.clone());
    let pipe = Pipe::create_simplex(&name, 4096).unwrap();
    let mut r = pipe.connect(End::A).unwrap();
    let _wr = pipe.connect(End::B).unwrap();
    let base = pipe.segment().data_ptr() as usize;
    let t = std::thread::spawn(move || r.recv_bytes_timeout(Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(200));
    // A garbage record header, written while the reader sleeps: the tag of
    // position 0 (lap 0: tag 1, bits 40..64) with unknown flags (0x80,
    // bits 32..40), so that the reader's re-check finds it published and
    // corrupt. (The `tail` word is only a hint the reader does not read.)
    let word = (1u64 << 40) | (0x80 << 32);
    // SAFETY: the first header word (ring offset 256, the data area's
    // start) is an AtomicU64.
    unsafe { (*((base + 256) as *const AtomicU64)).store(word, Ordering::Release) };
    let res = t.join().unwrap();
    assert!(matches!(res, Err(Error::Corrupt(_))), "{res:?}");
    // SAFETY: Ends.data_ready.sleepers (ring offset 192 + 4) is an AtomicU32.
    let sleepers = unsafe { (*((base + 196) as *const AtomicU32)).load(Ordering::Relaxed) };
    assert_eq!(
        sleepers, 0,
        "the failed wait left data_ready.sleepers raised"
    );
}
