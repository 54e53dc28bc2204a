//! The data path of one core: accept, pick a server, connect, splice.
//!
//! [`Lb`] is one core's balancer, generic over the stack (`N: Net`); every
//! core builds its own from the same [`Checked`] config and shares nothing
//! with the others (its own [`Pool`]s, Maglev tables, queues and counters).
//!
//! A client connection goes through:
//! 1. **accept**, while the frontend has fewer than `maxconn` connections on
//!    this core (past it the accept loop waits: new connections wait in the
//!    listener's backlog, whose size and SYN policy are the frontend's);
//! 2. **PROXY header** (`accept_proxy`): read within `client_timeout`,
//!    strictly parsed ([`crate::proxy_proto`]); a bad one is counted and the
//!    connection reset;
//! 3. **pick and connect**: [`Pool::pick`]; when every eligible server is at
//!    `maxconn` the connection waits in the backend's queue (at most
//!    `queue_max` waiting, each at most `queue_timeout`; a full queue or a
//!    timeout closes the client). A connect that fails (refused, unreachable,
//!    or not done within `connect_timeout`) counts toward the server's `fall`
//!    and is retried up to `retries` times — on another server when
//!    `redispatch` is on, else on the same one; the client sees nothing of it
//!    unless every attempt fails;
//! 4. **splice** both ways through one buffer of `buffer_size` bytes per
//!    direction: a direction reads only when its buffer is empty, so a slow
//!    reader stops the other side's reads (TCP's window then stops the
//!    sender) and nothing piles up; an end of stream is passed on as a
//!    shutdown (half-close) and the other direction goes on; a reset on
//!    either side (or a write that fails) resets the other side;
//! 5. **timeouts** while splicing, on the time since the last byte moved:
//!    `client_timeout` while we wait for the client (nothing from the server
//!    yet and the last bytes, if any, came from the server), `server_timeout`
//!    while we wait for the server's first answer to forwarded client data,
//!    and `tunnel_timeout` once both sides have spoken. An expired session
//!    resets both sides (its buffered bytes are dropped, as they would be
//!    anyway).
//!
//! Queued connections are woken together when a slot frees and pick again
//! in the order the executor runs them (first woken first): the queue is
//! bounded, and its order is FIFO up to that.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use flow::{Either, Flow, FlowError, Listener, Net};
use serde::Serialize;

use crate::balance::{Pick, Pool, ServerCounters};
use crate::config::{BackendSpec, Checked, FrontendSpec, SendProxy};
use crate::proxy_proto;
use crate::splice::{splice, Dir, Timeouts};
pub use crate::tcplog::{haproxy_date, Trace};

/// Upper bounds (µs) of the connect-time histogram buckets; the last bucket
/// takes the rest.
pub const CONNECT_BUCKETS_US: [u64; 12] =
    [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 250_000, 1_000_000, 5_000_000];

/// A frontend's counters on one core.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FrontendCounters {
    /// Client connections open now.
    pub cur: u64,
    /// Client connections accepted.
    pub total: u64,
    /// Bytes from clients.
    pub bytes_in: u64,
    /// Bytes to clients.
    pub bytes_out: u64,
    /// PROXY headers refused (bad, truncated, too long, late).
    pub proxy_errors: u64,
    /// Sessions closed by the client timeout.
    pub client_timeouts: u64,
    /// Sessions a client reset.
    pub client_resets: u64,
    /// Sessions that ended with both sides closed in order.
    pub completed: u64,
    /// Accepts that failed (out of descriptors, ...); the listener went on.
    pub accept_errors: u64,
}

