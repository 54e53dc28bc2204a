//! `ring`: in-memory wires between ports of one process.
//!
//! `ring:a` alone is a loopback: what it sends, it receives (like DPDK's `net_ring`
//! vdev). `ring:a?peer=b` together with `ring:b?peer=a` is a wire between two ports:
//! transmit queue *i* of one feeds receive queue *i* of the other through a
//! single-producer/single-consumer ring of mbufs ([`crate::spsc`]), so each
//! direction of each queue pair has exactly one writer and one reader and no lock.
//!
//! Ports find each other by name in a process-wide registry. The receive rings
//! belong to the receiving port and are created when it is configured (size =
//! `rx_desc`); a sender attaches to its peer's ring lazily on its first burst and
//! re-attaches when the peer is reconfigured. The link is up when both ends are
//! started. Frames over the MTU are dropped and counted (`oerrors` on the sender,
//! `ierrors` on the receiver); without promiscuous mode a port drops unicast frames
//! not addressed to its MAC, as a NIC's filter would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use super::{claim_queue, ensure_no_handles, not_configured};
use crate::port::{
    frame_fits_mtu, Link, MacAddr, PortConfig, PortCounters, PortInfo, PortStats, RxCounters, TxCounters,
};
use crate::spsc::{Consumer, Producer, Spsc};
use crate::{Mbuf, PmdError, Port, RxOffloads, RxQueue, TxOffloads, TxQueue};

/// What travels on the wire: the frame and its length, so the receiver counts
/// bytes without touching the frame's header cache line. The sender sets
/// [`OVER_PEER_MTU`] in `len` when the frame is larger than the receiver's MTU
/// allows, so the receiver finds out with one OR per frame instead of a compare.
struct Slot {
    m: Mbuf,
    len: u32,
}

const OVER_PEER_MTU: u32 = 1 << 31;

/// Most queues a ring port supports.
pub const MAX_QUEUES: u16 = 64;

struct Endpoint {
    name: String,
    /// Receive rings, one per receive queue, replaced on configure.
    rings: Mutex<Vec<Arc<Spsc<Slot>>>>,
    /// Bumped whenever `rings` is replaced, so senders re-attach.
    generation: AtomicU64,
    open: AtomicBool,
    started: AtomicBool,
    promisc: AtomicBool,
    mtu: AtomicU16,
}

static ENDPOINTS: LazyLock<Mutex<HashMap<String, Weak<Endpoint>>>> = LazyLock::new(Default::default);

fn endpoint(name: &str) -> Arc<Endpoint> {
    let mut map = ENDPOINTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ep) = map.get(name).and_then(Weak::upgrade) {
        return ep;
    }
    map.retain(|_, w| w.strong_count() > 0);
    let ep = Arc::new(Endpoint {
        name: name.to_string(),
        rings: Mutex::new(Vec::new()),
        generation: AtomicU64::new(0),
        open: AtomicBool::new(false),
        started: AtomicBool::new(false),
        promisc: AtomicBool::new(false),
        mtu: AtomicU16::new(1500),
    });
    map.insert(name.to_string(), Arc::downgrade(&ep));
    ep
}

/// A `ring` port.
pub struct RingPort {
    me: Arc<Endpoint>,
    peer: Arc<Endpoint>,
    mac: MacAddr,
    conf: Option<PortConfig>,
    counters: PortCounters,
}

impl RingPort {
    /// Opens port `name`, wired to `peer` (itself for a loopback).
    pub fn open(name: &str, peer: Option<&str>, mac: MacAddr) -> Result<RingPort, PmdError> {
        if name.is_empty() {
            return Err(PmdError::BadSpec {
                spec: "ring:".into(),
                reason: "a ring port needs a name: ring:NAME".into(),
            });
        }
        let me = endpoint(name);
        if me.open.swap(true, Ordering::AcqRel) {
            return Err(PmdError::State {
                port: name.to_string(),
                reason: "ring port is already open in this process".into(),
            });
        }
        let peer = match peer {
            Some(p) if p != name => endpoint(p),
            _ => me.clone(),
        };
        Ok(RingPort { me, peer, mac, conf: None, counters: PortCounters::default() })
    }

    /// Name of the port at the other end of the wire.
    pub fn peer_name(&self) -> &str {
        &self.peer.name
    }
}

