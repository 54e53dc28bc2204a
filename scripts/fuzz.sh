#!/usr/bin/env bash
# scripts/fuzz.sh NAME [SECONDS]: runs the cargo-fuzz target NAME (found in
# whichever fuzz/ directory of the repository declares it) for SECONDS
# (default 60; 0 runs until stopped), starting from its committed seed
# corpus (fuzz/seeds/NAME, read-only) and a working corpus (fuzz/corpus/NAME,
# ignored by git, kept between runs).
#
# scripts/fuzz.sh --list          prints every target, one per line.
#
# Installs cargo-fuzz with `cargo install` on first use. The nightly toolchain
# is needed (`cargo +nightly`): libFuzzer's coverage instrumentation and the
# AddressSanitizer (FUZZ_SANITIZER=address, the default; `none` is faster,
# and enough for code without `unsafe`).
#
# A crash (panic, failed invariant, sanitizer report, leak, timeout) exits
# non-zero after printing the input as hex and the command that replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every directory holding a cargo-fuzz crate.
fuzz_dirs() {
    for d in stack/fuzz pmd/fuzz flow/fuzz apps/loadbalancer/fuzz; do
        [[ -f $d/Cargo.toml ]] && echo "$d"
    done
}

targets_of() {
    sed -n 's/^name = "\(.*\)"$/\1/p' "$1/Cargo.toml" | grep -vx -- "$(sed -n '0,/^name = /s/^name = "\(.*\)"$/\1/p' "$1/Cargo.toml")"
}

if [[ ${1:-} == --list ]]; then
    for d in $(fuzz_dirs); do targets_of "$d"; done
    exit 0
fi

name="${1:?usage: scripts/fuzz.sh NAME [SECONDS] (scripts/fuzz.sh --list names them)}"
seconds="${2:-60}"
[[ $seconds =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2; }

dir=""
for d in $(fuzz_dirs); do
    if targets_of "$d" | grep -qx -- "$name"; then dir="$d"; fi
done
[[ -n $dir ]] || { echo "fuzz.sh: no fuzz target named '$name' (scripts/fuzz.sh --list)" >&2; exit 2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz (cargo install cargo-fuzz)"
    cargo install --locked cargo-fuzz
fi

crate_dir="$dir/.."
mkdir -p "$dir/corpus/$name" "$dir/seeds/$name"
rm -rf "$dir/artifacts/$name"
set +e
(cd "$crate_dir" && cargo +nightly fuzz run -s "${FUZZ_SANITIZER:-address}" "$name" \
    "fuzz/corpus/$name" "fuzz/seeds/$name" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1)
rc=$?
set -e
if [[ $rc != 0 ]]; then
    for f in "$dir"/artifacts/"$name"/*; do
        [[ -f $f ]] || continue
        echo "fuzz.sh: $name failed on $f ($(wc -c <"$f") bytes):"
        od -An -tx1 -v "$f" | head -64
        echo "fuzz.sh: replay with: (cd $crate_dir && cargo +nightly fuzz run -s ${FUZZ_SANITIZER:-address} $name fuzz/artifacts/$name/$(basename "$f"))"
    done
    exit "$rc"
fi
