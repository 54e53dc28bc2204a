//! The Linux kernel as a real peer: our stack on a `tap:` port and on an
//! `af_packet:` and an `af_xdp:` port (one end of a veth pair), the kernel's
//! `ping`, `ping -6` and a python3 UDP client in a network namespace the test
//! makes, with addresses from 198.18.0.0/15 and 2001:2::/48 only.
//!
//! If a driver is missing from the build or the test is not root, the tests
//! print why and pass, except under `CI=true`, where they fail (CI must run
//! them). They need root (CI runs as root) and `ip`, `ping`, `python3`.
//!
//! Tap semantics relied on: `tap:NAME` creates a TAP interface in the caller's
//! namespace; the test moves it into its own namespace (the open descriptor keeps
//! working there) and configures the kernel's side. The `Drop` guard removes the
//! namespace, and with it the TAP or the veth pair, even when a test fails.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use pmd::{Mempool, MempoolConfig, MonotonicClock, PmdError, PortConfig};
use stack::{StackConfig, UdpConfig};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Skips (outside CI) or fails (under CI=true) with a reason (see `testkit`).
fn unavailable(why: &str) {
    testkit::skip(why);
}

use testkit::sh;

/// A network namespace, deleted on drop (even when the test panics).
struct Netns(String);

impl Netns {
    fn new(name: &str) -> Result<Netns, String> {
        let _ = sh(&["ip", "netns", "del", name]);
        sh(&["ip", "netns", "add", name])?;
        Ok(Netns(name.to_string()))
    }

    fn exec(&self, args: &[&str]) -> Result<String, String> {
        let mut v = vec!["ip", "netns", "exec", &self.0];
        v.extend_from_slice(args);
        sh(&v)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&["ip", "netns", "del", &self.0]);
    }
}

/// Our stack on a tap port in a thread, the kernel in a namespace on the other
/// side. Dropping it stops the thread, closes the port, deletes the namespace.
struct Bed {
    ns: Netns,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), String>>>,
    k4: Ipv4Addr,
    o4: Ipv4Addr,
    k6: Ipv6Addr,
    o6: Ipv6Addr,
    our_mac: pmd::MacAddr,
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn config(mac: pmd::MacAddr, o4: Ipv4Addr, o6: Ipv6Addr) -> StackConfig {
    StackConfig {
        ipv4: vec![format!("{o4}/24").parse().unwrap()],
        ipv6: vec![format!("{o6}/64").parse().unwrap()],
        ..stack::profiles::kernel_peer(mac)
    }
}

/// Which kind of port our stack runs on.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A TAP interface moved into the namespace: the kernel's side of it.
    Tap,
    /// A veth pair: our end (`af_packet:`) stays here, the kernel's end goes into
    /// the namespace.
    AfPacket,
    /// The same veth pair, our end as `af_xdp:` (native XDP, copy mode on veth).
    AfXdp,
}

const KINDS: [Kind; 3] = [Kind::Tap, Kind::AfPacket, Kind::AfXdp];

