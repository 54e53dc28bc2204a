//! TCP segments (RFC 9293 §3.1) and the options a TCP implementation needs:
//! MSS (RFC 9293 §3.2), window scale and timestamps (RFC 7323), SACK and
//! SACK-permitted (RFC 2018).
//!
//! ```text
//! +-------------------------------+-------------------------------+
//! |          Source Port          |       Destination Port        |
//! +-------------------------------+-------------------------------+
//! |                        Sequence Number                        |
//! |                    Acknowledgment Number                      |
//! +-------+-------+-+-+-+-+-+-+-+-+-------------------------------+
//! |  Data |       |C|E|U|A|P|R|S|F|                               |
//! | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//! +-------+-------+-+-+-+-+-+-+-+-+-------------------------------+
//! |           Checksum            |         Urgent Pointer        |
//! +-------------------------------+-------------------------------+
//! |                    Options (Data Offset > 5)                  |
//! ```
//!
//! A view's buffer is the whole segment: the caller slices it to the length
//! the IP header gives (TCP has no length field of its own).

use core::cmp::Ordering;
use core::ops::{Add, BitOr, BitOrAssign, Sub};
use std::fmt;

use super::{
    be16, be32, check_declared_len, put16, put32, ChecksumCaps, ChecksumMode, Error, IpPair, IpProtocol, Result,
};
use crate::checksum;

/// Length of the header without options.
pub const HEADER_LEN: usize = 20;
/// Largest header (Data Offset 15).
pub const MAX_HEADER_LEN: usize = 60;
/// Most SACK blocks one option can carry (RFC 2018 §3).
pub const MAX_SACK_BLOCKS: usize = 4;
/// Largest window shift (RFC 7323 §2.3).
pub const MAX_WINDOW_SHIFT: u8 = 14;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const OFF_FLAGS: usize = 12;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// Option kinds.
pub mod kind {
    /// End of option list.
    pub const EOL: u8 = 0;
    /// No-operation (padding).
    pub const NOP: u8 = 1;
    /// Maximum segment size.
    pub const MSS: u8 = 2;
    /// Window scale.
    pub const WINDOW_SCALE: u8 = 3;
    /// SACK permitted.
    pub const SACK_PERMITTED: u8 = 4;
    /// SACK blocks.
    pub const SACK: u8 = 5;
    /// Timestamps.
    pub const TIMESTAMP: u8 = 8;
}

/// A TCP sequence number: arithmetic and comparison modulo 2^32
/// (RFC 9293 §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl Add<u32> for SeqNumber {
    type Output = SeqNumber;
    fn add(self, rhs: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(rhs))
    }
}

impl Sub<u32> for SeqNumber {
    type Output = SeqNumber;
    fn sub(self, rhs: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(rhs))
    }
}

impl Sub for SeqNumber {
    type Output = i32;
    /// The signed distance `self - rhs` modulo 2^32.
    fn sub(self, rhs: SeqNumber) -> i32 {
        self.0.wrapping_sub(rhs.0) as i32
    }
}

impl PartialOrd for SeqNumber {
    /// Modular order: `a < b` if `b` is less than 2^31 ahead of `a`. Not a
    /// total order over all of u32, only over windows smaller than 2^31.
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some((*self - *other).cmp(&0))
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// TCP control flags (the 8 classic bits of byte 13, plus AE of byte 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: TcpFlags = TcpFlags(0x001);
    /// Synchronize sequence numbers.
    pub const SYN: TcpFlags = TcpFlags(0x002);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x004);
    /// Push.
    pub const PSH: TcpFlags = TcpFlags(0x008);
    /// Acknowledgment field is significant.
    pub const ACK: TcpFlags = TcpFlags(0x010);
    /// Urgent pointer field is significant.
    pub const URG: TcpFlags = TcpFlags(0x020);
    /// ECN-Echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x040);
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x080);
    /// Accurate-ECN bit (formerly NS, RFC 3540; now AccECN's AE).
    pub const AE: TcpFlags = TcpFlags(0x100);
    /// No flags.
    pub const NONE: TcpFlags = TcpFlags(0);

    /// True if all bits of `other` are set.
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if any bit of `other` is set.
    pub fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// FIN set.
    pub fn fin(self) -> bool {
        self.contains(Self::FIN)
    }
    /// SYN set.
    pub fn syn(self) -> bool {
        self.contains(Self::SYN)
    }
    /// RST set.
    pub fn rst(self) -> bool {
        self.contains(Self::RST)
    }
    /// PSH set.
    pub fn psh(self) -> bool {
        self.contains(Self::PSH)
    }
    /// ACK set.
    pub fn ack(self) -> bool {
        self.contains(Self::ACK)
    }
    /// URG set.
    pub fn urg(self) -> bool {
        self.contains(Self::URG)
    }
    /// ECE set.
    pub fn ece(self) -> bool {
        self.contains(Self::ECE)
    }
    /// CWR set.
    pub fn cwr(self) -> bool {
        self.contains(Self::CWR)
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Display for TcpFlags {
    /// tcpdump style: `S`, `S.`, `P.`, `F.`, `R`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (flag, c) in [
            (Self::SYN, 'S'),
            (Self::FIN, 'F'),
            (Self::PSH, 'P'),
            (Self::RST, 'R'),
            (Self::URG, 'U'),
            (Self::ECE, 'E'),
            (Self::CWR, 'W'),
            (Self::AE, 'A'),
            (Self::ACK, '.'),
        ] {
            if self.contains(flag) {
                write!(f, "{c}")?;
            }
        }
        if self.0 == 0 {
            write!(f, "none")?;
        }
        Ok(())
    }
}

