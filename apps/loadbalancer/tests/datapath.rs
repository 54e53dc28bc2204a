//! The data path in-process, over flow's in-memory `MemNet` in virtual time
//! (no sockets, no real clock): splicing, half-close, resets, back-pressure,
//! every timeout, the queue, retries and redispatch, PROXY headers, the
//! frontend's `maxconn`. Servers are tasks on the same `MemNet`.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use flow::exec::{Executor, TimerReactor};
use flow::kernel::tests_support::tcp_config;
use flow::mem::MemNet;
use flow::{Flow, FlowError, Listener, Net};
use loadbalancer::config::{Algorithm, Checked, Config, SendProxy, INIT};
use loadbalancer::proxy::Lb;
use loadbalancer::proxy_proto;

const VIP: &str = "198.18.1.1:8080";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn run<T: 'static>(f: impl Future<Output = T> + 'static) -> T {
    let mut ex = Executor::new(TimerReactor::virtual_time(pmd::VirtualClock::new(), 1_000));
    ex.block_on(f).unwrap()
}

/// The init file with round robin and small, distinct timeouts.
fn config() -> Checked {
    let mut c = Config::check(INIT).unwrap();
    let b = &mut c.backends[0];
    b.algorithm = Algorithm::RoundRobin;
    b.connect_timeout = Duration::from_millis(500);
    b.server_timeout = Duration::from_secs(20);
    b.tunnel_timeout = Duration::from_secs(40);
    b.queue_timeout = Duration::from_secs(5);
    let f = &mut c.frontends[0];
    f.client_timeout = Duration::from_secs(10);
    f.buffer_size = 1024;
    for l in &mut f.listen_cfg {
        l.tcp.send_buffer = 2048;
    }
    c.tcp.send_buffer = 2048;
    c
}

/// What a test server does with a connection.
#[derive(Clone, Copy, PartialEq)]
enum Serve {
    /// Echo until end of stream, then close.
    Echo,
    /// Read to end of stream, answer "done:N" (bytes read), close.
    Count,
    /// Accept and never read.
    Stall,
    /// Reset at once.
    Reset,
    /// Read a PROXY header, answer with the addresses it carried, close.
    ProxyEcho,
}

/// Starts the three servers of the init file; returns their accept counts.
fn servers(net: &MemNet, how: Serve, which: &[usize]) -> Rc<RefCell<[u32; 3]>> {
    let counts = Rc::new(RefCell::new([0u32; 3]));
    for &i in which {
        let addr = sa(&format!("198.18.2.{}:8081", i + 1));
        let mut l = net.listen(addr, &flow::kernel::tests_support::listen_config(8081)).unwrap();
        let counts = counts.clone();
        flow::spawn(async move {
            loop {
                let Ok((mut f, _)) = l.accept().await else { return };
                counts.borrow_mut()[i] += 1;
                flow::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    match how {
                        Serve::Echo => loop {
                            match f.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if f.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        },
                        Serve::Count => {
                            let mut total = 0;
                            while let Ok(n) = f.read(&mut buf).await {
                                if n == 0 {
                                    break;
                                }
                                total += n;
                            }
                            let _ = f.write_all(format!("done:{total}").as_bytes()).await;
                        }
                        Serve::Stall => flow::sleep(Duration::from_secs(3600)).await,
                        Serve::Reset => f.abort(),
                        Serve::ProxyEcho => {
                            let mut have = 0;
                            let h = loop {
                                let n = f.read(&mut buf[have..]).await.unwrap();
                                assert!(n > 0, "no PROXY header");
                                have += n;
                                if let Some(h) = proxy_proto::parse(&buf[..have], 4096).unwrap() {
                                    break h;
                                }
                            };
                            let (s, d) = h.addrs.unwrap();
                            let _ = f.write_all(format!("{s} {d}|").as_bytes()).await;
                            let _ = f.write_all(&buf[h.len..have]).await;
                        }
                    }
                    let _ = f.close().await;
                });
            }
        });
    }
    counts
}

