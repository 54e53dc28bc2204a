//! A simulated network for the stack's integration tests: stacks over `ring:`
//! ports in virtual time. Port names must be unique per test (they share a
//! process-wide registry), so every helper takes a prefix.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use pmd::{Clock, Mbuf, Mempool, MempoolConfig, OpenEnv, Port, PortConfig, RxQueue, TxOffloads, TxQueue, VirtualClock};
use stack::StackConfig;

pub type Dyn = stack::DynDriver;

pub const POOL: usize = 4096;

pub fn pool(name: &str) -> Mempool {
    Mempool::new(&MempoolConfig::new(name, POOL, 2048, 128, 0)).expect("pool")
}

/// A test configuration for a host with the given addresses.
pub fn config(mac: pmd::MacAddr, v4: &[&str], v6: &[&str]) -> StackConfig {
    StackConfig {
        ipv4: v4.iter().map(|s| s.parse().unwrap()).collect(),
        ipv6: v6.iter().map(|s| s.parse().unwrap()).collect(),
        ..stack::profiles::sim(mac)
    }
}

/// One end: a port (kept open), and the queues it handed out.
pub struct End {
    pub port: Box<dyn Port>,
    pub rx: Option<Box<dyn RxQueue>>,
    pub tx: Option<Box<dyn TxQueue>>,
}

pub fn open(spec: &str, pool: &Mempool, clock: &VirtualClock) -> End {
    open_offloads(spec, pool, clock, TxOffloads::empty())
}

/// The checksum offloads of `ring:..?csum=1`.
pub const CSUM: TxOffloads = TxOffloads::IPV4_CKSUM.union(TxOffloads::TCP_CKSUM).union(TxOffloads::UDP_CKSUM);

pub fn open_offloads(spec: &str, pool: &Mempool, clock: &VirtualClock, offloads: TxOffloads) -> End {
    let env = OpenEnv { clock: Arc::new(clock.clone()) };
    let mut port = pmd::open_with(spec, &env).unwrap_or_else(|e| panic!("{spec}: {e}"));
    let mut pc = PortConfig::new(1, 1, 4096, 4096, pool.clone());
    pc.tx_offloads = offloads;
    port.configure(&pc).expect("configure");
    port.start().expect("start");
    let rx = port.take_rx_queue(0).expect("rxq");
    let tx = port.take_tx_queue(0).expect("txq");
    End { port, rx: Some(rx), tx: Some(tx) }
}

/// Two stacks, `a` and `b`, on a wire.
pub struct Pair {
    pub clock: VirtualClock,
    pub pool: Mempool,
    pub a: Dyn,
    pub b: Dyn,
    // Ports last: dropped after the stacks.
    pub ports: Vec<End>,
}

pub const A4: &str = "198.18.0.1/24";
pub const B4: &str = "198.18.0.2/24";
pub const A6: &str = "2001:2::1/64";
pub const B6: &str = "2001:2::2/64";

pub fn a4() -> Ipv4Addr {
    "198.18.0.1".parse().unwrap()
}
pub fn b4() -> Ipv4Addr {
    "198.18.0.2".parse().unwrap()
}
pub fn a6() -> Ipv6Addr {
    "2001:2::1".parse().unwrap()
}
pub fn b6() -> Ipv6Addr {
    "2001:2::2".parse().unwrap()
}

impl Pair {
    /// `opts_a`/`opts_b` are extra spec options (impairment) for each side.
    pub fn new(name: &str, opts_a: &str, opts_b: &str) -> Pair {
        Self::with(name, opts_a, opts_b, |_| {}, |_| {})
    }

    pub fn with(
        name: &str,
        opts_a: &str,
        opts_b: &str,
        fa: impl FnOnce(&mut StackConfig),
        fb: impl FnOnce(&mut StackConfig),
    ) -> Pair {
        Self::build(name, opts_a, opts_b, TxOffloads::empty(), fa, fb)
    }

    /// Two stacks on a `csum=1` wire with every checksum offload enabled
    /// (as Linux loopback: TCP and UDP checksums left partial and trusted).
    pub fn csum(name: &str, opts_a: &str, opts_b: &str) -> Pair {
        Self::build(name, &format!("&csum=1{opts_a}"), &format!("&csum=1{opts_b}"), CSUM, |_| {}, |_| {})
    }

