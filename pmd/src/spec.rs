//! Port specs: `scheme:target?option=value&...` strings, parsed once
//! ([`Spec::parse`]), with the helpers drivers use to read their options, so a
//! bad value always names the option and what it expected. The target may
//! itself contain `:` (`dpdk:0000:03:00.0`), so only the first `:` separates
//! the scheme. Which driver serves a scheme is [`crate::registry`]'s business;
//! each driver reads its own options (its `open_spec`).

use std::str::FromStr;
use std::sync::Arc;

use crate::clock::{Clock, MonotonicClock};
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

    /// `mac=`, or the address derived from `default_name`.
    pub(crate) fn mac(&self, default_name: &str) -> Result<MacAddr, PmdError> {
        match self.get("mac") {
            None => Ok(MacAddr::from_name(default_name)),
            Some(v) => v.parse().map_err(|e: String| self.bad_value("mac", v, &e)),
        }
    }

    /// `queues=` (default 1), checked against `1..=max`.
    pub(crate) fn queues(&self, max: u16) -> Result<u16, PmdError> {
        let expected = format!("a queue count, 1..={max}");
        let q = self.parse_opt::<u16>("queues", &expected)?.unwrap_or(1);
        if q == 0 || q > max {
            return Err(self.bad_value("queues", &q.to_string(), &expected));
        }
        Ok(q)
    }

    /// A `0|1` option.
    pub(crate) fn flag(&self, key: &str, default: bool) -> Result<bool, PmdError> {
        match self.get(key) {
            None => Ok(default),
            Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some(v) => Err(self.bad_value(key, v, "0 or 1")),
        }
    }

    /// `checks=full|none` (default full): whether the port enforces the MTU on
    /// transmit and keeps exact byte counters, which costs a read of every
    /// frame's header; `none` is DPDK's contract for its `net_ring`/ethdevs.
    pub(crate) fn checks(&self) -> Result<bool, PmdError> {
        match self.get("checks") {
            None | Some("full") => Ok(true),
            Some("none") => Ok(false),
            Some(v) => Err(self.bad_value("checks", v, "full or none")),
        }
    }

    /// The target, which this scheme needs; `what` says what it is
    /// (`"a name: ring:NAME"`).
    pub(crate) fn require_target(&self, what: &str) -> Result<&str, PmdError> {
        if self.target.is_empty() {
            return Err(PmdError::BadSpec {
                spec: self.text.clone(),
                reason: format!("a {} port needs {what}", self.scheme),
            });
        }
        Ok(&self.target)
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

/// How a driver opens a port from its spec.
pub(crate) type OpenFn = fn(&Spec, &OpenEnv) -> Result<Box<dyn Port>, PmdError>;

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
    pub(crate) open: OpenFn,
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
}
