//! Fixed-size pools of packet buffers with per-core caches.
//!
//! A [`Mempool`] holds `count` buffers of `headroom + data_room` bytes, all chosen
//! by the caller and fixed at creation (as `rte_pktmbuf_pool_create` does). It never
//! grows: running out is an [`PmdError::Exhausted`] error that drivers count as
//! `rx_nombuf` and recover from once buffers come back.
//!
//! # Per-core caches
//! A shared free list behind a mutex would cost a lock round trip per burst and
//! bounce its cache line between cores. Like DPDK, each thread gets a private cache
//! of up to `cache_size` buffers per pool (refilled from and flushed to the shared
//! list in bulk, `cache_size` at a time), so the steady state of a poll loop that
//! allocates and frees on one core never touches shared state. A thread is given a
//! cache slot (0..[`MAX_LCORE_SLOTS`]) the first time it uses any pool and returns
//! it when it exits; the next thread to take that slot inherits the cached buffers,
//! so nothing is stranded. Threads beyond the slot limit use the shared list.
//!
//! As in DPDK, buffers sitting in another core's cache cannot be allocated here, so
//! pools should be sized `count >= cores * cache_size * 1.5 + in flight`.
//!
//! # Shared memory for vhost-user back ends
//! [`Mempool::new_shared`] lays the pool out exactly as [`Mempool::new`] does, but
//! in a `memfd` mapped `MAP_SHARED` instead of the process heap, and keeps the
//! file descriptor ([`Mempool::shared_memory`]). The virtio-user driver hands that
//! descriptor to its vhost-user back end (`VHOST_USER_SET_MEM_TABLE`), which maps
//! the same pages and then reads and writes packet buffers in place: zero copy
//! without hugepages. It is a separate constructor, not a flag on every pool,
//! because only a port that shares memory with another process needs it; the
//! performance is the same (both are 4 KiB pages), but a shared pool is a file
//! another process can map, which a caller should ask for knowingly.
//!
//! # Lifetime
//! Buffers point at their pool, and do not hold a reference count (an atomic
//! increment per packet is too expensive). Instead the pool's memory is released
//! when the last `Mempool` handle is dropped *and* every buffer is home; if buffers
//! are still out then, the pool is deliberately leaked (and a warning printed), so a
//! late free is never a use-after-free. To make the "every buffer is home" check
//! sound, a free publishes its buffer in `available()` as its very last access to the
//! pool, and `available()` may only under-count in between (see `free_run`).

use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crossbeam_utils::CachePadded;

use crate::mbuf::{as_hdr_ptrs, Mbuf, MbufHdr, MbufMeta, Rearm};
use crate::PmdError;

/// How many threads can have a private cache per pool at once.
pub const MAX_LCORE_SLOTS: usize = 128;
/// The largest per-core cache size accepted (as `RTE_MEMPOOL_CACHE_MAX_SIZE`).
pub const MAX_CACHE_SIZE: usize = 512;
/// Headroom most callers want: room for Ethernet + VLAN + IPv6 + TCP with options
/// (same value as `RTE_PKTMBUF_HEADROOM`).
pub const DEFAULT_HEADROOM: usize = 128;
/// Data room for standard 1500-byte MTU frames (as `RTE_MBUF_DEFAULT_DATAROOM`).
pub const DEFAULT_DATA_ROOM: usize = 2048;

/// Everything needed to create a pool. All fields are required: the caller states
/// the pool's size, buffer size and cache size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Name, for messages and stats.
    pub name: String,
    /// Number of buffers.
    pub count: usize,
    /// Bytes of packet data each buffer can hold after the headroom.
    pub data_room: usize,
    /// Bytes reserved in front of the data for headers prepended later.
    pub headroom: usize,
    /// Per-core cache size (0 disables caches).
    pub cache_size: usize,
}

impl MempoolConfig {
    /// A config with every value given explicitly.
    pub fn new(name: impl Into<String>, count: usize, data_room: usize, headroom: usize, cache_size: usize) -> Self {
        MempoolConfig { name: name.into(), count, data_room, headroom, cache_size }
    }
}

