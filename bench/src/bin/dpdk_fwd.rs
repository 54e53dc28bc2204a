//! `scripts/bench.sh dpdk_fwd`: the cost of our Rust layer over DPDK. Our
//! `testpmd --fwd io` over `dpdk:` ports (zero-copy `Mbuf`s over DPDK's
//! `rte_mbuf`s, the Port trait, our forwarding engine and runtime) against
//! DPDK's own `dpdk-testpmd` in io mode on the same vdevs, one forwarding core
//! each, on the same core, in the same run:
//! * `io/net_null0`: `dpdk:net_null0` vs `--vdev net_null0`;
//! * `io/net_ring0`: `dpdk:net_ring0` vs `--vdev net_ring0`, both seeded with
//!   one burst (`--tx-first`).
//!
//! Both sides run EAL without hugepages (`--no-huge -m 1024 --no-pci`), the
//! main lcore on another core than the forwarding one. Each side runs `ROUNDS`
//! times, alternating, for `SECS` seconds; both report a forwarding rate every
//! second, the first second is dropped as warm-up, and the per-second samples
//! go into an hdrhistogram. The headline is the median per-second rate; the
//! target is ours >= 0.95 x dpdk-testpmd.
//!
//! Environment: `BENCH_ROUNDS` (default 3), `BENCH_SECS` (default 6),
//! `BENCH_CORE` (forwarding core, default the last available), `TESTPMD` (our
//! binary built with `--features dpdk`, default `target/release/testpmd`),
//! `DPDK_TESTPMD` (default `dpdk-testpmd`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bench::{plot_series, summarize, write_json, write_md, Row, Series, Summary};

struct Case {
    name: &'static str,
    ours_port: &'static str,
    vdev: &'static str,
    tx_first: bool,
}

const CASES: [Case; 2] = [
    Case { name: "io/net_null0", ours_port: "dpdk:net_null0", vdev: "net_null0", tx_first: false },
    Case { name: "io/net_ring0", ours_port: "dpdk:net_ring0", vdev: "net_ring0", tx_first: true },
];

/// The EAL's main lcore: any core but the forwarding one.
fn main_core(core: usize) -> usize {
    pmd::runtime::available_cores().into_iter().find(|&c| c != core).unwrap_or(core)
}

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn ours(bin: &str, case: &Case, core: usize, secs: u32) -> Result<Vec<f64>, String> {
    let mut args = vec![
        "--port".to_string(),
        case.ours_port.to_string(),
        "--fwd".into(),
        "io".into(),
        "--cores".into(),
        core.to_string(),
        "--burst".into(),
        "32".into(),
        "--duration".into(),
        (secs + 1).to_string(),
        "--stats-period".into(),
        "1".into(),
        "--json".into(),
        "--eal".into(),
        format!(
            "-l {} --no-huge -m 1024 --no-pci --no-shconf --no-telemetry --file-prefix bench-ours-{} \
             --log-level=lib.eal:error",
            main_core(core),
            std::process::id()
        ),
    ];
    if case.tx_first {
        args.push("--tx-first".into());
    }
    let out = Command::new(bin).args(&args).output().map_err(|e| format!("running {bin}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{bin} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| format!("bad JSON from {bin}: {e}"))?;
    if v["mbufs_leaked"].as_u64() != Some(0) {
        return Err(format!("{bin} leaked buffers: {v}"));
    }
    let samples: Vec<f64> = v["samples"]
        .as_array()
        .ok_or("no samples")?
        .iter()
        .filter_map(|s| s["forward_pps"].as_f64())
        .map(|pps| pps / 1e6)
        .collect();
    Ok(samples.into_iter().skip(1).collect())
}

/// Runs dpdk-testpmd until it has printed `secs + 1` throughput readings, then
/// stops it with SIGINT (its normal way out) and returns the readings after the
/// first, in Mpps.
fn dpdk(bin: &str, case: &Case, core: usize, secs: u32) -> Result<Vec<f64>, String> {
    let main_core = main_core(core);
    let mut args = vec![
        "-l".to_string(),
        format!("{main_core},{core}"),
        "--main-lcore".into(),
        main_core.to_string(),
        "--no-huge".into(),
        "-m".into(),
        "1024".into(),
        "--no-pci".into(),
        "--no-shconf".into(),
        "--no-telemetry".into(),
        "--file-prefix".into(),
        format!("bench-dpdk-{}", std::process::id()),
        "--log-level=lib.eal:error".into(),
        "--vdev".into(),
        case.vdev.into(),
        "--".into(),
        "--forward-mode=io".into(),
        "--nb-cores=1".into(),
        "--burst=32".into(),
        "--stats-period".into(),
        "1".into(),
        "--auto-start".into(),
        "--total-num-mbufs=16384".into(),
    ];
    if case.tx_first {
        args.push("--tx-first".into());
    }
    let mut child = Command::new("stdbuf")
        .arg("-oL")
        .arg(bin)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("running {bin}: {e} (install Debian's dpdk package)"))?;
    let stdout = child.stdout.take().expect("piped");
    let deadline = Instant::now() + Duration::from_secs(secs as u64 + 60);
    let mut samples = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        // "  Tx-pps:     40840624          Tx-bps:            0"
        if let Some(rest) = line.trim().strip_prefix("Tx-pps:") {
            if let Some(v) = rest.split_whitespace().next().and_then(|x| x.parse::<f64>().ok()) {
                samples.push(v / 1e6);
            }
        }
        if samples.len() > secs as usize || Instant::now() > deadline {
            break;
        }
    }
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let waited = Instant::now();
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        if waited.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if samples.len() <= secs as usize {
        return Err(format!("{bin} printed only {} throughput readings", samples.len()));
    }
    Ok(samples.into_iter().skip(1).collect())
}

