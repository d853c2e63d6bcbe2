//! What a connection has left to write of a response: a queue of buffers (the head, a bytes
//! body, a stream's chunks so far), then maybe a tail: the rest of a file region, sent with
//! `sendfile`, or the rest of a stream, whose chunks a pool thread pulls.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use super::peer_text;
use crate::handler::BodyStream;
use crate::http;
use crate::listeners::Stream;
use crate::listeners::tls::Flushed;
use crate::sys;

/// Most bytes one connection writes before the loop turns to other connections; a client that
/// takes more than this at once resumes after the next poll.
pub(super) const WRITE_BUDGET: usize = 1 << 20;
/// Most buffers handed to one `writev`.
const MAX_IOVECS: usize = 16;
/// A streamed body's next chunk is asked for once less than this is left to write, so the
/// producer works while the socket drains, and a connection never holds much more than this
/// plus one chunk.
pub(super) const LOW_WATER: usize = 64 * 1024;
/// Most buffers a connection queues before it asks for more: many tiny chunks (or messages)
/// would otherwise cost far more in queue entries than their bytes say.
const MAX_BUFFERS: usize = 64;

/// A client connection's socket, as the connection's state machine uses it: a socket in the
/// worker, a scripted stream in tests.
pub(super) trait Socket: Read + Write {
    /// Stops further writes, so the client sees a clean end of the response before the close
    /// (over TLS, after a `close_notify`).
    fn shutdown_write(&mut self);
    /// Sends up to `count` bytes of `file` from `offset`, advancing it, as `sendfile` does.
    fn send_file(&mut self, file: &File, offset: &mut u64, count: usize) -> io::Result<usize>;
    /// Whether the client closed its side or reset the connection; bytes it sent before
    /// stay to be read.
    fn peer_closed(&self) -> bool;
    /// Writes what the socket holds back of earlier writes (TLS's ciphertext): how many bytes
    /// went, and whether every byte written is now in the kernel (else a writable event comes
    /// when the socket takes more). A plain socket holds nothing back.
    fn flush_pending(&mut self) -> io::Result<Flushed> {
        Ok(Flushed::NOTHING_HELD)
    }
    /// Before a clean close after a whole response: says the session ends (TLS's
    /// `close_notify`, best effort), so a client can tell the end from a cut. Nothing for a
    /// plain socket, whose FIN says it.
    fn close_notify(&mut self) {}
    /// Copies what the socket beneath has to read into `buf`, leaving it there (`MSG_PEEK`):
    /// the PROXY protocol header, which comes before anything else (a TLS handshake too).
    /// `Ok(0)` is the end of the stream.
    fn peek(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Reads from the socket beneath, past any layer over it (TLS): for taking the PROXY
    /// header's bytes, and only those, off the connection.
    fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

impl Socket for Stream {
    fn shutdown_write(&mut self) {
        Stream::shutdown_write(self);
    }

    fn send_file(&mut self, file: &File, offset: &mut u64, count: usize) -> io::Result<usize> {
        match self {
            // Encrypted in the loop: the kernel cannot encrypt for rustls.
            Stream::Tls(tls) => tls.send_file(file, offset, count),
            Stream::Tcp(_) | Stream::Unix(_) => {
                sys::sendfile(self.socket_fd(), file, offset, count)
            }
        }
    }

    fn peer_closed(&self) -> bool {
        sys::peer_closed(self.socket_fd())
    }

    fn flush_pending(&mut self) -> io::Result<Flushed> {
        Stream::flush_pending(self)
    }

    fn close_notify(&mut self) {
        if let Stream::Tls(tls) = self {
            tls.close_notify();
        }
    }

    fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        sys::peek(self.socket_fd(), buf)
    }

    fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(stream) => stream.read(buf),
            Stream::Unix(stream) => stream.read(buf),
            // The PROXY header comes before the handshake: read past rustls.
            Stream::Tls(tls) => tls.raw_mut().read_raw(buf),
        }
    }
}

