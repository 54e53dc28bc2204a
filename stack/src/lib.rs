//! Per-core TCP/IP stack.
//!
//! * [`wire`]: zero-copy views and parsed representations of the Ethernet, VLAN,
//!   ARP, IPv4, IPv6, ICMPv4, ICMPv6/NDP, UDP and TCP wire formats, with drop
//!   reasons, over any `AsRef<[u8]>`; [`checksum`] (pmd's one Internet
//!   checksum, RFC 1071/1624, re-exported) and `wire::MacAddr` (pmd's MAC type)
//!   are the only things they take from the layer below.
//! * [`Stack`] ([`iface`]): one sans-IO instance per core — frames and the
//!   time in ([`Stack::input`], [`Stack::poll_timers`]), frames out
//!   ([`Stack::output`]) — with addresses, routes, the ARP/NDP [`neighbor`]
//!   cache, ICMP echo and errors, IPv4 and IPv6 [`reassembly`], configured by
//!   an explicit [`StackConfig`], with every drop counted
//!   ([`stats`]). One file per protocol: `iface/ethernet.rs` (Ethernet, **ARP
//!   reply**, announcements), `iface/ipv4.rs`, `iface/ipv6.rs` (with NDP),
//!   `iface/icmp.rs` (errors, rate limit), `iface/route.rs` (routes, source
//!   selection, IP emit, neighbour output).
//! * [`cores`]: several stacks on one multi-queue port — which core owns a
//!   flow (RSS), connect's port choice, neighbour broadcasts and frame
//!   hand-off between cores ([`Steering`], [`CoreLink`]).
//! * [`Driver`] ([`driver`]): a `Stack` polled from one pmd rx/tx queue pair
//!   and a clock (the per-core loop).
//! * [`socket`]: the sockets over the stack — [`socket::udp`],
//!   [`socket::echo`] (ping), [`socket::tcp`] (handles, the connection table,
//!   the **TCP listen backlog**'s accept queue, readiness tokens).
//! * [`profiles`]: the named [`StackConfig`] profiles of the tests, benchmarks
//!   and fuzzer (no configuration is a hidden default).
//! * [`copy`]: the data path's byte copies, kept off the 4K-aliasing slow path
//!   of the CPU's block copy, and the send buffer's byte ring.
//! * [`timer`]: the per-core hierarchical timer wheel (TCP reuses it).
//! * [`tcp`]: the sans-IO TCP core — a connection state machine fed segments and
//!   the time, returning segments to send, timeouts and events — and the
//!   listener (explicit backlogs, SYN cookies, RFC 6528 ISNs).
//!
//! No global state: everything lives in the instance. No `unsafe`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use pmd::checksum;
pub mod config;
pub mod copy;
pub mod cores;
pub mod driver;
pub mod error;
pub mod iface;
pub mod neighbor;
pub mod profiles;
pub mod reassembly;
pub mod socket;
pub mod stats;
pub mod tcp;
pub mod timer;
pub mod wire;

pub use config::{IcmpConfig, NeighborConfig, ReassemblyConfig, StackConfig, UdpConfig};
pub use cores::{CoreDest, CoreLink, CoreMsg, Delivery, Steering};
pub use driver::{Driver, DynDriver};
pub use error::{ConfigError, StackError};
pub use iface::decap::DecapConfig;
pub use iface::Stack;
pub use socket::echo::{EchoHandle, EchoReply};
pub use socket::tcp::{TcpHandle, TcpListenerHandle, TcpSocketError};
pub use socket::udp::{UdpDatagram, UdpHandle};
pub use stats::Stats;
pub use tcp::{
    CongestionControl, Keepalive, ListenConfig, ListenerStats, RtoConfig, State as TcpState, SynCookies, TcpConfig,
};