/// The Timestamps option (RFC 7323 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpTimestamp {
    /// TSval: the sender's clock.
    pub tsval: u32,
    /// TSecr: the echoed TSval (valid when ACK is set).
    pub tsecr: u32,
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// End of option list.
    EndOfList,
    /// No-operation.
    NoOp,
    /// Maximum segment size.
    MaxSegmentSize(u16),
    /// Window scale shift count (as sent; see [`MAX_WINDOW_SHIFT`]).
    WindowScale(u8),
    /// SACK permitted.
    SackPermitted,
    /// SACK blocks (left edge, right edge); 1 to 4 of them.
    SackRange([Option<(SeqNumber, SeqNumber)>; MAX_SACK_BLOCKS]),
    /// Timestamps.
    Timestamp(TcpTimestamp),
    /// Any other option: kind and the bytes after kind and length.
    Unknown {
        /// Option kind.
        kind: u8,
        /// Option data.
        data: &'a [u8],
    },
}

impl<'a> TcpOption<'a> {
    /// Parses the option at the start of `b`; returns it and its length.
    /// Lengths are checked against the kind (RFC 9293 §3.1 MSS 4, RFC 7323
    /// WS 3 and TS 10, RFC 2018 SACK-permitted 2 and SACK 2 + 8n, n ≤ 4);
    /// any mismatch, a length below 2, or one running past the options is
    /// `BadOption`.
    pub fn parse(b: &'a [u8]) -> Result<(TcpOption<'a>, usize)> {
        let Some(&k) = b.first() else {
            return Err(Error::BadOption);
        };
        match k {
            kind::EOL => return Ok((TcpOption::EndOfList, 1)),
            kind::NOP => return Ok((TcpOption::NoOp, 1)),
            _ => {}
        }
        let Some(&len) = b.get(1) else {
            return Err(Error::BadOption);
        };
        let len = usize::from(len);
        if len < 2 || len > b.len() {
            return Err(Error::BadOption);
        }
        let data = &b[2..len];
        let opt = match (k, len) {
            (kind::MSS, 4) => TcpOption::MaxSegmentSize(be16(data, 0)),
            (kind::WINDOW_SCALE, 3) => TcpOption::WindowScale(data[0]),
            (kind::SACK_PERMITTED, 2) => TcpOption::SackPermitted,
            (kind::SACK, _) if len >= 10 && (len - 2) % 8 == 0 && (len - 2) / 8 <= MAX_SACK_BLOCKS => {
                let mut blocks = [None; MAX_SACK_BLOCKS];
                for (slot, c) in blocks.iter_mut().zip(data.chunks_exact(8)) {
                    *slot = Some((SeqNumber(be32(c, 0)), SeqNumber(be32(c, 4))));
                }
                TcpOption::SackRange(blocks)
            }
            (kind::TIMESTAMP, 10) => TcpOption::Timestamp(TcpTimestamp { tsval: be32(data, 0), tsecr: be32(data, 4) }),
            (kind::MSS | kind::WINDOW_SCALE | kind::SACK_PERMITTED | kind::SACK | kind::TIMESTAMP, _) => {
                return Err(Error::BadOption)
            }
            (kind, _) => TcpOption::Unknown { kind, data },
        };
        Ok((opt, len))
    }

