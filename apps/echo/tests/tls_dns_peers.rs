//! Real peers for the connect registry, the resolver and TLS, on our stack (a
//! TAP port inside a namespace made by `scripts/testbed.sh up NAME --tap`):
//! - `dnsmasq` (started here, on the namespace's address, with its own config)
//!   answers our resolver: A, AAAA, a CNAME, and an answer too big for UDP that
//!   comes back truncated and is asked again over TCP;
//! - `openssl s_server -rev` (TLS 1.2 and 1.3) serves our TLS client, which finds
//!   it by name through dnsmasq and happy eyeballs; every line must come back
//!   exactly (palindromes, so reversed is equal);
//! - a certificate for another name, or an expired one: exit status 2 and a
//!   message that says which;
//! - `openssl s_client` (TLS 1.2 and 1.3) and `curl --cacert` against our TLS
//!   echo server, bytes exact.
//!
//! Needs root, `ip`, `dnsmasq`, `openssl`, `curl`. Under `CI=true` these run
//! (and fail if they cannot); elsewhere they say why they skip. Namespaces,
//! processes and files are removed by guards even when a test fails.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const TAP_MAC: &str = "02:00:00:00:01:01";
const OURS4: &str = "198.18.1.1";
const OURS6: &str = "2001:2:0:1::1";
const KERNEL4: &str = "198.18.1.2";
const KERNEL6: &str = "2001:2:0:1::2";

/// A fresh namespace (named after `tag`) whose kernel side faces our stack
/// over a TAP, as every test here uses; `None` (a skip) where root or the
/// programs the tests run are missing.
fn tap_bed(tag: &str) -> Option<Testbed> {
    if !testkit::require_root("network namespaces, TAP")
        || !testkit::require(&["ip", "ss", "dnsmasq", "openssl", "curl", "kill"])
    {
        return None;
    }
    Some(Testbed::up(&unique(tag), &["--tap", "--tap-mac", TAP_MAC]).expect("testbed"))
}

/// Certificates made for the test, in a directory removed on drop.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(unique("echo-pki"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, "echo test ca");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = p.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        for (stem, name, expired) in
            [("echo", "echo.test", false), ("other", "other.test", false), ("expired", "echo.test", true)]
        {
            let mut p = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
            if expired {
                p.not_before = rcgen::date_time_ymd(2001, 1, 1);
                p.not_after = rcgen::date_time_ymd(2002, 1, 1);
            }
            let k = rcgen::KeyPair::generate().unwrap();
            let c = p.signed_by(&k, &ca, &ca_key).unwrap();
            std::fs::write(dir.join(format!("{stem}.pem")), c.pem()).unwrap();
            std::fs::write(dir.join(format!("{stem}.key")), k.serialize_pem()).unwrap();
        }
        Pki { dir }
    }
    fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits (bounded) until something listens on `port` (`proto` t or u) in the namespace.
fn listening(tb: &Testbed, proto: &str, port: u16) {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let o = tb.cmd("ss").args([&format!("-Hl{proto}n"), &format!("sport = :{port}")]).output().expect("ss");
        if !String::from_utf8_lossy(&o.stdout).trim().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {proto} port {port}");
}

/// dnsmasq on the namespace's side of the TAP, no system configuration.
fn dnsmasq(tb: &Testbed) -> Bg {
    let mut c = tb.cmd("dnsmasq");
    c.args(["--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces"]);
    c.args([&format!("--listen-address={KERNEL4}"), "--port=53", "--user=root", "--pid-file="]);
    c.arg(format!("--host-record=echo.test,{KERNEL4},{KERNEL6}"));
    c.arg(format!("--host-record=other.test,{KERNEL4}"));
    c.arg("--cname=alias.test,echo.test");
    // .test is ours: a name not configured is NXDOMAIN, not REFUSED.
    c.arg("--local=/test/");
    // 60 A records: ~1 KB, more than a 512-byte UDP answer holds.
    for i in 1..=60 {
        c.arg(format!("--host-record=big.test,198.18.2.{i}"));
    }
    let bg = Bg::spawn(&mut c);
    listening(tb, "u", 53);
    listening(tb, "t", 53);
    bg
}

