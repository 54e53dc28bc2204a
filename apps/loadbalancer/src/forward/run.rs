//! `lb run` with `[forward.NAME]` frontends: the forwarding data path on one
//! core of our stack's port (`--stack user --port SPEC --ip ADDR/PREFIX`):
//! the port opened and started promiscuous (forwarded frames are for other
//! MACs only in the sense that the VIP's frames are ours; promiscuous mode is
//! what an L2 DSR balancer on a shared segment needs to see them all), one
//! [`CoreLoop`] polled until SIGTERM/SIGINT, then the counters as one JSON
//! line.
//!
//! The host stack holds the `--ip` addresses and every VIP (as /32 or
//! /128), so it answers ARP/NDP for them (see [`super`]'s doc). What this
//! does not do yet, and refuses rather than ignores: several cores (the
//! flow table is per core and RSS would spread flows, but the host stack
//! would then run on every core), active health checks (`check` must be
//! `"off"`: the checker runs over the Flow API, which this path does not
//! use), the admin listener, and a config with proxy frontends as well.

use std::net::IpAddr;
use std::sync::Arc;

use pmd::{MonotonicClock, PortConfig};

use super::core_loop::CoreLoop;
use super::forwarder::Forwarder;
use crate::cli::Fail;
use crate::config::{Check, Checked};
use crate::run::{stack_config, RunArgs, StackKind};

/// Runs forwarding mode until a stop signal.
pub fn run(a: &RunArgs, cfg: &Checked) -> Result<(), Fail> {
    if a.stack != StackKind::User {
        return Err(Fail::usage("forward frontends need --stack user (the forwarder owns the port)"));
    }
    let Some(spec) = a.port.clone() else {
        return Err(Fail::usage("--stack user needs --port SPEC"));
    };
    if !cfg.frontends.is_empty() {
        return Err(Fail::usage("frontends: a config with [forward.NAME] runs forward frontends only (for now)"));
    }
    if cfg.admin.is_some() {
        return Err(Fail::usage("admin.enabled: the admin listener is not served in forward mode yet; set it false"));
    }
    for f in &cfg.forward {
        let b = &cfg.backends[f.backend];
        if b.check != Check::Off {
            return Err(Fail::usage(format!(
                "backends.{}.health.check: forward mode has no active health checks yet; set \"off\"",
                b.name
            )));
        }
    }
    let cores = pmd::runtime::parse_core_list(&a.cores).map_err(|e| Fail::usage(format!("--cores: {e}")))?;
    pmd::runtime::check_cores(&cores).map_err(|e| Fail::usage(format!("--cores: {e}")))?;
    if cores.len() != 1 {
        return Err(Fail::usage("--cores: forward mode runs on one core for now"));
    }
    if a.ips.is_empty() {
        return Err(Fail::usage("--stack user needs at least one --ip ADDR/PREFIX"));
    }
    let mut sc = stack_config(a.mtu, 1024, 64);
    for ip in &a.ips {
        let bad = || Fail::usage(format!("--ip '{ip}' is not ADDRESS/PREFIX"));
        if ip.contains(':') {
            sc.ipv6.push(ip.parse().map_err(|_| bad())?);
        } else {
            sc.ipv4.push(ip.parse().map_err(|_| bad())?);
        }
    }
    for f in &cfg.forward {
        match f.vip.ip() {
            IpAddr::V4(v) => sc.ipv4.push(format!("{v}/32").parse().expect("an address is a /32")),
            IpAddr::V6(v) => sc.ipv6.push(format!("{v}/128").parse().expect("an address is a /128")),
        }
    }
    for g in &a.gateway {
        match g {
            IpAddr::V4(v) => sc.gateway_v4 = Some(*v),
            IpAddr::V6(v) => sc.gateway_v6 = Some(*v),
        }
    }
    let pool = pmd::Mempool::new(&pmd::MempoolConfig::new("lb-forward", a.mbufs, 2048, 128, 256))
        .map_err(|e| Fail::usage(format!("--mbufs: {e}")))?;
    let mut port = pmd::open(&spec).map_err(|e| Fail::usage(format!("--port {spec}: {e}")))?;
    port.configure(&PortConfig::new(1, 1, a.queue_size, a.queue_size, pool.clone()))
        .map_err(|e| Fail::usage(format!("--port {spec}: {e}")))?;
    port.set_promiscuous(true).map_err(|e| Fail::other(format!("--port {spec}: promiscuous: {e}")))?;
    port.start().map_err(|e| Fail::other(format!("--port {spec}: {e}")))?;
    let mac = port.info().mac;
    sc.mac = mac;
    let clock: Arc<dyn pmd::Clock> = Arc::new(MonotonicClock);
    let host = stack::Stack::new(sc, pool.clone(), clock.now_ns()).map_err(|e| Fail::usage(e.to_string()))?;
    let rxq = port.take_rx_queue(0).map_err(|e| Fail::other(e.to_string()))?;
    let txq = port.take_tx_queue(0).map_err(|e| Fail::other(e.to_string()))?;
    let fw = Forwarder::new(mac, &cfg.forward, &cfg.backends);
    let sig = pmd::runtime::StopSignal::install().map_err(|e| Fail::other(e.to_string()))?;
    let vips: Vec<String> = cfg.forward.iter().map(|f| format!("{}={} {:?}", f.name, f.vip, f.encap)).collect();
    // (The thread is not pinned: `--cores` names the one core for the
    // check above; pinning is the runtime's, which this path does not use.)
    eprintln!("lb: forwarding on {spec} ({mac}), {}", vips.join(" "));
    let mut l = CoreLoop::new(fw, host, rxq, txq, clock, 32);
    let mut polls: u64 = 0;
    loop {
        l.poll();
        polls += 1;
        if polls & 4095 == 0 && sig.raised() {
            break;
        }
    }
    let c = l.fw.counters();
    let per_vip: Vec<_> = cfg
        .forward
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let v = l.fw.vip_counters(i);
            serde_json::json!({
                "vip": f.name, "forwarded": v.forwarded, "bytes": v.bytes, "hits": v.hits, "misses": v.misses,
                "rehashed": v.rehashed, "evictions": v.evictions, "icmp_forwarded": v.icmp_forwarded,
                "fragments_forwarded": v.fragments_forwarded, "too_big_sent": v.too_big_sent,
                "dropped": {"malformed": v.dropped[0], "fragment": v.dropped[1], "options": v.dropped[2],
                    "no_server": v.dropped[3], "too_big": v.dropped[4], "no_headroom": v.dropped[5]},
                "per_server": v.per_server, "flows": l.fw.flows(i),
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({"rx": c.rx, "forwarded": c.forwarded, "passed": c.passed, "dropped": c.dropped,
            "tx_dropped": l.tx_dropped, "vips": per_vip})
    );
    Ok(())
}
