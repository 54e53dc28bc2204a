//! The per-core runtime: one pinned thread per listed core, each running a poll
//! loop over state it owns exclusively (its queue handles, its stack instance).
//!
//! Cross-core traffic is control only: every worker has a crossbeam channel on
//! which the control thread sends `Stop` or asks for a snapshot of its counters.
//! Workers check the channel every [`CONTROL_CHECK_EVERY`] polls, so the data path
//! pays one `try_recv` per that many iterations. A worker that finds nothing to do
//! still polls (that is the point of poll mode), unless the caller opts into
//! [`IdlePolicy::Backoff`] for machines where burning a core is not wanted.
//!
//! # Busy/idle accounting
//!
//! A poll-mode core is always 100 % busy to the OS, so CPU time says nothing
//! about what the work cost. With [`RecordCycles::On`] (testpmd's
//! `--record-core-cycles`, DPDK's name) a worker reads the time-stamp counter
//! once per loop iteration ([`tsc`], `rdtsc`: a few ns, no fence) and adds the
//! iteration's cycles to `busy` if its poll did any work (moved a packet, ran
//! a task) and to `idle` otherwise ([`CoreCycles`]). That is one counter read
//! and four adds per iteration, never per packet; the totals are published
//! for other threads ([`SharedCycles`]) at each control check (every
//! [`CONTROL_CHECK_EVERY`] iterations) and at stop. `busy / packets` is the
//! CPU cost per packet DPDK's testpmd reports, and it stays meaningful when
//! the load generator, not this core, limits the rate. The flow executor
//! (`flow::exec`) keeps the same counters with the same [`CycleMeter`].

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use serde::Serialize;

use crate::PmdError;

/// Polls between two looks at the control channel.
pub const CONTROL_CHECK_EVERY: u32 = 256;

/// The CPU's time-stamp counter (cycles at a constant rate, [`tsc_hz`] a
/// second); elsewhere than x86-64, nanoseconds since the first call.
#[inline(always)]
pub fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC only reads the time-stamp counter: no memory is
        // touched and every x86-64 CPU has the instruction.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// Ticks of [`tsc`] per second, measured once (against the monotonic clock
/// over 50 ms) and cached.
pub fn tsc_hz() -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    *HZ.get_or_init(|| {
        if cfg!(not(target_arch = "x86_64")) {
            return 1_000_000_000;
        }
        let (t0, c0) = (Instant::now(), tsc());
        std::thread::sleep(Duration::from_millis(50));
        let (t1, c1) = (Instant::now(), tsc());
        ((c1 - c0) as f64 / (t1 - t0).as_secs_f64()).round().max(1.0) as u64
    })
}

/// Where a poll loop's time went, in [`tsc`] cycles: iterations that did
/// some work (busy) and iterations that found nothing to do (idle).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CoreCycles {
    /// Cycles spent in iterations that did work.
    pub busy: u64,
    /// Cycles spent in empty iterations (including idle back-off sleeps).
    pub idle: u64,
    /// Iterations that did work.
    pub busy_iters: u64,
    /// Empty iterations.
    pub idle_iters: u64,
}

impl CoreCycles {
    /// Adds one iteration of `cycles`.
    #[inline(always)]
    pub fn add(&mut self, cycles: u64, worked: bool) {
        // Branch-free: the outcome of a poll is not predictable.
        let b = worked as u64;
        self.busy = self.busy.wrapping_add(cycles * b);
        self.idle = self.idle.wrapping_add(cycles * (1 - b));
        self.busy_iters += b;
        self.idle_iters += 1 - b;
    }

    /// All cycles.
    pub fn total(&self) -> u64 {
        self.busy + self.idle
    }

    /// What was added since `earlier` (a snapshot of the same counters).
    pub fn since(&self, earlier: &CoreCycles) -> CoreCycles {
        CoreCycles {
            busy: self.busy.saturating_sub(earlier.busy),
            idle: self.idle.saturating_sub(earlier.idle),
            busy_iters: self.busy_iters.saturating_sub(earlier.busy_iters),
            idle_iters: self.idle_iters.saturating_sub(earlier.idle_iters),
        }
    }

