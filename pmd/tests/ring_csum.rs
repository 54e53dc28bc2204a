//! `ring:..?csum=1`: checksum offloads as Linux loopback has them, and what the
//! impairment and capture decorators do with frames whose checksums are left
//! to the device.

mod common;

use std::sync::Arc;

use common::{pcap_records, pool, queues, scratch_dir};
use pmd::checksum::{add, sum};
use pmd::{Mbuf, Mempool, OpenEnv, Port, PortConfig, RxFlags, RxOffloads, TxFlags, TxOffloads, VirtualClock};

const CSUM: TxOffloads = TxOffloads::IPV4_CKSUM.union(TxOffloads::TCP_CKSUM).union(TxOffloads::UDP_CKSUM);

fn open(spec: &str, pool: &Mempool, offloads: TxOffloads) -> Box<dyn Port> {
    let env = OpenEnv { clock: Arc::new(VirtualClock::new()) };
    let mut p = pmd::open_with(spec, &env).unwrap();
    let mut c = PortConfig::new(1, 1, 256, 256, pool.clone());
    c.tx_offloads = offloads;
    p.configure(&c).unwrap();
    p.set_promiscuous(true).unwrap();
    p.start().unwrap();
    p
}

/// An Ethernet/IPv4/TCP frame with `payload`; with `offload` its IPv4 checksum
/// is left zero and its TCP checksum field holds the pseudo-header sum, and the
/// requests are set, as the stack does; otherwise both are computed.
fn tcp_frame(pool: &Mempool, payload: &[u8], offload: bool) -> Mbuf {
    let mut f = vec![0u8; 54];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0xaa]);
    f[12] = 0x08;
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((40 + payload.len()) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&[198, 18, 0, 1]);
    f[30..34].copy_from_slice(&[198, 18, 0, 2]);
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    f[46] = 0x50;
    f.extend_from_slice(payload);
    let pseudo = add(sum(&f[26..34]), 6 + (f.len() - 34) as u16);
    f[50..52].copy_from_slice(&pseudo.to_be_bytes());
    let mut m = pool.alloc().unwrap();
    m.extend_from_slice(&f).unwrap();
    m.set_meta(pmd::MbufMeta {
        l2_len: 14,
        l3_len: 20,
        tx_flags: TxFlags::IPV4 | TxFlags::IP_CKSUM | TxFlags::TCP_CKSUM,
        ..Default::default()
    });
    if !offload {
        pmd::checksum::finish_tx(&mut m);
    }
    m
}

fn ip_ok(f: &[u8]) -> bool {
    sum(&f[14..34]) == 0xffff
}

fn tcp_ok(f: &[u8]) -> bool {
    add(add(sum(&f[26..34]), 6 + (f.len() - 34) as u16), sum(&f[34..])) == 0xffff
}

#[test]
fn offered_only_with_csum_1_and_bad_values_are_named() {
    let pool = pool("csum_opt", 64);
    let plain = pmd::open("ring:csum_plain").unwrap();
    assert!(plain.info().tx_offloads.is_empty() && plain.info().rx_offloads.is_empty());
    let mut c = PortConfig::new(1, 1, 64, 64, pool.clone());
    c.tx_offloads = TxOffloads::TCP_CKSUM;
    let mut plain = plain;
    assert!(plain.configure(&c).is_err(), "a plain ring refuses checksum offloads");
    let on = pmd::open("ring:csum_on?csum=1").unwrap();
    assert_eq!(on.info().tx_offloads, CSUM);
    assert!(on.info().rx_offloads.contains(RxOffloads::TCP_CKSUM));
    let e = pmd::open("ring:csum_bad?csum=yes").err().expect("bad value").to_string();
    assert!(e.contains("csum") && e.contains("0 or 1"), "{e}");
}

