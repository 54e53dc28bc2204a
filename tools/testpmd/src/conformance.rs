//! Conformance checks for any port, modelled on DPDK's DTS suites
//! (`port_control`, `link_status`, `stats_checks`, `mtu_update`, `jumbo_frame`,
//! `checksum_offload`, `multiqueue`, `io/macswap forwarding`, `promisc`,
//! `mbuf leak`), run by `testpmd conformance --port SPEC [--peer SPEC]`.
//!
//! # The wire
//! Frames the port sends must be observed somewhere, and frames it receives must
//! come from somewhere:
//! * with `--peer SPEC`, the peer port is the other end (a `ring` peer, the veth
//!   peer opened with `af_packet`, or `af_packet` on the kernel side of a TAP);
//! * without a peer, the port is probed: if a frame it sends comes back to it
//!   (`ring:NAME` alone), it is its own wire (loopback);
//! * otherwise (`null`) there is no wire, and every check that needs one reports
//!   UNSUPPORTED with that reason.
//!
//! Frames are UDP/IPv4 from 198.19.255.1 to 198.19.255.2 (RFC 2544 range, on no
//! interface, so a kernel on the path drops them silently rather than answering),
//! carrying a magic, a run id and a sequence number; receivers ignore anything else
//! (counted as noise in the details). Counter checks are exact, so kernel-backed
//! ports should run in a quiet namespace (`scripts/testbed.sh up NAME --quiet`).
//! Every wait is bounded; the port's MTU is restored at the end.

use std::fmt;
use std::time::{Duration, Instant};

use pmd::mempool::DEFAULT_HEADROOM;
use pmd::port::MacAddr;
use pmd::{
    Mbuf, MbufMeta, Mempool, MempoolConfig, PmdError, Port, PortConfig, RxFlags, RxQueue, TxFlags, TxOffloads, TxQueue,
};

/// Outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The port behaves as required.
    Pass,
    /// It does not; the text says how.
    Fail(String),
    /// The check does not apply to this port; the text says why.
    Unsupported(String),
}

/// One line of the checklist.
#[derive(Clone, Debug)]
pub struct CheckResult {
    /// Check name.
    pub name: &'static str,
    /// Verdict.
    pub verdict: Verdict,
    /// What was measured.
    pub detail: String,
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verdict {
            Verdict::Pass => write!(f, "PASS         {:<20} {}", self.name, self.detail),
            Verdict::Fail(w) => write!(f, "FAIL         {:<20} {w}", self.name),
            Verdict::Unsupported(w) => write!(f, "UNSUPPORTED  {:<20} {w}", self.name),
        }
    }
}

/// How a conformance run is set up.
#[derive(Clone, Debug)]
pub struct ConformanceConfig {
    /// Port under test.
    pub port: String,
    /// The other end of its wire, if any.
    pub peer: Option<String>,
    /// Frames per burst.
    pub burst: usize,
    /// Bursts per counting check.
    pub bursts: usize,
    /// Frames looped by the io/macswap checks.
    pub loop_frames: usize,
    /// Longest wait for frames in flight.
    pub timeout: Duration,
    /// Descriptors per receive queue.
    pub rx_desc: u16,
    /// Descriptors per transmit queue.
    pub tx_desc: u16,
    /// The pool the run makes when [`pool`](Self::pool) is `None`: buffers,
    /// data room (jumbo frames need 9 KiB), per-core cache.
    pub pool_config: MempoolConfig,
    /// The buffers frames are built in and received into, if the caller makes
    /// them: a `dpdk:` port receives only into a DPDK pool, so `testpmd
    /// conformance --eal` passes one (made from `pool_config`).
    pub pool: Option<Mempool>,
}

impl ConformanceConfig {
    /// The defaults testpmd uses: bursts of 32, 8 bursts, 1024 looped frames,
    /// 1 s, 512 descriptors, 8192 buffers of 9 KiB without a cache.
    pub fn new(port: &str, peer: Option<&str>) -> Self {
        ConformanceConfig {
            port: port.into(),
            peer: peer.map(Into::into),
            burst: 32,
            bursts: 8,
            loop_frames: 1024,
            timeout: Duration::from_secs(1),
            rx_desc: DESC,
            tx_desc: DESC,
            pool_config: MempoolConfig::new("conformance", 8192, DATA_ROOM, DEFAULT_HEADROOM, 0),
            pool: None,
        }
    }
}

const MAGIC: &[u8; 8] = b"PMDCONF!";
const SRC_IP: [u8; 4] = [198, 19, 255, 1];
const DST_IP: [u8; 4] = [198, 19, 255, 2];
const FOREIGN_MAC: MacAddr = MacAddr([0x02, 0xde, 0xad, 0xbe, 0xef, 0x01]);
/// Default data room: a 9000-byte MTU frame with its Ethernet header and VLAN tags.
pub const DATA_ROOM: usize = 9216 + 64;
/// Default descriptors per queue.
pub const DESC: u16 = 512;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Peer,
    Loopback,
    None,
}

