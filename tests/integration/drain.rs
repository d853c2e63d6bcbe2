//! Draining for rolling deploys (`[server] drain_delay`): on SIGTERM `/healthz` answers 503 at
//! once and `tine status` says `draining`, while the workers keep accepting and serving; the
//! graceful stop follows the delay. A second SIGTERM, or SIGINT, ends the delay at once; a
//! SIGHUP during it is ignored.

use nix::sys::signal::Signal;

use crate::util::{Response, TestServer, connect, read_response};

/// A one-worker server with `drain_delay`, a metrics listener and a control socket.
fn draining_server(delay: &str) -> TestServer {
    TestServer::builder(format!("workers = 1\ndrain_delay = \"{delay}\""))
        .tables("[metrics]\nbind = \"127.0.0.1:0\"")
        .control_socket()
        .start()
}

fn healthz(server: &TestServer) -> Response {
    let mut stream = connect(server.metrics_addr());
    std::io::Write::write_all(
        &mut stream,
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    read_response(&mut stream).unwrap_or_else(|e| panic!("{e}; log:\n{}", server.log()))
}

/// Sends SIGTERM and waits until the master has begun to drain.
fn begin_drain(server: &mut TestServer) {
    assert_eq!(healthz(server).status, 200);
    server.signal(Signal::SIGTERM);
    server.wait_for_notify("STOPPING=1");
}

#[test]
fn after_sigterm_healthz_is_503_while_new_connections_are_served_then_it_stops() {
    let mut server = draining_server("2s");
    begin_drain(&mut server);
    let health = healthz(&server);
    assert_eq!(health.status, 503);
    assert_eq!(health.text(), "draining\n");
    assert!(
        server.status_json().contains("\"phase\":\"draining\""),
        "{}",
        server.status_json()
    );
    // A connection made now is accepted and served as before.
    assert_eq!(server.get("/").status, 200, "{}", server.log());
    server.wait_log("draining for 2s before stopping (drain_delay): /healthz answers 503");
    // Then the graceful stop, and the exit, within the helper's generous bound.
    let status = server.wait_exit();
    assert!(status.success(), "{status}; log:\n{}", server.log());
    server.wait_log("drain_delay over: graceful stop");
}

#[test]
fn a_second_sigterm_ends_the_drain_and_a_sighup_during_it_is_ignored() {
    let mut server = draining_server("10m");
    begin_drain(&mut server);
    server.signal(Signal::SIGHUP);
    server.wait_log("SIGHUP ignored: draining before the stop");
    assert_eq!(healthz(&server).status, 503);
    server.signal(Signal::SIGTERM);
    server.wait_log("SIGTERM again: the drain ends now");
    // Within the helper's bound (seconds), well before the ten minutes.
    let status = server.wait_exit();
    assert!(status.success(), "{status}; log:\n{}", server.log());
}

#[test]
fn sigint_during_the_drain_stops_fast() {
    let mut server = draining_server("10m");
    begin_drain(&mut server);
    server.signal(Signal::SIGINT);
    server.wait_exit();
    server.wait_log("SIGINT/SIGQUIT: fast stop");
}

/// SIGTERM while a reload's workers are still starting: the reload is rolled back (its
/// workers would otherwise be restarted and waited for through the drain) and the previous
/// generation serves the drain.
#[cfg(feature = "python")]
#[test]
fn a_sigterm_during_a_reload_rolls_it_back_then_drains() {
    let dir = crate::util::TempDir::new();
    dir.write(
        "slow_import.py",
        "import time\ntime.sleep(3)\n\n\ndef app(environ, start_response):\n    \
         start_response('200 OK', [])\n    return [b'never']\n",
    );
    let server_keys = "workers = 1\ndrain_delay = \"10m\"";
    let metrics = "[metrics]\nbind = \"127.0.0.1:0\"\n";
    let mut server = TestServer::builder(server_keys)
        .tables(metrics)
        .control_socket()
        .start();
    server.rewrite_config(crate::util::Config::new(server_keys).tables(&format!(
        "{metrics}[app]\nhandler = \"python\"\napp = \"slow_import:app\"\npythonpath = [{}]\n",
        crate::util::toml_string(&dir.path().to_string_lossy())
    )));
    server.signal(Signal::SIGHUP);
    server.wait_log("reload: starting 1 workers with the new config");
    server.signal(Signal::SIGTERM);
    server.wait_log("reload failed: SIGTERM came before it was complete");
    server.wait_for_notify("STOPPING=1");
    assert_eq!(healthz(&server).status, 503);
    // The previous generation (the demo handler) serves the drain.
    let answer = server.get("/");
    assert_eq!(answer.status, 200, "{}", server.log());
    assert_eq!(answer.text(), "Hello, World!");
    // The reload's worker was told to stop: it exits once its import is over, without
    // serving, while the drain goes on.
    let log = server.wait_log("importing slow_import:app");
    let pid = log
        .lines()
        .find(|line| line.contains("importing slow_import:app"))
        .and_then(|line| line.split('[').nth(1)?.split(']').next())
        .unwrap()
        .to_owned();
    server.wait_log(&format!("(pid {pid}) exited"));
    assert_eq!(healthz(&server).status, 503, "still draining");
    server.signal(Signal::SIGTERM);
    let status = server.wait_exit();
    assert!(status.success(), "{status}; log:\n{}", server.log());
}
