//! Receive-side scaling in software: the Toeplitz hash, the redirection
//! table (RETA), and which receive queue a frame reaches.
//!
//! A NIC with RSS hashes each received frame's flow (IPv4/IPv6 addresses, and
//! the TCP/UDP ports when the hash types ask for them and the packet is not a
//! fragment) with the Toeplitz function under a 40-byte key, and delivers the
//! frame to queue `reta[hash % reta.len()]`. This module is that function, so
//! that (1) drivers without hardware RSS steer exactly as a NIC would
//! (`ring?rss=1`, software RSS for DPDK vdevs), and (2) the stack can predict
//! on which queue — which core — the reply of a connection it opens will
//! arrive, and pick its local port so that it is the calling core
//! (Seastar's `tcp.hh` connect loop).
//!
//! # Invariants
//! - [`Toeplitz::hash`] is the Toeplitz function of Microsoft's "Verifying the
//!   RSS Hash Calculation" (and DPDK's `rte_softrss`): input bit *i*, when set,
//!   XORs in the 32 key bits starting at key bit *i*. The input is the source
//!   address, the destination address, then (with ports) the source port and
//!   the destination port, all in network byte order. The tests check
//!   Microsoft's published table and DPDK's `rte_softrss`.
//! - A frame that cannot be hashed (not IP, truncated, a hash type the
//!   configuration does not enable) gets hash 0, so it lands on `reta[0]`,
//!   as on Intel NICs: "where the port says", never a panic.
//! - With [`SYMMETRIC_KEY`] (the 16-bit pattern `0x6d5a` repeated, Woo and
//!   Park, "Scalable TCP Session Monitoring with Symmetric Receive-side
//!   Scaling"), both directions of every flow hash the same: the key's
//!   window at bit *i* equals its window at bit *i + 16k*, and swapping the
//!   source and destination moves each input bit by a multiple of 16.
//!
//! # Cost
//! The hash is computed from per-byte tables (what byte value *v* at input
//! position *i* XORs in: 36 positions × 256 × 4 bytes = 36 KiB per key, of
//! which an IPv4 4-tuple touches the first 12 KiB): one load and one XOR per
//! input byte, 12 for an IPv4 4-tuple, instead of one conditional XOR and
//! shift per input bit. [`Rss::hash_frame`] reads the tuple straight out of
//! the frame (no copy) for untagged IPv4.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::port::{RssCapabilities, RssConfig, RssHashTypes};
use crate::PmdError;

/// Key length this module uses (and what Intel's 10/40 GbE NICs take). A
/// longer key is accepted; bits past the 40th byte never reach a hash of at
/// most 36 input bytes.
pub const KEY_LEN: usize = 40;

/// Most input bytes: an IPv6 4-tuple (16 + 16 + 2 + 2).
pub const MAX_INPUT: usize = 36;

/// Redirection table size the software implementations offer (Intel 82599's).
pub const RETA_SIZE: usize = 128;

/// Microsoft's sample key (also DPDK's `rss_intel_key` and most drivers'
/// default): the key of the published verification table.
pub const MICROSOFT_KEY: [u8; KEY_LEN] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b,
    0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac,
    0x01, 0xfa,
];

