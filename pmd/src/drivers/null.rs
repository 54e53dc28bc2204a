//! `null`: receive returns freshly allocated frames, transmit frees them.
//!
//! Like DPDK's `net_null`, this is the pure-overhead baseline: no wire, no copy,
//! nothing but the mempool and the burst path. Received frames are `size` bytes
//! (spec option, default 64) whose contents are whatever the buffer held.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;

use super::PortState;
use crate::port::{frame_fits_mtu, Link, MacAddr, PortConfig, PortInfo, PortStats, RxCounters, TxCounters};
use crate::spec::{DriverInfo, OpenEnv, Spec};
use crate::{Mbuf, Mempool, PmdError, Port, RxOffloads, RxQueue, TxOffloads, TxQueue};

/// Largest frame `null` produces.
pub const MAX_FRAME: usize = 9018;

/// A `null` port.
pub struct NullPort {
    state: PortState,
    mac: MacAddr,
    frame_len: u32,
    /// Shared with the transmit queues, so `set_mtu` applies to queues already taken.
    mtu: Arc<AtomicU16>,
    promisc: bool,
    started: Arc<AtomicBool>,
}

impl NullPort {
    /// A port producing `frame_len`-byte frames.
    pub fn new(name: &str, frame_len: usize, mac: MacAddr) -> Result<NullPort, PmdError> {
        if frame_len == 0 || frame_len > MAX_FRAME {
            return Err(PmdError::Config { field: "size", reason: format!("{frame_len} is outside 1..={MAX_FRAME}") });
        }
        Ok(NullPort {
            state: PortState::new(name),
            mac,
            frame_len: frame_len as u32,
            mtu: Arc::new(AtomicU16::new(9000)),
            promisc: false,
            started: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Port for NullPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "null",
            name: self.state.name.clone(),
            mac: self.mac,
            mtu: self.mtu.load(Ordering::Relaxed),
            min_mtu: 68,
            max_mtu: 9000,
            max_rx_queues: 64,
            max_tx_queues: 64,
            max_desc: 32768,
            rx_offloads: RxOffloads::empty(),
            tx_offloads: TxOffloads::empty(),
            rss: None,
        }
    }

    fn configure(&mut self, conf: &PortConfig) -> Result<(), PmdError> {
        self.state.ensure_configurable(self.is_started())?;
        conf.validate(&self.info())?;
        if conf.mempool.data_room() < self.frame_len as usize {
            return Err(PmdError::Config {
                field: "mempool",
                reason: format!(
                    "data room {} is smaller than the frame size {}",
                    conf.mempool.data_room(),
                    self.frame_len
                ),
            });
        }
        self.state.set_configured(conf);
        Ok(())
    }

    fn config(&self) -> Option<&PortConfig> {
        self.state.config()
    }

    fn start(&mut self) -> Result<(), PmdError> {
        self.state.start(&self.started)
    }

    fn stop(&mut self) -> Result<(), PmdError> {
        self.started.store(false, Ordering::Release);
        Ok(())
    }

    fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    fn link(&self) -> Link {
        Link { up: self.is_started(), speed_mbps: 10_000, full_duplex: true }
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), PmdError> {
        self.promisc = on;
        Ok(())
    }

    fn promiscuous(&self) -> bool {
        self.promisc
    }

    fn set_mtu(&mut self, mtu: u16) -> Result<(), PmdError> {
        self.info().check_mtu(mtu)?;
        self.mtu.store(mtu, Ordering::Relaxed);
        Ok(())
    }

    fn stats(&self) -> PortStats {
        self.state.stats()
    }

    fn reset_stats(&mut self) {
        self.state.reset_stats()
    }

    fn take_rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>, PmdError> {
        let counters = self.state.claim_rx(q)?;
        Ok(Box::new(NullRx {
            pool: self.state.configured()?.mempool.clone(),
            frame_len: self.frame_len as usize,
            started: self.started.clone(),
            counters,
        }))
    }

    fn take_tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>, PmdError> {
        let counters = self.state.claim_tx(q)?;
        Ok(Box::new(NullTx { mtu: self.mtu.clone(), started: self.started.clone(), counters }))
    }
}

/// Receive queue of a `null` port.
pub struct NullRx {
    pool: Mempool,
    frame_len: usize,
    started: Arc<AtomicBool>,
    counters: Arc<RxCounters>,
}

impl RxQueue for NullRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        if max == 0 || !self.started.load(Ordering::Relaxed) {
            return 0;
        }
        let start = out.len();
        if self.pool.alloc_bulk(out, max).is_err() {
            self.counters.nombuf.add(max as u64);
            return 0;
        }
        for m in &mut out[start..] {
            // Cannot fail: configure checked the data room against the frame size.
            let _ = m.set_len(self.frame_len);
        }
        self.counters.packets.add(max as u64);
        self.counters.bytes.add((max * self.frame_len) as u64);
        max
    }
}

/// Transmit queue of a `null` port.
pub struct NullTx {
    mtu: Arc<AtomicU16>,
    started: Arc<AtomicBool>,
    counters: Arc<TxCounters>,
}

impl TxQueue for NullTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        let n = pkts.len();
        if n == 0 || !self.started.load(Ordering::Relaxed) {
            return 0;
        }
        let mut bytes = 0u64;
        let mut errors = 0u64;
        let mtu = self.mtu.load(Ordering::Relaxed);
        for m in pkts.iter() {
            if frame_fits_mtu(m.data(), mtu) {
                bytes += m.len() as u64;
            } else {
                errors += 1;
            }
        }
        self.counters.packets.add(n as u64 - errors);
        self.counters.bytes.add(bytes);
        if errors > 0 {
            self.counters.errors.add(errors);
        }
        crate::mempool::free_bulk(pkts);
        n
    }
}

// The port spec: this driver's options, read from `scheme:target?...`.

/// This driver in the port registry ([`crate::registry`]).
pub(crate) const DRIVER: DriverInfo = DriverInfo {
    scheme: "null",
    usage: "null[:NAME][?size=64] — rx returns new frames, tx frees them",
    options: &[("size", "received frame length in bytes (default 64)"), ("mac", "MAC address")],
    shared_pool: false,
    open: open_null,
};

fn open_null(spec: &Spec, _: &OpenEnv) -> Result<Box<dyn Port>, PmdError> {
    let size = spec.parse_opt::<usize>("size", "a frame length in bytes, 1..=9018")?.unwrap_or(64);
    if size == 0 || size > MAX_FRAME {
        return Err(spec.bad_value("size", &size.to_string(), "a frame length in bytes, 1..=9018"));
    }
    let name = if spec.target.is_empty() { "null" } else { spec.target.as_str() };
    let mac = spec.mac(&format!("null:{name}"))?;
    Ok(Box::new(NullPort::new(name, size, mac)?))
}
