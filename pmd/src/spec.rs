//! Port specs: `scheme:target?option=value&...` strings, and the registry that maps
//! a scheme to the driver that opens it.
//!
//! One parser, one registry, one error type: an unknown scheme lists the valid
//! ones, an unknown option lists the options that scheme accepts (its own plus the
//! decorator options every port takes), and a bad value names the option and what
//! it expected. The target may itself contain `:` (`dpdk:0000:03:00.0`), so only
//! the first `:` separates the scheme.

use std::str::FromStr;
use std::sync::Arc;

use crate::clock::{Clock, MonotonicClock};
use crate::drivers::{null::NullPort, ring::RingPort};
use crate::impair::{ImpairConfig, ImpairPort, IMPAIR_OPTIONS};
use crate::pcap::{PcapPort, PCAP_OPTIONS};
use crate::port::MacAddr;
use crate::{PmdError, Port};

/// A parsed port spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The spec as given.
    pub text: String,
    /// The part before the first `:` (or the whole spec without one).
    pub scheme: String,
    /// The part between the first `:` and the `?`.
    pub target: String,
    /// `key=value` options after the `?`, in order.
    pub options: Vec<(String, String)>,
}

impl Spec {
    /// Splits a spec into scheme, target and options (no driver knowledge).
    pub fn parse(text: &str) -> Result<Spec, PmdError> {
        let bad = |reason: &str| PmdError::BadSpec { spec: text.to_string(), reason: reason.to_string() };
        let text_trim = text.trim();
        if text_trim.is_empty() {
            return Err(bad("empty spec; expected TYPE[:TARGET][?OPTION=VALUE&...]"));
        }
        let (head, query) = match text_trim.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (text_trim, None),
        };
        let (scheme, target) = match head.split_once(':') {
            Some((s, t)) => (s, t),
            None => (head, ""),
        };
        if scheme.is_empty() {
            return Err(bad("missing port type before ':'"));
        }
        let mut options: Vec<(String, String)> = Vec::new();
        if let Some(q) = query {
            for pair in q.split('&').filter(|p| !p.is_empty()) {
                let Some((k, v)) = pair.split_once('=') else {
                    return Err(bad(&format!("option '{pair}' has no value; write {pair}=VALUE")));
                };
                if k.is_empty() {
                    return Err(bad(&format!("option '{pair}' has no name")));
                }
                if options.iter().any(|(o, _)| o == k) {
                    return Err(bad(&format!("option '{k}' is given twice")));
                }
                options.push((k.to_string(), v.to_string()));
            }
        }
        Ok(Spec { text: text.to_string(), scheme: scheme.to_string(), target: target.to_string(), options })
    }

    /// The raw value of an option.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.options.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Parses an option's value; the error names the option and `expected`.
    pub fn parse_opt<T: FromStr>(&self, key: &str, expected: &str) -> Result<Option<T>, PmdError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|_| self.bad_value(key, v, expected)),
        }
    }

    /// The error for a bad option value.
    pub fn bad_value(&self, key: &str, value: &str, expected: &str) -> PmdError {
        PmdError::BadValue {
            spec: self.text.clone(),
            option: key.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }

    fn mac(&self, default_name: &str) -> Result<MacAddr, PmdError> {
        match self.get("mac") {
            None => Ok(MacAddr::from_name(default_name)),
            Some(v) => v.parse().map_err(|e: String| self.bad_value("mac", v, &e)),
        }
    }
}

/// What opening a port may depend on besides the spec.
#[derive(Clone)]
pub struct OpenEnv {
    /// Clock for time-dependent decorators (delay, rate).
    pub clock: Arc<dyn Clock>,
}

impl Default for OpenEnv {
    fn default() -> Self {
        OpenEnv { clock: Arc::new(MonotonicClock) }
    }
}

type OpenFn = fn(&Spec, &OpenEnv) -> Result<Box<dyn Port>, PmdError>;

/// A driver in the registry.
pub struct DriverInfo {
    /// The scheme it serves.
    pub scheme: &'static str,
    /// Usage line.
    pub usage: &'static str,
    /// Its own options with a one-line description each.
    pub options: &'static [(&'static str, &'static str)],
    /// Its receive pool must be shared memory ([`crate::Mempool::new_shared`]):
    /// another process (a vhost-user back end) maps the buffers.
    pub shared_pool: bool,
    open: OpenFn,
}

