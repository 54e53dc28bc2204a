//! `testpmd conformance` against every driver: ring (loopback and pair) and null
//! in-process; tap, af_packet and af_xdp in a quiet namespace (root; runs under CI=true).

mod testbed;

use testbed::{Guarded, Testbed};
use testpmd::conformance::{run, ConformanceConfig, Verdict};

fn verdicts(port: &str, peer: Option<&str>) -> Vec<(String, Verdict)> {
    let r = run(&ConformanceConfig::new(port, peer)).expect("conformance runs");
    for l in &r {
        println!("{l}");
    }
    r.into_iter().map(|c| (c.name.to_string(), c.verdict)).collect()
}

fn assert_no_fail(v: &[(String, Verdict)]) {
    let fails: Vec<_> = v.iter().filter(|(_, x)| matches!(x, Verdict::Fail(_))).collect();
    assert!(fails.is_empty(), "{fails:?}");
}

fn unsupported(v: &[(String, Verdict)]) -> Vec<&str> {
    v.iter().filter(|(_, x)| matches!(x, Verdict::Unsupported(_))).map(|(n, _)| n.as_str()).collect()
}

#[test]
fn ring_loopback_and_pair_pass() {
    let v = verdicts("ring:conf_lo", None);
    assert_no_fail(&v);
    assert_eq!(unsupported(&v), ["checksum_offload", "multi_queue"]);
    let v = verdicts("ring:conf_a?peer=conf_b", Some("ring:conf_b?peer=conf_a"));
    assert_no_fail(&v);
    assert_eq!(unsupported(&v), ["checksum_offload", "multi_queue"]);
    // With csum=1 the checksum offloads pass: IPv4 computed, UDP left partial.
    let v = verdicts("ring:conf_c?peer=conf_d&csum=1", Some("ring:conf_d?peer=conf_c&csum=1"));
    assert_no_fail(&v);
    assert_eq!(unsupported(&v), ["multi_queue"]);
    // With rss=1 the port spreads flows over its queues by its RSS.
    let v = verdicts("ring:conf_e?peer=conf_f&rss=1", Some("ring:conf_f?peer=conf_e&rss=1"));
    assert_no_fail(&v);
    assert_eq!(unsupported(&v), ["checksum_offload"]);
}

#[test]
fn null_passes_what_applies_and_says_why_the_rest_does_not() {
    let v = verdicts("null", None);
    assert_no_fail(&v);
    assert_eq!(
        unsupported(&v),
        ["jumbo_frame", "checksum_offload", "multi_queue", "fwd_io", "fwd_macswap", "promiscuous"]
    );
    for (_, x) in &v {
        if let Verdict::Unsupported(why) = x {
            assert!(why.contains("no wire"), "{why}");
        }
    }
}

/// `testpmd conformance` of `port` against `peer` inside a fresh quiet
/// namespace named after `tag`; `None` where the testbed cannot run (a skip).
/// Every check must pass or be unsupported; returns the report.
fn conformance_in_quiet_bed(tag: &str, port: &str, peer: &str) -> Option<String> {
    if !testbed::available(&[]) {
        return None;
    }
    let tb = Testbed::up(tag, &["--quiet"]);
    let mut c = tb.cmd(testbed::testpmd());
    c.args(["conformance", "--port", port, "--peer", peer]);
    let out = Guarded::spawn(c).wait(120.0);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    println!("{text}");
    assert!(out.status.success(), "conformance failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("FAIL "), "{text}");
    Some(text)
}

#[test]
fn af_packet_passes_against_its_veth_peer() {
    let Some(text) = conformance_in_quiet_bed("confaf", "af_packet:p0?queues=4", "af_packet:k0") else { return };
    for check in ["stats", "mtu", "jumbo_frame", "multi_queue", "fwd_io", "fwd_macswap", "promiscuous", "mbuf_leak"] {
        assert!(text.lines().any(|l| l.starts_with("PASS") && l.contains(check)), "{check} must pass:\n{text}");
    }
}

#[test]
fn tap_passes_against_af_packet_on_its_kernel_side() {
    // The tap port creates tc0 itself inside the quiet namespace; the peer is an
    // af_packet socket on the kernel side of the same interface.
    let Some(text) = conformance_in_quiet_bed("conftap", "tap:tc0?queues=4", "af_packet:tc0") else { return };
    assert!(text.contains("12 passed, 0 failed, 0 unsupported"), "{text}");
}

#[test]
fn af_xdp_passes_against_an_af_packet_peer() {
    let Some(text) = conformance_in_quiet_bed("confxdp", "af_xdp:p0", "af_packet:k0") else { return };
    // AF_XDP truly has no checksum offload and no say in the device's RSS.
    assert!(text.contains("10 passed, 0 failed, 2 unsupported"), "{text}");
    for check in ["checksum_offload", "multi_queue"] {
        assert!(text.lines().any(|l| l.starts_with("UNSUPPORTED") && l.contains(check)), "{check}:\n{text}");
    }
}
