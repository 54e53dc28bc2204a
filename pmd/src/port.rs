//! The `Port` trait and its per-queue handles.
//!
//! A port is configured, started and inspected from a control thread; its queues
//! are taken out as handles ([`RxQueue`], [`TxQueue`]) that are `Send` and owned by
//! exactly one core, which calls `rx_burst`/`tx_burst` without any locking. This is
//! DPDK's ethdev model with ownership made explicit: a queue handle can be taken
//! once per configuration, so two cores can never poll the same queue.
//!
//! Ports opened from spec strings are trait objects, so a burst costs one virtual
//! call (as `rte_eth_rx_burst` costs one indirect call through `rx_pkt_burst`), never
//! one per packet. Code that knows its driver type statically can use it directly and
//! be monomorphised.
//!
//! # Statistics
//! Each queue handle owns its counters and is their only writer; it adds to them
//! once per burst with plain loads and stores (no atomic read-modify-write on the
//! data path). Readers see consistent-enough snapshots through relaxed atomics.
//! `reset_stats` does not write the counters (that would race with the writer); it
//! records a baseline that later reads subtract.

use std::any::{Any, TypeId};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bitflags::bitflags;
use serde::Serialize;

use crate::{Mbuf, Mempool, PmdError};

/// An Ethernet MAC address.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Whether the group bit is set (multicast or broadcast).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// A locally administered unicast address derived from a name, stable across
    /// runs (FNV-1a of the name).
    pub fn from_name(name: &str) -> MacAddr {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let b = h.to_be_bytes();
        MacAddr([0x02, b[1], b[2], b[3], b[4], b[5]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(format!("'{s}' is not a MAC address (expected 6 hex bytes like 02:00:00:00:00:01)"));
        }
        let mut m = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            m[i] = u8::from_str_radix(p, 16).map_err(|_| format!("'{s}' is not a MAC address (bad byte '{p}')"))?;
        }
        Ok(MacAddr(m))
    }
}

bitflags! {
    /// Receive offloads a port can perform (like `RTE_ETH_RX_OFFLOAD_*`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct RxOffloads: u32 {
        /// IPv4 header checksum verification.
        const IPV4_CKSUM = 1 << 0;
        /// UDP checksum verification.
        const UDP_CKSUM = 1 << 1;
        /// TCP checksum verification.
        const TCP_CKSUM = 1 << 2;
        /// RSS hash delivered in the mbuf.
        const RSS_HASH = 1 << 3;
        /// VLAN tag stripping.
        const VLAN_STRIP = 1 << 4;
        /// TCP large receive offload (coalescing).
        const TCP_LRO = 1 << 5;
        /// Frames larger than one buffer (multi-segment receive).
        const SCATTER = 1 << 6;
    }
}

bitflags! {
    /// Transmit offloads a port can perform (like `RTE_ETH_TX_OFFLOAD_*`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct TxOffloads: u32 {
        /// IPv4 header checksum insertion.
        const IPV4_CKSUM = 1 << 0;
        /// UDP checksum insertion.
        const UDP_CKSUM = 1 << 1;
        /// TCP checksum insertion.
        const TCP_CKSUM = 1 << 2;
        /// TCP segmentation offload.
        const TCP_TSO = 1 << 3;
        /// UDP segmentation offload.
        const UDP_TSO = 1 << 4;
        /// VLAN tag insertion.
        const VLAN_INSERT = 1 << 5;
        /// Multi-segment transmit.
        const MULTI_SEGS = 1 << 6;
    }
}

bitflags! {
    /// Which headers an RSS hash covers.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct RssHashTypes: u32 {
        /// IPv4 addresses.
        const IPV4 = 1 << 0;
        /// IPv4 addresses and TCP ports.
        const IPV4_TCP = 1 << 1;
        /// IPv4 addresses and UDP ports.
        const IPV4_UDP = 1 << 2;
        /// IPv6 addresses.
        const IPV6 = 1 << 3;
        /// IPv6 addresses and TCP ports.
        const IPV6_TCP = 1 << 4;
        /// IPv6 addresses and UDP ports.
        const IPV6_UDP = 1 << 5;
    }
}

/// What a port can do for RSS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RssCapabilities {
    /// Hash key length in bytes.
    pub key_len: usize,
    /// Redirection table size.
    pub reta_size: usize,
    /// Hash types supported.
    pub hash_types: RssHashTypes,
}

