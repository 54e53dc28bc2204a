//! The `ring` driver through the `Port` trait.

mod common;
use common::*;

use pmd::{Mbuf, PortConfig};

#[test]
fn loopback_delivers_in_order_with_exact_stats() {
    let pool = pool("ring_loop", 512);
    let mut p = up("ring:t_loop", &pool, 256);
    let mut rx = p.take_rx_queue(0).unwrap();
    let mut tx = p.take_tx_queue(0).unwrap();
    assert!(p.link().up);
    let mut out = frames(&pool, 0, 100, 60);
    assert_eq!(tx.tx_burst(&mut out), 100);
    assert!(out.is_empty());
    let mut got = Vec::new();
    while rx.rx_burst(&mut got, 32) > 0 {}
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), (0..100).collect::<Vec<_>>());
    let s = p.stats();
    assert_eq!((s.ipackets, s.opackets, s.ibytes, s.obytes), (100, 100, 6000, 6000));
    assert_eq!((s.q_ipackets[0], s.q_opackets[0]), (100, 100));
    p.reset_stats();
    let s = p.stats();
    assert_eq!((s.ipackets, s.opackets, s.ibytes, s.obytes), (0, 0, 0, 0));
}

#[test]
fn wire_between_two_ports_and_link_follows_both_ends() {
    let pool = pool("ring_wire", 512);
    let mut a = up("ring:t_wa?peer=t_wb", &pool, 64);
    assert!(!a.link().up, "peer not open yet");
    let mut b = up("ring:t_wb?peer=t_wa", &pool, 64);
    assert!(a.link().up && b.link().up);
    let mut atx = a.take_tx_queue(0).unwrap();
    let mut brx = b.take_rx_queue(0).unwrap();
    let mut arx = a.take_rx_queue(0).unwrap();
    let mut f = frames(&pool, 0, 10, 64);
    assert_eq!(atx.tx_burst(&mut f), 10);
    let mut got = Vec::new();
    assert_eq!(arx.rx_burst(&mut got, 32), 0, "a does not hear itself");
    assert_eq!(brx.rx_burst(&mut got, 32), 10);
    b.stop().unwrap();
    assert!(!a.link().up);
    assert_eq!(brx.rx_burst(&mut got, 32), 0, "stopped port receives nothing");
}

#[test]
fn full_ring_returns_unsent_frames_to_the_caller() {
    let pool = pool("ring_full", 256);
    let mut p = up("ring:t_full", &pool, 16);
    let mut tx = p.take_tx_queue(0).unwrap();
    let mut f = frames(&pool, 0, 40, 64);
    assert_eq!(tx.tx_burst(&mut f), 16);
    assert_eq!(f.len(), 24);
    assert_eq!(seq(&f[0]), 16, "unsent frames stay in order");
    assert_eq!(p.stats().opackets, 16);
}

#[test]
fn mtu_sized_frame_passes_and_one_more_byte_is_dropped_and_counted() {
    let pool = pool("ring_mtu", 64);
    let mut p = up("ring:t_mtu", &pool, 16);
    p.stop().unwrap();
    p.set_mtu(1500).unwrap();
    p.start().unwrap();
    let (mut rx, mut tx) = queues(&mut p);
    let mut f = frames(&pool, 0, 1, 1514);
    f.extend(frames(&pool, 1, 1, 1515));
    assert_eq!(tx.tx_burst(&mut f), 2, "both taken: one sent, one dropped");
    let s = p.stats();
    assert_eq!((s.opackets, s.oerrors), (1, 1));
    let mut got = Vec::new();
    assert_eq!(rx.rx_burst(&mut got, 32), 1);
    assert_eq!(got[0].len(), 1514);
    assert!(p.set_mtu(9001).unwrap_err().to_string().contains("mtu"));
}

#[test]
fn without_promiscuous_mode_only_own_broadcast_and_multicast_frames_arrive() {
    let pool = pool("ring_promisc", 64);
    let mut p = up("ring:t_prom?mac=02:00:00:00:00:aa", &pool, 16);
    p.set_promiscuous(false).unwrap();
    let (mut rx, mut tx) = queues(&mut p);
    let mut f = frames(&pool, 0, 4, 64);
    f[1].data_mut()[5] = 0xbb; // other unicast
    f[2].data_mut()[0..6].copy_from_slice(&[0xff; 6]);
    f[3].data_mut()[0..6].copy_from_slice(&[0x01, 0, 0x5e, 0, 0, 1]);
    tx.tx_burst(&mut f);
    let mut got = Vec::new();
    rx.rx_burst(&mut got, 32);
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), vec![0, 2, 3]);
    p.set_promiscuous(true).unwrap();
    let mut f = frames(&pool, 9, 1, 64);
    f[0].data_mut()[5] = 0xbb;
    tx.tx_burst(&mut f);
    assert_eq!(rx.rx_burst(&mut got, 32), 1);
}

