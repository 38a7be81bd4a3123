//! `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Event`, `Condition`
//! and `Barrier`.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyAssertionError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::IntoPyObjectExt;
use shmprim::{Acquire, Error, LockError, LockGuard, RawMutex};

use crate::{create_named, py_err, timeout_of, wait, Fail, OwnerDiedError, SameThread};

/// How an acquire ended.
pub(crate) enum Got {
    /// Timed out (or `block=False` found it busy).
    No,
    /// Taken.
    Clean,
    /// Taken from a dead holder, and marked consistent.
    Died,
}

/// `acquire(block, timeout)` on a lock word: one attempt with the GIL
/// held, then sliced waits without it. A dead holder's lock is taken and
/// marked consistent.
pub(crate) fn acquire_got(
    py: Python<'_>,
    m: &RawMutex,
    timeout: Option<Duration>,
) -> PyResult<Got> {
    let got = match m.acquire_timeout(Duration::ZERO) {
        Err(Error::Timeout) if timeout != Some(Duration::ZERO) => {
            wait(py, timeout, |s| m.acquire_timeout(s)).map_err(|f| f.into_py_err(py_err))?
        }
        Err(Error::Timeout) => None,
        // This thread holds the (non-recursive) lock: Python's timed or
        // non-blocking acquire gives False; a blocking one would hang for
        // ever, and gets a RuntimeError instead.
        Err(Error::Deadlock) if timeout.is_some() => None,
        Err(e) => return Err(py_err(e)),
        Ok(a) => Some(a),
    };
    Ok(match got {
        None => Got::No,
        Some(Acquire::Clean) => Got::Clean,
        Some(Acquire::OwnerDied) => {
            m.make_consistent().map_err(py_err)?;
            Got::Died
        }
    })
}

/// [`acquire_got`] with Python's result: a dead holder is reported as
/// [`OwnerDiedError`] with the lock held.
pub(crate) fn acquire_raw(
    py: Python<'_>,
    m: &RawMutex,
    block: bool,
    timeout: Option<f64>,
) -> PyResult<bool> {
    match acquire_got(py, m, timeout_of(block, timeout)?)? {
        Got::No => Ok(false),
        Got::Clean => Ok(true),
        Got::Died => Err(OwnerDiedError::new_err(
            "the previous holder died holding this lock; it is now held by the caller: \
             repair what it guards, then release() it",
        )),
    }
}

/// `release()` on a lock word, with `multiprocessing`'s exceptions.
pub(crate) fn release_raw(m: &RawMutex, recursive: bool) -> PyResult<()> {
    match m.release() {
        Ok(()) => Ok(()),
        Err(Error::NotOwner) if recursive => Err(PyAssertionError::new_err(
            "attempt to release recursive lock not owned by thread",
        )),
        Err(Error::NotOwner) if m.is_locked().unwrap_or(false) => Err(PyRuntimeError::new_err(
            "this lock is held by another thread (shmprim locks are released by their holder)",
        )),
        Err(Error::NotOwner) => Err(PyValueError::new_err(
            "semaphore or lock released too many times",
        )),
        Err(e) => Err(py_err(e)),
    }
}

/// The name of a segment (every object of this package has one).
pub(crate) fn name_of(seg: &shmprim::Segment) -> PyResult<String> {
    seg.name()
        .map(str::to_owned)
        .ok_or_else(|| PyValueError::new_err("an anonymous object cannot be pickled"))
}

/// `(opener, (args..))` for `__reduce__`.
pub(crate) fn reduce<'py>(
    py: Python<'py>,
    opener: &str,
    args: impl IntoPyObject<'py, Target = PyTuple>,
) -> PyResult<Bound<'py, PyTuple>> {
    let f = py.import("shmprim._native")?.getattr(opener)?;
    let args = args.into_bound_py_any(py)?;
    PyTuple::new(py, [f, args])
}

