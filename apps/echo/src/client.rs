//! The load generator, generic over the stack.
//!
//! * `pingpong`: closed loop; every connection sends `size` bytes and waits for
//!   them to come back; the histogram holds round-trip times.
//! * `throughput`: open loop at `rate` messages/s in total (spread over the
//!   connections); latency is measured from each message's *intended* send time,
//!   so a stall delays the sends behind it and their wait is counted
//!   (coordinated-omission correction, as wrk2 does).
//! * `churn`: every connection task connects, does one round trip, closes, and
//!   again; the histogram holds connect + round trip.
//!
//! Every loop ends at the deadline (plus a grace period for a reply in flight),
//! whatever the server does.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::task::{Context, Poll};

use flow::connect::{BoxFlow, Dialer, Registry};
use flow::dns::{Hosts, Resolver, ResolverConfig};
use flow::happy_eyeballs::HappyEyeballsConfig;
use flow::{ConnectContext, Either, Flow, FlowError, Net, TcpConfig};
use hdrhistogram::Histogram;

/// How the client loads the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Closed-loop request/response.
    Pingpong,
    /// Open-loop at a fixed rate.
    Throughput,
    /// Connect, one round trip, close, repeat.
    Churn,
}

/// What the messages hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Payload {
    /// Bytes `i % 251`, the first one counting messages.
    Pattern,
    /// A lower-case palindrome ending in a newline, different each message:
    /// what a line-reversing server (`openssl s_server -rev`) sends back unchanged.
    PalindromeLine,
}

impl Payload {
    /// Message number `k` of `size` bytes.
    pub fn fill(self, msg: &mut [u8], k: u64) {
        match self {
            Payload::Pattern => {
                for (i, b) in msg.iter_mut().enumerate() {
                    *b = (i % 251) as u8;
                }
                msg[0] = k as u8;
            }
            Payload::PalindromeLine => {
                let n = msg.len();
                let body = n.saturating_sub(1);
                for (i, b) in msg[..body].iter_mut().enumerate() {
                    *b = b'a' + ((i.min(body - 1 - i) as u64 + k) % 26) as u8;
                }
                msg[n - 1] = b'\n';
            }
        }
    }
}

/// How to reach a target given by name or through a layer (TLS): through the
/// connect registry, with every resolver, happy-eyeballs and TLS value.
#[derive(Clone, Debug)]
pub struct Via {
    /// The target URI (`tcp://name:7`, `tls://name:443`).
    pub uri: String,
    /// Happy-eyeballs values.
    pub he: HappyEyeballsConfig,
    /// The resolver's values (needed for names).
    pub resolver: Option<ResolverConfig>,
    /// The TLS client configuration (needed for `tls://`).
    pub tls: Option<Arc<flow::tls::rustls::ClientConfig>>,
}

impl Via {
    /// This core's connect context over `net` (its own resolver and cache).
    pub fn context<N: Net>(&self, net: &N, tcp: &TcpConfig) -> Result<ConnectContext, FlowError> {
        let mut c = ConnectContext::new(Registry::builtin()).with_net(net.clone()).with::<TcpConfig>(tcp.clone());
        c = c.with(self.he.clone());
        if let Some(rc) = &self.resolver {
            let r = Resolver::new(rc.clone(), Dialer::of(net.clone()), Hosts::new())
                .map_err(|e| FlowError::invalid(format!("resolver: {e}")))?;
            c = c.with_resolver(std::rc::Rc::new(r));
        }
        if let Some(t) = &self.tls {
            c = c.with_tls_client(t.clone());
        }
        Ok(c)
    }
}

/// A flow of the stack itself (a literal `tcp://` target: no indirection on
/// the measured path) or one the registry made.
pub enum ClientFlow<F> {
    /// The stack's own flow.
    Direct(F),
    /// Through the registry (a name, TLS).
    Boxed(BoxFlow),
}

