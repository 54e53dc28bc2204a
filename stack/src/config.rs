//! Explicit configuration of one stack instance.
//!
//! Every value that changes behaviour on the wire is a field without a default:
//! Rust's struct literals make a forgotten field a compile error, and the text
//! form ([`StackConfig::parse`], `key = value` lines) makes a missing key an error
//! that names it. [`StackConfig::validate`] rejects bad values by field name.
//! [`StackConfig::to_text`] writes a complete file (what `l3demo --print-config`
//! prints as a starter).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use pmd::{MacAddr, TxOffloads};

use crate::error::ConfigError;
use crate::wire::{Ipv4Cidr, Ipv6Cidr};

/// The ARP/NDP neighbour cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighborConfig {
    /// Most entries (per family); when full, the least recently confirmed
    /// resolved entry is evicted.
    pub capacity: usize,
    /// How long a resolved entry is used before it must be resolved again.
    pub lifetime: Duration,
    /// Requests sent after the first before giving up (so `retries + 1` in all).
    pub retries: u32,
    /// Time between requests.
    pub retry_interval: Duration,
    /// Packets held per unresolved neighbour; more are dropped and counted.
    pub pending: usize,
}

/// Fragment reassembly limits (one for IPv4, one for IPv6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Most bytes of buffer memory held by incomplete datagrams (counted as the
    /// capacity of the buffers held, since that is what is pinned).
    pub max_bytes: usize,
    /// Most datagrams being reassembled at once.
    pub max_datagrams: usize,
    /// Time from a datagram's first fragment until it is dropped incomplete.
    pub timeout: Duration,
}

/// ICMP error generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IcmpConfig {
    /// Sustained rate of ICMP/ICMPv6 error messages (token bucket refill).
    pub error_rate_per_sec: u32,
    /// Bucket depth: errors that may be sent back to back.
    pub error_burst: u32,
}

/// One stack instance (one core, one port queue pair).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackConfig {
    /// The interface's MAC address (normally the port's).
    pub mac: MacAddr,
    /// L3 MTU: the largest IP packet sent or accepted.
    pub mtu: u16,
    /// IPv4 addresses with their prefixes (each gives a connected route).
    pub ipv4: Vec<Ipv4Cidr>,
    /// IPv6 addresses with their prefixes (each gives a connected route).
    pub ipv6: Vec<Ipv6Cidr>,
    /// IPv4 default gateway, or `None` for no default route.
    pub gateway_v4: Option<Ipv4Addr>,
    /// IPv6 default gateway, or `None` for no default route.
    pub gateway_v6: Option<Ipv6Addr>,
    /// TTL / hop limit of packets we originate.
    pub ttl: u8,
    /// Neighbour cache.
    pub neighbor: NeighborConfig,
    /// IPv4 reassembly.
    pub reassembly: ReassemblyConfig,
    /// IPv6 reassembly (RFC 8200 §4.5; its timeout is 60 s there).
    pub reassembly_v6: ReassemblyConfig,
    /// ICMP errors.
    pub icmp: IcmpConfig,
    /// Timer wheel tick.
    pub timer_tick: Duration,
    /// Frames taken per `rx_burst`.
    pub burst: usize,
    /// Frames held when the transmit queue is full; more are dropped and counted.
    pub tx_backlog: usize,
    /// Transmit checksum offloads enabled on the port (`PortConfig::tx_offloads`):
    /// the stack leaves these checksums to the NIC.
    pub tx_offloads: TxOffloads,
    /// TCP connections the stack holds at once (established, opening, closing
    /// in the background, waiting to be accepted); beyond it active opens fail
    /// and completed handshakes are reset, both counted.
    pub tcp_max_connections: usize,
    /// Received TCP payload buffers (mbufs) the stack's connections may hold
    /// at once for zero-copy receive: at most this many are kept until the
    /// application reads them; beyond it, payloads are copied into the
    /// connections' heap buffers and their mbufs freed at once, so data an
    /// application does not read can never exhaust the pool the port and the
    /// senders need. At most half the pool (checked by `Stack::new`); 0 copies
    /// every payload. See `stack::tcp::recv` for what is kept.
    pub tcp_rx_mbufs: usize,
}

