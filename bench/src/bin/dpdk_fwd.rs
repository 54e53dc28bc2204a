//! `scripts/bench.sh dpdk_fwd`: the cost of our Rust layer over DPDK. Our
//! `testpmd --fwd io` over `dpdk:` ports (zero-copy `Mbuf`s over DPDK's
//! `rte_mbuf`s, the Port trait, our forwarding engine and runtime) against
//! DPDK's own `dpdk-testpmd` in io mode on the same vdevs, one forwarding core
//! each, on the same core, in the same run:
//! * `io/net_null0`: `dpdk:net_null0?checks=none` vs `--vdev net_null0`;
//! * `io/net_ring0`: `dpdk:net_ring0?checks=none` vs `--vdev net_ring0`, both
//!   seeded with one burst (`--tx-first`);
//! * the same two with `checks=full` (our default): MTU enforced on transmit
//!   and exact per-queue byte counters, which cost a read of every frame's
//!   header line that DPDK's io forwarding never does. `checks=none` does the
//!   same work as DPDK's io, so it is the like-for-like headline: the handles
//!   a DPDK receive queue wrote go to the transmit queue as a `Received`
//!   burst, whose type proves they are `rte_mbuf`s, so not even the address
//!   check memory safety otherwise needs is run; and with every port `dpdk:`,
//!   our testpmd runs its engine over the concrete queue types (no dynamic
//!   call per burst, see `testpmd::fwd`).
//!
//! Both sides run EAL without hugepages (`--no-huge -m 1024 --no-pci`), the
//! main lcore on another core than the forwarding one. Each side runs `ROUNDS`
//! times, alternating, for `SECS` seconds; both report a forwarding rate every
//! second, the first second is dropped as warm-up, and the per-second samples
//! go into an hdrhistogram. The headline is the median per-second rate; the
//! target is ours >= 0.95 x dpdk-testpmd.
//!
//! Environment: `BENCH_ROUNDS` (default 3), `BENCH_SECS` (default 6),
//! `BENCH_CORE` (forwarding core, default the last available), `TESTPMD` (our
//! binary built with `--features dpdk`, default `target/release/testpmd`),
//! `DPDK_TESTPMD` (default `dpdk-testpmd`).

use bench::io_fwd::{run, Case, IoFwd};

const CASES: [Case; 4] = [
    Case { name: "io/net_null0", ours_port: "dpdk:net_null0?checks=none", vdev: "net_null0", tx_first: false },
    Case { name: "io/net_ring0", ours_port: "dpdk:net_ring0?checks=none", vdev: "net_ring0", tx_first: true },
    Case { name: "io/net_null0 (checks=full)", ours_port: "dpdk:net_null0", vdev: "net_null0", tx_first: false },
    Case { name: "io/net_ring0 (checks=full)", ours_port: "dpdk:net_ring0", vdev: "net_ring0", tx_first: true },
];

fn main() {
    run(&IoFwd {
        name: "dpdk_fwd",
        cases: &CASES,
        ours_extra: |main_core| {
            vec![
                "--eal".into(),
                format!(
                    "-l {main_core} --no-huge -m 1024 --no-pci --no-shconf --no-telemetry --file-prefix bench-ours-{} \
                     --log-level=lib.eal:error",
                    std::process::id()
                ),
            ]
        },
        plot_title: "io forwarding over DPDK vdevs, one core: per-second rate (rounds concatenated)",
        md_intro: |rounds, secs| {
            format!(
                "# dpdk_fwd: io forwarding over DPDK vdevs on one core, our testpmd vs dpdk-testpmd\n\n\
                 What the Rust layer (zero-copy Mbufs over rte_mbufs, Port trait, forwarding engine) costs on \
                 top of DPDK. Median of per-second forwarding rates (p10–p90 in brackets), Mpps; \
                 {rounds} alternating rounds of {secs} s per side, first second of each dropped. Target: ratio >= 0.95. \
                 The headline rows use `checks=none` (the same per-frame work as DPDK's io: none; received \
                 bursts go to the transmit queue as a `Received`, whose type proves the handles are \
                 `rte_mbuf`s, and the engine runs over the concrete DPDK queue types); the `checks=full` \
                 rows (our default: MTU enforcement and byte counters) read every frame's header line, \
                 which DPDK's io never does."
            )
        },
        ours_column: "ours (testpmd, dpdk:)",
        md_commands: |core, main_core| {
            format!(
                "- EAL main lcore {main_core} on both sides.\n\
                 - ours: `target/release/testpmd --port dpdk:net_null0|dpdk:net_ring0[?checks=none] --fwd io --cores {core} --burst 32 \
                 --stats-period 1 --json [--record-core-cycles] [--tx-first] --eal \"-l M --no-huge -m 1024 --no-pci --no-shconf --no-telemetry\"` \
                 (built with `--features dpdk`)\n\
                 - peer: `dpdk-testpmd -l M,{core} --no-huge -m 1024 --no-pci --vdev net_null0|net_ring0 -- \
                 --forward-mode=io --nb-cores=1 --burst=32 --stats-period 1 --auto-start --total-num-mbufs=16384 [--record-core-cycles] \
                 [--tx-first]`\n"
            )
        },
    });
}
