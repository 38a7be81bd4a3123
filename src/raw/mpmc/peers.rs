//! The peer table of an MPMC ring: who is reserving or consuming which
//! position right now, so that a slot held by a dead process can be told
//! from one held by a slow live one.
//!
//! This is the ring's `robust_list`/`list_op_pending`: each (process,
//! thread) that uses the ring owns one 64-byte entry (its own line, so the
//! stores below stay in its own cache) holding its pid and kernel thread
//! id, the start time and pid namespace of its process, and the position
//! it is reserving (`producing`) or has
//! claimed (`consuming`), or [`IDLE`]. A producer stores its position
//! *before* the CAS that claims it and clears it (Release) after its
//! commit; a consumer likewise around its claim and release. Those are
//! plain stores to a line nobody else writes: no fence, no RMW.
//!
//! SYNC POINT: the position store is sequenced before the claiming CAS on
//! `tail` (`head`); a recoverer that loads `tail` (`head`) with Acquire and
//! sees it past the position therefore sees the winner's entry naming the
//! position (`tail` and `head` change only by RMWs, which continue the
//! release sequence), or a later store of that entry, which is Release and
//! sequenced after the winner's commit (release): then the stamp CAS of
//! the recoverer fails. So "every entry naming the position is dead"
//! means the winner is dead.
//!
//! An entry is claimed with a CAS on `owner` (0, or an idle entry of a dead
//! owner, becomes ours) and cached per thread. An entry is ours only if its
//! start time and pid namespace are ours too: one left by a dead process
//! whose pid (and thread id) we reuse is a dead entry like any other, and
//! is taken only once idle. An idle entry of a thread of ours that exited
//! (its id no longer under `/proc/self/task`) is taken too; one that still
//! names a position is left alone (a `Reservation` may have been moved to
//! another thread). When the table is
//! full, or a thread holds a second slot at once, the holder is
//! *untracked*: it counts itself in the ring's `untracked` word, and while
//! that is non-zero recovery waits (an untracked holder cannot be told from
//! a dead one). A process killed while untracked leaves the count raised:
//! recovery is then off for that ring, which is the documented fallback
//! (never a wrong recovery).
//!
//! Pids mean something only within a pid namespace: an entry written from
//! another namespace is never judged dead.
//!
//! A process that calls `execve` while another of its threads holds a slot
//! keeps its pid and start time: it still looks alive, and that slot is
//! never recovered (it stays held until the ring is made anew).
//!
//! A held slot copied into a child by `fork` (a `Reservation` alive across
//! the fork) still names the parent: if the parent dies and the child
//! commits it later, the recovery may already have poisoned it. Do not
//! fork while holding a slot.

use super::super::sync::{AtomicU64, Ordering::*};
use super::MpmcRef;
use std::cell::Cell;

/// Entries in the table (fewer under loom, to keep models small).
#[cfg(not(loom))]
pub(crate) const PEERS: usize = 64;
#[cfg(loom)]
pub(crate) const PEERS: usize = 2;

/// "No position": never a valid position, since its index bits are all set
/// and the index of a position is below `one_lap / 2`.
pub(crate) const IDLE: u64 = u64::MAX;

/// One entry: 56 bytes, each in a line of its own.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Peer {
    /// `pid << 32 | tid` of the owner (a thread number where there is no
    /// kernel thread id, and under loom and Miri); 0: free.
    pub(crate) owner: AtomicU64,
    /// The owner process's start time (0: unknown).
    pub(crate) start: AtomicU64,
    /// The owner process's pid namespace (see `sys::proc::pid_namespace`;
    /// 0: unknown).
    pub(crate) pidns: AtomicU64,
    /// The position this owner is reserving or holds reserved, or `IDLE`.
    pub(crate) producing: AtomicU64,
    /// The position this owner is claiming or holds borrowed, or `IDLE`.
    pub(crate) consuming: AtomicU64,
    /// Joinable rings: tasks counted through this entry, ever (by any of
    /// its owners). A send counts itself with one store here, right
    /// before its commit, so the count and the commit are each one store
    /// the recovery can read (see `MpmcRef::count_task`).
    pub(crate) sent: AtomicU64,
    /// `sent` as it was when the owner's last send ended: the two differ
    /// only between a send's count and the end of its commit, so a dead
    /// producer whose reservation is poisoned had counted it exactly when
    /// they differ.
    pub(crate) sent_idle: AtomicU64,
}

