//! The OS edge: fork, wait, kill, signal masks, listening sockets, CPU affinity, rlimits and
//! `sd_notify`. Every `unsafe` block of the crate lives here, each with the invariant it relies on.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};

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

/// The calling thread's `pthread_self()`, the number Python's `threading.get_ident()` gives.
pub fn current_thread() -> u64 {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    unsafe { libc::pthread_self() as u64 }
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

/// Milliseconds on the system's monotonic clock, which every process on the machine shares, so
/// a worker's heartbeat can be compared with the master's clock.
pub fn monotonic_ms() -> u64 {
    use nix::time::{ClockId, clock_gettime};
    match clock_gettime(ClockId::CLOCK_MONOTONIC) {
        Ok(now) => (now.tv_sec() as u64) * 1000 + (now.tv_nsec() as u64) / 1_000_000,
        // CLOCK_MONOTONIC cannot fail on Linux; a zero reads as "no heartbeat yet".
        Err(_) => 0,
    }
}

/// A zero-filled memory region shared by the master and every worker it forks, viewed as
/// 64-bit atomics.
pub struct SharedMemory {
    ptr: std::ptr::NonNull<std::ffi::c_void>,
    words: usize,
}

// SAFETY: the region is only ever accessed through `AtomicU64`s, which are safe to share
// between threads; the pointer itself is never written through non-atomically.
unsafe impl Send for SharedMemory {}
// SAFETY: as above: all access is atomic.
unsafe impl Sync for SharedMemory {}

impl std::fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMemory")
            .field("words", &self.words)
            .finish()
    }
}

impl SharedMemory {
    /// Maps `words` zeroed 64-bit words shared with future children.
    pub fn new(words: usize) -> io::Result<SharedMemory> {
        use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous};
        let len = std::num::NonZeroUsize::new(words.max(1) * 8)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"))?;
        // SAFETY: an anonymous mapping at an address the kernel chooses cannot alias any
        // existing Rust object; MAP_SHARED makes the pages shared with children after fork.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .map_err(io::Error::from)?;
        Ok(SharedMemory {
            ptr,
            words: words.max(1),
        })
    }

    /// The region as atomics.
    pub fn words(&self) -> &[std::sync::atomic::AtomicU64] {
        // SAFETY: the mapping is `words * 8` bytes, page-aligned (so aligned for AtomicU64),
        // zero-initialised by the kernel (a valid AtomicU64 bit pattern), lives as long as
        // `self`, and is only accessed atomically, by this process and its children.
        unsafe {
            std::slice::from_raw_parts(
                self.ptr.as_ptr().cast::<std::sync::atomic::AtomicU64>(),
                self.words,
            )
        }
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: the pointer and length are exactly the mapping made in `new`, and the
        // borrow of `words()` cannot outlive `self`.
        let _ = unsafe { nix::sys::mman::munmap(self.ptr, self.words * 8) };
    }
}

/// The process's private memory (pages not shared with any other process), in bytes, from
/// `/proc/self/smaps_rollup`.
pub fn private_memory() -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup")?;
    parse_private_memory(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "no Private_Clean/Private_Dirty in /proc/self/smaps_rollup",
        )
    })
}

/// Another process's private memory in bytes, from its `smaps_rollup`.
pub fn private_memory_of(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    parse_private_memory(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Private_* lines"))
}

/// Sums `Private_Clean` and `Private_Dirty` (kB) of an smaps_rollup text, in bytes.
pub fn parse_private_memory(text: &str) -> Option<u64> {
    let mut total = None;
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name == "Private_Clean" || name == "Private_Dirty" {
            let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            total = Some(total.unwrap_or(0) + kb * 1024);
        }
    }
    total
}

/// Whether a process with this pid exists (it may belong to another user).
pub fn process_exists(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(Pid::from_raw(raw), None) {
        Ok(()) | Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// A user and group resolved from the config, for workers to switch to.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The user's name (for supplementary groups) and id.
    pub user: Option<(CString, u32)>,
    /// The group id.
    pub gid: Option<u32>,
}

/// Resolves `user` and `group` (names or numeric ids) in the master, before any fork: the
/// name service may read files and take locks, which is no job for a freshly forked child.
pub fn resolve_identity(user: Option<&str>, group: Option<&str>) -> Result<Identity, String> {
    use nix::unistd::{Gid, Group, Uid, User};
    let user = match user {
        None => None,
        Some(spec) => {
            let found = match spec.parse::<u32>() {
                Ok(id) => User::from_uid(Uid::from_raw(id)),
                Err(_) => User::from_name(spec),
            }
            .map_err(|e| format!("could not look up user {spec:?}: {}", e.desc()))?
            .ok_or_else(|| format!("user {spec:?} does not exist"))?;
            Some(found)
        }
    };
    let gid = match group {
        None => user.as_ref().map(|u| u.gid.as_raw()),
        Some(spec) => {
            let found = match spec.parse::<u32>() {
                Ok(id) => Group::from_gid(Gid::from_raw(id)),
                Err(_) => Group::from_name(spec),
            }
            .map_err(|e| format!("could not look up group {spec:?}: {}", e.desc()))?
            .ok_or_else(|| format!("group {spec:?} does not exist"))?;
            Some(found.gid.as_raw())
        }
    };
    let user = match user {
        Some(u) => Some((
            CString::new(u.name.clone())
                .map_err(|_| format!("user name {:?} has a NUL", u.name))?,
            u.uid.as_raw(),
        )),
        None => None,
    };
    Ok(Identity { user, gid })
}

impl Identity {
    /// True when there is nothing to switch to.
    pub fn is_unchanged(&self) -> bool {
        self.user.is_none() && self.gid.is_none()
    }
}

/// Switches the calling process to `identity`: supplementary groups, then the group, then the
/// user, and checks that the user cannot be regained.
pub fn drop_privileges(identity: &Identity) -> io::Result<()> {
    use nix::unistd::{Gid, Uid, getuid, initgroups, setgid, setgroups, setuid};
    if let Some(gid) = identity.gid {
        let gid = Gid::from_raw(gid);
        match &identity.user {
            Some((name, _)) => initgroups(name, gid)?,
            None => setgroups(&[gid])?,
        }
        setgid(gid)?;
    }
    if let Some((_, uid)) = &identity.user {
        let uid = Uid::from_raw(*uid);
        setuid(uid)?;
        if !uid.is_root() && setuid(Uid::from_raw(0)).is_ok() {
            return Err(io::Error::other(
                "root privileges could be regained after setuid",
            ));
        }
        if getuid() != uid {
            return Err(io::Error::other("setuid did not take effect"));
        }
    }
    Ok(())
}

/// The process's real user and group ids.
pub fn current_ids() -> (u32, u32) {
    (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    )
}

/// Gives the file at `path` to the user `uid` (its group unchanged).
pub fn chown_file(path: &Path, uid: u32) -> io::Result<()> {
    nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(uid)), None).map_err(io::Error::from)
}

