//! API gaps closed in this round: `recv_bytes_max` in its three forms,
//! the default capacity (Python's `Pipe()` takes none), and the crate's
//! rule for "try once, busy" (`Empty`/`Full`) against "deadline passed"
//! (`Timeout`) on every pipe call.

use shmprim::{Error, Pipe};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_millis(30);

#[test]
fn recv_bytes_max_has_try_and_timeout_forms() {
    let (mut a, mut b) = Pipe::anonymous(4096).unwrap();
    assert!(matches!(b.try_recv_bytes_max(10), Err(Error::Empty)));
    let start = Instant::now();
    assert!(matches!(
        b.recv_bytes_max_timeout(10, T),
        Err(Error::Timeout)
    ));
    assert!(start.elapsed() >= T);
    // Too long: refused, and kept for a larger limit.
    a.send_bytes(b"0123456789abcdef").unwrap();
    for r in [
        b.try_recv_bytes_max(10),
        b.recv_bytes_max_timeout(10, T),
        b.recv_bytes_max(10),
    ] {
        assert!(
            matches!(r, Err(Error::MessageTooLarge { size: 16, max: 10 })),
            "{r:?}"
        );
    }
    assert_eq!(b.try_recv_bytes_max(16).unwrap(), b"0123456789abcdef");
    // A fragmented message (longer than half the ring), all three forms.
    let big: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    a.send_bytes(&big).unwrap();
    assert!(matches!(
        b.try_recv_bytes_max(2999),
        Err(Error::MessageTooLarge { size: 3000, .. })
    ));
    assert_eq!(b.recv_bytes_max_timeout(3000, T).unwrap(), big);
    a.send_bytes(b"x").unwrap();
    assert_eq!(b.recv_bytes_max(1).unwrap(), b"x");
    // The peer gone: Disconnected from every form, not Empty or Timeout.
    drop(a);
    assert!(matches!(b.try_recv_bytes_max(10), Err(Error::Disconnected)));
    assert!(matches!(
        b.recv_bytes_max_timeout(10, T),
        Err(Error::Disconnected)
    ));
    assert!(matches!(b.recv_bytes_max(10), Err(Error::Disconnected)));
}

#[test]
fn default_capacity_pipes() {
    let (mut a, mut b) = Pipe::anonymous_default().unwrap();
    assert_eq!(a.max_record(), Pipe::DEFAULT_CAPACITY - 8);
    a.send_bytes(b"ping").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"ping");
    b.send_bytes(b"pong").unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"pong");
    let (mut r, mut w) = Pipe::anonymous_simplex_default().unwrap();
    assert!(r.readable() && !r.writable() && w.writable() && !w.readable());
    w.send_bytes(&[7u8; 100_000]).unwrap();
    assert_eq!(r.recv_bytes().unwrap(), vec![7u8; 100_000]);
}

/// `try_` is "try once, busy" (`Empty` / `Full`), `_timeout` is "deadline
/// passed" (`Timeout`, for `Duration::ZERO` too), on every pipe call.
#[test]
fn try_is_busy_and_timeout_is_deadline_passed() {
    let (mut r, mut w) = Pipe::anonymous_simplex(4096).unwrap();
    let z = Duration::ZERO;
    let mut buf = [0u8; 64];
    assert!(matches!(r.try_recv_bytes(), Err(Error::Empty)));
    assert!(matches!(r.try_recv_bytes_into(&mut buf), Err(Error::Empty)));
    assert!(matches!(r.try_recv::<u64>(), Err(Error::Empty)));
    assert!(matches!(r.try_recv_in_place(), Err(Error::Empty)));
    assert!(matches!(r.try_recv_bytes_max(8), Err(Error::Empty)));
    assert!(matches!(r.recv_bytes_timeout(z), Err(Error::Timeout)));
    assert!(matches!(
        r.recv_bytes_into_timeout(&mut buf, z),
        Err(Error::Timeout)
    ));
    assert!(matches!(r.recv_timeout::<u64>(z), Err(Error::Timeout)));
    assert!(matches!(r.recv_in_place_timeout(z), Err(Error::Timeout)));
    assert!(matches!(
        r.recv_bytes_max_timeout(8, z),
        Err(Error::Timeout)
    ));
    assert!(!r.poll(Some(z)).unwrap());
    // Fill the ring.
    while w.try_send_bytes(&[1u8; 1000]).is_ok() {}
    assert!(matches!(w.try_send_bytes(&[1u8; 1000]), Err(Error::Full)));
    assert!(matches!(w.try_reserve(1000).map(|_| ()), Err(Error::Full)));
    assert!(matches!(
        w.send_bytes_timeout(&[1u8; 1000], z),
        Err(Error::Timeout)
    ));
    assert!(matches!(
        w.reserve_timeout(1000, z).map(|_| ()),
        Err(Error::Timeout)
    ));
}

/// A closed handle takes no fast path: with room to send and a message
/// waiting, `send_bytes` and `recv_bytes_into` still say `Closed`.
#[test]
fn closed_handle_is_closed_on_the_fast_paths() {
    let (mut a, mut b) = Pipe::anonymous(4096).unwrap();
    a.send_bytes(b"one").unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 3);
    b.send_bytes(b"back").unwrap();
    a.close();
    assert!(matches!(a.send_bytes(b"two"), Err(Error::Closed)));
    assert!(matches!(a.recv_bytes_into(&mut buf), Err(Error::Closed)));
    assert!(matches!(a.claim(), Err(Error::Closed)));
    b.close();
    assert!(matches!(b.recv_bytes_into(&mut buf), Err(Error::Closed)));
}
