//! Unit tests of the memory side of `workers = "auto"`: the limit files over fixture cgroup
//! trees, a process's size from fixture `/proc` files, the arithmetic, and the sentences.

use super::{TempTree, v1_separate_tree, v2_tree};
use crate::cpu::*;
use std::path::PathBuf;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn limit(bytes: u64, file: &'static str, dir: &str) -> MemoryLimit {
    MemoryLimit {
        bytes,
        file,
        dir: PathBuf::from(dir),
    }
}

#[test]
fn memory_limit_files_parse() {
    assert_eq!(parse_memory_limit("max\n"), Ok(None));
    assert_eq!(parse_memory_limit("1610612736\n"), Ok(Some(1536 * MIB)));
    assert_eq!(parse_memory_limit("0"), Ok(Some(0)));
    // v1's "no limit" with 4 KiB pages, and with 64 KiB pages.
    assert_eq!(parse_memory_limit("9223372036854771712"), Ok(None));
    assert_eq!(parse_memory_limit("9223372036854710272"), Ok(None));
    for text in [
        "",
        "abc",
        "-1",
        "1.5G",
        "1G",
        "max 100",
        "18446744073709551616",
    ] {
        assert_eq!(
            parse_memory_limit(text),
            Err(ParseError::Memory),
            "{text:?}"
        );
    }
}

#[test]
fn v2_memory_max_and_the_lower_high() {
    let tree = v2_tree("v2_memory", "/app");
    tree.write("/sys/fs/cgroup/app/memory.max", "1610612736\n");
    tree.write("/sys/fs/cgroup/app/memory.high", "max\n");
    assert_eq!(
        detect_memory_under(&tree.root),
        Some(limit(1536 * MIB, "memory.max", "/sys/fs/cgroup/app"))
    );
    tree.write("/sys/fs/cgroup/app/memory.high", "1073741824\n");
    assert_eq!(
        detect_memory_under(&tree.root),
        Some(limit(GIB, "memory.high", "/sys/fs/cgroup/app"))
    );
    // On a tie memory.max is named.
    tree.write("/sys/fs/cgroup/app/memory.high", "1610612736\n");
    assert_eq!(
        detect_memory_under(&tree.root).map(|limit| limit.file),
        Some("memory.max")
    );
}

#[test]
fn v2_memory_parent_is_tighter() {
    let tree = v2_tree("v2_memory_parent", "/slice/app");
    tree.write("/sys/fs/cgroup/memory.max", "max\n");
    tree.write("/sys/fs/cgroup/slice/memory.max", "1073741824\n");
    tree.write("/sys/fs/cgroup/slice/app/memory.max", "8589934592\n");
    tree.write("/sys/fs/cgroup/slice/app/memory.high", "max\n");
    assert_eq!(
        detect_memory_under(&tree.root),
        Some(limit(GIB, "memory.max", "/sys/fs/cgroup/slice"))
    );
}

#[test]
fn v2_memory_max_everywhere_is_no_limit() {
    let tree = v2_tree("v2_memory_none", "/app");
    tree.write("/sys/fs/cgroup/app/memory.max", "max\n");
    tree.write("/sys/fs/cgroup/app/memory.high", "max\n");
    assert_eq!(detect_memory_under(&tree.root), None);
}

#[test]
fn v1_memory_limit_in_bytes() {
    let tree = v1_separate_tree("v1_memory", "/system.slice/tine.service");
    tree.write(
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "9223372036854771712\n",
    );
    tree.write(
        "/sys/fs/cgroup/memory/system.slice/tine.service/memory.limit_in_bytes",
        "2147483648\n",
    );
    // The unified mount's files do not count: memory is bound to the v1 hierarchy.
    tree.write(
        "/sys/fs/cgroup/unified/system.slice/tine.service/memory.max",
        "1048576\n",
    );
    assert_eq!(
        detect_memory_under(&tree.root),
        Some(limit(
            2 * GIB,
            "memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/system.slice/tine.service"
        ))
    );
}

#[test]
fn v1_memory_unlimited_and_missing_files_are_no_limit() {
    let tree = v1_separate_tree("v1_memory_none", "/app");
    assert_eq!(detect_memory_under(&tree.root), None, "no files at all");
    tree.write(
        "/sys/fs/cgroup/memory/app/memory.limit_in_bytes",
        "9223372036854771712\n",
    );
    tree.write("/sys/fs/cgroup/memory/memory.limit_in_bytes", "garbage\n");
    assert_eq!(detect_memory_under(&tree.root), None);
}

const SMAPS_ROLLUP: &str = "\
55d4c3a00000-7ffd1b9f1000 ---p 00000000 00:00 0                          [rollup]
Rss:              430080 kB
Pss:              419840 kB
Pss_Dirty:        400000 kB
Pss_Anon:         399000 kB
Shared_Clean:      12000 kB
Private_Dirty:    400000 kB
";

