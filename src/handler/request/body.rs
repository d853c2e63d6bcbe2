//! A request's body, wherever it is: in memory, or in an unlinked temporary file once it grew
//! past `[limits] body_buffer`. The worker receives a body into this type and the handler reads
//! it from the same one.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Once a body is going to a file, decoded bytes are written out in pieces of at least this
/// many, so a body trickling in does not cost a write per read.
const SPILL_CHUNK: usize = 64 * 1024;

/// A request's body: see [`Request::into_body_parts`](super::Request::into_body_parts).
#[derive(Clone, Debug)]
pub enum RequestBody {
    /// Held in memory.
    Memory(Vec<u8>),
    /// In an unlinked temporary file, from offset 0, this many bytes long. Clones of a request
    /// share the file; each reader keeps its own position.
    File(Arc<File>, u64),
}

impl Default for RequestBody {
    fn default() -> Self {
        RequestBody::Memory(Vec::new())
    }
}

impl RequestBody {
    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            RequestBody::Memory(bytes) => bytes.len() as u64,
            RequestBody::File(_, len) => *len,
        }
    }

    /// True when the body has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reader over the body from its beginning.
    pub fn reader(&self) -> BodyReader<'_> {
        match self {
            RequestBody::Memory(bytes) => BodyReader::Memory(bytes),
            RequestBody::File(file, len) => BodyReader::File {
                file,
                position: 0,
                len: *len,
            },
        }
    }

    /// While a body is being received, with `buffered` bytes of it decoded and held in memory
    /// by the decoder: whether they are due to go to the file, because the body outgrew
    /// `memory_limit` (the file is created then), or, once it is in a file, because a piece has
    /// gathered.
    pub(crate) fn spill_due(&self, buffered: usize, memory_limit: u64) -> bool {
        match self {
            RequestBody::File(..) => buffered >= SPILL_CHUNK,
            RequestBody::Memory(held) => (held.len() + buffered) as u64 > memory_limit,
        }
    }

    /// Appends `bytes` to a body being received in a file, moving it to a new unlinked
    /// temporary file first if it is still in memory.
    pub(crate) fn spill(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let RequestBody::Memory(held) = self {
            let mut file = crate::sys::anonymous_temp_file()?;
            file.write_all(held)?;
            *self = RequestBody::File(Arc::new(file), held.len() as u64);
        }
        if let RequestBody::File(file, len) = self {
            (&**file).write_all(bytes)?;
            *len += bytes.len() as u64;
        }
        Ok(())
    }

    /// The whole body of a request received into `self`, given the bytes decoded since the
    /// last [`RequestBody::spill`]: in memory when it is at most `memory_limit` bytes, else in
    /// its file, rewound.
    pub(crate) fn finish(mut self, rest: Vec<u8>, memory_limit: u64) -> io::Result<RequestBody> {
        if let RequestBody::Memory(held) = &mut self {
            if (held.len() + rest.len()) as u64 <= memory_limit {
                if held.is_empty() {
                    return Ok(RequestBody::Memory(rest));
                }
                held.extend_from_slice(&rest);
                return Ok(self);
            }
        }
        self.spill(&rest)?;
        if let RequestBody::File(file, _) = &self {
            (&**file).rewind()?;
        }
        Ok(self)
    }
}

/// Reads a request's body from memory or from its temporary file; see
/// [`Request::body_reader`](super::Request::body_reader).
#[derive(Debug)]
pub enum BodyReader<'a> {
    /// The rest of a body held in memory.
    Memory(&'a [u8]),
    /// A body in a file, read with positioned reads so readers do not disturb one another.
    File {
        /// The file.
        file: &'a File,
        /// The next byte to read.
        position: u64,
        /// The body's length.
        len: u64,
    },
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BodyReader::Memory(rest) => rest.read(buf),
            BodyReader::File {
                file,
                position,
                len,
            } => {
                let left = len.saturating_sub(*position);
                let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                if want == 0 {
                    return Ok(0);
                }
                let n = file.read_at(&mut buf[..want], *position)?;
                *position += n as u64;
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(body: &RequestBody) -> Vec<u8> {
        let mut bytes = Vec::new();
        body.reader().read_to_end(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn a_body_within_the_limit_stays_in_memory() {
        let body = RequestBody::default();
        assert!(!body.spill_due(10, 10));
        let body = body.finish(b"0123456789".to_vec(), 10).unwrap();
        assert!(matches!(&body, RequestBody::Memory(bytes) if bytes == b"0123456789"));
    }

    #[test]
    fn a_body_past_the_limit_goes_to_a_rewound_file_in_pieces() {
        let mut body = RequestBody::default();
        assert!(body.spill_due(11, 10), "past the limit: to a file");
        body.spill(b"first part ").unwrap();
        assert!(matches!(body, RequestBody::File(_, 11)));
        assert!(
            !body.spill_due(SPILL_CHUNK - 1, 10),
            "a piece not gathered yet"
        );
        assert!(body.spill_due(SPILL_CHUNK, 10));
        body.spill(b"second ").unwrap();
        let body = body.finish(b"end".to_vec(), 10).unwrap();
        assert_eq!(body.len(), 21);
        assert_eq!(read_all(&body), b"first part second end");
        let RequestBody::File(file, _) = &body else {
            panic!("a spilled body is in its file");
        };
        let mut from_cursor = String::new();
        (&**file).read_to_string(&mut from_cursor).unwrap();
        assert_eq!(from_cursor, "first part second end", "the file is rewound");
    }

    #[test]
    fn a_last_piece_past_the_limit_goes_to_a_file() {
        let body = RequestBody::default()
            .finish(b"eleven byte".to_vec(), 10)
            .unwrap();
        assert!(matches!(body, RequestBody::File(_, 11)));
        assert_eq!(read_all(&body), b"eleven byte");
    }
}
