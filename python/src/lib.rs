//! The `shmprim` Python package: the crate's handles bound with PyO3, with
//! `multiprocessing`'s names, signatures and exceptions.
//!
//! This crate adds no synchronisation of its own. What it does is the
//! Python object protocol: objects pickle by the name of their segment (so
//! they travel to `spawn` and `forkserver` children and through `Pool`),
//! messages are pickled into the crate's byte messages, buffers reach the
//! crate through the buffer protocol, and every blocking call releases the
//! GIL and waits in slices so that Ctrl-C interrupts it.

use std::time::{Duration, Instant};

use pyo3::exceptions::{
    PyBrokenPipeError, PyEOFError, PyFileExistsError, PyFileNotFoundError, PyOSError,
    PyPermissionError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::PyBytes;
use shmprim::Error;

mod buffer;
mod containers;
mod data;
mod pipe;
mod queue;
mod shm;
mod sync;

pyo3::create_exception!(
    shmprim,
    OwnerDiedError,
    pyo3::exceptions::PyRuntimeError,
    "The previous holder of a lock died holding it. Raised by `acquire()` \
     (and `with`) with the lock now held by the caller, who should repair \
     the data it guards and then `release()` it; raised by `Value.value` / \
     `Array[i]` after the lock was marked consistent and released again."
);

/// Longest a single wait runs with the GIL released before signals are
/// checked (Ctrl-C) and the wait goes on.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// Why a wait ended without a result.
pub(crate) enum Fail {
    /// A Python exception (a signal handler raised, or a conversion).
    Py(PyErr),
    /// The crate's error, for the caller to translate.
    Crate(Error),
}

impl From<PyErr> for Fail {
    fn from(e: PyErr) -> Self {
        Fail::Py(e)
    }
}

impl Fail {
    /// Translates a crate error with `map`; Python errors pass through.
    pub(crate) fn into_py_err(self, map: impl FnOnce(Error) -> PyErr) -> PyErr {
        match self {
            Fail::Py(e) => e,
            Fail::Crate(e) => map(e),
        }
    }
}

/// Moves a value that is not `Send` into [`Python::allow_threads`], which
/// runs its closure on the calling thread: nothing crosses a thread.
pub(crate) struct SameThread<T>(pub T);

// SAFETY: only used to carry values into `allow_threads` closures, which
// run on the thread that created them (PyO3 merely releases the GIL around
// the call); the value never reaches another thread.
unsafe impl<T> Send for SameThread<T> {}

impl<T> SameThread<T> {
    /// The value (a method, so that closures capture the whole carrier).
    pub(crate) fn get(&mut self) -> &mut T {
        &mut self.0
    }
}

/// Python's `timeout` argument: `None` waits for ever; negative counts as
/// zero (as in `multiprocessing`); NaN is a `ValueError`.
pub(crate) fn timeout_of(block: bool, timeout: Option<f64>) -> PyResult<Option<Duration>> {
    if !block {
        return Ok(Some(Duration::ZERO));
    }
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() => Err(PyValueError::new_err("timeout must not be NaN")),
        Some(t) if t <= 0.0 => Ok(Some(Duration::ZERO)),
        Some(t) => Ok(Some(
            Duration::try_from_secs_f64(t).unwrap_or(Duration::MAX),
        )),
    }
}

/// Waits with the GIL released: runs `attempt(slice)` (a bounded wait of
/// the crate) in slices of at most [`SLICE`], checking for signals between
/// slices, until it returns something other than [`Error::Timeout`] or
/// `timeout` has elapsed (`Ok(None)`). `Some(Duration::ZERO)` makes one
/// attempt.
pub(crate) fn wait<T: Send>(
    py: Python<'_>,
    timeout: Option<Duration>,
    mut attempt: impl FnMut(Duration) -> shmprim::Result<T> + Send,
) -> Result<Option<T>, Fail> {
    let start = Instant::now();
    loop {
        let left = match timeout {
            None => SLICE,
            Some(t) => t.saturating_sub(start.elapsed()),
        };
        let slice = left.min(SLICE);
        match py.allow_threads(|| attempt(slice)) {
            Err(Error::Timeout) => {
                py.check_signals()?;
                if timeout.is_some_and(|t| start.elapsed() >= t) {
                    return Ok(None);
                }
            }
            Err(e) => return Err(Fail::Crate(e)),
            Ok(v) => return Ok(Some(v)),
        }
    }
}

