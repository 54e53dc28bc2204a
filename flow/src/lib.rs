//! The Flow API: what an application sees of the network, whichever stack and
//! driver carry it.
//!
//! * [`Flow`]: a byte stream (read, write, write_all, shutdown, close) with a
//!   typed [`FlowError`]; [`Listener`]: accepts flows; [`Datagram`]: UDP.
//! * [`Net`]: one core's view of a network stack — listen, connect, bind. An
//!   application is a generic function over `N: Net` and runs unchanged over
//!   * [`user`]: our userspace TCP/IP ([`stack::Stack`]) on any pmd port,
//!   * [`kernel`]: the kernel's sockets through mio (a baseline, and for
//!     machines without root or a spare NIC),
//!   * [`mem`]: in-memory duplex pairs (unit tests).
//! * [`exec`]: the per-core executor: single-threaded, no `Send` bound, no tokio;
//!   a [`Reactor`](exec::Reactor) (the stack's poll loop, or epoll) wakes tasks,
//!   and [`sleep`](exec::sleep) / [`timeout`](exec::timeout) run on the reactor's
//!   clock, so a simulation runs in virtual time.
//! * [`connect`]: transports from values — `connect(&ctx, "tls://name:443")`
//!   through a registry of schemes and a typed context; [`dns`]: the stub
//!   resolver; [`happy_eyeballs`]: RFC 8305 as a sans-IO machine; [`tls`]:
//!   TLS (rustls) over any `Flow`.
//! * [`runtime`] (over [`cores`]): one pinned thread per core, each with its executor and its
//!   stack: `Runtime::user(..)` / `Runtime::kernel(..)`, then
//!   `run(|core| async { .. })`.
//!
//! The traits are poll-based (`poll_read`, ...) with `async` methods provided on
//! top: an implementation writes only the poll functions, an application only
//! `.await`s. No method requires `Send`: everything lives on one core.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod connect;
pub mod cores;
pub mod dns;
pub mod error;
pub mod exec;
pub mod happy_eyeballs;
pub mod kernel;
pub mod mem;
pub mod runtime;
pub mod tls;
pub mod user;

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::task::{Context, Poll};

pub use connect::{connect, BoxFlow, ConnectError, Context as ConnectContext, Registry};
pub use error::FlowError;
pub use exec::{
    core_cycles, core_cycles_handle, now_ns, race, sleep, spawn, timeout, Either, Executor, JoinHandle, Reactor,
};

pub use cores::Core;
pub use runtime::Runtime;
pub use stack::tcp::{CongestionControl, Keepalive, ListenConfig, RtoConfig, SynCookies, TcpConfig};
pub use stack::UdpConfig;

/// A reliable, ordered byte stream (a TCP connection, or an in-memory pair).
pub trait Flow {
    /// Reads into `buf`: `Ready(Ok(0))` is end of stream (the peer shut down its
    /// sending side); `Pending` registers the task to be woken when data arrives.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, FlowError>>;
    /// Queues some of `buf` for sending, returning how much was taken (at least 1
    /// byte unless `buf` is empty).
    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize, FlowError>>;
    /// Shuts down the sending side (FIN after the queued data); reading goes on.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), FlowError>>;
    /// Closes the flow: graceful (queued data is still delivered), the handle is
    /// gone afterwards.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), FlowError>>;
    /// Aborts the flow (RFC 9293 §3.10.7.1 ABORT): the peer gets a reset, data
    /// still queued either way is dropped, and every later read or write fails.
    /// A proxy uses it to pass a reset from one side on to the other. The
    /// default closes gracefully, for flows that have no reset of their own.
    fn abort(&mut self) {}
    /// The peer's address.
    fn peer_addr(&self) -> Result<SocketAddr, FlowError>;
    /// Our address.
    fn local_addr(&self) -> Result<SocketAddr, FlowError>;

    /// Reads into `buf` (see [`poll_read`](Self::poll_read)).
    fn read<'a>(&'a mut self, buf: &'a mut [u8]) -> impl Future<Output = Result<usize, FlowError>> + 'a
    where
        Self: Sized,
    {
        poll_fn(move |cx| self.poll_read(cx, buf))
    }

    /// Fills `buf` completely; `Err(Closed)` if the stream ends first.
    fn read_exact<'a>(&'a mut self, buf: &'a mut [u8]) -> impl Future<Output = Result<(), FlowError>> + 'a
    where
        Self: Sized,
    {
        async move {
            let mut at = 0;
            while at < buf.len() {
                match self.read(&mut buf[at..]).await? {
                    0 => return Err(FlowError::Closed),
                    n => at += n,
                }
            }
            Ok(())
        }
    }

