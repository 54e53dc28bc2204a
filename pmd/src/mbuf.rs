//! Packet buffers.
//!
//! An [`Mbuf`] is an owning handle to one packet buffer: a fixed-size region with
//! headroom in front of the data (so upper layers prepend headers without copying),
//! the data itself, and tailroom behind it, plus per-packet metadata ([`MbufMeta`]:
//! RSS hash, packet type, offload requests and results).
//!
//! # Layout decision: our header, in whatever memory the driver owns
//!
//! Every buffer starts with an [`MbufHdr`] (one 64-byte cache line, `repr(C)`):
//! a pointer to the buffer, the metadata, and a pointer to the pool that owns it.
//! The data window (offset and length) lives in the 16-byte `Mbuf` handle itself,
//! so anything that only needs lengths (byte counters, MTU checks) reads the burst
//! vector it already has instead of one header cache line per frame. The stack only ever sees this header,
//! never a driver's descriptor format. Two kinds of memory back it:
//!
//! * **Native pools** ([`Mempool::new`](crate::Mempool::new)): one aligned region of
//!   `count` objects, each `[MbufHdr | headroom | data room]`, like DPDK's own
//!   layout (`struct rte_mbuf` in front of the buffer).
//! * **External pools** ([`Mempool::external`](crate::Mempool::external)): memory
//!   owned by someone else, DPDK being the case this was designed for. The DPDK
//!   driver creates its `rte_mempool` with `priv_size >= size_of::<MbufHdr>()`, so
//!   every `rte_mbuf` carries room for our header in its private area right after
//!   `struct rte_mbuf`; the header's constant fields (buffer, length, pool) are
//!   written once, when the pool is created. On receive the driver converts a
//!   whole burst in one pass: each handle (header = mbuf + 128, window =
//!   `data_off`/`data_len`) is written straight into the caller's vector
//!   (`Mbuf::write_handle`, no per-frame capacity check) and the metadata is
//!   one 32-byte copy of a per-queue template; offload results are translated
//!   only in bursts that carry any. On transmit it writes the handle's window
//!   into the `rte_mbuf` line it lives on and passes the original pointer to
//!   `rte_eth_tx_burst`, keeping the handle until the device has taken the
//!   mbuf (then `forget_front`), so an unsent frame needs no conversion back.
//!   Freeing goes through the pool's [`ExternalPool`](crate::mempool::ExternalPool)
//!   ops (`rte_pktmbuf_free`). No data is copied in either direction.
//!
//!   What this costs, and what would remove it: a handle conversion is ~20
//!   instructions per frame each way (loads of the rte_mbuf's first line,
//!   stores of the handle and the metadata, and the write-back), where DPDK's
//!   own io forwarding moves 8-byte pointers only. The next step, if that
//!   matters more than the window carried in the handle (above), is an 8-byte handle
//!   that *is* the `rte_mbuf` pointer, with native headers laid out like
//!   `struct rte_mbuf`'s first line (window as `data_off`/`data_len`) and our
//!   extras in the private area: receive and transmit would then be pointer
//!   copies plus the byte counters' length loads.
//!
//! We chose this over a buffer *trait* that drivers implement because a trait would
//! make every layer above generic over the buffer type (or pay a virtual call per
//! byte access), while the header-in-private-area approach costs a handful of
//! stores per packet and keeps one concrete `Mbuf` type everywhere, which is what
//! the wire views (`AsRef<[u8]>`), the stack and the tests want.
//!
//! # Invariants
//! * An `Mbuf` is the only handle to its buffer: not `Clone`, no reference count.
//!   `try_clone` copies into a new buffer from the same pool (and is counted as a
//!   copy by its callers).
//! * `off + len <= buf_len` always holds; every method that moves the
//!   window checks it and returns `None` instead of panicking.
//! * Dropping an `Mbuf` returns it to its pool (through the calling thread's cache);
//!   the pool's `available()` therefore goes back to its starting value exactly when
//!   every buffer has been dropped, which is what leak tests assert.
//! * Buffers are single-segment: the pool's data room bounds a packet. Jumbo frames
//!   and TSO super-frames use pools with a larger data room.

