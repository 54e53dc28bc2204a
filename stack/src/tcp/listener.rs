//! A listening socket's protocol logic, sans-IO: SYN handling with an explicit
//! backlog, half-open connections with an explicit timeout, SYN cookies when the
//! backlog is full, RFC 6528 initial sequence numbers, and resets for segments
//! that belong to no connection.
//!
//! Memory is bounded by configuration: at most `syn_backlog` half-open and
//! `backlog` accepted-but-not-taken connections exist; beyond that SYNs are
//! answered statelessly with SYN cookies (RFC 4987) or dropped and counted, so
//! a SYN flood cannot exhaust memory, and with cookies real clients still get in.
//!
//! Randomness is an input: the caller provides the 128-bit secret that keys the
//! ISN and cookie hashes (the stack derives it from its seeded RNG), so a
//! simulation replays exactly.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use siphasher::sip::SipHasher24;

use super::config::{TcpConfig, TcpConfigError};
use super::conn::{Connection, Ports, State, Transmit};
use crate::wire::{SeqNumber, TcpFlags, TcpRepr};

/// A connection's addresses: the demultiplexing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowId {
    /// Our address and port.
    pub local: SocketAddr,
    /// The peer's address and port.
    pub remote: SocketAddr,
}

/// Hashes the 4-tuple as two or three words rather than field by field (the
/// derived impl feeds the table's keyed SipHash a dozen small writes per
/// segment). Consistent with `Eq`: equal flows write equal words (IPv6 flow
/// labels and scope ids, which `Eq` also compares, are simply not hashed).
impl std::hash::Hash for FlowId {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let ports = (u32::from(self.local.port()) << 16) | u32::from(self.remote.port());
        match (self.local.ip(), self.remote.ip()) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                h.write_u64((u64::from(u32::from(l)) << 32) | u64::from(u32::from(r)));
                h.write_u32(ports);
            }
            (l, r) => {
                let wide = |a: IpAddr| match a {
                    IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
                    IpAddr::V6(a) => u128::from(a),
                };
                h.write_u128(wide(l));
                h.write_u128(wide(r));
                h.write_u32(ports);
            }
        }
    }
}

impl FlowId {
    fn ports(&self) -> Ports {
        Ports { local: self.local.port(), remote: self.remote.port() }
    }
}

/// Keyed hash of a flow's addresses (and `extra` words), for ISNs and cookies.
fn flow_hash(secret: &[u8; 16], flow: &FlowId, extra: &[u32]) -> u64 {
    let mut h = SipHasher24::new_with_key(secret);
    match (flow.local, flow.remote) {
        (SocketAddr::V4(l), SocketAddr::V4(r)) => {
            h.write(&l.ip().octets());
            h.write(&r.ip().octets());
        }
        (l, r) => {
            h.write(&match l.ip() {
                std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                std::net::IpAddr::V6(a) => a.octets(),
            });
            h.write(&match r.ip() {
                std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                std::net::IpAddr::V6(a) => a.octets(),
            });
        }
    }
    h.write_u16(flow.local.port());
    h.write_u16(flow.remote.port());
    for x in extra {
        h.write_u32(*x);
    }
    h.finish()
}

/// RFC 6528 initial sequence number for `flow`: a 4 µs clock plus a keyed hash
/// of the connection's addresses, so ISNs are unpredictable yet increase per
/// flow. Used by listeners and by active opens.
pub fn isn(secret: &[u8; 16], flow: &FlowId, now: u64) -> SeqNumber {
    SeqNumber(((now / 4000) as u32).wrapping_add(flow_hash(secret, flow, &[]) as u32))
}

/// RFC 9293 3.10.7.1: the reset answering `seg`, a segment for no
/// connection (`None` for a reset: never answer one with another).
pub fn reset_for(flow: &FlowId, seg: &TcpRepr) -> Option<TcpRepr> {
    if seg.flags.rst() {
        return None;
    }
    let (local, remote) = (flow.local.port(), flow.remote.port());
    Some(if seg.flags.ack() {
        TcpRepr::new(local, remote, seg.ack_number, SeqNumber(0), TcpFlags::RST, 0)
    } else {
        let ack = seg.seq_number + seg.segment_len() as u32;
        TcpRepr::new(local, remote, SeqNumber(0), ack, TcpFlags::RST | TcpFlags::ACK, 0)
    })
}

