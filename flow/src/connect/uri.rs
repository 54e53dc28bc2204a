//! Connection URIs: `scheme://host[:port][/rest]`.
//!
//! Parsed here rather than with the `url` crate, which treats the host of a
//! non-special scheme (`tcp://192.0.2.1`) as an opaque string. Rules:
//! * the scheme is `ALPHA *(ALPHA / DIGIT / "+" / "-" / ".")` (RFC 3986 3.1),
//!   lower-cased, so `proxy-v2+tcp` is one scheme;
//! * the host is an IPv4 literal, an IPv6 literal in brackets (`[::1]`, RFC 3986
//!   3.2.2), or a name, lower-cased and IDNA-normalised to its ASCII form
//!   (UTS 46); an all-numeric name that is not a valid IPv4 address is refused
//!   rather than looked up;
//! * the port is a decimal 1..=65535; when absent, the scheme's default (from
//!   the registry) is used, and a scheme without one needs it;
//! * user information (`user@`) is refused: no scheme here carries credentials.
//!
//! Every error names the part that was wrong.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// Where to connect: an address or a name to resolve.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A literal address.
    Ip(IpAddr),
    /// A DNS name, lower-case ASCII (IDNA-normalised).
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(a) => write!(f, "{a}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// A parsed connection URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri {
    /// The scheme, lower-case.
    pub scheme: String,
    /// The host.
    pub host: Host,
    /// The port (given, or the scheme's default).
    pub port: u16,
    /// What follows the authority (`/path?query`), empty if nothing.
    pub rest: String,
}

impl Uri {
    /// The same URI with another scheme (how a layered scheme reaches the one
    /// below it: `tls://h:443` connects `tcp://h:443` first).
    pub fn with_scheme(&self, scheme: &str) -> Uri {
        Uri { scheme: scheme.to_string(), ..self.clone() }
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}{}", self.scheme, self.host, self.port, self.rest)
    }
}

/// What was wrong with a URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UriError {
    /// No `scheme://`.
    MissingScheme(String),
    /// The scheme has characters a scheme cannot have.
    BadScheme(String),
    /// No scheme of that name is registered.
    UnknownScheme {
        /// The scheme.
        scheme: String,
        /// The registered ones.
        known: Vec<String>,
    },
    /// The host is empty, malformed, or not a valid name.
    BadHost {
        /// The host as given.
        host: String,
        /// Why.
        reason: String,
    },
    /// The port is not a number in 1..=65535.
    BadPort {
        /// The scheme.
        scheme: String,
        /// The port as given.
        port: String,
    },
    /// No port, and the scheme has no default.
    MissingPort {
        /// The scheme.
        scheme: String,
    },
    /// `user@host`: credentials in a URI are not supported.
    UserInfo(String),
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriError::MissingScheme(u) => write!(f, "'{u}' has no scheme (scheme://host:port)"),
            UriError::BadScheme(s) => write!(f, "scheme '{s}' is not valid (letters, digits, + - .)"),
            UriError::UnknownScheme { scheme, known } => {
                write!(f, "unknown scheme '{scheme}'; registered: {}", known.join(", "))
            }
            UriError::BadHost { host, reason } => write!(f, "host '{host}': {reason}"),
            UriError::BadPort { scheme, port } => write!(f, "{scheme}: port '{port}' is not a number in 1..=65535"),
            UriError::MissingPort { scheme } => write!(f, "{scheme}: a port is needed (the scheme has no default)"),
            UriError::UserInfo(u) => write!(f, "'{u}': user information (user@) is not supported"),
        }
    }
}

impl std::error::Error for UriError {}

/// Splits `scheme://` off `s`, lower-cased and checked.
pub fn scheme_of(s: &str) -> Result<(String, &str), UriError> {
    let Some((scheme, rest)) = s.split_once("://") else { return Err(UriError::MissingScheme(s.to_string())) };
    let ok = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !ok {
        return Err(UriError::BadScheme(scheme.to_string()));
    }
    Ok((scheme.to_ascii_lowercase(), rest))
}

