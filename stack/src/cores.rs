//! Cores: one [`Stack`](crate::Stack) per core on one multi-queue port,
//! shared-nothing, and the little the cores must still tell each other.
//!
//! # Who owns a flow
//! The port spreads received frames over its queues by RSS: queue
//! `reta[toeplitz(src, dst, ports) % len]` ([`pmd::rss`]); core *i* polls
//! queue *i*. A flow is **owned** by the core its packets from the peer
//! reach, so [`Steering::owner`] is that RSS computation, from this host's
//! side: the hash of (remote → local). Two exceptions:
//! - **UDP to one of our ephemeral ports**: an unconnected UDP socket's port is
//!   bound before the remote is known, so the hash cannot be chosen; the
//!   ephemeral range is instead **partitioned per core**
//!   (`(port - 49152) % count`), a socket binds only ports of its core's
//!   share, and a datagram to such a port is owned by the partition's core.
//! - **ICMP errors** (unreachable, time exceeded, PTB, parameter problem)
//!   are hashed by the NIC on their outer addresses, so they reach an
//!   arbitrary core; they are owned by the core owning the flow of the
//!   packet they quote (its reply direction).
//! - **IP fragments** hash on their addresses only (ports are in the first
//!   fragment alone), so every fragment of a datagram reaches the core of its
//!   2-tuple, which reassembles it and then hands the whole packet to the
//!   owner of its flow.
//!
//! A frame that reaches a core that does not own it is handed to the owner
//! ([`CoreMsg::Frame`]) and counted: `frames_handed_off` always,
//! `rss_misdirected` when the port broke its own RSS contract (the frame's
//! hash names another queue; with an exact-steering port this stays 0).
//! Non-IP frames (ARP) and NDP are handled where they land, and what they
//! teach is broadcast.
//!
//! # How connect picks its port (Seastar's `tcp.hh` loop)
//! An active open knows the remote, so it searches the ephemeral ports (and,
//! when the hash covers only addresses, this interface's addresses of the
//! family) for a local endpoint whose reply hashes to the calling core. With
//! a 4-tuple hash about 1 port in `count` qualifies, so the search is short.
//! The ports a core can use towards a remote are exactly those whose hash
//! lands on it: a partition of the ephemeral range per (remote, core) that
//! no two cores share, so TCP needs no static split (a static split as well
//! would leave each core 1/count² of the range). Each core starts its
//! search at its own offset.
//!
//! # Neighbour state
//! ARP replies carry no ports and hash to `reta[0]`'s core; NDP to the
//! 2-tuple's. What one core learns from the wire it broadcasts
//! ([`CoreMsg::Neighbor`]) to every other core, which install it without
//! answering or rebroadcasting. Resolution itself has one **resolver**, the
//! core of `reta[0]` (where ARP replies land): another core that needs an
//! address queues its packets, arms its retry timer, and asks the resolver
//! ([`CoreMsg::Resolve`]) instead of sending a request of its own; the
//! resolver sends the one request (none if it has the answer: it
//! broadcasts that), and the broadcast of the reply releases every core's
//! packets. Only if a core's retry timer fires first does it send a request
//! itself, so a lost message costs one retry interval, never the
//! connection. (Cores deciding on their own, with a "resolving" note, race:
//! all of them can decide in the same poll round before any note arrives.)
//! The messages travel over crossbeam channels that the per-core loop
//! drains once per poll ([`CoreLink::exchange`]): a channel poll is an
//! atomic load when empty, and no lock or shared table is on the data
//! path.
//!
//! # Drivers
//! Per driver, how frames reach their owner:
//! - `ring?rss=1`: the sender hashes each frame with the receiver's RSS
//!   (exact, [`Delivery::Exact`]).
//! - `dpdk`: hardware RSS with our key and table (exact); a vdev without RSS
//!   gets software dispatch (below).
//! - `af_packet?queues=N`: the fanout group runs our Toeplitz hash and table
//!   as a classic BPF program (`PACKET_FANOUT_CBPF`, `pmd`'s `fanout_bpf`):
//!   exact, with no BPF toolchain and no CAP_BPF (classic BPF, unrolled: a
//!   test and a constant XOR per input bit).
//! - `tap?queues=N`: the TAP takes an eBPF steering program
//!   (`TUNSETSTEERINGEBPF`), which `pmd`'s `tap_bpf` emits as instructions
//!   (no toolchain) computing the same hash and table: exact. Loading it
//!   needs CAP_BPF (root has it).
//! - ports without RSS (virtio-user, DPDK vdevs without it, or `tap` /
//!   `af_packet` with `rss=0`, spread by the kernel's own hash): **software
//!   dispatch** ([`Delivery::Dispatch`], Seastar's approach when a NIC cannot
//!   steer): each core runs the ownership test on what it receives and hands
//!   foreign frames to their owner over the channel — exact by construction,
//!   at one channel hop for each frame spread wrongly (counted:
//!   `rss_misdirected`, `frames_handed_off`).
//!
//! A port that offers RSS ([`pmd::PortInfo::rss`]) is configured with it and
//! steers exactly; one that does not gets dispatch (`flow`'s runtime decides).
//!
//! # Limits
//! - One 802.1Q tag is skipped by `pmd::rss`, none by the BPF programs (the
//!   kernel's TAP and AF_PACKET paths here are untagged).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use pmd::rss::{frame_flow, packet_flow, Rss, L4};
use pmd::{MacAddr, Mbuf, RssConfig};

