//! The configuration: a TOML file read with serde, every table
//! `deny_unknown_fields`, every key required (no `#[serde(default)]` anywhere,
//! no `Option` for a value that changes behaviour), then checked by
//! [`Config::validate`] into the values the data path uses ([`Checked`]).
//!
//! Errors name the key path as written in the file
//! (`backends.web.servers[2].weight: must be 0..=256`): serde's own errors
//! (missing key, unknown key, wrong type) through `serde_path_to_error`, our
//! range and consistency checks by building the same path.
//!
//! Invariants after [`Config::check`]:
//! * every frontend names an existing backend; every backend has a server;
//! * server names are unique within their backend (they key weights, health
//!   and the runtime API), server URIs resolved to socket addresses;
//! * the Maglev table size is a prime >= 100 × the number of servers (the
//!   paper's §3.4 needs M prime; §5.3 keeps M ≫ N so the imbalance stays small).
//!
//! [`INIT`] is the file `lb init` writes: every key with its value and a
//! comment; a test checks that it parses and validates, so it cannot rot.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::Deserialize;

/// An error naming the key path at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path with indices (`backends.web.servers[2].weight`), or empty
    /// for a syntax error before any key.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

fn err(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError { path: path.into(), reason: reason.into() }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// TCP values of every connection, client and server side.
    pub tcp: TcpValues,
    /// Listeners by name.
    pub frontends: BTreeMap<String, Frontend>,
    /// Server pools by name.
    pub backends: BTreeMap<String, Backend>,
    /// Forwarding-mode frontends by name (`[forward.NAME]`; an empty
    /// `[forward]` table when there is none): see [`crate::forward::config`].
    pub forward: BTreeMap<String, crate::forward::config::ForwardFrontend>,
    /// The admin listener.
    pub admin: Admin,
}

/// TCP values (on `--stack kernel` the kernel's sysctls win for the ones it
/// does not expose per socket; see `flow::kernel`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TcpValues {
    /// Our MSS.
    pub mss: u16,
    /// Send buffer per connection, bytes.
    pub send_buffer: usize,
    /// Receive buffer per connection, bytes.
    pub recv_buffer: usize,
    /// Initial retransmission timeout, ms.
    pub rto_initial_ms: u64,
    /// Lower RTO bound, ms.
    pub rto_min_ms: u64,
    /// Upper RTO bound, ms.
    pub rto_max_ms: u64,
    /// Retransmissions of a segment before the connection fails.
    pub max_retransmits: u32,
    /// SYN retransmissions before a connect fails.
    pub syn_retries: u32,
    /// TIME-WAIT, ms.
    pub time_wait_ms: u64,
    /// Window scale shift offered (0..=14).
    pub window_scale: u8,
    /// Offer timestamps.
    pub timestamps: bool,
    /// Offer SACK.
    pub sack: bool,
    /// Nagle's algorithm.
    pub nagle: bool,
    /// Delayed ACK, µs (0: acknowledge at once).
    pub delayed_ack_us: u64,
    /// `newreno` | `cubic`.
    pub congestion: String,
    /// RFC 5961 challenge ACKs per second.
    pub challenge_ack_limit: u32,
    /// MSS assumed when the peer sends none.
    pub default_peer_mss: u16,
}

/// One listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Frontend {
    /// Addresses (`IP:PORT`, v4 or `[v6]:PORT`).
    pub listen: Vec<String>,
    /// The backend it sends connections to.
    pub backend: String,
    /// Established connections waiting for accept.
    pub backlog: usize,
    /// Half-open connections kept.
    pub syn_backlog: usize,
    /// How long a half-open connection waits for the handshake's ACK, ms.
    pub syn_timeout_ms: u64,
    /// `off` | `when-full` | `always`.
    pub syn_cookies: String,
    /// Client connections at once on each core; past it, accepts wait.
    pub maxconn: usize,
    /// Client inactivity before the first server byte, ms.
    pub client_timeout_ms: u64,
    /// Require a PROXY header (v1 or v2) from every client.
    pub accept_proxy: bool,
    /// Bytes buffered per direction of a connection (the back-pressure bound).
    pub buffer_size: usize,
    /// `off` | `tcplog` (one line per connection on stderr, HAProxy's fields).
    pub log: String,
}

