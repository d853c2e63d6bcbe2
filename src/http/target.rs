//! Request targets and authorities: which of the four request-target forms (RFC 9112 §3.2) a
//! target is, and the `uri-host [ ":" port ]` grammar (RFC 3986 §3.2) that Host, absolute-form
//! and authority-form targets share.
//!
//! The bytes of a target have already been checked (no whitespace or controls, valid UTF-8) by the
//! request-line check; this module checks its structure. Path and query characters are left
//! lenient, as every server does, because clients send raw bytes there that nobody routes on; the
//! authority is strict, because it decides which site a request is for.

use std::net::Ipv6Addr;
use std::ops::Range;

use super::status::HttpError;

/// The form of a request target (RFC 9112 §3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TargetForm {
    /// `/path?query`.
    Origin,
    /// `http://authority/path?query`; the range is where the authority sits in the target.
    Absolute(Range<usize>),
    /// `host:port`, for CONNECT only.
    Authority,
    /// `*`, for OPTIONS only.
    Asterisk,
}

/// Works out the form of `target` for `method` and checks its structure.
///
/// Methods are case-sensitive (RFC 9110 §9.1), so `connect` is an unknown method with an
/// authority-form target, which is a 400, and not a CONNECT.
pub(crate) fn classify(method: &[u8], target: &[u8]) -> Result<TargetForm, HttpError> {
    if target.contains(&b'#') {
        // No form allows a fragment; parsers disagree on whether to strip or keep one.
        return Err(HttpError::new(400, "fragment in request target"));
    }
    if method == b"CONNECT" {
        return if valid_authority(target, Port::Required) {
            Ok(TargetForm::Authority)
        } else {
            Err(HttpError::new(400, "CONNECT target is not host:port"))
        };
    }
    match target {
        [b'/', ..] => Ok(TargetForm::Origin),
        b"*" if method == b"OPTIONS" => Ok(TargetForm::Asterisk),
        b"*" => Err(HttpError::new(400, "asterisk target without OPTIONS")),
        _ => absolute_form(target).map(TargetForm::Absolute),
    }
}

/// `http(s)://authority[path-abempty][?query]`: returns where the authority is.
fn absolute_form(target: &[u8]) -> Result<Range<usize>, HttpError> {
    const INVALID: HttpError = HttpError::new(400, "invalid request target");
    let colon = target.iter().position(|&b| b == b':').ok_or(INVALID)?;
    let scheme = target.get(..colon).unwrap_or_default();
    let scheme_ok = matches!(scheme, [first, rest @ ..]
        if first.is_ascii_alphabetic()
            && rest.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')));
    if !scheme_ok {
        return Err(INVALID);
    }
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return Err(HttpError::new(400, "request target scheme is not http"));
    }
    let start = colon + 3;
    if target.get(colon + 1..start) != Some(b"//") {
        // http URIs always have an authority (RFC 9110 §4.2.1).
        return Err(HttpError::new(400, "invalid authority in request target"));
    }
    let rest = target.get(start..).unwrap_or_default();
    let len = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let authority = rest.get(..len).unwrap_or_default();
    // RFC 9110 §4.2.1: an http URI with an empty host is invalid and must be rejected.
    if authority.is_empty() || !valid_authority(authority, Port::Optional) {
        return Err(HttpError::new(400, "invalid authority in request target"));
    }
    Ok(start..start + len)
}

/// Whether an authority must name a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Port {
    /// `host [ ":" port ]`, as in Host and http URIs.
    Optional,
    /// `host ":" port`, as in a CONNECT target.
    Required,
}

/// `uri-host [ ":" port ]` with a non-empty host and, if present, a port of 1-5 digits up to 65535.
///
/// No userinfo: RFC 9110 §4.2.4 forbids it in http URIs, and `user@host` is a classic way of
/// making one parser see a different host from another. An empty port after the colon, which
/// RFC 3986 allows, is refused too: no client sends it and it only adds a spelling to compare.
pub(crate) fn valid_authority(s: &[u8], port: Port) -> bool {
    let (host, port_digits) = if let [b'[', rest @ ..] = s {
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = rest.get(..close).unwrap_or_default();
        if !valid_ip_literal(literal) {
            return false;
        }
        match rest.get(close + 1..).unwrap_or_default() {
            [] => (literal, None),
            [b':', digits @ ..] => (literal, Some(digits)),
            _ => return false,
        }
    } else {
        let (host, port_digits) = match s.iter().position(|&b| b == b':') {
            Some(i) => (
                s.get(..i).unwrap_or_default(),
                Some(s.get(i + 1..).unwrap_or_default()),
            ),
            None => (s, None),
        };
        // IPv4address is a subset of reg-name, so this one check covers both.
        if host.is_empty() || !valid_reg_name(host) {
            return false;
        }
        (host, port_digits)
    };
    debug_assert!(!host.is_empty());
    match (port_digits, port) {
        (None, Port::Optional) => true,
        (None, Port::Required) => false,
        (Some(digits), _) => valid_port(digits),
    }
}

