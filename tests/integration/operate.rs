//! Operating tine: `tine status` through the control socket, `/metrics` and `/healthz`.

use std::io::Write;
use std::process::Command;

use nix::sys::signal::Signal;

use crate::util::{TempDir, TestServer, WAIT, read_response, run_bounded, run_tine, wait_until};

fn metrics_get(addr: &str, path: &str) -> crate::util::Response {
    let mut stream = crate::util::connect(addr);
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: m\r\n\r\n").as_bytes())
        .unwrap();
    read_response(&mut stream).unwrap()
}

#[test]
fn status_shows_every_worker_as_a_table_and_as_json() {
    let server = TestServer::builder("workers = 2").control_socket().start();
    for _ in 0..5 {
        assert_eq!(server.get("/").status, 200);
    }
    // `tine status` on the file the server runs, which names the control socket.
    let dir = TempDir::new();
    let path = server.dir().join("tine.toml");
    let control = server.dir().join("tine.ctl");
    let (status, table, stderr) = run_tine(&dir, &["status", "-c", path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let workers = server.workers();
    for pid in &workers {
        assert!(table.contains(&pid.to_string()), "{table}");
    }
    assert!(table.contains("2 of 2 workers"), "{table}");
    assert!(table.contains("5 requests served"), "{table}");
    assert!(table.contains("ready"), "{table}");
    let (status, json, _) = run_tine(&dir, &["status", "-c", path.to_str().unwrap(), "--json"]);
    assert_eq!(status.code(), Some(0));
    assert!(
        json.contains(&format!("\"master_pid\":{}", server.pid())),
        "{json}"
    );
    assert!(json.contains("\"requests\":5"), "{json}");
    assert!(
        json.contains("\"websockets\":0,"),
        "no WebSockets yet: {json}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&control).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the control socket is private");
}

#[test]
fn status_without_a_control_socket_says_so() {
    let dir = TempDir::new();
    let (status, _, stderr) = run_tine(&dir, &["status"]);
    assert_eq!(status.code(), Some(64));
    assert!(stderr.contains("control_socket"), "{stderr}");
    let path = dir.write(
        "t.toml",
        "[server]\ncontrol_socket = \"/nonexistent/tine.ctl\"\n",
    );
    let (status, _, stderr) = run_tine(&dir, &["status", "-c", path.to_str().unwrap()]);
    assert_eq!(status.code(), Some(71));
    assert!(stderr.contains("is tine running"), "{stderr}");
}

#[test]
fn metrics_and_healthz_come_from_the_master() {
    // The kernel picks the metrics port too; the log says which.
    let mut server = TestServer::builder("workers = 1")
        .tables("[metrics]\nbind = \"127.0.0.1:0\"")
        .control_socket()
        .start();
    let log = server.log();
    let metrics_addr = log
        .lines()
        .find_map(|line| line.split("metrics on http://").nth(1))
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no metrics line in the log:\n{log}"))
        .to_owned();
    assert_eq!(server.get("/").status, 200);
    assert_eq!(server.get("/nothing").status, 404);
    assert_eq!(server.get("/panic").status, 500);
    let metrics = metrics_get(&metrics_addr, "/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(
        text.contains("tine_requests_total{code=\"2xx\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("tine_requests_total{code=\"4xx\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("tine_requests_total{code=\"5xx\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("tine_request_duration_seconds_count 3\n"),
        "{text}"
    );
    assert!(text.contains("tine_workers 1\n"), "{text}");
    assert!(text.contains("\ntine_websockets_open 0\n"), "{text}");
    assert!(text.contains("tine_listen_queue{listener="), "{text}");
    check_with_prometheus_parser(&text);
    let health = metrics_get(&metrics_addr, "/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(metrics_get(&metrics_addr, "/other").status, 404);
    // Counters survive a worker's death.
    let worker = server.workers()[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(worker as i32), Signal::SIGKILL).unwrap();
    server.wait_workers("a replacement", |w| w.len() == 1 && w[0] != worker);
    let text = metrics_get(&metrics_addr, "/metrics").text();
    assert!(
        text.contains("tine_requests_total{code=\"2xx\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("tine_worker_restarts_total{reason=\"crashed\"} 1\n"),
        "{text}"
    );
    // While stopping, the health check says so (the master answers until it exits, which a
    // request of a minute in the worker puts off past the test's end).
    let mut slow = server.connect();
    slow.write_all(b"GET /sleep?ms=60000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    server.wait_busy(1);
    server.signal(Signal::SIGTERM);
    server.wait_for_notify("STOPPING=1");
    assert_eq!(metrics_get(&metrics_addr, "/healthz").status, 503);
}

#[test]
fn the_error_log_goes_to_its_file_and_sigusr1_reopens_it_for_logrotate() {
    let dir = TempDir::new();
    let log = dir.path().join("error.log");
    let server = TestServer::builder("workers = 1").error_log(&log).start();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("listening on http://"), "{text}");
    let rotated = dir.path().join("error.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    server.signal(Signal::SIGUSR1);
    let new_file = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("the master's reopen line in the new file", new_file, |t| {
        t.contains("master") && t.contains("SIGUSR1: log files reopened")
    });
    // The master tells the workers after its own reopen; each says when it has reopened.
    wait_until("the worker's reopen line in the new file", new_file, |t| {
        t.lines()
            .any(|line| line.contains("worker 1[") && line.contains("log files reopened"))
    });
    // The worker writes to the new file from then on: a handler panic is logged by the worker.
    assert_eq!(server.get("/panic").status, 500);
    wait_until("the worker's panic in the new file", new_file, |t| {
        t.lines()
            .any(|line| line.contains("worker 1[") && line.contains("panicked"))
    });
    assert!(
        !std::fs::read_to_string(&rotated)
            .unwrap()
            .contains("panicked")
    );
}

#[test]
fn the_access_log_records_each_response_in_the_chosen_format() {
    let dir = TempDir::new();
    let log = dir.path().join("access.log");
    let server = TestServer::builder("workers = 1")
        .tables(&format!(
            "[log]\naccess_log = \"{}\"\naccess_log_format = \"json\"",
            log.display()
        ))
        .start();
    let response = server.request(
        "GET /bytes?n=7 HTTP/1.1\r\nHost: t\r\nUser-Agent: probe/1\r\nReferer: http://r/\r\nX-Forwarded-For: 198.51.100.7\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    assert_eq!(server.request("BAD\r\n\r\n").status, 400);
    // Lines reach the file within about a second (the writer flushes at least that often).
    let text = wait_until(
        "two lines in the access log",
        || std::fs::read_to_string(&log).unwrap_or_default(),
        |text| text.lines().count() >= 2,
    );
    let first = text.lines().next().unwrap();
    // The peer is 127.0.0.1, trusted by default: the forwarded address is the client.
    assert!(first.contains("\"remote\":\"198.51.100.7\""), "{first}");
    assert!(
        first.contains("\"method\":\"GET\",\"target\":\"/bytes?n=7\""),
        "{first}"
    );
    assert!(first.contains("\"status\":200,\"bytes\":7"), "{first}");
    assert!(
        first.contains("\"user_agent\":\"probe/1\",\"referer\":\"http://r/\""),
        "{first}"
    );
    let second = text.lines().nth(1).unwrap();
    assert!(second.contains("\"status\":400"), "{second}");
    assert!(second.contains("\"remote\":\"127.0.0.1\""), "{second}");
}

#[test]
fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    let dir = TempDir::new();
    let log = dir.path().join("access.log");
    let server = TestServer::builder("workers = 1\nforwarded_allow_ips = [\"10.0.0.0/8\"]")
        .tables(&format!(
            "[log]\naccess_log = \"{}\"\naccess_log_format = \"{{remote}} {{status}}\"",
            log.display()
        ))
        .start();
    server.request(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n",
    );
    let text = wait_until(
        "a line in the access log",
        || std::fs::read_to_string(&log).unwrap_or_default(),
        |text| !text.is_empty(),
    );
    assert_eq!(text, "127.0.0.1 200\n");
}

/// Parses the exposition with the Prometheus project's own Python parser (installed by
/// `.ci/run`), so the format is checked by the reference implementation, not by us.
fn check_with_prometheus_parser(text: &str) {
    let script = "import sys\n\
                  from prometheus_client.parser import text_string_to_metric_families\n\
                  families = list(text_string_to_metric_families(sys.stdin.read()))\n\
                  names = {f.name for f in families}\n\
                  assert 'tine_requests' in names and 'tine_request_duration_seconds' in names, names\n\
                  print(len(families))\n";
    let probe = run_bounded(
        Command::new("python3").args(["-c", "import prometheus_client"]),
        None,
        WAIT,
    );
    if !probe.status.success() {
        crate::util::skip(
            "the Prometheus parser check: python3 with prometheus_client is not installed \
             (.ci/run installs it)",
        );
        return;
    }
    let output = run_bounded(
        Command::new("python3").args(["-c", script]),
        Some(text.as_bytes()),
        WAIT,
    );
    assert!(
        output.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        output.stderr
    );
}

#[test]
fn queue_wait_is_measured_shown_and_warned_about() {
    // One thread, four clients that keep asking for 100 ms of its time: each request waits
    // for the others'. A short threshold and period, so the warning comes within the test.
    let server = TestServer::builder(
        "workers = 1\nthreads = 1\nqueue_wait_warning = \"20ms\"\nqueue_wait_warning_after = \"1s\"",
    )
    .tables("[metrics]\nbind = \"127.0.0.1:0\"")
    .control_socket()
    .start();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            let mut stream = server.connect();
            std::thread::spawn(move || {
                let mut served = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    stream
                        .write_all(b"GET /sleep?ms=100 HTTP/1.1\r\nHost: t\r\n\r\n")
                        .unwrap();
                    assert_eq!(read_response(&mut stream).unwrap().status, 200);
                    served += 1;
                }
                served
            })
        })
        .collect();
    let log = server.wait_log("requests waited");
    let warning = log
        .lines()
        .find(|line| line.contains("requests waited"))
        .unwrap();
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("worker 1: its one thread busy for ")
            && warning.contains(" at p90 — consider more threads or workers"),
        "{warning}"
    );
    assert_eq!(log.matches("requests waited").count(), 1, "once: {log}");

    let text = metrics_get(&server.metrics_addr(), "/metrics").text();
    let sample = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    let count = sample("tine_queue_wait_seconds_count{worker=\"1\"}");
    let quick = sample("tine_queue_wait_seconds_bucket{worker=\"1\",le=\"0.025\"}");
    assert!(
        count > 0 && quick < count,
        "some waited past 25 ms:\n{text}"
    );
    check_with_prometheus_parser(&text);

    let dir = TempDir::new();
    let path = server.dir().join("tine.toml");
    let path = path.to_str().unwrap();
    let (status, table, stderr) = run_tine(&dir, &["status", "-c", path]);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let heading = table.lines().nth(1).unwrap();
    let row = table.lines().nth(2).unwrap();
    let end = heading.find(" QWAIT p90").unwrap() + " QWAIT p90".len();
    let cell = row[..end].rsplit(' ').next().unwrap();
    assert!(
        cell.ends_with("ms") || cell.ends_with('s'),
        "a p90, not {cell:?}:\n{table}"
    );
    let json = server.status_json();
    assert!(
        json.contains("\"queue_wait_p90_seconds\":0.")
            || json.contains("\"queue_wait_p90_seconds\":1"),
        "{json}"
    );

    // `--watch` asks again every second; without a terminal each table is a block of its
    // own, and it stops when its reader goes.
    let mut watch = crate::util::Guarded::spawn(
        Command::new(crate::util::tine_bin())
            .args(["status", "--watch", "-c", path])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null()),
    );
    let mut out = std::io::BufReader::new(watch.child_mut().stdout.take().unwrap());
    let mut tables = 0;
    let mut seen = String::new();
    while tables < 2 {
        let mut line = String::new();
        use std::io::BufRead;
        assert!(out.read_line(&mut line).unwrap() > 0, "{seen}");
        tables += usize::from(line.contains("QWAIT p90"));
        seen.push_str(&line);
    }
    assert!(
        !seen.contains('\x1b'),
        "no screen control without a terminal: {seen}"
    );
    assert!(
        seen.contains("\n\ntine "),
        "a blank line between tables: {seen}"
    );
    drop(out);
    let status = watch
        .wait_within(WAIT)
        .expect("--watch stops once its reader is gone");
    assert!(status.success(), "{status:?}");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        assert!(client.join().unwrap() > 0);
    }
    // With the clients gone, the thread is free: the episode is over.
    let log = server.wait_log("requests no longer wait");
    let relief = log
        .lines()
        .find(|line| line.contains("requests no longer wait"))
        .unwrap();
    assert!(
        relief.contains("INFO") && relief.contains("worker 1: "),
        "{relief}"
    );
}
