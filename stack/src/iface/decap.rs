//! Decapsulation: this stack as the far end of a packet balancer's tunnel
//! (`lb`'s forwarding mode, Katran, GLB). An IPIP / IPv6-in-IPv6 /
//! IPv4-in-IPv6 / IPv6-in-IPv4 packet, or a GUE variant 1 datagram (the IP
//! packet straight after a UDP header, RFC 8086 / draft-ietf-intarea-gue
//! §4) to the configured port, addressed to one of our addresses, has its
//! outer headers removed in place ([`Mbuf::adj`], no copy) and its inner
//! packet taken as if it had been received: a server holding the VIP as a
//! local address then answers the client directly (DSR), its replies
//! routed as any other packet (the balancer's MAC is never learned from a
//! tunnelled packet: the stack learns neighbours from ARP/NDP only).
//!
//! Off unless the application turns it on ([`Stack::set_decap`]): accepting
//! tunnels changes what reaches the sockets. Invariants: one level only (an
//! inner packet that is itself a tunnel is dropped and counted, so a crafted
//! packet cannot make the stack recurse); the inner packet goes through every
//! check a received one does (addresses, fragments, checksums in software —
//! the NIC's checksum verdict was about the outer packet).

use pmd::{MacAddr, Mbuf, RxFlags};

use super::Stack;
use crate::wire::{IpPair, IpProtocol, UdpPacket};

/// What this stack decapsulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecapConfig {
    /// IP-in-IP (protocol 4 and 41, under IPv4 and IPv6).
    pub ipip: bool,
    /// GUE variant 1 on this UDP port.
    pub gue_port: Option<u16>,
}

/// Where the inner packet begins, if this is a tunnel we take.
pub(crate) enum Tunnel {
    /// Not a tunnel (or not one we take).
    No,
    /// Inner packet at this offset from the IP header.
    At(usize),
    /// A GUE datagram whose UDP checksum is wrong (or zero over IPv6).
    BadChecksum,
}

impl Stack {
    /// Turns decapsulation on or off (see the module doc).
    pub fn set_decap(&mut self, d: DecapConfig) {
        self.decap = d;
    }

    /// The decapsulation in force.
    pub fn decap(&self) -> DecapConfig {
        self.decap
    }

    /// Is the packet (upper protocol `proto` at `l4`, addresses `ip`) a
    /// tunnel to take? `m` holds the IP packet. A GUE datagram's UDP
    /// checksum is verified here (in software: zero is allowed over IPv4 by
    /// RFC 768, not over IPv6 by RFC 8200 §8.1).
    pub(crate) fn tunnel(&self, m: &Mbuf, proto: IpProtocol, l4: usize, ip: Option<&IpPair>) -> Tunnel {
        match u8::from(proto) {
            4 | 41 if self.decap.ipip => Tunnel::At(l4),
            17 => match (self.decap.gue_port, m.data().get(l4 + 2..l4 + 4)) {
                (Some(port), Some(p)) if u16::from_be_bytes([p[0], p[1]]) == port => {
                    if let Some(ip) = ip {
                        let Ok(u) = UdpPacket::new_checked(&m.data()[l4..]) else {
                            return Tunnel::BadChecksum;
                        };
                        let zero_ok = u.checksum() == 0 && !ip.is_v6();
                        if !zero_ok && !u.verify_checksum(ip) {
                            return Tunnel::BadChecksum;
                        }
                    }
                    Tunnel::At(l4 + 8)
                }
                _ => Tunnel::No,
            },
            _ => Tunnel::No,
        }
    }

