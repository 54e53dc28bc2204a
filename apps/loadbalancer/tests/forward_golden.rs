//! Golden packet tests of `lb`'s forwarding mode, in the style of Katran's
//! `lib/testing` fixtures: each case is an input frame, the verdict
//! (forwarded / passed to the host / dropped, and why) and, when forwarded,
//! the exact expected output frame. Input and expected frames are built
//! independently of the forwarder, with the stack's own `wire` Reprs (scapy
//! is not a project dependency), and every checksum of an output is
//! verified by the stack's parsers (outer IPv4 header, GUE's UDP over IPv6,
//! the inner TCP/UDP untouched).
//!
//! The expected server of a flow comes from a model: `Maglev::build` over
//! the backend's names and `maglev::flow_key(client, vip, four_tuple)`, the
//! proxy mode's key — so a change to the forwarder's hashing shows here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use loadbalancer::config::{Checked, Config, INIT_FORWARD};
use loadbalancer::forward::flow_table::FlowKey;
use loadbalancer::forward::forwarder::{DropReason, Forwarder, Verdict};
use loadbalancer::maglev::{flow_key, Maglev};
use pmd::{MacAddr, Mbuf, Mempool, MempoolConfig};
use stack::wire::ethernet::{EtherType, EthernetFrame, EthernetRepr};
use stack::wire::ipv4::{Ipv4Packet, Ipv4Repr};
use stack::wire::ipv6::{Ipv6Packet, Ipv6Repr};
use stack::wire::tcp::{SeqNumber, TcpFlags, TcpPacket, TcpRepr};
use stack::wire::udp::{UdpPacket, UdpRepr};
use stack::wire::{ChecksumCaps, IpPair, IpProtocol};

const OUR: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const CLIENT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xc1]);
const GW: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xfe]);
const SW: ChecksumCaps = ChecksumCaps::software();

fn server_mac(i: usize) -> MacAddr {
    MacAddr([2, 0, 0, 0, 2, i as u8 + 1])
}

fn vip4() -> SocketAddr {
    "198.18.0.10:80".parse().unwrap()
}
fn vip6() -> SocketAddr {
    "[2001:2::10]:80".parse().unwrap()
}
fn server4(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 2, i as u8 + 1))
}
fn server6(i: usize) -> IpAddr {
    IpAddr::V6(format!("2001:2::2:{}", i + 1).parse().unwrap())
}
const SRC4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
fn src6() -> Ipv6Addr {
    "2001:2::2".parse().unwrap()
}

/// The forward init file with a VIP, an encapsulation, server families and
/// policies.
fn config(vip: SocketAddr, encap: &str, v6_servers: bool, fragments: &str, options: &str) -> Checked {
    let mut t = INIT_FORWARD
        .replace("vip = \"198.18.0.10:80\"", &format!("vip = \"{vip}\""))
        .replace("encap = \"l2dsr\"", &format!("encap = \"{encap}\""))
        .replace("fragments = \"drop\"", &format!("fragments = \"{fragments}\""))
        .replace("ip_options = \"drop\"", &format!("ip_options = \"{options}\""))
        .replace("flow_table_size = 1048576", "flow_table_size = 4096");
    if v6_servers {
        for i in 0..3 {
            t = t.replace(&format!("tcp://198.18.2.{}:80", i + 1), &format!("tcp://[{}]:80", server6(i)));
        }
    }
    Config::check(&t).unwrap()
}

fn forwarder(c: &Checked) -> Forwarder {
    Forwarder::new(OUR, &c.forward, &c.backends)
}

fn pool() -> Mempool {
    Mempool::new(&MempoolConfig::new("golden", 64, 2048, 128, 0)).unwrap()
}

fn mbuf(p: &Mempool, frame: &[u8]) -> Mbuf {
    let mut m = p.alloc().unwrap();
    m.extend_from_slice(frame).unwrap();
    m
}

/// Which server Maglev gives the flow (the model).
fn model(client: SocketAddr, vip: SocketAddr) -> usize {
    Maglev::build(65537, &["s1", "s2", "s3"], &[1, 1, 1]).unwrap().lookup(&flow_key(client, vip, true))
}

fn pair(src: IpAddr, dst: IpAddr) -> IpPair {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => IpPair::V4 { src: s, dst: d },
        (IpAddr::V6(s), IpAddr::V6(d)) => IpPair::V6 { src: s, dst: d },
        _ => panic!("mixed families"),
    }
}

