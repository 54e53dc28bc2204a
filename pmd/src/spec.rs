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
    Ok(Box::new(RingPort::open(&spec.target, spec.get("peer"), mac)?))
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

#[cfg(feature = "dpdk")]
fn open_dpdk(spec: &Spec, _: &OpenEnv) -> Result<Box<dyn Port>, PmdError> {
    Ok(Box::new(crate::drivers::dpdk::DpdkPort::open(&spec.text, &spec.target)?))
}

static DRIVERS: &[DriverInfo] = &[
    DriverInfo {
        scheme: "ring",
        usage: "ring:NAME[?peer=OTHER] — in-memory wire; alone it loops back to itself",
        options: &[("peer", "name of the ring port at the other end (default: itself)"), ("mac", "MAC address")],
        open: open_ring,
    },
    DriverInfo {
        scheme: "null",
        usage: "null[:NAME][?size=64] — rx returns new frames, tx frees them",
        options: &[("size", "received frame length in bytes (default 64)"), ("mac", "MAC address")],
        open: open_null,
    },
    #[cfg(feature = "dpdk")]
    DriverInfo {
        scheme: "dpdk",
        usage: "dpdk:PCI_ADDRESS | dpdk:VDEV[,ARGS] — a DPDK ethdev: a NIC bound to vfio-pci (dpdk:0000:03:00.0) \
                or a virtual device (dpdk:net_ring0, dpdk:net_tap0,iface=tap0); needs EAL (testpmd --eal)",
        options: &[],
        open: open_dpdk,
    },
];

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
        let known = driver.options.iter().any(|(o, _)| o == k) || IMPAIR_OPTIONS.iter().any(|(o, _)| o == k);
        if !known {
            let valid = driver.options.iter().chain(IMPAIR_OPTIONS).map(|(o, _)| *o).collect::<Vec<_>>().join(", ");
            return Err(PmdError::UnknownOption {
                spec: spec.text.clone(),
                scheme: spec.scheme.clone(),
                option: k.clone(),
                valid,
            });
        }
    }
    let impair = ImpairConfig::from_spec(&spec)?;
    let port = (driver.open)(&spec, env)?;
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
        assert!(e.contains("'rng'") && e.contains("ring, null"), "{e}");
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
}
