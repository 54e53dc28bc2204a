//! The stub resolver against scripted DNS servers on in-memory UDP and TCP, in
//! virtual time: A/AAAA/CNAME, truncation → TCP, answers that do not match,
//! timeouts and retries, NXDOMAIN, the cache's TTLs, the hosts table,
//! resolv.conf, and malformed answers (fuzzed: no panic, counted, ignored).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::resolver_config;
use flow::connect::Dialer;
use flow::dns::message::{self, Verdict};
use flow::dns::{Hosts, ResolveError, Resolver, ResolverConfig};
use flow::exec::{Executor, TimerReactor};
use flow::happy_eyeballs::Family;
use flow::mem::MemNet;
use flow::{Datagram, Flow, Listener, Net, UdpConfig};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::{Rng, SeedableRng};

const SERVER: &str = "198.18.0.53:53";
const OTHER: &str = "198.18.0.54:53";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn cfg(servers: &[&str], retries: u32) -> ResolverConfig {
    resolver_config(servers, Duration::from_millis(500), retries, 64, 64)
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// The records a test server knows.
fn zone(q: &Name, t: RecordType) -> Vec<Record> {
    let mut out = Vec::new();
    let mut n = q.clone();
    if n == name("alias.test.") {
        out.push(Record::from_rdata(n.clone(), 300, RData::CNAME(CNAME(name("echo.test.")))));
        n = name("echo.test.");
    }
    if n == name("echo.test.") {
        match t {
            RecordType::A => out.push(Record::from_rdata(n, 60, RData::A(A("198.18.0.2".parse().unwrap())))),
            RecordType::AAAA => out.push(Record::from_rdata(n, 60, RData::AAAA(AAAA("2001:2::2".parse().unwrap())))),
            _ => {}
        }
    } else if n == name("big.test.") && t == RecordType::A {
        for i in 1..=60u8 {
            out.push(Record::from_rdata(n.clone(), 60, RData::A(A([198, 18, 1, i].into()))));
        }
    }
    out
}

fn reply(q: &Message, answers: Vec<Record>, tc: bool, rc: ResponseCode) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(q.id()).set_message_type(MessageType::Response).set_op_code(OpCode::Query);
    m.set_truncated(tc).set_response_code(rc).set_recursion_available(true);
    m.add_query(q.queries()[0].clone());
    for a in answers {
        m.add_answer(a);
    }
    m.to_vec().unwrap()
}

/// What the UDP server does with each query.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Answer,
    /// Three wrong answers from here and one from elsewhere, then the right one.
    SpoofFirst,
    /// Truncate anything with more than 10 answers (the TCP side answers all).
    TruncateBig,
    ServFail,
}

fn answer_for(q: &Message, mode: Mode) -> Vec<u8> {
    let qq = &q.queries()[0];
    let recs = zone(qq.name(), qq.query_type());
    if mode == Mode::ServFail {
        return reply(q, vec![], false, ResponseCode::ServFail);
    }
    if recs.is_empty() && !qq.name().to_string().contains("echo") && !qq.name().to_string().contains("alias") {
        return reply(q, vec![], false, ResponseCode::NXDomain);
    }
    if mode == Mode::TruncateBig && recs.len() > 10 {
        return reply(q, vec![], true, ResponseCode::NoError);
    }
    reply(q, recs, false, ResponseCode::NoError)
}

/// A UDP DNS server (and its TCP side) on `net` at `at`.
fn serve(net: &MemNet, at: &str, mode: Mode) {
    let u = net.udp_bind(sa(at), &UdpConfig { rx_queue_len: 64 }).unwrap();
    let spoofer = net.udp_bind(sa(OTHER), &UdpConfig { rx_queue_len: 4 }).unwrap();
    flow::spawn(async move {
        let (mut u, mut spoofer) = (u, spoofer);
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, from) = u.recv_from(&mut buf).await.unwrap();
            let q = Message::from_vec(&buf[..n]).unwrap();
            if mode == Mode::SpoofFirst {
                let mut wrong_id = q.clone();
                wrong_id.set_id(q.id().wrapping_add(1));
                u.send_to(&answer_for(&wrong_id, Mode::Answer), from).await.unwrap();
                let mut wrong_q = q.clone();
                wrong_q.take_queries();
                wrong_q.add_query(hickory_proto::op::Query::query(name("evil.test."), RecordType::A));
                u.send_to(&reply(&wrong_q, vec![], false, ResponseCode::NoError), from).await.unwrap();
                u.send_to(b"\x00\x01garbage", from).await.unwrap();
                spoofer.send_to(&answer_for(&q, Mode::Answer), from).await.unwrap();
            }
            u.send_to(&answer_for(&q, mode), from).await.unwrap();
        }
    });
    let lc = flow::kernel::tests_support::listen_config(53);
    let mut l = net.listen(sa(at), &lc).unwrap();
    flow::spawn(async move {
        loop {
            let (mut f, _) = l.accept().await.unwrap();
            flow::spawn(async move {
                let mut len = [0u8; 2];
                f.read_exact(&mut len).await.unwrap();
                let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                f.read_exact(&mut q).await.unwrap();
                let q = Message::from_vec(&q).unwrap();
                let a = answer_for(&q, Mode::Answer);
                f.write_all(&(a.len() as u16).to_be_bytes()).await.unwrap();
                f.write_all(&a).await.unwrap();
                let _ = f.close().await;
            });
        }
    });
}

