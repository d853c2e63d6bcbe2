//! Finding where a request head ends, under the size limits, before anything parses it.

use super::limits::{Limits, MAX_LEADING_EMPTY_LINES};
use super::status::HttpError;
use super::syntax::is_tchar;

/// Where a complete head sits in the buffer, as found by [`HeadScan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeadSpan {
    /// First byte of the request line (after ignored empty lines).
    pub(crate) start: usize,
    /// One past the LF of the blank line ending the head.
    pub(crate) end: usize,
    /// Length of the request line without its CRLF.
    pub(crate) request_line_len: usize,
    /// Number of field lines.
    pub(crate) fields: usize,
}

const BARE_LF: HttpError = HttpError::new(400, "line ending without CR");
const LONE_CR: HttpError = HttpError::new(400, "CR not followed by LF");
const URI_TOO_LONG: HttpError = HttpError::new(414, "request line too long");
const FIELD_TOO_LONG: HttpError = HttpError::new(431, "header field too long");
const HEAD_TOO_LARGE: HttpError = HttpError::new(431, "request head too large");
pub(super) const TOO_MANY_FIELDS: HttpError = HttpError::new(431, "too many header fields");

/// Incremental search for the end of a head, one byte at a time.
///
/// The head is not consumed until it is complete, so the caller hands the same (growing) bytes
/// back on every call; remembering how far we looked keeps a head trickled in one byte per read
/// linear instead of quadratic. Every limit is checked at the byte that breaks it, so the partial
/// head never exceeds the limits and the error is the same however the bytes were split.
#[derive(Debug, Default)]
pub(crate) struct HeadScan {
    /// Next byte to examine.
    pos: usize,
    /// First byte of the request line, valid once `started`.
    start: usize,
    /// Whether the request line has begun (leading empty lines are behind us).
    started: bool,
    empty_lines: usize,
    /// The previous byte was a CR that must be followed by LF.
    cr: bool,
    /// Bytes of the current line so far, excluding its CRLF.
    line_len: usize,
    request_line_len: Option<usize>,
    /// The request line's first SP has been seen (the method is behind us).
    method_done: bool,
    fields: usize,
}

impl HeadScan {
    /// True once a byte of a request line has been seen.
    pub(crate) fn started(&self) -> bool {
        self.started
    }

    /// True inside a line past the bytes that need a byte-by-byte look (the method, and the first
    /// byte of a field line), where only CR and LF change anything.
    fn in_line_body(&self) -> bool {
        self.started
            && !self.cr
            && self.line_len > 0
            && (self.method_done || self.request_line_len.is_some())
    }

    /// Skips the ordinary bytes up to the next CR or LF in one step: the per-byte loop below is
    /// most of the cost of a head, and httparse checks these bytes again anyway. Fails exactly as
    /// the per-byte loop would, at the byte that first breaks a limit (the line limit first when
    /// one byte breaks both).
    fn skip_line_body(&mut self, buf: &[u8], limits: &Limits) -> Result<(), HttpError> {
        let rest = buf.get(self.pos..).unwrap_or_default();
        let run = line_end(rest);
        if run == 0 {
            return Ok(());
        }
        let (line_limit, line_error) = if self.request_line_len.is_some() {
            (limits.header_field_size, FIELD_TOO_LONG)
        } else {
            (limits.request_line, URI_TOO_LONG)
        };
        // The 1-based index within the run of the first byte past each limit.
        let line_break = (line_limit + 1).saturating_sub(self.line_len).max(1);
        let head_break = (limits.header_bytes + 1)
            .saturating_sub(self.pos - self.start)
            .max(1);
        if line_break <= run && line_break <= head_break {
            return Err(line_error);
        }
        if head_break <= run {
            return Err(HEAD_TOO_LARGE);
        }
        self.pos += run;
        self.line_len += run;
        Ok(())
    }

