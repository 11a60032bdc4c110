#!/usr/bin/env bash
# Prepare a Debian sid root holding python3.14 and python3.15, whose binaries need a newer glibc
# than this machine has.  A program started with `chroot ROOT python3.15 app.py` is then a real
# process whose files live under ROOT, just like a process in a container.
#
# Idempotent: does nothing but check /proc when the root is already there.
# Usage: scripts/make-sid-root.sh [ROOT]   (default: $SPYREC_SID_ROOT or /var/cache/spyrec/sid-root)
set -euo pipefail
root="${1:-${SPYREC_SID_ROOT:-/var/cache/spyrec/sid-root}}"
if [ ! -x "$root/usr/bin/python3.15" ] || [ ! -x "$root/usr/bin/python3.14" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "make-sid-root: building $root needs root (debootstrap, chroot, mount)" >&2
        exit 1
    fi
    if ! command -v debootstrap >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    rm -rf "$root.partial"
    mkdir -p "$(dirname "$root")"
    echo "make-sid-root: debootstrap sid into $root (about 325 MB, a few minutes)" >&2
    debootstrap --variant=minbase --include=python3.14,python3.15 sid "$root.partial" >&2
    mv "$root.partial" "$root"
fi
if ! mountpoint -q "$root/proc"; then
    mount -t proc proc "$root/proc"
fi
echo "$root"
