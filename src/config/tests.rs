//! Unit tests of the whole config: defaults, loading, diagnostics and `to_toml`, and that
//! `config/tine.toml` and the tine.toml(5) man page document every key.

use super::*;
use std::path::PathBuf;

const EXAMPLE: &str = include_str!("../../config/tine.toml");

fn parse(text: &str) -> Config {
    Config::from_toml_str("t.toml", text).unwrap_or_else(|d| panic!("{d}"))
}

/// Every diagnostic for `text`, which must not parse; the schema's tests use it too.
pub(super) fn errors(text: &str) -> Vec<String> {
    match Config::from_toml_str("t.toml", text) {
        Ok(config) => panic!("expected errors, got {config:?}"),
        Err(d) => d.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = Config::default();
    assert_eq!(
        c.server.bind,
        ["127.0.0.1:8000".parse::<BindAddr>().unwrap()]
    );
    assert_eq!(c.server.backlog, 2048);
    assert_eq!(c.server.workers, Workers::Auto);
    assert_eq!(c.server.threads.get(), 4);
    assert_eq!(c.server.max_connections.get(), 1000);
    assert_eq!(c.server.timeout, Duration::from_secs(30));
    assert_eq!(c.server.graceful_timeout, Duration::from_secs(30));
    assert_eq!(c.server.keepalive, Duration::from_secs(75));
    assert_eq!(c.limits.http.request_line, 8192);
    assert_eq!(c.limits.http.headers, 100);
    assert_eq!(c.limits.http.header_field_size, 8190);
    assert_eq!(c.limits.http.header_bytes, 65_536);
    assert_eq!(c.limits.http.body, 104_857_600);
    assert_eq!(c.limits.body_buffer, 1_048_576);
    assert_eq!(c.log.level, log::LevelFilter::Info);
    assert_eq!(c.app.handler, HandlerKind::Demo);
    assert_eq!(c.app.root, PathBuf::from("public"));
    assert_eq!(c.app.index, ["index.html"]);
    assert!(!c.app.listing && !c.app.follow_symlinks && !c.app.precompressed);
    assert!(!c.app.dotfiles);
    assert_eq!(c.app.cache_control, None);
    assert_eq!(c.server.boot_timeout, Duration::from_secs(120));
    assert_eq!(c.app.app, None);
    assert!(c.app.pythonpath.is_empty() && c.app.env.is_empty());
    assert_eq!(c.app.virtualenv, None);
    assert!(!c.app.preload);
    assert_eq!(c.app.script_name, "");
    assert_eq!(c.app.interface, Interface::Auto);
    assert_eq!(c.app.event_loop, EventLoop::Auto);
    assert_eq!(c.app.lifespan, Lifespan::Auto);
    assert_eq!(c.app.max_concurrency, 1000);
    assert_eq!(c.app.root_path, "");
}

#[test]
fn empty_and_partial_files_take_defaults() {
    assert_eq!(parse(""), Config::default());
    assert_eq!(parse("\n# only a comment\n\n"), Config::default());
    assert_eq!(
        parse("[server]\n[limits]\n[log]\n[app]\n"),
        Config::default()
    );
    let c = parse("[server]\nthreads = 8\n");
    let mut want = Config::default();
    want.server.threads = NonZeroUsize::new(8).unwrap();
    assert_eq!(c, want);
}

#[test]
fn every_value_form_is_read() {
    let c = parse(
        r#"
[server]
bind = ["0.0.0.0:80", "[::1]:8000", "unix:/run/tine.sock"]
backlog = 65535
workers = 16
threads = 1024
max_connections = 50_000
timeout = "1m30s"
graceful_timeout = "0s"
keepalive = "500ms"

[limits]
request_line = "4K"
headers = 0x20
header_field_size = 4000
header_bytes = "1MB"
body = 0

[log]
level = "trace"

[app]
handler = "demo"
"#,
    );
    let bind: Vec<BindAddr> = ["0.0.0.0:80", "[::1]:8000", "unix:/run/tine.sock"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(c.server.bind, bind);
    assert_eq!(c.server.backlog, 65535);
    assert_eq!(
        c.server.workers,
        Workers::Fixed(NonZeroUsize::new(16).unwrap())
    );
    assert_eq!(c.server.threads.get(), 1024);
    assert_eq!(c.server.max_connections.get(), 50_000);
    assert_eq!(c.server.timeout, Duration::from_secs(90));
    assert_eq!(c.server.graceful_timeout, Duration::ZERO);
    assert_eq!(c.server.keepalive, Duration::from_millis(500));
    assert_eq!(c.limits.http.request_line, 4096);
    assert_eq!(c.limits.http.headers, 32);
    assert_eq!(c.limits.http.header_field_size, 4000);
    assert_eq!(c.limits.http.header_bytes, 1_000_000);
    assert_eq!(c.limits.http.body, 0);
    assert_eq!(c.log.level, log::LevelFilter::Trace);
}

#[test]
fn alternative_spellings_are_read() {
    let c = parse(
        "server.bind = \"unix:tine.sock\"\nserver.workers = \"AUTO\"\nlog = { level = \"WARN\" }\n",
    );
    assert_eq!(c.server.bind, [BindAddr::Unix(PathBuf::from("tine.sock"))]);
    assert_eq!(c.server.workers, Workers::Auto);
    assert_eq!(c.log.level, log::LevelFilter::Warn);
}

#[test]
fn example_file_is_the_defaults_and_covers_every_key() {
    // But for the application: the file serves the bundled WSGI one.
    let mut expected = Config::default();
    expected.app.handler = HandlerKind::Python;
    expected.app.app = Some("hello:app".to_owned());
    expected.app.pythonpath = vec![PathBuf::from("examples/python")];
    assert_eq!(
        Config::from_toml_str("config/tine.toml", EXAMPLE),
        Ok(expected)
    );
    let doc = DeTable::parse(EXAMPLE).unwrap().into_inner();
    for key in KEYS {
        let (section, name) = key.split_once('.').unwrap();
        let table = doc.get(section).unwrap_or_else(|| panic!("no [{section}]"));
        assert!(
            table.get_ref().get(name).is_some(),
            "config/tine.toml does not set {key}"
        );
    }
}

#[test]
fn example_file_documents_each_key_in_schema_order() {
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    let mut section = "";
    let mut seen = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
        } else if let Some((key, _)) = line.split_once(" = ") {
            if !line.starts_with('#') {
                assert!(
                    i > 0 && lines[i - 1].starts_with('#'),
                    "{section}.{key} has no comment right above it"
                );
                seen.push(format!("{section}.{key}"));
            }
        }
    }
    assert_eq!(seen, KEYS);
}