/// One pool of servers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// How a server is picked.
    pub balance: Balance,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Connect attempts after the first one fails.
    pub retries: u32,
    /// Retry on another server (and pick another one for a queued connection).
    pub redispatch: bool,
    /// Connections waiting for a server slot (every server at `maxconn`).
    pub queue_max: usize,
    /// Active health checks.
    pub health: Health,
    /// The servers.
    pub servers: Vec<Server>,
}

/// Balancing.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Balance {
    /// `maglev` | `roundrobin` | `leastconn`.
    pub algorithm: String,
    /// Maglev lookup table size, a prime (read by `maglev` only).
    pub maglev_table_size: usize,
    /// `source` (client address) | `four-tuple` (read by `maglev` only).
    pub maglev_hash: String,
}

/// Timeouts of a backend, ms.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// One connect attempt.
    pub connect_ms: u64,
    /// Waiting for the server's answer after client data was forwarded.
    pub server_ms: u64,
    /// Idle (no byte either way) once both sides have spoken.
    pub tunnel_ms: u64,
    /// Waiting in the queue for a server slot.
    pub queue_ms: u64,
}

/// Health checking.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// `tcp` (connect) | `http` (GET, expected status) | `off`.
    pub check: String,
    /// Path of the HTTP GET.
    pub http_path: String,
    /// Host header of the HTTP GET.
    pub http_host: String,
    /// Status that counts as up.
    pub http_status: u16,
    /// Between checks of one server, ms.
    pub interval_ms: u64,
    /// One check's limit, ms.
    pub timeout_ms: u64,
    /// Successes that bring a down server up.
    pub rise: u32,
    /// Failures (checks, or connects of the data path) that take it down.
    pub fall: u32,
}

/// One server.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Unique in its backend.
    pub name: String,
    /// `tcp://IP:PORT` or `tcp://NAME:PORT` (resolved when the config loads).
    pub uri: String,
    /// Relative share, 0..=256 (0: no new connections, as `drain`).
    pub weight: u32,
    /// Connections to it at once on each core (0: unlimited).
    pub maxconn: usize,
    /// `off` | `v1` | `v2`.
    pub send_proxy: String,
    /// No new connections; existing ones finish.
    pub drain: bool,
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Serve `/metrics`, `/stats` and the runtime API.
    pub enabled: bool,
    /// `IP:PORT`, on the kernel's sockets whatever the data path's stack
    /// (the admin listener is control, on its own thread).
    pub listen: String,
}

/// Balancing algorithm, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Maglev consistent hashing with a table of `size` entries.
    Maglev {
        /// Table size (prime).
        size: usize,
        /// What is hashed.
        key: HashKey,
    },
    /// Smooth weighted round robin.
    RoundRobin,
    /// Fewest connections (ties: weighted).
    LeastConn,
}

/// What Maglev hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKey {
    /// The client's IP: a client sticks to its server.
    Source,
    /// Source and destination address and port.
    FourTuple,
}

/// PROXY protocol sent to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendProxy {
    /// None.
    Off,
    /// Text header.
    V1,
    /// Binary header.
    V2,
}

/// Health check kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// No active check (passive failures still count).
    Off,
    /// A TCP connect.
    Tcp,
    /// `GET path` with `Host`, status must equal `status`.
    Http {
        /// Path.
        path: String,
        /// Host header.
        host: String,
        /// Expected status.
        status: u16,
    },
}

/// A checked server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Name.
    pub name: String,
    /// As written.
    pub uri: String,
    /// Resolved address.
    pub addr: SocketAddr,
    /// 0..=256.
    pub weight: u32,
    /// 0: unlimited.
    pub maxconn: usize,
    /// PROXY header sent.
    pub send_proxy: SendProxy,
    /// Draining.
    pub drain: bool,
}

/// A checked backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// Name.
    pub name: String,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Server timeout.
    pub server_timeout: Duration,
    /// Tunnel (idle) timeout.
    pub tunnel_timeout: Duration,
    /// Queue timeout.
    pub queue_timeout: Duration,
    /// Retries.
    pub retries: u32,
    /// Redispatch.
    pub redispatch: bool,
    /// Queue bound.
    pub queue_max: usize,
    /// Health check.
    pub check: Check,
    /// Check interval.
    pub interval: Duration,
    /// Check timeout.
    pub check_timeout: Duration,
    /// Rise.
    pub rise: u32,
    /// Fall.
    pub fall: u32,
    /// Servers.
    pub servers: Vec<ServerSpec>,
}

