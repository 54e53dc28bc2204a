//! ICMPv6 (RFC 4443) and Neighbor Discovery (RFC 4861).
//!
//! ```text
//! +--------+--------+-----------------+
//! |  Type  |  Code  |    Checksum     |
//! +--------+--------+-----------------+
//! |   message body ...                |
//! ```
//!
//! The view's buffer is the whole ICMPv6 message; the checksum covers the
//! IPv6 pseudo-header and all of it.
//!
//! NDP options are kept as the validated raw bytes on parse
//! ([`NdpOptions::Raw`]) and read through [`NdpOptions::iter`]; to emit,
//! give a list ([`NdpOptions::List`]). Unknown options are skipped by their
//! length; an option with length 0 is `BadOption` (RFC 4861 §4.6).
//! The hop-limit-255 rule of RFC 4861 §6.1 is an IPv6-header check and is
//! left to the caller.

use std::fmt;
use std::net::Ipv6Addr;

use super::{be16, be32, put16, put32, ChecksumCaps, ChecksumMode, Error, IpProtocol, MacAddr, Result};
use crate::checksum;

/// Length of the type/code/checksum header.
pub const HEADER_LEN: usize = 4;

/// Message types.
pub mod msg_type {
    /// Destination Unreachable.
    pub const DST_UNREACHABLE: u8 = 1;
    /// Packet Too Big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time Exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter Problem.
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo Request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo Reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Router Solicitation.
    pub const ROUTER_SOLICIT: u8 = 133;
    /// Router Advertisement.
    pub const ROUTER_ADVERT: u8 = 134;
    /// Neighbor Solicitation.
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbor Advertisement.
    pub const NEIGHBOR_ADVERT: u8 = 136;
}

/// NDP option types.
pub mod option_type {
    /// Source Link-Layer Address.
    pub const SOURCE_LLADDR: u8 = 1;
    /// Target Link-Layer Address.
    pub const TARGET_LLADDR: u8 = 2;
    /// Prefix Information.
    pub const PREFIX_INFO: u8 = 3;
    /// Redirected Header.
    pub const REDIRECTED_HEADER: u8 = 4;
    /// MTU.
    pub const MTU: u8 = 5;
}

view! {
    /// A view of an ICMPv6 message.
    Icmpv6Packet
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Checks the 4-byte header fits.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Type.
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

    /// The body after type, code and checksum.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// True if the checksum over pseudo-header and message verifies.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::Icmpv6.into(), b.len() as u32);
        checksum::add(ph, checksum::sum(b)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
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

    /// Computes and writes the checksum.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v6(src, dst, IpProtocol::Icmpv6.into(), b.len() as u32);
        let c = !checksum::add(ph, checksum::sum(b));
        self.set_checksum(c);
    }

    /// The body, writable.
    pub fn body_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// A Prefix Information option (RFC 4861 §4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NdpPrefixInfo {
    /// Prefix length in bits.
    pub prefix_len: u8,
    /// L: the prefix is on-link.
    pub on_link: bool,
    /// A: usable for stateless address autoconfiguration.
    pub autonomous: bool,
    /// Valid lifetime in seconds (0xffffffff = infinity).
    pub valid_lifetime: u32,
    /// Preferred lifetime in seconds.
    pub preferred_lifetime: u32,
    /// The prefix.
    pub prefix: Ipv6Addr,
}

/// One NDP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdpOption<'a> {
    /// Source Link-Layer Address (Ethernet).
    SourceLinkLayerAddr(MacAddr),
    /// Target Link-Layer Address (Ethernet).
    TargetLinkLayerAddr(MacAddr),
    /// Prefix Information.
    PrefixInfo(NdpPrefixInfo),
    /// MTU.
    Mtu(u32),
    /// Any other option: its type and the bytes after type and length.
    Unknown {
        /// Option type.
        kind: u8,
        /// Option data (length × 8 − 2 bytes).
        data: &'a [u8],
    },
}

