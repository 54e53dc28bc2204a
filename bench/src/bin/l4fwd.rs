//! `scripts/bench.sh l4fwd`: `lb`'s forwarding mode on one core against the
//! cheapest per-packet rewrite there is, `dpdk-testpmd --forward-mode=macswap`,
//! in the same run.
//!
//! Ours: a `ring` loopback port (`ring:NAME?checks=none`, DPDK `net_ring`'s
//! contract: what it sends it receives) seeded with `IN_FLIGHT` 64-byte frames
//! (60 bytes + FCS: a TCP SYN/ACK-sized segment to the VIP); one pinned core
//! loops `rx_burst(32)` → the generator step → `Forwarder::process` →
//! `tx_burst`. The generator step writes each frame's flow (client address
//! and port) from a counter, so the forwarder sees `FLOWS` distinct flows
//! cycling; it is part of the measured loop (a few stores per frame), which
//! macswap does not pay.
//! * `l4fwd_hit_vs_macswap`: L2 DSR, 1 M flows cycling through a 4 M-entry
//!   table (after the first second, warm-up, the flows are in it: hits; the
//!   measured hit ratio is reported — a set of 8 that drew more than 8 of
//!   the cycling flows misses on them every time, as any LRU would);
//! * `l4fwd_miss_vs_macswap`: L2 DSR, 2^32 flows through a 1 M-entry table:
//!   every packet a miss (Maglev lookup, LRU eviction, insert);
//! * `l4fwd_ipip_vs_macswap`: IPIP toward IPv4 servers, the hit case's
//!   flows; the generator step first strips the previous pass's outer
//!   header (`adj(20)` and a fresh Ethernet header), also measured.
//!
//! Peer: `dpdk-testpmd --vdev net_ring0 --forward-mode=macswap --tx-first`,
//! one forwarding lcore on the same core, no hugepages. Not measured here:
//! ours over `dpdk:net_ring0` (the bench crate does not link DPDK; see
//! `dpdk_fwd` for what our layer over DPDK's ring costs: ~0.95×).
//!
//! Each side runs `BENCH_ROUNDS` (default 3) alternating rounds of
//! `BENCH_SECS` (default 5) seconds; per-second rates after the first go into
//! an hdrhistogram; the median is the headline, with ns per packet
//! (1e9 / rate, one core) set beside Katran's 101–119 ns (katran #235) and
//! Maglev's ~350 ns (1.8 Mpps per packet thread, NSDI'16 §5.1).

use std::time::{Duration, Instant};

use bench::io_fwd::dpdk_testpmd;
use bench::{env_or, pin, plot_series, summarize, write_json, write_md, Row, Series};
use loadbalancer::config::{Config, INIT_FORWARD};
use loadbalancer::forward::forwarder::Forwarder;
use pmd::{MacAddr, Mbuf, Mempool, MempoolConfig, PortConfig};

const OUR: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const IN_FLIGHT: usize = 1024;
const BURST: usize = 32;

#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    encap: &'static str,
    table: usize,
    flows: u64,
}

const CASES: [Case; 4] = [
    Case { name: "l4fwd_hit_vs_macswap", encap: "l2dsr", table: 1 << 22, flows: 1 << 20 },
    Case { name: "l4fwd_miss_vs_macswap", encap: "l2dsr", table: 1 << 20, flows: 1 << 32 },
    Case { name: "l4fwd_ipip_vs_macswap", encap: "ipip", table: 1 << 22, flows: 1 << 20 },
    // Not an issue case: 16 K flows in a 64 K table (its lines fit in the
    // caches), to separate the per-packet work from the table's memory cost.
    Case { name: "l4fwd_hit_cached_vs_macswap", encap: "l2dsr", table: 1 << 16, flows: 1 << 14 },
];

/// A 60-byte frame (64 with the FCS): TCP SYN/ACK-sized, to the VIP.
fn frame() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&OUR.0);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xc1]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[198, 19, 0, 1]);
    ip[16..20].copy_from_slice(&[198, 18, 0, 10]);
    let c = pmd::checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    f[46] = 0x50;
    f[47] = 0x12;
    f
}

