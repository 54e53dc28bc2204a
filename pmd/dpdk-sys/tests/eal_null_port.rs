//! End to end over real DPDK: EAL init, an mbuf pool with a private area,
//! a `net_null` port, rx/tx bursts through the shim, stats, cleanup.
//!
//! EAL can be initialised only once per process, so everything that needs
//! it is in the one `#[test]` of this file (each file under `tests/` is its
//! own process). It needs no hugepages (`--no-huge`), no PCI device and
//! writes no runtime files (`--in-memory`, `--no-telemetry`). Run it with
//! `cargo test -p dpdk-sys`.

mod common;

use common::eal_init;
use dpdk_sys::*;
use std::ffi::{CStr, CString};
use std::os::raw::c_int;
use std::ptr;

const BURST: usize = 32;
const NB_MBUFS: u32 = 1023; // a power of two minus one suits the ring
const CACHE: u32 = 32;
const PRIV_SIZE: u16 = 64; // pmd stores its own per-mbuf header here
const NB_DESC: u16 = 128;

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

#[test]
fn null_port_rx_tx_through_shim() {
    let args = [
        "dpdk-sys-test",
        "--no-huge",
        "-m",
        "256",
        "--no-pci",
        // Not --in-memory: with --no-huge, EAL (22.11) turns on legacy
        // memory mode, which it refuses to combine with --in-memory.
        // --no-shconf is the part of --in-memory that matters here.
        "--no-shconf",
        "--no-telemetry",
        "--log-level=lib.eal:error",
        "--vdev",
        "net_null0",
        "-l",
        "0",
    ];
    let ret = eal_init(&args);
    assert!(ret >= 0, "rte_eal_init failed: {ret}, rte_errno {} ({})", errno(), strerror(errno()));
    // It consumed every argument (there is no application part).
    assert_eq!(ret as usize, args.len() - 1);

    // SAFETY (for every unsafe block below): EAL is initialised, this is
    // the main lcore's thread, and all pointers passed are either checked
    // non-null results of DPDK allocators or point into live local arrays
    // sized for the counts passed with them.
    unsafe {
        assert_eq!(rte_shim_lcore_id(), 0, "main lcore should be 0 (-l 0)");
        assert_eq!(rte_eth_dev_count_avail(), 1, "net_null0 from --vdev");

        // ---- pool with a private area --------------------------------
        let name = cstr("dpdk_sys_test_pool");
        let pool = rte_pktmbuf_pool_create(
            name.as_ptr(),
            NB_MBUFS,
            CACHE,
            PRIV_SIZE,
            RTE_MBUF_DEFAULT_BUF_SIZE as u16,
            rte_socket_id() as c_int,
        );
        assert!(!pool.is_null(), "pool create: {}", strerror(errno()));
        assert_eq!(rte_shim_pktmbuf_priv_size(pool), PRIV_SIZE);
        assert_eq!(rte_shim_pktmbuf_data_room_size(pool), RTE_MBUF_DEFAULT_BUF_SIZE as u16);
        assert_eq!(rte_mempool_avail_count(pool), NB_MBUFS);
        assert_eq!(rte_mempool_in_use_count(pool), 0);

        // ---- shim: single alloc, data pointers, private area ---------
        let m = rte_shim_pktmbuf_alloc(pool);
        assert!(!m.is_null());
        let mbuf_size = std::mem::size_of::<rte_mbuf>();
        let priv_ptr = rte_shim_mbuf_to_priv(m) as *mut u8;
        assert_eq!(priv_ptr as usize, m as usize + mbuf_size);
        // Data buffer starts after the private area; data after headroom.
        assert_eq!((*m).buf_addr as usize, m as usize + mbuf_size + PRIV_SIZE as usize);
        assert_eq!(rte_shim_pktmbuf_headroom(m), RTE_PKTMBUF_HEADROOM as u16);
        assert_eq!(rte_shim_pktmbuf_mtod(m) as usize, (*m).buf_addr as usize + RTE_PKTMBUF_HEADROOM as usize);
        assert_eq!((*m).data_len, 0);
        assert_eq!(rte_shim_mbuf_refcnt_read(m), 1);
        std::ptr::write_bytes(priv_ptr, 0xA5, PRIV_SIZE as usize);

        let tail = rte_shim_pktmbuf_append(m, 100) as *mut u8;
        assert!(!tail.is_null());
        assert_eq!((*m).data_len, 100);
        assert_eq!((*m).pkt_len, 100);
        let head = rte_shim_pktmbuf_prepend(m, 14);
        assert!(!head.is_null());
        assert_eq!(head as usize, rte_shim_pktmbuf_mtod(m) as usize);
        assert_eq!((*m).data_len, 114);
        assert!(!rte_shim_pktmbuf_adj(m, 14).is_null());
        assert_eq!(rte_shim_pktmbuf_trim(m, 50), 0);
        assert_eq!((*m).data_len, 50);
        assert_eq!(rte_shim_pktmbuf_trim(m, 51), -1);
        assert_eq!(
            rte_shim_pktmbuf_tailroom(m) as usize,
            RTE_MBUF_DEFAULT_BUF_SIZE as usize - RTE_PKTMBUF_HEADROOM as usize - 50
        );
        assert_eq!(rte_shim_mbuf_refcnt_update(m, 1), 2);
        rte_shim_pktmbuf_free(m); // drops to 1, stays allocated
        assert_eq!(rte_shim_mbuf_refcnt_read(m), 1);
        rte_shim_pktmbuf_reset(m);
        assert_eq!((*m).data_len, 0);
        // The private area belongs to the application: reset keeps it.
        assert!((0..PRIV_SIZE as usize).all(|i| *priv_ptr.add(i) == 0xA5));
        rte_shim_pktmbuf_free(m);
        rte_shim_pktmbuf_free(ptr::null_mut()); // a no-op, as in C

        // ---- shim: bulk alloc, real bulk free --------------------------
        let mut bulk = [ptr::null_mut::<rte_mbuf>(); BURST];
        assert_eq!(rte_shim_pktmbuf_alloc_bulk(pool, bulk.as_mut_ptr(), BURST as u32), 0);
        assert!(bulk.iter().all(|m| !m.is_null()));
        assert_eq!(rte_mempool_in_use_count(pool), BURST as u32);
        rte_pktmbuf_free_bulk(bulk.as_mut_ptr(), BURST as u32);
        assert_eq!(rte_mempool_in_use_count(pool), 0);
        // More than the pool holds: a negative errno, nothing is taken.
        // (DPDK documents -ENOENT; 22.11's ring mempool driver returns
        // -ENOBUFS, so only the sign is part of the contract.)
        let mut too_many = vec![ptr::null_mut::<rte_mbuf>(); NB_MBUFS as usize + 1];
        let r = rte_shim_pktmbuf_alloc_bulk(pool, too_many.as_mut_ptr(), NB_MBUFS + 1);
        assert!(r < 0, "alloc_bulk past the pool size returned {r}");
        eprintln!("alloc_bulk(n > pool) = {r} ({})", strerror(-r));
        assert_eq!(rte_mempool_avail_count(pool), NB_MBUFS);

        // ---- configure and start port 0 -------------------------------
        let port: u16 = 0;
        let mut info: rte_eth_dev_info = Default::default();
        assert_eq!(rte_eth_dev_info_get(port, &mut info), 0);
        let drv = CStr::from_ptr(info.driver_name).to_string_lossy();
        assert_eq!(drv, "net_null");
        let conf: rte_eth_conf = Default::default();
        assert_eq!(rte_eth_dev_configure(port, 1, 1, &conf), 0);
        let socket = rte_eth_dev_socket_id(port);
        assert_eq!(rte_eth_rx_queue_setup(port, 0, NB_DESC, socket as u32, ptr::null(), pool), 0);
        assert_eq!(rte_eth_tx_queue_setup(port, 0, NB_DESC, socket as u32, ptr::null()), 0);
        assert_eq!(rte_eth_dev_start(port), 0);
        assert_eq!(rte_eth_stats_reset(port), 0);
        let avail_before = rte_mempool_avail_count(pool);

        // ---- rx 32 from net_null --------------------------------------
        let mut pkts = [ptr::null_mut::<rte_mbuf>(); BURST];
        let n = eth_rx_burst(eth_fp_ops(port), port, 0, pkts.as_mut_ptr(), BURST as u16);
        assert_eq!(n as usize, BURST, "net_null always fills the burst");
        assert_eq!(rte_mempool_in_use_count(pool), BURST as u32);
        for &p in &pkts {
            // net_null's default packet size is 64 bytes.
            assert_eq!((*p).data_len, 64);
            assert_eq!((*p).pkt_len, 64);
            assert_eq!((*p).nb_segs, 1);
            assert_eq!((*p).port, port);
            // Our private area is usable on received mbufs too.
            let pv = rte_shim_mbuf_to_priv(p) as *mut u64;
            pv.write(p as u64);
            assert_eq!(pv.read(), p as u64);
        }

        // ---- tx them back ---------------------------------------------
        let sent = eth_tx_burst(eth_fp_ops(port), port, 0, pkts.as_mut_ptr(), n);
        assert_eq!(sent, n, "net_null accepts every packet");

        let mut stats: rte_eth_stats = Default::default();
        assert_eq!(rte_eth_stats_get(port, &mut stats), 0);
        assert_eq!(stats.ipackets, BURST as u64);
        assert_eq!(stats.opackets, BURST as u64);
        assert_eq!(stats.ierrors, 0);
        assert_eq!(stats.oerrors, 0);
        assert_eq!(stats.rx_nombuf, 0);
        eprintln!(
            "stats: ipackets={} opackets={} ibytes={} obytes={}",
            stats.ipackets, stats.opackets, stats.ibytes, stats.obytes
        );

        // Every mbuf went back to the pool.
        assert_eq!(rte_mempool_avail_count(pool), avail_before);
        assert_eq!(rte_mempool_in_use_count(pool), 0);

        // ---- a vdev created at run time (links rte_bus_vdev) ----------
        let vname = cstr("net_null1");
        assert_eq!(rte_vdev_init(vname.as_ptr(), ptr::null()), 0);
        assert_eq!(rte_eth_dev_count_avail(), 2);
        assert_eq!(rte_vdev_uninit(vname.as_ptr()), 0);
        assert_eq!(rte_eth_dev_count_avail(), 1);

        // ---- cleanup ---------------------------------------------------
        assert_eq!(rte_eth_dev_stop(port), 0);
        assert_eq!(rte_eth_dev_close(port), 0);
        rte_mempool_free(pool);
        assert_eq!(rte_eal_cleanup(), 0);
    }
}
