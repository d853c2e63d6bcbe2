//! Parse benchmark: ns per request for tine's `Decoder` against `httparse` alone, on the same
//! typical request heads (`cargo bench --bench parse`).
//!
//! httparse alone is the floor: it borrows everything from the buffer and checks bytes only.
//! tine's decoder adds what httparse leaves to its caller (finding the end of the head under the
//! limits, request-line, target, Host and framing rules, owned strings for the handler, the
//! body), so the gap is the price of those. A plain `harness = false` binary keeps the build
//! free of benchmark crates; it reports the median of several timed batches.

use std::hint::black_box;
use std::time::{Duration, Instant};

use tine::http::{Decoded, Decoder, Limits};

const CURL_GET: &[u8] =
    b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

const BROWSER_GET: &[u8] = b"GET /articles/2024/sans-io-parsers?page=2&sort=new HTTP/1.1\r\n\
Host: www.example.com\r\n\
Connection: keep-alive\r\n\
Cache-Control: max-age=0\r\n\
sec-ch-ua: \"Chromium\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-GB,en;q=0.9,fr;q=0.8\r\n\
Cookie: session=4f9c2a7e1b3d4c5a8e6f; theme=dark; consent=yes\r\n\r\n";

const SMALL_POST: &[u8] = b"POST /api/v1/items HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: python-requests/2.31.0\r\n\
Accept: application/json\r\n\
Content-Type: application/json\r\n\
Content-Length: 45\r\n\r\n\
{\"name\":\"widget\",\"quantity\":3,\"price\":\"9.99\"}";

/// Timed batches per measurement; the fastest and the median are reported. The fastest is the
/// steadier figure on a shared machine, where other work only ever adds time.
const BATCHES: usize = 15;
/// Wall time to aim for per batch, so fast and slow cases are measured alike.
const BATCH_TIME: Duration = Duration::from_millis(40);

/// (fastest, median) ns per call of `f`, over batches sized to take about `BATCH_TIME` each.
fn measure(mut f: impl FnMut()) -> (f64, f64) {
    let mut iterations = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..iterations {
            f();
        }
        if start.elapsed() >= BATCH_TIME / 4 {
            break;
        }
        iterations *= 2;
    }
    iterations *= 4;
    let mut samples: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed().as_nanos() as f64 / iterations as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    (samples[0], samples[BATCHES / 2])
}

/// httparse alone: the request line and headers into stack slots, nothing owned.
fn httparse_only(input: &[u8]) -> usize {
    let mut slots = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(input) {
        Ok(httparse::Status::Complete(n)) => n + req.headers.len(),
        other => panic!("bench input does not parse: {other:?}"),
    }
}

/// tine's decoder on a kept connection: head, validation and body, as the worker calls it.
fn tine_decode(decoder: &mut Decoder, input: &[u8]) -> usize {
    match decoder.decode(input) {
        Ok(Decoded::Complete {
            consumed,
            head,
            body,
        }) => consumed + head.headers.len() + body.len(),
        other => panic!("bench input does not decode: {other:?}"),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a further argument filters cases by name.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let cases = [
        ("curl GET (3 fields)", CURL_GET),
        ("browser GET (12 fields)", BROWSER_GET),
        ("POST, 45-byte body (5 fields)", SMALL_POST),
    ];
    println!(
        "{:<31} {:>5} {:>21} {:>21} {:>6}",
        "ns per request (fastest/median)", "bytes", "tine Decoder", "httparse alone", "ratio"
    );
    for (name, input) in cases {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let mut decoder = Decoder::new(Limits::default());
        let tine = measure(|| {
            black_box(tine_decode(&mut decoder, black_box(input)));
        });
        // httparse sees only the head: the body is not its business.
        let head_len = input
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(input.len(), |i| i + 4);
        let head = &input[..head_len];
        let alone = measure(|| {
            black_box(httparse_only(black_box(head)));
        });
        println!(
            "{:<31} {:>5} {:>10.0} / {:>8.0} {:>10.0} / {:>8.0} {:>5.1}x",
            name,
            input.len(),
            tine.0,
            tine.1,
            alone.0,
            alone.1,
            tine.0 / alone.0
        );
    }
}
