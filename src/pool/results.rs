//! Handles on results that arrive later: [`AsyncResult`] (one task),
//! [`MapResult`] (a whole map), [`Imap`] (a lazy stream).

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::args::{Args, Job};
use super::core::{Outcome, Shared, Sink};
use super::{PoolError, TaskError};
use crate::process::{decode, Message};

fn take<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn decode_outcome<R: Message>(o: &Outcome) -> Result<R, TaskError> {
    match o {
        Ok(b) => decode_result(b),
        Err(e) => Err(e.clone()),
    }
}

fn decode_result<R: Message>(b: &[u8]) -> Result<R, TaskError> {
    decode::<R>(b, &mut []).map_err(|e| TaskError::DecodeResult(e.to_string()))
}

/// What one task runs when its outcome arrives.
pub(crate) type Callback = Box<dyn FnOnce(&Outcome) + Send>;

/// One task's outcome, and what to run when it arrives.
pub(crate) struct Cell {
    outcome: Mutex<Option<Outcome>>,
    callback: Mutex<Option<Callback>>,
}

impl Cell {
    pub(crate) fn new(callback: Option<Callback>) -> Arc<Cell> {
        Arc::new(Cell {
            outcome: Mutex::new(None),
            callback: Mutex::new(callback),
        })
    }

    fn ready(&self) -> bool {
        take(&self.outcome).is_some()
    }
}

impl Sink for Cell {
    fn deliver(&self, _: usize, outcome: Result<&[u8], TaskError>) {
        let outcome = outcome.map(<[u8]>::to_vec);
        let cb = take(&self.callback).take();
        if let Some(cb) = cb {
            cb(&outcome);
        }
        *take(&self.outcome) = Some(outcome);
    }
}

/// The result of [`Pool::apply_async`](super::Pool::apply_async): Python's
/// `AsyncResult`.
///
/// Waiting on it drives the pool (see [`Pool`](super::Pool), "Progress").
/// The handle keeps the pool's shared state alive, not its workers:
/// after the [`Pool`](super::Pool) is dropped, an unfinished result
/// fails with [`TaskError::Terminated`].
pub struct AsyncResult<R> {
    pub(crate) cell: Arc<Cell>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) _r: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.cell.ready())
            .finish()
    }
}

impl<R: Message> AsyncResult<R> {
    /// Waits for the task and returns its result (it may be asked again).
    pub fn get(&self) -> Result<R, TaskError> {
        self.wait();
        self.value()
    }

    /// [`get`](Self::get) for at most `timeout`: [`TaskError::NotReady`]
    /// if the task has not finished by then (it still runs).
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, TaskError> {
        if self.wait_timeout(timeout) {
            self.value()
        } else {
            Err(TaskError::NotReady)
        }
    }

    fn value(&self) -> Result<R, TaskError> {
        match &*take(&self.cell.outcome) {
            Some(o) => decode_outcome(o),
            None => Err(TaskError::NotReady),
        }
    }

    /// Waits until the task has finished.
    pub fn wait(&self) {
        let cell = &self.cell;
        self.shared.wait_until(&|| cell.ready(), None);
    }

    /// Waits at most `timeout`; whether the task has finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let cell = &self.cell;
        self.shared
            .wait_until(&|| cell.ready(), Some(Instant::now() + timeout))
    }

    /// Whether the task has finished (no waiting; the pool is not driven).
    pub fn ready(&self) -> bool {
        self.cell.ready()
    }

    /// Whether the task finished without error: `None` while it runs
    /// (Python raises `ValueError` there).
    pub fn successful(&self) -> Option<bool> {
        take(&self.cell.outcome).as_ref().map(|o| match o {
            Ok(b) => decode::<R>(b, &mut []).is_ok(),
            Err(_) => false,
        })
    }
}

/// The outcomes of a map, filled in any order: each item's result bytes
/// appended to one buffer (no allocation per item), or its error.
pub(crate) struct Batch {
    slots: Mutex<Slots>,
    left: AtomicUsize,
    callback: Mutex<Option<BatchCallback>>,
}

/// A map's outcomes: item `i`'s bytes are `bytes[range]` of its entry.
struct Slots {
    bytes: Vec<u8>,
    at: Vec<Option<Result<std::ops::Range<usize>, TaskError>>>,
}

