//! What the tests share about their surroundings: whether they run under CI,
//! as root, and whether the external programs they drive are installed.
//!
//! # The rule
//! A test that needs something this machine may lack (root, a namespace, an
//! external program such as `dpdk-testpmd`) checks for it *first*:
//! - under `CI=true` a missing piece is a failure, at once, with a message that
//!   names it (nothing may skip in CI);
//! - elsewhere the test prints `SKIPPED <test>: <why>` and passes.
//!
//! A missing program is never discovered through a time-out: the message names
//! the program and the Debian package that brings it, from the project's one
//! list, `scripts/packages.txt`, which `scripts/setup.sh test` installs:
//!
//! ```text
//! dpdk-testpmd not found: install dpdk-dev (scripts/setup.sh test)
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::{Path, PathBuf};

/// `scripts/packages.txt`, the list `scripts/setup.sh` installs from.
const PACKAGES: &str = include_str!("../../scripts/packages.txt");

/// Whether the tests run under CI (`CI=true`), where nothing may skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // /proc/self/status: "Uid:\treal\teffective\tsaved\tfs".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// A line of `scripts/packages.txt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Package {
    /// The Debian package.
    pub name: &'static str,
    /// `test` or `bench`: which `scripts/setup.sh` stage installs it.
    pub stage: &'static str,
}

/// Every package of `scripts/packages.txt` with the programs it provides.
pub fn packages() -> impl Iterator<Item = (Package, impl Iterator<Item = &'static str>)> {
    PACKAGES.lines().filter_map(|l| {
        let l = l.split('#').next().unwrap_or("").trim();
        let mut f = l.split_whitespace();
        let (name, stage, progs) = (f.next()?, f.next()?, f.next().unwrap_or("-"));
        Some((Package { name, stage }, progs.split(',').filter(|p| *p != "-")))
    })
}

/// The package of `scripts/packages.txt` that provides `program`.
pub fn package_of(program: &str) -> Option<Package> {
    packages().find_map(|(p, mut progs)| progs.any(|x| x == program).then_some(p))
}

/// Where `program` is: a path is taken as it is, a bare name is looked up in
/// `PATH`, as `execvp` would. `None` if there is no executable file.
pub fn find_program(program: &str) -> Option<PathBuf> {
    fn executable(p: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| executable(p))
}

/// Why `program` cannot run here, naming the package that brings it; `None`
/// if it is installed.
pub fn missing(program: &str) -> Option<String> {
    if find_program(program).is_some() {
        return None;
    }
    let base = program.rsplit('/').next().unwrap_or(program);
    Some(match package_of(base) {
        Some(p) => format!("{program} not found: install {} (scripts/setup.sh {})", p.name, p.stage),
        None => format!(
            "{program} not found, and scripts/packages.txt names no package for it (add one, with the test that needs it)"
        ),
    })
}

/// The running test's name: the test harness names each test's thread after
/// the test (nextest runs one test a process, with the same thread name).
fn current_test() -> String {
    std::thread::current().name().unwrap_or("test").to_string()
}

/// Says that the running test cannot run, and why: a panic under `CI=true`,
/// where nothing may skip; elsewhere a `SKIPPED` line on stderr. Returns
/// `false`, so a test can `return` on it: `if !testkit::require(..) { return; }`.
pub fn skip(why: &str) -> bool {
    let test = current_test();
    assert!(!in_ci(), "{test}: cannot run under CI=true: {why}");
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// Whether every program in `programs` is installed; if one is not, [`skip`]s
/// with a message naming each missing program and its package.
pub fn require(programs: &[&str]) -> bool {
    let why: Vec<String> = programs.iter().filter_map(|p| missing(p)).collect();
    why.is_empty() || skip(&why.join("; "))
}

/// Whether this process is root; if not, [`skip`]s saying that `what` needs it.
pub fn require_root(what: &str) -> bool {
    is_root() || skip(&format!("needs root ({what})"))
}

/// A command line written as one string, split at spaces (no argument in the
/// tests' command lines contains one), so a test reads like the command a
/// user would type: `cli("--listen 7 --serve sink --backlog 16")`.
pub fn cli(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Runs `args[0]` with the rest as its arguments and returns its stdout; an
/// error (naming the command, with its stdout and stderr) if it cannot start
/// or exits non-zero.
pub fn sh(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Reads `from` (a child's stdout, say) on a thread of its own until it ends,
/// handing each chunk to `sink`: the test can watch the output as it comes
/// while the pipe never fills up and stalls the child.
pub fn drain(
    mut from: impl std::io::Read + Send + 'static,
    mut sink: impl FnMut(&[u8]) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink(&buf[..n]);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_hands_over_every_byte_until_the_end() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let g = got.clone();
        drain(std::io::Cursor::new(data.clone()), move |b| g.lock().unwrap().extend_from_slice(b)).join().unwrap();
        assert_eq!(*got.lock().unwrap(), data);
    }

    #[test]
    fn every_line_of_the_list_has_a_package_and_a_known_stage() {
        let mut n = 0;
        for (p, _) in packages() {
            assert!(p.stage == "test" || p.stage == "bench", "{}: stage {}", p.name, p.stage);
            n += 1;
        }
        assert!(n >= 10, "only {n} packages read from scripts/packages.txt");
    }

    #[test]
    fn a_program_is_found_with_its_package() {
        assert_eq!(package_of("dpdk-testpmd").map(|p| p.name), Some("dpdk-dev"));
        assert_eq!(package_of("ss").map(|p| p.name), Some("iproute2"));
        assert_eq!(package_of("libdpdk-dev"), None, "a library package provides no program");
    }

    #[test]
    fn a_missing_program_is_named_with_the_package_that_brings_it() {
        // A name no PATH holds, then one that the list maps.
        let m = missing("no-such-program-testkit").unwrap();
        assert!(m.contains("no-such-program-testkit not found") && m.contains("names no package"), "{m}");
        let m = missing("/nonexistent/dpdk-testpmd").unwrap();
        assert_eq!(m, "/nonexistent/dpdk-testpmd not found: install dpdk-dev (scripts/setup.sh test)");
    }

    #[test]
    fn a_missing_program_skips_outside_ci_and_fails_under_it() {
        // The harness runs each test on a thread named after it; run the check
        // on such a thread with and without CI=true in the environment it reads.
        if in_ci() {
            let r = std::thread::Builder::new()
                .name("a_test".into())
                .spawn(|| require(&["no-such-program-testkit"]))
                .unwrap()
                .join();
            let msg = r.expect_err("under CI=true a missing program fails the test");
            let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(msg.contains("a_test: cannot run under CI=true: no-such-program-testkit not found"), "{msg}");
        } else {
            assert!(!require(&["no-such-program-testkit"]), "outside CI it skips");
            assert!(require(&["sh"]));
        }
    }

    #[test]
    fn a_program_on_the_path_is_found() {
        // `sh` is in every Debian (essential).
        assert!(find_program("sh").is_some());
        assert!(missing("sh").is_none());
    }
}
