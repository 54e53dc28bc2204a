//! [`MacAddr`]: an Ethernet address, printed and parsed as `02:00:00:00:00:01`.
//! The one MAC type of the workspace: ports report it, the stack's wire
//! formats read and write it (re-exported as `stack::wire::MacAddr`).

use std::fmt;
use std::str::FromStr;

/// An Ethernet MAC address.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00.
    pub const UNSPECIFIED: MacAddr = MacAddr([0; 6]);

    /// From a slice of exactly six bytes.
    pub fn from_bytes(b: &[u8]) -> Option<MacAddr> {
        <[u8; 6]>::try_from(b).ok().map(MacAddr)
    }

    /// The six bytes.
    pub fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// The broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Whether the group bit is set (multicast or broadcast).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Neither multicast nor broadcast.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// Locally administered bit set.
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// The multicast MAC for an IPv6 multicast address (RFC 2464 §7):
    /// 33:33 followed by the last four bytes.
    pub fn ipv6_multicast(addr: &std::net::Ipv6Addr) -> MacAddr {
        let o = addr.octets();
        MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }

    /// The multicast MAC for an IPv4 multicast address (RFC 1112 §6.4):
    /// 01:00:5e followed by the low 23 bits.
    pub fn ipv4_multicast(addr: &std::net::Ipv4Addr) -> MacAddr {
        let o = addr.octets();
        MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
    }

    /// A locally administered unicast address derived from a name, stable across
    /// runs (FNV-1a of the name).
    pub fn from_name(name: &str) -> MacAddr {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let b = h.to_be_bytes();
        MacAddr([0x02, b[1], b[2], b[3], b[4], b[5]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = String;

    /// Parses `02:00:00:00:00:01` or `02-00-00-00-00-01` (one separator
    /// style throughout, two hex digits per byte).
    fn from_str(s: &str) -> Result<Self, String> {
        let sep = if s.contains(':') { ':' } else { '-' };
        let mut m = [0u8; 6];
        let mut n = 0;
        for p in s.split(sep) {
            if n == 6 {
                break;
            }
            if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("'{s}' is not a MAC address (bad byte '{p}')"));
            }
            m[n] = u8::from_str_radix(p, 16).map_err(|_| format!("'{s}' is not a MAC address (bad byte '{p}')"))?;
            n += 1;
        }
        if n != 6 || s.split(sep).count() != 6 {
            return Err(format!("'{s}' is not a MAC address (expected 6 hex bytes like 02:00:00:00:00:01)"));
        }
        Ok(MacAddr(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);

    #[test]
    fn address_display_and_parse() {
        assert_eq!(SRC.to_string(), "02:00:00:00:00:01");
        assert_eq!("02:00:00:00:00:01".parse::<MacAddr>(), Ok(SRC));
        assert_eq!("02-00-00-00-00-01".parse::<MacAddr>(), Ok(SRC));
        assert_eq!("FF:ff:FF:ff:FF:ff".parse(), Ok(MacAddr::BROADCAST));
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:01:03",
            "2:00:00:00:00:01",
            "zz:00:00:00:00:01",
            "02:00-00:00:00:01",
            "+2:00:00:00:00:01",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(SRC.is_unicast() && SRC.is_local());
        assert_eq!(MacAddr::ipv6_multicast(&"ff02::1:ff00:2".parse().unwrap()), MacAddr([0x33, 0x33, 0xff, 0, 0, 2]));
        assert_eq!(MacAddr::ipv4_multicast(&"224.129.2.3".parse().unwrap()), MacAddr([1, 0, 0x5e, 1, 2, 3]));
    }
}
