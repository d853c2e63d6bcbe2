//! The built-in `demo` application: a few small routes for trying tine, for its tests and for
//! benchmarks.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | `Hello, World!` |
//! | `GET /sleep?ms=N` | sleeps N ms (at most 60000) on the pool thread, like a blocking database call |
//! | `GET /cpu?n=N` | N rounds of a small CPU-bound loop, and the result |
//! | `GET /bytes?n=N` | an N-byte body (at most 16 MiB) |
//! | `GET /stream?n=N&size=S` | a streamed body of N chunks of S bytes (N at most 65536, S at most 1 MiB, N × S at most 64 MiB); chunk i is the letter `a + i % 26` repeated |
//! | `POST /echo` | the request body, byte for byte |
//! | `GET /pid` | the worker's process id |
//! | `GET /panic` | panics, so the server answers 500 |
//! | `GET /header?name=N&value=V` | 200 with the response header `N: V` as given (percent-decoded), for trying the server's response-splitting defence; 400 for a framing or connection header or one that sets cookies or sends the browser elsewhere (see [`FRAMING_HEADERS`], [`STEERING_HEADERS`]) |
//!
//! `HEAD` is accepted wherever `GET` is. Anything else is 404 (or 405 for a known path with the
//! wrong method).
//!
//! The limits keep the demo from being a tool against whoever runs it, or against others
//! through it: no request makes it send more than 64 MiB, and `/header` cannot frame a
//! response (response splitting, smuggling), set a cookie or redirect on a client's say-so.

use std::time::Duration;

use super::{FileRegion, Handler, Request, Response};

/// The longest `/sleep` the demo honours, so a typo cannot park a thread for hours.
pub const MAX_SLEEP_MS: u64 = 60_000;
/// The largest `/bytes` body, 16 MiB: built in memory, so it bounds what a request costs.
pub const MAX_BYTES: u64 = 16 << 20;
/// The most `/cpu` rounds, about a second of work on a current CPU.
pub const MAX_CPU_ROUNDS: u64 = 100_000_000;
/// The most chunks `/stream` sends.
pub const MAX_STREAM_CHUNKS: u64 = 1 << 16;
/// The largest `/stream` chunk.
pub const MAX_STREAM_CHUNK: u64 = 1 << 20;
/// The most bytes `/stream` sends in all (chunks × size), 64 MiB.
pub const MAX_STREAM_BYTES: u64 = 64 << 20;
/// Headers `/header` refuses to set because they frame the message or manage the connection,
/// which is the server's business alone (compared case-insensitively; a name ending in `-` is
/// a prefix).
pub const FRAMING_HEADERS: &[&str] = &[
    "Content-Length",
    "Transfer-Encoding",
    "Connection",
    "Keep-Alive",
    "Upgrade",
    "TE",
    "Trailer",
    "Proxy-",
];
/// Headers `/header` refuses to set because they set or clear cookies or send the browser
/// elsewhere, on a client's say-so (compared case-insensitively).
pub const STEERING_HEADERS: &[&str] = &[
    "Set-Cookie",
    "Set-Cookie2",
    "Clear-Site-Data",
    "Refresh",
    "Location",
];

/// The demo application.
#[derive(Debug, Default, Clone, Copy)]
pub struct Demo;

