//! [`AfXdpPort`]: open (find the interface, attach the program), configure (one
//! XSK per queue, each put in the XSKMAP), start and stop, link, MTU,
//! promiscuous mode, counters and the kernel's per-socket statistics.
//!
//! Closing: dropping the port clears `IFF_PROMISC` if we set it, drops the
//! `bpf_link` (the program is detached: the interface is the kernel's again)
//! and then the sockets; a socket whose queue handles are still alive closes
//! when the last of them is dropped.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use super::bpf::{AttachError, Attached};
use super::rx::AfXdpRx;
use super::tx::AfXdpTx;
use super::xsk::Xsk;
use super::{netdev, Options};
use crate::drivers::PortState;
use crate::port::{Link, MacAddr, PortConfig, PortInfo, PortStats};
use crate::{PmdError, Port, RxOffloads, RxQueue, TxOffloads, TxQueue};

/// The kernel's per-socket counters, in `xdp_statistics` order.
const XDP_STATS: [&str; 6] = [
    "rx_dropped",
    "rx_invalid_descs",
    "tx_invalid_descs",
    "rx_ring_full",
    "rx_fill_ring_empty_descs",
    "tx_ring_empty_descs",
];

fn stats_array(s: &libc::xdp_statistics) -> [u64; 6] {
    [
        s.rx_dropped,
        s.rx_invalid_descs,
        s.tx_invalid_descs,
        s.rx_ring_full,
        s.rx_fill_ring_empty_descs,
        s.tx_ring_empty_descs,
    ]
}

/// An `af_xdp` port.
pub struct AfXdpPort {
    ifname: String,
    ifindex: u32,
    mac: MacAddr,
    opts: Options,
    /// Receive queues the interface has (the XSKMAP's size).
    if_queues: u32,
    attached: Option<Attached>,
    xsks: Vec<Arc<Xsk>>,
    /// `XDP_STATISTICS` per socket at the last reset.
    xdp_base: Mutex<Vec<[u64; 6]>>,
    promisc: Arc<AtomicBool>,
    /// Whether we turned `IFF_PROMISC` on (and so turn it off when closing).
    set_promisc: bool,
    mtu: Arc<AtomicU16>,
    started: Arc<AtomicBool>,
    state: PortState,
}

/// The interface's receive queues: `ETHTOOL_GCHANNELS`, else the sysfs
/// `queues/rx-*` entries, else 1.
fn rx_queue_count(ifname: &str) -> u32 {
    #[repr(C)]
    #[derive(Default)]
    struct Channels {
        cmd: u32,
        max: [u32; 4],
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    let mut ch = Channels { cmd: ETHTOOL_GCHANNELS, ..Default::default() };
    if let Ok(mut r) = netdev::IfReq::new(ifname) {
        // `ifr_data` points at `ch`, which outlives the ioctl; the kernel
        // writes at most `size_of::<Channels>()` bytes there (ETHTOOL_GCHANNELS).
        r.data[..8].copy_from_slice(&(&mut ch as *mut Channels as usize as u64).to_ne_bytes());
        if netdev::ifreq_ioctl(&mut r, libc::SIOCETHTOOL).is_ok() {
            let n = ch.rx_count.max(ch.combined_count);
            if n > 0 {
                return n;
            }
        }
    }
    std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count() as u32)
        .unwrap_or(1)
        .max(1)
}

fn attach_error(ifname: &str, e: AttachError) -> PmdError {
    let AttachError::Call { what, err, log } = e;
    let reason = match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) => {
            return PmdError::Unsupported {
                port: ifname.to_string(),
                what: "native XDP: its driver has no XDP hook, which AF_XDP needs (try af_packet)".into(),
            }
        }
        Some(libc::EBUSY) | Some(libc::EEXIST) => {
            return PmdError::State {
                port: ifname.to_string(),
                reason: "busy: an XDP program is already attached (another AF_XDP user such as a DPDK \
                         net_af_xdp port, or xdp-loader); detach it first"
                    .into(),
            }
        }
        Some(libc::EPERM) => " (needs CAP_BPF and CAP_NET_ADMIN: run as root)".to_string(),
        Some(libc::EINVAL) if what.starts_with("BPF_LINK") => {
            " (the interface refused native XDP: MTU too large for its XDP mode, or LRO on?)".to_string()
        }
        _ if !log.is_empty() => format!("; verifier: {log}"),
        _ => String::new(),
    };
    PmdError::Io { context: format!("af_xdp '{ifname}': {what}{reason}"), source: err }
}