/// A checked frontend.
#[derive(Debug, Clone, PartialEq)]
pub struct FrontendSpec {
    /// Name.
    pub name: String,
    /// Addresses.
    pub listen: Vec<SocketAddr>,
    /// Index into [`Checked::backends`].
    pub backend: usize,
    /// Listener values, one per address (TCP values included).
    pub listen_cfg: Vec<flow::ListenConfig>,
    /// Per-core connection limit.
    pub maxconn: usize,
    /// Client timeout.
    pub client_timeout: Duration,
    /// PROXY header required.
    pub accept_proxy: bool,
    /// Per-direction buffer.
    pub buffer_size: usize,
    /// A tcplog line per connection.
    pub log: bool,
}

/// The configuration the data path runs on.
#[derive(Debug, Clone)]
pub struct Checked {
    /// TCP values for server connections.
    pub tcp: flow::TcpConfig,
    /// Frontends (by name order).
    pub frontends: Vec<FrontendSpec>,
    /// Backends (by name order).
    pub backends: Vec<BackendSpec>,
    /// Admin listener, if enabled.
    pub admin: Option<SocketAddr>,
    /// Forwarding-mode frontends (by name order).
    pub forward: Vec<crate::forward::config::ForwardSpec>,
}

impl Config {
    /// Parses TOML text; the error names the key path.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| err("", toml_reason(text, &e)))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = toml_reason(text, &e.into_inner());
            err(if path == "." { String::new() } else { path }, inner)
        })
    }

    /// Parses and validates.
    pub fn check(text: &str) -> Result<Checked, ConfigError> {
        Config::parse(text)?.validate()
    }

    /// Reads a file, parses and validates it.
    pub fn load(path: &std::path::Path) -> Result<Checked, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| err("", format!("cannot read {}: {e}", path.display())))?;
        Config::check(&text)
    }

    /// Checks every value and resolves server URIs.
    pub fn validate(&self) -> Result<Checked, ConfigError> {
        let tcp = self.tcp.validate()?;
        if self.backends.is_empty() {
            return Err(err("backends", "at least one backend is needed"));
        }
        if self.frontends.is_empty() && self.forward.is_empty() {
            return Err(err("frontends", "at least one frontend (or [forward.NAME]) is needed"));
        }
        let mut backends = Vec::new();
        for (name, b) in &self.backends {
            backends.push(b.validate(&format!("backends.{name}"), name)?);
        }
        let mut frontends = Vec::new();
        let mut seen = BTreeMap::new();
        for (name, f) in &self.frontends {
            let spec = f.validate(&format!("frontends.{name}"), name, &backends, &tcp)?;
            for (i, a) in spec.listen.iter().enumerate() {
                if let Some(other) = seen.insert(*a, name.clone()) {
                    return Err(err(
                        format!("frontends.{name}.listen[{i}]"),
                        format!("{a} is also listened on by frontend {other}"),
                    ));
                }
            }
            frontends.push(spec);
        }
        let admin = if self.admin.enabled {
            Some(self.admin.listen.parse().map_err(|_| err("admin.listen", "must be IP:PORT"))?)
        } else {
            None
        };
        let mut forward: Vec<crate::forward::config::ForwardSpec> = Vec::new();
        for (name, f) in &self.forward {
            let spec = f.validate(&format!("forward.{name}"), name, &backends)?;
            if let Some(o) = forward.iter().find(|o| o.vip == spec.vip && o.proto == spec.proto) {
                return Err(err(format!("forward.{name}.vip"), format!("{} is also the VIP of {}", spec.vip, o.name)));
            }
            forward.push(spec);
        }
        Ok(Checked { tcp, frontends, backends, admin, forward })
    }
}

/// toml's message on one line, with the line number it points at.
fn toml_reason(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().lines().map(str::trim).collect::<Vec<_>>().join(" ");
    match e.span() {
        Some(s) => format!("{msg} (line {})", text[..s.start.min(text.len())].matches('\n').count() + 1),
        None => msg,
    }
}