macro_rules! lock_class {
    ($name:ident, $rust:ty, $opener:ident, $recursive:expr, $doc:literal) => {
        #[doc = $doc]
        #[pyclass(module = "shmprim._native", frozen)]
        pub struct $name {
            pub(crate) inner: $rust,
        }

        impl $name {
            /// A new one under a fresh name.
            pub(crate) fn fresh() -> PyResult<Self> {
                Ok(Self {
                    inner: create_named(|n| <$rust>::create(n))?,
                })
            }
        }

        #[pymethods]
        impl $name {
            #[new]
            fn new() -> PyResult<Self> {
                Self::fresh()
            }

            #[pyo3(signature = (block=true, timeout=None))]
            fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
                acquire_raw(py, self.inner.raw(), block, timeout)
            }

            fn release(&self) -> PyResult<()> {
                release_raw(self.inner.raw(), $recursive)
            }

            fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
                acquire_raw(py, self.inner.raw(), true, None)
            }

            #[pyo3(signature = (*_args))]
            fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
                release_raw(self.inner.raw(), $recursive)
            }

            fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
                reduce(py, stringify!($opener), (name_of(self.inner.segment())?,))
            }

            fn __repr__(&self) -> String {
                let state = match self.inner.is_locked() {
                    Ok(true) => "locked",
                    Ok(false) => "unlocked",
                    Err(_) => "unknown",
                };
                format!(
                    "<shmprim.{} {:?} {}>",
                    stringify!($name),
                    self.inner.segment().name().unwrap_or(""),
                    state
                )
            }
        }

        #[pyfunction]
        fn $opener(name: &str) -> PyResult<$name> {
            Ok($name {
                inner: <$rust>::open(name).map_err(py_err)?,
            })
        }
    };
}

lock_class!(
    Lock,
    shmprim::Lock,
    _open_lock,
    false,
    "multiprocessing.Lock: a robust lock owned by the thread that takes it."
);
lock_class!(
    RLock,
    shmprim::RLock,
    _open_rlock,
    true,
    "multiprocessing.RLock: a robust recursive lock."
);

macro_rules! semaphore_class {
    ($name:ident, $rust:ty, $opener:ident, $doc:literal) => {
        #[doc = $doc]
        #[pyclass(module = "shmprim._native", frozen)]
        pub struct $name {
            inner: $rust,
        }

        #[pymethods]
        impl $name {
            #[new]
            #[pyo3(signature = (value=1))]
            fn new(value: i64) -> PyResult<Self> {
                if value < 0 {
                    return Err(PyValueError::new_err(
                        "semaphore initial value must be >= 0",
                    ));
                }
                Ok(Self {
                    inner: create_named(|n| <$rust>::create(n, value))?,
                })
            }

            #[pyo3(signature = (block=true, timeout=None))]
            fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
                let s = &self.inner;
                let timeout = timeout_of(block, timeout)?;
                match s.try_acquire() {
                    Ok(()) => return Ok(true),
                    Err(Error::WouldBlock) if timeout == Some(Duration::ZERO) => return Ok(false),
                    Err(Error::WouldBlock) => {}
                    Err(e) => return Err(py_err(e)),
                }
                let got = wait(py, timeout, |d| s.acquire_timeout(d))
                    .map_err(|f| f.into_py_err(py_err))?;
                Ok(got.is_some())
            }

            fn release(&self) -> PyResult<()> {
                self.inner.release().map_err(|e| match e {
                    Error::InvalidArgument(_) => {
                        PyValueError::new_err("semaphore or lock released too many times")
                    }
                    e => py_err(e),
                })
            }

            fn get_value(&self) -> u32 {
                self.inner.value()
            }

            fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
                self.acquire(py, true, None)
            }

            #[pyo3(signature = (*_args))]
            fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
                self.release()
            }

            fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
                reduce(py, stringify!($opener), (name_of(self.inner.segment())?,))
            }

            fn __repr__(&self) -> String {
                format!(
                    "<shmprim.{}(value={})>",
                    stringify!($name),
                    self.inner.value()
                )
            }
        }

        #[pyfunction]
        fn $opener(name: &str) -> PyResult<$name> {
            Ok($name {
                inner: <$rust>::open(name).map_err(py_err)?,
            })
        }
    };
}

semaphore_class!(
    Semaphore,
    shmprim::Semaphore,
    _open_semaphore,
    "multiprocessing.Semaphore."
);
semaphore_class!(
    BoundedSemaphore,
    shmprim::BoundedSemaphore,
    _open_bounded_semaphore,
    "multiprocessing.BoundedSemaphore: releasing above the initial value is a ValueError."
);

/// `multiprocessing.Event`.
#[pyclass(module = "shmprim._native", frozen)]
pub struct Event {
    inner: shmprim::Event,
}