/// A backend's counters on one core.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackendCounters {
    /// Connections waiting in the queue now.
    pub queue_cur: u64,
    /// Connections that waited in the queue.
    pub queued: u64,
    /// Refused because the queue was full.
    pub queue_full: u64,
    /// Left the queue at `queue_timeout`.
    pub queue_timeouts: u64,
    /// Refused because no server was eligible.
    pub no_server: u64,
    /// Connect attempts after a failed one.
    pub retries: u64,
    /// Retries that went to another server.
    pub redispatches: u64,
    /// Clients closed because every connect attempt failed.
    pub connect_failures: u64,
    /// Sessions closed by the server timeout.
    pub server_timeouts: u64,
    /// Sessions closed by the tunnel (idle) timeout.
    pub tunnel_timeouts: u64,
    /// Sessions a server reset.
    pub server_resets: u64,
    /// Connect times: counts per [`CONNECT_BUCKETS_US`] bucket, plus one.
    pub connect_us: Vec<u64>,
    /// Sum of the connect times, µs.
    pub connect_us_sum: u64,
}

/// A limit with tasks waiting for room: the frontend's `maxconn` gate and the
/// backend's queue.
#[derive(Default)]
struct Notify {
    gen: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl Notify {
    fn notify(&self) {
        self.gen.set(self.gen.get() + 1);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Completes at the next `notify` after this call.
    fn wait(&self) -> impl Future<Output = ()> + '_ {
        let seen = self.gen.get();
        poll_fn(move |cx| {
            if self.gen.get() != seen {
                return Poll::Ready(());
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
    }
}

/// One backend on one core.
pub struct Backend {
    /// Its checked configuration (replaced by a reload; its `servers` are
    /// the pool's at load time, the pool holds the live ones).
    pub spec: RefCell<BackendSpec>,
    /// Its servers.
    pub pool: RefCell<Pool>,
    /// Its counters.
    pub stats: RefCell<BackendCounters>,
    queue: Notify,
}

/// One frontend on one core.
pub struct Frontend {
    /// Its checked configuration (replaced by a reload).
    pub spec: RefCell<FrontendSpec>,
    /// Its counters.
    pub stats: RefCell<FrontendCounters>,
    room: Notify,
}

/// An accept loop: its frontend, address, listener values and stop flag.
struct Accepting {
    frontend: String,
    addr: SocketAddr,
    cfg: flow::ListenConfig,
    stop: Rc<Cell<bool>>,
}

/// One core's balancer.
pub struct Lb<N: Net> {
    net: N,
    tcp: RefCell<flow::TcpConfig>,
    /// Backends: config order, then any a reload added (never removed, so an
    /// index held by a session stays valid; one a reload dropped just stops
    /// being used).
    pub backends: RefCell<Vec<Rc<Backend>>>,
    /// Frontends, likewise.
    pub frontends: RefCell<Vec<Rc<Frontend>>>,
    accepting: RefCell<Vec<Accepting>>,
    sessions: Cell<usize>,
    idle: Notify,
    log: RefCell<String>,
}

/// A runtime change to one server (the admin API, or a health verdict
/// broadcast from the checking core).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Weight 0..=256.
    SetWeight {
        /// Backend name.
        backend: String,
        /// Server name.
        server: String,
        /// New weight.
        weight: u32,
    },
    /// Drain on or off.
    SetDrain {
        /// Backend name.
        backend: String,
        /// Server name.
        server: String,
        /// Drain.
        drain: bool,
    },
    /// Up or down.
    SetUp {
        /// Backend name.
        backend: String,
        /// Server name.
        server: String,
        /// Up.
        up: bool,
    },
    /// A new server.
    Add {
        /// Backend name.
        backend: String,
        /// The server.
        server: crate::config::ServerSpec,
    },
    /// Remove a server: no new connections, open ones finish.
    Remove {
        /// Backend name.
        backend: String,
        /// Server name.
        server: String,
    },
}

/// Why a session ended (for counters and the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both directions finished in order.
    Completed,
    /// The client reset (or failed).
    ClientReset,
    /// The server reset (or failed).
    ServerReset,
    /// `client_timeout`.
    ClientTimeout,
    /// `server_timeout`.
    ServerTimeout,
    /// `tunnel_timeout`.
    TunnelTimeout,
    /// The PROXY header was refused.
    BadProxy,
    /// No server could be had (none eligible, queue full or timed out, every
    /// connect failed).
    NoServer,
}

/// One server in a [`Snapshot`]: name, up, connections now, counters.
pub type ServerRow = (String, bool, usize, ServerCounters);

/// A snapshot of one core's counters, for `/stats`, `/metrics` and the exit report.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Per frontend.
    pub frontends: Vec<(String, FrontendCounters)>,
    /// Per backend, with its servers: name, up, current connections, counters.
    pub backends: Vec<(String, BackendCounters, Vec<ServerRow>)>,
    /// Sessions open.
    pub sessions: usize,
    /// This core's executor loop: ns in iterations that did work (a task ran,
    /// a timer fired, I/O moved), from `flow::core_cycles` and the TSC rate.
    pub busy_ns: u64,
    /// ns in empty iterations (an epoll reactor's sleep included).
    pub idle_ns: u64,
    /// The stack's per-core counters ([`flow::Net::core_counters`]: on ours
    /// `rss_misdirected`, `frames_handed_off`, ...; none on the kernel's).
    pub stack: Vec<(String, u64)>,
}

fn cycles_ns(c: u64) -> u64 {
    (u128::from(c) * 1_000_000_000 / u128::from(pmd::runtime::tsc_hz().max(1))) as u64
}

fn new_backend(b: &BackendSpec) -> Rc<Backend> {
    Rc::new(Backend {
        spec: RefCell::new(b.clone()),
        pool: RefCell::new(Pool::new(b)),
        stats: RefCell::new(BackendCounters {
            connect_us: vec![0; CONNECT_BUCKETS_US.len() + 1],
            ..Default::default()
        }),
        queue: Notify::default(),
    })
}

impl<N: Net> Lb<N> {
    /// This core's balancer for `cfg` (nothing listens until [`Lb::start`]).
    pub fn new(net: N, cfg: &Checked) -> Rc<Lb<N>> {
        let backends = cfg.backends.iter().map(new_backend).collect();
        let frontends = cfg
            .frontends
            .iter()
            .map(|f| {
                Rc::new(Frontend { spec: RefCell::new(f.clone()), stats: RefCell::default(), room: Notify::default() })
            })
            .collect();
        Rc::new(Lb {
            net,
            tcp: RefCell::new(cfg.tcp.clone()),
            backends: RefCell::new(backends),
            frontends: RefCell::new(frontends),
            accepting: RefCell::new(Vec::new()),
            sessions: Cell::new(0),
            idle: Notify::default(),
            log: RefCell::new(String::new()),
        })
    }

