//! Unit tests of the command line: every flag, mode and usage error, and that `--help`, the
//! README and the man page document every flag.

use super::*;
use crate::config::{EventLoop, Interface, Lifespan};
use std::time::Duration;

fn parse_strs(args: &[&str]) -> Result<Command, UsageError> {
    parse(args.iter().map(OsString::from))
}

#[test]
fn no_arguments_serves_with_defaults() {
    let command = parse_strs(&[]).unwrap();
    assert_eq!(command.mode, Mode::Serve);
    assert_eq!(command.config, None);
    assert_eq!(command.overrides, Overrides::default());
}

#[test]
fn every_flag_in_both_spellings() {
    let command = parse_strs(&[
        "-c",
        "a.toml",
        "--bind",
        "127.0.0.1:9000",
        "--bind=unix:/tmp/t.sock",
        "--workers=3",
        "-t",
        "8",
    ])
    .unwrap();
    assert_eq!(command.config, Some(PathBuf::from("a.toml")));
    assert_eq!(
        command.overrides.bind,
        vec![
            BindAddr::Tcp("127.0.0.1:9000".parse().unwrap()),
            BindAddr::Unix(PathBuf::from("/tmp/t.sock"))
        ]
    );
    assert_eq!(
        command.overrides.workers,
        Some(Workers::Fixed(NonZeroUsize::new(3).unwrap()))
    );
    assert_eq!(command.overrides.threads, NonZeroUsize::new(8));
    let auto = parse_strs(&["--workers", "auto", "--config=b.toml"]).unwrap();
    assert_eq!(auto.overrides.workers, Some(Workers::Auto));
    assert_eq!(auto.config, Some(PathBuf::from("b.toml")));
}