/// Requested RSS configuration: the key and the redirection table are explicit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RssConfig {
    /// Toeplitz key.
    pub key: Vec<u8>,
    /// Hash types to use.
    pub hash_types: RssHashTypes,
    /// Redirection table: entry `hash % len` names the receive queue.
    pub reta: Vec<u16>,
}

/// Link state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Link {
    /// Whether the link is up.
    pub up: bool,
    /// Speed in Mbit/s (0 if unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// Static facts about a port and its current settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Driver name (`ring`, `null`, ...).
    pub driver: &'static str,
    /// Port name (the spec's target, e.g. `a` for `ring:a`).
    pub name: String,
    /// MAC address.
    pub mac: MacAddr,
    /// Current MTU (L3 bytes per frame).
    pub mtu: u16,
    /// Smallest accepted MTU.
    pub min_mtu: u16,
    /// Largest accepted MTU (above 1500 means jumbo frames are supported).
    pub max_mtu: u16,
    /// Maximum number of receive queues.
    pub max_rx_queues: u16,
    /// Maximum number of transmit queues.
    pub max_tx_queues: u16,
    /// Largest descriptor ring per queue.
    pub max_desc: u16,
    /// Receive offload capabilities.
    pub rx_offloads: RxOffloads,
    /// Transmit offload capabilities.
    pub tx_offloads: TxOffloads,
    /// RSS capabilities, if any.
    pub rss: Option<RssCapabilities>,
}

impl PortInfo {
    /// Checks an MTU against the port's range; the error names the field.
    pub fn check_mtu(&self, mtu: u16) -> Result<(), PmdError> {
        if mtu < self.min_mtu || mtu > self.max_mtu {
            return Err(PmdError::Config {
                field: "mtu",
                reason: format!("{mtu} is outside {}..={} for {}", self.min_mtu, self.max_mtu, self.driver),
            });
        }
        Ok(())
    }
}

/// How to configure a port. The queue counts, ring sizes and the receive pool are
/// required; offloads and RSS are off unless asked for.
#[derive(Clone, Debug)]
pub struct PortConfig {
    /// Number of receive queues.
    pub rx_queues: u16,
    /// Number of transmit queues.
    pub tx_queues: u16,
    /// Receive descriptors (ring size) per queue.
    pub rx_desc: u16,
    /// Transmit descriptors (ring size) per queue.
    pub tx_desc: u16,
    /// Pool the port allocates received frames from.
    pub mempool: Mempool,
    /// Receive offloads to enable (must be a subset of the capabilities).
    pub rx_offloads: RxOffloads,
    /// Transmit offloads to enable (must be a subset of the capabilities).
    pub tx_offloads: TxOffloads,
    /// RSS configuration, for ports with more than one receive queue.
    pub rss: Option<RssConfig>,
}

impl PortConfig {
    /// A configuration with every required value given.
    pub fn new(rx_queues: u16, tx_queues: u16, rx_desc: u16, tx_desc: u16, mempool: Mempool) -> Self {
        PortConfig {
            rx_queues,
            tx_queues,
            rx_desc,
            tx_desc,
            mempool,
            rx_offloads: RxOffloads::empty(),
            tx_offloads: TxOffloads::empty(),
            rss: None,
        }
    }

    /// Checks the configuration against a port's capabilities; the error names the
    /// field at fault.
    pub fn validate(&self, info: &PortInfo) -> Result<(), PmdError> {
        let bad = |field, reason| Err(PmdError::Config { field, reason });
        if self.rx_queues == 0 && self.tx_queues == 0 {
            return bad("rx_queues", "a port needs at least one queue".into());
        }
        if self.rx_queues > info.max_rx_queues {
            return bad("rx_queues", format!("{} exceeds the port's maximum {}", self.rx_queues, info.max_rx_queues));
        }
        if self.tx_queues > info.max_tx_queues {
            return bad("tx_queues", format!("{} exceeds the port's maximum {}", self.tx_queues, info.max_tx_queues));
        }
        for (field, n) in [("rx_desc", self.rx_desc), ("tx_desc", self.tx_desc)] {
            if n == 0 || n > info.max_desc {
                return bad(field, format!("{n} is outside 1..={}", info.max_desc));
            }
        }
        let extra = self.rx_offloads - info.rx_offloads;
        if !extra.is_empty() {
            return bad("rx_offloads", format!("{extra:?} not supported by {}", info.driver));
        }
        let extra = self.tx_offloads - info.tx_offloads;
        if !extra.is_empty() {
            return bad("tx_offloads", format!("{extra:?} not supported by {}", info.driver));
        }
        if let Some(rss) = &self.rss {
            let Some(capa) = &info.rss else {
                return bad("rss", format!("{} has no RSS", info.driver));
            };
            if rss.key.len() != capa.key_len {
                return bad("rss", format!("key is {} bytes, the port needs {}", rss.key.len(), capa.key_len));
            }
            if rss.reta.iter().any(|&q| q >= self.rx_queues) {
                return bad("rss", "redirection table names a queue that does not exist".into());
            }
        }
        Ok(())
    }
}

