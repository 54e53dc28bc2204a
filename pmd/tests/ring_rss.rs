//! `ring?rss=1`: the sender steers each frame to the receive queue the
//! receiving port's RSS names, as a NIC would (see `pmd::drivers::ring`).

mod common;
use common::*;

use std::net::{Ipv4Addr, SocketAddr};

use pmd::rss::{Rss, MICROSOFT_KEY, SYMMETRIC_KEY};
use pmd::{Mbuf, Mempool, Port, PortConfig, RssConfig, RxQueue, TxQueue};

/// An Ethernet + IPv4 + TCP frame from `s` to `d` carrying `seq` after the
/// TCP header.
fn tcp4(pool: &Mempool, s: SocketAddr, d: SocketAddr, seq: u32) -> Mbuf {
    let (std::net::IpAddr::V4(si), std::net::IpAddr::V4(di)) = (s.ip(), d.ip()) else { unreachable!() };
    let mut m = pool.alloc().unwrap();
    let f = m.append(14 + 20 + 20 + 4).unwrap();
    f.fill(0);
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xbb]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&44u16.to_be_bytes());
    f[23] = 6;
    f[26..30].copy_from_slice(&si.octets());
    f[30..34].copy_from_slice(&di.octets());
    f[34..36].copy_from_slice(&s.port().to_be_bytes());
    f[36..38].copy_from_slice(&d.port().to_be_bytes());
    f[54..58].copy_from_slice(&seq.to_be_bytes());
    m
}

fn flow(i: u32) -> (SocketAddr, SocketAddr) {
    let s = SocketAddr::new(Ipv4Addr::new(198, 18, 0, 1 + (i % 7) as u8).into(), 40000 + i as u16);
    let d = SocketAddr::new(Ipv4Addr::new(198, 19, 0, 1).into(), 80);
    (s, d)
}

fn configured(spec: &str, pool: &Mempool, queues: u16, rss: Option<RssConfig>) -> Box<dyn Port> {
    let mut p = pmd::open(spec).unwrap();
    let mut c = PortConfig::new(queues, queues, 1024, 1024, pool.clone());
    c.rss = rss;
    p.configure(&c).unwrap();
    p.set_promiscuous(true).unwrap();
    p.start().unwrap();
    p
}

fn drain(rx: &mut dyn RxQueue) -> Vec<Mbuf> {
    let mut got = Vec::new();
    while rx.rx_burst(&mut got, 32) > 0 {}
    got
}

#[test]
fn every_frame_reaches_the_queue_its_toeplitz_hash_names_from_every_sending_queue() {
    let pool = pool("ring_rss_steer", 4096);
    let cfg = RssConfig::spread(&MICROSOFT_KEY, 4);
    let rss = Rss::new(&cfg).unwrap();
    let mut a = configured("ring:t_rss_a?peer=t_rss_b", &pool, 2, None);
    let mut b = configured("ring:t_rss_b?peer=t_rss_a&rss=1", &pool, 4, Some(cfg));
    let mut tx: Vec<_> = (0..2).map(|q| a.take_tx_queue(q).unwrap()).collect();
    let mut rx: Vec<_> = (0..4).map(|q| b.take_rx_queue(q).unwrap()).collect();
    // 400 flows, 3 frames each, sent round by round from alternating queues.
    let mut expected = [0usize; 4];
    for round in 0..3u32 {
        for (q, t) in tx.iter_mut().enumerate() {
            let mut burst: Vec<Mbuf> = (0..200u32)
                .map(|k| {
                    let i = k * 2 + q as u32;
                    let (s, d) = flow(i);
                    expected[rss.queue_of_frame(tcp4(&pool, s, d, 0).data()) as usize] += 1;
                    tcp4(&pool, s, d, round * 1000 + i)
                })
                .collect();
            assert_eq!(t.tx_burst(&mut burst), 200);
        }
    }
    let mut seen = std::collections::HashMap::new();
    for (q, r) in rx.iter_mut().enumerate() {
        let got = drain(r.as_mut());
        assert_eq!(got.len(), expected[q], "queue {q}");
        for m in &got {
            assert_eq!(rss.queue_of_frame(m.data()) as usize, q, "steered by the hash");
            let d = m.data();
            let seq = u32::from_be_bytes(d[54..58].try_into().unwrap());
            // Per flow, rounds arrive in order.
            let last = seen.insert(seq % 1000, seq / 1000);
            assert!(last.is_none_or(|r| r < seq / 1000), "flow {} reordered", seq % 1000);
        }
    }
    assert!(expected.iter().all(|&n| n > 0), "400 flows spread over all 4 queues: {expected:?}");
    assert_eq!(seen.len(), 400);
    let s = b.stats();
    assert_eq!((s.ipackets, s.ibytes), (1200, 1200 * 58));
    assert_eq!(s.q_ipackets[..4].iter().sum::<u64>(), 1200);
    drop((tx, rx, a, b));
    assert_eq!(pool.available(), 4096);
}

