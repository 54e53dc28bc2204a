//! EAL set-up: once per process, from an explicit [`EalConfig`].

use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::path::PathBuf;
use std::sync::Mutex;

use dpdk_sys as sys;

use crate::PmdError;

/// How EAL gets its memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EalMemory {
    /// `--no-huge -m MB`: ordinary anonymous memory (tests, CI, laptops). DPDK
    /// 22.11 turns on legacy memory mode for this and refuses `--in-memory`
    /// with it, so [`EalConfig::shared_config`] must be `false` for a private
    /// process. Devices that share memory with another process (virtio-user ->
    /// vhost) do not work in this mode: the memory has no file descriptor.
    NoHuge {
        /// Megabytes of memory EAL reserves up front.
        mb: u32,
    },
    /// Hugepages, reserved by the administrator (`scripts/hugepages.sh`).
    Hugepages {
        /// Megabytes to reserve up front (`-m`); `None` lets EAL grow on demand.
        mb: Option<u32>,
        /// The hugetlbfs mount to use (`--huge-dir`); `None` lets EAL find one.
        huge_dir: Option<PathBuf>,
        /// `--in-memory`: no files in hugetlbfs and no shared config (memfd
        /// backed, so virtio-user can still share it with a vhost backend).
        in_memory: bool,
    },
}

/// Which PCI devices EAL may probe at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EalPci {
    /// `--no-pci`: none (vdevs only).
    Disabled,
    /// `-a ADDR` for each: only these.
    Allow(Vec<String>),
    /// `-b ADDR` for each: all but these (only devices bound to vfio-pci /
    /// uio are taken by DPDK; others are skipped).
    Block(Vec<String>),
    /// Every device bound to a DPDK-compatible kernel driver.
    All,
}

/// Everything `rte_eal_init` is given. Every value is the caller's: there is
/// no hidden default. [`EalConfig::to_args`] shows the exact command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EalConfig {
    /// `argv[0]`, shown in EAL's messages.
    pub program: String,
    /// `-l LIST`: the lcores EAL knows about (the first is the main lcore,
    /// which the calling thread is pinned to).
    pub cores: String,
    /// Memory source.
    pub memory: EalMemory,
    /// `--file-prefix`: separates the runtime files of processes that share
    /// a machine (`None`: EAL's `rte`).
    pub file_prefix: Option<String>,
    /// Whether EAL writes its shared config (for secondary processes); `false`
    /// is `--no-shconf`.
    pub shared_config: bool,
    /// PCI probing.
    pub pci: EalPci,
    /// `--vdev ARG` for each, created at start-up (ports can also create
    /// vdevs later: `dpdk:net_ring0`).
    pub vdevs: Vec<String>,
    /// `--log-level` values, e.g. `lib.eal:error` or `7`.
    pub log_levels: Vec<String>,
    /// `false` is `--no-telemetry` (no telemetry socket and thread).
    pub telemetry: bool,
    /// Further arguments, passed verbatim (after everything above).
    pub extra: Vec<String>,
}

impl EalConfig {
    /// A private, hugepage-less EAL: `--no-huge -m MB --no-shconf --no-pci
    /// --no-telemetry --file-prefix PREFIX -l CORES`. The usual choice for
    /// tests over vdevs.
    pub fn no_huge(cores: &str, mb: u32, file_prefix: &str) -> EalConfig {
        EalConfig {
            program: "pmd".into(),
            cores: cores.into(),
            memory: EalMemory::NoHuge { mb },
            file_prefix: Some(file_prefix.into()),
            shared_config: false,
            pci: EalPci::Disabled,
            vdevs: Vec::new(),
            log_levels: Vec::new(),
            telemetry: false,
            extra: Vec::new(),
        }
    }