/// `1*5DIGIT` whose value is at most 65535.
fn valid_port(digits: &[u8]) -> bool {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let value = digits
        .iter()
        .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'));
    value <= 65535
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`.
fn valid_reg_name(s: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%' {
            let hex = |j: usize| s.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else if is_unreserved(b) || is_sub_delim(b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// The inside of `[...]`: an IPv6 address or `v` HEXDIG "." (unreserved / sub-delims / ":").
fn valid_ip_literal(s: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = s {
        let Some(dot) = rest.iter().position(|&b| b == b'.') else {
            return false;
        };
        let version = rest.get(..dot).unwrap_or_default();
        let tail = rest.get(dot + 1..).unwrap_or_default();
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !tail.is_empty()
            && tail
                .iter()
                .all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':');
    }
    // Zone identifiers (RFC 6874) are not accepted: they name an interface of the client's host.
    std::str::from_utf8(s).is_ok_and(|text| text.parse::<Ipv6Addr>().is_ok())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        for ok in [
            &b"example.com"[..],
            b"example.com:80",
            b"EXAMPLE.com:0080",
            b"a",
            b"a:0",
            b"a:65535",
            b"a:00080",
            b"127.0.0.1",
            b"127.0.0.1:8080",
            b"999.1.1.1",
            b"xn--caf-dma.example",
            b"under_score.example",
            b"%41%6a.example",
            b"sub!$&'()*+,;=delims",
            b"[::1]",
            b"[::1]:443",
            b"[2001:db8::7]",
            b"[::ffff:192.0.2.1]",
            b"[v1.fe80::a+en1]",
            b"[V1F.x:y]",
        ] {
            assert!(
                valid_authority(ok, Port::Optional),
                "{}",
                String::from_utf8_lossy(ok)
            );
        }
        for bad in [
            &b""[..],
            b":80",
            b"a:",
            b"a:65536",
            b"a:123456",
            b"a:000080",
            b"a:-1",
            b"a:+1",
            b"a:8 0",
            b"a:80:80",
            b"user@a",
            b"user:pw@a",
            b"a b",
            b"a/b",
            b"a?b",
            b"a\\b",
            b"a\"b",
            b"%4",
            b"%zz",
            b"a%",
            b"caf\xc3\xa9",
            b"[::1",
            b"::1",
            b"[::1]x",
            b"[::1]:",
            b"[:::]",
            b"[1.2.3.4]",
            b"[fe80::1%25en0]",
            b"[v.x]",
            b"[v1.]",
            b"[v1x]",
            b"[vg.x]",
            b"[]",
        ] {
            assert!(
                !valid_authority(bad, Port::Optional),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(valid_authority(b"a:443", Port::Required));
        assert!(valid_authority(b"[::1]:443", Port::Required));
        assert!(!valid_authority(b"a", Port::Required));
        assert!(!valid_authority(b"[::1]", Port::Required));
    }

    #[test]
    fn target_forms() {
        let ok: &[(&[u8], &[u8], TargetForm)] = &[
            (b"GET", b"/", TargetForm::Origin),
            (b"GET", b"//double/slash?q", TargetForm::Origin),
            (b"GET", b"/caf\xc3\xa9?x=|", TargetForm::Origin),
            (b"OPTIONS", b"*", TargetForm::Asterisk),
            (b"OPTIONS", b"/", TargetForm::Origin),
            (b"CONNECT", b"example.com:443", TargetForm::Authority),
            (b"CONNECT", b"[::1]:443", TargetForm::Authority),
            (
                b"GET",
                b"http://example.com/x?y",
                TargetForm::Absolute(7..18),
            ),
            (b"GET", b"HTTPS://a:8443", TargetForm::Absolute(8..14)),
            (b"GET", b"http://a?q", TargetForm::Absolute(7..8)),
            (b"GET", b"http://[::1]:80/", TargetForm::Absolute(7..15)),
        ];
        for (method, target, form) in ok {
            assert_eq!(
                classify(method, target).as_ref(),
                Ok(form),
                "{}",
                String::from_utf8_lossy(target)
            );
        }
        let bad: &[(&[u8], &[u8], &str)] = &[
            (b"GET", b"*", "asterisk target without OPTIONS"),
            (b"OPTIONS", b"*x", "invalid request target"),
            (b"GET", b"/a#frag", "fragment in request target"),
            (b"GET", b"http://a/#", "fragment in request target"),
            (
                b"GET",
                b"example.com:443",
                "request target scheme is not http",
            ),
            (b"GET", b"a", "invalid request target"),
            (b"GET", b"?q", "invalid request target"),
            (b"GET", b"1http://a/", "invalid request target"),
            (b"GET", b":/a", "invalid request target"),
            (b"GET", b"ftp://a/", "request target scheme is not http"),
            (b"GET", b"httpx://a/", "request target scheme is not http"),
            (b"GET", b"http:/a", "invalid authority in request target"),
            (b"GET", b"http:a", "invalid authority in request target"),
            (b"GET", b"http:///a", "invalid authority in request target"),
            (b"GET", b"http://", "invalid authority in request target"),
            (
                b"GET",
                b"http://u@a/",
                "invalid authority in request target",
            ),
            (
                b"GET",
                b"http://a:b/",
                "invalid authority in request target",
            ),
            (
                b"GET",
                b"http://a:99999/",
                "invalid authority in request target",
            ),
            (
                b"CONNECT",
                b"example.com",
                "CONNECT target is not host:port",
            ),
            (b"CONNECT", b"/", "CONNECT target is not host:port"),
            (
                b"CONNECT",
                b"http://a:1/",
                "CONNECT target is not host:port",
            ),
            (b"CONNECT", b"u@a:1", "CONNECT target is not host:port"),
            (b"connect", b"a:443", "request target scheme is not http"),
        ];
        for (method, target, reason) in bad {
            assert_eq!(
                classify(method, target),
                Err(HttpError::new(400, reason)),
                "{}",
                String::from_utf8_lossy(target)
            );
        }
    }
}
