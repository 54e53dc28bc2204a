//! Network impairment as a decorator over any port (our netem).
//!
//! `?loss=0.02&dup=0.01&reorder=0.05&delay_us=200&corrupt=0.001&seed=7` on any spec
//! wraps the port's queues. Per frame, in order:
//! 1. **loss**: dropped with probability `loss`;
//! 2. **corrupt**: one random bit of the frame flipped with probability `corrupt`;
//!    the flip happens on the wire, where checksums are complete: a frame whose
//!    checksums an offload left undone (a transmit request, a received
//!    `L4_CKSUM_PARTIAL`) has them finished first, and its receive verdicts
//!    (`*_CKSUM_GOOD`, `L4_CKSUM_PARTIAL`) are cleared, so the receiver verifies it
//!    and catches the corruption as a NIC would flag it ([`crate::checksum`]);
//! 3. **dup**: a copy (from the frame's own pool) follows it with probability `dup`;
//! 4. **delay / rate**: released `delay_us` later, and no faster than `rate_mbps`
//!    / `rate_pps` (a shaper, as netem's `rate`); at most `limit` frames wait,
//!    beyond that they are dropped (`queue_dropped`);
//! 5. **reorder**: with probability `reorder` a frame is held back and released
//!    right after the next frame (or at the next burst call if none follows).
//!
//! `only=ipv4|ipv6` limits the random impairments (1-3, 5) to frames of that
//! EtherType (after any VLAN tag: none here); other frames draw no decisions
//! and are only delayed and shaped. `only=ipv6&loss=1&seed=1` is an IPv6 black
//! hole on a dual-stack wire (happy-eyeballs tests).
//!
//! `dir=tx` (the default, netem's egress semantics) impairs what this port sends,
//! `dir=rx` what it receives, `dir=both` both. Decisions come from a xoshiro256++
//! stream seeded from `seed` and the queue, drawn in frame order and independently of
//! time and burst boundaries, so the same seed affects the same frames on every run.
//! `seed` is required whenever a random impairment is asked for: a run that cannot
//! be replayed is not a test.
//!
//! Every outcome is counted per queue and exposed as xstats (`impair_tx_lost`, ...);
//! for each direction, `offered + duplicated = delivered + lost + queue_dropped +
//! waiting`.

use std::collections::VecDeque;
use std::sync::Arc;

use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::clock::Clock;
use crate::port::{Counter, PortConfig};
use crate::spec::Spec;
use crate::{Mbuf, PmdError, Port, RxQueue, TxQueue};

/// Options the decorator accepts on every spec, with help text.
pub const IMPAIR_OPTIONS: &[(&str, &str)] = &[
    ("loss", "probability a frame is dropped (0..1)"),
    ("dup", "probability a frame is duplicated (0..1)"),
    ("reorder", "probability a frame is held back behind the next one (0..1)"),
    ("corrupt", "probability one bit of a frame is flipped (0..1)"),
    ("delay_us", "fixed delay added to every frame, microseconds"),
    ("rate_mbps", "shape to this many Mbit/s"),
    ("rate_pps", "shape to this many frames per second"),
    ("limit", "frames that may wait in the delay/rate queue (default 1000, as netem)"),
    ("seed", "seed of the impairment decisions (required with loss/dup/reorder/corrupt)"),
    ("dir", "tx (default), rx or both"),
    ("only", "ipv4 or ipv6: impair only frames of that EtherType (default: all)"),
];

/// Which traffic is impaired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Frames received by the port.
    Rx,
    /// Frames sent by the port.
    Tx,
    /// Both.
    Both,
}

/// The impairment settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ImpairConfig {
    /// Drop probability.
    pub loss: f64,
    /// Duplication probability.
    pub dup: f64,
    /// Reordering probability.
    pub reorder: f64,
    /// Corruption probability.
    pub corrupt: f64,
    /// Added delay in nanoseconds.
    pub delay_ns: u64,
    /// Shaping rate in bits per second.
    pub rate_bps: Option<u64>,
    /// Shaping rate in frames per second.
    pub rate_pps: Option<u64>,
    /// Frames that may wait in the delay queue.
    pub limit: usize,
    /// Seed of the decisions.
    pub seed: u64,
    /// What is impaired.
    pub dir: Direction,
    /// Only frames of this EtherType get random impairments (`None`: all).
    pub only_ethertype: Option<u16>,
}

impl ImpairConfig {
    /// No impairment at all, for building one up in code.
    pub fn none(seed: u64, dir: Direction) -> Self {
        ImpairConfig {
            loss: 0.0,
            dup: 0.0,
            reorder: 0.0,
            corrupt: 0.0,
            delay_ns: 0,
            rate_bps: None,
            rate_pps: None,
            limit: 1000,
            seed,
            dir,
            only_ethertype: None,
        }
    }

