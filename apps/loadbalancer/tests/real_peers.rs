//! Real peers: three `nginx` backends (Debian's nginx-light) and `curl` /
//! `wrk` clients around `lb`, in a namespace the test makes, on the kernel's
//! stack and on ours over a TAP port (`scripts/testbed.sh up NAME --tap`) or
//! the testbed's veth through `af_packet`.
//!
//! Addresses (198.18.0.0/15 only): `lb` listens on 198.18.1.1 (`:8080` the
//! web frontend, `:8090` the one that sends PROXY v2); the backends and the
//! clients are on 198.18.1.2 (the TAP's kernel side; on `--stack kernel`,
//! both addresses sit on the namespace's loopback).
//!
//! Needs root, `ip`, `nginx`, `curl`, `wrk`, `kill`. Under `CI=true` these
//! tests run (and fail if they cannot); elsewhere they say why they skip.
//! Namespaces and processes are removed by guards even when a test fails.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const LB: &str = env!("CARGO_BIN_EXE_lb");
const TAP_MAC: &str = "02:00:00:00:01:01";
const NGINX: &str = "nginx";

fn available() -> bool {
    testkit::require_root("network namespaces, TAP")
        && testkit::require(&["ip", NGINX, "curl", "wrk", "kill", "sysctl", "ethtool"])
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id() % 100_000, SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Where `lb` runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Via {
    /// `--stack kernel`: both addresses on the namespace's loopback.
    Kernel,
    /// `--stack user` on `tap:t0` (`testbed.sh up NAME --tap`).
    Tap,
    /// `--stack user` on `af_packet:p0` (the testbed's veth), 198.18.1.2/24
    /// added on its kernel end `k0`.
    AfPacket,
}

/// A namespace for `via`; removed on drop.
struct Ns {
    name: String,
    tap: bool,
}

impl Ns {
    fn up(via: Via) -> Ns {
        let name = unique("lbt");
        let ns = Ns { name: name.clone(), tap: via != Via::Kernel };
        if via != Via::Kernel {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/testbed.sh");
            let mut args = vec!["up", &name, "--quiet"];
            if via == Via::Tap {
                args.push("--tap");
            }
            let out = Command::new(script).args(&args).output().unwrap();
            assert!(out.status.success(), "testbed: {}", String::from_utf8_lossy(&out.stderr));
            if via == Via::AfPacket {
                let ok = Command::new("ip").args(["-n", &name, "addr", "add", "198.18.1.2/24", "dev", "k0"]).status();
                assert!(ok.unwrap().success());
                // The kernel's TCP hands the veth segments of up to 64 KiB
                // (TSO/GSO), which reach af_packet:p0 as such and exceed its
                // 2 KiB frames: bulk transfers then crawl on retransmissions
                // (1 MiB took 28 s). Segment in the kernel's TCP instead.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &name, "ethtool", "-K", "k0", "tso", "off", "gso", "off"]);
                assert!(c.status().unwrap().success());
            }
        } else {
            assert!(Command::new("ip").args(["netns", "add", &name]).status().unwrap().success());
            for args in [
                vec!["link", "set", "lo", "up"],
                vec!["addr", "add", "198.18.1.1/32", "dev", "lo"],
                vec!["addr", "add", "198.18.1.2/32", "dev", "lo"],
            ] {
                assert!(Command::new("ip").arg("-n").arg(&name).args(&args).status().unwrap().success());
            }
        }
        // nginx closes first (Connection: close), so TIME-WAIT lands on its
        // side, where a reused client port would meet it and wait for a SYN
        // retransmission: keep none in this namespace.
        let ok = ns.cmd("sysctl").args(["-qw", "net.ipv4.tcp_max_tw_buckets=0"]).status().unwrap();
        assert!(ok.success());
        ns
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]);
        c
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        if self.tap {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/testbed.sh");
            let _ = Command::new(script).args(["down", &self.name]).status();
        } else {
            let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        }
    }
}

