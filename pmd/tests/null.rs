//! The `null` driver, and receive under mempool exhaustion.

mod common;
use common::*;

#[test]
fn rx_makes_frames_of_the_given_size_and_tx_frees_them() {
    let pool = pool("null_basic", 256);
    let mut p = up("null:n1?size=128", &pool, 64);
    let (mut rx, mut tx) = queues(&mut p);
    let mut v = Vec::new();
    assert_eq!(rx.rx_burst(&mut v, 32), 32);
    assert!(v.iter().all(|m| m.len() == 128));
    assert_eq!(tx.tx_burst(&mut v), 32);
    let s = p.stats();
    assert_eq!((s.ipackets, s.ibytes, s.opackets, s.obytes), (32, 4096, 32, 4096));
}

#[test]
fn rx_under_mempool_exhaustion_counts_nombuf_and_recovers() {
    let pool = pool("null_nombuf", 128);
    let mut p = up("null", &pool, 64);
    let mut rx = p.take_rx_queue(0).unwrap();
    let mut hoard = Vec::new();
    pool.alloc_bulk(&mut hoard, 100).unwrap();
    let mut v = Vec::new();
    assert_eq!(rx.rx_burst(&mut v, 32), 0);
    assert_eq!(rx.rx_burst(&mut v, 32), 0);
    assert_eq!(p.stats().rx_nombuf, 64);
    assert_eq!(p.stats().ipackets, 0);
    drop(hoard);
    assert_eq!(rx.rx_burst(&mut v, 32), 32, "the port recovers once buffers return");
    assert_eq!(p.stats().ipackets, 32);
}

#[test]
fn stopped_port_moves_nothing() {
    let pool = pool("null_stop", 64);
    let mut p = up("null", &pool, 64);
    let (mut rx, mut tx) = queues(&mut p);
    p.stop().unwrap();
    assert!(!p.link().up);
    let mut v = Vec::new();
    assert_eq!(rx.rx_burst(&mut v, 8), 0);
    let mut f = frames(&pool, 0, 2, 64);
    assert_eq!(tx.tx_burst(&mut f), 0);
    assert_eq!(f.len(), 2, "caller keeps what was not sent");
    p.start().unwrap();
    assert_eq!(tx.tx_burst(&mut f), 2);
}

#[test]
fn data_room_smaller_than_frame_is_a_config_error() {
    let small = pmd::Mempool::new(&pmd::MempoolConfig::new("null_small", 16, 60, 0, 0)).unwrap();
    let mut p = pmd::open("null").unwrap();
    let e = p.configure(&pmd::PortConfig::new(1, 1, 16, 16, small)).unwrap_err().to_string();
    assert!(e.contains("mempool"), "{e}");
}
