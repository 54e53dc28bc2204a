//! Flags, the configurations built from them, and the `server` / `client`
//! commands on whichever stack `--stack` names.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};
use flow::runtime::KernelRuntime;
use flow::{CongestionControl, FlowError, ListenConfig, RtoConfig, Runtime, SynCookies, TcpConfig, UdpConfig};

use crate::client::{self, ClientConfig, Counters, Mode, Payload, Report, Via};
use crate::connect_opts::{parse_target as parse_uri_target, ResolveArgs, Target, TlsClientArgs, TlsServerArgs};
use crate::server::{self, ServerConfig, ServerStats};
use crate::Fail;

/// Which stack carries the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StackKind {
    /// Our userspace TCP/IP on a pmd port (`--port`, `--ip`).
    User,
    /// The kernel's sockets (mio).
    Kernel,
}

/// Where and how the stack runs.
#[derive(Args, Debug, Clone)]
pub struct StackArgs {
    /// `user`: our TCP/IP on --port; `kernel`: the kernel's sockets.
    #[arg(long, value_enum)]
    pub stack: StackKind,
    /// Cores to run on, one stack instance (and port queue) each: `0`, `0,2`, `1-3`.
    #[arg(long, default_value = "0")]
    pub cores: String,
    /// (user) Port spec: `tap:NAME`, `af_packet:IFACE`, `ring:NAME?peer=..`, ...
    #[arg(long)]
    pub port: Option<String>,
    /// (user) Interface address ADDR/PREFIX, IPv4 or IPv6; repeat for more.
    #[arg(long = "ip")]
    pub ips: Vec<String>,
    /// (user) Default gateway (IPv4 or IPv6); repeat for both families.
    #[arg(long)]
    pub gateway: Vec<IpAddr>,
    /// (user) Wrap the port in the impairment decorator: `loss=0.02&seed=1` (see pmd::impair).
    #[arg(long)]
    pub impair: Option<String>,
    /// (user) L3 MTU.
    #[arg(long, default_value_t = 1500)]
    pub mtu: u16,
    /// (user) TCP connections each core's stack holds at once (incl. closing ones).
    #[arg(long, default_value_t = 65_536)]
    pub max_connections: usize,
    /// (user) Packet buffers per core.
    #[arg(long, default_value_t = 16384)]
    pub mbufs: usize,
    /// (user) Descriptors per port queue.
    #[arg(long, default_value_t = 1024)]
    pub queue_size: u16,
    /// (user, more than one core) The RSS key the port spreads flows over
    /// the cores by: `microsoft`, `symmetric` (both directions of a flow
    /// hash the same), or 40+ bytes in hex.
    #[arg(long = "rss-key", value_name = "KEY")]
    pub rss_key: Option<String>,
    /// (kernel) Poll epoll without sleeping, as our stack polls its port.
    #[arg(long)]
    pub busy_poll: bool,
}

/// Congestion control by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Cc {
    /// RFC 5681 / 6582.
    Newreno,
    /// RFC 9438.
    Cubic,
}

/// Every TCP value of a connection.
#[derive(Args, Debug, Clone)]
pub struct TcpArgs {
    /// MSS we advertise and send with.
    #[arg(long, default_value_t = 1460)]
    pub mss: u16,
    /// Send buffer per connection, bytes.
    #[arg(long, default_value_t = 262_144)]
    pub send_buffer: usize,
    /// Receive buffer per connection, bytes (the most we advertise).
    #[arg(long, default_value_t = 262_144)]
    pub recv_buffer: usize,
    /// RTO before the first RTT sample, ms.
    #[arg(long, default_value_t = 200)]
    pub rto_initial_ms: u64,
    /// Lowest RTO, ms.
    #[arg(long, default_value_t = 5)]
    pub rto_min_ms: u64,
    /// Highest RTO, ms.
    #[arg(long, default_value_t = 10_000)]
    pub rto_max_ms: u64,
    /// Retransmissions of a segment before the connection times out.
    #[arg(long, default_value_t = 10)]
    pub max_retransmits: u32,
    /// SYN / SYN-ACK retransmissions before giving up.
    #[arg(long, default_value_t = 5)]
    pub syn_retries: u32,
    /// TIME-WAIT duration, ms (it holds the closing side's port: at N closes/s,
    /// N x this many ports of the 16384 ephemeral ones are held).
    #[arg(long, default_value_t = 200)]
    pub time_wait_ms: u64,
    /// Window scale shift offered (0-14).
    #[arg(long, default_value_t = 7)]
    pub window_scale: u8,
    /// Offer TCP timestamps: true|false.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub timestamps: bool,
    /// Offer SACK: true|false.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub sack: bool,
    /// Nagle's algorithm: true|false.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub nagle: bool,
    /// Delayed ACK in microseconds (an answer written meanwhile carries the
    /// ACK, as the kernel's delayed ACK does); 0 acknowledges every segment at once.
    #[arg(long, default_value_t = 200)]
    pub delayed_ack_us: u64,
    /// Congestion control.
    #[arg(long, value_enum, default_value_t = Cc::Newreno)]
    pub congestion: Cc,
    /// Challenge ACKs per second (RFC 5961).
    #[arg(long, default_value_t = 100)]
    pub challenge_ack_limit: u32,
    /// MSS assumed when the peer sends none.
    #[arg(long, default_value_t = 536)]
    pub default_peer_mss: u16,
}

