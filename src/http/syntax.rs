//! The protocol's small vocabulary: its versions and the byte classes of tokens and field
//! values.

use std::fmt;

/// The protocol versions tine speaks. A higher minor of HTTP/1 (`HTTP/1.2`) is read as `Http11`
/// (RFC 9110 §2.5); another major is answered with 505, a malformed version with 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`
    Http10,
    /// `HTTP/1.1`
    Http11,
}

impl Version {
    /// The version as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 9110 `tchar`, shared by methods, field names, codings and chunk extensions.
pub(crate) const fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
        | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// RFC 9110 `token`: one or more `tchar`.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// Field-value bytes: VCHAR, SP, HTAB and obs-text; every other control (CR, LF, NUL, DEL...) is refused.
pub(crate) const fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_display() {
        assert_eq!(Version::Http10.to_string(), "HTTP/1.0");
        assert_eq!(Version::Http11.to_string(), "HTTP/1.1");
    }

    #[test]
    fn token_and_value_classes() {
        assert!(is_token(b"GET"));
        assert!(is_token(b"X-Custom_Header.1~"));
        assert!(!is_token(b""));
        assert!(!is_token(b"Bad Name"));
        assert!(!is_token(b"a:b"));
        assert!(!is_token(b"\xc3\xa9"));
        assert!(is_field_value_byte(b'\t'));
        assert!(is_field_value_byte(b' '));
        assert!(is_field_value_byte(0x80));
        assert!(!is_field_value_byte(0));
        assert!(!is_field_value_byte(b'\r'));
        assert!(!is_field_value_byte(b'\n'));
        assert!(!is_field_value_byte(0x7f));
        assert!(!is_field_value_byte(0x0b));
    }
}
