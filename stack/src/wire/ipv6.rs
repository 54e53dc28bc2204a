//! IPv6 (RFC 8200): the fixed header, extension-header walking and the
//! Fragment header.
//!
//! ```text
//! +-------+---------------+---------------------------------------+
//! |Version| Traffic Class |               Flow Label              |
//! +-------+---------------+-------+---------------+---------------+
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! +-------------------------------+---------------+---------------+
//! |                     Source Address (16 bytes)                 |
//! |                  Destination Address (16 bytes)               |
//! +---------------------------------------------------------------+
//! ```
//!
//! [`walk_ext_headers`] follows the chain of Hop-by-Hop, Routing, Fragment,
//! Destination Options (and Authentication) headers to the upper-layer
//! protocol, checking the options of Hop-by-Hop and Destination Options
//! headers ([`check_options`], RFC 8200 §4.2). The walk is bounded ([`MAX_EXT_HEADERS`]), every length is
//! checked before use, and every step advances by at least 8 bytes, so no
//! input makes it loop or panic.

use std::fmt;
use std::net::Ipv6Addr;

use super::{be16, be32, put16, put32, Error, IpProtocol, Result};

mod field {
    use core::ops::Range;
    pub const VER_TC_FL: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;
/// The most extension headers [`walk_ext_headers`] follows before giving up
/// with [`Error::TooManyExtHeaders`]. RFC 8200 §4.1 recommends at most one
/// of each (two Destination Options), i.e. six, plus AH.
pub const MAX_EXT_HEADERS: usize = 8;
/// Length of the Fragment header.
pub const FRAGMENT_HEADER_LEN: usize = 8;

view! {
    /// A view of an IPv6 packet.
    Ipv6Packet
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// `Truncated` if the buffer is shorter than 40 + Payload Length.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || len < HEADER_LEN + usize::from(self.payload_len()) {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Version field (6).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FL] >> 4
    }

    /// Traffic class (DSCP << 2 | ECN).
    pub fn traffic_class(&self) -> u8 {
        ((be16(self.buffer.as_ref(), field::VER_TC_FL) >> 4) & 0xff) as u8
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VER_TC_FL) & 0x000f_ffff
    }

    /// Payload length (extension headers included).
    pub fn payload_len(&self) -> u16 {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return 0;
        }
        be16(self.buffer.as_ref(), field::PAYLOAD_LEN)
    }

    /// Next header: the first extension header or the upper layer.
    pub fn next_header(&self) -> IpProtocol {
        self.buffer.as_ref()[field::NEXT_HEADER].into()
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        let b: [u8; 16] = self.buffer.as_ref()[field::SRC].try_into().expect("16 bytes");
        Ipv6Addr::from(b)
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        let b: [u8; 16] = self.buffer.as_ref()[field::DST].try_into().expect("16 bytes");
        Ipv6Addr::from(b)
    }

    /// The payload (extension headers and upper layer), bounded by Payload
    /// Length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Walks the extension headers of this packet; offsets in the result are
    /// relative to [`payload`](Self::payload).
    pub fn upper_layer(&self) -> Result<Ipv6Upper> {
        walk_ext_headers(self.next_header(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version 6, the traffic class and the flow label.
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        put32(self.buffer.as_mut(), field::VER_TC_FL, v);
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::PAYLOAD_LEN, v);
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, v: IpProtocol) {
        self.buffer.as_mut()[field::NEXT_HEADER] = v.into();
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let e = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..e]
    }
}

/// The fixed IPv6 header as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header (first extension header or upper layer).
    pub next_header: IpProtocol,
    /// Payload length (extension headers included).
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// A header with traffic class and flow label 0.
    pub fn new(
        src_addr: Ipv6Addr,
        dst_addr: Ipv6Addr,
        next_header: IpProtocol,
        payload_len: usize,
        hop_limit: u8,
    ) -> Self {
        Ipv6Repr { src_addr, dst_addr, next_header, payload_len, hop_limit, traffic_class: 0, flow_label: 0 }
    }

    /// Parses the fixed header: `BadVersion` unless version 6, `Truncated`
    /// if Payload Length runs past the buffer.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Ipv6Packet<&T>) -> Result<Ipv6Repr> {
        if p.buffer.as_ref().is_empty() {
            return Err(Error::Truncated);
        }
        if p.version() != 6 {
            return Err(Error::BadVersion);
        }
        p.check_len()?;
        Ok(Ipv6Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }

    /// 40.
    pub fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the fixed header. The buffer must be at least 40 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, p: &mut Ipv6Packet<&mut T>) {
        p.set_version_tc_flow(self.traffic_class, self.flow_label);
        p.set_payload_len(u16::try_from(self.payload_len).unwrap_or(u16::MAX));
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
    }
}

