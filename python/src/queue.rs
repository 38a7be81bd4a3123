//! `Queue`, `JoinableQueue` and `SimpleQueue` over the crate's MPMC queue.
//!
//! A message is one slot: a tag byte, then either the bytes of a `bytes`
//! object (sent as they are, no pickling) or a pickle. A message too large
//! for a slot is spilled ([`shmprim::spill`]) into a segment of its own whose
//! ticket travels in the slot; the receiver copies it out and removes the name.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use shmprim::spill::{Spill, Ticket};
use shmprim::Error;

use crate::sync::{name_of, reduce};
use crate::{create_named, dumps, loads, py_err, timeout_of, wait, PREFIX};

/// The message is a pickle.
const TAG_PICKLE: u8 = 0;
/// The message is the payload of a `bytes` object.
const TAG_BYTES: u8 = 1;
/// Bit added to a tag: the slot holds a spill ticket.
const TAG_SPILLED: u8 = 2;

/// Slot size of new queues: room for typical pickled tuples; larger
/// messages spill.
const SLOT_SIZE: usize = 256;
/// Capacity of a queue created with `maxsize <= 0` (Python: unbounded).
const DEFAULT_CAPACITY: usize = 8192;

/// The encoded form of one object.
struct Encoded<'py> {
    tag: u8,
    /// A `bytes` object: the payload itself, or a pickle.
    body: Bound<'py, PyBytes>,
}

fn encode<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Encoded<'py>> {
    if obj.is_exact_instance_of::<PyBytes>() {
        Ok(Encoded {
            tag: TAG_BYTES,
            body: obj.downcast::<PyBytes>()?.clone(),
        })
    } else {
        Ok(Encoded {
            tag: TAG_PICKLE,
            body: dumps(obj)?,
        })
    }
}

/// One object as a tagged message (what shared containers store).
pub(crate) fn encode_value(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let e = encode(obj)?;
    let body = e.body.as_bytes();
    let mut v = Vec::with_capacity(body.len() + 1);
    v.push(e.tag);
    v.extend_from_slice(body);
    Ok(v)
}

/// The object of a message made by [`encode_value`].
pub(crate) fn decode_value<'py>(py: Python<'py>, msg: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    decode(py, msg)
}

/// Parks `data` in a spill segment of its own (the crate's
/// [`shmprim::spill`]) and returns the ticket that travels in the slot; the
/// receiver takes over removing the name.
fn spill(data: &[u8]) -> PyResult<[u8; Ticket::SIZE]> {
    let spill = create_named(|n| Spill::create(n, data))?;
    Ok(spill.hand_off().to_bytes())
}

/// Reads a spilled message and removes its segment. Only this package's
/// spill names are accepted: a hostile ticket must not make a receiver
/// read or remove someone else's segment.
fn unspill(ticket: &[u8]) -> PyResult<Vec<u8>> {
    let ticket = Ticket::from_bytes(ticket).map_err(py_err)?;
    let ours = ticket
        .name()
        .map_err(py_err)?
        .strip_prefix('/')
        .and_then(|n| n.strip_prefix(PREFIX))
        .is_some_and(|n| n.starts_with('-'));
    if !ours {
        return Err(py_err(Error::Corrupt(
            "a spilled message names no spill segment",
        )));
    }
    ticket.take().map_err(py_err)
}

/// Decodes one message (a tag byte, then the body).
fn decode<'py>(py: Python<'py>, msg: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let (&tag, body) = msg
        .split_first()
        .ok_or_else(|| py_err(Error::Corrupt("empty queue message")))?;
    let spilled;
    let body = if tag & TAG_SPILLED != 0 {
        spilled = unspill(body)?;
        &spilled[..]
    } else {
        body
    };
    match tag & !TAG_SPILLED {
        TAG_BYTES => Ok(PyBytes::new(py, body).into_any()),
        TAG_PICKLE => loads(py, body),
        _ => Err(py_err(Error::Corrupt("unknown queue message tag"))),
    }
}

/// A queue, joinable or not.
enum Handle {
    Plain(shmprim::Queue),
    Joinable(shmprim::JoinableQueue),
}

/// The shared part of the three queue classes.
pub(crate) struct Core {
    q: Handle,
    /// `close()` was called on this handle (Python: this process will not
    /// use it again); the queue itself stays open for the others.
    closed: AtomicBool,
}

