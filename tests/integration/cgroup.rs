//! `workers = "auto"` inside a cgroup with a 1.5-CPU quota gives 4 workers, and inside one with
//! a memory limit as many as fit. Needs root and a writable cgroup v1 `cpu` (`memory`)
//! hierarchy or cgroup v2; where neither is there, the test says so loudly and passes without
//! checking.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{TempDir, WAIT, printed_workers, run_bounded, tine_bin};

struct Cgroup(PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Killed processes leave the cgroup a moment after they die.
        for _ in 0..100 {
            if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Creates a cgroup with a 1.5-CPU quota, returning it and the file a pid is written to.
fn quota_cgroup() -> Option<Cgroup> {
    let name = format!("tine-test-{}", std::process::id());
    let v1 = Path::new("/sys/fs/cgroup/cpu");
    if v1.join("cpu.cfs_quota_us").exists() {
        let dir = v1.join(&name);
        std::fs::create_dir(&dir).ok()?;
        let group = Cgroup(dir.clone());
        std::fs::write(dir.join("cpu.cfs_period_us"), "100000").ok()?;
        std::fs::write(dir.join("cpu.cfs_quota_us"), "150000").ok()?;
        return Some(group);
    }
    let v2 = Path::new("/sys/fs/cgroup");
    if v2.join("cgroup.controllers").exists() {
        let dir = v2.join(&name);
        std::fs::create_dir(&dir).ok()?;
        let group = Cgroup(dir.clone());
        std::fs::write(dir.join("cpu.max"), "150000 100000").ok()?;
        return Some(group);
    }
    None
}

#[test]
fn a_one_and_a_half_cpu_quota_gives_four_workers() {
    let Some(group) = quota_cgroup() else {
        crate::util::skip(
            "a_one_and_a_half_cpu_quota_gives_four_workers: no writable cgroup cpu controller \
             here (needs root and /sys/fs/cgroup/cpu or cgroup v2)",
        );
        return;
    };
    let dir = TempDir::new();
    // The shell moves itself into the cgroup, then becomes tine.
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec {} --print-config",
        group.0.display(),
        tine_bin()
    );
    let output = run_bounded(
        Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path()),
        None,
        WAIT,
    );
    let (stdout, stderr) = (output.stdout, output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    if std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        < 2
    {
        crate::util::skip("the count check: fewer than 2 CPUs, the quota does not bind");
        return;
    }
    assert_eq!(printed_workers(&stdout), 4, "{stdout}");
    assert!(stdout.contains("1.5 cpus from cgroup"), "{stdout}");
}

/// Creates a cgroup with a memory limit of `bytes`, returning it and the name of the limit's
/// file. On v1 it is made inside this process's own memory cgroup, so every limit above that
/// still holds.
#[cfg(feature = "python")]
fn memory_cgroup(test: &str, bytes: u64) -> Option<(Cgroup, &'static str)> {
    let name = format!("tine-test-{}-{test}", std::process::id());
    let v1 = Path::new("/sys/fs/cgroup/memory");
    if v1.join("memory.limit_in_bytes").exists() {
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let path = own.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            fields.next()?;
            let memory = fields.next()?.split(',').any(|c| c == "memory");
            memory.then(|| fields.next()).flatten()
        })?;
        let dir = v1.join(path.trim_start_matches('/')).join(&name);
        std::fs::create_dir(&dir).ok()?;
        let group = Cgroup(dir.clone());
        std::fs::write(dir.join("memory.limit_in_bytes"), bytes.to_string()).ok()?;
        return Some((group, "memory.limit_in_bytes"));
    }
    let v2 = Path::new("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).ok()?;
    if !controllers.split_whitespace().any(|c| c == "memory") {
        return None;
    }
    let dir = v2.join(&name);
    std::fs::create_dir(&dir).ok()?;
    let group = Cgroup(dir.clone());
    std::fs::write(dir.join("memory.max"), bytes.to_string()).ok()?;
    Some((group, "memory.max"))
}

