//! The PEP 3333 `environ`: the CGI variables from the request (the path split at the
//! `SCRIPT_NAME` the application is mounted at, headers as `HTTP_*`, the server's name and
//! port) and the `wsgi.*` keys.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::Wsgi;
use super::input::Input;
use crate::handler::{Request, percent_decode_bytes};

impl Wsgi {
    /// The PEP 3333 `environ` for `request`.
    pub(super) fn environ<'py>(
        &self,
        py: Python<'py>,
        request: Request,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = PyDict::new(py);
        let path = latin1(&percent_decode_bytes(request.path()));
        let path_info = match path.strip_prefix(self.script_name.as_str()) {
            Some(rest)
                if !self.script_name.is_empty() && (rest.is_empty() || rest.starts_with('/')) =>
            {
                rest.to_owned()
            }
            _ => path,
        };
        env.set_item(intern!(py, "REQUEST_METHOD"), request.method())?;
        env.set_item(intern!(py, "SCRIPT_NAME"), self.script_name.as_str())?;
        env.set_item(intern!(py, "PATH_INFO"), path_info)?;
        env.set_item(intern!(py, "QUERY_STRING"), request.query().unwrap_or(""))?;
        env.set_item(intern!(py, "RAW_URI"), request.target())?;
        env.set_item(intern!(py, "SERVER_PROTOCOL"), request.version().as_str())?;
        env.set_item(
            intern!(py, "SERVER_SOFTWARE"),
            concat!("tine/", env!("CARGO_PKG_VERSION")),
        )?;
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
        for (name, value) in request.headers().iter() {
            let key = if name.eq_ignore_ascii_case("content-type") {
                "CONTENT_TYPE".to_owned()
            } else if name.eq_ignore_ascii_case("content-length") {
                "CONTENT_LENGTH".to_owned()
            } else if name.contains('_') {
                // `X_Forwarded_For` would land on the same key as `X-Forwarded-For`: a client
                // could forge a proxy's header. Dropped, as gunicorn and nginx do.
                continue;
            } else {
                let mut key = String::with_capacity(name.len() + 5);
                key.push_str("HTTP_");
                key.extend(name.chars().map(|c| match c {
                    '-' => '_',
                    c => c.to_ascii_uppercase(),
                }));
                key
            };
            let value = latin1(value);
            let key = PyString::new(py, &key);
            match env.get_item(&key)? {
                Some(previous) => {
                    let joined = format!("{},{value}", previous.extract::<String>()?);
                    env.set_item(key, joined)?;
                }
                None => env.set_item(key, value)?,
            }
        }
        env.set_item(intern!(py, "wsgi.version"), (1, 0))?;
        env.set_item(intern!(py, "wsgi.url_scheme"), scheme)?;
        env.set_item(
            intern!(py, "wsgi.input"),
            Py::new(py, Input::new(request.into_body_parts()))?,
        )?;
        env.set_item(intern!(py, "wsgi.errors"), self.errors.bind(py))?;
        env.set_item(intern!(py, "wsgi.multithread"), true)?;
        env.set_item(intern!(py, "wsgi.multiprocess"), true)?;
        env.set_item(intern!(py, "wsgi.run_once"), false)?;
        env.set_item(intern!(py, "wsgi.input_terminated"), true)?;
        env.set_item(intern!(py, "wsgi.file_wrapper"), self.file_wrapper.bind(py))?;
        Ok(env)
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