#[pymethods]
impl Event {
    #[new]
    fn new() -> PyResult<Self> {
        Ok(Self {
            inner: create_named(shmprim::Event::create)?,
        })
    }

    fn is_set(&self) -> bool {
        self.inner.is_set()
    }

    fn set(&self) {
        self.inner.set()
    }

    fn clear(&self) {
        self.inner.clear()
    }

    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        if self.inner.is_set() {
            return Ok(true);
        }
        let ev = &self.inner;
        let timeout = timeout_of(true, timeout)?;
        let r = wait(py, timeout, |d| {
            if ev.wait_timeout(d) {
                Ok(())
            } else {
                Err(Error::Timeout)
            }
        });
        Ok(r.map_err(|f| f.into_py_err(py_err))?.is_some())
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        reduce(py, "_open_event", (name_of(self.inner.segment())?,))
    }

    fn __repr__(&self) -> String {
        format!("<shmprim.Event set={}>", self.inner.is_set())
    }
}

#[pyfunction]
fn _open_event(name: &str) -> PyResult<Event> {
    Ok(Event {
        inner: shmprim::Event::open(name).map_err(py_err)?,
    })
}

/// A guard of a condition's lock held by this thread, kept between the
/// Python calls that take and release it.
struct Held {
    /// Which Python `Condition` took it (the address of its handle).
    key: usize,
    /// Declared before `cond`, so dropped (released) before it.
    guard: LockGuard<'static>,
    /// Keeps the mapping the guard points into alive.
    _cond: Arc<shmprim::Condition>,
}

thread_local! {
    /// The condition guards this thread holds, innermost last.
    static HELD: RefCell<Vec<Held>> = const { RefCell::new(Vec::new()) };
}

fn push_held(cond: &Arc<shmprim::Condition>, guard: LockGuard<'_>) {
    // SAFETY: the guard borrows the mutex inside the mapping that `cond`
    // (an `Arc` whose clone is stored beside the guard) keeps alive; the
    // guard is dropped before that clone (field order of `Held`), and it
    // never leaves this thread (a thread-local).
    let guard: LockGuard<'static> = unsafe { std::mem::transmute(guard) };
    let held = Held {
        key: Arc::as_ptr(cond) as usize,
        guard,
        _cond: cond.clone(),
    };
    HELD.with(|h| h.borrow_mut().push(held));
}

/// Takes this thread's innermost guard of `cond` out of the stack.
fn take_held(cond: &Arc<shmprim::Condition>) -> Option<Held> {
    let key = Arc::as_ptr(cond) as usize;
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        let i = h.iter().rposition(|x| x.key == key)?;
        Some(h.remove(i))
    })
}

fn put_back(held: Held) {
    HELD.with(|h| h.borrow_mut().push(held));
}

/// `multiprocessing.Condition(lock=None)`: its lock is an `RLock` unless
/// one is given. Acquire it through the condition (`with cond:`), which is
/// what `wait` and `notify` check.
#[pyclass(module = "shmprim._native", frozen)]
pub struct Condition {
    inner: Arc<shmprim::Condition>,
    lock: PyObject,
}

fn must_hold() -> PyErr {
    PyAssertionError::new_err("must acquire() condition before using wait() or notify()")
}

fn owner_died() -> PyErr {
    OwnerDiedError::new_err(
        "the previous holder died holding the condition's lock; it is now held by the caller",
    )
}

