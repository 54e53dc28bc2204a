//! Internet checksums (RFC 1071) for the code in this crate that must finish
//! what a checksum offload left undone.
//!
//! A port that offers checksum offloads without computing anything (the `ring`
//! wire with `csum=1`, like Linux's loopback and veth) passes frames whose TCP or
//! UDP checksum field holds only the pseudo-header sum, marked
//! [`RxFlags::L4_CKSUM_PARTIAL`](crate::RxFlags::L4_CKSUM_PARTIAL). Whatever must
//! show such a frame as it would be on a real wire finishes it here: the
//! impairment decorator before it flips a bit (so the receiver's check catches the
//! corruption, as a NIC's would), and the capture decorator in the copy it writes.
//! None of this is on a data path.

use crate::{Mbuf, RxFlags, TxFlags};

/// One's-complement sum of `data` (big-endian 16-bit words, an odd last byte
/// padded with zero) added to `sum`, not folded.
pub fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64;
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u16::from_be_bytes([rest[i], rest[i + 1]]) as u64;
        i += 2;
    }
    if i < rest.len() {
        acc += (rest[i] as u64) << 8;
    }
    acc
}

/// Folds a sum to 16 bits (not complemented).
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Where the L4 header of an Ethernet frame starts, and its checksum field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L4 {
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the TCP/UDP header.
    pub l4: usize,
    /// Offset of the checksum field.
    pub field: usize,
    /// IPv4 (else IPv6).
    pub v4: bool,
    /// UDP (else TCP).
    pub udp: bool,
}

/// Finds the TCP or UDP header of an Ethernet frame (one optional 802.1Q tag;
/// IPv4 with options; IPv6 without extension headers). `None` for anything else,
/// for non-first fragments, and for truncated frames.
pub fn locate_l4(f: &[u8]) -> Option<L4> {
    let mut l3 = 14;
    let mut et = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    if et == 0x8100 {
        et = u16::from_be_bytes([*f.get(16)?, *f.get(17)?]);
        l3 = 18;
    }
    let (l4, proto, v4) = match et {
        0x0800 => {
            let ihl = ((*f.get(l3)? & 0x0f) as usize) * 4;
            let frag = u16::from_be_bytes([*f.get(l3 + 6)?, *f.get(l3 + 7)?]) & 0x1fff;
            if ihl < 20 || frag != 0 {
                return None;
            }
            (l3 + ihl, *f.get(l3 + 9)?, true)
        }
        0x86dd => (l3 + 40, *f.get(l3 + 6)?, false),
        _ => return None,
    };
    let (udp, off) = match proto {
        6 => (false, 16),
        17 => (true, 6),
        _ => return None,
    };
    if f.len() < l4 + off + 2 {
        return None;
    }
    Some(L4 { l3, l4, field: l4 + off, v4, udp })
}

