//! The PROXY protocol, versions 1 (text) and 2 (binary), as HAProxy's
//! `doc/proxy-protocol.txt` specifies: [`encode_v1`] / [`encode_v2`] for the
//! header we send to a server, and [`parse`] for the one a client must send
//! when a frontend has `accept_proxy = true`.
//!
//! Parsing is strict (spec §2.1, §2.2; anything not exactly as written is an
//! error, and the caller closes the connection and counts it):
//! * the first bytes must be a prefix of `PROXY ` (v1) or of the 12-byte v2
//!   signature; anything else is [`ProxyError::BadSignature`] at once;
//! * v1: a line of at most 107 bytes, CRLF included (§2.1), `TCP4`/`TCP6`
//!   with single spaces, addresses of the stated family, decimal ports
//!   0..=65535 without leading zeros; `UNKNOWN` takes the rest of the line and
//!   means "use the connection's own addresses";
//! * v2: version nibble 2, command LOCAL (0) or PROXY (1), family
//!   UNSPEC/TCP4/TCP6 (UDP and UNIX are refused: this is a TCP proxy), an
//!   address block at least as long as its family needs, and TLVs each lying
//!   wholly inside the stated length;
//! * a header longer than the caller's limit is [`ProxyError::TooLong`].
//!
//! [`parse`] works on the bytes received so far: `Ok(None)` means "need
//! more"; a connection that ends first is [`ProxyError::Truncated`] (the
//! caller's call). Bytes after the header belong to the stream.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature (§2.2).
pub const V2_SIG: [u8; 12] = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
/// The longest v1 line, CRLF included (§2.1).
pub const V1_MAX: usize = 107;

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// Neither a v1 nor a v2 signature.
    BadSignature,
    /// v1 line without CRLF within 107 bytes, or a v2 header past the limit.
    TooLong,
    /// The connection ended inside the header.
    Truncated,
    /// A malformed field (which one).
    Malformed(&'static str),
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::BadSignature => write!(f, "no PROXY protocol signature"),
            ProxyError::TooLong => write!(f, "PROXY header too long"),
            ProxyError::Truncated => write!(f, "connection ended inside the PROXY header"),
            ProxyError::Malformed(w) => write!(f, "malformed PROXY header: {w}"),
        }
    }
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The original client and destination, or `None` (v1 `UNKNOWN`, v2
    /// `LOCAL` or `UNSPEC`): use the connection's own addresses.
    pub addrs: Option<(SocketAddr, SocketAddr)>,
    /// Bytes the header took.
    pub len: usize,
}

fn same_family(src: SocketAddr, dst: SocketAddr) -> (IpAddr, IpAddr) {
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V6(d)) => (IpAddr::V6(s.to_ipv6_mapped()), IpAddr::V6(d)),
        (IpAddr::V6(s), IpAddr::V4(d)) => (IpAddr::V6(s), IpAddr::V6(d.to_ipv6_mapped())),
        (s, d) => (s, d),
    }
}

/// `PROXY TCP4 src dst sport dport\r\n` (TCP6 when either side is IPv6; an
/// IPv4 address beside an IPv6 one is written IPv4-mapped).
pub fn encode_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (s, d) = same_family(src, dst);
    let proto = if s.is_ipv4() { "TCP4" } else { "TCP6" };
    format!("PROXY {proto} {s} {d} {} {}\r\n", src.port(), dst.port()).into_bytes()
}

/// The v2 binary header, command PROXY, `TCP4` or `TCP6`, no TLV.
pub fn encode_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (s, d) = same_family(src, dst);
    let mut out = V2_SIG.to_vec();
    out.push(0x21); // version 2, PROXY
    match (s, d) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => unreachable!("same_family maps both sides to one family"),
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

/// The v1 header of a connection with no client behind it (a health check):
/// `PROXY UNKNOWN\r\n`.
pub fn encode_v1_unknown() -> Vec<u8> {
    b"PROXY UNKNOWN\r\n".to_vec()
}

