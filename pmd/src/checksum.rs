//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624),
//! the one implementation of the workspace: the stack's wire formats use it
//! (re-exported as `stack::checksum`), and so does the code in this crate
//! that finishes what a checksum offload left undone (the last section).
//!
//! All functions here work with the *folded one's-complement sum* of 16-bit
//! big-endian words (a `u16`, not yet complemented). The value written into a
//! header is the complement of that sum: `!sum`. Keeping sums uncomplemented
//! until the end lets a caller add pieces together with [`combine`] (for
//! example a pseudo-header sum and the sum of a payload held in another
//! buffer).
//!
//! [`sum`] is written by hand rather than taken from a crate because it is on
//! the per-packet path: it reads eight bytes at a time into a `u64`
//! accumulator with end-around carry, in native byte order, and swaps bytes
//! once at the end (RFC 1071 §2(B): the one's-complement sum is independent
//! of byte order up to a final swap). No `unsafe`: `chunks_exact` lets the
//! compiler drop the bounds checks.
//!
//! ```
//! use pmd::checksum;
//! // RFC 1071 §3 example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
//! assert_eq!(checksum::sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0xddf2);
//! ```

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{Mbuf, RxFlags, TxFlags};

/// Adds `word` into a 64-bit one's-complement accumulator (end-around carry).
#[inline(always)]
fn add64(acc: u64, word: u64) -> u64 {
    let (s, carry) = acc.overflowing_add(word);
    // If the add overflowed, `s` is at most 2^64 - 2, so adding 1 cannot.
    s + u64::from(carry)
}

/// Folds a 64-bit one's-complement accumulator to 16 bits.
#[inline(always)]
fn fold64(acc: u64) -> u16 {
    let acc = (acc & 0xffff_ffff) + (acc >> 32); // <= 2^33 - 2
    let acc = (acc & 0xffff_ffff) + (acc >> 32); // <= 2^32 - 1
    let acc = (acc & 0xffff) + (acc >> 16); // <= 0x1fffe
    let acc = (acc & 0xffff) + (acc >> 16); // <= 0xffff
    acc as u16
}

/// Sums `data` in native byte order; the caller converts with `u16::from_be`
/// semantics (see [`sum`]).
#[inline]
fn sum_native(data: &[u8]) -> u16 {
    let mut acc0: u64 = 0;
    let mut acc1: u64 = 0;
    let mut big = data.chunks_exact(16);
    for c in &mut big {
        let (a, b) = c.split_at(8);
        acc0 = add64(acc0, u64::from_ne_bytes(a.try_into().expect("8 bytes")));
        acc1 = add64(acc1, u64::from_ne_bytes(b.try_into().expect("8 bytes")));
    }
    let mut acc = add64(acc0, acc1);
    let rest = big.remainder();
    let mut words = rest.chunks_exact(2);
    for w in &mut words {
        acc = add64(acc, u64::from(u16::from_ne_bytes([w[0], w[1]])));
    }
    if let [last] = words.remainder() {
        // An odd final byte is the high byte of a word whose low byte is 0.
        acc = add64(acc, u64::from(u16::from_ne_bytes([*last, 0])));
    }
    fold64(acc)
}

/// The folded one's-complement sum of `data` read as big-endian 16-bit words
/// (an odd trailing byte is padded with a zero byte). Not complemented.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    u16::from_be(sum_native(data))
}

/// One's-complement addition of partial sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    let acc: u64 = sums.iter().map(|&s| u64::from(s)).sum();
    fold64(acc)
}

/// One's-complement addition of two partial sums.
#[inline]
pub fn add(a: u16, b: u16) -> u16 {
    fold64(u64::from(a) + u64::from(b))
}

/// The checksum field value for `data`: `!sum(data)`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// Sum of the IPv4 pseudo-header used by UDP, TCP (RFC 768, RFC 9293 §3.1):
/// source, destination, zero, protocol, upper-layer length.
#[inline]
pub fn pseudo_header_v4(src: &Ipv4Addr, dst: &Ipv4Addr, protocol: u8, length: u32) -> u16 {
    let s = src.octets();
    let d = dst.octets();
    let acc = u64::from(u16::from_be_bytes([s[0], s[1]]))
        + u64::from(u16::from_be_bytes([s[2], s[3]]))
        + u64::from(u16::from_be_bytes([d[0], d[1]]))
        + u64::from(u16::from_be_bytes([d[2], d[3]]))
        + u64::from(protocol)
        + (u64::from(length) >> 16)
        + (u64::from(length) & 0xffff);
    fold64(acc)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination,
/// 32-bit upper-layer length, three zero bytes, next header.
#[inline]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, length: u32) -> u16 {
    let acc = u64::from(sum(&src.octets()))
        + u64::from(sum(&dst.octets()))
        + u64::from(next_header)
        + (u64::from(length) >> 16)
        + (u64::from(length) & 0xffff);
    fold64(acc)
}

