//! The flags of connecting by URI: the resolver's and happy eyeballs' values
//! (every one a flag), TLS client and server settings, and how `--target` is
//! read. A literal `tcp://IP:PORT` connects directly (nothing between the
//! measured flow and the stack); a name or `tls://` goes through the connect
//! registry (`flow::connect`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use flow::connect::{Host, Registry};
use flow::dns::ResolverConfig;
use flow::happy_eyeballs::HappyEyeballsConfig;
use flow::tls::{self, ClientSettings, ServerSettings, TlsVersion};
use flow::{TcpConfig, UdpConfig};

use crate::Fail;

/// Resolver and happy-eyeballs values.
#[derive(Args, Debug, Clone)]
pub struct ResolveArgs {
    /// DNS server IP:PORT for names (repeat for more, tried in turn).
    #[arg(long = "resolver")]
    pub resolvers: Vec<String>,
    /// Take the DNS servers from this resolv.conf (never read unless given).
    #[arg(long)]
    pub resolv_conf: Option<PathBuf>,
    /// How long one DNS query waits, ms.
    #[arg(long, default_value_t = 1_000)]
    pub resolver_timeout_ms: u64,
    /// DNS queries after the first (each to the next server).
    #[arg(long, default_value_t = 2)]
    pub resolver_retries: u32,
    /// DNS answers cached per core (0: none).
    #[arg(long, default_value_t = 1_024)]
    pub resolver_cache: usize,
    /// Happy eyeballs: how long an A answer waits for the AAAA one, ms (RFC 8305: 50).
    #[arg(long, default_value_t = 50)]
    pub he_resolution_delay_ms: u64,
    /// Happy eyeballs: between connection attempts, ms (RFC 8305: 250; 10..=2000).
    #[arg(long, default_value_t = 250)]
    pub he_attempt_delay_ms: u64,
    /// Happy eyeballs: addresses of the preferred family tried first (RFC 8305: 1).
    #[arg(long, default_value_t = 1)]
    pub he_first_family_count: usize,
    /// Happy eyeballs: one attempt gives up after this, ms.
    #[arg(long, default_value_t = 3_000)]
    pub he_attempt_timeout_ms: u64,
    /// Happy eyeballs: the whole race (resolution included) gives up after this, ms.
    #[arg(long, default_value_t = 10_000)]
    pub he_overall_timeout_ms: u64,
    /// Happy eyeballs: attempts in flight at once.
    #[arg(long, default_value_t = 4)]
    pub he_max_concurrent: usize,
}

fn field_flag(field: &str) -> String {
    format!("--{}", field.replace('_', "-"))
}

impl ResolveArgs {
    /// The happy-eyeballs values; the error names the flag.
    pub fn he(&self) -> Result<HappyEyeballsConfig, Fail> {
        let c = HappyEyeballsConfig {
            resolution_delay: Duration::from_millis(self.he_resolution_delay_ms),
            connection_attempt_delay: Duration::from_millis(self.he_attempt_delay_ms),
            first_address_family_count: self.he_first_family_count,
            attempt_timeout: Duration::from_millis(self.he_attempt_timeout_ms),
            overall_timeout: Duration::from_millis(self.he_overall_timeout_ms),
            max_concurrent: self.he_max_concurrent,
        };
        c.validate().map_err(|e| {
            let flag = match e.field {
                "resolution_delay" => "--he-resolution-delay-ms",
                "connection_attempt_delay" => "--he-attempt-delay-ms",
                "first_address_family_count" => "--he-first-family-count",
                "attempt_timeout" => "--he-attempt-timeout-ms",
                "overall_timeout" => "--he-overall-timeout-ms",
                _ => "--he-max-concurrent",
            };
            Fail::usage(format!("{flag}: {}", e.reason))
        })?;
        Ok(c)
    }

    /// Whether a resolver was asked for.
    pub fn given(&self) -> bool {
        !self.resolvers.is_empty() || self.resolv_conf.is_some()
    }

    /// The resolver's values (`tcp` for truncated answers).
    pub fn resolver(&self, tcp: &TcpConfig) -> Result<ResolverConfig, Fail> {
        let udp = UdpConfig { rx_queue_len: 64 };
        let timeout = Duration::from_millis(self.resolver_timeout_ms);
        let c = match (&self.resolv_conf, self.resolvers.is_empty()) {
            (Some(_), false) => return Err(Fail::usage("--resolver and --resolv-conf: give one of them")),
            (None, true) => return Err(Fail::usage("a name needs --resolver IP:PORT (or --resolv-conf FILE)")),
            (Some(p), true) => ResolverConfig::from_resolv_conf(
                p,
                timeout,
                self.resolver_retries,
                self.resolver_cache,
                udp,
                tcp.clone(),
            )
            .map_err(|e| Fail::usage(format!("--resolv-conf: {e}")))?,
            (None, false) => {
                let mut servers = Vec::new();
                for s in &self.resolvers {
                    servers.push(
                        s.parse().map_err(|_| Fail::usage(format!("--resolver '{s}' is not IP:PORT ([IPv6]:PORT)")))?,
                    );
                }
                ResolverConfig {
                    servers,
                    timeout,
                    retries: self.resolver_retries,
                    cache_capacity: self.resolver_cache,
                    udp,
                    tcp: tcp.clone(),
                }
            }
        };
        c.validate().map_err(|e| {
            let flag = match e.field {
                "servers" => "--resolver",
                "timeout" => "--resolver-timeout-ms",
                other => return Fail::usage(format!("{}: {}", field_flag(other), e.reason)),
            };
            Fail::usage(format!("{flag}: {}", e.reason))
        })?;
        Ok(c)
    }
}

