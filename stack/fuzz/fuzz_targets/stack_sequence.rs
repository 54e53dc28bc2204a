//! Structure-aware fuzzing of a whole `Stack` through its sans-IO entry.
//!
//! Random bytes almost never carry valid Ethernet/IP/TCP checksums and our
//! addresses, so `frame_input` plateaus in the parsers. Here the fuzzer's bytes
//! are decoded (`arbitrary`) into a *script* of typed steps: frames built from
//! `Repr` values through `emit` (correct checksums, our MAC and addresses),
//! with TCP sequence and acknowledgment numbers taken from a model of each
//! connection that follows what the stack sent, so handshakes complete and the
//! connections walk through every state; IPv4 and IPv6 fragments so that
//! reassembly runs; application calls (accept, send, recv, shutdown, close,
//! abort, connect); the virtual clock moving (retransmission, TIME-WAIT,
//! reassembly and neighbour timeouts); and a few corruptions on top (a flipped
//! byte, a truncation, fully raw bytes).
//!
//! Each input runs on a fresh stack and pool, so a crash replays from its
//! input alone. Invariants checked after every input: no panic; every frame
//! fed is counted (`events.rx_frames`), every frame taken from `output` was
//! counted as sent (`events.tx_frames`); and once every handle is closed or
//! aborted, the clock run past every timeout and the stack dropped, every
//! mbuf is back in its pool.
//!
//! Run from `stack/`: `cargo +nightly fuzz run stack_sequence` (or
//! `scripts/fuzz.sh stack_sequence SECONDS`).
#![no_main]

#[path = "../../tests/frames/mod.rs"]
mod frames;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use arbitrary::{Arbitrary, Unstructured};
use frames::*;
use libfuzzer_sys::fuzz_target;
use pmd::{MacAddr, Mbuf, Mempool, MempoolConfig};
use stack::wire::{
    ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr, Icmpv6Packet, Icmpv6Repr, IpPair,
    IpProtocol, Ipv4Packet, Ipv4Repr, Ipv6FragmentHeader, Ipv6FragmentRepr, Ipv6Packet, Ipv6Repr, NdpOption,
    NdpOptions, SeqNumber, TcpFlags, TcpPacket, TcpRepr, TcpTimestamp,
};
use stack::{
    CongestionControl, ListenConfig, RtoConfig, Stack, StackConfig, SynCookies, TcpConfig, TcpHandle,
    TcpListenerHandle, UdpConfig,
};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
const POOL: usize = 1024;
const OUR_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const PEER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const LISTEN_PORT: u16 = 80;
const UDP_PORT: u16 = 5000;
/// The peer's ports of the passive connections the script may open.
const PEER_PORTS: [u16; 4] = [40000, 40001, 40002, 40003];
/// The peer's port that the stack's active opens go to.
const SERVER_PORT: u16 = 8080;

fn ours4() -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 2)
}
fn peer4() -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 1)
}
fn ours6() -> Ipv6Addr {
    "2001:2::2".parse().unwrap()
}
fn peer6() -> Ipv6Addr {
    "2001:2::1".parse().unwrap()
}

fn tcp_cfg() -> TcpConfig {
    TcpConfig {
        mss: 536,
        send_buffer: 8 * 1024,
        recv_buffer: 8 * 1024,
        rto: RtoConfig { initial_ns: SEC, min_ns: 200 * MS, max_ns: 4 * SEC },
        max_retransmits: 4,
        syn_retries: 2,
        time_wait_ns: SEC,
        window_scale: Some(2),
        timestamps: true,
        sack: true,
        nagle: false,
        delayed_ack_ns: Some(40 * MS),
        keepalive: None,
        congestion: CongestionControl::Cubic,
        challenge_ack_limit: 10,
        default_peer_mss: 536,
    }
}

fn config() -> StackConfig {
    StackConfig {
        ipv4: vec!["198.18.0.2/24".parse().unwrap()],
        ipv6: vec!["2001:2::2/64".parse().unwrap()],
        gateway_v4: Some("198.18.0.254".parse().unwrap()),
        ..stack::profiles::fuzz(OUR_MAC)
    }
}

/// How a sequence or acknowledgment number is chosen: the one the model
/// expects (most of the time, so handshakes and data flow), near it (old
/// duplicates, future segments, RFC 5961 challenge paths), or anything.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Num {
    Exact,
    Exact2,
    Exact3,
    Plus(u16),
    Minus(u16),
    Any(u32),
}

