//! [`TcpConfig`] as `key = value` text, in the style of the stack's own
//! configuration file: every key is required, an unknown or repeated key is an
//! error naming it, and [`TcpConfig::to_text`] writes a complete file.

use super::cc::CongestionControl;
use super::conn::{Keepalive, TcpConfig};
use super::rtt::RtoConfig;
use crate::error::StackError;

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
    pub fn parse(text: &str) -> Result<TcpConfig, StackError> {
        let mut kv = std::collections::HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| StackError::config(format!("line {}", n + 1), "expected KEY = VALUE"))?;
            let (k, v) = (k.trim(), v.trim());
            if !KEYS.contains(&k) {
                return Err(StackError::config(k, format!("unknown key; valid keys: {}", KEYS.join(", "))));
            }
            if kv.insert(k, v).is_some() {
                return Err(StackError::config(k, "given twice"));
            }
        }
        let get = |k: &str| kv.get(k).copied().ok_or_else(|| StackError::missing(k));
        fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, StackError> {
            v.parse().map_err(|_| StackError::config(k, format!("'{v}' is not a valid number")))
        }
        let flag = |k: &str| -> Result<bool, StackError> {
            match get(k)? {
                "on" | "true" | "yes" => Ok(true),
                "off" | "false" | "no" => Ok(false),
                v => Err(StackError::config(k, format!("'{v}' is not on/off"))),
            }
        };
        let ms = |k: &str| -> Result<u64, StackError> { Ok(num::<u64>(k, get(k)?)?.saturating_mul(MS)) };
        let off_or_ms = |k: &str| -> Result<Option<u64>, StackError> {
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
                        StackError::config("tcp.keepalive", format!("'{v}' is not off or IDLE_MS/INTERVAL_MS/PROBES"))
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
                v => return Err(StackError::config("tcp.congestion", format!("'{v}' is not newreno or cubic"))),
            },
            challenge_ack_limit: num("tcp.challenge_ack_limit", get("tcp.challenge_ack_limit")?)?,
            default_peer_mss: num("tcp.default_peer_mss", get("tcp.default_peer_mss")?)?,
        };
        cfg.validate().map_err(|e| StackError::config(format!("tcp.{}", e.field), e.reason))?;
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
        assert_eq!(TcpConfig::parse(&text).unwrap_err(), StackError::missing("tcp.sack"));
        let text = cfg().to_text() + "tcp.bogus = 1\n";
        assert!(TcpConfig::parse(&text).unwrap_err().to_string().contains("'tcp.bogus'"));
        let text = cfg().to_text().replace("tcp.congestion = newreno", "tcp.congestion = bbr");
        assert!(TcpConfig::parse(&text).unwrap_err().to_string().contains("tcp.congestion"));
        let text = cfg().to_text().replace("tcp.mss = 1460", "tcp.mss = 10");
        assert!(TcpConfig::parse(&text).unwrap_err().to_string().contains("tcp.mss"));
    }
}