/// An IP packet: header `opts` (IPv4 options, padded) then an L4 `body`
/// already checksummed for this pair.
fn ip(src: IpAddr, dst: IpAddr, protocol: u8, body: &[u8], v4_opts: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let hl = 20 + v4_opts.len();
            let mut b = vec![0u8; hl + body.len()];
            b[hl..].copy_from_slice(body);
            let r = Ipv4Repr::new(s, d, IpProtocol::from(protocol), body.len(), 64);
            r.emit(&mut Ipv4Packet::new_unchecked(&mut b[..]), &SW);
            if !v4_opts.is_empty() {
                // Options sit between the fixed header and the payload.
                b[0] = 0x40 | (hl / 4) as u8;
                b[2..4].copy_from_slice(&((hl + body.len()) as u16).to_be_bytes());
                b[20..hl].copy_from_slice(v4_opts);
                Ipv4Packet::new_unchecked(&mut b[..]).fill_checksum();
            }
            b
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut b = vec![0u8; 40 + body.len()];
            b[40..].copy_from_slice(body);
            Ipv6Repr::new(s, d, IpProtocol::from(protocol), body.len(), 64)
                .emit(&mut Ipv6Packet::new_unchecked(&mut b[..]));
            b
        }
        _ => panic!("mixed families"),
    }
}

fn tcp_syn(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let r = TcpRepr::new(src.port(), dst.port(), SeqNumber(1000), SeqNumber(0), TcpFlags::SYN, 64240);
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut TcpPacket::new_unchecked(&mut b[..]), &pair(src.ip(), dst.ip()), &SW);
    b
}

fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let r = UdpRepr { src_port: src.port(), dst_port: dst.port(), payload_len: payload.len() };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit_with_payload(&mut UdpPacket::new_unchecked(&mut b[..]), &pair(src.ip(), dst.ip()), payload, &SW);
    b
}

fn eth(dst: MacAddr, src: MacAddr, ethertype: EtherType, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 14 + payload.len()];
    EthernetRepr::new(src, dst, ethertype).emit(&mut EthernetFrame::new_unchecked(&mut b[..]));
    b[14..].copy_from_slice(payload);
    b
}

fn ethertype_of(a: IpAddr) -> EtherType {
    if a.is_ipv4() {
        EtherType::Ipv4
    } else {
        EtherType::Ipv6
    }
}

/// A client's TCP SYN to `vip` as a frame.
fn syn_frame(client: SocketAddr, vip: SocketAddr) -> Vec<u8> {
    eth(OUR, CLIENT_MAC, ethertype_of(vip.ip()), &ip(client.ip(), vip.ip(), 6, &tcp_syn(client, vip), &[]))
}

/// The expected frame: `inner` (an IP packet) toward `server`.
fn expected(encap: &str, inner: &[u8], inner_v4: bool, server: usize, v6_servers: bool, key: &FlowKey) -> Vec<u8> {
    let h = key.hash();
    let addr = if v6_servers { server6(server) } else { server4(server) };
    let (body, protocol) = match encap {
        "l2dsr" => {
            return eth(server_mac(server), OUR, ethertype_of(if inner_v4 { server4(0) } else { server6(0) }), inner)
        }
        "ipip" => (inner.to_vec(), if inner_v4 { 4 } else { 41 }),
        "gue" => {
            let sport = 49152 + ((h >> 32) % (65535 - 49152 + 1)) as u16;
            let src: IpAddr = if v6_servers { IpAddr::V6(src6()) } else { IpAddr::V4(SRC4) };
            let mut u = udp(SocketAddr::new(src, sport), SocketAddr::new(addr, 6080), inner);
            if !v6_servers {
                u[6] = 0; // RFC 768: no checksum over IPv4, as Katran's GUE
                u[7] = 0;
            }
            (u, 17)
        }
        _ => unreachable!(),
    };
    let tos = if inner_v4 { inner[1] } else { (inner[0] << 4) | (inner[1] >> 4) };
    let outer = match addr {
        IpAddr::V4(d) => {
            let mut r = Ipv4Repr::new(SRC4, d, IpProtocol::from(protocol), body.len(), 64);
            r.dscp = tos >> 2;
            r.ecn = tos & 3;
            r.dont_frag = !inner_v4 || inner[6] & 0x40 != 0;
            let mut b = vec![0u8; 20 + body.len()];
            b[20..].copy_from_slice(&body);
            r.emit(&mut Ipv4Packet::new_unchecked(&mut b[..]), &SW);
            b
        }
        IpAddr::V6(d) => {
            let mut r = Ipv6Repr::new(src6(), d, IpProtocol::from(protocol), body.len(), 64);
            r.traffic_class = tos;
            r.flow_label = (h as u32) & 0xf_ffff;
            let mut b = vec![0u8; 40 + body.len()];
            b[40..].copy_from_slice(&body);
            r.emit(&mut Ipv6Packet::new_unchecked(&mut b[..]));
            b
        }
    };
    eth(GW, OUR, ethertype_of(addr), &outer)
}

