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

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use super::args::{Job, Picks};
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
/// `imap` stream. `deliver` runs in the driver, outside the state lock;
/// the bytes are borrowed from the result record (a map copies them once,
/// into its own buffer).
pub(crate) trait Sink: Send + Sync {
    /// Item `index` ended with `outcome`.
    fn deliver(&self, index: usize, outcome: Result<&[u8], TaskError>);
}

/// An outcome to hand to a sink once the state lock is released: the
/// job, the item's position in it, and the outcome (failures, and the
/// rare results collected under the lock, owned).
pub(crate) type Delivery = (Arc<Job>, usize, Outcome);

struct Task {
    job: Arc<Job>,
    /// The job's items this task carries.
    picks: Picks,
    /// The body, spilled when the record outgrew a queue slot (kept until
    /// the task ends: it may be sent again to another worker). Boxed: a
    /// task moves in and out of the table, and a `Spill` inline made
    /// each move a `memcpy` call.
    spill: Option<Box<Spill>>,
}

impl Task {
    /// The body's length: the token and every item, each with its
    /// length word ([`Error::InvalidArgument`] for an item over 4 GiB).
    fn body_len(&self) -> Result<usize, Error> {
        let word = |b: &[u8]| {
            u32::try_from(b.len())
                .map(|_| 4 + b.len())
                .map_err(|_| Error::InvalidArgument("a task item over 4 GiB"))
        };
        let mut n = word(&self.job.token)?;
        for k in self.picks.iter() {
            n += word(self.job.args.get(k))?;
        }
        Ok(n)
    }

    /// Appends the body to `out`, [`body_len`](Self::body_len) bytes
    /// (which checked every length).
    fn write_body(&self, out: &mut Vec<u8>) {
        let mut put = |b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        };
        put(&self.job.token);
        for k in self.picks.iter() {
            put(self.job.args.get(k));
        }
    }
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

/// The unfinished tasks, by sequence number: a slab indexed by the
/// number's distance from the oldest one kept. Numbers are handed out in
/// increasing order and every one is inserted, so inserting is a push at
/// the back, and finishing clears an entry and pops the finished ones at
/// the front (a hash map's insert and remove per task, even with a cheap
/// hash, were a tenth of the parent's instructions per task).
///
/// A task that runs long while many after it finish (an
/// `imap_unordered` behind one slow item) would hold the slab open behind
/// it, an empty entry per finished task: when the slab grows past four
/// times the tasks it holds (and [`FAR_AFTER`]), its oldest tasks move
/// aside to `far`, and the slab shrinks to what is in flight.
#[derive(Default)]
struct Tasks {
    /// The sequence number of `slots[0]`; every number in `far` is below.
    base: u64,
    slots: VecDeque<Option<Task>>,
    /// Tasks in `slots`.
    near: usize,
    far: BTreeMap<u64, Task>,
}

/// The slab's length below which nothing moves to `far`.
const FAR_AFTER: usize = 256;

impl Tasks {
    fn insert(&mut self, seq: u64, task: Task) {
        if self.slots.is_empty() {
            self.base = seq;
        }
        // `seq` is the newest number: beyond the back (a gap is only
        // possible if a number was skipped, and stays empty).
        while self.base + (self.slots.len() as u64) < seq {
            self.slots.push_back(None);
        }
        self.slots.push_back(Some(task));
        self.near += 1;
    }

    fn index(&self, seq: u64) -> Option<usize> {
        let k = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        (k < self.slots.len()).then_some(k)
    }

    fn get_mut(&mut self, seq: u64) -> Option<&mut Task> {
        if seq < self.base {
            return self.far.get_mut(&seq);
        }
        let k = self.index(seq)?;
        self.slots[k].as_mut()
    }

    fn contains(&self, seq: u64) -> bool {
        if seq < self.base {
            return self.far.contains_key(&seq);
        }
        self.index(seq).is_some_and(|k| self.slots[k].is_some())
    }

    fn remove(&mut self, seq: u64) -> Option<Task> {
        if seq < self.base {
            return self.far.remove(&seq);
        }
        let k = self.index(seq)?;
        let t = self.slots[k].take()?;
        self.near -= 1;
        self.trim();
        Some(t)
    }

