//! The raw block behind `shmprim.shared_memory.SharedMemory`: a bytes
//! segment exported through the buffer protocol.

use std::os::raw::c_int;
use std::sync::Arc;

use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use shmprim::{Options, Segment};

use crate::py_err;

/// A mapped bytes segment. `memoryview(block)` is the block's `buf`; the
/// mapping lives as long as any view of it.
#[pyclass(module = "shmprim._native", frozen)]
pub struct Block {
    seg: Arc<Segment>,
}

/// Python's names have no leading slash; the platform's do.
fn os_name(name: &str) -> String {
    if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("/{name}")
    }
}

impl Block {
    /// A block over an existing segment (an `Array`'s numbers).
    pub(crate) fn over(seg: Arc<Segment>) -> Block {
        Block { seg }
    }
}

#[pymethods]
impl Block {
    /// Creates `name` with `size` zeroed bytes (kept until `unlink`), or
    /// opens it (`size` ignored).
    #[staticmethod]
    fn create(name: &str, size: usize) -> PyResult<Block> {
        if size == 0 {
            return Err(PyValueError::new_err(
                "'size' must be a positive number different from zero",
            ));
        }
        let seg = Segment::create_with(&os_name(name), size, &Options::new().persist(true))
            .map_err(py_err)?;
        Ok(Block { seg: Arc::new(seg) })
    }

    #[staticmethod]
    fn open(name: &str) -> PyResult<Block> {
        let seg = Segment::open(&os_name(name)).map_err(py_err)?;
        Ok(Block { seg: Arc::new(seg) })
    }

    #[staticmethod]
    fn unlink(name: &str) -> PyResult<()> {
        Segment::unlink_name(&os_name(name)).map_err(py_err)
    }

    #[getter]
    fn size(&self) -> usize {
        self.seg.data_len()
    }

    /// # Safety
    ///
    /// Called by Python with a valid `view` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let seg = &slf.get().seg;
        let (ptr, len) = (seg.data_ptr(), seg.data_len());
        // SAFETY: `ptr..ptr+len` is the segment's data, mapped for as long
        // as this object lives, which the view keeps alive (its `obj`
        // holds a reference, set by PyBuffer_FillInfo); the memory is
        // writable shared memory, and, as with Python's own SharedMemory,
        // concurrent writers in other processes are the program's to
        // synchronise.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                ptr.cast(),
                len as ffi::Py_ssize_t,
                0,
                flags,
            )
        };
        if rc != 0 {
            return Err(PyErr::take(slf.py())
                .unwrap_or_else(|| PyBufferError::new_err("cannot export the block")));
        }
        Ok(())
    }

    /// # Safety
    ///
    /// Called by Python for a view filled by `__getbuffer__`.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Block>()?;
    Ok(())
}
