//! One stack instance: an Ethernet interface with IPv4 and IPv6 addresses over
//! one pmd queue pair, owned by one core.
//!
//! ```text
//! poll():  rx_burst -> input() -> timers -> flush (tx_burst, every iteration)
//! input(): Ethernet -> ARP            -> answer / learn
//!                   -> IPv4 [-> reassembly] -> ICMP echo | UDP socket | unreachable
//!                   -> IPv6 (ext headers, options) [-> reassembly] -> ICMPv6 echo / NS / NA | UDP | unreachable
//! ```
//!
//! Design decisions:
//! * **Generic over the queues** (`R: RxQueue, T: TxQueue`, which `Box<dyn ..>`
//!   also implements): monomorphised on the data path, no global state; every
//!   table (neighbours, sockets, reassembly, timers) is a field of the instance.
//! * **Zero copy where the API allows**: an echo request becomes its reply in the
//!   same buffer (addresses swapped, checksum updated incrementally, RFC 1624); an
//!   ARP request becomes its reply in place; a received UDP datagram is handed
//!   to the socket as the very buffer the port filled, its window moved onto the
//!   payload (`adj`/`trim`); a sent datagram gets its headers prepended into the
//!   buffer's headroom. Copies happen only for reassembly, ICMP error quotes and
//!   [`Stack::udp_send_slice`], and are counted (`bytes_copied`).
//! * **Replies go to the sender's MAC**: echo replies, unreachables, NAs and ARP
//!   replies are addressed to the link-layer source of the request, without a
//!   neighbour lookup (as DPDK's icmpecho and most appliances do). Packets the
//!   stack originates (UDP `send_to`, `ping`) are routed and resolved.
//! * **Checksum offloads both ways**: on receive, a NIC's per-packet verdict
//!   (`RxFlags::*_CKSUM_GOOD`/`BAD`, or `L4_CKSUM_PARTIAL`) is trusted, and the
//!   stack verifies in software only when the NIC says nothing; on transmit, the
//!   checksums whose offload is enabled ([`StackConfig::tx_offloads`]) are left to
//!   the NIC (IPv4 header zeroed, UDP field pre-filled with the pseudo-header sum,
//!   `tx_flags`/`l2_len`/`l3_len` set), the others computed here.
//! * **Time is an input**: the stack reads its [`Clock`] once per poll; all timers
//!   (neighbour retries, reassembly timeouts) live on one [`TimerWheel`].
//! * **TCP** sockets are in `iface/tcp.rs` (the socket layer over the sans-IO
//!   [`crate::tcp`] state machines).
//! * Every frame that fails to parse is counted by its [`wire::Error`] and
//!   dropped; every other drop has a named counter ([`crate::stats`]).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use pmd::{Clock, MacAddr, Mbuf, MbufMeta, Mempool, RxFlags, RxQueue, TxFlags, TxOffloads, TxQueue};

use crate::checksum;
use crate::config::{StackConfig, UdpConfig};
use crate::error::StackError;
use crate::neighbor::{Enqueued, NeighborCache, Retry};
use crate::reassembly::{FragV4, FragV6, Fragment, Reasm6Key, ReasmKey, Reassembler, V6Header};
use crate::stats::Stats;
use crate::timer::TimerWheel;

mod tcp;
use crate::wire::ipv6::OptionAction;
use crate::wire::{
    self, ArpOperation, ArpPacket, ArpRepr, ChecksumCaps, ChecksumMode, EtherType, EthernetAddress, EthernetFrame,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpPair, IpProtocol, Ipv4Packet, Ipv4Repr,
    Ipv6Packet, Ipv6Repr, NdpOption, NdpOptions, UdpPacket, UdpRepr,
};
use tcp::TcpTable;
pub use tcp::{TcpHandle, TcpListenerHandle, TcpSocketError};

const ETH: usize = wire::ethernet::HEADER_LEN;
const V4: usize = wire::ipv4::HEADER_LEN;
const V6: usize = wire::ipv6::HEADER_LEN;
const UDP: usize = wire::udp::HEADER_LEN;
/// RFC 1812 §4.3.2.3: an ICMPv4 error carries as much of the datagram as fits in 576 bytes.
const ICMP4_ERR_MAX: usize = 576;
/// RFC 4443 §2.4(c): an ICMPv6 error must not exceed the minimum IPv6 MTU.
const ICMP6_ERR_MAX: usize = 1280;
const SW: ChecksumCaps = ChecksumCaps::software();

/// What a timer on the stack's wheel is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackTimer {
    /// ARP retry for an address.
    Arp(Ipv4Addr),
    /// Neighbour solicitation retry for an address.
    Ndp(Ipv6Addr),
    /// Reassembly timeout of a datagram.
    Reasm(ReasmKey),
    /// Reassembly timeout of an IPv6 packet.
    Reasm6(Reasm6Key),
    /// A TCP connection's deadline (slot index, generation).
    TcpConn(u32, u32),
    /// A TCP listener's deadline (slot index, generation).
    TcpListener(u32, u32),
}

impl From<ReasmKey> for StackTimer {
    fn from(k: ReasmKey) -> Self {
        StackTimer::Reasm(k)
    }
}