/// When to answer SYNs with cookies instead of keeping state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynCookies {
    /// Never: SYNs beyond the backlog are dropped.
    Off,
    /// When the SYN backlog or the accept queue is full (RFC 4987 3.6).
    WhenFull,
    /// For every SYN (no half-open state at all).
    Always,
}

/// A listener's configuration. Backlogs and the SYN timeout are required
/// arguments of [`ListenConfig::new`]: there are no hidden defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenConfig {
    /// Address and port to listen on; an unspecified IP (`0.0.0.0` or `[::]`)
    /// listens on every address of the interface, of both families.
    pub addr: SocketAddr,
    /// Established connections waiting for `accept` (the accept queue bound).
    pub backlog: usize,
    /// Half-open (SYN-RECEIVED) connections kept at once.
    pub syn_backlog: usize,
    /// How long a half-open connection may wait for the handshake to finish.
    pub syn_timeout_ns: u64,
    /// SYN cookie policy.
    pub syn_cookies: SynCookies,
    /// Configuration of every accepted connection.
    pub tcp: TcpConfig,
}

impl ListenConfig {
    /// A configuration with every value given.
    pub fn new(
        addr: SocketAddr,
        backlog: usize,
        syn_backlog: usize,
        syn_timeout_ns: u64,
        syn_cookies: SynCookies,
        tcp: TcpConfig,
    ) -> Self {
        ListenConfig { addr, backlog, syn_backlog, syn_timeout_ns, syn_cookies, tcp }
    }

    /// Checks the values; the error names the field.
    pub fn validate(&self) -> Result<(), TcpConfigError> {
        let bad = |field, reason: &str| Err(TcpConfigError::Invalid { field, reason: reason.to_string() });
        if self.addr.port() == 0 {
            return bad("addr", "the port must not be 0");
        }
        if self.backlog == 0 {
            return bad("backlog", "must be at least 1");
        }
        if self.syn_backlog == 0 && self.syn_cookies != SynCookies::Always {
            return bad("syn_backlog", "must be at least 1 unless every SYN gets a cookie");
        }
        if self.syn_timeout_ns == 0 {
            return bad("syn_timeout", "must be above 0");
        }
        self.tcp.validate()
    }
}

/// Counters of a listener.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// SYNs received.
    pub syns: u64,
    /// SYNs dropped: backlog full and cookies off.
    pub syns_dropped: u64,
    /// SYN-ACKs sent with a cookie.
    pub cookies_sent: u64,
    /// Connections made from a valid cookie.
    pub cookies_accepted: u64,
    /// ACKs with an invalid or expired cookie.
    pub cookies_rejected: u64,
    /// Handshakes completed while the accept queue was full (kept half-open).
    pub accept_queue_full: u64,
    /// Half-open connections that timed out.
    pub half_open_expired: u64,
    /// Resets sent for segments of no connection.
    pub resets: u64,
}

/// MSS values a cookie can encode (3 bits), as Linux does.
const COOKIE_MSS: [u16; 8] = [536, 1200, 1220, 1300, 1440, 1460, 4312, 8960];
/// Cookie time slot: 64 s, 5 bits (RFC 4987 3.6: a slowly incrementing counter).
const COOKIE_SLOT_NS: u64 = 64_000_000_000;

struct HalfOpen {
    conn: Connection,
    deadline: u64,
}

/// A listener. See the module documentation.
pub struct Listener {
    cfg: ListenConfig,
    secret: [u8; 16],
    half_open: HashMap<FlowId, HalfOpen>,
    accept_queue: VecDeque<(FlowId, Connection)>,
    /// Established connections handed to the socket layer ([`Listener::hand_off`])
    /// and not yet accepted by the application: they count against the backlog.
    handed_off: usize,
    /// The configuration of accepted connections, MSS clamped for (IPv4,
    /// IPv6), shared by all of them.
    tcp: (Arc<TcpConfig>, Arc<TcpConfig>),
    /// Stateless replies (cookie SYN-ACKs, resets).
    replies: VecDeque<(FlowId, TcpRepr)>,
    /// Half-open flows that may have something to send.
    dirty: VecDeque<FlowId>,
    /// Wake-ups: (time, flow), lazily revalidated.
    timers: BinaryHeap<Reverse<(u64, FlowId)>>,
    stats: ListenerStats,
}

