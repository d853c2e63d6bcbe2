//! The objects the `environ` hands the application: `wsgi.input` (the request body, already
//! received, read without the GIL when it is in a file), `wsgi.errors` (tine's error log) and
//! `wsgi.file_wrapper`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::handler::RequestBody;

/// `wsgi.input`: the request body, already received, from memory or its temporary file.
#[pyclass(module = "tine")]
pub(super) struct Input {
    body: RequestBody,
    position: u64,
}

impl Input {
    pub(super) fn new(body: RequestBody) -> Input {
        Input { body, position: 0 }
    }

    fn len(&self) -> u64 {
        match &self.body {
            RequestBody::Memory(bytes) => bytes.len() as u64,
            RequestBody::File(_, len) => *len,
        }
    }

    /// Up to `limit` bytes from the position, stopping after a newline when `line`.
    fn take(&mut self, py: Python<'_>, limit: Option<u64>, line: bool) -> PyResult<Vec<u8>> {
        let left = self.len() - self.position;
        let want = limit.map_or(left, |n| n.min(left));
        let out = match &self.body {
            RequestBody::Memory(bytes) => {
                let start = self.position as usize;
                let mut end = start + want as usize;
                if line && let Some(i) = bytes[start..end].iter().position(|&b| b == b'\n') {
                    end = start + i + 1;
                }
                bytes[start..end].to_vec()
            }
            RequestBody::File(file, _) => {
                let file = Arc::clone(file);
                let position = self.position;
                py.detach(move || read_file(&file, position, want, line))?
            }
        };
        self.position += out.len() as u64;
        Ok(out)
    }
}

/// Reads up to `want` bytes of `file` from `position` (to the first newline, when `line`),
/// without the GIL.
fn read_file(file: &File, position: u64, want: u64, line: bool) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut block = vec![0u8; 64 * 1024];
    while (out.len() as u64) < want {
        let room = (want - out.len() as u64).min(block.len() as u64) as usize;
        let n = file.read_at(&mut block[..room], position + out.len() as u64)?;
        if n == 0 {
            break;
        }
        if line && let Some(i) = block[..n].iter().position(|&b| b == b'\n') {
            out.extend_from_slice(&block[..=i]);
            break;
        }
        out.extend_from_slice(&block[..n]);
    }
    Ok(out)
}

/// A size argument: `None` or negative means "all".
fn size_limit(size: Option<i64>) -> Option<u64> {
    size.and_then(|n| u64::try_from(n).ok())
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size = None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<i64>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.take(py, size_limit(size), false)?;
        Ok(PyBytes::new(py, &bytes))
    }

    #[pyo3(signature = (size = None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<i64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.take(py, size_limit(size), true)?;
        Ok(PyBytes::new(py, &bytes))
    }

    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<i64>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let hint = size_limit(hint).filter(|&n| n > 0);
        let mut lines = Vec::new();
        let mut total = 0u64;
        loop {
            let line = self.take(py, None, true)?;
            if line.is_empty() {
                break;
            }
            total += line.len() as u64;
            lines.push(PyBytes::new(py, &line));
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.take(py, None, true)?;
        Ok((!line.is_empty()).then(|| PyBytes::new(py, &line)))
    }

    fn readable(&self) -> bool {
        true
    }

    fn close(&self) {}
}

/// `wsgi.errors`: each write is a line in tine's error log.
#[pyclass(module = "tine")]
pub(super) struct Errors;

#[pymethods]
impl Errors {
    fn write(&self, text: &str) -> usize {
        let line = text.trim_end_matches(['\n', '\r']);
        if !line.is_empty() {
            log::error!("wsgi.errors: {line}");
        }
        text.len()
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(&line?.extract::<String>()?);
        }
        Ok(())
    }

    fn flush(&self) {}
}

/// `wsgi.file_wrapper`: iterates a file-like object in blocks; a wrapped regular file is sent
/// with `sendfile(2)` by the event loop instead.
#[pyclass(module = "tine")]
pub(super) struct FileWrapper {
    pub(super) filelike: Py<PyAny>,
    block_size: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, block_size = 8192))]
    fn new(filelike: Py<PyAny>, block_size: usize) -> FileWrapper {
        FileWrapper {
            filelike,
            block_size: block_size.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let block = self
            .filelike
            .bind(py)
            .call_method1(intern!(py, "read"), (self.block_size,))?;
        Ok((block.len()? > 0).then_some(block))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr(intern!(py, "close"))? {
            filelike.call_method0(intern!(py, "close"))?;
        }
        Ok(())
    }
}
