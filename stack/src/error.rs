//! The stack's error type (control path: configuration, binding, sending).
//! Per-frame problems on the receive path are not errors but counted drop
//! reasons (see [`crate::stats`]).

use std::fmt;
use std::net::SocketAddr;

/// What went wrong. Messages name the field or value at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackError {
    /// A configuration field is missing.
    Missing {
        /// The field, e.g. `neighbor.capacity`.
        field: String,
    },
    /// A configuration field has a bad value.
    Config {
        /// The field, e.g. `neighbor.capacity`.
        field: String,
        /// Why it is bad.
        reason: String,
    },
    /// The local address/port is already bound.
    AddrInUse(SocketAddr),
    /// The local address is not one of the interface's.
    AddrNotAvailable(SocketAddr),
    /// No route to the destination (not on a connected network, no gateway).
    NoRoute(std::net::IpAddr),
    /// The datagram does not fit the MTU or the buffer's headroom.
    TooBig {
        /// Bytes needed.
        need: usize,
        /// Bytes allowed.
        max: usize,
    },
    /// The socket handle is not (or no longer) valid.
    BadSocket,
    /// The destination's address family does not match the socket's.
    FamilyMismatch(SocketAddr),
    /// The transmit backlog is full; the packet was dropped.
    TxFull,
    /// The mempool is exhausted.
    NoBuffers,
    /// The TCP connection table is full (`tcp_max_connections`).
    ConnectionLimit(usize),
    /// A queued datagram waits for address resolution; counted when the queue
    /// overflows.
    PendingFull,
}

impl StackError {
    /// A bad value for `field`.
    pub fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        StackError::Config { field: field.into(), reason: reason.into() }
    }

    /// A missing `field`.
    pub fn missing(field: impl Into<String>) -> Self {
        StackError::Missing { field: field.into() }
    }
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::Missing { field } => write!(f, "missing configuration value '{field}'"),
            StackError::Config { field, reason } => write!(f, "invalid '{field}': {reason}"),
            StackError::AddrInUse(a) => write!(f, "address {a} is already bound"),
            StackError::AddrNotAvailable(a) => write!(f, "address {a} is not an address of this interface"),
            StackError::NoRoute(a) => write!(f, "no route to {a}"),
            StackError::TooBig { need, max } => write!(f, "datagram too big: {need} bytes, at most {max}"),
            StackError::BadSocket => write!(f, "invalid socket handle"),
            StackError::FamilyMismatch(a) => write!(f, "destination {a} is not of the socket's address family"),
            StackError::TxFull => write!(f, "transmit backlog full"),
            StackError::NoBuffers => write!(f, "mempool exhausted"),
            StackError::ConnectionLimit(n) => write!(f, "TCP connection limit reached ({n}, tcp_max_connections)"),
            StackError::PendingFull => write!(f, "queue of packets awaiting address resolution is full"),
        }
    }
}

impl std::error::Error for StackError {}
