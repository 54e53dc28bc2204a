#!/usr/bin/env bash
# Installs the Debian packages a stage needs, once: scripts/setup.sh test|bench
#   test:  the build (DPDK, bindgen), the tests, their helpers and scripts
#   bench: the above plus the peers the benchmarks measure against
# The packages, and which test needs each, are listed in scripts/packages.txt:
# it is the one list.
set -euo pipefail
cd "$(dirname "$0")"

stage="${1:-test}"
case "$stage" in
    test | bench) ;;
    *) echo "setup.sh: unknown stage '$stage' (test or bench)" >&2; exit 2 ;;
esac

want=()
while read -r pkg pstage _; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    case "$pstage" in
        test) want+=("$pkg") ;;
        bench) [[ "$stage" == bench ]] && want+=("$pkg") ;;
        *) echo "setup.sh: packages.txt: '$pkg' has unknown stage '$pstage'" >&2; exit 2 ;;
    esac
done < packages.txt

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
# Another apt (a second setup.sh, unattended upgrades) may hold the lock: wait
# for it rather than fail.
lock=(-o DPkg::Lock::Timeout=600)
$SUDO apt-get "${lock[@]}" update -qq
$SUDO apt-get "${lock[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
