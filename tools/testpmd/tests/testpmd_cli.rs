//! The `testpmd` binary: exact counts, clean stop on signals, and exit status 2
//! with a message naming the problem for bad flags and specs.

use std::process::{Command, Output, Stdio};

fn testpmd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_testpmd")).args(args).output().expect("testpmd runs")
}

use testkit::cli;

fn core() -> String {
    pmd::runtime::available_cores().last().copied().unwrap_or(0).to_string()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "status {:?}, stderr: {}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

#[test]
fn io_and_macswap_over_ring_forward_exact_counts_without_loss_or_leak() {
    for (mode, ports) in [
        ("io", vec!["ring:cli_io"]),
        ("macswap", vec!["ring:cli_ms"]),
        ("io", vec!["ring:cli_wa?peer=cli_wb", "ring:cli_wb?peer=cli_wa"]),
        ("macswap", vec!["ring:cli_wc?peer=cli_wd", "ring:cli_wd?peer=cli_wc"]),
    ] {
        let c = core();
        let mut args = vec!["--fwd", mode, "--cores", &c, "--duration", "0.3", "--tx-first", "2", "--json"];
        for p in &ports {
            args.extend(["--port", p]);
        }
        let v = json(&testpmd(&args));
        assert_eq!(v["fwd"], mode);
        assert_eq!(u(&v, "mbufs_leaked"), 0);
        let ps = v["ports"].as_array().unwrap();
        let (mut tx, mut rx) = (0, 0);
        for p in ps {
            assert_eq!(u(p, "tx_dropped") + u(p, "rx_missed") + u(p, "rx_errors") + u(p, "tx_errors"), 0, "{p}");
            tx += u(p, "tx_packets");
            rx += u(p, "rx_packets");
        }
        // Every stream sent 2 bursts of 32 first; exactly those are still in flight.
        assert_eq!(tx - rx, 64 * ps.len() as u64, "{mode} {ports:?}: {v}");
        assert!(rx > 10_000, "{v}");
        assert!(v["forward_pps"].as_f64().unwrap() > 0.0);
    }
}

/// `testpmd --rxq 2 --txq 2 --cores A,B` over `ring?rss=1`: RSS on both
/// ports steers the 64 flows between the queues (any transmit queue may feed
/// any receive queue), each queue's streams on their own core, and every frame
/// is accounted for. (That steering follows the hash is pmd's ring_rss test.)
#[test]
fn two_queues_on_two_cores_over_ring_with_rss_forward_exact_counts() {
    let cores = pmd::runtime::available_cores();
    let list = match cores.as_slice() {
        [.., a, b] => format!("{a},{b}"),
        [a] => a.to_string(),
        [] => "0".into(),
    };
    let args = [
        "--port",
        "ring:cli_rss_a?peer=cli_rss_b&rss=1",
        "--port",
        "ring:cli_rss_b?peer=cli_rss_a&rss=1",
        "--rxq",
        "2",
        "--txq",
        "2",
        "--cores",
        &list,
        "--fwd",
        "io",
        "--duration",
        "0.3",
        "--tx-first",
        "2",
        "--txonly-multi-flow",
        "--flows",
        "64",
        "--json",
    ];
    let v = json(&testpmd(&args));
    assert_eq!(u(&v, "mbufs_leaked"), 0);
    let ps = v["ports"].as_array().unwrap();
    let (mut tx, mut rx) = (0, 0);
    for p in ps {
        assert_eq!(u(p, "tx_dropped") + u(p, "rx_missed") + u(p, "rx_errors") + u(p, "tx_errors"), 0, "{p}");
        tx += u(p, "tx_packets");
        rx += u(p, "rx_packets");
    }
    // 4 streams (2 ports x 2 queues) sent 2 bursts of 32 first; exactly those are in flight.
    assert_eq!(tx - rx, 4 * 64, "{v}");
    assert!(rx > 10_000, "{v}");
    let e = testpmd(&[
        "--port",
        "ring:cli_rss_c",
        "--rxq",
        "2",
        "--txq",
        "3",
        "--cores",
        &list,
        "--fwd",
        "io",
        "--duration",
        "0.1",
    ]);
    assert_eq!(e.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&e.stderr).contains("--txq"));
}

