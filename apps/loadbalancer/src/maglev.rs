//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI'16, §3.4, Pseudocode 1).
//!
//! Each server `i` has a preference list, the permutation
//! `permutation[i][j] = (offset_i + j × skip_i) mod M` of the table's `M`
//! entries (`M` prime, so every `skip` in `1..M` visits each entry once), with
//! `offset_i = h1(name_i) mod M` and `skip_i = h2(name_i) mod (M − 1) + 1`.
//! Population goes in rounds: in each round every server, in order, claims the
//! next entry of its list that is still empty, until the table is full. With
//! equal weights, each server ends with ⌊M/N⌋ or ⌈M/N⌉ entries, and removing
//! a server mostly reassigns only its own entries (the paper's Fig. 12).
//!
//! **Weights** (the paper has none): a server of weight `w` takes a turn in
//! round `r` when `⌊(r + 1)·w / w_max⌋ > ⌊r·w / w_max⌋`, i.e. `w / w_max` turns
//! per round, evenly spread; the heaviest servers take one every round. So
//! entry counts are proportional to weight, equal weights reduce exactly to
//! the paper's algorithm (Table 1 is reproduced below with weights 1), and
//! weight 0 takes no entry.
//!
//! **Determinism**: `h1`/`h2` and the flow hash are fixed functions of bytes
//! (FNV-1a 64 followed by a splitmix64 finaliser, each with its own seed), not
//! Rust's randomly keyed `HashMap` hasher: several `lb` instances with the same
//! servers (names, order, weights) and table size build the same table, so
//! behind ECMP they send a flow to the same server.
//!
//! The table is built off the data path (a control-plane step, at load, on a
//! health change or reload) and each core keeps its own copy.

use std::net::{IpAddr, SocketAddr};

/// A server's place in the table: its preference list parameters and weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pref {
    /// First entry of the preference list.
    pub offset: usize,
    /// Step through the table, 1..M.
    pub skip: usize,
    /// Relative share (0: takes no entry).
    pub weight: u32,
}

/// A populated lookup table: entry → index of the server (in the order given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maglev {
    entries: Vec<u32>,
}

const SEED_OFFSET: u64 = 0x6d61_676c_6576_3031; // "maglev01"
const SEED_SKIP: u64 = 0x6d61_676c_6576_3032; // "maglev02"
const SEED_FLOW: u64 = 0x6d61_676c_6576_3033; // "maglev03"

