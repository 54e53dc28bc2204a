//! TCP sockets of a [`Stack`]: the socket layer between the wire and the
//! sans-IO [`Connection`] and [`Listener`] state machines.
//!
//! ```text
//! input:  IPv4/IPv6 -> TcpRepr::parse (checksum: NIC verdict or software)
//!         -> connection table (FlowId -> slot)  -> Connection::handle_segment
//!         -> listener (addr, port) or (*, port) -> Listener::handle_segment
//!         -> neither: RST (RFC 9293 3.10.7.1), counted
//! output: Stack::flush -> every *dirty* listener and connection is asked
//!         poll_transmit into a fresh buffer (payload written after a full
//!         headroom, then TCP, IP and Ethernet headers prepended in place)
//! timers: one wheel timer per connection / listener, re-armed only when the
//!         state machine's deadline moves earlier (a later deadline lets the
//!         armed timer fire early, which is a no-op that re-arms)
//! ```
//!
//! Design decisions:
//! * **Handles, not references**: [`TcpHandle`] and [`TcpListenerHandle`] are
//!   slab indices with a generation, so a stale handle is an error
//!   ([`TcpSocketError::InvalidHandle`]), never another connection. Each has a
//!   [`token`](TcpHandle::token) an executor can key its wakers on;
//!   [`Stack::tcp_take_ready`] returns the tokens whose readiness may have changed
//!   (edge hints: the task retries its operation).
//! * **Work is proportional to what happened**: only connections that received
//!   a segment, were written to, or whose timer fired are visited by the output
//!   pass (a *dirty* list); nothing scans all connections per poll. ACKs for a
//!   whole receive burst coalesce, since output runs once per poll.
//! * **The accept queue lives here**: a listener hands an established
//!   connection to the socket layer at once ([`Listener::hand_off`]), so data
//!   and FINs that arrive before the application accepts reach it; it keeps
//!   counting against the listener's backlog until accepted.
//! * **Explicit limits**: `StackConfig::tcp_max_connections` bounds the table
//!   (active opens fail with [`StackError::ConnectionLimit`], handshakes beyond
//!   it are reset and counted); each listener's backlogs bound its queues.
//! * **Copies**: the byte-stream API ([`Stack::tcp_send`], [`Stack::tcp_recv`])
//!   copies between the application's slices and the connection's buffers;
//!   segment payloads are written straight into the transmit buffer. Received
//!   payloads stay in the mbufs they arrived in until `tcp_recv` copies them
//!   out (zero-copy receive, [`crate::tcp::recv`]); the stack's connections hold
//!   at most `StackConfig::tcp_rx_mbufs` of them, beyond which payloads are
//!   copied (`tcp_rx_mbuf_limit`), so unread data cannot exhaust the pool.
//! * **Unreachable** is reported when the next hop of a connection in SYN-SENT
//!   never answers address resolution; a RST to our SYN is `Refused`; running
//!   out of SYN retransmissions is `TimedOut`.
//! * Closing with unread data aborts with RST (RFC 2525 2.17, as Linux does);
//!   otherwise [`Stack::tcp_close`] sends FIN and the connection finishes in the
//!   background, its slot reclaimed when it reaches CLOSED.

use std::fmt;

use super::*;
use crate::tcp::listener::{isn, reset_for};
use crate::tcp::{Connection, FlowId, ListenConfig, Listener, ListenerStats, Ports, State, TcpConfig, TcpError};
use crate::timer::TimerId;
use crate::wire::{TcpPacket, TcpRepr};

/// Largest TCP header (with options).
const TCP_MAX: usize = wire::tcp::MAX_HEADER_LEN;
/// Readiness tokens of listeners have this bit set.
const LISTENER_TOKEN: u64 = 1 << 63;
/// Transmit buffers taken from the pool at once.
const STASH: usize = 32;

/// A TCP connection of one [`Stack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpHandle {
    index: u32,
    generation: u32,
}

impl TcpHandle {
    /// The readiness token of this connection (see [`Stack::tcp_take_ready`]).
    pub fn token(&self) -> u64 {
        token(self.index, self.generation)
    }
}

/// A listening socket of one [`Stack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpListenerHandle {
    index: u32,
    generation: u32,
}

impl TcpListenerHandle {
    /// The readiness token of this listener (see [`Stack::tcp_take_ready`]).
    pub fn token(&self) -> u64 {
        LISTENER_TOKEN | token(self.index, self.generation)
    }
}

fn token(index: u32, generation: u32) -> u64 {
    (u64::from(generation & 0x7fff_ffff) << 32) | u64::from(index)
}

/// Errors of the TCP socket calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpSocketError {
    /// Nothing to read, no room to write, or nothing to accept yet.
    WouldBlock,
    /// The handle is not (or no longer) valid.
    InvalidHandle,
    /// The connection is closed for this operation.
    Closed,
    /// The peer reset the connection.
    Reset,
    /// The peer refused the connection (RST to our SYN).
    Refused,
    /// Retransmissions (or keepalive probes) ran out.
    TimedOut,
    /// The next hop did not answer address resolution.
    Unreachable,
}

impl fmt::Display for TcpSocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TcpSocketError::WouldBlock => "operation would block",
            TcpSocketError::InvalidHandle => "invalid TCP handle",
            TcpSocketError::Closed => "connection closed",
            TcpSocketError::Reset => "connection reset by peer",
            TcpSocketError::Refused => "connection refused",
            TcpSocketError::TimedOut => "connection timed out",
            TcpSocketError::Unreachable => "host unreachable",
        })
    }
}

