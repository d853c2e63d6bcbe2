//! The PROXY protocol header (HAProxy's, versions 1 and 2) that a load balancer sends before
//! a connection's own bytes, naming the client it took the connection from. Pure: bytes in,
//! an answer out, with "need more bytes" not an error (as `httparse::Status::Partial`).
//!
//! - **v1** is one text line, at most 107 bytes with its CRLF:
//!   `PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n` (or `TCP6` with IPv6 addresses), or
//!   `PROXY UNKNOWN` with anything up to the CRLF. Read strictly: single spaces, addresses of
//!   the family named, ports from 0 to 65535 without signs or leading zeros.
//! - **v2** is binary: a 12-byte signature, a version-and-command byte (version 2; `LOCAL`, a
//!   balancer's own connection such as a health check, or `PROXY`), a family byte, a 16-bit
//!   length, then the addresses and optional TLVs. TCP over IPv4 or IPv6 names a source;
//!   `UNSPEC`, `UNIX` and UDP name none. Of the TLVs only `PP2_TYPE_SSL` is read (a client
//!   that came over TLS to a balancer that terminated it); the rest are skipped. A header
//!   longer than [`MAX_HEADER`] is refused.
//!
//! Bytes that rule a header out are refused as soon as they are seen: an HTTP request on a
//! PROXY listener is refused at its first byte, not after 107 of them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature: the first 12 bytes of every v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included (the protocol's own bound).
pub const MAX_V1: usize = 107;
/// The longest header accepted, v2's 16 fixed bytes and its address block (TLVs included)
/// together. The protocol allows 64 KiB of TLVs; balancers send a few dozen bytes of them
/// (an ALPN, an authority, a unique id), and a bound keeps what a connection may make the
/// worker hold before its first request small.
pub const MAX_HEADER: usize = 4096;

/// v2's fixed part: signature, version and command, family, length.
const V2_FIXED: usize = 16;
const V1_PREFIX: &[u8] = b"PROXY ";

/// What the bytes so far come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A header may still come whole: more bytes are needed.
    Partial,
    /// A whole header.
    Complete(Header),
}

/// A whole PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// How many bytes it takes; what follows is the connection's own.
    pub len: usize,
    /// The client the balancer took the connection from; `None` for v2's `LOCAL`, v1's
    /// `UNKNOWN` and families that carry no address (the socket's own peer stands).
    pub source: Option<SocketAddr>,
    /// 1 or 2.
    pub version: u8,
    /// The balancer took the client's connection over TLS, and says so (v2's `PP2_TYPE_SSL`
    /// TLV with its `PP2_CLIENT_SSL` flag): the client's scheme is `https`.
    pub tls: bool,
}

/// Why the bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// Neither `PROXY ` nor the v2 signature: the client sent something else (an HTTP
    /// request, a TLS handshake).
    Missing,
    /// A v1 line with no CRLF within 107 bytes.
    V1TooLong,
    /// A v1 line that is not `PROXY TCP4|TCP6|UNKNOWN ...` with single spaces and a CRLF.
    V1Syntax,
    /// A v1 address that is not one of the family its line names.
    V1Address,
    /// A v1 port that is not a number from 0 to 65535 written without a sign or leading zero.
    V1Port,
    /// A v2 header whose version is not 2.
    V2Version,
    /// A v2 command other than `LOCAL` and `PROXY`.
    V2Command,
    /// A v2 family or transport byte the protocol does not define.
    V2Family,
    /// A v2 header longer than [`MAX_HEADER`].
    V2TooLong,
    /// A v2 address block too short for the family it names.
    V2AddressBlock,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invalid::Missing => "no PROXY protocol header: the connection began with other bytes",
            Invalid::V1TooLong => "PROXY v1 line without its CRLF in 107 bytes",
            Invalid::V1Syntax => {
                "malformed PROXY v1 line (expected \"PROXY TCP4|TCP6|UNKNOWN\", single \
                 spaces, then CRLF)"
            }
            Invalid::V1Address => "PROXY v1 address not of the family its line names",
            Invalid::V1Port => "PROXY v1 port not a number from 0 to 65535",
            Invalid::V2Version => "PROXY v2 signature with a version other than 2",
            Invalid::V2Command => "PROXY v2 command neither LOCAL nor PROXY",
            Invalid::V2Family => "PROXY v2 address family or transport not defined",
            Invalid::V2TooLong => "PROXY v2 header longer than 4096 bytes",
            Invalid::V2AddressBlock => "PROXY v2 address block too short for its family",
        })
    }
}

impl std::error::Error for Invalid {}