    /// Looks for the end of the head in `buf`, which must start where the previous call's did.
    pub(crate) fn scan(
        &mut self,
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<HeadSpan>, HttpError> {
        if buf.len() < self.pos {
            // The caller broke the contract (dropped unconsumed bytes); rescanning is the only
            // answer that cannot go wrong.
            *self = HeadScan::default();
        }
        loop {
            if self.in_line_body() {
                self.skip_line_body(buf, limits)?;
            }
            let Some(&b) = buf.get(self.pos) else { break };
            self.pos += 1;
            if !self.started {
                match (self.cr, b) {
                    (false, b'\r') => self.cr = true,
                    (true, b'\n') => {
                        self.cr = false;
                        self.empty_lines += 1;
                        if self.empty_lines > MAX_LEADING_EMPTY_LINES {
                            return Err(HttpError::new(
                                400,
                                "too many empty lines before the request line",
                            ));
                        }
                    }
                    (true, _) => return Err(LONE_CR),
                    (false, b'\n') => return Err(BARE_LF),
                    (false, _) => {
                        self.started = true;
                        self.start = self.pos - 1;
                    }
                }
                if !self.started {
                    continue;
                }
            }
            match b {
                b'\r' if self.cr => return Err(LONE_CR),
                b'\r' => self.cr = true,
                b'\n' if !self.cr => return Err(BARE_LF),
                b'\n' => {
                    self.cr = false;
                    match self.request_line_len {
                        None => self.request_line_len = Some(self.line_len),
                        Some(request_line_len) if self.line_len == 0 => {
                            if self.pos - self.start > limits.header_bytes {
                                return Err(HEAD_TOO_LARGE);
                            }
                            return Ok(Some(HeadSpan {
                                start: self.start,
                                end: self.pos,
                                request_line_len,
                                fields: self.fields,
                            }));
                        }
                        Some(_) => {}
                    }
                    self.line_len = 0;
                }
                _ if self.cr => return Err(LONE_CR),
                _ => {
                    if self.request_line_len.is_some() {
                        if self.line_len == 0 {
                            if b == b' ' || b == b'\t' {
                                // obs-fold, or whitespace before the first field: RFC 9112 §5.2
                                // and §2.2 allow rejecting both, and unfolding invites smuggling.
                                return Err(HttpError::new(400, "obsolete line folding"));
                            }
                            self.fields += 1;
                            if self.fields > limits.headers {
                                return Err(TOO_MANY_FIELDS);
                            }
                        }
                        self.line_len += 1;
                        if self.line_len > limits.header_field_size {
                            return Err(FIELD_TOO_LONG);
                        }
                    } else {
                        if !self.method_done {
                            // Checking the method as it arrives turns away TLS handshakes and
                            // other non-HTTP traffic at once instead of after a full line.
                            if b == b' ' && self.line_len > 0 {
                                self.method_done = true;
                            } else if !is_tchar(b) {
                                return Err(HttpError::new(400, "invalid method"));
                            }
                        }
                        self.line_len += 1;
                        if self.line_len > limits.request_line {
                            return Err(URI_TOO_LONG);
                        }
                    }
                }
            }
            if self.pos - self.start > limits.header_bytes {
                return Err(HEAD_TOO_LARGE);
            }
        }
        Ok(None)
    }
}

/// How many leading bytes of `s` are neither CR nor LF. Sixteen bytes at a time without an early
/// exit inside a block, so the compiler can compare them all at once.
fn line_end(s: &[u8]) -> usize {
    let mut blocks = s.chunks_exact(16);
    let mut skipped = 0;
    for block in blocks.by_ref() {
        let has_end = block
            .iter()
            .fold(false, |found, &b| found | (b == b'\r') | (b == b'\n'));
        if has_end {
            break;
        }
        skipped += 16;
    }
    let tail = s.get(skipped..).unwrap_or_default();
    skipped
        + tail
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(tail.len())
}

#[cfg(test)]
mod tests {
    use super::super::limits::TEST_LIMITS;
    use super::*;

    fn scan_all(buf: &[u8]) -> Result<Option<HeadSpan>, HttpError> {
        HeadScan::default().scan(buf, &TEST_LIMITS)
    }

    #[test]
    fn scan_finds_span_after_leading_empty_lines() {
        let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        let span = scan_all(buf).unwrap().unwrap();
        assert_eq!(span.start, 4);
        assert_eq!(span.end, buf.len() - 4);
        assert_eq!(span.request_line_len, 14);
        assert_eq!(span.fields, 1);
    }

    #[test]
    fn line_end_finds_the_first_cr_or_lf() {
        assert_eq!(line_end(b""), 0);
        assert_eq!(line_end(b"abc"), 3);
        assert_eq!(line_end(b"\rabc"), 0);
        for at in 0..40 {
            for end in [b'\r', b'\n'] {
                let mut s = vec![b'x'; 40];
                s[at] = end;
                s[39] = b'\n';
                assert_eq!(line_end(&s), at, "{at}");
            }
        }
        assert_eq!(line_end(&[b'x'; 48]), 48);
    }

    #[test]
    fn scan_resumes_where_it_stopped() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut scan = HeadScan::default();
        for n in 0..buf.len() {
            assert_eq!(scan.scan(&buf[..n], &TEST_LIMITS), Ok(None), "prefix {n}");
        }
        assert_eq!(
            scan.scan(buf, &TEST_LIMITS).unwrap().unwrap().end,
            buf.len()
        );
    }

    #[test]
    fn scan_survives_a_shrinking_buffer() {
        let mut scan = HeadScan::default();
        assert_eq!(
            scan.scan(b"GET / HTTP/1.1\r\nHost: a", &TEST_LIMITS),
            Ok(None)
        );
        let span = scan.scan(b"GET / HTTP/1.1\r\n\r\n", &TEST_LIMITS).unwrap();
        assert_eq!(span.map(|s| s.end), Some(18));
    }

    #[test]
    fn too_many_leading_empty_lines() {
        let mut buf = b"\r\n".repeat(MAX_LEADING_EMPTY_LINES);
        assert_eq!(scan_all(&buf), Ok(None));
        buf.extend_from_slice(b"\r\n");
        assert_eq!(scan_all(&buf).unwrap_err().status, 400);
    }
}
