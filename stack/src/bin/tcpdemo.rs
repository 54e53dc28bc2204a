//! `tcpdemo`: our TCP on any port spec, as a server (echo, sink, a minimal
//! HTTP responder) or a client (send a file and read the reply, or an HTTP
//! GET), so the kernel's tools (`socat`, `nc`, `curl`, `python3 -m
//! http.server`) can be its peer.
//!
//! ```sh
//! tcpdemo --print-tcp-config > tcp.conf          # every TCP value spelled out
//! tcpdemo --port tap:t0 --config l3.conf --tcp-config tcp.conf \
//!         --listen 80 --serve http --http-file blob --backlog 128 --syn-backlog 128 \
//!         --syn-timeout-ms 5000 --syn-cookies whenfull --conns 1
//! tcpdemo --port tap:t0 --config l3.conf --tcp-config tcp.conf --connect 198.18.1.2:9 \
//!         --send-file blob --out reply
//! tcpdemo ... --get http://198.18.1.2:8000/blob --out blob.copy
//! ```
//!
//! The stack and TCP configuration come from files in which every key is
//! required (`l3demo --print-config`, `--print-tcp-config`); the listen
//! backlogs and SYN timeout are required flags of the server modes. Exit
//! status: 0 when every connection finished cleanly, 1 for a failed
//! connection or a leaked buffer, 2 for a usage or configuration error.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use pmd::runtime::StopSignal;
use pmd::{Mempool, MempoolConfig, MonotonicClock, PortConfig};
use stack::{Driver, ListenConfig, StackConfig, SynCookies, TcpConfig, TcpHandle, TcpListenerHandle, TcpSocketError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Serve {
    /// Send every byte back.
    Echo,
    /// Read until the end of the stream and write it to --out.
    Sink,
    /// Answer one HTTP request with the contents of --http-file, then close.
    Http,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Cookies {
    Off,
    Whenfull,
    Always,
}

#[derive(Parser, Debug)]
#[command(name = "tcpdemo", about = "Our TCP on a port: echo/sink/HTTP server or file/HTTP client")]
struct Args {
    /// Port spec (`tap:NAME`, `af_packet:IFACE`, `ring:NAME`, ... with impairment options).
    #[arg(long)]
    port: Option<String>,
    /// Stack configuration file (`l3demo --print-config`).
    #[arg(long)]
    config: Option<String>,
    /// TCP configuration file (`--print-tcp-config`).
    #[arg(long)]
    tcp_config: Option<String>,
    /// Print a starter TCP configuration with every value spelled out, and exit.
    #[arg(long)]
    print_tcp_config: bool,
    /// Server: port to listen on (every address, v4 and v6).
    #[arg(long)]
    listen: Option<u16>,
    /// Server: what to do with each connection.
    #[arg(long, value_enum)]
    serve: Option<Serve>,
    /// Server: accept queue length.
    #[arg(long)]
    backlog: Option<usize>,
    /// Server: half-open connections held.
    #[arg(long)]
    syn_backlog: Option<usize>,
    /// Server: how long a handshake may take, milliseconds.
    #[arg(long)]
    syn_timeout_ms: Option<u64>,
    /// Server: SYN cookie policy.
    #[arg(long, value_enum)]
    syn_cookies: Option<Cookies>,
    /// Server: stop after serving this many connections (0: run until --duration or a signal).
    #[arg(long, default_value_t = 0)]
    conns: u64,
    /// `--serve http`: the body to send.
    #[arg(long)]
    http_file: Option<String>,
    /// Client: connect to IP:PORT.
    #[arg(long)]
    connect: Option<SocketAddr>,
    /// Client: send this file, then half-close.
    #[arg(long)]
    send_file: Option<String>,
    /// Client: HTTP/1.0 GET of http://IP:PORT/PATH.
    #[arg(long)]
    get: Option<String>,
    /// Where received bytes go (client: the reply or HTTP body; `--serve sink`: the stream).
    #[arg(long)]
    out: Option<String>,
    /// Give up after this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    duration: u64,
    /// Buffers in the mempool.
    #[arg(long, default_value_t = 16384)]
    mbufs: usize,
}

type Fail = (i32, String);

fn usage(e: impl Into<String>) -> Fail {
    (2, e.into())
}

fn sample_tcp() -> TcpConfig {
    TcpConfig {
        mss: 1460,
        send_buffer: 4 << 20,
        recv_buffer: 4 << 20,
        rto: stack::RtoConfig { initial_ns: 1_000_000_000, min_ns: 200_000_000, max_ns: 60_000_000_000 },
        max_retransmits: 15,
        syn_retries: 6,
        time_wait_ns: 60_000_000_000,
        window_scale: Some(7),
        timestamps: true,
        sack: true,
        nagle: true,
        delayed_ack_ns: Some(40_000_000),
        keepalive: None,
        congestion: stack::CongestionControl::Cubic,
        challenge_ack_limit: 1000,
        default_peer_mss: 536,
    }
}

/// One accepted connection.
struct ServerConn {
    h: TcpHandle,
    /// Echo: bytes read and not yet sent back.
    pending: Vec<u8>,
    /// Sink: the stream; HTTP: the request so far.
    got: Vec<u8>,
    /// HTTP: response bytes sent.
    sent: usize,
    eof: bool,
}

enum Client {
    /// Sending `data[sent..]`, then half-close; reading into `got` until EOF.
    Stream {
        h: TcpHandle,
        data: Vec<u8>,
        sent: usize,
        shut: bool,
        got: Vec<u8>,
    },
    Done,
}

fn read_all(s: &mut stack::DynDriver, h: TcpHandle, into: &mut Vec<u8>) -> Result<bool, TcpSocketError> {
    let mut buf = [0u8; 16384];
    loop {
        match s.tcp().recv(h, &mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(TcpSocketError::WouldBlock) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

fn send_some(s: &mut stack::DynDriver, h: TcpHandle, data: &[u8]) -> Result<usize, TcpSocketError> {
    match s.tcp().send(h, data) {
        Ok(n) => Ok(n),
        Err(TcpSocketError::WouldBlock) => Ok(0),
        Err(e) => Err(e),
    }
}

/// The pool, the port and the stack driving it, from the files and flags.
struct Opened {
    pool: Mempool,
    start_avail: usize,
    port: Box<dyn pmd::Port>,
    s: stack::DynDriver,
    tcp_cfg: TcpConfig,
    spec: String,
}

fn open(args: &Args) -> Result<Opened, Fail> {
    let read = |p: &Option<String>, flag: &str| -> Result<String, Fail> {
        let p = p.as_ref().ok_or_else(|| usage(format!("{flag} is required")))?;
        std::fs::read_to_string(p).map_err(|e| usage(format!("reading {p}: {e}")))
    };
    let spec = args.port.clone().ok_or_else(|| usage("--port is required"))?;
    let stack_text = read(&args.config, "--config")?;
    let tcp_cfg = TcpConfig::parse(&read(&args.tcp_config, "--tcp-config")?).map_err(|e| usage(e.to_string()))?;
    let modes = [args.listen.is_some(), args.connect.is_some(), args.get.is_some()].iter().filter(|b| **b).count();
    if modes != 1 {
        return Err(usage("give exactly one of --listen, --connect, --get"));
    }
    let pool =
        Mempool::new(&MempoolConfig::new("tcpdemo", args.mbufs, 2048, 128, 256)).map_err(|e| (1, e.to_string()))?;
    let start_avail = pool.available();
    let mut port = pmd::open(&spec).map_err(|e| (if e.is_usage() { 2 } else { 1 }, e.to_string()))?;
    let info = port.info();
    let stack_text = stack_text.replace("mac = port", &format!("mac = {}", info.mac));
    let cfg = StackConfig::parse(&stack_text).map_err(|e| usage(e.to_string()))?;
    let mut pc = PortConfig::new(1, 1, 1024, 1024, pool.clone());
    pc.tx_offloads = cfg.tx_offloads;
    port.configure(&pc).map_err(|e| (2, e.to_string()))?;
    port.start().map_err(|e| (1, e.to_string()))?;
    let rx = port.take_rx_queue(0).map_err(|e| (1, e.to_string()))?;
    let tx = port.take_tx_queue(0).map_err(|e| (1, e.to_string()))?;
    let s = Driver::new(cfg, rx, tx, pool.clone(), Arc::new(MonotonicClock)).map_err(|e| usage(e.to_string()))?;

    Ok(Opened { pool, start_avail, port, s, tcp_cfg, spec })
}

/// `--listen`: the listener and what it serves.
fn listen(
    args: &Args,
    s: &mut stack::DynDriver,
    tcp_cfg: &TcpConfig,
) -> Result<Option<(TcpListenerHandle, Serve)>, Fail> {
    let mut listener = None;
    if let Some(p) = args.listen {
        let serve = args.serve.ok_or_else(|| usage("--serve is required with --listen"))?;
        if serve == Serve::Http && args.http_file.is_none() {
            return Err(usage("--http-file is required with --serve http"));
        }
        let lc = ListenConfig::new(
            SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), p),
            args.backlog.ok_or_else(|| usage("--backlog is required with --listen"))?,
            args.syn_backlog.ok_or_else(|| usage("--syn-backlog is required with --listen"))?,
            args.syn_timeout_ms.ok_or_else(|| usage("--syn-timeout-ms is required with --listen"))? * 1_000_000,
            match args.syn_cookies.ok_or_else(|| usage("--syn-cookies is required with --listen"))? {
                Cookies::Off => SynCookies::Off,
                Cookies::Whenfull => SynCookies::WhenFull,
                Cookies::Always => SynCookies::Always,
            },
            tcp_cfg.clone(),
        );
        listener = Some((s.tcp().listen(lc).map_err(|e| usage(e.to_string()))?, serve));
    }
    Ok(listener)
}

/// `--connect` or `--get`: the client connection and what it sends.
fn connect(args: &Args, s: &mut stack::DynDriver, tcp_cfg: &TcpConfig) -> Result<Client, Fail> {
    let client = if let Some(to) = args.connect {
        let data = match &args.send_file {
            Some(f) => std::fs::read(f).map_err(|e| usage(format!("reading {f}: {e}")))?,
            None => Vec::new(),
        };
        let h = s.tcp().connect(to, tcp_cfg.clone()).map_err(|e| (2, format!("connect {to}: {e}")))?;
        Client::Stream { h, data, sent: 0, shut: false, got: Vec::new() }
    } else if let Some(url) = &args.get {
        let rest = url.strip_prefix("http://").ok_or_else(|| usage(format!("--get {url}: only http:// URLs")))?;
        let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
        let to: SocketAddr =
            hostport.parse().map_err(|_| usage(format!("--get {url}: the host must be IP:PORT ([v6]:PORT)")))?;
        let h = s.tcp().connect(to, tcp_cfg.clone()).map_err(|e| (2, format!("connect {to}: {e}")))?;
        let req = format!("GET /{path} HTTP/1.0\r\nHost: {hostport}\r\nUser-Agent: tcpdemo\r\n\r\n").into_bytes();
        Client::Stream { h, data: req, sent: 0, shut: true, got: Vec::new() }
    } else {
        Client::Done
    };
    Ok(client)
}

/// One step of a server connection; `Ok(true)` when it is done.
fn serve_step(
    serve: Serve,
    s: &mut stack::DynDriver,
    c: &mut ServerConn,
    http_body: &[u8],
) -> Result<bool, TcpSocketError> {
    match serve {
        Serve::Echo => {
            if !c.eof && c.pending.len() < (1 << 20) {
                c.eof = read_all(s, c.h, &mut c.pending)?;
            }
            let n = send_some(s, c.h, &c.pending)?;
            c.pending.drain(..n);
            Ok(c.eof && c.pending.is_empty())
        }
        Serve::Sink => {
            c.eof = read_all(s, c.h, &mut c.got)?;
            Ok(c.eof)
        }
        Serve::Http => {
            if !c.got.windows(4).any(|w| w == b"\r\n\r\n") {
                c.eof = read_all(s, c.h, &mut c.got)?;
                if c.eof && !c.got.windows(4).any(|w| w == b"\r\n\r\n") {
                    return Ok(true);
                }
                if !c.got.windows(4).any(|w| w == b"\r\n\r\n") {
                    return Ok(false);
                }
                let head = format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    http_body.len()
                );
                c.pending = head.into_bytes();
            }
            let mut scratch = Vec::new();
            let _ = read_all(s, c.h, &mut scratch)?;
            while !c.pending.is_empty() {
                let n = send_some(s, c.h, &c.pending)?;
                if n == 0 {
                    return Ok(false);
                }
                c.pending.drain(..n);
            }
            let n = send_some(s, c.h, &http_body[c.sent..])?;
            c.sent += n;
            Ok(c.sent == http_body.len())
        }
    }
}

/// What the loop tracks across iterations.
#[derive(Default)]
struct Progress {
    conns: Vec<ServerConn>,
    served: u64,
    failure: Option<String>,
    client_bytes: usize,
    finished_at: Option<Instant>,
}

/// Accepts and serves the listener's connections.
fn serve_all(
    args: &Args,
    s: &mut stack::DynDriver,
    listener: Option<(TcpListenerHandle, Serve)>,
    http_body: &[u8],
    p: &mut Progress,
) -> Result<(), Fail> {
    let Some((l, serve)) = listener else { return Ok(()) };
    while let Ok(h) = s.tcp().accept(l) {
        p.conns.push(ServerConn { h, pending: Vec::new(), got: Vec::new(), sent: 0, eof: false });
    }
    let mut k = 0;
    while k < p.conns.len() {
        let step = serve_step(serve, s, &mut p.conns[k], http_body);
        match step {
            Ok(false) => k += 1,
            Ok(true) => {
                let c = p.conns.swap_remove(k);
                if serve == Serve::Sink {
                    if let Some(out) = &args.out {
                        std::fs::write(out, &c.got).map_err(|e| (1, format!("writing {out}: {e}")))?;
                    }
                    eprintln!("tcpdemo: sink connection done, {} bytes", c.got.len());
                }
                s.tcp().close(c.h);
                p.served += 1;
            }
            Err(e) => {
                let c = p.conns.swap_remove(k);
                p.failure = Some(format!("server connection: {e}"));
                s.tcp().close(c.h);
                p.served += 1;
            }
        }
    }
    Ok(())
}

/// One step of the client: `Ok(true)` when the reply is complete.
fn client_step(args: &Args, s: &mut stack::DynDriver, client: &mut Client) -> Result<bool, TcpSocketError> {
    let Client::Stream { h, data, sent, shut, got } = client else { return Ok(false) };
    if !s.tcp().connected(*h)? {
        return Ok(false);
    }
    if *sent < data.len() {
        *sent += send_some(s, *h, &data[*sent..])?;
    }
    if *sent == data.len() && !*shut && args.get.is_none() {
        s.tcp().shutdown(*h)?;
        *shut = true;
    }
    read_all(s, *h, got)
}

/// Runs the client a step and, when it is done or failed, records the outcome.
fn drive_client(args: &Args, s: &mut stack::DynDriver, client: &mut Client, p: &mut Progress) -> Result<(), Fail> {
    let step = client_step(args, s, client);
    let Client::Stream { h, got, .. } = client else { return Ok(()) };
    let h = *h;
    match step {
        Ok(false) => {}
        Ok(true) => {
            let body = if args.get.is_some() {
                let split = got.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4).unwrap_or(0);
                let head = String::from_utf8_lossy(&got[..split]).to_string();
                if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
                    p.failure = Some(format!("HTTP response: {}", head.lines().next().unwrap_or("(none)")));
                }
                got[split..].to_vec()
            } else {
                std::mem::take(got)
            };
            p.client_bytes = body.len();
            if let Some(out) = &args.out {
                std::fs::write(out, &body).map_err(|e| (1, format!("writing {out}: {e}")))?;
            }
            s.tcp().close(h);
            *client = Client::Done;
            p.finished_at = Some(Instant::now());
        }
        Err(e) => {
            p.failure = Some(format!(
                "connection to {}: {e}",
                args.connect.map_or(args.get.clone().unwrap_or_default(), |a| a.to_string())
            ));
            s.tcp().close(h);
            *client = Client::Done;
            p.finished_at = Some(Instant::now());
        }
    }
    Ok(())
}

