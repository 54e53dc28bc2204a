//! Deterministic simulation: two stacks over `ring:` ports in virtual time, with
//! seeded impairment. Every test ends with `finish()`, which asserts that every
//! buffer went back to its pool.

mod net;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use net::*;
use stack::{UdpConfig, UdpDatagram};

const MS: Duration = Duration::from_millis(1);

/// Pings `dst` from `a` `n` times, one per `gap`, and returns the replies seen.
fn ping_n(p: &mut Pair, dst: IpAddr, n: u16, gap: Duration) -> Vec<stack::EchoReply> {
    let h = p.a.echo().open(0x4242, 1024).unwrap();
    for seq in 0..n {
        p.a.echo().ping(h, dst, seq, b"0123456789abcdef").unwrap();
        p.run(gap);
    }
    p.run(Duration::from_secs(5));
    let mut out = Vec::new();
    p.a.echo().recv(h, &mut out);
    p.a.echo().close(h);
    out
}

#[test]
fn rfc826_arp_resolution_and_rfc792_echo_v4() {
    let mut p = Pair::new("sim_echo4", "", "");
    let replies = ping_n(&mut p, IpAddr::V4(b4()), 10, MS);
    assert_eq!(replies.len(), 10);
    assert!(replies.iter().enumerate().all(|(i, r)| r.seq_no == i as u16 && r.from == IpAddr::V4(b4())));
    assert_eq!(replies[0].len, 16);
    // a resolved b with one ARP request; b learned a from it (RFC 826 merge) and
    // answered without asking.
    assert_eq!(p.a.stats().events.arp_requests_sent, 1);
    assert_eq!(p.b.stats().events.arp_requests_sent, 0);
    assert_eq!(p.b.stats().events.arp_replies_sent, 1);
    assert_eq!(p.b.stats().events.echo_replies_sent, 10);
    assert_eq!(p.a.neighbor(IpAddr::V4(b4())), Some(p.ports[1].port.info().mac));
    assert_eq!(p.b.neighbor(IpAddr::V4(a4())), Some(p.ports[0].port.info().mac));
    // Gratuitous ARP (RFC 5227 §3 announcement) on start, from both.
    assert_eq!(p.a.stats().events.arp_announcements_sent, 1);
    assert_eq!(p.b.stats().events.arp_announcements_sent, 1);
    assert_eq!(p.a.stats().malformed_total() + p.b.stats().malformed_total(), 0);
    assert_eq!(p.a.timers_armed(), 0);
    p.finish();
}

#[test]
fn rfc4861_ndp_resolution_and_rfc4443_echo_v6() {
    let mut p = Pair::new("sim_echo6", "", "");
    let replies = ping_n(&mut p, IpAddr::V6(b6()), 10, MS);
    assert_eq!(replies.len(), 10);
    assert!(replies.iter().all(|r| r.from == IpAddr::V6(b6())));
    assert_eq!(p.a.stats().events.ndp_solicits_sent, 1);
    assert_eq!(p.b.stats().events.ndp_adverts_sent, 1);
    assert_eq!(p.b.stats().events.ndp_solicits_sent, 0, "b learned a from the NS's source link-layer option");
    assert_eq!(p.a.stats().events.ndp_announcements_sent, 1, "unsolicited NA on start (RFC 4861 §7.2.6)");
    assert_eq!(p.a.neighbor(IpAddr::V6(b6())), Some(p.ports[1].port.info().mac));
    assert_eq!(p.a.stats().malformed_total() + p.b.stats().malformed_total(), 0);
    p.finish();
}