    /// Bytes this option takes (no padding).
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOp => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::SackRange(b) => 2 + 8 * b.iter().flatten().count(),
            TcpOption::Timestamp(_) => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Writes the option at the start of `b`; returns its length.
    pub fn emit(&self, b: &mut [u8]) -> usize {
        let len = self.buffer_len();
        match *self {
            TcpOption::EndOfList => b[0] = kind::EOL,
            TcpOption::NoOp => b[0] = kind::NOP,
            TcpOption::MaxSegmentSize(m) => {
                b[..2].copy_from_slice(&[kind::MSS, 4]);
                put16(b, 2, m);
            }
            TcpOption::WindowScale(s) => b[..3].copy_from_slice(&[kind::WINDOW_SCALE, 3, s]),
            TcpOption::SackPermitted => b[..2].copy_from_slice(&[kind::SACK_PERMITTED, 2]),
            TcpOption::SackRange(blocks) => {
                b[..2].copy_from_slice(&[kind::SACK, len as u8]);
                for (i, (l, r)) in blocks.iter().flatten().enumerate() {
                    put32(b, 2 + 8 * i, l.0);
                    put32(b, 6 + 8 * i, r.0);
                }
            }
            TcpOption::Timestamp(t) => {
                b[..2].copy_from_slice(&[kind::TIMESTAMP, 10]);
                put32(b, 2, t.tsval);
                put32(b, 6, t.tsecr);
            }
            TcpOption::Unknown { kind, data } => {
                b[0] = kind;
                b[1] = len as u8;
                b[2..len].copy_from_slice(data);
            }
        }
        len
    }
}

/// Iterator over the options area; stops after End of List, and yields one
/// `Err` and stops on a malformed option.
#[derive(Debug, Clone)]
pub struct TcpOptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptionIter<'a> {
    /// Iterates over an options area.
    pub fn new(options: &'a [u8]) -> Self {
        TcpOptionIter { rest: options }
    }
}

impl<'a> Iterator for TcpOptionIter<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match TcpOption::parse(self.rest) {
            Ok((TcpOption::EndOfList, _)) => {
                self.rest = &[];
                Some(Ok(TcpOption::EndOfList))
            }
            Ok((opt, len)) => {
                self.rest = &self.rest[len..];
                Some(Ok(opt))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

view! {
    /// A view of a TCP segment.
    TcpPacket
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Checks lengths: `Truncated` if the buffer is shorter than 20
    /// or than Data Offset says, `BadHeaderLen` if Data Offset < 5.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        check_declared_len(len, HEADER_LEN, || self.header_len(), Error::BadHeaderLen)?;
        Ok(())
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Sequence number.
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(be32(self.buffer.as_ref(), field::SEQ))
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(be32(self.buffer.as_ref(), field::ACK))
    }

    /// Header length in bytes (Data Offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::OFF_FLAGS] >> 4) * 4
    }

    /// Control flags.
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(be16(self.buffer.as_ref(), field::OFF_FLAGS) & 0x01ff)
    }

    /// Window (unscaled).
    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW)
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer.
    pub fn urgent_ptr(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT)
    }

    /// The options area.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// Iterates the options.
    pub fn option_iter(&self) -> TcpOptionIter<'_> {
        TcpOptionIter::new(self.options())
    }

    /// The payload (after the options).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// True if the checksum over the pseudo-header and segment verifies.
    pub fn verify_checksum(&self, ip: &IpPair) -> bool {
        let b = self.buffer.as_ref();
        checksum::add(ip.pseudo_header_sum(IpProtocol::Tcp, b.len()), checksum::sum(b)) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, v);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, v);
    }

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, v: SeqNumber) {
        put32(self.buffer.as_mut(), field::SEQ, v.0);
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, v: SeqNumber) {
        put32(self.buffer.as_mut(), field::ACK, v.0);
    }

    /// Sets Data Offset (from a header length in bytes, a multiple of 4) and
    /// the flags; reserved bits are zeroed.
    pub fn set_header_len_and_flags(&mut self, header_len: usize, flags: TcpFlags) {
        let v = (((header_len / 4) as u16) << 12) | (flags.0 & 0x01ff);
        put16(self.buffer.as_mut(), field::OFF_FLAGS, v);
    }

    /// Sets the window.
    pub fn set_window_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::WINDOW, v);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v);
    }

    /// Sets the urgent pointer.
    pub fn set_urgent_ptr(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::URGENT, v);
    }

    /// Computes and writes the checksum over the pseudo-header and the whole
    /// buffer.
    pub fn fill_checksum(&mut self, ip: &IpPair) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let s = checksum::add(ip.pseudo_header_sum(IpProtocol::Tcp, b.len()), checksum::sum(b));
        self.set_checksum(!s);
    }

    /// The options area, writable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..hl]
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }
}

