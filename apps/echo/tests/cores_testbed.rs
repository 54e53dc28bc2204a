//! Real peers on two cores: our echo server and client with `--cores A,B
//! --rss-key microsoft` on a 2-queue TAP (`tap:t0?queues=2`) and a 2-queue
//! AF_PACKET fanout (`af_packet:p0?queues=2`) in a namespace made by
//! `scripts/testbed.sh`, against the kernel: 200 connections from the
//! kernel's clients (Python sockets) to our server, and our client on two
//! cores making at least 200 connections to the kernel's server (our app on
//! kernel sockets). Every connection completes byte-exact, and both ports
//! steer exactly — AF_PACKET's fanout group runs our Toeplitz hash as a
//! classic BPF program, the TAP as an eBPF steering program — so no frame is
//! misdirected or handed between cores. With `rss=0` the TAP's queues are the
//! kernel's choice, and the stacks dispatch in software: every frame counted
//! as misdirected is handed to its owner, none processed on the wrong core.
//!
//! Needs root, `ip` and `python3`; under `CI=true` these run (and fail if they
//! cannot). Namespaces and processes are removed by guards even on failure.

mod common;

use std::time::{Duration, Instant};

use common::*;

const TAP_MAC: &str = "02:00:00:00:01:01";

fn available() -> bool {
    testkit::require_root("network namespaces, TAP") && testkit::require(&["ip", "python3", "kill"])
}

fn two_cores() -> Option<String> {
    match pmd::runtime::available_cores().as_slice() {
        [.., a, b] => Some(format!("{a},{b}")),
        _ => {
            testkit::skip("needs two CPUs");
            None
        }
    }
}

/// (spec, our address, the kernel's address, steers exactly) for each port
/// type, and the TAP with `rss=0`: the kernel's own spread, software dispatch.
fn ports() -> [(String, &'static str, &'static str, bool); 3] {
    [
        (format!("tap:t0?mac={TAP_MAC}&queues=2"), "198.18.1.1", "198.18.1.2", true),
        ("af_packet:p0?queues=2".to_string(), "198.18.0.1", "198.18.0.2", true),
        (format!("tap:t0?mac={TAP_MAC}&queues=2&rss=0"), "198.18.1.1", "198.18.1.2", false),
    ]
}

/// What the counters must say: exact steering misdirects nothing; software
/// dispatch hands off every misdirected frame.
fn check_steering(spec: &str, exact: bool, v: &serde_json::Value) {
    if exact {
        assert_eq!((&v["rss_misdirected"], &v["frames_handed_off"]), (&0.into(), &0.into()), "{spec}: {v}");
    } else {
        assert_eq!(v["frames_handed_off"], v["rss_misdirected"], "{spec}: every misdirected frame handed off: {v}");
    }
}

