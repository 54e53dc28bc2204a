//! One stack instance: an Ethernet interface with IPv4 and IPv6 addresses,
//! owned by one core, **sans-IO**: it is given received frames and the time and
//! gives back frames to send. It never calls a queue or reads a clock itself;
//! [`Driver`](crate::driver::Driver) does that for one pmd queue pair.
//!
//! ```text
//! Stack::input(now, frames): Ethernet -> ARP                  -> answer / learn         (ethernet.rs)
//!                                     -> IPv4 [-> reassembly] -> ICMP echo | UDP | TCP  (ipv4.rs)
//!                                     -> IPv6 (ext headers, options) [-> reassembly]
//!                                             -> ICMPv6 echo / NS / NA | UDP | TCP      (ipv6.rs)
//! Stack::poll_timers(now):   neighbour retries, reassembly timeouts, TCP deadlines
//! Stack::output(now):        TCP output pass, then the transmit backlog for the queue
//! ```
//!
//! Where things are (one room per protocol, as smoltcp's `iface/interface/`):
//!
//! | file | what |
//! |---|---|
//! | `iface/mod.rs` | the [`Stack`] struct, its construction, the sans-IO entry points, the timer dispatch |
//! | `iface/ethernet.rs` | Ethernet demux, **ARP** (reply in place, learning, requests, announcements), frame transmit and offload metadata |
//! | `iface/ipv4.rs` | IPv4 input, reassembly hand-off, ICMP echo reply in place, IPv4 emit |
//! | `iface/ipv6.rs` | IPv6 input (extension headers, option actions, fragments), ICMPv6 echo, **NDP** (NS/NA) |
//! | `iface/icmp.rs` | ICMP errors (port unreachable, parameter problem) and their token-bucket rate limit |
//! | `iface/route.rs` | routes and source address selection, the shared IP emit path, neighbour output (resolve or queue) |
//! | [`crate::socket`] | the sockets: [`udp`](crate::socket::udp), [`echo`](crate::socket::echo) (ping), [`tcp`](crate::socket::tcp) (listen backlog, accept queue, connections table) |
//!
//! Design decisions:
//! * **Sans-IO, one entry** ([`input`](Stack::input), [`poll_timers`](Stack::poll_timers),
//!   [`output`](Stack::output), as DESIGN.md's per-core loop draws it; the shape of
//!   smoltcp's `Interface::poll(timestamp, ..)` and quinn-proto's
//!   `handle`/`poll_transmit`/`poll_timeout`): the poll loop, the tests, the fuzz
//!   target and a software RSS dispatcher all feed frames through the same calls.
//!   The stack has no queue generics; every table (neighbours, sockets,
//!   reassembly, timers) is a field of the instance, no global state.
//! * **The buffer type is [`pmd::Mbuf`]**: zero copy from the NIC is the
//!   product. A frame the port received is parsed in place, and a UDP payload or
//!   a TCP segment is handed to its socket as that same buffer (its window moved
//!   onto the payload); replies are built in the request's buffer, headers are
//!   prepended into headroom, and offload metadata (`tx_flags`, `l2_len`,
//!   `l3_len`) and receive verdicts (`rx_flags`) travel with it. A generic or
//!   byte-slice buffer would force a copy at one of the two ends, or a trait
//!   object per packet; a frame from elsewhere (a test, the fuzzer, another
//!   core) is put in an `Mbuf` from a pool first.
//! * **No extra per-packet cost**: [`input`](Stack::input) drains the caller's
//!   vector (kept and reused by the driver); [`output`](Stack::output) lends the
//!   stack's own transmit backlog, from which the queue takes what it sends and
//!   leaves the rest (still counted against `tx_backlog`). No allocation, no
//!   copy, no vector per burst.
//! * **Zero copy where the API allows**: an echo request becomes its reply in the
//!   same buffer (addresses swapped, checksum updated incrementally, RFC 1624); an
//!   ARP request becomes its reply in place; a sent datagram gets its headers
//!   prepended into the buffer's headroom. Copies happen only for reassembly, ICMP
//!   error quotes and `udp().send_slice`, and are counted (`bytes_copied`).
//! * **Replies go to the sender's MAC**: echo replies, unreachables, NAs and ARP
//!   replies are addressed to the link-layer source of the request, without a
//!   neighbour lookup (as DPDK's icmpecho and most appliances do). Packets the
//!   stack originates (UDP `send_to`, `ping`, TCP) are routed and resolved, all
//!   through one IP emit path (`Stack::emit_ip`).
//! * **Checksum offloads both ways**: on receive, a NIC's per-packet verdict
//!   (`RxFlags::*_CKSUM_GOOD`/`BAD`, or `L4_CKSUM_PARTIAL`) is trusted, and the
//!   stack verifies in software only when the NIC says nothing; on transmit, the
//!   checksums whose offload is enabled ([`StackConfig::tx_offloads`]) are left to
//!   the NIC (IPv4 header zeroed, UDP field pre-filled with the pseudo-header sum,
//!   `tx_flags`/`l2_len`/`l3_len` set), the others computed here.
//! * **Time is an input**: every entry point takes `now` (nanoseconds, a
//!   monotonic clock; an earlier value than the last one is ignored); all timers
//!   (neighbour retries, reassembly timeouts, TCP) live on one [`TimerWheel`].
//! * Every frame that fails to parse is counted by its [`wire::Error`] and
//!   dropped; every other drop has a named counter ([`crate::stats`]).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pmd::{MacAddr, Mbuf, Mempool, RxFlags, TxOffloads};

