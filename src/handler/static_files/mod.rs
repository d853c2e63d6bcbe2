//! The built-in `static` handler: serves a directory the way nginx's `root` does.
//!
//! Files go out as [`Body::File`](crate::handler::Body::File) regions, so the event loop sends
//! them with `sendfile(2)` whatever their size. Each answer carries `Content-Type` (by
//! extension), `Last-Modified`, a strong `ETag` (modification time in nanoseconds and size, in
//! hex, as nginx makes it: nothing about the inode), `Accept-Ranges: bytes` and the configured
//! `Cache-Control`; conditional requests get `304` or `412` in the order RFC 9110 §13.2.2 sets, a
//! single `Range` gets `206` (or `416`), and several ranges get the whole file. Every answer,
//! errors and redirects included, carries `X-Content-Type-Options: nosniff`.
//!
//! Paths are percent-decoded before they are checked, and a path that could name something
//! outside the root (`..`, encoded `/` or `\`, NUL, a symbolic link out of the root unless
//! `follow_symlinks`) is answered `404`, exactly like a file that does not exist. So is a path
//! with a segment starting with `.` (`/.git/config`, `/.env`) unless `dotfiles`, with
//! `/.well-known/` the exception. A file that cannot be opened for want of descriptors
//! (`EMFILE`, `ENFILE`) or memory is `503` with `Retry-After: 1`, never `404` (a cache in front
//! would keep that), and any other failure but "missing" or "forbidden" is `500`.
//!
//! ```
//! use tine::handler::{Handler, Request};
//! use tine::handler::static_files::{StaticFiles, StaticOptions};
//!
//! let root = std::env::temp_dir().join(format!("tine-doc-static-{}", std::process::id()));
//! std::fs::create_dir_all(&root)?;
//! std::fs::write(root.join("index.html"), "<h1>hi</h1>\n")?;
//!
//! let site = StaticFiles::new(StaticOptions {
//!     root: root.clone(),
//!     ..StaticOptions::default()
//! })?;
//! let response = site.handle(Request::builder("GET", "/").build());
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.header("Content-Type"), Some(&b"text/html; charset=utf-8"[..]));
//! assert_eq!(response.body().len(), Some(12));
//! assert_eq!(site.handle(Request::builder("GET", "/../etc/passwd").build()).status(), 404);
//! assert!(StaticFiles::new(StaticOptions { root: root.join("nope"), ..Default::default() }).is_err());
//! # std::fs::remove_dir_all(&root)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod conditional;
mod listing;
mod mime;
pub mod range;
mod resolve;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

pub use conditional::parse_http_date;
pub use mime::for_name as content_type_for;

use super::{FileRegion, Handler, Headers, Request, Response};
use conditional::{Precondition, Validators};
use range::RangeOutcome;
use resolve::{Opened, Root, SafePath};

/// Files up to this size are read into the response instead of sent with `sendfile`.
const SMALL_FILE: u64 = 16 * 1024;

/// How a [`StaticFiles`] handler serves its directory: the config's `[app]` section, whose
/// `root`, `index`, `listing`, `follow_symlinks`, `dotfiles`, `cache_control` and
/// `precompressed` keys it reads (`handler` is not its business). One type, so the keys and the handler cannot drift.
pub type StaticOptions = crate::config::App;

/// Why a [`StaticFiles`] handler could not be built.
#[derive(Debug)]
pub enum StaticError {
    /// The root could not be resolved (it does not exist, or cannot be reached).
    Root {
        /// The root as configured.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The root exists but is not a directory.
    NotADirectory {
        /// The root as configured.
        path: PathBuf,
    },
    /// An index name is not a plain file name.
    IndexName(String),
    /// The `Cache-Control` value cannot be sent as a header value.
    CacheControl(String),
}

impl fmt::Display for StaticError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StaticError::Root { path, source } => write!(
                f,
                "static root {:?}: {}",
                path.display().to_string(),
                crate::text::describe_io(source)
            ),
            StaticError::NotADirectory { path } => write!(
                f,
                "static root {:?} is not a directory",
                path.display().to_string()
            ),
            StaticError::IndexName(name) => {
                write!(f, "index name {name:?} is not a plain file name")
            }
            StaticError::CacheControl(value) => {
                write!(f, "cache_control {value:?} is not a valid header value")
            }
        }
    }
}

