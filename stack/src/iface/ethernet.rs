//! Ethernet and ARP: the receive demux by EtherType, ARP input (the reply is
//! built in the request's buffer, RFC 826 learning), ARP requests and
//! announcements (RFC 5227), and the last step of every transmit: the Ethernet
//! header, the offload metadata and the transmit backlog.

use std::net::{IpAddr, Ipv4Addr};

use pmd::{MacAddr, Mbuf, MbufMeta, TxFlags};

use super::ipv6::ALL_NODES;
use super::{Stack, ETH};
use crate::wire::{self, ArpOperation, ArpPacket, ArpRepr, ChecksumMode, EtherType, EthernetFrame, EthernetRepr};

fn mac_is_unicast(m: &MacAddr) -> bool {
    m.is_unicast() && *m != MacAddr::UNSPECIFIED
}

impl Stack {
    /// Sends the gratuitous ARP / unsolicited NA announcements now (the first
    /// [`input`](Self::input) does it by itself).
    pub fn announce(&mut self) {
        self.announced = true;
        if self.steering.as_ref().is_some_and(|s| s.index() != 0) {
            // One announcement per host: core 0's ([`crate::cores`]).
            return;
        }
        for i in 0..self.cfg.ipv4.len() {
            let a = self.cfg.ipv4[i].address();
            // RFC 5227 §3: an ARP announcement is a request with SPA = TPA = ours.
            if self.send_arp_request_from(a, a) {
                self.stats.events.arp_announcements_sent += 1;
            }
        }
        for i in 0..self.cfg.ipv6.len() {
            let a = self.cfg.ipv6[i].address();
            // RFC 4861 §7.2.6: unsolicited NA to all-nodes, override set.
            if self.send_na(a, ALL_NODES, MacAddr::ipv6_multicast(&ALL_NODES), false) {
                self.stats.events.ndp_announcements_sent += 1;
            }
        }
    }

    pub(crate) fn input_frame(&mut self, mut m: Mbuf) {
        self.stats.events.rx_frames += 1;
        let parsed = EthernetRepr::parse(&EthernetFrame::new_unchecked(m.data()));
        let e = match parsed {
            Ok(e) => e,
            Err(err) => return self.stats.malformed(err),
        };
        if e.dst_addr.is_unicast() && e.dst_addr != self.cfg.mac {
            self.stats.drops.not_for_us += 1;
            return;
        }
        if e.vlan_count() > 0 {
            self.stats.drops.vlan_tagged += 1;
            return;
        }
        let src_mac = e.src_addr;
        let hl = e.header_len();
        match e.ethertype {
            EtherType::Arp => self.arp_input(m, hl),
            EtherType::Ipv4 => {
                m.adj(hl);
                self.ipv4_input(m, src_mac);
            }
            EtherType::Ipv6 => {
                m.adj(hl);
                self.ipv6_input(m, src_mac, false);
            }
            _ => self.stats.drops.unknown_ethertype += 1,
        }
    }

    pub(crate) fn arp_input(&mut self, mut m: Mbuf, hl: usize) {
        let parsed = ArpPacket::new_checked(&m.data()[hl..]).and_then(|p| ArpRepr::parse(&p));
        let r = match parsed {
            Ok(r) => r,
            Err(err) => return self.stats.malformed(err),
        };
        let (spa, tpa) = (r.source_protocol_addr, r.target_protocol_addr);
        let sha = r.source_hardware_addr;
        if self.is_our_v4(&spa) || sha.is_multicast() {
            // Our own announcement looped back, or a conflict: never learn it.
            self.stats.drops.bad_source += 1;
            return;
        }
        let for_us = self.is_our_v4(&tpa);
        if !spa.is_unspecified() {
            // RFC 826 "merge": update a known entry; create one only if we are the target.
            self.learn(IpAddr::V4(spa), sha, for_us);
        }
        if !for_us {
            self.stats.drops.not_for_us += 1;
            return;
        }
        if r.operation != ArpOperation::Request {
            return;
        }
        // Answer in place: the request's buffer becomes the reply.
        let reply = ArpRepr {
            operation: ArpOperation::Reply,
            source_hardware_addr: self.cfg.mac,
            source_protocol_addr: tpa,
            target_hardware_addr: r.source_hardware_addr,
            target_protocol_addr: spa,
        };
        if m.set_len(ETH + wire::arp::PACKET_LEN).is_none() {
            return;
        }
        if hl != ETH {
            m.adj(hl - ETH);
        }
        let d = m.data_mut();
        EthernetRepr::new(self.cfg.mac, reply.target_hardware_addr, EtherType::Arp)
            .emit(&mut EthernetFrame::new_unchecked(&mut d[..ETH]));
        reply.emit(&mut ArpPacket::new_unchecked(&mut d[ETH..]));
        m.clear_meta();
        self.stats.events.arp_replies_sent += 1;
        self.transmit(m);
    }