/// Operations of a pool whose memory belongs to someone else (the DPDK driver's
/// `rte_mempool`). See the `mbuf` module docs for the zero-copy design.
///
/// # Safety
/// `free` receives only headers that this pool's `alloc_bulk` (or the driver's
/// receive path) produced through [`Mbuf::from_external`], each exactly once.
pub unsafe trait ExternalPool: Send + Sync {
    /// Allocates `n` buffers (all or nothing) and appends them to `out`; each must
    /// be built with [`Mbuf::from_external`] using `pool`.
    fn alloc_bulk(&self, pool: &Mempool, out: &mut Vec<Mbuf>, n: usize) -> Result<(), PmdError>;
    /// Returns one buffer.
    ///
    /// # Safety
    /// `hdr` came from this pool and is not used again.
    unsafe fn free(&self, hdr: NonNull<MbufHdr>);
    /// Buffers currently free.
    fn available(&self) -> usize;
}

struct Slot {
    objs: UnsafeCell<Vec<NonNull<MbufHdr>>>,
    len: AtomicUsize,
}

struct Native {
    region: NonNull<u8>,
    layout: Layout,
    /// The memfd behind `region` for shared pools (then `region` is an mmap of
    /// `layout.size()` bytes rounded up to pages, not a heap allocation).
    shm: Option<std::os::fd::OwnedFd>,
    ring: Mutex<Vec<NonNull<MbufHdr>>>,
    /// Mirror of `ring.len()` readable without the lock (see module docs).
    ring_len: AtomicUsize,
    slots: Box<[CachePadded<Slot>]>,
}

enum Backing {
    Native(Native),
    External(Box<dyn ExternalPool>),
}

/// The shared state of a pool. Buffers point here.
pub struct PoolCore {
    name: String,
    count: usize,
    data_room: usize,
    headroom: u32,
    cache_size: usize,
    flush_threshold: usize,
    handles: AtomicUsize,
    alloc_failures: AtomicU64,
    backing: Backing,
}

// SAFETY: the region and free lists are only reached through the mutex, the atomics,
// or a cache slot; a slot is used by exactly one thread at a time (the thread holding
// that slot index, see `LcoreSlot`), so no two threads ever alias a slot's `Vec`.
unsafe impl Sync for PoolCore {}
// SAFETY: as above; nothing in the pool is tied to the thread that created it.
unsafe impl Send for PoolCore {}

/// A handle to a pool of packet buffers. Cloning is cheap (a counter increment).
pub struct Mempool {
    core: NonNull<PoolCore>,
}

// SAFETY: `PoolCore` is `Sync`; the handle is just a counted pointer to it.
unsafe impl Send for Mempool {}
// SAFETY: as above.
unsafe impl Sync for Mempool {}

/// A pool's buffer memory as a file another process can map (see
/// [`Mempool::new_shared`]). Valid while the pool handle it came from is alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedMemory {
    /// The memfd; the mapping starts at offset 0 of it.
    pub fd: std::os::fd::RawFd,
    /// Where the memory is mapped in this process.
    pub addr: usize,
    /// Bytes mapped (a multiple of the page size).
    pub len: usize,
}

/// Where a native pool's objects live (see [`Mempool::native_region`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NativeRegion {
    /// The first object (4096-aligned).
    pub(crate) base: NonNull<u8>,
    /// Bytes of the region (at least `count * stride`).
    pub(crate) len: usize,
    /// Bytes from one object to the next (a multiple of 64).
    pub(crate) stride: usize,
}

/// Creates a memfd named `name` of `len` bytes and maps it shared, read-write
/// and populated (also the virtio-user driver's rings). Errors say `what` it was for.
pub(crate) fn map_shared(name: &str, what: &str, len: usize) -> Result<(NonNull<u8>, std::os::fd::OwnedFd), PmdError> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let io = |call: &str| PmdError::Io {
        context: format!("{what}: {call} ({len} bytes of shared memory)"),
        source: std::io::Error::last_os_error(),
    };
    let cname = std::ffi::CString::new(name.replace('\0', "_")).unwrap_or_else(|_| c"pmd".to_owned());
    // SAFETY: memfd_create with a NUL-terminated name; the result is checked.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io("memfd_create"));
    }
    // SAFETY: `fd` is a fresh descriptor that nobody else owns.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: plain syscall on our descriptor.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } < 0 {
        return Err(io("ftruncate"));
    }
    // SAFETY: a new shared mapping of the whole file; no existing memory is affected.
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
        return Err(io("mmap"));
    }
    Ok((NonNull::new(p.cast()).expect("mmap returned a non-null address"), fd))
}

