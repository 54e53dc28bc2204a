//! Forwarding engines, as in DPDK's testpmd: each *stream* reads one receive queue
//! and writes one transmit queue; a forwarding core ([`FwdLcore`]) runs its streams
//! in turn, every poll, in the chosen [`FwdMode`].
//!
//! The engines parse only what their mode needs, with every length checked: a
//! frame too short or malformed for the mode is counted (`malformed`) and dropped,
//! never a panic. Frames the transmit queue refuses are freed and counted
//! (`tx_dropped`, testpmd's "TX-dropped").
//!
//! A stream is generic over its queue types. The default, boxed trait objects,
//! lets one core mix drivers; a program that knows its driver at compile time
//! (testpmd when every port is `dpdk:`) takes the concrete handles
//! ([`Stream::downcast`]) and the engine's burst calls become direct and
//! inlined: at ~25 instructions per frame on DPDK's `net_ring`, two dynamic
//! calls and their prologues per burst are several per cent.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;

use pmd::port::{Counter, MacAddr};
use pmd::runtime::Lcore;
use pmd::{free_bulk, Mbuf, Mempool, RxQueue, TxQueue};

/// What a forwarding core does with frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FwdMode {
    /// Forward unchanged.
    Io,
    /// Rewrite source MAC to the transmit port's, destination to the peer's.
    Mac,
    /// Swap source and destination MAC.
    MacSwap,
    /// Swap MACs, IP addresses and L4 ports.
    FiveTupleSwap,
    /// Receive and free.
    RxOnly,
    /// Generate UDP/IPv4 frames, receive nothing.
    TxOnly,
    /// Generate frames over many flows.
    FlowGen,
    /// Answer ARP requests and ICMP echo requests, drop the rest.
    IcmpEcho,
}

impl FwdMode {
    /// Every mode, with its command-line name.
    pub const ALL: [(FwdMode, &'static str); 8] = [
        (FwdMode::Io, "io"),
        (FwdMode::Mac, "mac"),
        (FwdMode::MacSwap, "macswap"),
        (FwdMode::FiveTupleSwap, "5tswap"),
        (FwdMode::RxOnly, "rxonly"),
        (FwdMode::TxOnly, "txonly"),
        (FwdMode::FlowGen, "flowgen"),
        (FwdMode::IcmpEcho, "icmpecho"),
    ];

    /// Whether the mode generates frames instead of forwarding received ones.
    pub fn generates(self) -> bool {
        matches!(self, FwdMode::TxOnly | FwdMode::FlowGen)
    }
}

impl fmt::Display for FwdMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = FwdMode::ALL.iter().find(|(m, _)| m == self).map(|(_, n)| *n).unwrap_or("?");
        f.write_str(name)
    }
}

impl FromStr for FwdMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FwdMode::ALL.iter().find(|(_, n)| *n == s).map(|(m, _)| *m).ok_or_else(|| {
            format!(
                "unknown forwarding mode '{s}'; valid modes: {}",
                FwdMode::ALL.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
            )
        })
    }
}

/// Counters of one stream (single writer: its forwarding core).
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Frames received.
    pub rx: Counter,
    /// Frames sent.
    pub tx: Counter,
    /// Frames the transmit queue refused (freed).
    pub tx_dropped: Counter,
    /// Frames dropped because they were malformed for the mode.
    pub malformed: Counter,
    /// Generated frames not built for lack of buffers.
    pub nombuf: Counter,
    /// Received frames recognised as generated ones and checked (`verify`).
    pub verified: Counter,
    /// Of those, frames whose lengths or payload pattern were wrong.
    pub bad_payload: Counter,
}

/// A snapshot of a stream's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StreamStats {
    /// Frames received.
    pub rx: u64,
    /// Frames sent.
    pub tx: u64,
    /// Frames the transmit queue refused.
    pub tx_dropped: u64,
    /// Malformed frames dropped.
    pub malformed: u64,
    /// Allocation failures while generating.
    pub nombuf: u64,
    /// Generated frames received and checked.
    pub verified: u64,
    /// Checked frames whose lengths or payload were wrong.
    pub bad_payload: u64,
}

impl StreamCounters {
    /// A snapshot.
    pub fn stats(&self) -> StreamStats {
        StreamStats {
            rx: self.rx.get(),
            tx: self.tx.get(),
            tx_dropped: self.tx_dropped.get(),
            malformed: self.malformed.get(),
            nombuf: self.nombuf.get(),
            verified: self.verified.get(),
            bad_payload: self.bad_payload.get(),
        }
    }
}

