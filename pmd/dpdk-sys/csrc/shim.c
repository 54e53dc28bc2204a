/*
 * See shim.h. Compiled by build.rs with the cflags from `pkg-config --cflags
 * libdpdk` (which include `-include rte_config.h` and DPDK's own -march), so
 * the inline bodies expanded here match the ABI of the installed libraries.
 */
#include "wrapper.h"
#include <rte_thash.h>

int rte_shim_errno(void) { return rte_errno; }

void rte_shim_set_errno(int value) { rte_errno = value; }

unsigned int rte_shim_lcore_id(void) { return rte_lcore_id(); }

struct rte_mbuf *rte_shim_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

int rte_shim_pktmbuf_alloc_bulk(struct rte_mempool *mp,
				struct rte_mbuf **mbufs, unsigned int count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void rte_shim_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }

void rte_shim_pktmbuf_reset(struct rte_mbuf *m) { rte_pktmbuf_reset(m); }

void *rte_shim_pktmbuf_mtod(const struct rte_mbuf *m)
{
	return (char *)m->buf_addr + m->data_off;
}

uint16_t rte_shim_pktmbuf_headroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_headroom(m);
}

uint16_t rte_shim_pktmbuf_tailroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_tailroom(m);
}

char *rte_shim_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_prepend(m, len);
}

char *rte_shim_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_append(m, len);
}

char *rte_shim_pktmbuf_adj(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_adj(m, len);
}

int rte_shim_pktmbuf_trim(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_trim(m, len);
}

uint16_t rte_shim_mbuf_refcnt_read(const struct rte_mbuf *m)
{
	return rte_mbuf_refcnt_read(m);
}

uint16_t rte_shim_mbuf_refcnt_update(struct rte_mbuf *m, int16_t value)
{
	return rte_mbuf_refcnt_update(m, value);
}

void *rte_shim_mbuf_to_priv(struct rte_mbuf *m) { return rte_mbuf_to_priv(m); }

uint16_t rte_shim_pktmbuf_priv_size(struct rte_mempool *mp)
{
	return rte_pktmbuf_priv_size(mp);
}

uint16_t rte_shim_pktmbuf_data_room_size(struct rte_mempool *mp)
{
	return rte_pktmbuf_data_room_size(mp);
}

void rte_shim_eth_flags(struct rte_shim_eth_flags *out)
{
	out->rx_offload_vlan_strip = RTE_ETH_RX_OFFLOAD_VLAN_STRIP;
	out->rx_offload_ipv4_cksum = RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;
	out->rx_offload_udp_cksum = RTE_ETH_RX_OFFLOAD_UDP_CKSUM;
	out->rx_offload_tcp_cksum = RTE_ETH_RX_OFFLOAD_TCP_CKSUM;
	out->rx_offload_tcp_lro = RTE_ETH_RX_OFFLOAD_TCP_LRO;
	out->rx_offload_scatter = RTE_ETH_RX_OFFLOAD_SCATTER;
	out->rx_offload_rss_hash = RTE_ETH_RX_OFFLOAD_RSS_HASH;
	out->tx_offload_vlan_insert = RTE_ETH_TX_OFFLOAD_VLAN_INSERT;
	out->tx_offload_ipv4_cksum = RTE_ETH_TX_OFFLOAD_IPV4_CKSUM;
	out->tx_offload_udp_cksum = RTE_ETH_TX_OFFLOAD_UDP_CKSUM;
	out->tx_offload_tcp_cksum = RTE_ETH_TX_OFFLOAD_TCP_CKSUM;
	out->tx_offload_tcp_tso = RTE_ETH_TX_OFFLOAD_TCP_TSO;
	out->tx_offload_udp_tso = RTE_ETH_TX_OFFLOAD_UDP_TSO;
	out->tx_offload_multi_segs = RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
	out->rss_ipv4 = RTE_ETH_RSS_IPV4;
	out->rss_nonfrag_ipv4_tcp = RTE_ETH_RSS_NONFRAG_IPV4_TCP;
	out->rss_nonfrag_ipv4_udp = RTE_ETH_RSS_NONFRAG_IPV4_UDP;
	out->rss_ipv6 = RTE_ETH_RSS_IPV6;
	out->rss_nonfrag_ipv6_tcp = RTE_ETH_RSS_NONFRAG_IPV6_TCP;
	out->rss_nonfrag_ipv6_udp = RTE_ETH_RSS_NONFRAG_IPV6_UDP;
}

uint32_t rte_shim_softrss(uint32_t *input_tuple, uint32_t input_len,
			  const uint8_t *rss_key)
{
	return rte_softrss(input_tuple, input_len, rss_key);
}
