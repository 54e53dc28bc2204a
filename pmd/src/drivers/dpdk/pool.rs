//! `rte_mempool`s behind our [`Mempool`] (see the `mbuf` module docs).

use std::ffi::CString;
use std::os::raw::c_int;
use std::ptr::NonNull;
use std::sync::RwLock;

use dpdk_sys as sys;

use crate::mbuf::{Mbuf, MbufHdr, MbufMeta};
use crate::mempool::{ExternalPool, PoolCore};
use crate::{Mempool, MempoolConfig, PmdError};

/// Bytes of the private area every mbuf of our pools carries: our header,
/// rounded up to DPDK's private-area alignment.
pub const PRIV_SIZE: usize = std::mem::size_of::<MbufHdr>().next_multiple_of(sys::RTE_MBUF_PRIV_ALIGN as usize);

/// `rte_mbuf`'s size: the private area (our header) starts right after it.
pub(crate) const RTE_MBUF_SIZE: usize = std::mem::size_of::<sys::rte_mbuf>();

// The header must be 64-byte aligned: objects are cache-line aligned, and
// `struct rte_mbuf` is two cache lines.
const _: () = assert!(RTE_MBUF_SIZE.is_multiple_of(64));
const _: () = assert!(PRIV_SIZE >= std::mem::size_of::<MbufHdr>());

/// Our header inside an `rte_mbuf`'s private area.
#[inline(always)]
pub(crate) fn hdr_of(m: *mut sys::rte_mbuf) -> NonNull<MbufHdr> {
    // SAFETY: `m` is a non-null mbuf of one of our pools (callers pass only
    // those), whose private area of PRIV_SIZE bytes follows `struct rte_mbuf`.
    unsafe { NonNull::new_unchecked((m as *mut u8).add(RTE_MBUF_SIZE) as *mut MbufHdr) }
}

/// The `rte_mbuf` whose private area holds `hdr`.
#[inline(always)]
pub(crate) fn mbuf_of(hdr: NonNull<MbufHdr>) -> *mut sys::rte_mbuf {
    // SAFETY: inverse of `hdr_of`: the header sits RTE_MBUF_SIZE bytes after
    // the start of its rte_mbuf, inside the same mempool object.
    unsafe { (hdr.as_ptr() as *mut u8).sub(RTE_MBUF_SIZE) as *mut sys::rte_mbuf }
}

/// Wraps an `rte_mbuf` of our pool `pool` (fresh from DPDK) as an [`Mbuf`]
/// appended to `out`, whose window is the mbuf's `data_off`/`data_len`: no data
/// is copied, and the handle is written in place (see [`Mbuf::push_external`]),
/// with only the metadata written into the header prepared at pool creation.
///
/// # Safety
/// `m` is a valid single-segment mbuf of `pool`'s `rte_mempool`, owned by the
/// caller, and is not used through `m` again until the `Mbuf` is given back.
#[inline(always)]
pub(crate) unsafe fn wrap_into(out: &mut Vec<Mbuf>, m: *mut sys::rte_mbuf, meta: MbufMeta) {
    // SAFETY: the caller guarantees `m` is a valid mbuf of one of our pools, which
    // `create_mempool` prepared with `init_hdr` (buffer, length and pool are in
    // the header already); DPDK keeps data_off + data_len <= buf_len.
    unsafe {
        let r = &*m;
        Mbuf::push_prepared(out, hdr_of(m), r.data_off as u32, r.data_len as u32, meta)
    }
}

/// `rte_mempool_obj_iter` callback: writes the constant part of our header into
/// one mbuf's private area (see [`Mbuf::init_external_hdr`]).
unsafe extern "C" fn init_hdr(
    _mp: *mut sys::rte_mempool,
    arg: *mut std::os::raw::c_void,
    obj: *mut std::os::raw::c_void,
    _idx: std::os::raw::c_uint,
) {
    // SAFETY: called by `rte_mempool_obj_iter` for each object of a pool that
    // `rte_pktmbuf_pool_create` made with PRIV_SIZE private bytes: `obj` is an
    // initialised, unused rte_mbuf whose buf_addr/buf_len never change; `arg` is
    // the pool's `PoolCore`, alive as long as the pool.
    unsafe {
        let m = obj as *mut sys::rte_mbuf;
        let core = NonNull::new_unchecked(arg as *mut crate::mempool::PoolCore);
        Mbuf::init_external_hdr(hdr_of(m), core, NonNull::new_unchecked((*m).buf_addr as *mut u8), (*m).buf_len as u32);
    }
}