fn key_of(client: SocketAddr, vip: SocketAddr, proto: u8) -> FlowKey {
    let a = |x: IpAddr| match x {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    };
    FlowKey { src: a(client.ip()), dst: a(vip.ip()), sport: client.port(), dport: vip.port(), proto }
}

/// Checks every checksum of an output frame with the stack's parsers.
fn verify_checksums(f: &[u8]) {
    let e = EthernetFrame::new_checked(f).unwrap();
    let mut ip = e.payload();
    // Peel at most one outer header and one UDP header.
    for _ in 0..3 {
        match ip[0] >> 4 {
            4 => {
                let p = Ipv4Packet::new_checked(ip).unwrap();
                let r = Ipv4Repr::parse(&p, &SW).expect("IPv4 header checksum");
                if r.more_frags || r.frag_offset != 0 {
                    return; // a fragment's L4 checksum covers the whole datagram
                }
                let pl = &ip[p.header_len()..p.header_len() + r.payload_len];
                let pr = IpPair::V4 { src: r.src_addr, dst: r.dst_addr };
                match u8::from(r.protocol) {
                    4 | 41 => ip = pl,
                    6 => {
                        TcpRepr::parse(&TcpPacket::new_checked(pl).unwrap(), &pr, &SW).expect("inner TCP checksum");
                        return;
                    }
                    17 => {
                        let u = UdpPacket::new_checked(pl).unwrap();
                        if u.checksum() != 0 {
                            UdpRepr::parse(&u, &pr, &SW).expect("UDP checksum");
                        }
                        if u.dst_port() == 6080 {
                            ip = &pl[8..];
                        } else {
                            return;
                        }
                    }
                    _ => return,
                }
            }
            6 => {
                let p = Ipv6Packet::new_checked(ip).unwrap();
                let r = Ipv6Repr::parse(&p).unwrap();
                let pl = &ip[40..40 + r.payload_len];
                let pr = IpPair::V6 { src: r.src_addr, dst: r.dst_addr };
                match u8::from(r.next_header) {
                    4 | 41 => ip = pl,
                    6 => {
                        TcpRepr::parse(&TcpPacket::new_checked(pl).unwrap(), &pr, &SW).expect("inner TCP checksum");
                        return;
                    }
                    17 => {
                        let u = UdpPacket::new_checked(pl).unwrap();
                        UdpRepr::parse(&u, &pr, &SW).expect("UDP checksum over IPv6");
                        if u.dst_port() == 6080 {
                            ip = &pl[8..];
                        } else {
                            return;
                        }
                    }
                    _ => return,
                }
            }
            v => panic!("IP version {v}"),
        }
    }
}

/// One forwarded case: the verdict, the exact output, its checksums.
fn forwards_exactly(vip: SocketAddr, encap: &str, v6_servers: bool) {
    let c = config(vip, encap, v6_servers, "drop", "drop");
    let mut fw = forwarder(&c);
    let p = pool();
    for n in 0..20u16 {
        let client: SocketAddr = if vip.is_ipv4() {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 0, n as u8 + 1)), 40000 + n)
        } else {
            SocketAddr::new(IpAddr::V6(format!("2001:2:0:1::{:x}", n + 1).parse().unwrap()), 40000 + n)
        };
        let input = syn_frame(client, vip);
        let mut m = mbuf(&p, &input);
        let want_server = model(client, vip);
        let v = fw.one(&mut m);
        assert_eq!(v, Verdict::Forward { vip: 0, server: want_server }, "{encap} {client} -> {vip}");
        let want = expected(encap, &input[14..], vip.is_ipv4(), want_server, v6_servers, &key_of(client, vip, 6));
        assert_eq!(m.data(), &want[..], "{encap} {client} -> {vip} (server {v6_servers})");
        verify_checksums(m.data());
    }
    assert_eq!(fw.vip_counters(0).misses, 20);
    assert_eq!(fw.vip_counters(0).forwarded, 20);
}

#[test]
fn an_ipv4_vip_forwards_to_ipv4_servers_by_l2_dsr_ipip_and_gue() {
    for encap in ["l2dsr", "ipip", "gue"] {
        forwards_exactly(vip4(), encap, false);
    }
}

#[test]
fn an_ipv4_vip_forwards_to_ipv6_servers_in_ipv6_by_ipip_and_gue() {
    for encap in ["ipip", "gue"] {
        forwards_exactly(vip4(), encap, true);
    }
}

#[test]
fn an_ipv6_vip_forwards_to_ipv6_servers_by_l2_dsr_ip6ip6_and_gue_with_a_udp_checksum() {
    for encap in ["l2dsr", "ipip", "gue"] {
        forwards_exactly(vip6(), encap, true);
    }
}