/// Per-second Mpps (after the first second) and the table hit ratio then.
fn ours(case: Case, core: usize, secs: u32) -> (Vec<f64>, f64) {
    pin(core);
    let pool = Mempool::new(&MempoolConfig::new("l4fwd", 8192, 2048, 128, 256)).unwrap();
    let mut port = pmd::open(&format!("ring:l4fwd{}?checks=none", std::process::id())).unwrap();
    port.configure(&PortConfig::new(1, 1, 4096, 4096, pool.clone())).unwrap();
    // Promiscuous: forwarded frames come back addressed to the servers' MACs.
    port.set_promiscuous(true).unwrap();
    port.start().unwrap();
    let mut rxq = port.take_rx_queue(0).unwrap();
    let mut txq = port.take_tx_queue(0).unwrap();
    let text = INIT_FORWARD
        .replace("encap = \"l2dsr\"", &format!("encap = \"{}\"", case.encap))
        .replace("flow_table_size = 1048576", &format!("flow_table_size = {}", case.table));
    let cfg = Config::check(&text).unwrap();
    let mut fw = Forwarder::new(OUR, &cfg.forward, &cfg.backends);
    let proto = frame();
    let mut seed: Vec<Mbuf> = (0..IN_FLIGHT)
        .map(|_| {
            let mut m = pool.alloc().unwrap();
            m.extend_from_slice(&proto).unwrap();
            m
        })
        .collect();
    while !seed.is_empty() {
        txq.tx_burst(&mut seed);
    }
    let ipip = case.encap == "ipip";
    let (mut rx, mut tx, mut pass) = (Vec::with_capacity(BURST), Vec::with_capacity(BURST), Vec::with_capacity(BURST));
    let mut counter: u64 = 0;
    let mut samples = Vec::new();
    let mut second_start = Instant::now();
    let mut fwd_at_second = 0u64;
    let mut warm = (0u64, 0u64);
    let end = Instant::now() + Duration::from_secs(u64::from(secs) + 1);
    let mut polls = 0u32;
    loop {
        rxq.rx_burst(&mut rx, BURST);
        for m in rx.iter_mut() {
            // The previous pass's outer IPv4 header (protocol 4), if any.
            if ipip && m.data()[23] == 4 {
                let _ = m.adj(20);
                let d = m.data_mut();
                d[0..6].copy_from_slice(&OUR.0);
                d[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0xc1]);
                d[12..14].copy_from_slice(&[0x08, 0x00]);
            }
            let flow = counter % case.flows;
            counter += 1;
            let d = m.data_mut();
            d[27..30].copy_from_slice(&(flow as u32).to_be_bytes()[1..]);
            d[34..36].copy_from_slice(&(((flow >> 24) as u16) | 1024).to_be_bytes());
        }
        fw.process(&mut rx, &mut tx, &mut pass);
        assert!(pass.is_empty(), "the generator's frames are all VIP frames");
        while !tx.is_empty() {
            txq.tx_burst(&mut tx);
        }
        polls += 1;
        if polls.is_multiple_of(1024) {
            let now = Instant::now();
            if now.duration_since(second_start) >= Duration::from_secs(1) {
                let f = fw.counters().forwarded;
                let c = fw.vip_counters(0);
                if fwd_at_second == 0 && samples.is_empty() && warm == (0, 0) {
                    warm = (c.hits, c.misses); // end of the warm-up second
                } else {
                    samples.push((f - fwd_at_second) as f64 / now.duration_since(second_start).as_secs_f64() / 1e6);
                }
                fwd_at_second = f;
                second_start = now;
                if now >= end {
                    break;
                }
            }
        }
    }
    let c = fw.vip_counters(0);
    let (h, m) = (c.hits - warm.0, c.misses - warm.1);
    eprintln!("{}: {:?}; {:?}", case.name, fw.counters(), c);
    assert_eq!(c.dropped, [0; 6], "nothing dropped");
    drop((rx, tx, pass));
    (samples, h as f64 / (h + m).max(1) as f64)
}

