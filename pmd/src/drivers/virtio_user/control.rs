//! The control plane of a `virtio-user` port: the vhost-user socket, the
//! handshake and feature negotiation, and the monitor thread that reconnects.
//!
//! # The socket
//! The vhost-user messages are rust-vmm's `vhost` crate (`Frontend`, feature
//! `vhost-user-frontend`), a well-kept implementation of the protocol; we only
//! decide what to send. The socket is ours in both modes: with `server=0` we
//! connect to a listening back end; with `server=1` we listen on the path and
//! wait (`wait_ms`) for the back end to connect (`net_vhost0,...,client=1`). The
//! stream is built by us and handed to `Frontend::from_stream`, so a missing
//! socket, a refused connection or a silent back end (5 s receive timeout) become
//! errors that say which. `REPLY_ACK` is negotiated when offered, so every
//! setting message is acknowledged before the link is reported up.
//!
//! # Feature negotiation
//! At open we read the back end's features (`GET_FEATURES`; with
//! `PROTOCOL_FEATURES`, `MQ` and `REPLY_ACK`; with `MQ`, `GET_QUEUE_NUM`). The
//! port's capabilities are what the back end offers and we implement:
//! `VIRTIO_NET_F_CSUM` becomes transmit UDP/TCP checksum offload (IPv4 header
//! checksums are done in software: virtio has none), `HOST_TSO4|6` transmit TSO,
//! `VIRTIO_NET_F_GUEST_CSUM` receive checksum offload. At `configure` we ack only
//! what the configuration asks for (as DPDK's virtio PMD does): `GUEST_CSUM` only
//! if receive checksum offload is enabled (otherwise the back end must finish
//! every checksum), `CSUM`/`HOST_TSO*` only for the enabled transmit offloads,
//! `MQ` only for more than one queue pair (checked against `GET_QUEUE_NUM`; DPDK
//! 22.11's vhost answers its compile-time maximum, so a back end with fewer
//! queues than asked cannot be detected there). `VIRTIO_F_VERSION_1` is required (we
//! drive only modern, little-endian rings with the 12-byte header);
//! `VIRTIO_NET_F_MRG_RXBUF` is acked by default (`mrg_rxbuf=0` turns it off),
//! so is `VIRTIO_F_IN_ORDER` (`in_order=0` turns it off; DPDK's virtio-user
//! also negotiates it by default), and `VIRTIO_NET_F_STATUS` whenever offered. A back end lacking a required or
//! requested feature is an error naming the feature and the option.
//!
//! # Reconnection
//! A monitor thread (one per port, checking every 20 ms) watches the socket. When
//! the back end goes away the link goes down at once: transmit queues refuse
//! frames (they stay with the caller), receive queues still hand up whatever the
//! back end completed before it left. The monitor then connects again (`server=0`)
//! or accepts the next connection (`server=1`), repeats the handshake, checks the
//! new back end still offers every feature acked before, and sets the rings up
//! again with `SET_VRING_BASE` = the used index, so the back end continues where
//! the old one stopped: buffers it had taken but not returned are offered again
//! (frames in them may be sent twice or lost, as on any link flap); no descriptor
//! and no mbuf is lost, because ring state and in-flight mbufs are ours and never
//! reset. (Resuming at the used index assumes the old back end returned buffers
//! in order, as DPDK's vhost does on split rings; a descriptor id returned
//! twice, or never given, is ignored and never trusted, and counted as an error
//! on receive rings.) Before in-flight mbufs are freed (reconfigure, drop) every ring is
//! stopped with `GET_VRING_BASE`, which the back end answers only once it has
//! stopped touching it.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{VhostUserHeaderFlag, VhostUserProtocolFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo};

use super::vring::{RingMem, Vq};
use super::{io_err, F, MAX_QUEUES, MONITOR_PERIOD, REPLY_TIMEOUT};
use crate::{Mempool, PmdError};

/// State the data path reads.
#[derive(Default)]
pub(super) struct Shared {
    /// Started and the back end set up: transmit queues post frames.
    pub(super) up: AtomicBool,
    /// Started: receive queues poll.
    pub(super) started: AtomicBool,
    pub(super) mtu: AtomicU16,
    pub(super) promisc: AtomicBool,
    pub(super) disconnects: AtomicU64,
    pub(super) reconnects: AtomicU64,
}

/// A live connection with the features the back end offered.
pub(super) struct Conn {
    fe: Frontend,
    /// A second handle of the socket, for liveness checks.
    probe: UnixStream,
    pub(super) offered: u64,
    protocol: bool,
    pub(super) max_pairs: u16,
}

/// What the back end needs to run the rings of the current configuration.
pub(super) struct Setup {
    pub(super) acked: u64,
    pub(super) pool_mem: crate::mempool::SharedMemory,
    pub(super) rings: Arc<RingMem>,
    pub(super) vqs: Vec<Arc<Vq>>,
    /// Keeps `pool_mem` valid.
    pub(super) _pool: Mempool,
}

