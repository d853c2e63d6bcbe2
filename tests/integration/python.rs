//! The embedded interpreter and the process model around it: which Python runs, the bundled
//! application, preload with its fork protocol, reloads that import new code, boot_timeout.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::Signal;

use crate::util::{Config, TempDir, TestServer, WAIT, run_bounded, run_tine, wait_until};

/// The repository's bundled WSGI application.
fn bundled_app_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python")
}

fn hello_config() -> Config {
    wsgi_config(
        "workers = 2\nthreads = 2",
        "hello:app",
        &bundled_app_dir(),
        "",
    )
}

/// A config serving the WSGI application `app` from `dir`, with `server` as the `[server]` keys
/// and `extra` as more `[app]` keys.
fn wsgi_config(server: &str, app: &str, dir: &Path, extra: &str) -> Config {
    Config::new(server).tables(&format!(
        "[app]\nhandler = \"wsgi\"\napp = {app:?}\npythonpath = [{:?}]\n{extra}",
        dir.display().to_string()
    ))
}

/// What the interpreter tine was built against says of itself.
fn built_python(code: &str) -> String {
    let out = run_bounded(
        Command::new(env!("TINE_PYTHON_EXECUTABLE")).args(["-c", code]),
        None,
        WAIT,
    );
    assert!(out.status.success(), "{}", out.stderr);
    out.stdout.trim().to_owned()
}

#[test]
fn the_interpreter_loaded_is_the_one_built_against() {
    let server = TestServer::start(hello_config());
    let answer = server.get("/python");
    assert_eq!(answer.status, 200, "{}", server.log());
    let expected = built_python("import sys; print(sys.version.split()[0], sys.prefix)");
    let (version, rest) = expected.split_once(' ').unwrap();
    let body = answer.text();
    assert!(
        body.starts_with(version),
        "served by {body}, built with {expected}"
    );
    assert!(
        body.trim_end().ends_with(rest),
        "served by {body}, built with {expected}"
    );
    // The start-up line names the library, which lives in the build interpreter's LIBDIR.
    let libdir = built_python("import sysconfig; print(sysconfig.get_config_var('LIBDIR'))");
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("python {version} at ")))
        .unwrap_or_else(|| panic!("no interpreter line in\n{log}"));
    let canonical = std::fs::canonicalize(&libdir).unwrap();
    assert!(
        line.contains(&canonical.display().to_string()) || line.contains(&libdir),
        "{line} does not name {libdir}"
    );
}

#[test]
fn the_bundled_config_serves_the_bundled_application() {
    // The README's first command runs config/tine.toml from the repository's root.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("config/tine.toml")).unwrap();
    assert!(
        text.contains("\nhandler = \"python\""),
        "config/tine.toml serves the Python application"
    );
    let dir = TempDir::new();
    let (status, out, err) = run_tine(
        &dir,
        &[
            "-c",
            root.join("config/tine.toml").to_str().unwrap(),
            "--check-config",
        ],
    );
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains("python application hello:app on python"),
        "{out}"
    );
    // And the application it names answers, as it would from the repository's root.
    let server = TestServer::start(hello_config());
    let hello = server.get("/");
    assert_eq!(
        (hello.status, hello.text().as_str()),
        (200, "Hello, World!\n")
    );
    let echo = server.request(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(echo.text(), "hello");
    assert_eq!(server.get("/nope").status, 404);
}

#[test]
fn print_config_names_the_python_and_check_config_imports_nothing() {
    let dir = TempDir::new();
    // An application whose import would fail loudly: --check-config must not import it.
    dir.write("loud.py", "raise SystemExit('imported!')\n");
    let config = dir.write(
        "t.toml",
        &format!(
            "[app]\nhandler = \"wsgi\"\napp = \"loud:app\"\npythonpath = [{:?}]\n",
            dir.path().display().to_string()
        ),
    );
    let config = config.to_str().unwrap();
    let (status, out, err) = run_tine(&dir, &["-c", config, "--check-config"]);
    assert!(status.success(), "{out}{err}");
    assert!(!out.contains("imported!") && !err.contains("imported!"));
    let (status, out, _) = run_tine(&dir, &["-c", config, "--print-config"]);
    assert!(status.success());
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with(&format!("# python {}", env!("TINE_PYTHON_VERSION")))
            && first.contains(env!("TINE_PYTHON_EXECUTABLE")),
        "{first}"
    );
}

