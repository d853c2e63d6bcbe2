//! Listening sockets across a reload: an address dropped from `bind` is closed everywhere, so
//! clients are refused instead of waiting in a backlog nobody accepts from.

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};

use nix::sys::signal::Signal;

use crate::util::{Server, read_response};

/// A port free at the time of asking (bound to port 0, then released), so the config can name
/// it and a reload can keep or drop it by name.
fn free_port() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap()
}

fn config(binds: &[SocketAddr]) -> String {
    let binds: Vec<String> = binds.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "[server]\nbind = [{}]\nworkers = 2\nthreads = 2\n",
        binds.join(", ")
    )
}

fn get(addr: SocketAddr) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(crate::util::WAIT)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    read_response(&mut stream).unwrap().status
}

#[test]
fn a_reload_that_drops_an_address_refuses_its_clients() {
    let (kept, dropped) = (free_port(), free_port());
    let mut server = Server::start(&config(&[kept, dropped]));
    let old_workers = server.workers();
    assert_eq!(get(kept), 200);
    assert_eq!(get(dropped), 200);
    server.rewrite_config(&config(&[kept]));
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
