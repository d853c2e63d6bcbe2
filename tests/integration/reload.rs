//! Zero-downtime operations: SIGHUP reloads, SIGUSR2 binary upgrades, systemd notifications
//! and socket activation, each under a steady load that must see no failure.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::util::{
    Load, Server, TempDir, WAIT, children_of, process_alive, read_response, tine_bin,
};

const BASE: &str = "[server]\nbind = [\"127.0.0.1:0\"]\nworkers = 2\nthreads = 4\n";

#[test]
fn twenty_reloads_in_a_row_fail_no_request() {
    let mut server = Server::start(BASE);
    let load = Load::start(server.addr);
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..20 {
        server.signal(Signal::SIGHUP);
        server.wait_for_notify("RELOADING=1");
        server.wait_for_notify("READY=1");
    }
    std::thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    report.assert_clean(&server.log());
    assert!(report.ok > 100, "the load ran: {report:?}");
    assert_eq!(server.workers().len(), 2);
    assert_eq!(server.log().matches("reload complete").count(), 20);
}

#[test]
fn a_reload_applies_new_workers_and_binds() {
    let mut server = Server::start(BASE);
    let old_workers = server.workers();
    let extra = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let extra_addr = extra.local_addr().unwrap();
    drop(extra);
    let load = Load::start(server.addr);
    server.rewrite_config(&format!(
        "[server]\nbind = [\"127.0.0.1:0\", \"{extra_addr}\"]\nworkers = 3\nthreads = 2\n"
    ));
    server.signal(Signal::SIGHUP);
    server.wait_for_notify("READY=1");
    let report = load.stop();
    report.assert_clean(&server.log());
    let workers = server.wait_workers("three new workers", |w| {
        w.len() == 3 && w.iter().all(|pid| !old_workers.contains(pid))
    });
    assert_eq!(workers.len(), 3);
    // The new address serves, and so does the old one.
    let mut stream = std::net::TcpStream::connect(extra_addr).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut stream).unwrap().status, 200);
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn a_reload_with_a_broken_file_keeps_the_old_workers_serving() {
    let mut server = Server::start(BASE);
    let workers = server.workers();
    let load = Load::start(server.addr);
    server.rewrite_config("[server]\nbind = [\"127.0.0.1:0\"]\nworkers = \"many\"\nthreds = 4\n");
    server.signal(Signal::SIGHUP);
    let message = server.wait_for_notify("READY=1");
    assert!(message.contains("STATUS=reload failed"), "{message}");
    std::thread::sleep(Duration::from_millis(200));
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
    let mut server = Server::start(BASE);
    let old_master = server.pid();
    let load = Load::start(server.addr);
    std::thread::sleep(Duration::from_millis(200));
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
    std::thread::sleep(Duration::from_millis(300));
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
    let server = Server::start(BASE);
    let workers = server.workers();
    // The new master reads the same file: make it invalid so it exits at once.
    server.rewrite_config("[server]\nbind = [\"127.0.0.1:0\"]\nworkers = 0\n");
    server.signal(Signal::SIGUSR2);
    let deadline = std::time::Instant::now() + WAIT;
    while !server.log().contains("upgrade failed") {
        assert!(
            std::time::Instant::now() < deadline,
            "log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(process_alive(server.pid()));
    assert_eq!(server.workers(), workers);
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn socket_activation_adopts_the_listener_systemd_passes() {
    let dir = TempDir::new();
    let config = dir.write(
        "tine.toml",
        "[server]\nworkers = 1\nbind = []\n"
            .replace("bind = []\n", "")
            .as_str(),
    );
    // What systemd does: a bound listening socket as fd 3, LISTEN_FDS=1, LISTEN_PID = the
    // process's own pid (python keeps its pid across exec).
    let script = format!(
        "import os, socket, sys\n\
         s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(16)\n\
         print(s.getsockname()[1], flush=True)\n\
         os.dup2(s.fileno(), 3); os.set_inheritable(3, True)\n\
         os.environ['LISTEN_FDS'] = '1'\n\
         os.environ['LISTEN_PID'] = str(os.getpid())\n\
         os.environ['LISTEN_FDNAMES'] = 'tine.socket'\n\
         os.execv('{bin}', ['{bin}', '-c', '{config}', '--bind', 'unix:{sock}'])\n",
        bin = tine_bin(),
        config = config.display(),
        sock = dir.path().join("also.sock").display(),
    );
    let mut child = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("python3");
    let mut port = String::new();
    {
        use std::io::BufRead;
        let stdout = child.stdout.as_mut().unwrap();
        std::io::BufReader::new(stdout)
            .read_line(&mut port)
            .unwrap();
    }
    let port: u16 = port.trim().parse().expect("port");
    let guard = GroupGuard(child.id());
    let deadline = std::time::Instant::now() + WAIT;
    let response = loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            if let Ok(response) = read_response(&mut stream) {
                break response;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "tine never answered on the passed socket"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(response.status, 200);
    drop(guard);
    let _ = child.wait();
}

/// Kills a process group when dropped.
struct GroupGuard(u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ =
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.0 as i32), Signal::SIGKILL);
    }
}

#[test]
fn the_watchdog_is_fed_when_systemd_asks_for_it() {
    let mut server = Server::start_with_env(BASE, &[("WATCHDOG_USEC", "400000")]);
    // Half the interval: several within a generous wait.
    for _ in 0..3 {
        server.wait_for_notify("WATCHDOG=1");
    }
}

#[test]
fn status_and_stopping_reach_systemd() {
    let mut server = Server::start(BASE);
    server.get("/");
    let status = server.wait_for_notify_prefix("STATUS=");
    assert!(status.contains("workers"), "{status}");
    server.signal(Signal::SIGTERM);
    server.wait_for_notify("STOPPING=1");
    assert_eq!(server.wait_exit().code(), Some(0));
}

#[test]
fn a_reload_whose_new_workers_cannot_start_rolls_back() {
    let mut server = Server::start(BASE);
    let workers = server.workers();
    let load = Load::start(server.addr);
    // Valid TOML, but the application cannot be built: the root does not exist.
    server.rewrite_config(
        "[server]\nbind = [\"127.0.0.1:0\"]\nworkers = 2\nthreads = 4\n\
         [app]\nhandler = \"static\"\nroot = \"/nonexistent/tine-root\"\n",
    );
    server.signal(Signal::SIGHUP);
    let message = server.wait_for_notify("READY=1");
    assert!(message.contains("reload failed"), "{message}");
    std::thread::sleep(Duration::from_millis(300));
    let report = load.stop();
    report.assert_clean(&server.log());
    assert_eq!(server.workers(), workers, "the old workers kept serving");
    assert!(server.log().contains("going back to the previous config"));
    assert_eq!(server.get("/").text(), "Hello, World!");
}
