//! The command line: --check-config, --print-config, usage errors and exit codes.

use crate::util::{TempDir, run_tine};

const BUNDLED_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/tine.toml");

#[cfg(feature = "python")]
#[test]
fn check_config_accepts_the_bundled_config() {
    let dir = TempDir::new();
    let (status, stdout, stderr) = run_tine(&dir, &["--check-config", "-c", BUNDLED_CONFIG]);
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(stdout.contains(": ok"), "stdout: {stdout}");
}

#[test]
fn check_config_lists_every_error_with_its_line_and_exits_64() {
    let dir = TempDir::new();
    let path = dir.write(
        "tine.toml",
        "[server]\nthreads = \"four\"\nworker = 3\n\n[limits]\nbody = \"lots\"\n",
    );
    let path = path.to_str().unwrap();
    let (status, stdout, stderr) = run_tine(&dir, &["--check-config", "-c", path]);
    assert_eq!(status.code(), Some(64), "stdout: {stdout} stderr: {stderr}");
    assert!(
        stderr.contains(&format!(
            "{path}:2:11: server.threads: expected a positive integer, found \"four\""
        )),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{path}:3:1: unknown key server.worker (did you mean \"workers\"?)"
        )),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{path}:6:8: limits.body")),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("3 problems"), "stderr: {stderr}");
}

#[test]
fn a_missing_config_file_is_named() {
    let dir = TempDir::new();
    let (status, _, stderr) = run_tine(&dir, &["--check-config", "-c", "nope.toml"]);
    assert_eq!(status.code(), Some(64));
    assert!(stderr.contains("nope.toml"), "stderr: {stderr}");
}

#[test]
fn print_config_resolves_the_worker_count_and_round_trips() {
    let dir = TempDir::new();
    let (status, stdout, stderr) = run_tine(&dir, &["--print-config"]);
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    let workers = crate::util::printed_workers(&stdout);
    assert!(workers >= 3, "auto gives at least 2 x 1 + 1: {stdout}");
    assert!(stdout.contains("# auto:"), "{stdout}");
    // What it prints is itself a valid config.
    let printed = dir.write("printed.toml", &stdout);
    let (status, _, stderr) = run_tine(&dir, &["--check-config", "-c", printed.to_str().unwrap()]);
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
}

#[test]
fn command_line_overrides_the_file() {
    let dir = TempDir::new();
    let path = dir.write("tine.toml", "[server]\nworkers = 2\nthreads = 2\n");
    let (status, stdout, _) = run_tine(
        &dir,
        &[
            "--print-config",
            "-c",
            path.to_str().unwrap(),
            "--workers",
            "7",
            "-t",
            "3",
            "--bind",
            "[::1]:9999",
        ],
    );
    assert_eq!(status.code(), Some(0));
    assert!(stdout.contains("workers = 7"), "{stdout}");
    assert!(stdout.contains("threads = 3"), "{stdout}");
    assert!(stdout.contains("[::1]:9999"), "{stdout}");
}

#[test]
fn usage_errors_exit_64_and_help_documents_exit_codes() {
    let dir = TempDir::new();
    let (status, _, stderr) = run_tine(&dir, &["--workers", "four"]);
    assert_eq!(status.code(), Some(64));
    assert!(stderr.contains("--workers"), "{stderr}");
    let (status, stdout, _) = run_tine(&dir, &["--help"]);
    assert_eq!(status.code(), Some(0));
    for code in ["64", "70", "71"] {
        assert!(stdout.contains(code), "help lacks exit code {code}");
    }
    let (status, stdout, _) = run_tine(&dir, &["--version"]);
    assert_eq!(status.code(), Some(0));
    assert!(stdout.starts_with("tine "), "{stdout}");
}

#[test]
fn a_failed_bind_exits_71_and_says_why() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = TempDir::new();
    let (status, _, stderr) = run_tine(&dir, &["--bind", &addr, "--workers", "1"]);
    assert_eq!(status.code(), Some(71), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("could not bind {addr}: address already in use")),
        "stderr: {stderr}"
    );
}

/// A tine built without the `python` feature says so, rather than failing later.
#[cfg(not(feature = "python"))]
#[test]
fn without_python_a_wsgi_config_is_refused_with_the_reason() {
    let dir = TempDir::new();
    for mode in ["--check-config", "--print-config"] {
        let (status, stdout, stderr) = run_tine(&dir, &[mode, "-c", BUNDLED_CONFIG]);
        let all = format!("{stdout}{stderr}");
        assert!(
            all.contains("built without Python support"),
            "{mode}: {all}"
        );
        if mode == "--check-config" {
            assert_eq!(status.code(), Some(64), "{all}");
        }
    }
    let (status, _, stderr) = run_tine(&dir, &["-c", BUNDLED_CONFIG]);
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("built without Python support"), "{stderr}");
}

