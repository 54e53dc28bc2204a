//! `ring`: in-memory wires between ports of one process.
//!
//! `ring:a` alone is a loopback: what it sends, it receives (like DPDK's `net_ring`
//! vdev). `ring:a?peer=b` together with `ring:b?peer=a` is a wire between two ports:
//! transmit queue *i* of one feeds receive queue *i* of the other through a
//! single-producer/single-consumer ring of mbufs ([`crate::spsc`]), so each
//! direction of each queue pair has exactly one writer and one reader and no lock.
//!
//! Each direction of a queue pair is a *lane*: a ring of frames plus a ring of
//! burst descriptors (`frames`, `bytes`, `longest`), one per `tx_burst`. The sender
//! sums lengths once (from the headers it is sending); the receiver takes whole
//! bursts with a plain copy and reads its byte count and MTU verdict off the
//! descriptor, summing per frame only for a burst split across two `rx_burst`
//! calls. Per frame, the data path is then a copy of an 8-byte handle each way,
//! like `rte_ring`'s pointer copy, and yet every port keeps exact byte counters
//! and MTU enforcement, which DPDK's `net_ring` does not.
//!
//! `checks=none` gives DPDK's `net_ring` contract instead: no MTU enforcement
//! and no byte counters (they read 0), so no frame header is read and a lane
//! towards such a port has no descriptor ring: a burst is one handle copy
//! each way. A sender with `checks=none` still writes descriptors for a
//! receiver with `checks=full`, which enforces its own MTU.
//!
//! Ports find each other by name in a process-wide registry. The receive rings
//! belong to the receiving port and are created when it is configured (size =
//! `rx_desc`); a sender attaches to its peer's ring lazily on its first burst and
//! re-attaches when the peer is reconfigured.
//!
//! **RSS** (`rss=1`, off by default): the port offers software RSS
//! ([`crate::rss`]: 40-byte key, 128-entry table, every hash type), and when it
//! is configured with an [`RssConfig`](crate::RssConfig) every frame sent
//! *to* it is hashed by the sender's queue, on the receiver's behalf, and
//! enqueued on receive queue `reta[hash % len]` — what a NIC does, done on
//! the sending core, whose cache holds the headers. A frame RSS cannot hash
//! (ARP, a truncated header) gets hash 0 and so reaches `reta[0]`, where the
//! port's table says, as on Intel NICs. Since any transmit queue may then feed
//! any receive queue, a receive queue has one lane (an SPSC pair) per sending
//! queue that has fed it: a sender creates its lane on first attach and bumps
//! the port's `lanes_added`, and the receive queue adopts new lanes when it
//! sees that counter move (one relaxed load per burst), then polls its lanes
//! round robin. Each lane still has one writer and one reader, so there is no
//! lock on the data path. Without RSS the only lane of receive queue *i* is
//! the one from transmit queue *i*, as before. The link is up when both ends are
//! started. Frames over the MTU are dropped and counted (`oerrors` on the sender,
//! `ierrors` on the receiver); without promiscuous mode a port drops unicast frames
//! not addressed to its MAC, as a NIC's filter would.
//!
//! **Checksum offload** (`csum=1`, off by default): the port then offers the IPv4,
//! TCP and UDP transmit checksum offloads and the matching receive verdicts, as
//! Linux's loopback and veth do (`NETIF_F_HW_CSUM`, `CHECKSUM_PARTIAL`): memory
//! does not corrupt frames, so a checksum nobody has computed yet cannot be
//! wrong. When the sending port's configuration enables them, a frame that asks
//! for its IPv4 header checksum gets it (20 bytes, computed here) and arrives
//! marked `IP_CKSUM_GOOD`; one that asks for its TCP/UDP checksum arrives with
//! the field still holding the pseudo-header sum and marked `L4_CKSUM_PARTIAL`
//! (virtio's `NEEDS_CSUM`: the data is trusted). Every frame's receive verdicts
//! are set by the sender's queue (the frame's header line is hot on that core);
//! frames that asked for nothing arrive with none, and their receiver verifies
//! in software. The impairment decorator's `corrupt=` finishes such a frame's
//! checksums before it flips a bit and clears the verdicts, so corruption is
//! still caught and counted by the receiver, as a NIC would flag it; the capture
//! decorator writes frames with their checksums finished ([`crate::checksum`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use super::PortState;
use crate::port::{
    burst_bytes_and_bound, frame_fits_mtu, Link, MacAddr, PortConfig, PortInfo, PortStats, RxCounters, TxCounters,
};
use crate::rss::Rss;
use crate::spec::{DriverInfo, OpenEnv, Spec};
use crate::spsc::{Consumer, Producer, Spsc};
use crate::{Mbuf, PmdError, Port, RxFlags, RxOffloads, RxQueue, TxFlags, TxOffloads, TxQueue};

