//! `l3demo`: the stack on any port spec, in a poll loop, so a person can `ping`
//! it (v4 and v6) and talk to its UDP echo ports.
//!
//! ```sh
//! l3demo --print-config --ipv4 198.18.0.2/24 --ipv6 2001:2::2/64 > l3.conf   # starter file
//! l3demo --port tap:l3demo0 --config l3.conf --udp-echo 7 --duration 60
//! ```
//!
//! Every stack value comes from the config file (a missing key is an error that
//! names it); `mac = port` takes the port's own MAC. The loop is the one of
//! DESIGN.md: rx burst, input, UDP echo (zero copy: the received buffers are
//! sent back), timers, one tx flush per iteration. SIGINT/SIGTERM stop it; the
//! counters are printed at the end (`--json` for one JSON object). Exit status:
//! 2 for a usage or configuration error, 1 for a leaked buffer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use pmd::runtime::StopSignal;
use pmd::{Mempool, MempoolConfig, MonotonicClock, PortConfig};
use stack::{Driver, StackConfig, UdpConfig, UdpDatagram};

#[derive(Parser, Debug)]
#[command(name = "l3demo", about = "Run the IP stack on a port: answers ARP/NDP, ping, UDP echo")]
struct Args {
    /// Port spec (`ring:NAME`, `tap:NAME`, `af_packet:IFACE`, ...).
    #[arg(long)]
    port: Option<String>,
    /// Stack configuration file (`key = value`, every key required).
    #[arg(long)]
    config: Option<String>,
    /// Print a starter configuration with every value spelled out, and exit.
    #[arg(long)]
    print_config: bool,
    /// With --print-config: IPv4 address/prefix (repeatable).
    #[arg(long)]
    ipv4: Vec<String>,
    /// With --print-config: IPv6 address/prefix (repeatable).
    #[arg(long)]
    ipv6: Vec<String>,
    /// UDP port to echo on, on every address (repeatable).
    #[arg(long)]
    udp_echo: Vec<u16>,
    /// Receive queue length of each echo socket, in datagrams.
    #[arg(long, default_value_t = 1024)]
    udp_rx_queue: usize,
    /// Stop after this many seconds (0: until SIGINT/SIGTERM).
    #[arg(long, default_value_t = 0)]
    duration: u64,
    /// Buffers in the mempool.
    #[arg(long, default_value_t = 8192)]
    mbufs: usize,
    /// Print the counters as one JSON-like line of name=value pairs.
    #[arg(long)]
    json: bool,
}