/// The `rte_mempool`s created by [`create_mempool`], by the address of their
/// `PoolCore`: how a port finds the `rte_mempool` of the `Mempool` it is
/// configured with, and how tx tells our buffers from foreign ones.
static REGISTRY: RwLock<Vec<(usize, usize)>> = RwLock::new(Vec::new());

/// The `rte_mempool` behind `pool`, if it is one of ours.
pub(crate) fn rte_pool_of(pool: &Mempool) -> Option<*mut sys::rte_mempool> {
    rte_pool_of_core(pool.core_ptr())
}

pub(crate) fn rte_pool_of_core(core: NonNull<PoolCore>) -> Option<*mut sys::rte_mempool> {
    let key = core.as_ptr() as usize;
    let reg = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    reg.iter().find(|(k, _)| *k == key).map(|(_, mp)| *mp as *mut sys::rte_mempool)
}

/// `ExternalPool` ops over an `rte_mempool`.
struct DpdkPoolOps {
    mp: NonNull<sys::rte_mempool>,
}

// SAFETY: an rte_mempool is a process-wide object whose alloc/free operations
// are thread-safe (multi-producer/multi-consumer ring plus per-lcore caches
// that only the owning lcore touches); the pointer itself is never mutated.
unsafe impl Send for DpdkPoolOps {}
// SAFETY: as above.
unsafe impl Sync for DpdkPoolOps {}

/// Mbufs taken from DPDK per `rte_pktmbuf_alloc_bulk` call.
const ALLOC_CHUNK: usize = 64;

// SAFETY: `free` is only handed headers that `wrap` wrote into the private
// area of this pool's mbufs (the receive path and `alloc_bulk` both use it).
unsafe impl ExternalPool for DpdkPoolOps {
    fn alloc_bulk(&self, pool: &Mempool, out: &mut Vec<Mbuf>, n: usize) -> Result<(), PmdError> {
        let start = out.len();
        out.reserve(n);
        let mut raw = [std::ptr::null_mut::<sys::rte_mbuf>(); ALLOC_CHUNK];
        let mut left = n;
        while left > 0 {
            let k = left.min(ALLOC_CHUNK);
            // SAFETY: `raw` has room for `k <= ALLOC_CHUNK` pointers; the pool is
            // a live pktmbuf pool.
            let r = unsafe { sys::rte_shim_pktmbuf_alloc_bulk(self.mp.as_ptr(), raw.as_mut_ptr(), k as u32) };
            if r != 0 {
                // All or nothing: give back what this call took so far.
                let mut got: Vec<Mbuf> = out.drain(start..).collect();
                crate::free_bulk(&mut got);
                return Err(PmdError::Exhausted { pool: pool.name().to_string(), wanted: n });
            }
            for &m in &raw[..k] {
                // SAFETY: a fresh, reset, single-segment mbuf of this pool, ours now.
                // SAFETY: a fresh mbuf of this pool, ours.
                unsafe { wrap_into(out, m, MbufMeta::default()) };
            }
            left -= k;
        }
        Ok(())
    }

    unsafe fn free(&self, hdr: NonNull<MbufHdr>) {
        // SAFETY: `hdr` was written by `wrap` into an mbuf of this pool (trait
        // contract), so `mbuf_of` gives back that mbuf, which we own.
        unsafe { sys::rte_shim_pktmbuf_free(mbuf_of(hdr)) }
    }

    fn available(&self) -> usize {
        // SAFETY: the pool is live; the call only reads counters.
        unsafe { sys::rte_mempool_avail_count(self.mp.as_ptr()) as usize }
    }
}

impl Drop for DpdkPoolOps {
    fn drop(&mut self) {
        let mp = self.mp.as_ptr() as usize;
        REGISTRY.write().unwrap_or_else(|e| e.into_inner()).retain(|(_, p)| *p != mp);
        // SAFETY: the Mempool frees its ops only when every buffer is home and
        // no handle is left; ports hold a handle while their queues reference
        // the pool, so nothing uses the rte_mempool any more.
        unsafe { sys::rte_mempool_free(self.mp.as_ptr()) }
    }
}

