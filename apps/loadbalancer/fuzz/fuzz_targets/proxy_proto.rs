//! Fuzzes the PROXY protocol parser (`lb` accepts v1 and v2 headers from
//! clients, strictly): a client's first bytes, whatever they are.
//!
//! Two kinds of input, chosen by the first byte:
//! - raw bytes: no panic; a header, when one is found, never claims more
//!   bytes than were given, nor more than the limit for v2;
//! - typed values (`arbitrary` addresses encoded by our own `encode_v1` /
//!   `encode_v2`, then trailing data): the header parses back to the same
//!   addresses (same family) and exactly its own length, and every strict
//!   prefix of it is "not enough bytes yet" (`Ok(None)`), never an error —
//!   a client whose header arrives split across segments must not be
//!   refused.
//!
//! Run from `apps/loadbalancer/`: `cargo +nightly fuzz run proxy_proto` (or
//! `scripts/fuzz.sh proxy_proto SECONDS`).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use loadbalancer::proxy_proto::{encode_v1, encode_v1_unknown, encode_v2, encode_v2_local, parse};

const LIMIT: usize = 536;

#[derive(Arbitrary, Debug)]
enum Addr {
    V4([u8; 4], u16),
    V6([u8; 16], u16),
}

impl Addr {
    fn sock(&self) -> SocketAddr {
        match *self {
            Addr::V4(a, p) => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), p),
            Addr::V6(a, p) => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), p),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Typed {
    V1(Addr, Addr),
    V2(Addr, Addr),
    V1Unknown,
    V2Local,
}

fn check_raw(buf: &[u8]) {
    if let Ok(Some(h)) = parse(buf, LIMIT) {
        assert!(h.len <= buf.len(), "header of {} bytes claimed from {} given", h.len, buf.len());
        assert!(h.len <= LIMIT.max(107), "header of {} bytes beyond the limit", h.len);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    if first & 1 == 0 {
        check_raw(rest);
        return;
    }
    let mut u = Unstructured::new(rest);
    let Ok(t) = Typed::arbitrary(&mut u) else { return };
    let trailing = u.take_rest();
    let (header, addrs) = match &t {
        Typed::V1(s, d) => (encode_v1(s.sock(), d.sock()), Some((s.sock(), d.sock()))),
        Typed::V2(s, d) => (encode_v2(s.sock(), d.sock()), Some((s.sock(), d.sock()))),
        Typed::V1Unknown => (encode_v1_unknown(), None),
        Typed::V2Local => (encode_v2_local(), None),
    };
    for k in 0..header.len() {
        assert_eq!(parse(&header[..k], LIMIT), Ok(None), "prefix of {k} bytes of {header:?}");
    }
    let mut buf = header.clone();
    buf.extend_from_slice(trailing);
    let h = parse(&buf, LIMIT).expect("our own header parses").expect("whole header");
    assert_eq!(h.len, header.len());
    match addrs {
        None => assert_eq!(h.addrs, None),
        Some((s, d)) if s.is_ipv4() == d.is_ipv4() => assert_eq!(h.addrs, Some((s, d))),
        Some((s, d)) => {
            let (ps, pd) = h.addrs.expect("addresses");
            assert_eq!((ps.port(), pd.port()), (s.port(), d.port()));
        }
    }
    check_raw(&buf);
});