impl TcpValues {
    fn validate(&self) -> Result<flow::TcpConfig, ConfigError> {
        const MS: u64 = 1_000_000;
        let congestion = match self.congestion.as_str() {
            "newreno" => flow::CongestionControl::NewReno,
            "cubic" => flow::CongestionControl::Cubic,
            _ => return Err(err("tcp.congestion", "must be \"newreno\" or \"cubic\"")),
        };
        let c = flow::TcpConfig {
            mss: self.mss,
            send_buffer: self.send_buffer,
            recv_buffer: self.recv_buffer,
            rto: flow::RtoConfig {
                initial_ns: self.rto_initial_ms * MS,
                min_ns: self.rto_min_ms * MS,
                max_ns: self.rto_max_ms * MS,
            },
            max_retransmits: self.max_retransmits,
            syn_retries: self.syn_retries,
            time_wait_ns: self.time_wait_ms * MS,
            window_scale: Some(self.window_scale),
            timestamps: self.timestamps,
            sack: self.sack,
            nagle: self.nagle,
            delayed_ack_ns: (self.delayed_ack_us > 0).then_some(self.delayed_ack_us * 1000),
            keepalive: None,
            congestion,
            challenge_ack_limit: self.challenge_ack_limit,
            default_peer_mss: self.default_peer_mss,
        };
        c.validate().map_err(|e| {
            let field = match e.field() {
                "rto" => "rto_min_ms",
                f => f,
            };
            err(format!("tcp.{field}"), e.reason())
        })?;
        Ok(c)
    }
}

fn ms(path: &str, v: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    if v < min || v > max {
        return Err(err(path, format!("must be {min}..={max} ms")));
    }
    Ok(Duration::from_millis(v))
}

/// Is `n` prime (trial division; table sizes are at most a few million).
pub fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

const DAY_MS: u64 = 86_400_000;

impl Frontend {
    fn validate(
        &self,
        p: &str,
        name: &str,
        backends: &[BackendSpec],
        tcp: &flow::TcpConfig,
    ) -> Result<FrontendSpec, ConfigError> {
        if self.listen.is_empty() {
            return Err(err(format!("{p}.listen"), "at least one address is needed"));
        }
        let mut listen = Vec::new();
        for (i, a) in self.listen.iter().enumerate() {
            listen.push(
                a.parse::<SocketAddr>()
                    .map_err(|_| err(format!("{p}.listen[{i}]"), format!("'{a}' is not IP:PORT or [IPv6]:PORT")))?,
            );
        }
        let backend = backends
            .iter()
            .position(|b| b.name == self.backend)
            .ok_or_else(|| err(format!("{p}.backend"), format!("no backend named '{}'", self.backend)))?;
        let syn_cookies = match self.syn_cookies.as_str() {
            "off" => flow::SynCookies::Off,
            "when-full" => flow::SynCookies::WhenFull,
            "always" => flow::SynCookies::Always,
            _ => return Err(err(format!("{p}.syn_cookies"), "must be \"off\", \"when-full\" or \"always\"")),
        };
        if self.backlog == 0 || self.backlog > 1 << 20 {
            return Err(err(format!("{p}.backlog"), "must be 1..=1048576"));
        }
        if self.syn_backlog == 0 || self.syn_backlog > 1 << 20 {
            return Err(err(format!("{p}.syn_backlog"), "must be 1..=1048576"));
        }
        let syn_timeout = ms(&format!("{p}.syn_timeout_ms"), self.syn_timeout_ms, 1, 600_000)?;
        if self.maxconn == 0 {
            return Err(err(format!("{p}.maxconn"), "must be at least 1"));
        }
        let client_timeout = ms(&format!("{p}.client_timeout_ms"), self.client_timeout_ms, 1, DAY_MS)?;
        if !(512..=16 << 20).contains(&self.buffer_size) {
            return Err(err(format!("{p}.buffer_size"), "must be 512..=16777216 bytes"));
        }
        let log = match self.log.as_str() {
            "off" => false,
            "tcplog" => true,
            _ => return Err(err(format!("{p}.log"), "must be \"off\" or \"tcplog\"")),
        };
        let listen_cfg = listen
            .iter()
            .map(|a| {
                flow::ListenConfig::new(
                    *a,
                    self.backlog,
                    self.syn_backlog,
                    syn_timeout.as_nanos() as u64,
                    syn_cookies,
                    tcp.clone(),
                )
            })
            .collect();
        Ok(FrontendSpec {
            name: name.to_string(),
            listen,
            backend,
            listen_cfg,
            maxconn: self.maxconn,
            client_timeout,
            accept_proxy: self.accept_proxy,
            buffer_size: self.buffer_size,
            log,
        })
    }
}