/// The symmetric key: `0x6d5a` repeated. Both directions of a flow hash the
/// same (see the module documentation).
pub const SYMMETRIC_KEY: [u8; KEY_LEN] = {
    let mut k = [0u8; KEY_LEN];
    let mut i = 0;
    while i < KEY_LEN {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// A key as a user writes it (the `--rss-key` of `echo` and `lb`):
/// `microsoft` ([`MICROSOFT_KEY`]), `symmetric` ([`SYMMETRIC_KEY`]) or hex
/// bytes, at least [`KEY_LEN`] of them. The error names the problem.
pub fn parse_key(text: &str) -> Result<Vec<u8>, String> {
    match text {
        "microsoft" => Ok(MICROSOFT_KEY.to_vec()),
        "symmetric" => Ok(SYMMETRIC_KEY.to_vec()),
        hex => {
            let bad = || format!("'{text}' is not microsoft, symmetric or an even number of hex digits");
            if hex.len() % 2 != 0 {
                return Err(bad());
            }
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
                .collect::<Result<Vec<u8>, String>>()?;
            if bytes.len() < KEY_LEN {
                return Err(format!("{} bytes; the Toeplitz hash needs at least {KEY_LEN}", bytes.len()));
            }
            Ok(bytes)
        }
    }
}

/// What software RSS offers: a 40-byte key, a 128-entry table, every hash type.
pub fn software_capabilities() -> RssCapabilities {
    RssCapabilities { key_len: KEY_LEN, reta_size: RETA_SIZE, hash_types: RssHashTypes::all() }
}

/// A redirection table spreading `size` entries over `queues` queues round
/// robin (entry *i* names queue *i* mod `queues`), as DPDK drivers default.
pub fn spread_reta(queues: u16, size: usize) -> Vec<u16> {
    (0..size).map(|i| (i % queues.max(1) as usize) as u16).collect()
}

impl RssConfig {
    /// An RSS configuration over `queues` queues: `key`, every hash type
    /// (addresses and TCP/UDP ports), and a round-robin table of
    /// [`RETA_SIZE`] entries.
    pub fn spread(key: &[u8], queues: u16) -> RssConfig {
        RssConfig { key: key.to_vec(), hash_types: RssHashTypes::all(), reta: spread_reta(queues, RETA_SIZE) }
    }
}

/// The Toeplitz hash under one key.
#[derive(Clone)]
pub struct Toeplitz {
    /// `bytes[i][v]`: what byte `v` at position `i` of the input XORs into
    /// the hash.
    bytes: Box<[[u32; 256]; MAX_INPUT]>,
}

impl std::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Toeplitz").finish_non_exhaustive()
    }
}

impl Toeplitz {
    /// The hash under `key`, which must have at least [`KEY_LEN`] bytes.
    pub fn new(key: &[u8]) -> Result<Toeplitz, PmdError> {
        if key.len() < KEY_LEN {
            return Err(PmdError::Config {
                field: "rss.key",
                reason: format!("{} bytes; the Toeplitz hash needs at least {KEY_LEN}", key.len()),
            });
        }
        // The 32 key bits starting at key bit `b` (b + 32 <= 320).
        let window = |b: usize| -> u32 {
            let mut w = [0u8; 8];
            let start = b / 8;
            let end = (start + 8).min(KEY_LEN);
            w[..end - start].copy_from_slice(&key[start..end]);
            ((u64::from_be_bytes(w) << (b % 8)) >> 32) as u32
        };
        let mut bytes: Box<[[u32; 256]; MAX_INPUT]> =
            vec![[0u32; 256]; MAX_INPUT].into_boxed_slice().try_into().expect("MAX_INPUT rows");
        for (i, row) in bytes.iter_mut().enumerate() {
            let bit: [u32; 8] = std::array::from_fn(|j| window(8 * i + j));
            for (v, cell) in row.iter_mut().enumerate() {
                // Bit j of the byte (j = 0 the most significant) is input bit 8i + j.
                *cell = (0..8).filter(|j| v & (0x80 >> j) != 0).fold(0, |h, j| h ^ bit[j]);
            }
        }
        Ok(Toeplitz { bytes })
    }