impl<'a> NdpOption<'a> {
    /// Parses the option at the start of `b`, returning it and its length.
    fn parse(b: &'a [u8]) -> Result<(NdpOption<'a>, usize)> {
        if b.len() < 2 {
            return Err(Error::BadOption);
        }
        let len = usize::from(b[1]) * 8;
        if len == 0 || len > b.len() {
            return Err(Error::BadOption);
        }
        let body = &b[2..len];
        let opt = match b[0] {
            option_type::SOURCE_LLADDR | option_type::TARGET_LLADDR => {
                // Ethernet: one 8-byte unit; longer is a different link layer.
                let a = MacAddr::from_bytes(&body[..6]).ok_or(Error::BadOption)?;
                if len != 8 {
                    return Err(Error::BadOption);
                }
                if b[0] == option_type::SOURCE_LLADDR {
                    NdpOption::SourceLinkLayerAddr(a)
                } else {
                    NdpOption::TargetLinkLayerAddr(a)
                }
            }
            option_type::PREFIX_INFO => {
                if len != 32 {
                    return Err(Error::BadOption);
                }
                let prefix: [u8; 16] = body[14..30].try_into().expect("16 bytes");
                NdpOption::PrefixInfo(NdpPrefixInfo {
                    prefix_len: body[0],
                    on_link: body[1] & 0x80 != 0,
                    autonomous: body[1] & 0x40 != 0,
                    valid_lifetime: be32(body, 2),
                    preferred_lifetime: be32(body, 6),
                    prefix: Ipv6Addr::from(prefix),
                })
            }
            option_type::MTU => {
                if len != 8 {
                    return Err(Error::BadOption);
                }
                NdpOption::Mtu(be32(body, 2))
            }
            kind => NdpOption::Unknown { kind, data: body },
        };
        Ok((opt, len))
    }

    /// Bytes this option takes on the wire (a multiple of 8).
    pub fn buffer_len(&self) -> usize {
        match self {
            NdpOption::SourceLinkLayerAddr(_) | NdpOption::TargetLinkLayerAddr(_) | NdpOption::Mtu(_) => 8,
            NdpOption::PrefixInfo(_) => 32,
            NdpOption::Unknown { data, .. } => (2 + data.len()).div_ceil(8) * 8,
        }
    }

    /// Writes the option at the start of `b` (zero-padding an unknown
    /// option's data to a multiple of 8); returns its length.
    pub fn emit(&self, b: &mut [u8]) -> usize {
        let len = self.buffer_len();
        let b = &mut b[..len];
        b.fill(0);
        b[1] = (len / 8) as u8;
        match self {
            NdpOption::SourceLinkLayerAddr(a) | NdpOption::TargetLinkLayerAddr(a) => {
                b[0] = if matches!(self, NdpOption::SourceLinkLayerAddr(_)) {
                    option_type::SOURCE_LLADDR
                } else {
                    option_type::TARGET_LLADDR
                };
                b[2..8].copy_from_slice(&a.0);
            }
            NdpOption::PrefixInfo(p) => {
                b[0] = option_type::PREFIX_INFO;
                b[2] = p.prefix_len;
                b[3] = (u8::from(p.on_link) << 7) | (u8::from(p.autonomous) << 6);
                put32(b, 4, p.valid_lifetime);
                put32(b, 8, p.preferred_lifetime);
                b[16..32].copy_from_slice(&p.prefix.octets());
            }
            NdpOption::Mtu(m) => {
                b[0] = option_type::MTU;
                put32(b, 4, *m);
            }
            NdpOption::Unknown { kind, data } => {
                b[0] = *kind;
                b[2..2 + data.len()].copy_from_slice(data);
            }
        }
        len
    }
}

/// Iterator over NDP options; yields one `Err` and stops on a malformed one.
#[derive(Debug, Clone)]
pub struct NdpOptionIter<'a> {
    inner: NdpIterInner<'a>,
}

#[derive(Debug, Clone)]
enum NdpIterInner<'a> {
    Raw(&'a [u8]),
    List(core::slice::Iter<'a, NdpOption<'a>>),
}