/// Internet checksum over `b` starting from `sum`, folded, not complemented.
fn sum16(mut sum: u32, b: &[u8]) -> u16 {
    for w in b.chunks(2) {
        sum += u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u32;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn pseudo_sum(ip: &[u8], udp_len: usize) -> u16 {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&ip[12..20]);
    p.extend_from_slice(&[0, 17]);
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    sum16(0, &p)
}

/// Software IPv4 header and UDP checksums of a frame built by [`frame`].
fn software_checksums(f: &[u8]) -> (u16, u16) {
    let mut ip = f[14..34].to_vec();
    ip[10] = 0;
    ip[11] = 0;
    let ipc = !sum16(0, &ip);
    let mut udp = f[34..].to_vec();
    udp[6] = 0;
    udp[7] = 0;
    let mut c = !sum16(pseudo_sum(&ip, udp.len()) as u32, &udp);
    if c == 0 {
        c = 0xffff;
    }
    (ipc, c)
}

struct Run {
    port: Box<dyn Port>,
    peer: Option<Box<dyn Port>>,
    pool: Mempool,
    wire: Wire,
    run_id: u32,
    seq: u32,
    p_rx: Vec<Box<dyn RxQueue>>,
    p_tx: Vec<Box<dyn TxQueue>>,
    q_rx: Vec<Box<dyn RxQueue>>,
    q_tx: Vec<Box<dyn TxQueue>>,
    noise: u64,
    cfg: ConformanceConfig,
}

struct Frame {
    len: usize,
    dst: MacAddr,
    src: MacAddr,
    flow: u16,
}

impl Run {
    fn frame(&mut self, f: &Frame) -> Result<Mbuf, PmdError> {
        let mut m = self.pool.alloc()?;
        let len = f.len.max(14 + 20 + 8 + 16);
        let have = self.pool.data_room();
        let d = m.append(len).ok_or(PmdError::MbufTooSmall { need: len, have })?;
        d.fill(0);
        d[0..6].copy_from_slice(&f.dst.0);
        d[6..12].copy_from_slice(&f.src.0);
        d[12..14].copy_from_slice(&[8, 0]);
        d[14] = 0x45;
        d[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
        d[22] = 64;
        d[23] = 17;
        d[26..30].copy_from_slice(&SRC_IP);
        d[30..34].copy_from_slice(&DST_IP);
        d[29] = d[29].wrapping_add((f.flow >> 8) as u8);
        d[34..36].copy_from_slice(&(1024 + f.flow).to_be_bytes());
        d[36..38].copy_from_slice(&9u16.to_be_bytes());
        d[38..40].copy_from_slice(&((len - 34) as u16).to_be_bytes());
        d[42..50].copy_from_slice(MAGIC);
        d[50..54].copy_from_slice(&self.run_id.to_be_bytes());
        d[54..58].copy_from_slice(&self.seq.to_be_bytes());
        for (i, b) in d[58..].iter_mut().enumerate() {
            *b = i as u8;
        }
        self.seq += 1;
        let (ipc, udpc) = software_checksums(d);
        d[24..26].copy_from_slice(&ipc.to_be_bytes());
        d[40..42].copy_from_slice(&udpc.to_be_bytes());
        Ok(m)
    }

    fn ours(&self, m: &Mbuf) -> bool {
        let d = m.data();
        d.len() >= 58 && &d[42..50] == MAGIC && d[50..54] == self.run_id.to_be_bytes()
    }

    fn p_mac(&self) -> MacAddr {
        self.port.info().mac
    }

    fn q_mac(&self) -> MacAddr {
        match &self.peer {
            Some(q) => q.info().mac,
            None => self.p_mac(),
        }
    }

    /// Stops both ports, drops handles, configures with `queues` and `tx_off`, starts.
    fn reconfigure(&mut self, queues: u16, tx_off: TxOffloads) -> Result<(), PmdError> {
        self.p_rx.clear();
        self.p_tx.clear();
        self.q_rx.clear();
        self.q_tx.clear();
        let (rxd, txd) = (self.cfg.rx_desc, self.cfg.tx_desc);
        let mut c = PortConfig::new(queues, queues, rxd, txd, self.pool.clone());
        c.tx_offloads = tx_off;
        // Several queues on a port with RSS: turn it on, as DPDK's testpmd
        // does (Microsoft's key to the port's length, round-robin table).
        if let Some(capa) = self.port.info().rss.filter(|_| queues > 1) {
            c.rss = Some(pmd::RssConfig {
                key: pmd::rss::MICROSOFT_KEY.iter().copied().cycle().take(capa.key_len).collect(),
                hash_types: capa.hash_types,
                reta: pmd::rss::spread_reta(queues, capa.reta_size),
            });
        }
        self.port.stop()?;
        self.port.configure(&c)?;
        self.port.start()?;
        for i in 0..queues {
            self.p_rx.push(self.port.take_rx_queue(i)?);
            self.p_tx.push(self.port.take_tx_queue(i)?);
        }
        if let Some(q) = self.peer.as_mut() {
            q.stop()?;
            q.configure(&PortConfig::new(1, 1, rxd, txd, self.pool.clone()))?;
            q.set_promiscuous(true)?;
            q.start()?;
            self.q_rx.push(q.take_rx_queue(0)?);
            self.q_tx.push(q.take_tx_queue(0)?);
        }
        self.drain();
        Ok(())
    }

    /// Throws away whatever is in flight (e.g. queued before a reconfiguration).
    fn drain(&mut self) {
        if self.wire == Wire::None {
            return;
        }
        let mut v = Vec::new();
        let end = Instant::now() + Duration::from_millis(30);
        while Instant::now() < end {
            for r in self.p_rx.iter_mut().chain(self.q_rx.iter_mut()) {
                r.rx_burst(&mut v, 64);
                v.clear();
            }
        }
    }

    /// Sends every frame on the port's (or the peer's) tx queue `q`, retrying what
    /// the queue refuses for at most the timeout. Returns how many were taken.
    fn send(&mut self, from_peer: bool, q: usize, mut v: Vec<Mbuf>) -> usize {
        let n = v.len();
        let end = Instant::now() + self.cfg.timeout;
        let tx = if from_peer && self.wire == Wire::Peer { &mut self.q_tx[q] } else { &mut self.p_tx[q] };
        while !v.is_empty() && Instant::now() < end {
            tx.tx_burst(&mut v);
        }
        n - v.len()
    }

    /// Collects up to `want` of our frames arriving at the port (`at_peer` false) or
    /// at the peer, per receive queue, waiting at most the timeout; then a short
    /// grace period to catch extras.
    fn recv(&mut self, at_peer: bool, want: usize) -> Vec<Vec<Mbuf>> {
        let rxs = if at_peer && self.wire == Wire::Peer { &mut self.q_rx } else { &mut self.p_rx };
        let mut got: Vec<Vec<Mbuf>> = (0..rxs.len()).map(|_| Vec::new()).collect();
        let mut v = Vec::new();
        let mut end = Instant::now() + self.cfg.timeout;
        let mut total = 0;
        let mut grace = false;
        while Instant::now() < end {
            for (i, r) in rxs.iter_mut().enumerate() {
                r.rx_burst(&mut v, 64);
                for m in v.drain(..) {
                    let d = m.data();
                    if d.len() >= 58 && &d[42..50] == MAGIC && d[50..54] == self.run_id.to_be_bytes() {
                        got[i].push(m);
                        total += 1;
                    } else {
                        self.noise += 1;
                    }
                }
            }
            if total >= want && !grace {
                grace = true;
                end = Instant::now() + Duration::from_millis(20);
            }
        }
        got
    }

    fn roundtrip_one(&mut self, len: usize) -> Result<Option<Vec<u8>>, PmdError> {
        let (dst, src) = (self.q_mac(), self.p_mac());
        let m = self.frame(&Frame { len, dst, src, flow: 0 })?;
        let want = m.data().to_vec();
        if self.send(false, 0, vec![m]) != 1 {
            return Ok(None);
        }
        // Wait for this very frame: a late frame of an earlier check (same
        // run) must not end the wait before it arrives.
        let end = Instant::now() + self.cfg.timeout;
        loop {
            let got: Vec<Mbuf> = self.recv(true, 1).into_iter().flatten().collect();
            if let Some(g) = got.iter().find(|g| g.data() == want.as_slice()) {
                return Ok(Some(g.data().to_vec()));
            }
            if Instant::now() >= end {
                return Ok(None);
            }
        }
    }
}

fn probe_loopback(
    port: &mut Box<dyn Port>,
    cfg: &ConformanceConfig,
    pool: &Mempool,
    run_id: u32,
) -> Result<bool, PmdError> {
    port.configure(&PortConfig::new(1, 1, cfg.rx_desc, cfg.tx_desc, pool.clone()))?;
    port.set_promiscuous(true)?;
    port.start()?;
    let mut rx = port.take_rx_queue(0)?;
    let mut tx = port.take_tx_queue(0)?;
    let mut m = pool.alloc()?;
    let d = m.append(64).ok_or(PmdError::MbufTooSmall { need: 64, have: 0 })?;
    d.fill(0);
    d[0..6].copy_from_slice(&port.info().mac.0);
    d[12..14].copy_from_slice(&[0x88, 0xb5]);
    d[14..22].copy_from_slice(MAGIC);
    d[22..26].copy_from_slice(&run_id.to_be_bytes());
    let mut v = vec![m];
    tx.tx_burst(&mut v);
    v.clear();
    let end = Instant::now() + Duration::from_millis(200);
    let mut found = false;
    while Instant::now() < end && !found {
        rx.rx_burst(&mut v, 32);
        found = v.iter().any(|m| m.data().len() >= 26 && &m.data()[14..22] == MAGIC);
        v.clear();
    }
    // A wire is quiet when nothing is sent: a port that keeps producing frames
    // (null recycles buffers, stale contents included) is not a loopback.
    let end = Instant::now() + Duration::from_millis(50);
    let mut extra = 0;
    while Instant::now() < end && found {
        extra += rx.rx_burst(&mut v, 32);
        v.clear();
    }
    drop((rx, tx));
    port.stop()?;
    Ok(found && extra == 0)
}

macro_rules! fail {
    ($($t:tt)*) => { return Ok((Verdict::Fail(format!($($t)*)), String::new())) };
}

/// Runs the checklist. Errors are for setup failures (bad spec, no permission);
/// a port misbehaving is a `Fail` line.
pub fn run(cfg: &ConformanceConfig) -> Result<Vec<CheckResult>, PmdError> {
    let pool = match &cfg.pool {
        Some(p) => p.clone(),
        None => {
            // A vhost-user back end maps the buffers of virtio-user ports.
            let shared =
                std::iter::once(&cfg.port).chain(cfg.peer.as_ref()).any(|s| pmd::registry::needs_shared_pool(s));
            if shared {
                Mempool::new_shared(&cfg.pool_config)?
            } else {
                Mempool::new(&cfg.pool_config)?
            }
        }
    };
    let run_id = std::process::id() ^ (Instant::now().elapsed().subsec_nanos() << 8) ^ 0x5a5a_0000;
    let mut results = Vec::new();
    let mut port = pmd::open(&cfg.port)?;
    let orig_mtu = port.info().mtu;
    let mut peer = match &cfg.peer {
        Some(s) => Some(pmd::open(s)?),
        None => None,
    };
    let peer_mtu = peer.as_ref().map(|q| q.info().mtu);

    // probe: the port describes itself sensibly.
    let info = port.info();
    let probe = if info.max_rx_queues == 0 || info.max_tx_queues == 0 {
        Verdict::Fail(format!("max queues rx {} tx {}", info.max_rx_queues, info.max_tx_queues))
    } else if !(info.min_mtu <= info.mtu && info.mtu <= info.max_mtu) {
        Verdict::Fail(format!("mtu {} outside {}..={}", info.mtu, info.min_mtu, info.max_mtu))
    } else {
        Verdict::Pass
    };
    results.push(CheckResult {
        name: "probe",
        verdict: probe,
        detail: format!(
            "driver {} mac {} mtu {} ({}..={}) queues {}/{} rx_offloads {:?} tx_offloads {:?}",
            info.driver,
            info.mac,
            info.mtu,
            info.min_mtu,
            info.max_mtu,
            info.max_rx_queues,
            info.max_tx_queues,
            info.rx_offloads,
            info.tx_offloads
        ),
    });

    let wire = if peer.is_some() {
        Wire::Peer
    } else if probe_loopback(&mut port, cfg, &pool, run_id)? {
        Wire::Loopback
    } else {
        Wire::None
    };
    let mut r = Run {
        port,
        peer: peer.take(),
        pool: pool.clone(),
        wire,
        run_id,
        seq: 0,
        p_rx: Vec::new(),
        p_tx: Vec::new(),
        q_rx: Vec::new(),
        q_tx: Vec::new(),
        noise: 0,
        cfg: cfg.clone(),
    };
    let no_wire = || {
        Verdict::Unsupported(
            "no wire: the port has no peer (--peer) and does not loop back, so nothing it sends can be observed".into(),
        )
    };

    type Check = fn(&mut Run) -> Result<(Verdict, String), PmdError>;
    let checks: [(&'static str, bool, Check); 10] = [
        ("start_stop_restart", false, check_restart),
        ("link_status", false, check_link),
        ("stats", false, check_stats),
        ("mtu", false, check_mtu),
        ("jumbo_frame", true, check_jumbo),
        ("checksum_offload", true, check_offload),
        ("multi_queue", true, check_multiqueue),
        ("fwd_io", true, |r| check_fwd(r, false)),
        ("fwd_macswap", true, |r| check_fwd(r, true)),
        ("promiscuous", true, check_promisc),
    ];
    for (name, needs_wire, f) in checks {
        if needs_wire && r.wire == Wire::None {
            results.push(CheckResult { name, verdict: no_wire(), detail: String::new() });
            continue;
        }
        let (verdict, detail) = match f(&mut r) {
            Ok(v) => v,
            // As DTS: a control the driver does not have (net_ring sets no
            // MTU) makes the check not apply; any other error is a failure.
            Err(e @ PmdError::Unsupported { .. }) => (Verdict::Unsupported(e.to_string()), String::new()),
            Err(e) => (Verdict::Fail(format!("error: {e}")), String::new()),
        };
        results.push(CheckResult { name, verdict, detail });
    }

    // Restore what we changed, give every buffer back, and check none leaked.
    let _ = r.port.set_mtu(orig_mtu);
    if let (Some(q), Some(m)) = (r.peer.as_mut(), peer_mtu) {
        let _ = q.set_mtu(m);
    }
    r.p_rx.clear();
    r.p_tx.clear();
    r.q_rx.clear();
    r.q_tx.clear();
    let _ = r.port.stop();
    if let Some(q) = r.peer.as_mut() {
        let _ = q.stop();
    }
    let noise = r.noise;
    drop(r);
    let leaked = pool.in_use();
    results.push(CheckResult {
        name: "mbuf_leak",
        verdict: if leaked == 0 { Verdict::Pass } else { Verdict::Fail(format!("{leaked} buffer(s) not returned")) },
        detail: format!("all {} buffers back in the pool; {noise} foreign frame(s) ignored", pool.count()),
    });
    Ok(results)
}

fn check_restart(r: &mut Run) -> Result<(Verdict, String), PmdError> {
    let info = r.port.info();
    let queues = info.max_rx_queues.min(info.max_tx_queues).min(2);
    let mtu = 1400.clamp(info.min_mtu, info.max_mtu);
    r.reconfigure(queues, TxOffloads::empty())?;
    // A port that cannot set its MTU is still checked for stop/start: it must
    // keep the one it has.
    let mtu = match r.port.set_mtu(mtu) {
        Err(PmdError::Unsupported { .. }) => r.port.info().mtu,
        res => res.map(|_| mtu)?,
    };
    r.port.set_promiscuous(true)?;
    r.p_rx.clear();
    r.p_tx.clear();
    r.port.stop()?;
    if r.port.is_started() {
        fail!("is_started() after stop");
    }
    r.port.start()?;
    if !r.port.is_started() {
        fail!("not started after restart");
    }
    let c = r.port.config().ok_or(PmdError::State { port: info.name.clone(), reason: "config lost".into() })?;
    if (c.rx_queues, c.tx_queues, c.rx_desc, c.tx_desc) != (queues, queues, r.cfg.rx_desc, r.cfg.tx_desc) {
        fail!("configuration changed across stop/start: {} rx {} tx queues", c.rx_queues, c.tx_queues);
    }
    if r.port.info().mtu != mtu || !r.port.promiscuous() {
        fail!("MTU {} (set {mtu}) / promiscuous {} after restart", r.port.info().mtu, r.port.promiscuous());
    }
    for i in 0..queues {
        r.p_rx.push(r.port.take_rx_queue(i)?);
        r.p_tx.push(r.port.take_tx_queue(i)?);
    }
    let mut detail = format!("{queues} queue(s), MTU {mtu}, promiscuous kept");
    if r.wire != Wire::None {
        if r.roundtrip_one(128)?.is_none() {
            fail!("no frame passes after restart");
        }
        detail.push_str("; traffic passes after restart");
    }
    Ok((Verdict::Pass, detail))
}

fn check_link(r: &mut Run) -> Result<(Verdict, String), PmdError> {
    r.reconfigure(1, TxOffloads::empty())?;
    let up = r.port.link();
    if !up.up {
        fail!("link down after start: {up:?}");
    }
    r.p_rx.clear();
    r.p_tx.clear();
    r.port.stop()?;
    let down = r.port.link();
    r.port.start()?;
    if down.up {
        fail!("link still up after stop");
    }
    Ok((Verdict::Pass, format!("up ({} Mbps) after start, down after stop", up.speed_mbps)))
}

fn check_stats(r: &mut Run) -> Result<(Verdict, String), PmdError> {
    r.reconfigure(1, TxOffloads::empty())?;
    r.port.reset_stats();
    if let Some(q) = r.peer.as_mut() {
        q.reset_stats();
    }
    let s = r.port.stats();
    if s.ipackets + s.opackets + s.ibytes + s.obytes + s.ierrors + s.oerrors + s.imissed != 0 {
        fail!("counters not zero after reset: {s:?}");
    }
    let (b, n, len) = (r.cfg.burst, r.cfg.bursts, 100usize);
    let (dst, src) = (r.q_mac(), r.p_mac());
    let mut received = 0;
    let mut rx_counted = 0u64;
    for _ in 0..n {
        let v = (0..b).map(|_| r.frame(&Frame { len, dst, src, flow: 0 })).collect::<Result<Vec<_>, _>>()?;
        if r.send(false, 0, v) != b {
            fail!("tx queue did not take a burst of {b}");
        }
        if r.wire != Wire::None {
            received += r.recv(true, b).iter().map(Vec::len).sum::<usize>();
        } else {
            let mut v = Vec::new();
            rx_counted += r.p_rx[0].rx_burst(&mut v, b) as u64;
        }
    }
    let (sent, bytes) = ((n * b) as u64, (n * b * len) as u64);
    let s = r.port.stats();
    if s.opackets != sent || s.obytes != bytes || s.oerrors != 0 {
        fail!(
            "port counted opackets {} obytes {} oerrors {}, sent {sent} frames {bytes} bytes",
            s.opackets,
            s.obytes,
            s.oerrors
        );
    }
    let rs = match (&r.wire, &r.peer) {
        (Wire::Peer, Some(q)) => q.stats(),
        _ => s.clone(),
    };
    let want_rx = if r.wire == Wire::None { rx_counted } else { sent };
    if r.wire != Wire::None && received as u64 != sent {
        fail!("receiver got {received} of {sent} frames");
    }
    if rs.ipackets != want_rx || (r.wire != Wire::None && rs.ibytes != bytes) {
        fail!("receiver counted ipackets {} ibytes {}, expected {want_rx} / {bytes}", rs.ipackets, rs.ibytes);
    }
    r.port.reset_stats();
    let z = r.port.stats();
    if z.ipackets + z.opackets + z.ibytes + z.obytes != 0 || z.q_opackets.iter().any(|&x| x != 0) {
        fail!("counters not zero after reset: {z:?}");
    }
    Ok((Verdict::Pass, format!("{n} bursts of {b}: tx {sent}/{bytes} B, rx {want_rx} exact; zero after reset")))
}

fn check_mtu(r: &mut Run) -> Result<(Verdict, String), PmdError> {
    r.reconfigure(1, TxOffloads::empty())?;
    let info = r.port.info();
    let mtu = 1500.clamp(info.min_mtu, info.max_mtu);
    r.port.set_mtu(mtu)?;
    if let Some(q) = r.peer.as_mut() {
        let qm = q.info().max_mtu.min(mtu + 100);
        q.set_mtu(qm)?;
    }
    r.port.reset_stats();
    let (dst, src) = (r.q_mac(), r.p_mac());
    let exact = mtu as usize + 14;
    let mut detail = String::new();
    if r.wire != Wire::None {
        if r.roundtrip_one(exact)?.is_none() {
            fail!("a frame of exactly MTU {mtu} ({exact} bytes) did not arrive intact");
        }
    } else {
        let m = r.frame(&Frame { len: exact, dst, src, flow: 0 })?;
        r.send(false, 0, vec![m]);
    }
    let s = r.port.stats();
    if s.opackets != 1 || s.oerrors != 0 {
        fail!("MTU-sized frame: opackets {} oerrors {}", s.opackets, s.oerrors);
    }
    let m = r.frame(&Frame { len: exact + 1, dst, src, flow: 0 })?;
    r.send(false, 0, vec![m]);
    let s = r.port.stats();
    if s.oerrors != 1 || s.opackets != 1 {
        fail!("MTU+1 frame on transmit: oerrors {} opackets {} (want 1, 1)", s.oerrors, s.opackets);
    }
    if r.wire != Wire::None && r.recv(true, 1).iter().map(Vec::len).sum::<usize>() != 0 {
        fail!("MTU+1 frame reached the other end");
    }
    detail.push_str(&format!("MTU {mtu}: {exact}-byte frame passes; {}-byte frame dropped, oerrors 1", exact + 1));
    if r.wire == Wire::Peer {
        let m = r.frame(&Frame { len: exact + 1, dst: r.p_mac(), src: r.q_mac(), flow: 0 })?;
        if r.send(true, 0, vec![m]) == 1 {
            let got = r.recv(false, 1).iter().map(Vec::len).sum::<usize>();
            let s = r.port.stats();
            if got != 0 || s.ierrors != 1 {
                fail!("MTU+1 frame on receive: delivered {got}, ierrors {} (want 0, 1)", s.ierrors);
            }
            detail.push_str("; on receive dropped, ierrors 1");
        }
    }
    Ok((Verdict::Pass, detail))
}

fn check_jumbo(r: &mut Run) -> Result<(Verdict, String), PmdError> {
    let mut max = r.port.info().max_mtu;
    if let Some(q) = &r.peer {
        max = max.min(q.info().max_mtu);
    }
    let max = max.min(9000);
    if max <= 1500 {
        return Ok((Verdict::Unsupported(format!("largest MTU is {max}: no jumbo frames advertised")), String::new()));
    }
    r.reconfigure(1, TxOffloads::empty())?;
    r.port.set_mtu(max)?;
    if let Some(q) = r.peer.as_mut() {
        q.set_mtu(max)?;
    }
    let len = max as usize + 14;
    if r.roundtrip_one(len)?.is_none() {
        fail!("a {len}-byte frame at MTU {max} did not arrive intact");
    }
    r.port.set_mtu(1500)?;
    if let Some(q) = r.peer.as_mut() {
        q.set_mtu(1500)?;
    }
    Ok((Verdict::Pass, format!("MTU {max}: {len}-byte frame arrives intact")))
}

fn check_offload(r: &mut Run) -> Result<(Verdict, String), PmdError> {
    let want = TxOffloads::IPV4_CKSUM | TxOffloads::UDP_CKSUM;
    let have = r.port.info().tx_offloads & want;
    if have.is_empty() {
        return Ok((Verdict::Unsupported("the driver advertises no IPv4/UDP checksum offload".into()), String::new()));
    }
    r.reconfigure(1, have)?;
    let (dst, src) = (r.q_mac(), r.p_mac());
    let mut m = r.frame(&Frame { len: 300, dst, src, flow: 7 })?;
    let (ip_sw, udp_sw) = software_checksums(m.data());
    {
        let mut meta = MbufMeta { l2_len: 14, l3_len: 20, tx_flags: TxFlags::IPV4, ..MbufMeta::default() };
        if have.contains(TxOffloads::IPV4_CKSUM) {
            meta.tx_flags |= TxFlags::IP_CKSUM;
        }
        if have.contains(TxOffloads::UDP_CKSUM) {
            meta.tx_flags |= TxFlags::UDP_CKSUM;
        }
        m.set_meta(meta);
    }
    let flags = m.tx_flags();
    let d = m.data_mut();
    if flags.contains(TxFlags::IP_CKSUM) {
        d[24] = 0;
        d[25] = 0;
    }
    if flags.contains(TxFlags::UDP_CKSUM) {
        // As DPDK: the field holds the pseudo-header sum, the device finishes it.
        let p = pseudo_sum(&d[14..34], d.len() - 34);
        d[40..42].copy_from_slice(&p.to_be_bytes());
    }
    if r.send(false, 0, vec![m]) != 1 {
        fail!("tx queue refused the offload frame");
    }
    let got: Vec<Mbuf> = r.recv(true, 1).into_iter().flatten().collect();
    let Some(g) = got.first() else { fail!("offload frame did not arrive") };
    let mut f = g.data().to_vec();
    let mut partial = false;
    if g.rx_flags().contains(RxFlags::L4_CKSUM_PARTIAL) {
        // Still partial on the other side (the kernel's CHECKSUM_PARTIAL): finish it
        // as the device would, over the UDP segment with the pseudo sum in place.
        partial = true;
        let c = !sum16(0, &f[34..]);
        f[40..42].copy_from_slice(&c.to_be_bytes());
    }
    let (ip_got, udp_got) = (u16::from_be_bytes([f[24], f[25]]), u16::from_be_bytes([f[40], f[41]]));
    if ip_got != ip_sw || udp_got != udp_sw {
        fail!("checksums ip {ip_got:#06x} udp {udp_got:#06x}, software computes ip {ip_sw:#06x} udp {udp_sw:#06x}");
    }
    Ok((
        Verdict::Pass,
        format!(
            "{have:?}: ip {ip_sw:#06x} udp {udp_sw:#06x} match software{}",
            if partial { " (peer saw a partial checksum, finished per virtio)" } else { "" }
        ),
    ))
}

fn check_multiqueue(r: &mut Run) -> Result<(Verdict, String), PmdError> {
    let info = r.port.info();
    let hashes = info.rss.is_some() || matches!(info.driver, "tap" | "af_packet");
    if !hashes {
        return Ok((
            Verdict::Unsupported(format!(
                "{} does not spread flows (no RSS; tx queue i feeds rx queue i)",
                info.driver
            )),
            String::new(),
        ));
    }
    if r.wire != Wire::Peer {
        return Ok((Verdict::Unsupported("needs a --peer to send flows to the port".into()), String::new()));
    }
    let n = info.max_rx_queues.min(4);
    if n < 2 {
        return Ok((
            Verdict::Unsupported(format!("the port was opened with {n} queue(s); open it with queues=2 or more")),
            String::new(),
        ));
    }
    r.reconfigure(n, TxOffloads::empty())?;
    let flows = 64u16;
    let (dst, src) = (r.p_mac(), r.q_mac());
    let mut v = Vec::new();
    for flow in 0..flows {
        for _ in 0..2 {
            v.push(r.frame(&Frame { len: 128, dst, src, flow })?);
        }
    }
    let total = v.len();
    if r.send(true, 0, v) != total {
        fail!("peer did not send all {total} frames");
    }
    let got = r.recv(false, total);
    let per: Vec<usize> = got.iter().map(Vec::len).collect();
    let sum: usize = per.iter().sum();
    if sum != total {
        fail!("received {sum} of {total} frames (per queue {per:?})");
    }
    if per.contains(&0) {
        fail!("{flows} flows did not reach every queue: per queue {per:?}");
    }
    Ok((Verdict::Pass, format!("{flows} flows over {n} queues: {per:?}")))
}

fn check_fwd(r: &mut Run, macswap: bool) -> Result<(Verdict, String), PmdError> {
    r.reconfigure(1, TxOffloads::empty())?;
    r.port.reset_stats();
    let total = r.cfg.loop_frames;
    let b = r.cfg.burst;
    let (p_mac, q_mac) = (r.p_mac(), r.q_mac());
    let mut buf = Vec::new();
    let mut forwarded = 0usize;
    let mut back = 0usize;
    let swap = |m: &mut Mbuf| {
        let d = m.data_mut();
        for i in 0..6 {
            d.swap(i, 6 + i);
        }
    };
    if r.wire == Wire::Loopback {
        // The port is its own wire: inject a burst and forward it around `total` times.
        let v = (0..b)
            .map(|_| r.frame(&Frame { len: 128, dst: p_mac, src: p_mac, flow: 0 }))
            .collect::<Result<Vec<_>, _>>()?;
        r.send(false, 0, v);
        let end = Instant::now() + r.cfg.timeout * 4;
        while forwarded < total && Instant::now() < end {
            r.p_rx[0].rx_burst(&mut buf, b);
            if macswap {
                buf.iter_mut().for_each(swap);
            }
            let n = buf.len();
            r.p_tx[0].tx_burst(&mut buf);
            if !buf.is_empty() {
                fail!("tx refused {} of {n} forwarded frames", buf.len());
            }
            forwarded += n;
        }
        back = r.recv(false, b).iter().map(Vec::len).sum();
        if back != b {
            fail!("{back} of {b} looping frames left after forwarding {forwarded}");
        }
    } else {
        // Peer sends bursts; the port forwards each back; the peer must get all.
        let mut sent = 0;
        let end = Instant::now() + r.cfg.timeout * 8;
        while sent < total && Instant::now() < end {
            let v = (0..b)
                .map(|_| r.frame(&Frame { len: 128, dst: p_mac, src: q_mac, flow: 0 }))
                .collect::<Result<Vec<_>, _>>()?;
            let want: Vec<Vec<u8>> = v.iter().map(|m| m.data().to_vec()).collect();
            sent += r.send(true, 0, v);
            let mut got = Vec::new();
            let step_end = Instant::now() + r.cfg.timeout;
            while got.len() < b && Instant::now() < step_end {
                r.p_rx[0].rx_burst(&mut buf, b);
                forwarded += buf.len();
                if macswap {
                    buf.iter_mut().for_each(swap);
                }
                let mut out = std::mem::take(&mut buf);
                let deadline = Instant::now() + r.cfg.timeout;
                while !out.is_empty() && Instant::now() < deadline {
                    r.p_tx[0].tx_burst(&mut out);
                }
                let mut v = Vec::new();
                r.q_rx[0].rx_burst(&mut v, 64);
                got.extend(v.into_iter().filter(|m| r.ours(m)));
            }
            for (g, w) in got.iter().zip(&want) {
                let mut w = w.clone();
                if macswap {
                    for i in 0..6 {
                        w.swap(i, 6 + i);
                    }
                }
                if g.data() != w.as_slice() {
                    fail!(
                        "a forwarded frame differs from what {} should produce",
                        if macswap { "macswap" } else { "io" }
                    );
                }
            }
            back += got.len();
        }
        if back != total || sent != total {
            fail!("peer sent {sent} of {total}, got back {back}");
        }
    }
    let s = r.port.stats();
    if s.imissed + s.ierrors + s.oerrors + s.rx_nombuf != 0 {
        fail!(
            "drops on the port: imissed {} ierrors {} oerrors {} nombuf {}",
            s.imissed,
            s.ierrors,
            s.oerrors,
            s.rx_nombuf
        );
    }
    Ok((Verdict::Pass, format!("{forwarded} frames forwarded in bursts of {b}, {back} came back, no drops")))
}

fn check_promisc(r: &mut Run) -> Result<(Verdict, String), PmdError> {
    r.reconfigure(1, TxOffloads::empty())?;
    let (p_mac, q_mac) = (r.p_mac(), r.q_mac());
    let mut counts = Vec::new();
    for on in [false, true] {
        r.port.set_promiscuous(on)?;
        if r.port.promiscuous() != on {
            fail!("promiscuous() does not report {on}");
        }
        r.drain();
        let v = vec![
            r.frame(&Frame { len: 100, dst: p_mac, src: q_mac, flow: 0 })?,
            r.frame(&Frame { len: 100, dst: FOREIGN_MAC, src: q_mac, flow: 0 })?,
        ];
        r.send(true, 0, v);
        let got: Vec<Mbuf> = r.recv(false, if on { 2 } else { 1 }).into_iter().flatten().collect();
        let foreign = got.iter().filter(|m| m.data()[..6] == FOREIGN_MAC.0).count();
        let mine = got.len() - foreign;
        counts.push((mine, foreign));
    }
    if counts != [(1, 0), (1, 1)] {
        fail!("(to us, to another MAC) received: off {:?}, on {:?}; want (1,0) and (1,1)", counts[0], counts[1]);
    }
    Ok((Verdict::Pass, "off: only frames to our MAC; on: frames to any MAC".into()))
}
