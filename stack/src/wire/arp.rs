//! ARP (RFC 826) for Ethernet hardware and IPv4 protocol addresses only.
//!
//! ```text
//!  0       2       4    5    6       8        14       18       24       28
//! +-------+-------+----+----+-------+--------+--------+--------+--------+
//! | htype | ptype |hlen|plen| oper  |  sha   |  spa   |  tha   |  tpa   |
//! +-------+-------+----+----+-------+--------+--------+--------+--------+
//! ```

use std::fmt;
use std::net::Ipv4Addr;

use super::{be16, put16, Error, EtherType, MacAddr, Result};

/// ARP hardware type for Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    /// Fixed part before the addresses.
    pub const FIXED: usize = 8;
}

/// ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// Request (1).
    Request,
    /// Reply (2).
    Reply,
    /// Anything else (RARP, InARP, ...).
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(v: u16) -> Self {
        match v {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            o => ArpOperation::Unknown(o),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(o: ArpOperation) -> u16 {
        match o {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(v) => v,
        }
    }
}

view! {
    /// A view of an ARP packet. Address getters assume the Ethernet/IPv4 layout
    /// (6-byte hardware, 4-byte protocol addresses); `new_checked` guarantees the
    /// buffer holds the addresses its length fields describe.
    ArpPacket
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// `Err(Truncated)` unless the buffer holds the fixed part and the four
    /// addresses of the sizes given by `hlen`/`plen`.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < field::FIXED {
            return Err(Error::Truncated);
        }
        let need = field::FIXED + 2 * (usize::from(self.hlen()) + usize::from(self.plen()));
        if b.len() < need {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Hardware type.
    pub fn htype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (an EtherType).
    pub fn ptype(&self) -> EtherType {
        be16(self.buffer.as_ref(), field::PTYPE).into()
    }

    /// Hardware address length.
    pub fn hlen(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length.
    pub fn plen(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation.
    pub fn operation(&self) -> ArpOperation {
        be16(self.buffer.as_ref(), field::OPER).into()
    }

    fn sha_at(&self) -> usize {
        field::FIXED
    }
    fn spa_at(&self) -> usize {
        self.sha_at() + usize::from(self.hlen())
    }
    fn tha_at(&self) -> usize {
        self.spa_at() + usize::from(self.plen())
    }
    fn tpa_at(&self) -> usize {
        self.tha_at() + usize::from(self.hlen())
    }

    /// Sender hardware address (raw bytes, `hlen` long).
    pub fn source_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.sha_at()..self.spa_at()]
    }

    /// Sender protocol address (raw bytes, `plen` long).
    pub fn source_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.spa_at()..self.tha_at()]
    }

    /// Target hardware address (raw bytes).
    pub fn target_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.tha_at()..self.tpa_at()]
    }

    /// Target protocol address (raw bytes).
    pub fn target_protocol_addr(&self) -> &[u8] {
        let at = self.tpa_at();
        &self.buffer.as_ref()[at..at + usize::from(self.plen())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Sets the hardware type.
    pub fn set_htype(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::HTYPE, v);
    }

    /// Sets the protocol type.
    pub fn set_ptype(&mut self, v: EtherType) {
        put16(self.buffer.as_mut(), field::PTYPE, v.into());
    }

    /// Sets the hardware address length.
    pub fn set_hlen(&mut self, v: u8) {
        self.buffer.as_mut()[field::HLEN] = v;
    }

    /// Sets the protocol address length.
    pub fn set_plen(&mut self, v: u8) {
        self.buffer.as_mut()[field::PLEN] = v;
    }

    /// Sets the operation.
    pub fn set_operation(&mut self, v: ArpOperation) {
        put16(self.buffer.as_mut(), field::OPER, v.into());
    }

    /// Sets the sender hardware address (`hlen` bytes).
    pub fn set_source_hardware_addr(&mut self, a: &[u8]) {
        let (s, e) = (self.sha_at(), self.spa_at());
        self.buffer.as_mut()[s..e].copy_from_slice(a);
    }

    /// Sets the sender protocol address (`plen` bytes).
    pub fn set_source_protocol_addr(&mut self, a: &[u8]) {
        let (s, e) = (self.spa_at(), self.tha_at());
        self.buffer.as_mut()[s..e].copy_from_slice(a);
    }

    /// Sets the target hardware address.
    pub fn set_target_hardware_addr(&mut self, a: &[u8]) {
        let (s, e) = (self.tha_at(), self.tpa_at());
        self.buffer.as_mut()[s..e].copy_from_slice(a);
    }

    /// Sets the target protocol address.
    pub fn set_target_protocol_addr(&mut self, a: &[u8]) {
        let s = self.tpa_at();
        let e = s + usize::from(self.plen());
        self.buffer.as_mut()[s..e].copy_from_slice(a);
    }
}

