//! Happy Eyeballs v2 (RFC 8305) in virtual time: the sans-IO machine fed
//! answers and results at chosen instants, and its driver on the executor's
//! virtual clock with scripted DNS and connections. Test names say which
//! section they check.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use flow::connect::{race, Host, LocalBoxFuture, RaceError};
use flow::dns::{Lookup, ResolveError};
use flow::exec::{Executor, TimerReactor};
use flow::happy_eyeballs::{precedence, Family, HappyEyeballs, HappyEyeballsConfig, HappyEyeballsError, Input, Output};
use flow::FlowError;

const MS: u64 = 1_000_000;

fn cfg() -> HappyEyeballsConfig {
    HappyEyeballsConfig {
        resolution_delay: Duration::from_millis(50),
        connection_attempt_delay: Duration::from_millis(250),
        first_address_family_count: 1,
        attempt_timeout: Duration::from_secs(10),
        overall_timeout: Duration::from_secs(30),
        max_concurrent: 16,
    }
}

fn ips(s: &[&str]) -> Vec<IpAddr> {
    s.iter().map(|a| a.parse().unwrap()).collect()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Everything the machine wants at `now`.
fn drain(m: &mut HappyEyeballs, now: u64) -> Vec<Output> {
    std::iter::from_fn(|| m.process_output(now)).collect()
}

fn answer(m: &mut HappyEyeballs, family: Family, a: &[&str], now: u64) {
    m.process_input(Input::Resolved { family, result: Ok(ips(a)) }, now);
}

fn new() -> HappyEyeballs {
    let mut m = HappyEyeballs::new(cfg(), 7, 0).unwrap();
    assert_eq!(drain(&mut m, 0), vec![Output::Resolve(Family::V6), Output::Resolve(Family::V4)]);
    m
}

#[test]
fn rfc8305_3_aaaa_and_a_are_asked_at_once() {
    let m = new();
    assert_eq!(m.in_flight(), 0);
    assert_eq!(m.deadline(), Some(30_000 * MS), "only the overall timeout until an answer");
}

#[test]
fn rfc8305_3_aaaa_first_connects_ipv6_at_once() {
    let mut m = new();
    answer(&mut m, Family::V6, &["2001:2::1"], 10 * MS);
    assert_eq!(drain(&mut m, 10 * MS), vec![Output::Connect { id: 0, addr: sa("[2001:2::1]:7") }]);
}

#[test]
fn rfc8305_3_a_at_30ms_and_aaaa_at_40ms_connects_ipv6_first() {
    let mut m = new();
    answer(&mut m, Family::V4, &["198.18.0.2"], 30 * MS);
    assert_eq!(drain(&mut m, 30 * MS), vec![], "the A answer waits for the AAAA one");
    assert_eq!(m.deadline(), Some(80 * MS), "for at most the Resolution Delay");
    answer(&mut m, Family::V6, &["2001:2::2"], 40 * MS);
    assert_eq!(drain(&mut m, 40 * MS), vec![Output::Connect { id: 0, addr: sa("[2001:2::2]:7") }]);
    assert_eq!(m.deadline(), Some(290 * MS), "IPv4 one attempt delay later");
    assert_eq!(drain(&mut m, 290 * MS), vec![Output::Connect { id: 1, addr: sa("198.18.0.2:7") }]);
}

#[test]
fn rfc8305_3_a_at_30ms_and_no_aaaa_by_80ms_connects_ipv4() {
    let mut m = new();
    answer(&mut m, Family::V4, &["198.18.0.2"], 30 * MS);
    assert_eq!(drain(&mut m, 79 * MS), vec![]);
    assert_eq!(drain(&mut m, 80 * MS), vec![Output::Connect { id: 0, addr: sa("198.18.0.2:7") }]);
}

#[test]
fn rfc8305_3_an_empty_aaaa_answer_does_not_hold_ipv4_back() {
    let mut m = new();
    answer(&mut m, Family::V4, &["198.18.0.2"], 30 * MS);
    answer(&mut m, Family::V6, &[], 35 * MS);
    assert_eq!(drain(&mut m, 35 * MS), vec![Output::Connect { id: 0, addr: sa("198.18.0.2:7") }]);
}

#[test]
fn rfc8305_3_an_empty_a_answer_waits_for_aaaa_without_a_deadline_to_spin_on() {
    let mut m = new();
    answer(&mut m, Family::V4, &[], 10 * MS);
    assert_eq!(drain(&mut m, 60 * MS), vec![]);
    assert_eq!(m.deadline(), Some(30_000 * MS), "only the overall timeout is left to wait for");
    answer(&mut m, Family::V6, &["2001:2::1"], 200 * MS);
    assert_eq!(drain(&mut m, 200 * MS), vec![Output::Connect { id: 0, addr: sa("[2001:2::1]:7") }]);
}

#[test]
fn rfc8305_4_families_interleave_after_first_address_family_count() {
    let mut c = cfg();
    c.first_address_family_count = 2;
    let mut m =
        HappyEyeballs::with_addrs(c, &ips(&["198.18.0.2", "198.18.0.3", "2001:2::1", "2001:2::2", "2001:2::3"]), 7, 0)
            .unwrap();
    let mut order = Vec::new();
    let mut now = 0;
    for _ in 0..5 {
        for o in drain(&mut m, now) {
            if let Output::Connect { addr, .. } = o {
                order.push(addr.ip().to_string());
            }
        }
        now = m.deadline().unwrap();
    }
    assert_eq!(order, ["2001:2::1", "2001:2::2", "198.18.0.2", "2001:2::3", "198.18.0.3"]);
}

#[test]
fn rfc8305_4_a_minimal_rfc6724_sort_puts_ula_and_teredo_after_ipv4() {
    let p = |s: &str| precedence(&s.parse().unwrap());
    assert!(p("::1") > p("2001:2::1"));
    assert!(p("2001:2::1") > p("198.18.0.1"));
    assert!(p("198.18.0.1") > p("2002::1"));
    assert!(p("2002::1") > p("2001:0::1"));
    assert!(p("2001:0::1") > p("fd00::1"));
    let mut m = HappyEyeballs::with_addrs(cfg(), &ips(&["fd00::1", "2001:2::9"]), 7, 0).unwrap();
    assert_eq!(drain(&mut m, 0), vec![Output::Connect { id: 0, addr: sa("[2001:2::9]:7") }]);
}

#[test]
fn rfc8305_5_attempts_are_staggered_by_the_connection_attempt_delay() {
    let mut m = new();
    answer(&mut m, Family::V6, &["2001:2::1", "2001:2::2"], 0);
    answer(&mut m, Family::V4, &["198.18.0.2", "198.18.0.3"], 0);
    let mut at = Vec::new();
    let mut now = 0;
    for _ in 0..4 {
        for o in drain(&mut m, now) {
            if let Output::Connect { addr, .. } = o {
                at.push((now / MS, addr.ip().to_string()));
            }
        }
        assert!(drain(&mut m, now + 249 * MS).is_empty(), "nothing before the delay is over");
        now = m.deadline().unwrap();
    }
    let want: Vec<(u64, String)> = [(0, "2001:2::1"), (250, "198.18.0.2"), (500, "2001:2::2"), (750, "198.18.0.3")]
        .iter()
        .map(|(t, a)| (*t, a.to_string()))
        .collect();
    assert_eq!(at, want);
    assert_eq!(m.in_flight(), 4);
}

#[test]
fn rfc8305_5_a_failed_attempt_starts_the_next_at_once() {
    let mut m = HappyEyeballs::with_addrs(cfg(), &ips(&["2001:2::1", "198.18.0.2"]), 7, 0).unwrap();
    assert_eq!(drain(&mut m, 0), vec![Output::Connect { id: 0, addr: sa("[2001:2::1]:7") }]);
    m.process_input(Input::Failed(0, FlowError::Refused), 5 * MS);
    assert_eq!(drain(&mut m, 5 * MS), vec![Output::Connect { id: 1, addr: sa("198.18.0.2:7") }]);
}

#[test]
fn rfc8305_5_one_v4_and_eight_v6_never_exceed_the_concurrency_cap() {
    let mut c = cfg();
    c.max_concurrent = 3;
    c.attempt_timeout = Duration::from_millis(600);
    let mut m = HappyEyeballs::new(c, 7, 0).unwrap();
    drain(&mut m, 0);
    let v6: Vec<String> = (1..=8).map(|i| format!("2001:2::{i}")).collect();
    let v6: Vec<&str> = v6.iter().map(|s| s.as_str()).collect();
    answer(&mut m, Family::V6, &v6, 0);
    answer(&mut m, Family::V4, &["198.18.0.2"], 0);
    let mut tried = Vec::new();
    let mut now = 0;
    let mut done = false;
    while !done {
        for o in drain(&mut m, now) {
            match o {
                Output::Connect { addr, .. } => tried.push(addr),
                Output::Done(None) => done = true,
                _ => {}
            }
            assert!(m.in_flight() <= 3, "{} in flight at {now}", m.in_flight());
        }
        match m.deadline() {
            Some(d) => now = d,
            None => break,
        }
    }
    assert_eq!(tried.len(), 9, "each address once: {tried:?}");
    let uniq: std::collections::HashSet<_> = tried.iter().collect();
    assert_eq!(uniq.len(), 9);
    assert_eq!(tried[1], sa("198.18.0.2:7"), "IPv4 second, interleaved");
    match m.take_error() {
        Some(HappyEyeballsError::AllFailed(f)) => {
            assert_eq!(f.len(), 9);
            assert!(f.iter().all(|(_, e)| matches!(e, FlowError::TimedOut)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rfc8305_4_a_late_aaaa_answer_is_merged_into_the_list() {
    let mut m = new();
    answer(&mut m, Family::V4, &["198.18.0.2", "198.18.0.3"], 0);
    assert_eq!(drain(&mut m, 50 * MS), vec![Output::Connect { id: 0, addr: sa("198.18.0.2:7") }]);
    answer(&mut m, Family::V6, &["2001:2::1"], 100 * MS);
    assert_eq!(drain(&mut m, 100 * MS), vec![], "still one attempt delay from the first");
    assert_eq!(drain(&mut m, 300 * MS), vec![Output::Connect { id: 1, addr: sa("[2001:2::1]:7") }]);
    assert_eq!(drain(&mut m, 550 * MS), vec![Output::Connect { id: 2, addr: sa("198.18.0.3:7") }]);
}

#[test]
fn rfc8305_4_the_same_address_is_never_tried_twice() {
    let mut m = new();
    answer(&mut m, Family::V6, &["2001:2::1", "2001:2::1"], 0);
    assert_eq!(drain(&mut m, 0), vec![Output::Connect { id: 0, addr: sa("[2001:2::1]:7") }]);
    // A second answer for the family is ignored; the A answer repeats nothing.
    answer(&mut m, Family::V6, &["2001:2::1", "2001:2::5"], MS);
    answer(&mut m, Family::V4, &["198.18.0.2"], MS);
    m.process_input(Input::Failed(0, FlowError::Refused), 2 * MS);
    assert_eq!(drain(&mut m, 2 * MS), vec![Output::Connect { id: 1, addr: sa("198.18.0.2:7") }]);
    m.process_input(Input::Failed(1, FlowError::Refused), 3 * MS);
    assert_eq!(drain(&mut m, 3 * MS), vec![Output::Done(None)]);
}

#[test]
fn rfc8305_6_the_winner_cancels_the_losers() {
    let mut m = HappyEyeballs::with_addrs(cfg(), &ips(&["2001:2::1", "198.18.0.2", "2001:2::3"]), 7, 0).unwrap();
    drain(&mut m, 0);
    drain(&mut m, 250 * MS);
    drain(&mut m, 500 * MS);
    assert_eq!(m.in_flight(), 3);
    m.process_input(Input::Connected(1), 600 * MS);
    assert_eq!(
        drain(&mut m, 600 * MS),
        vec![Output::Cancel(0), Output::Cancel(2), Output::Done(Some((1, sa("198.18.0.2:7"))))]
    );
    assert_eq!(m.deadline(), None);
    assert_eq!(drain(&mut m, 10_000 * MS), vec![]);
}

#[test]
fn rfc8305_all_failing_gives_one_error_listing_each_address() {
    let mut m = HappyEyeballs::with_addrs(cfg(), &ips(&["2001:2::1", "198.18.0.2"]), 7, 0).unwrap();
    drain(&mut m, 0);
    m.process_input(Input::Failed(0, FlowError::Unreachable), MS);
    drain(&mut m, MS);
    m.process_input(Input::Failed(1, FlowError::Refused), 2 * MS);
    assert_eq!(drain(&mut m, 2 * MS), vec![Output::Done(None)]);
    let e = m.take_error().unwrap();
    assert_eq!(
        e.to_string(),
        "every address failed: [2001:2::1]:7: destination unreachable; 198.18.0.2:7: connection refused"
    );
}

#[test]
fn rfc8305_dns_failure_of_both_families_is_one_error_naming_both() {
    let mut m = new();
    m.process_input(Input::Resolved { family: Family::V6, result: Err("SERVFAIL".into()) }, MS);
    m.process_input(Input::Resolved { family: Family::V4, result: Ok(vec![]) }, 2 * MS);
    assert_eq!(drain(&mut m, 2 * MS), vec![Output::Done(None)]);
    assert_eq!(m.take_error().unwrap().to_string(), "no address: AAAA: SERVFAIL; A: no addresses");
}

#[test]
fn rfc8305_the_overall_timeout_ends_the_race_and_cancels_attempts() {
    let mut c = cfg();
    c.overall_timeout = Duration::from_secs(1);
    let mut m = HappyEyeballs::with_addrs(c, &ips(&["2001:2::1"]), 7, 0).unwrap();
    drain(&mut m, 0);
    assert_eq!(m.deadline(), Some(1_000 * MS));
    assert_eq!(drain(&mut m, 1_000 * MS), vec![Output::Cancel(0), Output::Done(None)]);
    assert!(matches!(m.take_error(), Some(HappyEyeballsError::TimedOut(_))));
}

#[test]
fn rfc8305_5_config_values_out_of_range_are_refused_by_name() {
    for (f, field) in [
        (
            Box::new(|c: &mut HappyEyeballsConfig| c.connection_attempt_delay = Duration::from_millis(5))
                as Box<dyn Fn(&mut HappyEyeballsConfig)>,
            "connection_attempt_delay",
        ),
        (
            Box::new(|c: &mut HappyEyeballsConfig| c.connection_attempt_delay = Duration::from_secs(3)),
            "connection_attempt_delay",
        ),
        (Box::new(|c: &mut HappyEyeballsConfig| c.max_concurrent = 0), "max_concurrent"),
        (Box::new(|c: &mut HappyEyeballsConfig| c.first_address_family_count = 0), "first_address_family_count"),
        (Box::new(|c: &mut HappyEyeballsConfig| c.attempt_timeout = Duration::ZERO), "attempt_timeout"),
    ] {
        let mut c = cfg();
        f(&mut c);
        assert_eq!(HappyEyeballs::new(c, 7, 0).unwrap_err().field, field);
    }
}

// ---- the driver, on the executor's virtual clock ----

/// DNS answers after a delay (or never).
struct Script {
    v6: Option<(u64, Vec<IpAddr>)>,
    v4: Option<(u64, Vec<IpAddr>)>,
}

impl Lookup for Script {
    fn lookup(&self, _name: &str, family: Family) -> LocalBoxFuture<'static, Result<Vec<IpAddr>, ResolveError>> {
        let a = match family {
            Family::V6 => self.v6.clone(),
            Family::V4 => self.v4.clone(),
        };
        Box::pin(async move {
            match a {
                Some((ms, v)) => {
                    flow::sleep(Duration::from_millis(ms)).await;
                    Ok(v)
                }
                None => std::future::pending().await,
            }
        })
    }
}

/// A connection attempt that counts its cancellation (drop before the end).
struct Open(Rc<Cell<usize>>, bool);
impl Drop for Open {
    fn drop(&mut self) {
        if !self.1 {
            self.0.set(self.0.get() + 1);
        }
    }
}

fn run<T: 'static>(f: impl std::future::Future<Output = T> + 'static) -> (T, u64) {
    let clock = pmd::VirtualClock::new();
    let mut ex = Executor::new(TimerReactor::virtual_time(clock.clone(), 0));
    let v = ex.block_on(f).unwrap();
    (v, pmd::Clock::now_ns(&clock))
}

#[test]
fn rfc8305_5_an_ipv6_black_hole_connects_ipv4_after_one_attempt_delay() {
    let cancelled = Rc::new(Cell::new(0));
    let c2 = cancelled.clone();
    let ((r, at), end) = run(async move {
        let dns: Rc<dyn Lookup> =
            Rc::new(Script { v6: Some((5, ips(&["2001:2::1"]))), v4: Some((5, ips(&["198.18.0.2"]))) });
        let host = Host::Name("echo.test".into());
        let r = race(&cfg(), &host, 7, Some(dns), |addr: SocketAddr| {
            let c = c2.clone();
            async move {
                let mut g = Open(c, false);
                if addr.is_ipv6() {
                    std::future::pending::<()>().await; // black hole: no answer ever
                }
                flow::sleep(Duration::from_millis(1)).await; // one RTT
                g.1 = true;
                Ok::<_, FlowError>(addr)
            }
        })
        .await;
        (r.map(|(a, _)| a), flow::now_ns())
    });
    assert_eq!(r.unwrap(), sa("198.18.0.2:7"));
    assert_eq!(at, (5 + 250 + 1) * MS, "DNS, one attempt delay, one RTT");
    assert_eq!(cancelled.get(), 1, "the IPv6 attempt was cancelled");
    assert_eq!(end, at);
}

#[test]
fn rfc8305_3_driver_a_at_30ms_aaaa_at_40ms_goes_ipv6_first() {
    let tried = Rc::new(RefCell::new(Vec::new()));
    let t2 = tried.clone();
    let (r, _) = run(async move {
        let dns: Rc<dyn Lookup> =
            Rc::new(Script { v6: Some((40, ips(&["2001:2::1"]))), v4: Some((30, ips(&["198.18.0.2"]))) });
        race(&cfg(), &Host::Name("echo.test".into()), 7, Some(dns), |addr: SocketAddr| {
            t2.borrow_mut().push((flow::now_ns() / MS, addr));
            async move { Ok::<_, FlowError>(addr) }
        })
        .await
        .map(|(a, _)| a)
    });
    assert_eq!(r.unwrap(), sa("[2001:2::1]:7"));
    assert_eq!(*tried.borrow(), vec![(40, sa("[2001:2::1]:7"))]);
}

#[test]
fn rfc8305_driver_dns_silence_ends_at_the_overall_timeout() {
    let mut c = cfg();
    c.overall_timeout = Duration::from_secs(2);
    let (r, end) = run(async move {
        let dns: Rc<dyn Lookup> = Rc::new(Script { v6: None, v4: None });
        race(&c, &Host::Name("echo.test".into()), 7, Some(dns), |a: SocketAddr| async move { Ok::<_, FlowError>(a) })
            .await
            .map(|(a, _)| a)
    });
    assert!(matches!(r, Err(RaceError::Failed(HappyEyeballsError::TimedOut(_)))), "{r:?}");
    assert_eq!(end, 2_000 * MS);
}
