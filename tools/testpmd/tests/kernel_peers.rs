//! Real peers: the Linux kernel in a network namespace (scripts/testbed.sh) sends
//! ICMP and UDP to our `af_packet` and `tap` ports, and `tcpdump` in the namespace
//! sees exactly what testpmd sent. Needs root; runs (never skips) under CI=true.
//! Every test uses its own namespace, removed by a guard even on failure, and every
//! process it starts is bounded in time.

mod testbed;

use std::path::PathBuf;

use pmd::port::MacAddr;
use testbed::{core, json, pcap_frames, testpmd, Guarded, Testbed};
use testpmd::fwd::{ipv4_checksum, udp_template, TX_IP_SRC};

const TAP_MAC: &str = "02:00:00:00:01:01";
const PINGS: usize = 5;
const DATAGRAMS: usize = 7;
const PAYLOAD: usize = 100;

/// Sends PINGS echo requests and DATAGRAMS UDP datagrams of PAYLOAD bytes from the
/// namespace's kernel to `dst`; returns (frames, bytes) on the wire.
fn kernel_sends(tb: &Testbed, dst: &str) -> (u64, u64) {
    // ping exits non-zero (nobody answers); only the requests matter. `-W`, not
    // `-w`: with a deadline ping keeps sending until it has replies.
    let _ = tb.run("ping", &["-c", &PINGS.to_string(), "-i", "0.05", "-W", "0.2", "-q", dst]);
    let py = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range({DATAGRAMS}):\n    s.sendto(bytes([i])*{PAYLOAD},('{dst}',9999))\n"
    );
    let out = tb.run("/usr/bin/python3", &["-c", &py]);
    assert!(out.status.success(), "python3: {}", String::from_utf8_lossy(&out.stderr));
    let frames = (PINGS + DATAGRAMS) as u64;
    let bytes = PINGS as u64 * (14 + 20 + 8 + 56) + DATAGRAMS as u64 * (14 + 20 + 8 + PAYLOAD as u64);
    (frames, bytes)
}

/// testpmd rxonly on `port` in a namespace (`tb_args`) counts exactly what the
/// kernel sends to `dst` once `ready` says the port is attached. Skips (returns)
/// where the testbed or its programs are missing.
fn rxonly_counts_exactly(tag: &str, tb_args: &[&str], port: &str, dst: &str, ready: impl Fn(&Testbed) -> bool) {
    if !testbed::available(&["ping", "/usr/bin/python3"]) {
        return;
    }
    let tb = Testbed::up(tag, tb_args);
    let mut c = tb.cmd(testpmd());
    c.args(["--port", port, "--fwd", "rxonly", "--cores", &core(), "--duration", "4", "--json", "--no-promisc"]);
    let pmd = Guarded::spawn(c);
    tb.wait_for("the port to attach", 3.0, ready);
    let (frames, bytes) = kernel_sends(&tb, dst);
    let v = json(&pmd.wait(15.0));
    let p = &v["ports"][0];
    assert_eq!(p["rx_packets"].as_u64(), Some(frames), "{v}");
    assert_eq!(p["rx_bytes"].as_u64(), Some(bytes), "{v}");
    assert_eq!(p["fwd_rx"].as_u64(), Some(frames), "{v}");
    assert_eq!(p["rx_errors"].as_u64(), Some(0), "{v}");
    assert_eq!(v["mbufs_leaked"].as_u64(), Some(0), "{v}");
}

#[test]
fn af_packet_rxonly_counts_exactly_what_the_kernel_sent() {
    // The socket exists once /proc/net/packet of the namespace lists it.
    rxonly_counts_exactly("afrx", &["--quiet"], "af_packet:p0", "198.18.0.1", |tb| {
        tb.read("/proc/net/packet").lines().count() > 1
    });
}