    /// The hash of `input` (at most [`MAX_INPUT`] bytes; later bytes are
    /// ignored, as a 40-byte key has no bits for them).
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        self.hash_at(0, input)
    }

    /// The contribution of `part` placed at byte `offset` of the input (the
    /// hash of a tuple is the XOR of its parts'), so a tuple can be hashed
    /// where it lies in a frame.
    #[inline]
    pub fn hash_at(&self, offset: usize, part: &[u8]) -> u32 {
        let rows = self.bytes.get(offset..).unwrap_or(&[]);
        rows.iter().zip(part).fold(0, |h, (row, &b)| h ^ row[b as usize])
    }

    /// The hash of an IPv4 flow as received: source, destination, and the
    /// (source, destination) ports for a 4-tuple hash.
    #[inline]
    pub fn hash_v4(&self, src: Ipv4Addr, dst: Ipv4Addr, ports: Option<(u16, u16)>) -> u32 {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&src.octets());
        b[4..8].copy_from_slice(&dst.octets());
        match ports {
            Some((s, d)) => {
                b[8..10].copy_from_slice(&s.to_be_bytes());
                b[10..].copy_from_slice(&d.to_be_bytes());
                self.hash(&b)
            }
            None => self.hash(&b[..8]),
        }
    }

    /// The hash of an IPv6 flow as received (see [`hash_v4`](Self::hash_v4)).
    #[inline]
    pub fn hash_v6(&self, src: Ipv6Addr, dst: Ipv6Addr, ports: Option<(u16, u16)>) -> u32 {
        let mut b = [0u8; 36];
        b[..16].copy_from_slice(&src.octets());
        b[16..32].copy_from_slice(&dst.octets());
        match ports {
            Some((s, d)) => {
                b[32..34].copy_from_slice(&s.to_be_bytes());
                b[34..].copy_from_slice(&d.to_be_bytes());
                self.hash(&b)
            }
            None => self.hash(&b[..32]),
        }
    }
}

/// The transport of a flow, for the hash types that cover ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// Anything else: addresses only.
    Other,
}

/// A port's RSS as a NIC applies it: key, hash types and redirection table.
#[derive(Clone, Debug)]
pub struct Rss {
    toeplitz: Toeplitz,
    key: Box<[u8]>,
    types: RssHashTypes,
    reta: Box<[u16]>,
}

impl Rss {
    /// RSS as `cfg` configures it. The key must have at least [`KEY_LEN`]
    /// bytes and the table at least one entry; errors name the field.
    pub fn new(cfg: &RssConfig) -> Result<Rss, PmdError> {
        if cfg.reta.is_empty() {
            return Err(PmdError::Config { field: "rss.reta", reason: "the redirection table is empty".into() });
        }
        Ok(Rss {
            toeplitz: Toeplitz::new(&cfg.key)?,
            key: cfg.key.clone().into(),
            types: cfg.hash_types,
            reta: cfg.reta.clone().into(),
        })
    }

    /// The hash function.
    pub fn toeplitz(&self) -> &Toeplitz {
        &self.toeplitz
    }

