//! The DPDK ethdev behind our [`Port`] trait.

use std::ffi::{CStr, CString};
use std::os::raw::c_int;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use dpdk_sys as sys;

use super::pool::{pool_ranges, rte_pool_of, rte_pool_of_core, PoolRanges};
use crate::drivers::{claim_queue, ensure_configurable, ensure_no_handles, not_configured};
use crate::port::Origin;
use crate::port::{
    frame_fits_mtu, Counter, Link, MacAddr, PortConfig, PortCounters, PortInfo, PortStats, RssCapabilities,
    RssHashTypes, RxCounters, TxCounters,
};
use crate::{Mbuf, Mempool, PmdError, Port, Received, RxOffloads, RxQueue, TxOffloads, TxQueue};

/// Linux's ENOTSUP (EOPNOTSUPP), what ethdev returns for an operation the
/// driver lacks.
const ENOTSUP: c_int = libc::ENOTSUP;

/// Largest burst handed to `rte_eth_rx_burst` / `rte_eth_tx_burst` at once.
pub const MAX_BURST: usize = 512;

fn flags() -> &'static sys::rte_shim_eth_flags {
    static F: OnceLock<sys::rte_shim_eth_flags> = OnceLock::new();
    F.get_or_init(|| {
        let mut f = sys::rte_shim_eth_flags::default();
        // SAFETY: fills a plain struct of integers; no preconditions.
        unsafe { sys::rte_shim_eth_flags(&mut f) };
        f
    })
}

fn rx_offload_map() -> [(RxOffloads, u64); 7] {
    let f = flags();
    [
        (RxOffloads::IPV4_CKSUM, f.rx_offload_ipv4_cksum),
        (RxOffloads::UDP_CKSUM, f.rx_offload_udp_cksum),
        (RxOffloads::TCP_CKSUM, f.rx_offload_tcp_cksum),
        (RxOffloads::RSS_HASH, f.rx_offload_rss_hash),
        (RxOffloads::VLAN_STRIP, f.rx_offload_vlan_strip),
        (RxOffloads::TCP_LRO, f.rx_offload_tcp_lro),
        (RxOffloads::SCATTER, f.rx_offload_scatter),
    ]
}

fn tx_offload_map() -> [(TxOffloads, u64); 7] {
    let f = flags();
    [
        (TxOffloads::IPV4_CKSUM, f.tx_offload_ipv4_cksum),
        (TxOffloads::UDP_CKSUM, f.tx_offload_udp_cksum),
        (TxOffloads::TCP_CKSUM, f.tx_offload_tcp_cksum),
        (TxOffloads::TCP_TSO, f.tx_offload_tcp_tso),
        (TxOffloads::UDP_TSO, f.tx_offload_udp_tso),
        (TxOffloads::VLAN_INSERT, f.tx_offload_vlan_insert),
        (TxOffloads::MULTI_SEGS, f.tx_offload_multi_segs),
    ]
}

fn rss_map() -> [(RssHashTypes, u64); 6] {
    let f = flags();
    [
        (RssHashTypes::IPV4, f.rss_ipv4),
        (RssHashTypes::IPV4_TCP, f.rss_nonfrag_ipv4_tcp),
        (RssHashTypes::IPV4_UDP, f.rss_nonfrag_ipv4_udp),
        (RssHashTypes::IPV6, f.rss_ipv6),
        (RssHashTypes::IPV6_TCP, f.rss_nonfrag_ipv6_tcp),
        (RssHashTypes::IPV6_UDP, f.rss_nonfrag_ipv6_udp),
    ]
}

fn to_dpdk<T: bitflags::Flags + Copy>(ours: T, map: &[(T, u64)]) -> u64 {
    map.iter().filter(|(o, _)| ours.contains(*o)).fold(0, |a, (_, d)| a | d)
}

fn from_dpdk<T: bitflags::Flags + Copy>(dpdk: u64, map: &[(T, u64)]) -> T {
    map.iter().filter(|(_, d)| dpdk & d == *d && *d != 0).fold(T::empty(), |a, (o, _)| a.union(*o))
}

fn err_text(ret: c_int) -> String {
    let e = if ret < 0 { -ret } else { sys::errno() };
    format!("{} (errno {e})", sys::strerror(e))
}

/// What a `dpdk:` spec's target names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A PCI device, normalised to `DDDD:BB:DD.F`.
    Pci(String),
    /// A virtual device: driver-instance name and its `key=value,...` args.
    Vdev { name: String, args: String },
}

/// Parses a PCI address (`0000:03:00.0` or `03:00.0`) into its normal form.
pub(crate) fn parse_pci(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (dom, bus, devfn) = match parts.as_slice() {
        [d, b, df] => (*d, *b, *df),
        [b, df] => ("0000", *b, *df),
        _ => return None,
    };
    let (dev, func) = devfn.split_once('.')?;
    let hex = |x: &str, n: usize| x.len() <= n && !x.is_empty() && x.chars().all(|c| c.is_ascii_hexdigit());
    if !(hex(dom, 4) && hex(bus, 2) && hex(dev, 2) && func.len() == 1 && func.chars().all(|c| ('0'..='7').contains(&c)))
    {
        return None;
    }
    let v = |x: &str| u32::from_str_radix(x, 16).ok();
    Some(format!("{:04x}:{:02x}:{:02x}.{}", v(dom)?, v(bus)?, v(dev)?, func))
}

