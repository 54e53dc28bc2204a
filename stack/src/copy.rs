//! Byte copies of the data path that stay off a slow path of the CPU's block copy.
//!
//! The socket calls copy between the application's slices and the stack's
//! buffers ([`Connection::send`](crate::tcp::Connection::send) into the send
//! buffer, `recv` out of the receive queue). Rust's `copy_from_slice` is the C
//! library's `memcpy`, and glibc moves blocks above its `rep movsb` threshold
//! (2 KiB to 4 KiB, by CPU) with `rep movsb`. On AMD Zen 3 (EPYC, family 25:
//! this project's benchmark machine) that instruction runs about **20 times
//! slower** when the destination lies 1 to 31 bytes after the source modulo
//! 4 KiB (4K aliasing: every load looks as if it depended on the store just
//! before it). Measured on that machine (glibc 2.36, one 64 KiB `memcpy`,
//! destination minus source mod 4096):
//!
//! | distance | 0 | 4..=28 | 32 | 36..=60 | 64, 512, 2048 | -4..=-60 |
//! |---|---|---|---|---|---|---|
//! | GB/s | 41 | **1.6–2.0** | 43 | 37–45 | 48–49 | 36–40 |
//!
//! and the same copy in 2048-byte pieces moves 35–42 GB/s at every distance
//! (pieces of 3072 bytes or more are slow again: `rep movsb`). Whether a copy
//! hits it depends only on where the two buffers happen to lie, so a bulk
//! sender that writes 64 KiB at a time into a ring buffer stays in that state
//! (about 30 µs per 64 KiB write) for as long as its writes keep the same
//! distance mod 4 KiB, and leaves it when a short write shifts them. This is
//! one way the TCP benchmark's sender falls to about 2 GB/s; it is not the
//! only one (see `bench/src/bin/tcp.rs`).
//!
//! [`copy`] checks the distance (two address reads and a compare) and, only
//! when it is in the slow window, copies in pieces of [`PIECE`] bytes, which
//! glibc moves with its vector loop at full speed whatever the distance. Any
//! other copy is one `copy_from_slice`, as before. [`ByteRing`] is the byte
//! ring the send buffer needs (`VecDeque<u8>` copies with one `memcpy` into a
//! place whose address it does not tell), writing through [`copy`].

/// Largest piece copied at once when the distance is in the slow window: at
/// or below every glibc x86 `rep movsb` threshold (2048 × vector size / 16).
pub const PIECE: usize = 2048;

/// Whether `rep movsb` from `src` to `dst` would be in the 4K-aliasing slow
/// window: the destination 1..64 bytes after the source modulo 4 KiB
/// (measured slow: 1..=31; the margin costs nothing).
#[inline]
fn slow_distance(dst: *const u8, src: *const u8) -> bool {
    let d = (dst as usize).wrapping_sub(src as usize) % 4096;
    d != 0 && d < 64
}

/// Copies `src` into `dst` (of the same length), in [`PIECE`]-byte pieces when
/// one block copy would take the slow path (see the module docs).
#[inline]
pub fn copy(dst: &mut [u8], src: &[u8]) {
    if src.len() <= PIECE || !slow_distance(dst.as_ptr(), src.as_ptr()) {
        dst.copy_from_slice(src);
        return;
    }
    assert_eq!(dst.len(), src.len(), "copy: source and destination lengths differ");
    for (d, s) in dst.chunks_mut(PIECE).zip(src.chunks(PIECE)) {
        d.copy_from_slice(s);
    }
}

/// A growable ring of bytes (what a `VecDeque<u8>` is to the send buffer),
/// written through [`copy`]. It allocates nothing until the first write and
/// grows by doubling, like `VecDeque`.
#[derive(Clone, Debug, Default)]
pub struct ByteRing {
    /// Storage; its length is the ring's capacity.
    buf: Vec<u8>,
    /// Index of the first byte.
    head: usize,
    len: usize,
}

impl ByteRing {
    /// An empty ring (no allocation).
    pub fn new() -> ByteRing {
        ByteRing::default()
    }

