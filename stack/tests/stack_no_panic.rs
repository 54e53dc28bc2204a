//! Property test: arbitrary bytes into the stack's frame input never panic, and
//! every buffer goes back to its pool. Inputs are fully random, random behind a
//! valid Ethernet header to the stack (so they reach ARP/IPv4/IPv6 parsing), and
//! valid frames with random bytes flipped and random truncation (so they reach
//! the deep paths: ICMP, NDP, UDP, reassembly).

mod frames;
mod net;

use frames::*;
use net::*;
use pmd::Mbuf;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use stack::UdpConfig;

fn seeds(p: &Probe) -> Vec<Vec<u8>> {
    let m = p.mac;
    let frag = ipv4(a4(), b4(), stack::wire::IpProtocol::Udp, 5, 8, true, &[0u8; 16]);
    vec![
        arp_request(PROBE_MAC, a4(), b4()),
        icmp4_echo_frame(PROBE_MAC, m, a4(), b4(), b"abcdefgh"),
        udp_frame(PROBE_MAC, m, IpPair::V4 { src: a4(), dst: b4() }, 1, 5000, b"hello"),
        udp_frame(PROBE_MAC, m, IpPair::V4 { src: a4(), dst: b4() }, 1, 9, b"closed"),
        ns_frame(PROBE_MAC, a6(), b6()),
        icmp6_echo_frame(PROBE_MAC, m, a6(), b6(), b"abcdefgh"),
        udp_frame(PROBE_MAC, m, IpPair::V6 { src: a6(), dst: b6() }, 1, 5000, b"hello"),
        eth(PROBE_MAC, m, stack::wire::EtherType::Ipv4, &frag),
    ]
}

#[derive(Debug, Clone)]
enum Input {
    Raw(Vec<u8>),
    Headed(u16, Vec<u8>),
    Mutated(usize, Vec<(usize, u8)>, usize),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(Input::Raw),
        (
            prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x0806), any::<u16>()],
            proptest::collection::vec(any::<u8>(), 0..200)
        )
            .prop_map(|(t, b)| Input::Headed(t, b)),
        (0usize..8, proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4), any::<usize>())
            .prop_map(|(i, f, t)| Input::Mutated(i, f, t)),
    ]
}

#[test]
fn arbitrary_frames_never_panic_and_never_leak() {
    let mut p = Probe::new("nopanic", |c| c.icmp.error_rate_per_sec = 1_000_000);
    let s = p.s.udp().bind("0.0.0.0:5000".parse().unwrap(), UdpConfig { rx_queue_len: 4 }).unwrap();
    let s6 = p.s.udp().bind("[::]:5000".parse().unwrap(), UdpConfig { rx_queue_len: 4 }).unwrap();
    let seeds = seeds(&p);
    let mac = p.mac;
    let mut runner = TestRunner::new(Config { cases: 3000, failure_persistence: None, ..Config::default() });
    let pool = p.pool.clone();
    let cell = std::cell::RefCell::new(p);
    runner
        .run(&input(), |inp| {
            let bytes = match inp {
                Input::Raw(b) => b,
                Input::Headed(t, b) => {
                    let mut f = eth(PROBE_MAC, mac, stack::wire::EtherType::from(t), &[]);
                    f.extend_from_slice(&b);
                    f
                }
                Input::Mutated(i, flips, trunc) => {
                    let mut f = seeds[i].clone();
                    for (at, x) in flips {
                        let n = f.len();
                        f[at % n] ^= x;
                    }
                    let n = f.len();
                    f.truncate(n - trunc % 8.min(n));
                    f
                }
            };
            let mut p = cell.borrow_mut();
            let mut m: Mbuf = pool.alloc().unwrap();
            m.extend_from_slice(&bytes).unwrap();
            let mut v = vec![m];
            let now = p.s.now_ns();
            p.s.input(now, &mut v);
            p.s.flush();
            let mut out = Vec::new();
            p.probe.rx.as_mut().unwrap().rx_burst(&mut out, 64);
            let mut got = Vec::new();
            p.s.udp().recv(s, &mut got, 4).unwrap();
            p.s.udp().recv(s6, &mut got, 4).unwrap();
            Ok(())
        })
        .unwrap();
    let p = cell.into_inner();
    let st = p.s.stats();
    assert!(st.malformed_total() > 0);
    p.finish();
}