    /// Writes some of `buf` (see [`poll_write`](Self::poll_write)).
    fn write<'a>(&'a mut self, buf: &'a [u8]) -> impl Future<Output = Result<usize, FlowError>> + 'a
    where
        Self: Sized,
    {
        poll_fn(move |cx| self.poll_write(cx, buf))
    }

    /// Writes all of `buf`, waiting for buffer space as needed.
    fn write_all<'a>(&'a mut self, buf: &'a [u8]) -> impl Future<Output = Result<(), FlowError>> + 'a
    where
        Self: Sized,
    {
        async move {
            let mut at = 0;
            while at < buf.len() {
                at += self.write(&buf[at..]).await?;
            }
            Ok(())
        }
    }

    /// Shuts down the sending side.
    fn shutdown(&mut self) -> impl Future<Output = Result<(), FlowError>> + '_
    where
        Self: Sized,
    {
        poll_fn(move |cx| self.poll_shutdown(cx))
    }

    /// Closes the flow, consuming it.
    fn close(mut self) -> impl Future<Output = Result<(), FlowError>>
    where
        Self: Sized,
    {
        async move { poll_fn(|cx| self.poll_close(cx)).await }
    }
}

/// Accepts flows on a local address.
pub trait Listener {
    /// The flows it hands out.
    type Flow: Flow;
    /// Takes the next established connection, or registers the task.
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Result<(Self::Flow, SocketAddr), FlowError>>;
    /// The address listened on.
    fn local_addr(&self) -> Result<SocketAddr, FlowError>;

    /// Waits for the next connection.
    fn accept(&mut self) -> impl Future<Output = Result<(Self::Flow, SocketAddr), FlowError>> + '_
    where
        Self: Sized,
    {
        poll_fn(move |cx| self.poll_accept(cx))
    }
}

/// A UDP socket.
pub trait Datagram {
    /// Receives one datagram into `buf` (truncated if longer), with its sender.
    fn poll_recv_from(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<(usize, SocketAddr), FlowError>>;
    /// Sends one datagram.
    fn poll_send_to(&mut self, cx: &mut Context<'_>, buf: &[u8], to: SocketAddr) -> Poll<Result<(), FlowError>>;
    /// The bound address.
    fn local_addr(&self) -> Result<SocketAddr, FlowError>;

    /// Receives one datagram.
    fn recv_from<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = Result<(usize, SocketAddr), FlowError>> + 'a
    where
        Self: Sized,
    {
        poll_fn(move |cx| self.poll_recv_from(cx, buf))
    }

    /// Sends one datagram.
    fn send_to<'a>(&'a mut self, buf: &'a [u8], to: SocketAddr) -> impl Future<Output = Result<(), FlowError>> + 'a
    where
        Self: Sized,
    {
        poll_fn(move |cx| self.poll_send_to(cx, buf, to))
    }
}

/// One core's network: what an application is generic over.
///
/// Every wire-affecting value comes in through [`ListenConfig`], [`TcpConfig`]
/// and [`UdpConfig`] (the stack's own types, with no defaults). Implementations
/// that cannot honour a value (the kernel's SYN backlog and RTO are sysctls)
/// say so in their docs.
pub trait Net: Clone + 'static {
    /// Its byte streams.
    type Flow: Flow + 'static;
    /// Its listeners.
    type Listener: Listener<Flow = Self::Flow> + 'static;
    /// Its UDP sockets.
    type Udp: Datagram + 'static;

    /// Short name for messages (`user`, `kernel`, `mem`).
    fn name(&self) -> &'static str;
    /// Listens on `addr` (an unspecified IP listens on every local address).
    fn listen(&self, addr: SocketAddr, cfg: &ListenConfig) -> Result<Self::Listener, FlowError>;
    /// Opens a connection; fails with `Refused`, `Unreachable` or `TimedOut`.
    fn connect(&self, addr: SocketAddr, cfg: &TcpConfig) -> impl Future<Output = Result<Self::Flow, FlowError>>;
    /// Binds a UDP socket.
    fn udp_bind(&self, addr: SocketAddr, cfg: &UdpConfig) -> Result<Self::Udp, FlowError>;

    /// This core's share-nothing counters, as (name, value): for our stack
    /// `rss_misdirected`, `frames_handed_off`, `frames_handed_in`,
    /// `neighbor_broadcasts` (see `stack::cores`); none for stacks that do not
    /// split a port over cores themselves.
    fn core_counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}