impl fmt::Display for Ipv6Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IPv6 {} > {} {} len {} hlim {}",
            self.src_addr, self.dst_addr, self.next_header, self.payload_len, self.hop_limit
        )
    }
}

view! {
    /// A view of a generic extension header (Hop-by-Hop, Routing, Destination
    /// Options): next header, length in 8-octet units not counting the first,
    /// then data.
    Ipv6ExtHeader
}

impl<T: AsRef<[u8]>> Ipv6ExtHeader<T> {
    /// Checks that the whole header (by its length field) fits.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < 2 || len < self.header_len() {
            return Err(Error::BadLength);
        }
        Ok(())
    }

    /// Next header.
    pub fn next_header(&self) -> IpProtocol {
        self.buffer.as_ref()[0].into()
    }

    /// Length of the whole header in bytes: (Hdr Ext Len + 1) × 8.
    pub fn header_len(&self) -> usize {
        (usize::from(self.buffer.as_ref()[1]) + 1) * 8
    }

    /// The options or routing data after the first two bytes.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[2..self.header_len()]
    }
}

view! {
    /// A view of the Fragment header (RFC 8200 §4.5).
    Ipv6FragmentHeader
}

impl<T: AsRef<[u8]>> Ipv6FragmentHeader<T> {
    /// Checks the 8 bytes fit.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < FRAGMENT_HEADER_LEN {
            return Err(Error::BadLength);
        }
        Ok(())
    }

    /// Next header of the fragmentable part.
    pub fn next_header(&self) -> IpProtocol {
        self.buffer.as_ref()[0].into()
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        be16(self.buffer.as_ref(), 2) & 0xfff8
    }

    /// More fragments flag.
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), 2) & 1 != 0
    }

    /// Identification.
    pub fn ident(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }

    /// What follows the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[FRAGMENT_HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6FragmentHeader<T> {
    /// Sets the next header and zeroes the reserved byte.
    pub fn set_next_header(&mut self, v: IpProtocol) {
        let b = self.buffer.as_mut();
        b[0] = v.into();
        b[1] = 0;
    }

    /// Sets offset (bytes, a multiple of 8) and the M flag; zeroes the
    /// reserved bits.
    pub fn set_frag_offset_more(&mut self, offset: u16, more: bool) {
        put16(self.buffer.as_mut(), 2, (offset & 0xfff8) | u16::from(more));
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, v: u32) {
        put32(self.buffer.as_mut(), 4, v);
    }
}

/// A Fragment header as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6FragmentRepr {
    /// Next header of the fragmentable part.
    pub next_header: IpProtocol,
    /// Offset in bytes.
    pub frag_offset: u16,
    /// More fragments.
    pub more_frags: bool,
    /// Identification.
    pub ident: u32,
}

impl Ipv6FragmentRepr {
    /// Parses a Fragment header.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(h: &Ipv6FragmentHeader<&T>) -> Result<Self> {
        if h.buffer.as_ref().len() < FRAGMENT_HEADER_LEN {
            return Err(Error::BadLength);
        }
        Ok(Ipv6FragmentRepr {
            next_header: h.next_header(),
            frag_offset: h.frag_offset(),
            more_frags: h.more_frags(),
            ident: h.ident(),
        })
    }

    /// 8.
    pub fn buffer_len(&self) -> usize {
        FRAGMENT_HEADER_LEN
    }

    /// Writes the header (8 bytes).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, h: &mut Ipv6FragmentHeader<&mut T>) {
        h.set_next_header(self.next_header);
        h.set_frag_offset_more(self.frag_offset, self.more_frags);
        h.set_ident(self.ident);
    }

    /// True for the first fragment (offset 0), the only one that carries
    /// the upper-layer header.
    pub fn is_first(&self) -> bool {
        self.frag_offset == 0
    }
}

