//! tine behind HAProxy, configured by `deploy/haproxy/haproxy.cfg` itself (its frontend
//! port, the tine server and the health-check port changed in a temporary copy), with tine's
//! listener taking the PROXY protocol as the file's comment says (`--proxy-protocol`): each
//! client connection reaches the application and the access log with its own address and
//! port, over one connection to tine that HAProxy keeps for that client's later requests;
//! HAProxy's health check against `/healthz` on tine's metrics port marks tine up, and after
//! SIGTERM with `drain_delay` marks it down while tine still serves. HAProxy's stats socket
//! says what it did. Skipped (a failure under `TINE_REQUIRE_ALL_TESTS`) where HAProxy is not
//! installed (deploy/check installs it in CI).

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;

use crate::balancer::{DeployFile, free_port, sbin_binary, start_balancer};
use crate::util::{
    Builder, Guarded, Response, TempDir, TestServer, connect, connect_unix, process_alive,
    read_response, skip, wait_until,
};

/// HAProxy running deploy/haproxy/haproxy.cfg in front of one tine, its frontend on
/// [::1]:PORT; killed when dropped.
struct HaProxy {
    addr: SocketAddr,
    /// The stats socket, added to the copy's `global` section.
    stats: PathBuf,
    /// HAProxy's messages and its log (the copy logs to stderr).
    output: PathBuf,
    _process: Guarded,
    _dir: TempDir,
}

/// What HAProxy's stats say of the server `tine1`, by column name.
struct ServerStats(Vec<(String, String)>);

impl ServerStats {
    fn get(&self, column: &str) -> &str {
        self.0
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, value)| value.as_str())
            .unwrap_or_else(|| panic!("no column {column:?} in HAProxy's stats"))
    }

    /// The health check's view: the server's status, the last check's result and the HTTP
    /// status it got (`UP`, `L7OK`, `200` once a check has passed).
    fn health(&self) -> [String; 3] {
        ["status", "check_status", "check_code"].map(|column| self.get(column).to_owned())
    }
}

