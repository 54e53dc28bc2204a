//! `tap:IFNAME?queues=N`: a Linux TAP interface as a port.
//!
//! The kernel is the wire: frames we send come out of interface `IFNAME` into the
//! kernel's stack (of the namespace the port was opened in), and what the kernel
//! routes to `IFNAME` is what we receive. The device is opened through
//! `/dev/net/tun` with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE`:
//!
//! * **create or attach**: if `IFNAME` does not exist it is created (and disappears
//!   when the port is dropped); if it exists (e.g. a persistent TAP made by
//!   `ip tuntap add mode tap multi_queue vnet_hdr`, as `scripts/testbed.sh` does) we
//!   attach to it. A persistent TAP made without `multi_queue` can still be
//!   attached with `queues=1`.
//! * **queues**: one file descriptor per queue (`IFF_MULTI_QUEUE`), all opened
//!   when the port is opened (`queues` is the port's maximum); rx and tx queue *i*
//!   share descriptor *i*. Without RSS the kernel spreads flows over the
//!   descriptors by its flow hash (and, with automq, towards the queue a flow
//!   was last sent from). The port offers software RSS ([`crate::rss`]):
//!   configured with an `RssConfig` and more than one queue, it loads an eBPF
//!   program computing our Toeplitz hash and redirection table (module
//!   `tap_bpf`, emitted without a toolchain; loading needs CAP_BPF, which root
//!   has) and makes it the device's steering program (`TUNSETSTEERINGEBPF`),
//!   so every frame reaches the queue our RSS names, as on a NIC.
//! * **burst I/O**: descriptors are non-blocking; `rx_burst` reads (one `readv` per
//!   frame — a character device has no batched receive call) until `EAGAIN` or the
//!   burst is full; `tx_burst` writes until `EAGAIN`, leaving the rest with the
//!   caller. Frames are copied between the kernel and our mbufs, as with every
//!   TAP PMD (DPDK's `net_tap` included).
//! * **offloads as virtio-net headers**: every frame crosses the boundary behind a
//!   10-byte `virtio_net_hdr`. On transmit, `TxFlags::{TCP,UDP}_CKSUM` become
//!   `NEEDS_CSUM` with `csum_start = l2_len + l3_len` (the checksum field holds the
//!   pseudo-header sum, as DPDK and virtio both expect), `TCP_SEG` becomes a GSO
//!   header (`gso_size = tso_segsz`), and `IP_CKSUM` is done in software (virtio
//!   has no IPv4 header offload). On receive, what the kernel may hand us is chosen
//!   with `TUNSETOFFLOAD` from the configured receive offloads: L4 checksum offload
//!   enables `TUN_F_CSUM` (frames may arrive with partial checksums, flagged
//!   `RxFlags::L4_CKSUM_PARTIAL`, or verified, `L4_CKSUM_GOOD`); `TCP_LRO` also
//!   enables `TUN_F_TSO4|TSO6` (super-frames up to 64 KiB, flagged `RxFlags::LRO`
//!   with `tso_segsz`; the pool's data room must hold 65549 bytes). Without them the
//!   kernel finishes every checksum and segments everything before we see it.
//! * **MAC, promiscuous mode**: the port has its own MAC (`mac=` option, default
//!   derived from the name), distinct from the kernel side's. Without promiscuous
//!   mode unicast frames for other MACs are dropped in software, as a NIC filter.
//! * **MTU**: `set_mtu` sets the kernel interface's MTU too; longer frames are
//!   dropped and counted in both directions.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;

use super::netdev::{self, cvt, io_err, IfReq};
use super::PortState;
use crate::port::{frame_fits_mtu, Link, MacAddr, PortConfig, PortInfo, PortStats, RxCounters, TxCounters};
use crate::spec::{DriverInfo, OpenEnv, Spec};
use crate::{Mbuf, MbufMeta, Mempool, PmdError, Port, RxFlags, RxOffloads, RxQueue, TxFlags, TxOffloads, TxQueue};

