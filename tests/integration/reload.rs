//! Zero-downtime operations: SIGHUP reloads, SIGUSR2 binary upgrades, systemd notifications
//! and socket activation, each under a steady load that must see no failure.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::process::Command;

use nix::sys::signal::Signal;

use crate::util::{
    Config, Guarded, Load, TempDir, TestServer, WAIT, children_of, process_alive, read_response,
    tine_bin,
};

const BASE: &str = "workers = 2\nthreads = 4";

#[test]
fn twenty_reloads_in_a_row_fail_no_request() {
    let mut server = TestServer::start(BASE);
    let load = Load::start(server.addr);
    load.wait_served(60);
    for _ in 0..20 {
        server.signal(Signal::SIGHUP);
        server.wait_for_notify("RELOADING=1");
        server.wait_for_notify("READY=1");
    }
    load.wait_served(60);
    let report = load.stop();
    report.assert_clean(&server.log());
    assert!(report.ok > 100, "the load ran: {report:?}");
    // The last generation's workers drain after READY=1: their exit is what to wait for.
    server.wait_workers("the two workers of the last generation", |w| w.len() == 2);
    assert_eq!(server.log().matches("reload complete").count(), 20);
}

#[test]
fn a_reload_applies_new_workers_and_binds() {
    let mut server = TestServer::start(BASE);
    let old_workers = server.workers();
    // A Unix socket in the server's directory: a new address no other process can take.
    let extra = server.dir().join("extra.sock");
    let load = Load::start(server.addr);
    load.wait_served(20);
    server.rewrite_config(
        Config::new("workers = 3\nthreads = 2").bind(&format!("unix:{}", extra.display())),
    );
    server.signal(Signal::SIGHUP);
    server.wait_for_notify("READY=1");
    let report = load.stop();
    report.assert_clean(&server.log());
    let workers = server.wait_workers("three new workers", |w| {
        w.len() == 3 && w.iter().all(|pid| !old_workers.contains(pid))
    });
    assert_eq!(workers.len(), 3);
    // The new address serves, and so does the old one.
    let mut stream = crate::util::connect_unix(&extra);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn a_reload_with_a_broken_file_keeps_the_old_workers_serving() {
    let mut server = TestServer::start(BASE);
    let workers = server.workers();
    let load = Load::start(server.addr);
    load.wait_served(20);
    server.rewrite_config("workers = \"many\"\nthreds = 4");
    server.signal(Signal::SIGHUP);
    let message = server.wait_for_notify("READY=1");
    assert!(message.contains("STATUS=reload failed"), "{message}");
    load.wait_served(20);
    let report = load.stop();
    report.assert_clean(&server.log());
    assert_eq!(server.workers(), workers, "nothing changed");
    let log = server.log();
    assert!(log.contains("reload failed: "), "{log}");
    assert!(
        log.contains("server.workers"),
        "every error is logged: {log}"
    );
    assert!(log.contains("threds"), "every error is logged: {log}");
}

#[test]
fn an_upgrade_hands_the_sockets_to_a_new_master_without_a_failure() {
    let mut server = TestServer::start(BASE);
    let old_master = server.pid();
    let load = Load::start(server.addr);
    load.wait_served(20);
    server.signal(Signal::SIGUSR2);
    let message = server.wait_for_notify("READY=1");
    let _ = message;
    let mainpid = server.wait_for_notify_prefix("MAINPID=");
    let new_master: u32 = mainpid.trim().parse().expect("MAINPID is a pid");
    assert_ne!(new_master, old_master);
    assert_eq!(
        server.wait_exit().code(),
        Some(0),
        "the old master exits cleanly"
    );
    load.wait_served(20);
    let report = load.stop();
    report.assert_clean(&server.log());
    assert!(process_alive(new_master));
    let workers = children_of(new_master);
    assert_eq!(workers.len(), 2, "the new master runs the workers");
    let pid: u32 = server.get("/pid").text().trim().parse().unwrap();
    assert!(workers.contains(&pid));
    // The new master is stopped by the harness's process-group kill.
}

#[test]
fn an_upgrade_whose_new_master_fails_keeps_the_old_one_serving() {
    let server = TestServer::start(BASE);
    let workers = server.workers();
    // The new master reads the same file: make it invalid so it exits at once.
    server.rewrite_config("workers = 0");
    server.signal(Signal::SIGUSR2);
    server.wait_log("upgrade failed");
    assert!(process_alive(server.pid()));
    assert_eq!(server.workers(), workers);
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn socket_activation_adopts_the_listener_systemd_passes() {
    let dir = TempDir::new();
    let config = dir.write("tine.toml", "[server]\nworkers = 1\n");
    // What systemd does: a bound listening socket as fd 3, LISTEN_FDS=1, LISTEN_PID = the
    // process's own pid (python keeps its pid across exec).
    let script = format!(
        "import os, socket, sys\n\
         s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(16)\n\
         open('{port_file}', 'w').write(str(s.getsockname()[1]))\n\
         os.dup2(s.fileno(), 3); os.set_inheritable(3, True)\n\
         os.environ['LISTEN_FDS'] = '1'\n\
         os.environ['LISTEN_PID'] = str(os.getpid())\n\
         os.environ['LISTEN_FDNAMES'] = 'tine.socket'\n\
         os.execv('{bin}', ['{bin}', '-c', '{config}', '--bind', 'unix:{sock}'])\n",
        port_file = dir.path().join("port").display(),
        bin = tine_bin(),
        config = config.display(),
        sock = dir.path().join("also.sock").display(),
    );
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(WAIT)).unwrap();
    let log = std::fs::File::create(dir.path().join("tine.log")).unwrap();
    let _tine = Guarded::spawn(
        Command::new("python3")
            .arg("-c")
            .arg(&script)
            .env("NOTIFY_SOCKET", &notify_path)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    );
    let log = || std::fs::read_to_string(dir.path().join("tine.log")).unwrap_or_default();
    // READY=1 (within the socket's read timeout, `WAIT`): tine serves on the passed socket.
    let mut buf = [0u8; 4096];
    loop {
        let n = notify
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no READY=1: {e}; log:\n{}", log()));
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "READY=1")
        {
            break;
        }
    }
    let port: u16 = std::fs::read_to_string(dir.path().join("port"))
        .unwrap()
        .parse()
        .expect("port");
    let mut stream = crate::util::connect(("127.0.0.1", port));
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let response = read_response(&mut stream).unwrap_or_else(|e| panic!("{e}; log:\n{}", log()));
    assert_eq!(response.status, 200);
    assert!(log().contains("(from systemd)"), "{}", log());
}