use crate::config::StackConfig;
use crate::cores::{CoreDest, CoreMsg, Steering};
use crate::error::ConfigError;
use crate::neighbor::NeighborCache;
use crate::reassembly::{FragV4, FragV6, Reasm6Key, ReasmKey, Reassembler};
use crate::socket::echo::EchoSock;
use crate::socket::tcp::TcpTable;
use crate::socket::udp::UdpSock;
use crate::stats::Stats;
use crate::timer::TimerWheel;
use crate::wire::{self, ChecksumCaps, ChecksumMode};

pub mod decap;
mod ethernet;
mod icmp;
mod ipv4;
mod ipv6;
mod route;

pub use ipv6::solicited_node;

pub(crate) const ETH: usize = wire::ethernet::HEADER_LEN;
pub(crate) const V4: usize = wire::ipv4::HEADER_LEN;
pub(crate) const V6: usize = wire::ipv6::HEADER_LEN;
pub(crate) const UDP: usize = wire::udp::HEADER_LEN;
/// Checksums computed in software (ICMP, reassembled packets).
pub(crate) const SW: ChecksumCaps = ChecksumCaps::software();

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

/// The per-core IP stack (sans-IO). See the module documentation.
pub struct Stack {
    pub(crate) cfg: StackConfig,
    pub(crate) pool: Mempool,
    pub(crate) tx_caps: ChecksumCaps,
    pub(crate) now: u64,
    pub(crate) timers: TimerWheel<StackTimer>,
    pub(crate) expired: Vec<StackTimer>,
    pub(crate) arp: NeighborCache<Ipv4Addr>,
    pub(crate) ndp: NeighborCache<Ipv6Addr>,
    pub(crate) reasm: Reassembler<FragV4>,
    pub(crate) reasm6: Reassembler<FragV6>,
    pub(crate) udp: Vec<Option<UdpSock>>,
    pub(crate) udp_generation: Vec<u32>,
    pub(crate) udp_ports: HashMap<(IpAddr, u16), u32>,
    pub(crate) next_ephemeral: u16,
    pub(crate) echo: HashMap<u16, EchoSock>,
    pub(crate) icmp_bucket: icmp::TokenBucket,
    /// The transmit backlog, lent to the queue by [`output`](Stack::output).
    pub(crate) tx_buf: Vec<Mbuf>,
    pub(crate) stats: Stats,
    pub(crate) announced: bool,
    pub(crate) tcp: TcpTable,
    /// Set when this stack is one of several cores on a port ([`crate::cores`]).
    pub(crate) steering: Option<Steering>,
    /// Messages for other cores, taken by [`CoreLink::exchange`](crate::cores::CoreLink::exchange).
    pub(crate) core_out: Vec<(CoreDest, CoreMsg)>,
    /// Tunnels taken apart ([`decap`]); off by default.
    pub(crate) decap: decap::DecapConfig,
}