impl TcpArgs {
    /// The TCP configuration; the error names the flag at fault.
    pub fn config(&self) -> Result<TcpConfig, Fail> {
        const MS: u64 = 1_000_000;
        let c = TcpConfig {
            mss: self.mss,
            send_buffer: self.send_buffer,
            recv_buffer: self.recv_buffer,
            rto: RtoConfig {
                initial_ns: self.rto_initial_ms * MS,
                min_ns: self.rto_min_ms * MS,
                max_ns: self.rto_max_ms * MS,
            },
            max_retransmits: self.max_retransmits,
            syn_retries: self.syn_retries,
            time_wait_ns: self.time_wait_ms * MS,
            window_scale: Some(self.window_scale),
            timestamps: self.timestamps,
            sack: self.sack,
            nagle: self.nagle,
            delayed_ack_ns: (self.delayed_ack_us > 0).then_some(self.delayed_ack_us * 1000),
            keepalive: None,
            congestion: match self.congestion {
                Cc::Newreno => CongestionControl::NewReno,
                Cc::Cubic => CongestionControl::Cubic,
            },
            challenge_ack_limit: self.challenge_ack_limit,
            default_peer_mss: self.default_peer_mss,
        };
        c.validate().map_err(|e| Fail::usage(format!("--{}: {}", e.field().replace('_', "-"), e.reason())))?;
        Ok(c)
    }
}

/// `echo server`.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub tcp: TcpArgs,
    /// Address to serve TCP and UDP on: `IP:PORT`, or `:PORT` for every address of both families.
    #[arg(long)]
    pub listen: String,
    /// Established connections waiting for accept.
    #[arg(long, default_value_t = 1024)]
    pub backlog: usize,
    /// Half-open connections kept (user stack; the kernel's is a sysctl).
    #[arg(long, default_value_t = 1024)]
    pub syn_backlog: usize,
    /// How long a half-open connection may wait for the handshake's last ACK, ms.
    #[arg(long, default_value_t = 3_000)]
    pub syn_timeout_ms: u64,
    /// SYN cookies: off | when-full | always.
    #[arg(long, value_enum, default_value_t = Cookies::WhenFull)]
    pub syn_cookies: Cookies,
    /// Close connections idle this long, ms (0: never).
    #[arg(long, default_value_t = 0)]
    pub idle_timeout_ms: u64,
    /// UDP datagrams queued per socket.
    #[arg(long, default_value_t = 1024)]
    pub udp_queue: usize,
    /// Serve TCP only.
    #[arg(long)]
    pub no_udp: bool,
    /// Answer the sockperf protocol instead of plain echo.
    #[arg(long)]
    pub sockperf: bool,
    /// Stop after this many seconds (0: at SIGINT/SIGTERM).
    #[arg(long, default_value_t = 0)]
    pub duration: u64,
    /// Print the final counters as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tls: TlsServerArgs,
}

/// SYN cookie policy by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Cookies {
    /// Never.
    Off,
    /// When a backlog is full.
    WhenFull,
    /// For every SYN.
    Always,
}

