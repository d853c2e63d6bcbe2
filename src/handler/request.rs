//! The `Request` a handler receives: method, target, version, header fields, body and where it
//! came from, with percent-decoding helpers for paths and queries.

use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use crate::config::BindAddr;
use crate::forwarded::{Client, ForwardedHeader, Trusted};

pub use crate::http::Version;

mod body;

pub use body::{BodyReader, RequestBody};

/// A request's header fields: order kept, duplicates kept, names compared case-insensitively.
///
/// ```
/// use tine::handler::Request;
///
/// let request = Request::builder("GET", "/")
///     .header("Accept", "text/html")
///     .header("X-Forwarded-For", "10.0.0.1")
///     .header("x-forwarded-for", "10.0.0.2")
///     .build();
/// let headers = request.headers();
/// assert_eq!(headers.get_str("accept"), Some("text/html"));
/// let hops: Vec<&[u8]> = headers.get_all("X-FORWARDED-FOR").collect();
/// assert_eq!(hops, [&b"10.0.0.1"[..], &b"10.0.0.2"[..]]);
/// let names: Vec<&str> = headers.iter().map(|(name, _)| name).collect();
/// assert_eq!(names, ["Accept", "X-Forwarded-For", "x-forwarded-for"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// Wraps fields in the order they were received.
    pub fn from_fields(fields: Vec<(String, Vec<u8>)>) -> Self {
        Headers { fields }
    }

    /// The first value of the field `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }

    /// The first value of `name` as text, if it is valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// Every value of the field `name`, in the order received.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |(field, _)| field.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }

    /// Every field as `(name, value)`, in the order received.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + Clone {
        self.fields
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_slice()))
    }

    /// How many fields there are, duplicates counted.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// One HTTP request, head and body fully received.
///
/// A body up to `[limits] body_buffer` is held in memory; a larger one was written to an
/// unlinked temporary file as it arrived. [`Request::body_reader`] reads either;
/// [`Request::body`] gives the bytes of one held in memory.
///
/// ```
/// use std::io::Read;
/// use tine::handler::Request;
///
/// let request = Request::builder("POST", "/upload?name=a+b").body("data").build();
/// assert_eq!(request.query_param("name").as_deref(), Some("a b"));
/// assert_eq!(request.body(), Some(&b"data"[..]));
/// let mut text = String::new();
/// request.body_reader().read_to_string(&mut text)?;
/// assert_eq!(text, "data");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Request {
    method: String,
    target: String,
    version: Version,
    headers: Headers,
    body: RequestBody,
    peer: Option<SocketAddr>,
    listener: Option<Arc<BindAddr>>,
    /// The proxies whose forwarding headers are believed (`[server] forwarded_allow_ips`).
    trusted: Option<Arc<[Trusted]>>,
    /// The header those proxies report the client in (`[server] forwarded_header`).
    forwarded_header: ForwardedHeader,
    /// It came over TLS: its scheme is `https` unless a trusted proxy says otherwise.
    tls: bool,
    /// When the worker handed it to the application's runner, for its queue wait.
    queued: Option<Instant>,
}

impl Request {
    /// Starts building a request, for tests and for embedding.
    pub fn builder(method: &str, target: &str) -> RequestBuilder {
        RequestBuilder {
            request: Request::from_parts(
                method.to_owned(),
                target.to_owned(),
                Version::Http11,
                Headers::default(),
                Vec::new(),
                None,
            ),
        }
    }

    /// Assembles a request from its decoded parts, with a body in memory.
    pub fn from_parts(
        method: String,
        target: String,
        version: Version,
        headers: Headers,
        body: Vec<u8>,
        peer: Option<SocketAddr>,
    ) -> Request {
        Request {
            method,
            target,
            version,
            headers,
            body: RequestBody::Memory(body),
            peer,
            listener: None,
            trusted: None,
            forwarded_header: ForwardedHeader::default(),
            tls: false,
            queued: None,
        }
    }

