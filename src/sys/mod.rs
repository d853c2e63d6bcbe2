//! The OS edge: fork, wait, kill, signal masks, CPU affinity, rlimits, identities and files here,
//! listening sockets, socket hand-over and `sd_notify` in `net`. Every `unsafe` block of the
//! crate lives in this module, each with the invariant it relies on. A leaf: it imports nothing
//! from the crate. Its safe wrappers are sound only in a single-threaded process (fork,
//! environment changes), so the module is not public API.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

mod net;

pub use net::{
    SocketName, bind_tcp, bind_unix, sd_notify, socket_local_addr, spawn_upgrade, take_listen_fds,
};

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

/// Log paths that name the process's own standard streams or the null device, as gunicorn's
/// users write them (`--access-logfile /dev/stdout` in containers). They are root's, in `/dev`,
/// so [`open_append_regular`] follows them.
pub const STANDARD_STREAMS: [&str; 3] = ["/dev/stdout", "/dev/stderr", "/dev/null"];

/// The permission bits of a log file tine creates (less the umask): its owner (the workers'
/// user, when there is one) writes it, its group may read it, nobody else: it holds client
/// addresses and request lines.
pub const LOG_FILE_MODE: u32 = 0o640;

/// Opens `path` for appending (a log file), creating it with the permission bits `mode` (less
/// the umask) when it is missing.
///
/// Root opens log files in directories other users may write, so the open never follows a
/// symbolic link as the last component (`O_NOFOLLOW`: a planted link to `/etc/ld.so.preload`
/// would otherwise be appended to, and given to the workers' user), and what it opened must be
/// a regular file: a FIFO (opened without blocking, then refused), a device or a directory is
/// refused, with an error that says what it is. Symbolic links in the directories above are
/// the administrator's and are followed.
///
/// The exceptions are [`STANDARD_STREAMS`], links and devices in root's own `/dev` that no other
/// user can plant or change: they are taken as they are (what `/dev/stdout` leads to is often
/// a pipe to the container runtime), never created, and never given away (see
/// [`is_standard_stream`]). `/dev/stdout` and `/dev/stderr` are the process's own streams, a new
/// descriptor of each, never reopened through `/proc/self/fd`: a reopen is checked against the
/// permissions of the pipe or file behind them, root's, which a worker that dropped its
/// privileges would fail.
pub fn open_append_regular(path: &Path, mode: u32) -> io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::OpenOptionsExt;
    if path == Path::new("/dev/stdout") {
        return Ok(io::stdout().as_fd().try_clone_to_owned()?.into());
    }
    if path == Path::new("/dev/stderr") {
        return Ok(io::stderr().as_fd().try_clone_to_owned()?.into());
    }
    if is_standard_stream(path) {
        return std::fs::OpenOptions::new().append(true).open(path);
    }
    let opened = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        // O_NONBLOCK: opening a FIFO with no reader would otherwise wait for one for ever.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(err) => {
            // ELOOP is what O_NOFOLLOW answers for a link; ENXIO a FIFO nobody reads; EISDIR a
            // directory: say what is there rather than the errno's words.
            return Err(match std::fs::symlink_metadata(path) {
                Ok(meta) if !meta.file_type().is_file() => not_regular(meta.file_type()),
                _ => err,
            });
        }
    };
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(not_regular(kind));
    }
    // Back to blocking writes (O_NONBLOCK means nothing for a regular file, but say what is
    // meant); F_SETFL replaces the status flags, so O_APPEND is set again with it.
    nix::fcntl::fcntl(
        &file,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_APPEND),
    )?;
    Ok(file)
}

/// Whether `path` is one of [`STANDARD_STREAMS`]: what it names is root's choice (where the
/// master's output goes), so it is never given to the workers' user, even when it is a regular
/// file.
pub fn is_standard_stream(path: &Path) -> bool {
    STANDARD_STREAMS.iter().any(|name| path == Path::new(name))
}

/// The error for a path that holds something other than a regular file.
fn not_regular(kind: std::fs::FileType) -> io::Error {
    use std::os::unix::fs::FileTypeExt;
    let what = if kind.is_symlink() {
        return io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a symbolic link, and tine does not follow one there (whoever can write its \
             directory could point it at any file); give the real path of the file",
        );
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is {what}, not a regular file"),
    )
}

/// Gives the open `file` to the user `uid` (its group unchanged) with `fchown`, so the file
/// changed is the one opened, whatever its path names by now. A file with more than one hard
/// link is refused: its other name could be a system file someone linked into the directory.
///
/// Anything but a regular file (one of [`STANDARD_STREAMS`]: a terminal, a pipe, the null
/// device) is left as it is: a worker writes to it through the descriptor it inherits, and
/// `/dev/null` must stay root's.
pub fn give_file(file: &std::fs::File, uid: u32) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Ok(());
    }
    let links = meta.nlink();
    if links > 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "it has {links} hard links, so tine does not give it to the workers' user \
                 (another of its names could be a system file)"
            ),
        ));
    }
    nix::unistd::fchown(file, Some(nix::unistd::Uid::from_raw(uid)), None).map_err(io::Error::from)
}

/// The environment variables through which the service manager talks to the master: its
/// notification socket and the watchdog. They are the master's alone.
pub const SERVICE_MANAGER_VARS: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Removes [`SERVICE_MANAGER_VARS`] from this process's environment: a worker calls it right
/// after fork, so the application can neither tell systemd it is ready or stopping, nor feed
/// (or starve) the watchdog in the master's name. The master keeps them.
pub fn forget_service_manager() {
    for name in SERVICE_MANAGER_VARS {
        // SAFETY: called in a freshly forked worker before it starts any thread: fork copies
        // only the calling thread of the master, which has no other, so nothing can read the
        // environment concurrently.
        unsafe { std::env::remove_var(name) };
    }
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

/// Copies what `socket` has to read into `buf` without taking it (`recv` with `MSG_PEEK`):
/// the same bytes are there for the next read. `Ok(0)` is the end of the stream;
/// `WouldBlock` when nothing has come.
pub fn peek(socket: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    use nix::sys::socket::{MsgFlags, recv};
    recv(
        socket.as_raw_fd(),
        buf,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)
}

/// Whether the peer of `socket` has closed its side (or reset the connection): a peek finds
/// the end of the stream. Bytes waiting to be read are left where they are.
pub fn peer_closed(socket: std::os::fd::BorrowedFd<'_>) -> bool {
    use nix::sys::socket::{MsgFlags, recv};
    let mut byte = [0u8; 1];
    match recv(
        socket.as_raw_fd(),
        &mut byte,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(0) => true,
        Ok(_) => false,
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => false,
        Err(_) => true,
    }
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

/// How many threads this process runs (`Threads:` in /proc/self/status).
pub(crate) fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Threads: line"))
}

/// Descriptors a worker keeps besides its connections' and its listeners': the log files,
/// standard streams, its poll, pipes and the application's own files.
pub const SPARE_OPEN_FILES: u64 = 64;

/// The open-files limit a worker needs to hold `max_connections` connections on `listeners`
/// listening sockets: two descriptors a connection (its socket, and a request body spilled to
/// a file or a file being sent), the listeners, and [`SPARE_OPEN_FILES`] more. Saturates
/// rather than overflowing.
pub fn open_files_needed(max_connections: usize, listeners: usize) -> u64 {
    let each = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    each(max_connections)
        .saturating_mul(2)
        .saturating_add(each(listeners))
        .saturating_add(SPARE_OPEN_FILES)
}

#[cfg(test)]
mod tests;
