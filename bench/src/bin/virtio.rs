//! `scripts/bench.sh virtio`: our `virtio-user:` port against DPDK's own
//! `net_virtio_user`, both talking to the same kind of back end, in the same run.
//!
//! The back end is `dpdk-testpmd --no-huge --vdev net_vhost0,iface=SOCK` (a new
//! one per measurement, forwarding on one core). The front end is either our
//! `testpmd --port virtio-user:SOCK` or `dpdk-testpmd --vdev
//! net_virtio_user0,path=SOCK`, forwarding on the other core, both with 256-entry
//! rings and bursts of 32. Cases:
//! * `txonly/virtio-user`: front end txonly (64-byte frames), back end rxonly;
//!   front-end transmit rate;
//! * `rxonly/virtio-user`: back end txonly, front end rxonly; front-end
//!   receive rate;
//! * `io/virtio-user`: back end io (a loopback), front end io seeded with one
//!   burst (`--tx-first`); front-end forwarding rate (a round-trip-bound loop).
//!
//! Each case runs twice: with `VIRTIO_F_IN_ORDER` on both sides (our default
//! `in_order=1`, DPDK's default) — the headline rows — and without it on both
//! sides (`in_order=0`), rows named `... (in_order=0)`.
//!
//! DPDK's virtio-user must share its own buffers with the back end by file
//! descriptor, which EAL only does for hugepage memory: its front end runs with
//! `--in-memory --single-file-segments` on 2 MB hugepages reserved here (and
//! released at the end). Ours needs none: its pool is a memfd.
//!
//! # Noise
//! The machine is a shared 2-vCPU VM; a run needs both vCPUs (front end and
//! back end each poll one), so any other process that runs for a moment (or the
//! hypervisor taking a vCPU, "steal") stalls the loop, and the per-second rate
//! swings by 2-5x. So:
//! * each side runs `BENCH_ROUNDS` times (default 10) for `BENCH_SECS` seconds
//!   (default 3) each, alternating, and the side that goes first alternates too,
//!   so both see the same mix of the machine's moods; the first second of
//!   every run is dropped;
//! * a sampler thread reads `/proc/stat` and the benchmark's own processes'
//!   CPU time every 100 ms, and every per-second rate is tagged with the share
//!   of the two CPUs that went to anything else in that second
//!   ("interference": other processes, the kernel's own work, steal);
//! * the headline is the median of the *quiet* seconds (interference at most
//!   `BENCH_QUIET`, default 0.03 = 3 % of the two CPUs) when each side has at
//!   least `BENCH_MIN_QUIET` (default 8) of them; else the median of each
//!   side's seconds at or below the median interference of the case's seconds
//!   (the same bound for both sides: the "less disturbed half"); else of all
//!   seconds. The table says which, and also gives the median of all seconds
//!   and the p10-p90 of each.
//!
//! `BENCH_CASES` (e.g. `io,txonly`) runs only the cases whose names start with
//! those. `TESTPMD` (default `target/release/testpmd`) and `DPDK_TESTPMD`
//! (default `dpdk-testpmd`) pick the binaries.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench::{env_or, plot_series, summarize, write_json, write_md, Row, Series, Summary};

struct Case {
    name: &'static str,
    /// Front-end mode and the rate it reports.
    front: &'static str,
    /// Back-end mode.
    back: &'static str,
    /// Options appended to our spec.
    ours_opts: &'static str,
    /// Devargs appended to DPDK's `net_virtio_user0`.
    dpdk_args: &'static str,
}

