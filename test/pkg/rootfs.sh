#!/usr/bin/env bash
# rootfs.sh DIR: makes DIR a clean Debian 12 root (debootstrap --variant=
# minbase) to install the package into. The first run bootstraps once (about
# a minute) into a tarball under ~/.cache/mqtt2kafka/; later runs unpack
# that. Needs root. Bounded: debootstrap gets 15 minutes.
set -euo pipefail
dir=${1:?usage: rootfs.sh DIR}
cache=${M2K_ROOTFS_CACHE:-$HOME/.cache/mqtt2kafka}
tarball=$cache/bookworm-minbase-$(dpkg --print-architecture).tar
mirror=${M2K_DEBIAN_MIRROR:-http://deb.debian.org/debian}

[ "$(id -u)" -eq 0 ] || { echo "rootfs.sh: needs root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "rootfs.sh: debootstrap missing (test/pkg/deps.sh)" >&2; exit 1; }
if [ ! -s "$tarball" ]; then
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    echo "rootfs: debootstrap bookworm (minbase) from $mirror, once; log $cache/debootstrap.log"
    if ! timeout 900 debootstrap --variant=minbase bookworm "$tmp/root" "$mirror" >"$cache/debootstrap.log" 2>&1; then
        tail -n 20 "$cache/debootstrap.log" >&2
        echo "rootfs.sh: debootstrap failed; log $cache/debootstrap.log" >&2
        exit 1
    fi
    rm -rf "$tmp/root/var/cache/apt/archives/"*.deb
    tar -C "$tmp/root" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
fi
mkdir -p "$dir"
tar -C "$dir" -xf "$tarball"
cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
echo "rootfs: $dir ready (from ${tarball/#$HOME/\~})"
