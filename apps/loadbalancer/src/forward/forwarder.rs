//! The per-core forwarder: a burst of frames in, each rewritten in place and
//! sorted into *forward* (to the port's transmit queue), *pass* (to the host
//! stack on the same port: ARP, NDP, ICMP to us, anything not for a VIP) or
//! dropped and counted.
//!
//! Per VIP packet: the flow key (addresses, ports, protocol) is looked up in
//! the VIP's [`FlowTable`]; a hit whose server is up is used as is; a miss,
//! or a hit on a server that is down, takes Maglev's choice (NSDI'16 §3.3:
//! the connection table first, consistent hashing on a miss) and records it.
//! A draining server keeps its flows (it is up) but takes no new ones (its
//! Maglev weight is 0).
//!
//! ICMP "fragmentation needed" / ICMPv6 "packet too big" addressed to a VIP
//! quotes a packet the *server* sent (VIP → client, by DSR); the forwarder
//! swaps the quoted addresses and ports into the client → VIP key, finds the
//! owner (table, else Maglev) and forwards the ICMP message there, so path
//! MTU discovery works through the balancer (GLB, Katran). Other ICMP to a
//! VIP is passed to the host stack (which answers echo for it).
//!
//! Invariants: no allocation and no lock per packet (the vectors passed in
//! keep their capacity; the tables are sized at construction); a malformed
//! frame addressed to a VIP is counted and dropped, one not addressed to a
//! VIP is passed on untouched; control changes (health, weight, drain)
//! rebuild the Maglev table off the packet path and keep the flow table,
//! while a change of the server *list* clears it (indices change meaning).

use std::net::IpAddr;

use pmd::{MacAddr, Mbuf};

use super::config::{Encap, ForwardSpec, FragPolicy, OptionsPolicy};
use super::encap::{self, EncapError, Target};
use super::flow_table::{FlowKey, FlowTable, Inserted};
use super::packet::{self, proto, Parse, Parsed};
use crate::config::{BackendSpec, HashKey};
use crate::maglev::Maglev;

/// What happened to one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Rewritten toward server `server` (index in the backend) of VIP `vip`.
    Forward {
        /// VIP index.
        vip: usize,
        /// Server index.
        server: usize,
    },
    /// For the host stack, untouched.
    Pass,
    /// Too big once encapsulated: rewritten into the ICMP error to the
    /// client (sent on the port; the packet itself counts as dropped).
    TooBigSent {
        /// VIP index.
        vip: usize,
    },
    /// Dropped, and why.
    Drop(DropReason),
}

/// Why a frame was dropped (each has a counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Headers shorter than they claim, on a VIP's address.
    Malformed,
    /// A fragment, and the policy is `drop`.
    Fragment,
    /// IP options / IPv6 extension headers, and the policy is `drop`.
    Options,
    /// No server is up (or every weight is 0).
    NoServer,
    /// Bigger than the MTU once encapsulated.
    TooBig,
    /// Too little headroom to encapsulate.
    NoHeadroom,
}

/// Counters of one VIP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VipCounters {
    /// Packets forwarded.
    pub forwarded: u64,
    /// Bytes forwarded (IP packets, before encapsulation).
    pub bytes: u64,
    /// Flow table hits (server up).
    pub hits: u64,
    /// Flow table misses (Maglev asked, entry inserted).
    pub misses: u64,
    /// Hits on a server that was down: re-picked by Maglev.
    pub rehashed: u64,
    /// Inserts that evicted another flow (LRU).
    pub evictions: u64,
    /// ICMP too-big messages forwarded to a flow's server.
    pub icmp_forwarded: u64,
    /// Fragments forwarded by 2-tuple hash.
    pub fragments_forwarded: u64,
    /// ICMP too-big errors sent to clients (`too_big = "icmp"`).
    pub too_big_sent: u64,
    /// Drops by reason: malformed, fragment, options, no server, too big, no headroom.
    pub dropped: [u64; 6],
    /// Packets per server (backend order).
    pub per_server: Vec<u64>,
}

/// Counters of the whole forwarder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames received.
    pub rx: u64,
    /// Frames passed to the host stack.
    pub passed: u64,
    /// Frames forwarded.
    pub forwarded: u64,
    /// Frames dropped.
    pub dropped: u64,
}

/// A server as the data path sees it.
#[derive(Debug, Clone)]
struct Slot {
    name: String,
    addr: IpAddr,
    mac: MacAddr,
    weight: u32,
    up: bool,
    drain: bool,
}

