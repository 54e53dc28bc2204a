//! `virtio-user:/path/to/vhost.sock?queues=N&server=0|1&qsize=Q&in_order=0|1`: a virtio-net
//! device driven from user space over vhost-user, without DPDK.
//!
//! Where no NIC is ours (a VM on OVS-DPDK or VPP, a container wired to a
//! vhost-user switch) the switch offers a vhost-user socket; this driver is the
//! *front end* (the role QEMU or DPDK's `net_virtio_user` play): it owns the
//! memory and the virtqueues, and the *back end* (the switch, or
//! `dpdk-testpmd --vdev net_vhost0,iface=SOCK` in our tests) moves frames in and
//! out of them. The kernel is never on the data path.
//!
//! # Where things are
//! - `control`: the control plane: the vhost-user socket and handshake, feature
//!   negotiation, and the monitor thread that reconnects;
//! - `vring`: the ring memory (a memfd, GPA = VA), split virtqueues, barriers
//!   and notification suppression;
//! - `port`: [`VirtioUserPort`]: open, configure, start and stop, link state,
//!   the MAC filter and counters;
//! - `handles`: the only places that turn a buffer in flight into an [`Mbuf`]
//!   and back;
//! - `rx`, `tx`: the burst loops ([`VirtioRx`], [`VirtioTx`]).
//!
//! Not implemented: packed rings, indirect descriptors, `EVENT_IDX`, the control
//! queue, and receiving frames that span buffers.
//!
//! `unsafe` here is the shared ring memory (raw pointers into the memfd mapping,
//! atomics on the indices the back end reads and writes) and a few syscalls;
//! each block says why it is sound.

mod control;
mod handles;
mod port;
mod rx;

// The port spec: this driver's options, read from `scheme:target?...`.

/// This driver in the port registry ([`crate::registry`]).
pub(crate) const DRIVER: DriverInfo = DriverInfo {
    scheme: "virtio-user",
    usage: "virtio-user:/path/to/vhost.sock[?queues=1&server=0&qsize=256&in_order=1] — virtio-net over a vhost-user \
            socket (OVS-DPDK, VPP, DPDK vhost), zero copy from a shared (memfd) pool, no DPDK needed",
    options: &[
        ("queues", "queue pairs, 1..=16 (default 1); more than 1 needs VIRTIO_NET_F_MQ"),
        ("server", "1: listen on the path and wait for the back end (default 0: connect to it)"),
        ("qsize", "entries per virtqueue, a power of two 16..=32768 (default 256)"),
        ("mrg_rxbuf", "1: negotiate VIRTIO_NET_F_MRG_RXBUF (default 1)"),
        ("in_order", "1: negotiate VIRTIO_F_IN_ORDER, buffers used in ring order (default 1)"),
        ("wait_ms", "with server=1, how long opening waits for the back end (default 10000)"),
        ("mac", "MAC address of the port (default derived from the path)"),
    ],
    shared_pool: true,
    open: open_virtio_user,
};

fn open_virtio_user(spec: &Spec, _: &OpenEnv) -> Result<Box<dyn Port>, PmdError> {
    let path = spec.require_target("the vhost-user socket path: virtio-user:/path/to/vhost.sock")?;
    let d = Options::default();
    let opts = Options {
        queues: spec.queues(MAX_QUEUES)?,
        server: spec.flag("server", d.server)?,
        qsize: spec.parse_opt("qsize", &format!("a power of two, 16..={MAX_QSIZE}"))?.unwrap_or(d.qsize),
        mrg_rxbuf: spec.flag("mrg_rxbuf", d.mrg_rxbuf)?,
        in_order: spec.flag("in_order", d.in_order)?,
        wait_ms: spec.parse_opt("wait_ms", "milliseconds")?.unwrap_or(d.wait_ms),
    };
    if let Err(PmdError::Config { field, reason }) = opts.validate() {
        let v = spec.get(field).unwrap_or("(default)").to_string();
        return Err(spec.bad_value(field, &v, &reason));
    }
    let mac = spec.mac(&format!("virtio-user:{path}"))?;
    Ok(Box::new(VirtioUserPort::open(path, opts, mac)?))
}

#[cfg(test)]
mod tests;
mod tx;
mod vring;

pub use port::VirtioUserPort;
pub use rx::VirtioRx;
pub use tx::VirtioTx;

use std::io;
use std::time::Duration;

#[cfg(doc)]
use crate::Mbuf;
use crate::PmdError;

/// Most queue pairs a port opens.
pub const MAX_QUEUES: u16 = 16;
/// Largest ring size (virtio's limit for split rings).
pub const MAX_QSIZE: u16 = 32768;
/// Largest MTU the port accepts (frames must fit one receive buffer).
pub const MAX_MTU: u16 = 9000;
/// Bytes of `virtio_net_hdr_mrg_rxbuf` in front of every frame (`VERSION_1`).
pub const HDR_LEN: usize = 12;

