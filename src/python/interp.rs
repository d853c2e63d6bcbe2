//! Starting the interpreter (once per process), the virtualenv, loading the application, the
//! fork protocol for preload, and the Python-side helpers every other part uses.

use std::cell::Cell;
use std::ffi::{CStr, CString, OsStr};
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyModule;

use super::BUILT_WITH;
use crate::config::App;

/// A virtualenv tine was asked to use, or found itself installed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Venv {
    /// Its directory.
    pub dir: PathBuf,
    /// Its `bin/python`.
    pub python: PathBuf,
    /// The Python version it was made for (`major.minor`), from its `pyvenv.cfg`.
    pub version: String,
    /// What named it.
    pub source: VenvSource,
}

impl Venv {
    /// `virtualenv DIR: WHY`, for the start-up log and `--print-config`.
    pub fn describe(&self) -> String {
        format!("virtualenv {}: {}", self.dir.display(), self.source.why())
    }
}

/// What named the virtualenv tine uses, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VenvSource {
    /// `[app] virtualenv` (or `--virtualenv`).
    Config,
    /// The `VIRTUAL_ENV` environment variable, as activating a virtualenv sets it.
    Environment,
    /// The running program is `VENV/bin/tine` and `VENV/pyvenv.cfg` exists: `pip install tine`
    /// put it there.
    Installed,
}

impl VenvSource {
    /// The setting that named it, as an error message starts.
    fn setting(self) -> &'static str {
        match self {
            VenvSource::Config => "app.virtualenv",
            VenvSource::Environment => "VIRTUAL_ENV",
            VenvSource::Installed => "the virtualenv tine is installed in",
        }
    }

    /// Why it is used, as the log says it.
    fn why(self) -> &'static str {
        match self {
            VenvSource::Config => "from app.virtualenv",
            VenvSource::Environment => "from VIRTUAL_ENV",
            VenvSource::Installed => "the virtualenv tine is installed in",
        }
    }
}

/// Which virtualenv to use: `explicit` (`[app] virtualenv`), else `environment` (the value of
/// `VIRTUAL_ENV`, unless empty), else the one the program at `exe` is installed in (`exe` is
/// `VENV/bin/tine` and `is_venv(VENV)`), else none.
fn choose_venv(
    explicit: Option<&Path>,
    environment: Option<&OsStr>,
    exe: Option<&Path>,
    is_venv: impl Fn(&Path) -> bool,
) -> Option<(PathBuf, VenvSource)> {
    if let Some(dir) = explicit {
        return Some((dir.to_path_buf(), VenvSource::Config));
    }
    if let Some(dir) = environment.filter(|dir| !dir.is_empty()) {
        return Some((PathBuf::from(dir), VenvSource::Environment));
    }
    let installed = exe?.parent()?.parent()?;
    is_venv(installed).then(|| (installed.to_path_buf(), VenvSource::Installed))
}

/// The virtualenv `app` runs in (`choose_venv` says which); checked to be one, made for the
/// Python tine embeds.
pub fn venv_for(app: &App) -> Result<Option<Venv>, String> {
    let environment = std::env::var_os("VIRTUAL_ENV");
    let exe = std::env::current_exe().ok();
    let Some((dir, source)) = choose_venv(
        app.virtualenv.as_deref(),
        environment.as_deref(),
        exe.as_deref(),
        |dir| dir.join("pyvenv.cfg").is_file(),
    ) else {
        return Ok(None);
    };
    let setting = source.setting();
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let cfg = dir.join("pyvenv.cfg");
    let text = std::fs::read_to_string(&cfg).map_err(|err| {
        format!(
            "{setting}: {} is not a virtualenv: could not read {}: {}",
            dir.display(),
            cfg.display(),
            crate::text::describe_io(&err)
        )
    })?;
    let version = pyvenv_version(&text).ok_or_else(|| {
        format!(
            "{setting}: {} names no Python version (no `version` line), so tine cannot tell \
             whether it fits",
            cfg.display()
        )
    })?;
    if version != BUILT_WITH.version {
        return Err(format!(
            "{setting}: the virtualenv {} was made for Python {version}, but this tine embeds \
             Python {} ({}); recreate the virtualenv with that Python, or build tine with \
             PYO3_PYTHON=python{version}",
            dir.display(),
            BUILT_WITH.version,
            BUILT_WITH.executable
        ));
    }
    let python = ["python", "python3", &format!("python{version}")]
        .iter()
        .map(|name| dir.join("bin").join(name))
        .find(|path| path.exists())
        .ok_or_else(|| {
            format!(
                "{setting}: the virtualenv {} has no bin/python",
                dir.display()
            )
        })?;
    Ok(Some(Venv {
        dir,
        python,
        version,
        source,
    }))
}