pub(crate) fn parse_target(spec: &str, target: &str) -> Result<Target, PmdError> {
    let bad = |reason: String| PmdError::BadSpec { spec: spec.to_string(), reason };
    if target.is_empty() {
        return Err(bad("a dpdk port needs a device: dpdk:PCI_ADDRESS (dpdk:0000:03:00.0) or dpdk:VDEV[,ARGS] \
                        (dpdk:net_ring0, dpdk:net_tap0,iface=tap0)"
            .into()));
    }
    let (head, args) = match target.split_once(',') {
        Some((h, a)) => (h, a),
        None => (target, ""),
    };
    if let Some(pci) = parse_pci(head) {
        if !args.is_empty() {
            return Err(bad(format!("PCI device arguments ('{args}') are not supported; give only the address")));
        }
        return Ok(Target::Pci(pci));
    }
    if head.starts_with("net_") && head.len() > 4 && head.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Ok(Target::Vdev { name: head.to_string(), args: args.to_string() });
    }
    Err(bad(format!(
        "'{head}' is neither a PCI address (DDDD:BB:DD.F) nor a virtual device name (net_DRIVERn, e.g. net_ring0)"
    )))
}

/// Kernel drivers through which DPDK can own a PCI device.
const DPDK_KERNEL_DRIVERS: [&str; 3] = ["vfio-pci", "uio_pci_generic", "igb_uio"];

