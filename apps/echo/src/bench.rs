//! `echo bench`: the same server and client code on our stack and on the
//! kernel's, in one run, on the same two pinned cores (client, server).
//!
//! * ours: two stacks over the in-memory `ring` wire (`ring:echob_c` ↔
//!   `ring:echob_s`), 198.18.0.1 → 198.18.0.2, each core busy-polling its stack;
//! * kernel: kernel TCP over loopback (127.0.0.1), each core in epoll.
//!
//! Cases: 64-byte ping-pong on one connection (RTT p50/p99/p99.9), closed-loop
//! ping-pong on 64 connections (messages/s), connection churn (connect, one
//! round trip, close; connections/s). Writes `bench/results/echo.{json,md,svg}`
//! (the SVG is the latency CDF of the one-connection case). No root, no NIC.
//! `--rounds` alternates the sides (default 3) so a noisy machine hurts both;
//! RTT percentiles come from all rounds' samples, rates from the median round.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flow::{Net, UdpConfig};

use crate::client::{self, ClientConfig, Counters, Mode, Report};
use crate::opts::{self, BenchArgs, Rt};
use crate::server::{self, ServerConfig};
use crate::Fail;

/// The three measurements of one side.
struct Side {
    rtt: Report,
    msgs: Report,
    churn: Report,
}

/// Tries to connect until the server answers (it starts on another core).
async fn wait_listening<N: Net>(net: &N, target: SocketAddr, tcp: &flow::TcpConfig) -> Result<(), flow::FlowError> {
    let mut last = None;
    for _ in 0..100 {
        match flow::timeout(Duration::from_millis(500), net.connect(target, tcp)).await {
            Ok(Ok(f)) => {
                drop(flow::Flow::close(f).await);
                return Ok(());
            }
            Ok(Err(e)) => last = Some(e),
            Err(e) => last = Some(e.into()),
        }
        flow::sleep(Duration::from_millis(50)).await;
    }
    Err(last.unwrap_or(flow::FlowError::TimedOut))
}

async fn cases<N: Net>(
    net: N,
    target: SocketAddr,
    a: Arc<BenchArgs>,
    tcp: flow::TcpConfig,
    stop: Arc<AtomicBool>,
) -> Result<Side, String> {
    let r = measure(&net, target, a, tcp).await;
    // Stop the server while this core still polls, so each side's last frames
    // (FINs, ACKs) are taken off the wire before its buffer pool goes away.
    stop.store(true, Ordering::Release);
    flow::sleep(Duration::from_millis(200)).await;
    r
}

async fn measure<N: Net>(net: &N, target: SocketAddr, a: Arc<BenchArgs>, tcp: flow::TcpConfig) -> Result<Side, String> {
    let net = net.clone();
    wait_listening(&net, target, &tcp).await.map_err(|e| format!("server at {target}: {e}"))?;
    let mut out = Vec::new();
    for (mode, conns) in [(Mode::Pingpong, 1), (Mode::Pingpong, a.conns), (Mode::Churn, a.churn_conns)] {
        let mut tcp = tcp.clone();
        if mode == Mode::Churn {
            tcp.time_wait_ns = a.churn_time_wait_ms * 1_000_000;
        }
        let cfg = Arc::new(ClientConfig {
            target,
            via: None,
            payload: crate::client::Payload::Pattern,
            conns,
            size: a.size,
            mode,
            rate: 0.0,
            duration: Duration::from_secs_f64(a.secs),
            connect_timeout: Duration::from_secs(3),
            tcp,
            progress: false,
        });
        let counters = Arc::new(vec![Counters::default()]);
        let r = client::run(net.clone(), 0, 1, cfg, counters).await.map_err(|e| format!("{mode:?}: {e}"))?;
        let r = Report::merge(vec![r]);
        eprintln!(
            "  {:<9} {:>3} conns: {:>10.0} msgs/s {:>8.0} conns/s  p50 {:>7.1} us  p99 {:>7.1} us  errors {}",
            format!("{mode:?}"),
            conns,
            r.msgs as f64 / r.secs,
            r.conns as f64 / r.secs,
            r.us(0.5),
            r.us(0.99),
            r.errors
        );
        out.push(r);
    }
    let churn = out.pop().expect("3");
    let msgs = out.pop().expect("2");
    let rtt = out.pop().expect("1");
    Ok(Side { rtt, msgs, churn })
}

fn server_cfg(listen: SocketAddr, tcp: flow::TcpConfig) -> ServerConfig {
    ServerConfig {
        listen,
        listen_cfg: flow::ListenConfig::new(listen, 4096, 4096, 3_000_000_000, flow::SynCookies::WhenFull, tcp),
        udp: UdpConfig { rx_queue_len: 1024 },
        idle_timeout: None,
        sockperf: false,
        udp_enabled: false,
        banner: None,
        tls: None,
    }
}

