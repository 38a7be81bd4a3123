//! `Dict` and `List`: the crate's `SharedMap` / `SharedList` (Python's
//! `Manager().dict()` / `.list()`, without a manager process).
//!
//! Values travel as queue messages do (a `bytes` object as it is, anything
//! else pickled). Keys must compare as Python compares them, so equal keys
//! must give equal bytes: `str`, `bytes` and `int` (and `bool`, and floats
//! with an integral value, which Python treats as the equal `int`) have a
//! canonical form; other keys are pickled (fine for tuples of those).

use pyo3::exceptions::{PyIndexError, PyKeyError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use shmprim::{Error, SharedList, SharedMap};

use crate::queue::{decode_value, encode_value};
use crate::sync::reduce;
use crate::{create_named, dumps, loads, py_err, wait, SLICE};

const KEY_STR: u8 = b's';
const KEY_BYTES: u8 = b'b';
const KEY_INT: u8 = b'i';
const KEY_PICKLE: u8 = b'p';

fn key_bytes(k: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let mut out;
    if let Ok(s) = k.downcast_exact::<PyString>() {
        out = vec![KEY_STR];
        out.extend_from_slice(s.to_str()?.as_bytes());
    } else if let Ok(b) = k.downcast_exact::<PyBytes>() {
        out = vec![KEY_BYTES];
        out.extend_from_slice(b.as_bytes());
    } else if k.is_exact_instance_of::<PyInt>() || k.is_exact_instance_of::<PyBool>() {
        out = vec![KEY_INT];
        out.extend_from_slice(k.call_method0("__index__")?.str()?.to_str()?.as_bytes());
    } else if k.is_exact_instance_of::<PyFloat>() && k.call_method0("is_integer")?.is_truthy()? {
        out = vec![KEY_INT];
        let i = k.call_method0("__int__")?;
        out.extend_from_slice(i.str()?.to_str()?.as_bytes());
    } else {
        out = vec![KEY_PICKLE];
        out.extend_from_slice(dumps(k)?.as_bytes());
    }
    Ok(out)
}

fn key_obj<'py>(py: Python<'py>, k: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let bad = || py_err(Error::Corrupt("bad key in a shared dict"));
    let (&tag, body) = k.split_first().ok_or_else(bad)?;
    match tag {
        KEY_STR => Ok(PyString::new(py, std::str::from_utf8(body).map_err(|_| bad())?).into_any()),
        KEY_BYTES => Ok(PyBytes::new(py, body).into_any()),
        KEY_INT => {
            let s = std::str::from_utf8(body).map_err(|_| bad())?;
            py.get_type::<PyInt>().call1((s,))
        }
        KEY_PICKLE => loads(py, body),
        _ => Err(bad()),
    }
}

/// Runs a container operation with the GIL released. The handles wait for
/// the writers' lock at most [`SLICE`] at a time; a slice that ends is
/// retried (every operation is atomic) after checking for signals.
fn run<T: Send>(py: Python<'_>, op: impl FnMut() -> shmprim::Result<T> + Send) -> PyResult<T> {
    let mut op = op;
    match wait(py, None, |_| op()) {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(py_err(Error::Timeout)),
        Err(f) => Err(f.into_py_err(py_err)),
    }
}

/// A dict shared between processes (`multiprocessing.Manager().dict()`).
#[pyclass(module = "shmprim._native", frozen, mapping)]
pub struct Dict {
    map: SharedMap,
}