/// Where the upper layer starts, from [`walk_ext_headers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Upper {
    /// The upper-layer protocol (the Next Header after the last extension
    /// header; may be [`IpProtocol::Ipv6NoNxt`]).
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header (or, for a non-first fragment, of
    /// the fragment data) from the start of the IPv6 payload.
    pub offset: usize,
    /// The Fragment header, if the packet had one. When it is a fragment
    /// (`more_frags` or non-zero offset), the data from `offset` on is only
    /// part of the upper-layer packet and must be reassembled first.
    pub fragment: Option<Ipv6FragmentRepr>,
    /// Number of extension headers walked.
    pub ext_headers: u8,
    /// Where the Fragment header is, if the packet had one (what reassembly
    /// needs to take it out).
    pub fragment_at: Option<FragmentPosition>,
    /// An option the stack does not recognize, in a Hop-by-Hop or
    /// Destination Options header, whose type says the packet must not be
    /// processed (RFC 8200 §4.2). The walk stops there: `protocol` and
    /// `offset` are then those of the header holding it.
    pub unrecognized_option: Option<UnrecognizedOption>,
}

/// Where a Fragment header sits in an IPv6 payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragmentPosition {
    /// Offset of the Fragment header from the start of the IPv6 payload:
    /// everything before it (and the fixed header) is the unfragmentable part.
    pub offset: usize,
    /// Offset from the start of the IPv6 payload of the extension header
    /// whose Next Header octet (its first) names the Fragment header, or
    /// `None` when the fixed header's does.
    pub named_by: Option<usize>,
}

/// What RFC 8200 §4.2 says to do with a packet holding an option its
/// receiver does not recognize: the two high-order bits of the option type.
/// (`00`, skip the option, never appears in an [`UnrecognizedOption`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptionAction {
    /// `01`: discard the packet.
    Discard,
    /// `10`: discard it and send an ICMPv6 Parameter Problem, code 2,
    /// pointing at the option type, to its source (even if the destination
    /// was multicast).
    DiscardAndReport,
    /// `11`: as `10`, but only if the destination was not multicast.
    DiscardAndReportUnlessMulticast,
}

/// An unrecognized option that stops the packet (see [`OptionAction`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnrecognizedOption {
    /// What to do with the packet.
    pub action: OptionAction,
    /// Offset of the option's type octet from the start of the IPv6 payload
    /// (add 40 for the Parameter Problem pointer, which counts from the
    /// start of the packet).
    pub offset: usize,
}

/// Option types the stack recognizes in Hop-by-Hop and Destination Options
/// headers: Pad1, PadN (RFC 8200 §4.2) and Router Alert (RFC 2711; a host
/// has nothing to do for it). Anything else is acted on by its type's
/// high-order bits.
pub mod option_type {
    /// Pad1: one octet, no length.
    pub const PAD1: u8 = 0;
    /// PadN.
    pub const PADN: u8 = 1;
    /// Router Alert.
    pub const ROUTER_ALERT: u8 = 5;
}

/// Checks the options of one Hop-by-Hop or Destination Options header
/// (`header`, the whole header from its Next Header octet; `base`, its
/// offset in the IPv6 payload). An option running past the header is
/// `BadOption`; the first unrecognized option whose action is not "skip" is
/// returned.
pub fn check_options(header: &[u8], base: usize) -> Result<Option<UnrecognizedOption>> {
    let mut i = 2;
    while i < header.len() {
        let t = header[i];
        if t == option_type::PAD1 {
            i += 1;
            continue;
        }
        let Some(&len) = header.get(i + 1) else { return Err(Error::BadOption) };
        let end = i + 2 + usize::from(len);
        if end > header.len() {
            return Err(Error::BadOption);
        }
        if !matches!(t, option_type::PADN | option_type::ROUTER_ALERT) {
            let action = match t >> 6 {
                0 => None,
                1 => Some(OptionAction::Discard),
                2 => Some(OptionAction::DiscardAndReport),
                _ => Some(OptionAction::DiscardAndReportUnlessMulticast),
            };
            if let Some(action) = action {
                return Ok(Some(UnrecognizedOption { action, offset: base + i }));
            }
        }
        i = end;
    }
    Ok(None)
}

