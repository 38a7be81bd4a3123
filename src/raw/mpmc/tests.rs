//! Unit tests of the ring: the protocol on one thread and several, garbage,
//! and the recovery from dead peers (simulated by `peers::pretend_dead`).

use super::*;

fn send(r: &MpmcRef, bytes: &[u8]) -> Result<()> {
    let s = r.try_reserve()?;
    // SAFETY: the slot is ours; `bytes` fits (tests keep it small).
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), r.payload_ptr(&s), bytes.len()) };
    r.commit(s, bytes.len()).unwrap();
    Ok(())
}

fn recv(r: &MpmcRef) -> Result<Vec<u8>> {
    let s = r.try_claim(|_| Ok(()))?;
    let mut v = vec![0; s.len()];
    // SAFETY: the slot is claimed by us; `len <= slot_size`.
    unsafe { std::ptr::copy_nonoverlapping(r.payload_ptr(&s), v.as_mut_ptr(), s.len()) };
    r.release(s).unwrap();
    Ok(v)
}

#[test]
fn mpmc_fifo_full_empty_each_capacity() {
    for cap in [1usize, 2, 3, 5, 7, 8, 9] {
        let r = MpmcRing::new(cap, 8, 0).unwrap();
        for round in 0..3u8 {
            for i in 0..cap {
                send(&r, &[round, i as u8]).unwrap();
            }
            assert!(matches!(send(&r, b"x"), Err(Error::Full)));
            assert_eq!(r.len(), cap);
            for i in 0..cap {
                assert_eq!(recv(&r).unwrap(), vec![round, i as u8]);
            }
            assert!(matches!(recv(&r), Err(Error::Empty)));
            assert_eq!(r.len(), 0);
        }
    }
}

#[test]
fn mpmc_wraps_positions_at_2_pow_64() {
    for cap in [1usize, 3, 4, 6] {
        let r = MpmcRing::new(cap, 8, 0).unwrap();
        // SAFETY: a fresh ring, used by this thread only.
        unsafe { r.__start_positions_at(u64::MAX - 3 * r.one_lap + 1) };
        let mut model = std::collections::VecDeque::new();
        for n in 0..(8 * cap as u64 + 5) {
            send(&r, &n.to_le_bytes()).unwrap();
            model.push_back(n);
            assert_eq!(r.len(), model.len());
            if model.len() == cap || n % 3 == 0 {
                let got = recv(&r).unwrap();
                assert_eq!(got, model.pop_front().unwrap().to_le_bytes());
            }
        }
        assert!(r.ring().tail.0.load(SeqCst) < 1 << 20, "did not wrap");
    }
}

#[test]
fn mpmc_cancelled_slots_are_skipped() {
    let r = MpmcRing::new(3, 8, 0).unwrap();
    let a = r.try_reserve().unwrap();
    send(&r, b"b").unwrap();
    assert!(matches!(recv(&r), Err(Error::Empty)));
    r.cancel(a).unwrap();
    assert_eq!(recv(&r).unwrap(), b"b");
    assert!(matches!(recv(&r), Err(Error::Empty)));
}

#[test]
fn mpmc_refused_claim_leaves_the_message() {
    let r = MpmcRing::new(2, 8, 0).unwrap();
    send(&r, b"hello").unwrap();
    let e = r.try_claim(|n| Err(Error::BufferTooShort { needed: n }));
    assert!(matches!(e, Err(Error::BufferTooShort { needed: 5 })));
    assert_eq!(recv(&r).unwrap(), b"hello");
}

#[test]
fn mpmc_close_drains_then_closed() {
    let r = MpmcRing::new(2, 8, 0).unwrap();
    send(&r, b"a").unwrap();
    r.close();
    assert!(matches!(send(&r, b"b"), Err(Error::Closed)));
    assert_eq!(recv(&r).unwrap(), b"a");
    assert!(matches!(recv(&r), Err(Error::Closed)));
}

