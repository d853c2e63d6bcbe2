//! The PEP 3333 `environ`: the CGI variables from the request (the path split at the
//! `SCRIPT_NAME` the application is mounted at, headers as `HTTP_*`, the server's name and
//! port) and the `wsgi.*` keys.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::Wsgi;
use super::input::Input;
use crate::handler::{Request, percent_decode_bytes};
use crate::http::Version;

/// The `environ` keys whose values are the same for every request a worker serves, in a dict
/// each request's `environ` starts as a copy of: `SCRIPT_NAME` (the mount point),
/// `SERVER_SOFTWARE` and the `wsgi.*` keys but `wsgi.input` and `wsgi.url_scheme`.
pub(super) fn template<'py>(
    py: Python<'py>,
    script_name: &str,
    errors: &Bound<'py, PyAny>,
    file_wrapper: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let env = PyDict::new(py);
    env.set_item(intern!(py, "SCRIPT_NAME"), script_name)?;
    env.set_item(
        intern!(py, "SERVER_SOFTWARE"),
        concat!("tine/", env!("CARGO_PKG_VERSION")),
    )?;
    env.set_item(intern!(py, "wsgi.version"), (1, 0))?;
    env.set_item(intern!(py, "wsgi.errors"), errors)?;
    env.set_item(intern!(py, "wsgi.multithread"), true)?;
    env.set_item(intern!(py, "wsgi.multiprocess"), true)?;
    env.set_item(intern!(py, "wsgi.run_once"), false)?;
    env.set_item(intern!(py, "wsgi.input_terminated"), true)?;
    env.set_item(intern!(py, "wsgi.file_wrapper"), file_wrapper)?;
    Ok(env)
}

impl Wsgi {
    /// The PEP 3333 `environ` for `request`: a copy of the worker's [`template`] with the
    /// request's keys added.
    pub(super) fn environ<'py>(
        &self,
        py: Python<'py>,
        request: Request,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = self.template.bind(py).copy()?;
        let path = latin1(&percent_decode_bytes(request.path()));
        let path_info = match path.strip_prefix(self.script_name.as_str()) {
            Some(rest)
                if !self.script_name.is_empty() && (rest.is_empty() || rest.starts_with('/')) =>
            {
                rest.to_owned()
            }
            _ => path,
        };
        env.set_item(intern!(py, "REQUEST_METHOD"), method(py, request.method()))?;
        env.set_item(intern!(py, "PATH_INFO"), path_info)?;
        env.set_item(intern!(py, "QUERY_STRING"), request.query().unwrap_or(""))?;
        env.set_item(intern!(py, "RAW_URI"), request.target())?;
        let protocol = match request.version() {
            Version::Http11 => intern!(py, "HTTP/1.1"),
            Version::Http10 => intern!(py, "HTTP/1.0"),
        };
        env.set_item(intern!(py, "SERVER_PROTOCOL"), protocol)?;
        let client = request.client();
        let scheme = client.scheme;
        let (server_name, server_port) = server_name_and_port(&request, scheme);
        env.set_item(intern!(py, "SERVER_NAME"), server_name)?;
        env.set_item(intern!(py, "SERVER_PORT"), server_port)?;
        match client.addr {
            Some(ip) => env.set_item(intern!(py, "REMOTE_ADDR"), ip.to_string())?,
            None => env.set_item(intern!(py, "REMOTE_ADDR"), "")?,
        }
        if let Some(peer) = request.peer_addr() {
            env.set_item(intern!(py, "REMOTE_PORT"), peer.port().to_string())?;
        }
        add_headers(py, &env, &request)?;
        let scheme = if scheme == "https" {
            intern!(py, "https")
        } else {
            intern!(py, "http")
        };
        env.set_item(intern!(py, "wsgi.url_scheme"), scheme)?;
        env.set_item(
            intern!(py, "wsgi.input"),
            Py::new(py, Input::new(request.into_body_parts()))?,
        )?;
        Ok(env)
    }
}