fn open_ring(spec: &Spec, _: &OpenEnv) -> Result<Box<dyn Port>, PmdError> {
    if spec.target.is_empty() {
        return Err(PmdError::BadSpec {
            spec: spec.text.clone(),
            reason: "a ring port needs a name: ring:NAME".into(),
        });
    }
    let mac = spec.mac(&format!("ring:{}", spec.target))?;
    let csum = bool_opt(spec, "csum", false)?;
    Ok(Box::new(RingPort::open_with(&spec.target, spec.get("peer"), mac, csum, checks_opt(spec)?)?))
}

fn open_null(spec: &Spec, _: &OpenEnv) -> Result<Box<dyn Port>, PmdError> {
    let size = spec.parse_opt::<usize>("size", "a frame length in bytes, 1..=9018")?.unwrap_or(64);
    if size == 0 || size > crate::drivers::null::MAX_FRAME {
        return Err(spec.bad_value("size", &size.to_string(), "a frame length in bytes, 1..=9018"));
    }
    let name = if spec.target.is_empty() { "null" } else { spec.target.as_str() };
    let mac = spec.mac(&format!("null:{name}"))?;
    Ok(Box::new(NullPort::new(name, size, mac)?))
}

fn queues_opt(spec: &Spec, max: u16) -> Result<u16, PmdError> {
    let expected = format!("a queue count, 1..={max}");
    let q = spec.parse_opt::<u16>("queues", &expected)?.unwrap_or(1);
    if q == 0 || q > max {
        return Err(spec.bad_value("queues", &q.to_string(), &expected));
    }
    Ok(q)
}

fn need_ifname(spec: &Spec, scheme: &str) -> Result<(), PmdError> {
    if spec.target.is_empty() {
        return Err(PmdError::BadSpec {
            spec: spec.text.clone(),
            reason: format!("a {scheme} port needs an interface name: {scheme}:IFNAME"),
        });
    }
    crate::drivers::netdev::check_ifname(&spec.target)
        .map_err(|e| PmdError::BadSpec { spec: spec.text.clone(), reason: e.to_string() })
}

fn open_tap(spec: &Spec, _: &OpenEnv) -> Result<Box<dyn Port>, PmdError> {
    need_ifname(spec, "tap")?;
    let queues = queues_opt(spec, crate::drivers::tap::MAX_QUEUES)?;
    let mac = spec.mac(&format!("tap:{}", spec.target))?;
    Ok(Box::new(crate::drivers::tap::TapPort::open(&spec.target, queues, mac)?))
}

fn open_af_packet(spec: &Spec, _: &OpenEnv) -> Result<Box<dyn Port>, PmdError> {
    use crate::drivers::af_packet::{AfPacketPort, RingGeometry};
    need_ifname(spec, "af_packet")?;
    let queues = queues_opt(spec, crate::drivers::af_packet::MAX_QUEUES)?;
    let d = RingGeometry::default();
    let g = RingGeometry {
        block_size: spec.parse_opt("block_size", "bytes, a multiple of the page size")?.unwrap_or(d.block_size),
        frame_size: spec.parse_opt("frame_size", "bytes, a multiple of 16")?.unwrap_or(d.frame_size),
        block_count: spec.parse_opt("block_count", "a block count above 0")?.unwrap_or(d.block_count),
        block_timeout_ms: spec.parse_opt("block_timeout_ms", "milliseconds")?.unwrap_or(d.block_timeout_ms),
    };
    if let Err(PmdError::Config { field, reason }) = g.validate() {
        let v = spec.get(field).unwrap_or("(default)").to_string();
        return Err(spec.bad_value(field, &v, &reason));
    }
    Ok(Box::new(AfPacketPort::open(&spec.target, queues, g)?))
}

/// `checks=full|none` (default full): whether the port enforces the MTU on
/// transmit and keeps exact byte counters, which costs a read of every
/// frame's header; `none` is DPDK's contract for its `net_ring`/ethdevs.
fn checks_opt(spec: &Spec) -> Result<bool, PmdError> {
    match spec.get("checks") {
        None | Some("full") => Ok(true),
        Some("none") => Ok(false),
        Some(v) => Err(spec.bad_value("checks", v, "full or none")),
    }
}