/// Review finding 1a: a message committed before `close` behind a
/// reservation still open is drained (not hidden behind `Closed`), and
/// so is the reservation's, committed after the close; only then is
/// the ring `Closed`, and a joinable ring's count reaches zero.
#[test]
fn mpmc_close_drains_a_message_behind_an_open_reservation() {
    let r = MpmcRing::new(4, 8, FLAG_JOINABLE).unwrap();
    let a = r.try_reserve().unwrap();
    send(&r, b"b").unwrap();
    r.close();
    assert!(r.is_closed());
    assert!(matches!(r.try_reserve(), Err(Error::Closed)));
    // Not Closed while the reservation is open: wait for it.
    assert!(matches!(recv(&r), Err(Error::Empty)));
    // SAFETY: the slot is ours.
    unsafe { r.payload_ptr(&a).write(b'a') };
    r.commit(a, 1).unwrap();
    assert_eq!(recv(&r).unwrap(), b"a");
    r.task_done().unwrap();
    assert_eq!(recv(&r).unwrap(), b"b");
    r.task_done().unwrap();
    assert!(matches!(recv(&r), Err(Error::Closed)));
    r.join_until(Some(Deadline::PASSED)).unwrap();
    // A reservation cancelled after the close: skipped, then Closed.
    let r = MpmcRing::new(2, 8, 0).unwrap();
    let a = r.try_reserve().unwrap();
    r.close();
    assert!(matches!(recv(&r), Err(Error::Empty)));
    r.cancel(a).unwrap();
    assert!(matches!(recv(&r), Err(Error::Closed)));
    assert_eq!(r.len(), 0);
}

/// Review finding 4: producers dropping reservations as fast as a
/// lone consumer skips them (legal use) never make it report
/// `Corrupt` ("positions do not settle"); it may say `Empty`.
#[test]
fn mpmc_dropped_reservations_racing_a_consumer_are_not_corrupt() {
    use std::sync::atomic::{AtomicBool, Ordering as O};
    let r = std::sync::Arc::new(MpmcRing::new(1, 8, 0).unwrap());
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let ps: Vec<_> = (0..4)
        .map(|_| {
            let (r, stop) = (r.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(O::Relaxed) {
                    if let Ok(s) = r.try_reserve() {
                        r.cancel(s).unwrap();
                    }
                }
            })
        })
        .collect();
    let calls = if cfg!(miri) { 20 } else { 200_000 };
    let mut corrupt = 0;
    for _ in 0..calls {
        match r.try_claim(|_| Ok(())) {
            Err(Error::Corrupt(_)) => corrupt += 1,
            Ok(s) => r.release(s).unwrap(),
            Err(_) => {}
        }
    }
    stop.store(true, O::Relaxed);
    for p in ps {
        p.join().unwrap();
    }
    assert_eq!(corrupt, 0, "spurious Corrupt in {calls} calls");
}

/// Review finding 4, deterministic: while a consumer looks at a
/// message (its `check`), another consumer takes it and producers drop
/// three reservations and send one more, round after round. Each round
/// is progress by others: the skip budget starts afresh, no `Corrupt`.
#[test]
fn mpmc_skips_across_other_consumers_progress_are_not_corrupt() {
    let r = MpmcRing::new(4, 8, 0).unwrap();
    let fill = |r: &MpmcRef| {
        for _ in 0..3 {
            let s = r.try_reserve().unwrap();
            r.cancel(s).unwrap();
        }
        send(r, b"m").unwrap();
    };
    fill(&r);
    let mut rounds = 0;
    let res = r.try_claim(|_| {
        rounds += 1;
        if rounds > 1000 {
            return Ok(());
        }
        let other = r.try_claim(|_| Ok(())).unwrap();
        r.release(other).unwrap();
        fill(&r);
        Err(Error::BufferTooShort { needed: 1 })
    });
    assert!(
        res.is_ok(),
        "{res:?} after {rounds} rounds of progress by others"
    );
}

/// Review finding 5: a `head` ahead of `tail` (a stale pair, or
/// garbage) is reported empty, never full.
#[test]
fn mpmc_len_never_reports_full_for_head_past_tail() {
    let r = MpmcRing::new(3, 8, 0).unwrap();
    send(&r, b"a").unwrap();
    send(&r, b"b").unwrap();
    recv(&r).unwrap();
    recv(&r).unwrap();
    assert_eq!(r.len(), 0);
    r.ring().tail.0.store(1, SeqCst);
    assert_eq!(r.len(), 0);
    r.ring().tail.0.store(2, SeqCst);
    assert_eq!(r.len(), 0);
}

