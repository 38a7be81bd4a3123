//! Loom models of the ring (`RUSTFLAGS="--cfg loom" cargo test --release
//! --lib loom`): the protocol's races, lost wake-ups, and the recovery's
//! races with live winners.

use super::*;

use loom::sync::Arc;

fn put(r: &MpmcRef, v: u8) {
    let s = r.reserve_until(None).unwrap();
    // SAFETY: the slot is ours.
    unsafe { r.payload_ptr(&s).write(v) };
    r.commit(s, 1).unwrap();
}

fn take(r: &MpmcRef) -> u8 {
    let s = r.claim_until(None, |_| Ok(())).unwrap();
    assert_eq!(s.len(), 1, "a claimed slot must show its committed length");
    // SAFETY: claimed by us.
    let v = unsafe { r.payload_ptr(&s).read() };
    r.release(s).unwrap();
    v
}

/// The ring's last peer entry, owned by a thread of ours declared dead:
/// a forged dead holder, whose positions the model then sets.
fn dead_entry(r: &MpmcRef) -> &Peer {
    let ghost = (std::process::id() as u64) << 32 | 0xffff_fff0;
    peers::declare_dead(ghost);
    let e = &r.ring().peers[PEERS - 1].0;
    e.owner.store(ghost, SeqCst);
    e
}

/// A model builder with a preemption bound (2 unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise), so four threads finish in
/// seconds.
fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(2);
    }
    b
}

/// Two producers and two consumers, one message each, through a ring of
/// capacity 2: every message arrives exactly once with its length, and
/// nobody sleeps through a wake-up (a lost wake-up shows as a loom
/// deadlock).
#[test]
fn loom_mpmc_2p2c() {
    builder().check(|| {
        let r = Arc::new(MpmcRing::new(2, 1, 0).unwrap());
        let ps: Vec<_> = (1..=2u8)
            .map(|v| {
                let r = r.clone();
                loom::thread::spawn(move || put(&r, v))
            })
            .collect();
        let r2 = r.clone();
        let c = loom::thread::spawn(move || take(&r2));
        let a = take(&r);
        let b = c.join().unwrap();
        for p in ps {
            p.join().unwrap();
        }
        assert_eq!(a + b, 3);
        assert_ne!(a, b);
    });
}

/// `loom_mpmc_2p2c` through the copying send and receive (their
/// one-shot fast paths, falling back to the general ones under
/// contention).
#[test]
fn loom_mpmc_copy_2p2c() {
    builder().check(|| {
        let r = Arc::new(MpmcRing::new(2, 1, 0).unwrap());
        let ps: Vec<_> = (1..=2u8)
            .map(|v| {
                let r = r.clone();
                loom::thread::spawn(move || r.send_copy_until(&[v], None).unwrap())
            })
            .collect();
        let get = |r: &MpmcRef| {
            let mut b = [0u8; 1];
            assert_eq!(r.recv_copy_until(&mut b, None).unwrap(), 1);
            b[0]
        };
        let r2 = r.clone();
        let c = loom::thread::spawn(move || get(&r2));
        let a = get(&r);
        let b = c.join().unwrap();
        for p in ps {
            p.join().unwrap();
        }
        assert_eq!(a + b, 3);
        assert_ne!(a, b);
    });
}

/// One producer sends two messages through a ring of capacity 1 to a
/// consumer: the producer waits for room (the `not_full` side), the
/// consumer for data, and the order holds.
#[test]
fn loom_mpmc_capacity_1_both_sides_wait() {
    builder().check(|| {
        let r = Arc::new(MpmcRing::new(1, 1, 0).unwrap());
        let r1 = r.clone();
        let p = loom::thread::spawn(move || {
            put(&r1, 1);
            put(&r1, 2);
        });
        assert_eq!(take(&r), 1);
        assert_eq!(take(&r), 2);
        p.join().unwrap();
    });
}

