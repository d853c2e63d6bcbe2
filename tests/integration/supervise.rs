//! Supervision: the worker count, replacing a dead worker, signals and stopping.

use std::io::Write;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::{TempDir, TestServer, printed_workers, process_alive, read_response, run_tine};

#[test]
fn auto_starts_the_computed_number_of_workers_before_ready() {
    let dir = TempDir::new();
    let (_, printed, _) = run_tine(&dir, &["--print-config"]);
    let expected = printed_workers(&printed);
    let server = TestServer::start("workers = \"auto\"\n");
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
    let server = TestServer::start("workers = 2\n");
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
    let mut server = TestServer::builder("workers = 1\ngraceful_timeout = \"10s\"")
        .control_socket()
        .start();
    let workers = server.workers();
    let mut slow = server.connect();
    slow.write_all(b"GET /sleep?ms=3000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // An idle keep-alive connection, which the stop closes at once.
    let mut idle = server.connect();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle).unwrap().status, 200);
    // The slow request is in the application before the stop begins (the idle connection's
    // request is over, so the one busy thread is the slow request's).
    server.wait_busy(1);
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
    let _ = std::io::Read::read_to_end(&mut idle, &mut rest);
    assert!(rest.is_empty());
    assert!(server.log().contains("graceful stop"));
}

#[test]
fn sigint_stops_at_once_with_exit_0() {
    let mut server = TestServer::start("workers = 2\n");
    let workers = server.workers();
    server.signal(Signal::SIGINT);
    assert_eq!(server.wait_exit().code(), Some(0));
    for pid in workers {
        assert!(!process_alive(pid));
    }
}

#[test]
fn ttin_and_ttou_change_the_worker_count() {
    let server = TestServer::start("workers = 1\n");
    server.signal(Signal::SIGTTIN);
    server.wait_workers("two after TTIN", |w| w.len() == 2);
    server.signal(Signal::SIGTTOU);
    server.wait_workers("one after TTOU", |w| w.len() == 1);
    server.signal(Signal::SIGTTOU);
    // The master's refusal is the handshake: once it is logged, the TTOU has been handled.
    server.wait_log("minimum of 1 worker");
    server.wait_workers("never below one", |w| w.len() == 1);
}

#[test]
fn a_stopped_worker_misses_its_heartbeat_and_is_replaced() {
    let server = TestServer::start("workers = 1\ntimeout = \"1s\"\n");
    let before = server.workers();
    kill(Pid::from_raw(before[0] as i32), Signal::SIGSTOP).unwrap();
    let after = server.wait_workers("a replacement for the stopped worker", |w| {
        w.len() == 1 && w[0] != before[0]
    });
    assert!(!process_alive(before[0]));
    let log = server.log();
    assert!(
        log.contains(&format!(
            "worker {} (slot 1) missed its heartbeat for",
            before[0]
        )),
        "log:\n{log}"
    );
    assert_eq!(server.get("/pid").text().trim(), after[0].to_string());
}

#[test]
fn sigint_does_not_wait_for_requests_in_flight() {
    let mut server = TestServer::builder("workers = 1").control_socket().start();
    let mut slow = server.connect();
    slow.write_all(b"GET /sleep?ms=60000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    server.wait_busy(1);
    server.signal(Signal::SIGINT);
    // Within `wait_exit`'s bound (`WAIT`, a hang detector), far less than the minute the
    // request would take.
    assert_eq!(server.wait_exit().code(), Some(0));
}

#[test]
fn request_timeout_answers_504_and_replaces_the_worker_while_others_finish() {
    let server = TestServer::builder(
        "workers = 1\nthreads = 4\nrequest_timeout = \"2s\"\ngraceful_timeout = \"10s\"",
    )
    .control_socket()
    .start();
    let first = server.workers();
    let mut stuck = server.connect();
    stuck
        .write_all(b"GET /sleep?ms=10000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    server.wait_busy(1);
    // A well-behaved request on the same worker, still running when the stuck one is answered
    // 504 (at 2 s to 2.5 s), and itself well within request_timeout. This sleep is the
    // behaviour: it places the neighbour in that window, a second after the stuck request is
    // known to be in the application.
    std::thread::sleep(Duration::from_millis(1000));
    let mut neighbour = server.connect();
    neighbour
        .write_all(b"GET /sleep?ms=1200 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let timed_out = read_response(&mut stuck).unwrap();
    assert_eq!(timed_out.status, 504);
    assert_eq!(timed_out.header("Connection"), Some("close"));
    let finished = read_response(&mut neighbour).unwrap();
    assert_eq!(finished.status, 200, "the neighbour finishes normally");
    server.wait_workers("the recycled worker replaced", |w| {
        w.len() == 1 && !w.contains(&first[0])
    });
    let log = server.log();
    assert!(log.contains("GET /sleep?ms=10000"), "log:\n{log}");
    assert!(log.contains("past request_timeout"), "log:\n{log}");
    assert_eq!(server.get("/").status, 200);
}

#[test]
fn max_requests_recycles_workers_without_failing_a_request() {
    let server = TestServer::start("workers = 2\nmax_requests = 50\nmax_requests_jitter = 10\n");
    let first = server.workers();
    let addr = server.addr;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut seen = std::collections::BTreeSet::new();
                let mut stream = crate::util::connect(addr);
                for _ in 0..100 {
                    stream
                        .write_all(b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
                        .unwrap();
                    let response = read_response(&mut stream).unwrap();
                    assert_eq!(response.status, 200);
                    seen.insert(response.text());
                    if response.header("Connection") == Some("close") {
                        // A recycling worker closes after its last answer: reconnect.
                        stream = crate::util::connect(addr);
                    }
                }
                seen
            })
        })
        .collect();
    let mut pids = std::collections::BTreeSet::new();
    for client in clients {
        pids.extend(client.join().expect("every request succeeded"));
    }
    // 400 requests over 2 workers of at most 60 each: several generations served.
    assert!(pids.len() >= 4, "pids seen: {pids:?}");
    let now = server.wait_workers("two workers", |w| w.len() == 2);
    assert!(
        now.iter().all(|pid| !first.contains(pid)),
        "{first:?} vs {now:?}"
    );
    assert!(
        server
            .log()
            .contains("(max_requests); starting its replacement")
    );
}