#[test]
fn a_virtualenv_for_another_python_is_a_clear_error() {
    let dir = TempDir::new();
    std::fs::create_dir_all(dir.path().join("venv/bin")).unwrap();
    dir.write("venv/pyvenv.cfg", "home = /usr/bin\nversion = 2.7.18\n");
    let config = dir.write(
        "t.toml",
        "[app]\nhandler = \"wsgi\"\napp = \"x:app\"\nvirtualenv = \"venv\"\n",
    );
    let (status, _, err) = run_tine(&dir, &["-c", config.to_str().unwrap()]);
    assert_eq!(status.code(), Some(64), "{err}");
    assert!(err.contains("was made for Python 2.7"), "{err}");
    assert!(
        err.contains(&format!("embeds Python {}", env!("TINE_PYTHON_VERSION"))),
        "{err}"
    );
}

#[test]
fn an_import_error_at_start_exits_with_the_traceback() {
    let dir = TempDir::new();
    dir.write(
        "broken.py",
        "import os\nraise ValueError('the settings are wrong')\n",
    );
    let config = dir.write(
        "t.toml",
        &format!(
            "[server]\nbind = [\"127.0.0.1:0\"]\nworkers = 2\n[app]\nhandler = \"wsgi\"\n\
             app = \"broken:app\"\npythonpath = [{:?}]\n",
            dir.path().display().to_string()
        ),
    );
    for preload in [false, true] {
        let mut args = vec!["-c", config.to_str().unwrap()];
        if preload {
            args.push("--preload");
        }
        // run_tine's bound (`WAIT`) catches a crash loop.
        let (status, _, err) = run_tine(&dir, &args);
        assert_eq!(status.code(), Some(70), "preload {preload}: {err}");
        assert!(err.contains("Traceback (most recent call last)"), "{err}");
        assert!(err.contains("broken.py\", line 2"), "{err}");
        assert!(err.contains("ValueError: the settings are wrong"), "{err}");
    }
}

#[test]
fn preload_imports_once_in_the_master_and_workers_share_it() {
    let dir = TempDir::new();
    dir.write(
        "counted.py",
        "import os\nIMPORTED_IN = os.getpid()\n\
         def app(environ, start_response):\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [f'{IMPORTED_IN} {os.getpid()} {os.getppid()}'.encode()]\n",
    );
    let server = TestServer::start(wsgi_config(
        "workers = 2",
        "counted:app",
        dir.path(),
        "preload = true",
    ));
    let body = server.get("/").text();
    let pids: Vec<u32> = body.split(' ').map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids[0], server.pid(), "imported in the master: {body}");
    assert_eq!(pids[2], server.pid(), "served by a worker of it: {body}");
    assert_ne!(pids[1], server.pid());
    assert_eq!(server.log().matches("importing counted:app").count(), 1);
}

#[test]
fn preload_refuses_an_application_that_starts_threads() {
    let dir = TempDir::new();
    dir.write(
        "threaded.py",
        "import threading, time\n\
         threading.Thread(target=time.sleep, args=(60,), name='metrics-pusher', daemon=True).start()\n\
         def app(environ, start_response):\n\
         \x20   start_response('200 OK', [])\n\
         \x20   return [b'ok']\n",
    );
    let config = dir.write(
        "t.toml",
        &format!(
            "[server]\nbind = [\"127.0.0.1:0\"]\n[app]\nhandler = \"wsgi\"\n\
             app = \"threaded:app\"\npythonpath = [{:?}]\npreload = true\n",
            dir.path().display().to_string()
        ),
    );
    let (status, _, err) = run_tine(&dir, &["-c", config.to_str().unwrap()]);
    assert_eq!(status.code(), Some(70), "{err}");
    assert!(err.contains("started threads in the master"), "{err}");
    assert!(err.contains("metrics-pusher"), "{err}");
}

/// A module whose response is `version`, written where `dir` is on the path.
fn write_versioned(dir: &TempDir, version: &str) {
    dir.write(
        "versioned.py",
        &format!(
            "def app(environ, start_response):\n\
             \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
             \x20   return [b'{version}']\n"
        ),
    );
    // The new source must not look older than the cached bytecode of the old one.
    let _ = std::fs::remove_dir_all(dir.path().join("__pycache__"));
}

/// Sends HUP to the master now serving: a preloaded application's reload replaces the master,
/// so its pid is read from the pid file.
fn hup(pidfile: &Path) {
    let pid: i32 = std::fs::read_to_string(pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP).unwrap();
}

