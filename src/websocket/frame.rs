//! The frame codec (RFC 6455 §5): [`Reader`] decodes a client's frames into messages and
//! control frames; [`frame_header`], [`control_frame`] and [`close_frame`] write a server's.

use std::mem;

/// A whole data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message, whose UTF-8 was checked.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// Why the peer's bytes end the connection: the close code to send (1002 protocol error,
/// 1007 invalid UTF-8 in a text message or a close reason, 1009 message too big) and a short
/// reason for the close frame and the log (ASCII, ≤ 123 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolError {
    /// The close code to send.
    pub code: u16,
    /// What was wrong, for the close frame's reason and the log.
    pub reason: &'static str,
}

/// What one decoded frame (or the end of a fragmented message) brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole message, reassembled from its fragments.
    Message(Message),
    /// A ping frame and its payload, which the pong answering it carries.
    Ping(Vec<u8>),
    /// A pong frame and its payload.
    Pong(Vec<u8>),
    /// A close frame: its code and reason, or None for an empty close body.
    Close(Option<(u16, String)>),
}

/// A server frame's opcode (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// 0x0: the next fragment of a message.
    Continuation,
    /// 0x1: the first frame of a text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: the closing handshake.
    Close,
    /// 0x9: a ping.
    Ping,
    /// 0xA: a pong.
    Pong,
}

impl Opcode {
    /// The opcode's four bits.
    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// The opcode of these four bits; None for the reserved ones (3–7, 0xB–0xF).
    fn from_bits(bits: u8) -> Option<Opcode> {
        [
            Opcode::Continuation,
            Opcode::Text,
            Opcode::Binary,
            Opcode::Close,
            Opcode::Ping,
            Opcode::Pong,
        ]
        .into_iter()
        .find(|op| op.bits() == bits)
    }
}

/// The FIN bit of a frame's first byte.
const FIN: u8 = 0x80;
/// The RSV1–3 bits of a frame's first byte.
const RSV: u8 = 0x70;
/// The opcode bits of a frame's first byte.
const OPCODE: u8 = 0x0F;
/// The MASK bit of a frame's second byte.
const MASKED: u8 = 0x80;
/// The 7-bit length of a frame's second byte.
const LENGTH: u8 = 0x7F;
/// The 7-bit length that announces a 16-bit one.
const LENGTH_16: u8 = 126;
/// The 7-bit length that announces a 64-bit one.
const LENGTH_64: u8 = 127;
/// Largest payload of a control frame (§5.5).
const MAX_CONTROL: usize = 125;
/// Largest reason in a close frame: a control frame's payload less the code's two bytes.
const MAX_REASON: usize = MAX_CONTROL - 2;

const fn protocol(reason: &'static str) -> ProtocolError {
    ProtocolError { code: 1002, reason }
}

const UNMASKED: ProtocolError = protocol("a client frame is not masked");
/// The most a data frame's header makes the reader set aside for its payload before it comes.
const RESERVE_AHEAD: usize = 256 * 1024;
const RESERVED_BITS: ProtocolError = protocol("a frame sets a reserved bit");
const RESERVED_OPCODE: ProtocolError = protocol("a frame has a reserved opcode");
const FRAGMENTED_CONTROL: ProtocolError = protocol("a control frame is fragmented");
const LONG_CONTROL: ProtocolError = protocol("a control frame is longer than 125 bytes");
const LENGTH_TOP_BIT: ProtocolError = protocol("a frame length has its top bit set");
const NO_MESSAGE: ProtocolError = protocol("a continuation frame came without a message begun");
const MESSAGE_IN_PROGRESS: ProtocolError =
    protocol("a new message began before the last one ended");
const CLOSE_ONE_BYTE: ProtocolError = protocol("a close frame's body is one byte");
const CLOSE_CODE: ProtocolError = protocol("a close frame carries a code that may not be sent");
const TOO_BIG: ProtocolError = ProtocolError {
    code: 1009,
    reason: "the message is larger than the server takes",
};
const TEXT_NOT_UTF8: ProtocolError = ProtocolError {
    code: 1007,
    reason: "a text message is not UTF-8",
};
const REASON_NOT_UTF8: ProtocolError = ProtocolError {
    code: 1007,
    reason: "a close frame's reason is not UTF-8",
};

