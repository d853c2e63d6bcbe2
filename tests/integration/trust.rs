//! What root does on behalf of less trusted users: log files in a directory the workers' user
//! can write are never reached through a symbolic link (at start, and on every SIGUSR1 under
//! logrotate), nor is the pid file's temporary; the umask holds for every file tine creates; a
//! `group` without `user` says that the workers stay root; and the application never sees the
//! service manager's variables.
//! The Unix socket's owner is tested in `src/sys/net.rs`: a link can only be planted there
//! between `bind` and the change of owner, a moment a test from outside cannot choose.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::Signal;

use crate::util::{
    Config, Guarded, TempDir, TestServer, run_tine, skip, tine_bin, toml_string, wait_until,
};

/// What an attack on a log file needs: root, and the user `nobody` for the workers.
fn as_root_with_nobody(test: &str) -> Option<u32> {
    if !nix::unistd::geteuid().is_root() {
        skip(&format!("{test}: not running as root"));
        return None;
    }
    match nix::unistd::User::from_name("nobody") {
        Ok(Some(nobody)) => Some(nobody.uid.as_raw()),
        _ => {
            skip(&format!("{test}: no user nobody"));
            None
        }
    }
}

/// A log directory the workers' user owns (so it can plant anything there), and a root-owned
/// file outside it that stands in for `/etc/ld.so.preload`.
struct Planted {
    logs: PathBuf,
    target: PathBuf,
}

const PRECIOUS: &str = "/usr/lib/precious.so\n";

impl Planted {
    fn new(dir: &Path, nobody: u32) -> Planted {
        let logs = dir.join("logs");
        std::fs::create_dir(&logs).unwrap();
        std::os::unix::fs::chown(&logs, Some(nobody), None).unwrap();
        let target = dir.join("ld.so.preload");
        std::fs::write(&target, PRECIOUS).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        Planted { logs, target }
    }

    /// Puts a link to the target at `name` in the log directory, as the workers' user would.
    fn link(&self, name: &str, nobody: u32) -> PathBuf {
        let link = self.logs.join(name);
        std::os::unix::fs::symlink(&self.target, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(nobody), None).unwrap();
        link
    }

    /// The target is still root's and holds what it held.
    fn assert_untouched(&self, log: &str) {
        let meta = std::fs::metadata(&self.target).unwrap();
        assert_eq!(meta.uid(), 0, "the target was given away; log:\n{log}");
        assert_eq!(
            std::fs::read_to_string(&self.target).unwrap(),
            PRECIOUS,
            "the target was written; log:\n{log}"
        );
    }
}

#[test]
fn a_log_path_that_is_a_symlink_is_refused_at_start() {
    let Some(nobody) = as_root_with_nobody("a_log_path_that_is_a_symlink_is_refused_at_start")
    else {
        return;
    };
    for key in ["error_log", "access_log"] {
        let dir = TempDir::new();
        let planted = Planted::new(dir.path(), nobody);
        let link = planted.link(&format!("{key}.log"), nobody);
        let config = dir.write(
            "tine.toml",
            &format!(
                "[server]\nbind = [\"127.0.0.1:0\"]\nworkers = 1\nuser = \"nobody\"\n\
                 [log]\n{key} = {}\n",
                toml_string(&link.to_string_lossy())
            ),
        );
        let (status, _, stderr) = run_tine(&dir, &["-c", config.to_str().unwrap()]);
        assert_eq!(status.code(), Some(71), "{key}: {stderr}");
        assert!(
            stderr.contains(&link.display().to_string()) && stderr.contains("symbolic link"),
            "{key}: the error names the link: {stderr}"
        );
        planted.assert_untouched(&stderr);
    }
}

