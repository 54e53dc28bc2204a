//! Runtimes: one pinned thread per core, each running its own executor over its
//! own reactor (shared-nothing: a core's stack, sockets and tasks never leave it).
//!
//! ```no_run
//! # use flow::{Runtime, Net, Listener};
//! // Kernel sockets, cores 0 and 1 (each listens with SO_REUSEPORT):
//! Runtime::kernel().cores(&[0, 1]).run(|core| async move {
//!     let net = core.net;
//!     // ... an application generic over `N: Net` ...
//! }).unwrap();
//! ```
//!
//! The user-stack runtime ([`crate::user::UserRuntime`]) takes the port spec,
//! the stack configuration and addresses, then the same `run`.

use std::future::Future;

use crate::cores::{on_cores, Core};
use crate::exec::Executor;
use crate::kernel::{KernelNet, KernelReactor};
use crate::FlowError;

/// Entry points of the runtime builders.
pub struct Runtime;

impl Runtime {
    /// Kernel sockets (mio), one epoll reactor per core.
    pub fn kernel() -> KernelRuntime {
        KernelRuntime { cores: Vec::new(), busy: false }
    }

    /// Our stack on the port `spec` (one queue pair and one stack per core),
    /// configured by `cfg` (addresses, neighbour cache, ... all explicit).
    pub fn user(spec: &str, cfg: stack::StackConfig) -> crate::user::UserRuntime {
        crate::user::UserRuntime::new(spec, cfg)
    }
}

/// The kernel-socket runtime.
pub struct KernelRuntime {
    cores: Vec<usize>,
    busy: bool,
}

impl KernelRuntime {
    /// The cores to run on (one thread each).
    pub fn cores(mut self, cores: &[usize]) -> Self {
        self.cores = cores.to_vec();
        self
    }

    /// Poll epoll without sleeping (as our stack does) instead of parking.
    pub fn busy_poll(mut self, busy: bool) -> Self {
        self.busy = busy;
        self
    }

    /// Runs `app` on every core until each core's future completes.
    pub fn run<F, Fut>(self, app: F) -> Result<Vec<Fut::Output>, FlowError>
    where
        F: Fn(Core<KernelNet>) -> Fut + Sync,
        Fut: Future + 'static,
        Fut::Output: Send,
    {
        let count = self.cores.len();
        on_cores(&self.cores, |index, cpu| {
            let r = if self.busy { KernelReactor::busy()? } else { KernelReactor::new()? };
            let net = r.net();
            let mut ex = Executor::new(r);
            ex.block_on(app(Core { index, count, cpu, net }))
        })
    }
}
