//! The access log: one line per response, in the Apache/nginx `combined` format, as JSON, or
//! from a template of named fields. A worker's event loop formats lines into a buffer; a
//! writer thread of its own puts them on disk, at least once a second and on exit, so a slow
//! disk never stalls the loop (if the writer falls far behind, lines are dropped and counted).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use crate::config::access_log::{Format, Piece, Target};
use crate::text::{MONTHS, civil_from_unix, json_string, utc_stamp};

/// One response, as the log records it.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// When the response was over.
    pub time: SystemTime,
    /// The client's address ("-" when unknown, as for Unix sockets).
    pub remote: &'a str,
    /// Method, target and version of the request ("-" for a request that never parsed).
    pub method: &'a str,
    /// The target.
    pub target: &'a str,
    /// `HTTP/1.1`.
    pub version: &'a str,
    /// The status code.
    pub status: u16,
    /// Body bytes that went out (head and chunked framing not counted): counted when the
    /// response is over, so a stream logs its real size and a response cut short what went
    /// out of it.
    pub bytes: u64,
    /// From hand-over to the pool to the response.
    pub duration_us: u64,
    /// The `User-Agent` header.
    pub user_agent: &'a str,
    /// The `Referer` header.
    pub referer: &'a str,
    /// The worker's slot.
    pub worker: usize,
}

/// Appends one line for `entry` to `out`.
pub fn write_entry(out: &mut Vec<u8>, format: &Format, entry: &Entry<'_>) {
    let mut line = String::with_capacity(160);
    match format {
        Format::Combined => {
            let _ = write!(
                line,
                "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"",
                entry.remote,
                clf_time(entry.time),
                escape_quoted(entry.method),
                escape_quoted(entry.target),
                entry.version,
                entry.status,
                entry.bytes,
                escape_quoted(entry.referer),
                escape_quoted(entry.user_agent),
            );
        }
        Format::Json => {
            let _ = write!(
                line,
                "{{\"time\":\"{}\",\"remote\":{},\"method\":{},\"target\":{},\"version\":{},\"status\":{},\"bytes\":{},\"duration_us\":{},\"user_agent\":{},\"referer\":{},\"worker\":{}}}",
                utc_stamp(entry.time),
                json_string(entry.remote),
                json_string(entry.method),
                json_string(entry.target),
                json_string(entry.version),
                entry.status,
                entry.bytes,
                entry.duration_us,
                json_string(entry.user_agent),
                json_string(entry.referer),
                entry.worker,
            );
        }
        Format::Template(pieces) => {
            for piece in pieces {
                match piece {
                    Piece::Text(text) => line.push_str(text),
                    Piece::Field(name) => {
                        let _ = match *name {
                            "time" => write!(line, "{}", utc_stamp(entry.time)),
                            "remote" => write!(line, "{}", entry.remote),
                            "method" => write!(line, "{}", escape_quoted(entry.method)),
                            "target" => write!(line, "{}", escape_quoted(entry.target)),
                            "version" => write!(line, "{}", entry.version),
                            "status" => write!(line, "{}", entry.status),
                            "bytes" => write!(line, "{}", entry.bytes),
                            "duration_us" => write!(line, "{}", entry.duration_us),
                            "user_agent" => write!(line, "{}", escape_quoted(entry.user_agent)),
                            "referer" => write!(line, "{}", escape_quoted(entry.referer)),
                            "worker" => write!(line, "{}", entry.worker),
                            _ => write!(line, "{}", std::process::id()),
                        };
                    }
                }
            }
        }
    }
    line.push('\n');
    out.extend_from_slice(line.as_bytes());
}

/// `23/Nov/2026:10:25:01 +0000`.
fn clf_time(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let (year, month, day, hour, minute, second, _) = civil_from_unix(secs);
    let month = MONTHS.get(month as usize - 1).copied().unwrap_or("Jan");
    format!("{day:02}/{month}/{year}:{hour:02}:{minute:02}:{second:02} +0000")
}

/// Inside a quoted log field, quotes, backslashes and control bytes are escaped so a client
/// cannot forge a line or a field.
fn escape_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

enum Message {
    Lines(Vec<u8>),
    Reopen,
}

/// Flush when the buffer holds this much, or a second has passed.
const FLUSH_BYTES: usize = 64 * 1024;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Buffers in flight to the writer before lines are dropped rather than wait.
const QUEUE: usize = 64;

/// A worker's access log: a buffer the loop fills and a thread that writes it out.
pub struct AccessLog {
    format: Format,
    buffer: Vec<u8>,
    last_flush: Instant,
    sender: Option<SyncSender<Message>>,
    writer: Option<std::thread::JoinHandle<()>>,
    dropped: u64,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("format", &self.format)
            .finish()
    }
}

