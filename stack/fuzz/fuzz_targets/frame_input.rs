//! Fuzzes the stack's frame input: any bytes, as a received frame, must neither
//! panic nor leak a buffer. Run from `stack/`: `cargo +nightly fuzz run frame_input`.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use pmd::{Mempool, MempoolConfig};
use stack::{Stack, StackConfig, UdpConfig};

fn config() -> StackConfig {
    StackConfig {
        ipv4: vec!["198.18.0.2/24".parse().unwrap()],
        ipv6: vec!["2001:2::2/64".parse().unwrap()],
        gateway_v4: Some("198.18.0.254".parse().unwrap()),
        ..stack::profiles::fuzz(pmd::MacAddr([2, 0, 0, 0, 0, 2]))
    }
}

thread_local! {
    // The sans-IO stack is fed directly: no queues, the time is a number.
    static STATE: RefCell<(Mempool, u64, Stack)> = RefCell::new({
        let pool = Mempool::new(&MempoolConfig::new("fuzz", 1024, 2048, 128, 0)).unwrap();
        let mut s = Stack::new(config(), pool.clone(), 0).unwrap();
        s.udp().bind("0.0.0.0:5000".parse().unwrap(), UdpConfig { rx_queue_len: 4 }).unwrap();
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