/// b runs a UDP echo server on port 7 (zero copy: the received buffers are sent
/// back); a sends `n` datagrams and checks every reply's payload.
fn udp_echo(p: &mut Pair, dst_ip: IpAddr, n: usize) -> usize {
    let any: IpAddr = if dst_ip.is_ipv4() { "0.0.0.0".parse().unwrap() } else { "::".parse().unwrap() };
    let server = p.b.udp().bind(SocketAddr::new(any, 7), UdpConfig { rx_queue_len: 256 }).unwrap();
    let client = p.a.udp().bind(SocketAddr::new(any, 0), UdpConfig { rx_queue_len: 256 }).unwrap();
    let dst = SocketAddr::new(dst_ip, 7);
    let mut sent_ptrs = Vec::new();
    let mut got = Vec::new();
    let mut zero_copy = 0;
    let mut next = 0;
    let pool = p.pool.clone();
    p.run_with(Duration::from_secs(5), Duration::from_micros(100), |a, b| {
        // Paced: 4 datagrams per 100 µs step (the first ones wait for resolution).
        for _ in 0..4 {
            if next < n {
                let mut m = pool.alloc().unwrap();
                m.extend_from_slice(format!("datagram {next:04}").as_bytes()).unwrap();
                sent_ptrs.push(m.data_ptr() as usize);
                a.udp().send_to(client, m, dst).unwrap();
                next += 1;
            }
        }
        let mut v: Vec<UdpDatagram> = Vec::new();
        b.udp().recv(server, &mut v, 64).unwrap();
        let mut back: Vec<_> = v.into_iter().map(|d| (d.payload, d.peer)).collect();
        b.udp().send_batch(server, &mut back).unwrap();
        let mut r = Vec::new();
        a.udp().recv(client, &mut r, 64).unwrap();
        for d in r {
            // The ring hands buffers over, so a zero-copy path end to end means the
            // reply's payload is the very bytes the client filled.
            if sent_ptrs.contains(&(d.payload.data_ptr() as usize)) {
                zero_copy += 1;
            }
            assert_eq!(d.peer, dst);
            got.push(String::from_utf8(d.payload.data().to_vec()).unwrap());
        }
    });
    got.sort();
    got.dedup();
    for g in &got {
        assert!(g.starts_with("datagram "), "{g}");
    }
    assert!(zero_copy >= got.len(), "every echoed payload travelled in its original buffer");
    p.a.udp().close(client).unwrap();
    p.b.udp().close(server).unwrap();
    got.len()
}

#[test]
fn rfc768_udp_echo_v4_zero_copy() {
    let mut p = Pair::new("sim_udp4", "", "");
    assert_eq!(udp_echo(&mut p, IpAddr::V4(b4()), 100), 100);
    assert_eq!(p.a.stats().events.udp_sent, 100);
    assert_eq!(p.b.stats().events.udp_delivered, 100);
    assert_eq!(p.a.stats().events.bytes_copied, 0);
    assert_eq!(p.b.stats().events.bytes_copied, 0);
    p.finish();
}

#[test]
fn rfc768_udp_echo_v6_zero_copy() {
    let mut p = Pair::new("sim_udp6", "", "");
    assert_eq!(udp_echo(&mut p, IpAddr::V6(b6()), 100), 100);
    assert_eq!(p.a.stats().events.bytes_copied + p.b.stats().events.bytes_copied, 0);
    p.finish();
}

#[test]
fn udp_and_echo_over_lossy_reordering_wire_v4_v6() {
    let imp = "&loss=0.1&reorder=0.05&dup=0.02&seed=3";
    let mut p = Pair::new("sim_lossy", imp, "&loss=0.1&seed=4");
    let got4 = udp_echo(&mut p, IpAddr::V4(b4()), 200);
    let got6 = udp_echo(&mut p, IpAddr::V6(b6()), 200);
    // Each datagram crosses the lossy wire twice: about 0.9 * 0.9 arrive.
    assert!((120..200).contains(&got4), "v4 {got4}");
    assert!((120..200).contains(&got6), "v6 {got6}");
    let replies = ping_n(&mut p, IpAddr::V4(b4()), 50, MS);
    assert!((30..=50).contains(&replies.len()), "{}", replies.len());
    // Deterministic: the same seeds give the same run.
    let mut q = Pair::new("sim_lossy2", imp, "&loss=0.1&seed=4");
    assert_eq!(udp_echo(&mut q, IpAddr::V4(b4()), 200), got4);
    assert_eq!(udp_echo(&mut q, IpAddr::V6(b6()), 200), got6);
    p.finish();
    q.finish();
}

