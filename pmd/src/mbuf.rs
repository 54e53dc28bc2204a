//! Packet buffers.
//!
//! An [`Mbuf`] is an owning handle to one packet buffer: a fixed-size region with
//! headroom in front of the data (so upper layers prepend headers without copying),
//! the data itself, and tailroom behind it, plus per-packet metadata (RSS hash,
//! packet type, offload requests and results; [`MbufMeta`] is its value form).
//!
//! # Layout decision: the handle is a pointer to an `rte_mbuf`-shaped header
//!
//! An `Mbuf` is 8 bytes: a pointer to an [`MbufHdr`], a 128-byte header laid out
//! exactly like DPDK's `struct rte_mbuf` (the fields our code uses sit at the
//! same offsets, with the same widths and encodings: `buf_addr`, `data_off`,
//! `data_len`/`pkt_len`, `ol_flags` with `RTE_MBUF_F_*` bits, `packet_type` with
//! `RTE_PTYPE_*` values, the RSS hash, `vlan_tci`, `buf_len`, `pool`,
//! `tx_offload`). The data window lives in the header, not in the handle.
//!
//! * **Native pools** ([`Mempool::new`](crate::Mempool::new)) lay out each object
//!   as `[MbufHdr | headroom | data room]`, as DPDK lays out its own.
//! * **DPDK pools** (the `dpdk` driver's `create_mempool`): the header *is* the
//!   `rte_mbuf`, so a handle is the `rte_mbuf *` itself. `rte_eth_rx_burst` writes
//!   its pointers straight into the caller's `Vec<Mbuf>` and `rte_eth_tx_burst`
//!   reads them straight from it: receive and transmit convert nothing, per
//!   frame or per burst, and metadata needs no translation either, because it is
//!   stored in DPDK's own encoding and decoded only when someone asks for it.
//!   Each `rte_mbuf` carries an 8-byte private area holding a pointer to our
//!   `PoolCore` (written once, when the pool is made), which is how a buffer of
//!   an external pool finds its way home ([`ExternalPool`](crate::mempool::ExternalPool)).
//!
//! Native headers mark their `pool` word with bit 0 (a DPDK `rte_mempool *` is
//! never odd), so freeing a native buffer reads only the header's first cache
//! line; an external buffer's pool pointer is read from its private area.
//!
//! This file is the view over a header and knows no pool: the `pool` word's
//! encoding and everything that follows it home (drop, [`Mbuf::try_clone`],
//! [`Mbuf::reset`], [`Mbuf::pool`], [`free_bulk`](crate::free_bulk)) live in
//! [`mempool`](crate::mempool), so the dependency runs one way, as DPDK's
//! `rte_mbuf` sits on `rte_mempool`.
//!
//! What this costs: anything that needs a frame's length (byte counters, MTU
//! checks) loads the header's first cache line, which a driver that filled the
//! frame has just written anyway. What it saved, measured with callgrind on
//! testpmd `io` over `dpdk:net_ring0`: the 16-byte handle that carried the window
//! needed ~20 instructions per frame in each direction to convert from and to
//! `rte_mbuf`s; ring slots and burst vectors also halve in size.
//!
//! We chose this over a buffer *trait* that drivers implement because a trait would
//! make every layer above generic over the buffer type (or pay a virtual call per
//! byte access), while one concrete `Mbuf` is what the wire views (`AsRef<[u8]>`),
//! the stack and the tests want.
//!
//! # Invariants
//! * An `Mbuf` is the only handle to its buffer: not `Clone`, no reference count.
//!   `try_clone` copies into a new buffer from the same pool (and is counted as a
//!   copy by its callers).
//! * `data_off + data_len <= buf_len <= 65535` always holds (DPDK's field widths);
//!   every method that moves the window checks it and returns `None` instead of
//!   panicking. `pkt_len == data_len`: buffers are single-segment, so the pool's
//!   data room bounds a packet; jumbo frames use pools with a larger data room.
//! * Dropping an `Mbuf` returns it to its pool (through the calling thread's cache);
//!   the pool's `available()` therefore goes back to its starting value exactly when
//!   every buffer has been dropped, which is what leak tests assert.

use std::fmt;
use std::ptr::NonNull;

use bitflags::bitflags;

bitflags! {
    /// Packet type as classified by the driver or NIC (like DPDK's `RTE_PTYPE_*`).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct PacketType: u32 {
        /// Ethernet II frame.
        const L2_ETHER = 1 << 0;
        /// 802.1Q tagged frame.
        const L2_VLAN = 1 << 1;
        /// ARP.
        const L2_ARP = 1 << 2;
        /// IPv4 (with or without options).
        const L3_IPV4 = 1 << 4;
        /// IPv6 (with or without extension headers).
        const L3_IPV6 = 1 << 5;
        /// TCP.
        const L4_TCP = 1 << 8;
        /// UDP.
        const L4_UDP = 1 << 9;
        /// ICMP or ICMPv6.
        const L4_ICMP = 1 << 10;
        /// A non-first fragment (no L4 header).
        const L4_FRAG = 1 << 11;
    }
}

