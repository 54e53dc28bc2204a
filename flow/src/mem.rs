//! In-memory flows for unit tests: a [`duplex`] pair of byte streams with a
//! bounded buffer each way, and [`MemNet`], a [`Net`] whose listeners, connects
//! and UDP sockets meet in a per-thread registry (no packets, no stack). Run it
//! under an [`Executor`](crate::Executor) with a
//! [`TimerReactor`](crate::exec::TimerReactor).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::{Datagram, Flow, FlowError, ListenConfig, Listener, Net, TcpConfig, UdpConfig};

#[derive(Default)]
struct Half {
    buf: VecDeque<u8>,
    fin: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

struct Pipes {
    cap: usize,
    /// `halves[i]`: bytes written by end `i`, read by end `1 - i`.
    halves: [Half; 2],
    gone: [bool; 2],
    /// An end aborted: both ends' reads and writes fail with `Reset`.
    reset: bool,
    addrs: [SocketAddr; 2],
}

/// One end of an in-memory byte stream.
pub struct MemFlow {
    p: Rc<RefCell<Pipes>>,
    side: usize,
}

/// Two connected flows with `cap` bytes of buffer in each direction; `a` and
/// `b` are the addresses each end reports as its own.
pub fn duplex_with(cap: usize, a: SocketAddr, b: SocketAddr) -> (MemFlow, MemFlow) {
    assert!(cap > 0, "duplex buffer must hold at least one byte");
    let p = Rc::new(RefCell::new(Pipes {
        cap,
        halves: [Half::default(), Half::default()],
        gone: [false; 2],
        reset: false,
        addrs: [a, b],
    }));
    (MemFlow { p: p.clone(), side: 0 }, MemFlow { p, side: 1 })
}

/// Two connected flows with `cap` bytes of buffer each way.
pub fn duplex(cap: usize) -> (MemFlow, MemFlow) {
    let l = IpAddr::V4(Ipv4Addr::LOCALHOST);
    duplex_with(cap, SocketAddr::new(l, 1), SocketAddr::new(l, 2))
}

impl MemFlow {
    fn finish_writing(&mut self) {
        let mut p = self.p.borrow_mut();
        let h = &mut p.halves[self.side];
        h.fin = true;
        if let Some(w) = h.reader.take() {
            w.wake();
        }
    }
}

impl Flow for MemFlow {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, FlowError>> {
        let mut p = self.p.borrow_mut();
        if p.reset {
            return Poll::Ready(Err(FlowError::Reset));
        }
        let h = &mut p.halves[1 - self.side];
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if !h.buf.is_empty() {
            let n = buf.len().min(h.buf.len());
            for (d, s) in buf.iter_mut().zip(h.buf.drain(..n)) {
                *d = s;
            }
            if let Some(w) = h.writer.take() {
                w.wake();
            }
            return Poll::Ready(Ok(n));
        }
        if h.fin {
            return Poll::Ready(Ok(0));
        }
        h.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize, FlowError>> {
        let mut p = self.p.borrow_mut();
        if p.reset {
            return Poll::Ready(Err(FlowError::Reset));
        }
        let (cap, peer_gone) = (p.cap, p.gone[1 - self.side]);
        let h = &mut p.halves[self.side];
        if h.fin {
            return Poll::Ready(Err(FlowError::Closed));
        }
        if peer_gone {
            return Poll::Ready(Err(FlowError::Reset));
        }
        let room = cap - h.buf.len();
        if room == 0 {
            h.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = room.min(buf.len());
        h.buf.extend(&buf[..n]);
        if let Some(w) = h.reader.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), FlowError>> {
        self.finish_writing();
        Poll::Ready(Ok(()))
    }

    fn poll_close(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), FlowError>> {
        self.finish_writing();
        Poll::Ready(Ok(()))
    }

    fn abort(&mut self) {
        let mut p = self.p.borrow_mut();
        p.reset = true;
        p.halves[0].buf.clear();
        p.halves[1].buf.clear();
        for h in &mut p.halves {
            for w in [h.reader.take(), h.writer.take()].into_iter().flatten() {
                w.wake();
            }
        }
    }

    fn peer_addr(&self) -> Result<SocketAddr, FlowError> {
        Ok(self.p.borrow().addrs[1 - self.side])
    }

    fn local_addr(&self) -> Result<SocketAddr, FlowError> {
        Ok(self.p.borrow().addrs[self.side])
    }
}

impl Drop for MemFlow {
    fn drop(&mut self) {
        self.finish_writing();
        let mut p = self.p.borrow_mut();
        p.gone[self.side] = true;
        if let Some(w) = p.halves[1 - self.side].writer.take() {
            w.wake();
        }
    }
}

struct Backlog {
    cap: usize,
    queue: VecDeque<(MemFlow, SocketAddr)>,
    waker: Option<Waker>,
}

struct UdpQueue {
    cap: usize,
    queue: VecDeque<(Vec<u8>, SocketAddr)>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Registry {
    listeners: HashMap<SocketAddr, Rc<RefCell<Backlog>>>,
    udp: HashMap<SocketAddr, Rc<RefCell<UdpQueue>>>,
    next_port: u16,
}

/// A network of in-memory flows shared by the clones of one `MemNet` (one
/// thread). Listeners honour `backlog` (a connect to a full queue is refused),
/// flows buffer `send_buffer` bytes each way, UDP sockets queue `rx_queue_len`.
#[derive(Clone, Default)]
pub struct MemNet {
    reg: Rc<RefCell<Registry>>,
}

impl MemNet {
    /// An empty network.
    pub fn new() -> Self {
        MemNet::default()
    }

