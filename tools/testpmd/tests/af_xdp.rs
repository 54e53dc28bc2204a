//! The `af_xdp` port's life on a veth in a namespace of its own (root; runs
//! under CI=true): while it runs the interface's frames are ours; once it closes,
//! or its process is killed, the XDP program is gone and the kernel answers on
//! the interface again; and each thing that can stop it opening is an error
//! that says which.

mod testbed;

use std::process::Output;

use testbed::{core, json, testpmd, Guarded, Testbed};

/// The kernel's address on p0 (p0 is ours while the port runs) and on the
/// other end of the veth, which is moved into a second namespace so that the
/// ping crosses the wire (in one namespace both addresses would be local).
const P0_ADDR: &str = "198.18.2.3";
const PEER_ADDR: &str = "198.18.2.2/24";

fn link(tb: &Testbed, ifname: &str) -> String {
    String::from_utf8_lossy(&tb.run("ip", &["link", "show", ifname]).stdout).to_string()
}

/// Whether `ip link show` lists an XDP program on the interface.
fn has_xdp(tb: &Testbed, ifname: &str) -> bool {
    let l = link(tb, ifname);
    l.contains("prog/xdp") || l.contains(" xdp ")
}

/// AF_XDP sockets open in the namespace (`/proc/net/protocols`).
fn xdp_sockets(tb: &Testbed) -> u32 {
    tb.read("/proc/net/protocols")
        .lines()
        .find(|l| l.starts_with("XDP "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0)
}

fn ready(tb: &Testbed) -> bool {
    has_xdp(tb, "p0") && xdp_sockets(tb) > 0
}

/// Whether the kernel behind p0 answers a ping from the far namespace.
fn kernel_ping(peer: &Testbed) -> bool {
    peer.run("ping", &["-c", "2", "-i", "0.2", "-W", "1", "-q", P0_ADDR]).status.success()
}

fn ok(out: Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The testbed (p0 with a kernel address) and the namespace holding k0's end.
fn testbeds(tag: &str) -> (Testbed, Testbed) {
    let tb = Testbed::up(tag, &["--quiet"]);
    let peer = Testbed::up(&format!("{tag}p"), &["--quiet"]);
    ok(tb.run("ip", &["link", "set", "k0", "name", "kx"]));
    ok(tb.run("ip", &["link", "set", "kx", "netns", &peer.ns]));
    ok(peer.run("ip", &["addr", "add", PEER_ADDR, "dev", "kx"]));
    ok(peer.run("ip", &["link", "set", "kx", "up"]));
    ok(tb.run("ip", &["addr", "add", &format!("{P0_ADDR}/24"), "dev", "p0"]));
    assert!(kernel_ping(&peer), "the kernel answers on p0 before the port opens");
    (tb, peer)
}

fn rxonly(tb: &Testbed, spec: &str, secs: &str) -> Guarded {
    let mut c = tb.cmd(testpmd());
    c.args(["--port", spec, "--fwd", "rxonly", "--cores", &core(), "--duration", secs, "--json"]);
    Guarded::spawn(c)
}

#[test]
fn closing_the_port_detaches_the_program_and_the_kernel_answers_again() {
    if !testbed::available(&["ping"]) {
        return;
    }
    let (tb, peer) = testbeds("xdpclose");
    let run = rxonly(&tb, "af_xdp:p0", "3");
    tb.wait_for("the port to attach", 5.0, ready);
    // The kernel's ARP requests and pings for p0 now reach us, not the kernel.
    assert!(!kernel_ping(&peer), "while the port runs, p0's frames are the port's");
    let v = json(&run.wait(15.0));
    assert!(v["ports"][0]["rx_packets"].as_u64().unwrap() >= 1, "{v}");
    // veth has no zero-copy AF_XDP: zero_copy=auto fell back to copy mode, and says so.
    assert_eq!(v["ports"][0]["xstats"]["q0_zero_copy"].as_u64(), Some(0), "{v}");
    assert_eq!(v["mbufs_leaked"].as_u64(), Some(0), "{v}");
    assert!(!has_xdp(&tb, "p0"), "program detached: {}", link(&tb, "p0"));
    assert!(!link(&tb, "p0").contains("PROMISC"), "promiscuous mode undone: {}", link(&tb, "p0"));
    assert!(kernel_ping(&peer), "the kernel answers on p0 after the port closed");
}

#[test]
fn a_killed_process_leaves_no_program_behind() {
    if !testbed::available(&["ping"]) {
        return;
    }
    let (tb, peer) = testbeds("xdpkill");
    let mut run = rxonly(&tb, "af_xdp:p0", "30");
    tb.wait_for("the port to attach", 5.0, ready);
    // SIGKILL: no destructor runs; the bpf_link goes with the process's files.
    let mut child = run.0.take().expect("running");
    child.kill().expect("kill");
    child.wait().expect("reap");
    tb.wait_for("the program to go", 5.0, |tb| !has_xdp(tb, "p0"));
    assert!(kernel_ping(&peer), "the kernel answers on p0 after the process died");
}

fn fails(out: Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure naming '{needle}'");
    assert!(err.contains(needle), "stderr must say '{needle}': {err}");
}

#[test]
fn opening_fails_with_an_error_that_says_why() {
    if !testbed::available(&[]) {
        return;
    }
    let tb = Testbed::up("xdperr", &["--quiet"]);
    let open = |spec: &str| {
        let mut c = tb.cmd(testpmd());
        c.args(["--port", spec, "--fwd", "rxonly", "--cores", &core(), "--duration", "1"]);
        Guarded::spawn(c).wait(20.0)
    };
    fails(open("af_xdp:nosuch0"), "interface 'nosuch0' does not exist");
    // The testbed's veth has one receive queue.
    fails(open("af_xdp:p0?queues=2"), "queue id 1 is out of range");
    // A bridge has no XDP hook in its driver.
    ok(tb.run("ip", &["link", "add", "br0", "type", "bridge"]));
    fails(open("af_xdp:br0"), "native XDP");
    // veth has no zero-copy AF_XDP: `on` refuses, `auto` falls back (below).
    fails(open("af_xdp:p0?zero_copy=on"), "zero_copy=on");
    // A second port on an interface that already has one.
    let first = rxonly(&tb, "af_xdp:p0?zero_copy=auto", "4");
    tb.wait_for("the first port to attach", 5.0, ready);
    fails(open("af_xdp:p0"), "an XDP program is already attached");
    let v = json(&first.wait(15.0));
    assert_eq!(v["mbufs_leaked"].as_u64(), Some(0), "{v}");
}

/// A quiet testbed whose veth pair has two queues each way: the kernel picks
/// k0's transmit queue by flow hash, and veth delivers on p0's receive queue
/// of the same number, so flows spread over p0's queues as a NIC's RSS would.
fn two_queue_testbed(tag: &str) -> Testbed {
    let tb = Testbed::up(tag, &["--quiet"]);
    ok(tb.run("ip", &["link", "del", "k0"]));
    let q = ["numtxqueues", "2", "numrxqueues", "2"];
    let mut add = vec!["link", "add", "k0"];
    add.extend(q);
    add.extend(["type", "veth", "peer", "name", "p0"]);
    add.extend(q);
    ok(tb.run("ip", &add));
    for i in ["k0", "p0"] {
        ok(tb.run("ip", &["link", "set", i, "up"]));
    }
    ok(tb.run("ip", &["addr", "add", "198.18.0.2/24", "dev", "k0"]));
    let mac = tb.read("/sys/class/net/p0/address");
    ok(tb.run("ip", &["neigh", "replace", "198.18.0.1", "lladdr", &mac, "dev", "k0", "nud", "permanent"]));
    tb
}

#[test]
fn two_queues_on_two_cores_both_receive_the_kernels_flows() {
    if !testbed::available(&["/usr/bin/python3"]) {
        return;
    }
    let cores = pmd::runtime::available_cores();
    if cores.len() < 2 {
        testkit::skip("needs two cores");
        return;
    }
    let tb = two_queue_testbed("xdp2q");
    let list = format!("{},{}", cores[0], cores[1]);
    let mut c = tb.cmd(testpmd());
    c.args(["--port", "af_xdp:p0?queues=2", "--rxq", "2", "--fwd", "rxonly", "--cores", &list]);
    c.args(["--duration", "4", "--json", "--no-promisc", "--record-core-cycles"]);
    let run = Guarded::spawn(c);
    tb.wait_for("both sockets", 5.0, |tb| ready(tb) && xdp_sockets(tb) >= 2);
    const FLOWS: usize = 32;
    const EACH: usize = 10;
    // One socket per flow: the kernel hashes each to one of k0's queues.
    let py = format!(
        "import socket\nfor f in range({FLOWS}):\n    s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n    \
         for i in range({EACH}):\n        s.sendto(bytes([f])*64,('198.18.0.1',9000+f))\n"
    );
    ok(tb.run("/usr/bin/python3", &["-c", &py]));
    let v = json(&run.wait(15.0));
    let p = &v["ports"][0];
    let q = |n: u32| p["xstats"][format!("rx_q{n}_packets")].as_u64().unwrap_or(0);
    assert_eq!(q(0) + q(1), (FLOWS * EACH) as u64, "{v}");
    assert!(q(0) > 0 && q(1) > 0, "both queues receive: q0 {} q1 {}: {v}", q(0), q(1));
    assert_eq!(p["rx_errors"].as_u64(), Some(0), "{v}");
    assert_eq!(v["mbufs_leaked"].as_u64(), Some(0), "{v}");
    // Each queue was polled by its own core.
    let cs = v["core_cycles"]["cores"].as_array().expect("per-core cycles");
    assert_eq!(cs.len(), 2, "{v}");
    assert!(cs.iter().all(|c| c["busy_iterations"].as_u64().unwrap_or(0) > 0), "both cores moved frames: {v}");
}
