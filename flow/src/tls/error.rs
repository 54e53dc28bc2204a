//! The TLS layer's typed errors: what went wrong is a value a caller can match
//! (an expired certificate is `Certificate(Expired)`, not a string in an `Io`).

use std::fmt;

/// Why a TLS handshake or session failed.
#[derive(Debug)]
pub enum TlsError {
    /// The peer's certificate was rejected: expired, not valid for the name,
    /// unknown issuer, bad signature, ... (rustls' own classification).
    Certificate(rustls::CertificateError),
    /// The peer rejected us with an alert (e.g. it did not like our certificate
    /// or we share no protocol version).
    PeerAlert(rustls::AlertDescription),
    /// The peer sent something that is not TLS, or broke the protocol.
    Protocol(String),
    /// The peer closed the connection without close_notify: the data may have
    /// been cut short (RFC 8446 6.1).
    Truncated,
    /// A PEM file could not be read or held nothing usable; names the file.
    Pem {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// A configuration value was wrong or missing; names the field.
    Config {
        /// The field.
        field: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The name to verify the peer against is not a DNS name or IP address.
    InvalidName(String),
    /// Any other rustls error.
    Other(rustls::Error),
}

impl TlsError {
    /// Classifies a rustls error.
    pub fn from_rustls(e: rustls::Error) -> TlsError {
        use rustls::Error as E;
        match e {
            E::InvalidCertificate(c) => TlsError::Certificate(c),
            E::AlertReceived(a) => TlsError::PeerAlert(a),
            E::InvalidMessage(_)
            | E::PeerMisbehaved(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::DecryptError
            | E::PeerIncompatible(_) => TlsError::Protocol(e.to_string()),
            other => TlsError::Other(other),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Certificate(c) => write!(f, "bad certificate: {}", rustls::Error::InvalidCertificate(c.clone())),
            TlsError::PeerAlert(a) => write!(f, "the peer sent alert {a:?}"),
            TlsError::Protocol(m) => write!(f, "protocol error: {m}"),
            TlsError::Truncated => f.write_str("the peer closed without close_notify (truncated)"),
            TlsError::Pem { path, reason } => write!(f, "{path}: {reason}"),
            TlsError::Config { field, reason } => write!(f, "{field}: {reason}"),
            TlsError::InvalidName(n) => write!(f, "'{n}' is not a valid server name"),
            TlsError::Other(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TlsError {}

impl From<TlsError> for crate::FlowError {
    fn from(e: TlsError) -> Self {
        crate::FlowError::Tls(e)
    }
}
