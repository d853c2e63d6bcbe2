//! Values written back as TOML, for `Config::to_toml`: each on one line, in the form the
//! file itself would use.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::config::units::format_size;

/// An optional string value as TOML: `""` when unset.
pub(super) fn optional_toml(value: Option<String>) -> String {
    toml_string(value.as_deref().unwrap_or(""))
}

/// An optional path as TOML: `""` when unset.
pub(super) fn optional_path_toml(path: Option<&PathBuf>) -> String {
    optional_toml(path.map(|p| p.display().to_string()))
}

/// A TOML array of strings.
pub(crate) fn toml_array<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let items: Vec<String> = items
        .into_iter()
        .map(|item| toml_string(item.as_ref()))
        .collect();
    format!("[{}]", items.join(", "))
}

/// An inline TOML table of strings, in the given order: `{ NAME = "value" }`.
pub(super) fn toml_inline_table(entries: &[(String, String)]) -> String {
    if entries.is_empty() {
        return "{}".to_owned();
    }
    let items: Vec<String> = entries
        .iter()
        .map(|(name, value)| {
            let key = if is_bare_key(name) {
                name.clone()
            } else {
                toml_string(name)
            };
            format!("{key} = {}", toml_string(value))
        })
        .collect();
    format!("{{ {} }}", items.join(", "))
}

/// A TOML basic string. Written by hand rather than through `toml::Value`, which switches
/// to multi-line strings for some content; one key must stay on one line.
pub(crate) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() && u32::from(c) < 0x80 => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Sizes with a unit are written as strings, plain byte counts as integers.
pub(super) fn toml_size(n: u64) -> String {
    let text = format_size(n);
    if text.bytes().all(|b| b.is_ascii_digit()) && i64::try_from(n).is_ok() {
        text
    } else {
        toml_string(&text)
    }
}

/// A size that may be derived: `"auto"` when unset.
pub(super) fn optional_size_toml(n: Option<u64>) -> String {
    n.map_or_else(|| toml_string("auto"), toml_size)
}

/// Whether TOML lets `name` be written as a key without quotes.
pub(super) fn is_bare_key(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}