/// Starts `lb` on `net` with `cfg`; returns it and its stop flag.
fn start(net: &MemNet, cfg: &Checked) -> (Rc<Lb<MemNet>>, Arc<AtomicBool>) {
    let lb = Lb::new(net.clone(), cfg);
    lb.start().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (l2, s2) = (lb.clone(), stop.clone());
    flow::spawn(async move { l2.serve(s2, Duration::from_secs(1)).await });
    (lb, stop)
}

async fn read_all<F: Flow>(f: &mut F) -> Result<Vec<u8>, FlowError> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf).await? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn bytes_go_both_ways_and_round_robin_spreads_connections_by_weight() {
    run(async {
        let net = MemNet::new();
        let mut cfg = config();
        cfg.backends[0].servers[0].weight = 2;
        let counts = servers(&net, Serve::Echo, &[0, 1, 2]);
        let (lb, _stop) = start(&net, &cfg);
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        for _ in 0..40 {
            let mut c = net.connect(sa(VIP), &tcp_config()).await.unwrap();
            let mut got = Vec::new();
            for chunk in data.chunks(1000) {
                c.write_all(chunk).await.unwrap();
                let mut back = vec![0u8; chunk.len()];
                c.read_exact(&mut back).await.unwrap();
                got.extend_from_slice(&back);
            }
            c.shutdown().await.unwrap();
            got.extend(read_all(&mut c).await.unwrap());
            assert_eq!(got, data);
        }
        assert_eq!(*counts.borrow(), [20, 10, 10], "weights 2:1:1");
        flow::sleep(Duration::from_millis(10)).await;
        let s = lb.snapshot();
        assert_eq!(s.frontends[0].1.total, 40);
        assert_eq!(s.frontends[0].1.completed, 40);
        assert_eq!(s.frontends[0].1.bytes_in, 40 * 20_000);
        assert_eq!(s.frontends[0].1.bytes_out, 40 * 20_000);
        assert_eq!(s.backends[0].2[0].3.bytes_in, 20 * 20_000);
        assert_eq!(lb.sessions(), 0);
    });
}

#[test]
fn a_client_half_close_reaches_the_server_and_its_answer_still_comes_back() {
    run(async {
        let net = MemNet::new();
        servers(&net, Serve::Count, &[0, 1, 2]);
        let (_lb, _stop) = start(&net, &config());
        let mut c = net.connect(sa(VIP), &tcp_config()).await.unwrap();
        c.write_all(&[7u8; 5000]).await.unwrap();
        c.shutdown().await.unwrap();
        assert_eq!(read_all(&mut c).await.unwrap(), b"done:5000");
    });
}

#[test]
fn a_server_reset_resets_the_client() {
    run(async {
        let net = MemNet::new();
        servers(&net, Serve::Reset, &[0, 1, 2]);
        let (lb, _stop) = start(&net, &config());
        let mut c = net.connect(sa(VIP), &tcp_config()).await.unwrap();
        let _ = c.write_all(b"hello").await;
        let r = read_all(&mut c).await;
        assert!(matches!(r, Err(FlowError::Reset)), "{r:?}");
        flow::sleep(Duration::from_millis(10)).await;
        assert_eq!(lb.snapshot().backends[0].1.server_resets, 1);
    });
}

#[test]
fn a_client_reset_resets_the_server() {
    run(async {
        let net = MemNet::new();
        // A server that reports how its read ended.
        let mut l = net.listen(sa("198.18.2.1:8081"), &flow::kernel::tests_support::listen_config(1)).unwrap();
        let seen = flow::spawn(async move {
            let (mut f, _) = l.accept().await.unwrap();
            read_all(&mut f).await
        });
        let mut cfg = config();
        cfg.backends[0].servers.truncate(1);
        let (lb, _stop) = start(&net, &cfg);
        let mut c = net.connect(sa(VIP), &tcp_config()).await.unwrap();
        c.write_all(b"partial").await.unwrap();
        flow::sleep(Duration::from_millis(10)).await;
        c.abort();
        assert!(matches!(seen.await, Err(FlowError::Reset)));
        flow::sleep(Duration::from_millis(10)).await;
        assert_eq!(lb.snapshot().frontends[0].1.client_resets, 1);
    });
}

