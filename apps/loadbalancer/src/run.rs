//! `lb run`: the runtime on the chosen stack, one [`Lb`] per core, the
//! health checker on core 0, the admin thread, and the signals.
//!
//! On several cores of our stack (`--cores 0,1 --rss-key KEY`, a port with
//! `queues=N`) the port spreads clients over the cores by the key, and each
//! core's server connections reply to it: the stack's connect picks a local
//! port whose reply hashes to the calling core (`stack::cores`). The stack's
//! per-core counters (`rss_misdirected`, `frames_handed_off`, ...) are in
//! each core's snapshot and in `/metrics`.
//!
//! Signals:
//! * SIGHUP (or `POST /reload`): re-read the file; a config that does not
//!   check is reported (one line) and the running one stays; a good one is
//!   applied in place on every core ([`Lb::reload`]);
//! * SIGTERM / SIGINT: stop accepting, let open sessions finish for
//!   `--grace-ms`, then exit with the counters (JSON, one line per core).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use flow::Runtime;

use crate::cli::Fail;
use crate::config::{Checked, Config};
use crate::control::Control;
use crate::proxy::{Lb, Snapshot};

/// Which stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StackKind {
    /// Our TCP/IP on a pmd port.
    User,
    /// The kernel's sockets (one SO_REUSEPORT listener per core).
    Kernel,
}

/// `lb run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(short = 'c', long = "config")]
    pub config: PathBuf,
    /// `user`: our TCP/IP on --port; `kernel`: the kernel's sockets.
    #[arg(long, value_enum)]
    pub stack: StackKind,
    /// Cores to run on, one balancer (and stack, and port queue) each: `0`, `0,1`, `1-3`.
    #[arg(long)]
    pub cores: String,
    /// After SIGTERM/SIGINT, how long open sessions may go on, ms.
    #[arg(long)]
    pub grace_ms: u64,
    /// (user) Port spec: `tap:NAME`, `af_packet:IFACE`, ... (`?queues=N` for N cores).
    #[arg(long)]
    pub port: Option<String>,
    /// (user) The Toeplitz key the port spreads flows over the cores by:
    /// `microsoft`, `symmetric` or hex bytes (at least 40). Needed on more
    /// than one core; server connections then pick a local port whose
    /// replies hash to the core that opened them.
    #[arg(long = "rss-key", value_name = "KEY")]
    pub rss_key: Option<String>,
    /// (user) Interface address ADDR/PREFIX, IPv4 or IPv6; repeat for more.
    #[arg(long = "ip")]
    pub ips: Vec<String>,
    /// (user) Default gateway (IPv4 or IPv6); repeat for both families.
    #[arg(long)]
    pub gateway: Vec<IpAddr>,
    /// (user) L3 MTU.
    #[arg(long, default_value_t = 1500)]
    pub mtu: u16,
    /// (user) TCP connections each core's stack holds at once (client and server side, closing ones included).
    #[arg(long, default_value_t = 65_536)]
    pub max_connections: usize,
    /// (user) Packet buffers.
    #[arg(long, default_value_t = 16384)]
    pub mbufs: usize,
    /// (user) Descriptors per port queue.
    #[arg(long, default_value_t = 1024)]
    pub queue_size: u16,
    /// (kernel) Poll epoll without sleeping, as our stack polls its port.
    #[arg(long)]
    pub busy_poll: bool,
}

