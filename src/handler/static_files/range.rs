//! Byte ranges (RFC 9110 §14): parsing a `Range` field and deciding what part of a
//! representation of a given length to send.

/// What to send for a `Range` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeOutcome {
    /// The whole representation, `200`: no `Range`, one this server ignores (another unit,
    /// invalid syntax, several ranges), or an empty representation.
    Full,
    /// `206` with this one range.
    Partial {
        /// First byte.
        start: u64,
        /// How many bytes.
        len: u64,
    },
    /// `416`: no range overlaps the representation.
    Unsatisfiable,
}

/// More ranges than this in one field are ignored outright: a long list buys a client nothing
/// but costs the server parsing.
const MAX_RANGES: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spec {
    /// `first-` or `first-last`.
    From { first: u64, last: Option<u64> },
    /// `-suffix`: the last `suffix` bytes.
    Suffix(u64),
}

/// Decides what to send of a representation `len` bytes long for the `Range` field `value`.
///
/// Several ranges get the whole representation (`200`) when at least one overlaps it, rather
/// than a `multipart/byteranges` answer; RFC 9110 lets a server ignore `Range` at will.
pub fn evaluate(value: Option<&[u8]>, len: u64) -> RangeOutcome {
    let Some(specs) = value.and_then(parse) else {
        return RangeOutcome::Full;
    };
    if len == 0 {
        // Nothing to take a part of; the full (empty) representation is the honest answer.
        return RangeOutcome::Full;
    }
    let satisfiable: Vec<(u64, u64)> = specs
        .iter()
        .filter_map(|spec| resolve(*spec, len))
        .collect();
    match (specs.len(), satisfiable.as_slice()) {
        (_, []) => RangeOutcome::Unsatisfiable,
        (1, [(start, len)]) => RangeOutcome::Partial {
            start: *start,
            len: *len,
        },
        _ => RangeOutcome::Full,
    }
}

/// The byte range `spec` selects in a representation of `len > 0` bytes, as (start, length).
fn resolve(spec: Spec, len: u64) -> Option<(u64, u64)> {
    match spec {
        Spec::From { first, last } => {
            if first >= len {
                return None;
            }
            let last = last.map_or(len - 1, |last| last.min(len - 1));
            Some((first, last - first + 1))
        }
        Spec::Suffix(0) => None,
        Spec::Suffix(suffix) => {
            let take = suffix.min(len);
            Some((len - take, take))
        }
    }
}

/// Parses `bytes=range-spec, ...`; `None` for another unit, bad syntax or too many ranges.
fn parse(value: &[u8]) -> Option<Vec<Spec>> {
    let text = std::str::from_utf8(value).ok()?.trim_matches([' ', '\t']);
    let (unit, set) = text.split_once('=')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    for element in set.split(',') {
        let element = element.trim_matches([' ', '\t']);
        if element.is_empty() {
            continue;
        }
        if specs.len() == MAX_RANGES {
            return None;
        }
        let (first, last) = element.split_once('-')?;
        let spec = if first.is_empty() {
            Spec::Suffix(number(last)?)
        } else {
            let first = number(first)?;
            let last = if last.is_empty() {
                None
            } else {
                Some(number(last)?)
            };
            if last.is_some_and(|last| last < first) {
                return None;
            }
            Spec::From { first, last }
        };
        specs.push(spec);
    }
    (!specs.is_empty()).then_some(specs)
}

/// Decimal digits; a number too large for 64 bits is taken as the largest one, which is past
/// the end of any file.
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(value: &str, len: u64) -> RangeOutcome {
        evaluate(Some(value.as_bytes()), len)
    }

    fn part(start: u64, len: u64) -> RangeOutcome {
        RangeOutcome::Partial { start, len }
    }

    #[test]
    fn single_ranges() {
        let table: &[(&str, RangeOutcome)] = &[
            ("bytes=0-499", part(0, 500)),
            ("bytes=500-999", part(500, 500)),
            ("bytes=500-", part(500, 500)),
            ("bytes=-200", part(800, 200)),
            ("bytes=-5000", part(0, 1000)),
            ("bytes=0-0", part(0, 1)),
            ("bytes=999-999", part(999, 1)),
            ("bytes=900-5000", part(900, 100)),
            ("bytes=0-99999999999999999999999", part(0, 1000)),
            ("BYTES = 1-2", RangeOutcome::Full),
            ("Bytes=1-2", part(1, 2)),
            (" bytes=1-2 ", part(1, 2)),
            ("bytes= 1-2 , ", part(1, 2)),
        ];
        for (value, want) in table {
            assert_eq!(eval(value, 1000), *want, "{value}");
        }
    }

    #[test]
    fn unsatisfiable_ranges() {
        for value in [
            "bytes=1000-",
            "bytes=1000-2000",
            "bytes=-0",
            "bytes=99999999999999999999999-",
            "bytes=1000-1001, 2000-",
        ] {
            assert_eq!(eval(value, 1000), RangeOutcome::Unsatisfiable, "{value}");
        }
    }

    #[test]
    fn ignored_ranges_send_everything() {
        for value in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "items=0-5",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=1-2-3",
            "bytes=--5",
            "bytes=+1-2",
            "bytes=0x10-",
            // Several ranges, at least one satisfiable: the whole file.
            "bytes=0-1, 5-6",
            "bytes=0-1, 5000-6000",
        ] {
            assert_eq!(eval(value, 1000), RangeOutcome::Full, "{value:?}");
        }
        assert_eq!(evaluate(None, 1000), RangeOutcome::Full);
        assert_eq!(evaluate(Some(b"bytes=\xff-1"), 1000), RangeOutcome::Full);
        let many = format!("bytes={}", vec!["1-2"; MAX_RANGES + 1].join(","));
        assert_eq!(eval(&many, 1000), RangeOutcome::Full);
    }

    #[test]
    fn an_empty_file_is_sent_whole() {
        assert_eq!(eval("bytes=0-", 0), RangeOutcome::Full);
        assert_eq!(eval("bytes=-5", 0), RangeOutcome::Full);
    }
}