/// Checks in sysfs, before DPDK touches it, that a PCI device exists and is
/// bound to a driver DPDK can use.
pub(crate) fn check_pci(spec: &str, addr: &str, sysfs: &Path) -> Result<(), PmdError> {
    let dev = sysfs.join(addr);
    if !dev.exists() {
        return Err(PmdError::BadSpec {
            spec: spec.to_string(),
            reason: format!("there is no PCI device {addr} on this machine ({} does not exist)", dev.display()),
        });
    }
    let driver = std::fs::read_link(dev.join("driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    match driver {
        Some(d) if DPDK_KERNEL_DRIVERS.contains(&d.as_str()) => Ok(()),
        other => Err(PmdError::State {
            port: addr.to_string(),
            reason: format!(
                "PCI device {addr} is {}, not vfio-pci, so DPDK cannot drive it; bind it with \
                 `scripts/bind-nic.sh bind {addr}` (and `scripts/bind-nic.sh unbind {addr}` to give it back)",
                match other {
                    Some(d) => format!("bound to the kernel driver '{d}'"),
                    None => "not bound to any driver".to_string(),
                }
            ),
        }),
    }
}

fn port_by_name(name: &str) -> Option<u16> {
    let c = CString::new(name).ok()?;
    let mut id = 0u16;
    // SAFETY: EAL is initialised (callers check); `c` is a valid C string and
    // `id` a valid out-pointer.
    let r = unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    (r == 0).then_some(id)
}

/// Receive/transmit counters DPDK does not keep for us.
#[derive(Default, Debug)]
struct DriverCounters {
    /// Foreign (non-DPDK) buffers copied into an mbuf to be sent.
    tx_copies: Counter,
    /// Received multi-segment chains dropped (scatter is not supported).
    rx_dropped_segments: Counter,
}

/// A DPDK ethdev port: a PCI device bound to vfio-pci or a virtual device.
pub struct DpdkPort {
    port_id: u16,
    /// The spec target (PCI address or vdev name), for messages.
    name: String,
    /// The vdev name, if this port created it (and so removes it on drop).
    created_vdev: Option<String>,
    conf: Option<PortConfig>,
    counters: PortCounters,
    /// Per-queue driver counters (same order as `counters.tx`).
    extra: Vec<Arc<DriverCounters>>,
    rx_extra: Vec<Arc<DriverCounters>>,
    started: Arc<AtomicBool>,
    /// Device stats at the last reset.
    dev_base: sys::rte_eth_stats,
    /// `checks=full`: per-frame MTU enforcement and byte counting (see
    /// [`DpdkTx`]); `checks=none`: neither, bytes come from the device.
    checks: bool,
}

// SAFETY: a port id is a plain integer; ethdev control functions may be called
// from any thread as long as one thread at a time does (guaranteed by `&mut`).
unsafe impl Send for DpdkPort {}

impl DpdkPort {
    /// Opens the device a `dpdk:` spec target names. EAL must be initialised.
    ///
    /// `checks` is the spec's `checks=full|none` (see [`DpdkTx`]).
    pub fn open(spec: &str, target: &str, checks: bool) -> Result<DpdkPort, PmdError> {
        let t = parse_target(spec, target)?;
        if let Target::Pci(addr) = &t {
            // Before EAL: a missing or kernel-owned device is an error with the
            // fix in it, whatever EAL's state.
            check_pci(spec, addr, Path::new("/sys/bus/pci/devices"))?;
        }
        super::eal::require(target)?;
        let (name, port_id, created) = match t {
            Target::Pci(addr) => {
                let id = match port_by_name(&addr) {
                    Some(id) => id,
                    None => {
                        let c = CString::new(addr.as_str()).expect("address has no NUL");
                        // SAFETY: EAL is initialised; `c` is a valid C string.
                        let r = unsafe { sys::rte_dev_probe(c.as_ptr()) };
                        if r != 0 {
                            return Err(PmdError::State {
                                port: addr.clone(),
                                reason: format!(
                                    "DPDK could not probe PCI device {addr}: {} (was EAL started with --no-pci \
                                     or without -a {addr}? is an IOMMU / vfio no-IOMMU mode available?)",
                                    err_text(r)
                                ),
                            });
                        }
                        port_by_name(&addr).ok_or_else(|| PmdError::State {
                            port: addr.clone(),
                            reason: "probed, but no ethdev port appeared (not a network device?)".into(),
                        })?
                    }
                };
                (addr, id, None)
            }
            Target::Vdev { name, args } => match port_by_name(&name) {
                // Created at EAL start-up by `--vdev` (EalConfig::vdevs).
                Some(id) if args.is_empty() => (name, id, None),
                Some(_) => {
                    return Err(PmdError::State {
                        port: name.clone(),
                        reason: "this vdev already exists (from EAL's --vdev or another open); open it without \
                                 arguments"
                            .into(),
                    })
                }
                None => {
                    let c = CString::new(name.as_str()).expect("checked chars");
                    let a = CString::new(args.as_str()).map_err(|_| PmdError::BadSpec {
                        spec: spec.to_string(),
                        reason: "vdev arguments contain a NUL byte".into(),
                    })?;
                    // SAFETY: EAL is initialised; both are valid C strings.
                    let r = unsafe { sys::rte_vdev_init(c.as_ptr(), a.as_ptr()) };
                    if r != 0 {
                        return Err(PmdError::BadSpec {
                            spec: spec.to_string(),
                            reason: format!(
                                "DPDK could not create virtual device '{name}'{}: {} (is '{}' a DPDK driver, and \
                                 are its arguments right?)",
                                if args.is_empty() { String::new() } else { format!(" with '{args}'") },
                                err_text(r),
                                name.trim_end_matches(|c: char| c.is_ascii_digit())
                            ),
                        });
                    }
                    let id = port_by_name(&name).ok_or_else(|| PmdError::State {
                        port: name.clone(),
                        reason: "vdev created, but no ethdev port appeared (not a network driver?)".into(),
                    })?;
                    (name.clone(), id, Some(name))
                }
            },
        };
        Ok(DpdkPort {
            port_id,
            name,
            created_vdev: created,
            conf: None,
            counters: PortCounters::default(),
            extra: Vec::new(),
            rx_extra: Vec::new(),
            started: Arc::new(AtomicBool::new(false)),
            dev_base: Default::default(),
            checks,
        })
    }

    /// DPDK's port id.
    pub fn port_id(&self) -> u16 {
        self.port_id
    }

    fn dev_info(&self) -> sys::rte_eth_dev_info {
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: a valid port id and a valid out-pointer.
        unsafe { sys::rte_eth_dev_info_get(self.port_id, &mut info) };
        info
    }

    fn fail(&self, what: &str, ret: c_int) -> PmdError {
        PmdError::Io {
            context: format!("dpdk port '{}' (port id {}): {what}", self.name, self.port_id),
            source: std::io::Error::other(err_text(ret)),
        }
    }

    fn dev_stats(&self) -> sys::rte_eth_stats {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: a valid port id and a valid out-pointer.
        unsafe { sys::rte_eth_stats_get(self.port_id, &mut s) };
        s
    }

    /// Receives and frees whatever is queued on every receive queue, so a
    /// stopped port gives its buffers back (net_ring keeps frames in its rings
    /// across stop and close). Only while no queue handle is alive. At most
    /// a pool's worth of frames per queue (at least 64 Ki): a queue cannot
    /// hold more, and a device that makes frames (net_null) never runs dry.
    fn drain(&mut self) {
        if !self.is_started() || ensure_no_handles(&self.name, &self.counters.rx, &self.counters.tx).is_err() {
            return;
        }
        let nrx = self.counters.rx.len() as u16;
        let limit = self.conf.as_ref().map_or(0, |c| c.mempool.count()).max(1 << 16);
        let mut raw = [std::ptr::null_mut::<sys::rte_mbuf>(); 64];
        let fp = FpOps::of(self.port_id).0.as_ptr();
        for q in 0..nrx {
            let mut drained = 0;
            while drained < limit {
                // SAFETY: the port is started, queue `q` is configured, and no
                // handle polls it (checked above), so this thread is its only user.
                let n = unsafe { sys::eth_rx_burst(fp, self.port_id, q, raw.as_mut_ptr(), 64) };
                if n == 0 {
                    break;
                }
                // SAFETY: `n` mbufs were just received and are ours.
                unsafe { sys::rte_pktmbuf_free_bulk(raw.as_mut_ptr(), n as u32) };
                drained += n as usize;
            }
        }
    }
}

impl Drop for DpdkPort {
    fn drop(&mut self) {
        let _ = self.stop();
        // SAFETY: the port is stopped and no queue handle is polling it (they
        // are dropped before the port in every correct use; if not, close is
        // still what the user asked for by dropping the port).
        unsafe { sys::rte_eth_dev_close(self.port_id) };
        if let Some(v) = &self.created_vdev {
            let c = CString::new(v.as_str()).expect("checked chars");
            // SAFETY: we created this vdev and its port is closed.
            unsafe { sys::rte_vdev_uninit(c.as_ptr()) };
        }
    }
}

impl Port for DpdkPort {
    fn info(&self) -> PortInfo {
        let i = self.dev_info();
        let mut mac = sys::rte_ether_addr::default();
        // SAFETY: a valid port id and out-pointer.
        unsafe { sys::rte_eth_macaddr_get(self.port_id, &mut mac) };
        let mut mtu = 1500u16;
        // SAFETY: as above.
        unsafe { sys::rte_eth_dev_get_mtu(self.port_id, &mut mtu) };
        let driver = if i.driver_name.is_null() {
            "dpdk"
        } else {
            // SAFETY: DPDK's driver names are static NUL-terminated strings.
            let s = unsafe { CStr::from_ptr(i.driver_name) }.to_string_lossy();
            intern(&s)
        };
        let rss = (i.reta_size > 0 && i.hash_key_size > 0).then(|| RssCapabilities {
            key_len: i.hash_key_size as usize,
            reta_size: i.reta_size as usize,
            hash_types: from_dpdk(i.flow_type_rss_offloads, &rss_map()),
        });
        let nb_max = i.rx_desc_lim.nb_max.min(i.tx_desc_lim.nb_max);
        PortInfo {
            driver,
            name: self.name.clone(),
            mac: MacAddr(mac.addr_bytes),
            mtu,
            min_mtu: i.min_mtu,
            max_mtu: i.max_mtu,
            max_rx_queues: i.max_rx_queues,
            max_tx_queues: i.max_tx_queues,
            max_desc: if nb_max == 0 { u16::MAX } else { nb_max },
            rx_offloads: from_dpdk(i.rx_offload_capa, &rx_offload_map()),
            tx_offloads: from_dpdk(i.tx_offload_capa, &tx_offload_map()),
            rss,
        }
    }

    fn configure(&mut self, conf: &PortConfig) -> Result<(), PmdError> {
        ensure_configurable(&self.name, self.is_started(), &self.counters.rx, &self.counters.tx)?;
        let info = self.info();
        conf.validate(&info)?;
        let mp = rte_pool_of(&conf.mempool).ok_or_else(|| PmdError::Config {
            field: "mempool",
            reason: format!(
                "'{}' is not a DPDK mempool; dpdk ports receive into pools made by \
                 pmd::drivers::dpdk::create_mempool",
                conf.mempool.name()
            ),
        })?;
        let mut ec = sys::rte_eth_conf::default();
        ec.rxmode.offloads = to_dpdk(conf.rx_offloads, &rx_offload_map());
        ec.txmode.offloads = to_dpdk(conf.tx_offloads, &tx_offload_map());
        let mut key = Vec::new();
        if let Some(rss) = &conf.rss {
            key = rss.key.clone();
            ec.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            ec.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
            ec.rx_adv_conf.rss_conf.rss_key_len = key.len() as u8;
            ec.rx_adv_conf.rss_conf.rss_hf = to_dpdk(rss.hash_types, &rss_map());
        }
        // SAFETY: a valid port id, stopped; `ec` (and the key it points to, alive
        // until the end of this function) is a valid configuration.
        let r = unsafe { sys::rte_eth_dev_configure(self.port_id, conf.rx_queues, conf.tx_queues, &ec) };
        if r != 0 {
            return Err(self.fail(
                &format!(
                    "rte_eth_dev_configure({} rx, {} tx queues, offloads {:?} {:?})",
                    conf.rx_queues, conf.tx_queues, conf.rx_offloads, conf.tx_offloads
                ),
                r,
            ));
        }
        drop(key);
        // SAFETY: a valid port id.
        let socket = unsafe { sys::rte_eth_dev_socket_id(self.port_id) };
        let socket = if socket < 0 { sys::SOCKET_ID_ANY } else { socket } as u32;
        for q in 0..conf.rx_queues {
            // SAFETY: the port is configured with `rx_queues` queues; `mp` is a
            // live pktmbuf pool (the PortConfig we keep holds its Mempool).
            let r = unsafe { sys::rte_eth_rx_queue_setup(self.port_id, q, conf.rx_desc, socket, std::ptr::null(), mp) };
            if r != 0 {
                return Err(PmdError::Config {
                    field: "rx_desc",
                    reason: format!("rte_eth_rx_queue_setup(queue {q}, {} descriptors): {}", conf.rx_desc, err_text(r)),
                });
            }
        }
        for q in 0..conf.tx_queues {
            // SAFETY: as above, for transmit queues.
            let r = unsafe { sys::rte_eth_tx_queue_setup(self.port_id, q, conf.tx_desc, socket, std::ptr::null()) };
            if r != 0 {
                return Err(PmdError::Config {
                    field: "tx_desc",
                    reason: format!("rte_eth_tx_queue_setup(queue {q}, {} descriptors): {}", conf.tx_desc, err_text(r)),
                });
            }
        }
        self.counters = PortCounters::new(conf.rx_queues, conf.tx_queues);
        self.extra = (0..conf.tx_queues).map(|_| Arc::default()).collect();
        self.rx_extra = (0..conf.rx_queues).map(|_| Arc::default()).collect();
        self.dev_base = self.dev_stats();
        self.conf = Some(conf.clone());
        Ok(())
    }

    fn config(&self) -> Option<&PortConfig> {
        self.conf.as_ref()
    }

    fn start(&mut self) -> Result<(), PmdError> {
        let Some(conf) = self.conf.clone() else { return Err(not_configured(&self.name)) };
        if self.is_started() {
            return Ok(());
        }
        // SAFETY: a valid, configured port id.
        let r = unsafe { sys::rte_eth_dev_start(self.port_id) };
        if r != 0 {
            return Err(self.fail("rte_eth_dev_start", r));
        }
        if let Some(rss) = &conf.rss {
            let size = self.dev_info().reta_size as usize;
            let group = sys::RTE_ETH_RETA_GROUP_SIZE as usize;
            let mut entries = vec![sys::rte_eth_rss_reta_entry64::default(); size.div_ceil(group)];
            for i in 0..size {
                let e = &mut entries[i / group];
                e.mask |= 1 << (i % group);
                e.reta[i % group] = rss.reta[i % rss.reta.len().max(1)];
            }
            // SAFETY: `entries` holds `size` entries in groups of 64, as the
            // function expects for a table of `size` entries.
            let r = unsafe { sys::rte_eth_dev_rss_reta_update(self.port_id, entries.as_mut_ptr(), size as u16) };
            if r != 0 && !rss.reta.is_empty() {
                // SAFETY: a valid port id.
                unsafe { sys::rte_eth_dev_stop(self.port_id) };
                return Err(PmdError::Config {
                    field: "rss",
                    reason: format!("setting the {size}-entry redirection table failed: {}", err_text(r)),
                });
            }
        }
        self.started.store(true, Ordering::Release);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PmdError> {
        if !self.is_started() {
            return Ok(());
        }
        self.drain();
        self.started.store(false, Ordering::Release);
        // SAFETY: a valid, started port id.
        let r = unsafe { sys::rte_eth_dev_stop(self.port_id) };
        if r != 0 {
            return Err(self.fail("rte_eth_dev_stop", r));
        }
        Ok(())
    }

    fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    fn link(&self) -> Link {
        let mut l = sys::rte_eth_link::default();
        // SAFETY: a valid port id and out-pointer; does not wait.
        unsafe { sys::rte_eth_link_get_nowait(self.port_id, &mut l) };
        let up = l.link_status() != 0;
        Link { up, speed_mbps: if up { l.link_speed } else { 0 }, full_duplex: up && l.link_duplex() != 0 }
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), PmdError> {
        // SAFETY: a valid port id.
        let r = unsafe {
            if on {
                sys::rte_eth_promiscuous_enable(self.port_id)
            } else {
                sys::rte_eth_promiscuous_disable(self.port_id)
            }
        };
        if r != 0 && r != -ENOTSUP {
            return Err(self.fail(if on { "rte_eth_promiscuous_enable" } else { "rte_eth_promiscuous_disable" }, r));
        }
        if r != 0 && self.promiscuous() != on {
            return Err(PmdError::Unsupported {
                port: self.name.clone(),
                what: format!("turning promiscuous mode {}", if on { "on" } else { "off" }),
            });
        }
        Ok(())
    }

    fn promiscuous(&self) -> bool {
        // SAFETY: a valid port id.
        unsafe { sys::rte_eth_promiscuous_get(self.port_id) == 1 }
    }

    fn set_mtu(&mut self, mtu: u16) -> Result<(), PmdError> {
        let info = self.info();
        if mtu < info.min_mtu || mtu > info.max_mtu {
            return Err(PmdError::Config {
                field: "mtu",
                reason: format!("{mtu} is outside {}..={}", info.min_mtu, info.max_mtu),
            });
        }
        // SAFETY: a valid port id.
        let r = unsafe { sys::rte_eth_dev_set_mtu(self.port_id, mtu) };
        if r == -ENOTSUP {
            return Err(PmdError::Unsupported {
                port: self.name.clone(),
                what: format!("setting the MTU ({} has no mtu_set)", info.driver),
            });
        }
        if r != 0 {
            return Err(PmdError::Config {
                field: "mtu",
                reason: format!("rte_eth_dev_set_mtu({mtu}): {}", err_text(r)),
            });
        }
        Ok(())
    }

    fn stats(&self) -> PortStats {
        let mut s = self.counters.snapshot();
        let d = self.dev_stats();
        let b = &self.dev_base;
        s.imissed += d.imissed.wrapping_sub(b.imissed);
        s.ierrors += d.ierrors.wrapping_sub(b.ierrors);
        s.oerrors += d.oerrors.wrapping_sub(b.oerrors);
        s.rx_nombuf += d.rx_nombuf.wrapping_sub(b.rx_nombuf);
        if !self.checks {
            // No per-frame work on the data path: bytes are the device's.
            s.ibytes += d.ibytes.wrapping_sub(b.ibytes);
            s.obytes += d.obytes.wrapping_sub(b.obytes);
        }
        s
    }

    fn reset_stats(&mut self) {
        self.counters.reset();
        self.dev_base = self.dev_stats();
        // SAFETY: a valid port id.
        unsafe { sys::rte_eth_xstats_reset(self.port_id) };
        // `tx_copies` and `rx_dropped_segments` count since configure: their
        // writers are the queue handles (see `Counter`), so they are not reset.
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let mut v = self.stats().to_xstats();
        v.push(("tx_copies".into(), self.extra.iter().map(|c| c.tx_copies.get()).sum()));
        v.push(("rx_dropped_segments".into(), self.rx_extra.iter().map(|c| c.rx_dropped_segments.get()).sum()));
        // SAFETY: with a NULL array, returns the number of xstats.
        let n = unsafe { sys::rte_eth_xstats_get_names(self.port_id, std::ptr::null_mut(), 0) };
        if n > 0 {
            let mut names = vec![sys::rte_eth_xstat_name { name: [0; 64] }; n as usize];
            let mut vals = vec![sys::rte_eth_xstat::default(); n as usize];
            // SAFETY: both arrays hold `n` entries.
            let (a, b) = unsafe {
                (
                    sys::rte_eth_xstats_get_names(self.port_id, names.as_mut_ptr(), n as u32),
                    sys::rte_eth_xstats_get(self.port_id, vals.as_mut_ptr(), n as u32),
                )
            };
            if a == n && b == n {
                for x in &vals {
                    let Some(nm) = names.get(x.id as usize) else { continue };
                    // SAFETY: DPDK NUL-terminates names within the 64 bytes.
                    let name = unsafe { CStr::from_ptr(nm.name.as_ptr()) }.to_string_lossy().into_owned();
                    if !v.iter().any(|(k, _)| *k == name) {
                        v.push((format!("dev_{name}"), x.value));
                    }
                }
            }
        }
        v
    }

    fn take_rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>, PmdError> {
        let conf = self.conf.as_ref().ok_or_else(|| not_configured(&self.name))?;
        let counters = claim_queue(&self.name, "rx", q, &self.counters.rx)?;
        Ok(Box::new(DpdkRx {
            fp: FpOps::of(self.port_id),
            port_id: self.port_id,
            queue: q,
            _pool: conf.mempool.clone(),
            started: self.started.clone(),
            counters,
            extra: self.rx_extra[q as usize].clone(),
            checks: self.checks,
        }))
    }

    fn take_tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>, PmdError> {
        let conf = self.conf.as_ref().ok_or_else(|| not_configured(&self.name))?;
        let counters = claim_queue(&self.name, "tx", q, &self.counters.tx)?;
        let mtu = self.info().mtu;
        let own_mp = rte_pool_of(&conf.mempool);
        let own_ranges = own_mp.map(pool_ranges).unwrap_or_default();
        Ok(Box::new(DpdkTx {
            fp: FpOps::of(self.port_id),
            port_id: self.port_id,
            queue: q,
            pool: conf.mempool.clone(),
            own_mp: own_mp.map_or(0, |p| p as usize),
            own_ranges,
            checks: self.checks,
            mtu,
            started: self.started.clone(),
            counters,
            extra: self.extra[q as usize].clone(),
        }))
    }
}

/// `PortInfo::driver` is `&'static str`; DPDK's driver names are static in
/// the loaded libraries, but we copy them once per distinct name to stay
/// independent of library lifetimes.
fn intern(s: &str) -> &'static str {
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut v = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = v.iter().find(|n| **n == s) {
        return n;
    }
    let n: &'static str = Box::leak(s.to_string().into_boxed_str());
    v.push(n);
    n
}

/// The port's entry in ethdev's fast-path table (`rte_eth_fp_ops[port]`),
/// through which the queue handles call the driver's burst functions as DPDK's
/// inline `rte_eth_rx_burst`/`rte_eth_tx_burst` do (see `dpdk_sys::eth_rx_burst`
/// for why not through the shim). The address is that of an element of a
/// static array, fixed for the process's life.
#[derive(Clone, Copy)]
struct FpOps(NonNull<sys::rte_eth_fp_ops>);

// SAFETY: the pointer is to a process-wide static table; which thread reads it
// is governed by the queue handle owning it (one poller per queue).
unsafe impl Send for FpOps {}

impl FpOps {
    fn of(port_id: u16) -> FpOps {
        assert!((port_id as u32) < sys::RTE_MAX_ETHPORTS, "port id {port_id} out of ethdev's range");
        // SAFETY: in range, checked above; the address of a static's element.
        FpOps(NonNull::new(unsafe { sys::eth_fp_ops(port_id) }).expect("static table"))
    }
}

/// Receive queue of a DPDK port. An [`Mbuf`] is a transparent `rte_mbuf *`
/// (see the `mbuf` module docs), so `rte_eth_rx_burst` writes its pointers
/// straight into the caller's vector, and metadata stays in DPDK's encoding
/// until someone reads it. The only per-frame work left is one read of the
/// line the device just wrote: `data_len` for the byte counter and `nb_segs`,
/// because a chained frame (which a device produces only if scatter were
/// enabled, and we never enable it) breaks the single-segment invariant: it
/// is dropped and counted in a cold pass. With `checks=none` not even that:
/// no mbuf is touched (bytes then come from the device's counters, and the
/// chain check is left to DPDK's own contract: without scatter, no chains).
pub struct DpdkRx {
    fp: FpOps,
    port_id: u16,
    queue: u16,
    /// Keeps the pool alive while frames can still arrive on this queue.
    _pool: Mempool,
    started: Arc<AtomicBool>,
    counters: Arc<RxCounters>,
    extra: Arc<DriverCounters>,
    checks: bool,
}

impl DpdkRx {
    /// The receive path of both `rx_burst` and `rx_received`.
    #[inline(always)]
    fn rx(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        if max == 0 || !self.started.load(Ordering::Relaxed) {
            return 0;
        }
        super::eal::register_thread();
        let want = max.min(MAX_BURST);
        out.reserve(want);
        let start = out.len();
        // SAFETY: the port is started with queue `queue` and this handle is its
        // only poller; `out` has room for `want` more handles, and an `Mbuf` is a
        // transparent `rte_mbuf *`, so the device writes the handles in place.
        // Each is a received mbuf of the queue's pool (ours: its private area
        // points to our pool), owned by us, with data_off + data_len <= buf_len.
        let n = unsafe {
            let dst = out.as_mut_ptr().add(start) as *mut *mut sys::rte_mbuf;
            let n = sys::eth_rx_burst(self.fp.0.as_ptr(), self.port_id, self.queue, dst, want as u16) as usize;
            out.set_len(start + n);
            n
        };
        if self.checks {
            return self.check_received(out, start, n);
        }
        self.counters.packets.add(n as u64);
        n
    }

    /// `checks=full`: counts bytes and drops chained frames (out of line, so
    /// the `checks=none` path stays a few instructions and registers).
    #[inline(never)]
    fn check_received(&mut self, out: &mut Vec<Mbuf>, start: usize, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let (mut bytes, mut chained) = (0u64, 0u16);
        for m in &out[start..] {
            let h = m.hdr();
            bytes += h.data_len as u64;
            chained |= h.nb_segs ^ 1;
        }
        let mut got = n;
        if chained != 0 {
            let (dropped, dropped_bytes) = Self::drop_chains(out, start);
            got -= dropped as usize;
            bytes -= dropped_bytes;
            self.counters.errors.add(dropped);
            self.extra.rx_dropped_segments.add(dropped);
        }
        self.counters.packets.add(got as u64);
        self.counters.bytes.add(bytes);
        got
    }

    /// Drops (and frees) the chained frames of `out[start..]`; returns how many
    /// and their bytes.
    #[cold]
    #[inline(never)]
    fn drop_chains(out: &mut Vec<Mbuf>, start: usize) -> (u64, u64) {
        let (mut dropped, mut bytes) = (0u64, 0u64);
        let burst: Vec<Mbuf> = out.drain(start..).collect();
        for m in burst {
            if m.hdr().nb_segs == 1 {
                out.push(m);
            } else {
                dropped += 1;
                bytes += m.len() as u64;
                // Dropping frees the whole chain (rte_pktmbuf_free).
            }
        }
        (dropped, bytes)
    }
}

impl RxQueue for DpdkRx {
    #[inline]
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        self.rx(out, max)
    }

    /// Vouches that every handle is an `rte_mbuf` (of this queue's pool, one
    /// of ours) when `out` held nothing before: then the whole vector is what
    /// the device just wrote.
    #[inline(always)]
    fn rx_received<'a>(&mut self, out: &'a mut Vec<Mbuf>, max: usize) -> Received<'a> {
        let fresh = out.is_empty();
        self.rx(out, max);
        if fresh {
            Received::vouched(out, Origin::DpdkMbufs)
        } else {
            Received::unproven(out)
        }
    }
}