bitflags! {
    /// Receive-side offload results a driver reports for one packet.
    ///
    /// Neither `*_GOOD` nor `*_BAD` set means "not checked": the stack must verify
    /// in software.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct RxFlags: u16 {
        /// `rss_hash` holds a valid hash.
        const RSS_HASH = 1 << 0;
        /// The IPv4 header checksum was verified good.
        const IP_CKSUM_GOOD = 1 << 1;
        /// The IPv4 header checksum was verified bad.
        const IP_CKSUM_BAD = 1 << 2;
        /// The L4 checksum was verified good.
        const L4_CKSUM_GOOD = 1 << 3;
        /// The L4 checksum was verified bad.
        const L4_CKSUM_BAD = 1 << 4;
        /// The L4 checksum is partial (virtio `NEEDS_CSUM`): data is trusted, the
        /// checksum field holds only the pseudo-header sum.
        const L4_CKSUM_PARTIAL = 1 << 5;
        /// A VLAN tag was stripped into `vlan_tci`.
        const VLAN_STRIPPED = 1 << 6;
        /// The packet is a coalesced (LRO/GRO) super-frame; `tso_segsz` holds the
        /// original segment size.
        const LRO = 1 << 7;
    }
}

bitflags! {
    /// Transmit-side offload requests for one packet (like DPDK's `RTE_MBUF_F_TX_*`).
    ///
    /// A request is only honoured by ports whose capabilities list it; `l2_len`,
    /// `l3_len` (and `l4_len`, `tso_segsz` for segmentation) must be set.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct TxFlags: u16 {
        /// The packet is IPv4.
        const IPV4 = 1 << 0;
        /// The packet is IPv6.
        const IPV6 = 1 << 1;
        /// Compute the IPv4 header checksum.
        const IP_CKSUM = 1 << 2;
        /// Compute the TCP checksum (field pre-filled with the pseudo-header sum).
        const TCP_CKSUM = 1 << 3;
        /// Compute the UDP checksum (field pre-filled with the pseudo-header sum).
        const UDP_CKSUM = 1 << 4;
        /// Segment this TCP super-frame into `tso_segsz`-byte segments.
        const TCP_SEG = 1 << 5;
        /// Insert `vlan_tci` as an 802.1Q tag.
        const VLAN_INSERT = 1 << 6;
    }
}

/// Per-packet metadata as a plain value: what [`Mbuf::meta`] decodes and
/// [`Mbuf::set_meta`] stores.
///
/// Stored in the header in DPDK's encoding, so a few limits apply: `l2_len`
/// has 7 bits, `l3_len` 9, `l4_len` 8 and `tso_segsz` 16 (`tx_offload`);
/// `TCP_SEG` implies `TCP_CKSUM`; and the transmit lengths read back as 0
/// unless some transmit request (or `LRO`, for `tso_segsz`) is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MbufMeta {
    /// RSS (Toeplitz) hash of the flow, valid when `rx_flags` has `RSS_HASH`.
    pub rss_hash: u32,
    /// Packet classification.
    pub packet_type: PacketType,
    /// Receive offload results.
    pub rx_flags: RxFlags,
    /// Transmit offload requests.
    pub tx_flags: TxFlags,
    /// L2 header length, for transmit offloads.
    pub l2_len: u8,
    /// L4 header length, for TSO.
    pub l4_len: u8,
    /// L3 header length, for transmit offloads.
    pub l3_len: u16,
    /// TSO segment size (payload bytes per segment), or LRO original size.
    pub tso_segsz: u16,
    /// VLAN TCI, stripped on receive or to insert on transmit.
    pub vlan_tci: u16,
    /// Port the packet was received on (as the driver numbers it).
    pub port: u16,
}

/// DPDK's `ol_flags` and `packet_type` encodings (stable across its LTS
/// releases; the `dpdk` driver asserts them against the headers at build time).
pub(crate) mod ol {
    pub const RX_VLAN: u64 = 1 << 0;
    pub const RX_RSS_HASH: u64 = 1 << 1;
    pub const RX_L4_CKSUM_BAD: u64 = 1 << 3;
    pub const RX_IP_CKSUM_BAD: u64 = 1 << 4;
    pub const RX_VLAN_STRIPPED: u64 = 1 << 6;
    pub const RX_IP_CKSUM_GOOD: u64 = 1 << 7;
    pub const RX_L4_CKSUM_GOOD: u64 = 1 << 8;
    pub const RX_IP_CKSUM_MASK: u64 = RX_IP_CKSUM_BAD | RX_IP_CKSUM_GOOD;
    pub const RX_L4_CKSUM_MASK: u64 = RX_L4_CKSUM_BAD | RX_L4_CKSUM_GOOD;
    /// Both bits: "checksum not verified, data known good" (virtio NEEDS_CSUM).
    pub const RX_L4_CKSUM_NONE: u64 = RX_L4_CKSUM_MASK;
    pub const RX_LRO: u64 = 1 << 16;
    /// The receive bits we read or write.
    pub const RX_OURS: u64 = RX_VLAN | RX_RSS_HASH | RX_IP_CKSUM_MASK | RX_L4_CKSUM_MASK | RX_VLAN_STRIPPED | RX_LRO;

