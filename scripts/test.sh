#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints (warnings are errors),
# and every test of every crate, including the DPDK binding's (root).
# Installs the system packages it needs on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh test

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p pmd --features dpdk --all-targets --locked -- -D warnings
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    # dpdk-sys: its doc comments are DPDK's C snippets (doctest = false in its
    # Cargo.toml, which an explicit --doc overrides).
    cargo test --workspace --locked --doc --exclude dpdk-sys
else
    cargo test --workspace --locked --no-fail-fast
fi
# The DPDK driver (root: EAL, hugepages, namespaces; each EAL user is its own
# process). Tests run one at a time and share the two cores, so they run
# single-threaded to keep timings sane. With nextest, only what the feature
# changes runs again: the library's unit tests (the driver's own among them),
# the dpdk_* test binaries and the testpmd CLI tests; everything else ran above.
echo "== tests: pmd --features dpdk"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run -p pmd --features dpdk --locked --no-fail-fast --test-threads=1 \
        -E 'kind(lib) | binary(/^dpdk_/) | binary(testpmd_cli)'
else
    cargo test -p pmd --features dpdk --locked --no-fail-fast -- --test-threads=1
fi
