//! The per-core timer service: a hierarchical timer wheel.
//!
//! Varghese and Lauck's hierarchical wheel (the shape Linux, tokio and Seastar
//! use): [`LEVELS`] levels of [`SLOTS`] slots each. Level *L* holds timers due
//! between `64^L` and `64^(L+1)` ticks from now, in the slot of their deadline's
//! level-*L* digit; when the clock crosses a level-*L* boundary, that level's
//! current slot is *cascaded*: its timers move down to a finer level. Each timer
//! is therefore touched at most `LEVELS` times in its life, however long it is.
//!
//! * insert and cancel are O(1): timers live in a slab and each slot is an
//!   intrusive doubly linked list of slab indices (no allocation once the slab has
//!   grown to the peak number of timers);
//! * expiry is per tick: advancing the clock visits one level-0 slot per elapsed
//!   tick (plus one cascade per boundary), never the set of all timers. An
//!   occupancy bitmap per level makes empty slots free, and an empty wheel jumps
//!   straight to the target tick.
//! * Deadlines beyond the wheel's span (`64^4` ticks, 4.6 hours at 1 ms) park in
//!   the top level and are re-placed when their slot comes round.
//!
//! Time is an input: the wheel never reads a clock, the caller passes `now_ns`
//! (from a [`pmd::Clock`]). A timer fires at the first [`TimerWheel::advance`]
//! whose tick is at or after its deadline rounded *up* to a tick, so it never
//! fires early. Written by hand because it is on the stack's data path (TCP's
//! retransmission and delayed-ACK timers) and the crates that exist are tied to
//! an async runtime's clock.

use crate::error::ConfigError;

/// Slots per level.
pub const SLOTS: usize = 64;
/// Number of levels.
pub const LEVELS: usize = 4;
const BITS: u32 = 6;
const NIL: u32 = u32::MAX;

/// Names one armed timer, for [`TimerWheel::cancel`]. A stale id (its timer
/// fired or was cancelled) is harmless: the generation no longer matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

struct Entry<T> {
    deadline: u64,
    prev: u32,
    next: u32,
    /// `level * SLOTS + slot` while armed.
    bucket: u32,
    generation: u32,
    payload: Option<T>,
}