/// The kind of a data message, which its first frame's opcode says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// What a frame's opcode makes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A data frame: the first of a message of this kind, or a continuation (None).
    Data(Option<Kind>),
    /// A control frame.
    Control(Control),
}

/// The control frames (§5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Close,
    Ping,
    Pong,
}

impl Role {
    fn of(opcode: Opcode) -> Role {
        match opcode {
            Opcode::Continuation => Role::Data(None),
            Opcode::Text => Role::Data(Some(Kind::Text)),
            Opcode::Binary => Role::Data(Some(Kind::Binary)),
            Opcode::Close => Role::Control(Control::Close),
            Opcode::Ping => Role::Control(Control::Ping),
            Opcode::Pong => Role::Control(Control::Pong),
        }
    }
}

/// A whole, checked frame header.
#[derive(Debug)]
struct Header {
    fin: bool,
    role: Role,
    mask: [u8; 4],
    /// The payload's length.
    len: u64,
    /// The header's own length in bytes.
    size: usize,
}

/// The data frame whose payload is arriving.
#[derive(Debug)]
struct Payload {
    mask: [u8; 4],
    /// Where in the mask the next payload byte falls (0–3).
    offset: usize,
    /// Payload bytes still due.
    remaining: u64,
    /// Whether this frame ends its message.
    fin: bool,
}

/// Whether a reader still reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// A close frame was returned: nothing after it is read.
    Closed,
    /// The peer broke the protocol: every call returns this error.
    Failed(ProtocolError),
}

/// Decodes a client's frames (RFC 6455 §5), a byte stream at a time.
///
/// A fresh reader, and one between messages, holds no heap memory.
#[derive(Debug)]
pub struct Reader {
    max_message: usize,
    state: State,
    /// The data frame whose payload is arriving, if any.
    frame: Option<Payload>,
    /// The kind of the message in progress, None between messages.
    message: Option<Kind>,
    /// The message's payload so far, unmasked.
    buf: Vec<u8>,
    /// For a text message, how much of `buf` is known to be whole, valid UTF-8.
    valid: usize,
}

impl Reader {
    /// `max_message`: the largest whole message (after reassembly) in bytes.
    pub fn new(max_message: usize) -> Reader {
        Reader {
            max_message,
            state: State::Open,
            frame: None,
            message: None,
            buf: Vec::new(),
            valid: 0,
        }
    }

