use super::*;

fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut bytes = V2_SIGNATURE.to_vec();
    bytes.push(command);
    bytes.push(family);
    bytes.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    bytes.extend_from_slice(block);
    bytes
}

fn v2_tcp4(src: [u8; 4], port: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut block = src.to_vec();
    block.extend_from_slice(&[10, 0, 0, 1]);
    block.extend_from_slice(&port.to_be_bytes());
    block.extend_from_slice(&443u16.to_be_bytes());
    block.extend_from_slice(tlvs);
    v2(0x21, 0x11, &block)
}

fn v2_tcp6(src: Ipv6Addr, port: u16) -> Vec<u8> {
    let mut block = src.octets().to_vec();
    block.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    block.extend_from_slice(&port.to_be_bytes());
    block.extend_from_slice(&443u16.to_be_bytes());
    v2(0x21, 0x21, &block)
}

fn complete(bytes: &[u8]) -> Header {
    match parse(bytes) {
        Ok(Status::Complete(header)) => header,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bytes)),
    }
}

fn addr(text: &str) -> Option<SocketAddr> {
    Some(text.parse().unwrap())
}

/// Every valid header of each version and family, with what follows it, and its answer.
fn valid() -> Vec<(Vec<u8>, Option<SocketAddr>)> {
    vec![
        (
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n".to_vec(),
            addr("192.0.2.1:56324"),
        ),
        (
            b"PROXY TCP6 2001:db8::1 ::1 0 65535\r\n".to_vec(),
            addr("[2001:db8::1]:0"),
        ),
        (
            b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n".to_vec(),
            addr("[::ffff:192.0.2.1]:1"),
        ),
        (b"PROXY UNKNOWN\r\n".to_vec(), None),
        (b"PROXY UNKNOWN whatever  goes here\r\n".to_vec(), None),
        (
            v2_tcp4([203, 0, 113, 7], 40000, &[]),
            addr("203.0.113.7:40000"),
        ),
        (
            // An ALPN TLV and a NOOP one, skipped.
            v2_tcp4([203, 0, 113, 7], 1, &[0x01, 0, 2, b'h', b'2', 0x04, 0, 0]),
            addr("203.0.113.7:1"),
        ),
        (
            v2_tcp6("2001:db8::7".parse().unwrap(), 8080),
            addr("[2001:db8::7]:8080"),
        ),
        // LOCAL: the balancer's own health check, whatever addresses it carries.
        (v2(0x20, 0x00, &[]), None),
        (v2(0x20, 0x11, &[1; 12]), None),
        // UNSPEC, UNIX, UDP: no TCP client to name.
        (v2(0x21, 0x00, &[]), None),
        (v2(0x21, 0x31, &[0; 216]), None),
        (v2(0x21, 0x12, &[1; 12]), None),
    ]
}

