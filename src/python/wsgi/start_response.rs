//! `start_response` and `write()`: the status and headers the application gives, checked as
//! PEP 3333 asks (a well-formed status, latin-1 header values, no hop-by-hop headers, one
//! `Content-Length`), and what it writes before its iterable.

use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::{repr, type_name};
use crate::handler::HeaderFields;

/// The status and headers the application gave `start_response`, and what it wrote with
/// `write()`.
#[pyclass(module = "tine")]
#[derive(Default)]
pub(super) struct StartResponse {
    pub(super) status: Option<(u16, String)>,
    pub(super) headers: HeaderFields,
    pub(super) content_length: Option<u64>,
    /// Whether the headers count as sent: a body chunk or a `write()` went out.
    pub(super) sent: bool,
    pub(super) written: Vec<u8>,
}

/// PEP 3333 §"Other HTTP Features": these belong to the server.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        {
            let this = slf.borrow();
            match exc_info.filter(|e| !e.is_none()) {
                Some(exc) if this.sent => {
                    // Too late to change the status: re-raise, as PEP 3333 says.
                    let value = exc.get_item(1)?;
                    let value = value.call_method1("with_traceback", (exc.get_item(2)?,))?;
                    return Err(PyErr::from_value(value));
                }
                Some(_) => {}
                None if this.status.is_some() => {
                    return Err(PyAssertionError::new_err(
                        "start_response was called a second time without exc_info",
                    ));
                }
                None => {}
            }
        }
        let status = parse_status(status)?;
        let (fields, content_length) = parse_headers(headers)?;
        let mut this = slf.borrow_mut();
        this.status = Some(status);
        this.headers = fields;
        this.content_length = content_length;
        drop(this);
        slf.getattr(intern!(slf.py(), "write"))
    }

    /// The `write()` callable: bytes sent before the response iterable's.
    fn write(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.status.is_none() {
            return Err(PyAssertionError::new_err(
                "write() was called before start_response",
            ));
        }
        let bytes = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!("write() takes bytes, not {}", type_name(data)))
        })?;
        self.written.extend_from_slice(bytes.as_bytes());
        self.sent = true;
        Ok(())
    }
}

/// The code and reason phrase of a status like `"200 OK"`.
fn parse_status(status: &Bound<'_, PyAny>) -> PyResult<(u16, String)> {
    let text: String = status
        .cast::<PyString>()
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "the status must be a str like \"200 OK\", not {}",
                repr(status)
            ))
        })?
        .to_string_lossy()
        .into_owned();
    let bytes = text.as_bytes();
    let well_formed = bytes.len() >= 4
        && bytes[..3].iter().all(u8::is_ascii_digit)
        && bytes[3] == b' '
        && bytes[0] != b'0'
        && !bytes.iter().any(|&b| b < 0x20 || b == 0x7f);
    if !well_formed {
        return Err(PyValueError::new_err(format!(
            "the status {text:?} is not a three-digit code, a space and a reason phrase"
        )));
    }
    Ok((
        text[..3].parse().expect("three digits"),
        text[4..].to_owned(),
    ))
}

fn parse_headers(headers: &Bound<'_, PyAny>) -> PyResult<(HeaderFields, Option<u64>)> {
    if !(headers.is_instance_of::<PyList>() || headers.is_instance_of::<PyTuple>()) {
        return Err(PyTypeError::new_err(format!(
            "the response headers must be a list of (name, value) tuples, not {}",
            type_name(headers)
        )));
    }
    let mut fields = Vec::new();
    let mut content_length = None;
    for item in headers.try_iter()? {
        let item = item?;
        let pair = item
            .cast::<PyTuple>()
            .ok()
            .filter(|t| t.len() == 2)
            .ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "a response header must be a (name, value) tuple, not {}",
                    repr(&item)
                ))
            })?;
        let name = pair.get_item(0)?;
        let value = pair.get_item(1)?;
        let (Ok(name), Ok(value)) = (name.cast::<PyString>(), value.cast::<PyString>()) else {
            return Err(PyTypeError::new_err(format!(
                "a response header's name and value must be str: {}",
                repr(pair)
            )));
        };
        // `to_string_lossy`: what `to_string` gives, without a call of `str()` and a
        // formatter.
        let name = name.to_string_lossy().into_owned();
        let value = value.to_string_lossy();
        let Some(value_bytes) = value
            .chars()
            .map(|c| u8::try_from(u32::from(c)).ok())
            .collect::<Option<Vec<u8>>>()
        else {
            return Err(PyValueError::new_err(format!(
                "the response header {name}'s value {value:?} is not latin-1 (PEP 3333)"
            )));
        };
        if !crate::http::valid_header(&name, &value_bytes) {
            return Err(PyValueError::new_err(format!(
                "the response header {name:?}: {value:?} is invalid (a name that is not a token, \
                 or CR, LF or NUL in the value)"
            )));
        }
        let lower = name.to_ascii_lowercase();
        if HOP_BY_HOP.contains(&lower.as_str()) {
            return Err(PyValueError::new_err(format!(
                "the hop-by-hop header {name:?} belongs to the server; a WSGI application must \
                 not set it (PEP 3333)"
            )));
        }
        if lower == "content-length" {
            content_length = Some(
                super::super::content_length(content_length, &value_bytes).ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "the response header Content-Length: {value:?} is not one number"
                    ))
                })?,
            );
            continue;
        }
        fields.push((name, value_bytes));
    }
    Ok((fields, content_length))
}