    /// Parses an EAL command line (as given to `testpmd --eal "..."`, without
    /// `argv[0]`). Known options fill the fields; anything else goes to
    /// [`extra`](Self::extra) and reaches EAL as written, which rejects what it
    /// does not know.
    ///
    /// Without `--no-huge` the memory is hugepages. `-l` is required.
    pub fn from_args(args: &str) -> Result<EalConfig, PmdError> {
        let bad = |reason: String| PmdError::Config { field: "eal", reason };
        let toks: Vec<String> = args.split_whitespace().map(str::to_string).collect();
        let mut cores = None;
        let mut no_huge = false;
        let mut mb: Option<u32> = None;
        let mut huge_dir = None;
        let mut in_memory = false;
        let mut cfg = EalConfig {
            program: "pmd".into(),
            cores: String::new(),
            memory: EalMemory::NoHuge { mb: 0 },
            file_prefix: None,
            shared_config: true,
            pci: EalPci::All,
            vdevs: Vec::new(),
            log_levels: Vec::new(),
            telemetry: true,
            extra: Vec::new(),
        };
        let (mut allow, mut block, mut no_pci) = (Vec::new(), Vec::new(), false);
        let mut it = toks.into_iter();
        while let Some(t) = it.next() {
            // `--opt=value` and `--opt value` are both accepted.
            let (name, inline) = match t.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
                _ => (t.clone(), None),
            };
            let takes_value = matches!(
                name.as_str(),
                "-l" | "-m"
                    | "--huge-dir"
                    | "--file-prefix"
                    | "-a"
                    | "--allow"
                    | "-b"
                    | "--block"
                    | "--vdev"
                    | "--log-level"
            );
            let value = if takes_value {
                match inline {
                    Some(v) => Some(v),
                    None => Some(it.next().ok_or_else(|| bad(format!("EAL option '{name}' needs a value")))?),
                }
            } else {
                None
            };
            let v = value.unwrap_or_default();
            match name.as_str() {
                "-l" => cores = Some(v),
                "-m" => mb = Some(v.parse().map_err(|_| bad(format!("-m '{v}' is not a number of megabytes")))?),
                "--no-huge" => no_huge = true,
                "--huge-dir" => huge_dir = Some(PathBuf::from(v)),
                "--in-memory" => in_memory = true,
                "--file-prefix" => cfg.file_prefix = Some(v),
                "--no-shconf" => cfg.shared_config = false,
                "-a" | "--allow" => allow.push(v),
                "-b" | "--block" => block.push(v),
                "--no-pci" => no_pci = true,
                "--vdev" => cfg.vdevs.push(v),
                "--log-level" => cfg.log_levels.push(v),
                "--no-telemetry" => cfg.telemetry = false,
                _ => cfg.extra.push(t),
            }
        }
        cfg.cores = cores.ok_or_else(|| bad("EAL arguments need '-l CORES' (e.g. -l 0)".into()))?;
        cfg.memory = if no_huge {
            if huge_dir.is_some() || in_memory {
                return Err(bad("--no-huge cannot be combined with --huge-dir or --in-memory".into()));
            }
            EalMemory::NoHuge { mb: mb.ok_or_else(|| bad("--no-huge needs '-m MB' (the memory to reserve)".into()))? }
        } else {
            EalMemory::Hugepages { mb, huge_dir, in_memory }
        };
        cfg.pci = match (no_pci, allow.is_empty(), block.is_empty()) {
            (true, true, true) => EalPci::Disabled,
            (false, false, true) => EalPci::Allow(allow),
            (false, true, false) => EalPci::Block(block),
            (false, true, true) => EalPci::All,
            _ => return Err(bad("use only one of --no-pci, -a (allow) and -b (block)".into())),
        };
        Ok(cfg)
    }

    /// Checks the combination of values; the error names the field.
    pub fn validate(&self) -> Result<(), PmdError> {
        let bad = |field, reason: &str| Err(PmdError::Config { field, reason: reason.to_string() });
        if self.cores.trim().is_empty() {
            return bad("cores", "EAL needs at least one lcore (e.g. \"0\")");
        }
        if let EalMemory::NoHuge { mb } = self.memory {
            if mb == 0 {
                return bad("memory", "--no-huge needs a non-zero amount of memory (MB)");
            }
        }
        if let Some(p) = &self.file_prefix {
            if p.is_empty() || p.contains('/') {
                return bad("file_prefix", "must be a non-empty name without '/'");
            }
        }
        Ok(())
    }

    /// The exact `argv` given to `rte_eal_init`.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = vec![self.program.clone(), "-l".into(), self.cores.clone()];
        match &self.memory {
            EalMemory::NoHuge { mb } => a.extend(["--no-huge".into(), "-m".into(), mb.to_string()]),
            EalMemory::Hugepages { mb, huge_dir, in_memory } => {
                if let Some(mb) = mb {
                    a.extend(["-m".into(), mb.to_string()]);
                }
                if let Some(d) = huge_dir {
                    a.extend(["--huge-dir".into(), d.display().to_string()]);
                }
                if *in_memory {
                    a.push("--in-memory".into());
                }
            }
        }
        if let Some(p) = &self.file_prefix {
            a.extend(["--file-prefix".into(), p.clone()]);
        }
        if !self.shared_config {
            a.push("--no-shconf".into());
        }
        match &self.pci {
            EalPci::Disabled => a.push("--no-pci".into()),
            EalPci::Allow(l) => l.iter().for_each(|d| a.extend(["-a".into(), d.clone()])),
            EalPci::Block(l) => l.iter().for_each(|d| a.extend(["-b".into(), d.clone()])),
            EalPci::All => {}
        }
        for v in &self.vdevs {
            a.extend(["--vdev".into(), v.clone()]);
        }
        for l in &self.log_levels {
            a.push(format!("--log-level={l}"));
        }
        if !self.telemetry {
            a.push("--no-telemetry".into());
        }
        a.extend(self.extra.iter().cloned());
        a
    }
}

