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

use super::{be16, put16, Error, Result};

pub use pmd::MacAddr;

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

view! {
    /// A view of an Ethernet II frame (the untagged 14-byte header).
    EthernetFrame
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// `Err(Truncated)` if the buffer is shorter than the header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < field::HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Destination address.
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::DST]).expect("6 bytes")
    }

    /// Source address.
    pub fn src_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SRC]).expect("6 bytes")
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
    pub fn set_dst_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: MacAddr) {
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

view! {
    /// A view of one 4-byte VLAN tag: TCI then the next EtherType.
    VlanHeader
}

impl<T: AsRef<[u8]>> VlanHeader<T> {
    /// `Err(Truncated)` if the 4-byte tag does not fit.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < field::VLAN_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
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
    pub src_addr: MacAddr,
    /// Destination address.
    pub dst_addr: MacAddr,
    /// VLAN tags, outermost first; `None`s come after all `Some`s.
    pub vlans: [Option<VlanTag>; MAX_VLAN_TAGS],
    /// The EtherType of the payload (after all tags).
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// An untagged header.
    pub fn new(src_addr: MacAddr, dst_addr: MacAddr, ethertype: EtherType) -> Self {
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

    const SRC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
    const DST: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 2]);

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