    /// Decodes from `input`. Returns how many bytes it consumed and the event they completed,
    /// if any. It consumes the payload of a data frame as it arrives (it need not wait for the
    /// whole frame), so a large frame never has to sit whole in the caller's buffer; a frame
    /// header or a control frame (≤ 125 bytes) is consumed only once whole. Returns at most one
    /// event per call: the caller calls again with the rest of its input while it consumed
    /// something or got an event. Ok((0, None)) means "need more bytes".
    ///
    /// After a close frame was returned, every call returns Ok((0, None)): the caller stops
    /// reading. After an error every call returns the same error.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] with the close code to answer with, as soon as a byte breaks
    /// RFC 6455 (an unmasked frame, a reserved bit or opcode, a bad fragment sequence, a message
    /// over `max_message`, invalid UTF-8 in a text message, a bad close frame).
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), ProtocolError> {
        match self.state {
            State::Open => {}
            State::Closed => return Ok((0, None)),
            State::Failed(err) => return Err(err),
        }
        let result = self.decode_open(input);
        match &result {
            Err(err) => self.stop(State::Failed(*err)),
            Ok((_, Some(Event::Close(_)))) => self.stop(State::Closed),
            Ok(_) => {}
        }
        result
    }

    /// Whether no message is in progress (no partial frame, no fragments held).
    pub fn is_idle(&self) -> bool {
        self.frame.is_none() && self.message.is_none()
    }

    /// Bytes held for a message in progress (what this connection costs in memory): the
    /// capacity of the reassembly buffer, 0 between messages.
    pub fn buffered(&self) -> usize {
        self.buf.capacity()
    }

    fn stop(&mut self, state: State) {
        self.state = state;
        self.frame = None;
        self.message = None;
        self.buf = Vec::new();
        self.valid = 0;
    }

    fn decode_open(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), ProtocolError> {
        let mut used = 0;
        if self.frame.is_none() {
            let Some(header) = self.header(input)? else {
                return Ok((0, None));
            };
            match header.role {
                Role::Control(control) => {
                    // The header checked the length: at most 125.
                    let len = usize::try_from(header.len).unwrap_or(usize::MAX);
                    let end = header.size.saturating_add(len);
                    let Some(payload) = input.get(header.size..end) else {
                        return Ok((0, None));
                    };
                    let mut payload = payload.to_vec();
                    unmask(&mut payload, header.mask, 0);
                    return Ok((end, Some(control_event(control, payload)?)));
                }
                Role::Data(kind) => {
                    if kind.is_some() {
                        self.message = kind;
                    }
                    // Room for the payload at once (the header checked it against
                    // max_message), so it is not copied again as the buffer grows; at most
                    // RESERVE_AHEAD before the bytes come, so a frame that only announces a
                    // large payload does not hold its size.
                    let announced = usize::try_from(header.len).unwrap_or(usize::MAX);
                    self.buf.reserve(announced.min(RESERVE_AHEAD));
                    self.frame = Some(Payload {
                        mask: header.mask,
                        offset: 0,
                        remaining: header.len,
                        fin: header.fin,
                    });
                    used = header.size;
                }
            }
        }
        let (taken, event) = self.payload(input.get(used..).unwrap_or_default())?;
        Ok((used + taken, event))
    }

    /// The frame header at the front of `input` once whole (None before), checked as far as
    /// its bytes have arrived.
    fn header(&self, input: &[u8]) -> Result<Option<Header>, ProtocolError> {
        let [first, second, rest @ ..] = input else {
            return Ok(None);
        };
        if first & RSV != 0 {
            return Err(RESERVED_BITS);
        }
        let role = Role::of(Opcode::from_bits(first & OPCODE).ok_or(RESERVED_OPCODE)?);
        let fin = first & FIN != 0;
        if second & MASKED == 0 {
            return Err(UNMASKED);
        }
        let short = second & LENGTH;
        match role {
            Role::Control(_) if !fin => return Err(FRAGMENTED_CONTROL),
            Role::Control(_) if usize::from(short) > MAX_CONTROL => return Err(LONG_CONTROL),
            Role::Control(_) => {}
            Role::Data(None) if self.message.is_none() => return Err(NO_MESSAGE),
            Role::Data(Some(_)) if self.message.is_some() => return Err(MESSAGE_IN_PROGRESS),
            Role::Data(_) => {}
        }
        let extended = match short {
            LENGTH_16 => 2,
            LENGTH_64 => 8,
            _ => 0,
        };
        let (Some(length), Some(mask)) = (rest.get(..extended), rest.get(extended..extended + 4))
        else {
            return Ok(None);
        };
        let len = match *length {
            [hi, lo] => u64::from(u16::from_be_bytes([hi, lo])),
            [a, b, c, d, e, f, g, h] => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
            _ => u64::from(short),
        };
        if len >> 63 != 0 {
            return Err(LENGTH_TOP_BIT);
        }
        if let Role::Data(_) = role {
            let held = u64::try_from(self.buf.len()).unwrap_or(u64::MAX);
            let max = u64::try_from(self.max_message).unwrap_or(u64::MAX);
            if held.saturating_add(len) > max {
                return Err(TOO_BIG);
            }
        }
        let mut key = [0; 4];
        key.copy_from_slice(mask);
        Ok(Some(Header {
            fin,
            role,
            mask: key,
            len,
            size: 2 + extended + 4,
        }))
    }

    /// Takes what `input` holds of the current data frame's payload; the message when the frame
    /// that ends it is over.
    fn payload(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), ProtocolError> {
        let Some(frame) = &mut self.frame else {
            return Ok((0, None));
        };
        let take = usize::try_from(frame.remaining).map_or(input.len(), |r| r.min(input.len()));
        let start = self.buf.len();
        self.buf
            .extend_from_slice(input.get(..take).unwrap_or_default());
        unmask(
            self.buf.get_mut(start..).unwrap_or_default(),
            frame.mask,
            frame.offset,
        );
        frame.offset = (frame.offset + take) % 4;
        frame.remaining -= u64::try_from(take).unwrap_or(frame.remaining);
        let (over, fin) = (frame.remaining == 0, frame.fin);
        if self.message == Some(Kind::Text) {
            self.check_text(over && fin)?;
        }
        if !over {
            return Ok((take, None));
        }
        self.frame = None;
        if !fin {
            return Ok((take, None));
        }
        Ok((take, Some(Event::Message(self.finish()?))))
    }

    /// Checks the UTF-8 of the text received since the last check: an invalid byte fails at
    /// once, a sequence cut short only when the message is `complete`.
    fn check_text(&mut self, complete: bool) -> Result<(), ProtocolError> {
        let unchecked = self.buf.get(self.valid..).unwrap_or_default();
        match std::str::from_utf8(unchecked) {
            Ok(_) => self.valid = self.buf.len(),
            Err(err) if err.error_len().is_none() && !complete => self.valid += err.valid_up_to(),
            Err(_) => return Err(TEXT_NOT_UTF8),
        }
        Ok(())
    }

    /// The message that just ended, its buffer handed over with it.
    fn finish(&mut self) -> Result<Message, ProtocolError> {
        let payload = mem::take(&mut self.buf);
        self.valid = 0;
        match self.message.take() {
            Some(Kind::Text) => String::from_utf8(payload)
                .map(Message::Text)
                .map_err(|_| TEXT_NOT_UTF8),
            Some(Kind::Binary) => Ok(Message::Binary(payload)),
            None => Err(NO_MESSAGE),
        }
    }
}