    pub const TX_TCP_SEG: u64 = 1 << 50;
    pub const TX_TCP_CKSUM: u64 = 1 << 52;
    pub const TX_UDP_CKSUM: u64 = 3 << 52;
    pub const TX_L4_MASK: u64 = 3 << 52;
    pub const TX_IP_CKSUM: u64 = 1 << 54;
    pub const TX_IPV4: u64 = 1 << 55;
    pub const TX_IPV6: u64 = 1 << 56;
    pub const TX_VLAN: u64 = 1 << 57;
    /// The transmit bits we read or write.
    pub const TX_OURS: u64 = TX_TCP_SEG | TX_L4_MASK | TX_IP_CKSUM | TX_IPV4 | TX_IPV6 | TX_VLAN;

    pub const L2_LEN_OFS: u32 = 0;
    pub const L3_LEN_OFS: u32 = 7;
    pub const L4_LEN_OFS: u32 = 16;
    pub const TSO_SEGSZ_OFS: u32 = 24;

    pub const PTYPE_L2_ETHER: u32 = 0x1;
    pub const PTYPE_L2_ETHER_ARP: u32 = 0x3;
    pub const PTYPE_L2_ETHER_VLAN: u32 = 0x6;
    pub const PTYPE_L2_MASK: u32 = 0xf;
    pub const PTYPE_L3_IPV4: u32 = 0x10;
    pub const PTYPE_L3_IPV6: u32 = 0x40;
    pub const PTYPE_L3_MASK: u32 = 0xf0;
    pub const PTYPE_L4_TCP: u32 = 0x100;
    pub const PTYPE_L4_UDP: u32 = 0x200;
    pub const PTYPE_L4_FRAG: u32 = 0x300;
    pub const PTYPE_L4_ICMP: u32 = 0x500;
    pub const PTYPE_L4_MASK: u32 = 0xf00;
}

impl RxFlags {
    /// From `ol_flags`.
    #[inline]
    pub(crate) fn from_ol(o: u64) -> RxFlags {
        let mut f = RxFlags::empty();
        if o & ol::RX_OURS == 0 {
            return f;
        }
        if o & ol::RX_RSS_HASH != 0 {
            f |= RxFlags::RSS_HASH;
        }
        match o & ol::RX_IP_CKSUM_MASK {
            ol::RX_IP_CKSUM_GOOD => f |= RxFlags::IP_CKSUM_GOOD,
            ol::RX_IP_CKSUM_BAD => f |= RxFlags::IP_CKSUM_BAD,
            _ => {}
        }
        match o & ol::RX_L4_CKSUM_MASK {
            ol::RX_L4_CKSUM_GOOD => f |= RxFlags::L4_CKSUM_GOOD,
            ol::RX_L4_CKSUM_BAD => f |= RxFlags::L4_CKSUM_BAD,
            ol::RX_L4_CKSUM_NONE => f |= RxFlags::L4_CKSUM_PARTIAL,
            _ => {}
        }
        if o & ol::RX_VLAN_STRIPPED != 0 {
            f |= RxFlags::VLAN_STRIPPED;
        }
        if o & ol::RX_LRO != 0 {
            f |= RxFlags::LRO;
        }
        f
    }

    /// To `ol_flags` bits. A flag pair that contradicts itself (GOOD and BAD)
    /// is stored as BAD.
    #[inline]
    pub(crate) fn to_ol(self) -> u64 {
        let mut o = 0;
        if self.contains(RxFlags::RSS_HASH) {
            o |= ol::RX_RSS_HASH;
        }
        if self.contains(RxFlags::IP_CKSUM_BAD) {
            o |= ol::RX_IP_CKSUM_BAD;
        } else if self.contains(RxFlags::IP_CKSUM_GOOD) {
            o |= ol::RX_IP_CKSUM_GOOD;
        }
        if self.contains(RxFlags::L4_CKSUM_BAD) {
            o |= ol::RX_L4_CKSUM_BAD;
        } else if self.contains(RxFlags::L4_CKSUM_GOOD) {
            o |= ol::RX_L4_CKSUM_GOOD;
        } else if self.contains(RxFlags::L4_CKSUM_PARTIAL) {
            o |= ol::RX_L4_CKSUM_NONE;
        }
        if self.contains(RxFlags::VLAN_STRIPPED) {
            o |= ol::RX_VLAN | ol::RX_VLAN_STRIPPED;
        }
        if self.contains(RxFlags::LRO) {
            o |= ol::RX_LRO;
        }
        o
    }
}