const MAN_PAGE: &str = include_str!("../../man/tine.toml.5");

/// The keys a tine.toml(5) page documents, as "section.key": each is a `.TP` line followed
/// by `.B key`, under a `.SS [section]` heading. A key named anywhere else does not count.
fn man_page_keys(page: &str) -> Vec<String> {
    let mut section: Option<&str> = None;
    let mut keys = Vec::new();
    let mut lines = page.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(heading) = line.strip_prefix(".SS ") {
            section = heading
                .trim()
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'));
        } else if line.starts_with(".SH") {
            section = None;
        } else if line == ".TP" || line.starts_with(".TP ") {
            let name = lines.peek().and_then(|next| next.strip_prefix(".B "));
            if let (Some(section), Some(name)) = (section, name) {
                keys.push(format!("{section}.{}", name.trim()));
            }
        }
    }
    keys
}

#[test]
fn man_page_keys_are_found_only_in_their_entries() {
    let page = ".SH DESCRIPTION\n.TP\n.B threads\n.SS Values\n.TP\n.B bind\n\
                    .SH KEYS\n.SS [server]\n.TP\n.B threads\nThreads; see\n.B backlog\n\
                    .TP 8\n.B bind\n.SS [log]\n.TP\n.B level\n";
    assert_eq!(
        man_page_keys(page),
        ["server.threads", "server.bind", "log.level"]
    );
}

#[test]
fn man_page_documents_every_key_and_no_other() {
    let documented = man_page_keys(MAN_PAGE);
    for key in KEYS {
        let (section, name) = key.split_once('.').unwrap();
        assert!(
            documented.iter().any(|d| d == key),
            "man/tine.toml.5 does not document {key}: add `.TP` then `.B {name}` under \
                 `.SS [{section}]`, with its type, default, range and what a reload does"
        );
    }
    for key in &documented {
        assert!(
            KEYS.contains(&key.as_str()),
            "man/tine.toml.5 documents {key}, which is not in KEYS"
        );
    }
}

#[test]
fn to_toml_round_trips() {
    let default = Config::default();
    assert_eq!(parse(&default.to_toml(None)), default);

    let mut custom = Config::default();
    custom.server.bind = vec![
        "[::]:443".parse().unwrap(),
        "10.0.0.1:8080".parse().unwrap(),
        BindAddr::Unix(PathBuf::from("/tmp/a \"quoted\" \\ path.sock")),
    ];
    custom.server.backlog = 1;
    custom.server.workers = Workers::Fixed(NonZeroUsize::new(3).unwrap());
    custom.server.threads = NonZeroUsize::new(1).unwrap();
    custom.server.max_connections = NonZeroUsize::new(123_456).unwrap();
    custom.server.timeout = Duration::from_millis(1_500);
    custom.server.graceful_timeout = Duration::ZERO;
    custom.server.keepalive = Duration::from_secs(7200);
    custom.limits.http.request_line = 1;
    custom.limits.http.headers = 1;
    custom.limits.http.header_field_size = 1 << 20;
    custom.limits.http.header_bytes = 3 << 30;
    custom.limits.http.body = u64::MAX;
    custom.log.level = log::LevelFilter::Off;
    let text = custom.to_toml(Some((9, "ignored because workers is fixed")));
    assert!(!text.contains("# auto:"), "{text}");
    assert_eq!(parse(&text), custom);
}