/// The `major.minor` a `pyvenv.cfg` names (`version = 3.11.7`, or uv's `version_info`).
fn pyvenv_version(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        if !matches!(key.trim(), "version" | "version_info") {
            return None;
        }
        let mut parts = value.trim().split('.');
        let major = parts.next()?.trim();
        let minor = parts.next()?.trim();
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        (digits(major) && digits(minor)).then(|| format!("{major}.{minor}"))
    })
}

/// The interpreter this process runs.
#[derive(Debug)]
pub struct Interpreter {
    /// `sys.version`'s number, e.g. `3.11.7`.
    pub version: String,
    /// `sys.executable`.
    pub executable: String,
    /// `sys.prefix`.
    pub prefix: String,
    /// The shared library the interpreter was loaded from.
    pub library: String,
    /// The virtualenv, if one is used.
    pub venv: Option<Venv>,
}

static STARTED: OnceLock<Interpreter> = OnceLock::new();
static SUPPORT: OnceLock<Py<PyModule>> = OnceLock::new();

/// Starts the interpreter in this process, once, for `app`: its virtualenv, `pythonpath`
/// (and the working directory, as gunicorn puts it) at the front of `sys.path`, and `[app.env]`
/// in `os.environ`. Later calls return what the first one started.
///
/// The GIL is released before this returns; the calling thread keeps its thread state.
pub fn ensure_started(app: &App) -> Result<&'static Interpreter, String> {
    if let Some(started) = STARTED.get() {
        return Ok(started);
    }
    let venv = venv_for(app)?;
    let executable = match &venv {
        Some(venv) => venv.python.clone(),
        None => PathBuf::from(BUILT_WITH.executable),
    };
    initialize(&executable)?;
    let mut paths: Vec<String> = app
        .pythonpath
        .iter()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
        .map(|p| p.display().to_string())
        .collect();
    if let Ok(cwd) = std::env::current_dir() {
        paths.push(cwd.display().to_string());
    }
    let started = Python::attach(|py| -> Result<Interpreter, String> {
        let support = PyModule::from_code(
            py,
            &CString::new(include_str!("support.py")).expect("no NUL in support.py"),
            c"tine/support.py",
            c"_tine",
        )
        .map_err(|err| format!("could not load tine's Python helpers: {err}"))?;
        support
            .getattr("set_up")
            .and_then(|f| f.call1((paths, app.env.clone())))
            .map_err(|err| format_err(py, &err))?;
        let (version, executable, prefix): (String, String, String) = support
            .getattr("describe")
            .and_then(|f| f.call0())
            .and_then(|v| v.extract())
            .map_err(|err| format_err(py, &err))?;
        match crate::logging::duplicate_sink() {
            Ok(fd) => {
                use std::os::fd::IntoRawFd;
                if let Err(err) = support
                    .getattr("enable_faulthandler")
                    .and_then(|f| f.call1((fd.into_raw_fd(),)))
                {
                    log::warn!(
                        "could not enable Python's faulthandler: {}",
                        format_err(py, &err)
                    );
                }
            }
            Err(err) => log::warn!("could not enable Python's faulthandler: {err}"),
        }
        let _ = SUPPORT.set(support.unbind());
        Ok(Interpreter {
            version,
            executable,
            prefix,
            library: loaded_library(),
            venv,
        })
    })?;
    let mut line = format!(
        "python {} at {} (sys.prefix {}",
        started.version, started.library, started.prefix
    );
    if let Some(venv) = &started.venv {
        line.push_str(&format!("; {}", venv.describe()));
    }
    line.push(')');
    log::info!("{line}");
    if !BUILT_WITH.libdir.is_empty() && !started.library.starts_with(BUILT_WITH.libdir) {
        log::warn!(
            "libpython was loaded from {}, not from {} where tine was built against it: \
             packages installed for that Python may be missing",
            started.library,
            BUILT_WITH.libdir
        );
    }
    Ok(STARTED.get_or_init(|| started))
}

