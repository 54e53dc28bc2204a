//! Ethernet II frames (IEEE 802.3 with EtherType) and 802.1Q / 802.1ad VLAN
//! tags.
//!
//! ```text
//!  0      6      12        14
//! +------+------+---------+----------
//! | dst  | src  | type    | payload        untagged
//! +------+------+---------+----------
//! | dst  | src  | 0x8100  | TCI | type | payload     802.1Q (one tag)
//! | dst  | src  | 0x88a8  | TCI | 0x8100 | TCI | type | payload   QinQ
//! ```
//!
//! The frame check sequence is not part of the buffer (NICs strip it).

use std::fmt;
use std::str::FromStr;

use super::{be16, put16, Error, Result};

/// A 48-bit IEEE MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);
    /// 00:00:00:00:00:00.
    pub const UNSPECIFIED: EthernetAddress = EthernetAddress([0; 6]);

    /// From a slice of exactly six bytes.
    pub fn from_bytes(b: &[u8]) -> Option<EthernetAddress> {
        <[u8; 6]>::try_from(b).ok().map(EthernetAddress)
    }

    /// The six bytes.
    pub fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// The broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// Group bit set (multicast, including broadcast).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
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
    pub fn ipv6_multicast(addr: &std::net::Ipv6Addr) -> EthernetAddress {
        let o = addr.octets();
        EthernetAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
    }

    /// The multicast MAC for an IPv4 multicast address (RFC 1112 §6.4):
    /// 01:00:5e followed by the low 23 bits.
    pub fn ipv4_multicast(addr: &std::net::Ipv4Addr) -> EthernetAddress {
        let o = addr.octets();
        EthernetAddress([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

/// Error from parsing an [`EthernetAddress`] string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseEthernetAddressError;

impl fmt::Display for ParseEthernetAddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid MAC address: want six hex bytes separated by ':' or '-'")
    }
}

impl std::error::Error for ParseEthernetAddressError {}

impl FromStr for EthernetAddress {
    type Err = ParseEthernetAddressError;

    /// Parses `02:00:00:00:00:01` or `02-00-00-00-00-01` (one separator
    /// style throughout, two hex digits per byte).
    fn from_str(s: &str) -> core::result::Result<Self, Self::Err> {
        let sep = if s.contains(':') { ':' } else { '-' };
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(sep) {
            if n == 6 || part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(ParseEthernetAddressError);
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| ParseEthernetAddressError)?;
            n += 1;
        }
        if n != 6 {
            return Err(ParseEthernetAddressError);
        }
        Ok(EthernetAddress(out))
    }
}

/// EtherType values this stack knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// IPv4 (0x0800).
    Ipv4,
    /// ARP (0x0806).
    Arp,
    /// 802.1Q customer VLAN tag (0x8100).
    Vlan,
    /// IPv6 (0x86dd).
    Ipv6,
    /// 802.1ad service VLAN tag, "QinQ" (0x88a8).
    QinQ,
    /// Any other value.
    Unknown(u16),
}

impl EtherType {
    /// True for the TPIDs that introduce a VLAN tag.
    pub fn is_vlan(self) -> bool {
        matches!(self, EtherType::Vlan | EtherType::QinQ)
    }
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        match v {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x8100 => EtherType::Vlan,
            0x86dd => EtherType::Ipv6,
            0x88a8 => EtherType::QinQ,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(t: EtherType) -> u16 {
        match t {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Vlan => 0x8100,
            EtherType::Ipv6 => 0x86dd,
            EtherType::QinQ => 0x88a8,
            EtherType::Unknown(v) => v,
        }
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtherType::Unknown(v) => write!(f, "0x{v:04x}"),
            t => write!(f, "{t:?}"),
        }
    }
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const HEADER_LEN: usize = 14;
    pub const VLAN_TCI: usize = 0;
    pub const VLAN_ETHERTYPE: usize = 2;
    pub const VLAN_LEN: usize = 4;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = field::HEADER_LEN;
/// Length of one VLAN tag.
pub const VLAN_TAG_LEN: usize = field::VLAN_LEN;
/// How many stacked VLAN tags [`EthernetRepr`] walks (one, or QinQ).
pub const MAX_VLAN_TAGS: usize = 2;

/// A view of an Ethernet II frame (the untagged 14-byte header).
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps without checking the length.
    pub fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wraps, checking that the header fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// `Err(Truncated)` if the buffer is shorter than the header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < field::HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination address.
    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::DST]).expect("6 bytes")
    }

    /// Source address.
    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SRC]).expect("6 bytes")
    }

    /// The EtherType (or the TPID of the first VLAN tag).
    pub fn ethertype(&self) -> EtherType {
        be16(self.buffer.as_ref(), field::ETHERTYPE).into()
    }

    /// Everything after the 14-byte header (VLAN tags included, if any).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: EthernetAddress) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, t: EtherType) {
        put16(self.buffer.as_mut(), field::ETHERTYPE, t.into());
    }

    /// Everything after the 14-byte header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::HEADER_LEN..]
    }
}