impl Mempool {
    /// Creates a native pool. Every value in `cfg` is validated and an error names
    /// the field that is wrong.
    pub fn new(cfg: &MempoolConfig) -> Result<Mempool, PmdError> {
        Self::create(cfg, false)
    }

    /// Creates a native pool whose buffers live in a `memfd` shared mapping, so a
    /// vhost-user back end can map them (see the module docs). Same layout and
    /// validation as [`Mempool::new`].
    pub fn new_shared(cfg: &MempoolConfig) -> Result<Mempool, PmdError> {
        Self::create(cfg, true)
    }

    /// The pool's memory as a shareable file, for pools made by
    /// [`Mempool::new_shared`]; `None` for heap and external pools.
    pub fn shared_memory(&self) -> Option<SharedMemory> {
        use std::os::fd::AsRawFd;
        match &self.core().backing {
            Backing::Native(Native { region, layout, shm: Some(fd), .. }) => {
                Some(SharedMemory { fd: fd.as_raw_fd(), addr: region.as_ptr() as usize, len: layout.size() })
            }
            _ => None,
        }
    }

    /// A native pool's memory as one region of equal objects: object `i`
    /// (its `MbufHdr` first, then headroom and data room) starts at
    /// `base + i * stride`, for `i < count`. `None` for external pools. The
    /// AF_XDP driver registers this region as its UMEM, so the kernel writes
    /// received frames straight into pool buffers (additive, crate-internal).
    pub(crate) fn native_region(&self) -> Option<NativeRegion> {
        match &self.core().backing {
            Backing::Native(n) => Some(NativeRegion {
                base: n.region,
                len: n.layout.size(),
                stride: std::mem::size_of::<MbufHdr>()
                    + (self.core().headroom as usize + self.core().data_room).next_multiple_of(64),
            }),
            Backing::External(_) => None,
        }
    }