    /// Bytes held.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of storage allocated.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Drops everything held (keeps the storage).
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// The bytes held, oldest first, as two slices.
    #[inline]
    pub fn as_slices(&self) -> (&[u8], &[u8]) {
        let end = self.head + self.len;
        if end <= self.buf.len() {
            (&self.buf[self.head..end], &[])
        } else {
            (&self.buf[self.head..], &self.buf[..end - self.buf.len()])
        }
    }

    /// Drops the oldest `n` bytes (at most all of them).
    #[inline]
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.len -= n;
        self.head = if self.len == 0 { 0 } else { (self.head + n) % self.buf.len() };
    }

    /// Appends `src`, growing the storage if needed.
    pub fn extend(&mut self, src: &[u8]) {
        let n = src.len();
        if n == 0 {
            return;
        }
        if self.len + n > self.buf.len() {
            self.grow(self.len + n);
        }
        let cap = self.buf.len();
        let tail = (self.head + self.len) % cap;
        let first = n.min(cap - tail);
        copy(&mut self.buf[tail..tail + first], &src[..first]);
        copy(&mut self.buf[..n - first], &src[first..]);
        self.len += n;
    }

    /// Copies bytes `offset..offset + dst.len()` of what is held into `dst`.
    #[inline]
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) {
        let (a, b) = self.as_slices();
        let n = dst.len();
        if offset < a.len() {
            let first = (a.len() - offset).min(n);
            copy(&mut dst[..first], &a[offset..offset + first]);
            copy(&mut dst[first..], &b[..n - first]);
        } else {
            let o = offset - a.len();
            copy(dst, &b[o..o + n]);
        }
    }

    fn grow(&mut self, need: usize) {
        let cap = need.max(self.buf.len() * 2).max(64);
        let mut buf = vec![0u8; cap];
        let (a, b) = self.as_slices();
        copy(&mut buf[..a.len()], a);
        copy(&mut buf[a.len()..a.len() + b.len()], b);
        self.buf = buf;
        self.head = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_is_exact_at_every_distance_and_length() {
        let src: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut space = vec![0u8; 40_000];
        for len in [0, 1, 100, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 17, 16_384] {
            for shift in [0usize, 1, 8, 16, 31, 32, 63, 64, 65, 2048, 4095] {
                // Place the destination `shift` bytes after the source mod 4 KiB.
                let base = (src.as_ptr() as usize + shift).wrapping_sub(space.as_ptr() as usize) % 4096;
                let dst = &mut space[base..base + len];
                dst.fill(0xee);
                copy(dst, &src[..len]);
                assert_eq!(dst, &src[..len], "len {len} shift {shift}");
            }
        }
    }

    #[test]
    fn slow_window_is_detected() {
        let b = [0u8; 8192];
        let p = b.as_ptr();
        assert!(!slow_distance(p, p));
        assert!(slow_distance(p.wrapping_add(8), p));
        assert!(slow_distance(p.wrapping_add(4096 + 16), p));
        assert!(!slow_distance(p.wrapping_add(64), p));
        assert!(!slow_distance(p, p.wrapping_add(8)), "destination before the source is fast");
    }

    #[test]
    fn ring_keeps_order_across_wrap_and_growth() {
        let mut r = ByteRing::new();
        assert_eq!(r.capacity(), 0, "no allocation before the first write");
        let mut model = std::collections::VecDeque::new();
        let mut next = 0u8;
        for step in 0..400usize {
            let add = (step * 37) % 300;
            let data: Vec<u8> = (0..add)
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            r.extend(&data);
            model.extend(&data);
            let take = (step * 53) % 280;
            r.consume(take);
            model.drain(..take.min(model.len()));
            assert_eq!(r.len(), model.len());
            let (a, b) = r.as_slices();
            let got: Vec<u8> = a.iter().chain(b).copied().collect();
            assert!(got.iter().eq(model.iter()), "step {step}");
            if r.len() > 10 {
                let mut out = vec![0; r.len() - 5];
                r.copy_out(5, &mut out);
                assert!(out.iter().eq(model.iter().skip(5)));
            }
        }
        r.clear();
        assert!(r.is_empty());
    }
}
