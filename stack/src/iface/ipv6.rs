//! IPv6 input (RFC 8200): extension headers and their option actions,
//! fragments to the reassembler; ICMPv6 echo (RFC 4443) and neighbour
//! discovery (RFC 4861: solicitations answered, advertisements learned, our
//! own solicitations and unsolicited advertisements).

use std::net::{IpAddr, Ipv6Addr};

use pmd::{MacAddr, Mbuf, TxFlags};

use super::icmp::echo_reply_in_place;
use super::{Stack, SW, V6};
use crate::reassembly::{FragV6, Fragment, Reasm6Key, V6Header};
use crate::socket::echo::EchoReply;
use crate::wire::ipv6::OptionAction;
use crate::wire::{
    self, EtherType, Icmpv6Packet, Icmpv6Repr, IpPair, IpProtocol, Ipv6Packet, Ipv6Repr, NdpOption, NdpOptions,
};

/// The solicited-node multicast address of `a` (RFC 4291 §2.7.1).
pub fn solicited_node(a: &Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(o[13]), u16::from_be_bytes([o[14], o[15]]))
}

/// All-nodes multicast (RFC 4291 §2.7.1).
pub(crate) const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

impl Stack {
    /// `reassembled`: `m` was rebuilt from fragments (it is not reassembled
    /// again: a fragment inside it is dropped).
    pub(crate) fn ipv6_input(&mut self, mut m: Mbuf, src_mac: MacAddr, reassembled: bool) {
        let Ok(caps) = self.rx_caps(&m) else {
            self.stats.drops.nic_l4_checksum_bad += 1;
            return;
        };
        let parsed = Ipv6Repr::parse(&Ipv6Packet::new_unchecked(m.data()));
        let repr = match parsed {
            Ok(r) => r,
            Err(err) => return self.stats.malformed(err),
        };
        m.trim(m.len() - (V6 + repr.payload_len));
        let (src, dst) = (repr.src_addr, repr.dst_addr);
        if src.is_multicast() || self.is_our_v6(&src) {
            self.stats.drops.bad_source += 1;
            return;
        }
        let mcast = if self.is_our_v6(&dst) {
            false
        } else if dst == ALL_NODES || self.cfg.ipv6.iter().any(|c| solicited_node(&c.address()) == dst) {
            true
        } else {
            self.stats.drops.not_for_us += 1;
            return;
        };
        let upper = match wire::ipv6::walk_ext_headers(repr.next_header, &m.data()[V6..]) {
            Ok(u) => u,
            Err(err) => return self.stats.malformed(err),
        };
        if let Some(o) = upper.unrecognized_option {
            // RFC 8200 §4.2: the option type's high-order bits say what to do.
            self.stats.drops.ipv6_unrecognized_option += 1;
            let report = match o.action {
                OptionAction::Discard => false,
                OptionAction::DiscardAndReport => true,
                OptionAction::DiscardAndReportUnlessMulticast => !mcast,
            };
            if report {
                // Code 2, pointing at the option's type octet in the packet.
                self.send_param_problem(&m, src, dst, src_mac, 2, (V6 + o.offset) as u32);
            }
            return;
        }
        if let (Some(f), Some(at)) = (upper.fragment, upper.fragment_at) {
            if f.more_frags || f.frag_offset != 0 {
                if reassembled {
                    self.stats.drops.ipv6_fragment += 1;
                    return;
                }
                return self.ipv6_fragment_input(m, src, dst, f, at, src_mac);
            }
        }
        let l4 = V6 + upper.offset;
        if !mcast {
            match self.tunnel(&m, upper.protocol, l4, Some(&IpPair::V6 { src, dst })) {
                super::decap::Tunnel::At(at) => return self.decap_input(m, at, src_mac),
                super::decap::Tunnel::BadChecksum => return self.stats.drops.decap_malformed += 1,
                super::decap::Tunnel::No => {}
            }
        }
        match upper.protocol {
            IpProtocol::Icmpv6 => self.icmpv6_input(m, repr, l4, src_mac, mcast),
            IpProtocol::Udp => self.udp_input(m, IpPair::V6 { src, dst }, l4, src_mac, mcast, caps),
            IpProtocol::Tcp if mcast => self.stats.drops.not_for_us += 1,
            IpProtocol::Tcp => self.tcp_input(m, IpPair::V6 { src, dst }, l4, caps),
            _ => self.stats.drops.unknown_protocol += 1,
        }
    }