/// A view of one 4-byte VLAN tag: TCI then the next EtherType.
#[derive(Debug, Clone)]
pub struct VlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanHeader<T> {
    /// Wraps without checking the length.
    pub fn new_unchecked(buffer: T) -> Self {
        VlanHeader { buffer }
    }

    /// Wraps, checking that the tag fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < field::VLAN_LEN {
            return Err(Error::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole Tag Control Information field.
    pub fn tci(&self) -> u16 {
        be16(self.buffer.as_ref(), field::VLAN_TCI)
    }

    /// Priority code point (3 bits).
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier (12 bits).
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// The EtherType that follows the tag.
    pub fn ethertype(&self) -> EtherType {
        be16(self.buffer.as_ref(), field::VLAN_ETHERTYPE).into()
    }

    /// Everything after the tag.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::VLAN_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanHeader<T> {
    /// Sets the whole TCI.
    pub fn set_tci(&mut self, tci: u16) {
        put16(self.buffer.as_mut(), field::VLAN_TCI, tci);
    }

    /// Sets the EtherType that follows the tag.
    pub fn set_ethertype(&mut self, t: EtherType) {
        put16(self.buffer.as_mut(), field::VLAN_ETHERTYPE, t.into());
    }

    /// Everything after the tag, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::VLAN_LEN..]
    }
}

/// One VLAN tag as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// The TPID that introduced this tag ([`EtherType::Vlan`] or
    /// [`EtherType::QinQ`]).
    pub tpid: EtherType,
    /// Priority code point, 0..=7.
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier, 0..=4095.
    pub vid: u16,
}

impl VlanTag {
    /// A customer tag (TPID 0x8100) with priority 0.
    pub fn new(vid: u16) -> VlanTag {
        VlanTag { tpid: EtherType::Vlan, pcp: 0, dei: false, vid: vid & 0x0fff }
    }

    /// The TCI field value.
    pub fn tci(&self) -> u16 {
        (u16::from(self.pcp & 7) << 13) | (u16::from(self.dei) << 12) | (self.vid & 0x0fff)
    }
}

/// An Ethernet header with up to [`MAX_VLAN_TAGS`] VLAN tags, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Source address.
    pub src_addr: EthernetAddress,
    /// Destination address.
    pub dst_addr: EthernetAddress,
    /// VLAN tags, outermost first; `None`s come after all `Some`s.
    pub vlans: [Option<VlanTag>; MAX_VLAN_TAGS],
    /// The EtherType of the payload (after all tags).
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// An untagged header.
    pub fn new(src_addr: EthernetAddress, dst_addr: EthernetAddress, ethertype: EtherType) -> Self {
        EthernetRepr { src_addr, dst_addr, vlans: [None; MAX_VLAN_TAGS], ethertype }
    }

    /// Parses the header and walks VLAN tags. More than [`MAX_VLAN_TAGS`]
    /// tags is `Unsupported`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &EthernetFrame<&T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        let bytes = frame.buffer.as_ref();
        let mut repr = EthernetRepr::new(frame.src_addr(), frame.dst_addr(), frame.ethertype());
        let mut offset = field::HEADER_LEN;
        let mut n = 0;
        while repr.ethertype.is_vlan() {
            if n == MAX_VLAN_TAGS {
                return Err(Error::Unsupported);
            }
            let tag = VlanHeader::new_checked(&bytes[offset..])?;
            repr.vlans[n] = Some(VlanTag { tpid: repr.ethertype, pcp: tag.pcp(), dei: tag.dei(), vid: tag.vid() });
            repr.ethertype = tag.ethertype();
            offset += field::VLAN_LEN;
            n += 1;
        }
        Ok(repr)
    }

    /// Number of VLAN tags.
    pub fn vlan_count(&self) -> usize {
        self.vlans.iter().filter(|v| v.is_some()).count()
    }

    /// The innermost VLAN ID, if tagged.
    pub fn vid(&self) -> Option<u16> {
        self.vlans.iter().rev().flatten().next().map(|t| t.vid)
    }

    /// Length of the header including tags.
    pub fn header_len(&self) -> usize {
        field::HEADER_LEN + field::VLAN_LEN * self.vlan_count()
    }

    /// Same as [`header_len`](Self::header_len): the bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        self.header_len()
    }

    /// The payload of a frame this header was parsed from (after all tags).
    pub fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        frame.get(self.header_len()..).unwrap_or(&[])
    }

    /// Writes the header and tags. The frame must be at least
    /// [`header_len`](Self::header_len) bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, frame: &mut EthernetFrame<&mut T>) {
        frame.set_src_addr(self.src_addr);
        frame.set_dst_addr(self.dst_addr);
        let mut tags = self.vlans.iter().flatten();
        let Some(first) = tags.next() else {
            frame.set_ethertype(self.ethertype);
            return;
        };
        frame.set_ethertype(first.tpid);
        let bytes = frame.buffer.as_mut();
        let mut offset = field::HEADER_LEN;
        let mut cur = first;
        loop {
            let mut h = VlanHeader::new_unchecked(&mut bytes[offset..offset + field::VLAN_LEN]);
            h.set_tci(cur.tci());
            match tags.next() {
                Some(next) => {
                    h.set_ethertype(next.tpid);
                    cur = next;
                    offset += field::VLAN_LEN;
                }
                None => {
                    h.set_ethertype(self.ethertype);
                    return;
                }
            }
        }
    }
}