#[test]
fn requested_checksums_arrive_partial_and_trusted_others_unmarked() {
    let pool = pool("csum_wire", 256);
    let mut a = open("ring:csum_a?peer=csum_b&csum=1", &pool, CSUM);
    let mut b = open("ring:csum_b?peer=csum_a&csum=1", &pool, CSUM);
    let (mut tx, mut rx) = (a.take_tx_queue(0).unwrap(), b.take_rx_queue(0).unwrap());
    let mut v = vec![tcp_frame(&pool, b"offloaded", true), tcp_frame(&pool, b"software", false)];
    assert_eq!(tx.tx_burst(&mut v), 2);
    let mut got = Vec::new();
    assert_eq!(rx.rx_burst(&mut got, 8), 2);
    let (off, sw) = (&got[0], &got[1]);
    assert!(ip_ok(off.data()), "the port computed the requested IPv4 header checksum");
    assert!(!tcp_ok(off.data()), "the TCP checksum is left partial");
    assert_eq!(off.meta().rx_flags, RxFlags::IP_CKSUM_GOOD | RxFlags::L4_CKSUM_PARTIAL);
    assert!(ip_ok(sw.data()) && tcp_ok(sw.data()));
    assert_eq!(sw.meta().rx_flags, RxFlags::empty(), "nothing asked, nothing vouched for");
    // Finishing the partial checksum (what a capture does) gives the real one.
    let mut f = off.data().to_vec();
    assert!(pmd::checksum::finish_partial(&mut f));
    assert!(tcp_ok(&f));
}

#[test]
fn corruption_under_offload_clears_the_verdicts_so_the_receiver_catches_it() {
    let pool = pool("csum_corrupt", 256);
    for (name, dir) in [("csum_ctx", "tx"), ("csum_crx", "rx")] {
        let mut p = open(&format!("ring:{name}?csum=1&corrupt=1&seed=3&dir={dir}"), &pool, CSUM);
        let (mut rx, mut tx) = queues(&mut p);
        let mut v: Vec<Mbuf> = (0..40).map(|i| tcp_frame(&pool, &[i as u8; 100], true)).collect();
        tx.tx_burst(&mut v);
        let mut got = Vec::new();
        rx.rx_burst(&mut got, 64);
        assert_eq!(got.len(), 40);
        for m in &got {
            let f = m.meta().rx_flags;
            assert!(
                !f.intersects(RxFlags::L4_CKSUM_PARTIAL | RxFlags::L4_CKSUM_GOOD | RxFlags::IP_CKSUM_GOOD),
                "{dir}: a corrupted frame is vouched for: {f:?}"
            );
            // One bit flipped in a frame whose checksums were complete: the
            // receiver's software check fails (or the flip hit the Ethernet
            // header, which no checksum covers and a NIC's CRC would catch).
            let d = m.data();
            let eth_hit = d[0..6] != [2, 0, 0, 0, 0, 0xaa] || d[6..14] != [0, 0, 0, 0, 0, 0, 0x08, 0];
            assert!(eth_hit || !ip_ok(d) || !tcp_ok(d), "{dir}: corruption would go unnoticed");
        }
        drop((got, rx, tx, p));
    }
}

#[test]
fn capture_shows_finished_checksums_and_leaves_the_frames_partial() {
    let dir = scratch_dir("csum_pcap");
    let file = dir.join("c.pcap");
    let pool = pool("csum_pcap", 64);
    let mut p = open(&format!("ring:csum_cap?csum=1&pcap={}&pcap_limit=100000", file.display()), &pool, CSUM);
    let (mut rx, mut tx) = queues(&mut p);
    let mut v = vec![tcp_frame(&pool, b"hello", true), tcp_frame(&pool, b"world!", true)];
    tx.tx_burst(&mut v);
    let mut got = Vec::new();
    assert_eq!(rx.rx_burst(&mut got, 8), 2);
    assert!(got.iter().all(|m| !tcp_ok(m.data())), "the frames themselves stay partial");
    drop((got, rx, tx, p));
    let recs = pcap_records(&file);
    for (n, (_, _, d)) in recs.iter().enumerate() {
        assert!(ip_ok(d) && tcp_ok(d), "record {n} has finished checksums");
    }
    assert_eq!(recs.len(), 4, "two sent, two received");
    let _ = std::fs::remove_dir_all(&dir);
}
