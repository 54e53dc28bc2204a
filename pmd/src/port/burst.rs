//! Helpers the drivers' burst functions share: byte counts, the longest frame
//! and the MTU check, computed from buffer headers without touching frame data.

use crate::Mbuf;

/// Total bytes of a burst and a bound on its longest frame, from the
/// headers' `data_len` (no frame data is read).
///
/// The bound is at least every frame's length, and it is at most `limit`
/// exactly when every frame is (so it serves MTU checks as the longest frame
/// would). It is the OR of the lengths when that is within `limit` — one `or`
/// per frame instead of a compare and select — and the exact longest frame
/// only otherwise (a burst with a frame over `limit`, or lengths whose OR
/// exceeds it).
#[inline]
pub fn burst_bytes_and_bound(pkts: &[Mbuf], limit: u32) -> (u64, u32) {
    let (mut bytes, mut bound) = (0u64, 0u32);
    // Four at a time: four independent header loads in flight, and one wide
    // add per four (lengths are 16 bits, so their u32 sum cannot overflow).
    let mut quads = pkts.chunks_exact(4);
    for q in &mut quads {
        let (a, b, c, d) = (q[0].len_u32(), q[1].len_u32(), q[2].len_u32(), q[3].len_u32());
        bytes += (a + b + c + d) as u64;
        bound |= a | b | c | d;
    }
    for m in quads.remainder() {
        let l = m.len_u32();
        bytes += l as u64;
        bound |= l;
    }
    if bound > limit {
        bound = burst_longest(pkts);
    }
    (bytes, bound)
}

/// The longest frame of a burst (0 for none).
#[cold]
#[inline(never)]
pub fn burst_longest(pkts: &[Mbuf]) -> u32 {
    pkts.iter().map(Mbuf::len_u32).max().unwrap_or(0)
}

/// Whether the frame fits a port's MTU: `mtu` bytes of L3 payload behind an
/// Ethernet header, plus 4 more when the frame carries an 802.1Q tag.
#[inline(always)]
pub fn frame_fits_mtu(frame: &[u8], mtu: u16) -> bool {
    let max = mtu as usize + 14;
    frame.len() <= max || (frame.len() <= max + 4 && frame.len() >= 14 && frame[12] == 0x81 && frame[13] == 0x00)
}