    fn create(cfg: &MempoolConfig, shared: bool) -> Result<Mempool, PmdError> {
        let bad = |field: &'static str, reason: String| PmdError::Config { field, reason };
        if cfg.count == 0 {
            return Err(bad("count", "a pool needs at least one buffer".into()));
        }
        if cfg.data_room == 0 {
            return Err(bad("data_room", "must be at least 1 byte".into()));
        }
        let buf_len = cfg.headroom + cfg.data_room;
        if buf_len > u16::MAX as usize {
            return Err(bad(
                "data_room",
                format!("headroom + data_room = {buf_len} exceeds 65535 (a buffer's length is 16 bits, as in DPDK)"),
            ));
        }
        if cfg.cache_size > MAX_CACHE_SIZE {
            return Err(bad("cache_size", format!("{} exceeds the maximum {MAX_CACHE_SIZE}", cfg.cache_size)));
        }
        if cfg.cache_size * 3 / 2 > cfg.count {
            return Err(bad(
                "cache_size",
                format!("{} is too large for {} buffers (needs cache_size * 1.5 <= count)", cfg.cache_size, cfg.count),
            ));
        }
        let stride = std::mem::size_of::<MbufHdr>() + buf_len.next_multiple_of(64);
        let total =
            stride.checked_mul(cfg.count).ok_or_else(|| bad("count", "count * buffer size overflows".into()))?;
        // Shared pools are whole pages of a file.
        let total = if shared { total.next_multiple_of(4096) } else { total };
        let layout =
            Layout::from_size_align(total, 4096).map_err(|e| bad("count", format!("cannot lay out the pool: {e}")))?;
        let (region, shm) = if shared {
            // A fresh memfd reads as zeroes, like `alloc_zeroed`.
            let (p, fd) = map_shared(&format!("pmd-pool-{}", cfg.name), &format!("mempool '{}'", cfg.name), total)?;
            (p, Some(fd))
        } else {
            // SAFETY: `layout` has a non-zero size (count >= 1, stride >= 64).
            let region = unsafe { std::alloc::alloc_zeroed(layout) };
            let region = NonNull::new(region)
                .ok_or_else(|| PmdError::NoMemory { what: format!("mempool '{}' ({total} bytes)", cfg.name) })?;
            (region, None)
        };

        let slots = (0..MAX_LCORE_SLOTS)
            .map(|_| CachePadded::new(Slot { objs: UnsafeCell::new(Vec::new()), len: AtomicUsize::new(0) }))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        let core = Box::new(PoolCore {
            name: cfg.name.clone(),
            count: cfg.count,
            data_room: cfg.data_room,
            headroom: cfg.headroom as u32,
            cache_size: cfg.cache_size,
            flush_threshold: cfg.cache_size * 3 / 2,
            handles: AtomicUsize::new(1),
            alloc_failures: AtomicU64::new(0),
            backing: Backing::Native(Native {
                region,
                layout,
                shm,
                ring: Mutex::new(Vec::with_capacity(cfg.count)),
                ring_len: AtomicUsize::new(cfg.count),
                slots,
            }),
        });
        let core = NonNull::from(Box::leak(core));
        {
            // SAFETY: just created; nobody else sees it yet.
            let c = unsafe { core.as_ref() };
            let Backing::Native(n) = &c.backing else { unreachable!() };
            let mut ring = n.ring.lock().unwrap_or_else(|e| e.into_inner());
            // Push in reverse so the first allocations get the lowest addresses.
            for i in (0..cfg.count).rev() {
                // SAFETY: `i * stride + stride <= total`, inside the region.
                let obj = unsafe { region.as_ptr().add(i * stride) };
                // SAFETY: 64-aligned (region 4096-aligned, stride multiple of 64),
                // inside the region, and not yet handed to anyone.
                let hdr = unsafe {
                    let hdr = obj as *mut MbufHdr;
                    let buf = NonNull::new_unchecked(obj.add(std::mem::size_of::<MbufHdr>()));
                    hdr.write(MbufHdr::native(buf, buf_len as u16, native_word(core), cfg.headroom as u16));
                    NonNull::new_unchecked(hdr)
                };
                ring.push(hdr);
            }
        }
        Ok(Mempool { core })
    }

    /// Creates a pool backed by external memory (see [`ExternalPool`]).
    pub fn external(
        name: impl Into<String>,
        count: usize,
        data_room: usize,
        headroom: usize,
        ops: Box<dyn ExternalPool>,
    ) -> Mempool {
        let core = Box::new(PoolCore {
            name: name.into(),
            count,
            data_room,
            headroom: headroom as u32,
            cache_size: 0,
            flush_threshold: 0,
            handles: AtomicUsize::new(1),
            alloc_failures: AtomicU64::new(0),
            backing: Backing::External(ops),
        });
        Mempool { core: NonNull::from(Box::leak(core)) }
    }

    pub(crate) fn from_core(core: NonNull<PoolCore>) -> Mempool {
        // SAFETY: the caller holds a buffer of this pool, so it is alive.
        unsafe { core.as_ref() }.handles.fetch_add(1, Ordering::Relaxed);
        Mempool { core }
    }

    pub(crate) fn core_ptr(&self) -> NonNull<PoolCore> {
        self.core
    }

    #[inline(always)]
    fn core(&self) -> &PoolCore {
        // SAFETY: a handle keeps the pool alive.
        unsafe { self.core.as_ref() }
    }

    /// Allocates one buffer, reset to the default headroom and length 0.
    #[inline]
    pub fn alloc(&self) -> Result<Mbuf, PmdError> {
        self.core().alloc_one()
    }

    /// Allocates exactly `n` buffers and appends them to `out`, or none at all
    /// (returning [`PmdError::Exhausted`]).
    #[inline]
    pub fn alloc_bulk(&self, out: &mut Vec<Mbuf>, n: usize) -> Result<(), PmdError> {
        self.core().alloc_bulk(self, out, n)
    }

    /// Buffers currently free: in the shared list plus in every core's cache.
    pub fn available(&self) -> usize {
        self.core().available()
    }