/// Review finding 6: a garbage length (longer than the slot) is
/// discarded as `Corrupt` and lowers a joinable ring's count, so
/// `join` returns.
#[test]
fn mpmc_garbage_length_lowers_unfinished() {
    let r = MpmcRing::new(2, 8, FLAG_JOINABLE).unwrap();
    send(&r, b"a").unwrap();
    send(&r, b"b").unwrap();
    r.slot(0).len.store(9, SeqCst);
    assert!(matches!(recv(&r), Err(Error::Corrupt(_))));
    assert_eq!(r.unfinished(), 1);
    assert_eq!(recv(&r).unwrap(), b"b");
    r.task_done().unwrap();
    r.join_until(Some(Deadline::PASSED)).unwrap();
    // Saturating: a count already at zero stays there.
    send(&r, b"c").unwrap();
    r.task_done().unwrap();
    r.slot(0).len.store(9, SeqCst);
    assert!(matches!(recv(&r), Err(Error::Corrupt(_))));
    assert_eq!(r.unfinished(), 0);
}

/// Review finding 2: a slot reference handed to another ring (whose
/// index may lie past that ring's slots, or name a slot someone holds
/// there) is refused before it is used, in release builds too.
#[test]
fn mpmc_slot_of_another_ring_is_refused() {
    let a = MpmcRing::new(8, 8, 0).unwrap();
    let b = MpmcRing::new(3, 8, FLAG_JOINABLE).unwrap();
    let held: Vec<_> = (0..8).map(|_| a.try_reserve().unwrap()).collect();
    let b0 = b.try_reserve().unwrap();
    let mut it = held.into_iter();
    // Index 0 names `b0`'s slot in `b`: committing it there would let
    // consumers in while `b0` is still being written.
    let s0 = it.next().unwrap();
    assert!(matches!(b.commit(s0, 1), Err(Error::InvalidArgument(_))));
    assert_eq!(b.unfinished(), 0);
    assert!(matches!(recv(&b), Err(Error::Empty)));
    // Index 7 is past `b`'s three slots.
    let s7 = it.nth(6).unwrap();
    assert_eq!(s7.pos() & (a.one_lap - 1), 7);
    assert!(matches!(b.release(s7), Err(Error::InvalidArgument(_))));
    for s in (0..2).map(|_| a.try_claim(|_| Ok(()))) {
        assert!(matches!(s, Err(Error::Empty)));
    }
    b.cancel(b0).unwrap();
    assert!(matches!(recv(&b), Err(Error::Empty)));
    send(&b, b"ok").unwrap();
    assert_eq!(recv(&b).unwrap(), b"ok");
}

/// Runs `f` on a thread that then "dies": it is declared dead to the
/// liveness check, and whatever slot `f` leaked stays held.
fn dies_holding<F: FnOnce() + Send>(f: F) {
    std::thread::scope(|sc| {
        sc.spawn(|| {
            f();
            peers::pretend_dead();
        });
    });
}

#[test]
fn mpmc_dead_producer_reservation_is_poisoned_and_skipped() {
    let r = MpmcRing::new(3, 8, FLAG_JOINABLE).unwrap();
    dies_holding(|| {
        let s = r.try_reserve().unwrap();
        // SAFETY: reserved by us; half a message, never committed.
        unsafe { r.payload_ptr(&s).write_bytes(0xee, 4) };
        // Leaked: `SlotRef` has no `Drop`, the slot stays held.
        let _ = s;
    });
    send(&r, b"behind").unwrap();
    assert!(matches!(recv(&r), Err(Error::Empty)), "stopped at the slot");
    assert_eq!(r.stalled(false), Some(0));
    assert_eq!(r.recover(), 1);
    assert_eq!(r.recover(), 0, "recovered once");
    assert_eq!(r.abandoned(), Abandoned { sends: 1, recvs: 0 });
    assert_eq!(recv(&r).unwrap(), b"behind");
    // The poisoned slot never counted as a task.
    assert_eq!(r.unfinished(), 1);
    r.task_done().unwrap();
    // The slot is free again, lap after lap.
    for i in 0..10u8 {
        send(&r, &[i]).unwrap();
        assert_eq!(recv(&r).unwrap(), [i]);
        r.task_done().unwrap();
    }
    r.join_until(Some(Deadline::PASSED)).unwrap();
}