/// `echo ARGS` inside the namespace on our stack (the TAP port).
fn echo_user(tb: &Testbed, cmd: &str, args: &[&str]) -> std::process::Output {
    let spec = format!("tap:t0?mac={TAP_MAC}");
    let mut c = tb.cmd(echo_bin());
    c.args([cmd, "--stack", "user", "--port", &spec, "--ip", &format!("{OURS4}/24"), "--ip", &format!("{OURS6}/64")]);
    c.args(args);
    run_bounded(&mut c, Duration::from_secs(60))
}

#[test]
fn dnsmasq_answers_our_resolver_on_our_stack_with_cname_and_truncation() {
    let Some(tb) = tap_bed("echd") else { return };
    let _dns = dnsmasq(&tb);
    let resolver = format!("{KERNEL4}:53");
    let o = echo_user(&tb, "resolve", &["--resolver", &resolver, "--name", "Alias.Test"]);
    assert!(o.status.success(), "{o:?}");
    let j = last_json(&o);
    assert_eq!(j["v4"], serde_json::json!([KERNEL4]), "{j}");
    assert_eq!(j["v6"], serde_json::json!([KERNEL6]), "{j}");
    assert_eq!(j["stats"]["mismatched"], 0, "{j}");
    let o = echo_user(&tb, "resolve", &["--resolver", &resolver, "--name", "big.test"]);
    assert!(o.status.success(), "{o:?}");
    let j = last_json(&o);
    assert_eq!(j["v4"].as_array().map(|a| a.len()), Some(60), "{j}");
    assert!(j["stats"]["truncated"].as_u64().unwrap() >= 1, "the UDP answer was truncated: {j}");
    let o = echo_user(&tb, "resolve", &["--resolver", &resolver, "--name", "nope.test"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("no such name"), "{o:?}");
}

/// [`tap_bed`] with certificates for TLS and dnsmasq answering for the
/// names in them (kept running while the returned guard lives).
fn named_tls_bed(tag: &str) -> Option<(Testbed, Pki, Bg)> {
    let tb = tap_bed(tag)?;
    let pki = Pki::new();
    let dns = dnsmasq(&tb);
    Some((tb, pki, dns))
}

/// `openssl s_server -rev` in the namespace with `cert`, one version.
fn s_server(tb: &Testbed, pki: &Pki, stem: &str, version: &str) -> Bg {
    let mut c = tb.cmd("openssl");
    c.args(["s_server", "-accept", "4433", "-rev", "-quiet", version]);
    c.args(["-cert", &pki.path(&format!("{stem}.pem")), "-key", &pki.path(&format!("{stem}.key"))]);
    c.stdin(Stdio::null());
    let bg = Bg::spawn(&mut c);
    listening(tb, "t", 4433);
    bg
}

fn tls_client(tb: &Testbed, pki: &Pki, target: &str, versions: &str) -> std::process::Output {
    let ca = pki.path("ca.pem");
    let resolver = format!("{KERNEL4}:53");
    echo_user(
        tb,
        "client",
        &[
            "--target",
            target,
            "--resolver",
            &resolver,
            "--ca",
            &ca,
            "--tls-versions",
            versions,
            "--payload",
            "palindrome-line",
            "--size",
            "64",
            "--conns",
            "1",
            "--mode",
            "pingpong",
            "--duration",
            "1",
            "--json",
        ],
    )
}

#[test]
fn openssl_s_server_serves_our_tls_client_found_by_name_tls12_and_tls13() {
    let Some((tb, pki, _dns)) = named_tls_bed("echt") else { return };
    for (flag, versions) in [("-tls1_3", "1.3"), ("-tls1_2", "1.2")] {
        let srv = s_server(&tb, &pki, "echo", flag);
        let o = tls_client(&tb, &pki, "tls://echo.test:4433", versions);
        assert!(o.status.success(), "{flag}: {o:?}");
        let j = last_json(&o);
        assert_eq!(j["errors"], 0, "{flag}: {j}");
        assert!(j["messages"].as_u64().unwrap() > 10, "{flag}: {j}");
        drop(srv);
    }
}

#[test]
fn a_certificate_for_another_name_or_an_expired_one_is_a_clear_error() {
    let Some((tb, pki, _dns)) = named_tls_bed("ech2") else { return };
    for (stem, want) in [("other", "not valid for name"), ("expired", "expired")] {
        let srv = s_server(&tb, &pki, stem, "-tls1_3");
        let o = tls_client(&tb, &pki, "tls://echo.test:4433", "1.3");
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(2), "{stem}: {o:?}");
        assert!(err.contains("bad certificate") && err.contains(want), "{stem}: {err}");
        drop(srv);
    }
}