impl<F: Flow> Flow for ClientFlow<F> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, FlowError>> {
        match self {
            ClientFlow::Direct(f) => f.poll_read(cx, buf),
            ClientFlow::Boxed(f) => f.poll_read(cx, buf),
        }
    }
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize, FlowError>> {
        match self {
            ClientFlow::Direct(f) => f.poll_write(cx, buf),
            ClientFlow::Boxed(f) => f.poll_write(cx, buf),
        }
    }
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), FlowError>> {
        match self {
            ClientFlow::Direct(f) => f.poll_shutdown(cx),
            ClientFlow::Boxed(f) => f.poll_shutdown(cx),
        }
    }
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), FlowError>> {
        match self {
            ClientFlow::Direct(f) => f.poll_close(cx),
            ClientFlow::Boxed(f) => f.poll_close(cx),
        }
    }
    fn peer_addr(&self) -> Result<SocketAddr, FlowError> {
        match self {
            ClientFlow::Direct(f) => f.peer_addr(),
            ClientFlow::Boxed(f) => f.peer_addr(),
        }
    }
    fn local_addr(&self) -> Result<SocketAddr, FlowError> {
        match self {
            ClientFlow::Direct(f) => f.local_addr(),
            ClientFlow::Boxed(f) => f.local_addr(),
        }
    }
}

/// What the client does, from the flags.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Server address (a literal `tcp://` target; unused with `via`).
    pub target: SocketAddr,
    /// The registry path, for a name or a layered scheme.
    pub via: Option<Via>,
    /// What the messages hold.
    pub payload: Payload,
    /// Connections in total (spread over the cores).
    pub conns: usize,
    /// Message size in bytes.
    pub size: usize,
    /// Load pattern.
    pub mode: Mode,
    /// Messages per second in total (throughput mode).
    pub rate: f64,
    /// How long to load.
    pub duration: Duration,
    /// Longest wait for a connection to be established.
    pub connect_timeout: Duration,
    /// TCP values of our connections.
    pub tcp: TcpConfig,
    /// Print a progress line every second (core 0).
    pub progress: bool,
}

/// Counters shared across cores (control path: read once a second).
#[derive(Default)]
pub struct Counters {
    /// Messages answered.
    pub msgs: AtomicU64,
    /// Connections made.
    pub conns: AtomicU64,
    /// Failed operations.
    pub errors: AtomicU64,
}

/// One core's result.
pub struct ClientResult {
    /// Latencies in nanoseconds.
    pub hist: Histogram<u64>,
    /// Messages answered.
    pub msgs: u64,
    /// Connections made.
    pub conns: u64,
    /// Errors.
    pub errors: u64,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    /// Time the load ran, ns.
    pub elapsed_ns: u64,
}

/// An empty latency histogram (1 ns .. 100 s, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("histogram bounds")
}

fn rec(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns.max(1));
}

/// Connects with the configured timeout: directly, or through the registry.
async fn connect<N: Net>(
    net: &N,
    cfg: &ClientConfig,
    ctx: Option<&ConnectContext>,
) -> Result<ClientFlow<N::Flow>, FlowError> {
    match (ctx, &cfg.via) {
        (Some(ctx), Some(via)) => {
            let f = flow::timeout(cfg.connect_timeout, flow::connect(ctx, &via.uri)).await?;
            f.map(ClientFlow::Boxed).map_err(|e| match e {
                flow::ConnectError::Flow(e) => e,
                other => FlowError::invalid(other.to_string()),
            })
        }
        _ => Ok(ClientFlow::Direct(flow::timeout(cfg.connect_timeout, net.connect(cfg.target, &cfg.tcp)).await??)),
    }
}

/// This core's share of `total` (core `index` of `count`).
pub fn share(total: usize, index: usize, count: usize) -> usize {
    total / count + usize::from(index < total % count)
}

