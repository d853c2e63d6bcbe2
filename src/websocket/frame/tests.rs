//! Frame codec tests: the rules of RFC 6455 §5 and §7 as a table over hand-built client frames,
//! each fed whole and split at every byte; fragmentation, sizes, UTF-8 checked as it arrives,
//! memory between messages, unmasking, and the frames a server writes.

use super::*;

/// A client's masking key (RFC 6455 §5.7's example).
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A masked client frame whose first byte is `first` (FIN, RSV and opcode bits as given), with
/// the minimal length encoding.
fn raw(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![first];
    match payload.len() {
        n @ 0..=125 => frame.push(MASKED | n as u8),
        n @ 126..=0xFFFF => {
            frame.push(MASKED | LENGTH_16);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(MASKED | LENGTH_64);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&KEY);
    frame.extend(payload.iter().zip(KEY.iter().cycle()).map(|(b, k)| b ^ k));
    frame
}

/// A masked client frame with no RSV bit.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw(if fin { FIN | opcode } else { opcode }, payload)
}

fn text(s: &str) -> Event {
    Event::Message(Message::Text(s.to_owned()))
}

fn binary(b: &[u8]) -> Event {
    Event::Message(Message::Binary(b.to_vec()))
}

/// Everything a run of a reader gave: its events, then its error if it failed.
type Outs = Vec<Result<Event, ProtocolError>>;