#[test]
fn to_toml_writes_every_key_in_layout() {
    let text = Config::default().to_toml(None);
    let doc = DeTable::parse(&text).unwrap().into_inner();
    for key in KEYS {
        let (section, name) = key.split_once('.').unwrap();
        assert!(
            doc[section].get_ref().get(name).is_some(),
            "{key} missing:\n{text}"
        );
    }
    assert!(text.contains("\n[server]\n"));
    assert!(text.contains("\nworkers = \"auto\"\n"), "{text}");
    assert!(text.contains("\nbind = [\"127.0.0.1:8000\"]\n"), "{text}");
    assert!(text.contains("\nheader_bytes = \"64KiB\"\n"), "{text}");
    assert!(text.contains("\nheader_field_size = 8190\n"), "{text}");
    assert!(text.contains("\nkeepalive = \"75s\"\n"), "{text}");
    assert!(text.contains("\nlevel = \"info\"\n"), "{text}");
    assert!(
        text.contains("\n# Worker processes: \"auto\" or 1-1024. Default: \"auto\".\n"),
        "{text}"
    );
}

#[test]
fn to_toml_shows_resolved_workers() {
    let text = Config::default().to_toml(Some((6, "6 CPUs available\nto this process")));
    assert!(
        text.contains("\n# auto: 6 CPUs available to this process\nworkers = 6\n"),
        "{text}"
    );
    let reread = parse(&text);
    assert_eq!(
        reread.server.workers,
        Workers::Fixed(NonZeroUsize::new(6).unwrap())
    );
}

#[test]
fn workers_from_str() {
    assert_eq!("auto".parse::<Workers>(), Ok(Workers::Auto));
    assert_eq!(
        "1024".parse::<Workers>(),
        Ok(Workers::Fixed(NonZeroUsize::new(1024).unwrap()))
    );
    for bad in ["0", "1025", "-1", "four", ""] {
        let err = bad.parse::<Workers>().unwrap_err();
        assert!(
            err.ends_with("expected \"auto\" or a positive integer up to 1024"),
            "{err}"
        );
    }
    assert_eq!(Workers::Auto.to_string(), "auto");
    assert_eq!(
        Workers::Fixed(NonZeroUsize::new(5).unwrap()).to_string(),
        "5"
    );
}

#[test]
fn handler_names() {
    assert_eq!(HandlerKind::Demo.to_string(), "demo");
    assert_eq!("demo".parse::<HandlerKind>(), Ok(HandlerKind::Demo));
    assert_eq!("static".parse::<HandlerKind>(), Ok(HandlerKind::Static));
    assert_eq!("python".parse::<HandlerKind>(), Ok(HandlerKind::Python));
    assert_eq!(HandlerKind::Python.to_string(), "python");
    assert_eq!(
        "flask".parse::<HandlerKind>(),
        Err(
            "unknown handler \"flask\": expected one of \"demo\", \"static\", \"python\""
                .to_owned()
        )
    );
}

#[test]
fn interface_loop_and_lifespan_names() {
    assert_eq!("wsgi".parse::<Interface>(), Ok(Interface::Wsgi));
    assert_eq!("asgi3".parse::<Interface>(), Ok(Interface::Asgi));
    assert_eq!(Interface::Asgi.to_string(), "asgi");
    assert_eq!("uvloop".parse::<EventLoop>(), Ok(EventLoop::Uvloop));
    assert_eq!(EventLoop::Asyncio.to_string(), "asyncio");
    assert_eq!("off".parse::<Lifespan>(), Ok(Lifespan::Off));
    assert_eq!(Lifespan::On.to_string(), "on");
    assert_eq!(
        "trio".parse::<EventLoop>(),
        Err("unknown value \"trio\": expected one of \"auto\", \"asyncio\", \"uvloop\"".to_owned())
    );
    assert!(
        "asgi2"
            .parse::<Interface>()
            .unwrap_err()
            .contains("asgiref.compatibility.guarantee_single_callable")
    );
    // Every value reads back from its own name.
    for i in Interface::ALL {
        assert_eq!(i.to_string().parse::<Interface>(), Ok(*i));
    }
    for l in EventLoop::ALL {
        assert_eq!(l.to_string().parse::<EventLoop>(), Ok(*l));
    }
    for l in Lifespan::ALL {
        assert_eq!(l.to_string().parse::<Lifespan>(), Ok(*l));
    }
}