/// An Ethernet/IPv4 ARP packet as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request or reply.
    pub operation: ArpOperation,
    /// Sender MAC.
    pub source_hardware_addr: MacAddr,
    /// Sender IPv4 address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target MAC (zero in a request).
    pub target_hardware_addr: MacAddr,
    /// Target IPv4 address.
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    /// Parses an Ethernet/IPv4 ARP packet. Other hardware or protocol types
    /// or address lengths are `Unsupported`; an operation other than request
    /// or reply is `BadField`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &ArpPacket<&T>) -> Result<ArpRepr> {
        p.check_len()?;
        if p.htype() != HTYPE_ETHERNET || p.ptype() != EtherType::Ipv4 || p.hlen() != 6 || p.plen() != 4 {
            return Err(Error::Unsupported);
        }
        let operation = p.operation();
        if let ArpOperation::Unknown(_) = operation {
            return Err(Error::BadField);
        }
        let v4 = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        Ok(ArpRepr {
            operation,
            source_hardware_addr: MacAddr::from_bytes(p.source_hardware_addr()).ok_or(Error::Truncated)?,
            source_protocol_addr: v4(p.source_protocol_addr()),
            target_hardware_addr: MacAddr::from_bytes(p.target_hardware_addr()).ok_or(Error::Truncated)?,
            target_protocol_addr: v4(p.target_protocol_addr()),
        })
    }

    /// Always [`PACKET_LEN`] (28).
    pub fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet; the buffer must be at least 28 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, p: &mut ArpPacket<&mut T>) {
        p.set_htype(HTYPE_ETHERNET);
        p.set_ptype(EtherType::Ipv4);
        p.set_hlen(6);
        p.set_plen(4);
        p.set_operation(self.operation);
        p.set_source_hardware_addr(&self.source_hardware_addr.0);
        p.set_source_protocol_addr(&self.source_protocol_addr.octets());
        p.set_target_hardware_addr(&self.target_hardware_addr.0);
        p.set_target_protocol_addr(&self.target_protocol_addr.octets());
    }
}

impl fmt::Display for ArpRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operation {
            ArpOperation::Request => write!(
                f,
                "ARP who-has {} tell {} ({})",
                self.target_protocol_addr, self.source_protocol_addr, self.source_hardware_addr
            ),
            _ => write!(f, "ARP {} is-at {}", self.source_protocol_addr, self.source_hardware_addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            source_hardware_addr: MacAddr([2, 0, 0, 0, 0, 1]),
            source_protocol_addr: Ipv4Addr::new(198, 18, 0, 1),
            target_hardware_addr: MacAddr::UNSPECIFIED,
            target_protocol_addr: Ipv4Addr::new(198, 18, 0, 2),
        }
    }

    #[test]
    fn rfc826_request_round_trip() {
        let repr = request();
        let mut buf = [0u8; PACKET_LEN];
        repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        let p = ArpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(ArpRepr::parse(&p), Ok(repr));
        assert!(repr.to_string().contains("who-has 198.18.0.2"));
    }

    #[test]
    fn rfc826_other_hardware_or_protocol_unsupported() {
        let mut buf = [0u8; PACKET_LEN];
        request().emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
        let mut b = buf;
        b[1] = 6; // IEEE 802 hardware
        assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()), Err(Error::Unsupported));
        let mut b = buf;
        b[2..4].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()), Err(Error::Unsupported));
        let mut b = buf;
        b[7] = 3; // RARP request
        assert_eq!(ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()), Err(Error::BadField));
        assert_eq!(ArpPacket::new_checked(&buf[..27]).err(), Some(Error::Truncated));
        let mut b = buf;
        b[4] = 255; // huge hlen: the check must fail, not panic later
        assert_eq!(ArpPacket::new_checked(&b[..]).err(), Some(Error::Truncated));
    }
}