#[pymethods]
impl Dict {
    #[new]
    #[pyo3(signature = (mapping=None, **kwargs))]
    fn new(
        py: Python<'_>,
        mapping: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let map = create_named(SharedMap::create)?;
        map.set_timeout(Some(SLICE));
        let d = Dict { map };
        d.update(py, mapping, kwargs)?;
        Ok(d)
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        run(py, || self.map.len())
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = key_bytes(key)?;
        run(py, || self.map.contains(&k))
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let k = key_bytes(key)?;
        match run(py, || self.map.get(&k))? {
            Some(v) => decode_value(py, &v),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    fn __setitem__(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let k = key_bytes(key)?;
        let v = encode_value(value)?;
        run(py, || self.map.insert(&k, &v)).map(|_| ())
    }

    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let k = key_bytes(key)?;
        match run(py, || self.map.remove(&k))? {
            Some(_) => Ok(()),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.keys(py)?.try_iter()?.into_any())
    }

    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let ks = run(py, || self.map.keys())?;
        let objs = ks
            .iter()
            .map(|k| key_obj(py, k))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, objs)
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let vs = run(py, || self.map.values())?;
        let objs = vs
            .iter()
            .map(|v| decode_value(py, v))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, objs)
    }

    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let kvs = run(py, || self.map.items())?;
        let objs = kvs
            .iter()
            .map(|(k, v)| PyTuple::new(py, [key_obj(py, k)?, decode_value(py, v)?]))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, objs)
    }

    #[pyo3(signature = (key, default=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let k = key_bytes(key)?;
        match run(py, || self.map.get(&k))? {
            Some(v) => decode_value(py, &v),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    #[pyo3(signature = (key, *default))]
    fn pop<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let k = key_bytes(key)?;
        match run(py, || self.map.remove(&k))? {
            Some(v) => decode_value(py, &v),
            None if !default.is_empty() => default.get_item(0),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    #[pyo3(signature = (key, default=None))]
    fn setdefault<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let k = key_bytes(key)?;
        let d = encode_value(&default.unwrap_or_else(|| py.None().into_bound(py)))?;
        let v = run(py, || self.map.get_or_insert_with(&k, || d.clone()))?;
        decode_value(py, &v)
    }

    #[pyo3(signature = (other=None, **kwargs))]
    fn update(
        &self,
        py: Python<'_>,
        other: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        if let Some(o) = other {
            let items = if o.hasattr("keys")? {
                o.call_method0("keys")?
                    .try_iter()?
                    .map(|k| {
                        let k = k?;
                        let v = o.get_item(&k)?;
                        Ok((key_bytes(&k)?, encode_value(&v)?))
                    })
                    .collect::<PyResult<Vec<_>>>()?
            } else {
                o.try_iter()?
                    .map(|kv| {
                        let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = kv?.extract()?;
                        Ok((key_bytes(&k)?, encode_value(&v)?))
                    })
                    .collect::<PyResult<Vec<_>>>()?
            };
            pairs.extend(items);
        }
        if let Some(kw) = kwargs {
            for (k, v) in kw.iter() {
                pairs.push((key_bytes(&k)?, encode_value(&v)?));
            }
        }
        if pairs.is_empty() {
            return Ok(());
        }
        run(py, || {
            self.map.transaction(|tx| {
                for (k, v) in &pairs {
                    tx.insert(k, v)?;
                }
                Ok(())
            })
        })
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        run(py, || self.map.clear())
    }

    /// A plain `dict` with the current contents.
    fn copy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for kv in self.items(py)?.iter() {
            let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = kv.extract()?;
            d.set_item(k, v)?;
        }
        Ok(d)
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        reduce(py, "_open_dict", (named(self.map.name())?,))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("<shmprim.Dict {}>", self.copy(py)?.repr()?))
    }
}

#[pyfunction]
fn _open_dict(name: &str) -> PyResult<Dict> {
    let map = SharedMap::open(name).map_err(py_err)?;
    map.set_timeout(Some(SLICE));
    Ok(Dict { map })
}

/// A list shared between processes (`multiprocessing.Manager().list()`).
#[pyclass(module = "shmprim._native", frozen, sequence)]
pub struct List {
    list: SharedList,
}

