//! TLS configurations from explicit values: roots, versions, ALPN, client
//! certificates, all given by the caller; PEM files read here with errors that
//! name the file. The crypto provider is `ring`, chosen here once.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// Protocol versions a configuration allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 (RFC 5246).
    Tls12,
    /// TLS 1.3 (RFC 8446).
    Tls13,
}

impl TlsVersion {
    /// `1.2` / `1.3`.
    pub fn parse(s: &str) -> Option<TlsVersion> {
        match s {
            "1.2" => Some(TlsVersion::Tls12),
            "1.3" => Some(TlsVersion::Tls13),
            _ => None,
        }
    }
}

fn versions(v: &[TlsVersion]) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
    if v.is_empty() {
        return Err(TlsError::Config { field: "versions", reason: "at least one TLS version is needed".into() });
    }
    Ok(v.iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect())
}

// ring's provider has no post-quantum key exchange (hence rustls' deprecation
// note); aws-lc-rs has, but needs cmake and nasm to build, which this project's
// machines do not have. Chosen in this one place.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file (at least one).
pub fn certs_from_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let name = path.display().to_string();
    let it =
        CertificateDer::pem_file_iter(path).map_err(|e| TlsError::Pem { path: name.clone(), reason: e.to_string() })?;
    let certs: Vec<_> =
        it.collect::<Result<_, _>>().map_err(|e| TlsError::Pem { path: name.clone(), reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: name, reason: "no CERTIFICATE in the file".into() });
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn key_from_pem(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| TlsError::Pem { path: path.display().to_string(), reason: e.to_string() })
}

/// What a TLS client is configured with. No defaults: every field is the caller's.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// Trust anchors (CA certificates), DER.
    pub roots: Vec<CertificateDer<'static>>,
    /// Versions offered.
    pub versions: Vec<TlsVersion>,
    /// ALPN protocols offered, most preferred first (empty: no ALPN).
    pub alpn: Vec<Vec<u8>>,
    /// A client certificate chain and its key, for servers that ask.
    pub client_cert: Option<(Vec<CertificateDer<'static>>, std::sync::Arc<PrivateKeyDer<'static>>)>,
}

/// What a TLS server is configured with.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// Our certificate chain (leaf first).
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: std::sync::Arc<PrivateKeyDer<'static>>,
    /// Versions accepted.
    pub versions: Vec<TlsVersion>,
    /// ALPN protocols accepted, most preferred first (empty: no ALPN).
    pub alpn: Vec<Vec<u8>>,
    /// CAs whose client certificates are required (`None`: no client auth).
    pub client_roots: Option<Vec<CertificateDer<'static>>>,
}

/// A rustls client configuration from the settings.
pub fn client_config(s: &ClientSettings) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    if s.roots.is_empty() {
        return Err(TlsError::Config { field: "roots", reason: "no trust anchors: give a CA file".into() });
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in &s.roots {
        roots.add(c.clone()).map_err(|e| TlsError::Config { field: "roots", reason: e.to_string() })?;
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions(&s.versions)?)
        .map_err(TlsError::from_rustls)?
        .with_root_certificates(roots);
    let mut c = match &s.client_cert {
        Some((chain, key)) => b
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| TlsError::Config { field: "client_cert", reason: e.to_string() })?,
        None => b.with_no_client_auth(),
    };
    c.alpn_protocols = s.alpn.clone();
    Ok(Arc::new(c))
}

/// A rustls server configuration from the settings.
pub fn server_config(s: &ServerSettings) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let b = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions(&s.versions)?)
        .map_err(TlsError::from_rustls)?;
    let b = match &s.client_roots {
        Some(cas) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in cas {
                roots.add(c.clone()).map_err(|e| TlsError::Config { field: "client_roots", reason: e.to_string() })?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::Config { field: "client_roots", reason: e.to_string() })?;
            b.with_client_cert_verifier(v)
        }
        None => b.with_no_client_auth(),
    };
    let mut c = b
        .with_single_cert(s.chain.clone(), s.key.clone_key())
        .map_err(|e| TlsError::Config { field: "key", reason: e.to_string() })?;
    c.alpn_protocols = s.alpn.clone();
    Ok(Arc::new(c))
}
