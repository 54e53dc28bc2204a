//! ICMP for IPv4 (RFC 792, RFC 1191, RFC 1812 §4.3).
//!
//! ```text
//! +--------+--------+-----------------+
//! |  Type  |  Code  |    Checksum     |
//! +--------+--------+-----------------+
//! |   rest of header (4 bytes)        |
//! +-----------------------------------+
//! |   data / quoted datagram ...      |
//! ```
//!
//! The view's buffer is the whole ICMP message (the IPv4 payload); the
//! checksum covers all of it.

use std::fmt;
use std::net::Ipv4Addr;

use super::ipv4;
use super::{be16, be32, put16, put32, ChecksumCaps, ChecksumMode, Error, IpProtocol, Result};
use crate::checksum;

/// Length of the ICMP header (type, code, checksum, rest of header).
pub const HEADER_LEN: usize = 8;

/// Message types this module gives a meaning to.
pub mod msg_type {
    /// Echo Reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination Unreachable.
    pub const DST_UNREACHABLE: u8 = 3;
    /// Echo Request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time Exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
}

/// Destination Unreachable codes (RFC 792, RFC 1812 §5.2.7.1).
pub mod unreachable {
    /// Net unreachable.
    pub const NET: u8 = 0;
    /// Host unreachable.
    pub const HOST: u8 = 1;
    /// Protocol unreachable.
    pub const PROTOCOL: u8 = 2;
    /// Port unreachable.
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set (carries the next-hop MTU, RFC 1191).
    pub const FRAG_NEEDED: u8 = 4;
    /// Communication administratively prohibited.
    pub const ADMIN_PROHIBITED: u8 = 13;
    /// Highest defined code.
    pub const MAX: u8 = 15;
}

view! {
    /// A view of an ICMPv4 message.
    Icmpv4Packet
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Checks that the 8-byte header fits.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// Code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// Bytes 4..8 as one number.
    pub fn rest_of_header(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }

    /// Echo identifier (bytes 4..6).
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    /// Echo sequence number (bytes 6..8).
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }

    /// Next-hop MTU of a "fragmentation needed" message (bytes 6..8).
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }

    /// Everything after the 8-byte header.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// True if the checksum over the whole message verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    /// Sets the type.
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[0] = v;
    }

    /// Sets the code.
    pub fn set_code(&mut self, v: u8) {
        self.buffer.as_mut()[1] = v;
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), 2, v);
    }

    /// Sets bytes 4..8.
    pub fn set_rest_of_header(&mut self, v: u32) {
        put32(self.buffer.as_mut(), 4, v);
    }

    /// Computes and writes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Everything after the header, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// The start of the datagram quoted by an ICMP error: its IPv4 header and
/// the first bytes of its payload (at least 8 per RFC 792, as many as fit
/// per RFC 1812 §4.3.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotedIpv4<'a> {
    /// Source of the original datagram (this host, for errors about
    /// packets it sent).
    pub src_addr: Ipv4Addr,
    /// Destination of the original datagram.
    pub dst_addr: Ipv4Addr,
    /// Its protocol.
    pub protocol: IpProtocol,
    /// The quoted payload bytes (after the quoted header's options).
    pub payload: &'a [u8],
}

impl<'a> QuotedIpv4<'a> {
    /// Parses a quoted datagram leniently: the header must be complete and
    /// well-formed (version 4, IHL ≥ 5), but its Total Length is not
    /// checked against the quote, which is normally shorter.
    pub fn parse(quoted: &'a [u8]) -> Result<QuotedIpv4<'a>> {
        if quoted.len() < ipv4::HEADER_LEN {
            return Err(Error::Truncated);
        }
        let p = ipv4::Ipv4Packet::new_unchecked(quoted);
        if p.version() != 4 {
            return Err(Error::BadVersion);
        }
        let hl = p.header_len();
        if hl < ipv4::HEADER_LEN {
            return Err(Error::BadHeaderLen);
        }
        if quoted.len() < hl {
            return Err(Error::Truncated);
        }
        Ok(QuotedIpv4 {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload: &quoted[hl..],
        })
    }

    /// Source and destination ports of a quoted UDP or TCP header, if at
    /// least four payload bytes were quoted.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self.payload {
            [a, b, c, d, ..] => Some((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]))),
            _ => None,
        }
    }
}

