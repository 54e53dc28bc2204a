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
//!   burst (`--tx-first`); front-end forwarding rate (a round-trip-bound loop);
//! * `io/virtio-user (dpdk in_order=0)`: the same against DPDK's front end
//!   without `VIRTIO_F_IN_ORDER` (which ours does not implement).
//!
//! DPDK's virtio-user must share its own buffers with the back end by file
//! descriptor, which EAL only does for hugepage memory: its front end runs with
//! `--in-memory --single-file-segments` on 2 MB hugepages reserved here (and
//! released at the end). Ours needs none: its pool is a memfd.
//!
//! Each side runs `BENCH_ROUNDS` times (default 5), alternating, for
//! `BENCH_SECS` seconds (default 4), reporting a rate every second; the first
//! second is dropped and the samples go into an hdrhistogram; the headline is
//! the median. Target: ours >= 0.9 x DPDK's. `BENCH_CASES` (e.g. `io,txonly`)
//! runs only some cases; `BENCH_DPDK_VDEV` appends devargs to DPDK's vdev (e.g.
//! `,in_order=0`). `TESTPMD` (default
//! `target/release/testpmd`) and `DPDK_TESTPMD` (default `dpdk-testpmd`) pick
//! the binaries.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bench::{env_or, plot_series, summarize, write_json, write_md, Row, Series, Summary};

struct Case {
    name: &'static str,
    /// Front-end mode and the rate it reports.
    front: &'static str,
    /// Back-end mode.
    back: &'static str,
    /// Devargs appended to DPDK's `net_virtio_user0` for this case.
    dpdk_args: &'static str,
}

const CASES: [Case; 4] = [
    Case { name: "txonly/virtio-user", front: "txonly", back: "rxonly", dpdk_args: "" },
    Case { name: "rxonly/virtio-user", front: "rxonly", back: "txonly", dpdk_args: "" },
    Case { name: "io/virtio-user", front: "io", back: "io", dpdk_args: "" },
    // The same loop against DPDK without VIRTIO_F_IN_ORDER, which we do not
    // implement: the like-for-like comparison of the ring code.
    Case { name: "io/virtio-user (dpdk in_order=0)", front: "io", back: "io", dpdk_args: ",in_order=0" },
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

/// Starts the back end on `sock` forwarding on `core`, and waits until it
/// listens and forwards.
fn back_end(bin: &str, sock: &Path, mode: &str, core: usize, main: usize, tag: &str) -> Reaper {
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

fn ours(bin: &str, case: &Case, sock: &Path, core: usize, secs: u32) -> Vec<f64> {
    let mut args = vec![
        "--port".to_string(),
        format!("virtio-user:{}?qsize=256", sock.display()),
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
    ];
    if case.front == "io" {
        args.push("--tx-first".into());
    }
    let out = Command::new(bin).args(&args).output().unwrap_or_else(|e| panic!("running {bin}: {e}"));
    assert!(out.status.success(), "{bin} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from our testpmd");
    assert_eq!(v["mbufs_leaked"].as_u64(), Some(0), "our testpmd leaked buffers: {v}");
    assert_eq!(v["ports"][0]["xstats"]["tx_copies"].as_u64(), Some(0), "zero copy: {v}");
    let samples: Vec<f64> =
        v["samples"].as_array().expect("samples").iter().filter_map(|s| s["forward_pps"].as_f64()).collect();
    samples.into_iter().skip(1).map(|p| p / 1e6).collect()
}

fn dpdk(bin: &str, case: &Case, sock: &Path, core: usize, main: usize, secs: u32) -> Vec<f64> {
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
        format!(
            "net_virtio_user0,path={},queue_size=256{}{}",
            sock.display(),
            case.dpdk_args,
            std::env::var("BENCH_DPDK_VDEV").unwrap_or_default()
        ),
        "--".into(),
        format!("--forward-mode={}", case.front),
        "--nb-cores=1".into(),
        "--burst=32".into(),
        "--rxd=256".into(),
        "--txd=256".into(),
        "--stats-period".into(),
        "1".into(),
        "--total-num-mbufs=16384".into(),
    ];
    if case.front == "io" {
        args.push("--tx-first".into());
    }
    let mut child = Command::new("stdbuf")
        .arg("-oL")
        .arg(bin)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let mut r = Reaper(child);
    let key = if case.front == "rxonly" { "Rx-pps:" } else { "Tx-pps:" };
    let deadline = Instant::now() + Duration::from_secs(secs as u64 + 60);
    let mut samples = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(rest) = line.trim().strip_prefix(key) {
            if let Some(v) = rest.split_whitespace().next().and_then(|x| x.parse::<f64>().ok()) {
                samples.push(v / 1e6);
            }
        }
        if samples.len() > secs as usize || Instant::now() > deadline {
            break;
        }
    }
    let _ = Command::new("kill").args(["-INT", &r.0.id().to_string()]).status();
    let t0 = Instant::now();
    while r.0.try_wait().ok().flatten().is_none() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(samples.len() > secs as usize, "{bin} printed only {} throughput readings", samples.len());
    samples.into_iter().skip(1).collect()
}

