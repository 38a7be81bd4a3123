//! `Value` and `Array`: numbers of a `multiprocessing` type code in a
//! bytes segment, with a `Lock`/`RLock` beside them, as `multiprocessing`
//! pairs a ctypes object with a lock.
//!
//! Why not the crate's `Value<T>` / `Array<T>`: their guards refuse a lock
//! the thread already holds (a second guard would alias the first's
//! `&mut T`), while Python's `with v.get_lock(): v.value += 1` reads and
//! writes under a lock the thread holds. Here no Rust reference to the
//! shared numbers is ever formed: every element is read and written with
//! one relaxed atomic load or store of its width, under the lock when
//! there is one (`lock=False` stays race-free, like a `RawValue`).

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

use pyo3::exceptions::{PyAttributeError, PyIndexError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyList, PySlice, PyTuple};
use pyo3::IntoPyObjectExt;
use shmprim::{RawMutex, Segment};

use crate::shm::Block;
use crate::sync::{acquire_got, name_of, reduce, release_raw, Got, Lock, RLock};
use crate::{create_named, py_err, OwnerDiedError};

/// A type code and its element width.
#[derive(Clone, Copy)]
struct Code(char);

impl Code {
    /// A type code from a string or a ctypes type (its `_type_`).
    fn parse(t: &Bound<'_, PyAny>) -> PyResult<Code> {
        let s: String = match t.extract() {
            Ok(s) => s,
            Err(_) => t.getattr("_type_")?.extract()?,
        };
        let mut c = s.chars();
        match (c.next(), c.next()) {
            (Some(c), None) if "bBhHiIlLqQfd".contains(c) => Ok(Code(c)),
            _ => Err(PyTypeError::new_err(format!(
                "unsupported type code {s:?}: use one of b B h H i I l L q Q f d"
            ))),
        }
    }

    fn from_char(c: char) -> PyResult<Code> {
        if "bBhHiIlLqQfd".contains(c) {
            Ok(Code(c))
        } else {
            Err(PyValueError::new_err("bad type code"))
        }
    }

    fn size(self) -> usize {
        match self.0 {
            'b' | 'B' => 1,
            'h' | 'H' => 2,
            'i' | 'I' | 'f' => 4,
            _ => 8,
        }
    }

    /// The element's bits as a Python number.
    fn to_py<'py>(self, py: Python<'py>, bits: u64) -> PyResult<Bound<'py, PyAny>> {
        match self.0 {
            'b' => (bits as u8 as i8).into_bound_py_any(py),
            'h' => (bits as u16 as i16).into_bound_py_any(py),
            'i' => (bits as u32 as i32).into_bound_py_any(py),
            'l' | 'q' => (bits as i64).into_bound_py_any(py),
            'f' => f32::from_bits(bits as u32).into_bound_py_any(py),
            'd' => f64::from_bits(bits).into_bound_py_any(py),
            _ => bits.into_bound_py_any(py),
        }
    }

    /// A Python number as the element's bits. Integers wrap to the width,
    /// as ctypes does; a float for an integer code is a `TypeError`.
    fn bits_of(self, x: &Bound<'_, PyAny>) -> PyResult<u64> {
        match self.0 {
            'f' => Ok(u64::from((x.extract::<f64>()? as f32).to_bits())),
            'd' => Ok(x.extract::<f64>()?.to_bits()),
            _ => {
                if x.is_instance_of::<PyFloat>() {
                    return Err(PyTypeError::new_err("int expected instead of float"));
                }
                let v: i128 = x.extract()?;
                Ok(v as u64)
            }
        }
    }
}

/// The numbers: `len` elements of `code` at the start of a bytes segment.
struct Cells {
    seg: Arc<Segment>,
    code: Code,
    len: usize,
}

impl Cells {
    fn create(code: Code, len: usize) -> PyResult<Cells> {
        let bytes = (len * code.size()).max(1);
        let seg = create_named(|n| Segment::create(n, bytes))?;
        Ok(Cells {
            seg: Arc::new(seg),
            code,
            len,
        })
    }

    fn open(name: &str, code: Code) -> PyResult<Cells> {
        let seg = Segment::open(name).map_err(py_err)?;
        // The atomics need their alignment: a header that moved the object
        // off it is refused, not trusted.
        if seg.data_ptr() as usize % 8 != 0 {
            return Err(py_err(shmprim::Error::Corrupt("numbers are misaligned")));
        }
        let len = seg.data_len() / code.size();
        Ok(Cells {
            seg: Arc::new(seg),
            code,
            len,
        })
    }

