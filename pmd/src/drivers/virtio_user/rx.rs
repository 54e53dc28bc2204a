//! The receive queue of a `virtio-user` port: [`VirtioRx`].
//!
//! The burst loop is a small function over copies of the ring's addresses
//! (`RingView`) and the slot table, so the compiler keeps them in registers,
//! and it covers only the common case (a used length that is a whole frame
//! within the MTU, no offloads, promiscuous); anything else drops to a
//! per-frame slow path and back. In the common case a received frame is
//! handed up without touching its buffer header or its bytes.
//!
//! Frames the back end spread over several buffers (`num_buffers > 1`, only
//! possible for frames larger than our data room) are counted as errors and
//! dropped; the header is read only when a buffer was used to its full length,
//! because the spec requires every buffer but the last to be filled completely.

use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::control::Shared;
use super::handles::{free_hdr, rx_mbuf, rx_post_parts, rx_push};
use super::vring::{RingView, Vq, VqState};
use super::{HDR_LEN, RX_REFILL_BATCH, VRING_DESC_F_WRITE};
use crate::drivers::tap::VnetHdr;
use crate::mbuf::MbufHdr;
use crate::port::{Counter, MacAddr, RxCounters};
use crate::{Mbuf, Mempool, RxQueue};

/// Receive queue of a `virtio-user` port.
pub struct VirtioRx {
    pub(super) vq: Arc<Vq>,
    pub(super) shared: Arc<Shared>,
    pub(super) pool: Mempool,
    pub(super) mac: MacAddr,
    pub(super) csum: bool,
    pub(super) mrg: bool,
    /// The pool's headroom: where frames start in our buffers.
    pub(super) headroom: u32,
    /// Bytes posted per receive buffer: header + the pool's data room.
    pub(super) posted: usize,
    pub(super) fresh: Vec<Mbuf>,
    pub(super) counters: Arc<RxCounters>,
}

/// Posts fresh buffers on every free descriptor of a receive ring, once at
/// least a batch of them is free (one pool visit and one `avail.idx` store per
/// batch).
#[inline]
pub(super) fn refill(
    vq: &Vq,
    st: &mut VqState,
    pool: &Mempool,
    fresh: &mut Vec<Mbuf>,
    posted: usize,
    nombuf: &Counter,
) {
    let n = st.free_count(vq);
    if n < RX_REFILL_BATCH.min(vq.size as usize) {
        return;
    }
    if pool.alloc_bulk(fresh, n).is_err() {
        nombuf.add(1);
        return;
    }
    refill_with(vq, st, fresh, posted);
}

/// Posts the buffers of `fresh` (at most one per free descriptor; the rest are
/// freed) as `posted` bytes each, and publishes them.
#[inline]
pub(super) fn refill_with(vq: &Vq, st: &mut VqState, fresh: &mut Vec<Mbuf>, posted: usize) {
    let n = fresh.len().min(st.free_count(vq));
    if vq.in_order {
        // Descriptor = position: no id to look up, no available-ring entry to
        // write (it already names this descriptor).
        st.avail_idx = post_in_order(vq.view(), st.avail_idx, &mut st.slots, fresh.drain(..n), posted as u32);
    } else {
        for m in fresh.drain(..n) {
            debug_assert_eq!(HDR_LEN + m.tailroom(), posted);
            let (hdr, addr) = rx_post_parts(m);
            let id = st.next_id(vq);
            // SAFETY: the caller owns this ring's data path; `id < size`.
            unsafe { vq.post(st, id, addr, posted as u32, VRING_DESC_F_WRITE) };
            st.slots[id as usize] = Some(hdr);
        }
    }
    fresh.clear();
    vq.publish(st);
}

/// In order: posts `bufs` as receive buffers of `posted` bytes from position
/// `idx` on; returns the next position.
#[inline(never)]
fn post_in_order(
    ring: RingView,
    mut idx: u16,
    slots: &mut [Option<NonNull<MbufHdr>>],
    bufs: std::vec::Drain<'_, Mbuf>,
    posted: u32,
) -> u16 {
    for m in bufs {
        debug_assert_eq!(HDR_LEN + m.tailroom(), posted as usize);
        let (hdr, addr) = rx_post_parts(m);
        let i = idx & ring.mask;
        // SAFETY: the caller owns this ring's data path; `i <= mask`.
        unsafe { ring.write_desc(i, addr, posted, VRING_DESC_F_WRITE) };
        slots[i as usize] = Some(hdr);
        idx = idx.wrapping_add(1);
    }
    idx
}

/// What the receive fast loops need besides the ring.
#[derive(Clone, Copy)]
struct RxFast {
    /// Used lengths in `min_len..=max_len` are frames to hand up untouched.
    min_len: u32,
    max_len: u32,
    headroom: u32,
}