#[test]
fn an_ipv6_vip_forwards_to_ipv4_servers_in_ipv4_by_ipip_and_gue() {
    for encap in ["ipip", "gue"] {
        forwards_exactly(vip6(), encap, false);
    }
}

#[test]
fn ethernet_padding_of_a_short_frame_is_not_encapsulated() {
    let c = config(vip4(), "ipip", false, "drop", "drop");
    let mut fw = forwarder(&c);
    let client: SocketAddr = "198.19.0.1:40000".parse().unwrap();
    let mut input = syn_frame(client, vip4());
    let unpadded = input.clone();
    input.resize(60.max(input.len() + 6), 0); // padding behind the IP packet
    let p = pool();
    let mut m = mbuf(&p, &input);
    assert!(matches!(fw.one(&mut m), Verdict::Forward { .. }));
    let want = expected("ipip", &unpadded[14..], true, model(client, vip4()), false, &key_of(client, vip4(), 6));
    assert_eq!(m.data(), &want[..]);
}

#[test]
fn a_udp_vip_forwards_udp_and_passes_tcp_to_the_host() {
    let t = INIT_FORWARD.replace("protocol = \"tcp\"", "protocol = \"udp\"").replace("\"l2dsr\"", "\"ipip\"");
    let c = Config::check(&t).unwrap();
    let mut fw = forwarder(&c);
    let p = pool();
    let client: SocketAddr = "198.19.0.1:5353".parse().unwrap();
    let input =
        eth(OUR, CLIENT_MAC, EtherType::Ipv4, &ip(client.ip(), vip4().ip(), 17, &udp(client, vip4(), b"q"), &[]));
    let mut m = mbuf(&p, &input);
    let s = model(client, vip4());
    assert_eq!(fw.one(&mut m), Verdict::Forward { vip: 0, server: s });
    assert_eq!(m.data(), &expected("ipip", &input[14..], true, s, false, &key_of(client, vip4(), 17))[..]);
    verify_checksums(m.data());
    let syn = syn_frame(client, vip4());
    let mut m = mbuf(&p, &syn);
    assert_eq!(fw.one(&mut m), Verdict::Pass);
    assert_eq!(m.data(), &syn[..], "passed untouched");
}

#[test]
fn traffic_not_for_a_vip_port_is_passed_to_the_host_untouched() {
    let c = config(vip4(), "ipip", false, "drop", "drop");
    let mut fw = forwarder(&c);
    let p = pool();
    let client: SocketAddr = "198.19.0.1:40000".parse().unwrap();
    for dst in ["198.18.0.11:80", "198.18.0.10:22", "198.18.0.2:80"] {
        let f = syn_frame(client, dst.parse().unwrap());
        let mut m = mbuf(&p, &f);
        assert_eq!(fw.one(&mut m), Verdict::Pass, "{dst}");
        assert_eq!(m.data(), &f[..]);
    }
    assert_eq!(fw.counters().passed, 3);
    assert_eq!(fw.vip_counters(0).forwarded, 0);
}

#[test]
fn arp_and_neighbour_solicitations_for_the_vip_are_passed_to_the_host_stack() {
    use stack::wire::arp::{ArpOperation, ArpPacket, ArpRepr};
    let c = config(vip4(), "l2dsr", false, "drop", "drop");
    let mut fw = forwarder(&c);
    let p = pool();
    let r = ArpRepr {
        operation: ArpOperation::Request,
        source_hardware_addr: CLIENT_MAC,
        source_protocol_addr: Ipv4Addr::new(198, 19, 0, 1),
        target_hardware_addr: MacAddr([0; 6]),
        target_protocol_addr: Ipv4Addr::new(198, 18, 0, 10),
    };
    let mut a = vec![0u8; 28];
    r.emit(&mut ArpPacket::new_unchecked(&mut a[..]));
    let f = eth(MacAddr([0xff; 6]), CLIENT_MAC, EtherType::Arp, &a);
    let mut m = mbuf(&p, &f);
    assert_eq!(fw.one(&mut m), Verdict::Pass);
    // An NDP neighbour solicitation (ICMPv6 135) for an IPv6 VIP.
    let c = config(vip6(), "ipip", true, "drop", "drop");
    let mut fw = forwarder(&c);
    let client: Ipv6Addr = "2001:2:0:1::1".parse().unwrap();
    let mut ns = vec![135u8, 0, 0, 0, 0, 0, 0, 0];
    ns.extend_from_slice(&"2001:2::10".parse::<Ipv6Addr>().unwrap().octets());
    let f = eth(OUR, CLIENT_MAC, EtherType::Ipv6, &ip(IpAddr::V6(client), vip6().ip(), 58, &ns, &[]));
    let mut m = mbuf(&p, &f);
    assert_eq!(fw.one(&mut m), Verdict::Pass);
    assert_eq!(fw.counters().passed, 1);
}

