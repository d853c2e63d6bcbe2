//! A binary upgrade whose new master never becomes ready is abandoned after `boot_timeout`
//! and a margin: the old master keeps serving, and a later upgrade works.

use nix::sys::signal::Signal;

use crate::util::{Server, process_alive, python_apps, toml_string, wait_until};

const SERVER: &str = "[server]\nbind = [\"127.0.0.1:0\"]\nworkers = 1\nthreads = 2\n";

/// Waits, within `WAIT`, for a log line containing `needle`; returns it.
fn wait_for_line(server: &Server, needle: &str) -> String {
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
    // The old master serves the demo handler; it gives new masters 1 s plus the margin.
    let mut server = Server::start_with_env(
        &format!("{SERVER}boot_timeout = \"1s\"\n"),
        &[("TINE_TEST_IMPORT_SECONDS", "600")],
    );
    // The new master reads a config whose application takes ten minutes to import.
    server.rewrite_config(&format!(
        "{SERVER}boot_timeout = \"10m\"\n[app]\nhandler = \"wsgi\"\n\
         app = \"slow_import_app:application\"\npythonpath = [{}]\n",
        toml_string(&python_apps().to_string_lossy())
    ));
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
    // A later upgrade, with a config that can start, takes over.
    server.rewrite_config(SERVER);
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
