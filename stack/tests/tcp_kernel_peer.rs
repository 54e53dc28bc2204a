//! The Linux kernel's TCP as a real peer of ours, both ways, through a TAP in
//! a namespace made by `scripts/testbed.sh` (198.18.1.0/24, 2001:2:0:1::/64),
//! with our impairment decorator dropping 2% of the frames we send and 2% of
//! those we receive:
//!
//! * kernel client → our server: `socat` streams 100 MB into our sink, `curl`
//!   downloads 100 MB from our HTTP responder, `nc` talks to our echo;
//! * our client → kernel server: 100 MB into a `socat` sink, and an HTTP GET of
//!   100 MB from `python3 -m http.server`;
//! * a kernel reader with a tiny receive buffer that stops reading (its window
//!   closes, we probe it) and resumes: the rest must come at once, not after
//!   our backed-off retransmission timer (RFC 9293 §3.8.6.1);
//!
//! * the same two 100 MB streams, without impairment, with our stack on
//!   `af_xdp:p0` of the testbed's veth (198.18.0.0/24), and the kernel's
//!   `ping`/`ping -6` answered by `l3demo` there;
//!
//! every byte checked by SHA-256, and `tcpdump` on the kernel's side of the TAP
//! shows window scaling, timestamps and SACK-permitted in both SYNs of both
//! directions, and SACK blocks in use under loss, both ways.
//!
//! Root and `ip`, `socat`, `nc`, `curl`, `python3`, `tcpdump`, `sha256sum` (and
//! `ethtool`, `ping` for the af_xdp ones)
//! are needed (`scripts/setup.sh test` installs them). Outside `CI=true` a
//! missing piece skips with the reason; under `CI=true` it fails. Every
//! process has a deadline, and the namespace (with the TAP) is removed on drop,
//! even when a test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicUsize = AtomicUsize::new(0);
const SIZE: usize = 100_000_000;
const TCPDEMO: &str = env!("CARGO_BIN_EXE_tcpdemo");
const L3DEMO: &str = env!("CARGO_BIN_EXE_l3demo");
const TAP_MAC: &str = "02:00:00:00:01:01";

use testkit::sh;

fn testbed() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/testbed.sh")
}

