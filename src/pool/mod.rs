//! [`Pool`]: a process pool that never hangs when a worker dies: Python's
//! `multiprocessing.Pool`, on the crate's own queues and
//! [`Process`].
//!
//! ```no_run
//! use shmprim::pool::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() {
//!     shmprim::process::enter(); // first: workers start here (spawn)
//!     let pool = Pool::new(4).unwrap();
//!     let squares = pool.map(square, 0..100u64).unwrap();
//!     assert_eq!(squares[7], 49);
//!     let r = pool.apply_async(square, 12).unwrap();
//!     assert_eq!(r.get().unwrap(), 144);
//!     for (i, v) in pool.imap(square, 0u64..).take(5).enumerate() {
//!         assert_eq!(v.unwrap(), (i * i) as u64);
//!     }
//! } // dropping the pool terminates it, as leaving `with Pool() as p:` does
//! ```
//!
//! | Python `multiprocessing.Pool`              | shmprim                                         |
//! |--------------------------------------------|-------------------------------------------------|
//! | `Pool(processes, initializer, initargs, maxtasksperchild)` | [`Pool::builder()`](Pool::builder)`.workers(n).initializer(f, arg).maxtasksperchild(m).build()` |
//! | `pool.apply(f, (a,))`                      | [`pool.apply(f, a)`](Pool::apply)                |
//! | `pool.apply_async(f, (a,), callback, error_callback)` | [`apply_async`](Pool::apply_async), [`apply_async_with`](Pool::apply_async_with) → [`AsyncResult`] |
//! | `r.get()`, `r.get(timeout)`, `r.wait()`, `r.ready()`, `r.successful()` | [`get`](AsyncResult::get), [`get_timeout`](AsyncResult::get_timeout), [`wait`](AsyncResult::wait), [`ready`](AsyncResult::ready), [`successful`](AsyncResult::successful) |
//! | `pool.map(f, it, chunksize)`               | [`map`](Pool::map), [`map_chunked`](Pool::map_chunked) |
//! | `pool.map_async(f, it, chunksize, callback, error_callback)` | [`map_async`](Pool::map_async), [`map_async_with`](Pool::map_async_with) → [`MapResult`] |
//! | `pool.starmap(f, [(a, b), ...])`           | [`starmap`](Pool::starmap) (`f` takes one tuple: `fn((a, b): (A, B)) -> R`) |
//! | `pool.imap(f, it, chunksize)`              | [`imap`](Pool::imap), [`imap_chunked`](Pool::imap_chunked) → [`Imap`] (lazy) |
//! | `pool.imap_unordered(f, it, chunksize)`    | [`imap_unordered`](Pool::imap_unordered), [`imap_unordered_chunked`](Pool::imap_unordered_chunked) |
//! | `pool.close()`, `pool.join()`, `pool.terminate()` | [`close`](Pool::close), [`join`](Pool::join), [`terminate`](Pool::terminate) |
//! | `with Pool() as p:` ... (terminates on exit) | dropping the `Pool` terminates it              |
//!
//! Functions are plain `fn(A) -> R` (no closures: a worker may be another
//! execution of this binary, and it finds the function by its offset in
//! the binary, checked to be the same executable). Arguments and results
//! are any [`Message`]: [`Plain`](crate::Plain)
//! values, `String`, `Vec`, tuples, handles, and under the `serde` feature
//! any serde type wrapped in `shmprim::process::Serde`.
//!
//! ## When a worker dies: the policy, beside Python's
//!
//! | Event | Python `multiprocessing.Pool` | `concurrent.futures.ProcessPoolExecutor` | shmprim `Pool` |
//! |-------|------------------------------|------------------------------------------|----------------|
//! | Worker killed (`SIGKILL`) while running a task | The task is lost: its `get()` and the whole `map` hang for ever (bpo-22393); the worker is replaced | `BrokenProcessPool`: every pending future fails, the pool is unusable | That item alone fails with [`TaskError::WorkerDied`] (pid, signal or exit code); a new worker takes the slot; every other task completes; `map` returns [`PoolError::Item`] naming the item |
//! | Worker killed while taking a task (holding the task queue's lock) | Every other worker blocks for ever (gh-96062) | Pool broken | Each worker has its own task queue, filled by the parent: there is no shared lock to die holding. Tasks queued to the dead worker that had not started go to another worker |
//! | Worker killed running item *k* of a chunk | The whole chunk is lost (hang) | Pool broken | Item *k* fails; the chunk's other items run again on another worker (those before *k* had finished, but their results died with the worker: a function with side effects may see them twice; `chunksize = 1` runs each item at most once) |
//! | Worker killed between tasks | Replaced | Pool broken | Replaced; nothing fails |
//! | Panic (exception) in the function | Re-raised by `get()` | Re-raised by `result()` | [`TaskError::Panicked`] with the message; the worker goes on |
//! | Task runs too long | `get(timeout)` gives up waiting; the task runs on | `result(timeout)` likewise; a running task cannot be cancelled | Optional per-task timeout ([`PoolBuilder::task_timeout`]): the worker is killed and replaced, the task fails with [`TaskError::TimedOut`] |
//! | Argument cannot be encoded (unpicklable) | `map` raises at once; `apply_async`'s result fails | The future fails | [`TaskError::EncodeArgument`]; the task is never sent |
//! | Result cannot be encoded | `MaybeEncodingError` for that task | The future fails | [`TaskError::EncodeResult`] for that item |
//! | Argument or result cannot be decoded | The worker or the result thread may die: hang | Pool broken | [`TaskError::DecodeArgument`] / [`TaskError::DecodeResult`] for that item |
//! | Initializer fails | Workers are restarted for ever; nothing runs (hang) | `BrokenProcessPool` | [`PoolError::Broken`] carrying the panic message; unfinished tasks fail with [`TaskError::Broken`] |
//! | Parent killed | Workers notice when they next read their pipe | Likewise | Workers are daemons: `PR_SET_PDEATHSIG = SIGKILL` ends them with the parent; an idle worker also checks its parent twice a second |
//! | `terminate()` while tasks run | `SIGTERM` to workers; results not yet set are never set (`get()` hangs) | `shutdown(cancel_futures=True)` cancels only what has not started | `SIGKILL` to every worker, all reaped before it returns; every unfinished result fails with [`TaskError::Terminated`] |
//! | `join()` before `close()` | `ValueError` | (no such state) | [`PoolError::NotClosed`] |
//! | Leaving `with` / dropping the pool | `terminate()` | `shutdown(wait=True)` | `terminate()` |
//! | Callbacks | In the result-handler thread, in completion order | In the thread that completes the future | In the parent, in the thread that drives the pool (below), in the order results are collected (completion order); one at a time |
//!
//! How the pool knows exactly what a dead worker lost: every worker has a
//! row in a shared *ownership table* and marks the task it runs there
//! before running any of it, and marks itself idle only after the task's
//! results are committed to the result queue (see `table.rs`). Results
//! committed before a death are collected before the verdict.
//!
//! ## Progress: who drives the pool
//!
//! The pool has no background thread in the parent (so the `fork` start
//! method can replace workers in a single-threaded program, and nothing
//! runs behind the caller's back). Any call that waits on the pool —
//! [`AsyncResult::get`]/[`wait`](AsyncResult::wait), [`Pool::map`], an
//! [`Imap`] step, [`Pool::join`] — drives it meanwhile: collects results,
//! runs callbacks, hands queued tasks to workers, replaces dead workers
//! and enforces task timeouts. Without a waiter, each worker still runs
//! the tasks already handed to it (up to [`PoolBuilder::prefetch`] each).
//! A dead worker is noticed within about 20 ms of someone waiting. A
//! task timeout counts from when the pool first saw the task running.
//!
//! ## Start methods
//!
//! Workers are [`Process`]es started by the
//! chosen [`Method`] (default: the program's
//! [`start_method`](crate::process::start_method)). With `spawn` and
//! `forkserver`, the pool starts every worker from one thread of its own,
//! so a worker's parent-death signal does not fire when some other thread
//! of the program ends. `fork` refuses in a multi-threaded program
//! ([`PoolError::Start`]); `maxtasksperchild` and worker replacement work
//! with every method.
//!
//! ## Large arguments and results
//!
//! A task or result of any size works: one that outgrows a queue slot
//! travels through a [`spill`](crate::spill) segment of its own (a 64 MiB
//! result costs a copy in and a copy out). Large data shared by many
//! tasks is best given once, as a handle: a shared
//! [`RawArray`](crate::RawArray) (no lock: the workers read it in place,
//! in a phase the pool's task hand-over orders) passed to the
//! [`initializer`](PoolBuilder::initializer), with only indices in the
//! tasks, costs nothing per byte (`examples/frames.rs`).