impl Peer {
    pub(crate) fn new() -> Peer {
        Peer {
            owner: AtomicU64::new(0),
            start: AtomicU64::new(0),
            pidns: AtomicU64::new(0),
            producing: AtomicU64::new(IDLE),
            consuming: AtomicU64::new(IDLE),
            sent: AtomicU64::new(0),
            sent_idle: AtomicU64::new(0),
        }
    }
}

/// The index of the entry a slot's holder records itself in, or
/// [`Seat::NONE`] for an untracked holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seat(pub(crate) u32);

impl Seat {
    pub(crate) const NONE: Seat = Seat(u32::MAX);
    /// Loom only: a ring whose model does not explore recovery records
    /// nothing (see `MpmcRef::track`).
    #[cfg(loom)]
    pub(crate) const SKIP: Seat = Seat(u32::MAX - 1);

    pub(crate) fn index(self) -> Option<usize> {
        (self.0 < u32::MAX - 1).then_some(self.0 as usize)
    }
}

/// How many slots were recovered from dead peers, since the ring was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Abandoned {
    /// Reservations of producers that died before committing: the slot
    /// was poisoned and skipped; nothing of it was delivered.
    pub sends: u64,
    /// Messages borrowed by consumers that died before releasing them: the
    /// slot was freed and the message dropped (never redelivered).
    pub recvs: u64,
}

/// Slots in the per-thread cache of (ring address, entry index).
const CACHED: usize = 4;

#[derive(Clone, Copy)]
struct Cache {
    /// The fork generation `owner` was computed in.
    gen: u64,
    owner: u64,
    rings: [(usize, u32); CACHED],
    next: usize,
}

/// A thread-local `Cell` (const-initialised: no lazy check on access;
/// loom's own thread locals under loom).
#[cfg(not(loom))]
macro_rules! tls {
    ($name:ident: $t:ty = $e:expr) => {
        std::thread_local! { static $name: $t = const { $e }; }
    };
}
#[cfg(loom)]
macro_rules! tls {
    ($name:ident: $t:ty = $e:expr) => {
        loom::thread_local! { static $name: $t = $e; }
    };
}

const EMPTY: Cache = Cache {
    gen: 0,
    owner: 0,
    rings: [(0, 0); CACHED],
    next: 0,
};

tls!(CACHE: Cell<Cache> = Cell::new(EMPTY));

/// Numbers threads within a process (never 0), where there is no kernel
/// thread id to tell them apart.
#[cfg(any(loom, miri, not(any(target_os = "linux", target_os = "android"))))]
static THREADS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

tls!(THREAD_NO: Cell<u32> = Cell::new(0));
/// A hit: (ring address, entry index, owner word, generation).
type Hit = (usize, usize, u64, u64);
/// Hits kept for the fast path. One was not enough: a thread that uses
/// two or three queues in turn (a pool worker: its task queue and the
/// result queue; the pool's parent: the result queue and each worker's
/// queue) missed on every operation, and the slow lookup, a copy of the
/// whole cache, cost 40 to 90 instructions per send or receive
/// (callgrind, the pool's `map`).
const HOT: usize = 4;
// The last hits, on distinct rings; replaced in turn (`NEXT`).
tls!(LAST: [Cell<Hit>; HOT] = [const { Cell::new((0, 0, 0, 0)) }; HOT]);
tls!(NEXT: Cell<usize> = Cell::new(0));

/// Records a hit on `ring`, in its own place or the next in turn.
fn set_last(hit: Hit) {
    LAST.with(|l| {
        let k = match l.iter().position(|c| c.get().0 == hit.0) {
            Some(k) => k,
            None => NEXT.with(|n| {
                let k = n.get() % HOT;
                n.set(k + 1);
                k
            }),
        };
        l[k].set(hit);
    });
}

