//! ICMP and ICMPv6 echo sockets: [`Echo::open`] and [`Echo::ping`]
//! (`stack.echo().open(..)`);
//! replies with the socket's identifier are queued for [`Echo::recv`].
//! (Echo *requests* to us are answered in place by the interface:
//! `iface/ipv4.rs`, `iface/ipv6.rs`.)

use std::collections::VecDeque;
use std::net::IpAddr;

use pmd::TxFlags;

use crate::error::StackError;
use crate::iface::{Stack, ETH, SW, V4, V6};
use crate::wire::{Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpPair, IpProtocol};

/// A handle to an ICMP echo socket of one [`Stack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EchoHandle(u16);

/// A received echo reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EchoReply {
    /// Who answered.
    pub from: IpAddr,
    /// Identifier.
    pub ident: u16,
    /// Sequence number.
    pub seq_no: u16,
    /// Echo data length.
    pub len: usize,
    /// Receive time (the stack's clock at the poll that read it).
    pub at_ns: u64,
}

pub(crate) struct EchoSock {
    rx_queue_len: usize,
    rx: VecDeque<EchoReply>,
}

impl Stack {
    pub(crate) fn echo_deliver(&mut self, r: EchoReply) {
        self.stats.events.echo_replies_received += 1;
        match self.echo.get_mut(&r.ident) {
            Some(s) if s.rx.len() < s.rx_queue_len => s.rx.push_back(r),
            Some(_) => self.stats.drops.udp_queue_full += 1,
            None => {}
        }
    }
}

/// The ICMP echo socket calls of a [`Stack`] ([`Stack::echo`]): `stack.echo().…`.
pub struct Echo<'a> {
    stack: &'a mut Stack,
}

impl Stack {
    /// The ICMP echo socket calls.
    pub fn echo(&mut self) -> Echo<'_> {
        Echo { stack: self }
    }
}

impl Echo<'_> {
    /// Opens an echo socket: echo replies with identifier `ident` are queued for
    /// [`recv`](Self::recv), at most `rx_queue_len` of them.
    pub fn open(&mut self, ident: u16, rx_queue_len: usize) -> Result<EchoHandle, StackError> {
        if rx_queue_len == 0 {
            return Err(StackError::config("echo.rx_queue_len", "must be at least 1"));
        }
        if self.stack.echo.contains_key(&ident) {
            return Err(StackError::config("echo.ident", format!("identifier {ident} is already open")));
        }
        self.stack.echo.insert(ident, EchoSock { rx_queue_len, rx: VecDeque::new() });
        Ok(EchoHandle(ident))
    }

    /// Closes an echo socket.
    pub fn close(&mut self, h: EchoHandle) {
        self.stack.echo.remove(&h.0);
    }

    /// Moves received echo replies to `out`; returns how many.
    pub fn recv(&mut self, h: EchoHandle, out: &mut Vec<EchoReply>) -> usize {
        match self.stack.echo.get_mut(&h.0) {
            Some(s) => {
                let n = s.rx.len();
                out.extend(s.rx.drain(..));
                n
            }
            None => 0,
        }
    }

    /// Sends an echo request (ICMP or ICMPv6 by the destination's family) with
    /// the socket's identifier.
    pub fn ping(&mut self, h: EchoHandle, dst: IpAddr, seq_no: u16, data: &[u8]) -> Result<(), StackError> {
        let (src, next_hop) = self.stack.route(dst)?;
        let hdr = if dst.is_ipv4() { V4 } else { V6 };
        let need = hdr + 8 + data.len();
        if need > usize::from(self.stack.cfg.mtu) {
            return Err(StackError::TooBig { need, max: usize::from(self.stack.cfg.mtu) });
        }
        let mut m = self.stack.pool.alloc().map_err(|_| StackError::NoBuffers)?;
        if m.headroom() < ETH + hdr || m.tailroom() < 8 + data.len() {
            return Err(StackError::TooBig { need: ETH + need, max: m.capacity() });
        }
        let ip = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(t)) => IpPair::V4 { src: s, dst: t },
            (IpAddr::V6(s), IpAddr::V6(t)) => IpPair::V6 { src: s, dst: t },
            _ => return Err(StackError::NoRoute(dst)),
        };
        let d = m.append(8 + data.len()).expect("checked");
        let protocol = match ip {
            IpPair::V4 { .. } => {
                Icmpv4Repr::EchoRequest { ident: h.0, seq_no, data }.emit(&mut Icmpv4Packet::new_unchecked(d), &SW);
                IpProtocol::Icmp
            }
            IpPair::V6 { src, dst } => {
                Icmpv6Repr::EchoRequest { ident: h.0, seq_no, data }.emit(
                    &mut Icmpv6Packet::new_unchecked(d),
                    &src,
                    &dst,
                    &SW,
                );
                IpProtocol::Icmpv6
            }
        };
        self.stack.stats.events.echo_requests_sent += 1;
        self.stack.stats.events.bytes_copied += data.len() as u64;
        self.stack.emit_ip(m, ip, protocol, TxFlags::empty(), next_hop, None);
        Ok(())
    }
}
