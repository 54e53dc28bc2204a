//! A bounded single-producer/single-consumer ring of owned values.
//!
//! This is the wire of the `ring` driver, so it is written for bursts: a producer
//! publishes a whole burst with one release store, and each side caches the other
//! side's index so that in the steady state a burst touches the shared cache lines
//! once (the same trick as `rte_ring`'s SP/SC mode). Single-producer and
//! single-consumer are enforced by ownership: [`Spsc::producer`] and
//! [`Spsc::consumer`] hand out at most one live handle each.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

/// The ring. Indices grow without bound (wrapping); `index & mask` is the slot.
pub struct Spsc<T> {
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
    /// Next slot to read; written by the consumer only.
    head: CachePadded<AtomicUsize>,
    /// Next slot to write; written by the producer only.
    tail: CachePadded<AtomicUsize>,
    producer_taken: AtomicBool,
    consumer_taken: AtomicBool,
}

// SAFETY: a slot is written only by the single producer before it publishes `tail`
// (release) and read only by the single consumer after it observes `tail` (acquire),
// and vice versa for `head`; values are moved across threads, so `T: Send` suffices.
unsafe impl<T: Send> Sync for Spsc<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Spsc<T> {}

impl<T> Spsc<T> {
    /// A ring with room for `capacity` values (rounded up to a power of two).
    pub fn new(capacity: usize) -> Arc<Self> {
        let cap = capacity.max(1).next_power_of_two();
        Arc::new(Spsc {
            slots: (0..cap).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect(),
            mask: cap - 1,
            head: CachePadded::new(AtomicUsize::new(0)),
            tail: CachePadded::new(AtomicUsize::new(0)),
            producer_taken: AtomicBool::new(false),
            consumer_taken: AtomicBool::new(false),
        })
    }

    /// Capacity in values.
    pub fn capacity(&self) -> usize {
        self.mask + 1
    }

    /// Values currently queued (a snapshot).
    pub fn len(&self) -> usize {
        self.tail.load(Ordering::Acquire).wrapping_sub(self.head.load(Ordering::Acquire))
    }

    /// Whether the ring is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The producer handle, unless one is already live.
    pub fn producer(self: &Arc<Self>) -> Option<Producer<T>> {
        if self.producer_taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(Producer {
            staged: 0,
            tail: self.tail.load(Ordering::Acquire),
            head_cache: self.head.load(Ordering::Acquire),
            ring: self.clone(),
        })
    }

    /// The consumer handle, unless one is already live.
    pub fn consumer(self: &Arc<Self>) -> Option<Consumer<T>> {
        if self.consumer_taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(Consumer {
            head: self.head.load(Ordering::Acquire),
            tail_cache: self.tail.load(Ordering::Acquire),
            ring: self.clone(),
        })
    }
}

impl<T> Drop for Spsc<T> {
    fn drop(&mut self) {
        let (mut h, t) = (*self.head.get_mut(), *self.tail.get_mut());
        while h != t {
            // SAFETY: slots in head..tail are initialised and owned by the ring, and
            // `&mut self` means no handle is live.
            unsafe { self.slots[h & self.mask].get_mut().assume_init_drop() };
            h = h.wrapping_add(1);
        }
    }
}

/// The writing end.
pub struct Producer<T> {
    ring: Arc<Spsc<T>>,
    tail: usize,
    head_cache: usize,
    /// Values written after `tail` but not yet published.
    staged: usize,
}

impl<T> Producer<T> {
    /// Free slots, refreshing the cached consumer index only if the cached value
    /// shows fewer than `want`.
    #[inline]
    pub fn free_space(&mut self, want: usize) -> usize {
        let cap = self.ring.mask + 1;
        let mut free = cap - self.tail.wrapping_sub(self.head_cache);
        if free < want {
            self.head_cache = self.ring.head.load(Ordering::Acquire);
            free = cap - self.tail.wrapping_sub(self.head_cache);
        }
        free
    }