impl TxFlags {
    /// From `ol_flags`.
    #[inline]
    pub(crate) fn from_ol(o: u64) -> TxFlags {
        let mut f = TxFlags::empty();
        if o & ol::TX_OURS == 0 {
            return f;
        }
        if o & ol::TX_IPV4 != 0 {
            f |= TxFlags::IPV4;
        }
        if o & ol::TX_IPV6 != 0 {
            f |= TxFlags::IPV6;
        }
        if o & ol::TX_IP_CKSUM != 0 {
            f |= TxFlags::IP_CKSUM;
        }
        match o & ol::TX_L4_MASK {
            ol::TX_TCP_CKSUM => f |= TxFlags::TCP_CKSUM,
            ol::TX_UDP_CKSUM => f |= TxFlags::UDP_CKSUM,
            _ => {}
        }
        if o & ol::TX_TCP_SEG != 0 {
            f |= TxFlags::TCP_SEG;
        }
        if o & ol::TX_VLAN != 0 {
            f |= TxFlags::VLAN_INSERT;
        }
        f
    }

    /// To `ol_flags` bits (TSO implies the TCP checksum, as DPDK requires).
    #[inline]
    pub(crate) fn to_ol(self) -> u64 {
        let mut o = 0;
        if self.contains(TxFlags::IPV4) {
            o |= ol::TX_IPV4;
        }
        if self.contains(TxFlags::IPV6) {
            o |= ol::TX_IPV6;
        }
        if self.contains(TxFlags::IP_CKSUM) {
            o |= ol::TX_IP_CKSUM;
        }
        if self.contains(TxFlags::TCP_SEG) {
            o |= ol::TX_TCP_SEG | ol::TX_TCP_CKSUM;
        } else if self.contains(TxFlags::TCP_CKSUM) {
            o |= ol::TX_TCP_CKSUM;
        } else if self.contains(TxFlags::UDP_CKSUM) {
            o |= ol::TX_UDP_CKSUM;
        }
        if self.contains(TxFlags::VLAN_INSERT) {
            o |= ol::TX_VLAN;
        }
        o
    }
}

impl PacketType {
    /// From DPDK's `packet_type`.
    #[inline]
    pub(crate) fn from_ptype(pt: u32) -> PacketType {
        let mut t = PacketType::empty();
        if pt == 0 {
            return t;
        }
        match pt & ol::PTYPE_L2_MASK {
            0 => {}
            ol::PTYPE_L2_ETHER_ARP => t |= PacketType::L2_ETHER | PacketType::L2_ARP,
            ol::PTYPE_L2_ETHER_VLAN | 0x7 => t |= PacketType::L2_ETHER | PacketType::L2_VLAN,
            _ => t |= PacketType::L2_ETHER,
        }
        match pt & ol::PTYPE_L3_MASK {
            0 => {}
            l3 if l3 & 0x40 == 0 => t |= PacketType::L3_IPV4, // IPV4, IPV4_EXT, IPV4_EXT_UNKNOWN
            _ => t |= PacketType::L3_IPV6,
        }
        match pt & ol::PTYPE_L4_MASK {
            ol::PTYPE_L4_TCP => t |= PacketType::L4_TCP,
            ol::PTYPE_L4_UDP => t |= PacketType::L4_UDP,
            ol::PTYPE_L4_ICMP => t |= PacketType::L4_ICMP,
            ol::PTYPE_L4_FRAG => t |= PacketType::L4_FRAG,
            _ => {}
        }
        t
    }

    /// To DPDK's `packet_type`.
    #[inline]
    pub(crate) fn to_ptype(self) -> u32 {
        let mut pt = 0;
        if self.contains(PacketType::L2_ARP) {
            pt |= ol::PTYPE_L2_ETHER_ARP;
        } else if self.contains(PacketType::L2_VLAN) {
            pt |= ol::PTYPE_L2_ETHER_VLAN;
        } else if self.contains(PacketType::L2_ETHER) {
            pt |= ol::PTYPE_L2_ETHER;
        }
        if self.contains(PacketType::L3_IPV4) {
            pt |= ol::PTYPE_L3_IPV4;
        } else if self.contains(PacketType::L3_IPV6) {
            pt |= ol::PTYPE_L3_IPV6;
        }
        if self.contains(PacketType::L4_TCP) {
            pt |= ol::PTYPE_L4_TCP;
        } else if self.contains(PacketType::L4_UDP) {
            pt |= ol::PTYPE_L4_UDP;
        } else if self.contains(PacketType::L4_ICMP) {
            pt |= ol::PTYPE_L4_ICMP;
        } else if self.contains(PacketType::L4_FRAG) {
            pt |= ol::PTYPE_L4_FRAG;
        }
        pt
    }
}