fn versions(flag: &str, s: &str) -> Result<Vec<TlsVersion>, Fail> {
    s.split(',')
        .map(|v| TlsVersion::parse(v.trim()).ok_or_else(|| Fail::usage(format!("{flag}: '{v}' is not 1.2 or 1.3"))))
        .collect()
}

/// TLS client values.
#[derive(Args, Debug, Clone)]
pub struct TlsClientArgs {
    /// CA certificates (PEM) that tls:// servers are verified against.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// TLS versions offered: 1.2, 1.3 or both.
    #[arg(long, default_value = "1.2,1.3")]
    pub tls_versions: String,
    /// ALPN protocol offered (repeat, most preferred first).
    #[arg(long)]
    pub alpn: Vec<String>,
    /// Client certificate chain (PEM), for servers that ask.
    #[arg(long, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl TlsClientArgs {
    /// The rustls client configuration; the error names the flag or file.
    pub fn config(&self) -> Result<Arc<tls::rustls::ClientConfig>, Fail> {
        let ca = self.ca.as_ref().ok_or_else(|| Fail::usage("tls:// needs --ca FILE (the CA to verify the server)"))?;
        let roots = tls::certs_from_pem(ca).map_err(|e| Fail::usage(format!("--ca: {e}")))?;
        let client_cert = match (&self.client_cert, &self.client_key) {
            (Some(c), Some(k)) => Some((
                tls::certs_from_pem(c).map_err(|e| Fail::usage(format!("--client-cert: {e}")))?,
                Arc::new(tls::key_from_pem(k).map_err(|e| Fail::usage(format!("--client-key: {e}")))?),
            )),
            _ => None,
        };
        let s = ClientSettings {
            roots,
            versions: versions("--tls-versions", &self.tls_versions)?,
            alpn: self.alpn.iter().map(|a| a.as_bytes().to_vec()).collect(),
            client_cert,
        };
        tls::client_config(&s).map_err(|e| Fail::usage(format!("tls: {e}")))
    }
}

/// TLS server values.
#[derive(Args, Debug, Clone)]
pub struct TlsServerArgs {
    /// Serve TCP over TLS with this certificate chain (PEM, leaf first).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// TLS versions accepted: 1.2, 1.3 or both.
    #[arg(long, default_value = "1.2,1.3")]
    pub tls_server_versions: String,
    /// ALPN protocol accepted (repeat, most preferred first).
    #[arg(long)]
    pub tls_alpn: Vec<String>,
    /// A TLS handshake not finished by then is dropped, ms.
    #[arg(long, default_value_t = 5_000)]
    pub tls_handshake_timeout_ms: u64,
}

impl TlsServerArgs {
    /// The server configuration, if TLS was asked for.
    pub fn config(&self) -> Result<Option<(Arc<tls::rustls::ServerConfig>, Duration)>, Fail> {
        let (Some(c), Some(k)) = (&self.tls_cert, &self.tls_key) else { return Ok(None) };
        if self.tls_handshake_timeout_ms == 0 {
            return Err(Fail::usage("--tls-handshake-timeout-ms must be more than 0"));
        }
        let s = ServerSettings {
            chain: tls::certs_from_pem(c).map_err(|e| Fail::usage(format!("--tls-cert: {e}")))?,
            key: Arc::new(tls::key_from_pem(k).map_err(|e| Fail::usage(format!("--tls-key: {e}")))?),
            versions: versions("--tls-server-versions", &self.tls_server_versions)?,
            alpn: self.tls_alpn.iter().map(|a| a.as_bytes().to_vec()).collect(),
            client_roots: None,
        };
        let cfg = tls::server_config(&s).map_err(|e| Fail::usage(format!("--tls-key: {e}")))?;
        Ok(Some((cfg, Duration::from_millis(self.tls_handshake_timeout_ms))))
    }
}

/// How `--target` is reached.
pub enum Target {
    /// `tcp://IP:PORT`: straight to the stack.
    Literal(std::net::SocketAddr),
    /// A name, or `tls://`: through the registry.
    Uri(flow::connect::Uri),
}

/// Reads `--target`: `tcp://` or `tls://`, a literal or a name.
pub fn parse_target(s: &str) -> Result<Target, Fail> {
    let u = Registry::builtin().parse(s).map_err(|e| {
        Fail::usage(format!("--target '{s}': {e} (tcp://HOST:PORT or tls://HOST[:PORT]; IPv6 as [ADDR])"))
    })?;
    match (u.scheme.as_str(), &u.host) {
        ("tcp", Host::Ip(ip)) => Ok(Target::Literal(std::net::SocketAddr::new(*ip, u.port))),
        ("tcp", _) | ("tls", _) => Ok(Target::Uri(u)),
        (other, _) => Err(Fail::usage(format!("--target '{s}': echo connects tcp:// or tls://, not {other}://"))),
    }
}