const CASES: [Case; 6] = [
    Case { name: "txonly/virtio-user", front: "txonly", back: "rxonly", ours_opts: "&in_order=1", dpdk_args: "" },
    Case { name: "rxonly/virtio-user", front: "rxonly", back: "txonly", ours_opts: "&in_order=1", dpdk_args: "" },
    Case { name: "io/virtio-user", front: "io", back: "io", ours_opts: "&in_order=1", dpdk_args: "" },
    Case {
        name: "txonly/virtio-user (in_order=0)",
        front: "txonly",
        back: "rxonly",
        ours_opts: "&in_order=0",
        dpdk_args: ",in_order=0",
    },
    Case {
        name: "rxonly/virtio-user (in_order=0)",
        front: "rxonly",
        back: "txonly",
        ours_opts: "&in_order=0",
        dpdk_args: ",in_order=0",
    },
    Case {
        name: "io/virtio-user (in_order=0)",
        front: "io",
        back: "io",
        ours_opts: "&in_order=0",
        dpdk_args: ",in_order=0",
    },
];

/// A child process killed (and waited for) on drop.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// 2 MB hugepages for DPDK's front end, given back on drop.
struct Hugepages(u64);

const NR: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

impl Hugepages {
    fn reserve(pages: u64) -> Hugepages {
        let before: u64 = std::fs::read_to_string(NR).expect("hugepage sysfs").trim().parse().unwrap();
        std::fs::write(NR, (before + pages).to_string()).expect("reserve hugepages (needs root)");
        let got: u64 = std::fs::read_to_string(NR).unwrap().trim().parse().unwrap();
        let g = Hugepages(before);
        assert!(got >= before + pages, "asked for {} hugepages, the kernel gave {got}", before + pages);
        g
    }
}

impl Drop for Hugepages {
    fn drop(&mut self) {
        let _ = std::fs::write(NR, self.0.to_string());
    }
}

fn pid() -> u32 {
    std::process::id()
}

// ---------------------------------------------------------------------------
// Interference: CPU time on the machine that is not the benchmark's
// ---------------------------------------------------------------------------

/// Busy ticks of all CPUs (user, nice, system, irq, softirq, steal).
fn busy_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else { return 0 };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is in user)
    [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum()
}

/// utime + stime of a process (all its threads), if it still exists.
fn proc_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ": state is field 3, utime 14, stime 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Samples every 100 ms how many CPU ticks went to anything but the
/// benchmark's processes (this one and the ones registered).
struct Meter {
    pids: Mutex<Vec<u32>>,
    /// (when, cumulative ticks of everything else).
    log: Mutex<Vec<(Instant, f64)>>,
    stop: AtomicBool,
    cpus: f64,
    hz: f64,
}

