//! Flows over our userspace TCP/IP: a [`Net`] backed by one [`stack::Stack`]
//! per core, and the reactor that drives it from the executor's loop.
//!
//! The reactor's `turn` is the poll loop of DESIGN.md: `stack.poll()` (rx
//! burst, input, TCP and stack timers, one tx flush), then the tokens the stack
//! reports in `tcp_take_ready` wake the tasks parked on them; UDP sockets with a
//! parked reader are checked for queued datagrams. It never parks on real time
//! (poll mode). On a [`pmd::VirtualClock`] (simulation), a turn in which no
//! stack had work and no task is runnable jumps time to the next deadline — the
//! executor's timers or the stacks' — capped at [`MAX_JUMP_NS`], so frames held
//! by a delay impairment are never skipped over by much.
//!
//! Queues are `Box<dyn RxQueue>` / `Box<dyn TxQueue>` because the port is picked
//! by a value (its spec string): one virtual call per burst, not per packet.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use pmd::{Clock, Mempool, MempoolConfig, PortConfig, VirtualClock};
use stack::{StackConfig, TcpHandle, TcpListenerHandle, TcpSocketError, UdpDatagram, UdpHandle};

use crate::cores::{check_cores, on_cores, Core};
use crate::exec::{Executor, Reactor};
use crate::{Datagram, Flow, FlowError, ListenConfig, Listener, Net, TcpConfig, UdpConfig};

/// The stack type a runtime builds over a port chosen by spec.
pub type DynStack = stack::DynDriver;

/// Longest single jump of virtual time when idle.
pub const MAX_JUMP_NS: u64 = 10_000_000;

#[derive(Default)]
struct Waiters {
    reader: Option<Waker>,
    writer: Option<Waker>,
}

struct Inner {
    stack: DynStack,
    tcp: HashMap<u64, Waiters>,
    udp: HashMap<UdpHandle, Waker>,
    ready: Vec<u64>,
    scratch: Vec<UdpDatagram>,
}

/// One stack as the flows of a core see it.
#[derive(Clone)]
pub struct UserNet {
    inner: Rc<RefCell<Inner>>,
}

impl UserNet {
    /// Runs `f` on the stack (counters, neighbour table, ...).
    pub fn with_stack<R>(&self, f: impl FnOnce(&mut DynStack) -> R) -> R {
        f(&mut self.inner.borrow_mut().stack)
    }
}

/// Drives one or more stacks (one per core; several in a simulation).
pub struct UserReactor {
    stacks: Vec<Rc<RefCell<Inner>>>,
    clock: Arc<dyn Clock>,
    virt: Option<VirtualClock>,
    step_ns: u64,
    wake: Vec<Waker>,
}

impl UserReactor {
    /// A reactor on real time (`clock` must be the stacks' clock).
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        UserReactor { stacks: Vec::new(), clock, virt: None, step_ns: 0, wake: Vec::new() }
    }

    /// A reactor on virtual time: every turn costs `step_ns` (the simulated
    /// price of one poll-loop iteration), idle turns jump the clock.
    pub fn simulated(clock: VirtualClock, step_ns: u64) -> Self {
        UserReactor { stacks: Vec::new(), clock: Arc::new(clock.clone()), virt: Some(clock), step_ns, wake: Vec::new() }
    }

    /// Adds a stack and returns its [`Net`].
    pub fn add(&mut self, stack: DynStack) -> UserNet {
        let inner = Rc::new(RefCell::new(Inner {
            stack,
            tcp: HashMap::new(),
            udp: HashMap::new(),
            ready: Vec::new(),
            scratch: Vec::new(),
        }));
        self.stacks.push(inner.clone());
        UserNet { inner }
    }
}

impl Reactor for UserReactor {
    fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    fn turn(&mut self, park: Option<u64>) -> Result<usize, FlowError> {
        if let Some(v) = &self.virt {
            v.advance_ns(self.step_ns);
        }
        let mut work = 0;
        let mut next_timer = u64::MAX;
        for s in &self.stacks {
            let mut g = s.borrow_mut();
            let i = &mut *g;
            work += i.stack.poll();
            i.ready.clear();
            tcp_take_ready(&mut i.stack, &mut i.ready);
            for t in &i.ready {
                if let Some(w) = i.tcp.get_mut(t) {
                    self.wake.extend(w.reader.take());
                    self.wake.extend(w.writer.take());
                }
            }
            if !i.udp.is_empty() {
                let stack = &i.stack;
                i.udp.retain(|h, w| {
                    if stack.udp_ref().queued(*h).unwrap_or(1) > 0 {
                        self.wake.push(w.clone());
                        false
                    } else {
                        true
                    }
                });
            }
            if let Some(t) = next_timer_ns(&i.stack) {
                next_timer = next_timer.min(t);
            }
        }
        work += self.wake.len();
        for w in self.wake.drain(..) {
            w.wake();
        }
        if let (Some(v), Some(deadline)) = (&self.virt, park) {
            if work == 0 {
                let now = v.now_ns();
                let to = deadline.min(next_timer).min(now + MAX_JUMP_NS).max(now + 1);
                v.set_ns(to);
            }
        }
        Ok(work)
    }
}