#[test]
fn the_pidfile_names_the_master_refuses_a_live_holder_and_goes_away() {
    let dir = TempDir::new();
    let pidfile = dir.path().join("tine.pid");
    let config =
        crate::util::Config::new(&format!("workers = 1\npidfile = \"{}\"", pidfile.display()));
    let mut server = TestServer::start(config.clone());
    let written = std::fs::read_to_string(&pidfile).unwrap();
    assert_eq!(written.trim(), server.pid().to_string());
    // A second server on the same pid file refuses to start.
    let second = dir.write("second.toml", &config.render());
    let (status, _, stderr) = run_tine(&dir, &["-c", second.to_str().unwrap()]);
    assert_eq!(status.code(), Some(71), "{stderr}");
    assert!(stderr.contains("which is running"), "{stderr}");
    server.signal(Signal::SIGTERM);
    assert_eq!(server.wait_exit().code(), Some(0));
    assert!(!pidfile.exists(), "removed on exit");
}

#[test]
fn workers_drop_privileges_when_started_as_root() {
    if !nix::unistd::geteuid().is_root() {
        crate::util::skip("workers_drop_privileges_when_started_as_root: not running as root");
        return;
    }
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        crate::util::skip("workers_drop_privileges_when_started_as_root: no user nobody");
        return;
    };
    let server = TestServer::start("workers = 1\nuser = \"nobody\"\n");
    let worker = server.workers()[0];
    let uid_of = |pid: u32| -> String {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .unwrap()
            .to_owned()
    };
    let expected = nobody.uid.as_raw().to_string();
    assert!(
        uid_of(worker)
            .split_whitespace()
            .skip(1)
            .all(|id| id == expected),
        "worker {}",
        uid_of(worker)
    );
    assert!(
        uid_of(server.pid()).split_whitespace().nth(1) == Some("0"),
        "the master stays root"
    );
    assert_eq!(server.get("/").status, 200);
    assert!(!server.log().contains("running as root without"));
}

#[test]
fn an_unknown_user_is_a_config_error() {
    let dir = TempDir::new();
    let path = dir.write("tine.toml", "[server]\nuser = \"no-such-user-tine\"\n");
    let (status, _, stderr) = run_tine(
        &dir,
        &["-c", path.to_str().unwrap(), "--bind", "127.0.0.1:0"],
    );
    assert_eq!(status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("user \"no-such-user-tine\" does not exist"),
        "{stderr}"
    );
}

#[test]
fn a_worker_told_to_make_way_is_replaced_without_a_backoff() {
    let server = TestServer::start("workers = 1\n");
    let before = server.workers();
    kill(Pid::from_raw(before[0] as i32), Signal::SIGUSR2).unwrap();
    server.wait_workers("a replacement", |w| w.len() == 1 && w[0] != before[0]);
    let log = server.log();
    assert!(
        log.contains("was told to make way (SIGUSR2); starting its replacement"),
        "{log}"
    );
    assert!(
        !log.contains("of starting; restarting it in"),
        "no crash-loop backoff: {log}"
    );
    assert_eq!(server.get("/").status, 200);
}
