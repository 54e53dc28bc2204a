//! The rings of a `virtio-user` port: their shared memory, the split
//! virtqueue layout, and the rules both sides keep when they touch it.
//!
//! # Memory: memfd regions, GPA = VA
//! The back end must read and write our buffers, so it maps them: the receive
//! pool must be a shared pool ([`Mempool::new_shared`](crate::Mempool::new_shared), a `memfd`; `testpmd` and
//! `conformance` make one for `virtio-user:` ports) and the rings live in a
//! second memfd of our own, made once for the port's life (back ends compare
//! memory tables by address: rings unmapped and mapped again at the same address
//! would look unchanged, and DPDK's vhost would keep polling the old pages).
//! Both are sent with `VHOST_USER_SET_MEM_TABLE`. No hugepages are needed on our
//! side. Like DPDK's virtio-user we use our virtual
//! addresses as guest-physical addresses (a 1:1 map: region `guest_phys_addr` =
//! `userspace_addr` = our mapping address), so a descriptor's address is simply
//! the buffer's pointer.
//!
//! # Split virtqueues
//! Per queue pair, vring `2q` receives and `2q+1` transmits. Each ring of
//! `qsize` entries (a power of two) is laid out in its own page-aligned chunk:
//! descriptor table (16 bytes per entry), available ring (written by us), and the
//! used ring (written by the back end) on its own page so our stores and the back
//! end's never share a cache line. Every buffer is one descriptor (no chains, no
//! indirect tables): the 12-byte `virtio_net_hdr_mrg_rxbuf` sits in the mbuf's
//! headroom right in front of the frame (`VERSION_1` implies any layout), so one
//! descriptor covers header and frame. On receive we post `[header | data room]`
//! of a fresh mbuf and hand the very same mbuf up, its window moved past the
//! header; on transmit we write the header into the headroom and post the mbuf.
//! A per-ring table maps descriptor ids to the mbufs in flight.
//!
//! With `VIRTIO_F_IN_ORDER` (virtio 1.1, 2.7.9; `in_order=1`, the default) the
//! back end uses buffers in the order they were made available, so the buffer
//! at available position `p` always goes on descriptor `p mod qsize`: the
//! available ring is written once, at setup (entry `i` = `i`), posting writes a
//! descriptor and moves `avail.idx`, and there is no free-id stack. Receiving
//! reads each used entry's length at its own position (an entry whose id is not
//! its position is one entry for a batch, which the spec allows: the buffers
//! before it were filled to their posted length); reclaiming sent buffers reads
//! only `used.idx` (every position before it is done, however many entries the
//! back end wrote). Without it (`in_order=0`) used entries name descriptor ids
//! in any order and free ids are a stack.
//!
//! # Barriers (virtio 1.x, 2.7.13 and 2.7.7)
//! * publishing: descriptor and available-ring entries are written first, then
//!   `avail.idx` with a release store, so the back end never sees an index ahead
//!   of its entries;
//! * consuming: `used.idx` is loaded with acquire before the used entries and the
//!   frame bytes they describe are read;
//! * notifying: between publishing `avail.idx` and reading `used.flags` a full
//!   barrier, so we cannot miss that the back end asked to be kicked: `avail.idx`
//!   is published with a sequentially consistent swap (`xchg` on x86, which is
//!   both the release store and the barrier, and cheaper than `mfence`) and
//!   `used.flags` read with a sequentially consistent load.
//!
//! # Notification suppression
//! We poll, so we set `VRING_AVAIL_F_NO_INTERRUPT` on every ring (the back end
//! need not signal the call eventfd) and kick (write the kick eventfd) only when
//! the used ring lacks `VRING_USED_F_NO_NOTIFY`. A polling back end (DPDK's vhost
//! PMD) sets that flag, so the data path makes no system call. `EVENT_IDX` is not
//! negotiated: flags are enough for two pollers.

