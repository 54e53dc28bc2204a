//! The impairment decorator: reproducible by seed, every frame accounted for.

mod common;
use common::*;

use std::sync::Arc;

use pmd::{Mbuf, OpenEnv, Port, PortConfig, RxQueue, VirtualClock};

/// An impaired port `spec` (a loopback) on a fresh virtual clock, started, with
/// its queue pair 0 taken.
fn impaired(spec: &str, pool: &pmd::Mempool) -> (VirtualClock, Box<dyn Port>, Queues) {
    let clock = VirtualClock::new();
    let mut p = pmd::open_with(spec, &OpenEnv { clock: Arc::new(clock.clone()) }).unwrap();
    p.configure(&PortConfig::new(1, 1, 4096, 4096, pool.clone())).unwrap();
    p.set_promiscuous(true).unwrap();
    p.start().unwrap();
    let q = queues(&mut p);
    (clock, p, q)
}

fn xstat(p: &dyn Port, name: &str) -> u64 {
    p.xstats().into_iter().find(|(k, _)| k == name).unwrap_or_else(|| panic!("no xstat {name}")).1
}

/// Receives until `rx` is empty, appending the frames' sequence numbers to `got`.
fn receive_seqs(rx: &mut dyn RxQueue, got: &mut Vec<u32>) {
    let mut out: Vec<Mbuf> = Vec::new();
    while rx.rx_burst(&mut out, 32) > 0 {
        got.extend(out.drain(..).map(|m| seq(&m)));
    }
}

/// Sends `n` numbered frames through `spec` (a loopback) and returns what came out.
fn run(spec: &str, n: u32, pool: &pmd::Mempool) -> (Vec<u32>, Box<dyn Port>) {
    let (_clock, p, (mut rx, mut tx)) = impaired(spec, pool);
    let mut got = Vec::new();
    for chunk in 0..(n / 100) {
        let mut f = frames(pool, chunk * 100, 100, 64);
        tx.tx_burst(&mut f);
        assert!(f.is_empty());
        receive_seqs(rx.as_mut(), &mut got);
    }
    tx.tx_burst(&mut Vec::new()); // release a frame held for reordering
    receive_seqs(rx.as_mut(), &mut got);
    (got, p)
}

#[test]
fn same_seed_affects_the_same_frames() {
    let pool = pool("imp_seed", 8192);
    let spec = |name: &str, seed: u64| format!("ring:{name}?loss=0.05&dup=0.03&reorder=0.02&seed={seed}");
    let (a, pa) = run(&spec("imp_s1", 7), 5000, &pool);
    let (b, pb) = run(&spec("imp_s2", 7), 5000, &pool);
    let (c, _pc) = run(&spec("imp_s3", 8), 5000, &pool);
    assert_eq!(a, b, "same seed, same outcome frame for frame");
    assert_ne!(a, c, "another seed, another outcome");
    let lost = xstat(pa.as_ref(), "impair_tx_lost");
    assert!(lost > 150 && lost < 350, "about 5% of 5000 lost, got {lost}");
    assert_eq!(lost, xstat(pb.as_ref(), "impair_tx_lost"));
}

#[test]
fn counts_add_up() {
    let pool = pool("imp_counts", 8192);
    let (got, p) = run("ring:imp_c1?loss=0.1&dup=0.1&reorder=0.1&corrupt=0.1&seed=3", 3000, &pool);
    let x = |k: &str| xstat(p.as_ref(), &format!("impair_tx_{k}"));
    assert_eq!(x("offered"), 3000);
    assert_eq!(x("offered") + x("duplicated"), x("delivered") + x("lost") + x("queue_dropped"));
    assert_eq!(got.len() as u64, x("delivered"), "receiver saw exactly what was delivered");
    assert_eq!(p.stats().ipackets, x("delivered"));
    for k in ["lost", "duplicated", "reordered", "corrupted"] {
        assert!(x(k) > 200, "{k} = {}", x(k));
    }
    drop(p);
    // Without corruption (which may hit the sequence number), every sent frame
    // either arrived, at least once, or was counted lost.
    let (got, p) = run("ring:imp_c2?loss=0.1&dup=0.1&reorder=0.1&seed=3", 3000, &pool);
    let mut uniq = got.clone();
    uniq.sort_unstable();
    uniq.dedup();
    assert_eq!(uniq.len() as u64, 3000 - xstat(p.as_ref(), "impair_tx_lost"));
}

#[test]
fn rx_direction_is_impaired_and_counted_too() {
    let pool = pool("imp_rx", 4096);
    let (got, p) = run("ring:imp_r1?loss=0.2&seed=1&dir=rx", 2000, &pool);
    let x = |k: &str| xstat(p.as_ref(), &format!("impair_rx_{k}"));
    assert_eq!(xstat(p.as_ref(), "impair_tx_offered"), 0);
    assert_eq!(x("offered"), 2000);
    assert_eq!(x("offered"), x("delivered") + x("lost"));
    assert_eq!(got.len() as u64, x("delivered"));
}