/// The bytes of a response still to be written: a queue of buffers (the head, a bytes body),
/// written with `writev` without first copying them into one. It counts the bytes of the
/// response's body that went out, framing and head left out, for the access log.
#[derive(Debug, Default)]
pub(super) struct OutQueue {
    buffers: VecDeque<Buffer>,
    /// Bytes of the front buffer already written.
    front_written: usize,
    /// Bytes queued and not yet written.
    unsent: usize,
    /// Body bytes written since the response began.
    body_written: u64,
}

/// A queued buffer, and which of its bytes are the response's body.
#[derive(Debug)]
struct Buffer {
    bytes: Vec<u8>,
    body: Range<usize>,
}

impl OutQueue {
    /// Queues `bytes`, all of them body, after what is already queued.
    pub(super) fn push(&mut self, bytes: Vec<u8>) {
        let body = 0..bytes.len();
        self.push_part(bytes, body);
    }

    /// Queues `bytes`, of which `body` are the response's body (the rest is its head or the
    /// body's framing), after what is already queued.
    pub(super) fn push_part(&mut self, bytes: Vec<u8>, body: Range<usize>) {
        if !bytes.is_empty() {
            self.unsent += bytes.len();
            self.buffers.push_back(Buffer { bytes, body });
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.buffers.is_empty()
    }

    /// Whether the queue is low enough to take more: under [`LOW_WATER`] bytes, in under
    /// [`MAX_BUFFERS`] buffers.
    pub(super) fn has_room(&self) -> bool {
        self.unsent < LOW_WATER && self.buffers.len() < MAX_BUFFERS
    }

    /// Writes once, as much as `out` takes, and drops what was written.
    pub(super) fn write_to(&mut self, out: &mut impl Write) -> io::Result<usize> {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for (slot, buffer) in slices.iter_mut().zip(&self.buffers) {
            let start = if count == 0 { self.front_written } else { 0 };
            *slot = IoSlice::new(&buffer.bytes[start..]);
            count += 1;
        }
        let written = out.write_vectored(&slices[..count])?;
        self.consume(written);
        Ok(written)
    }

    fn consume(&mut self, mut written: usize) {
        self.unsent -= written.min(self.unsent);
        while let Some(front) = self.buffers.front() {
            let left = front.bytes.len() - self.front_written;
            let done = self.front_written..self.front_written + written.min(left);
            let body = done.start.max(front.body.start)..done.end.min(front.body.end);
            self.body_written += body.len() as u64;
            if written < left {
                self.front_written += written;
                return;
            }
            written -= left;
            self.buffers.pop_front();
            self.front_written = 0;
        }
        if self.buffers.is_empty() && self.buffers.capacity() > MAX_BUFFERS {
            // An idle connection keeps no large queue.
            self.buffers = VecDeque::new();
        }
    }
}

/// The part of a file region still to be sent.
#[derive(Debug)]
pub(super) struct FileOut {
    pub(super) file: File,
    pub(super) offset: u64,
    pub(super) remaining: u64,
}

/// Where a streamed body is.
pub(super) enum StreamOut {
    /// With the loop, until the connection has drained below [`LOW_WATER`].
    Ready {
        producer: BodyStream,
        /// Framed with the chunked coding (HTTP/1.1), or delimited by the close (HTTP/1.0),
        /// unless the handler promised a length.
        chunked: bool,
        /// What is left of the length the handler promised
        /// ([`Body::SizedStream`](crate::handler::Body::SizedStream)).
        remaining: Option<u64>,
    },
    /// A pool thread is pulling the next chunk, since `since`.
    Pulling {
        chunked: bool,
        remaining: Option<u64>,
        since: Instant,
    },
}

/// What follows the queued bytes of a response.
pub(super) enum Tail {
    /// Nothing: the response ends with the queue.
    None,
    /// The rest of a file region.
    File(FileOut),
    /// The rest of a streamed body.
    Stream(StreamOut),
}

/// How a call of [`Output::write`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteStep {
    /// The whole response is out.
    Done,
    /// The write budget is spent; continue after the next poll.
    Paused,
    /// The socket is full, or the next chunk is not here yet.
    Waiting,
    /// The connection failed or cannot be completed.
    Close,
}

