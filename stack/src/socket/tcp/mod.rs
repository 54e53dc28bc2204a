//! TCP sockets of a [`Stack`]: the socket layer between the wire and the
//! sans-IO [`Connection`] and [`Listener`] state machines.
//!
//! ```text
//! input:  IPv4/IPv6 -> TcpRepr::parse (checksum: NIC verdict or software)
//!         -> connection table (FlowId -> slot)  -> Connection::handle_segment
//!         -> listener (addr, port) or (*, port) -> Listener::handle_segment
//!         -> neither: RST (RFC 9293 3.10.7.1), counted
//! output: Stack::output -> every *dirty* listener and connection is asked
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
//!   [`Tcp::take_ready`] returns the tokens whose readiness may have changed
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
//! * **Copies**: the byte-stream API ([`Tcp::send`], [`Tcp::recv`])
//!   copies between the application's slices and the connection's buffers;
//!   segment payloads are written straight into the transmit buffer. Received
//!   payloads stay in the mbufs they arrived in until `recv` copies them
//!   out (zero-copy receive, [`crate::tcp::recv`]); the stack's connections hold
//!   at most `StackConfig::tcp_rx_mbufs` of them, beyond which payloads are
//!   copied (`tcp_rx_mbuf_limit`), so unread data cannot exhaust the pool.
//! * **Unreachable** is reported when the next hop of a connection in SYN-SENT
//!   never answers address resolution; a RST to our SYN is `Refused`; running
//!   out of SYN retransmissions is `TimedOut`.
//! * Closing with unread data aborts with RST (RFC 2525 2.17, as Linux does);
//!   otherwise [`Tcp::close`] sends FIN and the connection finishes in the
//!   background, its slot reclaimed when it reaches CLOSED.
//!
//! Files: this one holds the handles, the errors and the socket calls
//! (`stack.tcp().listen`, `accept`, `connect`, `send`, `recv`, ...: the [`Tcp`] view);
//! `table.rs` the connection table and the accept queues; `input.rs` the
//! receive demux (connection, listener, or a RST) and the segment emit path;
//! `output.rs` the output pass and the timers; `flow_hash.rs` the table's
//! hasher.

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::error::StackError;
use crate::iface::{Stack, V4, V6};
use crate::tcp::listener::isn;
use crate::tcp::{Connection, FlowId, ListenConfig, Listener, ListenerStats, Ports, State, TcpConfig, TcpError};
use crate::wire;

mod flow_hash;
mod input;
mod output;
mod table;

pub(crate) use table::TcpTable;
use table::{ConnEntry, ListenEntry, ListenSlot, Owner};

/// Readiness tokens of listeners have this bit set.
const LISTENER_TOKEN: u64 = 1 << 63;

/// A TCP connection of one [`Stack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpHandle {
    index: u32,
    generation: u32,
}

impl TcpHandle {
    /// The readiness token of this connection (see [`Tcp::take_ready`]).
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
    /// The readiness token of this listener (see [`Tcp::take_ready`]).
    pub fn token(&self) -> u64 {
        LISTENER_TOKEN | token(self.index, self.generation)
    }
}

