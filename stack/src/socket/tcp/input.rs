//! TCP receive: a segment is parsed (checksum: the NIC's verdict or
//! software), then goes to its connection (by 4-tuple), else to a listener
//! (by address and port, then wildcard), else draws a RST (RFC 9293
//! 3.10.7.1). Established connections a listener hands off join its accept
//! queue here. Also the segment emit path into the interface's shared IP
//! emit (`Stack::emit_ip`).

use std::net::{IpAddr, SocketAddr};

use pmd::{MacAddr, Mbuf, TxFlags};

use super::table::{ConnEntry, Owner};
use crate::iface::Stack;
use crate::tcp::listener::reset_for;
use crate::tcp::{Connection, FlowId};
use crate::wire::{ChecksumCaps, ChecksumMode, IpPair, IpProtocol, TcpPacket, TcpRepr};

/// Drains a connection's events; whether any happened.
pub(super) fn drain_events(c: &mut Connection) -> bool {
    let any = c.poll_event().is_some();
    while c.poll_event().is_some() {}
    any
}

impl Stack {
    pub(crate) fn tcp_input(&mut self, m: Mbuf, ip: IpPair, l4: usize, caps: ChecksumCaps) {
        let parsed = TcpRepr::parse(&TcpPacket::new_unchecked(&m.data()[l4..]), &ip, &caps);
        let repr = match parsed {
            Ok(r) => r,
            Err(err) => return self.stats.malformed(err),
        };
        self.stats.events.tcp_segments_received += 1;
        let (src, dst) = match ip {
            IpPair::V4 { src, dst } => (IpAddr::V4(src), IpAddr::V4(dst)),
            IpPair::V6 { src, dst } => (IpAddr::V6(src), IpAddr::V6(dst)),
        };
        let flow = FlowId { local: SocketAddr::new(dst, repr.dst_port), remote: SocketAddr::new(src, repr.src_port) };
        let end = m.len();
        let start = end - repr.payload_len;
        let now = self.now;
        if let Some(&i) = self.tcp.flows.get(&flow) {
            let keep = repr.payload_len > 0 && self.tcp.rx_mbufs < self.cfg.tcp_rx_mbufs;
            if repr.payload_len > 0 && !keep {
                self.stats.events.tcp_rx_mbuf_limit += 1;
            }
            let e = self.tcp.entry_mut(i).expect("flows point at live entries");
            let held = e.conn.rx_mbufs();
            if keep {
                // The payload stays in this buffer until read (zero copy).
                let mut m = m;
                let _ = m.adj(start);
                e.conn.handle_segment_mbuf(now, &repr, m);
            } else {
                e.conn.handle_segment(now, &repr, &m.data()[start..end]);
            }
            let now_held = e.conn.rx_mbufs();
            self.tcp.rx_mbufs = self.tcp.rx_mbufs + now_held - held;
            let e = self.tcp.entry_mut(i).expect("flows point at live entries");
            if drain_events(&mut e.conn) {
                self.tcp.mark_ready(i);
            }
            self.tcp.mark_dirty(i);
            return;
        }
        if let Some(li) = self.tcp.listener_for(flow.local) {
            let l = self.tcp.listeners[li as usize].entry.as_mut().expect("listen_addrs point at live listeners");
            l.listener.handle_segment(now, flow, &repr, &m.data()[start..end]);
            self.tcp.mark_listener(li, false);
            self.tcp_pump_listener(li);
            return;
        }
        self.stats.drops.tcp_no_socket += 1;
        self.tcp_reset_for(flow, &repr);
    }

    /// Moves the listener's newly established connections into the table.
    pub(crate) fn tcp_pump_listener(&mut self, li: u32) {
        loop {
            let Some(l) = self.tcp.listeners[li as usize].entry.as_mut() else { return };
            let Some((flow, mut conn)) = l.listener.hand_off() else { return };
            if self.tcp.live >= self.cfg.tcp_max_connections {
                self.stats.drops.tcp_connection_limit += 1;
                l.listener.accepted();
                conn.abort();
                let mut buf = [0u8; 0];
                if let Some(t) = conn.poll_transmit(self.now, &mut buf) {
                    self.tcp_send_header(&t.repr, &flow);
                }
                continue;
            }
            drain_events(&mut conn);
            let next_hop = self.route(flow.remote.ip()).map_or(flow.remote.ip(), |(_, nh)| nh);
            let i = self.tcp.insert(ConnEntry {
                conn,
                flow,
                next_hop,
                owner: Owner::Queued(li),
                in_flows: true,
                timer: None,
                in_ready: false,
                in_dirty: false,
                failure: None,
            });
            let l = self.tcp.listeners[li as usize].entry.as_mut().expect("checked above");
            l.queue.push_back(i);
            self.tcp.mark_listener(li, true);
        }
    }

    /// RFC 9293 3.10.7.1: a segment for no connection draws a reset.
    pub(crate) fn tcp_reset_for(&mut self, flow: FlowId, seg: &TcpRepr) {
        if let Some(r) = reset_for(&flow, seg) {
            self.stats.events.tcp_resets_sent += 1;
            self.tcp_send_header(&r, &flow);
        }
    }

    /// Sends a segment without payload for `flow`, routed.
    pub(crate) fn tcp_send_header(&mut self, r: &TcpRepr, flow: &FlowId) {
        let Ok((_, next_hop)) = self.route(flow.remote.ip()) else {
            self.stats.drops.no_route += 1;
            return;
        };
        let Some(m) = self.alloc() else { return };
        self.tcp_emit(m, r, flow, next_hop);
    }

    /// `m` holds the payload; prepends TCP, IP and Ethernet headers and sends.
    pub(crate) fn tcp_emit(&mut self, m: Mbuf, r: &TcpRepr, flow: &FlowId, next_hop: IpAddr) {
        self.tcp_emit_to(m, r, flow, next_hop, None)
    }

    /// [`tcp_emit`](Self::tcp_emit) with the next hop's MAC when the caller
    /// already resolved it (one neighbour lookup per connection and pass).
    pub(crate) fn tcp_emit_to(
        &mut self,
        mut m: Mbuf,
        r: &TcpRepr,
        flow: &FlowId,
        next_hop: IpAddr,
        mac: Option<MacAddr>,
    ) {
        let ip = match (flow.local.ip(), flow.remote.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => IpPair::V4 { src: s, dst: d },
            (IpAddr::V6(s), IpAddr::V6(d)) => IpPair::V6 { src: s, dst: d },
            _ => return,
        };
        let hl = r.header_len();
        if m.prepend(hl).is_none() {
            self.stats.drops.no_buffers += 1;
            return;
        }
        r.emit(&mut TcpPacket::new_unchecked(m.data_mut()), &ip, &self.tx_caps);
        let l4 = if self.tx_caps.tcp == ChecksumMode::Offloaded { TxFlags::TCP_CKSUM } else { TxFlags::empty() };
        if self.emit_ip(m, ip, IpProtocol::Tcp, l4, next_hop, mac) {
            self.stats.events.tcp_segments_sent += 1;
        }
    }
}