    fn build(
        name: &str,
        opts_a: &str,
        opts_b: &str,
        offloads: TxOffloads,
        fa: impl FnOnce(&mut StackConfig),
        fb: impl FnOnce(&mut StackConfig),
    ) -> Pair {
        let clock = VirtualClock::new();
        let pool = pool(name);
        let (na, nb) = (format!("{name}_a"), format!("{name}_b"));
        let mut ea = open_offloads(&format!("ring:{na}?peer={nb}{opts_a}"), &pool, &clock, offloads);
        let mut eb = open_offloads(&format!("ring:{nb}?peer={na}{opts_b}"), &pool, &clock, offloads);
        let mut ca = config(ea.port.info().mac, &[A4], &[A6]);
        let mut cb = config(eb.port.info().mac, &[B4], &[B6]);
        ca.tx_offloads = offloads;
        cb.tx_offloads = offloads;
        fa(&mut ca);
        fb(&mut cb);
        let ck: Arc<dyn pmd::Clock> = Arc::new(clock.clone());
        let a = stack::Driver::new(ca, ea.rx.take().unwrap(), ea.tx.take().unwrap(), pool.clone(), ck.clone()).unwrap();
        let b = stack::Driver::new(cb, eb.rx.take().unwrap(), eb.tx.take().unwrap(), pool.clone(), ck).unwrap();
        Pair { clock, pool, a, b, ports: vec![ea, eb] }
    }

    /// Runs both stacks for `d` of virtual time in steps of `step`, calling
    /// `app` after every step.
    pub fn run_with(&mut self, d: Duration, step: Duration, mut app: impl FnMut(&mut Dyn, &mut Dyn)) {
        let end = self.clock.now_ns() + d.as_nanos() as u64;
        while self.clock.now_ns() < end {
            self.clock.advance_ns(step.as_nanos() as u64);
            self.a.poll();
            self.b.poll();
            app(&mut self.a, &mut self.b);
        }
    }

    pub fn run(&mut self, d: Duration) {
        self.run_with(d, Duration::from_micros(100), |_, _| {});
    }

    /// Drops everything and asserts every buffer went home.
    pub fn finish(self) {
        let Pair { pool, a, b, ports, clock } = self;
        drop(a);
        drop(b);
        drop(ports);
        drop(clock);
        assert_eq!(pool.available(), POOL, "mbufs leaked");
    }
}

/// A stack wired to a bare port the test drives by hand (`probe`): frames the
/// stack sends arrive at `probe.rx`; frames sent on `probe.tx` reach the stack.
pub struct Probe {
    pub clock: VirtualClock,
    pub pool: Mempool,
    pub s: Dyn,
    pub probe: End,
    pub mac: pmd::MacAddr,
    pub ports: Vec<End>,
}

pub const PROBE_MAC: pmd::MacAddr = pmd::MacAddr([0x02, 0xaa, 0, 0, 0, 0x01]);

impl Probe {
    pub fn new(name: &str, f: impl FnOnce(&mut StackConfig)) -> Probe {
        let clock = VirtualClock::new();
        let pool = pool(name);
        let (ns, np) = (format!("{name}_s"), format!("{name}_p"));
        let mut es = open(&format!("ring:{ns}?peer={np}"), &pool, &clock);
        let probe = open(&format!("ring:{np}?peer={ns}&mac=02:aa:00:00:00:01"), &pool, &clock);
        let mac = es.port.info().mac;
        let mut c = config(mac, &[B4], &[B6]);
        f(&mut c);
        let s =
            stack::Driver::new(c, es.rx.take().unwrap(), es.tx.take().unwrap(), pool.clone(), Arc::new(clock.clone()))
                .unwrap();
        Probe { clock, pool, s, probe, mac, ports: vec![es] }
    }

    /// Sends frames from the probe to the stack and lets it poll.
    pub fn send(&mut self, frames: Vec<Vec<u8>>) {
        let mut v: Vec<Mbuf> = frames
            .into_iter()
            .map(|f| {
                let mut m = self.pool.alloc().unwrap();
                m.extend_from_slice(&f).unwrap();
                m
            })
            .collect();
        while !v.is_empty() {
            self.probe.tx.as_mut().unwrap().tx_burst(&mut v);
            self.s.poll();
        }
        self.s.poll();
    }

    /// Frames the stack has sent so far (as bytes; the buffers are freed).
    pub fn sent(&mut self) -> Vec<Vec<u8>> {
        self.s.poll();
        let mut v = Vec::new();
        self.probe.rx.as_mut().unwrap().rx_burst(&mut v, 1 << 16);
        v.iter().map(|m| m.data().to_vec()).collect()
    }

    pub fn finish(self) {
        let Probe { pool, s, probe, ports, .. } = self;
        drop(s);
        drop(probe);
        drop(ports);
        assert_eq!(pool.available(), POOL, "mbufs leaked");
    }
}
