//! IPv4 (RFC 791).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-------+-------+-----------+---+-------------------------------+
//! |Version|  IHL  |   DSCP    |ECN|          Total Length         |
//! +-------+-------+-----------+---+-----+-------------------------+
//! |         Identification        |Flags|     Fragment Offset     |
//! +---------------+---------------+-----+-------------------------+
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! +---------------+---------------+-------------------------------+
//! |                       Source Address                          |
//! |                    Destination Address                        |
//! |                    Options (IHL > 5)                          |
//! +---------------------------------------------------------------+
//! ```
//!
//! Options are not interpreted: they are skipped by IHL. The payload is
//! bounded by Total Length, so Ethernet padding after the datagram is ignored.

use std::fmt;
use std::net::Ipv4Addr;

use super::{be16, check_declared_len, put16, ChecksumCaps, ChecksumMode, Error, IpProtocol, Result};
use crate::checksum;

mod field {
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: core::ops::Range<usize> = 12..16;
    pub const DST: core::ops::Range<usize> = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Largest header (IHL = 15).
pub const MAX_HEADER_LEN: usize = 60;

view! {
    /// A view of an IPv4 packet.
    Ipv4Packet
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks that the fixed header, the IHL-sized header and Total Length
    /// all fit in the buffer: `Truncated` if the buffer is short,
    /// `BadHeaderLen` if IHL < 5 (RFC 791 §3.1), `BadTotalLen` if Total
    /// Length is below the header length. The version is checked by
    /// [`Ipv4Repr::parse`].
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        let hl = check_declared_len(len, HEADER_LEN, || self.header_len(), Error::BadHeaderLen)?;
        check_declared_len(len, hl, || usize::from(self.total_len()), Error::BadTotalLen)?;
        Ok(())
    }

    /// Version field (4 for IPv4).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated services code point.
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    /// Explicit congestion notification bits.
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x03
    }

    /// Total length (header + payload).
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TOTAL_LEN)
    }

    /// Identification.
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    /// Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG) & 0x4000 != 0
    }

    /// More Fragments flag.
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG) & 0x2000 != 0
    }

    /// Fragment offset in bytes (the field × 8).
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buffer.as_ref(), field::FLAGS_FRAG) & 0x1fff) << 3
    }

    /// True if this is a fragment (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    pub fn protocol(&self) -> IpProtocol {
        self.buffer.as_ref()[field::PROTOCOL].into()
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// The options bytes (empty when IHL = 5).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// True if the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.buffer.as_ref()[..self.header_len()]) == 0
    }

    /// The payload: from the end of the header to Total Length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length in bytes (a multiple of 4).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets DSCP and ECN.
    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = (dscp << 2) | (ecn & 3);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::TOTAL_LEN, v);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::IDENT, v);
    }

    /// Sets DF, MF and the fragment offset in bytes (must be a multiple of 8).
    pub fn set_flags_frag(&mut self, dont_frag: bool, more_frags: bool, frag_offset: u16) {
        let v = (u16::from(dont_frag) << 14) | (u16::from(more_frags) << 13) | (frag_offset >> 3);
        put16(self.buffer.as_mut(), field::FLAGS_FRAG, v);
    }

    /// Sets the TTL.
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    /// Sets the protocol.
    pub fn set_protocol(&mut self, v: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = v.into();
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// Computes and writes the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = checksum::checksum(&self.buffer.as_ref()[..hl]);
        self.set_checksum(c);
    }

    /// Decrements the TTL and patches the checksum incrementally (RFC 1624),
    /// as a forwarder does. Returns the new TTL.
    pub fn decrement_ttl(&mut self) -> u8 {
        let b = self.buffer.as_ref();
        let old = be16(b, field::TTL);
        let ttl = b[field::TTL].saturating_sub(1);
        let new = (u16::from(ttl) << 8) | (old & 0xff);
        let c = checksum::update_u16(self.checksum(), old, new);
        self.set_ttl(ttl);
        self.set_checksum(c);
        ttl
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (s, e) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[s..e]
    }
}

/// An IPv4 header as values. Options are skipped on parse and not emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol.
    pub protocol: IpProtocol,
    /// Payload length in bytes (Total Length − header length).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP (6 bits).
    pub dscp: u8,
    /// ECN (2 bits).
    pub ecn: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
    /// More Fragments.
    pub more_frags: bool,
    /// Fragment offset in bytes.
    pub frag_offset: u16,
}