    /// Pops the finished entries at the front, and moves the oldest
    /// tasks aside while the slab is mostly empty entries.
    fn trim(&mut self) {
        loop {
            match self.slots.front() {
                Some(None) => {}
                Some(Some(_)) if self.slots.len() > FAR_AFTER.max(4 * self.near) => {
                    if let Some(Some(t)) = self.slots.pop_front() {
                        self.far.insert(self.base, t);
                        self.near -= 1;
                    }
                    self.base += 1;
                    continue;
                }
                _ => return,
            }
            self.slots.pop_front();
            self.base += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.near == 0 && self.far.is_empty()
    }

    /// Every task, oldest first, leaving the table empty.
    fn drain(&mut self) -> impl Iterator<Item = Task> + '_ {
        self.near = 0;
        let far = std::mem::take(&mut self.far).into_values();
        far.chain(self.slots.drain(..).flatten())
    }
}

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
    /// The buffer task records are built in.
    rec: Vec<u8>,
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
                rec: Vec::new(),
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

    /// Queues the job's items (those that could be encoded) as tasks of
    /// at most `chunk` items each.
    pub(crate) fn submit(&self, job: Arc<Job>, chunk: usize) -> Result<(), PoolError> {
        let chunk = chunk.max(1);
        let mut st = lock(&self.state);
        self.check_open(&st)?;
        let n = job.args.len();
        let failed = job.args.failed();
        let add = |st: &mut State, picks: Picks| {
            let seq = st.next_seq;
            st.next_seq += 1;
            st.tasks.insert(
                seq,
                Task {
                    job: job.clone(),
                    picks,
                    spill: None,
                },
            );
            st.pending.push_back(seq);
        };
        if failed.is_empty() {
            for lo in (0..n).step_by(chunk) {
                add(&mut st, Picks::Run(lo, (lo + chunk).min(n)));
            }
        } else {
            let mut bad = failed.iter().map(|&(k, _)| k).peekable();
            let good: Vec<usize> = (0..n)
                .filter(|&k| {
                    let skip = bad.peek() == Some(&k);
                    if skip {
                        bad.next();
                    }
                    !skip
                })
                .collect();
            for part in good.chunks(chunk) {
                add(&mut st, Picks::of(part));
            }
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

    /// Sends task `seq` to the worker queue `q`, its record built in
    /// `rec` (its body spilled, when it outgrows a slot). `Ok(false)` if
    /// the queue refused it. A copy into the reused `rec` and the queue's
    /// fast copying send cost less than writing into a reservation in
    /// place (callgrind: about 200 against 285 instructions).
    fn send_task(
        &self,
        q: &Queue,
        seq: u64,
        task: &mut Task,
        rec: &mut Vec<u8>,
    ) -> Result<bool, Error> {
        let body_len = task.body_len()?;
        let count = task.picks.len() as u32;
        let h = record::TASK_HEADER;
        rec.clear();
        if h + body_len <= self.cfg.slot_size {
            rec.extend_from_slice(&record::task_header_bytes(
                record::KIND_TASK,
                false,
                seq,
                count,
            ));
            task.write_body(rec);
        } else {
            if task.spill.is_none() {
                let mut body = Vec::with_capacity(body_len);
                task.write_body(&mut body);
                task.spill = Some(Box::new(Spill::create(
                    &arg_spill_name(&self.base, seq),
                    &body,
                )?));
            }
            let ticket = task
                .spill
                .as_ref()
                .map(|s| s.ticket())
                .ok_or(Error::Corrupt("spill"))?;
            record::task_header(rec, record::KIND_TASK, true, seq, count);
            rec.extend_from_slice(&ticket.to_bytes());
        }
        Ok(q.try_send_bytes(rec).is_ok())
    }

    /// Hands queued tasks to workers with room.
    fn dispatch(&self, st: &mut State, out: &mut Vec<Delivery>) {
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
            let State {
                slots, tasks, rec, ..
            } = &mut *st;
            let Some(task) = tasks.get_mut(seq) else {
                continue;
            };
            let slot = &mut slots[i];
            let q = slot.queue.as_ref().expect("checked above");
            match self.send_task(q, seq, task, rec) {
                Ok(true) => {
                    slot.outstanding.push_back(seq);
                    slot.sent += 1;
                }
                Ok(false) => {
                    // Full cannot happen (capacity is depth + 1); a queue
                    // that refuses is the worker's problem: the health
                    // check replaces it. Keep the task.
                    st.pending.push_front(seq);
                    return;
                }
                Err(e) => {
                    let task = st.tasks.remove(seq).expect("task present");
                    let why = TaskError::EncodeArgument(e.to_string());
                    fail_items(&task, &why, out);
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
            let mut now = Instant::now();
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
            // Drive until ready, the deadline, or another thread waiting
            // to take over (it may wait for something else).
            loop {
                let wait = deadline.map_or(SLICE, |d| d.saturating_duration_since(now).min(SLICE));
                let (out, hand_over) = self.step(wait);
                deliver(out);
                if hand_over || ready() {
                    break;
                }
                if let Some(d) = deadline {
                    now = Instant::now();
                    if now >= d {
                        break;
                    }
                }
            }
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

    /// One round of driving: results in (waiting at most `wait`) and
    /// delivered, health check, tasks out. Returns the outcomes still to
    /// deliver, and whether the driver should hand over (a thread waits
    /// to drive, or the pool was terminated).
    fn step(&self, wait: Duration) -> (Vec<Delivery>, bool) {
        let mut out = Vec::new();
        // The buffer leaves its mutex for the step: a callback that waits
        // on the pool itself (a nested driver) finds it empty and makes
        // its own, instead of deadlocking.
        let (mut inbox, mut spin) = {
            let mut g = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
            (std::mem::take(&mut g.0), g.1)
        };
        let size = self.results.slot_size();
        if inbox.len() < size {
            inbox.resize(size, 0);
        }
        let first = wait::recv_into(&self.results, &mut inbox, &mut spin, wait);
        let idle = first.is_err();
        if let Ok(mut n) = first {
            // Whatever else has arrived: each record settled under the
            // lock, then delivered from the buffer outside it.
            for _ in 0..256 {
                let done = self.on_result(&mut lock(&self.state), &inbox[..n]);
                if let Some(d) = done {
                    d.deliver();
                }
                match self.results.poll_recv_into(&mut inbox) {
                    Some(m) => n = m,
                    None => break,
                }
            }
        }
        {
            let mut g = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
            g.0 = inbox;
            g.1 = spin;
        }
        let mut st = lock(&self.state);
        if st.terminated {
            return (out, true);
        }
        if idle || st.last_check.elapsed() >= SLICE {
            st.last_check = Instant::now();
            self.check(&mut st, &mut out);
        }
        self.dispatch(&mut st, &mut out);
        let hand_over = st.idle_waiters > 0 || st.terminated;
        (out, hand_over)
    }

    /// Settles the result record `bytes`: the task it finishes leaves
    /// the table. `None` for a record that finishes nothing we know.
    fn on_result<'b>(&self, st: &mut State, bytes: &'b [u8]) -> Option<Finished<'b>> {
        let r = record::parse_result(bytes).ok()?;
        let slot = r.slot as usize;
        let at = st
            .slots
            .get(slot)
            .and_then(|s| s.outstanding.iter().position(|&q| q == r.seq));
        // A spill is taken (and removed) even for a record we drop.
        let payload = match r.payload {
            Payload::Inline(p) => Ok(std::borrow::Cow::Borrowed(p)),
            Payload::Spilled(t) => t
                .take()
                .map(std::borrow::Cow::Owned)
                .map_err(|e| format!("result spill: {e}")),
        };
        let s = &mut st.slots[slot];
        s.outstanding.remove(at?);
        if s.seen.is_some_and(|(q, _)| q == r.seq) {
            s.seen = None;
        }
        let task = st.tasks.remove(r.seq)?;
        Some(Finished {
            task,
            payload,
            count: r.count,
        })
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
            if let Some(f) = self.on_result(st, &b) {
                f.defer(out);
            }
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
                if let Some(task) = st.tasks.remove(seq) {
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
        let lost = lost.min(task.picks.len().saturating_sub(1));
        let mut others = Vec::with_capacity(task.picks.len());
        for (k, pos) in task.picks.iter().enumerate() {
            if k == lost {
                out.push((task.job.clone(), pos, Err(why.clone())));
            } else {
                others.push(pos);
            }
        }
        if !others.is_empty() {
            let seq = st.next_seq;
            st.next_seq += 1;
            st.tasks.insert(
                seq,
                Task {
                    job: task.job,
                    picks: Picks::of(&others),
                    spill: None,
                },
            );
            st.pending.push_front(seq);
        }
    }

    /// Puts tasks a worker held but never started back at the front.
    fn requeue(&self, st: &mut State, seqs: Vec<u64>) {
        for seq in seqs.into_iter().rev() {
            if st.tasks.contains(seq) {
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
        for t in st.tasks.drain() {
            fail_items(&t, why, out);
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

fn fail_items(task: &Task, why: &TaskError, out: &mut Vec<Delivery>) {
    for pos in task.picks.iter() {
        out.push((task.job.clone(), pos, Err(why.clone())));
    }
}

/// Hands outcomes to their sinks (and so runs callbacks), in order.
pub(crate) fn deliver(out: Vec<Delivery>) {
    for (job, k, o) in out {
        let i = job.first + k;
        match o {
            Ok(b) => job.sink.deliver(i, Ok(&b)),
            Err(e) => job.sink.deliver(i, Err(e)),
        }
    }
}

/// A finished task and its result items, to deliver once the state lock
/// is released.
struct Finished<'b> {
    task: Task,
    payload: Result<std::borrow::Cow<'b, [u8]>, String>,
    count: u32,
}

impl Finished<'_> {
    /// Calls `f` with each item's position in its job and outcome, in
    /// order.
    fn each(self, mut f: impl FnMut(&Arc<Job>, usize, Result<&[u8], TaskError>)) {
        let Finished {
            task,
            payload,
            count,
        } = self;
        let job = &task.job;
        let parsed = payload
            .as_deref()
            .map_err(Clone::clone)
            .and_then(|p| record::split_results(p, count).map_err(|e| e.to_string()));
        let why = match parsed {
            Ok(items) if items.len() == task.picks.len() => {
                for (pos, (status, b)) in task.picks.iter().zip(items) {
                    let msg = || String::from_utf8_lossy(b).into_owned();
                    let o = match status {
                        Status::Ok => Ok(b),
                        Status::Panicked => Err(TaskError::Panicked(msg())),
                        Status::DecodeArg => Err(TaskError::DecodeArgument(msg())),
                        Status::EncodeResult => Err(TaskError::EncodeResult(msg())),
                        Status::BadFunction => Err(TaskError::Refused(msg())),
                    };
                    f(job, pos, o);
                }
                return;
            }
            Ok(_) => TaskError::Refused("result count".into()),
            Err(m) => TaskError::Refused(m),
        };
        for pos in task.picks.iter() {
            f(job, pos, Err(why.clone()));
        }
    }

    /// Delivers every item now, from the borrowed bytes.
    fn deliver(self) {
        self.each(|job, k, o| job.sink.deliver(job.first + k, o));
    }

    /// Queues every item for delivery (the bytes copied).
    fn defer(self, out: &mut Vec<Delivery>) {
        self.each(|job, k, o| out.push((job.clone(), k, o.map(<[u8]>::to_vec))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::args::Args;

    fn task(job: &Arc<Job>) -> Task {
        Task {
            job: job.clone(),
            picks: Picks::Run(0, 1),
            spill: None,
        }
    }

    #[test]
    fn slab_stays_short_behind_a_long_task() {
        struct Nowhere;
        impl Sink for Nowhere {
            fn deliver(&self, _: usize, _: Result<&[u8], TaskError>) {}
        }
        let job = Arc::new(Job {
            token: Arc::from(&b""[..]),
            args: Args::with_capacity(0),
            sink: Arc::new(Nowhere),
            first: 0,
        });
        let mut t = Tasks::default();
        t.insert(1, task(&job));
        // Task 1 runs long; 10 000 after it come and go, 4 in flight.
        for seq in 2..10_002u64 {
            t.insert(seq, task(&job));
            if seq >= 6 {
                assert!(t.remove(seq - 4).is_some());
            }
            assert!(
                t.slots.len() <= FAR_AFTER + 8,
                "slab grew to {}",
                t.slots.len()
            );
        }
        assert!(t.contains(1));
        assert!(t.get_mut(1).is_some());
        assert!(t.contains(10_001) && !t.contains(9_000));
        assert!(t.remove(1).is_some());
        assert!(t.remove(1).is_none());
        let left: Vec<u64> = (9_998..10_002).filter(|&s| t.contains(s)).collect();
        assert_eq!(left, vec![9_998, 9_999, 10_000, 10_001]);
        assert_eq!(t.drain().count(), 4);
        assert!(t.is_empty());
    }
}