/// What one call of [`Output::write`] did.
pub(super) struct Written {
    /// How it ended.
    pub(super) step: WriteStep,
    /// A stream's producer, taken for its next chunk once little was left to write.
    pub(super) pull: Option<BodyStream>,
    /// Whether any byte went out.
    pub(super) progressed: bool,
}

/// What a stream's next chunk (or its end) did to the output.
pub(super) enum ChunkTaken {
    /// The output was not waiting for one: the producer, if any, is not needed any more.
    Unexpected(Option<BodyStream>),
    /// Queued. `finished` is a producer whose promised length is now out; `short` says the
    /// stream ended before it.
    Queued {
        finished: Option<BodyStream>,
        short: bool,
    },
}

/// A response's bytes still to go out, and what follows them.
pub(super) struct Output {
    pub(super) queue: OutQueue,
    pub(super) tail: Tail,
    /// Bytes of a file body sent.
    file_sent: u64,
}

impl Output {
    /// An output that writes `head`, in `queue` (an empty queue kept for its allocation);
    /// the body is added after it.
    pub(super) fn new(queue: OutQueue, head: Vec<u8>) -> Output {
        Output::with_body(queue, head, 0)
    }

    /// An output that writes `response`, a whole response of the server's own (an error)
    /// that begins at `from` (after what is left of a `100 Continue`): its body is what follows
    /// the blank line that ends its head.
    pub(super) fn whole(queue: OutQueue, response: Vec<u8>, from: usize) -> Output {
        let head_len = response[from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |at| from + at + 4);
        let body_len = response.len() - head_len;
        Output::with_body(queue, response, body_len)
    }

    /// An output that writes `response`, a head and then `body_len` bytes of body, in
    /// `queue` (an empty queue kept for its allocation).
    fn with_body(mut queue: OutQueue, response: Vec<u8>, body_len: usize) -> Output {
        debug_assert!(queue.is_empty(), "a response queued behind another");
        queue.body_written = 0;
        let body = response.len().saturating_sub(body_len)..response.len();
        queue.push_part(response, body);
        Output {
            queue,
            tail: Tail::None,
            file_sent: 0,
        }
    }

    /// Bytes of the response's body written so far (the head and a chunked body's framing
    /// are not counted): what the access log records.
    pub(super) fn body_sent(&self) -> u64 {
        self.queue.body_written + self.file_sent
    }

    /// Whether every byte of the response is out.
    pub(super) fn is_sent(&self) -> bool {
        self.queue.is_empty() && matches!(self.tail, Tail::None)
    }

    /// Since when a pool thread has been pulling the stream's next chunk, if it is.
    pub(super) fn pulling_since(&self) -> Option<Instant> {
        match self.tail {
            Tail::Stream(StreamOut::Pulling { since, .. }) => Some(since),
            _ => None,
        }
    }

    /// Takes the stream's producer when it is with the loop: the connection is closing.
    pub(super) fn take_producer(&mut self) -> Option<BodyStream> {
        self.take_ready().map(|(producer, ..)| producer)
    }

    /// Takes the stream's producer for a pool thread to pull the next chunk, when it is with
    /// the loop and little is left to write.
    fn producer_to_pull(&mut self) -> Option<BodyStream> {
        if !self.queue.has_room() {
            return None;
        }
        let (producer, chunked, remaining) = self.take_ready()?;
        self.tail = Tail::Stream(StreamOut::Pulling {
            chunked,
            remaining,
            since: Instant::now(),
        });
        Some(producer)
    }