/// `echo client`.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub tcp: TcpArgs,
    /// Server: `tcp://HOST:PORT` or `tls://HOST[:PORT]`; HOST an address (IPv6 as
    /// `[ADDR]`) or a name (needs --resolver; connected with happy eyeballs).
    #[arg(long)]
    pub target: String,
    /// What the messages hold: pattern, or palindrome-line (for a line-reversing server).
    #[arg(long, value_enum, default_value_t = Payload::Pattern)]
    pub payload: Payload,
    #[command(flatten)]
    pub resolve: ResolveArgs,
    #[command(flatten)]
    pub tls: TlsClientArgs,
    /// Connections (spread over the cores).
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// Message size, bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// pingpong (closed loop), throughput (open loop at --rate), churn (connect, one message, close).
    #[arg(long, value_enum, default_value_t = Mode::Pingpong)]
    pub mode: Mode,
    /// Messages per second in total (required for --mode throughput).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of load.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Longest wait for a connection, ms.
    #[arg(long, default_value_t = 3_000)]
    pub connect_timeout_ms: u64,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `echo resolve`.
#[derive(Args, Debug, Clone)]
pub struct ResolveCmdArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub tcp: TcpArgs,
    #[command(flatten)]
    pub resolve: ResolveArgs,
    /// The name to look up (A and AAAA at once).
    #[arg(long)]
    pub name: String,
}

/// `echo bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Seconds per case and side.
    #[arg(long, default_value_t = 3.0)]
    pub secs: f64,
    /// Rounds (ours then kernel, alternating); rates are the median round.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// The two cores: client, server.
    #[arg(long, default_value = "0,1")]
    pub cores: String,
    /// Message size, bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Connections of the messages/s case.
    #[arg(long, default_value_t = 64)]
    pub conns: usize,
    /// Connection tasks of the churn case.
    #[arg(long, default_value_t = 8)]
    pub churn_conns: usize,
    /// TIME-WAIT of the churn case, ms (ours: the closing client holds one of
    /// 16384 ephemeral ports that long, so it caps connections/s at 16384 / this;
    /// the kernel reuses TIME-WAIT ports on loopback, tcp_tw_reuse).
    #[arg(long, default_value_t = 50)]
    pub churn_time_wait_ms: u64,
    /// Packet buffers per stack (ours).
    #[arg(long, default_value_t = 16384)]
    pub mbufs: usize,
    /// TCP connections each of our stacks holds at once (incl. TIME-WAIT).
    #[arg(long, default_value_t = 65_536)]
    pub max_connections: usize,
    #[command(flatten)]
    pub tcp: TcpArgs,
}

/// `:7` → `[::]:7`; otherwise `IP:PORT`.
pub fn parse_listen(s: &str) -> Result<SocketAddr, Fail> {
    if let Some(p) = s.strip_prefix(':') {
        let port: u16 = p.parse().map_err(|_| Fail::usage(format!("--listen '{s}': '{p}' is not a port")))?;
        return Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
    }
    s.parse().map_err(|_| Fail::usage(format!("--listen '{s}' is not IP:PORT or :PORT")))
}

/// `echo resolve`: the name's addresses from the resolver on the chosen stack,
/// with the resolver's counters, as one JSON object.
pub fn resolve(a: ResolveCmdArgs) -> Result<(), Fail> {
    let tcp = a.tcp.config()?;
    let rc = a.resolve.resolver(&tcp)?;
    flow::connect::uri::host(&a.name).map_err(|e| Fail::usage(format!("--name: {e}")))?;
    let rt = runtime(&a.stack)?;
    let name = a.name.clone();
    let out = crate::run_on!(rt, |core| {
        let (rc, name) = (rc.clone(), name.clone());
        async move {
            let r = flow::dns::Resolver::new(rc, flow::connect::Dialer::of(core.net), flow::dns::Hosts::new())
                .map_err(|e| e.to_string())?;
            let (v6, v4) = r.lookup_ip(&name).await;
            let list = |x: &Result<Vec<IpAddr>, flow::dns::ResolveError>| match x {
                Ok(v) => serde_json::json!(v.iter().map(|a| a.to_string()).collect::<Vec<_>>()),
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            };
            let st = r.stats();
            let ok = v6.is_ok() || v4.is_ok();
            Ok::<_, String>((
                ok,
                serde_json::json!({
                    "name": name, "v6": list(&v6), "v4": list(&v4),
                    "stats": { "queries": st.queries, "answers": st.answers, "mismatched": st.mismatched,
                               "truncated": st.truncated, "timeouts": st.timeouts }
                }),
            ))
        }
    })
    .map_err(|e| flow_fail("resolve", e))?;
    let (ok, j) = out.into_iter().next().expect("one core").map_err(Fail::usage)?;
    println!("{j}");
    if ok {
        Ok(())
    } else {
        Err(Fail::usage(format!("resolve {}: {j}", a.name)))
    }
}

