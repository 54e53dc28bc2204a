//! The stub resolver: hosts table, then the per-core cache, then queries to
//! the configured servers over a [`Datagram`] (UDP), falling back to a
//! [`Flow`] (TCP) when an answer comes back truncated (RFC 7766 / RFC 1035
//! 4.2.2 framing). It runs over whatever [`Dialer`] it is given: our stack or
//! the kernel's.
//!
//! Every value is the caller's ([`ResolverConfig`]): servers, per-query timeout,
//! retries (servers are tried in turn), cache capacity, the UDP and TCP
//! configurations. Each query has a random ID and its own socket on a random
//! source port; answers that do not match (source, ID, question) are counted in
//! [`ResolverStats::mismatched`] and ignored, and the wait goes on until the
//! query's deadline.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use hickory_proto::rr::Name;
use rand::{Rng, SeedableRng};

use super::cache::Cache;
use super::hosts::Hosts;
use super::message::{self, Verdict};
use super::{Lookup, ResolveError};
use crate::connect::dial::{Dialer, LocalBoxFuture};
use crate::exec::{now_ns, race, sleep_until, Either};
use crate::happy_eyeballs::{ConfigError, Family};
use crate::{Datagram, Flow, FlowError, TcpConfig, UdpConfig};

/// Every value of a resolver.
#[derive(Clone, Debug)]
pub struct ResolverConfig {
    /// Servers, tried in this order (one per try, round robin).
    pub servers: Vec<SocketAddr>,
    /// How long one query waits for its answer.
    pub timeout: Duration,
    /// Queries after the first, each to the next server.
    pub retries: u32,
    /// Answers the cache holds at most (0: no cache).
    pub cache_capacity: usize,
    /// The UDP sockets' configuration.
    pub udp: UdpConfig,
    /// The TCP configuration of truncated-answer retries.
    pub tcp: TcpConfig,
}

impl ResolverConfig {
    /// Checks every value; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason: String| Err(ConfigError { field, reason });
        if self.servers.is_empty() {
            return err("servers", "at least one server is needed".into());
        }
        if let Some(s) = self.servers.iter().find(|s| s.port() == 0 || s.ip().is_unspecified()) {
            return err("servers", format!("{s} is not a server address"));
        }
        if self.timeout.is_zero() {
            return err("timeout", "must be more than 0".into());
        }
        if let Err(e) = self.udp.validate() {
            return err("udp", e.to_string());
        }
        if let Err(e) = self.tcp.validate() {
            return err("tcp", e.to_string());
        }
        Ok(())
    }

    /// The servers of a resolv.conf(5) file (its `nameserver` lines, port 53);
    /// every other value is the caller's — the file's `options` are glibc's
    /// defaults, not ours, and are not read.
    pub fn from_resolv_conf(
        path: &Path,
        timeout: Duration,
        retries: u32,
        cache_capacity: usize,
        udp: UdpConfig,
        tcp: TcpConfig,
    ) -> Result<ResolverConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { field: "servers", reason: format!("{}: {e}", path.display()) })?;
        let mut servers = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let mut f = line.split_whitespace();
            if f.next() != Some("nameserver") {
                continue;
            }
            let a = f.next().unwrap_or("");
            // A link-local IPv6 server may carry a zone (`fe80::1%eth0`): not supported.
            let ip: IpAddr = a.parse().map_err(|_| ConfigError {
                field: "servers",
                reason: format!("{}:{}: '{a}' is not an address", path.display(), i + 1),
            })?;
            servers.push(SocketAddr::new(ip, 53));
        }
        let c = ResolverConfig { servers, timeout, retries, cache_capacity, udp, tcp };
        c.validate()?;
        Ok(c)
    }
}