mod args;
mod core;
mod error;
mod record;
mod results;
mod table;
mod wait;
mod worker;

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use self::args::{Args, Job};
use self::core::{Config, Launch, Objects, Shared};
use self::results::{Batch, Cell};
use self::worker::Start;
use crate::process::{self, AnyFn, Builder, FnRef, Message, Method, Process, ProcessError};

pub use error::{PoolError, TaskError};
pub use results::{AsyncResult, Imap, MapResult};

/// Fuzz entry: parses arbitrary bytes as pool task and result records.
#[cfg(fuzzing)]
pub fn __fuzz_records(bytes: &[u8]) -> usize {
    record::fuzz_records(bytes)
}

/// Starts a worker: the function and argument it runs, from a builder.
type Starter =
    Arc<dyn Fn(Builder, Start, Objects) -> Result<Process<()>, ProcessError> + Send + Sync>;

/// Configures a [`Pool`]: Python's `Pool(...)` arguments, in the shape of
/// `rayon::ThreadPoolBuilder`.
pub struct PoolBuilder {
    workers: Option<usize>,
    method: Option<Method>,
    maxtasks: Option<u64>,
    timeout: Option<Duration>,
    depth: usize,
    slot_size: usize,
    starter: Starter,
    has_init: bool,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("workers", &self.workers)
            .field("method", &self.method)
            .field("maxtasks", &self.maxtasks)
            .field("timeout", &self.timeout)
            .field("prefetch", &self.depth)
            .finish()
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder::new()
    }
}