/// The stack values of `lb` on our stack (addresses come from `--ip`).
pub fn stack_config(mtu: u16, tcp_max_connections: usize, tcp_rx_mbufs: usize) -> stack::StackConfig {
    stack::StackConfig {
        mac: pmd::MacAddr([2, 0, 0, 0, 0, 1]),
        mtu,
        ipv4: Vec::new(),
        ipv6: Vec::new(),
        gateway_v4: None,
        gateway_v6: None,
        ttl: 64,
        neighbor: stack::NeighborConfig {
            capacity: 1024,
            lifetime: Duration::from_secs(30),
            retries: 3,
            retry_interval: Duration::from_secs(1),
            pending: 64,
        },
        reassembly: stack::ReassemblyConfig {
            max_bytes: 4 << 20,
            max_datagrams: 256,
            timeout: Duration::from_secs(30),
        },
        reassembly_v6: stack::ReassemblyConfig {
            max_bytes: 4 << 20,
            max_datagrams: 256,
            timeout: Duration::from_secs(60),
        },
        icmp: stack::IcmpConfig { error_rate_per_sec: 1000, error_burst: 50 },
        timer_tick: Duration::from_micros(100),
        burst: 32,
        tx_backlog: 8192,
        tx_offloads: pmd::TxOffloads::empty(),
        tcp_max_connections,
        tcp_rx_mbufs,
    }
}

/// What one core returns: its counters and the sessions still open at the
/// end of the grace, or why it could not start.
type CoreResult = Result<(Snapshot, usize), String>;

async fn core<N: flow::Net>(net: N, index: usize, cfg: Arc<Checked>, ctl: Arc<Control>, banner: String) -> CoreResult {
    let lb = Lb::new(net.clone(), &cfg);
    if let Err((a, e)) = lb.start() {
        ctl.stop();
        return Err(format!("listen on {a}: {e}"));
    }
    if index == 0 {
        eprintln!("{banner}");
        flow::spawn(crate::health::run(net, lb.clone(), ctl.clone(), cfg.tcp.clone()));
    }
    flow::spawn(ctl.clone().core_task(lb.clone(), index));
    let left = lb.serve(ctl.stop.clone(), ctl.grace).await;
    eprint!("{}", lb.take_log());
    Ok((lb.core_snapshot(), left))
}