#[test]
fn txonly_nb_pkts_sends_exactly_that_many() {
    let c = core();
    let v =
        json(&testpmd(&cli(&format!("--port null --fwd txonly --cores {c} --duration 0.3 --nb-pkts 12345 --json"))));
    assert_eq!(u(&v["ports"][0], "tx_packets"), 12345);
    assert_eq!(u(&v["ports"][0], "tx_bytes"), 12345 * 64);
}

#[test]
fn json_has_the_documented_fields() {
    let c = core();
    let v =
        json(&testpmd(&cli(&format!("--port null --fwd rxonly --cores {c} --duration 0.2 --json --stats-period 0.1"))));
    for k in ["fwd", "duration_s", "forward_pps", "ports"] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    for k in ["spec", "rx_packets", "tx_packets", "rx_pps", "tx_pps", "rx_missed", "rx_nombuf", "tx_dropped"] {
        assert!(v["ports"][0].get(k).is_some(), "missing ports[0].{k}");
    }
    assert!(!v["samples"].as_array().unwrap().is_empty());
}

#[test]
fn table_output_looks_like_dpdk_testpmd() {
    let c = core();
    let out = testpmd(&["--port", "null", "--fwd", "io", "--cores", &c, "--duration", "0.2"]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Forward statistics for port 0",
        "RX-packets:",
        "TX-dropped:",
        "NIC statistics for port 0",
        "RX-nombuf:",
        "Rx-pps:",
    ] {
        assert!(s.contains(needle), "missing '{needle}' in:\n{s}");
    }
}

#[test]
fn sigterm_stops_cleanly_with_final_stats() {
    use std::io::{BufRead, BufReader, Read};
    let c = core();
    let mut child = Command::new(env!("CARGO_BIN_EXE_testpmd"))
        .args(["--port", "ring:cli_sig", "--fwd", "io", "--tx-first", "--cores", &c, "--duration", "60"])
        .args(["--stats-period", "0.05"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The first periodic stats line comes after the signal handlers are installed
    // and the forwarding core runs: only then is SIGTERM a "stop" request.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "testpmd exited before running");
        if line.contains("pps") {
            break;
        }
    }
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}: {rest}");
    assert!(rest.contains("Stopped by signal."), "{rest}");
    assert!(rest.contains("buffers leaked: 0"), "{rest}");
    assert!(rest.contains("Forward statistics for port 0"), "{rest}");
}