/// An ICMP too-big quoting what server `s` sent to the client (VIP -> client).
fn too_big(client: SocketAddr, vip: SocketAddr, router: IpAddr) -> Vec<u8> {
    let quoted = ip(vip.ip(), client.ip(), 6, &tcp_syn(vip, client), &[]);
    let mut icmp =
        if vip.is_ipv4() { vec![3u8, 4, 0, 0, 0, 0, 0x05, 0x78] } else { vec![2u8, 0, 0, 0, 0, 0, 0x05, 0x00] };
    icmp.extend_from_slice(&quoted);
    let c = if let (IpAddr::V6(s), IpAddr::V6(d)) = (router, vip.ip()) {
        !pmd::checksum::combine(&[
            pmd::checksum::pseudo_header_v6(&s, &d, 58, icmp.len() as u32),
            pmd::checksum::sum(&icmp),
        ])
    } else {
        pmd::checksum::checksum(&icmp)
    };
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let proto = if vip.is_ipv4() { 1 } else { 58 };
    eth(OUR, GW, ethertype_of(vip.ip()), &ip(router, vip.ip(), proto, &icmp, &[]))
}

#[test]
fn icmp_fragmentation_needed_for_a_vip_flow_goes_to_the_server_that_owns_the_flow() {
    for (vip, router, v6) in [
        (vip4(), IpAddr::V4(Ipv4Addr::new(198, 18, 9, 1)), false),
        (vip6(), IpAddr::V6("2001:2::9:1".parse().unwrap()), true),
    ] {
        let c = config(vip, "ipip", v6, "drop", "drop");
        let mut fw = forwarder(&c);
        let p = pool();
        for n in 0..10u16 {
            let client = if v6 {
                SocketAddr::new(IpAddr::V6(format!("2001:2:0:1::{:x}", n + 1).parse().unwrap()), 40000 + n)
            } else {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 0, n as u8 + 1)), 40000 + n)
            };
            let mut m = mbuf(&p, &syn_frame(client, vip));
            let Verdict::Forward { server, .. } = fw.one(&mut m) else { panic!("SYN not forwarded") };
            let icmp = too_big(client, vip, router);
            let mut m = mbuf(&p, &icmp);
            assert_eq!(fw.one(&mut m), Verdict::Forward { vip: 0, server }, "{client}");
            // The ICMP message, encapsulated as is, toward the flow's server.
            let key = key_of(router_sock(router), vip, if v6 { 58 } else { 1 });
            let want = expected("ipip", &icmp[14..], !v6, server, v6, &key);
            assert_eq!(m.data().len(), want.len());
            // The flow label (IPv6 outer) hashes the ICMP packet's own key.
            if !v6 {
                assert_eq!(m.data(), &want[..]);
            } else {
                assert_eq!(&m.data()[..15], &want[..15]);
                assert_eq!(&m.data()[18..], &want[18..]);
            }
            verify_checksums(m.data());
        }
        assert_eq!(fw.vip_counters(0).icmp_forwarded, 10);
        // Other ICMP to the VIP (an echo request) is the host's.
        let echo = if v6 { vec![128u8, 0, 0, 0, 0, 1, 0, 1] } else { vec![8u8, 0, 0, 0, 0, 1, 0, 1] };
        let f = eth(OUR, GW, ethertype_of(vip.ip()), &ip(router, vip.ip(), if v6 { 58 } else { 1 }, &echo, &[]));
        let mut m = mbuf(&p, &f);
        assert_eq!(fw.one(&mut m), Verdict::Pass);
    }
}

fn router_sock(a: IpAddr) -> SocketAddr {
    SocketAddr::new(a, 0)
}

/// A TCP packet to the VIP split into a first fragment (with the ports) and
/// a later one.
fn fragments(client: SocketAddr, vip: SocketAddr) -> [Vec<u8>; 2] {
    let seg = tcp_syn(client, vip);
    let (a, b) = seg.split_at(16);
    match (client.ip(), vip.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => {
            let mut first = ip(client.ip(), vip.ip(), 6, a, &[]);
            first[6] = 0x20; // MF
            Ipv4Packet::new_unchecked(&mut first[..]).fill_checksum();
            let mut later = ip(client.ip(), vip.ip(), 6, b, &[]);
            later[6] = 0x00;
            later[7] = 2; // offset 16 bytes
            Ipv4Packet::new_unchecked(&mut later[..]).fill_checksum();
            [eth(OUR, CLIENT_MAC, EtherType::Ipv4, &first), eth(OUR, CLIENT_MAC, EtherType::Ipv4, &later)]
        }
        _ => {
            let frag = |off: u16, more: bool, body: &[u8]| {
                let mut h = vec![6u8, 0];
                h.extend_from_slice(&((off << 3) | u16::from(more)).to_be_bytes());
                h.extend_from_slice(&7u32.to_be_bytes());
                h.extend_from_slice(body);
                eth(OUR, CLIENT_MAC, EtherType::Ipv6, &ip(client.ip(), vip.ip(), 44, &h, &[]))
            };
            [frag(0, true, a), frag(2, false, b)]
        }
    }
}