/// What happened to EAL in this process.
enum EalState {
    Uninit,
    Ready(EalConfig),
    Failed(String),
}

static EAL: Mutex<EalState> = Mutex::new(EalState::Uninit);

/// Initialises EAL from `cfg`, once per process.
///
/// Calling it again with an equal config is a no-op; with a different one it is
/// an error (EAL cannot be re-initialised), as is any call after a failed one.
/// The calling thread becomes EAL's main lcore but keeps its CPU affinity (EAL
/// would pin it to the main lcore's core; polling threads are pinned by
/// [`crate::runtime`] instead).
pub fn init(cfg: &EalConfig) -> Result<(), PmdError> {
    cfg.validate()?;
    let mut st = EAL.lock().unwrap_or_else(|e| e.into_inner());
    match &*st {
        EalState::Ready(c) if c == cfg => return Ok(()),
        EalState::Ready(c) => {
            return Err(PmdError::State {
                port: "eal".into(),
                reason: format!(
                    "EAL is already initialised in this process with {:?}; it can be initialised only once \
                     per process (asked again with {:?})",
                    c.to_args(),
                    cfg.to_args()
                ),
            })
        }
        EalState::Failed(e) => {
            return Err(PmdError::State {
                port: "eal".into(),
                reason: format!("EAL initialisation already failed in this process ({e}); it cannot be retried"),
            })
        }
        EalState::Uninit => {}
    }
    let args = cfg.to_args();
    let mut owned = Vec::with_capacity(args.len());
    for a in &args {
        owned.push(
            CString::new(a.as_str()).map_err(|_| PmdError::Config {
                field: "eal",
                reason: format!("argument {a:?} contains a NUL byte"),
            })?,
        );
    }
    // EAL keeps pointers into argv (and permutes it): leak both for the life of
    // the process.
    let mut argv: Vec<*mut c_char> = owned.into_iter().map(CString::into_raw).collect();
    let argc = argv.len() as c_int;
    argv.push(std::ptr::null_mut());
    let argv: &'static mut [*mut c_char] = Box::leak(argv.into_boxed_slice());
    // rte_eal_init pins the calling thread to the main lcore's core. Here the
    // caller is a control thread and pmd::runtime pins the polling threads, so
    // the caller keeps the affinity it had (and threads it spawns inherit that).
    // SAFETY: cpu_set_t is plain data; an all-zero value is a valid empty set.
    let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; `saved` is a valid cpu_set_t.
    let have_saved = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut saved) } == 0;
    // SAFETY: argv is a leaked, NULL-terminated array of `argc` leaked,
    // NUL-terminated strings, valid for the rest of the process; the EAL mutex
    // held here makes this the only rte_eal_init call.
    let ret = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
    if have_saved {
        // SAFETY: restores the set read above for the calling thread.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &saved) };
    }
    if ret < 0 {
        let errno = sys::errno();
        let text = format!("rte_eal_init failed: {} (rte_errno {errno}) with arguments {args:?}", sys::strerror(errno));
        *st = EalState::Failed(text.clone());
        // EINVAL is EAL's answer to bad arguments: a usage error.
        return Err(if errno == libc::EINVAL {
            PmdError::Config { field: "eal", reason: text }
        } else {
            PmdError::Io { context: "EAL".into(), source: std::io::Error::other(text) }
        });
    }
    *st = EalState::Ready(cfg.clone());
    Ok(())
}