/// An ICMPv4 message as values; data is borrowed from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr<'a> {
    /// Echo Request.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data.
        data: &'a [u8],
    },
    /// Echo Reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data.
        data: &'a [u8],
    },
    /// Destination Unreachable.
    DstUnreachable {
        /// Code (see [`unreachable`](mod@unreachable)).
        code: u8,
        /// Next-hop MTU, for code [`unreachable::FRAG_NEEDED`] (else 0).
        next_hop_mtu: u16,
        /// The quoted datagram (see [`QuotedIpv4::parse`]).
        quoted: &'a [u8],
    },
    /// Time Exceeded (code 0: TTL in transit, 1: reassembly).
    TimeExceeded {
        /// Code.
        code: u8,
        /// The quoted datagram.
        quoted: &'a [u8],
    },
    /// Any other message, uninterpreted.
    Other {
        /// Type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// Bytes 4..8.
        rest_of_header: u32,
        /// Everything after the header.
        data: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Parses the message (the whole buffer). With software checksums a bad
    /// checksum is `BadChecksum`. Echo is accepted whatever its code (see
    /// below); an unknown unreachable or time-exceeded code is `BadField`; an error message
    /// whose quote is not a well-formed IPv4 header gets that header's error.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Icmpv4Packet<&'a T>, caps: &ChecksumCaps) -> Result<Icmpv4Repr<'a>> {
        let buf: &'a [u8] = p.buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if caps.icmp == ChecksumMode::Software && !p.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        let data = &buf[HEADER_LEN..];
        let code = p.code();
        match p.msg_type() {
            msg_type::ECHO_REQUEST | msg_type::ECHO_REPLY => {
                // Any code: RFC 792 gives the code of Echo no meaning ("Code
                // 0" describes what a sender puts there, not a reason to
                // refuse), and Linux answers an echo request whatever its
                // code, as a conformance tester expects. Refusing it made us
                // silently unpingable by such probes and bought nothing: the
                // reply is built in place and carries the request's code
                // back, as Linux's does.
                let (ident, seq_no) = (p.echo_ident(), p.echo_seq_no());
                Ok(if p.msg_type() == msg_type::ECHO_REQUEST {
                    Icmpv4Repr::EchoRequest { ident, seq_no, data }
                } else {
                    Icmpv4Repr::EchoReply { ident, seq_no, data }
                })
            }
            msg_type::DST_UNREACHABLE => {
                if code > unreachable::MAX {
                    return Err(Error::BadField);
                }
                QuotedIpv4::parse(data)?;
                let next_hop_mtu = if code == unreachable::FRAG_NEEDED { p.next_hop_mtu() } else { 0 };
                Ok(Icmpv4Repr::DstUnreachable { code, next_hop_mtu, quoted: data })
            }
            msg_type::TIME_EXCEEDED => {
                if code > 1 {
                    return Err(Error::BadField);
                }
                QuotedIpv4::parse(data)?;
                Ok(Icmpv4Repr::TimeExceeded { code, quoted: data })
            }
            t => Ok(Icmpv4Repr::Other { msg_type: t, code, rest_of_header: p.rest_of_header(), data }),
        }
    }

    /// The quoted datagram of an error message, parsed.
    pub fn quoted(&self) -> Option<QuotedIpv4<'a>> {
        match self {
            Icmpv4Repr::DstUnreachable { quoted, .. } | Icmpv4Repr::TimeExceeded { quoted, .. } => {
                QuotedIpv4::parse(quoted).ok()
            }
            _ => None,
        }
    }

    fn body(&self) -> &'a [u8] {
        match *self {
            Icmpv4Repr::EchoRequest { data, .. }
            | Icmpv4Repr::EchoReply { data, .. }
            | Icmpv4Repr::Other { data, .. } => data,
            Icmpv4Repr::DstUnreachable { quoted, .. } | Icmpv4Repr::TimeExceeded { quoted, .. } => quoted,
        }
    }

    /// 8.
    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus data.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body().len()
    }

    /// Writes the message, data included, and the checksum (unless
    /// offloaded). The buffer must be exactly [`buffer_len`](Self::buffer_len)
    /// bytes, since the checksum covers all of it.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, p: &mut Icmpv4Packet<&mut T>, caps: &ChecksumCaps) {
        let (t, code, rest) = match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no, .. } => {
                (msg_type::ECHO_REQUEST, 0, (u32::from(ident) << 16) | u32::from(seq_no))
            }
            Icmpv4Repr::EchoReply { ident, seq_no, .. } => {
                (msg_type::ECHO_REPLY, 0, (u32::from(ident) << 16) | u32::from(seq_no))
            }
            Icmpv4Repr::DstUnreachable { code, next_hop_mtu, .. } => {
                (msg_type::DST_UNREACHABLE, code, u32::from(next_hop_mtu))
            }
            Icmpv4Repr::TimeExceeded { code, .. } => (msg_type::TIME_EXCEEDED, code, 0),
            Icmpv4Repr::Other { msg_type, code, rest_of_header, .. } => (msg_type, code, rest_of_header),
        };
        p.set_msg_type(t);
        p.set_code(code);
        p.set_rest_of_header(rest);
        let body = self.body();
        p.data_mut()[..body.len()].copy_from_slice(body);
        match caps.icmp {
            ChecksumMode::Software => p.fill_checksum(),
            ChecksumMode::Offloaded => p.set_checksum(0),
        }
    }
}