/// Most queues a ring port supports.
pub const MAX_QUEUES: u16 = 64;

/// The checksum offloads a `csum=1` port offers.
const CSUM_TX: TxOffloads = TxOffloads::IPV4_CKSUM.union(TxOffloads::TCP_CKSUM).union(TxOffloads::UDP_CKSUM);
const CSUM_RX: RxOffloads = RxOffloads::IPV4_CKSUM.union(RxOffloads::TCP_CKSUM).union(RxOffloads::UDP_CKSUM);

/// One burst as the sender saw it.
#[derive(Clone, Copy)]
struct Burst {
    frames: u32,
    /// At least the longest frame's length, and within the sender's MTU
    /// exactly when every frame is ([`burst_bytes_and_bound`]); a receiver
    /// with a smaller MTU checks frame by frame when it exceeds its own.
    longest: u32,
    bytes: u64,
}

/// Frames from one sending queue to one receiving queue. `bursts` exists
/// when the receiving port keeps exact counters (`checks=full`).
struct Lane {
    /// The sending (transmit) queue.
    src: usize,
    frames: Arc<Spsc<Mbuf>>,
    bursts: Option<Arc<Spsc<Burst>>>,
}

impl Lane {
    fn new(src: usize, desc: usize, checks: bool) -> Lane {
        Lane { src, frames: Spsc::new(desc), bursts: checks.then(|| Spsc::new(desc)) }
    }
}

/// The receive side of a configured port.
#[derive(Default)]
struct Rings {
    /// Ring size (`rx_desc`).
    desc: usize,
    /// Whether lanes carry burst descriptors (the receiver's `checks=full`).
    checks: bool,
    /// Per receive queue, the lanes that feed it.
    queues: Vec<Vec<Lane>>,
}

impl Rings {
    /// The lane from transmit queue `src` into receive queue `q`, created if
    /// needed (`None` when `q` does not exist). The flag says it is new.
    fn lane(&mut self, q: usize, src: usize) -> Option<(&Lane, bool)> {
        let (desc, checks) = (self.desc, self.checks);
        let lanes = self.queues.get_mut(q)?;
        let created = match lanes.iter().position(|l| l.src == src) {
            Some(i) => return Some((&lanes[i], false)),
            None => {
                lanes.push(Lane::new(src, desc, checks));
                true
            }
        };
        lanes.last().map(|l| (l, created))
    }
}

struct Endpoint {
    name: String,
    /// Receive lanes, replaced on configure.
    rings: Mutex<Rings>,
    /// Bumped whenever `rings` is replaced, so senders re-attach.
    generation: AtomicU64,
    /// Bumped whenever a sender adds a lane, so receive queues adopt it.
    lanes_added: AtomicU64,
    /// Set when the port was opened with `rss=1` and configured with RSS.
    rss: Mutex<Option<Arc<Rss>>>,
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
        rings: Mutex::new(Rings::default()),
        generation: AtomicU64::new(0),
        lanes_added: AtomicU64::new(0),
        rss: Mutex::new(None),
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
    /// Checksum offloads offered (`csum=1`).
    csum: bool,
    state: PortState,
    /// `checks=full` (MTU enforcement, byte counters) or `none`.
    checks: bool,
    /// RSS offered (`rss=1`).
    rss: bool,
}

impl RingPort {
    /// Opens port `name`, wired to `peer` (itself for a loopback), with the
    /// defaults: no checksum offloads, `checks=full`.
    pub fn open(name: &str, peer: Option<&str>, mac: MacAddr) -> Result<RingPort, PmdError> {
        Self::open_with(name, peer, mac, false, true)
    }

