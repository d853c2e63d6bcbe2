//! Config diagnostics: the error types, byte offsets turned into line:column, brief
//! renderings of found values, and "did you mean" suggestions.

use std::fmt;
use std::path::PathBuf;

use toml::de::DeValue;

use super::units::quote;

/// One problem in a config file, located at a 1-based line and column.
///
/// Columns count characters, not bytes, so they match what an editor shows for UTF-8
/// text (a tab counts as one column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the diagnostics call it: the path as given, or a label like "tine.toml".
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The key the problem is about, as "section.key" (or "section"), when there is one.
    /// Unknown keys and syntax errors have none: their message names what was found.
    pub key: Option<String>,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a config file, in the order they appear in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Why a config file could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read at all.
    Read {
        /// The path as given.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file was read but has problems; every one of them is listed.
    Invalid(Diagnostics),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Read { path, source } => {
                write!(f, "could not read {}: {source}", path.display())
            }
            LoadError::Invalid(diagnostics) => write!(f, "{diagnostics}"),
        }
    }
}

impl LoadError {
    /// The error as the operator reads it: every problem, one per line, and how many there
    /// were. The same text ends a start and fills a failed reload's log lines.
    pub fn describe(&self) -> String {
        match self {
            LoadError::Invalid(diagnostics) => {
                let count = diagnostics.0.len();
                let noun = if count == 1 { "problem" } else { "problems" };
                format!("{diagnostics}\n{count} {noun} in the config; nothing was changed")
            }
            err => err.to_string(),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Read { source, .. } => Some(source),
            // Display already is the full list; a source would print it twice.
            LoadError::Invalid(_) => None,
        }
    }
}

/// A problem found while walking the document, located by byte offset until the end, when
/// all of them are sorted and turned into line:column at once.
#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) offset: usize,
    pub(crate) key: Option<String>,
    pub(crate) message: String,
}

/// Sorts problems into document order and locates them in `text`.
pub(crate) fn into_diagnostics(file: &str, text: &str, mut problems: Vec<Problem>) -> Diagnostics {
    // Stable, so two problems at one spot keep the order they were found in.
    problems.sort_by_key(|p| p.offset);
    let index = LineIndex::new(text);
    Diagnostics(
        problems
            .into_iter()
            .map(|p| {
                let (line, column) = index.locate(p.offset);
                Diagnostic {
                    file: file.to_owned(),
                    line,
                    column,
                    key: p.key,
                    message: p.message,
                }
            })
            .collect(),
    )
}

/// Maps byte offsets to 1-based (line, column) pairs.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, line_starts }
    }

    /// Offsets past the end (toml reports "unexpected end of file" there) land just after
    /// the last character, and offsets inside a character land on it.
    pub(crate) fn locate(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let mut line_start = self.line_starts[line - 1];
        // Editors hide a byte order mark, so it must not count as a column.
        if line == 1 && self.text.starts_with('\u{feff}') && offset >= 3 {
            line_start = 3;
        }
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }
}

/// Renders a found value briefly for a message: strings quoted, numbers as written, and
/// tables and arrays of tables by kind, since their contents would not fit on one line.
pub(crate) fn describe(value: &DeValue<'_>) -> String {
    const MAX_ITEMS: usize = 4;
    match value {
        DeValue::String(s) => quote(s),
        DeValue::Integer(i) => i.to_string(),
        DeValue::Float(x) => x.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => format!("the date-time {d}"),
        DeValue::Table(_) => "a table".to_owned(),
        DeValue::Array(items) if items.is_empty() => "an empty array".to_owned(),
        DeValue::Array(items)
            if items
                .iter()
                .all(|v| matches!(v.get_ref(), DeValue::Table(_))) =>
        {
            "an array of tables".to_owned()
        }
        DeValue::Array(items) => {
            let shown: Vec<String> = items
                .iter()
                .take(MAX_ITEMS)
                .map(|v| describe_item(v.get_ref()))
                .collect();
            let more = if items.len() > MAX_ITEMS { ", ..." } else { "" };
            format!("[{}{more}]", shown.join(", "))
        }
    }
}

/// Like `describe`, but nested containers are only hinted at, to keep the line short.
fn describe_item(value: &DeValue<'_>) -> String {
    match value {
        DeValue::Table(_) => "{...}".to_owned(),
        DeValue::Array(_) => "[...]".to_owned(),
        DeValue::Datetime(d) => d.to_string(),
        other => describe(other),
    }
}

