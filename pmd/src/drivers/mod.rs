//! Poll-mode drivers. Each is reached through a spec string (see [`crate::spec`]).

pub mod af_packet;
pub mod af_xdp;
#[cfg(feature = "dpdk")]
pub mod dpdk;
mod fanout_bpf;
pub(crate) mod netdev;
pub mod null;
pub mod ring;
mod state;
pub mod tap;
mod tap_bpf;
pub mod virtio_user;

use std::sync::Arc;

pub(crate) use state::PortState;

use crate::PmdError;

/// Fails unless every queue handle of the previous configuration has been dropped.
/// Queue handles hold the only other references to their counters, so a strong
/// count above one means a handle is still alive somewhere.
pub(crate) fn ensure_no_handles<T, U>(port: &str, rx: &[Arc<T>], tx: &[Arc<U>]) -> Result<(), PmdError> {
    if rx.iter().any(|c| Arc::strong_count(c) > 1) || tx.iter().any(|c| Arc::strong_count(c) > 1) {
        return Err(PmdError::State {
            port: port.to_string(),
            reason: "queue handles of the previous configuration are still in use; drop them first".into(),
        });
    }
    Ok(())
}

/// What every driver's `configure` checks first: the port is stopped and no
/// queue handle of its previous configuration is alive.
pub(crate) fn ensure_configurable<T, U>(
    port: &str,
    started: bool,
    rx: &[Arc<T>],
    tx: &[Arc<U>],
) -> Result<(), PmdError> {
    if started {
        return Err(PmdError::State { port: port.to_string(), reason: "stop the port before configuring it".into() });
    }
    ensure_no_handles(port, rx, tx)
}

/// Takes queue `q`'s counters for a new handle, checking the index and that no
/// other handle for it is alive.
pub(crate) fn claim_queue<T>(port: &str, kind: &str, q: u16, list: &[Arc<T>]) -> Result<Arc<T>, PmdError> {
    let c = list.get(q as usize).ok_or_else(|| PmdError::State {
        port: port.to_string(),
        reason: format!("{kind} queue {q} does not exist ({} configured)", list.len()),
    })?;
    if Arc::strong_count(c) > 1 {
        return Err(PmdError::State {
            port: port.to_string(),
            reason: format!("{kind} queue {q} is already owned by another handle"),
        });
    }
    Ok(c.clone())
}

/// Fails if the port has not been configured yet.
pub(crate) fn not_configured(port: &str) -> PmdError {
    PmdError::State { port: port.to_string(), reason: "not configured".into() }
}