    /// The redirection table.
    pub fn reta(&self) -> &[u16] {
        &self.reta
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The hash types.
    pub fn hash_types(&self) -> RssHashTypes {
        self.types
    }

    /// The queue a frame with hash `h` reaches.
    #[inline]
    pub fn queue_of_hash(&self, h: u32) -> u16 {
        self.reta[h as usize % self.reta.len()]
    }

    /// The hash a flow's packets get, as received from `src` to `dst` over
    /// `l4`, or `None` when the hash types cover neither its ports nor its
    /// addresses (or the families differ).
    pub fn hash_flow(&self, src: SocketAddr, dst: SocketAddr, l4: L4) -> Option<u32> {
        let t = self.types;
        match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let ports = match l4 {
                    L4::Tcp => t.contains(RssHashTypes::IPV4_TCP),
                    L4::Udp => t.contains(RssHashTypes::IPV4_UDP),
                    L4::Other => false,
                };
                if ports {
                    Some(self.toeplitz.hash_v4(s, d, Some((src.port(), dst.port()))))
                } else {
                    t.contains(RssHashTypes::IPV4).then(|| self.toeplitz.hash_v4(s, d, None))
                }
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let ports = match l4 {
                    L4::Tcp => t.contains(RssHashTypes::IPV6_TCP),
                    L4::Udp => t.contains(RssHashTypes::IPV6_UDP),
                    L4::Other => false,
                };
                if ports {
                    Some(self.toeplitz.hash_v6(s, d, Some((src.port(), dst.port()))))
                } else {
                    t.contains(RssHashTypes::IPV6).then(|| self.toeplitz.hash_v6(s, d, None))
                }
            }
            _ => None,
        }
    }

    /// Whether the hash of a flow over `l4` of `family_v6`'s family covers
    /// its ports (so a local port choice can steer it).
    pub fn covers_ports(&self, v6: bool, l4: L4) -> bool {
        let t = self.types;
        match (v6, l4) {
            (false, L4::Tcp) => t.contains(RssHashTypes::IPV4_TCP),
            (false, L4::Udp) => t.contains(RssHashTypes::IPV4_UDP),
            (true, L4::Tcp) => t.contains(RssHashTypes::IPV6_TCP),
            (true, L4::Udp) => t.contains(RssHashTypes::IPV6_UDP),
            (_, L4::Other) => false,
        }
    }

    /// The hash a NIC would give an Ethernet frame (0 when it cannot hash it;
    /// see the module documentation).
    pub fn hash_frame(&self, frame: &[u8]) -> u32 {
        if let Some(h) = self.hash_ipv4_fast(frame) {
            return h;
        }
        match parse(frame) {
            Some((src, dst, l4)) => self.hash_flow(src, dst, l4).unwrap_or(0),
            None => 0,
        }
    }

    /// Untagged IPv4 with a 20-byte header, not a fragment, hashed in place
    /// (the common case); `None` for anything else, which [`parse`] handles.
    #[inline]
    fn hash_ipv4_fast(&self, f: &[u8]) -> Option<u32> {
        let h = f.get(12..34)?;
        if h[..3] != [0x08, 0x00, 0x45] || u16::from_be_bytes([h[8], h[9]]) & 0x3fff != 0 {
            return None;
        }
        // A TCP/UDP header cut short is not hashed at all (as `parse`).
        let ports = match h[11] {
            6 => Some((self.types.contains(RssHashTypes::IPV4_TCP), f.get(34..38)?)),
            17 => Some((self.types.contains(RssHashTypes::IPV4_UDP), f.get(34..38)?)),
            _ => None,
        };
        let addrs = &h[14..22];
        if let Some((true, p)) = ports {
            Some(self.toeplitz.hash_at(0, addrs) ^ self.toeplitz.hash_at(8, p))
        } else if self.types.contains(RssHashTypes::IPV4) {
            Some(self.toeplitz.hash_at(0, addrs))
        } else {
            Some(0)
        }
    }

    /// The queue a NIC would deliver an Ethernet frame to.
    #[inline]
    pub fn queue_of_frame(&self, frame: &[u8]) -> u16 {
        self.queue_of_hash(self.hash_frame(frame))
    }
}

/// A frame's flow as RSS sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameFlow {
    /// Source address, and port for TCP/UDP (0 otherwise, and for fragments).
    pub src: SocketAddr,
    /// Destination address and port (as `src`).
    pub dst: SocketAddr,
    /// The transport RSS hashes by (`Other` for fragments).
    pub l4: L4,
    /// The IP protocol / next header.
    pub proto: u8,
    /// Offset of the transport header in the bytes parsed.
    pub l4_offset: usize,
    /// IPv6.
    pub v6: bool,
}

/// The flow of an Ethernet frame, or `None` when it is not IP or is too
/// short. One 802.1Q tag is skipped.
pub fn frame_flow(f: &[u8]) -> Option<FrameFlow> {
    let mut l3 = 14;
    let mut ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    if ethertype == 0x8100 {
        ethertype = u16::from_be_bytes([*f.get(16)?, *f.get(17)?]);
        l3 = 18;
    }
    if !matches!(ethertype, 0x0800 | 0x86dd) {
        return None;
    }
    let mut flow = packet_flow(f.get(l3..)?, ethertype == 0x86dd)?;
    flow.l4_offset += l3;
    Some(flow)
}

