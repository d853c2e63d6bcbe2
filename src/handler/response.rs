//! The `Response` a handler returns, and its `Body`: bytes in memory, a region of an open file
//! that the worker's event loop sends with `sendfile(2)`, or a stream of chunks produced on
//! demand.

use std::fmt;
use std::fs::File;
use std::io;

/// Header fields as `(name, value)` pairs, in order.
pub type HeaderFields = Vec<(String, Vec<u8>)>;

/// A response: status, header fields and a body.
///
/// Framing (`Content-Length`, `Transfer-Encoding`, `Connection`) belongs to the server, which
/// drops such fields set here and writes its own from the body; `Date` and `Server` are added
/// unless the handler set them.
///
/// ```
/// use tine::handler::Response;
///
/// let response = Response::text(200, "hi\n").with_header("Cache-Control", "no-store");
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.body_bytes(), b"hi\n");
/// assert_eq!(response.body().len(), Some(3));
/// ```
pub struct Response {
    status: u16,
    reason: Option<Box<str>>,
    headers: HeaderFields,
    body: Body,
}

/// A streamed body: chunks produced one at a time, on a pool thread, as the client takes them.
pub type BodyStream = Box<dyn Iterator<Item = Vec<u8>> + Send>;

/// What follows a response's head.
pub enum Body {
    /// Bytes in memory, written as they are.
    Bytes(Vec<u8>),
    /// A region of an open file. The worker's event loop sends it with `sendfile(2)`, a piece at
    /// a time as the client takes it: the file is never read into memory and no pool thread
    /// waits on the client, whatever its size.
    File(FileRegion),
    /// Chunks of unknown total length, sent chunked to HTTP/1.1 clients and delimited by closing
    /// the connection for HTTP/1.0 ones.
    ///
    /// The event loop asks a pool thread for the next chunk only once the connection has
    /// written out nearly all it had, so a slow client holds at most about one chunk in memory
    /// and no thread, and a fast producer waits for the client rather than filling memory.
    /// Empty chunks are skipped. If `next` panics, the connection is closed without the end
    /// of the body, so the client can tell the response is incomplete.
    Stream(BodyStream),
    /// A stream whose length the handler promised (a `Content-Length` of its own): sent with
    /// that `Content-Length`; chunks past it are cut off, and a stream that ends short closes
    /// the connection (and is logged), so the client can tell the response is incomplete.
    SizedStream(BodyStream, u64),
}

impl Body {
    /// The producer of a streamed body, `None` for the others: what is left to drop (on a
    /// pool thread, since dropping it may run the application's code) when the body is not
    /// sent.
    pub fn into_stream(self) -> Option<BodyStream> {
        match self {
            Body::Stream(producer) | Body::SizedStream(producer, _) => Some(producer),
            Body::Bytes(_) | Body::File(_) => None,
        }
    }

    /// The body's length in bytes; `None` for a stream, whose length is known only at its end.
    pub fn len(&self) -> Option<u64> {
        match self {
            Body::Bytes(bytes) => Some(bytes.len() as u64),
            Body::File(region) => Some(region.len()),
            Body::Stream(_) => None,
            Body::SizedStream(_, len) => Some(*len),
        }
    }

    /// True for a body known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            Body::File(region) => region.fmt(f),
            Body::Stream(_) => f.write_str("Stream"),
            Body::SizedStream(_, len) => write!(f, "SizedStream({len} bytes)"),
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::Bytes(Vec::new())
    }
}

/// `len` bytes of an open file from `offset`: a [`Body::File`].
///
/// The file should not shrink while it is sent: if it ends before `offset + len`, the server
/// cannot keep the promise its `Content-Length` made, so it closes the connection and the client
/// sees a truncated response rather than a wrong one.
///
/// ```
/// use std::io::Write;
/// use tine::handler::{FileRegion, Response};
///
/// let path = std::env::temp_dir().join(format!("tine-doc-region-{}", std::process::id()));
/// std::fs::File::create(&path)?.write_all(b"0123456789")?;
///
/// let whole = FileRegion::whole(std::fs::File::open(&path)?)?;
/// assert_eq!((whole.offset(), whole.len()), (0, 10));
/// let part = FileRegion::new(std::fs::File::open(&path)?, 2, 5);
/// let response = Response::new(206).with_file(part);
/// assert_eq!(response.body().len(), Some(5));
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct FileRegion {
    file: File,
    offset: u64,
    len: u64,
}

impl FileRegion {
    /// The region of `file` from `offset`, `len` bytes long.
    pub fn new(file: File, offset: u64, len: u64) -> FileRegion {
        FileRegion { file, offset, len }
    }

