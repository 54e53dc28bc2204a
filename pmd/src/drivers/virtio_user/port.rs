//! [`VirtioUserPort`]: open (connect or listen, handshake), configure (the
//! features acked, the rings set up), start and stop, link state, counters.
//!
//! There is no control queue (`CTRL_VQ`): the back end (a switch port) delivers
//! whatever it forwards to us, so promiscuous mode and the MAC filter are done in
//! software as on the TAP port; the MAC is the `mac=` option (default derived
//! from the path), as with DPDK's virtio-user. Link state is ours to know (no
//! config space over vhost-user for net): it is up while the port is started and
//! the back end connected and set up.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::control::{listen, monitor, Control, Setup, Shared};
use super::rx::{refill, refill_with, VirtioRx};
use super::tx::VirtioTx;
use super::vring::{ring_layout, RingMem, Vq};
use super::{io_err, Options, F, HDR_LEN, MAX_MTU, MAX_QSIZE, RX_REFILL_BATCH};
use crate::drivers::PortState;
use crate::port::{Counter, Link, MacAddr, PortConfig, PortInfo, PortStats};
use crate::{PmdError, Port, RxOffloads, RxQueue, TxOffloads, TxQueue};

/// A `virtio-user` port.
pub struct VirtioUserPort {
    mac: MacAddr,
    opts: Options,
    offered: u64,
    shared: Arc<Shared>,
    ctl: Arc<Mutex<Control>>,
    stop_monitor: Arc<AtomicBool>,
    monitor: Option<JoinHandle<()>>,
    /// Ring memory for every queue the port can have, for the port's life: a
    /// back end compares memory tables by address, so memory unmapped and mapped
    /// again at the same address would go unnoticed and it would keep the old.
    rings: Arc<RingMem>,
    state: PortState,
    tx_copies: Vec<Arc<Counter>>,
}