/// A producer killed after its send counted as a task and before the
/// commit: the poisoning settles the task, so `join` returns.
#[test]
fn mpmc_dead_producer_counted_task_is_settled() {
    let r = MpmcRing::new(3, 8, FLAG_JOINABLE).unwrap();
    dies_holding(|| {
        let s = r.try_reserve().unwrap();
        // What `commit` does before its stamp store.
        r.count_task(s.seat);
        let _ = s;
    });
    assert_eq!(r.unfinished(), 1, "counted, never committed");
    send(&r, b"behind").unwrap();
    assert_eq!(r.unfinished(), 2);
    assert_eq!(r.recover(), 1);
    assert_eq!(r.recover(), 0, "recovered (and settled) once");
    assert_eq!(r.unfinished(), 1, "the poisoned task counts as done");
    assert_eq!(recv(&r).unwrap(), b"behind");
    r.task_done().unwrap();
    r.join_until(Some(Deadline::PASSED)).unwrap();
    assert!(r.task_done().is_err(), "settled once, not twice");
}

#[test]
fn mpmc_dead_consumer_borrow_is_freed_and_dropped() {
    let r = MpmcRing::new(2, 8, FLAG_JOINABLE).unwrap();
    send(&r, b"a").unwrap();
    send(&r, b"b").unwrap();
    dies_holding(|| {
        let _held = r.try_claim(|_| Ok(())).unwrap();
    });
    assert_eq!(recv(&r).unwrap(), b"b");
    r.task_done().unwrap();
    assert!(
        matches!(send(&r, b"c"), Err(Error::Full)),
        "stopped a lap later"
    );
    assert!(r.stalled(true).is_some());
    assert_eq!(r.recover(), 1);
    assert_eq!(r.abandoned(), Abandoned { sends: 0, recvs: 1 });
    // Dropped, not redelivered; it counts as done.
    send(&r, b"c").unwrap();
    send(&r, b"d").unwrap();
    assert_eq!(recv(&r).unwrap(), b"c");
    assert_eq!(recv(&r).unwrap(), b"d");
    assert_eq!(r.unfinished(), 2);
    r.task_done().unwrap();
    r.task_done().unwrap();
    r.join_until(Some(Deadline::PASSED)).unwrap();
}

#[test]
fn mpmc_live_holders_are_never_recovered() {
    let r = MpmcRing::new(2, 8, 0).unwrap();
    let s = r.try_reserve().unwrap();
    send(&r, b"x").unwrap();
    assert_eq!(r.recover(), 0);
    r.commit(s, 0).unwrap();
    let c = r.try_claim(|_| Ok(())).unwrap();
    assert_eq!(r.recover(), 0);
    r.release(c).unwrap();
    assert_eq!(recv(&r).unwrap(), b"x");
    assert_eq!(r.abandoned(), Abandoned::default());
}

/// A thread holding two reservations at once is untracked for the
/// second: while it holds it, nothing is recovered (it cannot be told
/// from a dead holder), and once it lets go recovery works again.
#[test]
fn mpmc_untracked_holder_blocks_recovery_until_it_lets_go() {
    let r = MpmcRing::new(4, 8, 0).unwrap();
    dies_holding(|| {
        let _held = r.try_reserve().unwrap();
    });
    let a = r.try_reserve().unwrap();
    let b = r.try_reserve().unwrap();
    assert_eq!(b.seat, Seat::NONE);
    assert_eq!(r.recover(), 0, "an untracked holder is alive");
    r.commit(b, 0).unwrap();
    assert_eq!(r.recover(), 1);
    r.commit(a, 0).unwrap();
    assert_eq!(r.abandoned().sends, 1);
}