/// The v2 header of a connection with no client behind it: command LOCAL,
/// family UNSPEC, no address.
pub fn encode_v2_local() -> Vec<u8> {
    let mut out = V2_SIG.to_vec();
    out.extend_from_slice(&[0x20, 0x00, 0, 0]);
    out
}

/// Parses the start of a client's stream; `limit` bounds a v2 header's
/// total size. `Ok(None)`: not enough bytes yet.
pub fn parse(buf: &[u8], limit: usize) -> Result<Option<Header>, ProxyError> {
    const V1_SIG: &[u8] = b"PROXY ";
    let n = buf.len().min(12);
    if buf.len() < 6 && V1_SIG.starts_with(buf) || V2_SIG[..n] == buf[..n] && buf.len() < 12 {
        return Ok(None);
    }
    if buf.starts_with(V1_SIG) {
        return parse_v1(buf);
    }
    if buf.starts_with(&V2_SIG) {
        return parse_v2(buf, limit);
    }
    Err(ProxyError::BadSignature)
}

fn parse_v1(buf: &[u8]) -> Result<Option<Header>, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX { Err(ProxyError::TooLong) } else { Ok(None) };
    };
    let len = cr + 2;
    let line = std::str::from_utf8(&buf[6..cr]).map_err(|_| ProxyError::Malformed("v1 line is not ASCII"))?;
    if line.starts_with("UNKNOWN") {
        return Ok(Some(Header { addrs: None, len }));
    }
    let f: Vec<&str> = line.split(' ').collect();
    if f.len() != 5 {
        return Err(ProxyError::Malformed("v1 needs exactly 5 fields after PROXY"));
    }
    let v6 = match f[0] {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(ProxyError::Malformed("v1 protocol must be TCP4, TCP6 or UNKNOWN")),
    };
    let ip = |s: &str| -> Result<IpAddr, ProxyError> {
        if v6 {
            s.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| ProxyError::Malformed("v1 address is not IPv6"))
        } else {
            s.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| ProxyError::Malformed("v1 address is not IPv4"))
        }
    };
    let port = |s: &str| -> Result<u16, ProxyError> {
        let ok = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
        if !ok {
            return Err(ProxyError::Malformed("v1 port is not a decimal 0..=65535"));
        }
        s.parse().map_err(|_| ProxyError::Malformed("v1 port is not a decimal 0..=65535"))
    };
    let src = SocketAddr::new(ip(f[1])?, port(f[3])?);
    let dst = SocketAddr::new(ip(f[2])?, port(f[4])?);
    Ok(Some(Header { addrs: Some((src, dst)), len }))
}

