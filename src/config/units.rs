//! Durations and byte sizes written with units ("1m30s", "64KiB"): parsing and formatting.
//!
//! Durations take the units `ms`, `s`, `m` and `h`, combined from largest to smallest
//! ("1h30m", "1m30s", "2s500ms"). A bare number is refused: "30" could mean seconds or
//! milliseconds, and guessing wrong by a factor of 1000 on a timeout is worse than asking.
//!
//! Sizes are a byte count ("8190") or a whole number with a unit. The single-letter units
//! and the `iB` units are powers of 1024 ("8K" = "8KiB" = 8192), because that is what
//! buffer limits conventionally mean; the `B` units are powers of 1000 ("8KB" = "8kB" =
//! 8000), as the SI prefixes say.

use std::time::Duration;

/// The units a duration may use, largest first, with their length in milliseconds.
const DURATION_UNITS: [(&str, u128); 4] =
    [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

const DURATION_FORMS: &str = "whole numbers each followed by a unit (ms, s, m or h), \
     like \"30s\", \"500ms\" or \"1m30s\"";

/// Parses a duration such as `"500ms"`, `"30s"`, `"2m"`, `"1h"` or `"1m30s"`.
///
/// Units must appear from largest to smallest, each at most once.
///
/// # Errors
///
/// A message naming the input and saying what is accepted, for a missing or unknown
/// unit, anything that is not whole numbers with units, or a total too large for
/// `Duration`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let fail = |why: &str| format!("invalid duration {}: {why}", quote(s));
    if s.is_empty() {
        return Err(fail(&format!("expected {DURATION_FORMS}")));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail(&format!(
            "add a unit (ms, s, m or h), like \"{s}s\" or \"{s}ms\""
        )));
    }
    // u128 milliseconds cannot overflow: four u64 counts times at most 3.6e6 stay far below
    // 2^128, so the only limit to check is Duration's own, once at the end.
    let mut total_millis: u128 = 0;
    // Index into DURATION_UNITS of the last unit seen; later units must have a larger index.
    let mut last_unit: Option<usize> = None;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(fail(&format!("expected {DURATION_FORMS}")));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(fail(&format!("expected {DURATION_FORMS}")));
        }
        let Some(index) = DURATION_UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(fail(&format!(
                "unknown unit {}; use ms, s, m or h",
                quote(unit)
            )));
        };
        if last_unit.is_some_and(|last| last >= index) {
            return Err(fail(
                "units must go from largest to smallest, each used once, like \"1m30s\"",
            ));
        }
        last_unit = Some(index);
        let count: u64 = number.parse().map_err(|_| fail("too large"))?;
        total_millis += u128::from(count) * DURATION_UNITS[index].1;
        rest = after;
    }
    // Timers add durations to the clock; a year is far beyond any sensible setting and keeps
    // that arithmetic from overflowing.
    if total_millis > MAX_DURATION_MILLIS {
        return Err(fail("too large; at most 8760h (a year)"));
    }
    let secs = u64::try_from(total_millis / 1000).map_err(|_| fail("too large"))?;
    // The remainder is below 1000, so the cast cannot truncate.
    let nanos = (total_millis % 1000) as u32 * 1_000_000;
    Ok(Duration::new(secs, nanos))
}

/// The longest duration accepted: a year.
const MAX_DURATION_MILLIS: u128 = 365 * 24 * 3600 * 1000;

/// Formats a duration in the largest single unit that divides it exactly: `"2m"`, `"75s"`,
/// `"500ms"`, `"0s"`.
///
/// The result parses back to the same duration for any whole number of milliseconds;
/// a sub-millisecond remainder, which no parsed duration has, is dropped.
pub fn format_duration(d: Duration) -> String {
    let millis = d.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    for (name, unit_millis) in DURATION_UNITS {
        if millis % unit_millis == 0 {
            return format!("{}{name}", millis / unit_millis);
        }
    }
    unreachable!("every whole number of milliseconds is a multiple of 1ms")
}

/// Size units: suffix and its multiplier. Single letters and `iB` are powers of 1024,
/// `B` suffixes after a prefix are powers of 1000.
const SIZE_UNITS: [(&str, u64); 20] = [
    ("B", 1),
    ("K", 1 << 10),
    ("KiB", 1 << 10),
    ("KB", 1_000),
    ("kB", 1_000),
    ("M", 1 << 20),
    ("MiB", 1 << 20),
    ("MB", 1_000_000),
    ("G", 1 << 30),
    ("GiB", 1 << 30),
    ("GB", 1_000_000_000),
    ("T", 1 << 40),
    ("TiB", 1 << 40),
    ("TB", 1_000_000_000_000),
    ("P", 1 << 50),
    ("PiB", 1 << 50),
    ("PB", 1_000_000_000_000_000),
    ("E", 1 << 60),
    ("EiB", 1 << 60),
    ("EB", 1_000_000_000_000_000_000),
];

