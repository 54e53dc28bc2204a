//! Real peers: our echo server on a TAP port (and, for sockperf, on an
//! `af_xdp` veth end) inside a namespace made by
//! `scripts/testbed.sh up NAME --tap`, and the kernel on the other side of the
//! TAP — the same echo client code on kernel sockets (the mix: kernel client →
//! our server, and our client → the app's server on kernel sockets), and Debian's `sockperf` (ping-pong and throughput) against
//! `echo server --sockperf`, whose counters must match what sockperf reports.
//!
//! Needs root, `ip` and `sockperf`. Under `CI=true` these tests run (and fail if
//! they cannot); elsewhere they print why they skip. Namespaces and processes
//! are removed by guards even when a test fails.

mod common;

use std::time::{Duration, Instant};

use common::*;

const TAP_MAC: &str = "02:00:00:00:01:01";
const OURS4: &str = "198.18.1.1";
const OURS6: &str = "2001:2:0:1::1";

fn available() -> bool {
    testkit::require_root("network namespaces, TAP") && testkit::require(&["ip", "sockperf", "python3", "kill"])
}

/// Our server on the namespace's TAP.
fn server(tb: &Testbed, port: u16, extra: &[&str]) -> Bg {
    server_on(tb, &format!("tap:t0?mac={TAP_MAC}"), OURS4, OURS6, port, extra)
}

/// Our server on port spec `spec` with addresses `ip4`/24 and `ip6`/64.
fn server_on(tb: &Testbed, spec: &str, ip4: &str, ip6: &str, port: u16, extra: &[&str]) -> Bg {
    let listen = format!(":{port}");
    let mut c = tb.cmd(echo_bin());
    c.args(["server", "--stack", "user", "--port", spec, "--ip", &format!("{ip4}/24")]);
    c.args(["--ip", &format!("{ip6}/64"), "--listen", &listen, "--json", "--duration", "60"]);
    c.args(extra);
    Bg::spawn(&mut c)
}

/// Waits until a kernel TCP connect from the namespace to our server succeeds.
fn wait_up(tb: &Testbed, ip: &str, port: u16) {
    let end = Instant::now() + Duration::from_secs(20);
    let target = format!("{ip}:{port}");
    while Instant::now() < end {
        let probe = format!("import socket; s=socket.create_connection(('{ip}', {port}), timeout=1); s.close()");
        if tb.cmd("python3").args(["-c", &probe]).output().is_ok_and(|o| o.status.success()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("our server on {target} did not come up");
}

#[test]
fn kernel_client_to_our_server_over_tap() {
    if !available() {
        return;
    }
    let tb = Testbed::up(&unique("echk"), &["--tap", "--tap-mac", TAP_MAC]).expect("testbed");
    let srv = server(&tb, 7, &[]);
    wait_up(&tb, OURS4, 7);
    let mut total = 0u64;
    for target in [format!("tcp://{OURS4}:7"), format!("tcp://[{OURS6}]:7")] {
        for (mode, extra) in [("pingpong", vec![]), ("throughput", vec!["--rate", "2000"]), ("churn", vec![])] {
            let mut c = tb.cmd(echo_bin());
            c.args(["client", "--stack", "kernel", "--target", &target, "--mode", mode, "--conns", "4"]);
            c.args(["--duration", "1", "--json"]).args(&extra);
            let o = run_bounded(&mut c, Duration::from_secs(30));
            assert!(o.status.success(), "{mode} to {target}: {o:?}");
            let r: serde_json::Value =
                serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).expect("client JSON");
            assert_eq!(r["errors"], 0, "{mode} to {target}: {r}");
            let n = r["messages"].as_u64().unwrap();
            assert!(n > 0, "{mode} to {target}: {r}");
            total += n;
        }
    }
    let s = last_json(&srv.stop());
    assert_eq!(s["tcp_errors"], 0, "{s}");
    assert!(s["tcp_bytes"].as_u64().unwrap() >= total * 64, "{s} vs {total} messages");
}

#[test]
fn our_client_to_kernel_server_over_tap() {
    if !available() {
        return;
    }
    let tb = Testbed::up(&unique("echr"), &["--tap", "--tap-mac", TAP_MAC]).expect("testbed");
    // The kernel's echo server (our app on kernel sockets) on its side of the TAP.
    let mut c = tb.cmd(echo_bin());
    c.args(["server", "--stack", "kernel", "--listen", ":7", "--json", "--duration", "60"]);
    let srv = Bg::spawn(&mut c);
    let spec = format!("tap:t0?mac={TAP_MAC}");
    let mut total = 0u64;
    for (target, ip4, ip6) in [("198.18.1.2", true, false), ("[2001:2:0:1::2]", false, true)] {
        for mode in ["pingpong", "churn"] {
            let mut c = tb.cmd(echo_bin());
            c.args(["client", "--stack", "user", "--port", &spec]);
            if ip4 {
                c.args(["--ip", &format!("{OURS4}/24")]);
            }
            if ip6 {
                c.args(["--ip", &format!("{OURS6}/64")]);
            }
            c.args(["--target", &format!("tcp://{target}:7"), "--mode", mode, "--conns", "4", "--duration", "1"]);
            c.args(["--json"]);
            // The kernel's server may still be starting: retry while refused.
            let mut o = run_bounded(&mut c, Duration::from_secs(30));
            for _ in 0..20 {
                if o.status.success() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
                o = run_bounded(&mut c, Duration::from_secs(30));
            }
            assert!(o.status.success(), "{mode} to {target}: {o:?}");
            let r: serde_json::Value =
                serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).expect("client JSON");
            assert_eq!(r["errors"], 0, "{mode} to {target}: {r}");
            assert!(r["messages"].as_u64().unwrap() > 0, "{mode} to {target}: {r}");
            total += r["messages"].as_u64().unwrap();
        }
    }
    let s = last_json(&srv.stop());
    assert_eq!(s["tcp_errors"], 0, "{s}");
    assert!(s["tcp_bytes"].as_u64().unwrap() >= total * 64, "{s} vs {total} messages");
}