/// One VIP's state on this core.
#[derive(Debug)]
struct Vip {
    spec: ForwardSpec,
    /// VIP address as a mapped 16-byte key address.
    addr: [u8; 16],
    servers: Vec<Slot>,
    maglev: Option<Maglev>,
    table: FlowTable,
    counters: VipCounters,
}

impl Vip {
    fn rebuild(&mut self) {
        let names: Vec<&str> = self.servers.iter().map(|s| s.name.as_str()).collect();
        let weights: Vec<u32> = self.servers.iter().map(|s| if s.up && !s.drain { s.weight } else { 0 }).collect();
        self.maglev = Maglev::build(self.spec.maglev_size, &names, &weights);
    }

    /// Maglev's server for `key`, hashed as the backend says (no allocation:
    /// the bytes go into a stack buffer, laid out as `maglev::flow_key`).
    fn pick(&self, key: &FlowKey, two_tuple: bool) -> Option<usize> {
        let m = self.maglev.as_ref()?;
        let v4 = self.spec.vip.is_ipv4();
        let alen = if v4 { 4 } else { 16 };
        let addr = |x: &[u8; 16]| -> [u8; 16] {
            let mut o = [0u8; 16];
            o[..alen].copy_from_slice(if v4 { &x[12..] } else { &x[..] });
            o
        };
        let mut b = [0u8; 36];
        b[..alen].copy_from_slice(&addr(&key.src)[..alen]);
        let n = match (self.spec.hash, two_tuple) {
            (HashKey::Source, _) => alen,
            (HashKey::FourTuple, true) => {
                b[alen..2 * alen].copy_from_slice(&addr(&key.dst)[..alen]);
                2 * alen
            }
            (HashKey::FourTuple, false) => {
                b[alen..alen + 2].copy_from_slice(&key.sport.to_be_bytes());
                b[alen + 2..2 * alen + 2].copy_from_slice(&addr(&key.dst)[..alen]);
                b[2 * alen + 2..2 * alen + 4].copy_from_slice(&key.dport.to_be_bytes());
                2 * alen + 4
            }
        };
        Some(m.lookup(&b[..n]))
    }
}

/// The per-core forwarder.
#[derive(Debug)]
pub struct Forwarder {
    mac: MacAddr,
    vips: Vec<Vip>,
    counters: Counters,
}

impl Forwarder {
    /// A forwarder for `specs` (their backends in `backends`), sending from
    /// `mac`. Every server starts up (health checks take them down).
    pub fn new(mac: MacAddr, specs: &[ForwardSpec], backends: &[BackendSpec]) -> Forwarder {
        let vips = specs
            .iter()
            .map(|s| {
                let b = &backends[s.backend];
                let servers = b
                    .servers
                    .iter()
                    .zip(&s.server_macs)
                    .map(|(sv, m)| Slot {
                        name: sv.name.clone(),
                        addr: sv.addr.ip(),
                        mac: *m,
                        weight: sv.weight,
                        up: true,
                        drain: sv.drain,
                    })
                    .collect::<Vec<_>>();
                let addr = match s.vip.ip() {
                    IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
                    IpAddr::V6(a) => a.octets(),
                };
                let mut v = Vip {
                    spec: s.clone(),
                    addr,
                    counters: VipCounters { per_server: vec![0; servers.len()], ..VipCounters::default() },
                    servers,
                    maglev: None,
                    table: FlowTable::new(s.flow_table_size),
                };
                v.rebuild();
                v
            })
            .collect();
        Forwarder { mac, vips, counters: Counters::default() }
    }

    /// Whole-forwarder counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Counters of VIP `vip` (config order).
    pub fn vip_counters(&self, vip: usize) -> &VipCounters {
        &self.vips[vip].counters
    }

    /// Flows in VIP `vip`'s table.
    pub fn flows(&self, vip: usize) -> usize {
        self.vips[vip].table.len()
    }

    /// Marks server `name` of backend `backend` up or down (health); rebuilds
    /// the Maglev tables of the VIPs using it. Flows stay in the tables: a
    /// flow whose server is down is re-picked when its next packet comes.
    pub fn set_up(&mut self, backend: usize, name: &str, up: bool) -> bool {
        self.change(backend, name, |s| s.up = up)
    }