    fn needs_clock(&self) -> bool {
        self.delay_ns > 0 || self.rate_bps.is_some() || self.rate_pps.is_some()
    }

    /// Reads the impairment options of a spec; `None` when there are none.
    pub fn from_spec(spec: &Spec) -> Result<Option<ImpairConfig>, PmdError> {
        if !spec.options.iter().any(|(k, _)| IMPAIR_OPTIONS.iter().any(|(o, _)| o == k)) {
            return Ok(None);
        }
        let prob = |k: &str| -> Result<f64, PmdError> {
            let p = spec.parse_opt::<f64>(k, "a probability between 0 and 1")?.unwrap_or(0.0);
            if !(0.0..=1.0).contains(&p) {
                return Err(spec.bad_value(k, spec.get(k).unwrap_or(""), "a probability between 0 and 1"));
            }
            Ok(p)
        };
        let positive = |k: &str, what: &str| -> Result<Option<u64>, PmdError> {
            match spec.parse_opt::<u64>(k, what)? {
                Some(0) => Err(spec.bad_value(k, "0", what)),
                v => Ok(v),
            }
        };
        let dir = match spec.get("dir") {
            None | Some("tx") => Direction::Tx,
            Some("rx") => Direction::Rx,
            Some("both") => Direction::Both,
            Some(v) => return Err(spec.bad_value("dir", v, "one of tx, rx, both")),
        };
        let (loss, dup, reorder, corrupt) = (prob("loss")?, prob("dup")?, prob("reorder")?, prob("corrupt")?);
        let random = loss > 0.0 || dup > 0.0 || reorder > 0.0 || corrupt > 0.0;
        let seed = spec.parse_opt::<u64>("seed", "an unsigned integer")?;
        if random && seed.is_none() {
            return Err(PmdError::BadSpec {
                spec: spec.text.clone(),
                reason: "option 'seed' is required with loss, dup, reorder or corrupt, so the run can be replayed"
                    .into(),
            });
        }
        Ok(Some(ImpairConfig {
            loss,
            dup,
            reorder,
            corrupt,
            delay_ns: spec.parse_opt::<u64>("delay_us", "microseconds")?.unwrap_or(0) * 1000,
            rate_bps: positive("rate_mbps", "a rate in Mbit/s above 0")?.map(|m| m * 1_000_000),
            rate_pps: positive("rate_pps", "a rate in frames/s above 0")?,
            limit: positive("limit", "a frame count above 0")?.unwrap_or(1000) as usize,
            seed: seed.unwrap_or(0),
            dir,
            only_ethertype: match spec.get("only") {
                None => None,
                Some("ipv4") => Some(0x0800),
                Some("ipv6") => Some(0x86dd),
                Some(v) => return Err(spec.bad_value("only", v, "ipv4 or ipv6")),
            },
        }))
    }
}

/// Counters of one impaired queue direction (single writer: its queue handle).
#[derive(Debug, Default)]
pub struct ImpairCounters {
    /// Frames handed to the decorator.
    pub offered: Counter,
    /// Frames passed on (to the inner port for tx, to the caller for rx).
    pub delivered: Counter,
    /// Dropped by `loss`.
    pub lost: Counter,
    /// Corrupted.
    pub corrupted: Counter,
    /// Duplicates made.
    pub duplicated: Counter,
    /// Duplicates not made for lack of buffers.
    pub dup_nombuf: Counter,
    /// Held back for reordering.
    pub reordered: Counter,
    /// Dropped because the delay/rate queue was full.
    pub queue_dropped: Counter,
}

const COUNTER_NAMES: [&str; 8] =
    ["offered", "delivered", "lost", "corrupted", "duplicated", "dup_nombuf", "reordered", "queue_dropped"];

impl ImpairCounters {
    fn values(&self) -> [u64; 8] {
        [
            self.offered.get(),
            self.delivered.get(),
            self.lost.get(),
            self.corrupted.get(),
            self.duplicated.get(),
            self.dup_nombuf.get(),
            self.reordered.get(),
            self.queue_dropped.get(),
        ]
    }
}

/// The per-queue impairment engine, usable on its own by tests and tools.
pub struct Impairer {
    cfg: ImpairConfig,
    rng: Xoshiro256PlusPlus,
    clock: Arc<dyn Clock>,
    /// (release time, hold back for reordering, frame), in release order.
    waiting: VecDeque<(u64, bool, Mbuf)>,
    held: Option<Mbuf>,
    held_in_earlier_call: bool,
    next_free_ns: u64,
    /// Frames waiting outside the engine that count against `limit`.
    backlog: usize,
    /// Impairs frames being sent (else received): which offload state a
    /// corrupted frame's checksums are finished from.
    tx: bool,
    counters: Arc<ImpairCounters>,
}

