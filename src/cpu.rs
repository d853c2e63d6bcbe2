//! The worker count for `workers = "auto"`: the CPUs usable by this process, from its affinity
//! count, its cgroup CPU quota and its cpuset, on cgroup v1, v2 and hybrid hosts.
//!
//! Everything that reads files goes through [`detect_under`], so fixture trees can stand in for
//! `/proc` and `/sys`; the parsers are pure. A missing, unreadable or malformed file never fails
//! start-up: it only means that source sets no limit.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

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
    let cgroups = read_trimmed(root, Path::new("/proc/self/cgroup"))
        .map(|text| parse_proc_cgroup(&text))
        .unwrap_or_default();
    let mounts = read_trimmed(root, Path::new("/proc/self/mountinfo"))
        .map(|text| parse_mountinfo(&text))
        .unwrap_or_default();
    let quota = locate(&cgroups, &mounts, "cpu").and_then(|h| quota_limit(root, &h));
    let cpuset = locate(&cgroups, &mounts, "cpuset").and_then(|h| cpuset_limit(root, &h));
    budget(affinity_cpus, quota, cpuset)
}

/// A cgroup CPU bandwidth limit: `quota_us` of CPU time every `period_us`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuQuota {
    /// CPU time allowed per period, in microseconds; never 0 from the parsers.
    pub quota_us: u64,
    /// Length of the period, in microseconds; never 0 from the parsers.
    pub period_us: u64,
}

impl CpuQuota {
    /// The quota as a number of CPUs, e.g. 1.5 for 150000 every 100000.
    pub fn cpus(self) -> f64 {
        self.quota_us as f64 / self.period_us as f64
    }
}

/// A cgroup file whose contents the kernel would never write; the caller treats it as no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// cgroup v2 `cpu.max` is neither `max PERIOD` nor `QUOTA PERIOD`.
    CpuMax,
    /// cgroup v1 `cpu.cfs_quota_us` is neither -1 nor positive, or `cpu.cfs_period_us` is not
    /// positive.
    Cfs,
    /// A cpuset file is not a CPU list such as `0-3,6,8-9`.
    CpuList,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::CpuMax => {
                "cpu.max is neither \"max PERIOD\" nor \"QUOTA PERIOD\" with positive integers"
            }
            ParseError::Cfs => {
                "cpu.cfs_quota_us is neither -1 nor a positive integer, \
                 or cpu.cfs_period_us is not a positive integer"
            }
            ParseError::CpuList => "not a CPU list such as \"0-3,6,8-9\"",
        })
    }
}

impl std::error::Error for ParseError {}

/// Parses cgroup v2 `cpu.max`: `Ok(None)` for `max PERIOD` (no limit), the quota for
/// `QUOTA PERIOD`.
pub fn parse_cpu_max(text: &str) -> Result<Option<CpuQuota>, ParseError> {
    let mut fields = text.split_whitespace();
    let quota = fields.next().ok_or(ParseError::CpuMax)?;
    let period = fields.next();
    if fields.next().is_some() {
        return Err(ParseError::CpuMax);
    }
    let period_us = match period {
        Some(period) => Some(positive(period).ok_or(ParseError::CpuMax)?),
        None => None,
    };
    if quota == "max" {
        return Ok(None);
    }
    Ok(Some(CpuQuota {
        quota_us: positive(quota).ok_or(ParseError::CpuMax)?,
        period_us: period_us.ok_or(ParseError::CpuMax)?,
    }))
}

/// Parses cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`: `Ok(None)` for a quota of -1
/// (no limit, whatever the period says).
pub fn parse_cfs(quota_text: &str, period_text: &str) -> Result<Option<CpuQuota>, ParseError> {
    let quota: i64 = quota_text.trim().parse().map_err(|_| ParseError::Cfs)?;
    if quota == -1 {
        return Ok(None);
    }
    let quota_us = u64::try_from(quota)
        .ok()
        .filter(|&quota| quota > 0)
        .ok_or(ParseError::Cfs)?;
    let period_us = positive(period_text.trim()).ok_or(ParseError::Cfs)?;
    Ok(Some(CpuQuota {
        quota_us,
        period_us,
    }))
}