    /// Sets a server's weight (0..=256).
    pub fn set_weight(&mut self, backend: usize, name: &str, weight: u32) -> bool {
        self.change(backend, name, |s| s.weight = weight)
    }

    /// Drains a server: no new flows, its flows stay while it is up.
    pub fn set_drain(&mut self, backend: usize, name: &str, drain: bool) -> bool {
        self.change(backend, name, |s| s.drain = drain)
    }

    fn change(&mut self, backend: usize, name: &str, f: impl Fn(&mut Slot)) -> bool {
        let mut found = false;
        for v in self.vips.iter_mut().filter(|v| v.spec.backend == backend) {
            if let Some(s) = v.servers.iter_mut().find(|s| s.name == name) {
                f(s);
                v.rebuild();
                found = true;
            }
        }
        found
    }

    /// Processes a burst: every frame of `rx` ends in `tx` (rewritten toward
    /// its server), in `pass` (untouched, for the host stack) or dropped.
    /// `rx` is left empty with its capacity.
    pub fn process(&mut self, rx: &mut Vec<Mbuf>, tx: &mut Vec<Mbuf>, pass: &mut Vec<Mbuf>) {
        for mut m in rx.drain(..) {
            match self.one(&mut m) {
                Verdict::Forward { .. } | Verdict::TooBigSent { .. } => tx.push(m),
                Verdict::Pass => pass.push(m),
                Verdict::Drop(_) => drop(m),
            }
        }
    }

    /// One frame's verdict, rewriting it when it is forwarded.
    pub fn one(&mut self, m: &mut Mbuf) -> Verdict {
        self.counters.rx += 1;
        let v = self.classify_and_rewrite(m);
        match v {
            Verdict::Forward { .. } => self.counters.forwarded += 1,
            Verdict::Pass => self.counters.passed += 1,
            Verdict::Drop(_) | Verdict::TooBigSent { .. } => self.counters.dropped += 1,
        }
        v
    }

    fn vip_of(&self, p: &Parsed) -> Option<usize> {
        self.vips.iter().position(|v| {
            v.addr == p.key.dst && v.spec.proto.number() == p.key.proto && v.spec.vip.port() == p.key.dport
        })
    }

    fn classify_and_rewrite(&mut self, m: &mut Mbuf) -> Verdict {
        let p = match packet::parse(m.data()) {
            Parse::NotIp => return Verdict::Pass,
            Parse::Malformed => return self.malformed(m.data()),
            Parse::Ip(p) => p,
        };
        let icmp = if p.v4 { proto::ICMP } else { proto::ICMPV6 };
        if p.key.proto == icmp && !p.fragment {
            return self.icmp(m, &p);
        }
        // A later fragment has no ports: it belongs to the VIP of its
        // address and protocol if there is exactly that VIP's port to guess;
        // the 2-tuple policy does not need the port.
        let vi = if p.later_fragment {
            self.vips.iter().position(|v| v.addr == p.key.dst && v.spec.proto.number() == p.key.proto)
        } else {
            self.vip_of(&p)
        };
        let Some(vi) = vi else {
            return Verdict::Pass;
        };
        let v = &mut self.vips[vi];
        if p.options && v.spec.ip_options == OptionsPolicy::Drop {
            return drop_for(v, DropReason::Options);
        }
        let server = if p.fragment {
            if v.spec.fragments == FragPolicy::Drop {
                return drop_for(v, DropReason::Fragment);
            }
            match v.pick(&p.key, true) {
                Some(s) => {
                    v.counters.fragments_forwarded += 1;
                    s
                }
                None => return drop_for(v, DropReason::NoServer),
            }
        } else {
            let h = p.key.hash();
            match v.table.lookup(&p.key, h) {
                Some(s) if v.servers[s as usize].up => {
                    v.counters.hits += 1;
                    s as usize
                }
                hit => {
                    let Some(s) = v.pick(&p.key, false) else {
                        return drop_for(v, DropReason::NoServer);
                    };
                    if hit.is_some() {
                        v.counters.rehashed += 1;
                    } else {
                        v.counters.misses += 1;
                    }
                    if v.table.insert(&p.key, h, s as u32) == Inserted::Evicted {
                        v.counters.evictions += 1;
                    }
                    s
                }
            }
        };
        let mac = self.mac;
        send(&mut self.vips[vi], vi, server, m, &p, mac)
    }

