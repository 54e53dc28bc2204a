//! Shared by the echo integration tests: the binary, CI policy, guards that
//! clean up child processes and namespaces even when a test fails.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use testkit::skip as unavailable;

pub fn echo_bin() -> &'static str {
    env!("CARGO_BIN_EXE_echo")
}

/// Runs `echo ARGS` to completion (bounded: killed after `limit`).
pub fn echo(args: &[&str], limit: Duration) -> Output {
    run_bounded(Command::new(echo_bin()).args(args), limit)
}

pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("spawn");
    let pid = child.id();
    let guard = Killer(Some(pid));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx.recv_timeout(limit).unwrap_or_else(|_| panic!("{cmd:?} ran longer than {limit:?}")).expect("wait");
    drop(guard);
    out
}

/// Kills a process by id on drop, if it is still running.
struct Killer(Option<u32>);

impl Drop for Killer {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).stderr(std::process::Stdio::null()).status();
        }
    }
}

/// A background child: SIGINT then SIGKILL on drop.
pub struct Bg {
    pub child: Option<Child>,
}

impl Bg {
    pub fn spawn(cmd: &mut Command) -> Bg {
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn background process");
        Bg { child: Some(child) }
    }

    /// SIGINT, then waits (bounded) and returns the output.
    pub fn stop(mut self) -> Output {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill").args(["-INT", &c.id().to_string()]).status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = c.try_wait() {
                return c.wait_with_output().expect("output");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        c.wait_with_output().expect("output")
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A unique short name for namespaces and ports of this test process.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id() % 100_000, SEQ.fetch_add(1, Ordering::Relaxed))
}

/// A namespace made by `scripts/testbed.sh up` and removed on drop.
pub struct Testbed(pub String);

impl Testbed {
    pub fn up(name: &str, extra: &[&str]) -> Result<Testbed, String> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/testbed.sh");
        let out = Command::new(script).arg("up").arg(name).args(extra).output().map_err(|e| e.to_string())?;
        let tb = Testbed(name.to_string());
        if !out.status.success() {
            return Err(format!("testbed.sh up {name}: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(tb)
    }

    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, prog]);
        c
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/testbed.sh");
        let _ = Command::new(script).args(["down", &self.0]).status();
    }
}

/// A bare namespace (loopback only, no routes), removed on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(name: &str) -> Result<Netns, String> {
        let _ = Command::new("ip").args(["netns", "del", name]).status();
        let ok = Command::new("ip").args(["netns", "add", name]).status().map_err(|e| e.to_string())?;
        if !ok.success() {
            return Err(format!("ip netns add {name} failed (root needed)"));
        }
        let ns = Netns(name.to_string());
        let _ = Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]).status();
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The stderr of a run, which must be exactly one line.
pub fn one_line(o: &Output) -> String {
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got:\n{e}");
    assert!(lines[0].starts_with("echo: "), "{e}");
    lines[0].to_string()
}

/// The last line of a run's stdout that is a JSON object (the counters the
/// server prints as it stops, a command's `--json` result), parsed.
pub fn last_json(o: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line: {text} {}", String::from_utf8_lossy(&o.stderr)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// Exit status 2 and one line on stderr that mentions `needle`.
pub fn assert_exits_2_naming(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let line = one_line(o);
    assert!(line.contains(needle), "'{line}' should mention '{needle}': {o:?}");
}

/// A plain echo server (TCP and UDP on `listen`, no banner, no TLS, not in
/// sockperf mode), its UDP queue `udp_queue` deep, idle connections closed
/// after `idle`.
pub fn echo_server_config(listen: SocketAddr, udp_queue: usize, idle: Duration) -> echo::server::ServerConfig {
    echo::server::ServerConfig {
        listen,
        listen_cfg: flow::kernel::tests_support::listen_config(listen.port().max(1)),
        udp: flow::UdpConfig { rx_queue_len: udp_queue },
        idle_timeout: Some(idle),
        sockperf: false,
        udp_enabled: true,
        banner: None,
        tls: None,
    }
}

/// One client load: `conns` connections to `target` in `mode` (at `rate`
/// messages a second where the mode paces), patterned `size`-byte messages,
/// for `secs`, each connect given `connect_timeout`.
pub fn client_config(
    target: SocketAddr,
    mode: echo::client::Mode,
    conns: usize,
    rate: f64,
    size: usize,
    secs: f64,
    connect_timeout: Duration,
) -> Arc<echo::client::ClientConfig> {
    Arc::new(echo::client::ClientConfig {
        target,
        via: None,
        payload: echo::client::Payload::Pattern,
        conns,
        size,
        mode,
        rate,
        duration: Duration::from_secs_f64(secs),
        connect_timeout,
        tcp: flow::kernel::tests_support::tcp_config(),
        progress: false,
    })
}
