//! The parent's side of the pool: tasks, workers, and the driver that
//! moves results in and tasks out.
//!
//! There is no background thread. Whichever thread waits on the pool
//! (a `get`, a `map`, an `imap` step, `join`) becomes the *driver* for a
//! while: it receives results, runs callbacks, hands queued tasks to free
//! workers, checks the workers' health and enforces task timeouts. One
//! thread drives at a time; the others sleep on a condition variable and
//! take over when it returns. Without a background thread the pool never
//! forks from a multi-threaded parent on its own account, so the `fork`
//! start method can replace workers in a single-threaded program.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use super::record::{self, Payload, Status};
use super::table::{State as Entry, Table};
use super::wait;
use super::{PoolError, TaskError};
use crate::process::{Process, ProcessError};
use crate::spill::Spill;
use crate::{Error, Queue, Segment};

/// What a task's item resolves to: the encoded result, or why not.
pub(crate) type Outcome = Result<Vec<u8>, TaskError>;

/// Where an item's outcome goes: an `AsyncResult`, a map's batch, an
/// `imap` stream. `deliver` runs in the driver, outside the state lock.
pub(crate) trait Sink: Send + Sync {
    /// Item `index` ended with `outcome`.
    fn deliver(&self, index: usize, outcome: Outcome);
}

/// One item of a task: where its outcome goes, and its encoded argument.
pub(crate) struct Item {
    pub sink: Arc<dyn Sink>,
    pub index: usize,
    pub arg: Vec<u8>,
}

/// An outcome to hand to a sink once the state lock is released.
pub(crate) type Delivery = (Arc<dyn Sink>, usize, Outcome);

struct Task {
    token: Arc<[u8]>,
    items: Vec<Item>,
    /// The body, spilled when the record outgrew a queue slot (kept until
    /// the task ends: it may be sent again to another worker).
    spill: Option<Spill>,
}

/// What a worker is given: the ownership table, the result queue, and
/// its own task queue (all anonymous: they travel by descriptor).
pub(crate) type Objects = (Table, Queue, Queue);

/// Starts worker `slot`, generation `gen`, with its objects.
pub(crate) type Launch =
    dyn Fn(usize, u32, Objects) -> Result<Process<()>, ProcessError> + Send + Sync;

struct Slot {
    proc: Option<Process<()>>,
    queue: Option<Queue>,
    gen: u32,
    /// Tasks sent to this worker and not finished, in order.
    outstanding: VecDeque<u64>,
    /// Tasks sent to the current worker (for `maxtasksperchild`).
    sent: u64,
    /// The task seen running, and since when (for the task timeout).
    seen: Option<(u64, Instant)>,
    /// The task this worker was killed for overrunning.
    killed_for: Option<u64>,
}

/// Task sequence numbers are unique and dense: a multiplicative hash
/// spreads them over the table's control bytes at a fraction of
/// SipHash's cost (which was a tenth of the parent's instructions per
/// task, callgrind, `map` with chunksize 1).
#[derive(Default, Clone, Copy)]
pub(crate) struct SeqHash(u64);

impl std::hash::Hasher for SeqHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Tasks = HashMap<u64, Task, std::hash::BuildHasherDefault<SeqHash>>;

pub(crate) struct State {
    slots: Vec<Slot>,
    tasks: Tasks,
    pending: VecDeque<u64>,
    next_seq: u64,
    pub closed: bool,
    pub terminated: bool,
    pub broken: Option<String>,
    /// The thread driving, if any.
    driver: Option<ThreadId>,
    /// Threads asleep on `progress`, waiting for the driver to hand over
    /// (std's `notify_all` is a system call even with nobody waiting: one
    /// per `apply` before this count).
    idle_waiters: usize,
    last_check: Instant,
}

/// Settings fixed at build.
pub(crate) struct Config {
    pub workers: usize,
    pub depth: usize,
    pub maxtasks: Option<u64>,
    pub timeout: Option<Duration>,
    pub slot_size: usize,
    pub has_init: bool,
}

