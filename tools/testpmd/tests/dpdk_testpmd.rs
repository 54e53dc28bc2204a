//! Our `testpmd` over DPDK ports, each run its own process (EAL initialises once
//! per process): exact counts on `dpdk:net_ring0` without hugepages and with
//! them, clear errors for bad EAL arguments, missing devices and PCI devices
//! not bound to vfio-pci. Every run is bounded in time.
//!
//! Needs root (EAL, hugepages). Outside CI a test that cannot run says why and
//! passes; under `CI=true` nothing may skip.
#![cfg(feature = "dpdk")]

mod dpdk_common;

use dpdk_common::*;

/// Half a second of `mode` on one queue of `port`, seeded with two bursts:
/// the counts must add up exactly (see `assert_exact_ring_counts`).
fn forwards_exact_ring_counts(port: &str, mode: &str, eal: &str) {
    let v = json(&testpmd(
        &["--port", port, "--fwd", mode, "--cores", &core(), "--duration", "0.5", "--tx-first", "2"],
        eal,
    ));
    assert_exact_ring_counts(&v, mode);
}

#[test]
fn io_and_macswap_on_net_ring_no_huge_exact_counts() {
    if skip("needs root for EAL") {
        return;
    }
    // `checks=none` (no per-frame work) must count exactly as well.
    for (mode, port) in [("io", "dpdk:net_ring0"), ("macswap", "dpdk:net_ring0"), ("io", "dpdk:net_ring0?checks=none")]
    {
        forwards_exact_ring_counts(port, mode, &no_huge_eal(&format!("ring-{mode}-{}", port.len())));
    }
}

#[test]
fn two_queues_on_net_ring_forward_exact_counts() {
    if skip("needs root for EAL") {
        return;
    }
    let v = json(&testpmd(
        &testkit::cli(&format!(
            "--port dpdk:net_ring0 --fwd io --cores {} --rxq 2 --duration 0.5 --tx-first 2",
            core()
        )),
        &no_huge_eal("ring-2q"),
    ));
    assert_eq!(u(&v, "mbufs_leaked"), 0, "{v}");
    let p = &v["ports"][0];
    // Two streams (queue 0 and 1), each seeded with 2 bursts of 32.
    assert_eq!(u(p, "tx_packets") - u(p, "rx_packets"), 128, "{v}");
    for q in 0..2 {
        assert!(p["xstats"][format!("rx_q{q}_packets")].as_u64().unwrap() > 1000, "queue {q}: {v}");
    }
}

#[test]
fn io_and_macswap_on_net_ring_with_hugepages_exact_counts() {
    if skip("needs root to reserve hugepages") {
        return;
    }
    let _huge = Hugepages::reserve(256);
    for mode in ["io", "macswap"] {
        let eal = format!(
            "-l 0 --in-memory -m 128 --no-pci --file-prefix {} --no-telemetry --log-level=lib.eal:error",
            prefix(&format!("huge-{mode}"))
        );
        forwards_exact_ring_counts("dpdk:net_ring0", mode, &eal);
    }
}

#[test]
fn bad_eal_arguments_are_a_usage_error_with_dpdks_reason() {
    if skip("needs root for EAL") {
        return;
    }
    let out = testpmd(
        &["--port", "dpdk:net_ring0", "--fwd", "io", "--cores", &core(), "--duration", "0.2"],
        "-l 0 --no-huge -m 64 --no-pci --no-shconf --definitely-not-an-eal-flag",
    );
    let e = failure(&out, 2);
    assert!(e.contains("rte_eal_init failed: Invalid argument") && e.contains("--definitely-not-an-eal-flag"), "{e}");
    // Our own parse of --eal names what is missing.
    let out =
        testpmd(&["--port", "dpdk:net_ring0", "--fwd", "io", "--cores", &core(), "--duration", "0.2"], "--no-huge");
    let e = failure(&out, 2);
    assert!(e.contains("-l CORES"), "{e}");
}

#[test]
fn dpdk_ports_without_eal_say_how_to_get_it() {
    let out = testpmd(&["--port", "dpdk:net_ring0", "--fwd", "io", "--cores", &core(), "--duration", "0.2"], "");
    let e = failure(&out, 2);
    assert!(e.contains("needs DPDK's EAL") && e.contains("--eal"), "{e}");
}

