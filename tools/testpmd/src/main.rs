//! `testpmd`: forward frames between ports in one of DPDK testpmd's modes and print
//! the counters DPDK users know.
//!
//! ```text
//! testpmd --port ring:a --fwd io --cores 1 --burst 32 --duration 5 --tx-first 1
//! testpmd --port null --fwd io --cores 1 --duration 5 --json
//! ```
//! Streams follow testpmd's port topology: one port forwards back out of itself;
//! an even number of ports forwards in pairs (0↔1, 2↔3); an odd number chains
//! (0→1→…→0). Each port gets `--rxq` queues; stream (port, queue) goes round-robin
//! to the forwarding cores. Exit status: 0 on success, 2 for a bad flag or spec,
//! 1 if the run failed, leaked buffers or (with `--verify-payload`) received a
//! frame of ours with a changed payload.
//!
//! ```text
//! testpmd conformance --port SPEC [--peer SPEC]
//! ```
//! runs the conformance checklist ([`pmd::conformance`]) instead: one PASS / FAIL /
//! UNSUPPORTED line per check, exit status 1 if any check failed.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Serialize;

use pmd::mempool::DEFAULT_HEADROOM;
use pmd::port::MacAddr;
use pmd::runtime::{
    parse_core_list, tsc_hz, CoreCycles, IdlePolicy, Lcore, Lcores, RecordCycles, SharedCycles, StopSignal,
};
use pmd::{Mempool, MempoolConfig, PmdError, Port, PortConfig, PortStats};
use testpmd::fwd::{FwdConfig, FwdLcore, FwdMode, Stream, StreamStats, MIN_TXPKTS};

#[derive(Parser, Debug)]
#[command(name = "testpmd", version, about = "Poll-mode forwarding test tool (DPDK testpmd style)", after_help = pmd::registry::help())]
struct Args {
    /// Port spec (repeat for more ports), e.g. ring:a, null, ring:a?peer=b
    #[arg(long = "port", required = true, value_name = "SPEC")]
    ports: Vec<String>,
    /// Forwarding mode: io, mac, macswap, 5tswap, rxonly, txonly, flowgen, icmpecho
    #[arg(long, value_parser = parse_mode)]
    fwd: FwdMode,
    /// Forwarding cores, e.g. 1 or 1-3 (the main thread stays unpinned)
    #[arg(long, value_name = "LIST")]
    cores: String,
    /// Frames per burst
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    burst: u32,
    /// Length of generated frames in bytes (txonly, flowgen, --tx-first)
    #[arg(long, default_value_t = 64)]
    txpkts: usize,
    /// Seconds to run (SIGINT/SIGTERM stop earlier)
    #[arg(long, value_name = "SECS")]
    duration: f64,
    /// Print one JSON object instead of tables
    #[arg(long)]
    json: bool,
    /// Receive queues per port (and as many transmit queues)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    rxq: u16,
    /// Transmit queues per port: must equal --rxq (stream q receives on
    /// queue q and sends on queue q of the peer port)
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    txq: Option<u16>,
    /// Leave RSS off (testpmd turns it on by default on ports that offer
    /// it: Microsoft's key, every hash type, a round-robin redirection table)
    #[arg(long = "disable-rss")]
    disable_rss: bool,
    /// txonly and --tx-first frames cycle through --flows flows (source
    /// address and port), as flowgen's do, so RSS spreads them
    #[arg(long = "txonly-multi-flow")]
    txonly_multi_flow: bool,
    /// Receive descriptors per queue
    #[arg(long, default_value_t = 1024)]
    rxd: u16,
    /// Transmit descriptors per queue
    #[arg(long, default_value_t = 1024)]
    txd: u16,
    /// Buffers in the mempool (default: enough for every ring, cache and burst)
    #[arg(long = "total-num-mbufs")]
    total_num_mbufs: Option<usize>,
    /// Data room of each buffer in bytes
    #[arg(long = "mbuf-size", default_value_t = 2048)]
    mbuf_size: usize,
    /// Per-core mempool cache size
    #[arg(long, default_value_t = 250)]
    mbcache: usize,
    /// Send this many bursts of generated frames on every stream before forwarding
    #[arg(long = "tx-first", default_value_t = 0, num_args = 0..=1, default_missing_value = "1")]
    tx_first: u32,
    /// Stop generating after this many frames per stream (txonly, flowgen)
    #[arg(long = "nb-pkts")]
    nb_pkts: Option<u64>,
    /// Flows flowgen cycles through
    #[arg(long, default_value_t = 1024)]
    flows: u32,
    /// Peer MAC for port N, as N,MAC (default 02:00:00:00:00:0N, as DPDK)
    #[arg(long = "eth-peer", value_name = "N,MAC")]
    eth_peer: Vec<String>,
    /// Leave promiscuous mode off (testpmd turns it on by default)
    #[arg(long = "no-promisc")]
    no_promisc: bool,
    /// Print throughput every SECS seconds (and record it in --json as samples)
    #[arg(long = "stats-period", value_name = "SECS")]
    stats_period: Option<f64>,
    /// Sleep when idle instead of spinning
    #[arg(long = "idle-backoff")]
    idle_backoff: bool,
    /// Count each forwarding core's cycles in polls that moved frames (busy)
    /// and in empty ones (idle), and print busy cycles per packet (DPDK's
    /// flag; one time-stamp counter read per poll)
    #[arg(long = "record-core-cycles")]
    record_core_cycles: bool,
    /// Capture every frame received and sent on every port to this pcap file
    #[arg(long, value_name = "FILE", requires = "pcap_limit")]
    pcap: Option<std::path::PathBuf>,
    /// Largest size of the --pcap file in bytes; later frames are counted, not written
    #[arg(long = "pcap-limit", value_name = "BYTES", requires = "pcap")]
    pcap_limit: Option<u64>,
    /// Check every received frame that a generator (txonly, flowgen, --tx-first)
    /// of ours built: lengths and payload pattern; counts them (verified,
    /// bad_payload). Reads every frame, so off by default
    #[arg(long = "verify-payload")]
    verify_payload: bool,
    /// DPDK EAL arguments, needed by dpdk: ports, e.g. "-l 0 --no-huge -m 512 --no-pci
    /// --no-shconf --file-prefix tp1" (the mempool then comes from DPDK; needs the dpdk feature)
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    eal: Option<String>,
}

