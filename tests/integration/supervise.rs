//! Supervision: the worker count, replacing a dead worker, signals and stopping.

use std::io::Write;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::{Server, TempDir, WAIT, printed_workers, process_alive, read_response, run_tine};

#[test]
fn auto_starts_the_computed_number_of_workers_before_ready() {
    let dir = TempDir::new();
    let (_, printed, _) = run_tine(&dir, &["--print-config"]);
    let expected = printed_workers(&printed);
    let server = Server::start("[server]\nworkers = \"auto\"\n");
    // READY=1 comes only once every worker is up, so they are all there now.
    let workers = server.workers();
    assert_eq!(workers.len(), expected, "log:\n{}", server.log());
    if printed.contains("auto: 2 cpus in affinity; no cgroup cpu limit") {
        assert_eq!(expected, 5, "2 CPUs give 5 workers");
    }
    assert!(
        server
            .log()
            .contains(&format!("workers: {expected} (auto: "))
    );
    assert_eq!(server.get("/").text(), "Hello, World!");
}

#[test]
fn a_killed_worker_is_replaced() {
    let server = Server::start("[server]\nworkers = 2\n");
    let before = server.wait_workers("two workers", |w| w.len() == 2);
    let victim = before[0];
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    let after = server.wait_workers("a replacement", |w| w.len() == 2 && !w.contains(&victim));
    assert!(
        after.contains(&before[1]),
        "the other worker was left alone"
    );
    let log = server.log();
    assert!(
        log.contains(&format!("(pid {victim}) was killed by SIGKILL")),
        "log:\n{log}"
    );
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let mut server = Server::start("[server]\nworkers = 1\ngraceful_timeout = \"10s\"\n");
    let workers = server.workers();
    let mut slow = server.connect();
    slow.write_all(b"GET /sleep?ms=700 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // An idle keep-alive connection, which the stop closes at once.
    let mut idle = server.connect();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle).unwrap().status, 200);
    // Let the slow request reach the pool before the stop begins.
    std::thread::sleep(Duration::from_millis(200));
    server.signal(Signal::SIGTERM);
    let response = read_response(&mut slow).unwrap();
    assert_eq!(response.status, 200, "the in-flight request completes");
    assert_eq!(response.header("Connection"), Some("close"));
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0), "log:\n{}", server.log());
    for pid in workers {
        assert!(!process_alive(pid), "worker {pid} outlived the master");
    }
    let mut rest = Vec::new();
    idle.set_read_timeout(Some(WAIT)).unwrap();
    let _ = std::io::Read::read_to_end(&mut idle, &mut rest);
    assert!(rest.is_empty());
    assert!(server.log().contains("graceful stop"));
}

#[test]
fn sigint_stops_at_once_with_exit_0() {
    let mut server = Server::start("[server]\nworkers = 2\n");
    let workers = server.workers();
    server.signal(Signal::SIGINT);
    assert_eq!(server.wait_exit().code(), Some(0));
    for pid in workers {
        assert!(!process_alive(pid));
    }
}

#[test]
fn ttin_and_ttou_change_the_worker_count() {
    let server = Server::start("[server]\nworkers = 1\n");
    server.signal(Signal::SIGTTIN);
    server.wait_workers("two after TTIN", |w| w.len() == 2);
    server.signal(Signal::SIGTTOU);
    server.wait_workers("one after TTOU", |w| w.len() == 1);
    server.signal(Signal::SIGTTOU);
    std::thread::sleep(Duration::from_millis(300));
    server.wait_workers("never below one", |w| w.len() == 1);
    assert!(server.log().contains("minimum of 1 worker"));
}

#[test]
fn unsupported_signals_do_not_stop_the_server() {
    let server = Server::start("[server]\nworkers = 1\n");
    server.signal(Signal::SIGHUP);
    server.signal(Signal::SIGUSR2);
    assert_eq!(server.get("/").status, 200);
    assert!(process_alive(server.pid()));
}