/// This thread's kernel id (read once per thread), or its number where
/// there is none.
fn thread_no() -> u32 {
    THREAD_NO.with(|t| {
        if t.get() == 0 {
            #[cfg(not(any(loom, miri, not(any(target_os = "linux", target_os = "android")))))]
            t.set(crate::sys::proc::tid().max(1));
            #[cfg(any(loom, miri, not(any(target_os = "linux", target_os = "android"))))]
            t.set(
                THREADS
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    .max(1),
            );
        }
        t.get()
    })
}

#[cfg(not(any(loom, miri)))]
fn generation() -> u64 {
    crate::sys::fork::generation()
}
#[cfg(any(loom, miri))]
fn generation() -> u64 {
    1
}

/// This thread's owner word and the cached entry for the ring at `ring`,
/// if it still names us.
#[inline]
pub(crate) fn lookup(ring: usize, table: &[super::Line<Peer>; PEERS]) -> (u64, Option<usize>) {
    let hit = LAST.with(|l| l.iter().map(Cell::get).find(|h| h.0 == ring));
    if let Some((_, idx, owner, gen)) = hit {
        if gen == generation() && table[idx % PEERS].0.owner.load(Relaxed) == owner {
            return (owner, Some(idx % PEERS));
        }
    }
    lookup_slow(ring, table)
}

#[cold]
fn lookup_slow(ring: usize, table: &[super::Line<Peer>; PEERS]) -> (u64, Option<usize>) {
    CACHE.with(|c| {
        let mut cache = c.get();
        let gen = generation();
        if cache.gen != gen || cache.owner == 0 {
            // First use, or a forked child: our identity changed.
            cache = Cache {
                gen,
                owner: (std::process::id() as u64) << 32 | thread_no() as u64,
                rings: [(0, 0); CACHED],
                next: 0,
            };
            c.set(cache);
        }
        for &(addr, idx) in &cache.rings {
            if addr == ring
                && (idx as usize) < PEERS
                && table[idx as usize].0.owner.load(Relaxed) == cache.owner
            {
                set_last((ring, idx as usize, cache.owner, cache.gen));
                return (cache.owner, Some(idx as usize));
            }
        }
        (cache.owner, None)
    })
}

/// Remembers that entry `idx` of the ring at `ring` is ours.
pub(crate) fn remember(ring: usize, idx: usize) {
    CACHE.with(|c| {
        let mut cache = c.get();
        let n = cache.next % CACHED;
        cache.rings[n] = (ring, idx as u32);
        cache.next = n + 1;
        c.set(cache);
        set_last((ring, idx, cache.owner, cache.gen));
    });
}

/// This process's (start time, pid namespace), 0 where unknown: read once
/// per process (again in a forked child, whose start time differs).
pub(crate) fn my_identity() -> (u64, u64) {
    #[cfg(not(any(loom, miri)))]
    {
        use crate::sys::proc;
        use std::sync::atomic::{AtomicU64, Ordering};
        // No lock: a fork while another thread held it would hang the
        // child. Racing writers of one process write the same values, and
        // publish them by the Release store of `GEN`.
        static GEN: AtomicU64 = AtomicU64::new(0);
        static START: AtomicU64 = AtomicU64::new(0);
        static NS: AtomicU64 = AtomicU64::new(0);
        let gen = generation();
        if GEN.load(Ordering::Acquire) != gen {
            START.store(
                proc::start_time(proc::pid()).unwrap_or(0),
                Ordering::Relaxed,
            );
            NS.store(proc::pid_namespace(), Ordering::Relaxed);
            GEN.store(gen, Ordering::Release);
        }
        (START.load(Ordering::Relaxed), NS.load(Ordering::Relaxed))
    }
    #[cfg(any(loom, miri))]
    (0, 0)
}

/// Owner words that tests declare dead (loom and Miri cannot kill a
/// thread, and cannot read `/proc`).
#[cfg(test)]
static PRETEND_DEAD: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

/// Declares this thread dead for the liveness check (tests only).
#[cfg(test)]
pub(crate) fn pretend_dead() {
    let me = CACHE.with(|c| c.get().owner);
    let me = if me == 0 {
        (std::process::id() as u64) << 32 | thread_no() as u64
    } else {
        me
    };
    PRETEND_DEAD
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(me);
}