/// Transmit queue of a DPDK port: the caller's vector of handles *is* the
/// array of `rte_mbuf *` that `rte_eth_tx_burst` takes, and the window and
/// offload requests are already in the mbufs in DPDK's encoding, so nothing
/// is converted. One pass per burst checks each frame (of the port's pool and
/// within the MTU) and sums the bytes; a frame that fails sends the burst
/// through a cold preparation (MTU drops, copies of buffers from non-DPDK
/// pools, counted as `tx_copies`). The handles of frames the device took are
/// then forgotten; unsent frames stay the caller's, as they were.
///
/// With `checks=none` the pass touches no mbuf: it only checks that each
/// handle's address lies in the port's `rte_mempool` memory (a buffer of any
/// other pool must never reach the device: that is memory safety, not policy),
/// bytes come from the device's counters, and oversize frames are left to the
/// device, as with DPDK's own `rte_eth_tx_burst`. Why an option: reading each
/// frame's header line is what DPDK's io forwarding never does, and on a
/// machine where that line is not in cache it costs more than the forwarding.
///
/// A burst handed over as a [`Received`] that a DPDK receive queue vouched for
/// (`tx_received`) skips even the address check: the type kept every handle
/// as the device wrote it. Forwarding rx to tx then costs what DPDK's does.
pub struct DpdkTx {
    fp: FpOps,
    port_id: u16,
    queue: u16,
    pool: Mempool,
    /// The `rte_mempool *` behind `pool`: the `pool` word of its mbufs.
    own_mp: usize,
    /// Where that pool's mbufs live.
    own_ranges: PoolRanges,
    checks: bool,
    mtu: u16,
    started: Arc<AtomicBool>,
    counters: Arc<TxCounters>,
    extra: Arc<DriverCounters>,
}

