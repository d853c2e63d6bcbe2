//! Sockets: listening TCP and Unix sockets, the addresses they are bound to, sockets handed over
//! the systemd way (at start and for a binary upgrade), and `sd_notify`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage};

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
pub fn bind_unix(
    path: &Path,
    backlog: u32,
    mode: Option<u32>,
    owner: Option<(Option<u32>, Option<u32>)>,
) -> io::Result<UnixListener> {
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
    // The mode and owner are never applied through the path after `bind`: whoever can write
    // the socket's directory could put a symbolic link to a system file there in between, and
    // root's chmod or chown would follow it. The mode is given at creation instead: `bind`
    // makes the socket's inode with 0777 less the umask, so the umask is set to the complement
    // of `mode` for that one call (the master has a single thread, so no other file is being
    // created meanwhile). A socket's own descriptor cannot change its file (fchown on it
    // reaches the socket, not the inode in the directory), so the owner is given by `own`.
    let address = socket::UnixAddr::new(path)?;
    match mode {
        Some(mode) => with_umask(!mode & 0o777, || socket::bind(fd.as_raw_fd(), &address))?,
        None => socket::bind(fd.as_raw_fd(), &address)?,
    }
    if let Some((uid, gid)) = owner {
        own(path, uid, gid).inspect_err(|_| {
            let _ = std::fs::remove_file(path);
        })?;
    }
    socket::listen(&fd, backlog_of(backlog)?)?;
    Ok(UnixListener::from(fd))
}

/// Runs `f` with the process's umask set to `mask`, then puts the previous one back.
fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
    use nix::sys::stat::{Mode, umask};
    let previous = umask(Mode::from_bits_truncate(mask as libc::mode_t));
    let result = f();
    umask(previous);
    result
}

/// Gives the socket just bound at `path` to `uid` and `gid` without following a link there.
///
/// The path is opened with `O_PATH | O_NOFOLLOW`, which pins the inode it names now (a
/// symbolic link is opened as itself, never its target), and the checks and the change are
/// made on that descriptor (`fstat`, then `fchownat` with `AT_EMPTY_PATH`), so nothing can be
/// swapped in between. The inode must be a socket, made by this process's user, with one link:
/// a planted link or FIFO, another user's socket or another name of an existing socket
/// (`/run/docker.sock` linked in) is refused. The socket cannot be proven to be the very one
/// `bind` made (its descriptor does not lead to its inode), but what passes is a socket root
/// created in that directory, and owning it gives nothing else.
fn own(path: &Path, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    use nix::fcntl::{AtFlags, OFlag};
    use nix::sys::stat::SFlag;
    let pinned = nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let stat = nix::sys::stat::fstat(&pinned)?;
    let is_socket = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK;
    if !is_socket || stat.st_uid != nix::unistd::geteuid().as_raw() || stat.st_nlink != 1 {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path no longer names the socket just bound (something replaced it), so its \
             owner was not changed",
        ));
    }
    nix::unistd::fchownat(
        &pinned,
        "",
        uid.map(nix::unistd::Uid::from_raw),
        gid.map(nix::unistd::Gid::from_raw),
        AtFlags::AT_EMPTY_PATH,
    )?;
    Ok(())
}

/// The address a socket is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketName {
    /// An IPv4 or IPv6 address and port.
    Tcp(SocketAddr),
    /// A Unix socket's path in the file system.
    Unix(PathBuf),
}

/// The address a listening socket is bound to: TCP or a Unix path (an abstract or unnamed
/// Unix socket is refused).
pub fn socket_local_addr(fd: &OwnedFd) -> io::Result<SocketName> {
    let addr: SockaddrStorage = socket::getsockname(fd.as_raw_fd())?;
    if let Some(v4) = addr.as_sockaddr_in() {
        return Ok(SocketName::Tcp(SocketAddr::from((v4.ip(), v4.port()))));
    }
    if let Some(v6) = addr.as_sockaddr_in6() {
        return Ok(SocketName::Tcp(SocketAddr::from((v6.ip(), v6.port()))));
    }
    if let Some(path) = addr.as_unix_addr().and_then(|u| u.path()) {
        return Ok(SocketName::Unix(path.to_owned()));
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a TCP or Unix path socket",
    ))
}

