//! The ICMP error the forwarder itself sends: "fragmentation needed"
//! (RFC 792, RFC 1191) / ICMPv6 "packet too big" (RFC 4443 §3.2) back to a
//! client whose packet, once encapsulated, would exceed the MTU toward the
//! servers — what Katran does, so the client's path MTU discovery lowers
//! its segment size instead of the flow stalling on silent drops.
//!
//! Built in place in the offending frame's buffer: the outer headers are
//! prepended into the headroom in front of the original IP packet (which
//! becomes the quote) and the tail is trimmed to what the message quotes
//! (IPv4: the header and 8 bytes, RFC 792; IPv6: as much as fits in 1280
//! bytes, RFC 4443 §2.4(c)). Source: the VIP the client wrote to;
//! destination: the client; back to the MAC the frame came from.

use pmd::{checksum, MacAddr, Mbuf};

use super::packet::{proto, Parsed, ETH_IPV4, ETH_IPV6};

/// Rewrites `m` (a frame holding the packet `p`) into the ICMP error
/// telling its sender that `mtu` bytes fit; `false` (and `m` unusable) when
/// the buffer lacks the headroom.
pub fn too_big(m: &mut Mbuf, p: &Parsed, mtu: u16, our_mac: MacAddr) -> bool {
    let client_mac: [u8; 6] = m.data()[6..12].try_into().expect("a frame has a source MAC");
    let ip_len = p.ip_len;
    let (hdr, quote) = if p.v4 { (28, (p.l4 + 8).min(ip_len)) } else { (48, ip_len.min(1280 - 48)) };
    // Drop padding and whatever is not quoted.
    let _ = m.set_len(14 + quote);
    if m.prepend(hdr).is_none() {
        return false;
    }
    let d = m.data_mut();
    d[0..6].copy_from_slice(&client_mac);
    d[6..12].copy_from_slice(&our_mac.0);
    let (src, dst) = (p.key.dst, p.key.src); // VIP -> client
    if p.v4 {
        d[12..14].copy_from_slice(&ETH_IPV4.to_be_bytes());
        let total = (hdr + quote) as u16;
        let h = &mut d[14..34];
        h.copy_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto::ICMP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[12..16].copy_from_slice(&src[12..]);
        h[16..20].copy_from_slice(&dst[12..]);
        let c = checksum::checksum(h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let icmp = &mut d[34..34 + 8 + quote];
        icmp[..8].copy_from_slice(&[3, 4, 0, 0, 0, 0, 0, 0]);
        icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
        let c = checksum::checksum(icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
    } else {
        d[12..14].copy_from_slice(&ETH_IPV6.to_be_bytes());
        let plen = (8 + quote) as u16;
        let h = &mut d[14..54];
        h.fill(0);
        h[0] = 0x60;
        h[4..6].copy_from_slice(&plen.to_be_bytes());
        h[6] = proto::ICMPV6;
        h[7] = 64;
        h[8..24].copy_from_slice(&src);
        h[24..40].copy_from_slice(&dst);
        let (s6, d6) = (std::net::Ipv6Addr::from(src), std::net::Ipv6Addr::from(dst));
        let icmp = &mut d[54..54 + 8 + quote];
        icmp[..8].copy_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
        icmp[4..8].copy_from_slice(&u32::from(mtu).to_be_bytes());
        let s = checksum::combine(&[
            checksum::pseudo_header_v6(&s6, &d6, proto::ICMPV6, u32::from(plen)),
            checksum::sum(icmp),
        ]);
        icmp[2..4].copy_from_slice(&(!s).to_be_bytes());
    }
    true
}