/// Runs `cmd` with `input` on stdin (kept open), until its stdout holds
/// `want` bytes or 15 s pass; returns what it printed.
fn converse(cmd: &mut Command, input: &[u8], want: usize) -> Vec<u8> {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut guard = Bg { child: None };
    let got = Arc::new(Mutex::new(Vec::new()));
    let g2 = got.clone();
    testkit::drain(child.stdout.take().unwrap(), move |b| g2.lock().unwrap().extend_from_slice(b));
    child.stdin.as_mut().unwrap().write_all(input).unwrap();
    guard.child = Some(child);
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end && got.lock().unwrap().len() < want {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(guard);
    let v = got.lock().unwrap().clone();
    v
}

#[test]
fn openssl_s_client_and_curl_talk_to_our_tls_server() {
    let Some(tb) = tap_bed("echv") else { return };
    let pki = Pki::new();
    let spec = format!("tap:t0?mac={TAP_MAC}");
    let mut c = tb.cmd(echo_bin());
    c.args([
        "server",
        "--stack",
        "user",
        "--port",
        &spec,
        "--ip",
        &format!("{OURS4}/24"),
        "--ip",
        &format!("{OURS6}/64"),
    ]);
    c.args(["--listen", ":4433", "--no-udp", "--json", "--duration", "60", "--idle-timeout-ms", "1500"]);
    c.args(["--tls-cert", &pki.path("echo.pem"), "--tls-key", &pki.path("echo.key")]);
    let srv = Bg::spawn(&mut c);
    let ca = pki.path("ca.pem");
    // Our server needs a moment to open the TAP: retry the first conversation.
    let mut first = true;
    for (v, line) in [("-tls1_3", "hello over tls 1.3\n"), ("-tls1_2", "hello over tls 1.2\n")] {
        let target = format!("{OURS4}:4433");
        let mut got = Vec::new();
        for _ in 0..if first { 20 } else { 1 } {
            let mut s = tb.cmd("openssl");
            s.args(["s_client", "-connect", &target, "-servername", "echo.test", "-CAfile", &ca]);
            s.args(["-verify_return_error", "-quiet", v]);
            got = converse(&mut s, line.as_bytes(), line.len());
            if !got.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        first = false;
        assert_eq!(String::from_utf8_lossy(&got), line, "s_client {v}");
    }
    let o = run_bounded(
        tb.cmd("curl").args([
            "--http0.9",
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            &ca,
            "--resolve",
            &format!("echo.test:4433:{OURS4}"),
            "https://echo.test:4433/x",
        ]),
        Duration::from_secs(20),
    );
    let body = String::from_utf8_lossy(&o.stdout);
    // Our server echoes the request back (an HTTP/0.9 answer), then closes with close_notify.
    assert!(body.starts_with("GET /x HTTP/1.1\r\nHost: echo.test:4433\r\n"), "curl: {o:?}");
    assert!(o.status.success(), "curl: {o:?}");
    let s = last_json(&srv.stop());
    assert_eq!(s["tls_handshake_errors"], 0, "{s}");
    assert_eq!(s["tcp_accepted"], 3, "{s}");
    // The two s_clients were killed (no close_notify): those end as truncated
    // sessions, counted as errors; curl's ended cleanly.
    assert_eq!(s["tcp_errors"], 2, "{s}");
}
