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

use crate::exec::Executor;
use crate::kernel::{KernelNet, KernelReactor};
use crate::FlowError;

/// What a core's task gets.
pub struct Core<N> {
    /// Position of this core in the runtime's list (0-based): also its queue.
    pub index: usize,
    /// How many cores the runtime runs.
    pub count: usize,
    /// The CPU it is pinned to.
    pub cpu: usize,
    /// This core's network.
    pub net: N,
}

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

/// Checks the core list, naming the problem.
pub(crate) fn check_cores(cores: &[usize]) -> Result<(), FlowError> {
    if cores.is_empty() {
        return Err(FlowError::invalid("cores: at least one core is needed"));
    }
    pmd::runtime::check_cores(cores).map_err(|e| FlowError::invalid(e.to_string()))
}

/// Pins the calling thread.
pub(crate) fn pin(cpu: usize) -> Result<(), FlowError> {
    if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        Ok(())
    } else {
        Err(FlowError::invalid(format!("cores: cannot pin a thread to core {cpu}")))
    }
}

/// Runs `per_core(index, cpu)` on one pinned thread per core and collects the
/// results in core order.
pub(crate) fn on_cores<T: Send>(
    cores: &[usize],
    per_core: impl Fn(usize, usize) -> Result<T, FlowError> + Sync,
) -> Result<Vec<T>, FlowError> {
    check_cores(cores)?;
    std::thread::scope(|s| {
        let handles: Vec<_> = cores
            .iter()
            .enumerate()
            .map(|(i, &cpu)| {
                let f = &per_core;
                std::thread::Builder::new()
                    .name(format!("core{cpu}"))
                    .spawn_scoped(s, move || {
                        pin(cpu)?;
                        f(i, cpu)
                    })
                    .map_err(FlowError::from)
            })
            .collect();
        let mut out = Vec::new();
        let mut first_err = None;
        for h in handles {
            match h.and_then(|h| h.join().map_err(|_| FlowError::invalid("a core's thread panicked"))) {
                Ok(Ok(v)) => out.push(v),
                Ok(Err(e)) | Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    })
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