    fn ephemeral(&self, ip: IpAddr) -> SocketAddr {
        let mut r = self.reg.borrow_mut();
        r.next_port = r.next_port.wrapping_add(1).max(1);
        SocketAddr::new(ip, 49152 + r.next_port % 16384)
    }

    fn find_listener(&self, addr: SocketAddr) -> Option<Rc<RefCell<Backlog>>> {
        let r = self.reg.borrow();
        let any = SocketAddr::new(
            if addr.is_ipv4() {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            },
            addr.port(),
        );
        r.listeners.get(&addr).or_else(|| r.listeners.get(&any)).cloned()
    }
}

/// A listener of a [`MemNet`].
pub struct MemListener {
    net: MemNet,
    addr: SocketAddr,
    q: Rc<RefCell<Backlog>>,
}

impl Listener for MemListener {
    type Flow = MemFlow;
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Result<(MemFlow, SocketAddr), FlowError>> {
        let mut q = self.q.borrow_mut();
        match q.queue.pop_front() {
            Some(c) => Poll::Ready(Ok(c)),
            None => {
                q.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
    fn local_addr(&self) -> Result<SocketAddr, FlowError> {
        Ok(self.addr)
    }
}

impl Drop for MemListener {
    fn drop(&mut self) {
        self.net.reg.borrow_mut().listeners.remove(&self.addr);
    }
}

/// A UDP socket of a [`MemNet`].
pub struct MemUdp {
    net: MemNet,
    addr: SocketAddr,
    q: Rc<RefCell<UdpQueue>>,
}

impl Datagram for MemUdp {
    fn poll_recv_from(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<(usize, SocketAddr), FlowError>> {
        let mut q = self.q.borrow_mut();
        match q.queue.pop_front() {
            Some((d, from)) => {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Poll::Ready(Ok((n, from)))
            }
            None => {
                q.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
    fn poll_send_to(&mut self, _cx: &mut Context<'_>, buf: &[u8], to: SocketAddr) -> Poll<Result<(), FlowError>> {
        let dst = self.net.reg.borrow().udp.get(&to).cloned();
        if let Some(d) = dst {
            let mut d = d.borrow_mut();
            if d.queue.len() < d.cap {
                d.queue.push_back((buf.to_vec(), self.addr));
                if let Some(w) = d.waker.take() {
                    w.wake();
                }
            }
        }
        // Datagrams to nobody, or to a full queue, are lost, as on a wire.
        Poll::Ready(Ok(()))
    }
    fn local_addr(&self) -> Result<SocketAddr, FlowError> {
        Ok(self.addr)
    }
}

impl Drop for MemUdp {
    fn drop(&mut self) {
        self.net.reg.borrow_mut().udp.remove(&self.addr);
    }
}

impl Net for MemNet {
    type Flow = MemFlow;
    type Listener = MemListener;
    type Udp = MemUdp;

    fn name(&self) -> &'static str {
        "mem"
    }

    fn listen(&self, addr: SocketAddr, cfg: &ListenConfig) -> Result<MemListener, FlowError> {
        if cfg.backlog == 0 {
            return Err(FlowError::invalid("backlog must be at least 1"));
        }
        let mut r = self.reg.borrow_mut();
        if r.listeners.contains_key(&addr) {
            return Err(FlowError::Io(std::io::Error::new(std::io::ErrorKind::AddrInUse, format!("{addr} in use"))));
        }
        let q = Rc::new(RefCell::new(Backlog { cap: cfg.backlog, queue: VecDeque::new(), waker: None }));
        r.listeners.insert(addr, q.clone());
        Ok(MemListener { net: self.clone(), addr, q })
    }

    async fn connect(&self, addr: SocketAddr, cfg: &TcpConfig) -> Result<MemFlow, FlowError> {
        cfg.validate().map_err(|e| FlowError::invalid(e.to_string()))?;
        let q = self.find_listener(addr).ok_or(FlowError::Refused)?;
        let local = self.ephemeral(addr.ip());
        let (ours, theirs) = duplex_with(cfg.send_buffer, local, addr);
        let mut b = q.borrow_mut();
        if b.queue.len() >= b.cap {
            return Err(FlowError::Refused);
        }
        b.queue.push_back((theirs, local));
        if let Some(w) = b.waker.take() {
            w.wake();
        }
        Ok(ours)
    }

    fn udp_bind(&self, addr: SocketAddr, cfg: &UdpConfig) -> Result<MemUdp, FlowError> {
        cfg.validate()?;
        let addr = if addr.port() == 0 { self.ephemeral(addr.ip()) } else { addr };
        let q = Rc::new(RefCell::new(UdpQueue { cap: cfg.rx_queue_len, queue: VecDeque::new(), waker: None }));
        self.reg.borrow_mut().udp.insert(addr, q.clone());
        Ok(MemUdp { net: self.clone(), addr, q })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{spawn, Executor, TimerReactor};

    #[test]
    fn duplex_moves_bytes_both_ways_with_backpressure_and_eof() {
        let mut ex = Executor::new(TimerReactor::virtual_time(pmd::VirtualClock::new(), 1_000));
        ex.block_on(async {
            let (mut a, mut b) = duplex(7);
            let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
            let d2 = data.clone();
            let w = spawn(async move {
                a.write_all(&d2).await.unwrap();
                a.shutdown().await.unwrap();
                let mut back = [0u8; 3];
                a.read_exact(&mut back).await.unwrap();
                assert_eq!(&back, b"ok!");
                assert!(matches!(a.write(b"x").await, Err(FlowError::Closed)));
            });
            let mut got = Vec::new();
            let mut buf = [0u8; 5];
            loop {
                match b.read(&mut buf).await.unwrap() {
                    0 => break,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
            assert_eq!(got, data);
            b.write_all(b"ok!").await.unwrap();
            w.await;
            drop(b);
        })
        .unwrap();
    }

    #[test]
    fn abort_resets_both_ends_and_drops_queued_bytes() {
        let mut ex = Executor::new(TimerReactor::virtual_time(pmd::VirtualClock::new(), 1_000));
        ex.block_on(async {
            let (mut a, mut b) = duplex(64);
            a.write_all(b"queued").await.unwrap();
            let reader = spawn(async move {
                let mut buf = [0u8; 8];
                // The queued bytes are gone with the reset.
                let r = b.read(&mut buf).await;
                assert!(matches!(r, Err(FlowError::Reset)), "{r:?}");
                assert!(matches!(b.write(b"x").await, Err(FlowError::Reset)));
            });
            a.abort();
            reader.await;
            assert!(matches!(a.write(b"x").await, Err(FlowError::Reset)));
        })
        .unwrap();
    }

    #[test]
    fn mem_net_listen_connect_refused_and_udp() {
        let mut ex = Executor::new(TimerReactor::virtual_time(pmd::VirtualClock::new(), 1_000));
        ex.block_on(async {
            let net = MemNet::new();
            let tcp = crate::kernel::tests_support::tcp_config();
            let addr: SocketAddr = "198.18.0.2:7".parse().unwrap();
            assert!(matches!(net.connect(addr, &tcp).await, Err(FlowError::Refused)));
            let lc = crate::kernel::tests_support::listen_config(7);
            let mut l = net.listen("0.0.0.0:7".parse().unwrap(), &lc).unwrap();
            let mut c = net.connect(addr, &tcp).await.unwrap();
            let (mut s, peer) = l.accept().await.unwrap();
            assert_eq!(peer, c.local_addr().unwrap());
            c.write_all(b"hi").await.unwrap();
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"hi");
            let uc = UdpConfig { rx_queue_len: 4 };
            let mut u1 = net.udp_bind("198.18.0.2:7".parse().unwrap(), &uc).unwrap();
            let mut u2 = net.udp_bind("198.18.0.1:0".parse().unwrap(), &uc).unwrap();
            u2.send_to(b"ping", u1.local_addr().unwrap()).await.unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = u1.recv_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], from), (&b"ping"[..], u2.local_addr().unwrap()));
        })
        .unwrap();
    }
}
