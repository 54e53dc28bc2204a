//! Counters of one stack instance: plain `u64`s owned by the core that runs it
//! (no atomics; a control thread asks the core for a copy).
//!
//! Three kinds:
//! * [`Stats::malformed`]: frames dropped because they failed to parse, indexed by
//!   the [`wire::Error`](crate::wire::Error) drop reason;
//! * [`Drops`]: well-formed frames or packets dropped for another reason, one
//!   counter per reason (reassembly has one per way a fragment can be dropped);
//! * [`Events`]: what the stack did (requests answered, messages sent).

use crate::wire::Error;

macro_rules! counters {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $f:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fm])* pub $f: u64,)*
        }

        impl $name {
            /// Every counter as (name, value), in declaration order.
            pub fn pairs(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($f), self.$f)),*]
            }

            /// Sum of all counters.
            pub fn total(&self) -> u64 {
                0 $(+ self.$f)*
            }
        }
    };
}

counters!(
    /// Packets dropped for a reason other than being malformed.
    Drops {
        /// Unicast frame for another MAC, or IP packet for an address not ours.
        not_for_us,
        /// VLAN-tagged frame (this interface is untagged).
        vlan_tagged,
        /// EtherType other than ARP, IPv4, IPv6.
        unknown_ethertype,
        /// IP protocol / next header the stack does not serve.
        unknown_protocol,
        /// A NIC marked the IPv4 header checksum bad.
        nic_ip_checksum_bad,
        /// A NIC marked the L4 checksum bad.
        nic_l4_checksum_bad,
        /// Source address is multicast, broadcast, or one of ours (martian).
        bad_source,
        /// NDP message with hop limit other than 255 (RFC 4861 §7.1.1).
        ndp_hop_limit,
        /// Tunnelled packet (decapsulation on) whose inner packet is cut short.
        decap_malformed,
        /// Tunnelled packet whose inner packet is a tunnel again (one level only).
        decap_nested,
        /// IPv6 fragment inside a reassembled packet (nested fragmentation).
        ipv6_fragment,
        /// IPv6 packet holding a Hop-by-Hop or Destination option we do not
        /// recognize whose type says to discard it (RFC 8200 §4.2; a
        /// Parameter Problem may have been sent).
        ipv6_unrecognized_option,
        /// IP packet larger than the MTU.
        over_mtu,
        /// UDP datagram to a port with no socket (an unreachable may be sent).
        udp_no_socket,
        /// UDP datagram dropped because the socket's receive queue was full.
        udp_queue_full,
        /// Packet dropped: its neighbour's pending queue was full.
        neighbor_pending_full,
        /// Packet dropped: its neighbour never answered.
        neighbor_unresolved,
        /// Packet dropped: the neighbour cache was full of unresolved entries.
        neighbor_cache_full,
        /// No route to the destination.
        no_route,
        /// Frame dropped because the transmit backlog was full.
        tx_backlog_full,
        /// A buffer could not be allocated.
        no_buffers,
        /// Fragment dropped: reassembly is disabled (`max_datagrams` 0).
        reasm_disabled,
        /// Datagram dropped: not complete within `reassembly.timeout`.
        reasm_timeout,
        /// Fragment dropped: `reassembly.max_bytes` would be exceeded.
        reasm_memory,
        /// Fragment dropped: `reassembly.max_datagrams` in progress already.
        reasm_count,
        /// Datagram dropped: fragments overlap (RFC 5722 practice, for IPv4 too).
        reasm_overlap,
        /// Fragment dropped: exact duplicate of one already held.
        reasm_duplicate,
        /// Datagram dropped: it would exceed 65535 bytes or the buffer size.
        reasm_too_big,
        /// Fragment dropped: a non-last fragment whose length is not a multiple
        /// of 8, an empty fragment, or a second, different last fragment.
        reasm_bad_fragment,
        /// Datagram dropped: no buffer to reassemble into.
        reasm_no_buffers,
        /// IPv6 fragment dropped: reassembly is disabled (`reassembly_v6.max_datagrams` 0).
        reasm6_disabled,
        /// IPv6 packet dropped: not complete within `reassembly_v6.timeout`.
        reasm6_timeout,
        /// IPv6 fragment dropped: `reassembly_v6.max_bytes` would be exceeded.
        reasm6_memory,
        /// IPv6 fragment dropped: `reassembly_v6.max_datagrams` in progress already.
        reasm6_count,
        /// IPv6 packet dropped: fragments overlap (RFC 5722).
        reasm6_overlap,
        /// IPv6 fragment dropped: exact duplicate of one already held.
        reasm6_duplicate,
        /// IPv6 packet dropped: its Payload Length would exceed 65535 or a buffer.
        reasm6_too_big,
        /// IPv6 fragment dropped: a non-last fragment whose length is not a
        /// multiple of 8, an empty fragment, or a second, different last one.
        reasm6_bad_fragment,
        /// IPv6 packet dropped: no buffer to reassemble into.
        reasm6_no_buffers,
        /// TCP segment for no connection or listener (answered with RST).
        tcp_no_socket,
        /// TCP connection refused or reset: `tcp_max_connections` reached.
        tcp_connection_limit,
    }
);