/// Walks the extension-header chain starting with `next_header` over
/// `payload` (the IPv6 payload, after the fixed header).
///
/// Follows Hop-by-Hop (only allowed first, RFC 8200 §4.1, else `BadField`),
/// Routing, Destination Options, Authentication (RFC 4302 length rule) and
/// Fragment headers. Stops at the first other value, or after a non-first
/// fragment's header (what follows is not a header). A header running past
/// the payload is `BadLength`; more than [`MAX_EXT_HEADERS`] headers is
/// `TooManyExtHeaders`. Routing headers are skipped, not processed: a
/// segments-left check is the caller's business.
pub fn walk_ext_headers(next_header: IpProtocol, payload: &[u8]) -> Result<Ipv6Upper> {
    let mut nh = next_header;
    let mut offset = 0usize;
    let mut fragment = None;
    let mut fragment_at = None;
    let mut prev: Option<usize> = None;
    for count in 0..=MAX_EXT_HEADERS {
        let len = match nh {
            IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts | IpProtocol::Ah => {
                if nh == IpProtocol::HopByHop && count != 0 {
                    return Err(Error::BadField);
                }
                let rest = &payload[offset..];
                if rest.len() < 2 {
                    return Err(Error::BadLength);
                }
                let len =
                    if nh == IpProtocol::Ah { (usize::from(rest[1]) + 2) * 4 } else { (usize::from(rest[1]) + 1) * 8 };
                if rest.len() < len {
                    return Err(Error::BadLength);
                }
                if matches!(nh, IpProtocol::HopByHop | IpProtocol::Ipv6Opts) {
                    if let Some(o) = check_options(&rest[..len], offset)? {
                        let stop = Ipv6Upper {
                            protocol: nh,
                            offset,
                            fragment,
                            ext_headers: count as u8,
                            fragment_at,
                            unrecognized_option: Some(o),
                        };
                        return Ok(stop);
                    }
                }
                nh = rest[0].into();
                len
            }
            IpProtocol::Ipv6Frag => {
                let h = Ipv6FragmentHeader::new_checked(&payload[offset..])?;
                let f = Ipv6FragmentRepr::parse(&h)?;
                nh = f.next_header;
                if fragment.is_none() {
                    // The first one is this packet's (a second, after a first
                    // fragment's, belongs to the reassembled packet).
                    fragment = Some(f);
                    fragment_at = Some(FragmentPosition { offset, named_by: prev });
                }
                if !f.is_first() {
                    return Ok(Ipv6Upper {
                        protocol: nh,
                        offset: offset + FRAGMENT_HEADER_LEN,
                        fragment,
                        ext_headers: count as u8 + 1,
                        fragment_at,
                        unrecognized_option: None,
                    });
                }
                FRAGMENT_HEADER_LEN
            }
            upper => {
                return Ok(Ipv6Upper {
                    protocol: upper,
                    offset,
                    fragment,
                    ext_headers: count as u8,
                    fragment_at,
                    unrecognized_option: None,
                })
            }
        };
        if count == MAX_EXT_HEADERS {
            break;
        }
        prev = Some(offset);
        offset += len;
    }
    Err(Error::TooManyExtHeaders)
}

