//! `scripts/bench.sh lb [--cores LIST] [--client-cores LIST] [--secs N] [--rounds N]` (this binary is
//! `lb_bench`, so as not to collide with the `lb` it measures): the
//! load balancer against Debian's `haproxy`, same clients, same backends.
//!
//! Everything runs in one namespace made by `scripts/testbed.sh up lbbench
//! --tap` (198.18.0.0/15 only), removed at the end, also on failure:
//! * backends: three `nginx` (Debian's nginx-light), one process each, on
//!   198.18.1.2:8081-8083 (the TAP's kernel side), serving a 6-byte file;
//! * client: `wrk` (one thread), keep-alive (`req_per_s_keepalive`) and one
//!   request per connection (`Connection: close`, `conns_per_s`);
//! * balancers, one at a time, each pinned to `--cores` (default: core 1):
//!   `haproxy` (mode tcp, roundrobin, `nbthread` = the core count, `cpu-map`
//!   to those cores, the same timeouts, retries, redispatch and maxconn as
//!   lb's config) and `lb --stack kernel` on 198.18.3.1:8080 (an address on
//!   the namespace's loopback), `lb --stack user` on our stack over `tap:t0`
//!   at 198.18.1.1:8080, and on `af_xdp:p0` (the testbed's veth, checksums
//!   computed by the kernel's end k0) at 198.18.0.1:8080 with the backends
//!   through k0 (one core each, the first of `--cores`);
//! * `wrk` and the `nginx`es are pinned (`taskset`) to `--client-cores`
//!   (default: every other core).
//!
//! The headline is CPU cost per request: the balancer's busy time over the
//! run divided by the requests `wrk` completed. Ours on our stack: the poll
//! loop's busy time (`flow::core_cycles`, iterations that did work, from
//! `/stats`' `busy_ns`); haproxy and `lb --stack kernel`: their process CPU
//! time (utime + stime from `/proc/PID/stat`; the kernel's TCP work done in
//! their system calls is in it, the softirq work on other cores is not).
#![forbid(unsafe_code)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bench::{plot_series, process_cpu_ns, write_json, write_md, Row, Series};

const NS: &str = "lbbench";
const TAP_MAC: &str = "02:00:00:00:01:01";

struct Testbed;

impl Testbed {
    fn up() -> Testbed {
        let _ = Command::new("scripts/testbed.sh").args(["down", NS]).status();
        let ok = Command::new("scripts/testbed.sh").args(["up", NS, "--tap", "--quiet"]).status();
        assert!(ok.is_ok_and(|s| s.success()), "scripts/testbed.sh up {NS} failed (root needed)");
        let ok = Command::new("ip").args(["-n", NS, "addr", "add", "198.18.3.1/32", "dev", "lo"]).status();
        assert!(ok.is_ok_and(|s| s.success()));
        // nginx closes first (Connection: close), so TIME-WAIT lands on its
        // side; a balancer reusing a local port soon after then meets it and
        // its SYN may wait for a retransmission. Keep no TIME-WAIT in the
        // namespace, for every balancer alike.
        let ok = in_ns("sysctl").args(["-qw", "net.ipv4.tcp_max_tw_buckets=0"]).status();
        assert!(ok.is_ok_and(|s| s.success()));
        // For lb on af_xdp:p0: over a veth, XDP would get the kernel's
        // checksums partial (see the af_xdp driver), so k0 computes its own.
        let ok = in_ns("ethtool").args(["-K", "k0", "tx", "off"]).stdout(Stdio::null()).status();
        assert!(ok.is_ok_and(|s| s.success()));
        Testbed
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new("scripts/testbed.sh").args(["down", NS]).status();
    }
}

fn in_ns(prog: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", NS, prog]);
    c
}

fn pinned(cores: &str, prog: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", NS, "taskset", "-c", cores, prog]);
    c
}

/// A child killed (SIGTERM, then SIGKILL) on drop.
struct Bg(Child);