impl std::error::Error for TcpSocketError {}

impl From<TcpError> for TcpSocketError {
    fn from(e: TcpError) -> Self {
        match e {
            TcpError::Closed => TcpSocketError::Closed,
            TcpError::Reset => TcpSocketError::Reset,
            TcpError::Refused => TcpSocketError::Refused,
            TcpError::TimedOut => TcpSocketError::TimedOut,
        }
    }
}

/// Who holds a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// Established, waiting in listener `index`'s accept queue.
    Queued(u32),
    /// The application holds its handle.
    App,
    /// Closed by the application; finishing in the background.
    Orphan,
}

struct ConnEntry {
    conn: Connection,
    flow: FlowId,
    next_hop: IpAddr,
    owner: Owner,
    /// In `TcpTable::flows` (removed once CLOSED so the 4-tuple can be reused).
    in_flows: bool,
    timer: Option<(TimerId, u64)>,
    in_ready: bool,
    in_dirty: bool,
    /// A failure the state machine does not know about (unreachable).
    failure: Option<TcpSocketError>,
}

struct ConnSlot {
    generation: u32,
    entry: Option<ConnEntry>,
}

struct ListenEntry {
    listener: Listener,
    key: (Option<IpAddr>, u16),
    queue: VecDeque<u32>,
    timer: Option<(TimerId, u64)>,
    in_ready: bool,
    in_dirty: bool,
}

struct ListenSlot {
    generation: u32,
    entry: Option<ListenEntry>,
}

/// The TCP sockets of one stack.
pub(super) struct TcpTable {
    secret: [u8; 16],
    conns: Vec<ConnSlot>,
    free: Vec<u32>,
    live: usize,
    flows: HashMap<FlowId, u32, FlowHash>,
    listeners: Vec<ListenSlot>,
    listen_addrs: HashMap<(Option<IpAddr>, u16), u32>,
    ready: Vec<u64>,
    dirty: Vec<u32>,
    listeners_dirty: Vec<u32>,
    /// A buffer `poll_transmit` did not use, kept for the next one.
    spare: Option<Mbuf>,
    /// Buffers taken from the pool in one bulk call (at most [`STASH`]): one
    /// pool operation per burst of segments instead of one per segment.
    stash: Vec<Mbuf>,
    /// Connections whose output found the pool empty, for the next pass.
    deferred: Vec<u32>,
    /// Received mbufs the connections hold (bounded by `tcp_rx_mbufs`).
    rx_mbufs: usize,
    next_ephemeral: u16,
    /// The configuration of the last active open, shared with the next one
    /// that asks for the same values (connections hold it by reference).
    connect_cfg: Option<Arc<TcpConfig>>,
}

impl TcpTable {
    /// A table for at most `max` connections. The slab and the flow index
    /// are reserved for `max` up front: the address space is taken once, the
    /// pages only as connections use them, and the data path never stops to
    /// rehash or move a large table (a latency spike at every doubling).
    pub(super) fn new(secret: [u8; 16], max: usize) -> Self {
        TcpTable {
            secret,
            conns: Vec::with_capacity(max),
            free: Vec::new(),
            live: 0,
            flows: HashMap::with_capacity_and_hasher(max, FlowHash::new(&secret)),
            listeners: Vec::new(),
            listen_addrs: HashMap::new(),
            ready: Vec::new(),
            dirty: Vec::new(),
            listeners_dirty: Vec::new(),
            spare: None,
            stash: Vec::new(),
            deferred: Vec::new(),
            rx_mbufs: 0,
            next_ephemeral: 49152,
            connect_cfg: None,
        }
    }

    pub(super) fn set_secret(&mut self, secret: [u8; 16]) {
        self.secret = secret;
    }

    fn entry(&self, i: u32) -> Option<&ConnEntry> {
        self.conns.get(i as usize).and_then(|s| s.entry.as_ref())
    }

    fn entry_mut(&mut self, i: u32) -> Option<&mut ConnEntry> {
        self.conns.get_mut(i as usize).and_then(|s| s.entry.as_mut())
    }

    fn app(&self, h: TcpHandle) -> Result<&ConnEntry, TcpSocketError> {
        match self.conns.get(h.index as usize) {
            Some(ConnSlot { generation, entry: Some(e) }) if *generation == h.generation && e.owner == Owner::App => {
                Ok(e)
            }
            _ => Err(TcpSocketError::InvalidHandle),
        }
    }

    fn app_mut(&mut self, h: TcpHandle) -> Result<&mut ConnEntry, TcpSocketError> {
        match self.conns.get_mut(h.index as usize) {
            Some(ConnSlot { generation, entry: Some(e) }) if *generation == h.generation && e.owner == Owner::App => {
                Ok(e)
            }
            _ => Err(TcpSocketError::InvalidHandle),
        }
    }

    fn listener_mut(&mut self, h: TcpListenerHandle) -> Result<&mut ListenEntry, TcpSocketError> {
        match self.listeners.get_mut(h.index as usize) {
            Some(ListenSlot { generation, entry: Some(e) }) if *generation == h.generation => Ok(e),
            _ => Err(TcpSocketError::InvalidHandle),
        }
    }

