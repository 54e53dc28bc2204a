//! One XSK (AF_XDP socket) per queue: its UMEM, which is a [`Mempool`]'s
//! memory, its four rings, and the bookkeeping of which frames the kernel
//! holds.
//!
//! # The UMEM is the pool
//! The pool is made with `stride == frame_size` (a power of two: the UMEM's
//! aligned-chunk mode), headroom [`XDP_PACKET_HEADROOM`] and data room
//! `frame_size - 128 - 256`, so frame `i` of the UMEM *is* pool object `i`:
//!
//! ```text
//! chunk i:  [ MbufHdr 128 | XDP_PACKET_HEADROOM 256 | data ... ]   = frame_size bytes
//!           ^ UMEM address i * frame_size
//!                          ^ the kernel's data_hard_start (UMEM headroom = 128)
//!                                                     ^ where the kernel writes a frame
//! ```
//!
//! The UMEM is registered with a headroom of 128 bytes, so the kernel never
//! writes the `MbufHdr` in front of each chunk; it places a received frame at
//! `chunk + 128 + 256`, which is exactly the mbuf's data at the pool's
//! headroom. Receiving is therefore: read the descriptor, find the chunk,
//! set the window, hand the `Mbuf` up: no copy. Transmitting an mbuf of this
//! pool is the reverse (its data address is the descriptor); an mbuf of any
//! other pool is copied into a frame of this one first.
//!
//! # Who owns a frame
//! A frame is either the pool's (free), an `Mbuf`'s, or the kernel's (posted
//! on the fill ring and not yet received, or on the tx ring and not yet
//! completed). The receive and transmit sides each keep a bitmap of the frames
//! they gave the kernel; a bit is set when an address is posted and cleared
//! when it comes back. When the socket closes, the kernel gives up the UMEM
//! without returning those frames, so the bits are how they get back to the
//! pool ([`Xsk`]'s `Drop`). In zero-copy mode a device may still be writing
//! into them briefly after the close, so there we leave them out: the pool
//! then refuses to free its memory (it leaks with a warning) rather than risk
//! a late DMA into reused memory.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Mutex;

use super::ring::Ring;
use super::{Options, ZeroCopy};
use crate::drivers::netdev::io_err;
use crate::mbuf::MbufHdr;
use crate::mempool::PoolCore;
use crate::{Mbuf, Mempool, MempoolConfig, PmdError};

/// The `MbufHdr` at the start of each chunk: the UMEM headroom the kernel skips.
pub(super) const HDR: usize = std::mem::size_of::<MbufHdr>();
/// Room the kernel leaves in front of a received frame (`XDP_PACKET_HEADROOM`).
pub(super) const XDP_PACKET_HEADROOM: usize = 256;
/// Per-core cache of the UMEM pool, at most.
const POOL_CACHE: usize = 256;

/// How long a bind retries a queue that is still busy (see `Xsk::open`).
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// A queue's UMEM: the pool and where its frames are.
pub(super) struct Umem {
    pub(super) pool: Mempool,
    core: NonNull<PoolCore>,
    base: NonNull<u8>,
    frames: usize,
    shift: u32,
}

// SAFETY: `base` and `core` point into the pool, which is `Send + Sync` and
// kept alive by `pool`; `Umem` only computes addresses from them.
unsafe impl Send for Umem {}
// SAFETY: as above.
unsafe impl Sync for Umem {}

impl Umem {
    fn new(name: &str, opts: &Options) -> Result<Umem, PmdError> {
        let fs = opts.frame_size as usize;
        let count = opts.num_frames as usize;
        let cache = POOL_CACHE.min(count / 8);
        let cfg = MempoolConfig::new(name, count, fs - HDR - XDP_PACKET_HEADROOM, XDP_PACKET_HEADROOM, cache);
        let pool = Mempool::new(&cfg)?;
        let r = pool.native_region().expect("a native pool has a region");
        assert_eq!(r.stride, fs, "pool objects are exactly one UMEM chunk");
        let core = pool.core_ptr();
        Ok(Umem { pool, core, base: r.base, frames: count, shift: fs.trailing_zeros() })
    }

    fn len(&self) -> usize {
        self.frames << self.shift
    }

    /// Whether `m` is a buffer of this UMEM (so it can be sent without a copy).
    #[inline(always)]
    pub(super) fn owns(&self, m: &Mbuf) -> bool {
        m.pool_ptr() == self.core
    }