impl Backend {
    fn validate(&self, p: &str, name: &str) -> Result<BackendSpec, ConfigError> {
        let key = match self.balance.maglev_hash.as_str() {
            "source" => HashKey::Source,
            "four-tuple" => HashKey::FourTuple,
            _ => return Err(err(format!("{p}.balance.maglev_hash"), "must be \"source\" or \"four-tuple\"")),
        };
        let size = self.balance.maglev_table_size;
        if !is_prime(size) || size > 16_777_259 {
            return Err(err(format!("{p}.balance.maglev_table_size"), "must be a prime up to 16777259 (e.g. 65537)"));
        }
        let algorithm = match self.balance.algorithm.as_str() {
            "maglev" => Algorithm::Maglev { size, key },
            "roundrobin" => Algorithm::RoundRobin,
            "leastconn" => Algorithm::LeastConn,
            _ => {
                return Err(err(
                    format!("{p}.balance.algorithm"),
                    "must be \"maglev\", \"roundrobin\" or \"leastconn\"",
                ))
            }
        };
        let t = &self.timeouts;
        let connect_timeout = ms(&format!("{p}.timeouts.connect_ms"), t.connect_ms, 1, 600_000)?;
        let server_timeout = ms(&format!("{p}.timeouts.server_ms"), t.server_ms, 1, DAY_MS)?;
        let tunnel_timeout = ms(&format!("{p}.timeouts.tunnel_ms"), t.tunnel_ms, 1, DAY_MS)?;
        let queue_timeout = ms(&format!("{p}.timeouts.queue_ms"), t.queue_ms, 1, DAY_MS)?;
        if self.retries > 100 {
            return Err(err(format!("{p}.retries"), "must be 0..=100"));
        }
        if self.queue_max > 1 << 20 {
            return Err(err(format!("{p}.queue_max"), "must be 0..=1048576"));
        }
        let h = &self.health;
        let check = match h.check.as_str() {
            "off" => Check::Off,
            "tcp" => Check::Tcp,
            "http" => {
                if !h.http_path.starts_with('/') || h.http_path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return Err(err(format!("{p}.health.http_path"), "must start with '/' and hold no space"));
                }
                if h.http_host.is_empty() || h.http_host.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return Err(err(format!("{p}.health.http_host"), "must be a non-empty host with no space"));
                }
                if !(100..=599).contains(&h.http_status) {
                    return Err(err(format!("{p}.health.http_status"), "must be 100..=599"));
                }
                Check::Http { path: h.http_path.clone(), host: h.http_host.clone(), status: h.http_status }
            }
            _ => return Err(err(format!("{p}.health.check"), "must be \"off\", \"tcp\" or \"http\"")),
        };
        let interval = ms(&format!("{p}.health.interval_ms"), h.interval_ms, 10, DAY_MS)?;
        let check_timeout = ms(&format!("{p}.health.timeout_ms"), h.timeout_ms, 1, 600_000)?;
        if h.rise == 0 || h.rise > 1000 {
            return Err(err(format!("{p}.health.rise"), "must be 1..=1000"));
        }
        if h.fall == 0 || h.fall > 1000 {
            return Err(err(format!("{p}.health.fall"), "must be 1..=1000"));
        }
        if self.servers.is_empty() {
            return Err(err(format!("{p}.servers"), "at least one server is needed"));
        }
        let mut servers: Vec<ServerSpec> = Vec::new();
        for (i, s) in self.servers.iter().enumerate() {
            let sp = format!("{p}.servers[{i}]");
            let spec = s.validate(&sp)?;
            if servers.iter().any(|o| o.name == spec.name) {
                return Err(err(format!("{sp}.name"), format!("'{}' is already a server of this backend", spec.name)));
            }
            servers.push(spec);
        }
        if let Algorithm::Maglev { size, .. } = algorithm {
            if size < 100 * servers.len() {
                return Err(err(
                    format!("{p}.balance.maglev_table_size"),
                    format!("must be at least 100 x the {} servers (Maglev §5.3)", servers.len()),
                ));
            }
        }
        Ok(BackendSpec {
            name: name.to_string(),
            algorithm,
            connect_timeout,
            server_timeout,
            tunnel_timeout,
            queue_timeout,
            retries: self.retries,
            redispatch: self.redispatch,
            queue_max: self.queue_max,
            check,
            interval,
            check_timeout,
            rise: h.rise,
            fall: h.fall,
            servers,
        })
    }
}

