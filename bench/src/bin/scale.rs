//! `scripts/bench.sh scale [--cores 1,2,4,8]`: what spreading flows over
//! cores by RSS costs and gains.
//!
//! - `io_ring_rss_Nc_vs_1c`: our `testpmd --fwd io` between two
//!   `ring:..?rss=1` ports (each frame steered to the receive queue its
//!   Toeplitz hash names, by the sending core), `--rxq N --txq N` on N cores,
//!   divided by the same with 1 queue on 1 core, in the same run. 1024 flows
//!   (`--tx-first 8 --txonly-multi-flow`), so RSS spreads them. Target for
//!   2 cores: ≥ 1.8.
//! - `echo_rss_overhead`: messages/s of 64 ping-pong connections (64-byte
//!   messages) against an echo server on one core, both on our stack over a
//!   ring wire, with `rss=1` and the core-aware stack (the port hashes every
//!   frame; the runtime is given an RSS key) divided by the plain single-
//!   queue path. Target ≥ 0.95. Client and server each on their own core.
//!
//! `--cores` lists the core counts to run (default `1,2`, what this 2-core
//! machine has); the forwarding cores are the first N available. Every
//! count is measured against 1 core in the same run. `BENCH_ROUNDS`
//! (default 5) alternating rounds of `BENCH_SECS` (default 4) seconds;
//! per-second samples after a 1 s warm-up, median reported (p10–p90 in the
//! table). Nothing is tuned on either side beyond the flags shown; both
//! sides of a ratio are our code with the one difference named.

use std::net::SocketAddr;
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{env_or, load_average, round3, summarize, write_json, write_md, Row, Summary};
use flow::{Flow, Listener, Net};

fn usage(msg: &str) -> ! {
    eprintln!("scale: {msg}");
    std::process::exit(2)
}

fn core_counts() -> Vec<usize> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut counts = vec![1, 2];
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--cores" => {
                let v = args.get(i + 1).unwrap_or_else(|| usage("--cores needs a list, e.g. 1,2,4,8"));
                counts = v
                    .split(',')
                    .map(|s| s.trim().parse().unwrap_or_else(|_| usage(&format!("--cores: '{s}' is not a number"))))
                    .collect();
                i += 2;
            }
            other => usage(&format!("unknown flag '{other}' (scale takes --cores LIST)")),
        }
    }
    let avail = pmd::runtime::available_cores().len();
    for &n in &counts {
        if n == 0 || n > avail {
            usage(&format!("--cores: {n} cores asked, this machine has {avail}"));
        }
    }
    if !counts.contains(&1) {
        counts.insert(0, 1);
    }
    counts
}

