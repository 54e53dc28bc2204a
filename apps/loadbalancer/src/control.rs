//! The control plane between cores: the only state the cores share.
//!
//! The data path of each core is its own ([`Lb`]); what crosses cores is
//! control only, through [`Control`]:
//! * commands (runtime API, health verdicts) go into every core's inbox and
//!   each core applies them to its own pools ([`Control::broadcast`]);
//! * a reload publishes a new checked config with a generation number; each
//!   core applies it in place when it sees a newer generation;
//! * each core publishes a snapshot of its counters for the admin listener;
//! * the stop flag (SIGTERM/SIGINT) and the grace they get.
//!
//! A core looks at its inbox every [`TICK`] of its executor's clock: a
//! command takes effect on every core within that (plus the time a busy core
//! takes to get round to it).

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flow::Net;

use crate::config::Checked;
use crate::proxy::{Command, Lb, Snapshot};

/// How often a core looks at its inbox and publishes its counters.
pub const TICK: Duration = Duration::from_millis(20);

/// What the cores share.
pub struct Control {
    /// Raised by SIGTERM/SIGINT: stop accepting, finish within `grace`.
    pub stop: Arc<AtomicBool>,
    /// How long open sessions may go on after `stop`.
    pub grace: Duration,
    gen: AtomicU64,
    config: Mutex<Arc<Checked>>,
    inbox: Vec<Mutex<Vec<Command>>>,
    snapshots: Vec<Mutex<Option<Snapshot>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A core that panicked holding the lock leaves the data as it was.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Control {
    /// For `cores` cores, starting from `cfg`.
    pub fn new(cores: usize, cfg: Arc<Checked>, grace: Duration) -> Arc<Control> {
        Arc::new(Control {
            stop: Arc::new(AtomicBool::new(false)),
            grace,
            gen: AtomicU64::new(0),
            config: Mutex::new(cfg),
            inbox: (0..cores).map(|_| Mutex::new(Vec::new())).collect(),
            snapshots: (0..cores).map(|_| Mutex::new(None)).collect(),
        })
    }

    /// Sends `cmd` to every core.
    pub fn broadcast(&self, cmd: Command) {
        for q in &self.inbox {
            lock(q).push(cmd.clone());
        }
    }

    /// Publishes a new configuration (a reload).
    pub fn publish(&self, cfg: Arc<Checked>) {
        *lock(&self.config) = cfg;
        self.gen.fetch_add(1, Ordering::AcqRel);
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Checked> {
        lock(&self.config).clone()
    }

    /// The latest snapshot of each core that has published one.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.snapshots.iter().filter_map(|s| lock(s).clone()).collect()
    }

    /// Publishes core `index`'s counters (its control task does this every tick).
    pub fn set_snapshot(&self, index: usize, s: Snapshot) {
        *lock(&self.snapshots[index]) = Some(s);
    }

    /// Takes core `index`'s pending commands (its control task does this every tick).
    pub fn take_commands(&self, index: usize) -> Vec<Command> {
        std::mem::take(&mut *lock(&self.inbox[index]))
    }

    /// Raises the stop flag.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Core `index`'s control task: applies its inbox and new configurations,
    /// publishes its counters, until the stop flag is raised.
    pub async fn core_task<N: Net>(self: Arc<Self>, lb: Rc<Lb<N>>, index: usize) {
        let mut seen = self.gen.load(Ordering::Acquire);
        while !self.stop.load(Ordering::Acquire) {
            flow::sleep(TICK).await;
            let cmds = self.take_commands(index);
            for c in cmds {
                if let Err(e) = lb.apply(&c) {
                    if index == 0 {
                        eprintln!("lb: {e}");
                    }
                }
            }
            let g = self.gen.load(Ordering::Acquire);
            if g != seen {
                seen = g;
                let cfg = self.config();
                match lb.reload(&cfg) {
                    Ok(notes) if index == 0 => {
                        for n in notes {
                            eprintln!("lb: reload: {n}");
                        }
                        eprintln!("lb: reloaded (generation {g})");
                    }
                    Ok(_) => {}
                    Err((a, e)) => eprintln!("lb: reload: core {index}: listen on {a}: {e}"),
                }
            }
            self.set_snapshot(index, lb.core_snapshot());
            let log = lb.take_log();
            if !log.is_empty() {
                eprint!("{log}");
            }
        }
        self.set_snapshot(index, lb.core_snapshot());
        eprint!("{}", lb.take_log());
    }
}