#[test]
fn stop_start_keeps_configuration_and_reconfigure_needs_handles_back() {
    let pool = pool("ring_cfg", 64);
    let mut p = up("ring:t_cfg", &pool, 16);
    let rx = p.take_rx_queue(0).unwrap();
    assert!(p.take_rx_queue(0).err().unwrap().to_string().contains("already owned"));
    assert!(p.take_rx_queue(1).err().unwrap().to_string().contains("does not exist"));
    p.stop().unwrap();
    let err = p.configure(&PortConfig::new(2, 2, 16, 16, pool.clone())).unwrap_err();
    assert!(err.to_string().contains("still in use"), "{err}");
    drop(rx);
    p.start().unwrap();
    assert_eq!(p.config().unwrap().rx_desc, 16);
    let err = p.configure(&PortConfig::new(2, 2, 16, 16, pool.clone())).unwrap_err();
    assert!(err.to_string().contains("stop"), "{err}");
    p.stop().unwrap();
    p.configure(&PortConfig::new(2, 2, 16, 16, pool.clone())).unwrap();
    assert!(p.configure(&PortConfig::new(65, 1, 16, 16, pool.clone())).unwrap_err().to_string().contains("rx_queues"));
    assert!(p.configure(&PortConfig::new(1, 1, 0, 16, pool.clone())).unwrap_err().to_string().contains("rx_desc"));
    p.start().unwrap();
    let (mut rx1, mut tx1) = (p.take_rx_queue(1).unwrap(), p.take_tx_queue(1).unwrap());
    let mut f = frames(&pool, 0, 3, 64);
    tx1.tx_burst(&mut f);
    let mut got: Vec<Mbuf> = Vec::new();
    assert_eq!(rx1.rx_burst(&mut got, 8), 3, "queue 1 loops to queue 1");
    assert_eq!(p.stats().q_ipackets, vec![0, 3]);
}

#[test]
fn same_name_cannot_be_opened_twice() {
    let _a = pmd::open("ring:t_twice").unwrap();
    let e = pmd::open("ring:t_twice").err().unwrap().to_string();
    assert!(e.contains("already open"), "{e}");
}

#[test]
fn frames_in_flight_are_freed_when_ports_close() {
    let pool = pool("ring_close", 128);
    let mut p = up("ring:t_close", &pool, 64);
    let mut tx = p.take_tx_queue(0).unwrap();
    let mut f = frames(&pool, 0, 50, 64);
    tx.tx_burst(&mut f);
    assert_eq!(pool.in_use(), 50);
}

#[test]
fn threads_on_both_ends_move_every_frame() {
    let pool = pool("ring_threads", 2048);
    let mut a = up("ring:t_tha?peer=t_thb", &pool, 512);
    let mut b = up("ring:t_thb?peer=t_tha", &pool, 512);
    let mut tx = a.take_tx_queue(0).unwrap();
    let mut rx = b.take_rx_queue(0).unwrap();
    const N: u32 = 100_000;
    let p2 = pool.clone();
    let sender = std::thread::spawn(move || {
        let mut next = 0;
        let mut pending = Vec::new();
        while next < N || !pending.is_empty() {
            if pending.is_empty() {
                let n = 32.min(N - next) as usize;
                if p2.alloc_bulk(&mut pending, n).is_err() {
                    continue;
                }
                for m in pending.iter_mut() {
                    m.append(64).unwrap()[14..18].copy_from_slice(&next.to_be_bytes());
                    next += 1;
                }
            }
            tx.tx_burst(&mut pending);
        }
    });
    let mut expect = 0;
    let mut got = Vec::new();
    while expect < N {
        rx.rx_burst(&mut got, 32);
        for m in got.drain(..) {
            assert_eq!(seq(&m), expect);
            expect += 1;
        }
    }
    sender.join().unwrap();
    assert_eq!(b.stats().ipackets, N as u64);
}

#[test]
fn receiver_with_smaller_mtu_drops_and_counts_oversized_frames_even_in_split_bursts() {
    let pool = pmd::Mempool::new(&pmd::MempoolConfig::new("ring_mtu2", 256, 9216, 128, 32)).unwrap();
    let mut a = up("ring:t_mtu_a?peer=t_mtu_b", &pool, 64);
    let mut b = up("ring:t_mtu_b?peer=t_mtu_a", &pool, 64);
    a.stop().unwrap();
    a.set_mtu(9000).unwrap();
    a.start().unwrap();
    let (mut atx, mut brx) = (a.take_tx_queue(0).unwrap(), b.take_rx_queue(0).unwrap());
    // One burst: 10 small frames, 1 jumbo, 10 small; b takes it 4 at a time.
    let mut f = frames(&pool, 0, 10, 100);
    f.extend(frames(&pool, 10, 1, 3000));
    f.extend(frames(&pool, 11, 10, 100));
    assert_eq!(atx.tx_burst(&mut f), 21);
    assert_eq!(a.stats().opackets, 21);
    let mut got = Vec::new();
    while brx.rx_burst(&mut got, 4) > 0 {}
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), (0..21).filter(|&i| i != 10).collect::<Vec<_>>());
    let s = b.stats();
    assert_eq!((s.ipackets, s.ibytes, s.ierrors), (20, 2000, 1));
    drop(got);
    drop((atx, brx, a, b));
    assert_eq!(pool.available(), 256);
}

