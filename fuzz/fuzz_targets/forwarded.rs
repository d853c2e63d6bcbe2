//! Fuzzes `tine::forwarded`: who the client is behind trusted proxies, from header lines a
//! client wrote.
//!
//! The first bytes choose the setting (`x-forwarded-for` or `forwarded`), the peer, the trusted
//! networks, and a line a trusted proxy appends; the rest is header lines, one per `\n`, each
//! line's first byte choosing the field name. Checked on every input:
//! - no panic;
//! - from no peer or an untrusted one, the peer is the client and the scheme `http`;
//! - from a trusted peer, the answer is the one the walk over [`forwarded::chain`] gives: the
//!   peer or one of the hops, never a hop left of an untrusted one or of one that is not an
//!   address, and the scheme the rule gives;
//! - the chain has one hop per non-empty element of the field's lines joined with ", ", and
//!   joining the lines into one changes nothing;
//! - the header the setting does not name never changes the answer;
//! - whatever the client sent, when a trusted proxy appends its own line naming an untrusted
//!   client (and, for `X-Forwarded-For`, an `X-Forwarded-Proto` line), that client and its
//!   scheme are the answer: a client cannot spoof past a proxy;
//! - a trusted network that parses prints back to itself.

#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use tine::forwarded::{self, Client, ForwardedHeader, Hop, Trusted};

const PEERS: [Option<&str>; 8] = [
    Some("127.0.0.1"),
    Some("10.9.8.7"),
    Some("203.0.113.9"),
    Some("::1"),
    Some("::ffff:10.0.0.1"),
    Some("2001:db8::5"),
    None,
    Some("192.0.2.1"),
];

/// Trusted networks; 127.0.0.1 is in every set, so the appended proxy line is always believed.
const TRUSTED: [&[&str]; 4] = [
    &["127.0.0.1", "10.0.0.0/8", "::1"],
    &["*"],
    &["127.0.0.1"],
    &["127.0.0.0/8", "2001:db8::/32", "::1"],
];

/// Clients the appended proxy line names: untrusted in every set but `*`.
const CLIENTS: [&str; 4] = ["203.0.113.7", "198.51.100.1", "2001:db9::7", "8.8.8.8"];

const NAMES: [&str; 6] = [
    "X-Forwarded-For",
    "Forwarded",
    "X-Forwarded-Proto",
    "x-forwarded-for",
    "FORWARDED",
    "Via",
];

type Fields = Vec<(String, Vec<u8>)>;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("a test address")
}

fn run(
    peer: Option<IpAddr>,
    fields: &Fields,
    trusted: &[Trusted],
    header: ForwardedHeader,
) -> Client {
    let fields = fields.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
    forwarded::client(peer, fields, trusted, header)
}

fn chain(fields: &Fields, header: ForwardedHeader) -> Vec<Hop> {
    forwarded::chain(
        fields.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
        header,
    )
}

/// The lines of `name`, lossily decoded and joined with ", " (the combined field value).
fn joined(fields: &Fields, name: &str) -> String {
    let lines: Vec<String> = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect();
    lines.join(", ")
}

/// The non-empty elements of a combined value, trimmed of spaces and tabs.
fn elements(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(|e| e.trim_matches([' ', '\t']))
        .filter(|e| !e.is_empty())
        .collect()
}

/// What a walk over `hops` from the right must give, written as a count of the trusted hops at
/// the right end: (address, scheme from the last element read).
fn expected(peer: IpAddr, hops: &[Hop], trusted: &[Trusted]) -> (IpAddr, Option<&'static str>) {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| t.contains(ip));
    let passed = hops
        .iter()
        .rev()
        .take_while(|hop| hop.addr.is_some_and(is_trusted))
        .count();
    if passed == hops.len() {
        return match hops.first() {
            Some(hop) => (hop.addr.expect("trusted"), hop.scheme),
            None => (peer, None),
        };
    }
    let stop = hops[hops.len() - 1 - passed];
    let believed = if passed == 0 {
        peer
    } else {
        hops[hops.len() - passed].addr.expect("trusted")
    };
    (stop.addr.unwrap_or(believed), stop.scheme)
}

