//! `virtio-user:/path/to/vhost.sock?queues=N&server=0|1&qsize=Q`: a virtio-net
//! device driven from user space over vhost-user, without DPDK.
//!
//! Where no NIC is ours (a VM on OVS-DPDK or VPP, a container wired to a
//! vhost-user switch) the switch offers a vhost-user socket; this driver is the
//! *front end* (the role QEMU or DPDK's `net_virtio_user` play): it owns the
//! memory and the virtqueues, and the *back end* (the switch, or
//! `dpdk-testpmd --vdev net_vhost0,iface=SOCK` in our tests) moves frames in and
//! out of them. The kernel is never on the data path.
//!
//! # Control plane
//! The vhost-user messages are rust-vmm's `vhost` crate (`Frontend`, feature
//! `vhost-user-frontend`), a well-kept implementation of the protocol; we only
//! decide what to send. The socket is ours in both modes: with `server=0` we
//! connect to a listening back end; with `server=1` we listen on the path and
//! wait (`wait_ms`) for the back end to connect (`net_vhost0,...,client=1`). The
//! stream is built by us and handed to `Frontend::from_stream`, so a missing
//! socket, a refused connection or a silent back end (5 s receive timeout) become
//! errors that say which. `REPLY_ACK` is negotiated when offered, so every
//! setting message is acknowledged before the link is reported up.
//!
//! # Feature negotiation
//! At open we read the back end's features (`GET_FEATURES`; with
//! `PROTOCOL_FEATURES`, `MQ` and `REPLY_ACK`; with `MQ`, `GET_QUEUE_NUM`). The
//! port's capabilities are what the back end offers and we implement:
//! `VIRTIO_NET_F_CSUM` becomes transmit UDP/TCP checksum offload (IPv4 header
//! checksums are done in software: virtio has none), `HOST_TSO4|6` transmit TSO,
//! `VIRTIO_NET_F_GUEST_CSUM` receive checksum offload. At `configure` we ack only
//! what the configuration asks for (as DPDK's virtio PMD does): `GUEST_CSUM` only
//! if receive checksum offload is enabled (otherwise the back end must finish
//! every checksum), `CSUM`/`HOST_TSO*` only for the enabled transmit offloads,
//! `MQ` only for more than one queue pair (checked against `GET_QUEUE_NUM`; DPDK
//! 22.11's vhost answers its compile-time maximum, so a back end with fewer
//! queues than asked cannot be detected there). `VIRTIO_F_VERSION_1` is required (we
//! drive only modern, little-endian rings with the 12-byte header);
//! `VIRTIO_NET_F_MRG_RXBUF` is acked by default (`mrg_rxbuf=0` turns it off) and
//! `VIRTIO_NET_F_STATUS` whenever offered. A back end lacking a required or
//! requested feature is an error naming the feature and the option.
//!
//! There is no control queue (`CTRL_VQ`): the back end (a switch port) delivers
//! whatever it forwards to us, so promiscuous mode and the MAC filter are done in
//! software as on the TAP port; the MAC is the `mac=` option (default derived
//! from the path), as with DPDK's virtio-user. Link state is ours to know (no
//! config space over vhost-user for net): it is up while the port is started and
//! the back end connected and set up.
//!
//! # Memory: memfd regions, GPA = VA
//! The back end must read and write our buffers, so it maps them: the receive
//! pool must be a shared pool ([`Mempool::new_shared`], a `memfd`; `testpmd` and
//! `conformance` make one for `virtio-user:` ports) and the rings live in a
//! second memfd of our own, made once for the port's life (back ends compare
//! memory tables by address: rings unmapped and mapped again at the same address
//! would look unchanged, and DPDK's vhost would keep polling the old pages).
//! Both are sent with `VHOST_USER_SET_MEM_TABLE`. No hugepages are needed on our
//! side. Like DPDK's virtio-user we use our virtual
//! addresses as guest-physical addresses (a 1:1 map: region `guest_phys_addr` =
//! `userspace_addr` = our mapping address), so a descriptor's address is simply
//! the buffer's pointer. A frame to send that does not lie in the registered pool
//! (another pool, or too little headroom for the header) is copied into one of
//! ours and counted in the `tx_copies` xstat; frames of the port's pool are never
//! copied: the descriptor points into the mbuf.
//!
//! # Split virtqueues
//! Per queue pair, vring `2q` receives and `2q+1` transmits. Each ring of
//! `qsize` entries (a power of two) is laid out in its own page-aligned chunk:
//! descriptor table (16 bytes per entry), available ring (written by us), and the
//! used ring (written by the back end) on its own page so our stores and the back
//! end's never share a cache line. Every buffer is one descriptor (no chains, no
//! indirect tables): the 12-byte `virtio_net_hdr_mrg_rxbuf` sits in the mbuf's
//! headroom right in front of the frame (`VERSION_1` implies any layout), so one
//! descriptor covers header and frame. On receive we post `[header | data room]`
//! of a fresh mbuf and hand the very same mbuf up, its window moved past the
//! header; on transmit we write the header into the headroom and post the mbuf.
//! A per-ring table maps descriptor ids to the mbufs in flight; free ids are a
//! stack. Frames the back end spread over several buffers (`num_buffers > 1`,
//! only possible for frames larger than our data room) are counted as errors and
//! dropped; the header is read only when a buffer was used to its full length,
//! because the spec requires every buffer but the last to be filled completely.
//! In the common case (no offloads, promiscuous, within the MTU) a received
//! frame is handed up without touching its buffer header or its bytes.
//! Sent buffers are reclaimed from the used ring only when fewer than half the
//! descriptors (or fewer than the burst) are free, and an empty `tx_burst`
//! does not look at the ring at all: the used ring's cache line belongs to the
//! back end's core, and every needless read pulls it over.
//!
//! Not implemented: `VIRTIO_F_IN_ORDER` (DPDK's virtio-user negotiates it by
//! default and its in-order paths are faster on a latency-bound loop, see
//! `bench/results/virtio.md`), packed rings, indirect descriptors, `EVENT_IDX`,
//! the control queue, and receiving frames that span buffers.
//!
//! # Barriers (virtio 1.x, 2.7.13 and 2.7.7)
//! * publishing: descriptor and available-ring entries are written first, then
//!   `avail.idx` with a release store, so the back end never sees an index ahead
//!   of its entries;
//! * consuming: `used.idx` is loaded with acquire before the used entries and the
//!   frame bytes they describe are read;
//! * notifying: between publishing `avail.idx` and reading `used.flags` a full
//!   fence (`SeqCst`), so we cannot miss that the back end asked to be kicked.
//!
//! # Notification suppression
//! We poll, so we set `VRING_AVAIL_F_NO_INTERRUPT` on every ring (the back end
//! need not signal the call eventfd) and kick (write the kick eventfd) only when
//! the used ring lacks `VRING_USED_F_NO_NOTIFY`. A polling back end (DPDK's vhost
//! PMD) sets that flag, so the data path makes no system call. `EVENT_IDX` is not
//! negotiated: flags are enough for two pollers.
//!
//! # Reconnection
//! A monitor thread (one per port, checking every 20 ms) watches the socket. When
//! the back end goes away the link goes down at once: transmit queues refuse
//! frames (they stay with the caller), receive queues still hand up whatever the
//! back end completed before it left. The monitor then connects again (`server=0`)
//! or accepts the next connection (`server=1`), repeats the handshake, checks the
//! new back end still offers every feature acked before, and sets the rings up
//! again with `SET_VRING_BASE` = the used index, so the back end continues where
//! the old one stopped: buffers it had taken but not returned are offered again
//! (frames in them may be sent twice or lost, as on any link flap); no descriptor
//! and no mbuf is lost, because ring state and in-flight mbufs are ours and never
//! reset. (Resuming at the used index assumes the old back end returned buffers
//! in order, as DPDK's vhost does on split rings; a descriptor id returned
//! twice, or never given, is ignored and never trusted, and counted as an error
//! on receive rings.) Before in-flight mbufs are freed (reconfigure, drop) every ring is
//! stopped with `GET_VRING_BASE`, which the back end answers only once it has
//! stopped touching it.
//!
//! `unsafe` here is the shared ring memory (raw pointers into the memfd mapping,
//! atomics on the indices the back end reads and writes) and a few syscalls;
//! each block says why it is sound.