    /// Element `i`'s address; `i < len`.
    fn at(&self, i: usize) -> *mut u8 {
        assert!(i < self.len, "index checked by the caller");
        // SAFETY: `i * size < len * size <= data_len`: inside the object.
        unsafe { self.seg.data_ptr().add(i * self.code.size()) }
    }

    fn load(&self, i: usize) -> u64 {
        let p = self.at(i);
        // SAFETY: (each arm) `p` is aligned for its width (the object starts
        // 8-aligned, checked at open, and elements sit at multiples of their size), lies in
        // the mapping `self.seg` keeps alive for the borrow, and is only
        // ever accessed atomically by this package.
        unsafe {
            match self.code.size() {
                1 => u64::from((*p.cast::<AtomicU8>()).load(Relaxed)),
                2 => u64::from((*p.cast::<AtomicU16>()).load(Relaxed)),
                4 => u64::from((*p.cast::<AtomicU32>()).load(Relaxed)),
                _ => (*p.cast::<AtomicU64>()).load(Relaxed),
            }
        }
    }

    fn store(&self, i: usize, bits: u64) {
        let p = self.at(i);
        // SAFETY: as in `load`.
        unsafe {
            match self.code.size() {
                1 => (*p.cast::<AtomicU8>()).store(bits as u8, Relaxed),
                2 => (*p.cast::<AtomicU16>()).store(bits as u16, Relaxed),
                4 => (*p.cast::<AtomicU32>()).store(bits as u32, Relaxed),
                _ => (*p.cast::<AtomicU64>()).store(bits, Relaxed),
            }
        }
    }
}

/// The lock of a `Value`/`Array`: the Python object (for `get_lock()` and
/// pickling) and whether it is a `Lock` or an `RLock`.
struct Guard {
    obj: PyObject,
    /// The same lock's handle, reached without a downcast on every access.
    handle: shmprim::SharedLock,
    recursive: bool,
}

impl Guard {
    /// The lock argument: `True` (a new RLock), `False` (none), or a
    /// shmprim `Lock`/`RLock`.
    fn from_arg(py: Python<'_>, lock: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Guard>> {
        let lock = match lock {
            None => return Self::from_arg(py, Some(PyBool::new(py, true).as_any())),
            Some(l) => l,
        };
        if let Ok(b) = lock.downcast::<PyBool>() {
            if !b.is_true() {
                return Ok(None);
            }
            let l = Py::new(py, RLock::fresh()?)?;
            return Ok(Some(Guard {
                handle: (&l.get().inner).into(),
                obj: l.into_any(),
                recursive: true,
            }));
        }
        Self::from_obj(py, lock.clone().unbind())
    }

    fn from_obj(py: Python<'_>, obj: PyObject) -> PyResult<Option<Guard>> {
        let b = obj.bind(py);
        let (handle, recursive): (shmprim::SharedLock, bool) = if let Ok(l) = b.downcast::<RLock>()
        {
            ((&l.get().inner).into(), true)
        } else if let Ok(l) = b.downcast::<Lock>() {
            ((&l.get().inner).into(), false)
        } else {
            return Err(PyAttributeError::new_err(
                "lock must be True, False or a shmprim Lock/RLock",
            ));
        };
        Ok(Some(Guard {
            obj,
            handle,
            recursive,
        }))
    }

    fn mutex(&self) -> &RawMutex {
        match &self.handle {
            shmprim::SharedLock::Lock(l) => l.raw(),
            shmprim::SharedLock::RLock(l) => l.raw(),
        }
    }
}

/// Runs `f` under the lock (if any), as `multiprocessing`'s synchronized
/// wrappers do for every access. A dead holder: the lock is marked
/// consistent and released, and `OwnerDiedError` raised (retrying works).
fn locked<R>(py: Python<'_>, guard: &Option<Guard>, f: impl FnOnce() -> R) -> PyResult<R> {
    let Some(g) = guard else { return Ok(f()) };
    let m = g.mutex();
    if m.held_by_this_thread() {
        // Inside `with v.get_lock():` (or a held `Lock` given as `lock=`):
        // this thread already excludes the others.
        return Ok(f());
    }
    match acquire_got(py, m, None)? {
        Got::Clean => {
            let r = f();
            release_raw(m, g.recursive)?;
            Ok(r)
        }
        Got::Died => {
            release_raw(m, g.recursive)?;
            Err(OwnerDiedError::new_err(
                "the previous holder of this object's lock died holding it; \
                 the lock was marked consistent and released: check the data and retry",
            ))
        }
        Got::No => Err(py_err(shmprim::Error::Timeout)),
    }
}