/// Counts the distinct CPUs in a kernel CPU list such as `0-3,6,8-9` (7). An empty list counts
/// 0: v1 leaves `cpuset.cpus` empty in a cgroup nobody configured.
pub fn parse_cpu_list(text: &str) -> Result<usize, ParseError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    let mut ranges = Vec::new();
    for item in text.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((first, last)) => (cpu_id(first)?, cpu_id(last)?),
            None => (cpu_id(item)?, cpu_id(item)?),
        };
        if first > last {
            return Err(ParseError::CpuList);
        }
        ranges.push((u64::from(first), u64::from(last)));
    }
    // Sorted and merged, so a CPU named twice ("0-3,2-5") still counts once.
    ranges.sort_unstable();
    let mut count = 0u64;
    let mut first_uncounted = 0u64;
    for (first, last) in ranges {
        let start = first.max(first_uncounted);
        let end = last + 1;
        if end > start {
            count += end - start;
            first_uncounted = end;
        }
    }
    Ok(usize::try_from(count).unwrap_or(usize::MAX))
}

/// One line of `/proc/self/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupEntry {
    /// The v1 hierarchy id; 0 for the cgroup v2 line.
    pub hierarchy_id: u32,
    /// The controllers bound to a v1 hierarchy (`cpu`, `cpuacct`, `name=systemd`); empty for v2.
    pub controllers: Vec<String>,
    /// The process's cgroup inside that hierarchy, e.g. `/system.slice/tine.service`.
    pub path: PathBuf,
}

/// Parses `/proc/self/cgroup`, skipping lines that are not `id:controllers:/path`.
pub fn parse_proc_cgroup(text: &str) -> Vec<CgroupEntry> {
    text.lines()
        .filter_map(|line| {
            // splitn keeps any ':' inside the path, which cgroup names may contain.
            let mut fields = line.splitn(3, ':');
            let hierarchy_id = fields.next()?.parse().ok()?;
            let controllers = fields.next()?;
            let path = fields.next()?;
            if !path.starts_with('/') {
                return None;
            }
            Some(CgroupEntry {
                hierarchy_id,
                controllers: controllers
                    .split(',')
                    .filter(|controller| !controller.is_empty())
                    .map(String::from)
                    .collect(),
                path: PathBuf::from(path),
            })
        })
        .collect()
}

/// The fields of one `/proc/self/mountinfo` line that locate a cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// Field 4: the directory of the filesystem mounted here, e.g. `/docker/abc` when a
    /// container sees only its own cgroup.
    pub root: PathBuf,
    /// Field 5: where it is mounted, e.g. `/sys/fs/cgroup/cpu`.
    pub mount_point: PathBuf,
    /// The filesystem type after the ` - ` separator: `cgroup` for v1, `cgroup2` for v2.
    pub fs_type: String,
    /// The super options, the last field; a v1 hierarchy lists its controllers here.
    pub super_options: Vec<String>,
}

/// Parses `/proc/self/mountinfo`, skipping malformed lines and decoding the kernel's `\040`
/// style escapes in paths.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_mount_line).collect()
}

fn parse_mount_line(line: &str) -> Option<MountEntry> {
    // The kernel separates fields with exactly one space and escapes spaces inside them;
    // splitting on ' ' (not whitespace) keeps an empty mount source as an empty field.
    let fields: Vec<&str> = line.split(' ').collect();
    // Optional fields (shared:N, master:N, ...) vary in number, so the separator is searched for.
    let separator = 6 + fields.get(6..)?.iter().position(|field| *field == "-")?;
    let after = fields.get(separator + 1..)?;
    if after.len() < 3 {
        return None;
    }
    Some(MountEntry {
        root: unescape_path(fields[3]),
        mount_point: unescape_path(fields[4]),
        fs_type: after[0].to_owned(),
        super_options: after[2].split(',').map(String::from).collect(),
    })
}

fn unescape_path(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(byte) = bytes.get(i + 1..i + 4).and_then(octal_byte) {
                decoded.push(byte);
                i += 4;
                continue;
            }
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    // Bytes, not a String: an escape may stand for part of a name that is not UTF-8.
    PathBuf::from(OsString::from_vec(decoded))
}