#[test]
fn a_server_that_does_not_read_stops_the_client_with_bounded_buffering() {
    run(async {
        let net = MemNet::new();
        servers(&net, Serve::Stall, &[0, 1, 2]);
        let cfg = config();
        let (_lb, _stop) = start(&net, &cfg);
        let mut c = net.connect(sa(VIP), &tcp_config()).await.unwrap();
        let big = vec![1u8; 1 << 20];
        let mut sent = 0;
        loop {
            match flow::timeout(Duration::from_secs(1), c.write(&big[sent..])).await {
                Ok(Ok(n)) => sent += n,
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => break,
            }
        }
        // Client's send buffer + lb's one buffer + lb-to-server send buffer.
        let bound = tcp_config().send_buffer + cfg.frontends[0].buffer_size + cfg.tcp.send_buffer;
        assert!(sent > 0 && sent <= bound, "{sent} bytes taken, bound {bound}");
    });
}

#[test]
fn every_timeout_closes_its_session_at_its_own_time() {
    run(async {
        let net = MemNet::new();
        servers(&net, Serve::Stall, &[0]);
        servers(&net, Serve::Echo, &[1]);
        let mut cfg = config();
        cfg.backends[0].algorithm = Algorithm::RoundRobin;
        let (lb, _stop) = start(&net, &cfg);
        let vip = sa(VIP);
        // Client silent: client timeout (10 s). Goes to s1 (stall).
        let t0 = flow::now_ns();
        let mut c = net.connect(vip, &tcp_config()).await.unwrap();
        let r = read_all(&mut c).await;
        assert!(matches!(r, Err(FlowError::Reset)), "{r:?}");
        let took = (flow::now_ns() - t0) / 1_000_000;
        assert!((10_000..10_100).contains(&took), "client timeout after {took} ms");
        // Client spoke, server stalls: server timeout (20 s). Round robin: s2, then s1.
        let mut e = net.connect(vip, &tcp_config()).await.unwrap();
        e.write_all(b"ping").await.unwrap();
        let mut four = [0u8; 4];
        e.read_exact(&mut four).await.unwrap();
        let t0 = flow::now_ns();
        let mut c = net.connect(vip, &tcp_config()).await.unwrap();
        c.write_all(b"request").await.unwrap();
        let r = read_all(&mut c).await;
        assert!(matches!(r, Err(FlowError::Reset)), "{r:?}");
        let took = (flow::now_ns() - t0) / 1_000_000;
        assert!((20_000..20_100).contains(&took), "server timeout after {took} ms");
        // Both spoke (the echo session above), then idle: tunnel timeout (40 s
        // after its last byte, which was 20 s ago).
        let r = read_all(&mut e).await;
        assert!(matches!(r, Err(FlowError::Reset)), "{r:?}");
        let took = (flow::now_ns() - t0) / 1_000_000;
        assert!((40_000..40_100).contains(&took), "tunnel timeout after {took} ms");
        let s = lb.snapshot();
        assert_eq!(s.frontends[0].1.client_timeouts, 1);
        assert_eq!(s.backends[0].1.server_timeouts, 1);
        assert_eq!(s.backends[0].1.tunnel_timeouts, 1);
    });
}