    /// Notes that the request is being handed to the application's runner now.
    pub(crate) fn mark_queued(&mut self) {
        self.queued = Some(Instant::now());
    }

    /// When the request was handed to the application's runner, if the worker said.
    pub(crate) fn queued_at(&self) -> Option<Instant> {
        self.queued
    }

    /// The method, e.g. `GET`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target exactly as received, e.g. `/search?q=tine`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The path part of the target, still percent-encoded: `/search` for `/search?q=tine`, and
    /// for an absolute-form target (`http://example.com/search?q=tine`, as sent to a proxy) too;
    /// `*` for `OPTIONS *`. Decode it with [`percent_decode_path`] (or check it segment by
    /// segment first, as the static handler does, if it will name a file).
    ///
    /// ```
    /// use tine::handler::Request;
    ///
    /// assert_eq!(Request::builder("GET", "/a%20b?x=1#top").build().path(), "/a%20b");
    /// assert_eq!(Request::builder("GET", "http://example.com/a?x=1").build().path(), "/a");
    /// assert_eq!(Request::builder("GET", "http://example.com").build().path(), "/");
    /// ```
    pub fn path(&self) -> &str {
        let target = self.target.as_str();
        let start = match target.find("://") {
            Some(scheme_end) if !target.starts_with('/') => {
                let authority = scheme_end + 3;
                target[authority..]
                    .find(['/', '?', '#'])
                    .map_or(target.len(), |i| authority + i)
            }
            _ => 0,
        };
        let rest = &target[start..];
        let path = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
        if path.is_empty() && start > 0 {
            "/"
        } else {
            path
        }
    }

    /// The query string without the `?`, still percent-encoded, if there is one (`q=tine`).
    pub fn query(&self) -> Option<&str> {
        let start = self.target.find('?')? + 1;
        let rest = &self.target[start..];
        Some(&rest[..rest.find('#').unwrap_or(rest.len())])
    }

