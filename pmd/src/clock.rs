//! Time as an input.
//!
//! Anything in `pmd` (and the stack above it) that needs the time asks a
//! [`Clock`], so a test can run a whole network in virtual time and replay it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// A source of monotonic nanoseconds.
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since an arbitrary, fixed epoch. Never goes backwards.
    fn now_ns(&self) -> u64;
}

/// The real monotonic clock (`CLOCK_MONOTONIC` through `Instant`).
#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicClock;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Clock for MonotonicClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        epoch().elapsed().as_nanos() as u64
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct VirtualClock {
    ns: Arc<AtomicU64>,
}

impl VirtualClock {
    /// A clock at time 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward by `ns`.
    pub fn advance_ns(&self, ns: u64) {
        self.ns.fetch_add(ns, Ordering::AcqRel);
    }

    /// Sets the time; ignored if it would go backwards.
    pub fn set_ns(&self, ns: u64) {
        self.ns.fetch_max(ns, Ordering::AcqRel);
    }
}

impl Clock for VirtualClock {
    #[inline]
    fn now_ns(&self) -> u64 {
        self.ns.load(Ordering::Acquire)
    }
}