impl AfXdpPort {
    /// Opens interface `ifname` (which must exist and have native XDP) and
    /// attaches the redirect program; queues are taken by `configure`.
    pub fn open(ifname: &str, opts: Options) -> Result<AfXdpPort, PmdError> {
        opts.validate()?;
        let ifindex = netdev::ifindex(ifname).map_err(|e| match e {
            PmdError::Io { source, .. } if source.raw_os_error() == Some(libc::ENODEV) => PmdError::Io {
                context: format!("af_xdp: interface '{ifname}' does not exist (in this network namespace)"),
                source,
            },
            e => e,
        })? as u32;
        let if_queues = rx_queue_count(ifname);
        if opts.queues as u32 > if_queues {
            return Err(PmdError::Config {
                field: "queues",
                reason: format!(
                    "queues={} but '{ifname}' has {if_queues} receive queue(s): queue id {} is out of range",
                    opts.queues, if_queues
                ),
            });
        }
        let mac = netdev::mac(ifname)?;
        let mtu = netdev::mtu(ifname)?;
        if mtu as usize + 14 > opts.max_frame() {
            return Err(PmdError::Config {
                field: "frame_size",
                reason: format!(
                    "'{ifname}' has MTU {mtu}, frames of up to {} bytes; frame_size={} holds {} (use 4096, or \
                     lower the MTU)",
                    mtu as usize + 14,
                    opts.frame_size,
                    opts.max_frame()
                ),
            });
        }
        let attached = Attached::attach(ifindex, if_queues).map_err(|e| attach_error(ifname, e))?;
        Ok(AfXdpPort {
            ifname: ifname.to_string(),
            ifindex,
            mac,
            opts,
            if_queues,
            attached: Some(attached),
            xsks: Vec::new(),
            xdp_base: Mutex::new(Vec::new()),
            promisc: Arc::new(AtomicBool::new(false)),
            set_promisc: false,
            mtu: Arc::new(AtomicU16::new(mtu)),
            started: Arc::new(AtomicBool::new(false)),
            state: PortState::new(ifname),
        })
    }

    /// Whether each configured queue's socket is in zero-copy mode (false:
    /// copy mode, what `zero_copy=auto` falls back to).
    pub fn zero_copy(&self) -> Vec<bool> {
        self.xsks.iter().map(|x| x.zero_copy).collect()
    }

    /// Receive queues of the interface (queue ids `0..n` exist).
    pub fn interface_queues(&self) -> u32 {
        self.if_queues
    }

    fn max_mtu(&self) -> u16 {
        (self.opts.max_frame() - 14).min(u16::MAX as usize) as u16
    }

    fn xdp_now(&self) -> Vec<[u64; 6]> {
        self.xsks.iter().map(|x| stats_array(&x.statistics())).collect()
    }

    fn xdp_since_reset(&self) -> Vec<[u64; 6]> {
        let base = self.xdp_base.lock().unwrap_or_else(|e| e.into_inner());
        self.xdp_now()
            .into_iter()
            .enumerate()
            .map(|(q, now)| {
                let b = base.get(q).copied().unwrap_or_default();
                std::array::from_fn(|i| now[i].wrapping_sub(b[i]))
            })
            .collect()
    }

    fn attached(&self) -> &Attached {
        self.attached.as_ref().expect("attached from open until drop")
    }
}