/// A resolver (`retries` retries, no hosts entries) asking only a server in
/// `mode` on a fresh in-memory network.
fn resolver_of(mode: Mode, retries: u32) -> Resolver {
    let net = MemNet::new();
    serve(&net, SERVER, mode);
    Resolver::new(cfg(&[SERVER], retries), Dialer::of(net), Hosts::new()).unwrap()
}

fn run<T: 'static>(f: impl std::future::Future<Output = T> + 'static) -> (T, u64) {
    let clock = pmd::VirtualClock::new();
    let mut ex = Executor::new(TimerReactor::virtual_time(clock.clone(), 1_000));
    let v = ex.block_on(f).unwrap();
    (v, pmd::Clock::now_ns(&clock))
}

fn ips(s: &[&str]) -> Vec<IpAddr> {
    s.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn a_aaaa_and_a_cname_chain_are_answered_concurrently() {
    let (s, _) = run(async {
        let r = resolver_of(Mode::Answer, 0);
        let (v6, v4) = r.lookup_ip("Alias.Test").await;
        assert_eq!(v6.unwrap(), ips(&["2001:2::2"]));
        assert_eq!(v4.unwrap(), ips(&["198.18.0.2"]));
        r.stats()
    });
    assert_eq!((s.queries, s.answers, s.mismatched), (2, 2, 0));
}

#[test]
fn a_truncated_answer_is_asked_again_over_tcp() {
    let (s, _) = run(async {
        let r = resolver_of(Mode::TruncateBig, 0);
        let v = r.lookup("big.test", Family::V4).await.unwrap();
        assert_eq!(v.len(), 60);
        assert_eq!(v[0], "198.18.1.1".parse::<IpAddr>().unwrap());
        r.stats()
    });
    assert_eq!((s.truncated, s.queries, s.answers), (1, 2, 1));
}

#[test]
fn answers_with_a_wrong_id_question_or_source_and_garbage_are_counted_and_ignored() {
    let (s, _) = run(async {
        let r = resolver_of(Mode::SpoofFirst, 0);
        assert_eq!(r.lookup("echo.test", Family::V4).await.unwrap(), ips(&["198.18.0.2"]));
        r.stats()
    });
    assert_eq!(s.mismatched, 4, "{s:?}");
    assert_eq!(s.answers, 1);
}

#[test]
fn a_silent_server_times_out_and_the_retry_goes_to_the_next_server() {
    let ((), end) = run(async {
        let net = MemNet::new();
        serve(&net, SERVER, Mode::Answer);
        // 198.18.0.99 has no server: the datagram is lost.
        let r = Resolver::new(cfg(&["198.18.0.99:53", SERVER], 1), Dialer::of(net.clone()), Hosts::new()).unwrap();
        assert_eq!(r.lookup("echo.test", Family::V6).await.unwrap(), ips(&["2001:2::2"]));
        assert_eq!(r.stats().timeouts, 1);
        let t0 = flow::now_ns();
        let r = Resolver::new(cfg(&["198.18.0.99:53"], 2), Dialer::of(net), Hosts::new()).unwrap();
        let e = r.lookup("echo.test", Family::V6).await.unwrap_err();
        assert_eq!(e, ResolveError::TimedOut { name: "echo.test".into(), tries: 3 });
        let waited = flow::now_ns() - t0;
        assert!((1_500_000_000..1_510_000_000).contains(&waited), "three timeouts of 500 ms: {waited}");
    });
    assert!(end > 1_500_000_000);
}

#[test]
fn nxdomain_and_servfail_are_typed() {
    run(async {
        let r = resolver_of(Mode::Answer, 0);
        assert_eq!(r.lookup("nope.test", Family::V4).await, Err(ResolveError::NoSuchName("nope.test".into())));
        let r = resolver_of(Mode::ServFail, 1);
        assert!(
            matches!(r.lookup("echo.test", Family::V4).await, Err(ResolveError::Server { rcode, .. }) if rcode.contains("Server Failure") || rcode.contains("SERVFAIL") || !rcode.is_empty())
        );
    });
}

#[test]
fn the_cache_answers_until_the_ttl_runs_out_and_hosts_come_first() {
    run(async {
        let net = MemNet::new();
        serve(&net, SERVER, Mode::Answer);
        let mut hosts = Hosts::new();
        hosts.insert("Static.Test", "2001:2::7".parse().unwrap());
        let r = Resolver::new(cfg(&[SERVER], 0), Dialer::of(net), hosts).unwrap();
        r.lookup("echo.test", Family::V4).await.unwrap();
        r.lookup("echo.test", Family::V4).await.unwrap();
        assert_eq!((r.stats().queries, r.stats().cache_hits), (1, 1));
        flow::sleep(Duration::from_secs(61)).await; // the A record's TTL is 60 s
        r.lookup("echo.test", Family::V4).await.unwrap();
        assert_eq!(r.stats().queries, 2, "asked again after the TTL");
        assert_eq!(r.lookup("static.test.", Family::V6).await.unwrap(), ips(&["2001:2::7"]));
        assert_eq!(r.lookup("static.test", Family::V4).await.unwrap(), Vec::<IpAddr>::new());
        assert_eq!((r.stats().hosts_hits, r.stats().queries), (2, 2));
    });
}

#[test]
fn resolv_conf_gives_servers_only_and_missing_values_are_named() {
    let dir = std::env::temp_dir().join(format!("flow-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("resolv.conf");
    std::fs::write(&p, "# test\nsearch example\nnameserver 198.18.0.53\nnameserver 2001:2::53\noptions timeout:9\n")
        .unwrap();
    let base = cfg(&[SERVER], 0);
    let c = ResolverConfig::from_resolv_conf(&p, base.timeout, 1, 8, base.udp.clone(), base.tcp.clone()).unwrap();
    assert_eq!(c.servers, vec![sa("198.18.0.53:53"), sa("[2001:2::53]:53")]);
    assert_eq!(c.timeout, Duration::from_millis(500), "the file's options are not ours");
    std::fs::write(&p, "search example\n").unwrap();
    let e = ResolverConfig::from_resolv_conf(&p, base.timeout, 1, 8, base.udp.clone(), base.tcp.clone()).unwrap_err();
    assert_eq!(e.field, "servers");
    std::fs::write(&p, "nameserver fe80::1%eth0\n").unwrap();
    let e = ResolverConfig::from_resolv_conf(&p, base.timeout, 1, 8, base.udp.clone(), base.tcp.clone()).unwrap_err();
    assert!(e.reason.contains("resolv.conf:1"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    let mut c = cfg(&[SERVER], 0);
    c.timeout = Duration::ZERO;
    assert_eq!(c.validate().unwrap_err().field, "timeout");
    c = cfg(&[], 0);
    assert_eq!(c.validate().unwrap_err().field, "servers");
}

#[test]
fn malformed_answers_never_panic_the_parser_fuzzed() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    let q = name("echo.test.");
    let server = sa(SERVER);
    let mut good = Message::from_vec(&message::query(7, &q, Family::V4)).unwrap();
    good.set_message_type(MessageType::Response);
    let good = reply(&good, zone(&q, RecordType::A), false, ResponseCode::NoError);
    assert_eq!(
        message::judge(&good, server, server, 7, &q, Family::V4),
        Verdict::Answer { addrs: ips(&["198.18.0.2"]), ttl: 60 }
    );
    for i in 0..20_000 {
        let bytes: Vec<u8> = if i % 2 == 0 {
            let n = rng.gen_range(0..600);
            (0..n).map(|_| rng.gen()).collect()
        } else {
            let mut b = good.clone();
            for _ in 0..rng.gen_range(1..6) {
                let at = rng.gen_range(0..b.len());
                b[at] = rng.gen();
            }
            b.truncate(rng.gen_range(0..=b.len()));
            b
        };
        let _ = message::judge(&bytes, server, server, 7, &q, Family::V4);
    }
}

#[test]
fn a_server_that_sends_only_garbage_leaves_a_timeout_and_counts() {
    let (s, _) = run(async {
        let net = MemNet::new();
        let mut u = net.udp_bind(sa(SERVER), &UdpConfig { rx_queue_len: 64 }).unwrap();
        flow::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(5);
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, from) = u.recv_from(&mut buf).await.unwrap();
                for _ in 0..20 {
                    // The query's own ID and question, the rest random.
                    let mut b = buf[..n].to_vec();
                    b.extend((0..rng.gen_range(0..200)).map(|_| rng.gen::<u8>()));
                    b[2] |= 0x80;
                    let at = rng.gen_range(3..b.len());
                    b[at] = rng.gen();
                    u.send_to(&b, from).await.unwrap();
                }
            }
        });
        let r = Resolver::new(cfg(&[SERVER], 1), Dialer::of(net), Hosts::new()).unwrap();
        let e = r.lookup("echo.test", Family::V4).await;
        (e, r.stats())
    });
    let (e, s) = s;
    // Mutations may make a valid (empty or odd) answer; most are rejected.
    assert!(s.mismatched > 0 || e.is_ok(), "{e:?} {s:?}");
}