    /// Takes a stream tail that is with the loop (its producer, framing and length left),
    /// leaving no tail; any other tail stays.
    fn take_ready(&mut self) -> Option<(BodyStream, bool, Option<u64>)> {
        match std::mem::replace(&mut self.tail, Tail::None) {
            Tail::Stream(StreamOut::Ready {
                producer,
                chunked,
                remaining,
            }) => Some((producer, chunked, remaining)),
            other => {
                self.tail = other;
                None
            }
        }
    }

    /// Writes until the socket is full or the response is out, at most [`WRITE_BUDGET`]
    /// bytes: bytes with `writev`, a file region with `sendfile`; a stream's producer is
    /// taken to pull its next chunk once less than [`LOW_WATER`] bytes are left to write.
    pub(super) fn write(&mut self, socket: &mut impl Socket, peer: Option<SocketAddr>) -> Written {
        let mut budget = WRITE_BUDGET;
        let mut pull = None;
        let mut progressed = false;
        let step = loop {
            // What TLS holds of earlier writes goes first; its bytes are progress too. The
            // response is done only once every byte is in the kernel.
            let flushed = match socket.flush_pending() {
                Ok(flushed) => flushed,
                Err(err) => {
                    log::debug!("write to {}: {err}", peer_text(peer));
                    break WriteStep::Close;
                }
            };
            progressed |= flushed.bytes > 0;
            if self.is_sent() {
                break if flushed.all {
                    WriteStep::Done
                } else {
                    WriteStep::Waiting
                };
            }
            if pull.is_none() {
                pull = self.producer_to_pull();
            }
            if budget == 0 {
                break WriteStep::Paused;
            }
            let result = if !self.queue.is_empty() {
                self.queue.write_to(socket)
            } else if let Tail::File(file) = &mut self.tail {
                let count = usize::try_from(file.remaining)
                    .unwrap_or(usize::MAX)
                    .min(budget);
                let result = socket.send_file(&file.file, &mut file.offset, count);
                if let Ok(sent) = &result {
                    file.remaining -= *sent as u64;
                    self.file_sent += *sent as u64;
                    if file.remaining == 0 {
                        self.tail = Tail::None;
                    }
                }
                result
            } else {
                // Only the stream is left, and its next chunk is with the pool.
                break WriteStep::Waiting;
            };
            match result {
                Ok(0) => {
                    if matches!(self.tail, Tail::File(_)) && self.queue.is_empty() {
                        log::warn!(
                            "a file being sent to {} ended before the length its response \
                             announced; closing the connection",
                            peer_text(peer)
                        );
                    }
                    break WriteStep::Close;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    progressed = true;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break WriteStep::Waiting,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    log::debug!("write to {}: {err}", peer_text(peer));
                    break WriteStep::Close;
                }
            }
        };
        Written {
            step,
            pull,
            progressed,
        }
    }

