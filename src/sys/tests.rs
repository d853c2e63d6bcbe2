//! Tests of the OS wrappers that are not about sockets.

use super::*;
use std::os::unix::net::UnixStream;

#[test]
fn affinity_counts_at_least_one_cpu() {
    assert!(affinity_cpus() >= 1);
}

#[test]
fn shared_memory_is_shared_with_a_child() {
    use std::sync::atomic::Ordering;
    let shared = SharedMemory::new(16).unwrap();
    assert!(
        shared
            .words()
            .iter()
            .all(|w| w.load(Ordering::Relaxed) == 0)
    );
    shared.words()[3].store(7, Ordering::Relaxed);
    assert_eq!(shared.words()[3].load(Ordering::Relaxed), 7);
}

#[test]
fn private_memory_sums_clean_and_dirty() {
    let text = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss: 900 kB\nPss: 500 kB\n\
                Shared_Clean: 100 kB\nPrivate_Clean: 20 kB\nPrivate_Dirty: 300 kB\n";
    assert_eq!(parse_private_memory(text), Some(320 * 1024));
    assert_eq!(parse_private_memory("Rss: 1 kB\n"), None);
    assert!(private_memory().unwrap() > 0);
}

#[test]
fn identities_resolve_names_and_ids() {
    let root = resolve_identity(Some("root"), None).unwrap();
    assert_eq!(root.user.as_ref().map(|u| u.1), Some(0));
    assert_eq!(root.gid, Some(0));
    let by_id = resolve_identity(Some("0"), Some("0")).unwrap();
    assert_eq!(by_id.gid, Some(0));
    let err = resolve_identity(Some("no-such-user-tine"), None).unwrap_err();
    assert_eq!(err, "user \"no-such-user-tine\" does not exist");
    let err = resolve_identity(None, Some("no-such-group-tine")).unwrap_err();
    assert_eq!(err, "group \"no-such-group-tine\" does not exist");
    assert!(resolve_identity(None, None).unwrap().is_unchanged());
}

#[test]
fn sendfile_sends_a_region_and_advances_the_offset() {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    let dir = std::env::temp_dir().join(format!("tine-sendfile-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("data");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(b"0123456789")
        .unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    let mut offset = 3;
    let sent = sendfile(theirs.as_fd(), &file, &mut offset, 4).unwrap();
    assert_eq!((sent, offset), (4, 7));
    let mut offset = 10;
    assert_eq!(sendfile(theirs.as_fd(), &file, &mut offset, 4).unwrap(), 0);
    drop(theirs);
    let mut got = String::new();
    ours.read_to_string(&mut got).unwrap();
    assert_eq!(got, "3456");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn anonymous_temp_files_have_no_name() {
    use std::io::{Read, Seek, Write};
    let mut file = anonymous_temp_file().unwrap();
    file.write_all(b"body").unwrap();
    file.rewind().unwrap();
    let mut back = String::new();
    file.read_to_string(&mut back).unwrap();
    assert_eq!(back, "body");
    let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
    assert!(link.to_string_lossy().ends_with(" (deleted)"), "{link:?}");
}

#[test]
fn this_process_exists() {
    assert!(process_exists(std::process::id()));
    assert!(!process_exists(u32::MAX));
}

#[test]
fn exit_how_reads_well() {
    assert_eq!(ExitHow::Code(3).to_string(), "exited with code 3");
    let killed = ExitHow::Signal {
        signal: libc::SIGKILL,
        core_dumped: false,
    };
    assert_eq!(killed.to_string(), "was killed by SIGKILL");
}

/// A character device like `/dev/null` at `dir/null`, standing in for it (making one needs
/// root, as the tests run).
fn null_device(dir: &Path) -> std::path::PathBuf {
    let device = dir.join("null");
    nix::sys::stat::mknod(
        &device,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .expect("mknod (the tests run as root)");
    device
}

/// A directory of its own under the temp dir, emptied first.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tine-sys-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_log_file_is_opened_only_as_a_regular_file_never_through_a_link() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("append");
    let target = dir.join("ld.so.preload");
    std::fs::write(&target, "precious\n").unwrap();
    let link = dir.join("error.log");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = open_append_regular(&link, 0o640).expect_err("a link is refused");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    let fifo = dir.join("fifo.log");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let err = open_append_regular(&fifo, 0o640).expect_err("a FIFO is refused, not waited on");
    assert!(err.to_string().contains("a FIFO"), "{err}");
    let err = open_append_regular(&dir, 0o640).expect_err("a directory is refused");
    assert!(err.to_string().contains("a directory"), "{err}");
    let device = null_device(&dir);
    let err = open_append_regular(&device, 0o640).expect_err("a device");
    assert!(err.to_string().contains("a device"), "{err}");
    let err = open_append_regular(&dir.join("stdout"), 0o640).map(|_| ());
    assert!(
        err.is_ok(),
        "a file named stdout elsewhere is an ordinary log: {err:?}"
    );
    // A new file: created with at most the mode asked for, and appended to.
    let plain = dir.join("access.log");
    let mut file = open_append_regular(&plain, 0o640).unwrap();
    file.write_all(b"one\n").unwrap();
    let mut again = open_append_regular(&plain, 0o640).unwrap();
    again.write_all(b"two\n").unwrap();
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), "one\ntwo\n");
    let mode = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & !0o640, 0, "{mode:o}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_with_another_name_is_not_given_away() {
    let dir = scratch("give");
    let path = dir.join("error.log");
    let file = open_append_regular(&path, 0o640).unwrap();
    std::fs::hard_link(&path, dir.join("passwd")).unwrap();
    let (uid, _) = current_ids();
    let err = give_file(&file, uid).expect_err("two links");
    assert!(err.to_string().contains("2 hard links"), "{err}");
    std::fs::remove_file(dir.join("passwd")).unwrap();
    give_file(&file, uid).expect("one link: given");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn open_files_count_two_a_connection_the_listeners_and_a_margin() {
    assert_eq!(open_files_needed(1000, 1), 2000 + 1 + SPARE_OPEN_FILES);
    assert_eq!(open_files_needed(1, 3), 2 + 3 + SPARE_OPEN_FILES);
    assert_eq!(open_files_needed(5000, 2), 10_066);
    // The default config (1000 connections, one listener) fits the usual 1024 soft limit only
    // once raised: 2065 is more than 1024.
    assert!(open_files_needed(1000, 1) > 1024);
    assert_eq!(open_files_needed(usize::MAX, usize::MAX), u64::MAX);
}

#[test]
fn the_standard_streams_are_opened_as_they_are_and_never_given_away() {
    use std::os::unix::fs::MetadataExt;
    open_append_regular(Path::new("/dev/null"), 0o640).expect("/dev/null is taken");
    open_append_regular(Path::new("/dev/stderr"), 0o640).expect("/dev/stderr is followed");
    // A device of the test's own stands in for /dev/null, so a mistake cannot give that away.
    let dir = scratch("streams");
    let device = null_device(&dir);
    let opened = std::fs::OpenOptions::new()
        .append(true)
        .open(&device)
        .unwrap();
    give_file(&opened, 65534).expect("a device is left as it is");
    assert_eq!(std::fs::metadata(&device).unwrap().uid(), 0, "still root's");
    std::fs::remove_dir_all(&dir).unwrap();
}