#[test]
fn at_maxconn_connections_queue_and_the_queue_is_bounded_in_length_and_time() {
    run(async {
        let net = MemNet::new();
        servers(&net, Serve::Echo, &[0]);
        let mut cfg = config();
        cfg.backends[0].servers.truncate(1);
        cfg.backends[0].servers[0].maxconn = 1;
        cfg.backends[0].queue_max = 1;
        let (lb, _stop) = start(&net, &cfg);
        let vip = sa(VIP);
        let mut first = net.connect(vip, &tcp_config()).await.unwrap();
        first.write_all(b"a").await.unwrap();
        let mut one = [0u8; 1];
        first.read_exact(&mut one).await.unwrap();
        // Second waits in the queue; third finds it full and is closed.
        let mut second = net.connect(vip, &tcp_config()).await.unwrap();
        second.write_all(b"b").await.unwrap();
        flow::sleep(Duration::from_millis(10)).await;
        assert_eq!(lb.snapshot().backends[0].1.queue_cur, 1);
        let mut third = net.connect(vip, &tcp_config()).await.unwrap();
        assert_eq!(read_all(&mut third).await.unwrap(), b"");
        assert_eq!(lb.snapshot().backends[0].1.queue_full, 1);
        // The first ends: the second gets its slot and its echo.
        first.shutdown().await.unwrap();
        read_all(&mut first).await.unwrap();
        second.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"b");
        // Now a queued one that waits past queue_timeout (5 s) is closed.
        let t0 = flow::now_ns();
        let mut late = net.connect(vip, &tcp_config()).await.unwrap();
        assert_eq!(read_all(&mut late).await.unwrap(), b"");
        let took = (flow::now_ns() - t0) / 1_000_000;
        assert!((5_000..5_100).contains(&took), "queue timeout after {took} ms");
        let s = lb.snapshot();
        assert_eq!((s.backends[0].1.queued, s.backends[0].1.queue_timeouts, s.backends[0].1.queue_cur), (2, 1, 0));
    });
}

#[test]
fn with_redispatch_refused_connects_never_reach_the_client() {
    run(async {
        let net = MemNet::new();
        // s1 and s2 refuse (nobody listens); s3 echoes.
        servers(&net, Serve::Echo, &[2]);
        let mut cfg = config();
        cfg.backends[0].retries = 2;
        cfg.backends[0].redispatch = true;
        cfg.backends[0].fall = 100;
        let (lb, _stop) = start(&net, &cfg);
        for i in 0..9u8 {
            let mut c = net.connect(sa(VIP), &tcp_config()).await.unwrap();
            c.write_all(&[i]).await.unwrap();
            c.shutdown().await.unwrap();
            assert_eq!(read_all(&mut c).await.unwrap(), vec![i], "connection {i}");
        }
        let s = lb.snapshot();
        assert!(s.backends[0].1.retries >= 9, "{:?}", s.backends[0].1);
        assert_eq!(s.backends[0].1.retries, s.backends[0].1.redispatches);
        assert_eq!(s.backends[0].1.connect_failures, 0);
        assert!(s.backends[0].2[0].3.connect_errors > 0);
    });
}

#[test]
fn without_redispatch_retries_stay_on_the_server_and_the_client_is_closed() {
    run(async {
        let net = MemNet::new();
        servers(&net, Serve::Echo, &[1, 2]);
        let mut cfg = config();
        cfg.backends[0].retries = 2;
        cfg.backends[0].redispatch = false;
        cfg.backends[0].fall = 100;
        let (lb, _stop) = start(&net, &cfg);
        // Round robin sends the first connection to s1, which refuses thrice.
        let mut c = net.connect(sa(VIP), &tcp_config()).await.unwrap();
        assert_eq!(read_all(&mut c).await.unwrap(), b"");
        let s = lb.snapshot();
        assert_eq!((s.backends[0].1.retries, s.backends[0].1.redispatches), (2, 0));
        assert_eq!(s.backends[0].1.connect_failures, 1);
        assert_eq!(s.backends[0].2[0].3.connect_errors, 3);
    });
}