/// The master's `workers: N (...)` lines that weighed a measured worker: N, how many the
/// memory limit fits, and whether the memory decided (rather than the CPUs).
#[cfg(feature = "python")]
fn weighed(log: &str) -> Vec<(usize, usize, bool)> {
    let number = |text: &str| -> usize {
        let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("a number in {text:?}"))
    };
    log.lines()
        .filter(|line| line.contains("master[") && line.contains(" fits "))
        .filter_map(|line| {
            let count = number(line.split("workers: ").nth(1)?);
            let fits = number(line.split(" fits ").nth(1)?);
            Some((count, fits, line.contains(", but ")))
        })
        .collect()
}

/// Under a 200 MiB limit, an application that holds 48 MiB leaves room for one or two workers,
/// fewer than the three or more any CPU count gives: the master starts one, measures it, and
/// starts what fits; a reload starts from that measurement and measures again. With preload
/// the master measures itself.
#[cfg(feature = "python")]
#[test]
fn auto_under_a_memory_limit_runs_the_workers_that_fit() {
    use crate::util::{Config, TestServer, toml_string};
    use nix::sys::signal::Signal;

    let apps = TempDir::new();
    apps.write(
        "ballast.py",
        "ballast = b\"x\" * (48 << 20)\n\n\
         def app(environ, start_response):\n\
         \x20   start_response(\"200 OK\", [(\"Content-Type\", \"text/plain\")])\n\
         \x20   return [b\"ballast\\n\"]\n",
    );
    for preload in [false, true] {
        let test = if preload { "preload" } else { "lazy" };
        let Some((group, file)) = memory_cgroup(test, 200 << 20) else {
            crate::util::skip(
                "auto_under_a_memory_limit_runs_the_workers_that_fit: no writable cgroup \
                 memory controller here (needs root and /sys/fs/cgroup/memory or cgroup v2)",
            );
            return;
        };
        let procs = group.0.join("cgroup.procs");
        let enter = format!("echo $$ > '{}' && exec \"$0\" \"$@\"", procs.display());
        let config = Config::new("threads = 1").tables(&format!(
            "[app]\nhandler = \"wsgi\"\napp = \"ballast:app\"\npythonpath = [{}]\npreload = {preload}\n",
            toml_string(&apps.path().to_string_lossy())
        ));
        let mut server = TestServer::builder(config)
            .wrapper(&["sh", "-c", &enter])
            .start();
        let log = server.log();
        let lines = weighed(&log);
        let &[(count, fits, memory_decided)] = lines.as_slice() else {
            panic!("{test}: one weighed workers line by READY, found {lines:?}:\n{log}");
        };
        assert!(
            log.contains(&format!("{file} 200 MiB at ")),
            "{test}:\n{log}"
        );
        assert!(memory_decided, "{test}: memory decides:\n{log}");
        assert_eq!(count, fits, "{test}:\n{log}");
        assert!((1..=2).contains(&count), "{test}:\n{log}");
        assert_eq!(
            log.contains("starting one worker to measure"),
            !preload,
            "{test}: a preloading master measures itself:\n{log}"
        );
        server.wait_workers(&format!("{test}: {count} workers"), |w| w.len() == count);
        assert_eq!(server.get("/").status, 200, "{test}:\n{}", server.log());
        if !preload {
            server.signal(Signal::SIGHUP);
            let log = server.wait_log("reload complete");
            let lines = weighed(&log);
            assert_eq!(lines.len(), 3, "{test}: the reload weighs twice:\n{log}");
            let (after, fits, memory_decided) = lines[2];
            assert!(memory_decided && after == fits, "{test}:\n{log}");
            server.wait_workers(&format!("{test}: {after} workers after the reload"), |w| {
                w.len() == after
            });
        }
        server.signal(Signal::SIGTERM);
        server.wait_exit();
    }
}