/// Runs this core's share of the load. Fails (before any load) if the first
/// connections cannot be made: refused, unreachable, timed out.
pub async fn run<N: Net>(
    net: N,
    index: usize,
    count: usize,
    cfg: Arc<ClientConfig>,
    counters: Arc<Vec<Counters>>,
) -> Result<ClientResult, FlowError> {
    let conns = share(cfg.conns, index, count);
    let mine = &counters[index];
    let ctx = match &cfg.via {
        Some(v) => Some(std::rc::Rc::new(v.context(&net, &cfg.tcp)?)),
        None => None,
    };
    // Establish first (all at once), so a refused or unreachable target is
    // reported before any load, and the load measures steady state.
    let mut flows = Vec::new();
    if cfg.mode == Mode::Churn {
        if conns > 0 {
            let f = connect(&net, &cfg, ctx.as_deref()).await?;
            drop(f.close().await);
        }
    } else {
        let handles: Vec<_> = (0..conns)
            .map(|_| {
                let (net, cfg, ctx) = (net.clone(), cfg.clone(), ctx.clone());
                flow::spawn(async move { connect(&net, &cfg, ctx.as_deref()).await })
            })
            .collect();
        for h in handles {
            flows.push(h.await?);
        }
        mine.conns.fetch_add(conns as u64, Ordering::Relaxed);
    }
    let start = flow::now_ns();
    let deadline = start + cfg.duration.as_nanos() as u64;
    let grace = deadline + 2_000_000_000;
    let progress = (cfg.progress && index == 0).then(|| flow::spawn(progress(counters.clone(), start, deadline)));
    let per_conn_rate = cfg.rate / cfg.conns.max(1) as f64;
    let workers: Vec<_> = match cfg.mode {
        Mode::Churn => (0..conns)
            .map(|_| {
                let (net, cfg, c, ctx) = (net.clone(), cfg.clone(), counters.clone(), ctx.clone());
                flow::spawn(bounded(grace, churn(net, cfg, c, ctx, index, deadline)))
            })
            .collect(),
        Mode::Pingpong => flows
            .drain(..)
            .map(|f| flow::spawn(bounded(grace, pingpong(f, cfg.clone(), counters.clone(), index, deadline))))
            .collect(),
        Mode::Throughput => flows
            .drain(..)
            .enumerate()
            .map(|(i, f)| {
                // Stagger the connections' schedules over one interval.
                let offset = (1e9 / per_conn_rate * i as f64 / conns.max(1) as f64) as u64;
                let w = open_loop(f, cfg.clone(), counters.clone(), index, start + offset, per_conn_rate, deadline);
                flow::spawn(bounded(grace, w))
            })
            .collect(),
    };
    let mut out = ClientResult { hist: histogram(), msgs: 0, conns: 0, errors: 0, first_error: None, elapsed_ns: 0 };
    for w in workers {
        let (h, err) = w.await;
        out.hist.add(&h).expect("same bounds");
        if out.first_error.is_none() {
            out.first_error = err;
        }
    }
    out.elapsed_ns = flow::now_ns().min(deadline).saturating_sub(start).max(1);
    out.msgs = mine.msgs.load(Ordering::Relaxed);
    out.conns = mine.conns.load(Ordering::Relaxed);
    out.errors = mine.errors.load(Ordering::Relaxed);
    if let Some(p) = progress {
        p.await;
    }
    Ok(out)
}

type WorkerOut = (Histogram<u64>, Option<String>);

/// Runs `w`, but gives up at `until` (returning what it has is not possible
/// then, so the histogram is empty and the error says why).
async fn bounded(until: u64, w: impl std::future::Future<Output = WorkerOut>) -> WorkerOut {
    match flow::race(w, flow::exec::sleep_until(until)).await {
        Either::Left(v) => v,
        Either::Right(()) => (histogram(), Some("a connection made no progress past the deadline".into())),
    }
}

