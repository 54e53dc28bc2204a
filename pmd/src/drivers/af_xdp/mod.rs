//! `af_xdp:IFNAME?queues=N&zero_copy=auto|on|off&frame_size=2048&num_frames=4096&
//! rx_size=2048&tx_size=2048&busy_poll=0&need_wakeup=1`: a kernel interface through
//! AF_XDP sockets (XSKs).
//!
//! The interface stays the kernel's (addresses, routes, ssh keep working); an XDP
//! program redirects the frames of queues `0..N` to one XSK per queue, and frames
//! land in our memory: in a device's zero-copy mode the NIC writes them there, in
//! copy mode (veth, drivers without zero-copy) the kernel copies once, as it would
//! into any socket, and nothing more is copied on our side.
//!
//! # Where things are
//! - `bpf`: the XSKMAP, the redirect program and its `bpf_link`;
//! - `ring`: the fill, completion, rx and tx rings shared with the kernel;
//! - `xsk`: one socket per queue, its UMEM (a mempool's memory: an `Mbuf`
//!   points into the UMEM) and who owns which frame;
//! - `port`: [`AfXdpPort`]: open (attach), configure (sockets), counters;
//! - `rx`, `tx`: the burst loops ([`AfXdpRx`], [`AfXdpTx`]).
//!
//! # The loader: the `bpf(2)` syscall, no libbpf/libxdp
//! The program is six instructions (see `bpf`), so we write them and load them
//! with `BPF_PROG_LOAD`, and attach with `BPF_LINK_CREATE` (Linux 5.9+). Why not
//! Debian's `libxdp`/`libbpf` through a `-sys` crate: the default workspace build
//! (and CI's fresh Debian machine) would need two more C libraries and bindgen for
//! ten calls, or the driver would hide behind a feature flag as `dpdk` does and go
//! untested by default; libxdp's multi-program dispatcher needs a bpffs, which
//! this machine does not mount (DPDK's `net_af_xdp` falls back to a single
//! program here anyway). Why not `aya`: a large dependency tree to load the same
//! six instructions. What the link gives us over the netlink attach libxdp uses
//! without bpffs: the program is attached for as long as our link descriptor is
//! open, so closing the port, or the process dying, detaches it; nothing is left
//! redirecting the interface's traffic to a socket that no longer exists.
//!
//! # Modes and options
//! * `zero_copy=auto` (default) binds without a mode flag: the kernel uses the
//!   driver's zero-copy mode if it has one and copy mode otherwise; `on` fails
//!   with an error naming the interface if zero-copy is refused; `off` forces copy
//!   mode. Which one a queue got is [`AfXdpPort::zero_copy`] and the
//!   `q<N>_zero_copy` xstat.
//! * `frame_size` (2048 or 4096, a UMEM chunk) and `num_frames` (per queue, at
//!   least `rx_size + tx_size`) size the UMEM; the largest frame is
//!   `frame_size - 384` bytes (see `xsk`), so the largest MTU is that less 14.
//! * `rx_size` sizes the rx and fill rings, `tx_size` the tx and completion rings
//!   (powers of two). The descriptor counts of [`PortConfig`](crate::PortConfig)
//!   are not used: the rings are the spec's.
//! * `need_wakeup=1` (default) binds with `XDP_USE_NEED_WAKEUP`: we make a
//!   syscall only when the kernel's ring flag asks for one (`recvfrom` for the
//!   fill ring, `sendto` for the tx ring); `0` kicks every transmit burst.
//! * `busy_poll=N` (µs, default 0 = off) sets `SO_PREFER_BUSY_POLL`,
//!   `SO_BUSY_POLL=N` and `SO_BUSY_POLL_BUDGET`, and a receive burst that finds
//!   its ring empty then calls `recvfrom` to let the kernel poll the device.
//! * Queues: the device (its RSS, or for a veth the peer's transmit queue)
//!   picks a frame's queue; an XSK receives only from the queue it is bound to.
//!   A port opened with `queues=N` but configured with fewer queues leaves the
//!   rest without a socket, and their frames go to the kernel (`XDP_PASS`).
//! * The XDP program runs in native (driver) mode only; an interface without
//!   native XDP is an error, not a silent fall back to the generic hook.
//!
//! Offloads: none (XDP gives neither checksums nor VLAN stripping here). The MAC
//! is the interface's; promiscuous mode sets `IFF_PROMISC` on it, and without it
//! unicast frames for other MACs are dropped in software (a veth delivers them).
//! Checksums: a frame the kernel sends over a veth with a partial L4 checksum
//! (`CHECKSUM_PARTIAL`, the offload a veth advertises) reaches XDP with it still
//! partial, and XDP carries no flag that says so; the receiver sees a bad checksum.
//! Real NICs fill it in on the wire. Tests whose kernel peer sends TCP/UDP over a
//! veth turn its transmit checksum offload off (`ethtool -K k0 tx off`).
//! Counters: per queue as every port, plus the kernel's `XDP_STATISTICS` of each
//! socket as xstats; `rx_dropped` and `rx_ring_full` are also `imissed`.
//!
//! `unsafe` here is the bpf syscall, the socket options and the shared ring
//! and UMEM memory; each block says why it is sound.

mod bpf;
mod port;
mod ring;
mod rx;
#[cfg(test)]
mod tests;
mod tx;
mod xsk;

pub use port::AfXdpPort;
pub use rx::AfXdpRx;
pub use tx::AfXdpTx;

use super::netdev;
use crate::spec::{DriverInfo, OpenEnv, Spec};
use crate::{PmdError, Port};

/// Most queues an `af_xdp` port supports.
pub const MAX_QUEUES: u16 = 64;
/// Frames refilled or completed at once, at least.
const BATCH: u32 = 32;

