//! Forwarding engines over `ring` and `null` ports, driven in-process: exact
//! counts, the engine over concrete queue types, and the runtime's busy/idle
//! accounting of a forwarding core.

#[path = "../../../pmd/tests/common.rs"]
mod common;
use common::*;

use std::time::Duration;

use pmd::runtime::{available_cores, CoreCycles, IdlePolicy, Lcore, Lcores, RecordCycles};
use pmd::{Mempool, MempoolConfig, Port, PortConfig};
use testpmd::fwd::{FwdConfig, FwdLcore, FwdMode, Stream};

fn cfg(mode: FwdMode, pool: &pmd::Mempool, nb_pkts: Option<u64>, tx_first: u32) -> FwdConfig {
    FwdConfig {
        mode,
        burst: 32,
        txpkts: 64,
        flows: 16,
        multi_flow: false,
        tx_first,
        nb_pkts,
        pool: pool.clone(),
        verify: false,
    }
}

fn stream(rx_port: &mut Box<dyn Port>, tx_port: &mut Box<dyn Port>) -> Stream {
    let mac = tx_port.info().mac;
    Stream::new(0, 1, 0, rx_port.take_rx_queue(0).unwrap(), tx_port.take_tx_queue(0).unwrap(), mac, mac)
}

#[test]
fn txonly_to_rxonly_over_a_wire_counts_exactly() {
    for mode in [FwdMode::TxOnly, FwdMode::FlowGen] {
        let pool = pool(&format!("fwd_tx_{mode}"), 4096);
        let (a, b) = (format!("f_tx_{mode}_a"), format!("f_tx_{mode}_b"));
        let mut pa = up(&format!("ring:{a}?peer={b}"), &pool, 1024);
        let mut pb = up(&format!("ring:{b}?peer={a}"), &pool, 1024);
        // txonly: receive side of its stream is unused; transmit on port a.
        let gen_stream = {
            let mac = pa.info().mac;
            Stream::new(0, 0, 0, pa.take_rx_queue(0).unwrap(), pa.take_tx_queue(0).unwrap(), mac, mac)
        };
        let sink_stream = {
            let mac = pb.info().mac;
            Stream::new(1, 1, 0, pb.take_rx_queue(0).unwrap(), pb.take_tx_queue(0).unwrap(), mac, mac)
        };
        let mut gen = FwdLcore::new(cfg(mode, &pool, Some(10_007), 0), vec![gen_stream]);
        let mut sink = FwdLcore::new(cfg(FwdMode::RxOnly, &pool, None, 0), vec![sink_stream]);
        for _ in 0..100_000 {
            gen.poll();
            sink.poll();
        }
        let g = gen.snapshot()[0];
        let s = sink.snapshot()[0];
        assert_eq!((g.tx, g.tx_dropped, g.nombuf), (10_007, 0, 0), "{mode}");
        assert_eq!(s.rx, 10_007, "{mode}");
        assert_eq!(pb.stats().ipackets, 10_007);
        assert_eq!(pa.stats().obytes, 10_007 * 64);
        drop((gen, sink, pa, pb));
        assert_eq!(pool.available(), 4096);
    }
}