impl DpdkTx {
    /// Replaces a buffer of a non-DPDK pool by a copy in our pool. `None` when
    /// the pool is exhausted.
    #[cold]
    fn copy_in(&self, m: &Mbuf) -> Option<Mbuf> {
        let mut c = self.pool.alloc().ok()?;
        c.extend_from_slice(m.data())?;
        c.copy_meta_from(m);
        self.extra.tx_copies.add(1);
        Some(c)
    }

    /// The slow preparation of a burst in which some frame may be over the MTU
    /// or of another pool: drops oversize frames (counted), copies buffers of
    /// non-DPDK pools in, and returns how many frames at the front can go (all
    /// DPDK mbufs), at most `MAX_BURST`.
    #[cold]
    #[inline(never)]
    fn tx_prepare_slow(&self, pkts: &mut Vec<Mbuf>) -> usize {
        if self.checks {
            let mtu = self.mtu;
            let before = pkts.len();
            pkts.retain(|m| frame_fits_mtu(m.data(), mtu));
            self.counters.errors.add((before - pkts.len()) as u64);
        }
        let mut take = pkts.len().min(MAX_BURST);
        for (i, m) in pkts.iter_mut().enumerate().take(take) {
            if m.pool_word() != self.own_mp && rte_pool_of_core(m.pool_ptr()).is_none() {
                match self.copy_in(m) {
                    Some(c) => *m = c,
                    None => {
                        take = i;
                        break;
                    }
                }
            }
        }
        take
    }
}

