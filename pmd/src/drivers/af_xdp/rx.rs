//! [`AfXdpRx`]: the receive burst. Descriptors from the rx ring become mbufs
//! in place (the frame is already in the pool buffer, see `xsk`); the fill
//! ring is topped up in bulk once at least [`BATCH`] slots are free, and the
//! kernel is woken only when it says it needs to be (`need_wakeup`) or when
//! busy polling.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;

use super::xsk::{refill, RxSide, Xsk};
use super::{Options, BATCH};
use crate::port::{frame_fits_mtu, MacAddr, RxCounters};
use crate::{Mbuf, RxQueue};

/// Receive queue of an `af_xdp` port.
pub struct AfXdpRx {
    /// Given back to `xsk.rx_home` on drop (with the fill ring's position).
    side: Option<RxSide>,
    xsk: Arc<Xsk>,
    counters: Arc<RxCounters>,
    started: Arc<AtomicBool>,
    mtu: Arc<AtomicU16>,
    promisc: Arc<AtomicBool>,
    mac: MacAddr,
    rx_size: u32,
    need_wakeup: bool,
    busy_poll: bool,
    scratch: Vec<Mbuf>,
}

impl AfXdpRx {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        side: RxSide,
        xsk: Arc<Xsk>,
        counters: Arc<RxCounters>,
        started: Arc<AtomicBool>,
        mtu: Arc<AtomicU16>,
        promisc: Arc<AtomicBool>,
        mac: MacAddr,
        opts: &Options,
    ) -> AfXdpRx {
        AfXdpRx {
            side: Some(side),
            xsk,
            counters,
            started,
            mtu,
            promisc,
            mac,
            rx_size: opts.rx_size,
            need_wakeup: opts.need_wakeup,
            busy_poll: opts.busy_poll > 0,
            scratch: Vec::with_capacity(opts.rx_size as usize),
        }
    }

    /// Tops the fill ring up if at least a batch of slots is free.
    #[inline]
    fn refill(&mut self) {
        let side = self.side.as_mut().expect("held until drop");
        let free = side.fill.free(BATCH);
        if free >= BATCH {
            let got = refill(side, &self.xsk.umem, &mut self.scratch, self.rx_size);
            if got < free {
                self.counters.nombuf.add((free - got) as u64);
            }
        }
    }
}

impl RxQueue for AfXdpRx {
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        if max == 0 || !self.started.load(Ordering::Relaxed) {
            return 0;
        }
        let side = self.side.as_mut().expect("held until drop");
        let n = side.rx.ready(max.min(u32::MAX as usize) as u32);
        if n == 0 {
            if self.busy_poll || (self.need_wakeup && side.fill.needs_wakeup()) {
                self.xsk.kick_rx();
            }
            self.refill();
            return 0;
        }
        let mtu = self.mtu.load(Ordering::Relaxed);
        let promisc = self.promisc.load(Ordering::Relaxed);
        let umem = &self.xsk.umem;
        let (mut got, mut bytes, mut errors) = (0usize, 0u64, 0u64);
        for i in 0..n {
            let d = side.rx.peek(i);
            // A descriptor outside the UMEM, or for a frame the kernel did
            // not have, is a kernel bug we count rather than trust.
            let Some(f) = umem.frame_of(d.addr).filter(|&f| side.owned.clear(f)) else {
                errors += 1;
                continue;
            };
            // SAFETY: frame `f` was the kernel's (its bit was set) and the
            // kernel has just handed it back: it is ours alone.
            let Some(m) = (unsafe { umem.take(f, d.addr, d.len) }) else {
                errors += 1;
                continue;
            };
            let data = m.data();
            if data.len() < 14 || !frame_fits_mtu(data, mtu) {
                errors += 1;
                continue;
            }
            if !promisc && data[0] & 1 == 0 && data[..6] != self.mac.0 {
                // Unicast for another MAC: filtered as a NIC would, not counted.
                continue;
            }
            bytes += data.len() as u64;
            out.push(m);
            got += 1;
        }
        side.rx.release(n);
        self.refill();
        if errors > 0 {
            self.counters.errors.add(errors);
        }
        if got > 0 {
            self.counters.packets.add(got as u64);
            self.counters.bytes.add(bytes);
        }
        got
    }
}

impl Drop for AfXdpRx {
    fn drop(&mut self) {
        *self.xsk.rx_home.lock().unwrap_or_else(|e| e.into_inner()) = self.side.take();
    }
}