fn hup_and_wait_for(server: &TestServer, pidfile: &Path, body: &str) {
    hup(pidfile);
    // The reload is over when the old generation (or the old master) is gone: until then an
    // old worker may still answer a new connection.
    let done = ["reload complete", "has taken over"];
    wait_until(
        "the reload's completion in the log",
        || server.log(),
        |log| done.iter().any(|d| log.contains(d)),
    );
    let mut in_a_row = 0;
    wait_until(
        &format!("20 answers {body:?} in a row"),
        || {
            if server.get("/").text() == body {
                in_a_row += 1;
            } else {
                in_a_row = 0;
            }
            in_a_row
        },
        |&n| n >= 20,
    );
}

#[test]
fn hup_loads_new_application_code_lazy_and_preloaded_and_a_broken_one_changes_nothing() {
    for preload in [false, true] {
        let dir = TempDir::new();
        write_versioned(&dir, "v1");
        let pidfile = dir.path().join("tine.pid");
        let config = wsgi_config(
            &format!(
                "workers = 2\ngraceful_timeout = \"5s\"\npidfile = {:?}",
                pidfile.display().to_string()
            ),
            "versioned:app",
            dir.path(),
            &format!("preload = {preload}"),
        );
        let server = TestServer::start(config);
        assert_eq!(server.get("/").text(), "v1");
        write_versioned(&dir, "v2");
        hup_and_wait_for(&server, &pidfile, "v2");
        // A version that does not import: logged with its traceback, the old one serves on.
        dir.write("versioned.py", "def app(:\n");
        hup(&pidfile);
        server.wait_log("SyntaxError");
        // The failed reload is logged; the old application answers on, request after request.
        for _ in 0..50 {
            assert_eq!(server.get("/").text(), "v2", "preload {preload}");
        }
    }
}

#[test]
fn a_slow_import_is_not_a_hung_worker_until_boot_timeout() {
    let dir = TempDir::new();
    dir.write(
        "slow.py",
        "import time\n\
         def importing_slowly():\n\
         \x20   time.sleep(float(__import__('os').environ['IMPORT_SECONDS']))\n\
         importing_slowly()\n\
         def app(environ, start_response):\n\
         \x20   start_response('200 OK', [])\n\
         \x20   return [b'booted']\n",
    );
    // The import takes 3 s, three times `timeout`: well within boot_timeout, it boots.
    let config = wsgi_config("workers = 1\ntimeout = \"1s\"", "slow:app", dir.path(), "");
    let server = TestServer::builder(config)
        .env("IMPORT_SECONDS", "3")
        .start();
    assert_eq!(server.get("/").text(), "booted");
    assert!(!server.log().contains("killing it"), "{}", server.log());
    drop(server);
    // Past boot_timeout, the worker is killed, and the log shows where its import was stuck.
    let config = wsgi_config(
        "workers = 1\ntimeout = \"1s\"\nboot_timeout = \"1s\"",
        "slow:app",
        dir.path(),
        "",
    );
    let child = TestServer::builder(config)
        .env("IMPORT_SECONDS", "30")
        .unready()
        .start();
    let log = wait_until(
        "the boot_timeout kill, with where the import was stuck, in the log",
        || child.log(),
        |log| {
            log.contains("did not finish starting within boot_timeout")
                && log.contains("importing_slowly")
        },
    );
    assert!(log.contains("slow.py\", line 3"), "{log}");
}

#[test]
fn a_graceful_stop_runs_the_applications_atexit_handlers_and_a_fast_stop_does_not() {
    for (signal, runs) in [(Signal::SIGTERM, true), (Signal::SIGINT, false)] {
        let dir = TempDir::new();
        let marker = dir.path().join("atexit-ran");
        dir.write(
            "exiting.py",
            &format!(
                "import atexit, os\n\
                 atexit.register(lambda: open({:?} + '.' + str(os.getpid()), 'w').close())\n\
                 def app(environ, start_response):\n\
                 \x20   start_response('200 OK', [])\n\
                 \x20   return [b'ok']\n",
                marker.display().to_string()
            ),
        );
        let config = wsgi_config("workers = 1", "exiting:app", dir.path(), "");
        let mut server = TestServer::start(config);
        assert_eq!(server.get("/").text(), "ok");
        let worker = server.workers()[0];
        server.signal(signal);
        assert!(server.wait_exit().success());
        let ran = dir.path().join(format!("atexit-ran.{worker}")).exists();
        assert_eq!(ran, runs, "{signal:?}:\n{}", server.log());
    }
}

