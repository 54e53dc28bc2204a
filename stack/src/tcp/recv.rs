//! The receive side's data, held in the buffers it arrived in.
//!
//! A connection's in-order data is a queue of *chunks*: either a received
//! [`Mbuf`] whose data window is exactly the payload still to be read (zero
//! copy: the application's `recv` copies straight out of the buffer the port
//! filled, and dropping the consumed buffer returns it to its pool), or a run of
//! bytes that were copied into one shared byte ring (`copied`). Out-of-order
//! segments are kept the same way ([`Segment`]).
//!
//! **What is kept, what is copied**: an arriving payload stays in its mbuf only
//! when the socket layer offers the mbuf (it stops doing so when the stack holds
//! `StackConfig::tcp_rx_mbufs` of them, so received data can never exhaust the
//! pool the port and the senders need) *and* the payload fills at least half the
//! buffer ([`worth_keeping`]). Smaller payloads (interactive traffic, tails)
//! are copied into the byte ring, coalescing with the run before them, as
//! Linux's `tcp_try_coalesce` does, so a trickle of tiny segments cannot pin a
//! buffer each.
//!
//! **Accounting**: `TcpConfig::recv_buffer` bounds the *payload bytes* held
//! (in order plus out of order), which is what the advertised window is made
//! of, exactly as when everything was copied. The memory behind them is the
//! whole buffer of each kept mbuf; since a kept payload fills at least half its
//! buffer, that is at most twice the payload (plus the 64-byte buffer header),
//! so a connection's received data pins at most about `2 × recv_buffer` of
//! memory, and [`RecvQueue::memory`] reports the exact figure.

use std::collections::VecDeque;

use pmd::Mbuf;

use crate::copy::copy;

/// Bytes of buffer header that come with every mbuf (pmd's `MbufHdr`).
const MBUF_HEADER: usize = 64;

/// Whether a payload of `len` bytes is worth keeping in a buffer of `capacity`
/// bytes rather than copying: it fills at least half of it.
pub fn worth_keeping(len: usize, capacity: usize) -> bool {
    len > 0 && len * 2 >= capacity
}

/// Payload handed to a connection.
#[derive(Debug)]
pub enum Payload<'a> {
    /// Bytes to copy if they are kept.
    Slice(&'a [u8]),
    /// A buffer whose data window is exactly the payload, kept if it is worth it.
    Mbuf(Mbuf),
}

impl Payload<'_> {
    /// The payload bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Payload::Slice(s) => s,
            Payload::Mbuf(m) => m.data(),
        }
    }
}

/// An out-of-order segment held until the gap before it fills.
#[derive(Debug)]
pub enum Segment {
    /// Kept in the buffer it arrived in.
    Mbuf(Mbuf),
    /// Copied.
    Bytes(Vec<u8>),
}

impl Segment {
    /// Keeps `data[skip..end]`, in its own buffer when that is worth it.
    pub fn from_payload(p: Payload<'_>, skip: usize, end: usize) -> Segment {
        match p {
            Payload::Mbuf(mut m) if worth_keeping(end - skip, m.capacity()) => {
                let tail = m.len() - end;
                let (a, b) = (m.adj(skip), m.trim(tail));
                debug_assert!(a.is_some() && b.is_some(), "within the data window");
                Segment::Mbuf(m)
            }
            p => Segment::Bytes(p.bytes()[skip..end].to_vec()),
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Segment::Mbuf(m) => m.data(),
            Segment::Bytes(v) => v,
        }
    }

    /// Payload length.
    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    /// Whether it holds no payload.
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// Whether it holds a buffer of the pool.
    pub fn is_mbuf(&self) -> bool {
        matches!(self, Segment::Mbuf(_))
    }
}

#[derive(Debug)]
enum Chunk {
    /// A kept buffer; its data window is what is left to read.
    Mbuf(Mbuf),
    /// This many bytes at the front of `copied` (after earlier runs).
    Copied(usize),
}

/// In-order received data not yet read (see the module documentation).
#[derive(Debug, Default)]
pub struct RecvQueue {
    chunks: VecDeque<Chunk>,
    copied: VecDeque<u8>,
    /// Bytes to read (at most `recv_buffer`, which is below 2 GiB).
    len: u32,
    mbufs: u32,
}

impl RecvQueue {
    /// Bytes waiting to be read.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether nothing waits to be read.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Mbufs held.
    pub fn mbufs(&self) -> usize {
        self.mbufs as usize
    }

    /// Memory holding the data: whole buffers (and their headers) for kept
    /// mbufs, the byte ring's allocation for copied data.
    pub fn memory(&self) -> usize {
        let bufs: usize = self
            .chunks
            .iter()
            .map(|c| match c {
                Chunk::Mbuf(m) => m.capacity() + MBUF_HEADER,
                Chunk::Copied(_) => 0,
            })
            .sum();
        bufs + self.copied.capacity()
    }