/// Resolves `tcp://HOST:PORT` (a literal, or a name through the system's
/// resolver, once, when the config loads, as HAProxy does at start-up).
pub fn resolve_uri(uri: &str) -> Result<SocketAddr, String> {
    let rest = uri.strip_prefix("tcp://").ok_or_else(|| format!("'{uri}' must be tcp://HOST:PORT"))?;
    if let Ok(a) = rest.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| format!("'{uri}' has no :PORT"))?;
    let port: u16 = port.parse().map_err(|_| format!("'{uri}' has a bad port"))?;
    if host.is_empty() || host.contains(['/', '@', '?', '#', '[', ']']) {
        return Err(format!("'{uri}' has a bad host"));
    }
    (host, port).to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| format!("'{uri}' does not resolve"))
}

impl Server {
    fn validate(&self, p: &str) -> Result<ServerSpec, ConfigError> {
        if self.name.is_empty() || !self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            return Err(err(format!("{p}.name"), "must be non-empty [A-Za-z0-9._-]"));
        }
        let addr = resolve_uri(&self.uri).map_err(|r| err(format!("{p}.uri"), r))?;
        if self.weight > 256 {
            return Err(err(format!("{p}.weight"), "must be 0..=256"));
        }
        let send_proxy = match self.send_proxy.as_str() {
            "off" => SendProxy::Off,
            "v1" => SendProxy::V1,
            "v2" => SendProxy::V2,
            _ => return Err(err(format!("{p}.send_proxy"), "must be \"off\", \"v1\" or \"v2\"")),
        };
        Ok(ServerSpec {
            name: self.name.clone(),
            uri: self.uri.clone(),
            addr,
            weight: self.weight,
            maxconn: self.maxconn,
            send_proxy,
            drain: self.drain,
        })
    }
}

/// What `lb init` prints: a complete configuration, every key with a comment.
pub const INIT: &str = include_str!("init.toml");