/// The binary units `format_size` writes, largest first.
const BINARY_UNITS: [(&str, u64); 6] = [
    ("EiB", 1 << 60),
    ("PiB", 1 << 50),
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
];

const SIZE_FORMS: &str = "a whole number of bytes, optionally followed by a unit, \
     like \"512\", \"8KiB\" or \"100MiB\"";

/// Parses a size in bytes: `"512"`, `"8K"`, `"8KiB"` (8192), `"8KB"` or `"8kB"` (8000),
/// `"100MiB"`, `"1GiB"`, up to exbibytes.
///
/// # Errors
///
/// A message naming the input and saying what is accepted, for an unknown unit, anything
/// that is not a whole number with an optional unit, or a result that does not fit in
/// 64 bits (never a wrapped value).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let fail = |why: &str| format!("invalid size {}: {why}", quote(s));
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(fail(&format!("expected {SIZE_FORMS}")));
    }
    let (number, unit) = s.split_at(digits);
    let multiplier = if unit.is_empty() {
        1
    } else if let Some((_, m)) = SIZE_UNITS.iter().find(|(name, _)| *name == unit) {
        *m
    } else if unit.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(fail(&format!(
            "unknown unit {}; use B, K or KiB, M or MiB, G or GiB, T or TiB \
             (powers of 1024), or KB, MB, GB, TB (powers of 1000)",
            quote(unit)
        )));
    } else {
        return Err(fail(&format!("expected {SIZE_FORMS}")));
    };
    let too_large = || fail("too large: sizes must fit in 64 bits");
    let count: u64 = number.parse().map_err(|_| too_large())?;
    count.checked_mul(multiplier).ok_or_else(too_large)
}

/// Formats a size with the largest binary unit that divides it exactly (`"100MiB"`,
/// `"64KiB"`), or as a plain byte count (`"8190"`, `"0"`). The result parses back to `n`.
pub fn format_size(n: u64) -> String {
    if n != 0 {
        for (name, unit) in BINARY_UNITS {
            if n % unit == 0 {
                return format!("{}{name}", n / unit);
            }
        }
    }
    n.to_string()
}

