//! `Connection::recv_many_in_place`: the zero-allocation batch receive.
//! Every message arrives whole and in order, read in place (fragmented
//! ones whole, after one copy), across padding at the wrap; the `try_` and
//! `_timeout` forms follow the crate's rule; a panicking callback keeps
//! the message it was handed and releases those before.

use shmprim::{Error, Pipe};
use std::time::Duration;

fn message(i: usize) -> Vec<u8> {
    (0..(i * 37) % 300).map(|j| (i * 11 + j) as u8).collect()
}

#[test]
fn in_place_batches_arrive_whole_and_in_order() {
    const N: usize = 20_000;
    let (mut r, mut w) = Pipe::anonymous_simplex(4096).unwrap();
    let t = std::thread::spawn(move || {
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
    });
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