    /// Moves up to `n` values from the front of `v` into the ring; returns how many.
    /// A plain copy (at most two `memcpy`s), no per-value work.
    #[inline]
    pub fn push_front_of(&mut self, v: &mut Vec<T>, n: usize) -> usize {
        let n = n.min(v.len()).min(self.free_space(n.min(v.len()) + self.staged) - self.staged);
        if n == 0 {
            return 0;
        }
        let mask = self.ring.mask;
        let base = self.ring.slots.as_ptr() as *mut T;
        let start = self.tail.wrapping_add(self.staged) & mask;
        let first = n.min(mask + 1 - start);
        // SAFETY: as in `stage_front_of`: `v[..n]` is moved (bitwise) into `n` free,
        // unpublished slots in two in-bounds runs, then forgotten by the Vec.
        unsafe {
            std::ptr::copy_nonoverlapping(v.as_ptr(), base.add(start), first);
            if n > first {
                std::ptr::copy_nonoverlapping(v.as_ptr().add(first), base, n - first);
            }
            let rest = v.len() - n;
            if rest > 0 {
                std::ptr::copy(v.as_ptr().add(n), v.as_mut_ptr(), rest);
            }
            v.set_len(rest);
        }
        self.staged += n;
        self.publish()
    }

    /// Queues one value; gives it back if the ring is full.
    #[inline]
    pub fn push(&mut self, val: T) -> Result<(), T> {
        if self.free_space(self.staged + 1) <= self.staged {
            return Err(val);
        }
        let mask = self.ring.mask;
        let base = self.ring.slots.as_ptr() as *mut T;
        // SAFETY: a free, unpublished, in-bounds slot that only this producer writes.
        unsafe { base.add(self.tail.wrapping_add(self.staged) & mask).write(val) };
        self.staged += 1;
        self.publish();
        Ok(())
    }

    /// Like [`push_front_of`](Self::push_front_of), converting each value with `f`
    /// on the way in (e.g. to carry a length next to a buffer).
    #[inline]
    pub fn push_front_of_with<U>(&mut self, v: &mut Vec<U>, n: usize, f: impl FnMut(U) -> T) -> usize {
        self.stage_front_of(v, n, f);
        self.publish()
    }
}

impl<T> Producer<T> {
    /// Moves up to `n` values from the front of `v` into free slots, converted by
    /// `f`, *without* making them visible to the consumer yet (see
    /// [`filter_staged`](Self::filter_staged) and [`publish`](Self::publish)).
    /// Returns how many were staged.
    ///
    /// Slot `i` of the batch always goes to `tail + staged + i`, so store addresses
    /// never depend on the values: the loop does not serialise on loads `f` makes.
    #[inline]
    pub fn stage_front_of<U>(&mut self, v: &mut Vec<U>, n: usize, mut f: impl FnMut(U) -> T) -> usize {
        let cap = self.ring.mask + 1;
        let want = n.min(v.len());
        let free = self.free_space(want + self.staged) - self.staged;
        let n = want.min(free);
        if n == 0 {
            return 0;
        }
        let mask = self.ring.mask;
        let base = self.ring.slots.as_ptr() as *mut T;
        let src = v.as_ptr();
        let start = self.tail.wrapping_add(self.staged) & mask;
        let first = n.min(cap - start);
        // SAFETY: `v[i]` (i < n <= v.len()) is initialised and moved out exactly
        // once; the Vec is shrunk below without dropping it. The slots written are
        // the `n <= free` slots after the staged ones, in two in-bounds runs; none is
        // visible to the consumer until `publish`, and only this producer writes.
        // `UnsafeCell<MaybeUninit<T>>` has `T`'s layout.
        unsafe {
            for i in 0..first {
                base.add(start + i).write(f(std::ptr::read(src.add(i))));
            }
            for i in first..n {
                base.add(i - first).write(f(std::ptr::read(src.add(i))));
            }
            let rest = v.len() - n;
            if rest > 0 {
                std::ptr::copy(v.as_ptr().add(n), v.as_mut_ptr(), rest);
            }
            v.set_len(rest);
        }
        self.staged += n;
        n
    }