impl List {
    /// A Python index (negative from the end) against the current length.
    fn index(&self, py: Python<'_>, i: isize) -> PyResult<usize> {
        let len = run(py, || self.list.len())? as isize;
        let j = if i < 0 { i + len } else { i };
        if j < 0 || j >= len {
            return Err(PyIndexError::new_err("list index out of range"));
        }
        Ok(j as usize)
    }
}

fn named(name: Option<&str>) -> PyResult<String> {
    name.map(str::to_owned).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err("an anonymous object cannot be pickled")
    })
}

fn index_err(e: Error) -> PyErr {
    match e {
        Error::OutOfRange { .. } => PyIndexError::new_err("list index out of range"),
        e => py_err(e),
    }
}

#[pymethods]
impl List {
    #[new]
    #[pyo3(signature = (iterable=None))]
    fn new(py: Python<'_>, iterable: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let list = create_named(SharedList::create)?;
        list.set_timeout(Some(SLICE));
        let l = List { list };
        if let Some(it) = iterable {
            l.extend(py, it)?;
        }
        Ok(l)
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        run(py, || self.list.len())
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        i: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if i.is_instance_of::<pyo3::types::PySlice>() {
            return self.copy(py)?.as_any().get_item(i);
        }
        let j = self.index(py, i.extract()?)?;
        match run(py, || self.list.get(j))? {
            Some(v) => decode_value(py, &v),
            None => Err(PyIndexError::new_err("list index out of range")),
        }
    }

    fn __setitem__(&self, py: Python<'_>, i: isize, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let j = self.index(py, i)?;
        let v = encode_value(value)?;
        py.allow_threads(|| self.list.set(j, &v)).map_err(index_err)
    }

    fn __delitem__(&self, py: Python<'_>, i: isize) -> PyResult<()> {
        let j = self.index(py, i)?;
        run(py, || self.list.remove(j)).map(|_| ())
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(self.copy(py)?.try_iter()?.into_any())
    }

    fn append(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = encode_value(value)?;
        run(py, || self.list.push(&v))
    }

    fn extend(&self, py: Python<'_>, items: &Bound<'_, PyAny>) -> PyResult<()> {
        let vs = items
            .try_iter()?
            .map(|o| encode_value(&o?))
            .collect::<PyResult<Vec<_>>>()?;
        run(py, || self.list.extend(vs.iter().map(Vec::as_slice)))
    }

    #[pyo3(signature = (index=-1))]
    fn pop<'py>(&self, py: Python<'py>, index: isize) -> PyResult<Bound<'py, PyAny>> {
        let v = if index == -1 {
            run(py, || self.list.pop())?
                .ok_or_else(|| PyIndexError::new_err("pop from empty list"))?
        } else {
            let j = self.index(py, index)?;
            run(py, || self.list.remove(j))?
        };
        decode_value(py, &v)
    }

    fn insert(&self, py: Python<'_>, index: isize, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let len = run(py, || self.list.len())? as isize;
        let j = if index < 0 {
            (index + len).max(0)
        } else {
            index.min(len)
        };
        let v = encode_value(value)?;
        run(py, || self.list.insert(j as usize, &v))
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        run(py, || self.list.clear())
    }

    /// A plain `list` with the current contents.
    fn copy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let vs = run(py, || self.list.snapshot())?;
        let objs = vs
            .iter()
            .map(|v| decode_value(py, v))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, objs)
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        reduce(py, "_open_list", (named(self.list.name())?,))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("<shmprim.List {}>", self.copy(py)?.repr()?))
    }
}

#[pyfunction]
fn _open_list(name: &str) -> PyResult<List> {
    let list = SharedList::open(name).map_err(py_err)?;
    list.set_timeout(Some(SLICE));
    Ok(List { list })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Dict>()?;
    m.add_class::<List>()?;
    m.add_function(wrap_pyfunction!(_open_dict, m)?)?;
    m.add_function(wrap_pyfunction!(_open_list, m)?)?;
    Ok(())
}
