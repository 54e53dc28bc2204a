//! `connect("tcp://name:7")` over two of our stacks in simulation (virtual
//! time, one executor): dual-stack, a DNS server on b over our UDP answering A
//! and AAAA, and a's IPv6 black-holed by the impairment decorator
//! (`only=ipv6&loss=1`). Happy eyeballs must connect over IPv4 within one
//! attempt delay plus a round trip, and leave no half-open connection behind
//! on either stack; every buffer goes home.

mod common;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use common::resolver_config;
use flow::connect::{connect, Context, Registry};
use flow::dns::{Hosts, Resolver};
use flow::exec::Executor;
use flow::happy_eyeballs::HappyEyeballsConfig;
use flow::kernel::tests_support::{listen_config, tcp_config};
use flow::user::{UserNet, UserReactor};
use flow::{Datagram, Flow, Listener, Net, TcpConfig, UdpConfig};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use pmd::{Mempool, MempoolConfig, OpenEnv, PortConfig, VirtualClock};

const POOL: usize = 4096;
const MS: u64 = 1_000_000;

/// The simulation profile with room for the TLS and happy-eyeballs runs:
/// 100 µs timers, a deep transmit backlog, an eighth of the pool for
/// receive buffers.
fn stack_config(mac: pmd::MacAddr, ip4: &str, ip6: &str) -> stack::StackConfig {
    stack::StackConfig {
        ipv4: vec![ip4.parse().unwrap()],
        ipv6: vec![ip6.parse().unwrap()],
        timer_tick: Duration::from_micros(100),
        tx_backlog: 8192,
        tcp_max_connections: 16_384,
        tcp_rx_mbufs: POOL / 8,
        ..stack::profiles::sim(mac)
    }
}

/// A DNS server on our UDP: echo.test is 198.18.0.2 and 2001:2::2.
async fn dns_server(mut u: impl Datagram) {
    let mut buf = vec![0u8; 1500];
    loop {
        let Ok((n, from)) = u.recv_from(&mut buf).await else { continue };
        let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
        let qq = q.queries()[0].clone();
        let mut m = Message::new();
        m.set_id(q.id()).set_message_type(MessageType::Response).set_response_code(ResponseCode::NoError);
        m.add_query(qq.clone());
        let rd = match qq.query_type() {
            RecordType::A => RData::A(A("198.18.0.2".parse().unwrap())),
            _ => RData::AAAA(AAAA("2001:2::2".parse().unwrap())),
        };
        m.add_answer(Record::from_rdata(qq.name().clone(), 60, rd));
        let _ = u.send_to(&m.to_vec().unwrap(), from).await;
    }
}

struct Sim {
    pool: Mempool,
    ex: Executor<UserReactor>,
    nets: Vec<UserNet>,
    ports: Vec<Box<dyn pmd::Port>>,
}

/// Two dual-stack hosts a (198.18.0.1, 2001:2::1) and b (.2, ::2) over a ring
/// wire; `imp_a` impairs what a sends.
fn two_stacks(name: &str, imp_a: &str) -> Sim {
    let clock = VirtualClock::new();
    let pool = Mempool::new(&MempoolConfig::new(name, POOL, 2048, 128, 0)).unwrap();
    let env = OpenEnv { clock: Arc::new(clock.clone()) };
    let mut r = UserReactor::simulated(clock.clone(), 20_000);
    let mut ports = Vec::new();
    let mut nets: Vec<UserNet> = Vec::new();
    for (me, peer, ip4, ip6, imp) in
        [("a", "b", "198.18.0.1/24", "2001:2::1/64", imp_a), ("b", "a", "198.18.0.2/24", "2001:2::2/64", "")]
    {
        let spec = format!("ring:{name}_{me}?peer={name}_{peer}{imp}");
        let mut port = pmd::open_with(&spec, &env).unwrap();
        port.configure(&PortConfig::new(1, 1, 4096, 4096, pool.clone())).unwrap();
        port.start().unwrap();
        let cfg = stack_config(port.info().mac, ip4, ip6);
        let (rx, tx) = (port.take_rx_queue(0).unwrap(), port.take_tx_queue(0).unwrap());
        let s = stack::Driver::new(cfg, rx, tx, pool.clone(), Arc::new(clock.clone())).unwrap();
        nets.push(r.add(s));
        ports.push(port);
    }
    Sim { pool, ex: Executor::new(r), nets, ports }
}

impl Sim {
    /// Drops everything and checks every buffer went home.
    fn finish(self) {
        let Sim { pool, ex, nets, ports } = self;
        drop(ex);
        drop(nets);
        drop(ports);
        assert_eq!(pool.available(), POOL, "mbufs leaked");
    }
}

