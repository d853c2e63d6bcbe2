//! The walker: checks a parsed document against [`SCHEMA`], key by key through each key's
//! reader, and reports every problem with where it is; unknown sections and keys get a
//! suggestion of what was meant.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::read::read_handler;
use super::write::is_bare_key;
use super::{Bads, SCHEMA, SectionSpec};
use crate::config::diag::{Problem, describe, suggest};
use crate::config::units::{format_size, quote};
use crate::config::{BindAddr, Config, HandlerKind, Interface};

/// Checks `doc` against the schema, storing good values into `config` and every problem
/// into `problems`.
pub(crate) fn apply(doc: &DeTable<'_>, config: &mut Config, problems: &mut Vec<Problem>) {
    for (name, value) in doc {
        let Some(section) = SCHEMA.iter().find(|s| s.name == name.get_ref()) else {
            problems.push(unknown_top_level(name, value));
            continue;
        };
        match value.get_ref() {
            DeValue::Table(table) => apply_section(section, table, config, problems),
            other => problems.push(Problem {
                offset: value.span().start,
                key: Some(section.name.to_owned()),
                message: format!(
                    "expected a table (the [{}] section), found {}",
                    section.name,
                    describe(other)
                ),
            }),
        }
    }
    handler_names_interface(doc, config, problems);
}

/// `handler = "wsgi"` (or `"asgi"`) is the Python handler with that interface, whichever key
/// comes first in the file; an `interface` that names the other one is a problem at it.
fn handler_names_interface(doc: &DeTable<'_>, config: &mut Config, problems: &mut Vec<Problem>) {
    let Some(Ok((_, Some(named)))) = value_at(doc, "app", "handler").map(read_handler) else {
        return;
    };
    match value_at(doc, "app", "interface") {
        Some(value) if ![Interface::Auto, named].contains(&config.app.interface) => {
            problems.push(Problem {
                offset: value.span().start,
                key: Some("app.interface".to_owned()),
                message: format!(
                    "interface = \"{}\" contradicts handler = \"{named}\", which means the \
                     {named} interface; write handler = \"python\" with the interface wanted",
                    config.app.interface
                ),
            });
        }
        _ => config.app.interface = named,
    }
}

/// The checks that involve several keys, once every key is read (and the command line's
/// overrides applied to what was read).
pub(crate) fn check_across(doc: &DeTable<'_>, config: &Config, problems: &mut Vec<Problem>) {
    // A bad `app` is reported already; calling it missing as well would only be noise.
    let app_reported = problems.iter().any(|p| p.key.as_deref() == Some("app.app"));
    if config.app.handler == HandlerKind::Python && config.app.app.is_none() && !app_reported {
        // Named as the file spells the handler: "python", or "wsgi" or "asgi".
        let (spelled, kind) = match value_at(doc, "app", "handler").map(Spanned::get_ref) {
            Some(DeValue::String(name)) if name == "wsgi" => ("wsgi", "WSGI"),
            Some(DeValue::String(name)) if name == "asgi" => ("asgi", "ASGI"),
            _ => ("python", "Python"),
        };
        problems.push(Problem {
            offset: value_offset(doc, "app", "handler"),
            key: Some("app.handler".to_owned()),
            message: format!(
                "\"{spelled}\" needs app = \"module:callable\" (the {kind} application to serve)"
            ),
        });
    }
    tls_keys_go_together(doc, config, problems);
    // `--proxy-protocol` turns it on for every bind, the file's unix sockets too (the file's
    // own entries are checked as they are read).
    for addr in &config.server.proxy_protocol {
        if let BindAddr::Unix(_) = addr {
            problems.push(Problem {
                offset: value_offset(doc, "server", "bind"),
                key: Some("server.bind".to_owned()),
                message: crate::config::bind::unix_proxy_protocol(&addr.to_string()),
            });
        }
    }
    // A budget smaller than one body would refuse that body on an idle worker.
    let limits = &config.limits;
    let budgets = [
        (
            "body_memory",
            limits.body_memory,
            "body_buffer",
            limits.body_buffer,
        ),
        ("body_disk", limits.body_disk, "body", limits.http.body),
    ];
    for (key, budget, per_body, one) in budgets {
        if let Some(budget) = budget.filter(|&budget| budget < one) {
            problems.push(Problem {
                offset: value_offset(doc, "limits", key),
                key: Some(format!("limits.{key}")),
                message: format!(
                    "{key} ({}) is less than {per_body} ({}): one such body would never fit; \
                     set it to at least {per_body}, or \"auto\"",
                    format_size(budget),
                    format_size(one)
                ),
            });
        }
    }
}

/// `[tls]`: `cert` and `key` go together, and `ca` verifies clients of a TLS listener only.
fn tls_keys_go_together(doc: &DeTable<'_>, config: &Config, problems: &mut Vec<Problem>) {
    let tls = &config.tls;
    let problem = |key: &str, message: &str| Problem {
        offset: value_offset(doc, "tls", key),
        key: Some(format!("tls.{key}")),
        message: message.to_owned(),
    };
    match (&tls.cert, &tls.key) {
        (Some(_), None) => problems.push(problem(
            "cert",
            "tls.cert is set but tls.key is not: set both (the certificate chain and its \
             private key), or neither to serve plain HTTP",
        )),
        (None, Some(_)) => problems.push(problem(
            "key",
            "tls.key is set but tls.cert is not: set both (the certificate chain and its \
             private key), or neither to serve plain HTTP",
        )),
        _ => {}
    }
    if tls.ca.is_some() && tls.cert.is_none() && tls.key.is_none() {
        problems.push(problem(
            "ca",
            "tls.ca verifies client certificates, which needs TLS: set tls.cert and tls.key too",
        ));
    }
}