impl<'a> Iterator for NdpOptionIter<'a> {
    type Item = Result<NdpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            NdpIterInner::List(it) => it.next().copied().map(Ok),
            NdpIterInner::Raw(rest) => {
                if rest.is_empty() {
                    return None;
                }
                match NdpOption::parse(rest) {
                    Ok((opt, len)) => {
                        *rest = &rest[len..];
                        Some(Ok(opt))
                    }
                    Err(e) => {
                        *rest = &[];
                        Some(Err(e))
                    }
                }
            }
        }
    }
}

/// The options of an NDP message.
#[derive(Debug, Clone, Copy)]
pub enum NdpOptions<'a> {
    /// Raw option bytes, as parsed (already validated by `Icmpv6Repr::parse`).
    Raw(&'a [u8]),
    /// A list of options to emit.
    List(&'a [NdpOption<'a>]),
}

impl<'a> NdpOptions<'a> {
    /// No options.
    pub const NONE: NdpOptions<'static> = NdpOptions::List(&[]);

    /// Iterates the options.
    pub fn iter(&self) -> NdpOptionIter<'a> {
        NdpOptionIter {
            inner: match *self {
                NdpOptions::Raw(b) => NdpIterInner::Raw(b),
                NdpOptions::List(l) => NdpIterInner::List(l.iter()),
            },
        }
    }

    /// Checks every option.
    pub fn validate(&self) -> Result<()> {
        self.iter().try_for_each(|o| o.map(|_| ()))
    }

    /// Bytes the options take on the wire.
    pub fn buffer_len(&self) -> usize {
        match self {
            NdpOptions::Raw(b) => b.len(),
            NdpOptions::List(l) => l.iter().map(NdpOption::buffer_len).sum(),
        }
    }

    /// Writes the options at the start of `b`.
    pub fn emit(&self, b: &mut [u8]) {
        match self {
            NdpOptions::Raw(r) => b[..r.len()].copy_from_slice(r),
            NdpOptions::List(l) => {
                let mut at = 0;
                for o in l.iter() {
                    at += o.emit(&mut b[at..]);
                }
            }
        }
    }

    /// The first Source Link-Layer Address option.
    pub fn source_lladdr(&self) -> Option<MacAddr> {
        self.iter().flatten().find_map(|o| match o {
            NdpOption::SourceLinkLayerAddr(a) => Some(a),
            _ => None,
        })
    }

    /// The first Target Link-Layer Address option.
    pub fn target_lladdr(&self) -> Option<MacAddr> {
        self.iter().flatten().find_map(|o| match o {
            NdpOption::TargetLinkLayerAddr(a) => Some(a),
            _ => None,
        })
    }

    /// The first MTU option.
    pub fn mtu(&self) -> Option<u32> {
        self.iter().flatten().find_map(|o| match o {
            NdpOption::Mtu(m) => Some(m),
            _ => None,
        })
    }

    /// All Prefix Information options.
    pub fn prefixes(&self) -> impl Iterator<Item = NdpPrefixInfo> + 'a {
        self.iter().flatten().filter_map(|o| match o {
            NdpOption::PrefixInfo(p) => Some(p),
            _ => None,
        })
    }
}

impl PartialEq for NdpOptions<'_> {
    /// Equal when they hold the same options, raw or listed.
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for NdpOptions<'_> {}

