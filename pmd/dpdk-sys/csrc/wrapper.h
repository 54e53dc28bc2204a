/*
 * Everything bindgen sees. The DPDK headers come first, in dependency order
 * that works on 22.11, 23.11 and 24.11; shim.h declares the non-inline
 * wrappers compiled from shim.c.
 *
 * rte_config.h is normally force-included by pkg-config's cflags
 * (`-include rte_config.h`); including it here as well is harmless
 * (it has an include guard) and keeps this header usable on its own.
 */
#ifndef DPDK_SYS_WRAPPER_H
#define DPDK_SYS_WRAPPER_H

#include <rte_config.h>
#include <rte_version.h>
#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_dev.h>
#include <rte_bus_vdev.h>
#include <rte_ring.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ether.h>
#include <rte_ethdev.h>

#include "shim.h"

#endif
