#!/usr/bin/env bash
# rootfs.sh DIR [PACKAGE...]: makes DIR a clean Debian 12 root (debootstrap
# --variant=minbase) to install the package into, with the PACKAGEs (e.g.
# systemd, to boot it with systemd-nspawn) installed on top. The first run
# bootstraps once (about a minute) into a tarball under ~/.cache/mqtt2kafka/,
# and installs the PACKAGEs once into another; later runs unpack those. The
# apt lists are not kept: a user of the root runs apt-get update. Needs root.
# Bounded: debootstrap gets 15 minutes, the PACKAGEs 10.
set -euo pipefail
dir=${1:?usage: rootfs.sh DIR [PACKAGE...]}
shift
extra=("$@")
cache=${M2K_ROOTFS_CACHE:-$HOME/.cache/mqtt2kafka}
arch=$(dpkg --print-architecture)
tarball=$cache/bookworm-minbase-$arch.tar
mirror=${M2K_DEBIAN_MIRROR:-http://deb.debian.org/debian}

tmps=()
trap 'rm -rf "${tmps[@]}"' EXIT
[ "$(id -u)" -eq 0 ] || { echo "rootfs.sh: needs root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "rootfs.sh: debootstrap missing (test/pkg/deps.sh)" >&2; exit 1; }
if [ ! -s "$tarball" ]; then
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/rootfs.XXXXXX")
    tmps+=("$tmp")
    echo "rootfs: debootstrap bookworm (minbase) from $mirror, once; log $cache/debootstrap.log"
    if ! timeout 900 debootstrap --variant=minbase bookworm "$tmp/root" "$mirror" >"$cache/debootstrap.log" 2>&1; then
        tail -n 20 "$cache/debootstrap.log" >&2
        echo "rootfs.sh: debootstrap failed; log $cache/debootstrap.log" >&2
        exit 1
    fi
    rm -rf "$tmp/root/var/cache/apt/archives/"*.deb
    tar -C "$tmp/root" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
fi
if [ ${#extra[@]} -gt 0 ]; then
    base=$tarball
    tarball=$cache/bookworm-minbase+$(IFS=+; echo "${extra[*]}")-$arch.tar
    if [ ! -s "$tarball" ]; then
        tmp=$(mktemp -d "$cache/rootfs.XXXXXX")
        tmps+=("$tmp")
        echo "rootfs: installing ${extra[*]} on top, once; log $cache/rootfs-extra.log"
        mkdir "$tmp/root"
        tar -C "$tmp/root" -xf "$base"
        cp /etc/resolv.conf "$tmp/root/etc/resolv.conf" 2>/dev/null || true
        in_root=(chroot "$tmp/root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
                 DEBIAN_FRONTEND=noninteractive)
        if ! { timeout 300 "${in_root[@]}" apt-get update -q &&
               timeout 600 "${in_root[@]}" apt-get install -y -q --no-install-recommends "${extra[@]}"; } \
            >"$cache/rootfs-extra.log" 2>&1; then
            tail -n 20 "$cache/rootfs-extra.log" >&2
            echo "rootfs.sh: could not install ${extra[*]}; log $cache/rootfs-extra.log" >&2
            exit 1
        fi
        "${in_root[@]}" apt-get clean
        rm -rf "$tmp/root/var/lib/apt/lists/"*
        tar -C "$tmp/root" -cf "$tmp/root.tar" . && mv "$tmp/root.tar" "$tarball"
    fi
fi
mkdir -p "$dir"
tar -C "$dir" -xf "$tarball"
cp /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
echo "rootfs: $dir ready (from ${tarball/#$HOME/\~})"
