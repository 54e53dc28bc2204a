//! UDP sockets: bind (a local address or the unspecified one, ephemeral
//! ports 49152..=65535), the receive queue of datagrams held in the very
//! buffers the port filled (zero copy), and send by prepending the headers
//! into the payload buffer's headroom; a datagram for no socket draws a
//! rate-limited port unreachable (`iface/icmp.rs`).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::{Deref, DerefMut};

use pmd::{MacAddr, Mbuf, TxFlags};

use crate::config::UdpConfig;
use crate::error::StackError;
use crate::iface::{Stack, ETH, UDP, V4, V6};
use crate::wire::{ChecksumCaps, ChecksumMode, IpPair, IpProtocol, UdpPacket, UdpRepr};

/// A handle to a UDP socket of one [`Stack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpHandle {
    index: u32,
    generation: u32,
}

/// A received UDP datagram: the buffer the port filled, its window on the payload.
#[derive(Debug)]
pub struct UdpDatagram {
    /// The payload (zero copy: `payload.data()` is the UDP payload in the
    /// received frame's buffer).
    pub payload: Mbuf,
    /// Who sent it.
    pub peer: SocketAddr,
    /// The address and port it was sent to.
    pub local: SocketAddr,
}

pub(crate) struct UdpSock {
    local: SocketAddr,
    cfg: UdpConfig,
    rx: VecDeque<UdpDatagram>,
    generation: u32,
}

impl Stack {
    pub(crate) fn udp_sock(&self, h: UdpHandle) -> Result<&UdpSock, StackError> {
        match self.udp.get(h.index as usize) {
            Some(Some(s)) if s.generation == h.generation => Ok(s),
            _ => Err(StackError::InvalidHandle),
        }
    }

    pub(crate) fn udp_input(
        &mut self,
        mut m: Mbuf,
        ip: IpPair,
        l4: usize,
        src_mac: MacAddr,
        bcast: bool,
        caps: ChecksumCaps,
    ) {
        let parsed = UdpRepr::parse(&UdpPacket::new_unchecked(&m.data()[l4..]), &ip, &caps);
        let r = match parsed {
            Ok(r) => r,
            Err(err) => return self.stats.malformed(err),
        };
        let (src, dst) = match ip {
            IpPair::V4 { src, dst } => (IpAddr::V4(src), IpAddr::V4(dst)),
            IpPair::V6 { src, dst } => (IpAddr::V6(src), IpAddr::V6(dst)),
        };
        let any = if dst.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
        let idx = self.udp_ports.get(&(dst, r.dst_port)).or_else(|| self.udp_ports.get(&(any, r.dst_port))).copied();
        let Some(idx) = idx else {
            self.stats.drops.udp_no_socket += 1;
            if !bcast {
                self.send_unreachable(&m, ip, src_mac);
            }
            return;
        };
        let Some(sock) = self.udp.get_mut(idx as usize).and_then(Option::as_mut) else { return };
        if sock.rx.len() >= sock.cfg.rx_queue_len {
            self.stats.drops.udp_queue_full += 1;
            return;
        }
        // Zero copy: move the window onto the payload.
        m.adj(l4 + UDP);
        m.trim(m.len() - r.payload_len);
        sock.rx.push_back(UdpDatagram {
            payload: m,
            peer: SocketAddr::new(src, r.src_port),
            local: SocketAddr::new(dst, r.dst_port),
        });
        self.stats.events.udp_delivered += 1;
    }
}

/// The UDP socket calls of a [`Stack`]: `stack.udp().…` (or, for the
/// read-only ones on a shared stack, `stack.udp_ref().…`).
pub struct Udp<S> {
    stack: S,
}

impl Stack {
    /// The UDP socket calls.
    pub fn udp(&mut self) -> Udp<&mut Stack> {
        Udp { stack: self }
    }

    /// The read-only UDP socket calls, on a shared stack.
    pub fn udp_ref(&self) -> Udp<&Stack> {
        Udp { stack: self }
    }
}

impl<S: Deref<Target = Stack>> Udp<S> {
    /// The address a socket is bound to.
    pub fn local_addr(&self, h: UdpHandle) -> Result<SocketAddr, StackError> {
        let st = &*self.stack;
        st.udp_sock(h).map(|s| s.local)
    }

    /// Datagrams waiting in a socket's receive queue.
    pub fn queued(&self, h: UdpHandle) -> Result<usize, StackError> {
        let st = &*self.stack;
        st.udp_sock(h).map(|s| s.rx.len())
    }
}

