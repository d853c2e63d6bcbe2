//! From a request path to an open file under the root, safely: percent-decoding before any
//! check, refusing every segment that could climb out (`..`, encoded slashes and backslashes,
//! NUL bytes), and checking where symbolic links lead.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A request path, decoded and checked: every segment is a plain file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafePath {
    segments: Vec<Vec<u8>>,
    /// The path ended with `/`: it names a directory.
    pub trailing_slash: bool,
}

impl SafePath {
    /// Decodes the raw (percent-encoded) path of a request; `None` when it is not a path this
    /// handler will look up: not absolute, an invalid escape, or a segment that decodes to `.`,
    /// `..`, or holds `/`, `\` or NUL. Empty segments (`//`) are skipped, as a file system does.
    pub fn parse(raw: &str) -> Option<SafePath> {
        let rest = raw.strip_prefix('/')?;
        let mut segments = Vec::new();
        for segment in rest.split('/') {
            if segment.is_empty() {
                continue;
            }
            let decoded = decode_segment(segment)?;
            let hostile = decoded == b"."
                || decoded == b".."
                || decoded.iter().any(|&b| matches!(b, b'/' | b'\\' | 0));
            if hostile {
                return None;
            }
            segments.push(decoded);
        }
        Some(SafePath {
            segments,
            trailing_slash: raw.ends_with('/'),
        })
    }

    /// The path relative to the root (empty for the root itself).
    pub fn relative(&self) -> PathBuf {
        self.segments
            .iter()
            .map(|segment| OsStr::from_bytes(segment))
            .collect()
    }

    /// The decoded segments.
    #[cfg(test)]
    pub fn segments(&self) -> &[Vec<u8>] {
        &self.segments
    }

    /// Whether a segment starts with `.` (a dotfile or a dot directory, such as `.git` or
    /// `.env`), but for a first segment `.well-known` (RFC 8615).
    pub fn is_hidden(&self) -> bool {
        self.segments
            .iter()
            .enumerate()
            .any(|(depth, segment)| is_hidden(depth, segment))
    }

    /// How many segments deep the path goes (0 for the root).
    pub fn depth(&self) -> usize {
        self.segments.len()
    }

    /// The last segment: the file's own name (empty for the root).
    pub fn file_name(&self) -> &[u8] {
        self.segments.last().map_or(&[], Vec::as_slice)
    }

    /// The decoded path for people, `/` separated, with a trailing `/`; invalid UTF-8 shown as
    /// U+FFFD.
    pub fn display_dir(&self) -> String {
        let mut out = String::from("/");
        for segment in &self.segments {
            out.push_str(&String::from_utf8_lossy(segment));
            out.push('/');
        }
        out
    }
}

/// Whether `name`, the segment at `depth` (0 for a name in the root), is a dotfile the handler
/// hides unless `dotfiles`: a name starting with `.`, but for `.well-known` in the root.
pub fn is_hidden(depth: usize, name: &[u8]) -> bool {
    name.starts_with(b".") && !(depth == 0 && name == b".well-known")
}

/// Whether an error from [`Root::open`] or [`Root::list`] says the path names nothing this
/// handler serves: missing, outside the root, not a directory where one was needed, forbidden,
/// too long, a loop of links, or a special file `open` refuses (`ENXIO` for a Unix socket,
/// `ENODEV` for a device without its driver; [`servable`] turns away those it can open). Any
/// other error (out of descriptors, an I/O error) is not the path's fault, and must not be
/// answered as if the file did not exist.
pub fn means_missing(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::ENOENT
                | libc::ENOTDIR
                | libc::EACCES
                | libc::EPERM
                | libc::ENAMETOOLONG
                | libc::ELOOP
                | libc::ENXIO
                | libc::ENODEV
        )
    ) || (err.raw_os_error().is_none() && err.kind() == io::ErrorKind::NotFound)
}

/// Strict percent-decoding of one path segment: `%` must start two hex digits, and `+` is a
/// plus sign (it means space only in query strings).
fn decode_segment(segment: &str) -> Option<Vec<u8>> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let high = (hex[0] as char).to_digit(16)?;
            let low = (hex[1] as char).to_digit(16)?;
            out.push((high * 16 + low) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Percent-encodes `bytes` for a URL path segment: everything but unreserved characters and a
/// few sub-delimiters that are safe in a path.
pub fn encode_segment(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~!$()*,;=@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A file or directory opened under the root.
#[derive(Debug)]
pub struct Opened {
    /// The open file (or directory).
    pub file: File,
    /// Its metadata, from the open descriptor.
    pub metadata: Metadata,
}

/// Opens files beneath one directory.
#[derive(Debug, Clone)]
pub struct Root {
    /// The root, canonical (absolute, no symbolic links).
    canonical: PathBuf,
    /// Follow symbolic links wherever they lead; otherwise only to somewhere under the root.
    follow_symlinks: bool,
    /// The root held open, for `openat2(RESOLVE_BENEATH)`: one system call per file instead
    /// of resolving every component and checking the result. `None` where it cannot be opened.
    dir: Option<std::sync::Arc<File>>,
}

/// Only regular files and directories are served; anything else (a device, a FIFO, a
/// socket) is `NotFound`, like a path outside the root.
fn servable(file: File) -> io::Result<Opened> {
    let metadata = file.metadata()?;
    if !metadata.is_file() && !metadata.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "not a regular file or directory",
        ));
    }
    Ok(Opened { file, metadata })
}

