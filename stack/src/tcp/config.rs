//! [`TcpConfig`]: everything about a connection's behaviour on the wire,
//! stated by the caller (no `Default`), its checks, and its `key = value`
//! text form, in the style of the stack's own configuration file: every key
//! is required, an unknown or repeated key is an error naming it, and
//! [`TcpConfig::to_text`] writes a complete file. Errors are
//! [`TcpConfigError`], this module's own.

use super::cc::CongestionControl;
use super::rtt::RtoConfig;

/// Everything about a connection's behaviour on the wire, stated by the caller.
/// There is no `Default`: a field left out is a compile error naming it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpConfig {
    /// Our MSS (payload bytes per segment), also advertised in the SYN.
    pub mss: u16,
    /// Send buffer size in bytes.
    pub send_buffer: usize,
    /// Receive buffer size in bytes (the most we advertise).
    pub recv_buffer: usize,
    /// Retransmission timeout bounds.
    pub rto: RtoConfig,
    /// Retransmissions of one segment before the connection times out.
    pub max_retransmits: u32,
    /// SYN (or SYN-ACK) retransmissions before giving up.
    pub syn_retries: u32,
    /// How long TIME-WAIT lasts (2 MSL), nanoseconds.
    pub time_wait_ns: u64,
    /// Our window scale shift (RFC 7323), offered in the SYN; `None` to not offer.
    pub window_scale: Option<u8>,
    /// Offer timestamps (RFC 7323).
    pub timestamps: bool,
    /// Offer SACK (RFC 2018) and use it for loss recovery (RFC 6675).
    pub sack: bool,
    /// Nagle's algorithm: hold small segments while data is unacknowledged.
    pub nagle: bool,
    /// Delayed ACK (RFC 1122 4.2.3.2, RFC 5681 4.2): `Some(delay)` acknowledges
    /// in-order data after at most `delay` nanoseconds or at every second
    /// full-sized segment, whichever comes first (out-of-order data, filled gaps
    /// and FINs are still acknowledged at once); `None` acknowledges every
    /// segment immediately.
    pub delayed_ack_ns: Option<u64>,
    /// Keepalive probing of idle connections (RFC 1122 4.2.3.6); `None` never
    /// probes.
    pub keepalive: Option<Keepalive>,
    /// Congestion control algorithm (RFC 5681/6582 NewReno or RFC 9438 CUBIC).
    pub congestion: CongestionControl,
    /// Challenge ACKs allowed per second (RFC 5961 7).
    pub challenge_ack_limit: u32,
    /// MSS assumed when the peer sends no MSS option (RFC 9293 3.7.1: 536 for
    /// IPv4, 1220 for IPv6).
    pub default_peer_mss: u16,
}

impl TcpConfig {
    /// Checks the values; the error names the field.
    pub fn validate(&self) -> Result<(), TcpConfigError> {
        let bad = |field, reason: &str| Err(TcpConfigError::Invalid { field, reason: reason.to_string() });
        if self.mss < 64 {
            return bad("mss", "must be at least 64");
        }
        if self.send_buffer == 0 {
            return bad("send_buffer", "must be at least 1 byte");
        }
        if self.recv_buffer == 0 || self.recv_buffer > (u32::MAX as usize >> 1) {
            return bad("recv_buffer", "must be between 1 byte and 2 GiB");
        }
        if self.window_scale.is_some_and(|s| s > 14) {
            return bad("window_scale", "RFC 7323 allows shifts up to 14");
        }
        if self.rto.min_ns == 0 || self.rto.min_ns > self.rto.max_ns {
            return bad("rto", "needs 0 < min <= max");
        }
        if self.default_peer_mss < 64 {
            return bad("default_peer_mss", "must be at least 64");
        }
        if self.delayed_ack_ns.is_some_and(|d| d == 0 || d >= 500_000_000) {
            return bad("delayed_ack", "RFC 1122 4.2.3.2: the delay must be above 0 and below 0.5 s");
        }
        if let Some(k) = self.keepalive {
            if k.idle_ns == 0 || k.interval_ns == 0 || k.probes == 0 {
                return bad("keepalive", "idle, interval and probes must all be above 0");
            }
        }
        Ok(())
    }
}

/// Keepalive settings: after `idle_ns` without receiving anything, send a probe
/// every `interval_ns`; after `probes` unanswered probes the connection times out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle_ns: u64,
    /// Time between probes.
    pub interval_ns: u64,
    /// Unanswered probes before giving up.
    pub probes: u32,
}

