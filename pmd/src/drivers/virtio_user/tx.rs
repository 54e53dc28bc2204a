//! The transmit queue of a `virtio-user` port: [`VirtioTx`].
//!
//! The burst loop is a small function over copies of the ring's addresses
//! (`RingView`) and the slot table, and covers only the common case (no
//! offloads, within the MTU, in our pool with room for the header in front);
//! anything else drops to a per-frame slow path and back. A frame to send that
//! does not lie in the registered pool (another pool, or too little headroom
//! for the header) is copied into one of ours and counted in the `tx_copies`
//! xstat; frames of the port's pool are never copied: the descriptor points
//! into the mbuf.
//!
//! Sent buffers are reclaimed from the used ring only when fewer than half the
//! descriptors (or fewer than the burst) are free, and an empty `tx_burst`
//! does not look at the ring at all: the used ring's cache line belongs to the
//! back end's core, and every needless read pulls it over.

use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::control::Shared;
use super::handles::{tx_done_push, tx_post_parts};
use super::vring::{RingView, Vq, VqState};
use super::HDR_LEN;
use crate::drivers::tap::VnetHdr;
use crate::mbuf::MbufHdr;
use crate::port::{Counter, TxCounters};
use crate::{free_bulk, Mbuf, Mempool, TxQueue};

/// Transmit queue of a `virtio-user` port.
pub struct VirtioTx {
    pub(super) vq: Arc<Vq>,
    pub(super) shared: Arc<Shared>,
    pub(super) pool: Mempool,
    /// The registered pool memory: frames inside it go out without a copy.
    pub(super) region: (u64, u64),
    pub(super) offloads: bool,
    pub(super) done: Vec<Mbuf>,
    pub(super) copies: Arc<Counter>,
    pub(super) counters: Arc<TxCounters>,
}

/// Frees the mbufs the back end has finished with on a transmit ring.
#[inline]
fn reclaim(vq: &Vq, st: &mut VqState, done: &mut Vec<Mbuf>) {
    let used = u16::from_le(vq.used_idx().load(Ordering::Acquire));
    if vq.in_order {
        // Every buffer before `used` is done, whatever the entries say (the
        // back end may write one entry per batch): the entries are not read.
        let n = used.wrapping_sub(st.last_used).min(st.avail_idx.wrapping_sub(st.last_used));
        let mask = vq.size - 1;
        for _ in 0..n {
            if let Some(hdr) = st.slots[(st.last_used & mask) as usize].take() {
                // SAFETY: the back end is done with this buffer of ours.
                unsafe { tx_done_push(done, hdr) };
            }
            st.last_used = st.last_used.wrapping_add(1);
        }
    } else {
        while st.last_used != used {
            let (id, _) = vq.used_elem(st.last_used);
            st.last_used = st.last_used.wrapping_add(1);
            if let Some(hdr) = st.slots.get_mut(id as usize).and_then(Option::take) {
                st.free.push(id as u16);
                // SAFETY: the back end is done with this buffer of ours.
                unsafe { tx_done_push(done, hdr) };
            }
        }
    }
    free_bulk(done);
}

/// A copy of `m` into a buffer of `pool`, header room included.
fn copy_into(pool: &Mempool, m: &Mbuf) -> Option<Mbuf> {
    let mut c = pool.alloc().ok()?;
    c.extend_from_slice(m.data())?;
    c.copy_meta_from(m);
    Some(c)
}

/// What the transmit fast loop needs besides the ring.
#[derive(Clone, Copy)]
struct TxFast {
    /// Longest frame that needs no MTU check (MTU + Ethernet header).
    max_len: usize,
    /// The registered pool memory: frames inside it go out without a copy.
    region: (u64, u64),
}

/// How many frames at the front of `frames` are the common case: no offloads,
/// within the MTU, in the registered memory with room for the header.
#[inline(always)]
fn tx_fast_count(frames: &[Mbuf], f: TxFast) -> usize {
    frames
        .iter()
        .position(|m| {
            let l = m.len();
            let start = m.data_ptr() as u64;
            l > f.max_len
                || m.headroom() < HDR_LEN
                || start - (HDR_LEN as u64) < f.region.0
                || start + l as u64 > f.region.1
        })
        .unwrap_or(frames.len())
}

