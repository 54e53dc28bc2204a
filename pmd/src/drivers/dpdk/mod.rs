//! `dpdk`: DPDK ethdev ports — PCI NICs bound to vfio-pci and any virtual device
//! (`net_ring`, `net_null`, `net_tap`, `net_af_packet`, `net_af_xdp`,
//! `net_virtio_user`, `net_vhost`, ...) — behind the same [`Port`](crate::Port)
//! trait as every other driver. Built only with the `dpdk` cargo feature.
//!
//! ```text
//! dpdk:0000:03:00.0                      a NIC bound to vfio-pci (scripts/bind-nic.sh)
//! dpdk:net_ring0                         a vdev, created when the port is opened
//! dpdk:net_tap0,iface=dtap0              a vdev with its arguments
//! dpdk:net_virtio_user0,path=/run/vhost.sock
//! ```
//!
//! # EAL
//! DPDK's environment (EAL) is initialised once per process, from an explicit
//! [`EalConfig`] given to [`init`] before the first `dpdk:` port is opened
//! (`testpmd --eal "..."`); opening one earlier is an error that says so. A
//! second `init` with the same config is a no-op, with another one an error:
//! EAL cannot be re-initialised, so tests that need different EAL set-ups run
//! as separate processes. Failures carry `rte_strerror`'s text; bad EAL
//! arguments (EINVAL) are usage errors.
//!
//! # Zero copy
//! [`create_mempool`] makes an `rte_mempool` whose mbufs have a private area of
//! [`PRIV_SIZE`] bytes right after `struct rte_mbuf`, and wraps it as a
//! [`Mempool`](crate::Mempool) with [`ExternalPool`](crate::mempool::ExternalPool)
//! ops (`rte_pktmbuf_alloc_bulk`, `rte_pktmbuf_free`). An [`Mbuf`](crate::Mbuf)
//! of such a pool *is* the `rte_mbuf *` (our header has `struct rte_mbuf`'s
//! layout, asserted field by field against the headers at build time; each
//! mbuf's 8-byte private area points to our pool). So `rte_eth_rx_burst` writes
//! handles straight into the caller's vector and `rte_eth_tx_burst` reads them
//! straight from it: the only per-frame work is one pass that reads `data_len`
//! (byte counters) and `nb_segs` on receive, and checks the pool and the MTU on
//! transmit. Metadata is kept in DPDK's encoding (`ol_flags`, `packet_type`,
//! `hash.rss`, `tx_offload`) and decoded only when read. The handles stay in
//! the caller's vector until the device has taken their mbufs, then the sent
//! prefix is forgotten; frames the device did not take are still valid `Mbuf`s
//! at the front.
//! [`rte_mbuf_view`] exposes the DPDK side of
//! an `Mbuf` so tests can check the pointers. Buffers of non-DPDK pools can be
//! sent too: they are copied into an mbuf of the port's pool and counted
//! (`tx_copies` in the port's xstats).
//!
//! A port must be configured with a pool from [`create_mempool`] (its receive
//! queues fill from it); its headroom must equal DPDK's `RTE_PKTMBUF_HEADROOM`.
//!
//! # Queues, threads, offloads
//! Queue handles may be polled from any thread; the first poll registers the
//! thread with EAL (`rte_thread_register`) so it gets an lcore id and with it
//! the mempool's per-lcore cache. Offload capabilities come from
//! `rte_eth_dev_info` (`rx_offload_capa`, `tx_offload_capa`), requests from
//! [`PortConfig`](crate::PortConfig) and, per packet, from
//! [`MbufMeta`](crate::MbufMeta) (`tx_flags`, `l2_len`, `l3_len`, `l4_len`,
//! `tso_segsz`); receive results (`ol_flags`, `packet_type`, RSS hash) map onto
//! `rx_flags`, `packet_type` and `rss_hash`. RSS takes the key and hash types at
//! configure and the redirection table at start. Received multi-segment chains
//! (scatter is not enabled) are dropped and counted (`rx_dropped_segments`);
//! frames over the MTU are dropped on transmit and counted (`oerrors`).
//! Statistics are our per-queue counters (exact, per burst) plus the device's
//! `imissed`, `ierrors`, `oerrors` and `rx_nombuf`; xstats add the device's own,
//! prefixed `dev_`.
//!
//! # PCI devices
//! Before DPDK sees a PCI address, sysfs is checked: a device that does not
//! exist, or that is bound to a kernel driver rather than vfio-pci (or uio), is
//! an error naming the fix (`scripts/bind-nic.sh`). A bound device that EAL did
//! not probe at start-up is hot-plugged with `rte_dev_probe`.
//!
//! # Lifetime
//! Stopping a port drains its receive queues (when no queue handle is alive),
//! so buffers a vdev holds (net_ring keeps frames in its rings) go back to the
//! pool; dropping it stops, closes and, for a vdev it created, removes the
//! device.

mod eal;
mod pool;
mod port;

pub use eal::{config, init, is_initialized, EalConfig, EalMemory, EalPci};
pub use pool::{create_mempool, rte_mbuf_view, RteMbufView, PRIV_SIZE};
pub use port::{DpdkPort, DpdkRx, DpdkTx, MAX_BURST};

/// The raw bindings, for code that needs DPDK directly.
pub use dpdk_sys as sys;

use crate::spec::{DriverInfo, OpenEnv, Spec};
use crate::{PmdError, Port};

/// Releases EAL's resources (`rte_eal_cleanup`) at the end of a process that
/// initialised it. Every port and DPDK mempool must be gone first.
pub fn cleanup() {
    if is_initialized() {
        // SAFETY: EAL is initialised; the caller guarantees no DPDK object is in
        // use any more.
        unsafe { sys::rte_eal_cleanup() };
    }
}

// The port spec: this driver's options, read from `dpdk:target?...`.

/// This driver in the port registry ([`crate::registry`]).
pub(crate) const DRIVER: DriverInfo = DriverInfo {
    scheme: "dpdk",
    usage: "dpdk:PCI_ADDRESS | dpdk:VDEV[,ARGS] — a DPDK ethdev: a NIC bound to vfio-pci (dpdk:0000:03:00.0) \
            or a virtual device (dpdk:net_ring0, dpdk:net_tap0,iface=tap0); needs EAL (testpmd --eal)",
    options: &[(
        "checks",
        "full (default): MTU enforced on transmit and exact byte counters per queue, as on every port; \
         none: DPDK's own semantics, no per-frame work (bytes from the device's counters, oversize \
         frames left to the device)",
    )],
    shared_pool: false,
    open: open_dpdk,
};

fn open_dpdk(spec: &Spec, _: &OpenEnv) -> Result<Box<dyn Port>, PmdError> {
    Ok(Box::new(DpdkPort::open(&spec.text, &spec.target, spec.checks()?)?))
}
