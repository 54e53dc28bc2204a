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
//!
//! The rate rounds run as before, without cycle accounting. After them, one
//! more run per side with `--record-core-cycles` (DPDK's flag; ours is the
//! same accounting, one TSC read per poll, DPDK's two per burst that
//! received: on this VM a read costs about 8 ns, a quarter of a 32-frame
//! `ring` burst, so it stays out of the rate rows): the forwarding core's
//! busy cycles over the packets it forwarded give each case a CPU-cost row
//! (busy ns per packet, lower is better), which stays meaningful where the
//! rate is limited by something else. dpdk-testpmd prints its figure when it
//! stops; its process CPU time (`/proc/PID/stat`, a spinning core counts
//! whole) over the same run is in the JSON beside it.

use std::io::{BufRead, BufReader};
use std::process::Command;
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

/// One run of one side: per-second Mpps after the first second, busy ns per
/// packet, and (the peer) process CPU ns per packet.
struct Run {
    samples: Vec<f64>,
    busy_ns_per_pkt: f64,
    cpu_ns_per_pkt: Option<f64>,
}

fn ours(bin: &str, case: &Case, core: usize, secs: u32, extra: &[String], record: bool) -> Result<Run, String> {
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
    if record {
        args.push("--record-core-cycles".into());
    }
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
    let busy_ns_per_pkt = v["core_cycles"]["busy_ns_per_packet"].as_f64().unwrap_or(f64::NAN);
    Ok(Run { samples: samples.into_iter().skip(1).collect(), busy_ns_per_pkt, cpu_ns_per_pkt: None })
}

/// Runs dpdk-testpmd until it has printed `secs + 1` throughput readings, then
/// stops it with SIGINT (its normal way out) and returns the readings after the
/// first, in Mpps.
fn dpdk(bin: &str, case: &Case, core: usize, secs: u32, record: bool, mode: &str) -> Result<Run, String> {
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
        format!("--forward-mode={mode}"),
        "--nb-cores=1".into(),
        "--burst=32".into(),
        "--stats-period".into(),
        "1".into(),
        "--auto-start".into(),
        "--total-num-mbufs=16384".into(),
    ];
    if record {
        args.push("--record-core-cycles".into());
    }
    if case.tx_first {
        args.push("--tx-first".into());
    }
    let mut child = crate::spawn_line_buffered(bin, &args)
        .map_err(|e| format!("running {bin}: {e} (install Debian's dpdk package)"))?;
    let stdout = child.stdout.take().expect("piped");
    let deadline = Instant::now() + Duration::from_secs(secs as u64 + 60);
    let mut samples = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    let pid = child.id();
    // Process CPU time from the first reading to the stop.
    let mut cpu0 = None;
    let t0 = Instant::now();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if cpu0.is_none() && line.trim().starts_with("Tx-pps:") {
            cpu0 = crate::process_cpu_ns(pid).map(|c| (c, Instant::now()));
        }
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
    let cpu1 = crate::process_cpu_ns(pid);
    let _ = t0;
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    // Its final statistics (with the cycles line) come as it stops; a thread
    // reads them so that a hung child cannot block us (killing it ends the read).
    let tail = std::thread::spawn(move || lines.map_while(Result::ok).find_map(|l| crate::dpdk_cycles_line(&l)));
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
    let busy_ns_per_pkt = tail.join().ok().flatten().unwrap_or_else(|| {
        if record {
            eprintln!("{bin} printed no CPU cycles/packet line");
        }
        f64::NAN
    });
    // Packets over the CPU-time interval: the readings after the first one.
    let cpu_ns_per_pkt = match (cpu0, cpu1) {
        (Some((c0, _)), Some(c1)) => {
            let pkts: f64 = samples.iter().skip(1).sum::<f64>() * 1e6;
            (pkts > 0.0).then(|| c1.saturating_sub(c0) as f64 / pkts)
        }
        _ => None,
    };
    Ok(Run { samples: samples.into_iter().skip(1).collect(), busy_ns_per_pkt, cpu_ns_per_pkt })
}