#[test]
fn io_and_macswap_loops_keep_every_frame() {
    for mode in [FwdMode::Io, FwdMode::MacSwap, FwdMode::Mac, FwdMode::FiveTupleSwap] {
        let pool = pool(&format!("fwd_loop_{mode}"), 4096);
        let (a, b) = (format!("f_l_{mode}_a"), format!("f_l_{mode}_b"));
        let mut pa = up(&format!("ring:{a}?peer={b}"), &pool, 1024);
        let mut pb = up(&format!("ring:{b}?peer={a}"), &pool, 1024);
        // Two streams: a.rx -> b.tx and b.rx -> a.tx; tx-first puts 2 bursts on each.
        let s1 = stream(&mut pa, &mut pb);
        let s2 = stream(&mut pb, &mut pa);
        let mut l = FwdLcore::new(cfg(mode, &pool, None, 2), vec![s1, s2]);
        for _ in 0..10_000 {
            l.poll();
        }
        let snap = l.snapshot();
        let (rx, tx): (u64, u64) = (snap.iter().map(|s| s.rx).sum(), snap.iter().map(|s| s.tx).sum());
        assert!(snap.iter().all(|s| s.tx_dropped == 0 && s.malformed == 0), "{mode}: {snap:?}");
        let (sa, sb) = (pa.stats(), pb.stats());
        let sent = sa.opackets + sb.opackets;
        let received = sa.ipackets + sb.ipackets;
        assert_eq!(sent - received, 128, "{mode}: exactly the tx-first frames are in flight");
        assert_eq!(tx - rx, 128, "{mode}");
        assert!(rx > 100_000, "{mode}: {rx}");
        assert_eq!(pool.in_use(), 128);
        drop((l, pa, pb));
        assert_eq!(pool.available(), 4096, "{mode}: no buffer leaked");
    }
}

fn frame(pool: &pmd::Mempool, bytes: &[u8]) -> pmd::Mbuf {
    let mut m = pool.alloc().unwrap();
    m.extend_from_slice(bytes).unwrap();
    m
}

fn arp_request(src: pmd::MacAddr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[198, 18, 0, 2, 0, 0, 0, 0, 0, 0, 198, 18, 0, 1]);
    f
}