#[test]
fn an_active_virtualenv_is_used_as_its_own_python_would() {
    let venv = crate::util::test_venv();
    let dir = TempDir::new();
    dir.write(
        "where.py",
        "import sys, flask\n\
         def app(environ, start_response):\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [f'{sys.prefix}\\n{flask.__file__}\\n'.encode()]\n",
    );
    let config = wsgi_config("workers = 1", "where:app", dir.path(), "");
    // As `source .venv/bin/activate` leaves it: only VIRTUAL_ENV says which.
    let server = TestServer::builder(config)
        .env("VIRTUAL_ENV", &venv)
        .start();
    let answer = server.get("/");
    assert_eq!(answer.status, 200, "{}", server.log());
    let text = answer.text();
    let mut lines = text.lines();
    let canonical = std::fs::canonicalize(&venv).unwrap();
    let prefix = std::fs::canonicalize(lines.next().unwrap()).unwrap();
    assert_eq!(prefix, canonical, "sys.prefix is the virtualenv");
    let flask = std::fs::canonicalize(lines.next().unwrap()).unwrap();
    assert!(
        flask.starts_with(&canonical),
        "flask from {}",
        flask.display()
    );
    assert!(
        server
            .log()
            .contains(&format!("virtualenv {}", venv.display())),
        "{}",
        server.log()
    );
}

#[test]
fn the_status_line_carries_the_applications_own_reason_phrase() {
    let dir = TempDir::new();
    dir.write(
        "phrases.py",
        "def app(environ, start_response):\n\
         \x20   status = {'/fine': '200 Fine', '/std': '404 Not Found', '/odd': '299 Odd But Valid',\n\
         \x20             '/empty': '204 '}[environ['PATH_INFO']]\n\
         \x20   start_response(status, [('Content-Type', 'text/plain')])\n\
         \x20   return [b'']\n",
    );
    let server = TestServer::start(wsgi_config("workers = 1", "phrases:app", dir.path(), ""));
    for (path, line) in [
        ("/fine", "HTTP/1.1 200 Fine\r\n"),
        ("/std", "HTTP/1.1 404 Not Found\r\n"),
        ("/odd", "HTTP/1.1 299 Odd But Valid\r\n"),
        ("/empty", "HTTP/1.1 204 \r\n"),
    ] {
        let mut stream = server.connect();
        std::io::Write::write_all(
            &mut stream,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut stream, &mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with(line), "{path}: {text}");
    }
}

#[test]
fn a_header_spelled_with_underscores_cannot_pose_as_a_proxys() {
    let server = TestServer::start(hello_config());
    // From 127.0.0.1, which forwarded_allow_ips trusts by default: the dashed spelling is
    // believed, the underscored one never reaches the environ.
    let raw = |header: &str| {
        server.request(&format!(
            "GET /environ HTTP/1.1\r\nHost: x\r\n{header}: 203.0.113.9\r\nConnection: close\r\n\r\n"
        ))
    };
    let forged = raw("X_Forwarded_For").text();
    assert!(!forged.contains("HTTP_X_FORWARDED_FOR"), "{forged}");
    assert!(
        forged.contains("\"REMOTE_ADDR\": \"127.0.0.1\""),
        "{forged}"
    );
    let real = raw("X-Forwarded-For").text();
    assert!(
        real.contains("\"HTTP_X_FORWARDED_FOR\": \"203.0.113.9\""),
        "{real}"
    );
    assert!(real.contains("\"REMOTE_ADDR\": \"203.0.113.9\""), "{real}");
}

#[test]
fn the_directory_tine_runs_in_is_on_the_python_path_as_under_gunicorn() {
    // `tine myproject.wsgi:application` from the project's directory, without --pythonpath.
    let dir = TempDir::new();
    dir.write(
        "here.py",
        "def app(environ, start_response):\n\
         \x20   start_response('200 OK', [])\n\
         \x20   return [b'found in the working directory']\n",
    );
    let config = Config::new(&format!(
        "workers = 1\nchdir = {:?}",
        dir.path().display().to_string()
    ))
    .tables("[app]\nhandler = \"wsgi\"\napp = \"here:app\"");
    let server = TestServer::start(config);
    assert_eq!(server.get("/").text(), "found in the working directory");
}
