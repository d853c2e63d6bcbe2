//! The memory side of `workers = "auto"`: the parsers of the cgroup memory limit files and of a
//! process's size in `/proc`, the arithmetic of how many workers fit, and the sentence that
//! says which limit won. Pure except [`process_size_under`], which reads one process's files.
//!
//! The rule: with a limit of L bytes, a master of M bytes and workers measured at W bytes each,
//! `floor((L - M) / (1.25 × W))` workers fit, at least 1. The quarter on top of each worker is
//! headroom for what a worker grows by after it reported ready (its first requests, caches,
//! copy-on-write pages of a preloaded master that reference counting dirties).

use std::path::{Path, PathBuf};
use std::{fmt, fs, io};

use super::{CpuBudget, ParseError};

/// A v1 limit at or above this is the kernel's "no limit" (it writes `PAGE_COUNTER_MAX` pages,
/// 9223372036854771712 bytes with 4 KiB pages), whatever the page size.
const V1_UNLIMITED: u64 = 1 << 62;

/// Parses cgroup v2 `memory.max` or `memory.high` (`max`, or bytes) and v1
/// `memory.limit_in_bytes` (bytes; a value near `i64::MAX` means no limit): `Ok(None)` for no
/// limit.
pub fn parse_memory_limit(text: &str) -> Result<Option<u64>, ParseError> {
    let text = text.trim();
    if text == "max" {
        return Ok(None);
    }
    let bytes: u64 = text.parse().map_err(|_| ParseError::Memory)?;
    Ok((bytes < V1_UNLIMITED).then_some(bytes))
}

/// A cgroup memory limit and where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryLimit {
    /// The limit, in bytes.
    pub bytes: u64,
    /// The file that set it: `memory.max`, `memory.high` or `memory.limit_in_bytes`.
    pub file: &'static str,
    /// The cgroup directory it was read in, as the process sees it.
    pub dir: PathBuf,
}

/// How a process's size was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeMeasure {
    /// Proportional set size (`/proc/PID/smaps_rollup`): its private pages plus its share of
    /// the pages it shares, which is what one more such process costs.
    Pss,
    /// Resident set size (`VmRSS` in `/proc/PID/status`), where `smaps_rollup` cannot be read
    /// (kernels before 4.14): counts shared pages in full, so it overestimates.
    Rss,
}

impl fmt::Display for SizeMeasure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SizeMeasure::Pss => "PSS",
            SizeMeasure::Rss => "RSS",
        })
    }
}

/// A process's memory, in bytes, and how it was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessSize {
    /// The size, in bytes.
    pub bytes: u64,
    /// PSS, or RSS where PSS cannot be read.
    pub measure: SizeMeasure,
}

/// The value of a `Key:   1234 kB` line of a `/proc` file, in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?.trim();
        let kib: u64 = value.strip_suffix("kB")?.trim().parse().ok()?;
        kib.checked_mul(1024)
    })
}

/// The `Pss:` line of `/proc/PID/smaps_rollup`, in bytes.
pub fn parse_smaps_rollup(text: &str) -> Option<u64> {
    kib_field(text, "Pss")
}

/// The `VmRSS:` line of `/proc/PID/status`, in bytes.
pub fn parse_status_rss(text: &str) -> Option<u64> {
    kib_field(text, "VmRSS")
}

/// Why a process's size could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unmeasured {
    /// The process has exited but is not reaped yet: its `/proc` directory is there but holds
    /// no memory (`smaps_rollup` fails with `ESRCH`, `status` has no `VmRSS`).
    Exited,
    /// Its `/proc` directory is not there: the process is gone, or `/proc` hides it (mounted
    /// with `hidepid=invisible`).
    Missing,
    /// A file of it could not be read (`/proc` mounted with `hidepid=noaccess`, …): which, and
    /// the error.
    Unreadable(String),
}

