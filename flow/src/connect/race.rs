//! The driver of the happy-eyeballs machine on the executor: it asks the
//! resolver, starts and drops connection attempts, and sleeps until the
//! machine's deadline, all in one task (attempts are futures it polls, so
//! cancelling one is dropping it, which closes whatever it opened: no
//! half-open connection outlives the race).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;

use super::dial::LocalBoxFuture;
use super::uri::Host;
use crate::dns::{Lookup, ResolveError};
use crate::exec::{now_ns, sleep_until, Sleep};
use crate::happy_eyeballs::{
    ConfigError, Family, HappyEyeballs, HappyEyeballsConfig, HappyEyeballsError, Input, Output,
};
use crate::FlowError;

/// Why a race gave nothing.
#[derive(Debug)]
pub enum RaceError {
    /// The configuration was refused.
    Config(ConfigError),
    /// Resolution or every attempt failed, or time ran out.
    Failed(HappyEyeballsError),
}

impl std::fmt::Display for RaceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RaceError::Config(e) => write!(f, "happy eyeballs: {e}"),
            RaceError::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// Races connections to `host:port` (RFC 8305): resolves a name with `lookup`
/// (a literal needs none), connects with `dial`, returns the first flow that
/// connects and the address it went to.
pub async fn race<T, F, Fut>(
    cfg: &HappyEyeballsConfig,
    host: &Host,
    port: u16,
    lookup: Option<Rc<dyn Lookup>>,
    dial: F,
) -> Result<(T, SocketAddr), RaceError>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: Future<Output = Result<T, FlowError>>,
{
    let now = now_ns();
    let (m, name) = match host {
        Host::Ip(ip) => (HappyEyeballs::with_addrs(cfg.clone(), &[*ip], port, now), String::new()),
        Host::Name(n) => (HappyEyeballs::new(cfg.clone(), port, now), n.clone()),
    };
    let mut m = m.map_err(RaceError::Config)?;
    type Query = (Family, LocalBoxFuture<'static, Result<Vec<IpAddr>, ResolveError>>);
    let mut queries: Vec<Query> = Vec::new();
    let mut attempts: Vec<(u64, Pin<Box<Fut>>)> = Vec::new();
    let mut winner: Option<(u64, T)> = None;
    let mut timer: Option<Sleep> = None;
    std::future::poll_fn(move |cx| loop {
        let now = now_ns();
        while let Some(o) = m.process_output(now) {
            match o {
                Output::Resolve(f) => match &lookup {
                    Some(l) => queries.push((f, l.lookup(&name, f))),
                    None => m.process_input(Input::Resolved { family: f, result: Err("no resolver".into()) }, now),
                },
                Output::Connect { id, addr } => attempts.push((id, Box::pin(dial(addr)))),
                // Dropping the attempt's future closes what it opened.
                Output::Cancel(id) => attempts.retain(|(i, _)| *i != id),
                Output::Done(Some((id, addr))) => {
                    let (wid, flow) = winner.take().expect("the machine names the attempt that connected");
                    debug_assert_eq!(wid, id);
                    attempts.clear();
                    queries.clear();
                    return Poll::Ready(Ok((flow, addr)));
                }
                Output::Done(None) => {
                    attempts.clear();
                    queries.clear();
                    let e = m.take_error().expect("a failed race says why");
                    return Poll::Ready(Err(RaceError::Failed(e)));
                }
            }
        }
        let mut progress = false;
        let mut i = 0;
        while i < queries.len() {
            if let Poll::Ready(r) = queries[i].1.as_mut().poll(cx) {
                let (family, _) = queries.remove(i);
                m.process_input(Input::Resolved { family, result: r.map_err(|e| e.to_string()) }, now_ns());
                progress = true;
            } else {
                i += 1;
            }
        }
        let mut i = 0;
        while i < attempts.len() {
            if let Poll::Ready(r) = attempts[i].1.as_mut().poll(cx) {
                let (id, _) = attempts.remove(i);
                match r {
                    Ok(flow) => {
                        winner = Some((id, flow));
                        m.process_input(Input::Connected(id), now_ns());
                    }
                    Err(e) => m.process_input(Input::Failed(id, e), now_ns()),
                }
                progress = true;
                if winner.is_some() {
                    break;
                }
            } else {
                i += 1;
            }
        }
        if progress {
            continue;
        }
        match m.deadline() {
            Some(d) => {
                if timer.as_ref().map(|t| t.deadline_ns()) != Some(d) {
                    timer = Some(sleep_until(d));
                }
                match Pin::new(timer.as_mut().expect("set")).poll(cx) {
                    Poll::Ready(()) => {
                        timer = None;
                        continue;
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
            None => return Poll::Pending,
        }
    })
    .await
}
