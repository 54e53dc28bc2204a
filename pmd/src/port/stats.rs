//! Port counters: [`PortStats`] with the names DPDK users know, and the
//! single-writer [`Counter`]s each queue handle owns.
//!
//! Each queue handle owns its counters and is their only writer; it adds to them
//! once per burst with plain loads and stores (no atomic read-modify-write on the
//! data path). Readers see consistent-enough snapshots through relaxed atomics.
//! `reset_stats` does not write the counters (that would race with the writer); it
//! records a baseline that later reads subtract.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

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
