//! IPv4 (RFC 791 §3.2, RFC 815) and IPv6 (RFC 8200 §4.5) fragment
//! reassembly, with explicit limits.
//!
//! Fragments are held as the buffers they arrived in (no copy until the datagram
//! is complete), keyed by (source, destination, protocol, identification) for
//! IPv4 and (source, destination, identification) for IPv6. When the last hole
//! is filled the datagram is copied once into a fresh buffer (buffers are
//! single-segment) behind a rebuilt header, so the rest of the stack sees an
//! ordinary, unfragmented packet: for IPv4 a 20-byte header, for IPv6 the
//! first fragment's unfragmentable part (the IPv6 header and the extension
//! headers before the Fragment header) with the Fragment header taken out.
//!
//! One engine serves both families ([`Reassembler`] over a [`Family`]); each
//! family has its own limits ([`ReassemblyConfig`]: `reassembly` and
//! `reassembly_v6` in the stack configuration) and its own counters. Limits:
//! bytes of buffer memory held (the capacity of every held buffer, since that
//! is what is pinned in the pool), datagrams in progress, and a timeout from
//! the first fragment. Overlapping fragments drop the whole datagram, as RFC
//! 5722 requires for IPv6 and as modern IPv4 stacks do (overlaps are an
//! attack, not a network artefact). Every drop has its own counter in
//! [`Drops`].

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr};

use pmd::Mbuf;

use crate::config::ReassemblyConfig;
use crate::stats::Drops;
use crate::timer::{TimerId, TimerWheel};
use crate::wire::{ChecksumCaps, Ipv4Packet, Ipv4Repr};

/// Identifies the IPv4 datagram a fragment belongs to.
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

/// Identifies the IPv6 packet a fragment belongs to (RFC 8200 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reasm6Key {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Fragment Identification.
    pub ident: u32,
}

/// Why a fragment or a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReasmDrop {
    /// Reassembly disabled (`max_datagrams` 0).
    Disabled,
    /// Not complete within the timeout.
    Timeout,
    /// `max_bytes` would be exceeded.
    Memory,
    /// `max_datagrams` in progress already.
    Count,
    /// Fragments overlap.
    Overlap,
    /// Exact duplicate.
    Duplicate,
    /// Larger than the family allows, or than a buffer.
    TooBig,
    /// Empty, misaligned, or a second, different last fragment.
    BadFragment,
    /// No buffer to reassemble into.
    NoBuffers,
}

/// What differs between IPv4 and IPv6 reassembly.
pub trait Family {
    /// Identifies a datagram.
    type Key: Copy + Eq + Hash;
    /// What the first fragment (offset 0) leaves to rebuild the header.
    type Header;
    /// Largest payload behind the rebuilt header.
    const MAX_PAYLOAD: usize;
    /// Length of the rebuilt header.
    fn header_len(h: &Self::Header) -> usize;
    /// Whether the rebuilt header and a payload of `total` bytes make a
    /// valid packet.
    fn fits(h: &Self::Header, total: usize) -> bool;
    /// Writes the rebuilt header for a payload of `total` bytes into `buf`
    /// (exactly `header_len` bytes).
    fn emit(h: &mut Self::Header, total: usize, buf: &mut [u8]);
    /// Counts a drop.
    fn count(drops: &mut Drops, d: ReasmDrop);
}

/// IPv4: the header is rebuilt as 20 bytes from the first fragment's.
pub struct FragV4;

impl Family for FragV4 {
    type Key = ReasmKey;
    type Header = Ipv4Repr;
    /// 65535 minus a 20-byte header.
    const MAX_PAYLOAD: usize = 65535 - 20;

    fn header_len(_: &Ipv4Repr) -> usize {
        20
    }

    fn fits(_: &Ipv4Repr, total: usize) -> bool {
        total <= Self::MAX_PAYLOAD
    }

    fn emit(r: &mut Ipv4Repr, total: usize, buf: &mut [u8]) {
        r.payload_len = total;
        r.more_frags = false;
        r.frag_offset = 0;
        r.emit(&mut Ipv4Packet::new_unchecked(buf), &ChecksumCaps::software());
    }

