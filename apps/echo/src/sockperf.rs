//! The sockperf wire protocol, server side.
//!
//! Every sockperf message starts with a 14-byte header in network byte order:
//! `sequence: u64`, `flags: u16`, `length: u32` (the whole message, header
//! included). Flags: `1` client (set on what the client sends), `2` pong request
//! (the server must answer), `4` warm-up (not counted, not answered). Over TCP the
//! stream is cut into messages by `length`; over UDP each datagram is one
//! message. The server answers a pong request with the same bytes and the client
//! flag cleared, and counts every non-warm-up client message, as sockperf's own
//! server does (so its counters can be compared with what the client reports).

/// Header length.
pub const HEADER: usize = 14;
/// Set by the client.
pub const FLAG_CLIENT: u16 = 1;
/// The client wants an answer.
pub const FLAG_PONG: u16 = 2;
/// Warm-up message: neither counted nor answered.
pub const FLAG_WARMUP: u16 = 4;
/// Longest message accepted (sockperf's own limit is the largest UDP payload).
pub const MAX_MESSAGE: usize = 65_536;

/// What to do with one whole message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not for a server (client flag clear) or warm-up: ignore.
    Ignore,
    /// Count it; answer if `reply`.
    Count {
        /// Send it back (pong request).
        reply: bool,
    },
}

/// The length field of a header.
pub fn length(header: &[u8]) -> usize {
    u32::from_be_bytes([header[10], header[11], header[12], header[13]]) as usize
}

/// Judges one whole message and, when it must be answered, clears its client
/// flag in place.
pub fn handle(msg: &mut [u8]) -> Verdict {
    let flags = u16::from_be_bytes([msg[8], msg[9]]);
    if flags & FLAG_CLIENT == 0 || flags & FLAG_WARMUP != 0 {
        return Verdict::Ignore;
    }
    let reply = flags & FLAG_PONG != 0;
    if reply {
        msg[8..10].copy_from_slice(&(flags & !FLAG_CLIENT).to_be_bytes());
    }
    Verdict::Count { reply }
}

/// Cuts a TCP byte stream into messages.
#[derive(Default)]
pub struct Framer {
    buf: Vec<u8>,
}

/// Counters of one framer pass.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Pass {
    /// Messages counted.
    pub counted: u64,
    /// Replies appended.
    pub replies: u64,
}

impl Framer {
    /// Feeds received bytes; appends the answers to `out`. `Err` names a message
    /// that cannot be framed (the connection should be closed, as sockperf does).
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<Pass, String> {
        self.buf.extend_from_slice(data);
        let mut at = 0;
        let mut pass = Pass::default();
        while self.buf.len() - at >= HEADER {
            let len = length(&self.buf[at..]);
            if !(HEADER..=MAX_MESSAGE).contains(&len) {
                return Err(format!("sockperf message length {len} outside {HEADER}..={MAX_MESSAGE}"));
            }
            if self.buf.len() - at < len {
                break;
            }
            let msg = &mut self.buf[at..at + len];
            if let Verdict::Count { reply } = handle(msg) {
                pass.counted += 1;
                if reply {
                    out.extend_from_slice(msg);
                    pass.replies += 1;
                }
            }
            at += len;
        }
        self.buf.drain(..at);
        Ok(pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, flags: u16, len: usize) -> Vec<u8> {
        let mut m = vec![0xabu8; len];
        m[..8].copy_from_slice(&seq.to_be_bytes());
        m[8..10].copy_from_slice(&flags.to_be_bytes());
        m[10..14].copy_from_slice(&(len as u32).to_be_bytes());
        m
    }

    #[test]
    fn frames_a_stream_split_anywhere_and_answers_pong_requests() {
        let mut stream = Vec::new();
        stream.extend(msg(1, FLAG_CLIENT | FLAG_PONG, 64));
        stream.extend(msg(2, FLAG_CLIENT, 100)); // throughput: counted, not answered
        stream.extend(msg(3, FLAG_CLIENT | FLAG_PONG | FLAG_WARMUP, 14)); // warm-up
        stream.extend(msg(4, FLAG_PONG, 20)); // not from a client
        stream.extend(msg(5, FLAG_CLIENT | FLAG_PONG, 14));
        for cut in [1, 7, 13, 14, 63, 64, 65, 150] {
            let mut f = Framer::default();
            let mut out = Vec::new();
            let a = f.feed(&stream[..cut], &mut out).unwrap();
            let b = f.feed(&stream[cut..], &mut out).unwrap();
            assert_eq!(a.counted + b.counted, 3, "cut {cut}");
            assert_eq!(a.replies + b.replies, 2);
            let mut want = msg(1, FLAG_PONG, 64);
            want.extend(msg(5, FLAG_PONG, 14));
            assert_eq!(out, want);
        }
    }

    #[test]
    fn rejects_impossible_lengths() {
        let mut f = Framer::default();
        let mut m = msg(1, FLAG_CLIENT, 14);
        m[10..14].copy_from_slice(&3u32.to_be_bytes());
        assert!(f.feed(&m, &mut Vec::new()).unwrap_err().contains("length 3"));
    }
}