impl Slots {
    /// Item `index`'s outcome, decoded.
    fn decode<R: Message>(&self, index: usize) -> Result<R, TaskError> {
        match self.at.get(index) {
            Some(Some(Ok(r))) => decode_result(&self.bytes[r.clone()]),
            Some(Some(Err(e))) => Err(e.clone()),
            _ => Err(TaskError::NotReady),
        }
    }
}

/// What a map runs when its last item arrives.
pub(crate) type BatchCallback = Box<dyn FnOnce(&Batch) + Send>;

impl Batch {
    pub(crate) fn new(n: usize, callback: Option<BatchCallback>) -> Arc<Batch> {
        Arc::new(Batch {
            slots: Mutex::new(Slots {
                bytes: Vec::new(),
                at: (0..n).map(|_| None).collect(),
            }),
            left: AtomicUsize::new(n),
            callback: Mutex::new(callback),
        })
    }

    fn done(&self) -> bool {
        self.left.load(Ordering::Acquire) == 0
    }

    /// Every value, or the first failed item in input order.
    pub(crate) fn collect<R: Message>(&self) -> Result<Vec<R>, PoolError> {
        let slots = take(&self.slots);
        let mut out = Vec::with_capacity(slots.at.len());
        for index in 0..slots.at.len() {
            out.push(
                slots
                    .decode(index)
                    .map_err(|error| PoolError::Item { index, error })?,
            );
        }
        Ok(out)
    }
}

impl Sink for Batch {
    fn deliver(&self, index: usize, outcome: Result<&[u8], TaskError>) {
        {
            let mut s = take(&self.slots);
            let Slots { bytes, at } = &mut *s;
            match at.get_mut(index) {
                Some(slot @ None) => {
                    *slot = Some(outcome.map(|b| {
                        let start = bytes.len();
                        bytes.extend_from_slice(b);
                        start..bytes.len()
                    }));
                }
                _ => return,
            }
        }
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            let cb = take(&self.callback).take();
            if let Some(cb) = cb {
                cb(self);
            }
        }
    }
}

/// The result of [`Pool::map_async`](super::Pool::map_async): Python's
/// `MapResult`.
pub struct MapResult<R> {
    pub(crate) batch: Arc<Batch>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) _r: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for MapResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapResult")
            .field("left", &self.batch.left.load(Ordering::Relaxed))
            .finish()
    }
}

impl<R: Message> MapResult<R> {
    /// Waits for every item; the values in input order, or the first
    /// failed item ([`PoolError::Item`], with its index).
    pub fn get(&self) -> Result<Vec<R>, PoolError> {
        self.wait();
        self.batch.collect()
    }

    /// [`get`](Self::get) for at most `timeout` (an unfinished map is
    /// `PoolError::Item` with [`TaskError::NotReady`] for its first
    /// unfinished item).
    pub fn get_timeout(&self, timeout: Duration) -> Result<Vec<R>, PoolError> {
        self.wait_timeout(timeout);
        self.batch.collect()
    }

    /// Every item's own outcome, in input order (waits for all).
    pub fn results(&self) -> Vec<Result<R, TaskError>> {
        self.wait();
        let slots = take(&self.batch.slots);
        (0..slots.at.len()).map(|i| slots.decode(i)).collect()
    }

    /// Waits until every item has finished.
    pub fn wait(&self) {
        let b = &self.batch;
        self.shared.wait_until(&|| b.done(), None);
    }

    /// Waits at most `timeout`; whether every item has finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let b = &self.batch;
        self.shared
            .wait_until(&|| b.done(), Some(Instant::now() + timeout))
    }

    /// Whether every item has finished.
    pub fn ready(&self) -> bool {
        self.batch.done()
    }

    /// Whether every item succeeded: `None` while some still run.
    pub fn successful(&self) -> Option<bool> {
        self.ready().then(|| {
            take(&self.batch.slots)
                .at
                .iter()
                .all(|o| matches!(o, Some(Ok(_))))
        })
    }
}

/// Outcomes of a lazy map, kept until the iterator hands them out.
pub(crate) struct Stream {
    ordered: bool,
    by_index: Mutex<HashMap<usize, Outcome>>,
    arrived: Mutex<VecDeque<Outcome>>,
}