pub(super) struct Control {
    pub(super) path: PathBuf,
    pub(super) listener: Option<UnixListener>,
    pub(super) conn: Option<Conn>,
    pub(super) setup: Option<Setup>,
    pub(super) want_running: bool,
    /// The back end has the rings of `setup` (set up and not stopped since).
    pub(super) live: bool,
    pub(super) last_error: Option<String>,
}

fn connect_client(path: &Path) -> Result<UnixStream, PmdError> {
    let p = path.display();
    UnixStream::connect(path).map_err(|e| {
        let context = match e.kind() {
            io::ErrorKind::NotFound => format!(
                "virtio-user: no vhost-user socket at {p} (start the back end first, e.g. dpdk-testpmd \
                 --vdev net_vhost0,iface={p}; or open with server=1 to listen there instead)"
            ),
            io::ErrorKind::ConnectionRefused => format!(
                "virtio-user: connection to {p} refused: the socket file exists but no back end listens on it \
                 (left behind by a stopped back end?)"
            ),
            _ => format!("virtio-user: connecting to the vhost-user socket {p}"),
        };
        PmdError::Io { context, source: e }
    })
}

pub(super) fn listen(path: &Path) -> Result<UnixListener, PmdError> {
    let p = path.display();
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(PmdError::Io {
                context: format!("virtio-user: server=1 but {p} exists and is not a socket; not touching it"),
                source: io::Error::from(io::ErrorKind::AlreadyExists),
            });
        }
        if UnixStream::connect(path).is_ok() {
            return Err(PmdError::Io {
                context: format!("virtio-user: server=1 but something already listens on {p}"),
                source: io::Error::from(io::ErrorKind::AddrInUse),
            });
        }
        // A stale socket of an earlier run.
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path).map_err(io_err(format!("virtio-user: listening on {p}")))?;
    l.set_nonblocking(true).map_err(io_err(format!("virtio-user: listening on {p}")))?;
    Ok(l)
}

