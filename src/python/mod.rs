//! Python applications: the embedded interpreter and the WSGI handler.
//!
//! tine links the shared libpython of the `python3` it was built with (`PYO3_PYTHON` names
//! another), with an rpath to that interpreter's `LIBDIR`, so the binary loads the library it
//! was built against. The interpreter starts in each worker after fork (lazy, gunicorn's
//! default) or once in the master before the workers are forked (`[app] preload`), using the
//! fork protocol CPython provides for that.
//!
//! A virtualenv (`[app] virtualenv`, else `VIRTUAL_ENV`) is honoured the way its own `python`
//! would see it: the interpreter starts as `VENV/bin/python`, so `sys.prefix` is the virtualenv
//! and its `site-packages` are on `sys.path`.
//!
//! Only the pool threads and the import run Python; the event loop never takes the GIL. Each
//! pool thread keeps one Python thread state for its whole life (so `threading.local` data, a
//! Django database connection for one, survives from one request to the next) and holds the
//! GIL only while it calls the application or advances its response.

#![allow(unsafe_code)]

mod interp;
mod wsgi;

pub use interp::{
    Interpreter, Venv, after_fork_child, after_fork_parent, before_fork, ensure_started, preload,
    venv_for,
};
pub use wsgi::Wsgi;

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
        text.push_str(&format!("; virtualenv {}", venv.dir.display()));
    }
    Ok(text)
}
