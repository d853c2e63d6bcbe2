//! The config schema, defined once: the table of every section and key, each with how its
//! value is checked and stored into a `Config` and how it is written back as TOML.
//!
//! The table is here; the machinery around it is in its own files: [`mod@read`] has the
//! checks each key's reader is built from, [`mod@write`] renders values as TOML, and
//! [`mod@walk`] goes over a parsed document with the table, collecting every problem instead
//! of stopping at the first.

mod read;
mod walk;
mod write;

use std::path::PathBuf;

use toml::Spanned;
use toml::de::DeValue;

use super::units::format_duration;
use super::{Config, MAX_BACKLOG, MAX_CONCURRENCY, MAX_THREADS, Workers, parse_app_spec};
use read::{
    bad, expected, non_negative_int, optional_path, optional_string, positive_int, positive_usize,
    read_auto_size, read_bind, read_bool, read_choice, read_duration, read_env, read_file_names,
    read_handler, read_level, read_list, read_mount_path, read_size, read_trusted, read_umask,
    read_workers, required_path, size_usize,
};
use write::{optional_path_toml, optional_size_toml, optional_toml, toml_inline_table, toml_size};

pub(crate) use walk::{apply, check_across, set};
pub(crate) use write::{toml_array, toml_string};

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
                help: "Addresses to listen on: \"IP:PORT\", \"[IPv6]:PORT\" or \"unix:PATH\"; { address = \"IP:PORT\", proxy_protocol = true } for a PROXY protocol listener.",
                read: |v, c| {
                    let binds = read_bind(v)?;
                    c.server.proxy_protocol = binds
                        .iter()
                        .filter(|(_, proxy)| *proxy)
                        .map(|(addr, _)| addr.clone())
                        .collect();
                    c.server.bind = binds.into_iter().map(|(addr, _)| addr).collect();
                    Ok(())
                },
                write: |c| {
                    let entries: Vec<String> = c
                        .server
                        .bind
                        .iter()
                        .map(|addr| {
                            let address = toml_string(&addr.to_string());
                            if c.server.proxy_protocol.contains(addr) {
                                format!("{{ address = {address}, proxy_protocol = true }}")
                            } else {
                                address
                            }
                        })
                        .collect();
                    format!("[{}]", entries.join(", "))
                },
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
                name: "drain_delay",
                help: "On SIGTERM, how long /healthz answers 503 while workers keep serving, before the graceful stop.",
                read: |v, c| {
                    c.server.drain_delay = read_duration(v, false)?;
                    Ok(())
                },
                write: |c| toml_string(&format_duration(c.server.drain_delay)),
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
                name: "min_body_rate",
                help: "Bytes per second a request body must average after body_rate_grace, or 408; 0 is off.",
                read: |v, c| {
                    c.server.min_body_rate = non_negative_int(v)?;
                    Ok(())
                },
                write: |c| c.server.min_body_rate.to_string(),
            },
            KeySpec {
                name: "body_rate_grace",
                help: "How long a request body may arrive slower than min_body_rate (> 0).",
                read: |v, c| {
                    c.server.body_rate_grace = read_duration(v, true)?;
                    Ok(())
                },
                write: |c| toml_string(&format_duration(c.server.body_rate_grace)),
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
                name: "queue_wait_warning",
                help: "Warn when a worker's requests wait this long at p90 for a free thread; \"0s\" is off.",
                read: |v, c| {
                    c.server.queue_wait_warning = read_duration(v, false)?;
                    Ok(())
                },
                write: |c| toml_string(&format_duration(c.server.queue_wait_warning)),
            },
            KeySpec {
                name: "queue_wait_warning_after",
                help: "...when they keep waiting that long for this long; \"0s\" is off.",
                read: |v, c| {
                    c.server.queue_wait_warning_after = read_duration(v, false)?;
                    Ok(())
                },
                write: |c| toml_string(&format_duration(c.server.queue_wait_warning_after)),
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
            KeySpec {
                name: "forwarded_header",
                help: "The header those proxies set: \"x-forwarded-for\" (with X-Forwarded-Proto) or \"forwarded\".",
                read: |v, c| {
                    c.server.forwarded_header = read::read_forwarded_header(v)?;
                    Ok(())
                },
                write: |c| toml_string(c.server.forwarded_header.as_str()),
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
                    c.limits.http.request_line = size_usize(v)?;
                    Ok(())
                },
                write: |c| toml_size(c.limits.http.request_line as u64),
            },
            KeySpec {
                name: "headers",
                help: "Most header fields in one request.",
                read: |v, c| {
                    c.limits.http.headers = positive_usize(v, None)?.get();
                    Ok(())
                },
                write: |c| c.limits.http.headers.to_string(),
            },
            KeySpec {
                name: "header_field_size",
                help: "Longest single header line, name and value, in bytes.",
                read: |v, c| {
                    c.limits.http.header_field_size = size_usize(v)?;
                    Ok(())
                },
                write: |c| toml_size(c.limits.http.header_field_size as u64),
            },
            KeySpec {
                name: "header_bytes",
                help: "Largest request head (request line plus all headers), in bytes.",
                read: |v, c| {
                    c.limits.http.header_bytes = size_usize(v)?;
                    Ok(())
                },
                write: |c| toml_size(c.limits.http.header_bytes as u64),
            },
            KeySpec {
                name: "body",
                help: "Largest request body, in bytes; 0 refuses any body.",
                read: |v, c| {
                    c.limits.http.body = read_size(v, false)?;
                    Ok(())
                },
                write: |c| toml_size(c.limits.http.body),
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
            KeySpec {
                name: "body_memory",
                help: "Memory one worker gives bodies being received: \"auto\" (16 x body_buffer) or a size.",
                read: |v, c| {
                    c.limits.body_memory = read_auto_size(v)?;
                    Ok(())
                },
                write: |c| optional_size_toml(c.limits.body_memory),
            },
            KeySpec {
                name: "body_disk",
                help: "Temporary-file space one worker gives bodies being received: \"auto\" (4 x body) or a size.",
                read: |v, c| {
                    c.limits.body_disk = read_auto_size(v)?;
                    Ok(())
                },
                write: |c| optional_size_toml(c.limits.body_disk),
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
                help: "The application that answers requests: \"demo\", \"static\" or \"python\".",
                read: |v, c| {
                    let (handler, interface) = read_handler(v)?;
                    c.app.handler = handler;
                    if let Some(interface) = interface {
                        c.app.interface = interface;
                    }
                    Ok(())
                },
                write: |c| toml_string(&c.app.handler.to_string()),
            },
            KeySpec {
                name: "app",
                help: "python: the application, \"module:callable\" or \"module:factory(args)\".",
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
                name: "interface",
                help: "python: \"wsgi\", \"asgi\", or \"auto\" (ASGI for a coroutine function, else WSGI).",
                read: |v, c| {
                    c.app.interface = read_choice(v)?;
                    Ok(())
                },
                write: |c| toml_string(c.app.interface.as_str()),
            },
            KeySpec {
                name: "pythonpath",
                help: "python: directories put at the front of sys.path, in order.",
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
                help: "python: the virtual environment to import from; \"\" is $VIRTUAL_ENV's, if set, else the one tine is installed in.",
                read: |v, c| {
                    c.app.virtualenv = optional_path(v)?;
                    Ok(())
                },
                write: |c| optional_path_toml(c.app.virtualenv.as_ref()),
            },
            KeySpec {
                name: "env",
                help: "python: environment variables set for the application, a table of strings.",
                read: |v, c| {
                    c.app.env = read_env(v)?;
                    Ok(())
                },
                write: |c| toml_inline_table(&c.app.env),
            },
            KeySpec {
                name: "preload",
                help: "python: import the application in the master, before the workers are forked.",
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
                    c.app.script_name = read_mount_path(v)?;
                    Ok(())
                },
                write: |c| toml_string(&c.app.script_name),
            },
            KeySpec {
                name: "root_path",
                help: "asgi: the root_path it is mounted at, like \"/app\"; \"\" for none.",
                read: |v, c| {
                    c.app.root_path = read_mount_path(v)?;
                    Ok(())
                },
                write: |c| toml_string(&c.app.root_path),
            },
            KeySpec {
                name: "loop",
                help: "asgi: the event loop, \"asyncio\", \"uvloop\", or \"auto\" (uvloop if installed).",
                read: |v, c| {
                    c.app.event_loop = read_choice(v)?;
                    Ok(())
                },
                write: |c| toml_string(c.app.event_loop.as_str()),
            },
            KeySpec {
                name: "lifespan",
                help: "asgi: run the lifespan protocol: \"on\", \"off\", or \"auto\" (if the app supports it).",
                read: |v, c| {
                    c.app.lifespan = read_choice(v)?;
                    Ok(())
                },
                write: |c| toml_string(c.app.lifespan.as_str()),
            },
            KeySpec {
                name: "max_concurrency",
                help: "asgi: how many requests one worker runs at once; more wait, unread, until one finishes (1-100000).",
                read: |v, c| {
                    c.app.max_concurrency = positive_int(v, Some(MAX_CONCURRENCY))?;
                    Ok(())
                },
                write: |c| c.app.max_concurrency.to_string(),
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
                name: "dotfiles",
                help: "static: serve names starting with \".\" (else 404, but /.well-known/).",
                read: |v, c| {
                    c.app.dotfiles = read_bool(v)?;
                    Ok(())
                },
                write: |c| c.app.dotfiles.to_string(),
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
    SectionSpec {
        name: "websocket",
        keys: &[
            KeySpec {
                name: "max_message",
                help: "asgi: the largest message a client may send (after reassembly); bigger closes with 1009.",
                read: |v, c| {
                    c.websocket.max_message = size_usize(v)?;
                    Ok(())
                },
                write: |c| toml_size(c.websocket.max_message as u64),
            },
            KeySpec {
                name: "ping_interval",
                help: "asgi: ping a WebSocket silent for this long; \"0s\" sends no pings.",
                read: |v, c| {
                    c.websocket.ping_interval = read_duration(v, false)?;
                    Ok(())
                },
                write: |c| toml_string(&format_duration(c.websocket.ping_interval)),
            },
            KeySpec {
                name: "ping_timeout",
                help: "asgi: close a WebSocket whose pong has not come this long after its ping (> 0).",
                read: |v, c| {
                    c.websocket.ping_timeout = read_duration(v, true)?;
                    Ok(())
                },
                write: |c| toml_string(&format_duration(c.websocket.ping_timeout)),
            },
            KeySpec {
                name: "on_stop",
                help: "asgi: when a stopping worker closes its WebSockets (1001): \"wait\" for graceful_timeout, or \"close\" at once.",
                read: |v, c| {
                    c.websocket.on_stop = read_choice(v)?;
                    Ok(())
                },
                write: |c| toml_string(c.websocket.on_stop.as_str()),
            },
        ],
    },
    SectionSpec {
        name: "tls",
        keys: &[
            KeySpec {
                name: "cert",
                help: "PEM certificate chain (own certificate first): every bind listener serves TLS; \"\" serves plain HTTP.",
                read: |v, c| {
                    c.tls.cert = optional_path(v)?;
                    Ok(())
                },
                write: |c| optional_path_toml(c.tls.cert.as_ref()),
            },
            KeySpec {
                name: "key",
                help: "PEM private key of cert (unencrypted; the master reads it, so it may be root's alone).",
                read: |v, c| {
                    c.tls.key = optional_path(v)?;
                    Ok(())
                },
                write: |c| optional_path_toml(c.tls.key.as_ref()),
            },
            KeySpec {
                name: "ca",
                help: "PEM CA certificates: clients must present a certificate they signed; \"\" asks for none.",
                read: |v, c| {
                    c.tls.ca = optional_path(v)?;
                    Ok(())
                },
                write: |c| optional_path_toml(c.tls.ca.as_ref()),
            },
        ],
    },
];

#[cfg(test)]
mod tests;