/// `Py_InitializeFromConfig` as `executable`, without Python's own signal handlers (tine's
/// are in charge), then releases the GIL.
fn initialize(executable: &Path) -> Result<(), String> {
    let exe = CString::new(executable.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", executable.display()))?;
    // SAFETY: the config is initialised by PyConfig_InitPythonConfig before any field is read,
    // strings are set through the API that copies them, and it is cleared exactly once. This
    // runs once per process (guarded by STARTED and the caller), before any other Python call.
    unsafe {
        if ffi::Py_IsInitialized() != 0 {
            return Ok(());
        }
        let mut config = MaybeUninit::<ffi::PyConfig>::uninit();
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let mut config = config.assume_init();
        config.install_signal_handlers = 0;
        let field = std::ptr::addr_of_mut!(config.executable);
        let status = ffi::PyConfig_SetBytesString(&mut config, field, exe.as_ptr());
        if ffi::PyStatus_Exception(status) != 0 {
            ffi::PyConfig_Clear(&mut config);
            return Err(format!(
                "could not configure Python: {}",
                status_message(&status)
            ));
        }
        let status = ffi::Py_InitializeFromConfig(&config);
        ffi::PyConfig_Clear(&mut config);
        if ffi::PyStatus_Exception(status) != 0 {
            return Err(format!(
                "could not start Python as {}: {}",
                executable.display(),
                status_message(&status)
            ));
        }
        ffi::PyEval_SaveThread();
    }
    // PyO3 checks, once, that the interpreter is up.
    Python::initialize();
    Ok(())
}

fn status_message(status: &ffi::PyStatus) -> String {
    if status.err_msg.is_null() {
        return "unknown error".to_owned();
    }
    // SAFETY: a PyStatus's err_msg is a static NUL-terminated string when not null.
    unsafe { CStr::from_ptr(status.err_msg) }
        .to_string_lossy()
        .into_owned()
}

/// The path of the shared object `Py_Initialize` was loaded from.
fn loaded_library() -> String {
    let mut info = MaybeUninit::<libc::Dl_info>::uninit();
    let symbol = ffi::Py_Initialize as *const libc::c_void;
    // SAFETY: dladdr only reads the address and fills `info`; dli_fname, when set, points to
    // a NUL-terminated string owned by the dynamic loader for the life of the process.
    unsafe {
        if libc::dladdr(symbol, info.as_mut_ptr()) == 0 {
            return "an unknown library".to_owned();
        }
        let info = info.assume_init();
        if info.dli_fname.is_null() {
            return "an unknown library".to_owned();
        }
        let name = CStr::from_ptr(info.dli_fname)
            .to_string_lossy()
            .into_owned();
        std::fs::canonicalize(&name)
            .map(|p| p.display().to_string())
            .unwrap_or(name)
    }
}

/// tine's helper module; the interpreter must have been started.
pub(super) fn support(py: Python<'_>) -> &Bound<'_, PyModule> {
    SUPPORT
        .get()
        .expect("the interpreter is started before its helpers are used")
        .bind(py)
}

/// A Python exception as Python prints it, traceback included.
pub(super) fn format_err(py: Python<'_>, err: &PyErr) -> String {
    let Some(support) = SUPPORT.get() else {
        return err.to_string();
    };
    support
        .bind(py)
        .getattr("format_exception")
        .and_then(|f| f.call1((err.value(py), err.traceback(py))))
        .and_then(|text| text.extract::<String>())
        .unwrap_or_else(|_| err.to_string())
}

/// Imports the application `app` names (`module:callable`, or a factory call), logging how
/// long it took.
pub(super) fn load_app(py: Python<'_>, app: &App) -> Result<Py<PyAny>, String> {
    let text = app
        .app
        .as_deref()
        .ok_or("no application: set [app] app = \"module:callable\"")?;
    let spec = crate::config::parse_app_spec(text)?;
    let started = Instant::now();
    log::info!("importing {text}");
    let loaded = support(py)
        .getattr("load")
        .and_then(|f| f.call1((spec.module.as_str(), spec.attr.as_str(), spec.call)))
        .map_err(|err| {
            let mut text = format!("could not load {text}:\n{}", format_err(py, &err));
            if err.is_instance_of::<pyo3::exceptions::PyModuleNotFoundError>(py) {
                let path = py
                    .import("sys")
                    .and_then(|sys| sys.getattr("path"))
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                text.push_str(&format!(
                    "\n(sys.path is {path}; set [app] pythonpath, --pythonpath or --chdir)"
                ));
            }
            text
        })?;
    log::info!(
        "imported {text} in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(loaded.unbind())
}

/// The application the master imported before forking (`[app] preload`).
static PRELOADED: OnceLock<Py<PyAny>> = OnceLock::new();

/// The preloaded application, in a worker forked from a master that preloaded it.
pub(super) fn preloaded() -> Option<&'static Py<PyAny>> {
    PRELOADED.get()
}

/// The standard modules a worker imports as it builds its handler, which a preloading master
/// imports before it forks.
const WORKER_IMPORTS: &[&str] = &["contextvars", "inspect"];

/// Imports the application in the master, before any worker is forked: its modules are then
/// shared copy-on-write (after `gc.freeze()`, so the collector does not touch their pages).
/// Refused when the import started threads: a fork copies only the forking thread, so locks
/// those threads hold would stay locked for ever in every worker.
pub fn preload(app: &App) -> Result<(), String> {
    ensure_started(app)?;
    Python::attach(|py| {
        let loaded = load_app(py, app)?;
        let others: Vec<String> = support(py)
            .getattr("other_threads")
            .and_then(|f| f.call0())
            .and_then(|v| v.extract())
            .map_err(|err| format_err(py, &err))?;
        if !others.is_empty() {
            return Err(format!(
                "preload: importing {} started threads in the master ({}); forking with them \
                 would deadlock the workers. Start them after fork (in the application's first \
                 request or a post-fork hook), or set preload = false",
                app.app.as_deref().unwrap_or("the application"),
                others.join(", ")
            ));
        }
        // What every worker imports as it starts (`looks_asgi` in support.py: inspect; the WSGI
        // handler: contextvars), imported here instead: once, shared, rather than each worker
        // writing its own copy of the modules and into the master's interned strings.
        for module in WORKER_IMPORTS {
            py.import(*module).map_err(|err| format_err(py, &err))?;
        }
        py.import("gc")
            .and_then(|gc| gc.call_method0("freeze"))
            .map_err(|err| format_err(py, &err))?;
        let _ = PRELOADED.set(loaded);
        Ok(())
    })
}

thread_local! {
    /// The GIL state taken by `before_fork`, released after it on each side of the fork.
    static FORKING: Cell<Option<ffi::PyGILState_STATE>> = const { Cell::new(None) };
}

/// Before fork, in a process that started Python: takes the GIL and CPython's fork locks.
pub fn before_fork() {
    if STARTED.get().is_none() {
        return;
    }
    // SAFETY: the interpreter is initialised; this thread does not hold the GIL (tine never
    // forks from inside Python), so Ensure takes it; BeforeFork is called with the GIL held.
    let state = unsafe {
        let state = ffi::PyGILState_Ensure();
        ffi::PyOS_BeforeFork();
        state
    };
    FORKING.with(|f| f.set(Some(state)));
}

/// After fork, in the parent.
pub fn after_fork_parent() {
    if let Some(state) = FORKING.with(Cell::take) {
        // SAFETY: paired with before_fork on this thread, which holds the GIL.
        unsafe {
            ffi::PyOS_AfterFork_Parent();
            ffi::PyGILState_Release(state);
        }
    }
}

/// After fork, in the child: CPython resets its locks and threads, then the GIL is released.
/// The interpreter started in the master (preload) copied the master's environment into
/// `os.environ` (and `posix.environ`): the service manager's variables, which the worker has
/// already dropped from its own environment, are dropped there too.
pub fn after_fork_child() {
    if let Some(state) = FORKING.with(Cell::take) {
        // SAFETY: paired with before_fork, whose GIL the child's only thread holds.
        unsafe {
            ffi::PyOS_AfterFork_Child();
            ffi::PyGILState_Release(state);
        }
        Python::attach(|py| {
            let forgotten = support(py)
                .getattr("forget_environ")
                .and_then(|f| f.call1((crate::sys::SERVICE_MANAGER_VARS,)));
            if let Err(err) = forgotten {
                log::warn!(
                    "could not remove the service manager's variables from os.environ: {}",
                    format_err(py, &err)
                );
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyvenv_cfg_versions() {
        let venv = "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.7\n";
        assert_eq!(pyvenv_version(venv).as_deref(), Some("3.11"));
        let uv = "home = /x/bin\nimplementation = CPython\nversion_info = 3.12.1.final.0\n";
        assert_eq!(pyvenv_version(uv).as_deref(), Some("3.12"));
        assert_eq!(pyvenv_version("home = /x\n"), None);
        assert_eq!(pyvenv_version("version = three\n"), None);
    }

    #[test]
    fn the_virtualenv_named_first_wins_then_the_one_tine_is_installed_in() {
        let installed = Path::new("/srv/app/.venv");
        let is_venv = |dir: &Path| dir == installed;
        let exe = Path::new("/srv/app/.venv/bin/tine");
        let elsewhere = Path::new("/usr/local/bin/tine");
        let explicit = Path::new("/srv/other");
        let active = OsStr::new("/home/me/.venv");
        let chosen = |explicit, environment, exe| {
            choose_venv(explicit, environment, exe, is_venv)
                .map(|(dir, source)| (dir.display().to_string(), source))
        };
        let named = |dir: &str, source| Some((dir.to_owned(), source));
        // [app] virtualenv over everything.
        assert_eq!(
            chosen(Some(explicit), Some(active), Some(exe)),
            named("/srv/other", VenvSource::Config)
        );
        // VIRTUAL_ENV over the virtualenv tine is installed in; an empty one says nothing.
        assert_eq!(
            chosen(None, Some(active), Some(exe)),
            named("/home/me/.venv", VenvSource::Environment)
        );
        assert_eq!(
            chosen(None, Some(OsStr::new("")), Some(exe)),
            named("/srv/app/.venv", VenvSource::Installed)
        );
        assert_eq!(
            chosen(None, None, Some(exe)),
            named("/srv/app/.venv", VenvSource::Installed)
        );
        // A tine outside a virtualenv (cargo's, /usr/local/bin's), or of unknown path: none.
        assert_eq!(chosen(None, None, Some(elsewhere)), None);
        assert_eq!(chosen(None, None, Some(Path::new("/tine"))), None);
        assert_eq!(chosen(None, None, None), None);
    }

    #[test]
    fn a_virtualenv_for_another_python_is_refused_with_both_versions() {
        let dir = std::env::temp_dir().join(format!("tine-venv-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("pyvenv.cfg"), "version = 2.7.18\n").unwrap();
        let app = App {
            virtualenv: Some(dir.clone()),
            ..App::default()
        };
        let err = venv_for(&app).unwrap_err();
        assert!(err.contains("made for Python 2.7"), "{err}");
        assert!(
            err.contains(&format!("embeds Python {}", BUILT_WITH.version)),
            "{err}"
        );
        std::fs::write(
            dir.join("pyvenv.cfg"),
            format!("version = {}.0\n", BUILT_WITH.version),
        )
        .unwrap();
        assert!(venv_for(&app).unwrap_err().contains("has no bin/python"));
        std::fs::write(dir.join("bin/python"), "").unwrap();
        let venv = venv_for(&app).unwrap().unwrap();
        assert_eq!(venv.python, dir.join("bin/python"));
        std::fs::remove_dir_all(&dir).unwrap();
        let missing = App {
            virtualenv: Some(PathBuf::from("/nonexistent/venv")),
            ..App::default()
        };
        assert!(
            venv_for(&missing)
                .unwrap_err()
                .contains("is not a virtualenv")
        );
    }
}
