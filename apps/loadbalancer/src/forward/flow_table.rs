//! The per-core connection table: fixed size, set-associative, LRU within a
//! set.
//!
//! A flow's key hashes to one set of [`WAYS`] entries; a lookup compares the
//! key against those entries only, a hit refreshes the entry's stamp, and an
//! insert into a full set evicts the entry with the oldest stamp (least
//! recently used in that set). This is the table Katran keeps in a
//! `BPF_MAP_TYPE_LRU_HASH` per CPU (whose LRU is also approximate, per list)
//! and Maglev's per-thread connection tracking table: what it buys is that an
//! established flow keeps its server when the Maglev table changes (a server
//! added, re-weighted, or a health flap), as long as the flow has not been
//! evicted; what it cannot promise past its size is stickiness — Maglev's
//! consistent hashing is the fallback, and moves only the flows of a changed
//! server.
//!
//! Invariants: the table never allocates after [`FlowTable::new`]; its
//! capacity is `sets × WAYS` exactly; a stamp of 0 marks an empty entry and
//! the clock starts at 1 (a `u64`, so it does not wrap). Per core, no lock:
//! `&mut self` everywhere.

/// Entries per set.
pub const WAYS: usize = 8;

/// A flow: both addresses (IPv4 as IPv4-mapped IPv6), both ports, protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowKey {
    /// Source address, 16 bytes.
    pub src: [u8; 16],
    /// Destination address, 16 bytes.
    pub dst: [u8; 16],
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
}

impl FlowKey {
    /// A 64-bit hash of the key (the project's fixed FNV-1a + splitmix64, so
    /// two instances agree).
    pub fn hash(&self) -> u64 {
        let mut b = [0u8; 37];
        b[..16].copy_from_slice(&self.src);
        b[16..32].copy_from_slice(&self.dst);
        b[32..34].copy_from_slice(&self.sport.to_be_bytes());
        b[34..36].copy_from_slice(&self.dport.to_be_bytes());
        b[36] = self.proto;
        crate::maglev::hash(0x666c_6f77_7462_6c31, &b) // "flowtbl1"
    }
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Into an empty entry.
    New,
    /// Over the key's own entry (its server changed).
    Replaced,
    /// Over the least recently used entry of a full set.
    Evicted,
}

/// The table.
#[derive(Debug)]
pub struct FlowTable {
    keys: Vec<FlowKey>,
    server: Vec<u32>,
    stamp: Vec<u64>,
    sets: u64,
    clock: u64,
    len: usize,
}

impl FlowTable {
    /// A table of `size` entries (a multiple of [`WAYS`], at least `WAYS`).
    pub fn new(size: usize) -> FlowTable {
        assert!(size >= WAYS && size % WAYS == 0, "flow table size {size} is not a multiple of {WAYS}");
        FlowTable {
            keys: vec![FlowKey::default(); size],
            server: vec![0; size],
            stamp: vec![0; size],
            sets: (size / WAYS) as u64,
            clock: 1,
            len: 0,
        }
    }

    /// Entries in use.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No entry in use.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Capacity.
    pub fn capacity(&self) -> usize {
        self.keys.len()
    }

    #[inline]
    fn base(&self, hash: u64) -> usize {
        // Lemire's multiply-shift range reduction: no division per packet.
        (((u128::from(hash) * u128::from(self.sets)) >> 64) as usize) * WAYS
    }

    /// The server of `key` (whose [`FlowKey::hash`] is `hash`), refreshing
    /// its recency.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, hash: u64) -> Option<u32> {
        let b = self.base(hash);
        for i in b..b + WAYS {
            if self.stamp[i] != 0 && self.keys[i] == *key {
                self.clock += 1;
                self.stamp[i] = self.clock;
                return Some(self.server[i]);
            }
        }
        None
    }

    /// Records `key` → `server`.
    #[inline]
    pub fn insert(&mut self, key: &FlowKey, hash: u64, server: u32) -> Inserted {
        let b = self.base(hash);
        self.clock += 1;
        let mut victim = b;
        for i in b..b + WAYS {
            if self.stamp[i] != 0 && self.keys[i] == *key {
                self.server[i] = server;
                self.stamp[i] = self.clock;
                return Inserted::Replaced;
            }
            if self.stamp[i] < self.stamp[victim] {
                victim = i;
            }
        }
        let was_empty = self.stamp[victim] == 0;
        self.keys[victim] = *key;
        self.server[victim] = server;
        self.stamp[victim] = self.clock;
        if was_empty {
            self.len += 1;
            Inserted::New
        } else {
            Inserted::Evicted
        }
    }

    /// Forgets every flow (the backend's server list changed, so the indices
    /// the entries hold no longer mean the same servers).
    pub fn clear(&mut self) {
        self.stamp.iter_mut().for_each(|s| *s = 0);
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> FlowKey {
        let mut k = FlowKey { sport: n as u16, dport: 80, proto: 6, ..FlowKey::default() };
        k.src[12..].copy_from_slice(&n.to_be_bytes());
        k
    }

    #[test]
    fn a_flow_inserted_is_found_with_its_server() {
        let mut t = FlowTable::new(64);
        let k = key(1);
        assert_eq!(t.lookup(&k, k.hash()), None);
        assert_eq!(t.insert(&k, k.hash(), 7), Inserted::New);
        assert_eq!(t.lookup(&k, k.hash()), Some(7));
        assert_eq!(t.insert(&k, k.hash(), 3), Inserted::Replaced);
        assert_eq!(t.lookup(&k, k.hash()), Some(3));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_full_set_evicts_its_least_recently_used_entry() {
        // One set: every key lands in it.
        let mut t = FlowTable::new(WAYS);
        for n in 0..WAYS as u32 {
            assert_eq!(t.insert(&key(n), key(n).hash(), n), Inserted::New);
        }
        // Touch all but key 3: it becomes the least recently used.
        for n in (0..WAYS as u32).filter(|n| *n != 3) {
            assert_eq!(t.lookup(&key(n), key(n).hash()), Some(n));
        }
        assert_eq!(t.insert(&key(100), key(100).hash(), 100), Inserted::Evicted);
        assert_eq!(t.lookup(&key(3), key(3).hash()), None, "the LRU entry went");
        for n in (0..WAYS as u32).filter(|n| *n != 3) {
            assert_eq!(t.lookup(&key(n), key(n).hash()), Some(n), "key {n} stayed");
        }
        assert_eq!(t.len(), WAYS);
    }

    #[test]
    fn the_table_holds_its_capacity_and_never_more() {
        let mut t = FlowTable::new(1024);
        let mut evicted = 0;
        for n in 0..4096u32 {
            if t.insert(&key(n), key(n).hash(), n) == Inserted::Evicted {
                evicted += 1;
            }
        }
        // Sets fill unevenly, so a few may evict before every set is full.
        assert!(t.len() <= 1024 && t.len() > 1000, "{}", t.len());
        assert_eq!(evicted + t.len(), 4096);
        let found = (0..4096u32).filter(|n| t.lookup(&key(*n), key(*n).hash()).is_some()).count();
        assert_eq!(found, t.len());
        t.clear();
        assert!(t.is_empty());
        assert_eq!(t.lookup(&key(4095), key(4095).hash()), None);
    }
}