impl PoolBuilder {
    /// [`cpu_count`](crate::process::cpu_count) workers, the program's
    /// start method, no initializer, no limits.
    pub fn new() -> PoolBuilder {
        PoolBuilder {
            workers: None,
            method: None,
            maxtasks: None,
            timeout: None,
            depth: 4,
            slot_size: 16 * 1024,
            starter: Arc::new(|b: Builder, s: Start, o: Objects| {
                b.start(worker::main::<()>, (s, o, None))
            }),
            has_init: false,
        }
    }

    /// How many workers (Python's `processes`; at least 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n.max(1));
        self
    }

    /// How workers are started.
    pub fn method(mut self, m: Method) -> Self {
        self.method = Some(m);
        self
    }

    /// Runs `f(arg)` once in each worker before its first task (Python's
    /// `initializer` and `initargs`). `arg` may hold handles, anonymous
    /// ones included: the way to give every worker a large shared array.
    /// A panic in it breaks the pool ([`PoolError::Broken`]): every worker
    /// would fail the same way.
    pub fn initializer<I>(mut self, f: fn(I), arg: I) -> Self
    where
        I: Message + Clone + Send + Sync + 'static,
    {
        let f = FnRef::new(f);
        self.starter = Arc::new(move |b: Builder, s: Start, o: Objects| {
            b.start(worker::main::<I>, (s, o, Some((f, arg.clone()))))
        });
        self.has_init = true;
        self
    }

    /// A worker exits after this many tasks (chunks) and a fresh one takes
    /// its place (Python's `maxtasksperchild`).
    pub fn maxtasksperchild(mut self, n: u64) -> Self {
        self.maxtasks = Some(n.max(1));
        self
    }

    /// A task running longer than `d` fails with [`TaskError::TimedOut`];
    /// its worker is killed and replaced.
    pub fn task_timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Tasks handed to each worker ahead of time (default 4, at least 1):
    /// more keeps workers busy while nobody drives the pool, fewer
    /// balances uneven tasks better.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.depth = n.max(1);
        self
    }

    /// Starts the workers.
    pub fn build(self) -> Result<Pool, PoolError> {
        static POOLS: AtomicU64 = AtomicU64::new(0);
        let workers = self.workers.unwrap_or_else(process::cpu_count).max(1);
        let method = self.method.unwrap_or_else(process::start_method);
        let n = POOLS.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let base = format!("/shp{:x}-{:x}{:x}", std::process::id(), n, nanos & 0xfff);
        let starter = self.starter;
        let maxtasks = self.maxtasks;
        let b2 = base.clone();
        let launch: Box<Launch> = Box::new(move |slot, gen, objects| {
            let b = Builder::new()
                .name(format!("PoolWorker-{slot}"))
                .daemon(true)
                .method(method);
            starter(b, Start::new(&b2, slot, gen, maxtasks), objects)
        });
        let launch = if method == Method::Fork {
            launch
        } else {
            on_own_thread(launch)
        };
        let cfg = Config {
            workers,
            depth: self.depth,
            maxtasks: self.maxtasks,
            timeout: self.timeout,
            slot_size: self.slot_size,
            has_init: self.has_init,
        };
        let shared = Shared::start(cfg, base, launch)?;
        Ok(Pool { shared, workers })
    }
}

