//! Picking a server: one core's view of one backend ([`Pool`]).
//!
//! Each core owns its `Pool` (its own Maglev table copy, connection counts,
//! round-robin state and health counters); nothing here is shared between
//! cores. Control-plane events (a health verdict, a runtime weight change, a
//! reload) reach every core as method calls on its own `Pool`.
//!
//! A server is *eligible* for new connections when it is up, not draining,
//! and of weight > 0; it has *room* when below its `maxconn` (0: no limit).
//! [`Pool::pick`] answers:
//! * `Server(i)`: connect to server `i` (its connection count is taken);
//! * `Full`: eligible servers exist but none has room — the caller queues;
//! * `NoServer`: nothing is eligible — the caller refuses the client.
//!
//! Algorithms:
//! * **maglev**: the flow key's table entry ([`crate::maglev`]); the table is
//!   rebuilt over the eligible servers whenever eligibility or a weight
//!   changes. A full server answers `Full` (the flow keeps its server, as
//!   HAProxy's hash balancing queues). An excluded server (a retry with
//!   redispatch) is skipped by walking the table from the entry onwards, so the
//!   fallback is deterministic too.
//! * **roundrobin**: smooth weighted round robin (nginx's): each pick adds
//!   every candidate's weight to its `current`, takes the largest, and
//!   subtracts the candidates' total from it; over a cycle of Σw picks each
//!   server gets exactly its weight, interleaved (5,1,1 → a a b a c a a).
//! * **leastconn**: the fewest connections per weight (`conns_i / w_i`,
//!   compared by cross-multiplication), ties taken in turn.
//!
//! Health (as HAProxy): a server goes down after `fall` consecutive failures
//! (active checks, or connects that fail on the data path) and up after
//! `rise` consecutive successes.

use crate::config::{Algorithm, BackendSpec, ServerSpec};
use crate::maglev::{flow_key, Maglev};
use std::net::SocketAddr;

/// One server as this core sees it.
#[derive(Debug, Clone)]
pub struct ServerState {
    /// Its configuration (weight, maxconn, drain change at run time).
    pub spec: ServerSpec,
    /// Up (health).
    pub up: bool,
    /// Connections to it from this core now.
    pub conns: usize,
    /// This core's counters for it.
    pub stats: ServerCounters,
    /// Removed at run time: kept (indices held by open sessions stay valid)
    /// but never picked, found or listed again.
    pub removed: bool,
    /// Consecutive health successes while down / failures while up.
    streak: u32,
    /// Smooth weighted round robin state.
    current: i64,
}

/// One server's counters on one core.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServerCounters {
    /// Connections established to it.
    pub total: u64,
    /// Connects that failed (refused, unreachable, timed out).
    pub connect_errors: u64,
    /// Bytes sent to it (client to server).
    pub bytes_in: u64,
    /// Bytes received from it (server to client).
    pub bytes_out: u64,
    /// Times it went down.
    pub downs: u64,
}

/// What [`Pool::pick`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Connect to this server (its count is taken; give it back with
    /// [`Pool::release`]).
    Server(usize),
    /// Eligible servers are all at `maxconn`.
    Full,
    /// No eligible server.
    NoServer,
}

/// One backend's servers on one core.
#[derive(Debug, Clone)]
pub struct Pool {
    algorithm: Algorithm,
    rise: u32,
    fall: u32,
    servers: Vec<ServerState>,
    /// Maglev table over `table_map` (eligible servers' indices).
    table: Option<Maglev>,
    table_map: Vec<usize>,
    /// leastconn's tie rotation.
    turn: usize,
}

impl Pool {
    /// A pool with every server up (HAProxy starts servers up too, and the
    /// first failed checks take them down).
    pub fn new(spec: &BackendSpec) -> Pool {
        let servers = spec
            .servers
            .iter()
            .map(|s| ServerState {
                spec: s.clone(),
                up: true,
                conns: 0,
                stats: ServerCounters::default(),
                removed: false,
                streak: 0,
                current: 0,
            })
            .collect();
        let mut p = Pool {
            algorithm: spec.algorithm,
            rise: spec.rise,
            fall: spec.fall,
            servers,
            table: None,
            table_map: Vec::new(),
            turn: 0,
        };
        p.rebuild();
        p
    }

    /// The servers, by index (removed ones included, flagged).
    pub fn servers(&self) -> &[ServerState] {
        &self.servers
    }

    /// Server `i`'s counters, to update.
    pub fn stats_mut(&mut self, i: usize) -> &mut ServerCounters {
        &mut self.servers[i].stats
    }

    /// Takes a connection slot on server `i` (a retry on the same server):
    /// `false` when it is not eligible or at `maxconn`.
    pub fn take(&mut self, i: usize) -> bool {
        if !self.eligible(i) || !self.room(i) {
            return false;
        }
        self.servers[i].conns += 1;
        true
    }