/// Records that this process now feeds systemd's watchdog (after an upgrade), so the master
/// it starts next recognises `WATCHDOG_PID` too.
pub fn claim_watchdog() {
    // SAFETY: called by the master on its own thread before it forks or starts anything that
    // could read the environment concurrently; the master has no other thread.
    unsafe { std::env::set_var("WATCHDOG_PID", std::process::id().to_string()) };
}

/// Opens `relative` under the directory `dir` with `openat2(2)` and `RESOLVE_BENEATH`: the
/// kernel refuses (`EXDEV`) any resolution that would leave `dir`, `..` or a symbolic link
/// included, in one system call and with no race between a check and the open. Errors with
/// `ENOSYS` (kernels before 5.6) or `EPERM` (a seccomp filter) mean the call is unavailable.
pub fn open_beneath(dir: BorrowedFd<'_>, relative: &Path, flags: i32) -> io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(relative.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    // SAFETY: `open_how` is a plain C struct for which all-zero bytes are a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: the arguments are a valid directory fd borrowed for the call, a NUL-terminated
    // path that outlives it, and a pointer to an `open_how` with its true size, as openat2(2)
    // requires; the kernel does not keep any of them.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(fd as i32) })
}

/// Whether the process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Sets the file mode creation mask.
pub fn set_umask(mask: u32) {
    use nix::sys::stat::Mode;
    nix::sys::stat::umask(Mode::from_bits_truncate(mask as libc::mode_t));
}

/// Ensures the soft open-files limit is at least `wanted`, raising it up to the hard limit;
/// returns the resulting soft limit.
pub fn ensure_open_files(wanted: u64) -> io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft >= wanted {
        return Ok(soft);
    }
    let target = wanted.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, target, hard).map_err(io::Error::from)?;
    Ok(target)
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
    socket::bind(fd.as_raw_fd(), &socket::UnixAddr::new(path)?)?;
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    if let Some((uid, gid)) = owner {
        nix::unistd::chown(
            path,
            uid.map(nix::unistd::Uid::from_raw),
            gid.map(nix::unistd::Gid::from_raw),
        )?;
    }
    socket::listen(&fd, backlog_of(backlog)?)?;
    Ok(UnixListener::from(fd))
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

/// Sends up to `count` bytes of `file`, from `*offset`, to the socket `socket` with
/// `sendfile(2)`, and advances `*offset` by what was sent.
///
/// The bytes go from the page cache to the socket without passing through user memory. On a
/// non-blocking socket whose buffer is full this is `WouldBlock`; `Ok(0)` means the file ended
/// before `*offset`. Any kind of socket works as the destination (TCP or Unix).
pub fn sendfile(
    socket: std::os::fd::BorrowedFd<'_>,
    file: &std::fs::File,
    offset: &mut u64,
    count: usize,
) -> io::Result<usize> {
    let mut position = libc::off64_t::try_from(*offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset out of range"))?;
    let sent = nix::sys::sendfile::sendfile64(socket, file, Some(&mut position), count)
        .map_err(io::Error::from)?;
    *offset += sent as u64;
    Ok(sent)
}

/// A new temporary file that has no name: created with `O_TMPFILE` in `std::env::temp_dir()`
/// (`$TMPDIR`, else `/tmp`), or, where the file system cannot do that, created under a fresh
/// name and unlinked at once. Either way it disappears with its last descriptor, even if the
/// process is killed.
pub fn anonymous_temp_file() -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir();
    let unnamed = std::fs::File::options()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(&dir);
    match unnamed {
        Ok(file) => Ok(file),
        Err(err) if matches!(err.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.join(format!(".tine-body-{}-{n}", std::process::id()));
            let file = std::fs::File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(file)
        }
        Err(err) => Err(err),
    }
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

    #[test]
    fn sd_notify_without_a_socket_is_a_no_op() {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            assert!(!sd_notify("READY=1").unwrap());
        }
    }
}