use std::cell::UnsafeCell;
use std::os::fd::{AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use vhost::VringConfigData;
use vmm_sys_util::eventfd::EventFd;

use super::{io_err, VRING_AVAIL_F_NO_INTERRUPT, VRING_USED_F_NO_NOTIFY};
use crate::mbuf::MbufHdr;
use crate::{Mbuf, PmdError};

/// A memfd mapped shared: the rings of every queue of a configuration.
pub(super) struct RingMem {
    pub(super) ptr: NonNull<u8>,
    pub(super) len: usize,
    pub(super) fd: OwnedFd,
}

// SAFETY: the mapping is plain memory; who may touch which part of it is governed
// by the `Vq` rules (one queue handle per ring, atomics for shared indices).
unsafe impl Send for RingMem {}
// SAFETY: as above.
unsafe impl Sync for RingMem {}

impl RingMem {
    pub(super) fn new(len: usize) -> Result<RingMem, PmdError> {
        let (ptr, fd) = crate::mempool::map_shared("pmd-virtio-rings", "virtio-user rings", len)?;
        Ok(RingMem { ptr, len, fd })
    }
}

impl Drop for RingMem {
    fn drop(&mut self) {
        // SAFETY: our own mapping of `len` bytes; every `Vq` pointing into it holds
        // an `Arc<RingMem>`, so none is left.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Offsets of one ring's parts inside its chunk, and the chunk's size.
pub(super) fn ring_layout(qsize: usize) -> (usize, usize, usize, usize) {
    let desc = 0;
    let avail = (desc + 16 * qsize).next_multiple_of(64);
    let used = (avail + 6 + 2 * qsize).next_multiple_of(4096);
    let end = (used + 6 + 8 * qsize).next_multiple_of(4096);
    (desc, avail, used, end)
}

#[repr(C)]
pub(super) struct Desc {
    pub(super) addr: u64,
    pub(super) len: u32,
    pub(super) flags: u16,
    next: u16,
}

#[repr(C)]
pub(super) struct UsedElem {
    pub(super) id: u32,
    pub(super) len: u32,
}

/// What only the owner of a ring's data path touches: shadow indices and the
/// mbufs in flight.
pub(super) struct VqState {
    /// Our next `avail.idx`.
    pub(super) avail_idx: u16,
    /// The next used entry to consume.
    pub(super) last_used: u16,
    /// Descriptor ids not in flight (without `IN_ORDER`; in order, descriptor
    /// `i` is always available-ring slot `i`, and the free ones are the
    /// positions from `avail_idx` up to `last_used + size`).
    pub(super) free: Vec<u16>,
    /// The mbuf behind each in-flight descriptor id, as its header pointer: the
    /// window is known (receive: the pool's headroom; transmit: irrelevant, the
    /// buffer is only freed), and an 8-byte store of a pointer avoids the
    /// store-forwarding stall of moving a 16-byte handle just modified on the
    /// stack (see `Mbuf::push_from_hdr`), which was half of `tx_burst`.
    pub(super) slots: Vec<Option<NonNull<MbufHdr>>>,
    /// Used entries still to skip (the tail of a frame spread over buffers).
    pub(super) skip: u16,
    /// In order: the back end reported a batch of buffers with one used entry
    /// (virtio 1.1, 2.7.9), ending at this position with this length; the
    /// buffers before it were used to their full length.
    pub(super) batch: Option<(u16, u32)>,
}

impl VqState {
    /// Descriptors not in flight.
    #[inline(always)]
    pub(super) fn free_count(&self, vq: &Vq) -> usize {
        if vq.in_order {
            vq.size as usize - self.avail_idx.wrapping_sub(self.last_used) as usize
        } else {
            self.free.len()
        }
    }

    /// The descriptor id for the next buffer to post (one must be free).
    #[inline(always)]
    pub(super) fn next_id(&mut self, vq: &Vq) -> u16 {
        if vq.in_order {
            self.avail_idx & (vq.size - 1)
        } else {
            self.free.pop().expect("a free descriptor id")
        }
    }
}

impl Drop for VqState {
    fn drop(&mut self) {
        for hdr in self.slots.iter_mut().filter_map(Option::take) {
            // SAFETY: an in-flight buffer we own (the back end was stopped before
            // the ring goes, see the module docs); freed exactly once here.
            drop(unsafe { Mbuf::from_hdr(hdr, 0, 0) });
        }
    }
}

/// A ring's descriptor table and used entries, for the burst loops.
#[derive(Clone, Copy)]
pub(super) struct RingView {
    desc: *mut Desc,
    used_elems: *const UsedElem,
    pub(super) mask: u16,
}

impl RingView {
    /// The used entry at position `p` (id, len).
    #[inline(always)]
    pub(super) fn used_elem(self, p: u16) -> (u32, u32) {
        // SAFETY: `p & mask < size`: inside the used ring; the acquire load of
        // used.idx that made this entry visible happened before.
        let e = unsafe { self.used_elems.add((p & self.mask) as usize).read_volatile() };
        (u32::from_le(e.id), u32::from_le(e.len))
    }

    /// Writes descriptor `id` (a single buffer, no chain).
    ///
    /// # Safety
    /// The caller owns the ring's data path; `id <= mask`.
    #[inline(always)]
    pub(super) unsafe fn write_desc(self, id: u16, addr: u64, len: u32, flags: u16) {
        // SAFETY: `id < size` (caller): inside the table; only the data-path
        // owner writes it.
        unsafe {
            self.desc.add(id as usize).write(Desc {
                addr: addr.to_le(),
                len: len.to_le(),
                flags: flags.to_le(),
                next: 0,
            })
        };
    }
}

/// One split virtqueue.
pub(super) struct Vq {
    /// vring index (2q receive, 2q+1 transmit).
    pub(super) index: usize,
    pub(super) size: u16,
    /// `VIRTIO_F_IN_ORDER` was acked: descriptor ids are ring positions and the
    /// available ring is written once, here.
    pub(super) in_order: bool,
    pub(super) desc: *mut Desc,
    pub(super) avail: *mut u16,
    pub(super) used: *mut u16,
    pub(super) kick: EventFd,
    pub(super) call: EventFd,
    /// Keeps the mapping the pointers point into alive.
    _mem: Arc<RingMem>,
    st: UnsafeCell<VqState>,
}

// SAFETY: the raw pointers point into `mem`, which the `Vq` keeps alive. `st` is
// touched only by the single queue handle that owns the ring (handles are unique
// per configuration, see `claim_queue`), or by the port when no handle exists.
unsafe impl Send for Vq {}
// SAFETY: as above; shared indices are accessed through atomics.
unsafe impl Sync for Vq {}

impl Vq {
    pub(super) fn new(
        index: usize,
        size: u16,
        in_order: bool,
        mem: &Arc<RingMem>,
        offset: usize,
    ) -> Result<Vq, PmdError> {
        let (d, a, u, end) = ring_layout(size as usize);
        assert!(offset + end <= mem.len);
        // SAFETY: `offset + end <= mem.len`, so every part lies inside the mapping.
        let base = unsafe { mem.ptr.as_ptr().add(offset) };
        // A fresh ring: everything zero. The chunk may hold an earlier
        // configuration's ring, whose `Vq` is gone and whose back end has stopped.
        // SAFETY: `end` bytes from `base` are inside the mapping and no one else
        // uses them now.
        unsafe { base.write_bytes(0, end) };
        let ev = |what: &str| {
            EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(io_err(format!("virtio-user: {what} eventfd")))
        };
        let vq = Vq {
            index,
            size,
            in_order,
            // SAFETY: inside the chunk (see above); the table is 16-aligned (page-aligned chunk).
            desc: unsafe { base.add(d) }.cast(),
            // SAFETY: inside the chunk; 64-aligned.
            avail: unsafe { base.add(a) }.cast(),
            // SAFETY: inside the chunk; page-aligned.
            used: unsafe { base.add(u) }.cast(),
            kick: ev("kick")?,
            call: ev("call")?,
            _mem: mem.clone(),
            st: UnsafeCell::new(VqState {
                avail_idx: 0,
                last_used: 0,
                free: if in_order { Vec::new() } else { (0..size).rev().collect() },
                slots: (0..size).map(|_| None).collect(),
                skip: 0,
                batch: None,
            }),
        };
        // SAFETY: avail.flags is ours to write; the back end does not see the ring yet.
        unsafe { vq.avail.write_volatile(VRING_AVAIL_F_NO_INTERRUPT.to_le()) };
        if in_order {
            // Buffers are posted on descriptor `i` at position `i` (mod size), so
            // the available ring never changes: only `avail.idx` moves.
            for i in 0..size {
                // SAFETY: slot `i < size` of the available ring, inside the chunk;
                // not yet visible to the back end.
                unsafe { vq.avail.add(2 + i as usize).write(i.to_le()) };
            }
        }
        Ok(vq)
    }

    fn addr(&self, p: *const u8) -> u64 {
        p as u64
    }

    pub(super) fn config(&self) -> VringConfigData {
        VringConfigData {
            queue_max_size: self.size,
            queue_size: self.size,
            flags: 0,
            desc_table_addr: self.addr(self.desc.cast()),
            used_ring_addr: self.addr(self.used.cast()),
            avail_ring_addr: self.addr(self.avail.cast()),
            log_addr: None,
        }
    }

    #[inline(always)]
    pub(super) fn avail_idx(&self) -> &AtomicU16 {
        // SAFETY: `avail + 1` (u16 units) is avail.idx, 2-aligned, inside the ring,
        // alive as long as `self`.
        unsafe { AtomicU16::from_ptr(self.avail.add(1)) }
    }

    #[inline(always)]
    pub(super) fn used_flags(&self) -> &AtomicU16 {
        // SAFETY: used.flags, 2-aligned inside the ring.
        unsafe { AtomicU16::from_ptr(self.used) }
    }

    #[inline(always)]
    pub(super) fn used_idx(&self) -> &AtomicU16 {
        // SAFETY: used.idx, 2-aligned inside the ring.
        unsafe { AtomicU16::from_ptr(self.used.add(1)) }
    }

    /// The used index as the back end last wrote it (for `SET_VRING_BASE`).
    pub(super) fn used_index(&self) -> u16 {
        u16::from_le(self.used_idx().load(Ordering::Acquire))
    }

    /// Posts one buffer on descriptor `id` (from [`VqState::next_id`]) at the
    /// next available position; visible to the back end at [`Vq::publish`].
    ///
    /// # Safety
    /// The caller owns the ring's data path; `id < size`.
    #[inline(always)]
    pub(super) unsafe fn post(&self, st: &mut VqState, id: u16, addr: u64, len: u32, flags: u16) {
        // SAFETY: `id < size` (caller), so the descriptor and the avail slot are
        // inside the ring; only the data-path owner writes them.
        unsafe {
            self.write_desc(id, addr, len, flags);
            if !self.in_order {
                self.avail.add(2 + (st.avail_idx & (self.size - 1)) as usize).write(id.to_le());
            }
        }
        st.avail_idx = st.avail_idx.wrapping_add(1);
    }

    /// Writes descriptor `id` (a single buffer, no chain).
    ///
    /// # Safety
    /// The caller owns the ring's data path; `id < size`.
    #[inline(always)]
    pub(super) unsafe fn write_desc(&self, id: u16, addr: u64, len: u32, flags: u16) {
        // SAFETY: forwarded caller guarantee.
        unsafe { self.view().write_desc(id, addr, len, flags) };
    }

    /// Publishes the entries posted since the last call and kicks if asked.
    #[inline(always)]
    pub(super) fn publish(&self, st: &VqState) {
        // Entries before the index, and the index before reading whether to
        // notify: a sequentially consistent exchange is both the release and
        // the full barrier (`xchg` on x86, cheaper than `mfence`; Linux's
        // `virt_mb` is a locked add for the same reason).
        self.avail_idx().swap(st.avail_idx.to_le(), Ordering::SeqCst);
        if u16::from_le(self.used_flags().load(Ordering::SeqCst)) & VRING_USED_F_NO_NOTIFY == 0 {
            let one: u64 = 1;
            // SAFETY: writing 8 bytes from a live u64 to our eventfd.
            let _ = unsafe { libc::write(self.kick.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// The used entry at position `i`.
    #[inline(always)]
    pub(super) fn used_elem(&self, i: u16) -> (u32, u32) {
        self.view().used_elem(i)
    }

    /// The ring's addresses, by value, for the burst loops (so that the
    /// compiler keeps them in registers across the loop's stores).
    #[inline(always)]
    pub(super) fn view(&self) -> RingView {
        RingView {
            desc: self.desc,
            // SAFETY: the used ring's entries start 4 bytes in (flags, idx).
            used_elems: unsafe { self.used.add(2) }.cast(),
            mask: self.size - 1,
        }
    }

    /// The data-path state.
    ///
    /// # Safety
    /// Only the ring's owner (its queue handle, or the port when no handle
    /// exists) may call this, and not while another reference from it is live.
    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    pub(super) unsafe fn state(&self) -> &mut VqState {
        // SAFETY: forwarded caller guarantee.
        unsafe { &mut *self.st.get() }
    }
}