impl Bg {
    fn spawn(c: &mut Command) -> Bg {
        Bg(c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn"))
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Args {
    cores: String,
    client_cores: String,
    secs: u32,
    rounds: u32,
}

fn args() -> Args {
    let n = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let mut a = Args { cores: "1".into(), client_cores: String::new(), secs: 5, rounds: 3 };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_else(|| usage(&format!("{} needs a value", argv[i])));
        match argv[i].as_str() {
            "--cores" => a.cores = v,
            "--client-cores" => a.client_cores = v,
            "--secs" => a.secs = v.parse().unwrap_or_else(|_| usage("--secs must be a number")),
            "--rounds" => {
                a.rounds = v.parse().ok().filter(|r| *r > 0).unwrap_or_else(|| usage("--rounds must be 1 or more"))
            }
            other => usage(&format!("unknown flag {other}")),
        }
        i += 2;
    }
    let bal = pmd::runtime::parse_core_list(&a.cores).unwrap_or_else(|e| usage(&format!("--cores: {e}")));
    if a.client_cores.is_empty() {
        let rest: Vec<String> = (0..n).filter(|c| !bal.contains(c)).map(|c| c.to_string()).collect();
        if rest.is_empty() {
            usage("--cores leaves no core for wrk and nginx");
        }
        a.client_cores = rest.join(",");
    }
    a
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "lb bench: {msg}\nusage: scripts/bench.sh lb [--cores LIST] [--client-cores LIST] [--secs N] [--rounds N]"
    );
    std::process::exit(2)
}

fn nginx(dir: &std::path::Path, i: usize, cores: &str) -> Bg {
    let root = dir.join(format!("www{i}"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("id.txt"), format!("s{i}\n")).unwrap();
    let d = dir.display();
    let conf = format!(
        "master_process off;\nworker_processes 1;\npid {d}/nginx{i}.pid;\nerror_log {d}/error{i}.log;\n\
         events {{ worker_connections 4096; }}\n\
         http {{ access_log off; keepalive_requests 10000000; client_body_temp_path {d}/tmp{i};\n\
         server {{ listen 198.18.1.2:808{i} backlog=4096; root {root}; }} }}\n",
        root = root.display()
    );
    let path = dir.join(format!("nginx{i}.conf"));
    std::fs::write(&path, conf).unwrap();
    let early = dir.join(format!("early{i}.log"));
    Bg::spawn(pinned(cores, "nginx").args([
        "-e",
        early.to_str().unwrap(),
        "-c",
        path.to_str().unwrap(),
        "-g",
        "daemon off;",
    ]))
}

/// The lb config: `lb init` with the bench's addresses, round robin, no
/// health checks (haproxy runs without `check` too).
fn lb_config(lb: &str, dir: &std::path::Path, vip: &str) -> std::path::PathBuf {
    let out = Command::new(lb).arg("init").output().expect("lb init");
    let mut t = String::from_utf8(out.stdout).unwrap();
    for (from, to) in [
        ("0.0.0.0:8080", vip),
        ("198.18.2.1:8081", "198.18.1.2:8081"),
        ("198.18.2.2:8081", "198.18.1.2:8082"),
        ("198.18.2.3:8081", "198.18.1.2:8083"),
        ("algorithm = \"maglev\"", "algorithm = \"roundrobin\""),
        ("check = \"tcp\"", "check = \"off\""),
        // haproxy's 10000 needs more than the 20000 descriptors allowed here.
        ("maxconn = 10000", "maxconn = 9000"),
    ] {
        t = t.replacen(from, to, 1);
    }
    let p = dir.join(format!("lb-{}.toml", vip.replace([':', '.'], "_")));
    std::fs::write(&p, t).unwrap();
    p
}

/// haproxy with the same values as lb's config.
fn haproxy_config(dir: &std::path::Path, cores: &[usize]) -> std::path::PathBuf {
    let n = cores.len();
    let list: Vec<String> = cores.iter().map(|c| c.to_string()).collect();
    let conf = format!(
        "global\n  nbthread {n}\n  cpu-map auto:1/1-{n} {}\n  maxconn 9000\n\
         defaults\n  mode tcp\n  timeout connect 1000ms\n  timeout client 30000ms\n  timeout server 30000ms\n\
         \x20 timeout tunnel 300000ms\n  timeout queue 5000ms\n  retries 3\n  option redispatch\n\
         frontend web\n  bind 198.18.3.1:8080 backlog 4096\n  maxconn 9000\n  default_backend web\n\
         backend web\n  balance roundrobin\n\
         \x20 server s1 198.18.1.2:8081 maxconn 1000\n  server s2 198.18.1.2:8082 maxconn 1000\n\
         \x20 server s3 198.18.1.2:8083 maxconn 1000\n",
        list.join(" ")
    );
    let p = dir.join("haproxy.cfg");
    std::fs::write(&p, conf).unwrap();
    p
}

/// One wrk run's results.
#[derive(Clone, Copy, Debug, Default)]
struct Run {
    requests: f64,
    rps: f64,
    p99_us: f64,
    errors: f64,
    cpu_ns: f64,
    /// wrk's latency distribution: p50, p75, p90, p99 in µs.
    pcts: [f64; 4],
    /// The balancer's involuntary context switches over the run (every
    /// thread): how often the scheduler took its core away.
    preempted: f64,
}

fn wrk_out(o: &Output) -> (f64, f64, [f64; 4], f64) {
    let text = String::from_utf8_lossy(&o.stdout);
    let mut requests = f64::NAN;
    let mut rps = f64::NAN;
    let mut pcts = [f64::NAN; 4];
    let mut errors = 0.0;
    for l in text.lines() {
        let t = l.trim();
        if t.contains("requests in") {
            requests = t.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(f64::NAN);
        }
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().unwrap_or(f64::NAN);
        }
        for (i, p) in ["50%", "75%", "90%", "99%"].into_iter().enumerate() {
            if let Some(v) = t.strip_prefix(p) {
                pcts[i] = duration_us(v.trim());
            }
        }
        if let Some(rest) = t.strip_prefix("Socket errors:") {
            errors += rest.split(',').filter_map(|p| p.split_whitespace().last()?.parse::<f64>().ok()).sum::<f64>();
        }
        if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    (requests, rps, pcts, errors)
}

/// Involuntary context switches of every thread of `pid`.
fn preemptions(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return f64::NAN };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:").and_then(|v| v.trim().parse::<f64>().ok()))
        })
        .sum()
}