/// FNV-1a 64 of `bytes` after `seed`, finished with splitmix64 so that nearby
/// names spread over the whole range.
pub fn hash(seed: u64, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.to_le_bytes().iter().chain(bytes) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl Pref {
    /// The preference parameters of the server called `name` in a table of `m`.
    pub fn of(name: &str, m: usize, weight: u32) -> Pref {
        let offset = (hash(SEED_OFFSET, name.as_bytes()) % m as u64) as usize;
        let skip = (hash(SEED_SKIP, name.as_bytes()) % (m as u64 - 1)) as usize + 1;
        Pref { offset, skip, weight }
    }
}

impl Maglev {
    /// Populates a table of `m` entries (`m` prime) from the servers'
    /// preferences; `None` when no server has a weight above 0.
    pub fn populate(m: usize, prefs: &[Pref]) -> Option<Maglev> {
        assert!(m >= 2, "a Maglev table needs at least 2 entries");
        let w_max = prefs.iter().map(|p| p.weight).max().filter(|w| *w > 0)?;
        const EMPTY: u32 = u32::MAX;
        let mut entries = vec![EMPTY; m];
        let mut next = vec![0usize; prefs.len()];
        let mut filled = 0;
        let mut round: u64 = 0;
        'fill: loop {
            for (i, p) in prefs.iter().enumerate() {
                let w = u64::from(p.weight);
                let turn = (round + 1) * w / u64::from(w_max) > round * w / u64::from(w_max);
                if !turn {
                    continue;
                }
                // The next entry of i's list that is still empty; every list
                // visits all m entries, so one is found while the table has room.
                let mut c = (p.offset + next[i] * p.skip) % m;
                while entries[c] != EMPTY {
                    next[i] += 1;
                    c = (p.offset + next[i] * p.skip) % m;
                }
                entries[c] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
            round += 1;
        }
        Some(Maglev { entries })
    }

    /// The table for servers called `names` with `weights` (same order).
    pub fn build(m: usize, names: &[&str], weights: &[u32]) -> Option<Maglev> {
        let prefs: Vec<Pref> = names.iter().zip(weights).map(|(n, w)| Pref::of(n, m, *w)).collect();
        Maglev::populate(m, &prefs)
    }

    /// Table size.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Never true: a table has at least 2 entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The server of entry `e`.
    pub fn entry(&self, e: usize) -> usize {
        self.entries[e] as usize
    }

    /// The whole table.
    pub fn entries(&self) -> &[u32] {
        &self.entries
    }

    /// The entry a flow key hashes to.
    pub fn slot(&self, key: &[u8]) -> usize {
        (hash(SEED_FLOW, key) % self.entries.len() as u64) as usize
    }

    /// The server for a flow key.
    pub fn lookup(&self, key: &[u8]) -> usize {
        self.entry(self.slot(key))
    }
}

/// The bytes hashed for a client: its IP (`source`) or the 4-tuple.
pub fn flow_key(src: SocketAddr, dst: SocketAddr, four_tuple: bool) -> Vec<u8> {
    let mut k = Vec::with_capacity(36);
    let ip = |k: &mut Vec<u8>, a: IpAddr| match a {
        IpAddr::V4(v) => k.extend_from_slice(&v.octets()),
        IpAddr::V6(v) => k.extend_from_slice(&v.octets()),
    };
    ip(&mut k, src.ip());
    if four_tuple {
        k.extend_from_slice(&src.port().to_be_bytes());
        ip(&mut k, dst.ip());
        k.extend_from_slice(&dst.port().to_be_bytes());
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NSDI'16 Table 1: M = 7, B0 (offset 3, skip 4), B1 (0, 2), B2 (3, 1).
    #[test]
    fn reproduces_table_1_of_the_paper_before_and_after_removing_b1() {
        let b0 = Pref { offset: 3, skip: 4, weight: 1 };
        let b1 = Pref { offset: 0, skip: 2, weight: 1 };
        let b2 = Pref { offset: 3, skip: 1, weight: 1 };
        let t = Maglev::populate(7, &[b0, b1, b2]).unwrap();
        // [B1, B0, B1, B0, B2, B2, B0]
        assert_eq!(t.entries(), &[1, 0, 1, 0, 2, 2, 0]);
        // B1 removed: the table over [B0, B2], printed with the old names.
        let t = Maglev::populate(7, &[b0, b2]).unwrap();
        let named: Vec<u32> = t.entries().iter().map(|&i| [0, 2][i as usize]).collect();
        // [B0, B0, B0, B0, B2, B2, B2]
        assert_eq!(named, vec![0, 0, 0, 0, 2, 2, 2]);
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("backend-{i}")).collect()
    }

    fn counts(t: &Maglev, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &e in t.entries() {
            c[e as usize] += 1;
        }
        c
    }

    /// §3.4: each server gets ⌊M/N⌋ or ⌈M/N⌉ entries.
    #[test]
    fn a_thousand_servers_in_65537_entries_hold_65_or_66_each() {
        let n = names(1000);
        let refs: Vec<&str> = n.iter().map(String::as_str).collect();
        let t = Maglev::build(65537, &refs, &vec![1; 1000]).unwrap();
        let c = counts(&t, 1000);
        assert!(c.iter().all(|&k| k == 65 || k == 66), "{:?}", (c.iter().min(), c.iter().max()));
        assert_eq!(c.iter().filter(|&&k| k == 66).count(), 537);
    }

    /// Fig. 12: with M = 65537 and 1 % of 1000 servers removed, about 2.3 %
    /// of the remaining servers' entries move.
    #[test]
    fn removing_one_percent_of_servers_moves_about_two_percent_of_the_others_entries() {
        let n = names(1000);
        let refs: Vec<&str> = n.iter().map(String::as_str).collect();
        let before = Maglev::build(65537, &refs, &vec![1; 1000]).unwrap();
        // Remove every 100th server (10 of them).
        let kept: Vec<usize> = (0..1000).filter(|i| i % 100 != 7).collect();
        let kept_names: Vec<&str> = kept.iter().map(|&i| refs[i]).collect();
        let after = Maglev::build(65537, &kept_names, &vec![1; kept.len()]).unwrap();
        let mut theirs = 0;
        let mut moved = 0;
        for e in 0..65537 {
            let b = before.entry(e);
            if b % 100 == 7 {
                continue;
            }
            theirs += 1;
            if kept[after.entry(e)] != b {
                moved += 1;
            }
        }
        let frac = moved as f64 / theirs as f64;
        eprintln!("{moved} of {theirs} entries of the remaining servers moved: {:.2} %", frac * 100.0);
        assert!((0.018..0.028).contains(&frac), "{:.2} % of entries moved", frac * 100.0);
    }

    #[test]
    fn entries_follow_weights_and_weight_zero_takes_none() {
        let t = Maglev::build(65537, &["a", "b", "c", "d"], &[4, 2, 1, 0]).unwrap();
        let c = counts(&t, 4);
        assert_eq!(c[3], 0);
        let unit = 65537.0 / 7.0;
        for (i, w) in [4.0, 2.0, 1.0].iter().enumerate() {
            let share = c[i] as f64 / (unit * w);
            assert!((0.99..1.01).contains(&share), "server {i}: {} entries for weight {w}", c[i]);
        }
        assert!(Maglev::build(7, &["a"], &[0]).is_none());
    }

    #[test]
    fn the_same_servers_build_the_same_table_and_flows_land_alike() {
        let a = Maglev::build(65537, &["s1", "s2", "s3"], &[1, 1, 1]).unwrap();
        let b = Maglev::build(65537, &["s1", "s2", "s3"], &[1, 1, 1]).unwrap();
        assert_eq!(a, b);
        // Pinned values: a change of hash function (and so of every running
        // instance's choices) must be deliberate.
        assert_eq!(hash(0, b"s1"), 14_999_728_723_581_666_416);
        assert_eq!(&a.entries()[..8], &[2, 0, 0, 1, 1, 2, 2, 0]);
        assert_ne!(hash(0, b"s1"), hash(1, b"s1"));
        let k = flow_key("198.18.0.9:5555".parse().unwrap(), "198.18.1.1:80".parse().unwrap(), false);
        assert_eq!(k, vec![198, 18, 0, 9]);
        assert_eq!(a.lookup(&k), b.lookup(&k));
        let k4 = flow_key("[2001:2::9]:5555".parse().unwrap(), "[2001:2::1]:80".parse().unwrap(), true);
        assert_eq!(k4.len(), 16 + 2 + 16 + 2);
    }

    #[test]
    fn a_source_keeps_its_server_when_an_unrelated_server_goes() {
        let n = names(10);
        let refs: Vec<&str> = n.iter().map(String::as_str).collect();
        let before = Maglev::build(65537, &refs, &[1; 10]).unwrap();
        let after = Maglev::build(65537, &refs[..9], &[1; 9]).unwrap();
        let mut kept = 0;
        let mut total = 0;
        for i in 0..2000u32 {
            let k = i.to_be_bytes();
            if before.lookup(&k) == 9 {
                continue;
            }
            total += 1;
            kept += usize::from(before.lookup(&k) == after.lookup(&k));
        }
        // Maglev trades a little disruption for balance: nearly all stay.
        assert!(kept * 100 >= total * 95, "{kept} of {total} kept their server");
    }
}