fn fail(c: &Counters, first: &mut Option<String>, e: FlowError) {
    c.errors.fetch_add(1, Ordering::Relaxed);
    first.get_or_insert_with(|| e.to_string());
}

async fn pingpong<F: Flow>(
    mut f: F,
    cfg: Arc<ClientConfig>,
    counters: Arc<Vec<Counters>>,
    index: usize,
    deadline: u64,
) -> WorkerOut {
    let c = &counters[index];
    let mut h = histogram();
    let mut err = None;
    let mut msg = vec![0u8; cfg.size];
    let mut back = vec![0u8; cfg.size];
    let mut k = 0u64;
    while flow::now_ns() < deadline {
        k += 1;
        cfg.payload.fill(&mut msg, k);
        let t0 = flow::now_ns();
        if let Err(e) = f.write_all(&msg).await {
            fail(c, &mut err, e);
            break;
        }
        if let Err(e) = f.read_exact(&mut back).await {
            fail(c, &mut err, e);
            break;
        }
        if back != msg {
            fail(c, &mut err, FlowError::invalid("the echo differs from what was sent"));
            break;
        }
        rec(&mut h, flow::now_ns() - t0);
        c.msgs.fetch_add(1, Ordering::Relaxed);
    }
    let _ = f.close().await;
    (h, err)
}

#[allow(clippy::too_many_arguments)]
async fn open_loop<F: Flow>(
    mut f: F,
    cfg: Arc<ClientConfig>,
    counters: Arc<Vec<Counters>>,
    index: usize,
    first: u64,
    rate: f64,
    deadline: u64,
) -> WorkerOut {
    let c = &counters[index];
    let mut h = histogram();
    let mut err = None;
    let interval = (1e9 / rate).max(1.0);
    let msg = vec![0x5au8; cfg.size];
    let mut buf = vec![0u8; 64 * 1024];
    let mut intended: VecDeque<u64> = VecDeque::new();
    let mut k = 0u64;
    let mut got = 0usize;
    let at = |k: u64| first + (k as f64 * interval) as u64;
    loop {
        let now = flow::now_ns();
        if now >= deadline && intended.is_empty() {
            break;
        }
        // Send everything that is due (catching up after a stall).
        while at(k) <= now && at(k) < deadline {
            if let Err(e) = f.write_all(&msg).await {
                fail(c, &mut err, e);
                let _ = f.close().await;
                return (h, err);
            }
            intended.push_back(at(k));
            k += 1;
        }
        let wake = if at(k) < deadline { at(k) } else { deadline + 1_000_000_000 };
        match flow::race(f.read(&mut buf), flow::exec::sleep_until(wake)).await {
            Either::Left(Ok(0)) => {
                fail(c, &mut err, FlowError::Closed);
                break;
            }
            Either::Left(Ok(n)) => {
                got += n;
                let now = flow::now_ns();
                while got >= cfg.size {
                    got -= cfg.size;
                    let t = intended.pop_front().unwrap_or(now);
                    rec(&mut h, now.saturating_sub(t));
                    c.msgs.fetch_add(1, Ordering::Relaxed);
                }
            }
            Either::Left(Err(e)) => {
                fail(c, &mut err, e);
                break;
            }
            Either::Right(()) if flow::now_ns() >= deadline + 1_000_000_000 => break,
            Either::Right(()) => {}
        }
    }
    let _ = f.close().await;
    (h, err)
}