impl Port for AfXdpPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "af_xdp",
            name: self.ifname.clone(),
            mac: self.mac,
            mtu: self.mtu.load(Ordering::Relaxed),
            min_mtu: 68,
            max_mtu: self.max_mtu(),
            max_rx_queues: self.opts.queues,
            max_tx_queues: self.opts.queues,
            max_desc: 32768,
            rx_offloads: RxOffloads::empty(),
            tx_offloads: TxOffloads::empty(),
            rss: None,
        }
    }

    fn configure(&mut self, conf: &PortConfig) -> Result<(), PmdError> {
        self.state.ensure_configurable(self.is_started())?;
        conf.validate(&self.info())?;
        for x in self.xsks.drain(..) {
            self.attached.as_ref().expect("attached").remove(x.queue as u32);
        }
        let n = conf.rx_queues.max(conf.tx_queues);
        for q in 0..n {
            let x = Xsk::open(&self.ifname, self.ifindex, q, &self.opts)?;
            self.attached().insert(q as u32, x.raw_fd()).map_err(|e| PmdError::Io {
                context: format!("af_xdp '{}': putting queue {q}'s socket in the XSKMAP", self.ifname),
                source: e,
            })?;
            self.xsks.push(Arc::new(x));
        }
        *self.xdp_base.lock().unwrap_or_else(|e| e.into_inner()) = self.xdp_now();
        self.state.set_configured(conf);
        Ok(())
    }

    fn config(&self) -> Option<&PortConfig> {
        self.state.config()
    }

    fn start(&mut self) -> Result<(), PmdError> {
        self.state.configured()?;
        netdev::set_up(&self.ifname, true)?;
        self.started.store(true, Ordering::Release);
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PmdError> {
        self.started.store(false, Ordering::Release);
        Ok(())
    }

    fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    fn link(&self) -> Link {
        let up = self.is_started() && netdev::link_up(&self.ifname);
        Link { up, speed_mbps: if up { 10_000 } else { 0 }, full_duplex: up }
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), PmdError> {
        if on == self.promiscuous() {
            return Ok(());
        }
        let was = netdev::flags(&self.ifname)? & libc::IFF_PROMISC != 0;
        if on && !was {
            set_iff_promisc(&self.ifname, true)?;
            self.set_promisc = true;
        } else if !on && self.set_promisc {
            set_iff_promisc(&self.ifname, false)?;
            self.set_promisc = false;
        }
        self.promisc.store(on, Ordering::Release);
        Ok(())
    }

    fn promiscuous(&self) -> bool {
        self.promisc.load(Ordering::Acquire)
    }

    fn set_mtu(&mut self, mtu: u16) -> Result<(), PmdError> {
        let max = self.max_mtu();
        if mtu < 68 || mtu > max {
            return Err(PmdError::Config {
                field: "mtu",
                reason: format!("{mtu} is outside 68..={max} (frame_size={} bounds it)", self.opts.frame_size),
            });
        }
        netdev::set_mtu(&self.ifname, mtu)?;
        self.mtu.store(mtu, Ordering::Release);
        Ok(())
    }

    fn stats(&self) -> PortStats {
        let mut s = self.state.stats();
        for q in self.xdp_since_reset() {
            s.imissed += q[0] + q[3];
        }
        s
    }

    fn reset_stats(&mut self) {
        *self.xdp_base.lock().unwrap_or_else(|e| e.into_inner()) = self.xdp_now();
        self.state.reset_stats()
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let mut v = self.stats().to_xstats();
        for (q, st) in self.xdp_since_reset().iter().enumerate() {
            for (name, val) in XDP_STATS.iter().zip(st) {
                v.push((format!("q{q}_{name}"), *val));
            }
            v.push((format!("q{q}_zero_copy"), self.xsks[q].zero_copy as u64));
        }
        v
    }

    fn take_rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>, PmdError> {
        let conf = self.state.configured()?;
        if q >= conf.rx_queues {
            return Err(PmdError::State {
                port: self.ifname.clone(),
                reason: format!("rx queue {q} does not exist ({} configured)", conf.rx_queues),
            });
        }
        let counters = self.state.claim_rx(q)?;
        let xsk = self.xsks[q as usize].clone();
        let side = xsk.rx_home.lock().unwrap_or_else(|e| e.into_inner()).take().ok_or_else(|| PmdError::State {
            port: self.ifname.clone(),
            reason: format!("rx queue {q} is already owned by another handle"),
        })?;
        Ok(Box::new(AfXdpRx::new(
            side,
            xsk,
            counters,
            self.started.clone(),
            self.mtu.clone(),
            self.promisc.clone(),
            self.mac,
            &self.opts,
        )))
    }

    fn take_tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>, PmdError> {
        let conf = self.state.configured()?;
        if q >= conf.tx_queues {
            return Err(PmdError::State {
                port: self.ifname.clone(),
                reason: format!("tx queue {q} does not exist ({} configured)", conf.tx_queues),
            });
        }
        let counters = self.state.claim_tx(q)?;
        let xsk = self.xsks[q as usize].clone();
        let side = xsk.tx_home.lock().unwrap_or_else(|e| e.into_inner()).take().ok_or_else(|| PmdError::State {
            port: self.ifname.clone(),
            reason: format!("tx queue {q} is already owned by another handle"),
        })?;
        Ok(Box::new(AfXdpTx::new(side, xsk, counters, self.started.clone(), self.mtu.clone(), &self.opts)))
    }
}

fn set_iff_promisc(ifname: &str, on: bool) -> Result<(), PmdError> {
    let mut r = netdev::IfReq::new(ifname)?;
    let ctx = || format!("af_xdp '{ifname}': IFF_PROMISC {on}");
    netdev::ifreq_ioctl(&mut r, libc::SIOCGIFFLAGS).map_err(|e| PmdError::Io { context: ctx(), source: e })?;
    let f = r.short() as u16 as i32;
    let nf = if on { f | libc::IFF_PROMISC } else { f & !libc::IFF_PROMISC };
    r.set_short(nf as u16 as i16);
    netdev::ifreq_ioctl(&mut r, libc::SIOCSIFFLAGS).map_err(|e: io::Error| PmdError::Io { context: ctx(), source: e })
}

impl Drop for AfXdpPort {
    fn drop(&mut self) {
        if self.set_promisc {
            let _ = set_iff_promisc(&self.ifname, false);
        }
        // Detach the program first, so no frame is redirected to a closing socket.
        drop(self.attached.take());
        self.xsks.clear();
    }
}
