//! `pmd`: the bottom layer of the framework.
//!
//! * [`Mbuf`] and [`Mempool`]: packet buffers with headroom and metadata, in
//!   fixed-size pools with per-core caches (see [`mbuf`] for how DPDK's own buffers
//!   reach the stack without a copy);
//! * [`Port`], [`RxQueue`], [`TxQueue`]: the device model — a port configured from
//!   a control thread, queue handles owned by one core each, burst I/O;
//! * [`open`]: ports from spec strings (`ring:a?peer=b`, `null`, with impairment
//!   options on any of them), one registry with errors that name what was wrong;
//! * drivers: [`drivers::ring`] (in-memory wires) and [`drivers::null`], the
//!   kernel's [`drivers::tap`] and [`drivers::af_packet`], [`drivers::virtio_user`]
//!   (virtio-net over vhost-user, zero copy from a shared pool, no DPDK), and with
//!   the `dpdk` feature `drivers::dpdk` (DPDK ethdevs: NICs and vdevs, zero copy);
//! * [`rss`]: the Toeplitz hash and redirection table, for drivers that steer
//!   in software and for a stack that picks ports by where replies land;
//! * [`impair`]: seeded loss, duplication, reordering, corruption, delay and rate
//!   shaping as a decorator over any port;
//! * [`runtime`]: one pinned thread per core running a poll loop, with a control
//!   channel for stop and stats, clean stop on SIGINT/SIGTERM, and busy/idle
//!   cycle accounting.
//!
//! The `testpmd` tool (forwarding engines, the conformance checklist and the
//! binary) is its own crate, `tools/testpmd`, built on this one.
//!
//! `unsafe` in this crate is confined to buffer memory ([`mbuf`], [`mempool`]),
//! the SPSC ring ([`spsc`]) and the drivers (system calls, shared ring memory,
//! DPDK); each block states why it is sound.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod checksum;
pub mod clock;
pub mod drivers;
mod error;
pub mod impair;
pub mod mbuf;
pub mod mempool;
pub mod pcap;
pub mod port;
pub mod registry;
pub mod rss;
pub mod runtime;
pub mod spec;
pub mod spsc;

pub use clock::{Clock, MonotonicClock, VirtualClock};
pub use error::PmdError;
pub use mbuf::{Mbuf, MbufMeta, PacketType, RxFlags, TxFlags};
pub use mempool::{free_bulk, Mempool, MempoolConfig};
pub use port::{
    downcast_rx, downcast_tx, Link, MacAddr, Port, PortConfig, PortInfo, PortStats, QueueAny, Received, RssConfig,
    RxOffloads, RxQueue, TxOffloads, TxQueue,
};
pub use registry::{open, open_with};
pub use spec::{OpenEnv, Spec};

/// Default burst size of poll loops (as DPDK's `MAX_PKT_BURST`).
pub const DEFAULT_BURST: usize = 32;