#[test]
fn missing_devices_and_unbound_pci_devices_are_clear_errors() {
    if skip("needs root for EAL") {
        return;
    }
    let run = |spec: &str, tag: &str| {
        testpmd(&["--port", spec, "--fwd", "io", "--cores", &core(), "--duration", "0.2"], &no_huge_eal(tag))
    };
    // A PCI address with no device behind it.
    let e = failure(&run("dpdk:0000:7f:1f.7", "nodev"), 2);
    assert!(e.contains("no PCI device 0000:7f:1f.7"), "{e}");
    // A real PCI device owned by a kernel driver (this machine's virtio devices,
    // or any other): never handed to DPDK, and the message says how to bind it.
    let dev = std::fs::read_dir("/sys/bus/pci/devices")
        .expect("sysfs")
        .flatten()
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .find(|a| {
            let drv = std::fs::read_link(format!("/sys/bus/pci/devices/{a}/driver")).ok();
            !matches!(
                drv.and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).as_deref(),
                Some("vfio-pci" | "uio_pci_generic" | "igb_uio")
            )
        });
    match dev {
        Some(addr) => {
            let e = failure(&run(&format!("dpdk:{addr}"), "unbound"), 1);
            assert!(e.contains(&format!("PCI device {addr} is")) && e.contains("not vfio-pci"), "{e}");
            assert!(e.contains("scripts/bind-nic.sh bind"), "{e}");
        }
        None => assert!(std::env::var("CI").as_deref() != Ok("true"), "no PCI device to test with"),
    }
    // A vdev driver that does not exist, and a malformed target.
    let e = failure(&run("dpdk:net_nosuchdrv0", "novdev"), 2);
    assert!(e.contains("could not create virtual device 'net_nosuchdrv0'"), "{e}");
    let e = failure(&run("dpdk:eth0", "badtarget"), 2);
    assert!(e.contains("is neither a PCI address") && e.contains("virtual device name"), "{e}");
}

/// `testpmd conformance --eal ...` on DPDK's own devices, bounded.
fn conformance(port: &str, eal: &str) -> (Option<i32>, String) {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_testpmd"))
        .args(["conformance", "--port", port, "--eal", eal])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("testpmd runs");
    let out = wait_bounded(child, RUN_LIMIT);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// The verdict word of check `name` in a conformance report.
fn verdict<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no '{name}' line in:\n{text}"))
}

#[test]
fn conformance_runs_on_dpdk_ports_given_eal() {
    if skip("needs root for EAL") {
        return;
    }
    // net_null: no wire, so the wire checks do not apply; the rest passes.
    let (code, text) = conformance("dpdk:net_null0", &no_huge_eal("conf-null"));
    assert_eq!(code, Some(0), "{text}");
    for check in ["probe", "start_stop_restart", "link_status", "stats", "mtu", "mbuf_leak"] {
        assert_eq!(verdict(&text, check), "PASS", "{check}: {text}");
    }
    assert_eq!(verdict(&text, "fwd_io"), "UNSUPPORTED", "{text}");

    // net_ring loops back: the whole checklist runs. It has no MTU control
    // (UNSUPPORTED, as DTS reports it), and it ignores promiscuous mode: with
    // it off, a frame to another MAC still arrives. That is net_ring's, and the
    // check says so (exit status 1).
    let (code, text) = conformance("dpdk:net_ring0", &no_huge_eal("conf-ring"));
    assert_eq!(code, Some(1), "{text}");
    for check in ["probe", "start_stop_restart", "link_status", "stats", "fwd_io", "fwd_macswap", "mbuf_leak"] {
        assert_eq!(verdict(&text, check), "PASS", "{check}: {text}");
    }
    for check in ["mtu", "jumbo_frame"] {
        assert_eq!(verdict(&text, check), "UNSUPPORTED", "{check}: {text}");
        assert!(text.contains("net_ring has no mtu_set"), "{text}");
    }
    assert_eq!(verdict(&text, "promiscuous"), "FAIL", "{text}");
    assert!(text.contains("7 passed, 1 failed, 4 unsupported"), "{text}");
}
