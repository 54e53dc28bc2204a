//! Packet capture as a decorator over any port: every frame a port receives and
//! every frame it sends is written to a pcap file (`tcpdump -r`, `tshark -r`),
//! with nanosecond timestamps (`CLOCK_REALTIME` at the burst) and true lengths.
//!
//! The file is bounded by a size the user gives (`pcap_limit`, bytes, counting the
//! 24-byte file header and every 16-byte record header): once the next frame would
//! not fit, capturing stops for good and every later frame is only counted
//! (`pcap_not_captured_frames` / `_bytes` in the port's xstats), so a long run never
//! fills a disk and a truncated capture is never mistaken for a complete one.
//!
//! Sent frames are captured as the driver takes them: the decorator writes the
//! frames handed to `tx_burst`, and frames the driver refused (left at the front of
//! the vector for the caller to retry) are remembered by buffer address so a retry
//! does not write them twice. The capture sits next to the driver, inside the
//! impairment decorator, so it shows the wire, not what the application asked for.
//! Checksums are written as the wire carries them: a sent frame whose checksums
//! are left to the device (`TxFlags::*_CKSUM`) and a received one whose L4
//! checksum is partial (`RxFlags::L4_CKSUM_PARTIAL`, e.g. `ring:..?csum=1`) are
//! written from a copy with them finished ([`crate::checksum`]), so `tshark -r` with
//! checksum validation sees valid frames; the frames themselves are untouched.
//! Writing goes through a buffered file behind a mutex taken once per burst; this is
//! a debugging tool, not a data-path feature. The buffer is flushed when the last
//! handle (port or queue) of the capture is dropped.
//!
//! Options on any spec: `pcap=FILE&pcap_limit=BYTES` (the limit is required);
//! `testpmd --pcap FILE --pcap-limit BYTES` captures every port into one file.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::TsResolution;

use crate::port::PortConfig;
use crate::spec::Spec;
use crate::{Mbuf, PmdError, Port, RxQueue, TxQueue};

/// Options the decorator accepts on every spec, with help text.
pub const PCAP_OPTIONS: &[(&str, &str)] = &[
    ("pcap", "capture every received and sent frame to this pcap file"),
    ("pcap_limit", "largest size of the pcap file in bytes (required with pcap)"),
];

/// Bytes of the pcap file header.
pub const FILE_HEADER_LEN: u64 = 24;
/// Bytes of a pcap record header.
pub const RECORD_HEADER_LEN: u64 = 16;
/// Longest frame written whole; longer ones are truncated (with their true length).
pub const SNAPLEN: u32 = 262_144;

/// Counters of a capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcapCounters {
    /// Frames written.
    pub captured_frames: u64,
    /// Frames not written because the size limit was reached.
    pub not_captured_frames: u64,
    /// Their bytes.
    pub not_captured_bytes: u64,
    /// Size of the file so far.
    pub file_bytes: u64,
    /// Write errors (the capture stops at the first).
    pub write_errors: u64,
}

struct Inner {
    writer: Option<PcapWriter<BufWriter<File>>>,
    limit: u64,
    full: bool,
    c: PcapCounters,
}

/// A pcap file shared by any number of queues and ports.
#[derive(Clone)]
pub struct PcapSink {
    inner: Arc<Mutex<Inner>>,
}

impl PcapSink {
    /// Creates (truncates) `path`, capturing at most `limit` bytes of file.
    pub fn create(path: &Path, limit: u64) -> Result<PcapSink, PmdError> {
        if limit < FILE_HEADER_LEN {
            return Err(PmdError::Config {
                field: "pcap_limit",
                reason: format!("{limit} bytes cannot hold even the {FILE_HEADER_LEN}-byte pcap header"),
            });
        }
        let io =
            |e: std::io::Error| PmdError::Io { context: format!("creating pcap file {}", path.display()), source: e };
        let f = File::create(path).map_err(io)?;
        let header = PcapHeader { snaplen: SNAPLEN, ts_resolution: TsResolution::NanoSecond, ..Default::default() };
        let writer =
            PcapWriter::with_header(BufWriter::new(f), header).map_err(|e| io(std::io::Error::other(e.to_string())))?;
        Ok(PcapSink {
            inner: Arc::new(Mutex::new(Inner {
                writer: Some(writer),
                limit,
                full: false,
                c: PcapCounters { file_bytes: FILE_HEADER_LEN, ..Default::default() },
            })),
        })
    }

