//! What a port can do to frames besides moving them: checksum, segmentation
//! and RSS offloads, named like DPDK's `RTE_ETH_{RX,TX}_OFFLOAD_*` and
//! `RTE_ETH_RSS_*` flags.

use bitflags::bitflags;

bitflags! {
    /// Receive offloads a port can perform (like `RTE_ETH_RX_OFFLOAD_*`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct RxOffloads: u32 {
        /// IPv4 header checksum verification.
        const IPV4_CKSUM = 1 << 0;
        /// UDP checksum verification.
        const UDP_CKSUM = 1 << 1;
        /// TCP checksum verification.
        const TCP_CKSUM = 1 << 2;
        /// RSS hash delivered in the mbuf.
        const RSS_HASH = 1 << 3;
        /// VLAN tag stripping.
        const VLAN_STRIP = 1 << 4;
        /// TCP large receive offload (coalescing).
        const TCP_LRO = 1 << 5;
        /// Frames larger than one buffer (multi-segment receive).
        const SCATTER = 1 << 6;
    }
}

bitflags! {
    /// Transmit offloads a port can perform (like `RTE_ETH_TX_OFFLOAD_*`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct TxOffloads: u32 {
        /// IPv4 header checksum insertion.
        const IPV4_CKSUM = 1 << 0;
        /// UDP checksum insertion.
        const UDP_CKSUM = 1 << 1;
        /// TCP checksum insertion.
        const TCP_CKSUM = 1 << 2;
        /// TCP segmentation offload.
        const TCP_TSO = 1 << 3;
        /// UDP segmentation offload.
        const UDP_TSO = 1 << 4;
        /// VLAN tag insertion.
        const VLAN_INSERT = 1 << 5;
        /// Multi-segment transmit.
        const MULTI_SEGS = 1 << 6;
    }
}

bitflags! {
    /// Which headers an RSS hash covers.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct RssHashTypes: u32 {
        /// IPv4 addresses.
        const IPV4 = 1 << 0;
        /// IPv4 addresses and TCP ports.
        const IPV4_TCP = 1 << 1;
        /// IPv4 addresses and UDP ports.
        const IPV4_UDP = 1 << 2;
        /// IPv6 addresses.
        const IPV6 = 1 << 3;
        /// IPv6 addresses and TCP ports.
        const IPV6_TCP = 1 << 4;
        /// IPv6 addresses and UDP ports.
        const IPV6_UDP = 1 << 5;
    }
}

/// What a port can do for RSS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RssCapabilities {
    /// Hash key length in bytes.
    pub key_len: usize,
    /// Redirection table size.
    pub reta_size: usize,
    /// Hash types supported.
    pub hash_types: RssHashTypes,
}

/// Requested RSS configuration: the key and the redirection table are explicit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RssConfig {
    /// Toeplitz key.
    pub key: Vec<u8>,
    /// Hash types to use.
    pub hash_types: RssHashTypes,
    /// Redirection table: entry `hash % len` names the receive queue.
    pub reta: Vec<u16>,
}