counters!(
    /// What the stack did.
    Events {
        /// Frames received.
        rx_frames,
        /// Frames sent (handed to the transmit queue).
        tx_frames,
        /// ARP requests for our addresses answered.
        arp_replies_sent,
        /// ARP requests sent (resolution and retries).
        arp_requests_sent,
        /// Gratuitous ARP announcements sent.
        arp_announcements_sent,
        /// Neighbour solicitations for our addresses answered.
        ndp_adverts_sent,
        /// Neighbour solicitations sent (resolution and retries).
        ndp_solicits_sent,
        /// Unsolicited neighbour advertisements sent.
        ndp_announcements_sent,
        /// Neighbours resolved.
        neighbors_resolved,
        /// Echo replies sent (v4 and v6).
        echo_replies_sent,
        /// Echo replies received (v4 and v6).
        echo_replies_received,
        /// Echo requests sent.
        echo_requests_sent,
        /// ICMP/ICMPv6 destination unreachable sent.
        unreachables_sent,
        /// ICMPv6 Parameter Problems sent (unrecognized options).
        param_problems_sent,
        /// ICMP errors not sent because of the rate limit.
        icmp_rate_limited,
        /// ICMP/ICMPv6 messages received and not otherwise handled.
        icmp_other_received,
        /// Tunnelled packets taken apart (IPIP, GUE).
        decapsulated,
        /// IPv4 datagrams reassembled.
        reassembled,
        /// IPv6 packets reassembled.
        reassembled_v6,
        /// UDP datagrams delivered to sockets.
        udp_delivered,
        /// UDP datagrams sent.
        udp_sent,
        /// TCP segments received (well-formed).
        tcp_segments_received,
        /// TCP segments sent.
        tcp_segments_sent,
        /// TCP resets sent for segments of no connection.
        tcp_resets_sent,
        /// TCP active opens.
        tcp_connects,
        /// TCP connections accepted by the application.
        tcp_accepted,
        /// TCP payloads copied rather than kept in their mbufs because the
        /// stack held `tcp_rx_mbufs` received buffers already.
        tcp_rx_mbuf_limit,
        /// Bytes copied because the API asked for a copy (send from a slice,
        /// reassembly, ICMP error quotes): the zero-copy paths do not count here.
        bytes_copied,
        /// Frames received for a flow this core does not own whose RSS hash
        /// also names another queue: the port did not steer by our RSS
        /// ([`crate::cores`]; 0 with exact steering).
        rss_misdirected,
        /// Frames handed to the core that owns their flow.
        frames_handed_off,
        /// Frames another core handed to this one.
        frames_handed_in,
        /// Neighbours learned from the wire and broadcast to the other cores.
        neighbor_broadcasts,
        /// Neighbours installed from another core's broadcast.
        neighbor_broadcasts_received,
        /// First neighbour requests not sent because another core was
        /// already resolving the address.
        neighbor_requests_deferred,
    }
);

/// All counters of one stack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames dropped because they failed to parse, by [`Error::index`].
    pub malformed: [u64; Error::COUNT],
    /// Other drops, by reason.
    pub drops: Drops,
    /// What the stack did.
    pub events: Events,
}

impl Stats {
    /// Counts a malformed frame.
    #[inline]
    pub fn malformed(&mut self, e: Error) {
        self.malformed[e.index()] += 1;
    }

    /// Malformed frames of one reason.
    pub fn malformed_count(&self, e: Error) -> u64 {
        self.malformed[e.index()]
    }

    /// Every counter as (name, value): `malformed.<reason>`, `drop.<reason>`,
    /// and the event names.
    pub fn pairs(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> =
            Error::ALL.iter().map(|e| (format!("malformed.{}", e.name()), self.malformed[e.index()])).collect();
        v.extend(self.drops.pairs().into_iter().map(|(k, n)| (format!("drop.{k}"), n)));
        v.extend(self.events.pairs().into_iter().map(|(k, n)| (k.to_string(), n)));
        v
    }

    /// Total frames dropped as malformed.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.iter().sum()
    }
}