// ---- TCP ----

fn tcp_take_ready(s: &mut DynStack, out: &mut Vec<u64>) {
    s.tcp().take_ready(out)
}

fn next_timer_ns(s: &DynStack) -> Option<u64> {
    s.next_timer_ns()
}

fn sock_err(e: TcpSocketError) -> FlowError {
    match e {
        TcpSocketError::Closed | TcpSocketError::InvalidHandle | TcpSocketError::WouldBlock => FlowError::Closed,
        TcpSocketError::Reset => FlowError::Reset,
        TcpSocketError::Refused => FlowError::Refused,
        TcpSocketError::TimedOut => FlowError::TimedOut,
        TcpSocketError::Unreachable => FlowError::Unreachable,
    }
}

impl Inner {
    fn park(&mut self, token: u64, w: &Waker, write: bool) {
        let e = self.tcp.entry(token).or_default();
        let slot = if write { &mut e.writer } else { &mut e.reader };
        match slot {
            Some(old) if old.will_wake(w) => {}
            _ => *slot = Some(w.clone()),
        }
    }
}

/// A TCP connection on our stack.
pub struct UserFlow {
    net: UserNet,
    h: TcpHandle,
    open: bool,
}

impl UserFlow {
    /// The stack's handle.
    pub fn handle(&self) -> TcpHandle {
        self.h
    }
}