/// The header in front of every packet buffer: `struct rte_mbuf`'s layout
/// (see the module docs). Fields keep DPDK's names.
#[repr(C, align(64))]
pub struct MbufHdr {
    pub(crate) buf_addr: *mut u8,
    pub(crate) buf_iova: u64,
    pub(crate) data_off: u16,
    pub(crate) refcnt: u16,
    pub(crate) nb_segs: u16,
    pub(crate) port: u16,
    pub(crate) ol_flags: u64,
    pub(crate) packet_type: u32,
    pub(crate) pkt_len: u32,
    pub(crate) data_len: u16,
    pub(crate) vlan_tci: u16,
    pub(crate) rss: u32,
    pub(crate) hash_hi: u32,
    pub(crate) vlan_tci_outer: u16,
    pub(crate) buf_len: u16,
    /// A native pool's `PoolCore` with bit 0 set, or a DPDK `rte_mempool *`.
    pub(crate) pool: usize,
    // Second cache line.
    pub(crate) next: *mut MbufHdr,
    pub(crate) tx_offload: u64,
    pub(crate) shinfo: *mut u8,
    pub(crate) priv_size: u16,
    pub(crate) timesync: u16,
    pub(crate) dynfield1: [u32; 9],
}

const _: () = assert!(std::mem::size_of::<MbufHdr>() == 128);
const _: () = assert!(std::mem::offset_of!(MbufHdr, data_off) == 16);
const _: () = assert!(std::mem::offset_of!(MbufHdr, ol_flags) == 24);
const _: () = assert!(std::mem::offset_of!(MbufHdr, data_len) == 40);
const _: () = assert!(std::mem::offset_of!(MbufHdr, rss) == 44);
const _: () = assert!(std::mem::offset_of!(MbufHdr, buf_len) == 54);
const _: () = assert!(std::mem::offset_of!(MbufHdr, pool) == 56);
const _: () = assert!(std::mem::offset_of!(MbufHdr, tx_offload) == 72);
const _: () = assert!(std::mem::size_of::<Mbuf>() == 8);

/// The fields a buffer gets (bytes 16..48 of the header) each time a pool
/// hands it out: window at the default headroom with length 0, one segment,
/// no metadata. One 32-byte store.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Rearm {
    data_off: u16,
    refcnt: u16,
    nb_segs: u16,
    port: u16,
    ol_flags: u64,
    packet_type: u32,
    pkt_len: u32,
    data_len: u16,
    vlan_tci: u16,
    rss: u32,
}

impl Rearm {
    pub(crate) const fn new(headroom: u16) -> Rearm {
        Rearm {
            data_off: headroom,
            refcnt: 1,
            nb_segs: 1,
            port: 0,
            ol_flags: 0,
            packet_type: 0,
            pkt_len: 0,
            data_len: 0,
            vlan_tci: 0,
            rss: 0,
        }
    }
}

impl MbufHdr {
    /// A header for a buffer of `buf_len` bytes at `buf`, belonging to the pool
    /// whose `pool` word (see [`crate::mempool`]) is `pool_word`.
    pub(crate) fn native(buf: NonNull<u8>, buf_len: u16, pool_word: usize, headroom: u16) -> MbufHdr {
        MbufHdr {
            buf_addr: buf.as_ptr(),
            buf_iova: buf.as_ptr() as u64,
            data_off: headroom.min(buf_len),
            refcnt: 1,
            nb_segs: 1,
            port: 0,
            ol_flags: 0,
            packet_type: 0,
            pkt_len: 0,
            data_len: 0,
            vlan_tci: 0,
            rss: 0,
            hash_hi: 0,
            vlan_tci_outer: 0,
            buf_len,
            pool: pool_word,
            next: std::ptr::null_mut(),
            tx_offload: 0,
            shinfo: std::ptr::null_mut(),
            priv_size: 0,
            timesync: 0,
            dynfield1: [0; 9],
        }
    }

    /// Resets what a pool resets on every allocation (see [`Rearm`]).
    ///
    /// # Safety
    /// `hdr` is valid for writes and owned by the caller.
    #[inline(always)]
    pub(crate) unsafe fn rearm(hdr: NonNull<MbufHdr>, r: Rearm) {
        // SAFETY: bytes 16..48 of a valid header are exactly `Rearm`'s fields
        // (same types, same order, no padding), and the caller owns it.
        unsafe { (std::ptr::addr_of_mut!((*hdr.as_ptr()).data_off) as *mut Rearm).write_unaligned(r) };
    }
}

const _: () = assert!(std::mem::size_of::<Rearm>() == 32);

/// An owned packet buffer: a pointer to its header. See the module documentation.
#[repr(transparent)]
pub struct Mbuf {
    hdr: NonNull<MbufHdr>,
}

// SAFETY: an `Mbuf` is the unique owner of its header and buffer (no aliasing
// handles exist), and the pool it returns to on drop is thread-safe, so moving it to
// another thread is sound.
unsafe impl Send for Mbuf {}
// SAFETY: `&Mbuf` only gives read access to the header and data; no interior
// mutability is reachable through a shared reference.
unsafe impl Sync for Mbuf {}

