//! Fuzzes the static handler's `Range` evaluation (`tine::handler::static_files::range`): what
//! part of a representation of a given length a `Range` field selects.
//!
//! The first byte and the next eight choose the representation's length (mostly small, to meet
//! the ends of the file with short inputs, now and then any 64-bit length); the rest is the
//! field's value. Checked on every input:
//! - no panic, no overflow;
//! - a partial answer is non-empty and lies within the representation (start + length <= the
//!   representation's length), and no answer sends more than the representation;
//! - an empty representation is always sent whole, and no field at all sends it whole;
//! - a field with several ranges never gets a single-range answer (the multi-range total is
//!   the representation at most);
//! - spaces and tabs around the value, an empty list element after it and the unit's case
//!   change nothing;
//! - a single `bytes=first-last`, `bytes=first-` or `bytes=-suffix` gets what RFC 9110 §14.1.2
//!   says, computed here on its own.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tine::handler::static_files::range::{RangeOutcome, evaluate};

/// One byte range, as the field writes it.
enum Spec {
    FirstLast(u64, u64),
    From(u64),
    Suffix(u64),
}

/// Up to 19 decimal digits: every such number fits in 64 bits.
fn digits(text: &str) -> Option<u64> {
    (1..=19).contains(&text.len()).then_some(())?;
    text.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
    text.parse().ok()
}

/// The value when it is exactly `bytes=<spec>` (the unit in any case), and nothing else.
fn single(value: &[u8]) -> Option<Spec> {
    let text = std::str::from_utf8(value).ok()?;
    let spec = text
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))?;
    let spec = &text[spec.len()..];
    let (first, last) = spec.split_once('-')?;
    Some(match (first.is_empty(), last.is_empty()) {
        (true, false) => Spec::Suffix(digits(last)?),
        (false, true) => Spec::From(digits(first)?),
        (false, false) => Spec::FirstLast(digits(first)?, digits(last)?),
        (true, true) => return None,
    })
}

/// RFC 9110 §14.1.2 for one range of a representation `len > 0` bytes long.
fn rfc(spec: &Spec, len: u64) -> RangeOutcome {
    let part = |start: u64, end: u64| RangeOutcome::Partial {
        start,
        len: end - start + 1,
    };
    match *spec {
        // An invalid range-spec: the field is ignored.
        Spec::FirstLast(first, last) if last < first => RangeOutcome::Full,
        Spec::FirstLast(first, _) | Spec::From(first) if first >= len => {
            RangeOutcome::Unsatisfiable
        }
        Spec::FirstLast(first, last) => part(first, last.min(len - 1)),
        Spec::From(first) => part(first, len - 1),
        Spec::Suffix(0) => RangeOutcome::Unsatisfiable,
        Spec::Suffix(suffix) => part(len - suffix.min(len), len - 1),
    }
}

/// How many non-empty ranges the value lists after its first `=`.
fn ranges(value: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(value) else {
        return 0;
    };
    let Some((_, set)) = text.split_once('=') else {
        return 0;
    };
    set.split(',')
        .filter(|element| !element.trim_matches([' ', '\t']).is_empty())
        .count()
}

fuzz_target!(|data: &[u8]| {
    let [mode, a, b, c, d, e, f, g, h, value @ ..] = data else {
        return;
    };
    let raw = u64::from_le_bytes([*a, *b, *c, *d, *e, *f, *g, *h]);
    let len = match mode {
        0..=127 => raw % 2048,
        128..=191 => raw % (1 << 40),
        _ => raw,
    };
    let outcome = evaluate(Some(value), len);

    let sent = match outcome {
        RangeOutcome::Full => len,
        RangeOutcome::Partial { start, len: n } => {
            assert!(n >= 1, "an empty part");
            let end = start.checked_add(n).expect("start + length overflows");
            assert!(end <= len, "{start} + {n} past {len}");
            n
        }
        RangeOutcome::Unsatisfiable => 0,
    };
    assert!(sent <= len);
    if len == 0 {
        assert_eq!(outcome, RangeOutcome::Full, "an empty representation");
    }
    assert_eq!(evaluate(None, len), RangeOutcome::Full);
    if ranges(value) >= 2 {
        assert!(
            !matches!(outcome, RangeOutcome::Partial { .. }),
            "several ranges, one part"
        );
    }

    let padded = [b" \t".as_slice(), value, b"\t "].concat();
    assert_eq!(evaluate(Some(&padded), len), outcome, "padded");
    let trailing = [value, b", ".as_slice()].concat();
    assert_eq!(
        evaluate(Some(&trailing), len),
        outcome,
        "an empty element after"
    );
    if value.len() >= 6 && value[..6].eq_ignore_ascii_case(b"bytes=") {
        let upper = [b"BYTES=".as_slice(), &value[6..]].concat();
        assert_eq!(evaluate(Some(&upper), len), outcome, "the unit's case");
    }

    if let Some(spec) = single(value) {
        let want = if len == 0 {
            RangeOutcome::Full
        } else {
            rfc(&spec, len)
        };
        assert_eq!(
            outcome,
            want,
            "{:?} of {len}",
            String::from_utf8_lossy(value)
        );
    }
});
