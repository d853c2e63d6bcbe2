//! A connection on a `proxy_protocol` listener: its PROXY header first, then HTTP.

use super::*;

const V1: &[u8] = b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n";
const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n";

fn v2_local() -> Vec<u8> {
    let mut bytes = crate::proxy_protocol::V2_SIGNATURE.to_vec();
    bytes.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    bytes
}

#[test]
fn the_header_names_the_client_and_the_request_follows() {
    let mut test = Test::proxied("10.0.0.2:5555");
    assert_eq!(test.state(), "proxy header");
    assert!(test.conn.is_idle(), "nothing came yet");
    test.send(&[V1, GET].concat());
    assert_eq!(names(&test.event()), ["dispatch GET /x"]);
    assert_eq!(test.conn.peer, Some("203.0.113.7:40000".parse().unwrap()));
}

#[test]
fn a_header_split_over_two_writes_waits_for_its_end() {
    let mut test = Test::proxied("10.0.0.2:5555");
    test.send(&V1[..20]);
    assert!(test.event().is_empty());
    assert_eq!(test.state(), "proxy header");
    assert!(!test.conn.is_idle(), "part of a header came");
    assert!(
        test.conn.stream.input.is_empty(),
        "the header's bytes were taken"
    );
    test.send(&V1[20..]);
    assert!(test.event().is_empty());
    assert_eq!(test.state(), "reading");
    test.send(GET);
    assert_eq!(names(&test.event()), ["dispatch GET /x"]);
    assert_eq!(test.conn.peer, Some("203.0.113.7:40000".parse().unwrap()));
}

#[test]
fn only_the_header_is_taken_off_the_socket() {
    let mut test = Test::proxied("10.0.0.2:5555");
    test.send(&[&v2_local()[..], b"\x16\x03\x01 not for the header"].concat());
    test.run(|conn, ctx| {
        assert!(conn.read_proxy_header(ctx));
    });
    let mut rest = Vec::new();
    test.conn.stream.read_to_end(&mut rest).ok();
    assert_eq!(
        rest, b"\x16\x03\x01 not for the header",
        "what follows stays"
    );
}

#[test]
fn local_keeps_the_socket_peer() {
    let mut test = Test::proxied("10.0.0.2:5555");
    test.send(&[&v2_local()[..], GET].concat());
    assert_eq!(names(&test.event()), ["dispatch GET /x"]);
    assert_eq!(test.conn.peer, Some("10.0.0.2:5555".parse().unwrap()));
}

#[test]
fn a_truncated_header_then_the_end_closes_without_a_response() {
    let mut test = Test::proxied("10.0.0.2:5555");
    test.send(&V1[..30]);
    assert!(test.event().is_empty());
    test.close_input();
    assert_eq!(names(&test.event()), ["close"]);
    assert_eq!(test.received(), "");
}

#[test]
fn a_request_in_place_of_the_header_closes_without_a_response() {
    let mut test = Test::proxied("10.0.0.2:5555");
    test.send(GET);
    assert_eq!(names(&test.event()), ["close"]);
    assert_eq!(test.received(), "");
    assert_eq!(test.conn.stream.input.len(), 1, "nothing of it was read");
}

#[test]
fn a_header_that_does_not_come_in_time_closes_the_connection() {
    let mut test = Test::proxied("10.0.0.2:5555");
    test.send(&V1[..5]);
    assert!(test.event().is_empty());
    assert_eq!(test.expiry_in(SEC), None);
    assert_eq!(test.expiry_in(11 * SEC), Some(Expired::ProxyHeader));
    let actions = test.run(|conn, ctx| conn.on_expired(Expired::ProxyHeader, ctx));
    assert_eq!(names(&actions), ["close"]);
    assert_eq!(test.received(), "");
}
