#!/usr/bin/env bash
# Reserves hugepages for DPDK and mounts hugetlbfs, or undoes both.
#
#   scripts/hugepages.sh reserve [PAGES] [SIZE]   default 512 pages of 2048 kB (1 GiB)
#   scripts/hugepages.sh release [SIZE]           back to what it was before 'reserve'
#   scripts/hugepages.sh status
#
# SIZE is 2048 (2 MB pages) or 1048576 (1 GB pages, usually only reservable at
# boot: hugepagesz=1G hugepages=N on the kernel command line). The mount is
# /dev/hugepages (pagesize=SIZE). 'reserve' records the previous page count in
# /run/pmd-hugepages.SIZE so 'release' restores it, and unmounts only a mount it
# made. Needs root.
set -euo pipefail

cmd="${1:-status}"
size_kb_default=2048
mnt=/dev/hugepages

die() { echo "hugepages.sh: $*" >&2; exit 1; }
need_root() { [[ $(id -u) -eq 0 ]] || die "needs root (sudo $0 $*)"; }
nr_file() { echo "/sys/kernel/mm/hugepages/hugepages-${1}kB/nr_hugepages"; }

case "$cmd" in
reserve)
    need_root "$@"
    pages="${2:-512}"
    size="${3:-$size_kb_default}"
    [[ "$pages" =~ ^[0-9]+$ ]] || die "PAGES must be a number, got '$pages'"
    f=$(nr_file "$size")
    [[ -w "$f" ]] || die "no ${size} kB hugepages on this kernel ($f)"
    state="/run/pmd-hugepages.$size"
    [[ -e "$state" ]] || echo "$(cat "$f") $(mountpoint -q "$mnt" && echo keep || echo unmount)" > "$state"
    echo "$pages" > "$f"
    got=$(cat "$f")
    if [[ "$got" -lt "$pages" ]]; then
        echo "hugepages.sh: asked for $pages pages of $size kB, the kernel gave $got (memory fragmented?)" >&2
    fi
    if ! mountpoint -q "$mnt"; then
        mkdir -p "$mnt"
        mount -t hugetlbfs -o "pagesize=${size}k" nodev "$mnt"
    fi
    echo "reserved $got x $size kB hugepages; hugetlbfs on $mnt"
    ;;
release)
    need_root "$@"
    size="${2:-$size_kb_default}"
    state="/run/pmd-hugepages.$size"
    [[ -e "$state" ]] || die "nothing to release: 'reserve' was not run (no $state)"
    read -r before mount_state < "$state"
    # Files left in hugetlbfs (a DPDK process without --in-memory that did not
    # clean up) keep their pages; they are not ours to delete.
    if mountpoint -q "$mnt" && [[ -n "$(ls -A "$mnt" 2>/dev/null)" ]]; then
        echo "hugepages.sh: $mnt still holds files ($(ls "$mnt" | head -3 | tr '\n' ' ')...); their pages stay reserved" >&2
    fi
    echo "$before" > "$(nr_file "$size")"
    if [[ "$mount_state" == unmount ]] && mountpoint -q "$mnt"; then umount "$mnt"; fi
    rm -f "$state"
    echo "hugepages back to $before x $size kB$([[ $mount_state == unmount ]] && echo "; $mnt unmounted")"
    ;;
status)
    grep -i huge /proc/meminfo
    mount -t hugetlbfs || true
    ;;
*)
    die "usage: $0 reserve [PAGES] [SIZE_KB] | release [SIZE_KB] | status"
    ;;
esac