/// Lets a boxed queue handle be turned back into its concrete type
/// ([`downcast_rx`], [`downcast_tx`]); implemented for every `'static` type.
pub trait QueueAny: Any + Send {
    /// The box as a `Box<dyn Any>`.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl<Q: Any + Send> QueueAny for Q {
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// The concrete queue behind `q`, if it is an `R`; `q` back otherwise.
///
/// Why: ports hand out `Box<dyn RxQueue>` so that code can mix drivers. A
/// poll loop that knows its driver at compile time (a DPDK-only forwarder)
/// can take the concrete handle and be generic over it instead: the burst
/// calls are then direct and inline, nothing is dispatched per burst.
pub fn downcast_rx<R: RxQueue>(q: Box<dyn RxQueue>) -> Result<R, Box<dyn RxQueue>> {
    // `Any::type_id` through the trait object: the concrete type's id.
    if Any::type_id(&*q) != TypeId::of::<R>() {
        return Err(q);
    }
    Ok(*q.into_any().downcast::<R>().unwrap_or_else(|_| unreachable!("type id checked")))
}

/// The concrete queue behind `q`, if it is a `T`; `q` back otherwise (see
/// [`downcast_rx`]).
pub fn downcast_tx<T: TxQueue>(q: Box<dyn TxQueue>) -> Result<T, Box<dyn TxQueue>> {
    if Any::type_id(&*q) != TypeId::of::<T>() {
        return Err(q);
    }
    Ok(*q.into_any().downcast::<T>().unwrap_or_else(|_| unreachable!("type id checked")))
}

/// A receive queue handle, owned by one core.
pub trait RxQueue: QueueAny {
    /// Appends up to `max` received frames to `out` and returns how many.
    /// Never blocks; returns 0 when nothing is waiting or the port is stopped.
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize;

    /// [`rx_burst`](Self::rx_burst), returning the vector as a [`Received`]
    /// burst that carries what this queue can vouch for about its handles, so
    /// that [`TxQueue::tx_received`] can skip checks that proof makes
    /// redundant. Queues that vouch for nothing (the default) lose nothing.
    #[inline]
    fn rx_received<'a>(&mut self, out: &'a mut Vec<Mbuf>, max: usize) -> Received<'a> {
        self.rx_burst(out, max);
        Received::unproven(out)
    }
}

/// What a receive queue vouches for about every handle of a [`Received`]
/// burst. Only this crate's drivers can state it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Nothing.
    Unknown,
    /// Each handle is an `rte_mbuf` of a DPDK mempool, as a DPDK receive
    /// queue wrote it.
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    DpdkMbufs,
}

/// A burst as a receive queue wrote it, with what that queue vouches for about
/// its handles (see [`RxQueue::rx_received`]).
///
/// Why a type: a DPDK transmit queue must prove every handle it passes to the
/// device is an `rte_mbuf` (a native buffer there would be memory corruption,
/// not a dropped frame), which costs an address check per frame. A DPDK
/// receive queue knows that of what it just wrote, but a plain
/// `&mut Vec<Mbuf>` could be changed between receive and transmit. This type
/// holds the vector and hands out only shared references to its handles, so
/// nothing can be swapped in while the proof lives. The frames' bytes and
/// metadata stay the caller's to read; to change anything, take the vector
/// back with [`into_vec`](Self::into_vec), which drops the proof.
///
/// Only this crate's drivers can vouch for a burst; anyone else gets an
/// unproven one:
///
/// ```compile_fail
/// let mut v = Vec::new();
/// let r = pmd::Received::vouched(&mut v, pmd::port::Origin::DpdkMbufs);
/// ```
///
/// ```
/// let mut v = Vec::new();
/// let r = pmd::Received::unproven(&mut v);
/// assert!(r.is_empty());
/// ```
#[derive(Debug)]
pub struct Received<'a> {
    buf: &'a mut Vec<Mbuf>,
    origin: Origin,
}

