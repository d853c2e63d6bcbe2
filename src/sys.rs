//! The OS edge: fork, wait, kill, signal masks, listening sockets, CPU affinity, rlimits and
//! `sd_notify`. Every `unsafe` block of the crate lives here, each with the invariant it relies on.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Which side of a fork this process is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The original process; the child's pid.
    Parent(u32),
    /// The new process.
    Child,
}

/// Forks the process.
///
/// The caller must be single-threaded: the master never starts a thread, which is what makes
/// this safe to call from it.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the master is single-threaded (it never spawns a thread), so no other thread can
    // hold a lock, be mid-allocation or own state the child would inherit half-updated; the
    // child only runs async-signal-safe work until it has rebuilt its own state.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child.as_raw() as u32)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// Every signal blocked for the life of the guard; the previous mask comes back with
/// [`SignalsBlocked::restore`].
///
/// The master blocks signals around `fork` so that a signal sent to a brand-new worker waits
/// until the worker has installed its own handlers, instead of running the master's.
#[derive(Debug)]
pub struct SignalsBlocked {
    previous: SigSet,
}

/// Blocks every signal that can be blocked.
pub fn block_signals() -> io::Result<SignalsBlocked> {
    let mut previous = SigSet::empty();
    nix::sys::signal::sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut previous),
    )
    .map_err(io::Error::from)?;
    Ok(SignalsBlocked { previous })
}

impl SignalsBlocked {
    /// Restores the mask that was in place before; pending signals are delivered now.
    pub fn restore(self) -> io::Result<()> {
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.previous), None)
            .map_err(io::Error::from)
    }
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitHow {
    /// It called `exit` with this code.
    Code(i32),
    /// A signal ended it.
    Signal {
        /// The signal's number.
        signal: i32,
        /// Whether it left a core dump.
        core_dumped: bool,
    },
}

impl std::fmt::Display for ExitHow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ExitHow::Code(code) => write!(f, "exited with code {code}"),
            ExitHow::Signal {
                signal,
                core_dumped,
            } => {
                let name = Signal::try_from(signal)
                    .map(|s| s.as_str())
                    .unwrap_or("an unknown signal");
                write!(f, "was killed by {name}")?;
                if core_dumped {
                    write!(f, " (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

/// Reaps one exited child without blocking; `None` when no child has exited (or none exist).
pub fn reap_child() -> io::Result<Option<(u32, ExitHow)>> {
    loop {
        match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                return Ok(Some((pid.as_raw() as u32, ExitHow::Code(code))));
            }
            Ok(WaitStatus::Signaled(pid, signal, core_dumped)) => {
                return Ok(Some((
                    pid.as_raw() as u32,
                    ExitHow::Signal {
                        signal: signal as i32,
                        core_dumped,
                    },
                )));
            }
            // Stops and continues are not exits; keep looking for one that is.
            Ok(WaitStatus::Stopped(..)) | Ok(WaitStatus::Continued(..)) => continue,
            Ok(_) => return Ok(None),
            Err(Errno::ECHILD) => return Ok(None),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Sends `signal` to the process `pid`. A process that is already gone is not an error.
pub fn send_signal(pid: u32, signal: Signal) -> io::Result<()> {
    let Ok(raw) = i32::try_from(pid) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "pid out of range",
        ));
    };
    match nix::sys::signal::kill(Pid::from_raw(raw), signal) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

/// How many CPUs the process may run on, from its affinity mask.
pub fn affinity_cpus() -> usize {
    match nix::sched::sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .count()
            .max(1),
        Err(_) => std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1),
    }
}

/// Names the calling thread (what `ps -L`, `top -H` and `/proc/PID/comm` show); Linux keeps the
/// first 15 bytes. For the main thread that is the process's name.
pub fn set_thread_name(name: &str) {
    let truncated: String = name.chars().filter(|&c| c != '\0').take(15).collect();
    if let Ok(name) = CString::new(truncated) {
        // A failure only leaves the old name; nothing depends on it.
        let _ = nix::sys::prctl::set_name(&name);
    }
}

/// Raises the soft limit on open files to the hard limit, so `max_connections` is not capped by
/// a low default; returns the new soft limit.
pub fn raise_open_files_limit() -> io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
        return Ok(hard);
    }
    Ok(soft)
}

/// A non-blocking, close-on-exec pipe: `(read end, write end)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
        .map_err(io::Error::from)
}

/// Opens a non-blocking TCP listener with `SO_REUSEADDR` and the given backlog. IPv6 sockets are
/// IPv6-only, so `[::]:80` and `0.0.0.0:80` can be bound side by side.
pub fn bind_tcp(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    socket::setsockopt(&fd, socket::sockopt::ReuseAddr, &true)?;
    if addr.is_ipv6() {
        socket::setsockopt(&fd, socket::sockopt::Ipv6V6Only, &true)?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    socket::listen(&fd, backlog_of(backlog)?)?;
    Ok(std::net::TcpListener::from(fd))
}

/// Opens a non-blocking Unix stream listener at `path`.
///
/// A socket file left by a server that is gone (connecting to it is refused) is replaced; one
/// with a live server behind it is refused with `AddrInUse`, and a file that is not a socket is
/// never removed.
pub fn bind_unix(path: &Path, backlog: u32) -> io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            ));
        }
        match UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another server is listening on it",
                ));
            }
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)?;
            }
            Err(err) => return Err(err),
        }
    }
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    socket::bind(fd.as_raw_fd(), &socket::UnixAddr::new(path)?)?;
    socket::listen(&fd, backlog_of(backlog)?)?;
    Ok(UnixListener::from(fd))
}

fn backlog_of(backlog: u32) -> io::Result<Backlog> {
    i32::try_from(backlog)
        .ok()
        .and_then(|n| Backlog::new(n).ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "backlog out of range"))
}

/// Sends `state` (e.g. `READY=1`) to the service manager named by `$NOTIFY_SOCKET`.
///
/// Returns `false` when no service manager is listening (the variable is unset), so callers can
/// call it unconditionally. A name starting with `@` is an abstract socket.
pub fn sd_notify(state: &str) -> io::Result<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let target = target.to_string_lossy().into_owned();
    let socket = UnixDatagram::unbound()?;
    if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), &target)?;
    }
    Ok(true)
}

/// Ends the process at once with `code`, without running destructors or flushing stdio
/// buffers the child may share with its parent. For a worker whose work is done.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and takes no pointers; skipping destructors is the
    // point (they would act on state inherited from the master, such as its listening sockets
    // or pending log buffers).
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_counts_at_least_one_cpu() {
        assert!(affinity_cpus() >= 1);
    }

    #[test]
    fn bind_tcp_gives_a_working_listener() {
        let listener = bind_tcp("127.0.0.1:0".parse().unwrap(), 16).expect("bind");
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        std::net::TcpStream::connect(addr).expect("connect");
    }

    #[test]
    fn bind_unix_replaces_a_stale_socket_and_refuses_a_live_one() {
        let dir = std::env::temp_dir().join(format!("tine-sys-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let live = bind_unix(&path, 16).expect("first bind");
        let err = bind_unix(&path, 16).expect_err("live socket must be refused");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(live);
        // The file stays behind after the listener closes: a stale socket.
        assert!(path.exists());
        let again = bind_unix(&path, 16).expect("stale socket replaced");
        drop(again);
        std::fs::write(dir.join("plain"), b"x").unwrap();
        assert!(bind_unix(&dir.join("plain"), 16).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
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

    #[test]
    fn sd_notify_without_a_socket_is_a_no_op() {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            assert!(!sd_notify("READY=1").unwrap());
        }
    }
}
