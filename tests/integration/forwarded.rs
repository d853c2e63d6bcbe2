//! The client address behind a proxy, as the access log records it: every line of the
//! configured header counts, the chain is walked from the right to the first untrusted hop, and
//! the header the proxy does not set is not believed. The tests' own connections come from
//! 127.0.0.1, which `forwarded_allow_ips` trusts by default: each plays the proxy.

use crate::util::{TempDir, TestServer, wait_until};

/// Starts a one-worker server with `server` keys and an access log of `{remote}` lines, sends
/// one request per entry of `requests` (its extra header lines), each on a connection of its
/// own, in order, and returns the logged addresses.
fn logged_remotes(server: &str, requests: &[&str]) -> Vec<String> {
    let dir = TempDir::new();
    let log = dir.path().join("access.log");
    let server = TestServer::builder(format!("workers = 1\n{server}"))
        .tables(&format!(
            "[log]\naccess_log = \"{}\"\naccess_log_format = \"{{remote}}\"",
            log.display()
        ))
        .start();
    for fields in requests {
        let response = server.request(&format!(
            "GET / HTTP/1.1\r\nHost: t\r\n{fields}Connection: close\r\n\r\n"
        ));
        assert_eq!(response.status, 200, "{fields}");
    }
    let text = wait_until(
        "a line per request in the access log",
        || std::fs::read_to_string(&log).unwrap_or_default(),
        |text| text.lines().count() >= requests.len(),
    );
    text.lines().map(str::to_owned).collect()
}

#[test]
fn x_forwarded_for_counts_every_line_and_forwarded_is_not_believed() {
    let remotes = logged_remotes(
        "",
        &[
            // The client sent its own line; the proxy appended one of its own.
            "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 198.51.100.7\r\n",
            // A client's Forwarded passed through a proxy that only appends X-Forwarded-For.
            "Forwarded: for=6.6.6.6\r\nX-Forwarded-For: 198.51.100.8\r\n",
            "Forwarded: for=6.6.6.6\r\n",
            // A hop that is not an address ends the walk at the last trusted one: the peer.
            "X-Forwarded-For: 6.6.6.6, unknown\r\n",
        ],
    );
    assert_eq!(
        remotes,
        ["198.51.100.7", "198.51.100.8", "127.0.0.1", "127.0.0.1"]
    );
}

#[test]
fn forwarded_is_read_when_the_proxy_sets_it() {
    let remotes = logged_remotes(
        "forwarded_header = \"forwarded\"\nforwarded_allow_ips = [\"127.0.0.1\", \"10.0.0.0/8\"]",
        &[
            // Two lines, IPv6 in brackets with a port, behind a chain of trusted proxies.
            "Forwarded: for=6.6.6.6\r\nX-Forwarded-For: 6.6.6.7\r\n\
             Forwarded: for=\"[2001:db8::1]:4711\", for=10.0.0.2\r\n",
            // An obfuscated hop: the last trusted one is the client.
            "Forwarded: for=6.6.6.6, for=_hidden, for=10.0.0.3\r\n",
            // X-Forwarded-For is not what this proxy sets.
            "X-Forwarded-For: 6.6.6.6\r\n",
        ],
    );
    assert_eq!(remotes, ["2001:db8::1", "10.0.0.3", "127.0.0.1"]);
}
