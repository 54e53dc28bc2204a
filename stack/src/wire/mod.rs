//! Wire formats: zero-copy views over packet bytes and their parsed forms.
//!
//! For each format there is
//! - a *packet view* `XxxPacket<T: AsRef<[u8]>>` over a buffer (an mbuf's data,
//!   a `Vec`, a slice). `new_unchecked` wraps without checking; `new_checked`
//!   validates the lengths so that every getter, and `payload()`, is then
//!   guaranteed not to panic. Setters exist when `T: AsMut<[u8]>`.
//! - a *representation* `XxxRepr`, the header's meaning as plain values, with
//!   `parse` (validates everything: version, lengths, checksums, options) and
//!   `emit` (writes a header into a view whose buffer is at least
//!   `buffer_len()` bytes long).
//!
//! Nothing here allocates, and no input, however malformed, makes a parser
//! panic (checked by proptest over arbitrary bytes). A frame that fails to
//! parse gets an [`Error`], which is also the *drop reason*: a stack counts
//! drops in an array indexed by [`Error::index`] and reports them by
//! [`Error::name`].
//!
//! This is the project's own code in the style of smoltcp's `wire` module
//! (views + reprs), not a copy: it adds 802.1Q/QinQ, IPv6 extension-header
//! walking with fragment info, multi-prefix NDP options, four SACK blocks,
//! checksum offload modes, and drop-reason indices.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum;

/// Declares a zero-copy view over `T: AsRef<[u8]>` (smoltcp's `Packet<T>`
/// shape) with the constructors every view shares: `new_unchecked`,
/// `new_checked` (which runs the type's own `check_len`, the one place that
/// knows the format's length rules) and `into_inner`. The accessors stay
/// hand-written in each protocol's file.
macro_rules! view {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }

        impl<T: AsRef<[u8]>> $name<T> {
            /// Wraps without checking.
            pub fn new_unchecked(buffer: T) -> Self {
                $name { buffer }
            }

            /// Wraps, checking lengths with [`check_len`](Self::check_len).
            pub fn new_checked(buffer: T) -> Result<Self> {
                let p = Self::new_unchecked(buffer);
                p.check_len()?;
                Ok(p)
            }

            /// The underlying buffer.
            pub fn into_inner(self) -> T {
                self.buffer
            }
        }
    };
}

/// The length rule of a field that declares a length of at least `min`
/// (IPv4 IHL and Total Length, TCP Data Offset, UDP Length): `Truncated` if
/// the buffer of `len` bytes is shorter than `min` or than the declared
/// length, `bad` if the declared length is below `min`. `declared` is only
/// read once the first `min` bytes are known to be there.
fn check_declared_len(len: usize, min: usize, declared: impl FnOnce() -> usize, bad: Error) -> Result<usize> {
    if len < min {
        return Err(Error::Truncated);
    }
    let d = declared();
    if d < min {
        return Err(bad);
    }
    if len < d {
        return Err(Error::Truncated);
    }
    Ok(d)
}

pub mod arp;
pub mod cidr;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use cidr::{Cidr, ParseCidrError};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr, VlanHeader, VlanTag, MAX_VLAN_TAGS};
pub use icmpv4::{Icmpv4Packet, Icmpv4Repr, QuotedIpv4};
pub use icmpv6::{Icmpv6Packet, Icmpv6Repr, NdpOption, NdpOptions, NdpPrefixInfo};
pub use ipv4::{Ipv4Cidr, Ipv4Packet, Ipv4Repr};
pub use ipv6::{
    FragmentPosition, Ipv6Cidr, Ipv6ExtHeader, Ipv6FragmentHeader, Ipv6FragmentRepr, Ipv6Packet, Ipv6Repr, Ipv6Upper,
};
pub use tcp::{SeqNumber, TcpFlags, TcpOption, TcpOptionIter, TcpPacket, TcpRepr, TcpTimestamp};
pub use udp::{UdpPacket, UdpRepr};