/// The first file descriptor of a socket-activation hand-over (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: i32 = 3;

/// The environment variable naming the master that started this one for a binary upgrade.
pub const UPGRADE_FROM_ENV: &str = "TINE_UPGRADE_FROM";

/// Listening sockets handed to this process at start.
#[derive(Debug, Default)]
pub struct Inherited {
    /// The sockets, with the names the giver gave them.
    pub fds: Vec<(OwnedFd, Option<String>)>,
    /// The old master's pid, when this process was started by `SIGUSR2`.
    pub upgrade_from: Option<u32>,
}

/// Takes the listening sockets handed over the systemd way (`LISTEN_FDS`, `LISTEN_PID`,
/// `LISTEN_FDNAMES`), with their names, and removes those variables so workers and the
/// application never see them. Nothing is taken unless `LISTEN_PID` is this process, or the
/// old master that started this one for an upgrade (it cannot know the new pid before exec).
pub fn take_listen_fds() -> io::Result<Inherited> {
    use std::os::fd::FromRawFd;
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    let upgrade_from = std::env::var(UPGRADE_FROM_ENV)
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .filter(|&p| p == std::os::unix::process::parent_id());
    for name in [
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        UPGRADE_FROM_ENV,
    ] {
        // SAFETY: called by the master at start-up, before it forks or any thread exists, so
        // nothing can read the environment concurrently.
        unsafe { std::env::remove_var(name) };
    }
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(Inherited {
            fds: Vec::new(),
            upgrade_from,
        });
    };
    let pid = pid.trim().parse::<u32>().ok();
    if pid != Some(std::process::id()) && (pid.is_none() || pid != upgrade_from) {
        return Ok(Inherited {
            fds: Vec::new(),
            upgrade_from,
        });
    }
    let count: i32 = count.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("LISTEN_FDS={count:?} is not a number"),
        )
    })?;
    let names: Vec<String> = names
        .map(|n| n.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut fds = Vec::new();
    for i in 0..count.max(0) {
        let raw = LISTEN_FDS_START + i;
        // Validate before taking ownership: a number that is not an open fd must not become
        // an OwnedFd.
        if nix::fcntl::fcntl(
            // SAFETY: only used for this F_GETFD probe, which does not take ownership.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) },
            nix::fcntl::FcntlArg::F_GETFD,
        )
        .is_err()
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("LISTEN_FDS names fd {raw}, which is not open"),
            ));
        }
        // SAFETY: the protocol hands these fds to this process alone (LISTEN_PID matched), the
        // probe above showed the fd is open, and nothing else in the process owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        let name = names
            .get(i as usize)
            .filter(|n| !n.is_empty())
            .map(|n| unescape_fd_name(n));
        fds.push((fd, name));
    }
    Ok(Inherited { fds, upgrade_from })
}

/// `LISTEN_FDNAMES` separates names with `:`, which addresses contain: escape it (and `%`).
fn escape_fd_name(name: &str) -> String {
    name.replace('%', "%25").replace(':', "%3A")
}

fn unescape_fd_name(name: &str) -> String {
    name.replace("%3A", ":").replace("%25", "%")
}

