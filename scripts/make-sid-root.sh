#!/usr/bin/env bash
# Prepare a Debian sid root holding python3.14 and python3.15, whose binaries need a newer glibc
# than this machine has.  A program started with `chroot ROOT python3.15 app.py` is then a real
# process whose files live under ROOT, just like a process in a container.  The tests run their
# 3.14 and 3.15 targets there (tests/pythons.py), and skip them, saying why, when it is missing.
#
# Idempotent: when the root is already there it only makes sure ROOT/proc is mounted (after a
# reboot it is not).  A root this script started but did not finish is built again; any other
# incomplete directory at ROOT is left alone (the script fails rather than delete it).
# Prints the root's path on success.
# Usage: scripts/make-sid-root.sh [ROOT]   (default: $SPYREC_SID_ROOT or /var/cache/spyrec/sid-root)
set -euo pipefail
root="${1:-${SPYREC_SID_ROOT:-/var/cache/spyrec/sid-root}}"
root="${root%/}"
marker=.spyrec-sid-root    # written into every root this script builds

complete() { [ -x "$root/usr/bin/python3.15" ] && [ -x "$root/usr/bin/python3.14" ]; }

unmount_under() {          # every mount below $1 (debootstrap mounts proc, sys... while it runs)
    awk -v dir="$1/" 'index($2, dir) == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r mnt; do umount -l "$mnt"; done
}

if ! complete; then
    if [ "$(id -u)" != 0 ]; then
        echo "make-sid-root: building $root needs root (debootstrap, chroot, mount)" >&2
        exit 1
    fi
    if [ -e "$root" ] && [ ! -e "$root/$marker" ]; then
        echo "make-sid-root: $root exists but is no sid root made by this script;" \
             "remove it or give another path" >&2
        exit 1
    fi
    if ! command -v debootstrap >/dev/null; then
        echo "make-sid-root: installing debootstrap" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    for stale in "$root" "$root.partial"; do
        if [ -e "$stale" ]; then unmount_under "$stale"; rm -rf "$stale"; fi
    done
    mkdir -p "$(dirname "$root")"
    echo "make-sid-root: debootstrap sid into $root (about 325 MB, a few minutes)" >&2
    start=$SECONDS
    mkdir "$root.partial"
    touch "$root.partial/$marker"
    debootstrap --variant=minbase --include=python3.14,python3.15 sid "$root.partial" >&2
    unmount_under "$root.partial"
    mv "$root.partial" "$root"
    echo "make-sid-root: built in $((SECONDS - start)) s" >&2
    complete || { echo "make-sid-root: $root lacks python3.14 or python3.15" >&2; exit 1; }
fi
if ! mountpoint -q "$root/proc"; then
    mount -t proc proc "$root/proc"
fi
echo "$root"
