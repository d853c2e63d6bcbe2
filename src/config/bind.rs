//! Listen addresses (`BindAddr`): the forms accepted in `server.bind` and on `--bind`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use super::units::quote;

/// Where the server listens: a TCP socket address or a unix socket path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BindAddr {
    /// An IP address with an explicit port, like `127.0.0.1:8000` or `[::1]:8000`.
    Tcp(SocketAddr),
    /// A unix domain socket path, absolute or relative to the working directory.
    Unix(PathBuf),
}

/// The accepted forms, appended to every parse error.
pub(crate) const BIND_FORMS: &str =
    "\"IP:PORT\" like \"127.0.0.1:8000\", \"[IPv6]:PORT\" like \"[::1]:8000\", or \"unix:PATH\"";

/// `sockaddr_un.sun_path` holds 108 bytes on Linux and std needs one for the terminating
/// NUL, so a longer path could only fail later, at bind time.
const MAX_UNIX_PATH: usize = 107;

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddr::Tcp(addr) => write!(f, "{addr}"),
            BindAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl FromStr for BindAddr {
    type Err = String;

    /// Parses `"127.0.0.1:8000"`, `"[::1]:8000"`, `"0.0.0.0:80"` or `"unix:/run/tine.sock"`.
    ///
    /// Host names are refused rather than resolved: which addresses a name resolves to can
    /// change between restarts, and a listen address should not.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            return parse_unix(path).map_err(|why| format!("invalid address {}: {why}", quote(s)));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(BindAddr::Tcp(addr));
        }
        Err(format!(
            "invalid address {}: {}; accepted forms: {BIND_FORMS}",
            quote(s),
            tcp_mistake(s)
        ))
    }
}

/// Why a unix socket cannot take PROXY protocol headers, for the file and the command line.
pub(crate) fn unix_proxy_protocol(address: &str) -> String {
    format!(
        "proxy_protocol on {}: a PROXY header is believed only from a peer in \
         forwarded_allow_ips, and a unix socket's peer has no address; listen on TCP for the \
         balancer, or leave proxy_protocol off",
        quote(address)
    )
}

fn parse_unix(path: &str) -> Result<BindAddr, String> {
    if path.is_empty() {
        return Err("the unix socket path is empty; write it after \"unix:\", \
             like \"unix:/run/tine.sock\""
            .to_owned());
    }
    if path.contains('\0') {
        return Err("a unix socket path cannot contain a NUL character".to_owned());
    }
    if path.len() > MAX_UNIX_PATH {
        return Err(format!(
            "the unix socket path is {} bytes long; Linux allows at most {MAX_UNIX_PATH}",
            path.len()
        ));
    }
    Ok(BindAddr::Unix(PathBuf::from(path)))
}

/// Says what is wrong with something that is neither a socket address nor a unix path.
fn tcp_mistake(s: &str) -> String {
    if s.is_empty() {
        return "the address is empty".to_owned();
    }
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => return format!("missing port, like \"{s}:8000\""),
        Ok(IpAddr::V6(_)) => {
            return format!("missing port; IPv6 addresses take brackets, like \"[{s}]:8000\"");
        }
        Err(_) => {}
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        if inner.parse::<std::net::Ipv6Addr>().is_ok() {
            return format!("missing port, like \"{s}:8000\"");
        }
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return "not an IP address with a port".to_owned();
    };
    if port.parse::<u16>().is_err() {
        return format!("the port {} is not a number from 0 to 65535", quote(port));
    }
    if host.parse::<IpAddr>().is_ok() {
        // rsplit_once split an unbracketed IPv6 address like "::1:8000".
        return "IPv6 addresses take brackets, like \"[::1]:8000\"".to_owned();
    }
    if host.starts_with('[') {
        return format!("{} is not an IPv6 address", quote(host));
    }
    format!(
        "{} is not an IP address, and host names are not resolved",
        quote(host)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

    #[test]
    fn accepted_forms_parse_and_display_back() {
        let table = [
            (
                "127.0.0.1:8000",
                BindAddr::Tcp(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8000))),
            ),
            (
                "[::1]:8000",
                BindAddr::Tcp(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::LOCALHOST,
                    8000,
                    0,
                    0,
                ))),
            ),
            (
                "0.0.0.0:80",
                BindAddr::Tcp(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80))),
            ),
            (
                "[::]:0",
                BindAddr::Tcp(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::UNSPECIFIED,
                    0,
                    0,
                    0,
                ))),
            ),
            (
                "unix:/run/tine.sock",
                BindAddr::Unix(PathBuf::from("/run/tine.sock")),
            ),
            ("unix:tine.sock", BindAddr::Unix(PathBuf::from("tine.sock"))),
            (
                "unix:./a b.sock",
                BindAddr::Unix(PathBuf::from("./a b.sock")),
            ),
        ];
        for (text, want) in table {
            let got: BindAddr = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(got, want, "{text}");
            assert_eq!(got.to_string(), text);
        }
    }

    #[test]
    fn mistakes_are_explained() {
        let table = [
            ("", "the address is empty"),
            ("127.0.0.1", "missing port, like \"127.0.0.1:8000\""),
            (
                "::1",
                "missing port; IPv6 addresses take brackets, like \"[::1]:8000\"",
            ),
            ("[::1]", "missing port, like \"[::1]:8000\""),
            ("fe80::1:8000", "missing port; IPv6 addresses take brackets"),
            ("1:2:3:4:5:6:7:8:80", "IPv6 addresses take brackets"),
            (
                "127.0.0.1:80000",
                "the port \"80000\" is not a number from 0 to 65535",
            ),
            ("127.0.0.1:", "the port \"\" is not a number"),
            ("127.0.0.1:http", "the port \"http\" is not a number"),
            (
                "localhost:8000",
                "\"localhost\" is not an IP address, and host names are not resolved;",
            ),
            ("[::g]:80", "\"[::g]\" is not an IPv6 address"),
            ("8000", "not an IP address with a port"),
            (":8000", "\"\" is not an IP address"),
            ("unix:", "the unix socket path is empty"),
            ("unix:a\0b", "cannot contain a NUL"),
        ];
        for (text, want) in table {
            let err = text.parse::<BindAddr>().expect_err(text);
            assert!(
                err.starts_with(&format!("invalid address {}: ", quote(text))),
                "{text}: {err}"
            );
            assert!(err.contains(want), "{text}: {err}");
        }
        let tcp = "localhost:8000".parse::<BindAddr>().unwrap_err();
        assert!(
            tcp.ends_with(&format!("accepted forms: {BIND_FORMS}")),
            "{tcp}"
        );
    }

    #[test]
    fn unix_path_length_is_checked_up_front() {
        let longest = format!("unix:/{}", "a".repeat(MAX_UNIX_PATH - 1));
        assert!(longest.parse::<BindAddr>().is_ok());
        let too_long = format!("unix:/{}", "a".repeat(MAX_UNIX_PATH));
        let err = too_long.parse::<BindAddr>().unwrap_err();
        assert!(
            err.contains("108 bytes long; Linux allows at most 107"),
            "{err}"
        );
    }
}
