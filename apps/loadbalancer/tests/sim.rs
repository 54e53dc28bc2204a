//! `lb` on our stack in deterministic simulation: two stacks over an
//! in-memory `ring` wire with seeded loss and reordering, in virtual time, one
//! executor driving both. Stack A (198.18.0.1) holds the clients and three
//! echo servers (ports 8081-8083); stack B (198.18.0.2) runs the balancer on
//! :8080. Every byte must come back intact, a dead server's refused connects
//! must be redispatched unseen, a black-holed one must cost one connect
//! timeout, and every buffer must go home.
//!
//! On two cores, B is two stacks on the two queues of one `ring?rss=1` port
//! (the sender hashes each frame with B's RSS, exact steering) with a
//! balancer each: both take clients, and every server connection's replies
//! reach the core that opened it (the stack's connect picks such a local
//! port), so no frame is misdirected or handed between B's cores.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flow::exec::Executor;
use flow::kernel::tests_support::{listen_config, tcp_config};
use flow::user::{UserNet, UserReactor};
use flow::{Flow, Listener, Net};
use loadbalancer::config::{Algorithm, Config, INIT};
use loadbalancer::proxy::Lb;
use pmd::rss::MICROSOFT_KEY;
use pmd::{Mempool, MempoolConfig, OpenEnv, PortConfig, RssConfig, VirtualClock};
use stack::{CoreLink, Delivery, Steering};

const POOL: usize = 8192;

struct Sim {
    pool: Mempool,
    ex: Executor<UserReactor>,
    a: UserNet,
    b: UserNet,
    /// B's other cores (the two-core simulation).
    more: Vec<UserNet>,
    ports: Vec<Box<dyn pmd::Port>>,
}

fn sim(name: &str, imp_a: &str, imp_b: &str) -> Sim {
    let clock = VirtualClock::new();
    let pool = Mempool::new(&MempoolConfig::new(name, POOL, 2048, 128, 0)).unwrap();
    let env = OpenEnv { clock: Arc::new(clock.clone()) };
    let mut r = UserReactor::simulated(clock.clone(), 20_000);
    let mut ports = Vec::new();
    let mut nets = Vec::new();
    for (me, peer, ip4, imp) in [("a", "b", "198.18.0.1/24", imp_a), ("b", "a", "198.18.0.2/24", imp_b)] {
        let spec = format!("ring:{name}_{me}?peer={name}_{peer}{imp}");
        let mut port = pmd::open_with(&spec, &env).unwrap();
        port.configure(&PortConfig::new(1, 1, 4096, 4096, pool.clone())).unwrap();
        port.start().unwrap();
        let mut cfg = loadbalancer::run::stack_config(1500, 4096, POOL / 8);
        cfg.mac = port.info().mac;
        cfg.ipv4.push(ip4.parse().unwrap());
        let (rx, tx) = (port.take_rx_queue(0).unwrap(), port.take_tx_queue(0).unwrap());
        let s = stack::Driver::new(cfg, rx, tx, pool.clone(), Arc::new(clock.clone())).unwrap();
        nets.push(r.add(s));
        ports.push(port);
    }
    let b = nets.pop().unwrap();
    let a = nets.pop().unwrap();
    Sim { pool, ex: Executor::new(r), a, b, more: Vec::new(), ports }
}

