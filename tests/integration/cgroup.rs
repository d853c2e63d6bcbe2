//! `workers = "auto"` inside a cgroup with a 1.5-CPU quota gives 4 workers. Needs root and a
//! writable cgroup v1 `cpu` hierarchy or cgroup v2; where neither is there, the test says so
//! loudly and passes without checking.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{TempDir, WAIT, printed_workers, run_bounded, tine_bin};

struct Cgroup(PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
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