#[test]
fn asgi_keys_are_read_and_written_back() {
    let c = parse(
        "[app]\nhandler = \"python\"\napp = \"main:app\"\ninterface = \"asgi\"\n\
         root_path = \"/api\"\nloop = \"asyncio\"\nlifespan = \"off\"\nmax_concurrency = 50\n",
    );
    assert_eq!(c.app.handler, HandlerKind::Python);
    assert_eq!(c.app.interface, Interface::Asgi);
    assert_eq!(c.app.root_path, "/api");
    assert_eq!(c.app.event_loop, EventLoop::Asyncio);
    assert_eq!(c.app.lifespan, Lifespan::Off);
    assert_eq!(c.app.max_concurrency, 50);
    let text = c.to_toml(None);
    for line in [
        "handler = \"python\"",
        "interface = \"asgi\"",
        "root_path = \"/api\"",
        "loop = \"asyncio\"",
        "lifespan = \"off\"",
        "max_concurrency = 50",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line}:\n{text}");
    }
    assert_eq!(parse(&text), c);
    // uvicorn's spelling of ASGI 3, and the limits of max_concurrency.
    let c = parse("[app]\ninterface = \"asgi3\"\nmax_concurrency = 100000\nlifespan = \"on\"\n");
    assert_eq!(c.app.interface, Interface::Asgi);
    assert_eq!(c.app.max_concurrency, MAX_CONCURRENCY);
    assert_eq!(c.app.lifespan, Lifespan::On);
    assert_eq!(parse("[app]\nmax_concurrency = 1\n").app.max_concurrency, 1);
}

#[test]
fn asgi_key_errors() {
    assert_eq!(
        errors(
            "[app]\ninterface = \"asgi2\"\nloop = \"trio\"\nlifespan = true\n\
             max_concurrency = 0\nroot_path = \"api/\"\n"
        ),
        [
            "t.toml:2:13: app.interface: ASGI 2 applications are not supported: wrap the \
             application with asgiref.compatibility.guarantee_single_callable to make it ASGI 3",
            "t.toml:3:8: app.loop: expected one of \"auto\", \"asyncio\", \"uvloop\", found \"trio\"",
            "t.toml:4:12: app.lifespan: expected one of \"auto\", \"on\", \"off\", found true",
            "t.toml:5:19: app.max_concurrency: expected a positive integer up to 100000, found 0",
            "t.toml:6:13: app.root_path: expected \"\" or a path that starts with \"/\" and \
             does not end with one, like \"/app\", found \"api/\"",
        ]
    );
    assert_eq!(
        errors("[app]\ninterface = \"ASGI\"\nmax_concurrency = 100001\nroot_path = \"/\"\n"),
        [
            "t.toml:2:13: app.interface: expected one of \"auto\", \"wsgi\", \"asgi\", found \"ASGI\"",
            "t.toml:3:19: app.max_concurrency: expected a positive integer up to 100000, found 100001",
            "t.toml:4:13: app.root_path: expected \"\" or a path that starts with \"/\" and \
             does not end with one, like \"/app\", found \"/\"",
        ]
    );
    assert_eq!(
        errors("[app]\nmax_concurrency = \"5\"\n"),
        [
            "t.toml:2:19: app.max_concurrency: expected a positive integer, found \"5\" \
          (write numbers without quotes)"
        ]
    );
}

#[test]
fn the_old_handler_names_are_the_python_handler_with_their_interface() {
    for (handler, interface) in [("wsgi", Interface::Wsgi), ("asgi", Interface::Asgi)] {
        // Whichever key comes first, and with interface = "auto" or its own name.
        for text in [
            format!("[app]\nhandler = \"{handler}\"\napp = \"a:b\"\n"),
            format!("[app]\ninterface = \"auto\"\nhandler = \"{handler}\"\napp = \"a:b\"\n"),
            format!("[app]\nhandler = \"{handler}\"\ninterface = \"auto\"\napp = \"a:b\"\n"),
            format!("[app]\nhandler = \"{handler}\"\ninterface = \"{handler}\"\napp = \"a:b\"\n"),
        ] {
            let c = parse(&text);
            assert_eq!(
                (c.app.handler, c.app.interface),
                (HandlerKind::Python, interface),
                "{text}"
            );
            // Written back as the Python handler and its interface.
            let printed = c.to_toml(None);
            assert!(printed.contains("\nhandler = \"python\"\n"), "{printed}");
            assert!(
                printed.contains(&format!("\ninterface = \"{handler}\"\n")),
                "{printed}"
            );
            assert_eq!(parse(&printed), c);
        }
    }
}

