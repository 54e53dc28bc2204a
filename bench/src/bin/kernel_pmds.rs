//! `scripts/bench.sh kernel_pmds`: rxonly and txonly Mpps of our `tap`,
//! `af_packet` and `af_xdp` drivers (and io for `af_xdp`) against
//! `dpdk-testpmd`'s `net_tap`, `net_af_packet` and `net_af_xdp` on
//! the same kind of interface, in the same run, with the kernel side generating
//! or sinking traffic the same way for both.
//!
//! Everything runs inside one network namespace made by `scripts/testbed.sh`
//! (`k0 <-> p0` veth pair; addresses from 198.18.0.0/15 only) and removed at the
//! end, also on failure.
//! * `txonly/af_packet`: the port on `p0` sends 64-byte UDP frames; they cross
//!   the veth to `k0`, whose kernel drops them (not its MAC). Ours:
//!   `af_packet:p0`; peer: `--vdev net_af_packet0,iface=p0`.
//! * `rxonly/af_packet`: one generator, identical for both (our testpmd txonly on
//!   `af_packet:k0`, core 0), feeds `p0`; the receiver under test counts on core 1.
//! * `txonly/tap`: the port writes into a fresh TAP interface (ours creates
//!   `kbo0`, DPDK's `net_tap0,iface=kbd0`), whose kernel side drops the frames.
//! * `rxonly/tap`: the same generator on `af_packet:<tap ifname>` makes the kernel
//!   transmit on the TAP, i.e. deliver to the port's descriptor.
//!
//! * `txonly/af_xdp`, `rxonly/af_xdp`: as for `af_packet`, with `af_xdp:p0`
//!   against `--vdev net_af_xdp0,iface=p0` (both copy mode: veth has no
//!   zero-copy; both native XDP).
//! * `io/af_xdp`: the same generator feeds `p0`; the port sends every frame back
//!   out of `p0` (to `k0`, whose kernel drops it); the rate is frames forwarded
//!   (DPDK: `Tx-pps`).
//! * `<mode> ours af_xdp vs af_packet`: our two drivers on the same veth, from the
//!   medians above (the reason to pick AF_XDP).
//!
//! Both run with `--record-core-cycles` and report the port core's busy
//! cycles per packet (polls that moved frames, including the system calls
//! into the kernel they make), the `cpu` rows (busy ns/pkt, lower is better).
//!
//! Both report a rate per second (first second dropped); medians over
//! `BENCH_ROUNDS` alternating rounds (default 2) of `BENCH_SECS` (default 5) go
//! into the results. Needs root (namespaces); run as `scripts/bench.sh kernel_pmds`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bench::{env_or, plot_series, summarize, write_json, write_md, Row, Series, Summary};

const NS: &str = "kpmdbench";

struct Testbed;

impl Testbed {
    fn up() -> Testbed {
        let ok = Command::new("scripts/testbed.sh").args(["up", NS, "--quiet"]).status().map(|s| s.success());
        assert_eq!(ok.ok(), Some(true), "scripts/testbed.sh up {NS} failed (root needed)");
        Testbed
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new("scripts/testbed.sh").args(["down", NS]).status();
    }
}