/// Runs one side: the server on `rt_s` in a thread, the cases on `rt_c` here.
fn side(rt_s: Rt, rt_c: Rt, listen: SocketAddr, target: SocketAddr, a: &Arc<BenchArgs>) -> Result<Side, Fail> {
    let tcp = a.tcp.config()?;
    let stop = Arc::new(AtomicBool::new(false));
    let scfg = server_cfg(listen, tcp.clone());
    let st = stop.clone();
    let srv =
        std::thread::spawn(move || crate::run_on!(rt_s, |core| server::serve(core.net, scfg.clone(), st.clone())));
    let res = crate::run_on!(rt_c, |core| cases(core.net, target, a.clone(), tcp.clone(), stop.clone()));
    stop.store(true, Ordering::Release);
    let s = srv.join().map_err(|_| Fail::other("server thread panicked"))?;
    match s {
        Ok(v) => {
            for r in v {
                r.map_err(|e| opts::flow_fail("server", e))?;
            }
        }
        Err(e) => return Err(opts::flow_fail("server runtime", e)),
    }
    let mut v = res.map_err(|e| opts::flow_fail("client runtime", e))?;
    v.pop().expect("one core").map_err(Fail::other)
}

fn user_rt(spec: &str, ip: &str, core: usize, a: &BenchArgs) -> Result<Rt, Fail> {
    let mut cfg = opts::stack_config(pmd::MacAddr([2, 0, 0, 0, 0, 1]), 1500, a.max_connections, a.mbufs / 4);
    cfg.ipv4.push(ip.parse().expect("bench address"));
    let rt = flow::Runtime::user(spec, cfg)
        .mac_from_port()
        .cores(&[core])
        .mbufs(a.mbufs)
        .queue_size(1024)
        .check()
        .map_err(|e| Fail::usage(e.to_string()))?;
    Ok(Rt::User(Box::new(rt)))
}

/// `echo bench`.
pub fn run(a: BenchArgs) -> Result<(), Fail> {
    let cores = pmd::runtime::parse_core_list(&a.cores).map_err(|e| Fail::usage(format!("--cores: {e}")))?;
    let [cc, sc] = cores[..] else {
        return Err(Fail::usage("--cores needs exactly two cores: CLIENT,SERVER"));
    };
    pmd::runtime::check_cores(&cores).map_err(|e| Fail::usage(format!("--cores: {e}")))?;
    if !(1..=100).contains(&a.rounds) {
        return Err(Fail::usage("--rounds must be between 1 and 100"));
    }
    if !(a.secs > 0.0 && a.secs <= 600.0) {
        return Err(Fail::usage("--secs must be between 0 and 600"));
    }
    a.tcp.config()?;
    let a = Arc::new(a);

    let mut ours = Vec::new();
    let mut kernel = Vec::new();
    for round in 1..=a.rounds {
        eprintln!(
            "echo bench: round {round}/{}: ours (user stack over the ring wire), client core {cc}, server core {sc}",
            a.rounds
        );
        ours.push(side(
            user_rt("ring:echob_s?peer=echob_c", "198.18.0.2/24", sc, &a)?,
            user_rt("ring:echob_c?peer=echob_s", "198.18.0.1/24", cc, &a)?,
            "[::]:7".parse().expect("addr"),
            "198.18.0.2:7".parse().expect("addr"),
            &a,
        )?);
        eprintln!(
            "echo bench: round {round}/{}: kernel (TCP over loopback), client core {cc}, server core {sc}",
            a.rounds
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| Fail::other(format!("finding a free port: {e}")))?
            .port();
        let kaddr = SocketAddr::from(([127, 0, 0, 1], port));
        kernel.push(side(
            Rt::Kernel(flow::Runtime::kernel().cores(&[sc])),
            Rt::Kernel(flow::Runtime::kernel().cores(&[cc])),
            kaddr,
            kaddr,
            &a,
        )?);
    }
    report(&a, &Combined::of(ours), &Combined::of(kernel), cc, sc);
    Ok(())
}