impl From<Reasm6Key> for StackTimer {
    fn from(k: Reasm6Key) -> Self {
        StackTimer::Reasm6(k)
    }
}

/// A handle to a UDP socket of one [`Stack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpHandle {
    index: u32,
    generation: u32,
}

/// A handle to an ICMP echo socket of one [`Stack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EchoHandle(u16);

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

struct UdpSock {
    local: SocketAddr,
    cfg: UdpConfig,
    rx: VecDeque<UdpDatagram>,
    generation: u32,
}

struct EchoSock {
    rx_queue_len: usize,
    rx: VecDeque<EchoReply>,
}

/// Token bucket for ICMP errors: `rate` per second, `burst` deep, in units of
/// 1e-9 token so integer arithmetic is exact.
struct TokenBucket {
    rate: u64,
    cap: u64,
    tokens: u64,
    last_ns: u64,
}

impl TokenBucket {
    const ONE: u64 = 1_000_000_000;

    fn new(rate: u32, burst: u32, now_ns: u64) -> Self {
        let cap = u64::from(burst).saturating_mul(Self::ONE);
        TokenBucket { rate: u64::from(rate), cap, tokens: cap, last_ns: now_ns }
    }

    fn take(&mut self, now_ns: u64) -> bool {
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

fn eth(m: MacAddr) -> EthernetAddress {
    EthernetAddress(m.0)
}

fn is_link_local_v6(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// The solicited-node multicast address of `a` (RFC 4291 §2.7.1).
pub fn solicited_node(a: &Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(o[13]), u16::from_be_bytes([o[14], o[15]]))
}

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The per-core IP stack. See the module documentation.
pub struct Stack<R: RxQueue, T: TxQueue> {
    cfg: StackConfig,
    rxq: R,
    txq: T,
    pool: Mempool,
    clock: Arc<dyn Clock>,
    tx_caps: ChecksumCaps,
    now: u64,
    timers: TimerWheel<StackTimer>,
    expired: Vec<StackTimer>,
    arp: NeighborCache<Ipv4Addr>,
    ndp: NeighborCache<Ipv6Addr>,
    reasm: Reassembler<FragV4>,
    reasm6: Reassembler<FragV6>,
    udp: Vec<Option<UdpSock>>,
    udp_generation: Vec<u32>,
    udp_ports: HashMap<(IpAddr, u16), u32>,
    next_ephemeral: u16,
    echo: HashMap<u16, EchoSock>,
    icmp_bucket: TokenBucket,
    rx_buf: Vec<Mbuf>,
    tx_buf: Vec<Mbuf>,
    stats: Stats,
    announced: bool,
    tcp: TcpTable,
}

impl<R: RxQueue, T: TxQueue> Stack<R, T> {
    /// A stack over one queue pair. `pool` provides the buffers the stack
    /// allocates itself (ARP/NDP messages, ICMP errors, reassembly); `clock` is
    /// read once per [`poll`](Self::poll).
    pub fn new(cfg: StackConfig, rxq: R, txq: T, pool: Mempool, clock: Arc<dyn Clock>) -> Result<Self, StackError> {
        cfg.validate()?;
        if cfg.tcp_rx_mbufs > pool.count() / 2 {
            return Err(StackError::config(
                "tcp.rx_mbufs",
                format!(
                    "{} would let received data take more than half of pool {} ({} buffers), \
                     which the port and the senders need",
                    cfg.tcp_rx_mbufs,
                    pool.name(),
                    pool.count()
                ),
            ));
        }
        let now = clock.now_ns();
        let tick = u64::try_from(cfg.timer_tick.as_nanos()).unwrap_or(u64::MAX);
        let mode =
            |f: TxOffloads| if cfg.tx_offloads.contains(f) { ChecksumMode::Offloaded } else { ChecksumMode::Software };
        let tx_caps = ChecksumCaps {
            ipv4: mode(TxOffloads::IPV4_CKSUM),
            udp: mode(TxOffloads::UDP_CKSUM),
            tcp: mode(TxOffloads::TCP_CKSUM),
            icmp: ChecksumMode::Software,
        };
        Ok(Stack {
            timers: TimerWheel::new(tick, now)?,
            expired: Vec::new(),
            arp: NeighborCache::new(cfg.neighbor.clone()),
            ndp: NeighborCache::new(cfg.neighbor.clone()),
            reasm: Reassembler::new(cfg.reassembly.clone()),
            reasm6: Reassembler::new(cfg.reassembly_v6.clone()),
            udp: Vec::new(),
            udp_generation: Vec::new(),
            udp_ports: HashMap::new(),
            next_ephemeral: 49152,
            echo: HashMap::new(),
            icmp_bucket: TokenBucket::new(cfg.icmp.error_rate_per_sec, cfg.icmp.error_burst, now),
            rx_buf: Vec::with_capacity(cfg.burst),
            tx_buf: Vec::with_capacity(cfg.tx_backlog),
            stats: Stats::default(),
            announced: false,
            tcp: TcpTable::new(os_secret(), cfg.tcp_max_connections),
            tx_caps,
            now,
            cfg,
            rxq,
            txq,
            pool,
            clock,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &StackConfig {
        &self.cfg
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The stack's notion of now (the clock at the last poll).
    pub fn now_ns(&self) -> u64 {
        self.now
    }

    /// Timers armed on the wheel (neighbour retries, reassembly timeouts).
    pub fn timers_armed(&self) -> usize {
        self.timers.len()
    }

    /// The resolved MAC of an on-link neighbour, if cached.
    pub fn neighbor(&self, ip: IpAddr) -> Option<MacAddr> {
        match ip {
            IpAddr::V4(a) => self.arp.lookup(&a, self.now),
            IpAddr::V6(a) => self.ndp.lookup(&a, self.now),
        }
    }

    /// Packets waiting for address resolution.
    pub fn pending_resolution(&self) -> usize {
        self.arp.pending() + self.ndp.pending()
    }

    /// Datagrams being reassembled and the buffer bytes they hold (IPv4 and IPv6 together).
    pub fn reassembly_in_progress(&self) -> (usize, usize) {
        (self.reasm.in_progress() + self.reasm6.in_progress(), self.reasm.bytes_held() + self.reasm6.bytes_held())
    }

    /// Frames waiting in the transmit backlog.
    pub fn tx_backlog(&self) -> usize {
        self.tx_buf.len()
    }

    /// One poll-loop iteration: announce (first call), receive a burst and
    /// process it, run due timers, flush transmit. Returns frames received.
    pub fn poll(&mut self) -> usize {
        self.now = self.now.max(self.clock.now_ns());
        if !self.announced {
            self.announce();
        }
        let mut rx = std::mem::take(&mut self.rx_buf);
        let n = self.rxq.rx_burst(&mut rx, self.cfg.burst);
        for m in rx.drain(..) {
            self.input_frame(m);
        }
        self.rx_buf = rx;
        // One clock read per poll: on a VM without a stable TSC a read costs
        // hundreds of nanoseconds.
        self.expire_timers();
        self.flush();
        n
    }

    /// Processes frames as if received (the poll loop's input, public for
    /// tests and fuzzing): every frame is consumed.
    pub fn input(&mut self, frames: &mut Vec<Mbuf>) {
        for m in frames.drain(..) {
            self.input_frame(m);
        }
    }

    /// Runs timers due at the clock's current time.
    pub fn run_timers(&mut self) {
        self.now = self.now.max(self.clock.now_ns());
        self.expire_timers();
    }

    /// Runs timers due at `self.now`.
    fn expire_timers(&mut self) {
        let mut expired = std::mem::take(&mut self.expired);
        self.timers.advance(self.now, &mut expired);
        for t in expired.drain(..) {
            match t {
                StackTimer::Arp(ip) => match self.arp.on_timer(&ip) {
                    Retry::Again => {
                        self.send_arp_request(ip);
                        self.arm_neighbor_timer(IpAddr::V4(ip));
                    }
                    Retry::GiveUp(q) => {
                        self.stats.drops.neighbor_unresolved += q.len() as u64;
                        self.tcp_neighbor_failed(IpAddr::V4(ip));
                    }
                    Retry::Nothing => {}
                },
                StackTimer::Ndp(ip) => match self.ndp.on_timer(&ip) {
                    Retry::Again => {
                        self.send_ns(ip);
                        self.arm_neighbor_timer(IpAddr::V6(ip));
                    }
                    Retry::GiveUp(q) => {
                        self.stats.drops.neighbor_unresolved += q.len() as u64;
                        self.tcp_neighbor_failed(IpAddr::V6(ip));
                    }
                    Retry::Nothing => {}
                },
                StackTimer::Reasm(k) => self.reasm.on_timeout(&k, &mut self.stats.drops),
                StackTimer::Reasm6(k) => self.reasm6.on_timeout(&k, &mut self.stats.drops),
                StackTimer::TcpConn(i, g) => self.tcp_conn_timer(i, g),
                StackTimer::TcpListener(i, g) => self.tcp_listener_timer(i, g),
            }
        }
        self.expired = expired;
    }

    /// Produces the pending TCP segments (ACKs, data, retransmissions) and
    /// hands the transmit backlog to the queue. Called every poll even when
    /// empty (decorators release delayed frames there).
    pub fn flush(&mut self) {
        self.tcp_output();
        self.txq.tx_burst(&mut self.tx_buf);
    }

    /// Sends the gratuitous ARP / unsolicited NA announcements now (the first
    /// [`poll`](Self::poll) does it by itself).
    pub fn announce(&mut self) {
        self.announced = true;
        for i in 0..self.cfg.ipv4.len() {
            let a = self.cfg.ipv4[i].address();
            // RFC 5227 §3: an ARP announcement is a request with SPA = TPA = ours.
            let r = ArpRepr {
                operation: ArpOperation::Request,
                source_hardware_addr: eth(self.cfg.mac),
                source_protocol_addr: a,
                target_hardware_addr: EthernetAddress::UNSPECIFIED,
                target_protocol_addr: a,
            };
            if self.send_arp(&r, MacAddr::BROADCAST) {
                self.stats.events.arp_announcements_sent += 1;
            }
        }
        for i in 0..self.cfg.ipv6.len() {
            let a = self.cfg.ipv6[i].address();
            // RFC 4861 §7.2.6: unsolicited NA to all-nodes, override set.
            if self.send_na(a, ALL_NODES, pmd_mac_v6_multicast(&ALL_NODES), false) {
                self.stats.events.ndp_announcements_sent += 1;
            }
        }
    }

    // ---------------------------------------------------------------- receive

    fn input_frame(&mut self, mut m: Mbuf) {
        self.stats.events.rx_frames += 1;
        let parsed = EthernetRepr::parse(&EthernetFrame::new_unchecked(m.data()));
        let e = match parsed {
            Ok(e) => e,
            Err(err) => return self.stats.malformed(err),
        };
        if e.dst_addr.is_unicast() && e.dst_addr != eth(self.cfg.mac) {
            self.stats.drops.not_for_us += 1;
            return;
        }
        if e.vlan_count() > 0 {
            self.stats.drops.vlan_tagged += 1;
            return;
        }
        let src_mac = MacAddr(e.src_addr.0);
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

    fn is_our_v4(&self, a: &Ipv4Addr) -> bool {
        self.cfg.ipv4.iter().any(|c| c.address() == *a)
    }

    fn is_our_v6(&self, a: &Ipv6Addr) -> bool {
        self.cfg.ipv6.iter().any(|c| c.address() == *a)
    }

    fn is_broadcast_v4(&self, a: &Ipv4Addr) -> bool {
        a.is_broadcast() || self.cfg.ipv4.iter().any(|c| c.broadcast() == Some(*a))
    }

    fn arp_input(&mut self, mut m: Mbuf, hl: usize) {
        let parsed = ArpPacket::new_checked(&m.data()[hl..]).and_then(|p| ArpRepr::parse(&p));
        let r = match parsed {
            Ok(r) => r,
            Err(err) => return self.stats.malformed(err),
        };
        let (spa, tpa) = (r.source_protocol_addr, r.target_protocol_addr);
        let sha = MacAddr(r.source_hardware_addr.0);
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
            source_hardware_addr: eth(self.cfg.mac),
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
        EthernetRepr::new(eth(self.cfg.mac), reply.target_hardware_addr, EtherType::Arp)
            .emit(&mut EthernetFrame::new_unchecked(&mut d[..ETH]));
        reply.emit(&mut ArpPacket::new_unchecked(&mut d[ETH..]));
        m.clear_meta();
        self.stats.events.arp_replies_sent += 1;
        self.transmit(m);
    }

    /// Records a neighbour's MAC and sends what waited for it.
    fn learn(&mut self, ip: IpAddr, mac: MacAddr, create: bool) {
        if !mac_is_unicast(mac) {
            return;
        }
        let got = match ip {
            IpAddr::V4(a) => self.arp.resolved(a, mac, self.now, create),
            IpAddr::V6(a) => self.ndp.resolved(a, mac, self.now, create),
        };
        let Some((pending, timer)) = got else { return };
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

    fn rx_caps(&self, m: &Mbuf) -> Result<ChecksumCaps, ()> {
        let f = m.rx_flags();
        if f.contains(RxFlags::IP_CKSUM_BAD) || f.contains(RxFlags::L4_CKSUM_BAD) {
            return Err(());
        }
        let l4 = if f.intersects(RxFlags::L4_CKSUM_GOOD | RxFlags::L4_CKSUM_PARTIAL) {
            ChecksumMode::Offloaded
        } else {
            ChecksumMode::Software
        };
        Ok(ChecksumCaps {
            ipv4: if f.contains(RxFlags::IP_CKSUM_GOOD) { ChecksumMode::Offloaded } else { ChecksumMode::Software },
            udp: l4,
            tcp: l4,
            icmp: ChecksumMode::Software,
        })
    }

    fn ipv4_input(&mut self, mut m: Mbuf, src_mac: MacAddr) {
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
                // Reassembled in software: verify the L4 checksum in software too.
                self.ipv4_deliver(full, r, V4, src_mac, bcast, SW);
            }
            return;
        }
        self.ipv4_deliver(m, repr, hlen, src_mac, bcast, caps);
    }

    fn ipv4_deliver(
        &mut self,
        m: Mbuf,
        repr: Ipv4Repr,
        hlen: usize,
        src_mac: MacAddr,
        bcast: bool,
        caps: ChecksumCaps,
    ) {
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

    fn icmpv4_input(&mut self, mut m: Mbuf, repr: Ipv4Repr, hlen: usize, src_mac: MacAddr, bcast: bool) {
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
        {
            let d = m.data_mut();
            let old = u16::from_be_bytes([d[2], d[3]]);
            // The code is echoed as it came (see `Icmpv4Repr::parse`).
            let code = u16::from(d[1]);
            d[0] = wire::icmpv4::msg_type::ECHO_REPLY;
            let c = checksum::update_u16(old, u16::from(wire::icmpv4::msg_type::ECHO_REQUEST) << 8 | code, code);
            d[2..4].copy_from_slice(&c.to_be_bytes());
        }
        let icmp_len = m.len();
        let out = Ipv4Repr::new(repr.dst_addr, repr.src_addr, IpProtocol::Icmp, icmp_len, self.cfg.ttl);
        self.stats.events.echo_replies_sent += 1;
        self.emit_v4_and_send_to(m, &out, src_mac, TxFlags::empty());
    }

    fn udp_input(&mut self, mut m: Mbuf, ip: IpPair, l4: usize, src_mac: MacAddr, bcast: bool, caps: ChecksumCaps) {
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

    /// `reassembled`: `m` was rebuilt from fragments (it is not reassembled
    /// again: a fragment inside it is dropped).
    fn ipv6_input(&mut self, mut m: Mbuf, src_mac: MacAddr, reassembled: bool) {
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
    fn ipv6_fragment_input(
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
            // A fresh buffer has no receive flags: checksums are verified in software.
            self.ipv6_input(full, src_mac, true);
        }
    }

    fn icmpv6_input(&mut self, mut m: Mbuf, repr: Ipv6Repr, l4: usize, src_mac: MacAddr, mcast: bool) {
        enum Act {
            Echo,
            Reply(u16, u16, usize),
            Ns(Ipv6Addr, Option<EthernetAddress>),
            Na(Ipv6Addr, Option<EthernetAddress>, bool),
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
                {
                    let d = m.data_mut();
                    let old = u16::from_be_bytes([d[2], d[3]]);
                    let code = u16::from(d[1]);
                    d[0] = wire::icmpv6::msg_type::ECHO_REPLY;
                    let c = checksum::update_u16(old, 128 << 8 | code, 129 << 8 | code);
                    d[2..4].copy_from_slice(&c.to_be_bytes());
                }
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
                    if self.send_na(target, ALL_NODES, pmd_mac_v6_multicast(&ALL_NODES), false) {
                        self.stats.events.ndp_adverts_sent += 1;
                    }
                    return;
                }
                if !mcast && dst != target {
                    self.stats.drops.not_for_us += 1;
                    return;
                }
                if let Some(a) = sll {
                    self.learn(IpAddr::V6(src), MacAddr(a.0), true);
                }
                let to_mac = sll.map(|a| MacAddr(a.0)).unwrap_or(src_mac);
                if self.send_na(target, src, to_mac, true) {
                    self.stats.events.ndp_adverts_sent += 1;
                }
            }
            Act::Na(target, tll, solicited) => {
                if solicited && dst.is_multicast() {
                    return self.stats.malformed(wire::Error::BadField);
                }
                if let Some(a) = tll {
                    self.learn(IpAddr::V6(target), MacAddr(a.0), false);
                }
            }
        }
    }

    fn echo_deliver(&mut self, r: EchoReply) {
        self.stats.events.echo_replies_received += 1;
        match self.echo.get_mut(&r.ident) {
            Some(s) if s.rx.len() < s.rx_queue_len => s.rx.push_back(r),
            Some(_) => self.stats.drops.udp_queue_full += 1,
            None => {}
        }
    }

    // ---------------------------------------------------------------- transmit

    fn transmit(&mut self, m: Mbuf) {
        if self.tx_buf.len() >= self.cfg.tx_backlog {
            self.stats.drops.tx_backlog_full += 1;
            return;
        }
        self.stats.events.tx_frames += 1;
        self.tx_buf.push(m);
    }

    /// Sets the transmit offload metadata for an IP packet at `l2` bytes in.
    fn tx_meta(&self, m: &mut Mbuf, v6: bool, l3_len: usize, l4: TxFlags) {
        let mut f = if v6 { TxFlags::IPV6 } else { TxFlags::IPV4 };
        if !v6 && self.tx_caps.ipv4 == ChecksumMode::Offloaded {
            f |= TxFlags::IP_CKSUM;
        }
        f |= l4;
        m.set_meta(MbufMeta { tx_flags: f, l2_len: ETH as u8, l3_len: l3_len as u16, ..MbufMeta::default() });
    }

    /// Prepends an IPv4 header (and Ethernet to `dst_mac`) and queues the frame.
    fn emit_v4_and_send_to(&mut self, mut m: Mbuf, r: &Ipv4Repr, dst_mac: MacAddr, l4: TxFlags) {
        let Some(h) = m.prepend(V4) else {
            self.stats.drops.no_buffers += 1;
            return;
        };
        r.emit(&mut Ipv4Packet::new_unchecked(h), &self.tx_caps);
        self.tx_meta(&mut m, false, V4, l4);
        self.eth_and_send(m, EtherType::Ipv4, dst_mac);
    }

    fn emit_v6_and_send_to(&mut self, mut m: Mbuf, r: &Ipv6Repr, dst_mac: MacAddr, l4: TxFlags) {
        let Some(h) = m.prepend(V6) else {
            self.stats.drops.no_buffers += 1;
            return;
        };
        r.emit(&mut Ipv6Packet::new_unchecked(h));
        self.tx_meta(&mut m, true, V6, l4);
        self.eth_and_send(m, EtherType::Ipv6, dst_mac);
    }

    fn eth_and_send(&mut self, mut m: Mbuf, t: EtherType, dst_mac: MacAddr) {
        let Some(h) = m.prepend(ETH) else {
            self.stats.drops.no_buffers += 1;
            return;
        };
        EthernetRepr::new(eth(self.cfg.mac), eth(dst_mac), t).emit(&mut EthernetFrame::new_unchecked(h));
        self.transmit(m);
    }

    fn alloc(&mut self) -> Option<Mbuf> {
        match self.pool.alloc() {
            Ok(m) => Some(m),
            Err(_) => {
                self.stats.drops.no_buffers += 1;
                None
            }
        }
    }

    fn send_arp(&mut self, r: &ArpRepr, dst_mac: MacAddr) -> bool {
        let Some(mut m) = self.alloc() else { return false };
        let Some(d) = m.append(ETH + wire::arp::PACKET_LEN) else {
            self.stats.drops.no_buffers += 1;
            return false;
        };
        EthernetRepr::new(eth(self.cfg.mac), eth(dst_mac), EtherType::Arp)
            .emit(&mut EthernetFrame::new_unchecked(&mut d[..ETH]));
        r.emit(&mut ArpPacket::new_unchecked(&mut d[ETH..]));
        self.transmit(m);
        true
    }

    fn src_v4_for(&self, dst: &Ipv4Addr) -> Option<Ipv4Addr> {
        self.cfg
            .ipv4
            .iter()
            .filter(|c| c.contains(dst))
            .max_by_key(|c| c.prefix_len())
            .or(self.cfg.ipv4.first())
            .map(|c| c.address())
    }

    fn src_v6_for(&self, dst: &Ipv6Addr) -> Option<Ipv6Addr> {
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

    fn send_arp_request(&mut self, target: Ipv4Addr) {
        let Some(src) = self.src_v4_for(&target) else { return };
        let r = ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: eth(self.cfg.mac),
            source_protocol_addr: src,
            target_hardware_addr: EthernetAddress::UNSPECIFIED,
            target_protocol_addr: target,
        };
        if self.send_arp(&r, MacAddr::BROADCAST) {
            self.stats.events.arp_requests_sent += 1;
        }
    }

    fn send_icmpv6(
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

    fn send_na(&mut self, target: Ipv6Addr, dst: Ipv6Addr, dst_mac: MacAddr, solicited: bool) -> bool {
        let opts = [NdpOption::TargetLinkLayerAddr(eth(self.cfg.mac))];
        let msg = Icmpv6Repr::NeighborAdvert {
            router: false,
            solicited,
            override_: true,
            target,
            options: NdpOptions::List(&opts),
        };
        self.send_icmpv6(target, dst, dst_mac, 255, &msg)
    }

    fn send_ns(&mut self, target: Ipv6Addr) {
        let Some(src) = self.src_v6_for(&target) else { return };
        let opts = [NdpOption::SourceLinkLayerAddr(eth(self.cfg.mac))];
        let msg = Icmpv6Repr::NeighborSolicit { target, options: NdpOptions::List(&opts) };
        let dst = solicited_node(&target);
        if self.send_icmpv6(src, dst, pmd_mac_v6_multicast(&dst), 255, &msg) {
            self.stats.events.ndp_solicits_sent += 1;
        }
    }

    fn arm_neighbor_timer(&mut self, ip: IpAddr) {
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

    /// ICMP / ICMPv6 destination unreachable (port) for `orig` (the IP packet),
    /// rate limited.
    fn send_unreachable(&mut self, orig: &Mbuf, ip: IpPair, src_mac: MacAddr) {
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
    fn send_param_problem(
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

    /// Sends an IP packet (`m` holds it from the IP header on, with at least
    /// 14 bytes of headroom) to `next_hop`, resolving its MAC if needed.
    /// The resolved MAC of a unicast next hop (`None` for broadcast,
    /// multicast and unresolved ones, which [`output`](Self::output) handles).
    fn neighbor_unicast(&self, next_hop: IpAddr) -> Option<MacAddr> {
        match next_hop {
            IpAddr::V4(a) if !self.is_broadcast_v4(&a) && !a.is_multicast() => self.arp.lookup(&a, self.now),
            IpAddr::V6(a) if !a.is_multicast() => self.ndp.lookup(&a, self.now),
            _ => None,
        }
    }

    fn output(&mut self, mut m: Mbuf, next_hop: IpAddr) {
        let (t, mac) = match next_hop {
            IpAddr::V4(a) => {
                let mac = if self.is_broadcast_v4(&a) {
                    Some(MacAddr::BROADCAST)
                } else if a.is_multicast() {
                    Some(MacAddr(EthernetAddress::ipv4_multicast(&a).0))
                } else {
                    self.arp.lookup(&a, self.now)
                };
                (EtherType::Ipv4, mac)
            }
            IpAddr::V6(a) => {
                let mac = if a.is_multicast() { Some(pmd_mac_v6_multicast(&a)) } else { self.ndp.lookup(&a, self.now) };
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
        EthernetRepr::new(eth(self.cfg.mac), EthernetAddress::UNSPECIFIED, t)
            .emit(&mut EthernetFrame::new_unchecked(h));
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
                match next_hop {
                    IpAddr::V4(a) => self.send_arp_request(a),
                    IpAddr::V6(a) => self.send_ns(a),
                }
                self.arm_neighbor_timer(next_hop);
            }
            Enqueued::PendingFull(_) => self.stats.drops.neighbor_pending_full += 1,
            Enqueued::CacheFull(_) => self.stats.drops.neighbor_cache_full += 1,
        }
    }

    // ------------------------------------------------------------------- ICMP echo

    /// Opens an echo socket: echo replies with identifier `ident` are queued for
    /// [`echo_recv`](Self::echo_recv), at most `rx_queue_len` of them.
    pub fn echo_open(&mut self, ident: u16, rx_queue_len: usize) -> Result<EchoHandle, StackError> {
        if rx_queue_len == 0 {
            return Err(StackError::config("echo.rx_queue_len", "must be at least 1"));
        }
        if self.echo.contains_key(&ident) {
            return Err(StackError::config("echo.ident", format!("identifier {ident} is already open")));
        }
        self.echo.insert(ident, EchoSock { rx_queue_len, rx: VecDeque::new() });
        Ok(EchoHandle(ident))
    }

    /// Closes an echo socket.
    pub fn echo_close(&mut self, h: EchoHandle) {
        self.echo.remove(&h.0);
    }

    /// Moves received echo replies to `out`; returns how many.
    pub fn echo_recv(&mut self, h: EchoHandle, out: &mut Vec<EchoReply>) -> usize {
        match self.echo.get_mut(&h.0) {
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
        let (src, next_hop) = self.route(dst)?;
        let hdr = if dst.is_ipv4() { V4 } else { V6 };
        let need = hdr + 8 + data.len();
        if need > usize::from(self.cfg.mtu) {
            return Err(StackError::TooBig { need, max: usize::from(self.cfg.mtu) });
        }
        let mut m = self.pool.alloc().map_err(|_| StackError::NoBuffers)?;
        if m.headroom() < ETH + hdr || m.tailroom() < 8 + data.len() {
            return Err(StackError::TooBig { need: ETH + need, max: m.capacity() });
        }
        let d = m.append(8 + data.len()).expect("checked");
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(t)) => {
                Icmpv4Repr::EchoRequest { ident: h.0, seq_no, data }.emit(&mut Icmpv4Packet::new_unchecked(d), &SW);
                let r = Ipv4Repr::new(s, t, IpProtocol::Icmp, 8 + data.len(), self.cfg.ttl);
                r.emit(&mut Ipv4Packet::new_unchecked(m.prepend(V4).expect("checked")), &self.tx_caps);
                self.tx_meta(&mut m, false, V4, TxFlags::empty());
            }
            (IpAddr::V6(s), IpAddr::V6(t)) => {
                Icmpv6Repr::EchoRequest { ident: h.0, seq_no, data }.emit(
                    &mut Icmpv6Packet::new_unchecked(d),
                    &s,
                    &t,
                    &SW,
                );
                let r = Ipv6Repr::new(s, t, IpProtocol::Icmpv6, 8 + data.len(), self.cfg.ttl);
                r.emit(&mut Ipv6Packet::new_unchecked(m.prepend(V6).expect("checked")));
                self.tx_meta(&mut m, true, V6, TxFlags::empty());
            }
            _ => return Err(StackError::NoRoute(dst)),
        }
        self.stats.events.echo_requests_sent += 1;
        self.stats.events.bytes_copied += data.len() as u64;
        self.output(m, next_hop);
        Ok(())
    }

    // ------------------------------------------------------------------- UDP

    /// Binds a UDP socket to `local` (an address of this interface, or the
    /// unspecified address of a family for all of its addresses; port 0 picks
    /// an ephemeral port from 49152..=65535).
    pub fn udp_bind(&mut self, local: SocketAddr, cfg: UdpConfig) -> Result<UdpHandle, StackError> {
        cfg.validate()?;
        let ip = local.ip();
        let ok = ip.is_unspecified()
            || match ip {
                IpAddr::V4(a) => self.is_our_v4(&a),
                IpAddr::V6(a) => self.is_our_v6(&a),
            };
        if !ok {
            return Err(StackError::AddrNotAvailable(local));
        }
        let mut local = local;
        if local.port() == 0 {
            let mut found = None;
            for _ in 0..16384 {
                let p = self.next_ephemeral;
                self.next_ephemeral = if p == 65535 { 49152 } else { p + 1 };
                if !self.udp_ports.contains_key(&(ip, p)) {
                    found = Some(p);
                    break;
                }
            }
            local.set_port(found.ok_or(StackError::AddrInUse(local))?);
        }
        if self.udp_ports.contains_key(&(ip, local.port())) {
            return Err(StackError::AddrInUse(local));
        }
        let index = match self.udp.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.udp.push(None);
                self.udp_generation.push(0);
                self.udp.len() - 1
            }
        };
        let generation = self.udp_generation[index];
        self.udp[index] = Some(UdpSock { local, cfg, rx: VecDeque::new(), generation });
        self.udp_ports.insert((ip, local.port()), index as u32);
        Ok(UdpHandle { index: index as u32, generation })
    }

    fn sock(&self, h: UdpHandle) -> Result<&UdpSock, StackError> {
        match self.udp.get(h.index as usize) {
            Some(Some(s)) if s.generation == h.generation => Ok(s),
            _ => Err(StackError::BadSocket),
        }
    }

    /// The address a socket is bound to.
    pub fn udp_local_addr(&self, h: UdpHandle) -> Result<SocketAddr, StackError> {
        self.sock(h).map(|s| s.local)
    }

    /// Closes a socket; queued datagrams are freed.
    pub fn udp_close(&mut self, h: UdpHandle) -> Result<(), StackError> {
        let local = self.sock(h)?.local;
        self.udp_ports.remove(&(local.ip(), local.port()));
        self.udp[h.index as usize] = None;
        self.udp_generation[h.index as usize] = h.generation.wrapping_add(1);
        Ok(())
    }

    /// Moves up to `max` received datagrams to `out` (zero copy: each holds the
    /// receiving buffer); returns how many.
    pub fn udp_recv(&mut self, h: UdpHandle, out: &mut Vec<UdpDatagram>, max: usize) -> Result<usize, StackError> {
        self.sock(h)?;
        let s = self.udp[h.index as usize].as_mut().expect("checked");
        let n = max.min(s.rx.len());
        out.extend(s.rx.drain(..n));
        Ok(n)
    }

    /// Datagrams waiting in a socket's receive queue.
    pub fn udp_queued(&self, h: UdpHandle) -> Result<usize, StackError> {
        self.sock(h).map(|s| s.rx.len())
    }

    /// Sends `payload` (the buffer's data is the UDP payload) to `dst`: the
    /// headers are prepended into the buffer's headroom, no copy. The buffer
    /// is consumed whether or not this succeeds.
    pub fn udp_send_to(&mut self, h: UdpHandle, mut payload: Mbuf, dst: SocketAddr) -> Result<(), StackError> {
        let local = self.sock(h)?.local;
        if local.is_ipv4() != dst.is_ipv4() {
            return Err(StackError::FamilyMismatch(dst));
        }
        let (src, next_hop) = match self.route(dst.ip()) {
            Ok(r) => r,
            Err(e) => {
                self.stats.drops.no_route += 1;
                return Err(e);
            }
        };
        let src = if local.ip().is_unspecified() { src } else { local.ip() };
        let hdr = if dst.is_ipv4() { V4 } else { V6 };
        let need = hdr + UDP + payload.len();
        if need > usize::from(self.cfg.mtu) {
            self.stats.drops.over_mtu += 1;
            return Err(StackError::TooBig { need, max: usize::from(self.cfg.mtu) });
        }
        if payload.headroom() < ETH + hdr + UDP {
            self.stats.drops.no_buffers += 1;
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
            &self.tx_caps,
        );
        let l4 = if self.tx_caps.udp == ChecksumMode::Offloaded { TxFlags::UDP_CKSUM } else { TxFlags::empty() };
        match ip {
            IpPair::V4 { src, dst } => {
                let r = Ipv4Repr::new(src, dst, IpProtocol::Udp, UDP + plen, self.cfg.ttl);
                r.emit(&mut Ipv4Packet::new_unchecked(payload.prepend(V4).expect("checked")), &self.tx_caps);
                self.tx_meta(&mut payload, false, V4, l4);
            }
            IpPair::V6 { src, dst } => {
                let r = Ipv6Repr::new(src, dst, IpProtocol::Udp, UDP + plen, self.cfg.ttl);
                r.emit(&mut Ipv6Packet::new_unchecked(payload.prepend(V6).expect("checked")));
                self.tx_meta(&mut payload, true, V6, l4);
            }
        }
        self.stats.events.udp_sent += 1;
        self.output(payload, next_hop);
        Ok(())
    }

    /// Sends a batch of (payload, destination); every buffer is consumed.
    /// Returns how many were accepted; failures are counted in the stats.
    pub fn udp_send_batch(&mut self, h: UdpHandle, batch: &mut Vec<(Mbuf, SocketAddr)>) -> Result<usize, StackError> {
        self.sock(h)?;
        let mut ok = 0;
        for (m, dst) in batch.drain(..) {
            if self.udp_send_to(h, m, dst).is_ok() {
                ok += 1;
            }
        }
        Ok(ok)
    }

    /// Sends a copy of `data` (counted in `bytes_copied`) to `dst`.
    pub fn udp_send_slice(&mut self, h: UdpHandle, data: &[u8], dst: SocketAddr) -> Result<(), StackError> {
        self.sock(h)?;
        let mut m = self.pool.alloc().map_err(|_| StackError::NoBuffers)?;
        m.extend_from_slice(data).ok_or(StackError::TooBig { need: data.len(), max: m.tailroom() })?;
        self.stats.events.bytes_copied += data.len() as u64;
        self.udp_send_to(h, m, dst)
    }

    /// The pool the stack allocates from (for applications building payloads).
    pub fn pool(&self) -> &Mempool {
        &self.pool
    }
}

/// 128 bits from the OS's randomness (via the std hasher's per-process keys),
/// for the TCP secret of a stack nobody gave one.
fn os_secret() -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, half) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

fn mac_is_unicast(m: MacAddr) -> bool {
    !m.is_multicast() && m.0 != [0; 6]
}

fn pmd_mac_v6_multicast(a: &Ipv6Addr) -> MacAddr {
    MacAddr(EthernetAddress::ipv6_multicast(a).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4291_2_7_1_solicited_node_address() {
        let a: Ipv6Addr = "2001:2::abcd:1234:5678".parse().unwrap();
        assert_eq!(solicited_node(&a), "ff02::1:ff34:5678".parse::<Ipv6Addr>().unwrap());
    }

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