/// Virtio feature bits we know.
pub mod features {
    /// Device handles partial checksums (our transmit checksum offload).
    pub const CSUM: u64 = 1 << 0;
    /// Driver handles partial checksums (our receive checksum offload).
    pub const GUEST_CSUM: u64 = 1 << 1;
    /// Device has a MAC in its config space (not readable over vhost-user).
    pub const MAC: u64 = 1 << 5;
    /// Device segments TCPv4 super-frames.
    pub const HOST_TSO4: u64 = 1 << 11;
    /// Device segments TCPv6 super-frames.
    pub const HOST_TSO6: u64 = 1 << 12;
    /// Mergeable receive buffers (12-byte header with `num_buffers`).
    pub const MRG_RXBUF: u64 = 1 << 15;
    /// Link status in config space.
    pub const STATUS: u64 = 1 << 16;
    /// Control virtqueue.
    pub const CTRL_VQ: u64 = 1 << 17;
    /// Several queue pairs.
    pub const MQ: u64 = 1 << 22;
    /// vhost-user protocol features.
    pub const PROTOCOL_FEATURES: u64 = 1 << 30;
    /// Virtio 1.0 (modern, little-endian).
    pub const VERSION_1: u64 = 1 << 32;
    /// The device uses buffers in the order they were made available.
    pub const IN_ORDER: u64 = 1 << 35;

    /// The names of the bits in `f` we know, for messages.
    pub fn names(f: u64) -> String {
        let all = [
            (CSUM, "VIRTIO_NET_F_CSUM"),
            (GUEST_CSUM, "VIRTIO_NET_F_GUEST_CSUM"),
            (MAC, "VIRTIO_NET_F_MAC"),
            (HOST_TSO4, "VIRTIO_NET_F_HOST_TSO4"),
            (HOST_TSO6, "VIRTIO_NET_F_HOST_TSO6"),
            (MRG_RXBUF, "VIRTIO_NET_F_MRG_RXBUF"),
            (STATUS, "VIRTIO_NET_F_STATUS"),
            (CTRL_VQ, "VIRTIO_NET_F_CTRL_VQ"),
            (MQ, "VIRTIO_NET_F_MQ"),
            (PROTOCOL_FEATURES, "VHOST_USER_F_PROTOCOL_FEATURES"),
            (VERSION_1, "VIRTIO_F_VERSION_1"),
            (IN_ORDER, "VIRTIO_F_IN_ORDER"),
        ];
        let v: Vec<String> = (0..64)
            .filter(|b| f & (1u64 << b) != 0)
            .map(|b| {
                all.iter().find(|(m, _)| *m == 1u64 << b).map(|(_, n)| n.to_string()).unwrap_or(format!("bit {b}"))
            })
            .collect();
        v.join("|")
    }
}
use crate::spec::{DriverInfo, OpenEnv, Spec};
use crate::Port;
use features as F;

pub(super) const VRING_DESC_F_WRITE: u16 = 2;
pub(super) const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;
pub(super) const VRING_USED_F_NO_NOTIFY: u16 = 1;
/// How often the monitor checks the connection (and retries when it is down).
pub(super) const MONITOR_PERIOD: Duration = Duration::from_millis(20);
/// Longest wait for one answer of the back end.
pub(super) const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Receive descriptors are refilled once this many are free.
pub(super) const RX_REFILL_BATCH: usize = 32;

/// Options of a `virtio-user:` spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Queue pairs, 1..=[`MAX_QUEUES`].
    pub queues: u16,
    /// Listen on the path (the back end connects) instead of connecting.
    pub server: bool,
    /// Entries per virtqueue, a power of two up to [`MAX_QSIZE`].
    pub qsize: u16,
    /// Ack `VIRTIO_NET_F_MRG_RXBUF`.
    pub mrg_rxbuf: bool,
    /// Ack `VIRTIO_F_IN_ORDER` (required of the back end when set).
    pub in_order: bool,
    /// With `server`, how long `open` waits for the back end to connect.
    pub wait_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { queues: 1, server: false, qsize: 256, mrg_rxbuf: true, in_order: true, wait_ms: 10_000 }
    }
}

impl Options {
    /// Checks the values; the error names the option.
    pub fn validate(&self) -> Result<(), PmdError> {
        if self.queues == 0 || self.queues > MAX_QUEUES {
            return Err(PmdError::Config {
                field: "queues",
                reason: format!("{} is outside 1..={MAX_QUEUES}", self.queues),
            });
        }
        if !self.qsize.is_power_of_two() || self.qsize < 16 {
            return Err(PmdError::Config {
                field: "qsize",
                reason: format!("{} is not a power of two in 16..={MAX_QSIZE}", self.qsize),
            });
        }
        Ok(())
    }
}

pub(super) fn io_err(context: String) -> impl FnOnce(io::Error) -> PmdError {
    move |source| PmdError::Io { context, source }
}