#[pymethods]
impl Condition {
    #[new]
    #[pyo3(signature = (lock=None))]
    fn new(py: Python<'_>, lock: Option<PyObject>) -> PyResult<Self> {
        let lock = match lock {
            Some(l) => l,
            None => Py::new(py, RLock::fresh()?)?.into_any(),
        };
        let shared: shmprim::SharedLock = {
            let l = lock.bind(py);
            if let Ok(l) = l.downcast::<Lock>() {
                (&l.get().inner).into()
            } else if let Ok(l) = l.downcast::<RLock>() {
                (&l.get().inner).into()
            } else {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "Condition(lock): lock must be a shmprim Lock or RLock",
                ));
            }
        };
        let inner = create_named(|n| shmprim::Condition::create_with_lock(n, shared.clone()))?;
        Ok(Self {
            inner: Arc::new(inner),
            lock,
        })
    }

    #[pyo3(signature = (block=true, timeout=None))]
    fn acquire(&self, py: Python<'_>, block: bool, timeout: Option<f64>) -> PyResult<bool> {
        let c = &self.inner;
        let timeout = timeout_of(block, timeout)?;
        let got = match c.try_lock() {
            Ok(g) => Some((SameThread(g), false)),
            Err(LockError::OwnerDied(d)) => {
                Some((SameThread(d.make_consistent().map_err(py_err)?), true))
            }
            Err(LockError::Failed(Error::WouldBlock)) if timeout == Some(Duration::ZERO) => None,
            Err(LockError::Failed(Error::WouldBlock)) => {
                let cc: &shmprim::Condition = c;
                wait(py, timeout, |d| match cc.lock_timeout(d) {
                    Ok(g) => Ok((SameThread(g), false)),
                    Err(LockError::OwnerDied(d)) => {
                        d.make_consistent().map(|g| (SameThread(g), true))
                    }
                    Err(LockError::Failed(e)) => Err(e),
                })
                .map_err(|f| f.into_py_err(py_err))?
            }
            Err(LockError::Failed(e)) => return Err(py_err(e)),
        };
        match got {
            None => Ok(false),
            Some((g, died)) => {
                push_held(c, g.0);
                if died {
                    Err(owner_died())
                } else {
                    Ok(true)
                }
            }
        }
    }

    fn release(&self) -> PyResult<()> {
        match take_held(&self.inner) {
            Some(h) => {
                drop(h);
                Ok(())
            }
            None => Err(PyAssertionError::new_err(
                "attempt to release a condition not acquired by this thread",
            )),
        }
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.acquire(py, true, None)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release()
    }

    /// Releases the lock, waits for a notify (or `timeout`), retakes the
    /// lock; returns False on timeout.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = timeout_of(true, timeout)?;
        let mut held = take_held(&self.inner).ok_or_else(must_hold)?;
        let c: &shmprim::Condition = &self.inner;
        // One wait of the whole timeout, in slices: a slice that times out
        // retakes the lock before the next one, so no notify is lost (a
        // notifier needs the lock).
        let mut guard = SameThread(&mut held.guard);
        let r = wait(py, timeout, move |d| match c.wait_timeout(guard.get(), d) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Timeout),
            Err(e) => Err(e),
        });
        match r {
            Ok(Some(())) => {
                put_back(held);
                Ok(true)
            }
            Ok(None) => {
                put_back(held);
                Ok(false)
            }
            Err(Fail::Crate(Error::OwnerDied)) => {
                let r = self.inner.make_consistent(&mut held.guard);
                put_back(held);
                r.map_err(py_err)?;
                Err(owner_died())
            }
            Err(Fail::Py(e)) => {
                // A signal handler raised between slices: the lock is held.
                put_back(held);
                Err(e)
            }
            Err(Fail::Crate(e)) => Err(py_err(e)),
        }
    }

    #[pyo3(signature = (predicate, timeout=None))]
    fn wait_for(
        &self,
        py: Python<'_>,
        predicate: &Bound<'_, PyAny>,
        timeout: Option<f64>,
    ) -> PyResult<PyObject> {
        let mut result = predicate.call0()?;
        if result.is_truthy()? {
            return Ok(result.unbind());
        }
        let end = timeout.map(|t| std::time::Instant::now() + Duration::from_secs_f64(t.max(0.0)));
        while !result.is_truthy()? {
            let left = match end {
                Some(e) => {
                    let now = std::time::Instant::now();
                    if now >= e {
                        break;
                    }
                    Some((e - now).as_secs_f64())
                }
                None => None,
            };
            self.wait(py, left)?;
            result = predicate.call0()?;
        }
        Ok(result.unbind())
    }

    #[pyo3(signature = (n=1))]
    fn notify(&self, n: u32) -> PyResult<()> {
        let key = Arc::as_ptr(&self.inner) as usize;
        HELD.with(|h| {
            let h = h.borrow();
            let held = h
                .iter()
                .rev()
                .find(|x| x.key == key)
                .ok_or_else(must_hold)?;
            self.inner.notify(&held.guard, n).map_err(py_err)?;
            Ok(())
        })
    }

    fn notify_all(&self) -> PyResult<()> {
        self.notify(u32::MAX)
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let lock = self.lock.clone_ref(py);
        reduce(
            py,
            "_open_condition",
            (name_of(self.inner.segment())?, lock),
        )
    }

    fn __repr__(&self) -> String {
        format!("<shmprim.Condition waiting={}>", self.inner.n_waiting())
    }
}