    /// Passes every staged value through `keep`, in order; those it returns `None`
    /// for leave the stage (`keep` has taken care of them).
    pub fn filter_staged(&mut self, mut keep: impl FnMut(T) -> Option<T>) {
        let mask = self.ring.mask;
        let base = self.ring.slots.as_ptr() as *mut T;
        let mut kept = 0;
        for i in 0..self.staged {
            // SAFETY: staged slots `tail..tail+staged` are initialised and private to
            // the producer; each is read once and, if kept, rewritten at a position
            // `<= i` that has already been read.
            unsafe {
                let val = base.add(self.tail.wrapping_add(i) & mask).read();
                if let Some(val) = keep(val) {
                    base.add(self.tail.wrapping_add(kept) & mask).write(val);
                    kept += 1;
                }
            }
        }
        self.staged = kept;
    }

    /// Makes the staged values visible to the consumer with one release store;
    /// returns how many.
    #[inline]
    pub fn publish(&mut self) -> usize {
        let n = self.staged;
        if n > 0 {
            self.tail = self.tail.wrapping_add(n);
            self.staged = 0;
            self.ring.tail.store(self.tail, Ordering::Release);
        }
        n
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        // Staged values were never published: drop them here.
        self.filter_staged(|v| {
            drop(v);
            None
        });
        self.ring.producer_taken.store(false, Ordering::Release);
    }
}

/// The reading end.
pub struct Consumer<T> {
    ring: Arc<Spsc<T>>,
    head: usize,
    tail_cache: usize,
}

impl<T> Consumer<T> {
    /// Moves up to `max` values from the ring to the end of `out`; returns how many.
    /// A plain copy (at most two `memcpy`s), no per-value work.
    #[inline]
    pub fn pop_into(&mut self, out: &mut Vec<T>, max: usize) -> usize {
        let n = self.available(max).min(max);
        if n == 0 {
            return 0;
        }
        out.reserve(n);
        let mask = self.ring.mask;
        let base = self.ring.slots.as_ptr() as *const T;
        let start = self.head & mask;
        let first = n.min(mask + 1 - start);
        let len = out.len();
        // SAFETY: as in `pop_into_with`: `n` published slots in two in-bounds runs,
        // moved (bitwise) into reserved capacity, then released to the producer.
        unsafe {
            std::ptr::copy_nonoverlapping(base.add(start), out.as_mut_ptr().add(len), first);
            if n > first {
                std::ptr::copy_nonoverlapping(base, out.as_mut_ptr().add(len + first), n - first);
            }
            out.set_len(len + n);
        }
        self.head = self.head.wrapping_add(n);
        self.ring.head.store(self.head, Ordering::Release);
        n
    }

    /// Values published and not yet taken, refreshing the cached producer index
    /// only if the cached value shows fewer than `want`.
    #[inline]
    pub fn available(&mut self, want: usize) -> usize {
        let mut avail = self.tail_cache.wrapping_sub(self.head);
        if avail < want {
            self.tail_cache = self.ring.tail.load(Ordering::Acquire);
            avail = self.tail_cache.wrapping_sub(self.head);
        }
        avail
    }