/// Waits (bounded) until the kernel's TCP sockets to our port are closed or in
/// TIME-WAIT: whatever sockperf wrote before exiting has reached our server.
fn drained(tb: &Testbed, port: u16) {
    let end = Instant::now() + Duration::from_secs(15);
    let filter = format!("dport = :{port}");
    while Instant::now() < end {
        let o = tb.cmd("ss").args(["-Htan", "exclude", "time-wait", &filter]).output().expect("ss");
        if String::from_utf8_lossy(&o.stdout).trim().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the kernel's connections to :{port} did not finish closing");
}

/// One sockperf run from the namespace; returns (messages sent, stdout).
fn sockperf(tb: &Testbed, args: &[&str]) -> (u64, String) {
    let o = run_bounded(tb.cmd("sockperf").args(args), Duration::from_secs(60));
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "sockperf {args:?}: {text}");
    assert!(!text.contains("ERROR"), "sockperf {args:?}: {text}");
    // ping-pong: "[Total Run] ... SentMessages=N; ReceivedMessages=M"
    // throughput: "Total of N messages sent in S sec"
    let sent = if let Some(l) = text.lines().find(|l| l.contains("[Total Run]")) {
        let n = |key: &str| -> u64 {
            let at = l.find(key).unwrap_or_else(|| panic!("{key} in {l}")) + key.len();
            l[at..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap()
        };
        let (s, r) = (n("SentMessages="), n("ReceivedMessages="));
        // The last message may still be in flight when the client stops.
        assert!(s - r <= 1, "ping-pong lost messages: {l}");
        s
    } else {
        let l = text.lines().find(|l| l.contains("Total of")).unwrap_or_else(|| panic!("no total in {text}"));
        l.split_whitespace().find_map(|w| w.parse().ok()).expect("a count")
    };
    (sent, text)
}

#[test]
fn sockperf_against_our_server_over_tap() {
    if !available() {
        return;
    }
    let tb = Testbed::up(&unique("echs"), &["--tap", "--tap-mac", TAP_MAC]).expect("testbed");
    sockperf_against(&tb, OURS4, |tb, port| server(tb, port, &["--sockperf"]));
}

#[test]
fn sockperf_against_our_server_on_af_xdp() {
    if !available() || !testkit::require(&["ethtool"]) {
        return;
    }
    let tb = Testbed::up(&unique("echx"), &[]).expect("testbed");
    // Over a veth, XDP would get the kernel's TCP/UDP checksums partial (see
    // the af_xdp driver's docs): the kernel's side computes them itself.
    let o = tb.cmd("ethtool").args(["-K", "k0", "tx", "off"]).output().expect("ethtool");
    assert!(o.status.success(), "ethtool: {}", String::from_utf8_lossy(&o.stderr));
    sockperf_against(&tb, "198.18.0.1", |tb, port| {
        server_on(tb, "af_xdp:p0", "198.18.0.1", "2001:2::1", port, &["--sockperf"])
    });
}

/// sockperf ping-pong (TCP, UDP) and throughput (TCP) against our server at
/// `ip`, started fresh by `start` for each run; its counters must match.
fn sockperf_against(tb: &Testbed, ip: &str, start: impl Fn(&Testbed, u16) -> Bg) {
    for (what, args) in [
        ("tcp ping-pong", vec!["ping-pong", "--tcp", "-m", "64"]),
        ("tcp throughput", vec!["throughput", "--tcp", "-m", "64"]),
        ("udp ping-pong", vec!["ping-pong", "-m", "64"]),
    ] {
        let srv = start(tb, 11111);
        wait_up(tb, ip, 11111);
        let mut a = args.clone();
        a.extend(["-i", ip, "-p", "11111", "-t", "2"]);
        let (sent, text) = sockperf(tb, &a);
        if a.contains(&"--tcp") {
            drained(tb, 11111);
        }
        let s = last_json(&srv.stop());
        assert!(sent > 0, "{what}: {text}");
        assert_eq!(s["sockperf_messages"].as_u64(), Some(sent), "{what}: server {s} vs sockperf:\n{text}");
        assert_eq!(s["tcp_errors"], 0, "{what}: {s}");
    }
}