/// Reads a PROXY header at the start of `bytes`: complete, partial (every prefix of a valid
/// header is, and nothing else), or invalid as soon as the bytes rule one out.
///
/// # Errors
///
/// [`Invalid`] says what rules a header out.
pub fn parse(bytes: &[u8]) -> Result<Status, Invalid> {
    if starts_as(bytes, &V2_SIGNATURE) {
        if bytes.len() < V2_SIGNATURE.len() {
            return Ok(Status::Partial);
        }
        return parse_v2(bytes);
    }
    if starts_as(bytes, V1_PREFIX) {
        return parse_v1(bytes);
    }
    Err(Invalid::Missing)
}

/// Whether `bytes` and `prefix` agree as far as both go (an empty `bytes` agrees).
fn starts_as(bytes: &[u8], prefix: &[u8]) -> bool {
    let n = bytes.len().min(prefix.len());
    bytes[..n] == prefix[..n]
}

/// The v1 protocols, and which address family each names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum V1Family {
    Tcp4,
    Tcp6,
    Unknown,
}

/// How a v1 line's bytes so far end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LineEnd {
    /// With its CRLF.
    Crlf,
    /// Not yet: the CRLF may still come.
    Open,
    /// With a CR or LF out of place.
    Broken,
    /// Without a CRLF in 107 bytes.
    TooLong,
}

fn parse_v1(bytes: &[u8]) -> Result<Status, Invalid> {
    let window = &bytes[..bytes.len().min(MAX_V1)];
    let (line, end) = match window.iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(at) if window[at] == b'\n' => (&window[..at], LineEnd::Broken),
        Some(at) => match window.get(at + 1) {
            Some(b'\n') => (&window[..at], LineEnd::Crlf),
            Some(_) => (&window[..at], LineEnd::Broken),
            // The CR is the last byte so far; the LF may follow (a CR at byte 107 cannot).
            None if at + 1 < MAX_V1 => (&window[..at], LineEnd::Open),
            None => (&window[..at], LineEnd::TooLong),
        },
        None if window.len() >= MAX_V1 => (window, LineEnd::TooLong),
        None => (window, LineEnd::Open),
    };
    // The tokens are judged first, so that the first bad byte decides the reason, whatever
    // follows it. Every token but the last so far is whole; so is the last once the CRLF is in.
    let complete = end == LineEnd::Crlf;
    let tokens: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let mut family = None;
    for (index, token) in tokens.iter().enumerate() {
        let whole = complete || index + 1 < tokens.len();
        if family == Some(V1Family::Unknown) {
            // "PROXY UNKNOWN" may be followed by anything up to the CRLF.
            break;
        }
        if whole && token.is_empty() {
            return Err(Invalid::V1Syntax);
        }
        match index {
            0 => {} // "PROXY", checked by the caller.
            1 => family = Some(v1_family(token, whole)?),
            2 | 3 => v1_address(token, whole, family)?,
            4 | 5 => v1_port(token, whole)?,
            _ => return Err(Invalid::V1Syntax),
        }
    }
    match end {
        LineEnd::Crlf => {}
        LineEnd::Open => return Ok(Status::Partial),
        LineEnd::Broken => return Err(Invalid::V1Syntax),
        LineEnd::TooLong => return Err(Invalid::V1TooLong),
    }
    let source = match family {
        Some(V1Family::Unknown) => None,
        Some(_) if tokens.len() == 6 => {
            let ip = parse_ip(tokens[2]).ok_or(Invalid::V1Address)?;
            let port = parse_port(tokens[4]).ok_or(Invalid::V1Port)?;
            Some(SocketAddr::new(ip, port))
        }
        _ => return Err(Invalid::V1Syntax),
    };
    Ok(Status::Complete(Header {
        len: line.len() + 2,
        source,
        version: 1,
        tls: false,
    }))
}

fn v1_family(token: &[u8], whole: bool) -> Result<V1Family, Invalid> {
    let names: [(&[u8], V1Family); 3] = [
        (b"TCP4", V1Family::Tcp4),
        (b"TCP6", V1Family::Tcp6),
        (b"UNKNOWN", V1Family::Unknown),
    ];
    for (name, family) in names {
        if (whole && token == name) || (!whole && name.starts_with(token)) {
            // A partial token that could still be several names: TCP4 is as good as TCP6
            // until its last byte, and the addresses are checked only once it is whole.
            return Ok(family);
        }
    }
    Err(Invalid::V1Syntax)
}