impl Core {
    fn queue(&self) -> &shmprim::Queue {
        match &self.q {
            Handle::Plain(q) => q,
            Handle::Joinable(q) => q.as_queue(),
        }
    }

    fn joinable(&self) -> PyResult<&shmprim::JoinableQueue> {
        match &self.q {
            Handle::Joinable(q) => Ok(q),
            Handle::Plain(_) => Err(PyValueError::new_err("not a JoinableQueue")),
        }
    }

    fn new(q: Handle) -> Core {
        Core {
            q,
            closed: AtomicBool::new(false),
        }
    }

    fn check_open(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(PyValueError::new_err("Queue is closed"));
        }
        Ok(())
    }

    fn name(&self) -> PyResult<String> {
        name_of(self.queue().segment())
    }

    fn put(&self, obj: &Bound<'_, PyAny>, timeout: Option<Duration>) -> PyResult<()> {
        self.check_open()?;
        let py = obj.py();
        let q = self.queue();
        let enc = encode(obj)?;
        let body = enc.body.as_bytes();
        let spilled;
        let (tag, body) = if body.len() < q.slot_size() {
            (enc.tag, body)
        } else {
            spilled = spill(body)?;
            (enc.tag | TAG_SPILLED, &spilled[..])
        };
        let r = match q.try_reserve(body.len() + 1) {
            Ok(mut slot) => {
                slot[0] = tag;
                slot[1..].copy_from_slice(body);
                slot.commit();
                Ok(())
            }
            Err(Error::Full) if timeout != Some(Duration::ZERO) => {
                let mut msg = Vec::with_capacity(body.len() + 1);
                msg.push(tag);
                msg.extend_from_slice(body);
                match wait(py, timeout, |d| q.send_bytes_timeout(&msg, d)) {
                    Ok(Some(())) => Ok(()),
                    Ok(None) => Err(py_err(Error::Full)),
                    Err(f) => Err(f.into_py_err(py_err)),
                }
            }
            Err(e) => Err(py_err(e)),
        };
        if r.is_err() && tag & TAG_SPILLED != 0 {
            if let Ok(ticket) = Ticket::from_bytes(body) {
                let _ = ticket.discard();
            }
        }
        r
    }

    fn get<'py>(&self, py: Python<'py>, timeout: Option<Duration>) -> PyResult<Bound<'py, PyAny>> {
        self.check_open()?;
        let q = self.queue();
        match q.try_recv_in_place() {
            Ok(m) => {
                if m.first() == Some(&TAG_BYTES) {
                    return Ok(PyBytes::new(py, &m[1..]).into_any());
                }
                let owned = m.to_vec();
                drop(m);
                return decode(py, &owned);
            }
            Err(Error::Empty) if timeout != Some(Duration::ZERO) => {}
            Err(Error::Empty) => return Err(empty()),
            Err(e) => return Err(py_err(e)),
        }
        match wait(py, timeout, |d| q.recv_bytes_timeout(d)) {
            Ok(Some(m)) => decode(py, &m),
            Ok(None) => Err(empty()),
            Err(f) => Err(f.into_py_err(py_err)),
        }
    }
}

fn empty() -> PyErr {
    py_err(Error::Empty)
}

fn make(maxsize: isize, joinable: bool) -> PyResult<Core> {
    let cap = if maxsize <= 0 {
        DEFAULT_CAPACITY
    } else {
        maxsize as usize
    };
    Ok(Core::new(if joinable {
        Handle::Joinable(create_named(|n| {
            shmprim::JoinableQueue::create(n, cap, SLOT_SIZE)
        })?)
    } else {
        Handle::Plain(create_named(|n| shmprim::Queue::create(n, cap, SLOT_SIZE))?)
    }))
}

fn open(name: &str, joinable: bool) -> PyResult<Core> {
    Ok(Core::new(if joinable {
        Handle::Joinable(shmprim::JoinableQueue::open(name).map_err(py_err)?)
    } else {
        Handle::Plain(shmprim::Queue::open(name).map_err(py_err)?)
    }))
}

/// `multiprocessing.Queue(maxsize=0)`. `maxsize <= 0` gives a queue of
/// 8192 messages (Python's is unbounded).
#[pyclass(module = "shmprim._native", frozen, subclass)]
pub struct Queue {
    core: Core,
}

