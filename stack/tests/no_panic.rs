//! Property tests: no input, however malformed, makes a parser panic; and
//! arbitrary TCP/IPv4 headers survive emit -> parse.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use stack::wire::ipv6::walk_ext_headers;
use stack::wire::{
    ArpPacket, ArpRepr, ChecksumCaps, EthernetFrame, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpPair,
    IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6FragmentHeader, Ipv6Packet, NdpOptions, QuotedIpv4, SeqNumber, TcpFlags,
    TcpOptionIter, TcpPacket, TcpRepr, TcpTimestamp, UdpPacket, UdpRepr, VlanHeader,
};

const CAPS: [ChecksumCaps; 2] = [ChecksumCaps::software(), ChecksumCaps::offloaded()];

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// Calls every getter of every view that `new_checked` accepts.
fn touch_views(b: &[u8]) {
    if let Ok(p) = EthernetFrame::new_checked(b) {
        let _ = (p.src_addr(), p.dst_addr(), p.ethertype(), p.payload().len());
    }
    if let Ok(p) = VlanHeader::new_checked(b) {
        let _ = (p.pcp(), p.dei(), p.vid(), p.ethertype(), p.payload().len());
    }
    if let Ok(p) = ArpPacket::new_checked(b) {
        let _ = (p.htype(), p.ptype(), p.operation());
        let _ = (p.source_hardware_addr(), p.source_protocol_addr());
        let _ = (p.target_hardware_addr(), p.target_protocol_addr());
        let _ = ArpRepr::parse(&p);
    }
    if let Ok(p) = Ipv4Packet::new_checked(b) {
        let _ = (p.version(), p.dscp(), p.ecn(), p.ident(), p.dont_frag(), p.more_frags());
        let _ = (p.frag_offset(), p.ttl(), p.protocol(), p.checksum(), p.src_addr());
        let _ = (p.dst_addr(), p.options().len(), p.payload().len(), p.verify_checksum());
    }
    if let Ok(p) = Ipv6Packet::new_checked(b) {
        let _ = (p.version(), p.traffic_class(), p.flow_label(), p.hop_limit());
        let _ = (p.src_addr(), p.dst_addr(), p.payload().len(), p.upper_layer());
    }
    if let Ok(p) = Ipv6FragmentHeader::new_checked(b) {
        let _ = (p.next_header(), p.frag_offset(), p.more_frags(), p.ident());
    }
    let v4 = IpPair::V4 { src: Ipv4Addr::new(198, 18, 0, 1), dst: Ipv4Addr::new(198, 18, 0, 2) };
    let (s6, d6): (Ipv6Addr, Ipv6Addr) = ("2001:2::1".parse().unwrap(), "2001:2::2".parse().unwrap());
    let v6 = IpPair::V6 { src: s6, dst: d6 };
    if let Ok(p) = UdpPacket::new_checked(b) {
        let _ = (p.src_port(), p.dst_port(), p.payload().len());
        let _ = (p.verify_checksum(&v4), p.verify_checksum(&v6));
    }
    if let Ok(p) = TcpPacket::new_checked(b) {
        let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number(), p.flags());
        let _ = (p.window_len(), p.urgent_ptr(), p.payload().len(), p.verify_checksum(&v4));
        let _ = p.option_iter().count();
    }
    if let Ok(p) = Icmpv4Packet::new_checked(b) {
        let _ = (p.msg_type(), p.code(), p.echo_ident(), p.echo_seq_no(), p.data().len());
    }
    if let Ok(p) = Icmpv6Packet::new_checked(b) {
        let _ = (p.msg_type(), p.code(), p.body().len(), p.verify_checksum(&s6, &d6));
    }
    for caps in &CAPS {
        if let Ok(p) = Icmpv4Packet::new_checked(b) {
            if let Ok(r) = Icmpv4Repr::parse(&p, caps) {
                let _ = (r.quoted(), r.buffer_len(), r.to_string());
            }
        }
        if let Ok(p) = Icmpv6Packet::new_checked(b) {
            if let Ok(r) = Icmpv6Repr::parse(&p, &s6, &d6, caps) {
                let _ = (r.buffer_len(), r.to_string());
            }
        }
        for ip in [&v4, &v6] {
            if let Ok(p) = UdpPacket::new_checked(b) {
                let _ = UdpRepr::parse(&p, ip, caps);
            }
            if let Ok(p) = TcpPacket::new_checked(b) {
                let _ = TcpRepr::parse(&p, ip, caps);
            }
        }
        if let Ok(p) = Ipv4Packet::new_checked(b) {
            let _ = Ipv4Repr::parse(&p, caps);
        }
    }
    let _ = QuotedIpv4::parse(b).map(|q| q.ports());
    let _ = TcpOptionIter::new(b).count();
    let o = NdpOptions::Raw(b);
    let _ = (o.validate(), o.source_lladdr(), o.target_lladdr(), o.mtu());
    let _ = o.prefixes().count();
}

