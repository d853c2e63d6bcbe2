//! Fuzzes tine's request `Decoder`: the same bytes fed whole and in pieces must give the same
//! requests and errors, and the decoder's promises to its caller must hold on any input.
//!
//! The first bytes of each input choose the limits and how the rest is cut into reads, so the
//! fuzzer explores limit edges and read boundaries as well as the request bytes themselves.
//! Checked on every input:
//! - no panic (network input never panics);
//! - `consumed` never exceeds the bytes handed in, and a `Complete` consumes at least one;
//! - a `Complete`'s body is no longer than `limits.body`;
//! - whole, byte by byte and in the input-chosen pieces give the same outcomes;
//! - errors are sticky, and `is_idle` and `reading_body` are never both true;
//! - `take_continue` is never true after an error;
//! - `authority()` and `path_and_query()` never panic, and an authority is plain ASCII without
//!   userinfo.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tine::http::{Decoded, Decoder, HttpError, Limits, Version};

/// One request's outcome, comparable across ways of feeding the input.
#[derive(Debug, PartialEq)]
enum Outcome {
    Request {
        method: String,
        target: String,
        version: Version,
        headers: Vec<(String, Vec<u8>)>,
        keep_alive: bool,
        authority: Option<String>,
        path_and_query: String,
        body: Vec<u8>,
    },
    Error(HttpError),
}

/// Limits from two input bytes: small ones most of the time, to reach every limit's edge with
/// short inputs, and now and then the config's defaults.
fn limits(a: u8, b: u8) -> Limits {
    if a & 0x80 != 0 {
        return Limits::default();
    }
    Limits {
        request_line: 4 + usize::from(a & 0x3f) * 2,
        headers: usize::from(b & 0x0f),
        header_field_size: 2 + usize::from(b >> 4) * 8,
        header_bytes: 16 + usize::from(a) * 4,
        body: u64::from(b & 0x3f),
    }
}

/// Feeds `input` into a connection-style buffer in pieces of the sizes `piece` returns, dropping
/// consumed bytes as the worker does, and returns the outcomes.
fn feed(limits: Limits, input: &[u8], mut piece: impl FnMut() -> usize) -> Vec<Outcome> {
    let mut decoder = Decoder::new(limits);
    let mut buf = Vec::new();
    let mut outcomes = Vec::new();
    let mut fed = 0;
    while fed < input.len() {
        let n = piece().clamp(1, input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        loop {
            assert!(!(decoder.is_idle() && decoder.reading_body()));
            match decoder.decode(&buf) {
                Ok(Decoded::Complete {
                    consumed,
                    head,
                    body,
                }) => {
                    assert!(consumed > 0 && consumed <= buf.len(), "consumed {consumed}");
                    assert!(body.len() as u64 <= limits.body, "body over the limit");
                    assert!(!decoder.reading_body());
                    buf.drain(..consumed);
                    let authority = head.authority().map(str::to_owned);
                    if let Some(a) = &authority {
                        assert!(a.is_ascii() && !a.contains('@'), "authority {a:?}");
                    }
                    outcomes.push(Outcome::Request {
                        path_and_query: head.path_and_query().into_owned(),
                        authority,
                        method: head.method,
                        target: head.target,
                        version: head.version,
                        headers: head.headers,
                        keep_alive: head.keep_alive,
                        body,
                    });
                }
                Ok(Decoded::NeedMore { consumed }) => {
                    assert!(consumed <= buf.len(), "consumed {consumed}");
                    buf.drain(..consumed);
                    let _ = decoder.take_continue();
                    break;
                }
                Err(e) => {
                    assert!(!decoder.take_continue(), "100 Continue after an error");
                    assert!(!decoder.reading_body() && !decoder.is_idle());
                    assert_eq!(decoder.decode(&buf).err(), Some(e.clone()), "sticky");
                    assert!(e.status >= 400 && e.status < 600);
                    outcomes.push(Outcome::Error(e));
                    return outcomes;
                }
            }
        }
    }
    outcomes
}

fuzz_target!(|data: &[u8]| {
    let [a, b, seed, input @ ..] = data else {
        return;
    };
    let limits = limits(*a, *b);
    let whole = feed(limits, input, || usize::MAX);
    let bytewise = feed(limits, input, || 1);
    assert_eq!(whole, bytewise, "whole vs byte by byte");
    // Piece sizes from a xorshift seeded by the input, so a crash reproduces from its file.
    let mut state = u64::from(*seed) << 32 | input.len() as u64 | 1;
    let max = 1 + usize::from(*seed % 32);
    let split = feed(limits, input, || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        1 + (state % max as u64) as usize
    });
    assert_eq!(whole, split, "whole vs pieces of up to {max}");
});
