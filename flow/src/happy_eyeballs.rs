//! Happy Eyeballs v2 (RFC 8305) as a sans-IO state machine.
//!
//! The machine does no I/O and reads no clock: it is fed DNS answers,
//! connection results and `now` (ns on any clock) through
//! [`HappyEyeballs::process_input`], and says what to do next through
//! [`HappyEyeballs::process_output`] — resolve a family, connect to an address,
//! cancel an attempt, or done — and when it wants to be called again
//! ([`HappyEyeballs::deadline`]). The model is the `mozilla/happy-eyeballs`
//! crate's `process_input`/`process_output`; the driver that runs it on the
//! executor is [`crate::connect::race`], and the tests run it in virtual time.
//!
//! What it does (RFC 8305 sections):
//! * 3: AAAA and A are asked at once. An AAAA answer (with addresses) starts
//!   connecting at once; an A answer first waits the Resolution Delay for the
//!   AAAA one, then goes on with IPv4; a late AAAA answer is merged (4).
//! * 4: addresses are sorted per family by a minimal RFC 6724 (its default
//!   policy table's precedence: loopback, then global, then IPv4, 6to4,
//!   Teredo, ULA, deprecated site-local) and interleaved, the preferred family
//!   (IPv6 if it has any) first with First Address Family Count addresses.
//! * 5: attempts start one Connection Attempt Delay apart, or at once when the
//!   previous one fails; never more than `max_concurrent` at once; an attempt
//!   older than `attempt_timeout` is cancelled and counted as timed out.
//! * 6: the first attempt that connects wins; every other is cancelled.
//! * the same address is never tried twice; `overall_timeout` bounds it all.
//!
//! Invariants: an id is handed out once; every `Connect` is followed by exactly
//! one `Cancel` or a result (or is the winner); after `Done` nothing else comes
//! out but the `Cancel`s queued before it.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::FlowError;

/// An address family, as DNS asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// AAAA.
    V6,
    /// A.
    V4,
}

/// Every value of the algorithm, given by the caller (RFC 8305's suggestions
/// in brackets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HappyEyeballsConfig {
    /// How long an A answer waits for the AAAA one (50 ms, section 3).
    pub resolution_delay: Duration,
    /// Between the starts of two attempts (250 ms; 10 ms..=2 s, section 5).
    pub connection_attempt_delay: Duration,
    /// Addresses of the preferred family tried before the other (1, section 4).
    pub first_address_family_count: usize,
    /// An attempt not connected by then is cancelled.
    pub attempt_timeout: Duration,
    /// The whole race (resolution included) gives up after this.
    pub overall_timeout: Duration,
    /// Attempts in flight at once.
    pub max_concurrent: usize,
}

/// A configuration value out of range; names the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The field.
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl HappyEyeballsConfig {
    /// Checks every value. The attempt delay must lie in RFC 8305's 10 ms..=2 s:
    /// a value outside is refused rather than silently clamped.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: &str| Err(ConfigError { field, reason: reason.into() });
        let d = self.connection_attempt_delay;
        if d < Duration::from_millis(10) || d > Duration::from_secs(2) {
            return err("connection_attempt_delay", "must be between 10 ms and 2 s (RFC 8305 5)");
        }
        if self.resolution_delay > Duration::from_secs(2) {
            return err("resolution_delay", "must be at most 2 s");
        }
        if self.first_address_family_count == 0 {
            return err("first_address_family_count", "must be at least 1");
        }
        if self.max_concurrent == 0 {
            return err("max_concurrent", "must be at least 1");
        }
        if self.attempt_timeout.is_zero() {
            return err("attempt_timeout", "must be more than 0");
        }
        if self.overall_timeout.is_zero() {
            return err("overall_timeout", "must be more than 0");
        }
        Ok(())
    }
}

/// Identifies one connection attempt.
pub type AttemptId = u64;

/// What the machine is told.
#[derive(Debug)]
pub enum Input {
    /// The answer for one family: addresses (maybe none), or why it failed.
    Resolved {
        /// Which query.
        family: Family,
        /// Its outcome.
        result: Result<Vec<IpAddr>, String>,
    },
    /// Attempt `id` connected.
    Connected(AttemptId),
    /// Attempt `id` failed.
    Failed(AttemptId, FlowError),
}