    /// Takes an mbuf of this UMEM apart: its frame index, and the UMEM address
    /// of its first data byte.
    #[inline(always)]
    pub(super) fn post(&self, m: Mbuf) -> (usize, u64) {
        let (hdr, off, _) = m.into_external();
        let chunk = hdr.as_ptr() as usize - self.base.as_ptr() as usize;
        debug_assert!(chunk < self.len() && chunk & ((1 << self.shift) - 1) == 0);
        (chunk >> self.shift, (chunk + HDR + off as usize) as u64)
    }

    /// The frame an address the kernel returned points into, if inside the UMEM.
    #[inline(always)]
    pub(super) fn frame_of(&self, addr: u64) -> Option<usize> {
        let i = (addr >> self.shift) as usize;
        (i < self.frames).then_some(i)
    }

    /// The mbuf of frame `i` with its window at `addr`/`len`; `None` (and
    /// the frame freed) if the window does not fit the buffer.
    ///
    /// # Safety
    /// Frame `i` is owned by the caller (the kernel gave it back and no
    /// handle to it exists).
    #[inline(always)]
    pub(super) unsafe fn take(&self, i: usize, addr: u64, len: u32) -> Option<Mbuf> {
        let off = (addr as usize & ((1 << self.shift) - 1)).wrapping_sub(HDR);
        let hdr = self.hdr(i);
        // SAFETY: a valid header of our pool (see the module docs).
        let buf_len = unsafe { (*hdr.as_ptr()).buf_len } as usize;
        if off > buf_len || len as usize > buf_len - off {
            // SAFETY: the caller owns the frame; the window is irrelevant to freeing.
            drop(unsafe { Mbuf::from_hdr(hdr, 0, 0) });
            return None;
        }
        // SAFETY: owned by the caller, window checked against the buffer.
        Some(unsafe { Mbuf::from_hdr(hdr, off as u32, len) })
    }

    /// The mbuf of frame `i`, for freeing (completions, close).
    ///
    /// # Safety
    /// As for [`take`](Self::take).
    #[inline(always)]
    pub(super) unsafe fn reclaim(&self, i: usize) -> Mbuf {
        // SAFETY: forwarded caller guarantee; the empty window always fits.
        unsafe { Mbuf::from_hdr(self.hdr(i), 0, 0) }
    }

    fn hdr(&self, i: usize) -> NonNull<MbufHdr> {
        // SAFETY: `i < frames`, so the chunk is inside the region.
        unsafe { NonNull::new_unchecked(self.base.as_ptr().add(i << self.shift).cast()) }
    }
}

/// Frames one side of a queue has given the kernel (see the module docs).
pub(super) struct Owned(Vec<u64>);

impl Owned {
    fn new(frames: usize) -> Owned {
        Owned(vec![0; frames.div_ceil(64)])
    }

    #[inline(always)]
    pub(super) fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    /// Clears bit `i`; whether it was set (false: the kernel returned a frame
    /// it did not have, which is counted and ignored).
    #[inline(always)]
    pub(super) fn clear(&mut self, i: usize) -> bool {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        let was = self.0[w] & b != 0;
        self.0[w] &= !b;
        was
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0
            .iter()
            .enumerate()
            .flat_map(|(w, &bits)| (0..64).filter(move |b| bits & (1 << b) != 0).map(move |b| w * 64 + b))
    }
}

/// The receive side: rx and fill rings.
pub(super) struct RxSide {
    pub(super) rx: Ring<libc::xdp_desc>,
    pub(super) fill: Ring<u64>,
    pub(super) owned: Owned,
}

/// The transmit side: tx and completion rings.
pub(super) struct TxSide {
    pub(super) tx: Ring<libc::xdp_desc>,
    pub(super) comp: Ring<u64>,
    pub(super) owned: Owned,
}

/// One AF_XDP socket bound to one queue. Its handles borrow the sides (and
/// put them back when dropped); the last `Arc` closes it.
pub(super) struct Xsk {
    fd: Option<OwnedFd>,
    pub(super) umem: Umem,
    pub(super) queue: u16,
    pub(super) zero_copy: bool,
    pub(super) rx_home: Mutex<Option<RxSide>>,
    pub(super) tx_home: Mutex<Option<TxSide>>,
}