use std::fmt;
use std::ptr::NonNull;

use bitflags::bitflags;

use crate::mempool::PoolCore;

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

/// Per-packet metadata carried alongside the data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
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
    /// Port the packet was received on.
    pub port: u16,
    /// Queue the packet was received on.
    pub queue: u16,
    /// Receive timestamp in nanoseconds of the port's clock, 0 if none.
    pub timestamp_ns: u64,
}

/// The header at the start of every packet buffer (see the module docs).
///
/// Drivers of external memory write it through
/// [`Mbuf::from_external`]; everyone else uses [`Mbuf`]'s methods.
#[repr(C, align(64))]
pub struct MbufHdr {
    pub(crate) buf: NonNull<u8>,
    pub(crate) pool: NonNull<PoolCore>,
    pub(crate) buf_len: u32,
    /// Opaque word for external pools.
    pub(crate) ext: u32,
    pub(crate) meta: MbufMeta,
}

const _: () = assert!(std::mem::size_of::<MbufHdr>() == 64);
const _: () = assert!(std::mem::size_of::<Mbuf>() == 16);

/// An owned packet buffer. See the module documentation.
///
/// The handle carries the data window (offset and length) itself, next to the
/// header pointer: burst vectors and ring slots then hold every frame's length
/// inline, so byte counters, MTU checks and length-based decisions never load the
/// header's cache line. The header is only touched for metadata, the buffer
/// address, or returning the buffer to its pool.
pub struct Mbuf {
    hdr: NonNull<MbufHdr>,
    off: u32,
    len: u32,
}

// SAFETY: an `Mbuf` is the unique owner of its header and buffer (no aliasing
// handles exist), and the pool it returns to on drop is thread-safe, so moving it to
// another thread is sound.
unsafe impl Send for Mbuf {}
// SAFETY: `&Mbuf` only gives read access to the header and data; no interior
// mutability is reachable through a shared reference.
unsafe impl Sync for Mbuf {}

impl Mbuf {
    /// Wraps a header that a pool (or a driver's ring) is handing over.
    ///
    /// # Safety
    /// `hdr` must point to an initialised header that nobody else owns, whose
    /// `pool` points to a live pool, and whose buffer is `buf_len` bytes, with
    /// `off + len <= buf_len`.
    #[inline]
    pub(crate) unsafe fn from_hdr(hdr: NonNull<MbufHdr>, off: u32, len: u32) -> Self {
        Mbuf { hdr, off, len }
    }

    #[inline(always)]
    pub(crate) fn hdr_ptr(&self) -> NonNull<MbufHdr> {
        self.hdr
    }

    /// Wraps a buffer that lives in an external pool's memory (the DPDK case):
    /// writes the header at `hdr` and returns the owning handle.
    ///
    /// # Safety
    /// * `hdr` is valid for writes of an `MbufHdr`, 64-byte aligned, and owned by
    ///   the caller until the returned `Mbuf` is dropped or turned back with
    ///   [`Mbuf::into_external`];
    /// * `buf` is valid for reads and writes of `buf_len` bytes for that long;
    /// * `data_off + data_len <= buf_len`;
    /// * `pool` is an external pool whose `free` accepts this header.
    pub unsafe fn from_external(
        hdr: NonNull<MbufHdr>,
        pool: &crate::Mempool,
        buf: NonNull<u8>,
        buf_len: u32,
        data_off: u32,
        data_len: u32,
        meta: MbufMeta,
    ) -> Self {
        debug_assert!(data_off as u64 + data_len as u64 <= buf_len as u64);
        // SAFETY: the caller guarantees `hdr` is valid for writes and exclusively ours.
        unsafe { Self::write_hdr(hdr, pool.core_ptr(), buf, buf_len, meta) };
        Mbuf { hdr, off: data_off, len: data_len }
    }