async fn churn<N: Net>(
    net: N,
    cfg: Arc<ClientConfig>,
    counters: Arc<Vec<Counters>>,
    ctx: Option<std::rc::Rc<ConnectContext>>,
    index: usize,
    deadline: u64,
) -> WorkerOut {
    let c = &counters[index];
    let mut h = histogram();
    let mut err = None;
    let mut msg = vec![0x5au8; cfg.size];
    if cfg.payload == Payload::PalindromeLine {
        cfg.payload.fill(&mut msg, 0);
    }
    let mut back = vec![0u8; cfg.size];
    while flow::now_ns() < deadline {
        let t0 = flow::now_ns();
        let mut f = match connect(&net, &cfg, ctx.as_deref()).await {
            Ok(f) => f,
            Err(e) => {
                fail(c, &mut err, e);
                // Do not spin on a failing connect.
                flow::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        c.conns.fetch_add(1, Ordering::Relaxed);
        let r = async {
            f.write_all(&msg).await?;
            f.read_exact(&mut back).await
        }
        .await;
        match r {
            Ok(()) if back != msg => fail(c, &mut err, FlowError::invalid("the echo differs from what was sent")),
            Ok(()) => {
                rec(&mut h, flow::now_ns() - t0);
                c.msgs.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => fail(c, &mut err, e),
        }
        let _ = f.close().await;
    }
    (h, err)
}

async fn progress(counters: Arc<Vec<Counters>>, start: u64, deadline: u64) {
    let sum = |f: fn(&Counters) -> &AtomicU64| counters.iter().map(|c| f(c).load(Ordering::Relaxed)).sum::<u64>();
    let (mut last_m, mut last_c) = (0u64, 0u64);
    let mut t = start;
    while t + 1_000_000_000 <= deadline {
        t += 1_000_000_000;
        flow::exec::sleep_until(t).await;
        let (m, c, e) = (sum(|c| &c.msgs), sum(|c| &c.conns), sum(|c| &c.errors));
        eprintln!(
            "[{:>3}s] messages/s {:>10}  connections/s {:>8}  errors {}",
            (t - start) / 1_000_000_000,
            m - last_m,
            c - last_c,
            e
        );
        (last_m, last_c) = (m, c);
    }
}

/// The merged result of all cores.
pub struct Report {
    /// Latencies, ns.
    pub hist: Histogram<u64>,
    /// Messages answered.
    pub msgs: u64,
    /// Connections made.
    pub conns: u64,
    /// Errors.
    pub errors: u64,
    /// First error.
    pub first_error: Option<String>,
    /// Seconds of load.
    pub secs: f64,
}

impl Report {
    /// Merges per-core results.
    pub fn merge(parts: Vec<ClientResult>) -> Report {
        let mut r = Report { hist: histogram(), msgs: 0, conns: 0, errors: 0, first_error: None, secs: 0.0 };
        for p in parts {
            r.hist.add(&p.hist).expect("same bounds");
            r.msgs += p.msgs;
            r.conns += p.conns;
            r.errors += p.errors;
            r.first_error = r.first_error.or(p.first_error);
            r.secs = r.secs.max(p.elapsed_ns as f64 / 1e9);
        }
        r
    }

    /// A latency percentile in microseconds.
    pub fn us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1e3
    }

    /// The final lines.
    pub fn text(&self, cfg: &ClientConfig) -> String {
        let what = if cfg.mode == Mode::Churn { "connect+rtt" } else { "rtt" };
        let mut s = format!(
            "mode {:?} target {} conns {} size {} duration {:.1}s\nmessages {} ({:.0}/s)  connections {} ({:.0}/s)  errors {}\n",
            cfg.mode,
            cfg.via.as_ref().map(|v| v.uri.clone()).unwrap_or_else(|| cfg.target.to_string()),
            cfg.conns,
            cfg.size,
            self.secs,
            self.msgs,
            self.msgs as f64 / self.secs,
            self.conns,
            self.conns as f64 / self.secs,
            self.errors
        );
        s += &format!(
            "{what} us: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (n={})\n",
            self.us(0.5),
            self.us(0.9),
            self.us(0.99),
            self.us(0.999),
            self.hist.max() as f64 / 1e3,
            self.hist.len()
        );
        if let Some(e) = &self.first_error {
            s += &format!("first error: {e}\n");
        }
        s
    }
}
