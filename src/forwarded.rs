//! Who the client really is behind a proxy: the address and scheme a trusted proxy reports in
//! `X-Forwarded-For`/`X-Forwarded-Proto` or in RFC 7239 `Forwarded`. Pure: a peer and header
//! fields in, an answer out.
//!
//! # The rule
//!
//! - The headers are believed only when the peer is in `[server] forwarded_allow_ips`, and only
//!   the one the trusted proxy sets (`[server] forwarded_header`, a [`ForwardedHeader`]):
//!   `X-Forwarded-For`, with `X-Forwarded-Proto` for the scheme (the default: what nginx's usual
//!   `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for` sends and gunicorn reads), or
//!   `Forwarded` with its `for=` and `proto=`. The other one is ignored whole: a client's
//!   `Forwarded: for=...` passes untouched through a proxy that only appends to
//!   `X-Forwarded-For`, and must not be believed.
//! - Every line of the field counts, in order, as one list (the lines joined with `", "`):
//!   proxies append lines as well as values. Empty list elements are ignored (RFC 9110 §5.6.1).
//! - The walk starts at the right, at the hop the peer added, with the peer as the address
//!   believed so far. A hop that is an address becomes the address believed; when that address
//!   is not trusted, the walk stops there and it is the client.
//! - A hop that is not an address stops the walk, and the client is the address believed so far
//!   (the last trusted hop, or the peer). That covers RFC 7239's `unknown`, obfuscated
//!   identifiers (`_hidden`), a `Forwarded` element without a `for=` or with broken syntax, and
//!   garbage. Such a hop is never skipped: anything left of it may have been written by anyone.
//! - Hops are spelled `192.0.2.1`, `192.0.2.1:8080`, `[2001:db8::1]`, `[2001:db8::1]:8080` or
//!   `2001:db8::1`, a port being digits or an obfuscated `_name`; `Forwarded` values may be
//!   quoted, as RFC 7239 requires for the bracketed forms.
//! - Lists are split at every comma, and `Forwarded` elements at every semicolon, quoted or not:
//!   no `for` or `proto` value can hold either, and this way a client's unterminated quote
//!   cannot swallow the element a proxy appended after it.
//! - The scheme: with `X-Forwarded-For`, `https` when the last value of `X-Forwarded-Proto`
//!   (every line, as one list) is `https`; with `Forwarded`, when the `proto=` of the last
//!   element the walk read is `https` (each element read was added by a trusted proxy, and
//!   says how that proxy was reached). Otherwise, and from an untrusted peer, the scheme of the
//!   connection itself: `https` over TLS, else `http`.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A trusted network: an address with a prefix length, or everything (`*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trusted {
    /// Every peer.
    Any,
    /// A network, like `10.0.0.0/8` or a single `127.0.0.1`.
    Net(IpAddr, u8),
}

impl std::str::FromStr for Trusted {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "*" {
            return Ok(Trusted::Any);
        }
        let bad = || {
            format!(
                "invalid address {text:?}: expected an IP, a network like \"10.0.0.0/8\", or \"*\""
            )
        };
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (text, None),
        };
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Trusted::Net(ip, prefix))
    }
}

impl std::fmt::Display for Trusted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trusted::Any => f.write_str("*"),
            Trusted::Net(ip, prefix) if *prefix == if ip.is_ipv4() { 32 } else { 128 } => {
                write!(f, "{ip}")
            }
            Trusted::Net(ip, prefix) => write!(f, "{ip}/{prefix}"),
        }
    }
}

/// Whether `ip` is in one of the `trusted` networks (`[server] forwarded_allow_ips`): a peer
/// whose forwarded headers, or PROXY protocol header, are believed.
pub fn trusts(trusted: &[Trusted], ip: IpAddr) -> bool {
    trusted.iter().any(|t| t.contains(ip))
}

impl Trusted {
    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match *self {
            Trusted::Any => true,
            Trusted::Net(net, prefix) => match (canonical(net), ip) {
                (IpAddr::V4(net), IpAddr::V4(ip)) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                    u32::from(net) & mask == u32::from(ip) & mask
                }
                (IpAddr::V6(net), IpAddr::V6(ip)) => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                    u128::from(net) & mask == u128::from(ip) & mask
                }
                _ => false,
            },
        }
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The header a trusted proxy reports the client in: `[server] forwarded_header`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` for the address, `X-Forwarded-Proto` for the scheme.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded`: `for=` and `proto=`.
    Forwarded,
}