impl fmt::Display for Unmeasured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unmeasured::Exited => f.write_str("it exited before it could be measured"),
            Unmeasured::Missing => f.write_str("its /proc directory is not there"),
            Unmeasured::Unreadable(why) => f.write_str(why),
        }
    }
}

/// The size of process `pid` (this process for `None`), with `/proc` looked up under `root`:
/// its PSS, or its RSS where `smaps_rollup` cannot be read; the reason when neither can.
pub fn process_size_under(root: &Path, pid: Option<u32>) -> Result<ProcessSize, Unmeasured> {
    let dir = PathBuf::from(match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    });
    let read = |file: &str| {
        let path = dir.join(file);
        fs::read(root.join(path.strip_prefix("/").unwrap_or(&path)))
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .map_err(|err| (path, err))
    };
    match read("smaps_rollup") {
        Ok(text) => {
            if let Some(bytes) = parse_smaps_rollup(&text) {
                return Ok(ProcessSize {
                    bytes,
                    measure: SizeMeasure::Pss,
                });
            }
        }
        Err((_, err)) if err.raw_os_error() == Some(libc::ESRCH) => return Err(Unmeasured::Exited),
        // Kernels before 4.14 have no smaps_rollup: the status file is the fallback.
        Err(_) => {}
    }
    match read("status") {
        Ok(text) => parse_status_rss(&text)
            .map(|bytes| ProcessSize {
                bytes,
                measure: SizeMeasure::Rss,
            })
            .ok_or(Unmeasured::Exited),
        Err((_, err)) if err.kind() == io::ErrorKind::NotFound => Err(Unmeasured::Missing),
        Err((path, err)) => Err(Unmeasured::Unreadable(format!("{}: {err}", path.display()))),
    }
}

/// How many workers of `worker` bytes fit in `limit` bytes beside a master of `master` bytes,
/// each counted 1.25 × its size: at least 1, at most 1024 (`server.workers`' own limit).
pub fn workers_fitting(limit: u64, worker: u64, master: u64) -> usize {
    let room = u128::from(limit.saturating_sub(master));
    // 1.25 × worker, kept in integers: room / (5/4 × worker) = 4 × room / (5 × worker).
    let each = 5 * u128::from(worker);
    if each == 0 {
        return 1024;
    }
    let fits = 4 * room / each;
    usize::try_from(fits).unwrap_or(usize::MAX).clamp(1, 1024)
}

/// How the `workers` key asks for the count.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkerRule {
    /// A number set in the config or on the command line: never capped.
    Fixed(usize),
    /// `"auto"`, with what the CPUs give.
    Auto(CpuBudget),
}

/// What the worker count is worked out from: the rule, and the cgroup memory limit, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct Sizing {
    /// Fixed, or auto with its CPU budget.
    pub rule: WorkerRule,
    /// The tightest cgroup memory limit over this process's cgroup and its ancestors.
    pub memory: Option<MemoryLimit>,
}

/// The sizes the memory cap is worked out from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measured {
    /// What one worker costs: the first worker's size after it imported the application, or
    /// the preloading master's.
    pub worker: ProcessSize,
    /// The master's own size, which the workers share the limit with.
    pub master: ProcessSize,
}

/// A worker count, why, and what the operator should hear about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// How many workers to run.
    pub workers: usize,
    /// For the `workers: N (...)` line, e.g. `auto: 2 cpus would give 5, but memory.max
    /// 1.5 GiB at /sys/fs/cgroup/app fits 3 workers of ~410 MiB; 2 cpus in affinity; no cgroup
    /// cpu limit`.
    pub explanation: String,
    /// Set when a fixed count will not fit in the memory limit.
    pub warning: Option<String>,
}

/// What `workers = N` says it was decided by.
pub const FIXED_EXPLANATION: &str = "set in the config or on the command line";