impl Stack {
    /// A stack at time `now_ns`. `pool` provides the buffers the stack
    /// allocates itself (ARP/NDP messages, ICMP errors, reassembly, TCP
    /// segments).
    pub fn new(cfg: StackConfig, pool: Mempool, now_ns: u64) -> Result<Self, ConfigError> {
        cfg.validate()?;
        if cfg.tcp_rx_mbufs > pool.count() / 2 {
            return Err(ConfigError::invalid(
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
        let now = now_ns;
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
            icmp_bucket: icmp::TokenBucket::new(cfg.icmp.error_rate_per_sec, cfg.icmp.error_burst, now),
            tx_buf: Vec::with_capacity(cfg.tx_backlog),
            stats: Stats::default(),
            announced: false,
            tcp: TcpTable::new(os_secret(), cfg.tcp_max_connections),
            steering: None,
            core_out: Vec::new(),
            decap: decap::DecapConfig::default(),
            tx_caps,
            now,
            cfg,
            pool,
        })
    }

    /// Moves the stack's clock to `now_ns` (never backwards) and, the first
    /// time, sends the announcements.
    fn advance(&mut self, now_ns: u64) {
        self.now = self.now.max(now_ns);
        if !self.announced {
            self.announce();
        }
    }

    /// Processes received frames at `now_ns`; every frame is consumed (`frames`
    /// is left empty, its capacity kept for the next burst). The first call
    /// sends the gratuitous ARP /
    /// unsolicited NA announcements first.
    pub fn input(&mut self, now_ns: u64, frames: &mut Vec<Mbuf>) {
        self.advance(now_ns);
        // Alone on the port (or one core of one), every flow is ours.
        if self.steering.as_ref().map_or(true, |s| s.count() == 1) {
            for m in frames.drain(..) {
                self.input_frame(m);
            }
            return;
        }
        for m in frames.drain(..) {
            let Some(s) = &self.steering else { unreachable!("checked above") };
            match s.frame_owner(m.data()) {
                Some((owner, misdirected)) if owner != s.index() => {
                    self.stats.events.rss_misdirected += misdirected as u64;
                    self.stats.events.frames_handed_off += 1;
                    self.core_out.push((CoreDest::Core(owner), CoreMsg::Frame(m)));
                }
                _ => self.input_frame(m),
            }
        }
    }

    /// Makes this stack core `steering.index()` of several on one port
    /// ([`crate::cores`]): connect and UDP bind pick ports this core owns,
    /// received frames of other cores' flows are handed to them, and
    /// neighbours learned here are broadcast. Call before opening sockets.
    pub fn set_steering(&mut self, steering: Steering) {
        let start = steering.ephemeral_start();
        self.tcp.next_ephemeral = start;
        self.next_ephemeral = start;
        self.steering = Some(steering);
    }

    /// This stack's core steering, if it is one of several.
    pub fn steering(&self) -> Option<&Steering> {
        self.steering.as_ref()
    }

    /// Messages for the other cores (drained by the caller, normally
    /// [`CoreLink::exchange`](crate::cores::CoreLink::exchange)).
    pub fn core_messages(&mut self) -> std::vec::Drain<'_, (CoreDest, CoreMsg)> {
        self.core_out.drain(..)
    }

    /// A message from another core.
    pub fn core_input(&mut self, now_ns: u64, msg: CoreMsg) {
        self.advance(now_ns);
        match msg {
            CoreMsg::Frame(m) => {
                self.stats.events.frames_handed_in += 1;
                self.input_frame(m);
            }
            CoreMsg::Neighbor { ip, mac } => {
                self.stats.events.neighbor_broadcasts_received += 1;
                self.learn_from(ip, mac, true, false);
            }
            CoreMsg::Resolve { ip } => self.resolve_for_core(ip),
        }
    }