#[test]
fn rfc1122_2_3_2_1_arp_retries_under_loss_then_resolves() {
    // Everything a sends is lost with probability 0.6: the first requests die.
    let mut requests = 0;
    for seed in [1u64, 2, 3, 4, 5] {
        let name = format!("sim_arp_loss{seed}");
        let mut p = Pair::with(&name, &format!("&loss=0.6&seed={seed}"), "", |c| c.neighbor.retries = 10, |_| {});
        // Let the start-up announcements pass first: b's gratuitous ARP / unsolicited
        // NA would otherwise resolve a's entries (RFC 826 merge) without any retry.
        p.run(Duration::from_millis(10));
        let h = p.a.echo().open(1, 16).unwrap();
        p.a.echo().ping(h, IpAddr::V4(b4()), 0, b"x").unwrap();
        p.a.echo().ping(h, IpAddr::V6(b6()), 0, b"x").unwrap();
        p.run(Duration::from_secs(12));
        let s = p.a.stats().events.clone();
        assert!(s.arp_requests_sent >= 1 && s.ndp_solicits_sent >= 1);
        // Both requests are resolved eventually (retries), or all retries were lost.
        let resolved4 = p.a.neighbor(IpAddr::V4(b4())).is_some();
        let resolved6 = p.a.neighbor(IpAddr::V6(b6())).is_some();
        assert!(resolved4 || s.arp_requests_sent == 11, "seed {seed}: {s:?}");
        assert!(resolved6 || s.ndp_solicits_sent == 11, "seed {seed}: {s:?}");
        assert_eq!(p.a.pending_resolution(), 0);
        requests += s.arp_requests_sent + s.ndp_solicits_sent;
        p.a.echo().close(h);
        p.finish();
    }
    assert!(requests > 10, "some first requests were lost and retried ({requests} for 10 resolutions)");
}

#[test]
fn rfc4861_7_3_3_unanswered_resolution_retries_then_drops_queue() {
    let mut p = Pair::new("sim_unres", "", "");
    let h = p.a.echo().open(9, 16).unwrap();
    let ghost4: IpAddr = "198.18.0.99".parse().unwrap();
    let ghost6: IpAddr = "2001:2::99".parse().unwrap();
    for seq in 0..3 {
        p.a.echo().ping(h, ghost4, seq, b"x").unwrap();
        p.a.echo().ping(h, ghost6, seq, b"x").unwrap();
    }
    p.run(MS);
    assert_eq!(p.a.pending_resolution(), 6);
    // retries = 3, interval 1 s: 4 requests over 3 s, given up at 4 s.
    p.run(Duration::from_millis(3500));
    assert_eq!(p.a.stats().events.arp_requests_sent, 4);
    assert_eq!(p.a.stats().events.ndp_solicits_sent, 4);
    assert_eq!(p.a.stats().drops.neighbor_unresolved, 0);
    p.run(Duration::from_secs(1));
    assert_eq!(p.a.stats().drops.neighbor_unresolved, 6);
    assert_eq!(p.a.pending_resolution(), 0);
    assert_eq!(p.a.timers_armed(), 0);
    p.finish();
}

#[test]
fn rfc4861_7_2_2_pending_queue_is_bounded() {
    let mut p = Pair::with("sim_pending", "", "", |c| c.neighbor.pending = 2, |_| {});
    let h = p.a.echo().open(9, 16).unwrap();
    for seq in 0..5 {
        p.a.echo().ping(h, IpAddr::V4(b4()), seq, b"x").unwrap();
    }
    assert_eq!(p.a.pending_resolution(), 2);
    assert_eq!(p.a.stats().drops.neighbor_pending_full, 3);
    p.run(Duration::from_millis(10));
    let mut out = Vec::new();
    p.a.echo().recv(h, &mut out);
    assert_eq!(out.len(), 2);
    p.finish();
}

