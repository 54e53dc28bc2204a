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
stage "fuzz targets build (stack/fuzz)" cargo check --locked --manifest-path stack/fuzz/Cargo.toml

echo
echo "== summary"
printf '%s\n' "${stages[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "test.sh: ${#failed[@]} of ${#stages[@]} stages failed: $(printf '%s; ' "${failed[@]}" | sed 's/; $//')"
    exit 1
fi
echo "test.sh: all ${#stages[@]} stages passed"
