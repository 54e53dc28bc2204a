//! Fuzzes the stack's frame input: any bytes, as a received frame, must neither
//! panic nor leak a buffer. Run from `stack/`: `cargo +nightly fuzz run frame_input`.
#![no_main]

use std::cell::RefCell;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pmd::{Mempool, MempoolConfig, TxOffloads};
use stack::{IcmpConfig, NeighborConfig, ReassemblyConfig, Stack, StackConfig, UdpConfig};

fn config() -> StackConfig {
    StackConfig {
        mac: pmd::MacAddr([2, 0, 0, 0, 0, 2]),
        mtu: 1500,
        ipv4: vec!["198.18.0.2/24".parse().unwrap()],
        ipv6: vec!["2001:2::2/64".parse().unwrap()],
        gateway_v4: Some("198.18.0.254".parse().unwrap()),
        gateway_v6: None,
        ttl: 64,
        neighbor: NeighborConfig {
            capacity: 16,
            lifetime: Duration::from_secs(60),
            retries: 2,
            retry_interval: Duration::from_secs(1),
            pending: 4,
        },
        reassembly: ReassemblyConfig { max_bytes: 64 * 2304, max_datagrams: 8, timeout: Duration::from_secs(5) },
        reassembly_v6: ReassemblyConfig { max_bytes: 64 * 2304, max_datagrams: 8, timeout: Duration::from_secs(5) },
        icmp: IcmpConfig { error_rate_per_sec: 1000, error_burst: 100 },
        timer_tick: Duration::from_millis(1),
        burst: 32,
        tx_backlog: 256,
        tx_offloads: TxOffloads::empty(),
        tcp_max_connections: 4096,
        tcp_rx_mbufs: 256,
    }
}

thread_local! {
    // The sans-IO stack is fed directly: no queues, the time is a number.
    static STATE: RefCell<(Mempool, u64, Stack)> = RefCell::new({
        let pool = Mempool::new(&MempoolConfig::new("fuzz", 1024, 2048, 128, 0)).unwrap();
        let mut s = Stack::new(config(), pool.clone(), 0).unwrap();
        s.udp_bind("0.0.0.0:5000".parse().unwrap(), UdpConfig { rx_queue_len: 4 }).unwrap();
        (pool, 0, s)
    });
}

fuzz_target!(|data: &[u8]| {
    STATE.with(|st| {
        let (pool, now, s) = &mut *st.borrow_mut();
        let mut m = pool.alloc().unwrap();
        if m.extend_from_slice(data).is_none() {
            return;
        }
        s.input(*now, &mut vec![m]);
        *now += 10_000_000;
        s.poll_timers(*now);
        // What the queue would send is freed.
        s.output(*now).clear();
        // What the stack may hold (reassembly, pending, socket queue) is bounded by
        // its configuration, so the pool never runs dry however long this runs.
        assert!(pool.available() > 1024 - 64 - 8 * 4 - 4 - 256);
    });
});