fn get_lock(py: Python<'_>, guard: &Option<Guard>, what: &str) -> PyResult<PyObject> {
    guard.as_ref().map(|g| g.obj.clone_ref(py)).ok_or_else(|| {
        PyAttributeError::new_err(format!("{what} made with lock=False has no get_lock()"))
    })
}

/// `multiprocessing.Value(typecode_or_type, *args, lock=True)`.
#[pyclass(module = "shmprim._native", frozen)]
pub struct Value {
    cells: Cells,
    guard: Option<Guard>,
}

#[pymethods]
impl Value {
    #[new]
    #[pyo3(signature = (typecode_or_type, *args, lock=None))]
    fn new(
        py: Python<'_>,
        typecode_or_type: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        lock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let code = Code::parse(typecode_or_type)?;
        let init = match args.len() {
            0 => 0,
            1 => code.bits_of(&args.get_item(0)?)?,
            _ => return Err(PyTypeError::new_err("Value() takes one initial value")),
        };
        let guard = Guard::from_arg(py, lock)?;
        let cells = Cells::create(code, 1)?;
        cells.store(0, init);
        Ok(Value { cells, guard })
    }

    #[getter]
    fn get_value<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let bits = locked(py, &self.guard, || self.cells.load(0))?;
        self.cells.code.to_py(py, bits)
    }

    #[setter]
    fn set_value(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<()> {
        let bits = self.cells.code.bits_of(x)?;
        locked(py, &self.guard, || self.cells.store(0, bits))
    }

    fn get_lock(&self, py: Python<'_>) -> PyResult<PyObject> {
        get_lock(py, &self.guard, "a Value")
    }

    #[getter]
    fn typecode(&self) -> char {
        self.cells.code.0
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let lock = self.guard.as_ref().map(|g| g.obj.clone_ref(py));
        let name = name_of(&self.cells.seg)?;
        reduce(py, "_open_value", (name, self.cells.code.0, lock))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let v = self.get_value(py)?.repr()?.to_string();
        Ok(format!("<shmprim.Value('{}', {v})>", self.cells.code.0))
    }
}

#[pyfunction]
#[pyo3(signature = (name, typecode, lock))]
fn _open_value(
    py: Python<'_>,
    name: &str,
    typecode: char,
    lock: Option<PyObject>,
) -> PyResult<Value> {
    Ok(Value {
        cells: Cells::open(name, Code::from_char(typecode)?)?,
        guard: match lock {
            Some(l) => Guard::from_obj(py, l)?,
            None => None,
        },
    })
}

/// `multiprocessing.Array(typecode_or_type, size_or_initializer, *, lock=True)`.
#[pyclass(module = "shmprim._native", frozen, sequence)]
pub struct Array {
    cells: Cells,
    guard: Option<Guard>,
}

/// An index or a slice, resolved against the length.
enum At {
    One(usize),
    Many(Vec<usize>),
}

fn resolve(idx: &Bound<'_, PyAny>, len: usize) -> PyResult<At> {
    if let Ok(s) = idx.downcast::<PySlice>() {
        let i = s.indices(len as isize)?;
        let mut v = Vec::with_capacity(i.slicelength);
        let mut k = i.start;
        for _ in 0..i.slicelength {
            v.push(k as usize);
            k += i.step;
        }
        return Ok(At::Many(v));
    }
    let i: isize = idx.extract()?;
    let j = if i < 0 { i + len as isize } else { i };
    if j < 0 || j as usize >= len {
        return Err(PyIndexError::new_err("invalid index"));
    }
    Ok(At::One(j as usize))
}