/// A child process killed (and reaped) on drop.
struct Proc(Option<Child>, &'static str);

impl Proc {
    /// Waits at most `limit`; kills it after that. Returns its stderr on failure.
    fn wait(mut self, limit: Duration) -> Result<(), String> {
        let mut c = self.0.take().expect("running");
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = c.try_wait().map_err(|e| e.to_string())? {
                let out = c.wait_with_output().map_err(|e| e.to_string())?;
                let err = String::from_utf8_lossy(&out.stderr).into_owned();
                return if st.success() { Ok(()) } else { Err(format!("{} exited with {st}: {err}", self.1)) };
            }
            if Instant::now() > end {
                let _ = c.kill();
                let out = c.wait_with_output().map_err(|e| e.to_string())?;
                return Err(format!(
                    "{} did not finish in {limit:?}: {}",
                    self.1,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A testbed namespace with a TAP (our end), a scratch directory, and the
/// configuration files; everything removed on drop.
struct Bed {
    ns: String,
    dir: PathBuf,
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = sh(&[testbed().to_str().unwrap(), "down", &self.ns]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Bed {
    fn new() -> Option<Bed> {
        if !testkit::require_root("namespaces, TAP")
            || !testkit::require(&["ip", "socat", "nc", "curl", "python3", "tcpdump", "sha256sum"])
        {
            return None;
        }
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let ns = format!("tcpk{}x{n}", std::process::id());
        let dir = std::env::temp_dir().join(&ns);
        std::fs::create_dir_all(&dir).unwrap();
        let bed = Bed { ns, dir };
        sh(&[testbed().to_str().unwrap(), "up", &bed.ns, "--tap", "--tap-mac", TAP_MAC]).expect("testbed up");
        let l3 = sh(&[L3DEMO, "--print-config", "--ipv4", "198.18.1.1/24", "--ipv6", "2001:2:0:1::1/64"]).unwrap();
        std::fs::write(bed.dir.join("l3.conf"), l3.replace(&l3_mac_line(&l3), "mac = port")).unwrap();
        let tcp = sh(&[TCPDEMO, "--print-tcp-config"]).unwrap();
        let tcp =
            tcp.lines()
                .map(|l| {
                    if l.starts_with("tcp.time_wait_ms") {
                        "tcp.time_wait_ms = 500".to_string()
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
        std::fs::write(bed.dir.join("tcp.conf"), tcp).unwrap();
        let blob = bed.dir.join("blob");
        let data: Vec<u8> = {
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ n as u64;
            (0..SIZE / 8)
                .flat_map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()
                })
                .collect()
        };
        std::fs::write(&blob, data).unwrap();
        Some(bed)
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).to_str().unwrap().to_string()
    }

    /// Runs `args` inside the namespace (in the scratch directory).
    fn spawn(&self, what: &'static str, args: &[&str]) -> Proc {
        let c = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        Proc(Some(c), what)
    }

    /// Our stack, impaired with 2% loss on our side, with `extra` arguments.
    fn ours(&self, seed: u32, extra: &[&str]) -> Proc {
        self.ours_on(&format!("tap:t0?mac={TAP_MAC}&loss=0.02&dir=both&seed={seed}"), "tcp.conf", extra)
    }

    /// Our stack on `port` (a pmd spec) with the TCP configuration file
    /// `tcp_conf` (in the scratch directory) and `extra` arguments.
    fn ours_on(&self, port: &str, tcp_conf: &str, extra: &[&str]) -> Proc {
        self.ours_with(port, "l3.conf", tcp_conf, extra)
    }

    /// As [`ours_on`](Self::ours_on), with the L3 configuration file `l3_conf`.
    fn ours_with(&self, port: &str, l3_conf: &str, tcp_conf: &str, extra: &[&str]) -> Proc {
        let (l3, tcp) = (self.path(l3_conf), self.path(tcp_conf));
        let mut args = vec![TCPDEMO, "--port", &port, "--config", &l3, "--tcp-config", &tcp, "--duration", "100"];
        args.extend_from_slice(extra);
        self.spawn("tcpdemo", &args)
    }

    /// tcpdump of the TAP's kernel side, headers only, into `file`.
    fn capture(&self, file: &str) -> Proc {
        let p = self.spawn("tcpdump", &["timeout", "120", "tcpdump", "-U", "-s", "128", "-i", "t0", "-w", file, "tcp"]);
        // tcpdump needs a moment to open the interface.
        std::thread::sleep(Duration::from_millis(700));
        p
    }

    fn sha(&self, f: &str) -> String {
        sh(&["sha256sum", &self.path(f)]).unwrap().split_whitespace().next().unwrap().to_string()
    }

    /// Stops a capture and returns its text (`tcpdump -nn -r`).
    fn read_capture(&self, p: Proc, file: &str) -> String {
        drop(p);
        sh(&["tcpdump", "-nn", "-r", &self.path(file)]).unwrap()
    }
}

fn l3_mac_line(text: &str) -> String {
    text.lines().find(|l| l.starts_with("mac =")).unwrap().to_string()
}

/// RFC 7323 / RFC 2018 options of a handshake, checked on tcpdump's text:
/// the SYN from `client` and the SYN-ACK back both carry MSS, SACK-permitted,
/// timestamps and window scale.
fn assert_handshake_options(text: &str, client: &str, server: &str) {
    let syn = text
        .lines()
        .find(|l| {
            l.contains(&format!("IP {client}.")) && l.contains(&format!("> {server}:")) && l.contains("Flags [S]")
        })
        .unwrap_or_else(|| panic!("no SYN {client} > {server} in:\n{}", &text[..text.len().min(2000)]));
    let synack = text
        .lines()
        .find(|l| l.contains(&format!("IP {server} > {client}.")) && l.contains("Flags [S.]"))
        .unwrap_or_else(|| panic!("no SYN-ACK {server} > {client}"));
    for (what, l) in [("SYN", syn), ("SYN-ACK", synack)] {
        for opt in ["mss", "sackOK", "TS val", "wscale"] {
            assert!(l.contains(opt), "{what} lacks {opt}: {l}");
        }
    }
}

/// Some segment from `from` carries SACK blocks.
fn assert_sack_blocks_from(text: &str, from: &str) {
    let n = text.lines().filter(|l| l.contains(&format!("{from} >")) && l.contains("sack ")).count();
    let sample: Vec<&str> = text.lines().filter(|l| l.contains(&format!("{from} >"))).skip(300).take(8).collect();
    assert!(n > 0, "no SACK blocks from {from} under loss; its segments look like:\n{}", sample.join("\n"));
}

#[test]
fn kernel_socat_client_streams_100mb_into_our_server_under_2pct_loss() {
    let Some(bed) = Bed::new() else { return };
    let cap = bed.capture("k2o.pcap");
    let out = bed.path("sunk");
    let srv = bed.ours(
        11,
        &testkit::cli(&format!("--listen 7 --serve sink --out {out} --backlog 16 --syn-backlog 16 --syn-timeout-ms 5000 --syn-cookies whenfull --conns 1")),
    );
    std::thread::sleep(Duration::from_millis(500));
    let blob = bed.path("blob");
    let client = bed.spawn("socat", &["timeout", "100", "socat", "-u", &format!("FILE:{blob}"), "TCP:198.18.1.1:7"]);
    client.wait(Duration::from_secs(110)).unwrap();
    srv.wait(Duration::from_secs(110)).unwrap();
    assert_eq!(bed.sha("sunk"), bed.sha("blob"));
    let text = bed.read_capture(cap, "k2o.pcap");
    assert_handshake_options(&text, "198.18.1.2", "198.18.1.1.7");
    assert_sack_blocks_from(&text, "198.18.1.1.7");
}

#[test]
fn our_client_streams_100mb_into_kernel_socat_under_2pct_loss() {
    let Some(bed) = Bed::new() else { return };
    let cap = bed.capture("o2k.pcap");
    let sink = bed.path("ksunk");
    let srv = bed.spawn(
        "socat",
        &[
            "timeout",
            "100",
            "socat",
            "-u",
            "TCP-LISTEN:9,bind=198.18.1.2,reuseaddr",
            &format!("OPEN:{sink},creat,trunc"),
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let blob = bed.path("blob");
    let cli = bed.ours(12, &["--connect", "198.18.1.2:9", "--send-file", &blob]);
    cli.wait(Duration::from_secs(110)).unwrap();
    srv.wait(Duration::from_secs(20)).unwrap();
    assert_eq!(bed.sha("ksunk"), bed.sha("blob"));
    let text = bed.read_capture(cap, "o2k.pcap");
    assert_handshake_options(&text, "198.18.1.1", "198.18.1.2.9");
    assert_sack_blocks_from(&text, "198.18.1.2.9");
}

#[test]
fn kernel_curl_downloads_100mb_from_our_http_responder_under_2pct_loss() {
    let Some(bed) = Bed::new() else { return };
    let blob = bed.path("blob");
    let srv = bed.ours(
        13,
        &testkit::cli(&format!("--listen 80 --serve http --http-file {blob} --backlog 16 --syn-backlog 16 --syn-timeout-ms 5000 --syn-cookies whenfull --conns 1")),
    );
    std::thread::sleep(Duration::from_millis(500));
    let out = bed.path("curled");
    let curl = bed.spawn("curl", &["curl", "-sS", "--fail", "--max-time", "100", "-o", &out, "http://198.18.1.1/blob"]);
    curl.wait(Duration::from_secs(110)).unwrap();
    srv.wait(Duration::from_secs(20)).unwrap();
    assert_eq!(bed.sha("curled"), bed.sha("blob"));
}

#[test]
fn our_http_get_downloads_100mb_from_kernel_python_http_server_under_2pct_loss() {
    let Some(bed) = Bed::new() else { return };
    let srv = bed.spawn(
        "python3 -m http.server",
        &["timeout", "100", "python3", "-m", "http.server", "8000", "--bind", "2001:2:0:1::2"],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let out = bed.path("got");
    let cli = bed.ours(14, &["--get", "http://[2001:2:0:1::2]:8000/blob", "--out", &out]);
    cli.wait(Duration::from_secs(110)).unwrap();
    drop(srv);
    assert_eq!(bed.sha("got"), bed.sha("blob"));
}

#[test]
fn kernel_nc_talks_to_our_echo_server_over_ipv6() {
    let Some(bed) = Bed::new() else { return };
    let srv = bed.ours(
        15,
        &testkit::cli(
            "--listen 7 --serve echo --backlog 4 --syn-backlog 4 --syn-timeout-ms 5000 --syn-cookies off --conns 1",
        ),
    );
    std::thread::sleep(Duration::from_millis(500));
    // 1 MB through nc (-N: half-close after stdin ends), echoed back.
    let cmd =
        format!("head -c 1000000 {} | timeout 60 nc -N 2001:2:0:1::1 7 > {}", bed.path("blob"), bed.path("echoed"));
    bed.spawn("nc", &["sh", "-c", &cmd]).wait(Duration::from_secs(70)).unwrap();
    srv.wait(Duration::from_secs(20)).unwrap();
    let want = sh(&["sh", "-c", &format!("head -c 1000000 {} | sha256sum", bed.path("blob"))]).unwrap();
    assert_eq!(bed.sha("echoed"), want.split_whitespace().next().unwrap());
}

/// The kernel reader of the zero-window test: connects with a tiny receive
/// buffer (so a resumed reader opens less than three segments of window at a
/// time, where duplicate ACKs cannot repair a refused first byte), asks for
/// the body, reads 20 kB, stops for `pause` seconds (our probes go out at
/// about 0.2, 0.6, 1.4 and 3.0 s), then reads the rest. Prints the seconds
/// from resuming until the first byte the kernel had not yet accepted when
/// the reader paused, and writes the body to `out`.
const PAUSED_READER: &str = r#"
import fcntl, socket, struct, sys, termios, time
out, pause = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
s.settimeout(30)
s.connect(("198.18.1.1", 80))
s.sendall(b"GET /small HTTP/1.0\r\n\r\n")
got = b""
while len(got) < 20000:
    d = s.recv(4096)
    if not d:
        break
    got += d
time.sleep(pause)
buffered = struct.unpack("i", fcntl.ioctl(s, termios.FIONREAD, b"\0\0\0\0"))[0]
accepted = len(got) + buffered
t0 = time.monotonic()
first_new = None
while True:
    d = s.recv(65536)
    if not d:
        break
    got += d
    if first_new is None and len(got) > accepted:
        first_new = time.monotonic() - t0
head, _, body = got.partition(b"\r\n\r\n")
open(out, "wb").write(body)
print(first_new)
"#;

#[test]
fn rfc9293_3_8_6_1_a_kernel_reader_that_pauses_and_resumes_gets_the_rest_at_once() {
    let Some(bed) = Bed::new() else { return };
    let small = bed.path("small");
    let body: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&small, &body).unwrap();
    // A 16 kB send buffer: the server is still sending when the reader
    // pauses (tcpdemo stops lingering 3 s after it has queued everything).
    let tcp = std::fs::read_to_string(bed.path("tcp.conf")).unwrap();
    let tcp: Vec<String> = tcp
        .lines()
        .map(|l| if l.starts_with("tcp.send_buffer") { "tcp.send_buffer = 16384".into() } else { l.to_string() })
        .collect();
    std::fs::write(bed.path("tcp_zw.conf"), tcp.join("\n")).unwrap();
    let cap = bed.capture("zw.pcap");
    // No impairment: what is measured is the window opening, not loss repair.
    let srv = bed.ours_on(
        &format!("tap:t0?mac={TAP_MAC}"),
        "tcp_zw.conf",
        &testkit::cli(&format!("--listen 80 --serve http --http-file {small} --backlog 4 --syn-backlog 4 --syn-timeout-ms 5000 --syn-cookies off --conns 1")),
    );
    std::thread::sleep(Duration::from_millis(500));
    let script = bed.path("reader.py");
    std::fs::write(&script, PAUSED_READER).unwrap();
    let out = bed.path("read");
    let c = Command::new("ip")
        .args(["netns", "exec", &bed.ns, "timeout", "60", "python3", &script, &out, "3.5"])
        .output()
        .unwrap();
    if !c.status.success() {
        let text = bed.read_capture(cap, "zw.pcap");
        let tail: Vec<&str> = text.lines().rev().take(80).collect::<Vec<_>>().into_iter().rev().collect();
        panic!("reader failed: {}\nlast segments:\n{}", String::from_utf8_lossy(&c.stderr), tail.join("\n"));
    }
    drop(cap);
    srv.wait(Duration::from_secs(20)).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), body, "the body arrived intact");
    let took: f64 = String::from_utf8_lossy(&c.stdout).trim().parse().unwrap();
    // The bug made the refused probe byte wait for the retransmission timer,
    // backed off by the probes to 3.2 s; over a TAP new data comes within
    // milliseconds. A generous bound, well under the backed-off RTO.
    assert!(took < 1.0, "new data came {took:.3} s after the reader resumed");
}

/// The testbed's veth (`p0`, kernel side `k0` at 198.18.0.2) for our stack on
/// `af_xdp:p0` at 198.18.0.1: its L3 configuration file, and the kernel's side
/// computing its own checksums (over a veth, XDP would get them partial; see
/// the af_xdp driver's docs).
fn af_xdp_bed() -> Option<Bed> {
    let bed = Bed::new()?;
    if !testkit::require(&["ethtool"]) {
        return None;
    }
    let l3 = sh(&[L3DEMO, "--print-config", "--ipv4", "198.18.0.1/24", "--ipv6", "2001:2::1/64"]).unwrap();
    std::fs::write(bed.dir.join("l3x.conf"), l3.replace(&l3_mac_line(&l3), "mac = port")).unwrap();
    sh(&["ip", "netns", "exec", &bed.ns, "ethtool", "-K", "k0", "tx", "off"]).expect("ethtool");
    Some(bed)
}

#[test]
fn kernel_socat_client_streams_100mb_into_our_server_on_af_xdp() {
    let Some(bed) = af_xdp_bed() else { return };
    let out = bed.path("sunk");
    let srv = bed.ours_with(
        "af_xdp:p0",
        "l3x.conf",
        "tcp.conf",
        &[
            "--listen",
            "7",
            "--serve",
            "sink",
            "--out",
            &out,
            "--backlog",
            "16",
            "--syn-backlog",
            "16",
            "--syn-timeout-ms",
            "5000",
            "--syn-cookies",
            "whenfull",
            "--conns",
            "1",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let blob = bed.path("blob");
    let client = bed.spawn("socat", &["timeout", "100", "socat", "-u", &format!("FILE:{blob}"), "TCP:198.18.0.1:7"]);
    client.wait(Duration::from_secs(110)).unwrap();
    srv.wait(Duration::from_secs(110)).unwrap();
    assert_eq!(bed.sha("sunk"), bed.sha("blob"));
}

#[test]
fn our_client_on_af_xdp_streams_100mb_into_kernel_socat() {
    let Some(bed) = af_xdp_bed() else { return };
    let sink = bed.path("ksunk");
    let srv = bed.spawn(
        "socat",
        &[
            "timeout",
            "100",
            "socat",
            "-u",
            "TCP-LISTEN:9,bind=198.18.0.2,reuseaddr",
            &format!("OPEN:{sink},creat,trunc"),
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let blob = bed.path("blob");
    let cli = bed.ours_with("af_xdp:p0", "l3x.conf", "tcp.conf", &["--connect", "198.18.0.2:9", "--send-file", &blob]);
    cli.wait(Duration::from_secs(110)).unwrap();
    srv.wait(Duration::from_secs(20)).unwrap();
    assert_eq!(bed.sha("ksunk"), bed.sha("blob"));
}

#[test]
fn kernel_ping_and_ping6_reach_l3demo_on_af_xdp() {
    let Some(bed) = af_xdp_bed() else { return };
    if !testkit::require(&["ping"]) {
        return;
    }
    let l3 =
        bed.spawn("l3demo", &[L3DEMO, "--port", "af_xdp:p0", "--config", &bed.path("l3x.conf"), "--duration", "30"]);
    let ping = |count: &str, args: &[&str]| {
        let mut v = vec!["ip", "netns", "exec", &bed.ns, "ping", "-c", count, "-i", "0.2", "-W", "1", "-q"];
        v.extend_from_slice(args);
        sh(&v)
    };
    // Wait (bounded) until the port is attached and one echo comes back.
    let end = Instant::now() + Duration::from_secs(15);
    while ping("1", &["198.18.0.1"]).is_err() {
        assert!(Instant::now() < end, "l3demo on af_xdp:p0 never answered");
    }
    let v4 = ping("3", &["198.18.0.1"]).expect("kernel ping to l3demo on af_xdp:p0");
    assert!(v4.contains("3 received"), "{v4}");
    let v6 = ping("3", &["-6", "2001:2::1"]).expect("kernel ping -6 to l3demo on af_xdp:p0");
    assert!(v6.contains("3 received"), "{v6}");
    drop(l3);
}