/// `zero_copy=`: what to ask the kernel for when binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Zero-copy if the driver supports it, copy mode otherwise.
    Auto,
    /// Zero-copy or an error.
    On,
    /// Copy mode.
    Off,
}

/// The spec's options (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Queues `0..queues` are taken, one XSK each.
    pub queues: u16,
    /// Binding mode.
    pub zero_copy: ZeroCopy,
    /// UMEM chunk size: 2048 or 4096.
    pub frame_size: u32,
    /// UMEM frames per queue.
    pub num_frames: u32,
    /// rx and fill ring entries (a power of two).
    pub rx_size: u32,
    /// tx and completion ring entries (a power of two).
    pub tx_size: u32,
    /// Busy-poll time in µs, 0 = off.
    pub busy_poll: u32,
    /// Bind with `XDP_USE_NEED_WAKEUP`.
    pub need_wakeup: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queues: 1,
            zero_copy: ZeroCopy::Auto,
            frame_size: 2048,
            num_frames: 4096,
            rx_size: 2048,
            tx_size: 2048,
            busy_poll: 0,
            need_wakeup: true,
        }
    }
}

impl Options {
    /// Checks the options against each other; the error names the option.
    pub fn validate(&self) -> Result<(), PmdError> {
        let bad = |field, reason| Err(PmdError::Config { field, reason });
        if self.queues == 0 || self.queues > MAX_QUEUES {
            return bad("queues", format!("{} is outside 1..={MAX_QUEUES}", self.queues));
        }
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return bad(
                "frame_size",
                format!("{} is not 2048 or 4096 (a UMEM chunk in aligned mode)", self.frame_size),
            );
        }
        for (field, n) in [("rx_size", self.rx_size), ("tx_size", self.tx_size)] {
            if !n.is_power_of_two() || !(64..=32768).contains(&n) {
                return bad(field, format!("{n} is not a power of two in 64..=32768"));
            }
        }
        let need = self.rx_size + self.tx_size;
        if self.num_frames < need || self.num_frames > 1 << 20 {
            return bad(
                "num_frames",
                format!("{} is outside rx_size + tx_size ({need})..={} frames per queue", self.num_frames, 1 << 20),
            );
        }
        if self.busy_poll > 1_000_000 {
            return bad("busy_poll", format!("{} µs is above 1000000", self.busy_poll));
        }
        Ok(())
    }

    /// Bytes of the largest frame a UMEM frame holds.
    pub fn max_frame(&self) -> usize {
        self.frame_size as usize - xsk::HDR - xsk::XDP_PACKET_HEADROOM
    }
}

// The port spec: this driver's options, read from `scheme:target?...`.

/// This driver in the port registry ([`crate::registry`]).
pub(crate) const DRIVER: DriverInfo = DriverInfo {
    scheme: "af_xdp",
    usage: "af_xdp:IFNAME[?queues=1&zero_copy=auto] — existing kernel interface via AF_XDP sockets: an XDP \
            program redirects queues 0..N to us, frames land in our mempool (UMEM)",
    options: &[
        ("queues", "queues 0..N taken, one AF_XDP socket each, 1..=64 (default 1)"),
        ("zero_copy", "auto|on|off: the driver's zero-copy mode, or copy mode (default auto)"),
        ("frame_size", "UMEM frame size, 2048 or 4096 (default 2048); the largest frame is 384 bytes less"),
        ("num_frames", "UMEM frames per queue, at least rx_size + tx_size (default 4096)"),
        ("rx_size", "rx and fill ring entries, a power of two 64..=32768 (default 2048)"),
        ("tx_size", "tx and completion ring entries, a power of two 64..=32768 (default 2048)"),
        ("busy_poll", "µs of SO_BUSY_POLL with SO_PREFER_BUSY_POLL, 0 = off (default 0)"),
        ("need_wakeup", "1: syscalls only when the kernel's ring flag asks (default 1); 0: kick every tx burst"),
    ],
    shared_pool: false,
    open: open_af_xdp,
};

/// The options of `spec`, checked (before anything touches the system).
pub(crate) fn options_of(spec: &Spec) -> Result<Options, PmdError> {
    let d = Options::default();
    let zero_copy = match spec.get("zero_copy") {
        None | Some("auto") => ZeroCopy::Auto,
        Some("on") => ZeroCopy::On,
        Some("off") => ZeroCopy::Off,
        Some(v) => return Err(spec.bad_value("zero_copy", v, "auto, on or off")),
    };
    let o = Options {
        queues: spec.queues(MAX_QUEUES)?,
        zero_copy,
        frame_size: spec.parse_opt("frame_size", "2048 or 4096")?.unwrap_or(d.frame_size),
        num_frames: spec.parse_opt("num_frames", "a frame count")?.unwrap_or(d.num_frames),
        rx_size: spec.parse_opt("rx_size", "a power of two")?.unwrap_or(d.rx_size),
        tx_size: spec.parse_opt("tx_size", "a power of two")?.unwrap_or(d.tx_size),
        busy_poll: spec.parse_opt("busy_poll", "microseconds")?.unwrap_or(d.busy_poll),
        need_wakeup: spec.flag("need_wakeup", d.need_wakeup)?,
    };
    if let Err(PmdError::Config { field, reason }) = o.validate() {
        let v = spec.get(field).unwrap_or("(default)").to_string();
        return Err(spec.bad_value(field, &v, &reason));
    }
    Ok(o)
}

fn open_af_xdp(spec: &Spec, _: &OpenEnv) -> Result<Box<dyn Port>, PmdError> {
    let ifname = netdev::ifname_of(spec)?;
    let opts = options_of(spec)?;
    Ok(Box::new(AfXdpPort::open(ifname, opts)?))
}