/// An `af_xdp` port is receiving once its program is on the interface and its
/// socket exists (it goes into the XSKMAP right after it is bound).
pub fn af_xdp_ready(tb: &Testbed, ifname: &str) -> bool {
    let link = String::from_utf8_lossy(&tb.run("ip", &["link", "show", ifname]).stdout).to_string();
    let socks = tb.read("/proc/net/protocols");
    let xdp_sockets = socks
        .lines()
        .find(|l| l.starts_with("XDP "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    link.contains("prog/xdp") && xdp_sockets > 0
}

#[test]
fn af_xdp_rxonly_counts_exactly_what_the_kernel_sent() {
    if !testbed::available(&["ping", "/usr/bin/python3"]) {
        return;
    }
    rxonly_counts_exactly("xdprx", &["--quiet"], "af_xdp:p0", "198.18.0.1", |tb| af_xdp_ready(tb, "p0"));
}

#[test]
fn af_xdp_with_busy_poll_small_rings_and_big_frames_counts_exactly_too() {
    if !testbed::available(&["ping", "/usr/bin/python3"]) {
        return;
    }
    let spec = "af_xdp:p0?busy_poll=50&need_wakeup=0&rx_size=256&tx_size=64&num_frames=512&frame_size=4096";
    rxonly_counts_exactly("xdprx2", &["--quiet"], spec, "198.18.0.1", |tb| af_xdp_ready(tb, "p0"));
}

#[test]
fn tap_rxonly_counts_exactly_what_the_kernel_sent() {
    let port = format!("tap:t0?mac={TAP_MAC}");
    // The TAP has carrier once a queue is attached.
    rxonly_counts_exactly("taprx", &["--quiet", "--tap", "--tap-mac", TAP_MAC], &port, "198.18.1.1", |tb| {
        tb.read("/sys/class/net/t0/carrier") == "1"
    });
}

/// The frames testpmd's txonly (N frames) then flowgen (N frames, `flows` flows)
/// sends from `src` with DPDK's default peer MAC 02:00:00:00:00:00.
fn expected_frames(src: MacAddr, n: usize, len: usize, flows: u32) -> Vec<Vec<u8>> {
    let dst = MacAddr([2, 0, 0, 0, 0, 0]);
    let t = udp_template(len, src, dst);
    let mut v: Vec<Vec<u8>> = (0..n).map(|_| t.clone()).collect();
    for i in 0..n {
        let flow = i as u32 % flows;
        let mut d = t.clone();
        d[28] = TX_IP_SRC[2].wrapping_add((flow >> 8) as u8);
        d[29] = TX_IP_SRC[3].wrapping_add(flow as u8);
        d[34..36].copy_from_slice(&(1024u16.wrapping_add(flow as u16)).to_be_bytes());
        let c = ipv4_checksum(&d[14..34]);
        d[24..26].copy_from_slice(&c.to_be_bytes());
        v.push(d);
    }
    v
}

/// tcpdump on `kernel_if` in a namespace (`tb_args`) captures, byte for byte,
/// what testpmd's txonly then flowgen send from `port` with source MAC `src`.
/// Skips (returns) where the testbed or its programs are missing.
fn tcpdump_sees_what_we_sent(
    tag: &str,
    tb_args: &[&str],
    port: &str,
    kernel_if: &str,
    src: impl Fn(&Testbed) -> MacAddr,
) {
    const N: usize = 10;
    const LEN: usize = 100;
    const FLOWS: u32 = 4;
    if !testbed::available(&["timeout", "tcpdump"]) {
        return;
    }
    let tb = Testbed::up(tag, tb_args);
    let dir = std::env::temp_dir().join(format!("{}_cap", tb.ns));
    std::fs::create_dir_all(&dir).unwrap();
    let file: PathBuf = dir.join("k.pcap");
    let mut c = tb.cmd("timeout");
    c.args(["20", "tcpdump", "-i", kernel_if, "-n", "-U", "-w"]).arg(&file).args(["-c", &(2 * N).to_string(), "udp"]);
    let mut dump = Guarded::spawn(c);
    dump.wait_stderr("listening on", 10.0);
    for (mode, extra) in [("txonly", vec![]), ("flowgen", vec!["--flows", "4"])] {
        let mut c = tb.cmd(testpmd());
        c.args(["--port", port, "--fwd", mode, "--cores", &core(), "--duration", "1", "--json"]);
        c.args(["--nb-pkts", &N.to_string(), "--txpkts", &LEN.to_string()]).args(extra);
        let v = json(&Guarded::spawn(c).wait(15.0));
        assert_eq!(v["ports"][0]["tx_packets"].as_u64(), Some(N as u64), "{mode}: {v}");
        assert_eq!(v["ports"][0]["tx_bytes"].as_u64(), Some((N * LEN) as u64), "{mode}: {v}");
    }
    let out = dump.wait(15.0);
    assert!(out.status.success(), "tcpdump: {}", String::from_utf8_lossy(&out.stderr));
    let got = pcap_frames(&file);
    let _ = std::fs::remove_dir_all(&dir);
    let want = expected_frames(src(&tb), N, LEN, FLOWS);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "frame {i} differs from what testpmd sent");
    }
}

#[test]
fn af_packet_txonly_and_flowgen_reach_the_kernel_byte_for_byte() {
    tcpdump_sees_what_we_sent("aftx", &["--quiet"], "af_packet:p0", "k0", |tb| {
        tb.read("/sys/class/net/p0/address").parse().expect("p0 MAC")
    });
}

#[test]
fn af_xdp_txonly_and_flowgen_reach_the_kernel_byte_for_byte() {
    if !testbed::available(&["timeout", "tcpdump"]) {
        return;
    }
    tcpdump_sees_what_we_sent("xdptx", &["--quiet"], "af_xdp:p0", "k0", |tb| {
        tb.read("/sys/class/net/p0/address").parse().expect("p0 MAC")
    });
}

#[test]
fn tap_txonly_and_flowgen_reach_the_kernel_byte_for_byte() {
    let port = format!("tap:t0?mac={TAP_MAC}");
    tcpdump_sees_what_we_sent("taptx", &["--quiet", "--tap", "--tap-mac", TAP_MAC], &port, "t0", |_| {
        TAP_MAC.parse().unwrap()
    });
}

#[test]
fn ipv6_ping_reaches_af_packet_and_tap() {
    if !testbed::available(&["ping"]) {
        return;
    }
    // Not quiet: IPv6 on, so count only the echo requests (the kernel may also send
    // MLD reports and router solicitations).
    let tb = Testbed::up("v6", &["--tap", "--tap-mac", TAP_MAC]);
    let port = format!("tap:t0?mac={TAP_MAC}");
    let mut c = tb.cmd(testpmd());
    c.args(["--port", "af_packet:p0", "--port", &port, "--fwd", "rxonly", "--cores", &core(), "--duration", "3"]);
    c.args(["--json", "--no-promisc"]);
    let pmd = Guarded::spawn(c);
    tb.wait_for("ports to attach", 3.0, |tb| {
        tb.read("/sys/class/net/t0/carrier") == "1" && tb.read("/proc/net/packet").lines().count() > 1
    });
    for dst in ["2001:2::1", "2001:2:0:1::1"] {
        let _ = tb.run("ping", &["-6", "-c", "3", "-i", "0.05", "-W", "0.2", "-q", dst]);
    }
    let v = json(&pmd.wait(15.0));
    for p in v["ports"].as_array().unwrap() {
        assert!(p["rx_packets"].as_u64().unwrap() >= 3, "{v}");
        assert_eq!(p["rx_errors"].as_u64(), Some(0), "{v}");
    }
}