fn icmp_request(src: pmd::MacAddr, dst: pmd::MacAddr) -> Vec<u8> {
    let mut f = testpmd::fwd::udp_template(64, src, dst);
    f[23] = 1; // protocol ICMP
    let c = testpmd::fwd::ipv4_checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[34..42].copy_from_slice(&[8, 0, 0, 0, 0, 7, 0, 1]);
    let mut sum = 0u32;
    for w in f[34..].chunks(2) {
        sum += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[36..38].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f
}

#[test]
fn icmpecho_answers_arp_and_echo_requests_and_drops_the_rest() {
    let pool = pool("fwd_icmp", 256);
    let mut pa = up("ring:f_icmp_a?peer=f_icmp_b", &pool, 64);
    let mut pb = up("ring:f_icmp_b?peer=f_icmp_a", &pool, 64);
    let (a_mac, b_mac) = (pa.info().mac, pb.info().mac);
    let echo = {
        let rx = pa.take_rx_queue(0).unwrap();
        let tx = pa.take_tx_queue(0).unwrap();
        Stream::new(0, 0, 0, rx, tx, a_mac, a_mac)
    };
    let mut l = FwdLcore::new(cfg(FwdMode::IcmpEcho, &pool, None, 0), vec![echo]);
    let (mut btx, mut brx) = (pb.take_tx_queue(0).unwrap(), pb.take_rx_queue(0).unwrap());
    let mut out = vec![
        frame(&pool, &arp_request(b_mac)),
        frame(&pool, &icmp_request(b_mac, a_mac)),
        frame(&pool, &testpmd::fwd::udp_template(64, b_mac, a_mac)),
        frame(&pool, &[1, 2, 3]),
    ];
    assert_eq!(btx.tx_burst(&mut out), 4);
    l.poll();
    let st = l.snapshot()[0];
    assert_eq!((st.rx, st.tx, st.malformed), (4, 2, 2));
    let mut got = Vec::new();
    assert_eq!(brx.rx_burst(&mut got, 8), 2);
    let arp = got[0].data();
    assert_eq!((&arp[0..6], &arp[20..22], &arp[22..28]), (&b_mac.0[..], &[0u8, 2][..], &a_mac.0[..]));
    let icmp = got[1].data();
    assert_eq!((icmp[34], &icmp[30..34]), (0, &[198u8, 18, 0, 1][..]));
    let mut sum = 0u32;
    for w in icmp[34..].chunks(2) {
        sum += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    assert_eq!(sum, 0xffff, "echo reply checksum verifies");
}

#[test]
fn boxed_queues_downcast_to_their_own_type_only_and_forward_as_before() {
    use pmd::drivers::null::{NullRx, NullTx};
    use pmd::drivers::ring::RingRx;
    use pmd::runtime::Lcore;
    let pool = pool("null_downcast", 256);
    let mut p = up("null:n2?size=64", &pool, 64);
    let (rx, tx) = (p.take_rx_queue(0).unwrap(), p.take_tx_queue(0).unwrap());
    // The wrong type gives the handle back, still working.
    let mut rx = pmd::downcast_rx::<RingRx>(rx).err().expect("not a ring queue");
    let mut v = Vec::new();
    assert_eq!(rx.rx_burst(&mut v, 8), 8);
    pmd::free_bulk(&mut v);
    let mac = pmd::MacAddr([2, 0, 0, 0, 0, 1]);
    let stream = Stream::new(0, 0, 0, rx, tx, mac, mac);
    assert!(stream.is::<NullRx, NullTx>());
    let stream = stream.downcast::<NullRx, NullTx>().ok().expect("null queues");
    let cfg = FwdConfig { flows: 1, ..cfg(FwdMode::Io, &pool, None, 0) };
    // The engine over the concrete types forwards and counts as over boxes.
    let counters = stream.counters();
    let mut core = FwdLcore::new(cfg, vec![stream]);
    for _ in 0..10 {
        assert_eq!(core.poll(), 32);
    }
    let st = counters.stats();
    assert_eq!((st.rx, st.tx, st.tx_dropped), (320, 320, 0));
    drop(core);
    let s = p.stats();
    assert_eq!((s.ipackets, s.opackets), (328, 320));
}

/// Forwards in io mode on `spec` for a while with cycle recording `rec`;
/// returns the core's final counters and the frames it forwarded.
fn forward_on(spec: &str, rec: RecordCycles) -> (CoreCycles, u64) {
    let pool = Mempool::new(&MempoolConfig::new(format!("cyc{spec}{rec:?}"), 4096, 2048, 128, 64)).unwrap();
    let mut p = pmd::open(spec).unwrap();
    p.configure(&PortConfig::new(1, 1, 512, 512, pool.clone())).unwrap();
    p.start().unwrap();
    let mac = p.info().mac;
    let s = Stream::new(0, 0, 0, p.take_rx_queue(0).unwrap(), p.take_tx_queue(0).unwrap(), mac, mac);
    let counters = s.counters();
    let cfg = FwdConfig { flows: 1, ..cfg(FwdMode::Io, &pool, None, 0) };
    let core = available_cores()[0];
    let rt = Lcores::launch(vec![(core, FwdLcore::new(cfg, vec![s]))], IdlePolicy::Spin, rec).unwrap();
    let handles = rt.cycle_handles();
    std::thread::sleep(Duration::from_millis(30));
    drop(rt.stop().unwrap());
    let _ = p.stop();
    (handles[0].load(), counters.stats().tx)
}

#[test]
fn cycles_are_busy_with_traffic_idle_without_and_absent_when_off() {
    // `null` hands out a full burst on every poll: every iteration works.
    let (c, sent) = forward_on("null", RecordCycles::On);
    assert!(sent > 0);
    assert!(c.busy_iters > 0 && c.busy > 0, "{c:?}");
    assert_eq!(c.idle_iters, 0, "{c:?}");
    // A ring that loops back to itself, never seeded: nothing to do.
    let (c, sent) = forward_on("ring:cycles_idle", RecordCycles::On);
    assert_eq!(sent, 0);
    assert!(c.idle_iters > 0 && c.idle > 0, "{c:?}");
    assert_eq!((c.busy_iters, c.busy), (0, 0), "{c:?}");
    // Not recording: no clock read, nothing published.
    let (c, _) = forward_on("null", RecordCycles::Off);
    assert_eq!(c, CoreCycles::default());
}