#[pymethods]
impl Array {
    #[new]
    #[pyo3(signature = (typecode_or_type, size_or_initializer, *, lock=None))]
    fn new(
        py: Python<'_>,
        typecode_or_type: &Bound<'_, PyAny>,
        size_or_initializer: &Bound<'_, PyAny>,
        lock: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let code = Code::parse(typecode_or_type)?;
        let init: Vec<u64> = match size_or_initializer.extract::<usize>() {
            Ok(n) => vec![0; n],
            Err(_) => size_or_initializer
                .try_iter()?
                .map(|o| code.bits_of(&o?))
                .collect::<PyResult<_>>()?,
        };
        let guard = Guard::from_arg(py, lock)?;
        let cells = Cells::create(code, init.len())?;
        for (i, &x) in init.iter().enumerate() {
            cells.store(i, x);
        }
        Ok(Array { cells, guard })
    }

    fn __len__(&self) -> usize {
        self.cells.len
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        idx: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let c = &self.cells;
        match resolve(idx, c.len)? {
            At::One(i) => c.code.to_py(py, locked(py, &self.guard, || c.load(i))?),
            At::Many(ix) => {
                let bits: Vec<u64> =
                    locked(py, &self.guard, || ix.iter().map(|&i| c.load(i)).collect())?;
                let items = bits
                    .into_iter()
                    .map(|b| c.code.to_py(py, b))
                    .collect::<PyResult<Vec<_>>>()?;
                Ok(PyList::new(py, items)?.into_any())
            }
        }
    }

    fn __setitem__(
        &self,
        py: Python<'_>,
        idx: &Bound<'_, PyAny>,
        x: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let c = &self.cells;
        match resolve(idx, c.len)? {
            At::One(i) => {
                let b = c.code.bits_of(x)?;
                locked(py, &self.guard, || c.store(i, b))
            }
            At::Many(ix) => {
                let bits: Vec<u64> = x
                    .try_iter()?
                    .map(|o| c.code.bits_of(&o?))
                    .collect::<PyResult<_>>()?;
                if bits.len() != ix.len() {
                    return Err(PyValueError::new_err(
                        "Can only assign sequence of same size",
                    ));
                }
                locked(py, &self.guard, || {
                    for (&i, &b) in ix.iter().zip(&bits) {
                        c.store(i, b);
                    }
                })
            }
        }
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let all = PySlice::full(py);
        Ok(self.__getitem__(py, all.as_any())?.try_iter()?.into_any())
    }

    fn get_lock(&self, py: Python<'_>) -> PyResult<PyObject> {
        get_lock(py, &self.guard, "an Array")
    }

    /// The numbers as a `memoryview` of the type code, without the lock
    /// (as `multiprocessing`'s `get_obj()`): `numpy.frombuffer(a.get_obj(),
    /// dtype)` shares them.
    fn get_obj<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let block = Py::new(py, Block::over(self.cells.seg.clone()))?;
        let view = py.get_type::<pyo3::types::PyMemoryView>().call1((block,))?;
        let n = self.cells.len * self.cells.code.size();
        let part = view.get_item(PySlice::new(py, 0, n as isize, 1))?;
        part.call_method1("cast", (self.cells.code.0.to_string(),))
    }

    #[getter]
    fn typecode(&self) -> char {
        self.cells.code.0
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let lock = self.guard.as_ref().map(|g| g.obj.clone_ref(py));
        let name = name_of(&self.cells.seg)?;
        reduce(
            py,
            "_open_array",
            (name, self.cells.code.0, self.cells.len, lock),
        )
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let all = PySlice::full(py);
        let v = self.__getitem__(py, all.as_any())?.repr()?.to_string();
        Ok(format!("<shmprim.Array('{}', {v})>", self.cells.code.0))
    }
}

#[pyfunction]
#[pyo3(signature = (name, typecode, len, lock))]
fn _open_array(
    py: Python<'_>,
    name: &str,
    typecode: char,
    len: usize,
    lock: Option<PyObject>,
) -> PyResult<Array> {
    let mut cells = Cells::open(name, Code::from_char(typecode)?)?;
    if len > cells.len {
        return Err(py_err(shmprim::Error::Corrupt("array segment too short")));
    }
    cells.len = len;
    Ok(Array {
        cells,
        guard: match lock {
            Some(l) => Guard::from_obj(py, l)?,
            None => None,
        },
    })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Value>()?;
    m.add_class::<Array>()?;
    m.add_function(wrap_pyfunction!(_open_value, m)?)?;
    m.add_function(wrap_pyfunction!(_open_array, m)?)?;
    Ok(())
}