/// Sets up the bed, or returns `None` after `unavailable` (no driver, not root).
fn bed(kind: Kind, udp_echo: Option<u16>) -> Option<Bed> {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let k = (std::process::id() as usize * 8 + n) % 250 + 1;
    let tag = format!("{}n{n}", std::process::id() % 100_000);
    if !testkit::require_root("namespaces, TAP, veth")
        || !testkit::require(&["ip", "sysctl", "ping", "python3", "ethtool"])
    {
        return None;
    }
    let pool = Mempool::new(&MempoolConfig::new(format!("kp{n}"), 2048, 2048, 128, 0)).unwrap();
    let ns = match Netns::new(&format!("l3k{tag}")) {
        Ok(ns) => ns,
        Err(e) => {
            unavailable(&e);
            return None;
        }
    };
    // The interface the kernel uses inside the namespace, and our port's spec.
    let (ifname, spec) = match kind {
        Kind::Tap => (format!("l3k{tag}"), format!("tap:l3k{tag}")),
        Kind::AfPacket | Kind::AfXdp => {
            let (ours, kernel) = (format!("l3a{tag}"), format!("l3b{tag}"));
            let made = sh(&["ip", "link", "add", &ours, "type", "veth", "peer", "name", &kernel, "netns", &ns.0])
                .and_then(|_| sh(&["sysctl", "-qw", &format!("net.ipv6.conf.{ours}.disable_ipv6=1")]))
                .and_then(|_| sh(&["ip", "link", "set", &ours, "up"]));
            if let Err(e) = made {
                unavailable(&format!("cannot make a veth pair (root needed): {e}"));
                return None;
            }
            let scheme = if let Kind::AfXdp = kind { "af_xdp" } else { "af_packet" };
            (kernel, format!("{scheme}:{ours}"))
        }
    };
    let mut port = match pmd::open(&spec) {
        Ok(p) => p,
        Err(e @ PmdError::UnknownScheme { .. }) => {
            unavailable(&format!("the driver for {spec} is not in this build ({e})"));
            return None;
        }
        Err(e) => {
            unavailable(&format!("cannot open {spec} (root needed): {e}"));
            return None;
        }
    };
    let (k4, o4) = (Ipv4Addr::new(198, 18, k as u8, 1), Ipv4Addr::new(198, 18, k as u8, 2));
    let (k6, o6): (Ipv6Addr, Ipv6Addr) =
        (format!("2001:2:0:{k:x}::1").parse().unwrap(), format!("2001:2:0:{k:x}::2").parse().unwrap());
    let setup = || -> Result<(), String> {
        if let Kind::Tap = kind {
            sh(&["ip", "link", "set", &ifname, "netns", &ns.0])?;
        }
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        ns.exec(&["ip", "addr", "add", &format!("{k4}/24"), "dev", &ifname])?;
        ns.exec(&["ip", "-6", "addr", "add", &format!("{k6}/64"), "dev", &ifname, "nodad"])?;
        ns.exec(&["ip", "link", "set", &ifname, "up"])?;
        if let Kind::AfXdp = kind {
            // A veth hands XDP its peer's frames with the L4 checksum still
            // partial (CHECKSUM_PARTIAL, no wire in between to fill it in), and
            // XDP has no flag to say so: the kernel's side computes it instead.
            ns.exec(&["ethtool", "-K", &ifname, "tx", "off"])?;
        }
        Ok(())
    };
    setup().expect("namespace setup");
    port.configure(&PortConfig::new(1, 1, 1024, 1024, pool.clone())).expect("configure port");
    port.start().expect("start port");
    let our_mac = port.info().mac;
    let rx = port.take_rx_queue(0).unwrap();
    let tx = port.take_tx_queue(0).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let cfg = config(our_mac, o4, o6);
    let thread = std::thread::spawn(move || -> Result<(), String> {
        let start = pool.available();
        {
            let mut s =
                stack::Driver::new(cfg, rx, tx, pool.clone(), Arc::new(MonotonicClock)).map_err(|e| e.to_string())?;
            let mut socks = Vec::new();
            if let Some(p) = udp_echo {
                for any in [IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)] {
                    socks.push(s.udp().bind(SocketAddr::new(any, p), UdpConfig { rx_queue_len: 64 }).unwrap());
                }
            }
            let mut got = Vec::new();
            while !stop2.load(Ordering::Acquire) {
                s.poll();
                for &h in &socks {
                    s.udp().recv(h, &mut got, 64).unwrap();
                    let mut back: Vec<_> = got.drain(..).map(|d: stack::UdpDatagram| (d.payload, d.peer)).collect();
                    s.udp().send_batch(h, &mut back).unwrap();
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            drop(s);
            drop(port);
        }
        let leaked = start - pool.available();
        if leaked > 0 {
            return Err(format!("{leaked} mbufs leaked"));
        }
        Ok(())
    });
    Some(Bed { ns, stop, thread: Some(thread), k4, o4, k6, o6, our_mac })
}

impl Bed {
    /// Stops the stack and checks it ended cleanly (no leaked buffer).
    fn finish(mut self) {
        self.stop.store(true, Ordering::Release);
        let r = self.thread.take().unwrap().join().expect("stack thread panicked");
        r.expect("stack thread");
    }
}

const UDP_CLIENT: &str = r#"
import socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect((sys.argv[1], int(sys.argv[2])))
mode = sys.argv[3]
try:
    for i in range(5):
        msg = ('datagram %d' % i).encode()
        s.send(msg)
        got = s.recv(2048)
        if got != msg:
            print('bad echo', got); sys.exit(1)
    print('echoed')
    sys.exit(0 if mode == 'echo' else 1)
except ConnectionRefusedError:
    print('ECONNREFUSED')
    sys.exit(0 if mode == 'refused' else 1)
except socket.timeout:
    print('timeout'); sys.exit(2)
"#;

#[test]
fn rfc826_rfc4861_kernel_ping_and_ping6_resolve_our_mac() {
    for kind in KINDS {
        ping_and_ping6(kind);
    }
}

fn ping_and_ping6(kind: Kind) {
    let Some(bed) = bed(kind, None) else { return };
    let out = bed.ns.exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &bed.o4.to_string()]).expect("ping");
    assert!(out.contains("3 received"), "{kind:?}: {out}");
    let out = bed.ns.exec(&["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", &bed.o6.to_string()]).expect("ping -6");
    assert!(out.contains("3 received"), "{out}");
    let mac = bed.our_mac.to_string();
    let n4 = bed.ns.exec(&["ip", "neigh", "show", &bed.o4.to_string()]).unwrap();
    let n6 = bed.ns.exec(&["ip", "-6", "neigh", "show", &bed.o6.to_string()]).unwrap();
    assert!(n4.contains(&mac), "kernel ARP entry: {n4}");
    assert!(n6.contains(&mac), "kernel NDP entry: {n6}");
    let _ = (bed.k4, bed.k6);
    bed.finish();
}

#[test]
fn rfc768_kernel_udp_client_gets_echoed_datagrams_v4_v6() {
    for kind in KINDS {
        let Some(bed) = bed(kind, Some(7)) else { return };
        for dst in [bed.o4.to_string(), bed.o6.to_string()] {
            let out = bed.ns.exec(&["python3", "-c", UDP_CLIENT, &dst, "7", "echo"]).expect("udp client");
            assert!(out.contains("echoed"), "{kind:?} {dst}: {out}");
        }
        bed.finish();
    }
}

#[test]
fn rfc792_rfc4443_closed_port_gives_kernel_client_econnrefused() {
    for kind in KINDS {
        let Some(bed) = bed(kind, None) else { return };
        for dst in [bed.o4.to_string(), bed.o6.to_string()] {
            let out = bed.ns.exec(&["python3", "-c", UDP_CLIENT, &dst, "9", "refused"]).expect("udp client");
            assert!(out.contains("ECONNREFUSED"), "{kind:?} {dst}: {out}");
        }
        bed.finish();
    }
}