impl Handler for Demo {
    fn handle(&self, request: Request) -> Response {
        let read_only = matches!(request.method(), "GET" | "HEAD");
        match (request.path(), read_only) {
            ("/", true) => Response::text(200, "Hello, World!"),
            ("/sleep", true) => match number_param(&request, "ms", MAX_SLEEP_MS) {
                Ok(ms) => {
                    std::thread::sleep(Duration::from_millis(ms));
                    Response::text(200, format!("slept {ms} ms\n"))
                }
                Err(problem) => Response::text(400, problem),
            },
            ("/cpu", true) => match number_param(&request, "n", MAX_CPU_ROUNDS) {
                Ok(rounds) => Response::text(200, format!("{}\n", burn_cpu(rounds))),
                Err(problem) => Response::text(400, problem),
            },
            ("/bytes", true) => match number_param(&request, "n", MAX_BYTES) {
                // The bound above keeps the cast lossless on every 64-bit target tine supports.
                Ok(n) => Response::new(200)
                    .with_header("Content-Type", "application/octet-stream")
                    .with_body(vec![b'x'; n as usize]),
                Err(problem) => Response::text(400, problem),
            },
            ("/stream", true) => {
                let chunks = number_param(&request, "n", MAX_STREAM_CHUNKS);
                let size = number_param(&request, "size", MAX_STREAM_CHUNK);
                match (chunks, size) {
                    (Ok(chunks), Ok(size)) if chunks * size > MAX_STREAM_BYTES => Response::text(
                        400,
                        format!(
                            "n × size must be at most {MAX_STREAM_BYTES} bytes, found {chunks} × {size}\n"
                        ),
                    ),
                    // MAX_STREAM_CHUNK keeps the cast lossless.
                    (Ok(chunks), Ok(size)) => Response::new(200)
                        .with_header("Content-Type", "application/octet-stream")
                        .with_stream(
                            (0..chunks).map(move |i| vec![b'a' + (i % 26) as u8; size as usize]),
                        ),
                    (Err(problem), _) | (_, Err(problem)) => Response::text(400, problem),
                }
            }
            ("/pid", true) => Response::text(200, format!("{}\n", std::process::id())),
            ("/header", true) => {
                let name = request.query_param("name").unwrap_or_default();
                let value = request.query_param("value").unwrap_or_default();
                match refused_header(&name) {
                    Some(why) => Response::text(400, format!("refused header {name:?}: {why}\n")),
                    None => Response::text(200, "header set\n").with_header(&name, value),
                }
            }
            ("/panic", true) => panic!("the demo's /panic route panics on purpose"),
            ("/echo", _) if request.method() == "POST" => {
                let content_type = request
                    .header("Content-Type")
                    .unwrap_or(b"application/octet-stream")
                    .to_vec();
                let echo = Response::new(200).with_header("Content-Type", content_type);
                // A large body is already in a file: send it back from there.
                let len = request.body_len();
                match request.body_file().map(std::fs::File::try_clone) {
                    Some(Ok(file)) => echo.with_file(FileRegion::new(file, 0, len)),
                    Some(Err(err)) => {
                        log::error!("could not reopen a request body's file: {err}");
                        Response::text(500, "500 Internal Server Error\n")
                    }
                    // In memory: taking it cannot fail and does not copy.
                    None => echo.with_body(request.into_body().unwrap_or_default()),
                }
            }
            (
                "/" | "/sleep" | "/cpu" | "/bytes" | "/stream" | "/pid" | "/panic" | "/header"
                | "/echo",
                _,
            ) => Response::text(405, "method not allowed\n").with_header(
                "Allow",
                if request.path() == "/echo" {
                    "POST"
                } else {
                    "GET, HEAD"
                },
            ),
            _ => Response::text(404, "not found\n"),
        }
    }
}

/// Reads the query parameter `name` as a number from 0 to `max`; a missing parameter is 0.
fn number_param(request: &Request, name: &str, max: u64) -> Result<u64, String> {
    let Some(text) = request.query_param(name) else {
        return Ok(0);
    };
    match text.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!(
            "query parameter {name} must be a whole number from 0 to {max}, found {text:?}\n"
        )),
    }
}

/// Why `/header` will not set `name`, if it will not.
fn refused_header(name: &str) -> Option<&'static str> {
    let listed = |table: &[&str]| {
        table.iter().any(|refused| match refused.strip_suffix('-') {
            Some(_) => name
                .get(..refused.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(refused)),
            None => name.eq_ignore_ascii_case(refused),
        })
    };
    if listed(FRAMING_HEADERS) {
        Some("framing and connection headers are the server's")
    } else if listed(STEERING_HEADERS) {
        Some("the demo sets no cookies and sends no one elsewhere")
    } else {
        None
    }
}