/// A background child: killed on drop.
struct Bg(Option<Child>);

impl Bg {
    fn spawn(cmd: &mut Command) -> Bg {
        Bg(Some(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn")))
    }

    fn pid(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill").args([sig, &self.pid().to_string()]).status();
    }

    /// SIGTERM, then waits (bounded) for the output.
    fn stop(mut self) -> Output {
        self.signal("-TERM");
        let mut c = self.0.take().expect("running");
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end {
            if let Ok(Some(_)) = c.try_wait() {
                return c.wait_with_output().expect("output");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait_with_output().expect("output")
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A temporary directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let d = std::env::temp_dir().join(unique("lbpeers"));
        std::fs::create_dir_all(&d).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file every backend serves, and whose bytes the test checks.
fn big_file() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..(1 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// nginx number `i` (1..=3) on 198.18.1.2:808i, and on :809i with
/// `proxy_protocol`, logging the PROXY addresses it read. One process
/// (`master_process off`), so killing it kills the server.
fn nginx(ns: &Ns, dir: &Dir, i: usize) -> Bg {
    let root = dir.0.join(format!("www{i}"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("id.txt"), format!("s{i}\n")).unwrap();
    std::fs::write(root.join("big.bin"), big_file()).unwrap();
    let d = dir.0.display();
    let conf = format!(
        "master_process off;\nworker_processes 1;\npid {d}/nginx{i}.pid;\nerror_log {d}/error{i}.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/tmp{i};\n\
         log_format pp '$proxy_protocol_addr $proxy_protocol_port';\n\
         keepalive_requests 1000000;\n\
         server {{ listen 198.18.1.2:808{i}; root {root}; }}\n\
         server {{ listen 198.18.1.2:809{i} proxy_protocol; root {root}; access_log {d}/pp{i}.log pp; }}\n}}\n",
        root = root.display()
    );
    let path = dir.0.join(format!("nginx{i}.conf"));
    std::fs::write(&path, conf).unwrap();
    let mut c = ns.cmd(NGINX);
    let early_log = dir.0.join(format!("early{i}.log"));
    c.args(["-e", early_log.to_str().unwrap(), "-c", path.to_str().unwrap(), "-g", "daemon off;"]);
    Bg::spawn(&mut c)
}

/// The test configuration: `lb init` with the addresses above, round robin
/// 2:1:1, fast health checks, and a second frontend/backend sending PROXY v2.
fn config(dir: &Dir) -> PathBuf {
    let init = Command::new(LB).arg("init").output().unwrap();
    let mut t = String::from_utf8(init.stdout).unwrap();
    for (from, to) in [
        ("0.0.0.0:8080", "198.18.1.1:8080"),
        ("198.18.2.1:8081", "198.18.1.2:8081"),
        ("198.18.2.2:8081", "198.18.1.2:8082"),
        ("198.18.2.3:8081", "198.18.1.2:8083"),
        ("algorithm = \"maglev\"", "algorithm = \"roundrobin\""),
        ("interval_ms = 2000", "interval_ms = 200"),
        ("timeout_ms = 1000", "timeout_ms = 100"),
        ("fall = 3", "fall = 2"),
        ("weight = 1 ", "weight = 2 "),
    ] {
        assert!(t.contains(from), "{from}");
        t = t.replacen(from, to, 1);
    }
    // The PROXY v2 pair: same values, other names and addresses.
    let front = section(&t, "[frontends.web]").replace("[frontends.web]", "[frontends.pp]");
    let front = front.replace("198.18.1.1:8080", "198.18.1.1:8090").replace("backend = \"web\"", "backend = \"pp\"");
    let mut back = String::new();
    for s in ["[backends.web]", "[backends.web.balance]", "[backends.web.timeouts]", "[backends.web.health]"] {
        back += &section(&t, s).replace("backends.web", "backends.pp");
    }
    back += &section(&t, "[[backends.web.servers]]")
        .replace("backends.web", "backends.pp")
        .replace("198.18.1.2:8081", "198.18.1.2:8091")
        .replace("send_proxy = \"off\"", "send_proxy = \"v2\"");
    t = t.replace("[admin]", &format!("{front}\n{back}\n[admin]"));
    let p = dir.0.join("lb.toml");
    std::fs::write(&p, t).unwrap();
    p
}

/// The text of a TOML table from its header to the next header.
fn section(t: &str, header: &str) -> String {
    let at = t.find(&format!("\n{header}\n")).unwrap_or_else(|| panic!("{header}")) + 1;
    let rest = &t[at + header.len()..];
    let end = rest.find("\n[").map(|e| e + 1).unwrap_or(rest.len());
    format!("{header}{}", &rest[..end])
}

/// `lb run` for `via`: on the kernel on two cores (one SO_REUSEPORT listener
/// and one balancer each) when the machine has them, on our stack on one.
fn lb(ns: &Ns, cfg: &std::path::Path, via: Via) -> Bg {
    lb_on(ns, cfg, via, 1)
}

/// `lb run` for `via`, on our stack on `cores` cores (`queues=N` on the port,
/// the Microsoft RSS key).
fn lb_on(ns: &Ns, cfg: &std::path::Path, via: Via, cores: usize) -> Bg {
    let mut c = ns.cmd(LB);
    c.args(["run", "-c", cfg.to_str().unwrap(), "--grace-ms", "2000"]);
    let spec = match via {
        Via::Kernel => {
            let two = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
            c.args(["--stack", "kernel", "--cores", if two { "0,1" } else { "0" }]);
            return Bg::spawn(&mut c);
        }
        Via::Tap => format!("tap:t0?mac={TAP_MAC}&queues={cores}"),
        Via::AfPacket => format!("af_packet:p0?queues={cores}"),
    };
    let list: Vec<String> = (0..cores).map(|i| i.to_string()).collect();
    c.args([
        "--stack",
        "user",
        "--cores",
        &list.join(","),
        "--port",
        &spec,
        "--ip",
        "198.18.1.1/24",
        "--mbufs",
        "8192",
    ]);
    if cores > 1 {
        c.args(["--rss-key", "microsoft"]);
    }
    Bg::spawn(&mut c)
}

fn curl(ns: &Ns, args: &[&str]) -> Output {
    let out = ns.cmd("curl").args(["-sS", "--max-time", "60"]).args(args).output().unwrap();
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Waits until a GET through the balancer works and every server is up.
fn wait_ready(ns: &Ns) {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        let ok = ns
            .cmd("curl")
            .args(["-s", "--max-time", "1", "http://198.18.1.1:8080/id.txt"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok && metric(ns, "lb_server_up{backend=\"web\"").iter().all(|v| *v == 1.0) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("lb did not come up");
}

/// Values of the metric lines that start with `prefix`.
fn metric(ns: &Ns, prefix: &str) -> Vec<f64> {
    let Ok(o) = ns.cmd("curl").args(["-s", "--max-time", "2", "http://127.0.0.1:9100/metrics"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
        .collect()
}

fn server_up(ns: &Ns, server: &str) -> Option<bool> {
    metric(ns, &format!("lb_server_up{{backend=\"web\",server=\"{server}\"}}")).first().map(|v| *v == 1.0)
}

/// wrk's request count and errors (socket errors + non-2xx/3xx).
fn wrk(out: &Output) -> (u64, u64, String) {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count from wrk: {text}"));
    let mut errors = 0;
    for l in text.lines() {
        if let Some(rest) = l.trim().strip_prefix("Socket errors:") {
            errors += rest.split(',').filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok()).sum::<u64>();
        }
        if let Some(rest) = l.trim().strip_prefix("Non-2xx or 3xx responses:") {
            errors += rest.trim().parse::<u64>().unwrap();
        }
    }
    (requests, errors, text)
}

fn wrk_bg(ns: &Ns, secs: u32, conns: u32) -> Bg {
    let mut c = ns.cmd("wrk");
    let d = format!("{secs}s");
    let cn = conns.to_string();
    c.args(["-t1", "-c", &cn, "-d", &d, "--timeout", "5s", "-H", "Connection: close", "http://198.18.1.1:8080/id.txt"]);
    Bg::spawn(&mut c)
}

fn wait_output(mut b: Bg, limit: Duration) -> Output {
    let mut c = b.0.take().unwrap();
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Ok(Some(_)) = c.try_wait() {
            return c.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
    panic!("still running after {limit:?}");
}

/// Distribution by weight, a 1 MiB file byte for byte, and PROXY v2 read
/// by nginx naming the curl client's address and port.
fn weights_bytes_and_proxy_v2(via: Via) {
    weights_bytes_and_proxy_v2_on(via, 1)
}

/// The same on `cores` cores of our stack.
fn weights_bytes_and_proxy_v2_on(via: Via, cores: usize) {
    let ns = Ns::up(via);
    let dir = Dir::new();
    let _servers: Vec<Bg> = (1..=3).map(|i| nginx(&ns, &dir, i)).collect();
    let cfg = config(&dir);
    let lbp = lb_on(&ns, &cfg, via, cores);
    wait_ready(&ns);
    // 3,000 requests, one connection each: weights 2:1:1.
    let n = 3000;
    let t = Instant::now();
    let url = format!("http://198.18.1.1:8080/id.txt?[1-{n}]");
    let out = curl(&ns, &["-H", "Connection: close", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    let count = |s: &str| text.lines().filter(|l| *l == s).count() as f64;
    let (a, b, c) = (count("s1"), count("s2"), count("s3"));
    eprintln!("{via:?}: {n} connections in {:?}", t.elapsed());
    let n = f64::from(n);
    assert_eq!(a + b + c, n, "{text}");
    for (got, want) in [(a, n / 2.0), (b, n / 4.0), (c, n / 4.0)] {
        assert!((got - want).abs() <= 0.05 * want, "distribution {a}/{b}/{c} for weights 2:1:1");
    }
    // On two cores, both balancers took connections (the kernel's
    // SO_REUSEPORT or our port's RSS spreads them), each with its own
    // counters; on our stack no frame reached a core that does not own its
    // flow (the server connections' replies included: each core's connect
    // picks a local port whose replies hash to it).
    if cores > 1 {
        std::thread::sleep(Duration::from_millis(100));
        for name in ["lb_core_stack_rss_misdirected_total", "lb_core_stack_frames_handed_off_total"] {
            let v = metric(&ns, name);
            assert_eq!(v, vec![0.0; cores], "{name} per core");
        }
        let per_core = metric(&ns, "lb_core_connections_total");
        eprintln!("{via:?} on {cores} cores: connections per core {per_core:?}");
        assert_eq!(per_core.len(), cores);
        assert!(per_core.iter().all(|&t| t > 0.0), "connections per core: {per_core:?}");
    }
    if via == Via::Kernel && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2) {
        std::thread::sleep(Duration::from_millis(100));
        let o = curl(&ns, &["http://127.0.0.1:9100/stats"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let per_core: Vec<u64> = v["cores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["frontends"][1][1]["total"].as_u64().unwrap() + c["frontends"][0][1]["total"].as_u64().unwrap())
            .collect();
        assert_eq!(per_core.len(), 2);
        assert!(per_core.iter().all(|&t| t > 0), "connections per core: {per_core:?}");
    }
    // A 1 MiB file through the balancer, byte for byte.
    let t = Instant::now();
    let out = curl(&ns, &["http://198.18.1.1:8080/big.bin"]);
    assert!(out.stdout == big_file(), "big.bin differs ({} bytes)", out.stdout.len());
    eprintln!("{via:?}: 1 MiB in {:?}", t.elapsed());
    // PROXY v2 to nginx: it must log the curl client's address and port.
    let out = curl(&ns, &["--interface", "198.18.1.2", "-w", "\n%{local_port}", "http://198.18.1.1:8090/id.txt"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let port = text.lines().last().unwrap().trim().to_string();
    assert!(text.starts_with("s1\n"), "{text}");
    std::thread::sleep(Duration::from_millis(200));
    let log = std::fs::read_to_string(dir.0.join("pp1.log")).unwrap_or_default();
    let want = format!("198.18.1.2 {port}");
    assert!(log.lines().any(|l| l.trim() == want), "nginx logged {log:?}, want {want:?}");
    let out = lbp.stop();
    assert!(out.status.success(), "lb: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn kernel_stack_weights_bytes_and_proxy_v2_with_nginx_and_curl() {
    if available() {
        weights_bytes_and_proxy_v2(Via::Kernel);
    }
}

#[test]
fn user_stack_over_tap_weights_bytes_and_proxy_v2_with_nginx_and_curl() {
    if available() {
        weights_bytes_and_proxy_v2(Via::Tap);
    }
}

#[test]
fn user_stack_over_af_packet_weights_bytes_and_proxy_v2_with_nginx_and_curl() {
    if available() {
        weights_bytes_and_proxy_v2(Via::AfPacket);
    }
}

#[test]
fn user_stack_on_two_cores_over_a_two_queue_tap_both_cores_balance_and_nothing_is_misdirected() {
    if available() && two_cpus() {
        weights_bytes_and_proxy_v2_on(Via::Tap, 2);
    }
}

#[test]
fn user_stack_on_two_cores_over_two_queue_af_packet_both_cores_balance_and_nothing_is_misdirected() {
    if available() && two_cpus() {
        weights_bytes_and_proxy_v2_on(Via::AfPacket, 2);
    }
}

fn two_cpus() -> bool {
    if std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2) {
        return true;
    }
    testkit::skip("needs two CPUs");
    false
}

/// A server killed during a `wrk` run (one request per connection): marked
/// down within fall × interval + timeout; the only failed requests are the
/// ones in flight on it; refused connects are redispatched, never seen.
fn killed_server(via: Via) {
    let ns = Ns::up(via);
    let dir = Dir::new();
    let mut servers: Vec<Bg> = (1..=3).map(|i| nginx(&ns, &dir, i)).collect();
    let cfg = config(&dir);
    let lbp = lb(&ns, &cfg, via);
    wait_ready(&ns);
    let conns = 8;
    let load = wrk_bg(&ns, 4, conns);
    std::thread::sleep(Duration::from_secs(1));
    let killed = Instant::now();
    drop(servers.pop()); // s3: SIGKILL
    let mut down_after = None;
    while killed.elapsed() < Duration::from_secs(3) {
        if server_up(&ns, "s3") == Some(false) {
            down_after = Some(killed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // fall (2) x interval (200 ms) + timeout (100 ms), and the metrics' own
    // publication tick and polling on top.
    let down_after = down_after.expect("s3 never marked down");
    assert!(down_after <= Duration::from_millis(2 * 200 + 100 + 200), "down after {down_after:?}");
    let (requests, errors, text) = wrk(&wait_output(load, Duration::from_secs(30)));
    assert!(requests > 100, "{text}");
    eprintln!("killed server: {requests} requests, {errors} failed (in flight on s3 at most {conns}), down after {down_after:?}");
    assert!(errors <= u64::from(conns), "{errors} failed requests: more than were in flight\n{text}");
    let out = lbp.stop();
    assert!(out.status.success());
}

#[test]
fn kernel_stack_a_killed_server_is_marked_down_and_only_its_in_flight_requests_fail() {
    if available() {
        killed_server(Via::Kernel);
    }
}

#[test]
fn user_stack_a_killed_server_is_marked_down_and_only_its_in_flight_requests_fail() {
    if available() {
        killed_server(Via::Tap);
    }
}

/// A drain over the admin API, a SIGHUP reload with new weights and an
/// admin reload during a `wrk` run: no failed request.
fn drain_and_reloads(via: Via) {
    let ns = Ns::up(via);
    let dir = Dir::new();
    let _servers: Vec<Bg> = (1..=3).map(|i| nginx(&ns, &dir, i)).collect();
    let cfg = config(&dir);
    let lbp = lb(&ns, &cfg, via);
    wait_ready(&ns);
    let load = wrk_bg(&ns, 4, 8);
    std::thread::sleep(Duration::from_millis(700));
    curl(&ns, &["-X", "POST", "http://127.0.0.1:9100/servers/web/s1/drain/on"]);
    std::thread::sleep(Duration::from_millis(700));
    let text = std::fs::read_to_string(&cfg).unwrap().replacen("weight = 2 ", "weight = 3 ", 1);
    std::fs::write(&cfg, text).unwrap();
    lbp.signal("-HUP");
    std::thread::sleep(Duration::from_millis(700));
    curl(&ns, &["-X", "POST", "http://127.0.0.1:9100/reload"]);
    let (requests, errors, text) = wrk(&wait_output(load, Duration::from_secs(30)));
    assert!(requests > 100, "{text}");
    assert_eq!(errors, 0, "{text}");
    let out = lbp.stop();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("reloaded").count(), 2, "{err}");
    assert!(out.status.success(), "{err}");
}

#[test]
fn kernel_stack_drain_and_reloads_during_wrk_fail_no_request() {
    if available() {
        drain_and_reloads(Via::Kernel);
    }
}

#[test]
fn user_stack_drain_and_reloads_during_wrk_fail_no_request() {
    if available() {
        drain_and_reloads(Via::Tap);
    }
}

/// A bounded SYN flood from spoofed 198.18.1.100-250 sources (raw socket,
/// python3): `count` SYNs spread evenly over `secs`; prints how many went.
const FLOOD: &str = r#"
import random, socket, struct, sys, time
dst, port, count, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
d = socket.inet_aton(dst); end = time.time() + secs; n = 0
while n < count and time.time() < end:
    src = socket.inet_aton('198.18.1.%d' % random.randint(100, 250))
    tcp = struct.pack('!HHIIBBHHH', random.randint(1024, 65535), port, random.getrandbits(32), 0, 5 << 4, 0x02, 65535, 0, 0)
    tcp = tcp[:16] + struct.pack('!H', csum(src + d + struct.pack('!BBH', 0, 6, len(tcp)) + tcp)) + tcp[18:]
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), n & 0xffff, 0, 64, 6, 0, src, d)
    raw.sendto(ip + tcp, (dst, 0)); n += 1
    if n % 100 == 0: time.sleep(max(0.0, (n / count) * secs - (secs - (end - time.time()))))
print(n)
"#;

/// Our stack with a SYN backlog of 8 under a SYN flood from the client
/// namespace: with `syn_cookies = "when-full"` every curl still gets its
/// answer; with `"off"` (the control) the flood starves them.
fn syn_flood(cookies: &str) -> (usize, usize, u64) {
    let ns = Ns::up(Via::Tap);
    let dir = Dir::new();
    let _servers: Vec<Bg> = (1..=3).map(|i| nginx(&ns, &dir, i)).collect();
    let cfg = config(&dir);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("syn_backlog = 4096", "syn_backlog = 8")
        .replace("syn_cookies = \"when-full\"", &format!("syn_cookies = \"{cookies}\""));
    std::fs::write(&cfg, text).unwrap();
    let lbp = lb(&ns, &cfg, Via::Tap);
    wait_ready(&ns);
    let mut c = ns.cmd("python3");
    c.args(["-c", FLOOD, "198.18.1.1", "8080", "20000", "5"]);
    let flood = Bg::spawn(&mut c);
    std::thread::sleep(Duration::from_millis(500));
    let (mut ok, mut tried) = (0, 0);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) && tried < 10 {
        tried += 1;
        let o = ns.cmd("curl").args(["-s", "--max-time", "2", "http://198.18.1.1:8080/id.txt"]).output().unwrap();
        if o.status.success() && o.stdout.starts_with(b"s") {
            ok += 1;
        }
    }
    let out = wait_output(flood, Duration::from_secs(30));
    let sent: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    drop(lbp);
    (ok, tried, sent)
}

#[test]
fn user_stack_syn_flood_at_a_full_syn_backlog_curl_still_succeeds_with_syn_cookies() {
    if !(available() && testkit::require(&["python3"])) {
        return;
    }
    let (ok, tried, sent) = syn_flood("when-full");
    eprintln!("syn cookies on: {ok} of {tried} curls answered during a flood of {sent} SYNs");
    assert!(sent >= 5_000, "the flood sent only {sent} SYNs");
    assert_eq!(ok, tried, "{ok} of {tried} curls answered under the flood");
    let (ok, tried, sent) = syn_flood("off");
    eprintln!("syn cookies off: {ok} of {tried} curls answered during a flood of {sent} SYNs");
    assert!(sent >= 5_000, "the flood sent only {sent} SYNs");
    assert!(ok < tried, "without cookies the flood should starve some curls ({ok} of {tried} answered)");
}

/// Maglev by source address: ten clients (ten source addresses) each keep
/// their server across a SIGHUP reload that changes other values (a server's
/// maxconn, the timeouts), and the same config gives the same choices on a
/// second `lb` process (as several instances behind ECMP must).
#[test]
fn kernel_stack_maglev_keeps_each_source_on_its_server_across_a_reload_and_a_restart() {
    if !available() {
        return;
    }
    let ns = Ns::up(Via::Kernel);
    for i in 10..20 {
        let a = format!("198.18.1.{i}/32");
        assert!(ns.cmd("ip").args(["addr", "add", &a, "dev", "lo"]).status().unwrap().success());
    }
    let dir = Dir::new();
    let _servers: Vec<Bg> = (1..=3).map(|i| nginx(&ns, &dir, i)).collect();
    let cfg = config(&dir);
    let text =
        std::fs::read_to_string(&cfg).unwrap().replacen("algorithm = \"roundrobin\"", "algorithm = \"maglev\"", 1);
    std::fs::write(&cfg, &text).unwrap();
    let choices = |ns: &Ns| -> Vec<String> {
        (10..20)
            .map(|i| {
                let src = format!("198.18.1.{i}");
                let o =
                    curl(ns, &["--interface", &src, "-H", "Connection: close", "http://198.18.1.1:8080/id.txt?[1-5]"]);
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                let mut seen: Vec<&str> = text.lines().collect();
                seen.dedup();
                assert_eq!(seen.len(), 1, "source {src} moved between servers: {text:?}");
                seen[0].to_string()
            })
            .collect()
    };
    let lbp = lb(&ns, &cfg, Via::Kernel);
    wait_ready(&ns);
    let before = choices(&ns);
    let mut distinct = before.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() >= 2, "ten sources all on one server: {before:?}");
    // Reload: s3's maxconn and the backend's timeouts change, not the table.
    let changed = text.replace("maxconn = 1000\n", "maxconn = 500\n").replace("server_ms = 30000", "server_ms = 20000");
    assert_ne!(changed, text);
    std::fs::write(&cfg, changed).unwrap();
    lbp.signal("-HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(choices(&ns), before, "after the reload");
    let out = lbp.stop();
    assert!(String::from_utf8_lossy(&out.stderr).contains("reloaded"));
    // Another process with the same config chooses alike.
    let again = lb(&ns, &cfg, Via::Kernel);
    wait_ready(&ns);
    assert_eq!(choices(&ns), before, "a second lb process");
    drop(again);
}
