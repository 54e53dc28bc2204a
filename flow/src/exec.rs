//! The per-core executor.
//!
//! Single-threaded and `!Send` by design: tasks are `Pin<Box<dyn Future>>` with
//! no `Send` bound, spawned from the core they run on. One loop does everything
//! of DESIGN.md's data path:
//!
//! ```text
//! loop {
//!     run the tasks that were woken            (the application)
//!     fire expired sleeps / timeouts           (on the reactor's clock)
//!     reactor.turn(park)                       (stack poll: rx, input, timers, tx;
//!                                               or epoll; wakes tasks whose
//!                                               sockets changed)
//! }
//! ```
//!
//! Every iteration is timed with pmd's busy/idle accounting
//! ([`pmd::runtime::CycleMeter`]: one time-stamp counter read per
//! iteration): busy if it polled a task, fired a timer or the reactor did
//! I/O, idle otherwise (an epoll reactor's sleep counts as idle). A task
//! reads its core's counters with [`core_cycles`]; other threads through
//! [`core_cycles_handle`].
//!
//! A [`Reactor`] is the I/O side: our stack's poll loop (which never parks: poll
//! mode), mio's epoll (parks until the next timer), or a simulation that jumps
//! virtual time to the next deadline when nothing is runnable. Timers live on the
//! reactor's clock, so in a simulation `sleep(1s)` takes one step, not a second.
//!
//! Timers are an ordered map (deadline, sequence) → waker rather than the
//! stack's hashed wheel: the executor must know the *exact* next deadline to park
//! epoll or jump virtual time to it, which the wheel (next tick only) does not
//! give; a core has few application timers, so O(log n) is cheap.
//!
//! Wakers must be `Send + Sync` (std's `Waker`); with `unsafe` forbidden they are
//! `Arc<impl Wake>`: waking pushes the task id onto a mutex-guarded queue that
//! only this thread drains (uncontended: one atomic each way).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use pmd::runtime::{CoreCycles, CycleMeter, SharedCycles};
use pmd::Clock;
use slab::Slab;

use crate::FlowError;

/// The I/O side of an executor.
pub trait Reactor {
    /// The clock timers run on (virtual in a simulation).
    fn clock(&self) -> Arc<dyn Clock>;
    /// Does I/O and wakes the tasks it made ready; returns how much work it
    /// did (frames moved, events handled, tasks woken; 0 = an empty turn). `park` is `None` when tasks are
    /// runnable (do not wait), or `Some(deadline)` (ns on [`clock`](Self::clock),
    /// `u64::MAX` for no timer) up to which the reactor may wait for I/O. An error
    /// ends the executor's run (e.g. a simulation in which nothing can happen).
    fn turn(&mut self, park: Option<u64>) -> Result<usize, FlowError>;
}

type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;

struct Task {
    fut: Option<BoxFuture>,
    waker: Arc<TaskWaker>,
}

struct TaskWaker {
    id: usize,
    queued: AtomicBool,
    ready: Arc<Mutex<VecDeque<usize>>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.lock().unwrap_or_else(|e| e.into_inner()).push_back(self.id);
        }
    }
}

struct Shared {
    clock: Arc<dyn Clock>,
    tasks: RefCell<Slab<Task>>,
    ready: Arc<Mutex<VecDeque<usize>>>,
    timers: RefCell<BTreeMap<(u64, u64), Waker>>,
    timer_seq: Cell<u64>,
    cycles: SharedCycles,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Shared>>> = const { RefCell::new(None) };
}

fn with_current<R>(f: impl FnOnce(&Rc<Shared>) -> R) -> R {
    CURRENT.with(|c| {
        let c = c.borrow();
        let s = c.as_ref().expect("flow: no executor is running on this thread (use Executor::block_on)");
        f(s)
    })
}

/// An executor for one core, driving one reactor.
pub struct Executor<R: Reactor> {
    shared: Rc<Shared>,
    reactor: R,
}

impl<R: Reactor> Executor<R> {
    /// An executor over `reactor`.
    pub fn new(reactor: R) -> Self {
        let shared = Rc::new(Shared {
            clock: reactor.clock(),
            tasks: RefCell::new(Slab::new()),
            ready: Arc::new(Mutex::new(VecDeque::new())),
            timers: RefCell::new(BTreeMap::new()),
            timer_seq: Cell::new(0),
            cycles: SharedCycles::default(),
        });
        Executor { shared, reactor }
    }