impl Mbuf {
    /// Wraps a header that a pool (or a driver's ring) is handing over, setting
    /// its data window to `off`/`len`.
    ///
    /// # Safety
    /// `hdr` must point to an initialised header that nobody else owns, whose
    /// pool is live, with `off + len <= buf_len`.
    #[inline]
    pub(crate) unsafe fn from_hdr(hdr: NonNull<MbufHdr>, off: u32, len: u32) -> Self {
        // SAFETY: forwarded caller guarantee.
        unsafe { Self::set_window(hdr, off, len) };
        Mbuf { hdr }
    }

    /// Wraps a header whose window is already right (a driver's receive path).
    ///
    /// # Safety
    /// As for [`from_hdr`](Self::from_hdr), with the window already valid.
    #[inline(always)]
    pub(crate) unsafe fn from_raw(hdr: NonNull<MbufHdr>) -> Self {
        Mbuf { hdr }
    }

    /// Writes a window into a header the caller owns.
    ///
    /// # Safety
    /// `hdr` is valid for writes and owned by the caller; `off + len <= buf_len`.
    #[inline(always)]
    pub(crate) unsafe fn set_window(hdr: NonNull<MbufHdr>, off: u32, len: u32) {
        // SAFETY: forwarded caller guarantee.
        unsafe {
            let h = hdr.as_ptr();
            debug_assert!(off + len <= (*h).buf_len as u32);
            (*h).data_off = off as u16;
            (*h).data_len = len as u16;
            (*h).pkt_len = len;
        }
    }

    #[inline(always)]
    pub(crate) fn hdr_ptr(&self) -> NonNull<MbufHdr> {
        self.hdr
    }

    /// Appends a handle for a header a pool or driver has just handed over,
    /// with window `off`/`len`.
    ///
    /// # Safety
    /// As for [`from_hdr`](Self::from_hdr).
    #[inline(always)]
    pub(crate) unsafe fn push_from_hdr(out: &mut Vec<Mbuf>, hdr: NonNull<MbufHdr>, off: u32, len: u32) {
        // SAFETY: forwarded caller guarantee.
        out.push(unsafe { Mbuf::from_hdr(hdr, off, len) });
    }

    /// The header pointer and window, without giving up ownership.
    #[inline(always)]
    pub(crate) fn parts(&self) -> (NonNull<MbufHdr>, u32, u32) {
        (self.hdr, self.hdr().data_off as u32, self.hdr().data_len as u32)
    }

    /// Gives the buffer back to an external driver (e.g. to pass the underlying
    /// buffer to a device) without freeing it: the header, and the data offset
    /// and length to write into the driver's own descriptor.
    pub fn into_external(self) -> (NonNull<MbufHdr>, u32, u32) {
        let parts = self.parts();
        std::mem::forget(self);
        parts
    }

    #[inline(always)]
    pub(crate) fn hdr(&self) -> &MbufHdr {
        // SAFETY: `self.hdr` is valid and uniquely owned for the life of `self`.
        unsafe { self.hdr.as_ref() }
    }

    #[inline(always)]
    pub(crate) fn hdr_mut(&mut self) -> &mut MbufHdr {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { self.hdr.as_mut() }
    }

    /// The header's raw `pool` word: equal for all buffers of one pool, and
    /// for DPDK pools the `rte_mempool *` (what a DPDK transmit path compares).
    #[inline(always)]
    pub(crate) fn pool_word(&self) -> usize {
        self.hdr().pool
    }

