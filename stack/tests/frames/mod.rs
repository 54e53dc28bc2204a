//! Frame builders for tests that talk to a stack byte by byte.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

use pmd::MacAddr;
use stack::wire::{
    ArpOperation, ArpPacket, ArpRepr, ChecksumCaps, EtherType, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr,
    Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, NdpOption, NdpOptions, UdpPacket,
    UdpRepr,
};

/// The addresses a UDP frame goes between (see [`udp_frame`]).
pub use stack::wire::IpPair;

pub const SW: ChecksumCaps = ChecksumCaps::software();

pub fn eth(src: MacAddr, dst: MacAddr, t: EtherType, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + payload.len()];
    EthernetRepr::new(src, dst, t).emit(&mut EthernetFrame::new_unchecked(&mut f[..14]));
    f[14..].copy_from_slice(payload);
    f
}

pub fn arp_request(src: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let r = ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: src,
        source_protocol_addr: spa,
        target_hardware_addr: MacAddr::UNSPECIFIED,
        target_protocol_addr: tpa,
    };
    let mut b = vec![0u8; 28];
    r.emit(&mut ArpPacket::new_unchecked(&mut b[..]));
    eth(src, MacAddr::BROADCAST, EtherType::Arp, &b)
}

/// An IPv4 packet (header + `payload`), with fragment fields.
pub fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: IpProtocol,
    ident: u16,
    off: u16,
    mf: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut r = Ipv4Repr::new(src, dst, proto, payload.len(), 64);
    r.ident = ident;
    r.dont_frag = false;
    r.more_frags = mf;
    r.frag_offset = off;
    let mut b = vec![0u8; 20 + payload.len()];
    r.emit(&mut Ipv4Packet::new_unchecked(&mut b[..20]), &SW);
    b[20..].copy_from_slice(payload);
    b
}

pub fn udp(ip: IpPair, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 8 + payload.len()];
    b[8..].copy_from_slice(payload);
    UdpRepr { src_port: sport, dst_port: dport, payload_len: payload.len() }.emit(
        &mut UdpPacket::new_unchecked(&mut b[..]),
        &ip,
        &SW,
    );
    b
}

/// A UDP datagram in an Ethernet frame, over IPv4 (TTL 1) or IPv6 (hop
/// limit 64) as `ip` says.
pub fn udp_frame(src_mac: MacAddr, dst_mac: MacAddr, ip: IpPair, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let u = udp(ip, sport, dport, payload);
    match ip {
        IpPair::V4 { src, dst } => {
            eth(src_mac, dst_mac, EtherType::Ipv4, &ipv4(src, dst, IpProtocol::Udp, 1, 0, false, &u))
        }
        IpPair::V6 { src, dst } => eth(src_mac, dst_mac, EtherType::Ipv6, &ipv6(src, dst, IpProtocol::Udp, 64, &u)),
    }
}

pub fn icmp4_echo_frame(src_mac: MacAddr, dst_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr, data: &[u8]) -> Vec<u8> {
    let r = Icmpv4Repr::EchoRequest { ident: 7, seq_no: 1, data };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut Icmpv4Packet::new_unchecked(&mut b[..]), &SW);
    eth(src_mac, dst_mac, EtherType::Ipv4, &ipv4(src, dst, IpProtocol::Icmp, 2, 0, false, &b))
}

pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, nh: IpProtocol, hop: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 40 + payload.len()];
    Ipv6Repr::new(src, dst, nh, payload.len(), hop).emit(&mut Ipv6Packet::new_unchecked(&mut b[..40]));
    b[40..].copy_from_slice(payload);
    b
}

pub fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, r: &Icmpv6Repr<'_>) -> Vec<u8> {
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut Icmpv6Packet::new_unchecked(&mut b[..]), &src, &dst, &SW);
    b
}

pub fn ns_frame(src_mac: MacAddr, src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let opts = [NdpOption::SourceLinkLayerAddr(src_mac)];
    let dst = stack::iface::solicited_node(&target);
    let m = icmp6(src, dst, &Icmpv6Repr::NeighborSolicit { target, options: NdpOptions::List(&opts) });
    let dst_mac = MacAddr::ipv6_multicast(&dst);
    eth(src_mac, dst_mac, EtherType::Ipv6, &ipv6(src, dst, IpProtocol::Icmpv6, 255, &m))
}

pub fn icmp6_echo_frame(src_mac: MacAddr, dst_mac: MacAddr, src: Ipv6Addr, dst: Ipv6Addr, data: &[u8]) -> Vec<u8> {
    let m = icmp6(src, dst, &Icmpv6Repr::EchoRequest { ident: 7, seq_no: 1, data });
    eth(src_mac, dst_mac, EtherType::Ipv6, &ipv6(src, dst, IpProtocol::Icmpv6, 64, &m))
}
