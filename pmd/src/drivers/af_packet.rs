//! `af_packet:IFNAME?queues=N`: a kernel interface through `AF_PACKET` sockets with
//! memory-mapped rings.
//!
//! Per queue, two sockets:
//! * **receive**: `TPACKET_V3` ring of `block_count` blocks of `block_size` bytes
//!   (`frame_size` only sets the ring's nominal frame count: V3 packs frames of any
//!   length into blocks). The kernel hands a block over when it is full or
//!   `block_timeout_ms` after its first frame; `rx_burst` walks the frames of the
//!   blocks it owns, copies each into an mbuf, and returns a block to the kernel once
//!   every frame in it has been taken (a burst may stop in the middle of a block and
//!   the next one resumes there). With `N > 1` the receive sockets form a
//!   `PACKET_FANOUT_HASH` group (a kernel-chosen unique id), so the kernel spreads
//!   flows over the queues by its flow hash. The port offers software RSS
//!   ([`crate::rss`]): configured with an `RssConfig`, the group is a
//!   `PACKET_FANOUT_CBPF` one instead, whose classic BPF program computes our
//!   Toeplitz hash and redirection table (module `fanout_bpf`), so every
//!   frame reaches the queue our RSS names, as on a NIC (the stacks then see no
//!   misdirected frame; without RSS they hand foreign frames to their owner,
//!   `stack::cores`). Frames we sent ourselves are ignored
//!   (`PACKET_IGNORE_OUTGOING`, and `PACKET_OUTGOING` is filtered for older kernels).
//!   Kernel ring drops (`PACKET_STATISTICS`) are reported as `imissed`.
//! * **transmit**: `TPACKET_V2` ring with `PACKET_QDISC_BYPASS` (frames go straight
//!   to the driver's `ndo_start_xmit`, no qdisc; the kernel's own `tcpdump` on the
//!   same interface therefore does not see them, the peer does). The ring has
//!   `tx_desc` frames (rounded up to whole blocks) of `frame_size` bytes; a burst
//!   fills free frames and kicks the kernel once with `sendto(MSG_DONTWAIT)`. We use
//!   V2 for transmit: V3's transmit ring (Linux 4.11+) has exactly V2's fixed-frame
//!   layout, so V3 would buy nothing but a newer-kernel requirement. The transmit
//!   socket is bound with protocol 0, so it never receives.
//!
//! Spec options and their defaults: `block_size=65536` (a multiple of the page
//! size), `frame_size=2048` (a multiple of 16; also the largest frame we can send,
//! less the 32-byte frame header, so the largest MTU is `frame_size - 50`),
//! `block_count=64` (4 MiB of receive ring per queue), `block_timeout_ms=1`,
//! `queues=1`.
//!
//! The MAC is the interface's. Promiscuous mode is `PACKET_MR_PROMISC` membership
//! (reference-counted by the kernel, released when the port is dropped); without
//! it, frames the kernel marks `PACKET_OTHERHOST` are dropped in software too (a
//! veth, for one, delivers them regardless). Frames are copied between the ring and
//! our mempool in both directions (zero copy would need the ring itself as an
//! external mempool: future work, as is AF_XDP).

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::netdev::{self, io_err};
use super::PortState;
use crate::port::{frame_fits_mtu, Link, MacAddr, PortConfig, PortInfo, PortStats, RxCounters, TxCounters};
use crate::spec::{DriverInfo, OpenEnv, Spec};
use crate::{Mbuf, MbufMeta, Mempool, PmdError, Port, RxFlags, RxOffloads, RxQueue, TxOffloads, TxQueue};

/// Most queues an `af_packet` port supports.
pub const MAX_QUEUES: u16 = 16;
/// Largest MTU the port accepts (also bounded by `frame_size`).
pub const MAX_MTU: u16 = 9000;
/// Offset of the frame data in a V2 transmit frame: `TPACKET_ALIGN(sizeof(tpacket2_hdr))`.
const TX_DATA_OFF: usize = 32;