    /// Offers software RSS (the spec's `rss=1`; see the module documentation).
    pub fn with_rss(mut self, on: bool) -> Self {
        self.rss = on;
        self
    }

    /// Opens port `name`; `csum` offers the checksum offloads and `checks` is
    /// the spec's `checks=full|none` (see the module documentation).
    pub fn open_with(
        name: &str,
        peer: Option<&str>,
        mac: MacAddr,
        csum: bool,
        checks: bool,
    ) -> Result<RingPort, PmdError> {
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
        Ok(RingPort { me, peer, mac, csum, state: PortState::new(name), checks, rss: false })
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
        self.me.rings.lock().unwrap_or_else(|e| e.into_inner()).queues.clear();
        *self.me.rss.lock().unwrap_or_else(|e| e.into_inner()) = None;
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
            rx_offloads: if self.csum { CSUM_RX } else { RxOffloads::empty() },
            tx_offloads: if self.csum { CSUM_TX } else { TxOffloads::empty() },
            rss: self.rss.then(crate::rss::software_capabilities),
        }
    }

    fn configure(&mut self, conf: &PortConfig) -> Result<(), PmdError> {
        self.state.ensure_configurable(self.is_started())?;
        conf.validate(&self.info())?;
        let rss = conf.rss.as_ref().map(Rss::new).transpose()?.map(Arc::new);
        let desc = conf.rx_desc as usize;
        // Queue i's lane from transmit queue i exists from the start (the
        // only one without RSS); with RSS, senders add the others.
        let queues = (0..conf.rx_queues as usize).map(|q| vec![Lane::new(q, desc, self.checks)]).collect();
        *self.me.rings.lock().unwrap_or_else(|e| e.into_inner()) = Rings { desc, checks: self.checks, queues };
        *self.me.rss.lock().unwrap_or_else(|e| e.into_inner()) = rss;
        self.me.generation.fetch_add(1, Ordering::AcqRel);
        self.state.set_configured(conf);
        Ok(())
    }

    fn config(&self) -> Option<&PortConfig> {
        self.state.config()
    }

    fn start(&mut self) -> Result<(), PmdError> {
        self.state.start(&self.me.started)
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
        self.info().check_mtu(mtu)?;
        self.me.mtu.store(mtu, Ordering::Release);
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
        let mut rx = RingRx {
            me: self.me.clone(),
            mac: self.mac,
            queue: q as usize,
            lanes: Vec::new(),
            next: 0,
            seen: 0,
            full: self.checks,
            counters,
        };
        rx.adopt();
        if rx.lanes.is_empty() {
            return Err(PmdError::State {
                port: self.me.name.clone(),
                reason: format!("rx queue {q} is already owned by another handle"),
            });
        }
        Ok(Box::new(rx))
    }

    fn take_tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>, PmdError> {
        let counters = self.state.claim_tx(q)?;
        let offloads = self.state.configured()?.tx_offloads & CSUM_TX;
        Ok(Box::new(RingTx {
            csum: !offloads.is_empty(),
            me: self.me.clone(),
            peer: self.peer.clone(),
            queue: q as usize,
            dest: Vec::new(),
            rss: None,
            groups: Vec::new(),
            generation: u64::MAX,
            counters,
            checks: self.checks,
        }))
    }
}

/// Receive queue of a `ring` port.
pub struct RingRx {
    me: Arc<Endpoint>,
    mac: MacAddr,
    queue: usize,
    /// The lanes feeding this queue (one per sending queue).
    lanes: Vec<RxLane>,
    /// The lane the next burst starts from (round robin).
    next: usize,
    /// `lanes_added` when the lanes were last adopted.
    seen: u64,
    /// `checks=full`: lanes carry burst descriptors.
    full: bool,
    counters: Arc<RxCounters>,
}

/// This queue's end of one lane.
struct RxLane {
    frames: Consumer<Mbuf>,
    /// Burst descriptors, with `checks=full`.
    bursts: Option<Consumer<Burst>>,
    /// The rest of a burst of which an earlier call took only the front.
    partial: Option<Burst>,
}

