//! A small dissector over the wire module, shared by the integration tests:
//! Ethernet (+VLAN) -> ARP | IPv4 | IPv6 (+ext headers) -> ICMP | UDP | TCP.
#![allow(dead_code)]

use stack::wire::{
    ArpPacket, ArpRepr, ChecksumCaps, EtherType, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet,
    Icmpv6Repr, IpPair, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, Ipv6Upper, Result, TcpPacket, TcpRepr,
    UdpPacket, UdpRepr,
};

/// The transport part of a packet.
#[derive(Debug)]
pub enum L4<'a> {
    /// TCP header and payload.
    Tcp(TcpRepr, &'a [u8]),
    /// UDP header and payload.
    Udp(UdpRepr, &'a [u8]),
    /// ICMPv4 message.
    Icmpv4(Icmpv4Repr<'a>),
    /// ICMPv6 message.
    Icmpv6(Icmpv6Repr<'a>),
    /// A fragment: needs reassembly before the upper layer can be parsed.
    Fragment(&'a [u8]),
    /// Another protocol.
    Other(IpProtocol),
}

/// The network part of a packet.
#[derive(Debug)]
pub enum L3<'a> {
    /// ARP.
    Arp(ArpRepr),
    /// IPv4 and what it carries.
    Ipv4(Ipv4Repr, L4<'a>),
    /// IPv6, where its upper layer starts, and what it carries.
    Ipv6(Ipv6Repr, Ipv6Upper, L4<'a>),
    /// Another EtherType.
    Other(EtherType),
}

/// A dissected frame.
#[derive(Debug)]
pub struct Dissected<'a> {
    /// Ethernet header.
    pub eth: EthernetRepr,
    /// Everything above it.
    pub l3: L3<'a>,
}

fn l4<'a>(proto: IpProtocol, data: &'a [u8], ip: &IpPair, caps: &ChecksumCaps) -> Result<L4<'a>> {
    Ok(match proto {
        IpProtocol::Tcp => {
            let p = TcpPacket::new_checked(data)?;
            let r = TcpRepr::parse(&p, ip, caps)?;
            L4::Tcp(r, &data[p.header_len()..])
        }
        IpProtocol::Udp => {
            let p = UdpPacket::new_checked(data)?;
            let r = UdpRepr::parse(&p, ip, caps)?;
            L4::Udp(r, &data[8..8 + r.payload_len])
        }
        IpProtocol::Icmp => {
            let p = Icmpv4Packet::new_checked(data)?;
            L4::Icmpv4(Icmpv4Repr::parse(&p, caps)?)
        }
        IpProtocol::Icmpv6 => {
            let IpPair::V6 { src, dst } = ip else {
                return Ok(L4::Other(proto));
            };
            let p = Icmpv6Packet::new_checked(data)?;
            L4::Icmpv6(Icmpv6Repr::parse(&p, src, dst, caps)?)
        }
        other => L4::Other(other),
    })
}

/// Parses a whole Ethernet frame.
pub fn dissect<'a>(frame: &'a [u8], caps: &ChecksumCaps) -> Result<Dissected<'a>> {
    let f = EthernetFrame::new_checked(frame)?;
    let eth = EthernetRepr::parse(&f)?;
    let payload = eth.payload(frame);
    let l3 = match eth.ethertype {
        EtherType::Arp => L3::Arp(ArpRepr::parse(&ArpPacket::new_checked(payload)?)?),
        EtherType::Ipv4 => {
            let p = Ipv4Packet::new_checked(payload)?;
            let r = Ipv4Repr::parse(&p, caps)?;
            let data = &payload[p.header_len()..p.header_len() + r.payload_len];
            let ip = IpPair::V4 { src: r.src_addr, dst: r.dst_addr };
            let up = if r.is_fragment() { L4::Fragment(data) } else { l4(r.protocol, data, &ip, caps)? };
            L3::Ipv4(r, up)
        }
        EtherType::Ipv6 => {
            let p = Ipv6Packet::new_checked(payload)?;
            let r = Ipv6Repr::parse(&p)?;
            let upper = p.upper_layer()?;
            let data = &payload[40..40 + r.payload_len][upper.offset..];
            let ip = IpPair::V6 { src: r.src_addr, dst: r.dst_addr };
            let is_frag = upper.fragment.is_some_and(|f| f.more_frags || f.frag_offset != 0);
            let up = if is_frag { L4::Fragment(data) } else { l4(upper.protocol, data, &ip, caps)? };
            L3::Ipv6(r, upper, up)
        }
        other => L3::Other(other),
    };
    Ok(Dissected { eth, l3 })
}