#[test]
fn failed_connects_take_a_server_down_after_fall_of_them() {
    run(async {
        let net = MemNet::new();
        servers(&net, Serve::Echo, &[1, 2]);
        let mut cfg = config();
        cfg.backends[0].retries = 1;
        cfg.backends[0].redispatch = true;
        cfg.backends[0].fall = 3;
        let (lb, _stop) = start(&net, &cfg);
        for _ in 0..12 {
            let mut c = net.connect(sa(VIP), &tcp_config()).await.unwrap();
            c.write_all(b"x").await.unwrap();
            c.shutdown().await.unwrap();
            assert_eq!(read_all(&mut c).await.unwrap(), b"x");
        }
        let s = lb.snapshot();
        assert!(!s.backends[0].2[0].1, "s1 is down");
        assert_eq!(s.backends[0].2[0].3.connect_errors, 3, "and was not tried after its third failure");
        assert_eq!(s.backends[0].2[0].3.downs, 1);
    });
}

/// A `Net` whose connects to one address never complete (a black hole).
#[derive(Clone)]
struct Tarpit {
    inner: MemNet,
    hole: SocketAddr,
}

impl Net for Tarpit {
    type Flow = flow::mem::MemFlow;
    type Listener = flow::mem::MemListener;
    type Udp = flow::mem::MemUdp;
    fn name(&self) -> &'static str {
        "tarpit"
    }
    fn listen(&self, a: SocketAddr, c: &flow::ListenConfig) -> Result<Self::Listener, FlowError> {
        self.inner.listen(a, c)
    }
    async fn connect(&self, a: SocketAddr, c: &flow::TcpConfig) -> Result<Self::Flow, FlowError> {
        if a == self.hole {
            std::future::pending::<()>().await;
        }
        self.inner.connect(a, c).await
    }
    fn udp_bind(&self, a: SocketAddr, c: &flow::UdpConfig) -> Result<Self::Udp, FlowError> {
        self.inner.udp_bind(a, c)
    }
}

#[test]
fn a_connect_that_hangs_is_abandoned_at_connect_timeout_and_redispatched() {
    run(async {
        let mem = MemNet::new();
        servers(&mem, Serve::Echo, &[1, 2]);
        let net = Tarpit { inner: mem.clone(), hole: sa("198.18.2.1:8081") };
        let mut cfg = config();
        cfg.backends[0].retries = 1;
        cfg.backends[0].redispatch = true;
        let lb = Lb::new(net.clone(), &cfg);
        lb.start().unwrap();
        let t0 = flow::now_ns();
        let mut c = mem.connect(sa(VIP), &tcp_config()).await.unwrap();
        c.write_all(b"y").await.unwrap();
        c.shutdown().await.unwrap();
        assert_eq!(read_all(&mut c).await.unwrap(), b"y");
        let took = (flow::now_ns() - t0) / 1_000_000;
        assert!((500..600).contains(&took), "answered after {took} ms (connect timeout 500 ms)");
        assert_eq!(lb.snapshot().backends[0].1.redispatches, 1);
    });
}

#[test]
fn a_proxy_v2_header_from_the_client_is_passed_on_as_v1_to_the_server() {
    run(async {
        let net = MemNet::new();
        servers(&net, Serve::ProxyEcho, &[0]);
        let mut cfg = config();
        cfg.backends[0].servers.truncate(1);
        cfg.backends[0].servers[0].send_proxy = SendProxy::V1;
        cfg.frontends[0].accept_proxy = true;
        let (_lb, _stop) = start(&net, &cfg);
        let mut c = net.connect(sa(VIP), &tcp_config()).await.unwrap();
        let mut h = proxy_proto::encode_v2(sa("198.18.0.77:40000"), sa("198.18.1.1:443"));
        h.extend_from_slice(b"payload");
        c.write_all(&h).await.unwrap();
        c.shutdown().await.unwrap();
        let got = read_all(&mut c).await.unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), "198.18.0.77:40000 198.18.1.1:443|payload");
    });
}

