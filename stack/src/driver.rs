//! [`Driver`]: the thin helper that runs a sans-IO [`Stack`] over one pmd
//! queue pair and a clock — DESIGN.md's per-core loop in one call:
//!
//! ```text
//! poll():  now = clock; rx_burst(rx) -> stack.input(now, rx)
//!          -> stack.poll_timers(now) -> tx_burst(stack.output(now))
//! ```
//!
//! With other cores on the same port ([`set_cores`](Driver::set_cores)) it
//! also exchanges their messages once per poll, after the burst is input.
//!
//! It owns the receive vector, reused for every burst (no allocation on the
//! data path), and lends the stack's own transmit backlog to `tx_burst`, so
//! frames the queue refuses stay queued in the stack. One clock read per
//! poll: on a VM without a stable TSC a read costs hundreds of nanoseconds.
//!
//! A `Driver` dereferences to its [`Stack`]: the socket calls
//! (`driver.tcp().listen(..)`, `driver.udp().send_to(..)`, ...) are the stack's, made on the driver.
//! Anything else that feeds frames (a test, the fuzzer, software RSS
//! dispatch from another queue) calls [`Stack::input`] /
//! [`Stack::output`] itself.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use pmd::{Clock, Mbuf, Mempool, RxQueue, TxQueue};

use crate::config::StackConfig;
use crate::cores::{CoreLink, Steering};
use crate::error::ConfigError;
use crate::iface::Stack;

/// A [`Stack`] with the rx/tx queue pair and the clock it is polled from.
pub struct Driver<R: RxQueue, T: TxQueue> {
    stack: Stack,
    rxq: R,
    txq: T,
    clock: Arc<dyn Clock>,
    rx: Vec<Mbuf>,
    /// This core's channels to the other cores of the port, if any.
    link: Option<CoreLink>,
}

impl<R: RxQueue, T: TxQueue> Driver<R, T> {
    /// A stack over one queue pair. `pool` provides the buffers the stack
    /// allocates itself (see [`Stack::new`]); `clock` is read once per
    /// [`poll`](Self::poll).
    pub fn new(cfg: StackConfig, rxq: R, txq: T, pool: Mempool, clock: Arc<dyn Clock>) -> Result<Self, ConfigError> {
        let rx = Vec::with_capacity(cfg.burst);
        let stack = Stack::new(cfg, pool, clock.now_ns())?;
        Ok(Driver { stack, rxq, txq, clock, rx, link: None })
    }

    /// One poll-loop iteration: receive a burst and process it (the first
    /// poll announces our addresses first), run due timers, flush transmit.
    /// Returns frames received.
    pub fn poll(&mut self) -> usize {
        let now = self.clock.now_ns();
        let n = self.rxq.rx_burst(&mut self.rx, self.stack.config().burst);
        self.stack.input(now, &mut self.rx);
        if let Some(link) = &self.link {
            link.exchange(&mut self.stack, now);
        }
        self.stack.poll_timers(now);
        self.txq.tx_burst(self.stack.output(now));
        n
    }

    /// Makes this driver's stack one core of several on its port: `steering`
    /// says which and how the port spreads flows, `link` carries neighbour
    /// broadcasts and handed-off frames to and from the other cores, drained
    /// on every [`poll`](Self::poll) (see [`crate::cores`]).
    pub fn set_cores(&mut self, steering: Steering, link: CoreLink) {
        self.stack.set_steering(steering);
        self.link = Some(link);
    }

    /// Produces the pending TCP segments and hands the transmit backlog to
    /// the queue, without reading the clock or running timers. Called every
    /// poll even when empty (decorators release delayed frames there).
    pub fn flush(&mut self) {
        let now = self.stack.now_ns();
        self.txq.tx_burst(self.stack.output(now));
    }

    /// Runs timers due at the clock's current time.
    pub fn run_timers(&mut self) {
        self.stack.poll_timers(self.clock.now_ns());
    }

    /// The stack.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// The stack, mutably.
    pub fn stack_mut(&mut self) -> &mut Stack {
        &mut self.stack
    }

    /// The queues.
    pub fn queues_mut(&mut self) -> (&mut R, &mut T) {
        (&mut self.rxq, &mut self.txq)
    }
}

impl<R: RxQueue, T: TxQueue> Deref for Driver<R, T> {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.stack
    }
}

impl<R: RxQueue, T: TxQueue> DerefMut for Driver<R, T> {
    fn deref_mut(&mut self) -> &mut Stack {
        &mut self.stack
    }
}

/// A driver over boxed queues (any port spec, chosen at run time).
pub type DynDriver = Driver<Box<dyn RxQueue>, Box<dyn TxQueue>>;