#[test]
fn proc_sizes_parse() {
    assert_eq!(parse_smaps_rollup(SMAPS_ROLLUP), Some(410 * MIB));
    assert_eq!(
        parse_status_rss("Name:\tpython\nVmHWM:\t  9000 kB\nVmRSS:\t    2048 kB\n"),
        Some(2 * MIB)
    );
    for text in ["", "Pss: 12", "Pss: x kB", "Pss_Anon: 4 kB", "Rss: 4 kB"] {
        assert_eq!(parse_smaps_rollup(text), None, "{text:?}");
    }
}

#[test]
fn process_size_prefers_pss_and_falls_back_to_rss() {
    let tree = TempTree::new("process_size");
    assert_eq!(
        process_size_under(&tree.root, Some(42)),
        Err(Unmeasured::Missing)
    );
    tree.write("/proc/42/status", "Name:\tpython\nVmRSS:\t 3072 kB\n");
    assert_eq!(
        process_size_under(&tree.root, Some(42)),
        Ok(ProcessSize {
            bytes: 3 * MIB,
            measure: SizeMeasure::Rss
        })
    );
    tree.write("/proc/42/smaps_rollup", SMAPS_ROLLUP);
    assert_eq!(
        process_size_under(&tree.root, Some(42)),
        Ok(ProcessSize {
            bytes: 410 * MIB,
            measure: SizeMeasure::Pss
        })
    );
    tree.write("/proc/self/status", "VmRSS:\t 1024 kB\n");
    assert_eq!(
        process_size_under(&tree.root, None).map(|size| size.bytes),
        Ok(MIB)
    );
}

#[test]
fn process_size_says_why_it_cannot_be_read() {
    let tree = TempTree::new("process_size_why");
    // An exited process not yet reaped: its status has no memory lines.
    tree.write("/proc/7/status", "Name:\tpython\nState:\tZ (zombie)\n");
    assert_eq!(
        process_size_under(&tree.root, Some(7)),
        Err(Unmeasured::Exited)
    );
    // A file that cannot be read (here a directory; hidepid gives EACCES): named, with why.
    tree.write("/proc/8/status/x", "");
    let Err(Unmeasured::Unreadable(why)) = process_size_under(&tree.root, Some(8)) else {
        panic!("an unreadable status file");
    };
    assert!(why.starts_with("/proc/8/status: "), "{why}");
}

