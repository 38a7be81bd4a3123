//! Random operation sequences on a `Queue` (one thread) against a model
//! `VecDeque`: sends, receives, zero-copy reservations held across other
//! operations and committed or dropped out of order, borrowed receives,
//! batches (`send_many`, `recv_many`), close. Every answer must match the model exactly, and dead-peer
//! recovery never takes a slot from this live process.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmprim::queue::Reservation;
use shmprim::{Error, Queue};
use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq)]
enum Entry {
    /// A reservation not yet committed or dropped (its id).
    Pending(usize),
    Msg(Vec<u8>),
    Cancelled,
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let cap = data[0] as usize % 9 + 1;
    let slot = data[1] as usize % 33;
    let q = Queue::anonymous(cap, slot).unwrap();
    if data[0] & 0x80 != 0 {
        // SAFETY: a fresh queue, used by this thread only.
        unsafe { q.__start_positions_at(u64::MAX - 3 * 16) };
    }
    let mut model: VecDeque<Entry> = VecDeque::new();
    // Held reservations with their ids and intended contents.
    let mut held: Vec<(usize, Reservation<'_>, Vec<u8>)> = Vec::new();
    let mut next_id = 0;
    let mut closed = false;
    let mut counter = 0u8;
    for op in data[2..].chunks(2) {
        let arg = op.get(1).copied().unwrap_or(0) as usize;
        counter = counter.wrapping_add(1);
        if counter % 16 == 0 {
            // Every holder is this live process (several reservations at
            // once make some untracked): recovery must take nothing.
            assert_eq!(q.recover(), 0);
            assert_eq!(q.abandoned(), Default::default());
        }
        match op[0] % 8 {
            // send_bytes
            0 | 1 => {
                let len = arg % (slot + 2);
                let msg = vec![counter; len];
                let r = q.try_send_bytes(&msg);
                if len > slot {
                    assert!(matches!(r, Err(Error::MessageTooLarge { .. })), "{r:?}");
                } else if closed {
                    assert!(matches!(r, Err(Error::Closed)), "{r:?}");
                } else if model.len() == cap {
                    assert!(matches!(r, Err(Error::Full)), "{r:?}");
                } else {
                    r.unwrap();
                    model.push_back(Entry::Msg(msg));
                }
            }
            // receive (copy, into a buffer, or in place)
            2 | 3 => {
                while model.front() == Some(&Entry::Cancelled) {
                    model.pop_front();
                }
                let mut buf = vec![0u8; arg % (slot + 1)];
                let got = match arg % 3 {
                    0 => q.try_recv_bytes(),
                    1 => q.try_recv_bytes_into(&mut buf).map(|n| buf[..n].to_vec()),
                    _ => q.try_recv_in_place().map(|b| b.to_vec()),
                };
                match model.front() {
                    Some(Entry::Msg(m)) => {
                        if arg % 3 == 1 && m.len() > buf.len() {
                            assert!(
                                matches!(got, Err(Error::BufferTooShort { needed }) if needed == m.len()),
                                "{got:?}"
                            );
                        } else {
                            assert_eq!(&got.unwrap(), m);
                            model.pop_front();
                        }
                    }
                    // Closed only once drained: a reservation still open
                    // (made before the close) may yet commit.
                    None if closed => assert!(matches!(got, Err(Error::Closed)), "{got:?}"),
                    _ => assert!(matches!(got, Err(Error::Empty)), "{got:?}"),
                }
            }
            // reserve and hold
            4 => {
                let len = arg % (slot + 1);
                let r = q.try_reserve(len);
                if closed {
                    assert!(matches!(r, Err(Error::Closed)));
                } else if model.len() == cap {
                    assert!(matches!(r, Err(Error::Full)));
                } else {
                    let mut r = r.unwrap();
                    let msg = vec![counter; len];
                    r.copy_from_slice(&msg);
                    held.push((next_id, r, msg));
                    model.push_back(Entry::Pending(next_id));
                    next_id += 1;
                }
            }
            // commit or drop a held reservation (any of them)
            5 | 6 if !held.is_empty() => {
                let (id, r, msg) = held.remove(arg % held.len());
                let e = model
                    .iter_mut()
                    .find(|e| **e == Entry::Pending(id))
                    .unwrap();
                if op[0] % 8 == 5 {
                    r.commit();
                    *e = Entry::Msg(msg);
                } else {
                    drop(r);
                    *e = Entry::Cancelled;
                }
            }
            7 if arg % 16 == 0 => {
                q.close();
                closed = true;
            }
            // a batch send: up to three messages, sent while they fit
            7 if arg % 2 == 0 => {
                let msgs: Vec<Vec<u8>> = (0..arg % 4)
                    .map(|i| vec![counter ^ i as u8; (arg / 4 + i) % (slot + 2)])
                    .collect();
                let r = q.try_send_many(&msgs);
                let mut sent = 0;
                let mut refused = None;
                for m in &msgs {
                    let why = if m.len() > slot {
                        Some("large")
                    } else if closed {
                        Some("closed")
                    } else if model.len() == cap {
                        Some("full")
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        if sent == 0 {
                            refused = Some(why);
                        }
                        break;
                    }
                    model.push_back(Entry::Msg(m.clone()));
                    sent += 1;
                }
                match refused {
                    None => assert_eq!(r.unwrap(), sent),
                    Some("large") => {
                        assert!(matches!(r, Err(Error::MessageTooLarge { .. })), "{r:?}")
                    }
                    Some("closed") => assert!(matches!(r, Err(Error::Closed)), "{r:?}"),
                    Some(_) => assert!(matches!(r, Err(Error::Full)), "{r:?}"),
                }
            }
            // a batch receive of up to `max` messages
            7 => {
                let max = arg % 5;
                let mut out = Vec::new();
                let r = q.try_recv_many(&mut out, max);
                let mut want = Vec::new();
                while want.len() < max {
                    while model.front() == Some(&Entry::Cancelled) {
                        model.pop_front();
                    }
                    match model.front() {
                        Some(Entry::Msg(m)) => {
                            want.push(m.clone());
                            model.pop_front();
                        }
                        _ => break,
                    }
                }
                if max > 0 && want.is_empty() {
                    if closed && model.is_empty() {
                        assert!(matches!(r, Err(Error::Closed)), "{r:?}");
                    } else {
                        assert!(matches!(r, Err(Error::Empty)), "{r:?}");
                    }
                } else {
                    assert_eq!(r.unwrap(), want.len());
                    assert_eq!(out, want);
                }
            }
            _ => {}
        }
        assert_eq!(q.len(), model.len());
    }
});
