//! The worker count for `workers = "auto"`: the CPUs usable by this process, from its affinity
//! count, its cgroup CPU quota and its cpuset, on cgroup v1, v2 and hybrid hosts; and, under a
//! cgroup memory limit, how many workers of a measured size fit in it.
//!
//! Everything that reads files goes through [`detect_under`], [`detect_memory_under`] and
//! [`process_size_under`], so fixture trees can stand in for `/proc` and `/sys`; the parsers
//! are pure. A missing, unreadable or malformed file never fails start-up: it only means that
//! source sets no limit.
//!
//! This file weighs the CPU limits against each other and explains the choice; `parse.rs`
//! holds the parsers of the kernel's files, `cgroup.rs` finds this process's cgroup directories
//! and reads the limits set in them, and `memory.rs` weighs the memory limit against the
//! measured size of a worker ([`Sizing::decide`]).

mod cgroup;
mod memory;
mod parse;

use std::fs;
use std::path::Path;

pub use parse::{
    CgroupEntry, CpuQuota, MountEntry, ParseError, parse_cfs, parse_cpu_list, parse_cpu_max,
    parse_mountinfo, parse_proc_cgroup,
};

pub use memory::{
    Decision, FIXED_EXPLANATION, Measured, MemoryLimit, ProcessSize, SizeMeasure, Sizing,
    Unmeasured, WorkerRule, parse_memory_limit, parse_smaps_rollup, parse_status_rss,
    process_size_under, size_phrase, workers_fitting,
};

use cgroup::{Hierarchy, cpuset_limit, locate, memory_limit, quota_limit};

/// How the worker count was decided, for the start-up log line and `--print-config`.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuBudget {
    /// The CPUs the workers can use; fractional when a cgroup quota decided.
    pub cpus: f64,
    /// `workers_for(cpus)`.
    pub workers: usize,
    /// The source that decided, with its raw values, and always the affinity count, e.g.
    /// `auto: 2 cpus in affinity; no cgroup cpu limit`.
    pub explanation: String,
}

/// floor(2 × cpus) + 1, at least 1.
pub fn workers_for(cpus: f64) -> usize {
    if cpus.is_nan() || cpus <= 0.0 {
        return 1;
    }
    // `as` saturates, so even an absurd value cannot wrap around to zero workers; past 1024
    // (server.workers' own limit) more processes only add memory and contention.
    ((2.0 * cpus).floor() as usize).saturating_add(1).min(1024)
}

/// Reads the real /proc and /sys.
///
/// `affinity_cpus` is the number of CPUs in the process's affinity mask, which the caller reads
/// with `sched_getaffinity`; 0 is taken as 1, since a running process always has a CPU.
pub fn detect(affinity_cpus: usize) -> CpuBudget {
    detect_under(Path::new("/"), affinity_cpus)
}

/// Same as [`detect`], with every absolute path (/proc/self/cgroup, /proc/self/mountinfo and the
/// mount points named in it) looked up under `root` — for fixture trees in tests.
///
/// The explanation names paths as the process sees them, without `root`.
pub fn detect_under(root: &Path, affinity_cpus: usize) -> CpuBudget {
    let layout = Layout::read(root);
    let quota = layout.locate("cpu").and_then(|h| quota_limit(root, &h));
    let cpuset = layout.locate("cpuset").and_then(|h| cpuset_limit(root, &h));
    budget(affinity_cpus, quota, cpuset)
}

/// The tightest cgroup memory limit over this process's cgroup and its ancestors, read from the
/// real /proc and /sys; `None` when no cgroup sets one.
pub fn detect_memory() -> Option<MemoryLimit> {
    detect_memory_under(Path::new("/"))
}

/// Same as [`detect_memory`], with every absolute path looked up under `root`.
pub fn detect_memory_under(root: &Path) -> Option<MemoryLimit> {
    Layout::read(root)
        .locate("memory")
        .and_then(|h| memory_limit(root, &h))
}