/// An IPv6 address with a prefix length, e.g. `2001:2::1/64`.
pub type Ipv6Cidr = super::cidr::Cidr<Ipv6Addr>;

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(next: IpProtocol, len: usize) -> Ipv6Repr {
        Ipv6Repr {
            src_addr: "2001:2::1".parse().unwrap(),
            dst_addr: "2001:2::2".parse().unwrap(),
            next_header: next,
            payload_len: len,
            hop_limit: 64,
            traffic_class: 0xb8,
            flow_label: 0x2da57,
        }
    }

    #[test]
    fn rfc8200_3_round_trip() {
        let r = repr(IpProtocol::Udp, 8);
        let mut buf = vec![0u8; r.buffer_len() + 2]; // + trailing padding
        r.emit(&mut Ipv6Packet::new_unchecked(&mut buf));
        assert_eq!(&buf[..4], &[0x6b, 0x82, 0xda, 0x57]);
        let p = Ipv6Packet::new_checked(&buf).unwrap();
        assert_eq!(Ipv6Repr::parse(&p), Ok(r));
        assert_eq!(p.payload().len(), 8);
        assert_eq!(p.upper_layer().unwrap().protocol, IpProtocol::Udp);
    }

    #[test]
    fn rfc8200_3_version_and_length_checked() {
        let r = repr(IpProtocol::Udp, 8);
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut Ipv6Packet::new_unchecked(&mut buf));
        assert_eq!(Ipv6Packet::new_checked(&buf[..47]).err(), Some(Error::Truncated));
        assert_eq!(Ipv6Packet::new_checked(&buf[..39]).err(), Some(Error::Truncated));
        buf[0] = 0x45;
        assert_eq!(Ipv6Repr::parse(&Ipv6Packet::new_unchecked(&buf)), Err(Error::BadVersion));
    }

    #[test]
    fn rfc8200_4_2_option_actions_by_type_bits() {
        // HBH: Pad1, PadN(0), then the option under test (2 bytes of data).
        let hbh = |t: u8| [6u8, 0, 0, 1, 0, t, 0, 0];
        let mut pkt = hbh(0x1e).to_vec();
        pkt.extend_from_slice(&[0u8; 20]);
        let up = walk_ext_headers(IpProtocol::HopByHop, &pkt).unwrap();
        assert_eq!((up.protocol, up.offset, up.unrecognized_option), (IpProtocol::Tcp, 8, None), "00: skipped");
        for (t, action) in [
            (0x5e, OptionAction::Discard),
            (0x9e, OptionAction::DiscardAndReport),
            (0xde, OptionAction::DiscardAndReportUnlessMulticast),
        ] {
            pkt[..8].copy_from_slice(&hbh(t));
            let up = walk_ext_headers(IpProtocol::HopByHop, &pkt).unwrap();
            assert_eq!(up.unrecognized_option, Some(UnrecognizedOption { action, offset: 5 }), "{t:#x}");
            assert_eq!((up.protocol, up.offset), (IpProtocol::HopByHop, 0));
        }
        // Recognized options are not acted on; Router Alert's type has 00 anyway.
        pkt[..8].copy_from_slice(&[6, 0, 5, 2, 0, 0, 1, 0]);
        assert_eq!(walk_ext_headers(IpProtocol::HopByHop, &pkt).unwrap().unrecognized_option, None);
        // An option running past its header is malformed.
        pkt[..8].copy_from_slice(&[6, 0, 0, 1, 0, 0x9e, 3, 0]);
        assert_eq!(walk_ext_headers(IpProtocol::HopByHop, &pkt), Err(Error::BadOption));
        pkt[..8].copy_from_slice(&[6, 0, 1, 3, 0, 0, 0, 0x9e]);
        assert_eq!(walk_ext_headers(IpProtocol::HopByHop, &pkt), Err(Error::BadOption));
    }

    #[test]
    fn rfc8200_4_ext_header_chain_walked() {
        // HBH (8) -> Dest Opts (16) -> Routing (8) -> Fragment (8, first) -> TCP
        let mut p = Vec::new();
        p.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]); // HBH: PadN
        p.extend_from_slice(&[43, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // DO
        p.extend_from_slice(&[44, 0, 4, 0, 0, 0, 0, 0]); // Routing type 4, SL 0
        p.extend_from_slice(&[6, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]); // Frag: off 0, M
        p.extend_from_slice(&[0u8; 20]); // TCP header
        let up = walk_ext_headers(IpProtocol::HopByHop, &p).unwrap();
        assert_eq!(up.protocol, IpProtocol::Tcp);
        assert_eq!(up.offset, 40);
        assert_eq!(up.ext_headers, 4);
        assert_eq!(
            up.fragment,
            Some(Ipv6FragmentRepr {
                next_header: IpProtocol::Tcp,
                frag_offset: 0,
                more_frags: true,
                ident: 0xdeadbeef
            })
        );
    }

    #[test]
    fn rfc8200_4_1_hop_by_hop_only_first() {
        let p = [0u8, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0];
        // Dest opts whose next header is HBH.
        assert_eq!(walk_ext_headers(IpProtocol::Ipv6Opts, &p), Err(Error::BadField));
    }

    #[test]
    fn rfc8200_4_ext_header_past_payload_rejected() {
        let p = [17u8, 2, 0, 0, 0, 0, 0, 0]; // claims 24 bytes
        assert_eq!(walk_ext_headers(IpProtocol::Ipv6Opts, &p), Err(Error::BadLength));
        assert_eq!(walk_ext_headers(IpProtocol::Ipv6Opts, &p[..1]), Err(Error::BadLength));
        assert_eq!(walk_ext_headers(IpProtocol::Ipv6Frag, &p[..7]), Err(Error::BadLength));
    }

    #[test]
    fn rfc8200_4_walk_is_bounded() {
        // 20 Destination Options headers, each pointing to another.
        let mut p = Vec::new();
        for _ in 0..20 {
            p.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(walk_ext_headers(IpProtocol::Ipv6Opts, &p), Err(Error::TooManyExtHeaders));
        // Exactly MAX_EXT_HEADERS headers then UDP is fine.
        let mut p = Vec::new();
        for i in 0..MAX_EXT_HEADERS {
            let nh = if i + 1 == MAX_EXT_HEADERS { 17 } else { 60 };
            p.extend_from_slice(&[nh, 0, 1, 4, 0, 0, 0, 0]);
        }
        let up = walk_ext_headers(IpProtocol::Ipv6Opts, &p).unwrap();
        assert_eq!(up.protocol, IpProtocol::Udp);
        assert_eq!(up.offset, 8 * MAX_EXT_HEADERS);
    }

    #[test]
    fn rfc8200_4_5_non_first_fragment_stops_walk() {
        let p = [17u8, 0, 0x05, 0xa8, 0, 0, 0, 7, 0xaa, 0xbb];
        let up = walk_ext_headers(IpProtocol::Ipv6Frag, &p).unwrap();
        assert_eq!(up.protocol, IpProtocol::Udp);
        assert_eq!(up.offset, 8);
        let f = up.fragment.unwrap();
        assert_eq!(f.frag_offset, 1448);
        assert!(!f.more_frags);
        assert!(!f.is_first());
    }

    #[test]
    fn rfc8200_4_5_fragment_header_round_trip() {
        let f = Ipv6FragmentRepr {
            next_header: IpProtocol::Icmpv6,
            frag_offset: 1448,
            more_frags: true,
            ident: 0x0ed217d2,
        };
        let mut buf = [0xffu8; 8];
        f.emit(&mut Ipv6FragmentHeader::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [58, 0, 0x05, 0xa9, 0x0e, 0xd2, 0x17, 0xd2]);
        let h = Ipv6FragmentHeader::new_checked(&buf[..]).unwrap();
        assert_eq!(Ipv6FragmentRepr::parse(&h), Ok(f));
    }

    #[test]
    fn rfc4302_2_2_ah_length_in_4_octet_units() {
        // AH with payload len 4 => (4 + 2) * 4 = 24 bytes, then TCP.
        let mut p = vec![6u8, 4];
        p.resize(24, 0);
        let up = walk_ext_headers(IpProtocol::Ah, &p).unwrap();
        assert_eq!((up.protocol, up.offset), (IpProtocol::Tcp, 24));
    }

    #[test]
    fn ext_header_view() {
        let b = [17u8, 0, 1, 4, 0, 0, 0, 0, 99];
        let h = Ipv6ExtHeader::new_checked(&b[..]).unwrap();
        assert_eq!(h.next_header(), IpProtocol::Udp);
        assert_eq!(h.header_len(), 8);
        assert_eq!(h.data(), &[1, 4, 0, 0, 0, 0]);
        assert!(Ipv6ExtHeader::new_checked(&b[..7]).is_err());
    }

    #[test]
    fn cidr() {
        let c: Ipv6Cidr = "2001:2::1/48".parse().unwrap();
        assert!(c.contains(&"2001:2:0:ffff::1".parse().unwrap()));
        assert!(!c.contains(&"2001:3::1".parse().unwrap()));
        assert_eq!(c.network().to_string(), "2001:2::/48");
        assert!(c.contains_subnet(&"2001:2::/64".parse().unwrap()));
        assert!("2001:2::/129".parse::<Ipv6Cidr>().is_err());
        assert!("2001:2::".parse::<Ipv6Cidr>().is_err());
        let all = Ipv6Cidr::new(Ipv6Addr::UNSPECIFIED, 0).unwrap();
        assert!(all.contains(&"2001:2::5".parse().unwrap()));
        let host = Ipv6Cidr::new("2001:2::5".parse().unwrap(), 128).unwrap();
        assert!(host.contains(&"2001:2::5".parse().unwrap()));
        assert!(!host.contains(&"2001:2::6".parse().unwrap()));
    }
}