    /// The sum of two cores' counters.
    pub fn plus(&self, o: &CoreCycles) -> CoreCycles {
        CoreCycles {
            busy: self.busy + o.busy,
            idle: self.idle + o.idle,
            busy_iters: self.busy_iters + o.busy_iters,
            idle_iters: self.idle_iters + o.idle_iters,
        }
    }

    /// Busy time in nanoseconds.
    pub fn busy_ns(&self) -> f64 {
        self.busy as f64 * 1e9 / tsc_hz() as f64
    }

    /// Busy share of all cycles (0 when nothing was counted).
    pub fn busy_fraction(&self) -> f64 {
        if self.total() == 0 {
            0.0
        } else {
            self.busy as f64 / self.total() as f64
        }
    }

    /// The counters as xstats name/value pairs.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        vec![
            ("core_busy_cycles".into(), self.busy),
            ("core_idle_cycles".into(), self.idle),
            ("core_busy_iterations".into(), self.busy_iters),
            ("core_idle_iterations".into(), self.idle_iters),
            ("core_tsc_hz".into(), tsc_hz()),
        ]
    }
}

/// A poll loop's meter: [`tick`](Self::tick) once at the end of every
/// iteration.
#[derive(Clone, Copy, Debug)]
pub struct CycleMeter {
    last: u64,
    /// What was counted so far.
    pub cycles: CoreCycles,
}

impl Default for CycleMeter {
    fn default() -> Self {
        CycleMeter::new()
    }
}

impl CycleMeter {
    /// A meter whose first iteration starts now.
    pub fn new() -> CycleMeter {
        CycleMeter { last: tsc(), cycles: CoreCycles::default() }
    }

    /// Ends an iteration (and starts the next): its cycles go to busy if it
    /// `worked`, to idle otherwise.
    #[inline(always)]
    pub fn tick(&mut self, worked: bool) {
        let now = tsc();
        self.cycles.add(now.wrapping_sub(self.last), worked);
        self.last = now;
    }
}

/// A core's [`CoreCycles`] as published for other threads (single writer:
/// the core; each counter is read whole, the four not as one snapshot).
#[derive(Clone, Debug, Default)]
pub struct SharedCycles(Arc<[AtomicU64; 4]>);

impl SharedCycles {
    /// Publishes `c`.
    #[inline]
    pub fn publish(&self, c: &CoreCycles) {
        self.0[0].store(c.busy, Ordering::Relaxed);
        self.0[1].store(c.idle, Ordering::Relaxed);
        self.0[2].store(c.busy_iters, Ordering::Relaxed);
        self.0[3].store(c.idle_iters, Ordering::Relaxed);
    }

    /// The last published counters.
    pub fn load(&self) -> CoreCycles {
        CoreCycles {
            busy: self.0[0].load(Ordering::Relaxed),
            idle: self.0[1].load(Ordering::Relaxed),
            busy_iters: self.0[2].load(Ordering::Relaxed),
            idle_iters: self.0[3].load(Ordering::Relaxed),
        }
    }
}

/// Whether workers keep [`CoreCycles`] (off: the loop reads no clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordCycles {
    /// No accounting.
    Off,
    /// Busy/idle cycles per iteration.
    On,
}

/// The work of one core.
pub trait Lcore: Send + 'static {
    /// What a stats snapshot of this core looks like.
    type Snapshot: Send + 'static;
    /// One iteration of the poll loop; returns how much work was done (0 = idle).
    fn poll(&mut self) -> usize;
    /// A snapshot of this core's counters.
    fn snapshot(&self) -> Self::Snapshot;
}