/// Why a frame was rejected: the drop reason a stack counts.
///
/// Use it as a counter index: `counters[err.index()] += 1`, with an array of
/// [`Error::COUNT`] entries, and [`Error::name`] to label them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header, or than a length field says.
    Truncated,
    /// The IP version field is not the expected one.
    BadVersion,
    /// A header-length field is impossible (IPv4 IHL < 5, TCP data offset < 5).
    BadHeaderLen,
    /// The IPv4 total length is smaller than the header.
    BadTotalLen,
    /// Another length field is impossible (UDP length, an IPv6 extension
    /// header running past the payload, an ICMP body of the wrong size).
    BadLength,
    /// The checksum does not verify.
    BadChecksum,
    /// A malformed option (TCP option length, zero-length NDP option, ...).
    BadOption,
    /// A code or reserved field has a value the RFC forbids.
    BadField,
    /// Well-formed, but of a kind this stack does not handle (ARP for a
    /// non-Ethernet/IPv4 pair, more than two VLAN tags, ...).
    Unsupported,
    /// The IPv6 extension-header chain is longer than the walk allows.
    TooManyExtHeaders,
}

impl Error {
    /// Number of variants: the length of a drop-counter array.
    pub const COUNT: usize = 10;

    /// Every variant, in [`Error::index`] order.
    pub const ALL: [Error; Error::COUNT] = [
        Error::Truncated,
        Error::BadVersion,
        Error::BadHeaderLen,
        Error::BadTotalLen,
        Error::BadLength,
        Error::BadChecksum,
        Error::BadOption,
        Error::BadField,
        Error::Unsupported,
        Error::TooManyExtHeaders,
    ];

    /// A dense index in `0..Error::COUNT`.
    pub fn index(self) -> usize {
        match self {
            Error::Truncated => 0,
            Error::BadVersion => 1,
            Error::BadHeaderLen => 2,
            Error::BadTotalLen => 3,
            Error::BadLength => 4,
            Error::BadChecksum => 5,
            Error::BadOption => 6,
            Error::BadField => 7,
            Error::Unsupported => 8,
            Error::TooManyExtHeaders => 9,
        }
    }

    /// A stable snake_case name, for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            Error::Truncated => "truncated",
            Error::BadVersion => "bad_version",
            Error::BadHeaderLen => "bad_header_len",
            Error::BadTotalLen => "bad_total_len",
            Error::BadLength => "bad_length",
            Error::BadChecksum => "bad_checksum",
            Error::BadOption => "bad_option",
            Error::BadField => "bad_field",
            Error::Unsupported => "unsupported",
            Error::TooManyExtHeaders => "too_many_ext_headers",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for Error {}

/// Result type of the wire module.
pub type Result<T> = core::result::Result<T, Error>;

/// IP protocol numbers / IPv6 next-header values (IANA registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// IPv6 Hop-by-Hop Options (0).
    HopByHop,
    /// ICMP for IPv4 (1).
    Icmp,
    /// IGMP (2).
    Igmp,
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// IPv6 Routing header (43).
    Ipv6Route,
    /// IPv6 Fragment header (44).
    Ipv6Frag,
    /// Encapsulating Security Payload (50).
    Esp,
    /// Authentication Header (51).
    Ah,
    /// ICMP for IPv6 (58).
    Icmpv6,
    /// IPv6 No Next Header (59).
    Ipv6NoNxt,
    /// IPv6 Destination Options (60).
    Ipv6Opts,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(v: u8) -> Self {
        match v {
            0 => IpProtocol::HopByHop,
            1 => IpProtocol::Icmp,
            2 => IpProtocol::Igmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            43 => IpProtocol::Ipv6Route,
            44 => IpProtocol::Ipv6Frag,
            50 => IpProtocol::Esp,
            51 => IpProtocol::Ah,
            58 => IpProtocol::Icmpv6,
            59 => IpProtocol::Ipv6NoNxt,
            60 => IpProtocol::Ipv6Opts,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(p: IpProtocol) -> u8 {
        match p {
            IpProtocol::HopByHop => 0,
            IpProtocol::Icmp => 1,
            IpProtocol::Igmp => 2,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Ipv6Route => 43,
            IpProtocol::Ipv6Frag => 44,
            IpProtocol::Esp => 50,
            IpProtocol::Ah => 51,
            IpProtocol::Icmpv6 => 58,
            IpProtocol::Ipv6NoNxt => 59,
            IpProtocol::Ipv6Opts => 60,
            IpProtocol::Unknown(v) => v,
        }
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpProtocol::Unknown(v) => write!(f, "ip-proto-{v}"),
            p => write!(f, "{p:?}"),
        }
    }
}

/// Source and destination of an IP packet, of one family: what an upper
/// layer needs for its pseudo-header checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpPair {
    /// IPv4 source and destination.
    V4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
    },
    /// IPv6 source and destination.
    V6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
    },
}