impl VirtioUserPort {
    /// Connects to (or, with `server`, waits for) the back end at `path` and
    /// reads what it offers.
    pub fn open(path: &str, opts: Options, mac: MacAddr) -> Result<VirtioUserPort, PmdError> {
        opts.validate()?;
        let path = PathBuf::from(path);
        let listener = if opts.server { Some(listen(&path)?) } else { None };
        let mut ctl = Control {
            path: path.clone(),
            listener,
            conn: None,
            setup: None,
            want_running: false,
            live: false,
            last_error: None,
        };
        if !ctl.try_connect(Duration::from_millis(opts.wait_ms))? {
            return Err(PmdError::Io {
                context: format!(
                    "virtio-user: no back end connected to {} within {} ms (server=1 waits for a back end in \
                     client mode, e.g. net_vhost0,iface={},client=1)",
                    path.display(),
                    opts.wait_ms,
                    path.display()
                ),
                source: io::Error::from(io::ErrorKind::TimedOut),
            });
        }
        let c = ctl.conn.as_ref().expect("connected");
        let (offered, max_pairs) = (c.offered, c.max_pairs);
        if opts.queues > max_pairs {
            let why = if offered & F::MQ == 0 { "does not offer VIRTIO_NET_F_MQ" } else { "has fewer" };
            return Err(PmdError::Unsupported {
                port: path.display().to_string(),
                what: format!("queues={}: the back end {why} (at most {max_pairs} queue pair(s))", opts.queues),
            });
        }
        if opts.mrg_rxbuf && offered & F::MRG_RXBUF == 0 {
            return Err(PmdError::Unsupported {
                port: path.display().to_string(),
                what: "VIRTIO_NET_F_MRG_RXBUF (asked for by mrg_rxbuf=1, the default): open with mrg_rxbuf=0".into(),
            });
        }
        if opts.in_order && offered & F::IN_ORDER == 0 {
            return Err(PmdError::Unsupported {
                port: path.display().to_string(),
                what: "VIRTIO_F_IN_ORDER (asked for by in_order=1, the default): open with in_order=0".into(),
            });
        }
        let rings = Arc::new(RingMem::new(ring_layout(opts.qsize as usize).3 * 2 * opts.queues as usize)?);
        let shared = Arc::new(Shared { mtu: AtomicU16::new(1500), ..Default::default() });
        let ctl = Arc::new(Mutex::new(ctl));
        let stop = Arc::new(AtomicBool::new(false));
        let monitor = {
            let (ctl, shared, stop) = (ctl.clone(), shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("virtio-user-mon".into())
                .spawn(move || monitor(ctl, shared, stop))
                .map_err(io_err("virtio-user: starting the monitor thread".into()))?
        };
        Ok(VirtioUserPort {
            mac,
            opts,
            offered,
            shared,
            ctl,
            stop_monitor: stop,
            monitor: Some(monitor),
            rings,
            state: PortState::new(path.display().to_string()),
            tx_copies: Vec::new(),
        })
    }

    /// Features the back end offered when the port was opened.
    pub fn offered_features(&self) -> u64 {
        self.offered
    }

    /// Features acked by the current configuration (0 before `configure`).
    pub fn acked_features(&self) -> u64 {
        Control::lock(&self.ctl).setup.as_ref().map(|s| s.acked).unwrap_or(0)
    }

    /// The last error the monitor met while reconnecting, if the link is down.
    pub fn last_error(&self) -> Option<String> {
        Control::lock(&self.ctl).last_error.clone()
    }

    fn rx_caps(&self) -> RxOffloads {
        if self.offered & F::GUEST_CSUM != 0 {
            RxOffloads::UDP_CKSUM | RxOffloads::TCP_CKSUM
        } else {
            RxOffloads::empty()
        }
    }

    fn tx_caps(&self) -> TxOffloads {
        let mut t = TxOffloads::empty();
        if self.offered & F::CSUM != 0 {
            t |= TxOffloads::IPV4_CKSUM | TxOffloads::UDP_CKSUM | TxOffloads::TCP_CKSUM;
            if self.offered & F::HOST_TSO4 != 0 && self.offered & F::HOST_TSO6 != 0 {
                t |= TxOffloads::TCP_TSO;
            }
        }
        t
    }

    fn acked_for(&self, conf: &PortConfig) -> u64 {
        let mut f = F::VERSION_1 | (self.offered & F::STATUS);
        if self.opts.mrg_rxbuf {
            f |= F::MRG_RXBUF;
        }
        if self.opts.in_order {
            f |= F::IN_ORDER;
        }
        if conf.rx_queues.max(conf.tx_queues) > 1 {
            f |= F::MQ;
        }
        if conf.rx_offloads.intersects(RxOffloads::UDP_CKSUM | RxOffloads::TCP_CKSUM) {
            f |= F::GUEST_CSUM;
        }
        if conf.tx_offloads.intersects(TxOffloads::UDP_CKSUM | TxOffloads::TCP_CKSUM | TxOffloads::TCP_TSO) {
            f |= F::CSUM;
        }
        if conf.tx_offloads.contains(TxOffloads::TCP_TSO) {
            f |= F::HOST_TSO4 | F::HOST_TSO6;
        }
        f
    }

    fn stop_inner(&mut self) {
        // Under the lock, so the monitor cannot bring the link up in between.
        let mut c = Control::lock(&self.ctl);
        c.want_running = false;
        self.shared.up.store(false, Ordering::Release);
        self.shared.started.store(false, Ordering::Release);
        c.stop_rings();
    }
}

impl Drop for VirtioUserPort {
    fn drop(&mut self) {
        self.stop_monitor.store(true, Ordering::Release);
        if let Some(h) = self.monitor.take() {
            let _ = h.join();
        }
        self.stop_inner();
        let mut c = Control::lock(&self.ctl);
        c.conn = None;
        if c.listener.take().is_some() {
            let _ = std::fs::remove_file(&c.path);
        }
        // The rings (and the mbufs in flight in them) go when the last queue
        // handle does; the back end no longer touches them.
        c.setup = None;
    }
}

impl Port for VirtioUserPort {
    fn info(&self) -> PortInfo {
        PortInfo {
            driver: "virtio-user",
            name: self.state.name.clone(),
            mac: self.mac,
            mtu: self.shared.mtu.load(Ordering::Relaxed),
            min_mtu: 68,
            max_mtu: MAX_MTU,
            max_rx_queues: self.opts.queues,
            max_tx_queues: self.opts.queues,
            // Rings are `qsize` entries (the spec option); larger rx_desc/tx_desc
            // are accepted and use qsize, as DPDK's virtio PMD does.
            max_desc: MAX_QSIZE,
            rx_offloads: self.rx_caps(),
            tx_offloads: self.tx_caps(),
            rss: None,
        }
    }

    fn configure(&mut self, conf: &PortConfig) -> Result<(), PmdError> {
        self.state.ensure_configurable(self.is_started())?;
        conf.validate(&self.info())?;
        let Some(pool_mem) = conf.mempool.shared_memory() else {
            return Err(PmdError::Config {
                field: "mempool",
                reason: format!(
                    "virtio-user needs a pool in shared memory the back end can map (Mempool::new_shared); '{}' is not",
                    conf.mempool.name()
                ),
            });
        };
        if conf.mempool.headroom() < HDR_LEN {
            return Err(PmdError::Config {
                field: "mempool",
                reason: format!("headroom {} is below the {HDR_LEN}-byte virtio-net header", conf.mempool.headroom()),
            });
        }
        if conf.mempool.data_room() < 64 {
            return Err(PmdError::Config { field: "mempool", reason: "data room below 64 bytes".into() });
        }
        let acked = self.acked_for(conf);
        let pairs = conf.rx_queues.max(conf.tx_queues);
        let mut c = Control::lock(&self.ctl);
        if let Some(conn) = &c.conn {
            c.check_offers(conn, acked, pairs)?;
        }
        // Old rings: stop them on the back end before their mbufs are freed.
        c.stop_rings();
        c.setup = None;
        let chunk = ring_layout(self.opts.qsize as usize).3;
        let rings = self.rings.clone();
        let mut vqs = Vec::new();
        for i in 0..2 * pairs as usize {
            vqs.push(Arc::new(Vq::new(i, self.opts.qsize, self.opts.in_order, &rings, i * chunk)?));
        }
        // Receive rings start full, so nothing the back end sends before our
        // first poll is dropped for lack of buffers.
        let nombuf = Counter::default();
        let mut fresh = Vec::new();
        for q in 0..conf.rx_queues as usize {
            let vq = &vqs[2 * q];
            // SAFETY: the ring was just made and no handle for it exists.
            let st = unsafe { vq.state() };
            let posted = HDR_LEN + conf.mempool.data_room();
            refill(vq, st, &conf.mempool, &mut fresh, posted, &nombuf);
            // A pool too small for a whole ring: as much as it has.
            while st.free_count(vq) > 0 && conf.mempool.alloc_bulk(&mut fresh, RX_REFILL_BATCH).is_ok() {
                refill_with(vq, st, &mut fresh, posted);
            }
            fresh.clear();
        }
        c.setup = Some(Setup { acked, pool_mem, rings, vqs, _pool: conf.mempool.clone() });
        drop(c);
        self.tx_copies = (0..conf.tx_queues).map(|_| Arc::new(Counter::default())).collect();
        self.state.set_configured(conf);
        Ok(())
    }

