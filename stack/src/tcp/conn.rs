//! One TCP connection as a sans-IO state machine (RFC 9293).
//!
//! The connection never touches a socket or a clock: it is fed segments and the
//! time ([`Connection::handle_segment`], [`Connection::handle_timeout`]) and asked
//! what to send ([`Connection::poll_transmit`]), when to wake it next
//! ([`Connection::poll_timeout`]) and what happened ([`Connection::poll_event`]).
//! Times are nanoseconds on the caller's clock. A test drives two of these with
//! nothing but a loop, and any failure replays exactly.
//!
//! What is in this version:
//! * the RFC 9293 state machine: active and passive open, simultaneous open,
//!   half-close, simultaneous close, abort with RST, TIME_WAIT for an explicit
//!   duration, the segment acceptability test;
//! * RFC 5961: RST and SYN in synchronized states only act when exactly
//!   expected, otherwise draw a rate-limited challenge ACK; ACK range checks;
//! * RFC 6298 RTO with Karn's algorithm and exponential backoff; RFC 7323 window
//!   scaling and timestamps (RTTM, and PAWS rejection of old segments); MSS
//!   negotiation;
//! * RFC 5681 slow start, congestion avoidance, fast retransmit and recovery;
//! * zero-window probing (RFC 9293 3.8.6.1) so a closed window cannot deadlock:
//!   probes (one byte, or a FIN) are not retransmissions and are not lost
//!   (their answers are not duplicate ACKs); a window opening resumes from
//!   SND.UNA with the backoff reset; unanswered probes time out after
//!   `max_retransmits`. As a receiver, no data is accepted into a zero window
//!   we offered (3.10.7.4);
//! * out-of-order data kept (within the receive window) and delivered in order;
//! * zero-copy receive: payloads offered as mbufs ([`Connection::handle_segment_mbuf`])
//!   are kept in them until read ([`super::recv`] says what is kept and how it is
//!   accounted);
//! * RFC 2018 SACK with RFC 6675 loss recovery, RFC 9438 CUBIC, delayed ACK,
//!   keepalive, Nagle, sender and receiver silly-window avoidance.
//!
//! The listener (accept queue, SYN cookies) is [`super::listener`]; the socket
//! layer that feeds both from the wire is `Stack`'s (`socket/tcp/`).

use std::collections::BTreeMap;
use std::sync::Arc;

use pmd::Mbuf;

use super::cc::{CongestionControl, Cubic};
use super::config::{TcpConfig, TcpConfigError};
use super::recv::{Payload, RecvQueue, Segment};
use super::rtt::RttEstimator;
use super::send::SendBuffer;
use crate::wire::{SeqNumber, TcpFlags, TcpRepr, TcpTimestamp};

/// RFC 9293 connection states (LISTEN belongs to the listener, not here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No connection.
    Closed,
    /// SYN sent, waiting for SYN-ACK.
    SynSent,
    /// SYN received and SYN-ACK sent, waiting for its ACK.
    SynReceived,
    /// Open.
    Established,
    /// We closed, our FIN not yet acknowledged.
    FinWait1,
    /// Our FIN acknowledged, waiting for the peer's.
    FinWait2,
    /// The peer closed; we may still send.
    CloseWait,
    /// Both closed at once, waiting for the ACK of our FIN.
    Closing,
    /// The peer closed, then we did; waiting for the ACK of our FIN.
    LastAck,
    /// Both done; lingering for old duplicates.
    TimeWait,
}

/// What happened, for the socket layer and the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed.
    Connected,
    /// New data (or the end of the stream) can be read.
    Readable,
    /// Send buffer space was freed.
    Writable,
    /// The peer sent FIN: no more data will arrive.
    PeerClosed,
    /// The connection is fully closed (after TIME-WAIT or LAST-ACK).
    Closed,
    /// The peer reset the connection.
    Reset,
    /// The peer refused the connection (RST to our SYN).
    Refused,
    /// Retransmissions ran out.
    TimedOut,
}

/// A set of pending [`Event`]s, taken in a fixed order: `Connected` first,
/// `Closed` last, so a reader sees the handshake before the data and the end
/// after everything else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Events(u8);

const EVENT_ORDER: [Event; 8] = [
    Event::Connected,
    Event::Readable,
    Event::Writable,
    Event::PeerClosed,
    Event::Reset,
    Event::Refused,
    Event::TimedOut,
    Event::Closed,
];

impl Events {
    fn push(&mut self, e: Event) {
        let i = EVENT_ORDER.iter().position(|x| *x == e).expect("every event is in the order");
        self.0 |= 1 << i;
    }

    fn pop(&mut self) -> Option<Event> {
        if self.0 == 0 {
            return None;
        }
        let i = self.0.trailing_zeros() as usize;
        self.0 &= !(1 << i);
        Some(EVENT_ORDER[i])
    }
}

/// Errors of the application-facing calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpError {
    /// The connection cannot send any more (we closed, or it is gone).
    Closed,
    /// The peer reset the connection.
    Reset,
    /// The connection was refused.
    Refused,
    /// The connection timed out.
    TimedOut,
}

/// Addressing of a connection: ports only; IP addresses belong to the layer
/// below, which also computes checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ports {
    /// Our port.
    pub local: u16,
    /// The peer's port.
    pub remote: u16,
}

/// A TCP connection. See the module documentation.
#[derive(Debug)]
pub struct Connection {
    /// Shared by every connection of a listener (an idle connection's memory
    /// is the point of a connection table).
    cfg: Arc<TcpConfig>,
    ports: Ports,
    state: State,
    /// Why the connection ended, if it ended badly.
    error: Option<TcpError>,

    // Send sequence space (RFC 9293 3.3.1).
    iss: SeqNumber,
    snd_una: SeqNumber,
    snd_nxt: SeqNumber,
    /// Highest sequence number sent (snd_nxt can go back on retransmission).
    snd_max: SeqNumber,
    snd_wnd: u32,
    max_snd_wnd: u32,
    snd_wl1: SeqNumber,
    snd_wl2: SeqNumber,
    /// Unacknowledged and unsent data ([`super::send`]).
    sbuf: SendBuffer,
    /// The application closed its side: a FIN follows the data.
    fin_queued: bool,
    /// Sequence number of our FIN once it has been sent.
    fin_seq: Option<SeqNumber>,

    // Receive sequence space.
    irs: SeqNumber,
    rcv_nxt: SeqNumber,
    /// In-order data not yet read.
    rq: RecvQueue,
    /// Out-of-order segments by sequence number.
    ooo: BTreeMap<u32, Segment>,
    ooo_bytes: usize,
    /// Of them, kept in their mbufs.
    ooo_mbufs: u32,
    /// Sequence number of the peer's FIN when it arrived ahead of data.
    peer_fin: Option<SeqNumber>,
    peer_fin_seen: bool,
    last_ack_sent: SeqNumber,
    /// The right edge of the window we last advertised (RCV.NXT + RCV.WND
    /// when our last ACK left): receiver SWS avoidance measures reads
    /// against it.
    rcv_adv: SeqNumber,
    /// Our last ACK offered a zero window: until one offers more, no data is
    /// acceptable (RFC 9293 3.10.7.4), even if reads have made room since.
    zero_window_offered: bool,

