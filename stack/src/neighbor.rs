//! The neighbour cache shared by ARP (RFC 826) and NDP (RFC 4861 §7.3): one
//! instance per address family, generic over the address type.
//!
//! An entry is *incomplete* (requests outstanding, packets waiting) or
//! *resolved* (a MAC that may be used until `lifetime` after it was last
//! confirmed; after that the next packet resolves it again). It is a simplified
//! form of NDP's state machine: no STALE/DELAY/PROBE states, which need upper
//! layer reachability hints that only TCP will provide.
//!
//! The cache holds state only; the stack sends the requests and arms the retry
//! timers (on its [`TimerWheel`](crate::timer::TimerWheel)), so this module does
//! no I/O and is tested on its own. All limits come from
//! [`NeighborConfig`]: size, lifetime, retries and the per-neighbour queue.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use pmd::{MacAddr, Mbuf};

use crate::config::NeighborConfig;
use crate::timer::TimerId;

enum State {
    Incomplete { retries_left: u32, timer: Option<TimerId> },
    Resolved { mac: MacAddr, expires_ns: u64 },
}

struct Entry {
    state: State,
    pending: VecDeque<Mbuf>,
}

/// What [`NeighborCache::enqueue`] did with a packet.
#[derive(Debug)]
pub enum Enqueued {
    /// A new incomplete entry: send the first request and arm the retry timer.
    SendRequest,
    /// As `SendRequest`, but the queue holds no packets (`pending` is 0): the
    /// packet comes back to be dropped.
    SendRequestDropped(Mbuf),
    /// Queued behind a request already outstanding.
    Queued,
    /// The neighbour's queue is full: the packet comes back to be dropped.
    PendingFull(Mbuf),
    /// Every entry is incomplete and the cache is full: the packet comes back.
    CacheFull(Mbuf),
}

/// What to do when a retry timer fires.
#[derive(Debug)]
pub enum Retry {
    /// Send another request and re-arm the timer.
    Again,
    /// Out of retries: the entry is gone; these waiting packets are dropped.
    GiveUp(VecDeque<Mbuf>),
    /// The entry was resolved or evicted meanwhile.
    Nothing,
}

/// A neighbour cache for addresses of type `A`.
pub struct NeighborCache<A> {
    cfg: NeighborConfig,
    map: HashMap<A, Entry>,
}

impl<A: Copy + Eq + Hash> NeighborCache<A> {
    /// An empty cache.
    pub fn new(cfg: NeighborConfig) -> Self {
        NeighborCache { map: HashMap::with_capacity(cfg.capacity), cfg }
    }

    /// Number of entries (resolved or not).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Packets waiting for resolution, over all entries.
    pub fn pending(&self) -> usize {
        self.map.values().map(|e| e.pending.len()).sum()
    }

    /// The MAC of a resolved, unexpired entry.
    #[inline]
    pub fn lookup(&self, addr: &A, now_ns: u64) -> Option<MacAddr> {
        match self.map.get(addr)?.state {
            State::Resolved { mac, expires_ns } if now_ns < expires_ns => Some(mac),
            _ => None,
        }
    }

    /// Queues a packet for a neighbour that [`lookup`](Self::lookup) did not
    /// resolve, creating an incomplete entry if there is none.
    pub fn enqueue(&mut self, addr: A, m: Mbuf, now_ns: u64) -> Enqueued {
        if let Some(e) = self.map.get_mut(&addr) {
            if let State::Resolved { .. } = e.state {
                // Expired (callers look up first): resolve again.
                e.state = State::Incomplete { retries_left: self.cfg.retries, timer: None };
                return Self::push(e, m, self.cfg.pending, Enqueued::SendRequest);
            }
            return Self::push(e, m, self.cfg.pending, Enqueued::Queued);
        }
        if self.map.len() >= self.cfg.capacity && !self.evict(now_ns) {
            return Enqueued::CacheFull(m);
        }
        let e = self.map.entry(addr).or_insert(Entry {
            state: State::Incomplete { retries_left: self.cfg.retries, timer: None },
            pending: VecDeque::new(),
        });
        Self::push(e, m, self.cfg.pending, Enqueued::SendRequest)
    }

    fn push(e: &mut Entry, m: Mbuf, limit: usize, ok: Enqueued) -> Enqueued {
        if e.pending.len() >= limit {
            // The request (if any) is still worth sending: report that first.
            return match ok {
                Enqueued::SendRequest => Enqueued::SendRequestDropped(m),
                _ => Enqueued::PendingFull(m),
            };
        }
        e.pending.push_back(m);
        ok
    }

    /// Makes sure `addr` is being resolved without a packet to queue (another
    /// core asked): true when a new incomplete entry was created, so a
    /// request must be sent; false when it is resolved, already being
    /// resolved, or the cache is full of incomplete entries.
    pub fn want(&mut self, addr: A, now_ns: u64) -> bool {
        match self.map.get(&addr) {
            Some(Entry { state: State::Resolved { expires_ns, .. }, .. }) if now_ns < *expires_ns => return false,
            Some(Entry { state: State::Incomplete { .. }, .. }) => return false,
            Some(_) => {}
            None => {
                if self.map.len() >= self.cfg.capacity && !self.evict(now_ns) {
                    return false;
                }
            }
        }
        let state = State::Incomplete { retries_left: self.cfg.retries, timer: None };
        self.map.entry(addr).or_insert(Entry { state, pending: VecDeque::new() }).state =
            State::Incomplete { retries_left: self.cfg.retries, timer: None };
        true
    }