impl Sink for Stream {
    fn deliver(&self, index: usize, outcome: Result<&[u8], TaskError>) {
        let outcome = outcome.map(<[u8]>::to_vec);
        if self.ordered {
            take(&self.by_index).insert(index, outcome);
        } else {
            take(&self.arrived).push_back(outcome);
        }
    }
}

/// The iterator of [`Pool::imap`](super::Pool::imap) and
/// [`Pool::imap_unordered`](super::Pool::imap_unordered): lazy over any
/// input iterator, infinite ones included, with at most a bounded number
/// of items in flight (submitted and not yet handed out).
///
/// Each step yields one item's own outcome: a failed item does not end
/// the stream. Dropping the iterator stops submitting; items already in
/// flight still run, and their results are dropped.
pub struct Imap<'p, I, A, R> {
    pub(crate) shared: &'p Arc<Shared>,
    pub(crate) input: I,
    pub(crate) token: Arc<[u8]>,
    pub(crate) chunk: usize,
    pub(crate) window: usize,
    pub(crate) stream: Arc<Stream>,
    pub(crate) submitted: usize,
    pub(crate) handed: usize,
    pub(crate) exhausted: bool,
    pub(crate) failed: Option<PoolError>,
    pub(crate) _t: PhantomData<fn(A) -> R>,
}

impl<I, A, R> std::fmt::Debug for Imap<'_, I, A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imap")
            .field("submitted", &self.submitted)
            .field("handed", &self.handed)
            .field("exhausted", &self.exhausted)
            .finish()
    }
}

impl<'p, I, A, R> Imap<'p, I, A, R>
where
    I: Iterator<Item = A>,
    A: Message,
    R: Message,
{
    pub(crate) fn new(
        shared: &'p Arc<Shared>,
        input: I,
        token: Arc<[u8]>,
        chunk: usize,
        window: usize,
        ordered: bool,
    ) -> Self {
        Imap {
            shared,
            input,
            token,
            chunk: chunk.max(1),
            window: window.max(chunk.max(1)),
            stream: Arc::new(Stream {
                ordered,
                by_index: Mutex::new(HashMap::new()),
                arrived: Mutex::new(VecDeque::new()),
            }),
            submitted: 0,
            handed: 0,
            exhausted: false,
            failed: None,
            _t: PhantomData,
        }
    }

    /// Submits chunks until the window is full or the input ends.
    fn top_up(&mut self) {
        while !self.exhausted && self.submitted - self.handed + self.chunk <= self.window {
            let mut args = Args::with_capacity(self.chunk);
            for a in self.input.by_ref().take(self.chunk) {
                args.push(&a);
            }
            let n = args.len();
            if n < self.chunk {
                self.exhausted = true;
            }
            if n == 0 {
                return;
            }
            let job = Arc::new(Job {
                token: self.token.clone(),
                args,
                sink: self.stream.clone(),
                first: self.submitted,
            });
            // Items that could not be encoded are recorded; the others
            // travel (in input order, in as few tasks as the gaps allow).
            if job.args.failed().len() < n {
                if let Err(e) = self.shared.submit(job.clone(), self.chunk) {
                    self.failed = Some(e);
                    return;
                }
            }
            job.deliver_failed();
            self.submitted += n;
        }
    }

    fn pop(&self) -> Option<Outcome> {
        if self.stream.ordered {
            take(&self.stream.by_index).remove(&self.handed)
        } else {
            take(&self.stream.arrived).pop_front()
        }
    }
}

impl<I, A, R> Iterator for Imap<'_, I, A, R>
where
    I: Iterator<Item = A>,
    A: Message,
    R: Message,
{
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.top_up();
        if self.handed == self.submitted {
            return match self.failed.take() {
                Some(PoolError::Terminated) => Some(Err(TaskError::Terminated)),
                Some(e) => Some(Err(TaskError::Broken(e.to_string()))),
                None => None,
            };
        }
        let mut got = self.pop();
        if got.is_none() {
            let s = &self.stream;
            let handed = self.handed;
            self.shared.wait_until(
                &|| {
                    if s.ordered {
                        take(&s.by_index).contains_key(&handed)
                    } else {
                        !take(&s.arrived).is_empty()
                    }
                },
                None,
            );
            got = self.pop();
        }
        self.handed += 1;
        Some(got.map_or(Err(TaskError::Terminated), |o| decode_outcome(&o)))
    }
}