#[test]
fn bad_or_late_proxy_headers_are_reset_and_counted() {
    run(async {
        let net = MemNet::new();
        servers(&net, Serve::Echo, &[0, 1, 2]);
        let mut cfg = config();
        cfg.frontends[0].accept_proxy = true;
        let (lb, _stop) = start(&net, &cfg);
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(200, b'x');
        let mut tlv = proxy_proto::encode_v2(sa("198.18.0.1:1"), sa("198.18.1.1:2"));
        tlv[15] += 3; // 3 more bytes of body: a TLV header ...
        tlv.extend_from_slice(&[0x04, 0x00, 0x09]); // ... whose value runs past the end
        for (what, bytes) in [
            ("no signature", b"GET / HTTP/1.0\r\n\r\n".to_vec()),
            ("v1 over 107 bytes", long),
            ("TLV past the end", tlv),
            ("truncated", b"PROXY TCP4 198.18.0.1".to_vec()),
        ] {
            let mut c = net.connect(sa(VIP), &tcp_config()).await.unwrap();
            c.write_all(&bytes).await.unwrap();
            if what == "truncated" {
                c.shutdown().await.unwrap();
            }
            let r = read_all(&mut c).await;
            assert!(matches!(r, Err(FlowError::Reset)), "{what}: {r:?}");
        }
        // Silent past client_timeout (10 s).
        let mut c = net.connect(sa(VIP), &tcp_config()).await.unwrap();
        assert!(matches!(read_all(&mut c).await, Err(FlowError::Reset)));
        assert_eq!(lb.snapshot().frontends[0].1.proxy_errors, 5);
    });
}

#[test]
fn the_frontend_accepts_no_more_than_maxconn_at_once() {
    run(async {
        let net = MemNet::new();
        let counts = servers(&net, Serve::Echo, &[0, 1, 2]);
        let mut cfg = config();
        cfg.frontends[0].maxconn = 2;
        let (lb, _stop) = start(&net, &cfg);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(net.connect(sa(VIP), &tcp_config()).await.unwrap());
        }
        flow::sleep(Duration::from_millis(10)).await;
        assert_eq!(lb.snapshot().frontends[0].1.cur, 2, "the third waits in the backlog");
        assert_eq!(counts.borrow().iter().sum::<u32>(), 2);
        let mut first = held.remove(0);
        first.shutdown().await.unwrap();
        read_all(&mut first).await.unwrap();
        flow::sleep(Duration::from_millis(10)).await;
        assert_eq!(counts.borrow().iter().sum::<u32>(), 3, "accepted once a slot freed");
    });
}

#[test]
fn stop_closes_the_listeners_and_waits_for_sessions_up_to_the_grace() {
    run(async {
        let net = MemNet::new();
        servers(&net, Serve::Echo, &[0, 1, 2]);
        let lb = Lb::new(net.clone(), &config());
        lb.start().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (l2, s2) = (lb.clone(), stop.clone());
        let served = flow::spawn(async move { l2.serve(s2, Duration::from_secs(3)).await });
        let mut open = net.connect(sa(VIP), &tcp_config()).await.unwrap();
        open.write_all(b"z").await.unwrap();
        let mut one = [0u8; 1];
        open.read_exact(&mut one).await.unwrap();
        stop.store(true, std::sync::atomic::Ordering::Release);
        flow::sleep(Duration::from_millis(50)).await;
        assert!(matches!(net.connect(sa(VIP), &tcp_config()).await, Err(FlowError::Refused)), "not accepting");
        // The open session still works during the grace.
        open.write_all(b"w").await.unwrap();
        open.read_exact(&mut one).await.unwrap();
        let t0 = flow::now_ns();
        let left = served.await;
        assert_eq!(left, 1, "one session outlived the grace");
        assert!((flow::now_ns() - t0) / 1_000_000 <= 3_000);
    });
}