impl RxLane {
    /// Takes whole bursts (the front of the last one if `max` ends inside
    /// it) and returns (frames, bytes, longest).
    #[inline]
    fn take(&mut self, out: &mut Vec<Mbuf>, max: usize) -> (usize, u64, u32) {
        let Some(bursts) = self.bursts.as_mut() else {
            return (self.frames.pop_into(out, max), 0, 0);
        };
        let (mut bytes, mut longest) = (0u64, 0u32);
        let mut taken = 0;
        while taken < max {
            let Some(mut b) = self.partial.take().or_else(|| bursts.pop()) else { break };
            let k = (b.frames as usize).min(max - taken);
            // The burst's frames were published before its descriptor.
            let got = self.frames.pop_into(out, k);
            debug_assert_eq!(got, k);
            longest = longest.max(b.longest);
            if k == b.frames as usize {
                bytes += b.bytes;
            } else {
                // Split burst: sum the front we took
                // and keep the rest for the next call.
                let front: u64 = out[out.len() - k..].iter().map(|m| m.len() as u64).sum();
                bytes += front;
                b.frames -= k as u32;
                b.bytes -= front;
                self.partial = Some(b);
            }
            taken += k;
        }
        (taken, bytes, longest)
    }
}

impl RingRx {
    /// Takes this queue's end of every lane a sender has added since the
    /// last call.
    #[cold]
    fn adopt(&mut self) {
        self.seen = self.me.lanes_added.load(Ordering::Acquire);
        let rings = self.me.rings.lock().unwrap_or_else(|e| e.into_inner());
        for lane in rings.queues.get(self.queue).into_iter().flatten() {
            let Some(frames) = lane.frames.consumer() else { continue };
            let bursts = match &lane.bursts {
                Some(b) => match b.consumer() {
                    Some(c) => Some(c),
                    None => continue,
                },
                None => None,
            };
            self.lanes.push(RxLane { frames, bursts, partial: None });
        }
    }

    /// Removes frames over the MTU (counted as errors) and, without promiscuous
    /// mode, unicast frames for other MACs. Returns how many were removed.
    ///
    /// Runs on every burst of a port that is not promiscuous (a stack's), so
    /// it compacts the vector in place rather than allocating.
    fn filter(&mut self, out: &mut Vec<Mbuf>, start: usize, mtu: u16, promisc: bool) -> (u64, u64) {
        let (mut errors, mut bytes) = (0u64, 0u64);
        let mut kept = start;
        for i in start..out.len() {
            let d = out[i].data();
            if !frame_fits_mtu(d, mtu) {
                errors += 1;
                continue;
            }
            if !promisc && d.len() >= 6 && d[0] & 1 == 0 && d[..6] != self.mac.0 {
                continue;
            }
            bytes += d.len() as u64;
            out.swap(kept, i);
            kept += 1;
        }
        out.truncate(kept);
        (errors, bytes)
    }
}

impl RxQueue for RingRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        if !self.me.started.load(Ordering::Relaxed) {
            return 0;
        }
        if self.me.lanes_added.load(Ordering::Relaxed) != self.seen {
            self.adopt();
        }
        let start = out.len();
        let n = self.lanes.len();
        let (mut bytes, mut longest, mut taken) = (0u64, 0u32, 0usize);
        for k in 0..n {
            let i = if n == 1 { 0 } else { (self.next + k) % n };
            let (t, b, l) = self.lanes[i].take(out, max - taken);
            taken += t;
            bytes += b;
            longest = longest.max(l);
            if taken == max {
                break;
            }
        }
        if n > 1 {
            self.next = (self.next + 1) % n;
        }
        if taken == 0 {
            return 0;
        }
        if !self.full {
            // checks=none: frames only, as DPDK's net_ring.
            if !self.me.promisc.load(Ordering::Relaxed) {
                self.filter(out, start, u16::MAX, false);
            }
            let got = out.len() - start;
            self.counters.packets.add(got as u64);
            return got;
        }
        let mtu = self.me.mtu.load(Ordering::Relaxed);
        let promisc = self.me.promisc.load(Ordering::Relaxed);
        if longest as usize > mtu as usize + 14 || !promisc {
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

/// A sender's end of one lane: frames, and burst descriptors when the
/// receiver keeps exact counters.
type Prod = (Producer<Mbuf>, Option<Producer<Burst>>);

/// Transmit queue of a `ring` port.
pub struct RingTx {
    /// Checksum offloads are enabled: set every frame's receive verdicts.
    csum: bool,
    me: Arc<Endpoint>,
    peer: Arc<Endpoint>,
    queue: usize,
    /// Lanes into the peer's receive queues: without RSS one, into queue
    /// `queue`; with RSS one per receive queue, indexed by it.
    dest: Vec<Option<Prod>>,
    /// The peer's RSS, when it steers.
    rss: Option<Arc<Rss>>,
    /// With RSS, per receive queue the frames of the burst bound there
    /// (kept to reuse their allocations).
    groups: Vec<Vec<Mbuf>>,
    generation: u64,
    counters: Arc<TxCounters>,
    checks: bool,
}

/// What a burst onto one lane needs besides the lane.
struct TxSide<'a> {
    me: &'a Endpoint,
    csum: bool,
    checks: bool,
    counters: &'a TxCounters,
}