/// Runs until SIGTERM/SIGINT and the grace after it.
pub fn run(a: RunArgs) -> Result<(), Fail> {
    let cfg = Arc::new(Config::load(&a.config).map_err(|e| Fail::usage(format!("{}: {e}", a.config.display())))?);
    if !cfg.forward.is_empty() {
        return crate::forward::run::run(&a, &cfg);
    }
    let cores = pmd::runtime::parse_core_list(&a.cores).map_err(|e| Fail::usage(format!("--cores: {e}")))?;
    pmd::runtime::check_cores(&cores).map_err(|e| Fail::usage(format!("--cores: {e}")))?;
    // The flags against the stack, before anything is opened.
    let key = a.rss_key.as_deref().map(rss_key).transpose()?;
    match a.stack {
        StackKind::Kernel => {
            for (set, flag) in [
                (a.port.is_some(), "--port"),
                (!a.ips.is_empty(), "--ip"),
                (!a.gateway.is_empty(), "--gateway"),
                (a.rss_key.is_some(), "--rss-key"),
            ] {
                if set {
                    return Err(Fail::usage(format!("{flag} is for --stack user; the kernel uses its own interfaces")));
                }
            }
        }
        StackKind::User => {
            if a.port.is_none() {
                return Err(Fail::usage("--stack user needs --port SPEC"));
            }
            // A server's replies must reach the core that connected to it:
            // the port steers by this key, and the stack's connect picks a
            // local port whose reply hashes to the calling core.
            if cores.len() > 1 && a.rss_key.is_none() {
                return Err(Fail::usage(format!(
                    "--stack user on {} cores needs --rss-key (microsoft, symmetric or hex): the port spreads \
                     flows over the cores by it",
                    cores.len()
                )));
            }
            if a.ips.is_empty() {
                return Err(Fail::usage("--stack user needs at least one --ip ADDR/PREFIX"));
            }
        }
    }
    let ctl = Control::new(cores.len(), cfg.clone(), Duration::from_millis(a.grace_ms));
    // Measured once (50 ms) here, not on a data core's first snapshot.
    let _ = pmd::runtime::tsc_hz();
    // Signals: SIGTERM/SIGINT stop, SIGHUP reloads.
    let sig = pmd::runtime::StopSignal::install().map_err(|e| Fail::other(e.to_string()))?;
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .map_err(|e| Fail::other(format!("installing SIGHUP: {e}")))?;
    let admin = match cfg.admin {
        Some(addr) => Some(
            crate::admin::spawn(addr, ctl.clone(), hup.clone())
                .map_err(|e| Fail::usage(format!("admin.listen {addr}: {e}")))?,
        ),
        None => None,
    };
    let (c2, path) = (ctl.clone(), a.config.clone());
    let watcher = std::thread::spawn(move || {
        while !c2.stop.load(Ordering::Acquire) {
            if sig.raised() {
                eprintln!("lb: stopping: no new connections, {} ms for open ones", c2.grace.as_millis());
                c2.stop();
                break;
            }
            if hup.swap(false, Ordering::AcqRel) {
                match Config::load(&path) {
                    Ok(c) => c2.publish(Arc::new(c)),
                    Err(e) => eprintln!("lb: reload refused, running config kept: {}: {e}", path.display()),
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let listen: Vec<String> =
        cfg.frontends.iter().flat_map(|f| f.listen.iter().map(move |l| format!("{}={l}", f.name))).collect();
    let banner = format!("lb: {:?} stack on cores {}, listening {}", a.stack, a.cores, listen.join(" "));
    let results: Vec<CoreResult> = match a.stack {
        StackKind::Kernel => Runtime::kernel()
            .cores(&cores)
            .busy_poll(a.busy_poll)
            .run(|c| core(c.net, c.index, cfg.clone(), ctl.clone(), banner.clone()))
            .map_err(|e| Fail::other(format!("runtime: {e}")))?,
        StackKind::User => {
            let port = a.port.clone().expect("checked above");
            let rx_mbufs = a.mbufs / 4 / cores.len().max(1);
            let mut sc = stack_config(a.mtu, a.max_connections, rx_mbufs);
            for ip in &a.ips {
                let bad = || Fail::usage(format!("--ip '{ip}' is not ADDRESS/PREFIX"));
                if ip.contains(':') {
                    sc.ipv6.push(ip.parse().map_err(|_| bad())?);
                } else {
                    sc.ipv4.push(ip.parse().map_err(|_| bad())?);
                }
            }
            for g in &a.gateway {
                match g {
                    IpAddr::V4(v) => sc.gateway_v4 = Some(*v),
                    IpAddr::V6(v) => sc.gateway_v6 = Some(*v),
                }
            }
            let mut rt = Runtime::user(&port, sc).mac_from_port().cores(&cores).mbufs(a.mbufs).queue_size(a.queue_size);
            if let Some(k) = &key {
                rt = rt.rss_key(k);
            }
            let rt = rt.check().map_err(|e| Fail::usage(e.to_string()))?;
            rt.run(|c| core(c.net, c.index, cfg.clone(), ctl.clone(), banner.clone()))
                .map_err(|e| Fail::other(format!("runtime: {e}")))?
        }
    };
    ctl.stop();
    let _ = watcher.join();
    if let Some(h) = admin {
        let _ = h.join();
    }
    let mut left = 0;
    for (i, r) in results.into_iter().enumerate() {
        let (snap, l) = r.map_err(Fail::usage)?;
        left += l;
        println!("{}", serde_json::json!({ "core": i, "counters": snap }));
    }
    if left > 0 {
        eprintln!("lb: {left} sessions were still open at the end of the grace");
    }
    Ok(())
}

/// `--rss-key`: a named key or hex bytes ([`pmd::rss::parse_key`]).
fn rss_key(k: &str) -> Result<Vec<u8>, Fail> {
    pmd::rss::parse_key(k).map_err(|e| Fail::usage(format!("--rss-key: {e}")))
}
