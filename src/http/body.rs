//! Request body framing: a fixed Content-Length body and the chunked transfer coding
//! (RFC 9112 §7.1), decoded incrementally so every byte is consumed as soon as it arrives.
//!
//! Chunk lines and trailers are parsed byte by byte by a state machine rather than buffered
//! until their CRLF: nothing has to be rescanned when they trickle in, and the decoder holds no
//! partial line, only a few counters.

use super::limits::{Limits, MAX_CHUNK_EXTENSIONS, MAX_CHUNK_LINE};
use super::status::HttpError;
use super::syntax::{is_field_value_byte, is_tchar};

/// Progress of a body after feeding it some bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Bytes of the input that belonged to the body (framing included).
    pub(crate) used: usize,
    /// Whether the body is complete.
    pub(crate) done: bool,
}

/// Reads exactly `remaining` more bytes.
#[derive(Debug)]
pub(crate) struct FixedBody {
    pub(crate) remaining: u64,
}

impl FixedBody {
    pub(crate) fn feed(&mut self, input: &[u8], body: &mut Vec<u8>) -> Progress {
        let take = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(input.len());
        body.extend_from_slice(input.get(..take).unwrap_or_default());
        // take <= remaining, so this cannot underflow; saturating keeps that obvious.
        self.remaining = self.remaining.saturating_sub(take as u64);
        Progress {
            used: take,
            done: self.remaining == 0,
        }
    }
}

/// Where the chunked decoder is in the grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first hex digit of a chunk size.
    SizeStart,
    /// Inside the hex digits.
    Size,
    /// Whitespace after the size or a value; only `;` may follow (BWS before a chunk-ext).
    BwsBeforeSemi,
    /// After `;`, before an extension name (BWS allowed).
    ExtNameStart,
    ExtName,
    /// Whitespace after an extension name; `;` or `=` may follow.
    BwsAfterName,
    /// After `=`, before the value (BWS allowed).
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    ExtQuotedEscape,
    /// Just after a closing quote.
    ExtQuotedEnd,
    /// Saw the CR ending a chunk line.
    LineLf,
    /// Copying chunk data.
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer field line, or the blank line ending the trailers.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLineLf,
    TrailerEndLf,
    Done,
}

impl State {
    /// Inside a chunk extension (`;name=value` after the size): bytes there count against the
    /// per-body extension budget as well as the chunk line's length.
    fn in_extension(self) -> bool {
        use State::*;
        matches!(
            self,
            BwsBeforeSemi
                | ExtNameStart
                | ExtName
                | BwsAfterName
                | ExtValueStart
                | ExtToken
                | ExtQuoted
                | ExtQuotedEscape
                | ExtQuotedEnd
        )
    }
}

/// Decodes the chunked transfer coding into the body, enforcing the body and trailer limits.
#[derive(Debug)]
pub(crate) struct ChunkedBody {
    state: State,
    /// Size of the current chunk (while parsing its line), then bytes of it still to copy.
    size: u64,
    /// Bytes of the current chunk line so far, excluding CRLF.
    line_len: usize,
    /// Decoded body bytes so far.
    total: u64,
    trailer_fields: usize,
    trailer_bytes: usize,
    /// Length of the current trailer field line, excluding CRLF.
    trailer_line: usize,
    /// Bytes of chunk extensions and leading zeros of chunk sizes in the whole body so far.
    ext_bytes: usize,
    /// Length of the current trailer field name so far.
    trailer_name_len: usize,
    /// Bit `i` set while the current trailer name is still a prefix of `FORBIDDEN_TRAILERS[i]`.
    forbidden_candidates: u8,
}

/// Fields that must never arrive as trailers: they frame or route the message, and a front proxy
/// that merged trailers into the head would see a different request from ours.
const FORBIDDEN_TRAILERS: [&[u8]; 3] = [b"content-length", b"transfer-encoding", b"host"];

