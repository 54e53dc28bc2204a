//! [`AfXdpTx`]: the transmit burst. An mbuf of this queue's UMEM is posted as
//! it is (its data address is the descriptor); any other mbuf is copied into a
//! fresh UMEM frame first, and freed. Completed frames are collected from the
//! completion ring at the start of every call and freed in bulk. The kernel is
//! kicked (`sendto`) when its ring flag asks for it, or on every burst with
//! `need_wakeup=0`; a kick it could not finish (its per-call batch, a full
//! device queue) is retried on the next call, even an empty one.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;

use super::xsk::{TxSide, Xsk};
use super::Options;
use crate::port::{frame_fits_mtu, TxCounters};
use crate::{free_bulk, Mbuf, TxQueue};

/// Kicks per burst at most: the kernel's copy mode sends 32 frames per call.
const MAX_KICKS: usize = 16;

/// Transmit queue of an `af_xdp` port.
pub struct AfXdpTx {
    /// Given back to `xsk.tx_home` on drop.
    side: Option<TxSide>,
    xsk: Arc<Xsk>,
    counters: Arc<TxCounters>,
    started: Arc<AtomicBool>,
    mtu: Arc<AtomicU16>,
    max_frame: usize,
    need_wakeup: bool,
    kick_pending: bool,
    copies: Vec<Mbuf>,
    done: Vec<Mbuf>,
}

impl AfXdpTx {
    pub(super) fn new(
        side: TxSide,
        xsk: Arc<Xsk>,
        counters: Arc<TxCounters>,
        started: Arc<AtomicBool>,
        mtu: Arc<AtomicU16>,
        opts: &Options,
    ) -> AfXdpTx {
        AfXdpTx {
            side: Some(side),
            xsk,
            counters,
            started,
            mtu,
            max_frame: opts.max_frame(),
            need_wakeup: opts.need_wakeup,
            kick_pending: false,
            copies: Vec::new(),
            done: Vec::new(),
        }
    }

    /// Frees every frame the kernel has finished sending.
    #[inline]
    fn complete(&mut self) {
        let side = self.side.as_mut().expect("held until drop");
        let n = side.comp.ready(u32::MAX);
        if n == 0 {
            return;
        }
        let umem = &self.xsk.umem;
        let mut bogus = 0;
        for i in 0..n {
            match umem.frame_of(side.comp.peek(i)).filter(|&f| side.owned.clear(f)) {
                // SAFETY: the frame was the kernel's and it has given it back.
                Some(f) => self.done.push(unsafe { umem.reclaim(f) }),
                None => bogus += 1,
            }
        }
        side.comp.release(n);
        free_bulk(&mut self.done);
        if bogus > 0 {
            self.counters.errors.add(bogus);
        }
    }

    /// Kicks until the kernel has taken every posted descriptor, or it stops
    /// making progress; remembers to kick again if frames are left.
    fn kick(&mut self) {
        let side = self.side.as_mut().expect("held until drop");
        for _ in 0..MAX_KICKS {
            let ok = self.xsk.kick_tx();
            if side.tx.outstanding() == 0 {
                self.kick_pending = false;
                return;
            }
            let retry = std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN);
            if ok || !retry {
                break;
            }
        }
        self.kick_pending = true;
    }
}

impl TxQueue for AfXdpTx {
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        if !self.started.load(Ordering::Relaxed) {
            return 0;
        }
        self.complete();
        if pkts.is_empty() {
            if self.kick_pending {
                self.kick();
            }
            return 0;
        }
        let mtu = self.mtu.load(Ordering::Relaxed);
        let max_frame = self.max_frame;
        let ok = |m: &Mbuf| m.len() >= 14 && m.len() <= max_frame && frame_fits_mtu(m.data(), mtu);
        let side = self.side.as_mut().expect("held until drop");
        let umem = &self.xsk.umem;
        // How many fit the ring, and UMEM frames for those that need a copy.
        let mut n = (side.tx.free(pkts.len() as u32) as usize).min(pkts.len());
        let need = pkts[..n].iter().filter(|m| ok(m) && !umem.owns(m)).count();
        self.copies.clear();
        if need > 0 && umem.pool.alloc_bulk(&mut self.copies, need).is_err() {
            while self.copies.len() < need {
                match umem.pool.alloc() {
                    Ok(m) => self.copies.push(m),
                    Err(_) => break,
                }
            }
            // Send only up to the first frame we have no copy for.
            let mut have = self.copies.len();
            let mut k = 0;
            while k < n {
                let m = &pkts[k];
                if ok(m) && !umem.owns(m) {
                    if have == 0 {
                        break;
                    }
                    have -= 1;
                }
                k += 1;
            }
            n = k;
        }
        let (mut sent, mut bytes, mut errors) = (0u64, 0u64, 0u64);
        for m in pkts.drain(..n) {
            if !ok(&m) {
                errors += 1;
                continue;
            }
            let len = m.len();
            let m = if umem.owns(&m) {
                m
            } else {
                let mut c = self.copies.pop().expect("one copy per foreign frame");
                c.extend_from_slice(m.data()).expect("a UMEM frame holds max_frame bytes");
                c
            };
            let (f, addr) = umem.post(m);
            side.owned.set(f);
            side.tx.push(libc::xdp_desc { addr, len: len as u32, options: 0 });
            sent += 1;
            bytes += len as u64;
        }
        // Copies allocated for frames that were not sent go back.
        self.copies.clear();
        if sent > 0 {
            side.tx.submit();
        }
        if (sent > 0 || self.kick_pending) && (!self.need_wakeup || side.tx.needs_wakeup() || self.kick_pending) {
            self.kick();
        }
        if sent > 0 {
            self.counters.packets.add(sent);
            self.counters.bytes.add(bytes);
        }
        if errors > 0 {
            self.counters.errors.add(errors);
        }
        n
    }
}

impl Drop for AfXdpTx {
    fn drop(&mut self) {
        self.complete();
        *self.xsk.tx_home.lock().unwrap_or_else(|e| e.into_inner()) = self.side.take();
    }
}
