//! Status codes: their reason phrases, which of them may carry a body, and [`HttpError`], a
//! refused request's status and why.

use std::fmt;

/// A request the decoder refused: the status to answer with and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    /// The response status (400, 413, 414, 431, 501, 505).
    pub status: u16,
    /// Short plain-text description of what was wrong, safe to send to the client.
    pub reason: &'static str,
}

impl HttpError {
    pub(crate) const fn new(status: u16, reason: &'static str) -> Self {
        HttpError { status, reason }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phrase = reason_phrase(self.status);
        if phrase.is_empty() {
            write!(f, "{}: {}", self.status, self.reason)
        } else {
            write!(f, "{} {}: {}", self.status, phrase, self.reason)
        }
    }
}

impl std::error::Error for HttpError {}

/// The standard reason phrase for `status` (RFC 9110 names), or "" for an unknown code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "",
    }
}

/// Whether a response with this status may carry a body (not 1xx, 204 or 304).
pub fn status_allows_body(status: u16) -> bool {
    !((100..200).contains(&status) || status == 204 || status == 304)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_includes_status_phrase_and_reason() {
        let e = HttpError::new(431, "too many header fields");
        assert_eq!(
            e.to_string(),
            "431 Request Header Fields Too Large: too many header fields"
        );
        assert_eq!(HttpError::new(599, "odd").to_string(), "599: odd");
    }

    #[test]
    fn phrases_and_body_rules() {
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(413), "Content Too Large");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(505), "HTTP Version Not Supported");
        assert_eq!(reason_phrase(299), "");
        assert_eq!(reason_phrase(0), "");
        for s in [100, 101, 199, 204, 304] {
            assert!(!status_allows_body(s), "{s}");
        }
        for s in [200, 201, 205, 301, 303, 400, 500] {
            assert!(status_allows_body(s), "{s}");
        }
    }
}