impl std::error::Error for StaticError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StaticError::Root { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Serves the files under one directory; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct StaticFiles {
    root: Root,
    index: Vec<OsString>,
    listing: bool,
    dotfiles: bool,
    cache_control: Option<Vec<u8>>,
    precompressed: bool,
}

const ALLOW: &str = "GET, HEAD";

impl StaticFiles {
    /// Checks `options` and resolves the root once, so a missing root is an error at start-up
    /// rather than a 404 on every request.
    ///
    /// # Errors
    ///
    /// When the root does not exist or is not a directory, an index name is not a plain file
    /// name, or `cache_control` holds a control character.
    pub fn new(options: StaticOptions) -> Result<StaticFiles, StaticError> {
        let canonical = options
            .root
            .canonicalize()
            .map_err(|source| StaticError::Root {
                path: options.root.clone(),
                source,
            })?;
        if !canonical.is_dir() {
            return Err(StaticError::NotADirectory { path: options.root });
        }
        let mut index = Vec::with_capacity(options.index.len());
        for name in options.index {
            let plain = !name.is_empty()
                && name != "."
                && name != ".."
                && !name.contains(['/', '\\', '\0']);
            if !plain {
                return Err(StaticError::IndexName(name));
            }
            index.push(OsString::from(name));
        }
        let cache_control = match options.cache_control {
            Some(value) if !crate::http::valid_header("Cache-Control", value.as_bytes()) => {
                return Err(StaticError::CacheControl(value));
            }
            other => other.map(String::into_bytes),
        };
        Ok(StaticFiles {
            root: Root::new(canonical, options.follow_symlinks),
            index,
            listing: options.listing,
            dotfiles: options.dotfiles,
            cache_control,
            precompressed: options.precompressed,
        })
    }

    /// The root directory, resolved (absolute, without symbolic links).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Answers `request` with the file at `path`, a percent-encoded path under the root
    /// starting with `/`. [`Handler::handle`] passes the request's own path; an application
    /// that mounts the files under a prefix passes what follows the prefix.
    pub fn serve(&self, request: &Request, path: &str) -> Response {
        self.answer(request, path)
            .with_header("X-Content-Type-Options", "nosniff")
    }

    /// [`StaticFiles::serve`] but for the headers every answer carries.
    fn answer(&self, request: &Request, path: &str) -> Response {
        if !matches!(request.method(), "GET" | "HEAD") {
            return Response::text(405, "405 Method Not Allowed\n").with_header("Allow", ALLOW);
        }
        let Some(safe) = SafePath::parse(path) else {
            log::debug!("static: refused the path {path:?}");
            return not_found();
        };
        if !self.dotfiles && safe.is_hidden() {
            log::debug!("static: {path:?} names a dotfile");
            return not_found();
        }
        let relative = safe.relative();
        let opened = match self.root.open(&relative) {
            Ok(opened) => opened,
            Err(err) => return failed(&err, &relative),
        };
        if opened.metadata.is_dir() {
            if !safe.trailing_slash {
                return redirect_to_directory(request);
            }
            return self.serve_directory(request, &safe, &relative);
        }
        if safe.trailing_slash {
            // "/file.txt/" names a directory, and this is a file.
            return not_found();
        }
        self.serve_file(request, opened, &relative, safe.file_name())
    }

    fn serve_directory(&self, request: &Request, safe: &SafePath, relative: &Path) -> Response {
        for name in &self.index {
            let index_path = relative.join(name);
            match self.root.open(&index_path) {
                Ok(index) if index.metadata.is_file() => {
                    return self.serve_file(request, index, &index_path, name.as_encoded_bytes());
                }
                Ok(_) => {}
                Err(err) if resolve::means_missing(&err) => {}
                Err(err) => return failed(&err, &index_path),
            }
        }
        if !self.listing {
            return not_found();
        }
        match self.root.list(relative) {
            Ok(mut entries) => {
                if !self.dotfiles {
                    let depth = safe.depth();
                    entries.retain(|(name, _)| !resolve::is_hidden(depth, name.as_encoded_bytes()));
                }
                Response::new(200)
                    .with_header("Content-Type", "text/html; charset=utf-8")
                    .with_body(listing::page(&safe.display_dir(), &entries))
            }
            Err(err) => failed(&err, relative),
        }
    }

