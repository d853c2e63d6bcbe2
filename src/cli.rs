//! The command line: raw arguments in, a validated [`Command`] out. Nothing here touches the
//! config file or the OS.

use std::ffi::OsString;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use crate::config::{BindAddr, Workers};

/// The usage text printed by `--help` (and pointed to by usage errors).
pub const HELP: &str = "\
tine - a pre-fork HTTP/1.1 application server

USAGE:
    tine [OPTIONS]
    tine status [-c FILE] [--json]

COMMANDS:
    status              Ask the running master (through [server] control_socket)
                        for each worker's pid, slot, generation, age, state,
                        requests, busy threads, oldest request and memory

OPTIONS:
    -c, --config FILE   Read the TOML config FILE (without it: built-in defaults,
                        the demo app on 127.0.0.1:8000)
    -b, --bind ADDR     Listen on ADDR instead of the config's server.bind; repeat
                        for more (127.0.0.1:8000, [::1]:8000, unix:/run/tine.sock)
    -w, --workers N     Worker processes: a positive number or \"auto\"
                        (2 x cpus + 1, cgroup quotas and affinity honoured)
    -t, --threads N     Pool threads per worker
        --check-config  Validate the config, print a summary and exit
        --print-config  Print the effective config as TOML and exit
        --json          With status: print JSON instead of a table
    -V, --version       Print the version and exit
    -h, --help          Print this help and exit

SIGNALS (to the master):
    TERM                graceful stop: finish in-flight requests, then exit 0
    INT, QUIT           fast stop: workers exit at once, then exit 0
    HUP                 reload the config; a bad file changes nothing
    USR2                upgrade: start the binary on disk as the new master
    USR1                reopen the error log
    TTIN, TTOU          one more / one fewer worker (never below one)

EXIT STATUS:
    0   success
    64  usage or config error (every problem is listed, with file:line:column)
    70  internal error (a worker could not start, e.g. the application
        could not be built)
    71  OS error (e.g. could not bind 0.0.0.0:80: permission denied, or
        the pid file is held by a running process)

See tine(8) and tine.toml(5).
";

/// What the user asked tine to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Run the server.
    Serve,
    /// Validate the config and exit.
    CheckConfig,
    /// Print the effective config and exit.
    PrintConfig,
    /// Print the version.
    Version,
    /// Print the help.
    Help,
    /// Ask the running master for its status.
    Status {
        /// As JSON rather than a table.
        json: bool,
    },
}

/// Settings given on the command line, which override the file's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--bind`, in order; empty means "use the file's".
    pub bind: Vec<BindAddr>,
    /// `--workers`.
    pub workers: Option<Workers>,
    /// `--threads`.
    pub threads: Option<NonZeroUsize>,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// What to do.
    pub mode: Mode,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// Settings that override the file.
    pub overrides: Overrides,
}

/// A usage error: the message names the argument at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (see tine --help)", self.0)
    }
}

impl std::error::Error for UsageError {}

/// Parses the arguments after the program name.
pub fn parse<I>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = OsString>,
{
    let mut command = Command {
        mode: Mode::Serve,
        config: None,
        overrides: Overrides::default(),
    };
    let mut args = args.into_iter();
    while let Some(raw) = args.next() {
        let Some(arg) = raw.to_str() else {
            return Err(UsageError(format!("argument {raw:?} is not valid UTF-8")));
        };
        // `--name=value` and `--name value` both work; short flags take the next argument.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
            _ => (arg, None),
        };
        let mut value = |flag: &str| -> Result<OsString, UsageError> {
            match &inline {
                Some(v) => Ok(OsString::from(v)),
                None => args
                    .next()
                    .ok_or_else(|| UsageError(format!("{flag} needs a value"))),
            }
        };
        match name {
            "-c" | "--config" => command.config = Some(PathBuf::from(value(name)?)),
            "-b" | "--bind" => {
                let text = utf8(value(name)?, name)?;
                let addr = text
                    .parse::<BindAddr>()
                    .map_err(|why| UsageError(format!("{name} {text:?}: {why}")))?;
                command.overrides.bind.push(addr);
            }
            "-w" | "--workers" => {
                let text = utf8(value(name)?, name)?;
                command.overrides.workers = Some(if text == "auto" {
                    Workers::Auto
                } else {
                    Workers::Fixed(positive(&text, name)?)
                });
            }
            "-t" | "--threads" => {
                let text = utf8(value(name)?, name)?;
                command.overrides.threads = Some(positive(&text, name)?);
            }
            "--check-config" => set_mode(&mut command, Mode::CheckConfig, name)?,
            "--print-config" => set_mode(&mut command, Mode::PrintConfig, name)?,
            "-V" | "--version" => command.mode = Mode::Version,
            "status" if command.mode == Mode::Serve => {
                command.mode = Mode::Status { json: false };
            }
            "--json" => match command.mode {
                Mode::Status { .. } => command.mode = Mode::Status { json: true },
                _ => return Err(UsageError("--json goes with the status command".to_owned())),
            },
            "-h" | "--help" => command.mode = Mode::Help,
            _ if inline.is_some() => {
                return Err(UsageError(format!("unknown option {name}")));
            }
            other => return Err(UsageError(format!("unknown argument {other:?}"))),
        }
    }
    Ok(command)
}

fn set_mode(command: &mut Command, mode: Mode, flag: &str) -> Result<(), UsageError> {
    if matches!(command.mode, Mode::CheckConfig | Mode::PrintConfig) && command.mode != mode {
        return Err(UsageError(format!(
            "{flag} cannot be combined with --check-config or --print-config"
        )));
    }
    if !matches!(command.mode, Mode::Help | Mode::Version) {
        command.mode = mode;
    }
    Ok(())
}

fn utf8(value: OsString, flag: &str) -> Result<String, UsageError> {
    value
        .into_string()
        .map_err(|raw| UsageError(format!("{flag} {raw:?}: not valid UTF-8")))
}

fn positive(text: &str, flag: &str) -> Result<NonZeroUsize, UsageError> {
    text.parse::<NonZeroUsize>()
        .ok()
        .filter(|n| n.get() <= 1024)
        .ok_or_else(|| {
            UsageError(format!(
                "{flag} expects a whole number from 1 to 1024, found {text:?}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Mode::Status { json: false }
        );
        let command = parse_strs(&["status", "-c", "a.toml", "--json"]).unwrap();
        assert_eq!(command.mode, Mode::Status { json: true });
        assert_eq!(command.config, Some(PathBuf::from("a.toml")));
        assert!(parse_strs(&["--json"]).is_err());
    }

    #[test]
    fn man_page_documents_every_long_flag() {
        const MAN_PAGE: &str = include_str!("../man/tine.8");
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
        assert!(err.0.contains("--frobnicate"), "{err}");
        let err = parse_strs(&["--frob=1"]).unwrap_err();
        assert_eq!(err.0, "unknown option --frob");
    }
}