const BAD_SIZE: HttpError = HttpError::new(400, "invalid chunk size");
const BAD_EXT: HttpError = HttpError::new(400, "invalid chunk extension");
const BAD_TRAILER: HttpError = HttpError::new(400, "invalid trailer field");
const BAD_LINE_END: HttpError = HttpError::new(400, "CR not followed by LF");
const TOO_LARGE: HttpError = HttpError::new(413, "request body too large");

impl ChunkedBody {
    pub(crate) fn new() -> Self {
        ChunkedBody {
            state: State::SizeStart,
            size: 0,
            line_len: 0,
            total: 0,
            trailer_fields: 0,
            trailer_bytes: 0,
            trailer_line: 0,
            ext_bytes: 0,
            trailer_name_len: 0,
            forbidden_candidates: 0,
        }
    }

    /// Consumes as much of `input` as belongs to the body, appending decoded data to `body`.
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        limits: &Limits,
    ) -> Result<Progress, HttpError> {
        let mut used = 0;
        while self.state != State::Done {
            if self.state == State::Data {
                let rest = input.get(used..).unwrap_or_default();
                if rest.is_empty() {
                    break;
                }
                let take = usize::try_from(self.size)
                    .unwrap_or(usize::MAX)
                    .min(rest.len());
                body.extend_from_slice(rest.get(..take).unwrap_or_default());
                used += take;
                self.size = self.size.saturating_sub(take as u64);
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let Some(&b) = input.get(used) else { break };
            used += 1;
            self.step(b, limits)?;
        }
        Ok(Progress {
            used,
            done: self.state == State::Done,
        })
    }

    /// Advances the grammar by one byte outside chunk data.
    fn step(&mut self, b: u8, limits: &Limits) -> Result<(), HttpError> {
        use State::*;
        if (matches!(self.state, SizeStart | Size) || self.state.in_extension()) && b != b'\r' {
            self.line_len += 1;
            if self.line_len > MAX_CHUNK_LINE {
                return Err(HttpError::new(400, "chunk line too long"));
            }
        }
        if matches!(
            self.state,
            TrailerStart | TrailerName | TrailerValue | TrailerLineLf | TrailerEndLf
        ) {
            self.trailer_bytes += 1;
            if self.trailer_bytes > limits.header_bytes {
                return Err(HttpError::new(431, "trailer section too large"));
            }
            if matches!(self.state, TrailerStart | TrailerName | TrailerValue) && b != b'\r' {
                self.trailer_line += 1;
                if self.trailer_line > limits.header_field_size {
                    return Err(HttpError::new(431, "trailer field too long"));
                }
            }
        }
        self.state = match (self.state, b) {
            (SizeStart, _) => {
                let digit = hex_value(b).ok_or(BAD_SIZE)?;
                self.size = u64::from(digit);
                self.check_size(limits)?;
                Size
            }
            (Size, b'\r') => LineLf,
            (Size, b';') => ExtNameStart,
            (Size, b' ' | b'\t') => BwsBeforeSemi,
            (Size, _) => {
                let digit = hex_value(b).ok_or(BAD_SIZE)?;
                if self.size == 0 {
                    // A leading zero carries no information: count it with the extensions so a
                    // body cannot be padded out with them for free.
                    self.count_ext_byte()?;
                }
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(u64::from(digit)))
                    .ok_or(HttpError::new(400, "chunk size overflow"))?;
                self.check_size(limits)?;
                Size
            }
            (BwsBeforeSemi, b' ' | b'\t') => BwsBeforeSemi,
            (BwsBeforeSemi, b';') => ExtNameStart,
            (BwsBeforeSemi, _) => return Err(BAD_EXT),
            (ExtNameStart, b' ' | b'\t') => ExtNameStart,
            (ExtNameStart, _) if is_tchar(b) => ExtName,
            (ExtName, b'\r') => LineLf,
            (ExtName, b';') => ExtNameStart,
            (ExtName, b'=') => ExtValueStart,
            (ExtName, b' ' | b'\t') => BwsAfterName,
            (ExtName, _) if is_tchar(b) => ExtName,
            (BwsAfterName, b' ' | b'\t') => BwsAfterName,
            (BwsAfterName, b';') => ExtNameStart,
            (BwsAfterName, b'=') => ExtValueStart,
            (ExtValueStart, b' ' | b'\t') => ExtValueStart,
            (ExtValueStart, b'"') => ExtQuoted,
            (ExtValueStart, _) if is_tchar(b) => ExtToken,
            (ExtToken, b'\r') => LineLf,
            (ExtToken, b';') => ExtNameStart,
            (ExtToken, b' ' | b'\t') => BwsBeforeSemi,
            (ExtToken, _) if is_tchar(b) => ExtToken,
            (ExtQuoted, b'"') => ExtQuotedEnd,
            (ExtQuoted, b'\\') => ExtQuotedEscape,
            // qdtext: HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
            (ExtQuoted, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff) => ExtQuoted,
            // quoted-pair: "\" ( HTAB / SP / VCHAR / obs-text )
            (ExtQuotedEscape, b'\t' | b' '..=0x7e | 0x80..=0xff) => ExtQuoted,
            (ExtQuotedEnd, b'\r') => LineLf,
            (ExtQuotedEnd, b';') => ExtNameStart,
            (ExtQuotedEnd, b' ' | b'\t') => BwsBeforeSemi,
            (
                ExtNameStart | ExtName | BwsAfterName | ExtValueStart | ExtToken | ExtQuoted
                | ExtQuotedEscape | ExtQuotedEnd,
                _,
            ) => return Err(BAD_EXT),
            (LineLf, b'\n') => {
                self.line_len = 0;
                if self.size == 0 {
                    TrailerStart
                } else {
                    // check_size proved total + size is within the limit.
                    self.total = self.total.saturating_add(self.size);
                    Data
                }
            }
            (LineLf, _) => return Err(BAD_LINE_END),
            (DataCr, b'\r') => DataLf,
            (DataCr, _) => return Err(HttpError::new(400, "chunk data not followed by CRLF")),
            (DataLf, b'\n') => SizeStart,
            (DataLf, _) => return Err(HttpError::new(400, "chunk data not followed by CRLF")),
            (TrailerStart, b'\r') => TrailerEndLf,
            (TrailerStart, b' ' | b'\t') => {
                return Err(HttpError::new(400, "obsolete line folding"));
            }
            (TrailerStart, _) if is_tchar(b) => {
                self.trailer_fields += 1;
                if self.trailer_fields > limits.headers {
                    return Err(HttpError::new(431, "too many trailer fields"));
                }
                self.trailer_name_len = 0;
                self.forbidden_candidates = (1 << FORBIDDEN_TRAILERS.len()) - 1;
                self.match_trailer_name(b);
                TrailerName
            }
            (TrailerName, b':') => {
                if self.trailer_name_is_forbidden() {
                    return Err(HttpError::new(400, "framing field in trailers"));
                }
                TrailerValue
            }
            (TrailerName, _) if is_tchar(b) => {
                self.match_trailer_name(b);
                TrailerName
            }
            (TrailerValue, b'\r') => TrailerLineLf,
            (TrailerValue, _) if is_field_value_byte(b) => TrailerValue,
            (TrailerStart | TrailerName | TrailerValue, _) => return Err(BAD_TRAILER),
            (TrailerLineLf, b'\n') => {
                self.trailer_line = 0;
                TrailerStart
            }
            (TrailerEndLf, b'\n') => Done,
            (TrailerLineLf | TrailerEndLf, _) => return Err(BAD_LINE_END),
            // Data and Done never reach here: feed handles them without calling step.
            (Data | Done, _) => self.state,
        };
        if self.state.in_extension() {
            self.count_ext_byte()?;
        }
        Ok(())
    }

    /// Bounds chunk extensions over the whole body, not only per line: each chunk may carry a
    /// line of them for one byte of data, so the per-line limit alone would let a body within
    /// the size limit make us parse thousands of times its size.
    fn count_ext_byte(&mut self) -> Result<(), HttpError> {
        self.ext_bytes += 1;
        if self.ext_bytes > MAX_CHUNK_EXTENSIONS {
            return Err(HttpError::new(400, "chunk extensions too long"));
        }
        Ok(())
    }

    /// Narrows the forbidden names the current trailer name could still be, by its next byte.
    fn match_trailer_name(&mut self, b: u8) {
        for (i, name) in FORBIDDEN_TRAILERS.iter().enumerate() {
            let same = name
                .get(self.trailer_name_len)
                .is_some_and(|c| c.eq_ignore_ascii_case(&b));
            if !same {
                self.forbidden_candidates &= !(1 << i);
            }
        }
        self.trailer_name_len += 1;
    }

    fn trailer_name_is_forbidden(&self) -> bool {
        FORBIDDEN_TRAILERS.iter().enumerate().any(|(i, name)| {
            self.forbidden_candidates & (1 << i) != 0 && name.len() == self.trailer_name_len
        })
    }

    /// Rejects a chunk as soon as its partial size pushes the body over the limit: more digits can
    /// only make it larger, so there is no reason to wait for the rest of the line.
    fn check_size(&self, limits: &Limits) -> Result<(), HttpError> {
        match self.total.checked_add(self.size) {
            Some(t) if t <= limits.body => Ok(()),
            _ => Err(TOO_LARGE),
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            request_line: 100,
            headers: 4,
            header_field_size: 100,
            header_bytes: 100,
            body: 100,
        }
    }

    #[test]
    fn fixed_body_takes_only_its_length() {
        let mut body = Vec::new();
        let mut fixed = FixedBody { remaining: 5 };
        assert_eq!(
            fixed.feed(b"he", &mut body),
            Progress {
                used: 2,
                done: false
            }
        );
        assert_eq!(
            fixed.feed(b"", &mut body),
            Progress {
                used: 0,
                done: false
            }
        );
        assert_eq!(
            fixed.feed(b"lloGET", &mut body),
            Progress {
                used: 3,
                done: true
            }
        );
        assert_eq!(body, b"hello");
    }

    #[test]
    fn chunked_stops_at_the_end_of_the_body() {
        let mut body = Vec::new();
        let mut c = ChunkedBody::new();
        let input = b"3\r\nabc\r\n0\r\n\r\nNEXT";
        let p = c.feed(input, &mut body, &limits()).unwrap();
        assert_eq!(
            p,
            Progress {
                used: input.len() - 4,
                done: true
            }
        );
        assert_eq!(body, b"abc");
        // Once done, nothing more belongs to this body.
        assert_eq!(
            c.feed(b"NEXT", &mut body, &limits()).unwrap(),
            Progress {
                used: 0,
                done: true
            }
        );
    }

    #[test]
    fn chunked_resumes_mid_grammar() {
        let input: &[u8] = b"2;e=\"a\\\"b\"\r\nxy\r\n1\r\nz\r\n0\r\nT: 1\r\n\r\n";
        for split in 0..=input.len() {
            let mut body = Vec::new();
            let mut c = ChunkedBody::new();
            let first = c.feed(&input[..split], &mut body, &limits()).unwrap();
            assert_eq!(first.used, split);
            let second = c.feed(&input[split..], &mut body, &limits()).unwrap();
            assert_eq!(second.used, input.len() - split);
            assert!(second.done, "split {split}");
            assert_eq!(body, b"xyz");
        }
    }

    #[test]
    fn hex_digits() {
        assert_eq!(hex_value(b'0'), Some(0));
        assert_eq!(hex_value(b'9'), Some(9));
        assert_eq!(hex_value(b'a'), Some(10));
        assert_eq!(hex_value(b'F'), Some(15));
        for b in [b'g', b'G', b'x', b' ', b'-', b'+', b'_', 0, 0xff] {
            assert_eq!(hex_value(b), None);
        }
    }
}
