//! IPv4 input (RFC 791, RFC 1122): header checks against the NIC's verdict,
//! source and destination filters, fragments to the reassembler, delivery to
//! ICMP / UDP / TCP; the ICMP echo reply built in place (RFC 792, RFC 1624);
//! the IPv4 header of a reply addressed to a known MAC.

use std::net::IpAddr;

use pmd::{MacAddr, Mbuf, RxFlags, TxFlags};

use super::icmp::echo_reply_in_place;
use super::{Stack, SW, V4};
use crate::reassembly::{FragV4, Fragment, ReasmKey};
use crate::socket::echo::EchoReply;
use crate::wire::{self, ChecksumCaps, EtherType, Icmpv4Packet, Icmpv4Repr, IpPair, IpProtocol, Ipv4Packet, Ipv4Repr};

impl Stack {
    pub(crate) fn ipv4_input(&mut self, mut m: Mbuf, src_mac: MacAddr) {
        let flags = m.rx_flags();
        if flags.contains(RxFlags::IP_CKSUM_BAD) {
            self.stats.drops.nic_ip_checksum_bad += 1;
            return;
        }
        let Ok(caps) = self.rx_caps(&m) else {
            self.stats.drops.nic_l4_checksum_bad += 1;
            return;
        };
        let parsed = {
            let p = Ipv4Packet::new_unchecked(m.data());
            Ipv4Repr::parse(&p, &caps).map(|r| (r, p.header_len()))
        };
        let (repr, hlen) = match parsed {
            Ok(x) => x,
            Err(err) => return self.stats.malformed(err),
        };
        // Drop Ethernet padding beyond Total Length.
        let total = hlen + repr.payload_len;
        m.trim(m.len() - total);
        let src = repr.src_addr;
        if src.is_multicast() || self.is_broadcast_v4(&src) || self.is_our_v4(&src) {
            self.stats.drops.bad_source += 1;
            return;
        }
        let dst = repr.dst_addr;
        let bcast = if self.is_our_v4(&dst) {
            false
        } else if self.is_broadcast_v4(&dst) || dst.is_multicast() {
            true
        } else {
            self.stats.drops.not_for_us += 1;
            return;
        };
        if repr.is_fragment() {
            m.adj(hlen);
            let now = self.now;
            let key =
                ReasmKey { src: repr.src_addr, dst: repr.dst_addr, protocol: repr.protocol.into(), ident: repr.ident };
            let frag = Fragment::<FragV4> {
                key,
                offset: usize::from(repr.frag_offset),
                more: repr.more_frags,
                header: (repr.frag_offset == 0).then_some(repr),
            };
            if let Some((r, full)) = self.reasm.input(frag, m, now, &mut self.timers, &mut self.stats.drops) {
                self.stats.events.reassembled += 1;
                self.stats.events.bytes_copied += r.payload_len as u64;
                // Fragments hash on addresses: the whole packet may belong
                // to another core's flow (`crate::cores`).
                let Some(full) = self.hand_off_reassembled(full, src_mac, EtherType::Ipv4) else { return };
                // Reassembled in software: verify the L4 checksum in software too.
                self.ipv4_deliver(full, r, V4, src_mac, bcast, SW);
            }
            return;
        }
        self.ipv4_deliver(m, repr, hlen, src_mac, bcast, caps);
    }

    pub(crate) fn ipv4_deliver(
        &mut self,
        m: Mbuf,
        repr: Ipv4Repr,
        hlen: usize,
        src_mac: MacAddr,
        bcast: bool,
        caps: ChecksumCaps,
    ) {
        if !bcast {
            let ip = IpPair::V4 { src: repr.src_addr, dst: repr.dst_addr };
            match self.tunnel(&m, repr.protocol, hlen, Some(&ip)) {
                super::decap::Tunnel::At(at) => return self.decap_input(m, at, src_mac),
                super::decap::Tunnel::BadChecksum => return self.stats.drops.decap_malformed += 1,
                super::decap::Tunnel::No => {}
            }
        }
        match repr.protocol {
            IpProtocol::Icmp => self.icmpv4_input(m, repr, hlen, src_mac, bcast),
            IpProtocol::Udp => {
                let ip = IpPair::V4 { src: repr.src_addr, dst: repr.dst_addr };
                self.udp_input(m, ip, hlen, src_mac, bcast, caps)
            }
            IpProtocol::Tcp if bcast => self.stats.drops.not_for_us += 1,
            IpProtocol::Tcp => self.tcp_input(m, IpPair::V4 { src: repr.src_addr, dst: repr.dst_addr }, hlen, caps),
            _ => self.stats.drops.unknown_protocol += 1,
        }
    }

    pub(crate) fn icmpv4_input(&mut self, mut m: Mbuf, repr: Ipv4Repr, hlen: usize, src_mac: MacAddr, bcast: bool) {
        let parsed = Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&m.data()[hlen..]), &SW);
        let echo = match parsed {
            Err(err) => return self.stats.malformed(err),
            Ok(Icmpv4Repr::EchoRequest { .. }) => None,
            Ok(Icmpv4Repr::EchoReply { ident, seq_no, data }) => Some((ident, seq_no, data.len())),
            Ok(_) => {
                self.stats.events.icmp_other_received += 1;
                return;
            }
        };
        if let Some((ident, seq_no, len)) = echo {
            return self.echo_deliver(EchoReply {
                from: IpAddr::V4(repr.src_addr),
                ident,
                seq_no,
                len,
                at_ns: self.now,
            });
        }
        if bcast {
            // RFC 1122 §3.2.2.6 allows ignoring broadcast echo (Linux does).
            self.stats.drops.not_for_us += 1;
            return;
        }
        // Echo reply in place (RFC 792): type 8 -> 0, checksum updated per RFC 1624;
        // IP options (if any) are not echoed: the header is rebuilt as 20 bytes.
        m.adj(hlen);
        echo_reply_in_place(m.data_mut(), wire::icmpv4::msg_type::ECHO_REQUEST, wire::icmpv4::msg_type::ECHO_REPLY);
        let icmp_len = m.len();
        let out = Ipv4Repr::new(repr.dst_addr, repr.src_addr, IpProtocol::Icmp, icmp_len, self.cfg.ttl);
        self.stats.events.echo_replies_sent += 1;
        self.emit_v4_and_send_to(m, &out, src_mac, TxFlags::empty());
    }

    /// Prepends an IPv4 header (and Ethernet to `dst_mac`) and queues the frame.
    pub(crate) fn emit_v4_and_send_to(&mut self, mut m: Mbuf, r: &Ipv4Repr, dst_mac: MacAddr, l4: TxFlags) {
        let Some(h) = m.prepend(V4) else {
            self.stats.drops.no_buffers += 1;
            return;
        };
        r.emit(&mut Ipv4Packet::new_unchecked(h), &self.tx_caps);
        self.tx_meta(&mut m, false, V4, l4);
        self.eth_and_send(m, EtherType::Ipv4, dst_mac);
    }
}