/// The flow of an IP packet (IPv6 when `v6`), as [`frame_flow`]. The
/// packet may be truncated after the first 4 transport bytes (an ICMP
/// error's quote). IPv6 extension headers are not walked: a packet with one
/// hashes on its addresses only, as many NICs do.
pub fn packet_flow(ip: &[u8], v6: bool) -> Option<FrameFlow> {
    let l4_of = |proto: u8| match proto {
        6 => L4::Tcp,
        17 => L4::Udp,
        _ => L4::Other,
    };
    let ports = |l4: L4, at: usize| -> Option<(u16, u16)> {
        if l4 == L4::Other {
            return Some((0, 0));
        }
        let p = ip.get(at..at + 4)?;
        Some((u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])))
    };
    if !v6 {
        let h = ip.get(..20)?;
        if h[0] >> 4 != 4 {
            return None;
        }
        let ihl = (h[0] & 15) as usize * 4;
        let frag = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
        let l4 = if frag { L4::Other } else { l4_of(h[9]) };
        let (sp, dp) = ports(l4, ihl)?;
        let s = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
        let d = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
        Some(FrameFlow {
            src: SocketAddr::new(s.into(), sp),
            dst: SocketAddr::new(d.into(), dp),
            l4,
            proto: h[9],
            l4_offset: ihl,
            v6: false,
        })
    } else {
        let h = ip.get(..40)?;
        if h[0] >> 4 != 6 {
            return None;
        }
        let l4 = l4_of(h[6]);
        let (sp, dp) = ports(l4, 40)?;
        let s: [u8; 16] = h[8..24].try_into().ok()?;
        let d: [u8; 16] = h[24..40].try_into().ok()?;
        Some(FrameFlow {
            src: SocketAddr::new(Ipv6Addr::from(s).into(), sp),
            dst: SocketAddr::new(Ipv6Addr::from(d).into(), dp),
            l4,
            proto: h[6],
            l4_offset: 40,
            v6: true,
        })
    }
}

fn parse(f: &[u8]) -> Option<(SocketAddr, SocketAddr, L4)> {
    let flow = frame_flow(f)?;
    Some((flow.src, flow.dst, flow.l4))
}