/// A TCP configuration that cannot work, or a text form that does not say one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TcpConfigError {
    /// A value that cannot work ([`TcpConfig::validate`],
    /// [`ListenConfig::validate`](super::ListenConfig::validate)); `field` is
    /// the struct field's name.
    #[error("invalid TCP config {field}: {reason}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A line of the text form that is not `key = value`, an unknown or
    /// repeated key, or a value that does not parse or cannot work.
    #[error("invalid '{key}': {reason}")]
    Text {
        /// The key (or `line N`) at fault.
        key: String,
        /// Why.
        reason: String,
    },
    /// A key the text form requires is missing.
    #[error("missing configuration value '{0}'")]
    Missing(String),
}

impl TcpConfigError {
    /// The field, key or line at fault.
    pub fn field(&self) -> &str {
        match self {
            TcpConfigError::Invalid { field, .. } => field,
            TcpConfigError::Text { key, .. } => key,
            TcpConfigError::Missing(key) => key,
        }
    }

    /// Why, without the field.
    pub fn reason(&self) -> &str {
        match self {
            TcpConfigError::Invalid { reason, .. } | TcpConfigError::Text { reason, .. } => reason,
            TcpConfigError::Missing(_) => "missing",
        }
    }

    fn text(key: impl Into<String>, reason: impl Into<String>) -> Self {
        TcpConfigError::Text { key: key.into(), reason: reason.into() }
    }
}

const KEYS: &[&str] = &[
    "tcp.mss",
    "tcp.send_buffer",
    "tcp.recv_buffer",
    "tcp.rto_initial_ms",
    "tcp.rto_min_ms",
    "tcp.rto_max_ms",
    "tcp.max_retransmits",
    "tcp.syn_retries",
    "tcp.time_wait_ms",
    "tcp.window_scale",
    "tcp.timestamps",
    "tcp.sack",
    "tcp.nagle",
    "tcp.delayed_ack_ms",
    "tcp.keepalive",
    "tcp.congestion",
    "tcp.challenge_ack_limit",
    "tcp.default_peer_mss",
];

const MS: u64 = 1_000_000;