impl TxQueue for DpdkTx {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        self.tx(pkts, false)
    }

    /// A burst a DPDK receive queue vouched for needs no address check: its
    /// handles are `rte_mbuf`s, and `Received` kept anything else out.
    #[inline(always)]
    fn tx_received(&mut self, burst: Received<'_>) -> usize {
        let proven = burst.origin() == Origin::DpdkMbufs;
        self.tx(burst.into_vec(), proven)
    }
}

impl DpdkTx {
    /// Transmit; `proven`: every handle is known to be an `rte_mbuf`.
    #[inline(always)]
    fn tx(&mut self, pkts: &mut Vec<Mbuf>, proven: bool) -> usize {
        if pkts.is_empty() || !self.started.load(Ordering::Relaxed) {
            return 0;
        }
        super::eal::register_thread();
        if self.checks {
            return self.tx_checked(pkts);
        }
        let mut take = pkts.len().min(MAX_BURST);
        if !proven && !self.own_ranges.contains_all(crate::mbuf::as_hdr_ptrs(&pkts[..take])) {
            take = self.tx_prepare_slow(pkts);
        }
        // SAFETY: `pkts[..take]` are rte_mbufs: vouched for by a DPDK receive
        // queue, inside EAL's memory for our pool, or made so by the slow path.
        unsafe { self.send(pkts, take) }
    }

