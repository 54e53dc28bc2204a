//! IPv4 fragment reassembly (RFC 791 §3.2, RFC 815), with explicit limits.
//!
//! Fragments are held as the buffers they arrived in (no copy until the datagram
//! is complete), keyed by (source, destination, protocol, identification). When
//! the last hole is filled the datagram is copied once into a fresh buffer
//! (buffers are single-segment) behind a rebuilt 20-byte header, so the rest of
//! the stack sees an ordinary, unfragmented packet.
//!
//! Limits ([`ReassemblyConfig`]): bytes of buffer memory held (the capacity of
//! every held buffer, since that is what is pinned in the pool), datagrams in
//! progress, and a timeout from the first fragment. Overlapping fragments drop the
//! whole datagram, as RFC 5722 requires for IPv6 and as modern IPv4 stacks do
//! (overlaps are an attack, not a network artefact). Every drop has its own
//! counter in [`Drops`].

use std::collections::HashMap;
use std::net::Ipv4Addr;

use pmd::Mbuf;

use crate::config::ReassemblyConfig;
use crate::stats::Drops;
use crate::timer::{TimerId, TimerWheel};
use crate::wire::{ChecksumCaps, Ipv4Packet, Ipv4Repr};

/// Identifies the datagram a fragment belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReasmKey {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol.
    pub protocol: u8,
    /// Identification.
    pub ident: u16,
}

struct Frag {
    off: usize,
    m: Mbuf,
}

struct Datagram {
    frags: Vec<Frag>,
    total: Option<usize>,
    received: usize,
    bytes: usize,
    timer: TimerId,
    first: Ipv4Repr,
}

/// Reassembly state of one stack.
pub struct Reassembler {
    cfg: ReassemblyConfig,
    map: HashMap<ReasmKey, Datagram>,
    bytes: usize,
}

/// Largest IPv4 payload (65535 minus a 20-byte header).
const MAX_PAYLOAD: usize = 65535 - 20;

impl Reassembler {
    /// Empty, with the given limits.
    pub fn new(cfg: ReassemblyConfig) -> Self {
        Reassembler { map: HashMap::with_capacity(cfg.max_datagrams), cfg, bytes: 0 }
    }

    /// Datagrams in progress.
    pub fn in_progress(&self) -> usize {
        self.map.len()
    }

    /// Buffer bytes held.
    pub fn bytes_held(&self) -> usize {
        self.bytes
    }

    /// Takes one fragment: `repr` is its parsed header, `m` holds exactly its
    /// payload. Returns the reassembled datagram (its repr, and a buffer holding
    /// a 20-byte header plus the whole payload) when this fragment completed it.
    pub fn input<T: From<ReasmKey>>(
        &mut self,
        repr: &Ipv4Repr,
        m: Mbuf,
        now_ns: u64,
        timers: &mut TimerWheel<T>,
        drops: &mut Drops,
    ) -> Option<(Ipv4Repr, Mbuf)> {
        if self.cfg.max_datagrams == 0 {
            drops.reasm_disabled += 1;
            return None;
        }
        let key =
            ReasmKey { src: repr.src_addr, dst: repr.dst_addr, protocol: repr.protocol.into(), ident: repr.ident };
        let off = usize::from(repr.frag_offset);
        let len = m.len();
        if len == 0 || (repr.more_frags && len % 8 != 0) {
            drops.reasm_bad_fragment += 1;
            return None;
        }
        if off + len > MAX_PAYLOAD {
            drops.reasm_too_big += 1;
            self.drop_datagram(&key, timers);
            return None;
        }
        let cost = m.capacity();
        if self.bytes + cost > self.cfg.max_bytes {
            drops.reasm_memory += 1;
            return None;
        }
        if !self.map.contains_key(&key) {
            if self.map.len() >= self.cfg.max_datagrams {
                drops.reasm_count += 1;
                return None;
            }
            let deadline = now_ns.saturating_add(self.cfg.timeout.as_nanos() as u64);
            let timer = timers.insert(deadline, T::from(key));
            self.map
                .insert(key, Datagram { frags: Vec::new(), total: None, received: 0, bytes: 0, timer, first: *repr });
        }
        let d = self.map.get_mut(&key).expect("inserted above");
        // Last fragment fixes the total; a different one later is bogus.
        if !repr.more_frags {
            match d.total {
                Some(t) if t != off + len => {
                    drops.reasm_bad_fragment += 1;
                    return None;
                }
                _ => d.total = Some(off + len),
            }
        }
        let end = off + len;
        if d.total.is_some_and(|t| end > t) {
            drops.reasm_bad_fragment += 1;
            self.drop_datagram(&key, timers);
            return None;
        }
        // Sorted insert; exact duplicates are dropped, overlaps drop the datagram.
        let at = d.frags.partition_point(|f| f.off < off);
        if let Some(f) = d.frags.get(at) {
            if f.off == off && f.m.len() == len {
                drops.reasm_duplicate += 1;
                return None;
            }
            if f.off < end {
                drops.reasm_overlap += 1;
                self.drop_datagram(&key, timers);
                return None;
            }
        }
        if at > 0 {
            let p = &d.frags[at - 1];
            if p.off + p.m.len() > off {
                drops.reasm_overlap += 1;
                self.drop_datagram(&key, timers);
                return None;
            }
        }
        if off == 0 {
            d.first = *repr;
        }
        d.frags.insert(at, Frag { off, m });
        d.received += len;
        d.bytes += cost;
        self.bytes += cost;
        if d.total != Some(d.received) {
            return None;
        }
        // Complete (no overlaps, so received == total means no holes).
        let d = self.map.remove(&key).expect("present");
        self.bytes -= d.bytes;
        timers.cancel(d.timer);
        let total = d.received;
        let pool = d.frags[0].m.pool();
        let Ok(mut out) = pool.alloc() else {
            drops.reasm_no_buffers += 1;
            return None;
        };
        if out.tailroom() < 20 + total {
            drops.reasm_too_big += 1;
            return None;
        }
        let mut r = d.first;
        r.payload_len = total;
        r.more_frags = false;
        r.frag_offset = 0;
        let buf = out.append(20 + total).expect("checked tailroom");
        r.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..20]), &ChecksumCaps::software());
        for f in &d.frags {
            buf[20 + f.off..20 + f.off + f.m.len()].copy_from_slice(f.m.data());
        }
        Some((r, out))
    }

    /// The timeout of `key` fired: drops what was collected.
    pub fn on_timeout(&mut self, key: &ReasmKey, drops: &mut Drops) {
        if let Some(d) = self.map.remove(key) {
            self.bytes -= d.bytes;
            drops.reasm_timeout += 1;
        }
    }

    fn drop_datagram<T>(&mut self, key: &ReasmKey, timers: &mut TimerWheel<T>) {
        if let Some(d) = self.map.remove(key) {
            self.bytes -= d.bytes;
            timers.cancel(d.timer);
        }
    }
}