/// Quotes user input for an error message, escaping control characters so a stray newline
/// cannot break the one-line-per-problem output, and cutting very long input short.
pub(crate) fn quote(s: &str) -> String {
    const MAX_CHARS: usize = 40;
    let mut out = String::from("\"");
    for (i, c) in s.chars().enumerate() {
        if i == MAX_CHARS {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_parse() {
        let table = [
            ("500ms", ms(500)),
            ("30s", ms(30_000)),
            ("2m", ms(120_000)),
            ("1h", ms(3_600_000)),
            ("1m30s", ms(90_000)),
            ("1h2m3s4ms", ms(3_723_004)),
            ("0s", Duration::ZERO),
            ("0ms", Duration::ZERO),
            ("90m", ms(5_400_000)),
            ("007s", ms(7_000)),
        ];
        for (text, want) in table {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn durations_reject_with_a_reason() {
        let table = [
            ("", "expected whole numbers"),
            ("30", "add a unit (ms, s, m or h), like \"30s\" or \"30ms\""),
            ("0", "add a unit"),
            ("1.5s", "expected whole numbers"),
            ("-1s", "expected whole numbers"),
            ("+1s", "expected whole numbers"),
            (" 30s", "expected whole numbers"),
            ("30s ", "expected whole numbers"),
            ("1m 30s", "expected whole numbers"),
            ("1m30", "expected whole numbers"),
            ("s", "expected whole numbers"),
            ("30sec", "unknown unit \"sec\"; use ms, s, m or h"),
            ("30S", "unknown unit \"S\""),
            ("1d", "unknown unit \"d\""),
            ("30s1m", "units must go from largest to smallest"),
            ("1s1s", "units must go from largest to smallest"),
            ("99999999999999999999s", "too large"),
        ];
        for (text, want) in table {
            let err = parse_duration(text).expect_err(text);
            assert!(
                err.starts_with(&format!("invalid duration {}: ", quote(text))),
                "{text}: {err}"
            );
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn durations_longer_than_a_year_are_refused() {
        assert_eq!(
            parse_duration("8760h"),
            Ok(Duration::from_secs(365 * 24 * 3600))
        );
        for text in [
            "8760h1ms",
            "18446744073709551616s",
            "18446744073709551615h",
            "18446744073709551615999ms",
        ] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(": too large"), "{text}: {err}");
        }
        assert_eq!(
            parse_duration("5000000000ms"),
            Ok(Duration::from_secs(5_000_000))
        );
    }

    #[test]
    fn durations_format() {
        let table = [
            (Duration::ZERO, "0s"),
            (ms(500), "500ms"),
            (ms(1_500), "1500ms"),
            (ms(30_000), "30s"),
            (ms(75_000), "75s"),
            (ms(120_000), "2m"),
            (ms(5_400_000), "90m"),
            (ms(3_600_000), "1h"),
            (ms(86_400_000), "24h"),
            (Duration::from_micros(2_500), "2ms"),
        ];
        for (d, want) in table {
            assert_eq!(format_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn durations_round_trip() {
        let samples = [
            0,
            1,
            999,
            1_000,
            1_001,
            59_999,
            60_000,
            61_000,
            3_599_999,
            3_600_000,
            7_261_001,
            u64::from(u32::MAX),
        ];
        for n in samples {
            let d = ms(n);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{n}ms");
        }
        let year = Duration::from_secs(365 * 24 * 3600);
        assert_eq!(parse_duration(&format_duration(year)), Ok(year));
    }

    #[test]
    fn sizes_parse() {
        let table = [
            ("0", 0),
            ("512", 512),
            ("8190", 8190),
            ("512B", 512),
            ("8K", 8192),
            ("8KiB", 8192),
            ("8KB", 8000),
            ("8kB", 8000),
            ("64KiB", 65_536),
            ("100MiB", 104_857_600),
            ("100M", 104_857_600),
            ("100MB", 100_000_000),
            ("1GiB", 1 << 30),
            ("1GB", 1_000_000_000),
            ("2TiB", 2 << 40),
            ("3PiB", 3 << 50),
            ("15EiB", 15 << 60),
            ("18446744073709551615", u64::MAX),
        ];
        for (text, want) in table {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn sizes_reject_with_a_reason() {
        let table = [
            ("", "expected a whole number of bytes"),
            ("KiB", "expected a whole number of bytes"),
            ("1.5MiB", "expected a whole number of bytes"),
            ("-1", "expected a whole number of bytes"),
            ("8 KiB", "expected a whole number of bytes"),
            ("8kb", "unknown unit \"kb\"; use B, K or KiB"),
            ("8k", "unknown unit \"k\""),
            ("8Kib", "unknown unit \"Kib\""),
            ("8mb", "unknown unit \"mb\""),
            ("16EiB", "too large"),
            ("18446744073709551616", "too large"),
            ("99999999999999999999EB", "too large"),
        ];
        for (text, want) in table {
            let err = parse_size(text).expect_err(text);
            assert!(
                err.starts_with(&format!("invalid size {}: ", quote(text))),
                "{text}: {err}"
            );
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn sizes_format() {
        let table = [
            (0, "0"),
            (1, "1"),
            (1000, "1000"),
            (8190, "8190"),
            (8192, "8KiB"),
            (65_536, "64KiB"),
            (104_857_600, "100MiB"),
            (1 << 30, "1GiB"),
            (1536 << 20, "1536MiB"),
            (1 << 40, "1TiB"),
            (1 << 60, "1EiB"),
            (u64::MAX, "18446744073709551615"),
        ];
        for (n, want) in table {
            assert_eq!(format_size(n), want, "{n}");
        }
    }

    #[test]
    fn sizes_round_trip() {
        let mut samples = vec![0, 1, 1023, 1024, 1025, 8000, 8190, 8192, u64::MAX];
        samples.extend((0..64).map(|bit| 1u64 << bit));
        samples.extend((1..64).map(|bit| (1u64 << bit) + (1u64 << (bit - 1))));
        for n in samples {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
    }

    #[test]
    fn quote_escapes_and_cuts() {
        assert_eq!(quote("four"), "\"four\"");
        assert_eq!(quote("a\"b\nc"), "\"a\\\"b\\nc\"");
        let long = "x".repeat(100);
        assert_eq!(quote(&long), format!("\"{}...\"", "x".repeat(40)));
    }
}