/// The request's headers, as `HTTP_*` keys (and `CONTENT_TYPE`, `CONTENT_LENGTH`).
fn add_headers(py: Python<'_>, env: &Bound<'_, PyDict>, request: &Request) -> PyResult<()> {
    let headers = request.headers().iter();
    for (i, (name, value)) in headers.clone().enumerate() {
        let Some(key) = header_key(py, name) else {
            continue;
        };
        let value = latin1(value);
        // Names differing only in case land on the same key: joined with a comma. Told
        // apart here, not by a lookup in the dict for every header.
        let repeated = headers
            .clone()
            .take(i)
            .any(|(earlier, _)| earlier.eq_ignore_ascii_case(name));
        match repeated.then(|| env.get_item(&key)).transpose()?.flatten() {
            Some(previous) => {
                let joined = format!("{},{value}", previous.extract::<String>()?);
                env.set_item(key, joined)?;
            }
            None => env.set_item(key, value)?,
        }
    }
    Ok(())
}

/// The `environ` key of the request header `name`: `CONTENT_TYPE`, `CONTENT_LENGTH` or
/// `HTTP_*` (interned for the headers most requests carry); `None` for a name with `_`, which
/// would land on the same key as its `-` spelling (a client could forge a proxy's header):
/// dropped, as gunicorn and nginx do.
fn header_key<'py>(py: Python<'py>, name: &str) -> Option<Bound<'py, PyString>> {
    let common = |lower: &str| -> Option<&Bound<'py, PyString>> {
        Some(match lower {
            "host" => intern!(py, "HTTP_HOST"),
            "user-agent" => intern!(py, "HTTP_USER_AGENT"),
            "accept" => intern!(py, "HTTP_ACCEPT"),
            "accept-encoding" => intern!(py, "HTTP_ACCEPT_ENCODING"),
            "accept-language" => intern!(py, "HTTP_ACCEPT_LANGUAGE"),
            "connection" => intern!(py, "HTTP_CONNECTION"),
            "cookie" => intern!(py, "HTTP_COOKIE"),
            "content-type" => intern!(py, "CONTENT_TYPE"),
            "content-length" => intern!(py, "CONTENT_LENGTH"),
            _ => return None,
        })
    };
    if name.len() <= 15 {
        let mut lower = [0u8; 15];
        lower[..name.len()].copy_from_slice(name.as_bytes());
        lower[..name.len()].make_ascii_lowercase();
        if let Some(key) = std::str::from_utf8(&lower[..name.len()])
            .ok()
            .and_then(common)
        {
            return Some(key.clone());
        }
    }
    if name.contains('_') {
        return None;
    }
    let mut key = String::with_capacity(name.len() + 5);
    key.push_str("HTTP_");
    key.extend(name.chars().map(|c| match c {
        '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    Some(PyString::new(py, &key))
}

/// `REQUEST_METHOD`: interned for the common methods.
fn method<'py>(py: Python<'py>, method: &str) -> Bound<'py, PyString> {
    match method {
        "GET" => intern!(py, "GET").clone(),
        "POST" => intern!(py, "POST").clone(),
        "HEAD" => intern!(py, "HEAD").clone(),
        other => PyString::new(py, other),
    }
}

/// `SERVER_NAME` and `SERVER_PORT`: the listening socket's address, as gunicorn gives them
/// (an application after the name the client used reads `HTTP_HOST`); for a unix socket, the
/// `Host` header's.
fn server_name_and_port(request: &Request, scheme: &str) -> (String, String) {
    let default_port = if scheme == "https" { "443" } else { "80" };
    if let Some(crate::config::BindAddr::Tcp(addr)) = request.listener() {
        return (addr.ip().to_string(), addr.port().to_string());
    }
    match request.headers().get_str("host").filter(|h| !h.is_empty()) {
        Some(host) => match host.rsplit_once(':') {
            Some((name, port)) if !port.contains(']') => (name.to_owned(), port.to_owned()),
            _ => (host.to_owned(), default_port.to_owned()),
        },
        None => ("localhost".to_owned(), default_port.to_owned()),
    }
}

/// Bytes as a `str` of the code points 0-255, the way PEP 3333 carries them.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}