use crate::error::ConfigError;

/// First port of the ephemeral range (RFC 6335).
pub const EPHEMERAL_FIRST: u16 = 49152;
/// Ports in the ephemeral range.
pub const EPHEMERAL_LEN: u32 = 65536 - EPHEMERAL_FIRST as u32;

/// How the port delivers frames to this core's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// By our RSS: every frame on the queue its hash names (`ring?rss=1`,
    /// DPDK hardware RSS).
    Exact,
    /// By some other spread (TAP queues, AF_PACKET fanout): foreign frames
    /// are expected and handed to their owner.
    Dispatch,
}

/// Which core this stack is and how the port spreads flows over the cores.
#[derive(Clone, Debug)]
pub struct Steering {
    index: u16,
    count: u16,
    rss: Arc<Rss>,
    delivery: Delivery,
}

impl Steering {
    /// Core `index` of `count`, on a port configured with `rss` (whose
    /// table must name queues below `count`). Errors name the field.
    pub fn new(index: u16, count: u16, rss: &RssConfig, delivery: Delivery) -> Result<Steering, ConfigError> {
        if count == 0 || index >= count {
            return Err(ConfigError::invalid("cores.index", format!("core {index} of {count}")));
        }
        if let Some(q) = rss.reta.iter().find(|&&q| q >= count) {
            return Err(ConfigError::invalid("rss.reta", format!("names queue {q}, but there are {count} cores")));
        }
        let rss = Rss::new(rss).map_err(|e| ConfigError::invalid("rss", e.to_string()))?;
        Ok(Steering { index, count, rss: Arc::new(rss), delivery })
    }

    /// This core's position (its queue).
    pub fn index(&self) -> u16 {
        self.index
    }

    /// How many cores share the port.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// The port's RSS.
    pub fn rss(&self) -> &Rss {
        &self.rss
    }

    /// How the port delivers.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// The core that resolves neighbours: `reta[0]`'s, where the port
    /// delivers ARP.
    pub fn resolver(&self) -> u16 {
        self.rss.reta()[0]
    }

    /// The core whose share of the ephemeral range holds `port` (UDP).
    pub fn ephemeral_partition(&self, port: u16) -> u16 {
        port.saturating_sub(EPHEMERAL_FIRST) % self.count
    }

    /// Where this core starts its ephemeral port searches.
    pub fn ephemeral_start(&self) -> u16 {
        let share = EPHEMERAL_LEN / self.count as u32;
        // The first port of this core's UDP share at or after its offset.
        let p = EPHEMERAL_FIRST as u32 + self.index as u32 * share;
        let p = p - (p - EPHEMERAL_FIRST as u32) % self.count as u32 + self.index as u32;
        p.min(65535) as u16
    }

    /// The core that owns the flow between `local` (ours) and `remote`.
    pub fn owner(&self, l4: L4, local: SocketAddr, remote: SocketAddr) -> u16 {
        if l4 == L4::Udp && local.port() >= EPHEMERAL_FIRST {
            return self.ephemeral_partition(local.port());
        }
        self.rss.queue_of_hash(self.rss.hash_flow(remote, local, l4).unwrap_or(0))
    }