    /// The reactor.
    pub fn reactor(&mut self) -> &mut R {
        &mut self.reactor
    }

    /// Runs `main` (and every task it spawns) until `main` completes; tasks still
    /// running then are dropped. Fails if the reactor fails.
    pub fn block_on<F: Future + 'static>(&mut self, main: F) -> Result<F::Output, FlowError> {
        let prev = CURRENT.with(|c| c.borrow_mut().replace(self.shared.clone()));
        let res = self.run(main);
        // Drop what is left while this executor is still current (drop code may
        // cancel timers), outside any borrow.
        let left: Vec<Task> = self.shared.tasks.borrow_mut().drain().collect();
        drop(left);
        self.shared.ready.lock().unwrap_or_else(|e| e.into_inner()).clear();
        CURRENT.with(|c| *c.borrow_mut() = prev);
        res
    }

    fn run<F: Future + 'static>(&mut self, main: F) -> Result<F::Output, FlowError> {
        let out: Rc<RefCell<Option<F::Output>>> = Rc::new(RefCell::new(None));
        let out2 = out.clone();
        spawn_on(&self.shared, async move {
            let v = main.await;
            *out2.borrow_mut() = Some(v);
        });
        let mut batch = Vec::with_capacity(64);
        let mut meter = CycleMeter::new();
        meter.cycles = self.shared.cycles.load();
        loop {
            batch.extend(self.shared.ready.lock().unwrap_or_else(|e| e.into_inner()).drain(..));
            let mut work = batch.len();
            for id in batch.drain(..) {
                self.poll_task(id);
            }
            if let Some(v) = out.borrow_mut().take() {
                return Ok(v);
            }
            let now = self.shared.clock.now_ns();
            let (fired, next) = self.fire_timers(now);
            work += fired;
            let idle = self.shared.ready.lock().unwrap_or_else(|e| e.into_inner()).is_empty();
            work += self.reactor.turn(idle.then_some(next.unwrap_or(u64::MAX)))?;
            meter.tick(work > 0);
            // Plain stores to a line only this thread writes.
            self.shared.cycles.publish(&meter.cycles);
        }
    }

    fn poll_task(&mut self, id: usize) {
        let (mut fut, waker) = {
            let mut tasks = self.shared.tasks.borrow_mut();
            let Some(t) = tasks.get_mut(id) else { return };
            t.waker.queued.store(false, Ordering::Release);
            let Some(f) = t.fut.take() else { return };
            (f, t.waker.clone())
        };
        let w = Waker::from(waker);
        let mut cx = Context::from_waker(&w);
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(()) => {
                let t = self.shared.tasks.borrow_mut().try_remove(id);
                drop(t);
                drop(fut);
            }
            Poll::Pending => {
                if let Some(t) = self.shared.tasks.borrow_mut().get_mut(id) {
                    t.fut = Some(fut);
                }
            }
        }
    }

    /// Wakes the sleepers due at `now`; returns how many and the next deadline.
    fn fire_timers(&mut self, now: u64) -> (usize, Option<u64>) {
        let mut due = Vec::new();
        {
            let mut t = self.shared.timers.borrow_mut();
            while let Some(e) = t.first_entry() {
                if e.key().0 > now {
                    break;
                }
                due.push(e.remove());
            }
        }
        let fired = due.len();
        for w in due {
            w.wake();
        }
        (fired, self.shared.timers.borrow().first_key_value().map(|(k, _)| k.0))
    }

    /// This executor's busy/idle cycles so far (across `block_on` calls).
    pub fn core_cycles(&self) -> CoreCycles {
        self.shared.cycles.load()
    }

    /// Tasks alive (including the main one while it runs).
    pub fn tasks(&self) -> usize {
        self.shared.tasks.borrow().len()
    }
}

fn spawn_on(shared: &Rc<Shared>, fut: impl Future<Output = ()> + 'static) {
    let mut tasks = shared.tasks.borrow_mut();
    let entry = tasks.vacant_entry();
    let waker = Arc::new(TaskWaker { id: entry.key(), queued: AtomicBool::new(true), ready: shared.ready.clone() });
    shared.ready.lock().unwrap_or_else(|e| e.into_inner()).push_back(entry.key());
    entry.insert(Task { fut: Some(Box::pin(fut)), waker });
}

/// The result of a spawned task; dropping it detaches the task.
pub struct JoinHandle<T> {
    state: Rc<RefCell<(Option<T>, Option<Waker>)>>,
}

