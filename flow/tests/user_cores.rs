//! `Runtime::user(spec, cfg).cores(&[a, b]).rss_key(..)` on both ends of a
//! `ring?rss=1` wire: each runtime configures its port with one queue per core
//! and RSS, each core sees `Core { index, count }`, listeners on every core,
//! and 2 × 100 echo connections from the client's two cores all complete with
//! no frame misdirected or handed between cores (the connecting core chose a
//! port whose reply hashes to it; the server's core is the one its SYN hashed
//! to).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flow::kernel::tests_support::{listen_config, tcp_config};
use flow::{Flow, Listener, Net};

fn cores() -> Vec<usize> {
    let all = pmd::runtime::available_cores();
    match all.as_slice() {
        [.., a, b] => vec![*a, *b],
        [a] => vec![*a, *a],
        [] => vec![0, 0],
    }
}

fn runtime(spec: &str, ip: &str) -> flow::user::UserRuntime {
    let cfg = stack::StackConfig {
        ipv4: vec![ip.parse().unwrap()],
        tcp_rx_mbufs: 512,
        ..stack::profiles::sim(pmd::MacAddr([2, 0, 0, 0, 0, 1]))
    };
    flow::Runtime::user(spec, cfg)
        .mac_from_port()
        .cores(&cores())
        .mbufs(8192)
        .queue_size(1024)
        .rss_key(&pmd::rss::MICROSOFT_KEY)
}

/// (core index, count, connections, misdirected, handed off, handed in).
type CoreReport = (usize, usize, u64, u64, u64, u64);

fn report(net: &flow::user::UserNet, index: usize, count: usize, conns: u64) -> CoreReport {
    net.with_stack(|s| {
        let e = &s.stats().events;
        (index, count, conns, e.rss_misdirected, e.frames_handed_off, e.frames_handed_in)
    })
}

#[test]
fn echo_on_two_cores_per_side_over_ring_with_rss_keeps_every_connection_on_its_core() {
    if cores().windows(2).any(|w| w[0] == w[1]) {
        // check_cores refuses a core listed twice; one CPU cannot run this.
        testkit::skip("needs two CPUs");
        return;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            runtime("ring:ucores_s?peer=ucores_c&rss=1", "198.18.0.2/24").run(|core| {
                let stop = stop.clone();
                async move {
                    let addr: SocketAddr = "[::]:7".parse().unwrap();
                    let mut l = core.net.listen(addr, &listen_config(7)).unwrap();
                    let mut accepted = 0;
                    while !stop.load(Ordering::Acquire) {
                        if let Ok(Ok((mut f, _))) = flow::timeout(Duration::from_millis(20), l.accept()).await {
                            accepted += 1;
                            flow::spawn(async move {
                                let mut buf = [0u8; 512];
                                loop {
                                    match f.read(&mut buf).await {
                                        Ok(0) | Err(_) => break,
                                        Ok(n) => {
                                            if f.write_all(&buf[..n]).await.is_err() {
                                                break;
                                            }
                                        }
                                    }
                                }
                                let _ = f.close().await;
                            });
                        }
                    }
                    report(&core.net, core.index, core.count, accepted)
                }
            })
        })
    };
    let clients = runtime("ring:ucores_c?peer=ucores_s&rss=1", "198.18.0.1/24")
        .run(|core| async move {
            let target: SocketAddr = "198.18.0.2:7".parse().unwrap();
            let mut done = 0;
            for i in 0..100u32 {
                let mut f = match flow::timeout(Duration::from_secs(10), core.net.connect(target, &tcp_config())).await
                {
                    Ok(Ok(f)) => f,
                    other => panic!("core {} connection {i}: {:?}", core.index, other.map(|r| r.err())),
                };
                let msg: Vec<u8> = (0..200u32).map(|k| (k * 7 + i + core.index as u32) as u8).collect();
                f.write_all(&msg).await.unwrap();
                let mut back = vec![0u8; msg.len()];
                f.read_exact(&mut back).await.unwrap();
                assert_eq!(back, msg, "byte-exact echo");
                f.close().await.unwrap();
                done += 1;
            }
            report(&core.net, core.index, core.count, done)
        })
        .unwrap();
    stop.store(true, Ordering::Release);
    let servers = server.join().unwrap().unwrap();
    for (side, reports) in [("client", &clients), ("server", &servers)] {
        let mut idx: Vec<_> = reports.iter().map(|r| (r.0, r.1)).collect();
        idx.sort();
        assert_eq!(idx, vec![(0, 2), (1, 2)], "{side}: Core {{ index, count }}");
        for r in reports.iter() {
            assert_eq!((r.3, r.4, r.5), (0, 0, 0), "{side} core {}: misdirected, handed off, handed in", r.0);
        }
    }
    assert!(clients.iter().all(|r| r.2 == 100));
    assert_eq!(servers.iter().map(|r| r.2).sum::<u64>(), 200, "{servers:?}");
    assert!(servers.iter().all(|r| r.2 > 0), "RSS spread the connections over both server cores: {servers:?}");
}

#[test]
fn more_than_one_core_without_an_rss_key_or_with_a_short_one_is_refused_naming_it() {
    let cores = cores();
    if cores.windows(2).any(|w| w[0] == w[1]) {
        testkit::skip("needs two CPUs");
        return;
    }
    let cfg = || stack::StackConfig {
        ipv4: vec!["198.18.0.1/24".parse().unwrap()],
        ..stack::profiles::sim(pmd::MacAddr([2, 0, 0, 0, 0, 1]))
    };
    let base = || flow::Runtime::user("ring:ucores_k?rss=1", cfg()).cores(&cores).mbufs(4096).queue_size(256);
    let e = base().check().err().expect("no key").to_string();
    assert!(e.contains("rss_key"), "{e}");
    let e = base().rss_key(&[0x6d; 39]).check().err().expect("short key").to_string();
    assert!(e.contains("rss_key") && e.contains("39"), "{e}");
    assert!(base().rss_key(&pmd::rss::SYMMETRIC_KEY).check().is_ok());
}