/// An ICMPv6 message as values; data is borrowed from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv6Repr<'a> {
    /// Destination Unreachable (RFC 4443 §3.1).
    DstUnreachable {
        /// Code (0..=8: RFC 4443 §3.1, RFC 7112, RFC 8883).
        code: u8,
        /// As much of the invoking packet as fits.
        quoted: &'a [u8],
    },
    /// Packet Too Big (RFC 4443 §3.2).
    PacketTooBig {
        /// The MTU of the next-hop link.
        mtu: u32,
        /// The invoking packet.
        quoted: &'a [u8],
    },
    /// Time Exceeded (RFC 4443 §3.3; code 0 hop limit, 1 reassembly).
    TimeExceeded {
        /// Code.
        code: u8,
        /// The invoking packet.
        quoted: &'a [u8],
    },
    /// Parameter Problem (RFC 4443 §3.4; code 0 erroneous header field,
    /// 1 unrecognized Next Header, 2 unrecognized IPv6 option).
    ParamProblem {
        /// Code.
        code: u8,
        /// Offset in the invoking packet of the octet where the problem is.
        pointer: u32,
        /// The invoking packet.
        quoted: &'a [u8],
    },
    /// Echo Request.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Echo Reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Router Solicitation (RFC 4861 §4.1).
    RouterSolicit {
        /// Options.
        options: NdpOptions<'a>,
    },
    /// Router Advertisement (RFC 4861 §4.2).
    RouterAdvert {
        /// Cur Hop Limit (0 = unspecified).
        cur_hop_limit: u8,
        /// M flag.
        managed: bool,
        /// O flag.
        other_config: bool,
        /// Router lifetime in seconds (0 = not a default router).
        router_lifetime: u16,
        /// Reachable time in ms.
        reachable_time: u32,
        /// Retrans timer in ms.
        retrans_timer: u32,
        /// Options.
        options: NdpOptions<'a>,
    },
    /// Neighbor Solicitation (RFC 4861 §4.3).
    NeighborSolicit {
        /// The address being resolved.
        target: Ipv6Addr,
        /// Options.
        options: NdpOptions<'a>,
    },
    /// Neighbor Advertisement (RFC 4861 §4.4).
    NeighborAdvert {
        /// R flag.
        router: bool,
        /// S flag.
        solicited: bool,
        /// O flag.
        override_: bool,
        /// The address advertised.
        target: Ipv6Addr,
        /// Options.
        options: NdpOptions<'a>,
    },
    /// Any other message, uninterpreted.
    Other {
        /// Type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// Everything after the checksum.
        body: &'a [u8],
    },
}

