#!/usr/bin/env bash
# Installs the Debian packages a task needs, once: scripts/setup.sh test|bench
#   test:  what the test suite needs (DPDK headers for dpdk-sys, libclang for
#          bindgen, iproute2/ping/tcpdump/tshark/socat/python3(-scapy) for the
#          kernel-peer tests over scripts/testbed.sh; nc and curl for TCP;
#          sockperf against the echo server)
#   bench: the above plus the peers benchmarks measure against (dpdk-testpmd)
set -euo pipefail

# dpdk: dpdk-testpmd, the vhost peer of the DPDK driver's tests.
want=(pkg-config libdpdk-dev libclang-dev iproute2 iputils-ping tcpdump tshark socat netcat-openbsd curl python3 python3-scapy dpdk sockperf)

if [[ "${1:-test}" == bench ]]; then
    want+=(dpdk-dev coreutils)
fi

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
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
