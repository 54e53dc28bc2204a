#!/usr/bin/env bash
# Runs one benchmark: scripts/bench.sh NAME [ARGS..] (e.g. scale --cores 1,2,4,8)
# Builds in release mode, runs bench/src/bin/NAME.rs, which measures our code and
# its peer in the same run and writes bench/results/NAME.{md,json,svg}.
set -euo pipefail
cd "$(dirname "$0")/.."

name="${1:-}"
# Benchmarks that are a subcommand of an application (`echo bench`).
app_benches="echo"
# Benchmarks whose driver binary has another name (`lb`'s would collide with
# the `lb` it measures): NAME -> bench/src/bin/NAME_bench.rs.
renamed_benches="lb"
available="$(ls bench/src/bin/*.rs 2>/dev/null | xargs -n1 basename | sed 's/\.rs$//; s/_bench$//' | tr '\n' ' ')$app_benches"
if [[ -z "$name" ]]; then
    echo "usage: scripts/bench.sh NAME   (benchmarks: $available)" >&2
    exit 2
fi
is_app=0
[[ " $app_benches " == *" $name "* ]] && is_app=1
driver="$name"
[[ " $renamed_benches " == *" $name "* ]] && driver="${name}_bench"
if [[ $is_app == 0 && ! -f "bench/src/bin/$driver.rs" ]]; then
    echo "scripts/bench.sh: unknown benchmark '$name' (benchmarks: $available)" >&2
    exit 2
fi

scripts/setup.sh bench
features=()
# Benchmarks of the DPDK driver need our testpmd built with it.
[[ "$name" == dpdk_* ]] && features=(--features testpmd/dpdk)
cargo build --release --workspace --bins "${features[@]}"
# Honour CARGO_TARGET_DIR (shared machines build outside the work tree); the
# benchmark finds our testpmd through TESTPMD.
bin="${CARGO_TARGET_DIR:-target}/release"
export TESTPMD="${TESTPMD:-$bin/testpmd}"
if [[ $is_app == 1 ]]; then
    exec "$bin/$name" bench "${@:2}"
fi
exec "$bin/$driver" "${@:2}"