fn fmt(s: &Summary) -> String {
    format!("{:.1} ({:.1}–{:.1})", s.p50, s.p10, s.p90)
}

fn main() {
    let rounds: u32 = env_or("BENCH_ROUNDS", 3);
    let secs: u32 = env_or("BENCH_SECS", 6);
    let core: usize = env_or("BENCH_CORE", *pmd::runtime::available_cores().last().expect("a core"));
    let ours_bin = std::env::var("TESTPMD").unwrap_or_else(|_| "target/release/testpmd".into());
    let dpdk_bin = std::env::var("DPDK_TESTPMD").unwrap_or_else(|_| "dpdk-testpmd".into());

    let mut rows = Vec::new();
    let mut md_rows = Vec::new();
    let mut series = Vec::new();
    let mut detail = serde_json::Map::new();
    for case in &CASES {
        let (mut o, mut d) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            eprintln!("dpdk_fwd: {} round {}/{rounds}: ours", case.name, r + 1);
            o.extend(ours(&ours_bin, case, core, secs).unwrap_or_else(|e| panic!("{e}")));
            eprintln!("dpdk_fwd: {} round {}/{rounds}: dpdk-testpmd", case.name, r + 1);
            d.extend(dpdk(&dpdk_bin, case, core, secs).unwrap_or_else(|e| panic!("{e}")));
        }
        let (so, sd) = (summarize(&o, 1000.0), summarize(&d, 1000.0));
        eprintln!("dpdk_fwd: {}: ours {} Mpps, dpdk {} Mpps", case.name, fmt(&so), fmt(&sd));
        let row = Row::new(case.name, "Mpps", "higher", so.p50, "dpdk-testpmd", sd.p50);
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
            label: format!("{} dpdk-testpmd", case.name),
            points: d.iter().enumerate().map(|(i, v)| (i as f64 + 1.0, *v)).collect(),
        });
        rows.push(row);
    }
    let dpdk_version = bench::command_line("pkg-config", &["--modversion", "libdpdk"]);
    let env = serde_json::json!({
        "cpu": bench::cpu_model(),
        "kernel": bench::command_line("uname", &["-r"]),
        "dpdk": dpdk_version,
        "forwarding_core": core,
        "rounds": rounds,
        "seconds_per_round": secs,
    });
    let json = write_json("dpdk_fwd", &rows, serde_json::json!({ "env": env, "detail": detail }));
    let svg = plot_series(
        "dpdk_fwd",
        "io forwarding over DPDK vdevs, one core: per-second rate (rounds concatenated)",
        "sample (s)",
        "Mpps",
        &series,
    );
    let md = format!(
        "# dpdk_fwd: io forwarding over DPDK vdevs on one core, our testpmd vs dpdk-testpmd\n\n\
         What the Rust layer (zero-copy Mbufs over rte_mbufs, Port trait, forwarding engine) costs on \
         top of DPDK. Median of per-second forwarding rates (p10–p90 in brackets), Mpps; \
         {rounds} alternating rounds of {secs} s per side, first second of each dropped. Target: ratio >= 0.95.\n\n\
         | case | ours (testpmd, dpdk:) | dpdk-testpmd {dpdk_version} | ratio | samples |\n\
         |---|---|---|---|---|\n{}\n\n\
         - CPU: {} (shared VM), kernel {}; forwarding core {core}, EAL main lcore {}.\n\
         - ours: `target/release/testpmd --port dpdk:net_null0|dpdk:net_ring0 --fwd io --cores {core} --burst 32 \
         --stats-period 1 --json [--tx-first] --eal \"-l M --no-huge -m 1024 --no-pci --no-shconf --no-telemetry\"` \
         (built with `--features dpdk`)\n\
         - peer: `dpdk-testpmd -l M,{core} --no-huge -m 1024 --no-pci --vdev net_null0|net_ring0 -- \
         --forward-mode=io --nb-cores=1 --burst=32 --stats-period 1 --auto-start --total-num-mbufs=16384 [--tx-first]`\n\
         - Plot: [`dpdk_fwd.svg`](dpdk_fwd.svg). Raw samples: [`dpdk_fwd.json`](dpdk_fwd.json).\n\
         - Reproduce: `scripts/bench.sh dpdk_fwd` (env BENCH_ROUNDS, BENCH_SECS, BENCH_CORE).\n",
        md_rows.join("\n"),
        bench::cpu_model(),
        bench::command_line("uname", &["-r"]),
        main_core(core),
    );
    let mdp = write_md("dpdk_fwd", &md);
    println!("{md}");
    eprintln!("wrote {}, {}, {}", json.display(), mdp.display(), svg.display());
}
