//! The checks the schema's readers are built from: each takes one TOML value, says what is
//! wrong with it (the expected type or range, with a hint where a mistake is common), or
//! returns it converted to the type the `Config` field holds.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;
use toml::de::DeValue;

use super::{Bad, Bads};
use crate::config::diag::describe;
use crate::config::units::{parse_duration, parse_size, quote};
use crate::config::{
    BindAddr, Choice, HandlerKind, Interface, LEVELS, MAX_WORKERS, Workers, choices, parse_choice,
};

pub(super) fn bad(value: &Spanned<DeValue<'_>>, message: String) -> Bad {
    Bad {
        offset: value.span().start,
        message,
    }
}

/// "expected X, found Y", with a hint when a number was written as a string.
pub(super) fn expected(value: &Spanned<DeValue<'_>>, what: &str) -> Bad {
    let hint = match value.get_ref() {
        DeValue::String(s) if s.trim().parse::<i64>().is_ok() => " (write numbers without quotes)",
        _ => "",
    };
    bad(
        value,
        format!("expected {what}, found {}{hint}", describe(value.get_ref())),
    )
}

/// The integer's value; `None` for other types. TOML integers are 64-bit, so i128 holds
/// every one the parser hands over, of any radix or sign.
fn integer(value: &DeValue<'_>) -> Option<i128> {
    match value {
        DeValue::Integer(i) => {
            Some(i128::from_str_radix(i.as_str(), i.radix()).unwrap_or(i128::MAX))
        }
        _ => None,
    }
}

/// An integer from 1 to `max` (or to the largest `usize` when there is no stated maximum).
pub(super) fn positive_int(value: &Spanned<DeValue<'_>>, max: Option<usize>) -> Result<usize, Bad> {
    let Some(n) = integer(value.get_ref()) else {
        return Err(expected(value, "a positive integer"));
    };
    let (limit, what) = match max {
        Some(max) => (max, format!("a positive integer up to {max}")),
        None => (usize::MAX, "a positive integer".to_owned()),
    };
    usize::try_from(n)
        .ok()
        .filter(|n| (1..=limit).contains(n))
        .ok_or_else(|| expected(value, &what))
}

pub(super) fn positive_usize(
    value: &Spanned<DeValue<'_>>,
    max: Option<usize>,
) -> Result<NonZeroUsize, Bad> {
    let n = positive_int(value, max)?;
    Ok(NonZeroUsize::new(n).expect("positive_int checked n >= 1"))
}

pub(super) fn read_workers(value: &Spanned<DeValue<'_>>) -> Result<Workers, Bad> {
    let what = format!("\"auto\" or a positive integer up to {MAX_WORKERS}");
    match value.get_ref() {
        DeValue::String(s) if s.eq_ignore_ascii_case("auto") => Ok(Workers::Auto),
        DeValue::Integer(_) => match positive_usize(value, Some(MAX_WORKERS)) {
            Ok(n) => Ok(Workers::Fixed(n)),
            Err(_) => Err(expected(value, &what)),
        },
        _ => Err(expected(value, &what)),
    }
}

/// `[server] bind`: one entry or a list of them, each a string or an inline table
/// `{ address = "...", proxy_protocol = true }`; every address with whether it expects a
/// PROXY protocol header.
pub(super) fn read_bind(value: &Spanned<DeValue<'_>>) -> Result<Vec<(BindAddr, bool)>, Bads> {
    let items = match value.get_ref() {
        DeValue::String(_) | DeValue::Table(_) => {
            return read_bind_entry(value)
                .map(|(entry, _)| vec![entry])
                .map_err(Bads::from);
        }
        DeValue::Array(items) if items.is_empty() => {
            return Err(expected(value, "at least one address").into());
        }
        DeValue::Array(items) => items,
        _ => {
            return Err(expected(
                value,
                "an address like \"127.0.0.1:8000\" or a list of addresses",
            )
            .into());
        }
    };
    // Each accepted address with its spelling, since "[0::1]:8000" duplicates "[::1]:8000".
    let mut seen: Vec<((BindAddr, bool), &str)> = Vec::with_capacity(items.len());
    let mut bads = Vec::new();
    for item in items {
        match read_bind_entry(item) {
            Ok((entry, written)) => match seen.iter().find(|((earlier, _), _)| *earlier == entry.0)
            {
                Some((_, first)) => {
                    let same = if *first == written {
                        String::new()
                    } else {
                        format!(" the same address as {} listed before;", quote(first))
                    };
                    bads.push(bad(
                        item,
                        format!(
                            "duplicate address {}:{same} each address may be listed only once",
                            quote(written)
                        ),
                    ));
                }
                None => seen.push((entry, written)),
            },
            Err(b) => bads.push(b),
        }
    }
    if bads.is_empty() {
        Ok(seen.into_iter().map(|(entry, _)| entry).collect())
    } else {
        Err(Bads(bads))
    }
}

