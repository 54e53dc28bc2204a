//! `[forward.NAME]`: a frontend in forwarding mode (Maglev/Katran-class L4
//! packet balancing: no TCP termination; packets are rewritten in place or
//! encapsulated toward the server, which answers the client directly).
//!
//! Every value that changes what goes on the wire is a required key: the
//! encapsulation, both outer source addresses, the outer TTL, the GUE ports,
//! the flow table size, the policies for fragments and IP options, the MACs.
//! They are checked here into a [`ForwardSpec`]; errors name the key path
//! (`forward.vip.encap: must be "l2dsr", "ipip" or "gue"`).
//!
//! Invariants after [`ForwardFrontend::validate`]:
//! * the backend exists, balances with `maglev` (the ECMP property needs a
//!   pure function of the packet) and, for `l2dsr`, every server has a MAC in
//!   `server_macs` (and no MAC names an unknown server);
//! * `flow_table_size` is a multiple of [`WAYS`](super::flow_table::WAYS)
//!   in `WAYS..=2^26` (the table is set-associative, see `flow_table`);
//! * the GUE source port range is non-empty and within 1..=65535.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pmd::MacAddr;
use serde::Deserialize;

use crate::config::{Algorithm, BackendSpec, ConfigError, HashKey};

fn err(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError { path: path.into(), reason: reason.into() }
}

/// One forwarding frontend as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ForwardFrontend {
    /// `IP:PORT` of the VIP (v4, or `[v6]:PORT`).
    pub vip: String,
    /// `tcp` | `udp`.
    pub protocol: String,
    /// The backend (a `[backends.NAME]`; its servers' URIs give their addresses).
    pub backend: String,
    /// `l2dsr` | `ipip` | `gue`.
    pub encap: String,
    /// Outer IPv4 source of IPIP/GUE toward IPv4 servers.
    pub encap_source_v4: String,
    /// Outer IPv6 source of IP6IP6/GUE toward IPv6 servers.
    pub encap_source_v6: String,
    /// Outer TTL / hop limit.
    pub encap_ttl: u8,
    /// GUE: the servers' UDP port.
    pub gue_port: u16,
    /// GUE: outer source ports `[first, last]`, chosen by flow hash (entropy
    /// for the servers' RSS).
    pub gue_source_ports: [u16; 2],
    /// Next hop of encapsulated packets (ipip, gue).
    pub gateway_mac: String,
    /// Server name → MAC (l2dsr: the servers share our segment).
    pub server_macs: std::collections::BTreeMap<String, String>,
    /// Connections remembered per core (fixed size, LRU).
    pub flow_table_size: usize,
    /// `drop` (count and drop, as Katran) | `forward-2tuple` (Maglev on
    /// source and destination address only, no table).
    pub fragments: String,
    /// `drop` | `forward`: IPv4 options and IPv6 extension headers other
    /// than a fragment header.
    pub ip_options: String,
    /// Largest frame payload (the IP packet) the port sends; a packet that
    /// would exceed it after encapsulation is dropped and counted.
    pub mtu: u16,
    /// `drop` (count) | `icmp` (count, and answer the client with ICMP
    /// fragmentation needed / packet too big naming the MTU left after
    /// encapsulation, as Katran does).
    pub too_big: String,
}

/// L4 protocol of a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }
}

/// How packets reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// Destination MAC rewritten (LVS-DR); IP untouched.
    L2Dsr,
    /// IP in IP: IPIP (4), IP6IP6 / IPv4-in-IPv6 (41 / 4 under IPv6), by the
    /// server's family.
    Ipip,
    /// GUE variant 1 (RFC 8086 / draft-ietf-intarea-gue §4: the inner IP
    /// packet straight after the UDP header), as Katran.
    Gue,
}

/// Fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragPolicy {
    /// Count and drop.
    Drop,
    /// Maglev on the 2-tuple (no ports in a later fragment), no table.
    Forward2Tuple,
}

/// IP options / IPv6 extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionsPolicy {
    /// Count and drop.
    Drop,
    /// Forward like any packet.
    Forward,
}

