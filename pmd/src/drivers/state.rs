//! What every driver keeps the same way between `configure` and its queue
//! handles: its name for messages, the configuration, and the per-queue
//! counters the handles own. Whether the port is started stays with each
//! driver (its handles check a flag of their own per burst, and a `ring`
//! port's peer reads it), so the lifecycle calls take that flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::port::{PortConfig, PortCounters, PortStats, RxCounters, TxCounters};
use crate::PmdError;

/// A port's name, configuration and counters (see the module docs).
#[derive(Debug)]
pub(crate) struct PortState {
    /// The port's name in errors (a ring name, an interface name, a path).
    pub(crate) name: String,
    conf: Option<PortConfig>,
    counters: PortCounters,
}

impl PortState {
    /// A port that is not configured yet.
    pub(crate) fn new(name: impl Into<String>) -> PortState {
        PortState { name: name.into(), conf: None, counters: PortCounters::default() }
    }

    /// What `configure` checks first: the port is stopped and no queue handle
    /// of its previous configuration is alive.
    pub(crate) fn ensure_configurable(&self, started: bool) -> Result<(), PmdError> {
        super::ensure_configurable(&self.name, started, &self.counters.rx, &self.counters.tx)
    }

    /// What `configure` does last: fresh counters for `conf`'s queues, and
    /// `conf` kept.
    pub(crate) fn set_configured(&mut self, conf: &PortConfig) {
        self.counters = PortCounters::new(conf.rx_queues, conf.tx_queues);
        self.conf = Some(conf.clone());
    }

    /// The configuration, if any.
    pub(crate) fn config(&self) -> Option<&PortConfig> {
        self.conf.as_ref()
    }

    /// The configuration, or the error that says there is none.
    pub(crate) fn configured(&self) -> Result<&PortConfig, PmdError> {
        self.conf.as_ref().ok_or_else(|| super::not_configured(&self.name))
    }

    /// Sets `started` if the port is configured.
    pub(crate) fn start(&self, started: &AtomicBool) -> Result<(), PmdError> {
        self.configured()?;
        started.store(true, Ordering::Release);
        Ok(())
    }

    /// The counters of receive queue `q` for a new handle.
    pub(crate) fn claim_rx(&self, q: u16) -> Result<Arc<RxCounters>, PmdError> {
        self.configured()?;
        super::claim_queue(&self.name, "rx", q, &self.counters.rx)
    }

    /// The counters of transmit queue `q` for a new handle.
    pub(crate) fn claim_tx(&self, q: u16) -> Result<Arc<TxCounters>, PmdError> {
        self.configured()?;
        super::claim_queue(&self.name, "tx", q, &self.counters.tx)
    }

    /// The counters since the last reset.
    pub(crate) fn stats(&self) -> PortStats {
        self.counters.snapshot()
    }

    /// Starts counting from zero again (see [`PortCounters::reset`]).
    pub(crate) fn reset_stats(&mut self) {
        self.counters.reset()
    }
}
