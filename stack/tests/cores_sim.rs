//! Per-core shared-nothing in virtual time: two hosts over `ring?rss=1`,
//! 4 queues and 4 stacks each (driven from one thread), 1,000 echo
//! connections in each direction over a wire that loses and reorders IP
//! frames. Byte-exact; no frame misdirected or handed between cores (each
//! connection's segments are seen by exactly the core that owns it, on each
//! host); every accepted connection is on the core its RSS hash names; each
//! host resolves the other with at most one ARP request, whichever core
//! needed it first (see `stack::cores`).

mod net;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use pmd::rss::{L4, MICROSOFT_KEY};
use pmd::{Clock, Mempool, MempoolConfig, OpenEnv, Port, PortConfig, RssConfig, VirtualClock};
use stack::{
    CongestionControl, CoreLink, Delivery, ListenConfig, RtoConfig, Steering, SynCookies, TcpConfig, TcpHandle,
    TcpListenerHandle, TcpSocketError,
};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
const CORES: u16 = 4;
const PER_DIRECTION: usize = 1000;
const MSG: usize = 300;

fn tcp_cfg() -> TcpConfig {
    TcpConfig {
        mss: 1460,
        send_buffer: 16 * 1024,
        recv_buffer: 16 * 1024,
        rto: RtoConfig { initial_ns: 200 * MS, min_ns: 20 * MS, max_ns: 2 * SEC },
        max_retransmits: 15,
        syn_retries: 8,
        time_wait_ns: 100 * MS,
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

struct Host {
    cores: Vec<net::Dyn>,
    listeners: Vec<TcpListenerHandle>,
    _port: Box<dyn Port>,
}

fn host(name: &str, peer: &str, ip: &str, ip6: &str, pool: &Mempool, clock: &VirtualClock) -> Host {
    let env = OpenEnv { clock: Arc::new(clock.clone()) };
    // Loss and reordering on IPv4 only: ARP is not impaired, so the count of
    // requests below is exact.
    let family = if ip6.is_empty() { "ipv4" } else { "ipv6" };
    let spec = format!("ring:{name}?peer={peer}&rss=1&only={family}&loss=0.01&reorder=0.02&seed=18");
    let mut port = pmd::open_with(&spec, &env).unwrap();
    let mut rss = RssConfig::spread(&MICROSOFT_KEY, CORES);
    if !ip6.is_empty() {
        // The neighbour advertisements between 2001:2::1 and ::2 hash to
        // table entries 36 and 96, which name core 0: make core 1 the
        // resolver (reta[0]) so that the answer lands on another core.
        rss.reta[0] = 1;
    }
    let mut pc = PortConfig::new(CORES, CORES, 4096, 4096, pool.clone());
    pc.rss = Some(rss.clone());
    port.configure(&pc).unwrap();
    port.start().unwrap();
    let mac = port.info().mac;
    let ck: Arc<dyn Clock> = Arc::new(clock.clone());
    let mut cores = Vec::new();
    let mut listeners = Vec::new();
    for (i, link) in CoreLink::mesh(CORES).into_iter().enumerate() {
        let v6: Vec<&str> = [ip6].into_iter().filter(|a| !a.is_empty()).collect();
        let cfg = stack::StackConfig { tcp_rx_mbufs: 256, ..net::config(mac, &[ip], &v6) };
        let rx = port.take_rx_queue(i as u16).unwrap();
        let tx = port.take_tx_queue(i as u16).unwrap();
        let mut d = stack::Driver::new(cfg, rx, tx, pool.clone(), ck.clone()).unwrap();
        d.set_cores(Steering::new(i as u16, CORES, &rss, Delivery::Exact).unwrap(), link);
        d.tcp().set_secret([i as u8 + 1; 16]);
        // Listeners on every core.
        let addr: SocketAddr = "[::]:7".parse().unwrap();
        listeners.push(
            d.tcp().listen(ListenConfig::new(addr, 1024, 1024, 5 * SEC, SynCookies::WhenFull, tcp_cfg())).unwrap(),
        );
        cores.push(d);
    }
    Host { cores, listeners, _port: port }
}

fn message(id: usize) -> Vec<u8> {
    (0..MSG).map(|i| (id as u8).wrapping_mul(7) ^ (i as u8).wrapping_add((id >> 8) as u8)).collect()
}

struct Client {
    core: usize,
    h: TcpHandle,
    id: usize,
    sent: usize,
    got: Vec<u8>,
    closed: bool,
}

struct Server {
    core: usize,
    h: TcpHandle,
    pending: Vec<u8>,
    done: bool,
}

/// Opens, drives and checks one host's clients and the other's servers;
/// returns whether everything finished.
#[allow(clippy::too_many_arguments)]
fn step(
    hosts: &mut [Host; 2],
    clients: &mut [Vec<Client>; 2],
    servers: &mut [Vec<Server>; 2],
    opened: &mut [usize; 2],
    targets: [SocketAddr; 2],
    buf: &mut [u8],
) -> bool {
    let mut all_done = true;
    for h in 0..2 {
        // Open a few connections per core per step, spread over the cores.
        for c in 0..CORES as usize {
            for _ in 0..2 {
                if opened[h] == PER_DIRECTION {
                    break;
                }
                let id = h * PER_DIRECTION + opened[h];
                let conn = hosts[h].cores[c].tcp().connect(targets[h], tcp_cfg()).unwrap();
                clients[h].push(Client { core: c, h: conn, id, sent: 0, got: Vec::new(), closed: false });
                opened[h] += 1;
            }
        }
        for cl in clients[h].iter_mut().filter(|c| !c.closed) {
            let d = &mut hosts[h].cores[cl.core];
            let msg = message(cl.id);
            if cl.sent < MSG {
                match d.tcp().send(cl.h, &msg[cl.sent..]) {
                    Ok(n) => cl.sent += n,
                    Err(TcpSocketError::WouldBlock) => {}
                    Err(e) => panic!("client {} send: {e}", cl.id),
                }
            }
            loop {
                match d.tcp().recv(cl.h, buf) {
                    Ok(0) | Err(TcpSocketError::WouldBlock) => break,
                    Ok(n) => cl.got.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("client {} recv: {e}", cl.id),
                }
            }
            if cl.got.len() == MSG {
                assert_eq!(cl.got, msg, "connection {} echoed byte-exact", cl.id);
                d.tcp().close(cl.h);
                cl.closed = true;
            }
        }
        all_done &= opened[h] == PER_DIRECTION && clients[h].iter().all(|c| c.closed);
    }
    for h in 0..2 {
        let host = &mut hosts[h];
        for c in 0..CORES as usize {
            while let Ok(s) = host.cores[c].tcp().accept(host.listeners[c]) {
                let d = &host.cores[c];
                let (local, remote) = (d.tcp_ref().local_addr(s).unwrap(), d.tcp_ref().peer_addr(s).unwrap());
                let owner = d.steering().unwrap().owner(L4::Tcp, local, remote);
                assert_eq!(owner as usize, c, "{remote} -> {local} accepted on the core its hash names");
                servers[h].push(Server { core: c, h: s, pending: Vec::new(), done: false });
            }
        }
        for sv in servers[h].iter_mut().filter(|s| !s.done) {
            let d = &mut host.cores[sv.core];
            while !sv.pending.is_empty() {
                match d.tcp().send(sv.h, &sv.pending) {
                    Ok(n) => {
                        sv.pending.drain(..n);
                    }
                    Err(TcpSocketError::WouldBlock) => break,
                    Err(e) => panic!("server send: {e}"),
                }
            }
            if sv.pending.is_empty() {
                match d.tcp().recv(sv.h, buf) {
                    Ok(0) => {
                        d.tcp().close(sv.h);
                        sv.done = true;
                    }
                    Ok(n) => sv.pending.extend_from_slice(&buf[..n]),
                    Err(TcpSocketError::WouldBlock) => {}
                    Err(e) => panic!("server recv: {e}"),
                }
            }
        }
    }
    all_done
}

#[test]
fn a_thousand_connections_each_way_on_four_cores_per_host_stay_on_their_cores() {
    simulate(false);
}

/// The same over IPv6: NDP's answers land on the core their 2-tuple hashes
/// to, which learns them for the host (RFC 4861 §7.2.5, solicited).
#[test]
fn over_ipv6_too_with_one_neighbour_solicitation_per_host() {
    simulate(true);
}

fn simulate(v6: bool) {
    let clock = VirtualClock::new();
    let name = if v6 { "cores_sim6" } else { "cores_sim4" };
    let pool = Mempool::new(&MempoolConfig::new(name, 32768, 2048, 128, 0)).unwrap();
    let (a6, b6) = if v6 { (net::A6, net::B6) } else { ("", "") };
    let p = if v6 { "c6" } else { "c4" };
    let mut hosts = [
        host(&format!("{p}_a"), &format!("{p}_b"), net::A4, a6, &pool, &clock),
        host(&format!("{p}_b"), &format!("{p}_a"), net::B4, b6, &pool, &clock),
    ];
    let targets: [SocketAddr; 2] = if v6 {
        ["[2001:2::2]:7".parse().unwrap(), "[2001:2::1]:7".parse().unwrap()]
    } else {
        ["198.18.0.2:7".parse().unwrap(), "198.18.0.1:7".parse().unwrap()]
    };
    let mut clients: [Vec<Client>; 2] = [Vec::new(), Vec::new()];
    let mut servers: [Vec<Server>; 2] = [Vec::new(), Vec::new()];
    let mut opened = [0usize; 2];
    let mut buf = vec![0u8; 4096];
    let end = clock.now_ns() + 30 * SEC;
    let mut finished = false;
    while clock.now_ns() < end {
        clock.advance_ns(100_000);
        for h in hosts.iter_mut() {
            for d in h.cores.iter_mut() {
                d.poll();
            }
        }
        let done = step(&mut hosts, &mut clients, &mut servers, &mut opened, targets, &mut buf);
        let idle = hosts.iter().all(|h| h.cores.iter().all(|d| d.tcp_ref().connections() == 0));
        if done && servers.iter().all(|s| s.iter().all(|s| s.done)) && idle {
            finished = true;
            break;
        }
    }
    let echoed: Vec<usize> = clients.iter().map(|c| c.iter().filter(|c| c.closed).count()).collect();
    assert!(finished, "not all connections completed and closed: echoed {echoed:?} at {} s", clock.now_ns() / SEC);
    assert_eq!(servers.iter().map(Vec::len).collect::<Vec<_>>(), vec![PER_DIRECTION, PER_DIRECTION]);
    let mut per_core_connects = HashMap::new();
    let mut total_requests = 0;
    for (h, host) in hosts.iter().enumerate() {
        let ev: Vec<_> = host.cores.iter().map(|d| d.stats().events.clone()).collect();
        for (c, e) in ev.iter().enumerate() {
            assert_eq!(e.rss_misdirected, 0, "host {h} core {c}");
            assert_eq!(e.frames_handed_off, 0, "host {h} core {c}: every segment on its owner's queue");
            per_core_connects.insert((h, c), e.tcp_connects);
        }
        let requests: u64 = ev.iter().map(|e| if v6 { e.ndp_solicits_sent } else { e.arp_requests_sent }).sum();
        let broadcasts: u64 = ev.iter().map(|e| e.neighbor_broadcasts).sum();
        // At most one request per host, by the resolver (reta[0] = core 0);
        // none when the peer's request taught it first.
        assert!(requests <= 1, "host {h} sent {requests} ARP requests: {ev:?}");
        let resolver = if v6 { ev[1].ndp_solicits_sent } else { ev[0].arp_requests_sent };
        assert_eq!(resolver, requests, "only the resolver (reta[0]'s core) asks");
        total_requests += requests;
        assert_eq!(
            ev.iter().map(|e| e.neighbor_broadcasts_received).sum::<u64>(),
            3 * broadcasts,
            "every broadcast reached the 3 other cores"
        );
        assert!(broadcasts >= 1, "host {h} learned its peer from the wire and told its cores");
        assert_eq!(ev.iter().map(|e| e.arp_announcements_sent).sum::<u64>(), 1, "one announcement per host");
        if v6 {
            assert_eq!(ev.iter().map(|e| e.ndp_announcements_sent).sum::<u64>(), 1, "one per host");
        }
    }
    assert!(total_requests >= 1, "someone resolved someone");
    let share = (PER_DIRECTION / CORES as usize) as u64;
    assert!(per_core_connects.values().all(|&n| n == share), "connects spread evenly: {per_core_connects:?}");
    // The wire really lost and reordered frames.
    let lost: u64 =
        hosts.iter().flat_map(|h| h._port.xstats()).filter(|(k, _)| k.contains("lost")).map(|(_, v)| v).sum();
    assert!(lost > 0, "the impairment ran");
    drop((clients, servers));
    let [a, b] = hosts;
    drop((a.cores, b.cores));
}

/// Ethernet + IPv4 ICMP destination unreachable (fragmentation needed, RFC
/// 1191) from a router to `local`, quoting a TCP segment `local` sent to
/// `remote`, with valid checksums.
fn ptb_quoting(dst_mac: pmd::MacAddr, local: SocketAddr, remote: SocketAddr) -> Vec<u8> {
    let (std::net::IpAddr::V4(l), std::net::IpAddr::V4(r)) = (local.ip(), remote.ip()) else { unreachable!() };
    let mut f = vec![0u8; 14 + 20 + 8 + 20 + 8];
    f[..6].copy_from_slice(&dst_mac.0);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 9, 9]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let total = (f.len() - 14) as u16;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[22] = 64;
    f[23] = 1;
    f[26..30].copy_from_slice(&[198, 18, 0, 9]);
    f[30..34].copy_from_slice(&l.octets());
    pmd::checksum::fill_ipv4_header(&mut f, 14);
    f[34] = 3;
    f[35] = 4;
    f[40..42].copy_from_slice(&1400u16.to_be_bytes());
    let q = 42;
    f[q] = 0x45;
    f[q + 2..q + 4].copy_from_slice(&40u16.to_be_bytes());
    f[q + 8] = 64;
    f[q + 9] = 6;
    f[q + 12..q + 16].copy_from_slice(&l.octets());
    f[q + 16..q + 20].copy_from_slice(&r.octets());
    f[q + 20..q + 22].copy_from_slice(&local.port().to_be_bytes());
    f[q + 22..q + 24].copy_from_slice(&remote.port().to_be_bytes());
    let c = pmd::checksum::checksum(&f[34..]);
    f[36..38].copy_from_slice(&c.to_be_bytes());
    f
}

#[test]
fn an_icmp_error_on_the_wrong_core_is_handed_to_the_core_of_the_flow_it_quotes_rfc_1191() {
    let pool = Mempool::new(&MempoolConfig::new("cores_icmp", 1024, 2048, 128, 0)).unwrap();
    let rss = RssConfig::spread(&MICROSOFT_KEY, 2);
    let mac = pmd::MacAddr([2, 0, 0, 0, 0, 0x11]);
    let mut cores: Vec<stack::Stack> = Vec::new();
    let links = CoreLink::mesh(2);
    for i in 0..2u16 {
        let cfg = stack::StackConfig { tcp_rx_mbufs: 64, ..net::config(mac, &[net::A4], &[]) };
        let mut s = stack::Stack::new(cfg, pool.clone(), 0).unwrap();
        s.set_steering(Steering::new(i, 2, &rss, Delivery::Exact).unwrap());
        cores.push(s);
    }
    let local: SocketAddr = "198.18.0.1:50001".parse().unwrap();
    let remote: SocketAddr = "198.19.5.5:443".parse().unwrap();
    let owner = cores[0].steering().unwrap().owner(L4::Tcp, local, remote) as usize;
    let other = 1 - owner;
    let mut m = pool.alloc().unwrap();
    let f = ptb_quoting(mac, local, remote);
    m.append(f.len()).unwrap().copy_from_slice(&f);
    cores[other].input(1, &mut vec![m]);
    for (i, l) in links.iter().enumerate() {
        l.exchange(&mut cores[i], 2);
    }
    for (i, l) in links.iter().enumerate() {
        l.exchange(&mut cores[i], 3);
    }
    let (o, w) = (&cores[owner].stats().events, &cores[other].stats().events);
    assert_eq!((w.frames_handed_off, w.rss_misdirected, w.icmp_other_received), (1, 0, 0), "{w:?}");
    assert_eq!((o.frames_handed_in, o.icmp_other_received), (1, 1), "{o:?}");
    drop(cores);
    assert_eq!(pool.available(), 1024);
}

/// Two IPv4 fragments of one UDP datagram from `src` to `dst` (RFC 791),
/// the first carrying the UDP header and 16 payload bytes, the second 8 more.
fn udp_fragments(dst_mac: pmd::MacAddr, src: SocketAddr, dst: SocketAddr) -> [Vec<u8>; 2] {
    let (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) = (src.ip(), dst.ip()) else { unreachable!() };
    let payload: Vec<u8> = (0..24u8).collect();
    let mut udp = vec![0u8; 8];
    udp[0..2].copy_from_slice(&src.port().to_be_bytes());
    udp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&payload); // checksum 0: none (RFC 768)
    let frag = |data: &[u8], offset: usize, more: bool| {
        let mut f = vec![0u8; 34];
        f[..6].copy_from_slice(&dst_mac.0);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 9, 9]);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((20 + data.len()) as u16).to_be_bytes());
        f[18..20].copy_from_slice(&77u16.to_be_bytes());
        let fo = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
        f[20..22].copy_from_slice(&fo.to_be_bytes());
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&s.octets());
        f[30..34].copy_from_slice(&d.octets());
        pmd::checksum::fill_ipv4_header(&mut f, 14);
        f.extend_from_slice(data);
        f
    };
    [frag(&udp[..24], 0, true), frag(&udp[24..], 24, false)]
}

