//! The config schema, defined once: every section and key, how each value is checked and
//! stored into a `Config`, and how it is written back as TOML. The walker that checks a
//! parsed document against it, collecting every problem instead of stopping at the first,
//! lives here too.

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diag::{Problem, describe, suggest};
use super::units::{format_duration, format_size, parse_duration, parse_size, quote};
use super::{
    BindAddr, Config, HandlerKind, LEVELS, MAX_BACKLOG, MAX_THREADS, MAX_WORKERS, Workers,
    parse_app_spec,
};

/// A problem with one value, before the walker attaches the key it belongs to.
pub(crate) struct Bad {
    offset: usize,
    message: String,
}

/// All problems with one key's value: a list can have several bad entries.
pub(crate) struct Bads(Vec<Bad>);

impl From<Bad> for Bads {
    fn from(bad: Bad) -> Self {
        Bads(vec![bad])
    }
}

/// Checks one value and stores it into the config.
type Read = fn(&Spanned<DeValue<'_>>, &mut Config) -> Result<(), Bads>;
/// Renders the key's current value as a TOML value.
type Write = fn(&Config) -> String;

/// One key of a section.
pub(crate) struct KeySpec {
    pub(crate) name: &'static str,
    /// One line for `Config::to_toml`; config/tine.toml carries the full explanation.
    pub(crate) help: &'static str,
    pub(crate) read: Read,
    pub(crate) write: Write,
}

/// One `[section]` of the file.
pub(crate) struct SectionSpec {
    pub(crate) name: &'static str,
    pub(crate) keys: &'static [KeySpec],
}

/// Every section and key, in the order config/tine.toml and `to_toml` present them.
pub(crate) const SCHEMA: &[SectionSpec] = &[
    SectionSpec {
        name: "server",
        keys: &[
            KeySpec {
                name: "bind",
                help: "Addresses to listen on: \"IP:PORT\", \"[IPv6]:PORT\" or \"unix:PATH\".",
                read: |v, c| {
                    c.server.bind = read_bind(v)?;
                    Ok(())
                },
                write: |c| toml_array(c.server.bind.iter().map(ToString::to_string)),
            },
            KeySpec {
                name: "backlog",
                help: "Pending-connection queue length per listening socket (1-65535).",
                read: |v, c| {
                    let n = positive_int(v, Some(MAX_BACKLOG))?;
                    c.server.backlog = u32::try_from(n).expect("bounded by MAX_BACKLOG");
                    Ok(())
                },
                write: |c| c.server.backlog.to_string(),
            },
            KeySpec {
                name: "workers",
                help: "Worker processes: \"auto\" or 1-1024.",
                read: |v, c| {
                    c.server.workers = read_workers(v)?;
                    Ok(())
                },
                write: |c| match c.server.workers {
                    Workers::Auto => toml_string("auto"),
                    Workers::Fixed(n) => n.to_string(),
                },
            },
            KeySpec {
                name: "threads",
                help: "Request-handling threads per worker (1-1024).",
                read: |v, c| {
                    c.server.threads = positive_usize(v, Some(MAX_THREADS))?;
                    Ok(())
                },
                write: |c| c.server.threads.to_string(),
            },
            KeySpec {
                name: "max_connections",
                help: "Most client connections one worker holds open at once.",
                read: |v, c| {
                    c.server.max_connections = positive_usize(v, None)?;
                    Ok(())
                },
                write: |c| c.server.max_connections.to_string(),
            },
            KeySpec {
                name: "timeout",
                help: "A worker silent for longer than this is hung and is restarted (> 0).",
                read: |v, c| {
                    c.server.timeout = read_duration(v, true)?;
                    Ok(())
                },
                write: |c| toml_string(&format_duration(c.server.timeout)),
            },
            KeySpec {
                name: "boot_timeout",
                help: "How long a worker may take to start (import the application) before it is hung (> 0).",
                read: |v, c| {
                    c.server.boot_timeout = read_duration(v, true)?;
                    Ok(())
                },
                write: |c| toml_string(&format_duration(c.server.boot_timeout)),
            },
            KeySpec {
                name: "graceful_timeout",
                help: "On shutdown or restart, how long workers may finish requests.",
                read: |v, c| {
                    c.server.graceful_timeout = read_duration(v, false)?;
                    Ok(())
                },
                write: |c| toml_string(&format_duration(c.server.graceful_timeout)),
            },
            KeySpec {
                name: "keepalive",
                help: "How long an idle keep-alive connection is kept open; \"0s\" disables.",
                read: |v, c| {
                    c.server.keepalive = read_duration(v, false)?;
                    Ok(())
                },
                write: |c| toml_string(&format_duration(c.server.keepalive)),
            },
            KeySpec {
                name: "header_timeout",
                help: "A request head must arrive in full within this, or 408 (> 0).",
                read: |v, c| {
                    c.server.header_timeout = read_duration(v, true)?;
                    Ok(())
                },
                write: |c| toml_string(&format_duration(c.server.header_timeout)),
            },
            KeySpec {
                name: "body_timeout",
                help: "A request body must make progress at least this often, or 408 (> 0).",
                read: |v, c| {
                    c.server.body_timeout = read_duration(v, true)?;
                    Ok(())
                },
                write: |c| toml_string(&format_duration(c.server.body_timeout)),
            },
            KeySpec {
                name: "request_timeout",
                help: "A handler running longer is answered 504 and its worker replaced; \"0s\" is off.",
                read: |v, c| {
                    c.server.request_timeout = read_duration(v, false)?;
                    Ok(())
                },
                write: |c| toml_string(&format_duration(c.server.request_timeout)),
            },
            KeySpec {
                name: "max_requests",
                help: "Recycle a worker after this many requests; 0 is never.",
                read: |v, c| {
                    c.server.max_requests = non_negative_int(v)?;
                    Ok(())
                },
                write: |c| c.server.max_requests.to_string(),
            },
            KeySpec {
                name: "max_requests_jitter",
                help: "Up to this many extra requests per worker, at random, so workers recycle apart.",
                read: |v, c| {
                    c.server.max_requests_jitter = non_negative_int(v)?;
                    Ok(())
                },
                write: |c| c.server.max_requests_jitter.to_string(),
            },
            KeySpec {
                name: "max_worker_memory",
                help: "Recycle a worker whose private memory exceeds this; 0 is off.",
                read: |v, c| {
                    c.server.max_worker_memory = read_size(v, false)?;
                    Ok(())
                },
                write: |c| toml_size(c.server.max_worker_memory),
            },
            KeySpec {
                name: "pidfile",
                help: "File the master writes its pid to; \"\" writes none.",
                read: |v, c| {
                    c.server.pidfile = optional_path(v)?;
                    Ok(())
                },
                write: |c| optional_path_toml(c.server.pidfile.as_ref()),
            },
            KeySpec {
                name: "user",
                help: "User (name or id) the workers run as; \"\" keeps the master's.",
                read: |v, c| {
                    c.server.user = optional_string(v)?;
                    Ok(())
                },
                write: |c| optional_toml(c.server.user.clone()),
            },
            KeySpec {
                name: "group",
                help: "Group (name or id) the workers run as; \"\" is the user's own group.",
                read: |v, c| {
                    c.server.group = optional_string(v)?;
                    Ok(())
                },
                write: |c| optional_toml(c.server.group.clone()),
            },
            KeySpec {
                name: "umask",
                help: "File mode creation mask, octal like \"0022\"; \"\" keeps the inherited one.",
                read: |v, c| {
                    c.server.umask = read_umask(v)?;
                    Ok(())
                },
                write: |c| optional_toml(c.server.umask.map(|m| format!("{m:04o}"))),
            },
            KeySpec {
                name: "chdir",
                help: "Directory the master changes to after binding; \"\" stays put.",
                read: |v, c| {
                    c.server.chdir = optional_path(v)?;
                    Ok(())
                },
                write: |c| optional_path_toml(c.server.chdir.as_ref()),
            },
            KeySpec {
                name: "socket_mode",
                help: "Permissions of unix sockets in bind, octal like \"0660\"; \"\" follows the umask.",
                read: |v, c| {
                    c.server.socket_mode = read_umask(v)?;
                    Ok(())
                },
                write: |c| optional_toml(c.server.socket_mode.map(|m| format!("{m:04o}"))),
            },
            KeySpec {
                name: "socket_owner",
                help: "Owner of unix sockets in bind, \"user\" or \"user:group\"; \"\" leaves it.",
                read: |v, c| {
                    c.server.socket_owner = optional_string(v)?;
                    Ok(())
                },
                write: |c| optional_toml(c.server.socket_owner.clone()),
            },
            KeySpec {
                name: "control_socket",
                help: "Unix socket where the master answers `tine status`; \"\" opens none.",
                read: |v, c| {
                    c.server.control_socket = optional_path(v)?;
                    Ok(())
                },
                write: |c| optional_path_toml(c.server.control_socket.as_ref()),
            },
            KeySpec {
                name: "forwarded_allow_ips",
                help: "Proxies whose Forwarded/X-Forwarded-* headers are believed: IPs, networks, or \"*\".",
                read: |v, c| {
                    c.server.forwarded_allow_ips = read_trusted(v)?;
                    Ok(())
                },
                write: |c| toml_array(c.server.forwarded_allow_ips.iter().map(ToString::to_string)),
            },
        ],
    },
    SectionSpec {
        name: "limits",
        keys: &[
            KeySpec {
                name: "request_line",
                help: "Longest request line (method, target, version), in bytes.",
                read: |v, c| {
                    c.limits.request_line = size_usize(v)?;
                    Ok(())
                },
                write: |c| toml_size(c.limits.request_line as u64),
            },
            KeySpec {
                name: "headers",
                help: "Most header fields in one request.",
                read: |v, c| {
                    c.limits.headers = positive_usize(v, None)?.get();
                    Ok(())
                },
                write: |c| c.limits.headers.to_string(),
            },
            KeySpec {
                name: "header_field_size",
                help: "Longest single header line, name and value, in bytes.",
                read: |v, c| {
                    c.limits.header_field_size = size_usize(v)?;
                    Ok(())
                },
                write: |c| toml_size(c.limits.header_field_size as u64),
            },
            KeySpec {
                name: "header_bytes",
                help: "Largest request head (request line plus all headers), in bytes.",
                read: |v, c| {
                    c.limits.header_bytes = size_usize(v)?;
                    Ok(())
                },
                write: |c| toml_size(c.limits.header_bytes as u64),
            },
            KeySpec {
                name: "body",
                help: "Largest request body, in bytes; 0 refuses any body.",
                read: |v, c| {
                    c.limits.body = read_size(v, false)?;
                    Ok(())
                },
                write: |c| toml_size(c.limits.body),
            },
            KeySpec {
                name: "body_buffer",
                help: "Bodies larger than this go to a temporary file instead of memory.",
                read: |v, c| {
                    c.limits.body_buffer = read_size(v, false)?;
                    Ok(())
                },
                write: |c| toml_size(c.limits.body_buffer),
            },
        ],
    },
    SectionSpec {
        name: "log",
        keys: &[
            KeySpec {
                name: "level",
                help: "One of \"off\", \"error\", \"warn\", \"info\", \"debug\", \"trace\".",
                read: |v, c| {
                    c.log.level = read_level(v)?;
                    Ok(())
                },
                write: |c| toml_string(&c.log.level.as_str().to_ascii_lowercase()),
            },
            KeySpec {
                name: "error_log",
                help: "Where the error log goes: \"-\" for stderr, or a file appended to.",
                read: |v, c| {
                    c.log.error_log = match optional_string(v)?.as_deref() {
                        None => return Err(expected(v, "\"-\" or a file path").into()),
                        Some("-") => None,
                        Some(path) => Some(PathBuf::from(path)),
                    };
                    Ok(())
                },
                write: |c| {
                    toml_string(
                        &c.log
                            .error_log
                            .as_ref()
                            .map_or_else(|| "-".to_owned(), |p| p.display().to_string()),
                    )
                },
            },
            KeySpec {
                name: "access_log",
                help: "Where the access log goes: \"\" for none, \"-\" for stdout, or a file.",
                read: |v, c| {
                    c.log.access_log = match optional_string(v)?.as_deref() {
                        None => None,
                        Some("-") => Some(super::access_log::Target::Stdout),
                        Some(path) => Some(super::access_log::Target::File(PathBuf::from(path))),
                    };
                    Ok(())
                },
                write: |c| {
                    toml_string(match &c.log.access_log {
                        None => "",
                        Some(super::access_log::Target::Stdout) => "-",
                        Some(super::access_log::Target::File(path)) => {
                            path.to_str().unwrap_or_default()
                        }
                    })
                },
            },
            KeySpec {
                name: "access_log_format",
                help: "\"combined\", \"json\", or a template like \"{remote} {status} {duration_us}\".",
                read: |v, c| {
                    let DeValue::String(text) = v.get_ref() else {
                        return Err(expected(v, "a string").into());
                    };
                    c.log.access_log_format = text.parse().map_err(|e| bad(v, e))?;
                    Ok(())
                },
                write: |c| toml_string(&c.log.access_log_format.to_string()),
            },
        ],
    },
    SectionSpec {
        name: "metrics",
        keys: &[KeySpec {
            name: "bind",
            help: "Address for /metrics and /healthz, like \"127.0.0.1:9100\"; \"\" serves none.",
            read: |v, c| {
                c.metrics.bind = match optional_string(v)? {
                    None => None,
                    Some(text) => Some(text.parse::<std::net::SocketAddr>().map_err(|_| {
                        expected(v, "an IP address and port like \"127.0.0.1:9100\", or \"\"")
                    })?),
                };
                Ok(())
            },
            write: |c| optional_toml(c.metrics.bind.map(|a| a.to_string())),
        }],
    },
    SectionSpec {
        name: "app",
        keys: &[
            KeySpec {
                name: "handler",
                help: "The application that answers requests: \"demo\", \"static\" or \"wsgi\".",
                read: |v, c| {
                    c.app.handler = read_handler(v)?;
                    Ok(())
                },
                write: |c| toml_string(&c.app.handler.to_string()),
            },
            KeySpec {
                name: "app",
                help: "wsgi: the application, \"module:callable\" or \"module:factory(args)\".",
                read: |v, c| {
                    let spec = optional_string(v)?;
                    if let Some(spec) = &spec {
                        parse_app_spec(spec).map_err(|e| bad(v, e))?;
                    }
                    c.app.app = spec;
                    Ok(())
                },
                write: |c| optional_toml(c.app.app.clone()),
            },
            KeySpec {
                name: "pythonpath",
                help: "wsgi: directories put at the front of sys.path, in order.",
                read: |v, c| {
                    c.app.pythonpath =
                        read_list(v, "a list of directories, like [\"src\"]", |item| {
                            required_path(item, "a directory path")
                        })?;
                    Ok(())
                },
                write: |c| toml_array(c.app.pythonpath.iter().map(|p| p.display().to_string())),
            },
            KeySpec {
                name: "virtualenv",
                help: "wsgi: the virtual environment to import from; \"\" is $VIRTUAL_ENV's, if set.",
                read: |v, c| {
                    c.app.virtualenv = optional_path(v)?;
                    Ok(())
                },
                write: |c| optional_path_toml(c.app.virtualenv.as_ref()),
            },
            KeySpec {
                name: "env",
                help: "wsgi: environment variables set for the application, a table of strings.",
                read: |v, c| {
                    c.app.env = read_env(v)?;
                    Ok(())
                },
                write: |c| toml_inline_table(&c.app.env),
            },
            KeySpec {
                name: "preload",
                help: "wsgi: import the application in the master, before the workers are forked.",
                read: |v, c| {
                    c.app.preload = read_bool(v)?;
                    Ok(())
                },
                write: |c| c.app.preload.to_string(),
            },
            KeySpec {
                name: "script_name",
                help: "wsgi: the SCRIPT_NAME it is mounted at, like \"/app\"; \"\" is $SCRIPT_NAME's.",
                read: |v, c| {
                    c.app.script_name = read_script_name(v)?;
                    Ok(())
                },
                write: |c| toml_string(&c.app.script_name),
            },
            KeySpec {
                name: "root",
                help: "static: the directory served.",
                read: |v, c| {
                    c.app.root = required_path(v, "a directory path")?;
                    Ok(())
                },
                write: |c| toml_string(&c.app.root.display().to_string()),
            },
            KeySpec {
                name: "index",
                help: "static: file names tried, in order, for a directory.",
                read: |v, c| {
                    c.app.index = read_file_names(v)?;
                    Ok(())
                },
                write: |c| toml_array(&c.app.index),
            },
            KeySpec {
                name: "listing",
                help: "static: list a directory that has no index file (else 404).",
                read: |v, c| {
                    c.app.listing = read_bool(v)?;
                    Ok(())
                },
                write: |c| c.app.listing.to_string(),
            },
            KeySpec {
                name: "follow_symlinks",
                help: "static: follow symbolic links out of root too.",
                read: |v, c| {
                    c.app.follow_symlinks = read_bool(v)?;
                    Ok(())
                },
                write: |c| c.app.follow_symlinks.to_string(),
            },
            KeySpec {
                name: "cache_control",
                help: "static: the Cache-Control value sent with files; \"\" sends none.",
                read: |v, c| {
                    let value = optional_string(v)?;
                    if value
                        .as_deref()
                        .is_some_and(|s| s.chars().any(char::is_control))
                    {
                        return Err(bad(v, "must not contain control characters".to_owned()).into());
                    }
                    c.app.cache_control = value;
                    Ok(())
                },
                write: |c| optional_toml(c.app.cache_control.clone()),
            },
            KeySpec {
                name: "precompressed",
                help: "static: serve FILE.br or FILE.gz beside FILE when the client accepts it.",
                read: |v, c| {
                    c.app.precompressed = read_bool(v)?;
                    Ok(())
                },
                write: |c| c.app.precompressed.to_string(),
            },
        ],
    },
];

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
}

