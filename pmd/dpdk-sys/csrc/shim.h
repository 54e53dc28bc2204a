/*
 * Non-inline wrappers around DPDK's static-inline fast-path functions and
 * per-lcore macros, which have no symbol in any libdpdk shared object and so
 * cannot be called from Rust directly. Every wrapper is a one-line forward;
 * the argument and return types are exactly those of the wrapped function.
 *
 * Functions that DPDK already exports as real symbols (for example
 * rte_pktmbuf_free_bulk, rte_mempool_avail_count, rte_mempool_in_use_count,
 * rte_strerror, rte_socket_id) are NOT wrapped: bind those directly.
 */
#ifndef DPDK_SYS_SHIM_H
#define DPDK_SYS_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;

/* ---- errno / lcore (per-lcore thread-local variables behind macros) ---- */

/** Value of `rte_errno` for the calling thread. */
int rte_shim_errno(void);
/** Set `rte_errno` for the calling thread. */
void rte_shim_set_errno(int value);
/** `rte_lcore_id()`: the calling thread's lcore id, or LCORE_ID_ANY. */
unsigned int rte_shim_lcore_id(void);

/* ---- mbuf alloc / free ---- */

/** `rte_pktmbuf_alloc()`: NULL when the pool is empty. */
struct rte_mbuf *rte_shim_pktmbuf_alloc(struct rte_mempool *mp);
/** `rte_pktmbuf_alloc_bulk()`: 0 on success; a negative errno, with nothing
 *  taken, if the pool cannot supply all `count` mbufs (documented as
 *  -ENOENT, but 22.11's default ring driver returns -ENOBUFS). */
int rte_shim_pktmbuf_alloc_bulk(struct rte_mempool *mp,
				struct rte_mbuf **mbufs, unsigned int count);
/** `rte_pktmbuf_free()`: frees every segment of the chain; NULL is a no-op. */
void rte_shim_pktmbuf_free(struct rte_mbuf *m);
/** `rte_pktmbuf_reset()` */
void rte_shim_pktmbuf_reset(struct rte_mbuf *m);

/* ---- mbuf data access ---- */

/** `rte_pktmbuf_mtod(m, void *)`: `buf_addr + data_off`. */
void *rte_shim_pktmbuf_mtod(const struct rte_mbuf *m);
/** `rte_pktmbuf_headroom()` */
uint16_t rte_shim_pktmbuf_headroom(const struct rte_mbuf *m);
/** `rte_pktmbuf_tailroom()` (of the last segment) */
uint16_t rte_shim_pktmbuf_tailroom(const struct rte_mbuf *m);
/** `rte_pktmbuf_prepend()`: NULL if there is not enough headroom. */
char *rte_shim_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
/** `rte_pktmbuf_append()`: NULL if there is not enough tailroom. */
char *rte_shim_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
/** `rte_pktmbuf_adj()`: NULL if `len` exceeds the first segment. */
char *rte_shim_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
/** `rte_pktmbuf_trim()`: -1 if `len` exceeds the last segment. */
int rte_shim_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);

/* ---- refcount and private area ---- */

/** `rte_mbuf_refcnt_read()` */
uint16_t rte_shim_mbuf_refcnt_read(const struct rte_mbuf *m);
/** `rte_mbuf_refcnt_update()`: returns the new value. */
uint16_t rte_shim_mbuf_refcnt_update(struct rte_mbuf *m, int16_t value);
/** `rte_mbuf_to_priv()`: start of the application private area that
 *  follows `struct rte_mbuf` (size given to rte_pktmbuf_pool_create). */
void *rte_shim_mbuf_to_priv(struct rte_mbuf *m);
/** `rte_pktmbuf_priv_size()` of a pktmbuf pool. */
uint16_t rte_shim_pktmbuf_priv_size(struct rte_mempool *mp);
/** `rte_pktmbuf_data_room_size()` of a pktmbuf pool. */
uint16_t rte_shim_pktmbuf_data_room_size(struct rte_mempool *mp);

/* ---- flag values behind RTE_BIT64(): function-like macros that bindgen
 * cannot evaluate. Filled from the installed headers at run time, so no
 * bit position is hard-coded on the Rust side. ---- */

/** `RTE_ETH_RX_OFFLOAD_*`, `RTE_ETH_TX_OFFLOAD_*` and `RTE_ETH_RSS_*` bits. */
struct rte_shim_eth_flags {
	uint64_t rx_offload_vlan_strip;
	uint64_t rx_offload_ipv4_cksum;
	uint64_t rx_offload_udp_cksum;
	uint64_t rx_offload_tcp_cksum;
	uint64_t rx_offload_tcp_lro;
	uint64_t rx_offload_scatter;
	uint64_t rx_offload_rss_hash;
	uint64_t tx_offload_vlan_insert;
	uint64_t tx_offload_ipv4_cksum;
	uint64_t tx_offload_udp_cksum;
	uint64_t tx_offload_tcp_cksum;
	uint64_t tx_offload_tcp_tso;
	uint64_t tx_offload_udp_tso;
	uint64_t tx_offload_multi_segs;
	uint64_t rss_ipv4;
	uint64_t rss_nonfrag_ipv4_tcp;
	uint64_t rss_nonfrag_ipv4_udp;
	uint64_t rss_ipv6;
	uint64_t rss_nonfrag_ipv6_tcp;
	uint64_t rss_nonfrag_ipv6_udp;
};
/** Fills `out` with the values of the macros above. */
void rte_shim_eth_flags(struct rte_shim_eth_flags *out);

/** `rte_softrss` (static inline in rte_thash.h): the Toeplitz hash of
 * `input_len` host-order 32-bit words under `rss_key` (at least
 * 4 * input_len + 4 bytes). pmd's tests check its own hash against it. */
uint32_t rte_shim_softrss(uint32_t *input_tuple, uint32_t input_len,
			  const uint8_t *rss_key);

#endif