impl<'a> Received<'a> {
    /// `buf` with nothing vouched for.
    #[inline]
    pub fn unproven(buf: &'a mut Vec<Mbuf>) -> Received<'a> {
        Received { buf, origin: Origin::Unknown }
    }

    /// `buf`, every handle of which is what `origin` says.
    #[inline]
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    pub(crate) fn vouched(buf: &'a mut Vec<Mbuf>, origin: Origin) -> Received<'a> {
        Received { buf, origin }
    }

    #[inline]
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    pub(crate) fn origin(&self) -> Origin {
        self.origin
    }

    /// Frames in the burst (the whole vector, including any it held before).
    #[inline]
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the burst is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The frames.
    #[inline]
    pub fn frames(&self) -> &[Mbuf] {
        self.buf
    }

    /// The vector back, without the proof.
    #[inline]
    pub fn into_vec(self) -> &'a mut Vec<Mbuf> {
        self.buf
    }
}

/// A transmit queue handle, owned by one core.
pub trait TxQueue: QueueAny {
    /// Sends frames from the front of `pkts`, removes the ones it took, and returns
    /// how many. Frames it could not send stay in `pkts`, in order, and remain the
    /// caller's (to retry or free).
    ///
    /// Call it every poll iteration, even with nothing to send: decorators (delay,
    /// rate shaping) and drivers that batch doorbells release queued frames here.
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize;

    /// [`tx_burst`](Self::tx_burst) of a burst as a receive queue wrote it;
    /// unsent frames stay in the vector as with `tx_burst`. A queue may use
    /// what the receiving queue vouched for (see [`Received`]); the default
    /// ignores it.
    #[inline]
    fn tx_received(&mut self, burst: Received<'_>) -> usize {
        self.tx_burst(burst.into_vec())
    }
}

impl<T: RxQueue + ?Sized> RxQueue for Box<T> {
    #[inline]
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        (**self).rx_burst(out, max)
    }

    #[inline]
    fn rx_received<'a>(&mut self, out: &'a mut Vec<Mbuf>, max: usize) -> Received<'a> {
        (**self).rx_received(out, max)
    }
}

impl<T: TxQueue + ?Sized> TxQueue for Box<T> {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        (**self).tx_burst(pkts)
    }

    #[inline]
    fn tx_received(&mut self, burst: Received<'_>) -> usize {
        (**self).tx_received(burst)
    }
}

/// A network port: configured and inspected from a control thread.
pub trait Port: Send {
    /// Capabilities and current settings.
    fn info(&self) -> PortInfo;
    /// Applies a configuration. The port must be stopped and every queue handle
    /// from an earlier configuration dropped.
    fn configure(&mut self, conf: &PortConfig) -> Result<(), PmdError>;
    /// The configuration last applied, if any.
    fn config(&self) -> Option<&PortConfig>;
    /// Starts the port: queues begin to move frames and the link may come up.
    fn start(&mut self) -> Result<(), PmdError>;
    /// Stops the port; the configuration is kept, so `start` resumes it.
    fn stop(&mut self) -> Result<(), PmdError>;
    /// Whether the port is started.
    fn is_started(&self) -> bool;
    /// Current link state.
    fn link(&self) -> Link;
    /// Enables or disables promiscuous mode.
    fn set_promiscuous(&mut self, on: bool) -> Result<(), PmdError>;
    /// Whether promiscuous mode is on.
    fn promiscuous(&self) -> bool;
    /// Sets the MTU (L3 bytes per frame).
    fn set_mtu(&mut self, mtu: u16) -> Result<(), PmdError>;
    /// Counters since the last reset.
    fn stats(&self) -> PortStats;
    /// Zeroes the counters (as seen by later `stats` calls).
    fn reset_stats(&mut self);
    /// Extended, driver-specific counters as name/value pairs (DPDK's xstats).
    fn xstats(&self) -> Vec<(String, u64)> {
        self.stats().to_xstats()
    }
    /// Takes the handle of receive queue `q`; each can be taken once per
    /// configuration.
    fn take_rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>, PmdError>;
    /// Takes the handle of transmit queue `q`; each can be taken once per
    /// configuration.
    fn take_tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>, PmdError>;
}