fn main() {
    let rounds: u32 = env_or("BENCH_ROUNDS", 3);
    let secs: u32 = env_or("BENCH_SECS", 5);
    let core: usize = env_or("BENCH_CORE", *pmd::runtime::available_cores().last().unwrap());
    let dpdk_bin = std::env::var("DPDK_TESTPMD").unwrap_or_else(|_| "dpdk-testpmd".into());
    let mut peer = Vec::new();
    let mut rows = Vec::new();
    let mut series = Vec::new();
    let mut md = String::new();
    let load = bench::load_average();
    // Rounds alternate: the peer, then each of our cases.
    let mut per_case: Vec<(Case, Vec<f64>, f64)> = CASES.iter().map(|c| (*c, Vec::new(), 0.0)).collect();
    for _ in 0..rounds {
        peer.extend(
            dpdk_testpmd(&dpdk_bin, "net_ring0", true, "macswap", core, secs).unwrap_or_else(|e| panic!("{e}")),
        );
        for (case, s, hit) in per_case.iter_mut() {
            // On its own thread: pinning it must not pin the peer we spawn next.
            let c = *case;
            let (x, h) = std::thread::spawn(move || ours(c, core, secs)).join().expect("our side");
            s.extend(x);
            *hit = h;
        }
    }
    let p = summarize(&peer, 1000.0);
    series.push(Series {
        label: "dpdk-testpmd macswap".into(),
        points: peer.iter().enumerate().map(|(i, v)| (i as f64, *v)).collect(),
    });
    md.push_str(&format!(
        "# l4fwd: lb forwarding mode on one core vs dpdk-testpmd macswap\n\n\
         One core ({core}), 64-byte frames (60 + FCS), bursts of 32, {IN_FLIGHT} frames in flight on a loopback ring. \
         Median of per-second rates (p10–p90), {rounds} rounds of {secs} s per side, first second of each dropped. \
         Targets: hit >= 0.6x, miss >= 0.4x of macswap.\n\n\
         | case | ours Mpps | ns/packet | table hits | dpdk-testpmd macswap Mpps | ns/packet | ratio |\n|---|---|---|---|---|---|---|\n"
    ));
    for (case, s, hit) in &per_case {
        let o = summarize(s, 1000.0);
        md.push_str(&format!(
            "| {} | {:.2} ({:.2}–{:.2}) | {:.0} | {:.1} % | {:.2} ({:.2}–{:.2}) | {:.0} | {:.2} |\n",
            case.name,
            o.p50,
            o.p10,
            o.p90,
            1e3 / o.p50,
            hit * 100.0,
            p.p50,
            p.p10,
            p.p90,
            1e3 / p.p50,
            o.p50 / p.p50
        ));
        rows.push(Row::new(case.name, "Mpps", "higher", o.p50, "dpdk-testpmd --forward-mode=macswap", p.p50));
        series.push(Series {
            label: case.name.into(),
            points: s.iter().enumerate().map(|(i, v)| (i as f64, *v)).collect(),
        });
    }
    md.push_str(&format!(
        "\nFor scale: Katran's single-core synthetic run is 101–119 ns per packet (katran #235), Maglev's packet \
         thread ~350 ns (1.8 Mpps, NSDI'16 §5.1); different machines and NICs, so read them as orders of magnitude.\n\n\
         Where the time goes: the 1 M-flow cases are bound by the flow table's memory (a 4 M-entry table is ~200 MB: \
         each packet takes a cache miss on its set's line, one on its entry, and a TLB miss, with 4 KiB pages since \
         transparent huge pages are madvise-only here and nothing madvises; `perf` puts ~60 % of the cycles in \
         `FlowTable::find`). The `hit_cached` row (16 K flows, a 64 K table that fits in the caches) is the per-packet \
         work without that: parse, hash, lookup, rewrite. Not done: huge pages for the table, prefetching across the burst \
         (a safe 'touch the lines first' pass was tried and did not help measurably).\n\n\
         What each side does per packet: macswap swaps the MACs (and nothing else); ours parses Ethernet/IPv4/TCP, looks \
         the flow up in a set-associative LRU table (hash of the 5-tuple), on a miss runs Maglev and inserts, rewrites \
         the MACs (L2 DSR) or prepends and checksums an outer IPv4 header (IPIP), plus the generator step (a flow written \
         into each frame; for ipip also stripping the previous outer header). Tuned: nothing on either side beyond \
         burst 32 and pinning; release build, dpdk-testpmd from Debian, no hugepages (`--no-huge`). Not run: ours over \
         `dpdk:net_ring0`. Machine: {} ; load average at start: {load} (2 cores shared with other sessions' builds).\n",
        bench::cpu_model()
    ));
    write_md("l4fwd", &md);
    write_json(
        "l4fwd",
        &rows,
        serde_json::json!({"core": core, "rounds": rounds, "secs": secs, "load_average": load,
            "ns_per_packet": per_case.iter().map(|(c, s, _)| (c.name, 1e3 / summarize(s, 1000.0).p50)).collect::<std::collections::BTreeMap<_, _>>(),
            "peer_ns_per_packet": 1e3 / p.p50}),
    );
    plot_series("l4fwd", "one core: per-second forwarding rate (rounds concatenated)", "second", "Mpps", &series);
    print!("{md}");
}