#[test]
fn reorder_swaps_a_frame_with_the_next_one() {
    let pool = pool("imp_reorder", 1024);
    let (got, p) = run("ring:imp_o1?reorder=1&seed=1", 100, &pool);
    let expect: Vec<u32> = (0..50).flat_map(|i| [2 * i + 1, 2 * i]).collect();
    assert_eq!(got, expect);
    assert_eq!(xstat(p.as_ref(), "impair_tx_reordered"), 50);
}

#[test]
fn corrupt_flips_exactly_one_bit() {
    let pool = pool("imp_corrupt", 1024);
    let (_clock, _p, (mut rx, mut tx)) = impaired("ring:imp_x1?corrupt=1&seed=5", &pool);
    let mut f = frames(&pool, 0, 50, 64);
    let originals: Vec<Vec<u8>> = f.iter().map(|m| m.data().to_vec()).collect();
    tx.tx_burst(&mut f);
    let mut got = Vec::new();
    rx.rx_burst(&mut got, 64);
    assert_eq!(got.len(), 50);
    for (m, o) in got.iter().zip(&originals) {
        let bits: u32 = m.data().iter().zip(o).map(|(a, b)| (a ^ b).count_ones()).sum();
        assert_eq!(bits, 1);
    }
}

#[test]
fn duplication_under_exhaustion_is_counted_not_fatal() {
    let pool = pool("imp_dup", 64);
    let (_clock, p, (mut rx, mut tx)) = impaired("ring:imp_d1?dup=1&seed=5", &pool);
    let mut f = frames(&pool, 0, 40, 64);
    tx.tx_burst(&mut f);
    let dup = xstat(p.as_ref(), "impair_tx_duplicated");
    let nombuf = xstat(p.as_ref(), "impair_tx_dup_nombuf");
    assert_eq!(dup + nombuf, 40);
    assert!(nombuf > 0 && dup > 0, "dup {dup} nombuf {nombuf}");
    let mut got = Vec::new();
    while rx.rx_burst(&mut got, 32) > 0 {}
    assert_eq!(got.len() as u64, 40 + dup);
}

#[test]
fn delay_holds_frames_until_virtual_time_passes() {
    let pool = pool("imp_delay", 256);
    let (clock, _p, (mut rx, mut tx)) = impaired("ring:imp_l1?delay_us=200", &pool);
    let mut f = frames(&pool, 0, 5, 64);
    tx.tx_burst(&mut f);
    let mut got = Vec::new();
    assert_eq!(rx.rx_burst(&mut got, 32), 0);
    clock.advance_ns(199_999);
    tx.tx_burst(&mut Vec::new());
    assert_eq!(rx.rx_burst(&mut got, 32), 0);
    clock.advance_ns(1);
    tx.tx_burst(&mut Vec::new());
    assert_eq!(rx.rx_burst(&mut got, 32), 5);
}

#[test]
fn rate_shaping_spaces_frames_and_limit_drops_the_excess() {
    let pool = pool("imp_rate", 256);
    let (clock, p, (mut rx, mut tx)) = impaired("ring:imp_t1?rate_pps=1000&limit=10", &pool);
    let mut f = frames(&pool, 0, 15, 64);
    tx.tx_burst(&mut f);
    assert_eq!(xstat(p.as_ref(), "impair_tx_queue_dropped"), 5);
    let mut got = Vec::new();
    let mut arrivals = Vec::new();
    for ms in 0..12u64 {
        tx.tx_burst(&mut Vec::new());
        let n = rx.rx_burst(&mut got, 32);
        arrivals.push(n);
        clock.advance_ns(1_000_000);
        let _ = ms;
    }
    assert_eq!(arrivals, vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0], "one frame per millisecond");
    let mut f = frames(&pool, 100, 1, 64);
    tx.tx_burst(&mut f);
    assert_eq!(rx.rx_burst(&mut got, 32), 1, "idle shaper sends at once");
}

#[test]
fn only_ipv6_black_holes_one_family_and_passes_the_rest_untouched() {
    let pool = pool("imp_only", 1024);
    let (_clock, p, (mut rx, mut tx)) = impaired("ring:imp_only?only=ipv6&loss=1&seed=1", &pool);
    let mut f = frames(&pool, 0, 200, 64);
    for (i, m) in f.iter_mut().enumerate() {
        // Odd frames are IPv6, even ones IPv4.
        let t: u16 = if i % 2 == 1 { 0x86dd } else { 0x0800 };
        m.data_mut()[12..14].copy_from_slice(&t.to_be_bytes());
    }
    tx.tx_burst(&mut f);
    let mut got = Vec::new();
    receive_seqs(rx.as_mut(), &mut got);
    assert_eq!(got, (0..200).step_by(2).collect::<Vec<u32>>());
    assert_eq!(xstat(p.as_ref(), "impair_tx_lost"), 100);
    let e = pmd::open("ring:imp_bad?only=arp").err().expect("a bad value").to_string();
    assert!(e.contains("only"), "{e}");
}