/// Whether EAL has been initialised successfully in this process.
pub fn is_initialized() -> bool {
    matches!(&*EAL.lock().unwrap_or_else(|e| e.into_inner()), EalState::Ready(_))
}

/// The config EAL was initialised with, if it was.
pub fn config() -> Option<EalConfig> {
    match &*EAL.lock().unwrap_or_else(|e| e.into_inner()) {
        EalState::Ready(c) => Some(c.clone()),
        _ => None,
    }
}

/// Fails unless EAL is up, with an error that says how to bring it up.
pub(crate) fn require(what: &str) -> Result<(), PmdError> {
    if is_initialized() {
        return Ok(());
    }
    Err(PmdError::State {
        port: what.to_string(),
        reason: "DPDK's EAL is not initialised in this process: call pmd::drivers::dpdk::init(&EalConfig) first \
                 (testpmd: --eal \"-l 0 --no-huge -m 512 --no-pci --no-shconf --file-prefix NAME\")"
            .into(),
    })
}

thread_local! {
    static REGISTERED: ThreadRegistration = ThreadRegistration::new();
}

/// A non-EAL thread registered with EAL, so it gets an lcore id and with it
/// the per-lcore mempool caches (without one, every mbuf alloc/free goes to
/// the shared ring). Unregistered when the thread exits.
struct ThreadRegistration(bool);

impl ThreadRegistration {
    fn new() -> Self {
        // SAFETY: reads the calling thread's lcore id; no preconditions.
        if unsafe { sys::rte_shim_lcore_id() } != sys::LCORE_ID_ANY {
            return ThreadRegistration(false); // an EAL thread already
        }
        // SAFETY: only called once EAL is initialised (queue handles exist only
        // for configured ports); registers the calling thread.
        ThreadRegistration(unsafe { sys::rte_thread_register() } == 0)
    }
}

impl Drop for ThreadRegistration {
    fn drop(&mut self) {
        if self.0 {
            // SAFETY: this thread registered itself above and is exiting.
            unsafe { sys::rte_thread_unregister() }
        }
    }
}

/// Registers the calling thread with EAL the first time it polls a queue.
#[inline]
pub(crate) fn register_thread() {
    REGISTERED.with(|_| {});
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_an_eal_command_line() {
        let c = EalConfig::from_args(
            "-l 0 --no-huge -m 256 --no-pci --no-shconf --file-prefix t1 --vdev net_ring0 --log-level=lib.eal:error \
             --no-telemetry",
        )
        .unwrap();
        assert_eq!(c.cores, "0");
        assert_eq!(c.memory, EalMemory::NoHuge { mb: 256 });
        assert_eq!(c.pci, EalPci::Disabled);
        assert!(!c.shared_config && !c.telemetry);
        assert_eq!(c.vdevs, vec!["net_ring0"]);
        assert_eq!(
            c.to_args()[1..].join(" "),
            "-l 0 --no-huge -m 256 --file-prefix t1 --no-shconf --no-pci --vdev net_ring0 \
             --log-level=lib.eal:error --no-telemetry"
        );
        let h = EalConfig::from_args("-l 1 --in-memory -a 0000:03:00.0 --bogus").unwrap();
        assert_eq!(h.memory, EalMemory::Hugepages { mb: None, huge_dir: None, in_memory: true });
        assert_eq!(h.pci, EalPci::Allow(vec!["0000:03:00.0".into()]));
        assert_eq!(h.extra, vec!["--bogus"]);
    }

    #[test]
    fn bad_eal_command_lines_name_the_problem() {
        for (args, needle) in [
            ("--no-huge -m 1", "-l CORES"),
            ("-l 0 --no-huge", "-m MB"),
            ("-l 0 --no-huge -m 64 --in-memory", "--in-memory"),
            ("-l 0 -m x", "'x'"),
            ("-l 0 --no-pci -a 00:01.0", "only one of"),
            ("-l", "needs a value"),
        ] {
            let e = EalConfig::from_args(args).unwrap_err().to_string();
            assert!(e.contains(needle), "{args}: {e}");
        }
    }
}