fn sockopt<T>(fd: &OwnedFd, level: libc::c_int, opt: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live `T` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
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

fn getsockopt<T: Copy>(fd: i32, opt: libc::c_int, val: &mut T) -> io::Result<()> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `val`/`len` are valid for writes of a `T` and its length.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_XDP, opt, (val as *mut T).cast(), &mut len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Xsk {
    /// Creates the socket for `queue` of `ifname`, registers a fresh UMEM
    /// pool, maps the rings, binds, and posts `rx_size` frames to the fill ring.
    pub(super) fn open(ifname: &str, ifindex: u32, queue: u16, opts: &Options) -> Result<Xsk, PmdError> {
        let ctx = |what: &str| format!("af_xdp '{ifname}' queue {queue}: {what}");
        // SAFETY: socket(2); the result is checked and then owned.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let e = io::Error::last_os_error();
            let hint = match e.raw_os_error() {
                Some(libc::EAFNOSUPPORT) => " (kernel built without CONFIG_XDP_SOCKETS)",
                Some(libc::EPERM) => " (needs CAP_NET_RAW)",
                _ => "",
            };
            return Err(io_err(ctx(&format!("socket(AF_XDP){hint}")))(e));
        }
        // SAFETY: fresh descriptor, owned from here.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Umem::new(&format!("af_xdp-{ifname}-q{queue}"), opts)?;
        let reg = libc::xdp_umem_reg {
            addr: umem.base.as_ptr() as u64,
            len: umem.len() as u64,
            chunk_size: opts.frame_size,
            headroom: HDR as u32,
            flags: 0,
            tx_metadata_len: 0,
        };
        sockopt(&fd, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg).map_err(io_err(ctx("XDP_UMEM_REG")))?;
        for (opt, n, what) in [
            (libc::XDP_UMEM_FILL_RING, opts.rx_size, "fill ring"),
            (libc::XDP_UMEM_COMPLETION_RING, opts.tx_size, "completion ring"),
            (libc::XDP_RX_RING, opts.rx_size, "rx ring"),
            (libc::XDP_TX_RING, opts.tx_size, "tx ring"),
        ] {
            sockopt(&fd, libc::SOL_XDP, opt, &n).map_err(io_err(ctx(what)))?;
        }
        // SAFETY: all-zero is a valid xdp_mmap_offsets.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        getsockopt(fd.as_raw_fd(), libc::XDP_MMAP_OFFSETS, &mut off).map_err(io_err(ctx("XDP_MMAP_OFFSETS")))?;
        let mapped = |what: &str| io_err(ctx(&format!("mmap of the {what}")));
        let fill =
            Ring::map(&fd, &off.fr, opts.rx_size, libc::XDP_UMEM_PGOFF_FILL_RING).map_err(mapped("fill ring"))?;
        let comp = Ring::map(&fd, &off.cr, opts.tx_size, libc::XDP_UMEM_PGOFF_COMPLETION_RING)
            .map_err(mapped("completion ring"))?;
        let rx = Ring::map(&fd, &off.rx, opts.rx_size, libc::XDP_PGOFF_RX_RING as u64).map_err(mapped("rx ring"))?;
        let tx = Ring::map(&fd, &off.tx, opts.tx_size, libc::XDP_PGOFF_TX_RING as u64).map_err(mapped("tx ring"))?;
        if opts.busy_poll > 0 {
            let one: libc::c_int = 1;
            let usecs = opts.busy_poll as libc::c_int;
            let budget: libc::c_int = 64;
            for (opt, v, what) in [
                (SO_PREFER_BUSY_POLL, &one, "SO_PREFER_BUSY_POLL"),
                (SO_BUSY_POLL, &usecs, "SO_BUSY_POLL"),
                (SO_BUSY_POLL_BUDGET, &budget, "SO_BUSY_POLL_BUDGET"),
            ] {
                sockopt(&fd, libc::SOL_SOCKET, opt, v).map_err(io_err(ctx(what)))?;
            }
        }
        let mut flags = match opts.zero_copy {
            ZeroCopy::Auto => 0,
            ZeroCopy::On => libc::XDP_ZEROCOPY,
            ZeroCopy::Off => libc::XDP_COPY,
        };
        if opts.need_wakeup {
            flags |= libc::XDP_USE_NEED_WAKEUP;
        }
        let sxdp = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue as u32,
            sxdp_shared_umem_fd: 0,
        };
        // A socket we closed just before (a reconfiguration) keeps its queue
        // until the kernel's deferred release runs, so EBUSY is retried for a
        // while before it is reported as another user's socket.
        let deadline = std::time::Instant::now() + BUSY_WAIT;
        let rc = loop {
            // SAFETY: `sxdp` is a valid sockaddr_xdp and its size is passed.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sxdp as *const libc::sockaddr_xdp).cast(),
                    std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            };
            let busy = rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EBUSY);
            if !busy || std::time::Instant::now() >= deadline {
                break rc;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EBUSY) => PmdError::State {
                    port: ifname.to_string(),
                    reason: format!("queue {queue} is busy: another AF_XDP socket is bound to it"),
                },
                Some(libc::EOPNOTSUPP) | Some(libc::EPROTONOSUPPORT) if opts.zero_copy == ZeroCopy::On => {
                    PmdError::Unsupported {
                        port: ifname.to_string(),
                        what: format!(
                            "zero_copy=on: the driver refused AF_XDP zero-copy on queue {queue} ({e}); use \
                             zero_copy=auto or zero_copy=off for copy mode"
                        ),
                    }
                }
                _ => io_err(ctx("bind"))(e),
            });
        }
        // SAFETY: all-zero is a valid xdp_options.
        let mut o: libc::xdp_options = unsafe { std::mem::zeroed() };
        getsockopt(fd.as_raw_fd(), libc::XDP_OPTIONS, &mut o).map_err(io_err(ctx("XDP_OPTIONS")))?;
        let zero_copy = o.flags & libc::XDP_OPTIONS_ZEROCOPY != 0;
        let mut rxs = RxSide { rx, fill, owned: Owned::new(umem.frames) };
        let mut scratch = Vec::new();
        if refill(&mut rxs, &umem, &mut scratch, opts.rx_size) < opts.rx_size {
            return Err(PmdError::Exhausted { pool: umem.pool.name().to_string(), wanted: opts.rx_size as usize });
        }
        let txs = TxSide { tx, comp, owned: Owned::new(umem.frames) };
        Ok(Xsk { fd: Some(fd), umem, queue, zero_copy, rx_home: Mutex::new(Some(rxs)), tx_home: Mutex::new(Some(txs)) })
    }

    pub(super) fn raw_fd(&self) -> i32 {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// The kernel's counters for this socket (`XDP_STATISTICS`).
    pub(super) fn statistics(&self) -> libc::xdp_statistics {
        // SAFETY: all-zero is a valid xdp_statistics.
        let mut s: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let _ = getsockopt(self.raw_fd(), libc::XDP_STATISTICS, &mut s);
        s
    }

    /// Wakes the kernel's receive processing (`recvfrom(MSG_DONTWAIT)`), for
    /// `need_wakeup` and busy polling.
    #[inline]
    pub(super) fn kick_rx(&self) {
        // SAFETY: recvfrom with no buffer on our socket: the kernel only runs
        // its receive path (and busy-polls); nothing is written to user memory.
        unsafe {
            libc::recvfrom(
                self.raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Tells the kernel to process the tx ring; false if it asked us to try
    /// again (`EAGAIN`/`EBUSY`/`ENOBUFS`: its per-call batch was used up or
    /// the device queue is full).
    #[inline]
    pub(super) fn kick_tx(&self) -> bool {
        // SAFETY: sendto with no buffer and no address just kicks the tx ring.
        let r = unsafe { libc::sendto(self.raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0) };
        r >= 0
    }
}

/// Posts up to `want` fresh frames to the fill ring, as many as it has room
/// for and the pool can give, in one bulk allocation; returns how many.
pub(super) fn refill(side: &mut RxSide, umem: &Umem, scratch: &mut Vec<Mbuf>, want: u32) -> u32 {
    let n = side.fill.free(want).min(want);
    if n == 0 {
        return 0;
    }
    scratch.clear();
    let n = n as usize;
    if umem.pool.alloc_bulk(scratch, n).is_err() {
        // The pool is low (the application holds frames): take what there is.
        while scratch.len() < n {
            match umem.pool.alloc() {
                Ok(m) => scratch.push(m),
                Err(_) => break,
            }
        }
    }
    let n = scratch.len();
    for m in scratch.drain(..) {
        let (i, addr) = umem.post(m);
        side.owned.set(i);
        // The chunk's address: the kernel places the frame at its own offset.
        side.fill.push(addr & !((1u64 << umem.shift) - 1));
    }
    side.fill.submit();
    n as u32
}

impl Drop for Xsk {
    fn drop(&mut self) {
        // Close first: the kernel unbinds and lets go of the UMEM.
        drop(self.fd.take());
        let rx = self.rx_home.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        let tx = self.tx_home.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if self.zero_copy {
            // See the module docs: a device may still DMA into these.
            return;
        }
        for owned in [rx.map(|s| s.owned), tx.map(|s| s.owned)].into_iter().flatten() {
            for i in owned.iter() {
                // SAFETY: frame `i` was the kernel's, the socket is closed, so
                // nobody else has it; the window is irrelevant to freeing.
                drop(unsafe { self.umem.reclaim(i) });
            }
        }
    }
}
