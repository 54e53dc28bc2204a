//! Frames captured from the Linux kernel (see tests/fixtures/README.md and
//! capture.sh): every frame must parse with software checksums, the fields we
//! know must come out right, and rebuilding each frame from its parsed
//! representations must give back the kernel's bytes exactly.

mod common;

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use common::{dissect, Dissected, L3, L4};
use pcap_file::pcap::PcapReader;
use stack::wire::icmpv4::unreachable;
use stack::wire::{
    ArpOperation, ArpPacket, ChecksumCaps, EtherType, EthernetFrame, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet,
    Icmpv6Repr, IpPair, IpProtocol, Ipv4Packet, Ipv6Packet, MacAddr, QuotedIpv4, TcpPacket, TcpTimestamp, UdpPacket,
};

const SW: ChecksumCaps = ChecksumCaps::software();
const MAC_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const MAC_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const A4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn a6() -> Ipv6Addr {
    "2001:2::1".parse().unwrap()
}

fn b6() -> Ipv6Addr {
    "2001:2::2".parse().unwrap()
}

fn frames(name: &str) -> Vec<Vec<u8>> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", name].iter().collect();
    let mut r = PcapReader::new(File::open(&path).expect("fixture")).expect("pcap header");
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.expect("pcap record");
        assert_eq!(p.orig_len as usize, p.data.len(), "snaplen cut a frame");
        out.push(p.data.into_owned());
    }
    assert!(!out.is_empty());
    out
}

/// Rebuilds a frame from its parsed representations.
fn reemit(orig: &[u8], d: &Dissected<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; orig.len()];
    d.eth.emit(&mut EthernetFrame::new_unchecked(&mut buf));
    let l3 = &mut buf[d.eth.header_len()..];
    let orig_l3 = &orig[d.eth.header_len()..];
    let used = match &d.l3 {
        L3::Arp(a) => {
            a.emit(&mut ArpPacket::new_unchecked(&mut *l3));
            a.buffer_len()
        }
        L3::Ipv4(ip, up) => {
            assert_eq!(Ipv4Packet::new_checked(orig_l3).unwrap().header_len(), 20, "no options seen");
            ip.emit(&mut Ipv4Packet::new_unchecked(&mut *l3), &SW);
            let pair = IpPair::V4 { src: ip.src_addr, dst: ip.dst_addr };
            emit_l4(up, &pair, &mut l3[20..20 + ip.payload_len]);
            ip.buffer_len()
        }
        L3::Ipv6(ip, upper, up) => {
            ip.emit(&mut Ipv6Packet::new_unchecked(&mut *l3));
            // Extension headers are copied as they were.
            let ext = 40..40 + upper.offset;
            l3[ext.clone()].copy_from_slice(&orig_l3[ext]);
            let pair = IpPair::V6 { src: ip.src_addr, dst: ip.dst_addr };
            emit_l4(up, &pair, &mut l3[40 + upper.offset..40 + ip.payload_len]);
            ip.buffer_len()
        }
        L3::Other(t) => panic!("unexpected ethertype {t}"),
    };
    buf.truncate(d.eth.header_len() + used);
    buf
}

fn emit_l4(up: &L4<'_>, ip: &IpPair, out: &mut [u8]) {
    match up {
        L4::Tcp(r, payload) => r.emit_with_payload(&mut TcpPacket::new_unchecked(out), ip, payload, &SW),
        L4::Udp(r, payload) => r.emit_with_payload(&mut UdpPacket::new_unchecked(out), ip, payload, &SW),
        L4::Icmpv4(r) => r.emit(&mut Icmpv4Packet::new_unchecked(out), &SW),
        L4::Icmpv6(r) => {
            let IpPair::V6 { src, dst } = ip else { panic!() };
            r.emit(&mut Icmpv6Packet::new_unchecked(out), src, dst, &SW)
        }
        L4::Fragment(data) => out.copy_from_slice(data),
        L4::Other(p) => panic!("unexpected protocol {p}"),
    }
}

/// Parses every frame of a fixture and checks the byte-exact rebuild.
fn check_all(name: &str) -> Vec<Vec<u8>> {
    let fs = frames(name);
    for (i, f) in fs.iter().enumerate() {
        let d = dissect(f, &SW).unwrap_or_else(|e| panic!("{name} frame {i}: {e}"));
        let again = reemit(f, &d);
        assert_eq!(&f[..again.len()], &again[..], "{name} frame {i} rebuilt differently");
        assert!(f[again.len()..].iter().all(|&b| b == 0), "{name} frame {i}: trailing non-padding");
    }
    fs
}

