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
//! # Where things are
//! - here: the [`Port`] trait, [`PortInfo`], [`PortConfig`], [`Link`];
//! - `queue`: the queue handles and [`Received`] bursts;
//! - `offload`: offload and RSS flags;
//! - `stats`: [`PortStats`] and the per-queue counters (single writer, no
//!   atomic read-modify-write on the data path);
//! - `mac`: [`MacAddr`];
//! - `burst`: byte counts and MTU checks over a burst's headers.

mod burst;
mod mac;
mod offload;
mod queue;
mod stats;

pub use burst::{burst_bytes_and_bound, burst_longest, frame_fits_mtu};
pub use mac::MacAddr;
pub use offload::{RssCapabilities, RssConfig, RssHashTypes, RxOffloads, TxOffloads};
#[cfg(feature = "dpdk")]
pub(crate) use queue::Origin;
pub use queue::{downcast_rx, downcast_tx, QueueAny, Received, RxQueue, TxQueue};
pub use stats::{Counter, PortCounters, PortStats, RxCounters, TxCounters};

use serde::Serialize;

use crate::{Mempool, PmdError};

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