/// In order: hands up frames from position `p` to `end` while they are the
/// common case (a used entry naming its own position, a length in range);
/// returns where it stopped, and adds the frames' bytes to `bytes`.
#[inline(never)]
fn rx_fast_in_order(
    ring: RingView,
    mut p: u16,
    end: u16,
    slots: &mut [Option<NonNull<MbufHdr>>],
    f: RxFast,
    out: &mut Vec<Mbuf>,
    bytes: &mut u64,
) -> u16 {
    let mut b = 0u64;
    while p != end {
        let slot = p & ring.mask;
        let (id, len) = ring.used_elem(p);
        if id != slot as u32 || len < f.min_len || len > f.max_len {
            break;
        }
        let Some(hdr) = slots[slot as usize].take() else { break };
        let l = len - HDR_LEN as u32;
        // SAFETY: ours, no other handle; `headroom + l` is within the data
        // room (`len <= posted`).
        unsafe { rx_push(out, hdr, f.headroom, l) };
        b += l as u64;
        p = p.wrapping_add(1);
    }
    *bytes += b;
    p
}

/// Without IN_ORDER: as [`rx_fast_in_order`], for at most `n` used entries
/// from position `p` whose ids name buffers in flight; returns how many it
/// consumed.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn rx_fast_any_order(
    ring: RingView,
    p: u16,
    n: usize,
    slots: &mut [Option<NonNull<MbufHdr>>],
    free: &mut Vec<u16>,
    f: RxFast,
    out: &mut Vec<Mbuf>,
    bytes: &mut u64,
) -> usize {
    let mut b = 0u64;
    let mut k = 0;
    while k < n {
        let (id, len) = ring.used_elem(p.wrapping_add(k as u16));
        if len < f.min_len || len > f.max_len {
            break;
        }
        let Some(hdr) = slots.get_mut(id as usize).and_then(Option::take) else { break };
        free.push(id as u16);
        let l = len - HDR_LEN as u32;
        // SAFETY: ours, no other handle; `headroom + l` is within the data
        // room (`len <= posted`).
        unsafe { rx_push(out, hdr, f.headroom, l) };
        b += l as u64;
        k += 1;
    }
    *bytes += b;
    k
}

/// In order: the slot and length of the buffer at position `p`, or `None` for
/// a used entry that breaks the order (the buffer is then dropped as an error).
/// The back end may report a batch with one entry for its last buffer (virtio
/// 1.1, 2.7.9); the others were filled to the length they were posted with.
#[inline(always)]
fn in_order_used(vq: &Vq, st: &mut VqState, p: u16, used: u16, posted: u32) -> Option<(u16, u32)> {
    let mask = vq.size - 1;
    let slot = p & mask;
    if let Some((last, len)) = st.batch {
        if p != last {
            return Some((slot, posted));
        }
        st.batch = None;
        return Some((slot, len));
    }
    let (id, len) = vq.used_elem(p);
    if id == slot as u32 {
        return Some((slot, len));
    }
    in_order_batch(st, p, used, id, len, vq.size).map(|()| (slot, posted))
}

/// A used entry whose id is ahead of its position: one entry for a batch.
#[cold]
fn in_order_batch(st: &mut VqState, p: u16, used: u16, id: u32, len: u32, size: u16) -> Option<()> {
    if id >= size as u32 {
        return None;
    }
    let ahead = (id as u16).wrapping_sub(p) & (size - 1);
    // The batch's last buffer must be one the back end has returned.
    if ahead >= used.wrapping_sub(p) {
        return None;
    }
    st.batch = Some((p.wrapping_add(ahead), len));
    Some(())
}

