//! The kernel's TCP/IP through mio: the baseline our stack is measured against,
//! and the way to run an application on a machine without root or a spare NIC.
//!
//! One [`KernelReactor`] per core owns a `mio::Poll` (epoll, edge-triggered);
//! flows register once for read and write interest and park a waker only after
//! an operation returned `WouldBlock`, so every edge that matters finds its task.
//! The reactor parks in `epoll_wait` until the executor's next timer, or, with
//! [`KernelReactor::busy`], polls without ever sleeping (as our stack does).
//!
//! What of the configuration the kernel honours: `backlog` (listen(2)), `nagle`
//! (TCP_NODELAY), `send_buffer` / `recv_buffer` (SO_SNDBUF / SO_RCVBUF, which the
//! kernel doubles), `mss` (TCP_MAXSEG). The SYN backlog, SYN cookies, RTO bounds,
//! retries, TIME-WAIT and congestion control are system-wide sysctls there, not
//! per-socket values: they are accepted and ignored, which is the point of
//! having our own stack.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use mio::{Events, Interest, Token};
use pmd::Clock;
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

use crate::exec::Reactor;
use crate::{Datagram, Flow, FlowError, ListenConfig, Listener, Net, TcpConfig, UdpConfig};

#[derive(Default)]
struct Reg {
    reader: Option<Waker>,
    writer: Option<Waker>,
}

struct Shared {
    registry: mio::Registry,
    regs: RefCell<Slab<Reg>>,
}

impl Shared {
    fn register(&self, src: &mut impl mio::event::Source) -> Result<usize, FlowError> {
        let id = self.regs.borrow_mut().insert(Reg::default());
        if let Err(e) = self.registry.register(src, Token(id), Interest::READABLE | Interest::WRITABLE) {
            self.regs.borrow_mut().remove(id);
            return Err(e.into());
        }
        Ok(id)
    }
    fn deregister(&self, src: &mut impl mio::event::Source, id: usize) {
        let _ = self.registry.deregister(src);
        self.regs.borrow_mut().try_remove(id);
    }
    fn park_reader(&self, id: usize, w: &Waker) {
        if let Some(r) = self.regs.borrow_mut().get_mut(id) {
            r.reader = Some(w.clone());
        }
    }
    fn park_writer(&self, id: usize, w: &Waker) {
        if let Some(r) = self.regs.borrow_mut().get_mut(id) {
            r.writer = Some(w.clone());
        }
    }
}

/// The I/O side of a kernel-socket core.
pub struct KernelReactor {
    poll: mio::Poll,
    events: Events,
    shared: Rc<Shared>,
    busy: bool,
    clock: Arc<dyn Clock>,
}

impl KernelReactor {
    /// A reactor that parks in epoll until the next timer (how kernel
    /// applications normally run).
    pub fn new() -> Result<Self, FlowError> {
        let poll = mio::Poll::new()?;
        let registry = poll.registry().try_clone()?;
        Ok(KernelReactor {
            poll,
            events: Events::with_capacity(1024),
            shared: Rc::new(Shared { registry, regs: RefCell::new(Slab::new()) }),
            busy: false,
            clock: Arc::new(pmd::MonotonicClock),
        })
    }

    /// A reactor that never sleeps: epoll with a zero timeout in a loop.
    pub fn busy() -> Result<Self, FlowError> {
        let mut r = Self::new()?;
        r.busy = true;
        Ok(r)
    }

    /// The [`Net`] of this core.
    pub fn net(&self) -> KernelNet {
        KernelNet { shared: self.shared.clone() }
    }
}

