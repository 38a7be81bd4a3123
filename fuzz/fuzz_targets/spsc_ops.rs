//! A random sequence of producer and consumer operations on one heap ring,
//! checked against a model queue: every record comes out once, whole, in
//! order; a full ring refuses; an uncommitted reservation sends nothing;
//! ends taken over mid-stream lose nothing. The plain fast paths
//! (`try_push_plain`, `try_pop_plain`, `try_pop_plain_with`) and batches
//! (`begin_batch` / `end_batch` on both ends) are checked against the same
//! model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmprim::raw::spsc::{SpscRing, FIRST, MORE};
use std::collections::VecDeque;

fuzz_target!(|data: &[u8]| {
    let Some((&first, ops)) = data.split_first() else {
        return;
    };
    let cap = 256usize << (first % 5);
    let heap = SpscRing::new(cap).unwrap();
    // SAFETY: one producer and one consumer, this thread.
    let (mut p, mut c) = unsafe {
        (
            heap.ring().producer().unwrap(),
            heap.ring().consumer().unwrap(),
        )
    };
    let mut model: VecDeque<(Vec<u8>, u32)> = VecDeque::new();
    let mut buf = vec![0u8; cap];
    let mut it = ops.iter().copied();
    let mut n = 0u32;
    while let Some(op) = it.next() {
        n = n.wrapping_add(1);
        let arg = it.next().unwrap_or(0) as usize;
        match op % 10 {
            0 | 1 => {
                let len = (arg * arg * (1 + op as usize / 6)) % (cap + 16);
                let msg: Vec<u8> = (0..len).map(|i| (i as u32 ^ n) as u8).collect();
                let flags = [0, MORE, FIRST | MORE][arg % 3];
                match p.try_push(&msg, flags) {
                    Ok(true) => model.push_back((msg, flags)),
                    // Refused: full, or padding the consumer has yet to skip.
                    Ok(false) => {}
                    Err(shmprim::Error::MessageTooLarge { size, max }) => {
                        assert_eq!((size, max), (len, cap - 8));
                    }
                    Err(e) => panic!("push: {e:?}"),
                }
            }
            2 => match c.try_pop(&mut buf[..arg.min(cap)]) {
                Ok(Some((len, flags))) => {
                    let (m, f) = model.pop_front().expect("a record out of nothing");
                    assert_eq!((&buf[..len], flags), (&m[..], f));
                }
                Ok(None) => assert!(model.is_empty(), "a record was lost"),
                Err(shmprim::Error::BufferTooShort { needed }) => {
                    assert_eq!(
                        needed,
                        model.front().expect("too short for nothing").0.len()
                    );
                }
                Err(e) => panic!("pop: {e:?}"),
            },
            3 => {
                // Reserve, write, and drop without commit.
                if let Ok(Some(g)) = p.try_reserve(arg % (cap - 8), 0) {
                    let fill = vec![0xEE; g.len()];
                    p.write(&g, 0, &fill).unwrap();
                }
            }
            4 => match c.try_peek() {
                Ok(Some(r)) => {
                    let (m, _) = model.pop_front().expect("a record out of nothing");
                    assert_eq!(r.len(), m.len());
                    let at = arg.min(m.len());
                    c.read(&r, at, &mut buf[..m.len() - at]).unwrap();
                    assert_eq!(&buf[..m.len() - at], &m[at..]);
                    c.release(r).unwrap();
                }
                Ok(None) => assert!(model.is_empty(), "a record was lost"),
                Err(e) => panic!("peek: {e:?}"),
            },
            5 => {
                // Both ends taken over: the new producer starts from the
                // `tail` hint and walks published records.
                // SAFETY: the previous handles are replaced; one of each.
                unsafe {
                    p = heap.ring().producer().unwrap();
                    c = heap.ring().consumer().unwrap();
                }
            }
            6 => {
                // Drain everything.
                while let Some((len, _)) = c.try_pop(&mut buf).unwrap() {
                    let (m, _) = model.pop_front().expect("a record out of nothing");
                    assert_eq!(&buf[..len], &m[..]);
                }
                assert!(model.is_empty());
            }
            7 => {
                let len = (arg * arg) % (cap + 16);
                let msg: Vec<u8> = (0..len).map(|i| (i as u32 ^ n) as u8).collect();
                if p.try_push_plain(&msg) {
                    assert!(len + 8 <= cap / 2, "a plain push over half the ring");
                    model.push_back((msg, 0));
                }
            }
            8 => {
                let room = arg.min(cap);
                match c.try_pop_plain(&mut buf[..room]) {
                    Ok(Some(len)) => {
                        let (m, f) = model.pop_front().expect("a record out of nothing");
                        assert_eq!((&buf[..len], f), (&m[..], 0));
                    }
                    Ok(None) => {
                        if let Some((m, 0)) = model.front() {
                            assert!(m.len() > room, "a plain record that fits was refused");
                        }
                    }
                    Err(e) => panic!("pop plain: {e:?}"),
                }
            }
            _ => {
                // A batch each way: `arg % 8` plain pushes published by one
                // store, then plain in-place pops released by one store;
                // odd `op`s take the many-at-once paths (`push_plain_many`,
                // `pop_plain_many`), even ones a message per call.
                let msgs: Vec<Vec<u8>> = (0..arg % 8)
                    .map(|k| {
                        let len = (k * 29 + arg) % (cap / 4);
                        (0..len).map(|i| (i as u32 ^ n ^ k as u32) as u8).collect()
                    })
                    .collect();
                let pops = arg / 8 % 8;
                p.begin_batch();
                let pushed = if op & 1 == 1 {
                    let mut it = msgs.iter();
                    let mut next = it.next();
                    let n = p.push_plain_many(&mut next, &mut it);
                    assert!(
                        n == msgs.len() || next.is_some(),
                        "a message neither pushed nor left"
                    );
                    n
                } else {
                    msgs.iter().take_while(|m| p.try_push_plain(m)).count()
                };
                p.end_batch();
                model.extend(msgs[..pushed].iter().map(|m| (m.clone(), 0)));
                let mut got: Vec<Vec<u8>> = Vec::new();
                c.begin_batch();
                if op & 1 == 1 {
                    // It stops at padding, which the one-at-a-time path
                    // skips: the layer above alternates the two, as here.
                    while got.len() < pops {
                        c.pop_plain_many(pops - got.len(), |b| got.push(b.to_vec()));
                        if got.len() == pops {
                            break;
                        }
                        match c.try_pop_plain_with(|b| got.push(b.to_vec())) {
                            Ok(true) => {}
                            Ok(false) => break,
                            Err(e) => panic!("pop plain with: {e:?}"),
                        }
                    }
                } else {
                    for _ in 0..pops {
                        match c.try_pop_plain_with(|b| got.push(b.to_vec())) {
                            Ok(true) => {}
                            Ok(false) => break,
                            Err(e) => panic!("pop plain with: {e:?}"),
                        }
                    }
                }
                c.end_batch();
                assert!(got.len() <= pops);
                for g in &got {
                    let (m, f) = model.pop_front().expect("a record out of nothing");
                    assert_eq!((&g[..], f), (&m[..], 0));
                }
                if got.len() < pops {
                    assert!(
                        !matches!(model.front(), Some((_, 0))),
                        "a plain record was skipped"
                    );
                }
            }
        }
    }
});