impl Ipv4Repr {
    /// A non-fragmented datagram with DF set, DSCP/ECN 0, ident 0.
    pub fn new(src_addr: Ipv4Addr, dst_addr: Ipv4Addr, protocol: IpProtocol, payload_len: usize, ttl: u8) -> Self {
        Ipv4Repr {
            src_addr,
            dst_addr,
            protocol,
            payload_len,
            ttl,
            dscp: 0,
            ecn: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
    }

    /// Parses and validates: lengths, version (`BadVersion`), and the header
    /// checksum when `caps.ipv4` is software (`BadChecksum`).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Ipv4Packet<&T>, caps: &ChecksumCaps) -> Result<Ipv4Repr> {
        if p.buffer.as_ref().is_empty() {
            return Err(Error::Truncated);
        }
        if p.version() != 4 {
            return Err(Error::BadVersion);
        }
        p.check_len()?;
        if caps.ipv4 == ChecksumMode::Software && !p.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        Ok(Ipv4Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: usize::from(p.total_len()) - p.header_len(),
            ttl: p.ttl(),
            dscp: p.dscp(),
            ecn: p.ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            more_frags: p.more_frags(),
            frag_offset: p.frag_offset(),
        })
    }

    /// True if this is a fragment.
    pub fn is_fragment(&self) -> bool {
        self.more_frags || self.frag_offset != 0
    }

    /// The emitted header length (20: no options).
    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the header (not the payload). The buffer must be at least
    /// [`header_len`](Self::header_len) bytes; `payload_len` must fit in
    /// Total Length (at most 65515).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, p: &mut Ipv4Packet<&mut T>, caps: &ChecksumCaps) {
        p.set_version_and_header_len(HEADER_LEN);
        p.set_dscp_ecn(self.dscp, self.ecn);
        p.set_total_len(u16::try_from(self.buffer_len()).unwrap_or(u16::MAX));
        p.set_ident(self.ident);
        p.set_flags_frag(self.dont_frag, self.more_frags, self.frag_offset);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        match caps.ipv4 {
            ChecksumMode::Software => p.fill_checksum(),
            ChecksumMode::Offloaded => p.set_checksum(0),
        }
    }
}

impl fmt::Display for Ipv4Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IPv4 {} > {} {} len {} ttl {}",
            self.src_addr, self.dst_addr, self.protocol, self.payload_len, self.ttl
        )
    }
}

/// An IPv4 address with a prefix length, e.g. `198.18.0.1/15`.
pub type Ipv4Cidr = super::cidr::Cidr<Ipv4Addr>;