/// What `lb init --forward` prints: a forwarding-mode configuration (L4
/// packet balancing, `[forward.NAME]`), every key with a comment.
pub const INIT_FORWARD: &str = include_str!("init_forward.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn with(from: &str, to: &str) -> String {
        nth(from, to, 0)
    }

    /// INIT with the `n`th (from 0) occurrence of `from` replaced.
    fn nth(from: &str, to: &str, n: usize) -> String {
        let (at, _) = INIT.match_indices(from).nth(n).unwrap_or_else(|| panic!("INIT has no '{from}' #{n}"));
        format!("{}{to}{}", &INIT[..at], &INIT[at + from.len()..])
    }

    #[test]
    fn the_init_file_parses_and_validates() {
        let c = Config::check(INIT).unwrap();
        assert_eq!(c.backends[0].algorithm, Algorithm::Maglev { size: 65537, key: HashKey::Source });
        assert_eq!(c.backends[0].servers.len(), 3);
        assert!(INIT.contains("maglev_table_size = 65537"));
    }

    #[test]
    fn a_weight_past_256_names_the_server_by_index() {
        let t = nth("weight = 1", "weight = 300", 2);
        let e = Config::check(&t).unwrap_err();
        assert_eq!(e.to_string(), "backends.web.servers[2].weight: must be 0..=256");
    }

    #[test]
    fn a_missing_key_names_its_path() {
        let t = with("\nretries = 3 ", "\n#");
        let e = Config::check(&t).unwrap_err();
        assert_eq!(e.path, "backends.web", "{e}");
        assert!(e.reason.contains("missing field `retries`"), "{e}");
        let t = nth("maxconn = 1000\n", "", 0);
        let e = Config::check(&t).unwrap_err();
        assert_eq!(e.path, "backends.web.servers[1]", "{e}");
        assert!(e.reason.contains("missing field `maxconn`"), "{e}");
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_its_table() {
        let t = with("\nretries = 3 ", "\nretires = 3\nretries = 3 ");
        let e = Config::check(&t).unwrap_err();
        assert!(e.to_string().starts_with("backends.web"), "{e}");
        assert!(e.reason.contains("unknown field `retires`"), "{e}");
    }

    #[test]
    fn a_table_size_that_is_not_prime_is_refused() {
        let e = Config::check(&with("maglev_table_size = 65537", "maglev_table_size = 65536")).unwrap_err();
        assert_eq!(e.path, "backends.web.balance.maglev_table_size");
        let e = Config::check(&with("maglev_table_size = 65537", "maglev_table_size = 101")).unwrap_err();
        assert!(e.reason.contains("100 x"), "{e}");
    }

    #[test]
    fn bad_enumerations_and_ranges_name_their_key() {
        for (from, to, path) in [
            ("algorithm = \"maglev\"", "algorithm = \"random\"", "backends.web.balance.algorithm"),
            ("maglev_hash = \"source\"", "maglev_hash = \"dst\"", "backends.web.balance.maglev_hash"),
            ("send_proxy = \"off\"", "send_proxy = \"v3\"", "backends.web.servers[0].send_proxy"),
            ("syn_cookies = \"when-full\"", "syn_cookies = \"yes\"", "frontends.web.syn_cookies"),
            ("check = \"tcp\"", "check = \"icmp\"", "backends.web.health.check"),
            ("fall = 3", "fall = 0", "backends.web.health.fall"),
            ("connect_ms = 1000", "connect_ms = 0", "backends.web.timeouts.connect_ms"),
            ("backend = \"web\"", "backend = \"nope\"", "frontends.web.backend"),
            ("congestion = \"cubic\"", "congestion = \"bbr\"", "tcp.congestion"),
            ("window_scale = 7", "window_scale = 15", "tcp.window_scale"),
            ("buffer_size = 16384", "buffer_size = 1", "frontends.web.buffer_size"),
            ("log = \"off\"", "log = \"syslog\"", "frontends.web.log"),
            ("listen = [\"0.0.0.0:8080\"]", "listen = [\"0.0.0.0\"]", "frontends.web.listen[0]"),
            ("enabled = true", "enabled = true\nlisten2 = 1", "admin.listen2"),
        ] {
            let e = Config::check(&with(from, to)).unwrap_err();
            assert_eq!(e.path, path, "{from} -> {to}: {e}");
        }
    }

    #[test]
    fn a_wrong_type_names_its_key() {
        let e = Config::check(&with("\nretries = 3", "\nretries = \"three\"")).unwrap_err();
        assert_eq!(e.path, "backends.web.retries", "{e}");
    }

    #[test]
    fn duplicate_server_names_are_refused() {
        let e = Config::check(&with("name = \"s2\"", "name = \"s1\"")).unwrap_err();
        assert_eq!(e.to_string(), "backends.web.servers[1].name: 's1' is already a server of this backend");
    }

    #[test]
    fn a_server_name_that_does_not_resolve_names_the_uri() {
        let e = Config::check(&with("tcp://198.18.2.1:8081", "tcp://no-such-host.invalid:80")).unwrap_err();
        assert_eq!(e.to_string(), "backends.web.servers[0].uri: 'tcp://no-such-host.invalid:80' does not resolve");
        let e = Config::check(&with("tcp://198.18.2.1:8081", "http://198.18.2.1:80")).unwrap_err();
        assert_eq!(e.path, "backends.web.servers[0].uri");
    }

    #[test]
    fn http_checks_need_a_path_and_a_status() {
        let t = with("check = \"tcp\"", "check = \"http\"");
        assert!(matches!(Config::check(&t).unwrap().backends[0].check, Check::Http { status: 200, .. }));
        let e = Config::check(&t.replace("http_status = 200", "http_status = 99")).unwrap_err();
        assert_eq!(e.path, "backends.web.health.http_status");
    }
}