#[test]
fn record_core_cycles_prints_and_reports_busy_cycles_per_packet() {
    let c = core();
    // Table output: DPDK's line and ours per core.
    let out = testpmd(&["--port", "null", "--fwd", "io", "--cores", &c, "--duration", "0.2", "--record-core-cycles"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    for needle in ["CPU cycles/packet=", "(busy cycles=", "total io packets=", "MHz Clock", "idle cycles="] {
        assert!(s.contains(needle), "missing '{needle}' in:\n{s}");
    }
    // JSON: the same numbers, consistent with each other.
    let v =
        json(&testpmd(&cli(&format!("--port null --fwd io --cores {c} --duration 0.2 --record-core-cycles --json"))));
    let cy = &v["core_cycles"];
    assert!(u(cy, "tsc_hz") > 0, "{cy}");
    let core0 = &cy["cores"][0];
    assert_eq!(core0["core"].as_u64().map(|x| x.to_string()), Some(c.clone()));
    assert!(u(core0, "busy_iterations") > 0, "{cy}");
    assert_eq!(u(core0, "busy_cycles") + u(core0, "idle_cycles"), u(core0, "total_cycles"));
    assert_eq!(u(cy, "busy_cycles"), u(core0, "busy_cycles"));
    let pkts = u(cy, "packets");
    assert_eq!(pkts, u(&v["ports"][0], "fwd_tx"));
    let per = cy["busy_cycles_per_packet"].as_f64().unwrap();
    assert!((per - u(cy, "busy_cycles") as f64 / pkts as f64).abs() < 1e-6 * per.max(1.0), "{cy}");
    assert!(cy["busy_ns_per_packet"].as_f64().unwrap() > 0.0);
    // Without the flag: no accounting, an explicit null.
    let v = json(&testpmd(&["--port", "null", "--fwd", "io", "--cores", &c, "--duration", "0.1", "--json"]));
    assert!(v["core_cycles"].is_null(), "{v}");
    // A value for the flag is a usage error naming it.
    usage_error(
        &["--port", "null", "--fwd", "io", "--cores", &c, "--duration", "0.1", "--record-core-cycles=yes"],
        &["--record-core-cycles"],
    );
}

fn usage_error(args: &[&str], needles: &[&str]) {
    let out = testpmd(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: '{n}' not in: {err}");
    }
}

#[test]
fn bad_flags_and_specs_exit_2_naming_the_problem() {
    let c = core();
    let base = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> =
            ["--fwd", "io", "--cores", c.as_str(), "--duration", "0.1"].iter().map(|s| s.to_string()).collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&'static str], needles: &[&str]| {
        let args = base(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        usage_error(&args, needles);
    };
    run(&["--port", "rng:a"], &["'rng'", "ring, null"]);
    run(&["--port", "ring:cli_bad?los=1"], &["'los'", "peer"]);
    run(&["--port", "null?size=x"], &["'size'"]);
    run(&["--port", "ring:cli_bad2?loss=0.5"], &["'seed'"]);
    run(&["--port", "null", "--txpkts", "10"], &["--txpkts"]);
    run(&["--port", "null", "--bogus"], &["--bogus"]);
    run(&["--port", "null", "--burst", "0"], &["--burst"]);
    run(&["--port", "null", "--total-num-mbufs", "0"], &["count"]);
    usage_error(&["--port", "null", "--fwd", "warp", "--cores", &c, "--duration", "1"], &["warp", "macswap"]);
    usage_error(&["--port", "null", "--fwd", "io", "--cores", "4095", "--duration", "1"], &["core 4095"]);
    usage_error(&["--port", "null", "--fwd", "io", "--cores", "1-0", "--duration", "1"], &["cores"]);
    usage_error(&["--port", "null", "--fwd", "io", "--cores", &c, "--duration", "-1"], &["--duration"]);
    usage_error(&["--port", "null", "--fwd", "io", "--cores", &c], &["--duration"]);
}

#[test]
fn conformance_takes_the_pool_and_queue_options_of_forwarding() {
    // The same names as forwarding, applied to the checklist's ports and pool.
    let out = testpmd(&cli(
        "conformance --port ring:cli_conf --rxd 256 --txd 128 --total-num-mbufs 4096 --mbuf-size 9280 --mbcache 32",
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("all 4096 buffers back in the pool"), "{text}");
    // Too small a data room for the jumbo check fails that check, naming the sizes.
    let out = testpmd(&["conformance", "--port", "ring:cli_conf2", "--mbuf-size", "2048"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("jumbo_frame") && text.contains("2048"), "{text}");
}

#[test]
fn conformance_on_dpdk_ports_needs_eal_and_says_so() {
    usage_error(&["conformance", "--port", "dpdk:net_ring0"], &["needs DPDK's EAL", "--eal"]);
    usage_error(&["conformance", "--port", "ring:cli_c3", "--bogus"], &["--bogus"]);
    #[cfg(not(feature = "dpdk"))]
    usage_error(
        &["conformance", "--port", "dpdk:net_ring0", "--eal", "-l 0 --no-huge"],
        &["--eal needs a testpmd built with the dpdk feature"],
    );
}

#[test]
fn testpmd_pcap_flag_needs_its_limit() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_testpmd"))
        .args(["--port", "null", "--fwd", "io", "--cores", "0", "--duration", "0.1", "--pcap", "/tmp/x.pcap"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pcap-limit"));
}