#[pyfunction]
#[pyo3(signature = (name, lock))]
fn _open_condition(name: &str, lock: PyObject) -> PyResult<Condition> {
    Ok(Condition {
        inner: Arc::new(shmprim::Condition::open(name).map_err(py_err)?),
        lock,
    })
}

/// `multiprocessing.Barrier(parties, action=None, timeout=None)`.
#[pyclass(module = "shmprim._native", frozen)]
pub struct Barrier {
    inner: shmprim::Barrier,
    action: Option<PyObject>,
}

#[pymethods]
impl Barrier {
    #[new]
    #[pyo3(signature = (parties, action=None, timeout=None))]
    fn new(parties: u32, action: Option<PyObject>, timeout: Option<f64>) -> PyResult<Self> {
        if parties == 0 {
            return Err(PyValueError::new_err("parties must be > 0"));
        }
        let timeout = timeout_of(true, timeout)?;
        Ok(Self {
            inner: create_named(|n| shmprim::Barrier::create(n, parties, timeout))?,
            action,
        })
    }

    /// Waits for every party; returns this arrival's index. A timeout
    /// breaks the barrier (`threading.BrokenBarrierError`, as in Python).
    /// With an action, the barrier's own timeout applies (the crate runs
    /// actions in its default-timeout wait only). Not sliced: slicing a
    /// barrier wait would break it, so Ctrl-C is seen when the wait ends.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<u32> {
        let b = &self.inner;
        let r = match (&self.action, timeout_of(true, timeout)?) {
            (Some(action), _) => {
                let mut failed: Option<PyErr> = None;
                let r = {
                    let failed = SameThread(&mut failed);
                    py.allow_threads(move || {
                        let failed = failed;
                        b.wait_with_action(move || {
                            Python::with_gil(|py| {
                                if let Err(e) = action.call0(py) {
                                    *failed.0 = Some(e);
                                }
                            })
                        })
                    })
                };
                if let Some(e) = failed {
                    b.abort();
                    return Err(e);
                }
                r
            }
            (None, Some(t)) => py.allow_threads(|| b.wait_timeout(t)),
            (None, None) => py.allow_threads(|| b.wait()),
        };
        r.map_err(py_err)
    }

    fn abort(&self) {
        self.inner.abort()
    }

    fn reset(&self) {
        self.inner.reset()
    }

    #[getter]
    fn parties(&self) -> u32 {
        self.inner.parties()
    }

    #[getter]
    fn n_waiting(&self) -> u32 {
        self.inner.n_waiting()
    }

    #[getter]
    fn broken(&self) -> bool {
        self.inner.is_broken()
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let action = self.action.as_ref().map(|a| a.clone_ref(py));
        reduce(
            py,
            "_open_barrier",
            (name_of(self.inner.segment())?, action),
        )
    }
}

#[pyfunction]
#[pyo3(signature = (name, action=None))]
fn _open_barrier(name: &str, action: Option<PyObject>) -> PyResult<Barrier> {
    Ok(Barrier {
        inner: shmprim::Barrier::open(name).map_err(py_err)?,
        action,
    })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Lock>()?;
    m.add_class::<RLock>()?;
    m.add_class::<Semaphore>()?;
    m.add_class::<BoundedSemaphore>()?;
    m.add_class::<Event>()?;
    m.add_class::<Condition>()?;
    m.add_class::<Barrier>()?;
    m.add_function(wrap_pyfunction!(_open_lock, m)?)?;
    m.add_function(wrap_pyfunction!(_open_rlock, m)?)?;
    m.add_function(wrap_pyfunction!(_open_semaphore, m)?)?;
    m.add_function(wrap_pyfunction!(_open_bounded_semaphore, m)?)?;
    m.add_function(wrap_pyfunction!(_open_event, m)?)?;
    m.add_function(wrap_pyfunction!(_open_condition, m)?)?;
    m.add_function(wrap_pyfunction!(_open_barrier, m)?)?;
    Ok(())
}
