//! The `virtio-user:` port against DPDK's own vhost-user back end
//! (`dpdk-testpmd --no-huge --vdev net_vhost0,iface=SOCK`) in io, macswap,
//! rxonly and txonly modes, with exact packet counts on both sides, patterned
//! payloads checked byte for byte, with and without `VIRTIO_F_IN_ORDER`
//! (`in_order=1`, the default, and `in_order=0`), `testpmd conformance`, two
//! queue pairs, both connection modes and back-end restarts; and clear errors for a missing
//! socket, a refused connection and features a back end does not offer (a fake
//! back end in this file, no root needed).
//!
//! Needs root (DPDK's EAL) and the `dpdk-testpmd` binary (Debian package
//! `dpdk`); our side needs neither DPDK nor hugepages. Outside CI a test that
//! cannot run says why and passes; under `CI=true` nothing may skip. Every wait
//! is bounded, every dpdk-testpmd is killed on drop, sockets live in a
//! temporary directory, and one file lock keeps the back ends of concurrently
//! running test processes from competing for the two cores.

mod dpdk_common;

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::cli;

use dpdk_common::{core, failure, json, lacks, prefix, skip, testpmd, u, wait_bounded, RUN_LIMIT};
use pmd::mempool::DEFAULT_HEADROOM;
use pmd::{Mbuf, Mempool, MempoolConfig, Port, PortConfig, RxQueue, TxQueue};

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("pmdt-vu-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    fn sock(&self) -> PathBuf {
        self.0.join("vhost.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One back end at a time across test processes: a directory made atomically,
/// holding the owner's pid (a lock whose owner died is taken over), removed on
/// drop.
struct BackendLock(PathBuf);

impl BackendLock {
    /// The lock, where a back end can run here at all (root for its EAL, the
    /// programs it needs); `None` where the test skips.
    fn runnable() -> Option<BackendLock> {
        if skip("needs root for dpdk-testpmd's EAL") || lacks(&["stdbuf", "dpdk-testpmd"]) {
            return None;
        }
        Some(BackendLock::take())
    }

    fn take() -> BackendLock {
        let dir = std::env::temp_dir().join("pmd-virtio-user-tests.lock");
        let t0 = Instant::now();
        loop {
            if std::fs::create_dir(&dir).is_ok() {
                std::fs::write(dir.join("pid"), std::process::id().to_string()).unwrap();
                return BackendLock(dir);
            }
            let owner = std::fs::read_to_string(dir.join("pid")).ok().and_then(|p| p.trim().parse::<u32>().ok());
            let dead = owner.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists());
            if dead || t0.elapsed() > Duration::from_secs(600) {
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for BackendLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `dpdk-testpmd` with one `net_vhost` port: killed on drop.
struct Vhost {
    child: Option<Child>,
    sock: PathBuf,
    /// Its stdout so far (read by a thread, so we can wait for a line).
    out: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Vhost {
    /// Starts the back end in `mode` (`io`, `macswap`, `rxonly`, `txonly`) on
    /// `sock`; `client` makes it connect to us (our `server=1`).
    fn start(sock: &Path, mode: &str, queues: u16, client: bool, tag: &str) -> Vhost {
        if !client {
            let _ = std::fs::remove_file(sock);
        }
        let vdev =
            format!("net_vhost0,iface={},queues={queues}{}", sock.display(), if client { ",client=1" } else { "" });
        // Line-buffered stdout (a pipe is block-buffered otherwise), so we see
        // when it starts forwarding.
        let child = Command::new("stdbuf")
            .args(["-oL", "dpdk-testpmd"])
            .args(["-l", "0,1", "--main-lcore", "1", "--no-huge", "-m", "512", "--no-pci", "--no-shconf"])
            .args(["--no-telemetry", "--file-prefix", &prefix(tag), "--log-level=lib.eal:error"])
            .args(["--log-level=lib.vhost.config:error", "--vdev", &vdev, "--"])
            .arg(format!("--forward-mode={mode}"))
            .args(["--nb-cores=1", "--total-num-mbufs=16384"])
            .arg(format!("--rxq={queues}"))
            .arg(format!("--txq={queues}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("stdbuf runs (Debian package coreutils)");
        let mut child = child;
        let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let reader = {
            let out = out.clone();
            testkit::drain(child.stdout.take().unwrap(), move |b| {
                out.lock().unwrap().push_str(&String::from_utf8_lossy(b))
            })
        };
        let mut v = Vhost { child: Some(child), sock: sock.to_path_buf(), out, reader: Some(reader) };
        if !client {
            v.wait_for_socket();
            v.wait_forwarding();
        }
        v
    }

    /// Waits until the back end forwards. dpdk-testpmd empties its receive
    /// queues right before it starts forwarding, so frames sent earlier
    /// (possible when it connects to us) would be thrown away.
    fn wait_forwarding(&mut self) {
        self.wait_output("Press enter to exit");
    }

    /// Waits until its output contains `text`.
    fn wait_output(&mut self, text: &str) {
        let t0 = Instant::now();
        while !self.out.lock().unwrap().contains(text) {
            self.assert_running(&format!("before it printed '{text}'"));
            assert!(t0.elapsed() < Duration::from_secs(30), "dpdk-testpmd never printed '{text}'");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_for_socket(&mut self) {
        let t0 = Instant::now();
        while !self.sock.exists() {
            self.assert_running(&format!("before it made a socket at {}", self.sock.display()));
            assert!(t0.elapsed() < Duration::from_secs(30), "dpdk-testpmd made no socket at {}", self.sock.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        // The file appears at bind(), the listen() follows right after.
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Fails at once, with what it printed, if the back end has exited: a
    /// back end that could not start is not waited for until a time-out.
    fn assert_running(&mut self, when: &str) {
        let c = self.child.as_mut().expect("running");
        if let Some(st) = c.try_wait().expect("try_wait") {
            let mut err = String::new();
            if let Some(e) = c.stderr.as_mut() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("dpdk-testpmd exited ({st}) {when}: {err}{}", self.out.lock().unwrap());
        }
    }

    /// Ends it the way it asks ("Press enter to exit") and returns its final
    /// (RX-packets, TX-packets, TX-dropped) and its output.
    fn finish(mut self) -> (u64, u64, u64, String) {
        let mut child = self.child.take().unwrap();
        let _ = child.stdin.take().unwrap().write_all(b"\n");
        let out = wait_bounded(child, RUN_LIMIT);
        let _ = self.reader.take().unwrap().join();
        let text = self.out.lock().unwrap().clone();
        let last = |key: &str| -> Option<u64> {
            text.lines()
                .rev()
                .filter_map(|l| l.trim().strip_prefix(key))
                .find_map(|r| r.split_whitespace().next()?.parse().ok())
        };
        let dropped: Option<u64> = text
            .lines()
            .rev()
            .filter(|l| l.trim().starts_with("TX-packets:"))
            .find_map(|l| l.split("TX-dropped:").nth(1)?.split_whitespace().next()?.parse().ok());
        match (last("RX-packets:"), last("TX-packets:"), dropped) {
            (Some(r), Some(t), Some(d)) => (r, t, d, text),
            _ => panic!("no statistics from dpdk-testpmd: {text} {}", String::from_utf8_lossy(&out.stderr)),
        }
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Our testpmd (`--port <virtio_user on a fresh socket, spec_opts> --cores
/// <core> <args>`) against a back end in `mode` with `queues` queue pairs:
/// our JSON report (no mbuf leaked) and the back end's counts
/// (`Vhost::finish`).
fn ours_against_vhost(
    tag: &str,
    mode: &str,
    queues: u16,
    spec_opts: &str,
    args: &str,
) -> (Value, (u64, u64, u64, String)) {
    let dir = TempDir::new(tag);
    let peer = Vhost::start(&dir.sock(), mode, queues, false, &format!("vu-{tag}"));
    let v = json(&testpmd(&cli(&format!("--port {} --cores {} {args}", spec(&dir.sock(), spec_opts), core())), ""));
    let theirs = peer.finish();
    assert_eq!(u(&v, "mbufs_leaked"), 0, "{v}");
    (v, theirs)
}

fn spec(sock: &Path, opts: &str) -> String {
    format!("virtio-user:{}{opts}", sock.display())
}

fn shared_pool(n: usize) -> Mempool {
    Mempool::new_shared(&MempoolConfig::new("vu-test", n, 2048, DEFAULT_HEADROOM, 0)).unwrap()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A UDP/IPv4 frame of `len` bytes whose payload is a pattern of `seq`.
fn patterned(pool: &Mempool, len: usize, seq: u32) -> Mbuf {
    let mut m = pool.alloc().unwrap();
    let d = m.append(len).unwrap();
    d.fill(0);
    d[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xbb]);
    d[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xaa]);
    d[12..14].copy_from_slice(&[0x08, 0x00]);
    d[14] = 0x45;
    d[16..18].copy_from_slice(&((len - 14) as u16).to_be_bytes());
    d[22] = 64;
    d[23] = 17;
    d[26..30].copy_from_slice(&[198, 18, 0, 1]);
    d[30..34].copy_from_slice(&[198, 18, 0, 2]);
    d[42..46].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in d[46..].iter_mut().enumerate() {
        *b = (i as u32).wrapping_mul(7).wrapping_add(seq) as u8;
    }
    m
}

/// Sends `frames` on `tx` and collects as many from `rx`, bounded in time.
fn round_trip(rx: &mut dyn RxQueue, tx: &mut dyn TxQueue, mut frames: Vec<Mbuf>) -> Vec<Mbuf> {
    let want = frames.len();
    let mut got = Vec::new();
    let t0 = Instant::now();
    while (got.len() < want || !frames.is_empty()) && t0.elapsed() < Duration::from_secs(10) {
        if !frames.is_empty() {
            let n = frames.len().min(32);
            let mut burst: Vec<Mbuf> = frames.drain(..n).collect();
            tx.tx_burst(&mut burst);
            frames.splice(0..0, burst);
        } else {
            tx.tx_burst(&mut Vec::new());
        }
        rx.rx_burst(&mut got, 64);
    }
    assert!(frames.is_empty(), "{} frames were never accepted for sending", frames.len());
    got
}

/// Checks that `got` are exactly `sent` (by sequence number), payload intact,
/// MACs swapped or not.
fn assert_intact(sent: &[Vec<u8>], got: &[Mbuf], swapped: bool) {
    assert_eq!(got.len(), sent.len(), "frames back");
    for m in got {
        let d = m.data();
        let seq = u32::from_be_bytes(d[42..46].try_into().unwrap()) as usize;
        let want = &sent[seq];
        assert_eq!(d.len(), want.len(), "frame {seq} length");
        if swapped {
            assert_eq!(&d[0..6], &want[6..12], "frame {seq}: destination is the old source");
            assert_eq!(&d[6..12], &want[0..6], "frame {seq}: source is the old destination");
        } else {
            assert_eq!(&d[0..12], &want[0..12], "frame {seq} MACs");
        }
        assert!(d[12..] == want[12..], "frame {seq}: payload changed on the way");
    }
}

/// `rounds` rounds of 200 patterned frames, their lengths from the minimum to
/// the MTU (`60 + (i * step.0 + round * step.1) % 1455`), each sent and
/// received back intact (`assert_intact`); returns how many came back.
fn exchange_rounds(
    pool: &Mempool,
    rx: &mut dyn RxQueue,
    tx: &mut dyn TxQueue,
    rounds: u32,
    step: (u32, u32),
    swapped: bool,
) -> u64 {
    let mut total = 0u64;
    for round in 0..rounds {
        let frames: Vec<Mbuf> =
            (0..200u32).map(|i| patterned(pool, 60 + ((i * step.0 + round * step.1) as usize % 1455), i)).collect();
        let sent: Vec<Vec<u8>> = frames.iter().map(|m| m.data().to_vec()).collect();
        let got = round_trip(rx, tx, frames);
        assert_intact(&sent, &got, swapped);
        total += got.len() as u64;
    }
    total
}

fn open_port(spec: &str, pool: &Mempool, queues: u16) -> Box<dyn Port> {
    let mut p = pmd::open(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    p.configure(&PortConfig::new(queues, queues, 256, 256, pool.clone())).unwrap();
    p.set_promiscuous(true).unwrap();
    p.start().unwrap();
    p
}

#[test]
fn io_and_macswap_patterned_frames_come_back_intact_exact_counts() {
    let Some(_l) = BackendLock::runnable() else { return };
    for mode in ["io", "macswap"] {
        let dir = TempDir::new(mode);
        let peer = Vhost::start(&dir.sock(), mode, 1, false, &format!("vu-{mode}"));
        let pool = shared_pool(4096);
        let mut port = open_port(&spec(&dir.sock(), ""), &pool, 1);
        wait_until("link up", Duration::from_secs(5), || port.link().up);
        let mut rx = port.take_rx_queue(0).unwrap();
        let mut tx = port.take_tx_queue(0).unwrap();
        // Lengths from the minimum to the MTU, 200 frames a round (below the
        // ring size, so nothing can be dropped anywhere).
        let total = exchange_rounds(&pool, &mut *rx, &mut *tx, 20, (37, 101), mode == "macswap");
        let st = port.stats();
        assert_eq!((st.opackets, st.ipackets), (total, total), "{st:?}");
        assert_eq!(st.ierrors + st.oerrors + st.imissed + st.rx_nombuf, 0, "{st:?}");
        let copies = port.xstats().into_iter().find(|(k, _)| k == "tx_copies").unwrap().1;
        assert_eq!(copies, 0, "frames of the registered pool go out without a copy");
        drop((rx, tx));
        drop(port);
        assert_eq!(pool.in_use(), 0, "every buffer back in the pool");
        let (prx, ptx, pdrop, text) = peer.finish();
        assert_eq!((prx, ptx, pdrop), (total, total, 0), "{mode}: the back end saw exactly ours: {text}");
    }
}

#[test]
fn our_testpmd_io_loop_through_vhost_exact_counts() {
    let Some(_l) = BackendLock::runnable() else { return };
    for mode in ["io", "macswap"] {
        let (v, (prx, ptx, pdrop, text)) = ours_against_vhost(
            &format!("tp{mode}"),
            mode,
            1,
            "",
            "--fwd io --duration 1 --tx-first 2 --rxd 256 --txd 256 --txpkts 300 --verify-payload",
        );
        let p = &v["ports"][0];
        assert_eq!(u(p, "tx_dropped") + u(p, "rx_errors") + u(p, "tx_errors") + u(p, "rx_nombuf"), 0, "{p}");
        // Every frame that came back was ours, checked, and intact.
        assert_eq!(u(p, "verified"), u(p, "rx_packets"), "{p}");
        assert_eq!(u(p, "bad_payload"), 0, "{p}");
        // 64 frames circulate: whatever is not back with us is in flight.
        assert_eq!(u(p, "tx_packets") - u(p, "rx_packets"), 64, "{v}");
        assert_eq!(u(p, "tx_bytes") - u(p, "rx_bytes"), 64 * 300, "{v}");
        // Each frame came back at least once (no rate is asserted: the machine
        // is shared).
        assert!(u(p, "rx_packets") >= 64, "{v}");
        assert_eq!(p["xstats"]["tx_copies"].as_u64(), Some(0), "{v}");
        // The back end forwarded everything it took (but a burst caught by our
        // stop), and took all we sent but what was still in our transmit ring.
        assert_eq!(prx, ptx + pdrop, "{text}");
        assert!(pdrop <= 32, "{text}");
        assert!(prx <= u(p, "tx_packets") && prx + 64 >= u(p, "tx_packets"), "ours {v}; theirs {text}");
        assert!(ptx >= u(p, "rx_packets"), "ours {v}; theirs {text}");
    }
}

#[test]
fn txonly_into_vhost_rxonly_exact_counts() {
    let Some(_l) = BackendLock::runnable() else { return };
    let nb = 200_000u64;
    let (v, (prx, _, _, text)) = ours_against_vhost(
        "txonly",
        "rxonly",
        1,
        "",
        &format!("--fwd txonly --duration 1.5 --nb-pkts {nb} --txpkts 128"),
    );
    let p = &v["ports"][0];
    let sent = u(p, "tx_packets");
    assert_eq!(sent + u(p, "tx_dropped"), nb, "every generated frame sent or counted: {v}");
    assert!(sent >= 32, "{v}");
    assert_eq!(u(p, "tx_bytes"), sent * 128, "{v}");
    assert_eq!(prx, sent, "the back end received exactly what we sent; theirs: {text}");
}

#[test]
fn rxonly_from_vhost_txonly_exact_counts() {
    let Some(_l) = BackendLock::runnable() else { return };
    let dir = TempDir::new("rxonly");
    let mut peer = Vhost::start(&dir.sock(), "txonly", 1, false, "vu-txonly");
    let sock = dir.sock();
    let ours = std::thread::spawn(move || {
        testpmd(&["--port", &spec(&sock, ""), "--fwd", "rxonly", "--cores", &core(), "--duration", "4"], "")
    });
    // Once we are connected (its link comes up), let it send for a while, then
    // stop it; we keep receiving what it had queued after the link went down.
    peer.wait_output("link state change event");
    std::thread::sleep(Duration::from_millis(1000));
    let (_, ptx, _, text) = peer.finish();
    let v = json(&ours.join().unwrap());
    assert_eq!(u(&v, "mbufs_leaked"), 0, "{v}");
    let p = &v["ports"][0];
    assert!(ptx > 0, "{text}");
    assert_eq!(u(p, "rx_packets"), ptx, "we received exactly what the back end sent; theirs: {text}; ours {v}");
    assert_eq!(u(p, "rx_errors") + u(p, "rx_nombuf"), 0, "{v}");
    assert_eq!(p["xstats"]["link_down_events"].as_u64(), Some(1), "{v}");
}

/// Both ring disciplines against the same back end: what is negotiated is
/// what was asked, patterned frames of every length come back intact with
/// exact counts on both sides, and our testpmd verifies every payload of an io
/// loop (`--verify-payload`) and receives exactly what the back end sent.
#[test]
fn in_order_on_and_off_exact_counts_and_intact_payloads() {
    use pmd::drivers::virtio_user::{features as f, Options, VirtioUserPort};
    let Some(_l) = BackendLock::runnable() else { return };
    for in_order in [true, false] {
        let tag = if in_order { "io1" } else { "io0" };
        let opt = if in_order { "?in_order=1" } else { "?in_order=0" };
        // The library: features, exact counts, intact payloads.
        let dir = TempDir::new(tag);
        let peer = Vhost::start(&dir.sock(), "macswap", 1, false, &format!("vu-{tag}"));
        let pool = shared_pool(4096);
        let opts = Options { in_order, ..Default::default() };
        let mut port = VirtioUserPort::open(dir.sock().to_str().unwrap(), opts, pmd::MacAddr([2, 0, 0, 0, 0, 1]))
            .unwrap_or_else(|e| panic!("{opt}: {e}"));
        assert!(port.offered_features() & f::IN_ORDER != 0, "DPDK 22.11's vhost offers VIRTIO_F_IN_ORDER");
        port.configure(&PortConfig::new(1, 1, 256, 256, pool.clone())).unwrap();
        port.set_promiscuous(true).unwrap();
        port.start().unwrap();
        assert_eq!(port.acked_features() & f::IN_ORDER != 0, in_order, "{opt}: acked {:#x}", port.acked_features());
        wait_until("link up", Duration::from_secs(5), || port.link().up);
        let mut rx = port.take_rx_queue(0).unwrap();
        let mut tx = port.take_tx_queue(0).unwrap();
        // More than a ring's worth in all (the rings wrap), 200 a round.
        let total = exchange_rounds(&pool, &mut *rx, &mut *tx, 12, (53, 97), true);
        let st = port.stats();
        assert_eq!((st.opackets, st.ipackets), (total, total), "{opt}: {st:?}");
        assert_eq!(st.ierrors + st.oerrors + st.imissed + st.rx_nombuf, 0, "{opt}: {st:?}");
        drop((rx, tx));
        drop(port);
        assert_eq!(pool.in_use(), 0, "{opt}: every buffer back in the pool");
        let (prx, ptx, pdrop, text) = peer.finish();
        assert_eq!((prx, ptx, pdrop), (total, total, 0), "{opt}: the back end saw exactly ours: {text}");

        // Our testpmd's io loop, every payload verified. 3 s, not 1: on a
        // loaded machine the back end's first forwarded burst came after our
        // 1 s run had ended (seen once: rx_packets 0, tx 64).
        let dir = TempDir::new(&format!("{tag}tp"));
        let peer = Vhost::start(&dir.sock(), "io", 1, false, &format!("vu-{tag}tp"));
        let v = json(&testpmd(
            &cli(&format!(
                "--port {} --fwd io --cores {} --duration 3 --tx-first 2 --txpkts 200 --verify-payload",
                spec(&dir.sock(), opt),
                core()
            )),
            "",
        ));
        let (prx, ptx, pdrop, text) = peer.finish();
        assert_eq!(u(&v, "mbufs_leaked"), 0, "{opt}: {v}");
        let p = &v["ports"][0];
        assert_eq!(u(p, "verified"), u(p, "rx_packets"), "{opt}: {p}");
        assert!(u(p, "rx_packets") >= 64, "{opt}: {p}");
        assert_eq!(u(p, "bad_payload") + u(p, "rx_errors") + u(p, "tx_errors") + u(p, "tx_dropped"), 0, "{opt}: {p}");
        assert_eq!(u(p, "tx_packets") - u(p, "rx_packets"), 64, "{opt}: 64 frames circulate: {v}");
        assert_eq!(prx, ptx + pdrop, "{opt}: {text}");
        assert!(prx <= u(p, "tx_packets") && prx + 64 >= u(p, "tx_packets"), "{opt}: ours {v}; theirs {text}");

        // Receive only: exactly what the back end sent.
        let dir = TempDir::new(&format!("{tag}rx"));
        let mut peer = Vhost::start(&dir.sock(), "txonly", 1, false, &format!("vu-{tag}rx"));
        let sock = dir.sock();
        let o = opt.to_string();
        let ours = std::thread::spawn(move || {
            testpmd(&["--port", &spec(&sock, &o), "--fwd", "rxonly", "--cores", &core(), "--duration", "3"], "")
        });
        peer.wait_output("link state change event");
        std::thread::sleep(Duration::from_millis(700));
        let (_, ptx, _, text) = peer.finish();
        let v = json(&ours.join().unwrap());
        let p = &v["ports"][0];
        assert!(ptx > 0, "{opt}: {text}");
        assert_eq!(
            u(p, "rx_packets"),
            ptx,
            "{opt}: we received exactly what the back end sent; theirs {text}; ours {v}"
        );
        assert_eq!(u(p, "rx_errors") + u(p, "rx_nombuf"), 0, "{opt}: {v}");
        assert_eq!(u(&v, "mbufs_leaked"), 0, "{opt}: {v}");
    }
}

#[test]
fn conformance_passes_on_a_virtio_user_port() {
    let Some(_l) = BackendLock::runnable() else { return };
    let dir = TempDir::new("conf");
    let _peer = Vhost::start(&dir.sock(), "io", 1, false, "vu-conf");
    let out = Command::new(env!("CARGO_BIN_EXE_testpmd"))
        // The back end is a second busy-polling process on these two cores:
        // under a loaded test run a frame can take longer than the default 1 s.
        .args(["conformance", "--port", &spec(&dir.sock(), ""), "--timeout", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(out, RUN_LIMIT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("FAIL "), "{text}");
    for check in ["start_stop_restart", "stats", "mtu", "jumbo_frame", "checksum_offload", "fwd_io", "mbuf_leak"] {
        assert!(text.lines().any(|l| l.starts_with("PASS") && l.contains(check)), "{check}: {text}");
    }
}

#[test]
fn two_queue_pairs_each_carry_traffic() {
    let Some(_l) = BackendLock::runnable() else { return };
    let (v, (prx, ptx, pdrop, text)) = ours_against_vhost(
        "mq",
        "io",
        2,
        "?queues=2",
        "--fwd io --rxq 2 --duration 1 --tx-first 2 --rxd 256 --txd 256",
    );
    let p = &v["ports"][0];
    assert_eq!(u(p, "tx_dropped") + u(p, "rx_errors") + u(p, "tx_errors"), 0, "{p}");
    assert_eq!(u(p, "tx_packets") - u(p, "rx_packets"), 128, "two streams of 64: {v}");
    for q in 0..2 {
        assert!(p["xstats"][format!("rx_q{q}_packets")].as_u64().unwrap() >= 64, "queue {q}: {v}");
    }
    // As for one queue: what the back end took it forwarded, but bursts caught
    // by our stop.
    assert_eq!(prx, ptx + pdrop, "{text}");
    assert!(pdrop <= 64, "{text}");
}

/// Opens, loses the back end, gets the link back from a new one, and checks
/// traffic and buffers before and after.
fn restart_cycle(server: bool) {
    let dir = TempDir::new(if server { "rs-server" } else { "rs-client" });
    let sock = dir.sock();
    let pool = shared_pool(4096);
    // With server=1 our open waits for the back end, which connects to us.
    let mut peer = if server { None } else { Some(Vhost::start(&sock, "macswap", 1, false, "vu-rs0")) };
    let opener = {
        let s = spec(&sock, if server { "?server=1&wait_ms=30000" } else { "" });
        let pool = pool.clone();
        std::thread::spawn(move || open_port(&s, &pool, 1))
    };
    if server {
        wait_until("our socket", Duration::from_secs(10), || sock.exists());
        peer = Some(Vhost::start(&sock, "macswap", 1, true, "vu-rs0"));
    }
    let mut port = opener.join().unwrap();
    wait_until("link up", Duration::from_secs(10), || port.link().up);
    peer.as_mut().unwrap().wait_forwarding();
    let mut rx = port.take_rx_queue(0).unwrap();
    let mut tx = port.take_tx_queue(0).unwrap();
    for gen in 0..3 {
        let frames: Vec<Mbuf> = (0..100u32).map(|i| patterned(&pool, 64 + i as usize, i)).collect();
        let sent: Vec<Vec<u8>> = frames.iter().map(|m| m.data().to_vec()).collect();
        let got = round_trip(&mut *rx, &mut *tx, frames);
        assert_intact(&sent, &got, true);
        drop(got);
        // The back end goes away: the link goes down and sending is refused.
        let (prx, ptx, _, text) = peer.take().unwrap().finish();
        assert_eq!((prx, ptx), (100, 100), "generation {gen}: {text}");
        wait_until("link down", Duration::from_secs(5), || !port.link().up);
        let mut one = vec![patterned(&pool, 64, 0)];
        assert_eq!(tx.tx_burst(&mut one), 0, "no sending while the link is down");
        drop(one);
        if gen == 2 {
            break;
        }
        // A new back end on the same socket: the link comes back by itself.
        peer = Some(Vhost::start(&sock, "macswap", 1, server, &format!("vu-rs{}", gen + 1)));
        wait_until("link up again", Duration::from_secs(15), || port.link().up);
        peer.as_mut().unwrap().wait_forwarding();
    }
    let x: std::collections::HashMap<String, u64> = port.xstats().into_iter().collect();
    assert_eq!(x["link_down_events"], 3, "{x:?}");
    assert_eq!(x["reconnects"], 2, "{x:?}");
    drop((rx, tx));
    drop(port);
    assert_eq!(pool.in_use(), 0, "nothing leaked across three back ends");
    if server {
        assert!(!sock.exists(), "our listening socket is removed with the port");
    }
}

#[test]
fn client_mode_back_end_restart_brings_the_link_back() {
    let Some(_l) = BackendLock::runnable() else { return };
    restart_cycle(false);
}

#[test]
fn server_mode_back_end_reconnects_and_the_link_comes_back() {
    let Some(_l) = BackendLock::runnable() else { return };
    restart_cycle(true);
}

#[test]
fn missing_socket_and_refused_connection_are_clear_errors() {
    let dir = TempDir::new("errs");
    let e = pmd::open(&spec(&dir.sock(), "")).err().unwrap().to_string();
    assert!(e.contains("no vhost-user socket at") && e.contains("server=1"), "{e}");
    // A socket file nobody listens on (a back end that died).
    drop(UnixListener::bind(dir.sock()).unwrap());
    let e = pmd::open(&spec(&dir.sock(), "")).err().unwrap().to_string();
    assert!(e.contains("refused") && e.contains("no back end listens"), "{e}");
    // Our testpmd says the same and exits with 1 (a system error, not a usage one).
    let out = testpmd(&["--port", &spec(&dir.sock(), ""), "--fwd", "io", "--cores", &core(), "--duration", "0.1"], "");
    let e = failure(&out, 1);
    assert!(e.contains("refused"), "{e}");
    // server=1 with nobody connecting within wait_ms.
    let e = pmd::open(&spec(&dir.0.join("srv.sock"), "?server=1&wait_ms=100")).err().unwrap().to_string();
    assert!(e.contains("no back end connected") && e.contains("client=1"), "{e}");
    // server=1 never replaces a file that is not a socket.
    let file = dir.0.join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    let e = pmd::open(&spec(&file, "?server=1&wait_ms=100")).err().unwrap().to_string();
    assert!(e.contains("is not a socket"), "{e}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

/// A fake back end answering GET_FEATURES (and GET_PROTOCOL_FEATURES /
/// GET_QUEUE_NUM with the given values), ignoring everything else.
fn fake_backend(sock: &Path, features: u64) -> std::thread::JoinHandle<()> {
    let l = UnixListener::bind(sock).unwrap();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        loop {
            let mut h = [0u8; 12];
            if s.read_exact(&mut h).is_err() {
                return;
            }
            let req = u32::from_le_bytes(h[0..4].try_into().unwrap());
            let size = u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
            let mut body = vec![0u8; size];
            if s.read_exact(&mut body).is_err() {
                return;
            }
            let value = match req {
                1 => features, // GET_FEATURES
                15 => 0,       // GET_PROTOCOL_FEATURES: none
                17 => 1,       // GET_QUEUE_NUM
                _ => continue,
            };
            let mut r = Vec::new();
            r.extend_from_slice(&req.to_le_bytes());
            r.extend_from_slice(&(0x1u32 | 0x4).to_le_bytes());
            r.extend_from_slice(&8u32.to_le_bytes());
            r.extend_from_slice(&value.to_le_bytes());
            if s.write_all(&r).is_err() {
                return;
            }
        }
    })
}

#[test]
fn features_the_back_end_lacks_are_clear_errors() {
    use pmd::drivers::virtio_user::features as f;
    let dir = TempDir::new("feat");
    let cases: [(u64, &str, &[&str]); 5] = [
        (f::MRG_RXBUF | f::CSUM, "", &["VIRTIO_F_VERSION_1", "virtio 1.0"]),
        (f::VERSION_1, "?in_order=0", &["VIRTIO_NET_F_MRG_RXBUF", "mrg_rxbuf=0"]),
        (f::VERSION_1, "?mrg_rxbuf=0&queues=2", &["queues=2", "VIRTIO_NET_F_MQ"]),
        (f::VERSION_1 | f::MRG_RXBUF, "?queues=4", &["queues=4", "VIRTIO_NET_F_MQ"]),
        // in_order=1 is the default: a back end without it names the way out.
        (f::VERSION_1 | f::MRG_RXBUF, "", &["VIRTIO_F_IN_ORDER", "in_order=0"]),
    ];
    for (i, (feat, opts, needles)) in cases.iter().enumerate() {
        let sock = dir.0.join(format!("fake{i}.sock"));
        let h = fake_backend(&sock, *feat);
        let e = pmd::open(&spec(&sock, opts)).err().unwrap().to_string();
        for n in *needles {
            assert!(e.contains(n), "case {i}: '{n}' not in: {e}");
        }
        h.join().unwrap();
    }
    // Offloads the back end does not offer cannot be configured: the error
    // names the field.
    let sock = dir.0.join("fake-ok.sock");
    let h = fake_backend(&sock, f::VERSION_1 | f::MRG_RXBUF | f::IN_ORDER);
    let mut p = pmd::open(&spec(&sock, "")).unwrap();
    assert!(p.info().tx_offloads.is_empty() && p.info().rx_offloads.is_empty());
    let mut c = PortConfig::new(1, 1, 256, 256, shared_pool(64));
    c.tx_offloads = pmd::TxOffloads::UDP_CKSUM;
    let e = p.configure(&c).unwrap_err().to_string();
    assert!(e.contains("tx_offloads"), "{e}");
    // A pool the back end cannot map is refused, naming the fix.
    let heap = Mempool::new(&MempoolConfig::new("heap", 64, 2048, DEFAULT_HEADROOM, 0)).unwrap();
    let e = p.configure(&PortConfig::new(1, 1, 256, 256, heap)).unwrap_err().to_string();
    assert!(e.contains("mempool") && e.contains("new_shared"), "{e}");
    drop(p);
    h.join().unwrap();
}