/// What a worker does when a poll finds nothing to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Keep polling (lowest latency, one core at 100%).
    Spin,
    /// After `idle_polls` empty polls in a row, sleep, doubling from 1 µs up to
    /// `max_sleep`; the first poll with work resets it.
    Backoff {
        /// Empty polls before the first sleep.
        idle_polls: u32,
        /// Longest sleep.
        max_sleep: Duration,
    },
}

enum Control<S> {
    Stop,
    Snapshot(Sender<S>),
}

struct Worker<L: Lcore> {
    core: usize,
    ctl: Sender<Control<L::Snapshot>>,
    join: JoinHandle<L>,
    cycles: SharedCycles,
}

/// Running workers: one pinned thread per core, each polling its own [`Lcore`].
/// (Named for what it is, DPDK's lcores: `flow::Runtime`, the application
/// runtime with an executor per core, is the one `Runtime`.)
pub struct Lcores<L: Lcore> {
    workers: Vec<Worker<L>>,
}

/// Parses a core list like `1`, `0,2`, `2-5` or `0,2-3`.
pub fn parse_core_list(s: &str) -> Result<Vec<usize>, PmdError> {
    let bad = |reason: String| PmdError::Config { field: "cores", reason };
    let mut cores = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(bad(format!("empty entry in core list '{s}'")));
        }
        let num = |x: &str| x.trim().parse::<usize>().map_err(|_| bad(format!("'{x}' in '{s}' is not a core number")));
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(bad(format!("range '{part}' goes backwards")));
                }
                cores.extend(a..=b);
            }
            None => cores.push(num(part)?),
        }
    }
    let mut seen = cores.clone();
    seen.sort_unstable();
    if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
        return Err(bad(format!("core {} is listed twice", w[0])));
    }
    Ok(cores)
}

/// The cores this process may run on.
pub fn available_cores() -> Vec<usize> {
    let mut v: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    v.sort_unstable();
    v
}

/// Fails, naming the core, if any listed core is not available to this process.
pub fn check_cores(cores: &[usize]) -> Result<(), PmdError> {
    let avail = available_cores();
    for &c in cores {
        if !avail.contains(&c) {
            return Err(PmdError::CoreUnavailable {
                core: c,
                available: avail.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","),
            });
        }
    }
    Ok(())
}

fn run<L: Lcore>(
    mut lcore: L,
    ctl: Receiver<Control<L::Snapshot>>,
    idle: IdlePolicy,
    record: RecordCycles,
    shared: &SharedCycles,
) -> L {
    let mut meter = CycleMeter::new();
    let IdlePolicy::Backoff { idle_polls: limit, max_sleep } = idle else {
        // Spinning: nothing but the polls between control checks (the idle
        // bookkeeping below costs more than a fast burst's own overhead),
        // plus one counter read per poll when recording.
        if record == RecordCycles::Off {
            loop {
                for _ in 0..CONTROL_CHECK_EVERY {
                    lcore.poll();
                }
                if control(&mut lcore, &ctl) {
                    return lcore;
                }
            }
        }
        loop {
            for _ in 0..CONTROL_CHECK_EVERY {
                let work = lcore.poll();
                meter.tick(work > 0);
            }
            shared.publish(&meter.cycles);
            if control(&mut lcore, &ctl) {
                return lcore;
            }
        }
    };
    let mut idle_polls = 0u32;
    let mut sleep = Duration::from_micros(1);
    loop {
        for _ in 0..CONTROL_CHECK_EVERY {
            let work = lcore.poll();
            if work > 0 {
                idle_polls = 0;
                sleep = Duration::from_micros(1);
            } else {
                idle_polls = idle_polls.saturating_add(1);
                if idle_polls > limit {
                    std::thread::sleep(sleep);
                    sleep = (sleep * 2).min(max_sleep);
                }
            }
            if record == RecordCycles::On {
                meter.tick(work > 0);
            }
        }
        shared.publish(&meter.cycles);
        if control(&mut lcore, &ctl) {
            return lcore;
        }
    }
}