impl Reactor for KernelReactor {
    fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    fn turn(&mut self, park: Option<u64>) -> Result<usize, FlowError> {
        let timeout = match park {
            _ if self.busy => Some(Duration::ZERO),
            None => Some(Duration::ZERO),
            // Bounded so a lost edge could never hang a core for long.
            Some(u64::MAX) => Some(Duration::from_millis(100)),
            Some(d) => {
                let now = self.clock.now_ns();
                Some(Duration::from_nanos(d.saturating_sub(now)).min(Duration::from_millis(100)))
            }
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e.into()),
        }
        let mut wake = Vec::new();
        {
            let mut regs = self.shared.regs.borrow_mut();
            for ev in self.events.iter() {
                let Some(r) = regs.get_mut(ev.token().0) else { continue };
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    wake.extend(r.reader.take());
                }
                if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                    wake.extend(r.writer.take());
                }
            }
        }
        let events = self.events.iter().count();
        for w in wake {
            w.wake();
        }
        Ok(events)
    }
}

/// One core's kernel sockets.
#[derive(Clone)]
pub struct KernelNet {
    shared: Rc<Shared>,
}

fn socket_for(addr: SocketAddr, ty: Type, proto: Protocol) -> Result<Socket, FlowError> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    s.set_nonblocking(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // `[::]` means every address of both families, as on our stack.
        s.set_only_v6(false)?;
    }
    Ok(s)
}

fn apply_tcp(s: &Socket, cfg: &TcpConfig) -> Result<(), FlowError> {
    cfg.validate().map_err(|e| FlowError::invalid(e.to_string()))?;
    s.set_nodelay(!cfg.nagle)?;
    s.set_send_buffer_size(cfg.send_buffer)?;
    s.set_recv_buffer_size(cfg.recv_buffer)?;
    s.set_mss(cfg.mss as u32)?;
    Ok(())
}

impl Net for KernelNet {
    type Flow = KernelFlow;
    type Listener = KernelListener;
    type Udp = KernelUdp;

    fn name(&self) -> &'static str {
        "kernel"
    }

    fn listen(&self, addr: SocketAddr, cfg: &ListenConfig) -> Result<KernelListener, FlowError> {
        if cfg.backlog == 0 {
            return Err(FlowError::invalid("backlog must be at least 1"));
        }
        let s = socket_for(addr, Type::STREAM, Protocol::TCP)?;
        apply_tcp(&s, &cfg.tcp)?;
        s.set_reuse_address(true)?;
        // Every core listens on the same port; the kernel spreads connections.
        s.set_reuse_port(true)?;
        s.bind(&addr.into()).map_err(|e| FlowError::Io(std::io::Error::new(e.kind(), format!("bind {addr}: {e}"))))?;
        s.listen(cfg.backlog.min(i32::MAX as usize) as i32)?;
        let mut l = mio::net::TcpListener::from_std(s.into());
        let id = self.shared.register(&mut l)?;
        Ok(KernelListener { l, id, shared: self.shared.clone(), nodelay: !cfg.tcp.nagle })
    }

    async fn connect(&self, addr: SocketAddr, cfg: &TcpConfig) -> Result<KernelFlow, FlowError> {
        let s = socket_for(addr, Type::STREAM, Protocol::TCP)?;
        apply_tcp(&s, cfg)?;
        match s.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(115) || e.kind() == std::io::ErrorKind::WouldBlock => {} // EINPROGRESS
            Err(e) => return Err(e.into()),
        }
        let mut st = mio::net::TcpStream::from_std(s.into());
        let id = self.shared.register(&mut st)?;
        let f = KernelFlow { s: st, id, shared: self.shared.clone(), aborted: false };
        std::future::poll_fn(|cx| match f.s.take_error() {
            Ok(Some(e)) | Err(e) => Poll::Ready(Err(FlowError::from_io(e))),
            Ok(None) => match f.s.peer_addr() {
                Ok(_) => Poll::Ready(Ok(())),
                Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {
                    f.shared.park_writer(f.id, cx.waker());
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Err(e.into())),
            },
        })
        .await?;
        Ok(f)
    }

    fn udp_bind(&self, addr: SocketAddr, cfg: &UdpConfig) -> Result<KernelUdp, FlowError> {
        cfg.validate()?;
        let s = socket_for(addr, Type::DGRAM, Protocol::UDP)?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.bind(&addr.into()).map_err(|e| FlowError::Io(std::io::Error::new(e.kind(), format!("bind {addr}: {e}"))))?;
        let mut u = mio::net::UdpSocket::from_std(s.into());
        let id = self.shared.register(&mut u)?;
        Ok(KernelUdp { u, id, shared: self.shared.clone() })
    }
}

