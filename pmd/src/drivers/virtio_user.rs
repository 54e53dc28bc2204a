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
//! `VIRTIO_NET_F_MRG_RXBUF` is acked by default (`mrg_rxbuf=0` turns it off),
//! so is `VIRTIO_F_IN_ORDER` (`in_order=0` turns it off; DPDK's virtio-user
//! also negotiates it by default), and `VIRTIO_NET_F_STATUS` whenever offered. A back end lacking a required or
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
//! A per-ring table maps descriptor ids to the mbufs in flight.
//!
//! With `VIRTIO_F_IN_ORDER` (virtio 1.1, 2.7.9; `in_order=1`, the default) the
//! back end uses buffers in the order they were made available, so the buffer
//! at available position `p` always goes on descriptor `p mod qsize`: the
//! available ring is written once, at setup (entry `i` = `i`), posting writes a
//! descriptor and moves `avail.idx`, and there is no free-id stack. Receiving
//! reads each used entry's length at its own position (an entry whose id is not
//! its position is one entry for a batch, which the spec allows: the buffers
//! before it were filled to their posted length); reclaiming sent buffers reads
//! only `used.idx` (every position before it is done, however many entries the
//! back end wrote). Without it (`in_order=0`) used entries name descriptor ids
//! in any order and free ids are a stack.
//!
//! The burst loops are small functions over copies of the ring's addresses
//! (`RingView`) and the slot table, so the compiler keeps them in registers,
//! and they cover only the common case (for receive: a used length that is a
//! whole frame within the MTU, no offloads, promiscuous; for transmit: no
//! offloads, within the MTU, in our pool with header room); anything else
//! drops to a per-frame slow path and back. Frames the back end spread over several buffers (`num_buffers > 1`,
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
//! Not implemented: packed rings, indirect descriptors, `EVENT_IDX`, the control
//! queue, and receiving frames that span buffers.
//!
//! # Barriers (virtio 1.x, 2.7.13 and 2.7.7)
//! * publishing: descriptor and available-ring entries are written first, then
//!   `avail.idx` with a release store, so the back end never sees an index ahead
//!   of its entries;
//! * consuming: `used.idx` is loaded with acquire before the used entries and the
//!   frame bytes they describe are read;
//! * notifying: between publishing `avail.idx` and reading `used.flags` a full
//!   barrier, so we cannot miss that the back end asked to be kicked: `avail.idx`
//!   is published with a sequentially consistent swap (`xchg` on x86, which is
//!   both the release store and the barrier, and cheaper than `mfence`) and
//!   `used.flags` read with a sequentially consistent load.
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
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{VhostUserHeaderFlag, VhostUserProtocolFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::EventFd;

use super::tap::VnetHdr;
use super::{claim_queue, ensure_configurable, not_configured};
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
    /// Descriptor ids not in flight (without `IN_ORDER`; in order, descriptor
    /// `i` is always available-ring slot `i`, and the free ones are the
    /// positions from `avail_idx` up to `last_used + size`).
    free: Vec<u16>,
    /// The mbuf behind each in-flight descriptor id, as its header pointer: the
    /// window is known (receive: the pool's headroom; transmit: irrelevant, the
    /// buffer is only freed), and an 8-byte store of a pointer avoids the
    /// store-forwarding stall of moving a 16-byte handle just modified on the
    /// stack (see `Mbuf::push_from_hdr`), which was half of `tx_burst`.
    slots: Vec<Option<NonNull<MbufHdr>>>,
    /// Used entries still to skip (the tail of a frame spread over buffers).
    skip: u16,
    /// In order: the back end reported a batch of buffers with one used entry
    /// (virtio 1.1, 2.7.9), ending at this position with this length; the
    /// buffers before it were used to their full length.
    batch: Option<(u16, u32)>,
}

impl VqState {
    /// Descriptors not in flight.
    #[inline(always)]
    fn free_count(&self, vq: &Vq) -> usize {
        if vq.in_order {
            vq.size as usize - self.avail_idx.wrapping_sub(self.last_used) as usize
        } else {
            self.free.len()
        }
    }

    /// The descriptor id for the next buffer to post (one must be free).
    #[inline(always)]
    fn next_id(&mut self, vq: &Vq) -> u16 {
        if vq.in_order {
            self.avail_idx & (vq.size - 1)
        } else {
            self.free.pop().expect("a free descriptor id")
        }
    }
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

/// A ring's descriptor table and used entries, for the burst loops.
#[derive(Clone, Copy)]
struct RingView {
    desc: *mut Desc,
    used_elems: *const UsedElem,
    mask: u16,
}

impl RingView {
    /// The used entry at position `p` (id, len).
    #[inline(always)]
    fn used_elem(self, p: u16) -> (u32, u32) {
        // SAFETY: `p & mask < size`: inside the used ring; the acquire load of
        // used.idx that made this entry visible happened before.
        let e = unsafe { self.used_elems.add((p & self.mask) as usize).read_volatile() };
        (u32::from_le(e.id), u32::from_le(e.len))
    }