    fn count(d: &mut Drops, why: ReasmDrop) {
        *match why {
            ReasmDrop::Disabled => &mut d.reasm_disabled,
            ReasmDrop::Timeout => &mut d.reasm_timeout,
            ReasmDrop::Memory => &mut d.reasm_memory,
            ReasmDrop::Count => &mut d.reasm_count,
            ReasmDrop::Overlap => &mut d.reasm_overlap,
            ReasmDrop::Duplicate => &mut d.reasm_duplicate,
            ReasmDrop::TooBig => &mut d.reasm_too_big,
            ReasmDrop::BadFragment => &mut d.reasm_bad_fragment,
            ReasmDrop::NoBuffers => &mut d.reasm_no_buffers,
        } += 1;
    }
}

/// IPv6: the first fragment's unfragmentable part, with the Next Header
/// octet that named the Fragment header set to the Fragment header's Next
/// Header, and Payload Length recomputed (RFC 8200 §4.5, reassembly).
pub struct FragV6;

/// The unfragmentable part of an IPv6 first fragment.
#[derive(Clone, Debug)]
pub struct V6Header {
    /// The IPv6 header and the extension headers before the Fragment header.
    pub bytes: Vec<u8>,
    /// Offset in `bytes` of the Next Header octet that named the Fragment header.
    pub next_header_at: usize,
    /// The Fragment header's Next Header.
    pub next_header: u8,
}

impl Family for FragV6 {
    type Key = Reasm6Key;
    type Header = V6Header;
    /// Payload Length is 16 bits (no jumbograms); the unfragmentable
    /// extension headers count too, and are checked when the datagram
    /// completes.
    const MAX_PAYLOAD: usize = 65535;

    fn header_len(h: &V6Header) -> usize {
        h.bytes.len()
    }

    fn fits(h: &V6Header, total: usize) -> bool {
        h.bytes.len() - crate::wire::ipv6::HEADER_LEN + total <= Self::MAX_PAYLOAD
    }

    fn emit(h: &mut V6Header, total: usize, buf: &mut [u8]) {
        h.bytes[h.next_header_at] = h.next_header;
        let payload = (h.bytes.len() - crate::wire::ipv6::HEADER_LEN + total) as u16;
        h.bytes[4..6].copy_from_slice(&payload.to_be_bytes());
        buf.copy_from_slice(&h.bytes);
    }

    fn count(d: &mut Drops, why: ReasmDrop) {
        *match why {
            ReasmDrop::Disabled => &mut d.reasm6_disabled,
            ReasmDrop::Timeout => &mut d.reasm6_timeout,
            ReasmDrop::Memory => &mut d.reasm6_memory,
            ReasmDrop::Count => &mut d.reasm6_count,
            ReasmDrop::Overlap => &mut d.reasm6_overlap,
            ReasmDrop::Duplicate => &mut d.reasm6_duplicate,
            ReasmDrop::TooBig => &mut d.reasm6_too_big,
            ReasmDrop::BadFragment => &mut d.reasm6_bad_fragment,
            ReasmDrop::NoBuffers => &mut d.reasm6_no_buffers,
        } += 1;
    }
}

struct Frag {
    off: usize,
    m: Mbuf,
}

struct Datagram<H> {
    frags: Vec<Frag>,
    total: Option<usize>,
    received: usize,
    bytes: usize,
    timer: TimerId,
    first: Option<H>,
}

/// One fragment, as [`Reassembler::input`] takes it.
pub struct Fragment<F: Family> {
    /// The datagram it belongs to.
    pub key: F::Key,
    /// Its offset in bytes.
    pub offset: usize,
    /// More fragments follow.
    pub more: bool,
    /// For the first fragment (offset 0), what the header is rebuilt from.
    pub header: Option<F::Header>,
}

/// Reassembly state of one stack for one family.
pub struct Reassembler<F: Family> {
    cfg: ReassemblyConfig,
    map: HashMap<F::Key, Datagram<F::Header>>,
    bytes: usize,
}

impl<F: Family> Reassembler<F> {
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