impl Flow for UserFlow {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, FlowError>> {
        if !self.open {
            return Poll::Ready(Err(FlowError::Closed));
        }
        let mut g = self.net.inner.borrow_mut();
        match g.stack.tcp().recv(self.h, buf) {
            Ok(n) => Poll::Ready(Ok(n)),
            Err(TcpSocketError::WouldBlock) => {
                g.park(self.h.token(), cx.waker(), false);
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(sock_err(e))),
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize, FlowError>> {
        if !self.open {
            return Poll::Ready(Err(FlowError::Closed));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut g = self.net.inner.borrow_mut();
        match g.stack.tcp().send(self.h, buf) {
            Ok(0) | Err(TcpSocketError::WouldBlock) => {
                g.park(self.h.token(), cx.waker(), true);
                Poll::Pending
            }
            Ok(n) => Poll::Ready(Ok(n)),
            Err(e) => Poll::Ready(Err(sock_err(e))),
        }
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), FlowError>> {
        if !self.open {
            return Poll::Ready(Err(FlowError::Closed));
        }
        Poll::Ready(self.net.inner.borrow_mut().stack.tcp().shutdown(self.h).map_err(sock_err))
    }

    fn poll_close(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), FlowError>> {
        self.close_now();
        Poll::Ready(Ok(()))
    }

    fn abort(&mut self) {
        if std::mem::take(&mut self.open) {
            let mut g = self.net.inner.borrow_mut();
            g.stack.tcp().abort(self.h);
            g.tcp.remove(&self.h.token());
        }
    }

    fn peer_addr(&self) -> Result<SocketAddr, FlowError> {
        self.net.inner.borrow().stack.tcp_ref().peer_addr(self.h).map_err(sock_err)
    }

    fn local_addr(&self) -> Result<SocketAddr, FlowError> {
        self.net.inner.borrow().stack.tcp_ref().local_addr(self.h).map_err(sock_err)
    }
}

impl UserFlow {
    fn close_now(&mut self) {
        if std::mem::take(&mut self.open) {
            let mut g = self.net.inner.borrow_mut();
            // Graceful: queued data still goes out, the stack finishes the close.
            g.stack.tcp().close(self.h);
            g.tcp.remove(&self.h.token());
        }
    }
}

impl Drop for UserFlow {
    fn drop(&mut self) {
        self.close_now();
    }
}

/// A listener on our stack.
pub struct UserListener {
    net: UserNet,
    l: TcpListenerHandle,
    addr: SocketAddr,
}

impl Listener for UserListener {
    type Flow = UserFlow;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Result<(UserFlow, SocketAddr), FlowError>> {
        let mut g = self.net.inner.borrow_mut();
        loop {
            match g.stack.tcp().accept(self.l) {
                Ok(h) => match g.stack.tcp().peer_addr(h) {
                    Ok(peer) => return Poll::Ready(Ok((UserFlow { net: self.net.clone(), h, open: true }, peer))),
                    // Gone between the handshake and accept: take the next.
                    Err(_) => g.stack.tcp().close(h),
                },
                Err(TcpSocketError::WouldBlock) => {
                    g.park(self.l.token(), cx.waker(), false);
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(sock_err(e))),
            }
        }
    }

    fn local_addr(&self) -> Result<SocketAddr, FlowError> {
        Ok(self.addr)
    }
}

impl Drop for UserListener {
    fn drop(&mut self) {
        let mut g = self.net.inner.borrow_mut();
        g.stack.tcp().unlisten(self.l);
        g.tcp.remove(&self.l.token());
    }
}

// ---- UDP ----

/// A UDP socket on our stack. Bound to `[::]` it is two stack sockets, one per
/// family, as a dual-stack kernel socket is.
pub struct UserUdp {
    net: UserNet,
    hs: Vec<UdpHandle>,
    local: SocketAddr,
}

impl Datagram for UserUdp {
    fn poll_recv_from(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<(usize, SocketAddr), FlowError>> {
        let mut g = self.net.inner.borrow_mut();
        let i = &mut *g;
        for &h in &self.hs {
            i.scratch.clear();
            match i.stack.udp().recv(h, &mut i.scratch, 1) {
                Ok(1) => {
                    let d = i.scratch.pop().expect("one datagram");
                    // The one copy this API demands: into the caller's buffer.
                    let data = d.payload.data();
                    let n = data.len().min(buf.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    return Poll::Ready(Ok((n, d.peer)));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
        for &h in &self.hs {
            i.udp.insert(h, cx.waker().clone());
        }
        Poll::Pending
    }

    fn poll_send_to(&mut self, _cx: &mut Context<'_>, buf: &[u8], to: SocketAddr) -> Poll<Result<(), FlowError>> {
        let mut g = self.net.inner.borrow_mut();
        let h = if self.hs.len() == 2 && to.is_ipv4() { self.hs[1] } else { self.hs[0] };
        match g.stack.udp().send_slice(h, buf, to) {
            // A full transmit backlog drops the datagram, as a NIC queue would.
            Ok(()) | Err(stack::StackError::TxFull) | Err(stack::StackError::PendingFull) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }

    fn local_addr(&self) -> Result<SocketAddr, FlowError> {
        Ok(self.local)
    }
}

impl Drop for UserUdp {
    fn drop(&mut self) {
        let mut g = self.net.inner.borrow_mut();
        for h in self.hs.drain(..) {
            g.udp.remove(&h);
            let _ = g.stack.udp().close(h);
        }
    }
}

impl Net for UserNet {
    type Flow = UserFlow;
    type Listener = UserListener;
    type Udp = UserUdp;

    fn name(&self) -> &'static str {
        "user"
    }

    fn listen(&self, addr: SocketAddr, cfg: &ListenConfig) -> Result<UserListener, FlowError> {
        let mut cfg = cfg.clone();
        cfg.addr = addr;
        cfg.validate().map_err(|e| FlowError::invalid(e.to_string()))?;
        let l = self.inner.borrow_mut().stack.tcp().listen(cfg)?;
        Ok(UserListener { net: self.clone(), l, addr })
    }

    async fn connect(&self, addr: SocketAddr, cfg: &TcpConfig) -> Result<UserFlow, FlowError> {
        let h = self.inner.borrow_mut().stack.tcp().connect(addr, cfg.clone())?;
        // From here the flow owns the handle: dropping it (a timeout) closes it.
        let f = UserFlow { net: self.clone(), h, open: true };
        std::future::poll_fn(|cx| {
            let mut g = f.net.inner.borrow_mut();
            match g.stack.tcp().connected(f.h) {
                Ok(true) => Poll::Ready(Ok(())),
                Ok(false) => {
                    g.park(f.h.token(), cx.waker(), true);
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Err(sock_err(e))),
            }
        })
        .await?;
        Ok(f)
    }

    fn udp_bind(&self, addr: SocketAddr, cfg: &UdpConfig) -> Result<UserUdp, FlowError> {
        let mut g = self.inner.borrow_mut();
        let h = g.stack.udp().bind(addr, cfg.clone())?;
        let local = g.stack.udp().local_addr(h)?;
        let mut hs = vec![h];
        if addr.ip() == std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) {
            let v4 = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), local.port());
            match g.stack.udp().bind(v4, cfg.clone()) {
                Ok(h4) => hs.push(h4),
                Err(e) => {
                    let _ = g.stack.udp().close(h);
                    return Err(e.into());
                }
            }
        }
        Ok(UserUdp { net: self.clone(), hs, local })
    }

    fn core_counters(&self) -> Vec<(&'static str, u64)> {
        let g = self.inner.borrow();
        let e = &g.stack.stats().events;
        vec![
            ("rss_misdirected", e.rss_misdirected),
            ("frames_handed_off", e.frames_handed_off),
            ("frames_handed_in", e.frames_handed_in),
            ("neighbor_broadcasts", e.neighbor_broadcasts),
        ]
    }
}

/// A listener configuration with every value given (one place that knows the
/// constructor's shape).
pub fn listen_config(
    addr: SocketAddr,
    backlog: usize,
    syn_backlog: usize,
    syn_timeout_ns: u64,
    syn_cookies: crate::SynCookies,
    tcp: TcpConfig,
) -> ListenConfig {
    ListenConfig::new(addr, backlog, syn_backlog, syn_timeout_ns, syn_cookies, tcp)
}

/// Where a runtime's stacks take their MAC address from.
#[derive(Clone, Copy, Debug)]
enum MacFrom {
    Config,
    Port,
}

/// The user-stack runtime: a port opened from its spec with one queue pair per
/// core, one [`Stack`](stack::Stack) per core on it.
pub struct UserRuntime {
    spec: String,
    cfg: StackConfig,
    mac: MacFrom,
    cores: Vec<usize>,
    mbufs: usize,
    queue_size: u16,
    rss_key: Option<Vec<u8>>,
}

impl UserRuntime {
    pub(crate) fn new(spec: &str, cfg: StackConfig) -> Self {
        UserRuntime {
            spec: spec.to_string(),
            cfg,
            mac: MacFrom::Config,
            cores: Vec::new(),
            mbufs: 0,
            queue_size: 0,
            rss_key: None,
        }
    }

    /// The Toeplitz key the port spreads flows over the cores by (at least
    /// 40 bytes, e.g. [`pmd::rss::MICROSOFT_KEY`] or the symmetric
    /// [`pmd::rss::SYMMETRIC_KEY`]); needed with more than one core, and
    /// taken on one (the port then hashes, the stack is core-aware). A port
    /// with RSS gets it with a round-robin table over the cores and steers
    /// exactly; a port without (TAP queues, AF_PACKET fanout) spreads by its
    /// own hash and the stacks hand foreign frames to their owner (see
    /// [`stack::cores`]).
    pub fn rss_key(mut self, key: &[u8]) -> Self {
        self.rss_key = Some(key.to_vec());
        self
    }

    /// Use the port's own MAC address instead of the configuration's.
    pub fn mac_from_port(mut self) -> Self {
        self.mac = MacFrom::Port;
        self
    }

    /// The cores (one stack and queue pair each).
    pub fn cores(mut self, cores: &[usize]) -> Self {
        self.cores = cores.to_vec();
        self
    }

    /// Packet buffers in the pool (shared by the cores, each with its cache).
    pub fn mbufs(mut self, n: usize) -> Self {
        self.mbufs = n;
        self
    }

    /// Descriptors per port queue.
    pub fn queue_size(mut self, n: u16) -> Self {
        self.queue_size = n;
        self
    }

    /// Checks every value before anything is opened; the error names it.
    pub fn check(self) -> Result<Self, FlowError> {
        check_cores(&self.cores)?;
        if self.mbufs == 0 {
            return Err(FlowError::invalid("mbufs: the pool needs buffers"));
        }
        if self.queue_size == 0 {
            return Err(FlowError::invalid("queue_size: must be at least 1"));
        }
        match &self.rss_key {
            None if self.cores.len() > 1 => {
                return Err(FlowError::invalid(
                    "rss_key: more than one core needs the RSS key the port spreads flows by \
                     (e.g. pmd::rss::MICROSOFT_KEY)",
                ))
            }
            Some(k) if k.len() < pmd::rss::KEY_LEN => {
                return Err(FlowError::invalid(format!(
                    "rss_key: {} bytes; the Toeplitz hash needs at least {}",
                    k.len(),
                    pmd::rss::KEY_LEN
                )))
            }
            _ => {}
        }
        let spec = pmd::Spec::parse(&self.spec).map_err(|e| FlowError::invalid(e.to_string()))?;
        let known: Vec<&str> = pmd::registry::drivers().iter().map(|d| d.scheme).collect();
        if !known.contains(&spec.scheme.as_str()) {
            return Err(FlowError::invalid(format!(
                "unknown port type '{}' in spec '{}'; valid types: {}",
                spec.scheme,
                self.spec,
                known.join(", ")
            )));
        }
        self.cfg.validate().map_err(|e| FlowError::invalid(e.to_string()))?;
        Ok(self)
    }

    /// Opens the port and runs `app` on every core until each core's future
    /// completes; then stops the stacks and closes the port.
    pub fn run<F, Fut>(self, app: F) -> Result<Vec<Fut::Output>, FlowError>
    where
        F: Fn(Core<UserNet>) -> Fut + Sync,
        Fut: Future + 'static,
        Fut::Output: Send,
    {
        let me = self.check()?;
        let n = me.cores.len() as u16;
        let pool = Mempool::new(&MempoolConfig::new(format!("flow:{}", me.spec), me.mbufs, 2048, 128, 256))
            .map_err(|e| FlowError::invalid(e.to_string()))?;
        let usage = |e: pmd::PmdError| {
            if e.is_usage() {
                FlowError::invalid(e.to_string())
            } else {
                FlowError::Io(std::io::Error::other(e.to_string()))
            }
        };
        let mut port = pmd::open(&me.spec).map_err(usage)?;
        let mut pc = PortConfig::new(n, n, me.queue_size, me.queue_size, pool.clone());
        pc.tx_offloads = me.cfg.tx_offloads;
        // With a key, RSS and core-aware stacks even on one core (what a
        // run on more will pay, measured by bench `scale`).
        let steering = match &me.rss_key {
            Some(key) => Some(steering_for(key, n, &port.info(), &mut pc)?),
            None => None,
        };
        port.configure(&pc).map_err(usage)?;
        port.start().map_err(usage)?;
        let mut cfg = me.cfg.clone();
        if let MacFrom::Port = me.mac {
            cfg.mac = port.info().mac;
        }
        let mut queues = Vec::new();
        for q in 0..n {
            let rx = port.take_rx_queue(q).map_err(usage)?;
            let tx = port.take_tx_queue(q).map_err(usage)?;
            queues.push(Mutex::new(Some((rx, tx))));
        }
        let count = me.cores.len();
        let links: Vec<_> = stack::CoreLink::mesh(n).into_iter().map(|l| Mutex::new(Some(l))).collect();
        let out = on_cores(&me.cores, |index, cpu| {
            let (rx, tx) =
                queues[index].lock().unwrap_or_else(|e| e.into_inner()).take().expect("one queue pair per core");
            let clock: Arc<dyn Clock> = Arc::new(pmd::MonotonicClock);
            let mut stack = stack::Driver::new(cfg.clone(), rx, tx, pool.clone(), clock.clone())?;
            if let Some((rss, delivery)) = &steering {
                let s = stack::Steering::new(index as u16, n, rss, *delivery)
                    .map_err(|e| FlowError::invalid(e.to_string()))?;
                let link = links[index].lock().unwrap_or_else(|e| e.into_inner()).take().expect("one link per core");
                stack.set_cores(s, link);
            }
            let mut r = UserReactor::new(clock);
            let net = r.add(stack);
            let mut ex = Executor::new(r);
            ex.block_on(app(Core { index, count, cpu, net }))
        });
        drop(port);
        out
    }
}

/// The RSS of a port shared by `n` cores: with the port's own RSS (set in
/// `pc`) the port steers exactly; without, the stacks dispatch in software
/// by the same hash (see [`stack::cores`]).
fn steering_for(
    key: &[u8],
    n: u16,
    info: &pmd::PortInfo,
    pc: &mut PortConfig,
) -> Result<(pmd::RssConfig, stack::Delivery), FlowError> {
    match &info.rss {
        Some(capa) => {
            if key.len() != capa.key_len {
                return Err(FlowError::invalid(format!(
                    "rss_key: {} bytes, but {} ports take {}",
                    key.len(),
                    info.driver,
                    capa.key_len
                )));
            }
            let rss = pmd::RssConfig {
                key: key.to_vec(),
                hash_types: capa.hash_types,
                reta: pmd::rss::spread_reta(n, capa.reta_size),
            };
            pc.rss = Some(rss.clone());
            Ok((rss, stack::Delivery::Exact))
        }
        None => Ok((pmd::RssConfig::spread(key, n), stack::Delivery::Dispatch)),
    }
}