/// A checked forwarding frontend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardSpec {
    /// Name.
    pub name: String,
    /// VIP address and port.
    pub vip: SocketAddr,
    /// Protocol.
    pub proto: Proto,
    /// Index into `Checked::backends`.
    pub backend: usize,
    /// Encapsulation.
    pub encap: Encap,
    /// Outer source, IPv4.
    pub src_v4: Ipv4Addr,
    /// Outer source, IPv6.
    pub src_v6: Ipv6Addr,
    /// Outer TTL.
    pub ttl: u8,
    /// GUE destination port.
    pub gue_port: u16,
    /// GUE source ports, first..=last.
    pub gue_sports: (u16, u16),
    /// Next hop MAC of encapsulated packets.
    pub gateway_mac: MacAddr,
    /// MAC of each server of the backend (its order), l2dsr.
    pub server_macs: Vec<MacAddr>,
    /// Flow table entries per core.
    pub flow_table_size: usize,
    /// Fragments.
    pub fragments: FragPolicy,
    /// Options.
    pub ip_options: OptionsPolicy,
    /// Maglev table size and key (from the backend).
    pub maglev_size: usize,
    /// What Maglev hashes (from the backend).
    pub hash: HashKey,
    /// MTU.
    pub mtu: u16,
    /// Answer too-big packets with ICMP (else drop them silently).
    pub too_big_icmp: bool,
}

fn mac(path: &str, s: &str) -> Result<MacAddr, ConfigError> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut b = [0u8; 6];
    if parts.len() != 6 {
        return Err(err(path, format!("'{s}' is not a MAC (aa:bb:cc:dd:ee:ff)")));
    }
    for (i, p) in parts.iter().enumerate() {
        b[i] = u8::from_str_radix(p, 16)
            .ok()
            .filter(|_| p.len() == 2)
            .ok_or_else(|| err(path, format!("'{s}' is not a MAC (aa:bb:cc:dd:ee:ff)")))?;
    }
    let m = MacAddr(b);
    if !m.is_unicast() {
        return Err(err(path, format!("'{s}' is not a unicast MAC")));
    }
    Ok(m)
}