impl TxSide<'_> {
    #[cold]
    fn drop_oversized(&self, pkts: &mut Vec<Mbuf>, max_frame: usize) -> usize {
        let before = pkts.len();
        pkts.retain(|m| frame_fits_mtu(m.data(), (max_frame - 14) as u16));
        let dropped = before - pkts.len();
        self.counters.errors.add(dropped as u64);
        dropped
    }

    /// Sends the front of `pkts` onto one lane (see [`TxQueue::tx_burst`]).
    #[inline]
    fn send(&self, (frames, bursts): &mut Prod, pkts: &mut Vec<Mbuf>) -> usize {
        if !self.checks && bursts.is_none() {
            // checks=none on both ends: a plain move of the handles (after
            // the checksum offloads, which are a request, not a check).
            let n = frames.free_space(pkts.len()).min(pkts.len());
            if self.csum {
                RingTx::offload(&mut pkts[..n]);
            }
            let sent = frames.push_front_of(pkts, n);
            self.counters.packets.add(sent as u64);
            return sent;
        }
        let max_frame = if self.checks { self.me.mtu.load(Ordering::Relaxed) as usize + 14 } else { usize::MAX >> 1 };
        // `longest` is a bound that is within `max_frame` exactly when every
        // frame is.
        let (mut bytes, mut longest) = burst_bytes_and_bound(pkts, max_frame as u32);
        let mut dropped = 0;
        if longest as usize > max_frame {
            dropped = self.drop_oversized(pkts, max_frame);
            (bytes, longest) = burst_bytes_and_bound(pkts, max_frame as u32);
        }
        let n = frames.free_space(pkts.len()).min(pkts.len());
        if n == 0 || bursts.as_mut().is_some_and(|b| b.free_space(1) == 0) {
            return dropped;
        }
        if n < pkts.len() {
            (bytes, longest) = burst_bytes_and_bound(&pkts[..n], max_frame as u32);
        }
        if self.csum {
            RingTx::offload(&mut pkts[..n]);
        }
        let sent = frames.push_front_of(pkts, n);
        debug_assert_eq!(sent, n);
        if let Some(bursts) = bursts {
            let queued = bursts.push(Burst { frames: sent as u32, longest, bytes });
            debug_assert!(queued.is_ok(), "checked free space above");
        }
        self.counters.packets.add(sent as u64);
        if self.checks {
            self.counters.bytes.add(bytes);
        }
        sent + dropped
    }
}

impl RingTx {
    /// Does what the enabled checksum offloads ask of each frame (see the
    /// module documentation) and sets the verdicts it will arrive with.
    fn offload(pkts: &mut [Mbuf]) {
        for m in pkts {
            let f = m.tx_flags();
            let mut rx = RxFlags::empty();
            if f.contains(TxFlags::IP_CKSUM) && f.contains(TxFlags::IPV4) {
                let l3 = m.meta().l2_len as usize;
                crate::checksum::fill_ipv4_header(m.data_mut(), l3);
                rx |= RxFlags::IP_CKSUM_GOOD;
            }
            if f.intersects(TxFlags::TCP_CKSUM | TxFlags::UDP_CKSUM) {
                rx |= RxFlags::L4_CKSUM_PARTIAL;
            }
            m.set_rx_flags(rx);
        }
    }

