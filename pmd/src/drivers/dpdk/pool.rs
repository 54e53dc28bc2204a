//! `rte_mempool`s behind our [`Mempool`] (see the `mbuf` module docs).

use std::ffi::CString;
use std::os::raw::c_int;
use std::ptr::NonNull;
use std::sync::RwLock;

use dpdk_sys as sys;

use crate::mbuf::{Mbuf, MbufHdr};
use crate::mempool::{ExternalPool, PoolCore};
use crate::{Mempool, MempoolConfig, PmdError};

/// Bytes of the private area every mbuf of our pools carries: the pointer to
/// our [`PoolCore`] (see the `mbuf` module docs), rounded up to DPDK's
/// private-area alignment.
pub const PRIV_SIZE: usize = std::mem::size_of::<usize>().next_multiple_of(sys::RTE_MBUF_PRIV_ALIGN as usize);

// Our header *is* the rte_mbuf: same size, the same fields at the same offsets,
// the same flag encodings.
const _: () = {
    use std::mem::{offset_of, size_of};
    use sys::rte_mbuf as R;
    assert!(size_of::<R>() == size_of::<MbufHdr>());
    assert!(crate::mempool::EXT_CORE_OFFSET == size_of::<R>());
    assert!(offset_of!(R, buf_addr) == offset_of!(MbufHdr, buf_addr));
    assert!(offset_of!(R, data_off) == offset_of!(MbufHdr, data_off));
    assert!(offset_of!(R, refcnt) == offset_of!(MbufHdr, refcnt));
    assert!(offset_of!(R, nb_segs) == offset_of!(MbufHdr, nb_segs));
    assert!(offset_of!(R, port) == offset_of!(MbufHdr, port));
    assert!(offset_of!(R, ol_flags) == offset_of!(MbufHdr, ol_flags));
    assert!(offset_of!(R, __bindgen_anon_1) == offset_of!(MbufHdr, packet_type));
    assert!(offset_of!(R, pkt_len) == offset_of!(MbufHdr, pkt_len));
    assert!(offset_of!(R, data_len) == offset_of!(MbufHdr, data_len));
    assert!(offset_of!(R, vlan_tci) == offset_of!(MbufHdr, vlan_tci));
    assert!(offset_of!(R, __bindgen_anon_2) == offset_of!(MbufHdr, rss));
    assert!(offset_of!(R, buf_len) == offset_of!(MbufHdr, buf_len));
    assert!(offset_of!(R, pool) == offset_of!(MbufHdr, pool));
    assert!(offset_of!(R, next) == offset_of!(MbufHdr, next));
    assert!(offset_of!(R, __bindgen_anon_3) == offset_of!(MbufHdr, tx_offload));
    assert!(offset_of!(R, priv_size) == offset_of!(MbufHdr, priv_size));
    use crate::mbuf::ol;
    assert!(ol::RX_VLAN == sys::RTE_MBUF_F_RX_VLAN as u64);
    assert!(ol::RX_RSS_HASH == sys::RTE_MBUF_F_RX_RSS_HASH as u64);
    assert!(ol::RX_VLAN_STRIPPED == sys::RTE_MBUF_F_RX_VLAN_STRIPPED as u64);
    assert!(ol::RX_IP_CKSUM_BAD == sys::RTE_MBUF_F_RX_IP_CKSUM_BAD as u64);
    assert!(ol::RX_IP_CKSUM_GOOD == sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD as u64);
    assert!(ol::RX_L4_CKSUM_BAD == sys::RTE_MBUF_F_RX_L4_CKSUM_BAD as u64);
    assert!(ol::RX_L4_CKSUM_GOOD == sys::RTE_MBUF_F_RX_L4_CKSUM_GOOD as u64);
    assert!(ol::RX_L4_CKSUM_NONE == sys::RTE_MBUF_F_RX_L4_CKSUM_NONE as u64);
    assert!(ol::RX_LRO == sys::RTE_MBUF_F_RX_LRO as u64);
    assert!(ol::TX_TCP_SEG == sys::RTE_MBUF_F_TX_TCP_SEG);
    assert!(ol::TX_TCP_CKSUM == sys::RTE_MBUF_F_TX_TCP_CKSUM);
    assert!(ol::TX_UDP_CKSUM == sys::RTE_MBUF_F_TX_UDP_CKSUM);
    assert!(ol::TX_L4_MASK == sys::RTE_MBUF_F_TX_L4_MASK);
    assert!(ol::TX_IP_CKSUM == sys::RTE_MBUF_F_TX_IP_CKSUM);
    assert!(ol::TX_IPV4 == sys::RTE_MBUF_F_TX_IPV4);
    assert!(ol::TX_IPV6 == sys::RTE_MBUF_F_TX_IPV6);
    assert!(ol::TX_VLAN == sys::RTE_MBUF_F_TX_VLAN);
    assert!(ol::L2_LEN_OFS == sys::RTE_MBUF_L2_LEN_OFS);
    assert!(ol::L3_LEN_OFS == sys::RTE_MBUF_L3_LEN_OFS);
    assert!(ol::L4_LEN_OFS == sys::RTE_MBUF_L4_LEN_OFS);
    assert!(ol::TSO_SEGSZ_OFS == sys::RTE_MBUF_TSO_SEGSZ_OFS);
    assert!(ol::PTYPE_L2_ETHER == sys::RTE_PTYPE_L2_ETHER);
    assert!(ol::PTYPE_L2_ETHER_ARP == sys::RTE_PTYPE_L2_ETHER_ARP);
    assert!(ol::PTYPE_L2_ETHER_VLAN == sys::RTE_PTYPE_L2_ETHER_VLAN);
    assert!(ol::PTYPE_L3_IPV4 == sys::RTE_PTYPE_L3_IPV4);
    assert!(ol::PTYPE_L3_IPV6 == sys::RTE_PTYPE_L3_IPV6);
    assert!(ol::PTYPE_L4_TCP == sys::RTE_PTYPE_L4_TCP);
    assert!(ol::PTYPE_L4_UDP == sys::RTE_PTYPE_L4_UDP);
    assert!(ol::PTYPE_L4_FRAG == sys::RTE_PTYPE_L4_FRAG);
    assert!(ol::PTYPE_L4_ICMP == sys::RTE_PTYPE_L4_ICMP);
};