/// `tcp://IP:PORT`.
pub fn parse_target(s: &str) -> Result<SocketAddr, Fail> {
    let rest = s.strip_prefix("tcp://").ok_or_else(|| Fail::usage(format!("--target '{s}' must start with tcp://")))?;
    let a: SocketAddr =
        rest.parse().map_err(|_| Fail::usage(format!("--target '{s}': '{rest}' is not IP:PORT ([IPv6]:PORT)")))?;
    if a.port() == 0 {
        return Err(Fail::usage(format!("--target '{s}': port 0")));
    }
    Ok(a)
}

/// How a flow error ends the program: the outcomes of reaching a target are
/// the user's to fix (status 2), like a bad flag.
pub fn flow_fail(ctx: &str, e: FlowError) -> Fail {
    let code = match &e {
        FlowError::Refused | FlowError::Unreachable | FlowError::TimedOut => 2,
        // A certificate that does not verify, an alert: the target's or the flags' to fix.
        FlowError::Tls(_) => 2,
        FlowError::Io(io) if io.kind() == std::io::ErrorKind::InvalidInput => 2,
        FlowError::Io(io)
            if matches!(io.kind(), std::io::ErrorKind::AddrInUse | std::io::ErrorKind::AddrNotAvailable) =>
        {
            2
        }
        _ => 1,
    };
    Fail { code, msg: format!("{ctx}: {e}") }
}

/// A runtime picked by `--stack`.
pub enum Rt {
    /// Kernel sockets.
    Kernel(KernelRuntime),
    /// Our stack.
    User(Box<flow::user::UserRuntime>),
}

/// Runs the same generic closure on whichever runtime `$rt` holds.
#[macro_export]
macro_rules! run_on {
    ($rt:expr, $f:expr) => {
        match $rt {
            $crate::opts::Rt::Kernel(k) => k.run($f),
            $crate::opts::Rt::User(u) => u.run($f),
        }
    };
}

/// Builds the runtime the flags ask for.
pub fn runtime(a: &StackArgs) -> Result<Rt, Fail> {
    let cores = pmd::runtime::parse_core_list(&a.cores).map_err(|e| Fail::usage(format!("--cores: {e}")))?;
    pmd::runtime::check_cores(&cores).map_err(|e| Fail::usage(format!("--cores: {e}")))?;
    match a.stack {
        StackKind::Kernel => {
            for (set, flag) in
                [(a.port.is_some(), "--port"), (!a.ips.is_empty(), "--ip"), (a.impair.is_some(), "--impair")]
            {
                if set {
                    return Err(Fail::usage(format!("{flag} is for --stack user; the kernel uses its own interfaces")));
                }
            }
            Ok(Rt::Kernel(Runtime::kernel().cores(&cores).busy_poll(a.busy_poll)))
        }
        StackKind::User => {
            let port = a.port.clone().ok_or_else(|| Fail::usage("--stack user needs --port SPEC"))?;
            if a.ips.is_empty() {
                return Err(Fail::usage("--stack user needs at least one --ip ADDR/PREFIX"));
            }
            let spec = match &a.impair {
                Some(i) => {
                    format!("{port}{}{}", if port.contains('?') { '&' } else { '?' }, i.trim_start_matches(['?', '&']))
                }
                None => port,
            };
            // Every core's stack shares the pool: a quarter of it, split
            // between them, may hold received data.
            let rx_mbufs = a.mbufs / 4 / cores.len().max(1);
            let mut cfg = stack_config(pmd::MacAddr([2, 0, 0, 0, 0, 1]), a.mtu, a.max_connections, rx_mbufs);
            for ip in &a.ips {
                let ip = ip.as_str();
                if ip.contains(':') {
                    cfg.ipv6.push(ip.parse().map_err(|_| Fail::usage(format!("--ip '{ip}' is not ADDRESS/PREFIX")))?);
                } else {
                    cfg.ipv4.push(ip.parse().map_err(|_| Fail::usage(format!("--ip '{ip}' is not ADDRESS/PREFIX")))?);
                }
            }
            for g in &a.gateway {
                match g {
                    IpAddr::V4(v) => cfg.gateway_v4 = Some(*v),
                    IpAddr::V6(v) => cfg.gateway_v6 = Some(*v),
                }
            }
            let mut rt =
                Runtime::user(&spec, cfg).mac_from_port().cores(&cores).mbufs(a.mbufs).queue_size(a.queue_size);
            match (&a.rss_key, cores.len()) {
                (Some(k), _) => rt = rt.rss_key(&rss_key(k)?),
                (None, n) if n > 1 => {
                    return Err(Fail::usage(format!(
                        "--stack user on {n} cores needs --rss-key (microsoft, symmetric or hex): \
                         the port spreads flows over the cores by it"
                    )))
                }
                _ => {}
            }
            let rt = rt.check().map_err(|e| Fail::usage(e.to_string()))?;
            Ok(Rt::User(Box::new(rt)))
        }
    }
}