    fn icmp(&mut self, m: &mut Mbuf, p: &Parsed) -> Verdict {
        let Some(q) = packet::quoted_too_big(&m.data()[14..], p) else {
            return Verdict::Pass;
        };
        // The quoted packet went VIP -> client: swap it into client -> VIP.
        let key =
            FlowKey { src: q.key.dst, dst: q.key.src, sport: q.key.dport, dport: q.key.sport, proto: q.key.proto };
        let Some(vi) = self.vips.iter().position(|v| {
            v.addr == key.dst
                && v.addr == p.key.dst
                && v.spec.proto.number() == key.proto
                && v.spec.vip.port() == key.dport
        }) else {
            return Verdict::Pass;
        };
        let v = &mut self.vips[vi];
        let server = match v.table.lookup(&key, key.hash()) {
            Some(s) if v.servers[s as usize].up => s as usize,
            _ => match v.pick(&key, false) {
                Some(s) => s,
                None => return drop_for(v, DropReason::NoServer),
            },
        };
        v.counters.icmp_forwarded += 1;
        let mac = self.mac;
        send(v, vi, server, m, p, mac)
    }

    fn malformed(&mut self, f: &[u8]) -> Verdict {
        // Count against a VIP when the destination address is readable and is
        // one; anything else is the host stack's to judge.
        let dst = match f.get(12..14).map(|e| u16::from_be_bytes([e[0], e[1]])) {
            Some(packet::ETH_IPV4) => f.get(30..34).map(|a| {
                let mut m = [0u8; 16];
                m[10] = 0xff;
                m[11] = 0xff;
                m[12..].copy_from_slice(a);
                m
            }),
            Some(packet::ETH_IPV6) => f.get(38..54).map(|a| {
                let mut m = [0u8; 16];
                m.copy_from_slice(a);
                m
            }),
            _ => None,
        };
        match dst.and_then(|d| self.vips.iter().position(|v| v.addr == d)) {
            Some(vi) => drop_for(&mut self.vips[vi], DropReason::Malformed),
            None => Verdict::Pass,
        }
    }
}

fn drop_for(v: &mut Vip, r: DropReason) -> Verdict {
    v.counters.dropped[r as usize] += 1;
    Verdict::Drop(r)
}

fn send(v: &mut Vip, vi: usize, server: usize, m: &mut Mbuf, p: &Parsed, our_mac: MacAddr) -> Verdict {
    let s = &v.servers[server];
    let h = p.key.hash();
    let (lo, hi) = v.spec.gue_sports;
    let span = u64::from(hi - lo) + 1;
    let t = Target {
        encap: v.spec.encap,
        our_mac,
        dst_mac: if v.spec.encap == Encap::L2Dsr { s.mac } else { v.spec.gateway_mac },
        server: s.addr,
        src_v4: v.spec.src_v4,
        src_v6: v.spec.src_v6,
        ttl: v.spec.ttl,
        gue_port: v.spec.gue_port,
        gue_sport: lo + ((h >> 32) % span) as u16,
        flow_label: (h as u32) & 0xf_ffff,
        mtu: v.spec.mtu,
    };
    match encap::apply(m, &t, p.v4, p.ip_len, p.tos, p.dont_frag) {
        Ok(()) => {
            v.counters.forwarded += 1;
            v.counters.bytes += p.ip_len as u64;
            v.counters.per_server[server] += 1;
            Verdict::Forward { vip: vi, server }
        }
        Err(EncapError::TooBig) => {
            let v4_df_clear = p.v4 && !p.dont_frag;
            let _ = drop_for(v, DropReason::TooBig);
            // What fits once encapsulated; IPv6 never below its minimum.
            let room = usize::from(v.spec.mtu) - (t.mtu_overhead());
            let mtu = if p.v4 { room as u16 } else { room.max(1280) as u16 };
            // An IPv4 packet without DF may be fragmented by its sender's
            // path: no error for it (RFC 1191), nor for an ICMP error.
            let answer =
                v.spec.too_big_icmp && !v4_df_clear && p.key.proto != proto::ICMP && p.key.proto != proto::ICMPV6;
            if answer && super::icmp::too_big(m, p, mtu, our_mac) {
                v.counters.too_big_sent += 1;
                return Verdict::TooBigSent { vip: vi };
            }
            Verdict::Drop(DropReason::TooBig)
        }
        Err(EncapError::NoHeadroom) => drop_for(v, DropReason::NoHeadroom),
    }
}