fn in_ns(cmd: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", NS, cmd]);
    c
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Per-second Mpps and busy ns per packet of one side.
type Side = (Vec<f64>, f64);

/// Our testpmd inside the namespace; per-second rates from `--stats-period`.
fn ours(bin: &str, port: &str, fwd: &str, core: usize, secs: u32, before_measure: impl FnOnce()) -> Side {
    let child = in_ns(bin)
        .args(["--port", port, "--fwd", fwd, "--cores", &core.to_string(), "--duration", &(secs + 2).to_string()])
        .args(["--stats-period", "1", "--json", "--record-core-cycles"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("our testpmd runs");
    std::thread::sleep(Duration::from_millis(500));
    before_measure();
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "our testpmd {port} {fwd}: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let s: Vec<f64> = v["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter_map(|s| s["forward_pps"].as_f64())
        .map(|x| x / 1e6)
        .collect();
    let busy = v["core_cycles"]["busy_ns_per_packet"].as_f64().expect("core_cycles in our JSON");
    // Drop the first second (start-up, generator attaching) and the last (stop).
    (s.iter().copied().skip(1).take(secs as usize).collect(), busy)
}

/// dpdk-testpmd inside the namespace; the `metric` lines (`Rx-pps:`/`Tx-pps:`).
fn dpdk(vdev: &str, fwd: &str, core: usize, secs: u32, metric: &str, before_measure: impl FnOnce()) -> Side {
    let main = if core == 0 { 1 } else { 0 };
    let mut child = in_ns("stdbuf")
        .args(["-oL", "dpdk-testpmd", "-l", &format!("{main},{core}"), "--main-lcore", &main.to_string()])
        .args(["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--no-telemetry", "--log-level=lib.eal:error"])
        .args(["--file-prefix", &format!("kpmd{}", std::process::id()), "--vdev", vdev, "--"])
        .args([&format!("--forward-mode={fwd}"), "--nb-cores=1", "--burst=32", "--stats-period", "1", "--auto-start"])
        .args(["--total-num-mbufs=16384", "--record-core-cycles"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dpdk-testpmd runs (Debian package dpdk)");
    let stdout = child.stdout.take().expect("piped");
    let mut before = Some(before_measure);
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(secs as u64 + 60);
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if let Some(rest) = line.trim().strip_prefix(metric) {
            // The first reading means the port runs: start the generator then.
            if let Some(f) = before.take() {
                f();
            }
            if let Some(v) = rest.split_whitespace().next().and_then(|x| x.parse::<f64>().ok()) {
                samples.push(v / 1e6);
            }
        }
        if samples.len() > secs as usize + 1 || Instant::now() > deadline {
            break;
        }
    }
    // Its final statistics (with the cycles line) come as it stops.
    let tail = std::thread::spawn(move || lines.map_while(Result::ok).find_map(|l| bench::dpdk_cycles_line(&l)));
    stop(&mut child);
    if vdev.starts_with("net_af_xdp") {
        // net_af_xdp attaches its program through netlink, which outlives the
        // process if it is not stopped cleanly; the next port would find p0 busy.
        let _ = Command::new("ip").args(["-n", NS, "link", "set", "dev", "p0", "xdp", "off"]).status();
    }
    let busy = tail.join().ok().flatten().unwrap_or(f64::NAN);
    // Drop the first reading (0 before traffic) and the second (generator start).
    (samples.into_iter().skip(2).take(secs as usize).collect(), busy)
}

/// Starts the shared generator: our testpmd txonly on `af_packet:IFNAME`, core 0.
fn generator(bin: &str, ifname: &str, gen_core: usize) -> Child {
    in_ns(bin)
        .args(["--port", &format!("af_packet:{ifname}"), "--fwd", "txonly", "--cores", &gen_core.to_string()])
        .args(["--duration", "600", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("generator runs")
}

/// Waits until `ifname` exists and is up in the namespace (DPDK creates its TAP
/// during EAL start-up).
fn wait_up(ifname: &str) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        let out = Command::new("ip").args(["-n", NS, "link", "show", ifname]).output();
        if let Ok(o) = out {
            let s = String::from_utf8_lossy(&o.stdout);
            if s.contains(",UP") || s.contains("<UP") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{ifname} did not come up in {NS}");
}

fn fmt(s: &Summary) -> String {
    format!("{:.3} ({:.3}–{:.3})", s.p50, s.p10, s.p90)
}

fn main() {
    let rounds: u32 = env_or("BENCH_ROUNDS", 2);
    let secs: u32 = env_or("BENCH_SECS", 5);
    let cores = pmd::runtime::available_cores();
    let core = *cores.last().expect("a core");
    let gen_core = *cores.first().expect("a core");
    let bin = std::fs::canonicalize(std::env::var("TESTPMD").unwrap_or_else(|_| "target/release/testpmd".into()))
        .expect("our testpmd is built")
        .to_string_lossy()
        .into_owned();
    let _tb = Testbed::up();

    type Run = Box<dyn Fn(u32) -> (Side, Side)>;
    let b = bin.clone();
    let tx_af: Run = Box::new(move |s| {
        (
            ours(&b, "af_packet:p0", "txonly", core, s, || {}),
            dpdk("net_af_packet0,iface=p0", "txonly", core, s, "Tx-pps:", || {}),
        )
    });
    let b = bin.clone();
    let rx_af: Run = Box::new(move |s| {
        let mut g = generator(&b, "k0", gen_core);
        let o = ours(&b, "af_packet:p0", "rxonly", core, s, || {});
        let d = dpdk("net_af_packet0,iface=p0", "rxonly", core, s, "Rx-pps:", || {});
        stop(&mut g);
        (o, d)
    });
    let b = bin.clone();
    let tx_tap: Run = Box::new(move |s| {
        let o = ours(&b, "tap:kbo0", "txonly", core, s, || {});
        let d = dpdk("net_tap0,iface=kbd0", "txonly", core, s, "Tx-pps:", || {});
        let _ = Command::new("ip").args(["-n", NS, "link", "del", "kbo0"]).status();
        (o, d)
    });
    let b = bin.clone();
    let rx_tap: Run = Box::new(move |s| {
        let gen: std::cell::RefCell<Option<Child>> = std::cell::RefCell::new(None);
        let o = ours(&b, "tap:kbo1", "rxonly", core, s, || {
            wait_up("kbo1");
            *gen.borrow_mut() = Some(generator(&b, "kbo1", gen_core));
        });
        if let Some(mut g) = gen.borrow_mut().take() {
            stop(&mut g);
        }
        let _ = Command::new("ip").args(["-n", NS, "link", "del", "kbo1"]).status();
        let d = dpdk("net_tap0,iface=kbd1", "rxonly", core, s, "Rx-pps:", || {
            wait_up("kbd1");
            *gen.borrow_mut() = Some(generator(&b, "kbd1", gen_core));
        });
        if let Some(mut g) = gen.borrow_mut().take() {
            stop(&mut g);
        }
        (o, d)
    });
    let b = bin.clone();
    let tx_xdp: Run = Box::new(move |s| {
        (
            ours(&b, "af_xdp:p0", "txonly", core, s, || {}),
            dpdk("net_af_xdp0,iface=p0", "txonly", core, s, "Tx-pps:", || {}),
        )
    });
    let b = bin.clone();
    let rx_xdp: Run = Box::new(move |s| {
        let mut g = generator(&b, "k0", gen_core);
        let o = ours(&b, "af_xdp:p0", "rxonly", core, s, || {});
        let d = dpdk("net_af_xdp0,iface=p0", "rxonly", core, s, "Rx-pps:", || {});
        stop(&mut g);
        (o, d)
    });
    let b = bin.clone();
    let io_xdp: Run = Box::new(move |s| {
        let mut g = generator(&b, "k0", gen_core);
        let o = ours(&b, "af_xdp:p0", "io", core, s, || {});
        let d = dpdk("net_af_xdp0,iface=p0", "io", core, s, "Tx-pps:", || {});
        stop(&mut g);
        (o, d)
    });
    let cases: [(&str, Run); 7] = [
        ("rxonly/tap", rx_tap),
        ("txonly/tap", tx_tap),
        ("rxonly/af_packet", rx_af),
        ("txonly/af_packet", tx_af),
        ("rxonly/af_xdp", rx_xdp),
        ("txonly/af_xdp", tx_xdp),
        ("io/af_xdp", io_xdp),
    ];

    let mut rows = Vec::new();
    let mut md_rows = Vec::new();
    let mut cpu_rows = Vec::new();
    let load_before = bench::load_average();
    let c2c = bench::core_to_core_ns((gen_core, core));
    let mut series = Vec::new();
    let mut detail = serde_json::Map::new();
    for (name, run) in &cases {
        let (mut o, mut d) = (Vec::new(), Vec::new());
        let (mut oc, mut dc) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            eprintln!("kernel_pmds: {name} round {}/{rounds}", r + 1);
            let ((a, ac), (b, bc)) = run(secs);
            eprintln!("kernel_pmds: {name} round {}: busy ns/pkt ours {ac:.1}, dpdk-testpmd {bc:.1}", r + 1);
            o.extend(a);
            d.extend(b);
            oc.push(ac);
            dc.push(bc);
        }
        let med = |v: &[f64]| {
            let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        let cpu_row = Row::new(&format!("{name} cpu"), "busy ns/pkt", "lower", med(&oc), "dpdk-testpmd", med(&dc));
        cpu_rows.push(format!("| {name} | {:.1} | {:.1} | {:.2} |", cpu_row.ours, cpu_row.peer_value, cpu_row.ratio));
        assert!(!o.is_empty() && !d.is_empty(), "{name}: no samples (ours {o:?}, dpdk {d:?})");
        let (so, sd) = (summarize(&o, 1000.0), summarize(&d, 1000.0));
        eprintln!("kernel_pmds: {name}: ours {} Mpps, dpdk {} Mpps", fmt(&so), fmt(&sd));
        let row = Row::new(name, "Mpps", "higher", so.p50, "dpdk-testpmd", sd.p50);
        md_rows.push(format!("| {name} | {} | {} | {:.2} | {} / {} |", fmt(&so), fmt(&sd), row.ratio, so.n, sd.n));
        detail.insert(
            name.to_string(),
            serde_json::json!({
                "ours": so, "peer": sd, "ours_samples": o, "peer_samples": d,
                "ours_busy_ns_per_pkt": oc, "peer_busy_ns_per_pkt": dc,
            }),
        );
        series.push(Series {
            label: format!("{name} ours"),
            points: o.iter().enumerate().map(|(i, v)| (i as f64 + 1.0, *v)).collect(),
        });
        series.push(Series {
            label: format!("{name} dpdk"),
            points: d.iter().enumerate().map(|(i, v)| (i as f64 + 1.0, *v)).collect(),
        });
        rows.push(row);
        rows.push(cpu_row);
    }
    // Our af_xdp against our af_packet on the same veth, from the medians above.
    let mut vs_rows = Vec::new();
    for mode in ["rxonly", "txonly"] {
        let med = |case: &str| rows.iter().find(|r| r.case == case).map(|r| r.ours).unwrap_or(f64::NAN);
        let (x, a) = (med(&format!("{mode}/af_xdp")), med(&format!("{mode}/af_packet")));
        let row = Row::new(&format!("{mode} ours af_xdp vs af_packet"), "Mpps", "higher", x, "ours af_packet", a);
        vs_rows.push(format!("| {mode} | {x:.3} | {a:.3} | {:.2} |", row.ratio));
        rows.push(row);
    }
    let load_after = bench::load_average();
    let env = serde_json::json!({
        "cpu": bench::cpu_model(),
        "kernel": bench::command_line("uname", &["-r"]),
        "dpdk": bench::command_line("pkg-config", &["--modversion", "libdpdk"]),
        "port_core": core, "generator_core": gen_core, "rounds": rounds, "seconds_per_round": secs,
    });
    write_json(
        "kernel_pmds",
        &rows,
        serde_json::json!({
            "cpu_model": bench::cpu_model(), "core_to_core_ns": bench::round3(c2c),
            "load_average_before": load_before, "load_average_after": load_after, "env": env, "detail": detail,
        }),
    );
    plot_series(
        "kernel_pmds",
        "kernel-backed PMDs: per-second rate (rounds concatenated)",
        "sample (s)",
        "Mpps",
        &series,
    );
    let md = format!(
        "# kernel_pmds: our tap, af_packet and af_xdp drivers vs dpdk-testpmd's net_tap, net_af_packet and \
         net_af_xdp\n\n\
         Median of per-second rates (p10–p90 in brackets), Mpps; {rounds} alternating rounds of {secs} s per \
         side. All inside one network namespace (scripts/testbed.sh). txonly: 64-byte UDP frames the kernel \
         drops on the other side; rxonly: one generator for both (our testpmd txonly on af_packet bound to \
         the kernel side: k0 for the veth, the TAP interface itself for tap) on core {gen_core}; the port under \
         test on core {core}.\n\n\
         | case | ours | dpdk-testpmd | ratio | samples |\n|---|---|---|---|---|\n{}\n\n\
         Our af_xdp against our af_packet on the same veth (medians above, Mpps):\n\n\
         | mode | af_xdp | af_packet | ratio |\n|---|---|---|---|\n{}\n\n\
         CPU cost per packet (lower is better): the port core's busy cycles (polls that moved frames, with the \
         system calls they make) over its packets, both with `--record-core-cycles`, median of the rounds.\n\n\
         | case | ours (busy ns/pkt) | dpdk-testpmd (busy ns/pkt) | ratio |\n|---|---|---|---|\n{}\n\n\
         - ours: `ip netns exec {NS} target/release/testpmd --port af_packet:p0|af_xdp:p0|tap:IF --fwd rxonly|txonly|io --cores {core} --stats-period 1 --json --record-core-cycles`\n\
         - peer: `ip netns exec {NS} dpdk-testpmd -l M,{core} --no-huge -m 512 --no-pci --vdev net_af_packet0,iface=p0|net_af_xdp0,iface=p0|net_tap0,iface=IF -- --forward-mode=rxonly|txonly|io --nb-cores=1 --stats-period 1 --auto-start --record-core-cycles`\n\
         - af_xdp, both sides at their defaults on a veth (copy mode, native XDP, one queue): ours \
         `zero_copy=auto need_wakeup=1 busy_poll=0`, 2048-entry rings, 4096 frames of 2048 bytes; \
         net_af_xdp 22.11 defaults, which include preferred busy polling (`busy_budget=64`: its core \
         runs the veth's NAPI through recvfrom, most likely why its busy ns/pkt on receive is lower; not verified separately); ours can do the \
         same with `busy_poll=N`, not set here. The veth's receive NAPI otherwise runs in softirq on the \
         generator's core.\n\
         - CPU: {} (2 vCPUs, shared VM), kernel {}; core-to-core cache-line latency {c2c:.0} ns one way \
         (generator core to port core); load average {load_before} before, {load_after} after.\n\
         - Plot: [`kernel_pmds.svg`](kernel_pmds.svg). Raw: [`kernel_pmds.json`](kernel_pmds.json). Reproduce: `scripts/bench.sh kernel_pmds`.\n",
        md_rows.join("\n"),
        vs_rows.join("\n"),
        cpu_rows.join("\n"),
        bench::cpu_model(),
        bench::command_line("uname", &["-r"]),
    );
    write_md("kernel_pmds", &md);
    println!("{md}");
}
