//! Routes and source address selection (connected networks by longest
//! prefix, then the family's default gateway; IPv6 link-local and multicast
//! on-link), the shared IP emit path every locally originated packet takes
//! (UDP, ping, TCP), and neighbour output: a resolved next hop's MAC, or the
//! frame queued while ARP / NDP resolves it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pmd::{MacAddr, Mbuf, TxFlags};

use super::{Stack, StackTimer, ETH, V4, V6};
use crate::error::StackError;
use crate::neighbor::{Enqueued, Retry};
use crate::wire::{
    EtherType, EthernetFrame, EthernetRepr, IpPair, IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
};

pub(crate) fn is_link_local_v6(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

impl Stack {
    pub(crate) fn is_our_v4(&self, a: &Ipv4Addr) -> bool {
        self.cfg.ipv4.iter().any(|c| c.address() == *a)
    }

    pub(crate) fn is_our_v6(&self, a: &Ipv6Addr) -> bool {
        self.cfg.ipv6.iter().any(|c| c.address() == *a)
    }

    pub(crate) fn is_our_ip(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.is_our_v4(&a),
            IpAddr::V6(a) => self.is_our_v6(&a),
        }
    }

    pub(crate) fn is_broadcast_v4(&self, a: &Ipv4Addr) -> bool {
        a.is_broadcast() || self.cfg.ipv4.iter().any(|c| c.broadcast() == Some(*a))
    }

    pub(crate) fn is_broadcast_ip(&self, ip: IpAddr) -> bool {
        matches!(ip, IpAddr::V4(a) if self.is_broadcast_v4(&a))
    }

    pub(crate) fn src_v4_for(&self, dst: &Ipv4Addr) -> Option<Ipv4Addr> {
        self.cfg
            .ipv4
            .iter()
            .filter(|c| c.contains(dst))
            .max_by_key(|c| c.prefix_len())
            .or(self.cfg.ipv4.first())
            .map(|c| c.address())
    }

    pub(crate) fn src_v6_for(&self, dst: &Ipv6Addr) -> Option<Ipv6Addr> {
        let v6 = &self.cfg.ipv6;
        if is_link_local_v6(dst) || dst.is_multicast() {
            if let Some(c) = v6.iter().find(|c| is_link_local_v6(&c.address())) {
                return Some(c.address());
            }
        }
        v6.iter()
            .filter(|c| c.contains(dst))
            .max_by_key(|c| c.prefix_len())
            .or(v6.iter().find(|c| !is_link_local_v6(&c.address())))
            .or(v6.first())
            .map(|c| c.address())
    }

    /// Route lookup: (source address, next hop) for `dst`. Connected networks
    /// (longest prefix) first, then the family's default gateway. IPv6
    /// link-local and multicast destinations are on-link.
    pub fn route(&self, dst: IpAddr) -> Result<(IpAddr, IpAddr), StackError> {
        match dst {
            IpAddr::V4(d) => {
                let src = self.src_v4_for(&d).ok_or(StackError::NoRoute(dst))?;
                if self.is_broadcast_v4(&d) || d.is_multicast() {
                    return Ok((IpAddr::V4(src), dst));
                }
                if let Some(c) = self.cfg.ipv4.iter().filter(|c| c.contains(&d)).max_by_key(|c| c.prefix_len()) {
                    return Ok((IpAddr::V4(c.address()), dst));
                }
                match self.cfg.gateway_v4 {
                    Some(g) => Ok((IpAddr::V4(self.src_v4_for(&g).unwrap_or(src)), IpAddr::V4(g))),
                    None => Err(StackError::NoRoute(dst)),
                }
            }
            IpAddr::V6(d) => {
                let src = self.src_v6_for(&d).ok_or(StackError::NoRoute(dst))?;
                if is_link_local_v6(&d) || d.is_multicast() || self.cfg.ipv6.iter().any(|c| c.contains(&d)) {
                    return Ok((IpAddr::V6(src), dst));
                }
                match self.cfg.gateway_v6 {
                    Some(g) => Ok((IpAddr::V6(src), IpAddr::V6(g))),
                    None => Err(StackError::NoRoute(dst)),
                }
            }
        }
    }

    /// The resolved MAC of a unicast next hop (`None` for broadcast,
    /// multicast and unresolved ones, which [`output_to`](Self::output_to) handles).
    pub(crate) fn neighbor_unicast(&self, next_hop: IpAddr) -> Option<MacAddr> {
        match next_hop {
            IpAddr::V4(a) if !self.is_broadcast_v4(&a) && !a.is_multicast() => self.arp.lookup(&a, self.now),
            IpAddr::V6(a) if !a.is_multicast() => self.ndp.lookup(&a, self.now),
            _ => None,
        }
    }

    /// Neighbour output: sends an IP packet (`m` holds it from the IP header
    /// on, with at least 14 bytes of headroom) to `next_hop`, resolving its
    /// MAC if needed (the frame waits in the neighbour cache meanwhile).
    pub(crate) fn output_to(&mut self, mut m: Mbuf, next_hop: IpAddr) {
        let (t, mac) = match next_hop {
            IpAddr::V4(a) => {
                let mac = if self.is_broadcast_v4(&a) {
                    Some(MacAddr::BROADCAST)
                } else if a.is_multicast() {
                    Some(MacAddr::ipv4_multicast(&a))
                } else {
                    self.arp.lookup(&a, self.now)
                };
                (EtherType::Ipv4, mac)
            }
            IpAddr::V6(a) => {
                let mac =
                    if a.is_multicast() { Some(MacAddr::ipv6_multicast(&a)) } else { self.ndp.lookup(&a, self.now) };
                (EtherType::Ipv6, mac)
            }
        };
        if let Some(mac) = mac {
            return self.eth_and_send(m, t, mac);
        }
        // Unresolved: build the frame now (destination filled on resolution) and queue it.
        let Some(h) = m.prepend(ETH) else {
            self.stats.drops.no_buffers += 1;
            return;
        };
        EthernetRepr::new(self.cfg.mac, MacAddr::UNSPECIFIED, t).emit(&mut EthernetFrame::new_unchecked(h));
        let res = match next_hop {
            IpAddr::V4(a) => self.arp.enqueue(a, m, self.now),
            IpAddr::V6(a) => self.ndp.enqueue(a, m, self.now),
        };
        match res {
            Enqueued::Queued => {}
            Enqueued::SendRequest | Enqueued::SendRequestDropped(_) => {
                if matches!(res, Enqueued::SendRequestDropped(_)) {
                    self.stats.drops.neighbor_pending_full += 1;
                }
                self.first_solicit(next_hop);
            }
            Enqueued::PendingFull(_) => self.stats.drops.neighbor_pending_full += 1,
            Enqueued::CacheFull(_) => self.stats.drops.neighbor_cache_full += 1,
        }
    }

    pub(crate) fn arm_neighbor_timer(&mut self, ip: IpAddr) {
        let at = self.now.saturating_add(self.cfg.neighbor.retry_interval.as_nanos() as u64);
        match ip {
            IpAddr::V4(a) => {
                let id = self.timers.insert(at, StackTimer::Arp(a));
                self.arp.set_timer(&a, id);
            }
            IpAddr::V6(a) => {
                let id = self.timers.insert(at, StackTimer::Ndp(a));
                self.ndp.set_timer(&a, id);
            }
        }
    }
}

