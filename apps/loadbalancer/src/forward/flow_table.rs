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
//! Layout: per set, one 64-byte line of eight 32-bit tags (hash bits) and
//! eight 32-bit use stamps, then the entries (key and server) apart; a
//! lookup reads the set's line and, on a tag match, one entry — two cache
//! lines per packet, which is what a table far larger than the caches costs.
//!
//! Invariants: the table never allocates after [`FlowTable::new`]; its
//! capacity is `sets × WAYS` exactly; a tag of 0 marks an empty way (real
//! tags have bit 0 set); stamps wrap (a `u32` clock), recency is compared as
//! `clock - stamp`, exact while a set's entries are used within 2^31
//! operations of each other. Per core, no lock: `&mut self` everywhere.

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
    /// A 64-bit hash of the key: a fixed function (no random key), so two
    /// instances agree; five 64-bit words mixed by multiply-xorshift
    /// (splitmix64's finaliser per word), a few nanoseconds where the
    /// byte-wise FNV of `maglev::hash` took tens.
    #[inline]
    pub fn hash(&self) -> u64 {
        let w = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let tail = u64::from(self.sport) | u64::from(self.dport) << 16 | u64::from(self.proto) << 32;
        let mut h: u64 = 0x666c_6f77_7462_6c31; // "flowtbl1"
        for x in [w(&self.src[..8]), w(&self.src[8..]), w(&self.dst[..8]), w(&self.dst[8..]), tail] {
            h = (h ^ x).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            h ^= h >> 31;
        }
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
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

/// One set's tags and stamps: one cache line, so a lookup reads this line
/// and, on a tag match, the matching entry's line: two lines per packet
/// instead of a scan over eight keys.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Head {
    /// High hash bits of each way's key, with bit 0 set (0: empty way).
    tags: [u32; WAYS],
    /// Clock at each way's last use (wrapping; the oldest is the largest
    /// `clock - stamp`).
    stamps: [u32; WAYS],
}

/// One way: the key and its server.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    key: FlowKey,
    server: u32,
}

/// The table.
#[derive(Debug)]
pub struct FlowTable {
    heads: Vec<Head>,
    entries: Vec<Entry>,
    sets: u64,
    clock: u32,
    len: usize,
}

impl FlowTable {
    /// A table of `size` entries (a multiple of [`WAYS`], at least `WAYS`).
    pub fn new(size: usize) -> FlowTable {
        assert!(size >= WAYS && size % WAYS == 0, "flow table size {size} is not a multiple of {WAYS}");
        FlowTable {
            heads: vec![Head::default(); size / WAYS],
            entries: vec![Entry::default(); size],
            sets: (size / WAYS) as u64,
            clock: 0,
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
        self.entries.len()
    }

    #[inline]
    fn set(&self, hash: u64) -> usize {
        // Lemire's multiply-shift range reduction: no division per packet.
        ((u128::from(hash) * u128::from(self.sets)) >> 64) as usize
    }

    #[inline]
    fn tag(hash: u64) -> u32 {
        (hash as u32) | 1
    }

    #[inline]
    fn find(&self, set: usize, tag: u32, key: &FlowKey) -> Option<usize> {
        let h = &self.heads[set];
        (0..WAYS).find(|&w| h.tags[w] == tag && self.entries[set * WAYS + w].key == *key)
    }

    /// The server of `key` (whose [`FlowKey::hash`] is `hash`), refreshing
    /// its recency.
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, hash: u64) -> Option<u32> {
        let set = self.set(hash);
        let w = self.find(set, Self::tag(hash), key)?;
        self.clock = self.clock.wrapping_add(1);
        self.heads[set].stamps[w] = self.clock;
        Some(self.entries[set * WAYS + w].server)
    }

    /// Records `key` → `server`.
    #[inline]
    pub fn insert(&mut self, key: &FlowKey, hash: u64, server: u32) -> Inserted {
        let (set, tag) = (self.set(hash), Self::tag(hash));
        self.clock = self.clock.wrapping_add(1);
        let clock = self.clock;
        if let Some(w) = self.find(set, tag, key) {
            self.heads[set].stamps[w] = clock;
            self.entries[set * WAYS + w].server = server;
            return Inserted::Replaced;
        }
        let h = &mut self.heads[set];
        let (w, new) = match h.tags.iter().position(|t| *t == 0) {
            Some(w) => (w, true),
            None => ((0..WAYS).max_by_key(|&w| clock.wrapping_sub(h.stamps[w])).unwrap_or(0), false),
        };
        h.tags[w] = tag;
        h.stamps[w] = clock;
        self.entries[set * WAYS + w] = Entry { key: *key, server };
        if new {
            self.len += 1;
            Inserted::New
        } else {
            Inserted::Evicted
        }
    }

    /// Forgets every flow (the backend's server list changed, so the indices
    /// the entries hold no longer mean the same servers).
    pub fn clear(&mut self) {
        self.heads.iter_mut().for_each(|h| *h = Head::default());
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
