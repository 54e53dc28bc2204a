//! Raw FFI bindings to the system's DPDK (Data Plane Development Kit).
//!
//! This is a `-sys` crate: it binds, links and compiles, and adds almost
//! nothing on top. The safe layer (mbufs, mempools, ports as the `pmd` crate's
//! traits) lives in `pmd`'s `dpdk` driver.
//!
//! # What is bound
//!
//! `build.rs` runs bindgen over `csrc/wrapper.h`, which includes
//! `rte_eal.h`, `rte_ethdev.h`, `rte_mbuf.h`, `rte_mempool.h`, `rte_ring.h`,
//! `rte_lcore.h`, `rte_errno.h`, `rte_bus_vdev.h`, `rte_dev.h`,
//! `rte_ether.h` and `rte_version.h`. Every function, type and constant whose
//! name starts with `rte_`/`RTE_` is kept (plus `LCORE_ID_ANY`,
//! `SOCKET_ID_ANY` and `E_RTE_*`); types they use come along. A C enum is a
//! type alias plus top-level constants, as in C (`rte_eth_rx_mq_mode`,
//! `RTE_ETH_MQ_RX_NONE`), and
//! `size_t` is `usize`. bindgen's layout checks are emitted as compile-time
//! assertions, so a layout mismatch between bindgen and the installed headers
//! fails the build rather than a test.
//!
//! Every struct layout comes from the headers installed on the build machine;
//! nothing in this crate hard-codes an offset, so the same source builds
//! against DPDK 22.11, 23.11 and 24.11. Code that uses the bindings must do
//! the same: read fields by name (`(*m).data_len`), never by offset. A few
//! packed protocol-header types that rustc rejects in bindgen's rendering
//! (`rte_l2tpv2_*`, `rte_gtp_*`) are opaque: right size and alignment, no
//! fields.
//!
//! # The shim
//!
//! DPDK's fast path is `static inline` in its headers (`rte_pktmbuf_alloc`,
//! `rte_pktmbuf_free`, ...) and `rte_errno` / `rte_lcore_id()` read C
//! `__thread` variables through macros. None of those has a symbol in any
//! shared library, so Rust cannot call them. `csrc/shim.c` defines one
//! non-inline C function per such item, named `rte_shim_*`, compiled by the
//! `cc` crate with the cflags from `pkg-config --cflags libdpdk` (which carry
//! `-include rte_config.h` and DPDK's own `-march`; never `-march=native`).
//! They are declared in `csrc/shim.h` and bound like the rest:
//!
//! | shim                               | wraps                               |
//! |------------------------------------|-------------------------------------|
//! | [`rte_shim_errno`], [`rte_shim_set_errno`] | the `rte_errno` per-lcore macro |
//! | [`rte_shim_lcore_id`]              | `rte_lcore_id()`                    |
//! | [`rte_shim_pktmbuf_alloc`], [`rte_shim_pktmbuf_alloc_bulk`] | `rte_pktmbuf_alloc`, `rte_pktmbuf_alloc_bulk` |
//! | [`rte_shim_pktmbuf_free`], [`rte_shim_pktmbuf_reset`] | `rte_pktmbuf_free`, `rte_pktmbuf_reset` |
//! | [`rte_shim_pktmbuf_mtod`]          | `rte_pktmbuf_mtod(m, void *)` (`buf_addr + data_off`) |
//! | [`rte_shim_pktmbuf_headroom`], [`rte_shim_pktmbuf_tailroom`] | same names without `shim_` |
//! | [`rte_shim_pktmbuf_prepend`], [`rte_shim_pktmbuf_append`], [`rte_shim_pktmbuf_adj`], [`rte_shim_pktmbuf_trim`] | same names without `shim_` |
//! | [`rte_shim_mbuf_refcnt_read`], [`rte_shim_mbuf_refcnt_update`] | same names without `shim_` |
//! | [`rte_shim_mbuf_to_priv`], [`rte_shim_pktmbuf_priv_size`], [`rte_shim_pktmbuf_data_room_size`] | same names without `shim_` |
//! | [`rte_shim_eth_flags`]            | the `RTE_ETH_{RX,TX}_OFFLOAD_*` and `RTE_ETH_RSS_*` values, which are `RTE_BIT64()` macros bindgen cannot evaluate |
//!
//! The shim gets exactly the `-march` that DPDK's pkg-config file names
//! (`-march=corei7` on Debian 12, whose DPDK targets a baseline x86-64 with
//! SSE4.2), never `-march=native`, so a binary built on one machine runs
//! wherever that DPDK runs.
//!
//! Functions DPDK already exports are bound directly and not wrapped:
//! `rte_pktmbuf_free_bulk`, `rte_mempool_avail_count`,
//! `rte_mempool_in_use_count`, `rte_strerror`, `rte_socket_id`, ...
//!
//! Each shim call is a real function call (no cross-language inlining), a
//! few nanoseconds per mbuf for alloc/free. Code that needs per-packet fields
//! should read the `rte_mbuf` struct directly.
//!
//! # The burst functions, in Rust
//!
//! [`eth_rx_burst`] and [`eth_tx_burst`] are `rte_eth_rx_burst` and
//! `rte_eth_tx_burst` written in Rust over the same public table the C inline
//! functions read, `rte_eth_fp_ops` (exported by `librte_ethdev` and part of
//! its ABI since 21.11; its layout comes from the installed headers like
//! every other). They are what a C application compiles into its own loop:
//! read the port's entry, call the driver's burst function with the queue's
//! data, run the queue's callbacks if any are registered. They are not in
//! the shim because a C call per burst on top of the driver's costs about
//! 15 instructions each way, which on a fast vdev (`net_ring`, ~30
//! instructions per frame in all) is several per cent. Left out, as in
//! DPDK's default build: the `RTE_ETHDEV_DEBUG_RX/TX` argument checks and the
//! fast-path trace points (`RTE_ENABLE_TRACE_FP`), both compile-time opt-ins.
//!
//! # Linking
//!
//! DPDK is linked dynamically (`-lrte_eal -lrte_ethdev ...` from
//! pkg-config, plus `-lrte_bus_vdev`, which `libdpdk.pc` lists only for
//! static builds). Dynamic linking matters: EAL loads the poll-mode drivers
//! in its plugin directory (on Debian 12,
//! `/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0`) only when `librte_eal` itself
//! is a shared object. Without that, `--vdev net_null0` finds no driver.
//!
//! # Which DPDK
//!
//! The build needs `pkg-config`, DPDK >= 22.11's `libdpdk.pc`, and libclang
//! (for bindgen). On Debian/Ubuntu: `apt-get install libdpdk-dev libclang-dev
//! pkg-config`. To build against another DPDK (one built from source, a newer
//! LTS), point `PKG_CONFIG_PATH` at the directory that holds its
//! `libdpdk.pc`, for example
//! `PKG_CONFIG_PATH=/opt/dpdk-24.11/lib/x86_64-linux-gnu/pkgconfig`; at run
//! time its libraries must be found too (`LD_LIBRARY_PATH` or an rpath).
//! The version found is passed to dependents as `DEP_DPDK_VERSION`, its
//! include directories as `DEP_DPDK_INCLUDE`.
//!
//! Debian splits DPDK's headers in two: the architecture-independent ones in
//! `/usr/include/dpdk` and the generated, architecture-specific ones
//! (`rte_config.h`, `rte_build_config.h`) in
//! `/usr/include/x86_64-linux-gnu/dpdk`. `pkg-config --cflags libdpdk` names
//! both (the second as `/usr/include/dpdk/../x86_64-linux-gnu/dpdk`);
//! `build.rs` passes every `-I` pkg-config gives to both clang (bindgen) and
//! the C compiler, so it never guesses a path.
//!
//! # Running EAL without hugepages (tests, CI)
//!
//! `tests/eal_null_port.rs` initialises EAL with
//! `--no-huge -m 256 --no-pci --no-shconf --no-telemetry --vdev net_null0 -l 0`.
//! On 22.11 `--no-huge` switches EAL to legacy memory mode, which it refuses
//! to combine with `--in-memory` ("Option --legacy-mem is not compatible
//! with --in-memory"); `--no-shconf` is the part of `--in-memory` that avoids
//! shared config files. EAL still creates an (empty) runtime directory,
//! `/var/run/dpdk/rte` for root. EAL initialises once per process, so each
//! test that needs it is its own test binary.
//!
//! # Safety
//!
//! Everything re-exported from the bindings is `unsafe` to call and follows
//! DPDK's own rules: EAL must be initialised (`rte_eal_init`) once per
//! process before almost anything else, and fast-path functions on a queue
//! must be called from one thread at a time.