impl RxQueue for VirtioRx {
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        if max == 0 || !self.shared.started.load(Ordering::Relaxed) {
            return 0;
        }
        let vq = &*self.vq;
        // SAFETY: this handle is the ring's only data-path owner.
        let st = unsafe { vq.state() };
        let used = u16::from_le(vq.used_idx().load(Ordering::Acquire));
        let avail = used.wrapping_sub(st.last_used) as usize;
        let before = out.len();
        let (mut bytes, mut errors) = (0u64, 0u64);
        if avail > 0 {
            let mtu = self.shared.mtu.load(Ordering::Relaxed);
            let promisc = self.shared.promisc.load(Ordering::Relaxed);
            let posted = self.posted;
            // The common case, decided by the used length alone: no offloads,
            // promiscuous, within the MTU, and (with mergeable buffers) not
            // filled to the end, so it cannot be the first of several. Then the
            // frame goes up without touching its buffer header or its bytes (the
            // pool reset the metadata at allocation).
            let max_len = if self.csum || !promisc {
                0
            } else {
                (HDR_LEN + mtu as usize + 14).min(if self.mrg { posted - 1 } else { posted })
            };
            let f = RxFast { min_len: (HDR_LEN + 14) as u32, max_len: max_len as u32, headroom: self.headroom };
            let ring = vq.view();
            // Each used position is one buffer, at most one frame.
            let n = avail.min(max);
            out.reserve(n);
            if vq.in_order {
                let end = st.last_used.wrapping_add(n as u16);
                let mut p = st.last_used;
                loop {
                    if st.batch.is_none() && st.skip == 0 {
                        p = rx_fast_in_order(ring, p, end, &mut st.slots, f, out, &mut bytes);
                    }
                    if p == end {
                        break;
                    }
                    // One buffer off the fast path: batches, errors, slow cases.
                    let slot = p & ring.mask;
                    match in_order_used(vq, st, p, used, posted as u32) {
                        Some((slot, len)) => match st.slots[slot as usize].take() {
                            Some(hdr) => self.rx_one(st, hdr, len as usize, mtu, promisc, out, &mut bytes, &mut errors),
                            // A position the back end was not given.
                            None => errors += 1,
                        },
                        None => {
                            errors += 1;
                            if let Some(hdr) = st.slots[slot as usize].take() {
                                // SAFETY: the back end gave it back; it is ours to free.
                                unsafe { free_hdr(hdr) };
                            }
                        }
                    }
                    p = p.wrapping_add(1);
                }
                st.last_used = p;
            } else {
                let mut k = 0;
                while k < n {
                    if st.skip == 0 {
                        k += rx_fast_any_order(
                            ring,
                            st.last_used.wrapping_add(k as u16),
                            n - k,
                            &mut st.slots,
                            &mut st.free,
                            f,
                            out,
                            &mut bytes,
                        );
                        if k == n {
                            break;
                        }
                    }
                    let (id, len) = ring.used_elem(st.last_used.wrapping_add(k as u16));
                    k += 1;
                    let id = id.min(u16::MAX as u32) as u16;
                    let Some(hdr) = st.slots.get_mut(id as usize).and_then(Option::take) else {
                        // A back end returning a descriptor it was not given.
                        errors += 1;
                        continue;
                    };
                    st.free.push(id);
                    self.rx_one(st, hdr, len as usize, mtu, promisc, out, &mut bytes, &mut errors);
                }
                st.last_used = st.last_used.wrapping_add(n as u16);
            }
        }
        refill(vq, st, &self.pool, &mut self.fresh, self.posted, &self.counters.nombuf);
        if errors > 0 {
            self.counters.errors.add(errors);
        }
        let got = out.len() - before;
        if got > 0 {
            self.counters.packets.add(got as u64);
            self.counters.bytes.add(bytes);
        }
        got
    }
}

impl VirtioRx {
    /// A buffer off the fast path: handed up, filtered or counted as an error.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn rx_one(
        &self,
        st: &mut VqState,
        hdr: NonNull<MbufHdr>,
        len: usize,
        mtu: u16,
        promisc: bool,
        out: &mut Vec<Mbuf>,
        bytes: &mut u64,
        errors: &mut u64,
    ) {
        match self.rx_slow(st, hdr, len, mtu, promisc) {
            Ok(Some(m)) => {
                *bytes += m.len() as u64;
                out.push(m);
            }
            Ok(None) => {}
            Err(()) => *errors += 1,
        }
    }

    /// Everything but the common case: the tail of a frame spread over
    /// buffers, bad lengths, offloads, the MAC filter, frames above the MTU.
    /// `Ok(None)`: filtered out; `Err`: an error.
    #[inline(never)]
    fn rx_slow(
        &self,
        st: &mut VqState,
        hdr: NonNull<MbufHdr>,
        len: usize,
        mtu: u16,
        promisc: bool,
    ) -> Result<Option<Mbuf>, ()> {
        if st.skip > 0 || len < HDR_LEN + 14 || len > self.posted {
            // SAFETY: the back end gave the buffer back; it is ours to free.
            unsafe { free_hdr(hdr) };
            if st.skip > 0 {
                st.skip -= 1;
                return Ok(None);
            }
            return Err(());
        }
        let l = len - HDR_LEN;
        // SAFETY: ours, no other handle; the window fits (`len <= posted`).
        let mut m = unsafe { rx_mbuf(hdr, self.headroom, l as u32) };
        // Only a buffer used to its full length can be the first of several,
        // and only offloads need the header's other fields.
        if (self.mrg && len == self.posted) || self.csum {
            let h = m.prepend(HDR_LEN).map(|b| {
                let mut a = [0u8; 10];
                a.copy_from_slice(&b[..10]);
                (VnetHdr::from_bytes(&a), u16::from_le_bytes([b[10], b[11]]))
            });
            let _ = m.adj(HDR_LEN);
            let Some((h, nbufs)) = h else { return Err(()) };
            if self.mrg && nbufs > 1 {
                st.skip = nbufs - 1;
                return Err(());
            }
            if self.csum {
                let (flags, _) = h.rx_flags(true);
                m.set_rx_flags(flags);
            }
        }
        if l > mtu as usize + 14 && !crate::port::frame_fits_mtu(m.data(), mtu) {
            return Err(());
        }
        if !promisc {
            let d = m.data();
            if d[0] & 1 == 0 && d[..6] != self.mac.0 {
                return Ok(None);
            }
        }
        Ok(Some(m))
    }
}