const KEYS: &[&str] = &[
    "mac",
    "mtu",
    "ipv4",
    "ipv6",
    "gateway_v4",
    "gateway_v6",
    "ttl",
    "neighbor.capacity",
    "neighbor.lifetime_ms",
    "neighbor.retries",
    "neighbor.retry_interval_ms",
    "neighbor.pending",
    "reassembly.max_bytes",
    "reassembly.max_datagrams",
    "reassembly.timeout_ms",
    "reassembly_v6.max_bytes",
    "reassembly_v6.max_datagrams",
    "reassembly_v6.timeout_ms",
    "icmp.error_rate_per_sec",
    "icmp.error_burst",
    "timer.tick_us",
    "burst",
    "tx_backlog",
    "tx_checksum_offload",
    "tcp.max_connections",
    "tcp.rx_mbufs",
];

impl StackConfig {
    /// Checks every value; the error names the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |f: &str, r: &str| Err(ConfigError::invalid(f, r));
        if self.mac.is_multicast() || self.mac == MacAddr([0; 6]) {
            return bad("mac", "must be a unicast, non-zero address");
        }
        if self.mtu < 576 {
            return bad("mtu", "must be at least 576 (IPv4 minimum reassembly size)");
        }
        if !self.ipv6.is_empty() && self.mtu < 1280 {
            return bad("mtu", "must be at least 1280 with IPv6 addresses (RFC 8200 §5)");
        }
        if self.ipv4.is_empty() && self.ipv6.is_empty() {
            return bad("ipv4", "an interface needs at least one IPv4 or IPv6 address");
        }
        for c in &self.ipv4 {
            let a = c.address();
            if a.is_unspecified() || a.is_multicast() || a.is_broadcast() {
                return bad("ipv4", &format!("{c} is not a unicast address"));
            }
        }
        for c in &self.ipv6 {
            let a = c.address();
            if a.is_unspecified() || a.is_multicast() {
                return bad("ipv6", &format!("{c} is not a unicast address"));
            }
        }
        if let Some(g) = self.gateway_v4 {
            if !self.ipv4.iter().any(|c| c.contains(&g)) {
                return bad("gateway_v4", &format!("{g} is not on a connected IPv4 network"));
            }
        }
        if let Some(g) = self.gateway_v6 {
            let link_local = g.segments()[0] & 0xffc0 == 0xfe80;
            if !link_local && !self.ipv6.iter().any(|c| c.contains(&g)) {
                return bad("gateway_v6", &format!("{g} is neither link-local nor on a connected IPv6 network"));
            }
        }
        if self.ttl == 0 {
            return bad("ttl", "must be at least 1");
        }
        let n = &self.neighbor;
        if n.capacity == 0 {
            return bad("neighbor.capacity", "must be at least 1");
        }
        if n.lifetime.is_zero() {
            return bad("neighbor.lifetime_ms", "must be positive");
        }
        if n.retry_interval.is_zero() {
            return bad("neighbor.retry_interval_ms", "must be positive");
        }
        let r = &self.reassembly;
        if r.max_datagrams > 0 && r.timeout.is_zero() {
            return bad("reassembly.timeout_ms", "must be positive when reassembly is enabled");
        }
        let r = &self.reassembly_v6;
        if r.max_datagrams > 0 && r.timeout.is_zero() {
            return bad("reassembly_v6.timeout_ms", "must be positive when reassembly is enabled");
        }
        if self.icmp.error_rate_per_sec > 0 && self.icmp.error_burst == 0 {
            return bad("icmp.error_burst", "must be at least 1 when icmp.error_rate_per_sec is positive");
        }
        if self.timer_tick.is_zero() {
            return bad("timer.tick_us", "must be positive");
        }
        if self.burst == 0 {
            return bad("burst", "must be at least 1");
        }
        if self.tcp_max_connections == 0 {
            return bad("tcp.max_connections", "must be at least 1");
        }
        let unsupported = self.tx_offloads - (TxOffloads::IPV4_CKSUM | TxOffloads::UDP_CKSUM | TxOffloads::TCP_CKSUM);
        if !unsupported.is_empty() {
            return bad("tx_checksum_offload", &format!("{unsupported:?} is not a checksum offload"));
        }
        Ok(())
    }

    /// Parses `key = value` lines (`#` starts a comment). Every key of
    /// [`to_text`](Self::to_text) is required; lists are comma-separated, and
    /// `none` is an empty list / no gateway / no offload.
    pub fn parse(text: &str) -> Result<StackConfig, ConfigError> {
        let mut vals: Vec<(&str, &str)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(ConfigError::invalid(format!("line {}", n + 1), "expected KEY = VALUE"));
            };
            let (k, v) = (k.trim(), v.trim());
            if !KEYS.contains(&k) {
                return Err(ConfigError::invalid(k, format!("unknown key; valid keys: {}", KEYS.join(", "))));
            }
            if vals.iter().any(|(x, _)| *x == k) {
                return Err(ConfigError::invalid(k, "given twice"));
            }
            vals.push((k, v));
        }
        let get = |k: &'static str| -> Result<&str, ConfigError> {
            vals.iter().find(|(x, _)| *x == k).map(|(_, v)| *v).ok_or_else(|| ConfigError::missing(k))
        };
        fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, ConfigError> {
            v.parse().map_err(|_| ConfigError::invalid(k, format!("'{v}' is not a valid number")))
        }
        let list = |k: &'static str| -> Result<Vec<&str>, ConfigError> {
            let v = get(k)?;
            Ok(if v == "none" { Vec::new() } else { v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect() })
        };
        let ms = |k: &'static str| -> Result<Duration, ConfigError> { Ok(Duration::from_millis(num(k, get(k)?)?)) };
        let mac = get("mac")?;
        let cfg = StackConfig {
            mac: mac.parse().map_err(|e: String| ConfigError::invalid("mac", e))?,
            mtu: num("mtu", get("mtu")?)?,
            ipv4: list("ipv4")?
                .into_iter()
                .map(|s| s.parse().map_err(|_| ConfigError::invalid("ipv4", format!("'{s}' is not ADDRESS/PREFIX"))))
                .collect::<Result<_, _>>()?,
            ipv6: list("ipv6")?
                .into_iter()
                .map(|s| s.parse().map_err(|_| ConfigError::invalid("ipv6", format!("'{s}' is not ADDRESS/PREFIX"))))
                .collect::<Result<_, _>>()?,
            gateway_v4: match get("gateway_v4")? {
                "none" => None,
                s => Some(
                    s.parse().map_err(|_| ConfigError::invalid("gateway_v4", format!("'{s}' is not an address")))?,
                ),
            },
            gateway_v6: match get("gateway_v6")? {
                "none" => None,
                s => Some(
                    s.parse().map_err(|_| ConfigError::invalid("gateway_v6", format!("'{s}' is not an address")))?,
                ),
            },
            ttl: num("ttl", get("ttl")?)?,
            neighbor: NeighborConfig {
                capacity: num("neighbor.capacity", get("neighbor.capacity")?)?,
                lifetime: ms("neighbor.lifetime_ms")?,
                retries: num("neighbor.retries", get("neighbor.retries")?)?,
                retry_interval: ms("neighbor.retry_interval_ms")?,
                pending: num("neighbor.pending", get("neighbor.pending")?)?,
            },
            reassembly: ReassemblyConfig {
                max_bytes: num("reassembly.max_bytes", get("reassembly.max_bytes")?)?,
                max_datagrams: num("reassembly.max_datagrams", get("reassembly.max_datagrams")?)?,
                timeout: ms("reassembly.timeout_ms")?,
            },
            reassembly_v6: ReassemblyConfig {
                max_bytes: num("reassembly_v6.max_bytes", get("reassembly_v6.max_bytes")?)?,
                max_datagrams: num("reassembly_v6.max_datagrams", get("reassembly_v6.max_datagrams")?)?,
                timeout: ms("reassembly_v6.timeout_ms")?,
            },
            icmp: IcmpConfig {
                error_rate_per_sec: num("icmp.error_rate_per_sec", get("icmp.error_rate_per_sec")?)?,
                error_burst: num("icmp.error_burst", get("icmp.error_burst")?)?,
            },
            timer_tick: Duration::from_micros(num("timer.tick_us", get("timer.tick_us")?)?),
            burst: num("burst", get("burst")?)?,
            tx_backlog: num("tx_backlog", get("tx_backlog")?)?,
            tcp_max_connections: num("tcp.max_connections", get("tcp.max_connections")?)?,
            tcp_rx_mbufs: num("tcp.rx_mbufs", get("tcp.rx_mbufs")?)?,
            tx_offloads: {
                let mut o = TxOffloads::empty();
                for s in list("tx_checksum_offload")? {
                    o |= match s {
                        "ipv4" => TxOffloads::IPV4_CKSUM,
                        "udp" => TxOffloads::UDP_CKSUM,
                        "tcp" => TxOffloads::TCP_CKSUM,
                        other => {
                            return Err(ConfigError::invalid(
                                "tx_checksum_offload",
                                format!("'{other}' is not one of ipv4, udp, tcp, none"),
                            ))
                        }
                    };
                }
                o
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The configuration as `key = value` lines that [`parse`](Self::parse) reads back.
    pub fn to_text(&self) -> String {
        let join = |v: Vec<String>| if v.is_empty() { "none".to_string() } else { v.join(", ") };
        let mut off = Vec::new();
        for (f, n) in [(TxOffloads::IPV4_CKSUM, "ipv4"), (TxOffloads::UDP_CKSUM, "udp"), (TxOffloads::TCP_CKSUM, "tcp")]
        {
            if self.tx_offloads.contains(f) {
                off.push(n.to_string());
            }
        }
        let n = &self.neighbor;
        let r = &self.reassembly;
        let r6 = &self.reassembly_v6;
        format!(
            "# stack configuration: every key is required\n\
             mac = {}\nmtu = {}\nipv4 = {}\nipv6 = {}\ngateway_v4 = {}\ngateway_v6 = {}\nttl = {}\n\
             neighbor.capacity = {}\nneighbor.lifetime_ms = {}\nneighbor.retries = {}\n\
             neighbor.retry_interval_ms = {}\nneighbor.pending = {}\n\
             reassembly.max_bytes = {}\nreassembly.max_datagrams = {}\nreassembly.timeout_ms = {}\n\
             reassembly_v6.max_bytes = {}\nreassembly_v6.max_datagrams = {}\nreassembly_v6.timeout_ms = {}\n\
             icmp.error_rate_per_sec = {}\nicmp.error_burst = {}\n\
             timer.tick_us = {}\nburst = {}\ntx_backlog = {}\ntx_checksum_offload = {}\n\
             tcp.max_connections = {}\ntcp.rx_mbufs = {}\n",
            self.mac,
            self.mtu,
            join(self.ipv4.iter().map(|c| c.to_string()).collect()),
            join(self.ipv6.iter().map(|c| c.to_string()).collect()),
            self.gateway_v4.map_or("none".into(), |g| g.to_string()),
            self.gateway_v6.map_or("none".into(), |g| g.to_string()),
            self.ttl,
            n.capacity,
            n.lifetime.as_millis(),
            n.retries,
            n.retry_interval.as_millis(),
            n.pending,
            r.max_bytes,
            r.max_datagrams,
            r.timeout.as_millis(),
            r6.max_bytes,
            r6.max_datagrams,
            r6.timeout.as_millis(),
            self.icmp.error_rate_per_sec,
            self.icmp.error_burst,
            self.timer_tick.as_micros(),
            self.burst,
            self.tx_backlog,
            join(off),
            self.tcp_max_connections,
            self.tcp_rx_mbufs,
        )
    }
}

/// A UDP socket's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpConfig {
    /// Datagrams queued for the application; more are dropped and counted.
    pub rx_queue_len: usize,
}

