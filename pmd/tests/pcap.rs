//! The pcap decorator: every received and sent frame, with true lengths and
//! timestamps, in a file tshark reads, bounded by the size limit.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{frames, pcap_records, pool, scratch_dir, up};

fn xstat(p: &dyn pmd::Port, k: &str) -> u64 {
    p.xstats().into_iter().find(|(n, _)| n == k).unwrap_or_else(|| panic!("no {k}")).1
}

#[test]
fn captures_sent_and_received_frames_exactly_and_stops_at_the_limit() {
    let dir = scratch_dir("pcap");
    let file = dir.join("a.pcap");
    let pool = pool("pcap_t", 1024);
    // 10 frames out of a, 10 into a (a is a loopback): 20 records of 16 + 200 bytes.
    let limit = 24 + 20 * (16 + 200) + 100;
    let spec = format!("ring:pcap_a?pcap={}&pcap_limit={limit}", file.display());
    let mut a = up(&spec, &pool, 64);
    let mut tx = a.take_tx_queue(0).unwrap();
    let mut rx = a.take_rx_queue(0).unwrap();
    let t0 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut v = frames(&pool, 0, 10, 200);
    let sent: Vec<Vec<u8>> = v.iter().map(|m| m.data().to_vec()).collect();
    assert_eq!(tx.tx_burst(&mut v), 10);
    let mut got = Vec::new();
    assert_eq!(rx.rx_burst(&mut got, 32), 10);
    drop(got);
    // Over the limit now: counted, not written.
    let mut v = frames(&pool, 10, 3, 200);
    tx.tx_burst(&mut v);
    assert_eq!(xstat(a.as_ref(), "pcap_captured_frames"), 20);
    assert_eq!(xstat(a.as_ref(), "pcap_not_captured_frames"), 3);
    assert_eq!(xstat(a.as_ref(), "pcap_not_captured_bytes"), 600);
    let mut got = Vec::new();
    rx.rx_burst(&mut got, 32);
    drop((got, tx, rx));
    drop(a);
    let t1 = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    assert!(std::fs::metadata(&file).unwrap().len() <= limit as u64);
    let recs = pcap_records(&file);
    assert_eq!(recs.len(), 20);
    for (i, (ts, orig, data)) in recs.iter().enumerate() {
        assert!(*ts >= t0 && *ts <= t1, "timestamp of record {i} outside the run");
        assert_eq!(*orig as usize, data.len());
        assert_eq!(data, &sent[i % 10], "record {i}");
    }
    // Wireshark reads it back (outside CI, a missing tshark skips only this part).
    if testkit::require(&["tshark"]) {
        let out = std::process::Command::new("tshark").arg("-r").arg(&file).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 20);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pcap_options_are_checked() {
    for (spec, needle) in [
        ("ring:pcap_b?pcap=/tmp/x.pcap", "'pcap_limit'"),
        ("ring:pcap_c?pcap_limit=100", "'pcap=FILE'"),
        ("ring:pcap_d?pcap=/tmp/x.pcap&pcap_limit=10", "'pcap_limit'"),
        ("ring:pcap_e?pcap=/nonexistent_dir/x.pcap&pcap_limit=1000", "pcap file"),
    ] {
        let e = pmd::open(spec).err().unwrap().to_string();
        assert!(e.contains(needle), "{spec}: {e}");
    }
}