fn parse_v2(buf: &[u8], limit: usize) -> Result<Option<Header>, ProxyError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version must be 2"));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::Malformed("v2 command must be LOCAL or PROXY")),
    };
    let fam = buf[13];
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    if len > limit {
        return Err(ProxyError::TooLong);
    }
    let need = match fam {
        0x00 => 0,
        0x11 => 12,
        0x21 => 36,
        0x12 | 0x22 | 0x31 | 0x32 => return Err(ProxyError::Malformed("v2 family must be TCP over IPv4 or IPv6")),
        _ => return Err(ProxyError::Malformed("v2 unknown address family")),
    };
    if body < need {
        return Err(ProxyError::Malformed("v2 address block shorter than its family needs"));
    }
    if buf.len() < len {
        return Ok(None);
    }
    // TLVs: type (1), length (2), value; each must end inside the header.
    let mut at = 16 + need;
    while at < len {
        if at + 3 > len {
            return Err(ProxyError::Malformed("v2 TLV header past the end"));
        }
        let l = usize::from(u16::from_be_bytes([buf[at + 1], buf[at + 2]]));
        if at + 3 + l > len {
            return Err(ProxyError::Malformed("v2 TLV length past the end"));
        }
        at += 3 + l;
    }
    if local || fam == 0x00 {
        return Ok(Some(Header { addrs: None, len }));
    }
    let a = &buf[16..16 + need];
    let (src, dst) = if fam == 0x11 {
        let s: [u8; 4] = a[0..4].try_into().expect("4 bytes");
        let d: [u8; 4] = a[4..8].try_into().expect("4 bytes");
        let (sp, dp) = (u16::from_be_bytes([a[8], a[9]]), u16::from_be_bytes([a[10], a[11]]));
        (SocketAddr::new(Ipv4Addr::from(s).into(), sp), SocketAddr::new(Ipv4Addr::from(d).into(), dp))
    } else {
        let s: [u8; 16] = a[0..16].try_into().expect("16 bytes");
        let d: [u8; 16] = a[16..32].try_into().expect("16 bytes");
        let (sp, dp) = (u16::from_be_bytes([a[32], a[33]]), u16::from_be_bytes([a[34], a[35]]));
        (SocketAddr::new(Ipv6Addr::from(s).into(), sp), SocketAddr::new(Ipv6Addr::from(d).into(), dp))
    };
    Ok(Some(Header { addrs: Some((src, dst)), len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_round_trips_tcp4_and_tcp6_and_maps_a_mixed_pair() {
        let (s, d) = (sa("198.18.0.9:51000"), sa("198.18.1.1:80"));
        let h = encode_v1(s, d);
        assert_eq!(h, b"PROXY TCP4 198.18.0.9 198.18.1.1 51000 80\r\n");
        assert_eq!(parse(&h, 4096), Ok(Some(Header { addrs: Some((s, d)), len: h.len() })));
        let (s6, d6) = (sa("[2001:2::9]:1"), sa("[2001:2::1]:443"));
        let h = encode_v1(s6, d6);
        assert_eq!(h, b"PROXY TCP6 2001:2::9 2001:2::1 1 443\r\n");
        assert_eq!(parse(&h, 4096).unwrap().unwrap().addrs, Some((s6, d6)));
        let h = encode_v1(s, d6);
        assert!(h.starts_with(b"PROXY TCP6 ::ffff:198.18.0.9 2001:2::1 "));
    }

    #[test]
    fn v2_round_trips_tcp4_and_tcp6_byte_for_byte() {
        let (s, d) = (sa("198.18.0.9:51000"), sa("198.18.1.1:80"));
        let h = encode_v2(s, d);
        let mut want = V2_SIG.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0, 12, 198, 18, 0, 9, 198, 18, 1, 1, 0xc7, 0x38, 0, 80]);
        assert_eq!(h, want);
        assert_eq!(parse(&h, 4096), Ok(Some(Header { addrs: Some((s, d)), len: 28 })));
        let (s6, d6) = (sa("[2001:2::9]:1"), sa("[2001:2::1]:443"));
        let h = encode_v2(s6, d6);
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(parse(&h, 4096).unwrap().unwrap().addrs, Some((s6, d6)));
    }

    #[test]
    fn every_prefix_of_a_valid_header_asks_for_more() {
        for h in
            [encode_v1(sa("198.18.0.9:1"), sa("198.18.1.1:2")), encode_v2(sa("[2001:2::9]:1"), sa("[2001:2::1]:2"))]
        {
            for n in 0..h.len() {
                assert_eq!(parse(&h[..n], 4096), Ok(None), "prefix of {n} bytes");
            }
        }
    }

    #[test]
    fn stream_bytes_after_the_header_are_left_to_the_caller() {
        let mut b = encode_v2(sa("198.18.0.9:1"), sa("198.18.1.1:2"));
        b.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(parse(&b, 4096).unwrap().unwrap().len, 28);
    }

    #[test]
    fn a_bad_signature_is_refused_at_once() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n", 4096), Err(ProxyError::BadSignature));
        assert_eq!(parse(b"PROXZ", 4096), Err(ProxyError::BadSignature));
        assert_eq!(parse(b"\r\n\r\n\0\r\nQUIX\n", 4096), Err(ProxyError::BadSignature));
    }

    /// §2.1: "a receiver ... must not try to parse more than 107 bytes".
    #[test]
    fn a_v1_line_longer_than_107_bytes_is_refused() {
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX, b'x');
        assert_eq!(parse(&long, 4096), Err(ProxyError::TooLong));
        // 107 bytes with the CRLF at the end is the longest accepted.
        long.truncate(V1_MAX - 2);
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse(&long, 4096).unwrap().unwrap().len, V1_MAX);
    }

    #[test]
    fn malformed_v1_fields_are_refused() {
        for bad in [
            &b"PROXY TCP4 198.18.0.9 198.18.1.1 1 2 3\r\n"[..],
            b"PROXY TCP4  198.18.0.9 198.18.1.1 1 2\r\n",
            b"PROXY TCP4 2001:2::9 198.18.1.1 1 2\r\n",
            b"PROXY TCP6 198.18.0.9 2001:2::1 1 2\r\n",
            b"PROXY TCP4 198.18.0.9 198.18.1.1 65536 2\r\n",
            b"PROXY TCP4 198.18.0.9 198.18.1.1 01 2\r\n",
            b"PROXY TCP4 198.18.0.9 198.18.1.1 -1 2\r\n",
            b"PROXY UDP4 198.18.0.9 198.18.1.1 1 2\r\n",
            b"PROXY TCP4 198.18.0.9 198.18.1.1 1 2\n\r\n",
        ] {
            assert!(matches!(parse(bad, 4096), Err(ProxyError::Malformed(_))), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(b"PROXY UNKNOWN ffff:f...f 1 2\r\n", 4096).unwrap().unwrap().addrs, None);
    }

    fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut b = V2_SIG.to_vec();
        b.push(ver_cmd);
        b.push(fam);
        b.extend_from_slice(&(body.len() as u16).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    const V4_ADDRS: [u8; 12] = [198, 18, 0, 9, 198, 18, 1, 1, 0, 1, 0, 2];

    #[test]
    fn malformed_v2_headers_are_refused() {
        let m = |b: Vec<u8>| matches!(parse(&b, 4096), Err(ProxyError::Malformed(_)));
        assert!(m(v2(0x11, 0x11, &V4_ADDRS)), "version 1 in a v2 header");
        assert!(m(v2(0x22, 0x11, &V4_ADDRS)), "command 2");
        assert!(m(v2(0x21, 0x12, &V4_ADDRS)), "UDP over IPv4");
        assert!(m(v2(0x21, 0x31, &[0; 216])), "UNIX stream");
        assert!(m(v2(0x21, 0x41, &V4_ADDRS)), "unknown family");
        assert!(m(v2(0x21, 0x21, &V4_ADDRS)), "TCP6 with a 12-byte block");
        // A TLV whose length runs past the header.
        let mut body = V4_ADDRS.to_vec();
        body.extend_from_slice(&[0x04, 0x00, 0x05, 1, 2]);
        assert!(m(v2(0x21, 0x11, &body)), "TLV length past the end");
        let mut body = V4_ADDRS.to_vec();
        body.extend_from_slice(&[0x04, 0x00]);
        assert!(m(v2(0x21, 0x11, &body)), "TLV header past the end");
        // A well-formed TLV is skipped.
        let mut body = V4_ADDRS.to_vec();
        body.extend_from_slice(&[0x04, 0x00, 0x02, 1, 2]);
        assert_eq!(parse(&v2(0x21, 0x11, &body), 4096).unwrap().unwrap().len, 16 + 17);
    }

    #[test]
    fn the_health_check_forms_parse_as_no_address() {
        assert_eq!(parse(&encode_v1_unknown(), 4096), Ok(Some(Header { addrs: None, len: 15 })));
        assert_eq!(parse(&encode_v2_local(), 4096), Ok(Some(Header { addrs: None, len: 16 })));
    }

    #[test]
    fn v2_local_and_unspec_mean_the_connections_own_addresses() {
        assert_eq!(parse(&v2(0x20, 0x00, &[]), 4096).unwrap().unwrap().addrs, None);
        assert_eq!(parse(&v2(0x20, 0x11, &V4_ADDRS), 4096).unwrap().unwrap().addrs, None);
        assert_eq!(parse(&v2(0x21, 0x00, &[]), 4096).unwrap().unwrap().addrs, None);
    }

    #[test]
    fn a_v2_header_past_the_limit_is_refused_before_it_arrives() {
        let mut head = V2_SIG.to_vec();
        head.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&head, 16384), Err(ProxyError::TooLong));
    }
}