#[test]
fn valid_headers_of_each_version_and_family() {
    for (bytes, source) in valid() {
        let mut with_request = bytes.clone();
        with_request.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let header = complete(&with_request);
        assert_eq!(
            header.len,
            bytes.len(),
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(header.source, source);
        assert_eq!(header.version, if bytes[0] == b'P' { 1 } else { 2 });
    }
}

#[test]
fn every_truncation_of_a_valid_header_is_partial() {
    for (bytes, _) in valid() {
        for cut in 0..bytes.len() {
            assert_eq!(
                parse(&bytes[..cut]),
                Ok(Status::Partial),
                "{:?} cut at {cut}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }
}

#[test]
fn other_bytes_are_refused_at_once() {
    for first in [
        &b"G"[..],
        b"GET / HTTP/1.1\r\n",
        b"\x16\x03\x01",
        b"proxy ",
        b"PROXY  TCP4",
        b"PROXYTCP4",
        b"\r\n\r\n\0\r\nQUIT!",
        b"\r\r",
    ] {
        let want = if first.starts_with(b"PROXY ") {
            Invalid::V1Syntax
        } else {
            Invalid::Missing
        };
        assert_eq!(
            parse(first),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(first)
        );
    }
}

#[test]
fn bad_v1_lines_are_refused_where_they_go_wrong() {
    let table: [(&[u8], Invalid); 20] = [
        (b"PROXY TCP5 ", Invalid::V1Syntax),
        (b"PROXY tcp4 ", Invalid::V1Syntax),
        (b"PROXY TCP4 1.2.3.4  ", Invalid::V1Syntax),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", Invalid::V1Syntax),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", Invalid::V1Syntax),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", Invalid::V1Syntax),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rx", Invalid::V1Syntax),
        (b"PROXY TCP4\r\n", Invalid::V1Syntax),
        (b"PROXY \r\n", Invalid::V1Syntax),
        // Addresses of the other family, or no address at all.
        (b"PROXY TCP4 ::1 ", Invalid::V1Address),
        (b"PROXY TCP4 ::", Invalid::V1Address),
        (b"PROXY TCP6 1.2.3.4 ", Invalid::V1Address),
        (b"PROXY TCP4 1.2.3.256 ", Invalid::V1Address),
        (b"PROXY TCP4 01.2.3.4 ", Invalid::V1Address),
        (b"PROXY TCP4 localhost", Invalid::V1Address),
        // Ports: too big, signed, leading zeros, not digits.
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 ", Invalid::V1Port),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1", Invalid::V1Port),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 01", Invalid::V1Port),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2x", Invalid::V1Port),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 123456", Invalid::V1Port),
    ];
    for (bytes, want) in table {
        assert_eq!(
            parse(bytes),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn a_v1_line_gets_107_bytes_for_its_crlf() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(MAX_V1 - 2, b'x');
    line.extend_from_slice(b"\r\n");
    assert_eq!(complete(&line).len, MAX_V1);
    line.insert(20, b'x');
    assert_eq!(parse(&line), Err(Invalid::V1TooLong));
    assert_eq!(parse(&line[..MAX_V1]), Err(Invalid::V1TooLong));
}

#[test]
fn bad_v2_headers_are_refused() {
    let mut wrong_version = v2(0x21, 0x11, &[0; 12]);
    wrong_version[12] = 0x11;
    assert_eq!(parse(&wrong_version[..13]), Err(Invalid::V2Version));
    let table: [(Vec<u8>, Invalid); 5] = [
        (v2(0x22, 0x11, &[0; 12]), Invalid::V2Command),
        (v2(0x21, 0x41, &[0; 12]), Invalid::V2Family),
        (v2(0x21, 0x13, &[0; 12]), Invalid::V2Family),
        (v2(0x21, 0x11, &[0; 11]), Invalid::V2AddressBlock),
        (v2(0x21, 0x21, &[0; 35]), Invalid::V2AddressBlock),
    ];
    for (bytes, want) in table {
        assert_eq!(parse(&bytes), Err(want), "{bytes:?}");
    }
}

#[test]
fn a_v2_header_over_the_bound_is_refused_before_it_arrives() {
    let fits = v2(0x21, 0x11, &vec![0; MAX_HEADER - 16]);
    assert_eq!(complete(&fits).len, MAX_HEADER);
    let over = v2(0x21, 0x11, &vec![0; MAX_HEADER - 15]);
    assert_eq!(parse(&over[..16]), Err(Invalid::V2TooLong));
}

#[test]
fn every_reason_reads_as_a_sentence() {
    for reason in [
        Invalid::Missing,
        Invalid::V1TooLong,
        Invalid::V1Syntax,
        Invalid::V1Address,
        Invalid::V1Port,
        Invalid::V2Version,
        Invalid::V2Command,
        Invalid::V2Family,
        Invalid::V2TooLong,
        Invalid::V2AddressBlock,
    ] {
        let text = reason.to_string();
        assert!(text.contains("PROXY"), "{text}");
    }
    assert!(
        Invalid::V2TooLong
            .to_string()
            .contains(&MAX_HEADER.to_string())
    );
}

/// The fuzz target's properties (fuzz/fuzz_targets/proxy_protocol.rs) over valid headers
/// mutated at random, a fixed sequence: complete and partial answers hold for every prefix,
/// and a refusal holds, for the same reason, whatever follows.
#[test]
fn mutated_headers_keep_the_parsers_promises() {
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let seeds: Vec<Vec<u8>> = valid().into_iter().map(|(b, _)| b).collect();
    for round in 0..20_000 {
        let mut data = seeds[(next() as usize) % seeds.len()].clone();
        for _ in 0..(next() % 8) {
            let at = (next() as usize) % (data.len() + 1);
            match next() % 3 {
                0 if at < data.len() => data[at] = next() as u8,
                1 => data.insert(
                    at,
                    b"0123456789.: \r\nPROXYTCPUNKNOWN6f"[(next() % 32) as usize],
                ),
                _ if at < data.len() => {
                    data.remove(at);
                }
                _ => {}
            }
        }
        let answer = parse(&data);
        match answer {
            Ok(Status::Complete(h)) => {
                assert!(
                    h.len <= data.len() && h.len <= MAX_HEADER,
                    "{round} {data:?}"
                );
                assert_eq!(parse(&data[..h.len]), answer, "{data:?}");
                for cut in 0..h.len {
                    assert_eq!(parse(&data[..cut]), Ok(Status::Partial), "{data:?} {cut}");
                }
            }
            Ok(Status::Partial) => {
                for cut in 0..data.len() {
                    assert_eq!(parse(&data[..cut]), Ok(Status::Partial), "{data:?} {cut}");
                }
            }
            Err(reason) => {
                let mut longer = data.clone();
                longer.extend_from_slice(b" 1\r\n");
                assert_eq!(
                    parse(&longer),
                    Err(reason),
                    "{:?}",
                    String::from_utf8_lossy(&data)
                );
            }
        }
    }
}

/// HAProxy's `send-proxy-v2-ssl` after terminating TLS: a `PP2_TYPE_SSL` TLV whose `client`
/// field has `PP2_CLIENT_SSL`; found among other TLVs, and only in a whole one.
#[test]
fn the_ssl_tlv_says_the_client_came_over_tls() {
    // PP2_TYPE_ALPN "h2", then PP2_TYPE_SSL: client = SSL | CERT_CONN, verify = 0, and a
    // sub-TLV (PP2_SUBTYPE_SSL_VERSION "TLSv1.3").
    let alpn = [0x01, 0x00, 0x02, b'h', b'2'];
    let mut ssl = vec![0x20, 0x00, 0x0f, 0x03, 0, 0, 0, 0, 0x21, 0x00, 0x07];
    ssl.extend_from_slice(b"TLSv1.3");
    let header = complete(&v2_tcp4(
        [203, 0, 113, 7],
        40000,
        &[&alpn[..], &ssl].concat(),
    ));
    assert!(header.tls);
    assert_eq!(header.source, addr("203.0.113.7:40000"));
    // A plain connection to the balancer: client = 0.
    let plain = [0x20, 0x00, 0x05, 0x00, 0, 0, 0, 0];
    assert!(!complete(&v2_tcp4([203, 0, 113, 7], 40000, &plain)).tls);
    // No TLV, a TLV cut short, v1: not TLS.
    assert!(!complete(&v2_tcp4([203, 0, 113, 7], 40000, &[])).tls);
    assert!(!complete(&v2_tcp4([203, 0, 113, 7], 40000, &ssl[..6])).tls);
    assert!(!complete(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n").tls);
    // LOCAL: the balancer's own connection, whatever its TLVs say.
    let mut local = v2_tcp4([203, 0, 113, 7], 40000, &ssl);
    local[12] = 0x20;
    assert!(!complete(&local).tls);
}