#[test]
fn a_datagram_reassembled_on_its_addresses_core_is_handed_to_the_core_of_its_flow_rfc_791() {
    let pool = Mempool::new(&MempoolConfig::new("cores_frag", 1024, 2048, 128, 0)).unwrap();
    let rss = RssConfig::spread(&MICROSOFT_KEY, 2);
    let mac = pmd::MacAddr([2, 0, 0, 0, 0, 0x12]);
    let links = CoreLink::mesh(2);
    let mut cores: Vec<stack::Stack> = (0..2u16)
        .map(|i| {
            let cfg = stack::StackConfig { tcp_rx_mbufs: 64, ..net::config(mac, &[net::A4], &[]) };
            let mut s = stack::Stack::new(cfg, pool.clone(), 0).unwrap();
            s.set_steering(Steering::new(i, 2, &rss, Delivery::Exact).unwrap());
            s
        })
        .collect();
    let local: SocketAddr = "198.18.0.1:5353".parse().unwrap();
    let s = cores[0].steering().unwrap().clone();
    // A sender whose datagram's 4-tuple owner differs from its fragments' (2-tuple) core.
    let remote = (1024..2048u16)
        .map(|p| SocketAddr::new("198.19.7.7".parse().unwrap(), p))
        .find(|r| s.owner(L4::Udp, local, *r) != s.owner(L4::Other, local, *r))
        .expect("some port splits them");
    let (owner, frags_core) = (s.owner(L4::Udp, local, remote) as usize, s.owner(L4::Other, local, remote) as usize);
    let handles: Vec<_> = cores
        .iter_mut()
        .map(|c| c.udp().bind("0.0.0.0:5353".parse().unwrap(), stack::UdpConfig { rx_queue_len: 8 }).unwrap())
        .collect();
    for f in udp_fragments(mac, remote, local) {
        let mut m = pool.alloc().unwrap();
        m.append(f.len()).unwrap().copy_from_slice(&f);
        // Fragments are not misdirected: the port hashes them on addresses.
        cores[frags_core].input(1, &mut vec![m]);
    }
    for (i, l) in links.iter().enumerate() {
        l.exchange(&mut cores[i], 2);
    }
    for (i, l) in links.iter().enumerate() {
        l.exchange(&mut cores[i], 3);
    }
    let (f, o) = (&cores[frags_core].stats().events, &cores[owner].stats().events);
    assert_eq!((f.reassembled, f.frames_handed_off, f.rss_misdirected, f.udp_delivered), (1, 1, 0, 0), "{f:?}");
    assert_eq!((o.frames_handed_in, o.udp_delivered), (1, 1), "{o:?}");
    let mut got = Vec::new();
    cores[owner].udp().recv(handles[owner], &mut got, 8).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].peer, remote);
    assert_eq!(got[0].payload.data(), &(0..24u8).collect::<Vec<_>>()[..], "byte-exact");
    drop(got);
    drop(cores);
    assert_eq!(pool.available(), 1024);
}