fn addr_at(b: &[u8], at: usize) -> Ipv6Addr {
    let a: [u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
    Ipv6Addr::from(a)
}

impl<'a> Icmpv6Repr<'a> {
    /// Parses the message (the whole buffer); `src`/`dst` are the IPv6
    /// addresses for the pseudo-header. Bad checksum → `BadChecksum` (when
    /// software); a body too short for its type → `Truncated`; an NDP
    /// message with a non-zero code or a multicast target → `BadField`;
    /// a malformed NDP option → `BadOption`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        p: &Icmpv6Packet<&'a T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        caps: &ChecksumCaps,
    ) -> Result<Icmpv6Repr<'a>> {
        let buf: &'a [u8] = p.buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if caps.icmp == ChecksumMode::Software && !p.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        let (t, code) = (buf[0], buf[1]);
        let need = |n: usize| {
            if buf.len() < n {
                Err(Error::Truncated)
            } else {
                Ok(())
            }
        };
        let ndp = |n: usize| -> Result<NdpOptions<'a>> {
            need(n)?;
            if code != 0 {
                return Err(Error::BadField);
            }
            let o = NdpOptions::Raw(&buf[n..]);
            o.validate()?;
            Ok(o)
        };
        Ok(match t {
            msg_type::DST_UNREACHABLE | msg_type::PACKET_TOO_BIG | msg_type::TIME_EXCEEDED => {
                need(8)?;
                let quoted = &buf[8..];
                match t {
                    msg_type::DST_UNREACHABLE if code <= 8 => Icmpv6Repr::DstUnreachable { code, quoted },
                    msg_type::PACKET_TOO_BIG => Icmpv6Repr::PacketTooBig { mtu: be32(buf, 4), quoted },
                    msg_type::TIME_EXCEEDED if code <= 1 => Icmpv6Repr::TimeExceeded { code, quoted },
                    _ => return Err(Error::BadField),
                }
            }
            msg_type::PARAM_PROBLEM => {
                need(8)?;
                Icmpv6Repr::ParamProblem { code, pointer: be32(buf, 4), quoted: &buf[8..] }
            }
            msg_type::ECHO_REQUEST | msg_type::ECHO_REPLY => {
                // Any code, as for ICMPv4 (RFC 4443 §4.1 gives it no meaning;
                // Linux answers whatever it is).
                need(8)?;
                let (ident, seq_no, data) = (be16(buf, 4), be16(buf, 6), &buf[8..]);
                if t == msg_type::ECHO_REQUEST {
                    Icmpv6Repr::EchoRequest { ident, seq_no, data }
                } else {
                    Icmpv6Repr::EchoReply { ident, seq_no, data }
                }
            }
            msg_type::ROUTER_SOLICIT => Icmpv6Repr::RouterSolicit { options: ndp(8)? },
            msg_type::ROUTER_ADVERT => {
                let options = ndp(16)?;
                Icmpv6Repr::RouterAdvert {
                    cur_hop_limit: buf[4],
                    managed: buf[5] & 0x80 != 0,
                    other_config: buf[5] & 0x40 != 0,
                    router_lifetime: be16(buf, 6),
                    reachable_time: be32(buf, 8),
                    retrans_timer: be32(buf, 12),
                    options,
                }
            }
            msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT => {
                let options = ndp(24)?;
                let target = addr_at(buf, 8);
                if target.is_multicast() {
                    return Err(Error::BadField);
                }
                if t == msg_type::NEIGHBOR_SOLICIT {
                    Icmpv6Repr::NeighborSolicit { target, options }
                } else {
                    Icmpv6Repr::NeighborAdvert {
                        router: buf[4] & 0x80 != 0,
                        solicited: buf[4] & 0x40 != 0,
                        override_: buf[4] & 0x20 != 0,
                        target,
                        options,
                    }
                }
            }
            msg_type => Icmpv6Repr::Other { msg_type, code, body: &buf[4..] },
        })
    }

    /// Bytes from the start of the message to the data/options part.
    pub fn header_len(&self) -> usize {
        match self {
            Icmpv6Repr::DstUnreachable { .. }
            | Icmpv6Repr::PacketTooBig { .. }
            | Icmpv6Repr::TimeExceeded { .. }
            | Icmpv6Repr::ParamProblem { .. }
            | Icmpv6Repr::EchoRequest { .. }
            | Icmpv6Repr::EchoReply { .. }
            | Icmpv6Repr::RouterSolicit { .. } => 8,
            Icmpv6Repr::RouterAdvert { .. } => 16,
            Icmpv6Repr::NeighborSolicit { .. } | Icmpv6Repr::NeighborAdvert { .. } => 24,
            Icmpv6Repr::Other { .. } => 4,
        }
    }

    /// The whole message length.
    pub fn buffer_len(&self) -> usize {
        self.header_len()
            + match self {
                Icmpv6Repr::DstUnreachable { quoted, .. }
                | Icmpv6Repr::PacketTooBig { quoted, .. }
                | Icmpv6Repr::TimeExceeded { quoted, .. }
                | Icmpv6Repr::ParamProblem { quoted, .. } => quoted.len(),
                Icmpv6Repr::EchoRequest { data, .. } | Icmpv6Repr::EchoReply { data, .. } => data.len(),
                Icmpv6Repr::RouterSolicit { options }
                | Icmpv6Repr::RouterAdvert { options, .. }
                | Icmpv6Repr::NeighborSolicit { options, .. }
                | Icmpv6Repr::NeighborAdvert { options, .. } => options.buffer_len(),
                Icmpv6Repr::Other { body, .. } => body.len(),
            }
    }

    /// Writes the message and (unless offloaded) the checksum. The buffer
    /// must be exactly [`buffer_len`](Self::buffer_len) bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        p: &mut Icmpv6Packet<&mut T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        caps: &ChecksumCaps,
    ) {
        let hl = self.header_len();
        {
            let (b, rest) = p.buffer.as_mut().split_at_mut(hl);
            b[1] = 0;
            b[4..].fill(0);
            match *self {
                Icmpv6Repr::DstUnreachable { code, quoted } => {
                    b[0] = msg_type::DST_UNREACHABLE;
                    b[1] = code;
                    rest[..quoted.len()].copy_from_slice(quoted);
                }
                Icmpv6Repr::PacketTooBig { mtu, quoted } => {
                    rest[..quoted.len()].copy_from_slice(quoted);
                    b[0] = msg_type::PACKET_TOO_BIG;
                    put32(b, 4, mtu);
                }
                Icmpv6Repr::TimeExceeded { code, quoted } => {
                    b[0] = msg_type::TIME_EXCEEDED;
                    b[1] = code;
                    rest[..quoted.len()].copy_from_slice(quoted);
                }
                Icmpv6Repr::ParamProblem { code, pointer, quoted } => {
                    b[0] = msg_type::PARAM_PROBLEM;
                    b[1] = code;
                    put32(b, 4, pointer);
                    rest[..quoted.len()].copy_from_slice(quoted);
                }
                Icmpv6Repr::EchoRequest { ident, seq_no, data } | Icmpv6Repr::EchoReply { ident, seq_no, data } => {
                    rest[..data.len()].copy_from_slice(data);
                    b[0] = if matches!(self, Icmpv6Repr::EchoRequest { .. }) {
                        msg_type::ECHO_REQUEST
                    } else {
                        msg_type::ECHO_REPLY
                    };
                    put16(b, 4, ident);
                    put16(b, 6, seq_no);
                }
                Icmpv6Repr::RouterSolicit { options } => {
                    options.emit(rest);
                    b[0] = msg_type::ROUTER_SOLICIT;
                }
                Icmpv6Repr::RouterAdvert {
                    cur_hop_limit,
                    managed,
                    other_config,
                    router_lifetime,
                    reachable_time,
                    retrans_timer,
                    options,
                } => {
                    options.emit(rest);
                    b[0] = msg_type::ROUTER_ADVERT;
                    b[4] = cur_hop_limit;
                    b[5] = (u8::from(managed) << 7) | (u8::from(other_config) << 6);
                    put16(b, 6, router_lifetime);
                    put32(b, 8, reachable_time);
                    put32(b, 12, retrans_timer);
                }
                Icmpv6Repr::NeighborSolicit { target, options } => {
                    options.emit(rest);
                    b[0] = msg_type::NEIGHBOR_SOLICIT;
                    b[8..24].copy_from_slice(&target.octets());
                }
                Icmpv6Repr::NeighborAdvert { router, solicited, override_, target, options } => {
                    options.emit(rest);
                    b[0] = msg_type::NEIGHBOR_ADVERT;
                    b[4] = (u8::from(router) << 7) | (u8::from(solicited) << 6) | (u8::from(override_) << 5);
                    b[8..24].copy_from_slice(&target.octets());
                }
                Icmpv6Repr::Other { msg_type, code, body } => {
                    rest[..body.len()].copy_from_slice(body);
                    b[0] = msg_type;
                    b[1] = code;
                }
            }
        }
        match caps.icmp {
            ChecksumMode::Software => p.fill_checksum(src, dst),
            ChecksumMode::Offloaded => p.set_checksum(0),
        }
    }
}