#[test]
fn an_old_handler_name_and_another_interface_conflict_at_the_interface() {
    assert_eq!(
        errors("[app]\nhandler = \"wsgi\"\napp = \"a:b\"\ninterface = \"asgi\"\n"),
        [
            "t.toml:4:13: app.interface: interface = \"asgi\" contradicts handler = \"wsgi\", \
          which means the wsgi interface; write handler = \"python\" with the interface wanted"
        ]
    );
    // The other way round, the interface first, and in uvicorn's spelling.
    assert_eq!(
        errors("[app]\ninterface = \"asgi3\"\nhandler = \"wsgi\"\napp = \"a:b\"\n"),
        [
            "t.toml:2:13: app.interface: interface = \"asgi\" contradicts handler = \"wsgi\", \
          which means the wsgi interface; write handler = \"python\" with the interface wanted"
        ]
    );
    assert_eq!(
        errors("app.handler = \"asgi\"\napp.app = \"a:b\"\napp.interface = \"wsgi\"\n"),
        [
            "t.toml:3:17: app.interface: interface = \"wsgi\" contradicts handler = \"asgi\", \
          which means the asgi interface; write handler = \"python\" with the interface wanted"
        ]
    );
    // The command line's --interface overrides the file's handler name without a conflict.
    let c = Config::from_toml_str_with(
        "t.toml",
        "[app]\nhandler = \"wsgi\"\napp = \"a:b\"\n",
        |c| {
            c.app.interface = Interface::Asgi;
        },
    )
    .unwrap();
    assert_eq!(c.app.interface, Interface::Asgi);
}

#[test]
fn static_keys_are_read_and_written_back() {
    let c = parse(
        "[app]\nhandler = \"static\"\nroot = \"/srv/www\"\nindex = [\"index.htm\", \"default.html\"]\n\
             listing = true\nfollow_symlinks = true\ncache_control = \"public, max-age=3600\"\n\
             precompressed = true\ndotfiles = true\n",
    );
    assert_eq!(c.app.handler, HandlerKind::Static);
    assert!(c.app.dotfiles);
    assert_eq!(c.app.root, PathBuf::from("/srv/www"));
    assert_eq!(c.app.index, ["index.htm", "default.html"]);
    assert!(c.app.listing && c.app.follow_symlinks && c.app.precompressed);
    assert_eq!(c.app.cache_control.as_deref(), Some("public, max-age=3600"));
    assert_eq!(parse(&c.to_toml(None)), c);
    let none = parse("[app]\nindex = []\ncache_control = \"\"\n");
    assert!(none.app.index.is_empty());
    assert_eq!(none.app.cache_control, None);
}

