//! The echo server, generic over the stack: TCP echo (one task per connection)
//! and UDP echo on the same port, or the sockperf protocol on both.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flow::{Datagram, Either, Flow, FlowError, ListenConfig, Listener, Net, UdpConfig};

use crate::sockperf;

/// What the server does, from the flags.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on (TCP and UDP).
    pub listen: SocketAddr,
    /// Listener configuration (backlog, SYN backlog and timeout, TCP values).
    pub listen_cfg: ListenConfig,
    /// UDP socket configuration.
    pub udp: UdpConfig,
    /// Close a connection idle for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Speak sockperf instead of plain echo.
    pub sockperf: bool,
    /// Serve UDP too.
    pub udp_enabled: bool,
    /// Printed to stderr once listening (so it never precedes a setup error).
    pub banner: Option<String>,
    /// Serve TCP over TLS with this configuration (and its handshake timeout).
    pub tls: Option<(Arc<flow::tls::rustls::ServerConfig>, Duration)>,
}

/// Counters of one core's server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// TCP connections accepted.
    pub tcp_accepted: u64,
    /// TCP bytes echoed.
    pub tcp_bytes: u64,
    /// TCP connections closed for being idle.
    pub tcp_idle_closed: u64,
    /// TCP connections the peer reset (e.g. it closed with our answer unread).
    pub tcp_resets: u64,
    /// TCP connections that ended with another error.
    pub tcp_errors: u64,
    /// UDP datagrams echoed.
    pub udp_datagrams: u64,
    /// sockperf messages counted (non-warm-up client messages), TCP and UDP.
    pub sockperf_messages: u64,
    /// sockperf answers sent.
    pub sockperf_replies: u64,
    /// This core's executor loop: cycles (TSC) in iterations that did work.
    pub core_busy_cycles: u64,
    /// Cycles in empty iterations (an epoll reactor's sleep included).
    pub core_idle_cycles: u64,
    /// Iterations that did work.
    pub core_busy_iterations: u64,
    /// Empty iterations.
    pub core_idle_iterations: u64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_errors: u64,
    /// (user stack on several cores) Frames the port delivered to a core
    /// whose RSS hash names another (0 with exact steering).
    pub rss_misdirected: u64,
    /// (user stack on several cores) Frames handed to the core owning their flow.
    pub frames_handed_off: u64,
    /// (user stack on several cores) Neighbours learned and broadcast to the other cores.
    pub neighbor_broadcasts: u64,
}

impl ServerStats {
    /// Adds another core's counters.
    pub fn add(&mut self, o: &ServerStats) {
        self.tcp_accepted += o.tcp_accepted;
        self.tcp_bytes += o.tcp_bytes;
        self.tcp_idle_closed += o.tcp_idle_closed;
        self.tcp_resets += o.tcp_resets;
        self.tcp_errors += o.tcp_errors;
        self.udp_datagrams += o.udp_datagrams;
        self.sockperf_messages += o.sockperf_messages;
        self.sockperf_replies += o.sockperf_replies;
        self.core_busy_cycles += o.core_busy_cycles;
        self.core_idle_cycles += o.core_idle_cycles;
        self.core_busy_iterations += o.core_busy_iterations;
        self.core_idle_iterations += o.core_idle_iterations;
        self.tls_handshake_errors += o.tls_handshake_errors;
        self.rss_misdirected += o.rss_misdirected;
        self.frames_handed_off += o.frames_handed_off;
        self.neighbor_broadcasts += o.neighbor_broadcasts;
    }

    /// Takes the stack's per-core counters ([`flow::Net::core_counters`]).
    pub fn set_core_counters(&mut self, counters: &[(&'static str, u64)]) {
        for &(k, v) in counters {
            match k {
                "rss_misdirected" => self.rss_misdirected = v,
                "frames_handed_off" => self.frames_handed_off = v,
                "neighbor_broadcasts" => self.neighbor_broadcasts = v,
                _ => {}
            }
        }
    }

    /// `name=value` pairs.
    pub fn pairs(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("tcp_accepted", self.tcp_accepted),
            ("tcp_bytes", self.tcp_bytes),
            ("tcp_idle_closed", self.tcp_idle_closed),
            ("tcp_resets", self.tcp_resets),
            ("tcp_errors", self.tcp_errors),
            ("udp_datagrams", self.udp_datagrams),
            ("sockperf_messages", self.sockperf_messages),
            ("sockperf_replies", self.sockperf_replies),
            ("core_busy_cycles", self.core_busy_cycles),
            ("core_idle_cycles", self.core_idle_cycles),
            ("core_busy_iterations", self.core_busy_iterations),
            ("core_idle_iterations", self.core_idle_iterations),
            ("tls_handshake_errors", self.tls_handshake_errors),
            ("rss_misdirected", self.rss_misdirected),
            ("frames_handed_off", self.frames_handed_off),
            ("neighbor_broadcasts", self.neighbor_broadcasts),
        ]
    }
}

type Stats = Rc<Cell<ServerStats>>;

fn bump(s: &Stats, f: impl FnOnce(&mut ServerStats)) {
    let mut v = s.get();
    f(&mut v);
    s.set(v);
}

/// Resolves when `stop` is raised (checked every 10 ms on the executor's clock).
pub async fn stopped(stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        flow::sleep(Duration::from_millis(10)).await;
    }
}