/// The [`Port`] methods a decorator (a port wrapping `self.inner: Box<dyn Port>`)
/// passes straight through; the decorator writes the rest (configure, stats
/// reset, xstats, queue handles) itself.
macro_rules! delegate_port_basics {
    () => {
        fn info(&self) -> $crate::port::PortInfo {
            self.inner.info()
        }
        fn config(&self) -> Option<&$crate::port::PortConfig> {
            self.inner.config()
        }
        fn start(&mut self) -> Result<(), $crate::PmdError> {
            self.inner.start()
        }
        fn stop(&mut self) -> Result<(), $crate::PmdError> {
            self.inner.stop()
        }
        fn is_started(&self) -> bool {
            self.inner.is_started()
        }
        fn link(&self) -> $crate::port::Link {
            self.inner.link()
        }
        fn set_promiscuous(&mut self, on: bool) -> Result<(), $crate::PmdError> {
            self.inner.set_promiscuous(on)
        }
        fn promiscuous(&self) -> bool {
            self.inner.promiscuous()
        }
        fn set_mtu(&mut self, mtu: u16) -> Result<(), $crate::PmdError> {
            self.inner.set_mtu(mtu)
        }
        fn stats(&self) -> $crate::port::PortStats {
            self.inner.stats()
        }
    };
}
pub(crate) use delegate_port_basics;

/// Port counters, with the names DPDK users know.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PortStats {
    /// Frames received.
    pub ipackets: u64,
    /// Frames sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Frames the port dropped because its receive ring was full.
    pub imissed: u64,
    /// Erroneous received frames (e.g. over the MTU).
    pub ierrors: u64,
    /// Frames that could not be sent because of an error (e.g. over the MTU).
    pub oerrors: u64,
    /// Receive allocation failures (mempool exhausted).
    pub rx_nombuf: u64,
    /// Per receive queue: frames.
    pub q_ipackets: Vec<u64>,
    /// Per receive queue: bytes.
    pub q_ibytes: Vec<u64>,
    /// Per transmit queue: frames.
    pub q_opackets: Vec<u64>,
    /// Per transmit queue: bytes.
    pub q_obytes: Vec<u64>,
    /// Per receive queue: errors.
    pub q_errors: Vec<u64>,
}

impl PortStats {
    /// The counters as xstats name/value pairs (DPDK's basic xstats names).
    pub fn to_xstats(&self) -> Vec<(String, u64)> {
        let mut v = vec![
            ("rx_good_packets".to_string(), self.ipackets),
            ("tx_good_packets".to_string(), self.opackets),
            ("rx_good_bytes".to_string(), self.ibytes),
            ("tx_good_bytes".to_string(), self.obytes),
            ("rx_missed_errors".to_string(), self.imissed),
            ("rx_errors".to_string(), self.ierrors),
            ("tx_errors".to_string(), self.oerrors),
            ("rx_mbuf_allocation_errors".to_string(), self.rx_nombuf),
        ];
        for (i, (p, b)) in self.q_ipackets.iter().zip(&self.q_ibytes).enumerate() {
            v.push((format!("rx_q{i}_packets"), *p));
            v.push((format!("rx_q{i}_bytes"), *b));
        }
        for (i, (p, b)) in self.q_opackets.iter().zip(&self.q_obytes).enumerate() {
            v.push((format!("tx_q{i}_packets"), *p));
            v.push((format!("tx_q{i}_bytes"), *b));
        }
        v
    }

    fn minus(&self, base: &PortStats) -> PortStats {
        let d = |a: u64, b: u64| a.wrapping_sub(b);
        let dv =
            |a: &[u64], b: &[u64]| a.iter().enumerate().map(|(i, x)| d(*x, b.get(i).copied().unwrap_or(0))).collect();
        PortStats {
            ipackets: d(self.ipackets, base.ipackets),
            opackets: d(self.opackets, base.opackets),
            ibytes: d(self.ibytes, base.ibytes),
            obytes: d(self.obytes, base.obytes),
            imissed: d(self.imissed, base.imissed),
            ierrors: d(self.ierrors, base.ierrors),
            oerrors: d(self.oerrors, base.oerrors),
            rx_nombuf: d(self.rx_nombuf, base.rx_nombuf),
            q_ipackets: dv(&self.q_ipackets, &base.q_ipackets),
            q_ibytes: dv(&self.q_ibytes, &base.q_ibytes),
            q_opackets: dv(&self.q_opackets, &base.q_opackets),
            q_obytes: dv(&self.q_obytes, &base.q_obytes),
            q_errors: dv(&self.q_errors, &base.q_errors),
        }
    }
}