    /// Index of the server called `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.servers.iter().position(|s| !s.removed && s.spec.name == name)
    }

    fn eligible(&self, i: usize) -> bool {
        let s = &self.servers[i];
        s.up && !s.removed && !s.spec.drain && s.spec.weight > 0
    }

    fn room(&self, i: usize) -> bool {
        let s = &self.servers[i];
        s.spec.maxconn == 0 || s.conns < s.spec.maxconn
    }

    /// Rebuilds the Maglev table over the eligible servers (a control-plane
    /// step: after a health, weight, drain or membership change).
    fn rebuild(&mut self) {
        let Algorithm::Maglev { size, .. } = self.algorithm else { return };
        self.table_map = (0..self.servers.len()).filter(|&i| self.eligible(i)).collect();
        let names: Vec<&str> = self.table_map.iter().map(|&i| self.servers[i].spec.name.as_str()).collect();
        let weights: Vec<u32> = self.table_map.iter().map(|&i| self.servers[i].spec.weight).collect();
        self.table = Maglev::build(size, &names, &weights);
    }

    /// Picks a server for a client `src` connected to `dst`, skipping the
    /// servers in `exclude` (already tried).
    pub fn pick(&mut self, src: SocketAddr, dst: SocketAddr, exclude: &[usize]) -> Pick {
        let cands: Vec<usize> =
            (0..self.servers.len()).filter(|&i| self.eligible(i) && !exclude.contains(&i)).collect();
        if cands.is_empty() {
            return Pick::NoServer;
        }
        let chosen = match self.algorithm {
            Algorithm::Maglev { key, .. } => {
                let Some(t) = &self.table else { return Pick::NoServer };
                let k = flow_key(src, dst, key == crate::config::HashKey::FourTuple);
                let slot = t.slot(&k);
                // The entry's server, or the next entry's not excluded.
                let m = t.len();
                let found = (0..m).map(|d| self.table_map[t.entry((slot + d) % m)]).find(|i| !exclude.contains(i));
                match found {
                    Some(i) if self.room(i) => i,
                    Some(_) => return Pick::Full,
                    None => return Pick::NoServer,
                }
            }
            Algorithm::RoundRobin => {
                let with_room: Vec<usize> = cands.iter().copied().filter(|&i| self.room(i)).collect();
                if with_room.is_empty() {
                    return Pick::Full;
                }
                let total: i64 = with_room.iter().map(|&i| i64::from(self.servers[i].spec.weight)).sum();
                let mut best = with_room[0];
                for &i in &with_room {
                    self.servers[i].current += i64::from(self.servers[i].spec.weight);
                    if self.servers[i].current > self.servers[best].current {
                        best = i;
                    }
                }
                self.servers[best].current -= total;
                best
            }
            Algorithm::LeastConn => {
                let with_room: Vec<usize> = cands.iter().copied().filter(|&i| self.room(i)).collect();
                if with_room.is_empty() {
                    return Pick::Full;
                }
                let n = with_room.len();
                let start = self.turn % n;
                self.turn = self.turn.wrapping_add(1);
                let mut best = with_room[start];
                for d in 1..n {
                    let i = with_room[(start + d) % n];
                    let (a, b) = (&self.servers[i], &self.servers[best]);
                    // a.conns / a.w < b.conns / b.w
                    if (a.conns as u64) * u64::from(b.spec.weight) < (b.conns as u64) * u64::from(a.spec.weight) {
                        best = i;
                    }
                }
                best
            }
        };
        self.servers[chosen].conns += 1;
        Pick::Server(chosen)
    }

    /// A connection to server `i` ended (or its connect failed).
    pub fn release(&mut self, i: usize) {
        let s = &mut self.servers[i];
        s.conns = s.conns.saturating_sub(1);
    }

    /// A health result for server `i` (active check, or a data-path connect:
    /// `false` for a refused or timed-out connect). Returns the new state when
    /// it changed.
    pub fn report(&mut self, i: usize, ok: bool) -> Option<bool> {
        let (rise, fall) = (self.rise, self.fall);
        let s = &mut self.servers[i];
        if s.up == ok {
            s.streak = 0;
            return None;
        }
        s.streak += 1;
        let limit = if s.up { fall } else { rise };
        if s.streak < limit {
            return None;
        }
        s.up = ok;
        s.streak = 0;
        s.stats.downs += u64::from(!ok);
        self.rebuild();
        Some(ok)
    }

    /// Sets server `i` up or down at once (the runtime API, or a verdict
    /// broadcast from the core that runs the checks).
    pub fn set_up(&mut self, i: usize, up: bool) {
        let s = &mut self.servers[i];
        s.streak = 0;
        if s.up != up {
            s.up = up;
            s.stats.downs += u64::from(!up);
            self.rebuild();
        }
    }

    /// Sets server `i`'s weight (0..=256).
    pub fn set_weight(&mut self, i: usize, weight: u32) {
        self.servers[i].spec.weight = weight;
        self.servers[i].current = 0;
        self.rebuild();
    }

    /// Drains server `i` (no new connections) or ends its drain.
    pub fn set_drain(&mut self, i: usize, drain: bool) {
        self.servers[i].spec.drain = drain;
        self.rebuild();
    }

    /// Adds a server (up).
    pub fn add(&mut self, spec: ServerSpec) {
        self.servers.push(ServerState {
            spec,
            up: true,
            conns: 0,
            stats: ServerCounters::default(),
            removed: false,
            streak: 0,
            current: 0,
        });
        self.rebuild();
    }

    /// Removes server `i`: no new connections, open ones finish (and give
    /// their slot back to the same index, which is never reused).
    pub fn remove(&mut self, i: usize) {
        self.servers[i].removed = true;
        self.rebuild();
    }

    /// A reload: the algorithm, rise and fall of `spec`; its servers matched
    /// by name (one kept keeps its connections, counters and health and takes
    /// the new values; a new one starts up; one no longer listed is removed).
    pub fn reconfigure(&mut self, spec: &BackendSpec) {
        self.algorithm = spec.algorithm;
        self.rise = spec.rise;
        self.fall = spec.fall;
        for s in &spec.servers {
            match self.find(&s.name) {
                Some(i) => self.servers[i].spec = s.clone(),
                None => self.servers.push(ServerState {
                    spec: s.clone(),
                    up: true,
                    conns: 0,
                    stats: ServerCounters::default(),
                    removed: false,
                    streak: 0,
                    current: 0,
                }),
            }
        }
        for st in &mut self.servers {
            if !spec.servers.iter().any(|s| s.name == st.spec.name) {
                st.removed = true;
            }
        }
        for st in &mut self.servers {
            st.current = 0;
        }
        self.rebuild();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Check, HashKey, SendProxy};
    use std::time::Duration;

    fn spec(algorithm: Algorithm, weights: &[u32], maxconn: usize) -> BackendSpec {
        BackendSpec {
            name: "b".into(),
            algorithm,
            connect_timeout: Duration::from_secs(1),
            server_timeout: Duration::from_secs(1),
            tunnel_timeout: Duration::from_secs(1),
            queue_timeout: Duration::from_secs(1),
            retries: 1,
            redispatch: true,
            queue_max: 10,
            check: Check::Off,
            interval: Duration::from_secs(1),
            check_timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            servers: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| ServerSpec {
                    name: format!("s{i}"),
                    uri: String::new(),
                    addr: SocketAddr::new([198, 18, 2, i as u8 + 1].into(), 80),
                    weight: w,
                    maxconn,
                    send_proxy: SendProxy::Off,
                    drain: false,
                })
                .collect(),
        }
    }

    fn client(i: u32) -> SocketAddr {
        SocketAddr::new(std::net::Ipv4Addr::from(0xc612_0000 + i).into(), 40000)
    }

    const VIP: &str = "198.18.1.1:80";

    fn picks(p: &mut Pool, n: u32) -> Vec<usize> {
        (0..n)
            .map(|k| match p.pick(client(k), VIP.parse().unwrap(), &[]) {
                Pick::Server(i) => {
                    p.release(i);
                    i
                }
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn smooth_weighted_round_robin_interleaves_5_1_1_as_nginx_does() {
        let mut p = Pool::new(&spec(Algorithm::RoundRobin, &[5, 1, 1], 0));
        assert_eq!(picks(&mut p, 7), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(picks(&mut p, 7), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn roundrobin_follows_weights_over_3000_picks_and_maglev_within_5_percent_over_30000_flows() {
        // Round robin is exact; a hash is a sample (weight 1 of 6 over 3,000
        // flows has a standard deviation of 4 %), so Maglev gets 30,000.
        for (alg, n) in
            [(Algorithm::RoundRobin, 3000u32), (Algorithm::Maglev { size: 65537, key: HashKey::FourTuple }, 30_000)]
        {
            let mut p = Pool::new(&spec(alg, &[3, 2, 1], 0));
            let mut c = [0usize; 3];
            for k in 0..n {
                let src = SocketAddr::new(client(k / 8).ip(), 1024 + (k % 8) as u16);
                match p.pick(src, VIP.parse().unwrap(), &[]) {
                    Pick::Server(i) => c[i] += 1,
                    o => panic!("{o:?}"),
                }
            }
            for (i, w) in [3.0, 2.0, 1.0].iter().enumerate() {
                let want = f64::from(n) * w / 6.0;
                assert!((c[i] as f64 - want).abs() <= 0.05 * want, "{alg:?}: server {i} got {} of {want}", c[i]);
            }
        }
    }

    #[test]
    fn leastconn_takes_the_server_with_fewest_connections_per_weight() {
        let mut p = Pool::new(&spec(Algorithm::LeastConn, &[1, 2], 0));
        // Hold every connection: server 1 (weight 2) should carry twice as many.
        let mut c = [0; 2];
        for k in 0..30 {
            match p.pick(client(k), VIP.parse().unwrap(), &[]) {
                Pick::Server(i) => c[i] += 1,
                o => panic!("{o:?}"),
            }
        }
        assert_eq!(c, [10, 20]);
    }

    #[test]
    fn maxconn_full_servers_answer_full_and_a_release_frees_a_slot() {
        let mut p = Pool::new(&spec(Algorithm::RoundRobin, &[1, 1], 1));
        let vip = VIP.parse().unwrap();
        assert!(matches!(p.pick(client(1), vip, &[]), Pick::Server(_)));
        assert!(matches!(p.pick(client(2), vip, &[]), Pick::Server(_)));
        assert_eq!(p.pick(client(3), vip, &[]), Pick::Full);
        p.release(0);
        assert_eq!(p.pick(client(3), vip, &[]), Pick::Server(0));
    }

    #[test]
    fn maglev_keeps_a_source_on_its_server_and_redispatch_skips_the_excluded_one() {
        let mut p = Pool::new(&spec(Algorithm::Maglev { size: 65537, key: HashKey::Source }, &[1, 1, 1], 0));
        let vip = VIP.parse().unwrap();
        let a = client(7);
        let Pick::Server(first) = p.pick(a, vip, &[]) else { panic!() };
        for port in 1..50 {
            let Pick::Server(i) = p.pick(SocketAddr::new(a.ip(), port), vip, &[]) else { panic!() };
            assert_eq!(i, first, "the source hash ignores the port");
        }
        let Pick::Server(other) = p.pick(a, vip, &[first]) else { panic!() };
        assert_ne!(other, first);
        assert_eq!(p.pick(a, vip, &[0, 1, 2]), Pick::NoServer);
    }

    #[test]
    fn maglev_keeps_every_source_on_its_server_across_a_reload_that_does_not_touch_it() {
        let alg = Algorithm::Maglev { size: 65537, key: HashKey::Source };
        let mut p = Pool::new(&spec(alg, &[1, 1, 1], 0));
        let vip = VIP.parse().unwrap();
        let before: Vec<Pick> = (0..1000).map(|k| p.pick(client(k), vip, &[])).collect();
        let mut next = spec(alg, &[1, 1, 1], 0);
        next.connect_timeout = Duration::from_secs(9);
        next.fall = 7;
        p.reconfigure(&next);
        let after: Vec<Pick> = (0..1000).map(|k| p.pick(client(k), vip, &[])).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn a_server_goes_down_after_fall_failures_and_up_after_rise_successes() {
        let mut p = Pool::new(&spec(Algorithm::RoundRobin, &[1, 1], 0));
        assert_eq!(p.report(0, false), None);
        assert_eq!(p.report(0, false), None);
        assert_eq!(p.report(0, false), Some(false), "fall = 3");
        assert!(picks(&mut p, 10).iter().all(|&i| i == 1));
        assert_eq!(p.report(0, true), None);
        assert_eq!(p.report(0, false), None, "a failure while down resets the rise streak");
        assert_eq!(p.report(0, true), None);
        assert_eq!(p.report(0, true), Some(true), "rise = 2");
        assert!(picks(&mut p, 10).contains(&0));
    }

    #[test]
    fn drain_weight_zero_and_remove_take_no_new_connections_and_keep_open_ones_counted() {
        let mut p = Pool::new(&spec(Algorithm::Maglev { size: 65537, key: HashKey::Source }, &[1, 1, 1], 0));
        let vip = VIP.parse().unwrap();
        let Pick::Server(held) = p.pick(client(1), vip, &[]) else { panic!() };
        p.set_drain(held, true);
        assert!(!picks(&mut p, 200).contains(&held));
        let name = p.servers()[held].spec.name.clone();
        p.remove(held);
        assert_eq!(p.find(&name), None);
        assert_eq!(p.servers()[held].conns, 1, "its open connection still counts");
        p.release(held);
        assert_eq!(p.servers()[held].conns, 0);
        p.set_weight(0, 0);
        assert!(picks(&mut p, 200).iter().all(|&i| i == 1));
        p.set_up(1, false);
        assert_eq!(p.pick(client(1), vip, &[]), Pick::NoServer);
    }
}