/// The keys a `bind` entry written as a table accepts.
const BIND_ENTRY_KEYS: &str = "address, proxy_protocol";

/// One `bind` entry: the address and whether it expects a PROXY header, with the address as
/// written.
fn read_bind_entry<'v>(item: &'v Spanned<DeValue<'_>>) -> Result<((BindAddr, bool), &'v str), Bad> {
    let (address, proxy_protocol) = match item.get_ref() {
        DeValue::String(_) => (item, false),
        DeValue::Table(table) => {
            let mut address = None;
            let mut proxy_protocol = false;
            for (name, value) in table {
                match name.get_ref().as_ref() {
                    "address" => address = Some(value),
                    "proxy_protocol" => proxy_protocol = read_bool(value)?,
                    other => {
                        return Err(Bad {
                            offset: name.span().start,
                            message: format!(
                                "unknown key {} in a bind entry; a bind entry accepts {BIND_ENTRY_KEYS}",
                                quote(other)
                            ),
                        });
                    }
                }
            }
            let address = address.ok_or_else(|| {
                bad(
                    item,
                    "a bind entry written as a table needs its address, like \
                     { address = \"0.0.0.0:8001\", proxy_protocol = true }"
                        .to_owned(),
                )
            })?;
            (address, proxy_protocol)
        }
        _ => {
            return Err(expected(
                item,
                "an address string like \"127.0.0.1:8000\", or a table like \
                 { address = \"0.0.0.0:8001\", proxy_protocol = true }",
            ));
        }
    };
    let DeValue::String(written) = address.get_ref() else {
        return Err(expected(
            address,
            "an address string like \"127.0.0.1:8000\"",
        ));
    };
    let addr = written.parse::<BindAddr>().map_err(|e| bad(address, e))?;
    if proxy_protocol && matches!(addr, BindAddr::Unix(_)) {
        return Err(bad(
            address,
            crate::config::bind::unix_proxy_protocol(written),
        ));
    }
    Ok(((addr, proxy_protocol), written))
}

pub(super) fn read_duration(value: &Spanned<DeValue<'_>>, positive: bool) -> Result<Duration, Bad> {
    let DeValue::String(s) = value.get_ref() else {
        return Err(expected(
            value,
            "a duration with a unit like \"30s\" or \"500ms\"",
        ));
    };
    let d = parse_duration(s).map_err(|e| bad(value, e))?;
    if positive && d.is_zero() {
        return Err(expected(value, "a duration greater than zero"));
    }
    Ok(d)
}

const SIZE_EXPECTED: &str = "a size: a number of bytes, or a string like \"64KiB\" or \"100MiB\"";

pub(super) fn read_size(value: &Spanned<DeValue<'_>>, positive: bool) -> Result<u64, Bad> {
    let too_small = || {
        let what = if positive {
            "a size greater than zero"
        } else {
            "a size of zero or more bytes"
        };
        expected(value, what)
    };
    let n = match value.get_ref() {
        DeValue::String(s) => parse_size(s).map_err(|e| bad(value, e))?,
        other => match integer(other) {
            Some(n) if n < 0 => return Err(too_small()),
            Some(n) => u64::try_from(n).map_err(|_| {
                bad(
                    value,
                    format!("{n} bytes is too large: sizes must fit in 64 bits"),
                )
            })?,
            None => return Err(expected(value, SIZE_EXPECTED)),
        },
    };
    if positive && n == 0 {
        return Err(too_small());
    }
    Ok(n)
}

/// `"auto"` (`None`: derived from other keys) or a size greater than zero.
pub(super) fn read_auto_size(value: &Spanned<DeValue<'_>>) -> Result<Option<u64>, Bad> {
    match value.get_ref() {
        DeValue::String(s) if s.eq_ignore_ascii_case("auto") => Ok(None),
        _ => read_size(value, true).map(Some),
    }
}

/// A positive size that must also fit in memory, since it bounds a buffer.
pub(super) fn size_usize(value: &Spanned<DeValue<'_>>) -> Result<usize, Bad> {
    let n = read_size(value, true)?;
    usize::try_from(n).map_err(|_| {
        bad(
            value,
            format!("{n} bytes is too large for this machine's address space"),
        )
    })
}