#[test]
fn fragments_are_dropped_and_counted_by_the_drop_policy() {
    for vip in [vip4(), vip6()] {
        let c = config(vip, "ipip", vip.is_ipv6(), "drop", "drop");
        let mut fw = forwarder(&c);
        let p = pool();
        let client = if vip.is_ipv4() { "198.19.0.1:40000" } else { "[2001:2:0:1::1]:40000" }.parse().unwrap();
        for f in fragments(client, vip) {
            let mut m = mbuf(&p, &f);
            assert_eq!(fw.one(&mut m), Verdict::Drop(DropReason::Fragment), "{vip}");
        }
        assert_eq!(fw.vip_counters(0).dropped[DropReason::Fragment as usize], 2);
    }
}

#[test]
fn fragments_go_by_the_two_tuple_hash_all_to_one_server_under_forward_2tuple() {
    for vip in [vip4(), vip6()] {
        let c = config(vip, "ipip", vip.is_ipv6(), "forward-2tuple", "drop");
        let mut fw = forwarder(&c);
        let p = pool();
        for n in 0..10u16 {
            let client: SocketAddr = if vip.is_ipv4() {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 1, n as u8 + 1)), 40000 + n)
            } else {
                SocketAddr::new(IpAddr::V6(format!("2001:2:0:1::{:x}", n + 1).parse().unwrap()), 40000 + n)
            };
            // The model: Maglev on source and destination address only.
            let mut k = Vec::new();
            for a in [client.ip(), vip.ip()] {
                match a {
                    IpAddr::V4(v) => k.extend_from_slice(&v.octets()),
                    IpAddr::V6(v) => k.extend_from_slice(&v.octets()),
                }
            }
            let want = Maglev::build(65537, &["s1", "s2", "s3"], &[1, 1, 1]).unwrap().lookup(&k);
            for f in fragments(client, vip) {
                let mut m = mbuf(&p, &f);
                assert_eq!(fw.one(&mut m), Verdict::Forward { vip: 0, server: want }, "{client}");
                verify_checksums(m.data());
            }
        }
        assert_eq!(fw.vip_counters(0).fragments_forwarded, 20);
        assert_eq!(fw.flows(0), 0, "fragments take no table entry");
    }
}

#[test]
fn ip_options_and_ipv6_extension_headers_follow_their_policy() {
    // IPv4: a record-route-sized NOP run (4 bytes of NOP options).
    let client: SocketAddr = "198.19.0.1:40000".parse().unwrap();
    let f4 = eth(
        OUR,
        CLIENT_MAC,
        EtherType::Ipv4,
        &ip(client.ip(), vip4().ip(), 6, &tcp_syn(client, vip4()), &[1, 1, 1, 1]),
    );
    // IPv6: a hop-by-hop header (PadN) before TCP.
    let client6: SocketAddr = "[2001:2:0:1::1]:40000".parse().unwrap();
    let mut hbh = vec![6u8, 0, 1, 4, 0, 0, 0, 0];
    hbh.extend_from_slice(&tcp_syn(client6, vip6()));
    let f6 = eth(OUR, CLIENT_MAC, EtherType::Ipv6, &ip(client6.ip(), vip6().ip(), 0, &hbh, &[]));
    for (vip, f, client) in [(vip4(), &f4, client), (vip6(), &f6, client6)] {
        let p = pool();
        let c = config(vip, "ipip", vip.is_ipv6(), "drop", "drop");
        let mut fw = forwarder(&c);
        let mut m = mbuf(&p, f);
        assert_eq!(fw.one(&mut m), Verdict::Drop(DropReason::Options), "{vip}");
        assert_eq!(fw.vip_counters(0).dropped[DropReason::Options as usize], 1);
        let c = config(vip, "ipip", vip.is_ipv6(), "drop", "forward");
        let mut fw = forwarder(&c);
        let mut m = mbuf(&p, f);
        let s = model(client, vip);
        assert_eq!(fw.one(&mut m), Verdict::Forward { vip: 0, server: s }, "{vip}");
        assert_eq!(m.data(), &expected("ipip", &f[14..], vip.is_ipv4(), s, vip.is_ipv6(), &key_of(client, vip, 6))[..]);
        verify_checksums(m.data());
    }
}

