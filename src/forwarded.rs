//! Who the client really is behind a proxy: the address and scheme from `Forwarded` or
//! `X-Forwarded-For`/`X-Forwarded-Proto`, believed only when the peer is a trusted proxy
//! (`[server] forwarded_allow_ips`). Pure: a peer and header values in, an answer out.

use std::net::IpAddr;

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

/// The client as the server should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The client's address: the peer's, or the one a trusted proxy reported.
    pub addr: Option<IpAddr>,
    /// `http` or `https`.
    pub scheme: &'static str,
}

/// Works out the client from the peer address and the request's proxy headers.
///
/// Headers are believed only when the peer is trusted. Walking the forwarding chain from the
/// nearest hop outwards, trusted proxies are skipped; the first untrusted address is the
/// client, so a client cannot claim an address by sending its own header.
pub fn client(
    peer: Option<IpAddr>,
    forwarded: Option<&str>,
    x_forwarded_for: Option<&str>,
    x_forwarded_proto: Option<&str>,
    trusted: &[Trusted],
) -> Client {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| t.contains(ip));
    let Some(peer_ip) = peer else {
        return Client {
            addr: None,
            scheme: "http",
        };
    };
    if !is_trusted(peer_ip) {
        return Client {
            addr: Some(peer_ip),
            scheme: "http",
        };
    }
    let (chain, proto): (Vec<IpAddr>, Option<String>) = match forwarded {
        Some(value) => parse_forwarded(value),
        None => (
            x_forwarded_for
                .map(|v| v.split(',').filter_map(|h| parse_node(h.trim())).collect())
                .unwrap_or_default(),
            x_forwarded_proto
                .and_then(|v| v.rsplit(',').next().map(|p| p.trim().to_ascii_lowercase())),
        ),
    };
    let mut addr = peer_ip;
    for hop in chain.iter().rev() {
        addr = *hop;
        if !is_trusted(*hop) {
            break;
        }
    }
    let scheme = match proto.as_deref() {
        Some("https") => "https",
        _ => "http",
    };
    Client {
        addr: Some(addr),
        scheme,
    }
}

/// RFC 7239: the `for=` addresses in order, and the nearest hop's `proto=`.
fn parse_forwarded(value: &str) -> (Vec<IpAddr>, Option<String>) {
    let mut chain = Vec::new();
    let mut proto = None;
    for element in value.split(',') {
        for pair in element.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            if name.trim().eq_ignore_ascii_case("for") {
                if let Some(ip) = parse_node(value) {
                    chain.push(ip);
                }
            } else if name.trim().eq_ignore_ascii_case("proto") {
                proto = Some(value.to_ascii_lowercase());
            }
        }
    }
    (chain, proto)
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `[::1]`, `[::1]:80`, `::1`.
fn parse_node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    text.rsplit_once(':')?.0.parse().ok()
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

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let c = client(
            Some(ip("203.0.113.9")),
            None,
            Some("1.1.1.1"),
            Some("https"),
            &nets(&["127.0.0.1"]),
        );
        assert_eq!(c.addr, Some(ip("203.0.113.9")));
        assert_eq!(c.scheme, "http");
    }

    #[test]
    fn a_trusted_proxy_is_believed_up_to_the_first_untrusted_hop() {
        let trusted = nets(&["127.0.0.1", "10.0.0.0/8"]);
        // client spoofs 6.6.6.6, real client 198.51.100.7, then an internal proxy 10.0.0.2
        let c = client(
            Some(ip("127.0.0.1")),
            None,
            Some("6.6.6.6, 198.51.100.7, 10.0.0.2"),
            Some("https"),
            &trusted,
        );
        assert_eq!(c.addr, Some(ip("198.51.100.7")));
        assert_eq!(c.scheme, "https");
    }

    #[test]
    fn forwarded_takes_precedence() {
        let c = client(
            Some(ip("127.0.0.1")),
            Some("for=192.0.2.60;proto=https;by=203.0.113.43, for=\"[2001:db8::1]:4711\""),
            Some("9.9.9.9"),
            None,
            &nets(&["127.0.0.1"]),
        );
        assert_eq!(c.addr, Some(ip("2001:db8::1")));
        assert_eq!(c.scheme, "https");
    }

    #[test]
    fn nodes_in_every_spelling() {
        assert_eq!(parse_node("1.2.3.4:80"), Some(ip("1.2.3.4")));
        assert_eq!(parse_node("[::1]"), Some(ip("::1")));
        assert_eq!(parse_node("::1"), Some(ip("::1")));
        assert_eq!(parse_node("unknown"), None);
        assert_eq!(parse_node("_hidden"), None);
    }
}