/// A waiting consumer recovers a dead reservation on its own (after
/// the grace period), and `Closed` comes once it is skipped.
#[test]
fn mpmc_dead_reservation_does_not_withhold_closed() {
    let r = MpmcRing::new(2, 8, 0).unwrap();
    dies_holding(|| {
        let _held = r.try_reserve().unwrap();
    });
    send(&r, b"z").unwrap();
    r.close();
    let got = r.claim_until(Some(Deadline::after(Duration::from_secs(10))), |_| Ok(()));
    let s = got.unwrap();
    assert_eq!(s.len(), 1);
    r.release(s).unwrap();
    let end = r.claim_until(Some(Deadline::after(Duration::from_secs(10))), |_| Ok(()));
    assert!(matches!(end, Err(Error::Closed)), "{end:?}");
    assert_eq!(r.abandoned().sends, 1);
}

/// Hostile peer entries (positions, owners, the untracked count) give
/// no panic, no UB and no recovery of a live slot.
#[test]
fn mpmc_garbage_peer_table_is_harmless() {
    let r = MpmcRing::new(3, 8, 0).unwrap();
    let s = r.try_reserve().unwrap();
    for (i, v) in [u64::MAX - 1, 0, 1, 5, 1 << 40].into_iter().enumerate() {
        let p = &r.ring().peers[i + 1].0;
        p.owner.store(0xffff_ffff_0000_0001 + i as u64, SeqCst);
        p.producing.store(v, SeqCst);
        p.consuming.store(v, SeqCst);
    }
    let _ = r.recover();
    r.commit(s, 0).unwrap();
    assert_eq!(recv(&r).unwrap(), b"");
    r.ring().stats.0.untracked.store(u64::MAX, SeqCst);
    send(&r, b"ok").unwrap();
    assert_eq!(recv(&r).unwrap(), b"ok");
}

#[test]
fn mpmc_task_done_counts() {
    let r = MpmcRing::new(2, 8, FLAG_JOINABLE).unwrap();
    r.join_until(None).unwrap();
    send(&r, b"a").unwrap();
    assert_eq!(r.unfinished(), 1);
    assert!(matches!(
        r.join_until(Some(Deadline::PASSED)),
        Err(Error::Timeout)
    ));
    recv(&r).unwrap();
    r.task_done().unwrap();
    assert!(matches!(r.task_done(), Err(Error::InvalidArgument(_))));
    r.join_until(None).unwrap();
}

#[test]
fn mpmc_garbage_is_corrupt() {
    let r = MpmcRing::new(3, 8, 0).unwrap();
    send(&r, b"a").unwrap();
    // A stamp from nowhere, with the positions unchanged.
    r.slot(0).stamp.store(12345, SeqCst);
    assert!(matches!(recv(&r), Err(Error::Corrupt(_))));
    r.slot(0).stamp.store(1, SeqCst);
    r.slot(0).len.store(9, SeqCst);
    assert!(matches!(recv(&r), Err(Error::Corrupt(_))));
    // An index outside the ring.
    r.ring().head.0.store(3, SeqCst);
    assert!(matches!(recv(&r), Err(Error::Corrupt(_))));
    r.ring().tail.0.store(7, SeqCst);
    assert!(matches!(send(&r, b"x"), Err(Error::Corrupt(_))));
    // Geometry checked on attach.
    r.ring().geo.0.stride.store(7, SeqCst);
    // SAFETY: the heap ring is alive for the call.
    let e = unsafe { MpmcRing::attach(r.base.as_ptr(), r.layout.size()) };
    assert!(matches!(e, Err(Error::Corrupt(_))));
}