/// Ring geometry (spec options).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingGeometry {
    /// Bytes per block (multiple of the page size).
    pub block_size: u32,
    /// Nominal frame size (multiple of 16); the transmit frame size.
    pub frame_size: u32,
    /// Receive blocks per queue.
    pub block_count: u32,
    /// Milliseconds after which a partly filled receive block is handed over.
    pub block_timeout_ms: u32,
}

impl Default for RingGeometry {
    fn default() -> Self {
        RingGeometry { block_size: 65536, frame_size: 2048, block_count: 64, block_timeout_ms: 1 }
    }
}

impl RingGeometry {
    /// Checks the kernel's constraints; the error names the option.
    pub fn validate(&self) -> Result<(), PmdError> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u32;
        let bad = |field, reason| Err(PmdError::Config { field, reason });
        if self.block_size == 0 || !self.block_size.is_multiple_of(page) {
            return bad(
                "block_size",
                format!("{} is not a positive multiple of the page size {page}", self.block_size),
            );
        }
        if self.frame_size < 128 || !self.frame_size.is_multiple_of(16) || self.frame_size > self.block_size {
            return bad(
                "frame_size",
                format!(
                    "{} must be a multiple of 16 between 128 and block_size ({})",
                    self.frame_size, self.block_size
                ),
            );
        }
        if self.block_count == 0 || self.block_count as u64 * self.block_size as u64 > 1 << 30 {
            return bad("block_count", format!("{} blocks: need 1.. and at most 1 GiB per ring", self.block_count));
        }
        Ok(())
    }

    fn max_mtu(&self) -> u16 {
        (self.frame_size as usize - TX_DATA_OFF - 18).min(MAX_MTU as usize) as u16
    }
}

struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; each ring is used by one queue handle
// at a time (the handle owns it), and the kernel synchronises through the status words.
unsafe impl Send for Mmap {}
// SAFETY: as above; shared references never touch the mapping.
unsafe impl Sync for Mmap {}