    /// The query's `name=value` pairs in order, percent-decoded (`+` is a space); a pair
    /// without `=` has an empty value, and repeated names are all kept.
    ///
    /// ```
    /// use tine::handler::Request;
    ///
    /// let request = Request::builder("GET", "/s?q=a+b&tag=x&tag=y&flag").build();
    /// let pairs: Vec<(String, String)> = request.query_pairs().collect();
    /// assert_eq!(pairs, [("q", "a b"), ("tag", "x"), ("tag", "y"), ("flag", "")]
    ///     .map(|(k, v)| (k.to_owned(), v.to_owned())));
    /// assert_eq!(request.query_param("tag").as_deref(), Some("x"));
    /// ```
    pub fn query_pairs(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.query()
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key), percent_decode(value))
            })
    }

    /// The first value of the query parameter `name`, percent-decoded (`+` is a space).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// The protocol version the client spoke.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The header fields.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name)
    }

    /// The body's length in bytes (0 when the request had none).
    pub fn body_len(&self) -> u64 {
        self.body.len()
    }

    /// The body when it is held in memory (empty when the request had none); `None` for a
    /// body larger than `[limits] body_buffer`, which is in a temporary file: read it with
    /// [`Request::body_reader`].
    pub fn body(&self) -> Option<&[u8]> {
        match &self.body {
            RequestBody::Memory(bytes) => Some(bytes),
            RequestBody::File(..) => None,
        }
    }

    /// A reader over the body, wherever it is. Each reader starts at the beginning.
    pub fn body_reader(&self) -> BodyReader<'_> {
        self.body.reader()
    }

    /// The temporary file holding a body larger than `[limits] body_buffer`, from offset 0 for
    /// [`Request::body_len`] bytes; `None` for a body in memory. The file is already unlinked:
    /// it goes away with the request.
    pub fn body_file(&self) -> Option<&File> {
        match &self.body {
            RequestBody::Memory(_) => None,
            RequestBody::File(file, _) => Some(file),
        }
    }

    /// Takes the body out of the request: without copying when it is in memory, read from its
    /// file otherwise.
    ///
    /// # Errors
    ///
    /// When a body in a temporary file cannot be read.
    pub fn into_body(self) -> io::Result<Vec<u8>> {
        match self.body {
            RequestBody::Memory(bytes) => Ok(bytes),
            RequestBody::File(..) => {
                let mut bytes = Vec::with_capacity(usize::try_from(self.body_len()).unwrap_or(0));
                self.body_reader().read_to_end(&mut bytes)?;
                Ok(bytes)
            }
        }
    }

    /// Takes the body out of the request, without copying, wherever it is.
    pub fn into_body_parts(self) -> RequestBody {
        self.body
    }

    /// The peer's address, for TCP listeners.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The client as the server sees it: the peer, or, when the peer is a proxy listed in
    /// `[server] forwarded_allow_ips`, the address and scheme it reports in the header
    /// `[server] forwarded_header` names: `X-Forwarded-For` / `X-Forwarded-Proto` (the
    /// default) or `Forwarded`, every line of it, walked from the right to the first untrusted
    /// hop (the access log's rule; see [`crate::forwarded`]). Worked out from the headers on
    /// each call.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tine::forwarded::{ForwardedHeader, Trusted};
    /// use tine::handler::Request;
    ///
    /// let proxy = "127.0.0.1:5000".parse().unwrap();
    /// let request = Request::builder("GET", "/")
    ///     .header("X-Forwarded-For", "203.0.113.9")
    ///     .header("X-Forwarded-Proto", "https")
    ///     .peer(Some(proxy))
    ///     .build();
    /// assert_eq!(request.client_addr(), Some(proxy.ip()), "no proxy is trusted");
    /// let trusted: Arc<[Trusted]> = Arc::from(vec!["127.0.0.1".parse::<Trusted>().unwrap()]);
    /// let request = Request::builder("GET", "/")
    ///     .header("Forwarded", "for=198.51.100.7")
    ///     .header("X-Forwarded-For", "203.0.113.9")
    ///     .header("X-Forwarded-Proto", "https")
    ///     .peer(Some(proxy))
    ///     .trusted(trusted.clone())
    ///     .build();
    /// assert_eq!(request.client_addr(), Some("203.0.113.9".parse().unwrap()));
    /// assert_eq!(request.scheme(), "https");
    /// let request = Request::builder("GET", "/")
    ///     .header("Forwarded", "for=198.51.100.7")
    ///     .peer(Some(proxy))
    ///     .trusted(trusted)
    ///     .forwarded_header(ForwardedHeader::Forwarded)
    ///     .build();
    /// assert_eq!(request.client_addr(), Some("198.51.100.7".parse().unwrap()));
    /// ```
    pub fn client(&self) -> Client {
        crate::forwarded::client(
            self.peer.map(|p| p.ip()),
            self.headers.iter(),
            self.trusted.as_deref().unwrap_or_default(),
            self.forwarded_header,
            if self.tls { "https" } else { "http" },
        )
    }

    /// The client's address (see [`Request::client`]).
    pub fn client_addr(&self) -> Option<IpAddr> {
        self.client().addr
    }

    /// `https` for a request that came over TLS, else `http`, unless a trusted proxy says
    /// which the client used (see [`Request::client`]).
    pub fn scheme(&self) -> &'static str {
        self.client().scheme
    }

    /// The listening socket the request came in on: its address (the port the kernel chose
    /// for a `:0` bind included), or `unix:PATH`. `None` for a request not received by a
    /// server, such as one built in a test.
    ///
    /// ```
    /// use tine::config::BindAddr;
    /// use tine::handler::Request;
    ///
    /// let admin: BindAddr = "127.0.0.1:9000".parse().unwrap();
    /// let request = Request::builder("GET", "/").listener(admin.clone()).build();
    /// assert_eq!(request.listener(), Some(&admin));
    /// ```
    pub fn listener(&self) -> Option<&BindAddr> {
        self.listener.as_deref()
    }
}

