//! `Pipe()` and `Connection` over the crate's named pipes.
//!
//! Each end is claimed by the first process that uses it (not by the one
//! that made it), so a `Connection` handed to a child before the parent
//! used it works there under every start method; `close()` in a process
//! that never used the end only drops this process's handle, as closing a
//! file descriptor would.

use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use shmprim::{End, Error};

use crate::buffer::Buf;
use crate::sync::{name_of, reduce};
use crate::{buffer_too_short, create_named, dumps, loads, py_err, send_err, timeout_of, wait};

/// Ring bytes per direction.
const CAPACITY: usize = shmprim::Pipe::DEFAULT_CAPACITY;

/// `multiprocessing.connection.Connection`.
#[pyclass(module = "shmprim._native")]
pub struct Connection {
    pipe: shmprim::Pipe,
    end: End,
    /// Claimed on first use. (A `Mutex` only to make the class `Sync`:
    /// methods take `&mut self`, so it is reached with `get_mut`.)
    conn: Mutex<Option<shmprim::Connection>>,
    closed: bool,
}

fn closed_err() -> PyErr {
    PyOSError::new_err("handle is closed")
}

impl Connection {
    fn new(pipe: &shmprim::Pipe, end: End) -> Connection {
        Connection {
            pipe: pipe.clone(),
            end,
            conn: Mutex::new(None),
            closed: false,
        }
    }

    /// This process's end, claimed on first use.
    fn conn(&mut self) -> PyResult<&mut shmprim::Connection> {
        if self.closed {
            return Err(closed_err());
        }
        let slot = self.conn.get_mut().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            let c = self.pipe.connect(self.end).map_err(|e| match e {
                Error::AlreadyClaimed => PyOSError::new_err(
                    "this end of the pipe was already used by another process \
                     (an end is used by one process: pass it on before using it)",
                ),
                e => py_err(e),
            })?;
            *slot = Some(c);
        }
        Ok(slot.as_mut().expect("just set"))
    }

    fn is_readable(&self) -> bool {
        self.pipe.is_duplex() || self.end == End::A
    }

    fn is_writable(&self) -> bool {
        self.pipe.is_duplex() || self.end == End::B
    }

    fn check_readable(&self) -> PyResult<()> {
        if self.closed {
            return Err(closed_err());
        }
        if !self.is_readable() {
            return Err(PyOSError::new_err("connection is write-only"));
        }
        Ok(())
    }

    fn check_writable(&self) -> PyResult<()> {
        if self.closed {
            return Err(closed_err());
        }
        if !self.is_writable() {
            return Err(PyOSError::new_err("connection is read-only"));
        }
        Ok(())
    }

    fn send_raw(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.check_writable()?;
        let c = self.conn()?;
        match c.try_send_bytes(data) {
            Ok(()) => Ok(()),
            Err(Error::Full) => {
                let owned = data.to_vec();
                wait(py, None, |d| c.send_bytes_timeout(&owned, d))
                    .map(|_| ())
                    .map_err(|f| f.into_py_err(send_err))
            }
            Err(e) => Err(send_err(e)),
        }
    }

    /// Waits (GIL released, in slices) until a message or the end of the
    /// stream can be read; `false` if `timeout` passed first.
    fn ready(&mut self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<bool> {
        self.check_readable()?;
        let c = self.conn()?;
        let poll = |c: &mut shmprim::Connection, d| match c.poll(Some(d)) {
            Ok(true) | Err(Error::Disconnected) => Ok(()),
            Ok(false) => Err(Error::Timeout),
            Err(e) => Err(e),
        };
        if poll(c, Duration::ZERO).is_ok() {
            return Ok(true);
        }
        if timeout == Some(Duration::ZERO) {
            return Ok(false);
        }
        match wait(py, timeout, |d| poll(c, d)) {
            Ok(r) => Ok(r.is_some()),
            Err(f) => Err(f.into_py_err(py_err)),
        }
    }

    fn recv_raw<'py>(
        &mut self,
        py: Python<'py>,
        maxlength: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.check_readable()?;
        if let Some(max) = maxlength {
            // Wait with the GIL released until something is there; the
            // receive itself then waits only for the rest of a fragmented
            // message that is arriving.
            self.ready(py, None)?;
            return match self.conn()?.recv_bytes_max(max) {
                Ok(v) => Ok(PyBytes::new(py, &v)),
                Err(Error::MessageTooLarge { .. }) => {
                    self.close();
                    Err(PyOSError::new_err("bad message length"))
                }
                Err(e) => Err(py_err(e)),
            };
        }
        let c = self.conn()?;
        let r = match c.try_recv_in_place().map(|m| PyBytes::new(py, &m)) {
            Ok(b) => return Ok(b),
            // Fragmented: reassembled by the copying receive.
            Err(Error::MessageTooLarge { .. }) => c.try_recv_bytes(),
            Err(e) => Err(e),
        };
        match r {
            Ok(v) => Ok(PyBytes::new(py, &v)),
            Err(Error::Empty) => match wait(py, None, |d| c.recv_bytes_timeout(d)) {
                Ok(Some(v)) => Ok(PyBytes::new(py, &v)),
                Ok(None) => Err(py_err(Error::Timeout)),
                Err(f) => Err(f.into_py_err(py_err)),
            },
            Err(e) => Err(py_err(e)),
        }
    }
}