#[test]
fn a_reload_changes_servers_and_listeners_while_open_sessions_go_on() {
    run(async {
        let net = MemNet::new();
        let counts = servers(&net, Serve::Echo, &[0, 1, 2]);
        let cfg = config();
        let (lb, _stop) = start(&net, &cfg);
        let vip = sa(VIP);
        // An open session on s1 (round robin's first pick).
        let mut open = net.connect(vip, &tcp_config()).await.unwrap();
        open.write_all(b"1").await.unwrap();
        let mut one = [0u8; 1];
        open.read_exact(&mut one).await.unwrap();
        assert_eq!(counts.borrow()[0], 1);
        // Reload: s1 gone, s3 weight 3, a second listen address instead of the first.
        let mut next = config();
        next.backends[0].servers.remove(0);
        next.backends[0].servers[1].weight = 3;
        let new_vip = sa("198.18.1.2:9090");
        let mut lc = next.frontends[0].listen_cfg[0].clone();
        lc.addr = new_vip;
        next.frontends[0].listen = vec![new_vip];
        next.frontends[0].listen_cfg = vec![lc];
        assert_eq!(lb.reload(&next).unwrap(), Vec::<String>::new());
        flow::sleep(Duration::from_millis(50)).await;
        assert!(matches!(net.connect(vip, &tcp_config()).await, Err(FlowError::Refused)), "old address closed");
        for _ in 0..8 {
            let mut c = net.connect(new_vip, &tcp_config()).await.unwrap();
            c.write_all(b"x").await.unwrap();
            c.shutdown().await.unwrap();
            assert_eq!(read_all(&mut c).await.unwrap(), b"x");
        }
        assert_eq!(*counts.borrow(), [1, 2, 6], "s1 removed, s2:s3 = 1:3");
        // The session opened before the reload still works.
        open.write_all(b"2").await.unwrap();
        open.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"2");
        let s = lb.snapshot();
        assert_eq!(s.backends[0].2.len(), 2, "s1 no longer listed");
    });
}

#[test]
fn runtime_commands_set_weight_drain_state_and_add_and_remove_servers() {
    use loadbalancer::proxy::Command;
    run(async {
        let net = MemNet::new();
        let counts = servers(&net, Serve::Echo, &[0, 1, 2]);
        let (lb, _stop) = start(&net, &config());
        let b = || "web".to_string();
        let name = |s: &str| s.to_string();
        lb.apply(&Command::SetDrain { backend: b(), server: name("s1"), drain: true }).unwrap();
        lb.apply(&Command::SetUp { backend: b(), server: name("s2"), up: false }).unwrap();
        lb.apply(&Command::SetWeight { backend: b(), server: name("s3"), weight: 0 }).unwrap();
        let mut c = net.connect(sa(VIP), &tcp_config()).await.unwrap();
        assert_eq!(read_all(&mut c).await.unwrap(), b"", "no eligible server: closed");
        assert_eq!(lb.snapshot().backends[0].1.no_server, 1);
        // A fourth server, added at run time, takes everything.
        let mut extra = cfg_server("s4", "tcp://198.18.2.4:8081");
        extra.weight = 5;
        let mut l = net.listen(extra.addr, &flow::kernel::tests_support::listen_config(1)).unwrap();
        lb.apply(&Command::Add { backend: b(), server: extra.clone() }).unwrap();
        assert!(lb.apply(&Command::Add { backend: b(), server: extra }).is_err(), "names are unique");
        let mut c = net.connect(sa(VIP), &tcp_config()).await.unwrap();
        let (mut f, _) = l.accept().await.unwrap();
        c.write_all(b"q").await.unwrap();
        let mut one = [0u8; 1];
        f.read_exact(&mut one).await.unwrap();
        lb.apply(&Command::Remove { backend: b(), server: name("s4") }).unwrap();
        lb.apply(&Command::SetDrain { backend: b(), server: name("s1"), drain: false }).unwrap();
        // The open session on the removed server goes on; new ones go to s1.
        f.write_all(b"r").await.unwrap();
        c.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"r");
        let mut d = net.connect(sa(VIP), &tcp_config()).await.unwrap();
        d.write_all(b"s").await.unwrap();
        d.read_exact(&mut one).await.unwrap();
        assert_eq!(counts.borrow()[0], 1);
        assert!(lb.apply(&Command::SetWeight { backend: b(), server: name("s9"), weight: 1 }).is_err());
        assert!(lb.apply(&Command::SetWeight { backend: b(), server: name("s1"), weight: 257 }).is_err());
        assert!(lb.apply(&Command::SetWeight { backend: "nope".into(), server: name("s1"), weight: 1 }).is_err());
    });
}

