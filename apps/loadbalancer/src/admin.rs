//! The admin listener: a small HTTP/1.0 server on its own thread, on the
//! kernel's sockets (it is control, not data path), over what the cores
//! publish in [`Control`].
//!
//! * `GET /metrics`: Prometheus text format 0.0.4 — per frontend, backend,
//!   server (summed over cores) and per core: current and total connections,
//!   bytes each way, connect errors, retries, redispatches, queue, health,
//!   the connect-time histogram;
//! * `GET /stats`: the same as JSON (`{"cores":[snapshot, ...]}`);
//! * `POST /servers/BACKEND/SERVER/weight/N` (0..=256),
//!   `.../drain/on|off`, `.../state/up|down`, `.../remove`, and
//!   `POST /servers/BACKEND/SERVER/add?uri=tcp://IP:PORT&weight=N&maxconn=N&send_proxy=off|v1|v2`:
//!   the runtime API, applied on every core ([`Command`]); a reload re-reads
//!   the file and so replaces what the API changed, as HAProxy's does;
//! * `POST /reload`: as SIGHUP.
//!
//! Answers `200 ok`, `400` with one line naming what is wrong, or `404`.
//! One request per connection, at most 8 KiB of request head, 5 s to send it.
//! Each connection is served on its own short-lived thread, at most
//! [`MAX_CLIENTS`] at once (beyond: `503` at once), so a client that is slow
//! to send its request never holds up another (a scrape, the runtime API).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{resolve_uri, SendProxy, ServerSpec};
use crate::control::Control;
use crate::proxy::{Command, Snapshot, CONNECT_BUCKETS_US};

/// Admin connections served at once.
pub const MAX_CLIENTS: usize = 16;

/// Serves on `addr` until `ctl.stop`; `reload` is raised by `POST /reload`.
pub fn spawn(
    addr: SocketAddr,
    ctl: Arc<Control>,
    reload: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    serve(TcpListener::bind(addr)?, ctl, reload)
}

/// Serves on the bound listener `l` (see [`spawn`]).
pub fn serve(
    l: TcpListener,
    ctl: Arc<Control>,
    reload: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    l.set_nonblocking(true)?;
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("lb-admin".into()).spawn(move || {
        while !ctl.stop.load(Ordering::Acquire) {
            match l.accept() {
                Ok((mut s, _)) => {
                    if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                        busy.fetch_sub(1, Ordering::AcqRel);
                        let _ = respond(&mut s, 503, "text/plain", "too many admin connections\n");
                        continue;
                    }
                    let (c, r, b) = (ctl.clone(), reload.clone(), busy.clone());
                    let spawned = std::thread::Builder::new().name("lb-admin-conn".into()).spawn(move || {
                        let _ = serve_one(s, &c, &r);
                        b.fetch_sub(1, Ordering::AcqRel);
                    });
                    if spawned.is_err() {
                        busy.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    })
}

fn serve_one(mut s: TcpStream, ctl: &Control, reload: &AtomicBool) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = vec![0u8; 8192];
    let mut have = 0;
    while !buf[..have].windows(4).any(|w| w == b"\r\n\r\n") && !buf[..have].windows(2).any(|w| w == b"\n\n") {
        if have == buf.len() {
            return respond(&mut s, 400, "text/plain", "request head over 8 KiB\n");
        }
        match s.read(&mut buf[have..])? {
            0 => break,
            n => have += n,
        }
    }
    let head = String::from_utf8_lossy(&buf[..have]);
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (code, ctype, body) = route(method, target, ctl, reload);
    respond(&mut s, code, ctype, &body)
}

fn respond(s: &mut TcpStream, code: u16, ctype: &str, body: &str) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.0 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())
}

/// Answers one request: status, content type, body.
pub fn route(method: &str, target: &str, ctl: &Control, reload: &AtomicBool) -> (u16, &'static str, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        ("GET", "/metrics") => (200, "text/plain; version=0.0.4", metrics(&ctl.snapshots())),
        ("GET", "/stats") => {
            let body = serde_json::json!({ "cores": ctl.snapshots() }).to_string();
            (200, "application/json", body + "\n")
        }
        ("POST", "/reload") => {
            reload.store(true, Ordering::Release);
            (200, "text/plain", "reload requested\n".into())
        }
        ("POST", p) if p.starts_with("/servers/") => match command(p, query, ctl) {
            Ok(c) => {
                ctl.broadcast(c);
                (200, "text/plain", "ok\n".into())
            }
            Err(e) => (400, "text/plain", format!("{e}\n")),
        },
        _ => (404, "text/plain", "not found: GET /metrics, GET /stats, POST /servers/..., POST /reload\n".into()),
    }
}