impl fmt::Display for EthernetRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} > {}", self.src_addr, self.dst_addr)?;
        for t in self.vlans.iter().flatten() {
            write!(f, " vlan {}", t.vid)?;
        }
        write!(f, " {}", self.ethertype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
    const DST: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);

    #[test]
    fn address_display_and_parse() {
        assert_eq!(SRC.to_string(), "02:00:00:00:00:01");
        assert_eq!("02:00:00:00:00:01".parse::<EthernetAddress>(), Ok(SRC));
        assert_eq!("02-00-00-00-00-01".parse::<EthernetAddress>(), Ok(SRC));
        assert_eq!("FF:ff:FF:ff:FF:ff".parse(), Ok(EthernetAddress::BROADCAST));
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:01:03",
            "2:00:00:00:00:01",
            "zz:00:00:00:00:01",
            "02:00-00:00:00:01",
            "+2:00:00:00:00:01",
        ] {
            assert!(bad.parse::<EthernetAddress>().is_err(), "{bad}");
        }
        assert!(EthernetAddress::BROADCAST.is_broadcast());
        assert!(EthernetAddress::BROADCAST.is_multicast());
        assert!(SRC.is_unicast() && SRC.is_local());
        assert_eq!(
            EthernetAddress::ipv6_multicast(&"ff02::1:ff00:2".parse().unwrap()),
            EthernetAddress([0x33, 0x33, 0xff, 0, 0, 2])
        );
        assert_eq!(
            EthernetAddress::ipv4_multicast(&"224.129.2.3".parse().unwrap()),
            EthernetAddress([1, 0, 0x5e, 1, 2, 3])
        );
    }

    #[test]
    fn untagged_round_trip() {
        let repr = EthernetRepr::new(SRC, DST, EtherType::Ipv4);
        let mut buf = vec![0u8; repr.buffer_len() + 3];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut buf));
        assert_eq!(&buf[12..14], &[0x08, 0x00]);
        let frame = EthernetFrame::new_checked(&buf).unwrap();
        assert_eq!(EthernetRepr::parse(&frame), Ok(repr));
        assert_eq!(repr.payload(&buf).len(), 3);
        assert_eq!(frame.payload().len(), 3);
    }

    #[test]
    fn ieee8021q_single_tag() {
        let mut repr = EthernetRepr::new(SRC, DST, EtherType::Ipv6);
        repr.vlans[0] = Some(VlanTag { tpid: EtherType::Vlan, pcp: 5, dei: true, vid: 100 });
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut buf));
        assert_eq!(&buf[12..18], &[0x81, 0x00, 0xb0, 0x64, 0x86, 0xdd]);
        let parsed = EthernetRepr::parse(&EthernetFrame::new_checked(&buf).unwrap()).unwrap();
        assert_eq!(parsed, repr);
        assert_eq!(parsed.header_len(), 18);
        assert_eq!(parsed.vid(), Some(100));
    }

    #[test]
    fn ieee8021ad_qinq_walked() {
        let mut repr = EthernetRepr::new(SRC, DST, EtherType::Arp);
        repr.vlans = [Some(VlanTag { tpid: EtherType::QinQ, pcp: 0, dei: false, vid: 7 }), Some(VlanTag::new(42))];
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut EthernetFrame::new_unchecked(&mut buf));
        assert_eq!(&buf[12..22], &[0x88, 0xa8, 0, 7, 0x81, 0, 0, 42, 0x08, 0x06]);
        let parsed = EthernetRepr::parse(&EthernetFrame::new_checked(&buf).unwrap()).unwrap();
        assert_eq!(parsed, repr);
        assert_eq!(parsed.vid(), Some(42));
        assert_eq!(parsed.header_len(), 22);
    }

    #[test]
    fn three_tags_unsupported_and_truncated_tag() {
        let mut buf = vec![0u8; 14 + 12 + 2];
        buf[12..14].copy_from_slice(&[0x88, 0xa8]);
        buf[16..18].copy_from_slice(&[0x81, 0x00]);
        buf[20..22].copy_from_slice(&[0x81, 0x00]);
        let f = EthernetFrame::new_checked(&buf).unwrap();
        assert_eq!(EthernetRepr::parse(&f), Err(Error::Unsupported));
        let f = EthernetFrame::new_checked(&buf[..16]).unwrap();
        assert_eq!(EthernetRepr::parse(&f), Err(Error::Truncated));
        assert!(EthernetFrame::new_checked(&buf[..13]).is_err());
    }
}