/// Where the value of `section.key` starts in the file, or the file's start when the file
/// does not set it.
fn value_offset(doc: &DeTable<'_>, section: &str, key: &str) -> usize {
    value_at(doc, section, key).map_or(0, |v| v.span().start)
}

/// The value of `section.key` in the file, if it sets it.
fn value_at<'d, 'v>(
    doc: &'d DeTable<'v>,
    section: &str,
    key: &str,
) -> Option<&'d Spanned<DeValue<'v>>> {
    doc.get(section).and_then(|s| match s.get_ref() {
        DeValue::Table(table) => table.get(key),
        _ => None,
    })
}

/// Sets the key `"section.key"` from its value written as TOML, through the key's own reader.
pub(crate) fn set(config: &mut Config, key: &str, value: &str) -> Result<(), String> {
    let spec = key
        .split_once('.')
        .and_then(|(section, name)| {
            let section = SCHEMA.iter().find(|s| s.name == section)?;
            section.keys.iter().find(|k| k.name == name)
        })
        .ok_or_else(|| format!("unknown key {key}"))?;
    let parsed = DeValue::parse(value)
        .map_err(|e| format!("{value} is not a TOML value: {}", e.message()))?;
    (spec.read)(&parsed, config).map_err(|Bads(bads)| {
        let messages: Vec<String> = bads.into_iter().map(|b| b.message).collect();
        messages.join("; ")
    })
}

fn apply_section(
    section: &SectionSpec,
    table: &DeTable<'_>,
    config: &mut Config,
    problems: &mut Vec<Problem>,
) {
    for (name, value) in table {
        let Some(key) = section.keys.iter().find(|k| k.name == name.get_ref()) else {
            problems.push(unknown_key(section, name));
            continue;
        };
        if let Err(Bads(bads)) = (key.read)(value, config) {
            let full = format!("{}.{}", section.name, key.name);
            problems.extend(bads.into_iter().map(|bad| Problem {
                offset: bad.offset,
                key: Some(full.clone()),
                message: bad.message,
            }));
        }
    }
}

fn unknown_key(section: &SectionSpec, name: &Spanned<std::borrow::Cow<'_, str>>) -> Problem {
    let names: Vec<&str> = section.keys.iter().map(|k| k.name).collect();
    let shown = display_key(name.get_ref());
    let hint = if let Some(close) = suggest(name.get_ref(), &names) {
        format!(" (did you mean \"{close}\"?)")
    } else if let Some(home) = home_section(name.get_ref()) {
        format!(" ({shown} belongs in [{home}])")
    } else {
        format!("; [{}] accepts {}", section.name, names.join(", "))
    };
    Problem {
        offset: name.span().start,
        key: None,
        message: format!("unknown key {}.{shown}{hint}", section.name),
    }
}

fn unknown_top_level(
    name: &Spanned<std::borrow::Cow<'_, str>>,
    value: &Spanned<DeValue<'_>>,
) -> Problem {
    let sections: Vec<&str> = SCHEMA.iter().map(|s| s.name).collect();
    let shown = display_key(name.get_ref());
    let is_table = |v: &DeValue<'_>| matches!(v, DeValue::Table(_));
    let looks_like_section = match value.get_ref() {
        DeValue::Array(items) => !items.is_empty() && items.iter().all(|i| is_table(i.get_ref())),
        other => is_table(other),
    };
    let message = if looks_like_section {
        match suggest(name.get_ref(), &sections) {
            Some(close) => format!("unknown section [{shown}] (did you mean \"{close}\"?)"),
            None => format!("unknown section [{shown}]; sections are {}", section_list()),
        }
    } else if let Some(home) = home_section(name.get_ref()) {
        format!("unknown key {shown} at the top level ({shown} belongs in [{home}])")
    } else {
        format!(
            "unknown key {shown} at the top level; every key belongs in a section: {}",
            section_list()
        )
    };
    Problem {
        offset: name.span().start,
        key: None,
        message,
    }
}

/// The section that has a key spelled like `name`, for keys put in the wrong section.
fn home_section(name: &str) -> Option<&'static str> {
    let wanted = name.replace('-', "_");
    SCHEMA
        .iter()
        .find(|section| {
            section
                .keys
                .iter()
                .any(|k| k.name.eq_ignore_ascii_case(&wanted))
        })
        .map(|section| section.name)
}

fn section_list() -> String {
    let names: Vec<String> = SCHEMA.iter().map(|s| format!("[{}]", s.name)).collect();
    names.join(", ")
}

/// Shows a key as it would be written: bare when TOML allows, quoted otherwise.
fn display_key(name: &str) -> String {
    if is_bare_key(name) {
        name.to_owned()
    } else {
        quote(name)
    }
}
