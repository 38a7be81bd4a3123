//! The batch API of `Connection`: `send_many` / `recv_many` (and their
//! `try_` / `_timeout` forms) deliver every message whole and in order,
//! mixed with single sends, fragmented messages and padding at the wrap.

use shmprim::{Error, Pipe};
use std::time::Duration;

fn message(i: usize) -> Vec<u8> {
    (0..(i * 37) % 300).map(|j| (i * 11 + j) as u8).collect()
}

#[test]
fn many_messages_in_batches_arrive_in_order() {
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