impl TcpConfig {
    /// Parses `key = value` lines (`#` comments); every key of
    /// [`to_text`](Self::to_text) is required.
    pub fn parse(text: &str) -> Result<TcpConfig, TcpConfigError> {
        let mut kv = std::collections::HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| TcpConfigError::text(format!("line {}", n + 1), "expected KEY = VALUE"))?;
            let (k, v) = (k.trim(), v.trim());
            if !KEYS.contains(&k) {
                return Err(TcpConfigError::text(k, format!("unknown key; valid keys: {}", KEYS.join(", "))));
            }
            if kv.insert(k, v).is_some() {
                return Err(TcpConfigError::text(k, "given twice"));
            }
        }
        let get = |k: &str| kv.get(k).copied().ok_or_else(|| TcpConfigError::Missing(k.to_string()));
        fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, TcpConfigError> {
            v.parse().map_err(|_| TcpConfigError::text(k, format!("'{v}' is not a valid number")))
        }
        let flag = |k: &str| -> Result<bool, TcpConfigError> {
            match get(k)? {
                "on" | "true" | "yes" => Ok(true),
                "off" | "false" | "no" => Ok(false),
                v => Err(TcpConfigError::text(k, format!("'{v}' is not on/off"))),
            }
        };
        let ms = |k: &str| -> Result<u64, TcpConfigError> { Ok(num::<u64>(k, get(k)?)?.saturating_mul(MS)) };
        let off_or_ms = |k: &str| -> Result<Option<u64>, TcpConfigError> {
            match get(k)? {
                "off" => Ok(None),
                v => Ok(Some(num::<u64>(k, v)?.saturating_mul(MS))),
            }
        };
        let cfg = TcpConfig {
            mss: num("tcp.mss", get("tcp.mss")?)?,
            send_buffer: num("tcp.send_buffer", get("tcp.send_buffer")?)?,
            recv_buffer: num("tcp.recv_buffer", get("tcp.recv_buffer")?)?,
            rto: RtoConfig {
                initial_ns: ms("tcp.rto_initial_ms")?,
                min_ns: ms("tcp.rto_min_ms")?,
                max_ns: ms("tcp.rto_max_ms")?,
            },
            max_retransmits: num("tcp.max_retransmits", get("tcp.max_retransmits")?)?,
            syn_retries: num("tcp.syn_retries", get("tcp.syn_retries")?)?,
            time_wait_ns: ms("tcp.time_wait_ms")?,
            window_scale: match get("tcp.window_scale")? {
                "off" => None,
                v => Some(num("tcp.window_scale", v)?),
            },
            timestamps: flag("tcp.timestamps")?,
            sack: flag("tcp.sack")?,
            nagle: flag("tcp.nagle")?,
            delayed_ack_ns: off_or_ms("tcp.delayed_ack_ms")?,
            keepalive: match get("tcp.keepalive")? {
                "off" => None,
                v => {
                    let bad = || {
                        TcpConfigError::text("tcp.keepalive", format!("'{v}' is not off or IDLE_MS/INTERVAL_MS/PROBES"))
                    };
                    let p: Vec<&str> = v.split('/').map(str::trim).collect();
                    if p.len() != 3 {
                        return Err(bad());
                    }
                    Keepalive {
                        idle_ns: p[0].parse::<u64>().map_err(|_| bad())?.saturating_mul(MS),
                        interval_ns: p[1].parse::<u64>().map_err(|_| bad())?.saturating_mul(MS),
                        probes: p[2].parse().map_err(|_| bad())?,
                    }
                    .into()
                }
            },
            congestion: match get("tcp.congestion")? {
                "newreno" => CongestionControl::NewReno,
                "cubic" => CongestionControl::Cubic,
                v => return Err(TcpConfigError::text("tcp.congestion", format!("'{v}' is not newreno or cubic"))),
            },
            challenge_ack_limit: num("tcp.challenge_ack_limit", get("tcp.challenge_ack_limit")?)?,
            default_peer_mss: num("tcp.default_peer_mss", get("tcp.default_peer_mss")?)?,
        };
        cfg.validate().map_err(|e| TcpConfigError::text(format!("tcp.{}", e.field()), e.reason()))?;
        Ok(cfg)
    }

    /// Every key, one per line, parseable by [`parse`](Self::parse).
    pub fn to_text(&self) -> String {
        let onoff = |b: bool| if b { "on" } else { "off" };
        let opt_ms = |v: Option<u64>| v.map_or("off".to_string(), |n| (n / MS).to_string());
        format!(
            "# TCP configuration: every key is required\n\
             tcp.mss = {}\ntcp.send_buffer = {}\ntcp.recv_buffer = {}\n\
             tcp.rto_initial_ms = {}\ntcp.rto_min_ms = {}\ntcp.rto_max_ms = {}\n\
             tcp.max_retransmits = {}\ntcp.syn_retries = {}\ntcp.time_wait_ms = {}\n\
             tcp.window_scale = {}\ntcp.timestamps = {}\ntcp.sack = {}\ntcp.nagle = {}\n\
             tcp.delayed_ack_ms = {}\ntcp.keepalive = {}   # off or IDLE_MS/INTERVAL_MS/PROBES\n\
             tcp.congestion = {}   # newreno or cubic\ntcp.challenge_ack_limit = {}\n\
             tcp.default_peer_mss = {}\n",
            self.mss,
            self.send_buffer,
            self.recv_buffer,
            self.rto.initial_ns / MS,
            self.rto.min_ns / MS,
            self.rto.max_ns / MS,
            self.max_retransmits,
            self.syn_retries,
            self.time_wait_ns / MS,
            self.window_scale.map_or("off".to_string(), |s| s.to_string()),
            onoff(self.timestamps),
            onoff(self.sack),
            onoff(self.nagle),
            opt_ms(self.delayed_ack_ns),
            self.keepalive.map_or("off".to_string(), |k| format!(
                "{}/{}/{}",
                k.idle_ns / MS,
                k.interval_ns / MS,
                k.probes
            )),
            match self.congestion {
                CongestionControl::NewReno => "newreno",
                CongestionControl::Cubic => "cubic",
            },
            self.challenge_ack_limit,
            self.default_peer_mss,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests_common::cfg;
    use super::*;

    #[test]
    fn text_round_trip() {
        let mut c = cfg();
        c.delayed_ack_ns = Some(40 * MS);
        c.keepalive = Some(Keepalive { idle_ns: 7_200_000 * MS, interval_ns: 75_000 * MS, probes: 9 });
        c.congestion = CongestionControl::Cubic;
        assert_eq!(TcpConfig::parse(&c.to_text()).unwrap(), c);
        assert_eq!(TcpConfig::parse(&cfg().to_text()).unwrap(), cfg());
    }

    #[test]
    fn missing_unknown_and_bad_keys_are_named() {
        let text: String =
            cfg().to_text().lines().filter(|l| !l.starts_with("tcp.sack")).collect::<Vec<_>>().join("\n");
        assert_eq!(TcpConfig::parse(&text).unwrap_err(), TcpConfigError::Missing("tcp.sack".to_string()));
        let text = cfg().to_text() + "tcp.bogus = 1\n";
        assert!(TcpConfig::parse(&text).unwrap_err().to_string().contains("'tcp.bogus'"));
        let text = cfg().to_text().replace("tcp.congestion = newreno", "tcp.congestion = bbr");
        assert!(TcpConfig::parse(&text).unwrap_err().to_string().contains("tcp.congestion"));
        let text = cfg().to_text().replace("tcp.mss = 1460", "tcp.mss = 10");
        assert!(TcpConfig::parse(&text).unwrap_err().to_string().contains("tcp.mss"));
    }
}