    /// Runs the timers due at `now_ns` (neighbour retries, reassembly
    /// timeouts, TCP retransmission, delayed ACK, keepalive, TIME-WAIT).
    pub fn poll_timers(&mut self, now_ns: u64) {
        self.now = self.now.max(now_ns);
        self.expire_timers();
    }

    /// Produces the pending TCP segments (ACKs, data, retransmissions) and
    /// lends the transmit backlog: the caller's queue takes the frames it
    /// sends from the front (as `TxQueue::tx_burst` does) and leaves the rest,
    /// which stay queued (and counted against `tx_backlog`) for the next call.
    pub fn output(&mut self, now_ns: u64) -> &mut Vec<Mbuf> {
        self.now = self.now.max(now_ns);
        self.tcp_output();
        &mut self.tx_buf
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

impl Stack {
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

    /// A lower bound on when the next stack timer (TCP or other) is due, so an
    /// idle loop or a simulation can jump its clock there.
    pub fn next_timer_ns(&self) -> Option<u64> {
        self.timers.next_deadline_ns()
    }

    /// The pool the stack allocates from (for applications building payloads).
    pub fn pool(&self) -> &Mempool {
        &self.pool
    }

    /// Runs timers due at `self.now`.
    pub(crate) fn expire_timers(&mut self) {
        let mut expired = std::mem::take(&mut self.expired);
        self.timers.advance(self.now, &mut expired);
        for t in expired.drain(..) {
            match t {
                StackTimer::Arp(ip) => {
                    let r = self.arp.on_timer(&ip);
                    self.neighbor_retry(IpAddr::V4(ip), r);
                }
                StackTimer::Ndp(ip) => {
                    let r = self.ndp.on_timer(&ip);
                    self.neighbor_retry(IpAddr::V6(ip), r);
                }
                StackTimer::Reasm(k) => self.reasm.on_timeout(&k, &mut self.stats.drops),
                StackTimer::Reasm6(k) => self.reasm6.on_timeout(&k, &mut self.stats.drops),
                StackTimer::TcpConn(i, g) => self.tcp_conn_timer(i, g),
                StackTimer::TcpListener(i, g) => self.tcp_listener_timer(i, g),
            }
        }
        self.expired = expired;
    }

    pub(crate) fn alloc(&mut self) -> Option<Mbuf> {
        match self.pool.alloc() {
            Ok(m) => Some(m),
            Err(_) => {
                self.stats.drops.no_buffers += 1;
                None
            }
        }
    }

    pub(crate) fn rx_caps(&self, m: &Mbuf) -> Result<ChecksumCaps, ()> {
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
}

impl Stack {
    /// A packet reassembled here from fragments (which the port spreads by
    /// their addresses only): if another core owns its flow, hands it there
    /// as a frame (`None`); else gives it back. Without headroom for the
    /// Ethernet header it stays here.
    pub(crate) fn hand_off_reassembled(&mut self, mut m: Mbuf, src_mac: MacAddr, t: wire::EtherType) -> Option<Mbuf> {
        let Some(index) = self.steering.as_ref().filter(|s| s.count() > 1).map(|s| s.index()) else { return Some(m) };
        let mac = self.cfg.mac;
        if m.headroom() < ETH {
            return Some(m);
        }
        let h = m.prepend(ETH)?;
        wire::EthernetRepr::new(src_mac, mac, t).emit(&mut wire::EthernetFrame::new_unchecked(h));
        match self.steering.as_ref().and_then(|s| s.frame_owner(m.data())) {
            Some((owner, _)) if owner != index => {
                self.stats.events.frames_handed_off += 1;
                self.core_out.push((CoreDest::Core(owner), CoreMsg::Frame(m)));
                None
            }
            _ => {
                m.adj(ETH);
                Some(m)
            }
        }
    }
}