pub(super) fn read_level(value: &Spanned<DeValue<'_>>) -> Result<log::LevelFilter, Bad> {
    let found = match value.get_ref() {
        DeValue::String(s) => LEVELS.iter().find(|(name, _)| s.eq_ignore_ascii_case(name)),
        _ => None,
    };
    found.map(|(_, level)| *level).ok_or_else(|| {
        let names: Vec<String> = LEVELS
            .iter()
            .map(|(name, _)| format!("\"{name}\""))
            .collect();
        expected(value, &format!("one of {}", names.join(", ")))
    })
}

pub(super) fn read_handler(
    value: &Spanned<DeValue<'_>>,
) -> Result<(HandlerKind, Option<Interface>), Bad> {
    let found = match value.get_ref() {
        // The names of the Python interfaces, as earlier versions spelled the handler: the
        // Python handler with its interface set.
        DeValue::String(s) if s == "wsgi" => Some((HandlerKind::Python, Some(Interface::Wsgi))),
        DeValue::String(s) if s == "asgi" => Some((HandlerKind::Python, Some(Interface::Asgi))),
        DeValue::String(s) => s.parse::<HandlerKind>().ok().map(|h| (h, None)),
        _ => None,
    };
    found.ok_or_else(|| {
        let names: Vec<String> = HandlerKind::ALL
            .iter()
            .map(|h| format!("\"{h}\""))
            .collect();
        expected(
            value,
            &format!(
                "one of {} (\"wsgi\" and \"asgi\" are \"python\" with that interface)",
                names.join(", ")
            ),
        )
    })
}

/// One of a [`Choice`]'s names; a refused one says why.
pub(super) fn read_choice<T: Choice>(value: &Spanned<DeValue<'_>>) -> Result<T, Bad> {
    let DeValue::String(name) = value.get_ref() else {
        return Err(expected(value, &choices::<T>()));
    };
    parse_choice(name).map_err(|why| match why {
        Some(why) => bad(value, why),
        None => expected(value, &choices::<T>()),
    })
}

/// A list of trusted proxies (or a single string).
pub(super) fn read_trusted(
    value: &Spanned<DeValue<'_>>,
) -> Result<Vec<crate::forwarded::Trusted>, Bads> {
    let parse = |item: &Spanned<DeValue<'_>>| match item.get_ref() {
        DeValue::String(s) => s.parse().map_err(|e| bad(item, e)),
        _ => Err(expected(item, "an IP address or network as a string")),
    };
    match value.get_ref() {
        DeValue::String(_) => Ok(vec![parse(value)?]),
        _ => read_list(value, "a list of IP addresses or networks", parse),
    }
}

/// `"x-forwarded-for"` or `"forwarded"`, in any case.
pub(super) fn read_forwarded_header(
    value: &Spanned<DeValue<'_>>,
) -> Result<crate::forwarded::ForwardedHeader, Bad> {
    match value.get_ref() {
        DeValue::String(s) => s.parse().map_err(|e| bad(value, e)),
        _ => Err(expected(value, "\"x-forwarded-for\" or \"forwarded\"")),
    }
}