/// The size of process `pid`, or of this process for `None` (see [`process_size_under`]).
pub fn process_size(pid: Option<u32>) -> Result<ProcessSize, Unmeasured> {
    process_size_under(Path::new("/"), pid)
}

/// This process's cgroups and the mounts that show them.
struct Layout {
    cgroups: Vec<CgroupEntry>,
    mounts: Vec<MountEntry>,
}

impl Layout {
    fn read(root: &Path) -> Self {
        Layout {
            cgroups: read_trimmed(root, Path::new("/proc/self/cgroup"))
                .map(|text| parse_proc_cgroup(&text))
                .unwrap_or_default(),
            mounts: read_trimmed(root, Path::new("/proc/self/mountinfo"))
                .map(|text| parse_mountinfo(&text))
                .unwrap_or_default(),
        }
    }

    fn locate(&self, controller: &str) -> Option<Hierarchy> {
        locate(&self.cgroups, &self.mounts, controller)
    }
}

/// One source's limit and how to name it in the explanation.
#[derive(Debug)]
struct Limit {
    cpus: f64,
    source: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decider {
    Affinity,
    Quota,
    Cpuset,
}

fn budget(affinity_cpus: usize, quota: Option<Limit>, cpuset: Option<Limit>) -> CpuBudget {
    let affinity = affinity_cpus.max(1) as f64;
    let mut cpus = affinity;
    let mut decider = Decider::Affinity;
    // Strictly smaller only, so on a tie the earlier, plainer source is named.
    if let Some(limit) = quota.as_ref().filter(|limit| limit.cpus < cpus) {
        cpus = limit.cpus;
        decider = Decider::Quota;
    }
    if let Some(limit) = cpuset.as_ref().filter(|limit| limit.cpus < cpus) {
        cpus = limit.cpus;
        decider = Decider::Cpuset;
    }

    let affinity_part = format!("{} in affinity", cpus_phrase(affinity));
    let mut parts = Vec::new();
    match (decider, &quota, &cpuset) {
        (Decider::Quota, Some(limit), _) | (Decider::Cpuset, _, Some(limit)) => {
            parts.push(format!("{} from {}", cpus_phrase(limit.cpus), limit.source));
            parts.push(affinity_part);
        }
        _ => parts.push(affinity_part),
    }
    let allows = |limit: &Limit| format!("{} allows {}", limit.source, cpus_phrase(limit.cpus));
    if let Some(limit) = quota.as_ref().filter(|_| decider != Decider::Quota) {
        parts.push(allows(limit));
    }
    // Every process has a cpuset, usually all CPUs; it is news only when it narrows affinity.
    if let Some(limit) = cpuset
        .as_ref()
        .filter(|limit| decider != Decider::Cpuset && limit.cpus < affinity)
    {
        parts.push(allows(limit));
    }
    if quota.is_none() {
        parts.push(
            if decider == Decider::Cpuset {
                "no cgroup cpu quota"
            } else {
                "no cgroup cpu limit"
            }
            .to_owned(),
        );
    }

    CpuBudget {
        cpus,
        workers: workers_for(cpus),
        explanation: format!("auto: {}", parts.join("; ")),
    }
}

/// "1.5 cpus", "2 cpus", "1 cpu": at most three decimals and no trailing zeros.
fn cpus_phrase(cpus: f64) -> String {
    let fixed = format!("{cpus:.3}");
    let number = fixed.trim_end_matches('0').trim_end_matches('.');
    if number == "1" {
        "1 cpu".to_owned()
    } else {
        format!("{number} cpus")
    }
}

/// The file's contents without surrounding whitespace, or None if it cannot be read. Invalid
/// UTF-8 is replaced rather than refused, so one odd mount point elsewhere in mountinfo does
/// not hide the cgroup lines.
fn read_trimmed(root: &Path, path: &Path) -> Option<String> {
    let bytes = fs::read(root.join(path.strip_prefix("/").unwrap_or(path))).ok()?;
    Some(String::from_utf8_lossy(&bytes).trim().to_owned())
}

#[cfg(test)]
mod tests;