    /// Writes a whole header: the one place that does.
    ///
    /// # Safety
    /// `hdr` is valid for writes of an `MbufHdr` and not in use by anyone else.
    #[inline(always)]
    unsafe fn write_hdr(
        hdr: NonNull<MbufHdr>,
        pool: NonNull<PoolCore>,
        buf: NonNull<u8>,
        buf_len: u32,
        meta: MbufMeta,
    ) {
        // SAFETY: forwarded caller guarantee.
        unsafe { hdr.as_ptr().write(MbufHdr { buf, pool, buf_len, ext: 0, meta }) };
    }

    /// Like [`from_external`](Self::from_external), but appends the handle to
    /// `out` by writing its fields straight into the vector's memory (see
    /// `push_from_hdr` for why that matters on the receive path).
    ///
    /// # Safety
    /// As for [`from_external`](Self::from_external).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn push_external(
        out: &mut Vec<Mbuf>,
        hdr: NonNull<MbufHdr>,
        pool: &crate::Mempool,
        buf: NonNull<u8>,
        buf_len: u32,
        data_off: u32,
        data_len: u32,
        meta: MbufMeta,
    ) {
        debug_assert!(data_off as u64 + data_len as u64 <= buf_len as u64);
        // SAFETY: the caller guarantees `hdr` is valid for writes and ours, and the
        // window fits the buffer (as `push_from_hdr` requires).
        unsafe {
            Self::write_hdr(hdr, pool.core_ptr(), buf, buf_len, meta);
            Self::push_from_hdr(out, hdr, data_off, data_len);
        }
    }

    /// Writes the constant part of an external buffer's header (buffer, its
    /// length, the pool) once, when the external pool is created, so that the
    /// receive path only has to write the metadata ([`Mbuf::push_prepared`]).
    ///
    /// # Safety
    /// `hdr` is valid for writes of an `MbufHdr` and not in use; `buf` is valid
    /// for `buf_len` bytes for the life of the pool; `pool` is the live external
    /// pool the buffer belongs to.
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    pub(crate) unsafe fn init_external_hdr(
        hdr: NonNull<MbufHdr>,
        pool: NonNull<PoolCore>,
        buf: NonNull<u8>,
        buf_len: u32,
    ) {
        // SAFETY: forwarded caller guarantee.
        unsafe { Self::write_hdr(hdr, pool, buf, buf_len, MbufMeta::default()) };
    }

    /// Appends a handle for an external buffer whose header was prepared by
    /// [`Mbuf::init_external_hdr`]: only the metadata is written per frame, and
    /// the handle goes straight into `out` (see `push_from_hdr`).
    ///
    /// # Safety
    /// As for [`Mbuf::push_external`], and the header's constant fields were
    /// written by `init_external_hdr` for this very buffer.
    #[inline(always)]
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    pub(crate) unsafe fn push_prepared(out: &mut Vec<Mbuf>, hdr: NonNull<MbufHdr>, off: u32, len: u32, meta: MbufMeta) {
        // SAFETY: the header is ours and initialised (caller guarantee); only its
        // metadata changes per use.
        unsafe {
            std::ptr::addr_of_mut!((*hdr.as_ptr()).meta).write(meta);
            Mbuf::push_from_hdr(out, hdr, off, len);
        }
    }

    /// Appends a handle for a header a pool has just handed out, writing its
    /// fields straight into the vector's memory.
    ///
    /// Why: built as a value and then pushed, the 16-byte handle is assembled on
    /// the stack with narrower stores and copied with one wide load, which the
    /// CPU cannot forward from those stores: every received frame then stalls
    /// until they commit (seen as ~70% of a DPDK receive burst). Field-by-field
    /// writes into the destination avoid the round trip.
    ///
    /// # Safety
    /// `hdr` must point to an initialised header that nobody else owns, whose
    /// `pool` points to a live pool, and whose buffer is `buf_len` bytes, with
    /// `off + len <= buf_len`.
    #[inline(always)]
    pub(crate) unsafe fn push_from_hdr(out: &mut Vec<Mbuf>, hdr: NonNull<MbufHdr>, off: u32, len: u32) {
        out.reserve(1);
        let n = out.len();
        // SAFETY: `dst` is inside the capacity reserved above and uninitialised;
        // each field is written before `set_len` makes the element visible.
        unsafe {
            let dst = out.as_mut_ptr().add(n);
            std::ptr::addr_of_mut!((*dst).hdr).write(hdr);
            std::ptr::addr_of_mut!((*dst).off).write(off);
            std::ptr::addr_of_mut!((*dst).len).write(len);
            out.set_len(n + 1);
        }
    }

    /// Writes a handle for `hdr` with window `off`/`len` into `dst`, without
    /// reading or dropping what was there: burst loops that know the final
    /// length of their output write every element with this, then call
    /// `Vec::set_len` once (no per-frame capacity check).
    ///
    /// # Safety
    /// `dst` is valid for writes and uninitialised (or forgotten); `hdr` points to
    /// an initialised header that nobody else owns, whose `pool` is live and whose
    /// buffer is `buf_len` bytes, with `off + len <= buf_len`. The handle written
    /// becomes the buffer's only owner once it is part of a live `Vec` or value.
    #[inline(always)]
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    pub(crate) unsafe fn write_handle(dst: *mut Mbuf, hdr: NonNull<MbufHdr>, off: u32, len: u32) {
        // SAFETY: forwarded caller guarantee; fields are written one by one (see
        // `push_from_hdr` for why not as a whole value).
        unsafe {
            std::ptr::addr_of_mut!((*dst).hdr).write(hdr);
            std::ptr::addr_of_mut!((*dst).off).write(off);
            std::ptr::addr_of_mut!((*dst).len).write(len);
        }
    }

    /// Overwrites the metadata of a header nobody else uses (a driver's receive
    /// path, before the handle is given out).
    ///
    /// # Safety
    /// `hdr` is valid for writes and owned by the caller.
    #[inline(always)]
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    pub(crate) unsafe fn write_meta(hdr: NonNull<MbufHdr>, meta: MbufMeta) {
        // SAFETY: forwarded caller guarantee.
        unsafe { std::ptr::addr_of_mut!((*hdr.as_ptr()).meta).write(meta) };
    }

    /// The header pointer and window, without giving up ownership (a transmit
    /// path that hands the buffer over only once the device has taken it; see
    /// [`forget_front`]).
    #[inline(always)]
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    pub(crate) fn parts(&self) -> (NonNull<MbufHdr>, u32, u32) {
        (self.hdr, self.off, self.len)
    }

    /// Gives the buffer back to an external driver (e.g. to pass the underlying
    /// `rte_mbuf` to the NIC) without freeing it: the header, and the data offset
    /// and length to write into the driver's own descriptor.
    pub fn into_external(self) -> (NonNull<MbufHdr>, u32, u32) {
        let parts = (self.hdr, self.off, self.len);
        std::mem::forget(self);
        parts
    }

    #[inline(always)]
    fn hdr(&self) -> &MbufHdr {
        // SAFETY: `self.hdr` is valid and uniquely owned for the life of `self`.
        unsafe { self.hdr.as_ref() }
    }

    #[inline(always)]
    fn hdr_mut(&mut self) -> &mut MbufHdr {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { self.hdr.as_mut() }
    }

    #[inline(always)]
    pub(crate) fn pool_ptr(&self) -> NonNull<PoolCore> {
        self.hdr().pool
    }

    /// The packet data.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let buf = self.hdr().buf;
        // SAFETY: `off + len <= buf_len` (module invariant) and the buffer is valid
        // for `buf_len` bytes and owned by `self`.
        unsafe { std::slice::from_raw_parts(buf.as_ptr().add(self.off as usize), self.len as usize) }
    }

    /// The packet data, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let buf = self.hdr().buf;
        // SAFETY: as in `data`, with exclusive access through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(buf.as_ptr().add(self.off as usize), self.len as usize) }
    }

    /// Pointer to the first data byte (for zero-copy assertions in tests).
    pub fn data_ptr(&self) -> *const u8 {
        self.data().as_ptr()
    }

    /// Length of the data in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Length of the data in bytes, as stored (no conversion): for tight loops.
    #[inline(always)]
    pub fn len_u32(&self) -> u32 {
        self.len
    }

    /// Whether the buffer holds no data.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes free in front of the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.off as usize
    }

    /// Bytes free behind the data.
    #[inline]
    pub fn tailroom(&self) -> usize {
        (self.hdr().buf_len - self.off - self.len) as usize
    }

    /// Total size of the buffer (headroom + data + tailroom).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.hdr().buf_len as usize
    }

    /// Grows the data by `n` bytes at the front, taking them from the headroom,
    /// and returns the new bytes (uninitialised contents: whatever was there).
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.off as usize {
            return None;
        }
        self.off -= n as u32;
        self.len += n as u32;
        Some(&mut self.data_mut()[..n])
    }

    /// Removes `n` bytes from the front of the data (they become headroom).
    #[inline]
    pub fn adj(&mut self, n: usize) -> Option<()> {
        if n > self.len as usize {
            return None;
        }
        self.off += n as u32;
        self.len -= n as u32;
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
        self.len += n as u32;
        Some(&mut self.data_mut()[old..])
    }

    /// Removes `n` bytes from the end of the data.
    #[inline]
    pub fn trim(&mut self, n: usize) -> Option<()> {
        if n > self.len as usize {
            return None;
        }
        self.len -= n as u32;
        Some(())
    }

    /// Sets the data length, keeping the start; fails if it does not fit.
    #[inline]
    pub fn set_len(&mut self, len: usize) -> Option<()> {
        if len > (self.hdr().buf_len - self.off) as usize {
            return None;
        }
        self.len = len as u32;
        Some(())
    }

    /// Appends a copy of `bytes`.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Option<()> {
        self.append(bytes.len())?.copy_from_slice(bytes);
        Some(())
    }

    /// Resets the data window to the pool's default headroom and length 0, and
    /// clears the metadata.
    #[inline]
    pub fn reset(&mut self) {
        // SAFETY: the pool outlives every buffer it handed out (see `mempool`).
        let headroom = unsafe { self.hdr().pool.as_ref() }.headroom();
        self.off = headroom.min(self.hdr().buf_len);
        self.len = 0;
        self.hdr_mut().meta = MbufMeta::default();
    }

    /// The metadata.
    #[inline]
    pub fn meta(&self) -> &MbufMeta {
        &self.hdr().meta
    }

    /// The metadata, mutable.
    #[inline]
    pub fn meta_mut(&mut self) -> &mut MbufMeta {
        &mut self.hdr_mut().meta
    }

    /// A handle to the pool this buffer belongs to.
    pub fn pool(&self) -> crate::Mempool {
        // SAFETY: the pool is alive while any of its buffers is.
        crate::Mempool::from_core(self.pool_ptr())
    }

    /// Copies data and metadata into a new buffer from the same pool, with the same
    /// headroom. Fails (no panic) when the pool is exhausted.
    pub fn try_clone(&self) -> Result<Mbuf, crate::PmdError> {
        // SAFETY: the pool outlives its buffers.
        let core = unsafe { self.pool_ptr().as_ref() };
        let mut m = core.alloc_one()?;
        m.off = self.off.min(m.capacity() as u32);
        m.len = 0;
        m.extend_from_slice(self.data())
            .ok_or(crate::PmdError::MbufTooSmall { need: self.len(), have: m.tailroom() })?;
        m.hdr_mut().meta = *self.meta();
        Ok(m)
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the pool outlives its buffers, and we own `hdr` exclusively.
        unsafe { PoolCore::free_one(self) }
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
            .field("meta", self.meta())
            .finish()
    }
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

/// Frees a batch of buffers, taking each pool's cache once per run of buffers from
/// the same pool instead of once per buffer.
#[inline]
pub fn free_bulk(bufs: &mut Vec<Mbuf>) {
    if bufs.is_empty() {
        return;
    }
    PoolCore::free_bulk(bufs);
}