/// One `testpmd` io run on `n` cores: per-second forwarding rates, Mpps.
fn io_run(n: usize, secs: u32, tag: &str) -> Vec<f64> {
    let testpmd = std::env::var("TESTPMD").unwrap_or_else(|_| "target/release/testpmd".into());
    let cores: Vec<String> = pmd::runtime::available_cores().iter().take(n).map(|c| c.to_string()).collect();
    let (a, b) = (format!("ring:sc{tag}a?peer=sc{tag}b&rss=1"), format!("ring:sc{tag}b?peer=sc{tag}a&rss=1"));
    let q = n.to_string();
    let out = Command::new(&testpmd)
        .args(["--port", &a, "--port", &b, "--rxq", &q, "--txq", &q, "--cores", &cores.join(",")])
        .args(["--fwd", "io", "--tx-first", "8", "--txonly-multi-flow", "--flows", "1024", "--burst", "32"])
        .args(["--duration", &secs.to_string(), "--stats-period", "1", "--json"])
        .output()
        .unwrap_or_else(|e| panic!("{testpmd}: {e}"));
    assert!(out.status.success(), "testpmd: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("testpmd --json");
    let samples = v["samples"].as_array().expect("samples (--stats-period)");
    samples.iter().skip(1).filter_map(|s| s["forward_pps"].as_f64()).map(|x| x / 1e6).collect()
}

const CONNS: usize = 64;
const MSG: usize = 64;

fn stack_cfg(ip: &str) -> stack::StackConfig {
    stack::StackConfig {
        ipv4: vec![ip.parse().expect("address")],
        tcp_rx_mbufs: 2048,
        ..stack::profiles::bench(pmd::MacAddr([2, 0, 0, 0, 0, 1]), 4096, 1024)
    }
}

fn tcp() -> flow::TcpConfig {
    flow::kernel::tests_support::tcp_config()
}

/// Echo over our stack on one server core and one client core:
/// per-second messages/s (thousands), with or without RSS.
fn echo_run(rss: bool, secs: u32, tag: &str, server_core: usize, client_core: usize) -> Vec<f64> {
    let opt = if rss { "&rss=1" } else { "" };
    let rt = |me: &str, peer: &str, ip: &str, core: usize| {
        let r = flow::Runtime::user(&format!("ring:{me}?peer={peer}{opt}"), stack_cfg(ip))
            .mac_from_port()
            .cores(&[core])
            .mbufs(16384)
            .queue_size(1024);
        if rss {
            r.rss_key(&pmd::rss::MICROSOFT_KEY)
        } else {
            r
        }
    };
    let (s, c) = (format!("se{tag}s"), format!("se{tag}c"));
    let server_rt = rt(&s, &c, "198.18.0.2/24", server_core);
    let client_rt = rt(&c, &s, "198.18.0.1/24", client_core);
    let stop = Arc::new(AtomicBool::new(false));
    let srv = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            server_rt
                .run(|core| {
                    let stop = stop.clone();
                    async move {
                        let addr: SocketAddr = "[::]:7".parse().expect("addr");
                        let mut l = core.net.listen(addr, &flow::kernel::tests_support::listen_config(7))?;
                        while !stop.load(Ordering::Acquire) {
                            if let Ok(Ok((mut f, _))) = flow::timeout(Duration::from_millis(50), l.accept()).await {
                                flow::spawn(async move {
                                    let mut buf = [0u8; MSG];
                                    while f.read_exact(&mut buf).await.is_ok() {
                                        if f.write_all(&buf).await.is_err() {
                                            break;
                                        }
                                    }
                                });
                            }
                        }
                        Ok::<(), flow::FlowError>(())
                    }
                })
                .expect("server runtime")
        })
    };
    let msgs = Arc::new(AtomicU64::new(0));
    let samples = {
        let counted = msgs.clone();
        let sampler = std::thread::spawn(move || {
            let msgs = counted;
            let mut out = Vec::new();
            let mut last = 0;
            let t0 = Instant::now();
            for s in 1..=secs + 1 {
                let at = t0 + Duration::from_secs(s as u64);
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                let now = msgs.load(Ordering::Relaxed);
                out.push((now - last) as f64 / 1e3);
                last = now;
            }
            out
        });
        let end = Instant::now() + Duration::from_secs(secs as u64 + 1) + Duration::from_millis(300);
        client_rt
            .run(|core| {
                let msgs = msgs.clone();
                async move {
                    let target: SocketAddr = "198.18.0.2:7".parse().expect("addr");
                    let live = Rc::new(std::cell::Cell::new(0usize));
                    let mut tasks = Vec::new();
                    for _ in 0..CONNS {
                        let mut f = core.net.connect(target, &tcp()).await?;
                        let (msgs, live) = (msgs.clone(), live.clone());
                        live.set(live.get() + 1);
                        tasks.push(flow::spawn(async move {
                            let mut buf = [7u8; MSG];
                            while Instant::now() < end {
                                if f.write_all(&buf).await.is_err() || f.read_exact(&mut buf).await.is_err() {
                                    break;
                                }
                                msgs.fetch_add(1, Ordering::Relaxed);
                            }
                            let _ = f.close().await;
                            live.set(live.get() - 1);
                        }));
                    }
                    while live.get() > 0 {
                        flow::sleep(Duration::from_millis(10)).await;
                    }
                    drop(tasks);
                    Ok::<(), flow::FlowError>(())
                }
            })
            .expect("client runtime")
            .into_iter()
            .for_each(|r| r.expect("client"));
        sampler.join().expect("sampler")
    };
    stop.store(true, Ordering::Release);
    for r in srv.join().expect("server thread") {
        r.expect("server");
    }
    // The first second is warm-up (connections opening).
    samples.into_iter().skip(1).collect()
}

fn fmt(s: &Summary) -> String {
    format!("{:.2} ({:.2}–{:.2})", s.p50, s.p10, s.p90)
}