    fn serve_file(
        &self,
        request: &Request,
        identity: Opened,
        relative: &Path,
        name: &[u8],
    ) -> Response {
        let content_type = mime::for_name(name);
        let (opened, encoding) = self.pick_encoding(request.headers(), identity, relative);
        let len = opened.metadata.len();
        let modified = opened
            .metadata
            .modified()
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok());
        let last_modified = modified.map_or(0, |d| d.as_secs());
        let etag = entity_tag(modified.map_or(0, |d| d.as_nanos()), len, encoding);
        let validators = Validators {
            etag: &etag,
            last_modified,
        };
        let date = crate::http::http_date(last_modified);

        // What a 304 repeats of the 200 it stands for (RFC 9110 §15.4.5), and a 412 too.
        let mut validator_fields: Vec<(&str, &[u8])> =
            vec![("ETag", etag.as_bytes()), ("Last-Modified", &date)];
        if let Some(value) = &self.cache_control {
            validator_fields.push(("Cache-Control", value));
        }
        if self.precompressed {
            validator_fields.push(("Vary", b"Accept-Encoding"));
        }
        let with_validators = |mut response: Response| {
            for (name, value) in &validator_fields {
                response = response.with_header(name, *value);
            }
            response
        };

        match conditional::evaluate(request.headers(), request.method(), validators) {
            Precondition::Proceed => {}
            Precondition::NotModified => return with_validators(Response::new(304)),
            Precondition::Failed => {
                return with_validators(Response::text(412, "412 Precondition Failed\n"));
            }
        }

        let outcome = if request.method() == "GET"
            && conditional::if_range_holds(request.headers(), validators)
        {
            range::evaluate(request.header("range"), len)
        } else {
            RangeOutcome::Full
        };
        let (status, start, part) = match outcome {
            RangeOutcome::Full => (200, 0, len),
            RangeOutcome::Partial { start, len: part } => (206, start, part),
            RangeOutcome::Unsatisfiable => {
                return Response::text(416, "416 Range Not Satisfiable\n")
                    .with_header("Content-Range", format!("bytes */{len}"))
                    .with_header("Accept-Ranges", "bytes");
            }
        };
        let mut response = Response::new(status).with_header("Content-Type", content_type);
        if let Some(encoding) = encoding {
            response = response.with_header("Content-Encoding", encoding);
        }
        if status == 206 {
            let content_range = format!("bytes {start}-{}/{len}", start + part - 1);
            response = response.with_header("Content-Range", content_range);
        }
        let response = with_validators(response).with_header("Accept-Ranges", "bytes");
        if part <= SMALL_FILE {
            // A small file is read here, on the pool thread, so the loop sends head and body
            // in one write; sendfile pays off only for larger ones. A file that shrank since
            // its length was taken falls back to the file region, which notices.
            let mut bytes = vec![0; part as usize];
            if std::os::unix::fs::FileExt::read_exact_at(&opened.file, &mut bytes, start).is_ok() {
                return response.with_body(bytes);
            }
        }
        response.with_file(FileRegion::new(opened.file, start, part))
    }

    /// With `precompressed`, the `.br` or `.gz` file beside `relative` that the client accepts
    /// best, if there is one; otherwise the file itself.
    fn pick_encoding(
        &self,
        headers: &Headers,
        identity: Opened,
        relative: &Path,
    ) -> (Opened, Option<&'static str>) {
        if !self.precompressed {
            return (identity, None);
        }
        for (encoding, suffix) in accepted_encodings(headers) {
            let mut variant = relative.as_os_str().to_owned();
            variant.push(suffix);
            if let Ok(opened) = self.root.open(Path::new(&variant))
                && opened.metadata.is_file()
            {
                return (opened, Some(encoding));
            }
        }
        // A variant that cannot be opened (missing, or even out of descriptors) leaves the
        // file itself, already open: the same content, only larger.
        (identity, None)
    }
}