/// Feeds `input` to a reader in pieces of the sizes `piece` gives, into a buffer the way a
/// connection does, dropping what was consumed. Returns the events (and error), and how many
/// bytes were left unconsumed.
fn run_split(max: usize, input: &[u8], mut piece: impl FnMut() -> usize) -> (Outs, usize) {
    let mut reader = Reader::new(max);
    let mut buf = Vec::new();
    let mut outs = Vec::new();
    let mut fed = 0;
    while fed < input.len() {
        let n = piece().clamp(1, input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        loop {
            match reader.decode(&buf) {
                Ok((used, event)) => {
                    assert!(used <= buf.len());
                    buf.drain(..used);
                    let got = event.is_some();
                    outs.extend(event.map(Ok));
                    if used == 0 && !got {
                        break;
                    }
                }
                Err(err) => {
                    outs.push(Err(err));
                    assert_eq!(reader.decode(&buf), Err(err), "an error must stick");
                    return (outs, 0);
                }
            }
        }
    }
    (outs, buf.len())
}

/// Runs `input` whole, one byte at a time and split in two at every byte; all must agree.
fn run(max: usize, input: &[u8]) -> (Outs, usize) {
    let whole = run_split(max, input, || usize::MAX);
    assert_eq!(run_split(max, input, || 1), whole, "fed one byte at a time");
    for at in 1..input.len() {
        let mut pieces = [at, usize::MAX].into_iter();
        let split = run_split(max, input, || pieces.next().unwrap_or(usize::MAX));
        assert_eq!(split, whole, "split at byte {at}");
    }
    whole
}

fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

#[test]
fn rules_table() {
    let invalid_utf8: &[u8] = &[b'a', 0xFF, b'b'];
    let long_ping = vec![b'p'; 126];
    let mut top_bit = vec![FIN | BINARY, MASKED | LENGTH_64, 0x80, 0, 0, 0, 0, 0, 0, 1];
    top_bit.extend_from_slice(&KEY);
    let close_body = |code: u16, reason: &[u8]| [&code.to_be_bytes()[..], reason].concat();
    let cases: Vec<(&str, Vec<u8>, Outs)> = vec![
        ("text", frame(true, TEXT, b"Hello"), vec![Ok(text("Hello"))]),
        (
            "binary",
            frame(true, BINARY, &[0, 1, 2, 255]),
            vec![Ok(binary(&[0, 1, 2, 255]))],
        ),
        ("empty text", frame(true, TEXT, b""), vec![Ok(text(""))]),
        (
            "empty binary",
            frame(true, BINARY, b""),
            vec![Ok(binary(b""))],
        ),
        (
            "unmasked",
            vec![FIN | TEXT, 2, b'h', b'i'],
            vec![Err(UNMASKED)],
        ),
        (
            "rsv1",
            raw(FIN | 0x40 | TEXT, b"x"),
            vec![Err(RESERVED_BITS)],
        ),
        (
            "rsv2",
            raw(FIN | 0x20 | TEXT, b"x"),
            vec![Err(RESERVED_BITS)],
        ),
        (
            "rsv3",
            raw(FIN | 0x10 | PING, b""),
            vec![Err(RESERVED_BITS)],
        ),
        (
            "64-bit length with its top bit",
            top_bit,
            vec![Err(LENGTH_TOP_BIT)],
        ),
        (
            "fragmented ping",
            frame(false, PING, b"x"),
            vec![Err(FRAGMENTED_CONTROL)],
        ),
        (
            "fragmented close",
            frame(false, CLOSE, b""),
            vec![Err(FRAGMENTED_CONTROL)],
        ),
        (
            "ping of 126 bytes",
            frame(true, PING, &long_ping),
            vec![Err(LONG_CONTROL)],
        ),
        (
            "ping of 125 bytes",
            frame(true, PING, &long_ping[..125]),
            vec![Ok(Event::Ping(long_ping[..125].to_vec()))],
        ),
        (
            "empty ping",
            frame(true, PING, b""),
            vec![Ok(Event::Ping(vec![]))],
        ),
        (
            "pong",
            frame(true, PONG, b"ab"),
            vec![Ok(Event::Pong(b"ab".to_vec()))],
        ),
        (
            "continuation without a message",
            frame(true, CONTINUATION, b"x"),
            vec![Err(NO_MESSAGE)],
        ),
        (
            "continuation after a whole message",
            cat(&[frame(true, TEXT, b"a"), frame(true, CONTINUATION, b"b")]),
            vec![Ok(text("a")), Err(NO_MESSAGE)],
        ),
        (
            "text while a text is in progress",
            cat(&[frame(false, TEXT, b"a"), frame(true, TEXT, b"b")]),
            vec![Err(MESSAGE_IN_PROGRESS)],
        ),
        (
            "binary while a text is in progress",
            cat(&[frame(false, TEXT, b"a"), frame(true, BINARY, b"b")]),
            vec![Err(MESSAGE_IN_PROGRESS)],
        ),
        (
            "three fragments",
            cat(&[
                frame(false, TEXT, b"Hel"),
                frame(false, CONTINUATION, b""),
                frame(true, CONTINUATION, b"lo"),
            ]),
            vec![Ok(text("Hello"))],
        ),
        (
            "empty fragments",
            cat(&[frame(false, BINARY, b""), frame(true, CONTINUATION, b"")]),
            vec![Ok(binary(b""))],
        ),
        (
            "ping and pong between fragments",
            cat(&[
                frame(false, BINARY, b"ab"),
                frame(true, PING, b"p"),
                frame(false, CONTINUATION, b"cd"),
                frame(true, PONG, b""),
                frame(true, CONTINUATION, b"e"),
            ]),
            vec![
                Ok(Event::Ping(b"p".to_vec())),
                Ok(Event::Pong(vec![])),
                Ok(binary(b"abcde")),
            ],
        ),
        (
            "close between fragments",
            cat(&[frame(false, TEXT, b"ab"), frame(true, CLOSE, b"")]),
            vec![Ok(Event::Close(None))],
        ),
        (
            "invalid UTF-8",
            frame(true, TEXT, invalid_utf8),
            vec![Err(TEXT_NOT_UTF8)],
        ),
        (
            "a sequence cut short at FIN",
            frame(true, TEXT, &[b'a', 0xF0, 0x9F, 0x98]),
            vec![Err(TEXT_NOT_UTF8)],
        ),
        (
            "a surrogate",
            frame(true, TEXT, &[0xED, 0xA0, 0x80]),
            vec![Err(TEXT_NOT_UTF8)],
        ),
        (
            "beyond U+10FFFF",
            frame(true, TEXT, &[0xF4, 0x90, 0x80, 0x80]),
            vec![Err(TEXT_NOT_UTF8)],
        ),
        (
            "a 4-byte code point split across fragments",
            cat(&[
                frame(false, TEXT, &[b'a', 0xF0, 0x9F]),
                frame(false, CONTINUATION, &[0x98]),
                frame(true, CONTINUATION, &[0x80, b'b']),
            ]),
            vec![Ok(text("a\u{1F600}b"))],
        ),
        (
            "a code point split around a ping",
            cat(&[
                frame(false, TEXT, &[0xC3]),
                frame(true, PING, b""),
                frame(true, CONTINUATION, &[0xA9]),
            ]),
            vec![Ok(Event::Ping(vec![])), Ok(text("é"))],
        ),
        (
            "a sequence cut short at the last fragment",
            cat(&[frame(false, TEXT, b"a"), frame(true, CONTINUATION, &[0xC3])]),
            vec![Err(TEXT_NOT_UTF8)],
        ),
        (
            "invalid UTF-8 in a binary message",
            frame(true, BINARY, invalid_utf8),
            vec![Ok(binary(invalid_utf8))],
        ),
        (
            "empty close",
            frame(true, CLOSE, b""),
            vec![Ok(Event::Close(None))],
        ),
        (
            "close with a code",
            frame(true, CLOSE, &close_body(1000, b"")),
            vec![Ok(Event::Close(Some((1000, String::new()))))],
        ),
        (
            "close with a code and a reason",
            frame(true, CLOSE, &close_body(4000, "bye ✓".as_bytes())),
            vec![Ok(Event::Close(Some((4000, "bye ✓".to_owned()))))],
        ),
        (
            "close of one byte",
            frame(true, CLOSE, &[0x03]),
            vec![Err(CLOSE_ONE_BYTE)],
        ),
        (
            "close with code 1005",
            frame(true, CLOSE, &close_body(1005, b"")),
            vec![Err(CLOSE_CODE)],
        ),
        (
            "close with code 999",
            frame(true, CLOSE, &close_body(999, b"")),
            vec![Err(CLOSE_CODE)],
        ),
        (
            "close with a reason that is not UTF-8",
            frame(true, CLOSE, &close_body(1000, invalid_utf8)),
            vec![Err(REASON_NOT_UTF8)],
        ),
    ];
    for (name, input, expected) in cases {
        let (outs, left) = run(1000, &input);
        assert_eq!(outs, expected, "{name}");
        assert_eq!(left, 0, "{name}: bytes left unconsumed");
    }
}

#[test]
fn reserved_opcodes_are_protocol_errors() {
    for opcode in (0x3..=0x7).chain(0xB..=0xF) {
        let (outs, _) = run(1000, &frame(true, opcode, b""));
        assert_eq!(outs, vec![Err(RESERVED_OPCODE)], "opcode {opcode:#x}");
    }
}

#[test]
fn nothing_is_read_after_a_close() {
    let input = cat(&[
        frame(true, TEXT, b"a"),
        frame(true, CLOSE, b""),
        frame(true, TEXT, b"b"),
        vec![0xFF, 0xFF],
    ]);
    let (outs, left) = run(1000, &input);
    assert_eq!(outs, vec![Ok(text("a")), Ok(Event::Close(None))]);
    assert_eq!(left, input.len() - frame(true, TEXT, b"a").len() - 6);
}

#[test]
fn errors_are_found_before_the_header_is_whole() {
    let cases: [(&[u8], ProtocolError); 5] = [
        (&[FIN | 0x40 | TEXT, MASKED | LENGTH_16], RESERVED_BITS),
        (&[FIN | 0x3, MASKED], RESERVED_OPCODE),
        (&[FIN | TEXT, LENGTH_64], UNMASKED),
        (&[PING, MASKED], FRAGMENTED_CONTROL),
        (&[FIN | CONTINUATION, MASKED | LENGTH_64], NO_MESSAGE),
    ];
    for (input, expected) in cases {
        assert_eq!(Reader::new(1000).decode(input), Err(expected), "{input:?}");
    }
}

#[test]
fn invalid_utf8_fails_before_the_frame_or_message_ends() {
    // The first fragment, not final, holds an invalid byte: no need to wait for the rest.
    let first = frame(false, TEXT, &[b'o', b'k', 0xC0, 0xAF]);
    let mut reader = Reader::new(1000);
    assert_eq!(reader.decode(&first), Err(TEXT_NOT_UTF8));

    // A 100-byte frame whose 3rd payload byte is invalid: caught with only 3 payload bytes in.
    let mut payload = vec![b'x'; 100];
    payload[2] = 0xFF;
    let whole = frame(true, TEXT, &payload);
    let mut reader = Reader::new(1000);
    let header = 2 + 4;
    assert_eq!(reader.decode(&whole[..header + 2]), Ok((header + 2, None)));
    assert_eq!(
        reader.decode(&whole[header + 2..header + 3]),
        Err(TEXT_NOT_UTF8)
    );

    // A byte that can only start a sequence is fine until what follows breaks it.
    let mut reader = Reader::new(1000);
    let cut = frame(false, TEXT, &[b'a', 0xE2, 0x82]);
    assert_eq!(reader.decode(&cut), Ok((cut.len(), None)));
    let bad = frame(true, CONTINUATION, b"z");
    assert_eq!(reader.decode(&bad), Err(TEXT_NOT_UTF8));
}

#[test]
fn max_message_exact_and_one_more() {
    let exact = vec![b'a'; 10];
    assert_eq!(
        run(10, &frame(true, TEXT, &exact)).0,
        vec![Ok(text("aaaaaaaaaa"))]
    );
    assert_eq!(
        run(10, &frame(true, TEXT, &[b'a'; 11])).0,
        vec![Err(TOO_BIG)]
    );
    let fragments = |last: usize| {
        cat(&[
            frame(false, BINARY, &[1; 6]),
            frame(true, PING, b""),
            frame(true, CONTINUATION, &vec![2; last]),
        ])
    };
    assert_eq!(
        run(10, &fragments(4)).0,
        vec![
            Ok(Event::Ping(vec![])),
            Ok(binary(&[1, 1, 1, 1, 1, 1, 2, 2, 2, 2]))
        ]
    );
    assert_eq!(
        run(10, &fragments(5)).0,
        vec![Ok(Event::Ping(vec![])), Err(TOO_BIG)]
    );
    assert_eq!(run(0, &frame(true, BINARY, b"")).0, vec![Ok(binary(b""))]);
    assert_eq!(run(0, &frame(true, BINARY, b"x")).0, vec![Err(TOO_BIG)]);
}

#[test]
fn too_big_is_refused_at_the_header() {
    // A header announcing 4 GiB, and no payload at all: refused at once, nothing buffered.
    let mut header = vec![FIN | BINARY, MASKED | LENGTH_64];
    header.extend_from_slice(&(4u64 << 30).to_be_bytes());
    header.extend_from_slice(&KEY);
    let mut reader = Reader::new(1 << 20);
    assert_eq!(reader.decode(&header), Err(TOO_BIG));
    assert_eq!(reader.buffered(), 0);

    // The second fragment's header pushes the total over: refused before its payload.
    let mut reader = Reader::new(100);
    let first = frame(false, TEXT, &[b'a'; 60]);
    assert_eq!(reader.decode(&first), Ok((first.len(), None)));
    let second = frame(true, CONTINUATION, &[b'b'; 41]);
    assert_eq!(reader.decode(&second[..8]), Err(TOO_BIG));
}

#[test]
fn a_mebibyte_in_one_two_and_a_hundred_fragments() {
    const MIB: usize = 1 << 20;
    let payload: Vec<u8> = (0..MIB).map(|i| (i % 251) as u8).collect();
    // 10 bytes of 1-, 2-, 3- and 4-byte code points, which fragments cut through.
    let text_payload = "aé€😀".repeat(MIB / 10);
    for fragments in [1, 2, 100] {
        for (opcode, bytes, expected) in [
            (BINARY, &payload[..], binary(&payload)),
            (TEXT, text_payload.as_bytes(), text(&text_payload)),
        ] {
            let size = bytes.len().div_ceil(fragments);
            let pieces: Vec<&[u8]> = bytes.chunks(size).collect();
            assert_eq!(pieces.len(), fragments);
            let input: Vec<u8> = pieces
                .iter()
                .enumerate()
                .flat_map(|(i, piece)| {
                    let first = if i == 0 { opcode } else { CONTINUATION };
                    frame(i + 1 == fragments, first, piece)
                })
                .collect();
            for read in [usize::MAX, 1000, 4093] {
                let (outs, left) = run_split(bytes.len(), &input, || read);
                assert_eq!(outs, vec![Ok(expected.clone())], "{fragments} fragments");
                assert_eq!(left, 0);
            }
            let (outs, _) = run_split(bytes.len() - 1, &input, || usize::MAX);
            assert_eq!(outs.last(), Some(&Err(TOO_BIG)), "{fragments} fragments");
        }
    }
}

#[test]
fn payload_is_consumed_as_it_arrives() {
    let payload = vec![7u8; 300];
    let input = frame(true, BINARY, &payload);
    let mut reader = Reader::new(1000);
    // Header (2 + 2 + 4) and 10 payload bytes: all consumed, no event yet.
    assert_eq!(reader.decode(&input[..18]), Ok((18, None)));
    assert!(!reader.is_idle());
    assert_eq!(reader.decode(&input[18..100]), Ok((82, None)));
    assert_eq!(
        reader.decode(&input[100..]),
        Ok((input.len() - 100, Some(binary(&payload))))
    );
}

#[test]
fn control_frames_wait_until_whole() {
    let ping = frame(true, PING, b"hello");
    let mut reader = Reader::new(1000);
    for end in 0..ping.len() {
        assert_eq!(reader.decode(&ping[..end]), Ok((0, None)), "{end} bytes");
    }
    assert_eq!(
        reader.decode(&ping),
        Ok((ping.len(), Some(Event::Ping(b"hello".to_vec()))))
    );
}

#[test]
fn an_idle_reader_holds_no_buffer() {
    let mut reader = Reader::new(1000);
    assert!(reader.is_idle());
    assert_eq!(reader.buffered(), 0);
    let first = frame(false, TEXT, b"abc");
    assert_eq!(reader.decode(&first), Ok((first.len(), None)));
    assert!(!reader.is_idle());
    assert!(reader.buffered() >= 3);
    let ping = frame(true, PING, b"");
    assert_eq!(
        reader.decode(&ping),
        Ok((ping.len(), Some(Event::Ping(vec![]))))
    );
    assert!(!reader.is_idle(), "a ping does not end the message");
    let last = frame(true, CONTINUATION, b"d");
    assert_eq!(reader.decode(&last), Ok((last.len(), Some(text("abcd")))));
    assert!(reader.is_idle());
    assert_eq!(reader.buffered(), 0);

    // A frame whose header is in but whose payload is not is a message in progress.
    let partial = frame(true, BINARY, b"xyz");
    assert_eq!(reader.decode(&partial[..6]), Ok((6, None)));
    assert!(!reader.is_idle());
    assert_eq!(reader.decode(&partial[6..]), Ok((3, Some(binary(b"xyz")))));
    assert!(reader.is_idle());

    // After an error the buffer is given back too.
    let mut reader = Reader::new(1000);
    let first = frame(false, BINARY, b"abc");
    assert_eq!(reader.decode(&first), Ok((first.len(), None)));
    assert_eq!(
        reader.decode(&frame(true, TEXT, b"")),
        Err(MESSAGE_IN_PROGRESS)
    );
    assert_eq!(reader.buffered(), 0);
}

#[test]
fn unmask_matches_bytewise_xor_at_every_offset() {
    let mask = [0x12, 0x34, 0x56, 0x78];
    for len in 0..40 {
        for offset in 0..4 {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let expected: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[(i + offset) % 4])
                .collect();
            let mut got = data.clone();
            unmask(&mut got, mask, offset);
            assert_eq!(got, expected, "len {len}, offset {offset}");
        }
    }
}

