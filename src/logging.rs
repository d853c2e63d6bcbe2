//! The error log: one line per event, stamped with the UTC time, the level and who wrote it
//! (`master` or `worker N`, with the pid), written to stderr or appended to a file that
//! SIGUSR1 reopens (for logrotate).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use log::LevelFilter;

use crate::text::utc_stamp;

/// 0 for the master, otherwise the worker's slot.
static ROLE: AtomicUsize = AtomicUsize::new(0);
static PID: AtomicU32 = AtomicU32::new(0);

/// Who is writing the log lines of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The supervising process.
    Master,
    /// A worker, by its slot in the master's table (from 1).
    Worker(usize),
}

/// The error log file, when there is one: its path, and the open file lines go to.
static FILE: Mutex<Option<(PathBuf, File)>> = Mutex::new(None);

/// Writes each formatted line to the error log file, or to stderr when there is none.
struct Sink;

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut file = FILE.lock().unwrap_or_else(PoisonError::into_inner);
        match file.as_mut() {
            Some((_, file)) => file.write(buf),
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Opens the log file at `path` for appending, creating it when missing, never through a
/// symbolic link as its last component and only when it is a regular file
/// ([`crate::sys::open_append_regular`]).
fn open_append(path: &Path) -> io::Result<File> {
    crate::sys::open_append_regular(path, crate::sys::LOG_FILE_MODE)
}

/// Opens the log file at `path` as [`open_append`] does and, when `owner` is set, gives the
/// descriptor (never the path) to that user, unless the path is one of the standard streams.
fn open_for(path: &Path, owner: Option<u32>) -> io::Result<File> {
    let file = open_append(path)?;
    if let Some(uid) = owner
        && !crate::sys::is_standard_stream(path)
    {
        crate::sys::give_file(&file, uid)?;
    }
    Ok(file)
}

/// `err` with `path` in front of its message, for a caller that does not know the path (the
/// error log's reopen on SIGUSR1).
fn naming(path: &Path, err: io::Error) -> io::Error {
    io::Error::new(
        err.kind(),
        format!("{}: {}", path.display(), crate::text::describe_io(&err)),
    )
}

/// Sends the error log to `path` (appending) instead of stderr; `None` goes back to stderr.
pub fn set_file(path: Option<&Path>) -> io::Result<()> {
    let opened = match path {
        Some(path) => Some((path.to_owned(), open_append(path)?)),
        None => None,
    };
    *FILE.lock().unwrap_or_else(PoisonError::into_inner) = opened;
    Ok(())
}

/// A new descriptor for where log lines go now (the error log file, or stderr), for a writer
/// that cannot go through this module: Python's `faulthandler`, which must write from a signal
/// handler.
pub fn duplicate_sink() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    let file = FILE.lock().unwrap_or_else(PoisonError::into_inner);
    match file.as_ref() {
        Some((_, file)) => file.as_fd().try_clone_to_owned(),
        None => io::stderr().as_fd().try_clone_to_owned(),
    }
}

/// Reopens the error log file at its path (after logrotate moved it away).
pub fn reopen() -> io::Result<()> {
    reopen_for(None)
}

/// Reopens the error log file, giving it to `owner` (the user workers run as), so workers can
/// reopen it after they dropped privileges. A path that now holds a symbolic link or no regular
/// file is refused, and lines keep going to the file open until now.
pub fn reopen_for(owner: Option<u32>) -> io::Result<()> {
    let mut file = FILE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((path, current)) = file.as_mut() {
        *current = open_for(path, owner).map_err(|err| naming(path, err))?;
    }
    Ok(())
}

/// Creates the log file at `path` if it is missing and gives it to `owner`, so workers that
/// switched to that user can open and reopen it (for the access log, which workers write).
/// The same refusals as [`reopen_for`].
pub fn prepare_file(path: &Path, owner: Option<u32>) -> io::Result<()> {
    open_for(path, owner).map(drop)
}

/// Gives the current error log file to `uid`, so workers running as that user can reopen it.
pub fn give_to(uid: u32) -> io::Result<()> {
    let file = FILE.lock().unwrap_or_else(PoisonError::into_inner);
    match file.as_ref() {
        Some((path, file)) if !crate::sys::is_standard_stream(path) => {
            crate::sys::give_file(file, uid)
        }
        _ => Ok(()),
    }
}

/// Installs the logger for this process and its future children. Calling it twice keeps the
/// first logger and only changes the level.
pub fn init(level: LevelFilter) {
    set_role(Role::Master);
    let installed = env_logger::Builder::new()
        // The global max level below does the filtering, so a reload can change it in place.
        .filter_level(LevelFilter::Trace)
        .filter_module("mio", LevelFilter::Warn)
        .format(|out, record| {
            let mut line = Vec::with_capacity(128);
            write_stamp(&mut line, SystemTime::now());
            let _ = write!(line, " {:<5} ", record.level());
            write_who(&mut line);
            let _ = writeln!(line, ": {}", record.args());
            out.write_all(&line)
        })
        .target(env_logger::Target::Pipe(Box::new(Sink)))
        .try_init()
        .is_ok();
    let _ = installed;
    set_level(level);
}

/// Changes the level of messages that are written.
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// Records who this process is; a worker calls it right after fork.
pub fn set_role(role: Role) {
    let slot = match role {
        Role::Master => 0,
        Role::Worker(slot) => slot,
    };
    ROLE.store(slot, Ordering::Relaxed);
    PID.store(std::process::id(), Ordering::Relaxed);
}

fn write_who(out: &mut Vec<u8>) {
    let pid = PID.load(Ordering::Relaxed);
    let _ = match ROLE.load(Ordering::Relaxed) {
        0 => write!(out, "master[{pid}]"),
        slot => write!(out, "worker {slot}[{pid}]"),
    };
}

/// Writes `2026-11-23T09:30:00.123Z`.
fn write_stamp(out: &mut Vec<u8>, now: SystemTime) {
    out.extend_from_slice(utc_stamp(now).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn stamp_is_rfc3339_utc_with_millis() {
        let mut out = Vec::new();
        write_stamp(
            &mut out,
            UNIX_EPOCH + Duration::from_millis(784_111_777_042),
        );
        assert_eq!(out, b"1994-11-06T08:49:37.042Z");
    }

    #[test]
    fn the_file_is_appended_to_and_reopened() {
        let dir = std::env::temp_dir().join(format!("tine-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("error.log");
        set_file(Some(&path)).unwrap();
        Sink.write_all(b"one\n").unwrap();
        // logrotate moves the file away; lines keep going to it until the reopen.
        let rotated = dir.join("error.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        Sink.write_all(b"two\n").unwrap();
        reopen().unwrap();
        Sink.write_all(b"three\n").unwrap();
        set_file(None).unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn who_names_master_and_workers() {
        set_role(Role::Worker(3));
        let mut out = Vec::new();
        write_who(&mut out);
        assert_eq!(
            out,
            format!("worker 3[{}]", std::process::id()).into_bytes()
        );
        set_role(Role::Master);
        out.clear();
        write_who(&mut out);
        assert_eq!(out, format!("master[{}]", std::process::id()).into_bytes());
    }
}
