//! The per-core runtime: one pinned thread per listed core, each running a poll
//! loop over state it owns exclusively (its queue handles, its stack instance).
//!
//! Cross-core traffic is control only: every worker has a crossbeam channel on
//! which the control thread sends `Stop` or asks for a snapshot of its counters.
//! Workers check the channel every [`CONTROL_CHECK_EVERY`] polls, so the data path
//! pays one `try_recv` per that many iterations. A worker that finds nothing to do
//! still polls (that is the point of poll mode), unless the caller opts into
//! [`IdlePolicy::Backoff`] for machines where burning a core is not wanted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::PmdError;

/// Polls between two looks at the control channel.
pub const CONTROL_CHECK_EVERY: u32 = 256;

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
}

/// Running workers.
pub struct Runtime<L: Lcore> {
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

fn run<L: Lcore>(mut lcore: L, ctl: Receiver<Control<L::Snapshot>>, idle: IdlePolicy) -> L {
    let IdlePolicy::Backoff { idle_polls: limit, max_sleep } = idle else {
        // Spinning: nothing but the polls between control checks (the idle
        // bookkeeping below costs more than a fast burst's own overhead).
        loop {
            for _ in 0..CONTROL_CHECK_EVERY {
                lcore.poll();
            }
            if control(&mut lcore, &ctl) {
                return lcore;
            }
        }
    };
    let mut idle_polls = 0u32;
    let mut sleep = Duration::from_micros(1);
    loop {
        for _ in 0..CONTROL_CHECK_EVERY {
            if lcore.poll() > 0 {
                idle_polls = 0;
                sleep = Duration::from_micros(1);
            } else {
                idle_polls = idle_polls.saturating_add(1);
                if idle_polls > limit {
                    std::thread::sleep(sleep);
                    sleep = (sleep * 2).min(max_sleep);
                }
            }
        }
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

impl<L: Lcore> Runtime<L> {
    /// Starts one thread per `(core, lcore)` pair, pinned to that core. Fails if a
    /// core is unavailable or listed twice, or if pinning fails; then no worker is
    /// left running.
    pub fn launch(assignments: Vec<(usize, L)>, idle: IdlePolicy) -> Result<Runtime<L>, PmdError> {
        let cores: Vec<usize> = assignments.iter().map(|(c, _)| *c).collect();
        let mut sorted = cores.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(PmdError::Config { field: "cores", reason: format!("core {} is assigned twice", w[0]) });
        }
        check_cores(&cores)?;
        let mut rt = Runtime { workers: Vec::new() };
        for (core, lcore) in assignments {
            let (tx, rx) = bounded::<Control<L::Snapshot>>(16);
            let (ready_tx, ready_rx) = bounded::<bool>(1);
            let join = std::thread::Builder::new()
                .name(format!("lcore-{core}"))
                .spawn(move || {
                    let pinned = core_affinity::set_for_current(core_affinity::CoreId { id: core });
                    let _ = ready_tx.send(pinned);
                    if !pinned {
                        return lcore;
                    }
                    run(lcore, rx, idle)
                })
                .map_err(|e| PmdError::Io { context: format!("spawning the thread for core {core}"), source: e })?;
            let pinned = ready_rx.recv().unwrap_or(false);
            rt.workers.push(Worker { core, ctl: tx, join });
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

    struct Count(u64);
    impl Lcore for Count {
        type Snapshot = u64;
        fn poll(&mut self) -> usize {
            self.0 += 1;
            1
        }
        fn snapshot(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn workers_run_snapshot_and_stop() {
        let core = available_cores()[0];
        let rt = Runtime::launch(vec![(core, Count(0))], IdlePolicy::Spin).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let snap = rt.snapshot();
        assert!(snap[0].unwrap() > 0);
        let done = rt.stop().unwrap();
        assert!(done[0].0 >= snap[0].unwrap());
    }

    struct Idle(u64);
    impl Lcore for Idle {
        type Snapshot = u64;
        fn poll(&mut self) -> usize {
            self.0 += 1;
            0
        }
        fn snapshot(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn idle_backoff_sleeps_instead_of_spinning_and_still_stops() {
        let core = available_cores()[0];
        let idle = IdlePolicy::Backoff { idle_polls: 10, max_sleep: Duration::from_millis(2) };
        let rt = Runtime::launch(vec![(core, Idle(0))], idle).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let polls = rt.snapshot()[0].unwrap();
        let done = rt.stop().unwrap();
        // Spinning would poll millions of times in 100 ms; backing off to 2 ms
        // sleeps allows at most a few hundred (plus the first `idle_polls`).
        assert!(polls > 10 && polls < 5_000, "{polls} polls");
        assert!(done[0].0 >= polls);
    }

    #[test]
    fn unavailable_core_is_an_error_naming_it() {
        let e = Runtime::launch(vec![(4096, Count(0))], IdlePolicy::Spin).err().unwrap();
        assert!(e.to_string().contains("core 4096"), "{e}");
        let c = available_cores()[0];
        let e = Runtime::launch(vec![(c, Count(0)), (c, Count(0))], IdlePolicy::Spin).err().unwrap();
        assert!(e.to_string().contains("twice"), "{e}");
    }
}
