#!/usr/bin/env bash
# Network-namespace testbed for tests whose peer is the Linux kernel.
#
#   scripts/testbed.sh up NAME [--tap] [--quiet] [--tap-mac MAC]
#   scripts/testbed.sh down NAME [NAME...]
#   scripts/testbed.sh show NAME
#
# `up NAME` makes network namespace NAME holding (and nothing outside it):
#
#   k0 <== veth ==> p0      k0: the kernel's end, 198.18.0.2/24 and 2001:2::2/64
#                           p0: the end our PMD owns (af_packet:p0), no addresses,
#                               IPv6 off, so the kernel never sends from it
#   t0 (with --tap)         persistent TAP (multi_queue, vnet_hdr) our tap:t0 port
#                           attaches to; kernel side 198.18.1.2/24, 2001:2:0:1::2/64
#
# The PMD's addresses are 198.18.0.1 / 2001:2::1 (behind k0) and 198.18.1.1 /
# 2001:2:0:1::1 (behind t0); they have permanent neighbour entries (p0's MAC, and
# --tap-mac, default 02:00:00:00:01:01, for the tap port), so the kernel sends to
# them without ARP/NDP. --quiet turns IPv6 off in the whole namespace (no router
# solicitations, MLD or DAD), for tests that count every frame. Run the PMD inside
# the namespace: `ip netns exec NAME testpmd --port af_packet:p0 ...`.
#
# Only 198.18.0.0/15 (RFC 2544) and 2001:2::/48 (RFC 5180) are used. `up` is
# idempotent; `down` removes the namespace and everything in it and succeeds if it
# is already gone. Callers (tests) pick unique NAMEs and always call `down`.
set -euo pipefail

usage() {
    sed -n '3,7p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

check_name() {
    [[ "$1" =~ ^[A-Za-z0-9_.-]{1,40}$ ]] || { echo "testbed: bad namespace name '$1' (1-40 of A-Za-z0-9_.-)" >&2; exit 2; }
}

has_ns() { [[ -e "/run/netns/$1" ]]; }

up() {
    local ns="" tap=0 quiet=0 tap_mac="02:00:00:00:01:01"
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --tap) tap=1 ;;
            --quiet) quiet=1 ;;
            --tap-mac) tap_mac="${2:?--tap-mac needs a MAC}"; shift ;;
            -*) echo "testbed: unknown option '$1'" >&2; usage ;;
            *) [[ -z "$ns" ]] || usage; ns="$1" ;;
        esac
        shift
    done
    [[ -n "$ns" ]] || usage
    check_name "$ns"
    has_ns "$ns" || ip netns add "$ns"
    local x=(ip -n "$ns")
    "${x[@]}" link set lo up
    if [[ $quiet == 1 ]]; then
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    fi
    if ! "${x[@]}" link show k0 >/dev/null 2>&1; then
        "${x[@]}" link add k0 type veth peer name p0
    fi
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.p0.disable_ipv6=1
    "${x[@]}" link set p0 up
    "${x[@]}" link set k0 up
    "${x[@]}" addr replace 198.18.0.2/24 dev k0
    local p0_mac
    p0_mac=$(ip netns exec "$ns" cat /sys/class/net/p0/address)
    "${x[@]}" neigh replace 198.18.0.1 lladdr "$p0_mac" dev k0 nud permanent
    if [[ $quiet == 0 ]]; then
        "${x[@]}" addr replace 2001:2::2/64 dev k0 nodad
        "${x[@]}" -6 neigh replace 2001:2::1 lladdr "$p0_mac" dev k0 nud permanent
    fi
    if [[ $tap == 1 ]]; then
        if ! "${x[@]}" link show t0 >/dev/null 2>&1; then
            "${x[@]}" tuntap add dev t0 mode tap multi_queue vnet_hdr
        fi
        "${x[@]}" link set t0 up
        "${x[@]}" addr replace 198.18.1.2/24 dev t0
        "${x[@]}" neigh replace 198.18.1.1 lladdr "$tap_mac" dev t0 nud permanent
        if [[ $quiet == 0 ]]; then
            "${x[@]}" addr replace 2001:2:0:1::2/64 dev t0 nodad
            "${x[@]}" -6 neigh replace 2001:2:0:1::1 lladdr "$tap_mac" dev t0 nud permanent
        fi
    fi
}

down() {
    [[ $# -gt 0 ]] || usage
    local ns
    for ns in "$@"; do
        check_name "$ns"
        has_ns "$ns" || continue
        # A persistent TAP would otherwise outlive the namespace (moved to the root one).
        ip -n "$ns" link del t0 2>/dev/null || true
        ip netns del "$ns"
    done
}

cmd="${1:-}"
shift || true
case "$cmd" in
    up) up "$@" ;;
    down) down "$@" ;;
    show) check_name "${1:?}"; ip -n "$1" -br addr; ip -n "$1" neigh ;;
    *) usage ;;
esac