/// A full-size TCP segment (1500 bytes of IP) from `client` to `vip`.
fn full_size(client: SocketAddr, vip: SocketAddr) -> Vec<u8> {
    let r =
        TcpRepr { payload_len: 0, ..TcpRepr::new(client.port(), 80, SeqNumber(1), SeqNumber(1), TcpFlags::ACK, 1000) };
    let pl = if vip.is_ipv4() { 1460 } else { 1440 };
    let mut seg = vec![0u8; r.header_len() + pl];
    r.emit_with_payload(&mut TcpPacket::new_unchecked(&mut seg[..]), &pair(client.ip(), vip.ip()), &vec![7u8; pl], &SW);
    eth(OUR, CLIENT_MAC, ethertype_of(vip.ip()), &ip(client.ip(), vip.ip(), 6, &seg, &[]))
}

#[test]
fn a_packet_too_big_once_encapsulated_is_dropped_and_counted_under_too_big_drop() {
    let t = INIT_FORWARD.replace("\"l2dsr\"", "\"gue\"").replace("too_big = \"icmp\"", "too_big = \"drop\"");
    let c = Config::check(&t).unwrap();
    let mut fw = forwarder(&c);
    let p = pool();
    let mut m = mbuf(&p, &full_size("198.19.0.1:40000".parse().unwrap(), vip4()));
    assert_eq!(fw.one(&mut m), Verdict::Drop(DropReason::TooBig));
    assert_eq!(fw.vip_counters(0).dropped[DropReason::TooBig as usize], 1);
    assert_eq!(fw.vip_counters(0).too_big_sent, 0);
}

#[test]
fn a_packet_too_big_once_encapsulated_is_answered_with_frag_needed_or_packet_too_big_rfc_1191_rfc_4443() {
    for (vip, client, v6) in [(vip4(), "198.19.0.1:40000", false), (vip6(), "[2001:2:0:1::1]:40000", true)] {
        let client: SocketAddr = client.parse().unwrap();
        let c = config(vip, "gue", v6, "drop", "drop");
        let mut fw = forwarder(&c);
        let p = pool();
        let input = full_size(client, vip);
        let mut m = mbuf(&p, &input);
        assert_eq!(fw.one(&mut m), Verdict::TooBigSent { vip: 0 }, "{vip}");
        assert_eq!(fw.vip_counters(0).too_big_sent, 1);
        // Expected: VIP -> client, quoting the packet; the MTU left after
        // GUE (outer IPv4 + UDP 28, outer IPv6 + UDP 48).
        let inner = &input[14..];
        let (mut icmp, proto) = if v6 {
            let mut i = vec![2u8, 0, 0, 0];
            i.extend_from_slice(&(1500u32 - 48).to_be_bytes());
            i.extend_from_slice(&inner[..inner.len().min(1232)]);
            (i, 58)
        } else {
            let mut i = vec![3u8, 4, 0, 0, 0, 0];
            i.extend_from_slice(&(1500u16 - 28).to_be_bytes());
            i.extend_from_slice(&inner[..28]);
            (i, 1)
        };
        let csum = match (vip.ip(), client.ip()) {
            (IpAddr::V6(s), IpAddr::V6(d)) => !pmd::checksum::combine(&[
                pmd::checksum::pseudo_header_v6(&s, &d, 58, icmp.len() as u32),
                pmd::checksum::sum(&icmp),
            ]),
            _ => pmd::checksum::checksum(&icmp),
        };
        icmp[2..4].copy_from_slice(&csum.to_be_bytes());
        let want = eth(CLIENT_MAC, OUR, ethertype_of(vip.ip()), &ip(vip.ip(), client.ip(), proto, &icmp, &[]));
        assert_eq!(m.data(), &want[..], "{vip}");
        if !v6 {
            let e = EthernetFrame::new_checked(m.data()).unwrap();
            let ipp = Ipv4Packet::new_checked(e.payload()).unwrap();
            Ipv4Repr::parse(&ipp, &SW).expect("IPv4 header checksum");
            assert!(stack::wire::Icmpv4Packet::new_checked(ipp.payload()).unwrap().verify_checksum());
        }
        // Without DF, an IPv4 packet gets no error (its path may fragment it).
        if !v6 {
            let mut f = input.clone();
            f[20] = 0;
            let (a, b) = f.split_at_mut(14);
            let _ = a;
            Ipv4Packet::new_unchecked(&mut b[..]).fill_checksum();
            let mut m = mbuf(&p, &f);
            assert_eq!(fw.one(&mut m), Verdict::Drop(DropReason::TooBig));
        }
    }
}