fn bool_opt(spec: &Spec, key: &str, default: bool) -> Result<bool, PmdError> {
    match spec.get(key) {
        None => Ok(default),
        Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(v) => Err(spec.bad_value(key, v, "0 or 1")),
    }
}

fn open_virtio_user(spec: &Spec, _: &OpenEnv) -> Result<Box<dyn Port>, PmdError> {
    use crate::drivers::virtio_user::{Options, VirtioUserPort, MAX_QSIZE, MAX_QUEUES};
    if spec.target.is_empty() {
        return Err(PmdError::BadSpec {
            spec: spec.text.clone(),
            reason: "a virtio-user port needs the vhost-user socket path: virtio-user:/path/to/vhost.sock".into(),
        });
    }
    let d = Options::default();
    let opts = Options {
        queues: queues_opt(spec, MAX_QUEUES)?,
        server: bool_opt(spec, "server", d.server)?,
        qsize: spec.parse_opt("qsize", &format!("a power of two, 16..={MAX_QSIZE}"))?.unwrap_or(d.qsize),
        mrg_rxbuf: bool_opt(spec, "mrg_rxbuf", d.mrg_rxbuf)?,
        in_order: bool_opt(spec, "in_order", d.in_order)?,
        wait_ms: spec.parse_opt("wait_ms", "milliseconds")?.unwrap_or(d.wait_ms),
    };
    if let Err(PmdError::Config { field, reason }) = opts.validate() {
        let v = spec.get(field).unwrap_or("(default)").to_string();
        return Err(spec.bad_value(field, &v, &reason));
    }
    let mac = spec.mac(&format!("virtio-user:{}", spec.target))?;
    Ok(Box::new(VirtioUserPort::open(&spec.target, opts, mac)?))
}

#[cfg(feature = "dpdk")]
fn open_dpdk(spec: &Spec, _: &OpenEnv) -> Result<Box<dyn Port>, PmdError> {
    Ok(Box::new(crate::drivers::dpdk::DpdkPort::open(&spec.text, &spec.target, checks_opt(spec)?)?))
}

static DRIVERS: &[DriverInfo] = &[
    DriverInfo {
        scheme: "ring",
        usage: "ring:NAME[?peer=OTHER&csum=1&checks=none] — in-memory wire; alone it loops back to itself",
        options: &[
            ("peer", "name of the ring port at the other end (default: itself)"),
            ("mac", "MAC address"),
            (
                "checks",
                "full (default): MTU enforced, exact byte counters; none: like DPDK's net_ring, neither \
                 (frames move as handles only, bytes read 0)",
            ),
            (
                "csum",
                "1 offers IPv4/TCP/UDP checksum offloads as Linux loopback does: requested L4 checksums \
                 arrive partial (L4_CKSUM_PARTIAL), IPv4 ones computed (default 0)",
            ),
        ],
        shared_pool: false,
        open: open_ring,
    },
    DriverInfo {
        scheme: "null",
        usage: "null[:NAME][?size=64] — rx returns new frames, tx frees them",
        options: &[("size", "received frame length in bytes (default 64)"), ("mac", "MAC address")],
        shared_pool: false,
        open: open_null,
    },
    DriverInfo {
        scheme: "tap",
        usage: "tap:IFNAME[?queues=1] — Linux TAP interface (created if missing), offloads as virtio-net headers",
        options: &[
            ("queues", "queues (one /dev/net/tun descriptor each, IFF_MULTI_QUEUE), 1..=64 (default 1)"),
            ("mac", "MAC address of the port (default derived from the name)"),
        ],
        shared_pool: false,
        open: open_tap,
    },
    DriverInfo {
        scheme: "af_packet",
        usage: "af_packet:IFNAME[?queues=1] — existing kernel interface via TPACKET_V3 rx / V2 tx mmap rings",
        options: &[
            ("queues", "queues, spread by PACKET_FANOUT_HASH, 1..=16 (default 1)"),
            ("block_size", "receive ring block size in bytes, multiple of the page size (default 65536)"),
            ("frame_size", "frame size in bytes, multiple of 16; bounds tx frames and the MTU (default 2048)"),
            ("block_count", "receive ring blocks per queue (default 64)"),
            ("block_timeout_ms", "hand over a partly filled receive block after this long (default 1)"),
        ],
        shared_pool: false,
        open: open_af_packet,
    },
    DriverInfo {
        scheme: "virtio-user",
        usage:
            "virtio-user:/path/to/vhost.sock[?queues=1&server=0&qsize=256&in_order=1] — virtio-net over a vhost-user \
                socket (OVS-DPDK, VPP, DPDK vhost), zero copy from a shared (memfd) pool, no DPDK needed",
        options: &[
            ("queues", "queue pairs, 1..=16 (default 1); more than 1 needs VIRTIO_NET_F_MQ"),
            ("server", "1: listen on the path and wait for the back end (default 0: connect to it)"),
            ("qsize", "entries per virtqueue, a power of two 16..=32768 (default 256)"),
            ("mrg_rxbuf", "1: negotiate VIRTIO_NET_F_MRG_RXBUF (default 1)"),
            ("in_order", "1: negotiate VIRTIO_F_IN_ORDER, buffers used in ring order (default 1)"),
            ("wait_ms", "with server=1, how long opening waits for the back end (default 10000)"),
            ("mac", "MAC address of the port (default derived from the path)"),
        ],
        shared_pool: true,
        open: open_virtio_user,
    },
    #[cfg(feature = "dpdk")]
    DriverInfo {
        scheme: "dpdk",
        usage: "dpdk:PCI_ADDRESS | dpdk:VDEV[,ARGS] — a DPDK ethdev: a NIC bound to vfio-pci (dpdk:0000:03:00.0) \
                or a virtual device (dpdk:net_ring0, dpdk:net_tap0,iface=tap0); needs EAL (testpmd --eal)",
        options: &[(
            "checks",
            "full (default): MTU enforced on transmit and exact byte counters per queue, as on every port; \
             none: DPDK's own semantics, no per-frame work (bytes from the device's counters, oversize \
             frames left to the device)",
        )],
        shared_pool: false,
        open: open_dpdk,
    },
];

