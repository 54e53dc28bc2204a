//! `scripts/bench.sh tcp`: our TCP, two stacks over the in-memory wire on two
//! pinned cores, against the Linux kernel's TCP over loopback (a mio server
//! and a blocking client, also pinned), in the same run.
//!
//! Cases (ours / kernel):
//! * `rtt_p50`, `rtt_p99`, `rtt_p999` (µs): one connection, a 64-byte message
//!   echoed back, one in flight, every exchange timed;
//! * `bulk` (Gbit/s): one connection streaming to a sink, the sink's bytes per
//!   second (median of the per-second rates);
//! * `conns_per_s`: connect, one 64-byte exchange, close (the client closes
//!   first), one at a time, completed connections per second;
//! * `idle_conn_bytes`: memory per idle established connection, buffers
//!   excluded: ours is the growth of this process's resident set while 2 × N
//!   connections (both ends are ours) are held, over 2N; the kernel's is the
//!   growth of its slab caches (`/proc/slabinfo`, all caches: socket, inode,
//!   dentry, file, TCP) over 2N sockets (needs root to read slabinfo).
//!
//! Our wire is set up as the kernel's loopback is: `ring:..?csum=1` with the
//! IPv4/TCP/UDP checksum offloads enabled (loopback never computes or checks
//! TCP checksums, `CHECKSUM_PARTIAL`), and a quarter of the pool may hold
//! received data (zero-copy receive, `tcp_rx_mbufs`). Loopback's MTU is
//! 65536: the kernel moves 64 KiB segments. Ours is 1500, except in `bulk`,
//! where it is 9000 (jumbo frames, the largest the `ring` driver takes, so
//! still a seventh of loopback's; 9 KiB buffers, about the same pool memory).
//! `bulk_mtu1500` is the same transfer at 1500 (1448-byte segments against
//! the kernel's 64 KiB ones), reported beside it. We have no TSO, which is how
//! the kernel gets its large segments on a real NIC.
//!
//! Settings that differ from a default kernel, on purpose and stated: our
//! TIME-WAIT lasts 500 ms (a connection-churn client on one address pair runs
//! out of 16 K ephemeral ports otherwise; Linux avoids that on loopback with
//! `tcp_tw_reuse`), delayed ACK 40 ms and Nagle off on both (TCP_NODELAY on the
//! kernel's sockets). Environment: `BENCH_ROUNDS` (default 3), `BENCH_SECS`
//! (default 5), `BENCH_IDLE_CONNS` (default 20000), `TCP_BENCH_BUFFER` (our
//! send and receive buffers, default 4 MiB), `TCP_BENCH_ONLY=bulk|bulk_mtu1500|rtt|conns|idle`
//! (run only our side of one case, for a profiler), `TCP_BENCH_DEBUG` (each
//! side prints its polls, empty and full bursts, frames in and out, and the
//! connection's queues every 200 ms).
//!
//! Our bulk rate is bimodal within a run (about 2 or about 5 GB/s per
//! second); in both modes the window is open, nothing is copied for lack of
//! `tcp_rx_mbufs` and the receiver idles: the sender is CPU-bound. One cause,
//! fixed: its 64 KiB `tcp_send` copies hit the 4K-aliasing slow path of
//! `rep movsb` on this machine's CPU when the two buffers lay 1–31 bytes apart
//! mod 4 KiB (`stack::copy`). The main one follows the machine: on this VM
//! the one-way latency of a cache line between the two vCPUs switches
//! between about 50–80 and 200–350 ns within seconds (the host moves the
//! vCPUs), and in one run our bulk rate followed it: 36–41 Gbit/s at ~50 ns,
//! 12–14 at ~200 ns, while the kernel's moved much less (22–34 Gbit/s in the
//! same run). Not in every run: in a later one ours ran at 12.6–20 Gbit/s
//! with 57–65 ns measured just before each round (the 100 ms probe before a
//! 5 s round need not reflect the placement during it), so this is a lead,
//! not a settled cause. Every line of every segment crosses between our cores twice: the
//! sender fills mbufs the receiver has just read and freed (the pool hands
//! the most recently freed buffers out first, hot in the other core's cache),
//! and the receiver reads what the sender wrote; in the slow placement the
//! sender's stores into those lines back up its store queue, which is why
//! its payload copy and header writes looked 3–6 times slower. The bench
//! measures the latency (`core_to_core_ns`) before each round of each side
//! and reports it with the results.
//!
//! Tried, not kept (A/B runs on this noisy machine, inconclusive or mixed):
//! prefetching the header lines of each batch of fresh mbufs for writing;
//! capping each connection's output pass at 64 or 128 KiB (a TSQ-like
//! limit: in-flight data does reach the whole 4 MB window after a stall of
//! the receiver, but the slow mode also occurs with 60 segments in flight);
//! streaming (non-temporal) stores for the payload copy into mbufs (about
//! +20–40% in the slow placement, apparently worse in the fast one); handing
//! out the oldest freed buffers first (FIFO refill of the per-core caches).
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{env_or, plot_series, stack_config, summarize, write_json, write_md, Row, Series, Summary};
use pmd::runtime::{available_cores, IdlePolicy, Lcore, Runtime};
use pmd::{Mempool, MempoolConfig, MonotonicClock, PortConfig, TxOffloads};
use stack::{
    CongestionControl, ListenConfig, RtoConfig, SynCookies, TcpConfig, TcpHandle, TcpListenerHandle, TcpSocketError,
};