impl ForwardedHeader {
    /// Both, in the order error messages list them.
    pub const ALL: [ForwardedHeader; 2] =
        [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded];

    /// The name used in the config file, which is also the field's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

impl std::fmt::Display for ForwardedHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ForwardedHeader {
    type Err = String;

    /// Parses a field name as `server.forwarded_header` accepts it, in any case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ForwardedHeader::ALL
            .into_iter()
            .find(|h| h.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                format!("unknown header {text:?}: expected \"x-forwarded-for\" or \"forwarded\"")
            })
    }
}

/// The client as the server should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The client's address: the peer's, or the one a trusted proxy reported.
    pub addr: Option<IpAddr>,
    /// `http` or `https`.
    pub scheme: &'static str,
}

/// One hop of the forwarding chain, as the proxy that added it wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// The address it names; `None` when it names none (`unknown`, an obfuscated identifier, a
    /// `Forwarded` element without `for=` or with broken syntax, garbage).
    pub addr: Option<IpAddr>,
    /// A `Forwarded` element's `proto=`: `https`, or `http` for any other; `None` without one,
    /// and always for `X-Forwarded-For`.
    pub scheme: Option<&'static str>,
}

/// Works out the client from the peer address and the request's header fields (name, value),
/// by the rule in the [module documentation](self); `direct` is the connection's own scheme
/// (`https` over TLS, else `http`).
pub fn client<'a>(
    peer: Option<IpAddr>,
    fields: impl IntoIterator<Item = (&'a str, &'a [u8]), IntoIter: Clone>,
    trusted: &[Trusted],
    header: ForwardedHeader,
    direct: &'static str,
) -> Client {
    let is_trusted = |ip: IpAddr| trusts(trusted, ip);
    let peer_ip = match peer {
        Some(ip) if is_trusted(ip) => ip,
        addr => {
            return Client {
                addr,
                scheme: direct,
            };
        }
    };
    let fields = fields.into_iter();
    let mut addr = peer_ip;
    let mut scheme = None;
    for hop in hops_from_the_right(header, &lines(fields.clone(), header.as_str())) {
        scheme = hop.scheme;
        match hop.addr {
            Some(ip) => {
                addr = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            None => break,
        }
    }
    if header == ForwardedHeader::XForwardedFor {
        let proto = lines(fields, "x-forwarded-proto");
        scheme = list_from_the_right(&proto).next().map(scheme_of);
    }
    Client {
        addr: Some(addr),
        scheme: scheme.unwrap_or(direct),
    }
}

/// The forwarding chain `header` reports among `fields`, leftmost (farthest) hop first, every
/// line of the field in order. [`client`] walks it from the right.
pub fn chain<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    header: ForwardedHeader,
) -> Vec<Hop> {
    let mut hops: Vec<Hop> = hops_from_the_right(header, &lines(fields, header.as_str())).collect();
    hops.reverse();
    hops
}

/// Optional white space (RFC 9110 §5.6.3).
const OWS: [char; 2] = [' ', '\t'];

/// The values of every field called `name`, in order.
fn lines<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    name: &str,
) -> Vec<Cow<'a, str>> {
    fields
        .into_iter()
        .filter(|(field, _)| field.eq_ignore_ascii_case(name))
        .map(|(_, value)| String::from_utf8_lossy(value))
        .collect()
}

/// The non-empty elements of the list `lines` make, trimmed, rightmost first.
fn list_from_the_right<'a>(lines: &'a [Cow<'a, str>]) -> impl Iterator<Item = &'a str> + 'a {
    lines
        .iter()
        .rev()
        .flat_map(|line| line.rsplit(','))
        .map(|element| element.trim_matches(OWS))
        .filter(|element| !element.is_empty())
}

fn hops_from_the_right<'a>(
    header: ForwardedHeader,
    lines: &'a [Cow<'a, str>],
) -> impl Iterator<Item = Hop> + 'a {
    list_from_the_right(lines).map(move |element| match header {
        ForwardedHeader::XForwardedFor => Hop {
            addr: parse_node(element),
            scheme: None,
        },
        ForwardedHeader::Forwarded => parse_element(element),
    })
}

fn scheme_of(proto: &str) -> &'static str {
    if proto.eq_ignore_ascii_case("https") {
        "https"
    } else {
        "http"
    }
}

