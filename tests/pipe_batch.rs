//! The batch API of `Connection`: `send_many` / `recv_many` (and their
//! `try_` / `_timeout` forms) deliver every message whole and in order,
//! mixed with single sends, fragmented messages and padding at the wrap;
//! `recv_many_in_place`, the zero-allocation batch receive, reads them in
//! place (fragmented ones whole, after one copy), and a panicking callback
//! keeps the message it was handed and releases those before.

use shmprim::{Error, Pipe};
use std::time::Duration;

fn message(i: usize) -> Vec<u8> {
    (0..(i * 37) % 300).map(|j| (i * 11 + j) as u8).collect()
}

/// Sends messages 0..N in batches of varying size, with a fragmented
/// 3000-byte message of nines and a single send every 500; returns the end.
fn spawn_batch_sender(mut w: shmprim::Connection) -> std::thread::JoinHandle<shmprim::Connection> {
    const N: usize = 20_000;
    std::thread::spawn(move || {
        let all: Vec<Vec<u8>> = (0..N).map(message).collect();
        let mut i = 0;
        while i < N {
            let end = (i + 1 + i % 17).min(N);
            if i % 500 == 0 {
                // A fragmented message and a single send in between.
                w.send_bytes(&vec![9u8; 3000]).unwrap();
            }
            i += w.send_many(&all[i..end]).unwrap();
        }
        w
    })
}

#[test]
fn many_messages_in_batches_arrive_in_order() {
    const N: usize = 20_000;
    let (mut r, w) = Pipe::anonymous_simplex(4096).unwrap();
    let t = spawn_batch_sender(w);
    let mut got = Vec::new();
    let mut i = 0;
    while i < N {
        got.clear();
        let n = r.recv_many(&mut got, 1 + i % 23).unwrap();
        assert!(n >= 1 && n == got.len());
        for m in &got {
            if m.len() == 3000 {
                assert!(m.iter().all(|&b| b == 9));
                continue;
            }
            assert_eq!(*m, message(i), "message {i}");
            i += 1;
        }
    }
    drop(t.join().unwrap());
    assert!(matches!(
        r.try_recv_many(&mut got, 4),
        Err(Error::Disconnected)
    ));
}

#[test]
fn batch_forms_follow_the_try_and_timeout_rule() {
    let (mut r, mut w) = Pipe::anonymous_simplex(1024).unwrap();
    let mut out = Vec::new();
    assert!(matches!(r.try_recv_many(&mut out, 8), Err(Error::Empty)));
    assert!(matches!(
        r.recv_many_timeout(&mut out, 8, Duration::ZERO),
        Err(Error::Timeout)
    ));
    assert_eq!(r.recv_many(&mut out, 0).unwrap(), 0);
    let msgs = vec![[1u8; 100]; 20];
    // 1024 bytes hold 9 records of 108 bytes.
    let n = w.try_send_many(&msgs).unwrap();
    assert_eq!(n, 9);
    assert!(matches!(w.try_send_many(&msgs), Err(Error::Full)));
    assert!(matches!(
        w.send_many_timeout(&msgs, Duration::ZERO),
        Err(Error::Timeout)
    ));
    assert_eq!(r.try_recv_many(&mut out, 4).unwrap(), 4);
    assert_eq!(
        r.recv_many_timeout(&mut out, 100, Duration::ZERO).unwrap(),
        5
    );
    assert_eq!(out.len(), 9);
    assert!(out.iter().all(|m| m[..] == [1u8; 100][..]));
    assert_eq!(w.send_many(Vec::<&[u8]>::new()).unwrap(), 0);
}

#[test]
fn in_place_batches_arrive_whole_and_in_order() {
    const N: usize = 20_000;
    let (mut r, w) = Pipe::anonymous_simplex(4096).unwrap();
    let t = spawn_batch_sender(w);
    let (mut i, mut big) = (0, 0);
    while i < N {
        let n = r
            .recv_many_in_place(1 + i % 23, |m| {
                if m.len() == 3000 {
                    assert!(m.iter().all(|&b| b == 9));
                    big += 1;
                    return;
                }
                assert_eq!(m, &message(i)[..], "message {i}");
                i += 1;
            })
            .unwrap();
        assert!(n >= 1);
    }
    assert!(big >= 1, "no fragmented message seen");
    drop(t.join().unwrap());
    assert!(matches!(
        r.try_recv_many_in_place(4, |_| ()),
        Err(Error::Disconnected)
    ));
}

#[test]
fn in_place_forms_follow_the_try_and_timeout_rule() {
    let (mut r, mut w) = Pipe::anonymous_simplex(1024).unwrap();
    assert!(matches!(
        r.try_recv_many_in_place(8, |_| ()),
        Err(Error::Empty)
    ));
    assert!(matches!(
        r.recv_many_in_place_timeout(8, |_| (), Duration::ZERO),
        Err(Error::Timeout)
    ));
    assert_eq!(r.recv_many_in_place(0, |_| panic!("max 0")).unwrap(), 0);
    w.send_many([b"a".as_slice(), b"bb", b"ccc"]).unwrap();
    let mut got = Vec::new();
    let n = r
        .recv_many_in_place_timeout(2, |m| got.push(m.to_vec()), Duration::from_secs(5))
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(got, [b"a".to_vec(), b"bb".to_vec()]);
    assert_eq!(r.try_recv_bytes().unwrap(), b"ccc");
}

#[test]
fn a_panicking_callback_keeps_its_message_and_releases_the_ones_before() {
    let (mut r, mut w) = Pipe::anonymous_simplex(1024).unwrap();
    w.send_many([b"one".as_slice(), b"two", b"three"]).unwrap();
    let mut seen = Vec::new();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        r.recv_many_in_place(8, |m| {
            if m == b"two" {
                panic!("callback");
            }
            seen.push(m.to_vec());
        })
    }));
    assert!(caught.is_err());
    assert_eq!(seen, [b"one".to_vec()]);
    // "one" was released, "two" stays: the ring takes what fits in the
    // space "one" freed, and the receive order goes on from "two".
    assert_eq!(r.try_recv_bytes().unwrap(), b"two");
    assert_eq!(r.try_recv_bytes().unwrap(), b"three");
    w.send_bytes(b"four").unwrap();
    assert_eq!(r.try_recv_bytes().unwrap(), b"four");
}