/// All rounds of one side: RTT histograms merged, rates as the median round.
struct Combined {
    rtt: Report,
    msgs_rate: f64,
    conns_rate: f64,
    errors: Vec<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Combined {
    fn of(sides: Vec<Side>) -> Combined {
        let mut rtt = Report::merge(Vec::new());
        let mut errors = Vec::new();
        let (mut m, mut c) = (Vec::new(), Vec::new());
        for s in sides {
            rtt.hist.add(&s.rtt.hist).expect("same bounds");
            rtt.msgs += s.rtt.msgs;
            m.push(s.msgs.msgs as f64 / s.msgs.secs);
            c.push(s.churn.conns as f64 / s.churn.secs);
            for (case, r) in [("rtt", &s.rtt), ("msgs", &s.msgs), ("churn", &s.churn)] {
                if r.errors > 0 {
                    errors.push(format!("{case}: {} errors ({})", r.errors, r.first_error.clone().unwrap_or_default()));
                }
            }
        }
        Combined { rtt, msgs_rate: median(m), conns_rate: median(c), errors }
    }
}

fn report(a: &BenchArgs, ours: &Combined, kernel: &Combined, cc: usize, sc: usize) {
    use bench::Row;
    let peer = "kernel TCP loopback";
    let rows = vec![
        Row::new("rtt_p50", "us", "lower", ours.rtt.us(0.5), peer, kernel.rtt.us(0.5)),
        Row::new("rtt_p99", "us", "lower", ours.rtt.us(0.99), peer, kernel.rtt.us(0.99)),
        Row::new("rtt_p999", "us", "lower", ours.rtt.us(0.999), peer, kernel.rtt.us(0.999)),
        Row::new("msgs_per_s_64conns", "msgs/s", "higher", ours.msgs_rate, peer, kernel.msgs_rate),
        Row::new("conns_per_s", "conns/s", "higher", ours.conns_rate, peer, kernel.conns_rate),
    ];
    let errors: Vec<String> = ours
        .errors
        .iter()
        .map(|e| format!("ours {e}"))
        .chain(kernel.errors.iter().map(|e| format!("kernel {e}")))
        .collect();
    let p50_ok = rows[0].ratio <= 0.2;
    let msgs_ok = rows[3].ratio >= 3.0;
    let mut md = String::from(
        "# echo: the echo server and client on our stack (two stacks over the in-memory wire) vs the kernel's TCP over loopback\n\n\
         | case | unit | ours | kernel | ratio |\n|---|---|---|---|---|\n",
    );
    for r in &rows {
        md += &format!("| {} | {} | {} | {} | {:.3} |\n", r.case, r.metric, r.ours, r.peer_value, r.ratio);
    }
    md += &format!(
        "\n- Targets: RTT p50 ≤ 1/5 of the kernel's: {} (ratio {:.3}); messages/s with {} connections ≥ 3× the kernel's: {} (ratio {:.3}).\n",
        if p50_ok { "met" } else { "NOT met" },
        rows[0].ratio,
        a.conns,
        if msgs_ok { "met" } else { "NOT met" },
        rows[3].ratio
    );
    md += &format!(
        "- {}-byte messages; RTT on 1 connection, closed-loop ping-pong; messages/s on {} connections; churn with {} tasks (connect, one round trip, close; TIME-WAIT {} ms, which caps ours at 16384 ports / TIME-WAIT); {} s per case and side; {} alternating round(s): RTT percentiles over all rounds' samples, rates the median round.\n",
        a.size, a.conns, a.churn_conns, a.churn_time_wait_ms, a.secs, a.rounds
    );
    md += &format!(
        "- Samples: ours {} / kernel {} RTTs. Errors: {}.\n",
        ours.rtt.hist.len(),
        kernel.rtt.hist.len(),
        if errors.is_empty() { "none".to_string() } else { errors.join("; ") }
    );
    md += &format!(
        "- CPU: {}; kernel {}; client core {cc}, server core {sc}; ours busy-polls, the kernel side waits in epoll.\n",
        bench::cpu_model(),
        bench::command_line("uname", &["-r"])
    );
    md += "- Plot: [`echo.svg`](echo.svg) (RTT CDF, log latency axis). Raw: [`echo.json`](echo.json). Reproduce: `scripts/bench.sh echo` (or `echo bench`).\n";
    let extra = serde_json::json!({
        "size": a.size, "conns": a.conns, "churn_conns": a.churn_conns, "secs": a.secs, "rounds": a.rounds,
        "churn_time_wait_ms": a.churn_time_wait_ms,
        "errors": errors,
        "targets": { "rtt_p50_ratio_max": 0.2, "rtt_p50_met": p50_ok, "msgs_ratio_min": 3.0, "msgs_met": msgs_ok },
    });
    let json = bench::write_json("echo", &rows, extra);
    let mdp = bench::write_md("echo", &md);
    let cdf = |r: &Report| -> Vec<(f64, f64)> {
        let mut v = Vec::new();
        let mut q = 0.0;
        while q <= 0.999 {
            // log10 of microseconds: both stacks' bodies and tails on one axis.
            v.push(((r.hist.value_at_quantile(q) as f64 / 1e3).max(0.1).log10() + 1.0, q * 100.0));
            q += if q < 0.9 { 0.01 } else { 0.001 };
        }
        v
    };
    let svg = bench::plot_series(
        "echo",
        &format!("echo {}-byte RTT CDF (1 connection): ours vs kernel", a.size),
        "log10(RTT in us) + 1   (1 = 1 us, 2 = 10 us, 3 = 100 us, 4 = 1 ms, 5 = 10 ms)",
        "percentile",
        &[
            bench::Series { label: "ours (user stack, ring wire)".into(), points: cdf(&ours.rtt) },
            bench::Series { label: "kernel (TCP loopback)".into(), points: cdf(&kernel.rtt) },
        ],
    );
    println!("{md}");
    println!("wrote {}, {}, {}", mdp.display(), json.display(), svg.display());
}
