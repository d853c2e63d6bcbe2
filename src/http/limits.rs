//! The limits a request must keep: those the config sets ([`Limits`]) and the fixed ones.

/// Size limits applied to every request; exceeding one is an error with the status noted.
/// The config's `[limits]` section is this type; its defaults live there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line in bytes, excluding its CRLF (414).
    pub request_line: usize,
    /// Most header fields (field lines) in a head, and most trailer fields in a chunked body (431).
    pub headers: usize,
    /// Longest single field line (`name: value` as received), excluding its CRLF (431).
    pub header_field_size: usize,
    /// Largest head in bytes, from the first byte of the request line through the blank line that
    /// ends it; also the largest trailer section (431).
    pub header_bytes: usize,
    /// Largest request body in bytes after chunked decoding (413).
    pub body: u64,
}

/// Most empty lines (CRLF) ignored before a request line; some clients send one after a body.
pub const MAX_LEADING_EMPTY_LINES: usize = 16;

/// Longest chunk-size line (size and extensions, excluding CRLF) accepted in a chunked body.
pub const MAX_CHUNK_LINE: usize = 4096;

/// Most bytes of chunk extensions (counting leading zeros of chunk sizes too) accepted across one
/// chunked body. tine ignores extensions; 16 KiB is hyper's bound and far more than any client
/// that uses them sends.
pub const MAX_CHUNK_EXTENSIONS: usize = 16 * 1024;

/// Small limits the head scanner's and the head parser's tests share.
#[cfg(test)]
pub(super) const TEST_LIMITS: Limits = Limits {
    request_line: 64,
    headers: 4,
    header_field_size: 64,
    header_bytes: 512,
    body: 1000,
};