impl fmt::Display for Icmpv6Repr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Icmpv6Repr::DstUnreachable { code, .. } => write!(f, "ICMPv6 unreachable code {code}"),
            Icmpv6Repr::PacketTooBig { mtu, .. } => write!(f, "ICMPv6 packet too big mtu {mtu}"),
            Icmpv6Repr::TimeExceeded { code, .. } => write!(f, "ICMPv6 time exceeded code {code}"),
            Icmpv6Repr::ParamProblem { code, pointer, .. } => {
                write!(f, "ICMPv6 parameter problem code {code} pointer {pointer}")
            }
            Icmpv6Repr::EchoRequest { ident, seq_no, .. } => {
                write!(f, "ICMPv6 echo request id {ident} seq {seq_no}")
            }
            Icmpv6Repr::EchoReply { ident, seq_no, .. } => {
                write!(f, "ICMPv6 echo reply id {ident} seq {seq_no}")
            }
            Icmpv6Repr::RouterSolicit { .. } => write!(f, "ICMPv6 router solicitation"),
            Icmpv6Repr::RouterAdvert { router_lifetime, .. } => {
                write!(f, "ICMPv6 router advertisement lifetime {router_lifetime}")
            }
            Icmpv6Repr::NeighborSolicit { target, .. } => {
                write!(f, "ICMPv6 neighbor solicitation who has {target}")
            }
            Icmpv6Repr::NeighborAdvert { target, .. } => {
                write!(f, "ICMPv6 neighbor advertisement {target}")
            }
            Icmpv6Repr::Other { msg_type, code, .. } => {
                write!(f, "ICMPv6 type {msg_type} code {code}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SW: ChecksumCaps = ChecksumCaps::software();

    fn addrs() -> (Ipv6Addr, Ipv6Addr) {
        ("2001:2::1".parse().unwrap(), "2001:2::2".parse().unwrap())
    }

    fn round_trip(r: Icmpv6Repr<'_>) -> Vec<u8> {
        let (s, d) = addrs();
        let mut buf = vec![0xa5u8; r.buffer_len()];
        r.emit(&mut Icmpv6Packet::new_unchecked(&mut buf), &s, &d, &SW);
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum(&s, &d));
        assert_eq!(Icmpv6Repr::parse(&p, &s, &d, &SW).unwrap(), r);
        buf
    }

    fn parse_bytes(buf: &mut [u8]) -> Result<Icmpv6Repr<'_>> {
        let (s, d) = addrs();
        Icmpv6Packet::new_unchecked(&mut *buf).fill_checksum(&s, &d);
        let p = Icmpv6Packet::new_checked(&*buf)?;
        Icmpv6Repr::parse(&p, &s, &d, &SW)
    }

    #[test]
    fn rfc4443_3_4_parameter_problem_round_trip() {
        let q = [0x60u8, 0, 0, 0, 0, 8, 0, 64];
        let b = round_trip(Icmpv6Repr::ParamProblem { code: 2, pointer: 42, quoted: &q });
        assert_eq!(&b[..2], &[4, 2]);
        assert_eq!(&b[4..8], &42u32.to_be_bytes());
    }

    #[test]
    fn rfc4443_4_echo_round_trip() {
        round_trip(Icmpv6Repr::EchoRequest { ident: 9, seq_no: 1, data: b"0123456789" });
        round_trip(Icmpv6Repr::EchoReply { ident: 9, seq_no: 1, data: b"" });
    }

    #[test]
    fn rfc4443_3_errors_round_trip() {
        let q = [0x60u8, 0, 0, 0, 0, 8, 17, 64];
        round_trip(Icmpv6Repr::DstUnreachable { code: 4, quoted: &q });
        let b = round_trip(Icmpv6Repr::PacketTooBig { mtu: 1280, quoted: &q });
        assert_eq!(&b[4..8], &1280u32.to_be_bytes());
        round_trip(Icmpv6Repr::TimeExceeded { code: 1, quoted: &q });
        round_trip(Icmpv6Repr::Other { msg_type: 200, code: 0, body: &[0, 0, 0, 6, 1, 2] });
    }

    #[test]
    fn rfc4443_2_3_checksum_covers_pseudo_header() {
        let (s, d) = addrs();
        let buf = round_trip(Icmpv6Repr::EchoRequest { ident: 1, seq_no: 2, data: b"x" });
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        // Swapping source and destination leaves a one's-complement sum alone.
        assert!(Icmpv6Repr::parse(&p, &d, &s, &SW).is_ok());
        let other: Ipv6Addr = "2001:2::3".parse().unwrap();
        assert_eq!(Icmpv6Repr::parse(&p, &s, &other, &SW), Err(Error::BadChecksum));
    }

    #[test]
    fn rfc4861_4_3_neighbor_solicit_with_source_lladdr() {
        let opts = [NdpOption::SourceLinkLayerAddr(MacAddr([2, 0, 0, 0, 0, 1]))];
        let r = Icmpv6Repr::NeighborSolicit { target: "2001:2::2".parse().unwrap(), options: NdpOptions::List(&opts) };
        let buf = round_trip(r);
        assert_eq!(buf.len(), 32);
        assert_eq!(&buf[24..32], &[1, 1, 2, 0, 0, 0, 0, 1]);
        let (s, d) = addrs();
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        match Icmpv6Repr::parse(&p, &s, &d, &SW).unwrap() {
            Icmpv6Repr::NeighborSolicit { options, .. } => {
                assert_eq!(options.source_lladdr(), Some(MacAddr([2, 0, 0, 0, 0, 1])));
                assert_eq!(options.target_lladdr(), None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rfc4861_4_4_neighbor_advert_flags_and_target_lladdr() {
        let opts = [NdpOption::TargetLinkLayerAddr(MacAddr([2, 0, 0, 0, 0, 2]))];
        let buf = round_trip(Icmpv6Repr::NeighborAdvert {
            router: false,
            solicited: true,
            override_: true,
            target: "2001:2::2".parse().unwrap(),
            options: NdpOptions::List(&opts),
        });
        assert_eq!(buf[4], 0x60);
    }

    #[test]
    fn rfc4861_4_2_router_advert_with_prefixes_mtu_and_unknown() {
        let opts = [
            NdpOption::SourceLinkLayerAddr(MacAddr([2, 0, 0, 0, 0, 9])),
            NdpOption::Mtu(1500),
            NdpOption::PrefixInfo(NdpPrefixInfo {
                prefix_len: 64,
                on_link: true,
                autonomous: true,
                valid_lifetime: 86400,
                preferred_lifetime: 14400,
                prefix: "2001:2::".parse().unwrap(),
            }),
            NdpOption::PrefixInfo(NdpPrefixInfo {
                prefix_len: 64,
                on_link: true,
                autonomous: false,
                valid_lifetime: u32::MAX,
                preferred_lifetime: u32::MAX,
                prefix: "2001:2:0:1::".parse().unwrap(),
            }),
            NdpOption::Unknown {
                kind: 25, // RDNSS (RFC 8106), not interpreted here
                data: &[0, 0, 0, 0, 0, 60],
            },
        ];
        let r = Icmpv6Repr::RouterAdvert {
            cur_hop_limit: 64,
            managed: false,
            other_config: true,
            router_lifetime: 1800,
            reachable_time: 0,
            retrans_timer: 0,
            options: NdpOptions::List(&opts),
        };
        let buf = round_trip(r);
        let (s, d) = addrs();
        let p = Icmpv6Packet::new_checked(&buf[..]).unwrap();
        let Icmpv6Repr::RouterAdvert { options, .. } = Icmpv6Repr::parse(&p, &s, &d, &SW).unwrap() else { panic!() };
        assert_eq!(options.mtu(), Some(1500));
        assert_eq!(options.prefixes().count(), 2);
        assert_eq!(options.iter().count(), 5);
    }

    #[test]
    fn rfc4861_4_1_router_solicit() {
        round_trip(Icmpv6Repr::RouterSolicit { options: NdpOptions::NONE });
    }

    #[test]
    fn rfc4861_4_6_zero_length_option_rejected() {
        let mut buf = vec![0u8; 32];
        buf[0] = msg_type::NEIGHBOR_SOLICIT;
        buf[8..24].copy_from_slice(&"2001:2::2".parse::<Ipv6Addr>().unwrap().octets());
        buf[24] = 1;
        buf[25] = 0; // length 0
        assert_eq!(parse_bytes(&mut buf), Err(Error::BadOption));
        // Length running past the message.
        buf[25] = 2;
        assert_eq!(parse_bytes(&mut buf), Err(Error::BadOption));
        // One trailing byte is not an option either.
        let mut short = buf[..25].to_vec();
        assert_eq!(parse_bytes(&mut short), Err(Error::BadOption));
        // Unknown option skipped by length.
        buf[24] = 200;
        buf[25] = 1;
        assert!(parse_bytes(&mut buf).is_ok());
    }

    #[test]
    fn rfc4861_7_1_1_ndp_code_and_target_checked() {
        let r = Icmpv6Repr::NeighborSolicit { target: "2001:2::2".parse().unwrap(), options: NdpOptions::NONE };
        let (s, d) = addrs();
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut Icmpv6Packet::new_unchecked(&mut buf), &s, &d, &SW);
        buf[1] = 1;
        assert_eq!(parse_bytes(&mut buf), Err(Error::BadField));
        buf[1] = 0;
        buf[8] = 0xff; // multicast target
        assert_eq!(parse_bytes(&mut buf), Err(Error::BadField));
        assert_eq!(parse_bytes(&mut buf[..20]), Err(Error::Truncated));
    }
}
