//! Active health checks in-process (MemNet, virtual time): a server that
//! stops answering is marked down on every core within
//! `fall × interval + timeout` (plus one control tick), and comes back after
//! `rise` passing checks; an HTTP check wants its status.

use std::sync::Arc;
use std::time::Duration;

use flow::exec::{Executor, TimerReactor};
use flow::mem::MemNet;
use flow::{Flow, Listener, Net};
use loadbalancer::config::{Check, Config, INIT};
use loadbalancer::control::{Control, TICK};
use loadbalancer::proxy::Lb;

fn up_of(ctl: &Control, server: usize) -> bool {
    ctl.snapshots()[0].backends[0].2[server].1
}

#[test]
fn a_dead_server_is_down_within_fall_times_interval_plus_timeout_and_back_after_rise() {
    let mut ex = Executor::new(TimerReactor::virtual_time(pmd::VirtualClock::new(), 1_000));
    ex.block_on(async {
        let net = MemNet::new();
        let cfg = Arc::new(Config::check(INIT).unwrap());
        let b = &cfg.backends[0];
        let (interval, timeout, fall, rise) = (b.interval, b.check_timeout, b.fall, b.rise);
        let lc = flow::kernel::tests_support::listen_config(8081);
        let mut keep = Vec::new();
        for s in &b.servers {
            keep.push(net.listen(s.addr, &lc).unwrap());
        }
        let ctl = Control::new(1, cfg.clone(), Duration::from_secs(1));
        let lb = Lb::new(net.clone(), &cfg);
        flow::spawn(ctl.clone().core_task(lb.clone(), 0));
        flow::spawn(loadbalancer::health::run(net.clone(), lb.clone(), ctl.clone(), cfg.tcp.clone()));
        flow::sleep(interval * 3).await;
        assert!(up_of(&ctl, 2));
        // s3 dies.
        drop(keep.pop());
        let t0 = flow::now_ns();
        while up_of(&ctl, 2) {
            flow::sleep(Duration::from_millis(5)).await;
        }
        let took = Duration::from_nanos(flow::now_ns() - t0);
        let limit = interval * fall + timeout + TICK;
        assert!(took <= limit, "down after {took:?}, limit {limit:?}");
        assert!(took >= interval * (fall - 1), "down after {took:?}: too soon for fall = {fall}");
        assert!(up_of(&ctl, 0) && up_of(&ctl, 1));
        // It comes back.
        keep.push(net.listen(cfg.backends[0].servers[2].addr, &lc).unwrap());
        let t0 = flow::now_ns();
        while !up_of(&ctl, 2) {
            flow::sleep(Duration::from_millis(5)).await;
        }
        let took = Duration::from_nanos(flow::now_ns() - t0);
        assert!(took <= interval * rise + timeout + TICK, "up after {took:?}");
        ctl.stop();
    })
    .unwrap();
}

#[test]
fn an_http_check_wants_the_configured_status() {
    let mut ex = Executor::new(TimerReactor::virtual_time(pmd::VirtualClock::new(), 1_000));
    ex.block_on(async {
        let net = MemNet::new();
        let lc = flow::kernel::tests_support::listen_config(80);
        let tcp = flow::kernel::tests_support::tcp_config();
        let kind = Check::Http { path: "/health".into(), host: "lb".into(), status: 200 };
        for (answer, want) in [("HTTP/1.1 200 OK\r\n\r\n", true), ("HTTP/1.1 503 Unavailable\r\n\r\n", false)] {
            let addr = "198.18.2.9:80".parse().unwrap();
            let mut l = net.listen(addr, &lc).unwrap();
            let server = flow::spawn(async move {
                let (mut f, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let n = f.read(&mut buf).await.unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                f.write_all(answer.as_bytes()).await.unwrap();
                let _ = f.close().await;
                req
            });
            let ok = loadbalancer::health::check(
                &net,
                &tcp,
                addr,
                &kind,
                loadbalancer::config::SendProxy::V2,
                Duration::from_secs(1),
            )
            .await;
            assert_eq!(ok, want, "{answer}");
            let req = server.await;
            // The v2 LOCAL header, then the request.
            assert!(req.starts_with("\r\n\r\n\0\r\nQUIT\n"), "{req:?}");
            assert!(req.contains("GET /health HTTP/1.0\r\nHost: lb\r\n"), "{req:?}");
        }
        // Nobody listening: fails.
        let tcp_kind = Check::Tcp;
        let none = "198.18.2.10:80".parse().unwrap();
        let ok = loadbalancer::health::check(
            &net,
            &tcp,
            none,
            &tcp_kind,
            loadbalancer::config::SendProxy::Off,
            Duration::from_secs(1),
        )
        .await;
        assert!(!ok);
    })
    .unwrap();
}