/// Parses a runtime API path into a command, checked against the running
/// configuration (the backend must exist; the server must exist, or must not
/// for `add`).
pub fn command(path: &str, query: &str, ctl: &Control) -> Result<Command, String> {
    let segs: Vec<&str> = path.trim_start_matches("/servers/").split('/').collect();
    let (backend, server) = match segs.as_slice() {
        [b, s, ..] => (b.to_string(), s.to_string()),
        _ => return Err("use /servers/BACKEND/SERVER/ACTION".into()),
    };
    let snaps = ctl.snapshots();
    let known = snaps.first().and_then(|s| s.backends.iter().find(|b| b.0 == backend));
    let Some(known) = known else { return Err(format!("no backend named '{backend}'")) };
    let exists = known.2.iter().any(|s| s.0 == server);
    if !matches!(segs.get(2), Some(&"add")) && !exists {
        return Err(format!("backend {backend} has no server named '{server}'"));
    }
    match &segs[2..] {
        ["weight", n] => {
            let weight: u32 = n.parse().ok().filter(|w| *w <= 256).ok_or("weight must be 0..=256")?;
            Ok(Command::SetWeight { backend, server, weight })
        }
        ["drain", v @ ("on" | "off")] => Ok(Command::SetDrain { backend, server, drain: *v == "on" }),
        ["state", v @ ("up" | "down")] => Ok(Command::SetUp { backend, server, up: *v == "up" }),
        ["remove"] => Ok(Command::Remove { backend, server }),
        ["add"] => {
            if exists {
                return Err(format!("backend {backend} already has a server named '{server}'"));
            }
            let q: Vec<(&str, &str)> = query.split('&').filter_map(|kv| kv.split_once('=')).collect();
            let get = |k: &str| q.iter().find(|(n, _)| *n == k).map(|(_, v)| *v).ok_or(format!("add needs {k}="));
            let uri = get("uri")?.to_string();
            let addr = resolve_uri(&uri)?;
            let weight: u32 = get("weight")?.parse().ok().filter(|w| *w <= 256).ok_or("weight must be 0..=256")?;
            let maxconn: usize = get("maxconn")?.parse().map_err(|_| "maxconn must be a number")?;
            let send_proxy = match get("send_proxy")? {
                "off" => SendProxy::Off,
                "v1" => SendProxy::V1,
                "v2" => SendProxy::V2,
                _ => return Err("send_proxy must be off, v1 or v2".into()),
            };
            Ok(Command::Add {
                backend,
                server: ServerSpec { name: server, uri, addr, weight, maxconn, send_proxy, drain: false },
            })
        }
        _ => {
            Err("actions: weight/N, drain/on|off, state/up|down, remove, add?uri=..&weight=..&maxconn=..&send_proxy=.."
                .into())
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The Prometheus text of the cores' snapshots (summed over cores, and per
/// core where the core is the subject).
pub fn metrics(cores: &[Snapshot]) -> String {
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let fronts: Vec<String> =
        cores.first().map(|c| c.frontends.iter().map(|f| f.0.clone()).collect()).unwrap_or_default();
    let backs: Vec<String> =
        cores.first().map(|c| c.backends.iter().map(|b| b.0.clone()).collect()).unwrap_or_default();
    type FrontGet = fn(&crate::proxy::FrontendCounters) -> u64;
    let fm: [(&str, &str, &str, FrontGet); 9] = [
        ("lb_frontend_connections", "gauge", "client connections open", |f| f.cur),
        ("lb_frontend_connections_total", "counter", "client connections accepted", |f| f.total),
        ("lb_frontend_bytes_in_total", "counter", "bytes from clients", |f| f.bytes_in),
        ("lb_frontend_bytes_out_total", "counter", "bytes to clients", |f| f.bytes_out),
        ("lb_frontend_proxy_errors_total", "counter", "PROXY headers refused", |f| f.proxy_errors),
        ("lb_frontend_client_timeouts_total", "counter", "sessions ended by the client timeout", |f| f.client_timeouts),
        ("lb_frontend_client_resets_total", "counter", "sessions a client reset", |f| f.client_resets),
        ("lb_frontend_completed_total", "counter", "sessions that ended in order", |f| f.completed),
        ("lb_frontend_accept_errors_total", "counter", "accepts that failed (the listener went on)", |f| {
            f.accept_errors
        }),
    ];
    for (name, kind, help, get) in fm {
        family(&mut o, name, kind, help);
        for fe in &fronts {
            let v: u64 = cores.iter().flat_map(|c| c.frontends.iter().filter(|f| f.0 == *fe)).map(|f| get(&f.1)).sum();
            let _ = writeln!(o, "{name}{{frontend=\"{}\"}} {v}", esc(fe));
        }
    }
    type BackGet = fn(&crate::proxy::BackendCounters) -> u64;
    let bm: [(&str, &str, &str, BackGet); 11] = [
        ("lb_backend_queue", "gauge", "connections waiting for a server slot", |b| b.queue_cur),
        ("lb_backend_queued_total", "counter", "connections that waited in the queue", |b| b.queued),
        ("lb_backend_queue_full_total", "counter", "connections refused with the queue full", |b| b.queue_full),
        ("lb_backend_queue_timeouts_total", "counter", "connections that left the queue at its timeout", |b| {
            b.queue_timeouts
        }),
        ("lb_backend_no_server_total", "counter", "connections refused with no eligible server", |b| b.no_server),
        ("lb_backend_retries_total", "counter", "connect attempts after a failed one", |b| b.retries),
        ("lb_backend_redispatches_total", "counter", "retries on another server", |b| b.redispatches),
        ("lb_backend_connect_failures_total", "counter", "clients closed after every connect failed", |b| {
            b.connect_failures
        }),
        ("lb_backend_server_timeouts_total", "counter", "sessions ended by the server timeout", |b| b.server_timeouts),
        ("lb_backend_tunnel_timeouts_total", "counter", "sessions ended by the tunnel timeout", |b| b.tunnel_timeouts),
        ("lb_backend_server_resets_total", "counter", "sessions a server reset", |b| b.server_resets),
    ];
    for (name, kind, help, get) in bm {
        family(&mut o, name, kind, help);
        for be in &backs {
            let v: u64 = cores.iter().flat_map(|c| c.backends.iter().filter(|b| b.0 == *be)).map(|b| get(&b.1)).sum();
            let _ = writeln!(o, "{name}{{backend=\"{}\"}} {v}", esc(be));
        }
    }
    family(&mut o, "lb_backend_connect_seconds", "histogram", "time to connect to a server");
    for be in &backs {
        let mut buckets = vec![0u64; CONNECT_BUCKETS_US.len() + 1];
        let mut sum_us = 0u64;
        for b in cores.iter().flat_map(|c| c.backends.iter().filter(|b| b.0 == *be)) {
            for (t, v) in buckets.iter_mut().zip(&b.1.connect_us) {
                *t += v;
            }
            sum_us += b.1.connect_us_sum;
        }
        let mut cum = 0;
        for (i, le) in CONNECT_BUCKETS_US.iter().enumerate() {
            cum += buckets[i];
            let _ = writeln!(
                o,
                "lb_backend_connect_seconds_bucket{{backend=\"{}\",le=\"{}\"}} {cum}",
                esc(be),
                *le as f64 / 1e6
            );
        }
        cum += buckets[CONNECT_BUCKETS_US.len()];
        let _ = writeln!(o, "lb_backend_connect_seconds_bucket{{backend=\"{}\",le=\"+Inf\"}} {cum}", esc(be));
        let _ = writeln!(o, "lb_backend_connect_seconds_sum{{backend=\"{}\"}} {}", esc(be), sum_us as f64 / 1e6);
        let _ = writeln!(o, "lb_backend_connect_seconds_count{{backend=\"{}\"}} {cum}", esc(be));
    }
    type ServerGet = fn(&crate::proxy::ServerRow) -> u64;
    let sm: [(&str, &str, &str, ServerGet); 6] = [
        ("lb_server_connections", "gauge", "connections to the server open", |s| s.2 as u64),
        ("lb_server_connections_total", "counter", "connections made to the server", |s| s.3.total),
        ("lb_server_connect_errors_total", "counter", "connects to the server that failed", |s| s.3.connect_errors),
        ("lb_server_bytes_in_total", "counter", "bytes sent to the server", |s| s.3.bytes_in),
        ("lb_server_bytes_out_total", "counter", "bytes received from the server", |s| s.3.bytes_out),
        ("lb_server_downs_total", "counter", "times a core saw the server go down", |s| s.3.downs),
    ];
    let servers: Vec<(String, String)> = cores
        .first()
        .map(|c| c.backends.iter().flat_map(|b| b.2.iter().map(|s| (b.0.clone(), s.0.clone()))).collect())
        .unwrap_or_default();
    family(&mut o, "lb_server_up", "gauge", "1 when the server is up (as core 0 sees it)");
    for (b, s) in &servers {
        let up = cores
            .first()
            .and_then(|c| c.backends.iter().find(|x| x.0 == *b))
            .and_then(|x| x.2.iter().find(|r| r.0 == *s))
            .is_some_and(|r| r.1);
        let _ = writeln!(o, "lb_server_up{{backend=\"{}\",server=\"{}\"}} {}", esc(b), esc(s), u8::from(up));
    }
    for (name, kind, help, get) in sm {
        family(&mut o, name, kind, help);
        for (b, s) in &servers {
            let v: u64 = cores
                .iter()
                .flat_map(|c| c.backends.iter().filter(|x| x.0 == *b))
                .flat_map(|x| x.2.iter().filter(|r| r.0 == *s))
                .map(get)
                .sum();
            let _ = writeln!(o, "{name}{{backend=\"{}\",server=\"{}\"}} {v}", esc(b), esc(s));
        }
    }
    family(&mut o, "lb_core_sessions", "gauge", "sessions open on the core");
    for (i, c) in cores.iter().enumerate() {
        let _ = writeln!(o, "lb_core_sessions{{core=\"{i}\"}} {}", c.sessions);
    }
    family(&mut o, "lb_core_connections_total", "counter", "client connections the core accepted");
    for (i, c) in cores.iter().enumerate() {
        let v: u64 = c.frontends.iter().map(|f| f.1.total).sum();
        let _ = writeln!(o, "lb_core_connections_total{{core=\"{i}\"}} {v}");
    }
    family(&mut o, "lb_core_busy_seconds_total", "counter", "time the core's loop spent in iterations that did work");
    for (i, c) in cores.iter().enumerate() {
        let _ = writeln!(o, "lb_core_busy_seconds_total{{core=\"{i}\"}} {}", c.busy_ns as f64 / 1e9);
    }
    // The stack's own per-core counters (the same names on every core).
    let names: Vec<&str> = cores.first().map(|c| c.stack.iter().map(|s| s.0.as_str()).collect()).unwrap_or_default();
    for name in names {
        family(&mut o, &format!("lb_core_stack_{name}_total"), "counter", "the stack's per-core counter of that name");
        for (i, c) in cores.iter().enumerate() {
            let v = c.stack.iter().find(|s| s.0 == name).map_or(0, |s| s.1);
            let _ = writeln!(o, "lb_core_stack_{name}_total{{core=\"{i}\"}} {v}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, INIT};
    use crate::proxy::Lb;

    fn control() -> Arc<Control> {
        let cfg = Arc::new(Config::check(INIT).unwrap());
        let ctl = Control::new(2, cfg.clone(), Duration::from_secs(1));
        for core in 0..2 {
            let lb = Lb::new(flow::mem::MemNet::new(), &cfg);
            ctl.set_snapshot(core, lb.snapshot());
        }
        ctl
    }

    #[test]
    fn metrics_are_prometheus_text_with_every_family_typed_and_a_cumulative_histogram() {
        let ctl = control();
        let text = metrics(&ctl.snapshots());
        for fam in [
            "lb_frontend_connections_total",
            "lb_frontend_bytes_in_total",
            "lb_backend_queue",
            "lb_backend_retries_total",
            "lb_backend_connect_seconds",
            "lb_server_up",
            "lb_server_connect_errors_total",
            "lb_core_sessions",
            "lb_core_connections_total",
            "lb_core_busy_seconds_total",
        ] {
            assert!(text.contains(&format!("# TYPE {fam} ")), "{fam} missing");
        }
        assert!(text.contains("lb_server_up{backend=\"web\",server=\"s2\"} 1"));
        assert!(text.contains("lb_backend_connect_seconds_bucket{backend=\"web\",le=\"+Inf\"} 0"));
        assert!(text.contains("lb_core_sessions{core=\"1\"} 0"));
        // The stack's per-core counters, one family each, per core.
        let mut snaps = ctl.snapshots();
        for (i, s) in snaps.iter_mut().enumerate() {
            s.stack = vec![("rss_misdirected".into(), i as u64), ("frames_handed_off".into(), 7)];
        }
        let with_stack = metrics(&snaps);
        assert!(with_stack.contains("# TYPE lb_core_stack_rss_misdirected_total counter"));
        assert!(with_stack.contains("lb_core_stack_rss_misdirected_total{core=\"1\"} 1"));
        assert!(with_stack.contains("lb_core_stack_frames_handed_off_total{core=\"0\"} 7"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(name.starts_with("lb_"), "{line}");
        }
    }

    #[test]
    fn a_client_slow_to_send_its_request_does_not_hold_up_another() {
        let ctl = control();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = serve(l, ctl.clone(), Arc::new(AtomicBool::new(false))).unwrap();
        // Three connections that send nothing (each would hold a serial
        // server for its 5 s read timeout, and then be closed).
        let silent: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /stats HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.0 200"), "{text}");
        // Answered while the silent ones are still open, unanswered.
        for mut s in silent {
            s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 1];
            let e = s.read(&mut b).expect_err("a silent connection got an answer or was closed");
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        }
        ctl.stop();
        h.join().unwrap();
    }

    #[test]
    fn the_runtime_api_turns_paths_into_commands_for_every_core_and_names_what_is_wrong() {
        let ctl = control();
        let reload = AtomicBool::new(false);
        assert_eq!(route("POST", "/servers/web/s2/weight/7", &ctl, &reload).0, 200);
        assert_eq!(route("POST", "/servers/web/s1/drain/on", &ctl, &reload).0, 200);
        let want = [
            Command::SetWeight { backend: "web".into(), server: "s2".into(), weight: 7 },
            Command::SetDrain { backend: "web".into(), server: "s1".into(), drain: true },
        ];
        assert_eq!(ctl.take_commands(0), want);
        assert_eq!(ctl.take_commands(1), want);
        let (code, _, body) = route("POST", "/servers/web/s9/weight/1", &ctl, &reload);
        assert_eq!((code, body.as_str()), (400, "backend web has no server named 's9'\n"));
        assert_eq!(route("POST", "/servers/web/s1/weight/300", &ctl, &reload).0, 400);
        assert_eq!(route("POST", "/servers/nope/s1/weight/1", &ctl, &reload).0, 400);
        let add = "/servers/web/s4/add?uri=tcp://198.18.2.4:8081&weight=2&maxconn=10&send_proxy=v2";
        assert_eq!(route("POST", add, &ctl, &reload).0, 200);
        assert!(
            matches!(&ctl.take_commands(0)[..], [Command::Add { server, .. }] if server.weight == 2 && server.send_proxy == SendProxy::V2)
        );
        let (code, _, body) =
            route("POST", "/servers/web/s4/add?uri=tcp://x.invalid:1&weight=2&maxconn=1&send_proxy=off", &ctl, &reload);
        assert_eq!((code, body.as_str()), (400, "'tcp://x.invalid:1' does not resolve\n"));
        assert_eq!(
            route(
                "POST",
                "/servers/web/s1/add?uri=tcp://198.18.2.4:1&weight=1&maxconn=1&send_proxy=off",
                &ctl,
                &reload
            )
            .0,
            400
        );
        assert_eq!(route("POST", "/reload", &ctl, &reload).0, 200);
        assert!(reload.load(Ordering::Acquire));
        assert_eq!(route("GET", "/nothing", &ctl, &reload).0, 404);
        let (code, _, json) = route("GET", "/stats", &ctl, &reload);
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["cores"].as_array().unwrap().len(), 2);
    }
}
