//! Python applications: the embedded interpreter and the WSGI handler.
//!
//! tine links the shared libpython of the `python3` it was built with (`PYO3_PYTHON` names
//! another), with an rpath to that interpreter's `LIBDIR`, so the binary loads the library it
//! was built against. The interpreter starts in each worker after fork (lazy, gunicorn's
//! default) or once in the master before the workers are forked (`[app] preload`), using the
//! fork protocol CPython provides for that.
//!
//! A virtualenv (`[app] virtualenv`, else `VIRTUAL_ENV`, else the one whose `bin/` holds the
//! running `tine`, as `pip install` puts it there) is honoured the way its own `python` would see
//! it: the interpreter starts as `VENV/bin/python`, so `sys.prefix` is the virtualenv
//! and its `site-packages` are on `sys.path`.
//!
//! Only the pool threads and the import run Python; the event loop never takes the GIL. Each
//! pool thread keeps one Python thread state for its whole life (so `threading.local` data, a
//! Django database connection for one, survives from one request to the next) and holds the
//! GIL only while it calls the application or advances its response.

#![allow(unsafe_code)]

mod asgi;
mod interp;
mod wsgi;

use pyo3::prelude::*;

use crate::config::{App, Interface};
use crate::handler::{BuildError, Handler};
pub use asgi::Asgi;
pub use interp::{
    Interpreter, Venv, VenvSource, after_fork_child, after_fork_parent, before_fork,
    ensure_started, preload, venv_for,
};
pub use wsgi::Wsgi;

/// Builds the handler for the Python application `app` names, in this worker: starts the
/// interpreter (unless the master preloaded the application), imports the application, and
/// serves it as WSGI or ASGI, as `[app] interface` says or, for `"auto"`, as the application
/// shows (an ASGI application is a coroutine function, or its `__call__` is one).
pub fn build(app: &App) -> Result<Box<dyn Handler>, BuildError> {
    interp::ensure_started(app)?;
    let (application, interface) = Python::attach(|py| -> Result<_, BuildError> {
        let application = match interp::preloaded() {
            Some(application) => application.clone_ref(py),
            None => interp::load_app(py, app)?,
        };
        let interface = match app.interface {
            Interface::Auto => {
                let asgi = interp::support(py)
                    .getattr("looks_asgi")
                    .and_then(|f| f.call1((application.bind(py),)))
                    .and_then(|v| v.extract::<bool>())
                    .map_err(|err| interp::format_err(py, &err))?;
                if asgi {
                    Interface::Asgi
                } else {
                    Interface::Wsgi
                }
            }
            forced => forced,
        };
        Ok((application, interface))
    })?;
    let name = app.app.as_deref().unwrap_or("the application");
    match interface {
        Interface::Asgi => {
            log::info!("serving {name} as ASGI 3");
            Ok(Box::new(Asgi::start(application, app)?))
        }
        _ => {
            log::debug!("serving {name} as WSGI (PEP 3333)");
            Python::attach(|py| Ok(Box::new(Wsgi::new(py, application, app)?) as Box<dyn Handler>))
        }
    }
}

/// Logs where the thread `thread` (its `pthread_self()`) is in Python, as "`what` was stuck
/// here", then runs `after`; on a thread of its own, which waits for the GIL, so the caller
/// (the worker's event loop) returns at once.
fn log_stack_of(thread: u64, what: String, after: impl FnOnce() + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("py-stack".to_owned())
        .spawn(move || {
            let stack = Python::attach(|py| {
                interp::support(py)
                    .getattr("stack_of")
                    .and_then(|f| f.call1((thread,)))
                    .and_then(|s| s.extract::<Option<String>>())
                    .map_err(|err| interp::format_err(py, &err))
            });
            match stack {
                Ok(Some(stack)) => {
                    log::error!("{what} was stuck here (Python stack, innermost last):\n{stack}")
                }
                Ok(None) => log::error!("{what}: its thread is no longer in Python"),
                Err(err) => log::error!("{what}: could not read its Python stack: {err}"),
            }
            after();
        });
    if let Err(err) = spawned {
        log::error!("could not start a thread to read a Python stack: {err}");
    }
}

/// The name of `value`'s type ("bytes", "dict"), for an error the application is shown.
fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// `repr(value)`, for an error the application is shown; empty if `__repr__` raised.
fn repr(value: &Bound<'_, PyAny>) -> String {
    value.repr().map(|r| r.to_string()).unwrap_or_default()
}

/// A response's `Content-Length` after one more such field, `value`, given what the fields
/// before it said: `None` when it is not a number, or another number than theirs.
fn content_length(previous: Option<u64>, value: &[u8]) -> Option<u64> {
    let value = std::str::from_utf8(value).ok()?.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let parsed = value.parse::<u64>().ok()?;
    match previous {
        Some(before) if before != parsed => None,
        _ => Some(parsed),
    }
}

/// The Python tine was built against, as the build script found it.
pub struct BuiltWith {
    /// `major.minor`.
    pub version: &'static str,
    /// The interpreter's executable.
    pub executable: &'static str,
    /// The directory libpython was linked from (the binary's rpath).
    pub libdir: &'static str,
}

/// The Python tine was built against.
pub const BUILT_WITH: BuiltWith = BuiltWith {
    version: env!("TINE_PYTHON_VERSION"),
    executable: env!("TINE_PYTHON_EXECUTABLE"),
    libdir: env!("TINE_PYTHON_LIBDIR"),
};

/// One line on which Python an `[app]` section would run with, for `--print-config` and
/// `--check-config`: nothing is imported or started.
pub fn describe(app: &crate::config::App) -> Result<String, String> {
    let venv = venv_for(app)?;
    let mut text = format!(
        "python {} ({}; libpython from {})",
        BUILT_WITH.version, BUILT_WITH.executable, BUILT_WITH.libdir
    );
    if let Some(venv) = venv {
        text.push_str(&format!("; {}", venv.describe()));
    }
    Ok(text)
}