    /// Takes one fragment whose payload is exactly `m`'s data. Returns the
    /// rebuilt header and a buffer holding it plus the whole payload when
    /// this fragment completed the datagram.
    pub fn input<T: From<F::Key>>(
        &mut self,
        frag: Fragment<F>,
        m: Mbuf,
        now_ns: u64,
        timers: &mut TimerWheel<T>,
        drops: &mut Drops,
    ) -> Option<(F::Header, Mbuf)> {
        if self.cfg.max_datagrams == 0 {
            F::count(drops, ReasmDrop::Disabled);
            return None;
        }
        let Fragment { key, offset: off, more, header } = frag;
        let len = m.len();
        if len == 0 || (more && len % 8 != 0) {
            F::count(drops, ReasmDrop::BadFragment);
            return None;
        }
        if off + len > F::MAX_PAYLOAD {
            F::count(drops, ReasmDrop::TooBig);
            self.drop_datagram(&key, timers);
            return None;
        }
        let cost = m.capacity();
        if self.bytes + cost > self.cfg.max_bytes {
            F::count(drops, ReasmDrop::Memory);
            return None;
        }
        if !self.map.contains_key(&key) {
            if self.map.len() >= self.cfg.max_datagrams {
                F::count(drops, ReasmDrop::Count);
                return None;
            }
            let deadline = now_ns.saturating_add(self.cfg.timeout.as_nanos() as u64);
            let timer = timers.insert(deadline, T::from(key));
            self.map
                .insert(key, Datagram { frags: Vec::new(), total: None, received: 0, bytes: 0, timer, first: None });
        }
        let d = self.map.get_mut(&key).expect("inserted above");
        // Last fragment fixes the total; a different one later is bogus.
        if !more {
            match d.total {
                Some(t) if t != off + len => {
                    F::count(drops, ReasmDrop::BadFragment);
                    return None;
                }
                _ => d.total = Some(off + len),
            }
        }
        let end = off + len;
        if d.total.is_some_and(|t| end > t) {
            F::count(drops, ReasmDrop::BadFragment);
            self.drop_datagram(&key, timers);
            return None;
        }
        // Sorted insert; exact duplicates are dropped, overlaps drop the datagram.
        let at = d.frags.partition_point(|f| f.off < off);
        if let Some(f) = d.frags.get(at) {
            if f.off == off && f.m.len() == len {
                F::count(drops, ReasmDrop::Duplicate);
                return None;
            }
            if f.off < end {
                F::count(drops, ReasmDrop::Overlap);
                self.drop_datagram(&key, timers);
                return None;
            }
        }
        if at > 0 {
            let p = &d.frags[at - 1];
            if p.off + p.m.len() > off {
                F::count(drops, ReasmDrop::Overlap);
                self.drop_datagram(&key, timers);
                return None;
            }
        }
        if off == 0 {
            d.first = header;
        }
        d.frags.insert(at, Frag { off, m });
        d.received += len;
        d.bytes += cost;
        self.bytes += cost;
        if d.total != Some(d.received) {
            return None;
        }
        // Complete (no overlaps, so received == total means no holes, and
        // the fragment at offset 0 is there with the header).
        let d = self.map.remove(&key).expect("present");
        self.bytes -= d.bytes;
        timers.cancel(d.timer);
        let total = d.received;
        let Some(mut h) = d.first else {
            F::count(drops, ReasmDrop::BadFragment);
            return None;
        };
        let hl = F::header_len(&h);
        if !F::fits(&h, total) {
            F::count(drops, ReasmDrop::TooBig);
            return None;
        }
        let pool = d.frags[0].m.pool();
        let Ok(mut out) = pool.alloc() else {
            F::count(drops, ReasmDrop::NoBuffers);
            return None;
        };
        if out.tailroom() < hl + total {
            F::count(drops, ReasmDrop::TooBig);
            return None;
        }
        let buf = out.append(hl + total).expect("checked tailroom");
        F::emit(&mut h, total, &mut buf[..hl]);
        for f in &d.frags {
            buf[hl + f.off..hl + f.off + f.m.len()].copy_from_slice(f.m.data());
        }
        Some((h, out))
    }

    /// The timeout of `key` fired: drops what was collected.
    pub fn on_timeout(&mut self, key: &F::Key, drops: &mut Drops) {
        if let Some(d) = self.map.remove(key) {
            self.bytes -= d.bytes;
            F::count(drops, ReasmDrop::Timeout);
        }
    }

    fn drop_datagram<T>(&mut self, key: &F::Key, timers: &mut TimerWheel<T>) {
        if let Some(d) = self.map.remove(key) {
            self.bytes -= d.bytes;
            timers.cancel(d.timer);
        }
    }
}