impl<T> Future for JoinHandle<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.state.borrow_mut();
        match s.0.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T> JoinHandle<T> {
    /// Whether the task has finished (and its result is waiting).
    pub fn is_finished(&self) -> bool {
        self.state.borrow().0.is_some()
    }
}

/// Spawns a task on this core's executor.
pub fn spawn<F: Future + 'static>(fut: F) -> JoinHandle<F::Output> {
    let state = Rc::new(RefCell::new((None, None::<Waker>)));
    let st = state.clone();
    with_current(|s| {
        spawn_on(s, async move {
            let v = fut.await;
            let w = {
                let mut b = st.borrow_mut();
                b.0 = Some(v);
                b.1.take()
            };
            if let Some(w) = w {
                w.wake();
            }
        })
    });
    JoinHandle { state }
}

/// Now, in nanoseconds on the running executor's clock.
pub fn now_ns() -> u64 {
    with_current(|s| s.clock.now_ns())
}

/// The running executor's busy/idle cycles so far (published every
/// iteration).
pub fn core_cycles() -> CoreCycles {
    with_current(|s| s.cycles.load())
}

/// The running executor's counters, readable from any thread while (and
/// after) it runs.
pub fn core_cycles_handle() -> SharedCycles {
    with_current(|s| s.cycles.clone())
}

/// The running executor's clock.
pub fn clock() -> Arc<dyn Clock> {
    with_current(|s| s.clock.clone())
}

/// A future that completes at a deadline.
pub struct Sleep {
    deadline: u64,
    key: Option<(u64, u64)>,
}

/// Sleeps for `d` on the executor's clock.
pub fn sleep(d: Duration) -> Sleep {
    sleep_until(now_ns().saturating_add(d.as_nanos() as u64))
}

/// Sleeps until `deadline_ns` on the executor's clock.
pub fn sleep_until(deadline_ns: u64) -> Sleep {
    Sleep { deadline: deadline_ns, key: None }
}

impl Sleep {
    /// When it completes.
    pub fn deadline_ns(&self) -> u64 {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        with_current(|s| {
            if s.clock.now_ns() >= self.deadline {
                if let Some(k) = self.key.take() {
                    s.timers.borrow_mut().remove(&k);
                }
                return Poll::Ready(());
            }
            let mut timers = s.timers.borrow_mut();
            match self.key {
                Some(k) => match timers.get_mut(&k) {
                    Some(w) => {
                        if !w.will_wake(cx.waker()) {
                            *w = cx.waker().clone();
                        }
                    }
                    // Fired (removed) but the clock is not quite there: re-arm.
                    None => {
                        timers.insert(k, cx.waker().clone());
                    }
                },
                None => {
                    let seq = s.timer_seq.get();
                    s.timer_seq.set(seq + 1);
                    let k = (self.deadline, seq);
                    timers.insert(k, cx.waker().clone());
                    self.key = Some(k);
                }
            }
            Poll::Pending
        })
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            let _ = CURRENT.try_with(|c| {
                if let Some(s) = c.borrow().as_ref() {
                    s.timers.borrow_mut().remove(&k);
                }
            });
        }
    }
}

/// A deadline passed before the future completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl From<Elapsed> for FlowError {
    fn from(_: Elapsed) -> FlowError {
        FlowError::TimedOut
    }
}

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline elapsed")
    }
}

/// Runs `fut` for at most `d`.
pub async fn timeout<F: Future>(d: Duration, fut: F) -> Result<F::Output, Elapsed> {
    match race(fut, sleep(d)).await {
        Either::Left(v) => Ok(v),
        Either::Right(()) => Err(Elapsed),
    }
}

/// One of two outcomes.
#[derive(Debug, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first future finished first.
    Left(A),
    /// The second one did.
    Right(B),
}

/// Polls both futures; completes with whichever finishes first (the first one
/// wins a tie) and drops the other.
pub async fn race<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(v) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(v));
        }
        if let Poll::Ready(v) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Right(v));
        }
        Poll::Pending
    })
    .await
}