#[test]
fn kernel_arp_and_icmpv4_echo() {
    let fs = check_all("arp_icmpv4.pcap");
    let d: Vec<_> = fs.iter().map(|f| dissect(f, &SW).unwrap()).collect();

    let L3::Arp(req) = &d[0].l3 else { panic!("{:?}", d[0]) };
    assert_eq!(req.operation, ArpOperation::Request);
    assert_eq!(req.source_hardware_addr, MAC_A);
    assert_eq!((req.source_protocol_addr, req.target_protocol_addr), (A4, B4));
    assert!(d[0].eth.dst_addr.is_broadcast());
    let L3::Arp(rep) = &d[1].l3 else { panic!() };
    assert_eq!(rep.operation, ArpOperation::Reply);
    assert_eq!((rep.source_hardware_addr, rep.target_hardware_addr), (MAC_B, MAC_A));

    let mut echoes = 0;
    let mut frags = Vec::new();
    for x in &d[2..] {
        let L3::Ipv4(ip, up) = &x.l3 else { panic!() };
        assert_eq!(ip.protocol, IpProtocol::Icmp);
        assert_eq!(ip.ttl, 64);
        match up {
            L4::Icmpv4(Icmpv4Repr::EchoRequest { seq_no, data, .. }) => {
                assert_eq!((ip.src_addr, ip.dst_addr), (A4, B4));
                assert!(ip.dont_frag);
                assert_eq!(data.len(), 56);
                echoes += 1;
                assert_eq!(*seq_no, echoes);
            }
            L4::Icmpv4(Icmpv4Repr::EchoReply { data, .. }) => {
                assert_eq!((ip.src_addr, ip.dst_addr), (B4, A4));
                assert_eq!(data.len(), 56);
            }
            L4::Fragment(_) => frags.push(*ip),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(echoes, 2);
    // ping -s 2000: two fragments each way, 1480 + 528 bytes of ICMP.
    assert_eq!(frags.len(), 4);
    assert!(frags[0].more_frags && frags[0].frag_offset == 0 && frags[0].payload_len == 1480);
    assert!(!frags[1].more_frags && frags[1].frag_offset == 1480 && frags[1].payload_len == 528);
    assert_eq!(frags[0].ident, frags[1].ident);
}

#[test]
fn kernel_ndp_and_icmpv6_echo_with_fragment_headers() {
    let fs = check_all("icmpv6_ndp.pcap");
    let d: Vec<_> = fs.iter().map(|f| dissect(f, &SW).unwrap()).collect();

    let L3::Ipv6(ip, _, L4::Icmpv6(Icmpv6Repr::NeighborSolicit { target, options })) = &d[0].l3 else {
        panic!("{:?}", d[0])
    };
    assert_eq!(ip.hop_limit, 255);
    assert_eq!(ip.dst_addr, "ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap());
    assert_eq!(d[0].eth.dst_addr, MacAddr::ipv6_multicast(&ip.dst_addr));
    assert_eq!(*target, b6());
    assert_eq!(options.source_lladdr(), Some(MAC_A));

    let L3::Ipv6(ip, _, L4::Icmpv6(Icmpv6Repr::NeighborAdvert { router, solicited, override_, target, options })) =
        &d[1].l3
    else {
        panic!("{:?}", d[1])
    };
    assert_eq!((ip.src_addr, ip.dst_addr, ip.hop_limit), (b6(), a6(), 255));
    assert!(!router && *solicited && *override_);
    assert_eq!(*target, b6());
    assert_eq!(options.target_lladdr(), Some(MAC_B));

    let mut requests = 0;
    let mut frags = Vec::new();
    for x in &d[2..] {
        let L3::Ipv6(ip, upper, up) = &x.l3 else { panic!() };
        match up {
            L4::Icmpv6(Icmpv6Repr::EchoRequest { seq_no, .. }) => {
                assert_eq!((ip.src_addr, ip.dst_addr), (a6(), b6()));
                requests += 1;
                assert_eq!(*seq_no, requests);
            }
            L4::Icmpv6(Icmpv6Repr::EchoReply { .. }) => {}
            L4::Fragment(_) => {
                assert_eq!(ip.next_header, IpProtocol::Ipv6Frag);
                assert_eq!(upper.protocol, IpProtocol::Icmpv6);
                assert_eq!(upper.offset, 8);
                frags.push(upper.fragment.unwrap());
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(requests, 2);
    assert_eq!(frags.len(), 4);
    assert!(frags[0].more_frags && frags[0].frag_offset == 0);
    assert!(!frags[1].more_frags && frags[1].frag_offset == 1448);
    assert_eq!(frags[0].ident, frags[1].ident);
}

#[test]
fn kernel_udp_and_port_unreachable() {
    let fs = check_all("udp.pcap");
    let d: Vec<_> = fs.iter().map(|f| dissect(f, &SW).unwrap()).collect();
    let mut seen = [false; 4];
    for (x, f) in d.iter().zip(&fs) {
        match &x.l3 {
            L3::Ipv4(ip, L4::Udp(u, payload)) => {
                assert_eq!((ip.src_addr, ip.dst_addr), (A4, B4));
                assert_eq!((u.src_port, u.dst_port), (40000, 5353));
                assert_eq!(*payload, b"hello udp");
                // Linux sends a real checksum over IPv4 too.
                let udp = UdpPacket::new_checked(&f[34..]).unwrap();
                assert_ne!(udp.checksum(), 0);
                seen[0] = true;
            }
            L3::Ipv4(ip, L4::Icmpv4(r @ Icmpv4Repr::DstUnreachable { code, .. })) => {
                assert_eq!((ip.src_addr, ip.dst_addr), (B4, A4));
                assert_eq!(*code, unreachable::PORT);
                let q: QuotedIpv4<'_> = r.quoted().unwrap();
                assert_eq!((q.src_addr, q.dst_addr, q.protocol), (A4, B4, IpProtocol::Udp));
                assert_eq!(q.ports(), Some((40000, 5353)));
                seen[1] = true;
            }
            L3::Ipv6(ip, _, L4::Udp(u, payload)) => {
                assert_eq!((ip.src_addr, ip.dst_addr), (a6(), b6()));
                assert_eq!((u.src_port, u.dst_port), (40000, 5353));
                assert_eq!(*payload, b"hello udp");
                seen[2] = true;
            }
            L3::Ipv6(ip, _, L4::Icmpv6(Icmpv6Repr::DstUnreachable { code, quoted })) => {
                assert_eq!((ip.src_addr, ip.dst_addr), (b6(), a6()));
                assert_eq!(*code, 4); // port unreachable
                let inner = Ipv6Packet::new_unchecked(*quoted);
                assert_eq!(inner.next_header(), IpProtocol::Udp);
                assert_eq!(inner.dst_addr(), b6());
                seen[3] = true;
            }
            L3::Arp(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, [true; 4]);
}

#[test]
fn kernel_tcp_handshake_options_and_data() {
    let fs = check_all("tcp.pcap");
    let d: Vec<_> = fs.iter().map(|f| dissect(f, &SW).unwrap()).collect();
    let tcp: Vec<_> = d
        .iter()
        .filter_map(|x| match &x.l3 {
            L3::Ipv4(ip, L4::Tcp(t, p)) => Some((false, ip.src_addr == A4, *t, *p)),
            L3::Ipv6(ip, _, L4::Tcp(t, p)) => Some((true, ip.src_addr == a6(), *t, *p)),
            _ => None,
        })
        .collect();

    for v6 in [false, true] {
        let conn: Vec<_> = tcp.iter().filter(|c| c.0 == v6).collect();
        assert!(conn.len() >= 8, "a whole connection over {}", if v6 { "v6" } else { "v4" });
        let (_, from_client, syn, _) = conn[0];
        let (_, _, synack, _) = conn[1];
        assert!(*from_client);
        assert_eq!(syn.flags.to_string(), "S");
        assert_eq!(synack.flags.to_string(), "S.");
        assert_eq!(syn.dst_port, 5001);
        assert_eq!((synack.src_port, synack.dst_port), (5001, syn.src_port));
        assert_eq!(synack.ack_number, syn.seq_number + 1);
        let mss = if v6 { 1440 } else { 1460 };
        for s in [syn, synack] {
            assert_eq!(s.max_seg_size, Some(mss));
            assert!(s.sack_permitted);
            assert!(s.window_scale.is_some());
            assert!(s.timestamp.is_some());
            assert_eq!(s.sack_ranges, [None; 4]);
        }
        assert_eq!(syn.timestamp.unwrap().tsecr, 0);
        assert_eq!(synack.timestamp.unwrap().tsecr, syn.timestamp.unwrap().tsval);

        // Later segments: ACK with timestamps only.
        for (_, _, t, _) in &conn[2..] {
            assert!(t.flags.ack());
            assert!(t.max_seg_size.is_none() && t.window_scale.is_none() && !t.sack_permitted);
            assert!(matches!(t.timestamp, Some(TcpTimestamp { .. })));
        }
        let data: Vec<&[u8]> = conn.iter().map(|c| c.3).filter(|p| !p.is_empty()).collect();
        assert_eq!(data, vec![&b"hello tcp"[..], &b"echo: hello tcp"[..]]);
        assert_eq!(conn.iter().filter(|c| c.2.flags.fin()).count(), 2);
    }
}

#[test]
fn kernel_frames_fail_when_corrupted() {
    // Flipping any byte of an L3/L4 header or payload is caught (checksum or
    // a field check); nothing panics.
    // Drops are counted by reason, as a stack would.
    let fs = frames("tcp.pcap");
    let f = &fs[0];
    let mut drops = [0u64; stack::wire::Error::COUNT];
    for i in 14..f.len() {
        let mut g = f.clone();
        g[i] ^= 0x01;
        match dissect(&g, &SW) {
            Ok(_) => panic!("byte {i} flip went unnoticed"),
            Err(e) => drops[e.index()] += 1,
        }
    }
    let by_name: Vec<_> =
        stack::wire::Error::ALL.iter().filter(|e| drops[e.index()] > 0).map(|e| (e.name(), drops[e.index()])).collect();
    assert_eq!(drops.iter().sum::<u64>() as usize, f.len() - 14);
    assert!(drops[stack::wire::Error::BadChecksum.index()] > 0, "{by_name:?}");
    assert!(drops[stack::wire::Error::BadHeaderLen.index()] > 0, "{by_name:?}");
    assert_eq!(dissect(&f[..f.len() - 1], &SW).err(), Some(stack::wire::Error::Truncated));
    assert_eq!(EtherType::from(0x0800), EtherType::Ipv4);
}
