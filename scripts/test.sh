#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints (warnings are errors),
# and every test of every crate, including the DPDK binding's (root).
# Installs the system packages it needs on first use (scripts/packages.txt).
#
# Every stage runs even when an earlier one failed (a failing test must not
# hide the DPDK results); the script ends with one line per stage and exits
# non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

stages=()
failed=()
# stage NAME COMMAND...: runs COMMAND, records whether it passed.
stage() {
    local name="$1"
    shift
    echo "== $name"
    local t0=$SECONDS
    if "$@"; then
        stages+=("PASS  $name ($((SECONDS - t0)) s)")
    else
        local rc=$?
        stages+=("FAIL  $name ($((SECONDS - t0)) s, exit $rc)")
        failed+=("$name")
    fi
}

nextest=0
cargo nextest --version >/dev/null 2>&1 && nextest=1

unit_and_integration() {
    if [[ $nextest == 1 ]]; then
        cargo nextest run --workspace --locked --no-fail-fast
    else
        cargo test --workspace --locked --no-fail-fast
    fi
}

# dpdk-sys: its doc comments are DPDK's C snippets (doctest = false in its
# Cargo.toml, which an explicit --doc overrides).
doc_tests() {
    cargo test --workspace --locked --doc --exclude dpdk-sys
}

# The DPDK driver (root: EAL, hugepages, namespaces; each EAL user is its own
# process). Tests run one at a time and share the two cores, so they run
# single-threaded to keep timings sane. Only what the feature changes runs
# again: the dpdk driver's own unit tests, the port registry's (it gains the
# dpdk: scheme), and testpmd's dpdk_* and CLI tests (the binary gains --eal);
# every other test ran above, once.
dpdk_tests() {
    if [[ $nextest == 1 ]]; then
        cargo nextest run -p pmd -p testpmd --features testpmd/dpdk --locked --no-fail-fast --test-threads=1 \
            -E '(package(pmd) & kind(lib) & (test(/^drivers::dpdk::/) | test(/^registry::/))) | (package(pmd) & binary(/^dpdk_/)) | (package(testpmd) & (binary(/^dpdk_/) | binary(testpmd_cli)))'
    else
        cargo test -p pmd --features dpdk --locked --no-fail-fast --lib -- --test-threads=1 drivers::dpdk:: registry:: &&
            cargo test -p pmd --features dpdk --locked --no-fail-fast --test dpdk_zero_copy -- --test-threads=1 &&
            cargo test -p pmd --features dpdk --locked --no-fail-fast --test dpdk_rss -- --test-threads=1 &&
            for t in dpdk_peers dpdk_testpmd testpmd_cli; do
                cargo test -p testpmd --features dpdk --locked --no-fail-fast --test "$t" -- --test-threads=1 || return 1
            done
    fi
}

stage "setup (scripts/setup.sh test)" scripts/setup.sh test
stage "cargo fmt --check" cargo fmt --all --check
stage "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
stage "cargo clippy --features dpdk" cargo clippy -p pmd -p testpmd --features testpmd/dpdk --all-targets --locked -- -D warnings
stage "tests" unit_and_integration
stage "doc tests" doc_tests
stage "tests: --features dpdk" dpdk_tests
# The fuzz targets are their own workspace (cargo-fuzz): they must still build
# against the stack, from their committed lock file.
fuzz_build() {
    local d rc=0
    for d in stack/fuzz apps/loadbalancer/fuzz; do
        cargo check --locked --bins --manifest-path "$d/Cargo.toml" || rc=1
    done
    return $rc
}
stage "fuzz targets build (stack/fuzz, apps/loadbalancer/fuzz)" fuzz_build

# Every fuzz target (scripts/fuzz.sh --list) for a bounded time on its
# committed seed corpus: FUZZ_BUDGET seconds (default 240) split evenly, at
# least 20 s each, so the stage (with its nightly build) stays within ~8
# minutes of CI's 2 cores. A crash fails the stage; scripts/fuzz.sh prints the
# input and its replay command. cargo-fuzz is installed on first use, as
# scripts/setup.sh installs the Debian packages.
fuzz_stage() {
    cargo fuzz --version >/dev/null 2>&1 || cargo install --locked cargo-fuzz || return 1
    local targets n each rc=0
    mapfile -t targets < <(scripts/fuzz.sh --list)
    n=${#targets[@]}
    each=$(( ${FUZZ_BUDGET:-240} / (n > 0 ? n : 1) ))
    (( each < 20 )) && each=20
    for t in "${targets[@]}"; do
        echo "-- fuzz $t (${each} s)"
        local log="target/fuzz-$t.log"
        mkdir -p target
        if scripts/fuzz.sh "$t" "$each" >"$log" 2>&1; then
            grep -E '^(Done|stat::number_of_executed_units|#[0-9]+ +DONE)' "$log"
        else
            tail -n 80 "$log"
            echo "-- fuzz $t FAILED (whole log: $log)"
            rc=1
        fi
    done
    return $rc
}
stage "fuzz (every target, bounded)" fuzz_stage

# pmd's unsafe core (Mbuf, Mempool and caches, SPSC ring, ring driver,
# virtio-user vring bookkeeping) under AddressSanitizer (nightly) and valgrind.
stage "AddressSanitizer (pmd unsafe core)" scripts/sanitize.sh asan
# valgrind over the same tests took 11 min on this machine (over the budget
# CI leaves it); until the slow tests are narrowed it runs on request:
# VALGRIND=1 scripts/test.sh, or scripts/sanitize.sh valgrind.
if [[ "${VALGRIND:-0}" == 1 ]]; then
    stage "valgrind (pmd unsafe core)" scripts/sanitize.sh valgrind
fi

echo
echo "== summary"
printf '%s\n' "${stages[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "test.sh: ${#failed[@]} of ${#stages[@]} stages failed: $(printf '%s; ' "${failed[@]}" | sed 's/; $//')"
    exit 1
fi
echo "test.sh: all ${#stages[@]} stages passed"