/// The strong entity tag of a file: its modification time in nanoseconds and its size, in hex
/// (nginx's form, with nanoseconds), and the coding of a precompressed variant. Nothing about
/// where the file lives (its inode), and the same in every worker and after a restart.
fn entity_tag(modified_nanos: u128, len: u64, encoding: Option<&str>) -> String {
    match encoding {
        Some(coding) => format!("\"{modified_nanos:x}-{len:x}-{coding}\""),
        None => format!("\"{modified_nanos:x}-{len:x}\""),
    }
}

impl Handler for StaticFiles {
    fn handle(&self, request: Request) -> Response {
        self.serve(&request, request.path())
    }
}

fn not_found() -> Response {
    Response::text(404, "404 Not Found\n")
}

/// The answer when `relative` could not be opened or listed: `404` when it is missing, not a
/// directory where one was needed, forbidden, or a bad name (as nginx answers); `503` with
/// `Retry-After: 1` when the process or the system is out of descriptors or memory, a passing
/// shortage that a cache in front must not remember as a missing file; `500` otherwise.
fn failed(err: &io::Error, relative: &Path) -> Response {
    if resolve::means_missing(err) {
        log::debug!("static: {}: {err}", relative.display());
        return not_found();
    }
    let shortage = matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)
    );
    log::warn!("static: could not open {}: {err}", relative.display());
    if shortage {
        Response::text(503, "503 Service Unavailable\n").with_header("Retry-After", "1")
    } else {
        Response::text(500, "500 Internal Server Error\n")
    }
}

/// `301` to the same path with a `/` added, the query kept. Repeated slashes are collapsed, so
/// a path such as `//host/dir` cannot become a redirect to another site.
fn redirect_to_directory(request: &Request) -> Response {
    let mut location = String::with_capacity(request.path().len() + 1);
    for segment in request.path().split('/').filter(|s| !s.is_empty()) {
        location.push('/');
        location.push_str(segment);
    }
    location.push('/');
    if let Some(query) = request.query() {
        location.push('?');
        location.push_str(query);
    }
    Response::text(301, "301 Moved Permanently\n").with_header("Location", location)
}

/// The precompressed encodings the client accepts, best first: (`Content-Encoding` value,
/// file suffix). Brotli wins a tie with gzip; `q=0` refuses; `*` stands for anything unnamed.
fn accepted_encodings(headers: &Headers) -> Vec<(&'static str, &'static str)> {
    let mut named: Vec<(String, u16)> = Vec::new();
    for value in headers.get_all("accept-encoding") {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        for element in value.split(',') {
            let mut parts = element.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if coding.is_empty() {
                continue;
            }
            let mut quality = 1000;
            for parameter in parts {
                if let Some((key, q)) = parameter.split_once('=')
                    && key.trim().eq_ignore_ascii_case("q")
                {
                    quality = parse_quality(q.trim()).unwrap_or(0);
                }
            }
            named.push((coding, quality));
        }
    }
    let quality_of = |names: &[&str]| -> u16 {
        names
            .iter()
            .find_map(|name| named.iter().find(|(coding, _)| coding == name))
            .or_else(|| named.iter().find(|(coding, _)| coding == "*"))
            .map_or(0, |(_, q)| *q)
    };
    let mut accepted: Vec<(u16, &'static str, &'static str)> = [
        (quality_of(&["br"]), "br", ".br"),
        (quality_of(&["gzip", "x-gzip"]), "gzip", ".gz"),
    ]
    .into_iter()
    .filter(|(q, _, _)| *q > 0)
    .collect();
    // Stable: equal qualities keep brotli first.
    accepted.sort_by_key(|&(quality, _, _)| std::cmp::Reverse(quality));
    accepted
        .into_iter()
        .map(|(_, encoding, suffix)| (encoding, suffix))
        .collect()
}

/// A qvalue (`0`, `0.5`, `1.000`) in thousandths; `None` when it is not one.
fn parse_quality(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
