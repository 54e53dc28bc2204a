//! Per-core TCP/IP stack.
//!
//! So far: [`wire`] (zero-copy views and parsed representations of the
//! Ethernet, VLAN, ARP, IPv4, IPv6, ICMPv4, ICMPv6/NDP, UDP and TCP wire
//! formats, with drop reasons) and [`checksum`] (the Internet checksum and its
//! incremental update). Neither depends on `pmd`: they work over any
//! `AsRef<[u8]>` / `AsMut<[u8]>`, so they run directly over packet buffers.
//!
//! [`tcp`] holds the sans-IO TCP core: a connection state machine fed segments
//! and the time, returning segments to send, timeouts and events.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checksum;
pub mod tcp;
pub mod wire;