/// Serves until `stop` is raised; returns this core's counters. Fails at once if
/// the listener or the UDP socket cannot be set up.
pub async fn serve<N: Net>(net: N, cfg: ServerConfig, stop: Arc<AtomicBool>) -> Result<ServerStats, FlowError> {
    let listener = net.listen(cfg.listen, &cfg.listen_cfg)?;
    let udp = if cfg.udp_enabled { Some(net.udp_bind(cfg.listen, &cfg.udp)?) } else { None };
    if let Some(b) = &cfg.banner {
        eprintln!("{b}");
    }
    let mut stats = serve_on(listener, udp, cfg, stop).await?;
    stats.set_core_counters(&net.core_counters());
    Ok(stats)
}

/// Serves on a listener (and UDP socket) made by the caller.
pub async fn serve_on<L: Listener, U: Datagram + 'static>(
    mut listener: L,
    udp: Option<U>,
    cfg: ServerConfig,
    stop: Arc<AtomicBool>,
) -> Result<ServerStats, FlowError>
where
    L::Flow: 'static,
{
    let stats: Stats = Rc::default();
    let cfg = Rc::new(cfg);
    let accept_loop = async {
        loop {
            match listener.accept().await {
                Ok((f, peer)) => {
                    bump(&stats, |s| s.tcp_accepted += 1);
                    match cfg.tls.clone() {
                        None => drop(flow::spawn(conn(f, cfg.clone(), stats.clone()))),
                        Some((tls, limit)) => {
                            let (cfg, stats) = (cfg.clone(), stats.clone());
                            flow::spawn(async move {
                                match flow::timeout(limit, flow::tls::TlsFlow::accept(f, tls)).await {
                                    Ok(Ok(t)) => conn(t, cfg, stats).await,
                                    Ok(Err(e)) => {
                                        if stats.get().tls_handshake_errors < 10 {
                                            eprintln!("echo server: TLS handshake with {peer}: {e}");
                                        }
                                        bump(&stats, |s| s.tls_handshake_errors += 1);
                                    }
                                    Err(_) => bump(&stats, |s| s.tls_handshake_errors += 1),
                                }
                            });
                        }
                    }
                }
                Err(e) => return Err::<(), _>(e),
            }
        }
    };
    // UDP runs in this task too, so it ends (and its socket closes) with it.
    let udp_loop = async {
        match udp {
            Some(u) => udp_echo(u, cfg.clone(), stats.clone()).await,
            None => std::future::pending().await,
        }
    };
    match flow::race(flow::race(accept_loop, udp_loop), stopped(stop)).await {
        Either::Left(Either::Left(Err(e))) => Err(e),
        _ => {
            // The core's busy/idle accounting (pmd::runtime::CoreCycles) with
            // the server's counters.
            let c = flow::core_cycles();
            let mut s = stats.get();
            s.core_busy_cycles = c.busy;
            s.core_idle_cycles = c.idle;
            s.core_busy_iterations = c.busy_iters;
            s.core_idle_iterations = c.idle_iters;
            Ok(s)
        }
    }
}

async fn conn<F: Flow>(mut f: F, cfg: Rc<ServerConfig>, stats: Stats) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut framer = sockperf::Framer::default();
    let mut out = Vec::new();
    let end = loop {
        let n = match cfg.idle_timeout {
            Some(t) => match flow::timeout(t, f.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => {
                    bump(&stats, |s| s.tcp_idle_closed += 1);
                    break Ok(());
                }
            },
            None => f.read(&mut buf).await,
        };
        let n = match n {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        if cfg.sockperf {
            out.clear();
            match framer.feed(&buf[..n], &mut out) {
                Ok(p) => bump(&stats, |s| {
                    s.sockperf_messages += p.counted;
                    s.sockperf_replies += p.replies;
                }),
                Err(e) => break Err(FlowError::invalid(e)),
            }
            if !out.is_empty() {
                if let Err(e) = f.write_all(&out).await {
                    break Err(e);
                }
            }
        } else {
            if let Err(e) = f.write_all(&buf[..n]).await {
                break Err(e);
            }
            bump(&stats, |s| s.tcp_bytes += n as u64);
        }
    };
    if let Err(FlowError::Reset) = end {
        bump(&stats, |s| s.tcp_resets += 1);
    } else if let Err(e) = end {
        if stats.get().tcp_errors < 10 {
            let peer = f.peer_addr().map(|p| p.to_string()).unwrap_or_default();
            eprintln!("echo server: connection from {peer}: {e}");
        }
        bump(&stats, |s| s.tcp_errors += 1);
    }
    let _ = f.close().await;
}

async fn udp_echo<U: Datagram>(mut u: U, cfg: Rc<ServerConfig>, stats: Stats) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, from)) = u.recv_from(&mut buf).await else { continue };
        if cfg.sockperf {
            if n < sockperf::HEADER || sockperf::length(&buf) != n {
                continue;
            }
            match sockperf::handle(&mut buf[..n]) {
                sockperf::Verdict::Ignore => continue,
                sockperf::Verdict::Count { reply } => {
                    bump(&stats, |s| s.sockperf_messages += 1);
                    if !reply {
                        continue;
                    }
                    bump(&stats, |s| s.sockperf_replies += 1);
                }
            }
        } else {
            bump(&stats, |s| s.udp_datagrams += 1);
        }
        let _ = u.send_to(&buf[..n], from).await;
    }
}