#[test]
fn an_exited_child_is_told_from_a_reaped_one() {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("start true");
    let pid = child.id();
    let status = format!("/proc/{pid}/status");
    // Bounded wait for it to exit (a zombie until reaped).
    let zombie = (0..500).any(|_| {
        let state = std::fs::read_to_string(&status).unwrap_or_default();
        if state.contains("State:\tZ") {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        false
    });
    assert!(zombie, "true did not exit within 5 s");
    assert_eq!(process_size(Some(pid)), Err(Unmeasured::Exited));
    child.wait().expect("reap true");
    assert_eq!(process_size(Some(pid)), Err(Unmeasured::Missing));
}

#[test]
fn this_process_has_a_size() {
    let size = process_size(None).expect("/proc/self is readable");
    assert!(size.bytes > 0, "{size:?}");
}

#[test]
fn workers_fitting_table() {
    for (limit, worker, master, fits) in [
        // (1536 - 10) / (1.25 × 410) = 2.98
        (1536 * MIB, 410 * MIB, 10 * MIB, 2),
        // (8192 - 10) / 512.5 = 15.97
        (8 * GIB, 410 * MIB, 10 * MIB, 15),
        // exactly 4 × 1.25 × 100 beside a master of 50
        (550 * MIB, 100 * MIB, 50 * MIB, 4),
        (550 * MIB - 1, 100 * MIB, 50 * MIB, 3),
        // never below one, even when the master alone is over the limit
        (100 * MIB, 410 * MIB, 10 * MIB, 1),
        (10 * MIB, 4 * MIB, 20 * MIB, 1),
        (0, 4 * MIB, 0, 1),
        // and never above server.workers' limit
        (u64::MAX, 1, 0, 1024),
        (GIB, 0, 0, 1024),
    ] {
        assert_eq!(
            workers_fitting(limit, worker, master),
            fits,
            "{limit} {worker} {master}"
        );
    }
}

#[test]
fn sizes_read_well() {
    for (bytes, phrase) in [
        (1536 * MIB, "1.5 GiB"),
        (8 * GIB, "8 GiB"),
        (410 * MIB, "410 MiB"),
        (12 * GIB + 100 * MIB, "12 GiB"),
        (MIB * 13 / 10, "1.3 MiB"),
        (64 * 1024, "64 KiB"),
        (1 << 40, "1 TiB"),
        (512, "512 B"),
    ] {
        assert_eq!(size_phrase(bytes), phrase, "{bytes}");
    }
}

fn two_cpus() -> CpuBudget {
    CpuBudget {
        cpus: 2.0,
        workers: 5,
        explanation: "auto: 2 cpus in affinity; no cgroup cpu limit".to_owned(),
    }
}

fn measured(worker: u64, master: u64) -> Option<Measured> {
    let pss = |bytes| ProcessSize {
        bytes,
        measure: SizeMeasure::Pss,
    };
    Some(Measured {
        worker: pss(worker),
        master: pss(master),
    })
}

fn auto_under(bytes: u64) -> Sizing {
    Sizing {
        rule: WorkerRule::Auto(two_cpus()),
        memory: Some(limit(bytes, "memory.max", "/sys/fs/cgroup/app")),
    }
}

#[test]
fn memory_caps_auto_and_says_so() {
    let decision = auto_under(1536 * MIB).decide(measured(410 * MIB, 10 * MIB));
    assert_eq!(
        decision,
        Decision {
            workers: 2,
            explanation: "auto: 2 cpus would give 5, but memory.max 1.5 GiB at \
                          /sys/fs/cgroup/app fits 2 workers of ~410 MiB; 2 cpus in affinity; \
                          no cgroup cpu limit"
                .to_owned(),
            warning: None,
        }
    );
    let one = auto_under(400 * MIB).decide(measured(410 * MIB, 10 * MIB));
    assert_eq!(one.workers, 1);
    assert!(
        one.explanation.contains("fits 1 worker of ~410 MiB"),
        "{one:?}"
    );
}

#[test]
fn cpus_win_under_a_roomy_limit() {
    let decision = auto_under(8 * GIB).decide(measured(410 * MIB, 10 * MIB));
    assert_eq!(
        decision,
        Decision {
            workers: 5,
            explanation: "auto: 2 cpus in affinity; no cgroup cpu limit; memory.max 8 GiB at \
                          /sys/fs/cgroup/app fits 15 workers of ~410 MiB"
                .to_owned(),
            warning: None,
        }
    );
    // A tie is the cpus' too: the memory does not lower the count.
    let tie = auto_under(5 * 125 * MIB).decide(measured(100 * MIB, 0));
    assert_eq!(tie.workers, 5);
    assert!(
        tie.explanation.starts_with("auto: 2 cpus in affinity"),
        "{tie:?}"
    );
}

#[test]
fn an_rss_measurement_is_named() {
    let mut measured = measured(410 * MIB, 10 * MIB).unwrap();
    measured.worker.measure = SizeMeasure::Rss;
    let decision = auto_under(1536 * MIB).decide(Some(measured));
    assert!(
        decision
            .explanation
            .contains("2 workers of ~410 MiB (RSS);"),
        "{decision:?}"
    );
}

#[test]
fn without_a_measurement_the_cpus_decide() {
    let sizing = auto_under(1536 * MIB);
    assert!(sizing.weighs_memory());
    assert_eq!(
        sizing.decide(None),
        Decision {
            workers: 5,
            explanation: "auto: 2 cpus in affinity; no cgroup cpu limit; memory.max 1.5 GiB at \
                          /sys/fs/cgroup/app not weighed: no worker measured"
                .to_owned(),
            warning: None,
        }
    );
    assert_eq!(
        sizing.before_measurement(),
        Decision {
            workers: 1,
            explanation: "auto: 2 cpus would give 5; memory.max 1.5 GiB at /sys/fs/cgroup/app: \
                          starting one worker to measure what the application needs"
                .to_owned(),
            warning: None,
        }
    );
}

#[test]
fn without_a_limit_nothing_changes() {
    let sizing = Sizing {
        rule: WorkerRule::Auto(two_cpus()),
        memory: None,
    };
    assert!(!sizing.weighs_memory());
    let expected = Decision {
        workers: 5,
        explanation: two_cpus().explanation,
        warning: None,
    };
    assert_eq!(sizing.decide(None), expected);
    assert_eq!(sizing.decide(measured(GIB, GIB)), expected);
    assert_eq!(sizing.before_measurement(), expected);
}

#[test]
fn a_fixed_count_is_never_capped_but_warned_about() {
    let sizing = Sizing {
        rule: WorkerRule::Fixed(8),
        memory: Some(limit(
            1536 * MIB,
            "memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/app",
        )),
    };
    assert_eq!(
        sizing.decide(measured(410 * MIB, 10 * MIB)),
        Decision {
            workers: 8,
            explanation: FIXED_EXPLANATION.to_owned(),
            warning: Some(
                "workers = 8 may not fit: memory.limit_in_bytes 1.5 GiB at \
                 /sys/fs/cgroup/memory/app fits 2 workers of ~410 MiB (each counted 1.25 ×, \
                 beside the master's ~10 MiB); a fixed count is never lowered"
                    .to_owned()
            ),
        }
    );
    let fits = sizing.decide(measured(10 * MIB, 10 * MIB));
    assert_eq!((fits.workers, fits.warning), (8, None));
    assert_eq!(sizing.before_measurement().workers, 8);
    assert_eq!(sizing.decide(None).warning, None);
}