impl HaProxy {
    fn start(binary: &Path, tine: &TestServer) -> HaProxy {
        let dir = TempDir::new();
        let port = free_port();
        let stats = dir.path().join("stats.sock");
        let metrics_port = tine
            .metrics_addr()
            .rsplit(':')
            .next()
            .and_then(|port| port.parse::<u16>().ok())
            .expect("the metrics port");
        let config = DeployFile::read("haproxy/haproxy.cfg")
            // The stats socket, for the test to read what HAProxy did.
            .replace(
                "\nglobal\n",
                &format!(
                    "\nglobal\n    stats socket {} level user\n",
                    stats.display()
                ),
            )
            // HAProxy wants twice maxconn in file descriptors, beyond a test machine's hard
            // limit (20000 here): a real host's systemd unit allows more.
            .replace("maxconn 20000", "maxconn 1000")
            // No syslog in a test: the log goes to HAProxy's stderr, in the test's directory.
            .replace("log /dev/log local0", "log stderr format raw local0")
            .replace("bind :80", &format!("bind [::1]:{port}"))
            .replace("check port 9100", &format!("check port {metrics_port}"))
            .replace(
                "server tine1 10.0.0.1:8001",
                &format!("server tine1 {}", tine.addr),
            )
            .replace("    server tine2 10.0.0.2:8001\n", "")
            .write_to(&dir);
        let output = dir.path().join("haproxy.log");
        let log = std::fs::File::create(&output).expect("create HAProxy's log");
        let addr = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        // -db: in the foreground, one process, stopped by the guard.
        let process = start_balancer(
            Command::new(binary)
                .arg("-db")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log's descriptor"))
                .stderr(log),
            addr,
            &output,
        );
        HaProxy {
            addr,
            stats,
            output,
            _process: process,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// The `show stat` row of the server tine1.
    fn server_stats(&self) -> ServerStats {
        let mut stream = connect_unix(&self.stats);
        stream.write_all(b"show stat\n").unwrap();
        let mut csv = String::new();
        stream
            .read_to_string(&mut csv)
            .unwrap_or_else(|e| panic!("read HAProxy's stats: {e}"));
        let mut lines = csv.lines();
        let columns: Vec<&str> = lines
            .next()
            .and_then(|header| header.strip_prefix("# "))
            .unwrap_or_else(|| panic!("no header in HAProxy's stats:\n{csv}"))
            .split(',')
            .collect();
        let row = lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .find(|fields| fields.get(1) == Some(&"tine1"))
            .unwrap_or_else(|| panic!("no row for tine1 in HAProxy's stats:\n{csv}"));
        ServerStats(
            columns
                .iter()
                .zip(row)
                .map(|(name, value)| ((*name).to_owned(), value.to_owned()))
                .collect(),
        )
    }

    /// Waits until the health check's view of tine is `want` ([`ServerStats::health`]).
    fn wait_health(&self, want: [&str; 3]) {
        wait_until(
            &format!("HAProxy's health check seeing {want:?}"),
            || self.server_stats().health(),
            |health| *health == want,
        );
    }
}

/// A one-worker tine whose listener takes the PROXY protocol, with a metrics listener for the
/// health check; `server` adds `[server]` keys.
fn proxied_tine(server: &str) -> Builder {
    TestServer::builder(format!("workers = 1\n{server}"))
        .arg("--proxy-protocol")
        .tables("[metrics]\nbind = \"127.0.0.1:0\"\n")
}

/// HAProxy's binary; `None`, the test skipped, where it is not installed.
fn haproxy_binary() -> Option<PathBuf> {
    let binary = sbin_binary("haproxy");
    if binary.is_none() {
        skip("behind_haproxy: HAProxy is not installed (Debian: apt-get install haproxy)");
    }
    binary
}

#[cfg(feature = "python")]
#[test]
fn through_haproxy_each_client_reaches_the_application_with_its_own_address() {
    use crate::balancer::{environ_value, hello_app};
    let Some(binary) = haproxy_binary() else {
        return;
    };
    let logs = TempDir::new();
    let access_log = logs.path().join("access.log");
    let tine = proxied_tine("")
        .tables(&hello_app())
        .tables(&format!(
            "[log]\naccess_log = {:?}\naccess_log_format = \"{{remote}}\"\n",
            access_log.display().to_string()
        ))
        .start();
    let haproxy = HaProxy::start(&binary, &tine);

    // Clients at [::1], one after another, each with requests on one kept-alive connection.
    // HAProxy connects to tine from 127.0.0.1: "::1" and the client's port reach tine only
    // through the PROXY header.
    let (clients, requests) = (3, 3);
    for _ in 0..clients {
        let mut stream = connect(haproxy.addr);
        let port = stream.local_addr().unwrap().port().to_string();
        for _ in 0..requests {
            stream
                .write_all(b"GET /environ HTTP/1.1\r\nHost: example.com\r\n\r\n")
                .unwrap();
            let response = read_response(&mut stream)
                .unwrap_or_else(|e| panic!("{e}\nHAProxy:\n{}", haproxy.log()));
            let environ = response.text();
            assert_eq!(
                response.status,
                200,
                "{environ}\nHAProxy:\n{}",
                haproxy.log()
            );
            for (key, value) in [("REMOTE_ADDR", "::1"), ("REMOTE_PORT", port.as_str())] {
                assert_eq!(
                    environ_value(&environ, key).as_deref(),
                    Some(value),
                    "{key} should be the client's, as HAProxy saw it:\n{environ}"
                );
            }
        }
    }

    // A connection to tine per client connection, and that client's later requests over it:
    // one that carried a client's PROXY header never serves another client.
    let stats = haproxy.server_stats();
    assert_eq!(
        [stats.get("connect"), stats.get("reuse")],
        [clients.to_string(), (clients * (requests - 1)).to_string()],
        "HAProxy's connections to tine and their reuses; HAProxy:\n{}",
        haproxy.log()
    );

    let lines = wait_until(
        "every request in tine's access log",
        || std::fs::read_to_string(&access_log).unwrap_or_default(),
        |text| text.lines().count() >= clients * requests,
    );
    assert!(
        lines.lines().all(|remote| remote == "::1"),
        "the access log should name the client, not HAProxy:\n{lines}"
    );
}

/// `GET /` sent to tine itself, with the PROXY header a balancer would send.
fn direct_request(tine: &TestServer) -> Response {
    let mut stream = tine.connect();
    stream
        .write_all(
            b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 8001\r\n\
              GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    read_response(&mut stream).unwrap_or_else(|e| panic!("{e}; tine's log:\n{}", tine.log()))
}

#[test]
fn haproxys_health_check_takes_a_draining_tine_out_while_it_still_serves() {
    let Some(binary) = haproxy_binary() else {
        return;
    };
    let tine = proxied_tine("drain_delay = \"10m\"").start();
    let haproxy = HaProxy::start(&binary, &tine);
    let through_haproxy = || {
        let mut stream = connect(haproxy.addr);
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
            .unwrap();
        read_response(&mut stream).unwrap_or_else(|e| panic!("{e}\nHAProxy:\n{}", haproxy.log()))
    };

    // HAProxy counts a server up before its first check: up, with a check that got 200.
    haproxy.wait_health(["UP", "L7OK", "200"]);
    assert_eq!(through_haproxy().status, 200, "HAProxy:\n{}", haproxy.log());

    tine.signal(Signal::SIGTERM);
    tine.wait_log("draining for 10m before stopping (drain_delay): /healthz answers 503");
    // Down after `fall` checks that got 503 (2 × 2s in the file).
    haproxy.wait_health(["DOWN", "L7STS", "503"]);
    // tine still serves what reaches it, while HAProxy sends it nothing: the 503 is HAProxy's
    // own, with no server left.
    let response = direct_request(&tine);
    assert_eq!(response.status, 200, "tine's log:\n{}", tine.log());
    assert!(process_alive(tine.pid()), "tine's log:\n{}", tine.log());
    let response = through_haproxy();
    assert_eq!(response.status, 503, "{response:?}");
    assert!(
        haproxy.log().contains("has no server available"),
        "HAProxy:\n{}",
        haproxy.log()
    );
}