/// Creates a pool of DPDK mbufs (`rte_pktmbuf_pool_create`) and returns it as
/// a [`Mempool`], so the same buffers serve DPDK ports (zero copy both ways)
/// and everything else (`Mempool::alloc`, other drivers).
///
/// Every mbuf gets a private area of [`PRIV_SIZE`] bytes for our header. The
/// values are the caller's: `count` buffers, `data_room` bytes after a
/// `headroom` that must equal DPDK's compiled-in `RTE_PKTMBUF_HEADROOM` (128,
/// [`crate::mempool::DEFAULT_HEADROOM`]: DPDK drivers receive at that offset),
/// and a per-lcore cache of `cache_size` (at most 512, DPDK's limit). EAL must
/// be initialised ([`super::init`]).
pub fn create_mempool(cfg: &MempoolConfig) -> Result<Mempool, PmdError> {
    super::eal::require(&format!("mempool '{}'", cfg.name))?;
    let bad = |field: &'static str, reason: String| PmdError::Config { field, reason };
    if cfg.headroom != sys::RTE_PKTMBUF_HEADROOM as usize {
        return Err(bad(
            "headroom",
            format!(
                "{} is not DPDK's RTE_PKTMBUF_HEADROOM ({}), where DPDK drivers place received data",
                cfg.headroom,
                sys::RTE_PKTMBUF_HEADROOM
            ),
        ));
    }
    if cfg.count == 0 || cfg.count > u32::MAX as usize {
        return Err(bad("count", format!("{} is outside 1..={}", cfg.count, u32::MAX)));
    }
    let room = cfg.headroom + cfg.data_room;
    if cfg.data_room == 0 || room > u16::MAX as usize {
        return Err(bad("data_room", format!("headroom + data_room = {room} must be within 1..=65535 for DPDK")));
    }
    if cfg.cache_size > sys::RTE_MEMPOOL_CACHE_MAX_SIZE as usize || cfg.cache_size * 3 / 2 > cfg.count {
        return Err(bad(
            "cache_size",
            format!(
                "{} must be at most {} and count / 1.5 ({})",
                cfg.cache_size,
                sys::RTE_MEMPOOL_CACHE_MAX_SIZE,
                cfg.count * 2 / 3
            ),
        ));
    }
    let name =
        CString::new(cfg.name.as_str()).map_err(|_| bad("name", format!("{:?} contains a NUL byte", cfg.name)))?;
    // SAFETY: EAL is initialised; `name` is a valid C string; the sizes were
    // checked above (priv_size is a multiple of RTE_MBUF_PRIV_ALIGN).
    let mp = unsafe {
        sys::rte_pktmbuf_pool_create(
            name.as_ptr(),
            cfg.count as u32,
            cfg.cache_size as u32,
            PRIV_SIZE as u16,
            room as u16,
            sys::SOCKET_ID_ANY as c_int,
        )
    };
    let Some(mp) = NonNull::new(mp) else {
        let e = sys::errno();
        return Err(PmdError::NoMemory {
            what: format!(
                "DPDK mempool '{}' ({} x {} bytes): rte_pktmbuf_pool_create failed: {} (rte_errno {e})",
                cfg.name,
                cfg.count,
                room,
                sys::strerror(e)
            ),
        });
    };
    let pool =
        Mempool::external(cfg.name.clone(), cfg.count, cfg.data_room, cfg.headroom, Box::new(DpdkPoolOps { mp }));
    // SAFETY: `mp` is the pool just created, none of its mbufs is in use yet, and
    // `init_hdr` only writes each mbuf's private area (PRIV_SIZE bytes).
    unsafe { sys::rte_mempool_obj_iter(mp.as_ptr(), Some(init_hdr), pool.core_ptr().as_ptr().cast()) };
    REGISTRY.write().unwrap_or_else(|e| e.into_inner()).push((pool.core_ptr().as_ptr() as usize, mp.as_ptr() as usize));
    Ok(pool)
}

/// What an [`Mbuf`] of a DPDK pool looks like on the DPDK side: for tests and
/// debugging that prove the zero-copy path (the data an `Mbuf` shows is the
/// `rte_mbuf`'s buffer at `buf_addr + data_off`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RteMbufView {
    /// Address of the `struct rte_mbuf`.
    pub mbuf: usize,
    /// Its `buf_addr`.
    pub buf_addr: usize,
    /// Its `data_off` (as last written by DPDK or our transmit path).
    pub data_off: u16,
    /// Its `data_len` (idem).
    pub data_len: u16,
    /// Its `buf_len`.
    pub buf_len: u16,
}

/// The `rte_mbuf` under `m`, if `m` belongs to a pool made by
/// [`create_mempool`].
pub fn rte_mbuf_view(m: &Mbuf) -> Option<RteMbufView> {
    rte_pool_of_core(m.pool_ptr())?;
    let rm = mbuf_of(m.hdr_ptr());
    // SAFETY: `m` is a live buffer of one of our DPDK pools, so `rm` is its
    // valid rte_mbuf, which nobody writes while `m` is borrowed.
    let r = unsafe { &*rm };
    Some(RteMbufView {
        mbuf: rm as usize,
        buf_addr: r.buf_addr as usize,
        data_off: r.data_off,
        data_len: r.data_len,
        buf_len: r.buf_len,
    })
}
