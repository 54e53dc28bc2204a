//! The send buffer of a connection (beside [`super::recv`], its receive
//! queue; the shape of quinn-proto's `send_buffer.rs`): the bytes the
//! application queued that the peer has not acknowledged yet, sent or not,
//! addressed by sequence number. The first byte held has sequence number
//! [`start`](SendBuffer::start); a cumulative ACK drops what it covers
//! ([`ack`](SendBuffer::ack)). The SYN and FIN occupy sequence space but are
//! never in the buffer. The bytes live in a [`ByteRing`] (written through the
//! data path's [`crate::copy`]).

use crate::copy::ByteRing;
use crate::wire::SeqNumber;

/// Unacknowledged and unsent data of one connection.
#[derive(Clone, Debug)]
pub struct SendBuffer {
    bytes: ByteRing,
    /// Sequence number of `bytes[0]`.
    start: SeqNumber,
}

impl SendBuffer {
    /// An empty buffer whose first byte will have sequence number `start`
    /// (no allocation until the first write).
    pub fn new(start: SeqNumber) -> Self {
        SendBuffer { bytes: ByteRing::new(), start }
    }

    /// Bytes held (sent and unacknowledged, and not yet sent).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Sequence number of the first byte held.
    pub fn start(&self) -> SeqNumber {
        self.start
    }

    /// Moves an empty buffer's start (the handshake fixed our ISS).
    pub fn set_start(&mut self, start: SeqNumber) {
        self.start = start;
    }

    /// Offset in the buffer of sequence number `seq` (0 for anything before
    /// the start).
    pub fn offset_of(&self, seq: SeqNumber) -> usize {
        (seq - self.start).max(0) as usize
    }

    /// Queues `data` after what is held.
    pub fn write(&mut self, data: &[u8]) {
        self.bytes.extend(data);
    }

    /// Copies `dst.len()` bytes from `offset` on into `dst` (a segment's payload).
    pub fn read(&self, offset: usize, dst: &mut [u8]) {
        self.bytes.copy_out(offset, dst);
    }

    /// A cumulative acknowledgement up to `ack`: drops the bytes it covers
    /// and returns how many.
    pub fn ack(&mut self, ack: SeqNumber) -> usize {
        let n = self.offset_of(ack).min(self.bytes.len());
        self.bytes.consume(n);
        self.start = self.start + n as u32;
        n
    }

    /// Drops everything (an abort or a reset).
    pub fn clear(&mut self) {
        self.bytes.clear();
    }
}
