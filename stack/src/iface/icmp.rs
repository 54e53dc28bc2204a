//! ICMP errors the stack originates: destination unreachable (port) for
//! IPv4 (RFC 792, RFC 1812 §4.3.2.3) and IPv6 (RFC 4443 §3.1), parameter
//! problem for IPv6 (RFC 4443 §3.4); all rate limited by one token bucket
//! (RFC 4443 §2.4(f), [`IcmpConfig`](crate::config::IcmpConfig)).

use std::net::Ipv6Addr;

use pmd::{MacAddr, Mbuf, TxFlags};

use super::{Stack, SW, V4, V6};
use crate::checksum;
use crate::wire::{self, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpPair, IpProtocol, Ipv4Repr, Ipv6Repr};

/// RFC 1812 §4.3.2.3: an ICMPv4 error carries as much of the datagram as fits in 576 bytes.
const ICMP4_ERR_MAX: usize = 576;
/// RFC 4443 §2.4(c): an ICMPv6 error must not exceed the minimum IPv6 MTU.
const ICMP6_ERR_MAX: usize = 1280;

/// Turns an ICMP / ICMPv6 echo request (`icmp` holds its message) into its
/// reply in place: the type changes from `request` to `reply`, the code is
/// echoed as it came (see `Icmpv4Repr::parse`), and the checksum is updated
/// incrementally (RFC 1624). Swapping the IP addresses leaves the ICMPv6
/// pseudo-header sum unchanged, so this is all either family needs.
pub(crate) fn echo_reply_in_place(icmp: &mut [u8], request: u8, reply: u8) {
    let old = u16::from_be_bytes([icmp[2], icmp[3]]);
    let code = u16::from(icmp[1]);
    icmp[0] = reply;
    let c = checksum::update_u16(old, u16::from(request) << 8 | code, u16::from(reply) << 8 | code);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
}

/// Token bucket for ICMP errors: `rate` per second, `burst` deep, in units of
/// 1e-9 token so integer arithmetic is exact.
pub(crate) struct TokenBucket {
    rate: u64,
    cap: u64,
    tokens: u64,
    last_ns: u64,
}

impl TokenBucket {
    const ONE: u64 = 1_000_000_000;

    pub(crate) fn new(rate: u32, burst: u32, now_ns: u64) -> Self {
        let cap = u64::from(burst).saturating_mul(Self::ONE);
        TokenBucket { rate: u64::from(rate), cap, tokens: cap, last_ns: now_ns }
    }

    pub(crate) fn take(&mut self, now_ns: u64) -> bool {
        if self.rate == 0 {
            return false;
        }
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = now_ns.max(self.last_ns);
        self.tokens = self.tokens.saturating_add(elapsed.saturating_mul(self.rate)).min(self.cap);
        if self.tokens >= Self::ONE {
            self.tokens -= Self::ONE;
            true
        } else {
            false
        }
    }
}

impl Stack {
    /// ICMP / ICMPv6 destination unreachable (port) for `orig` (the IP packet),
    /// rate limited.
    pub(crate) fn send_unreachable(&mut self, orig: &Mbuf, ip: IpPair, src_mac: MacAddr) {
        if !self.icmp_bucket.take(self.now) {
            self.stats.events.icmp_rate_limited += 1;
            return;
        }
        let Some(mut m) = self.alloc() else { return };
        let ok = match ip {
            IpPair::V4 { src, dst } => {
                let q = &orig.data()[..orig.len().min(ICMP4_ERR_MAX - V4 - 8)];
                let msg =
                    Icmpv4Repr::DstUnreachable { code: wire::icmpv4::unreachable::PORT, next_hop_mtu: 0, quoted: q };
                let len = msg.buffer_len();
                match m.append(len) {
                    Some(d) => {
                        msg.emit(&mut Icmpv4Packet::new_unchecked(d), &SW);
                        self.stats.events.bytes_copied += q.len() as u64;
                        let r = Ipv4Repr::new(dst, src, IpProtocol::Icmp, len, self.cfg.ttl);
                        self.emit_v4_and_send_to(m, &r, src_mac, TxFlags::empty());
                        true
                    }
                    None => false,
                }
            }
            IpPair::V6 { src, dst } => {
                let q = &orig.data()[..orig.len().min(ICMP6_ERR_MAX - V6 - 8)];
                let msg = Icmpv6Repr::DstUnreachable { code: 4, quoted: q };
                let len = msg.buffer_len();
                match m.append(len) {
                    Some(d) => {
                        msg.emit(&mut Icmpv6Packet::new_unchecked(d), &dst, &src, &SW);
                        self.stats.events.bytes_copied += q.len() as u64;
                        let r = Ipv6Repr::new(dst, src, IpProtocol::Icmpv6, len, self.cfg.ttl);
                        self.emit_v6_and_send_to(m, &r, src_mac, TxFlags::empty());
                        true
                    }
                    None => false,
                }
            }
        };
        if ok {
            self.stats.events.unreachables_sent += 1;
        } else {
            self.stats.drops.no_buffers += 1;
        }
    }

    /// ICMPv6 Parameter Problem (RFC 4443 §3.4) about `orig` (the IPv6 packet
    /// from `src` to `dst`), rate limited like every ICMP error. From `dst`,
    /// or when that was multicast from our address towards `src`.
    pub(crate) fn send_param_problem(
        &mut self,
        orig: &Mbuf,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        src_mac: MacAddr,
        code: u8,
        pointer: u32,
    ) {
        // RFC 4443 §2.4 (e.6): never to an unspecified (or multicast) source.
        if src.is_unspecified() || src.is_multicast() {
            return;
        }
        let from = if dst.is_multicast() {
            match self.src_v6_for(&src) {
                Some(a) => a,
                None => return,
            }
        } else {
            dst
        };
        if !self.icmp_bucket.take(self.now) {
            self.stats.events.icmp_rate_limited += 1;
            return;
        }
        let q = &orig.data()[..orig.len().min(ICMP6_ERR_MAX - V6 - 8)];
        let msg = Icmpv6Repr::ParamProblem { code, pointer, quoted: q };
        self.stats.events.bytes_copied += q.len() as u64;
        let hop = self.cfg.ttl;
        if self.send_icmpv6(from, src, src_mac, hop, &msg) {
            self.stats.events.param_problems_sent += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_rate_and_burst() {
        let mut b = TokenBucket::new(10, 3, 0);
        assert!(b.take(0) && b.take(0) && b.take(0));
        assert!(!b.take(0));
        assert!(!b.take(99_999_999));
        assert!(b.take(100_000_000));
        assert!(!b.take(100_000_000));
        let mut off = TokenBucket::new(0, 0, 0);
        assert!(!off.take(1_000_000_000_000));
    }
}