    fn insert(&mut self, e: ConnEntry) -> u32 {
        let flow = e.flow;
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(ConnSlot { generation: 0, entry: None });
                (self.conns.len() - 1) as u32
            }
        };
        self.conns[i as usize].entry = Some(e);
        self.flows.insert(flow, i);
        self.live += 1;
        self.mark_dirty(i);
        i
    }

    fn mark_dirty(&mut self, i: u32) {
        if let Some(e) = self.entry_mut(i) {
            if !e.in_dirty {
                e.in_dirty = true;
                self.dirty.push(i);
            }
        }
    }

    fn mark_ready(&mut self, i: u32) {
        let generation = self.conns[i as usize].generation;
        let Some(e) = self.entry_mut(i) else { return };
        match e.owner {
            Owner::App if !e.in_ready => {
                e.in_ready = true;
                self.ready.push(token(i, generation));
            }
            _ => {}
        }
    }

    fn mark_listener(&mut self, li: u32, ready: bool) {
        let generation = self.listeners[li as usize].generation;
        let Some(l) = self.listeners[li as usize].entry.as_mut() else { return };
        if ready && !l.in_ready {
            l.in_ready = true;
            self.ready.push(LISTENER_TOKEN | token(li, generation));
        }
        if !l.in_dirty {
            l.in_dirty = true;
            self.listeners_dirty.push(li);
        }
    }

    /// Frees a slot; returns its timer to cancel.
    fn remove(&mut self, i: u32) -> Option<TimerId> {
        let slot = &mut self.conns[i as usize];
        let e = slot.entry.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        if e.in_flows {
            self.flows.remove(&e.flow);
        }
        self.free.push(i);
        self.live -= 1;
        self.rx_mbufs -= e.conn.rx_mbufs();
        e.timer.map(|(id, _)| id)
    }

    fn listener_for(&self, local: SocketAddr) -> Option<u32> {
        self.listen_addrs
            .get(&(Some(local.ip()), local.port()))
            .or_else(|| self.listen_addrs.get(&(None, local.port())))
            .copied()
    }
}

/// The flow table's hash: a keyed multiply-fold over the words `FlowId`
/// writes (as foldhash and ahash's fallback do), a few multiplications per
/// lookup where SipHash-1-3 took a couple of hundred instructions, on every
/// segment received. Keyed from the stack's secret, so flows cannot be aimed
/// at one probe sequence without knowing it.
#[derive(Clone)]
struct FlowHash {
    k0: u64,
    k1: u64,
}

impl FlowHash {
    fn new(secret: &[u8; 16]) -> Self {
        let k0 = u64::from_le_bytes(secret[..8].try_into().expect("8 bytes"));
        let k1 = u64::from_le_bytes(secret[8..].try_into().expect("8 bytes"));
        FlowHash { k0, k1: k1 | 1 }
    }
}

impl std::hash::BuildHasher for FlowHash {
    type Hasher = FlowHasher;
    fn build_hasher(&self) -> FlowHasher {
        FlowHasher { acc: self.k0, k: self.k1 }
    }
}

struct FlowHasher {
    acc: u64,
    k: u64,
}

/// The high and low halves of a 64 × 64-bit product, folded.
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl std::hash::Hasher for FlowHasher {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    fn write_u64(&mut self, x: u64) {
        self.acc = fold_mul(self.acc ^ x, self.k ^ 0x9e37_79b9_7f4a_7c15);
    }
    fn write_u128(&mut self, x: u128) {
        self.write_u64(x as u64);
        self.write_u64((x >> 64) as u64);
    }
    fn finish(&self) -> u64 {
        fold_mul(self.acc, self.k).rotate_left(23)
    }
}

/// Arms `timer` for `want` when that is earlier than what is armed. A later
/// deadline keeps the armed timer: it fires early, the state machine does
/// nothing, and the output pass re-arms (cheaper than moving a timer on every
/// ACK that pushes the RTO back).
fn rearm(
    wheel: &mut TimerWheel<StackTimer>,
    timer: &mut Option<(TimerId, u64)>,
    want: Option<u64>,
    payload: StackTimer,
) {
    let Some(w) = want else { return };
    if timer.is_some_and(|(_, at)| at <= w) {
        return;
    }
    if let Some((id, _)) = timer.take() {
        wheel.cancel(id);
    }
    *timer = Some((wheel.insert(w, payload), w));
}

/// Drains a connection's events; whether any happened.
fn drain_events(c: &mut Connection) -> bool {
    let any = c.poll_event().is_some();
    while c.poll_event().is_some() {}
    any
}

impl<R: RxQueue, T: TxQueue> Stack<R, T> {
    /// Sets the 128-bit secret that keys TCP initial sequence numbers and SYN
    /// cookies (RFC 6528). [`Stack::new`] draws one from the OS; simulations set
    /// their own so a run replays exactly. Takes effect for listeners created
    /// afterwards and for every later active open.
    pub fn set_tcp_secret(&mut self, secret: [u8; 16]) {
        self.tcp.set_secret(secret);
    }

    /// The largest MSS the MTU carries for a family (RFC 9293 3.7.1: MTU
    /// minus the fixed IP and TCP headers).
    fn mss_limit(&self, v6: bool) -> u16 {
        let ip = if v6 { V6 } else { V4 };
        self.cfg.mtu.saturating_sub((ip + wire::tcp::HEADER_LEN) as u16)
    }