    // Negotiated options.
    peer_mss: u16,
    /// Both SYNs carried the window scale option (RFC 7323 2.2).
    ws_ok: bool,
    snd_wscale: u8,
    rcv_wscale: u8,
    ts_ok: bool,
    ts_recent: u32,
    /// Both SYNs carried SACK-permitted.
    sack_ok: bool,
    /// Receiver: start of the most recent out-of-order segment (first SACK block).
    last_ooo: Option<SeqNumber>,
    /// Sender: SACKed ranges above SND.UNA, sorted and merged (RFC 6675 scoreboard).
    scoreboard: Vec<(SeqNumber, SeqNumber)>,
    /// Sender: highest sequence number retransmitted in this recovery (HighRxt).
    high_rxt: SeqNumber,
    /// Offset added to our timestamp clock (per-connection, RFC 7323 5.4).
    ts_offset: u32,

    // Timers and retransmission.
    rtt: RttEstimator,
    rto_deadline: Option<u64>,
    retransmits: u32,
    /// Karn: (sequence number that completes the timed segment, send time).
    rtt_probe: Option<(SeqNumber, u64)>,
    time_wait_deadline: Option<u64>,

    // Congestion control (RFC 5681).
    cwnd: u32,
    ssthresh: u32,
    dup_acks: u32,
    /// CUBIC state (unused with NewReno).
    cubic: Cubic,
    /// Segments RFC 3042 Limited Transmit lets us send beyond cwnd.
    limited_transmit: u32,
    /// In fast recovery until this sequence number is acknowledged.
    recover: Option<SeqNumber>,
    retransmit_one: bool,

    /// The next transmission may probe a zero window with one byte.
    zero_window_probe: bool,
    /// Zero-window probes sent since the peer last sent anything.
    persist_unanswered: u32,
    /// Delayed ACK: when the pending ACK must go out, and in-order bytes it covers.
    delack_deadline: Option<u64>,
    delack_bytes: u32,
    /// Keepalive: next probe time, probes sent unanswered, and a probe to send.
    ka_deadline: Option<u64>,
    ka_probes: u32,
    ka_probe_due: bool,

    // Output flags.
    ack_now: bool,
    /// Duplicate ACKs owed, one per out-of-order segment (RFC 5681 4.2).
    acks_owed: u32,
    /// A reset to send: its sequence number, and the ACK number if ACK is set.
    send_rst: Option<(SeqNumber, Option<SeqNumber>)>,
    challenge_acks: (u64, u32),

    /// Pending events, one bit each (see [`Events`]): no allocation, and a
    /// burst of segments reports `Readable` once.
    events: Events,
}

/// One segment to send: the header (ports, numbers, flags, options) and how
/// many payload bytes were written into the caller's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The header; `payload_len` is set.
    pub repr: TcpRepr,
}

const NS_PER_MS: u64 = 1_000_000;

impl Connection {
    fn new(cfg: Arc<TcpConfig>, ports: Ports, iss: SeqNumber, _now: u64, state: State) -> Result<Self, TcpConfigError> {
        cfg.validate()?;
        let mss = cfg.mss as u32;
        Ok(Connection {
            rtt: RttEstimator::new(cfg.rto),
            ports,
            state,
            error: None,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: SeqNumber(0),
            snd_wl2: iss,
            sbuf: SendBuffer::new(iss + 1),
            fin_queued: false,
            fin_seq: None,
            irs: SeqNumber(0),
            rcv_nxt: SeqNumber(0),
            rq: RecvQueue::default(),
            ooo: BTreeMap::new(),
            ooo_bytes: 0,
            ooo_mbufs: 0,
            peer_fin: None,
            peer_fin_seen: false,
            last_ack_sent: SeqNumber(0),
            rcv_adv: SeqNumber(0),
            peer_mss: cfg.default_peer_mss,
            ws_ok: false,
            snd_wscale: 0,
            rcv_wscale: 0,
            ts_ok: false,
            ts_recent: 0,
            sack_ok: false,
            last_ooo: None,
            scoreboard: Vec::new(),
            high_rxt: iss,
            ts_offset: iss.0.rotate_left(13),
            rto_deadline: None,
            retransmits: 0,
            rtt_probe: None,
            time_wait_deadline: None,
            // RFC 5681 3.1: IW = 2..4 segments depending on MSS; use 4*MSS capped
            // by RFC 3390's byte limit.
            cwnd: (4 * mss).min(4380.max(2 * mss)),
            ssthresh: u32::MAX,
            dup_acks: 0,
            cubic: Cubic::default(),
            limited_transmit: 0,
            recover: None,
            retransmit_one: false,
            zero_window_probe: false,
            persist_unanswered: 0,
            zero_window_offered: false,
            delack_deadline: None,
            delack_bytes: 0,
            ka_deadline: None,
            ka_probes: 0,
            ka_probe_due: false,
            ack_now: false,
            acks_owed: 0,
            send_rst: None,
            challenge_acks: (0, 0),
            events: Events::default(),
            cfg,
        })
    }

    /// Active open: the connection starts in SYN-SENT with its SYN ready to send.
    pub fn connect(
        cfg: impl Into<Arc<TcpConfig>>,
        ports: Ports,
        iss: SeqNumber,
        now: u64,
    ) -> Result<Self, TcpConfigError> {
        Self::new(cfg.into(), ports, iss, now, State::SynSent)
    }

    /// Passive open from a received SYN (the listener decided to accept it): the
    /// connection starts in SYN-RECEIVED with its SYN-ACK ready to send.
    pub fn accept(
        cfg: impl Into<Arc<TcpConfig>>,
        ports: Ports,
        iss: SeqNumber,
        syn: &TcpRepr,
        now: u64,
    ) -> Result<Self, TcpConfigError> {
        let mut c = Self::new(cfg.into(), ports, iss, now, State::SynReceived)?;
        c.take_syn_options(syn);
        c.irs = syn.seq_number;
        c.rcv_nxt = syn.seq_number + 1;
        c.snd_wnd = syn.window_len as u32; // never scaled in a SYN
        c.snd_wl1 = syn.seq_number;
        Ok(c)
    }

    /// An established connection from a valid SYN-cookie ACK (RFC 4987): no state
    /// was kept for the SYN, so the options negotiated only in SYNs (window
    /// scale, timestamps) are off, and the peer's MSS is what the cookie encoded.
    /// Any payload of `ack` must then be fed with [`handle_segment`](Self::handle_segment).
    pub fn from_cookie(
        cfg: impl Into<Arc<TcpConfig>>,
        ports: Ports,
        iss: SeqNumber,
        irs: SeqNumber,
        peer_mss: u16,
        ack: &TcpRepr,
        now: u64,
    ) -> Result<Self, TcpConfigError> {
        let mut c = Self::new(cfg.into(), ports, iss, now, State::Established)?;
        c.irs = irs;
        c.rcv_nxt = irs + 1;
        c.last_ack_sent = c.rcv_nxt;
        c.rcv_adv = c.rcv_nxt;
        c.snd_una = iss + 1;
        c.snd_nxt = iss + 1;
        c.snd_max = iss + 1;
        c.sbuf.set_start(iss + 1);
        c.peer_mss = peer_mss;
        c.snd_wnd = ack.window_len as u32;
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = ack.seq_number;
        c.snd_wl2 = ack.ack_number;
        c.events.push(Event::Connected);
        c.events.push(Event::Writable);
        Ok(c)
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The ports.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// Why the connection ended, if it did so abnormally.
    pub fn error(&self) -> Option<TcpError> {
        self.error
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// Effective send MSS: the peer's limit, ours, minus option overhead.
    pub fn send_mss(&self) -> u32 {
        let opt = if self.ts_ok { 12 } else { 0 };
        (self.peer_mss.min(self.cfg.mss) as u32).saturating_sub(opt).max(1)
    }

    /// Bytes the application can still queue.
    pub fn send_capacity(&self) -> usize {
        self.cfg.send_buffer.saturating_sub(self.sbuf.len())
    }

    /// Congestion window in bytes.
    pub fn cwnd(&self) -> u32 {
        self.cwnd
    }

    /// Bytes sent and not yet acknowledged (SND.MAX - SND.UNA).
    pub fn bytes_in_flight(&self) -> u32 {
        (self.snd_max - self.snd_una).max(0) as u32
    }

    /// The peer's receive window (SND.WND), in bytes.
    pub fn send_window(&self) -> u32 {
        self.snd_wnd
    }

    /// Smoothed RTT in nanoseconds, once measured.
    pub fn srtt_ns(&self) -> Option<u64> {
        self.rtt.srtt()
    }

    #[cfg(test)]
    pub(crate) fn rcv_nxt_for_tests(&self) -> SeqNumber {
        self.rcv_nxt
    }

    #[cfg(test)]
    pub(crate) fn snd_nxt_for_tests(&self) -> SeqNumber {
        self.snd_nxt
    }

    /// Bytes waiting to be read.
    pub fn recv_available(&self) -> usize {
        self.rq.len()
    }

    /// Received mbufs this connection holds (in order and out of order).
    pub fn rx_mbufs(&self) -> usize {
        self.rq.mbufs() + self.ooo_mbufs as usize
    }

    /// Memory holding in-order received data (whole buffers for kept mbufs).
    pub fn recv_memory(&self) -> usize {
        self.rq.memory()
    }

    /// Queues data to send; returns how much fit in the send buffer.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, TcpError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        match self.state {
            State::SynSent | State::SynReceived | State::Established | State::CloseWait if !self.fin_queued => {}
            _ => return Err(TcpError::Closed),
        }
        let n = data.len().min(self.send_capacity());
        self.sbuf.write(&data[..n]);
        Ok(n)
    }