/// A on one queue, B on `cores` queues of an RSS ring port (the Microsoft
/// key, round-robin table), one core-aware stack per queue, all driven by
/// one executor in virtual time.
fn sim_cores(name: &str, imp: &str, cores: u16) -> Sim {
    let clock = VirtualClock::new();
    let pool = Mempool::new(&MempoolConfig::new(name, POOL, 2048, 128, 0)).unwrap();
    let env = OpenEnv { clock: Arc::new(clock.clone()) };
    let mut r = UserReactor::simulated(clock.clone(), 20_000);
    let mut ports = Vec::new();
    let mut nets = Vec::new();
    let rss = RssConfig::spread(&MICROSOFT_KEY, cores);
    for (me, peer, ip4, n) in [("a", "b", "198.18.0.1/24", 1), ("b", "a", "198.18.0.2/24", cores)] {
        // RSS on both: a ring sends from its queue i to the peer's queue i
        // unless the peer has RSS; A's one-queue table takes all of B's.
        let spec = format!("ring:{name}_{me}?peer={name}_{peer}{imp}&rss=1");
        let mut port = pmd::open_with(&spec, &env).unwrap();
        let mut pc = PortConfig::new(n, n, 4096, 4096, pool.clone());
        pc.rss = Some(RssConfig::spread(&MICROSOFT_KEY, n));
        port.configure(&pc).unwrap();
        port.start().unwrap();
        let links = CoreLink::mesh(n);
        for (q, link) in links.into_iter().enumerate() {
            let mut cfg = loadbalancer::run::stack_config(1500, 4096, POOL / 8 / usize::from(n));
            cfg.mac = port.info().mac;
            cfg.ipv4.push(ip4.parse().unwrap());
            let (rx, tx) = (port.take_rx_queue(q as u16).unwrap(), port.take_tx_queue(q as u16).unwrap());
            let mut s = stack::Driver::new(cfg, rx, tx, pool.clone(), Arc::new(clock.clone())).unwrap();
            if n > 1 {
                s.set_cores(Steering::new(q as u16, n, &rss, Delivery::Exact).unwrap(), link);
            }
            nets.push(r.add(s));
        }
        ports.push(port);
    }
    let a = nets.remove(0);
    let b = nets.remove(0);
    Sim { pool, ex: Executor::new(r), a, b, more: nets, ports }
}