/// One receive queue feeding one transmit queue.
pub struct Stream<R = Box<dyn RxQueue>, T = Box<dyn TxQueue>> {
    /// Index of the receiving port.
    pub rx_port: usize,
    /// Index of the transmitting port.
    pub tx_port: usize,
    /// Queue index on both.
    pub queue: u16,
    rx: R,
    tx: T,
    /// MAC of the transmitting port (source of rewritten/generated frames).
    tx_mac: MacAddr,
    /// Destination MAC for `mac`, `txonly` and `flowgen`.
    peer_mac: MacAddr,
    counters: Arc<StreamCounters>,
    /// Frames still to generate (txonly/flowgen with a packet limit).
    remaining: Option<u64>,
    flow: u32,
}

impl<R: RxQueue, T: TxQueue> Stream<R, T> {
    /// A stream from `rx` to `tx`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rx_port: usize,
        tx_port: usize,
        queue: u16,
        rx: R,
        tx: T,
        tx_mac: MacAddr,
        peer_mac: MacAddr,
    ) -> Stream<R, T> {
        Stream { rx_port, tx_port, queue, rx, tx, tx_mac, peer_mac, counters: Arc::default(), remaining: None, flow: 0 }
    }

    /// The stream's counters, readable from any thread.
    pub fn counters(&self) -> Arc<StreamCounters> {
        self.counters.clone()
    }
}

impl Stream {
    /// Whether the stream's queues are an `R` and a `T`.
    pub fn is<R: RxQueue, T: TxQueue>(&self) -> bool {
        use std::any::{Any, TypeId};
        Any::type_id(&*self.rx) == TypeId::of::<R>() && Any::type_id(&*self.tx) == TypeId::of::<T>()
    }

    /// The same stream over the concrete queues, if they are an `R` and a `T`;
    /// the stream back otherwise.
    pub fn downcast<R: RxQueue, T: TxQueue>(self) -> Result<Stream<R, T>, Stream> {
        if !self.is::<R, T>() {
            return Err(self);
        }
        let Stream { rx_port, tx_port, queue, rx, tx, tx_mac, peer_mac, counters, remaining, flow } = self;
        let (Ok(rx), Ok(tx)) = (pmd::downcast_rx::<R>(rx), pmd::downcast_tx::<T>(tx)) else {
            unreachable!("types checked")
        };
        Ok(Stream { rx_port, tx_port, queue, rx, tx, tx_mac, peer_mac, counters, remaining, flow })
    }
}

/// Settings shared by every forwarding core.
#[derive(Clone, Debug)]
pub struct FwdConfig {
    /// The mode.
    pub mode: FwdMode,
    /// Frames per burst.
    pub burst: usize,
    /// Length of generated frames (txonly, flowgen, tx-first).
    pub txpkts: usize,
    /// Number of flows flowgen cycles through.
    pub flows: u32,
    /// txonly and `--tx-first` frames cycle through `flows` flows as
    /// flowgen's do (DPDK's `--txonly-multi-flow`), so RSS spreads them.
    pub multi_flow: bool,
    /// Bursts of generated frames each stream sends before forwarding starts.
    pub tx_first: u32,
    /// Frames each stream generates before it stops sending (txonly/flowgen).
    pub nb_pkts: Option<u64>,
    /// Pool generated frames come from.
    pub pool: Mempool,
    /// Check every received frame that one of our generators built (see
    /// [`check_generated`]) and count the bad ones. Off unless asked for: it
    /// reads every frame's bytes.
    pub verify: bool,
}

/// Smallest generated frame: Ethernet + IPv4 + UDP headers.
pub const MIN_TXPKTS: usize = 14 + 20 + 8;
/// Source address of generated frames (RFC 2544 benchmarking range, as DPDK's txonly).
pub const TX_IP_SRC: [u8; 4] = [198, 18, 0, 1];
/// Destination address of generated frames.
pub const TX_IP_DST: [u8; 4] = [198, 18, 0, 2];
/// UDP port of generated frames (discard, as DPDK's txonly).
pub const TX_UDP_PORT: u16 = 9;

