//! The listener: explicit backlogs, SYN cookies under a flood, RFC 6528 ISNs.

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::tests_common::cfg;
use super::*;
use crate::wire::{SeqNumber, TcpFlags, TcpRepr};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
const SECRET: [u8; 16] = *b"0123456789abcdef";

fn server_addr() -> SocketAddr {
    "198.18.0.2:80".parse().unwrap()
}

fn client_addr(port: u16) -> SocketAddr {
    SocketAddr::new("198.18.0.1".parse().unwrap(), port)
}

fn flow_at_server(port: u16) -> FlowId {
    FlowId { local: server_addr(), remote: client_addr(port) }
}

fn listen(backlog: usize, syn_backlog: usize, cookies: SynCookies) -> Listener {
    Listener::new(ListenConfig::new(server_addr(), backlog, syn_backlog, 3 * SEC, cookies, cfg()), SECRET).unwrap()
}

/// One client connection against a listener, over a 5 ms link, virtual time.
struct Net {
    now: u64,
    client: Connection,
    port: u16,
    listener: Listener,
    server: Option<Connection>,
    to_server: VecDeque<(u64, TcpRepr, Vec<u8>)>,
    to_client: VecDeque<(u64, TcpRepr, Vec<u8>)>,
}

impl Net {
    fn new(listener: Listener, port: u16, now: u64) -> Net {
        let client =
            Connection::connect(cfg(), Ports { local: port, remote: 80 }, SeqNumber(7 * port as u32), now).unwrap();
        Net { now, client, port, listener, server: None, to_server: VecDeque::new(), to_client: VecDeque::new() }
    }

    fn step(&mut self) {
        let mut buf = vec![0u8; 65536];
        while let Some(t) = self.client.poll_transmit(self.now, &mut buf) {
            self.to_server.push_back((self.now + 5 * MS, t.repr, buf[..t.repr.payload_len].to_vec()));
        }
        while let Some((_, t)) = self.listener.poll_transmit(self.now, &mut buf) {
            self.to_client.push_back((self.now + 5 * MS, t.repr, buf[..t.repr.payload_len].to_vec()));
        }
        if let Some(s) = self.server.as_mut() {
            while let Some(t) = s.poll_transmit(self.now, &mut buf) {
                self.to_client.push_back((self.now + 5 * MS, t.repr, buf[..t.repr.payload_len].to_vec()));
            }
        }
        while self.to_server.front().is_some_and(|(t, ..)| *t <= self.now) {
            let (_, r, p) = self.to_server.pop_front().unwrap();
            match self.server.as_mut() {
                Some(s) => s.handle_segment(self.now, &r, &p),
                None => self.listener.handle_segment(self.now, flow_at_server(self.port), &r, &p),
            }
        }
        while self.to_client.front().is_some_and(|(t, ..)| *t <= self.now) {
            let (_, r, p) = self.to_client.pop_front().unwrap();
            self.client.handle_segment(self.now, &r, &p);
        }
        if self.server.is_none() {
            if let Some((f, c)) = self.listener.accept() {
                assert_eq!(f, flow_at_server(self.port));
                self.server = Some(c);
            }
        }
        let mut next = self.now + MS;
        for t in [self.client.poll_timeout(), self.listener.poll_timeout()].into_iter().flatten() {
            next = next.min(t.max(self.now));
        }
        self.now = next.max(self.now + 1);
        let now = self.now;
        self.client.handle_timeout(now);
        self.listener.handle_timeout(now);
        if let Some(s) = self.server.as_mut() {
            s.handle_timeout(now);
        }
    }