/// The event of a whole control frame with this (unmasked) payload.
fn control_event(control: Control, payload: Vec<u8>) -> Result<Event, ProtocolError> {
    match control {
        Control::Ping => Ok(Event::Ping(payload)),
        Control::Pong => Ok(Event::Pong(payload)),
        Control::Close => close_event(&payload),
    }
}

/// The event of a close frame with this body (§5.5.1, §7.1.5, §7.1.6).
fn close_event(body: &[u8]) -> Result<Event, ProtocolError> {
    match body {
        [] => Ok(Event::Close(None)),
        [_] => Err(CLOSE_ONE_BYTE),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !valid_close_code(code) {
                return Err(CLOSE_CODE);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| REASON_NOT_UTF8)?;
            Ok(Event::Close(Some((code, reason.to_owned()))))
        }
    }
}

/// XORs `payload` with `mask`, the first byte at `offset` (0–3) in the mask, eight bytes at a
/// time.
fn unmask(payload: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut key = mask;
    key.rotate_left(offset % 4);
    let [a, b, c, d] = key;
    let word = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut words = payload.chunks_exact_mut(8);
    for chunk in &mut words {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so at the key's first byte again.
    for (byte, k) in words.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// Writes the header of one unfragmented, unmasked server frame (FIN set) carrying
/// `payload_len` bytes: 2, 4 or 10 bytes, minimal length encoding.
pub fn frame_header(opcode: Opcode, payload_len: usize) -> Vec<u8> {
    let mut header = Vec::with_capacity(10);
    header.push(FIN | opcode.bits());
    match (u8::try_from(payload_len), u16::try_from(payload_len)) {
        (Ok(short), _) if usize::from(short) <= MAX_CONTROL => header.push(short),
        (_, Ok(len)) => {
            header.push(LENGTH_16);
            header.extend_from_slice(&len.to_be_bytes());
        }
        _ => {
            header.push(LENGTH_64);
            let len = u64::try_from(payload_len).unwrap_or(u64::MAX);
            header.extend_from_slice(&len.to_be_bytes());
        }
    }
    header
}

/// A whole control frame (header and payload), unmasked. Panics in debug if payload > 125.
pub fn control_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    debug_assert!(
        payload.len() <= MAX_CONTROL,
        "a control frame's payload is at most 125 bytes, not {}",
        payload.len()
    );
    let mut frame = frame_header(opcode, payload.len());
    frame.extend_from_slice(payload);
    frame
}

/// A whole close frame with `code` and `reason` (the reason cut at a UTF-8 boundary to fit 123 bytes).
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut body = Vec::with_capacity(2 + end);
    body.extend_from_slice(&code.to_be_bytes());
    body.extend_from_slice(reason.get(..end).unwrap_or_default().as_bytes());
    control_frame(Opcode::Close, &body)
}

/// Whether `code` may be sent in a close frame (RFC 6455 §7.4 + the IANA registry): 1000–1003,
/// 1007–1014, 3000–4999. (1004–1006, 1015 and everything else are not.)
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests;