#[test]
fn the_watchdog_is_fed_when_systemd_asks_for_it() {
    let mut server = TestServer::builder(BASE)
        .env("WATCHDOG_USEC", "400000")
        .start();
    // Half the interval: several within a generous wait.
    for _ in 0..3 {
        server.wait_for_notify("WATCHDOG=1");
    }
}

#[test]
fn status_and_stopping_reach_systemd() {
    let mut server = TestServer::start(BASE);
    server.get("/");
    let status = server.wait_for_notify_prefix("STATUS=");
    assert!(status.contains("workers"), "{status}");
    server.signal(Signal::SIGTERM);
    server.wait_for_notify("STOPPING=1");
    assert_eq!(server.wait_exit().code(), Some(0));
}

#[test]
fn a_reload_whose_new_workers_cannot_start_rolls_back() {
    let mut server = TestServer::start(BASE);
    let workers = server.workers();
    let load = Load::start(server.addr);
    // Valid TOML, but the application cannot be built: the root does not exist.
    load.wait_served(20);
    server.rewrite_config(
        Config::new(BASE).tables("[app]\nhandler = \"static\"\nroot = \"/nonexistent/tine-root\""),
    );
    server.signal(Signal::SIGHUP);
    let message = server.wait_for_notify("READY=1");
    assert!(message.contains("reload failed"), "{message}");
    load.wait_served(20);
    let report = load.stop();
    report.assert_clean(&server.log());
    assert_eq!(server.workers(), workers, "the old workers kept serving");
    assert!(server.log().contains("going back to the previous config"));
    assert_eq!(server.get("/").text(), "Hello, World!");
}