#[test]
fn the_app_argument_and_python_flags_reach_the_printed_config() {
    let dir = TempDir::new();
    let (status, stdout, stderr) = run_tine(
        &dir,
        &[
            "--print-config",
            "pkg.wsgi:application",
            "--pythonpath",
            "a,b",
            "-e",
            "X=1",
            "--preload",
        ],
    );
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    for line in [
        "handler = \"python\"",
        "interface = \"auto\"",
        "app = \"pkg.wsgi:application\"",
        "pythonpath = [\"a\", \"b\"]",
        "preload = true",
        "env = { X = \"1\" }",
    ] {
        assert!(stdout.lines().any(|l| l == line), "no {line}: {stdout}");
    }
}

#[test]
fn check_config_refuses_wsgi_without_an_app_and_an_app_argument_supplies_it() {
    let dir = TempDir::new();
    let path = dir.write("tine.toml", "[app]\nhandler = \"wsgi\"\n");
    let path = path.to_str().unwrap();
    let (status, stdout, stderr) = run_tine(&dir, &["--check-config", "-c", path]);
    assert_eq!(status.code(), Some(64), "stdout: {stdout} stderr: {stderr}");
    assert!(
        stderr.contains(&format!(
            "{path}:2:11: app.handler: \"wsgi\" needs app = \"module:callable\" (the WSGI \
             application to serve)"
        )),
        "stderr: {stderr}"
    );
    if cfg!(feature = "python") {
        let (status, stdout, stderr) = run_tine(
            &dir,
            &["--check-config", "-c", path, "myproject.wsgi:application"],
        );
        assert_eq!(status.code(), Some(0), "stderr: {stderr}");
        assert!(
            stdout.contains("wsgi application myproject.wsgi:application on python"),
            "stdout: {stdout}"
        );
    }
}

#[test]
fn a_bad_app_argument_is_a_usage_error() {
    let dir = TempDir::new();
    let (status, _, stderr) = run_tine(&dir, &["--check-config", "1a:b"]);
    assert_eq!(status.code(), Some(64));
    assert!(
        stderr.contains("invalid application \"1a:b\""),
        "stderr: {stderr}"
    );
}

#[test]
fn a_uvicorn_command_line_reaches_the_printed_config() {
    let dir = TempDir::new();
    let (status, stdout, stderr) = run_tine(
        &dir,
        &[
            "--print-config",
            "main:create_app",
            "--factory",
            "--host",
            "::1",
            "--port",
            "9001",
            "--interface",
            "asgi3",
            "--lifespan",
            "on",
            "--loop",
            "asyncio",
            "--limit-concurrency",
            "64",
            "--root-path",
            "/api",
            "--app-dir",
            "src",
            "--timeout-keep-alive",
            "5",
        ],
    );
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    for line in [
        "bind = [\"[::1]:9001\"]",
        "keepalive = \"5s\"",
        "handler = \"python\"",
        "app = \"main:create_app()\"",
        "interface = \"asgi\"",
        "lifespan = \"on\"",
        "loop = \"asyncio\"",
        "max_concurrency = 64",
        "root_path = \"/api\"",
        "pythonpath = [\"src\"]",
    ] {
        assert!(stdout.lines().any(|l| l == line), "no {line}: {stdout}");
    }
    // -k with uvicorn's worker class, as `gunicorn -k uvicorn.workers.UvicornWorker` runs.
    let (status, stdout, stderr) = run_tine(
        &dir,
        &[
            "--print-config",
            "-k",
            "uvicorn.workers.UvicornWorker",
            "main:app",
        ],
    );
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stdout.lines().any(|l| l == "interface = \"asgi\""),
        "{stdout}"
    );
}

#[test]
fn refused_uvicorn_flags_and_conflicts_exit_64_with_the_reason() {
    let dir = TempDir::new();
    for (args, want) in [
        (
            &["--reload", "main:app"][..],
            "--reload: tine does not watch files; reload with `kill -HUP <master pid>`",
        ),
        (
            &["-b", "127.0.0.1:1", "--port", "2"][..],
            "-b and --port both say where to listen",
        ),
        (&["--factory", "main:create_app()"][..], "is a call already"),
    ] {
        let (status, _, stderr) = run_tine(&dir, args);
        assert_eq!(status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    let path = dir.write(
        "tine.toml",
        "[app]\nhandler = \"wsgi\"\napp = \"main:app\"\ninterface = \"asgi\"\n",
    );
    let path = path.to_str().unwrap();
    let (status, _, stderr) = run_tine(&dir, &["--check-config", "-c", path]);
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{path}:4:13: app.interface: interface = \"asgi\" contradicts handler = \"wsgi\""
        )),
        "{stderr}"
    );
}