/// The crate's errors as the exceptions `multiprocessing` raises for them,
/// where no caller-specific rule applies.
pub(crate) fn py_err(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::OwnerDied => OwnerDiedError::new_err(msg),
        Error::NotFound => PyFileNotFoundError::new_err(msg),
        Error::AlreadyExists => PyFileExistsError::new_err(msg),
        Error::PermissionDenied => PyPermissionError::new_err(msg),
        Error::InvalidArgument(_) | Error::InvalidName { .. } | Error::OutOfRange { .. } => {
            PyValueError::new_err(msg)
        }
        Error::Deadlock | Error::NotOwner | Error::NotRecoverable => PyRuntimeError::new_err(msg),
        Error::Disconnected => PyEOFError::new_err(msg),
        Error::Empty => exc(std_queue_empty(), msg),
        Error::Full => exc(std_queue_full(), msg),
        Error::BrokenBarrier => Python::with_gil(|py| {
            match py
                .import("threading")
                .and_then(|m| m.getattr("BrokenBarrierError"))
            {
                Ok(t) => PyErr::from_type(t.downcast_into().expect("a type"), msg),
                Err(e) => e,
            }
        }),
        _ => PyOSError::new_err(msg),
    }
}

/// Sends that find the peer gone: `BrokenPipeError`.
pub(crate) fn send_err(e: Error) -> PyErr {
    match e {
        Error::Disconnected => PyBrokenPipeError::new_err("the other end closed or died"),
        e => py_err(e),
    }
}

/// An exception of a type fetched from a module.
fn exc(ty: PyResult<Py<pyo3::types::PyType>>, msg: String) -> PyErr {
    match ty {
        Ok(t) => Python::with_gil(|py| PyErr::from_type(t.into_bound(py), msg)),
        Err(e) => e,
    }
}

/// Fetches `module.name` once per interpreter.
fn cached(
    cell: &'static GILOnceCell<Py<PyAny>>,
    py: Python<'_>,
    module: &str,
    name: &str,
) -> PyResult<Py<PyAny>> {
    cell.get_or_try_init(py, || Ok(py.import(module)?.getattr(name)?.unbind()))
        .map(|o| o.clone_ref(py))
}

fn std_type(
    cell: &'static GILOnceCell<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<Py<pyo3::types::PyType>> {
    Python::with_gil(|py| {
        Ok(cached(cell, py, module, name)?
            .into_bound(py)
            .downcast_into::<pyo3::types::PyType>()?
            .unbind())
    })
}

/// `queue.Empty`.
pub(crate) fn std_queue_empty() -> PyResult<Py<pyo3::types::PyType>> {
    static T: GILOnceCell<Py<PyAny>> = GILOnceCell::new();
    std_type(&T, "queue", "Empty")
}

/// `queue.Full`.
pub(crate) fn std_queue_full() -> PyResult<Py<pyo3::types::PyType>> {
    static T: GILOnceCell<Py<PyAny>> = GILOnceCell::new();
    std_type(&T, "queue", "Full")
}

/// `multiprocessing.BufferTooShort(message)`.
pub(crate) fn buffer_too_short(py: Python<'_>, message: &[u8]) -> PyErr {
    static T: GILOnceCell<Py<PyAny>> = GILOnceCell::new();
    match std_type(&T, "multiprocessing", "BufferTooShort") {
        Ok(t) => PyErr::from_type(t.into_bound(py), (PyBytes::new(py, message).unbind(),)),
        Err(e) => e,
    }
}

/// `pickle.dumps(obj, HIGHEST_PROTOCOL)`.
pub(crate) fn dumps<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    static F: GILOnceCell<Py<PyAny>> = GILOnceCell::new();
    let py = obj.py();
    let f = cached(&F, py, "pickle", "dumps")?;
    Ok(f.bind(py).call1((obj, -1))?.downcast_into::<PyBytes>()?)
}

/// `pickle.loads(bytes)`.
pub(crate) fn loads<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    static F: GILOnceCell<Py<PyAny>> = GILOnceCell::new();
    let f = cached(&F, py, "pickle", "loads")?;
    f.bind(py).call1((PyBytes::new(py, bytes),))
}

/// The prefix of this package's segment names (`/shmpy-...`).
pub(crate) const PREFIX: &str = "shmpy";

/// A fresh segment name for an object of this package.
pub(crate) fn fresh_name() -> String {
    shmprim::segment::unique_name(PREFIX)
}

/// Retries creation under fresh names while a name is taken.
pub(crate) fn create_named<T>(mut make: impl FnMut(&str) -> shmprim::Result<T>) -> PyResult<T> {
    let mut tries = 0;
    loop {
        match make(&fresh_name()) {
            Err(Error::AlreadyExists) if tries < 8 => tries += 1,
            r => return r.map_err(py_err),
        }
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("OwnerDiedError", m.py().get_type::<OwnerDiedError>())?;
    sync::register(m)?;
    data::register(m)?;
    queue::register(m)?;
    pipe::register(m)?;
    shm::register(m)?;
    containers::register(m)?;
    Ok(())
}