/// A TCP header, with its options, as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: SeqNumber,
    /// Acknowledgment number (meaningful when `flags` has ACK).
    pub ack_number: SeqNumber,
    /// Control flags.
    pub flags: TcpFlags,
    /// Window field (unscaled).
    pub window_len: u16,
    /// Urgent pointer.
    pub urgent_ptr: u16,
    /// MSS option.
    pub max_seg_size: Option<u16>,
    /// Window scale option, clamped to [`MAX_WINDOW_SHIFT`] on parse.
    pub window_scale: Option<u8>,
    /// SACK-permitted option.
    pub sack_permitted: bool,
    /// SACK blocks; `None`s after all `Some`s.
    pub sack_ranges: [Option<(SeqNumber, SeqNumber)>; MAX_SACK_BLOCKS],
    /// Timestamps option.
    pub timestamp: Option<TcpTimestamp>,
    /// Payload length.
    pub payload_len: usize,
}

impl TcpRepr {
    /// A header with the given ports, numbers and flags and no options.
    pub fn new(
        src_port: u16,
        dst_port: u16,
        seq_number: SeqNumber,
        ack_number: SeqNumber,
        flags: TcpFlags,
        window_len: u16,
    ) -> Self {
        TcpRepr {
            src_port,
            dst_port,
            seq_number,
            ack_number,
            flags,
            window_len,
            urgent_ptr: 0,
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [None; MAX_SACK_BLOCKS],
            timestamp: None,
            payload_len: 0,
        }
    }