    /// Writes descriptor `id` (a single buffer, no chain).
    ///
    /// # Safety
    /// The caller owns the ring's data path; `id <= mask`.
    #[inline(always)]
    unsafe fn write_desc(self, id: u16, addr: u64, len: u32, flags: u16) {
        // SAFETY: `id < size` (caller): inside the table; only the data-path
        // owner writes it.
        unsafe {
            self.desc.add(id as usize).write(Desc {
                addr: addr.to_le(),
                len: len.to_le(),
                flags: flags.to_le(),
                next: 0,
            })
        };
    }
}

/// One split virtqueue.
struct Vq {
    /// vring index (2q receive, 2q+1 transmit).
    index: usize,
    size: u16,
    /// `VIRTIO_F_IN_ORDER` was acked: descriptor ids are ring positions and the
    /// available ring is written once, here.
    in_order: bool,
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
    fn new(index: usize, size: u16, in_order: bool, mem: &Arc<RingMem>, offset: usize) -> Result<Vq, PmdError> {
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
            in_order,
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
                free: if in_order { Vec::new() } else { (0..size).rev().collect() },
                slots: (0..size).map(|_| None).collect(),
                skip: 0,
                batch: None,
            }),
        };
        // SAFETY: avail.flags is ours to write; the back end does not see the ring yet.
        unsafe { vq.avail.write_volatile(VRING_AVAIL_F_NO_INTERRUPT.to_le()) };
        if in_order {
            // Buffers are posted on descriptor `i` at position `i` (mod size), so
            // the available ring never changes: only `avail.idx` moves.
            for i in 0..size {
                // SAFETY: slot `i < size` of the available ring, inside the chunk;
                // not yet visible to the back end.
                unsafe { vq.avail.add(2 + i as usize).write(i.to_le()) };
            }
        }
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

    /// Posts one buffer on descriptor `id` (from [`VqState::next_id`]) at the
    /// next available position; visible to the back end at [`Vq::publish`].
    ///
    /// # Safety
    /// The caller owns the ring's data path; `id < size`.
    #[inline(always)]
    unsafe fn post(&self, st: &mut VqState, id: u16, addr: u64, len: u32, flags: u16) {
        // SAFETY: `id < size` (caller), so the descriptor and the avail slot are
        // inside the ring; only the data-path owner writes them.
        unsafe {
            self.write_desc(id, addr, len, flags);
            if !self.in_order {
                self.avail.add(2 + (st.avail_idx & (self.size - 1)) as usize).write(id.to_le());
            }
        }
        st.avail_idx = st.avail_idx.wrapping_add(1);
    }

    /// Writes descriptor `id` (a single buffer, no chain).
    ///
    /// # Safety
    /// The caller owns the ring's data path; `id < size`.
    #[inline(always)]
    unsafe fn write_desc(&self, id: u16, addr: u64, len: u32, flags: u16) {
        // SAFETY: forwarded caller guarantee.
        unsafe { self.view().write_desc(id, addr, len, flags) };
    }

    /// Publishes the entries posted since the last call and kicks if asked.
    #[inline(always)]
    fn publish(&self, st: &VqState) {
        // Entries before the index, and the index before reading whether to
        // notify: a sequentially consistent exchange is both the release and
        // the full barrier (`xchg` on x86, cheaper than `mfence`; Linux's
        // `virt_mb` is a locked add for the same reason).
        self.avail_idx().swap(st.avail_idx.to_le(), Ordering::SeqCst);
        if u16::from_le(self.used_flags().load(Ordering::SeqCst)) & VRING_USED_F_NO_NOTIFY == 0 {
            let one: u64 = 1;
            // SAFETY: writing 8 bytes from a live u64 to our eventfd.
            let _ = unsafe { libc::write(self.kick.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// The used entry at position `i`.
    #[inline(always)]
    fn used_elem(&self, i: u16) -> (u32, u32) {
        self.view().used_elem(i)
    }

    /// The ring's addresses, by value, for the burst loops (so that the
    /// compiler keeps them in registers across the loop's stores).
    #[inline(always)]
    fn view(&self) -> RingView {
        RingView {
            desc: self.desc,
            // SAFETY: the used ring's entries start 4 bytes in (flags, idx).
            used_elems: unsafe { self.used.add(2) }.cast(),
            mask: self.size - 1,
        }
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
        if opts.in_order && offered & F::IN_ORDER == 0 {
            return Err(PmdError::Unsupported {
                port: path.display().to_string(),
                what: "VIRTIO_F_IN_ORDER (asked for by in_order=1, the default): open with in_order=0".into(),
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
        if self.opts.in_order {
            f |= F::IN_ORDER;
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
        ensure_configurable(&self.name, self.is_started(), &self.counters.rx, &self.counters.tx)?;
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
            vqs.push(Arc::new(Vq::new(i, self.opts.qsize, self.opts.in_order, &rings, i * chunk)?));
        }
        // Receive rings start full, so nothing the back end sends before our
        // first poll is dropped for lack of buffers.
        let nombuf = Counter::default();
        let mut fresh = Vec::new();
        for q in 0..conf.rx_queues as usize {
            let vq = &vqs[2 * q];
            // SAFETY: the ring was just made and no handle for it exists.
            let st = unsafe { vq.state() };
            let posted = HDR_LEN + conf.mempool.data_room();
            refill(vq, st, &conf.mempool, &mut fresh, posted, &nombuf);
            // A pool too small for a whole ring: as much as it has.
            while st.free_count(vq) > 0 && conf.mempool.alloc_bulk(&mut fresh, RX_REFILL_BATCH).is_ok() {
                refill_with(vq, st, &mut fresh, posted);
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

// Handles: the only places that build an `Mbuf` from a buffer in flight or take
// one apart for a descriptor.

/// A fresh receive buffer taken apart for posting: its header, and the address
/// of the virtio-net header slot right in front of its data room.
#[inline(always)]
fn rx_post_parts(m: Mbuf) -> (NonNull<MbufHdr>, u64) {
    let addr = m.data_ptr() as u64 - HDR_LEN as u64;
    (m.into_external().0, addr)
}

/// Hands a received frame up: its window is `len` bytes at the pool's headroom.
///
/// # Safety
/// `hdr` is a buffer of ours the back end gave back, with no other handle;
/// `headroom + len` fits its buffer.
#[inline(always)]
unsafe fn rx_push(out: &mut Vec<Mbuf>, hdr: NonNull<MbufHdr>, headroom: u32, len: u32) {
    // SAFETY: forwarded caller guarantee.
    unsafe { Mbuf::push_from_hdr(out, hdr, headroom, len) }
}

/// A handle to a received buffer, for the paths that look into it.
///
/// # Safety
/// As for [`rx_push`].
#[inline(always)]
unsafe fn rx_mbuf(hdr: NonNull<MbufHdr>, headroom: u32, len: u32) -> Mbuf {
    // SAFETY: forwarded caller guarantee.
    unsafe { Mbuf::from_hdr(hdr, headroom, len) }
}

/// Frees a buffer of ours the back end gave back and nobody will see.
///
/// # Safety
/// `hdr` is ours, with no other handle; it is not used again.
#[cold]
unsafe fn free_hdr(hdr: NonNull<MbufHdr>) {
    // SAFETY: forwarded caller guarantee; the window is irrelevant to freeing.
    drop(unsafe { Mbuf::from_hdr(hdr, 0, 0) });
}

/// A frame to send taken apart: its header and the address of its first byte.
#[inline(always)]
fn tx_post_parts(m: Mbuf) -> (NonNull<MbufHdr>, u64) {
    let addr = m.data_ptr() as u64;
    (m.into_external().0, addr)
}

/// Queues a sent buffer for freeing.
///
/// # Safety
/// As for [`free_hdr`].
#[inline(always)]
unsafe fn tx_done_push(done: &mut Vec<Mbuf>, hdr: NonNull<MbufHdr>) {
    // SAFETY: forwarded caller guarantee; the handle is only freed.
    unsafe { Mbuf::push_from_hdr(done, hdr, 0, 0) }
}

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

/// Posts fresh buffers on every free descriptor of a receive ring, once at
/// least a batch of them is free (one pool visit and one `avail.idx` store per
/// batch).
#[inline]
fn refill(vq: &Vq, st: &mut VqState, pool: &Mempool, fresh: &mut Vec<Mbuf>, posted: usize, nombuf: &Counter) {
    let n = st.free_count(vq);
    if n < RX_REFILL_BATCH.min(vq.size as usize) {
        return;
    }
    if pool.alloc_bulk(fresh, n).is_err() {
        nombuf.add(1);
        return;
    }
    refill_with(vq, st, fresh, posted);
}

/// Posts the buffers of `fresh` (at most one per free descriptor; the rest are
/// freed) as `posted` bytes each, and publishes them.
#[inline]
fn refill_with(vq: &Vq, st: &mut VqState, fresh: &mut Vec<Mbuf>, posted: usize) {
    let n = fresh.len().min(st.free_count(vq));
    if vq.in_order {
        // Descriptor = position: no id to look up, no available-ring entry to
        // write (it already names this descriptor).
        st.avail_idx = post_in_order(vq.view(), st.avail_idx, &mut st.slots, fresh.drain(..n), posted as u32);
    } else {
        for m in fresh.drain(..n) {
            debug_assert_eq!(HDR_LEN + m.tailroom(), posted);
            let (hdr, addr) = rx_post_parts(m);
            let id = st.next_id(vq);
            // SAFETY: the caller owns this ring's data path; `id < size`.
            unsafe { vq.post(st, id, addr, posted as u32, VRING_DESC_F_WRITE) };
            st.slots[id as usize] = Some(hdr);
        }
    }
    fresh.clear();
    vq.publish(st);
}

/// In order: posts `bufs` as receive buffers of `posted` bytes from position
/// `idx` on; returns the next position.
#[inline(never)]
fn post_in_order(
    ring: RingView,
    mut idx: u16,
    slots: &mut [Option<NonNull<MbufHdr>>],
    bufs: std::vec::Drain<'_, Mbuf>,
    posted: u32,
) -> u16 {
    for m in bufs {
        debug_assert_eq!(HDR_LEN + m.tailroom(), posted as usize);
        let (hdr, addr) = rx_post_parts(m);
        let i = idx & ring.mask;
        // SAFETY: the caller owns this ring's data path; `i <= mask`.
        unsafe { ring.write_desc(i, addr, posted, VRING_DESC_F_WRITE) };
        slots[i as usize] = Some(hdr);
        idx = idx.wrapping_add(1);
    }
    idx
}

/// What the receive fast loops need besides the ring.
#[derive(Clone, Copy)]
struct RxFast {
    /// Used lengths in `min_len..=max_len` are frames to hand up untouched.
    min_len: u32,
    max_len: u32,
    headroom: u32,
}

/// In order: hands up frames from position `p` to `end` while they are the
/// common case (a used entry naming its own position, a length in range);
/// returns where it stopped, and adds the frames' bytes to `bytes`.
#[inline(never)]
fn rx_fast_in_order(
    ring: RingView,
    mut p: u16,
    end: u16,
    slots: &mut [Option<NonNull<MbufHdr>>],
    f: RxFast,
    out: &mut Vec<Mbuf>,
    bytes: &mut u64,
) -> u16 {
    let mut b = 0u64;
    while p != end {
        let slot = p & ring.mask;
        let (id, len) = ring.used_elem(p);
        if id != slot as u32 || len < f.min_len || len > f.max_len {
            break;
        }
        let Some(hdr) = slots[slot as usize].take() else { break };
        let l = len - HDR_LEN as u32;
        // SAFETY: ours, no other handle; `headroom + l` is within the data
        // room (`len <= posted`).
        unsafe { rx_push(out, hdr, f.headroom, l) };
        b += l as u64;
        p = p.wrapping_add(1);
    }
    *bytes += b;
    p
}

/// Without IN_ORDER: as [`rx_fast_in_order`], for at most `n` used entries
/// from position `p` whose ids name buffers in flight; returns how many it
/// consumed.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn rx_fast_any_order(
    ring: RingView,
    p: u16,
    n: usize,
    slots: &mut [Option<NonNull<MbufHdr>>],
    free: &mut Vec<u16>,
    f: RxFast,
    out: &mut Vec<Mbuf>,
    bytes: &mut u64,
) -> usize {
    let mut b = 0u64;
    let mut k = 0;
    while k < n {
        let (id, len) = ring.used_elem(p.wrapping_add(k as u16));
        if len < f.min_len || len > f.max_len {
            break;
        }
        let Some(hdr) = slots.get_mut(id as usize).and_then(Option::take) else { break };
        free.push(id as u16);
        let l = len - HDR_LEN as u32;
        // SAFETY: ours, no other handle; `headroom + l` is within the data
        // room (`len <= posted`).
        unsafe { rx_push(out, hdr, f.headroom, l) };
        b += l as u64;
        k += 1;
    }
    *bytes += b;
    k
}

/// In order: the slot and length of the buffer at position `p`, or `None` for
/// a used entry that breaks the order (the buffer is then dropped as an error).
/// The back end may report a batch with one entry for its last buffer (virtio
/// 1.1, 2.7.9); the others were filled to the length they were posted with.
#[inline(always)]
fn in_order_used(vq: &Vq, st: &mut VqState, p: u16, used: u16, posted: u32) -> Option<(u16, u32)> {
    let mask = vq.size - 1;
    let slot = p & mask;
    if let Some((last, len)) = st.batch {
        if p != last {
            return Some((slot, posted));
        }
        st.batch = None;
        return Some((slot, len));
    }
    let (id, len) = vq.used_elem(p);
    if id == slot as u32 {
        return Some((slot, len));
    }
    in_order_batch(st, p, used, id, len, vq.size).map(|()| (slot, posted))
}

/// A used entry whose id is ahead of its position: one entry for a batch.
#[cold]
fn in_order_batch(st: &mut VqState, p: u16, used: u16, id: u32, len: u32, size: u16) -> Option<()> {
    if id >= size as u32 {
        return None;
    }
    let ahead = (id as u16).wrapping_sub(p) & (size - 1);
    // The batch's last buffer must be one the back end has returned.
    if ahead >= used.wrapping_sub(p) {
        return None;
    }
    st.batch = Some((p.wrapping_add(ahead), len));
    Some(())
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
        let before = out.len();
        let (mut bytes, mut errors) = (0u64, 0u64);
        if avail > 0 {
            let mtu = self.shared.mtu.load(Ordering::Relaxed);
            let promisc = self.shared.promisc.load(Ordering::Relaxed);
            let posted = self.posted;
            // The common case, decided by the used length alone: no offloads,
            // promiscuous, within the MTU, and (with mergeable buffers) not
            // filled to the end, so it cannot be the first of several. Then the
            // frame goes up without touching its buffer header or its bytes (the
            // pool reset the metadata at allocation).
            let max_len = if self.csum || !promisc {
                0
            } else {
                (HDR_LEN + mtu as usize + 14).min(if self.mrg { posted - 1 } else { posted })
            };
            let f = RxFast { min_len: (HDR_LEN + 14) as u32, max_len: max_len as u32, headroom: self.headroom };
            let ring = vq.view();
            // Each used position is one buffer, at most one frame.
            let n = avail.min(max);
            out.reserve(n);
            if vq.in_order {
                let end = st.last_used.wrapping_add(n as u16);
                let mut p = st.last_used;
                loop {
                    if st.batch.is_none() && st.skip == 0 {
                        p = rx_fast_in_order(ring, p, end, &mut st.slots, f, out, &mut bytes);
                    }
                    if p == end {
                        break;
                    }
                    // One buffer off the fast path: batches, errors, slow cases.
                    let slot = p & ring.mask;
                    match in_order_used(vq, st, p, used, posted as u32) {
                        Some((slot, len)) => match st.slots[slot as usize].take() {
                            Some(hdr) => self.rx_one(st, hdr, len as usize, mtu, promisc, out, &mut bytes, &mut errors),
                            // A position the back end was not given.
                            None => errors += 1,
                        },
                        None => {
                            errors += 1;
                            if let Some(hdr) = st.slots[slot as usize].take() {
                                // SAFETY: the back end gave it back; it is ours to free.
                                unsafe { free_hdr(hdr) };
                            }
                        }
                    }
                    p = p.wrapping_add(1);
                }
                st.last_used = p;
            } else {
                let mut k = 0;
                while k < n {
                    if st.skip == 0 {
                        k += rx_fast_any_order(
                            ring,
                            st.last_used.wrapping_add(k as u16),
                            n - k,
                            &mut st.slots,
                            &mut st.free,
                            f,
                            out,
                            &mut bytes,
                        );
                        if k == n {
                            break;
                        }
                    }
                    let (id, len) = ring.used_elem(st.last_used.wrapping_add(k as u16));
                    k += 1;
                    let id = id.min(u16::MAX as u32) as u16;
                    let Some(hdr) = st.slots.get_mut(id as usize).and_then(Option::take) else {
                        // A back end returning a descriptor it was not given.
                        errors += 1;
                        continue;
                    };
                    st.free.push(id);
                    self.rx_one(st, hdr, len as usize, mtu, promisc, out, &mut bytes, &mut errors);
                }
                st.last_used = st.last_used.wrapping_add(n as u16);
            }
        }
        refill(vq, st, &self.pool, &mut self.fresh, self.posted, &self.counters.nombuf);
        if errors > 0 {
            self.counters.errors.add(errors);
        }
        let got = out.len() - before;
        if got > 0 {
            self.counters.packets.add(got as u64);
            self.counters.bytes.add(bytes);
        }
        got
    }
}

impl VirtioRx {
    /// A buffer off the fast path: handed up, filtered or counted as an error.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn rx_one(
        &self,
        st: &mut VqState,
        hdr: NonNull<MbufHdr>,
        len: usize,
        mtu: u16,
        promisc: bool,
        out: &mut Vec<Mbuf>,
        bytes: &mut u64,
        errors: &mut u64,
    ) {
        match self.rx_slow(st, hdr, len, mtu, promisc) {
            Ok(Some(m)) => {
                *bytes += m.len() as u64;
                out.push(m);
            }
            Ok(None) => {}
            Err(()) => *errors += 1,
        }
    }

    /// Everything but the common case: the tail of a frame spread over
    /// buffers, bad lengths, offloads, the MAC filter, frames above the MTU.
    /// `Ok(None)`: filtered out; `Err`: an error.
    #[inline(never)]
    fn rx_slow(
        &self,
        st: &mut VqState,
        hdr: NonNull<MbufHdr>,
        len: usize,
        mtu: u16,
        promisc: bool,
    ) -> Result<Option<Mbuf>, ()> {
        if st.skip > 0 || len < HDR_LEN + 14 || len > self.posted {
            // SAFETY: the back end gave the buffer back; it is ours to free.
            unsafe { free_hdr(hdr) };
            if st.skip > 0 {
                st.skip -= 1;
                return Ok(None);
            }
            return Err(());
        }
        let l = len - HDR_LEN;
        // SAFETY: ours, no other handle; the window fits (`len <= posted`).
        let mut m = unsafe { rx_mbuf(hdr, self.headroom, l as u32) };
        // Only a buffer used to its full length can be the first of several,
        // and only offloads need the header's other fields.
        if (self.mrg && len == self.posted) || self.csum {
            let h = m.prepend(HDR_LEN).map(|b| {
                let mut a = [0u8; 10];
                a.copy_from_slice(&b[..10]);
                (VnetHdr::from_bytes(&a), u16::from_le_bytes([b[10], b[11]]))
            });
            let _ = m.adj(HDR_LEN);
            let Some((h, nbufs)) = h else { return Err(()) };
            if self.mrg && nbufs > 1 {
                st.skip = nbufs - 1;
                return Err(());
            }
            if self.csum {
                let (flags, _) = h.rx_flags(true);
                m.set_rx_flags(flags);
            }
        }
        if l > mtu as usize + 14 && !crate::port::frame_fits_mtu(m.data(), mtu) {
            return Err(());
        }
        if !promisc {
            let d = m.data();
            if d[0] & 1 == 0 && d[..6] != self.mac.0 {
                return Ok(None);
            }
        }
        Ok(Some(m))
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
    if vq.in_order {
        // Every buffer before `used` is done, whatever the entries say (the
        // back end may write one entry per batch): the entries are not read.
        let n = used.wrapping_sub(st.last_used).min(st.avail_idx.wrapping_sub(st.last_used));
        let mask = vq.size - 1;
        for _ in 0..n {
            if let Some(hdr) = st.slots[(st.last_used & mask) as usize].take() {
                // SAFETY: the back end is done with this buffer of ours.
                unsafe { tx_done_push(done, hdr) };
            }
            st.last_used = st.last_used.wrapping_add(1);
        }
    } else {
        while st.last_used != used {
            let (id, _) = vq.used_elem(st.last_used);
            st.last_used = st.last_used.wrapping_add(1);
            if let Some(hdr) = st.slots.get_mut(id as usize).and_then(Option::take) {
                st.free.push(id as u16);
                // SAFETY: the back end is done with this buffer of ours.
                unsafe { tx_done_push(done, hdr) };
            }
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

/// What the transmit fast loop needs besides the ring.
#[derive(Clone, Copy)]
struct TxFast {
    /// Longest frame that needs no MTU check (MTU + Ethernet header).
    max_len: usize,
    /// The registered pool memory: frames inside it go out without a copy.
    region: (u64, u64),
}

/// How many frames at the front of `frames` are the common case: no offloads,
/// within the MTU, in the registered memory with room for the header.
#[inline(always)]
fn tx_fast_count(frames: &[Mbuf], f: TxFast) -> usize {
    frames
        .iter()
        .position(|m| {
            let l = m.len();
            let start = m.data_ptr() as u64;
            l > f.max_len
                || m.headroom() < HDR_LEN
                || start - (HDR_LEN as u64) < f.region.0
                || start + l as u64 > f.region.1
        })
        .unwrap_or(frames.len())
}

/// Posts the next `k` frames of `frames` (all the common case, see
/// [`tx_fast_count`]) on the ring from position `idx` on (in order:
/// descriptor = position; otherwise ids from `free`), writing the zero
/// virtio-net header into each one's headroom. Returns the next position and
/// the frames' bytes.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn tx_post_fast(
    ring: RingView,
    in_order: bool,
    avail: *mut u16,
    mut idx: u16,
    slots: &mut [Option<NonNull<MbufHdr>>],
    free: &mut Vec<u16>,
    frames: &mut std::vec::Drain<'_, Mbuf>,
    k: usize,
) -> (u16, u64) {
    let mut bytes = 0u64;
    for mut m in frames.take(k) {
        let l = m.len();
        if let Some(h) = m.prepend(HDR_LEN) {
            // No offloads: all zero (`num_buffers` is 0 on transmit).
            h.fill(0);
        }
        let (hdr, addr) = tx_post_parts(m);
        let id = if in_order { idx & ring.mask } else { free.pop().expect("a free id per frame") };
        // SAFETY: we own this ring's data path; `id <= mask`; the available
        // ring has `mask + 1` entries.
        unsafe {
            ring.write_desc(id, addr, (l + HDR_LEN) as u32, 0);
            if !in_order {
                avail.add(2 + (idx & ring.mask) as usize).write(id.to_le());
            }
        }
        slots[id as usize] = Some(hdr);
        idx = idx.wrapping_add(1);
        bytes += l as u64;
    }
    (idx, bytes)
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
        if st.free_count(vq) < pkts.len().max(vq.size as usize / 2) {
            reclaim(vq, st, &mut self.done);
        }
        let n = pkts.len().min(st.free_count(vq));
        if n == 0 {
            return 0;
        }
        let mtu = self.shared.mtu.load(Ordering::Relaxed);
        let f = TxFast { max_len: if self.offloads { 0 } else { mtu as usize + 14 }, region: self.region };
        let (mut sent, mut bytes, mut errors, mut copies) = (0u64, 0u64, 0u64, 0u64);
        let mut frames = pkts.drain(..n);
        loop {
            let k = tx_fast_count(frames.as_slice(), f);
            if k > 0 {
                let (idx, b) = tx_post_fast(
                    vq.view(),
                    vq.in_order,
                    vq.avail,
                    st.avail_idx,
                    &mut st.slots,
                    &mut st.free,
                    &mut frames,
                    k,
                );
                st.avail_idx = idx;
                sent += k as u64;
                bytes += b;
            }
            let Some(m) = frames.next() else { break };
            // Off the fast path: offloads, frames above the MTU, frames from
            // elsewhere (copied).
            let l = m.len();
            match self.tx_prepare(m, mtu, &mut copies) {
                Some((m, vnet)) => {
                    let mut m = m;
                    let Some(h) = m.prepend(HDR_LEN) else {
                        errors += 1;
                        continue;
                    };
                    h.fill(0);
                    if let Some(v) = vnet {
                        h[..10].copy_from_slice(&v.to_bytes());
                    }
                    let id = st.next_id(vq);
                    // The header's first byte (a copy lives elsewhere than the original).
                    let (hdr, addr) = tx_post_parts(m);
                    // SAFETY: we own this ring's data path; `id < size`.
                    unsafe { vq.post(st, id, addr, (l + HDR_LEN) as u32, 0) };
                    st.slots[id as usize] = Some(hdr);
                    sent += 1;
                    bytes += l as u64;
                }
                None => errors += 1,
            }
        }
        drop(frames);
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

impl VirtioTx {
    /// A frame off the fast path made ready to post: the MTU checked, the
    /// offload header computed, copied into our pool if it lies elsewhere or
    /// lacks header room. `None`: an error (the frame is dropped).
    #[inline(never)]
    fn tx_prepare(&self, mut m: Mbuf, mtu: u16, copies: &mut u64) -> Option<(Mbuf, Option<VnetHdr>)> {
        let l = m.len();
        let tso = self.offloads && m.meta().tx_flags.contains(crate::TxFlags::TCP_SEG);
        if !tso && l > mtu as usize + 14 && !crate::port::frame_fits_mtu(m.data(), mtu) {
            return None;
        }
        let vnet = if self.offloads { Some(VnetHdr::for_tx(&mut m)?) } else { None };
        let start = m.data_ptr() as u64;
        let inside =
            m.headroom() >= HDR_LEN && start - HDR_LEN as u64 >= self.region.0 && start + l as u64 <= self.region.1;
        if !inside {
            m = copy_into(&self.pool, &m)?;
            *copies += 1;
        }
        Some((m, vnet))
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

    // -----------------------------------------------------------------------
    // The ring logic against a device simulated in this process: it reads the
    // available ring and descriptors we wrote and writes used entries the way a
    // back end may (in order or not, one entry per buffer or one per batch).
    // -----------------------------------------------------------------------

    use crate::port::{RxCounters, TxCounters};
    use crate::{MempoolConfig, RxQueue, TxQueue};

    /// The device side of one ring.
    struct FakeDev {
        vq: Arc<Vq>,
        /// Next available position to take.
        next: u16,
        /// Our shadow of `used.idx`.
        used: u16,
    }

    impl FakeDev {
        /// A polling device: it asks not to be kicked.
        fn new(vq: &Arc<Vq>) -> FakeDev {
            vq.used_flags().store(VRING_USED_F_NO_NOTIFY.to_le(), Ordering::Release);
            FakeDev { vq: vq.clone(), next: 0, used: 0 }
        }

        /// Takes the next available buffer: (descriptor id, address, length, flags).
        fn take(&mut self) -> Option<(u16, u64, u32, u16)> {
            let vq = &*self.vq;
            if self.next == u16::from_le(vq.avail_idx().load(Ordering::Acquire)) {
                return None;
            }
            // SAFETY: inside the ring (masked), published by the acquire load above.
            let id = u16::from_le(unsafe { vq.avail.add(2 + (self.next & (vq.size - 1)) as usize).read_volatile() });
            assert!(id < vq.size, "descriptor id {id} out of range");
            // SAFETY: `id < size`.
            let d = unsafe { vq.desc.add(id as usize).read_volatile() };
            self.next = self.next.wrapping_add(1);
            Some((id, u64::from_le(d.addr), u32::from_le(d.len), u16::from_le(d.flags)))
        }

        /// Writes the used entry `k` places after the current used index.
        fn put(&mut self, k: u16, id: u16, len: u32) {
            let vq = &*self.vq;
            let i = self.used.wrapping_add(k) & (vq.size - 1);
            // SAFETY: the used ring's entries start 4 bytes in; `i < size`.
            unsafe {
                (vq.used.add(2) as *mut UsedElem)
                    .add(i as usize)
                    .write_volatile(UsedElem { id: (id as u32).to_le(), len: len.to_le() })
            };
        }

        /// Makes `n` more buffers used.
        fn advance(&mut self, n: u16) {
            self.used = self.used.wrapping_add(n);
            self.vq.used_idx().store(self.used.to_le(), Ordering::Release);
        }
    }

    /// A frame of `len` bytes carrying `seq` and a pattern of it.
    fn frame(len: usize, seq: u32) -> Vec<u8> {
        let mut d: Vec<u8> = (0..len).map(|i| (i as u32).wrapping_mul(7).wrapping_add(seq) as u8).collect();
        d[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xbb]);
        d[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xaa]);
        d[12..14].copy_from_slice(&[0x08, 0x00]);
        d[14..18].copy_from_slice(&seq.to_be_bytes());
        d
    }

    /// Writes a received frame into a posted buffer (header with `nbufs`);
    /// returns the used length.
    fn fill(addr: u64, posted: u32, f: &[u8], nbufs: u16) -> u32 {
        let total = HDR_LEN + f.len();
        assert!(total <= posted as usize, "{total} > {posted}");
        let mut hdr = [0u8; HDR_LEN];
        hdr[10..12].copy_from_slice(&nbufs.to_le_bytes());
        // SAFETY: GPA = VA: the descriptor's address is our buffer, `posted` bytes long.
        unsafe {
            std::ptr::copy_nonoverlapping(hdr.as_ptr(), addr as *mut u8, HDR_LEN);
            std::ptr::copy_nonoverlapping(f.as_ptr(), (addr as *mut u8).add(HDR_LEN), f.len());
        }
        total as u32
    }

    /// A sent buffer's bytes (header checked to be all zero), as the device reads them.
    fn sent_frame(addr: u64, len: u32) -> Vec<u8> {
        // SAFETY: GPA = VA: the descriptor describes `len` bytes of our buffer.
        let b = unsafe { std::slice::from_raw_parts(addr as *const u8, len as usize) };
        assert_eq!(&b[..HDR_LEN], &[0u8; HDR_LEN], "a zero virtio-net header in front of every frame");
        b[HDR_LEN..].to_vec()
    }

    struct Rig {
        pool: Mempool,
        rx: VirtioRx,
        tx: VirtioTx,
        rxd: FakeDev,
        txd: FakeDev,
        shared: Arc<Shared>,
    }

    /// One queue pair of `qsize` entries, receive ring filled as `configure` does.
    fn rig(in_order: bool, qsize: u16, mrg: bool, pool_size: usize, cache: usize) -> Rig {
        let pool = Mempool::new_shared(&MempoolConfig::new(
            "vu-sim",
            pool_size,
            2048,
            crate::mempool::DEFAULT_HEADROOM,
            cache,
        ))
        .unwrap();
        let mem = pool.shared_memory().unwrap();
        let chunk = ring_layout(qsize as usize).3;
        let rings = Arc::new(RingMem::new(2 * chunk).unwrap());
        let rvq = Arc::new(Vq::new(0, qsize, in_order, &rings, 0).unwrap());
        let tvq = Arc::new(Vq::new(1, qsize, in_order, &rings, chunk).unwrap());
        let shared = Arc::new(Shared { mtu: AtomicU16::new(1500), ..Default::default() });
        shared.started.store(true, Ordering::Release);
        shared.up.store(true, Ordering::Release);
        shared.promisc.store(true, Ordering::Release);
        let posted = HDR_LEN + pool.data_room();
        {
            // SAFETY: no handle exists yet.
            let st = unsafe { rvq.state() };
            let mut fresh = Vec::new();
            refill(&rvq, st, &pool, &mut fresh, posted, &Counter::default());
        }
        let rx = VirtioRx {
            vq: rvq.clone(),
            shared: shared.clone(),
            pool: pool.clone(),
            mac: MacAddr([0x02, 0, 0, 0, 0, 0xbb]),
            csum: false,
            mrg,
            headroom: pool.headroom() as u32,
            posted,
            fresh: Vec::new(),
            counters: Arc::new(RxCounters::default()),
        };
        let tx = VirtioTx {
            vq: tvq.clone(),
            shared: shared.clone(),
            pool: pool.clone(),
            region: (mem.addr as u64, (mem.addr + mem.len) as u64),
            offloads: false,
            done: Vec::new(),
            copies: Arc::new(Counter::default()),
            counters: Arc::new(TxCounters::default()),
        };
        Rig { pool, rxd: FakeDev::new(&rvq), txd: FakeDev::new(&tvq), rx, tx, shared }
    }

    /// A small deterministic generator (xorshift), so failures replay.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    fn check_frames(got: &[Mbuf], want: &[Vec<u8>]) {
        assert_eq!(got.len(), want.len());
        for (m, w) in got.iter().zip(want) {
            assert_eq!(m.data(), &w[..], "frame {:?}", &w[14..18]);
        }
    }

    /// Receives many rounds (wrapping the ring and the 16-bit indices) with
    /// the device returning buffers in order, or shuffled within each round
    /// (without IN_ORDER); every frame arrives once, intact, in the order the
    /// device used them, and every buffer goes home.
    fn rx_rounds(in_order: bool, seed: u64) {
        let mut r = rig(in_order, 64, true, 1024, 32);
        let mut rng = Rng(seed);
        let mut seq = 0u32;
        let mut total = 0u64;
        for _ in 0..3000 {
            // Whatever is available, some of it.
            let mut taken = Vec::new();
            while let Some(b) = r.rxd.take() {
                taken.push(b);
            }
            let keep = rng.below(taken.len() + 1);
            // Buffers not used this round go back in front of the queue (the
            // device takes them next round; avail positions are not re-read).
            let back = taken.split_off(keep);
            r.rxd.next = r.rxd.next.wrapping_sub(back.len() as u16);
            if !in_order {
                for i in (1..taken.len()).rev() {
                    taken.swap(i, rng.below(i + 1));
                }
            }
            let mut want = Vec::new();
            for (k, &(id, addr, posted, flags)) in taken.iter().enumerate() {
                assert_eq!(flags, VRING_DESC_F_WRITE);
                let f = frame(60 + rng.below(1455), seq);
                seq += 1;
                let len = fill(addr, posted, &f, 1);
                r.rxd.put(k as u16, id, len);
                want.push(f);
            }
            r.rxd.advance(taken.len() as u16);
            let mut got = Vec::new();
            while got.len() < want.len() {
                let n = r.rx.rx_burst(&mut got, 1 + rng.below(40));
                assert!(n > 0 || got.len() == want.len(), "frames stuck in the ring");
            }
            check_frames(&got, &want);
            total += got.len() as u64;
            free_bulk(&mut got);
        }
        assert_eq!(r.rx.counters.packets.get(), total);
        assert_eq!(r.rx.counters.errors.get() + r.rx.counters.nombuf.get(), 0);
        assert!(total > 30_000, "{total}");
        let pool = r.pool.clone();
        drop(r);
        assert_eq!(pool.in_use(), 0, "every buffer home");
    }

    #[test]
    fn rx_in_order_delivers_every_frame_intact() {
        rx_rounds(true, 1);
    }

    #[test]
    fn rx_out_of_order_delivers_every_frame_intact() {
        rx_rounds(false, 2);
    }

    /// In order, a device may report a batch with one used entry for its last
    /// buffer (virtio 1.1, 2.7.9): the buffers before it were filled to the end.
    #[test]
    fn rx_in_order_batch_reported_by_its_last_entry() {
        let mut r = rig(true, 64, true, 1024, 32);
        // Full-length frames must fit the MTU.
        r.shared.mtu.store((r.pool.data_room() - 14) as u16, Ordering::Release);
        for round in 0..40u32 {
            let n = 1 + (round as usize * 7) % 20;
            let mut want = Vec::new();
            let mut last = (0, 0);
            for k in 0..n {
                let (id, addr, posted, _) = r.rxd.take().unwrap();
                let len = if k + 1 == n { 100 } else { posted as usize - HDR_LEN };
                let f = frame(len, round * 100 + k as u32);
                last = (id, fill(addr, posted, &f, 1));
                want.push(f);
            }
            // Stale entries the driver must not read: wrong ids everywhere.
            for k in 0..n as u16 {
                r.rxd.put(k, 0xffff, 1);
            }
            r.rxd.put(0, last.0, last.1);
            r.rxd.advance(n as u16);
            let mut got = Vec::new();
            // Small bursts, so a batch is split over calls.
            while got.len() < want.len() {
                assert!(r.rx.rx_burst(&mut got, 3) > 0, "round {round}: stuck");
            }
            check_frames(&got, &want);
            free_bulk(&mut got);
        }
        assert_eq!(r.rx.counters.errors.get(), 0);
        let pool = r.pool.clone();
        drop(r);
        assert_eq!(pool.in_use(), 0);
    }

    /// Used entries that break the order or name no buffer are counted as
    /// errors; nothing is handed up twice, nothing leaks, and the ring goes on.
    #[test]
    fn rx_bad_used_entries_are_errors_not_crashes() {
        for in_order in [true, false] {
            let mut r = rig(in_order, 16, true, 256, 0);
            let (id, addr, posted, _) = r.rxd.take().unwrap();
            let len = fill(addr, posted, &frame(64, 0), 1);
            // An id the device was never given (in order: ahead of every used one).
            r.rxd.put(0, 200, len);
            r.rxd.advance(1);
            let mut got = Vec::new();
            assert_eq!(r.rx.rx_burst(&mut got, 32), 0);
            assert_eq!(r.rx.counters.errors.get(), 1);
            // The same descriptor reported twice: the second one is an error.
            let (id2, addr, posted, _) = r.rxd.take().unwrap();
            let len = fill(addr, posted, &frame(64, 1), 1);
            r.rxd.put(0, id2, len);
            r.rxd.put(1, id2, len);
            r.rxd.advance(2);
            assert_eq!(r.rx.rx_burst(&mut got, 32), 1, "in_order={in_order}");
            assert_eq!(r.rx.counters.errors.get(), 2, "in_order={in_order}");
            let _ = id;
            // And the ring still works, from where the used index says the
            // device is (in order, the third position counts as used: its
            // buffer was freed, and the device must not take it).
            r.rxd.next = r.rxd.used;
            let (id3, addr, posted, _) = r.rxd.take().unwrap();
            let f = frame(80, 2);
            let len = fill(addr, posted, &f, 1);
            r.rxd.put(0, id3, len);
            r.rxd.advance(1);
            let mut more = Vec::new();
            assert_eq!(r.rx.rx_burst(&mut more, 32), 1, "in_order={in_order}");
            check_frames(&more, &[f]);
            free_bulk(&mut got);
            free_bulk(&mut more);
            let pool = r.pool.clone();
            drop(r);
            assert_eq!(pool.in_use(), 0, "in_order={in_order}");
        }
    }

    /// A frame the device spread over two buffers (`num_buffers` = 2) is
    /// dropped as one error, both buffers freed; the next frame is fine.
    #[test]
    fn rx_frame_over_two_buffers_is_one_error() {
        for in_order in [true, false] {
            let mut r = rig(in_order, 16, true, 256, 0);
            let (id0, a0, p0, _) = r.rxd.take().unwrap();
            let (id1, a1, p1, _) = r.rxd.take().unwrap();
            let (id2, a2, p2, _) = r.rxd.take().unwrap();
            let big = frame(p0 as usize - HDR_LEN, 9);
            r.rxd.put(0, id0, fill(a0, p0, &big, 2));
            r.rxd.put(1, id1, fill(a1, p1, &frame(100, 10), 0));
            let f = frame(70, 11);
            r.rxd.put(2, id2, fill(a2, p2, &f, 1));
            r.rxd.advance(3);
            let mut got = Vec::new();
            assert_eq!(r.rx.rx_burst(&mut got, 32), 1);
            check_frames(&got, &[f]);
            assert_eq!(r.rx.counters.errors.get(), 1);
            free_bulk(&mut got);
            let pool = r.pool.clone();
            drop(r);
            assert_eq!(pool.in_use(), 0);
        }
    }

    /// Sends many bursts; the device returns buffers one entry each (shuffled
    /// without IN_ORDER) or, in order, sometimes one entry per batch. Every
    /// frame reaches the device once, intact, in order; every buffer goes home.
    fn tx_rounds(in_order: bool, batch_entries: bool, seed: u64) {
        let mut r = rig(in_order, 64, true, 1024, 32);
        let mut rng = Rng(seed);
        let (mut seq, mut seen) = (0u32, 0u32);
        let mut pending: Vec<(u16, u32)> = Vec::new();
        for _ in 0..3000 {
            let n = 1 + rng.below(40);
            let mut burst: Vec<Mbuf> = (0..n)
                .map(|_| {
                    let mut m = r.pool.alloc().unwrap();
                    m.extend_from_slice(&frame(60 + rng.below(1455), seq)).unwrap();
                    seq += 1;
                    m
                })
                .collect();
            let sent = r.tx.tx_burst(&mut burst);
            seq -= burst.len() as u32;
            free_bulk(&mut burst);
            assert!(sent > 0 || pending.len() == 64, "nothing sent with {} in flight", pending.len());
            // The device reads what was posted, in order.
            while let Some((id, addr, len, flags)) = r.txd.take() {
                assert_eq!(flags, 0);
                let f = sent_frame(addr, len);
                assert_eq!(u32::from_be_bytes(f[14..18].try_into().unwrap()), seen);
                assert_eq!(f, frame(f.len(), seen));
                seen += 1;
                pending.push((id, len));
            }
            // ... and gives some of them back.
            let k = rng.below(pending.len() + 1);
            let mut back: Vec<(u16, u32)> = pending.drain(..k).collect();
            if in_order && batch_entries && !back.is_empty() {
                let (id, len) = *back.last().unwrap();
                r.txd.put(0, id, len);
            } else {
                if !in_order {
                    for i in (1..back.len()).rev() {
                        back.swap(i, rng.below(i + 1));
                    }
                }
                for (j, &(id, len)) in back.iter().enumerate() {
                    r.txd.put(j as u16, id, len);
                }
            }
            r.txd.advance(back.len() as u16);
        }
        assert_eq!(seen, seq);
        assert_eq!(r.tx.counters.packets.get(), seq as u64);
        assert!(seq > 20_000, "{seq}");
        let pool = r.pool.clone();
        drop(r);
        assert_eq!(pool.in_use(), 0, "every buffer home");
    }

    #[test]
    fn tx_in_order_one_entry_per_buffer() {
        tx_rounds(true, false, 3);
    }

    #[test]
    fn tx_in_order_one_entry_per_batch() {
        tx_rounds(true, true, 4);
    }

    #[test]
    fn tx_out_of_order() {
        tx_rounds(false, false, 5);
    }

    /// A fixed workload for instruction counts of the data path
    /// (`VU_ITERS=20000 valgrind --tool=callgrind --toggle-collect='*rx_burst*'`
    /// on the test binary with `--exact drivers::virtio_user::tests::data_path_workload`);
    /// as a test, a short run of it. Bursts of 32 through both rings, the device
    /// answering one entry per buffer.
    #[test]
    fn data_path_workload() {
        let iters: usize = std::env::var("VU_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
        let modes = match std::env::var("VU_IN_ORDER").as_deref() {
            Ok("1") => vec![true],
            Ok("0") => vec![false],
            _ => vec![true, false],
        };
        for in_order in modes {
            let mut r = rig(in_order, 256, true, 4096, 256);
            let template = frame(64, 0);
            let mut got = Vec::with_capacity(64);
            let mut burst = Vec::with_capacity(64);
            for _ in 0..iters {
                for k in 0..32 {
                    let (id, addr, posted, _) = r.rxd.take().unwrap();
                    let len = fill(addr, posted, &template, 1);
                    r.rxd.put(k, id, len);
                }
                r.rxd.advance(32);
                assert_eq!(r.rx.rx_burst(&mut got, 32), 32);
                std::mem::swap(&mut got, &mut burst);
                assert_eq!(r.tx.tx_burst(&mut burst), 32);
                let mut k = 0;
                while let Some((id, _, len, _)) = r.txd.take() {
                    r.txd.put(k, id, len);
                    k += 1;
                }
                r.txd.advance(k);
            }
        }
    }
}