    /// Reads received data. `Ok(0)` with a non-empty `buf` means the peer closed
    /// and everything has been read.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, TcpError> {
        if self.rq.is_empty() && !buf.is_empty() && !self.peer_fin_seen {
            if let Some(e) = self.error {
                return Err(e);
            }
        }
        let n = self.rq.read(buf);
        if n > 0 && self.window_update_due() {
            self.ack_now = true;
        }
        Ok(n)
    }

    /// Receiver SWS avoidance (RFC 9293 3.8.6.2.2, RFC 1122 4.2.3.3): once
    /// reads let the right edge of the window move by at least
    /// min(RCV.BUFF / 2, Eff.snd.MSS) beyond the edge last advertised, the
    /// peer is told at once. Our ACKs leave before the application reads
    /// what they acknowledge, so without this a sender whose flight fills
    /// the window offered then waits for data-driven ACKs that no longer
    /// come (or for a timer) while the buffer sits empty.
    fn window_update_due(&self) -> bool {
        // Only while the peer may still send data.
        if !matches!(self.state, State::Established | State::FinWait1 | State::FinWait2) || self.peer_fin_seen {
            return false;
        }
        let edge = self.rcv_nxt + self.advertised_window();
        let step = (self.cfg.recv_buffer / 2).min(self.full_segment() as usize);
        (edge - self.rcv_adv) >= step.max(1) as i32
    }

    /// A full-sized segment from the peer: our advertised MSS minus its
    /// timestamp option (the receiver's view of Eff.snd.MSS).
    fn full_segment(&self) -> u32 {
        self.cfg.mss as u32 - if self.ts_ok { 12 } else { 0 }
    }

    /// Whether the peer has closed and all its data has been read.
    pub fn is_recv_finished(&self) -> bool {
        self.peer_fin_seen && self.rq.is_empty()
    }

    /// Closes our side: a FIN is sent after the queued data (RFC 9293 3.10.4).
    pub fn shutdown(&mut self) {
        match self.state {
            State::SynSent => self.enter_closed(None),
            State::SynReceived | State::Established => {
                self.fin_queued = true;
                self.state = State::FinWait1;
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.state = State::LastAck;
            }
            _ => {}
        }
    }

    /// Aborts: sends RST (in synchronized states) and closes (RFC 9293 3.10.5).
    pub fn abort(&mut self) {
        if !matches!(self.state, State::Closed | State::SynSent | State::TimeWait) {
            self.rst_here();
        }
        self.sbuf.clear();
        self.enter_closed(None);
    }

    /// The earliest time at which [`handle_timeout`](Self::handle_timeout) must
    /// be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        [self.rto_deadline, self.time_wait_deadline, self.delack_deadline, self.ka_deadline].into_iter().flatten().min()
    }

    /// Runs expired timers.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.time_wait_deadline.is_some_and(|t| now >= t) {
            self.time_wait_deadline = None;
            self.enter_closed(None);
            return;
        }
        if self.delack_deadline.is_some_and(|t| now >= t) {
            self.delack_deadline = None;
            self.ack_now = true;
        }
        if self.ka_deadline.is_some_and(|t| now >= t) {
            self.ka_deadline = None;
            if let Some(ka) = self.cfg.keepalive {
                let idle_state = matches!(self.state, State::Established | State::CloseWait);
                if idle_state && self.snd_una == self.snd_max {
                    if self.ka_probes >= ka.probes {
                        self.error = Some(TcpError::TimedOut);
                        self.events.push(Event::TimedOut);
                        self.rst_here();
                        self.enter_closed(None);
                        return;
                    }
                    self.ka_probes += 1;
                    self.ka_probe_due = true;
                    self.ka_deadline = Some(now + ka.interval_ns);
                } else if idle_state {
                    // Data in flight: retransmission timeouts watch the peer.
                    self.ka_deadline = Some(now + ka.idle_ns);
                }
            }
        }
        let Some(deadline) = self.rto_deadline else { return };
        if now < deadline {
            return;
        }
        self.rto_deadline = None;
        if self.state == State::Closed {
            return;
        }
        // A zero window is probed until it opens (RFC 9293 3.8.6.1), also when
        // the probe itself was lost: its byte is then all that is in flight,
        // and resending it is the next probe (without this, a lost probe and a
        // lost window update stalled the connection until it timed out). A
        // FIN sent into the zero window is such a probe too: it was counted
        // as a retransmission, so a reader that paused for a few minutes
        // after its peer closed had the connection time out under it.
        // And so is anything in flight when the window shrank to zero under
        // it (RFC 1122 4.2.2.16: a sender must be robust against a shrinking
        // window): those timeouts had no room to send in, sent nothing, and
        // still counted as retransmissions until the connection timed out.
        let zero_window_probe = self.snd_wnd == 0
            && matches!(
                self.state,
                State::Established | State::CloseWait | State::FinWait1 | State::Closing | State::LastAck
            )
            && (self.snd_max > self.snd_una || self.has_unsent());
        let limit = match self.state {
            State::SynSent | State::SynReceived => self.cfg.syn_retries,
            _ => self.cfg.max_retransmits,
        };
        // Probes are not retransmissions, but a peer that answers none of
        // them is gone: after `max_retransmits` unanswered probes in a row
        // the connection times out (Linux bounds them by tcp_retries2 alike);
        // an answer — any segment — resets the count.
        let probes_exhausted = zero_window_probe && self.persist_unanswered >= limit;
        if (self.retransmits >= limit && !zero_window_probe) || probes_exhausted {
            self.error = Some(TcpError::TimedOut);
            self.events.push(Event::TimedOut);
            if !matches!(self.state, State::SynSent) {
                self.rst_here();
            }
            self.enter_closed(None);
            return;
        }
        if zero_window_probe {
            self.persist_unanswered += 1;
        } else {
            self.retransmits += 1;
        }
        self.rtt.back_off();
        self.rtt_probe = None; // Karn: never time a retransmitted segment
                               // RFC 5681 3.1 (equation 4) on timeout, then go back to snd_una.
        if !zero_window_probe {
            let flight = (self.snd_max - self.snd_una).max(0) as u32;
            self.ssthresh = self.loss_ssthresh(flight);
            if self.cfg.congestion == CongestionControl::Cubic {
                self.cubic.on_timeout();
            }
            self.cwnd = self.send_mss();
            self.recover = None;
            self.dup_acks = 0;
        }
        self.snd_nxt = self.snd_una;
        // RFC 6675 5.1 / RFC 2018 8: after a timeout, SACKed data may have been
        // reneged; start over from SND.UNA.
        self.scoreboard.clear();
        self.high_rxt = self.snd_una;
        self.fin_seq_reset_if_unacked();
        self.rto_deadline = Some(now + self.rtt.rto());
        if zero_window_probe {
            self.zero_window_probe = true;
        }
    }
}