/// An array, each item read by `item`; every bad item is reported.
pub(super) fn read_list<T>(
    value: &Spanned<DeValue<'_>>,
    what: &str,
    item: impl Fn(&Spanned<DeValue<'_>>) -> Result<T, Bad>,
) -> Result<Vec<T>, Bads> {
    let DeValue::Array(items) = value.get_ref() else {
        return Err(expected(value, what).into());
    };
    all_good(items.iter().map(item))
}

/// Every value, or every problem when there is one.
fn all_good<T>(results: impl Iterator<Item = Result<T, Bad>>) -> Result<Vec<T>, Bads> {
    let mut good = Vec::new();
    let mut bads = Vec::new();
    for result in results {
        match result {
            Ok(value) => good.push(value),
            Err(b) => bads.push(b),
        }
    }
    if bads.is_empty() {
        Ok(good)
    } else {
        Err(Bads(bads))
    }
}

/// `[app] env`: a table of strings, in the file's order.
pub(super) fn read_env(value: &Spanned<DeValue<'_>>) -> Result<Vec<(String, String)>, Bads> {
    let DeValue::Table(table) = value.get_ref() else {
        return Err(expected(
            value,
            "a table of strings, like { DJANGO_SETTINGS_MODULE = \"site.settings\" }",
        )
        .into());
    };
    // The table is sorted by name: the names' positions give the file's order back.
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(name, _)| name.span().start);
    all_good(entries.into_iter().map(|(name, value)| {
        let problem = if name.get_ref().is_empty() {
            Some("an environment variable name must not be empty".to_owned())
        } else if name.get_ref().contains(['=', '\0']) {
            Some(format!(
                "environment variable name {} must not contain \"=\" or a NUL character",
                quote(name.get_ref())
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            return Err(Bad {
                offset: name.span().start,
                message,
            });
        }
        Ok((
            name.get_ref().to_string(),
            text(value, "a string")?.to_owned(),
        ))
    }))
}

/// `[app] script_name` and `root_path`: `""`, or a path that starts with `/` and does not end
/// with one.
pub(super) fn read_mount_path(value: &Spanned<DeValue<'_>>) -> Result<String, Bad> {
    let what = "\"\" or a path that starts with \"/\" and does not end with one, like \"/app\"";
    let path = text(value, what)?;
    if path.is_empty() || (path.starts_with('/') && !path.ends_with('/')) {
        Ok(path.to_owned())
    } else {
        Err(expected(value, what))
    }
}

pub(super) fn read_bool(value: &Spanned<DeValue<'_>>) -> Result<bool, Bad> {
    match value.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        _ => Err(expected(value, "true or false")),
    }
}

/// A list of plain file names (no `/`, not `.` or `..`), each checked on its own.
pub(super) fn read_file_names(value: &Spanned<DeValue<'_>>) -> Result<Vec<String>, Bads> {
    read_list(
        value,
        "a list of file names, like [\"index.html\"]",
        |item| match item.get_ref() {
            DeValue::String(name)
                if !name.is_empty()
                    && name != "."
                    && name != ".."
                    && !name.contains(['/', '\\', '\0']) =>
            {
                Ok(name.to_string())
            }
            DeValue::String(_) => Err(expected(
                item,
                "a plain file name (no \"/\", not \".\" or \"..\")",
            )),
            _ => Err(expected(item, "a file name string")),
        },
    )
}

/// An integer of zero or more.
pub(super) fn non_negative_int(value: &Spanned<DeValue<'_>>) -> Result<u64, Bad> {
    integer(value.get_ref())
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| i64::try_from(*n).is_ok())
        .ok_or_else(|| expected(value, "an integer of zero or more"))
}

/// A string without NUL characters; `what` says what is expected when it is not a string.
fn text<'v>(value: &'v Spanned<DeValue<'_>>, what: &str) -> Result<&'v str, Bad> {
    match value.get_ref() {
        DeValue::String(s) if s.contains('\0') => {
            Err(bad(value, "must not contain a NUL character".to_owned()))
        }
        DeValue::String(s) => Ok(s),
        _ => Err(expected(value, what)),
    }
}

/// A string where `""` means "not set".
pub(super) fn optional_string(value: &Spanned<DeValue<'_>>) -> Result<Option<String>, Bad> {
    let s = text(value, "a string (\"\" for none)")?;
    Ok((!s.is_empty()).then(|| s.to_owned()))
}

/// A path where `""` means "not set".
pub(super) fn optional_path(value: &Spanned<DeValue<'_>>) -> Result<Option<PathBuf>, Bad> {
    Ok(optional_string(value)?.map(PathBuf::from))
}

/// A path that must be given; `what` names it, like "a directory path".
pub(super) fn required_path(value: &Spanned<DeValue<'_>>, what: &str) -> Result<PathBuf, Bad> {
    match text(value, what)? {
        "" => Err(expected(value, what)),
        path => Ok(PathBuf::from(path)),
    }
}

/// An octal mode mask: a string of octal digits (`"0022"`), an integer written in octal
/// (`0o022`), or `""` for none.
pub(super) fn read_umask(value: &Spanned<DeValue<'_>>) -> Result<Option<u32>, Bad> {
    let what = "an octal mask like \"0022\" or 0o022, at most 0777 (\"\" for none)";
    let mask = match value.get_ref() {
        DeValue::String(s) if s.is_empty() => return Ok(None),
        DeValue::String(s) => u32::from_str_radix(s, 8).ok(),
        other => integer(other).and_then(|n| u32::try_from(n).ok()),
    };
    match mask {
        Some(mask) if mask <= 0o777 => Ok(Some(mask)),
        _ => Err(expected(value, what)),
    }
}