/// The candidate closest to `name`, when it is close enough to be a likely misspelling.
///
/// Case and `-` versus `_` are ignored first ("Max-Connections" finds "max_connections");
/// otherwise the edit distance must be at most a third of the name's length (at least 1),
/// so short unrelated names are not matched to each other.
pub(crate) fn suggest<'c>(name: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let normal = normalize(name);
    if let Some(exact) = candidates.iter().find(|c| normalize(c) == normal) {
        return Some(exact);
    }
    let limit = (normal.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(&normal, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace('-', "_")
}

/// Optimal string alignment distance: Levenshtein plus adjacent transpositions, since
/// swapped letters ("thraeds") are the most common typo.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rolling rows: two back is needed for transpositions.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml::de::DeTable;

    #[test]
    fn diagnostic_display() {
        let mut d = Diagnostic {
            file: "tine.toml".to_owned(),
            line: 7,
            column: 11,
            key: Some("server.threads".to_owned()),
            message: "expected a positive integer, found \"four\"".to_owned(),
        };
        assert_eq!(
            d.to_string(),
            "tine.toml:7:11: server.threads: expected a positive integer, found \"four\""
        );
        d.key = None;
        d.message = "unknown key server.x".to_owned();
        assert_eq!(d.to_string(), "tine.toml:7:11: unknown key server.x");
        let two = Diagnostics(vec![d.clone(), d]);
        assert_eq!(
            two.to_string(),
            "tine.toml:7:11: unknown key server.x\ntine.toml:7:11: unknown key server.x"
        );
    }

    #[test]
    fn load_error_display_and_source() {
        use std::error::Error;
        let err = LoadError::Read {
            path: PathBuf::from("tine.toml"),
            source: std::io::Error::from_raw_os_error(2),
        };
        assert_eq!(
            err.to_string(),
            "could not read tine.toml: No such file or directory (os error 2)"
        );
        assert!(err.source().is_some());
        let invalid = LoadError::Invalid(Diagnostics(Vec::new()));
        assert!(invalid.source().is_none());
    }

    #[test]
    fn line_index_locates_offsets() {
        let text = "ab\n\ncé\tx\n";
        let index = LineIndex::new(text);
        assert_eq!(index.locate(0), (1, 1));
        assert_eq!(index.locate(2), (1, 3));
        assert_eq!(index.locate(3), (2, 1));
        assert_eq!(index.locate(4), (3, 1));
        // "é" is two bytes but one column; an offset inside it lands on it.
        assert_eq!(index.locate(5), (3, 2));
        assert_eq!(index.locate(6), (3, 2));
        assert_eq!(index.locate(7), (3, 3));
        assert_eq!(index.locate(8), (3, 4));
        assert_eq!(index.locate(text.len()), (4, 1));
        assert_eq!(index.locate(text.len() + 5), (4, 1));
        assert_eq!(LineIndex::new("").locate(0), (1, 1));
        let bom = LineIndex::new("\u{feff}ab\nc");
        assert_eq!(bom.locate(3), (1, 1));
        assert_eq!(bom.locate(4), (1, 2));
        assert_eq!(bom.locate(6), (2, 1));
    }

    #[test]
    fn problems_come_out_in_document_order() {
        let text = "a\nb\nc\n";
        let problem = |offset, message: &str| Problem {
            offset,
            key: None,
            message: message.to_owned(),
        };
        let d = into_diagnostics(
            "f",
            text,
            vec![
                problem(4, "third"),
                problem(0, "first"),
                problem(2, "second"),
            ],
        );
        let lines: Vec<String> = d.0.iter().map(ToString::to_string).collect();
        assert_eq!(lines, ["f:1:1: first", "f:2:1: second", "f:3:1: third"]);
    }

    fn value_of(toml_value: &str) -> String {
        let doc = format!("v = {toml_value}");
        let table = DeTable::parse(&doc).unwrap().into_inner();
        describe(table.get("v").unwrap().get_ref())
    }

    #[test]
    fn found_values_are_brief() {
        assert_eq!(value_of("\"four\""), "\"four\"");
        assert_eq!(value_of("30"), "30");
        assert_eq!(value_of("0x1F"), "0x1F");
        assert_eq!(value_of("-3"), "-3");
        assert_eq!(value_of("1.5"), "1.5");
        assert_eq!(value_of("true"), "true");
        assert_eq!(value_of("1979-05-27"), "the date-time 1979-05-27");
        assert_eq!(value_of("{ a = 1 }"), "a table");
        assert_eq!(value_of("[]"), "an empty array");
        assert_eq!(value_of("[{ a = 1 }]"), "an array of tables");
        assert_eq!(value_of("[1, \"a\", [2], {}]"), "[1, \"a\", [...], {...}]");
        assert_eq!(value_of("[1, 2, 3, 4, 5]"), "[1, 2, 3, 4, ...]");
        let long = format!("\"{}\"", "y".repeat(60));
        assert_eq!(value_of(&long), format!("\"{}...\"", "y".repeat(40)));
    }

    #[test]
    fn suggestions() {
        let keys = ["bind", "backlog", "workers", "threads", "max_connections"];
        assert_eq!(suggest("worker", &keys), Some("workers"));
        assert_eq!(suggest("thraeds", &keys), Some("threads"));
        assert_eq!(suggest("Max-Connections", &keys), Some("max_connections"));
        assert_eq!(suggest("max_conections", &keys), Some("max_connections"));
        assert_eq!(suggest("bnd", &keys), Some("bind"));
        assert_eq!(suggest("port", &keys), None);
        assert_eq!(suggest("x", &keys), None);
        assert_eq!(
            suggest("sever", &["server", "limits", "log", "app"]),
            Some("server")
        );
        assert_eq!(
            suggest("lgo", &["server", "limits", "log", "app"]),
            Some("log")
        );
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("worker", "workers"), 1);
    }
}