    /// Buffers currently handed out.
    pub fn in_use(&self) -> usize {
        self.count().saturating_sub(self.available())
    }

    /// Total number of buffers.
    pub fn count(&self) -> usize {
        self.core().count
    }

    /// The pool's name.
    pub fn name(&self) -> &str {
        &self.core().name
    }

    /// Bytes of data room per buffer (after the headroom).
    pub fn data_room(&self) -> usize {
        self.core().data_room
    }

    /// Default headroom of each buffer.
    pub fn headroom(&self) -> usize {
        self.core().headroom as usize
    }

    /// How many allocations have failed for lack of buffers.
    pub fn alloc_failures(&self) -> u64 {
        self.core().alloc_failures.load(Ordering::Relaxed)
    }

    /// Whether two handles refer to the same pool.
    pub fn same_pool(&self, other: &Mempool) -> bool {
        self.core == other.core
    }
}

impl Clone for Mempool {
    fn clone(&self) -> Self {
        self.core().handles.fetch_add(1, Ordering::Relaxed);
        Mempool { core: self.core }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        if self.core().handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let core = self.core();
        let available = core.available();
        if available != core.count {
            eprintln!(
                "pmd: mempool '{}' dropped with {} of {} buffers still in use; leaking it so \
                 late frees stay safe",
                core.name,
                core.count - available,
                core.count
            );
            return;
        }
        // SAFETY: no handle and no buffer refers to the pool any more (all buffers
        // are home, and taking a new handle requires a buffer or a handle), so we
        // own it exclusively; it was created by `Box::leak`.
        let core = unsafe { Box::from_raw(self.core.as_ptr()) };
        if let Backing::Native(n) = &core.backing {
            if n.shm.is_some() {
                // SAFETY: `region` is our mapping of `layout.size()` bytes (the memfd
                // closes when `core` drops); a back end's own mapping is unaffected.
                unsafe { libc::munmap(n.region.as_ptr().cast(), n.layout.size()) };
            } else {
                // SAFETY: `region` was allocated with exactly `layout`.
                unsafe { std::alloc::dealloc(n.region.as_ptr(), n.layout) };
            }
        }
    }
}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mempool")
            .field("name", &self.name())
            .field("count", &self.count())
            .field("available", &self.available())
            .finish()
    }
}

/// Index of this thread's cache slot, held for the thread's life.
struct LcoreSlot(Option<usize>);

static SLOT_STATE: Mutex<(usize, Vec<usize>)> = Mutex::new((0, Vec::new()));

impl LcoreSlot {
    fn acquire() -> LcoreSlot {
        let mut st = SLOT_STATE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = st.1.pop() {
            return LcoreSlot(Some(i));
        }
        if st.0 < MAX_LCORE_SLOTS {
            st.0 += 1;
            return LcoreSlot(Some(st.0 - 1));
        }
        LcoreSlot(None)
    }
}

impl Drop for LcoreSlot {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            SLOT_STATE.lock().unwrap_or_else(|e| e.into_inner()).1.push(i);
        }
    }
}

thread_local! {
    static LCORE_SLOT: LcoreSlot = LcoreSlot::acquire();
}

#[inline(always)]
fn current_slot() -> Option<usize> {
    LCORE_SLOT.try_with(|s| s.0).ok().flatten()
}

impl PoolCore {
    #[inline(always)]
    pub(crate) fn headroom(&self) -> u32 {
        self.headroom
    }

    fn available(&self) -> usize {
        match &self.backing {
            Backing::Native(n) => {
                n.ring_len.load(Ordering::Acquire)
                    + n.slots.iter().map(|s| s.len.load(Ordering::Acquire)).sum::<usize>()
            }
            Backing::External(e) => e.available(),
        }
    }

    fn exhausted(&self, n: usize) -> PmdError {
        self.alloc_failures.fetch_add(1, Ordering::Relaxed);
        PmdError::Exhausted { pool: self.name.clone(), wanted: n }
    }

    pub(crate) fn alloc_one(&self) -> Result<Mbuf, PmdError> {
        let mut v = Vec::with_capacity(1);
        let pool = std::mem::ManuallyDrop::new(Mempool { core: NonNull::from(self) });
        self.alloc_bulk(&pool, &mut v, 1)?;
        Ok(v.pop().expect("alloc_bulk(1) succeeded"))
    }