#[pymethods]
impl Connection {
    fn send(&mut self, py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let p = dumps(obj)?;
        self.send_raw(py, p.as_bytes())
    }

    fn recv<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let b = self.recv_raw(py, None)?;
        loads(py, b.as_bytes())
    }

    #[pyo3(signature = (buf, offset=0, size=None))]
    fn send_bytes(
        &mut self,
        py: Python<'_>,
        buf: &Bound<'_, PyAny>,
        offset: isize,
        size: Option<isize>,
    ) -> PyResult<()> {
        if let Ok(b) = buf.downcast_exact::<PyBytes>() {
            if offset == 0 && size.is_none() {
                return self.send_raw(py, b.as_bytes());
            }
        }
        let view = Buf::read(buf)?;
        let data = view.bytes(py);
        let n = data.len() as isize;
        if offset < 0 {
            return Err(PyValueError::new_err("offset is negative"));
        }
        if n < offset {
            return Err(PyValueError::new_err("buffer length < offset"));
        }
        let size = size.unwrap_or(n - offset);
        if size < 0 {
            return Err(PyValueError::new_err("size is negative"));
        }
        if offset + size > n {
            return Err(PyValueError::new_err("buffer length < offset + size"));
        }
        let part = &data[offset as usize..(offset + size) as usize];
        self.send_raw(py, part)
    }

    #[pyo3(signature = (maxlength=None))]
    fn recv_bytes<'py>(
        &mut self,
        py: Python<'py>,
        maxlength: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let max = match maxlength {
            Some(m) if m < 0 => return Err(PyValueError::new_err("negative maxlength")),
            Some(m) => Some(m as usize),
            None => None,
        };
        self.recv_raw(py, max)
    }

    /// Receives one message straight into `buf` (any writable C-contiguous
    /// buffer) at byte `offset`; returns its length in items of `buf`.
    #[pyo3(signature = (buf, offset=0))]
    fn recv_bytes_into(
        &mut self,
        py: Python<'_>,
        buf: &Bound<'_, PyAny>,
        offset: isize,
    ) -> PyResult<usize> {
        self.check_readable()?;
        let mut view = Buf::write(buf)?;
        if offset < 0 {
            return Err(PyValueError::new_err("negative offset"));
        }
        let offset = offset as usize;
        if offset > view.len() {
            return Err(PyValueError::new_err("offset too large"));
        }
        let itemsize = view.itemsize();
        loop {
            let c = self.conn()?;
            match c.try_recv_bytes_into(&mut view.bytes_mut(py)[offset..]) {
                Ok(n) => return Ok(n / itemsize),
                Err(Error::Empty) => {
                    self.ready(py, None)?;
                }
                Err(Error::BufferTooShort { .. }) => {
                    let m = c.try_recv_bytes().map_err(py_err)?;
                    return Err(buffer_too_short(py, &m));
                }
                Err(e) => return Err(py_err(e)),
            }
        }
    }

    /// Whether there is anything to read (a message, or the end of the
    /// stream); waits up to `timeout` seconds (`None`: for ever).
    #[pyo3(signature = (timeout=0.0))]
    fn poll(&mut self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let t = timeout_of(true, timeout)?;
        self.ready(py, t)
    }

    fn close(&mut self) {
        let slot = self.conn.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(mut c) = slot.take() {
            c.close();
        }
        self.closed = true;
    }

    #[getter]
    fn closed(&self) -> bool {
        self.closed
    }

    #[getter]
    fn readable(&self) -> bool {
        self.is_readable()
    }

    #[getter]
    fn writable(&self) -> bool {
        self.is_writable()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&mut self, _args: &Bound<'_, PyTuple>) {
        self.close()
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        if self.closed {
            return Err(closed_err());
        }
        let end = matches!(self.end, End::B);
        reduce(py, "_open_connection", (name_of(self.pipe.segment())?, end))
    }

    fn __repr__(&self) -> String {
        format!(
            "<shmprim.Connection {:?} end {}{}>",
            self.pipe.segment().name().unwrap_or(""),
            if self.end == End::A { "A" } else { "B" },
            if self.closed { " closed" } else { "" }
        )
    }
}

#[pyfunction]
fn _open_connection(name: &str, end_b: bool) -> PyResult<Connection> {
    let pipe = shmprim::Pipe::open(name).map_err(py_err)?;
    Ok(Connection::new(&pipe, if end_b { End::B } else { End::A }))
}

/// `multiprocessing.Pipe(duplex=True)`: two connections; with
/// `duplex=False`, `(reader, writer)`.
#[pyfunction]
#[pyo3(name = "Pipe", signature = (duplex=true))]
fn pipe(duplex: bool) -> PyResult<(Connection, Connection)> {
    let pipe = create_named(|n| {
        if duplex {
            shmprim::Pipe::create(n, CAPACITY)
        } else {
            shmprim::Pipe::create_simplex(n, CAPACITY)
        }
    })?;
    Ok((
        Connection::new(&pipe, End::A),
        Connection::new(&pipe, End::B),
    ))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Connection>()?;
    m.add_function(wrap_pyfunction!(pipe, m)?)?;
    m.add_function(wrap_pyfunction!(_open_connection, m)?)?;
    Ok(())
}
