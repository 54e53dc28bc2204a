//! `scripts/bench.sh l3`: the IP stack, two instances over the in-memory wire on
//! two pinned cores, against the Linux kernel over loopback in the same run.
//!
//! Cases (ours / peer):
//! * `udp_rtt_p50`, `udp_rtt_p99` (µs, lower is better): UDP ping-pong, one
//!   64-byte datagram in flight; ours: client stack -> ring -> server stack with a
//!   zero-copy echo; peer: two threads with kernel UDP sockets on 127.0.0.1.
//! * `udp_echo_pps` (higher is better): the client keeps a window of `WINDOW`
//!   datagrams in flight and counts echoes per second; peer: the same window over
//!   kernel UDP sockets on loopback.
//! * `icmp_echo_pps`: the same with ICMP echo (the server stack answers in place,
//!   reusing the request's buffer); peer: `ping -f -l WINDOW` to 127.0.0.1.
//!
//! Per-second rates go into an hdrhistogram (median reported, p10–p90 shown);
//! RTTs are recorded per exchange. The kernel's side of the loopback pays for
//! system calls and two trips through its stack per exchange; ours pays for
//! neither, which is the point of the framework, but the ratio should be read as
//! "bypass stack vs kernel sockets on this machine", not as a like-for-like NIC
//! comparison. Environment: `BENCH_ROUNDS` (default 3), `BENCH_SECS` (default 5).
//!
//! CPU cost per operation (`cpu_*` rows, µs per exchange or echo, both sides
//! together, lower is better): ours from the two poll loops' busy time
//! (`pmd::runtime::CoreCycles`: cycles of iterations that moved frames); the
//! kernel's UDP from its two threads' CPU time (`/proc/self/task/TID/stat`,
//! they block when idle), `ping -f` from the CPU time of the child process
//! (`cutime` + `cstime` of `/proc/self/stat` once it has been waited for; the
//! loopback's receive work runs in its context).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{env_or, plot_series, stack_config, summarize, write_json, write_md, Row, Series, Summary};
use pmd::runtime::{available_cores, IdlePolicy, Lcore, Lcores, RecordCycles};
use pmd::{Mempool, MempoolConfig, MonotonicClock, PortConfig};
use stack::{EchoHandle, UdpConfig, UdpHandle};

type S = stack::DynDriver;

const WINDOW: usize = 32;
const PAYLOAD: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Rtt,
    UdpFlood,
    IcmpFlood,
}

struct Client {
    s: S,
    mode: Mode,
    udp: UdpHandle,
    echo: EchoHandle,
    dst: SocketAddr,
    outstanding: usize,
    last_progress: Instant,
    sent_at: Instant,
    seq: u16,
    replies: u64,
    rtts_ns: Vec<u64>,
    got: Vec<stack::UdpDatagram>,
    echoes: Vec<stack::EchoReply>,
}

impl Lcore for Client {
    type Snapshot = u64;

    fn poll(&mut self) -> usize {
        let n = self.s.poll();
        let got = match self.mode {
            Mode::IcmpFlood => {
                self.echoes.clear();
                self.s.echo().recv(self.echo, &mut self.echoes)
            }
            _ => {
                self.got.clear();
                self.s.udp().recv(self.udp, &mut self.got, 64).unwrap_or(0)
            }
        };
        let now = Instant::now();
        if got > 0 {
            self.replies += got as u64;
            self.outstanding = self.outstanding.saturating_sub(got);
            self.last_progress = now;
            if self.mode == Mode::Rtt && self.rtts_ns.len() < 10_000_000 {
                self.rtts_ns.push((now - self.sent_at).as_nanos() as u64);
            }
        } else if now - self.last_progress > Duration::from_millis(20) {
            self.outstanding = 0; // a lost request (e.g. before resolution): refill
            self.last_progress = now;
        }
        let window = if self.mode == Mode::Rtt { 1 } else { WINDOW };
        if self.outstanding == 0 {
            self.sent_at = now;
            for _ in 0..window {
                self.seq = self.seq.wrapping_add(1);
                let ok = match self.mode {
                    Mode::IcmpFlood => {
                        self.s.echo().ping(self.echo, self.dst.ip(), self.seq, &[0x5a; PAYLOAD - 8]).is_ok()
                    }
                    _ => match self.s.pool().alloc() {
                        Ok(mut m) => {
                            m.append(PAYLOAD).expect("room").fill(0x5a);
                            self.s.udp().send_to(self.udp, m, self.dst).is_ok()
                        }
                        Err(_) => false,
                    },
                };
                if ok {
                    self.outstanding += 1;
                }
            }
            self.s.flush();
        }
        n + got
    }

