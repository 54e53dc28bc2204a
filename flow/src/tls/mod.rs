//! TLS over any [`Flow`]: [`TlsFlow<F>`] is a client or server session of
//! rustls 0.23 on top of a byte stream, itself a `Flow`.
//!
//! It drives rustls' *buffered* connection by hand — `read_tls` →
//! `process_new_packets` → `reader().read` inbound, `writer().write` →
//! `write_tls` outbound — from the poll functions, never `Stream`/`complete_io`:
//! those loop on a blocking transport and can wait for a read while a flight is
//! still unsent on a non-blocking one, which deadlocks.
//!
//! Invariants:
//! * `inbuf[in_start..in_end]` is ciphertext read from the transport that rustls
//!   has not taken yet; it is offered again before the transport is read.
//! * `out[out_at..]` is ciphertext rustls produced that the transport has not
//!   taken yet. `poll_write` accepts plaintext only once `out` is empty
//!   (backpressure: at most one buffer of ciphertext is ever queued), and every
//!   poll function tries to flush it, so a writer that goes on to read still
//!   gets its bytes out.
//! * A clean end is close_notify: `poll_shutdown`/`poll_close` send it, and a
//!   transport that ends without one is `TlsError::Truncated`, not end of stream.
//! * After a fatal error the alert is flushed best-effort and every further
//!   call fails with `Closed`; no buffer outlives the value.

mod config;
mod error;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use config::{
    certs_from_pem, client_config, key_from_pem, server_config, ClientSettings, ServerSettings, TlsVersion,
};
pub use error::TlsError;
pub use rustls::pki_types::ServerName;
// The rustls this module is built on, for callers that name its types.
pub use rustls;

use crate::{Flow, FlowError};

/// The largest TLS record (16 KiB of plaintext plus the most overhead rustls
/// accepts): one transport read of this size always holds a whole record.
const INBUF: usize = 18 * 1024;

/// A TLS session over the flow `F`.
pub struct TlsFlow<F> {
    io: F,
    conn: rustls::Connection,
    inbuf: Box<[u8]>,
    in_start: usize,
    in_end: usize,
    out: Vec<u8>,
    out_at: usize,
    io_eof: bool,
    close_sent: bool,
    failed: bool,
}

/// The server name to verify a peer against: a DNS name (sent as SNI) or an
/// IP address (no SNI, RFC 6066 3).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string()).map_err(|_| TlsError::InvalidName(host.to_string()))
}

/// A waker for the one best-effort flush of a fatal alert (nobody waits on it).
struct Noop;
impl std::task::Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

macro_rules! ready {
    ($e:expr) => {
        match $e {
            Poll::Ready(v) => v,
            Poll::Pending => return Poll::Pending,
        }
    };
}

impl<F: Flow> TlsFlow<F> {
    fn new(io: F, conn: rustls::Connection) -> Self {
        TlsFlow {
            io,
            conn,
            inbuf: vec![0u8; INBUF].into_boxed_slice(),
            in_start: 0,
            in_end: 0,
            out: Vec::new(),
            out_at: 0,
            io_eof: false,
            close_sent: false,
            failed: false,
        }
    }