    /// Takes the inner packet at `at` of `m` as received from `src_mac`.
    pub(crate) fn decap_input(&mut self, mut m: Mbuf, at: usize, src_mac: MacAddr) {
        if m.adj(at).is_none() || m.is_empty() {
            self.stats.drops.decap_malformed += 1;
            return;
        }
        // One level only: a tunnel inside the tunnel is dropped.
        let inner_tunnel = match m.data()[0] >> 4 {
            4 if m.len() >= 20 => {
                let p = m.data()[9];
                let hl = usize::from(m.data()[0] & 0x0f) * 4;
                p == 4 || p == 41 || (p == 17 && !matches!(self.tunnel(&m, IpProtocol::Udp, hl, None), Tunnel::No))
            }
            6 if m.len() >= 40 => {
                let p = m.data()[6];
                p == 4 || p == 41 || (p == 17 && !matches!(self.tunnel(&m, IpProtocol::Udp, 40, None), Tunnel::No))
            }
            _ => {
                self.stats.drops.decap_malformed += 1;
                return;
            }
        };
        if inner_tunnel {
            self.stats.drops.decap_nested += 1;
            return;
        }
        self.stats.events.decapsulated += 1;
        m.set_rx_flags(RxFlags::empty());
        if m.data()[0] >> 4 == 4 {
            self.ipv4_input(m, src_mac);
        } else {
            self.ipv6_input(m, src_mac, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiles;
    use pmd::{checksum, Mempool, MempoolConfig};

    const US: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const LB: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    fn stack() -> Stack {
        let mut c = profiles::sim(US);
        c.ipv4 = vec!["198.18.2.1/15".parse().unwrap(), "198.18.0.10/32".parse().unwrap()];
        Stack::new(c, Mempool::new(&MempoolConfig::new("decap", 4096, 2048, 128, 0)).unwrap(), 0).unwrap()
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, body: &[u8]) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
        h[2..4].copy_from_slice(&((20 + body.len()) as u16).to_be_bytes());
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        let c = checksum::checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    /// An ICMP echo request from the client to the VIP.
    fn echo_to_vip() -> Vec<u8> {
        let mut icmp = vec![8u8, 0, 0, 0, 0, 1, 0, 1, b'h', b'i'];
        let c = checksum::checksum(&icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        ipv4([198, 19, 0, 1], [198, 18, 0, 10], 1, &icmp)
    }

    fn frame(ip: &[u8]) -> Vec<u8> {
        let mut f = US.0.to_vec();
        f.extend_from_slice(&LB.0);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(ip);
        f
    }

    fn feed(s: &mut Stack, f: &[u8]) {
        let mut m = s.pool().alloc().unwrap();
        m.extend_from_slice(f).unwrap();
        s.input(1, &mut vec![m]);
    }

    fn gue(inner: &[u8], csum: bool) -> Vec<u8> {
        let mut u = vec![0xc0, 0x00, 0x17, 0xc0, 0, 0, 0, 0]; // 49152 -> 6080
        u[4..6].copy_from_slice(&((8 + inner.len()) as u16).to_be_bytes());
        u.extend_from_slice(inner);
        if csum {
            let s = checksum::combine(&[
                checksum::pseudo_header_v4(&[198, 18, 0, 2].into(), &[198, 18, 2, 1].into(), 17, u.len() as u32),
                checksum::sum(&u),
            ]);
            u[6..8].copy_from_slice(&(!s).to_be_bytes());
        }
        ipv4([198, 18, 0, 2], [198, 18, 2, 1], 17, &u)
    }

    #[test]
    fn ipip_and_gue_to_us_are_taken_apart_and_the_inner_packet_is_answered() {
        let mut s = stack();
        s.set_decap(DecapConfig { ipip: true, gue_port: Some(6080) });
        feed(&mut s, &frame(&ipv4([198, 18, 0, 2], [198, 18, 2, 1], 4, &echo_to_vip())));
        feed(&mut s, &frame(&gue(&echo_to_vip(), false)));
        feed(&mut s, &frame(&gue(&echo_to_vip(), true)));
        assert_eq!(s.stats().events.decapsulated, 3);
        assert_eq!(s.stats().events.echo_replies_sent, 3, "{:?}", s.stats().events);
    }

    #[test]
    fn tunnels_are_refused_while_decapsulation_is_off() {
        let mut s = stack();
        feed(&mut s, &frame(&ipv4([198, 18, 0, 2], [198, 18, 2, 1], 4, &echo_to_vip())));
        assert_eq!(s.stats().drops.unknown_protocol, 1);
        assert_eq!(s.stats().events.decapsulated, 0);
    }

    #[test]
    fn a_tunnel_in_a_tunnel_and_a_bad_gue_checksum_are_dropped_and_counted() {
        let mut s = stack();
        s.set_decap(DecapConfig { ipip: true, gue_port: Some(6080) });
        let inner = ipv4([198, 18, 0, 2], [198, 18, 2, 1], 4, &echo_to_vip());
        feed(&mut s, &frame(&ipv4([198, 18, 0, 2], [198, 18, 2, 1], 4, &inner)));
        assert_eq!(s.stats().drops.decap_nested, 1);
        let mut bad = gue(&echo_to_vip(), true);
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        feed(&mut s, &frame(&bad));
        assert_eq!(s.stats().drops.decap_malformed, 1);
        // Cut short: an inner header that is not there.
        feed(&mut s, &frame(&ipv4([198, 18, 0, 2], [198, 18, 2, 1], 4, &[0x45, 0, 0])));
        assert_eq!(s.stats().drops.decap_malformed, 2);
        assert_eq!(s.stats().events.echo_replies_sent, 0);
    }
}