impl IpPair {
    /// The pseudo-header sum (not complemented) for `protocol` and an
    /// upper-layer length of `len` bytes.
    pub fn pseudo_header_sum(&self, protocol: IpProtocol, len: usize) -> u16 {
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        match self {
            IpPair::V4 { src, dst } => checksum::pseudo_header_v4(src, dst, protocol.into(), len),
            IpPair::V6 { src, dst } => checksum::pseudo_header_v6(src, dst, protocol.into(), len),
        }
    }

    /// True for IPv6.
    pub fn is_v6(&self) -> bool {
        matches!(self, IpPair::V6 { .. })
    }
}

/// Who computes a checksum for one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChecksumMode {
    /// In software: `parse` verifies, `emit` fills the field.
    #[default]
    Software,
    /// The NIC does it: `parse` trusts that the NIC verified (and dropped
    /// bad packets), `emit` writes what the NIC expects to complete: zero for
    /// the IPv4 header, the pseudo-header sum for UDP/TCP (the convention
    /// of DPDK's `RTE_MBUF_F_TX_*_CKSUM` and virtio's `NEEDS_CSUM`).
    Offloaded,
}

/// Checksum modes per protocol, chosen from the port's offload capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChecksumCaps {
    /// The IPv4 header checksum.
    pub ipv4: ChecksumMode,
    /// UDP.
    pub udp: ChecksumMode,
    /// TCP.
    pub tcp: ChecksumMode,
    /// ICMPv4 and ICMPv6.
    pub icmp: ChecksumMode,
}

impl ChecksumCaps {
    /// Everything in software (the default).
    pub const fn software() -> Self {
        ChecksumCaps {
            ipv4: ChecksumMode::Software,
            udp: ChecksumMode::Software,
            tcp: ChecksumMode::Software,
            icmp: ChecksumMode::Software,
        }
    }

    /// Everything offloaded to the NIC (ICMP too).
    pub const fn offloaded() -> Self {
        ChecksumCaps {
            ipv4: ChecksumMode::Offloaded,
            udp: ChecksumMode::Offloaded,
            tcp: ChecksumMode::Offloaded,
            icmp: ChecksumMode::Offloaded,
        }
    }
}

/// Reads a big-endian u16 at `at`; callers have checked the length.
#[inline(always)]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads a big-endian u32 at `at`; callers have checked the length.
#[inline(always)]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Writes a big-endian u16 at `at`.
#[inline(always)]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes a big-endian u32 at `at`.
#[inline(always)]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_indices_are_dense_and_names_unique() {
        let mut seen = [false; Error::COUNT];
        let mut names = std::collections::HashSet::new();
        for e in Error::ALL {
            assert!(!seen[e.index()]);
            seen[e.index()] = true;
            assert!(names.insert(e.name()));
            assert_eq!(e.to_string(), e.name());
        }
        assert!(seen.iter().all(|&s| s));
        for (i, e) in Error::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
    }

    #[test]
    fn ip_protocol_round_trips() {
        for v in 0..=255u8 {
            assert_eq!(u8::from(IpProtocol::from(v)), v);
        }
    }
}
