//! DPDK vdevs with real peers: the Linux kernel through `net_tap` and
//! `net_af_packet` (in a namespace this test makes, addresses from
//! 198.18.0.0/15 only, removed even on failure), and DPDK's own `dpdk-testpmd`
//! as the vhost-user backend of our `net_virtio_user` port. Our `testpmd` runs
//! as a bounded subprocess (EAL initialises once per process).
#![cfg(feature = "dpdk")]

mod dpdk_common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dpdk_common::*;

/// Starts our testpmd in icmpecho mode on `spec` for `secs` seconds.
fn icmpecho(spec: &str, tag: &str, secs: u32) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_testpmd"))
        .args(["--port", spec, "--fwd", "icmpecho", "--cores", &core(), "--duration", &secs.to_string(), "--json"])
        .args(["--eal", &no_huge_eal(tag)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("testpmd runs")
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The kernel pings 198.18.x.2 three times; our icmpecho answers ARP and the
/// echoes; both sides count.
fn kernel_pings(ns: &Netns, dst: &str, child: std::process::Child) {
    let ping = ns.exec(&format!("ping -c 3 -i 0.2 -w 8 {dst}"));
    let text = String::from_utf8_lossy(&ping.stdout).into_owned();
    let out = wait_bounded(child, RUN_LIMIT);
    assert!(ping.status.success(), "ping failed: {text} {}", String::from_utf8_lossy(&ping.stderr));
    // Pings sent before the port is up are answered late, in a bunch: count
    // replies rather than expect an exact line.
    let received: u64 = text
        .split(',')
        .find_map(|f| f.trim().strip_suffix(" received").and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no ping summary: {text}"));
    assert!(received >= 3, "{text}");
    let v = json(&out);
    assert_eq!(u(&v, "mbufs_leaked"), 0, "{v}");
    let p = &v["ports"][0];
    // ARP request + 3 echo requests answered (the kernel may send more: IPv6
    // router solicitations, which icmpecho drops as not its business).
    assert!(u(p, "fwd_tx") >= 4, "{v}");
    assert!(u(p, "rx_packets") >= u(p, "fwd_tx"), "{v}");
    assert_eq!(u(p, "tx_packets"), u(p, "fwd_tx"), "{v}");
    assert_eq!(u(p, "tx_errors") + u(p, "tx_dropped"), 0, "{v}");
}

#[test]
fn net_tap_answers_the_kernels_ping() {
    if skip("needs root for EAL and namespaces") || lacks(&["ip", "ping"]) {
        return;
    }
    let ns = Netns::new("t");
    let iface = format!("pmdtap{}", std::process::id() % 100_000);
    let child = icmpecho(&format!("dpdk:net_tap0,iface={iface}"), "tap", 6);
    // The tap device appears when DPDK creates the port; move it into the
    // namespace (the file descriptor DPDK holds stays attached) and address it
    // there.
    wait_for("the tap interface", Duration::from_secs(10), || {
        Command::new("ip").args(["link", "show", &iface]).output().map(|o| o.status.success()).unwrap_or(false)
    });
    run(&format!("ip link set {iface} netns {}", ns.name));
    ns_run(&ns, &format!("ip addr add 198.18.0.1/24 dev {iface}"));
    ns_run(&ns, &format!("ip -6 addr add 2001:2::1/64 dev {iface} nodad"));
    ns_run(&ns, &format!("ip link set {iface} up"));
    kernel_pings(&ns, "198.18.0.2", child);
}

#[test]
fn net_af_packet_answers_the_kernels_ping_over_a_veth() {
    if skip("needs root for EAL and namespaces") || lacks(&["ip", "ping"]) {
        return;
    }
    let ns = Netns::new("a");
    let id = std::process::id() % 100_000;
    let (ours, theirs) = (format!("pmdva{id}"), format!("pmdvb{id}"));
    run(&format!("ip link add {ours} type veth peer name {theirs}"));
    let _link = Link(ours.clone());
    run(&format!("ip link set {theirs} netns {}", ns.name));
    ns_run(&ns, &format!("ip addr add 198.18.1.1/24 dev {theirs}"));
    ns_run(&ns, &format!("ip -6 addr add 2001:2:0:1::1/64 dev {theirs} nodad"));
    ns_run(&ns, &format!("ip link set {theirs} up"));
    run(&format!("ip link set {ours} up"));
    let child = icmpecho(&format!("dpdk:net_af_packet0,iface={ours}"), "afp", 6);
    kernel_pings(&ns, "198.18.1.2", child);
}

fn ns_run(ns: &Netns, cmd: &str) {
    let out = ns.exec(cmd);
    assert!(out.status.success(), "`{cmd}` in {}: {}", ns.name, String::from_utf8_lossy(&out.stderr));
}

/// Kills a child on drop (a peer that must not outlive a failed test).
struct Reaper(Option<std::process::Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn txonly_over_virtio_user_into_dpdk_testpmd_vhost_counts_match() {
    if skip("needs root for EAL and hugepages") || lacks(&["dpdk-testpmd"]) {
        return;
    }
    // virtio-user shares its memory with the vhost backend by file descriptor:
    // that needs hugepages (memfd with --in-memory; --single-file-segments keeps
    // the region count under vhost-user's limit of 8). The backend can run
    // without hugepages: it copies into its own mbufs.
    let _huge = Hugepages::reserve(128);
    let dir = std::env::temp_dir().join(format!("pmdt-vhost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("vhost.sock");
    let _ = std::fs::remove_file(&sock);
    let peer = Command::new("dpdk-testpmd")
        .args(["-l", "0,1", "--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--no-telemetry"])
        .args(["--file-prefix", &prefix("vhost"), "--log-level=lib.eal:error"])
        .arg("--vdev")
        .arg(format!("net_vhost0,iface={},queues=1", sock.display()))
        .args(["--", "--forward-mode=rxonly", "--nb-cores=1", "--total-num-mbufs=8192"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dpdk-testpmd runs (Debian package dpdk)");
    let mut peer = Reaper(Some(peer));
    wait_for("the vhost-user socket", Duration::from_secs(20), || sock.exists());

    let nb = 5000u64;
    let eal = format!(
        "-l 0 --in-memory --single-file-segments -m 128 --no-pci --file-prefix {} --no-telemetry \
         --log-level=lib.eal:error",
        prefix("vu")
    );
    let ours = testpmd(
        &testkit::cli(&format!(
            "--port dpdk:net_virtio_user0,path={} --fwd txonly --cores {} --duration 2 --nb-pkts {nb}",
            sock.display(),
            core()
        )),
        &eal,
    );
    // Give the backend a moment to dequeue the last ring-full, then end it the
    // way it asks ("Press enter to exit") and read its final statistics.
    std::thread::sleep(Duration::from_millis(500));
    let mut child = peer.0.take().unwrap();
    let _ = child.stdin.take().unwrap().write_all(b"\n");
    let out = wait_bounded(child, RUN_LIMIT);
    let _ = std::fs::remove_dir_all(&dir);
    let v = json(&ours);
    let p = &v["ports"][0];
    assert_eq!(u(&v, "mbufs_leaked"), 0, "{v}");
    let sent = u(p, "tx_packets");
    assert_eq!(sent + u(p, "tx_dropped"), nb, "every generated frame was sent or counted as dropped: {v}");
    assert!(sent >= 1, "{v}");
    let text = String::from_utf8_lossy(&out.stdout);
    let rx: Vec<u64> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("RX-packets:"))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(!rx.is_empty(), "no statistics from dpdk-testpmd: {text} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(*rx.last().unwrap(), sent, "vhost received exactly what we sent; ours: {v}; theirs: {text}");
}
