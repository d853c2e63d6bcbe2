//! What the tests that run a real balancer in front of tine share (`behind_nginx`,
//! `behind_haproxy`, `behind_nginx_stream`): finding the balancer's binary, a config from
//! `deploy/` changed for the test in a temporary copy, starting the balancer in the foreground
//! under the process-group guard, and reading the environ examples/python/hello.py answers.

// Helpers only the Python tests use are unused in a build without the `python` feature.
#![cfg_attr(not(feature = "python"), allow(dead_code))]

use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Guarded, TempDir, wait_until};

/// `name`'s binary: on the PATH, or where Debian puts nginx and haproxy (/usr/sbin, not on
/// every PATH).
pub fn sbin_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A port free on both [::1] and 127.0.0.1 at the time of asking, for a balancer's listeners
/// (neither nginx nor HAProxy can be told to take port 0 and say which it got).
pub fn free_port() -> u16 {
    (0..100)
        .find_map(|_| {
            let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).ok()?;
            let port = v6.local_addr().ok()?.port();
            TcpListener::bind(("127.0.0.1", port)).ok().map(|_| port)
        })
        .expect("a port free on [::1] and 127.0.0.1")
}

/// A config file of `deploy/`, read to be run by a test with its addresses changed.
pub struct DeployFile {
    /// Its path under `deploy/`, for messages.
    name: &'static str,
    text: String,
}

impl DeployFile {
    /// `deploy/{name}` as the repository holds it.
    pub fn read(name: &'static str) -> DeployFile {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy")
            .join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        DeployFile { name, text }
    }

    /// The text with `from` replaced by `to`; `from` must occur exactly once: a change to the
    /// deploy config that the test no longer matches fails here, by name, instead of testing
    /// something else.
    pub fn replace(mut self, from: &str, to: &str) -> DeployFile {
        assert_eq!(
            self.text.matches(from).count(),
            1,
            "deploy/{} should hold {from:?} once",
            self.name
        );
        self.text = self.text.replacen(from, to, 1);
        self
    }

    /// Writes the changed text into `dir` under the file's own name; its path.
    pub fn write_to(&self, dir: &TempDir) -> PathBuf {
        let file_name = Path::new(self.name)
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        dir.write(&file_name, &self.text)
    }
}

/// Spawns `command` (a balancer that stays in the foreground) in a process group of its own,
/// and waits, within the helpers' bound, until it accepts connections on `addr`; `output` is
/// where its messages go, shown if it exits first.
pub fn start_balancer(command: &mut Command, addr: SocketAddr, output: &Path) -> Guarded {
    let mut process = Guarded::spawn(command);
    let name = command.get_program().to_string_lossy().into_owned();
    wait_until(
        &format!("{name} accepting connections on {addr}"),
        || {
            if let Some(status) = process.try_wait() {
                panic!(
                    "{name} exited with {status} before accepting connections:\n{}",
                    std::fs::read_to_string(output).unwrap_or_default()
                );
            }
            TcpStream::connect(addr).is_ok()
        },
        |up| *up,
    );
    process
}

/// nginx (`binary`) running `main` (a whole nginx.conf, in the foreground) from `dir`, its
/// messages in `dir`/error.log; waits until it accepts connections on `addr`.
pub fn start_nginx(binary: &Path, dir: &TempDir, main: &str, addr: SocketAddr) -> Guarded {
    let error_log = dir.path().join("error.log");
    let main = format!(
        "daemon off;\nerror_log {} info;\npid {}/nginx.pid;\n{main}",
        error_log.display(),
        dir.path().display()
    );
    let main_path = dir.write("nginx.conf", &main);
    start_balancer(
        Command::new(binary)
            .arg("-e")
            .arg(&error_log)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&main_path)
            .stdin(std::process::Stdio::null()),
        addr,
        &error_log,
    )
}

/// The string value of `key` in the JSON object examples/python/hello.py's /environ answers.
pub fn environ_value(environ: &str, key: &str) -> Option<String> {
    let rest = environ.split(&format!("\"{key}\": \"")).nth(1)?;
    rest.split('"').next().map(str::to_owned)
}

/// tine's config `[app]` table for examples/python/hello.py.
pub fn hello_app() -> String {
    format!(
        "[app]\nhandler = \"python\"\napp = \"hello:app\"\npythonpath = [{:?}]\n",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/python")
            .display()
            .to_string()
    )
}