    fn config(&self) -> Option<&PortConfig> {
        self.state.config()
    }

    fn start(&mut self) -> Result<(), PmdError> {
        self.state.configured()?;
        let mut c = Control::lock(&self.ctl);
        c.want_running = true;
        self.shared.started.store(true, Ordering::Release);
        if c.conn.is_some() {
            if let Err(e) = c.set_up_rings() {
                c.want_running = false;
                self.shared.started.store(false, Ordering::Release);
                return Err(e);
            }
            self.shared.up.store(true, Ordering::Release);
        }
        // Without a back end right now the monitor brings the link up later.
        Ok(())
    }

    fn stop(&mut self) -> Result<(), PmdError> {
        self.stop_inner();
        Ok(())
    }

    fn is_started(&self) -> bool {
        self.shared.started.load(Ordering::Acquire)
    }

    fn link(&self) -> Link {
        let up = self.shared.up.load(Ordering::Acquire);
        Link { up, speed_mbps: if up { 10_000 } else { 0 }, full_duplex: up }
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<(), PmdError> {
        self.shared.promisc.store(on, Ordering::Release);
        Ok(())
    }

    fn promiscuous(&self) -> bool {
        self.shared.promisc.load(Ordering::Acquire)
    }

    fn set_mtu(&mut self, mtu: u16) -> Result<(), PmdError> {
        self.info().check_mtu(mtu)?;
        if let Some(conf) = self.state.config() {
            if mtu as usize + 18 > conf.mempool.data_room() {
                return Err(PmdError::Config {
                    field: "mtu",
                    reason: format!(
                        "{mtu} needs frames of {} bytes; the pool's data room is {}",
                        mtu as usize + 18,
                        conf.mempool.data_room()
                    ),
                });
            }
        }
        self.shared.mtu.store(mtu, Ordering::Release);
        Ok(())
    }

    fn stats(&self) -> PortStats {
        self.state.stats()
    }

    fn reset_stats(&mut self) {
        self.state.reset_stats()
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let mut v = self.stats().to_xstats();
        v.push(("tx_copies".into(), self.tx_copies.iter().map(|c| c.get()).sum()));
        v.push(("link_down_events".into(), self.shared.disconnects.load(Ordering::Relaxed)));
        v.push(("reconnects".into(), self.shared.reconnects.load(Ordering::Relaxed)));
        v
    }

    fn take_rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>, PmdError> {
        let conf = self.state.configured()?;
        let counters = self.state.claim_rx(q)?;
        let vq = Control::lock(&self.ctl).setup.as_ref().expect("configured").vqs[2 * q as usize].clone();
        Ok(Box::new(VirtioRx {
            vq,
            shared: self.shared.clone(),
            pool: conf.mempool.clone(),
            mac: self.mac,
            csum: conf.rx_offloads.intersects(RxOffloads::UDP_CKSUM | RxOffloads::TCP_CKSUM),
            mrg: self.opts.mrg_rxbuf,
            headroom: conf.mempool.headroom() as u32,
            posted: HDR_LEN + conf.mempool.data_room(),
            fresh: Vec::with_capacity(self.opts.qsize as usize),
            counters,
        }))
    }

    fn take_tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>, PmdError> {
        let conf = self.state.configured()?;
        let counters = self.state.claim_tx(q)?;
        let (vq, mem) = {
            let c = Control::lock(&self.ctl);
            let s = c.setup.as_ref().expect("configured");
            (s.vqs[2 * q as usize + 1].clone(), s.pool_mem)
        };
        Ok(Box::new(VirtioTx {
            vq,
            shared: self.shared.clone(),
            pool: conf.mempool.clone(),
            region: (mem.addr as u64, (mem.addr + mem.len) as u64),
            offloads: !conf.tx_offloads.is_empty(),
            done: Vec::with_capacity(self.opts.qsize as usize),
            copies: self.tx_copies[q as usize].clone(),
            counters,
        }))
    }
}
