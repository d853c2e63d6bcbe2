//! The HTML page listing a directory, for `listing = true`: every name HTML-escaped in the text
//! and percent-encoded in the link.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;

use super::resolve::encode_segment;

/// The listing page of the directory shown as `dir` (decoded, ending in `/`), holding
/// `entries` (name, is a directory), already sorted.
pub fn page(dir: &str, entries: &[(OsString, bool)]) -> String {
    let title = escape(dir);
    let mut out = String::with_capacity(256 + entries.len() * 80);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Index of {title}</title>\n</head>\n<body>\n<h1>Index of {title}</h1>\n<ul>\n"
    );
    if dir != "/" {
        out.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for (name, is_dir) in entries {
        let bytes = name.as_bytes();
        let slash = if *is_dir { "/" } else { "" };
        // "./" keeps a name such as "a:b" from reading as a URL scheme.
        let _ = writeln!(
            out,
            "<li><a href=\"./{}{slash}\">{}{slash}</a></li>",
            escape(&encode_segment(bytes)),
            escape(&String::from_utf8_lossy(bytes)),
        );
    }
    out.push_str("</ul>\n</body>\n</html>\n");
    out
}

/// Escapes text for HTML content and double- or single-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<script>alert('x' & \"y\")</script>"),
            "&lt;script&gt;alert(&#39;x&#39; &amp; &quot;y&quot;)&lt;/script&gt;"
        );
        assert_eq!(escape("plain é"), "plain é");
    }

    #[test]
    fn names_are_escaped_and_linked() {
        let entries = vec![
            (OsString::from("<b>.html"), false),
            (OsString::from("a b"), true),
            (OsString::from_vec(vec![b'x', 0xff]), false),
        ];
        let html = page("/docs/<x>/", &entries);
        assert!(
            html.contains("<title>Index of /docs/&lt;x&gt;/</title>"),
            "{html}"
        );
        assert!(html.contains("<a href=\"../\">../</a>"));
        assert!(
            html.contains("<li><a href=\"./%3Cb%3E.html\">&lt;b&gt;.html</a></li>"),
            "{html}"
        );
        assert!(
            html.contains("<li><a href=\"./a%20b/\">a b/</a></li>"),
            "{html}"
        );
        assert!(
            html.contains("<li><a href=\"./x%FF\">x\u{fffd}</a></li>"),
            "{html}"
        );
        assert!(!html.contains("<b>"));
        assert!(!page("/", &[]).contains("../"));
    }
}