/// One RFC 7239 element, `pair;pair;...`; a hop without an address when its syntax is broken
/// or it repeats `for` or `proto`.
fn parse_element(element: &str) -> Hop {
    const BROKEN: Hop = Hop {
        addr: None,
        scheme: None,
    };
    let mut node = None;
    let mut proto = None;
    for pair in element.split(';').map(|pair| pair.trim_matches(OWS)) {
        if pair.is_empty() {
            continue;
        }
        let Some((name, value)) = pair.split_once('=') else {
            return BROKEN;
        };
        let Some(value) = unquote(value) else {
            return BROKEN;
        };
        let slot = if name.eq_ignore_ascii_case("for") {
            &mut node
        } else if name.eq_ignore_ascii_case("proto") {
            &mut proto
        } else if name.is_empty() || !name.bytes().all(is_tchar) {
            return BROKEN;
        } else {
            continue;
        };
        if slot.replace(value).is_some() {
            return BROKEN;
        }
    }
    Hop {
        addr: node.as_deref().and_then(parse_node),
        scheme: proto.as_deref().map(scheme_of),
    }
}

/// A value as written, or a quoted string's content with its `\x` escapes undone; `None` for a
/// quoted string that does not end where the value does.
fn unquote(value: &str) -> Option<Cow<'_, str>> {
    let Some(quoted) = value.strip_prefix('"') else {
        return (!value.contains('"')).then_some(Cow::Borrowed(value));
    };
    let mut text = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => text.push(chars.next()?),
            '"' => return chars.as_str().is_empty().then_some(Cow::Owned(text)),
            c => text.push(c),
        }
    }
    None
}

