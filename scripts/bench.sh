#!/usr/bin/env bash
# Runs one benchmark: scripts/bench.sh NAME
# Builds in release mode, runs bench/src/bin/NAME.rs, which measures our code and
# its peer in the same run and writes bench/results/NAME.{md,json,svg}.
set -euo pipefail
cd "$(dirname "$0")/.."

name="${1:-}"
available=$(ls bench/src/bin/*.rs 2>/dev/null | xargs -n1 basename | sed 's/\.rs$//' | tr '\n' ' ')
if [[ -z "$name" ]]; then
    echo "usage: scripts/bench.sh NAME   (benchmarks: $available)" >&2
    exit 2
fi
if [[ ! -f "bench/src/bin/$name.rs" ]]; then
    echo "scripts/bench.sh: unknown benchmark '$name' (benchmarks: $available)" >&2
    exit 2
fi

scripts/setup.sh bench
features=()
# Benchmarks of the DPDK driver need our testpmd built with it.
[[ "$name" == dpdk_* ]] && features=(--features pmd/dpdk)
cargo build --release --workspace --bins "${features[@]}"
# Honour CARGO_TARGET_DIR (shared machines build out of tree).
target="${CARGO_TARGET_DIR:-target}"
export TESTPMD="${TESTPMD:-$target/release/testpmd}"
exec "$target"/release/"$name"