/// Yields once to the other runnable tasks.
pub async fn yield_now() {
    let mut done = false;
    std::future::poll_fn(move |cx| {
        if done {
            Poll::Ready(())
        } else {
            done = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// A reactor with no I/O: timers only. With a [`pmd::VirtualClock`] every turn
/// costs `step_ns` of virtual time and an idle turn jumps to the next deadline
/// (for tests of in-memory flows); with a real clock it sleeps.
pub struct TimerReactor {
    clock: Arc<dyn Clock>,
    virt: Option<pmd::VirtualClock>,
    step_ns: u64,
}

impl TimerReactor {
    /// Real time.
    pub fn real() -> Self {
        TimerReactor { clock: Arc::new(pmd::MonotonicClock), virt: None, step_ns: 0 }
    }
    /// Virtual time on `clock`; every turn advances it by `step_ns`.
    pub fn virtual_time(clock: pmd::VirtualClock, step_ns: u64) -> Self {
        TimerReactor { clock: Arc::new(clock.clone()), virt: Some(clock), step_ns }
    }
}

impl Reactor for TimerReactor {
    fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }
    fn turn(&mut self, park: Option<u64>) -> Result<usize, FlowError> {
        if let Some(v) = &self.virt {
            v.advance_ns(self.step_ns);
        }
        let Some(deadline) = park else { return Ok(0) };
        if deadline == u64::MAX {
            return Err(FlowError::invalid("executor stalled: no task runnable and no timer armed"));
        }
        match &self.virt {
            Some(v) => v.set_ns(deadline),
            None => {
                let now = self.clock.now_ns();
                std::thread::sleep(Duration::from_nanos(deadline.saturating_sub(now)));
            }
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_join_sleep_in_virtual_time() {
        let clock = pmd::VirtualClock::new();
        let mut ex = Executor::new(TimerReactor::virtual_time(clock.clone(), 0));
        let out = ex
            .block_on(async {
                let a = spawn(async {
                    sleep(Duration::from_secs(3)).await;
                    now_ns()
                });
                let b = spawn(async {
                    sleep(Duration::from_secs(1)).await;
                    now_ns()
                });
                (a.await, b.await)
            })
            .unwrap();
        assert_eq!(out, (3_000_000_000, 1_000_000_000));
        assert_eq!(clock.now_ns(), 3_000_000_000);
        assert_eq!(ex.tasks(), 0);
    }

    #[test]
    fn timeout_and_race() {
        let clock = pmd::VirtualClock::new();
        let mut ex = Executor::new(TimerReactor::virtual_time(clock.clone(), 0));
        let r = ex
            .block_on(async {
                let t1 = timeout(Duration::from_millis(10), sleep(Duration::from_secs(5))).await;
                let t2 = timeout(Duration::from_millis(10), async { 7 }).await;
                let r = race(sleep(Duration::from_millis(2)), sleep(Duration::from_millis(1))).await;
                (t1, t2, r)
            })
            .unwrap();
        assert_eq!(r, (Err(Elapsed), Ok(7), Either::Right(())));
        // The abandoned 5 s sleep was cancelled: nothing left armed, and time
        // stopped at the last deadline that mattered.
        assert_eq!(clock.now_ns(), 11_000_000);
    }

    #[test]
    fn iterations_that_run_tasks_are_busy_empty_polls_idle() {
        let clock = pmd::VirtualClock::new();
        let mut ex = Executor::new(TimerReactor::virtual_time(clock, 0));
        ex.block_on(async {
            for _ in 0..10 {
                yield_now().await;
            }
        })
        .unwrap();
        let c = ex.core_cycles();
        // Each yield is a busy iteration (a task ran); nothing else happened.
        assert!(c.busy_iters >= 10, "{c:?}");
        assert_eq!(c.idle_iters, 0, "{c:?}");
        let inside = ex.block_on(async { core_cycles() }).unwrap();
        assert!(inside.busy_iters >= c.busy_iters);
        // A reactor that polls without sleeping, waiting 5 ms for a timer:
        // its empty polls are idle iterations.
        let mut ex = Executor::new(crate::kernel::KernelReactor::busy().unwrap());
        ex.block_on(async { sleep(Duration::from_millis(5)).await }).unwrap();
        let c = ex.core_cycles();
        assert!(c.idle_iters > c.busy_iters, "{c:?}");
        assert!(c.busy_iters >= 1, "the timer firing is work: {c:?}");
    }

    #[test]
    fn a_stalled_executor_reports_it() {
        let mut ex = Executor::new(TimerReactor::virtual_time(pmd::VirtualClock::new(), 0));
        let e = ex.block_on(std::future::pending::<()>()).unwrap_err();
        assert!(e.to_string().contains("stalled"), "{e}");
    }
}