fn v1_address(token: &[u8], whole: bool, family: Option<V1Family>) -> Result<(), Invalid> {
    let family = family.ok_or(Invalid::V1Syntax)?;
    if whole {
        return match (family, parse_ip(token)) {
            (V1Family::Tcp4, Some(IpAddr::V4(_))) | (V1Family::Tcp6, Some(IpAddr::V6(_))) => Ok(()),
            _ => Err(Invalid::V1Address),
        };
    }
    // The longest spellings: "255.255.255.255" and a full IPv6 address with an IPv4 tail.
    let (longest, allowed): (usize, fn(&u8) -> bool) = match family {
        V1Family::Tcp4 => (15, |b| b.is_ascii_digit() || *b == b'.'),
        _ => (45, |b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.'),
    };
    if token.len() <= longest && token.iter().all(allowed) {
        Ok(())
    } else {
        Err(Invalid::V1Address)
    }
}

fn v1_port(token: &[u8], whole: bool) -> Result<(), Invalid> {
    if whole {
        return parse_port(token).map(|_| ()).ok_or(Invalid::V1Port);
    }
    let leading_zero = token.len() > 1 && token[0] == b'0';
    if token.len() <= 5 && token.iter().all(u8::is_ascii_digit) && !leading_zero {
        Ok(())
    } else {
        Err(Invalid::V1Port)
    }
}

fn parse_ip(token: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(token).ok()?.parse().ok()
}

/// A port in decimal: no sign, no leading zero (but "0" itself).
fn parse_port(token: &[u8]) -> Option<u16> {
    let digits = !token.is_empty() && token.iter().all(u8::is_ascii_digit);
    if !digits || (token.len() > 1 && token[0] == b'0') {
        return None;
    }
    std::str::from_utf8(token).ok()?.parse().ok()
}

fn parse_v2(bytes: &[u8]) -> Result<Status, Invalid> {
    let local = match bytes.get(12) {
        None => return Ok(Status::Partial),
        Some(b) if b >> 4 != 2 => return Err(Invalid::V2Version),
        Some(0x20) => true,
        Some(0x21) => false,
        Some(_) => return Err(Invalid::V2Command),
    };
    let Some(&family) = bytes.get(13) else {
        return Ok(Status::Partial);
    };
    if family >> 4 > 3 || family & 0x0f > 2 {
        return Err(Invalid::V2Family);
    }
    let Some(length) = bytes.get(14..16) else {
        return Ok(Status::Partial);
    };
    let block = usize::from(u16::from_be_bytes([length[0], length[1]]));
    let len = V2_FIXED + block;
    if len > MAX_HEADER {
        return Err(Invalid::V2TooLong);
    }
    let Some(block) = bytes.get(V2_FIXED..len) else {
        return Ok(Status::Partial);
    };
    let source = match family {
        // A balancer's own connection: its addresses, if any, are not a client's.
        _ if local => None,
        0x11 => {
            let a: [u8; 12] = block
                .get(..12)
                .and_then(|b| b.try_into().ok())
                .ok_or(Invalid::V2AddressBlock)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
        }
        0x21 => {
            let a: [u8; 36] = block
                .get(..36)
                .and_then(|b| b.try_into().ok())
                .ok_or(Invalid::V2AddressBlock)?;
            let ip: [u8; 16] = a[..16].try_into().expect("16 of 36 bytes");
            let port = u16::from_be_bytes([a[32], a[33]]);
            Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port))
        }
        // UNSPEC, UNIX, and UDP over either family: no TCP client to name.
        _ => None,
    };
    let tls = !local && client_tls(block.get(address_len(family)..).unwrap_or_default());
    Ok(Status::Complete(Header {
        len,
        source,
        version: 2,
        tls,
    }))
}

/// The `PP2_TYPE_SSL` TLV's type, and its `client` field's flag for a connection the client
/// made over TLS.
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_CLIENT_SSL: u8 = 0x01;

/// How many bytes of a v2 block the addresses of `family` take; the TLVs follow.
fn address_len(family: u8) -> usize {
    match family >> 4 {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    }
}

/// Whether the TLVs say the client's connection was TLS. The TLVs are the balancer's extras:
/// one cut short ends the walk without making the header invalid.
fn client_tls(mut tlvs: &[u8]) -> bool {
    while let [kind, high, low, rest @ ..] = tlvs {
        let Some(value) = rest.get(..usize::from(u16::from_be_bytes([*high, *low]))) else {
            return false;
        };
        if *kind == PP2_TYPE_SSL {
            return value
                .first()
                .is_some_and(|client| client & PP2_CLIENT_SSL != 0);
        }
        tlvs = &rest[value.len()..];
    }
    false
}

#[cfg(test)]
mod tests;