#[test]
fn a_log_replaced_by_a_symlink_is_not_followed_on_reopen() {
    let Some(nobody) = as_root_with_nobody("a_log_replaced_by_a_symlink_is_not_followed_on_reopen")
    else {
        return;
    };
    let dir = TempDir::new();
    let planted = Planted::new(dir.path(), nobody);
    let error_log = planted.logs.join("error.log");
    let access_log = planted.logs.join("access.log");
    let server = TestServer::builder("workers = 1\nuser = \"nobody\"")
        .error_log(&error_log)
        .tables(&format!(
            "access_log = {}\n",
            toml_string(&access_log.to_string_lossy())
        ))
        .start();
    assert_eq!(server.get("/").status, 200);
    // Logrotate moves the logs away, and the workers' user puts links in their place before
    // the master reopens them.
    let rotated = planted.logs.join("error.log.1");
    std::fs::rename(&error_log, &rotated).unwrap();
    std::fs::rename(&access_log, planted.logs.join("access.log.1")).unwrap();
    planted.link("error.log", nobody);
    planted.link("access.log", nobody);
    server.signal(Signal::SIGUSR1);
    let wanted = [
        format!(
            "SIGUSR1: could not reopen the error log: {}: it is a symbolic link",
            error_log.display()
        ),
        format!(
            "SIGUSR1: could not open the new access log {}: it is a symbolic link",
            access_log.display()
        ),
    ];
    // Lines keep going to the file open until now.
    let log = wait_until(
        "both refusals in the rotated error log",
        || std::fs::read_to_string(&rotated).unwrap_or_default(),
        |log| wanted.iter().all(|line| log.contains(line.as_str())),
    );
    assert_eq!(server.get("/").status, 200, "still serving; log:\n{log}");
    assert!(server.workers().len() == 1, "log:\n{log}");
    planted.assert_untouched(&log);
}

#[test]
fn a_symlink_planted_at_the_pid_files_temporary_is_not_followed() {
    let dir = TempDir::new();
    let target = dir.write("ld.so.preload", PRECIOUS);
    let pidfile = dir.path().join("tine.pid");
    let config = dir.write(
        "tine.toml",
        &format!(
            "[server]\nbind = [\"127.0.0.1:0\"]\nworkers = 1\npidfile = {}\n",
            toml_string(&pidfile.to_string_lossy())
        ),
    );
    let log = std::fs::File::create(dir.path().join("tine.log")).unwrap();
    // The temporary is named after the master's pid: the shell plants the link under its own
    // pid, then becomes tine.
    let master = Guarded::spawn(
        Command::new("sh")
            .args(["-c", "ln -s \"$1\" \"$2.$$.tmp\" && exec \"$3\" -c \"$4\""])
            .arg("sh")
            .args([&target, &pidfile])
            .arg(tine_bin())
            .arg(&config)
            .current_dir(dir.path())
            .env_remove("NOTIFY_SOCKET")
            .stdout(log.try_clone().unwrap())
            .stderr(log),
    );
    let pid = master.id().to_string();
    let log = || std::fs::read_to_string(dir.path().join("tine.log")).unwrap_or_default();
    wait_until(
        "the pid file",
        || std::fs::read_to_string(&pidfile).unwrap_or_default(),
        |text| text.trim() == pid,
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        PRECIOUS,
        "written through the link; log:\n{}",
        log()
    );
    assert!(std::fs::symlink_metadata(&pidfile).unwrap().is_file());
    drop(master);
}

#[test]
fn the_umask_holds_for_every_file_tine_creates() {
    let dir = TempDir::new();
    let path = |name: &str| dir.path().join(name);
    let quoted = |name: &str| toml_string(&path(name).to_string_lossy());
    let server = TestServer::builder(Config::new(&format!(
        "workers = 1\numask = \"0077\"\npidfile = {}",
        quoted("tine.pid")
    )))
    .bind(&format!("unix:{}", path("tine.sock").display()))
    .error_log(&path("error.log"))
    .tables(&format!("access_log = {}\n", quoted("access.log")))
    .start();
    assert_eq!(server.get("/").status, 200);
    let mode = |name: &str| std::fs::metadata(path(name)).unwrap().mode() & 0o777;
    for (name, expected) in [
        ("error.log", 0o600),
        ("access.log", 0o600),
        ("tine.pid", 0o600),
        ("tine.sock", 0o700),
    ] {
        assert_eq!(
            mode(name),
            expected,
            "{name} is {:o}; log:\n{}",
            mode(name),
            server.log()
        );
    }
}