#[test]
fn wsgi_keys_are_read_and_written_back() {
    let c = parse(
        "[server]\nboot_timeout = \"5m\"\n[app]\nhandler = \"wsgi\"\n\
             app = 'app:create_app(\"prod\", debug=False)'\npythonpath = [\"src\", \"/opt/lib\"]\n\
             virtualenv = \"/srv/venv\"\npreload = true\nscript_name = \"/app\"\n\
             env = { ZED = \"1\", DJANGO_SETTINGS_MODULE = \"site.settings\", \"odd name\" = \"a \\\"b\\\"\" }\n",
    );
    assert_eq!(c.server.boot_timeout, Duration::from_secs(300));
    assert_eq!(c.app.handler, HandlerKind::Python);
    assert_eq!(
        c.app.app.as_deref(),
        Some("app:create_app(\"prod\", debug=False)")
    );
    assert_eq!(
        c.app.pythonpath,
        [PathBuf::from("src"), PathBuf::from("/opt/lib")]
    );
    assert_eq!(c.app.virtualenv, Some(PathBuf::from("/srv/venv")));
    assert!(c.app.preload);
    assert_eq!(c.app.script_name, "/app");
    assert_eq!(
        c.app.env_strs(),
        [
            ("ZED", "1"),
            ("DJANGO_SETTINGS_MODULE", "site.settings"),
            ("odd name", "a \"b\"")
        ]
    );
    let text = c.to_toml(None);
    assert!(
        text.contains(
            "\nenv = { ZED = \"1\", DJANGO_SETTINGS_MODULE = \"site.settings\", \
                 \"odd name\" = \"a \\\"b\\\"\" }\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("\npythonpath = [\"src\", \"/opt/lib\"]\n"),
        "{text}"
    );
    assert_eq!(parse(&text), c);
}

#[test]
fn env_as_a_section_keeps_the_file_order() {
    let c = parse("[app.env]\nB = \"2\"\nA = \"1\"\nC = \"\"\n");
    assert_eq!(c.app.env_strs(), [("B", "2"), ("A", "1"), ("C", "")]);
    assert!(
        c.to_toml(None)
            .contains("\nenv = { B = \"2\", A = \"1\", C = \"\" }\n")
    );
}

#[test]
fn wsgi_key_errors() {
    assert_eq!(
        errors(
            "[server]\nboot_timeout = \"0s\"\n[app]\napp = \"1a:b\"\n\
                 pythonpath = [\"src\", \"\", 3]\nvirtualenv = 1\npreload = \"yes\"\n\
                 script_name = \"app/\"\n"
        ),
        [
            "t.toml:2:16: server.boot_timeout: expected a duration greater than zero, found \"0s\"",
            "t.toml:4:7: app.app: invalid application \"1a:b\": the module before \":\", \
                 \"1a\", is not a Python name or dotted path of names",
            "t.toml:5:22: app.pythonpath: expected a directory path, found \"\"",
            "t.toml:5:26: app.pythonpath: expected a directory path, found 3",
            "t.toml:6:14: app.virtualenv: expected a string (\"\" for none), found 1",
            "t.toml:7:11: app.preload: expected true or false, found \"yes\"",
            "t.toml:8:15: app.script_name: expected \"\" or a path that starts with \"/\" and \
                 does not end with one, like \"/app\", found \"app/\"",
        ]
    );
    assert_eq!(
        errors("[app]\npythonpath = \"src\"\nscript_name = \"/\"\n"),
        [
            "t.toml:2:14: app.pythonpath: expected a list of directories, like [\"src\"], \
                 found \"src\"",
            "t.toml:3:15: app.script_name: expected \"\" or a path that starts with \"/\" \
                 and does not end with one, like \"/app\", found \"/\"",
        ]
    );
}

#[test]
fn each_bad_env_entry_is_reported_where_it_is() {
    assert_eq!(
        errors(
            "[app]\nenv = { \"\" = \"x\", \"A=B\" = \"y\", OK = \"z\", N = 1, V = \"a\\u0000b\" }\n"
        ),
        [
            "t.toml:2:9: app.env: an environment variable name must not be empty",
            "t.toml:2:19: app.env: environment variable name \"A=B\" must not contain \"=\" \
                 or a NUL character",
            "t.toml:2:46: app.env: expected a string, found 1",
            "t.toml:2:53: app.env: must not contain a NUL character",
        ]
    );
    assert_eq!(
        errors("[app]\nenv = [\"A=1\"]\n"),
        ["t.toml:2:7: app.env: expected a table of strings, like \
                 { DJANGO_SETTINGS_MODULE = \"site.settings\" }, found [\"A=1\"]"]
    );
}

#[test]
fn python_without_app_is_reported_at_the_handler_as_spelled() {
    for (handler, kind) in [("python", "Python"), ("asgi", "ASGI"), ("wsgi", "WSGI")] {
        assert_eq!(
            errors(&format!(
                "[app]\nhandler = \"{handler}\"\ninterface = \"auto\"\n"
            )),
            [format!(
                "t.toml:2:11: app.handler: \"{handler}\" needs app = \"module:callable\" \
                 (the {kind} application to serve)"
            )]
        );
    }
}

#[test]
fn wsgi_without_app_is_reported_at_the_handler() {
    let want = "app.handler: \"wsgi\" needs app = \"module:callable\" (the WSGI application \
                    to serve)";
    assert_eq!(
        errors("[app]\nhandler = \"wsgi\"\n"),
        [format!("t.toml:2:11: {want}")]
    );
    assert_eq!(
        errors("app.app = \"\"\napp.handler = \"wsgi\"\n"),
        [format!("t.toml:2:15: {want}")]
    );
    // A bad app is reported on its own, not as missing as well.
    assert_eq!(
        errors("[app]\nhandler = \"wsgi\"\napp = \"a:b(\"\n"),
        [
            "t.toml:3:7: app.app: invalid application \"a:b(\": the argument list is not \
              closed with \")\""
        ]
    );
    // The command line's overrides count: they can name the application.
    let c = Config::from_toml_str_with("t.toml", "[app]\nhandler = \"wsgi\"\n", |c| {
        c.app.app = Some("pkg.wsgi:application".to_owned());
    })
    .unwrap();
    assert_eq!(c.app.app.as_deref(), Some("pkg.wsgi:application"));
    // Another handler does not use app, and does not need it.
    assert_eq!(
        parse("[app]\napp = \"a:b\"\n").app.handler,
        HandlerKind::Demo
    );
}

#[test]
fn the_bundled_static_config_is_valid_and_serves_public() {
    let text = include_str!("../../config/static.toml");
    let c = parse(text);
    assert_eq!(c.app.handler, HandlerKind::Static);
    assert_eq!(c.app.root, PathBuf::from("public"));
}

#[test]
fn static_key_errors() {
    assert_eq!(
        errors("[app]\nroot = \"\"\nlisting = \"yes\"\nindex = [\"ok\", \"../up\", 3]\n"),
        [
            "t.toml:2:8: app.root: expected a directory path, found \"\"",
            "t.toml:3:11: app.listing: expected true or false, found \"yes\"",
            "t.toml:4:16: app.index: expected a plain file name (no \"/\", not \".\" or \"..\"), found \"../up\"",
            "t.toml:4:25: app.index: expected a file name string, found 3",
        ]
    );
    assert_eq!(
        errors("[app]\ncache_control = \"a\\nb\"\nindex = \"index.html\"\n"),
        [
            "t.toml:2:17: app.cache_control: must not contain control characters",
            "t.toml:3:9: app.index: expected a list of file names, like [\"index.html\"], found \"index.html\"",
        ]
    );
}

#[test]
fn syntax_error_is_one_diagnostic_with_toml_message() {
    assert_eq!(
        errors("[server]\nthreads = \"four\nworkers = 2\n"),
        ["t.toml:2:16: invalid basic string, expected `\"`"]
    );
    assert_eq!(
        errors("[server]\nbody = 100MiB\n"),
        ["t.toml:2:8: string values must be quoted, expected literal string"]
    );
}

#[test]
fn several_syntax_errors_are_all_reported_without_value_errors() {
    // threads = "x" is wrong too, but with the structure in doubt only syntax is reported.
    assert_eq!(
        errors("[server]\nthreads = \"x\"\nworkers = 1\nworkers = 2\n[server]\n"),
        [
            "t.toml:4:1: duplicate key \"workers\"",
            "t.toml:5:2: duplicate key \"server\"",
        ]
    );
}

#[test]
fn load_reads_files_and_names_them() {
    let dir = std::env::temp_dir().join(format!("tine-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let good = dir.join("good.toml");
    std::fs::write(&good, "[server]\nthreads = 2\n").unwrap();
    assert_eq!(Config::load(&good).unwrap().server.threads.get(), 2);

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[server]\nthreads = 0\n").unwrap();
    let err = Config::load(&bad).unwrap_err();
    assert!(matches!(err, LoadError::Invalid(_)));
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2:11: server.threads: expected a positive integer up to 1024, found 0",
            bad.display()
        )
    );

    let binary = dir.join("binary.toml");
    std::fs::write(&binary, b"[server]\nthreads = \"\xff\"\n").unwrap();
    assert_eq!(
        Config::load(&binary).unwrap_err().to_string(),
        format!(
            "{}:2:12: the file is not valid UTF-8, which TOML requires",
            binary.display()
        )
    );

    let missing = dir.join("missing.toml");
    let err = Config::load(&missing).unwrap_err();
    assert!(matches!(&err, LoadError::Read { path, .. } if *path == missing));
    assert_eq!(
        err.to_string(),
        format!(
            "could not read {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn body_budgets_are_derived_unless_set() {
    let c = Config::default();
    assert_eq!(c.limits.body_memory(), 16 << 20, "16 x body_buffer");
    assert_eq!(c.limits.body_disk(), 400 << 20, "4 x body");
    let c = parse("[limits]\nbody = \"8MiB\"\nbody_buffer = \"256KiB\"\n");
    assert_eq!(c.limits.body_memory(), 4 << 20);
    assert_eq!(c.limits.body_disk(), 32 << 20);
    let c = parse("[limits]\nbody_memory = \"2MiB\"\nbody_disk = \"AUTO\"\n");
    assert_eq!(c.limits.body_memory, Some(2 << 20));
    assert_eq!(c.limits.body_disk, None);
    assert_eq!(c.limits.body_memory(), 2 << 20);
    assert!(c.to_toml(None).contains("body_memory = \"2MiB\"\n"));
}

#[test]
fn body_budgets_refuse_zero_and_less_than_one_body() {
    assert!(errors("[limits]\nbody_memory = 0\n")[0].contains("greater than zero"));
    let found = errors("[limits]\nbody_buffer = \"1MiB\"\nbody_memory = \"512KiB\"\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(
            "t.toml:3:15: limits.body_memory: body_memory (512KiB) is less than body_buffer (1MiB)"
        ),
        "{found:?}"
    );
    let found = errors("[limits]\nbody_disk = \"10MiB\"\n");
    assert!(
        found[0].contains("body_disk (10MiB) is less than body (100MiB)"),
        "{found:?}"
    );
}

#[test]
fn websocket_keys_are_read_written_back_and_checked() {
    let c = parse(
        "[websocket]\nmax_message = \"16MiB\"\nping_interval = \"0s\"\nping_timeout = \"5s\"\n\
         on_stop = \"close\"\n",
    );
    assert_eq!(c.websocket.max_message, 16 << 20);
    assert_eq!(c.websocket.ping_interval, Duration::ZERO);
    assert_eq!(c.websocket.ping_timeout, Duration::from_secs(5));
    assert_eq!(c.websocket.on_stop, crate::config::OnStop::Close);
    assert_eq!(parse(&c.to_toml(None)), c);
    assert_eq!(parse("").websocket, crate::config::WebSocket::default());
    assert_eq!(
        errors("[websocket]\nmax_message = 0\nping_timeout = \"0s\"\non_stop = \"never\"\n"),
        [
            "t.toml:2:15: websocket.max_message: expected a size greater than zero, found 0",
            "t.toml:3:16: websocket.ping_timeout: expected a duration greater than zero, found \"0s\"",
            "t.toml:4:11: websocket.on_stop: expected one of \"wait\", \"close\", found \"never\"",
        ]
    );
}

#[test]
fn queue_wait_warning_keys_are_read_written_back_and_checked() {
    let defaults = Config::default();
    assert_eq!(
        defaults.server.queue_wait_warning,
        Duration::from_millis(100)
    );
    assert_eq!(
        defaults.server.queue_wait_warning_after,
        Duration::from_secs(30)
    );
    let c = parse("[server]\nqueue_wait_warning = \"250ms\"\nqueue_wait_warning_after = \"1m\"\n");
    assert_eq!(c.server.queue_wait_warning, Duration::from_millis(250));
    assert_eq!(c.server.queue_wait_warning_after, Duration::from_secs(60));
    assert_eq!(parse(&c.to_toml(None)), c);
    let off = parse("[server]\nqueue_wait_warning = \"0s\"\nqueue_wait_warning_after = \"0s\"\n");
    assert!(
        off.server.queue_wait_warning.is_zero() && off.server.queue_wait_warning_after.is_zero()
    );
    assert_eq!(
        errors("[server]\nqueue_wait_warning = 100\nqueue_wait_warning_after = \"soon\"\n"),
        [
            "t.toml:2:22: server.queue_wait_warning: expected a duration with a unit like \"30s\" \
             or \"500ms\", found 100",
            "t.toml:3:28: server.queue_wait_warning_after: invalid duration \"soon\": expected \
             whole numbers each followed by a unit (ms, s, m or h), like \"30s\", \"500ms\" or \
             \"1m30s\"",
        ]
    );
}

#[test]
fn tls_cert_and_key_go_together_and_ca_needs_them() {
    assert_eq!(Config::default().tls, Tls::default());
    let c = parse("[tls]\ncert = \"/etc/c.pem\"\nkey = \"k.pem\"\nca = \"ca.pem\"\n");
    assert_eq!(c.tls.cert, Some(PathBuf::from("/etc/c.pem")));
    assert_eq!(c.tls.key, Some(PathBuf::from("k.pem")));
    assert_eq!(c.tls.ca, Some(PathBuf::from("ca.pem")));
    assert_eq!(parse(&c.to_toml(None)), c);
    let both = "set both (the certificate chain and its private key), or neither to serve \
                plain HTTP";
    assert_eq!(
        errors("[tls]\ncert = \"c.pem\"\n"),
        [format!(
            "t.toml:2:8: tls.cert: tls.cert is set but tls.key is not: {both}"
        )]
    );
    assert_eq!(
        errors("[tls]\nkey = \"k.pem\"\n"),
        [format!(
            "t.toml:2:7: tls.key: tls.key is set but tls.cert is not: {both}"
        )]
    );
    assert_eq!(
        errors("[tls]\nca = \"ca.pem\"\n"),
        [
            "t.toml:2:6: tls.ca: tls.ca verifies client certificates, which needs TLS: set \
          tls.cert and tls.key too"
        ]
    );
    assert_eq!(
        errors("[tls]\ncert = 1\n"),
        ["t.toml:2:8: tls.cert: expected a string (\"\" for none), found 1"]
    );
}

#[test]
fn tls_files_are_taken_from_chdir_as_the_master_reads_them() {
    let tls = Tls {
        cert: Some(PathBuf::from("certs/fullchain.pem")),
        key: Some(PathBuf::from("/etc/tine/key.pem")),
        ca: None,
    };
    let moved = tls.from_dir(Some(std::path::Path::new("/srv/app")));
    assert_eq!(
        moved.cert,
        Some(PathBuf::from("/srv/app/certs/fullchain.pem"))
    );
    assert_eq!(moved.key, Some(PathBuf::from("/etc/tine/key.pem")));
    assert_eq!(moved.ca, None);
    assert_eq!(tls.from_dir(None), tls);
}