/// Builds the UDP/IPv4 frame txonly sends: `len` bytes, payload bytes `i as u8`.
pub fn udp_template(len: usize, src: MacAddr, dst: MacAddr) -> Vec<u8> {
    let len = len.max(MIN_TXPKTS);
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&TX_IP_SRC);
    ip[16..20].copy_from_slice(&TX_IP_DST);
    let c = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&TX_UDP_PORT.to_be_bytes());
    udp[2..4].copy_from_slice(&TX_UDP_PORT.to_be_bytes());
    udp[4..6].copy_from_slice(&((len - 34) as u16).to_be_bytes());
    for (i, b) in f[42..].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

/// Whether `d` is a frame [`udp_template`] built (possibly with MACs, addresses
/// or ports rewritten by a forwarding mode or flowgen): `None` if it is not one
/// of ours (not UDP/IPv4 from 198.18.0.0/16 with port 9 at either end),
/// otherwise whether its IP and UDP lengths match the frame and its payload is
/// still the `i as u8` pattern.
pub fn check_generated(d: &[u8]) -> Option<bool> {
    if d.len() < MIN_TXPKTS || d[12..14] != [0x08, 0x00] || d[14] != 0x45 || d[23] != 17 {
        return None;
    }
    let ours = |ip: &[u8]| ip[..2] == TX_IP_SRC[..2];
    let port = |o: usize| u16::from_be_bytes([d[o], d[o + 1]]);
    if !(ours(&d[26..30]) || ours(&d[30..34])) || (port(34) != TX_UDP_PORT && port(36) != TX_UDP_PORT) {
        return None;
    }
    let lengths = port(16) as usize == d.len() - 14 && port(38) as usize == d.len() - 34;
    Some(lengths && d[42..].iter().enumerate().all(|(i, b)| *b == i as u8))
}

