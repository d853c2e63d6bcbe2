//! Conditional requests (RFC 9110 §13): entity tags, HTTP dates, and the order in which
//! `If-Match`, `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since` and `If-Range` are
//! evaluated against a file's validators.

use crate::handler::Headers;
use crate::text::MONTHS;

/// What the preconditions of a request decide for a representation that exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Every condition holds (or there were none): answer normally.
    Proceed,
    /// `304 Not Modified`: the client's copy is current.
    NotModified,
    /// `412 Precondition Failed`.
    Failed,
}

/// A representation's validators: its strong entity tag, quotes included (`"1a-2b"`), and its
/// last modification time in Unix seconds.
#[derive(Clone, Copy, Debug)]
pub struct Validators<'a> {
    /// The strong entity tag, with its quotes.
    pub etag: &'a str,
    /// The modification time, whole seconds since the epoch.
    pub last_modified: u64,
}

/// Evaluates the preconditions of a `method` request in the order RFC 9110 §13.2.2 sets:
/// `If-Match`, else `If-Unmodified-Since`; then `If-None-Match`, else `If-Modified-Since`
/// (the latter only for GET and HEAD). A date that does not parse is ignored, as the RFC says.
pub fn evaluate(headers: &Headers, method: &str, validators: Validators<'_>) -> Precondition {
    let safe = matches!(method, "GET" | "HEAD");
    if has(headers, "if-match") {
        let holds = match parse_tags(headers.get_all("if-match")) {
            Tags::Any => true,
            Tags::List(tags) => tags.iter().any(|tag| tag.strong_eq(validators.etag)),
            Tags::Invalid => false,
        };
        if !holds {
            return Precondition::Failed;
        }
    } else if let Some(since) = headers.get("if-unmodified-since").and_then(parse_http_date)
        && validators.last_modified > since
    {
        return Precondition::Failed;
    }

    if has(headers, "if-none-match") {
        let any_match = match parse_tags(headers.get_all("if-none-match")) {
            Tags::Any => true,
            Tags::List(tags) => tags.iter().any(|tag| tag.weak_eq(validators.etag)),
            Tags::Invalid => false,
        };
        if any_match {
            return if safe {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if safe
        && let Some(since) = headers.get("if-modified-since").and_then(parse_http_date)
        && validators.last_modified <= since
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// Whether a `Range` may be honoured given `If-Range` (RFC 9110 §13.1.5): with no `If-Range`
/// it may; an entity tag must match strongly, a date exactly; anything else means "send it all".
pub fn if_range_holds(headers: &Headers, validators: Validators<'_>) -> bool {
    let Some(value) = headers.get("if-range") else {
        return true;
    };
    let value = trim(value);
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        return matches!(parse_tags(std::iter::once(value)), Tags::List(tags)
            if tags.len() == 1 && tags[0].strong_eq(validators.etag));
    }
    parse_http_date(value) == Some(validators.last_modified)
}

fn has(headers: &Headers, name: &str) -> bool {
    headers.get(name).is_some()
}

/// One entity tag from a request: weak or strong, and its opaque part with quotes.
#[derive(Debug, PartialEq, Eq)]
struct Tag<'a> {
    weak: bool,
    quoted: &'a [u8],
}

impl Tag<'_> {
    /// Strong comparison: both strong and identical.
    fn strong_eq(&self, ours: &str) -> bool {
        !self.weak && self.quoted == ours.as_bytes()
    }

    /// Weak comparison: identical opaque parts, weakness ignored.
    fn weak_eq(&self, ours: &str) -> bool {
        self.quoted == ours.as_bytes()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Tags<'a> {
    /// `*`
    Any,
    List(Vec<Tag<'a>>),
    /// Not an entity-tag list; treated as matching nothing.
    Invalid,
}

/// Parses `*` or a comma-separated list of entity tags, across every field line given.
fn parse_tags<'a>(values: impl Iterator<Item = &'a [u8]>) -> Tags<'a> {
    let mut tags = Vec::new();
    let mut any = false;
    for value in values {
        let mut rest = value;
        loop {
            rest = trim_start(rest);
            match rest.first() {
                None => break,
                Some(b',') => {
                    rest = &rest[1..];
                    continue;
                }
                Some(b'*') => {
                    any = true;
                    rest = &rest[1..];
                }
                Some(_) => {
                    let weak = rest.starts_with(b"W/");
                    let body = if weak { &rest[2..] } else { rest };
                    if body.first() != Some(&b'"') {
                        return Tags::Invalid;
                    }
                    let Some(close) = body[1..].iter().position(|&b| b == b'"') else {
                        return Tags::Invalid;
                    };
                    let quoted = &body[..close + 2];
                    // etagc: %x21 / %x23-7E / obs-text; no spaces, controls or DEL.
                    if quoted[1..quoted.len() - 1]
                        .iter()
                        .any(|&b| b <= 0x20 || b == 0x7f)
                    {
                        return Tags::Invalid;
                    }
                    tags.push(Tag { weak, quoted });
                    rest = &body[close + 2..];
                }
            }
            rest = trim_start(rest);
            match rest.first() {
                None => break,
                Some(b',') => rest = &rest[1..],
                Some(_) => return Tags::Invalid,
            }
        }
    }
    match (any, tags.is_empty()) {
        (true, true) => Tags::Any,
        // `*` mixed with tags is not a valid field value.
        (true, false) => Tags::Invalid,
        (false, _) => Tags::List(tags),
    }
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    &bytes[start..]
}

fn trim(bytes: &[u8]) -> &[u8] {
    let bytes = trim_start(bytes);
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Parses an HTTP-date (RFC 9110 §5.6.7) into Unix seconds: the preferred IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`) and the two obsolete forms recipients must still accept,
/// RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
/// Dates before 1970 are `None`: no file on this server is older.
pub fn parse_http_date(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(trim(value)).ok()?;
    parse_imf_fixdate(text)
        .or_else(|| parse_rfc850(text))
        .or_else(|| parse_asctime(text))
}

fn parse_imf_fixdate(text: &str) -> Option<u64> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let b = text.as_bytes();
    if b.len() != 29 || &b[3..5] != b", " || b[7] != b' ' || b[11] != b' ' || b[16] != b' ' {
        return None;
    }
    if !short_day(&b[..3]) || &b[25..] != b" GMT" {
        return None;
    }
    let day = digits(&b[5..7])?;
    let month = month(&b[8..11])?;
    let year = digits(&b[12..16])?;
    let seconds = time_of_day(&b[17..25])?;
    to_unix(year, month, day, seconds)
}

fn parse_rfc850(text: &str) -> Option<u64> {
    // "Sunday, 06-Nov-94 08:49:37 GMT"
    let (weekday, rest) = text.split_once(", ")?;
    if !DAYS.contains(&weekday) {
        return None;
    }
    let b = rest.as_bytes();
    if b.len() != 22 || b[2] != b'-' || b[6] != b'-' || b[9] != b' ' || &b[18..] != b" GMT" {
        return None;
    }
    let day = digits(&b[..2])?;
    let month = month(&b[3..6])?;
    let two_digit_year = digits(&b[7..9])?;
    // RFC 9110: a two-digit year more than 50 years in the future is in the past century;
    // for dates a client sends back to us, "70 or later is 19xx" is that rule in practice.
    let year = if two_digit_year >= 70 {
        1900 + two_digit_year
    } else {
        2000 + two_digit_year
    };
    let seconds = time_of_day(&b[10..18])?;
    to_unix(year, month, day, seconds)
}

fn parse_asctime(text: &str) -> Option<u64> {
    // "Sun Nov  6 08:49:37 1994"
    let b = text.as_bytes();
    if b.len() != 24 || b[3] != b' ' || b[7] != b' ' || b[10] != b' ' || b[19] != b' ' {
        return None;
    }
    if !short_day(&b[..3]) {
        return None;
    }
    let month = month(&b[4..7])?;
    let day = if b[8] == b' ' {
        digits(&b[9..10])?
    } else {
        digits(&b[8..10])?
    };
    let seconds = time_of_day(&b[11..19])?;
    let year = digits(&b[20..24])?;
    to_unix(year, month, day, seconds)
}

fn short_day(name: &[u8]) -> bool {
    DAYS.iter().any(|day| &day.as_bytes()[..3] == name)
}

fn month(name: &[u8]) -> Option<u64> {
    MONTHS
        .iter()
        .position(|m| m.as_bytes() == name)
        .map(|i| i as u64 + 1)
}

fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// "HH:MM:SS" as seconds into the day; a leap second (60) counts as the second before it.
fn time_of_day(b: &[u8]) -> Option<u64> {
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (hour, minute, second) = (digits(&b[..2])?, digits(&b[3..5])?, digits(&b[6..8])?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(hour * 3600 + minute * 60 + second.min(59))
}

fn to_unix(year: u64, month: u64, day: u64, seconds: u64) -> Option<u64> {
    if year < 1970 || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    // Howard Hinnant's days_from_civil, for years from 1970 on.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let year_of_era = y % 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
    days.checked_mul(86_400)?.checked_add(seconds)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::http_date;

    const ETAG: &str = "\"5-10-abc\"";
    /// Sun, 06 Nov 1994 08:49:37 GMT
    const LM: u64 = 784_111_777;

    fn validators() -> Validators<'static> {
        Validators {
            etag: ETAG,
            last_modified: LM,
        }
    }

    fn headers(fields: &[(&str, &str)]) -> Headers {
        Headers::from_fields(
            fields
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    fn check(method: &str, fields: &[(&str, &str)]) -> Precondition {
        evaluate(&headers(fields), method, validators())
    }

    #[test]
    fn dates_in_all_three_formats() {
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "  Sun, 06 Nov 1994 08:49:37 GMT ",
        ] {
            assert_eq!(parse_http_date(text.as_bytes()), Some(LM), "{text}");
        }
        assert_eq!(parse_http_date(b"Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date(b"Tue, 29 Feb 2000 23:59:60 GMT"),
            Some(951_868_799)
        );
        for bad in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Wed, 31 Dec 1969 23:59:59 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
            "Funday, 06-Nov-94 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(parse_http_date(b"\xff\xfe"), None);
    }

    #[test]
    fn dates_round_trip_through_the_formatter() {
        for secs in [0, LM, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_http_date(&http_date(secs)), Some(secs), "{secs}");
        }
    }

    #[test]
    fn entity_tag_lists() {
        let tags = |v: &'static str| parse_tags(std::iter::once(v.as_bytes()));
        assert_eq!(tags("*"), Tags::Any);
        assert_eq!(tags(" * "), Tags::Any);
        assert_eq!(
            tags("\"a\", W/\"b\" ,,\"c\""),
            Tags::List(vec![
                Tag {
                    weak: false,
                    quoted: b"\"a\""
                },
                Tag {
                    weak: true,
                    quoted: b"\"b\""
                },
                Tag {
                    weak: false,
                    quoted: b"\"c\""
                },
            ])
        );
        assert_eq!(
            tags("\"\""),
            Tags::List(vec![Tag {
                weak: false,
                quoted: b"\"\""
            }])
        );
        for bad in [
            "a",
            "\"open",
            "\"a\" \"b\"",
            "*, \"a\"",
            "w/\"a\"",
            "\"a b\"",
        ] {
            assert_eq!(tags(bad), Tags::Invalid, "{bad:?}");
        }
        let two_lines = parse_tags([&b"\"x\""[..], &b"\"y\""[..]].into_iter());
        assert!(matches!(two_lines, Tags::List(ref t) if t.len() == 2));
    }

    #[test]
    fn no_conditions_proceed() {
        assert_eq!(check("GET", &[]), Precondition::Proceed);
    }

    #[test]
    fn if_none_match_gives_304_on_a_weak_match_for_get_and_head() {
        let table: &[(&str, &str, Precondition)] = &[
            ("GET", ETAG, Precondition::NotModified),
            ("HEAD", ETAG, Precondition::NotModified),
            ("GET", "W/\"5-10-abc\"", Precondition::NotModified),
            ("GET", "\"other\", \"5-10-abc\"", Precondition::NotModified),
            ("GET", "*", Precondition::NotModified),
            ("GET", "\"other\"", Precondition::Proceed),
            ("GET", "garbage", Precondition::Proceed),
            ("POST", ETAG, Precondition::Failed),
            ("DELETE", "*", Precondition::Failed),
        ];
        for (method, value, want) in table {
            assert_eq!(
                check(method, &[("If-None-Match", value)]),
                *want,
                "{method} {value}"
            );
        }
    }

    #[test]
    fn if_modified_since_compares_seconds() {
        let at = |secs: u64| String::from_utf8(http_date(secs).to_vec()).unwrap();
        assert_eq!(
            check("GET", &[("If-Modified-Since", &at(LM))]),
            Precondition::NotModified
        );
        assert_eq!(
            check("GET", &[("If-Modified-Since", &at(LM + 5))]),
            Precondition::NotModified
        );
        assert_eq!(
            check("GET", &[("If-Modified-Since", &at(LM - 1))]),
            Precondition::Proceed
        );
        assert_eq!(
            check("GET", &[("If-Modified-Since", "not a date")]),
            Precondition::Proceed
        );
        // Only GET and HEAD.
        assert_eq!(
            check("POST", &[("If-Modified-Since", &at(LM))]),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since() {
        let current = String::from_utf8(http_date(LM).to_vec()).unwrap();
        let stale = String::from_utf8(http_date(LM - 100).to_vec()).unwrap();
        // The tag does not match: the date, which would say 304, is not consulted.
        assert_eq!(
            check(
                "GET",
                &[
                    ("If-None-Match", "\"other\""),
                    ("If-Modified-Since", &current)
                ]
            ),
            Precondition::Proceed
        );
        // The tag matches: 304 even though the date says modified.
        assert_eq!(
            check(
                "GET",
                &[("If-Modified-Since", &stale), ("If-None-Match", ETAG)]
            ),
            Precondition::NotModified
        );
    }

    #[test]
    fn if_match_needs_a_strong_match() {
        let table: &[(&str, Precondition)] = &[
            (ETAG, Precondition::Proceed),
            ("*", Precondition::Proceed),
            ("\"x\", \"5-10-abc\"", Precondition::Proceed),
            ("W/\"5-10-abc\"", Precondition::Failed),
            ("\"x\"", Precondition::Failed),
            ("garbage", Precondition::Failed),
        ];
        for (value, want) in table {
            assert_eq!(check("GET", &[("If-Match", value)]), *want, "{value}");
        }
    }

    #[test]
    fn if_unmodified_since_and_its_precedence() {
        let at = |secs: u64| String::from_utf8(http_date(secs).to_vec()).unwrap();
        assert_eq!(
            check("GET", &[("If-Unmodified-Since", &at(LM))]),
            Precondition::Proceed
        );
        assert_eq!(
            check("GET", &[("If-Unmodified-Since", &at(LM - 1))]),
            Precondition::Failed
        );
        assert_eq!(
            check("GET", &[("If-Unmodified-Since", "bogus")]),
            Precondition::Proceed
        );
        // If-Match present: If-Unmodified-Since is ignored.
        assert_eq!(
            check(
                "GET",
                &[("If-Match", ETAG), ("If-Unmodified-Since", &at(LM - 1))]
            ),
            Precondition::Proceed
        );
        // A failed If-Match wins over a matching If-None-Match's 304.
        assert_eq!(
            check("GET", &[("If-Match", "\"x\""), ("If-None-Match", ETAG)]),
            Precondition::Failed
        );
        // Both hold, then If-None-Match decides.
        assert_eq!(
            check("GET", &[("If-Match", ETAG), ("If-None-Match", ETAG)]),
            Precondition::NotModified
        );
    }

    #[test]
    fn if_range_matches_strong_tags_and_exact_dates() {
        let at = |secs: u64| String::from_utf8(http_date(secs).to_vec()).unwrap();
        let holds = |value: &str| if_range_holds(&headers(&[("If-Range", value)]), validators());
        assert!(if_range_holds(&headers(&[]), validators()));
        assert!(holds(ETAG));
        assert!(!holds("W/\"5-10-abc\""));
        assert!(!holds("\"other\""));
        assert!(holds(&at(LM)));
        assert!(!holds(&at(LM + 1)));
        assert!(!holds("nonsense"));
    }
}
