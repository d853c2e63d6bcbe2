//! Listening sockets across a reload: an address dropped from `bind` is closed everywhere, so
//! clients are refused instead of waiting in a backlog nobody accepts from.

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};

use nix::sys::signal::Signal;

use crate::util::{Config, TestServer, read_response};

/// A port free at the time of asking, so the config can name it and a reload can drop it by
/// name. It is taken below the kernel's ephemeral range (`ip_local_port_range` starts at 32768
/// by default), where no other test's port-0 bind can land on it once tine has closed it and
/// turn the expected refusal into an accepted connection.
fn free_port() -> SocketAddr {
    let start = 20_000 + std::process::id() % 10_000;
    (0..10_000)
        .map(|i| 20_000 + (start - 20_000 + i) % 10_000)
        .find_map(|port| {
            let addr = SocketAddr::from(([127, 0, 0, 1], port as u16));
            std::net::TcpListener::bind(addr).ok().map(|_| addr)
        })
        .expect("a free port below the ephemeral range")
}

const SERVER: &str = "workers = 2\nthreads = 2";

fn get(addr: SocketAddr) -> u16 {
    let mut stream = crate::util::connect(addr);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    read_response(&mut stream).unwrap().status
}

#[test]
fn a_reload_that_drops_an_address_refuses_its_clients() {
    // Kept: the builder's listener; dropped: one more, named in the first config only.
    let dropped = free_port();
    let mut server = TestServer::start(Config::new(SERVER).bind(&dropped.to_string()));
    let kept = server.addr;
    let old_workers = server.workers();
    assert_eq!(get(kept), 200);
    assert_eq!(get(dropped), 200);
    server.rewrite_config(SERVER);
    server.signal(Signal::SIGHUP);
    server.wait_for_notify("RELOADING=1");
    let ready = server.wait_for_notify("READY=1");
    assert!(ready.contains("STATUS=reloaded"), "{ready}");
    let log = server.log();
    assert!(
        log.contains(&format!("no longer listening on {dropped}")),
        "{log}"
    );
    // The master has closed it, the old workers are gone, and no new worker holds it.
    server.wait_workers("the old workers gone", |w| {
        w.len() == 2 && w.iter().all(|pid| !old_workers.contains(pid))
    });
    match TcpStream::connect(dropped) {
        Err(err) => assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}"),
        Ok(_) => panic!("{dropped} still accepts connections after the reload; log:\n{log}"),
    }
    assert_eq!(get(kept), 200);
}