/// A kernel TCP connection.
pub struct KernelFlow {
    s: mio::net::TcpStream,
    id: usize,
    shared: Rc<Shared>,
    /// `abort` was called: reads and writes fail, close(2) resets.
    aborted: bool,
}

impl Flow for KernelFlow {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, FlowError>> {
        if self.aborted {
            return Poll::Ready(Err(FlowError::Closed));
        }
        loop {
            match self.s.read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.shared.park_reader(self.id, cx.waker());
                    return Poll::Pending;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize, FlowError>> {
        if self.aborted {
            return Poll::Ready(Err(FlowError::Closed));
        }
        loop {
            match self.s.write(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.shared.park_writer(self.id, cx.waker());
                    return Poll::Pending;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), FlowError>> {
        Poll::Ready(self.s.shutdown(Shutdown::Write).map_err(FlowError::from_io))
    }

    fn poll_close(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), FlowError>> {
        // close(2) on drop: the kernel finishes the connection in the background.
        Poll::Ready(Ok(()))
    }

    fn abort(&mut self) {
        // SO_LINGER 0: close(2) sends a RST and drops queued data; the reads
        // and writes that follow fail as they would after a reset.
        let s = socket2::SockRef::from(&self.s);
        let _ = s.set_linger(Some(Duration::ZERO));
        self.aborted = true;
    }

    fn peer_addr(&self) -> Result<SocketAddr, FlowError> {
        Ok(self.s.peer_addr()?)
    }

    fn local_addr(&self) -> Result<SocketAddr, FlowError> {
        Ok(self.s.local_addr()?)
    }
}

impl Drop for KernelFlow {
    fn drop(&mut self) {
        self.shared.deregister(&mut self.s, self.id);
    }
}

/// A kernel listening socket.
pub struct KernelListener {
    l: mio::net::TcpListener,
    id: usize,
    shared: Rc<Shared>,
    nodelay: bool,
}

impl Listener for KernelListener {
    type Flow = KernelFlow;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Result<(KernelFlow, SocketAddr), FlowError>> {
        loop {
            match self.l.accept() {
                Ok((mut s, peer)) => {
                    s.set_nodelay(self.nodelay)?;
                    let id = self.shared.register(&mut s)?;
                    return Poll::Ready(Ok((KernelFlow { s, id, shared: self.shared.clone(), aborted: false }, peer)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.shared.park_reader(self.id, cx.waker());
                    return Poll::Pending;
                }
                // A connection reset before we took it: take the next one.
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::ConnectionAborted) =>
                {
                    continue
                }
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }

    fn local_addr(&self) -> Result<SocketAddr, FlowError> {
        Ok(self.l.local_addr()?)
    }
}

impl Drop for KernelListener {
    fn drop(&mut self) {
        self.shared.deregister(&mut self.l, self.id);
    }
}

/// A kernel UDP socket.
pub struct KernelUdp {
    u: mio::net::UdpSocket,
    id: usize,
    shared: Rc<Shared>,
}

impl Datagram for KernelUdp {
    fn poll_recv_from(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<(usize, SocketAddr), FlowError>> {
        match self.u.recv_from(buf) {
            Ok(v) => Poll::Ready(Ok(v)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.shared.park_reader(self.id, cx.waker());
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }

    fn poll_send_to(&mut self, cx: &mut Context<'_>, buf: &[u8], to: SocketAddr) -> Poll<Result<(), FlowError>> {
        match self.u.send_to(buf, to) {
            Ok(_) => Poll::Ready(Ok(())),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.shared.park_writer(self.id, cx.waker());
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }

    fn local_addr(&self) -> Result<SocketAddr, FlowError> {
        Ok(self.u.local_addr()?)
    }
}

impl Drop for KernelUdp {
    fn drop(&mut self) {
        self.shared.deregister(&mut self.u, self.id);
    }
}

/// Configurations for tests (the values are the test's, stated here once).
#[doc(hidden)]
pub mod tests_support {
    use crate::{CongestionControl, ListenConfig, RtoConfig, SynCookies, TcpConfig};

    const MS: u64 = 1_000_000;

    /// A TCP configuration for tests.
    pub fn tcp_config() -> TcpConfig {
        TcpConfig {
            mss: 1460,
            send_buffer: 64 * 1024,
            recv_buffer: 64 * 1024,
            rto: RtoConfig { initial_ns: 200 * MS, min_ns: 10 * MS, max_ns: 2_000 * MS },
            max_retransmits: 8,
            syn_retries: 4,
            time_wait_ns: 100 * MS,
            window_scale: Some(7),
            timestamps: true,
            sack: true,
            nagle: false,
            delayed_ack_ns: None,
            keepalive: None,
            congestion: CongestionControl::NewReno,
            challenge_ack_limit: 10,
            default_peer_mss: 536,
        }
    }

    /// A listener configuration for tests on `port` (of every local address).
    pub fn listen_config(port: u16) -> ListenConfig {
        let any = std::net::SocketAddr::new(std::net::Ipv6Addr::UNSPECIFIED.into(), port);
        ListenConfig::new(any, 128, 128, 1_000 * MS, SynCookies::WhenFull, tcp_config())
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;
    use crate::exec::{spawn, Executor};

    #[test]
    fn abort_sends_a_reset_the_peer_reads_as_reset() {
        let r = KernelReactor::new().unwrap();
        let net = r.net();
        let mut ex = Executor::new(r);
        ex.block_on(async move {
            let mut l = net.listen("127.0.0.1:0".parse().unwrap(), &listen_config(1)).unwrap();
            let a = l.local_addr().unwrap();
            let mut c = net.connect(a, &tcp_config()).await.unwrap();
            let (mut s, _) = l.accept().await.unwrap();
            s.abort();
            assert!(matches!(s.write(b"x").await, Err(FlowError::Closed)));
            drop(s);
            let mut b = [0u8; 1];
            let r = c.read(&mut b).await;
            assert!(matches!(r, Err(FlowError::Reset)), "{r:?}");
        })
        .unwrap();
    }

    #[test]
    fn loopback_echo_v4_v6_refused() {
        let r = KernelReactor::new().unwrap();
        let net = r.net();
        let mut ex = Executor::new(r);
        ex.block_on(async move {
            for any in ["0.0.0.0:0", "[::]:0"] {
                let mut l = net.listen(any.parse().unwrap(), &listen_config(1)).unwrap();
                let port = l.local_addr().unwrap().port();
                let server = spawn(async move {
                    let (mut f, _) = l.accept().await.unwrap();
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = f.read(&mut buf).await.unwrap();
                        if n == 0 {
                            break;
                        }
                        f.write_all(&buf[..n]).await.unwrap();
                    }
                    f.close().await.unwrap();
                });
                let ip = if any.starts_with('[') { "[::1]" } else { "127.0.0.1" };
                let mut c = net.connect(format!("{ip}:{port}").parse().unwrap(), &tcp_config()).await.unwrap();
                let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
                let mut got = vec![0u8; data.len()];
                for (out, back) in data.chunks(8192).zip(got.chunks_mut(8192)) {
                    c.write_all(out).await.unwrap();
                    c.read_exact(back).await.unwrap();
                }
                assert_eq!(got, data);
                c.shutdown().await.unwrap();
                let mut b = [0u8; 1];
                assert_eq!(c.read(&mut b).await.unwrap(), 0);
                server.await;
            }
            // A port nobody listens on: refused.
            let l = net.listen("127.0.0.1:0".parse().unwrap(), &listen_config(1)).unwrap();
            let a = l.local_addr().unwrap();
            drop(l);
            assert!(matches!(net.connect(a, &tcp_config()).await, Err(FlowError::Refused)));
        })
        .unwrap();
    }
}
