//! The buffer protocol: any C-contiguous buffer (`bytes`, `bytearray`,
//! `memoryview`, numpy arrays) seen as bytes, as `multiprocessing` does
//! with `memoryview(buf).cast('B')`.

use std::os::raw::c_int;

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

/// A buffer view held for the life of this value (released on drop).
pub(crate) struct Buf {
    view: Box<ffi::Py_buffer>,
}

impl Buf {
    fn get(obj: &Bound<'_, PyAny>, flags: c_int) -> PyResult<Buf> {
        // SAFETY: Py_buffer is a plain C struct for which all-zero is the
        // "empty" state PyObject_GetBuffer expects to fill.
        let mut view: Box<ffi::Py_buffer> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `obj` is a live object (we hold the GIL through `obj`),
        // `view` points to writable memory for one Py_buffer.
        let rc = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, flags) };
        if rc != 0 {
            return Err(PyErr::take(obj.py())
                .unwrap_or_else(|| PyBufferError::new_err("object has no contiguous buffer")));
        }
        Ok(Buf { view })
    }

    /// A C-contiguous buffer to read.
    pub(crate) fn read(obj: &Bound<'_, PyAny>) -> PyResult<Buf> {
        Self::get(obj, ffi::PyBUF_C_CONTIGUOUS)
    }

    /// A C-contiguous, writable buffer.
    pub(crate) fn write(obj: &Bound<'_, PyAny>) -> PyResult<Buf> {
        Self::get(obj, ffi::PyBUF_C_CONTIGUOUS | ffi::PyBUF_WRITABLE)
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.view.len as usize
    }

    /// Bytes per item (what `recv_bytes_into` counts in).
    pub(crate) fn itemsize(&self) -> usize {
        (self.view.itemsize as usize).max(1)
    }

    /// The bytes. Call with the GIL held (so no Python thread of this
    /// process changes them meanwhile; memory another process shares, such
    /// as a `SharedMemory.buf`, is the caller's to synchronise, as with
    /// `multiprocessing`).
    pub(crate) fn bytes(&self, _py: Python<'_>) -> &[u8] {
        if self.len() == 0 {
            return &[];
        }
        // SAFETY: a C-contiguous view of `len` bytes at `buf`, kept alive
        // (and its memory pinned: a bytearray cannot resize while exported)
        // until `self` releases it; the GIL token keeps other threads of
        // this process from writing it during the borrow.
        unsafe { std::slice::from_raw_parts(self.view.buf as *const u8, self.len()) }
    }

    /// The bytes, writable (a view taken with [`Buf::write`]).
    pub(crate) fn bytes_mut(&mut self, _py: Python<'_>) -> &mut [u8] {
        if self.len() == 0 {
            return &mut [];
        }
        // SAFETY: as in `bytes`, and the exporter granted PyBUF_WRITABLE
        // (only `write` is used before calling this); `&mut self` makes
        // the borrow unique within this process's Rust code.
        unsafe { std::slice::from_raw_parts_mut(self.view.buf as *mut u8, self.len()) }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        Python::with_gil(|_| {
            // SAFETY: the view was filled by a successful PyObject_GetBuffer
            // and is released exactly once, with the GIL held.
            unsafe { ffi::PyBuffer_Release(&mut *self.view) }
        });
    }
}