/// A token character (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An address as proxies write it, by the spellings in the module documentation.
fn parse_node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    let (ip, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            let v6: Ipv6Addr = v6.parse().ok()?;
            if after.is_empty() {
                return Some(IpAddr::V6(v6));
            }
            (IpAddr::V6(v6), after.strip_prefix(':')?)
        }
        None => {
            let (v4, port) = text.split_once(':')?;
            (IpAddr::V4(v4.parse::<Ipv4Addr>().ok()?), port)
        }
    };
    let digits = (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit());
    let obfuscated = port.strip_prefix('_').is_some_and(|name| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    });
    (digits || obfuscated).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Trusted> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let net: Trusted = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(
            net.contains(ip("::ffff:10.0.0.1")),
            "v4-mapped counts as v4"
        );
        let one: Trusted = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: Trusted = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!("*".parse::<Trusted>().unwrap().contains(ip("8.8.8.8")));
        assert!("10.0.0.0/33".parse::<Trusted>().is_err());
        assert!("localhost".parse::<Trusted>().is_err());
        assert_eq!(
            "10.0.0.0/8".parse::<Trusted>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(one.to_string(), "127.0.0.1");
    }

    use ForwardedHeader::{Forwarded, XForwardedFor};

    /// The client `peer` is, sending `fields`, when `trusted` are trusted and `header` is read.
    fn who(
        peer: &str,
        fields: &[(&str, &str)],
        trusted: &[&str],
        header: ForwardedHeader,
    ) -> Client {
        let fields = fields.iter().map(|(name, value)| (*name, value.as_bytes()));
        client(Some(ip(peer)), fields, &nets(trusted), header, "http")
    }

    /// The answer naming `addr` and `scheme`.
    fn answer(addr: &str, scheme: &'static str) -> Client {
        Client {
            addr: Some(ip(addr)),
            scheme,
        }
    }

    /// The address `who` finds.
    fn addr(
        peer: &str,
        fields: &[(&str, &str)],
        trusted: &[&str],
        header: ForwardedHeader,
    ) -> IpAddr {
        who(peer, fields, trusted, header).addr.unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let fields = [
            ("X-Forwarded-For", "1.1.1.1"),
            ("X-Forwarded-Proto", "https"),
        ];
        let c = who("203.0.113.9", &fields, &["127.0.0.1"], XForwardedFor);
        assert_eq!(c, answer("203.0.113.9", "http"));
        let c = client(
            None,
            [("X-Forwarded-For", &b"1.1.1.1"[..])],
            &nets(&["*"]),
            XForwardedFor,
            "http",
        );
        assert_eq!(
            c,
            Client {
                addr: None,
                scheme: "http"
            },
            "no peer (a unix socket)"
        );
    }

    #[test]
    fn over_tls_the_scheme_is_https_unless_a_trusted_proxy_says_otherwise() {
        let over_tls = |peer: &str, fields: &[(&str, &str)], header| {
            let fields = fields.iter().map(|(name, value)| (*name, value.as_bytes()));
            client(
                Some(ip(peer)),
                fields,
                &nets(&["127.0.0.1"]),
                header,
                "https",
            )
        };
        let claims = [("X-Forwarded-Proto", "http")];
        assert_eq!(
            over_tls("203.0.113.9", &claims, XForwardedFor).scheme,
            "https"
        );
        assert_eq!(over_tls("127.0.0.1", &[], XForwardedFor).scheme, "https");
        assert_eq!(over_tls("127.0.0.1", &claims, XForwardedFor).scheme, "http");
        let forwarded = [("Forwarded", "for=198.51.100.7")];
        assert_eq!(over_tls("127.0.0.1", &forwarded, Forwarded).scheme, "https");
        let forwarded = [("Forwarded", "for=198.51.100.7;proto=http")];
        assert_eq!(over_tls("127.0.0.1", &forwarded, Forwarded).scheme, "http");
    }

    #[test]
    fn a_trusted_proxy_is_believed_up_to_the_first_untrusted_hop() {
        // client spoofs 6.6.6.6, real client 198.51.100.7, then an internal proxy 10.0.0.2
        let fields = [
            ("X-Forwarded-For", "6.6.6.6, 198.51.100.7, 10.0.0.2"),
            ("X-Forwarded-Proto", "https"),
        ];
        let c = who(
            "127.0.0.1",
            &fields,
            &["127.0.0.1", "10.0.0.0/8"],
            XForwardedFor,
        );
        assert_eq!(c.addr, Some(ip("198.51.100.7")));
        assert_eq!(c.scheme, "https");
        // Every hop trusted: the farthest one is the client.
        let fields = [("X-Forwarded-For", "10.0.0.9,10.0.0.2")];
        assert_eq!(
            addr(
                "127.0.0.1",
                &fields,
                &["127.0.0.1", "10.0.0.0/8"],
                XForwardedFor
            ),
            ip("10.0.0.9")
        );
        // No header: the peer itself.
        assert_eq!(
            addr("127.0.0.1", &[], &["127.0.0.1"], XForwardedFor),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn every_line_of_x_forwarded_for_counts() {
        // The client sent its own line; the proxy appended another rather than a value.
        let fields = [
            ("X-Forwarded-For", "6.6.6.6"),
            ("Accept", "*/*"),
            ("x-forwarded-for", "198.51.100.7"),
        ];
        assert_eq!(
            addr("127.0.0.1", &fields, &["127.0.0.1"], XForwardedFor),
            ip("198.51.100.7")
        );
        // The same as one line with the values joined.
        let joined = [("X-Forwarded-For", "6.6.6.6, 198.51.100.7")];
        assert_eq!(
            addr("127.0.0.1", &joined, &["127.0.0.1"], XForwardedFor),
            ip("198.51.100.7")
        );
        // A chain of trusted proxies spread over lines, and empty elements ignored.
        let fields = [
            ("X-Forwarded-For", "6.6.6.6, 198.51.100.7,"),
            ("X-Forwarded-For", ""),
            ("X-Forwarded-For", " ,10.1.1.1,\t10.2.2.2 "),
        ];
        let trusted = ["127.0.0.1", "10.0.0.0/8"];
        assert_eq!(
            addr("127.0.0.1", &fields, &trusted, XForwardedFor),
            ip("198.51.100.7")
        );
        // The scheme: the last value of every X-Forwarded-Proto line.
        let fields = [
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Proto", "http"),
        ];
        assert_eq!(
            who("127.0.0.1", &fields, &trusted, XForwardedFor).scheme,
            "http"
        );
        let fields = [("X-Forwarded-Proto", "http, HTTPS, ")];
        assert_eq!(
            who("127.0.0.1", &fields, &trusted, XForwardedFor).scheme,
            "https"
        );
    }

    #[test]
    fn only_the_configured_header_is_believed() {
        // Behind a proxy that appends to X-Forwarded-For, a client's own Forwarded passes
        // through untouched: it is ignored whole, proto included.
        let fields = [
            ("Forwarded", "for=6.6.6.6;proto=https"),
            ("X-Forwarded-For", "198.51.100.7"),
        ];
        let c = who("127.0.0.1", &fields, &["127.0.0.1"], XForwardedFor);
        assert_eq!(c, answer("198.51.100.7", "http"));
        let alone = [("Forwarded", "for=6.6.6.6;proto=https")];
        let c = who("127.0.0.1", &alone, &["127.0.0.1"], XForwardedFor);
        assert_eq!(c, answer("127.0.0.1", "http"));
        // And the other way round: X-Forwarded-* are ignored when Forwarded is the setting.
        let fields = [
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
            ("Forwarded", "for=198.51.100.7"),
        ];
        let c = who("127.0.0.1", &fields, &["127.0.0.1"], Forwarded);
        assert_eq!(c, answer("198.51.100.7", "http"));
    }

    #[test]
    fn forwarded_elements_with_brackets_ports_and_quotes() {
        let trusted = ["127.0.0.1", "10.0.0.0/8"];
        let fields = [(
            "Forwarded",
            "for=192.0.2.60;proto=http;by=203.0.113.43, for=\"[2001:db8:cafe::17]:4711\";proto=https",
        )];
        let c = who("127.0.0.1", &fields, &trusted, Forwarded);
        assert_eq!(c, answer("2001:db8:cafe::17", "https"));
        for (value, want) in [
            ("for=\"[2001:db8::1]\"", "2001:db8::1"),
            ("For=\"[2001:db8::1]:_port-1\"", "2001:db8::1"),
            ("for=192.0.2.1:8080", "192.0.2.1"),
            ("for=\"192.0.2.1:8080\"", "192.0.2.1"),
            ("for=\"\\192.0.2.1\"", "192.0.2.1"),
            ("by=10.0.0.1;for=192.0.2.1;host=example.com;", "192.0.2.1"),
        ] {
            let c = who("127.0.0.1", &[("Forwarded", value)], &trusted, Forwarded);
            assert_eq!(c.addr, Some(ip(want)), "{value}");
        }
        // Scheme from the last element read: the one that named the client.
        let fields = [
            ("Forwarded", "for=6.6.6.6;proto=http"),
            (
                "Forwarded",
                "for=198.51.100.7;proto=https, for=10.0.0.3;proto=http",
            ),
        ];
        let c = who("127.0.0.1", &fields, &trusted, Forwarded);
        assert_eq!(c, answer("198.51.100.7", "https"));
    }

    #[test]
    fn unknown_and_obfuscated_hops_stop_the_walk() {
        let trusted = ["127.0.0.1", "10.0.0.0/8"];
        // The proxy at 10.0.0.3 did not know its client: 10.0.0.3 is the last address
        // believed, and what the client wrote further left is never read.
        for value in [
            "for=6.6.6.6, for=unknown, for=10.0.0.3",
            "for=6.6.6.6, for=_hidden, for=10.0.0.3",
            "for=6.6.6.6, for=\"_h:_p\", for=10.0.0.3",
            "for=6.6.6.6, proto=https, for=10.0.0.3",
        ] {
            assert_eq!(
                addr("127.0.0.1", &[("Forwarded", value)], &trusted, Forwarded),
                ip("10.0.0.3"),
                "{value}"
            );
        }
        // The nearest hop hidden: the peer is the client, with the scheme its element gives.
        let c = who(
            "127.0.0.1",
            &[("Forwarded", "for=6.6.6.6, for=unknown;proto=https")],
            &trusted,
            Forwarded,
        );
        assert_eq!(c, answer("127.0.0.1", "https"));
        for value in [
            "6.6.6.6, unknown",
            "6.6.6.6, _hidden",
            "6.6.6.6,unknown, 10.0.0.3",
        ] {
            let got = addr(
                "127.0.0.1",
                &[("X-Forwarded-For", value)],
                &trusted,
                XForwardedFor,
            );
            let want = if value.ends_with("10.0.0.3") {
                "10.0.0.3"
            } else {
                "127.0.0.1"
            };
            assert_eq!(got, ip(want), "{value}");
        }
    }

    #[test]
    fn garbage_hops_stop_the_walk_rather_than_being_skipped() {
        let trusted = ["127.0.0.1"];
        for value in [
            "6.6.6.6, garbage",
            "6.6.6.6, 1.2.3.4.5",
            "6.6.6.6, 1.2.3.4:http",
            "6.6.6.6, 1.2.3.4:123456",
            "6.6.6.6, [1.2.3.4]",
            "6.6.6.6, [::1]x",
            "6.6.6.6, [::1]:",
            "6.6.6.6, 1.2.3.4 5.6.7.8",
            "6.6.6.6, \u{fffd}",
            "6.6.6.6, fe80::1%eth0",
        ] {
            assert_eq!(
                addr(
                    "127.0.0.1",
                    &[("X-Forwarded-For", value)],
                    &trusted,
                    XForwardedFor
                ),
                ip("127.0.0.1"),
                "{value}"
            );
        }
        let bytes = [("X-Forwarded-For", &b"6.6.6.6, 1.2.3.\xff"[..])];
        let c = client(
            Some(ip("127.0.0.1")),
            bytes,
            &nets(&trusted),
            XForwardedFor,
            "http",
        );
        assert_eq!(c.addr, Some(ip("127.0.0.1")), "not UTF-8");
        for value in [
            "for=6.6.6.6, for=1.2.3.4;for=5.6.7.8",
            "for=6.6.6.6, for=1.2.3.4;proto=https;proto=http",
            "for=6.6.6.6, for=\"1.2.3.4",
            "for=6.6.6.6, for=1.2\"3.4",
            "for=6.6.6.6, for=\"1.2.3.4\"x",
            "for=6.6.6.6, for",
            "for=6.6.6.6, f(r=1.2.3.4",
            "for=6.6.6.6, =1.2.3.4",
            "for=6.6.6.6, for=[::1]garbage",
        ] {
            assert_eq!(
                addr("127.0.0.1", &[("Forwarded", value)], &trusted, Forwarded),
                ip("127.0.0.1"),
                "{value}"
            );
        }
        // An unterminated quote in the client's line does not swallow the proxy's element.
        let fields = [
            ("Forwarded", "for=\"6.6.6.6"),
            ("Forwarded", "for=198.51.100.7"),
        ];
        assert_eq!(
            addr("127.0.0.1", &fields, &trusted, Forwarded),
            ip("198.51.100.7")
        );
        let line = [("Forwarded", "for=\"6.6.6.6, for=198.51.100.7")];
        assert_eq!(
            addr("127.0.0.1", &line, &trusted, Forwarded),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn the_chain_lists_every_hop_left_to_right() {
        let fields = [
            ("Forwarded", "for=1.2.3.4;proto=https, for=unknown"),
            ("Forwarded", ", for=\"[::1]:80\""),
        ];
        let hops = chain(fields.iter().map(|(n, v)| (*n, v.as_bytes())), Forwarded);
        assert_eq!(
            hops,
            [
                Hop {
                    addr: Some(ip("1.2.3.4")),
                    scheme: Some("https")
                },
                Hop {
                    addr: None,
                    scheme: None
                },
                Hop {
                    addr: Some(ip("::1")),
                    scheme: None
                },
            ]
        );
        assert!(
            chain(
                fields.iter().map(|(n, v)| (*n, v.as_bytes())),
                XForwardedFor
            )
            .is_empty()
        );
    }

    #[test]
    fn header_names_parse() {
        assert_eq!("X-Forwarded-For".parse(), Ok(XForwardedFor));
        assert_eq!("forwarded".parse(), Ok(Forwarded));
        assert_eq!(ForwardedHeader::default().to_string(), "x-forwarded-for");
        assert!(
            "x-real-ip"
                .parse::<ForwardedHeader>()
                .unwrap_err()
                .contains("\"forwarded\"")
        );
    }

    #[test]
    fn nodes_in_every_spelling() {
        assert_eq!(parse_node("1.2.3.4:80"), Some(ip("1.2.3.4")));
        assert_eq!(parse_node("[::1]"), Some(ip("::1")));
        assert_eq!(parse_node("[::1]:65535"), Some(ip("::1")));
        assert_eq!(parse_node("::1"), Some(ip("::1")));
        assert_eq!(parse_node("::ffff:1.2.3.4"), Some(ip("::ffff:1.2.3.4")));
        assert_eq!(parse_node("unknown"), None);
        assert_eq!(parse_node("_hidden"), None);
        assert_eq!(parse_node("1.2.3.4:_"), None);
        assert_eq!(parse_node("01.2.3.4"), None);
        assert_eq!(parse_node(""), None);
    }
}
