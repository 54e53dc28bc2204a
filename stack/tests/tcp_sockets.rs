//! TCP through the whole stack: two stacks over an in-memory wire (optionally
//! impaired) in virtual time, talking through `tcp_listen` / `tcp_connect`.
//! Every test checks byte-exact delivery, the RFC 9293 end states, and that
//! every buffer went back to the pool.

mod net;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use pmd::Clock;

use net::*;
use proptest::prelude::*;
use stack::{
    CongestionControl, ListenConfig, RtoConfig, StackError, SynCookies, TcpConfig, TcpHandle, TcpListenerHandle,
    TcpSocketError, TcpState,
};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

fn tcp_cfg() -> TcpConfig {
    TcpConfig {
        mss: 1460,
        send_buffer: 256 * 1024,
        recv_buffer: 256 * 1024,
        rto: RtoConfig { initial_ns: SEC, min_ns: 20 * MS, max_ns: 10 * SEC },
        max_retransmits: 12,
        syn_retries: 5,
        time_wait_ns: 2 * SEC,
        window_scale: Some(7),
        timestamps: true,
        sack: true,
        nagle: false,
        delayed_ack_ns: Some(5 * MS),
        keepalive: None,
        congestion: CongestionControl::Cubic,
        challenge_ack_limit: 100,
        default_peer_mss: 536,
    }
}

