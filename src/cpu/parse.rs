//! The parsers of the kernel's files that bound the CPUs: cgroup v2 `cpu.max`, v1
//! `cpu.cfs_quota_us` and `cpu.cfs_period_us`, CPU lists like `0-3,6`, `/proc/self/cgroup`
//! and `/proc/self/mountinfo`. Pure: they take the text, never a path. (The memory files'
//! parsers are in `memory.rs`.)

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

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
    /// A memory limit file (`memory.max`, `memory.high`, `memory.limit_in_bytes`) is neither
    /// `max` nor a number of bytes.
    Memory,
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
            ParseError::Memory => "a memory limit is neither \"max\" nor a number of bytes",
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