    /// Whether this core owns the flow.
    pub fn owns(&self, l4: L4, local: SocketAddr, remote: SocketAddr) -> bool {
        self.owner(l4, local, remote) == self.index
    }

    /// Who owns a received frame: `None` for frames any core handles (not
    /// IP, NDP); else the owner and whether the port misdirected it (its
    /// RSS hash names another queue than ours).
    pub(crate) fn frame_owner(&self, frame: &[u8]) -> Option<(u16, bool)> {
        let f = frame_flow(frame)?;
        let icmp_type = |at: usize| frame.get(at).copied();
        let quote = match (f.v6, f.proto) {
            (false, 1) => matches!(icmp_type(f.l4_offset)?, 3 | 11 | 12),
            (true, 58) => match icmp_type(f.l4_offset)? {
                1..=4 => true,
                // NDP: handled where it lands, learning broadcast.
                133..=137 => return None,
                _ => false,
            },
            _ => false,
        };
        if quote {
            // The quoted packet is one we sent: its source is ours.
            let inner = packet_flow(frame.get(f.l4_offset + 8..)?, f.v6)?;
            return Some((self.owner(inner.l4, inner.src, inner.dst), false));
        }
        // One hash: the port's queue, which is the owner except for UDP to
        // an ephemeral port (owned by its share of the range).
        let nic_queue = self.rss.queue_of_hash(self.rss.hash_flow(f.src, f.dst, f.l4).unwrap_or(0));
        let owner = if f.l4 == L4::Udp && f.dst.port() >= EPHEMERAL_FIRST {
            self.ephemeral_partition(f.dst.port())
        } else {
            nic_queue
        };
        Some((owner, owner != self.index && nic_queue != self.index))
    }
}

/// What one core tells another.
#[derive(Debug)]
pub enum CoreMsg {
    /// A neighbour learned from the wire.
    Neighbor {
        /// Its address.
        ip: IpAddr,
        /// Its MAC.
        mac: MacAddr,
    },
    /// To the resolver: resolve this address (or broadcast it if known).
    Resolve {
        /// The address.
        ip: IpAddr,
    },
    /// A frame for a flow the receiver owns.
    Frame(Mbuf),
}

/// Where a [`CoreMsg`] goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoreDest {
    /// Every other core.
    All,
    /// One core.
    Core(u16),
}

/// One core's ends of the channels between the cores of a port.
pub struct CoreLink {
    index: u16,
    to: Vec<crossbeam_channel::Sender<CoreMsg>>,
    from: crossbeam_channel::Receiver<CoreMsg>,
}

impl CoreLink {
    /// The links of `count` cores, fully connected (unbounded channels:
    /// messages are rare, and a handed-off frame must not be lost to a full
    /// channel any more than to a full ring — the pool bounds them).
    pub fn mesh(count: u16) -> Vec<CoreLink> {
        let (tx, rx): (Vec<_>, Vec<_>) = (0..count).map(|_| crossbeam_channel::unbounded()).unzip();
        rx.into_iter().enumerate().map(|(i, from)| CoreLink { index: i as u16, to: tx.clone(), from }).collect()
    }

