//! The io-forwarding comparison shared by `pmd_fwd` and `dpdk_fwd`: our
//! `testpmd --fwd io` against `dpdk-testpmd` in io mode, one forwarding core
//! each, on the same core, in the same run.
//!
//! Each side runs `BENCH_ROUNDS` times (default 3), alternating, for
//! `BENCH_SECS` seconds (default 6); both report a forwarding rate every second
//! (`--stats-period 1`), the first second is dropped as warm-up, and the
//! per-second samples go into an hdrhistogram. The headline is the median
//! per-second rate. `BENCH_CORE` picks the forwarding core (default the last
//! available), `TESTPMD` our binary (default `target/release/testpmd`),
//! `DPDK_TESTPMD` the peer (default `dpdk-testpmd`). `BENCH_CASES` (comma-
//! separated case names) runs only those and prints them without writing the
//! results files: a quick A/B while working, never a result to quote.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{env_or, plot_series, summarize, write_json, write_md, Row, Series, Summary};

/// One case: our port spec and the peer's vdev.
pub struct Case {
    /// Case name in the results, e.g. `io/null`.
    pub name: &'static str,
    /// Our testpmd's `--port`.
    pub ours_port: &'static str,
    /// dpdk-testpmd's `--vdev`.
    pub vdev: &'static str,
    /// Seed the loop with one burst (`--tx-first`), for ring loopbacks.
    pub tx_first: bool,
}

/// What differs between the benchmarks built on this.
pub struct IoFwd {
    /// Benchmark name (results file names).
    pub name: &'static str,
    /// The cases.
    pub cases: &'static [Case],
    /// Extra arguments for our testpmd, given the EAL main core.
    pub ours_extra: fn(main_core: usize) -> Vec<String>,
    /// Title of the plot.
    pub plot_title: &'static str,
    /// Markdown heading and intro, given (rounds, secs).
    pub md_intro: fn(u32, u32) -> String,
    /// Header of our column in the table.
    pub ours_column: &'static str,
    /// Markdown bullets with the exact commands, given (core, main core).
    pub md_commands: fn(usize, usize) -> String,
}

/// dpdk-testpmd's main lcore, and the EAL main core of ours: any core but the
/// forwarding one.
pub fn main_core(core: usize) -> usize {
    pmd::runtime::available_cores().into_iter().find(|&c| c != core).unwrap_or(core)
}

fn ours(bin: &str, case: &Case, core: usize, secs: u32, extra: &[String]) -> Result<Vec<f64>, String> {
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
    ];
    args.extend(extra.iter().cloned());
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

/// Runs every case and writes `bench/results/NAME.{json,md,svg}`.
pub fn run(b: &IoFwd) {
    let rounds: u32 = env_or("BENCH_ROUNDS", 3);
    let secs: u32 = env_or("BENCH_SECS", 6);
    let core: usize = env_or("BENCH_CORE", *pmd::runtime::available_cores().last().expect("a core"));
    let ours_bin = std::env::var("TESTPMD").unwrap_or_else(|_| "target/release/testpmd".into());
    let dpdk_bin = std::env::var("DPDK_TESTPMD").unwrap_or_else(|_| "dpdk-testpmd".into());
    let extra = (b.ours_extra)(main_core(core));

    let mut rows = Vec::new();
    let mut md_rows = Vec::new();
    let mut series = Vec::new();
    let mut detail = serde_json::Map::new();
    let only: Option<Vec<String>> =
        std::env::var("BENCH_CASES").ok().map(|v| v.split(',').map(|c| c.trim().to_string()).collect());
    for case in b.cases {
        if only.as_ref().is_some_and(|o| !o.iter().any(|c| c == case.name)) {
            continue;
        }
        let (mut o, mut d) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            eprintln!("{}: {} round {}/{rounds}: ours", b.name, case.name, r + 1);
            o.extend(ours(&ours_bin, case, core, secs, &extra).unwrap_or_else(|e| panic!("{e}")));
            eprintln!("{}: {} round {}/{rounds}: dpdk-testpmd", b.name, case.name, r + 1);
            d.extend(dpdk(&dpdk_bin, case, core, secs).unwrap_or_else(|e| panic!("{e}")));
        }
        let (so, sd) = (summarize(&o, 1000.0), summarize(&d, 1000.0));
        eprintln!(
            "{}: {}: ours {} Mpps, dpdk {} Mpps, ratio {:.3}",
            b.name,
            case.name,
            fmt(&so),
            fmt(&sd),
            so.p50 / sd.p50
        );
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
    if only.is_some() {
        eprintln!("{}: BENCH_CASES set: results printed above, files not written", b.name);
        return;
    }
    let dpdk_version = crate::command_line("pkg-config", &["--modversion", "libdpdk"]);
    let env = serde_json::json!({
        "cpu": crate::cpu_model(),
        "kernel": crate::command_line("uname", &["-r"]),
        "dpdk": dpdk_version,
        "forwarding_core": core,
        "rounds": rounds,
        "seconds_per_round": secs,
    });
    let json = write_json(b.name, &rows, serde_json::json!({ "env": env, "detail": detail }));
    let svg = plot_series(b.name, b.plot_title, "sample (s)", "Mpps", &series);
    let md = format!(
        "{}\n\n| case | {} | dpdk-testpmd {dpdk_version} | ratio | samples |\n|---|---|---|---|---|\n{}\n\n\
         - CPU: {} (2 vCPUs, shared VM), kernel {}; forwarding core {core}.\n{}\
         - Plot: [`{n}.svg`]({n}.svg). Raw samples: [`{n}.json`]({n}.json).\n\
         - Reproduce: `scripts/bench.sh {n}` (env BENCH_ROUNDS, BENCH_SECS, BENCH_CORE).\n",
        (b.md_intro)(rounds, secs),
        b.ours_column,
        md_rows.join("\n"),
        crate::cpu_model(),
        crate::command_line("uname", &["-r"]),
        (b.md_commands)(core, main_core(core)),
        n = b.name,
    );
    let mdp = write_md(b.name, &md);
    println!("{md}");
    eprintln!("wrote {}, {}, {}", json.display(), mdp.display(), svg.display());
}
