//! Fuzzes `tine::proxy_protocol`: the PROXY header (v1 and v2) a load balancer sends before a
//! connection's own bytes. Checked on every input:
//! - no panic;
//! - a complete header is at most `MAX_HEADER` bytes (a v1 one at most 107), within the input,
//!   and bytes after it never change the answer;
//! - every prefix of an input that is complete or partial is partial (a header is recognised
//!   only once whole, and nothing that could still become one is refused), and every input
//!   that extends an invalid one is invalid with the same reason (refusal is final).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tine::proxy_protocol::{MAX_HEADER, MAX_V1, Status, parse};

fuzz_target!(|data: &[u8]| {
    let answer = parse(data);
    match answer {
        Ok(Status::Complete(header)) => {
            assert!(header.len <= data.len());
            assert!(header.len <= MAX_HEADER);
            if header.version == 1 {
                assert!(header.len <= MAX_V1);
            }
            assert_eq!(parse(&data[..header.len]), answer, "what follows changed it");
            for cut in 0..header.len {
                assert_eq!(parse(&data[..cut]), Ok(Status::Partial), "cut at {cut}");
            }
        }
        Ok(Status::Partial) => {
            for cut in 0..data.len() {
                assert_eq!(parse(&data[..cut]), Ok(Status::Partial), "cut at {cut}");
            }
        }
        Err(reason) => {
            let mut longer = data.to_vec();
            longer.extend_from_slice(b" 1\r\n");
            assert_eq!(parse(&longer), Err(reason), "more bytes changed a refusal");
        }
    }
});