/// A hierarchical timer wheel carrying a payload `T` per timer.
pub struct TimerWheel<T> {
    tick_ns: u64,
    /// The last tick processed.
    now: u64,
    heads: Vec<u32>,
    occupied: [u64; LEVELS],
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> TimerWheel<T> {
    /// A wheel with a tick of `tick_ns` nanoseconds, starting at `now_ns`.
    pub fn new(tick_ns: u64, now_ns: u64) -> Result<Self, ConfigError> {
        if tick_ns == 0 {
            return Err(ConfigError::invalid("timer.tick_ns", "must be at least 1 ns"));
        }
        Ok(TimerWheel {
            tick_ns,
            now: now_ns / tick_ns,
            heads: vec![NIL; SLOTS * LEVELS],
            occupied: [0; LEVELS],
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        })
    }

    /// Tick length in nanoseconds.
    pub fn tick_ns(&self) -> u64 {
        self.tick_ns
    }

    /// Number of armed timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Arms a timer that fires at `deadline_ns` (or on the next tick if that has
    /// passed). O(1).
    pub fn insert(&mut self, deadline_ns: u64, payload: T) -> TimerId {
        let deadline = deadline_ns.div_ceil(self.tick_ns).max(self.now + 1);
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push(Entry { deadline: 0, prev: NIL, next: NIL, bucket: 0, generation: 0, payload: None });
                (self.entries.len() - 1) as u32
            }
        };
        let e = &mut self.entries[index as usize];
        e.deadline = deadline;
        e.payload = Some(payload);
        let generation = e.generation;
        self.place(index);
        self.len += 1;
        TimerId { index, generation }
    }

    /// Disarms a timer and returns its payload, or `None` if it already fired or
    /// was cancelled. O(1).
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let e = self.entries.get(id.index as usize)?;
        if e.generation != id.generation || e.payload.is_none() {
            return None;
        }
        self.unlink(id.index);
        Some(self.release(id.index))
    }

    /// Whether `id` is still armed.
    pub fn is_armed(&self, id: TimerId) -> bool {
        self.entries.get(id.index as usize).is_some_and(|e| e.generation == id.generation && e.payload.is_some())
    }

    /// Advances the wheel to `now_ns` and appends the payload of every timer due
    /// by then to `expired`, in deadline order (ties in insertion order within a
    /// tick is not guaranteed). Returns how many fired.
    pub fn advance(&mut self, now_ns: u64, expired: &mut Vec<T>) -> usize {
        let target = now_ns / self.tick_ns;
        let before = expired.len();
        while self.now < target {
            if self.len == 0 {
                self.now = target;
                break;
            }
            let t = self.now + 1;
            self.now = t;
            // Cascade the levels whose boundary this tick crosses, coarsest first.
            for level in (1..LEVELS).rev() {
                let shift = BITS * level as u32;
                if t & ((1u64 << shift) - 1) == 0 {
                    let slot = ((t >> shift) as usize) & (SLOTS - 1);
                    if self.occupied[level] & (1 << slot) != 0 {
                        self.cascade(level, slot);
                    }
                }
            }
            let slot = (t as usize) & (SLOTS - 1);
            if self.occupied[0] & (1 << slot) != 0 {
                let mut i = self.take_bucket(slot as u32);
                while i != NIL {
                    let next = self.entries[i as usize].next;
                    expired.push(self.release(i));
                    i = next;
                }
            }
        }
        expired.len() - before
    }

    /// The time (ns) of the next tick boundary at which something may fire, or
    /// `None` when empty: a poll loop may sleep until then.
    pub fn next_tick_ns(&self) -> Option<u64> {
        (self.len > 0).then(|| (self.now + 1) * self.tick_ns)
    }

    /// A lower bound on the time (ns) of the earliest armed timer, or `None`
    /// when empty: a simulation can jump its virtual clock there without
    /// skipping a timer (it may take several jumps to reach a far one, since a
    /// coarse level only knows the start of its slot's range).
    pub fn next_deadline_ns(&self) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let mut best = u64::MAX;
        for (level, &occ) in self.occupied.iter().enumerate() {
            if occ == 0 {
                continue;
            }
            let shift = 6 * level as u32;
            let cur = ((self.now >> shift) % SLOTS as u64) as u32;
            // Distance (in this level's slots) to the first occupied slot after `cur`.
            // Distance 1..=64: a timer in the current slot of a coarse level is
            // a whole rotation ahead (placement is by distance, so its digit
            // came round again); its slot starts 64 slots from now.
            let d = u64::from(occ.rotate_right(cur).rotate_right(1).trailing_zeros() + 1);
            let tick = (((self.now >> shift) + d) << shift).max(self.now + 1);
            best = best.min(tick);
        }
        Some(best.saturating_mul(self.tick_ns))
    }

    fn cascade(&mut self, level: usize, slot: usize) {
        let mut i = self.take_bucket((level * SLOTS + slot) as u32);
        while i != NIL {
            let next = self.entries[i as usize].next;
            self.place(i);
            i = next;
        }
    }

    /// Detaches a whole bucket's list and returns its head.
    fn take_bucket(&mut self, bucket: u32) -> u32 {
        let head = std::mem::replace(&mut self.heads[bucket as usize], NIL);
        let level = bucket as usize / SLOTS;
        self.occupied[level] &= !(1 << (bucket as usize % SLOTS));
        head
    }

    /// Links entry `i` into the bucket its deadline calls for.
    fn place(&mut self, i: u32) {
        let deadline = self.entries[i as usize].deadline;
        let delta = deadline.saturating_sub(self.now);
        let (level, at) = if delta < SLOTS as u64 {
            (0, deadline)
        } else {
            let bits = 63 - delta.leading_zeros();
            let level = (bits / BITS) as usize;
            if level < LEVELS {
                (level, deadline)
            } else {
                // Beyond the span: park at the furthest reachable top-level slot.
                let span = 1u64 << (BITS * LEVELS as u32);
                (LEVELS - 1, self.now + span - 1)
            }
        };
        let slot = ((at >> (BITS * level as u32)) as usize) & (SLOTS - 1);
        let bucket = (level * SLOTS + slot) as u32;
        let head = self.heads[bucket as usize];
        {
            let e = &mut self.entries[i as usize];
            e.prev = NIL;
            e.next = head;
            e.bucket = bucket;
        }
        if head != NIL {
            self.entries[head as usize].prev = i;
        }
        self.heads[bucket as usize] = i;
        self.occupied[level] |= 1 << slot;
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next, bucket) = {
            let e = &self.entries[i as usize];
            (e.prev, e.next, e.bucket)
        };
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else {
            self.heads[bucket as usize] = next;
            if next == NIL {
                self.occupied[bucket as usize / SLOTS] &= !(1 << (bucket as usize % SLOTS));
            }
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
    }

    fn release(&mut self, i: u32) -> T {
        let e = &mut self.entries[i as usize];
        e.generation = e.generation.wrapping_add(1);
        e.prev = NIL;
        e.next = NIL;
        self.free.push(i);
        self.len -= 1;
        e.payload.take().expect("armed entry has a payload")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        #[test]
        fn next_deadline_is_a_lower_bound_and_jumping_reaches_every_timer(
            start in 0u64..1_000_000,
            deadlines in proptest::collection::vec(1u64..2_000_000, 1..20),
        ) {
            let mut w = TimerWheel::new(1, start).unwrap();
            for d in &deadlines {
                w.insert(start + d, *d);
            }
            let mut fired = Vec::new();
            let mut now = start;
            let mut jumps = 0;
            while let Some(t) = w.next_deadline_ns() {
                let earliest = deadlines.iter().filter(|d| !fired.contains(*d)).map(|d| start + d).min().unwrap();
                prop_assert!(t <= earliest, "bound {} after the earliest deadline {}", t, earliest);
                prop_assert!(t > now);
                now = t;
                w.advance(now, &mut fired);
                jumps += 1;
                prop_assert!(jumps < 1000);
            }
            prop_assert_eq!(fired.len(), deadlines.len());
        }
    }

    #[test]
    fn fires_at_deadline_never_early() {
        let mut w = TimerWheel::new(MS, 0).unwrap();
        w.insert(5 * MS, 'a');
        w.insert(5 * MS + 1, 'b');
        let mut out = Vec::new();
        assert_eq!(w.advance(4 * MS, &mut out), 0);
        assert_eq!(w.advance(5 * MS, &mut out), 1);
        assert_eq!(out, ['a']);
        assert_eq!(w.advance(6 * MS - 1, &mut out), 0);
        assert_eq!(w.advance(6 * MS, &mut out), 1);
        assert_eq!(out, ['a', 'b']);
        assert!(w.is_empty());
    }

    #[test]
    fn cancel_is_o1_and_stale_ids_are_harmless() {
        let mut w = TimerWheel::new(MS, 0).unwrap();
        let a = w.insert(10 * MS, 1);
        let b = w.insert(10 * MS, 2);
        let c = w.insert(10 * MS, 3);
        assert_eq!(w.cancel(b), Some(2));
        assert_eq!(w.cancel(b), None);
        assert!(w.is_armed(a) && !w.is_armed(b));
        let mut out = Vec::new();
        w.advance(10 * MS, &mut out);
        out.sort();
        assert_eq!(out, [1, 3]);
        assert_eq!(w.cancel(a), None);
        assert_eq!(w.cancel(c), None);
        // The freed slot is reused with a new generation: the old id stays dead.
        let d = w.insert(20 * MS, 4);
        assert_eq!(w.cancel(a), None);
        assert_eq!(w.cancel(d), Some(4));
    }

    #[test]
    fn long_timers_cascade_through_every_level() {
        let mut w = TimerWheel::new(1, 0).unwrap();
        let deadlines =
            [63u64, 64, 65, 4095, 4096, 4097, 262_143, 262_144, 300_000, 16_777_215, 16_777_216, 40_000_000];
        for (i, d) in deadlines.iter().enumerate() {
            w.insert(*d, i);
        }
        let mut out = Vec::new();
        for (i, d) in deadlines.iter().enumerate() {
            w.advance(d - 1, &mut out);
            assert!(!out.contains(&i), "timer {i} (deadline {d}) fired early");
            w.advance(*d, &mut out);
            assert!(out.contains(&i), "timer {i} (deadline {d}) did not fire");
        }
        assert!(w.is_empty());
    }

    #[test]
    fn zero_tick_is_a_config_error_naming_the_field() {
        let e = TimerWheel::<()>::new(0, 0).err().unwrap().to_string();
        assert!(e.contains("timer.tick_ns"), "{e}");
    }

    proptest! {
        /// Against a model: every timer fires exactly once, at the first advance at
        /// or after its deadline (rounded up to a tick); cancelled ones never.
        #[test]
        fn matches_model(ops in proptest::collection::vec((0u8..4, 0u64..200_000, any::<bool>()), 1..200)) {
            let tick = 7u64;
            let mut w = TimerWheel::new(tick, 0).unwrap();
            let mut now = 0u64;
            // (id, effective deadline tick, payload)
            let mut armed: Vec<(TimerId, u64, usize)> = Vec::new();
            let mut next_id = 0usize;
            let mut out = Vec::new();
            for (op, v, flag) in ops {
                match op {
                    0 | 1 => {
                        let d = now + v;
                        let id = w.insert(d, next_id);
                        armed.push((id, d.div_ceil(tick).max(now / tick + 1), next_id));
                        next_id += 1;
                    }
                    2 if !armed.is_empty() && flag => {
                        let k = (v as usize) % armed.len();
                        let (id, _, p) = armed.swap_remove(k);
                        prop_assert_eq!(w.cancel(id), Some(p));
                    }
                    _ => {
                        now += v / 4;
                        out.clear();
                        w.advance(now, &mut out);
                        let due: Vec<usize> = armed
                            .iter()
                            .filter(|(_, d, _)| *d <= now / tick)
                            .map(|&(_, _, p)| p)
                            .collect();
                        let mut got = out.clone();
                        got.sort();
                        let mut want = due.clone();
                        want.sort();
                        prop_assert_eq!(got, want);
                        armed.retain(|(_, _, p)| !due.contains(p));
                    }
                }
                prop_assert_eq!(w.len(), armed.len());
            }
        }
    }
}
