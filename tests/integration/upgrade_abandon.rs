//! A binary upgrade whose new master never becomes ready is abandoned after `boot_timeout`
//! and a margin: the old master keeps serving, its pid file names it, and a later upgrade
//! works.

use nix::sys::signal::Signal;

use std::io::{Read, Write};

use crate::util::{
    Config, TempDir, TestServer, connect_unix, process_alive, python_apps, toml_string, wait_until,
};

const SERVER: &str = "workers = 1\nthreads = 2";

/// Waits, within `WAIT`, for a log line containing `needle`; returns it.
fn wait_for_line(server: &TestServer, needle: &str) -> String {
    let line = |log: String| log.lines().find(|l| l.contains(needle)).map(str::to_owned);
    wait_until(needle, || line(server.log()), Option::is_some).expect("found")
}

/// The pid in a log line's `(pid N)`.
fn pid_in(line: &str) -> u32 {
    let rest = line.split("(pid ").nth(1).expect("a pid");
    rest[..rest.find(')').expect("closed")]
        .parse()
        .expect("a number")
}

#[test]
fn an_upgrade_that_never_becomes_ready_is_abandoned() {
    // The old master serves the demo handler, on TCP and on a unix socket, with a control
    // socket; it gives new masters 1 s plus the margin.
    let dir = TempDir::new();
    let socket = dir.path().join("tine.sock");
    let unix = format!("unix:{}", socket.display());
    let mut server = TestServer::builder(format!("{SERVER}\nboot_timeout = \"1s\""))
        .bind(&unix)
        .control_socket()
        .env("TINE_TEST_IMPORT_SECONDS", "600")
        .start();
    // The new master reads a config whose application takes ten minutes to import.
    server.rewrite_config(
        Config::new(&format!("{SERVER}\nboot_timeout = \"10m\""))
            .bind(&unix)
            .tables(&format!(
                "[app]\nhandler = \"wsgi\"\napp = \"slow_import_app:application\"\n\
                 pythonpath = [{}]",
                toml_string(&python_apps().to_string_lossy())
            )),
    );
    server.signal(Signal::SIGUSR2);
    let started = wait_for_line(&server, "as the new master (pid");
    let abandoned = wait_for_line(&server, "upgrade abandoned");
    let child = pid_in(&started);
    assert_eq!(pid_in(&abandoned), child, "{abandoned}");
    assert!(process_alive(server.pid()), "the old master stays");
    assert_eq!(server.get("/").text(), "Hello, World!");
    // The abandoned master is told to stop, and does.
    wait_until(
        "the abandoned master gone",
        || process_alive(child),
        |alive| !alive,
    );
    // What the new master took over or could have removed is the old master's again: the
    // control socket answers for it, and the unix socket's file still leads to it.
    let status = server.status_json();
    assert!(
        status.starts_with(&format!("{{\"master_pid\":{},", server.pid())),
        "{status}"
    );
    let mut stream = connect_unix(&socket);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    // A later upgrade, with a config that can start, takes over.
    server.rewrite_config(Config::new(SERVER).bind(&unix));
    server.signal(Signal::SIGUSR2);
    let mainpid = server.wait_for_notify_prefix("MAINPID=");
    let new_master: u32 = mainpid.trim().parse().expect("MAINPID is a pid");
    assert_ne!(new_master, child);
    assert_eq!(
        server.wait_exit().code(),
        Some(0),
        "the old master hands over"
    );
}

#[test]
fn a_preloading_master_stuck_in_its_import_is_abandoned_and_the_pid_file_comes_back() {
    // With preload the new master imports before it has signal handlers or a pid file to
    // clean up: told to stop, it dies where it stands, leaving its own pid in the file.
    let pidfile = "pidfile = \"tine.pid\"";
    let server = TestServer::builder(format!("{SERVER}\nboot_timeout = \"1s\"\n{pidfile}"))
        .env("TINE_TEST_IMPORT_SECONDS", "600")
        .start();
    let path = server.dir().join("tine.pid");
    let names =
        |pid: u32| std::fs::read_to_string(&path).is_ok_and(|t| t.trim() == pid.to_string());
    assert!(names(server.pid()));
    server.rewrite_config(
        Config::new(&format!("{SERVER}\nboot_timeout = \"10m\"\n{pidfile}")).tables(&format!(
            "[app]\nhandler = \"wsgi\"\napp = \"slow_import_app:application\"\npreload = true\n\
             pythonpath = [{}]",
            toml_string(&python_apps().to_string_lossy())
        )),
    );
    server.signal(Signal::SIGUSR2);
    let child = pid_in(&wait_for_line(&server, "as the new master (pid"));
    // The new master writes its pid before it imports the application.
    wait_until(
        "the new master's pid in the file",
        || names(child),
        |yes| *yes,
    );
    wait_for_line(&server, "upgrade abandoned");
    wait_until(
        "the abandoned master gone",
        || process_alive(child),
        |alive| !alive,
    );
    // Reclaimed once the abandoned master has exited, not before: on its way out it removes
    // the file if the file names it.
    wait_for_line(&server, "names this master again");
    assert!(
        names(server.pid()),
        "the pid file names the master that serves"
    );
    assert_eq!(server.get("/").text(), "Hello, World!");
}