    /// The packet data.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let h = self.hdr();
        // SAFETY: `data_off + data_len <= buf_len` (module invariant) and the
        // buffer is valid for `buf_len` bytes and owned by `self`.
        unsafe { std::slice::from_raw_parts(h.buf_addr.add(h.data_off as usize), h.data_len as usize) }
    }

    /// The packet data, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let h = self.hdr();
        // SAFETY: as in `data`, with exclusive access through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(h.buf_addr.add(h.data_off as usize), h.data_len as usize) }
    }

    /// Pointer to the first data byte (for zero-copy assertions in tests).
    pub fn data_ptr(&self) -> *const u8 {
        self.data().as_ptr()
    }

    /// Length of the data in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.hdr().data_len as usize
    }

    /// Length of the data in bytes, as `u32`: for tight loops.
    #[inline(always)]
    pub fn len_u32(&self) -> u32 {
        self.hdr().data_len as u32
    }

    /// Whether the buffer holds no data.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.hdr().data_len == 0
    }

    /// Bytes free in front of the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.hdr().data_off as usize
    }

    /// Bytes free behind the data.
    #[inline]
    pub fn tailroom(&self) -> usize {
        let h = self.hdr();
        (h.buf_len - h.data_off - h.data_len) as usize
    }

    /// Total size of the buffer (headroom + data + tailroom).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.hdr().buf_len as usize
    }

    #[inline(always)]
    pub(crate) fn set_data_len(&mut self, len: u16) {
        let h = self.hdr_mut();
        h.data_len = len;
        h.pkt_len = len as u32;
    }

    /// Grows the data by `n` bytes at the front, taking them from the headroom,
    /// and returns the new bytes (uninitialised contents: whatever was there).
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let h = self.hdr_mut();
        if n > h.data_off as usize {
            return None;
        }
        h.data_off -= n as u16;
        let len = h.data_len + n as u16;
        self.set_data_len(len);
        Some(&mut self.data_mut()[..n])
    }

    /// Removes `n` bytes from the front of the data (they become headroom).
    #[inline]
    pub fn adj(&mut self, n: usize) -> Option<()> {
        let h = self.hdr_mut();
        if n > h.data_len as usize {
            return None;
        }
        h.data_off += n as u16;
        let len = h.data_len - n as u16;
        self.set_data_len(len);
        Some(())
    }

    /// Grows the data by `n` bytes at the end, taking them from the tailroom, and
    /// returns the new bytes.
    #[inline]
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.tailroom() {
            return None;
        }
        let old = self.len();
        self.set_data_len((old + n) as u16);
        Some(&mut self.data_mut()[old..])
    }

    /// Removes `n` bytes from the end of the data.
    #[inline]
    pub fn trim(&mut self, n: usize) -> Option<()> {
        let len = self.len().checked_sub(n)?;
        self.set_data_len(len as u16);
        Some(())
    }

    /// Sets the data length, keeping the start; fails if it does not fit.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> Option<()> {
        let h = self.hdr();
        if len > (h.buf_len - h.data_off) as usize {
            return None;
        }
        self.set_data_len(len as u16);
        Some(())
    }

    /// Appends a copy of `bytes`.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Option<()> {
        self.append(bytes.len())?.copy_from_slice(bytes);
        Some(())
    }

    /// The metadata, decoded from the header.
    #[inline]
    pub fn meta(&self) -> MbufMeta {
        let h = self.hdr();
        let rx_flags = RxFlags::from_ol(h.ol_flags);
        let tx_flags = TxFlags::from_ol(h.ol_flags);
        let (l2_len, l3_len, l4_len, mut tso_segsz) = if tx_flags.is_empty() {
            (0, 0, 0, 0)
        } else {
            let t = h.tx_offload;
            (
                (t >> ol::L2_LEN_OFS) as u8 & 0x7f,
                (t >> ol::L3_LEN_OFS) as u16 & 0x1ff,
                (t >> ol::L4_LEN_OFS) as u8,
                (t >> ol::TSO_SEGSZ_OFS) as u16,
            )
        };
        if rx_flags.contains(RxFlags::LRO) {
            tso_segsz = (h.tx_offload >> ol::TSO_SEGSZ_OFS) as u16;
        }
        MbufMeta {
            rss_hash: if rx_flags.contains(RxFlags::RSS_HASH) { h.rss } else { 0 },
            packet_type: PacketType::from_ptype(h.packet_type),
            rx_flags,
            tx_flags,
            l2_len,
            l4_len,
            l3_len,
            tso_segsz,
            vlan_tci: if rx_flags.contains(RxFlags::VLAN_STRIPPED) || tx_flags.contains(TxFlags::VLAN_INSERT) {
                h.vlan_tci
            } else {
                0
            },
            port: h.port,
        }
    }

    /// Replaces all of the metadata.
    #[inline]
    pub fn set_meta(&mut self, m: MbufMeta) {
        let h = self.hdr_mut();
        h.ol_flags = m.rx_flags.to_ol() | m.tx_flags.to_ol();
        h.packet_type = m.packet_type.to_ptype();
        h.rss = m.rss_hash;
        h.vlan_tci = m.vlan_tci;
        h.port = m.port;
        h.tx_offload = ((m.l2_len as u64 & 0x7f) << ol::L2_LEN_OFS)
            | ((m.l3_len as u64 & 0x1ff) << ol::L3_LEN_OFS)
            | ((m.l4_len as u64) << ol::L4_LEN_OFS)
            | ((m.tso_segsz as u64) << ol::TSO_SEGSZ_OFS);
    }

    /// Clears the metadata (no flags, no hash, no type).
    #[inline]
    pub fn clear_meta(&mut self) {
        let h = self.hdr_mut();
        h.ol_flags = 0;
        h.packet_type = 0;
        h.rss = 0;
        h.vlan_tci = 0;
        h.port = 0;
    }

    /// Copies another buffer's metadata, as stored.
    #[inline]
    pub fn copy_meta_from(&mut self, other: &Mbuf) {
        let o = other.hdr();
        let (ol_flags, packet_type, rss, vlan_tci, port, tx_offload) =
            (o.ol_flags, o.packet_type, o.rss, o.vlan_tci, o.port, o.tx_offload);
        let h = self.hdr_mut();
        (h.ol_flags, h.packet_type, h.rss, h.vlan_tci, h.port, h.tx_offload) =
            (ol_flags, packet_type, rss, vlan_tci, port, tx_offload);
    }

    /// Receive offload results (cheaper than decoding all of [`meta`](Self::meta)).
    #[inline]
    pub fn rx_flags(&self) -> RxFlags {
        RxFlags::from_ol(self.hdr().ol_flags)
    }

    /// Replaces the receive offload results, keeping everything else.
    #[inline]
    pub fn set_rx_flags(&mut self, f: RxFlags) {
        let h = self.hdr_mut();
        h.ol_flags = (h.ol_flags & !ol::RX_OURS) | f.to_ol();
    }

    /// Transmit offload requests.
    #[inline]
    pub fn tx_flags(&self) -> TxFlags {
        TxFlags::from_ol(self.hdr().ol_flags)
    }

    /// Replaces the transmit offload requests, keeping everything else (the
    /// header lengths stay as [`set_meta`](Self::set_meta) wrote them).
    #[inline]
    pub fn set_tx_flags(&mut self, f: TxFlags) {
        let h = self.hdr_mut();
        h.ol_flags = (h.ol_flags & !ol::TX_OURS) | f.to_ol();
    }

    /// The RSS hash, if the receiving port reported one.
    #[inline]
    pub fn rss_hash(&self) -> Option<u32> {
        let h = self.hdr();
        (h.ol_flags & ol::RX_RSS_HASH != 0).then_some(h.rss)
    }
}