impl Ipv4Cidr {
    /// The netmask, e.g. 255.254.0.0 for /15.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_bits() as u32)
    }

    /// The directed broadcast address (all host bits set); `None` for /31
    /// and /32, which have none (RFC 3021).
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        if self.prefix_len() >= 31 {
            None
        } else {
            Some(Ipv4Addr::from(u32::from(self.address()) | !(self.mask_bits() as u32)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SW: ChecksumCaps = ChecksumCaps::software();

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(198, 18, 0, 1),
            dst_addr: Ipv4Addr::new(198, 18, 0, 2),
            protocol: IpProtocol::Icmp,
            payload_len: 4,
            ttl: 64,
            dscp: 46,
            ecn: 1,
            ident: 0x3013,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        }
    }

    fn emitted(r: &Ipv4Repr) -> Vec<u8> {
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut buf), &SW);
        buf
    }

    #[test]
    fn rfc791_3_1_round_trip() {
        let r = repr();
        let mut buf = emitted(&r);
        buf[20..].copy_from_slice(b"ping");
        let p = Ipv4Packet::new_checked(&buf).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&p, &SW), Ok(r));
        assert_eq!(p.payload(), b"ping");
        assert_eq!(buf[0], 0x45);
        assert_eq!(buf[1], (46 << 2) | 1);
    }

    #[test]
    fn rfc791_ihl_below_5_is_rejected() {
        let mut buf = emitted(&repr());
        buf[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&buf).err(), Some(Error::BadHeaderLen));
        assert_eq!(Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&buf), &SW), Err(Error::BadHeaderLen));
    }

    #[test]
    fn rfc791_version_not_4_is_rejected() {
        let mut buf = emitted(&repr());
        buf[0] = 0x65;
        assert_eq!(Ipv4Repr::parse(&Ipv4Packet::new_unchecked(&buf), &SW), Err(Error::BadVersion));
    }

    #[test]
    fn rfc791_total_length_below_header_or_beyond_buffer() {
        let mut buf = emitted(&repr());
        buf[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&buf).err(), Some(Error::BadTotalLen));
        buf[2..4].copy_from_slice(&25u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&buf).err(), Some(Error::Truncated));
        assert_eq!(Ipv4Packet::new_checked(&buf[..19]).err(), Some(Error::Truncated));
    }

    #[test]
    fn rfc791_options_skipped_by_ihl() {
        // IHL 6: one 4-byte option word (NOP NOP NOP EOL), then payload.
        let r = repr();
        let mut buf = vec![0u8; 28];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut buf), &SW);
        buf[0] = 0x46;
        buf[2..4].copy_from_slice(&28u16.to_be_bytes());
        buf[20..24].copy_from_slice(&[1, 1, 1, 0]);
        buf[24..28].copy_from_slice(b"data");
        let mut p = Ipv4Packet::new_unchecked(&mut buf);
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&buf).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), b"data");
        assert_eq!(Ipv4Repr::parse(&p, &SW).unwrap().payload_len, 4);
        // IHL beyond the buffer.
        let mut short = buf[..22].to_vec();
        short[2..4].copy_from_slice(&22u16.to_be_bytes());
        assert_eq!(Ipv4Packet::new_checked(&short).err(), Some(Error::Truncated));
    }

    #[test]
    fn rfc791_3_1_header_checksum_verified() {
        let mut buf = emitted(&repr());
        buf[8] ^= 1;
        let p = Ipv4Packet::new_checked(&buf).unwrap();
        assert_eq!(Ipv4Repr::parse(&p, &SW), Err(Error::BadChecksum));
        assert!(Ipv4Repr::parse(&p, &ChecksumCaps::offloaded()).is_ok());
    }

    #[test]
    fn rfc791_fragment_fields() {
        let mut r = repr();
        r.dont_frag = false;
        r.more_frags = true;
        r.frag_offset = 1480;
        let buf = emitted(&r);
        let p = Ipv4Packet::new_checked(&buf).unwrap();
        assert!(p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        assert_eq!(Ipv4Repr::parse(&p, &SW), Ok(r));
    }

    #[test]
    fn rfc1624_ttl_decrement_keeps_checksum_valid() {
        let mut buf = emitted(&repr());
        let mut p = Ipv4Packet::new_unchecked(&mut buf);
        assert_eq!(p.decrement_ttl(), 63);
        let p = Ipv4Packet::new_checked(&buf).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.ttl(), 63);
    }

    #[test]
    fn offloaded_emit_leaves_zero_checksum() {
        let r = repr();
        let mut buf = vec![0xffu8; r.buffer_len()];
        r.emit(&mut Ipv4Packet::new_unchecked(&mut buf), &ChecksumCaps::offloaded());
        assert_eq!(&buf[10..12], &[0, 0]);
    }

    #[test]
    fn cidr() {
        let c: Ipv4Cidr = "198.18.0.1/15".parse().unwrap();
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 254, 0, 0));
        assert_eq!(c.network().to_string(), "198.18.0.0/15");
        assert!(c.contains(&Ipv4Addr::new(198, 19, 255, 255)));
        assert!(!c.contains(&Ipv4Addr::new(198, 20, 0, 0)));
        assert_eq!(c.broadcast(), Some(Ipv4Addr::new(198, 19, 255, 255)));
        assert!(c.contains_subnet(&"198.18.5.0/24".parse().unwrap()));
        assert!(!c.contains_subnet(&"198.0.0.0/8".parse().unwrap()));
        let all = Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0).unwrap();
        assert!(all.contains(&Ipv4Addr::new(1, 2, 3, 4)));
        assert!(Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 33).is_none());
        for bad in ["198.18.0.1", "198.18.0.1/33", "198.18.0.1/", "x/8", "198.18.0.1/+8"] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
        assert_eq!(Ipv4Cidr::new(Ipv4Addr::new(198, 18, 0, 1), 31).unwrap().broadcast(), None);
    }
}