type S = stack::DynDriver;
const MSG: usize = 64;
const MS: u64 = 1_000_000;
const CSUM: TxOffloads = TxOffloads::IPV4_CKSUM.union(TxOffloads::TCP_CKSUM).union(TxOffloads::UDP_CKSUM);

fn tcp_config() -> TcpConfig {
    TcpConfig {
        // Clamped by the stack to what the port's MTU carries (1460 at 1500).
        mss: 8960,
        send_buffer: env_or("TCP_BENCH_BUFFER", 4 << 20),
        recv_buffer: env_or("TCP_BENCH_BUFFER", 4 << 20),
        rto: RtoConfig { initial_ns: 1000 * MS, min_ns: 200 * MS, max_ns: 60_000 * MS },
        max_retransmits: 15,
        syn_retries: 6,
        time_wait_ns: 500 * MS,
        window_scale: Some(7),
        timestamps: true,
        sack: true,
        nagle: false,
        delayed_ack_ns: Some(40 * MS),
        keepalive: None,
        congestion: CongestionControl::Cubic,
        challenge_ack_limit: 1000,
        default_peer_mss: 536,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Rtt,
    Bulk,
    Conns,
}

/// Our server: echo on port 7, sink on port 9.
struct Server {
    s: S,
    echo: TcpListenerHandle,
    sink: TcpListenerHandle,
    conns: Vec<(TcpHandle, bool, Vec<u8>)>,
    sunk: u64,
    buf: Vec<u8>,
    dbg: Option<Dbg>,
}

/// `TCP_BENCH_DEBUG`: a line of counters every 200 ms from each side.
struct Dbg {
    who: &'static str,
    at: Instant,
    polls: u64,
    empty: u64,
    full: u64,
    last: Vec<(String, u64)>,
}

impl Dbg {
    fn new(who: &'static str) -> Dbg {
        Dbg { who, at: Instant::now(), polls: 0, empty: 0, full: 0, last: Vec::new() }
    }

    fn tick(&mut self, s: &S, n: usize, extra: impl FnOnce() -> String) {
        self.polls += 1;
        self.empty += (n == 0) as u64;
        self.full += (n == 32) as u64;
        if self.polls & 255 != 0 || self.at.elapsed() < Duration::from_millis(200) {
            return;
        }
        let ev: Vec<(String, u64)> = s.stats().events.pairs().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let d = |k: &str| {
            let now = ev.iter().find(|p| p.0 == k).map_or(0, |p| p.1);
            now - self.last.iter().find(|p| p.0 == k).map_or(0, |p| p.1)
        };
        eprintln!(
            "{} {:?} polls {} empty {} full {} rx {} tx {} rxlimit {} {}",
            self.who,
            self.at.elapsed().as_millis(),
            self.polls,
            self.empty,
            self.full,
            d("rx_frames"),
            d("tx_frames"),
            d("tcp_rx_mbuf_limit"),
            extra()
        );
        self.last = ev;
        self.at = Instant::now();
        self.polls = 0;
        self.empty = 0;
        self.full = 0;
    }
}

impl Lcore for Server {
    type Snapshot = u64;

    fn poll(&mut self) -> usize {
        let n = self.s.poll();
        if let Some(mut d) = self.dbg.take() {
            let s = &self.s;
            let c = self.conns.first().map(|c| c.0);
            d.tick(s, n, || match c {
                Some(h) => {
                    format!("rq {} held {}", s.tcp_ref().recv_available(h).unwrap_or(0), s.tcp_ref().rx_mbufs_held())
                }
                None => String::new(),
            });
            self.dbg = Some(d);
        }
        while let Ok(h) = self.s.tcp().accept(self.echo) {
            self.conns.push((h, true, Vec::new()));
        }
        while let Ok(h) = self.s.tcp().accept(self.sink) {
            self.conns.push((h, false, Vec::new()));
        }
        let mut i = 0;
        while i < self.conns.len() {
            let (h, echo, pending) = &mut self.conns[i];
            let mut done = false;
            loop {
                match self.s.tcp().recv(*h, &mut self.buf) {
                    Ok(0) => {
                        done = pending.is_empty();
                        break;
                    }
                    Ok(k) if *echo => pending.extend_from_slice(&self.buf[..k]),
                    Ok(k) => self.sunk += k as u64,
                    Err(TcpSocketError::WouldBlock) => break,
                    Err(_) => {
                        done = true;
                        break;
                    }
                }
            }
            if !pending.is_empty() {
                if let Ok(k) = self.s.tcp().send(*h, pending) {
                    pending.drain(..k);
                }
            }
            if done {
                let (h, _, _) = self.conns.swap_remove(i);
                self.s.tcp().close(h);
            } else {
                i += 1;
            }
        }
        n
    }

    fn snapshot(&self) -> u64 {
        self.sunk
    }
}

struct Client {
    s: S,
    mode: Mode,
    to: SocketAddr,
    h: Option<TcpHandle>,
    sent_at: Instant,
    in_flight: bool,
    got: usize,
    rtts_ns: Vec<u64>,
    completed: u64,
    buf: Vec<u8>,
    chunk: Vec<u8>,
    dbg: Option<Dbg>,
}

impl Lcore for Client {
    type Snapshot = u64;

    fn poll(&mut self) -> usize {
        let n = self.s.poll();
        let port = if self.mode == Mode::Bulk { 9 } else { 7 };
        let h = match self.h {
            Some(h) => h,
            None => {
                let to = SocketAddr::new(self.to.ip(), port);
                match self.s.tcp().connect(to, tcp_config()) {
                    Ok(h) => {
                        self.h = Some(h);
                        h
                    }
                    Err(_) => return n,
                }
            }
        };
        match self.s.tcp().connected(h) {
            Ok(true) => {}
            Ok(false) => return n,
            Err(_) => {
                self.s.tcp().close(h);
                self.h = None;
                return n;
            }
        }
        match self.mode {
            Mode::Bulk => {
                let _ = self.s.tcp().send(h, &self.chunk);
                if let Some(mut d) = self.dbg.take() {
                    let s = &self.s;
                    d.tick(s, n, || match s.tcp_ref().connection(h) {
                        Ok(c) => format!(
                            "sbuf {} inflight {} snd_wnd {} backlog {}",
                            (4usize << 20) - c.send_capacity(),
                            c.bytes_in_flight(),
                            c.send_window(),
                            s.tx_backlog()
                        ),
                        Err(_) => String::new(),
                    });
                    self.dbg = Some(d);
                }
            }
            Mode::Rtt | Mode::Conns => {
                if !self.in_flight {
                    if self.s.tcp().send(h, &self.chunk[..MSG]).is_ok() {
                        self.in_flight = true;
                        self.got = 0;
                        self.sent_at = Instant::now();
                        self.s.flush();
                    }
                    return n;
                }
                while let Ok(k) = self.s.tcp().recv(h, &mut self.buf) {
                    if k == 0 {
                        break;
                    }
                    self.got += k;
                }
                if self.got >= MSG {
                    let now = Instant::now();
                    self.in_flight = false;
                    self.completed += 1;
                    if self.mode == Mode::Rtt {
                        if self.rtts_ns.len() < 20_000_000 {
                            self.rtts_ns.push((now - self.sent_at).as_nanos() as u64);
                        }
                    } else {
                        self.s.tcp().close(h);
                        self.h = None;
                    }
                }
            }
        }
        n
    }

    fn snapshot(&self) -> u64 {
        self.completed
    }
}

/// The MTU of the headline bulk case: the largest our `ring` takes (jumbo
/// frames); loopback's is 65536.
const JUMBO_MTU: u16 = 9000;

fn pair(tag: &str, max_conns: usize, mtu: u16) -> (S, S, Mempool, Vec<Box<dyn pmd::Port>>) {
    // About the same memory either way: 65536 × 2 KiB or 16384 × 9 KiB.
    let (count, room) = if mtu <= 1500 { (65536, 2048) } else { (16384, mtu as usize + 216) };
    let pool = Mempool::new(&MempoolConfig::new(format!("tcpb{tag}"), count, room, 128, 256)).unwrap();
    let (na, nb) = (format!("tcpa{tag}"), format!("tcpb{tag}"));
    // Checksum offloads as the kernel's loopback has them (`csum=1`: TCP
    // checksums are left partial and trusted, see pmd's ring driver).
    let mut pa = pmd::open(&format!("ring:{na}?peer={nb}&csum=1")).unwrap();
    let mut pb = pmd::open(&format!("ring:{nb}?peer={na}&csum=1")).unwrap();
    for p in [&mut pa, &mut pb] {
        let mut conf = PortConfig::new(1, 1, 8192, 8192, pool.clone());
        conf.tx_offloads = CSUM;
        p.configure(&conf).unwrap();
        p.set_mtu(mtu).unwrap();
        p.start().unwrap();
    }
    let clock = Arc::new(MonotonicClock);
    let config = |mac, ip| {
        let mut c = stack_config(mac, ip, 8192, max_conns);
        c.mtu = mtu;
        c.tx_offloads = CSUM;
        // A quarter of the pool may hold received data (zero-copy receive).
        c.tcp_rx_mbufs = count / 4;
        c
    };
    let sa = stack::Driver::new(
        config(pa.info().mac, "198.18.0.1/24"),
        pa.take_rx_queue(0).unwrap(),
        pa.take_tx_queue(0).unwrap(),
        pool.clone(),
        clock.clone(),
    )
    .unwrap();
    let sb = stack::Driver::new(
        config(pb.info().mac, "198.18.0.2/24"),
        pb.take_rx_queue(0).unwrap(),
        pb.take_tx_queue(0).unwrap(),
        pool.clone(),
        clock,
    )
    .unwrap();
    (sa, sb, pool, vec![pa, pb])
}

fn listen(s: &mut S, port: u16) -> TcpListenerHandle {
    let addr: SocketAddr = format!("198.18.0.2:{port}").parse().unwrap();
    s.tcp().listen(ListenConfig::new(addr, 1024, 1024, 5_000 * MS, SynCookies::WhenFull, tcp_config())).unwrap()
}

/// One run of ours: (per-second rates, RTT samples in µs).
fn ours(mode: Mode, secs: u32, round: u32, cores: (usize, usize), mtu: u16) -> (Vec<f64>, Vec<f64>) {
    let (sa, mut sb, pool, ports) = pair(&format!("{round}{mode:?}{mtu}"), 1 << 16, mtu);
    let echo = listen(&mut sb, 7);
    let sink = listen(&mut sb, 9);
    let server = Server {
        s: sb,
        echo,
        sink,
        conns: Vec::new(),
        sunk: 0,
        buf: vec![0; 1 << 16],
        dbg: std::env::var("TCP_BENCH_DEBUG").is_ok().then(|| Dbg::new("server")),
    };
    let client = Client {
        s: sa,
        mode,
        to: "198.18.0.2:7".parse().unwrap(),
        h: None,
        sent_at: Instant::now(),
        in_flight: false,
        got: 0,
        rtts_ns: Vec::new(),
        completed: 0,
        buf: vec![0; 1 << 16],
        chunk: vec![0x5a; 1 << 16],
        dbg: std::env::var("TCP_BENCH_DEBUG").is_ok().then(|| Dbg::new("client")),
    };
    let rs = Runtime::launch(vec![(cores.1, server)], IdlePolicy::Spin).expect("server core");
    let rc = Runtime::launch(vec![(cores.0, client)], IdlePolicy::Spin).expect("client core");
    std::thread::sleep(Duration::from_millis(500));
    let read = |rs: &Runtime<Server>, rc: &Runtime<Client>| -> u64 {
        if mode == Mode::Bulk {
            rs.snapshot()[0].unwrap_or(0)
        } else {
            rc.snapshot()[0].unwrap_or(0)
        }
    };
    let mut last = read(&rs, &rc);
    let mut rates = Vec::new();
    for _ in 0..secs {
        std::thread::sleep(Duration::from_secs(1));
        let v = read(&rs, &rc).max(last);
        rates.push((v - last) as f64);
        last = v;
    }
    let mut c = rc.stop().unwrap();
    let s = rs.stop().unwrap();
    let rtts = c[0].rtts_ns.drain(..).skip(1000).map(|n| n as f64 / 1000.0).collect();
    if std::env::var("TCP_BENCH_DEBUG").is_ok() {
        eprintln!(
            "{mode:?} client drops {:?}",
            c[0].s.stats().drops.pairs().into_iter().filter(|p| p.1 > 0).collect::<Vec<_>>()
        );
        eprintln!("{mode:?} server sunk {} bytes in all", s[0].sunk);
        eprintln!(
            "{mode:?} server drops {:?}",
            s[0].s.stats().drops.pairs().into_iter().filter(|p| p.1 > 0).collect::<Vec<_>>()
        );
        if let Some(h) = c[0].h {
            if let Ok(conn) = c[0].s.tcp_ref().connection(h) {
                eprintln!("cwnd {} srtt {:?}", conn.cwnd(), conn.srtt_ns());
            }
        }
    }
    drop(c);
    drop(s);
    drop(ports);
    assert_eq!(pool.available(), pool.count(), "tcp bench leaked mbufs");
    (rates, rtts)
}

/// The one-way latency of moving a cache line between the two cores (ns):
/// two pinned threads bounce a counter for 100 ms; half the mean round trip.
///
/// On a VM it depends on where the host runs the two vCPUs (here it switches
/// between about 50–80 and 200–350 ns within seconds); every payload line of
/// our bulk transfer crosses between the cores twice, so our rate may follow
/// it (see the module docs for how far it did).
fn core_to_core_ns(cores: (usize, usize)) -> f64 {
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
    let ns = probe.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    echo.join().unwrap();
    ns
}

/// Pins a plain thread (the kernel's side) as the runtime pins its lcores.
fn pin(core: usize) {
    core_affinity::set_for_current(core_affinity::CoreId { id: core });
}

/// The kernel's server: mio, echo on one listener, sink on the other.
fn kernel_server(
    core: usize,
    stop: Arc<AtomicBool>,
    sunk: Arc<AtomicU64>,
) -> (SocketAddr, SocketAddr, std::thread::JoinHandle<()>) {
    use mio::net::{TcpListener, TcpStream};
    use mio::{Events, Interest, Poll, Token};
    let mut echo = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut sink = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let (ea, sa) = (echo.local_addr().unwrap(), sink.local_addr().unwrap());
    let t = std::thread::spawn(move || {
        pin(core);
        let mut poll = Poll::new().unwrap();
        poll.registry().register(&mut echo, Token(0), Interest::READABLE).unwrap();
        poll.registry().register(&mut sink, Token(1), Interest::READABLE).unwrap();
        let mut events = Events::with_capacity(256);
        let mut conns: HashMap<usize, (TcpStream, bool)> = HashMap::new();
        let mut next = 2;
        let mut buf = vec![0u8; 1 << 16];
        while !stop.load(Ordering::Relaxed) {
            poll.poll(&mut events, Some(Duration::from_millis(50))).unwrap();
            for ev in events.iter() {
                match ev.token() {
                    Token(l @ (0 | 1)) => loop {
                        let r = if l == 0 { echo.accept() } else { sink.accept() };
                        match r {
                            Ok((mut s, _)) => {
                                s.set_nodelay(true).unwrap();
                                poll.registry().register(&mut s, Token(next), Interest::READABLE).unwrap();
                                conns.insert(next, (s, l == 0));
                                next += 1;
                            }
                            Err(_) => break,
                        }
                    },
                    Token(t) => {
                        let Some((s, is_echo)) = conns.get_mut(&t) else { continue };
                        let mut close = false;
                        loop {
                            match s.read(&mut buf) {
                                Ok(0) => {
                                    close = true;
                                    break;
                                }
                                Ok(k) if *is_echo => {
                                    // 64-byte messages: the socket buffer takes them.
                                    let _ = s.write_all(&buf[..k]);
                                }
                                Ok(k) => {
                                    sunk.fetch_add(k as u64, Ordering::Relaxed);
                                }
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                                Err(_) => {
                                    close = true;
                                    break;
                                }
                            }
                        }
                        if close {
                            if let Some((mut s, _)) = conns.remove(&t) {
                                let _ = poll.registry().deregister(&mut s);
                            }
                        }
                    }
                }
            }
        }
    });
    (ea, sa, t)
}

/// One run of the kernel: (per-second rates, RTT samples in µs).
fn kernel(mode: Mode, secs: u32, cores: (usize, usize)) -> (Vec<f64>, Vec<f64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let sunk = Arc::new(AtomicU64::new(0));
    let (ea, sa, srv) = kernel_server(cores.1, stop.clone(), sunk.clone());
    let done = Arc::new(AtomicU64::new(0));
    let cstop = Arc::new(AtomicBool::new(false));
    let (done2, cstop2) = (done.clone(), cstop.clone());
    let client = std::thread::spawn(move || {
        pin(cores.0);
        let mut rtts = Vec::new();
        let msg = [0x5au8; MSG];
        let mut buf = [0u8; MSG];
        let chunk = vec![0x5au8; 1 << 16];
        let connect = |to| {
            let s = std::net::TcpStream::connect(to).unwrap();
            s.set_nodelay(true).unwrap();
            s
        };
        match mode {
            Mode::Rtt => {
                let mut s = connect(ea);
                while !cstop2.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    s.write_all(&msg).unwrap();
                    s.read_exact(&mut buf).unwrap();
                    rtts.push((Instant::now() - t0).as_nanos() as u64);
                    done2.fetch_add(1, Ordering::Relaxed);
                }
            }
            Mode::Bulk => {
                let mut s = connect(sa);
                while !cstop2.load(Ordering::Relaxed) {
                    s.write_all(&chunk).unwrap();
                }
            }
            Mode::Conns => {
                while !cstop2.load(Ordering::Relaxed) {
                    let mut s = connect(ea);
                    s.write_all(&msg).unwrap();
                    s.read_exact(&mut buf).unwrap();
                    drop(s);
                    done2.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        rtts
    });
    std::thread::sleep(Duration::from_millis(500));
    let read = || if mode == Mode::Bulk { sunk.load(Ordering::Relaxed) } else { done.load(Ordering::Relaxed) };
    let mut last = read();
    let mut rates = Vec::new();
    for _ in 0..secs {
        std::thread::sleep(Duration::from_secs(1));
        let v = read();
        rates.push((v - last) as f64);
        last = v;
    }
    cstop.store(true, Ordering::Relaxed);
    let rtts = client.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    srv.join().unwrap();
    (rates, rtts.into_iter().skip(1000).map(|n| n as f64 / 1000.0).collect())
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Ours: RSS growth per idle established connection (2n of them, both ends ours).
fn ours_idle(n: usize) -> f64 {
    // The table sized for the load, as a deployment would size it: a reserved
    // hash index much larger than its contents is touched all over.
    let (mut sa, mut sb, pool, ports) = pair("idle", n + 1024, 1500);
    // 16 K ephemeral ports per server port: spread over several.
    let ls: Vec<TcpListenerHandle> = (0..n.div_ceil(16_000) as u16).map(|i| listen(&mut sb, 7 + i)).collect();
    // Touch every buffer of the pool first, so packet buffers paged in during
    // the handshakes do not count as connection memory.
    let mut all = Vec::new();
    while let Ok(mut m) = pool.alloc() {
        m.append(1).expect("room")[0] = 1;
        all.push(m);
    }
    drop(all);
    let before = rss_bytes();
    let mut accepted = Vec::with_capacity(n);
    let mut clients = Vec::with_capacity(n);
    while accepted.len() < n {
        let batch = (n - clients.len()).min(256);
        for _ in 0..batch {
            let to = SocketAddr::new("198.18.0.2".parse().unwrap(), 7 + (clients.len() % ls.len()) as u16);
            clients.push(sa.tcp().connect(to, tcp_config()).unwrap());
        }
        for _ in 0..8 {
            sa.poll();
            sb.poll();
            for &l in &ls {
                while let Ok(h) = sb.tcp().accept(l) {
                    accepted.push(h);
                }
            }
        }
    }
    for _ in 0..100 {
        sa.poll();
        sb.poll();
    }
    let grown = rss_bytes().saturating_sub(before) as f64;
    assert!(clients.iter().all(|&c| sa.tcp().connected(c) == Ok(true)));
    drop((sa, sb, ports, pool));
    grown / (2 * n) as f64
}

fn slab_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/slabinfo").ok()?;
    let mut total = 0u64;
    for l in text.lines().skip(2) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() > 3 {
            let (active, size): (u64, u64) = (f[1].parse().ok()?, f[3].parse().ok()?);
            total += active * size;
        }
    }
    Some(total)
}

/// The kernel: slab growth per idle established socket (2n of them).
fn kernel_idle(n: usize) -> Option<f64> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    let addr = l.local_addr().ok()?;
    let before = slab_bytes()?;
    let mut keep = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let c = std::net::TcpStream::connect(addr).ok()?;
        let (s, _) = l.accept().ok()?;
        keep.push(c);
        keep.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = slab_bytes()?;
    drop(keep);
    Some(after.saturating_sub(before) as f64 / (2 * n) as f64)
}

fn fmt(s: &Summary, unit: f64) -> String {
    format!("{:.2} ({:.2}–{:.2})", s.p50 / unit, s.p10 / unit, s.p90 / unit)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn main() {
    let rounds: u32 = env_or("BENCH_ROUNDS", 3);
    let secs: u32 = env_or("BENCH_SECS", 5);
    let idle_n: usize = env_or("BENCH_IDLE_CONNS", 20_000);
    let avail = available_cores();
    let cores = (avail[0], *avail.get(1).unwrap_or(&avail[0]));
    if cores.0 == cores.1 {
        eprintln!("tcp bench: only one core available; both sides share it");
    }
    let mut rows = Vec::new();
    let mut md = String::from("# TCP: our stack over the in-memory wire vs the kernel over loopback\n\n");
    md += &format!(
        "CPU: {}. Two pinned cores ({} client, {} server); {rounds} rounds × {secs} s per case, same run. \
         Rates are medians of per-second samples (p10–p90 in brackets). Ours: `ring` with `csum=1` \
         (checksums left to the device, as loopback does), zero-copy receive, MTU 1500 except in \
         `bulk` (MTU 9000, jumbo frames: the largest our ring takes; `bulk_mtu1500` is the same at 1500); \
         the kernel: loopback (MTU 65536).\n\n",
        bench::cpu_model(),
        cores.0,
        cores.1
    );
    // `TCP_BENCH_ONLY=bulk|rtt|conns` runs only our side of one case (for a
    // profiler); `idle` only our idle-connection memory.
    if let Ok(only) = std::env::var("TCP_BENCH_ONLY") {
        if only == "idle" {
            println!("idle_conn_bytes: {:.0}", ours_idle(idle_n));
            return;
        }
        let (mode, mtu) = match only.as_str() {
            "bulk" => (Mode::Bulk, JUMBO_MTU),
            "bulk_mtu1500" => (Mode::Bulk, 1500),
            "rtt" => (Mode::Rtt, 1500),
            _ => (Mode::Conns, 1500),
        };
        let (rates, _) = ours(mode, secs, 0, cores, mtu);
        println!("{only}: per-second {rates:?}");
        return;
    }
    // Idle memory first: RSS growth is only connection memory while the
    // allocator has no memory freed by earlier cases to hand out again.
    let oi = ours_idle(idle_n);
    // RTT
    let (mut o_rtt, mut k_rtt) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        o_rtt.extend(ours(Mode::Rtt, secs, r, cores, 1500).1);
        k_rtt.extend(kernel(Mode::Rtt, secs, cores).1);
    }
    // Record nanoseconds: the histogram stores integers.
    let (os, ks) = (summarize(&o_rtt, 1000.0), summarize(&k_rtt, 1000.0));
    for (case, o, k) in [("rtt_p50", os.p50, ks.p50), ("rtt_p99", os.p99, ks.p99), ("rtt_p999", os.p999, ks.p999)] {
        rows.push(Row::new(case, "us", "lower", o, "kernel-loopback", k));
    }
    md += "| case | ours | kernel (loopback) | ratio ours/kernel |\n|---|---|---|---|\n";
    md += &format!("| rtt p50 (µs) | {:.2} | {:.2} | {:.3} |\n", os.p50, ks.p50, os.p50 / ks.p50);
    md += &format!("| rtt p99 (µs) | {:.2} | {:.2} | {:.3} |\n", os.p99, ks.p99, os.p99 / ks.p99);
    md += &format!("| rtt p99.9 (µs) | {:.2} | {:.2} | {:.3} |\n", os.p999, ks.p999, os.p999 / ks.p999);
    // Bulk and conns
    let mut c2c_notes = Vec::new();
    for (mode, mtu, case, metric, unit) in [
        (Mode::Bulk, JUMBO_MTU, "bulk", "Gbit/s", 1e9 / 8.0),
        (Mode::Bulk, 1500, "bulk_mtu1500", "Gbit/s", 1e9 / 8.0),
        (Mode::Conns, 1500, "conns_per_s", "conns/s", 1.0),
    ] {
        let (mut o, mut k) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            let c2c = core_to_core_ns(cores);
            let ro = ours(mode, secs, r, cores, mtu).0;
            let c2k = core_to_core_ns(cores);
            let rk = kernel(mode, secs, cores).0;
            let g = |v: &[f64]| v.iter().map(|x| format!("{:.1}", x / unit)).collect::<Vec<_>>().join(" ");
            eprintln!(
                "{case} round {r}: ours [{}] (core-to-core {c2c:.0} ns before), kernel [{}] ({c2k:.0} ns before)",
                g(&ro),
                g(&rk)
            );
            if mode == Mode::Bulk {
                c2c_notes.push(format!("{case} {c2c:.0}/{c2k:.0}"));
            }
            o.extend(ro);
            k.extend(rk);
        }
        let (os, ks) = (summarize(&o, 1.0), summarize(&k, 1.0));
        rows.push(Row::new(case, metric, "higher", os.p50 / unit, "kernel-loopback", ks.p50 / unit));
        md += &format!("| {case} ({metric}) | {} | {} | {:.3} |\n", fmt(&os, unit), fmt(&ks, unit), os.p50 / ks.p50);
    }
    // Idle memory (ours was measured first).
    // Both ends of each kernel connection are file descriptors of this process.
    let ki = kernel_idle((idle_n / 2).min(5000));
    match ki {
        Some(k) => {
            rows.push(Row::new("idle_conn_bytes", "bytes", "lower", oi, "kernel-slab", k));
            md += &format!("| idle_conn_bytes | {oi:.0} | {k:.0} | {:.3} |\n", oi / k);
        }
        None => {
            md += &format!("| idle_conn_bytes | {oi:.0} | (no /proc/slabinfo: not root) | – |\n");
        }
    }
    md += &format!(
        "\nBulk rounds, core-to-core cache-line transfer (one way, ns) measured just before ours/the kernel: {}. \
         On this VM it switches between about 50–80 and 200–350 ns as the host places the two vCPUs; \
         our bulk rate has followed it in some runs and not in others (see the module doc of \
         `bench/src/bin/tcp.rs`).\n",
        c2c_notes.join(", ")
    );
    // Latency CDF plot.
    let cdf = |v: &[f64]| -> Vec<(f64, f64)> {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        (0..=1000).map(|i| (percentile(&s, i as f64 / 1000.0 * 0.999), i as f64 / 10.0 * 0.999)).collect()
    };
    let plot = plot_series(
        "tcp",
        "64-byte TCP ping-pong RTT, CDF (to p99.9)",
        "round trip (µs)",
        "percent of exchanges",
        &[
            Series { label: "ours (ring, 2 cores)".into(), points: cdf(&o_rtt) },
            Series { label: "kernel (loopback, 2 cores)".into(), points: cdf(&k_rtt) },
        ],
    );
    md += &format!(
        "\nLatency CDF: [`{}`]({}). Idle bytes: ours = RSS growth over {} connections (both ends ours), \
         kernel = slab growth over {} sockets.\n\nReproduce: `scripts/bench.sh tcp`.\n",
        plot.file_name().unwrap().to_string_lossy(),
        plot.file_name().unwrap().to_string_lossy(),
        2 * idle_n,
        2 * (idle_n / 2).min(5000)
    );
    println!("{md}");
    write_md("tcp", &md);
    write_json("tcp", &rows, serde_json::json!({ "rounds": rounds, "secs": secs, "cores": [cores.0, cores.1] }));
}