    /// Parses a segment (the whole buffer): lengths, checksum (when
    /// software), zero ports (`BadField`), and options. Unknown options are
    /// skipped by length; malformed ones are `BadOption`. A window scale
    /// above 14 is taken as 14 (RFC 7323 §2.3). Later duplicates win.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &TcpPacket<&T>, ip: &IpPair, caps: &ChecksumCaps) -> Result<TcpRepr> {
        p.check_len()?;
        if p.src_port() == 0 || p.dst_port() == 0 {
            return Err(Error::BadField);
        }
        if caps.tcp == ChecksumMode::Software && !p.verify_checksum(ip) {
            return Err(Error::BadChecksum);
        }
        let mut r = TcpRepr::new(p.src_port(), p.dst_port(), p.seq_number(), p.ack_number(), p.flags(), p.window_len());
        r.urgent_ptr = p.urgent_ptr();
        r.payload_len = p.payload().len();
        // Fast path for the layout nearly every established segment carries
        // (RFC 7323 Appendix A, Linux's tcp_parse_aligned_timestamp): NOP, NOP,
        // timestamps, and nothing else.
        let o = p.options();
        if o.len() == 12 && o[..4] == [kind::NOP, kind::NOP, kind::TIMESTAMP, 10] {
            r.timestamp = Some(TcpTimestamp { tsval: be32(o, 4), tsecr: be32(o, 8) });
            return Ok(r);
        }
        for opt in p.option_iter() {
            match opt? {
                TcpOption::EndOfList | TcpOption::NoOp | TcpOption::Unknown { .. } => {}
                TcpOption::MaxSegmentSize(m) => r.max_seg_size = Some(m),
                TcpOption::WindowScale(s) => r.window_scale = Some(s.min(MAX_WINDOW_SHIFT)),
                TcpOption::SackPermitted => r.sack_permitted = true,
                TcpOption::SackRange(b) => r.sack_ranges = b,
                TcpOption::Timestamp(t) => r.timestamp = Some(t),
            }
        }
        Ok(r)
    }

    /// Length of the fixed options (everything but SACK blocks), laid out
    /// 4-byte aligned as Linux does: MSS (4), SACK-permitted + timestamps
    /// (12) or either alone with NOP padding (4 / 12), window scale (4).
    fn fixed_options_len(&self) -> usize {
        let mut n = 0;
        if self.max_seg_size.is_some() {
            n += 4;
        }
        n += match (self.sack_permitted, self.timestamp.is_some()) {
            (true, true) | (false, true) => 12,
            (true, false) => 4,
            (false, false) => 0,
        };
        if self.window_scale.is_some() {
            n += 4;
        }
        n
    }

    /// How many SACK blocks `emit` writes: as many as fit in the 40 bytes of
    /// option space after the fixed options (3 with timestamps, 4 without).
    pub fn sack_blocks_emitted(&self) -> usize {
        let want = self.sack_ranges.iter().flatten().count();
        if want == 0 {
            return 0;
        }
        let room = (MAX_HEADER_LEN - HEADER_LEN).saturating_sub(self.fixed_options_len());
        want.min(room.saturating_sub(4) / 8)
    }

    /// Length of the options `emit` writes (a multiple of 4).
    pub fn options_len(&self) -> usize {
        let sack = self.sack_blocks_emitted();
        self.fixed_options_len() + if sack > 0 { 4 + 8 * sack } else { 0 }
    }

    /// Header length `emit` writes.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Sequence space the segment takes: payload + SYN + FIN.
    pub fn segment_len(&self) -> usize {
        self.payload_len + usize::from(self.flags.syn()) + usize::from(self.flags.fin())
    }

    /// Writes header and options. The payload must already be in place at
    /// `header_len()..header_len() + payload_len`, and the checksum covers
    /// exactly `buffer_len()` bytes of the view. When offloaded, the
    /// pseudo-header sum is written for the NIC to complete.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        p: &mut TcpPacket<&mut T>,
        ip: &IpPair,
        caps: &ChecksumCaps,
    ) {
        let hl = self.header_len();
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq_number(self.seq_number);
        p.set_ack_number(self.ack_number);
        p.set_header_len_and_flags(hl, self.flags);
        p.set_window_len(self.window_len);
        p.set_urgent_ptr(self.urgent_ptr);
        {
            let o = p.options_mut();
            let mut at = 0;
            if let Some(m) = self.max_seg_size {
                at += TcpOption::MaxSegmentSize(m).emit(&mut o[at..]);
            }
            match (self.sack_permitted, self.timestamp) {
                (true, Some(t)) => {
                    at += TcpOption::SackPermitted.emit(&mut o[at..]);
                    at += TcpOption::Timestamp(t).emit(&mut o[at..]);
                }
                (false, Some(t)) => {
                    o[at..at + 2].fill(kind::NOP);
                    at += 2;
                    at += TcpOption::Timestamp(t).emit(&mut o[at..]);
                }
                (true, None) => {
                    o[at..at + 2].fill(kind::NOP);
                    at += 2;
                    at += TcpOption::SackPermitted.emit(&mut o[at..]);
                }
                (false, None) => {}
            }
            if let Some(s) = self.window_scale {
                o[at] = kind::NOP;
                at += 1;
                at += TcpOption::WindowScale(s).emit(&mut o[at..]);
            }
            let n = self.sack_blocks_emitted();
            if n > 0 {
                let mut blocks = [None; MAX_SACK_BLOCKS];
                for (slot, b) in blocks.iter_mut().zip(self.sack_ranges.iter().flatten()).take(n) {
                    *slot = Some(*b);
                }
                o[at..at + 2].fill(kind::NOP);
                at += 2;
                at += TcpOption::SackRange(blocks).emit(&mut o[at..]);
            }
            debug_assert_eq!(at, o.len());
        }
        let len = self.buffer_len();
        let mut seg = TcpPacket::new_unchecked(&mut p.buffer.as_mut()[..len]);
        match caps.tcp {
            ChecksumMode::Software => seg.fill_checksum(ip),
            ChecksumMode::Offloaded => seg.set_checksum(ip.pseudo_header_sum(IpProtocol::Tcp, len)),
        }
    }

    /// Copies `payload` in (after the header) and emits; `payload_len` is
    /// taken from it.
    pub fn emit_with_payload<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        p: &mut TcpPacket<&mut T>,
        ip: &IpPair,
        payload: &[u8],
        caps: &ChecksumCaps,
    ) {
        let repr = TcpRepr { payload_len: payload.len(), ..*self };
        let hl = repr.header_len();
        p.buffer.as_mut()[hl..hl + payload.len()].copy_from_slice(payload);
        repr.emit(p, ip, caps);
    }
}

