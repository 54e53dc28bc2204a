//! `scripts/bench.sh pmd_fwd`: our `testpmd --fwd io` on `null` and on a `ring`
//! loopback against `dpdk-testpmd` with `--vdev net_null0` and `--vdev net_ring0`
//! (both seeded with one burst, `--tx-first`), io mode, one forwarding core,
//! in the same run. The procedure is [`bench::io_fwd`]'s.
//!
//! `io/ring` runs our ring with `checks=none`, which is `net_ring`'s contract
//! (no MTU enforcement, no byte counters: only handles move); `io/ring
//! (checks=full)`, our default, adds both and is reported next to it.

use bench::io_fwd::{run, Case, IoFwd};

const CASES: [Case; 3] = [
    Case { name: "io/null", ours_port: "null", vdev: "net_null0", tx_first: false },
    Case { name: "io/ring", ours_port: "ring:bench0?checks=none", vdev: "net_ring0", tx_first: true },
    Case { name: "io/ring (checks=full)", ours_port: "ring:bench0", vdev: "net_ring0", tx_first: true },
];

fn main() {
    run(&IoFwd {
        name: "pmd_fwd",
        cases: &CASES,
        ours_extra: |_| Vec::new(),
        plot_title: "io forwarding, one core: per-second rate (rounds concatenated)",
        md_intro: |rounds, secs| {
            format!(
                "# pmd_fwd: io forwarding on one core, ours vs dpdk-testpmd\n\n\
                 Median of per-second forwarding rates (p10–p90 in brackets), Mpps; \
                 {rounds} alternating rounds of {secs} s per side, first second of each dropped."
            )
        },
        ours_column: "ours (testpmd)",
        md_commands: |core, _| {
            format!(
                "- ours: `target/release/testpmd --port null|ring:bench0[?checks=none] --fwd io --cores {core} --burst 32 \
                 --stats-period 1 --json [--record-core-cycles] [--tx-first]`\n\
                 - peer: `dpdk-testpmd -l M,{core} --no-huge -m 1024 --no-pci --vdev net_null0|net_ring0 -- \
                 --forward-mode=io --nb-cores=1 --burst=32 --stats-period 1 --auto-start --total-num-mbufs=16384 [--record-core-cycles] \
                 [--tx-first]`\n"
            )
        },
    });
}
