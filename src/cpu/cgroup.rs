//! Where this process's cgroup files are, on v1, v2 and hybrid hosts, and the limits they set:
//! the CPU quota, the cpuset and the memory limit, each the tightest from the process's cgroup
//! up to the hierarchy's mount point.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use super::{
    CgroupEntry, Limit, MemoryLimit, MountEntry, parse_cfs, parse_cpu_list, parse_cpu_max,
    parse_memory_limit, read_trimmed,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CgroupVersion {
    V1,
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        })
    }
}

/// Where one controller's files for this process live.
#[derive(Debug)]
pub(super) struct Hierarchy {
    version: CgroupVersion,
    mount_point: PathBuf,
    /// The process's cgroup below `mount_point`; empty when it is the mount point itself.
    relative: PathBuf,
}

impl Hierarchy {
    /// The process's own cgroup directory first, then each parent up to the mount point.
    fn dirs(&self) -> Vec<PathBuf> {
        self.relative
            .ancestors()
            .map(|relative| {
                // join("") would add a trailing '/', which then shows in the explanation.
                if relative.as_os_str().is_empty() {
                    self.mount_point.clone()
                } else {
                    self.mount_point.join(relative)
                }
            })
            .collect()
    }
}

pub(super) fn locate(
    cgroups: &[CgroupEntry],
    mounts: &[MountEntry],
    controller: &str,
) -> Option<Hierarchy> {
    let v1_mounts: Vec<&MountEntry> = mounts
        .iter()
        .filter(|mount| {
            mount.fs_type == "cgroup" && mount.super_options.iter().any(|o| o == controller)
        })
        .collect();
    // A controller binds to one hierarchy only, so a v1 mount carrying it means v2 has none,
    // whatever files a hybrid host's unified mount may show.
    let (version, candidates, membership) = if v1_mounts.is_empty() {
        let v2_mounts: Vec<&MountEntry> = mounts
            .iter()
            .filter(|mount| mount.fs_type == "cgroup2")
            .collect();
        let membership = cgroups.iter().find(|entry| entry.hierarchy_id == 0);
        (CgroupVersion::V2, v2_mounts, membership)
    } else {
        let membership = cgroups.iter().find(|entry| {
            entry.hierarchy_id != 0 && entry.controllers.iter().any(|c| c == controller)
        });
        (CgroupVersion::V1, v1_mounts, membership)
    };
    let cgroup_path = membership.map(|entry| entry.path.as_path());
    // The same hierarchy can be mounted more than once; prefer a mount that shows our cgroup.
    let mount = candidates
        .iter()
        .find(|mount| cgroup_path.is_some_and(|path| relative_dir(&mount.root, path).is_some()))
        .or(candidates.first())?;
    let relative = cgroup_path
        .and_then(|path| relative_dir(&mount.root, path))
        .unwrap_or_default();
    Some(Hierarchy {
        version,
        mount_point: mount.mount_point.clone(),
        relative,
    })
}

/// The cgroup path below the mount's root, or None when the mount does not show it — then the
/// mount point is the nearest directory we can read. A cgroup namespace prints a cgroup outside
/// it as `/../name`, which must not climb out of the mount.
fn relative_dir(mount_root: &Path, cgroup_path: &Path) -> Option<PathBuf> {
    let relative = cgroup_path.strip_prefix(mount_root).ok()?;
    relative
        .components()
        .all(|component| matches!(component, Component::Normal(_)))
        .then(|| relative.to_path_buf())
}

pub(super) fn quota_limit(root: &Path, hierarchy: &Hierarchy) -> Option<Limit> {
    tightest_cpus(hierarchy, |dir| match hierarchy.version {
        CgroupVersion::V2 => {
            let raw = read_trimmed(root, &dir.join("cpu.max"))?;
            let quota = parse_cpu_max(&raw).ok().flatten()?;
            Some(Limit {
                cpus: quota.cpus(),
                source: format!("cgroup v2 cpu.max \"{raw}\" at {}", dir.display()),
            })
        }
        CgroupVersion::V1 => {
            let quota_raw = read_trimmed(root, &dir.join("cpu.cfs_quota_us"))?;
            let period_raw = read_trimmed(root, &dir.join("cpu.cfs_period_us"))?;
            let quota = parse_cfs(&quota_raw, &period_raw).ok().flatten()?;
            Some(Limit {
                cpus: quota.cpus(),
                source: format!(
                    "cgroup v1 cpu.cfs_quota_us={quota_raw} cpu.cfs_period_us={period_raw} at {}",
                    dir.display()
                ),
            })
        }
    })
}

pub(super) fn cpuset_limit(root: &Path, hierarchy: &Hierarchy) -> Option<Limit> {
    // Older v1 kernels have no effective_cpus; there cpuset.cpus is the best we know.
    let files: &[&str] = match hierarchy.version {
        CgroupVersion::V2 => &["cpuset.cpus.effective"],
        CgroupVersion::V1 => &["cpuset.effective_cpus", "cpuset.cpus"],
    };
    tightest_cpus(hierarchy, |dir| {
        files.iter().find_map(|file| {
            let raw = read_trimmed(root, &dir.join(file))?;
            let count = parse_cpu_list(&raw).ok().filter(|&count| count > 0)?;
            Some(Limit {
                cpus: count as f64,
                source: format!(
                    "cgroup {} {file} \"{raw}\" at {}",
                    hierarchy.version,
                    dir.display()
                ),
            })
        })
    })
}

/// The memory limit: v2 `memory.max` or `memory.high`, whichever is lower (`memory.high`
/// throttles and reclaims rather than kills, but a server held there is as good as stopped);
/// v1 `memory.limit_in_bytes`.
pub(super) fn memory_limit(root: &Path, hierarchy: &Hierarchy) -> Option<MemoryLimit> {
    let files: &[&'static str] = match hierarchy.version {
        CgroupVersion::V2 => &["memory.max", "memory.high"],
        CgroupVersion::V1 => &["memory.limit_in_bytes"],
    };
    tightest(
        hierarchy,
        |dir| {
            // min_by_key keeps the first of equals: memory.max is named over an equal high.
            files
                .iter()
                .filter_map(|&file| {
                    let raw = read_trimmed(root, &dir.join(file))?;
                    Some(MemoryLimit {
                        bytes: parse_memory_limit(&raw).ok().flatten()?,
                        file,
                        dir: dir.to_path_buf(),
                    })
                })
                .min_by_key(|limit| limit.bytes)
        },
        |limit| limit.bytes,
    )
}

fn tightest_cpus(
    hierarchy: &Hierarchy,
    limit_at: impl Fn(&Path) -> Option<Limit>,
) -> Option<Limit> {
    tightest(hierarchy, limit_at, |limit| limit.cpus)
}

/// The smallest limit (by `size`) from the process's cgroup up to the mount point: a parent's
/// limit binds all its children. On a tie the nearer cgroup is named.
fn tightest<T, K: PartialOrd>(
    hierarchy: &Hierarchy,
    limit_at: impl Fn(&Path) -> Option<T>,
    size: impl Fn(&T) -> K,
) -> Option<T> {
    hierarchy
        .dirs()
        .iter()
        .filter_map(|dir| limit_at(dir))
        .fold(None, |best, limit| match best {
            Some(best) if size(&best) <= size(&limit) => Some(best),
            _ => Some(limit),
        })
}