/// Our header of an `rte_mbuf`: the same address.
#[inline(always)]
pub(crate) fn hdr_of(m: *mut sys::rte_mbuf) -> NonNull<MbufHdr> {
    // SAFETY: callers pass non-null mbufs of our pools.
    unsafe { NonNull::new_unchecked(m as *mut MbufHdr) }
}

/// The `rte_mbuf` of one of our headers: the same address.
#[inline(always)]
pub(crate) fn mbuf_of(hdr: NonNull<MbufHdr>) -> *mut sys::rte_mbuf {
    hdr.as_ptr() as *mut sys::rte_mbuf
}

/// `rte_mempool_obj_iter` callback: writes the pointer to our pool into one
/// mbuf's private area (see [`Mbuf::init_external_core`]).
unsafe extern "C" fn init_priv(
    _mp: *mut sys::rte_mempool,
    arg: *mut std::os::raw::c_void,
    obj: *mut std::os::raw::c_void,
    _idx: std::os::raw::c_uint,
) {
    // SAFETY: called by `rte_mempool_obj_iter` for each object of a pool that
    // `rte_pktmbuf_pool_create` made with PRIV_SIZE private bytes right after
    // `struct rte_mbuf`, which DPDK never touches; `arg` is the pool's
    // `PoolCore`, alive as long as the pool.
    unsafe { Mbuf::init_external_core(hdr_of(obj as *mut sys::rte_mbuf), NonNull::new_unchecked(arg as *mut PoolCore)) }
}