    fn snapshot(&self) -> u64 {
        self.replies
    }
}

struct Server {
    s: S,
    udp: UdpHandle,
    got: Vec<stack::UdpDatagram>,
    back: Vec<(pmd::Mbuf, SocketAddr)>,
}

impl Lcore for Server {
    type Snapshot = u64;

    fn poll(&mut self) -> usize {
        let n = self.s.poll();
        if self.s.udp().recv(self.udp, &mut self.got, 64).unwrap_or(0) > 0 {
            self.back.extend(self.got.drain(..).map(|d| (d.payload, d.peer)));
            let _ = self.s.udp().send_batch(self.udp, &mut self.back);
            self.s.flush();
        }
        n
    }

    fn snapshot(&self) -> u64 {
        self.s.stats().events.echo_replies_sent + self.s.stats().events.udp_sent
    }
}

/// One run of ours: per-second reply rates, and RTT samples (µs) in Rtt mode.
/// One run of ours: (per-second rates, RTT samples µs, busy ns of both
/// cores over the measured seconds).
fn ours(mode: Mode, secs: u32, round: u32, cores: (usize, usize)) -> (Vec<f64>, Vec<f64>, f64) {
    let pool = Mempool::new(&MempoolConfig::new(format!("l3b{round}{mode:?}"), 16384, 2048, 128, 256)).unwrap();
    let (na, nb) = (format!("l3a{round}{mode:?}"), format!("l3b{round}{mode:?}"));
    let mut pa = pmd::open(&format!("ring:{na}?peer={nb}")).unwrap();
    let mut pb = pmd::open(&format!("ring:{nb}?peer={na}")).unwrap();
    for p in [&mut pa, &mut pb] {
        p.configure(&PortConfig::new(1, 1, 4096, 4096, pool.clone())).unwrap();
        p.start().unwrap();
    }
    let clock = Arc::new(MonotonicClock);
    let mut sa = stack::Driver::new(
        stack_config(pa.info().mac, "198.18.0.1/24", 4096, 4096),
        pa.take_rx_queue(0).unwrap(),
        pa.take_tx_queue(0).unwrap(),
        pool.clone(),
        clock.clone(),
    )
    .unwrap();
    let mut sb = stack::Driver::new(
        stack_config(pb.info().mac, "198.18.0.2/24", 4096, 4096),
        pb.take_rx_queue(0).unwrap(),
        pb.take_tx_queue(0).unwrap(),
        pool.clone(),
        clock,
    )
    .unwrap();
    let udp = sa.udp().bind("0.0.0.0:0".parse().unwrap(), UdpConfig { rx_queue_len: 4096 }).unwrap();
    let echo = sa.echo().open(1, 4096).unwrap();
    let sudp = sb.udp().bind("0.0.0.0:7".parse().unwrap(), UdpConfig { rx_queue_len: 4096 }).unwrap();
    let now = Instant::now();
    let client = Client {
        s: sa,
        mode,
        udp,
        echo,
        dst: "198.18.0.2:7".parse().unwrap(),
        outstanding: 0,
        last_progress: now,
        sent_at: now,
        seq: 0,
        replies: 0,
        rtts_ns: Vec::new(),
        got: Vec::with_capacity(64),
        echoes: Vec::with_capacity(64),
    };
    let server = Server { s: sb, udp: sudp, got: Vec::with_capacity(64), back: Vec::with_capacity(64) };
    // Two different Lcore types: run them as two runtimes, one core each.
    let rs = Lcores::launch(vec![(cores.1, server)], IdlePolicy::Spin, RecordCycles::On).expect("server core");
    let rc = Lcores::launch(vec![(cores.0, client)], IdlePolicy::Spin, RecordCycles::On).expect("client core");
    let mut rates = Vec::new();
    std::thread::sleep(Duration::from_millis(300)); // resolution, warm-up
    let mut last = rc.snapshot()[0].unwrap_or(0);
    let busy = || rs.core_cycles()[0].plus(&rc.core_cycles()[0]);
    let b0 = busy();
    for _ in 0..secs {
        std::thread::sleep(Duration::from_secs(1));
        let v = rc.snapshot()[0].unwrap_or(last);
        rates.push((v - last) as f64);
        last = v;
    }
    let busy_ns = busy().since(&b0).busy_ns();
    let mut c = rc.stop().unwrap();
    let s = rs.stop().unwrap();
    let rtts = c[0].rtts_ns.drain(..).skip(1000).map(|n| n as f64 / 1000.0).collect();
    drop(c);
    drop(s);
    drop((pa, pb));
    assert_eq!(pool.available(), pool.count(), "l3 bench leaked mbufs");
    (rates, rtts, busy_ns)
}