    /// `checks=full`: each frame of the port's pool and within the MTU, bytes
    /// summed, in one pass over the header lines (out of line: see `DpdkRx`).
    #[inline(never)]
    fn tx_checked(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        let limit = self.mtu + 14;
        let mut take = pkts.len().min(MAX_BURST);
        let mut bytes = 0u64;
        let mut ok = true;
        for m in &pkts[..take] {
            let h = m.hdr();
            if h.pool != self.own_mp || h.data_len > limit {
                ok = false;
                break;
            }
            bytes += h.data_len as u64;
        }
        if !ok {
            take = self.tx_prepare_slow(pkts);
            bytes = pkts[..take].iter().map(|m| m.len() as u64).sum();
        }
        // SAFETY: every frame of `pkts[..take]` was found to be of our DPDK pool
        // above, or made so by the slow path.
        let sent = unsafe { self.send(pkts, take) };
        // Only the frames the device took count; the rest (now at the front)
        // stay the caller's.
        bytes -= pkts[..take - sent].iter().map(|m| m.len() as u64).sum::<u64>();
        self.counters.bytes.add(bytes);
        sent
    }

    /// Hands `pkts[..take]` to the device, forgets the handles it took (the
    /// unsent ones move to the front) and counts them.
    ///
    /// # Safety
    ///
    /// `take <= min(pkts.len(), MAX_BURST)`, and `pkts[..take]` are
    /// single-segment `rte_mbuf`s of our DPDK pools.
    #[inline(always)]
    unsafe fn send(&mut self, pkts: &mut Vec<Mbuf>, take: usize) -> usize {
        if take == 0 {
            return 0;
        }
        debug_assert!(take <= pkts.len().min(MAX_BURST));
        // SAFETY: the port is started with queue `queue` and this handle is its
        // only user; an `Mbuf` is a transparent `rte_mbuf *`, and `pkts[..take]`
        // are valid single-segment mbufs of DPDK pools that we own (the
        // caller's contract), whose window (data_off, data_len = pkt_len) and
        // offload requests are in place.
        let sent = unsafe {
            sys::eth_tx_burst(
                self.fp.0.as_ptr(),
                self.port_id,
                self.queue,
                pkts.as_mut_ptr() as *mut *mut sys::rte_mbuf,
                take as u16,
            )
        } as usize;
        // SAFETY: the device owns the first `sent` mbufs now.
        unsafe { crate::mbuf::forget_front(pkts, sent) };
        self.counters.packets.add(sent as u64);
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::super::pool::mbuf_of;
    use super::*;
    use crate::{MbufMeta, PacketType, RxFlags, TxFlags};

    #[test]
    fn targets_parse_into_pci_addresses_and_vdevs() {
        assert_eq!(parse_target("s", "0000:03:00.0").unwrap(), Target::Pci("0000:03:00.0".into()));
        assert_eq!(parse_target("s", "3:0.1").unwrap(), Target::Pci("0000:03:00.1".into()));
        assert_eq!(
            parse_target("s", "net_virtio_user0,path=/tmp/v.sock,queues=2").unwrap(),
            Target::Vdev { name: "net_virtio_user0".into(), args: "path=/tmp/v.sock,queues=2".into() }
        );
        for (t, needle) in [
            ("", "needs a device"),
            ("eth0", "neither a PCI address"),
            ("0000:03:00.9", "neither"),
            ("0000:03:00.0,x=1", "not supported"),
        ] {
            let e = parse_target("dpdk:x", t).unwrap_err().to_string();
            assert!(e.contains(needle), "{t}: {e}");
        }
    }

    #[test]
    fn pci_checks_name_a_missing_device_and_a_kernel_driver() {
        let dir = std::env::temp_dir().join(format!("pmd-sysfs-{}", std::process::id()));
        let dev = dir.join("0000:03:00.0");
        let drv = dir.join("drivers/e1000e");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::create_dir_all(&drv).unwrap();
        let e = check_pci("dpdk:0000:04:00.0", "0000:04:00.0", &dir).unwrap_err().to_string();
        assert!(e.contains("no PCI device 0000:04:00.0"), "{e}");
        let e = check_pci("dpdk:0000:03:00.0", "0000:03:00.0", &dir).unwrap_err().to_string();
        assert!(e.contains("not bound to any driver") && e.contains("bind-nic.sh"), "{e}");
        std::os::unix::fs::symlink(&drv, dev.join("driver")).unwrap();
        let e = check_pci("dpdk:0000:03:00.0", "0000:03:00.0", &dir).unwrap_err().to_string();
        assert!(e.contains("'e1000e'") && e.contains("vfio-pci"), "{e}");
        let vfio = dir.join("drivers/vfio-pci");
        std::fs::create_dir_all(&vfio).unwrap();
        std::fs::remove_file(dev.join("driver")).unwrap();
        std::os::unix::fs::symlink(&vfio, dev.join("driver")).unwrap();
        check_pci("dpdk:0000:03:00.0", "0000:03:00.0", &dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn offload_and_flag_maps_round_trip() {
        let all = RxOffloads::all();
        assert_eq!(from_dpdk(to_dpdk(all, &rx_offload_map()), &rx_offload_map()), all);
        let all = TxOffloads::all();
        assert_eq!(from_dpdk(to_dpdk(all, &tx_offload_map()), &tx_offload_map()), all);
        let all = RssHashTypes::all();
        assert_eq!(from_dpdk(to_dpdk(all, &rss_map()), &rss_map()), all);
        // Metadata is stored in DPDK's encoding: what we write is what DPDK's
        // own accessors read from the same header (a native buffer has the
        // rte_mbuf layout too), and what DPDK writes is what we decode.
        let pool = Mempool::new(&crate::MempoolConfig::new("dpdk-meta", 4, 2048, 128, 0)).unwrap();
        let mut m = pool.alloc().unwrap();
        m.set_meta(MbufMeta {
            tx_flags: TxFlags::IPV4 | TxFlags::IP_CKSUM | TxFlags::TCP_SEG,
            l2_len: 14,
            l3_len: 20,
            l4_len: 20,
            tso_segsz: 1448,
            ..MbufMeta::default()
        });
        let r = mbuf_of(m.hdr_ptr());
        // SAFETY: the header has `struct rte_mbuf`'s layout (asserted in
        // `pool.rs`) and `m` owns it.
        let (ol, off) = unsafe { ((*r).ol_flags, (*r).__bindgen_anon_3.tx_offload) };
        assert_eq!(
            ol,
            sys::RTE_MBUF_F_TX_IPV4
                | sys::RTE_MBUF_F_TX_IP_CKSUM
                | sys::RTE_MBUF_F_TX_TCP_SEG
                | sys::RTE_MBUF_F_TX_TCP_CKSUM
        );
        assert_eq!(off, 14 | (20 << 7) | (20 << 16) | (1448 << 24));
        // SAFETY: as above; plain integer fields of the header we own.
        unsafe {
            (*r).ol_flags = (sys::RTE_MBUF_F_RX_IP_CKSUM_GOOD
                | sys::RTE_MBUF_F_RX_L4_CKSUM_BAD
                | sys::RTE_MBUF_F_RX_RSS_HASH) as u64;
            (*r).__bindgen_anon_1.packet_type =
                sys::RTE_PTYPE_L2_ETHER | sys::RTE_PTYPE_L3_IPV6_EXT_UNKNOWN | sys::RTE_PTYPE_L4_UDP;
            (*r).__bindgen_anon_2.hash.rss = 0xabcd;
        }
        let meta = m.meta();
        assert_eq!(meta.rx_flags, RxFlags::IP_CKSUM_GOOD | RxFlags::L4_CKSUM_BAD | RxFlags::RSS_HASH);
        assert_eq!(meta.packet_type, PacketType::L2_ETHER | PacketType::L3_IPV6 | PacketType::L4_UDP);
        assert_eq!(meta.rss_hash, 0xabcd);
        assert_eq!(m.rss_hash(), Some(0xabcd));
    }
}