#[test]
fn non_ip_frames_reach_the_first_table_entry_and_the_table_is_obeyed() {
    let pool = pool("ring_rss_reta", 512);
    let mut cfg = RssConfig::spread(&SYMMETRIC_KEY, 4);
    cfg.reta = vec![3, 1];
    let rss = Rss::new(&cfg).unwrap();
    let mut a = configured("ring:t_rss_ra?peer=t_rss_rb", &pool, 1, None);
    let mut b = configured("ring:t_rss_rb?peer=t_rss_ra&rss=1", &pool, 4, Some(cfg));
    let mut tx = a.take_tx_queue(0).unwrap();
    let mut rx: Vec<_> = (0..4).map(|q| b.take_rx_queue(q).unwrap()).collect();
    // `frames` builds ethertype-0 frames: not IP, so hash 0 -> reta[0] = 3.
    let mut arp_like = frames(&pool, 0, 10, 60);
    assert_eq!(tx.tx_burst(&mut arp_like), 10);
    let mut ip: Vec<Mbuf> = (0..50).map(|i| tcp4(&pool, flow(i).0, flow(i).1, i)).collect();
    let to_1 = ip.iter().filter(|m| rss.hash_frame(m.data()) % 2 == 1).count();
    assert_eq!(tx.tx_burst(&mut ip), 50);
    let counts: Vec<usize> = rx.iter_mut().map(|r| drain(r.as_mut()).len()).collect();
    assert_eq!(counts, vec![0, to_1, 0, 10 + 50 - to_1]);
    drop((tx, rx, a, b));
    assert_eq!(pool.available(), 512);
}

#[test]
fn a_full_receive_queue_leaves_only_its_frames_with_the_caller() {
    let pool = pool("ring_rss_full", 512);
    let mut cfg = RssConfig::spread(&MICROSOFT_KEY, 2);
    cfg.reta = vec![0, 1];
    let rss = Rss::new(&cfg).unwrap();
    let mut a = configured("ring:t_rss_fa?peer=t_rss_fb", &pool, 1, None);
    let mut b = pmd::open("ring:t_rss_fb?peer=t_rss_fa&rss=1").unwrap();
    let mut c = PortConfig::new(2, 2, 16, 16, pool.clone());
    c.rss = Some(cfg);
    b.configure(&c).unwrap();
    b.set_promiscuous(true).unwrap();
    b.start().unwrap();
    let mut tx = a.take_tx_queue(0).unwrap();
    let mut rx: Vec<_> = (0..2).map(|q| b.take_rx_queue(q).unwrap()).collect();
    // Flows for queue 0 only, more than its ring holds, and 5 for queue 1.
    let mut for0 = (0..).map(flow).filter(|(s, d)| rss.hash_flow(*s, *d, pmd::rss::L4::Tcp).unwrap().is_multiple_of(2));
    let mut for1 = (0..).map(flow).filter(|(s, d)| rss.hash_flow(*s, *d, pmd::rss::L4::Tcp).unwrap() % 2 == 1);
    let mut burst: Vec<Mbuf> = (0..20).map(|i| for0.next().map(|(s, d)| tcp4(&pool, s, d, i)).unwrap()).collect();
    burst.extend((20..25).map(|i| for1.next().map(|(s, d)| tcp4(&pool, s, d, i)).unwrap()));
    assert_eq!(tx.tx_burst(&mut burst), 16 + 5);
    assert_eq!(burst.len(), 4, "the 4 that did not fit stay the caller's");
    assert!(burst.iter().all(|m| rss.queue_of_frame(m.data()) == 0));
    assert_eq!(drain(rx[0].as_mut()).len(), 16);
    assert_eq!(drain(rx[1].as_mut()).len(), 5);
    drop(burst);
    drop((tx, rx, a, b));
    assert_eq!(pool.available(), 512);
}

#[test]
fn rss_on_a_ring_without_rss_1_is_refused_naming_the_field() {
    let pool = pool("ring_rss_off", 64);
    let mut p = pmd::open("ring:t_rss_off").unwrap();
    let mut c = PortConfig::new(2, 2, 16, 16, pool.clone());
    c.rss = Some(RssConfig::spread(&MICROSOFT_KEY, 2));
    let e = p.configure(&c).unwrap_err().to_string();
    assert!(e.contains("rss"), "{e}");
    let e = pmd::open("ring:t_rss_bad?rss=yes").err().unwrap().to_string();
    assert!(e.contains("rss"), "{e}");
}

#[test]
fn reconfiguring_the_receiver_moves_steering_to_its_new_table() {
    let pool = pool("ring_rss_reconf", 1024);
    let mut a = configured("ring:t_rss_ca?peer=t_rss_cb", &pool, 1, None);
    let mut b = configured("ring:t_rss_cb?peer=t_rss_ca&rss=1", &pool, 4, Some(RssConfig::spread(&MICROSOFT_KEY, 4)));
    let mut tx = a.take_tx_queue(0).unwrap();
    let burst = |pool: &Mempool| -> Vec<Mbuf> { (0..64).map(|i| tcp4(pool, flow(i).0, flow(i).1, i)).collect() };
    let mut rx: Vec<_> = (0..4).map(|q| b.take_rx_queue(q).unwrap()).collect();
    assert_eq!(tx.tx_burst(&mut burst(&pool)), 64);
    assert_eq!(rx.iter_mut().map(|r| drain(r.as_mut()).len()).sum::<usize>(), 64);
    drop(rx);
    b.stop().unwrap();
    let cfg = RssConfig::spread(&MICROSOFT_KEY, 2);
    let rss = Rss::new(&cfg).unwrap();
    let mut c = PortConfig::new(2, 2, 1024, 1024, pool.clone());
    c.rss = Some(cfg);
    b.configure(&c).unwrap();
    b.start().unwrap();
    let mut rx: Vec<_> = (0..2).map(|q| b.take_rx_queue(q).unwrap()).collect();
    assert_eq!(tx.tx_burst(&mut burst(&pool)), 64);
    let mut total = 0;
    for (q, r) in rx.iter_mut().enumerate() {
        let got = drain(r.as_mut());
        assert!(!got.is_empty());
        assert!(got.iter().all(|m| rss.queue_of_frame(m.data()) as usize == q), "queue {q}");
        total += got.len();
    }
    assert_eq!(total, 64);
    drop((tx, rx, a, b));
    assert_eq!(pool.available(), 1024);
}