/// The memory chunks of an `rte_mempool`, for telling its mbufs by address
/// alone (see `DpdkTx`). Up to four chunks are kept; a pool with more (not
/// one made by `rte_pktmbuf_pool_create` on one socket) matches nothing, which
/// sends every burst through the slow path that checks each frame's pool.
///
/// Cheaper still, when it exists: a window of `2^bits` bytes from `base` that
/// holds the pool's only chunk and lies wholly inside the VA range EAL
/// reserved for that memory (its memseg list). Nothing but DPDK memory can be
/// mapped there, and a handle always points at a buffer header, so a handle in
/// the window is an `rte_mbuf` of one of our DPDK pools (another pool than the
/// port's is fine: DPDK frees it to its own). The test is then a subtraction
/// and an OR per frame (all offsets below `2^bits` exactly when their OR is),
/// which the compiler vectorises: with AVX2, when the CPU has it (checked once,
/// at run time: the build targets baseline x86-64), four handles per
/// instruction pair, a quarter of the scalar count; on `net_ring` that is
/// about 2 of the ~25 instructions per frame.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PoolRanges {
    lo: [usize; 4],
    len: [usize; 4],
    n: usize,
    block: Option<(usize, u32)>,
    avx2: bool,
}

/// The OR of every handle's offset from `base`.
#[inline(always)]
fn or_offsets(ptrs: &[NonNull<MbufHdr>], base: usize) -> usize {
    ptrs.iter().fold(0usize, |acc, p| acc | (p.as_ptr() as usize).wrapping_sub(base))
}