fn main() {
    let counts = core_counts();
    let rounds: u32 = env_or("BENCH_ROUNDS", 5);
    let secs: u32 = env_or("BENCH_SECS", 4);
    let load_before = load_average();
    let avail = pmd::runtime::available_cores();
    let (client_core, server_core) = (avail[0], *avail.last().expect("a core"));
    let mut io: Vec<Vec<f64>> = vec![Vec::new(); counts.len()];
    let (mut plain, mut rss) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for (i, &n) in counts.iter().enumerate() {
            eprintln!("scale: round {}/{rounds}: io over ring?rss=1, {n} queue(s) on {n} core(s)", round + 1);
            io[i].extend(io_run(n, secs + 1, &format!("{round}{n}")));
        }
        eprintln!("scale: round {}/{rounds}: echo, 64 connections, plain ring", round + 1);
        plain.extend(echo_run(false, secs, &format!("p{round}"), server_core, client_core));
        eprintln!("scale: round {}/{rounds}: echo, 64 connections, ring?rss=1 + core-aware stack", round + 1);
        rss.extend(echo_run(true, secs, &format!("r{round}"), server_core, client_core));
    }
    let io_sum: Vec<Summary> = io.iter().map(|v| summarize(v, 1000.0)).collect();
    let (plain_sum, rss_sum) = (summarize(&plain, 1000.0), summarize(&rss, 1000.0));
    let one = io_sum[counts.iter().position(|&n| n == 1).expect("1 is always run")].p50;
    let mut rows = Vec::new();
    let mut md = format!(
        "# scale: RSS steering over cores\n\n\
         Median of per-second samples (p10–p90), {rounds} alternating rounds of {secs} s, first second dropped. \
         Machine: {} CPUs ({}); load before {load_before}, after {}. Run `scripts/bench.sh scale --cores 1,2,4,8` \
         on a larger machine for the scaling curve.\n\n\
         | case | ours | peer | ratio |\n|---|---|---|---|\n",
        avail.len(),
        bench::cpu_model(),
        load_average()
    );
    for (i, &n) in counts.iter().enumerate().filter(|(_, &n)| n > 1) {
        let case = format!("io_ring_rss_{n}c_vs_1c");
        let r = Row::new(&case, "Mpps", "higher", round3(io_sum[i].p50), "1 queue on 1 core", round3(one));
        md += &format!("| {case} | {} Mpps on {n} cores | {:.2} Mpps on 1 | {:.3} |\n", fmt(&io_sum[i]), one, r.ratio);
        rows.push(r);
    }
    let r = Row::new(
        "echo_rss_overhead",
        "kmsgs/s",
        "higher",
        round3(rss_sum.p50),
        "plain single-queue ring, no RSS",
        round3(plain_sum.p50),
    );
    md += &format!(
        "| echo_rss_overhead | {} kmsgs/s (rss=1, core-aware) | {} kmsgs/s (plain) | {:.3} |\n",
        fmt(&rss_sum),
        fmt(&plain_sum),
        r.ratio
    );
    rows.push(r);
    md += "\n- io: `testpmd --port ring:A?peer=B&rss=1 --port ring:B?peer=A&rss=1 --rxq N --txq N --cores <first N> \
           --fwd io --tx-first 8 --txonly-multi-flow --flows 1024 --burst 32 --stats-period 1 --json`; 1 core is the \
           same with N=1 (the port still hashes every frame).\n\
           - echo: 64 ping-pong connections of 64-byte messages, client runtime on the first core, server runtime \
           on the last, both `flow::Runtime::user` over a ring pair; `rss` adds `&rss=1` and `.rss_key(MICROSOFT_KEY)` \
           on both sides. Target ratios: io ≥ 1.8 for 2 cores, echo ≥ 0.95.\n\
           - Tuned: nothing on either side beyond the flags shown; both sides of each ratio are our code with the \
           one difference named.\n\
           - On a 2-CPU machine the 2-core io case shares its CPUs with the benchmark driver and the other \
           work on the machine; the load average above says how much.\n";
    let json = write_json(
        "scale",
        &rows,
        serde_json::json!({ "cores": counts, "rounds": rounds, "secs": secs, "load_before": load_before, "load_after": load_average() }),
    );
    let mdp = write_md("scale", &md);
    println!("{md}");
    eprintln!("scale: wrote {} and {}", json.display(), mdp.display());
}
