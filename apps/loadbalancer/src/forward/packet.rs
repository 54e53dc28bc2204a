//! Reading a frame on the forwarding path: Ethernet, IPv4 or IPv6, the L4
//! ports, and the quoted packet of an ICMP "fragmentation needed" /
//! ICMPv6 "packet too big". No allocation, no copy: a [`Parsed`] is offsets
//! and values read from the frame's bytes.
//!
//! Every length is checked before it is read; a frame too short for what
//! its headers claim is [`Parse::Malformed`], never a panic (a test feeds
//! every truncation of a valid frame). What is *not* checked: the IPv4
//! header checksum and the L4 checksum — the forwarder does not change the
//! inner packet, so the server's stack checks them, as behind Katran.
//!
//! Tagged (802.1Q) frames and every non-IP ethertype are [`Parse::NotIp`]
//! (passed to the host stack: ARP lives there).

use super::flow_table::FlowKey;

/// Ethertypes.
pub const ETH_IPV4: u16 = 0x0800;
/// IPv6.
pub const ETH_IPV6: u16 = 0x86dd;

/// IP protocol numbers used here.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// IPv4 in IP.
    pub const IPIP: u8 = 4;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// IPv6 in IP.
    pub const IPV6: u8 = 41;
    /// IPv6 fragment header.
    pub const FRAG: u8 = 44;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

/// What the frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// Not IPv4/IPv6 in an untagged frame (ARP, VLAN, anything else).
    NotIp,
    /// Headers shorter than they claim.
    Malformed,
    /// An IP packet.
    Ip(Parsed),
}

/// An IP packet's facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// IPv4 (else IPv6).
    pub v4: bool,
    /// Length of the IP packet (header + payload) by its own header; the
    /// frame may carry Ethernet padding behind it.
    pub ip_len: usize,
    /// The flow key: addresses, ports (0 when absent), protocol (the upper
    /// layer's, after IPv6 extension headers).
    pub key: FlowKey,
    /// A fragment (IPv4 MF or offset; an IPv6 fragment header).
    pub fragment: bool,
    /// A non-first fragment (no L4 header).
    pub later_fragment: bool,
    /// IPv4 options or IPv6 extension headers other than a fragment header.
    pub options: bool,
    /// Offset of the L4 header from the IP header.
    pub l4: usize,
    /// IPv4 DSCP/ECN byte, or IPv6 traffic class.
    pub tos: u8,
    /// IPv4 DF.
    pub dont_frag: bool,
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn mapped(a: &[u8]) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[10] = 0xff;
    m[11] = 0xff;
    m[12..].copy_from_slice(a);
    m
}

/// Reads the frame.
#[inline]
pub fn parse(f: &[u8]) -> Parse {
    if f.len() < 14 {
        return Parse::Malformed;
    }
    match be16(f, 12) {
        ETH_IPV4 => parse_ip(&f[14..], true),
        ETH_IPV6 => parse_ip(&f[14..], false),
        _ => Parse::NotIp,
    }
}

/// Reads an IP packet (IPv4 when `v4`), as in a frame or quoted in ICMP.
/// `quoted`: the packet may be cut short (ICMP quotes a prefix), so lengths
/// are checked only as far as the ports.
fn parse_ip_inner(ip: &[u8], v4: bool, quoted: bool) -> Parse {
    if v4 {
        if ip.len() < 20 || ip[0] >> 4 != 4 {
            return Parse::Malformed;
        }
        let hl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(be16(ip, 2));
        if hl < 20 || total < hl || ip.len() < hl || (!quoted && total > ip.len()) {
            return Parse::Malformed;
        }
        let ff = be16(ip, 6);
        let offset = ff & 0x1fff;
        let mf = ff & 0x2000 != 0;
        let p = ip[9];
        let mut key = FlowKey { src: mapped(&ip[12..16]), dst: mapped(&ip[16..20]), proto: p, ..FlowKey::default() };
        let later = offset != 0;
        if !later && (p == proto::TCP || p == proto::UDP) {
            if ip.len() < hl + 4 {
                return Parse::Malformed;
            }
            key.sport = be16(ip, hl);
            key.dport = be16(ip, hl + 2);
        }
        Parse::Ip(Parsed {
            v4: true,
            ip_len: total,
            key,
            fragment: mf || later,
            later_fragment: later,
            options: hl > 20,
            l4: hl,
            tos: ip[1],
            dont_frag: ff & 0x4000 != 0,
        })
    } else {
        if ip.len() < 40 || ip[0] >> 4 != 6 {
            return Parse::Malformed;
        }
        let total = 40 + usize::from(be16(ip, 4));
        if !quoted && total > ip.len() {
            return Parse::Malformed;
        }
        let avail = if quoted { ip.len() } else { total };
        let mut key = FlowKey::default();
        key.src.copy_from_slice(&ip[8..24]);
        key.dst.copy_from_slice(&ip[24..40]);
        let (mut next, mut at) = (ip[6], 40);
        let (mut fragment, mut later, mut options) = (false, false, false);
        // Extension headers (RFC 8200 §4): hop-by-hop, routing, destination
        // options are "options"; a fragment header marks a fragment. A chain
        // longer than eight headers is malformed for us.
        for _ in 0..8 {
            match next {
                0 | 43 | 60 => {
                    if avail < at + 8 {
                        return Parse::Malformed;
                    }
                    options = true;
                    next = ip[at];
                    at += (usize::from(ip[at + 1]) + 1) * 8;
                }
                proto::FRAG => {
                    if avail < at + 8 {
                        return Parse::Malformed;
                    }
                    fragment = true;
                    let fo = be16(ip, at + 2);
                    later = fo >> 3 != 0;
                    next = ip[at];
                    at += 8;
                }
                _ => break,
            }
        }
        if matches!(next, 0 | 43 | 60 | proto::FRAG) || at > avail {
            return Parse::Malformed;
        }
        key.proto = next;
        if !later && (next == proto::TCP || next == proto::UDP) {
            if avail < at + 4 {
                return Parse::Malformed;
            }
            key.sport = be16(ip, at);
            key.dport = be16(ip, at + 2);
        }
        let tos = ((ip[0] & 0x0f) << 4) | (ip[1] >> 4);
        Parse::Ip(Parsed {
            v4: false,
            ip_len: total,
            key,
            fragment,
            later_fragment: later,
            options,
            l4: at,
            tos,
            dont_frag: true,
        })
    }
}

/// Reads an IP packet in a frame.
#[inline]
pub fn parse_ip(ip: &[u8], v4: bool) -> Parse {
    parse_ip_inner(ip, v4, false)
}

/// The packet quoted by an ICMP "fragmentation needed" (type 3 code 4) or
/// ICMPv6 "packet too big" (type 2) at `p.l4` of `ip`: `None` when the
/// message is another one, or its quote is too short to hold the ports.
pub fn quoted_too_big(ip: &[u8], p: &Parsed) -> Option<Parsed> {
    let icmp = ip.get(p.l4..p.ip_len)?;
    if icmp.len() < 8 {
        return None;
    }
    let too_big = if p.v4 { icmp[0] == 3 && icmp[1] == 4 } else { icmp[0] == 2 && icmp[1] == 0 };
    if !too_big {
        return None;
    }
    match parse_ip_inner(&icmp[8..], p.v4, true) {
        Parse::Ip(q) if !q.later_fragment => Some(q),
        _ => None,
    }
}

/// The IPv4 address of a mapped 16-byte key address.
pub fn v4_of(a: &[u8; 16]) -> [u8; 4] {
    [a[12], a[13], a[14], a[15]]
}