/// A test frame for the steering programs' proptests (`fanout_bpf`,
/// `tap_bpf`): Ethernet + IPv4 (IHL 5..7, optionally a fragment) or IPv6
/// with next header `proto`, the rest of the header and body from `body`.
#[cfg(test)]
pub(crate) fn test_frame(v6: bool, proto: u8, frag: bool, body: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[12..14].copy_from_slice(&if v6 { 0x86ddu16 } else { 0x0800 }.to_be_bytes());
    let mut ip = body.to_vec();
    ip.resize(ip.len().max(if v6 { 44 } else { 60 }), 0);
    if v6 {
        ip[0] = 0x60;
        ip[6] = proto;
    } else {
        ip[0] = 0x40 | (5 + body.first().map_or(0, |b| b % 3));
        ip[6] = if frag { 0x20 } else { 0 };
        ip[7] = 0;
        ip[9] = proto;
    }
    f.extend_from_slice(&ip);
    f
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_key_is_named_or_forty_hex_bytes_and_errors_say_which() {
        assert_eq!(parse_key("microsoft").unwrap(), MICROSOFT_KEY);
        assert_eq!(parse_key("symmetric").unwrap(), SYMMETRIC_KEY);
        assert_eq!(parse_key(&"6d5a".repeat(20)).unwrap(), SYMMETRIC_KEY);
        assert!(parse_key("6d5a").unwrap_err().starts_with("2 bytes"));
        assert!(parse_key("sideways").unwrap_err().contains("is not microsoft"));
        assert!(parse_key("6d5").unwrap_err().contains("is not microsoft"));
    }

    use super::*;
    use proptest::prelude::*;

    /// The definition, one input bit at a time.
    fn reference(key: &[u8], input: &[u8]) -> u32 {
        let mut h = 0u32;
        let mut window = u32::from_be_bytes(key[..4].try_into().unwrap());
        for (i, &byte) in input.iter().enumerate() {
            for bit in (0..8).rev() {
                if byte >> bit & 1 == 1 {
                    h ^= window;
                }
                let next = key.get(i + 4).copied().unwrap_or(0);
                window = (window << 1) | u32::from(next >> bit & 1);
            }
        }
        h
    }

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }
    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// A row of Microsoft's "Verifying the RSS Hash Calculation": (destination,
    /// source, hash over addresses, hash over addresses and TCP ports).
    type Row = ((&'static str, u16), (&'static str, u16), u32, u32);

    const MS_V4: [Row; 5] = [
        (("161.142.100.80", 1766), ("66.9.149.187", 2794), 0x323e_8fc2, 0x51cc_c178),
        (("65.69.140.83", 4739), ("199.92.111.2", 14230), 0xd718_262a, 0xc626_b0ea),
        (("12.22.207.184", 38024), ("24.19.198.95", 12898), 0xd2d0_a5de, 0x5c2b_394a),
        (("209.142.163.6", 2217), ("38.27.205.30", 48228), 0x8298_9176, 0xafc7_327f),
        (("202.188.127.2", 1303), ("153.39.163.191", 44251), 0x5d18_09c5, 0x10e8_28a2),
    ];
    const MS_V6: [Row; 3] = [
        (("3ffe:2501:200:3::1", 1766), ("3ffe:2501:200:1fff::7", 2794), 0x2cc1_8cd5, 0x4020_7d3d),
        (("ff02::1", 4739), ("3ffe:501:8::260:97ff:fe40:efab", 14230), 0x0f0c_461c, 0xdde5_1bbf),
        (("fe80::200:f8ff:fe21:67cf", 38024), ("3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251), 0x4b61_e985, 0x02d1_feef),
    ];

    #[test]
    fn ipv4_hashes_match_microsofts_verification_table() {
        let t = Toeplitz::new(&MICROSOFT_KEY).unwrap();
        for ((d, dp), (s, sp), addrs, tcp) in MS_V4 {
            assert_eq!(t.hash_v4(v4(s), v4(d), None), addrs, "{s} -> {d}");
            assert_eq!(t.hash_v4(v4(s), v4(d), Some((sp, dp))), tcp, "{s}:{sp} -> {d}:{dp}");
        }
    }

    #[test]
    fn ipv6_hashes_match_microsofts_verification_table() {
        let t = Toeplitz::new(&MICROSOFT_KEY).unwrap();
        for ((d, dp), (s, sp), addrs, tcp) in MS_V6 {
            assert_eq!(t.hash_v6(v6(s), v6(d), None), addrs, "{s} -> {d}");
            assert_eq!(t.hash_v6(v6(s), v6(d), Some((sp, dp))), tcp, "[{s}]:{sp} -> [{d}]:{dp}");
        }
    }

    #[test]
    fn a_key_shorter_than_40_bytes_is_refused_naming_the_field() {
        let e = Toeplitz::new(&[0u8; 39]).unwrap_err();
        assert!(e.to_string().contains("rss.key"), "{e}");
        let e = Rss::new(&RssConfig { key: MICROSOFT_KEY.to_vec(), hash_types: RssHashTypes::all(), reta: vec![] })
            .unwrap_err();
        assert!(e.to_string().contains("rss.reta"), "{e}");
    }

    /// An Ethernet + IPv4 + TCP frame from `s` to `d`.
    fn tcp4(s: SocketAddr, d: SocketAddr, frag: bool) -> Vec<u8> {
        let (IpAddr::V4(si), IpAddr::V4(di)) = (s.ip(), d.ip()) else { panic!() };
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        if frag {
            f[14 + 6] = 0x20; // more fragments
        }
        f[14 + 9] = 6;
        f[26..30].copy_from_slice(&si.octets());
        f[30..34].copy_from_slice(&di.octets());
        f[34..36].copy_from_slice(&s.port().to_be_bytes());
        f[36..38].copy_from_slice(&d.port().to_be_bytes());
        f
    }

    #[test]
    fn a_frame_hashes_as_its_flow_and_fragments_and_arp_fall_back() {
        let rss = Rss::new(&RssConfig::spread(&MICROSOFT_KEY, 4)).unwrap();
        let (d, s) = ("161.142.100.80:1766".parse().unwrap(), "66.9.149.187:2794".parse().unwrap());
        assert_eq!(rss.hash_frame(&tcp4(s, d, false)), 0x51cc_c178);
        assert_eq!(rss.queue_of_frame(&tcp4(s, d, false)), (0x51cc_c178u32 % 128 % 4) as u16);
        // A fragment hashes on its addresses only (RFC-less but universal NIC behaviour).
        assert_eq!(rss.hash_frame(&tcp4(s, d, true)), 0x323e_8fc2);
        // ARP: hash 0, queue reta[0]; a truncated frame the same, no panic.
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(rss.hash_frame(&arp), 0);
        assert_eq!(rss.hash_frame(&tcp4(s, d, false)[..30]), 0);
        // Without the TCP hash type: the 2-tuple.
        let mut cfg = RssConfig::spread(&MICROSOFT_KEY, 4);
        cfg.hash_types = RssHashTypes::IPV4;
        assert_eq!(Rss::new(&cfg).unwrap().hash_frame(&tcp4(s, d, false)), 0x323e_8fc2);
    }

    proptest! {
        #[test]
        fn the_nibble_tables_compute_the_bitwise_definition(
            key in proptest::collection::vec(any::<u8>(), KEY_LEN),
            input in proptest::collection::vec(any::<u8>(), 0..=MAX_INPUT),
        ) {
            prop_assert_eq!(Toeplitz::new(&key).unwrap().hash(&input), reference(&key, &input));
        }

        #[test]
        fn with_the_symmetric_key_both_directions_of_a_flow_hash_the_same(
            a in any::<[u8; 16]>(), b in any::<[u8; 16]>(), pa in any::<u16>(), pb in any::<u16>(),
        ) {
            let t = Toeplitz::new(&SYMMETRIC_KEY).unwrap();
            let (a4, b4) = (Ipv4Addr::new(a[0], a[1], a[2], a[3]), Ipv4Addr::new(b[0], b[1], b[2], b[3]));
            prop_assert_eq!(t.hash_v4(a4, b4, Some((pa, pb))), t.hash_v4(b4, a4, Some((pb, pa))));
            prop_assert_eq!(t.hash_v4(a4, b4, None), t.hash_v4(b4, a4, None));
            let (a6, b6) = (Ipv6Addr::from(a), Ipv6Addr::from(b));
            prop_assert_eq!(t.hash_v6(a6, b6, Some((pa, pb))), t.hash_v6(b6, a6, Some((pb, pa))));
            prop_assert_eq!(t.hash_v6(a6, b6, None), t.hash_v6(b6, a6, None));
        }

        #[test]
        fn the_in_place_ipv4_path_equals_the_general_parse(
            mut f in proptest::collection::vec(any::<u8>(), 30..60),
            proto in prop_oneof![Just(6u8), Just(17), Just(1)],
            frag in any::<bool>(),
            types in 0u32..64,
        ) {
            f[12..15].copy_from_slice(&[0x08, 0x00, 0x45]);
            f[23] = proto;
            if !frag {
                f[20] &= 0x80;
                f[21] = 0;
            }
            let mut cfg = RssConfig::spread(&MICROSOFT_KEY, 4);
            cfg.hash_types = RssHashTypes::from_bits_truncate(types);
            let rss = Rss::new(&cfg).unwrap();
            let general = parse(&f).and_then(|(s, d, l4)| rss.hash_flow(s, d, l4)).unwrap_or(0);
            prop_assert_eq!(rss.hash_frame(&f), general);
        }

        #[test]
        fn any_bytes_as_a_frame_hash_without_panicking(f in proptest::collection::vec(any::<u8>(), 0..80)) {
            let rss = Rss::new(&RssConfig::spread(&SYMMETRIC_KEY, 3)).unwrap();
            prop_assert!(rss.queue_of_frame(&f) < 3);
        }
    }

    #[test]
    fn microsofts_key_is_not_symmetric_so_the_property_above_can_fail() {
        let t = Toeplitz::new(&MICROSOFT_KEY).unwrap();
        let (a, b) = (v4("66.9.149.187"), v4("161.142.100.80"));
        assert_ne!(t.hash_v4(a, b, Some((2794, 1766))), t.hash_v4(b, a, Some((1766, 2794))));
    }
}
