//! tine behind nginx's stream (TCP) module, configured by `deploy/nginx/tine-stream.conf`
//! itself (its ports and upstream changed in a temporary copy), sending the PROXY protocol
//! (v1) to a tine listener that takes it: the client's address and port reach the application
//! and the access log. Skipped (a failure under `TINE_REQUIRE_ALL_TESTS`) where nginx or its
//! stream module is not installed (deploy/check installs both in CI).

use std::io::Write;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::balancer::{DeployFile, environ_value, free_port, hello_app, sbin_binary, start_nginx};
use crate::util::{TempDir, TestServer, connect, read_response, skip, wait_until};

/// What nginx.conf needs to have the stream module: nothing where it is built in, else the
/// `load_module` line for Debian's libnginx-mod-stream; `None` where nginx has no stream module.
fn stream_module(nginx: &Path) -> Option<String> {
    let version = std::process::Command::new(nginx)
        .arg("-V")
        .output()
        .expect("run nginx -V");
    let configure = String::from_utf8_lossy(&version.stderr);
    if configure
        .split_whitespace()
        .any(|option| option == "--with-stream")
    {
        return Some(String::new());
    }
    let module = PathBuf::from("/usr/lib/nginx/modules/ngx_stream_module.so");
    module
        .is_file()
        .then(|| format!("load_module {};\n", module.display()))
}

#[test]
fn through_nginx_stream_the_application_sees_the_clients_address() {
    let Some(binary) = sbin_binary("nginx") else {
        skip("behind_nginx_stream: nginx is not installed (Debian: apt-get install nginx-light)");
        return;
    };
    let Some(load_module) = stream_module(&binary) else {
        skip(
            "behind_nginx_stream: nginx has no stream module \
             (Debian: apt-get install libnginx-mod-stream)",
        );
        return;
    };
    let logs = TempDir::new();
    let access_log = logs.path().join("access.log");
    let tine = TestServer::builder("workers = 1")
        .arg("--proxy-protocol")
        .tables(&hello_app())
        .tables(&format!(
            "[log]\naccess_log = {:?}\naccess_log_format = \"{{remote}}\"\n",
            access_log.display().to_string()
        ))
        .start();

    let dir = TempDir::new();
    let port = free_port();
    let stream_conf = DeployFile::read("nginx/tine-stream.conf")
        .replace("server 127.0.0.1:8443;", &format!("server {};", tine.addr))
        .replace("listen 443;", &format!("listen 127.0.0.1:{port};"))
        .replace("listen [::]:443;", &format!("listen [::1]:{port};"))
        .write_to(&dir);
    let addr = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let main = format!(
        "{load_module}events {{}}\ninclude {};\n",
        stream_conf.display()
    );
    let _nginx = start_nginx(&binary, &dir, &main, addr);

    // The client at [::1]; nginx connects to tine from 127.0.0.1, so "::1" and the client's
    // port reach tine only through the PROXY header. Two requests on the connection: nginx
    // passes it through as it is.
    let mut stream = connect(addr);
    let port = stream.local_addr().unwrap().port().to_string();
    for _ in 0..2 {
        stream
            .write_all(b"GET /environ HTTP/1.1\r\nHost: example.com\r\n\r\n")
            .unwrap();
        let response = read_response(&mut stream).unwrap_or_else(|e| {
            panic!(
                "{e}\nnginx:\n{}\ntine:\n{}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default(),
                tine.log()
            )
        });
        let environ = response.text();
        assert_eq!(response.status, 200, "{environ}");
        for (key, value) in [("REMOTE_ADDR", "::1"), ("REMOTE_PORT", port.as_str())] {
            assert_eq!(
                environ_value(&environ, key).as_deref(),
                Some(value),
                "{key} should be the client's, as nginx saw it:\n{environ}"
            );
        }
    }
    let lines = wait_until(
        "both requests in tine's access log",
        || std::fs::read_to_string(&access_log).unwrap_or_default(),
        |text| text.lines().count() >= 2,
    );
    assert_eq!(lines, "::1\n::1\n", "the access log should name the client");
}
