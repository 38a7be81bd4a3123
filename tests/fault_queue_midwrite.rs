//! A producer or consumer of a `JoinableQueue` SIGKILLed at each of the
//! ring's fault points (`mpmc.send.*`, `mpmc.recv.borrowed`): the
//! survivors (a producer in another process, the consumer here) keep
//! working, the abandoned slot is recovered and counted, no message is torn
//! or duplicated, a message the victim never committed is never delivered
//! (one it did commit is delivered once; one it held borrowed is dropped),
//! `join` returns, and `close` still ends in `Closed`. A watchdog turns any
//! hang into a failure.
#![cfg(all(target_os = "linux", feature = "fault-injection"))]

mod harness;
use harness::*;
use shmprim::{Error, JoinableQueue};
use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

const CAPACITY: usize = 4;
const SLOT: usize = 64;
/// Messages the surviving producer sends: several laps of the ring.
const SURVIVOR_MSGS: u32 = 40;
const VICTIM: u32 = 1;
const SURVIVOR: u32 = 2;
const PARENT: u32 = 3;

/// A 64-byte message: sender id, sequence number, then a fill derived from
/// both, so that a torn or half-written message is recognised.
fn message(sender: u32, seq: u32) -> [u8; SLOT] {
    let mut m = [0u8; SLOT];
    m[..4].copy_from_slice(&sender.to_le_bytes());
    m[4..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in m[8..].iter_mut().enumerate() {
        *b = (sender as u8) ^ (seq as u8).wrapping_mul(31) ^ i as u8;
    }
    m
}

/// The (sender, seq) of an intact message; panics on a torn one.
fn check(m: &[u8]) -> (u32, u32) {
    assert_eq!(m.len(), SLOT, "a message of the wrong length");
    let sender = u32::from_le_bytes(m[..4].try_into().unwrap());
    let seq = u32::from_le_bytes(m[4..8].try_into().unwrap());
    assert_eq!(m, message(sender, seq), "torn message");
    (sender, seq)
}

/// The point the hook stops at, set once per child.
static TARGET: OnceLock<String> = OnceLock::new();

/// The fault hook: at the target point, tell the parent (a harness message
/// line, the format `Ctx::send` writes) and sleep until killed.
fn stop_here(point: &'static str) {
    if TARGET.get().is_some_and(|t| t == point) {
        let mut out = std::io::stdout().lock();
        writeln!(out, "@@shmprim-msg@@ at {point}").unwrap();
        out.flush().unwrap();
        drop(out);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

child!(
    fn victim_send(ctx) {
        let q = JoinableQueue::open(&ctx.arg("name"))?;
        TARGET.set(ctx.arg("point")).unwrap();
        shmprim::fault::set_hook(Some(stop_here));
        q.send_bytes(&message(VICTIM, 0))?;
        panic!("the fault point was never reached");
    }
);

child!(
    fn victim_recv(ctx) {
        let q = JoinableQueue::open(&ctx.arg("name"))?;
        TARGET.set(ctx.arg("point")).unwrap();
        shmprim::fault::set_hook(Some(stop_here));
        let b = q.recv_in_place()?;
        panic!("the fault point was never reached ({} bytes)", b.len());
    }
);

child!(
    fn survivor_send(ctx) {
        let q = JoinableQueue::open(&ctx.arg("name"))?;
        for seq in 0..SURVIVOR_MSGS {
            q.send_bytes_timeout(&message(SURVIVOR, seq), Duration::from_secs(20))?;
        }
        ctx.send("sent");
    }
);

/// What the parent expects of the victim's message.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    /// Never committed: never delivered, one abandoned send.
    Poisoned,
    /// Committed before the kill: delivered once.
    Delivered,
    /// Borrowed by the killed consumer: dropped, one abandoned receive.
    Dropped,
}

fn run(point: &str, fate: Fate) {
    let _w = watchdog("fault_queue_midwrite", Duration::from_secs(90));
    let name = unique("qmid");
    let _rm = RemoveOnDrop(name.clone());
    let q = JoinableQueue::create(&name, CAPACITY, SLOT).unwrap();
    let recv_side = fate == Fate::Dropped;
    if recv_side {
        // The message the victim will hold borrowed when it dies.
        q.send_bytes(&message(PARENT, 0)).unwrap();
    }
    let mut victim = spawn(if recv_side {
        "victim_recv"
    } else {
        "victim_send"
    })
    .arg("name", &name)
    .arg("point", point)
    .start();
    victim.expect(&format!("at {point}"));
    victim.kill();
    victim.wait();

    // A producer in another process keeps sending: several laps of the
    // ring, so it passes the victim's slot (a borrowed one stops it until
    // it recovers the slot itself).
    let survivor = spawn("survivor_send").arg("name", &name).start();
    let mut got = Vec::new();
    let want = SURVIVOR_MSGS as usize + (fate == Fate::Delivered) as usize;
    while got.len() < want {
        match q.recv_bytes_timeout(Duration::from_secs(30)) {
            Ok(m) => {
                got.push(check(&m));
                q.task_done().unwrap();
            }
            Err(e) => panic!("{point}: receive failed after {} messages: {e}", got.len()),
        }
    }
    survivor.expect("sent");
    survivor.join();

    // Exactly once, in order per sender; the victim's message per its fate.
    let mine: Vec<u32> = got
        .iter()
        .filter(|m| m.0 == SURVIVOR)
        .map(|m| m.1)
        .collect();
    assert_eq!(mine, (0..SURVIVOR_MSGS).collect::<Vec<_>>(), "{point}");
    let victims = got.iter().filter(|m| m.0 == VICTIM).count();
    assert_eq!(victims, (fate == Fate::Delivered) as usize, "{point}");
    assert!(
        got.iter().all(|m| m.0 != PARENT),
        "{point}: a dropped message was redelivered"
    );
    let ab = q.abandoned();
    assert_eq!(ab.sends, (fate == Fate::Poisoned) as u64, "{point}: {ab:?}");
    assert_eq!(ab.recvs, (fate == Fate::Dropped) as u64, "{point}: {ab:?}");

    // Every task is done (the dropped one by the recovery): join returns.
    q.join_timeout(Duration::from_secs(20)).unwrap();
    // And close still ends in Closed, with nothing left.
    q.close();
    let end = q.recv_bytes_timeout(Duration::from_secs(20));
    assert!(matches!(end, Err(Error::Closed)), "{point}: {end:?}");
    assert_eq!(q.recover(), 0);
}

#[test]
fn producer_killed_after_reserving() {
    run("mpmc.send.reserved", Fate::Poisoned);
}

#[test]
fn producer_killed_with_half_a_payload() {
    run("mpmc.send.payload_partial", Fate::Poisoned);
}

#[test]
fn producer_killed_before_commit() {
    run("mpmc.send.before_commit", Fate::Poisoned);
}

/// Killed after its send counted as a task, before the commit: the
/// poisoned slot must settle the count too, or `join` waits for ever.
#[test]
fn producer_killed_between_count_and_commit() {
    run("mpmc.send.counted", Fate::Poisoned);
}

#[test]
fn producer_killed_between_commit_and_wake() {
    run("mpmc.send.committed_before_wake", Fate::Delivered);
}

#[test]
fn consumer_killed_holding_a_borrowed_slot() {
    run("mpmc.recv.borrowed", Fate::Dropped);
}
