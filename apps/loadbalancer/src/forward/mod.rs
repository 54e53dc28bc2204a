//! Forwarding mode: `lb` as a Maglev/Katran-class L4 packet balancer.
//!
//! A `[forward.NAME]` frontend does not terminate TCP: per packet, the
//! per-core flow table (else Maglev) picks a server and the packet goes to it
//! with its destination MAC rewritten (L2 DSR, LVS-DR) or inside an outer
//! IP (IPIP, IP6IP6) or IP+UDP (GUE) header written in the buffer's
//! headroom; the server answers the client directly.
//!
//! Rooms: [`config`] (the `[forward.NAME]` keys, checked), [`flow_table`]
//! (fixed-size, set-associative LRU, per core), [`packet`] (reading a frame:
//! Ethernet, IPv4/IPv6, ports, quoted packets of ICMP too-big), [`encap`]
//! (the in-place rewrite and encapsulation, checksums), [`icmp`] (the
//! too-big error sent back to a client), [`forwarder`] (the
//! per-core verdicts: flow table, Maglev, ICMP, fragments, options,
//! counters).
//!
//! **Who answers ARP/ND for the VIP.** The forwarder owns the VIP on its
//! port, so the VIP must be resolvable. We chose to *pass* everything that is
//! not a VIP's TCP/UDP flow (ARP, NDP, ICMP echo to the VIP or to us, traffic
//! to other ports) to a small `stack::Stack` on the same port, which holds
//! the VIPs (and the port's own address) as local addresses: it already
//! implements ARP, NDP (RFC 4861, with DAD and unsolicited advertisements)
//! and ICMP correctly and is tested; forwarded VIP traffic never reaches it,
//! so its cost on the fast path is one branch. The alternative, answering
//! ARP/NS inside the forwarder, would duplicate that code for a path that
//! carries a handful of packets per second. The forwarder's [`Verdict::Pass`]
//! is that hand-off.
//!
//! [`Verdict::Pass`]: forwarder::Verdict::Pass

pub mod config;
pub mod core_loop;
pub mod encap;
pub mod flow_table;
pub mod forwarder;
pub mod icmp;
pub mod packet;
pub mod run;