/// Incrementally updates a checksum *field value* `old_csum` after a 16-bit
/// word of the covered data changed from `old` to `new` (RFC 1624 eqn. 3:
/// `HC' = ~(~HC + ~m + m')`).
#[inline]
pub fn update_u16(old_csum: u16, old: u16, new: u16) -> u16 {
    !fold64(u64::from(!old_csum) + u64::from(!old) + u64::from(new))
}

/// [`update_u16`] for a 32-bit field (aligned on a 16-bit boundary), such as
/// a TCP sequence number.
#[inline]
pub fn update_u32(old_csum: u16, old: u32, new: u32) -> u16 {
    let acc = u64::from(!old_csum)
        + u64::from(!(old >> 16) as u16)
        + u64::from(!(old as u16))
        + u64::from(new >> 16)
        + u64::from(new & 0xffff);
    !fold64(acc)
}

/// [`update_u16`] for an arbitrary run of 16-bit words (`old` and `new` must
/// have the same, even length and start on a 16-bit boundary of the covered
/// data). Used for address rewrites.
#[inline]
pub fn update_bytes(old_csum: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    debug_assert_eq!(old.len() % 2, 0);
    !combine(&[!old_csum, !sum(old), sum(new)])
}

/// Updates a checksum field covering an IPv4 address (the IPv4 header
/// checksum, or a UDP/TCP checksum through the pseudo-header) after the
/// address changed from `old` to `new`, as a NAT or load balancer does.
#[inline]
pub fn update_ipv4_addr(old_csum: u16, old: &Ipv4Addr, new: &Ipv4Addr) -> u16 {
    update_u32(old_csum, u32::from(*old), u32::from(*new))
}

/// Updates a UDP/TCP/ICMPv6 checksum field after an IPv6 address in its
/// pseudo-header changed from `old` to `new`.
#[inline]
pub fn update_ipv6_addr(old_csum: u16, old: &Ipv6Addr, new: &Ipv6Addr) -> u16 {
    update_bytes(old_csum, &old.octets(), &new.octets())
}