fuzz_target!(|data: &[u8]| {
    let [setting, proxy, proxy2, rest @ ..] = data else {
        return;
    };
    let header = if setting & 1 == 0 {
        ForwardedHeader::XForwardedFor
    } else {
        ForwardedHeader::Forwarded
    };
    let peer = PEERS[usize::from(setting >> 1 & 7)].map(ip);
    let nets = TRUSTED[usize::from(setting >> 4 & 3)];
    let trusted: Vec<Trusted> = nets
        .iter()
        .map(|n| n.parse().expect("a test network"))
        .collect();
    let fields: Fields = rest
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let (name, value) = line.split_first()?;
            Some((
                NAMES[usize::from(*name) % NAMES.len()].to_owned(),
                value.to_vec(),
            ))
        })
        .collect();

    // The answer against the walk over the chain.
    let hops = chain(&fields, header);
    let answer = run(peer, &fields, &trusted, header);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| t.contains(ip));
    match peer {
        Some(p) if is_trusted(p) => {
            let (addr, scheme) = expected(p, &hops, &trusted);
            assert_eq!(answer.addr, Some(addr), "{hops:?}");
            let scheme = match header {
                ForwardedHeader::Forwarded => scheme.unwrap_or("http"),
                ForwardedHeader::XForwardedFor => {
                    match elements(&joined(&fields, "x-forwarded-proto")).last() {
                        Some(p) if p.eq_ignore_ascii_case("https") => "https",
                        _ => "http",
                    }
                }
            };
            assert_eq!(answer.scheme, scheme, "{hops:?}");
        }
        _ => assert_eq!(
            answer,
            Client {
                addr: peer,
                scheme: "http"
            }
        ),
    }

    // One hop per element of the combined value; the lines joined into one change nothing.
    let combined = joined(&fields, header.as_str());
    assert_eq!(hops.len(), elements(&combined).len(), "{combined:?}");
    let mut one_line: Fields = fields
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case(header.as_str()))
        .cloned()
        .collect();
    one_line.push((header.as_str().to_owned(), combined.clone().into_bytes()));
    assert_eq!(chain(&one_line, header), hops, "{combined:?}");

    // The header the setting does not name is never read.
    let own: Fields = fields
        .iter()
        .filter(|(n, _)| match header {
            ForwardedHeader::XForwardedFor => !n.eq_ignore_ascii_case("forwarded"),
            ForwardedHeader::Forwarded => !n.to_ascii_lowercase().starts_with("x-forwarded-"),
        })
        .cloned()
        .collect();
    assert_eq!(run(peer, &own, &trusted, header), answer);

    // A trusted proxy appends its line: what the client wrote before no longer matters.
    if nets != ["*"] {
        let client = CLIENTS[usize::from(proxy & 3)];
        let hops_after = usize::from(proxy >> 2 & 3);
        let port = proxy >> 4 & 1 == 1;
        let https = proxy >> 5 & 1 == 1;
        let separate_lines = proxy >> 6 & 1 == 1;
        let node = match (client.contains(':'), port) {
            (true, true) => format!("[{client}]:{}", u16::from(*proxy2) + 1),
            (true, false) if proxy2 & 1 == 1 => format!("[{client}]"),
            (false, true) => format!("{client}:{}", u16::from(*proxy2) + 1),
            _ => client.to_owned(),
        };
        let mut appended = fields.clone();
        let mut push =
            |value: String| appended.push((header.as_str().to_owned(), value.into_bytes()));
        let scheme = if https { "https" } else { "http" };
        // The client's hop, then each trusted proxy's, on one line or one line each.
        let (mut line, hop) = match header {
            ForwardedHeader::XForwardedFor => (node, "127.0.0.1"),
            ForwardedHeader::Forwarded => {
                let quoted = node.contains(':') || proxy2 & 2 == 2;
                let node = if quoted { format!("\"{node}\"") } else { node };
                let by = if proxy2 & 4 == 4 { ";by=_proxy" } else { "" };
                (
                    format!("for={node};proto={scheme}{by}"),
                    "for=127.0.0.1;proto=http",
                )
            }
        };
        for _ in 0..hops_after {
            if separate_lines {
                push(std::mem::take(&mut line));
            } else {
                line.push_str(", ");
            }
            line.push_str(hop);
        }
        push(line);
        if header == ForwardedHeader::XForwardedFor {
            appended.push(("X-Forwarded-Proto".to_owned(), scheme.as_bytes().to_vec()));
        }
        let got = run(Some(ip("127.0.0.1")), &appended, &trusted, header);
        assert_eq!(
            got,
            Client {
                addr: Some(ip(client)),
                scheme
            },
            "{appended:?}"
        );
    }

    // Trusted networks print back to what they parse from.
    if let Some((_, first)) = fields.first() {
        if let Ok(text) = std::str::from_utf8(first) {
            if let Ok(net) = text.parse::<Trusted>() {
                assert_eq!(net.to_string().parse::<Trusted>(), Ok(net), "{text:?}");
            }
        }
    }
});