impl Connection {
    fn has_unsent(&self) -> bool {
        let sent_data = self.sbuf.offset_of(self.snd_max);
        self.sbuf.len() > sent_data || (self.fin_queued && self.fin_seq.is_none())
    }

    fn fin_seq_reset_if_unacked(&mut self) {
        if let Some(f) = self.fin_seq {
            if self.snd_una <= f {
                // The FIN will be resent when the data before it has been.
                self.fin_seq = None;
            }
        }
    }

    fn enter_closed(&mut self, reason: Option<TcpError>) {
        if let Some(e) = reason {
            self.error = Some(e);
        }
        if self.state != State::Closed {
            self.state = State::Closed;
            self.events.push(Event::Closed);
        }
        self.rto_deadline = None;
        self.time_wait_deadline = None;
        self.delack_deadline = None;
        self.ka_deadline = None;
    }

    fn enter_time_wait(&mut self, now: u64) {
        self.state = State::TimeWait;
        self.rto_deadline = None;
        self.ka_deadline = None;
        self.time_wait_deadline = Some(now + self.cfg.time_wait_ns);
    }

    fn take_syn_options(&mut self, syn: &TcpRepr) {
        if let Some(mss) = syn.max_seg_size {
            self.peer_mss = mss.max(64);
        }
        // RFC 7323 2.2: scaling only if both sides sent the option in their SYNs.
        match (syn.window_scale, self.cfg.window_scale) {
            (Some(peer), Some(ours)) => {
                self.ws_ok = true;
                self.snd_wscale = peer.min(14);
                self.rcv_wscale = ours;
            }
            _ => {
                self.ws_ok = false;
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
        // RFC 2018 2: SACK only if both SYNs carried SACK-permitted.
        self.sack_ok = syn.sack_permitted && self.cfg.sack;
        // RFC 7323 3.2: timestamps only if both sides sent them in their SYNs.
        if let Some(ts) = syn.timestamp {
            if self.cfg.timestamps {
                self.ts_ok = true;
                self.ts_recent = ts.tsval;
            }
        } else {
            self.ts_ok = false;
        }
    }

    fn ts_now(&self, now: u64) -> u32 {
        ((now / NS_PER_MS) as u32).wrapping_add(self.ts_offset)
    }

    fn advertised_window(&self) -> u32 {
        // Out-of-order data lies inside the window already offered, so it does
        // not shrink it (RFC 9293 3.8.6.2.2: don't move the right edge left; and
        // a changing window would stop duplicate ACKs counting as such).
        // `accept_data` keeps rq + ooo within recv_buffer.
        let free = self.cfg.recv_buffer.saturating_sub(self.rq.len());
        free.min((u16::MAX as usize) << self.rcv_wscale) as u32
    }

    fn window_field(&self, syn: bool) -> u16 {
        let w = self.advertised_window();
        if syn {
            w.min(u16::MAX as u32) as u16
        } else {
            (w >> self.rcv_wscale).min(u16::MAX as u32) as u16
        }
    }

    fn header(&self, seq: SeqNumber, flags: TcpFlags, now: u64) -> TcpRepr {
        let syn = flags.syn();
        let mut r = TcpRepr::new(self.ports.local, self.ports.remote, seq, self.rcv_nxt, flags, self.window_field(syn));
        if !flags.ack() {
            r.ack_number = SeqNumber(0);
        }
        if syn {
            r.max_seg_size = Some(self.cfg.mss);
            let offer_ws = self.state == State::SynSent || self.ws_ok;
            if offer_ws {
                r.window_scale = self.cfg.window_scale;
            }
            r.sack_permitted = self.cfg.sack && (self.state == State::SynSent || self.sack_ok);
            let offer_ts = self.cfg.timestamps && (self.state == State::SynSent || self.ts_ok);
            if offer_ts {
                r.timestamp =
                    Some(TcpTimestamp { tsval: self.ts_now(now), tsecr: if flags.ack() { self.ts_recent } else { 0 } });
            }
        } else {
            if self.ts_ok {
                r.timestamp = Some(TcpTimestamp { tsval: self.ts_now(now), tsecr: self.ts_recent });
            }
            if self.sack_ok && flags.ack() && !self.ooo.is_empty() {
                self.sack_blocks(&mut r);
            }
        }
        r
    }

    /// RFC 2018 4: SACK blocks for the out-of-order data we hold, the block with
    /// the most recently received segment first, then the others.
    fn sack_blocks(&self, r: &mut TcpRepr) {
        let mut ranges: Vec<(SeqNumber, SeqNumber)> = Vec::new();
        for (&k, v) in &self.ooo {
            let (start, end) = (SeqNumber(k), SeqNumber(k) + v.len() as u32);
            match ranges.last_mut() {
                Some(last) if start <= last.1 => {
                    if end > last.1 {
                        last.1 = end;
                    }
                }
                _ => ranges.push((start, end)),
            }
        }
        let recent = self.last_ooo.and_then(|s| ranges.iter().position(|&(a, b)| a <= s && s < b));
        let mut ordered = Vec::with_capacity(ranges.len());
        if let Some(i) = recent {
            ordered.push(ranges.remove(i));
        }
        ordered.extend(ranges.into_iter().rev());
        for (slot, block) in r.sack_ranges.iter_mut().zip(ordered) {
            *slot = Some(block);
        }
    }

    fn sacked_bytes(&self) -> u32 {
        self.scoreboard.iter().map(|&(a, b)| (b - a) as u32).sum()
    }

    /// RFC 6675 pipe, simplified: bytes in flight minus SACKed bytes minus holes
    /// below the highest SACK that have not been retransmitted yet (deemed lost).
    fn pipe(&self) -> u32 {
        let flight = (self.snd_max - self.snd_una).max(0) as u32;
        let mut lost = 0u32;
        let mut at = if self.high_rxt > self.snd_una { self.high_rxt } else { self.snd_una };
        for &(a, b) in &self.scoreboard {
            if a > at {
                lost += (a - at) as u32;
            }
            if b > at {
                at = b;
            }
        }
        flight.saturating_sub(self.sacked_bytes()).saturating_sub(lost)
    }

    /// RFC 6675 NextSeg, rule 1: the first unSACKed, not yet retransmitted bytes
    /// below the highest SACKed sequence number.
    fn next_hole(&self, mss: u32) -> Option<(SeqNumber, u32)> {
        let mut at = if self.high_rxt > self.snd_una { self.high_rxt } else { self.snd_una };
        for &(a, b) in &self.scoreboard {
            if a > at {
                return Some((at, ((a - at) as u32).min(mss)));
            }
            if b > at {
                at = b;
            }
        }
        None
    }

    fn update_scoreboard(&mut self, seg: &TcpRepr) {
        for (l, r) in seg.sack_ranges.iter().flatten().copied() {
            // RFC 2018 / 6675: only blocks inside what we sent and not yet acked.
            if !(l < r && self.snd_una < r && r <= self.snd_max) {
                continue;
            }
            let l = if l < self.snd_una { self.snd_una } else { l };
            self.scoreboard.push((l, r));
        }
        self.scoreboard.sort_by(|x, y| {
            if x.0 < y.0 {
                std::cmp::Ordering::Less
            } else if x.0 == y.0 {
                std::cmp::Ordering::Equal
            } else {
                std::cmp::Ordering::Greater
            }
        });
        let mut merged: Vec<(SeqNumber, SeqNumber)> = Vec::with_capacity(self.scoreboard.len());
        for (a, b) in self.scoreboard.drain(..) {
            if b <= self.snd_una {
                continue;
            }
            let a = if a < self.snd_una { self.snd_una } else { a };
            match merged.last_mut() {
                Some(last) if a <= last.1 => {
                    if b > last.1 {
                        last.1 = b;
                    }
                }
                _ => merged.push((a, b)),
            }
        }
        self.scoreboard = merged;
    }

    fn arm_rto(&mut self, now: u64) {
        if self.rto_deadline.is_none() {
            self.rto_deadline = Some(now + self.rtt.rto());
        }
    }

    /// Produces the next segment to send, writing its payload into `buf` (at most
    /// `buf.len()` bytes). Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: u64, buf: &mut [u8]) -> Option<Transmit> {
        if let Some((seq, ack)) = self.send_rst.take() {
            let flags = if ack.is_some() { TcpFlags::RST | TcpFlags::ACK } else { TcpFlags::RST };
            let r = TcpRepr::new(self.ports.local, self.ports.remote, seq, ack.unwrap_or(SeqNumber(0)), flags, 0);
            return Some(Transmit { repr: r });
        }
        match self.state {
            State::Closed => return None,
            State::SynSent | State::SynReceived => return self.transmit_syn(now),
            _ => {}
        }
        if let Some(t) = self.transmit_data(now, buf) {
            return Some(t);
        }
        if self.ack_now || self.acks_owed > 0 {
            if self.ack_now {
                self.ack_now = false;
                self.acks_owed = self.acks_owed.saturating_sub(1);
            } else {
                self.acks_owed -= 1;
            }
            // A pure ACK carries SND.MAX, not SND.NXT: after a timeout SND.NXT
            // goes back to SND.UNA for retransmission (as in BSD), and an ACK
            // with an old sequence number would be unacceptable to the peer,
            // which would answer with an ACK of its own — an ACK storm.
            let r = self.header(self.snd_max, TcpFlags::ACK, now);
            self.ack_sent();
            return Some(Transmit { repr: r });
        }
        if std::mem::take(&mut self.ka_probe_due) {
            // RFC 1122 4.2.3.6: a probe with SEG.SEQ = SND.NXT - 1 and no data
            // makes a live peer answer with an ACK.
            let r = self.header(self.snd_max - 1, TcpFlags::ACK, now);
            return Some(Transmit { repr: r });
        }
        None
    }

    fn transmit_syn(&mut self, now: u64) -> Option<Transmit> {
        if self.snd_nxt != self.iss {
            // SYN already out; an ACK may still be due (simultaneous open).
            if self.ack_now && self.state == State::SynReceived {
                self.ack_now = false;
                self.ack_sent();
                return Some(Transmit { repr: self.header(self.snd_nxt, TcpFlags::ACK, now) });
            }
            return None;
        }
        let flags = if self.state == State::SynReceived { TcpFlags::SYN | TcpFlags::ACK } else { TcpFlags::SYN };
        let r = self.header(self.iss, flags, now);
        self.snd_nxt = self.iss + 1;
        if self.snd_max < self.snd_nxt {
            self.snd_max = self.snd_nxt;
        }
        if self.retransmits == 0 && self.rtt_probe.is_none() {
            self.rtt_probe = Some((self.iss + 1, now));
        }
        self.arm_rto(now);
        self.ack_sent();
        self.ack_now = false;
        Some(Transmit { repr: r })
    }

    fn transmit_data(&mut self, now: u64, buf: &mut [u8]) -> Option<Transmit> {
        let can_send = matches!(
            self.state,
            State::Established | State::CloseWait | State::FinWait1 | State::LastAck | State::Closing
        );
        if !can_send {
            return None;
        }
        let mss = self.send_mss();
        let sack_recovery = self.sack_ok && self.recover.is_some();
        // In SACK recovery, `pipe` replaces "bytes in flight" (RFC 6675 5).
        let in_flight = if sack_recovery { self.pipe() } else { (self.snd_nxt - self.snd_una).max(0) as u32 };
        // What to retransmit, if anything: the NewReno fast-retransmit segment
        // at SND.UNA, or in SACK recovery the next hole (RFC 6675 NextSeg).
        let rtx: Option<(SeqNumber, u32)> = if sack_recovery {
            if in_flight < self.cwnd {
                self.next_hole(mss)
            } else {
                None
            }
        } else if self.retransmit_one {
            Some((if self.snd_una < self.sbuf.start() { self.sbuf.start() } else { self.snd_una }, mss))
        } else {
            None
        };
        let retransmit_one = rtx.is_some();
        let seq = rtx.map_or(self.snd_nxt, |(s, _)| s);
        let offset = self.sbuf.offset_of(seq);
        let unsent = self.sbuf.len().saturating_sub(offset);
        let wnd = self.snd_wnd.min(self.cwnd);
        let mut room = match rtx {
            Some((_, len)) => len,
            None => wnd.saturating_sub(in_flight),
        };
        let limited = !retransmit_one && room < mss && self.limited_transmit > 0;
        if limited {
            room = mss.min(self.snd_wnd.saturating_sub(in_flight));
        }
        let probe = std::mem::take(&mut self.zero_window_probe);
        if probe && room == 0 {
            room = 1; // RFC 9293 3.8.6.1: probe a zero window with one byte
        }
        // SACK blocks ride on data segments too: keep the whole segment within
        // the peer's MSS (Linux's tcp_current_mss does the same), or the
        // packet outgrows the MTU.
        let sack_room = if self.sack_ok && !self.ooo.is_empty() {
            let blocks = self.ooo.len().min(if self.ts_ok { 3 } else { 4 });
            4 + 8 * blocks
        } else {
            0
        };
        let seg_max = (mss as usize).saturating_sub(sack_room).max(1);
        let mut len = unsent.min(seg_max).min(room as usize).min(buf.len());
        // Sender silly-window avoidance (RFC 9293 3.8.6.2.1): send a full
        // segment, or everything that is left, or at least half the largest
        // window the peer offered, or anything when nothing is in flight.
        if !retransmit_one
            && !probe
            && len < seg_max
            && len < unsent
            && in_flight > 0
            && (len as u32) < self.max_snd_wnd / 2
        {
            len = 0;
        }
        // Nagle (RFC 896): hold a small segment while data is unacknowledged.
        if !retransmit_one
            && self.cfg.nagle
            && len > 0
            && len < seg_max
            && len == unsent
            && in_flight > 0
            && !self.fin_queued
        {
            len = 0;
        }
        let fin_due = self.fin_queued && offset + len == self.sbuf.len() && (self.fin_seq.is_none() || retransmit_one);
        let fin = fin_due && (len > 0 || room > 0 || self.snd_wnd == 0 || probe || retransmit_one);
        if len == 0 && !fin {
            self.retransmit_one = false;
            if self.has_unsent() || in_flight > 0 {
                self.arm_rto(now);
            }
            return None;
        }
        self.sbuf.read(offset, &mut buf[..len]);
        let mut flags = TcpFlags::ACK;
        if len > 0 && offset + len == self.sbuf.len() {
            flags |= TcpFlags::PSH;
        }
        if fin {
            flags |= TcpFlags::FIN;
        }
        let mut r = self.header(seq, flags, now);
        r.payload_len = len;
        let end = seq + len as u32 + fin as u32;
        if retransmit_one {
            self.retransmit_one = false;
            if sack_recovery && end > self.high_rxt {
                self.high_rxt = end;
            }
        } else {
            self.snd_nxt = end;
        }
        if limited && len > 0 {
            self.limited_transmit -= 1;
        }
        if fin && self.fin_seq.is_none() {
            self.fin_seq = Some(seq + len as u32);
        }
        if self.snd_max < end {
            // New data: time it if nothing is being timed (Karn).
            if self.rtt_probe.is_none() && self.retransmits == 0 && !retransmit_one {
                self.rtt_probe = Some((end, now));
            }
            self.snd_max = end;
        }
        self.arm_rto(now);
        self.ack_sent();
        self.ack_now = false;
        Some(Transmit { repr: r })
    }

    /// ssthresh after a loss: RFC 5681 halves the flight, RFC 9438 keeps 0.7 of
    /// the window (and remembers it as W_max).
    fn loss_ssthresh(&mut self, flight: u32) -> u32 {
        let mss = self.send_mss();
        match self.cfg.congestion {
            CongestionControl::NewReno => (flight / 2).max(2 * mss),
            CongestionControl::Cubic => self.cubic.on_congestion(self.cwnd, mss),
        }
    }

    /// Bookkeeping for any segment that carries our current ACK.
    fn ack_sent(&mut self) {
        self.last_ack_sent = self.rcv_nxt;
        // As the window field carries it (scaled down, so rounded down).
        let offered = (self.advertised_window() >> self.rcv_wscale) << self.rcv_wscale;
        self.rcv_adv = self.rcv_nxt + offered;
        self.zero_window_offered = offered == 0;
        self.delack_deadline = None;
        self.delack_bytes = 0;
    }

    /// Acknowledges newly received in-order data now or later (delayed ACK).
    fn ack_data(&mut self, now: u64, len: usize, filled_gap: bool) {
        match self.cfg.delayed_ack_ns {
            None => self.ack_now = true,
            Some(delay) => {
                self.delack_bytes = self.delack_bytes.saturating_add(len as u32);
                // RFC 5681 4.2: at least every second full-sized segment, and at
                // once when a segment fills (part of) a gap.
                // A full-sized segment from the peer carries our advertised MSS
                // minus its timestamp option.
                let full = self.full_segment();
                if filled_gap || self.delack_bytes >= 2 * full {
                    self.ack_now = true;
                } else if self.delack_deadline.is_none() {
                    self.delack_deadline = Some(now + delay);
                }
            }
        }
    }

    fn challenge_ack(&mut self, now: u64) {
        // RFC 5961 7: at most `challenge_ack_limit` per second.
        let second = now / 1_000_000_000;
        if self.challenge_acks.0 != second {
            self.challenge_acks = (second, 0);
        }
        if self.challenge_acks.1 < self.cfg.challenge_ack_limit {
            self.challenge_acks.1 += 1;
            self.ack_now = true;
        }
    }

    /// Feeds one received segment (already checksum-verified and demultiplexed
    /// to this connection) with its payload, copied if it is kept.
    pub fn handle_segment(&mut self, now: u64, seg: &TcpRepr, payload: &[u8]) {
        let payload = &payload[..seg.payload_len.min(payload.len())];
        self.handle_payload(now, seg, Payload::Slice(payload));
    }

    /// Feeds one received segment whose payload is `m`'s data window: the
    /// data is kept in `m` until read when it fills at least half the buffer
    /// (see [`super::recv`]), else copied and `m` dropped.
    pub fn handle_segment_mbuf(&mut self, now: u64, seg: &TcpRepr, mut m: Mbuf) {
        if m.len() > seg.payload_len {
            let extra = m.len() - seg.payload_len;
            let _ = m.trim(extra);
        }
        self.handle_payload(now, seg, Payload::Mbuf(m));
    }

    fn handle_payload(&mut self, now: u64, seg: &TcpRepr, payload: Payload<'_>) {
        self.persist_unanswered = 0;
        if let Some(ka) = self.cfg.keepalive {
            // Anything from the peer shows it is alive (RFC 1122 4.2.3.6).
            self.ka_probes = 0;
            self.ka_deadline = Some(now + ka.idle_ns);
        }
        match self.state {
            State::Closed => {}
            State::SynSent => self.handle_syn_sent(now, seg, payload),
            _ => self.handle_synchronized(now, seg, payload),
        }
    }

    fn handle_syn_sent(&mut self, now: u64, seg: &TcpRepr, payload: Payload<'_>) {
        let f = seg.flags;
        // RFC 9293 3.10.7.3, first check the ACK bit.
        if f.ack() && (seg.ack_number <= self.iss || seg.ack_number > self.snd_max) {
            if !f.rst() {
                self.send_rst_for(seg);
            }
            return;
        }
        if f.rst() {
            if f.ack() {
                self.error = Some(TcpError::Refused);
                self.events.push(Event::Refused);
                self.enter_closed(None);
            }
            return;
        }
        if !f.syn() {
            return;
        }
        self.take_syn_options(seg);
        self.irs = seg.seq_number;
        self.rcv_nxt = seg.seq_number + 1;
        if self.ts_ok {
            if let Some(ts) = seg.timestamp {
                self.ts_recent = ts.tsval;
            }
        }
        if f.ack() {
            self.snd_una = seg.ack_number;
            self.sample_rtt(now, seg);
            // RFC 7323 2.2: the window of a SYN segment is never scaled.
            self.snd_wnd = seg.window_len as u32;
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = seg.seq_number;
            self.snd_wl2 = seg.ack_number;
            self.state = State::Established;
            self.retransmits = 0;
            self.rto_deadline = None;
            self.events.push(Event::Connected);
            self.events.push(Event::Writable);
            self.ack_now = true;
            if !payload.bytes().is_empty() {
                self.accept_data(seg.seq_number + 1, payload);
            }
        } else {
            // Simultaneous open (RFC 9293 Figure 8): SYN-ACK with the same ISS.
            self.state = State::SynReceived;
            self.snd_wnd = seg.window_len as u32;
            self.snd_wl1 = seg.seq_number;
            self.snd_nxt = self.iss;
            self.rto_deadline = None;
        }
    }

    /// RFC 9293 3.10.7.3: the reply to an unacceptable ACK is <SEQ=SEG.ACK><RST>.
    fn send_rst_for(&mut self, seg: &TcpRepr) {
        self.send_rst = Some((seg.ack_number, None));
    }

    /// A reset from where we are (abort, timeout): <SEQ=SND.MAX><ACK=RCV.NXT><RST,ACK>.
    fn rst_here(&mut self) {
        self.send_rst = Some((self.snd_max, Some(self.rcv_nxt)));
    }

    /// RCV.WND for the acceptability test: the free buffer space (never less
    /// than what was offered, since the right edge never moves left), except
    /// that a zero window offered stays zero until a larger one is offered.
    /// Accepting a zero-window probe the peer was told it may not send made
    /// the probe count as delivered here, where a correct receiver (Linux)
    /// refuses it — which hid the sender's resume-from-SND.NXT stall from
    /// every simulation test.
    fn rcv_wnd(&self) -> u32 {
        if self.zero_window_offered {
            0
        } else {
            self.advertised_window()
        }
    }

    fn acceptable(&self, seg: &TcpRepr, len: u32) -> bool {
        // RFC 9293 3.10.7.4 segment acceptability test.
        let wnd = self.rcv_wnd();
        let seq = seg.seq_number;
        let in_wnd = |s: SeqNumber| self.rcv_nxt <= s && s < self.rcv_nxt + wnd;
        match (len, wnd) {
            (0, 0) => seq == self.rcv_nxt,
            (0, _) => in_wnd(seq),
            (_, 0) => false,
            (_, _) => in_wnd(seq) || in_wnd(seq + (len - 1)),
        }
    }

    fn handle_synchronized(&mut self, now: u64, seg: &TcpRepr, payload: Payload<'_>) {
        let f = seg.flags;
        let plen = payload.bytes().len();
        let seg_len = plen as u32 + f.syn() as u32 + f.fin() as u32;

        if self.state == State::SynReceived && f.syn() && seg.seq_number == self.irs {
            if !f.ack() {
                // A duplicate of the peer's SYN: our SYN-ACK was lost; resend it.
                self.snd_nxt = self.iss;
                return;
            }
            // Simultaneous open (RFC 9293 Figure 8): the peer's SYN-ACK repeats the
            // SYN we already took; what is new is its ACK. Strip the SYN and go on.
            let mut rest = *seg;
            rest.flags = TcpFlags(rest.flags.0 & !TcpFlags::SYN.0);
            rest.seq_number = rest.seq_number + 1;
            return self.handle_synchronized(now, &rest, payload);
        }

        // RFC 7323 5.3 PAWS: reject old segments by timestamp.
        if self.ts_ok && !f.rst() {
            if let Some(ts) = seg.timestamp {
                if (ts.tsval.wrapping_sub(self.ts_recent) as i32) < 0 {
                    self.ack_now = true;
                    return;
                }
            }
        }

        if !self.acceptable(seg, seg_len) {
            if !f.rst() {
                self.ack_now = true;
            }
            return;
        }

        // RFC 5961 3.2: act on RST only if it is exactly at RCV.NXT.
        if f.rst() {
            if seg.seq_number == self.rcv_nxt {
                let refused = self.state == State::SynReceived && self.snd_una == self.iss;
                let e = if refused { TcpError::Refused } else { TcpError::Reset };
                self.events.push(if refused { Event::Refused } else { Event::Reset });
                self.sbuf.clear();
                self.enter_closed(Some(e));
            } else {
                self.challenge_ack(now);
            }
            return;
        }

        // RFC 5961 4.2: a SYN in a synchronized state draws a challenge ACK.
        if f.syn() {
            self.challenge_ack(now);
            return;
        }

        if !f.ack() {
            return;
        }

        // Timestamps: remember the peer's clock (RFC 7323 4.3).
        if self.ts_ok {
            if let Some(ts) = seg.timestamp {
                if seg.seq_number <= self.last_ack_sent {
                    self.ts_recent = ts.tsval;
                }
            }
        }

        if self.state == State::SynReceived {
            if self.snd_una < seg.ack_number && seg.ack_number <= self.snd_max {
                self.state = State::Established;
                self.snd_wnd = (seg.window_len as u32) << self.snd_wscale;
                self.max_snd_wnd = self.snd_wnd;
                self.snd_wl1 = seg.seq_number;
                self.snd_wl2 = seg.ack_number;
                self.events.push(Event::Connected);
                self.events.push(Event::Writable);
                if self.fin_queued {
                    self.state = State::FinWait1;
                }
            } else {
                self.send_rst_for(seg);
                return;
            }
        }

        // RFC 5961 5.2 ACK range check.
        if seg.ack_number > self.snd_max {
            self.ack_now = true;
            return;
        }
        if seg.ack_number < self.snd_una - self.max_snd_wnd.max(1) {
            self.challenge_ack(now);
            return;
        }

        self.process_ack(now, seg, plen == 0);

        if self.state == State::Closed {
            return;
        }
        let our_fin_acked = self.fin_seq.is_some_and(|fs| self.snd_una > fs);
        match self.state {
            State::FinWait1 if our_fin_acked => self.state = State::FinWait2,
            State::Closing if our_fin_acked => {
                self.enter_time_wait(now);
                return;
            }
            State::LastAck if our_fin_acked => {
                self.enter_closed(None);
                return;
            }
            State::TimeWait => {
                // A retransmitted FIN: acknowledge it and restart the 2MSL wait.
                if f.fin() {
                    self.ack_now = true;
                    self.enter_time_wait(now);
                }
                return;
            }
            _ => {}
        }

        if matches!(self.state, State::Established | State::FinWait1 | State::FinWait2) {
            if plen > 0 {
                let had_gap = !self.ooo.is_empty();
                let before = self.rcv_nxt;
                self.accept_data(seg.seq_number, payload);
                let advanced = (self.rcv_nxt - before).max(0) as usize;
                if advanced == 0 {
                    // Duplicate or out of order: acknowledge at once (RFC 5681 4.2).
                    self.ack_now = true;
                } else {
                    self.ack_data(now, advanced, had_gap);
                }
            }
            if f.fin() {
                self.peer_fin = Some(seg.seq_number + plen as u32);
                self.ack_now = true;
            }
        } else if f.fin() || plen > 0 {
            // Data or FIN after the peer's FIN: just acknowledge.
            self.ack_now = true;
        }
        self.maybe_take_fin(now);
    }

    fn sample_rtt(&mut self, now: u64, seg: &TcpRepr) {
        // RFC 7323 4.1 RTTM when timestamps are on; Karn's timed segment otherwise.
        if self.ts_ok {
            if let Some(ts) = seg.timestamp {
                if ts.tsecr != 0 {
                    let echoed_ms = ts.tsecr.wrapping_sub(self.ts_offset) as u64;
                    let now_ms = now / NS_PER_MS;
                    let now_ms32 = now_ms as u32 as u64;
                    if now_ms32 >= echoed_ms && self.retransmits == 0 {
                        self.rtt.sample(((now_ms32 - echoed_ms) * NS_PER_MS).max(1));
                        self.rtt_probe = None;
                        return;
                    }
                }
            }
        }
        if let Some((seq, sent)) = self.rtt_probe {
            if seg.ack_number >= seq {
                self.rtt.sample(now.saturating_sub(sent).max(1));
                self.rtt_probe = None;
            }
        }
    }

    fn process_ack(&mut self, now: u64, seg: &TcpRepr, pure_ack: bool) {
        let ack = seg.ack_number;
        let mss = self.send_mss();
        let sacked_before = self.sacked_bytes();
        if ack > self.snd_una {
            let acked = (ack - self.snd_una) as u32;
            self.sample_rtt(now, seg);
            // Drop acknowledged data (not the SYN or FIN, which are not in sbuf).
            let data_acked = self.sbuf.ack(ack);
            self.snd_una = ack;
            if self.snd_nxt < self.snd_una {
                self.snd_nxt = self.snd_una;
            }
            self.retransmits = 0;
            self.rto_deadline = None;
            if self.snd_una < self.snd_max || self.has_unsent() {
                self.arm_rto(now);
            }
            if self.sack_ok {
                self.update_scoreboard(seg);
            }
            // RFC 5681/6582 congestion control (RFC 6675 in SACK recovery).
            match self.recover {
                Some(r) if self.sack_ok && ack < r => {
                    // SACK recovery continues; pipe and holes drive sending.
                }
                Some(r) if ack < r => {
                    // Partial ACK in fast recovery: retransmit the next hole,
                    // deflate by the amount acknowledged (RFC 6582 3.2 step 5).
                    self.retransmit_one = true;
                    self.cwnd = self.cwnd.saturating_sub(acked).saturating_add(mss);
                }
                Some(_) => {
                    self.recover = None;
                    self.cwnd = self.ssthresh.max(mss);
                }
                None if self.cwnd < self.ssthresh => self.cwnd = self.cwnd.saturating_add(acked.min(mss)),
                None => match self.cfg.congestion {
                    CongestionControl::NewReno => {
                        self.cwnd = self.cwnd.saturating_add((mss * mss / self.cwnd.max(1)).max(1))
                    }
                    CongestionControl::Cubic => {
                        let rtt = self.rtt.srtt().unwrap_or(self.cfg.rto.initial_ns);
                        self.cwnd = self.cubic.on_ack(now, self.cwnd, acked, mss, rtt);
                    }
                },
            }
            self.dup_acks = 0;
            self.limited_transmit = 0;
            if data_acked > 0 {
                self.events.push(Event::Writable);
            }
        } else if self.sack_ok && ack == self.snd_una && self.snd_max > self.snd_una {
            self.update_scoreboard(seg);
            if self.sacked_bytes() > sacked_before {
                self.dup_acks += 1;
            }
            // RFC 6675 5: enter recovery on DupThresh duplicate ACKs, or when
            // DupThresh segments' worth of data above SND.UNA has been SACKed.
            let is_lost = self.sacked_bytes() >= 3 * mss;
            if self.recover.is_none() && (self.dup_acks >= 3 || is_lost) {
                let flight = (self.snd_max - self.snd_una).max(0) as u32;
                self.ssthresh = self.loss_ssthresh(flight);
                self.cwnd = self.ssthresh;
                self.recover = Some(self.snd_max);
                self.high_rxt = self.snd_una;
                self.rtt_probe = None;
                self.limited_transmit = 0;
            } else if self.recover.is_none() && self.dup_acks <= 2 {
                self.limited_transmit += 1;
            }
        } else if ack == self.snd_una
            && pure_ack
            && self.snd_max > self.snd_una
            && self.snd_wnd > 0
            && (seg.window_len as u32) << self.snd_wscale == self.snd_wnd
        {
            // RFC 5681 2: a duplicate ACK. Not the answer to a zero-window
            // probe: what is outstanding then lies beyond the peer's window
            // and is not lost (counting the answers put a persisting sender
            // into fast retransmit after three probes).
            self.dup_acks += 1;
            if self.dup_acks <= 2 && self.recover.is_none() {
                // RFC 3042 Limited Transmit: one new segment per early dup ACK, so
                // a small window can still produce the third dup ACK.
                self.limited_transmit += 1;
            }
            if self.dup_acks == 3 && self.recover.is_none() {
                self.limited_transmit = 0;
                let flight = (self.snd_max - self.snd_una).max(0) as u32;
                self.ssthresh = self.loss_ssthresh(flight);
                self.cwnd = self.ssthresh + 3 * mss;
                self.recover = Some(self.snd_max);
                self.retransmit_one = true;
                self.rtt_probe = None;
            } else if self.dup_acks > 3 {
                self.cwnd = self.cwnd.saturating_add(mss);
            }
        }
        // Window update (RFC 9293 3.10.7.4, SND.WL1/WL2 rule).
        if self.snd_wl1 < seg.seq_number || (self.snd_wl1 == seg.seq_number && self.snd_wl2 <= ack) {
            let was_zero = self.snd_wnd == 0;
            self.snd_wnd = (seg.window_len as u32) << self.snd_wscale;
            if was_zero && self.snd_wnd > 0 {
                self.window_opened(now);
            }
            self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
            self.snd_wl1 = seg.seq_number;
            self.snd_wl2 = ack;
            if self.snd_wnd > 0 && self.has_unsent() && self.rto_deadline.is_none() {
                self.arm_rto(now);
            }
        }
    }

    /// The peer's window opened after being zero (RFC 9293 3.8.6.1 leaves the
    /// persist state). Whatever we sent while it was zero — the probe byte,
    /// or a FIN — lay beyond the peer's window, and a correct receiver
    /// refused it (3.10.7.4: no data is acceptable into a zero window), so
    /// sending resumes from SND.UNA, not SND.NXT; otherwise the refused byte
    /// waits for the retransmission timer at the persist timer's backed-off
    /// value (seconds). The persist backoff is not a path RTT: it is reset,
    /// and the retransmission timer restarts from the unbacked-off RTO.
    fn window_opened(&mut self, now: u64) {
        self.rtt.reset_backoff();
        self.zero_window_probe = false;
        if self.snd_nxt > self.snd_una && self.recover.is_none() {
            self.snd_nxt = self.snd_una;
            self.fin_seq_reset_if_unacked();
            self.scoreboard.clear();
            self.high_rxt = self.snd_una;
            self.rtt_probe = None;
        }
        if self.rto_deadline.is_some() || self.has_unsent() {
            self.rto_deadline = Some(now + self.rtt.rto());
        }
    }

    fn accept_data(&mut self, seq: SeqNumber, payload: Payload<'_>) {
        // Trim what we already have and what is beyond the window.
        let len = payload.bytes().len();
        let skip = (self.rcv_nxt - seq).max(0) as usize;
        if skip >= len {
            return;
        }
        let wnd = self.rcv_wnd() as usize;
        let start = seq + skip as u32;
        let offset = (start - self.rcv_nxt) as usize;
        if offset >= wnd {
            return;
        }
        let end = len.min(skip + wnd - offset);
        if offset == 0 {
            self.rq.push(payload, skip, end);
            self.rcv_nxt = self.rcv_nxt + (end - skip) as u32;
            // Pull in out-of-order data that is now contiguous.
            while let Some((&k, _)) = self.ooo.first_key_value() {
                let k_seq = SeqNumber(k);
                if k_seq > self.rcv_nxt {
                    break;
                }
                let (_, v) = self.ooo.pop_first().expect("first exists");
                self.ooo_bytes -= v.len();
                self.ooo_mbufs -= u32::from(v.is_mbuf());
                let skip = (self.rcv_nxt - k_seq) as usize;
                if skip < v.len() {
                    self.rcv_nxt = self.rcv_nxt + (v.len() - skip) as u32;
                    self.rq.push_segment(v, skip);
                }
            }
            self.events.push(Event::Readable);
        } else {
            // Out of order: keep it and owe an immediate duplicate ACK.
            self.acks_owed += 1;
            if !self.ooo.contains_key(&start.0) {
                let s = Segment::from_payload(payload, skip, end);
                self.ooo_bytes += s.len();
                self.ooo_mbufs += u32::from(s.is_mbuf());
                self.ooo.insert(start.0, s);
            }
        }
    }

    fn maybe_take_fin(&mut self, now: u64) {
        let Some(fin) = self.peer_fin else { return };
        if fin != self.rcv_nxt || self.peer_fin_seen {
            return;
        }
        self.peer_fin_seen = true;
        self.rcv_nxt = self.rcv_nxt + 1;
        self.ack_now = true;
        self.events.push(Event::PeerClosed);
        self.events.push(Event::Readable);
        let our_fin_acked = self.fin_seq.is_some_and(|fs| self.snd_una > fs);
        match self.state {
            State::SynReceived | State::Established => self.state = State::CloseWait,
            State::FinWait1 if our_fin_acked => self.enter_time_wait(now),
            State::FinWait1 => self.state = State::Closing,
            State::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }
}
