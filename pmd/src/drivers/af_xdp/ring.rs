//! The four single-producer/single-consumer rings an XSK shares with the
//! kernel (fill, completion, rx, tx), mapped from the socket.
//!
//! Each ring is `producer`, `consumer` and `flags` words and a power-of-two
//! array of entries (`u64` UMEM addresses for fill/completion, `xdp_desc` for
//! rx/tx), at the offsets `XDP_MMAP_OFFSETS` reports. We keep cached copies of
//! both indices and touch the shared words once per burst: a producer
//! publishes its index with a release store after writing the entries, a
//! consumer reads the other side's index with an acquire load before reading
//! them (the kernel pairs these with `smp_load_acquire`/`smp_store_release`).
//! Indices are free-running `u32`s; `index & mask` is the slot.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// One mapped ring of `T` entries.
pub(super) struct Ring<T> {
    map: NonNull<u8>,
    map_len: usize,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    entries: NonNull<T>,
    mask: u32,
    /// Our view of the producer index (ours if we produce).
    prod: u32,
    /// Our view of the consumer index (ours if we consume).
    cons: u32,
}

// SAFETY: the mapping is owned by this value; the ring is used by one queue
// handle (one thread) at a time, and the kernel synchronises through the
// index words with acquire/release ordering.
unsafe impl Send for Ring<u64> {}
// SAFETY: as above.
unsafe impl Send for Ring<libc::xdp_desc> {}

impl<T: Copy> Ring<T> {
    /// Maps the ring of `size` entries at page offset `pgoff` of `fd`.
    pub(super) fn map(fd: &OwnedFd, off: &libc::xdp_ring_offset, size: u32, pgoff: u64) -> io::Result<Ring<T>> {
        let map_len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        // SAFETY: mapping an XSK ring as the kernel documents: its length and
        // page offset; the result is checked and unmapped in Drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let map = NonNull::new(p.cast::<u8>()).expect("mmap returned non-null");
        // SAFETY: the offsets come from XDP_MMAP_OFFSETS for this ring, so each
        // word and the entry array are inside the mapping and aligned.
        let at = |o: u64| unsafe { NonNull::new_unchecked(map.as_ptr().add(o as usize)) };
        let mut r = Ring {
            map,
            map_len,
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            flags: at(off.flags).cast(),
            entries: at(off.desc).cast(),
            mask: size - 1,
            prod: 0,
            cons: 0,
        };
        r.prod = r.producer().load(Ordering::Acquire);
        r.cons = r.consumer().load(Ordering::Acquire);
        Ok(r)
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: an aligned u32 in the mapping, which lives as long as `self`.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { self.consumer.as_ref() }
    }

    /// Whether the kernel asks to be woken (`XDP_RING_NEED_WAKEUP`).
    pub(super) fn needs_wakeup(&self) -> bool {
        // SAFETY: as above.
        unsafe { self.flags.as_ref() }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    fn slot(&self, i: u32) -> *mut T {
        // SAFETY: `i & mask < size`: inside the entry array.
        unsafe { self.entries.as_ptr().add((i & self.mask) as usize) }
    }

    // Producer side (fill, tx).

    /// Free slots, refreshing the consumer index only when fewer than `want`
    /// are known to be free.
    pub(super) fn free(&mut self, want: u32) -> u32 {
        let size = self.mask + 1;
        let free = size - self.prod.wrapping_sub(self.cons);
        if free >= want {
            return free;
        }
        self.cons = self.consumer().load(Ordering::Acquire);
        size - self.prod.wrapping_sub(self.cons)
    }

    /// Writes `v` at the next producer slot (the caller checked `free`);
    /// nothing is visible to the kernel before [`submit`](Self::submit).
    pub(super) fn push(&mut self, v: T) {
        // SAFETY: the slot is free (the consumer is past it), so only we touch it.
        unsafe { self.slot(self.prod).write(v) };
        self.prod = self.prod.wrapping_add(1);
    }

    /// Publishes everything pushed so far.
    pub(super) fn submit(&self) {
        self.producer().store(self.prod, Ordering::Release);
    }

    /// Entries pushed that the kernel has not consumed yet.
    pub(super) fn outstanding(&mut self) -> u32 {
        self.cons = self.consumer().load(Ordering::Acquire);
        self.prod.wrapping_sub(self.cons)
    }

    // Consumer side (rx, completion).

    /// Entries ready to read (up to `max`), refreshing the producer index
    /// when the cached one shows none.
    pub(super) fn ready(&mut self, max: u32) -> u32 {
        let mut n = self.prod.wrapping_sub(self.cons);
        if n == 0 {
            self.prod = self.producer().load(Ordering::Acquire);
            n = self.prod.wrapping_sub(self.cons);
        }
        n.min(max)
    }

    /// Reads the `i`-th ready entry (`i < ready`).
    pub(super) fn peek(&self, i: u32) -> T {
        // SAFETY: the kernel published this slot (acquire in `ready`) and does
        // not write it again until we release it.
        unsafe { self.slot(self.cons.wrapping_add(i)).read() }
    }

    /// Gives `n` read entries back to the kernel.
    pub(super) fn release(&mut self, n: u32) {
        self.cons = self.cons.wrapping_add(n);
        self.consumer().store(self.cons, Ordering::Release);
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: `map`/`map_len` are exactly what mmap returned; nothing uses
        // the ring after this.
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.map_len) };
    }
}