    /// Records the retry timer of an incomplete entry.
    pub fn set_timer(&mut self, addr: &A, id: TimerId) {
        if let Some(Entry { state: State::Incomplete { timer, .. }, .. }) = self.map.get_mut(addr) {
            *timer = Some(id);
        }
    }

    /// Learns `addr` is at `mac`. With `create` false only an existing entry is
    /// updated (RFC 826's merge flag: ARP from a host we are not talking to).
    /// Returns the packets that waited for it (to be sent now, with `mac` as
    /// destination) and the retry timer to cancel.
    pub fn resolved(
        &mut self,
        addr: A,
        mac: MacAddr,
        now_ns: u64,
        create: bool,
    ) -> Option<(VecDeque<Mbuf>, Option<TimerId>)> {
        let expires_ns = now_ns.saturating_add(self.cfg.lifetime.as_nanos() as u64);
        if !self.map.contains_key(&addr) {
            if !create || (self.map.len() >= self.cfg.capacity && !self.evict(now_ns)) {
                return None;
            }
            self.map.insert(addr, Entry { state: State::Resolved { mac, expires_ns }, pending: VecDeque::new() });
            return Some((VecDeque::new(), None));
        }
        let e = self.map.get_mut(&addr)?;
        let timer = match e.state {
            State::Incomplete { timer, .. } => timer,
            State::Resolved { .. } => None,
        };
        e.state = State::Resolved { mac, expires_ns };
        Some((std::mem::take(&mut e.pending), timer))
    }

    /// A retry timer fired for `addr`.
    pub fn on_timer(&mut self, addr: &A) -> Retry {
        let Some(e) = self.map.get_mut(addr) else { return Retry::Nothing };
        match &mut e.state {
            State::Incomplete { retries_left, timer } => {
                *timer = None;
                if *retries_left == 0 {
                    let e = self.map.remove(addr).expect("present");
                    return Retry::GiveUp(e.pending);
                }
                *retries_left -= 1;
                Retry::Again
            }
            State::Resolved { .. } => Retry::Nothing,
        }
    }

    /// Evicts the resolved entry confirmed longest ago (expired ones first).
    /// False if every entry is incomplete. O(capacity), only when full.
    fn evict(&mut self, _now_ns: u64) -> bool {
        let victim = self
            .map
            .iter()
            .filter_map(|(a, e)| match e.state {
                State::Resolved { expires_ns, .. } => Some((expires_ns, *a)),
                State::Incomplete { .. } => None,
            })
            .min_by_key(|(x, _)| *x)
            .map(|(_, a)| a);
        match victim {
            Some(a) => {
                self.map.remove(&a);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(capacity: usize, pending: usize) -> NeighborConfig {
        NeighborConfig {
            capacity,
            lifetime: Duration::from_secs(10),
            retries: 2,
            retry_interval: Duration::from_secs(1),
            pending,
        }
    }

    fn pool() -> pmd::Mempool {
        pmd::Mempool::new(&pmd::MempoolConfig::new("nbr", 32, 256, 64, 0)).unwrap()
    }

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 9]);

    #[test]
    fn rfc4861_7_2_2_queue_is_bounded_and_flushed_on_resolution() {
        let p = pool();
        let start = p.available();
        {
            let mut c = NeighborCache::new(cfg(4, 2));
            assert!(matches!(c.enqueue(1u32, p.alloc().unwrap(), 0), Enqueued::SendRequest));
            assert!(matches!(c.enqueue(1u32, p.alloc().unwrap(), 0), Enqueued::Queued));
            assert!(matches!(c.enqueue(1u32, p.alloc().unwrap(), 0), Enqueued::PendingFull(_)));
            assert_eq!(c.lookup(&1, 0), None);
            let (q, _) = c.resolved(1, MAC, 5, false).unwrap();
            assert_eq!(q.len(), 2);
            assert_eq!(c.lookup(&1, 5), Some(MAC));
            // Lifetime: unusable after 10 s, and the next packet resolves again.
            assert_eq!(c.lookup(&1, 5 + 10_000_000_000), None);
            assert!(matches!(c.enqueue(1u32, p.alloc().unwrap(), 10_000_000_005), Enqueued::SendRequest));
        }
        assert_eq!(p.available(), start);
    }

    #[test]
    fn rfc4861_7_3_3_retries_then_gives_up_and_drops_queue() {
        let p = pool();
        let start = p.available();
        let mut c = NeighborCache::new(cfg(4, 2));
        c.enqueue(7u32, p.alloc().unwrap(), 0);
        assert!(matches!(c.on_timer(&7), Retry::Again));
        assert!(matches!(c.on_timer(&7), Retry::Again));
        match c.on_timer(&7) {
            Retry::GiveUp(q) => assert_eq!(q.len(), 1),
            other => panic!("{other:?}"),
        }
        assert!(c.is_empty());
        assert!(matches!(c.on_timer(&7), Retry::Nothing));
        assert_eq!(p.available(), start);
    }

    #[test]
    fn rfc826_merge_only_updates_known_entries_and_capacity_evicts_oldest() {
        let p = pool();
        let mut c = NeighborCache::new(cfg(2, 1));
        assert!(c.resolved(1u32, MAC, 0, false).is_none());
        c.resolved(1u32, MAC, 0, true).unwrap();
        c.resolved(2u32, MAC, 1, true).unwrap();
        c.resolved(3u32, MAC, 2, true).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.lookup(&1, 3), None, "oldest evicted");
        // Full of incomplete entries: a new one cannot be made.
        let mut c = NeighborCache::new(cfg(1, 1));
        c.enqueue(1u32, p.alloc().unwrap(), 0);
        assert!(matches!(c.enqueue(2u32, p.alloc().unwrap(), 0), Enqueued::CacheFull(_)));
    }
}