/// The bindgen output: every `rte_*`/`RTE_*` item plus the `rte_shim_*`
/// wrappers. The lints allowed here are the ones bindgen's output trips;
/// they are allowed for this module only.
#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    improper_ctypes,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::pedantic,
    rustdoc::all
)]
mod bindings {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

pub use bindings::*;

use std::ffi::CStr;
use std::sync::atomic::Ordering::Relaxed;

/// The fast-path table entry of `port_id`: `&rte_eth_fp_ops[port_id]`. Its
/// address is fixed for the life of the process (the table is a static array
/// in `librte_ethdev`); the driver fills it when the port starts and points it
/// at dummy functions when the port stops.
///
/// # Safety
///
/// `port_id < RTE_MAX_ETHPORTS`.
#[inline]
pub unsafe fn eth_fp_ops(port_id: u16) -> *mut rte_eth_fp_ops {
    debug_assert!((port_id as u32) < RTE_MAX_ETHPORTS);
    // SAFETY: in bounds (caller); taking the address reads nothing.
    unsafe { std::ptr::addr_of_mut!(rte_eth_fp_ops).cast::<rte_eth_fp_ops>().add(port_id as usize) }
}

/// `rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts)` (see the crate
/// docs), given `fp = eth_fp_ops(port_id)`.
///
/// # Safety
///
/// As for `rte_eth_rx_burst`: `fp` is `eth_fp_ops(port_id)`, `queue_id` is a
/// configured receive queue of that port, no other thread polls it, and
/// `rx_pkts` has room for `nb_pkts` pointers.
#[inline(always)]
pub unsafe fn eth_rx_burst(
    fp: *const rte_eth_fp_ops,
    port_id: u16,
    queue_id: u16,
    rx_pkts: *mut *mut rte_mbuf,
    nb_pkts: u16,
) -> u16 {
    // SAFETY: the caller's contract is rte_eth_rx_burst's; the table entry is
    // always filled (dummy functions and queues while the port is stopped), so
    // the function pointer is set, as the C inline assumes.
    unsafe {
        let p = &*fp;
        let qd = *p.rxq.data.add(queue_id as usize);
        let Some(f) = p.rx_pkt_burst else { return 0 };
        let mut n = f(qd, rx_pkts, nb_pkts);
        // Relaxed, as in C: a callback is published with a release store and
        // everything read through it depends on this load.
        let cb = std::sync::atomic::AtomicPtr::from_ptr(p.rxq.clbk.add(queue_id as usize)).load(Relaxed);
        if !cb.is_null() {
            n = rte_eth_call_rx_callbacks(port_id, queue_id, rx_pkts, n, nb_pkts, cb);
        }
        n
    }
}

/// `rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts)` (see the crate
/// docs), given `fp = eth_fp_ops(port_id)`.
///
/// # Safety
///
/// As for `rte_eth_tx_burst`: `fp` is `eth_fp_ops(port_id)`, `queue_id` is a
/// configured transmit queue of that port, no other thread uses it, and
/// `tx_pkts[..nb_pkts]` are valid mbufs the caller owns; the device owns the
/// first `n` of them afterwards (`n` returned).
#[inline(always)]
pub unsafe fn eth_tx_burst(
    fp: *const rte_eth_fp_ops,
    port_id: u16,
    queue_id: u16,
    tx_pkts: *mut *mut rte_mbuf,
    mut nb_pkts: u16,
) -> u16 {
    // SAFETY: as in `eth_rx_burst`.
    unsafe {
        let p = &*fp;
        let qd = *p.txq.data.add(queue_id as usize);
        let cb = std::sync::atomic::AtomicPtr::from_ptr(p.txq.clbk.add(queue_id as usize)).load(Relaxed);
        if !cb.is_null() {
            nb_pkts = rte_eth_call_tx_callbacks(port_id, queue_id, tx_pkts, nb_pkts, cb);
        }
        let Some(f) = p.tx_pkt_burst else { return 0 };
        f(qd, tx_pkts, nb_pkts)
    }
}

/// DPDK's text for an error number: the C library's `strerror` text for a
/// system errno, DPDK's own text for `E_RTE_*` values.
///
/// Works before `rte_eal_init`, and on any thread.
pub fn strerror(errnum: i32) -> String {
    // SAFETY: rte_strerror accepts any int. It returns either a pointer to a
    // static string or a pointer into a per-thread buffer that stays valid
    // until the next rte_strerror call on this thread; either way it is a
    // NUL-terminated string, and we copy it out before returning.
    unsafe {
        let p = rte_strerror(errnum);
        if p.is_null() {
            return format!("unknown error {errnum}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// The calling thread's `rte_errno`.
pub fn errno() -> i32 {
    // SAFETY: the shim reads the calling thread's `rte_errno` thread-local
    // variable; it takes no arguments and has no preconditions.
    unsafe { rte_shim_errno() }
}

/// The version string of the DPDK libraries loaded at run time, such as
/// `"DPDK 22.11.11"` (which may differ from the headers bound at build time;
/// see [`RTE_VER_YEAR`] and friends for those).
pub fn version() -> String {
    // SAFETY: rte_version takes no arguments and returns a pointer to a
    // static NUL-terminated string.
    unsafe { CStr::from_ptr(rte_version()).to_string_lossy().into_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strerror_without_eal() {
        assert_eq!(strerror(22), "Invalid argument"); // EINVAL
        let e = strerror(E_RTE_NO_CONFIG as i32);
        assert!(e.contains("config"), "{e}");
    }

    #[test]
    fn errno_roundtrip() {
        // SAFETY: sets this thread's rte_errno; no preconditions.
        unsafe { rte_shim_set_errno(7) };
        assert_eq!(errno(), 7);
    }

    #[test]
    fn version_matches_headers() {
        let v = version();
        let want = format!("DPDK {RTE_VER_YEAR}.{RTE_VER_MONTH:02}");
        assert!(v.starts_with(&want), "{v} vs headers {want}");
    }

    #[test]
    fn lcore_id_outside_eal() {
        // SAFETY: reads this thread's lcore id; no preconditions.
        let id = unsafe { rte_shim_lcore_id() };
        assert_eq!(id, LCORE_ID_ANY);
    }
}