/// A monotonically increasing counter with a single writer.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning queue handle may call this (single writer): it is a
    /// plain load and store, not an atomic read-modify-write.
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters of one receive queue; written only by its handle.
#[derive(Default, Debug)]
pub struct RxCounters {
    /// Frames received.
    pub packets: Counter,
    /// Bytes received.
    pub bytes: Counter,
    /// Frames dropped: ring full.
    pub missed: Counter,
    /// Frames dropped: errors.
    pub errors: Counter,
    /// Allocation failures.
    pub nombuf: Counter,
}

/// Counters of one transmit queue; written only by its handle.
#[derive(Default, Debug)]
pub struct TxCounters {
    /// Frames sent.
    pub packets: Counter,
    /// Bytes sent.
    pub bytes: Counter,
    /// Frames dropped: errors.
    pub errors: Counter,
}

/// The counter set of a port, shared between the port and its queue handles.
#[derive(Debug, Default)]
pub struct PortCounters {
    /// One entry per receive queue.
    pub rx: Vec<Arc<RxCounters>>,
    /// One entry per transmit queue.
    pub tx: Vec<Arc<TxCounters>>,
    baseline: PortStats,
}

impl PortCounters {
    /// Counters for the given number of queues, all zero.
    pub fn new(rx_queues: u16, tx_queues: u16) -> Self {
        PortCounters {
            rx: (0..rx_queues).map(|_| Arc::default()).collect(),
            tx: (0..tx_queues).map(|_| Arc::default()).collect(),
            baseline: PortStats::default(),
        }
    }

    fn raw(&self) -> PortStats {
        let mut s = PortStats::default();
        for q in &self.rx {
            s.ipackets += q.packets.get();
            s.ibytes += q.bytes.get();
            s.imissed += q.missed.get();
            s.ierrors += q.errors.get();
            s.rx_nombuf += q.nombuf.get();
            s.q_ipackets.push(q.packets.get());
            s.q_ibytes.push(q.bytes.get());
            s.q_errors.push(q.errors.get());
        }
        for q in &self.tx {
            s.opackets += q.packets.get();
            s.obytes += q.bytes.get();
            s.oerrors += q.errors.get();
            s.q_opackets.push(q.packets.get());
            s.q_obytes.push(q.bytes.get());
        }
        s
    }

    /// Counters since the last reset.
    pub fn snapshot(&self) -> PortStats {
        self.raw().minus(&self.baseline)
    }

    /// Makes later snapshots count from now.
    pub fn reset(&mut self) {
        self.baseline = self.raw();
    }
}

/// Total bytes of a burst and a bound on its longest frame, from the
/// headers' `data_len` (no frame data is read).
///
/// The bound is at least every frame's length, and it is at most `limit`
/// exactly when every frame is (so it serves MTU checks as the longest frame
/// would). It is the OR of the lengths when that is within `limit` — one `or`
/// per frame instead of a compare and select — and the exact longest frame
/// only otherwise (a burst with a frame over `limit`, or lengths whose OR
/// exceeds it).
#[inline]
pub fn burst_bytes_and_bound(pkts: &[Mbuf], limit: u32) -> (u64, u32) {
    let (mut bytes, mut bound) = (0u64, 0u32);
    // Four at a time: four independent header loads in flight, and one wide
    // add per four (lengths are 16 bits, so their u32 sum cannot overflow).
    let mut quads = pkts.chunks_exact(4);
    for q in &mut quads {
        let (a, b, c, d) = (q[0].len_u32(), q[1].len_u32(), q[2].len_u32(), q[3].len_u32());
        bytes += (a + b + c + d) as u64;
        bound |= a | b | c | d;
    }
    for m in quads.remainder() {
        let l = m.len_u32();
        bytes += l as u64;
        bound |= l;
    }
    if bound > limit {
        bound = burst_longest(pkts);
    }
    (bytes, bound)
}

/// The longest frame of a burst (0 for none).
#[cold]
#[inline(never)]
pub fn burst_longest(pkts: &[Mbuf]) -> u32 {
    pkts.iter().map(Mbuf::len_u32).max().unwrap_or(0)
}

/// Whether the frame fits a port's MTU: `mtu` bytes of L3 payload behind an
/// Ethernet header, plus 4 more when the frame carries an 802.1Q tag.
#[inline(always)]
pub fn frame_fits_mtu(frame: &[u8], mtu: u16) -> bool {
    let max = mtu as usize + 14;
    frame.len() <= max || (frame.len() <= max + 4 && frame.len() >= 14 && frame[12] == 0x81 && frame[13] == 0x00)
}
