//! The same echo server and client code over every stack: the kernel's sockets
//! (loopback), in-memory flows, and (in `sim.rs`) our stack in simulation.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client_config, echo_server_config};
use echo::client::{self, Counters, Mode};
use echo::server;
use flow::exec::{Executor, TimerReactor};
use flow::kernel::tests_support::listen_config;
use flow::kernel::KernelReactor;
use flow::{Datagram, Listener, Net, UdpConfig};

/// Serves on `net` at `listen`, then runs every client mode from `client_net`
/// against `target` for `secs` each (on the executor's clock) and checks that
/// every message came back intact and nothing failed.
async fn exercise<N: Net>(net: N, client_net: N, listen: SocketAddr, target: Option<SocketAddr>, secs: f64) {
    let udp_cfg = UdpConfig { rx_queue_len: 64 };
    let l = net.listen(listen, &listen_config(listen.port().max(1))).unwrap();
    let target = target.unwrap_or_else(|| l.local_addr().unwrap());
    let udp = net.udp_bind(target, &udp_cfg).unwrap();
    let udp_addr = udp.local_addr().unwrap();
    let cfg = echo_server_config(listen, udp_cfg.rx_queue_len, Duration::from_secs(30));
    let stop = Arc::new(AtomicBool::new(false));
    let srv = flow::spawn(server::serve_on(l, Some(udp), cfg, stop.clone()));
    let mut msgs = 0;
    for (mode, conns, rate) in [(Mode::Pingpong, 4, 0.0), (Mode::Throughput, 4, 2_000.0), (Mode::Churn, 2, 0.0)] {
        let cfg = client_config(target, mode, conns, rate, 100, secs, Duration::from_secs(5));
        let counters = Arc::new(vec![Counters::default()]);
        let r = client::run(client_net.clone(), 0, 1, cfg, counters).await.unwrap();
        assert_eq!(r.errors, 0, "{mode:?} on {}: {:?}", net.name(), r.first_error);
        assert!(r.msgs > 0, "{mode:?} on {}: no messages", net.name());
        assert_eq!(r.hist.len(), r.msgs, "{mode:?}: one latency per message");
        if mode == Mode::Churn {
            assert_eq!(r.conns, r.msgs, "one round trip per connection");
        }
        msgs += r.msgs;
    }
    // UDP echo on the same port.
    let any: SocketAddr = if udp_addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().unwrap();
    let bind = SocketAddr::new(if target.ip().is_loopback() { target.ip() } else { any.ip() }, 0);
    let mut u = client_net.udp_bind(bind, &udp_cfg).unwrap();
    let mut buf = [0u8; 64];
    let mut echoed = 0;
    for i in 0..20u8 {
        u.send_to(&[i; 32], udp_addr).await.unwrap();
        if let Ok(Ok((n, from))) = flow::timeout(Duration::from_millis(500), u.recv_from(&mut buf)).await {
            assert_eq!((&buf[..n], from), (&[i; 32][..], udp_addr));
            echoed += 1;
        }
    }
    assert!(echoed > 0, "no UDP echo on {}", net.name());
    stop.store(true, Ordering::Release);
    let stats = srv.await.unwrap();
    assert!(stats.tcp_accepted >= 8, "{stats:?}");
    assert!(stats.tcp_bytes >= msgs * 100, "{stats:?}");
    assert_eq!(stats.tcp_errors, 0, "{stats:?}");
    // The core's loop accounting comes with the counters: serving took work.
    assert!(stats.core_busy_iterations > 0 && stats.core_busy_cycles > 0, "{stats:?}");
}

#[test]
fn kernel_loopback_v4_and_v6() {
    let r = KernelReactor::new().unwrap();
    let net = r.net();
    let mut ex = Executor::new(r);
    ex.block_on(async move {
        exercise(net.clone(), net.clone(), "127.0.0.1:0".parse().unwrap(), None, 0.3).await;
        exercise(net.clone(), net, "[::1]:0".parse().unwrap(), None, 0.3).await;
    })
    .unwrap();
}

#[test]
fn in_memory_flows() {
    let clock = pmd::VirtualClock::new();
    let mut ex = Executor::new(TimerReactor::virtual_time(clock.clone(), 20_000));
    let net = flow::mem::MemNet::new();
    ex.block_on(async move {
        let a: SocketAddr = "198.18.0.2:7".parse().unwrap();
        exercise(net.clone(), net, a, Some(a), 1.0).await;
    })
    .unwrap();
    assert!(pmd::Clock::now_ns(&clock) >= 3_000_000_000, "ran in virtual time");
}