    /// Sessions open now on this core.
    pub fn sessions(&self) -> usize {
        self.sessions.get()
    }

    /// The counters now, with the executor's busy/idle time (call it on the
    /// core, inside its executor).
    pub fn core_snapshot(&self) -> Snapshot {
        let c = flow::core_cycles();
        let mut s = self.snapshot();
        s.busy_ns = cycles_ns(c.busy);
        s.idle_ns = cycles_ns(c.idle);
        s.stack = self.net.core_counters().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        s
    }

    /// The counters now (busy/idle time left 0: see [`Lb::core_snapshot`]).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            frontends: self
                .frontends
                .borrow()
                .iter()
                .map(|f| (f.spec.borrow().name.clone(), *f.stats.borrow()))
                .collect(),
            backends: self
                .backends
                .borrow()
                .iter()
                .map(|b| {
                    let servers = b
                        .pool
                        .borrow()
                        .servers()
                        .iter()
                        .filter(|s| !s.removed)
                        .map(|s| (s.spec.name.clone(), s.up, s.conns, s.stats))
                        .collect();
                    (b.spec.borrow().name.clone(), b.stats.borrow().clone(), servers)
                })
                .collect(),
            sessions: self.sessions.get(),
            busy_ns: 0,
            idle_ns: 0,
            stack: Vec::new(),
        }
    }

    /// Listens on every frontend address not listened on yet and starts its
    /// accept loop; an error names the address (those opened before stay).
    pub fn start(self: &Rc<Self>) -> Result<(), (SocketAddr, FlowError)> {
        let fes: Vec<Rc<Frontend>> = self.frontends.borrow().clone();
        for fe in fes {
            let spec = fe.spec.borrow().clone();
            for (a, lc) in spec.listen.iter().zip(&spec.listen_cfg) {
                if self.accepting.borrow().iter().any(|x| x.frontend == spec.name && x.addr == *a) {
                    continue;
                }
                let l = self.net.listen(*a, lc).map_err(|e| (*a, e))?;
                let stop = Rc::new(Cell::new(false));
                self.accepting.borrow_mut().push(Accepting {
                    frontend: spec.name.clone(),
                    addr: *a,
                    cfg: lc.clone(),
                    stop: stop.clone(),
                });
                let (me, fe) = (self.clone(), fe.clone());
                flow::spawn(async move {
                    let watch = async {
                        while !stop.get() {
                            flow::sleep(Duration::from_millis(10)).await;
                        }
                    };
                    if let Either::Left(e) = flow::race(me.clone().accept_loop(fe, l), watch).await {
                        eprintln!("lb: accept: {e}");
                    }
                });
            }
        }
        Ok(())
    }

    /// Stops accepting (every listener closes within 10 ms) and lets open
    /// sessions finish for at most `grace`; returns how many were still open.
    pub async fn drain(self: &Rc<Self>, grace: Duration) -> usize {
        for a in self.accepting.borrow_mut().drain(..) {
            a.stop.set(true);
        }
        let me = self.clone();
        let drained = flow::timeout(grace, async move {
            while me.sessions.get() > 0 {
                me.idle.wait().await;
            }
        })
        .await;
        if drained.is_ok() {
            0
        } else {
            self.sessions.get()
        }
    }

    /// Serves until `stop` is raised, then [`drain`](Self::drain)s.
    pub async fn serve(self: &Rc<Self>, stop: Arc<AtomicBool>, grace: Duration) -> usize {
        stopped(stop).await;
        self.drain(grace).await
    }

    /// Applies a new configuration in place: established sessions are
    /// untouched; backends and servers are matched by name (a server keeps its
    /// connections, counters and health; a new one starts up; a dropped one
    /// takes no new connections and its open ones finish); frontends likewise,
    /// listening on new addresses before closing dropped ones, so no listening
    /// address is ever without a listener. Returns one line per change that
    /// could not be applied (a changed backlog on an address already listened
    /// on keeps the old listener's values).
    pub fn reload(self: &Rc<Self>, cfg: &Checked) -> Result<Vec<String>, (SocketAddr, FlowError)> {
        let mut notes = Vec::new();
        *self.tcp.borrow_mut() = cfg.tcp.clone();
        // Backends: new indices for the new config's order.
        let mut index = Vec::new();
        for b in &cfg.backends {
            let existing = self.backends.borrow().iter().position(|x| x.spec.borrow().name == b.name);
            let i = match existing {
                Some(i) => {
                    let be = self.backends.borrow()[i].clone();
                    be.pool.borrow_mut().reconfigure(b);
                    *be.spec.borrow_mut() = b.clone();
                    be.queue.notify();
                    i
                }
                None => {
                    self.backends.borrow_mut().push(new_backend(b));
                    self.backends.borrow().len() - 1
                }
            };
            index.push(i);
        }
        // Frontends.
        let mut keep = Vec::new();
        for f in &cfg.frontends {
            let mut f = f.clone();
            f.backend = index[f.backend];
            let existing = self.frontends.borrow().iter().find(|x| x.spec.borrow().name == f.name).cloned();
            match existing {
                Some(fe) => {
                    *fe.spec.borrow_mut() = f.clone();
                    fe.room.notify();
                }
                None => self.frontends.borrow_mut().push(Rc::new(Frontend {
                    spec: RefCell::new(f.clone()),
                    stats: RefCell::default(),
                    room: Notify::default(),
                })),
            }
            for (a, lc) in f.listen.iter().zip(&f.listen_cfg) {
                keep.push((f.name.clone(), *a));
                if let Some(x) = self.accepting.borrow().iter().find(|x| x.frontend == f.name && x.addr == *a) {
                    if x.cfg != *lc {
                        notes.push(format!(
                            "frontends.{}: listener values of {a} changed; the open listener keeps the old ones",
                            f.name
                        ));
                    }
                }
            }
        }
        self.start()?;
        self.accepting.borrow_mut().retain(|a| {
            let kept = keep.iter().any(|(n, addr)| *n == a.frontend && *addr == a.addr);
            if !kept {
                a.stop.set(true);
            }
            kept
        });
        Ok(notes)
    }

    /// Applies a runtime command; the error says what was not found.
    pub fn apply(&self, cmd: &Command) -> Result<(), String> {
        let name = match cmd {
            Command::SetWeight { backend, .. }
            | Command::SetDrain { backend, .. }
            | Command::SetUp { backend, .. }
            | Command::Add { backend, .. }
            | Command::Remove { backend, .. } => backend,
        };
        let be = self
            .backends
            .borrow()
            .iter()
            .find(|b| b.spec.borrow().name == *name)
            .cloned()
            .ok_or_else(|| format!("no backend named '{name}'"))?;
        let mut pool = be.pool.borrow_mut();
        let find = |p: &Pool, s: &str| p.find(s).ok_or_else(|| format!("backend {name} has no server named '{s}'"));
        match cmd {
            Command::SetWeight { server, weight, .. } => {
                if *weight > 256 {
                    return Err("weight must be 0..=256".into());
                }
                let i = find(&pool, server)?;
                pool.set_weight(i, *weight);
            }
            Command::SetDrain { server, drain, .. } => {
                let i = find(&pool, server)?;
                pool.set_drain(i, *drain);
            }
            Command::SetUp { server, up, .. } => {
                let i = find(&pool, server)?;
                pool.set_up(i, *up);
            }
            Command::Add { server, .. } => {
                if pool.find(&server.name).is_some() {
                    return Err(format!("backend {name} already has a server named '{}'", server.name));
                }
                pool.add(server.clone());
            }
            Command::Remove { server, .. } => {
                let i = find(&pool, server)?;
                pool.remove(i);
            }
        }
        drop(pool);
        be.queue.notify();
        Ok(())
    }

    async fn accept_loop(self: Rc<Self>, fe: Rc<Frontend>, mut l: N::Listener) -> FlowError {
        loop {
            while fe.stats.borrow().cur as usize >= fe.spec.borrow().maxconn {
                fe.room.wait().await;
            }
            match l.accept().await {
                Ok((client, peer)) => {
                    {
                        let mut s = fe.stats.borrow_mut();
                        s.cur += 1;
                        s.total += 1;
                    }
                    self.sessions.set(self.sessions.get() + 1);
                    let me = self.clone();
                    let fe = fe.clone();
                    flow::spawn(async move {
                        me.session(&fe, client, peer).await;
                        fe.stats.borrow_mut().cur -= 1;
                        fe.room.notify();
                        me.sessions.set(me.sessions.get() - 1);
                        me.idle.notify();
                    });
                }
                // The listener itself is gone: this loop ends.
                Err(e @ FlowError::Closed) => return e,
                // One connection lost (reset before accept), or the process
                // out of descriptors or memory: count it and go on — after a
                // pause for the latter, as HAProxy does — never give up the
                // listener.
                Err(e) => {
                    let pause = matches!(e, FlowError::Io(_));
                    let n = {
                        let mut s = fe.stats.borrow_mut();
                        s.accept_errors += 1;
                        s.accept_errors
                    };
                    if n <= 10 {
                        eprintln!("lb: accept on frontend {}: {e}", fe.spec.borrow().name);
                    }
                    if pause {
                        flow::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
    }

    /// Serves one client connection to its end (and logs it, with the
    /// frontend's `log = "tcplog"`).
    pub async fn session(&self, fe: &Frontend, client: N::Flow, peer: SocketAddr) -> End {
        let mut tr = Trace { t0: flow::now_ns(), wall: std::time::SystemTime::now(), src: peer, ..Trace::default() };
        let end = self.session_inner(fe, client, peer, &mut tr).await;
        if fe.spec.borrow().log {
            let line = self.tcplog(fe, &tr, end);
            let mut buf = self.log.borrow_mut();
            // Bounded: a core that cannot flush (stderr blocked) drops lines.
            if buf.len() < 1 << 20 {
                buf.push_str(&line);
                buf.push('\n');
            }
        }
        end
    }

    /// Takes the log lines buffered since the last call (the control task
    /// writes them out every tick, off the data path).
    pub fn take_log(&self) -> String {
        std::mem::take(&mut *self.log.borrow_mut())
    }

    /// HAProxy's `option tcplog` line:
    /// `%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq`.
    fn tcplog(&self, fe: &Frontend, tr: &Trace, end: End) -> String {
        let ms = |ns: Option<u64>| ns.map(|n| (n / 1_000_000) as i64).unwrap_or(-1);
        let be = self.backends.borrow()[fe.spec.borrow().backend].clone();
        let pool = be.pool.borrow();
        let server = tr.server.map(|i| pool.servers()[i].spec.name.clone()).unwrap_or_else(|| "<NOSRV>".into());
        let beconn: usize = pool.servers().iter().map(|s| s.conns).sum();
        let srvconn = tr.server.map(|i| pool.servers()[i].conns).unwrap_or(0);
        let state = match (end, tr.code) {
            (_, Some(c)) => c,
            (End::Completed, _) => "--",
            (End::ClientReset, _) => "CD",
            (End::ServerReset, _) => "SD",
            (End::ClientTimeout, _) | (End::TunnelTimeout, _) => "cD",
            (End::ServerTimeout, _) => "sD",
            (End::BadProxy, _) => "PR",
            (End::NoServer, _) => "SC",
        };
        format!(
            "{}:{} [{}] {} {}/{} {}/{}/{} {} {} {}/{}/{}/{}/{} 0/{}",
            tr.src.ip(),
            tr.src.port(),
            haproxy_date(tr.wall),
            fe.spec.borrow().name,
            be.spec.borrow().name,
            server,
            ms(tr.queued_ns),
            ms(tr.connect_ns),
            (flow::now_ns() - tr.t0) / 1_000_000,
            tr.bytes_out,
            state,
            self.sessions.get(),
            fe.stats.borrow().cur,
            beconn,
            srvconn,
            tr.retries,
            be.stats.borrow().queue_cur,
        )
    }

    async fn session_inner(&self, fe: &Frontend, mut client: N::Flow, peer: SocketAddr, tr: &mut Trace) -> End {
        let local = client.local_addr().unwrap_or(peer);
        let (accept_proxy, client_timeout, buffer_size, backend) = {
            let f = fe.spec.borrow();
            (f.accept_proxy, f.client_timeout, f.buffer_size, f.backend)
        };
        let be = self.backends.borrow()[backend].clone();
        // 2. The PROXY header, if required.
        let mut first = Vec::new();
        let (src, dst) = if accept_proxy {
            match read_proxy(&mut client, client_timeout, buffer_size).await {
                Ok((h, rest)) => {
                    first = rest;
                    let (s, d) = h.unwrap_or((peer, local));
                    tr.src = s;
                    (s, d)
                }
                Err(_) => {
                    fe.stats.borrow_mut().proxy_errors += 1;
                    client.abort();
                    return End::BadProxy;
                }
            }
        } else {
            (peer, local)
        };
        // 3. A server.
        let Some((mut server, idx)) = self.connect(&be, src, dst, tr).await else {
            let _ = poll_fn(|cx| client.poll_close(cx)).await;
            return End::NoServer;
        };
        let proxy = be.pool.borrow().servers()[idx].spec.send_proxy;
        let mut to_server = match proxy {
            SendProxy::Off => Vec::new(),
            SendProxy::V1 => proxy_proto::encode_v1(src, dst),
            SendProxy::V2 => proxy_proto::encode_v2(src, dst),
        };
        let header = to_server.len() as u64;
        to_server.extend_from_slice(&first);
        // 4. and 5.
        let t = {
            let b = be.spec.borrow();
            Timeouts { client: client_timeout, server: b.server_timeout, tunnel: b.tunnel_timeout }
        };
        let mut up = Dir::new(buffer_size, to_server);
        let mut down = Dir::new(buffer_size, Vec::new());
        tr.server = Some(idx);
        let end = splice(&mut client, &mut server, &mut up, &mut down, t, !first.is_empty()).await;
        tr.bytes_out = down.bytes_read;
        {
            let mut f = fe.stats.borrow_mut();
            f.bytes_in += up.bytes_read;
            f.bytes_out += down.bytes_read;
            match end {
                End::Completed => f.completed += 1,
                End::ClientTimeout => f.client_timeouts += 1,
                End::ClientReset => f.client_resets += 1,
                _ => {}
            }
        }
        {
            let mut b = be.stats.borrow_mut();
            match end {
                End::ServerTimeout => b.server_timeouts += 1,
                End::TunnelTimeout => b.tunnel_timeouts += 1,
                End::ServerReset => b.server_resets += 1,
                _ => {}
            }
        }
        {
            let mut p = be.pool.borrow_mut();
            let s = p.stats_mut(idx);
            s.bytes_in += up.bytes_written.saturating_sub(header);
            s.bytes_out += down.bytes_read;
        }
        match end {
            End::Completed => {
                let _ = poll_fn(|cx| client.poll_close(cx)).await;
                let _ = poll_fn(|cx| server.poll_close(cx)).await;
            }
            _ => {
                client.abort();
                server.abort();
            }
        }
        drop(server);
        be.pool.borrow_mut().release(idx);
        be.queue.notify();
        end
    }

    /// Picks and connects, with the queue, retries and redispatch; `None`
    /// when no server could be had (counted).
    async fn connect(
        &self,
        be: &Backend,
        src: SocketAddr,
        dst: SocketAddr,
        tr: &mut Trace,
    ) -> Option<(N::Flow, usize)> {
        let spec = {
            let b = be.spec.borrow();
            Policy {
                passive: b.check != crate::config::Check::Off,
                redispatch: b.redispatch,
                retries: b.retries,
                queue_max: b.queue_max,
                queue_timeout: b.queue_timeout,
                connect_timeout: b.connect_timeout,
            }
        };
        let tcp = self.tcp.borrow().clone();
        let mut tried: Vec<usize> = Vec::new();
        let mut attempts = 0u32;
        let mut last: Option<usize> = None;
        let mut queued_since: Option<u64> = None;
        loop {
            // Without redispatch a retry goes back to the same server.
            let pick = match last {
                Some(i) if !spec.redispatch => {
                    if be.pool.borrow_mut().take(i) {
                        Pick::Server(i)
                    } else {
                        Pick::Full
                    }
                }
                _ => be.pool.borrow_mut().pick(src, dst, &tried),
            };
            let i = match pick {
                Pick::Server(i) => i,
                Pick::NoServer => {
                    let mut s = be.stats.borrow_mut();
                    if attempts > 0 {
                        s.connect_failures += 1;
                    } else {
                        s.no_server += 1;
                    }
                    tr.code = Some("SC");
                    return None;
                }
                Pick::Full => {
                    let since = match queued_since {
                        Some(t) => t,
                        None => {
                            let mut s = be.stats.borrow_mut();
                            if s.queue_cur as usize >= spec.queue_max {
                                s.queue_full += 1;
                                tr.code = Some("PQ");
                                return None;
                            }
                            s.queue_cur += 1;
                            s.queued += 1;
                            let t = flow::now_ns();
                            queued_since = Some(t);
                            t
                        }
                    };
                    let left = (since + spec.queue_timeout.as_nanos() as u64).saturating_sub(flow::now_ns());
                    if left == 0 || flow::timeout(Duration::from_nanos(left), be.queue.wait()).await.is_err() {
                        let mut s = be.stats.borrow_mut();
                        s.queue_cur -= 1;
                        s.queue_timeouts += 1;
                        tr.queued_ns = Some(flow::now_ns() - since);
                        tr.code = Some("sQ");
                        return None;
                    }
                    continue;
                }
            };
            if let Some(since) = queued_since.take() {
                be.stats.borrow_mut().queue_cur -= 1;
                tr.queued_ns = Some(tr.queued_ns.unwrap_or(0) + flow::now_ns() - since);
            }
            let addr = be.pool.borrow().servers()[i].spec.addr;
            let t0 = flow::now_ns();
            let r = flow::timeout(spec.connect_timeout, self.net.connect(addr, &tcp)).await;
            match r {
                Ok(Ok(f)) => {
                    let us = (flow::now_ns() - t0) / 1000;
                    tr.connect_ns = Some(flow::now_ns() - t0);
                    tr.queued_ns.get_or_insert(0);
                    let bucket = CONNECT_BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(CONNECT_BUCKETS_US.len());
                    {
                        let mut s = be.stats.borrow_mut();
                        s.connect_us[bucket] += 1;
                        s.connect_us_sum += us;
                    }
                    let mut p = be.pool.borrow_mut();
                    p.report(i, true);
                    p.stats_mut(i).total += 1;
                    return Some((f, i));
                }
                Ok(Err(_)) | Err(_) => {
                    {
                        let mut p = be.pool.borrow_mut();
                        p.release(i);
                        p.stats_mut(i).connect_errors += 1;
                        // Passive health: a failed connect counts toward `fall`.
                        if spec.passive {
                            p.report(i, false);
                        }
                    }
                    be.queue.notify();
                    attempts += 1;
                    if attempts > spec.retries {
                        be.stats.borrow_mut().connect_failures += 1;
                        tr.code = Some("SC");
                        return None;
                    }
                    tr.retries += 1;
                    let mut s = be.stats.borrow_mut();
                    s.retries += 1;
                    if spec.redispatch {
                        s.redispatches += 1;
                        tried.push(i);
                    }
                    last = Some(i);
                }
            }
        }
    }
}

/// Resolves when `stop` is raised (checked every 10 ms on the executor's clock).
pub async fn stopped(stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        flow::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads a PROXY header within `limit` of time; returns it and the stream
/// bytes that came after it.
async fn read_proxy<F: Flow>(
    f: &mut F,
    limit: Duration,
    max: usize,
) -> Result<(Option<(SocketAddr, SocketAddr)>, Vec<u8>), proxy_proto::ProxyError> {
    let mut buf = vec![0u8; max];
    let mut have = 0;
    let work = async {
        loop {
            if let Some(h) = proxy_proto::parse(&buf[..have], max)? {
                return Ok((h.addrs, buf[h.len..have].to_vec()));
            }
            if have == buf.len() {
                return Err(proxy_proto::ProxyError::TooLong);
            }
            match f.read(&mut buf[have..]).await {
                Ok(0) | Err(_) => return Err(proxy_proto::ProxyError::Truncated),
                Ok(n) => have += n,
            }
        }
    };
    flow::timeout(limit, work).await.unwrap_or(Err(proxy_proto::ProxyError::Truncated))
}

/// What a connect needs of its backend's values, copied at its start.
#[derive(Clone, Copy)]
struct Policy {
    /// Failed connects count toward `fall` (only with active checks on,
    /// which are what bring a server back).
    passive: bool,
    redispatch: bool,
    retries: u32,
    queue_max: usize,
    queue_timeout: Duration,
    connect_timeout: Duration,
}
