//! Zero copy through a DPDK port, in one process (EAL initialises once per
//! process, so this file has exactly one test): frames allocated from the DPDK
//! pool with `Mempool::alloc`, sent on `dpdk:net_ring0` and received back, are
//! the same `rte_mbuf`s; the `Mbuf`'s data is the `rte_mbuf`'s buffer at
//! `buf_addr + data_off`; and no copy is counted. A buffer of a native pool is
//! copied once, and counted; with `checks=none` too.
#![cfg(feature = "dpdk")]

use pmd::drivers::dpdk::{self, rte_mbuf_view, EalConfig};
use pmd::mempool::DEFAULT_HEADROOM;
use pmd::port::RssHashTypes;
use pmd::{Mbuf, Mempool, MempoolConfig, Port, PortConfig, RssConfig, RxQueue, TxFlags, TxOffloads, TxQueue};

fn xstat(p: &dyn Port, name: &str) -> u64 {
    p.xstats().into_iter().find(|(k, _)| k == name).unwrap_or_else(|| panic!("no xstat {name}")).1
}

#[test]
fn rx_and_tx_move_rte_mbufs_without_copying() {
    let mut eal = EalConfig::no_huge("0", 256, &format!("pmd-zc-{}", std::process::id()));
    eal.log_levels.push("lib.eal:error".into());
    // Opening a dpdk port before EAL is an error that says what to do.
    let e = pmd::open("dpdk:net_ring0").err().unwrap().to_string();
    assert!(e.contains("EAL is not initialised") && e.contains("--eal"), "{e}");
    let e = dpdk::create_mempool(&MempoolConfig::new("early", 511, 2048, DEFAULT_HEADROOM, 0)).unwrap_err().to_string();
    assert!(e.contains("EAL is not initialised"), "{e}");

    dpdk::init(&eal).unwrap();
    // Same config again: a no-op; another one: an error.
    dpdk::init(&eal).unwrap();
    let mut other = eal.clone();
    other.cores = "1".into();
    let e = dpdk::init(&other).unwrap_err().to_string();
    assert!(e.contains("only once per process"), "{e}");

    // Pool values are checked and named.
    let e = dpdk::create_mempool(&MempoolConfig::new("bad", 511, 2048, 64, 0)).unwrap_err().to_string();
    assert!(e.contains("headroom"), "{e}");
    let pool = dpdk::create_mempool(&MempoolConfig::new("zc_pool", 1023, 2048, DEFAULT_HEADROOM, 32)).unwrap();
    assert_eq!((pool.count(), pool.available(), pool.in_use()), (1023, 1023, 0));

    // A port needs a DPDK pool.
    let native = Mempool::new(&MempoolConfig::new("native", 64, 2048, DEFAULT_HEADROOM, 0)).unwrap();
    let mut port = pmd::open("dpdk:net_ring0").unwrap();
    let e = port.configure(&PortConfig::new(1, 1, 256, 256, native.clone())).unwrap_err().to_string();
    assert!(e.contains("mempool") && e.contains("create_mempool"), "{e}");
    // RSS on a device without it, and offloads it does not report: errors
    // naming the field.
    let mut rss = PortConfig::new(2, 2, 256, 256, pool.clone());
    rss.rss = Some(RssConfig { key: vec![0x6d; 40], hash_types: RssHashTypes::IPV4_TCP, reta: vec![0, 1] });
    let e = port.configure(&rss).unwrap_err().to_string();
    assert!(e.contains("rss") && e.contains("no RSS"), "{e}");
    let mut off = PortConfig::new(1, 1, 256, 256, pool.clone());
    off.tx_offloads = TxOffloads::TCP_TSO;
    let e = port.configure(&off).unwrap_err().to_string();
    assert!(e.contains("tx_offloads") && e.contains("TCP_TSO"), "{e}");
    port.configure(&PortConfig::new(1, 1, 256, 256, pool.clone())).unwrap();
    port.start().unwrap();
    let info = port.info();
    assert_eq!(info.driver, "net_ring");
    assert!(port.link().up, "{:?}", port.link());
    let mut rx = port.take_rx_queue(0).unwrap();
    let mut tx = port.take_tx_queue(0).unwrap();

    // ---- tx: Mbufs from Mempool::alloc (ExternalPool::alloc_bulk) ----------
    let n = 16;
    let mut sent_mbufs = Vec::new();
    let mut batch: Vec<Mbuf> = (0..n)
        .map(|i| {
            let mut m = pool.alloc().unwrap();
            let v = rte_mbuf_view(&m).expect("a DPDK pool's Mbuf has an rte_mbuf");
            // Fresh: the window is DPDK's default headroom, in the rte_mbuf's buffer.
            assert_eq!(m.data_ptr() as usize, v.buf_addr + DEFAULT_HEADROOM);
            // Prepend below the headroom start and trim: the tx path must write
            // the handle's window into the rte_mbuf.
            let d = m.append(100).unwrap();
            d.fill(0);
            d[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xaa]);
            d[20] = i as u8;
            m.adj(4).unwrap(); // off = 132, len = 96
            m.clear_meta();
            sent_mbufs.push((v.mbuf, m.data_ptr() as usize, m.len()));
            m
        })
        .collect();
    assert_eq!(pool.in_use(), n);
    assert_eq!(tx.tx_burst(&mut batch), n);
    assert!(batch.is_empty());

    // ---- rx: the same rte_mbufs, their data in place -----------------------
    let mut got = Vec::new();
    for _ in 0..100 {
        rx.rx_burst(&mut got, 32);
        if got.len() >= n {
            break;
        }
    }
    assert_eq!(got.len(), n);
    for (i, m) in got.iter().enumerate() {
        let v = rte_mbuf_view(m).unwrap();
        let (mbuf, data, len) = sent_mbufs[i];
        assert_eq!(v.mbuf, mbuf, "frame {i} came back in the same rte_mbuf");
        assert_eq!(m.data_ptr() as usize, v.buf_addr + v.data_off as usize, "Mbuf data is buf_addr + data_off");
        assert_eq!(m.data_ptr() as usize, data, "same bytes as sent");
        assert_eq!((m.len(), v.data_len as usize), (len, len));
        assert_eq!(v.data_off as usize, DEFAULT_HEADROOM + 4, "tx wrote the handle's offset");
        assert_eq!(m.data()[16], i as u8);
        assert_eq!(m.meta().tx_flags, TxFlags::empty());
    }
    assert_eq!(xstat(&*port, "tx_copies"), 0, "no copies on the DPDK path");

    // Forward them back out unchanged (io): still no copy.
    assert_eq!(tx.tx_burst(&mut got), n);
    let mut again = Vec::new();
    while again.len() < n {
        rx.rx_burst(&mut again, 32);
    }
    for (i, m) in again.iter().enumerate() {
        assert_eq!(rte_mbuf_view(m).unwrap().mbuf, sent_mbufs[i].0);
    }
    assert_eq!(xstat(&*port, "tx_copies"), 0);
    drop(again);
    assert_eq!(pool.in_use(), 0, "every rte_mbuf is back in the rte_mempool");

    // ---- a native buffer is copied once, and counted ------------------------
    let mut m = native.alloc().unwrap();
    m.extend_from_slice(&[0xab; 60]).unwrap();
    let native_ptr = m.data_ptr() as usize;
    let mut one = vec![m];
    assert_eq!(tx.tx_burst(&mut one), 1);
    assert_eq!(native.in_use(), 0, "the original went back to its pool");
    let mut back = Vec::new();
    while back.is_empty() {
        rx.rx_burst(&mut back, 32);
    }
    assert_ne!(back[0].data_ptr() as usize, native_ptr);
    assert_eq!(back[0].data(), &[0xab; 60][..]);
    assert!(rte_mbuf_view(&back[0]).is_some());
    assert_eq!(xstat(&*port, "tx_copies"), 1);
    drop(back);

    // ---- exact counters; a stopped port drains what its rings hold ---------
    let st = port.stats();
    assert_eq!((st.opackets, st.ipackets), (2 * n as u64 + 1, 2 * n as u64 + 1));
    assert_eq!(st.obytes, st.ibytes);
    let mut left: Vec<Mbuf> = (0..8).map(|_| pool.alloc().unwrap()).collect();
    for m in &mut left {
        m.append(64).unwrap().fill(1);
    }
    assert_eq!(tx.tx_burst(&mut left), 8);
    assert_eq!(pool.in_use(), 8, "in net_ring's ring");
    // Pool exhaustion is an error, never a panic, and recovers.
    let mut all = Vec::new();
    assert!(pool.alloc_bulk(&mut all, 2000).is_err());
    assert!(all.is_empty(), "all or nothing");
    drop(rx);
    drop(tx);
    port.stop().unwrap();
    assert_eq!(pool.in_use(), 0, "stop drained the ring");
    // Reconfigure and run again after a stop.
    port.configure(&PortConfig::new(2, 2, 128, 128, pool.clone())).unwrap();
    port.start().unwrap();
    // net_ring has no MTU operation: an error naming it, not a silent no-op.
    let e = port.set_mtu(1400).unwrap_err().to_string();
    assert!(e.contains("does not support setting the MTU"), "{e}");
    assert!(port.set_mtu(10).unwrap_err().to_string().contains("mtu"));
    drop(port);
    assert_eq!(pool.in_use(), 0);

    // ---- checks=none: no per-frame work, but provenance still holds --------
    let e = pmd::open("dpdk:net_ring0?checks=maybe").err().unwrap().to_string();
    assert!(e.contains("checks") && e.contains("full or none"), "{e}");
    let mut port = pmd::open("dpdk:net_ring0?checks=none").unwrap();
    port.configure(&PortConfig::new(1, 1, 256, 256, pool.clone())).unwrap();
    port.start().unwrap();
    let mut rx = port.take_rx_queue(0).unwrap();
    let mut tx = port.take_tx_queue(0).unwrap();
    let mut batch: Vec<Mbuf> = (0..n)
        .map(|i| {
            let mut m = pool.alloc().unwrap();
            m.append(64).unwrap().fill(i as u8);
            m
        })
        .collect();
    // A native buffer in the middle of the burst: it must never reach the
    // device as an rte_mbuf, so it is copied (and counted), the rest is not.
    let mut foreign = native.alloc().unwrap();
    foreign.extend_from_slice(&[0xcd; 70]).unwrap();
    batch.insert(n / 2, foreign);
    let ptrs: Vec<usize> = batch.iter().map(|m| m.data_ptr() as usize).collect();
    assert_eq!(tx.tx_burst(&mut batch), n + 1);
    assert_eq!(native.in_use(), 0);
    let mut got = Vec::new();
    while got.len() < n + 1 {
        rx.rx_burst(&mut got, 32);
    }
    for (i, m) in got.iter().enumerate() {
        assert!(rte_mbuf_view(m).is_some());
        if i == n / 2 {
            assert_eq!(m.data(), &[0xcd; 70][..]);
            assert_ne!(m.data_ptr() as usize, ptrs[i]);
        } else {
            assert_eq!(m.data_ptr() as usize, ptrs[i], "frame {i} is the same rte_mbuf");
        }
    }
    assert_eq!(xstat(&*port, "tx_copies"), 1);
    let st = port.stats();
    assert_eq!((st.opackets, st.ipackets), (n as u64 + 1, n as u64 + 1));

    // ---- a burst the receive queue vouches for: no address check ----------
    // The concrete handles, as a DPDK-only poll loop takes them; a downcast
    // to the wrong type gives the handle back.
    let rx = pmd::downcast_rx::<pmd::drivers::null::NullRx>(rx).err().expect("not a null queue");
    let mut rx: dpdk::DpdkRx = pmd::downcast_rx(rx).ok().expect("a DPDK queue");
    let mut tx: dpdk::DpdkTx = pmd::downcast_tx(tx).ok().expect("a DPDK queue");
    assert_eq!(tx.tx_burst(&mut got), n + 1);
    let mut burst = Vec::new();
    let r = rx.rx_received(&mut burst, 512);
    assert_eq!(r.len(), n + 1);
    assert!(r.frames().iter().all(|m| rte_mbuf_view(m).is_some()));
    assert_eq!(tx.tx_received(r), n + 1);
    assert!(burst.is_empty());
    assert_eq!(xstat(&*port, "tx_copies"), 1, "vouched for: nothing checked, nothing copied");
    // Received into a vector that already held a native buffer: not vouched
    // for, so checked, and the native buffer is copied, never sent as is.
    let mut f = native.alloc().unwrap();
    f.extend_from_slice(&[0xab; 60]).unwrap();
    let mut burst = vec![f];
    let r = rx.rx_received(&mut burst, 512);
    assert_eq!(r.len(), n + 2);
    assert_eq!(tx.tx_received(r), n + 2);
    assert_eq!(xstat(&*port, "tx_copies"), 2);
    assert_eq!(native.in_use(), 0);
    let mut got = Vec::new();
    while got.len() < n + 2 {
        rx.rx_burst(&mut got, 32);
    }
    assert_eq!(got[0].data(), &[0xab; 60][..]);
    let st = port.stats();
    // n + 1 each of three times, n + 2 the last.
    assert_eq!((st.opackets, st.ipackets), (4 * n as u64 + 5, 4 * n as u64 + 5));
    drop(got);
    drop((rx, tx));
    drop(port);
    assert_eq!(pool.in_use(), 0);
    drop(pool);
}
