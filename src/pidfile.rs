//! The pid file: written atomically once the listeners are bound, refused when a live process
//! already holds it, replaced when its process is gone, and removed when the master exits.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::sys;

/// A pid file this process wrote; dropping it removes the file if it still names us.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    pid: u32,
    /// The master this one replaced in an upgrade: if it still runs when this one exits (the
    /// upgrade failed), the file goes back to it.
    predecessor: Option<u32>,
}

/// Why the pid file could not be written.
#[derive(Debug)]
pub enum PidfileError {
    /// It names a process that is still running.
    Held {
        /// The file.
        path: PathBuf,
        /// The live process it names.
        pid: u32,
    },
    /// Reading or writing it failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

impl fmt::Display for PidfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PidfileError::Held { path, pid } => write!(
                f,
                "pid file {} names pid {pid}, which is running: is another tine using it?",
                path.display()
            ),
            PidfileError::Io { path, source } => write!(
                f,
                "could not write pid file {}: {}",
                path.display(),
                crate::text::describe_io(source)
            ),
        }
    }
}

impl std::error::Error for PidfileError {}

impl Pidfile {
    /// Writes this process's pid to `path`, through a temporary file and a rename so no reader
    /// ever sees a half-written file.
    /// `predecessor` is the master this one replaces in a binary upgrade: its pid in the file
    /// is taken over, not refused.
    pub fn create(path: &Path, predecessor: Option<u32>) -> Result<Pidfile, PidfileError> {
        let io_error = |source| PidfileError::Io {
            path: path.to_owned(),
            source,
        };
        // Absolute, so removal still finds it after `chdir`.
        let path = std::path::absolute(path).map_err(io_error)?;
        let pid = std::process::id();
        match read_pid_file(&path) {
            Ok(text) => {
                if let Ok(old) = text.trim().parse::<u32>()
                    && old != pid
                    && Some(old) != predecessor
                    && sys::process_exists(old)
                {
                    return Err(PidfileError::Held { path, pid: old });
                }
                // Unparsable, ours, or its process is gone: a stale file to replace.
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_error(err)),
        }
        write_atomically(&path, pid).map_err(io_error)?;
        Ok(Pidfile {
            path,
            pid,
            predecessor,
        })
    }

    /// The file's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file names `pid`.
    fn names(&self, pid: u32) -> io::Result<bool> {
        Ok(read_pid_file(&self.path)?.trim() == pid.to_string())
    }

    /// Writes this process's pid back when the file names `successor`, a new master that
    /// failed or was given up on (binary upgrade): one killed before it could clean up leaves
    /// its own pid behind, and `kill -HUP $(cat pidfile)` would then miss the master that still
    /// serves. Returns whether the file was rewritten.
    pub fn reclaim_from(&self, successor: u32) -> io::Result<bool> {
        let names_successor = match self.names(successor) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => false,
            named => named?,
        };
        if names_successor {
            write_atomically(&self.path, self.pid)?;
        }
        Ok(names_successor)
    }
}

/// The most of a pid file that is read: a pid and a newline, with room to spare.
const PID_FILE_READ_LIMIT: u64 = 64;

/// The text of the pid file at `path`, read as root may in a directory others can write: never
/// through a symbolic link, never waiting on a FIFO, at most [`PID_FILE_READ_LIMIT`] bytes. A
/// link, or anything but a regular file, reads as empty (no pid: not a live master's file);
/// [`write_atomically`] replaces it by its name.
fn read_pid_file(path: &Path) -> io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(err) if err.raw_os_error() == Some(libc::ELOOP) => return Ok(String::new()),
        Err(err) => return Err(err),
    };
    if !file.metadata()?.is_file() {
        return Ok(String::new());
    }
    let mut text = String::new();
    file.take(PID_FILE_READ_LIMIT).read_to_string(&mut text)?;
    Ok(text)
}