impl Listener {
    /// A listener keyed with `secret` (ISNs and cookies).
    pub fn new(cfg: ListenConfig, secret: [u8; 16]) -> Result<Self, TcpConfigError> {
        cfg.validate()?;
        let tcp = Arc::new(cfg.tcp.clone());
        Ok(Listener {
            cfg,
            secret,
            half_open: HashMap::new(),
            accept_queue: VecDeque::new(),
            handed_off: 0,
            tcp: (tcp.clone(), tcp),
            replies: VecDeque::new(),
            dirty: VecDeque::new(),
            timers: BinaryHeap::new(),
            stats: ListenerStats::default(),
        })
    }

    /// Counters.
    pub fn stats(&self) -> ListenerStats {
        self.stats
    }

    /// Connections waiting in the accept queue.
    pub fn backlog_len(&self) -> usize {
        self.accept_queue.len() + self.handed_off
    }

    /// Half-open connections held.
    pub fn half_open_len(&self) -> usize {
        self.half_open.len()
    }

    fn hash(&self, flow: &FlowId, extra: &[u32]) -> u64 {
        flow_hash(&self.secret, flow, extra)
    }

    /// RFC 6528 initial sequence number: a 4 µs clock plus a keyed hash of the
    /// connection's addresses, so ISNs are unpredictable yet increase per flow.
    pub fn isn(&self, flow: &FlowId, now: u64) -> SeqNumber {
        isn(&self.secret, flow, now)
    }

    fn cookie(&self, flow: &FlowId, client_isn: SeqNumber, mss_idx: u32, slot: u32) -> u32 {
        let h = self.hash(flow, &[client_isn.0, slot, mss_idx]) as u32 & 0x00ff_ffff;
        ((slot & 0x1f) << 27) | ((mss_idx & 7) << 24) | h
    }

    fn check_cookie(&self, flow: &FlowId, client_isn: SeqNumber, cookie: u32, now: u64) -> Option<u16> {
        let slot_now = (now / COOKIE_SLOT_NS) as u32;
        let mss_idx = (cookie >> 24) & 7;
        // Valid for the current and the previous slot (64 to 128 s).
        for slot in [slot_now, slot_now.wrapping_sub(1)] {
            if self.cookie(flow, client_isn, mss_idx, slot) == cookie {
                return Some(COOKIE_MSS[mss_idx as usize]);
            }
        }
        None
    }

    /// Arms the flow's next wake-up and queues it for `poll_transmit`.
    fn schedule(&mut self, flow: FlowId) {
        self.schedule_timer_only(flow);
        self.dirty.push_back(flow);
    }