impl Mmap {
    fn new(fd: &OwnedFd, len: usize) -> io::Result<Mmap> {
        // SAFETY: mapping a packet socket's ring: length as configured, offset 0; the
        // result is checked before use and unmapped in Drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap { ptr: NonNull::new(p.cast()).expect("mmap returned non-null"), len })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; nobody uses them after this.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2); protocol 0 so it receives nothing until bound with a protocol.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor, owned from here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: &OwnedFd, opt: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live `T` of the size passed, as setsockopt expects.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            opt,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn bind(fd: &OwnedFd, ifindex: i32, protocol: u16) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: `sll` is a valid sockaddr_ll and its size is passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One receive ring and where we are in it.
struct RxRing {
    fd: Arc<OwnedFd>,
    map: Mmap,
    block_size: usize,
    block_count: usize,
    /// Block we are reading or waiting for.
    block: usize,
    /// (frames left, offset of the next frame) inside the current block.
    cursor: Option<(u32, usize)>,
}

/// One transmit ring.
struct TxRing {
    fd: OwnedFd,
    map: Mmap,
    frame_size: usize,
    frames: usize,
    /// Next frame to fill.
    next: usize,
}

fn rx_ring(ifindex: i32, g: &RingGeometry) -> io::Result<RxRing> {
    let fd = packet_socket()?;
    setsockopt(&fd, libc::PACKET_VERSION, &(libc::tpacket_versions::TPACKET_V3 as libc::c_int))?;
    let _ = setsockopt(&fd, libc::PACKET_IGNORE_OUTGOING, &(1 as libc::c_int));
    let req = libc::tpacket_req3 {
        tp_block_size: g.block_size,
        tp_block_nr: g.block_count,
        tp_frame_size: g.frame_size,
        tp_frame_nr: g.block_size / g.frame_size * g.block_count,
        tp_retire_blk_tov: g.block_timeout_ms,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    setsockopt(&fd, libc::PACKET_RX_RING, &req)?;
    let map = Mmap::new(&fd, g.block_size as usize * g.block_count as usize)?;
    bind(&fd, ifindex, libc::ETH_P_ALL as u16)?;
    Ok(RxRing {
        fd: Arc::new(fd),
        map,
        block_size: g.block_size as usize,
        block_count: g.block_count as usize,
        block: 0,
        cursor: None,
    })
}

fn tx_ring(ifindex: i32, g: &RingGeometry, desc: u16) -> io::Result<TxRing> {
    let fd = packet_socket()?;
    setsockopt(&fd, libc::PACKET_VERSION, &(libc::tpacket_versions::TPACKET_V2 as libc::c_int))?;
    setsockopt(&fd, libc::PACKET_QDISC_BYPASS, &(1 as libc::c_int))?;
    let per_block = g.block_size / g.frame_size;
    let blocks = (desc as u32).div_ceil(per_block).max(1);
    let req = libc::tpacket_req {
        tp_block_size: g.block_size,
        tp_block_nr: blocks,
        tp_frame_size: g.frame_size,
        tp_frame_nr: per_block * blocks,
    };
    setsockopt(&fd, libc::PACKET_TX_RING, &req)?;
    let map = Mmap::new(&fd, g.block_size as usize * blocks as usize)?;
    bind(&fd, ifindex, 0)?;
    Ok(TxRing { fd, map, frame_size: g.frame_size as usize, frames: (per_block * blocks) as usize, next: 0 })
}

/// Joins (or, with no `id`, creates) fanout group `id` of type `mode`;
/// sockets get indices in the order they join, so queue *i* is index *i*.
fn join_fanout(fd: &OwnedFd, id: Option<u16>, mode: u32) -> io::Result<u16> {
    let (id, flags) = match id {
        Some(id) => (id, 0),
        None => (0, libc::PACKET_FANOUT_FLAG_UNIQUEID),
    };
    let arg: u32 = (id as u32) | ((mode | flags) << 16);
    setsockopt(fd, libc::PACKET_FANOUT, &arg)?;
    let mut got: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: `got`/`len` are valid for writes of a u32 and its length.
    let rc = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_FANOUT, (&mut got as *mut u32).cast(), &mut len)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(got as u16)
}

/// Gives a `PACKET_FANOUT_CBPF` group its program.
fn set_fanout_program(fd: &OwnedFd, prog: &[super::fanout_bpf::Insn]) -> io::Result<()> {
    let mut filters: Vec<libc::sock_filter> =
        prog.iter().map(|i| libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k }).collect();
    let fprog = libc::sock_fprog { len: filters.len() as u16, filter: filters.as_mut_ptr() };
    // The kernel copies the program during the call; `filters` outlives it.
    setsockopt(fd, super::fanout_bpf::PACKET_FANOUT_DATA, &fprog)
}

/// Kernel drops of one socket since the last call (reading resets them).
fn take_drops(fd: &OwnedFd) -> u64 {
    let mut st = libc::tpacket_stats_v3 { tp_packets: 0, tp_drops: 0, tp_freeze_q_cnt: 0 };
    let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
    // SAFETY: `st`/`len` are valid for writes of the stats struct and its length.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats_v3).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        0
    } else {
        st.tp_drops as u64
    }
}

/// An `af_packet` port.
pub struct AfPacketPort {
    ifname: String,
    ifindex: i32,
    mac: MacAddr,
    queues: u16,
    geometry: RingGeometry,
    /// Holds the promiscuous membership.
    ctl: OwnedFd,
    promisc: Arc<AtomicBool>,
    mtu: Arc<AtomicU16>,
    started: Arc<AtomicBool>,
    state: PortState,
    /// Receive sockets of the current configuration, for kernel drop counts.
    rx_fds: Vec<Arc<OwnedFd>>,
    /// Rings not currently owned by a queue handle (handles give theirs back, with
    /// their position, when dropped, so a queue can be taken again after a restart).
    rx_rings: Vec<Arc<Mutex<Option<RxRing>>>>,
    tx_rings: Vec<Arc<Mutex<Option<TxRing>>>>,
    /// (kernel drops so far, baseline at the last reset).
    drops: Mutex<(u64, u64)>,
    /// Offers software RSS (a classic BPF fanout program); `rss=0` leaves
    /// `PACKET_FANOUT_HASH`.
    rss: bool,
}