    #[inline]
    fn alloc_bulk(&self, pool: &Mempool, out: &mut Vec<Mbuf>, n: usize) -> Result<(), PmdError> {
        let native = match &self.backing {
            Backing::Native(native) => native,
            Backing::External(e) => {
                return e.alloc_bulk(pool, out, n).inspect_err(|_| {
                    self.alloc_failures.fetch_add(1, Ordering::Relaxed);
                })
            }
        };
        if n == 0 {
            return Ok(());
        }
        out.reserve(n);
        let rearm = Rearm::new(self.headroom as u16);
        // One 32-byte store resets window and metadata; the handle is the pointer.
        let init = |out: &mut Vec<Mbuf>, p: NonNull<MbufHdr>| {
            // SAFETY: `p` is a free buffer of this pool that we now own exclusively;
            // its constant fields were written when the pool was made.
            unsafe {
                MbufHdr::rearm(p, rearm);
                out.push(Mbuf::from_raw(p));
            }
        };
        match current_slot() {
            Some(i) if n <= self.cache_size => {
                let slot = &native.slots[i];
                // SAFETY: slot `i` is this thread's alone (see `LcoreSlot`), and no
                // other reference to its Vec is live in this call chain.
                let cache = unsafe { &mut *slot.objs.get() };
                if cache.len() < n {
                    if cache.capacity() == 0 {
                        cache.reserve_exact(self.flush_threshold + MAX_CACHE_SIZE + 1);
                    }
                    let need = n - cache.len();
                    let want = self.cache_size + need;
                    let mut ring = native.ring.lock().unwrap_or_else(|e| e.into_inner());
                    if ring.len() < need {
                        drop(ring);
                        return Err(self.exhausted(n));
                    }
                    let take = want.min(ring.len());
                    let from = ring.len() - take;
                    cache.extend(ring.drain(from..));
                    native.ring_len.fetch_sub(take, Ordering::AcqRel);
                    drop(ring);
                }
                let from = cache.len() - n;
                for p in cache.drain(from..) {
                    init(out, p);
                }
                slot.len.store(cache.len(), Ordering::Release);
            }
            _ => {
                let mut ring = native.ring.lock().unwrap_or_else(|e| e.into_inner());
                if ring.len() < n {
                    drop(ring);
                    return Err(self.exhausted(n));
                }
                let from = ring.len() - n;
                for p in ring.drain(from..) {
                    init(out, p);
                }
                native.ring_len.fetch_sub(n, Ordering::AcqRel);
            }
        }
        Ok(())
    }

    /// Returns one buffer to its pool.
    ///
    /// # Safety
    /// `m` is an owned buffer whose pool is alive; it is not used (or dropped)
    /// again.
    #[inline]
    pub(crate) unsafe fn free_one(m: &Mbuf) {
        let hdr = m.hdr_ptr();
        // SAFETY: the caller guarantees `hdr` is valid and its pool alive.
        let pool = unsafe { Mbuf::core_of(hdr).as_ref() };
        match &pool.backing {
            // SAFETY: forwarded caller guarantee.
            Backing::Native(n) => unsafe { pool.free_run(n, std::slice::from_ref(m)) },
            // SAFETY: headers of external pools are made by `Mbuf::from_external`.
            Backing::External(e) => unsafe { e.free(hdr) },
        }
    }

    /// Frees every buffer in `bufs` (leaving it empty), one cache visit per run of
    /// buffers from the same pool.
    pub(crate) fn free_bulk_run(bufs: &mut Vec<Mbuf>) {
        let n = bufs.len();
        let all: &[Mbuf] = bufs;
        let mut i = 0;
        while i < n {
            // Runs are found by the header's pool word (same for one pool);
            // the pool itself is looked up once per run.
            let word = all[i].pool_word();
            let mut j = i + 1;
            while j < n && all[j].pool_word() == word {
                j += 1;
            }
            let pool_ptr = all[i].pool_ptr();
            // SAFETY: the buffers keep their pool alive until freed.
            let pool = unsafe { pool_ptr.as_ref() };
            match &pool.backing {
                // SAFETY: we own these buffers and free each exactly once; the Vec
                // forgets them below (set_len) so none is dropped again.
                Backing::Native(nat) => unsafe { pool.free_run(nat, &all[i..j]) },
                Backing::External(e) => {
                    for m in &all[i..j] {
                        // SAFETY: as above.
                        unsafe { e.free(m.hdr_ptr()) };
                    }
                }
            }
            i = j;
        }
        // SAFETY: all `n` buffers were freed above; forget them without dropping.
        unsafe { bufs.set_len(0) };
    }

