//! What the config says about the access log: where its lines go and how they are written.
//! The access log itself (`crate::access_log`) uses these; the config only parses and prints them.

use std::path::PathBuf;

/// Named fields a template may use, in `{name}` form.
pub const FIELDS: &[&str] = &[
    "time",
    "remote",
    "method",
    "target",
    "version",
    "status",
    "bytes",
    "duration_us",
    "user_agent",
    "referer",
    "worker",
    "pid",
];

/// How lines are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// Apache/nginx combined.
    Combined,
    /// One JSON object per line.
    Json,
    /// Literal text and named fields.
    Template(Vec<Piece>),
}

/// A part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Written as is.
    Text(String),
    /// A field from [`FIELDS`].
    Field(&'static str),
}

impl std::str::FromStr for Format {
    type Err = String;

    /// `"combined"`, `"json"`, or a template like `"{remote} {status} {duration_us}"`.
    fn from_str(text: &str) -> Result<Format, String> {
        match text {
            "combined" => return Ok(Format::Combined),
            "json" => return Ok(Format::Json),
            _ => {}
        }
        if !text.contains('{') {
            return Err(format!(
                "expected \"combined\", \"json\" or a template with fields like {{status}}, found {text:?}"
            ));
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed {{ in the template {text:?}"))?;
            let name = &rest[open + 1..open + close];
            let field = FIELDS.iter().find(|f| **f == name).ok_or_else(|| {
                format!(
                    "unknown field {{{name}}} in the template; fields are {}",
                    FIELDS
                        .iter()
                        .map(|f| format!("{{{f}}}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            })?;
            pieces.push(Piece::Field(field));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Format::Template(pieces))
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Format::Combined => f.write_str("combined"),
            Format::Json => f.write_str("json"),
            Format::Template(pieces) => {
                for piece in pieces {
                    match piece {
                        Piece::Text(text) => f.write_str(text)?,
                        Piece::Field(name) => write!(f, "{{{name}}}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The process's stdout.
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}
