//! The per-connection request decoder: drives head scanning, head validation and body decoding
//! over the connection's read buffer, one request after another.

use std::mem;

use super::body::{ChunkedBody, FixedBody};
use super::head::HeadScan;
use super::limits::Limits;
use super::request::{Framing, RequestHead, parse_head};
use super::status::HttpError;

/// What [`Decoder::decode`] made of the buffer.
#[derive(Debug)]
pub enum Decoded {
    /// The request is not complete; drop `consumed` leading bytes and call again with more.
    NeedMore {
        /// Leading bytes of the buffer the decoder has taken (0 while the head is incomplete).
        consumed: usize,
    },
    /// A whole request; drop `consumed` leading bytes, and anything left is the next request.
    Complete {
        /// Leading bytes of the buffer that finished this request.
        consumed: usize,
        /// The validated head.
        head: RequestHead,
        /// The body, decoded (chunked framing and trailers removed).
        body: Vec<u8>,
    },
}

#[derive(Debug)]
enum BodyReader {
    Fixed(FixedBody),
    Chunked(ChunkedBody),
}

#[derive(Debug)]
enum State {
    Head,
    Body {
        head: RequestHead,
        reader: BodyReader,
    },
    Failed(HttpError),
}

/// Decodes the requests arriving on one connection.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    state: State,
    scan: HeadScan,
    body: Vec<u8>,
    continue_pending: bool,
}

/// Upper bound on the body buffer reserved up front: Content-Length is the client's claim, and
/// reserving it whole would let a client make us allocate the full body limit for free.
const MAX_BODY_RESERVE: u64 = 64 * 1024;

impl Decoder {
    /// A decoder for a fresh connection.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            state: State::Head,
            scan: HeadScan::default(),
            body: Vec::new(),
            continue_pending: false,
        }
    }

    /// Decodes from the front of `buf`, the unconsumed bytes of the connection's read buffer.
    ///
    /// `consumed` says how many leading bytes the caller must drop before the next call. The head
    /// is taken only once complete (`consumed` is 0 until then, ignored empty lines included);
    /// body bytes are taken as they arrive and kept inside the decoder. After `Complete` the
    /// decoder is ready for the next request; pipelined bytes after the request stay in `buf`.
    /// After an error the connection must be closed: every later call returns the same error.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Decoded, HttpError> {
        if let State::Failed(e) = &self.state {
            return Err(e.clone());
        }
        let result = self.decode_inner(buf);
        if let Err(e) = &result {
            self.state = State::Failed(e.clone());
            self.continue_pending = false;
            self.body = Vec::new();
        }
        result
    }

    fn decode_inner(&mut self, buf: &[u8]) -> Result<Decoded, HttpError> {
        let mut consumed = 0;
        if let State::Head = self.state {
            let Some(span) = self.scan.scan(buf, &self.limits)? else {
                return Ok(Decoded::NeedMore { consumed: 0 });
            };
            let head_bytes = buf.get(span.start..span.end).unwrap_or_default();
            let parsed = parse_head(head_bytes, &span, &self.limits)?;
            consumed = span.end;
            self.scan = HeadScan::default();
            let reader = match parsed.framing {
                Framing::Empty => return Ok(self.complete(consumed, parsed.head)),
                Framing::Length(n) => {
                    let reserve = usize::try_from(n.min(MAX_BODY_RESERVE)).unwrap_or(0);
                    self.body.reserve(reserve);
                    BodyReader::Fixed(FixedBody { remaining: n })
                }
                Framing::Chunked => BodyReader::Chunked(ChunkedBody::new()),
            };
            // A client that already sent body bytes is not waiting for the interim response.
            self.continue_pending = parsed.expect_continue && buf.len() == consumed;
            self.state = State::Body {
                head: parsed.head,
                reader,
            };
        }

        let input = buf.get(consumed..).unwrap_or_default();
        let progress = match &mut self.state {
            State::Body {
                reader: BodyReader::Fixed(fixed),
                ..
            } => fixed.feed(input, &mut self.body),
            State::Body {
                reader: BodyReader::Chunked(chunked),
                ..
            } => chunked.feed(input, &mut self.body, &self.limits)?,
            State::Head | State::Failed(_) => return Ok(Decoded::NeedMore { consumed }),
        };
        if progress.used > 0 {
            self.continue_pending = false;
        }
        consumed += progress.used;
        if !progress.done {
            return Ok(Decoded::NeedMore { consumed });
        }
        match mem::replace(&mut self.state, State::Head) {
            State::Body { head, .. } => Ok(self.complete(consumed, head)),
            other => {
                self.state = other;
                Ok(Decoded::NeedMore { consumed })
            }
        }
    }

    fn complete(&mut self, consumed: usize, head: RequestHead) -> Decoded {
        self.state = State::Head;
        self.scan = HeadScan::default();
        self.continue_pending = false;
        Decoded::Complete {
            consumed,
            head,
            body: mem::take(&mut self.body),
        }
    }

    /// Bytes of the current request's body decoded so far (chunked framing removed) and not
    /// yet taken with [`Decoder::take_body`].
    pub fn body_buffered(&self) -> usize {
        self.body.len()
    }

    /// Takes the body bytes decoded so far, so the caller can move a large body out of memory
    /// (to a file) as it arrives; the body in [`Decoded::Complete`] then holds only the bytes
    /// decoded after the last take. Limits still count the whole body.
    pub fn take_body(&mut self) -> Vec<u8> {
        mem::take(&mut self.body)
    }

    /// True exactly once after a head with `Expect: 100-continue` (HTTP/1.1, body expected) was
    /// parsed and before any of its body arrived: the caller then writes
    /// `HTTP/1.1 100 Continue\r\n\r\n`.
    pub fn take_continue(&mut self) -> bool {
        mem::take(&mut self.continue_pending)
    }

    /// The head of the request whose body is being decoded: between a complete head and the
    /// end of its body (see [`Decoder::reading_body`]), for a caller that hands the request on
    /// before its body has arrived.
    pub fn head(&self) -> Option<&RequestHead> {
        match &self.state {
            State::Body { head, .. } => Some(head),
            State::Head | State::Failed(_) => None,
        }
    }

    /// True between a complete head and the end of its body: the head has arrived and been
    /// accepted, and body bytes are still due. A caller timing out a slow head uses the head
    /// deadline while this is false (and [`Decoder::is_idle`] is false), the body deadline while
    /// it is true. False after an error.
    pub fn reading_body(&self) -> bool {
        matches!(self.state, State::Body { .. })
    }

    /// True while no byte of the next request has been seen by [`Decoder::decode`] (ignored empty
    /// lines do not count), so an idle connection can be closed quietly. False after an error.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head) && !self.scan.started()
    }
}

#[cfg(test)]
mod tests;