/// Parses `s`; `default_port` is the scheme's default (from the registry).
pub fn parse(s: &str, default_port: impl Fn(&str) -> Option<u16>) -> Result<Uri, UriError> {
    let (scheme, rest) = scheme_of(s)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(UriError::UserInfo(s.to_string()));
    }
    let (host_part, port_part) = if let Some(r) = authority.strip_prefix('[') {
        let close = r.find(']').ok_or_else(|| UriError::BadHost {
            host: authority.to_string(),
            reason: "an IPv6 literal needs its closing ']'".into(),
        })?;
        let (h, after) = (&r[..close], &r[close + 1..]);
        let port = match after {
            "" => None,
            p if p.starts_with(':') => Some(&p[1..]),
            _ => {
                return Err(UriError::BadHost {
                    host: authority.to_string(),
                    reason: "only ':port' may follow ']'".into(),
                })
            }
        };
        let ip: Ipv6Addr = h
            .parse()
            .map_err(|_| UriError::BadHost { host: format!("[{h}]"), reason: "not an IPv6 address".into() })?;
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (h, p) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if h.contains(':') {
            return Err(UriError::BadHost {
                host: h.to_string(),
                reason: "an IPv6 literal must be in brackets: [::1]".into(),
            });
        }
        (host(h)?, p)
    };
    let port = match port_part {
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => n,
            _ => return Err(UriError::BadPort { scheme, port: p.to_string() }),
        },
        None => default_port(&scheme).ok_or_else(|| UriError::MissingPort { scheme: scheme.clone() })?,
    };
    Ok(Uri { scheme, host: host_part, port, rest: tail.to_string() })
}

/// A host that is not bracketed: an IPv4 literal or a name.
pub fn host(h: &str) -> Result<Host, UriError> {
    if h.is_empty() {
        return Err(UriError::BadHost { host: h.into(), reason: "empty".into() });
    }
    if let Ok(ip) = h.parse::<std::net::Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    let ascii = idna::domain_to_ascii(h)
        .map_err(|_| UriError::BadHost { host: h.into(), reason: "not a valid (IDNA) domain name".into() })?;
    let name = ascii.trim_end_matches('.');
    if name.is_empty() || name.len() > 253 {
        return Err(UriError::BadHost { host: h.into(), reason: "a name is 1 to 253 characters".into() });
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(UriError::BadHost {
                host: h.into(),
                reason: format!("label '{label}' is not 1 to 63 characters"),
            });
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(UriError::BadHost {
                host: h.into(),
                reason: format!("label '{label}' has characters a name cannot have"),
            });
        }
    }
    // `256.1.1.1` or `1.2.3`: meant as an address, wrong as one; never a lookup.
    if name.split('.').next_back().is_some_and(|l| l.chars().all(|c| c.is_ascii_digit())) {
        return Err(UriError::BadHost { host: h.into(), reason: "not a valid IPv4 address".into() });
    }
    Ok(Host::Name(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Uri, UriError> {
        parse(s, |sch| (sch == "tls").then_some(443))
    }

    #[test]
    fn literals_names_and_default_ports() {
        let u = p("tcp://198.18.0.2:7").unwrap();
        assert_eq!((u.scheme.as_str(), u.host, u.port), ("tcp", Host::Ip("198.18.0.2".parse().unwrap()), 7));
        let u = p("TCP://[2001:2::1]:80/x?y").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.host, u.port, u.rest.as_str()),
            ("tcp", Host::Ip("2001:2::1".parse().unwrap()), 80, "/x?y")
        );
        let u = p("tls://Echo.Example.").unwrap();
        assert_eq!((u.host, u.port), (Host::Name("echo.example".into()), 443));
        let u = p("tls://Bücher.example:8443").unwrap();
        assert_eq!(u.host, Host::Name("xn--bcher-kva.example".into()));
        assert_eq!(p("proxy-v2+tcp://a.b:1").unwrap().scheme, "proxy-v2+tcp");
        assert_eq!(p("tcp://[::1]:9").unwrap().to_string(), "tcp://[::1]:9");
    }

    #[test]
    fn errors_name_the_scheme_host_or_port() {
        assert!(matches!(p("198.18.0.2:7"), Err(UriError::MissingScheme(_))));
        assert!(matches!(p("t cp://a:1"), Err(UriError::BadScheme(s)) if s == "t cp"));
        assert!(matches!(p("tcp://a.b"), Err(UriError::MissingPort { scheme }) if scheme == "tcp"));
        for bad in ["0", "65536", "x", "", "+1"] {
            assert!(
                matches!(p(&format!("tcp://a.b:{bad}")), Err(UriError::BadPort { port, .. }) if port == bad),
                "{bad}"
            );
        }
        for bad in ["[::1", "[::g]:1", "::1:1", ":1", "256.1.1.1:1", "1.2.3:1", "a..b:1", "a_b c:1", "[::1]x:1"] {
            let e = p(&format!("tcp://{bad}")).unwrap_err();
            assert!(matches!(e, UriError::BadHost { .. }), "{bad}: {e:?}");
        }
        assert!(matches!(p("tcp://u@h:1"), Err(UriError::UserInfo(_))));
        let e = p("tcp://256.1.1.1:1").unwrap_err().to_string();
        assert!(e.contains("256.1.1.1"), "{e}");
    }
}