fn run(args: Args) -> Result<(), Fail> {
    if args.print_tcp_config {
        print!("{}", sample_tcp().to_text());
        return Ok(());
    }
    let Opened { pool, start_avail, port, mut s, tcp_cfg, spec } = open(&args)?;
    let info = port.info();
    let listener = listen(&args, &mut s, &tcp_cfg)?;
    let http_body = match &args.http_file {
        Some(f) => std::fs::read(f).map_err(|e| usage(format!("reading {f}: {e}")))?,
        None => Vec::new(),
    };
    let mut client = connect(&args, &mut s, &tcp_cfg)?;
    eprintln!("tcpdemo: {spec} ({}) mac {} up", info.driver, info.mac);

    let signal = StopSignal::install().map_err(|e| (1, e.to_string()))?;
    let start = Instant::now();
    let deadline = (args.duration > 0).then(|| start + Duration::from_secs(args.duration));
    let mut p = Progress::default();
    let mut i = 0u64;
    loop {
        s.poll();
        serve_all(&args, &mut s, listener, &http_body, &mut p)?;
        drive_client(&args, &mut s, &mut client, &mut p)?;
        if listener.is_some() && args.conns > 0 && p.served >= args.conns && p.finished_at.is_none() {
            p.finished_at = Some(Instant::now());
        }
        i += 1;
        if i % 256 == 0 {
            // After the work is done, linger (at most 3 s) so FINs and their ACKs go out.
            if p.finished_at.is_some_and(|t| s.tcp().connections() == 0 || t.elapsed() > Duration::from_secs(3)) {
                break;
            }
            if signal.raised() || deadline.is_some_and(|d| Instant::now() >= d) {
                if listener.is_none() || args.conns > 0 {
                    p.failure.get_or_insert_with(|| "stopped before the transfer finished".to_string());
                }
                break;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ev = s.stats().events.clone();
    let drops = s.stats().drops.clone();
    for c in &p.conns {
        s.tcp().abort(c.h);
    }
    drop(s);
    drop(port);
    eprintln!(
        "tcpdemo: {elapsed:.2} s, client received {} bytes; segments in {} out {}, resets {}, drops {}",
        p.client_bytes,
        ev.tcp_segments_received,
        ev.tcp_segments_sent,
        ev.tcp_resets_sent,
        drops.total()
    );
    let leaked = start_avail - pool.available();
    if leaked > 0 {
        return Err((1, format!("{leaked} buffers leaked")));
    }
    match p.failure {
        Some(f) => Err((1, f)),
        None => Ok(()),
    }
}

fn main() {
    if let Err((code, msg)) = run(Args::parse()) {
        eprintln!("tcpdemo: {msg}");
        std::process::exit(code);
    }
}