fn octal_byte(digits: &[u8]) -> Option<u8> {
    let value = digits.iter().try_fold(0u32, |value, &digit| {
        (b'0'..=b'7')
            .contains(&digit)
            .then(|| value * 8 + u32::from(digit - b'0'))
    })?;
    u8::try_from(value).ok()
}

fn positive(text: &str) -> Option<u64> {
    text.parse().ok().filter(|&value| value > 0)
}

fn cpu_id(text: &str) -> Result<u32, ParseError> {
    text.parse().map_err(|_| ParseError::CpuList)
}

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
struct Hierarchy {
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

fn locate(cgroups: &[CgroupEntry], mounts: &[MountEntry], controller: &str) -> Option<Hierarchy> {
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

/// One source's limit and how to name it in the explanation.
#[derive(Debug)]
struct Limit {
    cpus: f64,
    source: String,
}

fn quota_limit(root: &Path, hierarchy: &Hierarchy) -> Option<Limit> {
    tightest(hierarchy, |dir| match hierarchy.version {
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

fn cpuset_limit(root: &Path, hierarchy: &Hierarchy) -> Option<Limit> {
    // Older v1 kernels have no effective_cpus; there cpuset.cpus is the best we know.
    let files: &[&str] = match hierarchy.version {
        CgroupVersion::V2 => &["cpuset.cpus.effective"],
        CgroupVersion::V1 => &["cpuset.effective_cpus", "cpuset.cpus"],
    };
    tightest(hierarchy, |dir| {
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

/// The smallest limit from the process's cgroup up to the mount point: a parent's limit
/// binds all its children. On a tie the nearer cgroup is named.
fn tightest(hierarchy: &Hierarchy, limit_at: impl Fn(&Path) -> Option<Limit>) -> Option<Limit> {
    hierarchy
        .dirs()
        .iter()
        .filter_map(|dir| limit_at(dir))
        .fold(None, |best, limit| match best {
            Some(best) if best.cpus <= limit.cpus => Some(best),
            _ => Some(limit),
        })
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
mod tests {
    use super::*;
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
    fn cpu_max_limits_and_max() {
        assert_eq!(parse_cpu_max("max 100000\n"), Ok(None));
        assert_eq!(parse_cpu_max("max"), Ok(None));
        assert_eq!(
            parse_cpu_max("150000 100000\n"),
            Ok(Some(CpuQuota {
                quota_us: 150_000,
                period_us: 100_000
            }))
        );
        assert_eq!(parse_cpu_max("50000 100000").unwrap().unwrap().cpus(), 0.5);
    }

    #[test]
    fn cpu_max_malformed() {
        for text in [
            "",
            "\n",
            "abc",
            "150000",
            "150000 0",
            "0 100000",
            "-1 100000",
            "1.5 100000",
            "150000 100000 7",
            "max abc",
            "max -1",
        ] {
            assert_eq!(parse_cpu_max(text), Err(ParseError::CpuMax), "{text:?}");
        }
    }

    #[test]
    fn cfs_limits_and_unlimited() {
        assert_eq!(
            parse_cfs("150000\n", "100000\n"),
            Ok(Some(CpuQuota {
                quota_us: 150_000,
                period_us: 100_000
            }))
        );
        assert_eq!(parse_cfs("-1\n", "100000\n"), Ok(None));
        // With no quota the period does not matter.
        assert_eq!(parse_cfs("-1", ""), Ok(None));
    }

    #[test]
    fn cfs_malformed() {
        for (quota, period) in [
            ("", "100000"),
            ("abc", "100000"),
            ("-2", "100000"),
            ("0", "100000"),
            ("1.5", "100000"),
            ("150000", "0"),
            ("150000", "-1"),
            ("150000", "abc"),
            ("150000", ""),
        ] {
            assert_eq!(
                parse_cfs(quota, period),
                Err(ParseError::Cfs),
                "{quota:?} {period:?}"
            );
        }
    }

    #[test]
    fn cpu_list_counts() {
        for (text, count) in [
            ("0-3,6,8-9", 7),
            ("0-3,6,8-9\n", 7),
            ("0", 1),
            ("5", 1),
            ("0-1", 2),
            ("3-3", 1),
            ("0-3,2-5", 6),
            ("8-9,0-1", 4),
            ("0-3,1", 4),
            ("", 0),
            ("\n", 0),
        ] {
            assert_eq!(parse_cpu_list(text), Ok(count), "{text:?}");
        }
    }

    #[test]
    fn cpu_list_malformed() {
        for text in [
            "a", "3-1", "0-", "-3", "0,,1", "0,", ",0", "1-2-3", "0-3:2/4", "0 1", "-1",
        ] {
            assert_eq!(parse_cpu_list(text), Err(ParseError::CpuList), "{text:?}");
        }
    }

    #[test]
    fn proc_cgroup_v1_and_v2_lines() {
        let entries = parse_proc_cgroup(
            "9:name=systemd:/\n3:cpuset:/\n1:cpu,cpuacct:/system.slice/tine.service\n0::/a:b\n",
        );
        assert_eq!(
            entries,
            vec![
                CgroupEntry {
                    hierarchy_id: 9,
                    controllers: vec!["name=systemd".to_owned()],
                    path: PathBuf::from("/"),
                },
                CgroupEntry {
                    hierarchy_id: 3,
                    controllers: vec!["cpuset".to_owned()],
                    path: PathBuf::from("/"),
                },
                CgroupEntry {
                    hierarchy_id: 1,
                    controllers: vec!["cpu".to_owned(), "cpuacct".to_owned()],
                    path: PathBuf::from("/system.slice/tine.service"),
                },
                CgroupEntry {
                    hierarchy_id: 0,
                    controllers: vec![],
                    path: PathBuf::from("/a:b"),
                },
            ]
        );
    }

    #[test]
    fn proc_cgroup_skips_malformed_lines() {
        let entries = parse_proc_cgroup("garbage\nx:cpu:/\n1:cpu\n2:cpu:relative\n\n0::/ok\n");
        assert_eq!(
            entries,
            vec![CgroupEntry {
                hierarchy_id: 0,
                controllers: vec![],
                path: PathBuf::from("/ok"),
            }]
        );
    }

    #[test]
    fn mountinfo_fields() {
        let entries = parse_mountinfo(
            "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
             41 31 0:38 /docker/abc /sys/fs/cgroup rw,nosuid shared:4 master:1 - cgroup2 cgroup2 rw,nsdelegate\n\
             50 22 0:40 / /mnt/with\\040space\\134 rw - tmpfs  rw\n",
        );
        assert_eq!(
            entries,
            vec![
                MountEntry {
                    root: PathBuf::from("/"),
                    mount_point: PathBuf::from("/sys/fs/cgroup/cpu"),
                    fs_type: "cgroup".to_owned(),
                    super_options: vec!["rw".to_owned(), "cpu".to_owned()],
                },
                MountEntry {
                    root: PathBuf::from("/docker/abc"),
                    mount_point: PathBuf::from("/sys/fs/cgroup"),
                    fs_type: "cgroup2".to_owned(),
                    super_options: vec!["rw".to_owned(), "nsdelegate".to_owned()],
                },
                MountEntry {
                    root: PathBuf::from("/"),
                    mount_point: PathBuf::from("/mnt/with space\\"),
                    fs_type: "tmpfs".to_owned(),
                    super_options: vec!["rw".to_owned()],
                },
            ]
        );
    }

    #[test]
    fn mountinfo_escapes_that_are_not_octal_stay_literal() {
        let entries = parse_mountinfo("1 1 0:1 / /a\\9b\\777\\04 rw - tmpfs tmpfs rw\n");
        assert_eq!(entries[0].mount_point, PathBuf::from("/a\\9b\\777\\04"));
    }

    #[test]
    fn mountinfo_skips_malformed_lines() {
        let entries = parse_mountinfo(
            "garbage\n\
             1 1 0:1 / /no-separator rw cgroup cgroup rw\n\
             1 1 0:1 / - tmpfs tmpfs rw\n\
             1 1 0:1 / /short rw - cgroup2\n\
             \n\
             34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n",
        );
        assert_eq!(entries.len(), 1);
        assert_eq!(
            entries[0].mount_point,
            PathBuf::from("/sys/fs/cgroup/cpuset")
        );
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
}