impl AccessLog {
    /// Opens `target` and starts the writer thread.
    pub fn open(target: &Target, format: Format) -> io::Result<AccessLog> {
        let sink = open_target(target)?;
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE);
        let target = target.clone();
        let writer = std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(move || write_loop(&target, sink, &receiver))?;
        Ok(AccessLog {
            format,
            buffer: Vec::with_capacity(FLUSH_BYTES),
            last_flush: Instant::now(),
            sender: Some(sender),
            writer: Some(writer),
            dropped: 0,
        })
    }

    /// Records one response.
    pub fn log(&mut self, entry: &Entry<'_>) {
        write_entry(&mut self.buffer, &self.format, entry);
        if self.buffer.len() >= FLUSH_BYTES {
            self.flush();
        }
    }

    /// Hands the buffer to the writer if a second has passed since the last time.
    pub fn tick(&mut self) {
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
    }

    /// Hands the buffer to the writer now.
    pub fn flush(&mut self) {
        self.last_flush = Instant::now();
        if self.buffer.is_empty() {
            return;
        }
        let lines = std::mem::replace(&mut self.buffer, Vec::with_capacity(FLUSH_BYTES));
        let Some(sender) = &self.sender else {
            return;
        };
        match sender.try_send(Message::Lines(lines)) {
            Ok(()) => {}
            Err(TrySendError::Full(Message::Lines(lines))) => {
                let count = lines.iter().filter(|&&b| b == b'\n').count() as u64;
                if self.dropped == 0 {
                    log::warn!("the access log cannot keep up with the disk; dropping lines");
                }
                self.dropped += count;
            }
            Err(_) => {}
        }
    }

    /// Asks the writer to reopen the file (SIGUSR1, after logrotate).
    pub fn reopen(&mut self) {
        self.flush();
        if let Some(sender) = &self.sender {
            let _ = sender.try_send(Message::Reopen);
        }
    }

    /// Writes what is buffered and waits for the writer to finish.
    pub fn finish(&mut self) {
        self.flush();
        drop(self.sender.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        if self.dropped > 0 {
            log::warn!("{} access log lines were dropped", self.dropped);
        }
    }
}

fn open_target(target: &Target) -> io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        Target::Stdout => Box::new(io::stdout()),
        Target::File(path) => Box::new(open_append(path)?),
    })
}

/// Never through a symbolic link, and only a regular file: see `logging`'s log files.
fn open_append(path: &Path) -> io::Result<std::fs::File> {
    crate::sys::open_append_regular(path, crate::sys::LOG_FILE_MODE)
}

fn write_loop(target: &Target, mut sink: Box<dyn Write + Send>, receiver: &Receiver<Message>) {
    for message in receiver {
        match message {
            Message::Lines(lines) => {
                if let Err(err) = sink.write_all(&lines).and_then(|()| sink.flush()) {
                    log::error!("could not write the access log: {err}");
                }
            }
            Message::Reopen => match open_target(target) {
                Ok(new) => sink = new,
                Err(err) => log::error!("could not reopen the access log: {err}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            time: UNIX_EPOCH + Duration::from_millis(784_111_777_042),
            remote: "192.0.2.1",
            method: "GET",
            target: "/a\"b",
            version: "HTTP/1.1",
            status: 200,
            bytes: 13,
            duration_us: 420,
            user_agent: "curl/8.0",
            referer: "",
            worker: 3,
        }
    }

    fn line(format: &Format) -> String {
        let mut out = Vec::new();
        write_entry(&mut out, format, &entry());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn combined_matches_apache() {
        assert_eq!(
            line(&Format::Combined),
            "192.0.2.1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a\\\"b HTTP/1.1\" 200 13 \"\" \"curl/8.0\"\n"
        );
    }

    #[test]
    fn json_is_one_object() {
        assert_eq!(
            line(&Format::Json),
            "{\"time\":\"1994-11-06T08:49:37.042Z\",\"remote\":\"192.0.2.1\",\"method\":\"GET\",\"target\":\"/a\\\"b\",\"version\":\"HTTP/1.1\",\"status\":200,\"bytes\":13,\"duration_us\":420,\"user_agent\":\"curl/8.0\",\"referer\":\"\",\"worker\":3}\n"
        );
    }

    #[test]
    fn templates_parse_and_render() {
        let format: Format = "{remote} {status} took {duration_us}us".parse().unwrap();
        assert_eq!(line(&format), "192.0.2.1 200 took 420us\n");
        assert_eq!(format.to_string(), "{remote} {status} took {duration_us}us");
        assert!(
            "{nope}"
                .parse::<Format>()
                .unwrap_err()
                .contains("unknown field {nope}")
        );
        assert!(
            "{status"
                .parse::<Format>()
                .unwrap_err()
                .contains("unclosed")
        );
        assert!("common".parse::<Format>().is_err());
    }

    #[test]
    fn hostile_bytes_cannot_forge_a_line() {
        assert_eq!(escape_quoted("a\nb\"c"), "a\\x0ab\\\"c");
    }

    #[test]
    fn the_writer_thread_writes_and_reopens() {
        let dir = std::env::temp_dir().join(format!("tine-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let mut log = AccessLog::open(&Target::File(path.clone()), Format::Combined).unwrap();
        log.log(&entry());
        log.flush();
        std::fs::rename(&path, dir.join("access.log.1")).unwrap();
        log.reopen();
        log.log(&entry());
        log.finish();
        let old = std::fs::read_to_string(dir.join("access.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 1);
        assert_eq!(new.lines().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
