//! Type-erased flows and networks: what lets a registry hand out "a `Flow`"
//! whichever stack, transport or layer made it.
//!
//! [`Net`] is generic (its `connect` is an `async fn`), so it cannot be a trait
//! object; [`Dial`] is its object-safe face, implemented for every `Net`. The
//! cost is one allocation per connect and one virtual call per poll, on the
//! connection path, not per packet.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::{Datagram, Flow, FlowError, Net, TcpConfig, UdpConfig};

/// A future on this core (no `Send`).
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Any flow.
pub type BoxFlow = Box<dyn Flow>;

/// Any UDP socket.
pub type BoxDatagram = Box<dyn Datagram>;

impl Flow for Box<dyn Flow> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, FlowError>> {
        (**self).poll_read(cx, buf)
    }
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize, FlowError>> {
        (**self).poll_write(cx, buf)
    }
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), FlowError>> {
        (**self).poll_shutdown(cx)
    }
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), FlowError>> {
        (**self).poll_close(cx)
    }
    fn abort(&mut self) {
        (**self).abort()
    }
    fn peer_addr(&self) -> Result<SocketAddr, FlowError> {
        (**self).peer_addr()
    }
    fn local_addr(&self) -> Result<SocketAddr, FlowError> {
        (**self).local_addr()
    }
}

impl Datagram for Box<dyn Datagram> {
    fn poll_recv_from(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<(usize, SocketAddr), FlowError>> {
        (**self).poll_recv_from(cx, buf)
    }
    fn poll_send_to(&mut self, cx: &mut Context<'_>, buf: &[u8], to: SocketAddr) -> Poll<Result<(), FlowError>> {
        (**self).poll_send_to(cx, buf, to)
    }
    fn local_addr(&self) -> Result<SocketAddr, FlowError> {
        (**self).local_addr()
    }
}

/// A [`Net`] behind a pointer: connect and bind, type-erased.
pub trait Dial {
    /// The stack's short name.
    fn name(&self) -> &'static str;
    /// Opens a TCP connection.
    fn connect(&self, addr: SocketAddr, cfg: &TcpConfig) -> LocalBoxFuture<'static, Result<BoxFlow, FlowError>>;
    /// Binds a UDP socket.
    fn udp_bind(&self, addr: SocketAddr, cfg: &UdpConfig) -> Result<BoxDatagram, FlowError>;
}

impl<N: Net> Dial for N {
    fn name(&self) -> &'static str {
        Net::name(self)
    }
    fn connect(&self, addr: SocketAddr, cfg: &TcpConfig) -> LocalBoxFuture<'static, Result<BoxFlow, FlowError>> {
        let (net, cfg) = (self.clone(), cfg.clone());
        Box::pin(async move { Ok(Box::new(Net::connect(&net, addr, &cfg).await?) as BoxFlow) })
    }
    fn udp_bind(&self, addr: SocketAddr, cfg: &UdpConfig) -> Result<BoxDatagram, FlowError> {
        Ok(Box::new(Net::udp_bind(self, addr, cfg)?))
    }
}

/// The network a context connects over (the core's `Net`, type-erased).
#[derive(Clone)]
pub struct Dialer(pub Rc<dyn Dial>);

impl Dialer {
    /// Wraps a `Net`.
    pub fn of<N: Net>(net: N) -> Dialer {
        Dialer(Rc::new(net))
    }
}