/// Set once `openat2` turned out to be unavailable (an old kernel, a seccomp filter), so the
/// handler stops trying it.
static NO_OPENAT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Root {
    /// `canonical` must already be canonical.
    pub fn new(canonical: PathBuf, follow_symlinks: bool) -> Root {
        let dir = File::options()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&canonical)
            .ok()
            .map(std::sync::Arc::new);
        Root {
            canonical,
            follow_symlinks,
            dir,
        }
    }

    /// The fast path for [`Root::open`]: `None` when it cannot decide (no `openat2`, or a
    /// path the kernel refused to resolve beneath the root, which the slow path then judges:
    /// an absolute link back inside the root is allowed, one leading out is not).
    fn open_beneath(&self, relative: &Path) -> Option<io::Result<File>> {
        use std::os::fd::AsFd;
        use std::sync::atomic::Ordering;
        let dir = self.dir.as_ref()?;
        if NO_OPENAT2.load(Ordering::Relaxed) {
            return None;
        }
        let relative = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        };
        match crate::sys::open_beneath(dir.as_fd(), relative, libc::O_RDONLY | libc::O_NONBLOCK) {
            Ok(file) => Some(Ok(file)),
            Err(err) => match err.raw_os_error() {
                Some(libc::ENOSYS | libc::EPERM) => {
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                    None
                }
                Some(libc::EXDEV | libc::ELOOP) => None,
                _ => Some(Err(err)),
            },
        }
    }

    /// The canonical root.
    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// Opens `relative` (a path of plain names, from [`SafePath::relative`]) under the root.
    ///
    /// Unless symbolic links may be followed anywhere, the path is resolved first and must lie
    /// under the root; it is then opened without following a link in its last component, and
    /// the open descriptor's real path is checked again, so a link swapped in between the check
    /// and the open is caught too. Only regular files and directories are returned; anything
    /// else (a device, a FIFO, a socket) is `NotFound`, like a path outside the root.
    pub fn open(&self, relative: &Path) -> io::Result<Opened> {
        if !self.follow_symlinks
            && let Some(opened) = self.open_beneath(relative)
        {
            return servable(opened?);
        }
        let joined = self.canonical.join(relative);
        let outside = || io::Error::new(io::ErrorKind::NotFound, "outside the root");
        let (path, flags) = if self.follow_symlinks {
            (joined, 0)
        } else {
            let real = joined.canonicalize()?;
            if !real.starts_with(&self.canonical) {
                return Err(outside());
            }
            (real, libc::O_NOFOLLOW)
        };
        let file = File::options()
            .read(true)
            // O_NONBLOCK: opening a FIFO planted under the root must not hang a thread.
            .custom_flags(flags | libc::O_NONBLOCK)
            .open(&path)?;
        if !self.follow_symlinks {
            let fd_link = format!("/proc/self/fd/{}", file.as_raw_fd());
            // Without /proc there is only the check before the open to go on.
            if let Ok(opened) = std::fs::read_link(fd_link)
                && !opened.starts_with(&self.canonical)
            {
                return Err(outside());
            }
        }
        servable(file)
    }

    /// Names in the directory `relative`, sorted, with whether each is a directory (following
    /// links the way [`Root::open`] would).
    pub fn list(&self, relative: &Path) -> io::Result<Vec<(OsString, bool)>> {
        let dir = self.canonical.join(relative);
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let is_dir = match self.open(&relative.join(&name)) {
                Ok(opened) => opened.metadata.is_dir(),
                // Not something this handler would serve: leave it out of the listing.
                Err(err) if means_missing(&err) => continue,
                // Out of descriptors, say: a listing with names missing would be a lie.
                Err(err) => return Err(err),
            };
            entries.push((name, is_dir));
        }
        entries.sort();
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_are_refused() {
        let hostile = [
            "",
            "relative/path",
            "/..",
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/a/..",
            "/./a",
            "/a/./b",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/etc/passwd",
            "/.%2e/etc/passwd",
            "/%2e./etc/passwd",
            "/a/%2e%2e%2f%2e%2e%2fetc/passwd",
            "/..%2fetc%2fpasswd",
            "/a%2fb",
            "/a%2Fb",
            "/..%5c..%5cwindows",
            "/a\\..\\b",
            "/a%5cb",
            "/etc%00.html",
            "/a/%00",
            "/%",
            "/%2",
            "/%zz",
            "/%%32%65",
            "/%2",
            "/a/%G0",
            "http://example.com/../x",
        ];
        for raw in hostile {
            assert_eq!(SafePath::parse(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn ordinary_paths_decode() {
        let path = SafePath::parse("/a%20b/c+d/%C3%A9t%C3%A9.txt").unwrap();
        assert_eq!(
            path.segments(),
            [
                b"a b".to_vec(),
                b"c+d".to_vec(),
                "été.txt".as_bytes().to_vec()
            ]
        );
        assert!(!path.trailing_slash);
        assert_eq!(path.relative(), PathBuf::from("a b/c+d/été.txt"));
        assert_eq!(path.file_name(), "été.txt".as_bytes());

        let root = SafePath::parse("/").unwrap();
        assert!(root.segments().is_empty() && root.trailing_slash);
        assert_eq!(root.relative(), PathBuf::new());
        assert_eq!(root.display_dir(), "/");

        let dir = SafePath::parse("//docs//guide/").unwrap();
        assert_eq!(dir.segments(), [b"docs".to_vec(), b"guide".to_vec()]);
        assert!(dir.trailing_slash);
        assert_eq!(dir.display_dir(), "/docs/guide/");

        // Dots that are not whole segments are ordinary names.
        let dots = SafePath::parse("/...%2E/.hidden/a..b").unwrap();
        assert_eq!(
            dots.segments(),
            [b"....".to_vec(), b".hidden".to_vec(), b"a..b".to_vec()]
        );
        // Invalid UTF-8 is a valid file name on Linux.
        let raw = SafePath::parse("/%FF%FE").unwrap();
        assert_eq!(raw.segments(), [vec![0xff, 0xfe]]);
    }

    #[test]
    fn encoding_round_trips_through_decoding() {
        for name in [
            &b"plain.txt"[..],
            b"a b",
            b"100%",
            b"q?x#y",
            b"<tag>&\"'",
            "été".as_bytes(),
            &[0xff, 0x01],
        ] {
            let encoded = encode_segment(name);
            assert!(
                encoded
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"/\\?#<>\"'&".contains(&b)),
                "{encoded}"
            );
            assert_eq!(decode_segment(&encoded).as_deref(), Some(name));
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tine-resolve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.canonicalize().unwrap()
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused_unless_followed() {
        let base = scratch("links");
        let root_dir = base.join("root");
        std::fs::create_dir_all(root_dir.join("sub")).unwrap();
        std::fs::write(base.join("secret"), "secret").unwrap();
        std::fs::write(root_dir.join("sub/inside.txt"), "inside").unwrap();
        std::os::unix::fs::symlink(base.join("secret"), root_dir.join("out")).unwrap();
        std::os::unix::fs::symlink(&base, root_dir.join("outdir")).unwrap();
        std::os::unix::fs::symlink("sub/inside.txt", root_dir.join("in")).unwrap();
        std::os::unix::fs::symlink("nowhere", root_dir.join("dangling")).unwrap();

        let strict = Root::new(root_dir.clone(), false);
        assert!(strict.open(Path::new("sub/inside.txt")).is_ok());
        assert!(
            strict.open(Path::new("in")).is_ok(),
            "a link inside the root"
        );
        for refused in ["out", "outdir/secret", "outdir", "dangling", "missing"] {
            let err = strict.open(Path::new(refused)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{refused}: {err}");
        }

        let follow = Root::new(root_dir.clone(), true);
        let opened = follow.open(Path::new("out")).unwrap();
        assert!(opened.metadata.is_file());
        assert!(follow.open(Path::new("outdir/secret")).is_ok());

        let names: Vec<_> = strict
            .list(Path::new(""))
            .unwrap()
            .into_iter()
            .map(|(name, is_dir)| (name.into_string().unwrap(), is_dir))
            .collect();
        assert_eq!(
            names,
            [("in".to_owned(), false), ("sub".to_owned(), true)],
            "links out of the root and dangling links are not listed"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn only_files_and_directories_are_opened() {
        let base = scratch("fifo");
        nix::unistd::mkfifo(&base.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let root = Root::new(base.clone(), false);
        let err = root.open(Path::new("pipe")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(root.open(Path::new("")).unwrap().metadata.is_dir());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
