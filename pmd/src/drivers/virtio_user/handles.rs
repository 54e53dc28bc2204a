//! Handles: the only places that build an `Mbuf` from a buffer in flight or
//! take one apart for a descriptor. Each turns ownership into a raw header
//! pointer or back; the rings hold the pointers while the back end has the
//! buffers.

use std::ptr::NonNull;

use super::HDR_LEN;
use crate::mbuf::MbufHdr;
use crate::Mbuf;

/// A fresh receive buffer taken apart for posting: its header, and the address
/// of the virtio-net header slot right in front of its data room.
#[inline(always)]
pub(super) fn rx_post_parts(m: Mbuf) -> (NonNull<MbufHdr>, u64) {
    let addr = m.data_ptr() as u64 - HDR_LEN as u64;
    (m.into_external().0, addr)
}

/// Hands a received frame up: its window is `len` bytes at the pool's headroom.
///
/// # Safety
/// `hdr` is a buffer of ours the back end gave back, with no other handle;
/// `headroom + len` fits its buffer.
#[inline(always)]
pub(super) unsafe fn rx_push(out: &mut Vec<Mbuf>, hdr: NonNull<MbufHdr>, headroom: u32, len: u32) {
    // SAFETY: forwarded caller guarantee.
    unsafe { Mbuf::push_from_hdr(out, hdr, headroom, len) }
}

/// A handle to a received buffer, for the paths that look into it.
///
/// # Safety
/// As for [`rx_push`].
#[inline(always)]
pub(super) unsafe fn rx_mbuf(hdr: NonNull<MbufHdr>, headroom: u32, len: u32) -> Mbuf {
    // SAFETY: forwarded caller guarantee.
    unsafe { Mbuf::from_hdr(hdr, headroom, len) }
}

/// Frees a buffer of ours the back end gave back and nobody will see.
///
/// # Safety
/// `hdr` is ours, with no other handle; it is not used again.
#[cold]
pub(super) unsafe fn free_hdr(hdr: NonNull<MbufHdr>) {
    // SAFETY: forwarded caller guarantee; the window is irrelevant to freeing.
    drop(unsafe { Mbuf::from_hdr(hdr, 0, 0) });
}

/// A frame to send taken apart: its header and the address of its first byte.
#[inline(always)]
pub(super) fn tx_post_parts(m: Mbuf) -> (NonNull<MbufHdr>, u64) {
    let addr = m.data_ptr() as u64;
    (m.into_external().0, addr)
}

/// Queues a sent buffer for freeing.
///
/// # Safety
/// As for [`free_hdr`].
#[inline(always)]
pub(super) unsafe fn tx_done_push(done: &mut Vec<Mbuf>, hdr: NonNull<MbufHdr>) {
    // SAFETY: forwarded caller guarantee; the handle is only freed.
    unsafe { Mbuf::push_from_hdr(done, hdr, 0, 0) }
}