fn listen(p: &mut Pair, port: u16, backlog: usize) -> TcpListenerHandle {
    let addr: SocketAddr = format!("[::]:{port}").parse().unwrap();
    p.b.tcp().set_secret([7; 16]);
    p.b.tcp().listen(ListenConfig::new(addr, backlog, 64, 5 * SEC, SynCookies::WhenFull, tcp_cfg())).unwrap()
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

/// Client on `a` sends `data` to a server on `b`, which echoes every byte
/// back; both close when done. Returns what the client got back.
fn echo_transfer(p: &mut Pair, server_ip: IpAddr, data: &[u8], limit: Duration) -> Vec<u8> {
    let l = listen(p, 7, 16);
    p.a.tcp().set_secret([3; 16]);
    let c = p.a.tcp().connect(SocketAddr::new(server_ip, 7), tcp_cfg()).unwrap();
    let mut server: Option<TcpHandle> = None;
    let mut sent = 0;
    let mut back = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut client_closed = false;
    let mut server_done = false;
    let mut buf = vec![0u8; 64 * 1024];
    let end = p.clock.now_ns() + limit.as_nanos() as u64;
    while p.clock.now_ns() < end {
        p.clock.advance_ns(50_000);
        p.a.poll();
        p.b.poll();
        // Client: write what fits, read the echo.
        if sent < data.len() && !client_closed {
            match p.a.tcp().send(c, &data[sent..]) {
                Ok(n) => sent += n,
                Err(TcpSocketError::WouldBlock) => {}
                Err(e) => panic!("client send: {e}"),
            }
        }
        if !client_closed {
            loop {
                match p.a.tcp().recv(c, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => back.extend_from_slice(&buf[..n]),
                    Err(TcpSocketError::WouldBlock) => break,
                    Err(e) => panic!("client recv: {e}"),
                }
            }
        }
        if back.len() == data.len() && !client_closed {
            p.a.tcp().close(c);
            client_closed = true;
        }
        // Server: accept, echo, close at end of stream.
        if server.is_none() {
            if let Ok(s) = p.b.tcp().accept(l) {
                server = Some(s);
            }
        }
        if let (Some(s), false) = (server, server_done) {
            while !pending.is_empty() {
                match p.b.tcp().send(s, &pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(TcpSocketError::WouldBlock) => break,
                    Err(e) => panic!("server send: {e}"),
                }
            }
            if pending.is_empty() {
                match p.b.tcp().recv(s, &mut buf) {
                    Ok(0) => {
                        p.b.tcp().close(s);
                        server_done = true;
                    }
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                    Err(TcpSocketError::WouldBlock) => {}
                    Err(e) => panic!("server recv: {e}"),
                }
            }
        }
        if client_closed && server_done && p.a.tcp().connections() == 0 && p.b.tcp().connections() == 0 {
            break;
        }
    }
    assert!(client_closed && server_done, "transfer incomplete: sent {sent}, echoed {}", back.len());
    assert_eq!(p.a.tcp().connections(), 0, "client connection never reached CLOSED (TIME-WAIT expiry)");
    assert_eq!(p.b.tcp().connections(), 0, "server connection never reached CLOSED");
    p.b.tcp().unlisten(l);
    back
}

#[test]
fn rfc9293_echo_over_ipv4_ends_closed_and_leaks_nothing() {
    let mut p = Pair::new("tcpe4", "", "");
    let data = pattern(300_000, 1);
    let back = echo_transfer(&mut p, IpAddr::V4(b4()), &data, Duration::from_secs(30));
    assert_eq!(back, data);
    assert!(p.a.stats().events.tcp_segments_sent > 200);
    assert_eq!(p.a.stats().malformed_total() + p.b.stats().malformed_total(), 0);
    p.finish();
}

#[test]
fn rfc9293_echo_over_ipv6_ends_closed_and_leaks_nothing() {
    let mut p = Pair::new("tcpe6", "", "");
    let data = pattern(200_000, 2);
    let back = echo_transfer(&mut p, IpAddr::V6(b6()), &data, Duration::from_secs(30));
    assert_eq!(back, data);
    p.finish();
}

#[test]
fn echo_over_lossy_duplicating_reordering_corrupting_wire() {
    let imp = "&loss=0.1&dup=0.02&reorder=0.05&corrupt=0.01&delay_us=300";
    let mut p = Pair::new("tcplossy", &format!("{imp}&seed=11"), &format!("{imp}&seed=12"));
    let data = pattern(150_000, 3);
    let back = echo_transfer(&mut p, IpAddr::V4(b4()), &data, Duration::from_secs(300));
    assert_eq!(back, data);
    // Corrupted frames were caught by checksums, not delivered.
    assert!(p.a.stats().malformed_total() + p.b.stats().malformed_total() > 0);
    p.finish();
}

#[test]
fn checksum_offload_wire_still_catches_every_corruption() {
    // ring csum=1: TCP checksums travel partial and are trusted, as on Linux
    // loopback; the impairment finishes them before flipping a bit and clears
    // the verdicts, so the receiving stack verifies and drops what it flipped.
    let imp = "&loss=0.05&reorder=0.05&corrupt=0.02&delay_us=300";
    let mut p = Pair::csum("tcpcsum", &format!("{imp}&seed=21"), &format!("{imp}&seed=22"));
    let data = pattern(200_000, 4);
    let back = echo_transfer(&mut p, IpAddr::V4(b4()), &data, Duration::from_secs(300));
    assert_eq!(back, data);
    let bad = p.a.stats().malformed_count(stack::wire::Error::BadChecksum)
        + p.b.stats().malformed_count(stack::wire::Error::BadChecksum);
    assert!(bad > 0, "corrupted frames were caught by checksums");
    p.finish();
}

#[test]
fn checksum_offload_wire_carries_data_without_software_checksums() {
    let mut p = Pair::csum("tcpcsum0", "", "");
    let data = pattern(300_000, 5);
    let back = echo_transfer(&mut p, IpAddr::V4(b4()), &data, Duration::from_secs(30));
    assert_eq!(back, data);
    assert_eq!(p.a.stats().malformed_total() + p.b.stats().malformed_total(), 0);
    p.finish();
}

/// Sends `data` from `a` to a server on `b` that reads nothing until told to.
fn unread_stream(p: &mut Pair, port: u16, data: &[u8]) -> (TcpHandle, TcpHandle) {
    let addr: SocketAddr = format!("[::]:{port}").parse().unwrap();
    let mut cfg = tcp_cfg();
    cfg.recv_buffer = 2 << 20;
    cfg.send_buffer = 2 << 20;
    let l = p.b.tcp().listen(ListenConfig::new(addr, 4, 4, 5 * SEC, SynCookies::WhenFull, cfg.clone())).unwrap();
    let c = p.a.tcp().connect(SocketAddr::new(IpAddr::V4(b4()), port), cfg).unwrap();
    let mut sent = 0;
    let mut server = None;
    let end = p.clock.now_ns() + 60 * SEC;
    while p.clock.now_ns() < end && (sent < data.len() || server.is_none()) {
        p.run(Duration::from_millis(1));
        if sent < data.len() {
            sent += p.a.tcp().send(c, &data[sent..]).unwrap_or(0);
        }
        if server.is_none() {
            server = p.b.tcp().accept(l).ok();
        }
    }
    let s = server.expect("accepted");
    // Let everything that fits the window arrive.
    let end = p.clock.now_ns() + 60 * SEC;
    while p.clock.now_ns() < end && p.b.tcp().recv_available(s).unwrap() < data.len() {
        p.run(Duration::from_millis(1));
    }
    (c, s)
}

#[test]
fn unread_received_data_cannot_exhaust_the_pool() {
    // Each receiver's window (2 MiB) is more than half the pool (4096 buffers
    // of 2 KiB): kept as mbufs, three unread streams would take every buffer
    // and nothing could be sent or received any more. tcp_rx_mbufs caps what
    // is kept; beyond it payloads are copied and their buffers freed.
    let cap = POOL / 4;
    let mut p = Pair::with("tcpheld", "", "", |_| {}, |b| b.tcp_rx_mbufs = cap);
    let streams: Vec<Vec<u8>> = (0..3).map(|i| pattern(1_800_000, 40 + i)).collect();
    let mut ends = Vec::new();
    for (i, d) in streams.iter().enumerate() {
        ends.push(unread_stream(&mut p, 9000 + i as u16, d));
        assert!(p.b.tcp().rx_mbufs_held() <= cap, "held {} > {cap}", p.b.tcp().rx_mbufs_held());
    }
    assert_eq!(p.b.tcp().rx_mbufs_held(), cap, "the cap was reached");
    assert!(p.b.stats().events.tcp_rx_mbuf_limit > 0, "payloads beyond the cap were copied");
    assert!(p.pool.available() >= POOL - cap - 64, "the pool still serves the port");
    // The port still carries new connections and data while all that waits.
    let mut streams = streams;
    streams.push(pattern(300_000, 9));
    ends.push(unread_stream(&mut p, 9100, &streams[3]));
    // Reading gives every byte, in order, and releases every buffer.
    let mut buf = vec![0u8; 100_000];
    for ((c, s), d) in ends.into_iter().zip(&streams) {
        let mut got = Vec::new();
        while let Ok(n) = p.b.tcp().recv(s, &mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&got, d);
        p.a.tcp().close(c);
        p.b.tcp().close(s);
    }
    assert_eq!(p.b.tcp().rx_mbufs_held(), 0);
    p.run(Duration::from_secs(3));
    p.finish();
}

#[test]
fn rx_mbufs_over_half_the_pool_is_refused_naming_the_field() {
    let pool = pool("tcpheldcfg");
    let clock = pmd::VirtualClock::new();
    let mut e = open("ring:tcpheldcfg", &pool, &clock);
    let mut cfg = config(e.port.info().mac, &[A4], &[]);
    cfg.tcp_rx_mbufs = POOL / 2 + 1;
    let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(clock);
    let err = stack::Driver::new(cfg, e.rx.take().unwrap(), e.tx.take().unwrap(), pool.clone(), clock).err().unwrap();
    assert!(err.to_string().contains("tcp.rx_mbufs"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]
    #[test]
    fn any_seed_any_size_delivers_exactly(seed in 0u64..1_000_000, size in 1usize..60_000, loss in 0u32..20) {
        let imp = format!("&loss={}&reorder=0.03&dup=0.01&delay_us=200", f64::from(loss) / 100.0);
        let name = format!("tcpprop{seed}x{size}");
        let mut p = Pair::new(&name, &format!("{imp}&seed={seed}"), &format!("{imp}&seed={}", seed + 1));
        let data = pattern(size, seed as u8);
        let back = echo_transfer(&mut p, IpAddr::V4(b4()), &data, Duration::from_secs(600));
        prop_assert_eq!(back, data);
        p.finish();
    }
}

#[test]
fn rfc9293_3_10_7_1_connect_to_closed_port_is_refused() {
    let mut p = Pair::new("tcpref", "", "");
    let c = p.a.tcp().connect(SocketAddr::new(IpAddr::V4(b4()), 9), tcp_cfg()).unwrap();
    assert_eq!(p.a.tcp().connected(c), Ok(false));
    p.run(Duration::from_millis(50));
    assert_eq!(p.a.tcp().connected(c), Err(TcpSocketError::Refused));
    assert_eq!(p.a.tcp().recv(c, &mut [0; 8]), Err(TcpSocketError::Refused));
    assert_eq!(p.b.stats().drops.tcp_no_socket, 1);
    assert_eq!(p.b.stats().events.tcp_resets_sent, 1);
    p.a.tcp().close(c);
    p.run(Duration::from_millis(10));
    assert_eq!(p.a.tcp().connections(), 0);
    p.finish();
}

#[test]
fn connect_to_silent_neighbor_is_unreachable() {
    let mut p = Pair::new("tcpunr", "", "");
    let c = p.a.tcp().connect("198.18.0.77:80".parse().unwrap(), tcp_cfg()).unwrap();
    p.run(Duration::from_secs(5));
    assert_eq!(p.a.tcp().connected(c), Err(TcpSocketError::Unreachable));
    p.a.tcp().close(c);
    p.run(Duration::from_millis(10));
    assert_eq!(p.a.tcp().connections(), 0);
    p.finish();
}

#[test]
fn connect_to_host_that_stops_answering_times_out() {
    let mut p = Pair::new("tcpto", "", "");
    // Resolve b first, then stop polling it: SYNs go unanswered.
    let h = p.a.echo().open(1, 4).unwrap();
    p.a.echo().ping(h, IpAddr::V4(b4()), 1, b"x").unwrap();
    p.run(Duration::from_millis(10));
    let c = p.a.tcp().connect(SocketAddr::new(IpAddr::V4(b4()), 80), tcp_cfg()).unwrap();
    let end = p.clock.now_ns() + 120 * SEC;
    while p.clock.now_ns() < end && p.a.tcp().connected(c) == Ok(false) {
        p.clock.advance_ns(10 * MS);
        p.a.poll();
    }
    assert_eq!(p.a.tcp().connected(c), Err(TcpSocketError::TimedOut));
    p.a.tcp().close(c);
    p.a.poll();
    p.b.poll();
    p.finish();
}

#[test]
fn no_route_and_bad_remote_fail_at_once_and_mss_is_clamped_to_the_link() {
    let mut p = Pair::new("tcpnr", "", "");
    let e = p.a.tcp().connect("198.19.5.5:80".parse().unwrap(), tcp_cfg()).unwrap_err();
    assert!(matches!(e, StackError::NoRoute(_)), "{e}");
    let e = p.a.tcp().connect("198.18.0.2:0".parse().unwrap(), tcp_cfg()).unwrap_err();
    assert!(e.to_string().contains("remote"), "{e}");
    let mut big = tcp_cfg();
    big.mss = 9000;
    let l = listen(&mut p, 80, 4);
    let c = p.a.tcp().connect("[2001:2::2]:80".parse().unwrap(), big).unwrap();
    p.run(Duration::from_millis(20));
    let s = p.b.tcp().accept(l).unwrap();
    // Both ends clamp to the link (1500 - 40 - 20), minus 12 for timestamps.
    assert_eq!(p.a.tcp_ref().connection(c).unwrap().send_mss(), 1428);
    assert_eq!(p.b.tcp_ref().connection(s).unwrap().send_mss(), 1428);
    p.a.tcp().abort(c);
    p.b.tcp().abort(s);
    p.run(Duration::from_millis(20));
    let mut tiny = tcp_cfg();
    tiny.mss = 10;
    let e = p.a.tcp().connect("198.18.0.2:80".parse().unwrap(), tiny).unwrap_err();
    assert!(e.to_string().contains("tcp.mss"), "{e}");
    p.finish();
}

#[test]
fn listen_validates_and_rejects_clashes() {
    let mut p = Pair::new("tcplv", "", "");
    let _l = listen(&mut p, 80, 4);
    let again = ListenConfig::new("198.18.0.2:80".parse().unwrap(), 4, 4, SEC, SynCookies::Off, tcp_cfg());
    assert!(matches!(p.b.tcp().listen(again), Err(StackError::AddrInUse(_))));
    let foreign = ListenConfig::new("198.18.0.9:81".parse().unwrap(), 4, 4, SEC, SynCookies::Off, tcp_cfg());
    assert!(matches!(p.b.tcp().listen(foreign), Err(StackError::AddrNotAvailable(_))));
    let zero = ListenConfig::new("198.18.0.2:81".parse().unwrap(), 0, 4, SEC, SynCookies::Off, tcp_cfg());
    assert!(p.b.tcp().listen(zero).unwrap_err().to_string().contains("backlog"));
    p.finish();
}

#[test]
fn accept_queue_is_bounded_by_backlog_and_data_before_accept_is_kept() {
    let mut p = Pair::new("tcpbl", "", "");
    let addr: SocketAddr = "198.18.0.2:80".parse().unwrap();
    let l = p.b.tcp().listen(ListenConfig::new(addr, 2, 8, 10 * SEC, SynCookies::Off, tcp_cfg())).unwrap();
    let clients: Vec<TcpHandle> = (0..5).map(|_| p.a.tcp().connect(addr, tcp_cfg()).unwrap()).collect();
    for (i, c) in clients.iter().enumerate() {
        p.a.tcp().send(*c, format!("hello {i}").as_bytes()).unwrap();
    }
    p.run(Duration::from_millis(100));
    let mut ready = Vec::new();
    p.b.tcp().take_ready(&mut ready);
    assert!(ready.contains(&l.token()), "listener readiness");
    // Only `backlog` connections wait; the other handshakes stay half-open.
    let stats = p.b.tcp().listener_stats(l).unwrap();
    assert!(stats.accept_queue_full > 0, "{stats:?}");
    let mut got = Vec::new();
    let end = p.clock.now_ns() + 30 * SEC;
    while got.len() < 5 && p.clock.now_ns() < end {
        p.run(Duration::from_millis(10));
        while let Ok(s) = p.b.tcp().accept(l) {
            got.push(s);
        }
    }
    assert_eq!(got.len(), 5, "every client got in once there was room");
    let mut msgs: Vec<String> = Vec::new();
    for s in &got {
        let mut buf = [0u8; 64];
        let n = p.b.tcp().recv(*s, &mut buf).unwrap();
        msgs.push(String::from_utf8(buf[..n].to_vec()).unwrap());
        assert_eq!(p.b.tcp().state(*s), Ok(TcpState::Established));
    }
    msgs.sort();
    assert_eq!(msgs, (0..5).map(|i| format!("hello {i}")).collect::<Vec<_>>());
    for c in clients {
        p.a.tcp().abort(c);
    }
    p.run(Duration::from_millis(10));
    for s in got {
        assert_eq!(p.b.tcp().recv(s, &mut [0; 4]), Err(TcpSocketError::Reset));
        p.b.tcp().close(s);
    }
    p.run(Duration::from_millis(10));
    assert_eq!(p.a.tcp().connections() + p.b.tcp().connections(), 0);
    p.finish();
}

#[test]
fn readiness_tokens_report_data_and_stale_handles_are_errors() {
    let mut p = Pair::new("tcprdy", "", "");
    let l = listen(&mut p, 80, 4);
    let c = p.a.tcp().connect("[2001:2::2]:80".parse().unwrap(), tcp_cfg()).unwrap();
    p.run(Duration::from_millis(20));
    let mut ready = Vec::new();
    p.a.tcp().take_ready(&mut ready);
    assert!(ready.contains(&c.token()), "connected is a readiness change");
    assert_eq!(p.a.tcp().connected(c), Ok(true));
    let s = p.b.tcp().accept(l).unwrap();
    assert_eq!(p.b.tcp().peer_addr(s).unwrap(), p.a.tcp().local_addr(c).unwrap());
    assert_eq!(p.b.tcp().accept(l), Err(TcpSocketError::WouldBlock));
    ready.clear();
    p.b.tcp().take_ready(&mut ready);
    p.a.tcp().send(c, b"ping").unwrap();
    p.run(Duration::from_millis(20));
    ready.clear();
    p.b.tcp().take_ready(&mut ready);
    assert_eq!(ready, vec![s.token()]);
    // Half-close: the server reads, then end of stream, and can still write.
    p.a.tcp().shutdown(c).unwrap();
    p.run(Duration::from_millis(20));
    let mut buf = [0u8; 16];
    assert_eq!(p.b.tcp().recv(s, &mut buf), Ok(4));
    assert_eq!(p.b.tcp().recv(s, &mut buf), Ok(0));
    assert_eq!(p.b.tcp().state(s), Ok(TcpState::CloseWait));
    p.b.tcp().send(s, b"pong").unwrap();
    p.b.tcp().close(s);
    p.run(Duration::from_millis(20));
    assert_eq!(p.a.tcp().recv(c, &mut buf), Ok(4));
    assert_eq!(p.a.tcp().recv(c, &mut buf), Ok(0));
    assert_eq!(p.a.tcp().state(c), Ok(TcpState::TimeWait));
    p.a.tcp().close(c);
    assert_eq!(p.a.tcp().send(c, b"x"), Err(TcpSocketError::InvalidHandle));
    assert_eq!(p.b.tcp().send(s, b"x"), Err(TcpSocketError::InvalidHandle));
    p.run(Duration::from_secs(3));
    assert_eq!(p.a.tcp().connections() + p.b.tcp().connections(), 0);
    p.b.tcp().unlisten(l);
    assert_eq!(p.b.tcp().accept(l), Err(TcpSocketError::InvalidHandle));
    p.finish();
}

#[test]
fn connection_limit_is_enforced_both_ways() {
    let mut p = Pair::with("tcplim", "", "", |a| a.tcp_max_connections = 2, |b| b.tcp_max_connections = 1);
    let l = listen(&mut p, 80, 8);
    let addr: SocketAddr = "198.18.0.2:80".parse().unwrap();
    let c1 = p.a.tcp().connect(addr, tcp_cfg()).unwrap();
    let c2 = p.a.tcp().connect(addr, tcp_cfg()).unwrap();
    assert!(matches!(p.a.tcp().connect(addr, tcp_cfg()), Err(StackError::ConnectionLimit(2))));
    p.run(Duration::from_millis(50));
    // The server holds one; the second handshake was reset.
    assert_eq!(p.b.tcp().connections(), 1);
    assert_eq!(p.b.stats().drops.tcp_connection_limit, 1);
    let states = [p.a.tcp().connected(c1), p.a.tcp().connected(c2)];
    assert!(states.contains(&Ok(true)) && states.iter().any(|s| s.is_err()), "{states:?}");
    let s = p.b.tcp().accept(l).unwrap();
    p.a.tcp().abort(c1);
    p.a.tcp().abort(c2);
    p.run(Duration::from_millis(10));
    p.b.tcp().close(s);
    p.run(Duration::from_millis(10));
    assert_eq!(p.a.tcp().connections() + p.b.tcp().connections(), 0);
    p.finish();
}

#[test]
fn mempool_exhaustion_stalls_then_recovers_without_loss() {
    let mut p = Pair::new("tcpnomem", "", "");
    let l = listen(&mut p, 80, 4);
    // Starve the pool while the handshake and the first data want buffers.
    let mut hoard = Vec::new();
    while let Ok(m) = p.pool.alloc() {
        hoard.push(m);
    }
    let c = p.a.tcp().connect("198.18.0.2:80".parse().unwrap(), tcp_cfg()).unwrap();
    let data = pattern(100_000, 9);
    let mut sent = p.a.tcp().send(c, &data).unwrap();
    p.run(Duration::from_millis(50));
    assert!(p.a.stats().drops.no_buffers > 0, "the stack noticed the empty pool");
    assert_eq!(p.a.tcp().connected(c), Ok(false));
    drop(hoard);
    let mut got = Vec::new();
    let mut s = None;
    let mut buf = vec![0u8; 65536];
    let end = p.clock.now_ns() + 30 * SEC;
    while got.len() < data.len() && p.clock.now_ns() < end {
        p.run(Duration::from_millis(1));
        if sent < data.len() {
            sent += p.a.tcp().send(c, &data[sent..]).unwrap_or(0);
        }
        if s.is_none() {
            s = p.b.tcp().accept(l).ok();
        }
        if let Some(s) = s {
            while let Ok(n) = p.b.tcp().recv(s, &mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
    }
    assert_eq!(got, data);
    p.a.tcp().abort(c);
    p.b.tcp().abort(s.unwrap());
    p.run(Duration::from_millis(10));
    p.finish();
}