/// dpdk-testpmd in forwarding mode `mode` (`io`, `macswap`, ..) on `vdev`
/// with its forwarding lcore on `core`: the per-second Mpps readings after
/// the first (the peer of benchmarks outside this module, e.g. `l4fwd`).
pub fn dpdk_testpmd(
    bin: &str,
    vdev: &'static str,
    tx_first: bool,
    mode: &str,
    core: usize,
    secs: u32,
) -> Result<Vec<f64>, String> {
    let case = Case { name: "", ours_port: "", vdev, tx_first };
    dpdk(bin, &case, core, secs, false, mode).map(|r| r.samples)
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
    let mut cpu_rows = Vec::new();
    let load_before = crate::load_average();
    let c2c = crate::core_to_core_ns((main_core(core), core));
    let mut series = Vec::new();
    let mut detail = serde_json::Map::new();
    let only: Option<Vec<String>> =
        std::env::var("BENCH_CASES").ok().map(|v| v.split(',').map(|c| c.trim().to_string()).collect());
    for case in b.cases {
        if only.as_ref().is_some_and(|o| !o.iter().any(|c| c == case.name)) {
            continue;
        }
        let (mut o, mut d) = (Vec::new(), Vec::new());
        let (mut oc, mut dc, mut dp) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..rounds {
            eprintln!("{}: {} round {}/{rounds}: ours", b.name, case.name, r + 1);
            o.extend(ours(&ours_bin, case, core, secs, &extra, false).unwrap_or_else(|e| panic!("{e}")).samples);
            eprintln!("{}: {} round {}/{rounds}: dpdk-testpmd", b.name, case.name, r + 1);
            d.extend(dpdk(&dpdk_bin, case, core, secs, false, "io").unwrap_or_else(|e| panic!("{e}")).samples);
        }
        // CPU cost: one more run per side, recording core cycles.
        eprintln!("{}: {}: ours and dpdk-testpmd with --record-core-cycles", b.name, case.name);
        let ro = ours(&ours_bin, case, core, secs, &extra, true).unwrap_or_else(|e| panic!("{e}"));
        let rd = dpdk(&dpdk_bin, case, core, secs, true, "io").unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "{}: {}: busy ns/pkt ours {:.3}, dpdk-testpmd {:.3} (process CPU {:?} ns/pkt)",
            b.name, case.name, ro.busy_ns_per_pkt, rd.busy_ns_per_pkt, rd.cpu_ns_per_pkt
        );
        oc.push(ro.busy_ns_per_pkt);
        dc.push(rd.busy_ns_per_pkt);
        dp.extend(rd.cpu_ns_per_pkt);
        let med = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let (ocm, dcm) = (med(&oc), med(&dc));
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
            serde_json::json!({
                "ours": so, "peer": sd, "ours_samples": o, "peer_samples": d,
                "ours_busy_ns_per_pkt": oc, "peer_busy_ns_per_pkt": dc, "peer_process_cpu_ns_per_pkt": dp,
            }),
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
        let cpu_row = Row::new(&format!("{} cpu", case.name), "busy ns/pkt", "lower", ocm, "dpdk-testpmd", dcm);
        cpu_rows.push(format!(
            "| {} | {:.3} | {:.3} | {:.3} | {} |",
            case.name,
            ocm,
            dcm,
            cpu_row.ratio,
            if dp.is_empty() { "–".to_string() } else { format!("{:.3}", med(&dp)) }
        ));
        rows.push(cpu_row);
    }
    if only.is_some() {
        eprintln!("{}: BENCH_CASES set: results printed above, files not written", b.name);
        return;
    }
    let dpdk_version = crate::command_line("pkg-config", &["--modversion", "libdpdk"]);
    let load_after = crate::load_average();
    let env = serde_json::json!({
        "cpu": crate::cpu_model(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "kernel": crate::command_line("uname", &["-r"]),
        "dpdk": dpdk_version,
        "forwarding_core": core,
        "rounds": rounds,
        "seconds_per_round": secs,
    });
    let json = write_json(
        b.name,
        &rows,
        serde_json::json!({
            "cpu_model": crate::cpu_model(), "core_to_core_ns": crate::round3(c2c), "env": env, "detail": detail,
        }),
    );
    let svg = plot_series(b.name, b.plot_title, "sample (s)", "Mpps", &series);
    let md = format!(
        "{}\n\n| case | {} | dpdk-testpmd {dpdk_version} | ratio | samples |\n|---|---|---|---|---|\n{}\n\n\
         CPU cost per packet (lower is better): the forwarding core's busy cycles (polls that received) over \
         the packets forwarded, in one more run per side with `--record-core-cycles` (the rate rows run without \
         it: a TSC read per poll costs about 8 ns here); dpdk-testpmd's \
         own process CPU time (`/proc/PID/stat`, its spinning core counts whole) per packet beside it.\n\n\
         | case | ours (busy ns/pkt) | dpdk-testpmd (busy ns/pkt) | ratio | dpdk-testpmd process CPU ns/pkt |\n\
         |---|---|---|---|---|\n{}\n\n\
         - CPU: {} (2 vCPUs, shared VM), kernel {}; forwarding core {core}; core-to-core cache-line latency \
         {c2c:.0} ns one way (forwarding core to the main core); load average {load_before} before, {load_after} \
         after.\n{}\
         - Plot: [`{n}.svg`]({n}.svg). Raw samples: [`{n}.json`]({n}.json).\n\
         - Reproduce: `scripts/bench.sh {n}` (env BENCH_ROUNDS, BENCH_SECS, BENCH_CORE).\n",
        (b.md_intro)(rounds, secs),
        b.ours_column,
        md_rows.join("\n"),
        cpu_rows.join("\n"),
        crate::cpu_model(),
        crate::command_line("uname", &["-r"]),
        (b.md_commands)(core, main_core(core)),
        n = b.name,
    );
    let mdp = write_md(b.name, &md);
    println!("{md}");
    eprintln!("wrote {}, {}, {}", json.display(), mdp.display(), svg.display());
}