/// Starts `exe` with `args` as a new master for a binary upgrade, handing it `fds` the
/// socket-activation way: they become fds 3, 4, … in the child, with `LISTEN_FDS` and
/// `LISTEN_FDNAMES` set, `LISTEN_PID` and [`UPGRADE_FROM_ENV`] naming this process. Returns the
/// child's pid.
pub fn spawn_upgrade(
    exe: &Path,
    args: &[std::ffi::OsString],
    dir: Option<&Path>,
    fds: &[(BorrowedFd<'_>, String)],
) -> io::Result<u32> {
    use std::os::unix::process::CommandExt;
    let raw: Vec<i32> = fds.iter().map(|(fd, _)| fd.as_raw_fd()).collect();
    let names: Vec<String> = fds.iter().map(|(_, name)| escape_fd_name(name)).collect();
    let mut command = std::process::Command::new(exe);
    command
        .args(args)
        .env("LISTEN_FDS", raw.len().to_string())
        .env("LISTEN_FDNAMES", names.join(":"))
        .env("LISTEN_PID", std::process::id().to_string())
        .env(UPGRADE_FROM_ENV, std::process::id().to_string());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    // SAFETY: the closure runs in the forked child before exec and only makes
    // calls that are safe there (fcntl, dup2, close, one allocation: malloc cannot be mid-call
    // in another thread, because there is none);
    // the master is single-threaded, so no lock can be held across the fork.
    unsafe {
        command.pre_exec(move || {
            // First move every fd out of the way, above any target number, then into place,
            // so no dup2 overwrites an fd that is still to be moved.
            let mut high = Vec::with_capacity(raw.len());
            for &fd in &raw {
                let moved = libc::fcntl(fd, libc::F_DUPFD, 100 + raw.len() as i32);
                if moved < 0 {
                    return Err(io::Error::last_os_error());
                }
                high.push(moved);
            }
            for (i, &fd) in high.iter().enumerate() {
                let target = LISTEN_FDS_START + i as i32;
                if libc::dup2(fd, target) < 0 {
                    return Err(io::Error::last_os_error());
                }
                // dup2 clears FD_CLOEXEC on the target, so it survives exec.
                libc::close(fd);
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    Ok(child.id())
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let live = bind_unix(&path, 16, None, None).expect("first bind");
        let err = bind_unix(&path, 16, None, None).expect_err("live socket must be refused");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(live);
        // The file stays behind after the listener closes: a stale socket.
        assert!(path.exists());
        let again = bind_unix(&path, 16, Some(0o600), None).expect("stale socket replaced");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(again);
        std::fs::write(dir.join("plain"), b"x").unwrap();
        assert!(bind_unix(&dir.join("plain"), 16, None, None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_owner_is_given_to_the_socket_never_through_a_link() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("tine-own-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        // Root gives it to nobody; another user can only give it to itself.
        let owner = if me == 0 { 65534 } else { me };
        // Between bind and the change of owner, the socket was replaced by a link to a file
        // that stands in for /etc/ld.so.preload.
        let target = dir.join("ld.so.preload");
        std::fs::write(&target, "precious\n").unwrap();
        let path = dir.join("s.sock");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = own(&path, Some(owner), None).expect_err("a link is not followed");
        assert!(
            err.to_string().contains("no longer names the socket"),
            "{err}"
        );
        assert_eq!(std::fs::metadata(&target).unwrap().uid(), me);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
        std::fs::remove_file(&path).unwrap();
        // The socket itself is given away, with the mode bind gave it.
        let listener = bind_unix(&path, 16, Some(0o660), Some((Some(owner), None))).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (owner, 0o660));
        drop(listener);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fd_names_survive_the_colon_separated_list() {
        for name in [
            "127.0.0.1:8000",
            "[::1]:80",
            "unix:/run/a%b.sock",
            "activated:x:1",
        ] {
            let escaped = escape_fd_name(name);
            assert!(!escaped.contains(':'), "{escaped}");
            assert_eq!(unescape_fd_name(&escaped), name);
        }
        assert_eq!(unescape_fd_name("tine.socket"), "tine.socket");
    }

    #[test]
    fn sd_notify_without_a_socket_is_a_no_op() {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            assert!(!sd_notify("READY=1").unwrap());
        }
    }
}