/// wrk's `1.23ms` / `456.00us` / `1.02s` in µs.
fn duration_us(s: &str) -> f64 {
    let (num, scale) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        (s, f64::NAN)
    };
    num.parse::<f64>().map(|n| n * scale).unwrap_or(f64::NAN)
}

/// Busy ns of lb's cores from its admin `/stats`.
fn lb_busy_ns() -> Option<f64> {
    let o = in_ns("curl").args(["-s", "--max-time", "2", "http://127.0.0.1:9100/stats"]).output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    Some(v["cores"].as_array()?.iter().filter_map(|c| c["busy_ns"].as_f64()).sum())
}

fn wait_up(vip: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        let ok = in_ns("curl")
            .args(["-s", "--max-time", "1", &format!("http://{vip}/id.txt")])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("balancer on {vip} did not answer");
}

/// wrk against `vip`, with the balancer's CPU measured over the run:
/// `busy` reads lb's poll-loop busy ns; otherwise the process CPU of `pid`.
fn measure(a: &Args, vip: &str, close: bool, pid: u32, busy: bool) -> Run {
    let read = || if busy { lb_busy_ns().unwrap_or(f64::NAN) } else { process_cpu_ns(pid).unwrap_or(0) as f64 };
    // Warm-up (connections, caches, ARP), not measured.
    let _ = run_wrk(a, vip, close, 1);
    std::thread::sleep(Duration::from_millis(300));
    let (c0, s0) = (read(), preemptions(pid));
    let o = run_wrk(a, vip, close, a.secs);
    std::thread::sleep(Duration::from_millis(100));
    let (c1, s1) = (read(), preemptions(pid));
    let (requests, rps, pcts, errors) = wrk_out(&o);
    Run { requests, rps, p99_us: pcts[3], errors, cpu_ns: c1 - c0, pcts, preempted: s1 - s0 }
}

fn run_wrk(a: &Args, vip: &str, close: bool, secs: u32) -> Output {
    let mut c = pinned(&a.client_cores, "wrk");
    c.args(["-t1", "-c32", "-d", &format!("{secs}s"), "--timeout", "5s", "--latency"]);
    if close {
        c.args(["-H", "Connection: close"]);
    }
    c.arg(format!("http://{vip}/id.txt"));
    c.output().expect("wrk")
}