/// What a resolver has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResolverStats {
    /// Queries sent (UDP and TCP).
    pub queries: u64,
    /// Answers accepted.
    pub answers: u64,
    /// Datagrams that did not match a query (source, ID, question, garbage).
    pub mismatched: u64,
    /// Truncated answers (each retried over TCP).
    pub truncated: u64,
    /// Queries that timed out.
    pub timeouts: u64,
    /// Lookups answered by the cache.
    pub cache_hits: u64,
    /// Lookups answered by the hosts table.
    pub hosts_hits: u64,
}

struct Inner {
    cfg: ResolverConfig,
    dial: Dialer,
    hosts: Hosts,
    cache: RefCell<Cache>,
    stats: Cell<ResolverStats>,
    rng: RefCell<rand::rngs::StdRng>,
}

/// A stub resolver (one per core; clones share it).
#[derive(Clone)]
pub struct Resolver {
    inner: Rc<Inner>,
}

impl Resolver {
    /// A resolver over `dial` with the hosts table `hosts`.
    pub fn new(cfg: ResolverConfig, dial: Dialer, hosts: Hosts) -> Result<Resolver, ConfigError> {
        cfg.validate()?;
        Ok(Resolver {
            inner: Rc::new(Inner {
                cache: RefCell::new(Cache::new(cfg.cache_capacity)),
                cfg,
                dial,
                hosts,
                stats: Cell::new(ResolverStats::default()),
                rng: RefCell::new(rand::rngs::StdRng::from_entropy()),
            }),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> ResolverStats {
        self.inner.stats.get()
    }

    fn bump(&self, f: impl FnOnce(&mut ResolverStats)) {
        let mut s = self.inner.stats.get();
        f(&mut s);
        self.inner.stats.set(s);
    }

    /// The addresses of `name` in `family`.
    pub async fn lookup(&self, name: &str, family: Family) -> Result<Vec<IpAddr>, ResolveError> {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(v) = self.inner.hosts.get(&key, family) {
            self.bump(|s| s.hosts_hits += 1);
            return Ok(v);
        }
        if let Some(v) = self.inner.cache.borrow_mut().get(&key, family, now_ns()) {
            self.bump(|s| s.cache_hits += 1);
            return Ok(v);
        }
        let qname = message::fqdn(&key).map_err(ResolveError::Io)?;
        let cfg = &self.inner.cfg;
        let mut last: Option<ResolveError> = None;
        let tries = cfg.retries + 1;
        for t in 0..tries {
            let server = cfg.servers[t as usize % cfg.servers.len()];
            match self.ask_udp(&qname, family, server).await {
                Ok(Verdict::Answer { addrs, ttl }) => {
                    self.bump(|s| s.answers += 1);
                    self.inner.cache.borrow_mut().put(&key, family, addrs.clone(), ttl, now_ns());
                    return Ok(addrs);
                }
                Ok(Verdict::NoSuchName) => {
                    self.bump(|s| s.answers += 1);
                    return Err(ResolveError::NoSuchName(key));
                }
                Ok(Verdict::ServerError(rcode)) => last = Some(ResolveError::Server { name: key.clone(), rcode }),
                Ok(Verdict::Truncated | Verdict::Mismatch(_)) => {
                    last = Some(ResolveError::Io(format!("{server}: a truncated or mismatched answer over TCP")))
                }
                Err(None) => {
                    self.bump(|s| s.timeouts += 1);
                }
                Err(Some(e)) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ResolveError::TimedOut { name: key, tries }))
    }

    /// Both families at once (A and AAAA queried concurrently).
    pub async fn lookup_ip(
        &self,
        name: &str,
    ) -> (Result<Vec<IpAddr>, ResolveError>, Result<Vec<IpAddr>, ResolveError>) {
        let (a, b) = (self.lookup(name, Family::V6), self.lookup(name, Family::V4));
        let mut a = std::pin::pin!(a);
        let mut b = std::pin::pin!(b);
        let (mut ra, mut rb) = (None, None);
        std::future::poll_fn(|cx| {
            if ra.is_none() {
                if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
                    ra = Some(v);
                }
            }
            if rb.is_none() {
                if let std::task::Poll::Ready(v) = b.as_mut().poll(cx) {
                    rb = Some(v);
                }
            }
            if ra.is_some() && rb.is_some() {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        (ra.expect("done"), rb.expect("done"))
    }

    fn bind(&self, server: SocketAddr) -> Result<crate::connect::dial::BoxDatagram, FlowError> {
        let any: IpAddr = if server.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
        // A random source port (RFC 5452 9.2); a taken one is drawn again.
        for _ in 0..8 {
            let port = self.inner.rng.borrow_mut().gen_range(10_000..=65_535u16);
            match self.inner.dial.0.udp_bind(SocketAddr::new(any, port), &self.inner.cfg.udp) {
                Ok(u) => return Ok(u),
                Err(FlowError::Io(e)) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        }
        self.inner.dial.0.udp_bind(SocketAddr::new(any, 0), &self.inner.cfg.udp)
    }

    /// One UDP query. `Err(None)`: no answer by the deadline.
    async fn ask_udp(&self, name: &Name, family: Family, server: SocketAddr) -> Result<Verdict, Option<ResolveError>> {
        let deadline = now_ns() + self.inner.cfg.timeout.as_nanos() as u64;
        let io = |e: FlowError| Some(ResolveError::Io(format!("{server}: {e}")));
        let mut sock = self.bind(server).map_err(io)?;
        let id: u16 = self.inner.rng.borrow_mut().gen();
        sock.send_to(&message::query(id, name, family), server).await.map_err(io)?;
        self.bump(|s| s.queries += 1);
        let mut buf = vec![0u8; 4096];
        loop {
            let (n, from) = match race(sock.recv_from(&mut buf), sleep_until(deadline)).await {
                Either::Left(r) => r.map_err(io)?,
                Either::Right(()) => return Err(None),
            };
            match message::judge(&buf[..n], from, server, id, name, family) {
                Verdict::Mismatch(_) => self.bump(|s| s.mismatched += 1),
                Verdict::Truncated => {
                    self.bump(|s| s.truncated += 1);
                    drop(sock);
                    return self.ask_tcp(name, family, server, deadline).await;
                }
                v => return Ok(v),
            }
        }
    }

    /// The same question over TCP, within what is left of the deadline.
    async fn ask_tcp(
        &self,
        name: &Name,
        family: Family,
        server: SocketAddr,
        deadline: u64,
    ) -> Result<Verdict, Option<ResolveError>> {
        let io = |e: FlowError| Some(ResolveError::Io(format!("{server} (tcp): {e}")));
        let id: u16 = self.inner.rng.borrow_mut().gen();
        let ask = async {
            let mut f = self.inner.dial.0.connect(server, &self.inner.cfg.tcp).await?;
            let q = message::query(id, name, family);
            let mut framed = (q.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&q);
            f.write_all(&framed).await?;
            self.bump(|s| s.queries += 1);
            let mut len = [0u8; 2];
            f.read_exact(&mut len).await?;
            let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
            f.read_exact(&mut body).await?;
            let _ = f.close().await;
            Ok::<_, FlowError>(body)
        };
        let body = match race(ask, sleep_until(deadline)).await {
            Either::Left(r) => r.map_err(io)?,
            Either::Right(()) => return Err(None),
        };
        match message::judge(&body, server, server, id, name, family) {
            Verdict::Mismatch(_) => {
                self.bump(|s| s.mismatched += 1);
                Ok(Verdict::Mismatch("tcp"))
            }
            v => Ok(v),
        }
    }
}

impl Lookup for Resolver {
    fn lookup(&self, name: &str, family: Family) -> LocalBoxFuture<'static, Result<Vec<IpAddr>, ResolveError>> {
        let (me, name) = (self.clone(), name.to_string());
        Box::pin(async move { me.lookup(&name, family).await })
    }
}