fn wait_up(tb: &Testbed, ip: &str, port: u16) {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        let host = ip.trim_matches(['[', ']']);
        let probe = format!("import socket; s=socket.create_connection(('{host}', {port}), timeout=1); s.close()");
        if tb.cmd("python3").args(["-c", &probe]).output().is_ok_and(|o| o.status.success()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("our server on {ip}:{port} did not come up");
}

fn last_json(out: &std::process::Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON: {text} {}", String::from_utf8_lossy(&out.stderr)));
    serde_json::from_str(line).expect("JSON")
}

/// 200 connections from the namespace, 10 at a time: each sends 100 bytes,
/// reads them back, checks them and closes. Prints how many were exact.
const CLIENTS: &str = r#"
import socket, sys, threading
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok = []
def one(i):
    msg = bytes((i * 7 + k) % 256 for k in range(100))
    s = socket.create_connection((ip.strip("[]"), port), timeout=10)
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        part = s.recv(len(msg) - len(got))
        if not part:
            break
        got += part
    s.close()
    if got == msg:
        ok.append(i)
def worker(first):
    for i in range(first, n, 10):
        try:
            one(i)
        except Exception as e:
            print("connection", i, e, file=sys.stderr)
ts = [threading.Thread(target=worker, args=(t,)) for t in range(10)]
[t.start() for t in ts]
[t.join() for t in ts]
print(len(ok))
"#;

#[test]
fn kernel_clients_make_200_connections_to_our_server_on_two_cores() {
    if !available() {
        return;
    }
    let Some(cores) = two_cores() else { return };
    for (spec, ours, _, exact) in ports() {
        let tb = Testbed::up(&unique("ecq"), &["--tap", "--tap-mac", TAP_MAC]).expect("testbed");
        let mut c = tb.cmd(echo_bin());
        c.args(["server", "--stack", "user", "--port", &spec, "--ip", &format!("{ours}/24"), "--listen", ":7"]);
        c.args(["--cores", &cores, "--rss-key", "microsoft", "--json", "--duration", "60"]);
        let srv = Bg::spawn(&mut c);
        wait_up(&tb, ours, 7);
        let o = run_bounded(tb.cmd("python3").args(["-c", CLIENTS, ours, "7", "200"]), Duration::from_secs(60));
        let text = String::from_utf8_lossy(&o.stdout);
        assert_eq!(text.trim(), "200", "{spec}: exact echoes; stderr: {}", String::from_utf8_lossy(&o.stderr));
        let s = last_json(&srv.stop());
        assert_eq!(s["tcp_errors"], 0, "{spec}: {s}");
        assert!(s["tcp_accepted"].as_u64().unwrap() >= 200, "{spec}: {s}");
        check_steering(&spec, exact, &s);
        eprintln!("{spec}: server counters {s}");
    }
}

#[test]
fn our_client_on_two_cores_makes_200_connections_to_the_kernels_server() {
    if !available() {
        return;
    }
    let Some(cores) = two_cores() else { return };
    for (spec, ours, kernel, exact) in ports() {
        let tb = Testbed::up(&unique("ecr"), &["--tap", "--tap-mac", TAP_MAC]).expect("testbed");
        let mut c = tb.cmd(echo_bin());
        c.args(["server", "--stack", "kernel", "--listen", ":7", "--json", "--duration", "60"]);
        let srv = Bg::spawn(&mut c);
        let target = format!("tcp://{kernel}:7");
        let mut c = tb.cmd(echo_bin());
        c.args(["client", "--stack", "user", "--port", &spec, "--ip", &format!("{ours}/24"), "--target", &target]);
        c.args(["--cores", &cores, "--rss-key", "microsoft", "--mode", "churn", "--conns", "8", "--duration", "2"]);
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
        assert!(o.status.success(), "{spec}: {o:?}");
        let r = last_json(&o);
        assert_eq!(r["errors"], 0, "{spec}: {r}");
        assert!(r["connections"].as_u64().unwrap() >= 200, "{spec}: {r}");
        check_steering(&spec, exact, &r);
        eprintln!("{spec}: client counters {r}");
        drop(srv.stop());
    }
}

/// IPv6: the same 200 kernel connections to our server, over the steering
/// programs' IPv6 path (36-byte 4-tuple).
#[test]
fn kernel_clients_make_200_ipv6_connections_to_our_server_on_two_cores() {
    if !available() {
        return;
    }
    let Some(cores) = two_cores() else { return };
    for (spec, ours) in [
        (format!("tap:t0?mac={TAP_MAC}&queues=2"), "2001:2:0:1::1"),
        ("af_packet:p0?queues=2".to_string(), "2001:2::1"),
    ] {
        let tb = Testbed::up(&unique("ec6"), &["--tap", "--tap-mac", TAP_MAC]).expect("testbed");
        let mut c = tb.cmd(echo_bin());
        c.args(["server", "--stack", "user", "--port", &spec, "--ip", &format!("{ours}/64"), "--listen", ":7"]);
        c.args(["--cores", &cores, "--rss-key", "microsoft", "--json", "--duration", "60"]);
        let srv = Bg::spawn(&mut c);
        wait_up(&tb, ours, 7);
        let o = run_bounded(tb.cmd("python3").args(["-c", CLIENTS, ours, "7", "200"]), Duration::from_secs(60));
        let text = String::from_utf8_lossy(&o.stdout);
        assert_eq!(text.trim(), "200", "{spec}: exact echoes; stderr: {}", String::from_utf8_lossy(&o.stderr));
        let s = last_json(&srv.stop());
        assert_eq!(s["tcp_errors"], 0, "{spec}: {s}");
        check_steering(&spec, true, &s);
        eprintln!("{spec} (IPv6): server counters {s}");
    }
}