/// Each field's median over the rounds.
fn median_run(runs: &[Run]) -> Run {
    let med = |f: fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    Run {
        requests: med(|r| r.requests),
        rps: med(|r| r.rps),
        p99_us: med(|r| r.p99_us),
        errors: runs.iter().map(|r| r.errors).sum(),
        cpu_ns: med(|r| r.cpu_ns / r.requests) * med(|r| r.requests),
        pcts: [med(|r| r.pcts[0]), med(|r| r.pcts[1]), med(|r| r.pcts[2]), med(|r| r.pcts[3])],
        preempted: med(|r| r.preempted),
    }
}

/// haproxy: keep-alive and one-request-per-connection runs.
fn haproxy_case(a: &Args, dir: &std::path::Path, cores: &[usize]) -> (Run, Run) {
    let cfg = haproxy_config(dir, cores);
    let h = Bg::spawn(in_ns("haproxy").args(["-db", "-f", cfg.to_str().unwrap()]));
    wait_up("198.18.3.1:8080");
    let ka = measure(a, "198.18.3.1:8080", false, h.0.id(), false);
    let cl = measure(a, "198.18.3.1:8080", true, h.0.id(), false);
    drop(h);
    std::thread::sleep(Duration::from_millis(500));
    (ka, cl)
}

/// Where lb runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `--stack kernel` on 198.18.3.1 (the namespace's loopback).
    Kernel,
    /// Our stack on `tap:t0` at 198.18.1.1, the backends' subnet.
    Tap,
    /// Our stack on `af_xdp:p0` (the veth) at 198.18.0.1, the backends
    /// (198.18.1.2) through the kernel's end k0 (198.18.0.2).
    AfXdp,
}

/// lb on the kernel or on our stack (on the first of `--cores`).
fn lb_case(a: &Args, lb: &str, dir: &std::path::Path, via: Via) -> (Run, Run) {
    let vip = match via {
        Via::Kernel => "198.18.3.1:8080",
        Via::Tap => "198.18.1.1:8080",
        Via::AfXdp => "198.18.0.1:8080",
    };
    let cfg = lb_config(lb, dir, vip);
    let mut c = in_ns(lb);
    c.args(["run", "-c", cfg.to_str().unwrap(), "--grace-ms", "100"]);
    let first = pmd::runtime::parse_core_list(&a.cores).unwrap()[0].to_string();
    match via {
        Via::Kernel => c.args(["--stack", "kernel", "--cores", &a.cores]),
        Via::Tap => {
            let spec = format!("tap:t0?mac={TAP_MAC}");
            c.args(["--stack", "user", "--port", &spec, "--ip", "198.18.1.1/24", "--cores", &first])
        }
        Via::AfXdp => c.args([
            "--stack",
            "user",
            "--port",
            "af_xdp:p0",
            "--ip",
            "198.18.0.1/24",
            "--gateway",
            "198.18.0.2",
            "--cores",
            &first,
        ]),
    };
    let user = via != Via::Kernel;
    let l = Bg::spawn(&mut c);
    wait_up(vip);
    let ka = measure(a, vip, false, l.0.id(), user);
    let cl = measure(a, vip, true, l.0.id(), user);
    drop(l);
    std::thread::sleep(Duration::from_millis(500));
    (ka, cl)
}