    /// # Safety
    /// Each buffer in `run` belongs to this native pool, is owned by the caller, and
    /// is not used or dropped again.
    #[inline]
    unsafe fn free_run(&self, native: &Native, run: &[Mbuf]) {
        match current_slot() {
            Some(i) if self.cache_size > 0 => {
                let slot = &native.slots[i];
                // SAFETY: slot `i` belongs to this thread alone.
                let cache = unsafe { &mut *slot.objs.get() };
                if cache.capacity() == 0 {
                    cache.reserve_exact(self.flush_threshold + MAX_CACHE_SIZE + 1);
                }
                cache.extend_from_slice(as_hdr_ptrs(run));
                if cache.len() <= self.flush_threshold {
                    // Publishing the new length is our last access to the pool.
                    slot.len.store(cache.len(), Ordering::Release);
                    return;
                }
                let keep = self.cache_size;
                let moved = cache.len() - keep;
                let mut ring = native.ring.lock().unwrap_or_else(|e| e.into_inner());
                ring.extend(cache.drain(keep..));
                // Under-count first (the moved buffers are in neither mirror) ...
                slot.len.store(keep, Ordering::Release);
                drop(ring);
                // ... then publish them: the last access to the pool.
                native.ring_len.fetch_add(moved, Ordering::AcqRel);
            }
            _ => {
                let mut ring = native.ring.lock().unwrap_or_else(|e| e.into_inner());
                ring.extend_from_slice(as_hdr_ptrs(run));
                drop(ring);
                native.ring_len.fetch_add(run.len(), Ordering::AcqRel);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The buffer's life cycle. `mbuf.rs` is the view over a header (window, data,
// metadata) and knows no pool; everything that finds a buffer's pool — the
// `pool` word's encoding, freeing on drop, copying into a fresh buffer,
// resetting to the pool's headroom — lives here, so the two files depend one
// way (this one on `mbuf`), as DPDK's `rte_mbuf` sits on `rte_mempool`.
// ---------------------------------------------------------------------------

/// Bit 0 of a native header's `pool` word.
const NATIVE_TAG: usize = 1;

/// Where an external buffer keeps its `PoolCore` pointer: the private area
/// right after the header.
pub(crate) const EXT_CORE_OFFSET: usize = std::mem::size_of::<MbufHdr>();

/// The `pool` word of a native pool's headers: its `PoolCore` with bit 0 set.
#[inline(always)]
fn native_word(core: NonNull<PoolCore>) -> usize {
    core.as_ptr() as usize | NATIVE_TAG
}

impl Mbuf {
    /// Wraps a buffer that lives in an external pool's memory: writes the
    /// header at `hdr` and the pool pointer after it, and returns the owning
    /// handle. (The DPDK driver does not use this: DPDK writes its headers.)
    ///
    /// # Safety
    /// * `hdr` is valid for writes of an `MbufHdr` plus 8 bytes after it (the
    ///   pool pointer, at `size_of::<MbufHdr>()`), 64-byte aligned, and owned by the
    ///   caller until the returned `Mbuf` is dropped or given back with
    ///   [`Mbuf::into_external`];
    /// * `buf` is valid for reads and writes of `buf_len` bytes for that long;
    /// * `data_off + data_len <= buf_len <= 65535`;
    /// * `pool` is an external pool whose `free` accepts this header.
    pub unsafe fn from_external(
        hdr: NonNull<MbufHdr>,
        pool: &crate::Mempool,
        buf: NonNull<u8>,
        buf_len: u32,
        data_off: u32,
        data_len: u32,
        meta: MbufMeta,
    ) -> Self {
        debug_assert!(buf_len <= u16::MAX as u32 && data_off + data_len <= buf_len);
        let core = pool.core_ptr();
        // SAFETY: the caller guarantees `hdr` (and the word after it) are valid for
        // writes and exclusively ours.
        unsafe {
            let mut h = MbufHdr::native(buf, buf_len as u16, core.as_ptr() as usize, 0);
            // Untagged (the pool is found through the private area), but
            // still one value per pool: `free_bulk` groups runs by this word.
            h.pool = core.as_ptr() as usize;
            hdr.as_ptr().write(h);
            Self::init_external_core(hdr, core);
            let mut m = Mbuf::from_hdr(hdr, data_off, data_len);
            m.set_meta(meta);
            m
        }
    }

    /// Writes the pool pointer of an external buffer into its private area
    /// (once, when the external pool is made).
    ///
    /// # Safety
    /// `hdr` is followed by at least 8 writable bytes that nobody else uses.
    #[inline]
    pub(crate) unsafe fn init_external_core(hdr: NonNull<MbufHdr>, core: NonNull<PoolCore>) {
        // SAFETY: forwarded caller guarantee; the private area is 8-aligned.
        unsafe { ((hdr.as_ptr() as *mut u8).add(EXT_CORE_OFFSET) as *mut NonNull<PoolCore>).write(core) };
    }

    /// The pool a header belongs to, from its `pool` word.
    ///
    /// # Safety
    /// `hdr` is a valid header of a live pool.
    #[inline(always)]
    pub(crate) unsafe fn core_of(hdr: NonNull<MbufHdr>) -> NonNull<PoolCore> {
        // SAFETY: forwarded caller guarantee; an untagged (external) header has
        // its pool pointer in its private area (see `from_external`).
        unsafe {
            let w = (*hdr.as_ptr()).pool;
            if w & NATIVE_TAG != 0 {
                NonNull::new_unchecked((w & !NATIVE_TAG) as *mut PoolCore)
            } else {
                ((hdr.as_ptr() as *const u8).add(EXT_CORE_OFFSET) as *const NonNull<PoolCore>).read()
            }
        }
    }

    #[inline(always)]
    pub(crate) fn pool_ptr(&self) -> NonNull<PoolCore> {
        // SAFETY: `self` is a valid buffer of a live pool.
        unsafe { Self::core_of(self.hdr_ptr()) }
    }

    /// Resets the data window to the pool's default headroom and length 0, and
    /// clears the metadata.
    #[inline]
    pub fn reset(&mut self) {
        // SAFETY: the pool outlives every buffer it handed out (see `mempool`).
        let headroom = unsafe { self.pool_ptr().as_ref() }.headroom();
        let h = self.hdr_mut();
        h.data_off = (headroom as u16).min(h.buf_len);
        self.set_data_len(0);
        self.clear_meta();
    }

    /// A handle to the pool this buffer belongs to.
    pub fn pool(&self) -> crate::Mempool {
        crate::Mempool::from_core(self.pool_ptr())
    }

    /// Copies data and metadata into a new buffer from the same pool, with the same
    /// headroom. Fails (no panic) when the pool is exhausted.
    pub fn try_clone(&self) -> Result<Mbuf, crate::PmdError> {
        // SAFETY: the pool outlives its buffers.
        let core = unsafe { self.pool_ptr().as_ref() };
        let mut m = core.alloc_one()?;
        let off = (self.headroom() as u16).min(m.hdr().buf_len);
        m.hdr_mut().data_off = off;
        m.extend_from_slice(self.data())
            .ok_or(crate::PmdError::MbufTooSmall { need: self.len(), have: m.tailroom() })?;
        m.copy_meta_from(self);
        Ok(m)
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the pool outlives its buffers, and we own `hdr` exclusively.
        unsafe { PoolCore::free_one(self) }
    }
}

/// Frees a batch of buffers, taking each pool's cache once per run of buffers from
/// the same pool instead of once per buffer.
#[inline]
pub fn free_bulk(bufs: &mut Vec<Mbuf>) {
    if bufs.is_empty() {
        return;
    }
    PoolCore::free_bulk_run(bufs);
}
