//! Helpers for the DPDK integration tests: running `testpmd` as a bounded
//! subprocess, hugepage reservation that is always undone, and namespaces that
//! are always removed.
#![allow(dead_code)]

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Upper bound for any one subprocess.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Whether to skip a test that needs root (`why` says for what): never under
/// CI, where it fails instead (see `testkit`).
pub fn skip(why: &str) -> bool {
    !testkit::require_root(why.trim_start_matches("needs root for "))
}

/// Whether to skip a test because one of `programs` is missing: never under CI,
/// where it fails at once naming the program and its Debian package.
pub fn lacks(programs: &[&str]) -> bool {
    !testkit::require(programs)
}

pub fn core() -> String {
    pmd::runtime::available_cores().last().copied().unwrap_or(0).to_string()
}

/// A file prefix unique to this process and tag.
pub fn prefix(tag: &str) -> String {
    format!("pmdt-{}-{tag}", std::process::id())
}

pub fn no_huge_eal(tag: &str) -> String {
    format!(
        "-l 0 --no-huge -m 256 --no-pci --no-shconf --file-prefix {} --no-telemetry --log-level=lib.eal:error",
        prefix(tag)
    )
}

/// Waits for `child` at most `limit`, killing it after; returns its output.
pub fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let t0 = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!(
                "process ran over {limit:?} and was killed; stdout: {} stderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Runs our testpmd (`--json` added; `--eal EAL` unless empty), bounded.
pub fn testpmd(args: &[&str], eal: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_testpmd"));
    cmd.args(args).arg("--json");
    if !eal.is_empty() {
        cmd.arg("--eal").arg(eal);
    }
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("testpmd runs");
    wait_bounded(child, RUN_LIMIT)
}

pub fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "status {:?}, stderr: {}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("one JSON object on stdout ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Asserts the exit status and returns stderr.
pub fn failure(out: &Output, status: i32) -> String {
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(status), "stderr: {e}");
    e
}

pub fn u(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

/// One net_ring loopback port seeded with 2 bursts of 32: exactly those 64
/// are in flight at the end, nothing is dropped, nothing leaks.
pub fn assert_exact_ring_counts(v: &serde_json::Value, mode: &str) {
    assert_eq!(v["fwd"], mode);
    assert_eq!(u(v, "mbufs_leaked"), 0, "{v}");
    let p = &v["ports"][0];
    assert_eq!(u(p, "tx_dropped") + u(p, "rx_missed") + u(p, "rx_errors") + u(p, "tx_errors"), 0, "{p}");
    assert_eq!(u(p, "tx_packets") - u(p, "rx_packets"), 64, "{mode}: {v}");
    if !p["spec"].as_str().unwrap_or("").contains("checks=none") {
        assert_eq!(u(p, "tx_bytes") - u(p, "rx_bytes"), 64 * 64, "{mode}: {v}");
    } else {
        // Bytes are the device's own counters there, and net_ring keeps none.
        assert_eq!(u(p, "tx_bytes") + u(p, "rx_bytes"), 0, "{mode}: {v}");
    }
    assert_eq!(u(p, "fwd_tx"), u(p, "tx_packets"), "{v}");
    assert!(u(p, "rx_packets") > 10_000, "{v}");
    assert_eq!(p["xstats"]["tx_copies"].as_u64(), Some(0), "{v}");
}

fn sh(cmd: &str) -> Output {
    Command::new("sh").arg("-c").arg(cmd).output().expect("sh runs")
}

/// Runs a shell command and asserts success.
pub fn run(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// 2 MB hugepages reserved for the guard's life: `nr_hugepages` goes back to
/// its previous value on drop (also when the test panics). With `--in-memory`,
/// EAL needs no hugetlbfs mount. Tests that reserve take a process-wide lock so
/// they do not undo each other's reservation.
pub struct Hugepages {
    before: u64,
    _lock: std::sync::MutexGuard<'static, ()>,
}

static HUGE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
const NR: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

impl Hugepages {
    pub fn reserve(pages: u64) -> Hugepages {
        let lock = HUGE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let before: u64 = std::fs::read_to_string(NR).expect("hugepage sysfs").trim().parse().unwrap();
        let want = before + pages;
        std::fs::write(NR, want.to_string()).expect("reserve hugepages");
        let got: u64 = std::fs::read_to_string(NR).unwrap().trim().parse().unwrap();
        let g = Hugepages { before, _lock: lock };
        assert!(got >= want, "asked for {want} hugepages, the kernel gave {got}");
        g
    }
}

impl Drop for Hugepages {
    fn drop(&mut self) {
        let _ = std::fs::write(NR, self.before.to_string());
    }
}

/// A network namespace that is deleted on drop (also on panic), with a name
/// unique to this process.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("pmdt{}{tag}", std::process::id());
        let _ = sh(&format!("ip netns del {name} 2>/dev/null"));
        run(&format!("ip netns add {name}"));
        run(&format!("ip -n {name} link set lo up"));
        Netns { name }
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, cmd: &str) -> Output {
        sh(&format!("ip netns exec {} {cmd}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&format!("ip netns del {}", self.name));
    }
}

/// Deletes a root-namespace link on drop (veth peers go with it).
pub struct Link(pub String);

impl Drop for Link {
    fn drop(&mut self) {
        let _ = sh(&format!("ip link del {} 2>/dev/null", self.0));
    }
}
