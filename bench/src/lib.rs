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

/// The stack configuration of the benchmarks' two in-memory hosts: one IPv4
/// address, no offloads, neighbours that never expire within a run.
pub fn stack_config(mac: pmd::MacAddr, v4: &str, tx_backlog: usize, max_conns: usize) -> stack::StackConfig {
    stack::StackConfig { ipv4: vec![v4.parse().unwrap()], ..stack::profiles::bench(mac, tx_backlog, max_conns) }
}
