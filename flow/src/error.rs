//! The one error type of the Flow API.

use std::fmt;
use std::io;

/// Why a flow operation failed. The first five are the outcomes every TCP has;
/// `Tls` is the TLS layer's own; `Io` carries anything else (a bad address, a configuration value, an OS
/// error) with a message naming it.
#[derive(Debug)]
pub enum FlowError {
    /// The flow was closed (by us, or the peer is gone and writing is pointless).
    Closed,
    /// The peer reset the connection.
    Reset,
    /// The peer refused the connection (RST to our SYN / ECONNREFUSED).
    Refused,
    /// The connection (or the handshake) timed out.
    TimedOut,
    /// No route to the peer (no neighbour, no route, ICMP unreachable).
    Unreachable,
    /// The TLS layer failed (a bad certificate, an alert, garbage from the
    /// peer, a truncated stream): typed, never folded into `Io`.
    Tls(crate::tls::TlsError),
    /// Anything else.
    Io(io::Error),
}

impl FlowError {
    /// An `Io` error of kind `InvalidInput` with a message.
    pub fn invalid(msg: impl Into<String>) -> FlowError {
        FlowError::Io(io::Error::new(io::ErrorKind::InvalidInput, msg.into()))
    }

    /// Maps an OS error onto the typed outcomes.
    pub fn from_io(e: io::Error) -> FlowError {
        use io::ErrorKind as K;
        match e.kind() {
            K::ConnectionRefused => FlowError::Refused,
            K::ConnectionReset | K::ConnectionAborted => FlowError::Reset,
            K::TimedOut => FlowError::TimedOut,
            K::BrokenPipe | K::NotConnected => FlowError::Closed,
            K::HostUnreachable | K::NetworkUnreachable => FlowError::Unreachable,
            _ => match e.raw_os_error() {
                Some(113) | Some(101) => FlowError::Unreachable, // EHOSTUNREACH, ENETUNREACH
                _ => FlowError::Io(e),
            },
        }
    }
}

impl From<io::Error> for FlowError {
    fn from(e: io::Error) -> Self {
        FlowError::from_io(e)
    }
}

impl From<stack::ConfigError> for FlowError {
    fn from(e: stack::ConfigError) -> Self {
        FlowError::invalid(e.to_string())
    }
}

impl From<stack::StackError> for FlowError {
    fn from(e: stack::StackError) -> Self {
        match e {
            stack::StackError::NoRoute(_) => FlowError::Unreachable,
            stack::StackError::AddrInUse(_) => FlowError::Io(io::Error::new(io::ErrorKind::AddrInUse, e.to_string())),
            stack::StackError::AddrNotAvailable(_) => {
                FlowError::Io(io::Error::new(io::ErrorKind::AddrNotAvailable, e.to_string()))
            }
            stack::StackError::ConnectionLimit(_) | stack::StackError::NoBuffers | stack::StackError::TxFull => {
                FlowError::Io(io::Error::other(e.to_string()))
            }
            other => FlowError::invalid(other.to_string()),
        }
    }
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowError::Closed => f.write_str("connection closed"),
            FlowError::Reset => f.write_str("connection reset by peer"),
            FlowError::Refused => f.write_str("connection refused"),
            FlowError::TimedOut => f.write_str("timed out"),
            FlowError::Unreachable => f.write_str("destination unreachable"),
            FlowError::Tls(e) => write!(f, "tls: {e}"),
            FlowError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FlowError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FlowError::Io(e) => Some(e),
            FlowError::Tls(e) => Some(e),
            _ => None,
        }
    }
}