/// A small loop the optimiser cannot remove: an xorshift walk whose final state is returned.
fn burn_cpu(rounds: u64) -> u64 {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..rounds {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
    }
    std::hint::black_box(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(target: &str) -> Response {
        Demo.handle(Request::builder("GET", target).build())
    }

    #[test]
    fn hello() {
        let response = get("/");
        assert_eq!(response.status(), 200);
        assert_eq!(response.body_bytes(), b"Hello, World!");
    }

    #[test]
    fn bytes_returns_exactly_n() {
        assert_eq!(get("/bytes?n=1000").body_bytes().len(), 1000);
        assert_eq!(get("/bytes").body_bytes().len(), 0);
        assert_eq!(get("/bytes?n=-1").status(), 400);
        assert_eq!(get(&format!("/bytes?n={}", MAX_BYTES + 1)).status(), 400);
        assert_eq!(get("/bytes?n=16777216").body_bytes().len(), 16 << 20);
        assert_eq!(get("/bytes?n=16777217").status(), 400);
    }

    #[test]
    fn stream_totals_are_capped_at_64_mib() {
        assert_eq!(get("/stream?n=64&size=1048576").status(), 200);
        assert_eq!(get("/stream?n=65536&size=1024").status(), 200);
        for over in [
            "/stream?n=65&size=1048576",
            "/stream?n=65537&size=1",
            "/stream?n=100000000&size=1048576",
        ] {
            let response = get(over);
            assert_eq!(response.status(), 400, "{over}");
        }
        let text = String::from_utf8(get("/stream?n=65&size=1048576").body_bytes().to_vec());
        assert!(text.unwrap().contains("at most 67108864 bytes"));
    }

    #[test]
    fn header_refuses_framing_connection_and_steering_headers() {
        for name in [
            "Content-Length",
            "content-length",
            "Transfer-Encoding",
            "Connection",
            "Keep-Alive",
            "Upgrade",
            "TE",
            "te",
            "Trailer",
            "Proxy-Authenticate",
            "proxy-connection",
            "Set-Cookie",
            "SET-COOKIE",
            "Set-Cookie2",
            "Clear-Site-Data",
            "Refresh",
            "Location",
        ] {
            let response = get(&format!("/header?name={name}&value=1"));
            assert_eq!(response.status(), 400, "{name}");
            let text = String::from_utf8(response.body_bytes().to_vec()).unwrap();
            assert!(
                text.starts_with(&format!("refused header \"{name}\": ")),
                "{text}"
            );
            assert_eq!(response.header(name), None);
        }
        for name in [
            "X-Demo",
            "X-Frame-Options",
            "Cache-Control",
            "Tea",
            "Proxyish",
        ] {
            let response = get(&format!("/header?name={name}&value=1"));
            assert_eq!(response.status(), 200, "{name}");
            assert_eq!(response.header(name), Some(&b"1"[..]));
        }
    }

    #[test]
    fn stream_yields_n_chunks_of_size_bytes() {
        let response = get("/stream?n=3&size=4");
        assert_eq!(response.status(), 200);
        assert_eq!(response.body().len(), None);
        let (_, _, body) = response.into_parts();
        let crate::handler::Body::Stream(chunks) = body else {
            panic!("expected a stream");
        };
        assert_eq!(chunks.collect::<Vec<_>>().concat(), b"aaaabbbbcccc");
        assert_eq!(get("/stream?n=1&size=2000000").status(), 400);
        assert_eq!(get("/stream?n=x").status(), 400);
    }

    #[test]
    fn sleep_is_bounded_and_validated() {
        assert_eq!(get("/sleep?ms=1").status(), 200);
        assert_eq!(get("/sleep?ms=60001").status(), 400);
        assert_eq!(get("/sleep?ms=abc").status(), 400);
    }

    #[test]
    fn cpu_depends_on_rounds() {
        assert_ne!(get("/cpu?n=10").body_bytes(), get("/cpu?n=11").body_bytes());
    }

    #[test]
    fn echo_returns_the_body() {
        let request = Request::builder("POST", "/echo")
            .header("Content-Type", "text/csv")
            .body(&b"a,b\n1,2\n"[..])
            .build();
        let response = Demo.handle(request);
        assert_eq!(response.status(), 200);
        assert_eq!(response.body_bytes(), b"a,b\n1,2\n");
        assert!(
            response
                .headers()
                .iter()
                .any(|(name, value)| name == "Content-Type" && value == b"text/csv")
        );
    }

    #[test]
    fn wrong_method_and_unknown_path() {
        assert_eq!(
            Demo.handle(Request::builder("GET", "/echo").build())
                .status(),
            405
        );
        assert_eq!(
            Demo.handle(Request::builder("DELETE", "/").build())
                .status(),
            405
        );
        assert_eq!(get("/nope").status(), 404);
    }

    #[test]
    #[should_panic(expected = "on purpose")]
    fn panic_route_panics() {
        get("/panic");
    }
}