impl AfPacketPort {
    /// Offers software RSS or not (the spec's `rss`, default 1; see the
    /// module documentation).
    pub fn with_rss(mut self, on: bool) -> Self {
        self.rss = on;
        self
    }

    /// Opens interface `ifname` (which must exist) with up to `queues` queues.
    pub fn open(ifname: &str, queues: u16, geometry: RingGeometry) -> Result<AfPacketPort, PmdError> {
        if queues == 0 || queues > MAX_QUEUES {
            return Err(PmdError::Config { field: "queues", reason: format!("{queues} is outside 1..={MAX_QUEUES}") });
        }
        geometry.validate()?;
        let ifindex = netdev::ifindex(ifname)?;
        let mac = netdev::mac(ifname)?;
        let mtu = netdev::mtu(ifname)?;
        let ctl = packet_socket().map_err(io_err(format!("af_packet '{ifname}': socket (need CAP_NET_RAW)")))?;
        Ok(AfPacketPort {
            ifname: ifname.to_string(),
            ifindex,
            mac,
            queues,
            geometry,
            ctl,
            promisc: Arc::new(AtomicBool::new(false)),
            mtu: Arc::new(AtomicU16::new(mtu)),
            started: Arc::new(AtomicBool::new(false)),
            state: PortState::new(ifname),
            rx_fds: Vec::new(),
            rx_rings: Vec::new(),
            tx_rings: Vec::new(),
            drops: Mutex::new((0, 0)),
            rss: true,
        })
    }

    fn collect_drops(&self) -> u64 {
        let mut d = self.drops.lock().unwrap_or_else(|e| e.into_inner());
        for fd in &self.rx_fds {
            d.0 += take_drops(fd);
        }
        d.0 - d.1
    }
}