/// [`or_offsets`] compiled for AVX2.
///
/// # Safety
///
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn or_offsets_avx2(ptrs: &[NonNull<MbufHdr>], base: usize) -> usize {
    or_offsets(ptrs, base)
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

impl PoolRanges {
    /// Whether every pointer lies in one of the chunks.
    #[inline(always)]
    pub(crate) fn contains_all(&self, ptrs: &[NonNull<MbufHdr>]) -> bool {
        if let Some((base, bits)) = self.block {
            #[cfg(target_arch = "x86_64")]
            if self.avx2 {
                // SAFETY: `avx2` is set only when the CPU was found to have it.
                return unsafe { or_offsets_avx2(ptrs, base) } >> bits == 0;
            }
            return or_offsets(ptrs, base) >> bits == 0;
        }
        ptrs.iter().all(|p| {
            let a = p.as_ptr() as usize;
            (0..self.n).any(|i| a.wrapping_sub(self.lo[i]) < self.len[i])
        })
    }
}

/// A window of the smallest power-of-two size holding `[lo, lo + len)`, starting
/// at `lo` or ending at `lo + len`, that lies inside the memseg list (EAL's VA
/// reservation) holding `lo`.
fn eal_block(lo: usize, len: usize) -> Option<(usize, u32)> {
    let hi = lo.checked_add(len)?;
    // SAFETY: a lookup in EAL's memory map; EAL is initialised (a pool exists).
    let msl = unsafe { sys::rte_mem_virt2memseg_list(lo as *const std::os::raw::c_void) };
    if msl.is_null() {
        return None;
    }
    // SAFETY: a valid memseg list; plain fields, constant after EAL init.
    let (msl_lo, msl_len) = unsafe { ((*msl).__bindgen_anon_1.base_va as usize, (*msl).len) };
    let msl_hi = msl_lo.checked_add(msl_len)?;
    let bits = len.checked_next_power_of_two()?.trailing_zeros();
    let size = 1usize << bits;
    [lo, hi.saturating_sub(size)]
        .into_iter()
        .find(|&base| base >= msl_lo && base.checked_add(size).is_some_and(|end| end <= msl_hi && end >= hi))
        .map(|base| (base, bits))
}

/// The chunks of `mp`'s memory.
pub(crate) fn pool_ranges(mp: *mut sys::rte_mempool) -> PoolRanges {
    unsafe extern "C" fn add(
        _mp: *mut sys::rte_mempool,
        arg: *mut std::os::raw::c_void,
        hdr: *mut sys::rte_mempool_memhdr,
        _idx: std::os::raw::c_uint,
    ) {
        // SAFETY: `arg` is the `PoolRanges` below, alive for the call; `hdr` is a
        // valid chunk header of the pool being iterated.
        unsafe {
            let r = &mut *(arg as *mut PoolRanges);
            if r.n < 4 {
                r.lo[r.n] = (*hdr).addr as usize;
                r.len[r.n] = (*hdr).len;
            }
            r.n += 1;
        }
    }
    let mut r = PoolRanges::default();
    // SAFETY: `mp` is a live pool; the callback only writes `r`.
    unsafe { sys::rte_mempool_mem_iter(mp, Some(add), (&mut r as *mut PoolRanges).cast()) };
    if r.n > 4 {
        r = PoolRanges::default();
    }
    if r.n == 1 {
        r.block = eal_block(r.lo[0], r.len[0]);
    }
    r.avx2 = has_avx2();
    r
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

// SAFETY: `free` is only handed mbufs of this pool (the receive path and
// `alloc_bulk` make every handle of it).
unsafe impl ExternalPool for DpdkPoolOps {
    fn alloc_bulk(&self, pool: &Mempool, out: &mut Vec<Mbuf>, n: usize) -> Result<(), PmdError> {
        if n > u32::MAX as usize {
            return Err(PmdError::Exhausted { pool: pool.name().to_string(), wanted: n });
        }
        out.reserve(n);
        let start = out.len();
        // SAFETY: `out` has room for `n` more handles; an `Mbuf` is a transparent
        // `rte_mbuf *` of this pool, so DPDK writes the handles in place, each a
        // fresh, reset, single-segment mbuf that is ours; on failure nothing was
        // taken and nothing is exposed.
        let r = unsafe {
            sys::rte_shim_pktmbuf_alloc_bulk(
                self.mp.as_ptr(),
                out.as_mut_ptr().add(start) as *mut *mut sys::rte_mbuf,
                n as u32,
            )
        };
        if r != 0 {
            return Err(PmdError::Exhausted { pool: pool.name().to_string(), wanted: n });
        }
        // SAFETY: the `n` slots were written above.
        unsafe { out.set_len(start + n) };
        Ok(())
    }

    unsafe fn free(&self, hdr: NonNull<MbufHdr>) {
        // SAFETY: `hdr` is an mbuf of this pool (trait contract), which we own.
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
/// Every mbuf gets a private area of [`PRIV_SIZE`] bytes for the pointer to our pool. The
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
    // `init_priv` only writes each mbuf's private area (PRIV_SIZE bytes).
    unsafe { sys::rte_mempool_obj_iter(mp.as_ptr(), Some(init_priv), pool.core_ptr().as_ptr().cast()) };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ptrs(addrs: &[usize]) -> Vec<NonNull<MbufHdr>> {
        addrs.iter().map(|&a| NonNull::new(a as *mut MbufHdr).unwrap()).collect()
    }

    #[test]
    fn provenance_by_address_accepts_exactly_the_pool_memory() {
        let lo = 0x1_0000_0040usize;
        let ranged = PoolRanges { lo: [lo, 0, 0, 0], len: [0x1000, 0, 0, 0], n: 1, block: None, avx2: false };
        // A window of 2^13 from below the chunk (as `eal_block` picks it),
        // tested with the scalar and (where the CPU has it) the AVX2 code.
        let windowed = PoolRanges { block: Some((lo - 0x40, 13)), ..ranged };
        let windowed_avx2 = PoolRanges { avx2: has_avx2(), ..windowed };
        for r in [ranged, windowed, windowed_avx2] {
            assert!(r.contains_all(&ptrs(&[lo, lo + 0x800, lo + 0xfc0, lo + 8, lo + 16])));
            assert!(r.contains_all(&[]));
            for bad in [lo - 0x1000_0000, 0x40, usize::MAX & !63] {
                assert!(!r.contains_all(&ptrs(&[lo, lo + 64, bad, lo + 128, lo + 192])), "{bad:#x}");
            }
            // Bursts long enough for the vector loop, one bad handle anywhere
            // (the loop body, the remainder) or none.
            for len in [31, 32, 37, 64] {
                let good: Vec<usize> = (0..len).map(|i| lo + (i * 0x40) % 0x1000).collect();
                assert!(r.contains_all(&ptrs(&good)), "{len}");
                for at in [0, len / 2, len - 1] {
                    let mut v = good.clone();
                    v[at] = lo + 0x10_0000;
                    assert!(!r.contains_all(&ptrs(&v)), "{len} {at}");
                }
            }
        }
        // Just past the end: outside the chunk, and outside the window too.
        assert!(!ranged.contains_all(&ptrs(&[lo + 0x1000])));
        assert!(!windowed.contains_all(&ptrs(&[lo - 0x40 + 0x2000])));
        // No chunk known: nothing matches (the caller's slow path checks each frame).
        assert!(!PoolRanges::default().contains_all(&ptrs(&[lo])));
    }
}