/// Builds a [`Request`]; see [`Request::builder`].
#[derive(Debug)]
pub struct RequestBuilder {
    request: Request,
}

impl RequestBuilder {
    /// Sets the protocol version.
    pub fn version(mut self, version: Version) -> Self {
        self.request.version = version;
        self
    }

    /// Adds a header field.
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.request
            .headers
            .fields
            .push((name.to_owned(), value.into()));
        self
    }

    /// Replaces all header fields.
    pub fn headers(mut self, headers: Headers) -> Self {
        self.request.headers = headers;
        self
    }

    /// Sets the body, held in memory.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.request.body = RequestBody::Memory(body.into());
        self
    }

    /// Sets the body wherever it is, as [`Request::into_body_parts`] gives it back.
    pub fn body_parts(mut self, body: RequestBody) -> Self {
        self.request.body = body;
        self
    }

    /// Sets the body to the first `len` bytes of `file`, as the server does for a body larger
    /// than `[limits] body_buffer`.
    pub fn body_file(mut self, file: File, len: u64) -> Self {
        self.request.body = RequestBody::File(Arc::new(file), len);
        self
    }

    /// Sets the peer address.
    pub fn peer(mut self, peer: Option<SocketAddr>) -> Self {
        self.request.peer = peer;
        self
    }

    /// Sets the proxies whose forwarding headers are believed (see [`Request::client`]).
    pub fn trusted(mut self, trusted: Arc<[Trusted]>) -> Self {
        self.request.trusted = Some(trusted);
        self
    }

    /// Marks the request as received over TLS: its [`Request::scheme`] is `https` unless a
    /// trusted proxy says otherwise.
    ///
    /// ```
    /// use tine::handler::Request;
    ///
    /// assert_eq!(Request::builder("GET", "/").build().scheme(), "http");
    /// assert_eq!(Request::builder("GET", "/").tls(true).build().scheme(), "https");
    /// ```
    pub fn tls(mut self, tls: bool) -> Self {
        self.request.tls = tls;
        self
    }

    /// Sets the header the trusted proxies report the client in (see [`Request::client`]);
    /// `X-Forwarded-For` unless set.
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.request.forwarded_header = header;
        self
    }

    /// Sets the listener the request came in on.
    pub fn listener(mut self, listener: impl Into<Arc<BindAddr>>) -> Self {
        self.request.listener = Some(listener.into());
        self
    }

    /// Finishes the request.
    pub fn build(self) -> Request {
        self.request
    }
}

/// Decodes a query-string component or form field: `%XX` escapes, and `+` as a space. An
/// invalid escape is kept as it is, and invalid UTF-8 becomes U+FFFD.
///
/// ```
/// assert_eq!(tine::handler::percent_decode("two+words%21"), "two words!");
/// ```
pub fn percent_decode(text: &str) -> String {
    String::from_utf8_lossy(&decode(text, true)).into_owned()
}

/// Decodes a path or path segment: `%XX` escapes only, since `+` is a plus sign in a path. An
/// invalid escape is kept as it is, and invalid UTF-8 becomes U+FFFD.
///
/// ```
/// assert_eq!(tine::handler::percent_decode_path("/a+b/%C3%A9t%C3%A9"), "/a+b/été");
/// ```
pub fn percent_decode_path(text: &str) -> String {
    String::from_utf8_lossy(&decode(text, false)).into_owned()
}

/// The bytes a path's `%XX` escapes stand for, without reading them as UTF-8 (a file name on
/// Linux is bytes); `+` is kept, and an invalid escape is kept as it is.
///
/// ```
/// assert_eq!(tine::handler::percent_decode_bytes("%FF%2f+"), b"\xff/+");
/// ```
pub fn percent_decode_bytes(text: &str) -> Vec<u8> {
    decode(text, false)
}

