//! Unit tests of the schema through `Config::from_toml_str` and `Config::set`: what each key
//! accepts, every diagnostic and where it points, and how values are written back.

use std::path::PathBuf;
use std::time::Duration;

use toml::de::DeTable;

use super::*;
use crate::config::KEYS;
use crate::config::tests::errors;

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
    let threads =
        "[server]\nbind = \"127.0.0.1:8000\"\nbacklog = 2048\n\n\n# four?\nthreads = \"four\"\n";
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
                 [server], [limits], [log], [metrics], [app], [websocket], [tls]",
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
        errors("[proxy]\ncert = \"x\"\n[[route]]\n"),
        [
            "t.toml:1:2: unknown section [proxy]; sections are [server], [limits], [log], [metrics], [app], [websocket], [tls]",
            "t.toml:3:3: unknown section [route]; sections are [server], [limits], [log], [metrics], [app], [websocket], [tls]",
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
            "app.handler: expected one of \"demo\", \"static\", \"python\" (\"wsgi\" and \"asgi\" are \"python\" with that interface), found true",
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
    assert_eq!(c.limits.http.body, 0);
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
            "t.toml:2:36: server.bind: expected an address string like \"127.0.0.1:8000\", or a \
                 table like { address = \"0.0.0.0:8001\", proxy_protocol = true }, found 80",
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
fn bind_entries_may_be_tables_that_turn_on_the_proxy_protocol() {
    let text = "[server]\nbind = [\"127.0.0.1:8000\", { address = \"0.0.0.0:8001\", \
                proxy_protocol = true }, { address = \"[::1]:8002\", proxy_protocol = false }]\n";
    let config = Config::from_toml_str("t.toml", text).unwrap();
    let addrs: Vec<String> = config.server.bind.iter().map(ToString::to_string).collect();
    assert_eq!(addrs, ["127.0.0.1:8000", "0.0.0.0:8001", "[::1]:8002"]);
    assert_eq!(
        config.server.proxy_protocol,
        ["0.0.0.0:8001".parse::<crate::config::BindAddr>().unwrap()]
    );
    let written = config.to_toml(None);
    assert!(
        written.contains(
            "\nbind = [\"127.0.0.1:8000\", { address = \"0.0.0.0:8001\", proxy_protocol = true }, \
             \"[::1]:8002\"]\n"
        ),
        "{written}"
    );
    assert_eq!(Config::from_toml_str("t.toml", &written).unwrap(), config);
    let single = "[server]\nbind = { address = \"127.0.0.1:9\", proxy_protocol = true }\n";
    let config = Config::from_toml_str("t.toml", single).unwrap();
    assert_eq!(config.server.proxy_protocol, config.server.bind);
}

#[test]
fn bad_bind_tables_say_what_a_table_takes() {
    assert_eq!(
        errors(
            "[server]\nbind = [{ address = \"127.0.0.1:1\", proxy = true }, { proxy_protocol = true }, \
             { address = \"127.0.0.1:2\", proxy_protocol = \"yes\" }, \
             { address = \"unix:/run/t.sock\", proxy_protocol = true }, 8]\n"
        ),
        [
            "t.toml:2:36: server.bind: unknown key \"proxy\" in a bind entry; a bind entry \
             accepts address, proxy_protocol",
            "t.toml:2:52: server.bind: a bind entry written as a table needs its address, like \
             { address = \"0.0.0.0:8001\", proxy_protocol = true }",
            "t.toml:2:123: server.bind: expected true or false, found \"yes\"",
            "t.toml:2:144: server.bind: proxy_protocol on \"unix:/run/t.sock\": a PROXY header is \
             believed only from a peer in forwarded_allow_ips, and a unix socket's peer has no \
             address; listen on TCP for the balancer, or leave proxy_protocol off",
            "t.toml:2:189: server.bind: expected an address string like \"127.0.0.1:8000\", or \
             a table like { address = \"0.0.0.0:8001\", proxy_protocol = true }, found 8",
        ]
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
        got[0].starts_with("t.toml:2:9: server.bind: invalid address \"0.0.0.0\": missing port")
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

#[test]
fn forwarded_header_names_the_proxy_header() {
    use crate::forwarded::ForwardedHeader;
    let config = Config::from_toml_str("t.toml", "[server]\nforwarded_header = \"Forwarded\"\n")
        .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(config.server.forwarded_header, ForwardedHeader::Forwarded);
    assert!(
        config
            .to_toml(None)
            .contains("\nforwarded_header = \"forwarded\"\n")
    );
    assert_eq!(
        Config::default().server.forwarded_header,
        ForwardedHeader::XForwardedFor
    );
    assert_eq!(
        errors("[server]\nforwarded_header = \"x-real-ip\"\n"),
        [
            "t.toml:2:20: server.forwarded_header: unknown header \"x-real-ip\": expected \
          \"x-forwarded-for\" or \"forwarded\""
        ]
    );
    assert_eq!(
        errors("[server]\nforwarded_header = 1\n"),
        [
            "t.toml:2:20: server.forwarded_header: expected \"x-forwarded-for\" or \
          \"forwarded\", found 1"
        ]
    );
}