#[test]
fn checks_none_moves_frames_like_net_ring_and_interoperates_with_full() {
    let pool = common::pool("ring_none", 256);
    // none <-> full: the full end still enforces its MTU and counts bytes.
    let mut a = pmd::open("ring:none_a?peer=none_b&checks=none").unwrap();
    let mut b = pmd::open("ring:none_b?peer=none_a").unwrap();
    for p in [&mut a, &mut b] {
        p.configure(&pmd::PortConfig::new(1, 1, 64, 64, pool.clone())).unwrap();
        p.set_promiscuous(true).unwrap();
        p.start().unwrap();
    }
    let (mut arx, mut atx) = (a.take_rx_queue(0).unwrap(), a.take_tx_queue(0).unwrap());
    let (mut brx, mut btx) = (b.take_rx_queue(0).unwrap(), b.take_tx_queue(0).unwrap());
    let frame = |len: usize| {
        let mut m = pool.alloc().unwrap();
        m.append(len).unwrap().fill(0x5a);
        m
    };
    // a (none) -> b (full): an oversize frame is not dropped by a, but by b.
    let mut v = vec![frame(100), frame(1515), frame(60)];
    assert_eq!(atx.tx_burst(&mut v), 3);
    let mut got = Vec::new();
    brx.rx_burst(&mut got, 32);
    assert_eq!(got.iter().map(|m| m.len()).collect::<Vec<_>>(), vec![100, 60]);
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.opackets, sa.obytes, sa.oerrors), (3, 0, 0));
    assert_eq!((sb.ipackets, sb.ibytes, sb.ierrors), (2, 160, 1));
    // b (full) -> a (none): b enforces its MTU on transmit; a counts no bytes.
    let mut v = vec![frame(1515), frame(70)];
    assert_eq!(btx.tx_burst(&mut v), 2);
    got.clear();
    arx.rx_burst(&mut got, 32);
    assert_eq!(got.iter().map(|m| m.len()).collect::<Vec<_>>(), vec![70]);
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sb.opackets, sb.obytes, sb.oerrors), (1, 70, 1));
    assert_eq!((sa.ipackets, sa.ibytes), (1, 0));
    drop(got);
    // A bad value names the option.
    let e = pmd::open("ring:none_c?checks=some").err().unwrap().to_string();
    assert!(e.contains("checks") && e.contains("full or none"), "{e}");
    drop((arx, atx, brx, btx, a, b));
    assert_eq!(pool.available(), 256);
}

#[test]
fn checks_none_still_does_the_checksum_offloads_it_offers() {
    let pool = common::pool("ring_none_csum", 64);
    let mut p = pmd::open("ring:none_csum?csum=1&checks=none").unwrap();
    let mut conf = pmd::PortConfig::new(1, 1, 64, 64, pool.clone());
    conf.tx_offloads = pmd::TxOffloads::IPV4_CKSUM;
    p.configure(&conf).unwrap();
    p.set_promiscuous(true).unwrap();
    p.start().unwrap();
    let (mut rx, mut tx) = queues(&mut p);
    let mut m = pool.alloc().unwrap();
    let d = m.append(60).unwrap();
    d.fill(0);
    d[12..14].copy_from_slice(&[0x08, 0x00]);
    d[14] = 0x45;
    m.set_meta(pmd::MbufMeta {
        tx_flags: pmd::TxFlags::IPV4 | pmd::TxFlags::IP_CKSUM,
        l2_len: 14,
        l3_len: 20,
        ..Default::default()
    });
    assert_eq!(tx.tx_burst(&mut vec![m]), 1);
    let mut got = Vec::new();
    rx.rx_burst(&mut got, 8);
    assert_eq!(got.len(), 1);
    assert!(got[0].rx_flags().contains(pmd::RxFlags::IP_CKSUM_GOOD));
    assert_ne!(&got[0].data()[24..26], &[0, 0], "the IPv4 header checksum was filled in");
    drop(got);
    drop((rx, tx, p));
    assert_eq!(pool.available(), 64);
}
