//! The port registry: which driver serves a spec's scheme, and the decorators
//! (capture, impairment) every port takes from its options.
//!
//! One parser ([`crate::spec`]), one registry, one error type: an unknown scheme
//! lists the valid ones, an unknown option lists the options that scheme
//! accepts (its own plus the decorator options every port takes), and a bad
//! value names the option and what it expected. Each driver declares its scheme,
//! usage and options and reads them itself (`DRIVER` and `open_spec` in its
//! module); this file only lists the drivers.

use crate::drivers::{af_packet, af_xdp, null, ring, tap, virtio_user};
use crate::impair::{ImpairConfig, ImpairPort, IMPAIR_OPTIONS};
use crate::pcap::{PcapPort, PCAP_OPTIONS};
use crate::spec::{DriverInfo, OpenEnv, Spec};
use crate::{PmdError, Port};

static DRIVERS: &[DriverInfo] = &[
    ring::DRIVER,
    null::DRIVER,
    tap::DRIVER,
    af_packet::DRIVER,
    af_xdp::DRIVER,
    virtio_user::DRIVER,
    #[cfg(feature = "dpdk")]
    crate::drivers::dpdk::DRIVER,
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
            ("af_xdp:", "af_xdp:IFNAME"),
            ("af_xdp:x?queues=0", "'queues'"),
            ("af_xdp:x?zero_copy=maybe", "'zero_copy'"),
            ("af_xdp:x?frame_size=3000", "'frame_size'"),
            ("af_xdp:x?rx_size=1000", "'rx_size'"),
            ("af_xdp:x?tx_size=16", "'tx_size'"),
            ("af_xdp:x?num_frames=1024", "'num_frames'"),
            ("af_xdp:x?need_wakeup=2", "'need_wakeup'"),
            ("af_xdp:x?busy_poll=-1", "'busy_poll'"),
            ("tap:x?blocks=1", "valid options: queues, rss, mac"),
            ("tap:x?rss=2", "'rss'"),
            ("af_packet:x?rss=yes", "'rss'"),
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