    /// This link's core.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// Sends what `stack` has for other cores, then feeds it what they sent.
    /// Returns the messages received.
    pub fn exchange(&self, stack: &mut crate::Stack, now_ns: u64) -> usize {
        for (dest, msg) in stack.core_out.drain(..) {
            match (dest, msg) {
                (CoreDest::Core(c), msg) => {
                    if let Some(tx) = self.to.get(c as usize) {
                        // A closed channel means the core has stopped: drop.
                        let _ = tx.send(msg);
                    }
                }
                (CoreDest::All, CoreMsg::Neighbor { ip, mac }) => {
                    for (c, tx) in self.to.iter().enumerate() {
                        if c != self.index as usize {
                            let _ = tx.send(CoreMsg::Neighbor { ip, mac });
                        }
                    }
                }
                // Frames and resolve requests go to one core, never to all.
                (CoreDest::All, msg) => drop(msg),
            }
        }
        let mut n = 0;
        while let Ok(msg) = self.from.try_recv() {
            stack.core_input(now_ns, msg);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmd::rss::{MICROSOFT_KEY, SYMMETRIC_KEY};

    fn steering(index: u16, count: u16) -> Steering {
        Steering::new(index, count, &RssConfig::spread(&MICROSOFT_KEY, count), Delivery::Exact).unwrap()
    }

    #[test]
    fn every_flow_has_exactly_one_owner_and_it_is_the_queue_its_reply_hashes_to() {
        let cores: Vec<_> = (0..4).map(|i| steering(i, 4)).collect();
        let remote: SocketAddr = "198.18.1.1:80".parse().unwrap();
        for p in 49152..49352u16 {
            let local = SocketAddr::new("198.18.0.1".parse().unwrap(), p);
            let owners: Vec<_> = cores.iter().filter(|s| s.owns(L4::Tcp, local, remote)).collect();
            assert_eq!(owners.len(), 1);
            let rss = owners[0].rss();
            assert_eq!(rss.queue_of_hash(rss.hash_flow(remote, local, L4::Tcp).unwrap()), owners[0].index());
        }
    }

    #[test]
    fn udp_ephemeral_ports_are_split_between_cores_and_each_start_is_in_its_share() {
        for count in [1u16, 2, 3, 4, 8] {
            for i in 0..count {
                let s = steering(i, count);
                assert_eq!(s.ephemeral_partition(s.ephemeral_start()), i, "core {i} of {count}");
            }
        }
    }

    #[test]
    fn a_table_naming_a_missing_core_or_a_bad_index_is_refused_naming_the_field() {
        let e = Steering::new(0, 2, &RssConfig::spread(&SYMMETRIC_KEY, 4), Delivery::Exact).unwrap_err();
        assert!(e.to_string().contains("'rss.reta'"), "{e}");
        let e = Steering::new(2, 2, &RssConfig::spread(&SYMMETRIC_KEY, 2), Delivery::Exact).unwrap_err();
        assert!(e.to_string().contains("'cores.index'"), "{e}");
    }

    /// Ethernet + IPv4 ICMP destination unreachable quoting a TCP segment
    /// we sent from `local` to `remote` (RFC 792).
    fn icmp_error_quoting(local: SocketAddr, remote: SocketAddr) -> Vec<u8> {
        let (IpAddr::V4(l), IpAddr::V4(r)) = (local.ip(), remote.ip()) else { unreachable!() };
        let mut f = vec![0u8; 14 + 20 + 8 + 20 + 8];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[23] = 1;
        f[26..30].copy_from_slice(&[198, 18, 9, 9]); // a router
        f[30..34].copy_from_slice(&l.octets());
        f[34] = 3; // destination unreachable
        let q = 42;
        f[q] = 0x45;
        f[q + 9] = 6;
        f[q + 12..q + 16].copy_from_slice(&l.octets());
        f[q + 16..q + 20].copy_from_slice(&r.octets());
        f[q + 20..q + 22].copy_from_slice(&local.port().to_be_bytes());
        f[q + 22..q + 24].copy_from_slice(&remote.port().to_be_bytes());
        f
    }

    #[test]
    fn an_icmp_error_is_owned_by_the_core_owning_the_flow_it_quotes_rfc_792() {
        let s = steering(0, 4);
        let remote: SocketAddr = "198.19.0.7:443".parse().unwrap();
        let mut owners = std::collections::HashSet::new();
        for p in 50000..50040u16 {
            let local = SocketAddr::new("198.18.0.1".parse().unwrap(), p);
            let (owner, misdirected) = s.frame_owner(&icmp_error_quoting(local, remote)).unwrap();
            assert_eq!(owner, s.owner(L4::Tcp, local, remote));
            assert!(!misdirected, "an ICMP error on the wrong core is expected, not the port's fault");
            owners.insert(owner);
        }
        assert_eq!(owners.len(), 4, "the quoted flows, not the outer header, decide");
        // ARP: any core; a truncated quote: no owner, no panic.
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(s.frame_owner(&arp), None);
        let f = icmp_error_quoting("198.18.0.1:50000".parse().unwrap(), remote);
        assert_eq!(s.frame_owner(&f[..50]), None);
    }
}