    fn run_until(&mut self, max_ns: u64, mut done: impl FnMut(&mut Net) -> bool) -> bool {
        let end = self.now + max_ns;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    /// Sends a message each way over the accepted connection.
    fn exchange(&mut self) {
        self.client.send(b"ping").unwrap();
        let mut got = Vec::new();
        assert!(self.run_until(5 * SEC, |n| {
            let mut b = [0u8; 64];
            if let Some(s) = n.server.as_mut() {
                let k = s.recv(&mut b).unwrap_or(0);
                got.extend_from_slice(&b[..k]);
            }
            got == b"ping"
        }));
        self.server.as_mut().unwrap().send(b"pong").unwrap();
        let mut got = Vec::new();
        assert!(self.run_until(5 * SEC, |n| {
            let mut b = [0u8; 64];
            let k = n.client.recv(&mut b).unwrap_or(0);
            got.extend_from_slice(&b[..k]);
            got == b"pong"
        }));
    }
}

#[test]
fn handshake_through_the_listener_then_accept_and_exchange() {
    let mut n = Net::new(listen(4, 4, SynCookies::WhenFull), 40000, 0);
    assert!(n.run_until(SEC, |n| n.server.is_some() && n.client.state() == State::Established));
    assert_eq!(n.listener.half_open_len(), 0);
    n.exchange();
    let st = n.listener.stats();
    assert_eq!((st.syns, st.cookies_sent, st.syns_dropped), (1, 0, 0));
}

#[test]
fn rfc4987_syn_flood_at_a_full_backlog_does_not_keep_real_clients_out() {
    let mut l = listen(8, 16, SynCookies::WhenFull);
    // 10,000 spoofed SYNs that never complete.
    for i in 0..10_000u32 {
        let syn = TcpRepr::new(1024 + (i % 60000) as u16, 80, SeqNumber(i), SeqNumber(0), TcpFlags::SYN, 1000);
        let flow =
            FlowId { local: server_addr(), remote: SocketAddr::new([198, 19, (i >> 8) as u8, i as u8].into(), 1024) };
        l.handle_segment(i as u64 * 1000, flow, &syn, &[]);
    }
    assert_eq!(l.half_open_len(), 16, "state is bounded by syn_backlog");
    let mut buf = [0u8; 64];
    let mut replies = 0;
    while l.poll_transmit(10 * MS, &mut buf).is_some() {
        replies += 1;
    }
    let st = l.stats();
    assert_eq!(st.syns, 10_000);
    assert_eq!(st.cookies_sent, 10_000 - 16);
    assert!(replies >= 10_000, "every SYN answered (state or cookie)");
    // A real client still gets in, through a cookie.
    let mut n = Net::new(l, 40001, 20 * MS);
    assert!(n.run_until(5 * SEC, |n| n.server.is_some() && n.client.state() == State::Established));
    assert_eq!(n.listener.stats().cookies_accepted, 1);
    n.exchange();
}

#[test]
fn rfc4987_cookie_connections_are_stateless_and_carry_the_mss() {
    let mut n = Net::new(listen(4, 4, SynCookies::Always), 40002, 0);
    assert!(n.run_until(SEC, |n| n.server.is_some()));
    assert_eq!(n.listener.half_open_len(), 0, "no state kept for the SYN");
    assert_eq!(n.server.as_ref().unwrap().send_mss(), 1460, "MSS recovered from the cookie");
    n.exchange();
}

#[test]
fn forged_or_stale_cookie_acks_are_reset() {
    let mut l = listen(4, 4, SynCookies::Always);
    let ack = TcpRepr::new(40003, 80, SeqNumber(1001), SeqNumber(0xdead_beef), TcpFlags::ACK, 1000);
    l.handle_segment(0, flow_at_server(40003), &ack, &[]);
    assert_eq!(l.stats().cookies_rejected, 1);
    let mut buf = [0u8; 64];
    let (_, rst) = l.poll_transmit(0, &mut buf).unwrap();
    assert!(rst.repr.flags.rst());
    assert_eq!(rst.repr.seq_number, SeqNumber(0xdead_beef), "RFC 9293 3.10.7.1: SEQ = SEG.ACK");
    // A genuine cookie expires after two 64 s slots.
    let syn = TcpRepr::new(40004, 80, SeqNumber(5000), SeqNumber(0), TcpFlags::SYN, 1000);
    l.handle_segment(0, flow_at_server(40004), &syn, &[]);
    let (_, synack) = l.poll_transmit(0, &mut buf).unwrap();
    let late = TcpRepr::new(40004, 80, SeqNumber(5001), synack.repr.seq_number + 1, TcpFlags::ACK, 1000);
    l.handle_segment(200 * SEC, flow_at_server(40004), &late, &[]);
    assert_eq!(l.stats().cookies_rejected, 2);
    assert!(l.accept().is_none());
}

#[test]
fn backlog_full_without_cookies_drops_syns_and_the_client_retries() {
    let mut l = listen(1, 1, SynCookies::Off);
    let syn = TcpRepr::new(50000, 80, SeqNumber(1), SeqNumber(0), TcpFlags::SYN, 1000);
    l.handle_segment(0, flow_at_server(50000), &syn, &[]);
    assert_eq!(l.half_open_len(), 1);
    let mut n = Net::new(l, 40005, 0);
    // The stale half-open entry expires after syn_timeout (3 s); the client's
    // SYN retransmissions (1 s, 2 s, 4 s...) then get through.
    assert!(n.run_until(20 * SEC, |n| n.server.is_some() && n.client.state() == State::Established));
    let st = n.listener.stats();
    assert!(st.syns_dropped >= 1, "{st:?}");
    assert_eq!(st.half_open_expired, 1);
    n.exchange();
}

#[test]
fn rfc9293_3_10_7_1_segments_for_no_connection_get_a_reset() {
    let mut l = listen(4, 4, SynCookies::Off);
    let data =
        TcpRepr { payload_len: 10, ..TcpRepr::new(40006, 80, SeqNumber(100), SeqNumber(0), TcpFlags::PSH, 1000) };
    l.handle_segment(0, flow_at_server(40006), &data, &[0; 10]);
    let mut buf = [0u8; 64];
    let (_, rst) = l.poll_transmit(0, &mut buf).unwrap();
    assert!(rst.repr.flags.rst() && rst.repr.flags.ack());
    assert_eq!((rst.repr.seq_number, rst.repr.ack_number), (SeqNumber(0), SeqNumber(110)));
    let r = TcpRepr::new(40006, 80, SeqNumber(100), SeqNumber(0), TcpFlags::RST, 0);
    l.handle_segment(0, flow_at_server(40006), &r, &[]);
    assert!(l.poll_transmit(0, &mut buf).is_none(), "never reset a reset");
}

#[test]
fn rfc6528_isns_differ_per_flow_and_advance_with_time() {
    let l = listen(4, 4, SynCookies::Off);
    let (a, b) = (flow_at_server(1000), flow_at_server(1001));
    assert_ne!(l.isn(&a, 0), l.isn(&b, 0));
    assert_eq!(l.isn(&a, 4_000_000) - l.isn(&a, 0), 1000, "one tick per 4 µs");
    let other = Listener::new(ListenConfig::new(server_addr(), 4, 4, SEC, SynCookies::Off, cfg()), [7; 16]).unwrap();
    assert_ne!(l.isn(&a, 0), other.isn(&a, 0), "keyed by the secret");
}

#[test]
fn listen_config_errors_name_the_field() {
    let e = |c: ListenConfig| Listener::new(c, SECRET).err().unwrap().field().to_string();
    assert_eq!(e(ListenConfig::new(server_addr(), 0, 4, SEC, SynCookies::Off, cfg())), "backlog");
    assert_eq!(e(ListenConfig::new(server_addr(), 4, 0, SEC, SynCookies::Off, cfg())), "syn_backlog");
    assert_eq!(e(ListenConfig::new(server_addr(), 4, 4, 0, SynCookies::Off, cfg())), "syn_timeout");
    assert_eq!(e(ListenConfig::new("198.18.0.1:0".parse().unwrap(), 4, 4, SEC, SynCookies::Off, cfg())), "addr");
}
