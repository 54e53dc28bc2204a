#!/usr/bin/env bash
# Hands a PCI NIC to DPDK (vfio-pci) and gives it back to its kernel driver.
#
#   scripts/bind-nic.sh status                 dpdk-devbind.py --status-dev net
#   scripts/bind-nic.sh bind   0000:03:00.0    to vfio-pci (remembers the old driver)
#   scripts/bind-nic.sh unbind 0000:03:00.0    back to the driver it had before
#
# 'bind' loads vfio-pci, refuses a device that carries a route or an address in
# use (dpdk-devbind.py's own check: the interface must be down, so you do not
# cut off your SSH session), and uses no-IOMMU mode only when asked with
# PMD_VFIO_NOIOMMU=1 (for VMs without a virtual IOMMU; unsafe: the device can DMA
# anywhere). Needs root and dpdk-devbind.py (Debian package dpdk).
set -euo pipefail

die() { echo "bind-nic.sh: $*" >&2; exit 1; }
devbind=$(command -v dpdk-devbind.py || command -v dpdk-devbind || true)
[[ -n "$devbind" ]] || die "dpdk-devbind.py not found (apt-get install dpdk)"

cmd="${1:-status}"
addr="${2:-}"
norm() {
    local a="$1"
    [[ "$a" =~ ^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]] && a="0000:$a"
    [[ "$a" =~ ^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]] || die "'$1' is not a PCI address (DDDD:BB:DD.F)"
    echo "${a,,}"
}
state_of() { echo "/run/pmd-bind-nic.$1"; }

case "$cmd" in
status)
    "$devbind" --status-dev net
    ;;
bind)
    [[ $(id -u) -eq 0 ]] || die "needs root"
    a=$(norm "$addr")
    dev="/sys/bus/pci/devices/$a"
    [[ -e "$dev" ]] || die "no PCI device $a"
    old=$(basename "$(readlink "$dev/driver" 2>/dev/null)" 2>/dev/null || true)
    [[ "$old" == vfio-pci ]] && { echo "$a is already bound to vfio-pci"; exit 0; }
    if [[ "${PMD_VFIO_NOIOMMU:-0}" == 1 ]]; then
        modprobe vfio enable_unsafe_noiommu_mode=1
        echo 1 > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode
    elif [[ -z "$(ls -A /sys/kernel/iommu_groups 2>/dev/null)" ]]; then
        die "no IOMMU groups: enable the IOMMU (intel_iommu=on / amd_iommu=on) or set PMD_VFIO_NOIOMMU=1"
    fi
    modprobe vfio-pci
    echo "${old:-none}" > "$(state_of "$a")"
    "$devbind" --bind=vfio-pci "$a"
    echo "$a: ${old:-no driver} -> vfio-pci; use it as dpdk:$a (unbind with: $0 unbind $a)"
    ;;
unbind)
    [[ $(id -u) -eq 0 ]] || die "needs root"
    a=$(norm "$addr")
    st=$(state_of "$a")
    old=$(cat "$st" 2>/dev/null || true)
    if [[ -z "$old" || "$old" == none ]]; then
        "$devbind" --unbind "$a"
        echo "$a unbound (it had no driver before 'bind', or 'bind' was not used)"
    else
        "$devbind" --bind="$old" "$a"
        echo "$a: vfio-pci -> $old"
    fi
    rm -f "$st"
    ;;
*)
    die "usage: $0 status | bind PCI_ADDRESS | unbind PCI_ADDRESS"
    ;;
esac
