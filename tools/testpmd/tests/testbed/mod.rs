//! Helpers for tests whose peer is the Linux kernel in a network namespace made by
//! `scripts/testbed.sh`. Every namespace is removed by a Drop guard, also when the
//! test fails; every child process is killed by one.
//!
//! Rule: under `CI=true` these tests must run (a missing privilege is a failure);
//! elsewhere they skip with a message saying why.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Whether this test can use namespaces here, with `programs` besides `ip`;
/// panics under CI when it cannot (see `testkit`), naming what is missing.
pub fn available(programs: &[&str]) -> bool {
    if !testkit::require_root("network namespaces, TAP, AF_PACKET") {
        return false;
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return testkit::skip("/dev/net/tun is missing");
    }
    testkit::require(&[&["ip"], programs].concat())
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/testbed.sh")
}

/// A namespace from `scripts/testbed.sh up`, removed on drop.
pub struct Testbed {
    pub ns: String,
}

impl Testbed {
    /// `testbed.sh up UNIQUE_NAME ARGS...`.
    pub fn up(tag: &str, args: &[&str]) -> Testbed {
        static N: AtomicU32 = AtomicU32::new(0);
        let ns = format!("pmdt{}_{}_{}", std::process::id(), tag, N.fetch_add(1, Ordering::Relaxed));
        let tb = Testbed { ns };
        let out = Command::new(script()).arg("up").arg(&tb.ns).args(args).output().expect("testbed.sh runs");
        assert!(out.status.success(), "testbed.sh up {} failed: {}", tb.ns, String::from_utf8_lossy(&out.stderr));
        tb
    }

    /// A command run inside the namespace.
    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, prog]);
        c
    }

    /// Runs a command inside the namespace and returns its output.
    pub fn run(&self, prog: &str, args: &[&str]) -> Output {
        self.cmd(prog).args(args).output().unwrap_or_else(|e| panic!("{prog}: {e}"))
    }

    /// Contents of a file as seen from inside the namespace (sysfs, /proc/net).
    pub fn read(&self, path: &str) -> String {
        String::from_utf8_lossy(&self.run("cat", &[path]).stdout).trim().to_string()
    }

    /// Waits until `f` holds, at most `secs` seconds.
    pub fn wait_for(&self, what: &str, secs: f64, mut f: impl FnMut(&Testbed) -> bool) {
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        while !f(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what} in {}", self.ns);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("down").arg(&self.ns).status();
    }
}

/// A child process killed (and reaped) on drop unless waited for.
pub struct Guarded(pub Option<Child>);

impl Guarded {
    pub fn spawn(mut c: Command) -> Guarded {
        Guarded(Some(c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn")))
    }

    /// Waits (at most `secs`) and returns the output.
    pub fn wait(mut self, secs: f64) -> Output {
        let mut child = self.0.take().expect("not waited yet");
        let deadline = Instant::now() + Duration::from_secs_f64(secs);
        while child.try_wait().expect("try_wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = child.wait_with_output().expect("reap");
                panic!("child timed out after {secs}s: stderr {}", String::from_utf8_lossy(&out.stderr));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("output")
    }

    /// Reads stderr lines until one contains `needle` (e.g. tcpdump's "listening on").
    pub fn wait_stderr(&mut self, needle: &str, secs: f64) {
        let child = self.0.as_mut().expect("running");
        let err = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let needle = needle.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains(&needle) {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs_f64(secs)).expect("child printed the expected line in time");
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The testpmd binary of this build.
pub fn testpmd() -> &'static str {
    env!("CARGO_BIN_EXE_testpmd")
}

/// A core for testpmd's forwarding thread.
pub fn core() -> String {
    pmd::runtime::available_cores().last().copied().unwrap_or(0).to_string()
}

/// testpmd's --json output.
pub fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "status {:?}, stdout {}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

/// Frames of a pcap file.
pub fn pcap_frames(path: &std::path::Path) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).expect("pcap file");
    let mut r = pcap_file::pcap::PcapReader::new(f).expect("pcap header");
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.expect("pcap record");
        assert_eq!(p.data.len() as u32, p.orig_len, "frame captured whole");
        v.push(p.data.into_owned());
    }
    v
}