fn decode(text: &str, plus_is_space: bool) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let escaped = match bytes.get(i + 1..i + 3) {
            Some(&[high, low]) if byte == b'%' => hex_value(high).zip(hex_value(low)),
            _ => None,
        };
        match escaped {
            Some((high, low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            None => {
                out.push(if plus_is_space && byte == b'+' {
                    b' '
                } else {
                    byte
                });
                i += 1;
            }
        }
    }
    out
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|value| value as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_query_split_the_target() {
        let request = Request::builder("GET", "/a/b?x=1&y=two%20words+too#frag").build();
        assert_eq!(request.path(), "/a/b");
        assert_eq!(request.query(), Some("x=1&y=two%20words+too"));
        assert_eq!(request.query_param("x").as_deref(), Some("1"));
        assert_eq!(request.query_param("y").as_deref(), Some("two words too"));
        assert_eq!(request.query_param("z"), None);
        let bare = Request::builder("GET", "/plain").build();
        assert_eq!(bare.path(), "/plain");
        assert_eq!(bare.query(), None);
        assert_eq!(bare.query_pairs().count(), 0);
        let table = [
            ("http://h/x/y?q", "/x/y"),
            ("https://h:8443?q=1", "/"),
            ("http://h#f", "/"),
            ("*", "*"),
            ("/a://b", "/a://b"),
            ("/?x", "/"),
        ];
        for (target, path) in table {
            assert_eq!(
                Request::builder("GET", target).build().path(),
                path,
                "{target}"
            );
        }
    }

    #[test]
    fn percent_decode_keeps_invalid_escapes() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%e2%82%ac"), "€");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        assert_eq!(
            percent_decode_path("%+1%-1"),
            "%+1%-1",
            "only hex digits escape"
        );
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode_path("a+b%20c"), "a+b c");
        assert_eq!(percent_decode_bytes("%C3%A9%00%zz"), b"\xc3\xa9\0%zz");
    }

    #[test]
    fn bodies_in_memory_and_in_files_read_alike() {
        let memory = Request::builder("POST", "/").body("0123456789").build();
        assert_eq!(memory.body_len(), 10);
        assert_eq!(memory.body(), Some(&b"0123456789"[..]));
        assert!(memory.body_file().is_none());

        let mut file = std::fs::File::open("/proc/self/cmdline").unwrap();
        let mut expected = Vec::new();
        file.read_to_end(&mut expected).unwrap();
        expected.truncate(5);
        let spilled = Request::builder("POST", "/")
            .body_file(file, expected.len() as u64)
            .build();
        assert_eq!(spilled.body(), None);
        assert!(spilled.body_file().is_some());
        assert_eq!(spilled.body_len(), 5);
        // Two readers, and a clone's reader, each from the start.
        let twin = spilled.clone();
        let mut first = spilled.body_reader();
        let mut one = [0u8; 2];
        first.read_exact(&mut one).unwrap();
        let mut all = Vec::new();
        twin.body_reader().read_to_end(&mut all).unwrap();
        assert_eq!(all, expected);
        let mut rest = Vec::new();
        first.read_to_end(&mut rest).unwrap();
        assert_eq!([&one[..], &rest].concat(), expected);
        assert_eq!(spilled.into_body().unwrap(), expected);
        assert_eq!(memory.into_body().unwrap(), b"0123456789");
    }

    #[test]
    fn headers_are_case_insensitive_and_keep_duplicates() {
        let request = Request::builder("GET", "/")
            .header("X-Tag", "one")
            .header("x-tag", "two")
            .header("Host", "example")
            .build();
        assert_eq!(request.header("x-TAG"), Some(&b"one"[..]));
        let all: Vec<_> = request.headers().get_all("X-Tag").collect();
        assert_eq!(all, vec![&b"one"[..], &b"two"[..]]);
        assert_eq!(request.headers().len(), 3);
        assert_eq!(request.headers().get_str("host"), Some("example"));
    }
}