fn starter(args: &Args) -> Result<String, String> {
    let cfg = StackConfig {
        mac: pmd::MacAddr([2, 0, 0, 0, 0, 1]),
        mtu: 1500,
        ipv4: args
            .ipv4
            .iter()
            .map(|s| s.parse().map_err(|_| format!("--ipv4 '{s}' is not ADDRESS/PREFIX")))
            .collect::<Result<_, _>>()?,
        ipv6: args
            .ipv6
            .iter()
            .map(|s| s.parse().map_err(|_| format!("--ipv6 '{s}' is not ADDRESS/PREFIX")))
            .collect::<Result<_, _>>()?,
        gateway_v4: None,
        gateway_v6: None,
        ttl: 64,
        neighbor: stack::NeighborConfig {
            capacity: 1024,
            lifetime: Duration::from_secs(30),
            retries: 3,
            retry_interval: Duration::from_secs(1),
            pending: 16,
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
        timer_tick: Duration::from_millis(1),
        burst: 32,
        tx_backlog: 4096,
        tx_offloads: pmd::TxOffloads::empty(),
        tcp_max_connections: 65536,
        tcp_rx_mbufs: args.mbufs / 4,
    };
    if cfg.ipv4.is_empty() && cfg.ipv6.is_empty() {
        return Err("--print-config needs at least one --ipv4 or --ipv6".into());
    }
    Ok(cfg.to_text().replacen(&format!("mac = {}", cfg.mac), "mac = port   # the port's own MAC, or an address", 1))
}

fn run(args: Args) -> Result<bool, (i32, String)> {
    let usage = |e: String| (2, e);
    if args.print_config {
        print!("{}", starter(&args).map_err(usage)?);
        return Ok(true);
    }
    let spec = args.port.clone().ok_or_else(|| usage("--port is required".into()))?;
    let path =
        args.config.clone().ok_or_else(|| usage("--config is required (write one with --print-config)".into()))?;
    let text = std::fs::read_to_string(&path).map_err(|e| usage(format!("reading {path}: {e}")))?;
    let pool =
        Mempool::new(&MempoolConfig::new("l3demo", args.mbufs, 2048, 128, 256)).map_err(|e| (1, e.to_string()))?;
    let start_avail = pool.available();
    let mut port = pmd::open(&spec).map_err(|e| (if e.is_usage() { 2 } else { 1 }, e.to_string()))?;
    let info = port.info();
    let text: String = text
        .lines()
        .map(|l| {
            let k = l.split('#').next().unwrap_or("").trim();
            if k.replace(' ', "") == "mac=port" {
                format!("mac = {}", info.mac)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let cfg = StackConfig::parse(&text).map_err(|e| usage(format!("{path}: {e}")))?;
    let mut pc = PortConfig::new(1, 1, 1024, 1024, pool.clone());
    pc.tx_offloads = cfg.tx_offloads;
    port.configure(&pc).map_err(|e| (2, e.to_string()))?;
    port.start().map_err(|e| (1, e.to_string()))?;
    let rx = port.take_rx_queue(0).map_err(|e| (1, e.to_string()))?;
    let tx = port.take_tx_queue(0).map_err(|e| (1, e.to_string()))?;
    let addrs: Vec<String> =
        cfg.ipv4.iter().map(|c| c.to_string()).chain(cfg.ipv6.iter().map(|c| c.to_string())).collect();
    let mut s = Driver::new(cfg, rx, tx, pool.clone(), Arc::new(MonotonicClock)).map_err(|e| usage(e.to_string()))?;
    let mut socks = Vec::new();
    for p in &args.udp_echo {
        for any in [IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)] {
            let h = s
                .udp()
                .bind(SocketAddr::new(any, *p), UdpConfig { rx_queue_len: args.udp_rx_queue })
                .map_err(|e| usage(e.to_string()))?;
            socks.push(h);
        }
    }
    eprintln!(
        "l3demo: {} ({}) mac {} addresses {} udp echo {:?}; ^C to stop",
        spec,
        info.driver,
        info.mac,
        addrs.join(" "),
        args.udp_echo
    );
    let signal = StopSignal::install().map_err(|e| (1, e.to_string()))?;
    let end = (args.duration > 0).then(|| Instant::now() + Duration::from_secs(args.duration));
    let mut got: Vec<UdpDatagram> = Vec::with_capacity(64);
    let mut back = Vec::with_capacity(64);
    let mut i = 0u64;
    loop {
        s.poll();
        for &h in &socks {
            if s.udp().recv(h, &mut got, 64).unwrap_or(0) > 0 {
                back.extend(got.drain(..).map(|d| (d.payload, d.peer)));
                let _ = s.udp().send_batch(h, &mut back);
            }
        }
        i += 1;
        if i % 1024 == 0 && (signal.raised() || end.is_some_and(|e| Instant::now() >= e)) {
            break;
        }
    }
    let stats = s.stats().clone();
    drop(s);
    drop(port);
    let pairs: Vec<String> =
        stats.pairs().into_iter().filter(|(_, v)| *v > 0).map(|(k, v)| format!("{k}={v}")).collect();
    if args.json {
        let body: Vec<String> = stats.pairs().into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        println!("{{{}}}", body.join(","));
    } else {
        println!("{}", pairs.join("\n"));
    }
    let leaked = start_avail - pool.available();
    if leaked > 0 {
        eprintln!("l3demo: {leaked} buffers leaked");
        return Ok(false);
    }
    Ok(true)
}

fn main() {
    match run(Args::parse()) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err((code, msg)) => {
            eprintln!("l3demo: {msg}");
            std::process::exit(code);
        }
    }
}