impl fmt::Display for Icmpv4Repr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Icmpv4Repr::EchoRequest { ident, seq_no, data } => {
                write!(f, "ICMP echo request id {ident} seq {seq_no} len {}", data.len())
            }
            Icmpv4Repr::EchoReply { ident, seq_no, data } => {
                write!(f, "ICMP echo reply id {ident} seq {seq_no} len {}", data.len())
            }
            Icmpv4Repr::DstUnreachable { code, .. } => write!(f, "ICMP unreachable code {code}"),
            Icmpv4Repr::TimeExceeded { code, .. } => write!(f, "ICMP time exceeded code {code}"),
            Icmpv4Repr::Other { msg_type, code, .. } => {
                write!(f, "ICMP type {msg_type} code {code}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Ipv4Packet, Ipv4Repr};

    const SW: ChecksumCaps = ChecksumCaps::software();

    fn round_trip(r: Icmpv4Repr<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut Icmpv4Packet::new_unchecked(&mut buf), &SW);
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(Icmpv4Repr::parse(&p, &SW).unwrap(), r);
        buf
    }

    fn quoted_udp() -> Vec<u8> {
        let ip = Ipv4Repr::new("198.18.0.1".parse().unwrap(), "198.18.0.2".parse().unwrap(), IpProtocol::Udp, 17, 64);
        let mut b = vec![0u8; 28];
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut b), &SW);
        b[20..28].copy_from_slice(&[0x9c, 0x40, 0x14, 0xe9, 0, 17, 0, 0]);
        b
    }

    #[test]
    fn rfc792_echo_round_trip() {
        let buf = round_trip(Icmpv4Repr::EchoRequest { ident: 0x1234, seq_no: 7, data: b"abcdefgh" });
        assert_eq!(&buf[..2], &[8, 0]);
        round_trip(Icmpv4Repr::EchoReply { ident: 1, seq_no: 2, data: b"" });
    }

    #[test]
    fn rfc792_dst_unreachable_quotes_datagram() {
        let q = quoted_udp();
        let r = Icmpv4Repr::DstUnreachable { code: unreachable::PORT, next_hop_mtu: 0, quoted: &q };
        round_trip(r);
        let quoted = r.quoted().unwrap();
        assert_eq!(quoted.protocol, IpProtocol::Udp);
        assert_eq!(quoted.dst_addr, Ipv4Addr::new(198, 18, 0, 2));
        assert_eq!(quoted.ports(), Some((40000, 5353)));
    }

    #[test]
    fn rfc1191_frag_needed_carries_mtu() {
        let q = quoted_udp();
        let buf =
            round_trip(Icmpv4Repr::DstUnreachable { code: unreachable::FRAG_NEEDED, next_hop_mtu: 1400, quoted: &q });
        assert_eq!(&buf[6..8], &1400u16.to_be_bytes());
    }

    #[test]
    fn rfc792_time_exceeded_and_bad_quote() {
        let q = quoted_udp();
        round_trip(Icmpv4Repr::TimeExceeded { code: 0, quoted: &q });
        // A quote that is not an IPv4 header is rejected.
        let r = Icmpv4Repr::TimeExceeded { code: 1, quoted: &q[..19] };
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut Icmpv4Packet::new_unchecked(&mut buf), &SW);
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p, &SW), Err(Error::Truncated));
        // Code 2 is not defined for time exceeded.
        let r = Icmpv4Repr::TimeExceeded { code: 2, quoted: &q };
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut Icmpv4Packet::new_unchecked(&mut buf), &SW);
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p, &SW), Err(Error::BadField));
    }

    #[test]
    fn rfc792_other_types_kept_and_checksum_verified() {
        let r = Icmpv4Repr::Other {
            msg_type: 13, // timestamp
            code: 0,
            rest_of_header: 0xdead_beef,
            data: &[1, 2, 3],
        };
        let mut buf = round_trip(r);
        buf[9] ^= 1;
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p, &SW), Err(Error::BadChecksum));
        assert!(Icmpv4Packet::new_checked(&buf[..7]).is_err());
    }
}