/// Accepts one connection, waiting at most `wait` (zero: only what is pending).
fn accept(l: &UnixListener, wait: Duration) -> io::Result<Option<UnixStream>> {
    let end = Instant::now() + wait;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                return Ok(Some(s));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= end {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

fn vu_err(path: &Path, what: &str) -> impl FnOnce(vhost::Error) -> PmdError {
    let port = path.display().to_string();
    let what = what.to_string();
    move |e| PmdError::State { port, reason: format!("vhost-user {what} failed: {e}") }
}

/// Reads the back end's features and takes ownership of the device.
fn handshake(path: &Path, stream: UnixStream) -> Result<Conn, PmdError> {
    let ctx = format!("virtio-user: socket {}", path.display());
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(io_err(ctx.clone()))?;
    stream.set_write_timeout(Some(REPLY_TIMEOUT)).map_err(io_err(ctx.clone()))?;
    let probe = stream.try_clone().map_err(io_err(ctx))?;
    let mut fe = Frontend::from_stream(stream, 2 * MAX_QUEUES as u64);
    let offered = fe.get_features().map_err(vu_err(path, "GET_FEATURES"))?;
    if offered & F::VERSION_1 == 0 {
        return Err(PmdError::Unsupported {
            port: path.display().to_string(),
            what: format!(
                "a back end without VIRTIO_F_VERSION_1 (offered: {}); this driver speaks only virtio 1.0 rings",
                F::names(offered)
            ),
        });
    }
    let protocol = offered & F::PROTOCOL_FEATURES != 0;
    let mut max_pairs = 1;
    if protocol {
        let pf = fe.get_protocol_features().map_err(vu_err(path, "GET_PROTOCOL_FEATURES"))?;
        let want = pf & (VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::REPLY_ACK);
        fe.set_protocol_features(want).map_err(vu_err(path, "SET_PROTOCOL_FEATURES"))?;
        if want.contains(VhostUserProtocolFeatures::REPLY_ACK) {
            fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }
        if want.contains(VhostUserProtocolFeatures::MQ) && offered & F::MQ != 0 {
            let n = fe.get_queue_num().map_err(vu_err(path, "GET_QUEUE_NUM"))?;
            max_pairs = n.clamp(1, MAX_QUEUES as u64) as u16;
        }
    }
    fe.set_owner().map_err(vu_err(path, "SET_OWNER"))?;
    Ok(Conn { fe, probe, offered, protocol, max_pairs })
}

/// Whether the back end is still connected (no hang-up, no EOF pending).
fn alive(c: &Conn) -> bool {
    let mut p = libc::pollfd { fd: c.probe.as_raw_fd(), events: libc::POLLIN | libc::POLLRDHUP, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    if r <= 0 {
        return r == 0 || io::Error::last_os_error().kind() == io::ErrorKind::Interrupted;
    }
    if p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP | libc::POLLNVAL) != 0 {
        return false;
    }
    let mut b = 0u8;
    // SAFETY: peeks at most one byte into a live local.
    let n =
        unsafe { libc::recv(c.probe.as_raw_fd(), (&mut b as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    n != 0
}

impl Control {
    pub(super) fn lock(m: &Mutex<Control>) -> MutexGuard<'_, Control> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks that the connected back end offers what a setup acks.
    pub(super) fn check_offers(&self, c: &Conn, acked: u64, pairs: u16) -> Result<(), PmdError> {
        let missing = acked & !c.offered & !F::PROTOCOL_FEATURES;
        if missing != 0 {
            return Err(PmdError::Unsupported {
                port: self.path.display().to_string(),
                what: format!("{} (the back end offers {})", F::names(missing), F::names(c.offered)),
            });
        }
        if pairs > c.max_pairs {
            return Err(PmdError::Unsupported {
                port: self.path.display().to_string(),
                what: format!("{pairs} queue pairs: the back end has at most {}", c.max_pairs),
            });
        }
        Ok(())
    }

    /// Sends features, memory table and every ring to the back end, enabled.
    pub(super) fn set_up_rings(&mut self) -> Result<(), PmdError> {
        self.send_rings()?;
        self.live = self.conn.is_some() && self.setup.is_some();
        Ok(())
    }

    fn send_rings(&self) -> Result<(), PmdError> {
        let (Some(c), Some(s)) = (&self.conn, &self.setup) else { return Ok(()) };
        let path = &self.path;
        self.check_offers(c, s.acked, (s.vqs.len() / 2) as u16)?;
        let acked = s.acked | if c.protocol { F::PROTOCOL_FEATURES } else { 0 };
        c.fe.set_features(acked).map_err(vu_err(path, "SET_FEATURES"))?;
        let region = |fd, addr: usize, len: usize| VhostUserMemoryRegionInfo {
            guest_phys_addr: addr as u64,
            memory_size: len as u64,
            userspace_addr: addr as u64,
            mmap_offset: 0,
            mmap_handle: fd,
        };
        let regions = [
            region(s.pool_mem.fd, s.pool_mem.addr, s.pool_mem.len),
            region(s.rings.fd.as_raw_fd(), s.rings.ptr.as_ptr() as usize, s.rings.len),
        ];
        c.fe.set_mem_table(&regions).map_err(vu_err(path, "SET_MEM_TABLE"))?;
        let mut fe = c.fe.clone();
        for vq in &s.vqs {
            let i = vq.index;
            fe.set_vring_num(i, vq.size).map_err(vu_err(path, "SET_VRING_NUM"))?;
            fe.set_vring_base(i, vq.used_index()).map_err(vu_err(path, "SET_VRING_BASE"))?;
            fe.set_vring_addr(i, &vq.config()).map_err(vu_err(path, "SET_VRING_ADDR"))?;
            fe.set_vring_kick(i, &vq.kick).map_err(vu_err(path, "SET_VRING_KICK"))?;
            fe.set_vring_call(i, &vq.call).map_err(vu_err(path, "SET_VRING_CALL"))?;
        }
        if c.protocol {
            for vq in &s.vqs {
                fe.set_vring_enable(vq.index, true).map_err(vu_err(path, "SET_VRING_ENABLE"))?;
            }
        }
        Ok(())
    }

    /// Stops every ring (`GET_VRING_BASE` returns once the back end let go).
    pub(super) fn stop_rings(&mut self) {
        let live = std::mem::replace(&mut self.live, false);
        let (Some(c), Some(s)) = (&self.conn, &self.setup) else { return };
        if !live {
            return;
        }
        for vq in &s.vqs {
            if c.fe.get_vring_base(vq.index).is_err() {
                break;
            }
        }
    }

    /// Makes a new connection if there is none (monitor and open).
    pub(super) fn try_connect(&mut self, wait: Duration) -> Result<bool, PmdError> {
        let stream = match &self.listener {
            Some(l) => {
                match accept(l, wait).map_err(io_err(format!("virtio-user: accepting on {}", self.path.display())))? {
                    Some(s) => s,
                    None => return Ok(false),
                }
            }
            None => connect_client(&self.path)?,
        };
        self.conn = Some(handshake(&self.path, stream)?);
        self.live = false;
        Ok(true)
    }
}

/// The monitor: notices a lost back end, takes the link down, reconnects and
/// sets the rings up again (see the module docs).
pub(super) fn monitor(ctl: Arc<Mutex<Control>>, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(MONITOR_PERIOD);
        let mut c = Control::lock(&ctl);
        if let Some(conn) = &c.conn {
            if alive(conn) {
                continue;
            }
            shared.up.store(false, Ordering::Release);
            c.conn = None;
            c.live = false;
            shared.disconnects.fetch_add(1, Ordering::Relaxed);
        }
        match c.try_connect(Duration::ZERO) {
            Ok(false) => {}
            Ok(true) => {
                shared.reconnects.fetch_add(1, Ordering::Relaxed);
                if c.want_running {
                    match c.set_up_rings() {
                        Ok(()) => {
                            c.last_error = None;
                            shared.up.store(true, Ordering::Release);
                        }
                        Err(e) => {
                            c.last_error = Some(e.to_string());
                            c.conn = None;
                        }
                    }
                }
            }
            Err(e) => c.last_error = Some(e.to_string()),
        }
    }
}