fn parse_mode(s: &str) -> Result<FwdMode, String> {
    s.parse()
}

#[derive(Serialize)]
struct PortReport {
    spec: String,
    rx_packets: u64,
    tx_packets: u64,
    rx_bytes: u64,
    tx_bytes: u64,
    rx_pps: f64,
    tx_pps: f64,
    rx_missed: u64,
    rx_errors: u64,
    tx_errors: u64,
    rx_nombuf: u64,
    tx_dropped: u64,
    fwd_rx: u64,
    fwd_tx: u64,
    malformed: u64,
    /// With --verify-payload: generated frames received and checked, and how
    /// many of them had wrong lengths or a changed payload.
    verified: u64,
    bad_payload: u64,
    xstats: std::collections::BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct Sample {
    t_s: f64,
    forward_pps: f64,
}

/// One forwarding core's cycles (`--record-core-cycles`).
#[derive(Serialize)]
struct CoreReport {
    core: usize,
    busy_cycles: u64,
    idle_cycles: u64,
    total_cycles: u64,
    busy_iterations: u64,
    idle_iterations: u64,
    busy_percent: f64,
}

/// `--record-core-cycles`: every core's cycles and the cost per packet.
#[derive(Serialize)]
struct Cycles {
    tsc_hz: u64,
    cores: Vec<CoreReport>,
    busy_cycles: u64,
    total_cycles: u64,
    /// Frames the cost is counted over: sent, or received for rxonly (as
    /// DPDK's testpmd: received, or sent in txonly/flowgen).
    packets: u64,
    busy_cycles_per_packet: f64,
    total_cycles_per_packet: f64,
    busy_ns_per_packet: f64,
}

#[derive(Serialize)]
struct Report {
    fwd: String,
    duration_s: f64,
    forward_pps: f64,
    burst: u32,
    cores: Vec<usize>,
    ports: Vec<PortReport>,
    samples: Vec<Sample>,
    mbufs_total: usize,
    mbufs_leaked: usize,
    stopped_by_signal: bool,
    /// With --record-core-cycles; null otherwise.
    core_cycles: Option<Cycles>,
}

enum Failure {
    Usage(String),
    Run(String),
}

impl Failure {
    /// Says what failed, as `who: message`; 2 for a usage error, 1 otherwise.
    fn exit(self, who: &str) -> ExitCode {
        let (m, code) = match self {
            Failure::Usage(m) => (m, 2),
            Failure::Run(m) => (m, 1),
        };
        eprintln!("{who}: {m}");
        ExitCode::from(code)
    }
}

impl From<PmdError> for Failure {
    fn from(e: PmdError) -> Self {
        if e.is_usage() {
            Failure::Usage(e.to_string())
        } else {
            Failure::Run(e.to_string())
        }
    }
}

/// `testpmd conformance`: the checklist of [`pmd::conformance`].
#[derive(Parser, Debug)]
#[command(name = "testpmd conformance", about = "Conformance checklist for a port (DPDK DTS style)", after_help = pmd::registry::help())]
struct ConformanceArgs {
    /// Port under test
    #[arg(long, value_name = "SPEC")]
    port: String,
    /// The other end of the port's wire (omit for loopback ports and for null)
    #[arg(long, value_name = "SPEC")]
    peer: Option<String>,
    /// Frames per burst
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=512))]
    burst: u32,
    /// Longest wait for frames in flight, seconds
    #[arg(long, default_value_t = 1.0)]
    timeout: f64,
    /// Receive descriptors per queue
    #[arg(long, default_value_t = testpmd::conformance::DESC)]
    rxd: u16,
    /// Transmit descriptors per queue
    #[arg(long, default_value_t = testpmd::conformance::DESC)]
    txd: u16,
    /// Buffers in the mempool
    #[arg(long = "total-num-mbufs", default_value_t = 8192)]
    total_num_mbufs: usize,
    /// Data room of each buffer in bytes (the jumbo check needs 9 KiB)
    #[arg(long = "mbuf-size", default_value_t = testpmd::conformance::DATA_ROOM)]
    mbuf_size: usize,
    /// Per-core mempool cache size
    #[arg(long, default_value_t = 0)]
    mbcache: usize,
    /// DPDK EAL arguments, needed by dpdk: ports, as for forwarding (the mempool
    /// then comes from DPDK; needs the dpdk feature)
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    eal: Option<String>,
}

