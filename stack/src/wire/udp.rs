//! UDP (RFC 768; over IPv6, RFC 8200 §8.1).
//!
//! ```text
//! +----------------+----------------+
//! |  Source Port   |   Dest Port    |
//! +----------------+----------------+
//! |     Length     |    Checksum    |
//! +----------------+----------------+
//! ```
//!
//! The checksum covers the IPv4 or IPv6 pseudo-header ([`IpPair`]). A zero
//! checksum means "none" over IPv4 and is invalid over IPv6.

use std::fmt;

use super::{be16, check_declared_len, put16, ChecksumCaps, ChecksumMode, Error, IpPair, IpProtocol, Result};
use crate::checksum;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

view! {
    /// A view of a UDP datagram. Its length is the Length field, not the buffer
    /// length (the buffer may be longer).
    UdpPacket
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Checks lengths: `Truncated` if the buffer is shorter than 8
    /// or than Length, `BadLength` if Length < 8.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        check_declared_len(len, HEADER_LEN, || usize::from(self.len()), Error::BadLength)?;
        Ok(())
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// Length field (header + payload).
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    /// True if the Length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }

    /// The payload, bounded by Length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// Verifies the checksum over the pseudo-header and the datagram. A zero
    /// field is "no checksum" over IPv4 (accepted) and invalid over IPv6.
    pub fn verify_checksum(&self, ip: &IpPair) -> bool {
        if self.checksum() == 0 {
            return !ip.is_v6();
        }
        let l = usize::from(self.len());
        let d = &self.buffer.as_ref()[..l];
        checksum::add(ip.pseudo_header_sum(IpProtocol::Udp, l), checksum::sum(d)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 0, v);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 2, v);
    }

    /// Sets the Length field.
    pub fn set_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 4, v);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 6, v);
    }

    /// Computes and writes the checksum over the pseudo-header and Length
    /// bytes. A computed 0 is sent as 0xffff (RFC 768).
    pub fn fill_checksum(&mut self, ip: &IpPair) {
        self.set_checksum(0);
        let l = usize::from(self.len());
        let s = checksum::add(ip.pseudo_header_sum(IpProtocol::Udp, l), checksum::sum(&self.buffer.as_ref()[..l]));
        let c = !s;
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let l = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..l]
    }
}

/// A UDP header as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length.
    pub payload_len: usize,
}

impl UdpRepr {
    /// Parses and validates lengths and, when `caps.udp` is software, the
    /// checksum (`BadChecksum`; a zero checksum over IPv6 is `BadChecksum`
    /// even when offloaded, since no NIC computes it). Destination port 0 is
    /// `BadField`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &UdpPacket<&T>, ip: &IpPair, caps: &ChecksumCaps) -> Result<UdpRepr> {
        p.check_len()?;
        if p.dst_port() == 0 {
            return Err(Error::BadField);
        }
        if p.checksum() == 0 && ip.is_v6() {
            return Err(Error::BadChecksum);
        }
        if caps.udp == ChecksumMode::Software && !p.verify_checksum(ip) {
            return Err(Error::BadChecksum);
        }
        Ok(UdpRepr { src_port: p.src_port(), dst_port: p.dst_port(), payload_len: usize::from(p.len()) - HEADER_LEN })
    }

    /// 8.
    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the header. The payload must already be in place (bytes
    /// `8..8 + payload_len`): headers are prepended to data, not the other
    /// way round. With software checksums the checksum is computed; when
    /// offloaded, the pseudo-header sum is written for the NIC to complete.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        p: &mut UdpPacket<&mut T>,
        ip: &IpPair,
        caps: &ChecksumCaps,
    ) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        let len = u16::try_from(self.buffer_len()).unwrap_or(u16::MAX);
        p.set_len(len);
        match caps.udp {
            ChecksumMode::Software => p.fill_checksum(ip),
            ChecksumMode::Offloaded => p.set_checksum(ip.pseudo_header_sum(IpProtocol::Udp, usize::from(len))),
        }
    }

    /// Copies `payload` in and emits; `payload_len` is taken from it.
    pub fn emit_with_payload<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        p: &mut UdpPacket<&mut T>,
        ip: &IpPair,
        payload: &[u8],
        caps: &ChecksumCaps,
    ) {
        let repr = UdpRepr { payload_len: payload.len(), ..*self };
        p.buffer.as_mut()[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
        repr.emit(p, ip, caps);
    }
}