impl Num {
    fn pick(self, expected: u32) -> u32 {
        match self {
            Num::Exact | Num::Exact2 | Num::Exact3 => expected,
            Num::Plus(d) => expected.wrapping_add(u32::from(d)),
            Num::Minus(d) => expected.wrapping_sub(u32::from(d)),
            Num::Any(x) => x,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Flags {
    Syn,
    SynAck,
    Ack,
    AckPsh,
    FinAck,
    Rst,
    RstAck,
    Bits(u8),
}

impl Flags {
    fn flags(self) -> TcpFlags {
        let f = |v: u16| TcpFlags(v);
        match self {
            Flags::Syn => TcpFlags::SYN,
            Flags::SynAck => f(TcpFlags::SYN.0 | TcpFlags::ACK.0),
            Flags::Ack => TcpFlags::ACK,
            Flags::AckPsh => f(TcpFlags::ACK.0 | TcpFlags::PSH.0),
            Flags::FinAck => f(TcpFlags::FIN.0 | TcpFlags::ACK.0),
            Flags::Rst => TcpFlags::RST,
            Flags::RstAck => f(TcpFlags::RST.0 | TcpFlags::ACK.0),
            Flags::Bits(b) => f(u16::from(b)),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
struct Segment {
    /// Which connection of the model (passive ones, then active ones).
    conn: u8,
    flags: Flags,
    seq: Num,
    ack: Num,
    len: u8,
    window: u16,
    mss: Option<u16>,
    window_scale: Option<u8>,
    sack_permitted: bool,
    sack: Option<(u16, u16)>,
    timestamp: Option<(u32, u32)>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Corruption {
    None,
    None2,
    None3,
    None4,
    Flip(u16, u8),
    Truncate(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum App {
    Accept,
    Send(u8, u16),
    Recv(u8, u16),
    Shutdown(u8),
    Close(u8),
    Abort(u8),
    Connect(bool),
}

#[derive(Arbitrary, Debug, Clone)]
enum Step {
    Tcp(Segment, Corruption),
    Tcp2(Segment, Corruption),
    Tcp3(Segment, Corruption),
    App(App),
    App2(App),
    Advance(u16),
    Arp { request: bool, sender: u8, target_ours: bool },
    Ping { v6: bool, len: u8 },
    Udp { v6: bool, to_socket: bool, len: u8, corruption: Corruption },
    Frag4 { ident: u8, offset: u8, more: bool, len: u8, proto_udp: bool },
    Frag6 { ident: u8, offset: u8, more: bool, len: u8 },
    Neighbor { solicit: bool, with_lladdr: bool },
    Raw(Vec<u8>),
}

/// One TCP connection as the peer sees it.
#[derive(Debug, Clone, Copy)]
struct Conn {
    v6: bool,
    peer_port: u16,
    our_port: u16,
    /// The peer's next sequence number.
    peer_nxt: u32,
    /// The highest sequence number the stack has sent up to (its SND.NXT).
    our_nxt: u32,
    /// The last TSval the stack sent, echoed back.
    ts_recent: u32,
}

struct Harness {
    pool: Mempool,
    stack: Stack,
    now: u64,
    fed: u64,
    taken: u64,
    listener: TcpListenerHandle,
    handles: Vec<TcpHandle>,
    conns: Vec<Conn>,
    /// Answer the stack's neighbour solicitations on the next step.
    answer_arp: bool,
    answer_ns: bool,
}

impl Harness {
    fn new() -> Harness {
        let pool = Mempool::new(&MempoolConfig::new("fuzz", POOL, 2048, 0, 0)).unwrap();
        let mut stack = Stack::new(config(), pool.clone(), 0).unwrap();
        stack.tcp().set_secret([7; 16]);
        let listener = stack
            .tcp()
            .listen(ListenConfig::new(
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), LISTEN_PORT),
                4,
                4,
                5 * SEC,
                SynCookies::WhenFull,
                tcp_cfg(),
            ))
            .unwrap();
        stack
            .udp()
            .bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), UDP_PORT), UdpConfig { rx_queue_len: 4 })
            .unwrap();
        let mut conns = Vec::new();
        for (i, &p) in PEER_PORTS.iter().enumerate() {
            conns.push(Conn {
                v6: i % 2 == 1,
                peer_port: p,
                our_port: LISTEN_PORT,
                peer_nxt: 1000 * (i as u32 + 1),
                our_nxt: 0,
                ts_recent: 0,
            });
        }
        let mut h = Harness {
            pool,
            stack,
            now: 0,
            fed: 0,
            taken: 0,
            listener,
            handles: Vec::new(),
            conns,
            answer_arp: false,
            answer_ns: false,
        };
        // The peer makes itself known, so replies need no resolution first.
        h.feed(arp(ArpOperation::Request, PEER_MAC, peer4(), ours4()));
        h.feed(ns_frame(PEER_MAC, peer6(), ours6()));
        h.drain();
        h
    }

    fn feed(&mut self, frame: Vec<u8>) {
        let mut m = self.pool.alloc().expect("the pool is sized for the stack's limits");
        if m.extend_from_slice(&frame).is_none() {
            return;
        }
        self.fed += 1;
        self.stack.input(self.now, &mut vec![m]);
    }

    /// Takes every frame the stack sends and updates the model from them.
    fn drain(&mut self) {
        self.stack.poll_timers(self.now);
        let out: Vec<Mbuf> = std::mem::take(self.stack.output(self.now));
        self.taken += out.len() as u64;
        for m in &out {
            self.observe(m.data());
        }
    }

    fn observe(&mut self, f: &[u8]) {
        let Ok(eth) = EthernetFrame::new_checked(f) else { return };
        let Ok(er) = EthernetRepr::parse(&eth) else { return };
        let payload = &f[er.header_len()..];
        let (ip, l4, proto) = match er.ethertype {
            EtherType::Arp => {
                self.answer_arp = true;
                return;
            }
            EtherType::Ipv4 => {
                let Ok(p) = Ipv4Packet::new_checked(payload) else { return };
                let Ok(r) = Ipv4Repr::parse(&p, &SW) else { return };
                let hl = r.header_len();
                (IpPair::V4 { src: r.src_addr, dst: r.dst_addr }, &payload[hl..hl + r.payload_len], r.protocol)
            }
            EtherType::Ipv6 => {
                let Ok(p) = Ipv6Packet::new_checked(payload) else { return };
                let Ok(r) = Ipv6Repr::parse(&p) else { return };
                if r.next_header == IpProtocol::Icmpv6 {
                    self.answer_ns = true;
                }
                (IpPair::V6 { src: r.src_addr, dst: r.dst_addr }, &payload[40..40 + r.payload_len], r.next_header)
            }
            _ => return,
        };
        if proto != IpProtocol::Tcp {
            return;
        }
        let Ok(p) = TcpPacket::new_checked(l4) else { return };
        let Ok(t) = TcpRepr::parse(&p, &ip, &SW) else { return };
        let v6 = matches!(ip, IpPair::V6 { .. });
        let end = t.seq_number.0.wrapping_add(t.segment_len() as u32);
        let i =
            match self.conns.iter().position(|c| c.v6 == v6 && c.peer_port == t.dst_port && c.our_port == t.src_port) {
                Some(i) => i,
                None => {
                    // An active open of the stack: the peer learns it.
                    if !t.flags.syn() || self.conns.len() >= 12 {
                        return;
                    }
                    self.conns.push(Conn {
                        v6,
                        peer_port: t.dst_port,
                        our_port: t.src_port,
                        peer_nxt: 77_000,
                        our_nxt: end,
                        ts_recent: 0,
                    });
                    return;
                }
            };
        let c = &mut self.conns[i];
        if t.flags.syn() || (end.wrapping_sub(c.our_nxt) as i32) > 0 {
            c.our_nxt = end;
        }
        if let Some(ts) = t.timestamp {
            c.ts_recent = ts.tsval;
        }
    }

    fn tcp(&mut self, s: Segment, corruption: Corruption) {
        if self.conns.is_empty() {
            return;
        }
        let i = usize::from(s.conn) % self.conns.len();
        let c = self.conns[i];
        let flags = s.flags.flags();
        let mut r = TcpRepr::new(
            c.peer_port,
            c.our_port,
            SeqNumber(s.seq.pick(c.peer_nxt)),
            SeqNumber(s.ack.pick(c.our_nxt)),
            flags,
            s.window,
        );
        r.max_seg_size = s.mss;
        r.window_scale = s.window_scale;
        r.sack_permitted = s.sack_permitted;
        if let Some((a, b)) = s.sack {
            let l = c.our_nxt.wrapping_sub(u32::from(a));
            r.sack_ranges[0] = Some((SeqNumber(l), SeqNumber(l.wrapping_add(u32::from(b)))));
        }
        r.timestamp =
            s.timestamp.map(|(v, e)| TcpTimestamp { tsval: v, tsecr: if e % 4 == 0 { e } else { c.ts_recent } });
        let len = usize::from(s.len) * 4;
        r.payload_len = len;
        if matches!(s.seq, Num::Exact | Num::Exact2 | Num::Exact3) {
            self.conns[i].peer_nxt = c.peer_nxt.wrapping_add(r.segment_len() as u32);
        }
        let ip =
            if c.v6 { IpPair::V6 { src: peer6(), dst: ours6() } } else { IpPair::V4 { src: peer4(), dst: ours4() } };
        let mut b = vec![0u8; r.buffer_len()];
        for (k, x) in b[r.header_len()..].iter_mut().enumerate() {
            *x = k as u8;
        }
        r.emit(&mut TcpPacket::new_unchecked(&mut b[..]), &ip, &SW);
        let frame = if c.v6 {
            eth(PEER_MAC, OUR_MAC, EtherType::Ipv6, &ipv6(peer6(), ours6(), IpProtocol::Tcp, 64, &b))
        } else {
            eth(PEER_MAC, OUR_MAC, EtherType::Ipv4, &ipv4(peer4(), ours4(), IpProtocol::Tcp, 9, 0, false, &b))
        };
        self.feed(corrupt(frame, corruption));
    }

    fn app(&mut self, a: App) {
        let pick = |hs: &Vec<TcpHandle>, i: u8| (!hs.is_empty()).then(|| hs[usize::from(i) % hs.len()]);
        match a {
            App::Accept => {
                if let Ok(h) = self.stack.tcp().accept(self.listener) {
                    self.handles.push(h);
                }
            }
            App::Send(i, n) => {
                if let Some(h) = pick(&self.handles, i) {
                    let data = vec![0x5a; usize::from(n) % 4096];
                    let _ = self.stack.tcp().send(h, &data);
                }
            }
            App::Recv(i, n) => {
                if let Some(h) = pick(&self.handles, i) {
                    let mut buf = vec![0; usize::from(n) % 8192];
                    let _ = self.stack.tcp().recv(h, &mut buf);
                }
            }
            App::Shutdown(i) => {
                if let Some(h) = pick(&self.handles, i) {
                    let _ = self.stack.tcp().shutdown(h);
                }
            }
            App::Close(i) | App::Abort(i) => {
                if !self.handles.is_empty() {
                    let h = self.handles.remove(usize::from(i) % self.handles.len());
                    if matches!(a, App::Close(_)) {
                        self.stack.tcp().close(h);
                    } else {
                        self.stack.tcp().abort(h);
                    }
                }
            }
            App::Connect(v6) => {
                if self.handles.len() < 8 {
                    let to = if v6 { IpAddr::V6(peer6()) } else { IpAddr::V4(peer4()) };
                    if let Ok(h) = self.stack.tcp().connect(SocketAddr::new(to, SERVER_PORT), tcp_cfg()) {
                        self.handles.push(h);
                    }
                }
            }
        }
    }

    fn step(&mut self, s: Step) {
        match s {
            Step::Tcp(seg, c) | Step::Tcp2(seg, c) | Step::Tcp3(seg, c) => self.tcp(seg, c),
            Step::App(a) | Step::App2(a) => self.app(a),
            Step::Advance(ms) => self.now += u64::from(ms) * MS,
            Step::Arp { request, sender, target_ours } => {
                let op = if request { ArpOperation::Request } else { ArpOperation::Reply };
                let mac = MacAddr([2, 0, 0, 0, 1, sender]);
                let spa = Ipv4Addr::new(198, 18, 0, sender);
                let tpa = if target_ours { ours4() } else { Ipv4Addr::new(198, 18, 0, 200) };
                self.feed(arp(op, mac, spa, tpa));
            }
            Step::Ping { v6, len } => {
                let data = vec![0x11; usize::from(len)];
                self.feed(if v6 {
                    icmp6_echo_frame(PEER_MAC, OUR_MAC, peer6(), ours6(), &data)
                } else {
                    icmp4_echo_frame(PEER_MAC, OUR_MAC, peer4(), ours4(), &data)
                });
            }
            Step::Udp { v6, to_socket, len, corruption } => {
                let data = vec![0x22; usize::from(len)];
                let port = if to_socket { UDP_PORT } else { 9 };
                let f = if v6 {
                    udp_frame(PEER_MAC, OUR_MAC, IpPair::V6 { src: peer6(), dst: ours6() }, 7, port, &data)
                } else {
                    udp_frame(PEER_MAC, OUR_MAC, IpPair::V4 { src: peer4(), dst: ours4() }, 7, port, &data)
                };
                self.feed(corrupt(f, corruption));
            }
            Step::Frag4 { ident, offset, more, len, proto_udp } => {
                let proto = if proto_udp { IpProtocol::Udp } else { IpProtocol::Icmp };
                let data: Vec<u8> = (0..usize::from(len) * 8 + usize::from(!more)).map(|k| k as u8).collect();
                let p = ipv4(peer4(), ours4(), proto, u16::from(ident % 4), u16::from(offset) * 8, more, &data);
                self.feed(eth(PEER_MAC, OUR_MAC, EtherType::Ipv4, &p));
            }
            Step::Frag6 { ident, offset, more, len } => {
                let data: Vec<u8> = (0..usize::from(len) * 8 + usize::from(!more)).map(|k| k as u8).collect();
                let fr = Ipv6FragmentRepr {
                    next_header: IpProtocol::Udp,
                    frag_offset: u16::from(offset) * 8,
                    more_frags: more,
                    ident: u32::from(ident % 4),
                };
                let mut b = vec![0u8; 8 + data.len()];
                fr.emit(&mut Ipv6FragmentHeader::new_unchecked(&mut b[..8]));
                b[8..].copy_from_slice(&data);
                let p = ipv6(peer6(), ours6(), IpProtocol::Ipv6Frag, 64, &b);
                self.feed(eth(PEER_MAC, OUR_MAC, EtherType::Ipv6, &p));
            }
            Step::Neighbor { solicit, with_lladdr } => {
                if solicit {
                    self.feed(ns_frame(PEER_MAC, peer6(), ours6()));
                } else {
                    self.feed(na_frame(peer6(), with_lladdr));
                }
            }
            Step::Raw(b) => self.feed(b),
        }
        if std::mem::take(&mut self.answer_arp) {
            self.feed(arp(ArpOperation::Reply, PEER_MAC, peer4(), ours4()));
        }
        if std::mem::take(&mut self.answer_ns) {
            self.feed(na_frame(peer6(), true));
        }
        self.drain();
    }

    /// Closes everything, runs the clock past every timeout and checks the
    /// invariants.
    fn finish(mut self) {
        for h in std::mem::take(&mut self.handles) {
            self.stack.tcp().abort(h);
        }
        while let Ok(h) = self.stack.tcp().accept(self.listener) {
            self.stack.tcp().abort(h);
        }
        for _ in 0..4 {
            self.now += 30 * SEC;
            self.drain();
        }
        let st = self.stack.stats();
        assert_eq!(st.events.rx_frames, self.fed, "every frame fed is counted as received");
        assert_eq!(st.events.tx_frames, self.taken, "every frame taken from output was counted as sent");
        drop(self.stack);
        assert_eq!(self.pool.available(), POOL, "an mbuf leaked");
    }
}

fn arp(op: ArpOperation, mac: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let r = ArpRepr {
        operation: op,
        source_hardware_addr: mac,
        source_protocol_addr: spa,
        target_hardware_addr: if op == ArpOperation::Reply { OUR_MAC } else { MacAddr::UNSPECIFIED },
        target_protocol_addr: tpa,
    };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut ArpPacket::new_unchecked(&mut b[..]));
    let dst = if op == ArpOperation::Reply { OUR_MAC } else { MacAddr::BROADCAST };
    eth(mac, dst, EtherType::Arp, &b)
}

fn na_frame(from: Ipv6Addr, with_lladdr: bool) -> Vec<u8> {
    let opts = [NdpOption::TargetLinkLayerAddr(PEER_MAC)];
    let options = NdpOptions::List(if with_lladdr { &opts[..] } else { &[] });
    let r = Icmpv6Repr::NeighborAdvert { router: false, solicited: true, override_: true, target: from, options };
    let mut b = vec![0u8; r.buffer_len()];
    r.emit(&mut Icmpv6Packet::new_unchecked(&mut b[..]), &from, &ours6(), &SW);
    eth(PEER_MAC, OUR_MAC, EtherType::Ipv6, &ipv6(from, ours6(), IpProtocol::Icmpv6, 255, &b))
}

fn corrupt(mut f: Vec<u8>, c: Corruption) -> Vec<u8> {
    match c {
        Corruption::Flip(at, x) => {
            let n = f.len();
            f[usize::from(at) % n] ^= x.max(1);
        }
        Corruption::Truncate(k) => {
            let n = f.len();
            f.truncate(n - usize::from(k) % n);
        }
        _ => {}
    }
    f
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut h = Harness::new();
    let mut steps = 0;
    while !u.is_empty() && steps < 256 {
        let Ok(s) = Step::arbitrary(&mut u) else { break };
        h.step(s);
        steps += 1;
    }
    h.finish();
});
