//! The same echo server and client code over our stack, in deterministic
//! simulation: two stacks over an in-memory `ring` wire with seeded impairment
//! (loss, reordering, duplication) in virtual time, one executor driving both.
//! Every message must come back intact, and every buffer must go home.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client_config, echo_server_config};
use echo::client::{self, Counters, Mode};
use echo::server;
use flow::exec::Executor;
use flow::kernel::tests_support::tcp_config;
use flow::user::UserReactor;
use flow::{FlowError, Net};
use pmd::{Mempool, MempoolConfig, OpenEnv, PortConfig, VirtualClock};

const POOL: usize = 8192;

struct Sim {
    pool: Mempool,
    ex: Executor<UserReactor>,
    a: flow::user::UserNet,
    b: flow::user::UserNet,
    clock: VirtualClock,
    ports: Vec<Box<dyn pmd::Port>>,
}

fn sim(name: &str, imp_a: &str, imp_b: &str) -> Sim {
    let clock = VirtualClock::new();
    let pool = Mempool::new(&MempoolConfig::new(name, POOL, 2048, 128, 0)).unwrap();
    let env = OpenEnv { clock: Arc::new(clock.clone()) };
    let mut r = UserReactor::simulated(clock.clone(), 20_000);
    let mut ports = Vec::new();
    let mut nets = Vec::new();
    for (me, peer, ip4, ip6, imp) in
        [("a", "b", "198.18.0.1/24", "2001:2::1/64", imp_a), ("b", "a", "198.18.0.2/24", "2001:2::2/64", imp_b)]
    {
        let spec = format!("ring:{name}_{me}?peer={name}_{peer}{imp}");
        let mut port = pmd::open_with(&spec, &env).unwrap();
        port.configure(&PortConfig::new(1, 1, 4096, 4096, pool.clone())).unwrap();
        port.start().unwrap();
        let mut cfg = echo::opts::stack_config(port.info().mac, 1500, 16_384, POOL / 8);
        cfg.ipv4.push(ip4.parse().unwrap());
        cfg.ipv6.push(ip6.parse().unwrap());
        let (rx, tx) = (port.take_rx_queue(0).unwrap(), port.take_tx_queue(0).unwrap());
        let s = stack::Driver::new(cfg, rx, tx, pool.clone(), Arc::new(clock.clone())).unwrap();
        nets.push(r.add(s));
        ports.push(port);
    }
    let b = nets.pop().unwrap();
    let a = nets.pop().unwrap();
    Sim { pool, ex: Executor::new(r), a, b, clock, ports }
}

impl Sim {
    fn finish(self) {
        let Sim { pool, ex, a, b, ports, .. } = self;
        drop(ex);
        drop(a);
        drop(b);
        drop(ports);
        assert_eq!(pool.available(), POOL, "mbufs leaked");
    }
}

/// Serves on b, loads from a with every mode; returns messages echoed.
async fn exercise(a: flow::user::UserNet, b: flow::user::UserNet, target: SocketAddr, secs: f64) -> u64 {
    let listen = SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), 7);
    let cfg = echo_server_config(listen, 256, Duration::from_secs(60));
    let stop = Arc::new(AtomicBool::new(false));
    let srv = flow::spawn(server::serve(b, cfg, stop.clone()));
    let mut total = 0;
    for (mode, conns, rate) in [(Mode::Pingpong, 4, 0.0), (Mode::Throughput, 8, 4_000.0), (Mode::Churn, 2, 0.0)] {
        let cfg = client_config(target, mode, conns, rate, 300, secs, Duration::from_secs(10));
        let r = client::run(a.clone(), 0, 1, cfg, Arc::new(vec![Counters::default()]))
            .await
            .unwrap_or_else(|e| panic!("{mode:?} to {target}: {e}"));
        assert_eq!(r.errors, 0, "{mode:?} to {target}: {:?}", r.first_error);
        assert!(r.msgs > 10, "{mode:?} to {target}: {} messages", r.msgs);
        assert_eq!(r.hist.len(), r.msgs);
        total += r.msgs;
    }
    stop.store(true, Ordering::Release);
    let stats = srv.await.unwrap();
    assert_eq!(stats.tcp_errors, 0, "{stats:?}");
    assert!(stats.tcp_bytes >= total * 300, "{stats:?}");
    total
}

#[test]
fn echo_over_our_stack_clean_wire_v4_v6() {
    let mut s = sim("esim_clean", "", "");
    let (a, b) = (s.a.clone(), s.b.clone());
    let n =
        s.ex.block_on(async move {
            let v4 = exercise(a.clone(), b.clone(), "198.18.0.2:7".parse().unwrap(), 0.25).await;
            let v6 = exercise(a, b, "[2001:2::2]:7".parse().unwrap(), 0.25).await;
            v4 + v6
        })
        .unwrap();
    assert!(n > 100);
    s.finish();
}

#[test]
fn echo_over_our_stack_with_loss_reordering_duplication() {
    let imp = "&loss=0.02&reorder=0.02&dup=0.01&seed=11";
    let mut s = sim("esim_lossy", imp, "&loss=0.02&reorder=0.02&seed=12");
    let (a, b) = (s.a.clone(), s.b.clone());
    s.ex.block_on(async move { exercise(a, b, "198.18.0.2:7".parse().unwrap(), 3.0).await }).unwrap();
    assert!(pmd::Clock::now_ns(&s.clock) >= 9_000_000_000, "ran in virtual time");
    s.finish();
}

#[test]
fn refused_and_unreachable_on_our_stack() {
    let mut s = sim("esim_fail", "", "");
    let a = s.a.clone();
    s.ex.block_on(async move {
        // Nobody listens on b:9: RST to our SYN.
        let e = a.connect("198.18.0.2:9".parse().unwrap(), &tcp_config()).await.err();
        assert!(matches!(e, Some(FlowError::Refused)), "{e:?}");
        // Not on a connected network and no gateway: at once.
        let e = a.connect("198.19.0.9:7".parse().unwrap(), &tcp_config()).await.err();
        assert!(matches!(e, Some(FlowError::Unreachable)), "{e:?}");
        // On-link but nobody answers ARP.
        let e = a.connect("198.18.0.77:7".parse().unwrap(), &tcp_config()).await.err();
        assert!(matches!(e, Some(FlowError::Unreachable)), "{e:?}");
    })
    .unwrap();
    s.finish();
}