/// Drains until `Closed`, counting the messages.
fn drain(r: &MpmcRef) -> u32 {
    let mut got = 0;
    loop {
        match r.claim_until(None, |_| Ok(())) {
            Ok(s) => {
                r.release(s).unwrap();
                got += 1;
            }
            Err(Error::Closed) => return got,
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// Review finding 1b: the consumer finds the slot empty, the producer
/// commits and closes, the consumer then sees the close: the message
/// must still be drained before `Closed`.
#[test]
fn loom_mpmc_commit_then_close_is_drained() {
    builder().check(|| {
        let r = Arc::new(MpmcRing::new(2, 1, 0).unwrap());
        let r1 = r.clone();
        let p = loom::thread::spawn(move || {
            put(&r1, 5);
            r1.close();
        });
        let got = drain(&r);
        p.join().unwrap();
        assert_eq!(got, 1, "a message committed before close was not drained");
    });
}

/// Review finding 1c: a send racing a close either fails with
/// `Closed` or is received; never `Ok` and lost.
#[test]
fn loom_mpmc_send_racing_close_is_not_lost() {
    builder().check(|| {
        let r = Arc::new(MpmcRing::new(2, 1, 0).unwrap());
        let r1 = r.clone();
        let p = loom::thread::spawn(move || match r1.try_reserve() {
            Ok(s) => {
                r1.commit(s, 1).unwrap();
                1
            }
            Err(Error::Closed) => 0,
            Err(e) => panic!("{e:?}"),
        });
        let r2 = r.clone();
        let c = loom::thread::spawn(move || r2.close());
        let got = drain(&r);
        let sent = p.join().unwrap();
        c.join().unwrap();
        assert_eq!(
            got, sent,
            "send returned Ok but the message was never received"
        );
    });
}

/// Review finding 1a, with sleepers: a reservation open across the
/// close keeps two consumers waiting; when it is committed (or
/// cancelled), the message arrives once and both consumers wake to
/// `Closed` (a consumer left asleep shows as a loom deadlock).
#[test]
fn loom_mpmc_close_waits_for_open_reservation() {
    for commit in [true, false] {
        builder().check(move || {
            let r = Arc::new(MpmcRing::new(2, 1, 0).unwrap());
            let r1 = r.clone();
            let c = loom::thread::spawn(move || drain(&r1));
            let r2 = r.clone();
            let p = loom::thread::spawn(move || {
                let s = r2.try_reserve().unwrap();
                r2.close();
                if commit {
                    r2.commit(s, 1).unwrap();
                } else {
                    r2.cancel(s).unwrap();
                }
            });
            let got = drain(&r) + c.join().unwrap();
            p.join().unwrap();
            assert_eq!(got, commit as u32);
        });
    }
}

/// The race the peer table exists for: a producer that died after
/// recording position 0 and lost the CAS for it (a dead loser, forged
/// here as an entry), a live producer that wins position 0 and commits
/// slowly, and a recoverer running meanwhile. The live producer's slot
/// must never be poisoned. Catches: dropping the live-claimant check in
/// `poison`, recording the position after the claiming CAS instead of
/// before it, and clearing the entry before the commit's stamp store.
#[test]
fn loom_mpmc_dead_loser_never_poisons_a_live_winner() {
    builder().check(|| {
        let r = Arc::new(MpmcRing::new(2, 1, 0).unwrap().tracked());
        let e = dead_entry(&r);
        e.producing.store(0, SeqCst);
        let r1 = r.clone();
        let p = loom::thread::spawn(move || put(&r1, 7));
        // Lets the producer run first too: otherwise the recoverer
        // always scans before it, and the race is never explored.
        loom::thread::yield_now();
        assert_eq!(r.recover(), 0);
        assert_eq!(take(&r), 7);
        p.join().unwrap();
        assert_eq!(r.abandoned().sends, 0, "a live reservation was poisoned");
    });
}

/// `loom_mpmc_capacity_1_both_sides_wait` through the copying send
/// and receive: both sides wait, and the order holds.
#[test]
fn loom_mpmc_copy_capacity_1_both_sides_wait() {
    builder().check(|| {
        let r = Arc::new(MpmcRing::new(1, 1, 0).unwrap());
        let r1 = r.clone();
        let p = loom::thread::spawn(move || {
            r1.send_copy_until(&[1], None).unwrap();
            r1.send_copy_until(&[2], None).unwrap();
        });
        let mut b = [0u8; 1];
        r.recv_copy_until(&mut b, None).unwrap();
        assert_eq!(b[0], 1);
        r.recv_copy_until(&mut b, None).unwrap();
        assert_eq!(b[0], 2);
        p.join().unwrap();
    });
}

/// `loom_mpmc_dead_loser_never_poisons_a_live_winner` with the
/// winner on the copying send's fast path, which records its position
/// before its claiming CAS too.
#[test]
fn loom_mpmc_copy_send_winner_is_never_poisoned() {
    builder().check(|| {
        let r = Arc::new(MpmcRing::new(2, 1, 0).unwrap().tracked());
        let e = dead_entry(&r);
        e.producing.store(0, SeqCst);
        let r1 = r.clone();
        let p = loom::thread::spawn(move || r1.send_copy_until(&[7], None).unwrap());
        // Let the sender run first sometimes: otherwise the recoverer
        // always scans before the claim and the race goes unexplored.
        loom::thread::yield_now();
        assert_eq!(r.recover(), 0);
        let mut b = [0u8; 1];
        assert_eq!(r.recv_copy_until(&mut b, None).unwrap(), 1);
        assert_eq!(b[0], 7);
        p.join().unwrap();
        assert_eq!(r.abandoned().sends, 0, "a live reservation was poisoned");
    });
}

/// The same race on the consuming side: a consumer that died after
/// recording position 0 and lost the CAS on `head` (forged as an
/// entry), a live consumer that wins it and holds the slot borrowed,
/// and a recoverer running meanwhile: the live consumer's slot must
/// never be freed under it. Catches: recording the position after the
/// claiming CAS instead of before it.
#[test]
fn loom_mpmc_dead_losing_consumer_never_frees_a_live_winner() {
    builder().check(|| {
        let r = Arc::new(MpmcRing::new(2, 1, 0).unwrap().tracked());
        put(&r, 7);
        let e = dead_entry(&r);
        e.consuming.store(0, SeqCst);
        let r1 = r.clone();
        let rec = loom::thread::spawn(move || r1.recover());
        assert_eq!(take(&r), 7);
        assert_eq!(rec.join().unwrap(), 0);
        assert_eq!(r.abandoned().recvs, 0, "a live borrow was freed");
    });
}

/// A consumer dies holding a borrowed slot of a capacity-1 ring; a
/// producer then finds the ring stopped and recovers it while the
/// remaining consumer recovers too: the slot is freed exactly once
/// (the recovery is a CAS on the stamp), the new message arrives, and
/// nobody sleeps for ever. Catches: a plain store instead of the CAS
/// in `free_borrowed` (counted twice), and a waiter that does not
/// recover before it sleeps (loom deadlock).
#[test]
fn loom_mpmc_dead_consumer_slot_is_freed_once() {
    builder().check(|| {
        let r = Arc::new(MpmcRing::new(1, 1, 0).unwrap().tracked());
        put(&r, 1);
        let r0 = r.clone();
        loom::thread::spawn(move || {
            let _held = r0.try_claim(|_| Ok(())).unwrap();
            peers::pretend_dead();
        })
        .join()
        .unwrap();
        let r1 = r.clone();
        let p = loom::thread::spawn(move || put(&r1, 2));
        r.recover();
        assert_eq!(take(&r), 2);
        p.join().unwrap();
        assert_eq!(r.abandoned().recvs, 1);
    });
}

/// A cancelled reservation is skipped: the consumer gets the message
/// behind it, and a joinable ring counts only the committed one.
#[test]
fn loom_mpmc_cancel_and_task_done() {
    builder().check(|| {
        let r = Arc::new(MpmcRing::new(2, 1, FLAG_JOINABLE).unwrap());
        let r1 = r.clone();
        let p = loom::thread::spawn(move || {
            let s = r1.reserve_until(None).unwrap();
            r1.cancel(s).unwrap();
            put(&r1, 7);
        });
        let r2 = r.clone();
        let c = loom::thread::spawn(move || {
            let v = take(&r2);
            r2.task_done().unwrap();
            v
        });
        r.join_until(None).ok();
        p.join().unwrap();
        assert_eq!(c.join().unwrap(), 7);
        r.join_until(None).unwrap();
        assert_eq!(r.unfinished(), 0);
    });
}

/// A producer that died after counting its send and before committing it
/// (forged: a dead entry naming position 0, its `sent` ahead of its
/// `sent_idle`, `tail` past it), a live task beside it, and two racing
/// recoverers: the slot is poisoned once and its task settled once, so
/// the count holds exactly the live task and `join` returns once that is
/// done. Catches: a poisoning that leaves the count alone, or two
/// recoverers that both settle it (the live task would vanish from the
/// count).
#[test]
fn loom_mpmc_dead_counted_send_is_settled_once() {
    builder().check(|| {
        let r = Arc::new(MpmcRing::new(2, 1, FLAG_JOINABLE).unwrap().tracked());
        let e = dead_entry(&r);
        e.producing.store(0, SeqCst);
        e.sent.store(1, SeqCst);
        r.ring().stats.0.peers_used.store(PEERS as u64, SeqCst);
        r.ring().tail.0.store(1, SeqCst);
        // A live task beside it: a second settlement would take it.
        put(&r, 7);
        let r1 = r.clone();
        let rec = loom::thread::spawn(move || r1.recover());
        let mine = r.recover();
        assert_eq!(mine + rec.join().unwrap(), 1, "recovered once");
        assert_eq!(r.abandoned().sends, 1);
        assert_eq!(
            r.unfinished(),
            1,
            "settled once: only the live task is left"
        );
        assert_eq!(take(&r), 7);
        r.task_done().unwrap();
        r.join_until(None).unwrap();
    });
}