#[test]
fn mpmc_threads_exactly_once() {
    let r = std::sync::Arc::new(MpmcRing::new(5, 8, 0).unwrap());
    let per = if cfg!(miri) { 50 } else { 20_000u64 };
    let producers: Vec<_> = (0..2u64)
        .map(|id| {
            let r = r.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    let s = r.reserve_until(None).unwrap();
                    let v = (id << 32 | i).to_le_bytes();
                    // SAFETY: slot ours; 8 bytes fit.
                    unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), r.payload_ptr(&s), 8) };
                    r.commit(s, 8).unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let r = r.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut last = [None::<u64>; 2];
                loop {
                    let s = match r.claim_until(None, |_| Ok(())) {
                        Ok(s) => s,
                        Err(Error::Closed) => break,
                        Err(e) => panic!("{e}"),
                    };
                    let mut v = [0u8; 8];
                    // SAFETY: claimed by us.
                    unsafe { std::ptr::copy_nonoverlapping(r.payload_ptr(&s), v.as_mut_ptr(), 8) };
                    r.release(s).unwrap();
                    let v = u64::from_le_bytes(v);
                    let (id, i) = ((v >> 32) as usize, v & 0xffff_ffff);
                    assert!(last[id].map_or(true, |l| l < i));
                    last[id] = Some(i);
                    got.push(v);
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    r.close();
    let mut all: Vec<u64> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort();
    assert_eq!(all.len() as u64, 2 * per);
    all.dedup();
    assert_eq!(all.len() as u64, 2 * per);
}

/// A process that reuses a dead process's pid (and thread id) must not
/// take the dead entry as its own: it would clear the position the
/// entry names, and the dead reservation would be recovered never.
#[test]
fn mpmc_pid_reuse_keeps_the_dead_entry() {
    let r = MpmcRing::new(2, 8, 0).unwrap();
    let other = MpmcRing::new(2, 8, 0).unwrap();
    dies_holding(|| {
        let _held = r.try_reserve().unwrap();
    });
    let named = |r: &MpmcRef| (0..PEERS).find(|&i| r.peer(i).producing.load(SeqCst) == 0);
    let dead = named(&r).unwrap();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            // Our owner word, learnt from an entry of another ring.
            send(&other, b"w").unwrap();
            let j = (0..PEERS).find(|&j| other.peer(j).owner.load(SeqCst) != 0);
            let me = other.peer(j.unwrap()).owner.load(SeqCst);
            // The dead entry as a process before us with our pid and
            // thread id left it: same owner word, another start time.
            r.peer(dead).owner.store(me, SeqCst);
            r.peer(dead).start.store(12345, SeqCst);
            send(&r, b"x").unwrap();
        });
    });
    assert_eq!(named(&r), Some(dead), "the dead reservation is still named");
    if cfg!(all(
        not(miri),
        any(target_os = "linux", target_os = "android")
    )) {
        // Start times come from /proc: without it (and under Miri)
        // everyone looks alive.
        assert_eq!(r.recover(), 1);
        assert_eq!(recv(&r).unwrap(), b"x");
    }
}

/// Entries of threads that exited are taken by new threads: otherwise
/// `PEERS` short-lived threads would leave every later holder
/// untracked, and recovery off.
#[test]
#[cfg_attr(
    any(miri, not(any(target_os = "linux", target_os = "android"))),
    ignore = "needs /proc/self/task"
)]
fn mpmc_exited_threads_entries_are_reused() {
    let r = MpmcRing::new(2, 8, 0).unwrap();
    for _ in 0..PEERS + 1 {
        std::thread::scope(|sc| {
            sc.spawn(|| {
                let s = r.try_reserve().unwrap();
                assert_ne!(s.seat, Seat::NONE, "untracked: the table is full");
                r.commit(s, 0).unwrap();
                recv(&r).unwrap();
            });
        });
    }
}

/// An entry written from another pid namespace is never judged dead:
/// its pid means nothing here.
#[test]
fn mpmc_entry_of_another_pid_namespace_is_never_recovered() {
    let r = MpmcRing::new(2, 8, 0).unwrap();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let _held = r.try_reserve().unwrap();
        });
    });
    let i = (0..PEERS)
        .find(|&i| r.peer(i).producing.load(SeqCst) == 0)
        .unwrap();
    // A pid no process has, in another namespace.
    r.peer(i).owner.store((i32::MAX as u64) << 32 | 1, SeqCst);
    r.peer(i).pidns.store(peers::my_identity().1 ^ 1, SeqCst);
    assert_eq!(r.recover(), 0);
    assert_eq!(r.slot(0).stamp.load(SeqCst), 0, "still reserved");
}