impl fmt::Display for UdpRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UDP {} > {} len {}", self.src_port, self.dst_port, self.payload_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SW: ChecksumCaps = ChecksumCaps::software();

    fn v4() -> IpPair {
        IpPair::V4 { src: "198.18.0.1".parse().unwrap(), dst: "198.18.0.2".parse().unwrap() }
    }

    fn v6() -> IpPair {
        IpPair::V6 { src: "2001:2::1".parse().unwrap(), dst: "2001:2::2".parse().unwrap() }
    }

    fn datagram(ip: &IpPair) -> Vec<u8> {
        let r = UdpRepr { src_port: 40000, dst_port: 5353, payload_len: 0 };
        let mut buf = vec![0u8; 8 + 9];
        r.emit_with_payload(&mut UdpPacket::new_unchecked(&mut buf), ip, b"hello udp", &SW);
        buf
    }

    #[test]
    fn rfc768_round_trip_v4_and_v6() {
        for ip in [v4(), v6()] {
            let buf = datagram(&ip);
            let p = UdpPacket::new_checked(&buf).unwrap();
            assert!(p.verify_checksum(&ip));
            let r = UdpRepr::parse(&p, &ip, &SW).unwrap();
            assert_eq!((r.src_port, r.dst_port, r.payload_len), (40000, 5353, 9));
            assert_eq!(p.payload(), b"hello udp");
        }
    }

    #[test]
    fn rfc768_checksum_covers_pseudo_header() {
        let buf = datagram(&v4());
        let other = IpPair::V4 { src: "198.18.0.3".parse().unwrap(), dst: "198.18.0.2".parse().unwrap() };
        let p = UdpPacket::new_checked(&buf).unwrap();
        assert_eq!(UdpRepr::parse(&p, &other, &SW), Err(Error::BadChecksum));
        let mut bad = buf.clone();
        bad[10] ^= 0x20;
        let p = UdpPacket::new_checked(&bad).unwrap();
        assert_eq!(UdpRepr::parse(&p, &v4(), &SW), Err(Error::BadChecksum));
        assert!(UdpRepr::parse(&p, &v4(), &ChecksumCaps::offloaded()).is_ok());
    }

    #[test]
    fn rfc768_zero_checksum_means_none_on_ipv4() {
        let mut buf = datagram(&v4());
        buf[6..8].copy_from_slice(&[0, 0]);
        let p = UdpPacket::new_checked(&buf).unwrap();
        assert!(UdpRepr::parse(&p, &v4(), &SW).is_ok());
    }

    #[test]
    fn rfc8200_8_1_zero_checksum_invalid_on_ipv6() {
        let mut buf = datagram(&v6());
        buf[6..8].copy_from_slice(&[0, 0]);
        let p = UdpPacket::new_checked(&buf).unwrap();
        assert_eq!(UdpRepr::parse(&p, &v6(), &SW), Err(Error::BadChecksum));
        assert_eq!(UdpRepr::parse(&p, &v6(), &ChecksumCaps::offloaded()), Err(Error::BadChecksum));
    }

    #[test]
    fn rfc768_computed_zero_is_sent_as_all_ones() {
        // Find a payload whose checksum computes to 0 by fixing two bytes.
        let ip = v4();
        let r = UdpRepr { src_port: 1, dst_port: 2, payload_len: 2 };
        let mut buf = vec![0u8; 10];
        r.emit(&mut UdpPacket::new_unchecked(&mut buf), &ip, &SW);
        let c = u16::from_be_bytes([buf[6], buf[7]]);
        // Adding the current checksum as payload word makes the sum 0xffff,
        // i.e. a computed checksum of 0 (the field is zeroed before summing).
        buf[8..10].copy_from_slice(&c.to_be_bytes());
        r.emit(&mut UdpPacket::new_unchecked(&mut buf), &ip, &SW);
        assert_eq!(&buf[6..8], &[0xff, 0xff]);
        assert!(UdpPacket::new_checked(&buf).unwrap().verify_checksum(&ip));
    }

    #[test]
    fn rfc768_length_field_checked() {
        let mut buf = datagram(&v4());
        buf[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(UdpPacket::new_checked(&buf).err(), Some(Error::BadLength));
        buf[4..6].copy_from_slice(&18u16.to_be_bytes());
        assert_eq!(UdpPacket::new_checked(&buf).err(), Some(Error::Truncated));
        assert_eq!(UdpPacket::new_checked(&buf[..7]).err(), Some(Error::Truncated));
        // Buffer longer than Length (padding) is fine.
        let mut long = datagram(&v4());
        long.extend_from_slice(&[0, 0, 0]);
        let p = UdpPacket::new_checked(&long).unwrap();
        assert_eq!(p.payload(), b"hello udp");
        assert!(UdpRepr::parse(&p, &v4(), &SW).is_ok());
    }

    #[test]
    fn offloaded_emit_writes_pseudo_header_sum() {
        let ip = v4();
        let r = UdpRepr { src_port: 1, dst_port: 2, payload_len: 0 };
        let mut buf = vec![0u8; 8];
        r.emit(&mut UdpPacket::new_unchecked(&mut buf), &ip, &ChecksumCaps::offloaded());
        assert_eq!(u16::from_be_bytes([buf[6], buf[7]]), ip.pseudo_header_sum(IpProtocol::Udp, 8));
    }
}