#[test]
fn every_truncation_of_a_vip_frame_is_counted_or_passed_never_a_panic() {
    for (vip, enc) in [(vip4(), "gue"), (vip6(), "ipip")] {
        let c = config(vip, enc, vip.is_ipv6(), "forward-2tuple", "forward");
        let mut fw = forwarder(&c);
        let p = pool();
        let client = if vip.is_ipv4() { "198.19.0.1:40000" } else { "[2001:2:0:1::1]:40000" }.parse().unwrap();
        let f = syn_frame(client, vip);
        for len in 0..f.len() {
            let mut m = mbuf(&p, &f[..len]);
            let v = fw.one(&mut m);
            assert!(matches!(v, Verdict::Pass | Verdict::Drop(DropReason::Malformed)), "{len}: {v:?}");
        }
        assert!(fw.vip_counters(0).dropped[DropReason::Malformed as usize] > 0);
    }
}

#[test]
fn a_flow_keeps_its_server_through_maglev_changes_and_moves_only_when_its_server_goes_down() {
    let c = config(vip4(), "l2dsr", false, "drop", "drop");
    let mut fw = forwarder(&c);
    let p = pool();
    let clients: Vec<SocketAddr> = (0..300u16)
        .map(|n| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, (n >> 8) as u8, n as u8)), 1024 + n))
        .collect();
    let mut first = Vec::new();
    for c in &clients {
        let mut m = mbuf(&p, &syn_frame(*c, vip4()));
        let Verdict::Forward { server, .. } = fw.one(&mut m) else { panic!() };
        first.push(server);
    }
    // A weight change rebuilds Maglev; the table keeps every flow in place.
    assert!(fw.set_weight(0, "s1", 5));
    for (c, s) in clients.iter().zip(&first) {
        let mut m = mbuf(&p, &syn_frame(*c, vip4()));
        assert_eq!(fw.one(&mut m), Verdict::Forward { vip: 0, server: *s });
    }
    assert_eq!(fw.vip_counters(0).hits, 300);
    // s2 goes down: its flows move, no other flow does.
    assert!(fw.set_weight(0, "s1", 1));
    assert!(fw.set_up(0, "s2", false));
    for (c, s) in clients.iter().zip(&first) {
        let mut m = mbuf(&p, &syn_frame(*c, vip4()));
        let Verdict::Forward { server, .. } = fw.one(&mut m) else { panic!() };
        if *s == 1 {
            assert_ne!(server, 1);
        } else {
            assert_eq!(server, *s);
        }
    }
    let moved = first.iter().filter(|s| **s == 1).count() as u64;
    assert!(moved > 50, "s2 had {moved} flows");
    assert_eq!(fw.vip_counters(0).rehashed, moved);
    // Draining s3 keeps its flows; a new flow avoids it.
    assert!(fw.set_up(0, "s2", true));
    assert!(fw.set_drain(0, "s3", true));
    for (c, s) in clients.iter().zip(&first).filter(|(_, s)| **s == 2) {
        let mut m = mbuf(&p, &syn_frame(*c, vip4()));
        assert_eq!(fw.one(&mut m), Verdict::Forward { vip: 0, server: *s });
    }
    for n in 0..200u16 {
        let c = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 9, n as u8)), 2000 + n);
        let mut m = mbuf(&p, &syn_frame(c, vip4()));
        assert!(!matches!(fw.one(&mut m), Verdict::Forward { server: 2, .. }), "new flow on a draining server");
    }
    // Every server down: counted drops.
    for s in ["s1", "s2", "s3"] {
        fw.set_up(0, s, false);
    }
    let mut m = mbuf(&p, &syn_frame(clients[0], vip4()));
    assert_eq!(fw.one(&mut m), Verdict::Drop(DropReason::NoServer));
}

#[test]
fn a_burst_is_sorted_into_forward_pass_and_drop_without_leaking_a_buffer() {
    let c = config(vip4(), "ipip", false, "drop", "drop");
    let mut fw = forwarder(&c);
    let p = pool();
    let before = p.available();
    let client: SocketAddr = "198.19.0.1:40000".parse().unwrap();
    let mut rx = vec![
        mbuf(&p, &syn_frame(client, vip4())),
        mbuf(&p, &syn_frame(client, "198.18.0.99:80".parse().unwrap())),
        mbuf(&p, &fragments(client, vip4())[1]),
        mbuf(&p, &syn_frame(client, vip4())),
    ];
    let (mut tx, mut pass) = (Vec::with_capacity(8), Vec::with_capacity(8));
    fw.process(&mut rx, &mut tx, &mut pass);
    assert!(rx.is_empty());
    assert_eq!((tx.len(), pass.len()), (2, 1));
    assert_eq!(fw.counters().dropped, 1);
    assert_eq!(fw.vip_counters(0).hits, 1);
    drop((tx, pass));
    assert_eq!(p.available(), before);
}