impl Sizing {
    /// Whether a worker's size is needed to decide: there is a memory limit to weigh it
    /// against.
    pub fn weighs_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// The count, without a measurement when `measured` is `None` (then a memory limit only
    /// shows in the explanation).
    pub fn decide(&self, measured: Option<Measured>) -> Decision {
        let fits = match (&self.memory, measured) {
            (Some(limit), Some(measured)) => Some(Fit::new(limit, measured)),
            _ => None,
        };
        match &self.rule {
            WorkerRule::Fixed(n) => Decision {
                workers: *n,
                explanation: FIXED_EXPLANATION.to_owned(),
                warning: fits.filter(|fit| fit.workers < *n).map(|fit| {
                    format!(
                        "workers = {n} may not fit: {fit} (each counted 1.25 ×, beside the \
                         master's ~{}); a fixed count is never lowered",
                        size_phrase(fit.master)
                    )
                }),
            },
            WorkerRule::Auto(budget) => {
                let detail = budget.explanation.trim_start_matches("auto: ");
                let (workers, explanation) = match (fits, &self.memory) {
                    (Some(fit), _) if fit.workers < budget.workers => (
                        fit.workers,
                        format!(
                            "auto: {} would give {}, but {fit}; {detail}",
                            super::cpus_phrase(budget.cpus),
                            budget.workers
                        ),
                    ),
                    (Some(fit), _) => (budget.workers, format!("auto: {detail}; {fit}")),
                    (None, Some(limit)) => (
                        budget.workers,
                        format!(
                            "auto: {detail}; {} {} at {} not weighed: no worker measured",
                            limit.file,
                            size_phrase(limit.bytes),
                            limit.dir.display()
                        ),
                    ),
                    (None, None) => (budget.workers, budget.explanation.clone()),
                };
                Decision {
                    workers,
                    explanation,
                    warning: None,
                }
            }
        }
    }

    /// The count to start with while the first worker is measured: one for `auto` (more could
    /// already be too many), the fixed count otherwise.
    pub fn before_measurement(&self) -> Decision {
        match (&self.rule, &self.memory) {
            (WorkerRule::Auto(budget), Some(limit)) => Decision {
                workers: 1,
                explanation: format!(
                    "auto: {} would give {}; {} {} at {}: starting one worker to measure \
                     what the application needs",
                    super::cpus_phrase(budget.cpus),
                    budget.workers,
                    limit.file,
                    size_phrase(limit.bytes),
                    limit.dir.display()
                ),
                warning: None,
            },
            _ => self.decide(None),
        }
    }
}

/// How many workers a memory limit holds, for the decision and its sentence.
struct Fit<'a> {
    limit: &'a MemoryLimit,
    worker: u64,
    /// Named when it is not PSS.
    measure: SizeMeasure,
    master: u64,
    workers: usize,
}

impl<'a> Fit<'a> {
    fn new(limit: &'a MemoryLimit, measured: Measured) -> Self {
        let (worker, master) = (measured.worker.bytes, measured.master.bytes);
        Fit {
            limit,
            worker,
            measure: measured.worker.measure,
            master,
            workers: workers_fitting(limit.bytes, worker, master),
        }
    }
}

impl fmt::Display for Fit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} at {} fits {} worker{} of ~{}{}",
            self.limit.file,
            size_phrase(self.limit.bytes),
            self.limit.dir.display(),
            self.workers,
            if self.workers == 1 { "" } else { "s" },
            size_phrase(self.worker),
            match self.measure {
                SizeMeasure::Pss => "",
                SizeMeasure::Rss => " (RSS)",
            }
        )
    }
}

/// "1.5 GiB", "410 MiB", "64 KiB": the largest binary unit the size reaches, with one decimal
/// below 10 of it (none when it is whole).
pub fn size_phrase(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    let Some((unit, size)) = UNITS.into_iter().find(|(_, size)| bytes >= *size) else {
        return format!("{bytes} B");
    };
    let value = bytes as f64 / size as f64;
    let number = if value < 10.0 {
        let fixed = format!("{value:.1}");
        fixed.trim_end_matches(".0").to_owned()
    } else {
        format!("{value:.0}")
    };
    format!("{number} {unit}")
}