/// Answers the control messages waiting; true when told to stop.
fn control<L: Lcore>(lcore: &mut L, ctl: &Receiver<Control<L::Snapshot>>) -> bool {
    while let Ok(msg) = ctl.try_recv() {
        match msg {
            Control::Stop => return true,
            Control::Snapshot(reply) => {
                let _ = reply.send(lcore.snapshot());
            }
        }
    }
    false
}

impl<L: Lcore> Lcores<L> {
    /// Starts one thread per `(core, lcore)` pair, pinned to that core, each
    /// keeping busy/idle cycles if `record` says so. Fails if a core is
    /// unavailable or listed twice, or if pinning fails; then no worker is
    /// left running.
    pub fn launch(assignments: Vec<(usize, L)>, idle: IdlePolicy, record: RecordCycles) -> Result<Lcores<L>, PmdError> {
        let cores: Vec<usize> = assignments.iter().map(|(c, _)| *c).collect();
        let mut sorted = cores.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(PmdError::Config { field: "cores", reason: format!("core {} is assigned twice", w[0]) });
        }
        check_cores(&cores)?;
        let mut rt = Lcores { workers: Vec::new() };
        for (core, lcore) in assignments {
            let (tx, rx) = bounded::<Control<L::Snapshot>>(16);
            let (ready_tx, ready_rx) = bounded::<bool>(1);
            let cycles = SharedCycles::default();
            let published = cycles.clone();
            let join = std::thread::Builder::new()
                .name(format!("lcore-{core}"))
                .spawn(move || {
                    let pinned = core_affinity::set_for_current(core_affinity::CoreId { id: core });
                    let _ = ready_tx.send(pinned);
                    if !pinned {
                        return lcore;
                    }
                    run(lcore, rx, idle, record, &published)
                })
                .map_err(|e| PmdError::Io { context: format!("spawning the thread for core {core}"), source: e })?;
            let pinned = ready_rx.recv().unwrap_or(false);
            rt.workers.push(Worker { core, ctl: tx, join, cycles });
            if !pinned {
                let _ = rt.stop();
                return Err(PmdError::CoreUnavailable {
                    core,
                    available: available_cores().iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","),
                });
            }
        }
        Ok(rt)
    }

    /// The cores in use, in launch order.
    pub fn cores(&self) -> Vec<usize> {
        self.workers.iter().map(|w| w.core).collect()
    }

    /// Every worker's busy/idle cycles as last published (every
    /// [`CONTROL_CHECK_EVERY`] polls, and at stop), in launch order; all zero
    /// unless launched with [`RecordCycles::On`].
    pub fn core_cycles(&self) -> Vec<CoreCycles> {
        self.workers.iter().map(|w| w.cycles.load()).collect()
    }

    /// The workers' published counters, to read after [`stop`](Self::stop)
    /// (then final).
    pub fn cycle_handles(&self) -> Vec<SharedCycles> {
        self.workers.iter().map(|w| w.cycles.clone()).collect()
    }

    /// A snapshot from every worker, in launch order (`None` for a worker that did
    /// not answer within a second, e.g. because it panicked).
    pub fn snapshot(&self) -> Vec<Option<L::Snapshot>> {
        let replies: Vec<_> = self
            .workers
            .iter()
            .map(|w| {
                let (tx, rx) = bounded(1);
                let _ = w.ctl.send(Control::Snapshot(tx));
                rx
            })
            .collect();
        replies.into_iter().map(|rx| rx.recv_timeout(Duration::from_secs(1)).ok()).collect()
    }

    /// Stops every worker and returns their state, in launch order. A worker that
    /// panicked is reported as an error naming its core.
    pub fn stop(self) -> Result<Vec<L>, PmdError> {
        for w in &self.workers {
            let _ = w.ctl.send(Control::Stop);
        }
        let mut out = Vec::new();
        let mut failed = None;
        for w in self.workers {
            match w.join.join() {
                Ok(l) => out.push(l),
                Err(e) => {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failed =
                        Some(PmdError::State { port: format!("lcore {}", w.core), reason: format!("panicked: {msg}") });
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// A flag set by SIGINT or SIGTERM.
#[derive(Clone, Debug)]
pub struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    /// Installs handlers for SIGINT and SIGTERM that set the flag.
    pub fn install() -> Result<StopSignal, PmdError> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, flag.clone())
                .map_err(|e| PmdError::Io { context: "installing signal handlers".into(), source: e })?;
        }
        Ok(StopSignal(flag))
    }

    /// Whether a stop was requested.
    pub fn raised(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Sleeps until `deadline` or a signal, whichever comes first; returns true if
    /// a signal came.
    pub fn sleep_until(&self, deadline: Instant) -> bool {
        loop {
            if self.raised() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_lists_parse() {
        assert_eq!(parse_core_list("1").unwrap(), vec![1]);
        assert_eq!(parse_core_list("0,2-4").unwrap(), vec![0, 2, 3, 4]);
        for bad in ["", "a", "3-1", "1,1", "1,,2"] {
            let e = parse_core_list(bad).unwrap_err().to_string();
            assert!(e.contains("cores"), "{bad}: {e}");
        }
    }

    /// Counts its polls; each poll reports `work` packets done.
    struct Polls {
        n: u64,
        work: usize,
    }
    impl Lcore for Polls {
        type Snapshot = u64;
        fn poll(&mut self) -> usize {
            self.n += 1;
            self.work
        }
        fn snapshot(&self) -> u64 {
            self.n
        }
    }

    #[test]
    fn workers_run_snapshot_and_stop() {
        let core = available_cores()[0];
        let rt = Lcores::launch(vec![(core, Polls { n: 0, work: 1 })], IdlePolicy::Spin, RecordCycles::Off).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let snap = rt.snapshot();
        assert!(snap[0].unwrap() > 0);
        let done = rt.stop().unwrap();
        assert!(done[0].n >= snap[0].unwrap());
    }

    #[test]
    fn idle_backoff_sleeps_instead_of_spinning_and_still_stops() {
        let core = available_cores()[0];
        let idle = IdlePolicy::Backoff { idle_polls: 10, max_sleep: Duration::from_millis(2) };
        let rt = Lcores::launch(vec![(core, Polls { n: 0, work: 0 })], idle, RecordCycles::Off).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let polls = rt.snapshot()[0].unwrap();
        let done = rt.stop().unwrap();
        // Spinning would poll millions of times in 100 ms; backing off to 2 ms
        // sleeps allows at most a few hundred (plus the first `idle_polls`).
        assert!(polls > 10 && polls < 5_000, "{polls} polls");
        assert!(done[0].n >= polls);
    }

    #[test]
    fn unavailable_core_is_an_error_naming_it() {
        let e =
            Lcores::launch(vec![(4096, Polls { n: 0, work: 1 })], IdlePolicy::Spin, RecordCycles::Off).err().unwrap();
        assert!(e.to_string().contains("core 4096"), "{e}");
        let c = available_cores()[0];
        let e = Lcores::launch(
            vec![(c, Polls { n: 0, work: 1 }), (c, Polls { n: 0, work: 1 })],
            IdlePolicy::Spin,
            RecordCycles::Off,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("twice"), "{e}");
    }

    #[test]
    fn cycle_arithmetic() {
        let mut m = CycleMeter::new();
        m.tick(true);
        m.tick(false);
        m.tick(true);
        let c = m.cycles;
        assert_eq!((c.busy_iters, c.idle_iters), (2, 1));
        assert_eq!(c.total(), c.busy + c.idle);
        let d = c.plus(&c).since(&c);
        assert_eq!(d, c);
        assert!(tsc_hz() > 0);
        assert!(c.busy_fraction() >= 0.0 && c.busy_fraction() <= 1.0);
        let shared = SharedCycles::default();
        shared.publish(&c);
        assert_eq!(shared.load(), c);
    }
}