use std::cell::UnsafeCell;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{VhostUserHeaderFlag, VhostUserProtocolFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::EventFd;

use super::tap::VnetHdr;
use super::{claim_queue, ensure_no_handles, not_configured};
use crate::mbuf::MbufHdr;
use crate::port::{Counter, Link, MacAddr, PortConfig, PortCounters, PortInfo, PortStats, RxCounters, TxCounters};
use crate::{free_bulk, Mbuf, Mempool, PmdError, Port, RxOffloads, RxQueue, TxOffloads, TxQueue};

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
use features as F;

const VRING_DESC_F_WRITE: u16 = 2;
const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;
const VRING_USED_F_NO_NOTIFY: u16 = 1;
/// How often the monitor checks the connection (and retries when it is down).
const MONITOR_PERIOD: Duration = Duration::from_millis(20);
/// Longest wait for one answer of the back end.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Receive descriptors are refilled once this many are free.
const RX_REFILL_BATCH: usize = 32;

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
    /// With `server`, how long `open` waits for the back end to connect.
    pub wait_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { queues: 1, server: false, qsize: 256, mrg_rxbuf: true, wait_ms: 10_000 }
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

fn io_err(context: String) -> impl FnOnce(io::Error) -> PmdError {
    move |source| PmdError::Io { context, source }
}

// ---------------------------------------------------------------------------
// Ring memory
// ---------------------------------------------------------------------------

/// A memfd mapped shared: the rings of every queue of a configuration.
struct RingMem {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is plain memory; who may touch which part of it is governed
// by the `Vq` rules (one queue handle per ring, atomics for shared indices).
unsafe impl Send for RingMem {}
// SAFETY: as above.
unsafe impl Sync for RingMem {}

impl RingMem {
    fn new(len: usize) -> Result<RingMem, PmdError> {
        let (ptr, fd) = crate::mempool::map_shared("pmd-virtio-rings", "virtio-user rings", len)?;
        Ok(RingMem { ptr, len, fd })
    }
}

impl Drop for RingMem {
    fn drop(&mut self) {
        // SAFETY: our own mapping of `len` bytes; every `Vq` pointing into it holds
        // an `Arc<RingMem>`, so none is left.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Offsets of one ring's parts inside its chunk, and the chunk's size.
fn ring_layout(qsize: usize) -> (usize, usize, usize, usize) {
    let desc = 0;
    let avail = (desc + 16 * qsize).next_multiple_of(64);
    let used = (avail + 6 + 2 * qsize).next_multiple_of(4096);
    let end = (used + 6 + 8 * qsize).next_multiple_of(4096);
    (desc, avail, used, end)
}

#[repr(C)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

#[repr(C)]
struct UsedElem {
    id: u32,
    len: u32,
}

/// What only the owner of a ring's data path touches: shadow indices and the
/// mbufs in flight.
struct VqState {
    /// Our next `avail.idx`.
    avail_idx: u16,
    /// The next used entry to consume.
    last_used: u16,
    /// Descriptor ids not in flight.
    free: Vec<u16>,
    /// The mbuf behind each in-flight descriptor id, as its header pointer: the
    /// window is known (receive: the pool's headroom; transmit: irrelevant, the
    /// buffer is only freed), and an 8-byte store of a pointer avoids the
    /// store-forwarding stall of moving a 16-byte handle just modified on the
    /// stack (see `Mbuf::push_from_hdr`), which was half of `tx_burst`.
    slots: Vec<Option<NonNull<MbufHdr>>>,
    /// Used entries still to skip (the tail of a frame spread over buffers).
    skip: u16,
}

impl Drop for VqState {
    fn drop(&mut self) {
        for hdr in self.slots.iter_mut().filter_map(Option::take) {
            // SAFETY: an in-flight buffer we own (the back end was stopped before
            // the ring goes, see the module docs); freed exactly once here.
            drop(unsafe { Mbuf::from_hdr(hdr, 0, 0) });
        }
    }
}

/// One split virtqueue.
struct Vq {
    /// vring index (2q receive, 2q+1 transmit).
    index: usize,
    size: u16,
    desc: *mut Desc,
    avail: *mut u16,
    used: *mut u16,
    kick: EventFd,
    call: EventFd,
    /// Keeps the mapping the pointers point into alive.
    _mem: Arc<RingMem>,
    st: UnsafeCell<VqState>,
}

// SAFETY: the raw pointers point into `mem`, which the `Vq` keeps alive. `st` is
// touched only by the single queue handle that owns the ring (handles are unique
// per configuration, see `claim_queue`), or by the port when no handle exists.
unsafe impl Send for Vq {}
// SAFETY: as above; shared indices are accessed through atomics.
unsafe impl Sync for Vq {}

impl Vq {
    fn new(index: usize, size: u16, mem: &Arc<RingMem>, offset: usize) -> Result<Vq, PmdError> {
        let (d, a, u, end) = ring_layout(size as usize);
        assert!(offset + end <= mem.len);
        // SAFETY: `offset + end <= mem.len`, so every part lies inside the mapping.
        let base = unsafe { mem.ptr.as_ptr().add(offset) };
        // A fresh ring: everything zero. The chunk may hold an earlier
        // configuration's ring, whose `Vq` is gone and whose back end has stopped.
        // SAFETY: `end` bytes from `base` are inside the mapping and no one else
        // uses them now.
        unsafe { base.write_bytes(0, end) };
        let ev = |what: &str| {
            EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(io_err(format!("virtio-user: {what} eventfd")))
        };
        let vq = Vq {
            index,
            size,
            // SAFETY: inside the chunk (see above); the table is 16-aligned (page-aligned chunk).
            desc: unsafe { base.add(d) }.cast(),
            // SAFETY: inside the chunk; 64-aligned.
            avail: unsafe { base.add(a) }.cast(),
            // SAFETY: inside the chunk; page-aligned.
            used: unsafe { base.add(u) }.cast(),
            kick: ev("kick")?,
            call: ev("call")?,
            _mem: mem.clone(),
            st: UnsafeCell::new(VqState {
                avail_idx: 0,
                last_used: 0,
                free: (0..size).rev().collect(),
                slots: (0..size).map(|_| None).collect(),
                skip: 0,
            }),
        };
        // SAFETY: avail.flags is ours to write; the back end does not see the ring yet.
        unsafe { vq.avail.write_volatile(VRING_AVAIL_F_NO_INTERRUPT.to_le()) };
        Ok(vq)
    }

    fn addr(&self, p: *const u8) -> u64 {
        p as u64
    }

    fn config(&self) -> VringConfigData {
        VringConfigData {
            queue_max_size: self.size,
            queue_size: self.size,
            flags: 0,
            desc_table_addr: self.addr(self.desc.cast()),
            used_ring_addr: self.addr(self.used.cast()),
            avail_ring_addr: self.addr(self.avail.cast()),
            log_addr: None,
        }
    }

    #[inline(always)]
    fn avail_idx(&self) -> &AtomicU16 {
        // SAFETY: `avail + 1` (u16 units) is avail.idx, 2-aligned, inside the ring,
        // alive as long as `self`.
        unsafe { AtomicU16::from_ptr(self.avail.add(1)) }
    }

    #[inline(always)]
    fn used_flags(&self) -> &AtomicU16 {
        // SAFETY: used.flags, 2-aligned inside the ring.
        unsafe { AtomicU16::from_ptr(self.used) }
    }

    #[inline(always)]
    fn used_idx(&self) -> &AtomicU16 {
        // SAFETY: used.idx, 2-aligned inside the ring.
        unsafe { AtomicU16::from_ptr(self.used.add(1)) }
    }

    /// The used index as the back end last wrote it (for `SET_VRING_BASE`).
    fn used_index(&self) -> u16 {
        u16::from_le(self.used_idx().load(Ordering::Acquire))
    }

    /// # Safety
    /// The caller owns the ring's data path; `id < size`.
    #[inline(always)]
    unsafe fn post(&self, st: &mut VqState, id: u16, addr: u64, len: u32, flags: u16) {
        // SAFETY: `id < size` (caller), so the descriptor and the avail slot are
        // inside the ring; only the data-path owner writes them.
        unsafe {
            self.desc.add(id as usize).write(Desc {
                addr: addr.to_le(),
                len: len.to_le(),
                flags: flags.to_le(),
                next: 0,
            });
            self.avail.add(2 + (st.avail_idx & (self.size - 1)) as usize).write(id.to_le());
        }
        st.avail_idx = st.avail_idx.wrapping_add(1);
    }

    /// Publishes the entries posted since the last call and kicks if asked.
    #[inline(always)]
    fn publish(&self, st: &VqState) {
        // Entries before the index (release).
        self.avail_idx().store(st.avail_idx.to_le(), Ordering::Release);
        // Index before reading whether to notify (full fence).
        fence(Ordering::SeqCst);
        if u16::from_le(self.used_flags().load(Ordering::Relaxed)) & VRING_USED_F_NO_NOTIFY == 0 {
            let one: u64 = 1;
            // SAFETY: writing 8 bytes from a live u64 to our eventfd.
            let _ = unsafe { libc::write(self.kick.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// The used entry at position `i`.
    #[inline(always)]
    fn used_elem(&self, i: u16) -> (u32, u32) {
        // SAFETY: the ring array starts 4 bytes into the used ring; `i & (size-1)`
        // keeps the element inside; the acquire load of used.idx that made this
        // entry visible happened before.
        let e = unsafe { (self.used.add(2) as *const UsedElem).add((i & (self.size - 1)) as usize).read_volatile() };
        (u32::from_le(e.id), u32::from_le(e.len))
    }

    /// The data-path state.
    ///
    /// # Safety
    /// Only the ring's owner (its queue handle, or the port when no handle
    /// exists) may call this, and not while another reference from it is live.
    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    unsafe fn state(&self) -> &mut VqState {
        // SAFETY: forwarded caller guarantee.
        unsafe { &mut *self.st.get() }
    }
}

// ---------------------------------------------------------------------------
// Control plane
// ---------------------------------------------------------------------------

/// State the data path reads.
#[derive(Default)]
struct Shared {
    /// Started and the back end set up: transmit queues post frames.
    up: AtomicBool,
    /// Started: receive queues poll.
    started: AtomicBool,
    mtu: AtomicU16,
    promisc: AtomicBool,
    disconnects: AtomicU64,
    reconnects: AtomicU64,
}

/// A live connection with the features the back end offered.
struct Conn {
    fe: Frontend,
    /// A second handle of the socket, for liveness checks.
    probe: UnixStream,
    offered: u64,
    protocol: bool,
    max_pairs: u16,
}

/// What the back end needs to run the rings of the current configuration.
struct Setup {
    acked: u64,
    pool_mem: crate::mempool::SharedMemory,
    rings: Arc<RingMem>,
    vqs: Vec<Arc<Vq>>,
    /// Keeps `pool_mem` valid.
    _pool: Mempool,
}

struct Control {
    path: PathBuf,
    listener: Option<UnixListener>,
    conn: Option<Conn>,
    setup: Option<Setup>,
    want_running: bool,
    /// The back end has the rings of `setup` (set up and not stopped since).
    live: bool,
    last_error: Option<String>,
}

fn connect_client(path: &Path) -> Result<UnixStream, PmdError> {
    let p = path.display();
    UnixStream::connect(path).map_err(|e| {
        let context = match e.kind() {
            io::ErrorKind::NotFound => format!(
                "virtio-user: no vhost-user socket at {p} (start the back end first, e.g. dpdk-testpmd \
                 --vdev net_vhost0,iface={p}; or open with server=1 to listen there instead)"
            ),
            io::ErrorKind::ConnectionRefused => format!(
                "virtio-user: connection to {p} refused: the socket file exists but no back end listens on it \
                 (left behind by a stopped back end?)"
            ),
            _ => format!("virtio-user: connecting to the vhost-user socket {p}"),
        };
        PmdError::Io { context, source: e }
    })
}

fn listen(path: &Path) -> Result<UnixListener, PmdError> {
    let p = path.display();
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(PmdError::Io {
                context: format!("virtio-user: server=1 but {p} exists and is not a socket; not touching it"),
                source: io::Error::from(io::ErrorKind::AlreadyExists),
            });
        }
        if UnixStream::connect(path).is_ok() {
            return Err(PmdError::Io {
                context: format!("virtio-user: server=1 but something already listens on {p}"),
                source: io::Error::from(io::ErrorKind::AddrInUse),
            });
        }
        // A stale socket of an earlier run.
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path).map_err(io_err(format!("virtio-user: listening on {p}")))?;
    l.set_nonblocking(true).map_err(io_err(format!("virtio-user: listening on {p}")))?;
    Ok(l)
}

/// Accepts one connection, waiting at most `wait` (zero: only what is pending).
fn accept(l: &UnixListener, wait: Duration) -> io::Result<Option<UnixStream>> {
    let end = Instant::now() + wait;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                return Ok(Some(s));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= end {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

fn vu_err(path: &Path, what: &str) -> impl FnOnce(vhost::Error) -> PmdError {
    let port = path.display().to_string();
    let what = what.to_string();
    move |e| PmdError::State { port, reason: format!("vhost-user {what} failed: {e}") }
}

/// Reads the back end's features and takes ownership of the device.
fn handshake(path: &Path, stream: UnixStream) -> Result<Conn, PmdError> {
    let ctx = format!("virtio-user: socket {}", path.display());
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(io_err(ctx.clone()))?;
    stream.set_write_timeout(Some(REPLY_TIMEOUT)).map_err(io_err(ctx.clone()))?;
    let probe = stream.try_clone().map_err(io_err(ctx))?;
    let mut fe = Frontend::from_stream(stream, 2 * MAX_QUEUES as u64);
    let offered = fe.get_features().map_err(vu_err(path, "GET_FEATURES"))?;
    if offered & F::VERSION_1 == 0 {
        return Err(PmdError::Unsupported {
            port: path.display().to_string(),
            what: format!(
                "a back end without VIRTIO_F_VERSION_1 (offered: {}); this driver speaks only virtio 1.0 rings",
                F::names(offered)
            ),
        });
    }
    let protocol = offered & F::PROTOCOL_FEATURES != 0;
    let mut max_pairs = 1;
    if protocol {
        let pf = fe.get_protocol_features().map_err(vu_err(path, "GET_PROTOCOL_FEATURES"))?;
        let want = pf & (VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::REPLY_ACK);
        fe.set_protocol_features(want).map_err(vu_err(path, "SET_PROTOCOL_FEATURES"))?;
        if want.contains(VhostUserProtocolFeatures::REPLY_ACK) {
            fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }
        if want.contains(VhostUserProtocolFeatures::MQ) && offered & F::MQ != 0 {
            let n = fe.get_queue_num().map_err(vu_err(path, "GET_QUEUE_NUM"))?;
            max_pairs = n.clamp(1, MAX_QUEUES as u64) as u16;
        }
    }
    fe.set_owner().map_err(vu_err(path, "SET_OWNER"))?;
    Ok(Conn { fe, probe, offered, protocol, max_pairs })
}

/// Whether the back end is still connected (no hang-up, no EOF pending).
fn alive(c: &Conn) -> bool {
    let mut p = libc::pollfd { fd: c.probe.as_raw_fd(), events: libc::POLLIN | libc::POLLRDHUP, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    if r <= 0 {
        return r == 0 || io::Error::last_os_error().kind() == io::ErrorKind::Interrupted;
    }
    if p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP | libc::POLLNVAL) != 0 {
        return false;
    }
    let mut b = 0u8;
    // SAFETY: peeks at most one byte into a live local.
    let n =
        unsafe { libc::recv(c.probe.as_raw_fd(), (&mut b as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    n != 0
}

impl Control {
    fn lock(m: &Mutex<Control>) -> MutexGuard<'_, Control> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks that the connected back end offers what a setup acks.
    fn check_offers(&self, c: &Conn, acked: u64, pairs: u16) -> Result<(), PmdError> {
        let missing = acked & !c.offered & !F::PROTOCOL_FEATURES;
        if missing != 0 {
            return Err(PmdError::Unsupported {
                port: self.path.display().to_string(),
                what: format!("{} (the back end offers {})", F::names(missing), F::names(c.offered)),
            });
        }
        if pairs > c.max_pairs {
            return Err(PmdError::Unsupported {
                port: self.path.display().to_string(),
                what: format!("{pairs} queue pairs: the back end has at most {}", c.max_pairs),
            });
        }
        Ok(())
    }

    /// Sends features, memory table and every ring to the back end, enabled.
    fn set_up_rings(&mut self) -> Result<(), PmdError> {
        self.send_rings()?;
        self.live = self.conn.is_some() && self.setup.is_some();
        Ok(())
    }

    fn send_rings(&self) -> Result<(), PmdError> {
        let (Some(c), Some(s)) = (&self.conn, &self.setup) else { return Ok(()) };
        let path = &self.path;
        self.check_offers(c, s.acked, (s.vqs.len() / 2) as u16)?;
        let acked = s.acked | if c.protocol { F::PROTOCOL_FEATURES } else { 0 };
        c.fe.set_features(acked).map_err(vu_err(path, "SET_FEATURES"))?;
        let region = |fd, addr: usize, len: usize| VhostUserMemoryRegionInfo {
            guest_phys_addr: addr as u64,
            memory_size: len as u64,
            userspace_addr: addr as u64,
            mmap_offset: 0,
            mmap_handle: fd,
        };
        let regions = [
            region(s.pool_mem.fd, s.pool_mem.addr, s.pool_mem.len),
            region(s.rings.fd.as_raw_fd(), s.rings.ptr.as_ptr() as usize, s.rings.len),
        ];
        c.fe.set_mem_table(&regions).map_err(vu_err(path, "SET_MEM_TABLE"))?;
        let mut fe = c.fe.clone();
        for vq in &s.vqs {
            let i = vq.index;
            fe.set_vring_num(i, vq.size).map_err(vu_err(path, "SET_VRING_NUM"))?;
            fe.set_vring_base(i, vq.used_index()).map_err(vu_err(path, "SET_VRING_BASE"))?;
            fe.set_vring_addr(i, &vq.config()).map_err(vu_err(path, "SET_VRING_ADDR"))?;
            fe.set_vring_kick(i, &vq.kick).map_err(vu_err(path, "SET_VRING_KICK"))?;
            fe.set_vring_call(i, &vq.call).map_err(vu_err(path, "SET_VRING_CALL"))?;
        }
        if c.protocol {
            for vq in &s.vqs {
                fe.set_vring_enable(vq.index, true).map_err(vu_err(path, "SET_VRING_ENABLE"))?;
            }
        }
        Ok(())
    }

    /// Stops every ring (`GET_VRING_BASE` returns once the back end let go).
    fn stop_rings(&mut self) {
        let live = std::mem::replace(&mut self.live, false);
        let (Some(c), Some(s)) = (&self.conn, &self.setup) else { return };
        if !live {
            return;
        }
        for vq in &s.vqs {
            if c.fe.get_vring_base(vq.index).is_err() {
                break;
            }
        }
    }

    /// Makes a new connection if there is none (monitor and open).
    fn try_connect(&mut self, wait: Duration) -> Result<bool, PmdError> {
        let stream = match &self.listener {
            Some(l) => {
                match accept(l, wait).map_err(io_err(format!("virtio-user: accepting on {}", self.path.display())))? {
                    Some(s) => s,
                    None => return Ok(false),
                }
            }
            None => connect_client(&self.path)?,
        };
        self.conn = Some(handshake(&self.path, stream)?);
        self.live = false;
        Ok(true)
    }
}

/// The monitor: notices a lost back end, takes the link down, reconnects and
/// sets the rings up again (see the module docs).
fn monitor(ctl: Arc<Mutex<Control>>, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(MONITOR_PERIOD);
        let mut c = Control::lock(&ctl);
        if let Some(conn) = &c.conn {
            if alive(conn) {
                continue;
            }
            shared.up.store(false, Ordering::Release);
            c.conn = None;
            c.live = false;
            shared.disconnects.fetch_add(1, Ordering::Relaxed);
        }
        match c.try_connect(Duration::ZERO) {
            Ok(false) => {}
            Ok(true) => {
                shared.reconnects.fetch_add(1, Ordering::Relaxed);
                if c.want_running {
                    match c.set_up_rings() {
                        Ok(()) => {
                            c.last_error = None;
                            shared.up.store(true, Ordering::Release);
                        }
                        Err(e) => {
                            c.last_error = Some(e.to_string());
                            c.conn = None;
                        }
                    }
                }
            }
            Err(e) => c.last_error = Some(e.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------
// The port
// ---------------------------------------------------------------------------

/// A `virtio-user` port.
pub struct VirtioUserPort {
    name: String,
    mac: MacAddr,
    opts: Options,
    offered: u64,
    shared: Arc<Shared>,
    ctl: Arc<Mutex<Control>>,
    stop_monitor: Arc<AtomicBool>,
    monitor: Option<JoinHandle<()>>,
    /// Ring memory for every queue the port can have, for the port's life: a
    /// back end compares memory tables by address, so memory unmapped and mapped
    /// again at the same address would go unnoticed and it would keep the old.
    rings: Arc<RingMem>,
    conf: Option<PortConfig>,
    counters: PortCounters,
    tx_copies: Vec<Arc<Counter>>,
}

impl VirtioUserPort {
    /// Connects to (or, with `server`, waits for) the back end at `path` and
    /// reads what it offers.
    pub fn open(path: &str, opts: Options, mac: MacAddr) -> Result<VirtioUserPort, PmdError> {
        opts.validate()?;
        let path = PathBuf::from(path);
        let listener = if opts.server { Some(listen(&path)?) } else { None };
        let mut ctl = Control {
            path: path.clone(),
            listener,
            conn: None,
            setup: None,
            want_running: false,
            live: false,
            last_error: None,
        };
        if !ctl.try_connect(Duration::from_millis(opts.wait_ms))? {
            return Err(PmdError::Io {
                context: format!(
                    "virtio-user: no back end connected to {} within {} ms (server=1 waits for a back end in \
                     client mode, e.g. net_vhost0,iface={},client=1)",
                    path.display(),
                    opts.wait_ms,
                    path.display()
                ),
                source: io::Error::from(io::ErrorKind::TimedOut),
            });
        }
        let c = ctl.conn.as_ref().expect("connected");
        let (offered, max_pairs) = (c.offered, c.max_pairs);
        if opts.queues > max_pairs {
            let why = if offered & F::MQ == 0 { "does not offer VIRTIO_NET_F_MQ" } else { "has fewer" };
            return Err(PmdError::Unsupported {
                port: path.display().to_string(),
                what: format!("queues={}: the back end {why} (at most {max_pairs} queue pair(s))", opts.queues),
            });
        }
        if opts.mrg_rxbuf && offered & F::MRG_RXBUF == 0 {
            return Err(PmdError::Unsupported {
                port: path.display().to_string(),
                what: "VIRTIO_NET_F_MRG_RXBUF (asked for by mrg_rxbuf=1, the default): open with mrg_rxbuf=0".into(),
            });
        }
        let rings = Arc::new(RingMem::new(ring_layout(opts.qsize as usize).3 * 2 * opts.queues as usize)?);
        let shared = Arc::new(Shared { mtu: AtomicU16::new(1500), ..Default::default() });
        let ctl = Arc::new(Mutex::new(ctl));
        let stop = Arc::new(AtomicBool::new(false));
        let monitor = {
            let (ctl, shared, stop) = (ctl.clone(), shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("virtio-user-mon".into())
                .spawn(move || monitor(ctl, shared, stop))
                .map_err(io_err("virtio-user: starting the monitor thread".into()))?
        };
        Ok(VirtioUserPort {
            name: path.display().to_string(),
            mac,
            opts,
            offered,
            shared,
            ctl,
            stop_monitor: stop,
            monitor: Some(monitor),
            rings,
            conf: None,
            counters: PortCounters::default(),
            tx_copies: Vec::new(),
        })
    }

    /// Features the back end offered when the port was opened.
    pub fn offered_features(&self) -> u64 {
        self.offered
    }

    /// Features acked by the current configuration (0 before `configure`).
    pub fn acked_features(&self) -> u64 {
        Control::lock(&self.ctl).setup.as_ref().map(|s| s.acked).unwrap_or(0)
    }

    /// The last error the monitor met while reconnecting, if the link is down.
    pub fn last_error(&self) -> Option<String> {
        Control::lock(&self.ctl).last_error.clone()
    }

    fn rx_caps(&self) -> RxOffloads {
        if self.offered & F::GUEST_CSUM != 0 {
            RxOffloads::UDP_CKSUM | RxOffloads::TCP_CKSUM
        } else {
            RxOffloads::empty()
        }
    }

    fn tx_caps(&self) -> TxOffloads {
        let mut t = TxOffloads::empty();
        if self.offered & F::CSUM != 0 {
            t |= TxOffloads::IPV4_CKSUM | TxOffloads::UDP_CKSUM | TxOffloads::TCP_CKSUM;
            if self.offered & F::HOST_TSO4 != 0 && self.offered & F::HOST_TSO6 != 0 {
                t |= TxOffloads::TCP_TSO;
            }
        }
        t
    }

    fn acked_for(&self, conf: &PortConfig) -> u64 {
        let mut f = F::VERSION_1 | (self.offered & F::STATUS);
        if self.opts.mrg_rxbuf {
            f |= F::MRG_RXBUF;
        }
        if conf.rx_queues.max(conf.tx_queues) > 1 {
            f |= F::MQ;
        }
        if conf.rx_offloads.intersects(RxOffloads::UDP_CKSUM | RxOffloads::TCP_CKSUM) {
            f |= F::GUEST_CSUM;
        }
        if conf.tx_offloads.intersects(TxOffloads::UDP_CKSUM | TxOffloads::TCP_CKSUM | TxOffloads::TCP_TSO) {
            f |= F::CSUM;
        }
        if conf.tx_offloads.contains(TxOffloads::TCP_TSO) {
            f |= F::HOST_TSO4 | F::HOST_TSO6;
        }
        f
    }

    fn stop_inner(&mut self) {
        // Under the lock, so the monitor cannot bring the link up in between.
        let mut c = Control::lock(&self.ctl);
        c.want_running = false;
        self.shared.up.store(false, Ordering::Release);
        self.shared.started.store(false, Ordering::Release);
        c.stop_rings();
    }
}

impl Drop for VirtioUserPort {
    fn drop(&mut self) {
        self.stop_monitor.store(true, Ordering::Release);
        if let Some(h) = self.monitor.take() {
            let _ = h.join();
        }
        self.stop_inner();
        let mut c = Control::lock(&self.ctl);
        c.conn = None;
        if c.listener.take().is_some() {
            let _ = std::fs::remove_file(&c.path);
        }
        // The rings (and the mbufs in flight in them) go when the last queue
        // handle does; the back end no longer touches them.
        c.setup = None;
    }
}

impl Port for VirtioUserPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "virtio-user",
            name: self.name.clone(),
            mac: self.mac,
            mtu: self.shared.mtu.load(Ordering::Relaxed),
            min_mtu: 68,
            max_mtu: MAX_MTU,
            max_rx_queues: self.opts.queues,
            max_tx_queues: self.opts.queues,
            // Rings are `qsize` entries (the spec option); larger rx_desc/tx_desc
            // are accepted and use qsize, as DPDK's virtio PMD does.
            max_desc: MAX_QSIZE,
            rx_offloads: self.rx_caps(),
            tx_offloads: self.tx_caps(),
            rss: None,
        }
    }

    fn configure(&mut self, conf: &PortConfig) -> Result<(), PmdError> {
        if self.is_started() {
            return Err(PmdError::State {
                port: self.name.clone(),
                reason: "stop the port before configuring it".into(),
            });
        }
        ensure_no_handles(&self.name, &self.counters.rx, &self.counters.tx)?;
        conf.validate(&self.info())?;
        let Some(pool_mem) = conf.mempool.shared_memory() else {
            return Err(PmdError::Config {
                field: "mempool",
                reason: format!(
                    "virtio-user needs a pool in shared memory the back end can map (Mempool::new_shared); '{}' is not",
                    conf.mempool.name()
                ),
            });
        };
        if conf.mempool.headroom() < HDR_LEN {
            return Err(PmdError::Config {
                field: "mempool",
                reason: format!("headroom {} is below the {HDR_LEN}-byte virtio-net header", conf.mempool.headroom()),
            });
        }
        if conf.mempool.data_room() < 64 {
            return Err(PmdError::Config { field: "mempool", reason: "data room below 64 bytes".into() });
        }
        let acked = self.acked_for(conf);
        let pairs = conf.rx_queues.max(conf.tx_queues);
        let mut c = Control::lock(&self.ctl);
        if let Some(conn) = &c.conn {
            c.check_offers(conn, acked, pairs)?;
        }
        // Old rings: stop them on the back end before their mbufs are freed.
        c.stop_rings();
        c.setup = None;
        let chunk = ring_layout(self.opts.qsize as usize).3;
        let rings = self.rings.clone();
        let mut vqs = Vec::new();
        for i in 0..2 * pairs as usize {
            vqs.push(Arc::new(Vq::new(i, self.opts.qsize, &rings, i * chunk)?));
        }
        // Receive rings start full, so nothing the back end sends before our
        // first poll is dropped for lack of buffers.
        let nombuf = Counter::default();
        let mut fresh = Vec::new();
        for q in 0..conf.rx_queues as usize {
            let vq = &vqs[2 * q];
            // SAFETY: the ring was just made and no handle for it exists.
            let st = unsafe { vq.state() };
            refill(vq, st, &conf.mempool, &mut fresh, &nombuf);
            // A pool too small for a whole ring: as much as it has.
            while !st.free.is_empty() && conf.mempool.alloc_bulk(&mut fresh, RX_REFILL_BATCH).is_ok() {
                refill_with(vq, st, &mut fresh);
            }
            fresh.clear();
        }
        c.setup = Some(Setup { acked, pool_mem, rings, vqs, _pool: conf.mempool.clone() });
        drop(c);
        self.counters = PortCounters::new(conf.rx_queues, conf.tx_queues);
        self.tx_copies = (0..conf.tx_queues).map(|_| Arc::new(Counter::default())).collect();
        self.conf = Some(conf.clone());
        Ok(())
    }

    fn config(&self) -> Option<&PortConfig> {
        self.conf.as_ref()
    }

    fn start(&mut self) -> Result<(), PmdError> {
        if self.conf.is_none() {
            return Err(not_configured(&self.name));
        }
        let mut c = Control::lock(&self.ctl);
        c.want_running = true;
        self.shared.started.store(true, Ordering::Release);
        if c.conn.is_some() {
            if let Err(e) = c.set_up_rings() {
                c.want_running = false;
                self.shared.started.store(false, Ordering::Release);
                return Err(e);
            }
            self.shared.up.store(true, Ordering::Release);
        }
        // Without a back end right now the monitor brings the link up later.
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PmdError> {
        self.stop_inner();
        Ok(())
    }

    fn is_started(&self) -> bool {
        self.shared.started.load(Ordering::Acquire)
    }

    fn link(&self) -> Link {
        let up = self.shared.up.load(Ordering::Acquire);
        Link { up, speed_mbps: if up { 10_000 } else { 0 }, full_duplex: up }
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), PmdError> {
        self.shared.promisc.store(on, Ordering::Release);
        Ok(())
    }

    fn promiscuous(&self) -> bool {
        self.shared.promisc.load(Ordering::Acquire)
    }

    fn set_mtu(&mut self, mtu: u16) -> Result<(), PmdError> {
        self.info().check_mtu(mtu)?;
        if let Some(conf) = &self.conf {
            if mtu as usize + 18 > conf.mempool.data_room() {
                return Err(PmdError::Config {
                    field: "mtu",
                    reason: format!(
                        "{mtu} needs frames of {} bytes; the pool's data room is {}",
                        mtu as usize + 18,
                        conf.mempool.data_room()
                    ),
                });
            }
        }
        self.shared.mtu.store(mtu, Ordering::Release);
        Ok(())
    }

    fn stats(&self) -> PortStats {
        self.counters.snapshot()
    }

    fn reset_stats(&mut self) {
        self.counters.reset()
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let mut v = self.stats().to_xstats();
        v.push(("tx_copies".into(), self.tx_copies.iter().map(|c| c.get()).sum()));
        v.push(("link_down_events".into(), self.shared.disconnects.load(Ordering::Relaxed)));
        v.push(("reconnects".into(), self.shared.reconnects.load(Ordering::Relaxed)));
        v
    }

    fn take_rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>, PmdError> {
        let conf = self.conf.as_ref().ok_or_else(|| not_configured(&self.name))?;
        let counters = claim_queue(&self.name, "rx", q, &self.counters.rx)?;
        let vq = Control::lock(&self.ctl).setup.as_ref().expect("configured").vqs[2 * q as usize].clone();
        Ok(Box::new(VirtioRx {
            vq,
            shared: self.shared.clone(),
            pool: conf.mempool.clone(),
            mac: self.mac,
            csum: conf.rx_offloads.intersects(RxOffloads::UDP_CKSUM | RxOffloads::TCP_CKSUM),
            mrg: self.opts.mrg_rxbuf,
            headroom: conf.mempool.headroom() as u32,
            posted: HDR_LEN + conf.mempool.data_room(),
            fresh: Vec::with_capacity(self.opts.qsize as usize),
            counters,
        }))
    }

    fn take_tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>, PmdError> {
        let conf = self.conf.as_ref().ok_or_else(|| not_configured(&self.name))?;
        let counters = claim_queue(&self.name, "tx", q, &self.counters.tx)?;
        let (vq, mem) = {
            let c = Control::lock(&self.ctl);
            let s = c.setup.as_ref().expect("configured");
            (s.vqs[2 * q as usize + 1].clone(), s.pool_mem)
        };
        Ok(Box::new(VirtioTx {
            vq,
            shared: self.shared.clone(),
            pool: conf.mempool.clone(),
            region: (mem.addr as u64, (mem.addr + mem.len) as u64),
            offloads: !conf.tx_offloads.is_empty(),
            done: Vec::with_capacity(self.opts.qsize as usize),
            copies: self.tx_copies[q as usize].clone(),
            counters,
        }))
    }
}

// ---------------------------------------------------------------------------
// Data path
// ---------------------------------------------------------------------------

/// Receive queue of a `virtio-user` port.
pub struct VirtioRx {
    vq: Arc<Vq>,
    shared: Arc<Shared>,
    pool: Mempool,
    mac: MacAddr,
    csum: bool,
    mrg: bool,
    /// The pool's headroom: where frames start in our buffers.
    headroom: u32,
    /// Bytes posted per receive buffer: header + the pool's data room.
    posted: usize,
    fresh: Vec<Mbuf>,
    counters: Arc<RxCounters>,
}

/// Posts fresh buffers on every free descriptor of a receive ring (in batches).
#[inline]
fn refill(vq: &Vq, st: &mut VqState, pool: &Mempool, fresh: &mut Vec<Mbuf>, nombuf: &Counter) {
    let n = st.free.len();
    if n < RX_REFILL_BATCH.min(vq.size as usize) {
        return;
    }
    if pool.alloc_bulk(fresh, n).is_err() {
        nombuf.add(1);
        return;
    }
    refill_with(vq, st, fresh);
}

/// Posts the buffers of `fresh` (at most one per free descriptor; the rest are
/// freed) and publishes them.
#[inline]
fn refill_with(vq: &Vq, st: &mut VqState, fresh: &mut Vec<Mbuf>) {
    let n = fresh.len().min(st.free.len());
    for m in fresh.drain(..n) {
        let id = st.free.pop().expect("one free id per buffer");
        let addr = m.data_ptr() as u64 - HDR_LEN as u64;
        let len = (HDR_LEN + m.tailroom()) as u32;
        // SAFETY: the caller owns this ring's data path; `id < size` (ids come
        // from `free`).
        unsafe { vq.post(st, id, addr, len, VRING_DESC_F_WRITE) };
        st.slots[id as usize] = Some(m.into_external().0);
    }
    fresh.clear();
    vq.publish(st);
}

impl RxQueue for VirtioRx {
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        if max == 0 || !self.shared.started.load(Ordering::Relaxed) {
            return 0;
        }
        let vq = &*self.vq;
        // SAFETY: this handle is the ring's only data-path owner.
        let st = unsafe { vq.state() };
        let used = u16::from_le(vq.used_idx().load(Ordering::Acquire));
        let avail = used.wrapping_sub(st.last_used) as usize;
        let mtu = self.shared.mtu.load(Ordering::Relaxed);
        let promisc = self.shared.promisc.load(Ordering::Relaxed);
        let (mut got, mut bytes, mut errors) = (0usize, 0u64, 0u64);
        let mut seen = 0;
        while seen < avail && got < max {
            let (id, len) = vq.used_elem(st.last_used);
            st.last_used = st.last_used.wrapping_add(1);
            seen += 1;
            let Some(hdr) = st.slots.get_mut(id as usize).and_then(Option::take) else {
                // A back end returning a descriptor it was not given.
                errors += 1;
                continue;
            };
            st.free.push(id as u16);
            let len = len as usize;
            let posted = self.posted;
            if st.skip > 0 || len < HDR_LEN + 14 || len > posted {
                // SAFETY: the back end gave the buffer back; it is ours to free.
                drop(unsafe { Mbuf::from_hdr(hdr, self.headroom, 0) });
                if st.skip > 0 {
                    st.skip -= 1;
                } else {
                    errors += 1;
                }
                continue;
            }
            let l = len - HDR_LEN;
            // Only a buffer used to its full length can be the first of several,
            // and only offloads need the header's other fields.
            let need_hdr = (self.mrg && len == posted) || self.csum;
            if !need_hdr && promisc && l <= mtu as usize + 14 {
                // The common case: the handle is written straight into `out`, and
                // neither the buffer header nor the frame is touched (the pool
                // reset the metadata at allocation).
                // SAFETY: an initialised header of our pool, owned by us; the
                // window `headroom + l <= headroom + data room` fits the buffer.
                unsafe { Mbuf::push_from_hdr(out, hdr, self.headroom, l as u32) };
                bytes += l as u64;
                got += 1;
                continue;
            }
            // SAFETY: as above.
            let mut m = unsafe { Mbuf::from_hdr(hdr, self.headroom, l as u32) };
            if need_hdr {
                let h = m.prepend(HDR_LEN).map(|b| {
                    let mut a = [0u8; 10];
                    a.copy_from_slice(&b[..10]);
                    (VnetHdr::from_bytes(&a), u16::from_le_bytes([b[10], b[11]]))
                });
                let _ = m.adj(HDR_LEN);
                let Some((h, nbufs)) = h else {
                    errors += 1;
                    continue;
                };
                if self.mrg && nbufs > 1 {
                    st.skip = nbufs - 1;
                    errors += 1;
                    continue;
                }
                if self.csum {
                    let (flags, _) = h.rx_flags(true);
                    m.set_rx_flags(flags);
                }
            }
            if l > mtu as usize + 14 && !crate::port::frame_fits_mtu(m.data(), mtu) {
                errors += 1;
                continue;
            }
            if !promisc {
                let d = m.data();
                if d[0] & 1 == 0 && d[..6] != self.mac.0 {
                    continue;
                }
            }
            bytes += l as u64;
            out.push(m);
            got += 1;
        }
        refill(vq, st, &self.pool, &mut self.fresh, &self.counters.nombuf);
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

/// Transmit queue of a `virtio-user` port.
pub struct VirtioTx {
    vq: Arc<Vq>,
    shared: Arc<Shared>,
    pool: Mempool,
    /// The registered pool memory: frames inside it go out without a copy.
    region: (u64, u64),
    offloads: bool,
    done: Vec<Mbuf>,
    copies: Arc<Counter>,
    counters: Arc<TxCounters>,
}

/// Frees the mbufs the back end has finished with on a transmit ring.
#[inline]
fn reclaim(vq: &Vq, st: &mut VqState, done: &mut Vec<Mbuf>) {
    let used = u16::from_le(vq.used_idx().load(Ordering::Acquire));
    while st.last_used != used {
        let (id, _) = vq.used_elem(st.last_used);
        st.last_used = st.last_used.wrapping_add(1);
        if let Some(hdr) = st.slots.get_mut(id as usize).and_then(Option::take) {
            st.free.push(id as u16);
            // SAFETY: the back end is done with this buffer of ours; the handle
            // goes into `done` only to be freed.
            unsafe { Mbuf::push_from_hdr(done, hdr, 0, 0) };
        }
    }
    free_bulk(done);
}

/// A copy of `m` into a buffer of `pool`, header room included.
fn copy_into(pool: &Mempool, m: &Mbuf) -> Option<Mbuf> {
    let mut c = pool.alloc().ok()?;
    c.extend_from_slice(m.data())?;
    c.copy_meta_from(m);
    Some(c)
}

impl TxQueue for VirtioTx {
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        if !self.shared.up.load(Ordering::Relaxed) {
            return 0;
        }
        // Nothing to send: not even a look at the used ring, whose cache line
        // the back end writes (polling it every idle iteration would pull the
        // line back and forth between the cores for nothing).
        if pkts.is_empty() {
            return 0;
        }
        let vq = &*self.vq;
        // SAFETY: this handle is the ring's only data-path owner.
        let st = unsafe { vq.state() };
        // Reclaim only when descriptors run short (as DPDK's virtio PMD does
        // past its free threshold): sent buffers wait in the ring until then.
        if st.free.len() < pkts.len().max(vq.size as usize / 2) {
            reclaim(vq, st, &mut self.done);
        }
        let n = pkts.len().min(st.free.len());
        if n == 0 {
            return 0;
        }
        let mtu = self.shared.mtu.load(Ordering::Relaxed);
        let (mut sent, mut bytes, mut errors, mut copies) = (0u64, 0u64, 0u64, 0u64);
        for mut m in pkts.drain(..n) {
            let l = m.len();
            let tso = self.offloads && m.tx_flags().contains(crate::TxFlags::TCP_SEG);
            if !tso && l > mtu as usize + 14 && !crate::port::frame_fits_mtu(m.data(), mtu) {
                errors += 1;
                continue;
            }
            let hdr = if self.offloads { VnetHdr::for_tx(&mut m) } else { Some(VnetHdr::default()) };
            let Some(hdr) = hdr else {
                errors += 1;
                continue;
            };
            let start = m.data_ptr() as u64;
            let inside =
                m.headroom() >= HDR_LEN && start - HDR_LEN as u64 >= self.region.0 && start + l as u64 <= self.region.1;
            if !inside {
                match copy_into(&self.pool, &m) {
                    Some(c) => {
                        m = c;
                        copies += 1;
                    }
                    None => {
                        errors += 1;
                        continue;
                    }
                }
            }
            let Some(h) = m.prepend(HDR_LEN) else {
                errors += 1;
                continue;
            };
            h[..10].copy_from_slice(&hdr.to_bytes());
            h[10] = 0;
            h[11] = 0;
            let id = st.free.pop().expect("n <= free ids");
            // The header's first byte (a copy lives elsewhere than `start`).
            let addr = m.data_ptr() as u64;
            let (hdr, _, _) = m.into_external();
            // SAFETY: we own this ring's data path; `id < size`.
            unsafe { vq.post(st, id, addr, (l + HDR_LEN) as u32, 0) };
            st.slots[id as usize] = Some(hdr);
            sent += 1;
            bytes += l as u64;
        }
        if sent > 0 {
            vq.publish(st);
            self.counters.packets.add(sent);
            self.counters.bytes.add(bytes);
        }
        if errors > 0 {
            self.counters.errors.add(errors);
        }
        if copies > 0 {
            self.copies.add(copies);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_layout_keeps_used_on_its_own_pages() {
        for q in [16usize, 256, 1024, 32768] {
            let (d, a, u, end) = ring_layout(q);
            assert_eq!(d, 0);
            assert!(a >= 16 * q && a % 64 == 0);
            assert!(u >= a + 6 + 2 * q && u % 4096 == 0);
            assert!(end >= u + 6 + 8 * q && end % 4096 == 0);
        }
    }

    #[test]
    fn feature_names_are_readable() {
        assert_eq!(F::names(F::VERSION_1 | F::MRG_RXBUF), "VIRTIO_NET_F_MRG_RXBUF|VIRTIO_F_VERSION_1");
        assert_eq!(F::names(1 << 40), "bit 40");
    }

    #[test]
    fn options_name_the_bad_one() {
        let e = Options { qsize: 100, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(e.contains("qsize"), "{e}");
        let e = Options { queues: 0, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(e.contains("queues"), "{e}");
    }
}
