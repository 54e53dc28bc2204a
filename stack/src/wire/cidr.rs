//! An address with a prefix length (`198.18.0.1/15`, `2001:2::1/64`): one
//! type over both families, so the prefix arithmetic is written once. The
//! family-specific parts (IPv4's netmask and directed broadcast) stay in
//! `ipv4.rs`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// What [`Cidr`] needs of an address family: its width and its bits.
pub trait CidrAddr: Copy + Eq + fmt::Display + FromStr {
    /// Address width in bits (32 or 128).
    const BITS: u8;
    /// The address as an integer, most significant bit first.
    fn to_bits(self) -> u128;
    /// The inverse of [`to_bits`](Self::to_bits) (the high bits are zero).
    fn from_bits(bits: u128) -> Self;
}

impl CidrAddr for Ipv4Addr {
    const BITS: u8 = 32;
    fn to_bits(self) -> u128 {
        u128::from(u32::from(self))
    }
    fn from_bits(bits: u128) -> Self {
        Ipv4Addr::from(bits as u32)
    }
}

impl CidrAddr for Ipv6Addr {
    const BITS: u8 = 128;
    fn to_bits(self) -> u128 {
        u128::from(self)
    }
    fn from_bits(bits: u128) -> Self {
        Ipv6Addr::from(bits)
    }
}

/// An address with a prefix length; [`Ipv4Cidr`](super::Ipv4Cidr) and
/// [`Ipv6Cidr`](super::Ipv6Cidr) are its two instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr<A> {
    address: A,
    prefix_len: u8,
}

impl<A: CidrAddr> Cidr<A> {
    /// `None` if `prefix_len` is longer than the address.
    pub fn new(address: A, prefix_len: u8) -> Option<Self> {
        (prefix_len <= A::BITS).then_some(Cidr { address, prefix_len })
    }

    /// The address as given (host bits kept).
    pub fn address(&self) -> A {
        self.address
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The netmask in the low `A::BITS` bits of a `u128`.
    pub(crate) fn mask_bits(&self) -> u128 {
        let all = if A::BITS == 128 { u128::MAX } else { (1u128 << A::BITS) - 1 };
        if self.prefix_len == 0 {
            0
        } else {
            all & (all << (A::BITS - self.prefix_len))
        }
    }

    /// The network (host bits cleared).
    pub fn network(&self) -> Self {
        Cidr { address: A::from_bits(self.address.to_bits() & self.mask_bits()), prefix_len: self.prefix_len }
    }

    /// True if `addr` is inside this prefix.
    pub fn contains(&self, addr: &A) -> bool {
        (addr.to_bits() ^ self.address.to_bits()) & self.mask_bits() == 0
    }

    /// True if `other` is entirely inside this prefix.
    pub fn contains_subnet(&self, other: &Self) -> bool {
        other.prefix_len >= self.prefix_len && self.contains(&other.address)
    }
}

impl<A: fmt::Display> fmt::Display for Cidr<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// Error from parsing an [`Ipv4Cidr`](super::Ipv4Cidr) or
/// [`Ipv6Cidr`](super::Ipv6Cidr) string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseCidrError;

impl fmt::Display for ParseCidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid CIDR: want ADDRESS/PREFIX_LEN")
    }
}

impl std::error::Error for ParseCidrError {}

impl<A: CidrAddr> FromStr for Cidr<A> {
    type Err = ParseCidrError;

    /// `ADDRESS/LEN` with LEN in plain decimal digits (no sign, no leading
    /// spaces, at most as many digits as the family's widest length).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = s.split_once('/').ok_or(ParseCidrError)?;
        let a: A = a.parse().map_err(|_| ParseCidrError)?;
        let max_digits = if A::BITS >= 100 { 3 } else { 2 };
        if l.is_empty() || l.len() > max_digits || !l.bytes().all(|c| c.is_ascii_digit()) {
            return Err(ParseCidrError);
        }
        let l: u8 = l.parse().map_err(|_| ParseCidrError)?;
        Cidr::new(a, l).ok_or(ParseCidrError)
    }
}