    /// Runs a client handshake over `io`, verifying the server as `name`.
    pub async fn connect(
        io: F,
        cfg: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<TlsFlow<F>, FlowError> {
        let c = rustls::ClientConnection::new(cfg, name).map_err(TlsError::from_rustls)?;
        let mut t = TlsFlow::new(io, c.into());
        std::future::poll_fn(|cx| t.poll_handshake(cx)).await?;
        Ok(t)
    }

    /// Runs a server handshake over `io`.
    pub async fn accept(io: F, cfg: Arc<rustls::ServerConfig>) -> Result<TlsFlow<F>, FlowError> {
        let c = rustls::ServerConnection::new(cfg).map_err(TlsError::from_rustls)?;
        let mut t = TlsFlow::new(io, c.into());
        std::future::poll_fn(|cx| t.poll_handshake(cx)).await?;
        Ok(t)
    }

    /// The transport.
    pub fn get_ref(&self) -> &F {
        &self.io
    }

    /// The protocol ALPN settled on, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The negotiated version.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The name the client asked for (server side).
    pub fn sni(&self) -> Option<&str> {
        match &self.conn {
            rustls::Connection::Server(s) => s.server_name(),
            rustls::Connection::Client(_) => None,
        }
    }

    fn fail(&mut self, e: rustls::Error) -> FlowError {
        self.failed = true;
        // The alert rustls queued for the peer: one try, no waiting for it.
        if self.conn.wants_write() {
            let mut alert = Vec::new();
            let _ = self.conn.write_tls(&mut alert);
            self.out.extend_from_slice(&alert);
        }
        let waker = std::task::Waker::from(Arc::new(Noop));
        let _ = self.poll_flush_out(&mut Context::from_waker(&waker));
        FlowError::Tls(TlsError::from_rustls(e))
    }

    /// Writes queued ciphertext to the transport until none is left.
    fn poll_flush_out(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), FlowError>> {
        loop {
            if self.out_at < self.out.len() {
                let n = ready!(self.io.poll_write(cx, &self.out[self.out_at..]))?;
                self.out_at += n;
                continue;
            }
            self.out.clear();
            self.out_at = 0;
            if !self.conn.wants_write() {
                return Poll::Ready(Ok(()));
            }
            self.conn.write_tls(&mut self.out).map_err(FlowError::from_io)?;
        }
    }

    /// Feeds rustls one transport read (or what is left of the last one) and
    /// processes it. `Ready(Ok(()))` means progress was made (maybe EOF).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), FlowError>> {
        if self.in_start == self.in_end && !self.io_eof {
            match ready!(self.io.poll_read(cx, &mut self.inbuf)) {
                Ok(0) => self.io_eof = true,
                Ok(n) => (self.in_start, self.in_end) = (0, n),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        if self.io_eof && self.in_start == self.in_end {
            // An empty read tells rustls the transport ended.
            let _ = self.conn.read_tls(&mut &[][..]);
        } else {
            let mut slice = &self.inbuf[self.in_start..self.in_end];
            let n = self.conn.read_tls(&mut slice).map_err(FlowError::from_io)?;
            self.in_start += n;
        }
        match self.conn.process_new_packets() {
            Ok(_) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(self.fail(e))),
        }
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), FlowError>> {
        loop {
            if self.failed {
                return Poll::Ready(Err(FlowError::Closed));
            }
            ready!(self.poll_flush_out(cx))?;
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if self.io_eof {
                return Poll::Ready(Err(FlowError::Tls(TlsError::Truncated)));
            }
            ready!(self.poll_fill(cx))?;
        }
    }
}

impl<F: Flow> Flow for TlsFlow<F> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<Result<usize, FlowError>> {
        if self.failed {
            return Poll::Ready(Err(FlowError::Closed));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            match self.conn.reader().read(buf) {
                // Ok(0): the peer's close_notify, a clean end of stream.
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Poll::Ready(Err(FlowError::Tls(TlsError::Truncated)))
                }
                Err(e) => return Poll::Ready(Err(FlowError::from_io(e))),
            }
            // Records rustls owes the peer (alerts, key updates, data written
            // before this read): sent while we wait, never blocking the read.
            if let Poll::Ready(Err(e)) = self.poll_flush_out(cx) {
                return Poll::Ready(Err(e));
            }
            if self.io_eof && self.in_start == self.in_end {
                return Poll::Ready(Err(FlowError::Tls(TlsError::Truncated)));
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize, FlowError>> {
        if self.failed || self.close_sent {
            return Poll::Ready(Err(FlowError::Closed));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(self.poll_flush_out(cx))?;
        let n = self.conn.writer().write(buf).map_err(FlowError::from_io)?;
        // Start sending at once; what the transport does not take now stays in
        // `out` and goes with the next call (the waker is registered).
        if let Poll::Ready(Err(e)) = self.poll_flush_out(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), FlowError>> {
        if self.failed {
            return Poll::Ready(Err(FlowError::Closed));
        }
        if !self.close_sent {
            self.conn.send_close_notify();
            self.close_sent = true;
        }
        ready!(self.poll_flush_out(cx))?;
        self.io.poll_shutdown(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), FlowError>> {
        if !self.failed {
            if !self.close_sent {
                self.conn.send_close_notify();
                self.close_sent = true;
            }
            if let Err(e) = ready!(self.poll_flush_out(cx)) {
                let _ = self.io.poll_close(cx);
                return Poll::Ready(Err(e));
            }
        }
        self.io.poll_close(cx)
    }

    fn peer_addr(&self) -> Result<SocketAddr, FlowError> {
        self.io.peer_addr()
    }

    fn local_addr(&self) -> Result<SocketAddr, FlowError> {
        self.io.local_addr()
    }
}