    /// The whole of `file`, as long as it is now.
    ///
    /// # Errors
    ///
    /// When the file's size cannot be read.
    pub fn whole(file: File) -> io::Result<FileRegion> {
        let len = file.metadata()?.len();
        Ok(FileRegion::new(file, 0, len))
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where the region starts in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// How many bytes the region holds.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty region.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Splits the region into the file, the offset and the length.
    pub fn into_parts(self) -> (File, u64, u64) {
        (self.file, self.offset, self.len)
    }
}

impl fmt::Debug for FileRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileRegion")
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            reason: None,
            headers: Vec::new(),
            body: Body::default(),
        }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response::new(status)
            .with_header("Content-Type", "text/plain; charset=utf-8")
            .with_body(body.into().into_bytes())
    }

    /// Adds a header field (kept in order; duplicates allowed).
    pub fn with_header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sets the body to bytes in memory.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Bytes(body.into());
        self
    }

    /// Sets the body to a region of a file, sent with `sendfile(2)`; `Content-Length` is the
    /// region's length.
    pub fn with_file(mut self, region: FileRegion) -> Self {
        self.body = Body::File(region);
        self
    }

    /// Sets the body to a stream of chunks (see [`Body::Stream`]).
    ///
    /// ```
    /// use tine::handler::Response;
    ///
    /// let countdown = (1..=3).rev().map(|n| format!("{n}...\n").into_bytes());
    /// let response = Response::new(200)
    ///     .with_header("Content-Type", "text/plain")
    ///     .with_stream(countdown);
    /// assert_eq!(response.body().len(), None);
    /// ```
    pub fn with_stream<I>(mut self, chunks: I) -> Self
    where
        I: Iterator<Item = Vec<u8>> + Send + 'static,
    {
        self.body = Body::Stream(Box::new(chunks));
        self
    }

    /// Sets the body to a stream of chunks that add up to `len` bytes (see
    /// [`Body::SizedStream`]).
    pub fn with_sized_stream<I>(mut self, chunks: I, len: u64) -> Self
    where
        I: Iterator<Item = Vec<u8>> + Send + 'static,
    {
        self.body = Body::SizedStream(Box::new(chunks), len);
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Sends `reason` as the status line's reason phrase instead of the standard one for the
    /// code (as a WSGI application's `"200 Fine"` asks). Only printable ASCII is kept: a phrase
    /// with anything else is ignored and the standard one is sent.
    ///
    /// ```
    /// use tine::handler::Response;
    ///
    /// assert_eq!(Response::new(200).with_reason("Fine").reason(), Some("Fine"));
    /// assert_eq!(Response::new(200).with_reason("a\r\nb").reason(), None);
    /// ```
    pub fn with_reason(mut self, reason: &str) -> Self {
        let printable = reason
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic());
        self.reason = printable.then(|| reason.into());
        self
    }

    /// The reason phrase set with [`Response::with_reason`], if any.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Takes the reason phrase out, for the server's writer.
    pub fn take_reason(&mut self) -> Option<Box<str>> {
        self.reason.take()
    }

    /// The header fields, in order.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }

    /// The body.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// The body when it is bytes in memory; empty for any other kind of body.
    pub fn body_bytes(&self) -> &[u8] {
        match &self.body {
            Body::Bytes(bytes) => bytes,
            _ => &[],
        }
    }

    /// Splits the response into its parts, for the server's writer.
    pub fn into_parts(self) -> (u16, HeaderFields, Body) {
        (self.status, self.headers, self.body)
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, String)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), String::from_utf8_lossy(value).into_owned()))
            .collect();
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &headers)
            .field("body", &self.body)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_know_their_length() {
        assert_eq!(Response::new(204).body().len(), Some(0));
        assert!(Response::new(204).body().is_empty());
        let text = Response::text(200, "four");
        assert_eq!(text.body().len(), Some(4));
        assert_eq!(
            text.header("content-type"),
            Some(&b"text/plain; charset=utf-8"[..])
        );
    }

    #[test]
    fn a_file_body_is_not_bytes() {
        let file = File::open("/proc/self/status").expect("procfs");
        let response = Response::new(200).with_file(FileRegion::new(file, 3, 7));
        assert_eq!(response.body().len(), Some(7));
        assert_eq!(response.body_bytes(), b"");
        let (status, headers, body) = response.into_parts();
        assert_eq!((status, headers.len()), (200, 0));
        let Body::File(region) = body else {
            panic!("expected a file body, got {body:?}");
        };
        assert_eq!((region.offset(), region.len()), (3, 7));
        assert!(format!("{region:?}").contains("len: 7"));
    }

    #[test]
    fn a_stream_has_no_length_until_it_ends() {
        let response =
            Response::new(200).with_stream(vec![b"a".to_vec(), b"b".to_vec()].into_iter());
        assert_eq!(response.body().len(), None);
        assert!(!response.body().is_empty());
        let (_, _, body) = response.into_parts();
        let Body::Stream(chunks) = body else {
            panic!("expected a stream");
        };
        assert_eq!(chunks.collect::<Vec<_>>().concat(), b"ab");
    }
}