fn cfg_server(name: &str, uri: &str) -> loadbalancer::config::ServerSpec {
    let mut s = config().backends[0].servers[0].clone();
    s.name = name.into();
    s.uri = uri.into();
    s.addr = loadbalancer::config::resolve_uri(uri).unwrap();
    s
}

#[test]
fn tcplog_lines_carry_haproxys_fields_and_termination_states() {
    run(async {
        let net = MemNet::new();
        servers(&net, Serve::Echo, &[0]);
        let mut cfg = config();
        cfg.frontends[0].log = true;
        cfg.backends[0].servers.truncate(2);
        cfg.backends[0].retries = 0;
        cfg.backends[0].redispatch = false;
        let (lb, _stop) = start(&net, &cfg);
        // s1 answers; round robin then sends the next to s2, which refuses.
        let mut c = net.connect(sa(VIP), &tcp_config()).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        c.shutdown().await.unwrap();
        assert_eq!(read_all(&mut c).await.unwrap(), b"hello");
        let mut c = net.connect(sa(VIP), &tcp_config()).await.unwrap();
        assert_eq!(read_all(&mut c).await.unwrap(), b"");
        flow::sleep(Duration::from_millis(10)).await;
        let log = lb.take_log();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        // ci:cp [date] frontend backend/server Tw/Tc/Tt bytes state ac/fc/bc/sc/rc sq/bq
        let f: Vec<&str> = lines[0].split(' ').collect();
        assert!(f[0].starts_with("198.18.1.1:"), "{}", lines[0]);
        assert!(f[1].starts_with('[') && f[1].ends_with(']'), "{}", lines[0]);
        assert_eq!((f[2], f[3]), ("web", "web/s1"));
        assert!(f[4].starts_with("0/0/"), "{}", lines[0]);
        assert_eq!((f[5], f[6]), ("5", "--"));
        let f: Vec<&str> = lines[1].split(' ').collect();
        assert_eq!((f[3], f[6]), ("web/<NOSRV>", "SC"), "{}", lines[1]);
        assert_eq!(f[4].split('/').nth(1), Some("-1"), "never connected: {}", lines[1]);
        assert_eq!(lb.take_log(), "", "taken");
    });
}

#[test]
fn an_ipv6_frontend_reaches_ipv6_servers_and_passes_v6_addresses_in_proxy_v2() {
    run(async {
        let net = MemNet::new();
        // A PROXY-reading server on [2001:2::10]:8081.
        let mut cfg = config();
        cfg.backends[0].servers.truncate(1);
        let s = &mut cfg.backends[0].servers[0];
        s.addr = sa("[2001:2::10]:8081");
        s.send_proxy = SendProxy::V2;
        let vip6 = sa("[2001:2::1]:8080");
        cfg.frontends[0].listen = vec![vip6];
        cfg.frontends[0].listen_cfg[0].addr = vip6;
        let mut l = net.listen(sa("[2001:2::10]:8081"), &flow::kernel::tests_support::listen_config(1)).unwrap();
        let server = flow::spawn(async move {
            let (mut f, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 256];
            let mut have = 0;
            loop {
                have += f.read(&mut buf[have..]).await.unwrap();
                if let Some(h) = proxy_proto::parse(&buf[..have], 256).unwrap() {
                    f.write_all(b"ok").await.unwrap();
                    let _ = f.close().await;
                    return h.addrs.unwrap();
                }
            }
        });
        let (_lb, _stop) = start(&net, &cfg);
        let mut c = net.connect(vip6, &tcp_config()).await.unwrap();
        let me = c.local_addr().unwrap();
        c.shutdown().await.unwrap();
        assert_eq!(read_all(&mut c).await.unwrap(), b"ok");
        let (src, dst) = server.await;
        assert_eq!((src, dst), (me, vip6));
        assert!(src.is_ipv6());
    });
}
