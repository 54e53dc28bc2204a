//! Shared pieces of the benchmark drivers: sample summaries (hdrhistogram), the
//! results files every benchmark writes (`bench/results/NAME.{json,md,svg}`), and
//! small process helpers.
//!
//! Every benchmark measures a peer in the same run (DPDK's testpmd, the kernel,
//! haproxy) and reports ours/peer, so the shared, noisy machine affects both sides.

pub mod io_fwd;

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::Serialize;

/// An environment variable parsed as `T`, or `default`.
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Percentiles of a set of samples.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub n: u64,
    /// Smallest.
    pub min: f64,
    /// 10th percentile.
    pub p10: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

/// Summarises samples with an hdrhistogram. `scale` converts a sample to the
/// integer unit recorded (e.g. 1000.0 records Mpps with 3 decimals).
pub fn summarize(samples: &[f64], scale: f64) -> Summary {
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for s in samples {
        h.record((s * scale).max(0.0).round() as u64).expect("record");
    }
    let q = |p: f64| h.value_at_quantile(p) as f64 / scale;
    Summary {
        n: h.len(),
        min: h.min() as f64 / scale,
        p10: q(0.10),
        p50: q(0.50),
        p90: q(0.90),
        p99: q(0.99),
        p999: q(0.999),
        max: h.max() as f64 / scale,
    }
}

/// One row of `bench/results/NAME.json` (format in DEVELOPERS.md).
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Case name, e.g. `io/null`.
    pub case: String,
    /// Unit, e.g. `Mpps`.
    pub metric: String,
    /// `higher` or `lower`.
    pub better: String,
    /// Our value.
    pub ours: f64,
    /// The peer's name.
    pub peer: String,
    /// The peer's value.
    pub peer_value: f64,
    /// ours / peer_value.
    pub ratio: f64,
}

impl Row {
    /// A row; the ratio is computed.
    pub fn new(case: &str, metric: &str, better: &str, ours: f64, peer: &str, peer_value: f64) -> Row {
        let ratio = if peer_value != 0.0 { ours / peer_value } else { f64::NAN };
        Row {
            case: case.into(),
            metric: metric.into(),
            better: better.into(),
            ours: round3(ours),
            peer: peer.into(),
            peer_value: round3(peer_value),
            ratio: round3(ratio),
        }
    }
}

/// Rounds to three decimals for readable results files.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The repository's `bench/results` directory.
pub fn results_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&dir).expect("create bench/results");
    dir
}

/// Writes `NAME.json` with `rows` (plus `extra` fields at the top level).
pub fn write_json(name: &str, rows: &[Row], extra: serde_json::Value) -> PathBuf {
    let mut v = serde_json::json!({ "bench": name, "rows": rows });
    if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    let path = results_dir().join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&v).expect("json") + "\n").expect("write json");
    path
}

/// Writes `NAME.md`.
pub fn write_md(name: &str, text: &str) -> PathBuf {
    let path = results_dir().join(format!("{name}.md"));
    std::fs::write(&path, text).expect("write md");
    path
}

/// A line series for [`plot_series`].
pub struct Series {
    /// Legend label.
    pub label: String,
    /// (x, y) points.
    pub points: Vec<(f64, f64)>,
}

/// Plots series (e.g. per-second rates of ours and the peer) into `NAME.svg`.
pub fn plot_series(name: &str, title: &str, x_desc: &str, y_desc: &str, series: &[Series]) -> PathBuf {
    let path = results_dir().join(format!("{name}.svg"));
    let xmax = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(1.0, f64::max);
    let ymax = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(1.0, f64::max) * 1.15;
    let svg_path = path.clone();
    let root = SVGBackend::new(&svg_path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).expect("fill");
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)
        .expect("chart");
    chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().expect("mesh");
    let palette = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    for (i, s) in series.iter().enumerate() {
        let color = palette[i % palette.len()];
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
            .expect("series")
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().expect("legend");
    root.present().expect("svg");
    drop(chart);
    drop(root);
    path
}

/// Starts `bin args` with its stdout line-buffered (`stdbuf -oL`: DPDK's
/// testpmd writes its per-second stats through stdio, which a pipe would
/// hold back in blocks) and piped to us; stderr is discarded.
pub fn spawn_line_buffered(bin: &str, args: &[String]) -> std::io::Result<std::process::Child> {
    std::process::Command::new("stdbuf")
        .arg("-oL")
        .arg(bin)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
}