fn fmt(s: &Summary) -> String {
    format!("{:.2} ({:.2}–{:.2})", s.p50, s.p10, s.p90)
}

fn main() {
    // Many short alternating rounds: on a shared machine the load of others
    // changes by the second, and both sides should see the same mix of it.
    let rounds: u32 = env_or("BENCH_ROUNDS", 5);
    let secs: u32 = env_or("BENCH_SECS", 4);
    let cores = pmd::runtime::available_cores();
    let core: usize = env_or("BENCH_CORE", *cores.last().expect("a core"));
    let other = cores.iter().copied().find(|&c| c != core).unwrap_or(core);
    let ours_bin = std::env::var("TESTPMD").unwrap_or_else(|_| "target/release/testpmd".into());
    let dpdk_bin = std::env::var("DPDK_TESTPMD").unwrap_or_else(|_| "dpdk-testpmd".into());
    let dir = std::env::temp_dir().join(format!("bench-virtio-{}", pid()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("vhost.sock");
    let _huge = Hugepages::reserve(320);

    let mut rows = Vec::new();
    let mut md_rows = Vec::new();
    let mut series = Vec::new();
    let mut detail = serde_json::Map::new();
    // BENCH_CASES=txonly,io runs only the cases whose names start with those.
    let only: Option<Vec<String>> =
        std::env::var("BENCH_CASES").ok().map(|v| v.split(',').map(|c| c.trim().to_string()).collect());
    for case in CASES.iter().filter(|c| only.as_ref().is_none_or(|o| o.iter().any(|p| c.name.starts_with(p.as_str()))))
    {
        let (mut o, mut d) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            // Back end forwards on `other`, front end on `core`; main lcores on
            // the other core of each (they sleep between stats).
            eprintln!("virtio: {} round {}/{rounds}: ours", case.name, r + 1);
            {
                let mut be = back_end(&dpdk_bin, &sock, case.back, other, core, &format!("o{r}"));
                o.extend(ours(&ours_bin, case, &sock, core, secs));
                let _ = be.0.stdin.take().map(|mut s| s.write_all(b"\n"));
            }
            eprintln!("virtio: {} round {}/{rounds}: dpdk net_virtio_user", case.name, r + 1);
            {
                let mut be = back_end(&dpdk_bin, &sock, case.back, other, core, &format!("d{r}"));
                d.extend(dpdk(&dpdk_bin, case, &sock, core, other, secs));
                let _ = be.0.stdin.take().map(|mut s| s.write_all(b"\n"));
            }
        }
        let (so, sd) = (summarize(&o, 1000.0), summarize(&d, 1000.0));
        eprintln!("virtio: {}: ours {} Mpps, dpdk {} Mpps", case.name, fmt(&so), fmt(&sd));
        let row = Row::new(case.name, "Mpps", "higher", so.p50, "dpdk net_virtio_user", sd.p50);
        md_rows.push(format!(
            "| {} | {} | {} | {:.2} | {} / {} |",
            case.name,
            fmt(&so),
            fmt(&sd),
            row.ratio,
            so.n,
            sd.n
        ));
        detail.insert(
            case.name.to_string(),
            serde_json::json!({ "ours": so, "peer": sd, "ours_samples": o, "peer_samples": d }),
        );
        series.push(Series {
            label: format!("{} ours", case.name),
            points: o.iter().enumerate().map(|(i, v)| (i as f64 + 1.0, *v)).collect(),
        });
        series.push(Series {
            label: format!("{} dpdk", case.name),
            points: d.iter().enumerate().map(|(i, v)| (i as f64 + 1.0, *v)).collect(),
        });
        rows.push(row);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let dpdk_version = bench::command_line("pkg-config", &["--modversion", "libdpdk"]);
    let env = serde_json::json!({
        "cpu": bench::cpu_model(),
        "kernel": bench::command_line("uname", &["-r"]),
        "dpdk": dpdk_version,
        "front_end_core": core,
        "back_end_core": other,
        "rounds": rounds,
        "seconds_per_round": secs,
    });
    let json = write_json("virtio", &rows, serde_json::json!({ "env": env, "detail": detail }));
    let svg = plot_series(
        "virtio",
        "virtio-user front ends against dpdk-testpmd's vhost back end: per-second rate",
        "sample (s)",
        "Mpps",
        &series,
    );
    let md = format!(
        "# virtio: our virtio-user vs DPDK's net_virtio_user, same vhost-user back end\n\n\
         Median of per-second rates (p10–p90 in brackets), Mpps; {rounds} alternating rounds of {secs} s per \
         side, first second of each dropped. Target: ratio >= 0.9.\n\n\
         | case | ours (testpmd, virtio-user:) | dpdk-testpmd {dpdk_version} net_virtio_user | ratio | samples |\n\
         |---|---|---|---|---|\n{}\n\n\
         - CPU: {} (2 vCPUs, shared VM), kernel {}; front end forwards on core {core}, back end on core {other}.\n\
         - back end (fresh per run): `dpdk-testpmd -l {core},{other} --main-lcore {core} --no-huge -m 1024 --no-pci \
         --vdev net_vhost0,iface=SOCK,queues=1 -- --forward-mode=rxonly|txonly|io --nb-cores=1 --burst=32`\n\
         - ours: `target/release/testpmd --port virtio-user:SOCK?qsize=256 --fwd txonly|rxonly|io --cores {core} \
         --burst 32 --rxd 256 --txd 256 --stats-period 1 --json [--tx-first]` (memfd pool, no hugepages)\n\
         - DPDK: `dpdk-testpmd -l {other},{core} --main-lcore {other} --in-memory --single-file-segments -m 512 \
         --no-pci --vdev net_virtio_user0,path=SOCK,queue_size=256[,in_order=0] -- --forward-mode=txonly|rxonly|io \
         --nb-cores=1 --burst=32 --rxd=256 --txd=256 --stats-period 1 [--tx-first]` (2 MB hugepages: DPDK's \
         virtio-user can only share hugepage memory with the back end); its defaults negotiate IN_ORDER, \
         which we do not implement.\n\
         - Plot: [`virtio.svg`](virtio.svg). Raw samples: [`virtio.json`](virtio.json).\n\
         - Reproduce: `scripts/bench.sh virtio` (env BENCH_ROUNDS, BENCH_SECS, BENCH_CORE).\n",
        md_rows.join("\n"),
        bench::cpu_model(),
        bench::command_line("uname", &["-r"]),
    );
    let mdp = write_md("virtio", &md);
    println!("{md}");
    eprintln!("wrote {}, {}, {}", json.display(), mdp.display(), svg.display());
}
