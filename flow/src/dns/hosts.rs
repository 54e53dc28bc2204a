//! A static hosts table: names answered without a query, before the cache.
//! Filled by the caller, or from a file in /etc/hosts format when asked
//! (never implicitly).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use crate::happy_eyeballs::Family;

/// Name → addresses.
#[derive(Clone, Debug, Default)]
pub struct Hosts {
    map: HashMap<String, Vec<IpAddr>>,
}

impl Hosts {
    /// An empty table.
    pub fn new() -> Hosts {
        Hosts::default()
    }

    /// Adds an address for `name` (lower-cased, without a trailing dot).
    pub fn insert(&mut self, name: &str, ip: IpAddr) {
        let v = self.map.entry(normal(name)).or_default();
        if !v.contains(&ip) {
            v.push(ip);
        }
    }

    /// Reads a file in hosts(5) format; a bad address names the file and line.
    pub fn from_file(path: &Path) -> Result<Hosts, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut h = Hosts::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("");
            let mut f = line.split_whitespace();
            let Some(addr) = f.next() else { continue };
            let ip: IpAddr =
                addr.parse().map_err(|_| format!("{}:{}: '{addr}' is not an address", path.display(), i + 1))?;
            for name in f {
                h.insert(name, ip);
            }
        }
        Ok(h)
    }

    /// The table's answer for `name`/`family`: `None` if the name is not in
    /// it (ask DNS), else its addresses of that family (maybe none).
    pub fn get(&self, name: &str, family: Family) -> Option<Vec<IpAddr>> {
        self.map
            .get(&normal(name))
            .map(|v| v.iter().copied().filter(|a| a.is_ipv6() == (family == Family::V6)).collect())
    }
}

fn normal(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}