    /// Records a neighbour's MAC learned from the wire and sends what waited
    /// for it; with other cores, tells them too.
    pub(crate) fn learn(&mut self, ip: IpAddr, mac: MacAddr, create: bool) {
        self.learn_from(ip, mac, create, true)
    }

    /// [`learn`](Self::learn), from the wire (`broadcast`) or from another
    /// core's broadcast.
    pub(crate) fn learn_from(&mut self, ip: IpAddr, mac: MacAddr, create: bool, broadcast: bool) {
        if !mac_is_unicast(&mac) {
            return;
        }
        let got = match ip {
            IpAddr::V4(a) => self.arp.resolved(a, mac, self.now, create),
            IpAddr::V6(a) => self.ndp.resolved(a, mac, self.now, create),
        };
        let Some((pending, timer)) = got else { return };
        if broadcast && self.steering.as_ref().is_some_and(|s| s.count() > 1) {
            self.stats.events.neighbor_broadcasts += 1;
            self.core_out.push((crate::cores::CoreDest::All, crate::cores::CoreMsg::Neighbor { ip, mac }));
        }
        if let Some(t) = timer {
            self.timers.cancel(t);
            self.stats.events.neighbors_resolved += 1;
        }
        for mut p in pending {
            if p.len() >= ETH {
                p.data_mut()[0..6].copy_from_slice(&mac.0);
                self.transmit(p);
            }
        }
    }

    pub(crate) fn send_arp(&mut self, r: &ArpRepr, dst_mac: MacAddr) -> bool {
        let Some(mut m) = self.alloc() else { return false };
        let Some(d) = m.append(ETH + wire::arp::PACKET_LEN) else {
            self.stats.drops.no_buffers += 1;
            return false;
        };
        EthernetRepr::new(self.cfg.mac, dst_mac, EtherType::Arp).emit(&mut EthernetFrame::new_unchecked(&mut d[..ETH]));
        r.emit(&mut ArpPacket::new_unchecked(&mut d[ETH..]));
        self.transmit(m);
        true
    }

    pub(crate) fn send_arp_request(&mut self, target: Ipv4Addr) {
        let Some(src) = self.src_v4_for(&target) else { return };
        if self.send_arp_request_from(src, target) {
            self.stats.events.arp_requests_sent += 1;
        }
    }

    /// Broadcasts an ARP request for `target` from `src`.
    fn send_arp_request_from(&mut self, src: Ipv4Addr, target: Ipv4Addr) -> bool {
        let r = ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: self.cfg.mac,
            source_protocol_addr: src,
            target_hardware_addr: MacAddr::UNSPECIFIED,
            target_protocol_addr: target,
        };
        self.send_arp(&r, MacAddr::BROADCAST)
    }

    pub(crate) fn transmit(&mut self, m: Mbuf) {
        if self.tx_buf.len() >= self.cfg.tx_backlog {
            self.stats.drops.tx_backlog_full += 1;
            return;
        }
        self.stats.events.tx_frames += 1;
        self.tx_buf.push(m);
    }

    /// Sets the transmit offload metadata for an IP packet at `l2` bytes in.
    pub(crate) fn tx_meta(&self, m: &mut Mbuf, v6: bool, l3_len: usize, l4: TxFlags) {
        let mut f = if v6 { TxFlags::IPV6 } else { TxFlags::IPV4 };
        if !v6 && self.tx_caps.ipv4 == ChecksumMode::Offloaded {
            f |= TxFlags::IP_CKSUM;
        }
        f |= l4;
        m.set_meta(MbufMeta { tx_flags: f, l2_len: ETH as u8, l3_len: l3_len as u16, ..MbufMeta::default() });
    }

    pub(crate) fn eth_and_send(&mut self, mut m: Mbuf, t: EtherType, dst_mac: MacAddr) {
        let Some(h) = m.prepend(ETH) else {
            self.stats.drops.no_buffers += 1;
            return;
        };
        EthernetRepr::new(self.cfg.mac, dst_mac, t).emit(&mut EthernetFrame::new_unchecked(h));
        self.transmit(m);
    }
}