/// Whether a port opened from `spec` needs its receive pool in shared memory
/// ([`crate::Mempool::new_shared`]); false for specs that do not parse.
pub fn needs_shared_pool(spec: &str) -> bool {
    Spec::parse(spec).ok().and_then(|s| DRIVERS.iter().find(|d| d.scheme == s.scheme)).is_some_and(|d| d.shared_pool)
}

/// Every registered driver.
pub fn drivers() -> &'static [DriverInfo] {
    DRIVERS
}

/// Opens a port from a spec with the real clock. See [`open_with`].
pub fn open(spec: &str) -> Result<Box<dyn Port>, PmdError> {
    open_with(spec, &OpenEnv::default())
}

/// Opens a port from a spec: finds the driver, checks every option, opens it,
/// and wraps it in the impairment decorator when impairment options are present.
pub fn open_with(spec: &str, env: &OpenEnv) -> Result<Box<dyn Port>, PmdError> {
    let spec = Spec::parse(spec)?;
    let Some(driver) = DRIVERS.iter().find(|d| d.scheme == spec.scheme) else {
        return Err(PmdError::UnknownScheme {
            spec: spec.text.clone(),
            scheme: spec.scheme.clone(),
            valid: DRIVERS.iter().map(|d| d.scheme).collect::<Vec<_>>().join(", "),
        });
    };
    for (k, _) in &spec.options {
        let known = driver.options.iter().chain(IMPAIR_OPTIONS).chain(PCAP_OPTIONS).any(|(o, _)| o == k);
        if !known {
            let valid = driver
                .options
                .iter()
                .chain(IMPAIR_OPTIONS)
                .chain(PCAP_OPTIONS)
                .map(|(o, _)| *o)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(PmdError::UnknownOption {
                spec: spec.text.clone(),
                scheme: spec.scheme.clone(),
                option: k.clone(),
                valid,
            });
        }
    }
    let impair = ImpairConfig::from_spec(&spec)?;
    let pcap = crate::pcap::sink_from_spec(&spec)?;
    let mut port = (driver.open)(&spec, env)?;
    // Capture next to the driver (the wire), impairment outside it.
    if let Some(sink) = pcap {
        port = Box::new(PcapPort::new(port, sink));
    }
    Ok(match impair {
        Some(cfg) => Box::new(ImpairPort::new(port, cfg, env.clock.clone())),
        None => port,
    })
}

