//! The per-core loop of forwarding mode: one receive burst through the
//! [`Forwarder`], the forwarded frames straight back out of the same port,
//! the passed ones into a small host [`Stack`] (ARP/NDP for the VIPs and
//! the port's own address, ICMP to us), and the stack's own output after.
//!
//! ```text
//! poll():  rx_burst -> forwarder.process -> tx_burst(forwarded)
//!                                         \-> stack.input(passed) -> stack.output -> tx_burst
//! ```
//!
//! The clock is read only when the host stack has something to do (a frame
//! passed to it, or every `TIMER_EVERY` polls for its timers): on a VM a
//! clock read costs hundreds of nanoseconds, more than forwarding a packet.
//! Frames the transmit queue refuses are dropped and counted (`tx_dropped`):
//! a forwarder that held them would add head-of-line delay to every flow, and
//! the endpoints retransmit, as behind any router.
//!
//! Invariants: the three vectors are allocated once, with the burst's
//! capacity, and reused; nothing here locks or allocates per packet.

use std::sync::Arc;

use pmd::{Clock, Mbuf, RxQueue, TxQueue};
use stack::Stack;

use super::forwarder::Forwarder;

/// Polls between two host-stack timer runs when no frame is passed to it.
pub const TIMER_EVERY: u32 = 1024;

/// A forwarder and its host stack on one queue pair.
pub struct CoreLoop<R: RxQueue, T: TxQueue> {
    /// The forwarder (its counters and control calls).
    pub fw: Forwarder,
    /// The host stack (ARP/NDP/ICMP for the VIPs and us).
    pub host: Stack,
    rxq: R,
    txq: T,
    clock: Arc<dyn Clock>,
    burst: usize,
    rx: Vec<Mbuf>,
    tx: Vec<Mbuf>,
    pass: Vec<Mbuf>,
    idle_polls: u32,
    /// Frames the transmit queue refused.
    pub tx_dropped: u64,
}

impl<R: RxQueue, T: TxQueue> CoreLoop<R, T> {
    /// A loop over `rxq`/`txq` taking bursts of up to `burst` frames.
    pub fn new(fw: Forwarder, host: Stack, rxq: R, txq: T, clock: Arc<dyn Clock>, burst: usize) -> Self {
        CoreLoop {
            fw,
            host,
            rxq,
            txq,
            clock,
            burst,
            rx: Vec::with_capacity(burst),
            tx: Vec::with_capacity(burst),
            pass: Vec::with_capacity(burst),
            idle_polls: 0,
            tx_dropped: 0,
        }
    }

    /// One iteration; returns the frames received.
    pub fn poll(&mut self) -> usize {
        let n = self.rxq.rx_burst(&mut self.rx, self.burst);
        if n > 0 {
            self.fw.process(&mut self.rx, &mut self.tx, &mut self.pass);
        }
        self.txq.tx_burst(&mut self.tx);
        if !self.tx.is_empty() {
            self.tx_dropped += self.tx.len() as u64;
            self.tx.clear();
        }
        self.idle_polls += 1;
        if !self.pass.is_empty() || self.idle_polls >= TIMER_EVERY {
            self.idle_polls = 0;
            let now = self.clock.now_ns();
            self.host.input(now, &mut self.pass);
            self.host.poll_timers(now);
            self.txq.tx_burst(self.host.output(now));
        } else {
            // Called every poll, even empty: drivers batch doorbells here.
            self.txq.tx_burst(&mut self.tx);
        }
        n
    }
}

/// One step of a forwarder and its host stack without queues (simulations
/// and tests): `rx` in, every frame to send appended to `out`.
pub fn step(fw: &mut Forwarder, host: &mut Stack, now: u64, rx: &mut Vec<Mbuf>, out: &mut Vec<Mbuf>) {
    let mut pass = Vec::new();
    fw.process(rx, out, &mut pass);
    host.input(now, &mut pass);
    host.poll_timers(now);
    out.append(host.output(now));
}