#[test]
fn a_group_without_user_says_the_workers_stay_root() {
    if !nix::unistd::geteuid().is_root() {
        skip("a_group_without_user_says_the_workers_stay_root: not running as root");
        return;
    }
    let server = TestServer::start("workers = 1\ngroup = \"65534\"");
    let log = server.wait_log("STILL RUN AS ROOT");
    assert!(log.contains("set [server] user"), "names the fix:\n{log}");
}

#[cfg(feature = "python")]
#[test]
fn the_application_never_sees_the_service_managers_variables() {
    let dir = TempDir::new();
    dir.write(
        "environ_app.py",
        "import os\n\
         NAMES = ('NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID')\n\
         def app(environ, start_response):\n\
         \x20   seen = [n for n in NAMES if os.environ.get(n) is not None or os.getenv(n)]\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20   return [('seen: %s\\n' % ','.join(seen)).encode()]\n",
    );
    for preload in [false, true] {
        // WATCHDOG_PID names another process, so this master does not feed the watchdog; it
        // keeps the variables all the same (the test server's READY=1 came through its
        // NOTIFY_SOCKET).
        let server = TestServer::builder("workers = 1")
            .tables(&format!(
                "[app]\nhandler = \"wsgi\"\napp = \"environ_app:app\"\npythonpath = [{}]\n\
                 preload = {preload}\n",
                toml_string(&dir.path().to_string_lossy())
            ))
            .env("WATCHDOG_USEC", "600000000")
            .env("WATCHDOG_PID", "1")
            .start();
        let answer = server.get("/");
        assert_eq!(answer.status, 200, "{}", server.log());
        assert_eq!(answer.text(), "seen: \n", "preload = {preload}");
    }
}

#[test]
fn the_standard_streams_and_dev_null_are_taken_as_log_paths() {
    // As gunicorn's users write them in containers: they are root's, in /dev, so the
    // symbolic-link refusal does not apply to them.
    let server = TestServer::builder("workers = 1")
        .tables("[log]\nerror_log = \"/dev/stderr\"\naccess_log = \"/dev/null\"\n")
        .start();
    assert_eq!(server.get("/").status, 200, "{}", server.log());
    server.wait_log("worker");
}

#[test]
fn a_standard_stream_that_is_a_file_is_written_by_the_workers_and_never_given_away() {
    let Some(_) = as_root_with_nobody(
        "a_standard_stream_that_is_a_file_is_written_by_the_workers_and_never_given_away",
    ) else {
        return;
    };
    // The test server's stdout and stderr are a regular file of root's (as with
    // `tine >>/var/log/tine.out 2>&1`, or systemd's StandardOutput=append:): the workers' user
    // writes the access log there through the descriptor it inherits, and never owns the file.
    let server = TestServer::builder("workers = 1\nuser = \"nobody\"")
        .tables("[log]\nerror_log = \"/dev/stderr\"\naccess_log = \"/dev/stdout\"\n")
        .start();
    let stdout = std::fs::read_link(format!("/proc/{}/fd/1", server.pid())).unwrap();
    assert_eq!(server.get("/").status, 200, "{}", server.log());
    let log = server.wait_log("\"GET / HTTP/1.1\" 200");
    let meta = std::fs::metadata(&stdout).unwrap();
    assert_eq!(
        meta.uid(),
        0,
        "{} was given to the workers' user; log:\n{log}",
        stdout.display()
    );
}