#[test]
fn rfc792_rfc4443_port_unreachable_is_rate_limited() {
    // b: 10 errors/s, burst 5.
    let mut p = Pair::new("sim_unreach", "", "");
    let c4 = p.a.udp().bind("0.0.0.0:0".parse().unwrap(), UdpConfig { rx_queue_len: 8 }).unwrap();
    let c6 = p.a.udp().bind("[::]:0".parse().unwrap(), UdpConfig { rx_queue_len: 8 }).unwrap();
    for _ in 0..4 {
        p.a.udp().send_slice(c4, b"knock", SocketAddr::new(IpAddr::V4(b4()), 9999)).unwrap();
        p.a.udp().send_slice(c6, b"knock", SocketAddr::new(IpAddr::V6(b6()), 9999)).unwrap();
    }
    p.run(MS);
    let b = p.b.stats().events.clone();
    assert_eq!(p.b.stats().drops.udp_no_socket, 8);
    assert_eq!(b.unreachables_sent, 5);
    assert_eq!(b.icmp_rate_limited, 3);
    assert_eq!(p.a.stats().events.icmp_other_received, 5, "a received the unreachables");
    // 100 ms later one more token (10/s).
    p.run(Duration::from_millis(100));
    p.a.udp().send_slice(c4, b"knock", SocketAddr::new(IpAddr::V4(b4()), 9999)).unwrap();
    p.a.udp().send_slice(c4, b"knock", SocketAddr::new(IpAddr::V4(b4()), 9999)).unwrap();
    p.run(MS);
    assert_eq!(p.b.stats().events.unreachables_sent, 6);
    assert_eq!(p.b.stats().events.icmp_rate_limited, 4);
    p.finish();
}

#[test]
fn udp_receive_queue_length_is_enforced() {
    let mut p = Pair::new("sim_rxq", "", "");
    let s = p.b.udp().bind(SocketAddr::new(IpAddr::V4(b4()), 5000), UdpConfig { rx_queue_len: 3 }).unwrap();
    let c = p.a.udp().bind("0.0.0.0:0".parse().unwrap(), UdpConfig { rx_queue_len: 3 }).unwrap();
    for i in 0..5u8 {
        p.a.udp().send_slice(c, &[i], SocketAddr::new(IpAddr::V4(b4()), 5000)).unwrap();
    }
    p.run(MS);
    assert_eq!(p.b.udp().queued(s).unwrap(), 3);
    assert_eq!(p.b.stats().drops.udp_queue_full, 2);
    let mut v = Vec::new();
    assert_eq!(p.b.udp().recv(s, &mut v, 2).unwrap(), 2);
    assert_eq!(v[0].payload.data(), &[0]);
    assert_eq!(v[1].payload.data(), &[1]);
    drop(v);
    // Binding rules.
    let e = p.b.udp().bind(SocketAddr::new(IpAddr::V4(b4()), 5000), UdpConfig { rx_queue_len: 3 }).unwrap_err();
    assert!(matches!(e, stack::StackError::AddrInUse(_)));
    let e = p.b.udp().bind("198.19.0.1:1".parse().unwrap(), UdpConfig { rx_queue_len: 3 }).unwrap_err();
    assert!(matches!(e, stack::StackError::AddrNotAvailable(_)));
    let e = p.b.udp().bind("0.0.0.0:1".parse().unwrap(), UdpConfig { rx_queue_len: 0 }).unwrap_err();
    assert!(e.to_string().contains("udp.rx_queue_len"));
    let e = p.a.udp().send_slice(c, b"x", "198.19.9.9:1".parse().unwrap()).unwrap_err();
    assert!(matches!(e, stack::StackError::NoRoute(_)));
    let e = p.a.udp().send_slice(c, &[0u8; 1500], SocketAddr::new(IpAddr::V4(b4()), 5000)).unwrap_err();
    assert!(matches!(e, stack::StackError::TooBig { .. }));
    p.b.udp().close(s).unwrap();
    assert!(matches!(p.b.udp().queued(s), Err(stack::StackError::InvalidHandle)));
    p.finish();
}

#[test]
fn default_gateway_is_resolved_for_off_link_destinations() {
    // a has 198.18.0.1/24 and gateway b (198.18.0.2); 198.19.5.5 is off-link, so a resolves b and sends to b's MAC.
    let mut p = Pair::with("sim_gw", "", "", |c| c.gateway_v4 = Some("198.18.0.2".parse().unwrap()), |_| {});
    let c = p.a.udp().bind("0.0.0.0:0".parse().unwrap(), UdpConfig { rx_queue_len: 1 }).unwrap();
    p.run(MS);
    let before = p.b.stats().drops.not_for_us;
    p.a.udp().send_slice(c, b"via gw", "198.19.5.5:53".parse().unwrap()).unwrap();
    p.run(Duration::from_millis(5));
    assert_eq!(p.a.neighbor(IpAddr::V4(b4())), Some(p.ports[1].port.info().mac));
    // b received it at L2 but the IP destination is not its own.
    assert_eq!(p.b.stats().drops.not_for_us, before + 1);
    p.finish();
}