/// The IPv4 header checksum of `hdr` (with its checksum field treated as zero).
pub fn ipv4_checksum(hdr: &[u8]) -> u16 {
    let mut sum = 0u32;
    for (i, w) in hdr.chunks(2).enumerate() {
        if i == 5 {
            continue;
        }
        sum += u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A forwarding core: its streams and scratch space.
pub struct FwdLcore<R = Box<dyn RxQueue>, T = Box<dyn TxQueue>> {
    cfg: FwdConfig,
    streams: Vec<Stream<R, T>>,
    buf: Vec<Mbuf>,
    templates: Vec<Vec<u8>>,
    started: bool,
}

impl<R: RxQueue, T: TxQueue> FwdLcore<R, T> {
    /// A core running `streams`.
    pub fn new(cfg: FwdConfig, mut streams: Vec<Stream<R, T>>) -> FwdLcore<R, T> {
        let templates = streams.iter().map(|s| udp_template(cfg.txpkts, s.tx_mac, s.peer_mac)).collect();
        for s in &mut streams {
            s.remaining = cfg.nb_pkts;
        }
        FwdLcore { buf: Vec::with_capacity(cfg.burst * 2), cfg, streams, templates, started: false }
    }

    /// The streams, e.g. to drop their queue handles after a run.
    pub fn into_streams(self) -> Vec<Stream<R, T>> {
        self.streams
    }

    /// Every stream's counters.
    pub fn counters(&self) -> Vec<Arc<StreamCounters>> {
        self.streams.iter().map(|s| s.counters()).collect()
    }

    fn send(buf: &mut Vec<Mbuf>, s: &mut Stream<R, T>) {
        if buf.is_empty() {
            return;
        }
        let sent = s.tx.tx_burst(buf);
        s.counters.tx.add(sent as u64);
        if !buf.is_empty() {
            s.counters.tx_dropped.add(buf.len() as u64);
            free_bulk(buf);
        }
    }

    fn generate(cfg: &FwdConfig, template: &[u8], buf: &mut Vec<Mbuf>, s: &mut Stream<R, T>, flowgen: bool) -> usize {
        let mut n = cfg.burst;
        if let Some(r) = s.remaining {
            n = n.min(r as usize);
            if n == 0 {
                return 0;
            }
        }
        if cfg.pool.alloc_bulk(buf, n).is_err() {
            s.counters.nombuf.add(n as u64);
            return 0;
        }
        for m in buf.iter_mut() {
            // The pool's data room was checked against txpkts when the run was set up.
            if m.extend_from_slice(template).is_none() {
                continue;
            }
            if flowgen {
                let flow = s.flow;
                s.flow = (s.flow + 1) % cfg.flows.max(1);
                let d = m.data_mut();
                // Vary the source address and port per flow; fix the IP checksum.
                d[14 + 14] = TX_IP_SRC[2].wrapping_add((flow >> 8) as u8);
                d[14 + 15] = TX_IP_SRC[3].wrapping_add(flow as u8);
                d[34..36].copy_from_slice(&(1024u16.wrapping_add(flow as u16)).to_be_bytes());
                let c = ipv4_checksum(&d[14..34]);
                d[24..26].copy_from_slice(&c.to_be_bytes());
            }
        }
        if let Some(r) = s.remaining.as_mut() {
            *r -= n as u64;
        }
        Self::send(buf, s);
        n
    }

    /// Applies the per-frame rewrite of `mode`; false if the frame is malformed for it.
    fn rewrite(mode: FwdMode, m: &mut Mbuf, tx_mac: MacAddr, peer_mac: MacAddr) -> bool {
        let d = m.data_mut();
        match mode {
            FwdMode::Io | FwdMode::RxOnly | FwdMode::TxOnly | FwdMode::FlowGen => true,
            FwdMode::Mac => {
                if d.len() < 14 {
                    return false;
                }
                d[0..6].copy_from_slice(&peer_mac.0);
                d[6..12].copy_from_slice(&tx_mac.0);
                true
            }
            FwdMode::MacSwap => {
                if d.len() < 14 {
                    return false;
                }
                swap_ranges(d, 0, 6, 6);
                true
            }
            FwdMode::FiveTupleSwap => five_tuple_swap(d),
            FwdMode::IcmpEcho => icmp_echo(d, tx_mac),
        }
    }

    /// `io` without `verify`: the whole per-burst work of DPDK's io engine
    /// (receive, count, send, count, free what the queue refused), nothing
    /// else, because at a few nanoseconds per burst every branch shows.
    #[inline(always)]
    fn io(burst: usize, buf: &mut Vec<Mbuf>, s: &mut Stream<R, T>) -> usize {
        debug_assert!(buf.is_empty());
        let got = s.rx.rx_received(buf, burst);
        let n = got.len();
        if n == 0 {
            // Let decorators and batching drivers release what they hold.
            s.tx.tx_burst(got.into_vec());
            return 0;
        }
        s.counters.rx.add(n as u64);
        // Straight from the receive queue to the transmit queue, with what
        // the receiver vouched for (a DPDK pair skips the address check).
        let sent = s.tx.tx_received(got);
        s.counters.tx.add(sent as u64);
        if !buf.is_empty() {
            Self::drop_unsent(buf, s);
        }
        n
    }

    #[cold]
    #[inline(never)]
    fn drop_unsent(buf: &mut Vec<Mbuf>, s: &mut Stream<R, T>) {
        s.counters.tx_dropped.add(buf.len() as u64);
        free_bulk(buf);
    }

    /// The `--tx-first` bursts, once, before the first poll.
    #[cold]
    #[inline(never)]
    fn tx_first(&mut self) {
        self.started = true;
        for (s, t) in self.streams.iter_mut().zip(&self.templates) {
            for _ in 0..self.cfg.tx_first {
                Self::generate(&self.cfg, t, &mut self.buf, s, self.cfg.multi_flow);
            }
        }
    }

    fn forward(cfg: &FwdConfig, buf: &mut Vec<Mbuf>, s: &mut Stream<R, T>) -> usize {
        let n = s.rx.rx_burst(buf, cfg.burst);
        if n == 0 {
            // Let decorators and batching drivers release what they hold.
            s.tx.tx_burst(buf);
            return 0;
        }
        s.counters.rx.add(n as u64);
        if cfg.verify {
            let (mut seen, mut bad) = (0, 0);
            for m in buf.iter() {
                if let Some(ok) = check_generated(m.data()) {
                    seen += 1;
                    bad += !ok as u64;
                }
            }
            s.counters.verified.add(seen);
            s.counters.bad_payload.add(bad);
        }
        match cfg.mode {
            FwdMode::RxOnly => {
                free_bulk(buf);
                return n;
            }
            FwdMode::Io => {}
            mode => {
                let before = buf.len();
                let (tx_mac, peer_mac) = (s.tx_mac, s.peer_mac);
                buf.retain_mut(|m| Self::rewrite(mode, m, tx_mac, peer_mac));
                let bad = before - buf.len();
                if bad > 0 {
                    s.counters.malformed.add(bad as u64);
                }
            }
        }
        Self::send(buf, s);
        n
    }
}

impl<R: RxQueue, T: TxQueue> Lcore for FwdLcore<R, T> {
    type Snapshot = Vec<StreamStats>;

    // Inlined into the runtime's loop: a call and its register saves per
    // poll show at a few nanoseconds per burst.
    #[inline(always)]
    fn poll(&mut self) -> usize {
        if !self.started {
            self.tx_first();
        }
        let cfg = &self.cfg;
        let mut work = 0;
        match cfg.mode {
            FwdMode::Io if !cfg.verify => {
                for s in self.streams.iter_mut() {
                    work += Self::io(cfg.burst, &mut self.buf, s);
                }
            }
            FwdMode::TxOnly | FwdMode::FlowGen => {
                let flowgen = cfg.mode == FwdMode::FlowGen || cfg.multi_flow;
                for (s, t) in self.streams.iter_mut().zip(&self.templates) {
                    work += Self::generate(cfg, t, &mut self.buf, s, flowgen);
                }
            }
            _ => {
                for s in self.streams.iter_mut() {
                    work += Self::forward(cfg, &mut self.buf, s);
                }
            }
        }
        work
    }

    fn snapshot(&self) -> Vec<StreamStats> {
        self.streams.iter().map(|s| s.counters.stats()).collect()
    }
}

fn swap_ranges(d: &mut [u8], a: usize, b: usize, len: usize) {
    for i in 0..len {
        d.swap(a + i, b + i);
    }
}

/// Offset and EtherType after an optional 802.1Q tag.
fn l3_start(d: &[u8]) -> Option<(usize, u16)> {
    if d.len() < 14 {
        return None;
    }
    let et = u16::from_be_bytes([d[12], d[13]]);
    if et == 0x8100 {
        if d.len() < 18 {
            return None;
        }
        return Some((18, u16::from_be_bytes([d[16], d[17]])));
    }
    Some((14, et))
}

fn five_tuple_swap(d: &mut [u8]) -> bool {
    let Some((l3, et)) = l3_start(d) else { return false };
    swap_ranges(d, 0, 6, 6);
    let (l4, proto) = match et {
        0x0800 => {
            if d.len() < l3 + 20 || d[l3] >> 4 != 4 {
                return false;
            }
            let ihl = (d[l3] & 0x0f) as usize * 4;
            if ihl < 20 || d.len() < l3 + ihl {
                return false;
            }
            swap_ranges(d, l3 + 12, l3 + 16, 4);
            let frag = u16::from_be_bytes([d[l3 + 6], d[l3 + 7]]) & 0x1fff;
            if frag != 0 {
                return true;
            }
            (l3 + ihl, d[l3 + 9])
        }
        0x86dd => {
            if d.len() < l3 + 40 {
                return false;
            }
            swap_ranges(d, l3 + 8, l3 + 24, 16);
            (l3 + 40, d[l3 + 6])
        }
        _ => return true,
    };
    if matches!(proto, 6 | 17) {
        if d.len() < l4 + 4 {
            return false;
        }
        swap_ranges(d, l4, l4 + 2, 2);
    }
    true
}

/// Turns an ARP request into a reply or an ICMP echo request into a reply, in
/// place. Anything else is "malformed" for this mode and dropped.
fn icmp_echo(d: &mut [u8], mac: MacAddr) -> bool {
    let Some((l3, et)) = l3_start(d) else { return false };
    match et {
        0x0806 => {
            // Ethernet/IPv4 ARP request only.
            if d.len() < l3 + 28 || d[l3..l3 + 6] != [0, 1, 8, 0, 6, 4] || d[l3 + 6..l3 + 8] != [0, 1] {
                return false;
            }
            let a = l3;
            d[a + 7] = 2; // op = reply
            let mut sha = [0u8; 6];
            sha.copy_from_slice(&d[a + 8..a + 14]);
            let mut spa = [0u8; 4];
            spa.copy_from_slice(&d[a + 14..a + 18]);
            let mut tpa = [0u8; 4];
            tpa.copy_from_slice(&d[a + 24..a + 28]);
            d[a + 8..a + 14].copy_from_slice(&mac.0);
            d[a + 14..a + 18].copy_from_slice(&tpa);
            d[a + 18..a + 24].copy_from_slice(&sha);
            d[a + 24..a + 28].copy_from_slice(&spa);
            d[0..6].copy_from_slice(&sha);
            d[6..12].copy_from_slice(&mac.0);
            true
        }
        0x0800 => {
            if d.len() < l3 + 20 || d[l3] >> 4 != 4 || d[l3 + 9] != 1 {
                return false;
            }
            let ihl = (d[l3] & 0x0f) as usize * 4;
            let icmp = l3 + ihl;
            if ihl < 20 || d.len() < icmp + 8 || d[icmp] != 8 || d[icmp + 1] != 0 {
                return false;
            }
            swap_ranges(d, 0, 6, 6);
            swap_ranges(d, l3 + 12, l3 + 16, 4);
            d[icmp] = 0;
            // RFC 1624 incremental update: the first word went from 0x0800 to 0x0000.
            let old = u16::from_be_bytes([d[icmp + 2], d[icmp + 3]]);
            let mut sum = (!old as u32) + (!0x0800u16 as u32);
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            d[icmp + 2..icmp + 4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_frames_are_recognised_and_checked() {
        let (a, b) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        let f = udp_template(300, a, b);
        assert_eq!(check_generated(&f), Some(true));
        // Rewritten by macswap or 5tswap: still ours, still intact.
        let mut g = f.clone();
        assert!(five_tuple_swap(&mut g));
        assert_eq!(check_generated(&g), Some(true));
        let mut g = f.clone();
        g[200] ^= 1;
        assert_eq!(check_generated(&g), Some(false), "a flipped payload bit");
        assert_eq!(check_generated(&f[..299]), Some(false), "a truncated frame");
        let mut g = f.clone();
        g[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(check_generated(&g), None, "not IPv4: not ours");
        let mut g = f.clone();
        g[26] = 10;
        g[30] = 10;
        assert_eq!(check_generated(&g), None, "other addresses: not ours");
    }

    fn icmp_request() -> Vec<u8> {
        // Ethernet + IPv4 + ICMP echo request id 1 seq 1, checksums valid.
        let mut f = vec![0u8; 14 + 20 + 8];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&[8, 0]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&28u16.to_be_bytes());
        f[22] = 64;
        f[23] = 1;
        f[26..30].copy_from_slice(&TX_IP_DST);
        f[30..34].copy_from_slice(&TX_IP_SRC);
        let c = ipv4_checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f[34] = 8;
        f[38..42].copy_from_slice(&[0, 1, 0, 1]);
        let c = icmp_sum(&f[34..]);
        f[36..38].copy_from_slice(&c.to_be_bytes());
        f
    }

    fn icmp_sum(b: &[u8]) -> u16 {
        let mut s = 0u32;
        for w in b.chunks(2) {
            s += u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u32;
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn rfc792_echo_reply_has_valid_checksum_and_swapped_addresses() {
        let mut f = icmp_request();
        assert!(icmp_echo(&mut f, MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(f[34], 0);
        assert_eq!(icmp_sum(&f[34..]), 0, "checksum over the reply must verify");
        assert_eq!(&f[26..30], &TX_IP_SRC);
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 2]);
    }

    #[test]
    fn rfc826_arp_request_becomes_reply() {
        let mut f = vec![0u8; 42];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        f[12..14].copy_from_slice(&[8, 6]);
        f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f[22..28].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        f[28..32].copy_from_slice(&TX_IP_SRC);
        f[38..42].copy_from_slice(&TX_IP_DST);
        let me = MacAddr([2, 0, 0, 0, 0, 1]);
        assert!(icmp_echo(&mut f, me));
        assert_eq!(f[21], 2);
        assert_eq!(&f[22..28], &me.0);
        assert_eq!(&f[28..32], &TX_IP_DST);
        assert_eq!(&f[32..38], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 9]);
    }

    #[test]
    fn five_tuple_swap_swaps_everything_and_keeps_checksums() {
        let mut f = udp_template(64, MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        f[34..36].copy_from_slice(&1234u16.to_be_bytes());
        assert!(five_tuple_swap(&mut f));
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&f[26..30], &TX_IP_DST);
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), 1234);
        assert_eq!(ipv4_checksum(&f[14..34]), u16::from_be_bytes([f[24], f[25]]));
    }

    #[test]
    fn short_frames_are_malformed_not_panics() {
        for len in 0..60 {
            let mut f = vec![0x45u8; len];
            let _ = five_tuple_swap(&mut f);
            let _ = icmp_echo(&mut f, MacAddr::default());
        }
    }

    #[test]
    fn modes_parse_and_print() {
        for (m, n) in FwdMode::ALL {
            assert_eq!(n.parse::<FwdMode>().unwrap(), m);
            assert_eq!(m.to_string(), n);
        }
        assert!("bogus".parse::<FwdMode>().unwrap_err().contains("valid modes"));
    }
}