    /// Wake-ups are revalidated lazily, so entries of flows that completed
    /// their handshake linger until their time comes. Drop them once they
    /// outnumber the live ones, so the heap stays proportional to the
    /// half-open connections (amortised O(1) per push).
    fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.half_open.len() + 64 {
            return;
        }
        // Keep the earliest wake-up of each live flow (waking early is
        // harmless: the flow re-arms), so afterwards at most half are left.
        let mut earliest: HashMap<FlowId, u64> = HashMap::with_capacity(self.half_open.len());
        for Reverse((t, f)) in self.timers.drain() {
            if self.half_open.contains_key(&f) {
                let e = earliest.entry(f).or_insert(t);
                *e = (*e).min(t);
            }
        }
        self.timers = earliest.into_iter().map(|(f, t)| Reverse((t, f))).collect();
    }

    fn reset_for(&mut self, flow: FlowId, seg: &TcpRepr) {
        if let Some(r) = reset_for(&flow, seg) {
            self.stats.resets += 1;
            self.replies.push_back((flow, r));
        }
    }

    fn promote(&mut self, flow: FlowId) {
        let ready =
            self.half_open.get(&flow).is_some_and(|h| !matches!(h.conn.state(), State::SynReceived | State::Closed));
        if !ready {
            if self.half_open.get(&flow).is_some_and(|h| h.conn.state() == State::Closed) {
                self.half_open.remove(&flow);
            }
            return;
        }
        if self.backlog_len() >= self.cfg.backlog {
            self.stats.accept_queue_full += 1;
            return;
        }
        let h = self.half_open.remove(&flow).expect("checked above");
        self.accept_queue.push_back((flow, h.conn));
    }

    /// Feeds a segment addressed to this listener's port that matched no
    /// established connection of the socket layer.
    pub fn handle_segment(&mut self, now: u64, flow: FlowId, seg: &TcpRepr, payload: &[u8]) {
        if let Some(h) = self.half_open.get_mut(&flow) {
            h.conn.handle_segment(now, seg, payload);
            self.schedule(flow);
            self.promote(flow);
            return;
        }
        let f = seg.flags;
        if f.syn() && !f.ack() && !f.rst() {
            self.stats.syns += 1;
            let full = self.half_open.len() >= self.cfg.syn_backlog || self.backlog_len() >= self.cfg.backlog;
            let use_cookie = match self.cfg.syn_cookies {
                SynCookies::Always => true,
                SynCookies::WhenFull => full,
                SynCookies::Off => false,
            };
            if use_cookie {
                self.send_cookie(now, flow, seg);
            } else if full {
                self.stats.syns_dropped += 1;
            } else {
                let iss = self.isn(&flow, now);
                match Connection::accept(self.tcp_for(&flow), flow.ports(), iss, seg, now) {
                    Ok(conn) => {
                        let deadline = now + self.cfg.syn_timeout_ns;
                        self.half_open.insert(flow, HalfOpen { conn, deadline });
                        self.schedule(flow);
                    }
                    Err(_) => self.stats.syns_dropped += 1,
                }
            }
            return;
        }
        if f.ack() && !f.syn() && !f.rst() && self.cfg.syn_cookies != SynCookies::Off {
            let iss = seg.ack_number - 1;
            let irs = seg.seq_number - 1;
            match self.check_cookie(&flow, irs, iss.0, now) {
                Some(mss) if self.backlog_len() < self.cfg.backlog => {
                    let made = Connection::from_cookie(self.tcp_for(&flow), flow.ports(), iss, irs, mss, seg, now);
                    if let Ok(mut conn) = made {
                        if seg.payload_len > 0 || f.fin() {
                            conn.handle_segment(now, seg, payload);
                        }
                        self.stats.cookies_accepted += 1;
                        self.accept_queue.push_back((flow, conn));
                    }
                    return;
                }
                Some(_) => {
                    // Valid, but nowhere to put it: drop; the client retransmits.
                    self.stats.accept_queue_full += 1;
                    return;
                }
                None => self.stats.cookies_rejected += 1,
            }
        }
        self.reset_for(flow, seg);
    }

    fn send_cookie(&mut self, now: u64, flow: FlowId, syn: &TcpRepr) {
        let peer_mss = syn.max_seg_size.unwrap_or(self.cfg.tcp.default_peer_mss);
        let mss_idx = COOKIE_MSS.iter().rposition(|&m| m <= peer_mss).unwrap_or(0) as u32;
        let slot = (now / COOKIE_SLOT_NS) as u32;
        let iss = SeqNumber(self.cookie(&flow, syn.seq_number, mss_idx, slot));
        let window = self.cfg.tcp.recv_buffer.min(u16::MAX as usize) as u16;
        let mut r = TcpRepr::new(
            flow.local.port(),
            flow.remote.port(),
            iss,
            syn.seq_number + 1,
            TcpFlags::SYN | TcpFlags::ACK,
            window,
        );
        r.max_seg_size = Some(self.tcp_for(&flow).mss);
        self.stats.cookies_sent += 1;
        self.replies.push_back((flow, r));
    }

    /// Takes the next established connection, oldest first.
    pub fn accept(&mut self) -> Option<(FlowId, Connection)> {
        let c = self.accept_queue.pop_front();
        if c.is_some() {
            self.promote_one_waiting();
        }
        c
    }

    /// Takes the next established connection for a socket layer that keeps
    /// its own accept queue (so segments reach the connection before the
    /// application accepts it): it keeps counting against the backlog until
    /// [`accepted`](Self::accepted) says the application took one.
    pub fn hand_off(&mut self) -> Option<(FlowId, Connection)> {
        let c = self.accept_queue.pop_front();
        if c.is_some() {
            self.handed_off += 1;
        }
        c
    }

    /// The application took (or the socket layer dropped) a connection that
    /// [`hand_off`](Self::hand_off) returned: room in the backlog again.
    pub fn accepted(&mut self) {
        self.handed_off = self.handed_off.saturating_sub(1);
        self.promote_one_waiting();
    }

    fn promote_one_waiting(&mut self) {
        // Room again: promote a handshake that completed while we were full.
        let waiting = self
            .half_open
            .iter()
            .find(|(_, h)| !matches!(h.conn.state(), State::SynReceived | State::Closed))
            .map(|(f, _)| *f);
        if let Some(f) = waiting {
            self.promote(f);
        }
    }

    /// Clamps the MSS of accepted connections to what the link carries, per
    /// family (a listener on `[::]` serves both): `mtu - 40` for IPv4 and
    /// `mtu - 60` for IPv6, as Linux derives its MSS from the route's MTU.
    pub fn set_mss_limits(&mut self, v4: u16, v6: u16) {
        let clamp = |limit: u16| Arc::new(TcpConfig { mss: self.cfg.tcp.mss.min(limit), ..self.cfg.tcp.clone() });
        self.tcp = (clamp(v4), clamp(v6));
    }

    /// The connection configuration for `flow`, its MSS clamped to the link.
    fn tcp_for(&self, flow: &FlowId) -> Arc<TcpConfig> {
        if flow.local.is_ipv4() {
            self.tcp.0.clone()
        } else {
            self.tcp.1.clone()
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ListenConfig {
        &self.cfg
    }

    /// The next segment to send, for half-open connections and stateless replies.
    pub fn poll_transmit(&mut self, now: u64, buf: &mut [u8]) -> Option<(FlowId, Transmit)> {
        if let Some((flow, repr)) = self.replies.pop_front() {
            return Some((flow, Transmit { repr }));
        }
        while let Some(&flow) = self.dirty.front() {
            match self.half_open.get_mut(&flow) {
                Some(h) => match h.conn.poll_transmit(now, buf) {
                    Some(t) => {
                        let flow_now = flow;
                        self.schedule_timer_only(flow_now);
                        return Some((flow, t));
                    }
                    None => {
                        self.dirty.pop_front();
                    }
                },
                None => {
                    self.dirty.pop_front();
                }
            }
        }
        None
    }

    /// Arms the flow's next wake-up: the earlier of its connection's own timer
    /// and the half-open deadline.
    fn schedule_timer_only(&mut self, flow: FlowId) {
        if let Some(h) = self.half_open.get(&flow) {
            let t = h.conn.poll_timeout().map_or(h.deadline, |t| t.min(h.deadline));
            self.timers.push(Reverse((t, flow)));
            self.compact_timers();
        }
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) must run.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Retransmits SYN-ACKs and expires half-open connections.
    pub fn handle_timeout(&mut self, now: u64) {
        while let Some(Reverse((t, flow))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(h) = self.half_open.get_mut(&flow) else { continue };
            if now >= h.deadline {
                // The handshake took too long: forget it (reset if it completed
                // but never got into the accept queue).
                if h.conn.state() != State::SynReceived {
                    h.conn.abort();
                    let mut buf = [0u8; 0];
                    if let Some(t) = h.conn.poll_transmit(now, &mut buf) {
                        self.replies.push_back((flow, t.repr));
                    }
                }
                self.half_open.remove(&flow);
                self.stats.half_open_expired += 1;
                continue;
            }
            h.conn.handle_timeout(now);
            if h.conn.state() == State::Closed {
                self.half_open.remove(&flow);
                self.stats.half_open_expired += 1;
                continue;
            }
            self.schedule(flow);
        }
    }
}
