//! Named [`StackConfig`] profiles for tests, benchmarks and the fuzzer.
//!
//! The stack has no default configuration (DESIGN.md: no knob that changes
//! behaviour on the wire has a hidden default). These are the sets of values
//! the workspace's own harnesses run with, each spelled out in full here and
//! chosen by name at the call site, with the addresses (and anything else the
//! caller varies) set there with struct update syntax:
//!
//! ```
//! # use stack::profiles;
//! let cfg = stack::StackConfig {
//!     ipv4: vec!["198.18.0.1/24".parse().unwrap()],
//!     ..profiles::sim(pmd::MacAddr([2, 0, 0, 0, 0, 1]))
//! };
//! # cfg.validate().unwrap();
//! ```
//!
//! Applications (`l3demo`, `tcpdemo`, `echo`) state their own values; a
//! profile is not a default for them.

use std::time::Duration;

use pmd::{MacAddr, TxOffloads};

use crate::config::{IcmpConfig, NeighborConfig, ReassemblyConfig, StackConfig};

/// A host on the in-memory wire in the deterministic simulations
/// (`stack/tests`, `apps/echo/tests`): small tables, a 30 s reassembly
/// timeout, ICMP errors at 10/s. No addresses.
pub fn sim(mac: MacAddr) -> StackConfig {
    StackConfig {
        mac,
        mtu: 1500,
        ipv4: Vec::new(),
        ipv6: Vec::new(),
        gateway_v4: None,
        gateway_v6: None,
        ttl: 64,
        neighbor: NeighborConfig {
            capacity: 64,
            lifetime: Duration::from_secs(60),
            retries: 3,
            retry_interval: Duration::from_millis(1000),
            pending: 8,
        },
        reassembly: ReassemblyConfig { max_bytes: 256 * 2304, max_datagrams: 16, timeout: Duration::from_secs(30) },
        reassembly_v6: ReassemblyConfig { max_bytes: 256 * 2304, max_datagrams: 16, timeout: Duration::from_secs(30) },
        icmp: IcmpConfig { error_rate_per_sec: 10, error_burst: 5 },
        timer_tick: Duration::from_millis(1),
        burst: 32,
        tx_backlog: 1024,
        tx_offloads: TxOffloads::empty(),
        tcp_max_connections: 4096,
        // A quarter of the simulations' 4096-buffer pools.
        tcp_rx_mbufs: 1024,
    }
}

/// Our stack against the kernel's on a TAP or veth pair
/// (`stack/tests/kernel_peer.rs`): [`sim`] with neighbours kept 30 s and 16
/// packets queued per resolution, 1 MiB of reassembly, ICMP errors at
/// 100/s, 512 held receive buffers. No addresses.
pub fn kernel_peer(mac: MacAddr) -> StackConfig {
    let reassembly = ReassemblyConfig { max_bytes: 1 << 20, max_datagrams: 64, timeout: Duration::from_secs(30) };
    StackConfig {
        neighbor: NeighborConfig {
            capacity: 64,
            lifetime: Duration::from_secs(30),
            retries: 3,
            retry_interval: Duration::from_secs(1),
            pending: 16,
        },
        reassembly_v6: reassembly.clone(),
        reassembly,
        icmp: IcmpConfig { error_rate_per_sec: 100, error_burst: 20 },
        tcp_rx_mbufs: 512,
        ..sim(mac)
    }
}

/// The fuzz target (`stack/fuzz`): [`sim`] with every table small, so
/// whatever the inputs make the stack hold stays far below its pool. No
/// addresses.
pub fn fuzz(mac: MacAddr) -> StackConfig {
    let reassembly = ReassemblyConfig { max_bytes: 64 * 2304, max_datagrams: 8, timeout: Duration::from_secs(5) };
    StackConfig {
        neighbor: NeighborConfig {
            capacity: 16,
            lifetime: Duration::from_secs(60),
            retries: 2,
            retry_interval: Duration::from_secs(1),
            pending: 4,
        },
        reassembly_v6: reassembly.clone(),
        reassembly,
        icmp: IcmpConfig { error_rate_per_sec: 1000, error_burst: 100 },
        tx_backlog: 256,
        tcp_rx_mbufs: 256,
        ..sim(mac)
    }
}

/// The benchmarks' two in-memory hosts (`bench`): [`sim`] with neighbours
/// that never expire within a run, 1 MiB of reassembly, ICMP errors at
/// 100/s, and the transmit backlog and connection limit the benchmark
/// needs. No addresses.
pub fn bench(mac: MacAddr, tx_backlog: usize, tcp_max_connections: usize) -> StackConfig {
    let reassembly = ReassemblyConfig { max_bytes: 1 << 20, max_datagrams: 16, timeout: Duration::from_secs(5) };
    StackConfig {
        neighbor: NeighborConfig {
            capacity: 16,
            lifetime: Duration::from_secs(3600),
            retries: 3,
            retry_interval: Duration::from_millis(100),
            pending: 64,
        },
        reassembly_v6: reassembly.clone(),
        reassembly,
        icmp: IcmpConfig { error_rate_per_sec: 100, error_burst: 10 },
        tx_backlog,
        tcp_max_connections,
        // A quarter of the smallest benchmark pool (16384 buffers).
        tcp_rx_mbufs: 4096,
        ..sim(mac)
    }
}