/// Runs `launch` on a thread of its own, kept for the pool's lifetime: a
/// worker's parent-death signal follows the thread that started it.
fn on_own_thread(launch: Box<Launch>) -> Box<Launch> {
    type Reply = mpsc::Sender<Result<Process<()>, ProcessError>>;
    let (tx, rx) = mpsc::channel::<(usize, u32, Objects, Reply)>();
    let spawned = std::thread::Builder::new()
        .name("shmprim-pool-launcher".into())
        .spawn(move || {
            for (slot, gen, objects, reply) in rx {
                let _ = reply.send(launch(slot, gen, objects));
            }
        });
    if spawned.is_err() {
        return Box::new(|_, _, _| {
            Err(ProcessError::Start(crate::Error::Unsupported(
                "the pool's launcher thread could not be started",
            )))
        });
    }
    let tx = Mutex::new(tx);
    Box::new(move |slot, gen, objects| {
        let (rtx, rrx) = mpsc::channel();
        let sent = tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((slot, gen, objects, rtx));
        let gone = || ProcessError::Start(crate::Error::Closed);
        sent.map_err(|_| gone())?;
        rrx.recv().map_err(|_| gone())?
    })
}

/// A pool of worker processes. See the [module](self) documentation.
pub struct Pool {
    shared: Arc<Shared>,
    workers: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers)
            .field("name", &self.shared.base)
            .finish()
    }
}

/// Python's default chunk size for `n` items over `workers` workers:
/// `n / (4 * workers)`, rounded up (at least 1).
pub fn default_chunksize(n: usize, workers: usize) -> usize {
    let per = 4 * workers.max(1);
    (n / per + usize::from(n % per != 0)).max(1)
}

impl Pool {
    /// A pool of `workers` processes started by the program's start method.
    pub fn new(workers: usize) -> Result<Pool, PoolError> {
        PoolBuilder::new().workers(workers).build()
    }