fn mix(seed: u64, salt: u64) -> u64 {
    // SplitMix64 finaliser: distinct, well-spread seeds per queue and direction.
    let mut z = seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Impairer {
    /// An engine for one queue; `salt` distinguishes queues and directions.
    /// It impairs frames being sent; see [`Impairer::receiving`].
    pub fn new(cfg: ImpairConfig, salt: u64, clock: Arc<dyn Clock>) -> Self {
        Impairer {
            rng: Xoshiro256PlusPlus::seed_from_u64(mix(cfg.seed, salt)),
            cfg,
            clock,
            waiting: VecDeque::new(),
            held: None,
            held_in_earlier_call: false,
            next_free_ns: 0,
            backlog: 0,
            tx: true,
            counters: Arc::default(),
        }
    }

    /// Makes this engine impair received frames: a corrupted frame's partial
    /// checksum is finished from its receive verdict, not its transmit requests.
    pub fn receiving(mut self) -> Self {
        self.tx = false;
        self
    }

    /// This engine's counters.
    pub fn counters(&self) -> Arc<ImpairCounters> {
        self.counters.clone()
    }

    /// Frames waiting inside the engine.
    pub fn waiting(&self) -> usize {
        self.waiting.len() + self.held.is_some() as usize
    }

    #[inline]
    fn chance(&mut self, p: f64) -> bool {
        // 53 random bits as a float in [0, 1).
        p > 0.0 && ((self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)) < p
    }

    fn now(&self) -> u64 {
        if self.cfg.needs_clock() {
            self.clock.now_ns()
        } else {
            0
        }
    }

    fn enqueue(&mut self, m: Mbuf, reorder: bool, now: u64) {
        if self.waiting.len() + self.backlog >= self.cfg.limit {
            self.counters.queue_dropped.add(1);
            return;
        }
        let mut release = now + self.cfg.delay_ns;
        if self.cfg.rate_bps.is_some() || self.cfg.rate_pps.is_some() {
            release = release.max(self.next_free_ns);
            let bits_ns = self.cfg.rate_bps.map_or(0, |r| (m.len() as u64 * 8 * 1_000_000_000) / r);
            let pkt_ns = self.cfg.rate_pps.map_or(0, |r| 1_000_000_000 / r);
            self.next_free_ns = release + bits_ns.max(pkt_ns);
        }
        self.waiting.push_back((release, reorder, m));
    }

    /// Takes in frames, applying loss, corruption, duplication and queueing.
    pub fn ingest(&mut self, frames: &mut Vec<Mbuf>) {
        if frames.is_empty() {
            return;
        }
        let now = self.now();
        self.counters.offered.add(frames.len() as u64);
        for mut m in frames.drain(..) {
            if let Some(t) = self.cfg.only_ethertype {
                let d = m.data();
                if d.len() < 14 || u16::from_be_bytes([d[12], d[13]]) != t {
                    self.enqueue(m, false, now);
                    continue;
                }
            }
            if self.chance(self.cfg.loss) {
                self.counters.lost.add(1);
                continue;
            }
            if self.chance(self.cfg.corrupt) {
                if self.tx {
                    crate::checksum::finish_tx(&mut m);
                    crate::checksum::unmark(&mut m);
                } else {
                    crate::checksum::finish_rx_and_unmark(&mut m);
                }
                let bits = m.len() as u64 * 8;
                let bit = self.rng.next_u64() % bits.max(1);
                if let Some(b) = m.data_mut().get_mut((bit / 8) as usize) {
                    *b ^= 1 << (bit % 8);
                    self.counters.corrupted.add(1);
                }
            }
            let dup = self.chance(self.cfg.dup);
            let reorder = self.chance(self.cfg.reorder);
            let copy = if dup {
                match m.try_clone() {
                    Ok(c) => {
                        self.counters.duplicated.add(1);
                        Some(c)
                    }
                    Err(_) => {
                        self.counters.dup_nombuf.add(1);
                        None
                    }
                }
            } else {
                None
            };
            self.enqueue(m, reorder, now);
            if let Some(c) = copy {
                self.enqueue(c, false, now);
            }
        }
    }

    /// Moves up to `max` frames that are due to `out`, in release order with
    /// reordering applied; returns how many. The caller counts them as delivered
    /// once they really are (see [`ImpairCounters::delivered`]).
    pub fn release(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        let start = out.len();
        if self.held_in_earlier_call && max > 0 {
            if let Some(h) = self.held.take() {
                out.push(h);
            }
        }
        let now = if self.waiting.is_empty() { 0 } else { self.now() };
        while out.len() - start < max {
            match self.waiting.front() {
                Some((t, _, _)) if *t <= now => {}
                _ => break,
            }
            let (_, reorder, m) = self.waiting.pop_front().expect("front checked");
            if reorder && self.held.is_none() {
                self.counters.reordered.add(1);
                self.held = Some(m);
                self.held_in_earlier_call = false;
                continue;
            }
            out.push(m);
            if out.len() - start < max {
                if let Some(h) = self.held.take() {
                    out.push(h);
                }
            }
        }
        self.held_in_earlier_call = self.held.is_some();
        out.len() - start
    }
}

/// An impaired receive queue.
pub struct ImpairRx {
    inner: Box<dyn RxQueue>,
    imp: Impairer,
    scratch: Vec<Mbuf>,
}

impl RxQueue for ImpairRx {
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        if self.imp.waiting.len() < self.imp.cfg.limit {
            self.inner.rx_burst(&mut self.scratch, max);
            self.imp.ingest(&mut self.scratch);
        }
        let n = self.imp.release(out, max);
        self.imp.counters.delivered.add(n as u64);
        n
    }
}

