//! Cores: what a core's task is given ([`Core`]), and running one pinned
//! thread per core. Shared by the kernel runtime ([`crate::runtime`]) and the
//! user-stack runtime ([`crate::user`]), so neither imports the other's
//! module for it.

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
