//! The stack's error types, split by when they happen (thiserror, as pmd's):
//!
//! * [`ConfigError`]: a configuration value is missing or cannot work —
//!   [`StackConfig`](crate::StackConfig) checks and text form, [`Stack::new`](crate::Stack::new),
//!   the timer wheel. Messages name the field.
//! * [`StackError`]: what a socket call on a running stack can fail with
//!   (binding, routing, sending, handles, limits), including a
//!   [`ConfigError`] for the per-socket configuration a call validates
//!   (`udp().bind`, `tcp().listen`, `tcp().connect`, `echo().open`).
//! * The TCP byte-stream calls have their own
//!   [`TcpSocketError`](crate::TcpSocketError) (would-block and the
//!   connection's fate); a stale handle is `InvalidHandle` in both.
//! * [`TcpConfigError`](crate::tcp::TcpConfigError) is the TCP core's.
//!
//! Per-frame problems on the receive path are not errors but counted drop
//! reasons (see [`crate::stats`]).

use std::net::{IpAddr, SocketAddr};

/// A configuration value that is missing or cannot work. Messages name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A configuration field is missing.
    #[error("missing configuration value '{field}'")]
    Missing {
        /// The field, e.g. `neighbor.capacity`.
        field: String,
    },
    /// A configuration field has a bad value.
    #[error("invalid '{field}': {reason}")]
    Invalid {
        /// The field, e.g. `neighbor.capacity`.
        field: String,
        /// Why it is bad.
        reason: String,
    },
}

impl ConfigError {
    /// A bad value for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid { field: field.into(), reason: reason.into() }
    }

    /// A missing `field`.
    pub fn missing(field: impl Into<String>) -> Self {
        ConfigError::Missing { field: field.into() }
    }
}

/// What a socket call on a running stack can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StackError {
    /// A configuration the call was given cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The local address/port is already bound.
    #[error("address {0} is already bound")]
    AddrInUse(SocketAddr),
    /// The local address is not one of the interface's.
    #[error("address {0} is not an address of this interface")]
    AddrNotAvailable(SocketAddr),
    /// No route to the destination (not on a connected network, no gateway).
    #[error("no route to {0}")]
    NoRoute(IpAddr),
    /// The datagram does not fit the MTU or the buffer's headroom.
    #[error("datagram too big: {need} bytes, at most {max}")]
    TooBig {
        /// Bytes needed.
        need: usize,
        /// Bytes allowed.
        max: usize,
    },
    /// The socket handle is not (or no longer) valid.
    #[error("invalid socket handle")]
    InvalidHandle,
    /// The destination's address family does not match the socket's.
    #[error("destination {0} is not of the socket's address family")]
    FamilyMismatch(SocketAddr),
    /// The transmit backlog is full; the packet was dropped.
    #[error("transmit backlog full")]
    TxFull,
    /// The mempool is exhausted.
    #[error("mempool exhausted")]
    NoBuffers,
    /// The TCP connection table is full (`tcp_max_connections`).
    #[error("TCP connection limit reached ({0}, tcp_max_connections)")]
    ConnectionLimit(usize),
    /// A queued datagram waits for address resolution; counted when the queue
    /// overflows.
    #[error("queue of packets awaiting address resolution is full")]
    PendingFull,
}

impl StackError {
    /// A bad value for `field` of a configuration the call was given.
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        StackError::Config(ConfigError::invalid(field, reason))
    }
}