/// Writes `pid` to `path` through a temporary file and a rename, so no reader ever sees a
/// half-written file.
///
/// The pid file's directory may be writable by others (`/run/tine` given to the workers' user),
/// so the temporary is never written through what someone planted at its name: whatever is
/// there (a stale temporary, a symbolic link to a system file) is unlinked, and the new one is
/// created with `O_CREAT | O_EXCL | O_NOFOLLOW`, which fails rather than follow a link put back
/// in between. The rename replaces a link at `path` itself, never what it points to.
fn write_atomically(path: &Path, pid: u32) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut temporary = path.to_owned().into_os_string();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = PathBuf::from(temporary);
    match std::fs::remove_file(&temporary) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temporary)
        .and_then(|mut file| file.write_all(format!("{pid}\n").as_bytes()));
    written
        .and_then(|()| std::fs::rename(&temporary, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        // Only our own: a successor may already have written its pid here.
        if !self.names(self.pid).unwrap_or(false) {
            return;
        }
        match self.predecessor.filter(|&old| sys::process_exists(old)) {
            Some(old) => {
                let _ = write_atomically(&self.path, old);
            }
            None => {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tine-pidfile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn written_then_removed() {
        let dir = temp_dir("plain");
        let path = dir.join("tine.pid");
        let pidfile = Pidfile::create(&path, None).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        drop(pidfile);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stale_file_is_replaced_and_a_live_one_refused() {
        let dir = temp_dir("stale");
        let path = dir.join("tine.pid");
        // No process has pid u32::MAX - 1: stale.
        std::fs::write(&path, format!("{}\n", u32::MAX - 1)).unwrap();
        let pidfile = Pidfile::create(&path, None).expect("stale file replaced");
        drop(pidfile);
        std::fs::write(&path, "not a pid\n").unwrap();
        drop(Pidfile::create(&path, None).expect("garbage replaced"));
        // pid 1 always runs.
        std::fs::write(&path, "1\n").unwrap();
        match Pidfile::create(&path, None) {
            Err(PidfileError::Held { pid: 1, .. }) => {}
            other => panic!("expected Held, got {other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n", "left alone");
        let taken = Pidfile::create(&path, Some(1)).expect("a predecessor's file is taken over");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(taken);
        // The predecessor (pid 1) still runs: the file goes back to it.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_successors_pid_is_replaced_and_no_other() {
        let dir = temp_dir("reclaim");
        let path = dir.join("tine.pid");
        let ours = Pidfile::create(&path, None).unwrap();
        let me = std::process::id();
        // A successor that wrote its pid, then died without cleaning up.
        std::fs::write(&path, "4000000\n").unwrap();
        assert!(
            !ours.reclaim_from(4000001).unwrap(),
            "another pid is left alone"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "4000000\n");
        assert!(ours.reclaim_from(4000000).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{me}\n"));
        // Gone altogether: nothing to reclaim, nothing written.
        std::fs::remove_file(&path).unwrap();
        assert!(!ours.reclaim_from(4000000).unwrap());
        assert!(!path.exists());
        drop(ours);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_temporary_is_never_written_through_what_was_planted_at_its_name() {
        let dir = temp_dir("planted");
        let path = dir.join("tine.pid");
        let temporary = dir.join(format!("tine.pid.{}.tmp", std::process::id()));
        // A link to a file that stands in for /etc/ld.so.preload.
        let target = dir.join("ld.so.preload");
        std::fs::write(&target, "precious\n").unwrap();
        std::os::unix::fs::symlink(&target, &temporary).unwrap();
        let pidfile = Pidfile::create(&path, None).expect("written beside the link");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
        let me = format!("{}\n", std::process::id());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), me);
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert!(!temporary.exists() && std::fs::symlink_metadata(&temporary).is_err());
        // A stale temporary (a regular file) is replaced too.
        std::fs::write(&temporary, "junk").unwrap();
        assert!(pidfile.reclaim_from(std::process::id()).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), me);
        drop(pidfile);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_fifo_planted_at_the_pid_file_is_never_waited_for() {
        // The workers' user, who can write the pid file's directory, puts a FIFO at its name:
        // root reading it would wait for a writer for ever, at start, when an upgrade is given
        // up (the master's loop stalls) and at exit.
        let dir = temp_dir("fifo");
        let path = dir.join("tine.pid");
        let plant = |path: &Path| {
            let _ = std::fs::remove_file(path);
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        };
        plant(&path);
        let (done, finished) = std::sync::mpsc::channel();
        let fifo = path.clone();
        std::thread::spawn(move || {
            let pidfile = Pidfile::create(&fifo, None).expect("a FIFO is no live pid file");
            let written = std::fs::read_to_string(&fifo).unwrap();
            plant(&fifo);
            let reclaimed = pidfile.reclaim_from(1).expect("a FIFO names no successor");
            drop(pidfile);
            let left = std::fs::symlink_metadata(&fifo).unwrap().file_type();
            done.send((written, reclaimed, left)).unwrap();
        });
        let (written, reclaimed, left) = finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("root waited on the FIFO planted at the pid file");
        assert_eq!(written, format!("{}\n", std::process::id()));
        assert!(!reclaimed);
        use std::os::unix::fs::FileTypeExt;
        assert!(left.is_fifo(), "not ours: left where it is");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_successors_file_is_not_removed() {
        let dir = temp_dir("successor");
        let path = dir.join("tine.pid");
        let pidfile = Pidfile::create(&path, None).unwrap();
        std::fs::write(&path, "1\n").unwrap();
        drop(pidfile);
        assert!(path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