/// A help text listing every driver and option, for `--help` outputs.
pub fn help() -> String {
    let mut s = String::from("Port specs:\n");
    for d in DRIVERS {
        s.push_str(&format!("  {}\n", d.usage));
        for (o, h) in d.options {
            s.push_str(&format!("      {o:<10} {h}\n"));
        }
    }
    s.push_str("  Impairment options, accepted by every port:\n");
    for (o, h) in IMPAIR_OPTIONS {
        s.push_str(&format!("      {o:<10} {h}\n"));
    }
    s.push_str("  Capture options, accepted by every port:\n");
    for (o, h) in PCAP_OPTIONS {
        s.push_str(&format!("      {o:<10} {h}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_scheme_target_options() {
        let s = Spec::parse("dpdk:0000:03:00.0?queues=2&rxd=512").unwrap();
        assert_eq!(s.scheme, "dpdk");
        assert_eq!(s.target, "0000:03:00.0");
        assert_eq!(s.get("queues"), Some("2"));
        assert_eq!(s.get("rxd"), Some("512"));
        let s = Spec::parse("null").unwrap();
        assert_eq!((s.scheme.as_str(), s.target.as_str()), ("null", ""));
    }

    #[test]
    fn malformed_specs_are_errors_naming_the_problem() {
        for (spec, needle) in [
            ("", "empty spec"),
            (":a", "missing port type"),
            ("ring:a?peer", "has no value"),
            ("ring:a?=x", "has no name"),
            ("ring:a?peer=b&peer=c", "given twice"),
        ] {
            let e = Spec::parse(spec).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }

    #[test]
    fn unknown_scheme_lists_valid_ones() {
        let e = open("rng:a").err().unwrap().to_string();
        assert!(e.contains("'rng'") && e.contains("ring, null, tap, af_packet"), "{e}");
    }

    #[test]
    fn unknown_option_names_it_and_lists_valid_ones() {
        let e = open("ring:spec_t1?los=0.1").err().unwrap().to_string();
        assert!(e.contains("'los'") && e.contains("peer") && e.contains("loss"), "{e}");
    }

    #[test]
    fn bad_values_name_the_option() {
        let e = open("null?size=abc").err().unwrap().to_string();
        assert!(e.contains("'size'") && e.contains("abc"), "{e}");
        let e = open("null?size=0").err().unwrap().to_string();
        assert!(e.contains("'size'"), "{e}");
        let e = open("ring:spec_t2?mac=zz").err().unwrap().to_string();
        assert!(e.contains("'mac'"), "{e}");
        let e = open("ring:spec_t3?loss=1.5&seed=1").err().unwrap().to_string();
        assert!(e.contains("'loss'"), "{e}");
        let e = open("ring:spec_t4?loss=0.1").err().unwrap().to_string();
        assert!(e.contains("'seed'"), "{e}");
        let e = open("ring:").err().unwrap().to_string();
        assert!(e.contains("ring:NAME"), "{e}");
    }

    #[test]
    fn kernel_port_options_are_checked_before_touching_the_system() {
        for (spec, needle) in [
            ("tap:", "tap:IFNAME"),
            ("af_packet:", "af_packet:IFNAME"),
            ("tap:x?queues=0", "'queues'"),
            ("tap:x?queues=abc", "'queues'"),
            ("af_packet:x?queues=99", "'queues'"),
            ("af_packet:x?block_size=1000", "'block_size'"),
            ("af_packet:x?frame_size=100", "'frame_size'"),
            ("af_packet:x?block_count=0", "'block_count'"),
            ("tap:x?blocks=1", "valid options: queues, mac"),
            ("tap:this_name_is_too_long", "interface name"),
            ("virtio-user:", "socket path"),
            ("virtio-user:/x.sock?queues=0", "'queues'"),
            ("virtio-user:/x.sock?qsize=100", "'qsize'"),
            ("virtio-user:/x.sock?server=2", "'server'"),
            ("virtio-user:/x.sock?mrg_rxbuf=yes", "'mrg_rxbuf'"),
            ("virtio-user:/x.sock?in_order=2", "'in_order'"),
            ("virtio-user:/x.sock?queue=2", "valid options: queues, server, qsize"),
        ] {
            let e = open(spec).err().unwrap().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }
}