    /// One IPv6 fragment (RFC 8200 §4.5): held until its packet is complete,
    /// which then goes through `ipv6_input` again as an ordinary packet.
    pub(crate) fn ipv6_fragment_input(
        &mut self,
        mut m: Mbuf,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        f: wire::Ipv6FragmentRepr,
        at: wire::FragmentPosition,
        src_mac: MacAddr,
    ) {
        let unfragmentable = V6 + at.offset;
        let header = (f.frag_offset == 0).then(|| V6Header {
            bytes: m.data()[..unfragmentable].to_vec(),
            next_header_at: at.named_by.map_or(6, |o| V6 + o),
            next_header: f.next_header.into(),
        });
        m.adj(unfragmentable + wire::ipv6::FRAGMENT_HEADER_LEN);
        let frag = Fragment::<FragV6> {
            key: Reasm6Key { src, dst, ident: f.ident },
            offset: usize::from(f.frag_offset),
            more: f.more_frags,
            header,
        };
        let now = self.now;
        if let Some((_, full)) = self.reasm6.input(frag, m, now, &mut self.timers, &mut self.stats.drops) {
            self.stats.events.reassembled_v6 += 1;
            self.stats.events.bytes_copied += full.len() as u64;
            // Fragments hash on addresses: the whole packet may belong to
            // another core's flow (`crate::cores`).
            let Some(full) = self.hand_off_reassembled(full, src_mac, crate::wire::EtherType::Ipv6) else { return };
            // A fresh buffer has no receive flags: checksums are verified in software.
            self.ipv6_input(full, src_mac, true);
        }
    }

    pub(crate) fn icmpv6_input(&mut self, mut m: Mbuf, repr: Ipv6Repr, l4: usize, src_mac: MacAddr, mcast: bool) {
        enum Act {
            Echo,
            Reply(u16, u16, usize),
            Ns(Ipv6Addr, Option<MacAddr>),
            Na(Ipv6Addr, Option<MacAddr>, bool),
            Other,
        }
        let (src, dst) = (repr.src_addr, repr.dst_addr);
        let parsed = Icmpv6Repr::parse(&Icmpv6Packet::new_unchecked(&m.data()[l4..]), &src, &dst, &SW);
        let act = match parsed {
            Err(err) => return self.stats.malformed(err),
            Ok(Icmpv6Repr::EchoRequest { .. }) => Act::Echo,
            Ok(Icmpv6Repr::EchoReply { ident, seq_no, data }) => Act::Reply(ident, seq_no, data.len()),
            Ok(Icmpv6Repr::NeighborSolicit { target, options }) => Act::Ns(target, options.source_lladdr()),
            Ok(Icmpv6Repr::NeighborAdvert { target, options, solicited, .. }) => {
                Act::Na(target, options.target_lladdr(), solicited)
            }
            Ok(_) => Act::Other,
        };
        let ndp = matches!(act, Act::Ns(..) | Act::Na(..));
        if ndp && repr.hop_limit != 255 {
            // RFC 4861 §7.1.1/§7.1.2: NDP must come from the link.
            self.stats.drops.ndp_hop_limit += 1;
            return;
        }
        match act {
            Act::Other => self.stats.events.icmp_other_received += 1,
            Act::Reply(ident, seq_no, len) => {
                self.echo_deliver(EchoReply { from: IpAddr::V6(src), ident, seq_no, len, at_ns: self.now })
            }
            Act::Echo => {
                if mcast {
                    self.stats.drops.not_for_us += 1;
                    return;
                }
                // Echo reply in place (RFC 4443 §4.2): type 128 -> 129. The pseudo-header
                // sum is unchanged by swapping addresses, so only the type word changes.
                m.adj(l4);
                echo_reply_in_place(
                    m.data_mut(),
                    wire::icmpv6::msg_type::ECHO_REQUEST,
                    wire::icmpv6::msg_type::ECHO_REPLY,
                );
                let out = Ipv6Repr::new(dst, src, IpProtocol::Icmpv6, m.len(), self.cfg.ttl);
                self.stats.events.echo_replies_sent += 1;
                self.emit_v6_and_send_to(m, &out, src_mac, TxFlags::empty());
            }
            Act::Ns(target, sll) => {
                if !self.is_our_v6(&target) {
                    self.stats.drops.not_for_us += 1;
                    return;
                }
                drop(m);
                if src.is_unspecified() {
                    // RFC 4861 §7.2.4: DAD probe: answer to all-nodes, not solicited.
                    if sll.is_some() {
                        return self.stats.malformed(wire::Error::BadOption);
                    }
                    if self.send_na(target, ALL_NODES, MacAddr::ipv6_multicast(&ALL_NODES), false) {
                        self.stats.events.ndp_adverts_sent += 1;
                    }
                    return;
                }
                if !mcast && dst != target {
                    self.stats.drops.not_for_us += 1;
                    return;
                }
                if let Some(a) = sll {
                    self.learn(IpAddr::V6(src), a, true);
                }
                let to_mac = sll.unwrap_or(src_mac);
                if self.send_na(target, src, to_mac, true) {
                    self.stats.events.ndp_adverts_sent += 1;
                }
            }
            Act::Na(target, tll, solicited) => {
                if solicited && dst.is_multicast() {
                    return self.stats.malformed(wire::Error::BadField);
                }
                if let Some(a) = tll {
                    // On one of several cores a solicited answer may be to
                    // another core's solicitation: learn it and broadcast it
                    // (`crate::cores`).
                    let create = solicited && self.steering.as_ref().is_some_and(|s| s.count() > 1);
                    self.learn(IpAddr::V6(target), a, create);
                }
            }
        }
    }