/// Builds Ethernet + IP headers (with correct lengths) in front of `body`.
fn framed(v6: bool, proto: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(body.len() as u16).to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
        f.extend_from_slice(&"2001:2::1".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&"2001:2::2".parse::<Ipv6Addr>().unwrap().octets());
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((20 + body.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2]);
    }
    f.extend_from_slice(body);
    f
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_frames_never_panic(b in bytes(256)) {
        for caps in &CAPS {
            let _ = common::dissect(&b, caps);
        }
        touch_views(&b);
    }

    #[test]
    fn arbitrary_l4_behind_valid_ip_never_panics(
        v6 in any::<bool>(),
        proto in prop::sample::select(vec![0u8, 1, 6, 17, 43, 44, 50, 51, 58, 59, 60, 99]),
        body in bytes(200),
    ) {
        let f = framed(v6, proto, &body);
        for caps in &CAPS {
            let _ = common::dissect(&f, caps);
        }
    }

    #[test]
    fn arbitrary_ext_header_chains_never_panic(nh in any::<u8>(), b in bytes(300)) {
        let _ = walk_ext_headers(IpProtocol::from(nh), &b);
    }

    #[test]
    fn arbitrary_tcp_options_never_panic(opts in bytes(40)) {
        // Pad to a multiple of 4 and put behind a valid header.
        let mut o = opts;
        o.resize(o.len().div_ceil(4) * 4, 0);
        let mut seg = vec![0u8; 20];
        seg[0] = 1;
        seg[3] = 2;
        seg[12] = (((20 + o.len()) / 4) as u8) << 4;
        seg.extend_from_slice(&o);
        let ip = IpPair::V4 { src: Ipv4Addr::new(198, 18, 0, 1), dst: Ipv4Addr::new(198, 18, 0, 2) };
        let _ = TcpRepr::parse(&TcpPacket::new_checked(&seg[..]).unwrap(), &ip, &ChecksumCaps::offloaded());
    }

    #[test]
    fn tcp_repr_round_trips(
        ports in (1u16.., 1u16..),
        seq in any::<u32>(),
        ack in any::<u32>(),
        flags in 0u16..0x200,
        window in any::<u16>(),
        mss in proptest::option::of(any::<u16>()),
        ws in proptest::option::of(0u8..=14),
        sack_perm in any::<bool>(),
        ts in proptest::option::of((any::<u32>(), any::<u32>())),
        sacks in proptest::collection::vec((any::<u32>(), any::<u32>()), 0..=4),
        payload in bytes(64),
        v6 in any::<bool>(),
    ) {
        let mut r = TcpRepr::new(ports.0, ports.1, SeqNumber(seq), SeqNumber(ack), TcpFlags(flags), window);
        r.max_seg_size = mss;
        r.window_scale = ws;
        r.sack_permitted = sack_perm;
        r.timestamp = ts.map(|(tsval, tsecr)| TcpTimestamp { tsval, tsecr });
        for (slot, (a, b)) in r.sack_ranges.iter_mut().zip(sacks) {
            *slot = Some((SeqNumber(a), SeqNumber(b)));
        }
        let ip = if v6 {
            IpPair::V6 { src: "2001:2::1".parse().unwrap(), dst: "2001:2::2".parse().unwrap() }
        } else {
            IpPair::V4 { src: Ipv4Addr::new(198, 18, 0, 1), dst: Ipv4Addr::new(198, 18, 0, 2) }
        };
        let mut buf = vec![0u8; r.header_len() + payload.len()];
        r.emit_with_payload(&mut TcpPacket::new_unchecked(&mut buf), &ip, &payload, &ChecksumCaps::software());
        prop_assert_eq!(r.header_len() % 4, 0);
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        let parsed = TcpRepr::parse(&p, &ip, &ChecksumCaps::software()).unwrap();
        let mut expect = r;
        expect.payload_len = payload.len();
        let n = r.sack_blocks_emitted();
        for s in expect.sack_ranges.iter_mut().skip(n) {
            *s = None;
        }
        prop_assert_eq!(parsed, expect);
        prop_assert_eq!(p.payload(), &payload[..]);
    }

    #[test]
    fn ipv4_repr_round_trips(
        src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), proto in any::<u8>(),
        len in 0usize..1500, ttl in any::<u8>(), dscp in 0u8..64, ecn in 0u8..4,
        ident in any::<u16>(), df in any::<bool>(), mf in any::<bool>(), off in 0u16..8192,
    ) {
        let r = Ipv4Repr {
            src_addr: src.into(), dst_addr: dst.into(), protocol: proto.into(), payload_len: len,
            ttl, dscp, ecn, ident, dont_frag: df, more_frags: mf, frag_offset: off * 8,
        };
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut buf), &ChecksumCaps::software());
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(Ipv4Repr::parse(&p, &ChecksumCaps::software()), Ok(r));
    }
}