/// The default config with the command line `args` applied.
fn config_from(args: &[&str]) -> Config {
    let command = parse_strs(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut config = Config::default();
    command.overrides.apply(&mut config);
    config
}

fn usage_error(args: &[&str]) -> String {
    match parse_strs(args) {
        Ok(command) => panic!("{args:?} parsed: {command:?}"),
        Err(err) => err.0,
    }
}

#[test]
fn the_app_argument_serves_wsgi() {
    for spec in [
        "myproject.wsgi:application",
        "app:create_app()",
        "app:create_app(\"prod\", debug=False)",
    ] {
        let config = config_from(&[spec]);
        assert_eq!(config.app.handler, HandlerKind::Python);
        assert_eq!(config.app.app.as_deref(), Some(spec));
    }
    let command = parse_strs(&["-w", "4", "-t", "2", "-b", "0.0.0.0:8000", "app:app"]).unwrap();
    assert_eq!(command.mode, Mode::Serve);
    assert_eq!(command.overrides.app.as_deref(), Some("app:app"));
    let config = config_from(&["-w", "4", "-t", "2", "-b", "0.0.0.0:8000", "app:app"]);
    assert_eq!(
        config.server.workers,
        Workers::Fixed(NonZeroUsize::new(4).unwrap())
    );
    assert_eq!(config.server.threads.get(), 2);
    assert_eq!(config.server.bind, ["0.0.0.0:8000".parse().unwrap()]);
    // Anywhere among the options, and with a mode.
    let command = parse_strs(&["--check-config", "pkg.wsgi:app", "-c", "t.toml"]).unwrap();
    assert_eq!(command.mode, Mode::CheckConfig);
    assert_eq!(command.overrides.app.as_deref(), Some("pkg.wsgi:app"));
}

#[test]
fn a_bad_or_second_app_is_a_usage_error() {
    assert_eq!(
        usage_error(&["app"]),
        "invalid application \"app\": expected \"module:callable\" or \
             \"module:factory(args)\", like \"myproject.wsgi:application\""
    );
    assert_eq!(
        usage_error(&["a:b()x"]),
        "invalid application \"a:b()x\": \"x\" follows the argument list; it must end the spec"
    );
    assert_eq!(
        usage_error(&["a:app", "b:app"]),
        "one application at a time: \"a:app\" and \"b:app\" were both given"
    );
}

#[test]
fn every_key_flag_sets_its_key() {
    let c = config_from(&[
        "--timeout",
        "90",
        "--graceful-timeout=1m30s",
        "--keep-alive",
        "0",
        "--boot-timeout",
        "5m",
        "--max-requests",
        "1000",
        "--max-requests-jitter=50",
        "--chdir",
        "/srv/app",
        "-p",
        "/run/tine.pid",
        "-u",
        "www-data",
        "-g",
        "www",
        "--forwarded-allow-ips",
        "10.0.0.0/8, 127.0.0.1",
        "--pythonpath",
        "src,lib",
        "--preload",
        "--virtualenv",
        "/srv/venv",
        "--script-name",
        "/app",
        "--log-level",
        "DEBUG",
        "--access-logfile",
        "-",
        "--error-logfile",
        "/var/log/tine.log",
    ]);
    let server = &c.server;
    assert_eq!(server.timeout, Duration::from_secs(90));
    assert_eq!(server.graceful_timeout, Duration::from_secs(90));
    assert_eq!(server.keepalive, Duration::ZERO);
    assert_eq!(server.boot_timeout, Duration::from_secs(300));
    assert_eq!(
        (server.max_requests, server.max_requests_jitter),
        (1000, 50)
    );
    assert_eq!(server.chdir, Some(PathBuf::from("/srv/app")));
    assert_eq!(server.pidfile, Some(PathBuf::from("/run/tine.pid")));
    assert_eq!(server.user.as_deref(), Some("www-data"));
    assert_eq!(server.group.as_deref(), Some("www"));
    let trusted: Vec<String> = server
        .forwarded_allow_ips
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(trusted, ["10.0.0.0/8", "127.0.0.1"]);
    assert_eq!(
        c.app.pythonpath,
        [PathBuf::from("src"), PathBuf::from("lib")]
    );
    assert!(c.app.preload);
    assert_eq!(c.app.virtualenv, Some(PathBuf::from("/srv/venv")));
    assert_eq!(c.app.script_name, "/app");
    assert_eq!(c.log.level, log::LevelFilter::Debug);
    assert_eq!(c.log.access_log, Some(crate::access_log::Target::Stdout));
    assert_eq!(c.log.error_log, Some(PathBuf::from("/var/log/tine.log")));
    // The handler is the file's (or the default) unless an APP is given.
    assert_eq!(c.app.handler, HandlerKind::Demo);

    let c = config_from(&[
        "--pid",
        "",
        "--user=",
        "--access-logfile",
        "/var/log/access.log",
        "--error-logfile",
        "-",
        "--forwarded-allow-ips=*",
    ]);
    assert_eq!((c.server.pidfile, c.server.user), (None, None));
    assert_eq!(
        c.log.access_log,
        Some(crate::access_log::Target::File(PathBuf::from(
            "/var/log/access.log"
        )))
    );
    assert_eq!(c.log.error_log, None);
    assert_eq!(
        c.server.forwarded_allow_ips,
        [crate::forwarded::Trusted::Any]
    );
}

#[test]
fn repeated_flags_add_to_lists_and_replace_the_rest() {
    let c = config_from(&[
        "--pythonpath",
        "a,b",
        "--timeout",
        "5",
        "--pythonpath=c",
        "--timeout",
        "6s",
        "--forwarded-allow-ips",
        "10.0.0.1",
        "--forwarded-allow-ips",
        "10.0.0.2",
    ]);
    let paths: Vec<PathBuf> = ["a", "b", "c"].iter().map(PathBuf::from).collect();
    assert_eq!(c.app.pythonpath, paths);
    assert_eq!(c.server.timeout, Duration::from_secs(6));
    assert_eq!(c.server.forwarded_allow_ips.len(), 2);
    // An empty list replaces the file's with none.
    let mut config = Config::default();
    config.app.pythonpath = vec![PathBuf::from("from-file")];
    parse_strs(&["--pythonpath", ""])
        .unwrap()
        .overrides
        .apply(&mut config);
    assert!(config.app.pythonpath.is_empty());
}

#[test]
fn env_flags_add_to_and_override_the_file() {
    let command = parse_strs(&[
        "-e",
        "B=2",
        "--env",
        "EMPTY=",
        "--env=URL=postgres://h/db?x=1",
        "-e",
        "A=changed",
    ])
    .unwrap();
    let mut config = Config::default();
    config.app.env = vec![
        ("A".to_owned(), "from file".to_owned()),
        ("Z".to_owned(), "kept".to_owned()),
    ];
    command.overrides.apply(&mut config);
    assert_eq!(
        config.app.env_strs(),
        [
            ("A", "changed"),
            ("Z", "kept"),
            ("B", "2"),
            ("EMPTY", ""),
            ("URL", "postgres://h/db?x=1")
        ]
    );
}

#[test]
fn flag_values_are_checked_as_their_keys_are() {
    let table: &[(&[&str], &str)] = &[
        (
            &["--env", "FOO"],
            "--env \"FOO\": expected KEY=VALUE, like DJANGO_SETTINGS_MODULE=mysite.settings",
        ),
        (
            &["-e", "=x"],
            "-e: an environment variable name must not be empty",
        ),
        (
            &["--timeout", "0"],
            "--timeout: expected a duration greater than zero, found \"0s\"",
        ),
        (
            &["--boot-timeout", "2d"],
            "--boot-timeout: invalid duration \"2d\": unknown unit \"d\"; use ms, s, m or h",
        ),
        (
            &["--graceful-timeout", "-1"],
            "--graceful-timeout: invalid duration \"-1\": expected whole numbers each \
                 followed by a unit (ms, s, m or h), like \"30s\", \"500ms\" or \"1m30s\"",
        ),
        (
            &["--max-requests", "-1"],
            "--max-requests: expected an integer of zero or more, found -1",
        ),
        (
            &["--max-requests-jitter", "many"],
            "--max-requests-jitter: expected an integer of zero or more, found \"many\"",
        ),
        (
            &["--log-level", "loud"],
            "--log-level: expected one of \"off\", \"error\", \"warn\", \"info\", \"debug\", \
                 \"trace\", found \"loud\"",
        ),
        (
            &["--error-logfile", ""],
            "--error-logfile: expected \"-\" or a file path, found \"\"",
        ),
        (
            &["--script-name", "app/"],
            "--script-name: expected \"\" or a path that starts with \"/\" and does not end \
                 with one, like \"/app\", found \"app/\"",
        ),
        (
            &["--pythonpath", "a,,b"],
            "--pythonpath: expected a directory path, found \"\"",
        ),
        (
            &["--forwarded-allow-ips", "10.0.0.1,nope,*x"],
            "--forwarded-allow-ips: invalid address \"nope\": expected an IP, a \
                 network like \"10.0.0.0/8\", or \"*\"; invalid address \"*x\": expected an IP, \
                 a network like \"10.0.0.0/8\", or \"*\"",
        ),
        (&["--preload=yes"], "--preload takes no value"),
        (&["--chdir"], "--chdir needs a value"),
        (
            &["-k", "gevent"],
            "-k gevent: tine has no worker classes; every worker is an event loop with a pool \
             of --threads threads (uvicorn's worker classes are accepted and mean --interface \
             asgi)",
        ),
        (&["--worker-class"], "--worker-class needs a value"),
        (
            &["--interface", "asgi2"],
            "--interface: ASGI 2 applications are not supported: wrap the application with \
             asgiref.compatibility.guarantee_single_callable to make it ASGI 3",
        ),
        (
            &["--loop", "trio"],
            "--loop: expected one of \"auto\", \"asyncio\", \"uvloop\", found \"trio\"",
        ),
        (
            &["--lifespan=yes"],
            "--lifespan: expected one of \"auto\", \"on\", \"off\", found \"yes\"",
        ),
        (
            &["--limit-concurrency", "0"],
            "--limit-concurrency: expected a positive integer up to 100000, found 0",
        ),
        (
            &["--root-path", "/api/"],
            "--root-path: expected \"\" or a path that starts with \"/\" and does not end \
             with one, like \"/app\", found \"/api/\"",
        ),
        (
            &["--timeout-keep-alive", "x"],
            "--timeout-keep-alive: invalid duration \"x\": expected whole numbers each \
             followed by a unit (ms, s, m or h), like \"30s\", \"500ms\" or \"1m30s\"",
        ),
        (&["--factory=yes", "a:b"], "--factory takes no value"),
        (
            &["--reload", "main:app"],
            "--reload: tine does not watch files; reload with `kill -HUP <master pid>`",
        ),
        (
            &["--ssl-ciphers", "ALL"],
            "--ssl-ciphers: tine uses rustls's cipher suites, all of them current; there are \
             no others to choose",
        ),
        (
            &["--proxy-headers"],
            "--proxy-headers: tine reads forwarded headers from forwarded_allow_ips \
             (--forwarded-allow-ips)",
        ),
        (
            &["--no-access-log"],
            "--no-access-log: access logging is off unless --access-logfile is given",
        ),
        (
            &["--limit-concurency", "5"],
            "unknown option --limit-concurency (did you mean --limit-concurrency?)",
        ),
        (
            &["--timeout-keepalive", "5"],
            "unknown option --timeout-keepalive (did you mean --timeout-keep-alive?)",
        ),
        (
            &["--keepalive", "5"],
            "unknown option --keepalive (did you mean --keep-alive?)",
        ),
        (
            &["--max_requests=5"],
            "unknown option --max_requests (did you mean --max-requests?)",
        ),
        (&["--daemon"], "unknown option --daemon"),
    ];
    for (args, want) in table {
        assert_eq!(usage_error(args), *want, "{args:?}");
    }
}

#[test]
fn every_key_flag_is_documented_in_help_and_readme() {
    const README: &str = include_str!("../../README.md");
    let table = README
        .split("### Run your Flask / Django app")
        .nth(1)
        .expect("README has the gunicorn table");
    for flag in KEY_FLAGS {
        assert!(HELP.contains(flag.long), "HELP lacks {}", flag.long);
        assert!(
            HELP.contains(&format!("({})", flag.key)),
            "HELP does not name {} for {}",
            flag.key,
            flag.long
        );
        let spelled = match flag.short {
            Some(short) => format!("{short}, {}", flag.long),
            None => flag.long.to_owned(),
        };
        assert!(HELP.contains(&spelled), "HELP lacks {spelled}");
        assert!(
            table.contains(&format!("| `{spelled}`")),
            "README table lacks {spelled}"
        );
    }
    for flag in ["-e, --env", "-w, --workers", "-t, --threads", "-b, --bind"] {
        assert!(
            table.contains(&format!("| `{flag}`")),
            "README table lacks {flag}"
        );
    }
    // uvicorn's names are in the table and in HELP too.
    for also in KEY_FLAGS.iter().filter_map(|f| f.also) {
        assert!(HELP.contains(also), "HELP lacks {also}");
        assert!(
            table.contains(&format!("`{also}`")),
            "README table lacks {also}"
        );
    }
    // Each key has one flag, but for --app-dir, which adds one directory where --pythonpath
    // adds a list.
    for (i, flag) in KEY_FLAGS.iter().enumerate() {
        assert!(
            KEY_FLAGS[i + 1..]
                .iter()
                .all(|f| f.key != flag.key || f.long == "--app-dir"),
            "{}",
            flag.key
        );
        assert!(crate::config::KEYS.contains(&flag.key), "{}", flag.key);
    }
}

#[test]
fn modes() {
    assert_eq!(
        parse_strs(&["--check-config"]).unwrap().mode,
        Mode::CheckConfig
    );
    assert_eq!(
        parse_strs(&["--print-config"]).unwrap().mode,
        Mode::PrintConfig
    );
    assert_eq!(parse_strs(&["-V"]).unwrap().mode, Mode::Version);
    assert_eq!(
        parse_strs(&["--check-config", "--help"]).unwrap().mode,
        Mode::Help
    );
    assert!(parse_strs(&["--check-config", "--print-config"]).is_err());
}

#[test]
fn the_status_command() {
    assert_eq!(
        parse_strs(&["status"]).unwrap().mode,
        Mode::Status {
            json: false,
            watch: false
        }
    );
    let command = parse_strs(&["status", "-c", "a.toml", "--json"]).unwrap();
    assert_eq!(
        command.mode,
        Mode::Status {
            json: true,
            watch: false
        }
    );
    assert_eq!(command.config, Some(PathBuf::from("a.toml")));
    assert!(parse_strs(&["--json"]).is_err());
    assert_eq!(
        parse_strs(&["status", "--watch"]).unwrap().mode,
        Mode::Status {
            json: false,
            watch: true
        }
    );
    assert_eq!(
        parse_strs(&["status", "--watch", "--json"]).unwrap().mode,
        Mode::Status {
            json: true,
            watch: true
        }
    );
    let error = parse_strs(&["--watch"]).unwrap_err().to_string();
    assert!(
        error.contains("--watch goes with the status command"),
        "{error}"
    );
    assert!(parse_strs(&["status", "--watch=1"]).is_err());
}

#[test]
fn man_page_documents_every_long_flag() {
    const MAN_PAGE: &str = include_str!("../../man/tine.8");
    let mut flags: Vec<&str> = HELP
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .collect();
    flags.sort_unstable();
    flags.dedup();
    assert!(flags.len() >= 8, "flags found in HELP: {flags:?}");
    let lines: Vec<&str> = MAN_PAGE.lines().collect();
    for flag in flags {
        // roff writes a hyphen as `\-`; OPTIONS names each flag in bold on a `.TP` line.
        let roff = format!("\\fB{}\\fR", flag.replace('-', "\\-"));
        let documented = lines
            .windows(2)
            .any(|pair| pair[0].starts_with(".TP") && pair[1].contains(&roff));
        assert!(
            documented,
            "man/tine.8 OPTIONS does not document {flag}: add `.TP` then a line with {roff}"
        );
    }
}

#[test]
fn errors_name_the_argument() {
    let err = parse_strs(&["--workers", "four"]).unwrap_err();
    assert!(
        err.0.contains("--workers") && err.0.contains("four"),
        "{err}"
    );
    let err = parse_strs(&["--threads", "0"]).unwrap_err();
    assert!(err.0.contains("--threads"), "{err}");
    let err = parse_strs(&["--bind", "localhost"]).unwrap_err();
    assert!(err.0.contains("localhost"), "{err}");
    let err = parse_strs(&["-c"]).unwrap_err();
    assert_eq!(err.0, "-c needs a value");
    let err = parse_strs(&["--frobnicate"]).unwrap_err();
    assert_eq!(err.0, "unknown option --frobnicate");
    let err = parse_strs(&["--frob=1"]).unwrap_err();
    assert_eq!(err.0, "unknown option --frob");
}

#[test]
fn the_asgi_flags_set_their_keys() {
    let c = config_from(&[
        "--interface",
        "asgi3",
        "--root-path",
        "/api",
        "--loop=uvloop",
        "--lifespan",
        "off",
        "--limit-concurrency",
        "250",
        "--timeout-keep-alive",
        "5",
        "--timeout-graceful-shutdown=1m",
        "main:app",
    ]);
    assert_eq!(c.app.handler, HandlerKind::Python);
    assert_eq!(c.app.interface, Interface::Asgi);
    assert_eq!(c.app.root_path, "/api");
    assert_eq!(c.app.event_loop, EventLoop::Uvloop);
    assert_eq!(c.app.lifespan, Lifespan::Off);
    assert_eq!(c.app.max_concurrency, 250);
    assert_eq!(c.server.keepalive, Duration::from_secs(5));
    assert_eq!(c.server.graceful_timeout, Duration::from_secs(60));
    let c = config_from(&[
        "--interface",
        "wsgi",
        "--lifespan",
        "on",
        "--loop",
        "asyncio",
    ]);
    assert_eq!(c.app.interface, Interface::Wsgi);
    assert_eq!(c.app.lifespan, Lifespan::On);
    assert_eq!(c.app.event_loop, EventLoop::Asyncio);
    let c = config_from(&["--limit-max-requests", "500"]);
    assert_eq!(c.server.max_requests, 500);
    // Either spelling of one flag: the last given wins.
    let c = config_from(&["--keep-alive", "7", "--timeout-keep-alive", "9"]);
    assert_eq!(c.server.keepalive, Duration::from_secs(9));
    let c = config_from(&["--timeout-keep-alive", "9", "--keep-alive", "7"]);
    assert_eq!(c.server.keepalive, Duration::from_secs(7));
}

#[test]
fn app_dir_adds_one_directory_to_the_python_path() {
    let c = config_from(&[
        "--pythonpath",
        "a,b",
        "--app-dir",
        "src,v2",
        "--app-dir=lib",
    ]);
    let paths: Vec<PathBuf> = ["a", "b", "src,v2", "lib"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(c.app.pythonpath, paths);
    let c = config_from(&["--app-dir", "src", "--pythonpath", "x,y"]);
    let paths: Vec<PathBuf> = ["src", "x", "y"].iter().map(PathBuf::from).collect();
    assert_eq!(c.app.pythonpath, paths);
    assert_eq!(
        usage_error(&["--app-dir", ""]),
        "--app-dir: expected a directory path, found \"\""
    );
}

#[test]
fn uvicorn_worker_classes_mean_asgi() {
    for class in ASGI_WORKER_CLASSES {
        for flag in ["-k", "--worker-class"] {
            let c = config_from(&[flag, class, "main:app"]);
            assert_eq!(c.app.interface, Interface::Asgi, "{flag} {class}");
        }
    }
    let c = config_from(&["--worker-class=uvicorn.workers.UvicornWorker"]);
    assert_eq!(c.app.interface, Interface::Asgi);
    // The last word is the command line's: a later --interface overrides it.
    let c = config_from(&["-k", "uvicorn.workers.UvicornWorker", "--interface", "wsgi"]);
    assert_eq!(c.app.interface, Interface::Wsgi);
    assert!(usage_error(&["-k", "gthread"]).starts_with("-k gthread: tine has no worker classes"));
    assert!(
        usage_error(&["-k", "uvicorn.workers.UvicornWorkers"]).starts_with("-k uvicorn.workers")
    );
}

#[test]
fn factory_calls_the_app_with_no_arguments() {
    let c = config_from(&["--factory", "main:create_app"]);
    assert_eq!(c.app.app.as_deref(), Some("main:create_app()"));
    assert_eq!(c.app.handler, HandlerKind::Python);
    // Before or after APP.
    let c = config_from(&["pkg.api:make", "--factory"]);
    assert_eq!(c.app.app.as_deref(), Some("pkg.api:make()"));
    assert_eq!(
        usage_error(&["--factory", "main:create_app()"]),
        "--factory: \"main:create_app()\" is a call already; give the factory's name, like \
         main:create_app, or leave --factory out"
    );
    assert_eq!(
        usage_error(&["--factory", "main:create_app(\"prod\")"]),
        "--factory: \"main:create_app(\\\"prod\\\")\" is a call already; give the factory's \
         name, like main:create_app, or leave --factory out"
    );
    assert_eq!(
        usage_error(&["--factory"]),
        "--factory needs APP, the factory to call, like main:create_app"
    );
}

#[test]
fn host_port_and_uds_bind_as_uvicorn_does() {
    let bind = |args: &[&str]| -> Vec<String> {
        config_from(args)
            .server
            .bind
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(bind(&["--host", "0.0.0.0", "--port", "80"]), ["0.0.0.0:80"]);
    assert_eq!(bind(&["--host", "0.0.0.0"]), ["0.0.0.0:8000"]);
    assert_eq!(bind(&["--port=9000"]), ["127.0.0.1:9000"]);
    assert_eq!(bind(&["--host", "::1", "--port", "9000"]), ["[::1]:9000"]);
    assert_eq!(bind(&["--host", "[::]"]), ["[::]:8000"]);
    assert_eq!(bind(&["--uds", "/run/app.sock"]), ["unix:/run/app.sock"]);
    // The last --host or --port given wins.
    assert_eq!(
        bind(&[
            "--host", "10.0.0.1", "--host", "10.0.0.2", "--port", "1", "--port", "2"
        ]),
        ["10.0.0.2:2"]
    );
    // Without them the file's (or the default) bind stays.
    assert_eq!(bind(&["main:app"]), ["127.0.0.1:8000"]);
}

#[test]
fn host_port_and_uds_conflicts_and_bad_values() {
    let table: &[(&[&str], &str)] = &[
        (
            &["-b", "127.0.0.1:9000", "--host", "0.0.0.0"],
            "-b and --host both say where to listen: give -b/--bind, or uvicorn's --host and \
             --port (or --uds), not both",
        ),
        (
            &["--port", "80", "--bind=unix:/tmp/a.sock"],
            "--bind and --port both say where to listen: give -b/--bind, or uvicorn's --host \
             and --port (or --uds), not both",
        ),
        (
            &["--uds", "/tmp/a.sock", "--bind", "127.0.0.1:1"],
            "--bind and --uds both say where to listen: give -b/--bind, or uvicorn's --host \
             and --port (or --uds), not both",
        ),
        (
            &["--uds", "/tmp/a.sock", "--port", "1"],
            "--uds and --host/--port both say where to listen: give one",
        ),
        (
            &["--port", "http"],
            "--port expects a port number from 0 to 65535, found \"http\"",
        ),
        (
            &["--port", "65536"],
            "--port expects a port number from 0 to 65535, found \"65536\"",
        ),
        (
            &["--uds", ""],
            "--uds: invalid address \"unix:\": the unix socket path is empty; \
             write it after \"unix:\", like \"unix:/run/tine.sock\"",
        ),
        (&["--host"], "--host needs a value"),
    ];
    for (args, want) in table {
        assert_eq!(usage_error(args), *want, "{args:?}");
    }
    let err = usage_error(&["--host", "localhost"]);
    assert!(
        err.starts_with("--host \"localhost\": invalid address \"localhost:8000\""),
        "{err}"
    );
}

#[test]
fn every_refused_uvicorn_flag_says_what_tine_does_instead() {
    let every = REFUSED_UVICORN_FLAGS
        .iter()
        .flat_map(|(flags, instead)| flags.iter().map(move |flag| (flag, instead)));
    for (flag, instead) in every.clone() {
        let name = flag.replace('*', "dir");
        assert_eq!(usage_error(&[&name]), format!("{name}: {instead}"));
        assert_eq!(
            usage_error(&[&format!("{name}=x")]),
            format!("{name}: {instead}")
        );
        // None is a flag tine has.
        assert!(!KEY_FLAGS.iter().any(|f| f.is(&name)), "{name}");
        assert!(!OTHER_FLAGS.contains(&name.as_str()), "{name}");
    }
    for (flag, instead) in [
        ("--reload-dir", "tine does not watch files"),
        ("--reload-delay", "tine does not watch files"),
        ("--ws-max-queue", "tine holds at most one message"),
        ("--ws", "tine has one WebSocket implementation"),
        ("--ssl-version", "tine speaks TLS 1.2 and 1.3"),
    ] {
        assert!(usage_error(&[flag, "1"]).starts_with(&format!("{flag}: {instead}")));
    }
    // The README's notes name each of them.
    const README: &str = include_str!("../../README.md");
    for (flag, _) in every {
        assert!(
            README.contains(&format!("`{flag}`")),
            "README does not name {flag}"
        );
    }
}

#[test]
fn uvicorns_websocket_flags_set_the_websocket_section() {
    let c = config_from(&[
        "--ws-max-size",
        "16777216",
        "--ws-ping-interval",
        "20.5",
        "--ws-ping-timeout",
        "5",
    ]);
    assert_eq!(c.websocket.max_message, 16 << 20);
    assert_eq!(c.websocket.ping_interval, Duration::from_millis(20_500));
    assert_eq!(c.websocket.ping_timeout, Duration::from_secs(5));
    let c = config_from(&["--ws-ping-interval", "0.0", "--ws-ping-timeout", "0.25"]);
    assert_eq!(c.websocket.ping_interval, Duration::ZERO);
    assert_eq!(c.websocket.ping_timeout, Duration::from_millis(250));
    assert_eq!(seconds_as_duration("30"), "30s");
    assert_eq!(seconds_as_duration("1.5"), "1500ms");
    assert_eq!(seconds_as_duration("0.0001"), "0ms");
    assert_eq!(seconds_as_duration("1m"), "1m");
    assert_eq!(seconds_as_duration("1.5s"), "1.5s");
}

#[test]
fn tls_flags_set_the_tls_section_by_gunicorns_and_uvicorns_names() {
    let c = config_from(&[
        "--certfile",
        "c.pem",
        "--keyfile",
        "k.pem",
        "--ca-certs",
        "ca.pem",
    ]);
    assert_eq!(c.tls.cert, Some(PathBuf::from("c.pem")));
    assert_eq!(c.tls.key, Some(PathBuf::from("k.pem")));
    assert_eq!(c.tls.ca, Some(PathBuf::from("ca.pem")));
    let u = config_from(&[
        "--ssl-certfile",
        "c.pem",
        "--ssl-keyfile",
        "k.pem",
        "--ssl-ca-certs",
        "ca.pem",
    ]);
    assert_eq!(u.tls, c.tls);
}

#[test]
fn proxy_protocol_turns_on_for_every_bind() {
    let proxied = |args: &[&str]| -> Vec<String> {
        config_from(args)
            .server
            .proxy_protocol
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(proxied(&[]), Vec::<String>::new());
    assert_eq!(proxied(&["--proxy-protocol"]), ["127.0.0.1:8000"]);
    assert_eq!(
        proxied(&["-b", "0.0.0.0:80", "--proxy-protocol", "--bind", "[::]:80"]),
        ["0.0.0.0:80", "[::]:80"]
    );
    // --bind replaces the file's addresses, and with them its PROXY listeners.
    let command = parse_strs(&["--bind", "0.0.0.0:81"]).unwrap();
    let mut config = Config::from_toml_str(
        "t.toml",
        "[server]\nbind = { address = \"0.0.0.0:80\", proxy_protocol = true }\n",
    )
    .unwrap();
    command.overrides.apply(&mut config);
    assert!(config.server.proxy_protocol.is_empty());
    assert_eq!(
        usage_error(&["--proxy-protocol=yes"]),
        "--proxy-protocol takes no value"
    );
    assert!(
        usage_error(&["--uds", "/run/t.sock", "--proxy-protocol"])
            .starts_with("--proxy-protocol: proxy_protocol on \"unix:/run/t.sock\": "),
    );
}
