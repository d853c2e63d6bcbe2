//! The worker's budget for bodies being received, as a connection uses it: reserved from the
//! head on, given back at dispatch or the close, `503` for a body that does not fit; and the
//! spill writes of one body per turn.

use super::harness::*;
use crate::worker::budget::{BodyBudget, SPILLS_PER_TURN};
use crate::worker::conn::*;

fn post(length: usize, body: &[u8]) -> Vec<u8> {
    let mut bytes =
        format!("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: {length}\r\n\r\n").into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

#[test]
fn a_body_holds_what_arrived_of_it_never_what_it_announced_until_dispatch() {
    let mut test = Test::new(); // body_buffer 1024
    test.budget = BodyBudget::new(4096, 1 << 20);
    test.send(&post(3000, b"abc"));
    assert!(test.event().is_empty());
    let used = test.budget.used();
    assert_eq!(
        (used.memory, used.disk),
        (3, 0),
        "a Content-Length of 3000 reserves only the 3 bytes that came"
    );
    test.send(&vec![b'x'; 1500]);
    assert!(test.event().is_empty());
    let used = test.budget.used();
    assert_eq!(
        (used.memory, used.disk),
        (1024, 1503),
        "past body_buffer: on disk, all of it"
    );
    test.send(&vec![b'x'; 1497]);
    assert_eq!(names(&test.event()), ["dispatch POST /"]);
    let used = test.budget.used();
    assert_eq!(
        (used.memory, used.disk),
        (0, 0),
        "the request owns its body now"
    );
}

#[test]
fn a_body_that_does_not_fit_is_answered_503_and_the_connection_lingers() {
    let mut test = Test::new();
    test.budget = BodyBudget::new(4096, 1 << 20);
    let mut other = None;
    test.budget
        .reserve(
            &mut other,
            crate::worker::budget::Need {
                memory: 4000,
                disk: 0,
            },
        )
        .unwrap();
    test.send(&post(200, &[b'a'; 100]));
    assert_eq!(names(&test.event()), ["log 503"], "4000 + 100 > 4096");
    let received = test.received();
    assert!(received.starts_with("HTTP/1.1 503 "), "{received}");
    assert!(received.contains("\r\nRetry-After: 1\r\n"), "{received}");
    assert!(received.contains("\r\nConnection: close\r\n"), "{received}");
    assert_eq!(test.state(), "lingering");
    assert_eq!(
        test.budget.used().memory,
        4000,
        "the refused body holds nothing"
    );
    drop(other);
    // Room again: the next connection's body is taken.
    let mut next = Test::new();
    next.budget = test.budget.clone();
    next.send(&post(200, &[b'a'; 100]));
    assert!(next.event().is_empty());
    assert_eq!(next.budget.used().memory, 100);
    // A connection closed mid-body gives its reservation back.
    next.close_input();
    assert_eq!(names(&next.event()), ["close"]);
    assert_eq!(next.budget.used().memory, 0);
}

#[test]
fn a_chunked_body_reserves_as_it_grows() {
    let mut test = Test::new(); // body_buffer 1024
    test.budget = BodyBudget::new(1024, 2000);
    let mut bytes = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    bytes.extend_from_slice(format!("{:x}\r\n", 1500).as_bytes());
    bytes.extend_from_slice(&[b'x'; 1500]);
    bytes.extend_from_slice(b"\r\n");
    test.send(&bytes);
    assert!(test.event().is_empty());
    let used = test.budget.used();
    assert_eq!((used.memory, used.disk), (1024, 1500));
    let mut bytes = format!("{:x}\r\n", 600).into_bytes();
    bytes.extend_from_slice(&[b'x'; 600]);
    test.send(&bytes);
    assert_eq!(
        names(&test.event()),
        ["log 503"],
        "2100 bytes past body_disk"
    );
    assert_eq!(test.budget.used().disk, 0);
}

#[test]
fn a_fast_body_spills_a_bounded_number_of_pieces_per_turn() {
    let mut test = Test::with(Settings {
        body_buffer: 0,
        ..settings()
    });
    let length = (SPILLS_PER_TURN + 4) * 64 * 1024 * 2;
    test.send(&post(length, &vec![b'x'; length]));
    let mut turns = 0;
    let mut actions = test.event();
    while names(&actions) == ["backlog"] {
        turns += 1;
        actions = test.run(|conn, ctx| conn.on_event(false, ctx));
    }
    assert_eq!(names(&actions), ["dispatch POST /"]);
    assert!(turns >= 2, "{turns} turns");
    let [Action::Dispatch { body, .. }] = &actions[..] else {
        unreachable!()
    };
    assert_eq!(body.len(), length as u64);
}