/// `--rss-key`: a named key or hex bytes ([`pmd::rss::parse_key`]).
fn rss_key(k: &str) -> Result<Vec<u8>, Fail> {
    pmd::rss::parse_key(k).map_err(|e| Fail::usage(format!("--rss-key: {e}")))
}

/// The listener configuration from the flags.
pub fn listen_config(a: &ServerArgs, addr: SocketAddr) -> Result<ListenConfig, Fail> {
    let tcp = a.tcp.config()?;
    let c = flow::user::listen_config(
        addr,
        a.backlog,
        a.syn_backlog,
        a.syn_timeout_ms * 1_000_000,
        match a.syn_cookies {
            Cookies::Off => SynCookies::Off,
            Cookies::WhenFull => SynCookies::WhenFull,
            Cookies::Always => SynCookies::Always,
        },
        tcp,
    );
    c.validate().map_err(|e| Fail::usage(format!("--{}: {}", e.field().replace('_', "-"), e.reason())))?;
    Ok(c)
}

/// The stop flag raised by SIGINT/SIGTERM or after `secs`.
fn stop_flag(secs: u64) -> Result<Arc<AtomicBool>, Fail> {
    let stop = Arc::new(AtomicBool::new(false));
    let sig = pmd::runtime::StopSignal::install().map_err(|e| Fail::other(e.to_string()))?;
    let s2 = stop.clone();
    std::thread::spawn(move || {
        let end = (secs > 0).then(|| std::time::Instant::now() + Duration::from_secs(secs));
        loop {
            if sig.raised() || end.is_some_and(|e| std::time::Instant::now() >= e) {
                s2.store(true, std::sync::atomic::Ordering::Release);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    Ok(stop)
}

/// `echo server`.
pub fn server(a: ServerArgs) -> Result<(), Fail> {
    let addr = parse_listen(&a.listen)?;
    let cfg = ServerConfig {
        listen: addr,
        listen_cfg: listen_config(&a, addr)?,
        udp: UdpConfig { rx_queue_len: a.udp_queue },
        idle_timeout: (a.idle_timeout_ms > 0).then(|| Duration::from_millis(a.idle_timeout_ms)),
        sockperf: a.sockperf,
        udp_enabled: !a.no_udp,
        banner: None,
        tls: a.tls.config()?,
    };
    cfg.udp.validate().map_err(|e| Fail::usage(format!("--udp-queue: {e}")))?;
    let rt = runtime(&a.stack)?;
    let stop = stop_flag(a.duration)?;
    let banner = format!(
        "echo server: {:?} stack on cores {}, {} {} on {}; ^C to stop",
        a.stack.stack,
        a.stack.cores,
        if a.sockperf { "sockperf" } else { "echo" },
        match (a.tls.tls_cert.is_some(), a.no_udp) {
            (true, true) => "tls",
            (true, false) => "tls+udp",
            (false, true) => "tcp",
            (false, false) => "tcp+udp",
        },
        addr
    );
    let per_core = run_on!(rt, |core| {
        let mut c = cfg.clone();
        c.banner = (core.index == 0).then(|| banner.clone());
        server::serve(core.net, c, stop.clone())
    })
    .map_err(|e| flow_fail("server", e))?;
    let mut total = ServerStats::default();
    for r in per_core {
        total.add(&r.map_err(|e| flow_fail(&format!("listen on {addr}"), e))?);
    }
    if a.json {
        let body: Vec<String> = total.pairs().iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        println!("{{{}}}", body.join(","));
    } else {
        for (k, v) in total.pairs() {
            println!("{k}={v}");
        }
    }
    Ok(())
}

/// The client configuration from the flags.
pub fn client_config(a: &ClientArgs) -> Result<ClientConfig, Fail> {
    let tcp = a.tcp.config()?;
    let he = a.resolve.he()?;
    let (target, via) = match parse_uri_target(&a.target)? {
        Target::Literal(t) => (t, None),
        Target::Uri(u) => {
            let resolver = match &u.host {
                flow::connect::Host::Name(_) => Some(a.resolve.resolver(&tcp)?),
                flow::connect::Host::Ip(_) => None,
            };
            let tls = if u.scheme == "tls" { Some(a.tls.config()?) } else { None };
            let any = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), u.port);
            (any, Some(Via { uri: u.to_string(), he, resolver, tls }))
        }
    };
    if a.payload == Payload::PalindromeLine && a.size < 2 {
        return Err(Fail::usage("--payload palindrome-line needs --size of at least 2"));
    }
    if a.conns == 0 {
        return Err(Fail::usage("--conns must be at least 1"));
    }
    if a.size == 0 {
        return Err(Fail::usage("--size must be at least 1 byte"));
    }
    if !(a.duration > 0.0 && a.duration <= 86_400.0) {
        return Err(Fail::usage("--duration must be between 0 and 86400 seconds"));
    }
    let rate = match (a.mode, a.rate) {
        (Mode::Throughput, None) => return Err(Fail::usage("--mode throughput needs --rate MESSAGES_PER_SECOND")),
        (Mode::Throughput, Some(r)) if !(r > 0.0 && r.is_finite()) => {
            return Err(Fail::usage("--rate must be a positive number"))
        }
        (Mode::Throughput, Some(r)) => r,
        (_, Some(_)) => return Err(Fail::usage("--rate is for --mode throughput")),
        (_, None) => 0.0,
    };
    Ok(ClientConfig {
        target,
        via,
        payload: a.payload,
        conns: a.conns,
        size: a.size,
        mode: a.mode,
        rate,
        duration: Duration::from_secs_f64(a.duration),
        connect_timeout: Duration::from_millis(a.connect_timeout_ms),
        tcp,
        progress: true,
    })
}

/// `echo client`.
pub fn client(a: ClientArgs) -> Result<(), Fail> {
    let cfg = Arc::new(client_config(&a)?);
    let rt = runtime(&a.stack)?;
    let ncores = pmd::runtime::parse_core_list(&a.stack.cores).map(|c| c.len()).unwrap_or(1);
    let counters: Arc<Vec<Counters>> = Arc::new((0..ncores).map(|_| Counters::default()).collect());
    let parts = run_on!(rt, |core| {
        let net = core.net.clone();
        let run = client::run(core.net, core.index, core.count, cfg.clone(), counters.clone());
        async move { (run.await, flow::Net::core_counters(&net)) }
    })
    .map_err(|e| flow_fail("client", e))?;
    let mut ok = Vec::new();
    let mut core_counters: Vec<(&'static str, u64)> = Vec::new();
    for (p, cc) in parts {
        ok.push(p.map_err(|e| flow_fail(&format!("connect to {}", a.target), e))?);
        for (k, v) in cc {
            match core_counters.iter_mut().find(|(n, _)| *n == k) {
                Some(e) => e.1 += v,
                None => core_counters.push((k, v)),
            }
        }
    }
    let r = Report::merge(ok);
    if a.json {
        let mut v: serde_json::Value = serde_json::from_str(&report_json(&r)).expect("our own JSON");
        for (k, n) in core_counters {
            v[k] = n.into();
        }
        println!("{v}");
    } else {
        print!("{}", r.text(&cfg));
    }
    Ok(())
}

/// The report as one JSON object.
pub fn report_json(r: &Report) -> String {
    serde_json::json!({
        "messages": r.msgs,
        "connections": r.conns,
        "errors": r.errors,
        "secs": r.secs,
        "messages_per_s": r.msgs as f64 / r.secs,
        "connections_per_s": r.conns as f64 / r.secs,
        "p50_us": r.us(0.5), "p90_us": r.us(0.9), "p99_us": r.us(0.99), "p999_us": r.us(0.999),
        "max_us": r.hist.max() as f64 / 1e3,
        "first_error": r.first_error,
    })
    .to_string()
}

/// The stack values of this application (addresses are added from `--ip`).
/// `tcp_rx_mbufs`: received buffers the stack may hold for zero-copy receive.
pub fn stack_config(
    mac: pmd::MacAddr,
    mtu: u16,
    tcp_max_connections: usize,
    tcp_rx_mbufs: usize,
) -> stack::StackConfig {
    stack::StackConfig {
        mac,
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