/// Declares the owner word `owner` dead (loom models only).
#[cfg(all(test, loom))]
pub(crate) fn declare_dead(owner: u64) {
    PRETEND_DEAD
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(owner);
}

/// Whether the owner `owner` (its process started at `start`, in the pid
/// namespace `pidns`) may still be running. Errs on "alive": a wrong
/// "dead" could let a live holder's slot be taken from it, a wrong "alive"
/// only delays recovery.
pub(crate) fn alive(owner: u64, start: u64, pidns: u64) -> bool {
    #[cfg(test)]
    if PRETEND_DEAD
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&owner)
    {
        return false;
    }
    let pid = (owner >> 32) as u32;
    if pid == 0 || pid > i32::MAX as u32 {
        // Garbage: no process has it, nobody can be hurt by "dead", but a
        // hostile table must not make us recover live slots either; the
        // stamp CAS and the live-claimant check still guard those.
        return false;
    }
    #[cfg(any(loom, miri))]
    {
        let _ = (start, pidns);
        true
    }
    #[cfg(not(any(loom, miri)))]
    {
        let (my_start, my_ns) = my_identity();
        if pidns != my_ns {
            // Its pids are not ours to judge.
            return true;
        }
        if pid == crate::sys::proc::pid() {
            // Our own process is alive (a thread of ours that exited is
            // not judged dead: its slot may have moved to another thread);
            // a process before us with our pid is not.
            return start == 0 || my_start == 0 || start == my_start;
        }
        crate::sys::proc::is_alive(pid, start)
    }
}

/// Whether the idle entry of `owner` (see [`alive`]) may be taken: its
/// owner is dead, or is a thread of ours that exited. (A new thread given
/// the same id between this check and the claiming CAS would share the
/// entry: that needs the kernel to cycle through every thread id, `pid_max`
/// of them, meanwhile.)
pub(crate) fn reusable(owner: u64, start: u64, pidns: u64) -> bool {
    if !alive(owner, start, pidns) {
        return true;
    }
    #[cfg(not(any(loom, miri, not(any(target_os = "linux", target_os = "android")))))]
    {
        let (my_start, my_ns) = my_identity();
        (owner >> 32) as u32 == crate::sys::proc::pid()
            && (start, pidns) == (my_start, my_ns)
            && !crate::sys::proc::may_be_own_thread(owner as u32)
    }
    #[cfg(any(loom, miri, not(any(target_os = "linux", target_os = "android"))))]
    false
}

impl MpmcRef {
    /// The entry recording this thread's holds for the field `side` picks
    /// (`producing` or `consuming`), claimed on first use; or, if the table
    /// is full or this thread already holds a slot of that side (a second
    /// reservation at once), [`Seat::NONE`] after counting an untracked
    /// holder (see `peers`).
    #[inline]
    pub(super) fn seat(&self, side: fn(&Peer) -> &AtomicU64) -> Seat {
        #[cfg(loom)]
        if !self.track {
            return Seat::SKIP;
        }
        let base = self.base.as_ptr() as usize;
        let (me, cached) = lookup(base, &self.ring().peers);
        // Two paths, not one `Option` merged from both: the cached entry's
        // index is then known to be in the table, and the seat's tests
        // after it fold away (callgrind).
        match cached {
            Some(i) => self.seat_at(i, side),
            None => self.seat_uncached(me, side),
        }
    }

    /// [`seat`](Self::seat) with our entry `i` found.
    #[inline(always)]
    fn seat_at(&self, i: usize, side: fn(&Peer) -> &AtomicU64) -> Seat {
        // SYNC POINT (Acquire): pairs with the Release store of `IDLE`
        // that ended the entry's last hold (`unseat`), which another
        // thread may have made (a `Reservation` moved there and
        // committed): its count (`sent`) is visible before we count.
        if side(self.peer(i)).load(Acquire) == IDLE {
            Seat(i as u32)
        } else {
            self.untracked_seat()
        }
    }