    /// Writes a burst of frames (one timestamp for the burst), `sent` by the
    /// port (else received by it), with the checksums an offload left undone
    /// finished in the copy written.
    pub fn write(&self, frames: &[Mbuf], sent: bool) {
        if frames.is_empty() {
            return;
        }
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let g = &mut *g;
        let mut finished = Vec::new();
        for m in frames {
            let mut d = m.data();
            let tx_flags = m.meta().tx_flags;
            let partial = m.meta().rx_flags.contains(crate::RxFlags::L4_CKSUM_PARTIAL);
            if (sent && crate::checksum::tx_pending(m)) || (!sent && partial) {
                finished.clear();
                finished.extend_from_slice(d);
                if sent {
                    crate::checksum::finish_tx_in(&mut finished, tx_flags);
                } else {
                    crate::checksum::finish_partial(&mut finished);
                }
                d = &finished;
            }
            let cap = d.len().min(SNAPLEN as usize);
            let rec = RECORD_HEADER_LEN + cap as u64;
            if g.full || g.c.file_bytes + rec > g.limit || g.writer.is_none() {
                g.full = true;
                g.c.not_captured_frames += 1;
                g.c.not_captured_bytes += d.len() as u64;
                continue;
            }
            let w = g.writer.as_mut().expect("checked");
            match w.write_packet(&PcapPacket::new(ts, d.len() as u32, &d[..cap])) {
                Ok(_) => {
                    g.c.captured_frames += 1;
                    g.c.file_bytes += rec;
                }
                Err(_) => {
                    g.c.write_errors += 1;
                    g.c.not_captured_frames += 1;
                    g.c.not_captured_bytes += d.len() as u64;
                    g.writer = None;
                }
            }
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> PcapCounters {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).c
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            let mut f = w.into_writer();
            let _ = std::io::Write::flush(&mut f);
        }
    }
}

/// Reads `pcap=FILE&pcap_limit=BYTES` from a spec; `None` without `pcap`.
pub fn sink_from_spec(spec: &Spec) -> Result<Option<PcapSink>, PmdError> {
    let Some(path) = spec.get("pcap") else {
        if spec.get("pcap_limit").is_some() {
            return Err(PmdError::BadSpec {
                spec: spec.text.clone(),
                reason: "option 'pcap_limit' needs 'pcap=FILE'".into(),
            });
        }
        return Ok(None);
    };
    if path.is_empty() {
        return Err(spec.bad_value("pcap", path, "a file path"));
    }
    let Some(limit) = spec.parse_opt::<u64>("pcap_limit", "a file size in bytes")? else {
        return Err(PmdError::BadSpec {
            spec: spec.text.clone(),
            reason: "option 'pcap_limit' (bytes) is required with 'pcap': the capture must be bounded".into(),
        });
    };
    if limit < FILE_HEADER_LEN {
        return Err(spec.bad_value("pcap_limit", &limit.to_string(), "at least 24 bytes (the pcap header)"));
    }
    Ok(Some(PcapSink::create(Path::new(path), limit)?))
}

fn capture_counters(c: &PcapCounters) -> [(&'static str, u64); 4] {
    [
        ("pcap_captured_frames", c.captured_frames),
        ("pcap_not_captured_frames", c.not_captured_frames),
        ("pcap_not_captured_bytes", c.not_captured_bytes),
        ("pcap_file_bytes", c.file_bytes),
    ]
}

/// A receive queue whose frames are captured.
pub struct PcapRx {
    inner: Box<dyn RxQueue>,
    sink: PcapSink,
}

impl RxQueue for PcapRx {
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        let start = out.len();
        let n = self.inner.rx_burst(out, max);
        self.sink.write(&out[start..], false);
        n
    }
}

/// A transmit queue whose frames are captured.
pub struct PcapTx {
    inner: Box<dyn TxQueue>,
    sink: PcapSink,
    /// Addresses of frames written but refused by the driver last time.
    refused: Vec<usize>,
}

impl TxQueue for PcapTx {
    fn tx_burst(&mut self, pkts: &mut Vec<Mbuf>) -> usize {
        let skip = pkts.iter().zip(&self.refused).take_while(|(m, &a)| m.data_ptr() as usize == a).count();
        self.sink.write(&pkts[skip..], true);
        let n = self.inner.tx_burst(pkts);
        self.refused.clear();
        self.refused.extend(pkts.iter().map(|m| m.data_ptr() as usize));
        n
    }
}

/// A port whose traffic is captured.
pub struct PcapPort {
    inner: Box<dyn Port>,
    sink: PcapSink,
}

impl PcapPort {
    /// Wraps `inner`, capturing into `sink`.
    pub fn new(inner: Box<dyn Port>, sink: PcapSink) -> Self {
        PcapPort { inner, sink }
    }
}

impl Port for PcapPort {
    crate::port::delegate_port_basics!();

    fn configure(&mut self, conf: &PortConfig) -> Result<(), PmdError> {
        self.inner.configure(conf)
    }
    fn reset_stats(&mut self) {
        self.inner.reset_stats()
    }
    fn xstats(&self) -> Vec<(String, u64)> {
        let mut v = self.inner.xstats();
        // The capture's own counters are not reset with the port's: they describe the file.
        v.extend(capture_counters(&self.sink.counters()).iter().map(|(k, x)| (k.to_string(), *x)));
        v
    }
    fn take_rx_queue(&mut self, q: u16) -> Result<Box<dyn RxQueue>, PmdError> {
        Ok(Box::new(PcapRx { inner: self.inner.take_rx_queue(q)?, sink: self.sink.clone() }))
    }
    fn take_tx_queue(&mut self, q: u16) -> Result<Box<dyn TxQueue>, PmdError> {
        Ok(Box::new(PcapTx { inner: self.inner.take_tx_queue(q)?, sink: self.sink.clone(), refused: Vec::new() }))
    }
}