    fn is_our_ip(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.is_our_v4(&a),
            IpAddr::V6(a) => self.is_our_v6(&a),
        }
    }

    /// Listens: `cfg.addr` is one of the interface's addresses, or unspecified
    /// (`0.0.0.0` / `[::]`) for all of them, of both families.
    pub fn tcp_listen(&mut self, cfg: ListenConfig) -> Result<TcpListenerHandle, StackError> {
        cfg.validate().map_err(|e| StackError::config(format!("listen.{}", e.field), e.reason))?;
        let ip = cfg.addr.ip();
        if !ip.is_unspecified() && !self.is_our_ip(ip) {
            return Err(StackError::AddrNotAvailable(cfg.addr));
        }
        let key = (if ip.is_unspecified() { None } else { Some(ip) }, cfg.addr.port());
        let clash =
            self.tcp.listen_addrs.keys().any(|(a, p)| *p == key.1 && (a.is_none() || key.0.is_none() || *a == key.0));
        if clash {
            return Err(StackError::AddrInUse(cfg.addr));
        }
        let mut listener = Listener::new(cfg, self.tcp.secret)
            .map_err(|e| StackError::config(format!("listen.{}", e.field), e.reason))?;
        listener.set_mss_limits(self.mss_limit(false), self.mss_limit(true));
        let index = match self.tcp.listeners.iter().position(|s| s.entry.is_none()) {
            Some(i) => i,
            None => {
                self.tcp.listeners.push(ListenSlot { generation: 0, entry: None });
                self.tcp.listeners.len() - 1
            }
        };
        let slot = &mut self.tcp.listeners[index];
        slot.entry =
            Some(ListenEntry { listener, key, queue: VecDeque::new(), timer: None, in_ready: false, in_dirty: false });
        self.tcp.listen_addrs.insert(key, index as u32);
        Ok(TcpListenerHandle { index: index as u32, generation: slot.generation })
    }

    /// Takes the oldest established connection from the accept queue.
    pub fn tcp_accept(&mut self, l: TcpListenerHandle) -> Result<TcpHandle, TcpSocketError> {
        let e = self.tcp.listener_mut(l)?;
        let i = e.queue.pop_front().ok_or(TcpSocketError::WouldBlock)?;
        e.listener.accepted();
        self.tcp_pump_listener(l.index);
        let generation = self.tcp.conns[i as usize].generation;
        let entry = self.tcp.entry_mut(i).expect("queued connections stay in the table");
        entry.owner = Owner::App;
        self.stats.events.tcp_accepted += 1;
        // Whatever arrived before the accept is there to read.
        self.tcp.mark_ready(i);
        Ok(TcpHandle { index: i, generation })
    }

    /// Counters of a listener.
    pub fn tcp_listener_stats(&mut self, l: TcpListenerHandle) -> Result<ListenerStats, TcpSocketError> {
        Ok(self.tcp.listener_mut(l)?.listener.stats())
    }

    /// Stops listening. Connections not yet accepted are reset; half-open ones
    /// are forgotten.
    pub fn tcp_unlisten(&mut self, l: TcpListenerHandle) {
        let Ok(e) = self.tcp.listener_mut(l) else { return };
        let key = e.key;
        let queued: Vec<u32> = e.queue.drain(..).collect();
        let timer = e.timer.take();
        let slot = &mut self.tcp.listeners[l.index as usize];
        slot.entry = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.tcp.listen_addrs.remove(&key);
        if let Some((id, _)) = timer {
            self.timers.cancel(id);
        }
        for i in queued {
            if let Some(c) = self.tcp.entry_mut(i) {
                c.conn.abort();
                c.owner = Owner::Orphan;
            }
            self.tcp.mark_dirty(i);
        }
    }

    /// Active open to `remote` from the routed source address and an ephemeral
    /// port. `cfg.mss` is clamped to what the MTU carries. Routing problems fail at once; refusal, timeout and unreachability
    /// are reported later by [`tcp_connected`](Self::tcp_connected) and every
    /// other call on the handle.
    pub fn tcp_connect(&mut self, remote: SocketAddr, mut cfg: TcpConfig) -> Result<TcpHandle, StackError> {
        cfg.validate().map_err(|e| StackError::config(format!("tcp.{}", e.field), e.reason))?;
        cfg.mss = cfg.mss.min(self.mss_limit(remote.is_ipv6()));
        let rip = remote.ip();
        if remote.port() == 0 || rip.is_unspecified() || rip.is_multicast() || self.is_broadcast_ip(rip) {
            return Err(StackError::config("remote", format!("{remote} is not a unicast address and port")));
        }
        if self.tcp.live >= self.cfg.tcp_max_connections {
            self.stats.drops.tcp_connection_limit += 1;
            return Err(StackError::ConnectionLimit(self.cfg.tcp_max_connections));
        }
        let (src, next_hop) = self.route(rip).inspect_err(|_| self.stats.drops.no_route += 1)?;
        let mut flow = None;
        for _ in 0..16384 {
            let p = self.tcp.next_ephemeral;
            self.tcp.next_ephemeral = if p == 65535 { 49152 } else { p + 1 };
            let f = FlowId { local: SocketAddr::new(src, p), remote };
            if !self.tcp.flows.contains_key(&f) && self.tcp.listener_for(f.local).is_none() {
                flow = Some(f);
                break;
            }
        }
        let flow = flow.ok_or(StackError::AddrInUse(SocketAddr::new(src, 0)))?;
        let iss = isn(&self.tcp.secret, &flow, self.now);
        let ports = Ports { local: flow.local.port(), remote: remote.port() };
        let cfg = match &self.tcp.connect_cfg {
            Some(c) if **c == cfg => c.clone(),
            _ => {
                let c = Arc::new(cfg);
                self.tcp.connect_cfg = Some(c.clone());
                c
            }
        };
        let conn = Connection::connect(cfg, ports, iss, self.now)
            .map_err(|e| StackError::config(format!("tcp.{}", e.field), e.reason))?;
        let i = self.tcp.insert(ConnEntry {
            conn,
            flow,
            next_hop,
            owner: Owner::App,
            in_flows: true,
            timer: None,
            in_ready: false,
            in_dirty: false,
            failure: None,
        });
        self.stats.events.tcp_connects += 1;
        Ok(TcpHandle { index: i, generation: self.tcp.conns[i as usize].generation })
    }

    fn is_broadcast_ip(&self, ip: IpAddr) -> bool {
        matches!(ip, IpAddr::V4(a) if self.is_broadcast_v4(&a))
    }

    /// `Ok(true)` once the handshake completed (whatever happened since),
    /// `Ok(false)` while it is in progress, or why it failed.
    pub fn tcp_connected(&self, h: TcpHandle) -> Result<bool, TcpSocketError> {
        let e = self.tcp.app(h)?;
        if let Some(f) = e.failure {
            return Err(f);
        }
        match e.conn.state() {
            State::SynSent | State::SynReceived => Ok(false),
            State::Closed => match e.conn.error() {
                Some(err) => Err(err.into()),
                None => Ok(true),
            },
            _ => Ok(true),
        }
    }

    /// Queues bytes to send; returns how many fit. `Err(WouldBlock)` when the
    /// send buffer is full. Data written during the handshake waits for it.
    pub fn tcp_send(&mut self, h: TcpHandle, data: &[u8]) -> Result<usize, TcpSocketError> {
        let e = self.tcp.app_mut(h)?;
        if let Some(f) = e.failure {
            return Err(f);
        }
        let n = e.conn.send(data)?;
        if n == 0 && !data.is_empty() {
            return Err(TcpSocketError::WouldBlock);
        }
        self.tcp.mark_dirty(h.index);
        Ok(n)
    }

    /// Reads received bytes. `Ok(0)` (with a non-empty `buf`) is the end of the
    /// stream; `Err(WouldBlock)` means nothing has arrived yet.
    pub fn tcp_recv(&mut self, h: TcpHandle, buf: &mut [u8]) -> Result<usize, TcpSocketError> {
        let e = self.tcp.app_mut(h)?;
        if let Some(f) = e.failure {
            return Err(f);
        }
        let held = e.conn.rx_mbufs();
        let n = e.conn.recv(buf)?;
        if n > 0 {
            let freed = held - e.conn.rx_mbufs();
            self.tcp.rx_mbufs -= freed;
            // Reading may reopen a closed window: let the output pass see.
            self.tcp.mark_dirty(h.index);
            return Ok(n);
        }
        if buf.is_empty() || e.conn.is_recv_finished() {
            return Ok(0);
        }
        match e.conn.state() {
            State::Closed => Err(e.conn.error().map_or(TcpSocketError::Closed, Into::into)),
            _ => Err(TcpSocketError::WouldBlock),
        }
    }

    /// Bytes waiting to be read.
    pub fn tcp_recv_available(&self, h: TcpHandle) -> Result<usize, TcpSocketError> {
        Ok(self.tcp.app(h)?.conn.recv_available())
    }

    /// Bytes that [`tcp_send`](Self::tcp_send) would accept now.
    pub fn tcp_send_capacity(&self, h: TcpHandle) -> Result<usize, TcpSocketError> {
        Ok(self.tcp.app(h)?.conn.send_capacity())
    }

    /// Closes our sending side: FIN after the queued data (half-close).
    pub fn tcp_shutdown(&mut self, h: TcpHandle) -> Result<(), TcpSocketError> {
        let e = self.tcp.app_mut(h)?;
        if let Some(f) = e.failure {
            return Err(f);
        }
        e.conn.shutdown();
        self.tcp.mark_dirty(h.index);
        Ok(())
    }

    /// Releases the handle. With unread data the connection is reset (RFC 2525
    /// 2.17); otherwise a FIN follows the queued data and the connection
    /// finishes closing in the background.
    pub fn tcp_close(&mut self, h: TcpHandle) {
        let Ok(e) = self.tcp.app_mut(h) else { return };
        if e.conn.recv_available() > 0 {
            e.conn.abort();
        } else {
            e.conn.shutdown();
        }
        e.owner = Owner::Orphan;
        self.tcp.mark_dirty(h.index);
    }

    /// Releases the handle and resets the connection (RST).
    pub fn tcp_abort(&mut self, h: TcpHandle) {
        let Ok(e) = self.tcp.app_mut(h) else { return };
        e.conn.abort();
        e.owner = Owner::Orphan;
        self.tcp.mark_dirty(h.index);
    }

    /// The RFC 9293 state.
    pub fn tcp_state(&self, h: TcpHandle) -> Result<State, TcpSocketError> {
        Ok(self.tcp.app(h)?.conn.state())
    }

    /// The peer's address and port.
    pub fn tcp_peer_addr(&self, h: TcpHandle) -> Result<SocketAddr, TcpSocketError> {
        Ok(self.tcp.app(h)?.flow.remote)
    }

    /// Our address and port.
    pub fn tcp_local_addr(&self, h: TcpHandle) -> Result<SocketAddr, TcpSocketError> {
        Ok(self.tcp.app(h)?.flow.local)
    }

    /// The connection state machine, for inspection (congestion window, RTT).
    pub fn tcp_connection(&self, h: TcpHandle) -> Result<&Connection, TcpSocketError> {
        Ok(&self.tcp.app(h)?.conn)
    }

    /// Connections in the table (including those closing in the background
    /// and those waiting to be accepted).
    pub fn tcp_connections(&self) -> usize {
        self.tcp.live
    }

    /// Received mbufs the connections hold for zero-copy receive (at most
    /// `StackConfig::tcp_rx_mbufs`).
    pub fn tcp_rx_mbufs_held(&self) -> usize {
        self.tcp.rx_mbufs
    }

    /// Moves to `out` the tokens of listeners and connections whose readiness
    /// may have changed since the last call: new connections to accept, data
    /// or end of stream to read, send space, the handshake finishing, errors.
    pub fn tcp_take_ready(&mut self, out: &mut Vec<u64>) {
        let mut ready = std::mem::take(&mut self.tcp.ready);
        for &t in &ready {
            let index = (t & 0xffff_ffff) as u32;
            if t & LISTENER_TOKEN != 0 {
                if let Some(Some(l)) = self.tcp.listeners.get_mut(index as usize).map(|s| s.entry.as_mut()) {
                    l.in_ready = false;
                }
            } else if let Some(e) = self.tcp.entry_mut(index) {
                e.in_ready = false;
            }
        }
        out.append(&mut ready);
        self.tcp.ready = ready;
    }

    /// A lower bound on when the next stack timer (TCP or other) is due, so an
    /// idle loop or a simulation can jump its clock there.
    pub fn next_timer_ns(&self) -> Option<u64> {
        self.timers.next_deadline_ns()
    }

    // ------------------------------------------------------------ input

    pub(super) fn tcp_input(&mut self, m: Mbuf, ip: IpPair, l4: usize, caps: ChecksumCaps) {
        let parsed = TcpRepr::parse(&TcpPacket::new_unchecked(&m.data()[l4..]), &ip, &caps);
        let repr = match parsed {
            Ok(r) => r,
            Err(err) => return self.stats.malformed(err),
        };
        self.stats.events.tcp_segments_received += 1;
        let (src, dst) = match ip {
            IpPair::V4 { src, dst } => (IpAddr::V4(src), IpAddr::V4(dst)),
            IpPair::V6 { src, dst } => (IpAddr::V6(src), IpAddr::V6(dst)),
        };
        let flow = FlowId { local: SocketAddr::new(dst, repr.dst_port), remote: SocketAddr::new(src, repr.src_port) };
        let end = m.len();
        let start = end - repr.payload_len;
        let now = self.now;
        if let Some(&i) = self.tcp.flows.get(&flow) {
            let keep = repr.payload_len > 0 && self.tcp.rx_mbufs < self.cfg.tcp_rx_mbufs;
            if repr.payload_len > 0 && !keep {
                self.stats.events.tcp_rx_mbuf_limit += 1;
            }
            let e = self.tcp.entry_mut(i).expect("flows point at live entries");
            let held = e.conn.rx_mbufs();
            if keep {
                // The payload stays in this buffer until read (zero copy).
                let mut m = m;
                let _ = m.adj(start);
                e.conn.handle_segment_mbuf(now, &repr, m);
            } else {
                e.conn.handle_segment(now, &repr, &m.data()[start..end]);
            }
            let now_held = e.conn.rx_mbufs();
            self.tcp.rx_mbufs = self.tcp.rx_mbufs + now_held - held;
            let e = self.tcp.entry_mut(i).expect("flows point at live entries");
            if drain_events(&mut e.conn) {
                self.tcp.mark_ready(i);
            }
            self.tcp.mark_dirty(i);
            return;
        }
        if let Some(li) = self.tcp.listener_for(flow.local) {
            let l = self.tcp.listeners[li as usize].entry.as_mut().expect("listen_addrs point at live listeners");
            l.listener.handle_segment(now, flow, &repr, &m.data()[start..end]);
            self.tcp.mark_listener(li, false);
            self.tcp_pump_listener(li);
            return;
        }
        self.stats.drops.tcp_no_socket += 1;
        self.tcp_reset_for(flow, &repr);
    }

    /// Moves the listener's newly established connections into the table.
    fn tcp_pump_listener(&mut self, li: u32) {
        loop {
            let Some(l) = self.tcp.listeners[li as usize].entry.as_mut() else { return };
            let Some((flow, mut conn)) = l.listener.hand_off() else { return };
            if self.tcp.live >= self.cfg.tcp_max_connections {
                self.stats.drops.tcp_connection_limit += 1;
                l.listener.accepted();
                conn.abort();
                let mut buf = [0u8; 0];
                if let Some(t) = conn.poll_transmit(self.now, &mut buf) {
                    self.tcp_send_header(&t.repr, &flow);
                }
                continue;
            }
            drain_events(&mut conn);
            let next_hop = self.route(flow.remote.ip()).map_or(flow.remote.ip(), |(_, nh)| nh);
            let i = self.tcp.insert(ConnEntry {
                conn,
                flow,
                next_hop,
                owner: Owner::Queued(li),
                in_flows: true,
                timer: None,
                in_ready: false,
                in_dirty: false,
                failure: None,
            });
            let l = self.tcp.listeners[li as usize].entry.as_mut().expect("checked above");
            l.queue.push_back(i);
            self.tcp.mark_listener(li, true);
        }
    }

    /// RFC 9293 3.10.7.1: a segment for no connection draws a reset.
    fn tcp_reset_for(&mut self, flow: FlowId, seg: &TcpRepr) {
        if let Some(r) = reset_for(&flow, seg) {
            self.stats.events.tcp_resets_sent += 1;
            self.tcp_send_header(&r, &flow);
        }
    }

    /// Sends a segment without payload for `flow`, routed.
    fn tcp_send_header(&mut self, r: &TcpRepr, flow: &FlowId) {
        let Ok((_, next_hop)) = self.route(flow.remote.ip()) else {
            self.stats.drops.no_route += 1;
            return;
        };
        let Some(m) = self.alloc() else { return };
        self.tcp_emit(m, r, flow, next_hop);
    }

    /// `m` holds the payload; prepends TCP, IP and Ethernet headers and sends.
    fn tcp_emit(&mut self, m: Mbuf, r: &TcpRepr, flow: &FlowId, next_hop: IpAddr) {
        self.tcp_emit_to(m, r, flow, next_hop, None)
    }

    /// [`tcp_emit`](Self::tcp_emit) with the next hop's MAC when the caller
    /// already resolved it (one neighbour lookup per connection and pass).
    fn tcp_emit_to(&mut self, mut m: Mbuf, r: &TcpRepr, flow: &FlowId, next_hop: IpAddr, mac: Option<MacAddr>) {
        let ip = match (flow.local.ip(), flow.remote.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => IpPair::V4 { src: s, dst: d },
            (IpAddr::V6(s), IpAddr::V6(d)) => IpPair::V6 { src: s, dst: d },
            _ => return,
        };
        let hl = r.header_len();
        let seg_len = hl + r.payload_len;
        if m.prepend(hl).is_none() {
            self.stats.drops.no_buffers += 1;
            return;
        }
        r.emit(&mut TcpPacket::new_unchecked(m.data_mut()), &ip, &self.tx_caps);
        let l4 = if self.tx_caps.tcp == ChecksumMode::Offloaded { TxFlags::TCP_CKSUM } else { TxFlags::empty() };
        let ok = match ip {
            IpPair::V4 { src, dst } => m.prepend(V4).map(|h| {
                Ipv4Repr::new(src, dst, IpProtocol::Tcp, seg_len, self.cfg.ttl)
                    .emit(&mut Ipv4Packet::new_unchecked(h), &self.tx_caps)
            }),
            IpPair::V6 { src, dst } => m.prepend(V6).map(|h| {
                Ipv6Repr::new(src, dst, IpProtocol::Tcp, seg_len, self.cfg.ttl).emit(&mut Ipv6Packet::new_unchecked(h))
            }),
        };
        if ok.is_none() {
            self.stats.drops.no_buffers += 1;
            return;
        }
        self.tx_meta(&mut m, ip.is_v6(), if ip.is_v6() { V6 } else { V4 }, l4);
        self.stats.events.tcp_segments_sent += 1;
        match mac {
            Some(mac) => {
                let t = if ip.is_v6() { EtherType::Ipv6 } else { EtherType::Ipv4 };
                self.eth_and_send(m, t, mac)
            }
            None => self.output(m, next_hop),
        }
    }

    // ------------------------------------------------------------ output and timers

    /// A buffer for `poll_transmit`, reset to the pool's headroom.
    fn tcp_buffer(&mut self) -> Option<Mbuf> {
        if let Some(m) = self.tcp.spare.take() {
            return Some(m);
        }
        if self.tcp.stash.is_empty() {
            // All or nothing; with fewer left, one at a time (and counted).
            let _ = self.pool.alloc_bulk(&mut self.tcp.stash, STASH);
        }
        let mut m = match self.tcp.stash.pop() {
            Some(m) => m,
            None => self.alloc()?,
        };
        if m.headroom() < ETH + V6 + TCP_MAX {
            // A pool without room for the headers cannot carry TCP.
            self.stats.drops.no_buffers += 1;
            m.reset();
            return None;
        }
        Some(m)
    }

    /// Asks every dirty listener and connection for its segments, then re-arms
    /// their timers and reclaims finished connections.
    pub(super) fn tcp_output(&mut self) {
        let mut listeners = std::mem::take(&mut self.tcp.listeners_dirty);
        for li in listeners.drain(..) {
            self.tcp_output_listener(li);
        }
        // Listeners marked during the pass (out of buffers) wait for the next.
        listeners.append(&mut self.tcp.listeners_dirty);
        self.tcp.listeners_dirty = listeners;
        // Connections may be marked dirty again while we work (an accepted
        // connection, a reset); loop until quiet. One that found the pool
        // empty is deferred to the next pass rather than retried here.
        let mut deferred = std::mem::take(&mut self.tcp.deferred);
        while let Some(i) = self.tcp.dirty.pop() {
            if !self.tcp_output_conn(i) {
                deferred.push(i);
            }
        }
        for &i in &deferred {
            self.tcp.mark_dirty(i);
        }
        deferred.clear();
        self.tcp.deferred = deferred;
    }

    fn tcp_output_listener(&mut self, li: u32) {
        let now = self.now;
        match self.tcp.listeners[li as usize].entry.as_mut() {
            Some(l) => l.in_dirty = false,
            None => return,
        }
        loop {
            let Some(mut m) = self.tcp_buffer() else {
                // Out of buffers: try again on the next pass.
                self.tcp.mark_listener(li, false);
                break;
            };
            let cap = m.tailroom();
            let Some(l) = self.tcp.listeners[li as usize].entry.as_mut() else {
                self.tcp.spare = Some(m);
                return;
            };
            let buf = m.append(cap).expect("tailroom");
            let Some((flow, t)) = l.listener.poll_transmit(now, buf) else {
                m.trim(cap);
                self.tcp.spare = Some(m);
                break;
            };
            m.trim(cap - t.repr.payload_len);
            match self.route(flow.remote.ip()) {
                Ok((_, nh)) => self.tcp_emit(m, &t.repr, &flow, nh),
                Err(_) => self.stats.drops.no_route += 1,
            }
        }
        self.tcp_pump_listener(li);
        let slot = &mut self.tcp.listeners[li as usize];
        let Some(l) = slot.entry.as_mut() else { return };
        let want = l.listener.poll_timeout();
        rearm(&mut self.timers, &mut l.timer, want, StackTimer::TcpListener(li, slot.generation));
    }

    /// Sends what connection `i` has to send; `false` if the pool ran dry
    /// (the caller retries on the next pass).
    fn tcp_output_conn(&mut self, i: u32) -> bool {
        let now = self.now;
        match self.tcp.entry_mut(i) {
            Some(e) => e.in_dirty = false,
            None => return true,
        }
        let mut complete = true;
        // Resolved once for the pass (unicast next hops only; anything else
        // goes through `output`).
        let mut mac = None;
        loop {
            let Some(mut m) = self.tcp_buffer() else {
                complete = false;
                break;
            };
            let cap = m.tailroom();
            let e = self.tcp.entry_mut(i).expect("checked");
            let buf = m.append(cap).expect("tailroom");
            let Some(t) = e.conn.poll_transmit(now, buf) else {
                m.trim(cap);
                self.tcp.spare = Some(m);
                break;
            };
            m.trim(cap - t.repr.payload_len);
            let (flow, nh) = (e.flow, e.next_hop);
            if mac.is_none() {
                mac = self.neighbor_unicast(nh);
            }
            self.tcp_emit_to(m, &t.repr, &flow, nh, mac);
        }
        let generation = self.tcp.conns[i as usize].generation;
        let e = self.tcp.entry_mut(i).expect("checked");
        if drain_events(&mut e.conn) {
            self.tcp.mark_ready(i);
        }
        let e = self.tcp.entry_mut(i).expect("checked");
        if e.conn.state() == State::Closed {
            let (unflow, flow, owner) = (std::mem::replace(&mut e.in_flows, false), e.flow, e.owner);
            if unflow {
                self.tcp.flows.remove(&flow);
            }
            if owner == Owner::Orphan {
                if let Some(id) = self.tcp.remove(i) {
                    self.timers.cancel(id);
                }
                return true;
            }
        }
        let e = self.tcp.entry_mut(i).expect("checked");
        let want = e.conn.poll_timeout();
        rearm(&mut self.timers, &mut e.timer, want, StackTimer::TcpConn(i, generation));
        complete
    }

    pub(super) fn tcp_conn_timer(&mut self, i: u32, generation: u32) {
        if self.tcp.conns.get(i as usize).map_or(true, |s| s.generation != generation) {
            return;
        }
        let now = self.now;
        let Some(e) = self.tcp.entry_mut(i) else { return };
        e.timer = None;
        e.conn.handle_timeout(now);
        if drain_events(&mut e.conn) {
            self.tcp.mark_ready(i);
        }
        self.tcp.mark_dirty(i);
    }

    pub(super) fn tcp_listener_timer(&mut self, li: u32, generation: u32) {
        let now = self.now;
        let Some(slot) = self.tcp.listeners.get_mut(li as usize) else { return };
        if slot.generation != generation {
            return;
        }
        let Some(l) = slot.entry.as_mut() else { return };
        l.timer = None;
        l.listener.handle_timeout(now);
        self.tcp.mark_listener(li, false);
    }

    /// Address resolution of `ip` failed: connections still opening through it
    /// are unreachable.
    pub(super) fn tcp_neighbor_failed(&mut self, ip: IpAddr) {
        let opening: Vec<u32> = (0..self.tcp.conns.len() as u32)
            .filter(|&i| self.tcp.entry(i).is_some_and(|e| e.next_hop == ip && e.conn.state() == State::SynSent))
            .collect();
        for i in opening {
            let e = self.tcp.entry_mut(i).expect("just found");
            e.failure = Some(TcpSocketError::Unreachable);
            e.conn.abort();
            drain_events(&mut e.conn);
            self.tcp.mark_ready(i);
            self.tcp.mark_dirty(i);
        }
    }
}