impl UdpConfig {
    /// Checks the values; the error names the bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.rx_queue_len == 0 {
            return Err(ConfigError::invalid("udp.rx_queue_len", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> StackConfig {
        StackConfig {
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
            ipv4: vec!["198.18.0.1/24".parse().unwrap()],
            ipv6: vec!["2001:2::1/64".parse().unwrap()],
            gateway_v4: Some("198.18.0.254".parse().unwrap()),
            gateway_v6: None,
            ttl: 64,
            neighbor: NeighborConfig {
                capacity: 64,
                lifetime: Duration::from_secs(30),
                retries: 3,
                retry_interval: Duration::from_secs(1),
                pending: 4,
            },
            reassembly: ReassemblyConfig { max_bytes: 1 << 20, max_datagrams: 64, timeout: Duration::from_secs(30) },
            reassembly_v6: ReassemblyConfig { max_bytes: 1 << 19, max_datagrams: 32, timeout: Duration::from_secs(60) },
            icmp: IcmpConfig { error_rate_per_sec: 100, error_burst: 10 },
            timer_tick: Duration::from_millis(1),
            burst: 32,
            tx_backlog: 1024,
            tx_offloads: TxOffloads::UDP_CKSUM,
            tcp_max_connections: 1024,
            tcp_rx_mbufs: 512,
        }
    }

    #[test]
    fn text_round_trip() {
        let c = sample();
        assert_eq!(StackConfig::parse(&c.to_text()).unwrap(), c);
    }

    #[test]
    fn missing_key_is_named() {
        let text: String =
            sample().to_text().lines().filter(|l| !l.starts_with("neighbor.retries")).collect::<Vec<_>>().join("\n");
        let e = StackConfig::parse(&text).unwrap_err();
        assert_eq!(e, ConfigError::missing("neighbor.retries"));
        assert!(e.to_string().contains("neighbor.retries"));
    }

    #[test]
    fn missing_ipv6_reassembly_keys_are_named() {
        for key in ["reassembly_v6.max_bytes", "reassembly_v6.max_datagrams", "reassembly_v6.timeout_ms"] {
            let text: String =
                sample().to_text().lines().filter(|l| !l.starts_with(key)).collect::<Vec<_>>().join("\n");
            assert_eq!(StackConfig::parse(&text).unwrap_err(), ConfigError::missing(key));
        }
    }

    #[test]
    fn bad_values_name_the_field() {
        type Edit = Box<dyn Fn(&mut StackConfig)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("neighbor.capacity", Box::new(|c| c.neighbor.capacity = 0)),
            ("mtu", Box::new(|c| c.mtu = 100)),
            ("gateway_v4", Box::new(|c| c.gateway_v4 = Some("198.19.200.1".parse().unwrap()))),
            ("icmp.error_burst", Box::new(|c| c.icmp.error_burst = 0)),
            (
                "ipv4",
                Box::new(|c| {
                    c.ipv4.clear();
                    c.ipv6.clear();
                }),
            ),
            ("burst", Box::new(|c| c.burst = 0)),
            ("reassembly_v6.timeout_ms", Box::new(|c| c.reassembly_v6.timeout = Duration::ZERO)),
            ("tcp.max_connections", Box::new(|c| c.tcp_max_connections = 0)),
        ];
        for (field, f) in cases {
            let mut c = sample();
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
        let text = sample().to_text().replace("ttl = 64", "ttl = lots");
        assert!(StackConfig::parse(&text).unwrap_err().to_string().contains("'ttl'"));
        let text = sample().to_text() + "bogus = 1\n";
        assert!(StackConfig::parse(&text).unwrap_err().to_string().contains("'bogus'"));
        assert!(UdpConfig { rx_queue_len: 0 }.validate().unwrap_err().to_string().contains("udp.rx_queue_len"));
    }
}