#[test]
fn tcp_name_connects_over_ipv4_within_one_attempt_delay_when_ipv6_is_black_holed() {
    let mut sim = two_stacks("he", "&only=ipv6&loss=1&seed=1");
    let (a, b) = (sim.nets[0].clone(), sim.nets[1].clone());
    let (a2, b2) = (a.clone(), b.clone());
    let (elapsed, peer) = sim
        .ex
        .block_on(async move {
            let (a, b) = (a2, b2);
            flow::spawn(dns_server(
                b.udp_bind("198.18.0.2:53".parse().unwrap(), &UdpConfig { rx_queue_len: 16 }).unwrap(),
            ));
            let mut l = b.listen("[::]:7".parse().unwrap(), &listen_config(7)).unwrap();
            let server = flow::spawn(async move {
                let (mut f, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 5];
                f.read_exact(&mut buf).await.unwrap();
                f.write_all(&buf).await.unwrap();
                let mut end = [0u8; 1];
                assert_eq!(f.read(&mut end).await.unwrap(), 0);
                f.close().await.unwrap();
            });
            let resolver = Resolver::new(
                resolver_config(&["198.18.0.2:53"], Duration::from_secs(1), 1, 16, 16),
                flow::connect::Dialer::of(a.clone()),
                Hosts::new(),
            )
            .unwrap();
            // Warm a's ARP entry and the cache: what is timed is the race.
            let (v6, v4) = resolver.lookup_ip("echo.test").await;
            assert!(v6.is_ok() && v4.is_ok());
            let ctx = Context::new(Registry::builtin())
                .with_net(a.clone())
                .with::<TcpConfig>(tcp_config())
                .with(HappyEyeballsConfig {
                    resolution_delay: Duration::from_millis(50),
                    connection_attempt_delay: Duration::from_millis(250),
                    first_address_family_count: 1,
                    attempt_timeout: Duration::from_secs(5),
                    overall_timeout: Duration::from_secs(10),
                    max_concurrent: 4,
                })
                .with_resolver(Rc::new(resolver));
            let t0 = flow::now_ns();
            let mut f = match connect(&ctx, "tcp://echo.test:7").await {
                Ok(f) => f,
                Err(e) => panic!("after {} ms: {e}", (flow::now_ns() - t0) / MS),
            };
            let elapsed = flow::now_ns() - t0;
            let peer = f.peer_addr().unwrap();
            // The IPv6 attempt is gone: only the winner on a (one poll later).
            flow::sleep(Duration::from_micros(100)).await;
            let st = a.with_stack(|s| s.tcp_ref().connections());
            assert_eq!(st, 1, "a half-open IPv6 attempt was left behind");
            f.write_all(b"hello").await.unwrap();
            let mut back = [0u8; 5];
            f.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"hello");
            f.shutdown().await.unwrap();
            let mut end = [0u8; 1];
            assert_eq!(f.read(&mut end).await.unwrap(), 0);
            drop(f);
            server.await;
            flow::sleep(Duration::from_secs(1)).await; // TIME-WAIT (100 ms in tcp_config)
            assert_eq!(a.with_stack(|s| s.tcp_ref().connections()), 0);
            assert_eq!(b.with_stack(|s| s.tcp_ref().connections()), 0);
            (elapsed, peer)
        })
        .unwrap();
    assert_eq!(peer, "198.18.0.2:7".parse::<SocketAddr>().unwrap());
    assert!(elapsed >= 250 * MS, "IPv4 waited one attempt delay: {elapsed}");
    assert!(elapsed < 260 * MS, "one attempt delay plus a round trip: {} ms", elapsed as f64 / 1e6);
    let lost: u64 = sim.ports[0].xstats().iter().filter(|(k, _)| k.contains("impair_tx_lost")).map(|(_, v)| *v).sum();
    assert!(lost > 0, "the black hole swallowed IPv6 frames");
    drop((a, b));
    sim.finish();
}

/// A self-signed certificate for echo.test, and the server and client
/// configurations that trust it (the server offering `server_versions`, the
/// client TLS 1.3 only).
fn tls_configs(
    cn: &str,
    server_versions: Vec<flow::tls::TlsVersion>,
) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let mut p = rcgen::CertificateParams::new(vec!["echo.test".to_string()]).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let k = rcgen::KeyPair::generate().unwrap();
    let cert = p.self_signed(&k).unwrap();
    let sc = flow::tls::server_config(&flow::tls::ServerSettings {
        chain: vec![cert.der().clone()],
        key: Arc::new(rustls::pki_types::PrivateKeyDer::Pkcs8(k.serialize_der().into())),
        versions: server_versions,
        alpn: vec![],
        client_roots: None,
    })
    .unwrap();
    let cc = flow::tls::client_config(&flow::tls::ClientSettings {
        roots: vec![cert.der().clone()],
        versions: vec![flow::tls::TlsVersion::Tls13],
        alpn: vec![],
        client_cert: None,
    })
    .unwrap();
    (sc, cc)
}