/// Posts the next `k` frames of `frames` (all the common case, see
/// [`tx_fast_count`]) on the ring from position `idx` on (in order:
/// descriptor = position; otherwise ids from `free`), writing the zero
/// virtio-net header into each one's headroom. Returns the next position and
/// the frames' bytes.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn tx_post_fast(
    ring: RingView,
    in_order: bool,
    avail: *mut u16,
    mut idx: u16,
    slots: &mut [Option<NonNull<MbufHdr>>],
    free: &mut Vec<u16>,
    frames: &mut std::vec::Drain<'_, Mbuf>,
    k: usize,
) -> (u16, u64) {
    let mut bytes = 0u64;
    for mut m in frames.take(k) {
        let l = m.len();
        if let Some(h) = m.prepend(HDR_LEN) {
            // No offloads: all zero (`num_buffers` is 0 on transmit).
            h.fill(0);
        }
        let (hdr, addr) = tx_post_parts(m);
        let id = if in_order { idx & ring.mask } else { free.pop().expect("a free id per frame") };
        // SAFETY: we own this ring's data path; `id <= mask`; the available
        // ring has `mask + 1` entries.
        unsafe {
            ring.write_desc(id, addr, (l + HDR_LEN) as u32, 0);
            if !in_order {
                avail.add(2 + (idx & ring.mask) as usize).write(id.to_le());
            }
        }
        slots[id as usize] = Some(hdr);
        idx = idx.wrapping_add(1);
        bytes += l as u64;
    }
    (idx, bytes)
}

impl TxQueue for VirtioTx {
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        if !self.shared.up.load(Ordering::Relaxed) {
            return 0;
        }
        // Nothing to send: not even a look at the used ring, whose cache line
        // the back end writes (polling it every idle iteration would pull the
        // line back and forth between the cores for nothing).
        if pkts.is_empty() {
            return 0;
        }
        let vq = &*self.vq;
        // SAFETY: this handle is the ring's only data-path owner.
        let st = unsafe { vq.state() };
        // Reclaim only when descriptors run short (as DPDK's virtio PMD does
        // past its free threshold): sent buffers wait in the ring until then.
        if st.free_count(vq) < pkts.len().max(vq.size as usize / 2) {
            reclaim(vq, st, &mut self.done);
        }
        let n = pkts.len().min(st.free_count(vq));
        if n == 0 {
            return 0;
        }
        let mtu = self.shared.mtu.load(Ordering::Relaxed);
        let f = TxFast { max_len: if self.offloads { 0 } else { mtu as usize + 14 }, region: self.region };
        let (mut sent, mut bytes, mut errors, mut copies) = (0u64, 0u64, 0u64, 0u64);
        let mut frames = pkts.drain(..n);
        loop {
            let k = tx_fast_count(frames.as_slice(), f);
            if k > 0 {
                let (idx, b) = tx_post_fast(
                    vq.view(),
                    vq.in_order,
                    vq.avail,
                    st.avail_idx,
                    &mut st.slots,
                    &mut st.free,
                    &mut frames,
                    k,
                );
                st.avail_idx = idx;
                sent += k as u64;
                bytes += b;
            }
            let Some(m) = frames.next() else { break };
            // Off the fast path: offloads, frames above the MTU, frames from
            // elsewhere (copied).
            let l = m.len();
            match self.tx_prepare(m, mtu, &mut copies) {
                Some((m, vnet)) => {
                    let mut m = m;
                    let Some(h) = m.prepend(HDR_LEN) else {
                        errors += 1;
                        continue;
                    };
                    h.fill(0);
                    if let Some(v) = vnet {
                        h[..10].copy_from_slice(&v.to_bytes());
                    }
                    let id = st.next_id(vq);
                    // The header's first byte (a copy lives elsewhere than the original).
                    let (hdr, addr) = tx_post_parts(m);
                    // SAFETY: we own this ring's data path; `id < size`.
                    unsafe { vq.post(st, id, addr, (l + HDR_LEN) as u32, 0) };
                    st.slots[id as usize] = Some(hdr);
                    sent += 1;
                    bytes += l as u64;
                }
                None => errors += 1,
            }
        }
        drop(frames);
        if sent > 0 {
            vq.publish(st);
            self.counters.packets.add(sent);
            self.counters.bytes.add(bytes);
        }
        if errors > 0 {
            self.counters.errors.add(errors);
        }
        if copies > 0 {
            self.copies.add(copies);
        }
        n
    }
}

impl VirtioTx {
    /// A frame off the fast path made ready to post: the MTU checked, the
    /// offload header computed, copied into our pool if it lies elsewhere or
    /// lacks header room. `None`: an error (the frame is dropped).
    #[inline(never)]
    fn tx_prepare(&self, mut m: Mbuf, mtu: u16, copies: &mut u64) -> Option<(Mbuf, Option<VnetHdr>)> {
        let l = m.len();
        let tso = self.offloads && m.meta().tx_flags.contains(crate::TxFlags::TCP_SEG);
        if !tso && l > mtu as usize + 14 && !crate::port::frame_fits_mtu(m.data(), mtu) {
            return None;
        }
        let vnet = if self.offloads { Some(VnetHdr::for_tx(&mut m)?) } else { None };
        let start = m.data_ptr() as u64;
        let inside =
            m.headroom() >= HDR_LEN && start - HDR_LEN as u64 >= self.region.0 && start + l as u64 <= self.region.1;
        if !inside {
            m = copy_into(&self.pool, &m)?;
            *copies += 1;
        }
        Some((m, vnet))
    }
}