    /// [`seat`](Self::seat) on a cache miss: claims (or finds) our entry.
    #[cold]
    #[inline(never)]
    fn seat_uncached(&self, me: u64, side: fn(&Peer) -> &AtomicU64) -> Seat {
        match self.claim_seat(me) {
            Some(i) => self.seat_at(i, side),
            None => self.untracked_seat(),
        }
    }

    /// Counts an untracked holder: no entry, or ours already holds a slot
    /// of that side.
    #[cold]
    #[inline(never)]
    fn untracked_seat(&self) -> Seat {
        // SYNC POINT (Release): counted before the claiming CAS, like a
        // tracked holder's entry.
        self.ring().stats.0.untracked.fetch_add(1, AcqRel);
        Seat::NONE
    }

    /// The fast paths' claim: records `pos` in this thread's entry (`side`)
    /// and only then moves `word` (`tail` or `head`) from `pos` to `next`
    /// with one CAS. The seat on success; on failure the record is
    /// withdrawn and nothing was claimed.
    #[inline(always)]
    pub(super) fn claim_on_record(
        &self,
        word: &AtomicU64,
        pos: u64,
        next: u64,
        side: fn(&Peer) -> &AtomicU64,
    ) -> Option<Seat> {
        let seat = self.seat(side);
        // SYNC POINT: on record before the claim (see `peers`).
        if let Some(i) = seat.index() {
            side(self.peer(i)).store(pos, Release);
        }
        if word.compare_exchange(pos, next, AcqRel, Relaxed).is_err() {
            self.unseat(seat, side);
            return None;
        }
        Some(seat)
    }

    /// Ends a hold recorded by [`seat`](Self::seat), after the stamp store
    /// that ended it (Release: see `peers`).
    #[inline]
    pub(super) fn unseat(&self, seat: Seat, side: fn(&Peer) -> &AtomicU64) {
        match seat.index() {
            Some(i) => side(self.peer(i)).store(IDLE, Release),
            None if seat == Seat::NONE => {
                self.ring().stats.0.untracked.fetch_sub(1, Release);
            }
            None => {}
        }
    }

    /// Finds or takes an entry for `me`: ours already (a cache miss: same
    /// owner word, start time and pid namespace), a free one, or an idle
    /// one that [`reusable`] gives up. `None` if the table is full.
    #[cold]
    pub(super) fn claim_seat(&self, me: u64) -> Option<usize> {
        let base = self.base.as_ptr() as usize;
        let (start, pidns) = my_identity();
        let ours = (0..PEERS).find(|&i| {
            let p = self.peer(i);
            p.owner.load(Acquire) == me
                && p.start.load(Relaxed) == start
                && p.pidns.load(Relaxed) == pidns
        });
        let found = match ours {
            Some(i) => i,
            None => {
                let i = (0..PEERS).find(|&i| {
                    let p = self.peer(i);
                    let o = p.owner.load(Acquire);
                    let idle =
                        p.producing.load(Acquire) == IDLE && p.consuming.load(Acquire) == IDLE;
                    let (s, ns) = (p.start.load(Relaxed), p.pidns.load(Relaxed));
                    (o == 0 || (idle && reusable(o, s, ns)))
                        && p.owner.compare_exchange(o, me, AcqRel, Relaxed).is_ok()
                })?;
                let p = self.peer(i);
                p.start.store(start, Relaxed);
                p.pidns.store(pidns, Relaxed);
                // Garbage must not name positions (a dead owner's entry was
                // idle: only its owner or a recoverer ending a hold writes
                // them, and neither names a new one).
                p.producing.store(IDLE, Release);
                p.consuming.store(IDLE, Release);
                // A dead owner killed between its commit and the end of
                // its send leaves `sent_idle` behind: no send of ours is
                // counted yet.
                p.sent_idle.store(p.sent.load(Acquire), Release);
                // Before any count of ours lands in the entry (see
                // `Stats::peers_used`).
                self.ring()
                    .stats
                    .0
                    .peers_used
                    .fetch_max(i as u64 + 1, AcqRel);
                i
            }
        };
        remember(base, found);
        Some(found)
    }
}
