//! Per-core TCP/IP stack.
//!
//! * [`wire`]: zero-copy views and parsed representations of the Ethernet, VLAN,
//!   ARP, IPv4, IPv6, ICMPv4, ICMPv6/NDP, UDP and TCP wire formats, with drop
//!   reasons; [`checksum`]: the Internet checksum and its incremental update.
//!   Neither depends on `pmd`: they work over any `AsRef<[u8]>`.
//! * [`Stack`] ([`iface`]): one instance per core over one pmd queue pair —
//!   addresses, routes, the ARP/NDP [`neighbor`] cache, ICMP echo and errors,
//!   IPv4 and IPv6 [`reassembly`], UDP sockets — configured by an explicit
//!   [`StackConfig`](config::StackConfig), with every drop counted ([`stats`]).
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

pub mod checksum;
pub mod config;
pub mod copy;
pub mod error;
pub mod iface;
pub mod neighbor;
pub mod reassembly;
pub mod stats;
pub mod tcp;
pub mod timer;
pub mod wire;

pub use config::{IcmpConfig, NeighborConfig, ReassemblyConfig, StackConfig, UdpConfig};
pub use error::StackError;
pub use iface::{EchoHandle, EchoReply, Stack, TcpHandle, TcpListenerHandle, TcpSocketError, UdpDatagram, UdpHandle};
pub use stats::Stats;
pub use tcp::{
    CongestionControl, Keepalive, ListenConfig, ListenerStats, RtoConfig, State as TcpState, SynCookies, TcpConfig,
};
