//! Unit tests of the worker count: `workers_for`, and `detect_under` over fixture trees standing
//! in for `/proc` and `/sys` on cgroup v1, v2 and hybrid layouts.

use super::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory standing in for `/`, unique per test and removed when dropped, even when
/// the test panics.
struct TempTree {
    root: PathBuf,
}

impl TempTree {
    fn new(test: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "tine-cpu-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            test
        ));
        // A directory left by an earlier run whose pid was recycled.
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("create temp tree");
        TempTree { root }
    }

    /// Writes `contents` at the absolute path `path` as seen under the tree.
    fn write(&self, path: &str, contents: &str) {
        let file = self.root.join(path.trim_start_matches('/'));
        fs::create_dir_all(file.parent().expect("file has a parent")).expect("create dirs");
        fs::write(&file, contents).expect("write fixture file");
    }

    fn cgroup(&self, lines: &[&str]) {
        self.write("/proc/self/cgroup", &(lines.join("\n") + "\n"));
    }

    fn mountinfo(&self, lines: &[String]) {
        self.write("/proc/self/mountinfo", &(lines.concat()));
    }

    fn detect(&self, affinity_cpus: usize) -> CpuBudget {
        detect_under(&self.root, affinity_cpus)
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A mountinfo line in the kernel's format, with an optional field before the separator.
fn mount(root: &str, mount_point: &str, fs_type: &str, super_options: &str) -> String {
    format!(
        "32 31 0:29 {root} {mount_point} rw,nosuid,nodev,noexec,relatime shared:9 \
             - {fs_type} {fs_type} {super_options}\n"
    )
}

fn v2_tree(test: &str, cgroup_path: &str) -> TempTree {
    let tree = TempTree::new(test);
    tree.cgroup(&[&format!("0::{cgroup_path}")]);
    tree.mountinfo(&[
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n".to_owned(),
        mount("/", "/sys/fs/cgroup", "cgroup2", "rw,nsdelegate"),
    ]);
    tree
}

/// The layout of the machine tine is first deployed on: v1 controllers each mounted alone,
/// plus a v2 `unified` mount that carries no controllers.
fn v1_separate_tree(test: &str, cgroup_path: &str) -> TempTree {
    let tree = TempTree::new(test);
    tree.cgroup(&[
        &format!("9:name=systemd:{cgroup_path}"),
        &format!("8:pids:{cgroup_path}"),
        &format!("4:memory:{cgroup_path}"),
        &format!("3:cpuset:{cgroup_path}"),
        &format!("2:cpuacct:{cgroup_path}"),
        &format!("1:cpu:{cgroup_path}"),
        &format!("0::{cgroup_path}"),
    ]);
    tree.mountinfo(&[
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n".to_owned(),
        // cpuacct first: its name contains "cpu" but it must not be taken for it.
        mount("/", "/sys/fs/cgroup/cpuacct", "cgroup", "rw,cpuacct"),
        mount("/", "/sys/fs/cgroup/cpu", "cgroup", "rw,cpu"),
        mount("/", "/sys/fs/cgroup/cpuset", "cgroup", "rw,cpuset"),
        mount("/", "/sys/fs/cgroup/memory", "cgroup", "rw,memory"),
        mount("/", "/sys/fs/cgroup/unified", "cgroup2", "rw"),
    ]);
    tree
}

#[test]
fn workers_for_table() {
    for (cpus, workers) in [
        (0.5, 2),
        (1.0, 3),
        (1.5, 4),
        (2.0, 5),
        (0.1, 1),
        (4.0, 9),
        (2.5, 6),
        (0.7, 2),
        (64.0, 129),
    ] {
        assert_eq!(workers_for(cpus), workers, "cpus {cpus}");
    }
}

#[test]
fn workers_for_never_below_one() {
    for cpus in [0.0, -1.0, f64::NAN, f64::NEG_INFINITY] {
        assert_eq!(workers_for(cpus), 1, "cpus {cpus}");
    }
    assert_eq!(
        workers_for(f64::INFINITY),
        1024,
        "capped at server.workers' limit"
    );
    assert_eq!(workers_for(1000.0), 1024);
}

#[test]
fn v2_max_is_no_limit() {
    let tree = v2_tree("v2_max", "/app");
    tree.write("/sys/fs/cgroup/app/cpu.max", "max 100000\n");
    let budget = tree.detect(4);
    assert_eq!(
        budget,
        CpuBudget {
            cpus: 4.0,
            workers: 9,
            explanation: "auto: 4 cpus in affinity; no cgroup cpu limit".to_owned(),
        }
    );
}

#[test]
fn v2_quota_one_and_a_half() {
    let tree = v2_tree("v2_quota", "/app");
    tree.write("/sys/fs/cgroup/app/cpu.max", "150000 100000\n");
    let budget = tree.detect(4);
    assert_eq!(
        budget,
        CpuBudget {
            cpus: 1.5,
            workers: 4,
            explanation: "auto: 1.5 cpus from cgroup v2 cpu.max \"150000 100000\" \
                              at /sys/fs/cgroup/app; 4 cpus in affinity"
                .to_owned(),
        }
    );
}

#[test]
fn v2_half_cpu_quota() {
    let tree = v2_tree("v2_half", "/app");
    tree.write("/sys/fs/cgroup/app/cpu.max", "50000 100000\n");
    let budget = tree.detect(2);
    assert_eq!(budget.cpus, 0.5);
    assert_eq!(budget.workers, 2);
}

#[test]
fn v2_nested_parent_is_tighter() {
    let tree = v2_tree("v2_nested", "/outer/inner");
    tree.write("/sys/fs/cgroup/outer/cpu.max", "50000 100000\n");
    tree.write("/sys/fs/cgroup/outer/inner/cpu.max", "200000 100000\n");
    tree.write("/sys/fs/cgroup/cpu.max", "max 100000\n");
    let budget = tree.detect(8);
    assert_eq!(budget.cpus, 0.5);
    assert_eq!(budget.workers, 2);
    assert_eq!(
        budget.explanation,
        "auto: 0.5 cpus from cgroup v2 cpu.max \"50000 100000\" at /sys/fs/cgroup/outer; \
             8 cpus in affinity"
    );
}

#[test]
fn v2_nested_child_is_tighter() {
    let tree = v2_tree("v2_nested_child", "/outer/inner");
    tree.write("/sys/fs/cgroup/outer/cpu.max", "300000 100000\n");
    tree.write("/sys/fs/cgroup/outer/inner/cpu.max", "100000 100000\n");
    let budget = tree.detect(8);
    assert_eq!(budget.cpus, 1.0);
    assert_eq!(
        budget.explanation,
        "auto: 1 cpu from cgroup v2 cpu.max \"100000 100000\" at /sys/fs/cgroup/outer/inner; \
             8 cpus in affinity"
    );
}

#[test]
fn v1_separate_cpu_mount() {
    let tree = v1_separate_tree("v1_separate", "/tine");
    tree.write("/sys/fs/cgroup/cpu/tine/cpu.cfs_quota_us", "150000\n");
    tree.write("/sys/fs/cgroup/cpu/tine/cpu.cfs_period_us", "100000\n");
    tree.write("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n");
    tree.write("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
    tree.write("/sys/fs/cgroup/cpuacct/tine/cpu.cfs_quota_us", "10000\n");
    tree.write("/sys/fs/cgroup/cpuacct/tine/cpu.cfs_period_us", "100000\n");
    let budget = tree.detect(2);
    assert_eq!(
        budget,
        CpuBudget {
            cpus: 1.5,
            workers: 4,
            explanation: "auto: 1.5 cpus from cgroup v1 cpu.cfs_quota_us=150000 \
                              cpu.cfs_period_us=100000 at /sys/fs/cgroup/cpu/tine; \
                              2 cpus in affinity"
                .to_owned(),
        }
    );
}

#[test]
fn hybrid_ignores_the_unified_mount_when_v1_has_cpu() {
    let tree = v1_separate_tree("hybrid", "/tine");
    tree.write("/sys/fs/cgroup/unified/tine/cpu.max", "10000 100000\n");
    tree.write("/sys/fs/cgroup/unified/tine/cpuset.cpus.effective", "0\n");
    let budget = tree.detect(2);
    assert_eq!(budget.cpus, 2.0);
    assert_eq!(
        budget.explanation,
        "auto: 2 cpus in affinity; no cgroup cpu limit"
    );
}

#[test]
fn v1_combined_cpu_cpuacct_mount() {
    let tree = TempTree::new("v1_combined");
    tree.cgroup(&[
        "11:cpuset:/",
        "4:cpu,cpuacct:/system.slice/tine.service",
        "1:name=systemd:/system.slice/tine.service",
    ]);
    tree.mountinfo(&[
        mount(
            "/",
            "/sys/fs/cgroup/systemd",
            "cgroup",
            "rw,xattr,name=systemd",
        ),
        mount(
            "/",
            "/sys/fs/cgroup/cpu,cpuacct",
            "cgroup",
            "rw,cpu,cpuacct",
        ),
        mount("/", "/sys/fs/cgroup/cpuset", "cgroup", "rw,cpuset"),
    ]);
    let service = "/sys/fs/cgroup/cpu,cpuacct/system.slice/tine.service";
    tree.write(&format!("{service}/cpu.cfs_quota_us"), "250000\n");
    tree.write(&format!("{service}/cpu.cfs_period_us"), "100000\n");
    tree.write("/sys/fs/cgroup/cpuset/cpuset.effective_cpus", "0-7\n");
    let budget = tree.detect(8);
    assert_eq!(budget.cpus, 2.5);
    assert_eq!(budget.workers, 6);
    assert_eq!(
        budget.explanation,
        format!(
            "auto: 2.5 cpus from cgroup v1 cpu.cfs_quota_us=250000 \
                 cpu.cfs_period_us=100000 at {service}; 8 cpus in affinity"
        )
    );
}

#[test]
fn v1_quota_minus_one_is_no_limit() {
    let tree = v1_separate_tree("v1_unlimited", "/tine");
    tree.write("/sys/fs/cgroup/cpu/tine/cpu.cfs_quota_us", "-1\n");
    tree.write("/sys/fs/cgroup/cpu/tine/cpu.cfs_period_us", "100000\n");
    tree.write("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n");
    tree.write("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n");
    let budget = tree.detect(3);
    assert_eq!(
        budget,
        CpuBudget {
            cpus: 3.0,
            workers: 7,
            explanation: "auto: 3 cpus in affinity; no cgroup cpu limit".to_owned(),
        }
    );
}

#[test]
fn v1_container_mount_root_equals_cgroup_path() {
    let tree = TempTree::new("v1_container");
    tree.cgroup(&["5:cpu,cpuacct:/docker/abc", "3:cpuset:/docker/abc"]);
    tree.mountinfo(&[
        mount(
            "/docker/abc",
            "/sys/fs/cgroup/cpu,cpuacct",
            "cgroup",
            "ro,cpu,cpuacct",
        ),
        mount(
            "/docker/abc",
            "/sys/fs/cgroup/cpuset",
            "cgroup",
            "ro,cpuset",
        ),
    ]);
    tree.write("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "100000\n");
    tree.write("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    let budget = tree.detect(16);
    assert_eq!(budget.cpus, 1.0);
    assert_eq!(budget.workers, 3);
    assert_eq!(
        budget.explanation,
        "auto: 1 cpu from cgroup v1 cpu.cfs_quota_us=100000 cpu.cfs_period_us=100000 \
             at /sys/fs/cgroup/cpu,cpuacct; 16 cpus in affinity"
    );
}

#[test]
fn v2_container_mount_root_equals_cgroup_path() {
    let tree = TempTree::new("v2_container");
    tree.cgroup(&["0::/docker/abc"]);
    tree.mountinfo(&[mount("/docker/abc", "/sys/fs/cgroup", "cgroup2", "rw")]);
    tree.write("/sys/fs/cgroup/cpu.max", "200000 100000\n");
    let budget = tree.detect(16);
    assert_eq!(budget.cpus, 2.0);
    assert_eq!(budget.workers, 5);
    assert!(
        budget.explanation.contains("at /sys/fs/cgroup;"),
        "{}",
        budget.explanation
    );
}

#[test]
fn cgroup_outside_the_mount_root_uses_the_mount_point() {
    for (test, cgroup_path) in [("outside", "/elsewhere"), ("namespaced", "/../sibling")] {
        let tree = TempTree::new(test);
        tree.cgroup(&[&format!("0::{cgroup_path}")]);
        tree.mountinfo(&[mount("/docker/abc", "/sys/fs/cgroup", "cgroup2", "rw")]);
        tree.write("/sys/fs/cgroup/cpu.max", "100000 100000\n");
        assert_eq!(tree.detect(4).cpus, 1.0, "{cgroup_path}");
    }
}

#[test]
fn prefers_the_mount_that_shows_our_cgroup() {
    let tree = TempTree::new("two_mounts");
    tree.cgroup(&["0::/app"]);
    tree.mountinfo(&[
        mount("/other", "/mnt/other", "cgroup2", "rw"),
        mount("/", "/sys/fs/cgroup", "cgroup2", "rw"),
    ]);
    tree.write("/mnt/other/cpu.max", "500000 100000\n");
    tree.write("/sys/fs/cgroup/app/cpu.max", "300000 100000\n");
    assert_eq!(tree.detect(8).cpus, 3.0);
}

#[test]
fn v2_cpuset_narrower_than_affinity() {
    let tree = v2_tree("v2_cpuset", "/app");
    tree.write("/sys/fs/cgroup/app/cpu.max", "max 100000\n");
    tree.write("/sys/fs/cgroup/app/cpuset.cpus.effective", "0-1\n");
    tree.write("/sys/fs/cgroup/cpuset.cpus.effective", "0-7\n");
    let budget = tree.detect(8);
    assert_eq!(
        budget,
        CpuBudget {
            cpus: 2.0,
            workers: 5,
            explanation: "auto: 2 cpus from cgroup v2 cpuset.cpus.effective \"0-1\" \
                              at /sys/fs/cgroup/app; 8 cpus in affinity; no cgroup cpu quota"
                .to_owned(),
        }
    );
}

#[test]
fn v1_cpuset_prefers_effective_cpus() {
    let tree = v1_separate_tree("v1_cpuset_effective", "/tine");
    tree.write("/sys/fs/cgroup/cpuset/tine/cpuset.effective_cpus", "0-1\n");
    tree.write("/sys/fs/cgroup/cpuset/tine/cpuset.cpus", "0-3\n");
    let budget = tree.detect(8);
    assert_eq!(budget.cpus, 2.0);
    assert_eq!(
        budget.explanation,
        "auto: 2 cpus from cgroup v1 cpuset.effective_cpus \"0-1\" \
             at /sys/fs/cgroup/cpuset/tine; 8 cpus in affinity; no cgroup cpu quota"
    );
}

#[test]
fn v1_cpuset_falls_back_to_cpuset_cpus() {
    let tree = v1_separate_tree("v1_cpuset_fallback", "/tine");
    tree.write("/sys/fs/cgroup/cpuset/tine/cpuset.cpus", "0-2\n");
    let budget = tree.detect(8);
    assert_eq!(budget.cpus, 3.0);
    assert_eq!(budget.workers, 7);
    assert!(
        budget.explanation.contains("cpuset.cpus \"0-2\""),
        "{}",
        budget.explanation
    );
}

#[test]
fn quota_decides_and_a_narrower_cpuset_is_still_named() {
    let tree = v2_tree("quota_and_cpuset", "/app");
    tree.write("/sys/fs/cgroup/app/cpu.max", "150000 100000\n");
    tree.write("/sys/fs/cgroup/app/cpuset.cpus.effective", "0-2\n");
    let budget = tree.detect(8);
    assert_eq!(budget.cpus, 1.5);
    assert_eq!(
        budget.explanation,
        "auto: 1.5 cpus from cgroup v2 cpu.max \"150000 100000\" at /sys/fs/cgroup/app; \
             8 cpus in affinity; cgroup v2 cpuset.cpus.effective \"0-2\" \
             at /sys/fs/cgroup/app allows 3 cpus"
    );
}

#[test]
fn affinity_narrower_than_quota() {
    let tree = v2_tree("affinity_narrower", "/app");
    tree.write("/sys/fs/cgroup/app/cpu.max", "300000 100000\n");
    tree.write("/sys/fs/cgroup/app/cpuset.cpus.effective", "0-7\n");
    let budget = tree.detect(2);
    assert_eq!(
        budget,
        CpuBudget {
            cpus: 2.0,
            workers: 5,
            explanation: "auto: 2 cpus in affinity; cgroup v2 cpu.max \"300000 100000\" \
                              at /sys/fs/cgroup/app allows 3 cpus"
                .to_owned(),
        }
    );
}

#[test]
fn missing_files_everywhere_leave_affinity_only() {
    let empty = TempTree::new("missing_all");
    assert_eq!(
        empty.detect(6),
        CpuBudget {
            cpus: 6.0,
            workers: 13,
            explanation: "auto: 6 cpus in affinity; no cgroup cpu limit".to_owned(),
        }
    );
    // Mounts named, but none of the cgroup files exist.
    let v2 = v2_tree("missing_v2_files", "/app");
    assert_eq!(v2.detect(6).cpus, 6.0);
    let v1 = v1_separate_tree("missing_v1_files", "/tine");
    assert_eq!(v1.detect(6).cpus, 6.0);
    // cgroup membership without mountinfo, and the reverse.
    let no_mounts = TempTree::new("missing_mountinfo");
    no_mounts.cgroup(&["0::/app"]);
    no_mounts.write("/sys/fs/cgroup/app/cpu.max", "10000 100000\n");
    assert_eq!(no_mounts.detect(6).cpus, 6.0);
}

#[test]
fn mount_without_a_cgroup_line_reads_the_mount_point() {
    let tree = TempTree::new("no_cgroup_line");
    tree.mountinfo(&[mount("/", "/sys/fs/cgroup", "cgroup2", "rw")]);
    tree.write("/sys/fs/cgroup/cpu.max", "100000 100000\n");
    assert_eq!(tree.detect(4).cpus, 1.0);
}

#[test]
fn malformed_files_are_no_limit() {
    let tree = v2_tree("malformed", "/app");
    tree.write("/sys/fs/cgroup/app/cpu.max", "lots 100000\n");
    tree.write("/sys/fs/cgroup/app/cpuset.cpus.effective", "0-\n");
    assert_eq!(
        tree.detect(4).explanation,
        "auto: 4 cpus in affinity; no cgroup cpu limit"
    );
    let v1 = v1_separate_tree("malformed_v1", "/tine");
    v1.write("/sys/fs/cgroup/cpu/tine/cpu.cfs_quota_us", "150000\n");
    v1.write("/sys/fs/cgroup/cpu/tine/cpu.cfs_period_us", "0\n");
    assert_eq!(v1.detect(4).cpus, 4.0);
}

#[test]
fn zero_affinity_counts_as_one_cpu() {
    let tree = TempTree::new("zero_affinity");
    let budget = tree.detect(0);
    assert_eq!(budget.cpus, 1.0);
    assert_eq!(budget.workers, 3);
    assert_eq!(
        budget.explanation,
        "auto: 1 cpu in affinity; no cgroup cpu limit"
    );
}

#[test]
fn cpus_print_without_trailing_zeros() {
    assert_eq!(cpus_phrase(1.5), "1.5 cpus");
    assert_eq!(cpus_phrase(2.0), "2 cpus");
    assert_eq!(cpus_phrase(1.0), "1 cpu");
    assert_eq!(cpus_phrase(0.25), "0.25 cpus");
    assert_eq!(cpus_phrase(1.0 / 3.0), "0.333 cpus");
    assert_eq!(cpus_phrase(10.0), "10 cpus");
}

#[test]
fn real_machine_never_exceeds_affinity() {
    for affinity in [1, 2, 3, 64] {
        let budget = detect(affinity);
        assert!(budget.workers >= 1, "{budget:?}");
        assert!(budget.workers <= workers_for(affinity as f64), "{budget:?}");
        assert!(budget.cpus <= affinity as f64, "{budget:?}");
        assert_eq!(budget.workers, workers_for(budget.cpus), "{budget:?}");
        assert!(budget.explanation.starts_with("auto: "), "{budget:?}");
        assert!(
            budget
                .explanation
                .contains(&format!("{} in affinity", cpus_phrase(affinity as f64))),
            "{budget:?}"
        );
    }
}

mod memory;