/// The kernel over loopback: UDP ping-pong (window 1) or windowed echo:
/// (per-second rates, RTT samples µs, CPU ns of both threads per echo).
fn kernel_udp(window: usize, secs: u32) -> (Vec<f64>, Vec<f64>, f64) {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    server.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let srv = std::thread::spawn(move || {
        let _ = tid_tx.send(bench::current_tid().unwrap_or(0));
        let mut buf = [0u8; 2048];
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((n, peer)) = server.recv_from(&mut buf) {
                let _ = server.send_to(&buf[..n], peer);
            }
        }
    });
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let msg = [0x5au8; PAYLOAD];
    let mut buf = [0u8; 2048];
    let (mut rates, mut rtts) = (Vec::new(), Vec::new());
    let warm = Instant::now() + Duration::from_millis(300);
    let end = warm + Duration::from_secs(secs as u64);
    let mut next_tick = warm + Duration::from_secs(1);
    let mut count = 0u64;
    let (stid, ctid) = (tid_rx.recv().unwrap_or(0), bench::current_tid().unwrap_or(0));
    let cpu = || bench::thread_cpu_ns(stid).unwrap_or(0) + bench::thread_cpu_ns(ctid).unwrap_or(0);
    let (mut cpu0, mut all) = (None, 0u64);
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        for _ in 0..window {
            let _ = c.send(&msg);
        }
        let mut got = 0;
        while got < window {
            match c.recv(&mut buf) {
                Ok(_) => got += 1,
                Err(_) => break,
            }
        }
        let t1 = Instant::now();
        if t0 >= warm {
            if cpu0.is_none() {
                cpu0 = Some(cpu());
            } else {
                all += got as u64;
            }
            count += got as u64;
            if window == 1 && got == 1 {
                rtts.push((t1 - t0).as_nanos() as f64 / 1000.0);
            }
            if t1 >= next_tick {
                rates.push(count as f64);
                count = 0;
                next_tick += Duration::from_secs(1);
            }
        }
    }
    let cpu_ns = cpu().saturating_sub(cpu0.unwrap_or(0)) as f64;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    srv.join().unwrap();
    (rates, rtts, if all > 0 { cpu_ns / all as f64 } else { f64::NAN })
}

/// CPU time of this process's waited-for children (`cutime` + `cstime`), ns.
fn children_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = text.rfind(')').map(|i| &text[i + 1..]).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // After the state (not a number): fields 4.. ; cutime and cstime are fields 16 and 17.
    let (cu, cs) = (f.get(12).copied().unwrap_or(0), f.get(13).copied().unwrap_or(0));
    (cu + cs) * 1_000_000_000 / bench::clock_ticks()
}

/// `ping -f -l WINDOW` to 127.0.0.1 for `secs`: (replies per second, CPU ns
/// per reply).
fn kernel_ping(secs: u32) -> (Vec<f64>, f64) {
    let cpu0 = children_cpu_ns();
    let out = std::process::Command::new("ping")
        .args([
            "-f",
            "-q",
            "-l",
            &WINDOW.to_string(),
            "-s",
            &(PAYLOAD - 8).to_string(),
            "-w",
            &secs.to_string(),
            "127.0.0.1",
        ])
        .output();
    let Ok(out) = out else { return (vec![], f64::NAN) };
    let cpu_ns = children_cpu_ns().saturating_sub(cpu0) as f64;
    let text = String::from_utf8_lossy(&out.stdout);
    // "N packets transmitted, M received, ..., time Tms"
    let line = text.lines().find(|l| l.contains("received")).unwrap_or("");
    let received: f64 =
        line.split(',').nth(1).and_then(|p| p.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0.0);
    let ms: f64 = line
        .rsplit("time ")
        .next()
        .and_then(|t| t.trim_end_matches("ms").trim().parse().ok())
        .unwrap_or(1000.0 * secs as f64);
    (vec![received / (ms / 1000.0)], if received > 0.0 { cpu_ns / received } else { f64::NAN })
}