    /// The builder, for the other settings.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    /// How many workers the pool keeps.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The pids of the workers now running.
    pub fn pids(&self) -> Vec<u32> {
        self.shared.pids()
    }

    fn token<A: Message + 'static, R: Message + 'static>(f: fn(A) -> R) -> Arc<[u8]> {
        AnyFn::new(f).to_bytes().into()
    }

    /// Runs `f(a)` in a worker and waits for it. A failed task is
    /// [`PoolError::Item`] with index 0.
    pub fn apply<A, R>(&self, f: fn(A) -> R, a: A) -> Result<R, PoolError>
    where
        A: Message + 'static,
        R: Message + 'static,
    {
        self.apply_async(f, a)?
            .get()
            .map_err(|error| PoolError::Item { index: 0, error })
    }

    /// Submits `f(a)`; the result arrives later.
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, a: A) -> Result<AsyncResult<R>, PoolError>
    where
        A: Message + 'static,
        R: Message + 'static,
    {
        self.submit_one(f, a, None)
    }

    /// [`apply_async`](Self::apply_async) with Python's `callback` and
    /// `error_callback`: one of them runs in this process when the task
    /// ends (see "Callbacks" in the policy table). A result that cannot
    /// be decoded goes to `error_callback`.
    pub fn apply_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        a: A,
        callback: impl FnOnce(R) + Send + 'static,
        error_callback: impl FnOnce(TaskError) + Send + 'static,
    ) -> Result<AsyncResult<R>, PoolError>
    where
        A: Message + 'static,
        R: Message + 'static,
    {
        let cb = Box::new(
            move |o: &core::Outcome| match results::decode_outcome::<R>(o) {
                Ok(r) => callback(r),
                Err(e) => error_callback(e),
            },
        );
        self.submit_one(f, a, Some(cb))
    }

    fn submit_one<A, R>(
        &self,
        f: fn(A) -> R,
        a: A,
        cb: Option<results::Callback>,
    ) -> Result<AsyncResult<R>, PoolError>
    where
        A: Message + 'static,
        R: Message + 'static,
    {
        let cell = Cell::new(cb);
        let res = AsyncResult {
            cell: cell.clone(),
            shared: self.shared.clone(),
            _r: PhantomData,
        };
        let mut args = Args::with_capacity(1);
        args.push(&a);
        let job = Arc::new(Job {
            token: Self::token(f),
            args,
            sink: cell,
            first: 0,
        });
        if job.args.failed().is_empty() {
            self.shared.submit(job, 1)?;
        } else {
            job.deliver_failed();
        }
        Ok(res)
    }

    /// Python's `map`: `f` over every item, in chunks of Python's default
    /// size; the values in input order, or the first failed item.
    pub fn map<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Message + 'static,
        R: Message + 'static,
    {
        self.map_async(f, items, None)?.get()
    }

    /// [`map`](Self::map) with chunks of `chunksize` items.
    pub fn map_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Message + 'static,
        R: Message + 'static,
    {
        self.map_async(f, items, Some(chunksize))?.get()
    }

    /// Python's `starmap`: a map whose items are tuples, given to `f`
    /// whole (`fn add((a, b): (u64, u64)) -> u64`).
    pub fn starmap<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<R>, PoolError>
    where
        A: Message + 'static,
        R: Message + 'static,
    {
        self.map(f, items)
    }

    /// Python's `map_async` (`chunksize: None` for the default rule).
    pub fn map_async<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<MapResult<R>, PoolError>
    where
        A: Message + 'static,
        R: Message + 'static,
    {
        self.map_inner(f, items, chunksize, None)
    }

    /// [`map_async`](Self::map_async) with Python's `callback` (all the
    /// values) and `error_callback` (the first failed item).
    pub fn map_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        callback: impl FnOnce(Vec<R>) + Send + 'static,
        error_callback: impl FnOnce(PoolError) + Send + 'static,
    ) -> Result<MapResult<R>, PoolError>
    where
        A: Message + 'static,
        R: Message + 'static,
    {
        let cb: results::BatchCallback = Box::new(move |b: &Batch| match b.collect::<R>() {
            Ok(v) => callback(v),
            Err(e) => error_callback(e),
        });
        self.map_inner(f, items, chunksize, Some(cb))
    }

    fn map_inner<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        cb: Option<results::BatchCallback>,
    ) -> Result<MapResult<R>, PoolError>
    where
        A: Message + 'static,
        R: Message + 'static,
    {
        let items = items.into_iter();
        let mut args = Args::with_capacity(items.size_hint().0);
        for a in items {
            args.push(&a);
        }
        let n = args.len();
        let chunk = chunksize.unwrap_or_else(|| default_chunksize(n, self.workers));
        let batch = Batch::new(n, cb);
        let job = Arc::new(Job {
            token: Self::token(f),
            args,
            sink: batch.clone(),
            first: 0,
        });
        if job.args.failed().len() < n {
            self.shared.submit(job.clone(), chunk)?;
        }
        job.deliver_failed();
        Ok(MapResult {
            batch,
            shared: self.shared.clone(),
            _r: PhantomData,
        })
    }

    /// Python's `imap`: lazy, ordered, one item per task.
    pub fn imap<I, A, R>(&self, f: fn(A) -> R, items: I) -> Imap<'_, I::IntoIter, A, R>
    where
        I: IntoIterator<Item = A>,
        A: Message + 'static,
        R: Message + 'static,
    {
        self.imap_chunked(f, items, 1)
    }

    /// [`imap`](Self::imap) with chunks of `chunksize` items.
    pub fn imap_chunked<I, A, R>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Imap<'_, I::IntoIter, A, R>
    where
        I: IntoIterator<Item = A>,
        A: Message + 'static,
        R: Message + 'static,
    {
        self.imap_inner(f, items, chunksize, true)
    }

    /// Python's `imap_unordered`: lazy, in completion order.
    pub fn imap_unordered<I, A, R>(&self, f: fn(A) -> R, items: I) -> Imap<'_, I::IntoIter, A, R>
    where
        I: IntoIterator<Item = A>,
        A: Message + 'static,
        R: Message + 'static,
    {
        self.imap_unordered_chunked(f, items, 1)
    }

    /// [`imap_unordered`](Self::imap_unordered) with chunks of
    /// `chunksize` items.
    pub fn imap_unordered_chunked<I, A, R>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> Imap<'_, I::IntoIter, A, R>
    where
        I: IntoIterator<Item = A>,
        A: Message + 'static,
        R: Message + 'static,
    {
        self.imap_inner(f, items, chunksize, false)
    }

    fn imap_inner<I, A, R>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunk: usize,
        ordered: bool,
    ) -> Imap<'_, I::IntoIter, A, R>
    where
        I: IntoIterator<Item = A>,
        A: Message + 'static,
        R: Message + 'static,
    {
        // Enough in flight to keep every worker's prefetch full twice over.
        let window = 2 * self.workers * self.shared.cfg.depth * chunk.max(1);
        Imap::new(
            &self.shared,
            items.into_iter(),
            Self::token(f),
            chunk,
            window,
            ordered,
        )
    }

    /// No more tasks (Python's `close`); running and queued ones finish.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Waits for every task, then for the workers to exit (Python's
    /// `join`). [`PoolError::NotClosed`] unless [`close`](Self::close) or
    /// [`terminate`](Self::terminate) came first.
    pub fn join(&self) -> Result<(), PoolError> {
        self.shared.join()
    }

    /// Kills every worker now (`SIGKILL`) and reaps them; every
    /// unfinished result fails with [`TaskError::Terminated`].
    pub fn terminate(&self) {
        self.shared.terminate();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.terminate();
    }
}