impl AsRef<[u8]> for Mbuf {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.data()
    }
}

impl AsMut<[u8]> for Mbuf {
    #[inline]
    fn as_mut(&mut self) -> &mut [u8] {
        self.data_mut()
    }
}

impl fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbuf")
            .field("len", &self.len())
            .field("headroom", &self.headroom())
            .field("tailroom", &self.tailroom())
            .field("meta", &self.meta())
            .finish()
    }
}

/// The handles of `v` as the header pointers they are (`Mbuf` is a
/// transparent pointer), for drivers that pass a burst to a device as is.
#[inline(always)]
pub(crate) fn as_hdr_ptrs(v: &[Mbuf]) -> &[NonNull<MbufHdr>] {
    // SAFETY: `Mbuf` is `repr(transparent)` over `NonNull<MbufHdr>`.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const NonNull<MbufHdr>, v.len()) }
}

/// Removes the first `n` handles from `v` *without dropping them*: their
/// buffers now belong to someone else (a device that took them).
///
/// # Safety
/// `n <= v.len()`, and ownership of the first `n` buffers has been handed over
/// (so forgetting the handles neither leaks nor double-frees).
#[inline]
#[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
pub(crate) unsafe fn forget_front(v: &mut Vec<Mbuf>, n: usize) {
    debug_assert!(n <= v.len());
    let rest = v.len() - n;
    // SAFETY: `n <= len`; the tail is moved (bitwise) to the front and the Vec
    // shrunk, so every remaining handle is still owned exactly once.
    unsafe {
        if rest > 0 {
            std::ptr::copy(v.as_ptr().add(n), v.as_mut_ptr(), rest);
        }
        v.set_len(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_through_dpdk_encoding() {
        for bits in 0..=RxFlags::all().bits() {
            let f = RxFlags::from_bits_truncate(bits);
            // Contradictory pairs store as BAD; PARTIAL only without GOOD/BAD.
            let mut want = f;
            if want.contains(RxFlags::IP_CKSUM_BAD) {
                want.remove(RxFlags::IP_CKSUM_GOOD);
            }
            if want.contains(RxFlags::L4_CKSUM_BAD) {
                want.remove(RxFlags::L4_CKSUM_GOOD | RxFlags::L4_CKSUM_PARTIAL);
            } else if want.contains(RxFlags::L4_CKSUM_GOOD) {
                want.remove(RxFlags::L4_CKSUM_PARTIAL);
            }
            assert_eq!(RxFlags::from_ol(f.to_ol()), want, "{f:?}");
        }
        for bits in 0..=TxFlags::all().bits() {
            let f = TxFlags::from_bits_truncate(bits);
            let mut want = f;
            if want.contains(TxFlags::TCP_SEG) {
                want.remove(TxFlags::UDP_CKSUM);
                want.insert(TxFlags::TCP_CKSUM);
            } else if want.contains(TxFlags::TCP_CKSUM) {
                want.remove(TxFlags::UDP_CKSUM);
            }
            assert_eq!(TxFlags::from_ol(f.to_ol()), want, "{f:?}");
        }
        for t in [
            PacketType::L2_ETHER | PacketType::L3_IPV4 | PacketType::L4_TCP,
            PacketType::L2_ETHER | PacketType::L2_VLAN | PacketType::L3_IPV6 | PacketType::L4_UDP,
            PacketType::L2_ETHER | PacketType::L2_ARP,
            PacketType::L2_ETHER | PacketType::L3_IPV4 | PacketType::L4_FRAG,
            PacketType::L2_ETHER | PacketType::L3_IPV6 | PacketType::L4_ICMP,
            PacketType::empty(),
        ] {
            assert_eq!(PacketType::from_ptype(t.to_ptype()), t);
        }
    }
}