/// The checks that involve several keys, once every key is read (and the command line's
/// overrides applied to what was read).
pub(crate) fn check_across(doc: &DeTable<'_>, config: &Config, problems: &mut Vec<Problem>) {
    // A bad `app` is reported already; calling it missing as well would only be noise.
    let app_reported = problems.iter().any(|p| p.key.as_deref() == Some("app.app"));
    if config.app.handler == HandlerKind::Wsgi && config.app.app.is_none() && !app_reported {
        problems.push(Problem {
            offset: value_offset(doc, "app", "handler"),
            key: Some("app.handler".to_owned()),
            message: "\"wsgi\" needs app = \"module:callable\" (the WSGI application to serve)"
                .to_owned(),
        });
    }
}

/// Where the value of `section.key` starts in the file, or the file's start when the file
/// does not set it.
fn value_offset(doc: &DeTable<'_>, section: &str, key: &str) -> usize {
    let value = doc.get(section).and_then(|s| match s.get_ref() {
        DeValue::Table(table) => table.get(key),
        _ => None,
    });
    value.map_or(0, |v| v.span().start)
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

/// Whether TOML lets `name` be written as a key without quotes.
fn is_bare_key(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Shows a key as it would be written: bare when TOML allows, quoted otherwise.
fn display_key(name: &str) -> String {
    if is_bare_key(name) {
        name.to_owned()
    } else {
        quote(name)
    }
}

fn bad(value: &Spanned<DeValue<'_>>, message: String) -> Bad {
    Bad {
        offset: value.span().start,
        message,
    }
}

/// "expected X, found Y", with a hint when a number was written as a string.
fn expected(value: &Spanned<DeValue<'_>>, what: &str) -> Bad {
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
fn positive_int(value: &Spanned<DeValue<'_>>, max: Option<usize>) -> Result<usize, Bad> {
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

fn positive_usize(value: &Spanned<DeValue<'_>>, max: Option<usize>) -> Result<NonZeroUsize, Bad> {
    let n = positive_int(value, max)?;
    Ok(NonZeroUsize::new(n).expect("positive_int checked n >= 1"))
}

fn read_workers(value: &Spanned<DeValue<'_>>) -> Result<Workers, Bad> {
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

fn read_bind(value: &Spanned<DeValue<'_>>) -> Result<Vec<BindAddr>, Bads> {
    let items = match value.get_ref() {
        DeValue::String(s) => {
            return s
                .parse::<BindAddr>()
                .map(|addr| vec![addr])
                .map_err(|e| bad(value, e).into());
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
    let mut seen: Vec<(BindAddr, &str)> = Vec::with_capacity(items.len());
    let mut bads = Vec::new();
    for item in items {
        let DeValue::String(written) = item.get_ref() else {
            bads.push(expected(item, "an address string like \"127.0.0.1:8000\""));
            continue;
        };
        match written.parse::<BindAddr>() {
            Ok(addr) => match seen.iter().find(|(earlier, _)| *earlier == addr) {
                Some((_, first)) => {
                    let same = if first == written {
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
                None => seen.push((addr, written)),
            },
            Err(e) => bads.push(bad(item, e)),
        }
    }
    if bads.is_empty() {
        Ok(seen.into_iter().map(|(addr, _)| addr).collect())
    } else {
        Err(Bads(bads))
    }
}

fn read_duration(value: &Spanned<DeValue<'_>>, positive: bool) -> Result<Duration, Bad> {
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

fn read_size(value: &Spanned<DeValue<'_>>, positive: bool) -> Result<u64, Bad> {
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

/// A positive size that must also fit in memory, since it bounds a buffer.
fn size_usize(value: &Spanned<DeValue<'_>>) -> Result<usize, Bad> {
    let n = read_size(value, true)?;
    usize::try_from(n).map_err(|_| {
        bad(
            value,
            format!("{n} bytes is too large for this machine's address space"),
        )
    })
}

fn read_level(value: &Spanned<DeValue<'_>>) -> Result<log::LevelFilter, Bad> {
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

fn read_handler(value: &Spanned<DeValue<'_>>) -> Result<HandlerKind, Bad> {
    let found = match value.get_ref() {
        DeValue::String(s) => s.parse::<HandlerKind>().ok(),
        _ => None,
    };
    found.ok_or_else(|| {
        let names: Vec<String> = HandlerKind::ALL
            .iter()
            .map(|h| format!("\"{h}\""))
            .collect();
        expected(value, &format!("one of {}", names.join(", ")))
    })
}

/// A list of trusted proxies (or a single string).
fn read_trusted(value: &Spanned<DeValue<'_>>) -> Result<Vec<crate::forwarded::Trusted>, Bads> {
    let parse = |item: &Spanned<DeValue<'_>>| match item.get_ref() {
        DeValue::String(s) => s.parse().map_err(|e| bad(item, e)),
        _ => Err(expected(item, "an IP address or network as a string")),
    };
    match value.get_ref() {
        DeValue::String(_) => Ok(vec![parse(value)?]),
        _ => read_list(value, "a list of IP addresses or networks", parse),
    }
}

/// An array, each item read by `item`; every bad item is reported.
fn read_list<T>(
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
fn read_env(value: &Spanned<DeValue<'_>>) -> Result<Vec<(String, String)>, Bads> {
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

/// `[app] script_name`: `""`, or a path that starts with `/` and does not end with one.
fn read_script_name(value: &Spanned<DeValue<'_>>) -> Result<String, Bad> {
    let what = "\"\" or a path that starts with \"/\" and does not end with one, like \"/app\"";
    let path = text(value, what)?;
    if path.is_empty() || (path.starts_with('/') && !path.ends_with('/')) {
        Ok(path.to_owned())
    } else {
        Err(expected(value, what))
    }
}

fn read_bool(value: &Spanned<DeValue<'_>>) -> Result<bool, Bad> {
    match value.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        _ => Err(expected(value, "true or false")),
    }
}

/// A list of plain file names (no `/`, not `.` or `..`), each checked on its own.
fn read_file_names(value: &Spanned<DeValue<'_>>) -> Result<Vec<String>, Bads> {
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
fn non_negative_int(value: &Spanned<DeValue<'_>>) -> Result<u64, Bad> {
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
fn optional_string(value: &Spanned<DeValue<'_>>) -> Result<Option<String>, Bad> {
    let s = text(value, "a string (\"\" for none)")?;
    Ok((!s.is_empty()).then(|| s.to_owned()))
}

/// A path where `""` means "not set".
fn optional_path(value: &Spanned<DeValue<'_>>) -> Result<Option<PathBuf>, Bad> {
    Ok(optional_string(value)?.map(PathBuf::from))
}

/// A path that must be given; `what` names it, like "a directory path".
fn required_path(value: &Spanned<DeValue<'_>>, what: &str) -> Result<PathBuf, Bad> {
    match text(value, what)? {
        "" => Err(expected(value, what)),
        path => Ok(PathBuf::from(path)),
    }
}

/// An octal mode mask: a string of octal digits (`"0022"`), an integer written in octal
/// (`0o022`), or `""` for none.
fn read_umask(value: &Spanned<DeValue<'_>>) -> Result<Option<u32>, Bad> {
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

/// An optional string value as TOML: `""` when unset.
fn optional_toml(value: Option<String>) -> String {
    toml_string(value.as_deref().unwrap_or(""))
}

/// An optional path as TOML: `""` when unset.
fn optional_path_toml(path: Option<&PathBuf>) -> String {
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
fn toml_inline_table(entries: &[(String, String)]) -> String {
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
fn toml_size(n: u64) -> String {
    let text = format_size(n);
    if text.bytes().all(|b| b.is_ascii_digit()) && i64::try_from(n).is_ok() {
        text
    } else {
        toml_string(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KEYS;

    fn errors(text: &str) -> Vec<String> {
        match Config::from_toml_str("t.toml", text) {
            Ok(config) => panic!("expected errors, got {config:?}"),
            Err(d) => d.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn supervision_and_hygiene_keys() {
        let config = Config::from_toml_str(
            "t.toml",
            "[server]\nrequest_timeout = \"5s\"\nmax_requests = 1000\nmax_requests_jitter = 50\n\
             max_worker_memory = \"512MiB\"\npidfile = \"/run/tine.pid\"\nuser = \"nobody\"\n\
             group = \"\"\numask = \"0027\"\nchdir = \"/srv\"\nheader_timeout = \"2s\"\n",
        )
        .unwrap();
        let server = &config.server;
        assert_eq!(server.request_timeout, Duration::from_secs(5));
        assert_eq!(
            (server.max_requests, server.max_requests_jitter),
            (1000, 50)
        );
        assert_eq!(server.max_worker_memory, 512 << 20);
        assert_eq!(server.pidfile, Some(PathBuf::from("/run/tine.pid")));
        assert_eq!(server.user.as_deref(), Some("nobody"));
        assert_eq!(server.group, None);
        assert_eq!(server.umask, Some(0o027));
        assert_eq!(server.chdir, Some(PathBuf::from("/srv")));
        assert_eq!(server.header_timeout, Duration::from_secs(2));
        let octal = Config::from_toml_str("t.toml", "[server]\numask = 0o077\n").unwrap();
        assert_eq!(octal.server.umask, Some(0o077));
        let printed = config.to_toml(None);
        assert_eq!(Config::from_toml_str("p.toml", &printed).unwrap(), config);
    }

    #[test]
    fn supervision_key_errors() {
        assert!(error_for("server", "max_requests", "-1").contains("an integer of zero or more"));
        assert!(error_for("server", "umask", "\"0999\"").contains("an octal mask"));
        assert!(error_for("server", "umask", "0o1000").contains("an octal mask"));
        assert!(error_for("server", "user", "0").contains("a string"));
        assert!(error_for("server", "header_timeout", "\"0s\"").contains("greater than zero"));
        assert!(
            error_for("server", "request_timeout", "5").contains("add a unit")
                || error_for("server", "request_timeout", "5").contains("a duration")
        );
    }

    /// The single diagnostic for `key = value` under `[section]`, at line 2.
    fn error_for(section: &str, key: &str, value: &str) -> String {
        let lines = errors(&format!("[{section}]\n{key} = {value}\n"));
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines.into_iter().next().unwrap()
    }

    #[test]
    fn the_two_documented_examples() {
        let threads = "[server]\nbind = \"127.0.0.1:8000\"\nbacklog = 2048\n\n\n# four?\nthreads = \"four\"\n";
        assert_eq!(
            errors(threads),
            ["tine.toml:7:11: server.threads: expected a positive integer, found \"four\""]
                .map(|s| s.replace("tine.toml", "t.toml"))
        );
        let d = Config::from_toml_str("tine.toml", "[server]\ntimeout=30\n").unwrap_err();
        // Column 9 is where the value starts; "timeout" alone fills columns 1-7.
        assert_eq!(
            d.to_string(),
            "tine.toml:2:9: server.timeout: expected a duration with a unit like \"30s\" or \"500ms\", found 30"
        );
        assert_eq!(
            errors("[server]\nthreads = 1\nworker = 4\n"),
            ["t.toml:3:1: unknown key server.worker (did you mean \"workers\"?)"]
        );
    }

    #[test]
    fn unknown_key_with_suggestion() {
        assert_eq!(
            errors("[limits]\nheader = 10\n"),
            ["t.toml:2:1: unknown key limits.header (did you mean \"headers\"?)"]
        );
        assert_eq!(
            errors("[server]\n  Max-Connections = 10\n"),
            ["t.toml:2:3: unknown key server.Max-Connections (did you mean \"max_connections\"?)"]
        );
    }

    #[test]
    fn unknown_key_without_suggestion_lists_the_accepted_keys() {
        assert_eq!(
            errors("[log]\nformat = \"json\"\n"),
            [
                "t.toml:2:1: unknown key log.format; [log] accepts level, error_log, access_log, access_log_format"
            ]
        );
        let errs = errors("[server]\n\"two words\" = 1\n");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with(
                "t.toml:2:1: unknown key server.\"two words\"; [server] accepts bind, backlog, \
                 workers, threads, max_connections, timeout, "
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn key_in_the_wrong_section_names_its_section() {
        assert_eq!(
            errors("[server]\nlevel = \"debug\"\n"),
            ["t.toml:2:1: unknown key server.level (level belongs in [log])"]
        );
        assert_eq!(
            errors("threads = 4\nfoo = 1\n"),
            [
                "t.toml:1:1: unknown key threads at the top level (threads belongs in [server])",
                "t.toml:2:1: unknown key foo at the top level; every key belongs in a section: \
                 [server], [limits], [log], [metrics], [app]",
            ]
        );
    }

    #[test]
    fn unknown_section() {
        assert_eq!(
            errors("[sever]\nthreads = 4\n"),
            ["t.toml:1:2: unknown section [sever] (did you mean \"server\"?)"]
        );
        assert_eq!(
            errors("[tls]\ncert = \"x\"\n[[route]]\n"),
            [
                "t.toml:1:2: unknown section [tls]; sections are [server], [limits], [log], [metrics], [app]",
                "t.toml:3:3: unknown section [route]; sections are [server], [limits], [log], [metrics], [app]",
            ]
        );
        let errs = errors("[server.tls]\n");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("t.toml:1:9: unknown key server.tls; [server] accepts bind, "),
            "{errs:?}"
        );
        assert!(errs[0].contains("keepalive"), "{errs:?}");
    }

    #[test]
    fn wrong_types_name_expected_and_found() {
        let table = [
            (
                "log",
                "level",
                "{ a = 1 }",
                "log.level: expected one of \"off\", \"error\", \"warn\", \"info\", \"debug\", \"trace\", found a table",
            ),
            (
                "app",
                "handler",
                "true",
                "app.handler: expected one of \"demo\", \"static\", \"wsgi\", found true",
            ),
            (
                "server",
                "threads",
                "4.0",
                "server.threads: expected a positive integer, found 4.0",
            ),
            (
                "server",
                "threads",
                "[4]",
                "server.threads: expected a positive integer, found [4]",
            ),
            (
                "server",
                "backlog",
                "\"100\"",
                "server.backlog: expected a positive integer, found \"100\" (write numbers without quotes)",
            ),
            (
                "server",
                "workers",
                "\"4\"",
                "server.workers: expected \"auto\" or a positive integer up to 1024, found \"4\" (write numbers without quotes)",
            ),
            (
                "server",
                "workers",
                "\"many\"",
                "server.workers: expected \"auto\" or a positive integer up to 1024, found \"many\"",
            ),
            (
                "server",
                "keepalive",
                "1979-05-27",
                "server.keepalive: expected a duration with a unit like \"30s\" or \"500ms\", found the date-time 1979-05-27",
            ),
            (
                "server",
                "bind",
                "8000",
                "server.bind: expected an address like \"127.0.0.1:8000\" or a list of addresses, found 8000",
            ),
            (
                "limits",
                "body",
                "true",
                "limits.body: expected a size: a number of bytes, or a string like \"64KiB\" or \"100MiB\", found true",
            ),
        ];
        for (section, key, value, want) in table {
            let got = error_for(section, key, value);
            assert_eq!(got, format!("t.toml:2:{}: {want}", key.len() + 4));
        }
        assert_eq!(
            errors("server = \"fast\"\n[app]\nhandler = \"demo\"\n"),
            ["t.toml:1:10: server: expected a table (the [server] section), found \"fast\""]
        );
        assert_eq!(
            errors("[[log]]\nlevel = \"info\"\n"),
            ["t.toml:1:1: log: expected a table (the [log] section), found an array of tables"]
        );
    }

    #[test]
    fn out_of_range_values() {
        let table = [
            (
                "server",
                "backlog",
                "0",
                "expected a positive integer up to 65535, found 0",
            ),
            (
                "server",
                "backlog",
                "65536",
                "expected a positive integer up to 65535, found 65536",
            ),
            (
                "server",
                "workers",
                "0",
                "expected \"auto\" or a positive integer up to 1024, found 0",
            ),
            (
                "server",
                "workers",
                "1025",
                "expected \"auto\" or a positive integer up to 1024, found 1025",
            ),
            (
                "server",
                "threads",
                "-4",
                "expected a positive integer up to 1024, found -4",
            ),
            (
                "server",
                "threads",
                "0x401",
                "expected a positive integer up to 1024, found 0x401",
            ),
            (
                "server",
                "max_connections",
                "0",
                "expected a positive integer, found 0",
            ),
            (
                "limits",
                "headers",
                "-1",
                "expected a positive integer, found -1",
            ),
            (
                "limits",
                "request_line",
                "0",
                "expected a size greater than zero, found 0",
            ),
            (
                "limits",
                "header_field_size",
                "\"0KiB\"",
                "expected a size greater than zero, found \"0KiB\"",
            ),
            (
                "limits",
                "header_bytes",
                "-1",
                "expected a size greater than zero, found -1",
            ),
            (
                "limits",
                "body",
                "-1",
                "expected a size of zero or more bytes, found -1",
            ),
            (
                "server",
                "timeout",
                "\"0ms\"",
                "expected a duration greater than zero, found \"0ms\"",
            ),
        ];
        for (section, key, value, want) in table {
            let got = error_for(section, key, value);
            assert_eq!(
                got,
                format!("t.toml:2:{}: {section}.{key}: {want}", key.len() + 4)
            );
        }
        // Zero is a meaningful value for these.
        let c = Config::from_toml_str(
            "t.toml",
            "[server]\ngraceful_timeout = \"0s\"\nkeepalive = \"0s\"\n[limits]\nbody = 0\n",
        )
        .unwrap();
        assert!(c.server.graceful_timeout.is_zero() && c.server.keepalive.is_zero());
        assert_eq!(c.limits.body, 0);
    }

    #[test]
    fn bad_durations() {
        assert_eq!(
            error_for("server", "keepalive", "\"75\""),
            "t.toml:2:13: server.keepalive: invalid duration \"75\": add a unit (ms, s, m or h), like \"75s\" or \"75ms\""
        );
        assert_eq!(
            error_for("server", "graceful_timeout", "\"30 sec\""),
            "t.toml:2:20: server.graceful_timeout: invalid duration \"30 sec\": expected whole \
             numbers each followed by a unit (ms, s, m or h), like \"30s\", \"500ms\" or \"1m30s\""
        );
        assert_eq!(
            error_for("server", "timeout", "\"2d\""),
            "t.toml:2:11: server.timeout: invalid duration \"2d\": unknown unit \"d\"; use ms, s, m or h"
        );
    }

    #[test]
    fn bad_sizes() {
        assert_eq!(
            error_for("limits", "body", "\"1.5GiB\""),
            "t.toml:2:8: limits.body: invalid size \"1.5GiB\": expected a whole number of bytes, \
             optionally followed by a unit, like \"512\", \"8KiB\" or \"100MiB\""
        );
        assert_eq!(
            error_for("limits", "header_bytes", "\"64kib\""),
            "t.toml:2:16: limits.header_bytes: invalid size \"64kib\": unknown unit \"kib\"; use B, \
             K or KiB, M or MiB, G or GiB, T or TiB (powers of 1024), or KB, MB, GB, TB (powers of 1000)"
        );
        assert_eq!(
            error_for("limits", "body", "\"16EiB\""),
            "t.toml:2:8: limits.body: invalid size \"16EiB\": too large: sizes must fit in 64 bits"
        );
        assert_eq!(
            error_for("limits", "body", "99999999999999999999"),
            "t.toml:2:8: limits.body: 99999999999999999999 bytes is too large: sizes must fit in 64 bits"
        );
    }

    #[test]
    fn bad_bind_addresses_are_each_reported() {
        assert_eq!(
            errors("[server]\nbind = [\"127.0.0.1\", \"[::1]:8000\", 80, \"unix:\"]\n"),
            [
                "t.toml:2:9: server.bind: invalid address \"127.0.0.1\": missing port, like \
                 \"127.0.0.1:8000\"; accepted forms: \"IP:PORT\" like \"127.0.0.1:8000\", \
                 \"[IPv6]:PORT\" like \"[::1]:8000\", or \"unix:PATH\"",
                "t.toml:2:36: server.bind: expected an address string like \"127.0.0.1:8000\", found 80",
                "t.toml:2:40: server.bind: invalid address \"unix:\": the unix socket path is empty; \
                 write it after \"unix:\", like \"unix:/run/tine.sock\"",
            ]
        );
        assert_eq!(
            error_for("server", "bind", "\"localhost:8000\""),
            "t.toml:2:8: server.bind: invalid address \"localhost:8000\": \"localhost\" is not an IP \
             address, and host names are not resolved; accepted forms: \"IP:PORT\" like \
             \"127.0.0.1:8000\", \"[IPv6]:PORT\" like \"[::1]:8000\", or \"unix:PATH\""
        );
        assert_eq!(
            error_for("server", "bind", "[]"),
            "t.toml:2:8: server.bind: expected at least one address, found an empty array"
        );
    }

    #[test]
    fn duplicate_bind_addresses() {
        assert_eq!(
            errors(
                "[server]\nbind = [\"127.0.0.1:80\", \"[::1]:80\", \"127.0.0.1:80\", \"[0::1]:80\"]\n"
            ),
            [
                "t.toml:2:37: server.bind: duplicate address \"127.0.0.1:80\": each address may be \
                 listed only once",
                "t.toml:2:53: server.bind: duplicate address \"[0::1]:80\": the same address as \
                 \"[::1]:80\" listed before; each address may be listed only once",
            ]
        );
    }

    #[test]
    fn several_errors_are_all_reported_in_file_order() {
        let text = "\
[server]
bind = [\"0.0.0.0\"]
worker = 4
threads = \"four\"
timeout = 30

[limits]
body = \"10 MiB\"

[logs]
level = \"debug\"

[app]
handler = \"wsgi\"
";
        let got = errors(text);
        let positions: Vec<&str> = got.iter().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            positions,
            [
                "t.toml:2:9:",
                "t.toml:3:1:",
                "t.toml:4:11:",
                "t.toml:5:11:",
                "t.toml:8:8:",
                "t.toml:10:2:",
                "t.toml:14:11:"
            ],
            "{got:#?}"
        );
        assert!(
            got[0]
                .starts_with("t.toml:2:9: server.bind: invalid address \"0.0.0.0\": missing port")
        );
        assert_eq!(
            got[1],
            "t.toml:3:1: unknown key server.worker (did you mean \"workers\"?)"
        );
        assert_eq!(
            got[2],
            "t.toml:4:11: server.threads: expected a positive integer, found \"four\""
        );
        assert!(got[3].starts_with("t.toml:5:11: server.timeout: expected a duration"));
        assert!(got[4].starts_with("t.toml:8:8: limits.body: invalid size \"10 MiB\""));
        assert_eq!(
            got[5],
            "t.toml:10:2: unknown section [logs] (did you mean \"log\"?)"
        );
        assert_eq!(
            got[6],
            "t.toml:14:11: app.handler: \"wsgi\" needs app = \"module:callable\" (the WSGI \
             application to serve)"
        );
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        assert_eq!(
            errors("# é\n[app]\n\"é\" = 1\n")[0].split(' ').next(),
            Some("t.toml:3:1:")
        );
        assert_eq!(
            error_for("log", "level", "\"\u{e9}\u{e9}\""),
            "t.toml:2:9: log.level: expected one of \"off\", \"error\", \"warn\", \"info\", \
             \"debug\", \"trace\", found \"éé\""
        );
        assert_eq!(
            errors("\u{feff}[server]\nthreads = 0\nbacklog = 0\nbind = [\"\u{e9}\", \"x\"]\n")
                .iter()
                .map(|l| l.split(' ').next().unwrap())
                .collect::<Vec<_>>(),
            [
                "t.toml:2:11:",
                "t.toml:3:11:",
                "t.toml:4:9:",
                "t.toml:4:14:"
            ]
        );
    }

    #[test]
    fn set_reads_one_key_as_the_file_would() {
        let mut config = Config::default();
        config.set("server.timeout", "\"1m\"").unwrap();
        config.set("app.pythonpath", "[\"a\", \"b\"]").unwrap();
        config.set("app.env", "{ X = \"1\" }").unwrap();
        assert_eq!(config.server.timeout, Duration::from_secs(60));
        assert_eq!(
            config.app.pythonpath,
            [PathBuf::from("a"), PathBuf::from("b")]
        );
        assert_eq!(config.app.env, [("X".to_owned(), "1".to_owned())]);
        assert_eq!(
            config.set("server.threads", "0"),
            Err("expected a positive integer up to 1024, found 0".to_owned())
        );
        assert_eq!(
            config.set("app.index", "[\"../a\", 1]"),
            Err(
                "expected a plain file name (no \"/\", not \".\" or \"..\"), found \"../a\"; \
                 expected a file name string, found 1"
                    .to_owned()
            )
        );
        assert_eq!(
            config.set("server.thread", "1"),
            Err("unknown key server.thread".to_owned())
        );
        assert!(config.set("server.threads", "[").is_err());
    }

    #[test]
    fn keys_constant_matches_the_schema() {
        let from_schema: Vec<String> = SCHEMA
            .iter()
            .flat_map(|s| s.keys.iter().map(move |k| format!("{}.{}", s.name, k.name)))
            .collect();
        assert_eq!(from_schema, KEYS);
    }

    #[test]
    fn toml_strings_parse_back() {
        for s in [
            "plain",
            "a\"b\\c",
            "line\nbreak\ttab\r",
            "nul\0 del\u{7f} bell\u{7}",
            "é ✓",
        ] {
            let doc = format!("v = {}", toml_string(s));
            assert_eq!(doc.lines().count(), 1, "{doc}");
            let table = DeTable::parse(&doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
            assert_eq!(
                table.get_ref().get("v").unwrap().get_ref().as_str(),
                Some(s)
            );
        }
    }

    #[test]
    fn sizes_are_written_as_integers_or_strings() {
        assert_eq!(toml_size(8190), "8190");
        assert_eq!(toml_size(0), "0");
        assert_eq!(toml_size(8192), "\"8KiB\"");
        assert_eq!(toml_size(u64::MAX), "\"18446744073709551615\"");
    }
}