// ------------------------------------------------------------ finishing offloads
//
// A port that offers checksum offloads without computing anything (the `ring`
// wire with `csum=1`, like Linux's loopback and veth) passes frames whose TCP or
// UDP checksum field holds only the pseudo-header sum, marked
// `RxFlags::L4_CKSUM_PARTIAL`. Whatever must show such a frame as it would be on
// a real wire finishes it here: the impairment decorator before it flips a bit
// (so the receiver's check catches the corruption, as a NIC's would), and the
// capture decorator in the copy it writes. None of this is on a data path.

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
    let c = checksum(&f[l3..l3 + ihl]);
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
    let mut c = checksum(&f[at.l4..end]);
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
    use proptest::prelude::*;

    /// RFC 1071 §4.1's loop, word by word, as the reference.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            acc += u32::from(u16::from_be_bytes([data[i], data[i + 1]]));
            i += 2;
        }
        if i < data.len() {
            acc += u32::from(data[i]) << 8;
        }
        while acc >> 16 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// One's-complement sums have two zeros (0x0000 and 0xffff); they are
    /// the same value, so compare modulo that.
    fn same(a: u16, b: u16) -> bool {
        a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
    }

    #[test]
    fn rfc1071_3_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn empty_and_odd() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(sum(&[0xab]), 0xab00);
        assert_eq!(sum(&[0xff; 3]), 0xff00); // 0xffff + 0xff00, carry folded
    }

    #[test]
    fn all_ones_do_not_overflow() {
        let data = vec![0xffu8; 65536 + 7];
        assert!(same(sum(&data), reference_sum(&data)));
    }

    #[test]
    fn ipv4_header_checksum_is_zero_when_valid() {
        // A real header (from tcpdump): 45 00 00 54 30 13 40 00 40 01 <csum> c6 12 00 01 c6 12 00 02
        let mut h = [0x45, 0x00, 0x00, 0x54, 0x30, 0x13, 0x40, 0x00, 0x40, 0x01, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2];
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn rfc1624_3_update_u16_matches_recompute() {
        let mut data = [0x12u8, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0];
        let c0 = checksum(&data);
        data[2..4].copy_from_slice(&0xffffu16.to_be_bytes());
        let c1 = update_u16(c0, 0x5678, 0xffff);
        assert!(same(c1, checksum(&data)));
    }

    #[test]
    fn pseudo_headers_match_byte_layout() {
        let s4 = Ipv4Addr::new(198, 18, 0, 1);
        let d4 = Ipv4Addr::new(198, 18, 0, 2);
        let mut b = Vec::new();
        b.extend_from_slice(&s4.octets());
        b.extend_from_slice(&d4.octets());
        b.extend_from_slice(&[0, 17, 0x01, 0x02]);
        assert_eq!(pseudo_header_v4(&s4, &d4, 17, 0x0102), reference_sum(&b));

        let s6: Ipv6Addr = "2001:2::1".parse().unwrap();
        let d6: Ipv6Addr = "2001:2::2".parse().unwrap();
        let mut b = Vec::new();
        b.extend_from_slice(&s6.octets());
        b.extend_from_slice(&d6.octets());
        b.extend_from_slice(&0x0001_0203u32.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 6]);
        assert_eq!(pseudo_header_v6(&s6, &d6, 6, 0x0001_0203), reference_sum(&b));
    }

    proptest! {
        #[test]
        fn sum_matches_reference(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            start in 0usize..16,
        ) {
            let start = start.min(data.len());
            let slice = &data[start..];
            prop_assert!(same(sum(slice), reference_sum(slice)));
        }

        #[test]
        fn combine_of_split_matches_whole(
            data in proptest::collection::vec(any::<u8>(), 0..512),
            split in 0usize..512,
        ) {
            // Splitting on an even offset keeps word alignment.
            let split = (split.min(data.len())) & !1;
            let (a, b) = data.split_at(split);
            prop_assert!(same(combine(&[sum(a), sum(b)]), reference_sum(&data)));
        }

        #[test]
        fn incremental_updates_match_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 48..200),
            at in 0usize..16,
            new16 in any::<u16>(),
            new32 in any::<u32>(),
            new_v6 in any::<[u8; 16]>(),
        ) {
            let at = at * 2;
            let c0 = checksum(&data);
            let old16 = u16::from_be_bytes([data[at], data[at + 1]]);
            data[at..at + 2].copy_from_slice(&new16.to_be_bytes());
            let c1 = update_u16(c0, old16, new16);
            prop_assert!(same(c1, checksum(&data)));

            let old32 = u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
            data[at..at + 4].copy_from_slice(&new32.to_be_bytes());
            let c2 = update_u32(c1, old32, new32);
            prop_assert!(same(c2, checksum(&data)));
            let c2b = update_ipv4_addr(c1, &Ipv4Addr::from(old32), &Ipv4Addr::from(new32));
            prop_assert!(same(c2b, c2));

            let old_v6 = Ipv6Addr::from(<[u8; 16]>::try_from(&data[at..at + 16]).unwrap());
            data[at..at + 16].copy_from_slice(&new_v6);
            let c3 = update_ipv6_addr(c2, &old_v6, &Ipv6Addr::from(new_v6));
            prop_assert!(same(c3, checksum(&data)));
        }
    }
}

#[cfg(test)]
mod offload_tests {
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
        let len = (f.len() - 34) as u16;
        add(sum(&f[26..34]), 6 + len)
    }

    #[test]
    fn finished_partial_checksum_verifies_with_the_pseudo_header() {
        for payload in [&b""[..], b"a", b"hello, world", &[0xff; 1447]] {
            let mut f = tcp_frame(payload);
            let p = pseudo(&f);
            f[50..52].copy_from_slice(&p.to_be_bytes());
            finish_tx_in(&mut f, TxFlags::IP_CKSUM | TxFlags::TCP_CKSUM);
            assert_eq!(sum(&f[14..34]), 0xffff, "IPv4 header verifies");
            assert_eq!(add(pseudo(&f), sum(&f[34..])), 0xffff, "TCP verifies");
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