impl<S: DerefMut<Target = Stack>> Udp<S> {
    /// Binds a UDP socket to `local` (an address of this interface, or the
    /// unspecified address of a family for all of its addresses; port 0 picks
    /// an ephemeral port from 49152..=65535).
    pub fn bind(&mut self, local: SocketAddr, cfg: UdpConfig) -> Result<UdpHandle, StackError> {
        let st = &mut *self.stack;
        cfg.validate()?;
        let ip = local.ip();
        let ok = ip.is_unspecified()
            || match ip {
                IpAddr::V4(a) => st.is_our_v4(&a),
                IpAddr::V6(a) => st.is_our_v6(&a),
            };
        if !ok {
            return Err(StackError::AddrNotAvailable(local));
        }
        let mut local = local;
        if local.port() == 0 {
            let mut found = None;
            for _ in 0..16384 {
                let p = st.next_ephemeral;
                st.next_ephemeral = if p == 65535 { 49152 } else { p + 1 };
                // On one of several cores, only this core's share of the range.
                let ours = st.steering.as_ref().map_or(true, |s| s.ephemeral_partition(p) == s.index());
                if ours && !st.udp_ports.contains_key(&(ip, p)) {
                    found = Some(p);
                    break;
                }
            }
            local.set_port(found.ok_or(StackError::AddrInUse(local))?);
        }
        if st.udp_ports.contains_key(&(ip, local.port())) {
            return Err(StackError::AddrInUse(local));
        }
        let index = match st.udp.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                st.udp.push(None);
                st.udp_generation.push(0);
                st.udp.len() - 1
            }
        };
        let generation = st.udp_generation[index];
        st.udp[index] = Some(UdpSock { local, cfg, rx: VecDeque::new(), generation });
        st.udp_ports.insert((ip, local.port()), index as u32);
        Ok(UdpHandle { index: index as u32, generation })
    }

    /// Closes a socket; queued datagrams are freed.
    pub fn close(&mut self, h: UdpHandle) -> Result<(), StackError> {
        let st = &mut *self.stack;
        let local = st.udp_sock(h)?.local;
        st.udp_ports.remove(&(local.ip(), local.port()));
        st.udp[h.index as usize] = None;
        st.udp_generation[h.index as usize] = h.generation.wrapping_add(1);
        Ok(())
    }

    /// Moves up to `max` received datagrams to `out` (zero copy: each holds the
    /// receiving buffer); returns how many.
    pub fn recv(&mut self, h: UdpHandle, out: &mut Vec<UdpDatagram>, max: usize) -> Result<usize, StackError> {
        let st = &mut *self.stack;
        st.udp_sock(h)?;
        let s = st.udp[h.index as usize].as_mut().expect("checked");
        let n = max.min(s.rx.len());
        out.extend(s.rx.drain(..n));
        Ok(n)
    }

    /// Sends `payload` (the buffer's data is the UDP payload) to `dst`: the
    /// headers are prepended into the buffer's headroom, no copy. The buffer
    /// is consumed whether or not this succeeds.
    pub fn send_to(&mut self, h: UdpHandle, mut payload: Mbuf, dst: SocketAddr) -> Result<(), StackError> {
        let st = &mut *self.stack;
        let local = st.udp_sock(h)?.local;
        if local.is_ipv4() != dst.is_ipv4() {
            return Err(StackError::FamilyMismatch(dst));
        }
        let (src, next_hop) = match st.route(dst.ip()) {
            Ok(r) => r,
            Err(e) => {
                st.stats.drops.no_route += 1;
                return Err(e);
            }
        };
        let src = if local.ip().is_unspecified() { src } else { local.ip() };
        let hdr = if dst.is_ipv4() { V4 } else { V6 };
        let need = hdr + UDP + payload.len();
        if need > usize::from(st.cfg.mtu) {
            st.stats.drops.over_mtu += 1;
            return Err(StackError::TooBig { need, max: usize::from(st.cfg.mtu) });
        }
        if payload.headroom() < ETH + hdr + UDP {
            st.stats.drops.no_buffers += 1;
            return Err(StackError::TooBig { need: ETH + hdr + UDP, max: payload.headroom() });
        }
        let plen = payload.len();
        let ip = match (src, dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => IpPair::V4 { src: s, dst: d },
            (IpAddr::V6(s), IpAddr::V6(d)) => IpPair::V6 { src: s, dst: d },
            _ => return Err(StackError::FamilyMismatch(dst)),
        };
        payload.prepend(UDP).expect("checked headroom");
        UdpRepr { src_port: local.port(), dst_port: dst.port(), payload_len: plen }.emit(
            &mut UdpPacket::new_unchecked(payload.data_mut()),
            &ip,
            &st.tx_caps,
        );
        let l4 = if st.tx_caps.udp == ChecksumMode::Offloaded { TxFlags::UDP_CKSUM } else { TxFlags::empty() };
        if st.emit_ip(payload, ip, IpProtocol::Udp, l4, next_hop, None) {
            st.stats.events.udp_sent += 1;
        }
        Ok(())
    }

    /// Sends a batch of (payload, destination); every buffer is consumed.
    /// Returns how many were accepted; failures are counted in the stats.
    pub fn send_batch(&mut self, h: UdpHandle, batch: &mut Vec<(Mbuf, SocketAddr)>) -> Result<usize, StackError> {
        let st = &mut *self.stack;
        st.udp_sock(h)?;
        let mut ok = 0;
        for (m, dst) in batch.drain(..) {
            if self.send_to(h, m, dst).is_ok() {
                ok += 1;
            }
        }
        Ok(ok)
    }

    /// Sends a copy of `data` (counted in `bytes_copied`) to `dst`.
    pub fn send_slice(&mut self, h: UdpHandle, data: &[u8], dst: SocketAddr) -> Result<(), StackError> {
        let st = &mut *self.stack;
        st.udp_sock(h)?;
        let mut m = st.pool.alloc().map_err(|_| StackError::NoBuffers)?;
        m.extend_from_slice(data).ok_or(StackError::TooBig { need: data.len(), max: m.tailroom() })?;
        st.stats.events.bytes_copied += data.len() as u64;
        self.send_to(h, m, dst)
    }
}