impl Sim {
    fn finish(self) {
        let Sim { pool, ex, a, b, more, ports } = self;
        drop(ex);
        drop(a);
        drop(b);
        drop(more);
        drop(ports);
        assert_eq!(pool.available(), POOL, "mbufs leaked");
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Echo servers on A's ports `ports`.
fn echo_servers(a: &UserNet, ports: &[u16]) {
    for &p in ports {
        let mut l = a.listen(SocketAddr::new([198, 18, 0, 1].into(), p), &listen_config(p)).unwrap();
        flow::spawn(async move {
            loop {
                let Ok((mut f, _)) = l.accept().await else { return };
                flow::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    while let Ok(n) = f.read(&mut buf).await {
                        if n == 0 || f.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = f.close().await;
                });
            }
        });
    }
}

/// The init file on B: listen on :8080, servers on A's 8081-8083 (s3 at
/// `s3`), round robin, test timings.
fn config(s3: &str) -> loadbalancer::config::Checked {
    let text = INIT
        .replacen("0.0.0.0:8080", "198.18.0.2:8080", 1)
        .replacen("198.18.2.1:8081", "198.18.0.1:8081", 1)
        .replacen("198.18.2.2:8081", "198.18.0.1:8082", 1)
        .replacen("198.18.2.3:8081", s3, 1);
    let mut c = Config::check(&text).unwrap();
    c.tcp = tcp_config();
    c.backends[0].algorithm = Algorithm::RoundRobin;
    c.backends[0].retries = 2;
    c.backends[0].redispatch = true;
    for l in &mut c.frontends[0].listen_cfg {
        l.tcp = tcp_config();
    }
    c
}

/// `conns` clients one after another, each sending `size` bytes in chunks
/// and reading them back; returns the bytes echoed.
async fn clients(a: UserNet, conns: usize, size: usize) -> usize {
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
    let mut total = 0;
    for i in 0..conns {
        let mut c = a.connect(sa("198.18.0.2:8080"), &tcp_config()).await.unwrap_or_else(|e| panic!("client {i}: {e}"));
        let mut back = vec![0u8; size];
        for (out, inn) in data.chunks(1000).zip(back.chunks_mut(1000)) {
            c.write_all(out).await.unwrap();
            c.read_exact(inn).await.unwrap_or_else(|e| panic!("client {i}: {e}"));
        }
        assert_eq!(back, data, "client {i}");
        c.shutdown().await.unwrap();
        let mut b = [0u8; 1];
        assert_eq!(c.read(&mut b).await.unwrap(), 0);
        total += size;
        let _ = c.close().await;
    }
    total
}

#[test]
fn lb_over_our_stack_on_a_lossy_reordering_wire_echoes_every_byte() {
    let mut s = sim("lbsim_lossy", "&loss=0.01&reorder=0.02&seed=21", "&loss=0.01&reorder=0.02&seed=22");
    let (a, b) = (s.a.clone(), s.b.clone());
    s.ex.block_on(async move {
        echo_servers(&a, &[8081, 8082, 8083]);
        let lb = Lb::new(b, &config("198.18.0.1:8083"));
        lb.start().unwrap();
        let n = clients(a, 12, 20_000).await;
        assert_eq!(n, 12 * 20_000);
        flow::sleep(Duration::from_millis(100)).await;
        let snap = lb.snapshot();
        let per: Vec<u64> = snap.backends[0].2.iter().map(|s| s.3.total).collect();
        assert_eq!(per, vec![4, 4, 4], "round robin");
        assert_eq!(snap.frontends[0].1.completed, 12);
        assert_eq!(lb.drain(Duration::from_secs(1)).await, 0);
    })
    .unwrap();
    s.finish();
}

#[test]
fn on_our_stack_a_refused_server_is_redispatched_and_a_black_hole_costs_one_connect_timeout() {
    let mut s = sim("lbsim_fail", "", "");
    let (a, b) = (s.a.clone(), s.b.clone());
    s.ex.block_on(async move {
        // s2 (port 8082) has no listener: RST to the SYN. s3 is on-link but
        // nobody answers ARP for it: a connect that never completes.
        echo_servers(&a, &[8081]);
        let mut cfg = config("198.18.0.77:8083");
        cfg.backends[0].connect_timeout = Duration::from_millis(300);
        cfg.backends[0].fall = 100;
        let lb = Lb::new(b, &cfg);
        lb.start().unwrap();
        let t0 = flow::now_ns();
        let n = clients(a, 3, 3_000).await;
        assert_eq!(n, 9_000);
        let snap = lb.snapshot();
        let be = &snap.backends[0].1;
        assert_eq!(be.connect_failures, 0, "{be:?}");
        assert!(be.redispatches >= 2, "{be:?}");
        let errs: Vec<u64> = snap.backends[0].2.iter().map(|s| s.3.connect_errors).collect();
        assert_eq!((errs[0], errs[1] > 0, errs[2] > 0), (0, true, true), "{errs:?}");
        // One black-holed attempt (300 ms) at most per client.
        let took = (flow::now_ns() - t0) / 1_000_000;
        assert!(took < 3 * 300 + 500, "{took} ms");
    })
    .unwrap();
    s.finish();
}

#[test]
fn lb_on_two_cores_of_our_stack_both_take_clients_and_server_replies_reach_the_core_that_connected() {
    let mut s = sim_cores("lbsim_2c", "&loss=0.01&reorder=0.02&seed=23", 2);
    let (a, b0, b1) = (s.a.clone(), s.b.clone(), s.more[0].clone());
    let nets = [b0.clone(), b1.clone()];
    s.ex.block_on(async move {
        echo_servers(&a, &[8081, 8082, 8083]);
        let cfg = config("198.18.0.1:8083");
        let lbs = [Lb::new(b0.clone(), &cfg), Lb::new(b1.clone(), &cfg)];
        for lb in &lbs {
            lb.start().unwrap();
        }
        let conns = 40;
        let n = clients(a, conns, 5_000).await;
        assert_eq!(n, conns * 5_000);
        flow::sleep(Duration::from_millis(100)).await;
        let snaps: Vec<_> = lbs.iter().map(|l| l.snapshot()).collect();
        let per_core: Vec<u64> = snaps.iter().map(|s| s.frontends[0].1.completed).collect();
        assert_eq!(per_core.iter().sum::<u64>(), conns as u64, "{per_core:?}");
        assert!(per_core.iter().all(|&c| c > 0), "both cores take clients: {per_core:?}");
        // Each core's round robin is its own: per core, the servers' counts
        // differ by at most one.
        for s in &snaps {
            let per: Vec<u64> = s.backends[0].2.iter().map(|s| s.3.total).collect();
            assert!(per.iter().max().unwrap() - per.iter().min().unwrap() <= 1, "{per:?}");
            assert_eq!(s.backends[0].1.connect_failures, 0);
        }
        for lb in &lbs {
            assert_eq!(lb.drain(Duration::from_secs(1)).await, 0);
        }
    })
    .unwrap();
    // Every frame, the server connections' replies included, was processed
    // on the core it reached: none misdirected, none handed over.
    for (i, net) in nets.iter().enumerate() {
        let c: std::collections::HashMap<_, _> = flow::Net::core_counters(net).into_iter().collect();
        assert_eq!((c["rss_misdirected"], c["frames_handed_off"]), (0, 0), "core {i}: {c:?}");
    }
    drop(nets);
    s.finish();
}