impl Drop for RingPort {
    fn drop(&mut self) {
        self.me.started.store(false, Ordering::Release);
        // Free what is queued towards us now rather than when the last sender goes.
        self.me.rings.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.me.generation.fetch_add(1, Ordering::AcqRel);
        self.me.open.store(false, Ordering::Release);
    }
}

impl Port for RingPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "ring",
            name: self.me.name.clone(),
            mac: self.mac,
            mtu: self.me.mtu.load(Ordering::Relaxed),
            min_mtu: 68,
            max_mtu: 9000,
            max_rx_queues: MAX_QUEUES,
            max_tx_queues: MAX_QUEUES,
            max_desc: 32768,
            rx_offloads: RxOffloads::empty(),
            tx_offloads: TxOffloads::empty(),
            rss: None,
        }
    }

    fn configure(&mut self, conf: &PortConfig) -> Result<(), PmdError> {
        if self.is_started() {
            return Err(PmdError::State {
                port: self.me.name.clone(),
                reason: "stop the port before configuring it".into(),
            });
        }
        ensure_no_handles(&self.me.name, &self.counters.rx, &self.counters.tx)?;
        conf.validate(&self.info())?;
        let rings = (0..conf.rx_queues).map(|_| Spsc::new(conf.rx_desc as usize)).collect();
        *self.me.rings.lock().unwrap_or_else(|e| e.into_inner()) = rings;
        self.me.generation.fetch_add(1, Ordering::AcqRel);
        self.counters = PortCounters::new(conf.rx_queues, conf.tx_queues);
        self.conf = Some(conf.clone());
        Ok(())
    }

    fn config(&self) -> Option<&PortConfig> {
        self.conf.as_ref()
    }

    fn start(&mut self) -> Result<(), PmdError> {
        if self.conf.is_none() {
            return Err(not_configured(&self.me.name));
        }
        self.me.started.store(true, Ordering::Release);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PmdError> {
        self.me.started.store(false, Ordering::Release);
        Ok(())
    }

    fn is_started(&self) -> bool {
        self.me.started.load(Ordering::Acquire)
    }

    fn link(&self) -> Link {
        let up =
            self.is_started() && self.peer.started.load(Ordering::Acquire) && self.peer.open.load(Ordering::Acquire);
        Link { up, speed_mbps: if up { 100_000 } else { 0 }, full_duplex: up }
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), PmdError> {
        self.me.promisc.store(on, Ordering::Release);
        Ok(())
    }

    fn promiscuous(&self) -> bool {
        self.me.promisc.load(Ordering::Acquire)
    }

    fn set_mtu(&mut self, mtu: u16) -> Result<(), PmdError> {
        let info = self.info();
        if mtu < info.min_mtu || mtu > info.max_mtu {
            return Err(PmdError::Config {
                field: "mtu",
                reason: format!("{mtu} is outside {}..={}", info.min_mtu, info.max_mtu),
            });
        }
        self.me.mtu.store(mtu, Ordering::Release);
        Ok(())
    }

    fn stats(&self) -> PortStats {
        self.counters.snapshot()
    }

    fn reset_stats(&mut self) {
        self.counters.reset()
    }

    fn take_rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>, PmdError> {
        if self.conf.is_none() {
            return Err(not_configured(&self.me.name));
        }
        let counters = claim_queue(&self.me.name, "rx", q, &self.counters.rx)?;
        let ring = self.me.rings.lock().unwrap_or_else(|e| e.into_inner())[q as usize].clone();
        let cons = ring.consumer().ok_or_else(|| PmdError::State {
            port: self.me.name.clone(),
            reason: format!("rx queue {q} is already owned by another handle"),
        })?;
        Ok(Box::new(RingRx { me: self.me.clone(), mac: self.mac, cons, counters }))
    }

    fn take_tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>, PmdError> {
        if self.conf.is_none() {
            return Err(not_configured(&self.me.name));
        }
        let counters = claim_queue(&self.me.name, "tx", q, &self.counters.tx)?;
        Ok(Box::new(RingTx {
            me: self.me.clone(),
            peer: self.peer.clone(),
            queue: q as usize,
            prod: None,
            generation: u64::MAX,
            counters,
        }))
    }
}

