//! Helpers shared by the integration tests (pmd's, and tools/testpmd's through `#[path]`).
#![allow(dead_code)]

use pmd::mempool::DEFAULT_HEADROOM;
use pmd::{Mbuf, Mempool, MempoolConfig, Port, PortConfig, RxQueue, TxQueue};

/// A pool of `count` buffers that checks, when the test is done with it,
/// that every one of them came home (see [`Pool`]).
pub fn pool(name: &str, count: usize) -> Pool {
    Pool(Mempool::new(&MempoolConfig::new(name, count, 2048, DEFAULT_HEADROOM, 32)).unwrap())
}

/// A test's pool: a [`Mempool`] that asserts on drop that no buffer leaked.
/// Declared first in a test, it is dropped last, after the ports, queues and
/// frames declared after it have given their buffers back; a test that
/// already failed is not checked again.
pub struct Pool(pub Mempool);

impl std::ops::Deref for Pool {
    type Target = Mempool;
    fn deref(&self) -> &Mempool {
        &self.0
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_eq!(self.0.available(), self.0.count(), "mbufs leaked from pool {}", self.0.name());
        }
    }
}

/// Opens, configures (1 rx, 1 tx queue, `desc` descriptors), sets promiscuous and starts.
pub fn up(spec: &str, pool: &Mempool, desc: u16) -> Box<dyn Port> {
    let mut p = pmd::open(spec).unwrap();
    p.configure(&PortConfig::new(1, 1, desc, desc, pool.clone())).unwrap();
    p.set_promiscuous(true).unwrap();
    p.start().unwrap();
    p
}

/// A port's receive and transmit queue of one pair.
pub type Queues = (Box<dyn RxQueue>, Box<dyn TxQueue>);

/// Takes queue pair 0 of a configured port.
pub fn queues(p: &mut Box<dyn Port>) -> Queues {
    (p.take_rx_queue(0).unwrap(), p.take_tx_queue(0).unwrap())
}

/// `n` frames of `len` bytes whose first 4 payload bytes hold the sequence number.
pub fn frames(pool: &Mempool, first: u32, n: usize, len: usize) -> Vec<Mbuf> {
    (0..n)
        .map(|i| {
            let mut m = pool.alloc().unwrap();
            let d = m.append(len).unwrap();
            d.fill(0);
            d[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xaa]);
            d[14..18].copy_from_slice(&(first + i as u32).to_be_bytes());
            m
        })
        .collect()
}

pub fn seq(m: &Mbuf) -> u32 {
    let d = m.data();
    u32::from_be_bytes([d[14], d[15], d[16], d[17]])
}

/// A fresh directory for a test's files, `pmd_<tag>_<pid>` under the temp
/// directory; the test removes it.
pub fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pmd_{tag}_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The records of a pcap file: (timestamp ns, original length, captured bytes).
pub fn pcap_records(path: &std::path::Path) -> Vec<(u64, u32, Vec<u8>)> {
    let mut r = pcap_file::pcap::PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        v.push((p.timestamp.as_nanos() as u64, p.orig_len, p.data.into_owned()));
    }
    v
}