#[test]
fn tls_peers_that_send_garbage_fail_typed_on_our_stack_and_leak_no_buffer() {
    let mut sim = two_stacks("tlsg", "");
    let (a, b) = (sim.nets[0].clone(), sim.nets[1].clone());
    let (sc, cc) = tls_configs("garbage test", vec![flow::tls::TlsVersion::Tls12, flow::tls::TlsVersion::Tls13]);
    sim.ex
        .block_on(async move {
            use flow::tls::{TlsError, TlsFlow};
            use flow::FlowError;
            let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 131 % 251) as u8).collect();
            // Our TLS server on b; a raw client on a sends garbage.
            let mut l = b.listen("[::]:443".parse().unwrap(), &listen_config(443)).unwrap();
            let srv = flow::spawn(async move {
                let (f, _) = l.accept().await.unwrap();
                TlsFlow::accept(f, sc).await.err()
            });
            let mut raw = a.connect("198.18.0.2:443".parse().unwrap(), &tcp_config()).await.unwrap();
            raw.write_all(&garbage).await.unwrap();
            let e = srv.await.expect("the handshake fails");
            assert!(matches!(e, FlowError::Tls(TlsError::Protocol(_))), "{e:?}");
            drop(raw);
            // A raw server on b answers our TLS client with garbage.
            let mut l = b.listen("[::]:444".parse().unwrap(), &listen_config(444)).unwrap();
            let g2 = garbage.clone();
            let srv = flow::spawn(async move {
                let (mut f, _) = l.accept().await.unwrap();
                let mut hello = [0u8; 64];
                let _ = f.read(&mut hello).await;
                let _ = f.write_all(&g2).await;
                flow::sleep(Duration::from_millis(50)).await;
            });
            let f = a.connect("[2001:2::2]:444".parse().unwrap(), &tcp_config()).await.unwrap();
            let e = TlsFlow::connect(f, cc, flow::tls::server_name("echo.test").unwrap()).await.err().expect("fails");
            assert!(matches!(e, FlowError::Tls(TlsError::Protocol(_))), "{e:?}");
            srv.await;
            flow::sleep(Duration::from_secs(1)).await;
            assert_eq!(a.with_stack(|s| s.tcp_ref().connections()), 0);
            assert_eq!(b.with_stack(|s| s.tcp_ref().connections()), 0);
        })
        .unwrap();
    sim.finish();
}

#[test]
fn back_to_back_tls_handshakes_over_our_stack_never_wait_on_a_timer() {
    let mut sim = two_stacks("tlshs", "");
    let (a, b) = (sim.nets[0].clone(), sim.nets[1].clone());
    let (mut sc, cc) = tls_configs("handshake test", vec![flow::tls::TlsVersion::Tls13]);
    Arc::get_mut(&mut sc).unwrap().send_tls13_tickets = 0;
    let times = sim
        .ex
        .block_on(async move {
            use flow::tls::TlsFlow;
            let mut l = b.listen("[::]:443".parse().unwrap(), &listen_config(443)).unwrap();
            flow::spawn(async move {
                loop {
                    let (f, _) = l.accept().await.unwrap();
                    let sc = sc.clone();
                    flow::spawn(async move {
                        let Ok(mut t) = TlsFlow::accept(f, sc).await else { return };
                        let mut buf = [0u8; 256];
                        while let Ok(n) = t.read(&mut buf).await {
                            if n == 0 || t.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = t.close().await;
                    });
                }
            });
            let mut times = Vec::new();
            for _ in 0..20 {
                let t0 = flow::now_ns();
                let f = a.connect("198.18.0.2:443".parse().unwrap(), &tcp_config()).await.unwrap();
                let t = TlsFlow::connect(f, cc.clone(), flow::tls::server_name("echo.test").unwrap()).await.unwrap();
                t.close().await.unwrap();
                times.push((flow::now_ns() - t0) / 1000);
            }
            flow::sleep(Duration::from_secs(1)).await;
            times
        })
        .unwrap();
    assert!(times.iter().all(|&us| us < 5_000), "handshake times (us, virtual): {times:?}");
    sim.finish();
}