    /// Takes one value, if any is published.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.available(1) == 0 {
            return None;
        }
        let base = self.ring.slots.as_ptr() as *const T;
        // SAFETY: a published slot, read once, then released to the producer.
        let val = unsafe { base.add(self.head & self.ring.mask).read() };
        self.head = self.head.wrapping_add(1);
        self.ring.head.store(self.head, Ordering::Release);
        Some(val)
    }

    /// Like [`pop_into`](Self::pop_into), converting each value with `f` on the
    /// way out.
    #[inline]
    pub fn pop_into_with<U>(&mut self, out: &mut Vec<U>, max: usize, mut f: impl FnMut(T) -> U) -> usize {
        let mut avail = self.tail_cache.wrapping_sub(self.head);
        if avail < max {
            self.tail_cache = self.ring.tail.load(Ordering::Acquire);
            avail = self.tail_cache.wrapping_sub(self.head);
        }
        let n = avail.min(max);
        if n == 0 {
            return 0;
        }
        out.reserve(n);
        let mask = self.ring.mask;
        let len = out.len();
        let base = self.ring.slots.as_ptr() as *const T;
        let dst = out.as_mut_ptr();
        let start = self.head & mask;
        let first = n.min(mask + 1 - start);
        // SAFETY: slots `head..head+n` (two runs, as in `push_front_of_with`) are
        // initialised (published by the producer's release store, observed by our
        // acquire load) and owned by the ring; each is moved out exactly once into
        // capacity reserved above. `UnsafeCell<MaybeUninit<T>>` has `T`'s layout.
        unsafe {
            for i in 0..first {
                dst.add(len + i).write(f(base.add(start + i).read()));
            }
            for i in first..n {
                dst.add(len + i).write(f(base.add(i - first).read()));
            }
        }
        // SAFETY: `len + n <= capacity` (reserved) and the new elements are written.
        unsafe { out.set_len(len + n) };
        self.head = self.head.wrapping_add(n);
        self.ring.head.store(self.head, Ordering::Release);
        n
    }

    /// Values waiting (a snapshot).
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether nothing is waiting (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.ring.consumer_taken.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_order_and_capacity() {
        let r = Spsc::<u32>::new(5);
        assert_eq!(r.capacity(), 8);
        let mut p = r.producer().unwrap();
        let mut c = r.consumer().unwrap();
        assert!(r.producer().is_none() && r.consumer().is_none());
        let mut v: Vec<u32> = (0..10).collect();
        assert_eq!(p.push_front_of(&mut v, 10), 8);
        assert_eq!(v, vec![8, 9]);
        let mut out = vec![];
        assert_eq!(c.pop_into(&mut out, 3), 3);
        assert_eq!(p.push_front_of(&mut v, 10), 2);
        assert_eq!(c.pop_into(&mut out, 100), 7);
        assert_eq!(out, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn staged_values_are_filtered_published_or_dropped() {
        let r = Spsc::<Arc<u32>>::new(4);
        let mut p = r.producer().unwrap();
        let mut c = r.consumer().unwrap();
        let vals: Vec<Arc<u32>> = (0..6).map(Arc::new).collect();
        let mut v = vals.clone();
        assert_eq!(p.stage_front_of(&mut v, 6, |x| x), 4, "only free slots are staged");
        let mut out = vec![];
        assert_eq!(c.pop_into(&mut out, 8), 0, "staged values are invisible");
        p.filter_staged(|x| (*x % 2 == 0).then_some(x));
        assert_eq!(p.publish(), 2);
        c.pop_into(&mut out, 8);
        assert_eq!(out.iter().map(|x| **x).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(p.stage_front_of(&mut v, 6, |x| x), 2);
        drop(p);
        drop((v, out));
        assert!(vals.iter().all(|x| Arc::strong_count(x) == 1), "nothing leaked or double-dropped");
    }

    #[test]
    fn drop_releases_queued_values() {
        let r = Spsc::<Arc<()>>::new(4);
        let probe = Arc::new(());
        let mut v = vec![probe.clone(), probe.clone()];
        r.producer().unwrap().push_front_of(&mut v, 2);
        assert_eq!(Arc::strong_count(&probe), 3);
        drop(r);
        assert_eq!(Arc::strong_count(&probe), 1);
    }

    #[test]
    fn threads_transfer_everything_in_order() {
        let r = Spsc::<u64>::new(64);
        let mut p = r.producer().unwrap();
        let mut c = r.consumer().unwrap();
        const N: u64 = 200_000;
        let t = std::thread::spawn(move || {
            let mut next = 0u64;
            let mut v = Vec::new();
            while next < N {
                while v.len() < 32 && next < N {
                    v.push(next);
                    next += 1;
                }
                p.push_front_of(&mut v, 32);
            }
            while !v.is_empty() {
                p.push_front_of(&mut v, 32);
            }
        });
        let mut expect = 0u64;
        let mut out = Vec::new();
        while expect < N {
            out.clear();
            c.pop_into(&mut out, 32);
            for x in &out {
                assert_eq!(*x, expect);
                expect += 1;
            }
        }
        t.join().unwrap();
    }
}