    /// Appends `p.bytes()[skip..end]`, keeping the buffer when worth it.
    pub fn push(&mut self, p: Payload<'_>, skip: usize, end: usize) {
        if end <= skip {
            return;
        }
        match p {
            Payload::Mbuf(m) if worth_keeping(end - skip, m.capacity()) => {
                let mut m = m;
                let tail = m.len() - end;
                let (a, b) = (m.adj(skip), m.trim(tail));
                debug_assert!(a.is_some() && b.is_some(), "within the data window");
                self.push_mbuf(m);
            }
            p => self.push_bytes(&p.bytes()[skip..end]),
        }
    }

    /// Appends a held out-of-order segment from byte `skip` on.
    pub fn push_segment(&mut self, s: Segment, skip: usize) {
        match s {
            Segment::Mbuf(mut m) => {
                if skip >= m.len() {
                    return;
                }
                let ok = m.adj(skip);
                debug_assert!(ok.is_some());
                self.push_mbuf(m);
            }
            Segment::Bytes(v) => {
                if skip < v.len() {
                    self.push_bytes(&v[skip..]);
                }
            }
        }
    }

    fn push_mbuf(&mut self, m: Mbuf) {
        self.len += m.len() as u32;
        self.mbufs += 1;
        self.chunks.push_back(Chunk::Mbuf(m));
    }

    fn push_bytes(&mut self, b: &[u8]) {
        self.copied.extend(b);
        self.len += b.len() as u32;
        match self.chunks.back_mut() {
            Some(Chunk::Copied(n)) => *n += b.len(),
            _ => self.chunks.push_back(Chunk::Copied(b.len())),
        }
    }

    /// Moves up to `out.len()` bytes into `out`; returns how many.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let mut done = 0;
        while done < out.len() {
            let Some(front) = self.chunks.front_mut() else { break };
            let want = out.len() - done;
            match front {
                Chunk::Mbuf(m) => {
                    let n = want.min(m.len());
                    copy(&mut out[done..done + n], &m.data()[..n]);
                    done += n;
                    if n == m.len() {
                        self.mbufs -= 1;
                        self.chunks.pop_front();
                    } else {
                        let ok = m.adj(n);
                        debug_assert!(ok.is_some());
                    }
                }
                Chunk::Copied(run) => {
                    let n = want.min(*run);
                    let (a, b) = self.copied.as_slices();
                    let first = n.min(a.len());
                    copy(&mut out[done..done + first], &a[..first]);
                    copy(&mut out[done + first..done + n], &b[..n - first]);
                    self.copied.drain(..n);
                    done += n;
                    *run -= n;
                    if *run == 0 {
                        self.chunks.pop_front();
                    }
                }
            }
        }
        self.len -= done as u32;
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmd::{Mempool, MempoolConfig};

    fn mbuf(pool: &Mempool, bytes: &[u8]) -> Mbuf {
        let mut m = pool.alloc().unwrap();
        m.extend_from_slice(bytes).unwrap();
        m
    }

    #[test]
    fn keeps_full_buffers_copies_small_payloads_and_reads_in_order() {
        let pool = Mempool::new(&MempoolConfig::new("recvq", 64, 2048, 128, 0)).unwrap();
        let big: Vec<u8> = (0..1448u32).map(|i| i as u8).collect();
        let mut q = RecvQueue::default();
        q.push(Payload::Mbuf(mbuf(&pool, &big)), 0, big.len());
        q.push(Payload::Mbuf(mbuf(&pool, b"tiny")), 0, 4);
        q.push(Payload::Slice(b"--slice--"), 2, 7);
        q.push(Payload::Mbuf(mbuf(&pool, &big)), 48, big.len());
        assert_eq!(q.mbufs(), 2, "the tiny payload was copied, its buffer freed");
        assert_eq!(pool.available(), 62);
        assert_eq!(q.len(), 1448 + 4 + 5 + 1400);
        assert!(q.memory() >= 2 * 2176);
        let mut out = vec![0u8; 5000];
        let mut got = Vec::new();
        for step in [1, 1447, 3, 700, 5000] {
            let n = q.read(&mut out[..step]);
            got.extend_from_slice(&out[..n]);
        }
        let mut want = big.clone();
        want.extend_from_slice(b"tiny");
        want.extend_from_slice(b"slice");
        want.extend_from_slice(&big[48..]);
        assert_eq!(got, want);
        assert!(q.is_empty());
        assert_eq!(q.mbufs(), 0);
        assert_eq!(pool.available(), 64, "every buffer back once read");
    }
}