fn conformance(argv: Vec<String>) -> ExitCode {
    let a = ConformanceArgs::parse_from(argv);
    if !(a.timeout > 0.0 && a.timeout <= 60.0) {
        eprintln!("testpmd conformance: --timeout must be in (0, 60] seconds, got {}", a.timeout);
        return ExitCode::from(2);
    }
    let mut cfg = testpmd::conformance::ConformanceConfig::new(&a.port, a.peer.as_deref());
    cfg.burst = a.burst as usize;
    cfg.timeout = Duration::from_secs_f64(a.timeout);
    cfg.rx_desc = a.rxd;
    cfg.tx_desc = a.txd;
    cfg.pool_config = MempoolConfig::new("conformance", a.total_num_mbufs, a.mbuf_size, DEFAULT_HEADROOM, a.mbcache);
    match &a.eal {
        Some(eal) => match dpdk_pool(eal, &cfg.pool_config) {
            Ok(p) => cfg.pool = Some(p),
            Err(f) => return f.exit("testpmd conformance"),
        },
        None => {
            if let Some(p) = std::iter::once(&a.port).chain(&a.peer).find(|p| p.trim_start().starts_with("dpdk:")) {
                return Failure::Usage(needs_eal(p)).exit("testpmd conformance");
            }
        }
    }
    println!("Conformance of {}{}", a.port, a.peer.as_ref().map(|p| format!(" (peer {p})")).unwrap_or_default());
    match testpmd::conformance::run(&cfg) {
        Ok(results) => {
            let mut failed = 0;
            for r in &results {
                println!("{r}");
                failed += matches!(r.verdict, testpmd::conformance::Verdict::Fail(_)) as usize;
            }
            let unsupported =
                results.iter().filter(|r| matches!(r.verdict, testpmd::conformance::Verdict::Unsupported(_))).count();
            println!("{} passed, {failed} failed, {unsupported} unsupported", results.len() - failed - unsupported);
            let _ = std::io::stdout().flush();
            if failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("testpmd conformance: {e}");
            ExitCode::from(if e.is_usage() { 2 } else { 1 })
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("conformance") {
        return conformance(argv[1..].to_vec());
    }
    let args = Args::parse();
    match run(&args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(f) => f.exit("testpmd"),
    }
}

/// Forwarding cores running, whatever their queue types.
trait Running {
    /// Stops them; what they owned comes back, to be dropped when convenient.
    fn stop(self: Box<Self>) -> Result<Box<dyn std::any::Any + Send>, PmdError>;
}

impl<L: Lcore> Running for Lcores<L> {
    fn stop(self: Box<Self>) -> Result<Box<dyn std::any::Any + Send>, PmdError> {
        Ok(Box::new((*self).stop()?))
    }
}

/// Starts the forwarding cores. When every stream is DPDK queue to DPDK queue,
/// the engine runs over the concrete queue types, so the burst calls are
/// direct and inlined (see `pmd::fwd`); otherwise over trait objects.
fn launch(
    used: Vec<(usize, Vec<Stream>)>,
    cfg: &FwdConfig,
    idle: IdlePolicy,
    record: RecordCycles,
) -> Result<(Box<dyn Running>, Vec<SharedCycles>), PmdError> {
    #[cfg(feature = "dpdk")]
    {
        use pmd::drivers::dpdk::{DpdkRx, DpdkTx};
        if used.iter().all(|(_, s)| s.iter().all(|s| s.is::<DpdkRx, DpdkTx>())) {
            let lcores: Vec<(usize, FwdLcore<DpdkRx, DpdkTx>)> = used
                .into_iter()
                .map(|(c, s)| {
                    let s = s.into_iter().map(|s| s.downcast().unwrap_or_else(|_| unreachable!("types checked")));
                    (c, FwdLcore::new(cfg.clone(), s.collect()))
                })
                .collect();
            let rt = Lcores::launch(lcores, idle, record)?;
            let cycles = rt.cycle_handles();
            return Ok((Box::new(rt), cycles));
        }
    }
    let lcores: Vec<(usize, FwdLcore)> = used.into_iter().map(|(c, s)| (c, FwdLcore::new(cfg.clone(), s))).collect();
    let rt = Lcores::launch(lcores, idle, record)?;
    let cycles = rt.cycle_handles();
    Ok((Box::new(rt), cycles))
}

fn peer_of(p: usize, n: usize) -> usize {
    match n {
        1 => 0,
        n if n % 2 == 0 => p ^ 1,
        n => (p + 1) % n,
    }
}

/// Sum of frames the engines sent (or received, for rxonly) over all streams.
fn forwarded(mode: FwdMode, snaps: &[Vec<StreamStats>]) -> u64 {
    snaps.iter().flatten().map(|s| if mode == FwdMode::RxOnly { s.rx } else { s.tx }).sum()
}

/// The flag checks clap cannot express; returns the forwarding cores and each
/// port's peer MAC (`--eth-peer`).
fn check_args(a: &Args) -> Result<(Vec<usize>, Vec<MacAddr>), Failure> {
    let usage = |m: String| Failure::Usage(m);
    if !(a.duration > 0.0 && a.duration.is_finite()) {
        return Err(usage(format!("--duration must be a positive number of seconds, got {}", a.duration)));
    }
    if a.txpkts < MIN_TXPKTS || a.txpkts > a.mbuf_size {
        return Err(usage(format!(
            "--txpkts must be between {MIN_TXPKTS} and --mbuf-size ({}), got {}",
            a.mbuf_size, a.txpkts
        )));
    }
    if a.flows == 0 {
        return Err(usage("--flows must be at least 1".into()));
    }
    if let Some(t) = a.txq.filter(|&t| t != a.rxq) {
        return Err(usage(format!("--txq {t} must equal --rxq {} (stream q sends on the peer's queue q)", a.rxq)));
    }
    if let Some(p) = a.stats_period {
        if !(p > 0.0 && p.is_finite()) {
            return Err(usage(format!("--stats-period must be a positive number of seconds, got {p}")));
        }
    }
    let cores = parse_core_list(&a.cores)?;
    let nports = a.ports.len();
    let mut peer_macs: Vec<MacAddr> = (0..nports).map(|p| MacAddr([2, 0, 0, 0, 0, p as u8])).collect();
    for e in &a.eth_peer {
        let (n, mac) = e.split_once(',').ok_or_else(|| usage(format!("--eth-peer '{e}' is not N,MAC")))?;
        let n: usize = n.parse().map_err(|_| usage(format!("--eth-peer '{e}': '{n}' is not a port number")))?;
        if n >= nports {
            return Err(usage(format!("--eth-peer '{e}': there is no port {n}")));
        }
        peer_macs[n] = mac.parse().map_err(|m: String| usage(format!("--eth-peer: {m}")))?;
    }
    Ok((cores, peer_macs))
}

/// The mempool: `--total-num-mbufs`, or enough for every ring, cache and
/// burst; DPDK's with `--eal`, shared memory when a port's back end maps it.
fn make_pool(a: &Args, cores: usize) -> Result<Mempool, Failure> {
    let (burst, queues, nports) = (a.burst as usize, a.rxq as usize, a.ports.len());
    let count = a.total_num_mbufs.unwrap_or_else(|| {
        nports * queues * (a.rxd as usize + a.txd as usize + burst) + cores * (a.mbcache * 3 / 2 + burst) + 4096
    });
    let pool_cfg = MempoolConfig::new("mbuf_pool", count, a.mbuf_size, DEFAULT_HEADROOM, a.mbcache);
    Ok(match &a.eal {
        None => {
            if let Some(p) = a.ports.iter().find(|p| p.trim_start().starts_with("dpdk:")) {
                return Err(Failure::Usage(needs_eal(p)));
            }
            // A vhost-user back end maps the buffers of virtio-user ports.
            if a.ports.iter().any(|p| pmd::registry::needs_shared_pool(p)) {
                Mempool::new_shared(&pool_cfg)?
            } else {
                Mempool::new(&pool_cfg)?
            }
        }
        Some(eal) => dpdk_pool(eal, &pool_cfg)?,
    })
}

/// Opens, configures and starts every port (behind the capture, if any).
fn open_ports(a: &Args, pool: &Mempool, sink: Option<&pmd::pcap::PcapSink>) -> Result<Vec<Box<dyn Port>>, Failure> {
    let mut ports: Vec<Box<dyn Port>> = Vec::new();
    for spec in &a.ports {
        let p = pmd::open(spec)?;
        ports.push(match sink {
            Some(s) => Box::new(pmd::pcap::PcapPort::new(p, s.clone())),
            None => p,
        });
    }
    for p in ports.iter_mut() {
        let mut conf = PortConfig::new(a.rxq, a.rxq, a.rxd, a.txd, pool.clone());
        conf.rss = rss_config(a, &p.info());
        p.configure(&conf)?;
        match p.set_promiscuous(!a.no_promisc) {
            // As DPDK's testpmd: a device without the control (virtio-user
            // without a control queue) runs as it is, with a warning.
            Err(e @ PmdError::Unsupported { .. }) => eprintln!("testpmd: warning: {e}"),
            r => r?,
        }
        p.start()?;
    }
    Ok(ports)
}

/// RSS as DPDK's testpmd sets it up, on every port that offers it (unless
/// `--disable-rss`): Microsoft's key (repeated to the port's key length),
/// every hash type the port has, and a round-robin table of the port's
/// size. Also with one queue, so that a 1-queue run pays what a steered
/// one does (DPDK's testpmd turns it on from 2 queues; hardware hashes for
/// free, software RSS does not).
fn rss_config(a: &Args, info: &pmd::PortInfo) -> Option<pmd::RssConfig> {
    let capa = info.rss.as_ref().filter(|_| !a.disable_rss)?;
    Some(pmd::RssConfig {
        key: pmd::rss::MICROSOFT_KEY.iter().copied().cycle().take(capa.key_len).collect(),
        hash_types: capa.hash_types,
        reta: pmd::rss::spread_reta(a.rxq, capa.reta_size),
    })
}

/// Streams: (port, queue) -> (peer(port), queue), round-robin over the cores;
/// only the cores that got a stream.
fn make_streams(
    a: &Args,
    ports: &mut [Box<dyn Port>],
    cores: &[usize],
    peer_macs: &[MacAddr],
) -> Result<Vec<(usize, Vec<Stream>)>, Failure> {
    let nports = ports.len();
    let mut per_core: Vec<Vec<Stream>> = (0..cores.len()).map(|_| Vec::new()).collect();
    let mut i = 0;
    for q in 0..a.rxq {
        for p in 0..nports {
            let tp = peer_of(p, nports);
            let rx = ports[p].take_rx_queue(q)?;
            let tx = ports[tp].take_tx_queue(q)?;
            let tx_mac = ports[tp].info().mac;
            per_core[i % cores.len()].push(Stream::new(p, tp, q, rx, tx, tx_mac, peer_macs[tp]));
            i += 1;
        }
    }
    let used: Vec<(usize, Vec<Stream>)> = cores.iter().copied().zip(per_core).filter(|(_, s)| !s.is_empty()).collect();
    if used.len() < cores.len() && !a.json {
        eprintln!("testpmd: only {} stream(s); using {} of {} forwarding cores", i, used.len(), cores.len());
    }
    Ok(used)
}

/// The lines DPDK's testpmd prints before it starts forwarding.
fn print_setup(a: &Args, ports: &[Box<dyn Port>], cores: &[usize], pool: &Mempool) {
    for (n, p) in ports.iter().enumerate() {
        let info = p.info();
        let link = p.link();
        println!(
            "Port {n}: {} ({}) MAC {} link {} {} Mbps, {} queue(s), promiscuous {}",
            a.ports[n],
            info.driver,
            info.mac,
            if link.up { "up" } else { "down" },
            link.speed_mbps,
            a.rxq,
            if p.promiscuous() { "on" } else { "off" }
        );
    }
    println!("Forwarding mode {} on core(s) {cores:?}, burst {}, {} buffers", a.fwd, a.burst, pool.count());
}

type Counters = Vec<Vec<std::sync::Arc<testpmd::fwd::StreamCounters>>>;

fn snapshot(counters: &Counters) -> Vec<Vec<StreamStats>> {
    counters.iter().map(|l| l.iter().map(|c| c.stats()).collect()).collect()
}

/// Waits for `--duration` or a signal, printing (and recording) the rate every
/// `--stats-period`; returns the samples and whether a signal ended the run.
fn wait_for_the_end(a: &Args, signal: &StopSignal, counters: &Counters, t0: Instant) -> (Vec<Sample>, bool) {
    let deadline = t0 + Duration::from_secs_f64(a.duration);
    let mut samples = Vec::new();
    let mut last = (t0, 0u64);
    loop {
        let next = match a.stats_period {
            Some(p) => (last.0 + Duration::from_secs_f64(p)).min(deadline),
            None => deadline,
        };
        if signal.sleep_until(next) {
            return (samples, true);
        }
        let now = Instant::now();
        if a.stats_period.is_some() {
            let total = forwarded(a.fwd, &snapshot(counters));
            let pps = (total - last.1) as f64 / (now - last.0).as_secs_f64();
            samples.push(Sample { t_s: (now - t0).as_secs_f64(), forward_pps: pps });
            if !a.json {
                println!("  [{:7.2}s] forward {:>14.0} pps", (now - t0).as_secs_f64(), pps);
            }
            last = (now, total);
        }
        if now >= deadline {
            return (samples, false);
        }
    }
}

/// Each port's counters, with what the streams that read from it and wrote to
/// it forwarded (`stream_map[core][k]` is stream k's (rx port, tx port)).
fn port_reports(
    a: &Args,
    port_stats: &[PortStats],
    xstats: &[Vec<(String, u64)>],
    stream_map: &[Vec<(usize, usize)>],
    streams: &[Vec<StreamStats>],
    elapsed: f64,
) -> Vec<PortReport> {
    let mut reports = Vec::new();
    for (n, st) in port_stats.iter().enumerate() {
        let (mut fwd_rx, mut fwd_tx, mut dropped, mut malformed) = (0, 0, 0, 0);
        let (mut verified, mut bad_payload) = (0, 0);
        for (core, map) in stream_map.iter().enumerate() {
            for (k, (rp, tp)) in map.iter().enumerate() {
                let s = &streams[core][k];
                if *rp == n {
                    fwd_rx += s.rx;
                    malformed += s.malformed;
                    verified += s.verified;
                    bad_payload += s.bad_payload;
                }
                if *tp == n {
                    fwd_tx += s.tx;
                    dropped += s.tx_dropped + s.nombuf;
                }
            }
        }
        reports.push(PortReport {
            spec: a.ports[n].clone(),
            rx_packets: st.ipackets,
            tx_packets: st.opackets,
            rx_bytes: st.ibytes,
            tx_bytes: st.obytes,
            rx_pps: st.ipackets as f64 / elapsed,
            tx_pps: st.opackets as f64 / elapsed,
            rx_missed: st.imissed,
            rx_errors: st.ierrors,
            tx_errors: st.oerrors,
            rx_nombuf: st.rx_nombuf,
            tx_dropped: dropped,
            fwd_rx,
            fwd_tx,
            malformed,
            verified,
            bad_payload,
            xstats: xstats[n].iter().cloned().collect(),
        });
    }
    reports
}

/// `--record-core-cycles`: each core's busy/idle cycles and the cost per packet.
fn cycles_report(cores: &[usize], per_core: &[CoreCycles], packets: u64) -> Cycles {
    let sum = per_core.iter().fold(CoreCycles::default(), |acc, c| acc.plus(c));
    let per = |x: f64| if packets > 0 { x / packets as f64 } else { 0.0 };
    Cycles {
        tsc_hz: tsc_hz(),
        cores: cores
            .iter()
            .zip(per_core)
            .map(|(&core, c)| CoreReport {
                core,
                busy_cycles: c.busy,
                idle_cycles: c.idle,
                total_cycles: c.total(),
                busy_iterations: c.busy_iters,
                idle_iterations: c.idle_iters,
                busy_percent: c.busy_fraction() * 100.0,
            })
            .collect(),
        busy_cycles: sum.busy,
        total_cycles: sum.total(),
        packets,
        busy_cycles_per_packet: per(sum.busy as f64),
        total_cycles_per_packet: per(sum.total() as f64),
        busy_ns_per_packet: per(sum.busy_ns()),
    }
}

fn run(a: &Args) -> Result<i32, Failure> {
    let (cores, peer_macs) = check_args(a)?;
    let pool = make_pool(a, cores.len())?;
    let sink = match (&a.pcap, a.pcap_limit) {
        (Some(path), Some(limit)) => Some(pmd::pcap::PcapSink::create(path, limit)?),
        _ => None,
    };
    let mut ports = open_ports(a, &pool, sink.as_ref())?;
    let used = make_streams(a, &mut ports, &cores, &peer_macs)?;
    let core_list: Vec<usize> = used.iter().map(|(c, _)| *c).collect();
    if !a.json {
        print_setup(a, &ports, &core_list, &pool);
    }

    let cfg = FwdConfig {
        mode: a.fwd,
        burst: a.burst as usize,
        txpkts: a.txpkts,
        flows: a.flows,
        multi_flow: a.txonly_multi_flow,
        tx_first: a.tx_first,
        nb_pkts: a.nb_pkts,
        pool: pool.clone(),
        verify: a.verify_payload,
    };
    let stream_map: Vec<Vec<(usize, usize)>> =
        used.iter().map(|(_, s)| s.iter().map(|s| (s.rx_port, s.tx_port)).collect()).collect();
    let counters: Counters = used.iter().map(|(_, s)| s.iter().map(|s| s.counters()).collect()).collect();
    let signal = StopSignal::install()?;
    for p in ports.iter_mut() {
        p.reset_stats();
    }
    let idle = if a.idle_backoff {
        IdlePolicy::Backoff { idle_polls: 1024, max_sleep: Duration::from_micros(500) }
    } else {
        IdlePolicy::Spin
    };
    let record = if a.record_core_cycles { RecordCycles::On } else { RecordCycles::Off };
    if a.record_core_cycles {
        // Calibrated before the cores start, off the measured interval.
        tsc_hz();
    }
    let (rt, cycle_handles) = launch(used, &cfg, idle, record)?;
    let t0 = Instant::now();
    let (samples, by_signal) = wait_for_the_end(a, &signal, &counters, t0);
    // Stop the cores first so every counter below is final and exact.
    let lcores = rt.stop().map_err(|e| Failure::Run(e.to_string()))?;
    let elapsed = t0.elapsed().as_secs_f64();
    let per_core: Vec<CoreCycles> = cycle_handles.iter().map(|h| h.load()).collect();
    let final_snap = snapshot(&counters);
    let port_stats: Vec<PortStats> = ports.iter().map(|p| p.stats()).collect();
    let xstats: Vec<_> = ports.iter().map(|p| p.xstats()).collect();
    drop(lcores);
    for p in ports.iter_mut() {
        let _ = p.stop();
    }
    drop(ports);

    let reports = port_reports(a, &port_stats, &xstats, &stream_map, &final_snap, elapsed);
    if let (Some(s), false) = (&sink, a.json) {
        let c = s.counters();
        println!(
            "Capture {}: {} frame(s) written ({} bytes), {} not captured ({} bytes) over the size limit",
            a.pcap.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            c.captured_frames,
            c.file_bytes,
            c.not_captured_frames,
            c.not_captured_bytes
        );
    }
    drop(sink);
    let leaked = pool.in_use();
    let packets = forwarded(a.fwd, &final_snap);
    let report = Report {
        fwd: a.fwd.to_string(),
        duration_s: elapsed,
        forward_pps: packets as f64 / elapsed,
        burst: a.burst,
        core_cycles: a.record_core_cycles.then(|| cycles_report(&core_list, &per_core, packets)),
        cores: core_list,
        ports: reports,
        samples,
        mbufs_total: pool.count(),
        mbufs_leaked: leaked,
        stopped_by_signal: by_signal,
    };
    if a.json {
        println!("{}", serde_json::to_string(&report).expect("report serialises"));
    } else {
        print_tables(&report);
    }
    let _ = std::io::stdout().flush();
    let bad: u64 = report.ports.iter().map(|p| p.bad_payload).sum();
    if leaked > 0 {
        eprintln!("testpmd: {leaked} buffer(s) were not returned to the pool");
        return Ok(1);
    }
    if bad > 0 {
        eprintln!("testpmd: {bad} received frame(s) of ours had wrong lengths or a changed payload");
        return Ok(1);
    }
    Ok(0)
}

/// What to say when a `dpdk:` port is given without `--eal`.
fn needs_eal(port: &str) -> String {
    format!(
        "port '{port}' needs DPDK's EAL: give --eal \"ARGS\" (e.g. --eal \"-l 0 --no-huge -m 512 --no-pci \
         --no-shconf --file-prefix testpmd\")"
    )
}

/// Initialises EAL from `--eal` and makes the mempool a DPDK one, so dpdk:
/// ports receive into it and everything else shares it (zero copy).
#[cfg(feature = "dpdk")]
fn dpdk_pool(eal: &str, cfg: &MempoolConfig) -> Result<Mempool, Failure> {
    let mut ec = pmd::drivers::dpdk::EalConfig::from_args(eal)?;
    ec.program = "testpmd".into();
    pmd::drivers::dpdk::init(&ec)?;
    Ok(pmd::drivers::dpdk::create_mempool(cfg)?)
}

#[cfg(not(feature = "dpdk"))]
fn dpdk_pool(_eal: &str, _cfg: &MempoolConfig) -> Result<Mempool, Failure> {
    Err(Failure::Usage("--eal needs a testpmd built with the dpdk feature (cargo build -p pmd --features dpdk)".into()))
}

fn print_tables(r: &Report) {
    let (mut rx, mut tx, mut rxd, mut txd) = (0, 0, 0, 0);
    for (n, p) in r.ports.iter().enumerate() {
        println!("\n  ---------------------- Forward statistics for port {n}  ----------------------");
        println!("  RX-packets: {:<14} RX-dropped: {:<14} RX-total: {}", p.fwd_rx, p.malformed, p.fwd_rx);
        println!(
            "  TX-packets: {:<14} TX-dropped: {:<14} TX-total: {}",
            p.fwd_tx,
            p.tx_dropped,
            p.fwd_tx + p.tx_dropped
        );
        if p.verified > 0 || p.bad_payload > 0 {
            println!("  Payload-checked: {:<9} Bad-payload: {}", p.verified, p.bad_payload);
        }
        println!("  ----------------------------------------------------------------------------");
        rx += p.fwd_rx;
        tx += p.fwd_tx;
        rxd += p.malformed;
        txd += p.tx_dropped;
    }
    println!("\n  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++");
    println!("  RX-packets: {rx:<14} RX-dropped: {rxd:<14} RX-total: {rx}");
    println!("  TX-packets: {tx:<14} TX-dropped: {txd:<14} TX-total: {}", tx + txd);
    println!("  ++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++");
    for (n, p) in r.ports.iter().enumerate() {
        println!("\n  ######################## NIC statistics for port {n}  ########################");
        println!("  RX-packets: {:<10} RX-missed: {:<10} RX-bytes:  {}", p.rx_packets, p.rx_missed, p.rx_bytes);
        println!("  RX-errors: {}", p.rx_errors);
        println!("  RX-nombuf:  {}", p.rx_nombuf);
        println!("  TX-packets: {:<10} TX-errors: {:<10} TX-bytes:  {}", p.tx_packets, p.tx_errors, p.tx_bytes);
        println!("\n  Throughput (over {:.2} s)", r.duration_s);
        println!("  Rx-pps: {:>14.0}          Rx-bps: {:>14.0}", p.rx_pps, p.rx_bytes as f64 * 8.0 / r.duration_s);
        println!("  Tx-pps: {:>14.0}          Tx-bps: {:>14.0}", p.tx_pps, p.tx_bytes as f64 * 8.0 / r.duration_s);
        println!("  ############################################################################");
    }
    if let Some(c) = &r.core_cycles {
        for k in &c.cores {
            println!(
                "\n  Core {}: busy cycles={} idle cycles={} ({:.1}% busy), busy iterations={} idle iterations={}",
                k.core, k.busy_cycles, k.idle_cycles, k.busy_percent, k.busy_iterations, k.idle_iterations
            );
        }
        // DPDK testpmd's line, then the total-cycle variant.
        println!(
            "\n  CPU cycles/packet={:.2} (busy cycles={} / total {} packets={}) at {} MHz Clock",
            c.busy_cycles_per_packet,
            c.busy_cycles,
            r.fwd,
            c.packets,
            c.tsc_hz / 1_000_000
        );
        println!(
            "  Total cycles/packet={:.2} (total cycles={}); busy ns/packet={:.2}",
            c.total_cycles_per_packet, c.total_cycles, c.busy_ns_per_packet
        );
    }
    println!(
        "\nForward rate: {:.3} Mpps over {:.2} s; buffers leaked: {}",
        r.forward_pps / 1e6,
        r.duration_s,
        r.mbufs_leaked
    );
    if r.stopped_by_signal {
        println!("Stopped by signal.");
    }
}