fn main() {
    let a = args();
    let bal_cores = pmd::runtime::parse_core_list(&a.cores).unwrap();
    let bin = format!("{}/release", std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()));
    let lb = format!("{bin}/lb");
    let load_before = bench::load_average();
    let _tb = Testbed::up();
    let dir = std::env::temp_dir().join(format!("lbbench{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _nginx: Vec<Bg> = (1..=3).map(|i| nginx(&dir, i, &a.client_cores)).collect();
    std::thread::sleep(Duration::from_millis(300));

    // Rounds alternate the balancers, so that a burst of load from elsewhere
    // on the machine hits each of them alike; every metric is the median of
    // its rounds.
    let mut raw: Vec<(&str, Run, Run)> = Vec::new();
    for _ in 0..a.rounds {
        let (k, c) = haproxy_case(&a, &dir, &bal_cores);
        raw.push(("haproxy", k, c));
        let (k, c) = lb_case(&a, &lb, &dir, Via::Kernel);
        raw.push(("lb_kernel", k, c));
        let (k, c) = lb_case(&a, &lb, &dir, Via::Tap);
        raw.push(("lb_user", k, c));
        let (k, c) = lb_case(&a, &lb, &dir, Via::AfXdp);
        raw.push(("lb_af_xdp", k, c));
    }
    let results: Vec<(&str, Run, Run)> = ["haproxy", "lb_kernel", "lb_user", "lb_af_xdp"]
        .into_iter()
        .map(|n| {
            let ks: Vec<Run> = raw.iter().filter(|r| r.0 == n).map(|r| r.1).collect();
            let cs: Vec<Run> = raw.iter().filter(|r| r.0 == n).map(|r| r.2).collect();
            (n, median_run(&ks), median_run(&cs))
        })
        .collect();
    let load_after = bench::load_average();
    let _ = std::fs::remove_dir_all(&dir);

    let get = |n: &str| results.iter().find(|r| r.0 == n).map(|r| (r.1, r.2)).unwrap();
    let (hk, hc) = get("haproxy");
    let cost = |r: Run| r.cpu_ns / 1e3 / r.requests;
    let mut rows = Vec::new();
    for (name, suffix) in [("lb_user", ""), ("lb_af_xdp", "_af_xdp"), ("lb_kernel", "_kernel")] {
        let (k, c) = get(name);
        rows.push(Row::new(&format!("cost_per_req_keepalive{suffix}"), "us", "lower", cost(k), "haproxy", cost(hk)));
        rows.push(Row::new(&format!("cost_per_req_conn{suffix}"), "us", "lower", cost(c), "haproxy", cost(hc)));
        rows.push(Row::new(&format!("req_per_s_keepalive{suffix}"), "req/s", "higher", k.rps, "haproxy", hk.rps));
        rows.push(Row::new(&format!("conns_per_s{suffix}"), "conns/s", "higher", c.rps, "haproxy", hc.rps));
        rows.push(Row::new(&format!("latency_p99{suffix}"), "us", "lower", k.p99_us, "haproxy", hk.p99_us));
    }
    let errors: Vec<String> = results
        .iter()
        .flat_map(|(n, k, c)| [(n, "keepalive", k.errors), (n, "conn", c.errors)])
        .filter(|(_, _, e)| *e > 0.0)
        .map(|(n, m, e)| format!("{n} {m}: {e} failed requests"))
        .collect();
    let cpu = bench::cpu_model();
    let extra = serde_json::json!({
        "cpu_model": cpu, "load_average_before": load_before, "load_average_after": load_after,
        "balancer_cores": a.cores, "client_cores": a.client_cores, "secs": a.secs, "rounds": a.rounds, "errors": errors,
        "rounds_raw": raw.iter().map(|(n, k, c)| serde_json::json!({"balancer": n,
            "keepalive": {"requests": k.requests, "rps": k.rps, "p99_us": k.p99_us, "cpu_ns": k.cpu_ns, "errors": k.errors,
                "p50_75_90_99_us": k.pcts, "preempted": k.preempted},
            "conn": {"requests": c.requests, "rps": c.rps, "p99_us": c.p99_us, "cpu_ns": c.cpu_ns, "errors": c.errors,
                "p50_75_90_99_us": c.pcts, "preempted": c.preempted}})).collect::<Vec<_>>(),
    });
    write_json("lb", &rows, extra);
    let mut md = format!(
        "# lb: the load balancer on our stack and on the kernel's vs Debian's haproxy (mode tcp)\n\n\
         CPU: {cpu}; load average {load_before} before, {load_after} after. Balancer on core(s) {}; \
         wrk (1 thread, 32 connections) and the three nginx backends on core(s) {}. {} s per case after a 1 s warm-up; {} alternating rounds, medians.\n\n\
         | case | unit | ours | haproxy | ratio |\n|---|---|---|---|---|\n",
        a.cores, a.client_cores, a.secs, a.rounds
    );
    for r in &rows {
        md += &format!("| {} | {} | {} | {} | {} |\n", r.case, r.metric, r.ours, r.peer_value, r.ratio);
    }
    md += "\nLatency distribution (keep-alive, wrk, µs; medians of the rounds) and the balancer's involuntary context switches over the run (the scheduler taking its core; every thread):\n\n\
         | balancer | p50 | p75 | p90 | p99 | req/s | preempted (keep-alive) | preempted (per connection) |\n|---|---|---|---|---|---|---|---|\n";
    for (n, k, c) in &results {
        md += &format!(
            "| {n} | {} | {} | {} | {} | {} | {} | {} |\n",
            k.pcts[0], k.pcts[1], k.pcts[2], k.pcts[3], k.rps, k.preempted, c.preempted
        );
    }
    let series: Vec<Series> = results
        .iter()
        .map(|(n, k, _)| Series {
            label: (*n).to_string(),
            points: [50.0, 75.0, 90.0, 99.0].into_iter().zip(k.pcts).filter(|p| p.1.is_finite()).collect(),
        })
        .collect();
    plot_series("lb", "lb vs haproxy: wrk keep-alive latency by percentile", "percentile", "latency (us)", &series);
    md += "\n- Rows without suffix: `lb --stack user` (our stack over `tap:t0`, one core); `_af_xdp`: the same over `af_xdp:p0` (copy mode on the veth, one queue); `_kernel`: `lb --stack kernel`. Peer: `haproxy -db` (2.6, mode tcp, roundrobin, nbthread = balancer core count, cpu-map to them, same timeouts, retries 3, option redispatch, maxconn 1000 per server, no checks; lb's health checks are off too).\n\
         - cost_per_req: the balancer's CPU time over the measured run / requests completed. lb on our stack: its poll loop's busy time (`busy_ns` of `/stats`: iterations that did work; the TAP's system calls included, empty polls excluded). haproxy and lb on the kernel: process utime + stime (`/proc/PID/stat`, 10 ms ticks), which holds their system calls but not softirq work the kernel does for them elsewhere.\n\
         - latency_p99: wrk's p99 (closed loop, 32 connections, keep-alive): the same offered load only if the request rates are equal; read it with req_per_s.\n\
         - TIME-WAIT off in the namespace (`net.ipv4.tcp_max_tw_buckets=0`): nginx closes first, and its TIME-WAIT entries made reused ports wait for SYN retransmissions, for every balancer, at random.\n\
         - maxconn 9000 on both (haproxy cannot raise its descriptor limit for 10000 here).\n\
         - Tuning: nginx `keepalive_requests 10000000`, access log off, one process each; haproxy as above, nothing else; lb from `lb init` with roundrobin and checks off. The TAP path is the kernel's tun driver on both directions of our stack's traffic: a NIC would take that cost away.\n";
    let ratio = |case: &str| rows.iter().find(|r| r.case == case).map(|r| r.ratio).unwrap_or(f64::NAN);
    let verdict = |ok: bool| if ok { "met" } else { "not met" };
    let (x_ka, x_cl) = (ratio("cost_per_req_keepalive_af_xdp"), ratio("cost_per_req_conn_af_xdp"));
    md += &format!(
        "- Target on af_xdp: lb on our stack <= 0.5x haproxy's cost per request: {} (keep-alive {x_ka}, per connection {x_cl}); p99 <= haproxy's: {} ({}).\n",
        verdict(x_ka <= 0.5 && x_cl <= 0.5),
        verdict(ratio("latency_p99_af_xdp") <= 1.0),
        ratio("latency_p99_af_xdp"),
    );
    let (u_ka, u_cl, k_ka, k_cl) = (
        ratio("cost_per_req_keepalive"),
        ratio("cost_per_req_conn"),
        ratio("cost_per_req_keepalive_kernel"),
        ratio("cost_per_req_conn_kernel"),
    );
    md += &format!(
        "- Targets: lb on our stack <= 0.5x haproxy's cost per request: {} (keep-alive {u_ka}, per connection {u_cl}); \
         p99 <= haproxy's: {} ({}); lb on the kernel <= 1x: {} (keep-alive {k_ka}, per connection {k_cl}).\n",
        verdict(u_ka <= 0.5 && u_cl <= 0.5),
        verdict(ratio("latency_p99") <= 1.0),
        ratio("latency_p99"),
        verdict(k_ka <= 1.0 && k_cl <= 1.0),
    );
    if errors.is_empty() {
        md += "- Errors: none.\n";
    } else {
        md += &format!("- Errors: {}.\n", errors.join("; "));
    }
    md += "- Raw: [`lb.json`](lb.json); plot: [`lb.svg`](lb.svg) (keep-alive latency by percentile, each balancer). Reproduce: `scripts/bench.sh lb [--cores LIST] [--client-cores LIST] [--secs N] [--rounds N]` (root).\n";
    write_md("lb", &md);
    print!("{md}");
}