pub(super) fn token(index: u32, generation: u32) -> u64 {
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

impl Stack {
    /// The largest MSS the MTU carries for a family (RFC 9293 3.7.1: MTU
    /// minus the fixed IP and TCP headers).
    pub(crate) fn mss_limit(&self, v6: bool) -> u16 {
        let ip = if v6 { V6 } else { V4 };
        self.cfg.mtu.saturating_sub((ip + wire::tcp::HEADER_LEN) as u16)
    }
}

/// The TCP socket calls of a [`Stack`]: `stack.tcp().…` (or, for the
/// read-only ones on a shared stack, `stack.tcp_ref().…`).
pub struct Tcp<S> {
    stack: S,
}

impl Stack {
    /// The TCP socket calls.
    pub fn tcp(&mut self) -> Tcp<&mut Stack> {
        Tcp { stack: self }
    }

    /// The read-only TCP socket calls, on a shared stack.
    pub fn tcp_ref(&self) -> Tcp<&Stack> {
        Tcp { stack: self }
    }
}

impl<S: Deref<Target = Stack>> Tcp<S> {
    /// `Ok(true)` once the handshake completed (whatever happened since),
    /// `Ok(false)` while it is in progress, or why it failed.
    pub fn connected(&self, h: TcpHandle) -> Result<bool, TcpSocketError> {
        let st = &*self.stack;
        let e = st.tcp.app(h)?;
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

    /// Bytes waiting to be read.
    pub fn recv_available(&self, h: TcpHandle) -> Result<usize, TcpSocketError> {
        let st = &*self.stack;
        Ok(st.tcp.app(h)?.conn.recv_available())
    }

    /// Bytes that [`send`](Self::send) would accept now.
    pub fn send_capacity(&self, h: TcpHandle) -> Result<usize, TcpSocketError> {
        let st = &*self.stack;
        Ok(st.tcp.app(h)?.conn.send_capacity())
    }

    /// The RFC 9293 state.
    pub fn state(&self, h: TcpHandle) -> Result<State, TcpSocketError> {
        let st = &*self.stack;
        Ok(st.tcp.app(h)?.conn.state())
    }

    /// The peer's address and port.
    pub fn peer_addr(&self, h: TcpHandle) -> Result<SocketAddr, TcpSocketError> {
        let st = &*self.stack;
        Ok(st.tcp.app(h)?.flow.remote)
    }

    /// Our address and port.
    pub fn local_addr(&self, h: TcpHandle) -> Result<SocketAddr, TcpSocketError> {
        let st = &*self.stack;
        Ok(st.tcp.app(h)?.flow.local)
    }

    /// Connections in the table (including those closing in the background
    /// and those waiting to be accepted).
    pub fn connections(&self) -> usize {
        let st = &*self.stack;
        st.tcp.live
    }

    /// Received mbufs the connections hold for zero-copy receive (at most
    /// `StackConfig::tcp_rx_mbufs`).
    pub fn rx_mbufs_held(&self) -> usize {
        let st = &*self.stack;
        st.tcp.rx_mbufs
    }
}

impl<S: DerefMut<Target = Stack>> Tcp<S> {
    /// Sets the 128-bit secret that keys TCP initial sequence numbers and SYN
    /// cookies (RFC 6528). [`Stack::new`] draws one from the OS; simulations set
    /// their own so a run replays exactly. Takes effect for listeners created
    /// afterwards and for every later active open.
    pub fn set_secret(&mut self, secret: [u8; 16]) {
        let st = &mut *self.stack;
        st.tcp.set_secret(secret);
    }

    /// Listens: `cfg.addr` is one of the interface's addresses, or unspecified
    /// (`0.0.0.0` / `[::]`) for all of them, of both families.
    pub fn listen(&mut self, cfg: ListenConfig) -> Result<TcpListenerHandle, StackError> {
        let st = &mut *self.stack;
        cfg.validate().map_err(|e| StackError::config(format!("listen.{}", e.field()), e.reason()))?;
        let ip = cfg.addr.ip();
        if !ip.is_unspecified() && !st.is_our_ip(ip) {
            return Err(StackError::AddrNotAvailable(cfg.addr));
        }
        let key = (if ip.is_unspecified() { None } else { Some(ip) }, cfg.addr.port());
        let clash =
            st.tcp.listen_addrs.keys().any(|(a, p)| *p == key.1 && (a.is_none() || key.0.is_none() || *a == key.0));
        if clash {
            return Err(StackError::AddrInUse(cfg.addr));
        }
        let mut listener = Listener::new(cfg, st.tcp.secret)
            .map_err(|e| StackError::config(format!("listen.{}", e.field()), e.reason()))?;
        listener.set_mss_limits(st.mss_limit(false), st.mss_limit(true));
        let index = match st.tcp.listeners.iter().position(|s| s.entry.is_none()) {
            Some(i) => i,
            None => {
                st.tcp.listeners.push(ListenSlot { generation: 0, entry: None });
                st.tcp.listeners.len() - 1
            }
        };
        let slot = &mut st.tcp.listeners[index];
        slot.entry =
            Some(ListenEntry { listener, key, queue: VecDeque::new(), timer: None, in_ready: false, in_dirty: false });
        st.tcp.listen_addrs.insert(key, index as u32);
        Ok(TcpListenerHandle { index: index as u32, generation: slot.generation })
    }

    /// Takes the oldest established connection from the accept queue.
    pub fn accept(&mut self, l: TcpListenerHandle) -> Result<TcpHandle, TcpSocketError> {
        let st = &mut *self.stack;
        let e = st.tcp.listener_mut(l)?;
        let i = e.queue.pop_front().ok_or(TcpSocketError::WouldBlock)?;
        e.listener.accepted();
        st.tcp_pump_listener(l.index);
        let generation = st.tcp.conns[i as usize].generation;
        let entry = st.tcp.entry_mut(i).expect("queued connections stay in the table");
        entry.owner = Owner::App;
        st.stats.events.tcp_accepted += 1;
        // Whatever arrived before the accept is there to read.
        st.tcp.mark_ready(i);
        Ok(TcpHandle { index: i, generation })
    }

    /// Counters of a listener.
    pub fn listener_stats(&mut self, l: TcpListenerHandle) -> Result<ListenerStats, TcpSocketError> {
        let st = &mut *self.stack;
        Ok(st.tcp.listener_mut(l)?.listener.stats())
    }

    /// Stops listening. Connections not yet accepted are reset; half-open ones
    /// are forgotten.
    pub fn unlisten(&mut self, l: TcpListenerHandle) {
        let st = &mut *self.stack;
        let Ok(e) = st.tcp.listener_mut(l) else { return };
        let key = e.key;
        let queued: Vec<u32> = e.queue.drain(..).collect();
        let timer = e.timer.take();
        let slot = &mut st.tcp.listeners[l.index as usize];
        slot.entry = None;
        slot.generation = slot.generation.wrapping_add(1);
        st.tcp.listen_addrs.remove(&key);
        if let Some((id, _)) = timer {
            st.timers.cancel(id);
        }
        for i in queued {
            if let Some(c) = st.tcp.entry_mut(i) {
                c.conn.abort();
                c.owner = Owner::Orphan;
            }
            st.tcp.mark_dirty(i);
        }
    }

    /// Active open to `remote` from the routed source address and an ephemeral
    /// port; on one of several cores ([`crate::cores`]), from a port (and,
    /// when the port's RSS hashes addresses only, an address of ours) whose
    /// reply the port delivers to this core. `cfg.mss` is clamped to what the MTU carries. Routing problems fail at once; refusal, timeout and unreachability
    /// are reported later by [`connected`](Self::connected) and every
    /// other call on the handle.
    pub fn connect(&mut self, remote: SocketAddr, mut cfg: TcpConfig) -> Result<TcpHandle, StackError> {
        let st = &mut *self.stack;
        cfg.validate().map_err(|e| StackError::config(format!("tcp.{}", e.field()), e.reason()))?;
        cfg.mss = cfg.mss.min(st.mss_limit(remote.is_ipv6()));
        let rip = remote.ip();
        if remote.port() == 0 || rip.is_unspecified() || rip.is_multicast() || st.is_broadcast_ip(rip) {
            return Err(StackError::config("remote", format!("{remote} is not a unicast address and port")));
        }
        if st.tcp.live >= st.cfg.tcp_max_connections {
            st.stats.drops.tcp_connection_limit += 1;
            return Err(StackError::ConnectionLimit(st.cfg.tcp_max_connections));
        }
        let (src, next_hop) = st.route(rip).inspect_err(|_| st.stats.drops.no_route += 1)?;
        let flow = st.pick_local(src, remote)?;
        let iss = isn(&st.tcp.secret, &flow, st.now);
        let ports = Ports { local: flow.local.port(), remote: remote.port() };
        let cfg = match &st.tcp.connect_cfg {
            Some(c) if **c == cfg => c.clone(),
            _ => {
                let c = Arc::new(cfg);
                st.tcp.connect_cfg = Some(c.clone());
                c
            }
        };
        let conn = Connection::connect(cfg, ports, iss, st.now)
            .map_err(|e| StackError::config(format!("tcp.{}", e.field()), e.reason()))?;
        let i = st.tcp.insert(ConnEntry {
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
        st.stats.events.tcp_connects += 1;
        Ok(TcpHandle { index: i, generation: st.tcp.conns[i as usize].generation })
    }

    /// Queues bytes to send; returns how many fit. `Err(WouldBlock)` when the
    /// send buffer is full. Data written during the handshake waits for it.
    pub fn send(&mut self, h: TcpHandle, data: &[u8]) -> Result<usize, TcpSocketError> {
        let st = &mut *self.stack;
        let e = st.tcp.app_mut(h)?;
        if let Some(f) = e.failure {
            return Err(f);
        }
        let n = e.conn.send(data)?;
        if n == 0 && !data.is_empty() {
            return Err(TcpSocketError::WouldBlock);
        }
        st.tcp.mark_dirty(h.index);
        Ok(n)
    }

    /// Reads received bytes. `Ok(0)` (with a non-empty `buf`) is the end of the
    /// stream; `Err(WouldBlock)` means nothing has arrived yet.
    pub fn recv(&mut self, h: TcpHandle, buf: &mut [u8]) -> Result<usize, TcpSocketError> {
        let st = &mut *self.stack;
        let e = st.tcp.app_mut(h)?;
        if let Some(f) = e.failure {
            return Err(f);
        }
        let held = e.conn.rx_mbufs();
        let n = e.conn.recv(buf)?;
        if n > 0 {
            let freed = held - e.conn.rx_mbufs();
            st.tcp.rx_mbufs -= freed;
            // Reading may reopen a closed window: let the output pass see.
            st.tcp.mark_dirty(h.index);
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

    /// Closes our sending side: FIN after the queued data (half-close).
    pub fn shutdown(&mut self, h: TcpHandle) -> Result<(), TcpSocketError> {
        let st = &mut *self.stack;
        let e = st.tcp.app_mut(h)?;
        if let Some(f) = e.failure {
            return Err(f);
        }
        e.conn.shutdown();
        st.tcp.mark_dirty(h.index);
        Ok(())
    }

    /// Releases the handle. With unread data the connection is reset (RFC 2525
    /// 2.17); otherwise a FIN follows the queued data and the connection
    /// finishes closing in the background.
    pub fn close(&mut self, h: TcpHandle) {
        let st = &mut *self.stack;
        let Ok(e) = st.tcp.app_mut(h) else { return };
        if e.conn.recv_available() > 0 {
            e.conn.abort();
        } else {
            e.conn.shutdown();
        }
        e.owner = Owner::Orphan;
        st.tcp.mark_dirty(h.index);
    }

    /// Releases the handle and resets the connection (RST).
    pub fn abort(&mut self, h: TcpHandle) {
        let st = &mut *self.stack;
        let Ok(e) = st.tcp.app_mut(h) else { return };
        e.conn.abort();
        e.owner = Owner::Orphan;
        st.tcp.mark_dirty(h.index);
    }

    /// Moves to `out` the tokens of listeners and connections whose readiness
    /// may have changed since the last call: new connections to accept, data
    /// or end of stream to read, send space, the handshake finishing, errors.
    pub fn take_ready(&mut self, out: &mut Vec<u64>) {
        let st = &mut *self.stack;
        let mut ready = std::mem::take(&mut st.tcp.ready);
        for &t in &ready {
            let index = (t & 0xffff_ffff) as u32;
            if t & LISTENER_TOKEN != 0 {
                if let Some(Some(l)) = st.tcp.listeners.get_mut(index as usize).map(|s| s.entry.as_mut()) {
                    l.in_ready = false;
                }
            } else if let Some(e) = st.tcp.entry_mut(index) {
                e.in_ready = false;
            }
        }
        out.append(&mut ready);
        st.tcp.ready = ready;
    }
}

impl<'a> Tcp<&'a Stack> {
    /// The connection state machine, for inspection (congestion window, RTT).
    pub fn connection(&self, h: TcpHandle) -> Result<&'a Connection, TcpSocketError> {
        Ok(&self.stack.tcp.app(h)?.conn)
    }
}

impl Stack {
    /// The local endpoint of an active open to `remote`: an ephemeral port
    /// of `src` that no connection or listener uses and, on one of several
    /// cores, whose reply this core owns. When the port's RSS hashes
    /// addresses only, the port cannot steer, so the other addresses of the
    /// family are tried as well (Seastar's `tcp.hh` loop; see
    /// [`crate::cores`]).
    fn pick_local(&mut self, src: IpAddr, remote: SocketAddr) -> Result<FlowId, StackError> {
        let mut candidates = vec![src];
        if let Some(s) = &self.steering {
            if !s.rss().covers_ports(remote.is_ipv6(), pmd::rss::L4::Tcp) {
                let others: Vec<IpAddr> = match remote {
                    SocketAddr::V4(_) => self.cfg.ipv4.iter().map(|c| IpAddr::V4(c.address())).collect(),
                    SocketAddr::V6(_) => self.cfg.ipv6.iter().map(|c| IpAddr::V6(c.address())).collect(),
                };
                candidates.extend(others.into_iter().filter(|a| *a != src));
            }
        }
        for src in candidates {
            if let Some(s) = &self.steering {
                // An address whose 2-tuple hash lands elsewhere: no port helps.
                let probe = SocketAddr::new(src, 0);
                if !s.rss().covers_ports(remote.is_ipv6(), pmd::rss::L4::Tcp)
                    && !s.owns(pmd::rss::L4::Tcp, probe, remote)
                {
                    continue;
                }
            }
            for _ in 0..16384 {
                let p = self.tcp.next_ephemeral;
                self.tcp.next_ephemeral = if p == 65535 { 49152 } else { p + 1 };
                let f = FlowId { local: SocketAddr::new(src, p), remote };
                let ours = self.steering.as_ref().map_or(true, |s| s.owns(pmd::rss::L4::Tcp, f.local, remote));
                if ours && !self.tcp.flows.contains_key(&f) && self.tcp.listener_for(f.local).is_none() {
                    return Ok(f);
                }
            }
        }
        Err(StackError::AddrInUse(SocketAddr::new(src, 0)))
    }
}