impl Meter {
    fn start() -> Arc<Meter> {
        let m = Arc::new(Meter {
            pids: Mutex::new(vec![pid()]),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2) as f64,
            // USER_HZ: 100 on every Linux we run on.
            hz: 100.0,
        });
        let me = m.clone();
        std::thread::spawn(move || {
            // Last known ticks per process: a process that exited keeps its
            // share (its ticks do not move to "everything else").
            let mut ours: HashMap<u32, u64> = HashMap::new();
            while !me.stop.load(Ordering::Relaxed) {
                let total = busy_ticks();
                for p in me.pids.lock().unwrap().iter() {
                    if let Some(t) = proc_ticks(*p) {
                        ours.insert(*p, t);
                    }
                }
                let others = total as f64 - ours.values().sum::<u64>() as f64;
                me.log.lock().unwrap().push((Instant::now(), others));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        m
    }

    fn register(&self, pid: u32) {
        self.pids.lock().unwrap().push(pid);
    }

    /// The share of all CPUs that went elsewhere between `a` and `b`.
    fn interference(&self, a: Instant, b: Instant) -> f64 {
        let log = self.log.lock().unwrap();
        let at =
            |t: Instant| log.iter().min_by_key(|(w, _)| if *w > t { *w - t } else { t - *w }).map(|&(w, v)| (w, v));
        match (at(a), at(b)) {
            (Some((wa, va)), Some((wb, vb))) if wb > wa => {
                ((vb - va) / (self.hz * self.cpus * (wb - wa).as_secs_f64())).clamp(0.0, 1.0)
            }
            _ => 1.0,
        }
    }
}

/// One per-second rate and the interference during that second.
#[derive(Clone, Copy, serde::Serialize)]
struct Sample {
    mpps: f64,
    interference: f64,
}

// ---------------------------------------------------------------------------
// The runs
// ---------------------------------------------------------------------------

/// Starts the back end on `sock` forwarding on `core`, and waits until it
/// listens and forwards.
fn back_end(bin: &str, sock: &Path, mode: &str, core: usize, main: usize, tag: &str, meter: &Meter) -> Reaper {
    let _ = std::fs::remove_file(sock);
    let mut child = Command::new("stdbuf")
        .args(["-oL", bin])
        .args(["-l", &format!("{main},{core}"), "--main-lcore", &main.to_string()])
        .args(["--no-huge", "-m", "1024", "--no-pci", "--no-shconf", "--no-telemetry"])
        .args(["--file-prefix", &format!("bench-vhost-{}-{tag}", pid()), "--log-level=lib.eal:error"])
        .args(["--log-level=lib.vhost.config:error", "--vdev"])
        .arg(format!("net_vhost0,iface={},queues=1", sock.display()))
        .args(["--", &format!("--forward-mode={mode}"), "--nb-cores=1", "--burst=32", "--total-num-mbufs=16384"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("running {bin}: {e} (install Debian's dpdk package)"));
    meter.register(child.id());
    let stdout = child.stdout.take().unwrap();
    let r = Reaper(child);
    // Read until it forwards, then keep draining its output in the background.
    let mut lines = BufReader::new(stdout).lines();
    let t0 = Instant::now();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if line.contains("Press enter to exit") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "the vhost back end did not start");
    }
    std::thread::spawn(move || for _ in lines {});
    assert!(sock.exists(), "the vhost back end made no socket at {}", sock.display());
    r
}

/// One front end's run: per-second samples and busy ns per packet
/// (`--record-core-cycles`).
type Run = (Vec<Sample>, f64);

fn ours(bin: &str, case: &Case, sock: &Path, core: usize, secs: u32, meter: &Meter) -> Run {
    let mut args = vec![
        "--port".to_string(),
        format!("virtio-user:{}?qsize=256{}", sock.display(), case.ours_opts),
        "--fwd".into(),
        case.front.into(),
        "--cores".into(),
        core.to_string(),
        "--burst".into(),
        "32".into(),
        "--rxd".into(),
        "256".into(),
        "--txd".into(),
        "256".into(),
        "--duration".into(),
        (secs + 1).to_string(),
        "--stats-period".into(),
        "1".into(),
        "--json".into(),
        "--record-core-cycles".into(),
    ];
    if case.front == "io" {
        args.push("--tx-first".into());
    }
    let t0 = Instant::now();
    let child = Command::new(bin)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    meter.register(child.id());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{bin} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from our testpmd");
    assert_eq!(v["mbufs_leaked"].as_u64(), Some(0), "our testpmd leaked buffers: {v}");
    assert_eq!(v["ports"][0]["xstats"]["tx_copies"].as_u64(), Some(0), "zero copy: {v}");
    let busy = v["core_cycles"]["busy_ns_per_packet"].as_f64().unwrap_or(f64::NAN);
    // Sample times are from the start of forwarding, a little after the
    // process started: close enough for second-long windows.
    let samples = v["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter_map(|s| Some((s["t_s"].as_f64()?, s["forward_pps"].as_f64()?)))
        .skip(1)
        .map(|(t, pps)| {
            let end = t0 + Duration::from_secs_f64(t);
            let start = end.checked_sub(Duration::from_secs(1)).unwrap_or(t0);
            Sample { mpps: pps / 1e6, interference: meter.interference(start, end) }
        })
        .collect();
    (samples, busy)
}

fn dpdk(bin: &str, case: &Case, sock: &Path, core: usize, main: usize, secs: u32, meter: &Meter) -> Run {
    let mut args = vec![
        "-l".to_string(),
        format!("{main},{core}"),
        "--main-lcore".into(),
        main.to_string(),
        "--in-memory".into(),
        "--single-file-segments".into(),
        "-m".into(),
        "512".into(),
        "--no-pci".into(),
        "--no-telemetry".into(),
        "--file-prefix".into(),
        format!("bench-vu-{}", pid()),
        "--log-level=lib.eal:error".into(),
        "--vdev".into(),
        format!("net_virtio_user0,path={},queue_size=256{}", sock.display(), case.dpdk_args),
        "--".into(),
        format!("--forward-mode={}", case.front),
        "--nb-cores=1".into(),
        "--burst=32".into(),
        "--rxd=256".into(),
        "--txd=256".into(),
        "--stats-period".into(),
        "1".into(),
        "--total-num-mbufs=16384".into(),
        "--record-core-cycles".into(),
    ];
    if case.front == "io" {
        args.push("--tx-first".into());
    }
    let mut child = bench::spawn_line_buffered(bin, &args).unwrap_or_else(|e| panic!("running {bin}: {e}"));
    meter.register(child.id());
    let stdout = child.stdout.take().unwrap();
    let mut r = Reaper(child);
    let key = if case.front == "rxonly" { "Rx-pps:" } else { "Tx-pps:" };
    let deadline = Instant::now() + Duration::from_secs(secs as u64 + 60);
    let mut samples = Vec::new();
    let mut last = Instant::now();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if let Some(rest) = line.trim().strip_prefix(key) {
            if let Some(v) = rest.split_whitespace().next().and_then(|x| x.parse::<f64>().ok()) {
                // Printed as each second ends (line-buffered output).
                let now = Instant::now();
                let start = now.checked_sub(Duration::from_secs(1)).unwrap_or(last);
                samples.push(Sample { mpps: v / 1e6, interference: meter.interference(start, now) });
                last = now;
            }
        }
        if samples.len() > secs as usize || Instant::now() > deadline {
            break;
        }
    }
    let _ = Command::new("kill").args(["-INT", &r.0.id().to_string()]).status();
    // Its final statistics (with the cycles line) come as it stops.
    let tail = std::thread::spawn(move || lines.map_while(Result::ok).find_map(|l| bench::dpdk_cycles_line(&l)));
    let t0 = Instant::now();
    while r.0.try_wait().ok().flatten().is_none() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if r.0.try_wait().ok().flatten().is_none() {
        let _ = r.0.kill();
        let _ = r.0.wait();
    }
    assert!(samples.len() > secs as usize, "{bin} printed only {} throughput readings", samples.len());
    let busy = tail.join().ok().flatten().unwrap_or(f64::NAN);
    (samples.into_iter().skip(1).collect(), busy)
}

fn fmt(s: &Summary) -> String {
    format!("{:.2} ({:.2}–{:.2})", s.p50, s.p10, s.p90)
}

/// What a case's headline is made of.
struct Outcome {
    ours: Summary,
    peer: Summary,
    /// Which seconds: "quiet", "less disturbed half" or "all".
    from: String,
    /// The interference bound of those seconds.
    bound: f64,
    /// How many seconds of each side.
    n: (usize, usize),
}

/// The headline: the quiet seconds if each side has `min_quiet` of them;
/// else the seconds at or below the median interference of both sides'
/// seconds together (the same bound for both, so like is compared with
/// like); else all. Also returns the all-seconds summary.
fn outcome(o: &[Sample], d: &[Sample], quiet_max: f64, min_quiet: usize) -> (Outcome, Outcome) {
    let below = |s: &[Sample], b: f64| s.iter().filter(|x| x.interference <= b).map(|x| x.mpps).collect::<Vec<_>>();
    let make = |v: (Vec<f64>, Vec<f64>), from: &str, bound: f64| Outcome {
        ours: summarize(&v.0, 1000.0),
        peer: summarize(&v.1, 1000.0),
        from: from.into(),
        bound,
        n: (v.0.len(), v.1.len()),
    };
    let all = make((below(o, 1.0), below(d, 1.0)), "all", 1.0);
    let quiet = (below(o, quiet_max), below(d, quiet_max));
    if quiet.0.len() >= min_quiet && quiet.1.len() >= min_quiet {
        return (make(quiet, "quiet", quiet_max), all);
    }
    let mut pooled: Vec<f64> = o.iter().chain(d).map(|x| x.interference).collect();
    pooled.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = pooled.get(pooled.len() / 2).copied().unwrap_or(1.0);
    let half = (below(o, median), below(d, median));
    if half.0.len() >= min_quiet && half.1.len() >= min_quiet {
        return (make(half, "less disturbed half", median), all);
    }
    let head = make((below(o, 1.0), below(d, 1.0)), "all", 1.0);
    (head, all)
}

fn main() {
    let rounds: u32 = env_or("BENCH_ROUNDS", 10);
    let secs: u32 = env_or("BENCH_SECS", 3);
    let quiet_max: f64 = env_or("BENCH_QUIET", 0.03);
    let min_quiet: usize = env_or("BENCH_MIN_QUIET", 8);
    let cores = pmd::runtime::available_cores();
    let core: usize = env_or("BENCH_CORE", *cores.last().expect("a core"));
    let other = cores.iter().copied().find(|&c| c != core).unwrap_or(core);
    let ours_bin = std::env::var("TESTPMD").unwrap_or_else(|_| "target/release/testpmd".into());
    let dpdk_bin = std::env::var("DPDK_TESTPMD").unwrap_or_else(|_| "dpdk-testpmd".into());
    let dir = std::env::temp_dir().join(format!("bench-virtio-{}", pid()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("vhost.sock");
    let _huge = Hugepages::reserve(320);
    let meter = Meter::start();
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let mut rows = Vec::new();
    let mut md_rows = Vec::new();
    let mut cpu_rows = Vec::new();
    let mut cpu_rows_json = Vec::new();
    let c2c = bench::core_to_core_ns((other, core));
    let mut series = Vec::new();
    let mut detail = serde_json::Map::new();
    let only: Option<Vec<String>> =
        std::env::var("BENCH_CASES").ok().map(|v| v.split(',').map(|c| c.trim().to_string()).collect());
    let wanted = |c: &Case| match &only {
        None => true,
        Some(o) => o.iter().any(|p| c.name.starts_with(p.as_str())),
    };
    let mut interference_all = Vec::new();
    for case in CASES.iter().filter(|c| wanted(c)) {
        let (mut o, mut d) = (Vec::new(), Vec::new());
        let (mut oc, mut dc) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            // Back end forwards on `other`, front end on `core`; main lcores on
            // the other core of each (they sleep between stats). Who goes first
            // alternates.
            for side in if r % 2 == 0 { ["ours", "dpdk"] } else { ["dpdk", "ours"] } {
                eprintln!("virtio: {} round {}/{rounds}: {side}", case.name, r + 1);
                let mut be = back_end(&dpdk_bin, &sock, case.back, other, core, &format!("{side}{r}"), &meter);
                if side == "ours" {
                    let (v, c) = ours(&ours_bin, case, &sock, core, secs, &meter);
                    o.extend(v);
                    oc.push(c);
                } else {
                    let (v, c) = dpdk(&dpdk_bin, case, &sock, core, other, secs, &meter);
                    d.extend(v);
                    dc.push(c);
                }
                let _ = be.0.stdin.take().map(|mut s| s.write_all(b"\n"));
            }
        }
        interference_all.extend(o.iter().chain(&d).map(|s| s.interference));
        let (head, all) = outcome(&o, &d, quiet_max, min_quiet);
        eprintln!(
            "virtio: {}: ours {} Mpps, dpdk {} Mpps ({}); all seconds: ours {}, dpdk {}",
            case.name,
            fmt(&head.ours),
            fmt(&head.peer),
            head.from,
            fmt(&all.ours),
            fmt(&all.peer)
        );
        let row = Row::new(case.name, "Mpps", "higher", head.ours.p50, "dpdk-testpmd", head.peer.p50);
        md_rows.push(format!(
            "| {} | {} | {} | **{:.2}** | {} (<= {:.0} %) | {} / {} | {} | {} | {:.2} |",
            case.name,
            fmt(&head.ours),
            fmt(&head.peer),
            row.ratio,
            head.from,
            head.bound * 100.0,
            head.n.0,
            head.n.1,
            fmt(&all.ours),
            fmt(&all.peer),
            all.ours.p50 / all.peer.p50,
        ));
        detail.insert(
            case.name.to_string(),
            serde_json::json!({
                "headline_from": head.from,
                "headline_max_interference": head.bound,
                "ours": head.ours, "peer": head.peer,
                "ours_all": all.ours, "peer_all": all.peer,
                "ours_samples": o, "peer_samples": d,
                "ours_busy_ns_per_pkt": oc, "peer_busy_ns_per_pkt": dc,
            }),
        );
        let med = |v: &[f64]| {
            let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let cpu_row =
            Row::new(&format!("{} cpu", case.name), "busy ns/pkt", "lower", med(&oc), "dpdk-testpmd", med(&dc));
        cpu_rows.push(format!(
            "| {} | {:.2} | {:.2} | {:.2} |",
            case.name, cpu_row.ours, cpu_row.peer_value, cpu_row.ratio
        ));
        cpu_rows_json.push(cpu_row);
        if !case.name.contains("in_order=0") {
            // Sorted per-second rates: the spread of each side at a glance.
            for (side, s) in [("ours", &o), ("dpdk", &d)] {
                let mut v: Vec<f64> = s.iter().map(|x| x.mpps).collect();
                v.sort_by(|a, b| a.partial_cmp(b).unwrap());
                let n = v.len().max(1) as f64;
                series.push(Series {
                    label: format!("{} {side}", case.name),
                    points: v.iter().enumerate().map(|(i, y)| ((i as f64 + 0.5) / n, *y)).collect(),
                });
            }
        }
        rows.push(row);
    }
    rows.extend(cpu_rows_json);
    meter.stop.store(true, Ordering::Relaxed);
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let dpdk_version = bench::command_line("pkg-config", &["--modversion", "libdpdk"]);
    interference_all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let quiet_share =
        interference_all.iter().filter(|&&x| x <= quiet_max).count() as f64 / interference_all.len().max(1) as f64;
    let median_interference = interference_all.get(interference_all.len() / 2).copied().unwrap_or(0.0);
    let env = serde_json::json!({
        "cpu": bench::cpu_model(),
        "kernel": bench::command_line("uname", &["-r"]),
        "dpdk": dpdk_version,
        "front_end_core": core,
        "back_end_core": other,
        "rounds": rounds,
        "seconds_per_round": secs,
        "quiet_max_interference": quiet_max,
        "min_quiet_seconds": min_quiet,
        "quiet_share": quiet_share,
        "median_interference": median_interference,
        "loadavg_before": load_before.trim(),
        "loadavg_after": load_after.trim(),
    });
    let json = write_json(
        "virtio",
        &rows,
        serde_json::json!({
            "cpu_model": bench::cpu_model(), "core_to_core_ns": bench::round3(c2c), "env": env, "detail": detail,
        }),
    );
    let svg = plot_series(
        "virtio",
        "virtio-user front ends on dpdk-testpmd's vhost back end: per-second rates, sorted",
        "quantile",
        "Mpps",
        &series,
    );
    let md = format!(
        "# virtio: our virtio-user vs DPDK's net_virtio_user, same vhost-user back end\n\n\
         Mpps, median of per-second rates (p10–p90 in brackets); {rounds} alternating rounds of {secs} s per side \
         (who goes first alternates), first second of each dropped. Headline (*from*): the seconds in which at most \
         {:.0} % of the two CPUs went to anything else (*quiet*), when each side has at least {min_quiet} of them; \
         else the seconds of each side at or below the median interference of all seconds of the case (*less \
         disturbed half*, the same bound for both sides); else all seconds. Target: ratio >= 0.9.\n\n\
         | case | ours (testpmd, virtio-user:) | dpdk-testpmd {dpdk_version} net_virtio_user | ratio | from (interference) | \
         seconds (ours / dpdk) | ours, all s | dpdk, all s | ratio, all s |\n\
         |---|---|---|---|---|---|---|---|---|\n{}\n\n\
         CPU cost per packet of the front ends (lower is better): the forwarding core's busy cycles (polls that \
         moved frames) over its packets, both with `--record-core-cycles`, median of the rounds (all seconds).\n\n\
         | case | ours (busy ns/pkt) | dpdk-testpmd (busy ns/pkt) | ratio |\n|---|---|---|---|\n{}\n\n\
         - Machine during the run: load average {} before, {} after; {:.0} % of the seconds were quiet, median \
         interference {:.1} % of the two CPUs.\n\
         - CPU: {} (2 vCPUs, shared VM), kernel {}; front end forwards on core {core}, back end on core {other}; \
         core-to-core cache-line latency {c2c:.0} ns one way (between them, at the start).\n\
         - back end (fresh per run): `dpdk-testpmd -l {core},{other} --main-lcore {core} --no-huge -m 1024 --no-pci \
         --vdev net_vhost0,iface=SOCK,queues=1 -- --forward-mode=rxonly|txonly|io --nb-cores=1 --burst=32`\n\
         - ours: `target/release/testpmd --port 'virtio-user:SOCK?qsize=256&in_order=1|0' --fwd txonly|rxonly|io \
         --cores {core} --burst 32 --rxd 256 --txd 256 --stats-period 1 --json --record-core-cycles [--tx-first]` (memfd pool, no \
         hugepages)\n\
         - DPDK: `dpdk-testpmd -l {other},{core} --main-lcore {other} --in-memory --single-file-segments -m 512 \
         --no-pci --vdev net_virtio_user0,path=SOCK,queue_size=256[,in_order=0] -- --forward-mode=txonly|rxonly|io \
         --nb-cores=1 --burst=32 --rxd=256 --txd=256 --stats-period 1 --record-core-cycles [--tx-first]` (2 MB hugepages: DPDK's \
         virtio-user can only share hugepage memory with the back end). Both sides negotiate VIRTIO_F_IN_ORDER \
         in the first three rows (both defaults) and neither does in the `(in_order=0)` rows.\n\
         - Plot: [`virtio.svg`](virtio.svg) (sorted per-second rates of the first three cases). Raw samples with \
         their interference: [`virtio.json`](virtio.json).\n\
         - Reproduce: `scripts/bench.sh virtio` (env BENCH_ROUNDS, BENCH_SECS, BENCH_QUIET, BENCH_MIN_QUIET, \
         BENCH_CASES, BENCH_CORE).\n",
        quiet_max * 100.0,
        md_rows.join("\n"),
        cpu_rows.join("\n"),
        load_before.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        load_after.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        quiet_share * 100.0,
        median_interference * 100.0,
        bench::cpu_model(),
        bench::command_line("uname", &["-r"]),
    );
    let mdp = write_md("virtio", &md);
    println!("{md}");
    eprintln!("wrote {}, {}, {}", json.display(), mdp.display(), svg.display());
}