/// First line of a command's output, or `unknown`.
pub fn command_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// CPU model from /proc/cpuinfo.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The load average (`/proc/loadavg`'s first three fields), to note with
/// results: the machine is shared.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The one-way latency of moving a cache line between two cores (ns): two
/// pinned threads bounce a counter for 100 ms; half the mean round trip.
///
/// On a VM it depends on where the host runs the two vCPUs (on the
/// development VM it switched between about 50–80 and 200–350 ns within
/// seconds), and ratios against a peer on another host move with it, so every
/// result file names it.
pub fn core_to_core_ns(cores: (usize, usize)) -> f64 {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let ping = Arc::new(AtomicU64::new(0));
    let pong = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (ping2, pong2, stop2) = (ping.clone(), pong.clone(), stop.clone());
    let echo = std::thread::spawn(move || {
        pin(cores.1);
        let mut seen = 0;
        while !stop2.load(Ordering::Relaxed) {
            let v = ping2.load(Ordering::Acquire);
            if v != seen {
                seen = v;
                pong2.store(v, Ordering::Release);
            }
        }
    });
    let probe = std::thread::spawn(move || {
        pin(cores.0);
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_millis(100) {
            for _ in 0..256 {
                n += 1;
                ping.store(n, Ordering::Release);
                while pong.load(Ordering::Acquire) != n {
                    std::hint::spin_loop();
                }
            }
        }
        start.elapsed().as_nanos() as f64 / n as f64 / 2.0
    });
    let ns = probe.join().expect("probe thread");
    stop.store(true, Ordering::Relaxed);
    echo.join().expect("echo thread");
    ns
}

/// Pins the calling thread to `core` (as the runtime pins its lcores).
pub fn pin(core: usize) {
    core_affinity::set_for_current(core_affinity::CoreId { id: core });
}

/// Clock ticks per second of `/proc/*/stat` times (`getconf CLK_TCK`; 100 on
/// Debian).
pub fn clock_ticks() -> u64 {
    static TCK: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| command_line("getconf", &["CLK_TCK"]).trim().parse().unwrap_or(100))
}

/// utime + stime of a `/proc/.../stat` file, in nanoseconds.
fn stat_cpu_ns(path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); utime and stime are fields 14 and 15.
    let (u, s): (u64, u64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    Some((u + s) * 1_000_000_000 / clock_ticks())
}

/// CPU time (user + system) a process has used, ns (`/proc/PID/stat`; clock-tick
/// resolution, 10 ms on Debian: measure over seconds).
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    stat_cpu_ns(&format!("/proc/{pid}/stat"))
}

/// CPU time (user + system) one thread of this process has used, ns.
pub fn thread_cpu_ns(tid: u32) -> Option<u64> {
    stat_cpu_ns(&format!("/proc/self/task/{tid}/stat"))
}

/// The calling thread's id (for [`thread_cpu_ns`] from another thread).
pub fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// CPU µs per operation from nanoseconds of CPU and a count.
pub fn us_per_op(cpu_ns: f64, ops: f64) -> f64 {
    if ops > 0.0 {
        cpu_ns / 1e3 / ops
    } else {
        f64::NAN
    }
}

/// DPDK testpmd's `CPU cycles/packet=10.34 (busy cycles=... / total io
/// packets=...) at 2596 MHz Clock`, as ns per packet.
pub fn dpdk_cycles_line(line: &str) -> Option<f64> {
    let rest = line.trim().strip_prefix("CPU cycles/packet=")?;
    let cycles: f64 = rest.split_whitespace().next()?.parse().ok()?;
    let mhz: f64 = rest.split(" at ").nth(1)?.split_whitespace().next()?.parse().ok()?;
    (mhz > 0.0).then(|| cycles / mhz * 1e3)
}

/// The stack configuration of the benchmarks' two in-memory hosts: one IPv4
/// address, no offloads, neighbours that never expire within a run.
pub fn stack_config(mac: pmd::MacAddr, v4: &str, tx_backlog: usize, max_conns: usize) -> stack::StackConfig {
    stack::StackConfig { ipv4: vec![v4.parse().unwrap()], ..stack::profiles::bench(mac, tx_backlog, max_conns) }
}

/// A test of [`dpdk_cycles_line`] on dpdk-testpmd 22.11's output.
#[cfg(test)]
mod tests {
    #[test]
    fn dpdk_testpmd_cycles_line_parses() {
        let l = "  CPU cycles/packet=10.34 (busy cycles=5192570630 / total io packets=501956608) at 2596 MHz Clock";
        let ns = super::dpdk_cycles_line(l).unwrap();
        assert!((ns - 10.34 / 2596.0 * 1e3).abs() < 1e-9);
        assert_eq!(super::dpdk_cycles_line("Rx-pps: 5"), None);
    }
}