/// Everything the pool's handles share.
pub(crate) struct Shared {
    pub cfg: Config,
    pub base: String,
    results: Queue,
    table: Table,
    state: Mutex<State>,
    progress: Condvar,
    launch: Box<Launch>,
    /// The driver's buffer for result records, and how long it polls
    /// (one driver at a time).
    inbox: Mutex<(Vec<u8>, wait::Spin)>,
}

/// Longest the driver blocks on the result queue before it looks at the
/// workers again: how soon a dead worker is noticed.
const SLICE: Duration = Duration::from_millis(20);
/// How long `join` and `terminate` wait for a worker to exit.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// The names of the pool's spill segments (everything else is
/// anonymous, so a killed parent leaves nothing in `/dev/shm` but the
/// spills in flight).
pub(crate) fn arg_spill_name(base: &str, seq: u64) -> String {
    format!("{base}-a{seq:x}")
}
pub(crate) fn result_spill_name(base: &str, seq: u64) -> String {
    format!("{base}-s{seq:x}")
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic in a callback cannot leave the state half-changed (callbacks
    // run outside the lock); take the guard back.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Makes the shared objects and starts every worker.
    pub(crate) fn start(
        cfg: Config,
        base: String,
        launch: Box<Launch>,
    ) -> Result<Arc<Shared>, PoolError> {
        let n = cfg.workers;
        let table = Table::anonymous(n)?;
        let results = Queue::anonymous(n * cfg.depth + 1, cfg.slot_size)?;
        let slots = (0..n)
            .map(|_| Slot {
                proc: None,
                queue: None,
                gen: 0,
                outstanding: VecDeque::new(),
                sent: 0,
                seen: None,
                killed_for: None,
            })
            .collect();
        let shared = Arc::new(Shared {
            cfg,
            base,
            results,
            table,
            state: Mutex::new(State {
                slots,
                tasks: Tasks::default(),
                pending: VecDeque::new(),
                next_seq: 1,
                closed: false,
                terminated: false,
                broken: None,
                driver: None,
                idle_waiters: 0,
                last_check: Instant::now(),
            }),
            progress: Condvar::new(),
            launch,
            inbox: Mutex::new((Vec::new(), wait::Spin::default())),
        });
        {
            let mut st = lock(&shared.state);
            for i in 0..n {
                if let Err(e) = shared.start_worker(&mut st, i) {
                    drop(st);
                    shared.terminate();
                    return Err(e);
                }
            }
        }
        Ok(shared)
    }

    fn start_worker(&self, st: &mut State, i: usize) -> Result<(), PoolError> {
        let slot = &mut st.slots[i];
        slot.gen = slot.gen.wrapping_add(1);
        let gen = slot.gen;
        // Room for every task the worker may hold, and a stop record.
        let q = Queue::anonymous(self.cfg.depth + 1, self.cfg.slot_size)?;
        self.table.clear(i);
        let objects = (self.table.clone(), self.results.clone(), q.clone());
        let p = (self.launch)(i, gen, objects).map_err(PoolError::Start)?;
        let slot = &mut st.slots[i];
        slot.proc = Some(p);
        slot.queue = Some(q);
        slot.sent = 0;
        slot.seen = None;
        slot.killed_for = None;
        Ok(())
    }

    /// Queues `items` as tasks of at most `chunk` items each.
    pub(crate) fn submit(
        &self,
        token: Arc<[u8]>,
        items: Vec<Item>,
        chunk: usize,
    ) -> Result<(), PoolError> {
        let mut st = lock(&self.state);
        self.check_open(&st)?;
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let part: Vec<Item> = items.by_ref().take(chunk.max(1)).collect();
            let seq = st.next_seq;
            st.next_seq += 1;
            st.tasks.insert(
                seq,
                Task {
                    token: token.clone(),
                    items: part,
                    spill: None,
                },
            );
            st.pending.push_back(seq);
        }
        let mut out = Vec::new();
        self.dispatch(&mut st, &mut out);
        drop(st);
        deliver(out);
        Ok(())
    }

    fn check_open(&self, st: &State) -> Result<(), PoolError> {
        if st.terminated {
            Err(PoolError::Terminated)
        } else if let Some(b) = &st.broken {
            Err(PoolError::Broken(b.clone()))
        } else if st.closed {
            Err(PoolError::Closed)
        } else {
            Ok(())
        }
    }

    /// Writes into `rec` the record for task `seq` (spilling its body if
    /// needed).
    fn record(&self, seq: u64, task: &mut Task, rec: &mut Vec<u8>) -> Result<(), Error> {
        let body_len =
            4 + task.token.len() + task.items.iter().map(|i| 4 + i.arg.len()).sum::<usize>();
        let count = task.items.len() as u32;
        rec.clear();
        if record::TASK_HEADER + body_len <= self.cfg.slot_size {
            record::task_header(rec, record::KIND_TASK, false, seq, count);
            return self.body(task, rec);
        }
        if task.spill.is_none() {
            let mut body = Vec::with_capacity(body_len);
            self.body(task, &mut body)?;
            task.spill = Some(Spill::create(&arg_spill_name(&self.base, seq), &body)?);
        }
        let ticket = task
            .spill
            .as_ref()
            .map(Spill::ticket)
            .ok_or(Error::Corrupt("spill"))?;
        record::task_header(rec, record::KIND_TASK, true, seq, count);
        rec.extend_from_slice(&ticket.to_bytes());
        Ok(())
    }

    fn body(&self, task: &Task, out: &mut Vec<u8>) -> Result<(), Error> {
        let too_big = |_| Error::InvalidArgument("a task item over 4 GiB");
        record::put_arg(out, &task.token).map_err(too_big)?;
        for it in &task.items {
            record::put_arg(out, &it.arg).map_err(too_big)?;
        }
        Ok(())
    }

    /// Hands queued tasks to workers with room.
    fn dispatch(&self, st: &mut State, out: &mut Vec<Delivery>) {
        let mut rec = Vec::new();
        while let Some(&seq) = st.pending.front() {
            let depth = self.cfg.depth;
            let max = self.cfg.maxtasks;
            let Some(i) = (0..st.slots.len())
                .filter(|&i| {
                    let s = &st.slots[i];
                    s.proc.is_some()
                        && s.queue.is_some()
                        && s.outstanding.len() < depth
                        && max.map_or(true, |m| s.sent < m)
                })
                .min_by_key(|&i| st.slots[i].outstanding.len())
            else {
                return;
            };
            st.pending.pop_front();
            let Some(task) = st.tasks.get_mut(&seq) else {
                continue;
            };
            match self.record(seq, task, &mut rec) {
                Ok(()) => {}
                Err(e) => {
                    let task = st.tasks.remove(&seq).expect("task present");
                    let why = TaskError::EncodeArgument(e.to_string());
                    fail_items(task.items, &why, out);
                    continue;
                }
            }
            let slot = &mut st.slots[i];
            let q = slot.queue.as_ref().expect("checked above");
            match q.try_send_bytes(&rec) {
                Ok(()) => {
                    slot.outstanding.push_back(seq);
                    slot.sent += 1;
                }
                Err(_) => {
                    // Full cannot happen (capacity is depth + 1); a queue
                    // that refuses is the worker's problem: the health
                    // check replaces it. Keep the task.
                    st.pending.push_front(seq);
                    return;
                }
            }
        }
    }

    /// Waits until `ready()` (true) or `deadline` (false), driving the
    /// pool meanwhile.
    pub(crate) fn wait_until(&self, ready: &dyn Fn() -> bool, deadline: Option<Instant>) -> bool {
        let me = std::thread::current().id();
        loop {
            if ready() {
                return true;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return false;
            }
            let mut st = lock(&self.state);
            let nested = st.driver == Some(me);
            if st.driver.is_some() && !nested {
                let wait = deadline.map_or(SLICE, |d| d.saturating_duration_since(now).min(SLICE));
                st.idle_waiters += 1;
                let mut st = match self.progress.wait_timeout(st, wait) {
                    Ok((g, _)) => g,
                    Err(p) => p.into_inner().0,
                };
                st.idle_waiters -= 1;
                continue;
            }
            if st.terminated && st.tasks.is_empty() {
                drop(st);
                return ready();
            }
            st.driver = Some(me);
            drop(st);
            let wait = deadline.map_or(SLICE, |d| d.saturating_duration_since(now).min(SLICE));
            let out = self.step(wait);
            deliver(out);
            if !nested {
                let mut st = lock(&self.state);
                st.driver = None;
                let waiting = st.idle_waiters > 0;
                drop(st);
                if waiting {
                    self.progress.notify_all();
                }
            }
        }
    }

    /// One round of driving: results in (waiting at most `wait`), health
    /// check, tasks out. Returns the outcomes to deliver.
    fn step(&self, wait: Duration) -> Vec<Delivery> {
        let mut out = Vec::new();
        {
            let mut st = lock(&self.state);
            self.dispatch(&mut st, &mut out);
            if st.terminated {
                return out;
            }
        }
        let mut guard = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        let (inbox, spin) = &mut *guard;
        if inbox.len() < self.results.slot_size() {
            inbox.resize(self.results.slot_size(), 0);
        }
        let first = wait::recv_into(&self.results, inbox, spin, wait);
        let mut st = lock(&self.state);
        let idle = match first {
            Ok(n) => {
                self.on_result(&mut st, &inbox[..n], &mut out);
                // Whatever else has arrived, under the one lock.
                for _ in 1..256 {
                    match self.results.try_recv_bytes_into(inbox) {
                        Ok(n) => self.on_result(&mut st, &inbox[..n], &mut out),
                        Err(_) => break,
                    }
                }
                false
            }
            Err(_) => true,
        };
        drop(guard);
        if idle || st.last_check.elapsed() >= SLICE {
            st.last_check = Instant::now();
            self.check(&mut st, &mut out);
        }
        self.dispatch(&mut st, &mut out);
        out
    }

    fn on_result(&self, st: &mut State, bytes: &[u8], out: &mut Vec<Delivery>) {
        let Ok(r) = record::parse_result(bytes) else {
            return;
        };
        let slot = r.slot as usize;
        let known = st
            .slots
            .get(slot)
            .is_some_and(|s| s.outstanding.contains(&r.seq));
        let spilled = match r.payload {
            Payload::Inline(p) => Ok(std::borrow::Cow::Borrowed(p)),
            Payload::Spilled(t) => t.take().map(std::borrow::Cow::Owned),
        };
        if !known {
            return;
        }
        let s = &mut st.slots[slot];
        s.outstanding.retain(|&q| q != r.seq);
        if s.seen.is_some_and(|(q, _)| q == r.seq) {
            s.seen = None;
        }
        let Some(task) = st.tasks.remove(&r.seq) else {
            return;
        };
        let payload = spilled.map_err(|e| format!("result spill: {e}"));
        let parsed = payload
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|p| record::split_results(p, r.count).map_err(|e| e.to_string()));
        match parsed {
            Ok(items) if items.len() == task.items.len() => {
                for (it, (status, b)) in task.items.into_iter().zip(items) {
                    let msg = || String::from_utf8_lossy(b).into_owned();
                    let o = match status {
                        Status::Ok => Ok(b.to_vec()),
                        Status::Panicked => Err(TaskError::Panicked(msg())),
                        Status::DecodeArg => Err(TaskError::DecodeArgument(msg())),
                        Status::EncodeResult => Err(TaskError::EncodeResult(msg())),
                        Status::BadFunction => Err(TaskError::Refused(msg())),
                    };
                    out.push((it.sink, it.index, o));
                }
            }
            Ok(_) => fail_items(task.items, &TaskError::Refused("result count".into()), out),
            Err(m) => fail_items(task.items, &TaskError::Refused(m), out),
        }
    }

    /// Looks at every worker: enforces the task timeout, and handles the
    /// dead.
    fn check(&self, st: &mut State, out: &mut Vec<Delivery>) {
        let mut dead = Vec::new();
        for i in 0..st.slots.len() {
            let (entry, _) = self.table.state(i);
            let s = &mut st.slots[i];
            let Some(p) = s.proc.as_mut() else {
                continue;
            };
            if let (Some(limit), Entry::Running(seq)) = (self.cfg.timeout, entry) {
                if s.outstanding.contains(&seq) {
                    match s.seen {
                        Some((q, since)) if q == seq => {
                            if since.elapsed() >= limit && s.killed_for.is_none() {
                                let _ = p.kill();
                                s.killed_for = Some(seq);
                            }
                        }
                        _ => s.seen = Some((seq, Instant::now())),
                    }
                }
            }
            if !p.is_alive() {
                dead.push(i);
            }
        }
        if dead.is_empty() {
            return;
        }
        // Results the dead committed before dying are in the queue: take
        // them all before judging what was lost. A result slot a dead
        // worker held half-written is taken back.
        self.results.recover();
        while let Ok(b) = self.results.try_recv_bytes() {
            self.on_result(st, &b, out);
        }
        for i in dead {
            self.bury(st, i, out);
        }
    }

    /// Settles what dead worker `i` held, and replaces it.
    fn bury(&self, st: &mut State, i: usize, out: &mut Vec<Delivery>) {
        let (entry, item) = self.table.state(i);
        let s = &mut st.slots[i];
        let Some(mut p) = s.proc.take() else {
            return;
        };
        s.queue = None;
        let exitcode = p.exitcode().unwrap_or(-1);
        let pid = p.pid();
        let outstanding: Vec<u64> = s.outstanding.drain(..).collect();
        let killed_for = s.killed_for.take();
        s.seen = None;
        self.table.clear(i);
        if self.cfg.has_init && entry == Entry::Init {
            // Died before its initializer finished: every worker would.
            let why = match p.join_timeout(Duration::ZERO) {
                Err(ProcessError::Panicked { message, .. }) => {
                    format!("the initializer panicked: {message}")
                }
                _ => format!("a worker died in its initializer (exit code {exitcode})"),
            };
            self.requeue(st, outstanding);
            self.break_pool(st, why, out);
            return;
        }
        let mut rest = outstanding;
        if let Entry::Running(seq) = entry {
            if let Some(pos) = rest.iter().position(|&q| q == seq) {
                rest.remove(pos);
                let _ = Segment::unlink_name(&result_spill_name(&self.base, seq));
                if let Some(task) = st.tasks.remove(&seq) {
                    let why = match (killed_for, self.cfg.timeout) {
                        (Some(q), Some(d)) if q == seq => TaskError::TimedOut(d),
                        _ => TaskError::WorkerDied { pid, exitcode },
                    };
                    self.lose_item(st, task, item as usize, why, out);
                }
            }
        }
        self.requeue(st, rest);
        let more = !st.closed || !st.tasks.is_empty();
        if !st.terminated && st.broken.is_none() && more {
            if let Err(e) = self.start_worker(st, i) {
                self.break_pool(st, e.to_string(), out);
            }
        }
    }

    /// Task `task` lost item `lost` (its worker died running it): that
    /// item fails; the chunk's other items run again as a new task (those
    /// before it finished, but their results died with the worker).
    fn lose_item(
        &self,
        st: &mut State,
        task: Task,
        lost: usize,
        why: TaskError,
        out: &mut Vec<Delivery>,
    ) {
        let lost = lost.min(task.items.len().saturating_sub(1));
        let mut others = Vec::with_capacity(task.items.len());
        for (k, it) in task.items.into_iter().enumerate() {
            if k == lost {
                out.push((it.sink, it.index, Err(why.clone())));
            } else {
                others.push(it);
            }
        }
        if !others.is_empty() {
            let seq = st.next_seq;
            st.next_seq += 1;
            st.tasks.insert(
                seq,
                Task {
                    token: task.token,
                    items: others,
                    spill: None,
                },
            );
            st.pending.push_front(seq);
        }
    }

    /// Puts tasks a worker held but never started back at the front.
    fn requeue(&self, st: &mut State, seqs: Vec<u64>) {
        for seq in seqs.into_iter().rev() {
            if st.tasks.contains_key(&seq) {
                st.pending.push_front(seq);
            }
        }
    }

    fn break_pool(&self, st: &mut State, why: String, out: &mut Vec<Delivery>) {
        st.broken = Some(why.clone());
        self.fail_all(st, &TaskError::Broken(why), out);
    }

    fn fail_all(&self, st: &mut State, why: &TaskError, out: &mut Vec<Delivery>) {
        st.pending.clear();
        for s in &mut st.slots {
            s.outstanding.clear();
        }
        let mut seqs: Vec<u64> = st.tasks.keys().copied().collect();
        seqs.sort_unstable();
        for seq in seqs {
            if let Some(t) = st.tasks.remove(&seq) {
                fail_items(t.items, why, out);
            }
        }
    }

    /// Whether every submitted task has ended.
    pub(crate) fn idle(&self) -> bool {
        lock(&self.state).tasks.is_empty()
    }

    /// Marks the pool closed to new tasks.
    pub(crate) fn close(&self) {
        lock(&self.state).closed = true;
    }

    /// Waits for every task, then stops the workers and reaps them.
    pub(crate) fn join(&self) -> Result<(), PoolError> {
        {
            let st = lock(&self.state);
            if !st.closed {
                return Err(PoolError::NotClosed);
            }
        }
        self.wait_until(&|| self.idle(), None);
        let mut st = lock(&self.state);
        let mut stop = Vec::new();
        record::task_header(&mut stop, record::KIND_STOP, false, 0, 0);
        for s in &mut st.slots {
            if let Some(q) = &s.queue {
                let _ = q.send_bytes_timeout(&stop, EXIT_WAIT);
            }
        }
        for s in &mut st.slots {
            if let Some(mut p) = s.proc.take() {
                if p.join_timeout(EXIT_WAIT).is_err() && p.is_alive() {
                    let _ = p.kill();
                    let _ = p.join_timeout(EXIT_WAIT);
                }
            }
            s.queue = None;
        }
        Ok(())
    }

    /// Kills every worker, reaps them, and fails every unfinished task
    /// with [`TaskError::Terminated`].
    pub(crate) fn terminate(&self) {
        let mut st = lock(&self.state);
        if st.terminated {
            return;
        }
        st.terminated = true;
        st.closed = true;
        let mut procs = Vec::new();
        for (i, s) in st.slots.iter_mut().enumerate() {
            if let Some(mut p) = s.proc.take() {
                let _ = p.kill();
                procs.push((i, p));
            }
            s.queue = None;
        }
        for (i, mut p) in procs {
            let _ = p.join_timeout(EXIT_WAIT);
            if let (Entry::Running(seq), _) = self.table.state(i) {
                let _ = Segment::unlink_name(&result_spill_name(&self.base, seq));
            }
        }
        // Results that made it: spilled ones must not stay in /dev/shm.
        while let Ok(b) = self.results.try_recv_bytes() {
            if let Ok(r) = record::parse_result(&b) {
                if let Payload::Spilled(t) = r.payload {
                    let _ = t.discard();
                }
            }
        }
        let mut out = Vec::new();
        self.fail_all(&mut st, &TaskError::Terminated, &mut out);
        drop(st);
        self.progress.notify_all();
        deliver(out);
    }

    /// The pids of the running workers.
    pub(crate) fn pids(&self) -> Vec<u32> {
        lock(&self.state)
            .slots
            .iter()
            .filter_map(|s| s.proc.as_ref().map(Process::pid))
            .collect()
    }
}

fn fail_items(items: Vec<Item>, why: &TaskError, out: &mut Vec<Delivery>) {
    for it in items {
        out.push((it.sink, it.index, Err(why.clone())));
    }
}

/// Hands outcomes to their sinks (and so runs callbacks), in order.
pub(crate) fn deliver(out: Vec<Delivery>) {
    for (sink, i, o) in out {
        sink.deliver(i, o);
    }
}