    pub(crate) fn emit_v6_and_send_to(&mut self, mut m: Mbuf, r: &Ipv6Repr, dst_mac: MacAddr, l4: TxFlags) {
        let Some(h) = m.prepend(V6) else {
            self.stats.drops.no_buffers += 1;
            return;
        };
        r.emit(&mut Ipv6Packet::new_unchecked(h));
        self.tx_meta(&mut m, true, V6, l4);
        self.eth_and_send(m, EtherType::Ipv6, dst_mac);
    }

    pub(crate) fn send_icmpv6(
        &mut self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        dst_mac: MacAddr,
        hop_limit: u8,
        msg: &Icmpv6Repr<'_>,
    ) -> bool {
        let Some(mut m) = self.alloc() else { return false };
        let len = msg.buffer_len();
        let Some(d) = m.append(len) else {
            self.stats.drops.no_buffers += 1;
            return false;
        };
        msg.emit(&mut Icmpv6Packet::new_unchecked(d), &src, &dst, &SW);
        let r = Ipv6Repr::new(src, dst, IpProtocol::Icmpv6, len, hop_limit);
        self.emit_v6_and_send_to(m, &r, dst_mac, TxFlags::empty());
        true
    }

    pub(crate) fn send_na(&mut self, target: Ipv6Addr, dst: Ipv6Addr, dst_mac: MacAddr, solicited: bool) -> bool {
        let opts = [NdpOption::TargetLinkLayerAddr(self.cfg.mac)];
        let msg = Icmpv6Repr::NeighborAdvert {
            router: false,
            solicited,
            override_: true,
            target,
            options: NdpOptions::List(&opts),
        };
        self.send_icmpv6(target, dst, dst_mac, 255, &msg)
    }

    pub(crate) fn send_ns(&mut self, target: Ipv6Addr) {
        let Some(src) = self.src_v6_for(&target) else { return };
        let opts = [NdpOption::SourceLinkLayerAddr(self.cfg.mac)];
        let msg = Icmpv6Repr::NeighborSolicit { target, options: NdpOptions::List(&opts) };
        let dst = solicited_node(&target);
        if self.send_icmpv6(src, dst, MacAddr::ipv6_multicast(&dst), 255, &msg) {
            self.stats.events.ndp_solicits_sent += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4291_2_7_1_solicited_node_address() {
        let a: Ipv6Addr = "2001:2::abcd:1234:5678".parse().unwrap();
        assert_eq!(solicited_node(&a), "ff02::1:ff34:5678".parse::<Ipv6Addr>().unwrap());
    }
}