fn fmt(s: &Summary, unit: f64) -> String {
    format!("{:.1} ({:.1}–{:.1})", s.p50 / unit, s.p10 / unit, s.p90 / unit)
}

/// [`ours`], adding its busy time and operations (the per-second rates summed)
/// to `cost`; returns the rates and the round trips.
fn ours_costed(
    mode: Mode,
    secs: u32,
    round: u32,
    cores: (usize, usize),
    cost: &mut (f64, f64),
) -> (Vec<f64>, Vec<f64>) {
    let (rates, rtts, busy) = ours(mode, secs, round, cores);
    cost.0 += busy;
    cost.1 += rates.iter().sum::<f64>();
    (rates, rtts)
}

fn main() {
    let rounds: u32 = env_or("BENCH_ROUNDS", 3);
    let secs: u32 = env_or("BENCH_SECS", 5);
    let avail = available_cores();
    let cores = (avail[0], *avail.get(1).unwrap_or(&avail[0]));
    if cores.0 == cores.1 {
        eprintln!("l3: only one core available; client and server share it");
    }
    let (mut o_rtt, mut k_rtt) = (Vec::new(), Vec::new());
    let (mut o_udp, mut k_udp, mut o_icmp, mut k_icmp) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // CPU per operation: ours (busy ns, operations) summed over rounds; the
    // kernel's per-round figures (their median is reported).
    let mut o_cost = [(0.0f64, 0.0f64); 3];
    let mut k_cost: [Vec<f64>; 3] = Default::default();
    let load_before = bench::load_average();
    let mut c2c = Vec::new();
    for r in 0..rounds {
        c2c.push(bench::core_to_core_ns(cores));
        eprintln!("l3: round {}/{rounds}: udp rtt (ours, kernel)", r + 1);
        o_rtt.extend(ours_costed(Mode::Rtt, secs, r, cores, &mut o_cost[0]).1);
        let (_, rtts, cpu) = kernel_udp(1, secs);
        k_rtt.extend(rtts);
        k_cost[0].push(cpu);
        eprintln!("l3: round {}/{rounds}: udp echo window {WINDOW} (ours, kernel)", r + 1);
        o_udp.extend(ours_costed(Mode::UdpFlood, secs, r, cores, &mut o_cost[1]).0);
        let (rates, _, cpu) = kernel_udp(WINDOW, secs);
        k_udp.extend(rates);
        k_cost[1].push(cpu);
        eprintln!("l3: round {}/{rounds}: icmp echo window {WINDOW} (ours, kernel ping -f)", r + 1);
        o_icmp.extend(ours_costed(Mode::IcmpFlood, secs, r, cores, &mut o_cost[2]).0);
        let (rates, cpu) = kernel_ping(secs);
        k_icmp.extend(rates);
        k_cost[2].push(cpu);
    }
    let load_after = bench::load_average();
    let med = |v: &[f64]| {
        let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let c2c_med = med(&c2c);
    let o_us = o_cost.map(|(ns, ops)| bench::us_per_op(ns, ops));
    let k_us = [med(&k_cost[0]) / 1e3, med(&k_cost[1]) / 1e3, med(&k_cost[2]) / 1e3];
    let (so_rtt, sk_rtt) = (summarize(&o_rtt, 100.0), summarize(&k_rtt, 100.0));
    let (so_udp, sk_udp) = (summarize(&o_udp, 1.0), summarize(&k_udp, 1.0));
    let (so_icmp, sk_icmp) = (summarize(&o_icmp, 1.0), summarize(&k_icmp, 1.0));
    let rows = vec![
        Row::new("udp_rtt_p50", "us", "lower", so_rtt.p50, "kernel UDP loopback", sk_rtt.p50),
        Row::new("udp_rtt_p99", "us", "lower", so_rtt.p99, "kernel UDP loopback", sk_rtt.p99),
        Row::new("icmp_echo_pps", "kpps", "higher", so_icmp.p50 / 1e3, "kernel ping -f loopback", sk_icmp.p50 / 1e3),
        Row::new("udp_echo_pps", "kpps", "higher", so_udp.p50 / 1e3, "kernel UDP loopback", sk_udp.p50 / 1e3),
        Row::new("cpu_udp_rtt", "cpu us/exchange", "lower", o_us[0], "kernel UDP loopback (CPU time)", k_us[0]),
        Row::new("cpu_udp_echo", "cpu us/echo", "lower", o_us[1], "kernel UDP loopback (CPU time)", k_us[1]),
        Row::new("cpu_icmp_echo", "cpu us/echo", "lower", o_us[2], "kernel ping -f loopback (CPU time)", k_us[2]),
    ];
    let md_rows: Vec<String> = rows
        .iter()
        .map(|r| format!("| {} | {} | {} | {} | {} | {:.2} |", r.case, r.metric, r.ours, r.peer, r.peer_value, r.ratio))
        .collect();
    let detail = serde_json::json!({
        "udp_rtt_us": { "ours": so_rtt, "peer": sk_rtt },
        "udp_echo_pps": { "ours": so_udp, "peer": sk_udp, "ours_samples": o_udp, "peer_samples": k_udp },
        "icmp_echo_pps": { "ours": so_icmp, "peer": sk_icmp, "ours_samples": o_icmp, "peer_samples": k_icmp },
    });
    let env = serde_json::json!({
        "cpu": bench::cpu_model(),
        "kernel": bench::command_line("uname", &["-r"]),
        "cores": [cores.0, cores.1],
        "rounds": rounds,
        "seconds_per_round": secs,
        "window": WINDOW,
        "payload_bytes": PAYLOAD,
    });
    let json = write_json(
        "l3",
        &rows,
        serde_json::json!({
            "cpu_model": bench::cpu_model(), "core_to_core_ns": bench::round3(c2c_med), "core_to_core_ns_probes": c2c,
            "load_average_before": load_before, "load_average_after": load_after,
            "env": env, "detail": detail,
        }),
    );
    let per_sec = |v: &[f64]| v.iter().enumerate().map(|(i, x)| (i as f64 + 1.0, x / 1e3)).collect::<Vec<_>>();
    let svg = plot_series(
        "l3",
        "echo rates per second (rounds concatenated)",
        "sample (s)",
        "kpps",
        &[
            Series { label: "udp echo ours".into(), points: per_sec(&o_udp) },
            Series { label: "udp echo kernel".into(), points: per_sec(&k_udp) },
            Series { label: "icmp echo ours".into(), points: per_sec(&o_icmp) },
        ],
    );
    let md = format!(
        "# l3: the IP stack (two instances over the in-memory wire, two pinned cores) vs the kernel over loopback\n\n\
         | case | unit | ours | peer | peer value | ratio |\n|---|---|---|---|---|---|\n{}\n\n\
         - UDP RTT: ours {} µs, kernel {} µs (p50, p10–p90); {} / {} samples.\n\
         - UDP echo: window {WINDOW}, {PAYLOAD}-byte payload; ours {} kpps, kernel {} kpps (per-second medians).\n\
         - ICMP echo: window {WINDOW}; ours {} kpps (server answers in the request's buffer); kernel `ping -f -l {WINDOW}` {} kpps.\n\
         - CPU cost rows: µs of CPU per exchange/echo, both sides together. Ours: the two poll loops' busy time \
         (cycles of iterations that moved frames; empty polls excluded). Kernel UDP: its two threads' CPU time \
         (`/proc/self/task/TID/stat`; they block when idle); `ping -f`: the child's CPU time (`cutime`+`cstime`, \
         the loopback's receive work runs in its context), median of the rounds.\n\
         - CPU: {}; core-to-core cache-line latency {c2c_med:.0} ns one way (median of the probes before each \
         round); load average {load_before} before, {load_after} after; kernel {}; cores {:?}; {rounds} round(s) \
         of {secs} s.\n\
         - Plot: [`l3.svg`](l3.svg). Raw: [`l3.json`](l3.json). Reproduce: `scripts/bench.sh l3` \
         (`BENCH_ROUNDS`, `BENCH_SECS`).\n",
        md_rows.join("\n"),
        fmt(&so_rtt, 1.0),
        fmt(&sk_rtt, 1.0),
        so_rtt.n,
        sk_rtt.n,
        fmt(&so_udp, 1e3),
        fmt(&sk_udp, 1e3),
        fmt(&so_icmp, 1e3),
        fmt(&sk_icmp, 1e3),
        bench::cpu_model(),
        bench::command_line("uname", &["-r"]),
        cores,
    );
    let mdp = write_md("l3", &md);
    println!("{md}");
    eprintln!("wrote {}, {}, {}", json.display(), mdp.display(), svg.display());
}