#[pymethods]
impl Queue {
    #[new]
    #[pyo3(signature = (maxsize=0))]
    fn new(maxsize: isize) -> PyResult<Self> {
        Ok(Queue {
            core: make(maxsize, false)?,
        })
    }

    #[pyo3(signature = (obj, block=true, timeout=None))]
    fn put(&self, obj: &Bound<'_, PyAny>, block: bool, timeout: Option<f64>) -> PyResult<()> {
        self.core.put(obj, timeout_of(block, timeout)?)
    }

    fn put_nowait(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.core.put(obj, Some(Duration::ZERO))
    }

    #[pyo3(signature = (block=true, timeout=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.core.get(py, timeout_of(block, timeout)?)
    }

    fn get_nowait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.core.get(py, Some(Duration::ZERO))
    }

    fn qsize(&self) -> usize {
        self.core.queue().len()
    }

    fn empty(&self) -> bool {
        self.core.queue().is_empty()
    }

    fn full(&self) -> bool {
        self.core.queue().is_full()
    }

    /// This process will put no more (the queue stays open for others).
    fn close(&self) {
        self.core.closed.store(true, Ordering::Relaxed);
    }

    /// Nothing to wait for: there is no feeder thread.
    fn join_thread(&self) {}

    /// Nothing to cancel: there is no feeder thread.
    fn cancel_join_thread(&self) {}

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        reduce(
            py,
            "_open_queue",
            (self.core.name()?, self.core.joinable().is_ok()),
        )
    }
}

/// `multiprocessing.JoinableQueue(maxsize=0)`.
#[pyclass(module = "shmprim._native", frozen, extends = Queue)]
pub struct JoinableQueue {}

#[pymethods]
impl JoinableQueue {
    #[new]
    #[pyo3(signature = (maxsize=0))]
    fn new(maxsize: isize) -> PyResult<(Self, Queue)> {
        Ok((
            JoinableQueue {},
            Queue {
                core: make(maxsize, true)?,
            },
        ))
    }

    fn task_done(slf: PyRef<'_, Self>) -> PyResult<()> {
        slf.as_super()
            .core
            .joinable()?
            .task_done()
            .map_err(|e| match e {
                Error::InvalidArgument(_) => {
                    PyValueError::new_err("task_done() called too many times")
                }
                e => py_err(e),
            })
    }

    fn join(slf: PyRef<'_, Self>, py: Python<'_>) -> PyResult<()> {
        let q = slf.as_super().core.joinable()?;
        match q.join_timeout(Duration::ZERO) {
            Ok(()) => return Ok(()),
            Err(Error::Timeout) => {}
            Err(e) => return Err(py_err(e)),
        }
        wait(py, None, |d| q.join_timeout(d))
            .map(|_| ())
            .map_err(|f| f.into_py_err(py_err))
    }
}

/// `multiprocessing.SimpleQueue()`.
#[pyclass(module = "shmprim._native", frozen)]
pub struct SimpleQueue {
    core: Core,
}

#[pymethods]
impl SimpleQueue {
    #[new]
    fn new() -> PyResult<Self> {
        Ok(SimpleQueue {
            core: make(0, false)?,
        })
    }

    fn put(&self, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        self.core.put(obj, None)
    }

    fn get<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.core.get(py, None)
    }

    fn empty(&self) -> bool {
        self.core.queue().is_empty()
    }

    fn close(&self) {
        self.core.closed.store(true, Ordering::Relaxed);
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        reduce(py, "_open_simple_queue", (self.core.name()?,))
    }
}

#[pyfunction]
fn _open_queue(py: Python<'_>, name: &str, joinable: bool) -> PyResult<PyObject> {
    let core = open(name, joinable)?;
    if joinable {
        let init = pyo3::PyClassInitializer::from(Queue { core }).add_subclass(JoinableQueue {});
        Ok(Py::new(py, init)?.into_any())
    } else {
        Ok(Py::new(py, Queue { core })?.into_any())
    }
}

#[pyfunction]
fn _open_simple_queue(name: &str) -> PyResult<SimpleQueue> {
    Ok(SimpleQueue {
        core: open(name, false)?,
    })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Queue>()?;
    m.add_class::<JoinableQueue>()?;
    m.add_class::<SimpleQueue>()?;
    m.add_function(wrap_pyfunction!(_open_queue, m)?)?;
    m.add_function(wrap_pyfunction!(_open_simple_queue, m)?)?;
    Ok(())
}