impl Stack {
    /// The shared IP emit path: `m` holds a transport segment of `protocol`
    /// (with its checksum written, or left to the NIC as `l4` says); prepends
    /// the IP header for `ip` and sets the offload metadata, then sends it to
    /// `mac` when the caller already resolved the next hop (one neighbour
    /// lookup per TCP connection and pass), else to `next_hop` through
    /// neighbour output. `false` (counted) when the buffer has no headroom
    /// for the IP header.
    pub(crate) fn emit_ip(
        &mut self,
        mut m: Mbuf,
        ip: IpPair,
        protocol: IpProtocol,
        l4: TxFlags,
        next_hop: IpAddr,
        mac: Option<MacAddr>,
    ) -> bool {
        let len = m.len();
        let ok = match ip {
            IpPair::V4 { src, dst } => m.prepend(V4).map(|h| {
                Ipv4Repr::new(src, dst, protocol, len, self.cfg.ttl)
                    .emit(&mut Ipv4Packet::new_unchecked(h), &self.tx_caps)
            }),
            IpPair::V6 { src, dst } => m
                .prepend(V6)
                .map(|h| Ipv6Repr::new(src, dst, protocol, len, self.cfg.ttl).emit(&mut Ipv6Packet::new_unchecked(h))),
        };
        if ok.is_none() {
            self.stats.drops.no_buffers += 1;
            return false;
        }
        self.tx_meta(&mut m, ip.is_v6(), if ip.is_v6() { V6 } else { V4 }, l4);
        match mac {
            Some(mac) => {
                let t = if ip.is_v6() { EtherType::Ipv6 } else { EtherType::Ipv4 };
                self.eth_and_send(m, t, mac)
            }
            None => self.output_to(m, next_hop),
        }
        true
    }
}

impl Stack {
    /// Starts resolving `ip`: asks the link, or, on a core other than the
    /// resolver, asks the resolver and only arms the retry timer (whose
    /// firing, if the answer has not been broadcast by then, sends a request
    /// of ours; see [`crate::cores`]).
    fn first_solicit(&mut self, ip: IpAddr) {
        if let Some(s) = self.steering.as_ref().filter(|s| s.count() > 1 && s.resolver() != s.index()) {
            let resolver = s.resolver();
            self.stats.events.neighbor_requests_deferred += 1;
            self.core_out.push((crate::cores::CoreDest::Core(resolver), crate::cores::CoreMsg::Resolve { ip }));
            self.arm_neighbor_timer(ip);
            return;
        }
        self.solicit(ip);
    }

    /// Another core needs `ip`: broadcast it if known, else resolve it
    /// (one request, whoever asks).
    pub(crate) fn resolve_for_core(&mut self, ip: IpAddr) {
        let known = match ip {
            IpAddr::V4(a) => self.arp.lookup(&a, self.now),
            IpAddr::V6(a) => self.ndp.lookup(&a, self.now),
        };
        if let Some(mac) = known {
            self.stats.events.neighbor_broadcasts += 1;
            self.core_out.push((crate::cores::CoreDest::All, crate::cores::CoreMsg::Neighbor { ip, mac }));
            return;
        }
        let new = match ip {
            IpAddr::V4(a) => self.arp.want(a, self.now),
            IpAddr::V6(a) => self.ndp.want(a, self.now),
        };
        if new {
            self.solicit(ip);
        }
    }

    /// Asks the link for `ip`'s MAC (ARP request or neighbour solicitation)
    /// and arms the retry timer.
    fn solicit(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => self.send_arp_request(a),
            IpAddr::V6(a) => self.send_ns(a),
        }
        self.arm_neighbor_timer(ip);
    }

    /// A neighbour's retry timer fired: ask again, or give up on it (its
    /// waiting packets are dropped, connections opening through it fail).
    pub(crate) fn neighbor_retry(&mut self, ip: IpAddr, r: Retry) {
        match r {
            Retry::Again => self.solicit(ip),
            Retry::GiveUp(q) => {
                self.stats.drops.neighbor_unresolved += q.len() as u64;
                self.tcp_neighbor_failed(ip);
            }
            Retry::Nothing => {}
        }
    }
}