/// Receive queue of a `ring` port.
pub struct RingRx {
    me: Arc<Endpoint>,
    mac: MacAddr,
    cons: Consumer<Slot>,
    counters: Arc<RxCounters>,
}

impl RingRx {
    /// Removes frames over the MTU (counted as errors) and, without promiscuous
    /// mode, unicast frames for other MACs. Returns how many were removed.
    #[cold]
    fn filter(&mut self, out: &mut Vec<Mbuf>, start: usize, mtu: u16, promisc: bool) -> (u64, u64) {
        let (mut errors, mut bytes) = (0u64, 0u64);
        let mut kept = Vec::with_capacity(out.len() - start);
        for m in out.drain(start..) {
            if !frame_fits_mtu(m.data(), mtu) {
                errors += 1;
                continue;
            }
            let d = m.data();
            if !promisc && d.len() >= 6 && d[0] & 1 == 0 && d[..6] != self.mac.0 {
                continue;
            }
            bytes += m.len() as u64;
            kept.push(m);
        }
        out.append(&mut kept);
        (errors, bytes)
    }
}

impl RxQueue for RingRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        if !self.me.started.load(Ordering::Relaxed) {
            return 0;
        }
        let start = out.len();
        let (mut bytes, mut flags) = (0u64, 0u32);
        let n = self.cons.pop_into_with(out, max, |s| {
            bytes += (s.len & !OVER_PEER_MTU) as u64;
            flags |= s.len;
            s.m
        });
        if n == 0 {
            return 0;
        }
        let promisc = self.me.promisc.load(Ordering::Relaxed);
        if flags & OVER_PEER_MTU != 0 || !promisc {
            let mtu = self.me.mtu.load(Ordering::Relaxed);
            let (errors, kept_bytes) = self.filter(out, start, mtu, promisc);
            self.counters.errors.add(errors);
            bytes = kept_bytes;
        }
        let got = out.len() - start;
        self.counters.packets.add(got as u64);
        self.counters.bytes.add(bytes);
        got
    }
}

/// Transmit queue of a `ring` port.
pub struct RingTx {
    me: Arc<Endpoint>,
    peer: Arc<Endpoint>,
    queue: usize,
    prod: Option<Producer<Slot>>,
    generation: u64,
    counters: Arc<TxCounters>,
}

impl RingTx {
    #[cold]
    fn attach(&mut self, generation: u64) {
        self.prod = None;
        let rings = self.peer.rings.lock().unwrap_or_else(|e| e.into_inner());
        self.prod = rings.get(self.queue).and_then(|r| r.producer());
        drop(rings);
        if self.prod.is_some() {
            self.generation = generation;
        }
    }
}

impl TxQueue for RingTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        if pkts.is_empty() || !self.me.started.load(Ordering::Relaxed) {
            return 0;
        }
        let generation = self.peer.generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.attach(generation);
        }
        let Some(prod) = self.prod.as_mut() else { return 0 };
        let max_frame = self.me.mtu.load(Ordering::Relaxed) as usize + 14;
        // One pass, one header load per frame: the length goes into the slot and
        // the byte count, and the longest frame is noted. Slots are staged at fixed
        // positions so the loop never waits on a load to know where to store.
        let peer_max = self.peer.mtu.load(Ordering::Relaxed) as u32 + 14;
        let (mut bytes, mut longest) = (0u64, 0u32);
        let taken = prod.stage_front_of(pkts, usize::MAX, |m| {
            let len = m.len() as u32;
            bytes += len as u64;
            longest = longest.max(len);
            Slot { len: len | (((len > peer_max) as u32) << 31), m }
        });
        let mut oversized = 0u64;
        if longest as usize > max_frame {
            // Cold: take frames over the MTU back out before anyone sees them.
            prod.filter_staged(|s| {
                if frame_fits_mtu(s.m.data(), max_frame as u16 - 14) {
                    Some(s)
                } else {
                    oversized += 1;
                    bytes -= (s.len & !OVER_PEER_MTU) as u64;
                    None
                }
            });
        }
        let sent = prod.publish();
        self.counters.packets.add(sent as u64);
        self.counters.bytes.add(bytes);
        if oversized > 0 {
            self.counters.errors.add(oversized);
        }
        taken
    }
}