#[test]
fn frame_header_lengths() {
    let cases: [(usize, &[u8]); 6] = [
        (0, &[0x81, 0]),
        (125, &[0x81, 125]),
        (126, &[0x81, 126, 0, 126]),
        (65535, &[0x81, 126, 0xFF, 0xFF]),
        (65536, &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        (1 << 40, &[0x81, 127, 0, 0, 1, 0, 0, 0, 0, 0]),
    ];
    for (len, expected) in cases {
        assert_eq!(frame_header(Opcode::Text, len), expected, "{len}");
    }
    let opcodes = [
        (Opcode::Continuation, 0x80),
        (Opcode::Text, 0x81),
        (Opcode::Binary, 0x82),
        (Opcode::Close, 0x88),
        (Opcode::Ping, 0x89),
        (Opcode::Pong, 0x8A),
    ];
    for (opcode, first) in opcodes {
        assert_eq!(frame_header(opcode, 3), [first, 3], "{opcode:?}");
        assert_eq!(Opcode::from_bits(first & OPCODE), Some(opcode));
    }
}

#[test]
fn control_and_close_frames() {
    assert_eq!(control_frame(Opcode::Pong, b"hi"), [0x8A, 2, b'h', b'i']);
    assert_eq!(control_frame(Opcode::Ping, b""), [0x89, 0]);
    assert_eq!(
        close_frame(1000, "bye"),
        [0x88, 5, 0x03, 0xE8, b'b', b'y', b'e']
    );
    assert_eq!(close_frame(1001, ""), [0x88, 2, 0x03, 0xE9]);

    let ascii = close_frame(1002, &"a".repeat(200));
    assert_eq!(ascii.len(), 2 + 125);
    assert_eq!(ascii[1], 125);
    // 'é' is two bytes: 61 of them fit in 123, the 62nd would not.
    let accented = close_frame(1007, &"é".repeat(100));
    assert_eq!(accented[1], 2 + 122);
    assert_eq!(
        std::str::from_utf8(&accented[4..]),
        Ok("é".repeat(61).as_str())
    );
    let euro = close_frame(1007, &"€".repeat(50));
    assert_eq!(euro[1], 2 + 123);
}

#[test]
#[should_panic(expected = "at most 125 bytes")]
#[cfg(debug_assertions)]
fn a_long_control_frame_panics_in_debug() {
    control_frame(Opcode::Ping, &[0; 126]);
}

#[test]
fn close_code_table() {
    let valid = [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000,
        4999,
    ];
    let invalid = [
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ];
    for code in valid {
        assert!(valid_close_code(code), "{code} is valid");
    }
    for code in invalid {
        assert!(!valid_close_code(code), "{code} is not valid");
    }
}

#[test]
fn error_reasons_fit_a_close_frame() {
    let all = [
        UNMASKED,
        RESERVED_BITS,
        RESERVED_OPCODE,
        FRAGMENTED_CONTROL,
        LONG_CONTROL,
        LENGTH_TOP_BIT,
        NO_MESSAGE,
        MESSAGE_IN_PROGRESS,
        CLOSE_ONE_BYTE,
        CLOSE_CODE,
        TOO_BIG,
        TEXT_NOT_UTF8,
        REASON_NOT_UTF8,
    ];
    for err in all {
        assert!(
            err.reason.is_ascii() && err.reason.len() <= MAX_REASON,
            "{err:?}"
        );
        assert!(valid_close_code(err.code), "{err:?}");
    }
}