impl fmt::Display for TcpRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TCP {} > {} [{}] seq {}", self.src_port, self.dst_port, self.flags, self.seq_number)?;
        if self.flags.ack() {
            write!(f, " ack {}", self.ack_number)?;
        }
        write!(f, " win {} len {}", self.window_len, self.payload_len)?;
        if let Some(m) = self.max_seg_size {
            write!(f, " mss {m}")?;
        }
        if let Some(s) = self.window_scale {
            write!(f, " wscale {s}")?;
        }
        if self.sack_permitted {
            write!(f, " sackOK")?;
        }
        if let Some(t) = self.timestamp {
            write!(f, " TS val {} ecr {}", t.tsval, t.tsecr)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SW: ChecksumCaps = ChecksumCaps::software();

    fn ip() -> IpPair {
        IpPair::V4 { src: "198.18.0.1".parse().unwrap(), dst: "198.18.0.2".parse().unwrap() }
    }

    fn syn() -> TcpRepr {
        let mut r = TcpRepr::new(42284, 5001, SeqNumber(1325500498), SeqNumber(0), TcpFlags::SYN, 64240);
        r.max_seg_size = Some(1460);
        r.sack_permitted = true;
        r.timestamp = Some(TcpTimestamp { tsval: 1093671792, tsecr: 0 });
        r.window_scale = Some(10);
        r
    }

    fn emit(r: &TcpRepr, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0xeeu8; r.header_len() + payload.len()];
        r.emit_with_payload(&mut TcpPacket::new_unchecked(&mut buf), &ip(), payload, &SW);
        buf
    }

    fn parse(buf: &[u8]) -> Result<TcpRepr> {
        TcpRepr::parse(&TcpPacket::new_checked(buf)?, &ip(), &SW)
    }

    /// Rewrites the options area and fixes the checksum.
    fn with_options(opts: &[u8]) -> Vec<u8> {
        let hl = HEADER_LEN + opts.len();
        assert_eq!(hl % 4, 0);
        let mut buf = vec![0u8; hl];
        let r = TcpRepr::new(1, 2, SeqNumber(3), SeqNumber(4), TcpFlags::SYN, 5);
        r.emit(&mut TcpPacket::new_unchecked(&mut buf), &ip(), &SW);
        let mut p = TcpPacket::new_unchecked(&mut buf);
        p.set_header_len_and_flags(hl, TcpFlags::SYN);
        p.options_mut().copy_from_slice(opts);
        p.fill_checksum(&ip());
        buf
    }

    #[test]
    fn rfc9293_3_1_syn_round_trip_matches_linux_layout() {
        let r = syn();
        let buf = emit(&r, b"");
        assert_eq!(r.header_len(), 40);
        // Same byte layout as the kernel's SYN (see tests/fixtures/tcp.pcap).
        assert_eq!(&buf[20..24], &[2, 4, 0x05, 0xb4]);
        assert_eq!(&buf[24..28], &[4, 2, 8, 10]);
        assert_eq!(&buf[36..40], &[1, 3, 3, 10]);
        assert_eq!(parse(&buf), Ok(r));
        assert_eq!(r.segment_len(), 1);
    }

    #[test]
    fn rfc9293_3_1_data_segment_round_trip() {
        let mut r = TcpRepr::new(5001, 42284, SeqNumber(7), SeqNumber(9), TcpFlags::PSH | TcpFlags::ACK, 512);
        r.urgent_ptr = 0;
        r.timestamp = Some(TcpTimestamp { tsval: 5, tsecr: 6 });
        let buf = emit(&r, b"hello tcp");
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.payload(), b"hello tcp");
        assert_eq!(p.header_len(), 32);
        assert_eq!(&p.options()[..2], &[1, 1]);
        r.payload_len = 9;
        assert_eq!(parse(&buf), Ok(r));
        assert_eq!(r.to_string(), "TCP 5001 > 42284 [P.] seq 7 ack 9 win 512 len 9 TS val 5 ecr 6");
    }

    #[test]
    fn rfc9293_3_1_all_flags() {
        let all = [
            TcpFlags::FIN,
            TcpFlags::SYN,
            TcpFlags::RST,
            TcpFlags::PSH,
            TcpFlags::ACK,
            TcpFlags::URG,
            TcpFlags::ECE,
            TcpFlags::CWR,
        ];
        let mut f = TcpFlags::NONE;
        for x in all {
            f |= x;
        }
        let r = TcpRepr::new(1, 2, SeqNumber(0), SeqNumber(0), f, 0);
        let buf = emit(&r, b"");
        assert_eq!(buf[13], 0xff);
        let p = parse(&buf).unwrap();
        for x in all {
            assert!(p.flags.contains(x));
        }
        assert!(p.flags.fin() && p.flags.syn() && p.flags.rst() && p.flags.psh());
        assert!(p.flags.ack() && p.flags.urg() && p.flags.ece() && p.flags.cwr());
    }

    #[test]
    fn rfc9293_3_1_data_offset_checked() {
        let mut buf = emit(&syn(), b"");
        buf[12] = 0x40;
        assert_eq!(TcpPacket::new_checked(&buf[..]).err(), Some(Error::BadHeaderLen));
        buf[12] = 0xf0; // 60 bytes, buffer has 40
        assert_eq!(TcpPacket::new_checked(&buf[..]).err(), Some(Error::Truncated));
        assert_eq!(TcpPacket::new_checked(&buf[..19]).err(), Some(Error::Truncated));
    }

    #[test]
    fn rfc9293_3_1_checksum_verified() {
        let mut buf = emit(&syn(), b"x");
        buf[40] ^= 1;
        assert_eq!(parse(&buf), Err(Error::BadChecksum));
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        assert!(TcpRepr::parse(&p, &ip(), &ChecksumCaps::offloaded()).is_ok());
        let v6 = IpPair::V6 { src: "2001:2::1".parse().unwrap(), dst: "2001:2::2".parse().unwrap() };
        let mut buf = vec![0u8; 20];
        let r = TcpRepr::new(1, 2, SeqNumber(3), SeqNumber(4), TcpFlags::SYN, 5);
        r.emit(&mut TcpPacket::new_unchecked(&mut buf), &v6, &SW);
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum(&v6));
        assert!(!p.verify_checksum(&ip()));
    }

    #[test]
    fn rfc9293_3_2_mss_option() {
        let buf = with_options(&[2, 4, 0x23, 0x28]);
        assert_eq!(parse(&buf).unwrap().max_seg_size, Some(9000));
        assert_eq!(parse(&with_options(&[2, 3, 0x23, 0])), Err(Error::BadOption));
    }

    #[test]
    fn rfc9293_3_2_eol_and_nop() {
        // NOP, MSS, EOL; bytes after EOL are ignored even if garbage.
        let buf = with_options(&[1, 2, 4, 5, 0xb4, 0, 0xff, 0xff]);
        assert_eq!(parse(&buf).unwrap().max_seg_size, Some(1460));
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        let opts: Vec<_> = p.option_iter().collect();
        assert_eq!(opts, vec![Ok(TcpOption::NoOp), Ok(TcpOption::MaxSegmentSize(1460)), Ok(TcpOption::EndOfList)]);
    }

    #[test]
    fn rfc9293_3_2_unknown_options_skipped_by_length() {
        // kind 30 (MPTCP) len 6, then WS.
        let buf = with_options(&[30, 6, 1, 2, 3, 4, 3, 3, 7, 0, 0, 0]);
        let r = parse(&buf).unwrap();
        assert_eq!(r.window_scale, Some(7));
    }

    #[test]
    fn rfc9293_3_2_malformed_option_lengths_rejected() {
        for opts in [
            &[30u8, 1, 0, 0][..], // length below 2
            &[30, 0, 0, 0],       // length 0
            &[30, 9, 0, 0],       // past the options
            &[1, 1, 1, 30],       // kind with no length byte
            &[3, 4, 7, 0],        // WS with length 4
            &[4, 3, 0, 0],        // SACK-permitted with length 3
            &[1, 1, 5, 2],        // SACK with no blocks
        ] {
            assert_eq!(parse(&with_options(opts)), Err(Error::BadOption), "{opts:?}");
        }
        // TS with length 8.
        assert_eq!(parse(&with_options(&[8, 8, 0, 0, 0, 0, 0, 0])), Err(Error::BadOption));
        // SACK with a partial block.
        assert_eq!(parse(&with_options(&[5, 6, 0, 0, 0, 0, 1, 1])), Err(Error::BadOption));
    }

    #[test]
    fn rfc7323_2_window_scale_option() {
        let mut r = TcpRepr::new(1, 2, SeqNumber(0), SeqNumber(0), TcpFlags::SYN, 100);
        r.window_scale = Some(7);
        let buf = emit(&r, b"");
        assert_eq!(&buf[20..24], &[1, 3, 3, 7]);
        assert_eq!(parse(&buf), Ok(r));
    }

    #[test]
    fn rfc7323_2_3_shift_above_14_clamped() {
        let buf = with_options(&[1, 3, 3, 15]);
        assert_eq!(parse(&buf).unwrap().window_scale, Some(14));
    }

    #[test]
    fn rfc7323_3_timestamps_option() {
        let buf = with_options(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(parse(&buf).unwrap().timestamp, Some(TcpTimestamp { tsval: 1, tsecr: 2 }));
        // Another layout takes the general path to the same result.
        let other = with_options(&[8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1]);
        assert_eq!(parse(&other).unwrap(), parse(&buf).unwrap());
    }

    #[test]
    fn rfc2018_2_sack_permitted_option() {
        let mut r = TcpRepr::new(1, 2, SeqNumber(0), SeqNumber(0), TcpFlags::SYN, 100);
        r.sack_permitted = true;
        let buf = emit(&r, b"");
        assert_eq!(&buf[20..24], &[1, 1, 4, 2]);
        assert_eq!(parse(&buf), Ok(r));
    }

    #[test]
    fn rfc2018_3_sack_blocks_up_to_four() {
        let blocks = [
            Some((SeqNumber(100), SeqNumber(200))),
            Some((SeqNumber(300), SeqNumber(400))),
            Some((SeqNumber(500), SeqNumber(600))),
            Some((SeqNumber(u32::MAX - 10), SeqNumber(5))),
        ];
        let mut r = TcpRepr::new(1, 2, SeqNumber(0), SeqNumber(0), TcpFlags::ACK, 100);
        r.sack_ranges = blocks;
        assert_eq!(r.sack_blocks_emitted(), 4);
        let buf = emit(&r, b"");
        assert_eq!(r.header_len(), 20 + 4 + 32); // NOP NOP SACK(34)
        assert_eq!(parse(&buf), Ok(r));

        // With timestamps only three fit (RFC 2018 §3); the fourth is dropped.
        r.timestamp = Some(TcpTimestamp { tsval: 1, tsecr: 2 });
        assert_eq!(r.sack_blocks_emitted(), 3);
        let buf = emit(&r, b"");
        assert_eq!(r.header_len(), 60);
        let parsed = parse(&buf).unwrap();
        assert_eq!(parsed.sack_ranges[..3], blocks[..3]);
        assert_eq!(parsed.sack_ranges[3], None);
    }

    #[test]
    fn options_are_padded_to_4_bytes() {
        // Every combination of options yields a header that is a multiple
        // of 4 and that parses back to the same options.
        for bits in 0u8..32 {
            let mut r = TcpRepr::new(1, 2, SeqNumber(0), SeqNumber(0), TcpFlags::SYN, 1);
            if bits & 1 != 0 {
                r.max_seg_size = Some(536);
            }
            if bits & 2 != 0 {
                r.window_scale = Some(0);
            }
            if bits & 4 != 0 {
                r.sack_permitted = true;
            }
            if bits & 8 != 0 {
                r.timestamp = Some(TcpTimestamp { tsval: 9, tsecr: 0 });
            }
            if bits & 16 != 0 {
                r.sack_ranges[0] = Some((SeqNumber(1), SeqNumber(2)));
                r.sack_ranges[1] = Some((SeqNumber(3), SeqNumber(4)));
            }
            assert_eq!(r.header_len() % 4, 0);
            assert!(r.header_len() <= MAX_HEADER_LEN);
            let buf = emit(&r, b"");
            let mut expect = r;
            let n = r.sack_blocks_emitted();
            for (i, s) in expect.sack_ranges.iter_mut().enumerate() {
                if i >= n {
                    *s = None;
                }
            }
            assert_eq!(parse(&buf), Ok(expect), "bits {bits:#b}");
        }
    }

    #[test]
    fn rfc9293_3_4_sequence_numbers_wrap() {
        let a = SeqNumber(u32::MAX - 1);
        let b = a + 4;
        assert_eq!(b, SeqNumber(2));
        assert!(a < b);
        assert_eq!(b - a, 4);
        assert_eq!(a - b, -4);
        assert_eq!(b - 4u32, a);
    }

    #[test]
    fn zero_ports_rejected() {
        let r = TcpRepr::new(0, 2, SeqNumber(0), SeqNumber(0), TcpFlags::SYN, 1);
        assert_eq!(parse(&emit(&r, b"")), Err(Error::BadField));
    }

    #[test]
    fn offloaded_emit_writes_pseudo_header_sum() {
        let r = TcpRepr::new(1, 2, SeqNumber(0), SeqNumber(0), TcpFlags::SYN, 1);
        let mut buf = vec![0u8; 20];
        r.emit(&mut TcpPacket::new_unchecked(&mut buf), &ip(), &ChecksumCaps::offloaded());
        assert_eq!(u16::from_be_bytes([buf[16], buf[17]]), ip().pseudo_header_sum(IpProtocol::Tcp, 20));
    }
}