/// An impaired transmit queue.
pub struct ImpairTx {
    inner: Box<dyn TxQueue>,
    imp: Impairer,
    /// Released but not yet accepted by the inner queue: still "on the wire".
    ready: Vec<Mbuf>,
}

impl TxQueue for ImpairTx {
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        let n = pkts.len();
        self.imp.backlog = self.ready.len();
        self.imp.ingest(pkts);
        self.imp.release(&mut self.ready, usize::MAX);
        // Frames the inner queue refuses stay in `ready`, still on the wire, and are
        // retried on the next call; only accepted ones count as delivered.
        let sent = if self.ready.is_empty() { 0 } else { self.inner.tx_burst(&mut self.ready) };
        self.imp.counters.delivered.add(sent as u64);
        n
    }
}

/// A port whose queues are impaired.
pub struct ImpairPort {
    inner: Box<dyn Port>,
    cfg: ImpairConfig,
    clock: Arc<dyn Clock>,
    rx: Vec<Arc<ImpairCounters>>,
    tx: Vec<Arc<ImpairCounters>>,
    baseline: Vec<(String, u64)>,
}

impl ImpairPort {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn Port>, cfg: ImpairConfig, clock: Arc<dyn Clock>) -> Self {
        ImpairPort { inner, cfg, clock, rx: Vec::new(), tx: Vec::new(), baseline: Vec::new() }
    }

    fn raw_xstats(&self) -> Vec<(String, u64)> {
        let mut v = Vec::new();
        for (dir, list) in [("rx", &self.rx), ("tx", &self.tx)] {
            let mut sum = [0u64; 8];
            for c in list {
                for (s, x) in sum.iter_mut().zip(c.values()) {
                    *s += x;
                }
            }
            for (name, x) in COUNTER_NAMES.iter().zip(sum) {
                v.push((format!("impair_{dir}_{name}"), x));
            }
        }
        v
    }
}

impl Port for ImpairPort {
    crate::port::delegate_port_basics!();

    fn configure(&mut self, conf: &PortConfig) -> Result<(), PmdError> {
        self.inner.configure(conf)?;
        self.rx = (0..conf.rx_queues).map(|_| Arc::default()).collect();
        self.tx = (0..conf.tx_queues).map(|_| Arc::default()).collect();
        self.baseline.clear();
        Ok(())
    }
    fn reset_stats(&mut self) {
        self.inner.reset_stats();
        self.baseline = self.raw_xstats();
    }
    fn xstats(&self) -> Vec<(String, u64)> {
        let mut v = self.inner.xstats();
        for (i, (k, x)) in self.raw_xstats().into_iter().enumerate() {
            let base = self.baseline.get(i).map_or(0, |b| b.1);
            v.push((k, x.wrapping_sub(base)));
        }
        v
    }
    fn take_rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>, PmdError> {
        let inner = self.inner.take_rx_queue(q)?;
        if self.cfg.dir == Direction::Tx {
            return Ok(inner);
        }
        let mut imp = Impairer::new(self.cfg.clone(), (q as u64) << 1, self.clock.clone()).receiving();
        imp.counters = self.rx[q as usize].clone();
        Ok(Box::new(ImpairRx { inner, imp, scratch: Vec::new() }))
    }
    fn take_tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>, PmdError> {
        let inner = self.inner.take_tx_queue(q)?;
        if self.cfg.dir == Direction::Rx {
            return Ok(inner);
        }
        let mut imp = Impairer::new(self.cfg.clone(), ((q as u64) << 1) | 1, self.clock.clone());
        imp.counters = self.tx[q as usize].clone();
        Ok(Box::new(ImpairTx { inner, imp, ready: Vec::new() }))
    }
}