/// What the machine asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Send the query for this family.
    Resolve(Family),
    /// Start connecting to `addr` as attempt `id`.
    Connect {
        /// The attempt.
        id: AttemptId,
        /// Where.
        addr: SocketAddr,
    },
    /// Drop attempt `id` (closing what it opened).
    Cancel(AttemptId),
    /// Finished: the winning attempt, or why none did (take it with
    /// [`HappyEyeballs::take_error`]).
    Done(Option<(AttemptId, SocketAddr)>),
}

/// Why no connection was made.
#[derive(Debug)]
pub enum HappyEyeballsError {
    /// Resolution gave no address: each family's failure (or "no addresses").
    Resolve {
        /// The AAAA outcome.
        v6: String,
        /// The A outcome.
        v4: String,
    },
    /// Every address was tried and failed; each with its error, in order tried.
    AllFailed(Vec<(SocketAddr, FlowError)>),
    /// The overall timeout passed; what had failed by then.
    TimedOut(Vec<(SocketAddr, FlowError)>),
}

impl fmt::Display for HappyEyeballsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, v: &[(SocketAddr, FlowError)]| {
            let parts: Vec<String> = v.iter().map(|(a, e)| format!("{a}: {e}")).collect();
            f.write_str(&parts.join("; "))
        };
        match self {
            HappyEyeballsError::Resolve { v6, v4 } => write!(f, "no address: AAAA: {v6}; A: {v4}"),
            HappyEyeballsError::AllFailed(v) => {
                write!(f, "every address failed: ")?;
                list(f, v)
            }
            HappyEyeballsError::TimedOut(v) => {
                write!(f, "timed out")?;
                if !v.is_empty() {
                    write!(f, " after: ")?;
                    list(f, v)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for HappyEyeballsError {}

#[derive(Debug)]
struct Attempt {
    id: AttemptId,
    addr: SocketAddr,
    deadline: u64,
}

/// RFC 6724 2.1's default policy table, precedence only (higher first).
pub fn precedence(ip: &IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 35,
        IpAddr::V6(a) => {
            let s = a.segments();
            if a.is_loopback() {
                50
            } else if s[0] == 0x2002 {
                30 // 6to4
            } else if s[0] == 0x2001 && s[1] == 0 {
                5 // Teredo
            } else if s[0] & 0xfe00 == 0xfc00 {
                3 // ULA
            } else if s[0] & 0xffc0 == 0xfec0 || s[0] == 0x3ffe || (s[..6] == [0; 6]) {
                1 // site-local, 6bone, IPv4-compatible
            } else if let Some(v4) = a.to_ipv4_mapped() {
                precedence(&IpAddr::V4(v4))
            } else {
                40
            }
        }
    }
}

/// Sorts by precedence, keeping DNS order among equals, and drops repeats.
pub fn sort(addrs: &mut Vec<IpAddr>) {
    let mut seen = HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    addrs.sort_by_key(|a| std::cmp::Reverse(precedence(a)));
}

/// The machine.
#[derive(Debug)]
pub struct HappyEyeballs {
    cfg: HappyEyeballsConfig,
    port: u16,
    start: u64,
    out: VecDeque<Output>,
    v6: Option<Result<Vec<IpAddr>, String>>,
    v4: Option<Result<Vec<IpAddr>, String>>,
    /// Set when A answered first: until then the AAAA answer is awaited.
    resolution_deadline: Option<u64>,
    queue: VecDeque<SocketAddr>,
    tried: HashSet<IpAddr>,
    attempts: Vec<Attempt>,
    next_attempt_at: u64,
    next_id: AttemptId,
    last_family: Option<Family>,
    failures: Vec<(SocketAddr, FlowError)>,
    done: bool,
    error: Option<HappyEyeballsError>,
}

impl HappyEyeballs {
    /// A race to `port` of a name's addresses, starting `now`: the first outputs
    /// are `Resolve(V6)` and `Resolve(V4)`.
    pub fn new(cfg: HappyEyeballsConfig, port: u16, now: u64) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mut m = HappyEyeballs {
            cfg,
            port,
            start: now,
            out: VecDeque::new(),
            v6: None,
            v4: None,
            resolution_deadline: None,
            queue: VecDeque::new(),
            tried: HashSet::new(),
            attempts: Vec::new(),
            next_attempt_at: 0,
            next_id: 0,
            last_family: None,
            failures: Vec::new(),
            done: false,
            error: None,
        };
        m.out.push_back(Output::Resolve(Family::V6));
        m.out.push_back(Output::Resolve(Family::V4));
        Ok(m)
    }

    /// A race over addresses already known (literals, a hosts table): no
    /// resolution.
    pub fn with_addrs(cfg: HappyEyeballsConfig, addrs: &[IpAddr], port: u16, now: u64) -> Result<Self, ConfigError> {
        let mut m = Self::new(cfg, port, now)?;
        m.out.clear();
        let (v6, v4): (Vec<IpAddr>, Vec<IpAddr>) = addrs.iter().partition(|a| a.is_ipv6());
        m.v6 = Some(Ok(v6));
        m.v4 = Some(Ok(v4));
        m.requeue();
        m.step(now);
        Ok(m)
    }

    /// Feeds one event at `now`.
    pub fn process_input(&mut self, input: Input, now: u64) {
        if self.done {
            return;
        }
        match input {
            Input::Resolved { family, result } => {
                let slot = match family {
                    Family::V6 => &mut self.v6,
                    Family::V4 => &mut self.v4,
                };
                if slot.is_some() {
                    return; // one answer per family
                }
                *slot = Some(result);
                if family == Family::V4 && self.v6.is_none() {
                    self.resolution_deadline = Some(now + self.cfg.resolution_delay.as_nanos() as u64);
                }
                self.requeue();
            }
            Input::Connected(id) => {
                if let Some(i) = self.attempts.iter().position(|a| a.id == id) {
                    let won = self.attempts.remove(i);
                    for a in self.attempts.drain(..) {
                        self.out.push_back(Output::Cancel(a.id));
                    }
                    self.done = true;
                    self.out.push_back(Output::Done(Some((won.id, won.addr))));
                    return;
                }
            }
            Input::Failed(id, e) => {
                if let Some(i) = self.attempts.iter().position(|a| a.id == id) {
                    let a = self.attempts.remove(i);
                    self.failures.push((a.addr, e));
                    // Section 5: the next attempt need not wait for the delay.
                    self.next_attempt_at = now;
                }
            }
        }
        self.step(now);
    }

    /// The next thing to do, if any (call until `None`, after every input and
    /// at every deadline).
    pub fn process_output(&mut self, now: u64) -> Option<Output> {
        if self.out.is_empty() {
            self.step(now);
        }
        self.out.pop_front()
    }

    /// When the machine wants `process_output` called again if nothing else
    /// happens (ns, same clock as `now`); `None` once done.
    pub fn deadline(&self) -> Option<u64> {
        if self.done {
            return None;
        }
        let mut d = self.start + self.cfg.overall_timeout.as_nanos() as u64;
        for a in &self.attempts {
            d = d.min(a.deadline);
        }
        // The Resolution Delay matters only while there is an address to start
        // (an empty A answer waiting for AAAA has nothing to wake up for).
        if !self.queue.is_empty() && self.attempts.len() < self.cfg.max_concurrent {
            if self.may_connect(0) {
                d = d.min(self.next_attempt_at);
            } else if let Some(r) = self.resolution_deadline {
                d = d.min(r.max(self.next_attempt_at));
            }
        }
        Some(d)
    }

    /// Why the race failed (after `Done(None)`).
    pub fn take_error(&mut self) -> Option<HappyEyeballsError> {
        self.error.take()
    }

    /// Attempts in flight.
    pub fn in_flight(&self) -> usize {
        self.attempts.len()
    }

    /// Whether attempts may start at `now` (section 3: an AAAA answer with
    /// addresses, both answers, or the A answer and the Resolution Delay over).
    fn may_connect(&self, now: u64) -> bool {
        let v6_has = matches!(&self.v6, Some(Ok(v)) if !v.is_empty());
        v6_has || (self.v4.is_some() && (self.v6.is_some() || self.resolution_deadline.is_some_and(|d| now >= d)))
    }

    /// Rebuilds the queue from every answer so far, minus what was tried.
    fn requeue(&mut self) {
        let take = |r: &Option<Result<Vec<IpAddr>, String>>| -> Vec<IpAddr> {
            match r {
                Some(Ok(v)) => v.clone(),
                _ => Vec::new(),
            }
        };
        let (mut v6, mut v4) = (take(&self.v6), take(&self.v4));
        sort(&mut v6);
        sort(&mut v4);
        v6.retain(|a| !self.tried.contains(a));
        v4.retain(|a| !self.tried.contains(a));
        // Preferred family first; before any attempt, with First Address
        // Family Count of it, afterwards alternating from the other family.
        let (first, second, count) = match self.last_family {
            None if !v6.is_empty() => (v6, v4, self.cfg.first_address_family_count),
            None => (v4, v6, 1),
            Some(Family::V6) => (v4, v6, 1),
            Some(Family::V4) => (v6, v4, 1),
        };
        let (mut a, mut b) = (first.into_iter().peekable(), second.into_iter().peekable());
        self.queue.clear();
        let port = self.port;
        for _ in 0..count {
            if let Some(x) = a.next() {
                self.queue.push_back(SocketAddr::new(x, port));
            }
        }
        loop {
            match (b.next(), a.next()) {
                (None, None) => break,
                (x, y) => {
                    for ip in [x, y].into_iter().flatten() {
                        self.queue.push_back(SocketAddr::new(ip, port));
                    }
                }
            }
        }
    }

    fn finish(&mut self, e: HappyEyeballsError) {
        for a in self.attempts.drain(..) {
            self.out.push_back(Output::Cancel(a.id));
        }
        self.done = true;
        self.error = Some(e);
        self.out.push_back(Output::Done(None));
    }

    fn step(&mut self, now: u64) {
        if self.done {
            return;
        }
        if now >= self.start + self.cfg.overall_timeout.as_nanos() as u64 {
            let f = std::mem::take(&mut self.failures);
            self.finish(HappyEyeballsError::TimedOut(f));
            return;
        }
        let mut i = 0;
        while i < self.attempts.len() {
            if now >= self.attempts[i].deadline {
                let a = self.attempts.remove(i);
                self.out.push_back(Output::Cancel(a.id));
                self.failures.push((a.addr, FlowError::TimedOut));
                self.next_attempt_at = now;
            } else {
                i += 1;
            }
        }
        if self.may_connect(now) {
            while !self.queue.is_empty() && self.attempts.len() < self.cfg.max_concurrent && now >= self.next_attempt_at
            {
                let addr = self.queue.pop_front().expect("non-empty");
                self.tried.insert(addr.ip());
                let id = self.next_id;
                self.next_id += 1;
                self.last_family = Some(if addr.is_ipv6() { Family::V6 } else { Family::V4 });
                self.attempts.push(Attempt { id, addr, deadline: now + self.cfg.attempt_timeout.as_nanos() as u64 });
                self.next_attempt_at = now + self.cfg.connection_attempt_delay.as_nanos() as u64;
                self.out.push_back(Output::Connect { id, addr });
            }
        }
        let resolved = self.v6.is_some() && self.v4.is_some();
        if resolved && self.queue.is_empty() && self.attempts.is_empty() {
            if self.tried.is_empty() {
                let why = |r: &Option<Result<Vec<IpAddr>, String>>| match r {
                    Some(Err(e)) => e.clone(),
                    _ => "no addresses".to_string(),
                };
                let e = HappyEyeballsError::Resolve { v6: why(&self.v6), v4: why(&self.v4) };
                self.finish(e);
            } else {
                let f = std::mem::take(&mut self.failures);
                self.finish(HappyEyeballsError::AllFailed(f));
            }
        }
    }
}