    /// (Re)takes this queue's lanes into the peer, after the peer was
    /// (re)configured.
    #[cold]
    fn attach(&mut self, generation: u64) {
        self.dest.clear();
        let rss = self.peer.rss.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut rings = self.peer.rings.lock().unwrap_or_else(|e| e.into_inner());
        let targets = if rss.is_some() { 0..rings.queues.len() } else { self.queue..self.queue + 1 };
        let mut added = false;
        for q in targets {
            let prod = rings.lane(q, self.queue).and_then(|(l, new)| {
                added |= new;
                let bursts = match &l.bursts {
                    Some(b) => Some(b.producer()?),
                    None => None,
                };
                Some((l.frames.producer()?, bursts))
            });
            self.dest.push(prod);
        }
        drop(rings);
        if added {
            self.peer.lanes_added.fetch_add(1, Ordering::AcqRel);
        }
        self.rss = rss;
        self.groups.resize_with(self.dest.len(), Vec::new);
        if self.dest.iter().any(Option::is_some) {
            self.generation = generation;
        }
    }

    /// With RSS: each frame to the receive queue the peer's table names.
    /// Unsent frames go back to `pkts`, in order per receive queue.
    #[inline]
    fn tx_steered(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        let Some(rss) = self.rss.as_deref() else { return 0 };
        let Some(last) = self.groups.len().checked_sub(1) else { return 0 };
        for m in pkts.drain(..) {
            let q = (rss.queue_of_frame(m.data()) as usize).min(last);
            self.groups[q].push(m);
        }
        let side = TxSide { me: &self.me, csum: self.csum, checks: self.checks, counters: &self.counters };
        let mut consumed = 0;
        for (group, dest) in self.groups.iter_mut().zip(self.dest.iter_mut()) {
            if group.is_empty() {
                continue;
            }
            if let Some(prod) = dest {
                consumed += side.send(prod, group);
            }
            pkts.append(group);
        }
        consumed
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
        if self.rss.is_some() {
            return self.tx_steered(pkts);
        }
        let Some(Some(prod)) = self.dest.first_mut() else { return 0 };
        let side = TxSide { me: &self.me, csum: self.csum, checks: self.checks, counters: &self.counters };
        side.send(prod, pkts)
    }
}

// The port spec: this driver's options, read from `scheme:target?...`.

/// This driver in the port registry ([`crate::registry`]).
pub(crate) const DRIVER: DriverInfo = DriverInfo {
    scheme: "ring",
    usage: "ring:NAME[?peer=OTHER&csum=1&checks=none&rss=1] — in-memory wire; alone it loops back to itself",
    options: &[
        ("peer", "name of the ring port at the other end (default: itself)"),
        ("mac", "MAC address"),
        (
            "checks",
            "full (default): MTU enforced, exact byte counters; none: like DPDK's net_ring, neither \
             (frames move as handles only, bytes read 0)",
        ),
        (
            "csum",
            "1 offers IPv4/TCP/UDP checksum offloads as Linux loopback does: requested L4 checksums \
             arrive partial (L4_CKSUM_PARTIAL), IPv4 ones computed (default 0)",
        ),
        (
            "rss",
            "1 offers software RSS (Toeplitz, 40-byte key, 128-entry table): configured with RSS, frames \
             sent to this port reach receive queue reta[hash % 128], non-IP ones reta[0] (default 0)",
        ),
    ],
    shared_pool: false,
    open: open_ring,
};

fn open_ring(spec: &Spec, _: &OpenEnv) -> Result<Box<dyn Port>, PmdError> {
    let name = spec.require_target("a name: ring:NAME")?;
    let mac = spec.mac(&format!("ring:{name}"))?;
    let csum = spec.flag("csum", false)?;
    let rss = spec.flag("rss", false)?;
    Ok(Box::new(RingPort::open_with(name, spec.get("peer"), mac, csum, spec.checks()?)?.with_rss(rss)))
}