    /// Queues a streamed body's next chunk (or, with `None`, its end), framed.
    pub(super) fn take_chunk(
        &mut self,
        next: Option<(Vec<u8>, BodyStream)>,
        peer: Option<SocketAddr>,
    ) -> ChunkTaken {
        let Tail::Stream(StreamOut::Pulling {
            chunked, remaining, ..
        }) = self.tail
        else {
            return ChunkTaken::Unexpected(next.map(|(_, producer)| producer));
        };
        let mut framed = Vec::new();
        let mut body = 0..0;
        let mut finished = None;
        let mut short = false;
        match next {
            Some((mut chunk, producer)) => {
                let remaining = remaining.map(|left| {
                    if chunk.len() as u64 > left {
                        log::warn!(
                            "a streamed response to {} went past the Content-Length its handler \
                             set; the rest was cut off",
                            peer_text(peer)
                        );
                        chunk.truncate(left as usize);
                    }
                    left - chunk.len() as u64
                });
                if chunked {
                    framed.reserve(chunk.len() + 16);
                    http::write_chunk(&mut framed, &chunk);
                    // The size line before the data, CRLF after it; nothing for no data.
                    let end = framed.len().saturating_sub(2);
                    body = end.saturating_sub(chunk.len())..end;
                } else {
                    body = 0..chunk.len();
                    framed = chunk;
                }
                if remaining == Some(0) {
                    self.tail = Tail::None;
                    finished = Some(producer);
                } else {
                    self.tail = Tail::Stream(StreamOut::Ready {
                        producer,
                        chunked,
                        remaining,
                    });
                }
            }
            None => {
                if chunked {
                    http::write_last_chunk(&mut framed);
                }
                if let Some(left) = remaining.filter(|&left| left > 0) {
                    log::error!(
                        "a streamed response to {} ended {left} bytes short of the \
                         Content-Length its handler set; closing the connection",
                        peer_text(peer)
                    );
                    short = true;
                }
                self.tail = Tail::None;
            }
        }
        self.queue.push_part(framed, body);
        ChunkTaken::Queued { finished, short }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `max` bytes per call.
    struct Trickle {
        max: usize,
        got: Vec<u8>,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.max);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_out_queue_writes_its_buffers_in_order_across_short_writes() {
        for max in [1, 2, 3, 7, 100] {
            let mut queue = OutQueue::default();
            queue.push(b"head\r\n".to_vec());
            queue.push(Vec::new());
            queue.push(b"body".to_vec());
            queue.push(b"!".to_vec());
            assert_eq!(queue.unsent, 11);
            let mut out = Trickle {
                max,
                got: Vec::new(),
            };
            while !queue.is_empty() {
                let before = queue.unsent;
                let n = queue.write_to(&mut out).unwrap();
                assert_eq!(queue.unsent, before - n);
            }
            assert_eq!(out.got, b"head\r\nbody!", "max {max}");
        }
    }

    /// A socket that, like TLS, holds back the bytes written until `pending` flushes are done.
    struct HoldsBack {
        inner: Trickle,
        pending: usize,
    }

    impl Read for HoldsBack {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    impl Write for HoldsBack {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.inner.write(buf)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Socket for HoldsBack {
        fn shutdown_write(&mut self) {}

        fn send_file(&mut self, _: &File, _: &mut u64, _: usize) -> io::Result<usize> {
            unreachable!("no file here")
        }

        fn peer_closed(&self) -> bool {
            false
        }

        fn peek(&self, _: &mut [u8]) -> io::Result<usize> {
            unreachable!("no PROXY header here")
        }

        fn read_raw(&mut self, _: &mut [u8]) -> io::Result<usize> {
            unreachable!("no PROXY header here")
        }

        fn flush_pending(&mut self) -> io::Result<Flushed> {
            self.pending = self.pending.saturating_sub(1);
            Ok(Flushed {
                bytes: 1,
                all: self.pending == 0,
            })
        }
    }

    #[test]
    fn a_response_is_done_only_once_the_socket_holds_nothing_back() {
        let mut out = Output::new(OutQueue::default(), b"HTTP/1.1 200 OK\r\n\r\n".to_vec());
        let mut socket = HoldsBack {
            inner: Trickle {
                max: 100,
                got: Vec::new(),
            },
            // One flush before the head is written, one after: both leave some behind.
            pending: 3,
        };
        let first = out.write(&mut socket, None);
        assert!(first.progressed);
        assert_eq!(
            first.step,
            WriteStep::Waiting,
            "queued, not yet in the kernel"
        );
        assert_eq!(out.write(&mut socket, None).step, WriteStep::Done);
        assert_eq!(socket.inner.got, b"HTTP/1.1 200 OK\r\n\r\n");
    }

    #[test]
    fn a_partly_written_front_buffer_resumes_where_it_stopped() {
        let mut queue = OutQueue::default();
        queue.push(b"abc".to_vec());
        queue.push(b"de".to_vec());
        queue.consume(1);
        assert_eq!(queue.unsent, 4);
        let mut out = Trickle {
            max: 10,
            got: Vec::new(),
        };
        while !queue.is_empty() {
            queue.write_to(&mut out).unwrap();
        }
        assert_eq!(out.got, b"bcde");
        assert!(queue.is_empty());
    }
}