/// Computes the IPv4 header checksum of the header at `l3` in place.
pub fn fill_ipv4_header(f: &mut [u8], l3: usize) {
    let Some(&b) = f.get(l3) else { return };
    let ihl = ((b & 0x0f) as usize) * 4;
    if ihl < 20 || f.len() < l3 + ihl {
        return;
    }
    f[l3 + 10] = 0;
    f[l3 + 11] = 0;
    let c = !fold(sum(0, &f[l3..l3 + ihl]));
    f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// Finishes a partial L4 checksum in place: the field holds the pseudo-header
/// sum (DPDK's and virtio's convention), so the checksum is the complement of
/// the sum over the L4 segment as it is. Returns whether it found one.
pub fn finish_partial(f: &mut [u8]) -> bool {
    let Some(at) = locate_l4(f) else { return false };
    let end = if at.v4 {
        let total = u16::from_be_bytes([f[at.l3 + 2], f[at.l3 + 3]]) as usize;
        at.l3 + total
    } else {
        let payload = u16::from_be_bytes([f[at.l3 + 4], f[at.l3 + 5]]) as usize;
        at.l3 + 40 + payload
    };
    if end > f.len() || end < at.field + 2 {
        return false;
    }
    let mut c = !fold(sum(0, &f[at.l4..end]));
    if at.udp && c == 0 {
        c = 0xffff; // RFC 768: a computed zero is sent as all ones
    }
    f[at.field..at.field + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// What a frame about to be sent still asks of the device.
pub fn tx_pending(m: &Mbuf) -> bool {
    m.meta().tx_flags.intersects(TxFlags::IP_CKSUM | TxFlags::TCP_CKSUM | TxFlags::UDP_CKSUM)
}

/// Computes in `frame` the checksums `flags` (transmit requests) leave to the device.
pub fn finish_tx_in(frame: &mut [u8], flags: TxFlags) {
    if flags.contains(TxFlags::IP_CKSUM) {
        if let Some(at) = locate_l4(frame).filter(|a| a.v4) {
            fill_ipv4_header(frame, at.l3);
        } else if frame.len() >= 34 && frame[12..14] == [0x08, 0x00] {
            fill_ipv4_header(frame, 14);
        }
    }
    if flags.intersects(TxFlags::TCP_CKSUM | TxFlags::UDP_CKSUM) {
        finish_partial(frame);
    }
}

/// Does what a device would for a frame it sends: computes the checksums its
/// transmit requests ask for and clears the requests, so the frame is complete
/// whatever port takes it next.
pub fn finish_tx(m: &mut Mbuf) {
    let flags = m.tx_flags();
    finish_tx_in(m.data_mut(), flags);
    m.set_tx_flags(flags - (TxFlags::IP_CKSUM | TxFlags::TCP_CKSUM | TxFlags::UDP_CKSUM));
}

/// Completes a received frame's partial L4 checksum (if it is marked so) and
/// drops every checksum verdict, so whoever reads it next verifies it.
pub fn finish_rx_and_unmark(m: &mut Mbuf) {
    if m.rx_flags().contains(RxFlags::L4_CKSUM_PARTIAL) {
        finish_partial(m.data_mut());
    }
    unmark(m);
}

/// Drops a frame's checksum verdicts (`*_CKSUM_GOOD`, `L4_CKSUM_PARTIAL`).
pub fn unmark(m: &mut Mbuf) {
    m.set_rx_flags(m.rx_flags() - (RxFlags::IP_CKSUM_GOOD | RxFlags::L4_CKSUM_GOOD | RxFlags::L4_CKSUM_PARTIAL));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + TCP frame with `payload`, checksums zero.
    fn tcp_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12] = 0x08;
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((40 + payload.len()) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[198, 18, 0, 1]);
        ip[16..20].copy_from_slice(&[198, 18, 0, 2]);
        f[34..36].copy_from_slice(&1234u16.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[46] = 0x50;
        f.extend_from_slice(payload);
        f
    }

    fn pseudo(f: &[u8]) -> u16 {
        let len = (f.len() - 34) as u64;
        fold(sum(6 + len, &f[26..34]))
    }

    #[test]
    fn finished_partial_checksum_verifies_with_the_pseudo_header() {
        for payload in [&b""[..], b"a", b"hello, world", &[0xff; 1447]] {
            let mut f = tcp_frame(payload);
            let p = pseudo(&f);
            f[50..52].copy_from_slice(&p.to_be_bytes());
            finish_tx_in(&mut f, TxFlags::IP_CKSUM | TxFlags::TCP_CKSUM);
            assert_eq!(fold(sum(0, &f[14..34])), 0xffff, "IPv4 header verifies");
            let len = (f.len() - 34) as u64;
            assert_eq!(fold(sum(6 + len, &f[26..34]) + sum(0, &f[34..])), 0xffff, "TCP verifies");
        }
    }

    #[test]
    fn locate_l4_refuses_what_it_cannot_parse() {
        assert_eq!(locate_l4(&[0u8; 10]), None);
        let mut f = tcp_frame(b"x");
        f[14 + 9] = 1; // ICMP
        assert_eq!(locate_l4(&f), None);
        let mut g = tcp_frame(b"x");
        g[14 + 7] = 1; // a non-first fragment
        assert_eq!(locate_l4(&g), None);
        assert_eq!(locate_l4(&tcp_frame(b"x")).map(|a| a.field), Some(50));
    }
}