impl Port for AfPacketPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "af_packet",
            name: self.ifname.clone(),
            mac: self.mac,
            mtu: self.mtu.load(Ordering::Relaxed),
            min_mtu: 68,
            max_mtu: self.geometry.max_mtu(),
            max_rx_queues: self.queues,
            max_tx_queues: self.queues,
            max_desc: 32768,
            rx_offloads: RxOffloads::empty(),
            tx_offloads: TxOffloads::empty(),
            rss: self.rss.then(crate::rss::software_capabilities),
        }
    }

    fn configure(&mut self, conf: &PortConfig) -> Result<(), PmdError> {
        self.state.ensure_configurable(self.is_started())?;
        conf.validate(&self.info())?;
        self.rx_rings.clear();
        self.tx_rings.clear();
        self.rx_fds.clear();
        let name = &self.ifname;
        let mut fanout = None;
        // With RSS, our hash as a classic BPF program; else the kernel's.
        let steering = match &conf.rss {
            Some(rss) if conf.rx_queues > 1 => Some(super::fanout_bpf::program(&crate::rss::Rss::new(rss)?)),
            _ => None,
        };
        let mode = if steering.is_some() { super::fanout_bpf::PACKET_FANOUT_CBPF } else { libc::PACKET_FANOUT_HASH };
        for q in 0..conf.rx_queues {
            let r = rx_ring(self.ifindex, &self.geometry)
                .map_err(io_err(format!("af_packet '{name}': receive ring of queue {q}")))?;
            if conf.rx_queues > 1 {
                fanout = Some(
                    join_fanout(&r.fd, fanout, mode)
                        .map_err(io_err(format!("af_packet '{name}': PACKET_FANOUT queue {q}")))?,
                );
            }
            self.rx_fds.push(r.fd.clone());
            self.rx_rings.push(Arc::new(Mutex::new(Some(r))));
        }
        if let (Some(prog), Some(first)) = (&steering, self.rx_fds.first()) {
            set_fanout_program(first, prog)
                .map_err(io_err(format!("af_packet '{name}': PACKET_FANOUT_DATA (RSS program)")))?;
        }
        for q in 0..conf.tx_queues {
            let t = tx_ring(self.ifindex, &self.geometry, conf.tx_desc)
                .map_err(io_err(format!("af_packet '{name}': transmit ring of queue {q}")))?;
            self.tx_rings.push(Arc::new(Mutex::new(Some(t))));
        }
        *self.drops.lock().unwrap_or_else(|e| e.into_inner()) = (0, 0);
        self.state.set_configured(conf);
        Ok(())
    }

    fn config(&self) -> Option<&PortConfig> {
        self.state.config()
    }

    fn start(&mut self) -> Result<(), PmdError> {
        self.state.configured()?;
        netdev::set_up(&self.ifname, true)?;
        self.started.store(true, Ordering::Release);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PmdError> {
        self.started.store(false, Ordering::Release);
        Ok(())
    }

    fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    fn link(&self) -> Link {
        let up = self.is_started() && netdev::link_up(&self.ifname);
        Link { up, speed_mbps: if up { 10_000 } else { 0 }, full_duplex: up }
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), PmdError> {
        if on == self.promiscuous() {
            return Ok(());
        }
        let mreq = libc::packet_mreq {
            mr_ifindex: self.ifindex,
            mr_type: libc::PACKET_MR_PROMISC as u16,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        let op = if on { libc::PACKET_ADD_MEMBERSHIP } else { libc::PACKET_DROP_MEMBERSHIP };
        setsockopt(&self.ctl, op, &mreq).map_err(io_err(format!("af_packet '{}': promiscuous {on}", self.ifname)))?;
        self.promisc.store(on, Ordering::Release);
        Ok(())
    }

    fn promiscuous(&self) -> bool {
        self.promisc.load(Ordering::Acquire)
    }

    fn set_mtu(&mut self, mtu: u16) -> Result<(), PmdError> {
        let max = self.geometry.max_mtu();
        if mtu < 68 || mtu > max {
            return Err(PmdError::Config {
                field: "mtu",
                reason: format!("{mtu} is outside 68..={max} (raise frame_size for larger frames)"),
            });
        }
        netdev::set_mtu(&self.ifname, mtu)?;
        self.mtu.store(mtu, Ordering::Release);
        Ok(())
    }

    fn stats(&self) -> PortStats {
        let mut s = self.state.stats();
        s.imissed += self.collect_drops();
        s
    }

    fn reset_stats(&mut self) {
        self.collect_drops();
        let mut d = self.drops.lock().unwrap_or_else(|e| e.into_inner());
        d.1 = d.0;
        drop(d);
        self.state.reset_stats()
    }

    fn take_rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>, PmdError> {
        let conf = self.state.configured()?;
        let counters = self.state.claim_rx(q)?;
        let home = self.rx_rings[q as usize].clone();
        let ring = home.lock().unwrap_or_else(|e| e.into_inner()).take().ok_or_else(|| PmdError::State {
            port: self.ifname.clone(),
            reason: format!("rx queue {q} is already owned by another handle"),
        })?;
        Ok(Box::new(AfPacketRx {
            ring: ManuallyDrop::new(ring),
            home,
            pool: conf.mempool.clone(),
            mtu: self.mtu.clone(),
            promisc: self.promisc.clone(),
            started: self.started.clone(),
            spare: Vec::new(),
            counters,
        }))
    }

    fn take_tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>, PmdError> {
        let counters = self.state.claim_tx(q)?;
        let home = self.tx_rings[q as usize].clone();
        let ring = home.lock().unwrap_or_else(|e| e.into_inner()).take().ok_or_else(|| PmdError::State {
            port: self.ifname.clone(),
            reason: format!("tx queue {q} is already owned by another handle"),
        })?;
        Ok(Box::new(AfPacketTx {
            ring: ManuallyDrop::new(ring),
            home,
            mtu: self.mtu.clone(),
            started: self.started.clone(),
            counters,
            kick_pending: false,
        }))
    }
}

/// Receive queue of an `af_packet` port.
pub struct AfPacketRx {
    ring: ManuallyDrop<RxRing>,
    home: Arc<Mutex<Option<RxRing>>>,
    pool: Mempool,
    mtu: Arc<AtomicU16>,
    promisc: Arc<AtomicBool>,
    started: Arc<AtomicBool>,
    spare: Vec<Mbuf>,
    counters: Arc<RxCounters>,
}

const HDR3_LEN: usize = std::mem::size_of::<libc::tpacket3_hdr>().next_multiple_of(16);

impl AfPacketRx {
    fn block_ptr(&self) -> *mut u8 {
        // SAFETY: `block < block_count`, so the offset stays inside the mapping.
        unsafe { self.ring.map.ptr.as_ptr().add(self.ring.block * self.ring.block_size) }
    }

    fn block_status(&self) -> &AtomicU32 {
        let desc = self.block_ptr().cast::<libc::tpacket_block_desc>();
        // SAFETY: the block descriptor is at the start of the block; `block_status` is
        // a naturally aligned u32 the kernel also accesses atomically (with barriers),
        // and the mapping lives as long as `self`.
        unsafe { AtomicU32::from_ptr(std::ptr::addr_of_mut!((*desc).hdr.bh1.block_status)) }
    }
}

impl RxQueue for AfPacketRx {
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        if max == 0 || !self.started.load(Ordering::Relaxed) {
            return 0;
        }
        let mtu = self.mtu.load(Ordering::Relaxed);
        let promisc = self.promisc.load(Ordering::Relaxed);
        let (mut got, mut bytes, mut errors) = (0usize, 0u64, 0u64);
        'blocks: while got < max {
            if self.block_status().load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                break;
            }
            let base = self.block_ptr();
            let (mut left, mut off) = match self.ring.cursor {
                Some(c) => c,
                None => {
                    let desc = base.cast::<libc::tpacket_block_desc>();
                    // SAFETY: the kernel handed this block to us (TP_STATUS_USER, acquired
                    // above), so its descriptor is initialised and not written concurrently.
                    let bh = unsafe { (*desc).hdr.bh1 };
                    (bh.num_pkts, bh.offset_to_first_pkt as usize)
                }
            };
            while left > 0 {
                if got >= max {
                    self.ring.cursor = Some((left, off));
                    break 'blocks;
                }
                if off + HDR3_LEN + std::mem::size_of::<libc::sockaddr_ll>() > self.ring.block_size {
                    // Corrupt offset: give the block back rather than read past it
                    // (the header and the sockaddr_ll after it must both fit).
                    errors += left as u64;
                    break;
                }
                // SAFETY: `off` is inside the block (checked above) and the kernel laid a
                // tpacket3_hdr there; the block is ours until we release it.
                let ph = unsafe { &*(base.add(off).cast::<libc::tpacket3_hdr>()) };
                // SAFETY: the sockaddr_ll follows the aligned header, inside the block
                // (checked above).
                let pkttype = unsafe { (*base.add(off + HDR3_LEN).cast::<libc::sockaddr_ll>()).sll_pkttype };
                let (mac, snap, len, status, next) =
                    (ph.tp_mac as usize, ph.tp_snaplen as usize, ph.tp_len as usize, ph.tp_status, ph.tp_next_offset);
                let mut consume = true;
                if pkttype == libc::PACKET_OUTGOING || (!promisc && pkttype == libc::PACKET_OTHERHOST) {
                    // Ours, or not for us: filtered as a NIC would, not counted.
                } else if snap < len || off + mac + snap > self.ring.block_size || snap < 14 {
                    errors += 1;
                } else {
                    // SAFETY: `off + mac + snap` is inside the block (checked).
                    let frame = unsafe { std::slice::from_raw_parts(base.add(off + mac), snap) };
                    if !frame_fits_mtu(frame, mtu) {
                        errors += 1;
                    } else {
                        let m = match self.spare.pop() {
                            Some(m) => Some(m),
                            None => self.pool.alloc().ok(),
                        };
                        match m {
                            None => {
                                // Leave the frame in the ring; retry on the next call.
                                self.counters.nombuf.add(1);
                                consume = false;
                            }
                            Some(mut m) => {
                                if m.extend_from_slice(frame).is_none() {
                                    self.spare.push(m);
                                    errors += 1;
                                } else {
                                    let mut meta = MbufMeta::default();
                                    if status & libc::TP_STATUS_CSUMNOTREADY != 0 {
                                        meta.rx_flags |= RxFlags::L4_CKSUM_PARTIAL;
                                    } else if status & libc::TP_STATUS_CSUM_VALID != 0 {
                                        meta.rx_flags |= RxFlags::L4_CKSUM_GOOD;
                                    }
                                    if status & libc::TP_STATUS_VLAN_VALID != 0 {
                                        meta.rx_flags |= RxFlags::VLAN_STRIPPED;
                                        meta.vlan_tci = ph.hv1.tp_vlan_tci as u16;
                                    }
                                    m.set_meta(meta);
                                    bytes += snap as u64;
                                    out.push(m);
                                    got += 1;
                                }
                            }
                        }
                    }
                }
                if !consume {
                    self.ring.cursor = Some((left, off));
                    break 'blocks;
                }
                left -= 1;
                off += next as usize;
            }
            // Every frame taken: the block goes back to the kernel.
            self.ring.cursor = None;
            self.block_status().store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.ring.block = (self.ring.block + 1) % self.ring.block_count;
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

/// Transmit queue of an `af_packet` port.
pub struct AfPacketTx {
    ring: ManuallyDrop<TxRing>,
    home: Arc<Mutex<Option<TxRing>>>,
    mtu: Arc<AtomicU16>,
    started: Arc<AtomicBool>,
    counters: Arc<TxCounters>,
    /// Frames may be waiting in the ring for the kernel: the ring was full, or
    /// the last kick failed. Kick again on the next call, even an empty one;
    /// otherwise a full ring queues nothing new, never kicks, and never drains.
    kick_pending: bool,
}

impl AfPacketTx {
    fn kick(&mut self) {
        // SAFETY: sendto with no buffer and no address just kicks the TX ring.
        let r = unsafe {
            libc::sendto(self.ring.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0)
        };
        self.kick_pending = r < 0;
    }
}

impl Drop for AfPacketRx {
    fn drop(&mut self) {
        // SAFETY: `ring` is taken exactly once, here, and never used afterwards.
        let ring = unsafe { ManuallyDrop::take(&mut self.ring) };
        *self.home.lock().unwrap_or_else(|e| e.into_inner()) = Some(ring);
    }
}

impl Drop for AfPacketTx {
    fn drop(&mut self) {
        // SAFETY: `ring` is taken exactly once, here, and never used afterwards.
        let ring = unsafe { ManuallyDrop::take(&mut self.ring) };
        *self.home.lock().unwrap_or_else(|e| e.into_inner()) = Some(ring);
    }
}

impl AfPacketTx {
    fn frame(&self, i: usize) -> *mut u8 {
        // SAFETY: `i < frames`, so the frame lies inside the mapping.
        unsafe { self.ring.map.ptr.as_ptr().add(i * self.ring.frame_size) }
    }

    fn status(&self, i: usize) -> &AtomicU32 {
        // SAFETY: tp_status is the first, aligned u32 of the frame's tpacket2_hdr; the
        // kernel reads and writes it with barriers, and the mapping outlives `self`.
        unsafe { AtomicU32::from_ptr(self.frame(i).cast::<u32>()) }
    }
}

impl TxQueue for AfPacketTx {
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        if !self.started.load(Ordering::Relaxed) {
            return 0;
        }
        if pkts.is_empty() {
            if self.kick_pending {
                self.kick();
            }
            return 0;
        }
        let mtu = self.mtu.load(Ordering::Relaxed);
        let room = self.ring.frame_size - TX_DATA_OFF;
        let mut ring_full = false;
        let (mut sent, mut bytes, mut errors) = (0u64, 0u64, 0u64);
        let mut taken = 0;
        for m in pkts.iter() {
            let d = m.data();
            if !frame_fits_mtu(d, mtu) || d.len() > room || d.len() < 14 {
                errors += 1;
                taken += 1;
                continue;
            }
            let st = self.status(self.ring.next).load(Ordering::Acquire);
            if st & libc::TP_STATUS_WRONG_FORMAT != 0 {
                // The kernel refused what we put here earlier: count it and reuse the frame.
                errors += 1;
            } else if st != libc::TP_STATUS_AVAILABLE {
                ring_full = true;
                break;
            }
            let f = self.frame(self.ring.next);
            // SAFETY: the frame is ours (status AVAILABLE/WRONG_FORMAT), `d.len() <= room`
            // keeps the copy inside it, and the header fields are plain u32s.
            unsafe {
                std::ptr::copy_nonoverlapping(d.as_ptr(), f.add(TX_DATA_OFF), d.len());
                let h = f.cast::<libc::tpacket2_hdr>();
                (*h).tp_len = d.len() as u32;
                (*h).tp_snaplen = d.len() as u32;
            }
            self.status(self.ring.next).store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.ring.next = (self.ring.next + 1) % self.ring.frames;
            sent += 1;
            bytes += d.len() as u64;
            taken += 1;
        }
        if sent > 0 || ring_full || self.kick_pending {
            self.kick();
            self.kick_pending |= ring_full;
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
    scheme: "af_packet",
    usage: "af_packet:IFNAME[?queues=1] — existing kernel interface via TPACKET_V3 rx / V2 tx mmap rings",
    options: &[
        (
            "queues",
            "queues, spread by PACKET_FANOUT_HASH, or by our RSS (a classic BPF fanout program) when \
             configured with RSS, 1..=16 (default 1)",
        ),
        ("rss", "1 (default) offers software RSS (a classic BPF fanout program); 0 leaves PACKET_FANOUT_HASH"),
        ("block_size", "receive ring block size in bytes, multiple of the page size (default 65536)"),
        ("frame_size", "frame size in bytes, multiple of 16; bounds tx frames and the MTU (default 2048)"),
        ("block_count", "receive ring blocks per queue (default 64)"),
        ("block_timeout_ms", "hand over a partly filled receive block after this long (default 1)"),
    ],
    shared_pool: false,
    open: open_af_packet,
};

fn open_af_packet(spec: &Spec, _: &OpenEnv) -> Result<Box<dyn Port>, PmdError> {
    let ifname = netdev::ifname_of(spec)?;
    let queues = spec.queues(MAX_QUEUES)?;
    let d = RingGeometry::default();
    let g = RingGeometry {
        block_size: spec.parse_opt("block_size", "bytes, a multiple of the page size")?.unwrap_or(d.block_size),
        frame_size: spec.parse_opt("frame_size", "bytes, a multiple of 16")?.unwrap_or(d.frame_size),
        block_count: spec.parse_opt("block_count", "a block count above 0")?.unwrap_or(d.block_count),
        block_timeout_ms: spec.parse_opt("block_timeout_ms", "milliseconds")?.unwrap_or(d.block_timeout_ms),
    };
    if let Err(PmdError::Config { field, reason }) = g.validate() {
        let v = spec.get(field).unwrap_or("(default)").to_string();
        return Err(spec.bad_value(field, &v, &reason));
    }
    let rss = spec.flag("rss", true)?;
    Ok(Box::new(AfPacketPort::open(ifname, queues, g)?.with_rss(rss)))
}
