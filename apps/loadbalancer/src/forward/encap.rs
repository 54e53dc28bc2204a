//! Rewriting a frame toward its server, in place: the destination MAC (L2
//! DSR), or an outer IP header (IPIP, IP6IP6, IPv4-in-IPv6, IPv6-in-IPv4) or
//! outer IP + UDP (GUE variant 1) written into the buffer's headroom
//! ([`Mbuf::prepend`]), with a fresh Ethernet header in front. The inner
//! packet is never copied or changed.
//!
//! Checksums: the outer IPv4 header checksum is computed; the GUE UDP
//! checksum is 0 over IPv4 (RFC 768 allows it, and RFC 8086 §5 / Katran send
//! it so) and computed over IPv6, where a zero UDP checksum is not allowed
//! (RFC 8200 §8.1) — the one per-payload cost of this file, paid only for
//! GUE toward IPv6 servers.
//!
//! Outer header values: DSCP/ECN copied from the inner packet (RFC 2003
//! §3.1, RFC 6040 normal mode), outer DF copied from an inner IPv4 packet and
//! set for an inner IPv6 one (which no router may fragment), ident 0 (RFC 6864:
//! atomic datagrams), IPv6 flow label and GUE source port from the flow hash
//! (entropy for ECMP and the servers' RSS), TTL from the config.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pmd::{checksum, MacAddr, Mbuf};

use super::config::Encap;
use super::packet::{proto, ETH_IPV4, ETH_IPV6};

/// Where and how one packet goes.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Encapsulation.
    pub encap: Encap,
    /// Our MAC (the new source MAC).
    pub our_mac: MacAddr,
    /// The new destination MAC (the server's for L2 DSR, the gateway's else).
    pub dst_mac: MacAddr,
    /// The server's address (the outer destination).
    pub server: IpAddr,
    /// Outer IPv4 source.
    pub src_v4: Ipv4Addr,
    /// Outer IPv6 source.
    pub src_v6: Ipv6Addr,
    /// Outer TTL.
    pub ttl: u8,
    /// GUE destination port.
    pub gue_port: u16,
    /// GUE source port (already chosen from the flow hash).
    pub gue_sport: u16,
    /// IPv6 flow label (20 bits, from the flow hash).
    pub flow_label: u32,
    /// Largest IP packet the port sends.
    pub mtu: u16,
}

impl Target {
    /// Bytes the encapsulation adds in front of the IP packet.
    pub fn mtu_overhead(&self) -> usize {
        let ip = match (self.encap, self.server) {
            (Encap::L2Dsr, _) => return 0,
            (_, IpAddr::V4(_)) => 20,
            (_, IpAddr::V6(_)) => 40,
        };
        ip + if self.encap == Encap::Gue { 8 } else { 0 }
    }
}

/// Why a rewrite failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncapError {
    /// The encapsulated packet would exceed the MTU.
    TooBig,
    /// The buffer has too little headroom.
    NoHeadroom,
}

/// Rewrites `m` (a frame holding an IP packet of `ip_len` bytes, IPv4 when
/// `inner_v4`, DSCP/ECN `tos`, DF `df`) toward `t`.
pub fn apply(m: &mut Mbuf, t: &Target, inner_v4: bool, ip_len: usize, tos: u8, df: bool) -> Result<(), EncapError> {
    if t.encap == Encap::L2Dsr {
        let d = m.data_mut();
        d[0..6].copy_from_slice(&t.dst_mac.0);
        d[6..12].copy_from_slice(&t.our_mac.0);
        return Ok(());
    }
    // Drop Ethernet padding behind the IP packet: it would become payload.
    let pad = m.len() - 14 - ip_len;
    if pad > 0 {
        let _ = m.trim(pad);
    }
    let gue = t.encap == Encap::Gue;
    let udp = if gue { 8 } else { 0 };
    let (outer_ip, ethertype) = match t.server {
        IpAddr::V4(_) => (20, ETH_IPV4),
        IpAddr::V6(_) => (40, ETH_IPV6),
    };
    let n = outer_ip + udp;
    if ip_len + n > usize::from(t.mtu) {
        return Err(EncapError::TooBig);
    }
    let inner_proto = if gue {
        proto::UDP
    } else if inner_v4 {
        proto::IPIP
    } else {
        proto::IPV6
    };
    let Some(d) = m.prepend(n) else {
        return Err(EncapError::NoHeadroom);
    };
    let _ = d;
    let d = m.data_mut();
    d[0..6].copy_from_slice(&t.dst_mac.0);
    d[6..12].copy_from_slice(&t.our_mac.0);
    d[12..14].copy_from_slice(&ethertype.to_be_bytes());
    let o = &mut d[14..14 + n + ip_len];
    let outer_len = n + ip_len;
    match t.server {
        IpAddr::V4(dst) => {
            let h = &mut o[..20];
            h[0] = 0x45;
            h[1] = tos;
            h[2..4].copy_from_slice(&(outer_len as u16).to_be_bytes());
            h[4..6].copy_from_slice(&[0, 0]);
            let flags: u16 = if df || !inner_v4 { 0x4000 } else { 0 };
            h[6..8].copy_from_slice(&flags.to_be_bytes());
            h[8] = t.ttl;
            h[9] = inner_proto;
            h[10..12].copy_from_slice(&[0, 0]);
            h[12..16].copy_from_slice(&t.src_v4.octets());
            h[16..20].copy_from_slice(&dst.octets());
            let c = checksum::checksum(h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            if gue {
                let u = &mut o[20..28];
                u[0..2].copy_from_slice(&t.gue_sport.to_be_bytes());
                u[2..4].copy_from_slice(&t.gue_port.to_be_bytes());
                u[4..6].copy_from_slice(&((8 + ip_len) as u16).to_be_bytes());
                u[6..8].copy_from_slice(&[0, 0]);
            }
        }
        IpAddr::V6(dst) => {
            let h = &mut o[..40];
            let w = (6u32 << 28) | (u32::from(tos) << 20) | (t.flow_label & 0xf_ffff);
            h[0..4].copy_from_slice(&w.to_be_bytes());
            h[4..6].copy_from_slice(&((outer_len - 40) as u16).to_be_bytes());
            h[6] = inner_proto;
            h[7] = t.ttl;
            h[8..24].copy_from_slice(&t.src_v6.octets());
            h[24..40].copy_from_slice(&dst.octets());
            if gue {
                let ulen = (8 + ip_len) as u32;
                let (hdr, rest) = o.split_at_mut(48);
                let u = &mut hdr[40..48];
                u[0..2].copy_from_slice(&t.gue_sport.to_be_bytes());
                u[2..4].copy_from_slice(&t.gue_port.to_be_bytes());
                u[4..6].copy_from_slice(&(ulen as u16).to_be_bytes());
                u[6..8].copy_from_slice(&[0, 0]);
                let s = checksum::combine(&[
                    checksum::pseudo_header_v6(&t.src_v6, &dst, proto::UDP, ulen),
                    checksum::sum(u),
                    checksum::sum(rest),
                ]);
                let c = match !s {
                    0 => 0xffff,
                    c => c,
                };
                u[6..8].copy_from_slice(&c.to_be_bytes());
            }
        }
    }
    Ok(())
}