impl ForwardFrontend {
    /// Checks every value against the checked backends.
    pub fn validate(&self, p: &str, name: &str, backends: &[BackendSpec]) -> Result<ForwardSpec, ConfigError> {
        let vip: SocketAddr =
            self.vip.parse().map_err(|_| err(format!("{p}.vip"), format!("'{}' is not IP:PORT", self.vip)))?;
        if vip.port() == 0 || vip.ip().is_unspecified() || vip.ip().is_multicast() {
            return Err(err(format!("{p}.vip"), "must be a unicast address and a port above 0"));
        }
        let proto = match self.protocol.as_str() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => return Err(err(format!("{p}.protocol"), "must be \"tcp\" or \"udp\"")),
        };
        let backend = backends
            .iter()
            .position(|b| b.name == self.backend)
            .ok_or_else(|| err(format!("{p}.backend"), format!("no backend named '{}'", self.backend)))?;
        let b = &backends[backend];
        let (maglev_size, hash) = match b.algorithm {
            Algorithm::Maglev { size, key } => (size, key),
            _ => {
                return Err(err(
                    format!("{p}.backend"),
                    format!("backend '{}' must balance with \"maglev\" in forward mode", b.name),
                ))
            }
        };
        let encap = match self.encap.as_str() {
            "l2dsr" => Encap::L2Dsr,
            "ipip" => Encap::Ipip,
            "gue" => Encap::Gue,
            _ => return Err(err(format!("{p}.encap"), "must be \"l2dsr\", \"ipip\" or \"gue\"")),
        };
        let src_v4: Ipv4Addr =
            self.encap_source_v4.parse().map_err(|_| err(format!("{p}.encap_source_v4"), "must be an IPv4 address"))?;
        let src_v6: Ipv6Addr =
            self.encap_source_v6.parse().map_err(|_| err(format!("{p}.encap_source_v6"), "must be an IPv6 address"))?;
        if self.encap_ttl == 0 {
            return Err(err(format!("{p}.encap_ttl"), "must be 1..=255"));
        }
        if self.gue_port == 0 {
            return Err(err(format!("{p}.gue_port"), "must be 1..=65535"));
        }
        let [lo, hi] = self.gue_source_ports;
        if lo == 0 || lo > hi {
            return Err(err(format!("{p}.gue_source_ports"), "must be [first, last] with 1 <= first <= last"));
        }
        let gateway_mac = mac(&format!("{p}.gateway_mac"), &self.gateway_mac)?;
        for k in self.server_macs.keys() {
            if !b.servers.iter().any(|s| &s.name == k) {
                return Err(err(format!("{p}.server_macs.{k}"), format!("backend '{}' has no server '{k}'", b.name)));
            }
        }
        let mut server_macs = Vec::new();
        for s in &b.servers {
            match self.server_macs.get(&s.name) {
                Some(m) => server_macs.push(mac(&format!("{p}.server_macs.{}", s.name), m)?),
                None if encap == Encap::L2Dsr => {
                    return Err(err(format!("{p}.server_macs"), format!("l2dsr needs the MAC of server '{}'", s.name)))
                }
                None => server_macs.push(gateway_mac),
            }
        }
        let ways = super::flow_table::WAYS;
        if self.flow_table_size < ways || self.flow_table_size > 1 << 26 || self.flow_table_size % ways != 0 {
            return Err(err(
                format!("{p}.flow_table_size"),
                format!("must be a multiple of {ways} in {ways}..=67108864"),
            ));
        }
        let fragments = match self.fragments.as_str() {
            "drop" => FragPolicy::Drop,
            "forward-2tuple" => FragPolicy::Forward2Tuple,
            _ => return Err(err(format!("{p}.fragments"), "must be \"drop\" or \"forward-2tuple\"")),
        };
        let ip_options = match self.ip_options.as_str() {
            "drop" => OptionsPolicy::Drop,
            "forward" => OptionsPolicy::Forward,
            _ => return Err(err(format!("{p}.ip_options"), "must be \"drop\" or \"forward\"")),
        };
        if !(576..=9000).contains(&self.mtu) {
            return Err(err(format!("{p}.mtu"), "must be 576..=9000"));
        }
        let too_big_icmp = match self.too_big.as_str() {
            "drop" => false,
            "icmp" => true,
            _ => return Err(err(format!("{p}.too_big"), "must be \"drop\" or \"icmp\"")),
        };
        if encap == Encap::L2Dsr && b.servers.iter().any(|s| matches!(s.addr.ip(), IpAddr::V4(_)) != vip.is_ipv4()) {
            // Harmless for the data path (L2 DSR does not use the server's
            // address), but it is the address health checks use, and a
            // mixed-family DSR backend is almost surely a typo.
            return Err(err(format!("{p}.backend"), "l2dsr servers must be of the VIP's address family"));
        }
        Ok(ForwardSpec {
            name: name.to_string(),
            vip,
            proto,
            backend,
            encap,
            src_v4,
            src_v6,
            ttl: self.encap_ttl,
            gue_port: self.gue_port,
            gue_sports: (lo, hi),
            gateway_mac,
            server_macs,
            flow_table_size: self.flow_table_size,
            fragments,
            ip_options,
            maglev_size,
            hash,
            mtu: self.mtu,
            too_big_icmp,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, HashKey, INIT, INIT_FORWARD};

    use super::*;

    fn with(from: &str, to: &str) -> String {
        assert!(INIT_FORWARD.contains(from), "INIT_FORWARD has no '{from}'");
        INIT_FORWARD.replacen(from, to, 1)
    }

    #[test]
    fn the_forward_init_file_parses_and_validates_every_value() {
        let c = Config::check(INIT_FORWARD).unwrap();
        assert!(c.frontends.is_empty());
        let f = &c.forward[0];
        assert_eq!(f.name, "vip");
        assert_eq!(f.vip, "198.18.0.10:80".parse().unwrap());
        assert_eq!(f.proto, Proto::Tcp);
        assert_eq!(f.encap, Encap::L2Dsr);
        assert_eq!(f.src_v4, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(f.gue_port, 6080);
        assert_eq!(f.gue_sports, (49152, 65535));
        assert_eq!(f.server_macs[2], MacAddr([2, 0, 0, 0, 2, 3]));
        assert_eq!(f.flow_table_size, 1 << 20);
        assert_eq!((f.fragments, f.ip_options), (FragPolicy::Drop, OptionsPolicy::Drop));
        assert_eq!((f.maglev_size, f.hash), (65537, HashKey::FourTuple));
    }

    #[test]
    fn the_proxy_init_file_has_an_empty_forward_table() {
        assert!(Config::check(INIT).unwrap().forward.is_empty());
        let e = Config::check(&INIT.replace("\n[forward]\n", "\n")).unwrap_err();
        assert!(e.reason.contains("missing field `forward`"), "{e}");
    }

    #[test]
    fn every_forward_key_is_required_and_named_when_missing() {
        for key in [
            "vip",
            "protocol",
            "backend",
            "encap",
            "encap_source_v4",
            "encap_source_v6",
            "encap_ttl",
            "gue_port",
            "gue_source_ports",
            "gateway_mac",
            "flow_table_size",
            "fragments",
            "ip_options",
            "mtu",
        ] {
            let line = INIT_FORWARD.lines().find(|l| l.starts_with(&format!("{key} ="))).unwrap();
            let e = Config::check(&INIT_FORWARD.replacen(line, "", 1)).unwrap_err();
            assert_eq!(e.path, "forward.vip", "{key}: {e}");
            assert!(e.reason.contains(&format!("missing field `{key}`")), "{key}: {e}");
        }
    }

    #[test]
    fn bad_forward_values_name_their_key() {
        for (from, to, path) in [
            ("vip = \"198.18.0.10:80\"", "vip = \"198.18.0.10\"", "forward.vip.vip"),
            ("vip = \"198.18.0.10:80\"", "vip = \"0.0.0.0:80\"", "forward.vip.vip"),
            ("protocol = \"tcp\"", "protocol = \"sctp\"", "forward.vip.protocol"),
            ("backend = \"dsr\"", "backend = \"web\"", "forward.vip.backend"),
            ("encap = \"l2dsr\"", "encap = \"gre\"", "forward.vip.encap"),
            ("encap_source_v4 = \"198.18.0.2\"", "encap_source_v4 = \"2001:2::2\"", "forward.vip.encap_source_v4"),
            ("encap_source_v6 = \"2001:2::2\"", "encap_source_v6 = \"198.18.0.2\"", "forward.vip.encap_source_v6"),
            ("encap_ttl = 64", "encap_ttl = 0", "forward.vip.encap_ttl"),
            ("gue_port = 6080", "gue_port = 0", "forward.vip.gue_port"),
            ("[49152, 65535]", "[65535, 49152]", "forward.vip.gue_source_ports"),
            ("gateway_mac = \"02:00:00:00:00:fe\"", "gateway_mac = \"ff:ff:ff:ff:ff:ff\"", "forward.vip.gateway_mac"),
            ("gateway_mac = \"02:00:00:00:00:fe\"", "gateway_mac = \"02:00:00:00:00\"", "forward.vip.gateway_mac"),
            ("s2 = \"02:00:00:00:02:02\"", "s2 = \"nope\"", "forward.vip.server_macs.s2"),
            ("s2 = \"02:00:00:00:02:02\"", "s9 = \"02:00:00:00:02:02\"", "forward.vip.server_macs.s9"),
            ("flow_table_size = 1048576", "flow_table_size = 1000001", "forward.vip.flow_table_size"),
            ("flow_table_size = 1048576", "flow_table_size = 0", "forward.vip.flow_table_size"),
            ("fragments = \"drop\"", "fragments = \"reassemble\"", "forward.vip.fragments"),
            ("ip_options = \"drop\"", "ip_options = \"strip\"", "forward.vip.ip_options"),
            ("mtu = 1500", "mtu = 100", "forward.vip.mtu"),
            ("too_big = \"icmp\"", "too_big = \"reject\"", "forward.vip.too_big"),
            ("algorithm = \"maglev\"", "algorithm = \"roundrobin\"", "forward.vip.backend"),
            ("uri = \"tcp://198.18.2.1:80\"", "uri = \"tcp://[2001:2::1]:80\"", "forward.vip.backend"),
        ] {
            let e = Config::check(&with(from, to)).unwrap_err();
            assert_eq!(e.path, path, "{from} -> {to}: {e}");
        }
    }

    #[test]
    fn l2dsr_needs_every_server_mac_but_encapsulation_does_not() {
        let t = with("s3 = \"02:00:00:00:02:03\"\n", "");
        let e = Config::check(&t).unwrap_err();
        assert_eq!(e.to_string(), "forward.vip.server_macs: l2dsr needs the MAC of server 's3'");
        let c = Config::check(&t.replace("encap = \"l2dsr\"", "encap = \"ipip\"")).unwrap();
        assert_eq!(c.forward[0].encap, Encap::Ipip);
    }

    #[test]
    fn mixed_families_are_allowed_when_encapsulating() {
        let t =
            with("uri = \"tcp://198.18.2.1:80\"", "uri = \"tcp://[2001:2::2:1]:80\"").replace("\"l2dsr\"", "\"gue\"");
        let c = Config::check(&t).unwrap();
        assert!(c.backends[0].servers[0].addr.is_ipv6());
    }

    #[test]
    fn two_forward_frontends_cannot_share_a_vip_and_protocol() {
        let sect =
            &INIT_FORWARD[INIT_FORWARD.find("[forward.vip]").unwrap()..INIT_FORWARD.find("# The servers").unwrap()];
        let twin = sect.replace("[forward.vip", "[forward.vip2");
        let e = Config::check(&format!("{INIT_FORWARD}\n{twin}")).unwrap_err();
        assert_eq!(e.path, "forward.vip2.vip", "{e}");
        let udp = twin.replace("protocol = \"tcp\"", "protocol = \"udp\"");
        assert_eq!(Config::check(&format!("{INIT_FORWARD}\n{udp}")).unwrap().forward.len(), 2);
    }
}
