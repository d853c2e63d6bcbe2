//! Small text helpers shared by the logs, the status output and HTTP: civil UTC time, time
//! stamps, JSON strings and I/O error messages. A leaf: it imports nothing from the crate.

use std::fmt::Write as _;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

/// English month abbreviations, January first, as HTTP dates and log time stamps write them.
pub const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Civil UTC time for a Unix time: (year, month 1-12, day 1-31, hour, minute, second,
/// weekday 0=Sunday). Valid for every u64, with years far beyond 9999 for huge inputs.
pub fn civil_from_unix(unix_secs: u64) -> (i64, u32, u32, u32, u32, u32, u32) {
    // u64::MAX / 86400 is about 2.1e14, so the day count always fits an i64.
    let days = i64::try_from(unix_secs / 86_400).unwrap_or(i64::MAX / 2);
    let secs_of_day = (unix_secs % 86_400) as u32;
    let (hour, minute, second) = (
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60,
    );
    // 1970-01-01 was a Thursday.
    let weekday = ((days + 4) % 7) as u32;

    // Howard Hinnant's civil_from_days: eras of 400 years starting on March 1st, so the leap
    // day falls at the end of each computed year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, hour, minute, second, weekday)
}

/// `2026-11-23T09:30:00.123Z`: RFC 3339 in UTC with milliseconds, as the error log and the
/// JSON access log write times.
pub fn utc_stamp(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (year, month, day, hour, minute, second, _) = civil_from_unix(since_epoch.as_secs());
    format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{:03}Z",
        since_epoch.subsec_millis()
    )
}

/// `text` as a JSON string literal, control characters escaped; the status output and the
/// JSON access log share it.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Describes an I/O error the way a log line should: `permission denied`, not
/// `Permission denied (os error 13)`.
pub fn describe_io(err: &io::Error) -> String {
    if err.raw_os_error().is_some() {
        let text = err.to_string();
        let text = match text.find(" (os error") {
            Some(end) => &text[..end],
            None => &text,
        };
        let mut chars = text.chars();
        match chars.next() {
            Some(first) => first.to_lowercase().chain(chars).collect(),
            None => String::new(),
        }
    } else {
        err.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn civil_fields() {
        assert_eq!(civil_from_unix(0), (1970, 1, 1, 0, 0, 0, 4));
        assert_eq!(civil_from_unix(784_111_777), (1994, 11, 6, 8, 49, 37, 0));
        assert_eq!(
            civil_from_unix(951_782_400 - 1),
            (2000, 2, 28, 23, 59, 59, 1)
        );
        // 9999-12-31T23:59:59Z plus one second.
        assert_eq!(civil_from_unix(253_402_300_800), (10000, 1, 1, 0, 0, 0, 6));
        // Must not overflow at the very top of the range.
        let (year, month, day, ..) = civil_from_unix(u64::MAX);
        assert!(year > 500_000_000_000);
        assert!((1..=12).contains(&month) && (1..=31).contains(&day));
    }

    #[test]
    fn civil_days_walk_consistently() {
        // Every day from 1970-01-01 forward for 1200 years: consecutive days advance the date by
        // exactly one and the weekday by one.
        let mut prev = civil_from_unix(0);
        for d in 1..(1200 * 366) {
            let cur = civil_from_unix(d * 86_400 + 3661);
            assert_eq!((cur.3, cur.4, cur.5), (1, 1, 1));
            assert_eq!(cur.6, (prev.6 + 1) % 7);
            let next_day = cur.2 == prev.2 + 1 && cur.1 == prev.1 && cur.0 == prev.0;
            let next_month = cur.2 == 1 && cur.1 == prev.1 + 1 && cur.0 == prev.0;
            let next_year = cur.2 == 1 && cur.1 == 1 && prev.1 == 12 && cur.0 == prev.0 + 1;
            assert!(next_day || next_month || next_year, "{prev:?} -> {cur:?}");
            if next_month || next_year {
                let leap = (prev.0 % 4 == 0 && prev.0 % 100 != 0) || prev.0 % 400 == 0;
                let len = match prev.1 {
                    2 if leap => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                assert_eq!(prev.2, len, "{prev:?}");
            }
            prev = cur;
        }
    }

    #[test]
    fn stamp_is_rfc3339_utc_with_millis() {
        assert_eq!(
            utc_stamp(UNIX_EPOCH + Duration::from_millis(784_111_777_042)),
            "1994-11-06T08:49:37.042Z"
        );
        assert_eq!(
            utc_stamp(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn json_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        assert_eq!(json_string("\u{7f}é"), "\"\\u007fé\"");
    }

    #[test]
    fn io_errors_read_like_prose() {
        let denied = io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(describe_io(&denied), "permission denied");
        let custom = io::Error::new(
            io::ErrorKind::AddrInUse,
            "another server is listening on it",
        );
        assert_eq!(describe_io(&custom), "another server is listening on it");
    }
}
