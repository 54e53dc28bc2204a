//! The per-core answer cache: (name, family) → addresses until their TTL runs
//! out, at most `capacity` entries. One per resolver, and a resolver per core,
//! so no locks (shared-nothing, as the stacks are).
//!
//! Invariants: an entry is never returned at or after its expiry; the cache
//! never holds more than `capacity` entries (when full, the expired go first,
//! then the one that would expire soonest); a capacity of 0 caches nothing.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::happy_eyeballs::Family;

struct Entry {
    addrs: Vec<IpAddr>,
    expires_ns: u64,
}

/// The cache.
pub struct Cache {
    capacity: usize,
    map: HashMap<(String, Family), Entry>,
}

impl Cache {
    /// An empty cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> Cache {
        Cache { capacity, map: HashMap::new() }
    }

    /// The live answer for `name`/`family` at `now`.
    pub fn get(&mut self, name: &str, family: Family, now: u64) -> Option<Vec<IpAddr>> {
        let k = (name.to_string(), family);
        match self.map.get(&k) {
            Some(e) if now < e.expires_ns => Some(e.addrs.clone()),
            Some(_) => {
                self.map.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Keeps `addrs` for `ttl_s` seconds from `now` (a TTL of 0 is not kept).
    pub fn put(&mut self, name: &str, family: Family, addrs: Vec<IpAddr>, ttl_s: u32, now: u64) {
        if self.capacity == 0 || ttl_s == 0 {
            return;
        }
        let k = (name.to_string(), family);
        if !self.map.contains_key(&k) && self.map.len() >= self.capacity {
            self.map.retain(|_, e| now < e.expires_ns);
            if self.map.len() >= self.capacity {
                let soonest = self.map.iter().min_by_key(|(_, e)| e.expires_ns).map(|(k, _)| k.clone());
                if let Some(s) = soonest {
                    self.map.remove(&s);
                }
            }
        }
        self.map.insert(k, Entry { addrs, expires_ns: now.saturating_add(ttl_s as u64 * 1_000_000_000) });
    }

    /// Entries held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn ttl_is_honoured_and_the_cap_holds() {
        let mut c = Cache::new(2);
        let a: Vec<IpAddr> = vec!["198.18.0.2".parse().unwrap()];
        c.put("a.test", Family::V4, a.clone(), 5, 0);
        assert_eq!(c.get("a.test", Family::V4, 4 * S), Some(a.clone()));
        assert_eq!(c.get("a.test", Family::V4, 5 * S), None, "expired at its TTL");
        c.put("a.test", Family::V4, a.clone(), 10, 0);
        c.put("b.test", Family::V4, a.clone(), 20, 0);
        c.put("c.test", Family::V4, a.clone(), 30, 0);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("a.test", Family::V4, 1), None, "the soonest to expire went");
        assert!(c.get("c.test", Family::V4, 1).is_some());
        let mut z = Cache::new(0);
        z.put("a.test", Family::V4, a, 5, 0);
        assert!(z.is_empty());
    }
}