/// Most queues a TAP port opens (the kernel allows 256).
pub const MAX_QUEUES: u16 = 64;
/// Largest MTU the port accepts.
pub const MAX_MTU: u16 = 9000;
/// Size of the virtio-net header in front of every frame.
pub const VNET_HDR_LEN: usize = 10;

const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;
const IFF_MULTI_QUEUE: i16 = 0x0100;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;

const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;

/// Offloads a TAP port offers.
pub const RX_OFFLOADS: RxOffloads = RxOffloads::UDP_CKSUM.union(RxOffloads::TCP_CKSUM).union(RxOffloads::TCP_LRO);
/// Transmit offloads a TAP port offers.
pub const TX_OFFLOADS: TxOffloads =
    TxOffloads::IPV4_CKSUM.union(TxOffloads::UDP_CKSUM).union(TxOffloads::TCP_CKSUM).union(TxOffloads::TCP_TSO);

/// A `virtio_net_hdr` (legacy layout, native endian as the kernel's TAP uses by
/// default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `NEEDS_CSUM`, `DATA_VALID`.
    pub flags: u8,
    /// GSO type.
    pub gso_type: u8,
    /// Length of the headers (GSO).
    pub hdr_len: u16,
    /// Payload bytes per segment (GSO).
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Decodes the 10 wire bytes.
    pub fn from_bytes(b: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        VnetHdr { flags: b[0], gso_type: b[1], hdr_len: u(2), gso_size: u(4), csum_start: u(6), csum_offset: u(8) }
    }
    /// Encodes to the 10 wire bytes.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// What a received header says about the frame: checksum state (only when
    /// `csum` offloads are enabled; otherwise the sender finished every checksum)
    /// and, for a coalesced super-frame, `LRO` with its segment size.
    pub fn rx_flags(&self, csum: bool) -> (RxFlags, u16) {
        let mut f = RxFlags::empty();
        if csum {
            if self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
                f |= RxFlags::L4_CKSUM_PARTIAL;
            } else if self.flags & VIRTIO_NET_HDR_F_DATA_VALID != 0 {
                f |= RxFlags::L4_CKSUM_GOOD;
            }
        }
        if self.gso_type & 0x7f != VIRTIO_NET_HDR_GSO_NONE {
            f |= RxFlags::LRO;
            return (f, self.gso_size);
        }
        (f, 0)
    }

    /// The header for a frame's transmit offload requests; `None` when a request is
    /// inconsistent (lengths missing or past the frame), which the caller counts as
    /// an error. Computes the IPv4 header checksum in place when asked.
    pub fn for_tx(m: &mut Mbuf) -> Option<VnetHdr> {
        let meta = m.meta();
        let f = meta.tx_flags;
        if f.is_empty() {
            return Some(VnetHdr::default());
        }
        let l2 = meta.l2_len as usize;
        let l3 = meta.l3_len as usize;
        let mut h = VnetHdr::default();
        if f.contains(TxFlags::IP_CKSUM) {
            let d = m.data_mut();
            if l3 < 20 || d.len() < l2 + l3 {
                return None;
            }
            let ip = &mut d[l2..l2 + l3];
            ip[10] = 0;
            ip[11] = 0;
            let c = !netdev::csum_fold(netdev::csum_add(0, ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let l4_off = if f.contains(TxFlags::TCP_CKSUM) || f.contains(TxFlags::TCP_SEG) {
            Some(16)
        } else if f.contains(TxFlags::UDP_CKSUM) {
            Some(6)
        } else {
            None
        };
        if let Some(off) = l4_off {
            let start = l2 + l3;
            if l3 == 0 || start + off + 2 > m.len() {
                return None;
            }
            h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
            h.csum_start = start as u16;
            h.csum_offset = off as u16;
        }
        if f.contains(TxFlags::TCP_SEG) {
            let l4 = meta.l4_len as usize;
            if l4 < 20 || meta.tso_segsz == 0 {
                return None;
            }
            h.gso_type = if f.contains(TxFlags::IPV6) { VIRTIO_NET_HDR_GSO_TCPV6 } else { VIRTIO_NET_HDR_GSO_TCPV4 };
            h.gso_size = meta.tso_segsz;
            h.hdr_len = (l2 + l3 + l4) as u16;
        }
        Some(h)
    }
}

fn open_queue(ifname: &str, multi: bool) -> io::Result<OwnedFd> {
    let path = c"/dev/net/tun";
    // SAFETY: open(2) on a NUL-terminated path; the result is checked and then owned.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReq::new(ifname).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if multi {
        flags |= IFF_MULTI_QUEUE;
    }
    req.set_short(flags);
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req` is.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let sz: libc::c_int = VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ as _, &sz as *const libc::c_int) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn set_offload(fd: &OwnedFd, bits: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD as _, bits as libc::c_ulong) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A `tap` port.
pub struct TapPort {
    ifname: String,
    mac: MacAddr,
    fds: Vec<Arc<OwnedFd>>,
    created: bool,
    mtu: Arc<AtomicU16>,
    promisc: Arc<AtomicBool>,
    started: Arc<AtomicBool>,
    /// The interface was moved to another network namespace after we opened it
    /// (a testbed or a container owns it now): our descriptors still carry its
    /// frames, but its name means nothing here and its link state is the owner's.
    elsewhere: bool,
    state: PortState,
    /// Offers software RSS (an eBPF steering program); `rss=0` leaves the
    /// kernel's spread.
    rss: bool,
}

impl TapPort {
    /// Offers software RSS or not (the spec's `rss`, default 1; see the
    /// module documentation).
    pub fn with_rss(mut self, on: bool) -> Self {
        self.rss = on;
        self
    }

    /// Opens (creating it if missing) TAP interface `ifname` with `queues` queues.
    pub fn open(ifname: &str, queues: u16, mac: MacAddr) -> Result<TapPort, PmdError> {
        netdev::check_ifname(ifname)?;
        if queues == 0 || queues > MAX_QUEUES {
            return Err(PmdError::Config { field: "queues", reason: format!("{queues} is outside 1..={MAX_QUEUES}") });
        }
        let created = netdev::ifindex(ifname).is_err();
        let ctx = |q: u16| format!("tap '{ifname}': opening queue {q} through /dev/net/tun");
        let mut fds = Vec::new();
        let mut multi = true;
        for q in 0..queues {
            let fd = match open_queue(ifname, multi) {
                // An existing single-queue TAP refuses IFF_MULTI_QUEUE with EINVAL.
                Err(e) if q == 0 && queues == 1 && e.raw_os_error() == Some(libc::EINVAL) => {
                    multi = false;
                    open_queue(ifname, false).map_err(io_err(ctx(q)))?
                }
                r => r.map_err(io_err(ctx(q)))?,
            };
            fds.push(Arc::new(fd));
        }
        set_offload(&fds[0], 0).map_err(io_err(format!("tap '{ifname}': TUNSETOFFLOAD")))?;
        let mtu = netdev::mtu(ifname)?;
        Ok(TapPort {
            ifname: ifname.to_string(),
            mac,
            fds,
            created,
            mtu: Arc::new(AtomicU16::new(mtu)),
            promisc: Arc::new(AtomicBool::new(false)),
            elsewhere: false,
            started: Arc::new(AtomicBool::new(false)),
            state: PortState::new(ifname),
            rss: true,
        })
    }

    /// Whether opening the port created the interface (it then vanishes with the port).
    pub fn created(&self) -> bool {
        self.created
    }

    /// The kernel interface's name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
}

impl Port for TapPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "tap",
            name: self.ifname.clone(),
            mac: self.mac,
            mtu: self.mtu.load(Ordering::Relaxed),
            min_mtu: 68,
            max_mtu: MAX_MTU,
            max_rx_queues: self.fds.len() as u16,
            max_tx_queues: self.fds.len() as u16,
            max_desc: 32768,
            rx_offloads: RX_OFFLOADS,
            tx_offloads: TX_OFFLOADS,
            rss: self.rss.then(crate::rss::software_capabilities),
        }
    }

    fn configure(&mut self, conf: &PortConfig) -> Result<(), PmdError> {
        self.state.ensure_configurable(self.is_started())?;
        conf.validate(&self.info())?;
        let mut bits = 0;
        if conf.rx_offloads.intersects(RxOffloads::UDP_CKSUM | RxOffloads::TCP_CKSUM | RxOffloads::TCP_LRO) {
            bits |= TUN_F_CSUM;
        }
        if conf.rx_offloads.contains(RxOffloads::TCP_LRO) {
            if conf.mempool.data_room() < 65535 + 14 {
                return Err(PmdError::Config {
                    field: "rx_offloads",
                    reason: format!(
                        "TCP_LRO on tap needs a pool data room of at least 65549 bytes (64 KiB super-frames), not {}",
                        conf.mempool.data_room()
                    ),
                });
            }
            bits |= TUN_F_TSO4 | TUN_F_TSO6;
        }
        set_offload(&self.fds[0], bits).map_err(io_err(format!("tap '{}': TUNSETOFFLOAD", self.ifname)))?;
        match &conf.rss {
            Some(rss) if conf.rx_queues > 1 => {
                let name = &self.ifname;
                let prog = super::tap_bpf::load(&super::tap_bpf::program(&crate::rss::Rss::new(rss)?))
                    .map_err(io_err(format!("tap '{name}': loading the RSS steering program")))?;
                super::tap_bpf::attach(&self.fds[0], Some(&prog))
                    .map_err(io_err(format!("tap '{name}': TUNSETSTEERINGEBPF")))?;
            }
            // A persistent TAP may keep an earlier user's program: back to
            // the kernel's own choice (an old kernel without the call has none).
            _ => drop(super::tap_bpf::attach(&self.fds[0], None)),
        }
        self.state.set_configured(conf);
        Ok(())
    }

    fn config(&self) -> Option<&PortConfig> {
        self.state.config()
    }

    fn start(&mut self) -> Result<(), PmdError> {
        self.state.configured()?;
        match netdev::set_up(&self.ifname, true) {
            Ok(()) => self.elsewhere = false,
            Err(PmdError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => self.elsewhere = true,
            Err(e) => return Err(e),
        }
        self.started.store(true, Ordering::Release);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PmdError> {
        // The kernel interface stays up: taking it down would flush its IPv6
        // addresses, which belong to whoever configured the kernel side.
        self.started.store(false, Ordering::Release);
        Ok(())
    }

    fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    fn link(&self) -> Link {
        // Our attached descriptor is the TAP's carrier; where the interface is
        // visible, its administrative state counts too.
        let up = self.is_started() && (self.elsewhere || netdev::link_up(&self.ifname));
        Link { up, speed_mbps: if up { 10_000 } else { 0 }, full_duplex: up }
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), PmdError> {
        self.promisc.store(on, Ordering::Release);
        Ok(())
    }

    fn promiscuous(&self) -> bool {
        self.promisc.load(Ordering::Acquire)
    }

    fn set_mtu(&mut self, mtu: u16) -> Result<(), PmdError> {
        if !(68..=MAX_MTU).contains(&mtu) {
            return Err(PmdError::Config { field: "mtu", reason: format!("{mtu} is outside 68..={MAX_MTU}") });
        }
        netdev::set_mtu(&self.ifname, mtu)?;
        self.mtu.store(mtu, Ordering::Release);
        Ok(())
    }

    fn stats(&self) -> PortStats {
        self.state.stats()
    }

    fn reset_stats(&mut self) {
        self.state.reset_stats()
    }

    fn take_rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>, PmdError> {
        let conf = self.state.configured()?;
        let counters = self.state.claim_rx(q)?;
        Ok(Box::new(TapRx {
            fd: self.fds[q as usize].clone(),
            pool: conf.mempool.clone(),
            mac: self.mac,
            offloads: conf.rx_offloads,
            mtu: self.mtu.clone(),
            promisc: self.promisc.clone(),
            started: self.started.clone(),
            spare: Vec::new(),
            counters,
        }))
    }

    fn take_tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>, PmdError> {
        let counters = self.state.claim_tx(q)?;
        Ok(Box::new(TapTx {
            fd: self.fds[q as usize].clone(),
            mtu: self.mtu.clone(),
            started: self.started.clone(),
            counters,
        }))
    }
}

/// Receive queue of a `tap` port.
pub struct TapRx {
    fd: Arc<OwnedFd>,
    pool: Mempool,
    mac: MacAddr,
    offloads: RxOffloads,
    mtu: Arc<AtomicU16>,
    promisc: Arc<AtomicBool>,
    started: Arc<AtomicBool>,
    /// Buffers allocated for a read that found nothing, kept for the next call.
    spare: Vec<Mbuf>,
    counters: Arc<RxCounters>,
}

impl TapRx {
    fn rx_flags(&self, h: &VnetHdr) -> (RxFlags, u16) {
        h.rx_flags(self.offloads.intersects(RxOffloads::UDP_CKSUM | RxOffloads::TCP_CKSUM | RxOffloads::TCP_LRO))
    }
}

impl RxQueue for TapRx {
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        if max == 0 || !self.started.load(Ordering::Relaxed) {
            return 0;
        }
        let mtu = self.mtu.load(Ordering::Relaxed);
        let promisc = self.promisc.load(Ordering::Relaxed);
        let (mut got, mut bytes, mut errors) = (0usize, 0u64, 0u64);
        let mut hdr = [0u8; VNET_HDR_LEN];
        while got < max {
            let mut m = match self.spare.pop() {
                Some(m) => m,
                None => match self.pool.alloc() {
                    Ok(m) => m,
                    Err(_) => {
                        // The frame stays in the kernel's queue until buffers return.
                        self.counters.nombuf.add(1);
                        break;
                    }
                },
            };
            let room = m.tailroom();
            let Some(buf) = m.append(room) else {
                self.spare.push(m);
                break;
            };
            let iov = [
                libc::iovec { iov_base: hdr.as_mut_ptr().cast(), iov_len: VNET_HDR_LEN },
                libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() },
            ];
            // SAFETY: both iovecs point to writable memory of the stated lengths that
            // stays valid for the call (`hdr` on the stack, `buf` inside the mbuf we own).
            let r = cvt(unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), 2) });
            let n = match r {
                Ok(n) => n,
                Err(e) => {
                    let _ = m.set_len(0);
                    self.spare.push(m);
                    match e.raw_os_error() {
                        Some(libc::EAGAIN) | Some(libc::EINTR) => {}
                        // A frame larger than the buffer: the kernel consumed and dropped it.
                        Some(libc::EFAULT) | Some(libc::EINVAL) | Some(libc::EMSGSIZE) => {
                            errors += 1;
                            continue;
                        }
                        _ => errors += 1,
                    }
                    break;
                }
            };
            if n < VNET_HDR_LEN + 14 {
                let _ = m.set_len(0);
                self.spare.push(m);
                errors += 1;
                continue;
            }
            if m.set_len(n - VNET_HDR_LEN).is_none() || n - VNET_HDR_LEN > room {
                // The kernel reported more than the buffer held: a truncated frame.
                let _ = m.set_len(0);
                self.spare.push(m);
                errors += 1;
                continue;
            }
            let h = VnetHdr::from_bytes(&hdr);
            let lro = h.gso_type & 0x7f != VIRTIO_NET_HDR_GSO_NONE;
            if !lro && !frame_fits_mtu(m.data(), mtu) {
                let _ = m.set_len(0);
                self.spare.push(m);
                errors += 1;
                continue;
            }
            let d = m.data();
            if !promisc && d[0] & 1 == 0 && d[..6] != self.mac.0 {
                let _ = m.set_len(0);
                self.spare.push(m);
                continue;
            }
            let (flags, segsz) = self.rx_flags(&h);
            m.set_meta(MbufMeta { rx_flags: flags, tso_segsz: segsz, ..MbufMeta::default() });
            bytes += (n - VNET_HDR_LEN) as u64;
            out.push(m);
            got += 1;
        }
        if errors > 0 {
            self.counters.errors.add(errors);
        }
        if got > 0 {
            self.counters.packets.add(got as u64);
            self.counters.bytes.add(bytes);
        }
        got
    }
}

/// Transmit queue of a `tap` port.
pub struct TapTx {
    fd: Arc<OwnedFd>,
    mtu: Arc<AtomicU16>,
    started: Arc<AtomicBool>,
    counters: Arc<TxCounters>,
}

impl TxQueue for TapTx {
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        if pkts.is_empty() || !self.started.load(Ordering::Relaxed) {
            return 0;
        }
        let mtu = self.mtu.load(Ordering::Relaxed);
        let (mut sent, mut bytes, mut errors) = (0u64, 0u64, 0u64);
        let mut taken = 0;
        for m in pkts.iter_mut() {
            let tso = m.tx_flags().contains(TxFlags::TCP_SEG);
            let hdr = if !tso && !frame_fits_mtu(m.data(), mtu) { None } else { VnetHdr::for_tx(m) };
            let Some(hdr) = hdr else {
                errors += 1;
                taken += 1;
                continue;
            };
            let hb = hdr.to_bytes();
            let d = m.data();
            let iov = [
                libc::iovec { iov_base: hb.as_ptr() as *mut _, iov_len: VNET_HDR_LEN },
                libc::iovec { iov_base: d.as_ptr() as *mut _, iov_len: d.len() },
            ];
            // SAFETY: both iovecs point to readable memory of the stated lengths that
            // stays valid for the call; writev does not write through them.
            match cvt(unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) }) {
                Ok(_) => {
                    sent += 1;
                    bytes += d.len() as u64;
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) => break,
                // Down interface (EIO), malformed offload request (EINVAL): counted and dropped.
                Err(_) => errors += 1,
            }
            taken += 1;
        }
        pkts.drain(..taken);
        if sent > 0 {
            self.counters.packets.add(sent);
            self.counters.bytes.add(bytes);
        }
        if errors > 0 {
            self.counters.errors.add(errors);
        }
        taken
    }
}

// The port spec: this driver's options, read from `scheme:target?...`.

/// This driver in the port registry ([`crate::registry`]).
pub(crate) const DRIVER: DriverInfo = DriverInfo {
    scheme: "tap",
    usage: "tap:IFNAME[?queues=1] — Linux TAP interface (created if missing), offloads as virtio-net headers",
    options: &[
        (
            "queues",
            "queues (one /dev/net/tun descriptor each, IFF_MULTI_QUEUE), spread by the kernel's hash, or by \
             our RSS (an eBPF steering program) when configured with RSS, 1..=64 (default 1)",
        ),
        (
            "rss",
            "1 (default) offers software RSS (an eBPF steering program, needs CAP_BPF); 0 leaves the kernel's \
             spread",
        ),
        ("mac", "MAC address of the port (default derived from the name)"),
    ],
    shared_pool: false,
    open: open_tap,
};

fn open_tap(spec: &Spec, _: &OpenEnv) -> Result<Box<dyn Port>, PmdError> {
    let ifname = netdev::ifname_of(spec)?;
    let queues = spec.queues(MAX_QUEUES)?;
    let mac = spec.mac(&format!("tap:{ifname}"))?;
    let rss = spec.flag("rss", true)?;
    Ok(Box::new(TapPort::open(ifname, queues, mac)?.with_rss(rss)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_hdr_round_trips() {
        let h = VnetHdr { flags: 1, gso_type: 4, hdr_len: 74, gso_size: 1448, csum_start: 54, csum_offset: 16 };
        assert_eq!(VnetHdr::from_bytes(&h.to_bytes()), h);
    }
}
